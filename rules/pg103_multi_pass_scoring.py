from __future__ import annotations

from typing import Iterator

from rules.core import Severity

from ._common import UPDATE_KINDS
from ._twopass import two_pass_findings
from .engine import Hit, Rule, register
from .facts import Facts
from .facts.iteration import FIRST, LAST, guard_iteration, picks_data, resets_in


@register
class MultiPassScoring(Rule):
    """Scores counted from a later pass over the same tokens, or two-pass rescoring.

    What it flags:
        (1) A loss accumulated into the reported totals only on the last pass of a
        loop that also updates weights. The guard is read as a value: inline
        (``if epoch == n_epochs - 1``), stored (``is_final = ep + 1 == n``), returned
        by a small function, or an early exit (``if ep < n - 1: continue``).
        (2) A pass loop (it counts with ``range`` and its variable, or anything
        assigned from it, never indexes, slices or iterates data) that both scores
        and updates: every pass re-scores the same tokens with a state that has seen
        them; when the total is reset inside the loop (rebound, ``.zero_()``,
        element-wise included) the last pass is what counts.
        (3) Two-pass evaluation: a cache or statistic (a non-gradient, in-place accumulation: ``t[k] += 1``,
        ``scatter_add_``, ``np.add.at``, or a call whose method / local function /
        nested closure does so to that object) is filled with validation tokens, and
        after the pass that fills it has ended, the same object is read again by a
        score (a scoring site, a ``log`` of the value, a scoring function) whose value
        flows into what the function returns: it replaces the first-pass scores or
        is added to the totals (PR #846, #870 shapes).

    Why: the ruling:
        PR #568: each counted score must be the first score of that token, taken
        before any update that used it (C3, C4). Two-pass n-gram evaluation
        (PR #846) was closed on the same ground.

    Legal alternative:
        Score each chunk once, first, and add that score; train on it afterwards
        for as many epochs as you like (never counting those losses). Build caches
        incrementally in the single scoring pass, updating after each score.

    Known limits:
        A pass whose variable indexes a schedule (``lrs[ep]``) looks like a loop
        that picks data and is not judged. Which accumulations are scores comes
        from the shared sites (``facts/sites.py``). Min-over-passes is reported
        by PG102.
        Two-pass: "validation tokens" is the shared taint (seeded partly by names);
        "a score" falls back on the facts layer's loss-named accumulators, a
        ``log``/``cross_entropy`` call or a function with a scoring site; the
        reported result is what the function returns, or in a function returning
        nothing (``main``) what it prints / logs (so a diagnostic second score
        printed there counts). Accumulation is recognised by in-place forms
        (``+=``, read-modify-write, ``add_``/``index_add_``/``scatter_add_``/
        ``np.add.at``/``update``); a method call is resolved by name to every
        local class defining it, and an object any of whose methods accumulate
        counts as filled. A later pass that keeps adding to the state inside its
        own loop is taken as one score-first pass from a warm start (a prefix
        scored by other ranks), even if the warm start held the whole stream.
    """

    code = "PG103"
    slug = "multi-pass-scoring"
    severity = Severity.ILLEGAL
    conditions = ("C3", "C4")
    reference = "openai/parameter-golf PR #568 (multi-epoch TTT), PR #846 (two-pass)"
    techniques = ("two-pass", "two pass eval", "rescore", "rescoring", "score on epoch", "multi-epoch TTT",
                  "last epoch", "final epoch")

    INVALID = [
        # the last-epoch guard stored in a variable first
        '''
import torch
def doc_ttt(model, lora, opt, docs, n_epochs):
    nll_sum = 0.0
    for x, y in docs:
        for ep in range(n_epochs):
            is_final = ep == n_epochs - 1
            nll = model(x, y, lora)
            if is_final:
                nll_sum += nll.sum().item()
            nll.mean().backward()
            opt.step()
    return nll_sum
''',
        # count only the last epoch of per-document adaptation
        '''
import torch
def doc_ttt(model, lora, opt, docs, n_epochs):
    nll_sum = 0.0
    for x, y in docs:
        for epoch in range(n_epochs):
            nll = model(x, y, lora)
            if epoch == n_epochs - 1:
                nll_sum += nll.sum().item()
            nll.mean().backward()
            opt.step()
            opt.zero_grad()
    return nll_sum
''',
    ]
    VALID = [
        # score-first: score each chunk once, then several training epochs on it
        '''
import torch
def ttt(model, opt, val_chunks, epochs):
    loss_sum = 0.0
    for x, y in val_chunks:
        with torch.no_grad():
            loss_sum += model(x, y).item()
        for ep in range(epochs):
            tr = model(x, y)
            tr.backward()
            opt.step()
    return loss_sum
''',
        # single-pass n-gram cache: score, then update, per position
        '''
import math
def one_pass(val_tokens, counts, model_p):
    nll = 0.0
    for i in range(2, len(val_tokens)):
        nll += -math.log(mix(model_p[i], counts, val_tokens[i - 2:i]))
        counts[(val_tokens[i - 2], val_tokens[i - 1], val_tokens[i])] += 1
    return nll
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        seen_loops: set = set()
        scores = [s for s in facts.sites if s.kind == "score"]
        for s in scores:
            func = s.ctx.func
            updates = facts.occurrences(func, UPDATE_KINDS - {"cache"})
            passes = [li for li in s.ctx.loops if not picks_data(facts, li)
                      and any(li.start <= u[0] <= li.end for u in updates)]
            # (1) counted only on the last pass
            for li in passes:
                g = next((g for g in s.ctx.gates if guard_iteration(facts, g, li) == LAST), None)
                if g is None:
                    continue
                seen_loops.add(li)
                test = facts.code(g.test).strip()
                yield Hit(
                    s.node,
                    f"`{s.target}` is accumulated only on the last pass of `for {li.targets[0]} ...` "
                    f"(`{test}`, line {g.line}), a loop that also updates the model: the counted score "
                    f"comes from a later pass over tokens already trained on (C3, C4)",
                    evidence=facts.line_text(li.start) + facts.line_text(g.line) + facts.line_text(s.line),
                    lines=(li.start, s.end), ctx=s.ctx, key=f"last-epoch {s.target}")
            # (2) every pass scores and updates
            for li in passes:
                if li in seen_loops:
                    continue
                if not (s.ctx.no_grad or facts.is_counted(s.target, func)):
                    continue
                if any(guard_iteration(facts, g, li) == FIRST for g in s.ctx.gates):
                    continue  # scored on the first pass only: a first score
                seen_loops.add(li)
                ups = [u for u in updates if li.start <= u[0] <= li.end]
                resets = resets_in(facts, s.target, li)
                how = (f"the total is reset every pass (line {resets[0]}), so the last pass is what counts"
                       if resets else "every pass adds its score again")
                yield Hit(
                    li.node,
                    f"loop `for {li.targets[0] if li.targets else '_'} ...` (line {li.start}) re-scores the "
                    f"same tokens on every pass while updating the model (line {ups[0][0]}): {how} (C3, C4)",
                    evidence=facts.line_text(li.start) + facts.line_text(s.line) + facts.line_text(ups[0][0]),
                    lines=(li.start, li.end), ctx=s.ctx, key=f"epoch loop rescoring {s.target}")
        # (3) two-pass: state filled with validation tokens, read again by a reported score
        for tp in two_pass_findings(facts):
            fl = tp.fill
            yield Hit(
                tp.read_node,
                f"two-pass evaluation: `{fl.root}` accumulates validation tokens (line {fl.line}, a pass "
                f"that ends at line {tp.outer_end}); afterwards line {tp.read_line} scores tokens against "
                f"it, and that score reaches the reported result (line {tp.ret_line}): tokens are scored "
                f"by a state that has already seen them (C1, C3, C4)",
                evidence=facts.line_text(fl.line) + facts.line_text(tp.read_line) + facts.line_text(tp.ret_line),
                lines=(tp.read_line, tp.read_end), ctx=tp.ctx, key=f"two-pass {fl.root} {tp.read_line}")
