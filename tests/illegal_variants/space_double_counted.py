"""The space byte counted twice: in the lookup table and again in the accumulator.

Mutation of `reference_impl.bytes.build_byte_tables`: the leading "▁" is turned
into a space and counted in `base_bytes`, while `has_leading_space` is still set,
so the accumulator adds the space a second time. Every word-initial token is one
byte too long; on English text about 17% more bytes and a lower (better) bpb
(issue #1719). The accumulator below is the reference formula, unchanged, kept
here with the table's names (`has_leading_space`): a shipped file holds both, and
the byte-table rule needs to see both.
Expected rule: byte-table (PG301).
"""

from __future__ import annotations

import numpy as np
import torch


def build_byte_tables_double_space(sp, vocab_size: int | None = None):
    n_sp = int(sp.vocab_size())
    size = max(n_sp, vocab_size or 0)
    base_bytes = np.zeros(size, dtype=np.int64)
    has_leading_space = np.zeros(size, dtype=bool)
    is_boundary = np.ones(size, dtype=bool)
    for i in range(n_sp):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        is_boundary[i] = False
        if sp.is_byte(i):
            base_bytes[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            has_leading_space[i] = True
        base_bytes[i] = len(piece.replace("\u2581", " ").encode("utf-8"))  # ILLEGAL: space kept in the table
    return torch.from_numpy(base_bytes), torch.from_numpy(has_leading_space), torch.from_numpy(is_boundary)


def count_bytes(prev_ids: torch.Tensor, tgt_ids: torch.Tensor, tables) -> torch.Tensor:
    base_bytes, has_leading_space, is_boundary = tables
    return base_bytes[tgt_ids] + (has_leading_space[tgt_ids] & ~is_boundary[prev_ids]).to(torch.int64)
