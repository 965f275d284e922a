"""Targets known by structure: the shifted stream, a loss's target argument, and what
call sites pass, whatever the names are."""

from __future__ import annotations

import textwrap

import libcst as cst

from rules import lint_source
from rules.facts import Facts


def facts_of(code: str) -> Facts:
    code = textwrap.dedent(code)
    return Facts(cst.parse_module(code), code)


def targets_by_func(code: str) -> dict[str, set[str]]:
    f = facts_of(code)
    return {fi.name: f.targets(fi) for fi in f.funcs}


def test_shifted_slices_loss_argument_and_parameters():
    got = targets_by_func('''
        import torch.nn.functional as F
        def nll_of(logits, q):
            return F.cross_entropy(logits, q, reduction="none")
        def window(model, stream, a, b):
            inp = stream[a:b]
            nxt = stream[a + 1:b + 1].long()
            part = nxt[3:]
            return nll_of(model(inp), part)
        def rows(batch):
            p, q = batch[:, :-1], batch[:, 1:]
            return q.reshape(-1)
        def fill(chunk, xs, ys, i, n):
            xs[i, :n] = chunk[:-1]
            ys[i, :n] = chunk[1:]
    ''')
    assert got["nll_of"] == {"q"}                      # the loss's target argument
    assert got["window"] == {"nxt", "part"}            # one ahead of `inp`, and sliced from it
    assert got["rows"] == {"q"}
    assert got["fill"] == {"ys"}


def test_hidden_state_shift_and_unpaired_slices_are_not_targets():
    got = targets_by_func('''
        def smear(x, g):
            prev = x[:, :-1]
            return x[:, 1:] + g * prev
        def tail(stream, a):
            rest = stream[a + 1:]
            head = stream[:a]
            return rest, head
    ''')
    assert got["smear"] == set()  # no name holds the ahead slice
    assert got["tail"] == set()   # the two slices are not the same window moved by one


def test_pg101_finds_a_target_whatever_it_is_called():
    code = textwrap.dedent('''
        import numpy as np
        def score(stream, table, logp, a, b):
            ctx = stream[a:b]
            blob = stream[a + 1:b + 1]
            h = (ctx * 1000003) % 1048576
            key = (h ^ (blob * 2654435761)) % 1048576
            p = table[key]
            return -np.log(0.5 * np.exp(logp) + 0.5 * p)
    ''')
    found = [f for f in lint_source(code, file="t.py") if f.code == "PG101"]
    assert found and "blob" in found[0].message
    # the same key built from the context only is the legal, prefix-only query
    legal = code.replace("(h ^ (blob * 2654435761))", "(h ^ (ctx * 2654435761))")
    assert [f for f in lint_source(legal, file="t.py") if f.code == "PG101"] == []


def test_pg101_names_the_same_target_in_every_process():
    """Two target-like names in one key: the finding names the first in source order.
    It used to name a set's first element, so its message and fingerprint (what
    baselines and suppressions match) changed with the interpreter's hash seed."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = textwrap.dedent('''
        import torch
        class Mixer:
            def __init__(self, buckets):
                self.mask = buckets - 1
                self.hits = torch.zeros(buckets)
                self.seen = torch.zeros(buckets)
            def score(self, ctx_hash, y):
                target_mult = 1000003
                key = ((ctx_hash ^ (y * target_mult)) & self.mask).long()
                return self.hits[key] / self.seen[ctx_hash & self.mask].clamp(min=1)
    ''')
    probe = ("import json, sys; from rules import lint_source; "
             "print(json.dumps([[f.message, f.fingerprint] for f in lint_source(sys.stdin.read(), file='t.py') "
             "if f.code == 'PG101']))")
    root = str(Path(__file__).resolve().parent.parent)
    runs = []
    for seed in ("0", "1", "2", "3", "4", "5"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root}
        out = subprocess.run([sys.executable, "-c", probe], input=code, capture_output=True, text=True,
                             env=env, cwd=root, check=True).stdout
        runs.append(json.loads(out))
    assert runs[0] and "built from the target `y`" in runs[0][0][0], runs[0]
    assert all(r == runs[0] for r in runs), runs
