"""PG103 part (3), two-pass evaluation: near-miss cases for the structural check in
``rules/_twopass.py``. Every snippet is written here; none is copied from a submission."""

from __future__ import annotations

import textwrap

import pytest

from rules.core import Severity
from rules import lint_source
from rules.engine import LintConfig


def _pg103(code: str, config: LintConfig | None = None):
    return [f for f in lint_source(textwrap.dedent(code), file="t.py", config=config) if f.code == "PG103"]


# ---------------------------------------------------------------- illegal shapes

_METHOD_TABLE = '''
import numpy as np

class Counts:
    def __init__(self, size):
        self.ctx = np.zeros(size, dtype=np.int64)
        self.pair = np.zeros(size, dtype=np.int64)

    def _bump(self, table, keys):
        table += np.bincount(keys, minlength=len(table))

    def absorb(self, toks):
        self._bump(self.ctx, toks[:-1] % len(self.ctx))
        self._bump(self.pair, (toks[:-1] * 31 + toks[1:]) % len(self.pair))

    def prob(self, toks):
        c = self.ctx[toks[:-1] % len(self.ctx)]
        return self.pair[(toks[:-1] * 31 + toks[1:]) % len(self.pair)] / np.maximum(c, 1)

def blend_nll(p_model, counts, toks):
    p = 0.8 * p_model + 0.2 * counts.prob(toks)
    return -np.log(p)

def evaluate(model_probs, val_tokens):
    stats = Counts(1 << 16)
    stats.absorb(val_tokens)
    nll = blend_nll(model_probs, stats, val_tokens)
    return float(nll.sum())
'''

_REPLACE_CHUNKS = '''
import math
import numpy as np

def run_chunks(table, val_tokens, chunks, model_p, grow):
    out = []
    for a, b in chunks:
        p = 0.9 * model_p[a:b] + 0.1 * table.lookup(val_tokens, a, b)
        out.append(float(-np.log(p).sum()))
        if grow:
            table.grow(val_tokens, a, b)
    return out

class Table:
    def __init__(self):
        self.hits = np.zeros(4096)
    def grow(self, toks, a, b):
        np.add.at(self.hits, toks[a:b] % 4096, 1)
    def lookup(self, toks, a, b):
        return self.hits[toks[a:b] % 4096] / (1 + self.hits.sum())

def evaluate(val_tokens, chunks, model_p, redo):
    table = Table()
    first = run_chunks(table, val_tokens, chunks, model_p, True)
    total = sum(first)
    second = run_chunks(table, val_tokens, chunks[:redo], model_p, False)
    for i in range(redo):
        total = total - first[i] + second[i]
    return total / math.log(2.0)
'''

_CLOSURE = '''
import numpy as np
import torch

def evaluate(val_tokens, chunks, model_p):
    hist = torch.zeros(1024)

    def one_pass(spans, learn):
        res = []
        for a, b in spans:
            q = hist[val_tokens[a:b] % 1024] / (hist.sum() + 1)
            res.append(float(-torch.log(0.9 * model_p[a:b] + 0.1 * q).sum()))
            if learn:
                hist.index_add_(0, val_tokens[a:b] % 1024, torch.ones(b - a))
        return res

    scores = one_pass(chunks, True)
    nll_sum = sum(scores)
    again = one_pass(chunks, False)
    nll_sum = sum(again)
    return nll_sum
'''

_SWITCHED = '''
import os
import math

TWICE = bool(int(os.environ.get("EVAL_SECOND_SWEEP", "0")))

def sweep(val_tokens, counts, model_p):
    nll = 0.0
    for i in range(2, len(val_tokens)):
        nll += -math.log(mix(model_p[i], counts, val_tokens[i - 2:i]))
        counts[(val_tokens[i - 2], val_tokens[i - 1], val_tokens[i])] += 1
    if TWICE:
        nll = 0.0
        for i in range(2, len(val_tokens)):
            nll += -math.log(mix(model_p[i], counts, val_tokens[i - 2:i]))
    return nll

if __name__ == "__main__":
    print(sweep(load_tokens("data/fineweb_val_*.bin"), {}, None))
'''


_MAIN_PRINTS = '''
import math

class Stats:
    def __init__(self):
        self.seen = {}
        self.n = 0
    def feed(self, toks):
        for t in toks:
            self.seen[t] = self.seen.get(t, 0) + 1
        self.n = self.n + len(toks)
    def p(self, t):
        return (self.seen.get(t, 0) + 1) / (self.n + 50000)

def main():
    val_tokens = load_tokens("data/fineweb_val_*.bin")
    st = Stats()
    st.feed(val_tokens)
    nll = sum(-math.log(st.p(t)) for t in val_tokens)
    print(f"final val_nll:{nll / len(val_tokens):.4f}")

if __name__ == "__main__":
    main()
'''


_COLLECTED = '''
import numpy as np

def evaluate(val_tokens, model_p, chunks):
    hits = np.zeros(4096)
    np.add.at(hits, val_tokens % 4096, 1)
    per_chunk = []
    for a, b in chunks:
        q = hits[val_tokens[a:b] % 4096] / hits.sum()
        per_chunk.append(float(-np.log(0.9 * model_p[a:b] + 0.1 * q).sum()))
    return sum(per_chunk)
'''


@pytest.mark.parametrize("code", [_METHOD_TABLE, _REPLACE_CHUNKS, _CLOSURE, _MAIN_PRINTS, _COLLECTED],
                         ids=["method-table", "replace-chunks", "closure", "main-prints", "collected"])
def test_two_pass_shapes_are_flagged(code):
    found = _pg103(code)
    assert found, code
    assert all(f.severity == Severity.ILLEGAL for f in found), [f.message for f in found]
    assert any("two-pass" in f.message for f in found)


def test_switched_off_second_sweep_is_a_warning_without_evidence():
    found = _pg103(_SWITCHED)
    assert found and all(f.severity == Severity.WARNING for f in found), [(f.severity, f.message) for f in found]
    assert "EVAL_SECOND_SWEEP" in " ".join(found[0].evidence)


def test_switched_off_second_sweep_is_illegal_when_a_log_shows_it_ran():
    cfg = LintConfig(evidence_lines=[("README.md", 12, "EVAL_SECOND_SWEEP=1 torchrun train_gpt.py")])
    found = _pg103(_SWITCHED, cfg)
    assert found and found[0].severity == Severity.ILLEGAL, [(f.severity, f.message) for f in found]


# ---------------------------------------------------------------- legal near misses

_TRAIN_PREFILL = '''
import numpy as np

class Counts:
    def __init__(self):
        self.hits = np.zeros(4096)
    def absorb(self, toks):
        np.add.at(self.hits, toks % 4096, 1)
    def prob(self, toks):
        return self.hits[toks % 4096] / (1 + self.hits.sum())

def evaluate(train_tokens, val_tokens, model_p):
    stats = Counts()
    stats.absorb(train_tokens)
    nll = -np.log(0.9 * model_p + 0.1 * stats.prob(val_tokens))
    return float(nll.sum())
'''

_SECOND_ONLY_LOGGED = '''
import numpy as np

class Counts:
    def __init__(self):
        self.hits = np.zeros(4096)
    def absorb(self, toks):
        np.add.at(self.hits, toks % 4096, 1)
    def prob(self, toks):
        return self.hits[toks % 4096] / (1 + self.hits.sum())

def evaluate(val_tokens, chunks, model_p):
    stats = Counts()
    nll_sum = 0.0
    for a, b in chunks:
        nll_sum += float(-np.log(0.9 * model_p[a:b] + 0.1 * stats.prob(val_tokens[a:b])).sum())
        stats.absorb(val_tokens[a:b])
    hindsight = float(-np.log(0.9 * model_p + 0.1 * stats.prob(val_tokens)).sum())
    print(f"diagnostic hindsight nll {hindsight:.4f}")
    return nll_sum
'''

_STATS_AFTER = '''
import numpy as np

class Counts:
    def __init__(self):
        self.hits = np.zeros(4096)
    def absorb(self, toks):
        np.add.at(self.hits, toks % 4096, 1)
    def prob(self, toks):
        return self.hits[toks % 4096] / (1 + self.hits.sum())
    def filled(self):
        return int((self.hits > 0).sum())

def evaluate(val_tokens, chunks, model_p):
    stats = Counts()
    nll_sum = 0.0
    for a, b in chunks:
        nll_sum += float(-np.log(0.9 * model_p[a:b] + 0.1 * stats.prob(val_tokens[a:b])).sum())
        stats.absorb(val_tokens[a:b])
    occupancy = stats.filled()
    return nll_sum, occupancy
'''

_CHUNK_HELPER = '''
import numpy as np

class Counts:
    def __init__(self):
        self.hits = np.zeros(4096)
    def absorb(self, toks):
        np.add.at(self.hits, toks % 4096, 1)
    def prob(self, toks):
        return self.hits[toks % 4096] / (1 + self.hits.sum())

def score_span(stats, toks, p):
    return float(-np.log(0.9 * p + 0.1 * stats.prob(toks)).sum())

def evaluate(val_tokens, chunks, model_p):
    stats = Counts()
    nll_sum = 0.0
    for a, b in chunks:
        nll_sum += score_span(stats, val_tokens[a:b], model_p[a:b])
        stats.absorb(val_tokens[a:b])
    return nll_sum
'''

_EXCLUSIVE_BRANCHES = '''
import numpy as np

def evaluate(val_tokens, model_p, warm):
    hits = np.zeros(4096)
    if warm:
        np.add.at(hits, val_tokens % 4096, 1)
    else:
        nll = -np.log(0.9 * model_p + 0.1 * hits[val_tokens % 4096] / (1 + hits.sum()))
        return float(nll.sum())
    return 0.0
'''


_WARM_PREFIX = '''
import numpy as np

def evaluate(val_tokens, model_p, first, last):
    hits = np.zeros(4096)
    # this worker starts at ``first``: tokens before it were scored by earlier workers
    np.add.at(hits, val_tokens[:first] % 4096, 1)
    nll_sum = 0.0
    for a in range(first, last, 256):
        toks = val_tokens[a:a + 256]
        q = hits[toks % 4096] / (1 + hits.sum())
        nll_sum += float(-np.log(0.9 * model_p[a:a + 256] + 0.1 * q).sum())
        np.add.at(hits, toks % 4096, 1)
    return nll_sum
'''


@pytest.mark.parametrize("code", [_TRAIN_PREFILL, _WARM_PREFIX, _SECOND_ONLY_LOGGED, _STATS_AFTER, _CHUNK_HELPER,
                                  _EXCLUSIVE_BRANCHES],
                         ids=["train-prefill", "warm-prefix", "second-only-logged", "stats-after", "chunk-helper",
                              "exclusive-branches"])
def test_two_pass_near_misses_are_quiet(code):
    found = [f for f in _pg103(code) if "two-pass" in f.message]
    assert not found, [f.message for f in found]
