from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Iterator

import libcst as cst

from rules.core import Severity

from ._common import carried_objective, enclosing_loops, interleaved, later_score
from .engine import Hit, Rule, register
from .facts.names import CALIBRATION_NAME_RE
from .facts import VAL_STRING, Facts, FuncInfo, Site, dotted

_LOADER_TARGET_RE = re.compile(r"train.*(loader|files|tokens|data|stream|shards|pattern|ds|iter)", re.I)


@register
class ValUpdateBeforeScore(Rule):
    """Weights, adapters or statistics fitted on validation tokens before they are scored.

    What it flags:
        (1) A gradient step (``loss.backward()`` / ``autograd.grad``) whose loss is
        computed from validation data (``val_tokens``, ``fineweb_val_*``, a
        parameter that receives them), when no scoring of those tokens precedes
        the step inside an enclosing loop, in the function or in any caller: the
        "pre-eval" / "pre-quant" TTT shape (epochs over the validation set with
        an optimizer, then evaluate), whatever the function is called (LoRA,
        adapt, finetune…). (2) Calibration (GPTQ Hessians, activation
        statistics) fed validation tokens. (3) Validation data in the training
        loader. A sum built into the differentiated loss (``loss = loss + ..``
        before ``loss.backward()``) is a training objective, not a score.

        Not flagged: a step preceded, inside an enclosing loop, by the scoring of
        the chunk (per-iteration order "score chunk i, then step on chunk i"),
        scoring being an accumulation into a loss-named total or a call handing
        an NLL computed under ``no_grad`` / ``inference_mode`` to a ledger or
        accumulator (``ledger.score(pos, nll, nb)``, ``totals.add(nll)``,
        ``score_rows(ledger, .., nll, ..)``); and a step whose objective reads
        only state carried over from an earlier iteration of a loop that scores
        its current batch after the step (``prev = (h, y, mask)`` assigned late
        in the body: context-only SLOT, lagged updates).

    Why: the ruling:
        C3 (issue #1017): a token's loss is recorded before any state is updated
        with it. Pre-eval TTT and calibration on unscored validation tokens were
        closed on that ground (PR #728 for GPTQ calibration on validation data).

    Legal alternative:
        Score-first TTT (PR #549): score chunk i under ``no_grad`` and add it to
        the totals, then train on chunk i; per-document LoRA TTT that scores each
        chunk before its step. Calibrate on training shards inside the training
        window.

    Known limits:
        Validation data is recognised by name and followed through assignments,
        arguments and returns, not through object attributes or containers. A
        gradient step is taken to use the data of the nearest preceding
        definition of its loss (and, inside a loop, of later definitions in the
        loop that reach it through the back edge). Ordering is by source line
        inside loops, so scoring done in a callback registered elsewhere is not
        seen; that the scored chunk is the one stepped on is not checked. A
        ledger call counts as scoring only with a loss-named argument (``nll``);
        ``ledger.score(pos, -lp, nb)`` is not recognised.
    """

    code = "PG201"
    slug = "val-update-before-score"
    severity = Severity.ILLEGAL
    conditions = ("C3",)
    reference = "issue #1017 (C3); PR #728 (calibration on validation data)"
    techniques = ("pre-quant TTT", "pre-eval TTT", "prequant TTT", "TTT before quantization",
                  "TTT on the validation set", "fine-tune on validation", "calibrated on validation")

    INVALID = [
        # pre-eval TTT: epochs over the validation set, then evaluate
        '''
import torch
def pre_eval_ttt(model, val_tokens, epochs, seq_len):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for ep in range(epochs):
        for i in range(0, val_tokens.numel() - seq_len, seq_len):
            chunk = val_tokens[i:i + seq_len + 1]
            loss = model(chunk[:-1][None], chunk[1:][None])
            loss.backward()
            opt.step()
            opt.zero_grad()

@torch.no_grad()
def eval_val(model, val_tokens, seq_len):
    loss_sum = 0.0
    for i in range(0, val_tokens.numel() - seq_len, seq_len):
        chunk = val_tokens[i:i + seq_len + 1]
        loss_sum += model(chunk[:-1][None], chunk[1:][None]).item() * seq_len
    return loss_sum

def main(model, val_tokens):
    pre_eval_ttt(model, val_tokens, 3, 1024)
    return eval_val(model, val_tokens, 1024)
''',
        # the same under another name, data reaching it through a parameter
        '''
import torch
def adapt_lora(lora, tokens, steps, opt):
    for s in range(steps):
        x = tokens[s * 512:(s + 1) * 512].cuda()
        out = lora(x[:-1])
        err = torch.nn.functional.cross_entropy(out, x[1:])
        err.backward()
        opt.step()

def run(model, lora, opt, args):
    stream = load_validation_tokens(args.val_files)
    adapt_lora(lora, stream, args.steps, opt)
    nll_total = evaluate(model, lora, stream)
    return nll_total

def evaluate(model, lora, stream):
    nll_sum = 0.0
    with torch.inference_mode():
        for i in range(0, len(stream) - 513, 512):
            nll_sum += model(stream[i:i + 513], lora).sum()
    return nll_sum
''',
    ]
    VALID = [
        # score-first chunk TTT (PR #549 shape)
        '''
import torch
def ttt_eval(model, val_tokens, chunks, epochs, opt):
    loss_sum = 0.0
    for ci, (a, b) in enumerate(chunks):
        chunk = val_tokens[a:b + 1]
        with torch.no_grad():
            loss_sum += model(chunk[:-1][None], chunk[1:][None]).item() * (b - a)
        if ci == len(chunks) - 1:
            break
        for ep in range(epochs):
            loss = model(chunk[:-1][None], chunk[1:][None])
            loss.backward()
            opt.step()
            opt.zero_grad()
    return loss_sum
''',
        # training loop that evaluates on validation every N steps
        '''
import torch
def train(model, opt, train_loader, val_tokens, steps, eval_every):
    for step in range(steps):
        x, y = train_loader.next_batch()
        loss = model(x, y)
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            val_loss = eval_val(model, val_tokens)
            print(f"step:{step} val_loss:{val_loss:.4f}")
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        for s in facts.sites:
            if s.kind != "grad":
                continue
            func = s.ctx.func
            if not s.target or not facts.tainted(s.target, func, s.line):
                continue
            if interleaved(facts, func, s.line):
                continue
            if _on_carried_state(facts, func, s):
                continue
            status, where = later_score(facts, func, s.end)
            if status == "protected":
                continue
            loops = enclosing_loops(facts, func, s.line)
            start = loops[0].start if loops else s.line
            if s.line - start > 40:
                start = s.line
            fname = func.qualname if func else "<module>"
            scratch = _scratch_update(facts, func, s)
            if status == "after":
                sline, sfunc = where
                tail = (f"; validation tokens are scored afterwards (line {sline}"
                        f"{' in ' + sfunc.qualname if sfunc else ''})")
                conf = "high"
            else:
                tail = "; no scoring of those tokens precedes the step"
                conf = "medium"
            severity = None
            if scratch:
                owners, dline = scratch
                tail += (f"; the step updates only the parameters of `{'`, `'.join(owners)}`, deleted at line "
                         f"{dline} (a warm-up on a scratch copy?)")
                severity, conf = Severity.WARNING, "low"
            yield Hit(
                s.node,
                f"gradient step on validation data in `{fname}` (line {s.line}) before those "
                f"tokens are scored: `{s.target}` is computed from validation tokens{tail} (C3)",
                evidence=facts.line_text(start, s.end, limit=12) if s.end - start < 12
                else facts.line_text(start) + facts.line_text(s.line),
                lines=(start, s.end), ctx=s.ctx, confidence=conf, severity=severity,
                key=f"grad on val in {fname}",
            )
        calib_done: set = set()
        for ci in facts.calls:
            if CALIBRATION_NAME_RE.search(ci.attr or "") and ci.ctx.func not in calib_done:
                for a in ci.node.args:
                    if facts.expr_tainted(a.value, ci.ctx.func, ci.line):
                        yield Hit(
                            ci.node,
                            f"calibration `{ci.attr}` is fed validation data "
                            f"(`{facts.code(a.value).strip()}`): statistics of unscored validation "
                            f"tokens shape the model that scores them (C3, PR #728)",
                            ctx=ci.ctx, key=f"calibration {ci.attr} on val")
                        calib_done.add(ci.ctx.func)
                        break
        for ai in facts.assigns:
            if ai.op != "=" or ai.value is None:
                continue
            tn = " ".join(dotted(t) for t in ai.targets)
            if not _LOADER_TARGET_RE.search(tn):
                continue
            if not isinstance(ai.value, cst.Call) and VAL_STRING not in facts.names(ai.value):
                continue
            if facts.expr_tainted(ai.value, ai.ctx.func, ai.line):
                yield Hit(
                    ai.node,
                    f"training data `{tn}` is built from validation data: the model trains on "
                    f"tokens it is later scored on (C3)",
                    ctx=ai.ctx, key=f"val in {tn}")


def _scratch_update(facts: Facts, func: FuncInfo | None, s: Site) -> tuple[list[str], int] | None:
    """The optimizer steps that follow the gradient at ``s`` (in its innermost loop, or the
    next one) update only ``X.parameters()`` of objects deleted later in ``func``
    (``del wl, wo``): ``(owners, line of the del)``, else None. A compile warm-up on a
    throwaway adapter changes nothing that scores."""
    if func is None:
        return None
    loops = sorted(enclosing_loops(facts, func, s.line), key=lambda li: li.start)
    steps = [o for o in facts.sites if o.kind == "step" and o.ctx.func is func and o.line >= s.line]
    if loops:
        steps = [o for o in steps if o.line <= loops[-1].end]
    if not steps:
        return None
    steps = steps if loops else steps[:1]
    owners: set[str] = set()
    for st in steps:
        defs = [v for ln, v in func.defs.get(st.target, []) if ln <= st.line and v is not None]
        if not defs or not isinstance(defs[-1], cst.Call) or not defs[-1].args:
            return None
        params = defs[-1].args[0].value
        if not (isinstance(params, cst.Call) and isinstance(params.func, cst.Attribute)
                and params.func.attr.value == "parameters"):
            return None
        owners.add(dotted(params.func.value))
    last = max(st.line for st in steps)
    dels = [ln for names, ln, ctx in facts.deletes if ctx.func is func and ln > last and owners <= names]
    return (sorted(owners), dels[0]) if dels and "" not in owners else None


def _on_carried_state(facts: Facts, func: FuncInfo | None, s: Site) -> bool:
    """The objective of the step at ``s`` reads only state carried over from an earlier
    iteration of an enclosing loop (``prev = (h, y, mask)`` assigned late in the body),
    that loop scores after the step, and what it scores there is the current
    iteration's data, not the carried state: the step uses tokens scored in an
    earlier iteration (context-only SLOT, lagged updates)."""
    if func is None:
        return False
    defs = [(ln, v) for ln, v in func.defs.get(s.target, []) if ln <= s.line and v is not None]
    if not defs:
        return False
    loops = sorted(enclosing_loops(facts, func, s.line), key=lambda li: li.start)
    if not loops:
        return False
    values = [defs[-1][1]]
    scores = facts.occurrences(func, {"score"})
    for i, outer in enumerate(loops):
        inner = loops[i + 1:]
        fit = inner[-1] if inner else SimpleNamespace(start=defs[-1][0], end=s.end)
        if fit.start < outer.start:  # the objective is defined before this loop
            continue
        uses = [(ln, node) for ln, _e, _ctx, node in scores if fit.end < ln <= outer.end]
        if not uses:
            continue

        def leaf_ok(n: str, _line=fit.start) -> bool:
            return not facts.tainted(n, func, _line)

        if carried_objective(facts, func, fit, outer, values, uses, leaf_ok=leaf_ok):
            return True
    return False
