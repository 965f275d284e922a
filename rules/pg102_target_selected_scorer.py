from __future__ import annotations

from typing import Iterator

import libcst as cst

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts import Facts, FuncInfo, base_name, dotted, iter_nodes, target_names
from .facts.nodes import children
from .facts.target_values import C, L, P, R, T, TargetValues, is_constant, target_values

# element-wise choice between two tensors / numbers (matched on the import-resolved
# name: ``import torch as T; T.minimum`` is ``torch.minimum``)
_PAIR_FUNCS = {"minimum", "maximum", "fmin", "fmax"}
_LIB = {"torch", "np", "numpy", "jnp", "jax", "math", "F"}
_REDUCE = {"min", "max", "amin", "amax"}
_WHERE = {"where"}
_CLAMP = {"clamp", "clip", "clamp_", "clip_"}
_ACCUM_METHODS = {"add_", "append", "extend", "index_add_", "scatter_add_"}


def _pos(call: cst.Call) -> list[cst.BaseExpression]:
    return [a.value for a in call.args if a.keyword is None and a.star == ""]


def _kw(call: cst.Call) -> dict[str, cst.BaseExpression]:
    return {a.keyword.value: a.value for a in call.args if a.keyword is not None}


def _is_dim(node: cst.CSTNode) -> bool:
    return type(node) is cst.Integer or (type(node) is cst.UnaryOperation
                                             and type(node.expression) is cst.Integer)


class _Analysis:
    """Where chosen losses go: forward flows per function, the totals, the returns."""

    def __init__(self, facts: Facts, tv: TargetValues):
        self.f, self.tv = facts, tv
        self.edges: dict[int, dict[str, set[str]]] = {}
        self.totals: dict[int, set[str]] = {}
        self.objectives: dict[int, set[str]] = {}
        self.returned: dict[int, set[str]] = {}
        for ai in facts.assigns:
            if ai.value is None:
                continue
            fid = id(ai.ctx.func)
            src = facts.names(ai.value)
            for t in ai.targets:
                dst = target_names(t) or [base_name(t)]
                for d in dst:
                    if d:
                        for s in src:
                            self.edges.setdefault(fid, {}).setdefault(s, set()).add(d)
                        if ai.op != "=" or (type(ai.value) is cst.BinaryOperation and d in src):
                            if L in tv.of(ai.value, ai.ctx.func):
                                self.totals.setdefault(fid, set()).add(d)
        for ci in facts.calls:
            fn = ci.node.func
            if type(fn) is cst.Attribute and ci.attr in _ACCUM_METHODS | {"copy_", "index_put_"}:
                b = base_name(fn.value)
                fid = id(ci.ctx.func)
                for a in ci.node.args:
                    for s in facts.names(a.value):
                        self.edges.setdefault(fid, {}).setdefault(s, set()).add(b)
                    if ci.attr in _ACCUM_METHODS and L in tv.of(a.value, ci.ctx.func):
                        self.totals.setdefault(fid, set()).add(b)
        for s in facts.sites:
            fid = id(s.ctx.func)
            if s.kind == "score" and s.target:
                self.totals.setdefault(fid, set()).add(s.target)
            elif s.kind == "grad" and s.target:
                self.objectives.setdefault(fid, set()).add(s.target)
        for fi in facts.funcs:  # what a function returns as a loss (not its byte count)
            for r in fi.returns:
                if r.value is None:
                    continue
                els = [e.value for e in r.value.elements] if type(r.value) is cst.Tuple else [r.value]
                for el in els:
                    if L in tv.of(el, fi):
                        self.returned.setdefault(id(fi), set()).update(facts.names(el))
        for fid, objs in self.objectives.items():  # a sum that is differentiated is an objective
            self.totals.get(fid, set()).difference_update(objs)

    def closure(self, func: FuncInfo | None, names: set[str]) -> set[str]:
        edges = self.edges.get(id(func), {})
        seen = set(names)
        todo = list(names)
        while todo:
            for d in edges.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    def reaches(self, func: FuncInfo | None, names: set[str], depth: int = 0) -> str | None:
        """The total (or ``return``) the values ``names`` of ``func`` flow into, if any."""
        names = {n for n in names if n}
        if not names:
            return None
        cl = self.closure(func, names)
        if cl & self.objectives.get(id(func), set()):
            return None
        hit = cl & self.totals.get(id(func), set())
        if hit:
            return f"`{sorted(hit)[0]}`"
        if func is None or not (cl & self.returned.get(id(func), set())):
            return None
        callers = [ci for ci in self.f.calls if ci.attr == func.name and func in self.f.callees(ci)]
        if not callers or depth >= 3:
            return f"the return value of `{func.name}`"
        for ci in callers:
            st = _statement(self.f, ci.node, ci.ctx.func, ci.line)
            got = self.reaches(ci.ctx.func, st, depth + 1) if st else None
            if got:
                return got
        # no caller totals it: an evaluation reports what it returns, while a training
        # function that returns its best validation loss for a log line does not
        if self.f.func_kinds.get(func, set()) & {"grad", "step"}:
            return None
        return f"the return value of `{func.name}`"


def _contains(outer: cst.CSTNode, inner: cst.CSTNode) -> bool:
    return any(n is inner for n in iter_nodes(outer))


def _statement(facts: Facts, node: cst.CSTNode, func: FuncInfo | None, line: int) -> set[str]:
    """The names the value of ``node`` is stored into (its assignment's targets, the
    receiver of a mutating call, or ``{"<return>"}`` for a ``return``), smallest first."""
    best = None
    for ai in facts.assigns:
        if ai.ctx.func is func and ai.line <= line <= ai.end and ai.value is not None \
                and _contains(ai.value, node):
            if best is None or ai.end - ai.line < best.end - best.line:
                best = ai
    if best is not None:
        out: set[str] = set()
        for t in best.targets:
            out |= set(target_names(t)) or {base_name(t)}
        return out
    if func is not None:
        for r in func.returns:
            if r.value is not None and _contains(r.value, node):
                return {n for n in facts.names(r.value)}
    for ci in facts.calls:
        fn = ci.node.func
        if ci.ctx.func is func and ci.line <= line <= ci.end and type(fn) is cst.Attribute \
                and ci.attr in _ACCUM_METHODS and ci.node is not node and _contains(ci.node, node):
            return {base_name(fn.value)}
    return set()


@register
class TargetSelectedScorer(Rule):
    """Per-token (or per-document) choice of the lower loss after seeing the true token.

    What it flags:
        A value that reaches the reported total and is a *selection* between two or
        more losses of the realized target: ``minimum(nll_a, nll_b)`` / ``min`` /
        ``max`` of log-probs, ``where(nll_a < nll_b, nll_a, nll_b)``, an ``if`` (or a
        comparison stored first, or a boolean mask) that keeps the mixed NLL only where
        it is lower than the model's, the best of several TTT passes per document;
        and mixing weights chosen by a property of the realized target
        (``lam = where(is_word_start[y], 0.4, 0.05)``). Losses are recognised by value
        (``rules.facts.target_values``): a loss call, a gather or index read of a distribution
        at the target ids, a model object called with the targets.

    Why: the ruling:
        PR #659: choosing, per token, the scorer with the lower loss on the true
        token uses x_t to pick the distribution (C1) and the result is not a
        distribution (C2); over passes it is rescoring (C4). The PR #779 audit
        extended this to gates reading the target's class.

    Legal alternative:
        A fixed or prefix-only mixture ``p = λ·p_a + (1-λ)·p_b`` with λ from the
        context (e.g. the model's own entropy), scored once; ``logaddexp`` of the two
        weighted log-probs (a ``max`` plus its correction term is not a choice).

    Known limits:
        Flow-insensitive per function and context-insensitive across calls (see
        ``rules.facts.target_values``). The target is found from loss calls (their target
        argument) and shifted slices of validation tokens; validation tokens come from
        ``FlowFacts.tainted``, whose seeds are still partly names (``val_tokens``). A
        model object is recognised only when it is called with the target (it then
        computes the target's loss), not by resolving its class, so a selection between
        losses that are all computed as ``model(x)`` logits gathered at a target the
        facts cannot see is missed; so is a loss written as ``(logp * one_hot(y)).sum()``.
        The selected value must reach a total (an accumulation of losses, or a score
        site of ``SiteFacts``, which recognises accumulators by their names), or be
        returned to a caller where it does; a function with no caller counts its return.
    """

    code = "PG102"
    slug = "target-selected-scorer"
    severity = Severity.ILLEGAL
    conditions = ("C1", "C2", "C4")
    reference = "openai/parameter-golf PR #659 (min over scorers), PR #779 audit"

    INVALID = [
        # the "safety gate": keep the mixed NLL only where it beats the model on the true token
        '''
import torch
import torch.nn.functional as F
def score(logits, p_cache, y, lam):
    nll = F.cross_entropy(logits, y, reduction="none")
    p_model = logits.softmax(-1).gather(-1, y[:, None]).squeeze(-1)
    mixed = -torch.log(lam * p_cache + (1 - lam) * p_model)
    better = mixed < nll
    nll[better] = mixed[better]
    return nll.sum()
''',
        # best of several passes per document
        '''
import torch.nn.functional as F
def eval_docs(model, docs, opt, epochs):
    loss_sum = 0.0
    for x, y in docs:
        best = float("inf")
        for ep in range(epochs):
            loss = F.cross_entropy(model(x), y, reduction="sum")
            best = min(best, loss.item())
            loss.backward(); opt.step()
        loss_sum += best
    return loss_sum
''',
    ]
    VALID = [
        # clamp against a constant, and an entropy-gated (prefix-only) mixture
        '''
import torch
import torch.nn.functional as F
def mix(logits, p_cache, y):
    logp = logits.log_softmax(-1)
    ent = -(logp.exp() * logp).sum(-1)
    lam = torch.where(ent > 3.0, 0.3, 0.05)
    p_t = logp.exp().gather(-1, y[:, None]).squeeze(-1)
    nll = -torch.log(lam * p_cache + (1 - lam) * p_t)
    return torch.minimum(nll, torch.tensor(20.0)).sum()
''',
        # logaddexp of two weighted log-probs: max plus its correction term, a mixture
        '''
import math
import torch.nn.functional as F
def mix(logits, cache_probs, y, lam):
    lp_model = -F.cross_entropy(logits, y, reduction="none")
    lp_cache = cache_probs.gather(-1, y[:, None]).squeeze(-1).log()
    a, b = lp_model + math.log(1 - lam), lp_cache + math.log(lam)
    m = torch.maximum(a, b)
    return -(m + torch.log1p(torch.exp(-(a - b).abs()))).sum()
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        tv = target_values(facts)
        an: _Analysis | None = None
        seen: set = set()  # lines / gates already reported

        def lab(node, func):
            return tv.of(node, func)

        def emit(node, func, ctx, line, stored: set[str], what: str, key: str, once=None, lines=None):
            nonlocal an
            once = line if once is None else once
            if once in seen:
                return None
            if an is None:
                an = _Analysis(facts, tv)
            where = an.reaches(func, stored)
            if not where:
                return None
            seen.add(once)
            return Hit(node, f"{what}, and the choice reaches {where}: the scorer is chosen after "
                       f"seeing the true token (C1, C2, C4)", ctx=ctx, key=key, lines=lines)

        for ci in facts.calls:
            func = ci.ctx.func
            call = ci.node
            full = facts.resolve(ci.name)
            head = full.partition(".")[0] if _pure(call.func) else ""
            pos, kw = _pos(call), _kw(call)
            recv = call.func.value if type(call.func) is cst.Attribute else None
            cands: list[cst.CSTNode] = []
            what = ""
            if ci.attr in _PAIR_FUNCS and (head in _LIB or recv is not None):
                cands = ([recv] if recv is not None and head not in _LIB else []) + pos
                what = f"`{ci.name}` of losses of the true token"
            elif ci.attr in ("min", "max") and type(call.func) is cst.Name and not facts.defined_here(ci.attr):
                cands = pos if len(pos) >= 2 else (pos if pos and L in lab(pos[0], func) else [])
                if len(pos) == 1 and cands:
                    cands = cands * 2  # the best of a collection of losses
                what = f"`{ci.attr}` over losses of the true token"
            elif ci.attr in _REDUCE and head in _LIB and pos:
                if len(pos) >= 2 and not _is_dim(pos[1]) and "dim" not in kw:
                    cands = pos[:2]
                elif _stacked(pos[0]) and L in lab(pos[0], func):
                    cands = [pos[0], pos[0]]
                what = f"`{ci.name}` over losses of the true token"
            elif ci.attr in _REDUCE and recv is not None and head not in _LIB and _stacked(recv) \
                    and L in lab(recv, func):
                cands = [recv, recv]
                what = f"`.{ci.attr}` over stacked losses of the true token"
            elif ci.attr in _CLAMP and (kw.get("max") is not None or kw.get("min") is not None):
                src = recv if recv is not None and head not in _LIB else (pos[0] if pos else None)
                bound = kw.get("max") if kw.get("max") is not None else kw.get("min")
                cands = [src, bound] if src is not None else []
                what = f"`{ci.name}` of one loss of the true token by another"
            elif ci.attr in _WHERE and (head in _LIB or recv is not None):
                if head in _LIB and len(pos) == 3:
                    cond, a, b = pos
                elif recv is not None and head not in _LIB and len(pos) == 2:
                    cond, a, b = pos[0], recv, pos[1]
                else:
                    continue
                cl, al, bl = lab(cond, func), lab(a, func), lab(b, func)
                if C in cl and (L in al or L in bl):
                    h = emit(call, func, ci.ctx, ci.line, _statement(facts, call, func, ci.line),
                             f"`{facts.code(call).strip()[:80]}` keeps one loss or the other by comparing "
                             f"losses of the true token", "where over losses")
                    if h:
                        yield h
                elif (R in cl or P in cl) and not ({L, T} & (al | bl)):
                    h = self._class_gate(facts, emit, call, func, ci.ctx, ci.line)
                    if h:
                        yield h
                continue
            else:
                continue
            if len(cands) < 2 or any(c is None for c in cands):
                continue
            if not all(L in lab(c, func) and not is_constant(c) for c in cands):
                continue
            if _logsumexp(facts, call, cands, func, ci.line):
                continue
            h = emit(call, func, ci.ctx, ci.line, _statement(facts, call, func, ci.line), what,
                     f"min over losses {ci.line}")
            if h:
                yield h

        # if / stored-comparison gates, boolean masks and mask arithmetic
        stores = _stores(facts)
        for node, func, ctx, line, dst, value in stores:
            vl = lab(value, func)
            for g in ctx.gates:
                if g.func is not func:
                    continue
                gl = lab(g.test, func)
                if C in gl and L in vl:
                    h = emit(node, func, ctx, line, {dst},
                             f"`{facts.code(g.test).strip()}` (line {g.line}) compares losses of the true "
                             f"token and `{dst}` keeps `{facts.code(value).strip()[:60]}` only on one side",
                             f"if over losses {g.line}", once=("gate", g.line),
                             lines=(min(g.line, line), max(g.line, line)))
                    if h:
                        yield h
                    break
                if (R in gl or P in gl) and C not in gl and not ({L, T} & vl) and not _constant_cond(g.test):
                    if any(type(n) is cst.Subscript for n in iter_nodes(g.test)):
                        h = self._class_gate(facts, emit, node, func, ctx, line, dst=dst, test=g.test, gate=g.line)
                        if h:
                            yield h
                        break
            for ie in _ifexps(facts, value) if L in vl else ():
                if C in lab(ie.test, func) and (L in lab(ie.body, func) or L in lab(ie.orelse, func)):
                    h = emit(node, func, ctx, line, {dst}, f"`{facts.code(ie).strip()[:60]}` keeps one loss or "
                             f"the other by comparing losses of the true token", f"ifexp over losses {line}")
                    if h:
                        yield h
        for sub, line, ctx in facts.subscripts:
            func = ctx.func
            for el in sub.slice:
                if type(el.slice) is cst.Index and C in lab(el.slice.value, func) and L in lab(sub.value, func):
                    h = emit(sub, func, ctx, line, _statement(facts, sub, func, line) | _store_base(facts, sub),
                             f"`{facts.code(sub).strip()[:60]}` keeps the losses where a comparison of losses "
                             f"of the true token holds", f"mask over losses {line}")
                    if h:
                        yield h
        for b, line, ctx in facts.binops:
            func = ctx.func
            if type(b.operator) is cst.Multiply:
                ll, rl = lab(b.left, func), lab(b.right, func)
                if (C in ll and L in rl) or (C in rl and L in ll):
                    h = emit(b, func, ctx, line, _statement(facts, b, func, line),
                             f"`{facts.code(b).strip()[:60]}` weights a loss of the true token by a comparison "
                             f"of such losses", f"mask arithmetic {line}")
                    if h:
                        yield h

    def _class_gate(self, facts, emit, node, func, ctx, line, dst=None, test=None, gate=None):
        stored = {dst} if dst else _statement(facts, node, func, line)
        code = facts.code(test if test is not None else node).strip()[:80]
        at = line if gate is None else gate
        return emit(node, func, ctx, line, stored,
                    f"the weight `{' '.join(sorted(stored))}` is chosen by `{code}`, a property of the realized "
                    f"target", f"target-class gate {at}", once=("gate", at),
                    lines=(min(at, line), max(at, line)))


def _pure(node: cst.CSTNode) -> bool:
    """A plain dotted name (``torch.min``), not a method of a computed value
    (``torch.stack(xs).min``)."""
    while type(node) is cst.Attribute:
        node = node.value
    return type(node) is cst.Name


def _ifexps(facts: Facts, node: cst.CSTNode) -> list[cst.IfExp]:
    return facts.subtree_of(node, cst.IfExp) if node is not None else []


def _constant_cond(node: cst.CSTNode) -> bool:
    return type(node) in (cst.Name, cst.Integer) and dotted(node) in ("True", "False")


def _stacked(node: cst.CSTNode) -> bool:
    """``torch.stack([...])`` / ``torch.cat`` / a list literal: several candidates side by side."""
    if type(node) in (cst.List, cst.Tuple, cst.ListComp):
        return True
    return type(node) is cst.Call and type(node.func) in (cst.Attribute, cst.Name) and \
        (node.func.attr.value if type(node.func) is cst.Attribute else node.func.value) in (
            "stack", "cat", "vstack", "hstack", "concatenate", "tensor", "array")


def _logsumexp(facts: Facts, call: cst.Call, cands, func, line: int) -> bool:
    """``max(a, b) + log1p(exp(-|a - b|))`` (also through ``m = max(a, b)``): the stable
    log of a sum, a mixture, not a choice. The expression around the call (or a later
    use of the name it is stored in) reads both candidates again."""
    want = [facts.names(c) for c in cands[:2]]
    if not all(want):
        return False

    def reads_both(expr: cst.CSTNode, skip: cst.CSTNode | None) -> bool:
        names: set[str] = set()
        stack = [expr]
        while stack:
            n = stack.pop()
            if n is skip:
                continue
            if type(n) is cst.Name:
                names.add(n.value)
            stack.extend(children(n))
        return all(w & names for w in want)

    for ai in facts.assigns:
        if ai.ctx.func is func and ai.value is not None and ai.line <= line <= ai.end and _contains(ai.value, call):
            if reads_both(ai.value, call):
                return True
            stored = {n for t in ai.targets for n in target_names(t)}
            later = [bi.value for bi in facts.assigns if bi is not ai and bi.ctx.func is func and bi.value is not None]
            later += [r.value for r in (func.returns if func is not None else ()) if r.value is not None]
            return any(stored & facts.names(v) and reads_both(v, None) and any(
                type(n) is cst.Call and dotted(n.func).rsplit(".", 1)[-1] in ("log1p", "log", "exp")
                for n in iter_nodes(v)) for v in later)
    if func is not None:
        for r in func.returns:
            if r.value is not None and _contains(r.value, call):
                return reads_both(r.value, call)
    return False


def _store_base(facts: Facts, sub: cst.Subscript) -> set[str]:
    """``{K}`` when ``sub`` is the target ``K[mask]`` of an assignment."""
    for ai in facts.assigns:
        if any(t is sub for t in ai.targets):
            return {base_name(sub)}
    return set()


def _stores(facts: Facts):
    """(node, func, ctx, line, stored name, stored value) for assignments and mutating calls."""
    out = []
    for ai in facts.assigns:
        if ai.value is None:
            continue
        for t in ai.targets:
            for d in target_names(t) or [base_name(t)]:
                if d:
                    out.append((ai.node, ai.ctx.func, ai.ctx, ai.line, d, ai.value))
    for ci in facts.calls:
        fn = ci.node.func
        if type(fn) is cst.Attribute and ci.attr in _ACCUM_METHODS | {"copy_", "index_put_", "fill_"} \
                and ci.node.args:
            b = base_name(fn.value)
            if b:
                out.append((ci.node, ci.ctx.func, ci.ctx, ci.line, b, ci.node.args[-1].value))
    return out
