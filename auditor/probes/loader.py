"""Load a submission's source as a module in the probe child, on CPU.

Everything here runs inside the sandboxed child, before and around the
submission's import. The stubs keep semantics and only replace what needs a
GPU or a network:

- `flash_attn`, `flash_attn_interface` (and `flash_attn.flash_attn_interface`):
  `flash_attn_func` and `flash_attn_varlen_func` computed with
  `torch.nn.functional.scaled_dot_product_attention` (same causal masking, same
  scale, GQA by repeating kv heads, varlen one sequence at a time);
- `torch.compile` -> identity (compiling does not change what is computed);
- `torch.inference_mode` -> `no_grad` semantics (same values; tensors made under it can
  still be saved for a later backward, which an evaluation that scores under
  inference_mode and then adapts on the same tensors needs: on a GPU run the tensors
  were fresh each time, here a CPU run would raise "Inference tensors cannot be saved
  for backward");
- `F.linear` with a bf16 input and an fp32 weight -> the input cast to the weight's
  dtype (a real run converts the model to bf16 after training, restoring small
  tensors to fp32; the probe's model stays fp32, so a script's explicit
  `.to(torch.bfloat16)` before its head would otherwise stop the evaluation);
- `torch.cuda.is_available()` False, `synchronize`/`set_device`/memory stats no-ops,
  `Tensor.cuda()`/`Module.cuda()` and `.to("cuda")` stay on CPU;
- `torch.distributed`: a single process that was never initialised; collectives
  over a world of one are identities.
- sockets: `connect`, `connect_ex` and `create_connection` raise.

- `triton` (and `triton.language`, `triton.tools.tensor_descriptor`, ...), when it
  is not installed: the script imports and its `@triton.jit` kernels are defined,
  but launching one raises `TritonUnavailable`, so the probe reports that the
  entry needs a GPU kernel instead of computing something else. Scripts that only
  use a kernel on a training-mode path (a fused MLP) then evaluate normally.

Not stubbed (the probe then reports why it could not run): a triton kernel that
an evaluation launches, custom CUDA extensions, tensors created with
`device="cuda"` literals.
"""

from __future__ import annotations

import functools
import socket
import sys
import types


class NetworkBlocked(OSError):
    pass


def block_network() -> None:
    def refuse(*_a, **_k):
        raise NetworkBlocked("network access is disabled in the probe sandbox")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]


def _flash_module(name: str):
    import torch
    import torch.nn.functional as F

    def _attend(q, k, v, causal, scale):  # q,k,v: [B, T, H, D] (flash layout)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if k.size(1) != q.size(1):
            rep = q.size(1) // k.size(1)
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal), scale=scale)
        return y.transpose(1, 2)

    def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
        return _attend(q, k, v, causal, softmax_scale)

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                               dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
        outs = []
        cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        for i in range(len(cq) - 1):
            outs.append(_attend(q[None, cq[i]:cq[i + 1]], k[None, ck[i]:ck[i + 1]], v[None, ck[i]:ck[i + 1]],
                                causal, softmax_scale)[0])
        return torch.cat(outs, dim=0) if outs else q.new_zeros(q.shape)

    mod = types.ModuleType(name)
    mod.flash_attn_func = flash_attn_func
    mod.flash_attn_varlen_func = flash_attn_varlen_func
    mod.__pgolf_stub__ = True
    return mod


class TritonUnavailable(RuntimeError):
    pass


class _Anything:
    """A stand-in for any triton object used at definition time (`tl.constexpr` in an
    annotation, `tl.float32` as a default, `triton.Config(...)` in an autotune list)."""

    def __init__(self, name: str = "triton"):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Anything(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        return _Anything(f"{self._name}()")

    def __getitem__(self, item):
        return _Anything(f"{self._name}[]")

    def __repr__(self):
        return f"<pgolf stub {self._name}>"


class _Kernel:
    """What `@triton.jit` (or autotune/heuristics) returns: defined, never runnable."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "kernel")
        self.__doc__ = getattr(fn, "__doc__", None)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            raise TritonUnavailable(f"triton kernel {self.__name__} cannot run in the CPU probe")

        return launch

    def __call__(self, *args, **kwargs):
        raise TritonUnavailable(f"triton function {self.__name__} cannot run in the CPU probe")


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Anything(f"{self.__name__}.{attr}")


def _kernel_decorator(fn=None, **_kwargs):
    if fn is None or not callable(fn):
        return lambda f: _Kernel(f)
    return _Kernel(fn)


def _triton_modules() -> dict[str, types.ModuleType]:
    mods = {name: _StubModule(name) for name in (
        "triton", "triton.language", "triton.language.extra", "triton.tools", "triton.tools.tensor_descriptor",
        "triton.runtime", "triton.compiler", "triton.testing")}
    tr = mods["triton"]
    tr.__pgolf_stub__ = True
    tr.__path__ = []  # a package: `from triton.x import y` works
    tr.jit = _kernel_decorator
    tr.autotune = lambda *a, **k: (lambda f: f if isinstance(f, _Kernel) else _Kernel(f))
    tr.heuristics = tr.autotune
    tr.cdiv = lambda a, b: -(-a // b)
    tr.next_power_of_2 = lambda n: 1 << max(0, int(n) - 1).bit_length()
    tr.language, tr.tools, tr.runtime = mods["triton.language"], mods["triton.tools"], mods["triton.runtime"]
    tl = mods["triton.language"]
    tl.constexpr = type("constexpr", (), {})
    tl.cdiv = tr.cdiv
    mods["triton.tools"].tensor_descriptor = mods["triton.tools.tensor_descriptor"]
    mods["triton.tools"].__path__ = []
    mods["triton.language"].__path__ = []
    return mods


def _torch_sees_no_triton() -> None:
    """torch asks `import triton` (cached) before choosing kernels, e.g. for a fused
    AdamW; ask now, before the stub exists, so torch keeps its CPU paths."""
    import inspect

    try:
        import torch.utils._triton as tt
    except ImportError:
        return
    for name, fn in vars(tt).items():
        if name.startswith("has_") and callable(fn):
            try:
                if not any(p.default is p.empty for p in inspect.signature(fn).parameters.values()):
                    fn()
            except Exception:  # a check that needs CUDA: it is not asked for on CPU either
                pass


def install_stubs() -> list[str]:
    """Install the CPU stand-ins; returns what was stubbed (reported with the results)."""
    import importlib.util

    import torch
    import torch.distributed as dist

    done = []
    if importlib.util.find_spec("triton") is None:
        _torch_sees_no_triton()
        sys.modules.update(_triton_modules())
        done.append("triton -> definitions only (a kernel launch raises)")
    for name in ("flash_attn", "flash_attn_interface", "flash_attn.flash_attn_interface"):
        if name not in sys.modules:
            sys.modules[name] = _flash_module(name)
    sys.modules["flash_attn"].flash_attn_interface = sys.modules["flash_attn.flash_attn_interface"]
    done.append("flash_attn -> scaled_dot_product_attention")

    def compile_identity(fn=None, *args, **kwargs):
        if fn is None:
            return lambda f: f
        return fn

    torch.compile = compile_identity
    done.append("torch.compile -> identity")
    torch.inference_mode = _inference_as_no_grad()
    done.append("torch.inference_mode -> no_grad")
    _linear_in_weight_dtype()
    done.append("F.linear with mixed float dtypes -> input cast to the weight's dtype")

    cuda = torch.cuda
    cuda.is_available = lambda: False
    cuda.device_count = lambda: 0
    for name in ("synchronize", "set_device", "empty_cache", "reset_peak_memory_stats", "manual_seed",
                 "manual_seed_all"):
        setattr(cuda, name, lambda *a, **k: None)
    for name in ("max_memory_allocated", "max_memory_reserved", "memory_allocated", "memory_reserved"):
        setattr(cuda, name, lambda *a, **k: 0)
    cuda.get_device_name = lambda *a, **k: "CPU (pgolf probe)"
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self

    orig_tensor_to, orig_module_to = torch.Tensor.to, torch.nn.Module.to

    def _cpu(args, kwargs):
        args = tuple("cpu" if _is_cuda(a) else a for a in args)
        if _is_cuda(kwargs.get("device")):
            kwargs = dict(kwargs, device="cpu")
        return args, kwargs

    @functools.wraps(orig_tensor_to)  # keeps the name `to`: the probe's tracked losses follow it
    def tensor_to(self, *args, **kwargs):
        args, kwargs = _cpu(args, kwargs)
        return orig_tensor_to(self, *args, **kwargs)

    def module_to(self, *args, **kwargs):
        args, kwargs = _cpu(args, kwargs)
        return orig_module_to(self, *args, **kwargs)

    torch.Tensor.to = tensor_to
    torch.nn.Module.to = module_to
    done.append("cuda -> cpu")

    def _noop(*a, **k):
        return None

    dist.is_initialized = lambda: False
    dist.init_process_group = _noop
    dist.destroy_process_group = _noop
    dist.get_world_size = lambda *a, **k: 1
    dist.get_rank = lambda *a, **k: 0
    for name in ("all_reduce", "broadcast", "barrier", "reduce"):
        setattr(dist, name, _noop)

    def all_gather(tensor_list, tensor, *a, **k):
        tensor_list[0].copy_(tensor)

    def all_gather_into_tensor(out, tensor, *a, **k):
        out.copy_(tensor.reshape(out.shape))

    dist.all_gather = all_gather
    dist.all_gather_into_tensor = all_gather_into_tensor
    done.append("torch.distributed -> single process")
    return done


def _linear_in_weight_dtype() -> None:
    import torch
    import torch.nn.functional as F

    orig = F.linear

    def linear(input, weight, bias=None):
        if (isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor) and input.dtype != weight.dtype
                and input.is_floating_point() and weight.is_floating_point()
                and not torch.is_autocast_enabled("cpu")):
            input = input.to(weight.dtype)
        return orig(input, weight, bias)

    F.linear = linear


def _inference_as_no_grad():
    """A drop-in for `torch.inference_mode` (context manager, `@inference_mode`,
    `@inference_mode()`, `inference_mode(False)`) that only disables grad."""
    import torch

    class inference_mode(torch.autograd.grad_mode._DecoratorContextManager):
        def __new__(cls, mode=True):
            if isinstance(mode, bool):
                return super().__new__(cls)
            return cls()(mode)  # bare decorator

        def __init__(self, mode: bool = True) -> None:
            self.mode = mode
            self.prev = True

        def __enter__(self) -> None:
            self.prev = torch.is_grad_enabled()
            if self.mode:
                torch.set_grad_enabled(False)

        def __exit__(self, *exc) -> None:
            torch.set_grad_enabled(self.prev)

        def clone(self):
            return self.__class__(self.mode)

    return inference_mode


def _is_cuda(value) -> bool:
    import torch

    if isinstance(value, str):
        return value.startswith("cuda")
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return False


def load_source(source: str, path: str, name: str = "pgolf_submission") -> types.ModuleType:
    """Execute the source as a module (not as __main__, so the run itself does not start)."""
    code, requoted = _compile(source, path)
    mod = types.ModuleType(name)
    mod.__file__ = path
    mod.__pgolf_requoted__ = requoted
    sys.modules[name] = mod
    exec(code, mod.__dict__)
    return mod


def _compile(source: str, path: str):
    """(code, requoted). A script written for Python 3.12+ that reuses quotes inside an
    f-string is compiled after fstrings.downgrade (delimiters only, same lines), and the
    rewritten text replaces the file at `path` so inspect.getsource matches the code."""
    from auditor.probes import fstrings

    try:
        return compile(source, path, "exec"), False
    except SyntaxError as first:
        if not fstrings.needed():
            raise
        try:
            fixed = fstrings.downgrade(source)
            code = compile(fixed, path, "exec")
        except (fstrings.Unconvertible, SyntaxError, RecursionError):
            raise first from None
    with open(path, "w", encoding="utf-8") as f:
        f.write(fixed)
    return code, True
