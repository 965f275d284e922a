"""PG105 bos-token-mixing: document structure decides, not names.

A previous-position mix leaks only where a row of the evaluation holds the end of
one document and the start of the next while the model is told where they split.
Every snippet here is written for this test.
"""

from __future__ import annotations

import pytest

from rules.core import Severity
from rules.engine import lint_source

# the model side: a SmearGate module run by a GPT whose forward takes varlen boundaries
MODEL = '''
import torch
import torch.nn.functional as F

class SmearGate(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(dim))
    def forward(self, h):
        shifted = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return h + torch.sigmoid(self.w) * shifted

class GPT(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.emb = torch.nn.Embedding(8192, dim)
        self.smear = SmearGate(dim)
    def forward(self, ids, boundaries=None):
        h = self.smear(self.emb(ids))
        return self.trunk(h, boundaries)
'''

PACKED_EVAL = '''
def score_stream(net, val_tokens, width):
    total = 0.0
    for s in range(0, val_tokens.numel() - width, width):
        row = val_tokens[s:s + width].long()
        marks = (row == 1).nonzero().flatten()
        bounds = torch.cat([marks, torch.tensor([width])]).int()
        total += net(row[None], boundaries=bounds).sum().item()
    return total
'''


def _pg105(src: str, env: dict | None = None):
    from rules.engine import LintConfig
    return [f for f in lint_source(src, file="t.py", config=LintConfig(env=env or {})) if f.code == "PG105"]


def _line(src: str, needle: str) -> int:
    return next(i for i, ln in enumerate(src.splitlines(), 1) if needle in ln)


# ---------------------------------------------------------------- INVALID
def test_varlen_packing_reaches_a_smear_module_through_self_attribute():
    src = MODEL + PACKED_EVAL
    fs = _pg105(src)
    assert [f.severity for f in fs] == [Severity.ILLEGAL]
    assert fs[0].location.line_start == _line(src, "return h + torch.sigmoid")
    assert "GPT.forward" in fs[0].message and "boundaries=" in fs[0].message


def test_positional_descriptor():
    src = MODEL + PACKED_EVAL.replace("net(row[None], boundaries=bounds)", "net(row[None], bounds)")
    assert [f.severity for f in _pg105(src)] == [Severity.ILLEGAL]


def test_length_sorted_documents_concatenated_with_lengths_as_boundaries():
    src = MODEL + '''
def spans(val):
    starts = (val == 1).nonzero().flatten().tolist() + [val.numel()]
    return [(a, b - a) for a, b in zip(starts, starts[1:])]

def score_sorted(net, val_tokens):
    docs = sorted(spans(val_tokens), key=lambda d: d[1])
    out = []
    for i in range(0, len(docs), 16):
        group = docs[i:i + 16]
        row = torch.cat([val_tokens[a:a + n] for a, n in group])
        lens = torch.tensor([0] + [n for _, n in group])
        out.append(net(row[None], boundaries=torch.cumsum(lens, 0)))
    return out
'''
    assert [f.severity for f in _pg105(src)] == [Severity.ILLEGAL]


def test_packing_inside_a_helper_fed_scored_documents():
    # a phase that re-packs already scored documents into one flat tensor and adapts on it
    src = MODEL + '''
def adapt_on(net, opt, val_tokens, width):
    for s in range(0, val_tokens.numel() - width, width):
        flat = val_tokens[s:s + width + 1]
        inp = flat[:-1]
        cu = torch.nonzero(inp == 1).flatten().int()
        net(inp[None], boundaries=cu).mean().backward()
        opt.step()
'''
    assert [f.severity for f in _pg105(src)] == [Severity.ILLEGAL]


def test_roll_wraps_the_last_token_into_position_zero_in_any_structure():
    src = '''
import torch
def mix(h, lam):
    before = torch.roll(h, shifts=1, dims=1)
    return h + lam * before
'''
    fs = _pg105(src)
    assert [f.location.line_start for f in fs] == [5] and "roll" in fs[0].message


def test_packed_eval_behind_a_default_off_switch_is_a_warning():
    src = MODEL + '''
import os
PACKED = bool(int(os.environ.get("PACKED_EVAL", "0")))
''' + PACKED_EVAL + '''
def main(val_tokens):
    net = GPT(64)
    if PACKED:
        return score_stream(net, val_tokens, 2048)
    return None

if __name__ == "__main__":
    main(load_tokens("data/fineweb_val_*.bin"))
'''
    off = _pg105(src)
    assert [f.severity for f in off] == [Severity.WARNING] and "PACKED" in off[0].message
    assert [f.severity for f in _pg105(src, env={"PACKED_EVAL": "1"})] == [Severity.ILLEGAL]


# ---------------------------------------------------------------- VALID (near misses)
@pytest.mark.parametrize("src", [
    # boundaries computed for training rows only: training is not the scored evaluation
    MODEL + '''
def train_step(net, loader):
    batch = loader.next_train_batch()
    cu = (batch == 1).nonzero().flatten().int()
    return net(batch[None], boundaries=cu)

def score_flat(net, val_tokens, width):
    return [net(val_tokens[s:s + width][None]) for s in range(0, val_tokens.numel(), width)]
''',
    # the evaluation passes no boundaries (None): the model attends over the whole row
    MODEL + '''
def score_flat(net, val_tokens, width):
    return [net(val_tokens[s:s + width][None], boundaries=None) for s in range(0, val_tokens.numel(), width)]
''',
    # one document per row, padded at the end; rows chosen by BOS positions, adapter passed along
    MODEL.replace("def forward(self, ids, boundaries=None):", "def forward(self, ids, boundaries=None, adapter=None):") + '''
def score_docs(net, val_tokens, adapter_cls, width):
    starts = (val_tokens == 1).nonzero().flatten().tolist() + [val_tokens.numel()]
    docs = sorted(zip(starts, starts[1:]), key=lambda d: d[1] - d[0])
    for i in range(0, len(docs), 8):
        group = docs[i:i + 8]
        adapter = adapter_cls(len(group))
        xb = torch.zeros(len(group), width, dtype=torch.long)
        for r, (a, b) in enumerate(group):
            piece = val_tokens[a:min(b, a + width)]
            xb[r, :piece.numel()] = piece
        net(xb, adapter=adapter)
''',
    # the mask is an equality test of token ids reaching the gate
    MODEL.replace("    def forward(self, h):\n", "    def forward(self, h, ids):\n").replace(
        "return h + torch.sigmoid(self.w) * shifted",
        "keep = (ids[:, 1:] != 1).float()[..., None]\n"
        "        keep = torch.cat([torch.zeros_like(keep[:, :1]), keep], dim=1)\n"
        "        return h + torch.sigmoid(self.w) * keep * shifted").replace(
        "self.smear(self.emb(ids))", "self.smear(self.emb(ids), ids)") + PACKED_EVAL,
    # the mask is computed by the caller and handed in
    MODEL.replace("    def forward(self, h):\n", "    def forward(self, h, bos_gate):\n").replace(
        "return h + torch.sigmoid(self.w) * shifted",
        "return h + torch.sigmoid(self.w) * bos_gate * shifted").replace(
        "self.smear(self.emb(ids))", "self.smear(self.emb(ids), (ids != 1)[..., None])") + PACKED_EVAL,
    # a roll whose position 0 is reset before the blend
    '''
import torch
def mix(h, lam):
    before = torch.roll(h, shifts=1, dims=1)
    before[:, 0] = 0
    return h + lam * before
''',
    # a roll over the feature dimension is not token mixing
    '''
import torch
def mix(h, lam):
    return h + lam * torch.roll(h, 1, dims=-1)
''',
    # a comment about cu_seqlens is not packing
    '''
import torch
# no cu_seqlens here: the stream is scored without splitting at BOS
def smear(x, g):
    return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
''',
])
def test_near_misses_are_clean(src):
    assert not _pg105(src)


def test_per_document_list_evaluation_is_clean():
    """Split at BOS, one document per forward: position 0 is the document's own BOS."""
    src = '''
import torch
class SmearGate(torch.nn.Module):
    def forward(self, x):
        g = torch.sigmoid(self.gate)
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)

def eval_docs(model, val_tokens, bos_id):
    starts = (val_tokens == bos_id).nonzero().flatten().tolist()
    return [model(val_tokens[a:b]) for a, b in zip(starts, starts[1:])]
'''
    assert not _pg105(src)


# the model finds the document starts in its own row (a block mask from ``ids == BOS``)
SELF_SPLITTING = '''
import torch
class GPT(torch.nn.Module):
    def forward(self, ids):
        docs = (ids == 1).cumsum(dim=-1)
        h = self.emb(ids)
        h = torch.cat([h[:, :1], h[:, 1:] + self.lam * h[:, :-1]], dim=1)
        return self.trunk(h, docs[..., :, None] == docs[..., None, :])
'''


def test_self_splitting_model_fed_windows_of_the_flat_stream():
    src = SELF_SPLITTING + '''
def evaluate(model, val_tokens, width):
    for pos in range(0, val_tokens.numel() - width, width):
        window = val_tokens[pos:pos + width]
        model(window[None])
'''
    fs = _pg105(src)
    assert [f.location.line_start for f in fs] == [_line(src, "h = torch.cat")]
    assert "flat stream" in fs[0].message


def test_self_splitting_model_fed_one_document_per_row_is_clean():
    src = SELF_SPLITTING + '''
def evaluate(model, val_tokens):
    starts = (val_tokens == 1).nonzero().flatten().tolist() + [val_tokens.numel()]
    for a, b in zip(starts, starts[1:]):
        model(val_tokens[a:b][None])
'''
    assert not _pg105(src)


SORTED_CONCAT = '''
import torch
def blend(h, a):
    return torch.cat([h[:, :1], h[:, 1:] + a * h[:, :-1]], dim=1)

def grouped(val_tokens):
    cuts = (val_tokens == 1).nonzero().flatten().tolist() + [val_tokens.numel()]
    spans = list(zip(cuts, cuts[1:]))
    spans.sort(key=lambda se: se[1] - se[0])
    pieces = []
    for lo, hi in spans[:32]:
        pieces.append(val_tokens[lo:hi])
    return torch.cat(pieces)

def run(net, val_tokens):
    return net(grouped(val_tokens)[None])
'''


def test_documents_reordered_and_concatenated_into_one_row():
    fs = _pg105(SORTED_CONCAT)
    assert [f.location.line_start for f in fs] == [4] and "reordering" in fs[0].message


def test_documents_concatenated_in_stream_order_without_boundaries_are_clean():
    # the predecessor of each BOS is its stream predecessor, and attention sees it anyway
    assert not _pg105(SORTED_CONCAT.replace("    spans.sort(key=lambda se: se[1] - se[0])\n", ""))
