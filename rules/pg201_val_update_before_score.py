from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from auditor.findings import Severity

from ._common import enclosing_loops, interleaved, later_score
from .engine import Hit, Rule, register
from .facts import Facts, base_name, dotted

_CALIB_RE = re.compile(r"(calib|hessian|gptq|awq|collect_stats|act_stats|quantize_with)", re.I)
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
        loader.

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
        definition of its loss. Ordering is by source line inside loops, so
        scoring done in a callback registered elsewhere is not seen.
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
        # GPTQ calibration on validation tokens
        '''
def quantize(model, val_tokens, args):
    hessians = collect_hessians(model, val_tokens[: args.calib_tokens])
    return gptq_quantize(model, hessians)
''',
        # validation shards in the training loader
        '''
def build(args):
    train_loader = DistributedTokenLoader(args.train_files + "," + args.val_files, 0, 1)
    return train_loader
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
        # per-document LoRA TTT: score a chunk (helper), then step on it (helper)
        '''
import torch
def score_chunk(model, lora, x, y):
    with torch.no_grad():
        return model(x, y, lora).sum()

def step_chunk(model, lora, opt, x, y):
    loss = model(x, y, lora).mean()
    loss.backward()
    opt.step()

def doc_ttt(model, lora, opt, val_docs):
    nll_sum = 0.0
    for doc in val_docs:
        lora.reset()
        for x, y in split_chunks(doc):
            nll_sum += score_chunk(model, lora, x, y)
            step_chunk(model, lora, opt, x, y)
    return nll_sum
''',
        # GPTQ calibration on training data
        '''
def quantize(model, train_loader, args):
    hessians = collect_hessians(model, train_loader, n_batches=args.calib_batches)
    return gptq_quantize(model, hessians)
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
            status, where = later_score(facts, func, s.end)
            if status == "protected":
                continue
            loops = enclosing_loops(facts, func, s.line)
            start = loops[0].start if loops else s.line
            if s.line - start > 40:
                start = s.line
            fname = func.qualname if func else "<module>"
            if status == "after":
                sline, sfunc = where
                tail = (f"; validation tokens are scored afterwards (line {sline}"
                        f"{' in ' + sfunc.qualname if sfunc else ''})")
                conf = "high"
            else:
                tail = "; no scoring of those tokens precedes the step"
                conf = "medium"
            yield Hit(
                s.node,
                f"gradient step on validation data in `{fname}` (line {s.line}) before those "
                f"tokens are scored: `{s.target}` is computed from validation tokens{tail} (C3)",
                evidence=facts.line_text(start, s.end, limit=12) if s.end - start < 12
                else facts.line_text(start) + facts.line_text(s.line),
                lines=(start, s.end), ctx=s.ctx, confidence=conf,
                key=f"grad on val in {fname}",
            )
        calib_done: set = set()
        for ci in facts.calls:
            if _CALIB_RE.search(ci.attr or "") and ci.ctx.func not in calib_done:
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
            if not isinstance(ai.value, cst.Call) and "__VAL_STRING__" not in facts.names(ai.value):
                continue
            if facts.expr_tainted(ai.value, ai.ctx.func, ai.line):
                yield Hit(
                    ai.node,
                    f"training data `{tn}` is built from validation data: the model trains on "
                    f"tokens it is later scored on (C3)",
                    ctx=ai.ctx, key=f"val in {tn}")
