"""Helpers shared by rules (conventions about targets, hashes, statements)."""

from __future__ import annotations

import re
from typing import Iterable

import libcst as cst

from .facts import Facts, FuncInfo, dotted, target_names

TARGET_NAME_RE = re.compile(
    r"^(y|ys|yb|y_true|y_batch|gold|labels?|targets?|tgts?|tgt_ids|target_ids|target_tok(en)?s?|"
    r"next_tok(en)?s?|next_ids|true_tok(en)?s?|tok_next|actual(_tok(en)?)?|realized(_tok(en)?)?)$"
    r"|target|tgt",
    re.I,
)
_HASH_CALL_RE = re.compile(r"(hash|xxh|murmur|fnv|crc)", re.I)
HASH_OPS = (cst.BitXor, cst.Modulo, cst.BitAnd, cst.LeftShift, cst.Multiply)


def is_target_name(name: str) -> bool:
    return bool(TARGET_NAME_RE.search(name))


def slice_parts(sub: cst.Subscript) -> list[cst.BaseSlice]:
    return [el.slice for el in sub.slice]


def realized_subscripts(facts: Facts, subscripts: Iterable[cst.Subscript]) -> dict[str, set[str]]:
    """``base -> {idx text}`` where one function's ``subscripts`` slice ``base[...:idx]`` (a
    context ending at idx), so that ``base[idx]`` is the realized token at that position."""
    out: dict[str, set[str]] = {}
    for sub in subscripts:
        for sl in slice_parts(sub):
            if isinstance(sl, cst.Slice) and sl.upper is not None and sl.lower is not None:
                out.setdefault(dotted(sub.value) or facts.code(sub.value), set()).add(
                    facts.code(sl.upper).replace(" ", ""))
    return out


def names_in_order(facts: Facts, node: cst.CSTNode) -> list[str]:
    """The names read in ``node`` (``Facts.names``, less its string markers) in source
    order: which one a message names must not change with a set's order between runs."""
    return list(dict.fromkeys(n.value for n in facts.subtree_of(node, cst.Name)))


def target_exprs_in(facts: Facts, node: cst.CSTNode, func: FuncInfo | None,
                    target_vars: set[str], realized: dict[str, set[str]]) -> list[str]:
    """Texts of target-token expressions occurring in ``node``."""
    found: list[str] = []
    structural = facts.targets(func)
    for n in names_in_order(facts, node):
        if n in target_vars or n in structural or is_target_name(n):
            found.append(n)

    if realized:
        for s in facts.subtree_of(node, cst.Subscript):
            base = dotted(s.value) or ""
            if base in realized:
                for sl in slice_parts(s):
                    if isinstance(sl, cst.Index) and facts.code(sl.value).replace(" ", "") in realized[base]:
                        found.append(facts.code(s))
    return found


def has_hash_op(facts: Facts, node: cst.CSTNode) -> bool:
    """``node`` holds a hashing operator (``^``, ``%``, ``&``, ``<<``, ``*``) or a hash call."""
    return any(isinstance(n.operator, HASH_OPS) for n in facts.subtree_of(node, cst.BinaryOperation)) or any(
        _HASH_CALL_RE.search(dotted(n.func)) for n in facts.subtree_of(node, cst.Call))


def stored_subscripts(facts: Facts) -> set[cst.CSTNode]:
    out: set[cst.CSTNode] = set()
    for ai in facts.assigns:
        for t in ai.targets:
            if isinstance(t, cst.Subscript):
                out.add(t)
    return out


def assigned_names(ai) -> list[str]:
    out: list[str] = []
    for t in ai.targets:
        out += target_names(t)
    return out


# --------------------------------------------------------------------------
# ordering of scoring and update occurrences (C3)

UPDATE_KINDS = {"grad", "step", "cache"}


def enclosing_loops(facts: Facts, func: FuncInfo | None, line: int):
    return [li for li, _ctx in facts.loops if li.func is func and li.start <= line <= li.end]


def interleaved(facts: Facts, func: FuncInfo | None, line: int) -> bool:
    """Is there a scoring occurrence before ``line`` inside a loop of ``func`` that
    also encloses ``line``? (score chunk i, then update on it: the PR #549 shape)."""
    loops = enclosing_loops(facts, func, line)
    if not loops:
        return False
    for s_line, _e, _ctx, _n in facts.occurrences(func, {"score"}):
        if s_line < line and any(li.start <= s_line <= li.end for li in loops):
            return True
    return False


def later_score(facts: Facts, func: FuncInfo | None, line: int, depth: int = 0, seen=None):
    """After an update at ``line`` in ``func``: ("protected", None) when a caller
    interleaves scoring before it, ("after", (line, func)) when something is scored
    later, ("none", None) otherwise."""
    seen = seen if seen is not None else set()
    for s_line, _e, _ctx, _n in facts.occurrences(func, {"score"}):
        if s_line > line:
            return "after", (s_line, func)
    if func is None or depth > 3 or func in seen:
        return "none", None
    seen.add(func)
    results = []
    for ci in facts.calls:
        if ci.attr != func.name or func not in facts.callees(ci) or ci.ctx.func is func:
            continue
        cf = ci.ctx.func
        if interleaved(facts, cf, ci.line):
            results.append(("protected", None))
            continue
        results.append(later_score(facts, cf, ci.end, depth + 1, seen))
    for r in results:
        if r[0] == "after":
            return r
    for r in results:
        if r[0] == "protected":
            return r
    return "none", None


# --------------------------------------------------------------------------
# state carried over from an earlier iteration of a loop (context-only SLOT, lagged
# updates): ``prev = (h, y, mask)`` assigned late in the body, unpacked before the fit


def carried_status(facts: Facts, func: FuncInfo, outer, name: str, at: int, seen: frozenset = frozenset()) -> str:
    """Where the value of ``name`` read at line ``at`` inside loop ``outer`` comes from:
    'carried' (assigned later in the loop body: the previous iteration's value),
    'current' (computed in this iteration before ``at``) or 'static' (not assigned
    in the loop)."""
    if name in outer.targets:
        return "current"
    defs = [(ln, v) for ln, v in func.defs.get(name, []) if outer.start <= ln <= outer.end]
    if not defs:
        return "static"
    before = [d for d in defs if d[0] < at]
    if not before:
        return "carried"
    ln, val = before[-1]
    if val is None or (name, ln) in seen or len(seen) > 12:
        return "current"
    sub = {carried_status(facts, func, outer, n, ln, seen | {(name, ln)}) for n in facts.names(val) if n != name}
    if "carried" in sub and "current" not in sub:
        return "carried"
    return "current"


def objective_leaves(facts: Facts, func: FuncInfo, fit, values, skip=()) -> set[str]:
    """Names the objective ``values`` is computed from, following definitions made inside
    the ``fit`` region (lines ``fit.start..fit.end``: logits, nll) back to what they read."""
    in_fit: dict[str, list] = {}
    for n, defs in func.defs.items():
        for ln, v in defs:
            if fit.start <= ln <= fit.end and v is not None:
                in_fit.setdefault(n, []).append(v)
    todo = [n for v in values for n in facts.names(v)]
    leaves: set[str] = set()
    seen: set[str] = set()
    while todo:
        n = todo.pop()
        if n in seen or n in skip:
            continue
        seen.add(n)
        if n in in_fit:  # defined inside the fit region: what is it computed from?
            for v in in_fit[n]:
                todo.extend(facts.names(v))
        else:
            leaves.add(n)
    return leaves


def carried_objective(facts: Facts, func: FuncInfo, fit, outer, values, later_uses, skip=(),
                      leaf_ok=None) -> bool:
    """The objective ``values`` fitted in ``fit`` reads only state carried over from an
    earlier iteration of ``outer`` (plus state not assigned in the loop), and none of
    ``later_uses`` (``(line, node)``: what is scored after the fit) reads that carried
    state: the prefetch shape, where the carried batch is the one scored next, fails.
    ``leaf_ok(name)`` may veto a leaf that is not assigned in the loop."""
    leaves = objective_leaves(facts, func, fit, values, skip)
    status = {n: carried_status(facts, func, outer, n, fit.start) for n in leaves}
    if "carried" not in status.values() or "current" in status.values():
        return False
    if leaf_ok is not None and not all(leaf_ok(n) for n, st in status.items() if st == "static"):
        return False
    for line, node in later_uses:
        if any(carried_status(facts, func, outer, n, line) == "carried" for n in facts.names(node) if n not in skip):
            return False
    return True
