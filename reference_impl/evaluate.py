"""Evaluation: canonical (non-overlapping) and sliding-window, per-token NLL.

A window (start, end, score_from) feeds tokens[start:end] and predicts targets
tokens[start+1:end+1]; only targets with index >= score_from are counted, so
consecutive windows overlap in context but never in scored targets. The plan
covers every target 1..N-1 exactly once, including the stream's tail. Windows are
split contiguously across ranks; totals are float64 and reduced by the ledger.
"""

from __future__ import annotations

import contextlib

import torch

from reference_impl.bytes import count_bytes
from reference_impl.ledger import ScoreLedger


def plan_windows(n_tokens: int, seq_len: int, stride: int = 0) -> list[tuple[int, int, int]]:
    stride = seq_len if stride <= 0 else min(stride, seq_len)
    last = n_tokens - 1  # index of the last target
    windows, done, start = [], 0, 0  # targets 1..done are planned
    while done < last:
        end = min(start + seq_len, last)
        if end > done:  # a clamped final window slides left to keep full context
            windows.append((max(0, end - seq_len), end, done + 1))
            done = end
        start += stride
    return windows


def rank_slice(items: list, rank: int, world: int) -> list:
    per = -(-len(items) // world)
    return items[rank * per : (rank + 1) * per]


def autocast_for(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batched(windows: list, batch_seqs: int):
    """Consecutive windows grouped into batches of equal length."""
    batch: list = []
    for w in windows:
        if batch and (len(batch) == batch_seqs or (w[1] - w[0]) != (batch[0][1] - batch[0][0])):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def window_tensors(tokens: torch.Tensor, batch: list, device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([tokens[s:e] for s, e, _ in batch]).to(device)
    y = torch.stack([tokens[s + 1 : e + 1] for s, e, _ in batch]).to(device)
    return x, y


def score_rows(ledger: ScoreLedger, tokens: torch.Tensor, batch: list, nll: torch.Tensor, tables) -> None:
    """Hand the scored part of each window to the ledger."""
    for i, (s, e, first) in enumerate(batch):
        pos = torch.arange(first, e + 1)
        row = nll[i, first - (s + 1) :].float().cpu()
        ledger.score(pos, row, count_bytes(tokens[pos - 1], tokens[pos], tables))


@torch.no_grad()
def evaluate(model, tokens: torch.Tensor, tables, seq_len: int, stride: int = 0, batch_seqs: int = 32,
             rank: int = 0, world: int = 1, device=None, keep_nll: bool = False) -> tuple[dict, ScoreLedger]:
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    ledger = ScoreLedger(tokens.numel(), keep_nll=keep_nll)
    windows = rank_slice(plan_windows(tokens.numel(), seq_len, stride), rank, world)
    for batch in batched(windows, batch_seqs):
        x, y = window_tensors(tokens, batch, device)
        with autocast_for(device):
            nll = model.nll(x, y)
        score_rows(ledger, tokens, batch, nll, tables)
    model.train(was_training)
    return ledger.finalize(), ledger
