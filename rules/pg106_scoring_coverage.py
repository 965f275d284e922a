from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts import Ctx, Facts, FuncInfo, LoopInfo, dotted, iter_nodes

# SP8192 validation split (RULEBOOK): used to say how many tokens a truncation drops
VAL_TOKENS_SP8192 = 47_851_520

_EVALISH_RE = re.compile(r"(eval|score|val|nll|bpb|sliding|window)", re.I)
_FRESH_NAME_RE = re.compile(r"(mask|weight|fresh|scored|keep|new_tok|valid_pos|count_from)", re.I)
_BOS_RE = re.compile(r"bos", re.I)
_SPLIT_CALL_RE = re.compile(r"^(nonzero|where|flatnonzero|argwhere|split|tensor_split|searchsorted)$")
_LEN_RE = re.compile(r"(numel|len\(|size|shape|total|\bn\b|n_tok|ntok|num_tok|length)", re.I)


def _terms(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    """Additive terms of ``a + b + 1`` (subtractions are kept whole)."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        return _terms(node.left) + _terms(node.right)
    return [node]


def _range_args(it: cst.BaseExpression | None) -> list[cst.BaseExpression] | None:
    if isinstance(it, cst.Call) and dotted(it.func) == "range" and all(a.keyword is None for a in it.args):
        return [a.value for a in it.args]
    return None


class _Window:
    """A loop ``for v in range(lo, stop, step)`` slicing ``X[v : v + W]``."""

    def __init__(self, li: LoopInfo, ctx: Ctx, var: str, stop, step, width, base: str, sub) -> None:
        self.li, self.ctx, self.var, self.stop, self.step = li, ctx, var, stop, step
        self.width, self.base, self.sub = width, base, sub


def _width_of(facts: Facts, expr: cst.BaseExpression, var: str) -> cst.BaseExpression | None:
    terms = _terms(expr)
    if not any(isinstance(t, cst.Name) and t.value == var for t in terms):
        return None
    rest = [t for t in terms if not (isinstance(t, cst.Name) and t.value == var) and not isinstance(t, cst.Integer)]
    return rest[0] if len(rest) == 1 else None


def _windows(facts: Facts) -> list[_Window]:
    out: list[_Window] = []
    subs_by_func: dict = {}
    for sub, line, ctx in facts.subscripts:
        subs_by_func.setdefault(ctx.func, []).append((sub, line))
    for li, ctx in facts.loops:
        if not isinstance(li.node, cst.For) or len(li.targets) != 1:
            continue
        args = _range_args(li.iter)
        if not args or len(args) != 3:
            continue
        var = li.targets[0]
        for sub, line in subs_by_func.get(li.func, ()):
            if not (li.start < line <= li.end):
                continue
            sl = sub.slice[-1].slice if sub.slice else None
            if not isinstance(sl, cst.Slice) or sl.lower is None or sl.upper is None:
                continue
            lower_terms = _terms(sl.lower)
            if not any(isinstance(t, cst.Name) and t.value == var for t in lower_terms):
                continue
            width = _width_of(facts, sl.upper, var)
            if width is None:
                continue
            base = dotted(sub.value) or facts.code(sub.value)
            out.append(_Window(li, ctx, var, args[1], args[2], width, base, sub))
            break
    return out


def _overlaps(facts: Facts, w: _Window) -> bool | None:
    st, wt = facts.code(w.step).replace(" ", ""), facts.code(w.width).replace(" ", "")
    if st == wt:
        return False
    sv, wv = facts.eval(w.step, w.li.func), facts.eval(w.width, w.li.func)
    if isinstance(sv, (int, float)) and isinstance(wv, (int, float)):
        return sv < wv
    if "stride" in st.lower() or "step" in st.lower() or "hop" in st.lower():
        return True
    return None


def _fresh_slice(facts: Facts, sub: cst.Subscript, window_vars: set[str]) -> bool:
    """``nll[s:]``, ``nll[:, -stride:]``, ``nll[i, s:wlen]``: a computed lower bound.
    Not the window's own slice (``X[v:v + W]``) nor a target shift (``y[1:]``)."""
    for el in sub.slice:
        sl = el.slice
        if isinstance(sl, cst.Slice) and sl.lower is not None and not isinstance(sl.lower, cst.Integer) \
                and not (facts.names(sl.lower) & window_vars):
            return True
    return False


def _fresh_aware(facts: Facts, node: cst.CSTNode, func: FuncInfo | None, line: int,
                 step_names: set[str], window_vars: set[str], depth: int = 0, seen: set | None = None) -> bool:
    """Does the scored expression count only the fresh part of a window?"""
    seen = seen if seen is not None else set()
    if any(isinstance(s, cst.Subscript) and _fresh_slice(facts, s, window_vars) for s in iter_nodes(node)):
        return True
    names = facts.names(node)
    if names & step_names or any(_FRESH_NAME_RE.search(n) for n in names):
        return True
    if depth >= 3 or func is None:
        return False
    for n in names:
        if n in seen or n in window_vars:
            continue
        seen.add(n)
        defs = [d for d in func.defs.get(n, ()) if d[0] <= line and d[1] is not None]
        if defs and _fresh_aware(facts, defs[-1][1], func, defs[-1][0], step_names, window_vars,
                                  depth + 1, seen):
            return True
    return False


def _score_sites(facts: Facts, func, lo: int, hi: int):
    for s in facts.sites:
        if s.kind == "score" and s.ctx.func is func and lo <= s.line <= hi:
            yield s


def _site_expr(s) -> cst.CSTNode:
    node = s.node
    if isinstance(node, cst.AugAssign):
        return node.value
    if isinstance(node, cst.Assign):
        return node.value
    return node


def _floor_mul(node: cst.CSTNode) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """``(A // L) * L`` -> (A, L)."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
        left = node.left
        if isinstance(left, cst.BinaryOperation) and isinstance(left.operator, cst.FloorDivide):
            if cst.Module([]).code_for_node(left.right).strip() == cst.Module([]).code_for_node(node.right).strip():
                return left.left, node.right
    return None


def _tail_count(facts: Facts, length_expr, L, func) -> str:
    lv = facts.eval(L, func)
    minus_one = facts.code(length_expr).replace(" ", "").strip("()").endswith("-1")
    if isinstance(lv, int) and lv > 0:
        n = ((VAL_TOKENS_SP8192 - 1) if minus_one else VAL_TOKENS_SP8192) % lv
        return (f"{n} tokens for the {VAL_TOKENS_SP8192:,}-token SP8192 validation set "
                f"with a length of {lv} (up to {lv - 1} for other tokenizers)")
    return f"up to `{facts.code(L).strip()}` - 1 tokens"


@register
class ScoringCoverage(Rule):
    """Validation tokens scored twice, or not at all.

    What it flags:
        (1) ILLEGAL: a sliding-window evaluator whose windows overlap (the loop
        steps by ``stride`` while each window spans ``seq_len > stride`` tokens)
        but which adds every position of each window to the totals
        (``loss_sum += nll.sum()``) instead of only the fresh part
        (``nll[s:]``, ``nll[:, -stride:]``): tokens in the overlap are scored up
        to ``seq_len / stride`` times, each time with more context.
        (2) WARNING, a deviation: the stream's tail is never scored, either
        because validation tokens are truncated to a multiple of the sequence
        length (``usable = (n - 1) // seq_len * seq_len``, the official
        baseline does this) with the remainder never evaluated, or because the
        window loop stops a full window early (``range(0, n - seq_len, step)``)
        with no tail window. The message gives the count for the SP8192 split
        when the length can be evaluated.
        (3) INFO, a deviation: an evaluator that splits the stream at BOS and
        scores documents separately; the BOS of each document is then only
        context, never a target.

    Why: the ruling:
        C4 (issue #1017): every validation token except the first is scored
        exactly once. RULEBOOK "BOS boundaries" (PR #1797 audit): evaluators
        that drop the stream's tail are wrong; not scoring BOS as a target is
        accepted in practice but is a deviation worth reporting.

    Legal alternative:
        Sliding window: score only ``[s:wlen]`` of each window, where ``s`` is 0
        for the first window and ``wlen - stride`` after it, and clamp the last
        window to the end of the stream (``end = min(ws + seq_len, total)``) so
        the tail is scored once. Non-overlapping windows: add a final shorter
        window for the remainder.

    Known limits:
        Windows are recognised as ``for v in range(lo, stop, step)`` slicing
        ``X[v : v + W]``; window starts built in a comprehension and consumed
        elsewhere are not analysed. A score counting "fresh only" is recognised
        by a non-zero slice start, a mask/weight name or a name computed from
        the stride, so a helper that slices internally with none of these in
        its arguments is taken as counting the whole window. Tail handling is
        recognised by a scoring site after the window loop or a slice starting
        at the truncation point.
    """

    code = "PG106"
    slug = "scoring-coverage"
    severity = Severity.ILLEGAL
    conditions = ("C4",)
    reference = "issue #1017 (C4); PR #1797 audit (BOS, tail coverage)"

    INVALID = [
        # overlapping windows, every position of each window summed
        '''
import torch
import torch.nn.functional as F
@torch.no_grad()
def eval_windows(model, val_tokens, seq_len, stride):
    loss_sum, count = 0.0, 0
    for a in range(0, val_tokens.numel() - 1, stride):
        x = val_tokens[a:a + seq_len][None]
        y = val_tokens[a + 1:a + seq_len + 1][None]
        nll = F.cross_entropy(model(x)[0], y[0], reduction="none")
        loss_sum += nll.sum().item()
        count += nll.numel()
    return loss_sum / count
''',
        # the same with the loss returned per window and multiplied back up
        '''
import torch
class Hyperparameters:
    seq_len = 2048
    eval_stride = 256
@torch.no_grad()
def sliding_bpb(model, val_tokens, args):
    total_loss = 0.0
    for start in range(0, len(val_tokens) - 1, args.eval_stride):
        chunk = val_tokens[start:start + args.seq_len + 1]
        loss = model(chunk[:-1][None], chunk[1:][None])
        total_loss += loss.item() * (len(chunk) - 1)
    return total_loss
''',
    ]
    VALID = [
        # sliding window counting only the fresh part, tail window clamped
        '''
import torch
import torch.nn.functional as F
@torch.no_grad()
def eval_sliding(model, val_tokens, seq_len, stride):
    total = val_tokens.numel() - 1
    loss_sum, count = 0.0, 0
    for ws in range(0, total, stride):
        end = min(ws + seq_len, total)
        wlen = end - ws
        x = val_tokens[ws:end][None]
        y = val_tokens[ws + 1:end + 1][None]
        nll = F.cross_entropy(model(x)[0], y[0], reduction="none")
        s = 0 if ws == 0 else max(wlen - stride, 0)
        loss_sum += nll[s:wlen].sum().item()
        count += wlen - s
        if end == total:
            break
    return loss_sum / count
''',
        # last-stride slice spelled differently
        '''
import torch
@torch.no_grad()
def eval_stride(model, val_tokens, seq_len, stride):
    nll_sum = 0.0
    for a in range(0, val_tokens.numel() - 1, stride):
        x = val_tokens[a:a + seq_len]
        y = val_tokens[a + 1:a + seq_len + 1]
        per_tok = model.nll(x[None], y[None])[0]
        fresh = per_tok if a == 0 else per_tok[-stride:]
        nll_sum += fresh.sum().item()
    return nll_sum
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        yield from self._double_counting(facts)
        yield from self._truncation(facts)
        yield from self._bos_split(facts)

    # (1) overlapping windows counted whole, (2b) loops stopping a window early
    def _double_counting(self, facts: Facts) -> Iterator[Hit]:
        for w in _windows(facts):
            func = w.li.func
            if not (facts.tainted(w.base.split(".")[0].split("[")[0], func, w.li.start)
                    or (func is not None and _EVALISH_RE.search(func.name))):
                continue
            sites = list(_score_sites(facts, func, w.li.start, w.li.end))
            ov = _overlaps(facts, w)
            step_t, width_t = facts.code(w.step).strip(), facts.code(w.width).strip()
            if ov:
                step_names = facts.names(w.step) - _config_holders(facts, w.step)
                for s in sites:
                    if _fresh_aware(facts, _site_expr(s), func, s.line, step_names, {w.var}):
                        continue
                    yield Hit(
                        s.node,
                        f"overlapping windows (step `{step_t}` < window `{width_t}`, loop line "
                        f"{w.li.start}) but `{s.target}` adds every position of each window, not only "
                        f"the fresh last `{step_t}`: tokens in the overlap are scored several times (C4)",
                        evidence=facts.line_text(w.li.start) + facts.line_text(w.sub and facts.span(w.sub)[0])
                        + facts.line_text(s.line),
                        lines=(w.li.start, s.end) if s.end - w.li.start <= 40 else (s.line, s.end),
                        ctx=s.ctx, key=f"double count {s.target}")
                    break
                continue
            # the loop stops a window early: range(.., n - W.., step) and no tail window after it
            stop = w.stop
            if not (isinstance(stop, cst.BinaryOperation) and isinstance(stop.operator, cst.Subtract)):
                continue
            if facts.code(w.width).replace(" ", "") not in facts.code(stop).replace(" ", ""):
                continue
            if not sites or not _LEN_RE.search(facts.code(stop.left)):
                continue
            after = [s for s in facts.sites if s.kind == "score" and s.ctx.func is func and s.line > w.li.end]
            if after or _has_clamp(facts, func, w):
                continue
            yield Hit(
                w.li.node,
                f"deviation: the window loop stops at `{facts.code(stop).strip()}` and no window covers "
                f"the stream's tail: up to `{width_t}` validation tokens at the end are never scored",
                evidence=facts.line_text(w.li.start),
                lines=(w.li.start, w.li.start), ctx=w.ctx, severity=Severity.WARNING,
                key="tail dropped by window loop")

    # (2a) truncation to a multiple of the sequence length
    def _truncation(self, facts: Facts) -> Iterator[Hit]:
        lowers: set[str] = set()
        for sub, _line, _ctx in facts.subscripts:
            for el in sub.slice:
                if isinstance(el.slice, cst.Slice) and el.slice.lower is not None:
                    lowers |= facts.names(el.slice.lower)
        done: set = set()
        for ai in facts.assigns:
            if ai.op != "=" or ai.value is None or ai.ctx.func in done:
                continue
            fm = _floor_mul(ai.value)
            if fm is None:
                continue
            length_expr, L = fm
            func = ai.ctx.func
            valish = facts.expr_tainted(length_expr, func, ai.line) or (
                func is not None and _val_func(func.name))
            if not valish:
                continue
            names = [n for t in ai.targets for n in facts.names(t)]
            if any(n in lowers for n in names):  # X[usable:] is scored somewhere
                continue
            done.add(func)
            yield Hit(
                ai.node,
                f"deviation: validation tokens truncated to a multiple of `{facts.code(L).strip()}` "
                f"(`{facts.code(ai.value).strip()}`); the tail is never scored: "
                f"{_tail_count(facts, length_expr, L, func)}",
                ctx=ai.ctx, severity=Severity.WARNING, key="tail truncated")

    # (3) documents split at BOS and scored separately
    def _bos_split(self, facts: Facts) -> Iterator[Hit]:
        for fi in facts.funcs:
            kinds = facts.func_kinds.get(fi, set())
            if "score" not in kinds:
                continue
            split_line = None
            for ci in facts.calls_by_func.get(fi, ()):
                if not _SPLIT_CALL_RE.match(ci.attr or ""):
                    continue
                text = facts.code(ci.node)
                if _BOS_RE.search(text) and re.search(r"==", text):
                    split_line = ci.line
                    break
            if split_line is None:
                continue
            yield Hit(
                fi.node,
                f"deviation: `{fi.qualname}` splits the validation stream at BOS (line {split_line}) and "
                f"scores documents separately: the BOS token of each document is never scored as a "
                f"target (accepted in practice)",
                evidence=facts.line_text(split_line),
                lines=(fi.start, fi.start), ctx=fi.ctx, severity=Severity.INFO, confidence="medium",
                key=f"bos not scored {fi.qualname}")


def _config_holders(facts: Facts, node: cst.CSTNode) -> set[str]:
    """Names used in ``node`` only as the object of a configuration setting
    (``args`` in ``args.stride`` when ``stride`` is a known setting, ``self`` in
    ``self.cfg.stride``): they hold the configuration, not a position."""
    out: set[str] = set()
    for n in iter_nodes(node):
        if isinstance(n, cst.Attribute) and n.attr.value in facts.config:
            out |= facts.names(n.value)
    return out


def _val_func(name: str) -> bool:
    return bool(re.search(r"(^|_)(val|valid|validation)(_|$)", name, re.I))


def _has_clamp(facts: Facts, func, w: _Window) -> bool:
    """``min(v + W, total)`` in the loop: the last window is clamped, not dropped."""
    for ci in facts.calls_by_func.get(func, ()):
        if ci.name == "min" and w.li.start <= ci.line <= w.li.end and w.var in facts.names(ci.node):
            return True
    return False
