"""Byte accounting for val_bpb: the canonical per-token lookup tables.

The rule (RULEBOOK.md, "Bytes in val_bpb"): for every normal piece strip a
leading "▁" (remembering `has_leading_space`) and count the UTF-8 bytes of the
rest; byte-fallback pieces are 1 byte; control, unknown and unused pieces are 0
bytes and are "boundaries". The space is NOT in the table: the accumulator adds
one byte for it when the previous token is not a boundary (a document's first
word has no space before it). Counting it in both places is the known bug.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def build_byte_tables(sp, vocab_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (base_bytes int64, has_leading_space bool, is_boundary bool), one entry per token id.

    Ids beyond the tokenizer's vocabulary (padding of the embedding) are boundaries of 0 bytes.
    """
    n_sp = int(sp.vocab_size())
    size = max(n_sp, vocab_size or 0)
    base = np.zeros(size, dtype=np.int64)
    lead = np.zeros(size, dtype=bool)
    boundary = np.ones(size, dtype=bool)
    for i in range(n_sp):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return torch.from_numpy(base), torch.from_numpy(lead), torch.from_numpy(boundary)


def count_bytes(prev_ids: torch.Tensor, tgt_ids: torch.Tensor, tables) -> torch.Tensor:
    """Bytes of each target token given its predecessor (same shape as tgt_ids)."""
    base, lead, boundary = (t.to(tgt_ids.device) for t in tables)
    return base[tgt_ids] + (lead[tgt_ids] & ~boundary[prev_ids]).to(torch.int64)


def bits_per_byte(total_nll_nats: float, total_bytes: int) -> float:
    """Summed natural-log NLL -> bits, divided by bytes."""
    return total_nll_nats / math.log(2.0) / total_bytes
