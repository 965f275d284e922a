"""SmearGate without the BOS mask, in a length-sorted packed document batch.

Mutation of `reference_impl.model.SmearGate`: the `keep` mask that zeroes the
gate where the current token is BOS is dropped. The evaluation isolates
documents (attention is block-diagonal per document) and packs them sorted by
length, so each BOS position receives the last token of whatever document was
packed before it, which is not even its stream predecessor (C1; PR #1797 audit,
fixed in #1851). Expected rule: bos-token-mixing (PG105).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class UnmaskedSmearGate(nn.Module):
    def __init__(self, gate: torch.Tensor):
        super().__init__()
        self.gate = nn.Parameter(gate.detach().clone())

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate)
        # ILLEGAL: the gate applies at every position, so each document's first position
        # receives the last token of the document packed before it
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)


def pack_sorted_docs(val_tokens: torch.Tensor, bos_id: int) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """One row of documents sorted by length; returns (row, [(stream_start, row_start, length)])."""
    starts = (val_tokens == bos_id).nonzero().flatten().tolist()
    ends = starts[1:] + [val_tokens.numel()]
    docs = sorted(zip(starts, ends), key=lambda d: d[1] - d[0])
    parts, index, offset = [], [], 0
    for s, e in docs:
        parts.append(val_tokens[s:e])
        index.append((s, offset, e - s))
        offset += e - s
    return torch.cat(parts)[None], index


def doc_nll_sorted_batch(model, val_tokens, bos_id: int, unmasked: bool = True):
    """Per-document NLL (keyed by the document's stream start) of the packed, length-sorted row.

    unmasked=True swaps in the mutated smear; unmasked=False is the reference (BOS-masked) one.
    """
    row, index = pack_sorted_docs(val_tokens, bos_id)
    original = model.smear
    if unmasked:
        model.smear = UnmaskedSmearGate(original.gate)
    try:
        with torch.no_grad():
            nll = model.nll(row[:, :-1], row[:, 1:], isolate_docs=True)[0]
    finally:
        model.smear = original
    # nll[i] predicts row[i + 1]: a document's own targets are nll[off : off + length - 1]
    return {s: nll[off : off + length - 1].clone() for s, off, length in index}, index
