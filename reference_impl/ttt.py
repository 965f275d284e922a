"""Legal test-time adaptation: every path scores first, then adapts, through the ledger.

- Score-first chunk TTT: chunk i is scored under no_grad and added to the totals;
  only then does the model train on chunk i; chunk i+1 is scored with weights
  adapted on chunks 0..i; the last chunk is never trained on.
- Per-document LoRA TTT: a low-rank adapter on the final hidden state, reset at
  every document; each chunk of a document is scored, then the adapter steps on
  it; documents never see each other (context starts at their BOS).
- Context-only SLOT: one hidden-state offset; before each batch it steps on the
  targets scored in the previous batch, and the offset and its Adam state carry
  over, so it is fitted on targets of earlier batches only; it never sees the
  batch it scores.
- Normalized n-gram tilt: a hint token from counts of already-scored tokens
  (prefix-only) tilts the full distribution, renormalised:
  p'(a) = p(a) exp(beta [a = h]) / (1 + p(h) (e^beta - 1)); counts are updated
  with the target only after it is scored.

Multi-rank: each rank owns a contiguous block of windows (or whole documents).
Tokens before a rank's block precede it in stream order and are scored by earlier
ranks with states this rank never touches; `grant_prefix` records exactly that.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impl.bytes import count_bytes
from reference_impl.evaluate import autocast_for, batched, plan_windows, rank_slice, score_rows, window_tensors
from reference_impl.ledger import ScoreLedger
from reference_impl.optim import allreduce_grads


def group_windows(windows: list, chunk_tokens: int) -> list[list]:
    """Consecutive windows grouped so each group scores about chunk_tokens targets."""
    groups, cur, count = [], [], 0
    for w in windows:
        cur.append(w)
        count += w[1] - w[2] + 1
        if count >= chunk_tokens:
            groups.append(cur)
            cur, count = [], 0
    if cur:
        groups.append(cur)
    return groups


def eval_chunk_ttt(model, tokens, tables, cfg, rank=0, world=1, device=None, keep_nll=False):
    device = device or next(model.parameters()).device
    model = copy.deepcopy(model)
    ledger = ScoreLedger(tokens.numel(), keep_nll=keep_nll)
    chunks = group_windows(plan_windows(tokens.numel(), cfg.eval_seq_len, cfg.eval_stride), cfg.ttt_chunk_tokens)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.ttt_lr, momentum=0.9)
    for ci, chunk in enumerate(chunks):
        lo, hi = chunk[0][2], chunk[-1][1]  # this chunk scores targets lo..hi
        model.eval()
        with torch.no_grad():
            for batch in batched(rank_slice(chunk, rank, world), cfg.eval_batch_seqs):
                x, y = window_tensors(tokens, batch, device)
                with autocast_for(device):
                    nll = model.nll(x, y)
                score_rows(ledger, tokens, batch, nll, tables)
        ledger.sync(lo, hi + 1)
        if ci == len(chunks) - 1:
            break  # never train on the last chunk
        model.train()
        _train_range(model, opt, tokens, lo, hi, cfg, ledger, rank, world, device)
    return ledger.finalize(), ledger


def _train_range(model, opt, tokens, lo, hi, cfg, ledger, rank, world, device) -> None:
    """Train on targets lo..hi (inputs lo-1..hi-1): all already scored."""
    ledger.check_update(torch.arange(lo - 1, hi + 1))
    seq = cfg.eval_seq_len
    pieces = [(a, min(a + seq, hi)) for a in range(lo - 1, hi, seq)]
    per_step = world * cfg.eval_batch_seqs
    for _ in range(cfg.ttt_epochs):
        for s in range(-(-len(pieces) // per_step)):
            base = s * per_step + rank * cfg.eval_batch_seqs
            mine = pieces[base : base + cfg.eval_batch_seqs]
            loss = sum(p.sum() * 0.0 for p in model.parameters())  # every rank joins the all-reduce
            ntok = sum(e - a for a, e in mine)
            for a, e in mine:
                with autocast_for(device):
                    loss = loss + model.nll(tokens[a:e][None].to(device), tokens[a + 1 : e + 1][None].to(device)).sum() / ntok
            loss.backward()
            allreduce_grads(model, world)
            opt.step()
            opt.zero_grad(set_to_none=True)


class HiddenLoRA(nn.Module):
    """h + B(A h): a rank-r adapter on the final hidden state; B starts at zero (identity)."""

    def __init__(self, dim: int, rank: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("A0", torch.randn(rank, dim, generator=gen) / math.sqrt(dim), persistent=False)
        self.A = nn.Parameter(self.A0.clone())
        self.B = nn.Parameter(torch.zeros(dim, rank))

    def reset(self) -> None:
        """Back to the exact initial state: every document starts from the same adapter."""
        with torch.no_grad():
            self.A.copy_(self.A0)
            self.B.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + (h @ self.A.T) @ self.B.T


def doc_spans(tokens: torch.Tensor, bos_id: int) -> list[tuple[int, int]]:
    """(start, last_target) per document: inputs from its BOS, targets up to the next BOS."""
    starts = (tokens == bos_id).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    ends = starts[1:] + [tokens.numel() - 1]
    return [(s, e) for s, e in zip(starts, ends) if e > s]


def eval_lora_ttt(model, tokens, tables, cfg, rank=0, world=1, device=None, keep_nll=False):
    device = device or next(model.parameters()).device
    model.eval()
    ledger = ScoreLedger(tokens.numel(), keep_nll=keep_nll)
    adapter = HiddenLoRA(cfg.model_dim, cfg.lora_rank, cfg.seed).to(device)
    spans = rank_slice(doc_spans(tokens, cfg.bos_id), rank, world)
    if spans:
        ledger.grant_prefix(spans[0][0] + 1)  # up to this rank's first BOS, scored by earlier ranks
    for s, last in spans:
        adapter.reset()  # nothing carries over between documents
        opt = torch.optim.Adam(adapter.parameters(), lr=cfg.lora_lr)
        for a in range(s + 1, last + 1, cfg.lora_chunk_tokens):
            b = min(a + cfg.lora_chunk_tokens - 1, last)
            # context: from the document's BOS at most; fixed by a (not b), so where the document
            # ends (a future BOS) never changes the context of an earlier position
            w0 = max(s, a + cfg.lora_chunk_tokens - 1 - cfg.eval_seq_len)
            x, y = tokens[w0:b][None].to(device), tokens[w0 + 1 : b + 1][None].to(device)
            with torch.no_grad(), autocast_for(device):
                h = model.forward_hidden(x).float()
            with torch.no_grad():
                nll = F.cross_entropy(model.logits_from_hidden(adapter(h))[0], y[0], reduction="none")
            pos = torch.arange(a, b + 1)
            ledger.score(pos, nll[a - (w0 + 1) :], count_bytes(tokens[pos - 1], tokens[pos], tables))
            if b == last:
                break  # the document's last chunk is never trained on
            ledger.check_update(torch.arange(w0, b + 1))
            for _ in range(cfg.lora_steps):
                loss = F.cross_entropy(model.logits_from_hidden(adapter(h))[0], y[0])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return ledger.finalize(), ledger


def eval_slot(model, tokens, tables, cfg, rank=0, world=1, device=None, keep_nll=False):
    """Context-only SLOT: the offset used on batch b was fitted on scored targets of batches before b only
    (each batch adds steps on the previous batch's targets; the offset and Adam state carry over)."""
    device = device or next(model.parameters()).device
    model.eval()
    ledger = ScoreLedger(tokens.numel(), keep_nll=keep_nll)
    windows = rank_slice(plan_windows(tokens.numel(), cfg.eval_seq_len, cfg.eval_stride), rank, world)
    if windows:
        ledger.grant_prefix(windows[0][2])
    delta = torch.zeros(cfg.model_dim, device=device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.slot_lr)
    prev = None
    for batch in batched(windows, cfg.eval_batch_seqs):
        x, y = window_tensors(tokens, batch, device)
        with torch.no_grad(), autocast_for(device):
            h = model.forward_hidden(x).float()
        if prev is not None:
            ph, py, pmask, (plo, phi) = prev
            ledger.check_update(torch.arange(plo, phi + 1))
            for _ in range(cfg.slot_steps):
                nll = F.cross_entropy(model.logits_from_hidden(ph + delta).transpose(1, 2), py, reduction="none")
                loss = nll[pmask].mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.logits_from_hidden(h + delta).transpose(1, 2), y, reduction="none")
        score_rows(ledger, tokens, batch, nll, tables)
        mask = torch.zeros_like(y, dtype=torch.bool)
        for i, (s, _, first) in enumerate(batch):
            mask[i, first - (s + 1) :] = True
        prev = (h, y, mask, (batch[0][0], batch[-1][1]))
    return ledger.finalize(), ledger


class NgramHint:
    """Most frequent next token after the last (order-1) tokens, from counts of scored tokens."""

    def __init__(self, order: int):
        self.k = max(order - 1, 1)
        self.table: dict[tuple, list] = {}

    def hint(self, ctx: tuple) -> int | None:
        entry = self.table.get(ctx)
        return None if entry is None else entry[0]

    def update(self, ctx: tuple, token: int) -> None:
        entry = self.table.setdefault(ctx, [token, 0, {}])
        c = entry[2][token] = entry[2].get(token, 0) + 1
        if c > entry[1]:
            entry[0], entry[1] = token, c


def tilt_logprobs(logp: torch.Tensor, hint: int | None, beta: float) -> torch.Tensor:
    """The whole tilted distribution (log), normalised over the vocabulary."""
    if hint is None:
        return logp
    q = logp[..., hint].exp()
    out = logp - torch.log1p(q * math.expm1(beta)).unsqueeze(-1)
    out[..., hint] += beta
    return out


def eval_ngram_tilt(model, tokens, tables, cfg, rank=0, world=1, device=None, keep_nll=False):
    device = device or next(model.parameters()).device
    model.eval()
    ledger = ScoreLedger(tokens.numel(), keep_nll=keep_nll)
    windows = rank_slice(plan_windows(tokens.numel(), cfg.eval_seq_len, cfg.eval_stride), rank, world)
    if windows:
        ledger.grant_prefix(windows[0][2])
    counts = NgramHint(cfg.ngram_order)
    toks = tokens.tolist()
    k, boost = counts.k, math.expm1(cfg.ngram_beta)
    for batch in batched(windows, cfg.eval_batch_seqs):
        x, _ = window_tensors(tokens, batch, device)
        with torch.no_grad(), autocast_for(device):
            logp = torch.log_softmax(model.forward_logits(x).float(), dim=-1).cpu()
        for i, (s, e, first) in enumerate(batch):
            pos = torch.arange(first, e + 1)
            nbytes = count_bytes(tokens[pos - 1], tokens[pos], tables).tolist()
            rows = logp[i, first - (s + 1) :]
            for j, row, nb in zip(range(first, e + 1), rows, nbytes):
                ctx = tuple(toks[max(0, j - k) : j])
                h, y = counts.hint(ctx), toks[j]
                lp = float(row[y])
                if h is not None:  # same value as tilt_logprobs(row, h, beta)[y], without the full vector
                    lp += cfg.ngram_beta * (y == h) - math.log1p(math.exp(float(row[h])) * boost)
                ledger.score([j], [-lp], [nb])
                ledger.check_update([j])
                counts.update(ctx, y)
    return ledger.finalize(), ledger
