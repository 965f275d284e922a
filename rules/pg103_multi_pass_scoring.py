from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from auditor.findings import Severity

from ._common import UPDATE_KINDS, enclosing_loops, interleaved, later_score
from .engine import Hit, Rule, register
from .facts import Facts, LoopInfo, dotted

_LAST_RE = re.compile(r"(-\s*1\b|last|final|\bn_?ep|epochs?\b)", re.I)
_FIRST_RE = re.compile(r"(==\s*0\b|^not\s)")


def _is_epoch_loop(facts: Facts, li: LoopInfo) -> bool:
    """A loop whose variable is not used to pick data: passes over the same tokens."""
    if not isinstance(li.node, cst.For) or len(li.targets) != 1:
        return False
    var = li.targets[0]
    if var == "_":
        return True
    body_lines = facts.lines[li.start:li.end]  # lines after the header
    pat = re.compile(rf"\b{re.escape(var)}\b")
    for ln in body_lines:
        s = ln.strip()
        if s.startswith(("if ", "elif ", "print", "log")) or not pat.search(s):
            continue
        return False
    return True


@register
class MultiPassScoring(Rule):
    """Scores counted from a later pass over the same tokens, or two-pass rescoring.

    What it flags:
        (1) A loss accumulated into the reported totals only on the last epoch of an
        adaptation loop (``if epoch == n_epochs - 1: nll_sum += ...``) while the
        loop also updates weights. (2) An "epoch" loop (its variable does not pick
        the data) that both scores and updates: every epoch re-scores the same
        tokens with a state that has seen them. (3) Two-pass evaluation: a cache or
        statistic (a non-gradient, in-place accumulation: ``t[k] += 1``,
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
        Epoch loops are recognised by a loop variable that is unused except in
        ``if`` tests; a loop that picks different data per epoch by other means is
        not treated as an epoch loop. Min-over-passes is reported by PG102.
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
        # each epoch "score-first", but the totals are reset per epoch: the last one counts
        '''
import torch
def ttt(model, opt, val_chunks, epochs):
    for ep in range(epochs):
        loss_sum = 0.0
        for x, y in val_chunks:
            with torch.no_grad():
                loss_sum += model(x, y).item()
            model(x, y).backward()
            opt.step()
    return loss_sum
''',
        # two-pass: build the cache over the whole validation set, then rescore
        '''
import math
def two_pass(val_tokens, counts, model_p):
    for i in range(2, len(val_tokens)):
        counts[(val_tokens[i - 2], val_tokens[i - 1], val_tokens[i])] += 1
    nll = 0.0
    for i in range(2, len(val_tokens)):
        nll += -math.log(mix(model_p[i], counts, val_tokens[i - 2:i]))
    return nll
''',
        # two-pass by method: the table absorbs the whole validation stream, then
        # every stored model probability is rescored against it
        '''
import numpy as np
def evaluate(model_p, val_tokens, table):
    table.absorb(val_tokens)
    nll = -np.log(0.8 * model_p + 0.2 * table.prob(val_tokens))
    return float(nll.sum())
class Table:
    def __init__(self):
        self.hits = np.zeros(4096)
    def absorb(self, toks):
        np.add.at(self.hits, toks % 4096, 1)
    def prob(self, toks):
        return self.hits[toks % 4096] / (1 + self.hits.sum())
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
        # a last-epoch gate on the score in a loop that updates nothing: every epoch
        # sees the same weights, so the last epoch's score is a first score
        '''
import torch
def smooth_eval(model, docs, n_epochs):
    nll_sum = 0.0
    for x, y in docs:
        for epoch in range(n_epochs):
            with torch.no_grad():
                nll = model(x, y)
            if epoch == n_epochs - 1:
                nll_sum += nll.sum().item()
    return nll_sum
''',
        # per-document loop that resets its per-document sum (documents differ)
        '''
import torch
def per_doc(model, lora, opt, docs):
    total = 0.0
    for doc in docs:
        doc_nll = 0.0
        for x, y in chunks_of(doc):
            with torch.no_grad():
                doc_nll += model(x, y, lora).sum().item()
            model(x, y, lora).mean().backward()
            opt.step()
        total += doc_nll
    return total
''',
        # the same table filled from training tokens, then used to score validation
        '''
import numpy as np
def evaluate(model_p, train_tokens, val_tokens, table):
    table.absorb(train_tokens)
    nll = -np.log(0.8 * model_p + 0.2 * table.prob(val_tokens))
    return float(nll.sum())
class Table:
    def __init__(self):
        self.hits = np.zeros(4096)
    def absorb(self, toks):
        np.add.at(self.hits, toks % 4096, 1)
    def prob(self, toks):
        return self.hits[toks % 4096] / (1 + self.hits.sum())
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        seen_loops: set = set()
        scores = [s for s in facts.sites if s.kind == "score"]
        for s in scores:
            func = s.ctx.func
            updates = facts.occurrences(func, UPDATE_KINDS - {"cache"})
            # (1) last-epoch gate
            for g in s.ctx.gates:
                test = facts.code(g.test)
                for li in s.ctx.loops:
                    if not li.targets or not any(re.search(rf"\b{re.escape(t)}\b", test) for t in li.targets):
                        continue
                    if not g.polarity or not _LAST_RE.search(test) or _FIRST_RE.search(test.strip()):
                        continue
                    if not any(li.start <= u[0] <= li.end for u in updates):
                        continue
                    seen_loops.add(li)
                    yield Hit(
                        s.node,
                        f"`{s.target}` is accumulated only when `{test.strip()}` (line {g.line}) in a "
                        f"loop that also updates the model: the counted score comes from a later pass "
                        f"over tokens already trained on (C3, C4)",
                        evidence=facts.line_text(li.start) + facts.line_text(g.line) + facts.line_text(s.line),
                        lines=(li.start, s.end), ctx=s.ctx, key=f"last-epoch {s.target}")
            # (2) epoch loop that scores and updates
            for li in s.ctx.loops:
                if li in seen_loops or not _is_epoch_loop(facts, li):
                    continue
                ups = [u for u in updates if li.start <= u[0] <= li.end]
                if not ups:
                    continue
                if not (s.ctx.no_grad or facts.is_counted(s.target, func)):
                    continue
                if any(_FIRST_RE.search(facts.code(g.test).strip()) and g.polarity for g in s.ctx.gates):
                    continue
                seen_loops.add(li)
                reset = any(
                    ai.op == "=" and ai.ctx.func is func and li.start <= ai.line <= li.end
                    and s.target in [dotted(t) for t in ai.targets]
                    for ai in facts.assigns)
                how = ("the total is reset every pass, so the last pass is what counts" if reset
                       else "every pass adds its score again")
                yield Hit(
                    li.node,
                    f"loop `for {li.targets[0]} ...` (line {li.start}) re-scores the same tokens on every "
                    f"pass while updating the model (line {ups[0][0]}): {how} (C3, C4)",
                    evidence=facts.line_text(li.start) + facts.line_text(s.line) + facts.line_text(ups[0][0]),
                    lines=(li.start, li.end), ctx=s.ctx, key=f"epoch loop rescoring {s.target}")
        # (3) two-pass: state filled with validation tokens, read again by a reported score
        from ._twopass import two_pass_findings
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
