from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Iterator

import libcst as cst

from auditor.findings import Severity

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
        # GPTQ calibration on validation tokens
        '''
def quantize(model, val_tokens, args):
    hessians = collect_hessians(model, val_tokens[: args.calib_tokens])
    return gptq_quantize(model, hessians)
''',
        # GPTQ calibration on validation tokens picked by a helper of the file
        '''
def take_calibration(tokens, n):
    return tokens[:n]

def quantize(model, val_tokens, args):
    calib = take_calibration(val_tokens, args.calib_tokens)
    hessians = collect_hessians(model, calib)
    return gptq_quantize(model, hessians)
''',
        # validation shards in the training loader
        '''
def build(args):
    train_loader = DistributedTokenLoader(args.train_files + "," + args.val_files, 0, 1)
    return train_loader
''',
        # near miss of per-document LoRA TTT: the adapter steps on the chunk, then the chunk is
        # handed to the ledger
        '''
import torch
import torch.nn.functional as F
def doc_lora(model, adapter, val_tokens, docs, chunk, steps, book):
    for first, last in docs:
        adapter.reset()
        opt = torch.optim.Adam(adapter.parameters(), lr=1e-3)
        for a in range(first + 1, last + 1, chunk):
            b = min(a + chunk, last + 1)
            x, y = val_tokens[a - 1:b - 1][None], val_tokens[a:b][None]
            for _ in range(steps):
                loss = F.cross_entropy(model.head(adapter(model.hidden(x)))[0], y[0])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.inference_mode():
                nll = F.cross_entropy(model.head(adapter(model.hidden(x)))[0], y[0], reduction="none")
            book.score(torch.arange(a, b), nll)
    return book.finalize()
''',
        # a ledger call before the step that records no NLL (bookkeeping), the real score after it
        '''
import torch
def chunk_adapt(model, opt, val_tokens, spans, ledger):
    for lo, hi in spans:
        x, y = val_tokens[lo - 1:hi - 1][None], val_tokens[lo:hi][None]
        ledger.add(torch.arange(lo, hi))
        loss = model(x, y).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            nll = model(x, y)
        ledger.score(torch.arange(lo, hi), nll)
    return ledger.total()
''',
        # pre-eval TTT whose objective is summed into `loss` first (a training sum, not a score)
        '''
import torch
def warm_adapt(model, opt, val_tokens, seq, rounds):
    for _ in range(rounds):
        loss = 0.0
        for i in range(0, len(val_tokens) - seq, seq):
            loss = loss + model(val_tokens[i:i + seq][None], val_tokens[i + 1:i + seq + 1][None])
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model
''',
        # near miss of context-only SLOT: the offset is fitted on the current batch, then that
        # batch is scored
        '''
import torch
import torch.nn.functional as F
def slot_now(model, val_tokens, batches, steps, totals):
    offset = torch.zeros(model.dim, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=1e-2)
    for starts in batches:
        xb = torch.stack([val_tokens[a:a + 256] for a in starts])
        yb = torch.stack([val_tokens[a + 1:a + 257] for a in starts])
        with torch.no_grad():
            hid = model.hidden(xb)
        for _ in range(steps):
            loss = F.cross_entropy(model.head(hid + offset).transpose(1, 2), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.head(hid + offset).transpose(1, 2), yb, reduction="none")
        totals.add(nll)
    return totals
''',
        # near miss: "carried" state set from the current batch before the fit
        '''
import torch
import torch.nn.functional as F
def slot_relabelled(model, val_tokens, batches, steps, totals):
    offset = torch.zeros(model.dim, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=1e-2)
    carry = None
    for starts in batches:
        xb = torch.stack([val_tokens[a:a + 256] for a in starts])
        yb = torch.stack([val_tokens[a + 1:a + 257] for a in starts])
        with torch.no_grad():
            hid = model.hidden(xb)
        carry = (hid, yb)
        ch, cy = carry
        for _ in range(steps):
            loss = F.cross_entropy(model.head(ch + offset).transpose(1, 2), cy)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.head(hid + offset).transpose(1, 2), yb, reduction="none")
        totals.add(nll)
    return totals
''',
        # near miss: the batch fetched at the end of the previous iteration is fitted on, then
        # scored (prefetch: carried, but not yet scored)
        '''
import torch
import torch.nn.functional as F
def slot_prefetched(model, val_tokens, starts_list, steps, totals):
    offset = torch.zeros(model.dim, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=1e-2)
    nxt = val_tokens[starts_list[0]:starts_list[0] + 257]
    for k in range(len(starts_list)):
        seg = nxt
        hid = model.hidden(seg[:-1][None]).detach()
        for _ in range(steps):
            loss = F.cross_entropy(model.head(hid + offset)[0], seg[1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.head(hid + offset)[0], seg[1:], reduction="none")
        totals.add(nll)
        nxt = val_tokens[starts_list[k]:starts_list[k] + 257]
    return totals
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
        # GPTQ calibration of a model returned by a training loop that also evaluates on
        # validation data: the model it hands back is not validation data
        '''
def train_model(args, val_data):
    model = GPT(args)
    for step in range(args.iterations):
        model.train_step(next(args.train_loader))
        if step % args.val_every == 0:
            evaluate(model, val_data)
    return model

def main(args, val_data, train_loader):
    model = train_model(args, val_data)
    hessians = collect_hessians(model, train_loader, n_batches=args.calib_batches)
    return gptq_quantize(model, hessians)
''',
        # per-document LoRA TTT through a ledger: each chunk is scored (inference_mode), then the
        # adapter steps on it; reset between documents; the last chunk is never trained on
        '''
import torch
import torch.nn.functional as F
def doc_lora(model, adapter, val_tokens, docs, chunk, steps, book):
    for first, last in docs:
        adapter.reset()
        opt = torch.optim.Adam(adapter.parameters(), lr=1e-3)
        for a in range(first + 1, last + 1, chunk):
            b = min(a + chunk, last + 1)
            x, y = val_tokens[a - 1:b - 1][None], val_tokens[a:b][None]
            with torch.inference_mode():
                hid = model.hidden(x)
            with torch.inference_mode():
                nll = F.cross_entropy(model.head(adapter(hid))[0], y[0], reduction="none")
            book.score(torch.arange(a, b), nll)
            if b > last:
                break
            for _ in range(steps):
                loss = F.cross_entropy(model.head(adapter(hid.clone()))[0], y[0])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return book.finalize()
''',
        # chunk TTT: a helper hands the chunk's NLL to the totals under no_grad, then a helper
        # trains on it (its objective summed into `loss` before the step)
        '''
import torch
def score_rows(totals, rows, nll):
    for r, v in zip(rows, nll):
        totals.add(r, v)

def train_on(model, opt, pieces):
    loss = 0.0
    for x, y in pieces:
        loss = loss + model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad()

def chunked(model, opt, val_tokens, plan, totals):
    for k, (rows, pieces) in enumerate(plan(val_tokens)):
        with torch.no_grad():
            nll = torch.stack([model(x, y) for x, y in pieces])
            score_rows(totals, rows, nll)
        if k < len(plan(val_tokens)) - 1:
            train_on(model, opt, pieces)
    return totals
''',
        # lagged SLOT: the offset used on batch b was fitted on batch b-1, scored in the previous
        # iteration and carried over in `last`
        '''
import torch
import torch.nn.functional as F
def slot_lagged(model, val_tokens, batches, steps, totals):
    offset = torch.zeros(model.dim, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=1e-2)
    last = None
    for starts in batches:
        xb = torch.stack([val_tokens[a:a + 256] for a in starts])
        yb = torch.stack([val_tokens[a + 1:a + 257] for a in starts])
        with torch.no_grad():
            hid = model.hidden(xb)
        if last is not None:
            lh, ly = last
            for _ in range(steps):
                loss = F.cross_entropy(model.head(lh + offset).transpose(1, 2), ly)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.head(hid + offset).transpose(1, 2), yb, reduction="none")
        totals.add(nll)
        last = (hid, yb)
    return totals
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
