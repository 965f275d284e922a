from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from rules.core import Severity

from ._common import carried_objective
from .engine import Hit, Rule, register
from .facts import Facts, FuncInfo, base_name, dotted, target_names, iter_nodes

_START_RE = re.compile(r"^(s|s0|st|\w*start\w*|\w*begin\w*|scored_from|score_from|ctx|ctx_len|context|"
                       r"context_len|prefix|prefix_len|n_ctx|first|first_scored|first_pos)$")
_LOSS_CALL_RE = re.compile(r"(cross_entropy|nll_loss|log_softmax|logsumexp|\bnll\b|\bloss\b)")


def _slices(node: cst.CSTNode):
    out = []
    for s in iter_nodes(node):
        if isinstance(s, cst.Subscript):
            for el in s.slice:
                if isinstance(el.slice, cst.Slice):
                    out.append(el.slice)
    return out


def _head(facts: Facts, node) -> str:
    """``s`` of ``s``, ``s + 1``, ``s - 1``, ``s * 2``."""
    return re.split(r"[\s+\-*]", facts.code(node).strip())[0] if node is not None else ""


def _scoring_starts(facts: Facts, func: FuncInfo, after: int) -> set[str]:
    """Where the scoring after line ``after`` starts: the lower bounds of the slices its
    score sites take (``nll_sum += nll[:, k0:wlen].sum()`` -> ``k0``), directly or through
    one definition (``scored = nll[:, k0:]``)."""
    nodes = [s.node for s in facts.sites if s.kind == "score" and s.ctx.func is func and s.line > after]
    for n in list(nodes):
        for name in facts.names(n):
            nodes += [v for line, v in func.defs.get(name, ()) if v is not None and line > after]
    heads = {_head(facts, sl.lower) for n in nodes for sl in _slices(n) if sl.lower is not None}
    return {h for h in heads if h.isidentifier()}  # `0` or `-1` is no scoring start


def _start_like(facts: Facts, node, starts: set[str]) -> bool:
    """``node`` is the scoring start: the one the scoring itself uses, or one named like it."""
    head = _head(facts, node)
    return bool(head) and (head in starts or bool(_START_RE.match(head)))


def _coverage(facts: Facts, nodes: list[cst.CSTNode], starts: set[str]) -> tuple[str, str]:
    """'scored' | 'context' | 'all', with the text that decided it."""
    context_hint = ""
    for n in nodes:
        for sl in _slices(n):
            if _start_like(facts, sl.lower, starts):
                return "scored", facts.code(n).strip()
            if sl.lower is None and _start_like(facts, sl.upper, starts):
                context_hint = facts.code(n).strip()

        found = [type(ct.operator).__name__ for c in iter_nodes(n) if isinstance(c, cst.Comparison)
                 for ct in c.comparisons if _start_like(facts, ct.comparator, starts)]
        if any(op in ("GreaterThanEqual", "GreaterThan") for op in found):
            return "scored", facts.code(n).strip()
        if any(op in ("LessThan", "LessThanEqual") for op in found):
            context_hint = facts.code(n).strip()
    if context_hint:
        return "context", context_hint
    return "all", ""


@register
class SlotScoredRegion(Rule):
    """SLOT: a per-window delta fitted on an objective that covers scored positions.

    What it flags:
        A tensor created in evaluation code with ``requires_grad=True`` (or an
        ``nn.Parameter`` outside ``__init__``) and optimized (``torch.optim.*([delta])``
        or ``autograd.grad(.., delta)``) in a loop, when the fitting loss covers
        positions that are then scored: a slice starting at the scoring start
        (``[s:wlen]``, ``[:, s:]``), a mask ``>= s`` or filled over ``[s:..]``, or
        no slice or mask at all (all positions). Also a context-only objective
        whose delta has batch dimension 1 while the batch holds several windows:
        the shared delta sees targets scored by the other windows of the batch.
        A boolean-mask index (``nll[mask]``) restricts the objective as the mask
        is built (``mask[i, first:] = True`` covers scored positions).

        Not flagged: an objective built only from state carried over from an
        earlier iteration of the enclosing loop (``prev = (h, y, mask)`` assigned
        after the fit in the loop body, unpacked before the next fit), when the
        scoring after the fit does not use that carried state: the delta used on
        batch b was fitted on batch b-1, whose targets are already scored.

    Why: the ruling:
        PR #1240 analysis (never accepted): when the delta is fitted on the scored
        targets, the NLL at one position changes when another target is flipped
        (240/240 pairs); the distribution at t depends on x_t and later tokens (C1).

    Legal alternative:
        Context-only SLOT: fit one delta per window (``[B,1,D]``) on positions
        already scored in earlier windows (``[:s]``), or on tokens from earlier
        batches only; then score ``[s:wlen]`` with it.

    Known limits:
        The scoring start is the lower bound of the slices the scoring after the fit
        takes (``nll_sum += nll[:, k0:].sum()`` -> ``k0``), or a name that reads like
        one (``s``, ``start``, ``first``, ``ctx_len``, ``prefix_len``…); carried-over
        state is followed through local assignments of the function, not through
        attributes or containers mutated in place; a mask built in another function is treated as "all
        positions" only if no slice or comparison is seen. Logit-bias variants are
        covered when the bias is the optimized tensor.
    """

    code = "PG104"
    slug = "slot-scored-region"
    severity = Severity.ILLEGAL
    conditions = ("C1",)
    reference = "openai/parameter-golf PR #1240 (SLOT analysis)"
    techniques = ("SLOT", "SLOT delta", "per-window delta", "logit bias optimization")

    INVALID = [
        # the start has no telling name: the scoring slice `[:, k0:]` shows where scoring begins
        '''
import torch
import torch.nn.functional as F
def eval_slot(model, windows, steps, nll_sum):
    for x, y, k0 in windows:
        with torch.no_grad():
            h = model.hidden(x)
        delta = torch.zeros(1, 1, h.size(-1), requires_grad=True)
        opt = torch.optim.AdamW([delta], lr=1e-2)
        for _ in range(steps):
            per_tok = F.cross_entropy(model.head(h + delta).transpose(1, 2), y, reduction="none")
            loss = per_tok[:, k0:].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.head(h + delta).transpose(1, 2), y, reduction="none")
        nll_sum += nll[:, k0:].sum()
    return nll_sum
''',
        # delta fitted on the scored slice [s:wlen]
        '''
import torch
import torch.nn.functional as F
def slot_eval(model, windows, steps, lr):
    nll_sum = 0.0
    for x, y, s, wlen in windows:
        h = model.hidden(x)
        delta = torch.zeros(1, 1, h.size(-1), device=h.device, requires_grad=True)
        opt = torch.optim.AdamW([delta], lr=lr)
        for _ in range(steps):
            logits = model.head(h + delta)
            loss = F.cross_entropy(logits[0, s:wlen], y[0, s:wlen])
            loss.backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            nll_sum += F.cross_entropy(model.head(h + delta)[0, s:wlen], y[0, s:wlen], reduction="sum").item()
    return nll_sum
''',
    ]
    VALID = [
        # context-only with an untelling name: fitted on `[:, :k0]`, the positions before where the
        # scoring slice `[:, k0:]` begins
        '''
import torch
import torch.nn.functional as F
def eval_slot(model, windows, steps, nll_sum):
    for x, y, k0 in windows:
        with torch.no_grad():
            h = model.hidden(x)
        delta = torch.zeros(1, 1, h.size(-1), requires_grad=True)
        opt = torch.optim.AdamW([delta], lr=1e-2)
        for _ in range(steps):
            per_tok = F.cross_entropy(model.head(h + delta).transpose(1, 2), y, reduction="none")
            loss = per_tok[:, :k0].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.head(h + delta).transpose(1, 2), y, reduction="none")
        nll_sum += nll[:, k0:].sum()
    return nll_sum
''',
        # context-only, one delta per window
        '''
import torch
def slot_ctx(model, xb, yb, s, steps):
    h = model.hidden(xb)
    delta = torch.zeros(xb.size(0), 1, h.size(-1), device=h.device, requires_grad=True)
    opt = torch.optim.AdamW([delta], lr=0.005)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model.head(h + delta)[:, :s].flatten(0, 1), yb[:, :s].flatten())
        loss.backward()
        opt.step()
    return delta
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        for ai in facts.assigns:
            func = ai.ctx.func
            if func is None or func.name == "__init__" or ai.value is None or ai.op != "=":
                continue
            if not _is_fitted_tensor(facts, ai.value):
                continue
            for delta in [n for t in ai.targets for n in target_names(t)]:
                yield from self._check_delta(facts, func, ai, delta)

    def _check_delta(self, facts: Facts, func: FuncInfo, ai, delta: str) -> Iterator[Hit]:
        # an optimizer / autograd.grad over the delta
        optimized = False
        for ci in facts.calls_by_func.get(func, ()):
            if (facts.resolve(ci.name).startswith(("torch.optim.", "optim.")) or ci.attr in (
                    "Adam", "AdamW", "SGD")) and ci.node.args and delta in facts.names(ci.node.args[0].value):
                optimized = True
            if ci.name in ("torch.autograd.grad", "autograd.grad") and delta in facts.names(ci.node):
                optimized = True
        if not optimized:
            return
        loops = [li for li, _ in facts.loops if li.func is func and li.start > ai.line]
        fit_loops = [li for li in loops if any(
            s.kind in ("grad", "step") and li.start <= s.line <= li.end and s.ctx.func is func
            for s in facts.sites)]
        if not fit_loops:
            return
        fit = min(fit_loops, key=lambda li: li.end - li.start)
        losses = [a for a in facts.assigns if a.ctx.func is func and fit.start <= a.line <= fit.end
                  and a.value is not None and _LOSS_CALL_RE.search(facts.code(a.value))]
        if not losses:
            return
        outers = [li for li, _ in facts.loops if li.func is func and li is not fit
                  and li.start < fit.start and fit.end <= li.end]
        if outers and _carried_objective(facts, func, fit, max(outers, key=lambda li: li.start), delta, losses):
            return  # fitted on an earlier iteration's (already scored) state
        nodes: list[cst.CSTNode] = [a.value for a in losses]
        # what the fit loop makes of them (`loss = per_tok[:, :k0].mean()`)
        loss_names = {n for a in losses for t in a.targets for n in target_names(t)}
        nodes += [a.value for a in facts.assigns if a.ctx.func is func and fit.start <= a.line <= fit.end
                  and a.value is not None and a not in losses and facts.names(a.value) & loss_names]
        # one level of definitions behind the loss (masks, weights, sliced logits)
        used = set().union(*(facts.names(n) for n in nodes))
        for name in used:
            for line, val in func.defs.get(name, []):
                if val is not None and line < fit.end and not isinstance(val, cst.For):
                    nodes.append(val)
        for a in facts.assigns:  # mask[:, s:wlen] = 1
            if a.ctx.func is func and a.line < fit.end and any(
                    isinstance(t, cst.Subscript) and base_name(t) in used for t in a.targets):
                nodes.extend(t for t in a.targets if isinstance(t, cst.Subscript))
        cover, text = _coverage(facts, nodes, _scoring_starts(facts, func, fit.end))
        loss_line = losses[0].line
        where = dict(lines=(fit.start, fit.end), ctx=losses[0].ctx)
        if cover == "scored":
            yield Hit(fit.node,
                      f"SLOT: `{delta}` is fitted on an objective over the scored positions "
                      f"(`{text[:80]}`), then used to score them: the delta is a function of the "
                      f"scored targets (C1)", evidence=facts.line_text(ai.line) + facts.line_text(loss_line),
                      key=f"slot scored {delta}", **where)
        elif cover == "all" and (masks := _mask_indexes(facts, func, [a.value for a in losses])):
            yield Hit(fit.node,
                      f"SLOT: `{delta}` is fitted on `{masks[0]}`-selected positions of the current window, "
                      f"and nothing shows that mask excludes the positions it then scores (C1)",
                      evidence=facts.line_text(ai.line) + facts.line_text(loss_line), confidence="medium",
                      key=f"slot all {delta}", **where)
        elif cover == "all":
            yield Hit(fit.node,
                      f"SLOT: `{delta}` is fitted on every position of the window (no context-only "
                      f"slice or mask in the loss at line {loss_line}), including the positions it then "
                      f"scores (C1)", evidence=facts.line_text(ai.line) + facts.line_text(loss_line),
                      key=f"slot all {delta}", **where)
        else:
            shape = facts.code(ai.value)
            shared = re.search(r"\(\s*1\s*,\s*1\s*,", shape) is not None
            batched = any(ci.name in ("torch.stack", "torch.cat") for ci in facts.calls_by_func.get(func, ()))
            if shared and batched:
                yield Hit(fit.node,
                          f"SLOT: `{delta}` has batch dimension 1 but is fitted on a batch of stacked "
                          f"windows: its context-only objective (`{text[:60]}`) includes tokens that "
                          f"other windows of the same batch score (C1)",
                          evidence=facts.line_text(ai.line) + facts.line_text(loss_line),
                          confidence="medium", key=f"slot shared {delta}", **where)


def _is_fitted_tensor(facts: Facts, value: cst.BaseExpression) -> bool:
    if not isinstance(value, cst.Call):
        return False
    name = dotted(value.func)
    if name.endswith("Parameter"):
        return True
    for a in value.args:
        if a.keyword and a.keyword.value == "requires_grad" and facts.code(a.value).strip() == "True":
            return True
    if isinstance(value.func, cst.Attribute) and value.func.attr.value == "requires_grad_":
        return True
    return False


def _carried_objective(facts: Facts, func: FuncInfo, fit, outer, delta: str, losses) -> bool:
    """The fitting objective reads only state carried over from an earlier iteration of
    ``outer`` (``prev = (h, y, mask)`` at the end of the body), and what is scored with
    the delta after the fit is not that state."""
    # uses of the delta after the fit: the scoring it was fitted for
    uses = [(a.line, a.value) for a in facts.assigns if a.ctx.func is func and a.value is not None
            and fit.end < a.line <= outer.end and delta in facts.names(a.value)]
    uses += [(ci.line, ci.node) for ci in facts.calls_by_func.get(func, ())
             if fit.end < ci.line <= outer.end and delta in facts.names(ci.node)]
    return carried_objective(facts, func, fit, outer, [a.value for a in losses], uses, skip={delta})


_MASK_NAME_RE = re.compile(r"(mask|keep|sel|valid|scored|use)", re.I)


def _mask_indexes(facts: Facts, func: FuncInfo, nodes) -> list[str]:
    """Names used as boolean-mask indexes (``nll[mask]``) in ``nodes``."""
    out = []
    for n in nodes:
        for sub in iter_nodes(n):
            if not isinstance(sub, cst.Subscript) or len(sub.slice) != 1:
                continue
            el = sub.slice[0].slice
            if not isinstance(el, cst.Index) or not isinstance(el.value, cst.Name):
                continue
            name = el.value.value
            defs = [facts.code(v) for _ln, v in func.defs.get(name, []) if v is not None]
            if _MASK_NAME_RE.search(name) or any(re.search(r"(bool|[<>]=?|==)", d) for d in defs):
                out.append(name)
    return out
