"""PG103 multi-pass scoring: guards read as values, passes told from data loops, resets.

Near misses sit next to each violation: the same loop shape with the score taken
on the first pass, a guard that tests something other than the pass, a loop that
picks different data each iteration.
"""

from __future__ import annotations

import textwrap

import pytest

from rules.core import Severity
from rules import lint_source


def pg103(code: str):
    return [f for f in lint_source(textwrap.dedent(code), file="t.py") if f.code == "PG103"]


_LOOP = '''
import torch
def last(i, n):
    return i + 1 == n
def doc_ttt(model, lora, opt, docs, n_epochs):
    nll_total = 0.0
    for x, y in docs:
        for k in range(n_epochs):
            lr = 0.01 * (1 - k / n_epochs)
            for g in opt.param_groups:
                g["lr"] = lr
            GUARD
            nll = model(x, y, lora)
            if COND:
                nll_total += nll.sum().item()
            nll.mean().backward()
            opt.step()
    return nll_total
'''


@pytest.mark.parametrize("guard,cond", [
    ("keep = k == n_epochs - 1", "keep"),          # stored in a variable
    ("keep = (k + 1 == n_epochs)", "keep"),        # another spelling of the last pass
    ("", "last(k, n_epochs)"),                     # returned by a small function
    ("done = k >= n_epochs - 1", "done and x is not None"),  # part of a conjunction
])
def test_last_pass_guard_read_as_a_value(guard, cond):
    found = pg103(_LOOP.replace("GUARD", guard or "pass").replace("COND", cond))
    assert [f.severity for f in found] == [Severity.ILLEGAL]
    assert "last pass" in found[0].message


@pytest.mark.parametrize("guard,cond", [
    ("keep = k == 0", "keep"),                     # the first pass: a first score
    ("keep = not k", "keep"),
    ("keep = x is not None", "keep"),              # not about the pass at all
])
def test_first_pass_or_unrelated_guard_is_not_last_pass(guard, cond):
    found = pg103(_LOOP.replace("GUARD", guard).replace("COND", cond))
    assert not any("last pass" in f.message for f in found)
    if "k" in guard.split("=", 1)[1]:
        assert found == []  # scored on the first pass only


def test_early_exit_before_the_score_selects_the_last_pass():
    found = pg103('''
        import torch
        def ttt(model, opt, doc, epochs):
            nll_sum = 0.0
            for e in range(epochs):
                nll = model(doc)
                nll.mean().backward()
                opt.step()
                if e < epochs - 1:
                    continue
                with torch.no_grad():
                    nll_sum += model(doc).sum().item()
            return nll_sum
    ''')
    assert len(found) == 1 and "last pass" in found[0].message


_RESET = '''
import torch
def batched_ttt(model, opt, docs, epochs, acc_loss, total):
    for bi in range(0, len(docs), 4):
        batch = docs[bi:bi + 4]
        for ep in range(epochs):
            RESET
            for b in range(len(batch)):
                if not batch[b]:
                    continue
                with torch.no_grad():
                    acc_loss[b] += model(batch[b]).sum()
            model(batch).mean().backward()
            opt.step()
        for b in range(len(batch)):
            total += acc_loss[b]
    return total
'''


@pytest.mark.parametrize("reset", ["acc_loss.zero_()", "for b in range(len(batch)): acc_loss[b].zero_()",
                                   "acc_loss = torch.zeros(4)"])
def test_total_reset_every_pass(reset):
    found = pg103(_RESET.replace("RESET", reset))
    assert len(found) == 1 and found[0].severity is Severity.ILLEGAL
    assert "reset every pass" in found[0].message
    # a guard unrelated to the pass (``if not batch[b]: continue``) is not a first-pass guard


def test_scored_only_on_first_pass_is_legal():
    code = _RESET.replace("RESET", "pass").replace("if not batch[b]:", "if ep > 0:")
    assert pg103(code) == []


def test_data_loop_with_last_chunk_guard_is_not_a_pass():
    # ``ci`` picks a different chunk every iteration (through a window helper): counting
    # only the last chunk is a coverage question, not a re-score
    assert pg103('''
        import torch
        def window(ci, size):
            return ci * size, size
        def chunked(model, opt, toks, n_chunks, size):
            nll_sum = 0.0
            for ci in range(n_chunks):
                start, ln = window(ci, size)
                x = toks[start:start + ln]
                nll = model(x)
                if ci == n_chunks - 1:
                    nll_sum += nll.sum().item()
                nll.mean().backward()
                opt.step()
            return nll_sum
    ''') == []


def test_schedule_only_loop_variable_still_a_pass():
    found = pg103('''
        import math, torch
        def ttt(model, opt, doc, epochs):
            loss_sum = 0.0
            for ep in range(epochs):
                for g in opt.param_groups:
                    g["lr"] = 0.5 * (1 + math.cos(math.pi * ep / epochs))
                with torch.no_grad():
                    loss_sum += model(doc).sum().item()
                model(doc).mean().backward()
                opt.step()
            return loss_sum
    ''')
    assert len(found) == 1 and "adds its score again" in found[0].message
