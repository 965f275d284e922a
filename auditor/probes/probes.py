"""The probes, run inside the child: C1 flip, C4 count, C2 sum, BOS isolation.

Per-token losses come from one of two places, in this order:

1. exposed: the entry returns (or returns an object holding) a float array with
   one value per stream position (NaN = not scored), e.g. a ledger's `nll`;
2. intercepted: every `torch.nn.functional.cross_entropy` call is computed with
   reduction="none" (then reduced as asked, so the caller sees the same value);
   each element's target is located in the synthetic stream (random tokens make
   every 3-8 token run unique), giving (call, position, loss, grad, trained).
   Which computations are the *counted* ones is decided by matching the entry's
   returned totals (a sum or a mean) against candidate selections: the first or
   the last computation of each position, among no-grad, never-backpropagated or
   all calls, or every computation (a position counted several times).

The C2 probe wraps the submission's module-level functions: when one returns a
probability in [0, 1] for an integer argument inside the vocabulary (a candidate
token), a few sampled calls are replayed for every candidate and summed; when
one returns a vocabulary-sized vector, its normalisation is checked.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from dataclasses import dataclass, field

import numpy as np

ATOL = 1e-7  # nats: the same computation on CPU gives bit-identical losses; this is headroom for float noise


# ----------------------------------------------------------------------------- stream


def make_stream(vocab: int, bos: int = 1, n_tokens: int = 420, seed: int = 0, first_id: int = 3) -> np.ndarray:
    """BOS-separated documents of uniformly random tokens (never BOS, unk or eos)."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n_tokens:
        length = int(rng.integers(24, 72))
        out.append(bos)
        out.extend(int(t) for t in rng.integers(first_id, vocab, size=length))
    return np.asarray(out[:n_tokens], dtype=np.int64)


def doc_starts(stream: np.ndarray, bos: int) -> list[int]:
    return [int(i) for i in np.flatnonzero(stream == bos)]


def other_token(old: int, vocab: int, first_id: int = 3) -> int:
    new = (old + vocab // 2) % vocab
    return new if new >= first_id else new + first_id


class StreamIndex:
    """Locate target sequences in the stream: position p holds the target stream[p]."""

    def __init__(self, stream: np.ndarray):
        self.s = stream.tolist()
        self.n = len(self.s)
        self.tri: dict[tuple, list[int]] = {}
        for p in range(1, self.n - 2):
            self.tri.setdefault((self.s[p], self.s[p + 1], self.s[p + 2]), []).append(p)

    def map_row(self, y: list[int]) -> np.ndarray:
        s, n, L = self.s, self.n, len(y)
        pos = np.full(L, -1, dtype=np.int64)
        p = None
        j = 0
        while j < L:
            extend = p is not None and p + 1 < n and s[p + 1] == y[j]
            if extend and (j + 1 >= L or p + 2 >= n or s[p + 2] == y[j + 1]):
                p += 1
                pos[j] = p
                j += 1
                continue
            anchor = None
            if j + 3 <= L:
                m = min(8, L - j)
                cands = [c for c in self.tri.get((y[j], y[j + 1], y[j + 2]), ()) if s[c:c + m] == y[j:j + m]]
                if len(cands) == 1:
                    anchor = cands[0]
            if anchor is None and extend:  # a row's last element before a jump: still contiguous
                anchor = p + 1
            p = anchor
            if p is not None:
                pos[j] = p
            j += 1
        return pos


# ----------------------------------------------------------------------------- interception


@dataclass
class Call:
    target: np.ndarray  # [rows, L]
    loss: np.ndarray  # [rows, L] float64
    grad: bool
    trained: bool = False
    line: int | None = None  # the submission's line that made this cross_entropy call


@dataclass
class Recorder:
    active: bool = False
    replaying: bool = False
    calls: list = field(default_factory=list)
    c2: dict = field(default_factory=dict)  # fn name -> list of sums
    c2_calls: dict = field(default_factory=dict)
    vocab: int = 0
    n_elements: int = 0  # loss elements recorded so far in this run: the next call's first id
    reduced: list = field(default_factory=list)  # (ids, scale) of each sum or mean of losses, in order


REC = Recorder()


def install_hooks() -> None:
    import torch
    import torch.nn.functional as F

    orig = F.cross_entropy

    @functools.wraps(orig)
    def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                      reduction="mean", label_smoothing=0.0):
        plain = (not REC.active or REC.replaying or size_average is not None or reduce is not None
                 or not isinstance(target, torch.Tensor) or target.is_floating_point()
                 or (weight is not None and reduction == "mean"))
        if plain:
            return orig(input, target, weight=weight, size_average=size_average, ignore_index=ignore_index,
                        reduce=reduce, reduction=reduction, label_smoothing=label_smoothing)
        out = orig(input, target, weight=weight, ignore_index=ignore_index, reduction="none",
                   label_smoothing=label_smoothing)
        t = target.detach().cpu().long()
        t2 = t.reshape(1, -1) if t.dim() <= 1 else t.reshape(t.size(0), -1)
        call = Call(t2.numpy().copy(), out.detach().double().cpu().reshape(t2.shape).numpy().copy(),
                    bool(out.requires_grad), line=_submission_line())
        REC.calls.append(call)
        first_id = REC.n_elements
        REC.n_elements += out.numel()
        ids = torch.arange(first_id, REC.n_elements).reshape(out.shape)
        if out.requires_grad:
            def mark(grad, call=call):
                call.trained = True
                return grad
            out.register_hook(mark)
        if reduction == "none":
            return _Tracked.wrap(out, ids)
        if not out.requires_grad:  # a score: every element of a summed or averaged call counts
            REC.reduced.append((ids.flatten().numpy(), 1.0))
        if reduction == "sum":
            return out.sum()
        denom = (target != ignore_index).sum().clamp_min(1).to(out.dtype)
        return out.sum() / denom

    F.cross_entropy = cross_entropy
    global _Tracked
    _Tracked = _tracked_class(torch)


_Tracked = None  # the loss-tensor subclass, made when torch is imported (install_hooks)
# ops after which each element of the result is the same element of the input, in place
_SAME_ELEMENTS = {"to", "float", "double", "half", "bfloat16", "type", "cpu", "cuda", "contiguous", "clone",
                  "detach", "type_as"}
# ops that move elements: applied to the element ids alike
_MOVE_ELEMENTS = {"__getitem__", "reshape", "view", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as",
                  "t", "transpose", "permute", "narrow", "select", "ravel", "masked_select", "index_select",
                  "gather", "take", "roll"}
_JOIN = {"cat", "concat", "concatenate", "stack", "hstack", "vstack"}
_REDUCE = {"sum", "mean", "nansum", "nanmean"}
_SCALE = {"mul": False, "__mul__": False, "__rmul__": False, "div": True, "__truediv__": True}  # name: divides


def _tracked_class(torch):
    """A tensor subclass for the per-token losses the probe hands back (reduction="none"):
    it carries each element's id through the slicing, reshaping, joining and scaling by a
    constant a scorer does, and records which elements a full sum or mean without gradient
    consumed (a score; a training loss carries a gradient), so the counted losses are known
    from what reached the total (a sliding window's scored slice), not guessed. Any other op
    returns a plain tensor: its elements are no longer followed."""

    class Tracked(torch.Tensor):
        _pgolf_ids = None
        _pgolf_scale = 1.0

        @staticmethod
        def wrap(t, ids, scale=1.0):
            out = t.as_subclass(Tracked)
            out._pgolf_ids, out._pgolf_scale = ids, scale
            return out

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            with torch._C.DisableTorchFunctionSubclass():
                ret = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            first = args[0] if args else None
            if name in _JOIN and isinstance(first, (list, tuple)) and first:
                ids = [getattr(t, "_pgolf_ids", None) for t in first]
                if all(i is not None for i in ids) and isinstance(ret, torch.Tensor):
                    try:
                        joined = func(ids, *args[1:], **kwargs)
                    except Exception:
                        return _plain(ret)
                    scales = {getattr(t, "_pgolf_scale", 1.0) for t in first}
                    if joined.shape == ret.shape and len(scales) == 1:
                        return Tracked.wrap(ret, joined, scales.pop())
                return _plain(ret)
            ids = getattr(first, "_pgolf_ids", None) if isinstance(first, Tracked) else None
            if ids is None or not isinstance(ret, torch.Tensor):
                return _plain(ret)
            if name.endswith("_") and ret is first:  # changed in place: its values are no longer the losses
                first._pgolf_ids = None
                return _plain(ret)
            scale = first._pgolf_scale
            if name in _REDUCE:
                if len(args) == 1 and not kwargs.get("dim") and REC.active and not ret.requires_grad:
                    REC.reduced.append((ids.flatten().numpy(), scale))
                return _plain(ret)
            if name in _SAME_ELEMENTS and ret.shape == first.shape:
                return Tracked.wrap(ret, ids, scale)
            if name in _SCALE and len(args) == 2 and isinstance(args[1], (int, float)) and ret.shape == first.shape:
                factor = float(args[1])
                if factor != 0.0:  # `loss * temperature`: the same elements, scaled
                    return Tracked.wrap(ret, ids, scale / factor if _SCALE[name] else scale * factor)
            if name in _MOVE_ELEMENTS:
                try:
                    moved = func(ids, *args[1:], **kwargs)
                except Exception:
                    return _plain(ret)
                if isinstance(moved, torch.Tensor) and moved.shape == ret.shape:
                    return Tracked.wrap(ret, moved, scale)
            return _plain(ret)

    def _plain(ret):
        if isinstance(ret, Tracked):
            return ret.as_subclass(torch.Tensor)
        if isinstance(ret, (tuple, list)):
            return type(ret)(_plain(r) for r in ret)
        return ret

    return Tracked


SUBMISSION_FILE = "train_gpt.py"


def _submission_line() -> int | None:
    """The innermost line of the submission's code on the current stack."""
    import sys

    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.endswith(SUBMISSION_FILE):
            return f.f_lineno
        f = f.f_back
    return None


def wrap_candidates(mod, skip: set[str]) -> list[str]:
    """Wrap module-level functions for the C2 probe (only the ones that look like a
    candidate-probability query are ever replayed)."""
    wrapped = []
    for name, fn in list(vars(mod).items()):
        if not inspect.isfunction(fn) or fn.__module__ != mod.__name__ or name in skip or name.startswith("__"):
            continue
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            continue
        setattr(mod, name, _c2_wrapper(name, fn, params))
        wrapped.append(name)
    return wrapped


SAMPLE_AT = (1, 8, 40, 160)
PREFERRED = ("target", "tgt", "token", "tok", "y", "cand", "candidate", "next_token", "a", "t", "idx")


def _c2_wrapper(name, fn, params):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        if not REC.active or REC.replaying:
            return result
        try:
            _maybe_replay(name, fn, params, args, kwargs, result)
        except Exception:  # a replay must never break the run it observes
            REC.replaying = False
        return result

    return wrapper


def _scalar(value):
    import torch

    if isinstance(value, bool):
        return None
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value)
    return None


def _int_arg(value, vocab):
    import torch

    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < vocab:
        return int(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
        v = int(value)
        return v if 0 <= v < vocab else None
    return None


def _maybe_replay(name, fn, params, args, kwargs, result) -> None:
    import torch

    V = REC.vocab
    count = REC.c2_calls[name] = REC.c2_calls.get(name, 0) + 1
    if count not in SAMPLE_AT:
        return
    bound = dict(zip(params, args))
    bound.update(kwargs)
    prob = _scalar(result)
    if prob is not None and 0.0 <= prob <= 1.0:
        ints = [k for k, v in bound.items() if _int_arg(v, V) is not None]
        if not ints:
            return
        key = next((p for p in PREFERRED if p in ints), ints[-1])
        REC.replaying = True
        try:
            total = 0.0
            for a in range(V):
                call = dict(bound)
                call[key] = a
                pos = [call[p] for p in params if p in call]
                total += float(_scalar(fn(*pos[: len(args)], **{k: v for k, v in call.items() if k not in params[: len(args)]})) or 0.0)
        finally:
            REC.replaying = False
        REC.c2.setdefault(name, []).append({"kind": "candidate", "arg": key, "sum": total, "call": count,
                                            "candidates": V})
        return
    if isinstance(result, torch.Tensor) and result.is_floating_point() and result.dim() >= 1 and result.size(-1) == V:
        r = result.detach().double().reshape(-1, V)[:4]
        if (r <= 1e-6).all():
            sums = torch.logsumexp(r, dim=-1).exp()
        elif ((r >= 0) & (r <= 1)).all():
            sums = r.sum(-1)
        else:
            return  # logits: no claim to be a distribution
        REC.c2.setdefault(name, []).append({"kind": "vector", "sum": float(sums[(sums - 1).abs().argmax()]),
                                            "call": count, "candidates": V})


# ----------------------------------------------------------------------------- one run


@dataclass
class Run:
    ok: bool
    error: str = ""
    seconds: float = 0.0
    exposed: np.ndarray | None = None  # per position, NaN = unscored
    exposed_from: str = ""
    scalars: list = field(default_factory=list)  # (label, value)
    elements: dict | None = None  # arrays: call, pos, loss, grad, trained
    c2: dict = field(default_factory=dict)
    functions: list = field(default_factory=list)  # the submission's functions the run called, in first-call order
    loss_lines: list = field(default_factory=list)  # lines whose cross_entropy calls gave the losses


def _walk(value, label, depth, n, exposed, scalars, seen):
    import torch

    if depth > 3 or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and value.dim() <= 1:
            scalars.append((label, float(value)))
        elif value.dim() == 1 and value.is_floating_point() and value.numel() in (n, n - 1):
            exposed.append((label, value.detach().double().cpu().numpy()))
        return
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and value.dtype.kind == "f" and value.size in (n, n - 1):
            exposed.append((label, value.astype(np.float64)))
        return
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float, np.integer, np.floating)):
        scalars.append((label, float(value)))
        return
    if isinstance(value, dict):
        for k, v in list(value.items())[:64]:
            _walk(v, f"{label}[{k!r}]", depth + 1, n, exposed, scalars, seen)
        return
    if isinstance(value, (list, tuple)):
        if len(value) <= 16:
            for i, v in enumerate(value):
                _walk(v, f"{label}[{i}]", depth + 1, n, exposed, scalars, seen)
        return
    if hasattr(value, "__dict__") and not inspect.isroutine(value) and not isinstance(value, torch.nn.Module):
        for k, v in list(vars(value).items())[:64]:
            if not k.startswith("_"):
                _walk(v, f"{label}.{k}", depth + 1, n, exposed, scalars, seen)


def _tracer(seen: dict, filename: str):
    """A profile hook recording which of the submission's functions were called."""
    def hook(frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code.co_filename == filename and code.co_name not in seen and not code.co_name.startswith("<"):
                seen[code.co_name] = code.co_firstlineno
    return hook


def run_entry(entry, kwargs_fn, stream: np.ndarray, index: StreamIndex, c2: bool = False,
              trace_file: str | None = None) -> Run:
    import sys

    import torch

    kwargs = kwargs_fn(torch.from_numpy(stream.copy()))
    REC.calls = []
    REC.n_elements = 0
    REC.reduced = []
    REC.c2 = {}
    REC.c2_calls = {}
    REC.active = True
    started = time.perf_counter()
    torch.manual_seed(0)
    seen: dict = {}
    if trace_file:
        sys.setprofile(_tracer(seen, trace_file))
    try:
        ret = entry.fn(**kwargs)
    except Exception as exc:
        sys.setprofile(None)
        REC.active = False
        tb = exc.__traceback__
        where = ""
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.endswith("train_gpt.py"):
                where = f" (train_gpt.py:{tb.tb_lineno})"
            tb = tb.tb_next
        return Run(False, f"{type(exc).__name__}: {str(exc)[:300]}{where}", time.perf_counter() - started,
                   functions=list(seen))
    sys.setprofile(None)
    REC.active = False
    run = Run(True, seconds=time.perf_counter() - started, c2=dict(REC.c2) if c2 else {}, functions=list(seen))
    n = len(stream)
    exposed: list = []
    _walk(ret, "return", 0, n, exposed, run.scalars, set())
    if exposed:
        exposed.sort(key=lambda e: (0 if "nll" in e[0].lower() or "loss" in e[0].lower() else 1, len(e[0])))
        label, arr = exposed[0]
        if arr.size == n - 1:
            arr = np.concatenate([[np.nan], arr])
        run.exposed, run.exposed_from = arr, label
    calls, pos, loss, grad, trained, col, sig = [], [], [], [], [], [], []
    sigs: dict = {}
    for ci, call in enumerate(REC.calls):
        sid = sigs.setdefault((call.target.shape, call.target.tobytes()), len(sigs))  # same targets, same call shape
        for row_t, row_l in zip(call.target, call.loss):
            p = index.map_row(row_t.tolist())
            p[row_t < 0] = -1
            calls.append(np.full(row_t.size, ci))
            pos.append(p)
            loss.append(row_l)
            grad.append(np.full(row_t.size, call.grad))
            trained.append(np.full(row_t.size, call.trained))
            col.append(np.arange(row_t.size))
            sig.append(np.full(row_t.size, sid))
    if calls:
        run.elements = {"call": np.concatenate(calls), "pos": np.concatenate(pos), "loss": np.concatenate(loss),
                        "grad": np.concatenate(grad), "trained": np.concatenate(trained), "col": np.concatenate(col), "sig": np.concatenate(sig)}
        # each (element, scale) a score's sum or mean consumed, in order (ids follow the calls'
        # row-major order, so an id is the element's index here)
        run.elements["consumed"] = (np.concatenate([ids for ids, _ in REC.reduced]) if REC.reduced
                                    else np.zeros(0, dtype=np.int64))
        run.elements["consumed_scale"] = (np.concatenate([np.full(ids.size, sc) for ids, sc in REC.reduced])
                                          if REC.reduced else np.zeros(0))
    REC.reduced = []
    run.loss_lines = sorted({c.line for c in REC.calls if c.line is not None})
    REC.calls = []
    return run


# ----------------------------------------------------------------------------- selections

# reduced: the computations a score's full sum or mean consumed, as often as it consumed them
# (followed through the scorer's slicing and scaling by the tracked loss tensor): what reached a
# total, not a guess; reducedlast: per position the last computation consumed (per-epoch
# accumulators overwritten each epoch, the last epoch's rescoring reported);
# maxctx: the computation where the position has the most context in its row (the
# scored tail of overlapping sliding windows, which slice the per-token losses they count);
# maxctxlast: the same, the last such computation (a multi-epoch pass counting its final epoch);
# lastpass: the first computation of the last pass, a pass starting again whenever the call that
# first computed the position recurs with the same targets (epochs over chunk windows that overlap)
MODES = ["reduced-any", "reducedlast-any", "first-nograd", "last-nograd", "first-untrained", "last-untrained", "first-any", "last-any", "all-nograd",
         "all-any", "maxctx-nograd", "maxctx-untrained", "maxctx-any", "maxctxlast-nograd", "maxctxlast-any", "lastpass-any", "lastpass-nograd"]


def select(el: dict, mode: str, n: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(per-position value with NaN = none, per-position count, element sum, element count)."""
    which, pool = mode.split("-")
    mask = {"nograd": ~el["grad"], "untrained": ~el["trained"], "any": np.ones_like(el["grad"])}[pool]
    idx = np.flatnonzero(mask)
    values = np.full(n, np.nan)
    counts = np.zeros(n, dtype=np.int64)
    if idx.size == 0:
        return values, counts, 0.0, 0
    pos, loss = el["pos"][idx], el["loss"][idx]
    mapped = pos >= 0
    if which == "all":
        np.add.at(counts, pos[mapped], 1)
        vals = np.zeros(n)
        np.add.at(vals, pos[mapped], loss[mapped])
        values = np.where(counts > 0, vals, np.nan)
        return values, counts, float(loss.sum()), int(idx.size)
    if which in ("reduced", "reducedlast"):
        if "consumed" not in el:
            return values, counts, 0.0, 0
        elem = el["consumed"]
        keep = mask[elem]
        elem, scale = elem[keep], el["consumed_scale"][keep]
        epos, eloss = el["pos"][elem], el["loss"][elem] * scale
        on = epos >= 0
        if which == "reducedlast":  # the last consumption of each position (and every unmapped one)
            last = np.zeros(epos.size, dtype=bool)
            _, rev_first = np.unique(epos[on][::-1], return_index=True)
            last[np.flatnonzero(on)[on.sum() - 1 - rev_first]] = True
            keep = last | ~on
            epos, eloss, on = epos[keep], eloss[keep], on[keep]
        np.add.at(counts, epos[on], 1)
        where, first = np.unique(epos[on], return_index=True)
        values[where] = eloss[on][first]
        return values, counts, float(eloss.sum()), int(eloss.size)
    if which in ("maxctx", "maxctxlast"):
        pos, loss, col = pos[mapped], loss[mapped], el["col"][idx][mapped]
        seq = np.arange(pos.size) if which == "maxctx" else -np.arange(pos.size)
        order = np.lexsort((seq, -col, pos))  # by position, most context first, then first (last) computed
        keep = np.ones(pos.size, dtype=bool)
        keep[1:] = pos[order][1:] != pos[order][:-1]
        chosen = order[keep]
        values[pos[chosen]] = loss[chosen]
        counts[pos[chosen]] = 1
        return values, counts, float(loss[chosen].sum()), int(chosen.size)
    if which == "lastpass":
        pos_m, loss_m, sig_m = pos[mapped].tolist(), loss[mapped], el["sig"][idx][mapped].tolist()
        first_sig: dict = {}
        chosen: dict = {}
        for i, (p, g) in enumerate(zip(pos_m, sig_m)):
            if p not in first_sig:
                first_sig[p], chosen[p] = g, i
            elif g == first_sig[p]:
                chosen[p] = i
        sel = np.fromiter(chosen.values(), dtype=np.int64, count=len(chosen))
        ps = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
        values[ps] = loss_m[sel]
        counts[ps] = 1
        return values, counts, float(loss_m[sel].sum()), int(sel.size)
    order = np.arange(idx.size) if which == "first" else np.arange(idx.size)[::-1]
    seen = np.zeros(n, dtype=bool)
    total, count = 0.0, 0
    for i in order:
        p = pos[i]
        if p < 0:
            total += loss[i]
            count += 1
        elif not seen[p]:
            seen[p] = True
            values[p] = loss[i]
            counts[p] = 1
            total += loss[i]
            count += 1
    return values, counts, total, count


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def per_position(run: Run, n: int, use_exposed: bool = True) -> dict:
    """The counted loss per position and how it was obtained."""
    if run.exposed is not None and use_exposed:
        vals = run.exposed.copy()
        vals[0] = np.nan
        counts = np.isfinite(vals).astype(np.int64)
        return {"values": vals, "counts": counts, "source": f"exposed per-token losses ({run.exposed_from})",
                "verified": True, "mode": "exposed"}
    if run.elements is None:
        return {"values": None, "counts": None, "source": "none", "verified": False, "mode": None}
    for mode in MODES:
        values, counts, total, count = select(run.elements, mode, n)
        if count == 0:
            continue
        # with the computations no stream position maps to (padding, masked targets) or without them
        mapped_total, mapped_count = float(np.nansum(values)), int(counts.sum())
        for t, c, how in ((total, count, ""), (mapped_total, mapped_count, ", positions in the stream only")):
            if c == 0:
                continue
            for label, value in run.scalars:
                if _close(t, value) or _close(t / c, value):
                    return {"values": values, "counts": counts, "mode": mode, "verified": True,
                            "source": f"intercepted cross_entropy, {mode} computation per position{how} "
                                      f"(its {'sum' if _close(t, value) else 'mean'} equals {label} = {value:.6g})"}
    mode = "last-nograd" if (~run.elements["grad"]).any() else "last-any"
    values, counts, _, _ = select(run.elements, mode, n)
    return {"values": values, "counts": counts, "mode": mode, "verified": False,
            "source": f"intercepted cross_entropy, {mode} computation per position (not tied to a returned total)"}


# ----------------------------------------------------------------------------- probes


def every_computation_moved(a: dict | None, b: dict | None, k: int) -> list[int]:
    """Positions before k whose every no-grad computation (every computation when none is
    no-grad) moved between two runs of the same entry: whichever one is counted moved.
    The runs must have made the same computations in the same order."""
    if a is None or b is None or a["pos"].size != b["pos"].size or a["pos"].size == 0:
        return []
    same = (a["pos"] == b["pos"]) & (a["pos"] > 0) & (a["pos"] < k)
    pool = ~a["grad"] if (~a["grad"]).any() else np.ones_like(a["grad"])
    m = same & pool
    if not m.any():
        return []
    pos = a["pos"][m]
    moved = np.abs(a["loss"][m] - b["loss"][m]) > ATOL
    n_all = np.bincount(pos, minlength=k)
    n_moved = np.bincount(pos, weights=moved.astype(np.float64), minlength=k)
    return [int(p) for p in np.flatnonzero((n_all > 0) & (n_moved == n_all))]


def computations_moved(a: dict | None, b: dict | None, k: int) -> dict[int, float]:
    """Positions before k with any computation (counted or not) that moved: position -> largest change."""
    if a is None or b is None or a["pos"].size != b["pos"].size or a["pos"].size == 0:
        return {}
    m = (a["pos"] == b["pos"]) & (a["pos"] > 0) & (a["pos"] < k)
    d = a["loss"][m] - b["loss"][m]
    out: dict[int, float] = {}
    for p, v in zip(a["pos"][m][np.abs(d) > ATOL].tolist(), d[np.abs(d) > ATOL].tolist()):
        if abs(v) > abs(out.get(p, 0.0)):
            out[p] = v
    return out


def probe_c1(base: dict, flipped: dict, k: int, all_moved: list[int] | None = None,
             any_moved: dict[int, float] | None = None) -> dict:
    a, b = base["values"], flipped["values"]
    both = np.isfinite(a[:k]) & np.isfinite(b[:k])
    both[0] = False
    checked = int(both.sum())
    if checked == 0:
        return {"status": "not_run", "reason": f"no per-token loss before position {k} could be compared"}
    diff = np.where(both, np.abs(a[:k] - b[:k]), 0.0)
    changed = np.flatnonzero(diff > ATOL)
    out = {"status": "fail" if changed.size else "pass", "flipped": k, "checked": checked,
           "changed": int(changed.size), "source": base["source"], "verified": base["verified"],
           "max_abs": float(diff.max())}
    if changed.size:
        worst = int(changed[np.argmax(diff[changed])])
        out.update(worst_position=worst, worst_delta=float(a[worst] - b[worst]), max_abs=float(diff[worst]),
                   first_changed=int(changed[0]), sample=[[int(p), float(a[p] - b[p])] for p in changed[:8]])
        if not out["verified"] and all_moved:
            # not tied to a returned total, but every computation of these positions moved: the counted one did
            out.update(verified=True, all_moved=len(all_moved), all_moved_sample=all_moved[:8])
    elif not base["verified"] and any_moved:
        # the counted losses are unknown and the guessed selection did not move, but other
        # computations of earlier positions did: not a pass, an unverified failure
        ps = sorted(any_moved)
        worst = max(ps, key=lambda p: abs(any_moved[p]))
        out.update(status="fail", changed=len(ps), worst_position=worst, worst_delta=any_moved[worst],
                   max_abs=abs(any_moved[worst]), first_changed=ps[0], sample=[[p, any_moved[p]] for p in ps[:8]],
                   uncounted=True)
    return out


def probe_c4(base: dict, stream: np.ndarray, bos: int, window: int = 64) -> dict:
    """Every target scored exactly once. Targets never scored or scored twice only within one
    evaluation `window` of the stream's start or end (the first window's head left unscored, a
    final partial window scored again) are a deviation: at the real scale that is at most one
    window of the whole validation set, the edge of how windows tile the stream, not a pass
    that leaves or rescores tokens through the stream."""
    counts = base["counts"]
    if counts is None:
        return {"status": "not_run", "reason": "no per-token losses: nothing to count"}
    n = len(stream)
    targets = np.arange(1, n)
    c = counts[1:]
    missing = targets[c == 0]
    twice = targets[c > 1]
    bos_missing = [int(p) for p in missing if stream[p] == bos]
    other_missing = [int(p) for p in missing if stream[p] != bos]
    tail = [p for p in other_missing if p >= n - window]
    wrong = [*other_missing, *(int(p) for p in twice)]
    at_edges = bool(wrong) and all(p <= window or p >= n - window for p in wrong)
    status = ("deviation" if at_edges else "fail") if wrong else ("deviation" if bos_missing else "pass")
    if not base["verified"] and status != "pass" and not twice.size:
        status = "unverified" if other_missing else status
    return {"status": status, "targets": int(n - 1), "scored": int((c > 0).sum()), "twice": int(twice.size),
            "max_times": int(c.max()) if c.size else 0, "missing": len(other_missing), "bos_missing": len(bos_missing),
            "tail_missing": len(tail), "first_missing": other_missing[:8], "first_twice": [int(p) for p in twice[:8]],
            "at_edges": at_edges, "window": window, "source": base["source"], "verified": base["verified"]}


def probe_bos(base: dict, changed: dict, doc: tuple[int, int], stream: np.ndarray, bos: int) -> dict:
    a, b = base["values"], changed["values"]
    lo, hi = doc  # targets lo+1..hi belong to the changed document (hi: the next BOS)
    n = len(a)
    outside = np.ones(n, dtype=bool)
    outside[0] = False
    outside[lo + 1 : hi + 1] = False
    both = outside & np.isfinite(a) & np.isfinite(b)
    checked = int(both.sum())
    if checked == 0:
        return {"status": "not_run", "reason": "no per-token loss outside the changed document"}
    diff = np.where(both, np.abs(a - b), 0.0)
    moved = np.flatnonzero(diff > ATOL)
    starts = doc_starts(stream, bos)
    out = {"status": "fail" if moved.size else "pass", "doc": [lo, hi], "checked": checked, "changed": int(moved.size),
           "source": base["source"], "max_abs": float(diff.max())}
    if moved.size:
        worst = int(moved[np.argmax(diff[moved])])
        docs = sorted({max(s for s in starts if s < p) if any(s < p for s in starts) else 0 for p in moved})
        out.update(worst_position=worst, worst_delta=float(a[worst] - b[worst]), max_abs=float(diff[worst]),
                   documents=docs[:8], n_documents=len(docs))
    return out


def probe_c2(c2: dict) -> dict:
    if not c2:
        return {"status": "not_applicable", "reason": "no function returning a candidate-token probability or a "
                                                      "vocabulary-sized distribution was called"}
    worst_fn, worst = None, None
    for fn, samples in c2.items():
        for s in samples:
            if worst is None or abs(s["sum"] - 1) > abs(worst["sum"] - 1):
                worst_fn, worst = fn, s
    status = "fail" if abs(worst["sum"] - 1) > 1e-3 else "pass"
    return {"status": status, "function": worst_fn, "sum": worst["sum"], "kind": worst["kind"],
            "arg": worst.get("arg"), "call": worst["call"], "candidates": worst["candidates"],
            "functions": {fn: [round(s["sum"], 6) for s in samples] for fn, samples in c2.items()}}
