"""The legal reference implementation lints clean, and near misses of its shapes do not.

The reference's context-only SLOT (``ttt.eval_slot``: the delta used on batch b is
fitted on batch b-1's carried-over state) and its GPTQ-style calibration inside the
reserved training window (``train.train``) are the two legal shapes PG104 and PG203
must recognise; mutating each into its illegal neighbour must still be flagged.
PG201 must recognise the score-first per-document LoRA TTT (``ttt.eval_lora_ttt``:
``ledger.score`` of a no_grad NLL, then the adapter step) and the same SLOT, on the
packed one-file script, with the config switches off and on.
"""

from __future__ import annotations

import glob
import os
import re

import pytest

from rules.core import Severity
from rules import LintConfig, lint_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, "reference_impl")


def _read(name: str) -> str:
    with open(os.path.join(REF, name), encoding="utf-8") as f:
        return f.read()


def _lint(src: str, file: str = "train_gpt.py", env=None):
    return lint_source(src, file=file, config=LintConfig(env=env or {}))


def _no_reserve(src: str) -> str:
    """The reference with its GPTQ reserve setting renamed to something that reserves nothing."""
    assert "gptq_reserve_seconds" in src
    return re.sub(r"gptq_reserve_\w*", "extra_s", src)


def _mutate(src: str, old: str, new: str) -> str:
    assert src.count(old) == 1, f"reference changed: {old!r} not found exactly once"
    return src.replace(old, new)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REF, "*.py"))), ids=os.path.basename)
def test_reference_module_has_no_illegal_finding(path):
    with open(path, encoding="utf-8") as f:
        findings = _lint(f.read(), file=path)
    bad = [(f.code, f.message) for f in findings if f.severity == Severity.ILLEGAL]
    assert not bad, bad
    assert not [f for f in findings if f.code in ("PG104", "PG203", "PG301")]


def test_packed_reference_script_has_no_illegal_and_no_slot_or_calibration_finding():
    pack = pytest.importorskip("reference_impl.pack")
    findings = _lint(pack.build_source())
    assert not [(f.code, f.message) for f in findings if f.severity == Severity.ILLEGAL]
    assert not [f for f in findings if f.code in ("PG104", "PG203", "PG301")]


# env values that switch on the reference's adaptive evaluation paths (reference_impl/config.py)
_SWITCHES = [
    pytest.param({}, id="default"),
    pytest.param({"TTT_MODE": "lora", "SLOT_ENABLED": "1"}, id="lora+slot"),
    pytest.param({"TTT_MODE": "chunk", "SLOT_ENABLED": "1", "NGRAM_TILT": "1"}, id="chunk+slot+tilt"),
]


def _packed() -> str:
    return pytest.importorskip("reference_impl.pack").build_source()


@pytest.mark.parametrize("env", _SWITCHES)
def test_packed_reference_has_no_val_update_before_score_finding(env):
    # score-first LoRA TTT (ledger.score under no_grad, then the adapter steps) and context-only
    # SLOT (fitted on the previous batch's carried state) are the legal shapes PG201 must recognise
    findings = _lint(_packed(), env=env)
    assert not [(f.code, f.severity, f.message) for f in findings if f.code == "PG201"]
    assert not [(f.code, f.message) for f in findings if f.severity == Severity.ILLEGAL]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REF, "*.py"))), ids=os.path.basename)
def test_reference_module_has_no_val_update_before_score_finding(path):
    with open(path, encoding="utf-8") as f:
        assert not [f.message for f in _lint(f.read(), file=path) if f.code == "PG201"]


def _pg201(src: str, env=None):
    return [f for f in _lint(src, env=env) if f.code == "PG201"]


def test_lora_step_before_the_ledger_score_is_flagged():
    score = "            ledger.score(pos, nll[a - (w0 + 1) :], count_bytes(tokens[pos - 1], tokens[pos], tables))\n"
    src = _mutate(_packed(), score, "")
    src = _mutate(src, "                opt.step()\n    return ledger.finalize(), ledger\n\n\ndef eval_slot(",
                  "                opt.step()\n" + score + "    return ledger.finalize(), ledger\n\n\ndef eval_slot(")
    hits = _pg201(src, env={"TTT_MODE": "lora"})
    assert [f.severity for f in hits] == [Severity.ILLEGAL] and "eval_lora_ttt" in hits[0].message
    assert "scored afterwards" in hits[0].message


def test_lora_score_outside_no_grad_is_not_scoring():
    # the same ledger call fed an NLL computed with gradients is not recognised as the score
    src = _mutate(_packed(), "            with torch.no_grad():\n                nll = F.cross_entropy(model.logits_from_hidden(adapter(h))",
                  "            if True:\n                nll = F.cross_entropy(model.logits_from_hidden(adapter(h))")
    hits = _pg201(src, env={"TTT_MODE": "lora"})
    assert hits and "eval_lora_ttt" in hits[0].message


def test_slot_fitted_on_the_current_batch_is_flagged_by_pg201_too():
    src = _mutate(_packed(), "model.logits_from_hidden(ph + delta).transpose(1, 2), py,",
                  "model.logits_from_hidden(h + delta).transpose(1, 2), y,")
    hits = _pg201(src, env={"SLOT_ENABLED": "1"})
    assert [f.severity for f in hits] == [Severity.ILLEGAL] and "eval_slot" in hits[0].message


def test_slot_carried_state_set_from_the_current_batch_is_flagged_by_pg201():
    src = _mutate(_packed(), "        if prev is not None:\n            ph, py, pmask",
                  "        prev = (h, y, torch.ones_like(y, dtype=torch.bool), (0, 0))\n"
                  "        if prev is not None:\n            ph, py, pmask")
    hits = _pg201(src, env={"SLOT_ENABLED": "1"})
    assert [f.severity for f in hits] == [Severity.ILLEGAL] and "eval_slot" in hits[0].message


def test_slot_fitted_on_the_current_batch_is_flagged():
    src = _mutate(_read("ttt.py"), "model.logits_from_hidden(ph + delta).transpose(1, 2), py,",
                  "model.logits_from_hidden(h + delta).transpose(1, 2), y,")
    src = _mutate(src, "loss = nll[pmask].mean()", "loss = nll.mean()")
    hits = [f for f in _lint(src, file="ttt.py") if f.code == "PG104"]
    assert hits and hits[0].severity == Severity.ILLEGAL
    assert "every position" in hits[0].message


def test_slot_carried_state_assigned_before_the_fit_is_the_current_batch():
    # `prev` set from the current batch before the fit: unpacking it is no longer carried-over state
    src = _read("ttt.py")
    src = _mutate(src, "        if prev is not None:\n            ph, py, pmask",
                  "        prev = (h, y, torch.ones_like(y, dtype=torch.bool), (0, 0))\n"
                  "        if prev is not None:\n            ph, py, pmask")
    hits = [f for f in _lint(src, file="ttt.py") if f.code == "PG104"]
    assert hits and hits[0].severity == Severity.ILLEGAL


def test_slot_mask_over_the_current_batch_scored_positions_is_flagged():
    src = '''
import torch
import torch.nn.functional as F
def slot(model, batches, steps):
    delta = torch.zeros(model.dim, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.01)
    out = 0.0
    for x, y, spans in batches:
        h = model.hidden(x).detach()
        mask = torch.zeros_like(y, dtype=torch.bool)
        for i, (s, first) in enumerate(spans):
            mask[i, first - s:] = True
        for _ in range(steps):
            loss = F.cross_entropy(model.head(h + delta).transpose(1, 2), y, reduction="none")[mask].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out += F.cross_entropy(model.head(h + delta).transpose(1, 2), y, reduction="none")[mask].sum().item()
    return out
'''
    hits = [f for f in _lint(src) if f.code == "PG104"]
    assert hits and "scored positions" in hits[0].message


def test_training_reads_after_the_loop_not_feeding_calibration_are_flagged():
    src = _mutate(_read("train.py"), "calib = collect_calibration(model,", "calib = distill_on(model,")
    hits = [f for f in _lint(src, file="train.py") if f.code == "PG203"]
    assert hits and all(f.severity == Severity.ILLEGAL for f in hits)


def test_calibration_without_reserve_and_timer_stopped_before_it_is_a_warning():
    src = _no_reserve(_read("train.py"))
    src = _mutate(src, "    calib = None\n", "    elapsed = time.perf_counter() - t0\n    calib = None\n")
    src = _mutate(src, "return (time.perf_counter() - t0) * 1000, step, calib", "return elapsed * 1000, step, calib")
    hits = [f for f in _lint(src, file="train.py") if f.code == "PG203"]
    assert [f.severity for f in hits] == [Severity.WARNING] and "calibration" in hits[0].message


def test_calibration_counted_by_the_returned_training_time_is_quiet_without_a_reserve():
    src = _no_reserve(_read("train.py"))
    assert not [f for f in _lint(src, file="train.py") if f.code == "PG203"]


def test_escaped_piece_marker_is_recognised():
    src = '''
def build(sp, n):
    base, lead = [0] * n, [False] * n
    for i in range(n):
        piece = sp.id_to_piece(i)
        lead[i] = piece.startswith(chr(0x2581))
        base[i] = len(piece.replace(chr(0x2581), " ").encode("utf-8"))
    return base, lead

def count(tgt, prev, base, has_leading_space_lut, is_boundary):
    return (base[tgt] + (has_leading_space_lut[tgt] & ~is_boundary[prev])).sum()
'''
    assert [f.code for f in _lint(src)] == ["PG301"]
