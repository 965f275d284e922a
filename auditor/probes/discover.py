"""Find, in a loaded submission module, what the probes need: the hyperparameter
class, the model class, the byte-table builder and the evaluation entry points,
and bind an entry's parameters by name.

Shrinking: before the module is executed the child sets the SHRINK environment
(upper-case names: MODEL_DIM=64, VOCAB_SIZE=<tokenizer's>, ...), so classes that
read os.environ at definition time come out small; after the config object is
built the same names, and the layer count (2), are set on it when present. When
the model cannot be built at 2 layers it is rebuilt at the configured depth. Nothing else of the
configuration changes: the flags the logs show stay as they were.
"""

from __future__ import annotations

import inspect
import re
import types
from dataclasses import dataclass, is_dataclass

SEQ = 64

# attribute name -> value (or callable(old, vocab) -> value); applied only when present
def shrink_values(vocab: int) -> dict:
    return {
        "vocab_size": vocab, "num_layers": 2, "n_layer": 2, "n_layers": 2, "model_dim": 64, "n_embd": 64,
        "d_model": 64, "num_heads": 4, "n_head": 4, "num_kv_heads": 2, "n_kv_head": 2,
        "bigram_buckets": lambda v: 64 if v else v, "bigram_vocab_size": lambda v: 64 if v else v,
        "bigram_dim": lambda v: 16 if v else v, "xsa_last_n": lambda v: min(int(v), 1),
        "recur_layers": lambda v: "" if isinstance(v, str) else v,
        "rope_dims": lambda v: 0 if v and int(v) > 16 else v,
        "train_seq_len": SEQ, "eval_seq_len": SEQ, "seq_len": SEQ,
        "eval_stride": lambda v: SEQ // 2 if v else v, "stride": lambda v: SEQ // 2 if v else v,
        "eval_batch_seqs": 4, "ttt_chunk_tokens": 96,
        # per-document TTT: the probe's documents (24-72 tokens) must span several chunks and count as long
        "ttt_chunk_size": 16, "ttt_min_doc_len": lambda v: min(int(v), 16) if v else v, "lora_chunk_tokens": 24,
        "ttt_epochs": lambda v: min(int(v), 2), "slot_steps": lambda v: min(int(v), 2),
        "lora_steps": lambda v: min(int(v), 2), "train_batch_tokens": 512,
        # validation batches of a few sequences: `val_batch_size // (world_size * grad_accum_steps)` must hold one
        "val_batch_size": SEQ * 32, "val_batch_tokens": SEQ * 32,
    }


# attributes a script's main() sets on its config object at run time (never in the class):
# a single process, one micro-step
RUNTIME_DEFAULTS = {"world_size": 1, "rank": 0, "local_rank": 0, "grad_accum_steps": 1, "distributed": False,
                    "is_main_process": True, "master_process": True}


# Layer counts are set on the config object only (never in the environment), so that when
# a smaller depth breaks the model (layer indices elsewhere in the config: recurrence
# layers, a parallel-residual start, value-embedding layers) the child can rebuild it at
# the configured depth: make_config(..., shrink_layers=False).
LAYER_KEYS = ("num_layers", "n_layer", "n_layers")


def shrink_env(vocab: int) -> dict[str, str]:
    env = {}
    for key, value in shrink_values(vocab).items():
        if key not in LAYER_KEYS and not callable(value):
            env[key.upper()] = str(value)
    return env


MODEL_PARAMS = {"model", "base_model", "net", "gpt", "eval_model", "m", "ttt_model"}
TOKEN_PARAMS = {"tokens", "val_tokens", "val", "toks", "val_ids", "stream", "validation_tokens"}
# an object holding the tokens, the tokenizer and the byte tables (`ValidationData(h, device)`)
VAL_DATA_PARAMS = {"val_data", "validation_data", "vd", "val_set", "valdata"}
# a path or glob of validation shards the entry reads itself: bound to shard files holding the probe stream
FILE_PARAMS = {"val_pattern", "val_files", "val_path", "val_glob", "val_file", "pattern", "val_shards"}
CFG_PARAMS = {"cfg", "args", "config", "hparams", "h", "hp", "hyper", "hps", "conf"}
ISOLATION_RE = re.compile(r"\bbos\b|bos_id|bos_token|doc_|_doc|docs?\b|isolate|varlen|cu_seqlens", re.I)


@dataclass
class Entry:
    name: str
    fn: object
    params: list[str]
    claims_isolation: bool
    line: int | None = None


def own(mod: types.ModuleType, obj) -> bool:
    return getattr(obj, "__module__", None) == mod.__name__


LOG_FUNCTIONS = ("log", "log0", "print0", "logprint", "log_print", "print_rank0", "rank0_print", "master_print")


def silence_logging(mod) -> list[str]:
    """Replace the script's own logging helpers with no-ops. They print, append to a log
    file named by the config, or read a module global that main() sets
    (`set_logging_hparams(h)`), none of which changes what an evaluation computes."""
    done = []
    for name in LOG_FUNCTIONS:
        fn = vars(mod).get(name)
        if inspect.isfunction(fn) and own(mod, fn):
            setattr(mod, name, lambda *args, **kwargs: None)
            done.append(name)
    return [f"{', '.join(done)} -> no-op"] if done else []


def find_config_class(mod):
    best, score = None, 0
    for name, obj in vars(mod).items():
        if not inspect.isclass(obj) or not own(mod, obj):
            continue
        s = 0
        if is_dataclass(obj):
            s += 2
        if re.search(r"config|hyper|hparam|args|settings", name, re.I):
            s += 3
        attrs = {a.lower() for a in dir(obj)}
        s += sum(a in attrs for a in ("vocab_size", "num_layers", "model_dim", "seed", "eval_seq_len", "train_seq_len"))
        if s > score and s >= 4:
            best, score = obj, s
    return best


def make_config(cls, vocab: int, shrink_layers: bool = True):
    if cls is None:
        return None
    obj = cls.from_env() if hasattr(cls, "from_env") else cls()
    for key, value in RUNTIME_DEFAULTS.items():
        if not hasattr(obj, key):
            try:
                setattr(obj, key, value)
            except AttributeError:  # frozen or slotted
                pass
    for key, value in shrink_values(vocab).items():
        if key in LAYER_KEYS and not shrink_layers:
            continue
        if hasattr(obj, key):
            old = getattr(obj, key)
            try:
                setattr(obj, key, value(old) if callable(value) else type(old)(value) if old is not None else value)
            except (TypeError, ValueError, AttributeError):
                pass
    return obj


def _bind_init(cls, cfg, vocab: int):
    sig = inspect.signature(cls.__init__)
    kwargs = {}
    for name, p in list(sig.parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name.lower() in CFG_PARAMS and cfg is not None:
            kwargs[name] = cfg
        elif cfg is not None and hasattr(cfg, name):
            kwargs[name] = getattr(cfg, name)
        elif name == "vocab_size":
            kwargs[name] = vocab
        elif p.default is not p.empty:
            continue
        else:
            return None
    return kwargs


def build_model(mod, cfg, vocab: int):
    """The submission's own model class with the shrunk config: the constructible
    nn.Module subclass that holds the most of the others (the whole model, not a block). Each
    class is built the way the script's own code builds it (replayed_constructions)
    and, failing that, with its parameters bound from the config by name."""
    import torch

    modules = {name: obj for name, obj in vars(mod).items()
               if inspect.isclass(obj) and own(mod, obj) and issubclass(obj, torch.nn.Module)}
    builders = [(name, modules[name], args, kwargs) for name, args, kwargs in replayed_constructions(mod, modules, cfg)]
    for name, obj in modules.items():
        kwargs = _bind_init(obj, cfg, vocab)
        if kwargs is not None:
            builders.append((name, obj, (), kwargs))
    own_kinds = set(modules.values())
    best, best_n, errors = None, (-1, -1), []
    for name, obj, args, kwargs in builders:
        try:
            torch.manual_seed(0)
            model = obj(*args, **kwargs)
        except Exception as exc:  # a block needing other arguments, etc.
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        # the whole model holds the most of the script's own module kinds (a hash table
        # with a large embedding is still a part), then the most parameters
        kinds = len({type(m) for m in model.modules() if type(m) in own_kinds})
        n = (kinds, sum(p.numel() for p in model.parameters()))
        emb = any(isinstance(m, torch.nn.Embedding) for m in model.modules())
        if emb and n > best_n:
            best, best_n = (name, model), n
    return best, errors


def replayed_constructions(mod, classes: dict, cfg) -> list[tuple[str, tuple, dict]]:
    """(class name, args, kwargs) for every call in the script's functions that builds
    one of its own nn.Module classes (``GPT(vocab_size=args.vocab_size, mlp_hidden=mlp_hidden)``
    in main) and whose every argument could be evaluated (see call_arguments). A
    constructor that takes values main computes is built the way main builds it."""
    out = []
    for name in classes:
        for n_args, values in call_arguments(mod, name, cfg):
            if len(values) == n_args:
                args = tuple(values[i] for i in sorted(k for k in values if isinstance(k, int)))
                out.append((name, args, {k: v for k, v in values.items() if isinstance(k, str)}))
    return out


def call_arguments(mod, callee: str, cfg, wanted=None):
    """Yield, for each call ``callee(...)`` inside the script's functions, (number of
    arguments, {position or keyword: value}) with each argument evaluated as the function
    would evaluate it: the plain assignments it reads (``mlp_hidden = ...``) replayed
    first, in order, and the configuration object, wherever the function or the module
    builds one, replaced by the shrunk ``cfg``. Arguments that cannot be evaluated are
    left out; ``wanted`` (positions and keywords) limits which are tried. Runs in the
    probe child only: the replayed lines are the submission's own code."""
    import ast

    tree = _script_tree(mod)
    if tree is None:
        return
    cfg_type = type(cfg) if cfg is not None else None

    def is_cfg(name: str, value) -> bool:
        if cfg_type is None:
            return False
        if isinstance(value, ast.AST):  # `args = Hyperparameters()` / `Hyperparameters.from_env()`
            func = value.func if isinstance(value, ast.Call) else None
            func = func.value if isinstance(func, ast.Attribute) else func
            return isinstance(func, ast.Name) and func.id == cfg_type.__name__
        # a parameter of the function or a global: the config's instance, or named like one
        return isinstance(value, cfg_type) or (name in CFG_PARAMS and value is None)

    def reads(node) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}

    def value_of(node, env):
        return eval(compile(ast.Expression(node), mod.__file__, "eval"), env)

    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assigns = sorted((n for n in ast.walk(fn) if isinstance(n, ast.Assign) and len(n.targets) == 1
                          and isinstance(n.targets[0], ast.Name)), key=lambda n: n.lineno)
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == callee):
                continue
            given = {i: a for i, a in enumerate(call.args) if not isinstance(a, ast.Starred)}
            given.update({k.arg: k.value for k in call.keywords if k.arg is not None})
            if wanted is not None:
                given = {k: v for k, v in given.items() if k in wanted}
            needed = set().union(set(), *(reads(v) for v in given.values()))
            chosen = []
            for a in reversed([a for a in assigns if a.lineno < call.lineno]):
                if a.targets[0].id in needed:
                    chosen.append(a)
                    needed |= reads(a.value)
            env = dict(vars(mod))
            for name in needed:
                if is_cfg(name, env.get(name)):
                    env[name] = cfg
            for a in reversed(chosen):
                name = a.targets[0].id
                try:
                    env[name] = cfg if is_cfg(name, a.value) else value_of(a.value, env)
                except Exception:
                    pass  # an argument that reads it is left out below
            values = {}
            for key, node in given.items():
                try:
                    values[key] = value_of(node, env)
                except Exception:
                    continue
            yield len(call.args) + len(call.keywords), values


_TREES: dict[str, object] = {}


def _script_tree(mod):
    """The parsed script the module was loaded from (once per file), or None."""
    import ast

    path = getattr(mod, "__file__", None)
    if path not in _TREES:
        try:
            with open(path, encoding="utf-8") as f:
                _TREES[path] = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError, TypeError):
            _TREES[path] = None
    return _TREES[path]


def find_tables_fn(mod):
    for name, obj in vars(mod).items():
        if not (inspect.isfunction(obj) and own(mod, obj)):
            continue
        params = list(inspect.signature(obj).parameters)
        if params and params[0] in ("sp", "tokenizer", "sp_model", "spm") and re.search(r"byte|lut|table", name, re.I):
            return obj
    return None


def find_entries(mod) -> tuple[list[Entry], dict[str, str]]:
    found = []
    for name, obj in vars(mod).items():
        if not (inspect.isfunction(obj) and own(mod, obj)) or name.startswith("_"):
            continue
        params = list(inspect.signature(obj).parameters)
        lower = [p.lower() for p in params]
        if not (set(lower) & MODEL_PARAMS and set(lower) & (TOKEN_PARAMS | VAL_DATA_PARAMS | FILE_PARAMS)):
            continue
        if re.search(r"calib|hessian|gptq|quantiz", name, re.I):
            continue
        try:
            src = inspect.getsource(obj)
            line = inspect.getsourcelines(obj)[1]
        except (OSError, TypeError):
            src, line = "", None
        found.append(Entry(name, obj, params, bool(ISOLATION_RE.search(src)), line))
    # an entry called by another entry is a helper: probing the caller covers it
    sources = {}
    for e in found:
        try:
            sources[e.name] = inspect.getsource(e.fn)
        except (OSError, TypeError):
            sources[e.name] = ""
    skipped = {}
    entries = []
    for e in found:
        callers = [o.name for o in found if o.name != e.name and re.search(rf"\b{re.escape(e.name)}\s*\(", sources[o.name])]
        if callers:
            skipped[e.name] = f"called by {', '.join(callers)}"
        else:
            entries.append(e)
    return entries, skipped


def make_val_data(mod, tokens, tables, sp, cfg, vocab: int, bos: int):
    """The script's own validation-data holder (its `ValidationData`-like class, built
    without running its __init__, which reads files) or a plain namespace, holding the
    probe stream, the tokenizer and the byte tables under the names such classes use.
    Other attributes its __init__ assigns come from the config when it has them, else None."""
    import torch

    cls = None
    for name, obj in vars(mod).items():
        if inspect.isclass(obj) and own(mod, obj) and re.fullmatch(r"(Val|Validation)_?(Data|Set|Tokens)\w*", name):
            cls = obj
            break
    if cls is not None:
        try:
            holder = cls.__new__(cls)
            init_src = inspect.getsource(cls.__init__)
        except (TypeError, OSError):
            holder, init_src = types.SimpleNamespace(), ""
    else:
        holder, init_src = types.SimpleNamespace(), ""
    for attr in dict.fromkeys(re.findall(r"self\.(\w+)\s*(?=[=,)\]])", init_src)):
        try:
            setattr(holder, attr, getattr(cfg, attr, None) if cfg is not None else None)
        except AttributeError:
            pass
    values = {"val_tokens": tokens, "tokens": tokens, "sp": sp, "tokenizer": sp, "bos_id": bos, "vocab_size": vocab}
    if isinstance(tables, (tuple, list)) and len(tables) == 3:
        base, space, boundary = tables
        values.update(base_bytes_lut=base, has_leading_space_lut=space, is_boundary_token_lut=boundary)
        try:  # per-token byte counts, for scripts that carry them alongside the tokens (a byte sidecar)
            prev = torch.cat([tokens[:1], tokens[:-1]]).long()
            tok = tokens.long()
            per_token = (base[tok].long() + (space[tok] & ~boundary[prev]).long()).to(torch.int32)
            for attr in ("val_bytes", "val_token_bytes", "token_bytes"):
                if hasattr(holder, attr):
                    values[attr] = per_token
        except Exception:  # tables of another shape: leave the sidecar as the config gave it
            pass
    for attr, value in values.items():
        try:
            setattr(holder, attr, value)
        except AttributeError:
            pass
    if getattr(holder, "caseops_enabled", False) and getattr(holder, "val_bytes", None) is None:
        holder.caseops_enabled = False  # no sidecar could be built: count bytes from the tables
    return holder


def _model_method(model, param: str):
    """`forward_logits_fn` / `forward_ttt_train` / `fwd_ttt`: the model's own method whose
    name is the longest prefix of the parameter's name (forward_logits, forward_ttt)."""
    name = param.lower().replace("fwd_", "forward_")
    best = None
    for attr in dir(type(model)):
        if attr.startswith("forward") and name.startswith(attr) and callable(getattr(model, attr, None)):
            if best is None or len(attr) > len(best):
                best = attr
    return getattr(model, best) if best else None


def write_shard(tokens, folder: str) -> str:
    """The probe stream as a challenge validation shard (256 int32 header: magic 20240520,
    version 1, token count; then uint16 tokens); returns a glob matching only it."""
    import os
    import tempfile

    import numpy as np

    d = tempfile.mkdtemp(prefix="val_", dir=folder)
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, int(tokens.numel()))
    with open(os.path.join(d, "fineweb_val_000000.bin"), "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.cpu().numpy().astype("<u2").tobytes())
    return os.path.join(d, "fineweb_val_*.bin")


# config attributes naming the validation shards: pointed at the probe stream's shard
CFG_FILE_ATTRS = ("val_files", "val_pattern", "val_path", "val_glob")


def bind_entry(entry: Entry, *, model, tokens, cfg, tables, sp, vocab: int, bos: int, mod=None,
               scratch: str | None = None):
    """Arguments for one call, by parameter name. Returns (kwargs, None) or (None, reason)."""
    import torch

    # every run (original, flipped, altered) binds alike: what the script's own lines build
    # for an argument (a model constructed in main, a random table) draws the same numbers
    torch.manual_seed(0)
    shard = None
    if scratch is not None:
        shard = write_shard(tokens, scratch)
        for attr in CFG_FILE_ATTRS:  # an entry that reads `args.val_files` itself
            if cfg is not None and isinstance(getattr(cfg, attr, None), str):
                try:
                    setattr(cfg, attr, shard)
                except AttributeError:
                    pass

    sig = inspect.signature(getattr(entry, "inner", entry.fn))
    kwargs = {}
    defaulted: list[str] = []
    table_parts = {}
    if isinstance(tables, (tuple, list)) and len(tables) == 3:
        table_parts = {"base": tables[0], "space": tables[1], "boundary": tables[2]}
    for name, p in sig.parameters.items():
        low = name.lower()
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if low in MODEL_PARAMS:
            kwargs[name] = model
        elif low in TOKEN_PARAMS:
            kwargs[name] = tokens
        elif low in FILE_PARAMS and shard is not None:
            kwargs[name] = shard
        elif low in VAL_DATA_PARAMS:
            kwargs[name] = make_val_data(mod, tokens, tables, sp, cfg, vocab, bos) if mod is not None else None
        elif low.startswith(("forward", "fwd")) and _model_method(model, low) is not None:
            if p.default is not p.empty and p.default is None:
                continue  # the entry picks the model's own method itself
            kwargs[name] = _model_method(model, low)
        elif "logits" in low and p.default is p.empty and not low.endswith(("_len", "_size")):
            # `logits_fn`: what main passes (`torch.compile(base_model.forward_logits)`) is the
            # model's logits method; the probe's own model, never one rebuilt from main's lines
            kwargs[name] = _model_method(model, "forward_logits") or model
        elif "seq_len" in low and p.default is not p.empty and isinstance(p.default, int):
            kwargs[name] = SEQ  # an evaluation length given as a default: shrunk like the config's
        elif "stride" in low and p.default is not p.empty and isinstance(p.default, int):
            kwargs[name] = SEQ // 2 if p.default else p.default
        elif low in ("grad_accum_steps", "accum_steps", "grad_accum"):
            kwargs[name] = 1
        elif (wanted := _own_config_class(mod, p)) is not None and cfg is not None:
            kwargs[name] = _config_as(wanted, cfg, vocab)
        elif low in CFG_PARAMS and cfg is not None:
            kwargs[name] = cfg
        elif low in ("tables", "luts", "byte_tables", "lut", "byte_luts"):
            if tables is None:
                return None, f"parameter {name!r} needs byte tables and no table builder was found"
            kwargs[name] = tables
        elif "lut" in low or "bytes" in low or "boundary" in low:
            part = next((v for k, v in table_parts.items() if k in low), None)
            if part is None:
                if p.default is not p.empty:
                    continue
                return None, f"cannot bind parameter {name!r}"
            kwargs[name] = part
        elif low in ("keep_nll", "return_nll", "per_token", "return_per_token"):
            kwargs[name] = True
        elif low in ("sp", "tokenizer", "sp_model"):
            kwargs[name] = sp
        elif low in ("device",):
            kwargs[name] = torch.device("cpu")
        elif low in ("rank", "local_rank"):
            kwargs[name] = 0
        elif low in ("world", "world_size", "nproc"):
            kwargs[name] = 1
        elif low in ("bos", "bos_id", "bos_token", "bos_token_id"):
            kwargs[name] = bos
        elif low == "vocab_size":
            kwargs[name] = vocab
        elif p.default is not p.empty:
            defaulted.append(name)  # the script's own call may pass a value (below)
            continue
        elif cfg is not None and hasattr(cfg, name):
            kwargs[name] = getattr(cfg, name)
        elif cfg is not None and hasattr(cfg, "eval_" + name):
            kwargs[name] = getattr(cfg, "eval_" + name)
        elif "seq_len" in low:
            kwargs[name] = SEQ
        elif "stride" in low:
            kwargs[name] = SEQ // 2
        elif "batch" in low:
            kwargs[name] = 4
        elif name in (found := _call_site_values(mod, entry, [name], cfg)):
            kwargs[name] = found[name]
        else:
            return None, f"cannot bind required parameter {name!r}"
    # a parameter left at its default takes what the script's own call passes
    # (`ttt_chunk_tokens=args.ttt_chunk_tokens`): the entry runs the way main runs it
    kwargs.update(_call_site_values(mod, entry, defaulted, cfg))
    return kwargs, None


def _own_config_class(mod, param):
    """The script's own (non-module) class a parameter is annotated with (``config: ExperimentConfig``)."""
    ann = param.annotation
    if isinstance(ann, str) and ann.isidentifier():
        ann = getattr(mod, ann, None) if mod is not None else None
    if not (inspect.isclass(ann) and mod is not None and own(mod, ann)):
        return None
    import torch

    return None if issubclass(ann, torch.nn.Module) else ann


def _config_as(cls, cfg, vocab: int):
    """An instance of config class `cls` consistent with the probe's `cfg`: cfg itself, the
    part of cfg that is a `cls`, or a shrunk `cls` whose part of cfg's class is cfg."""
    if isinstance(cfg, cls):
        return cfg
    for value in vars(cfg).values() if hasattr(cfg, "__dict__") else ():
        if isinstance(value, cls):
            return value
    whole = make_config(cls, vocab)
    for key, value in (vars(whole).items() if hasattr(whole, "__dict__") else ()):
        if type(value) is type(cfg):
            setattr(whole, key, cfg)
    return whole


def _call_site_values(mod, entry: Entry, params: list[str], cfg) -> dict:
    """The values the script's own call of the entry passes for `params` (``order=args.ngram_order``
    in main), evaluated with the shrunk config; the first call that gives one wins."""
    if mod is None or not params:
        return {}
    names = list(inspect.signature(getattr(entry, "inner", entry.fn)).parameters)
    wanted = {p: p for p in params} | {names.index(p): p for p in params if p in names}
    out: dict = {}
    for _, values in call_arguments(mod, entry.name, cfg, wanted=set(wanted)):
        for key, value in values.items():
            out.setdefault(wanted[key], value)
    return out


# ----------------------------------------------------------------------------- the headline pipeline

STEP_CALLS = {"backward", "step", "zero_grad", "load_state_dict"}


@dataclass
class PreSteps:
    """Statements of main() that run after the model is ready and before the call of an
    evaluation entry, and that touch validation tokens (pre-eval adaptation, calibration,
    cache building): run in order before the entry, in one namespace."""

    code: object
    lines: tuple[int, int]
    names: list[str]
    functions: list = None  # the script's training functions the steps call (`ttt_adapt`)


def pre_eval_steps(mod, entry_name: str, main_name: str = "main") -> PreSteps | None:
    import ast
    import textwrap

    main = vars(mod).get(main_name)
    if not inspect.isfunction(main):
        return None
    try:
        lines, first = inspect.getsourcelines(main)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    fn = tree.body[0]
    if not isinstance(fn, ast.FunctionDef):
        return None
    body = fn.body

    def walk(node):
        """ast.walk without deferred code: a lambda or a nested def is not run where it stands."""
        todo = [node]
        while todo:
            n = todo.pop()
            yield n
            todo += [c for c in ast.iter_child_nodes(n)
                     if not isinstance(c, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]

    def calls(node, deferred: bool = False):
        for n in (ast.walk(node) if deferred else walk(node)):
            if isinstance(n, ast.Call):
                f = n.func
                yield f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""

    def names(node):  # names and attribute names (`val_data.val_tokens`)
        return ({n.id for n in walk(node) if isinstance(n, ast.Name)}
                | {n.attr for n in walk(node) if isinstance(n, ast.Attribute)})

    trains: dict[str, bool] = {}

    def trains_model(name: str) -> bool:
        """A module function of the script that takes a gradient step (`ttt_adapt(...)`)."""
        if name not in trains:
            fn = vars(mod).get(name)
            try:
                src = inspect.getsource(fn) if inspect.isfunction(fn) and own(mod, fn) else ""
            except (OSError, TypeError):
                src = ""
            trains[name] = bool(re.search(r"\.backward\(|\.step\(", src))
        return trains[name]

    at = next((i for i, s in enumerate(body) if entry_name in set(calls(s, deferred=True))), None)
    if at is None:
        return None
    start = max((i + 1 for i, s in enumerate(body[:at]) if "load_state_dict" in set(calls(s))), default=None)
    if start is None:  # no point where the trained weights are loaded: nothing says where evaluation begins
        return None
    steps = [s for s in body[start:at]
             if names(s) & TOKEN_PARAMS and (set(calls(s)) & {"backward", "step"}
                                             or any(trains_model(c) for c in set(calls(s)) if c != entry_name))]
    if not steps:
        return None
    mod_ast = ast.Module(body=steps, type_ignores=[])
    ast.increment_lineno(mod_ast, first - 1)
    code = compile(mod_ast, inspect.getsourcefile(main) or "<main>", "exec")
    used = sorted(set().union(*(names(s) for s in steps)))
    called = sorted({c for st in steps for c in calls(st) if c in trains and trains[c]})
    return PreSteps(code, (steps[0].lineno, max(getattr(s, "end_lineno", s.lineno) for s in steps)), used, called)


def pipeline_entry(entry: Entry, pre: PreSteps, mod, cfg) -> Entry:
    """The entry preceded by main()'s pre-evaluation steps, on the same model and tokens."""
    import torch

    def run(**kw):
        tokens = kw.pop("__pgolf_tokens__")
        model = next((v for k, v in kw.items() if k.lower() in MODEL_PARAMS), None)
        ns = dict(vars(mod))
        ns.update({n: model for n in MODEL_PARAMS if model is not None})
        ns.update({n: tokens for n in TOKEN_PARAMS})
        if cfg is not None:
            ns.update({n: cfg for n in CFG_PARAMS})
        ns.update(device=torch.device("cpu"), rank=0, local_rank=0, world_size=1, distributed=False,
                  master_process=True, is_main_process=True, grad_accum_steps=1)
        for k, v in kw.items():  # the entry's own arguments (byte tables, its config) under their names
            if k in CFG_PARAMS:
                ns[k] = v
            else:
                ns.setdefault(k, v)
        for log in LOG_FUNCTIONS:
            ns[log] = lambda *a, **k: None
        exec(pre.code, ns)
        return entry.fn(**kw)

    e = Entry(entry.name, run, entry.params, entry.claims_isolation, entry.line)
    e.pre = pre  # type: ignore[attr-defined]
    e.inner = entry.fn  # type: ignore[attr-defined]
    return e
