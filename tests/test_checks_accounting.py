"""Accounting measured from data (issue 11): byte tables, the training window, the scored stream.

Every tokenizer, table, script and log here is made by the test."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from auditor.checks import bytes as byte_tables
from auditor.checks import stream, tablesim, window
from rules.core import Severity
from auditor.record import load

spm = pytest.importorskip("sentencepiece")

TEXT = "\n".join(
    ["the cat sat on the mat, 12 34.", "a dog ran (fast) - and the end.", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 done"] * 50
)


def _train(tmp_path: Path, **extra) -> bytes:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(input=str(corpus), model_writer=out, vocab_size=320, model_type="bpe",
                                   byte_fallback=True, minloglevel=2, **extra)
    return out.getvalue()


@pytest.fixture(scope="module")
def canonical_model(tmp_path_factory) -> bytes:
    return _train(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def no_mark_model(tmp_path_factory) -> bytes:
    # "▁" as a control symbol: no normal standalone ▁ piece, a bare space falls back to bytes
    return _train(tmp_path_factory.mktemp("spm"), control_symbols=["\u2581"])


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "rec"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def _pg301(root: Path):
    return [f for f in byte_tables.check(load(root)) if f.code == "PG301"]


ACCUM = '''
def count(tgt, prev, base, lead, boundary):
    return (base[tgt] + (lead[tgt] & ~boundary[prev])).sum()
'''

CANONICAL_BUILDER = '''
import numpy as np
def luts(sp, vocab_size):
    base = np.zeros(vocab_size, dtype=np.int16)
    lead = np.zeros(vocab_size, dtype=bool)
    boundary = np.ones(vocab_size, dtype=bool)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, lead, boundary
''' + ACCUM


# ---------------------------------------------------------------- code tables


def test_canonical_code_table_passes(tmp_path):
    assert _pg301(_folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER})) == []


def test_space_counted_twice_in_a_helper_module(tmp_path):
    builder = '''
import torch
def make_tables(tok, n, device):
    base = torch.zeros(n, dtype=torch.float32, device=device)
    space = torch.zeros(n, dtype=torch.bool, device=device)
    bound = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(n):
        if tok.is_control(t) or tok.is_unknown(t):
            bound[t] = True
            continue
        if tok.is_byte(t):
            base[t] = 1
            continue
        p = tok.id_to_piece(t)
        if p.startswith("\\u2581"):
            space[t] = True
            base[t] = len(p[1:].encode("utf-8")) + 1
        else:
            base[t] = len(p.encode("utf-8"))
    return base, space, bound
'''
    root = _folder(tmp_path, {"train_gpt.py": "from helpers import make_tables\n" + ACCUM, "helpers.py": builder})
    found = _pg301(root)
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL
    assert "counted twice" in found[0].message and found[0].location.file == "helpers.py"


def test_three_byte_fallback(tmp_path):
    script = CANONICAL_BUILDER.replace("base[i] = 1\n", "base[i] = 3\n")
    found = _pg301(_folder(tmp_path, {"train_gpt.py": script}))
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL
    assert "byte-fallback pieces count 3 bytes" in found[0].message


def test_builder_outside_the_subset_is_not_measured(tmp_path):
    script = CANONICAL_BUILDER.replace("for i in range(sp.vocab_size()):", "for i in helper(sp):")
    assert _pg301(_folder(tmp_path, {"train_gpt.py": script})) == []


def test_tablesim_never_runs_code():
    import ast

    tree = ast.parse('''
import os
def luts(sp, n):
    os.system("touch /tmp/should_not_exist_acct")
    return [len(sp.id_to_piece(i)) for i in range(n)]
''')
    assert all(tablesim.simulate_builder(f) is None for f in tablesim.find_builders(tree))
    assert not Path("/tmp/should_not_exist_acct").exists()


# ---------------------------------------------------------- shipped tokenizers


def test_shipped_canonical_model_passes(tmp_path, canonical_model):
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER, "tok.model": canonical_model})
    assert _pg301(root) == []


def test_shipped_model_without_standalone_space_piece(tmp_path, no_mark_model):
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER, "tok.model": no_mark_model})
    found = _pg301(root)
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL
    assert "no standalone \u2581 piece" in found[0].message and "<0xE2>" in found[0].message


def test_model_that_is_not_sentencepiece(tmp_path):
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER, "tok.model": b"\x00not a model\xff" * 10})
    found = _pg301(root)
    assert len(found) == 1 and found[0].severity == Severity.WARNING
    assert "not a readable sentencepiece model" in found[0].message


# -------------------------------------------------------------- shipped tables


def _npz(base, lead, boundary) -> bytes:
    out = io.BytesIO()
    np.savez(out, base_bytes=base, has_leading_space=lead, is_boundary_token=boundary)
    return out.getvalue()


def _reference_tables(model: bytes):
    from reference_impl.bytes import build_byte_tables

    sp = spm.SentencePieceProcessor(model_proto=model)
    return sp, tuple(t.numpy() for t in build_byte_tables(sp))


def test_shipped_npz_canonical_passes(tmp_path, canonical_model):
    _sp, (base, lead, bound) = _reference_tables(canonical_model)
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER, "tok.model": canonical_model,
                              "tok.meta.npz": _npz(base.astype(np.int16), lead, bound)})
    assert _pg301(root) == []


def test_shipped_npz_with_wrong_numbers(tmp_path, canonical_model):
    sp, (base, lead, bound) = _reference_tables(canonical_model)
    wrong = base.astype(np.int16).copy()
    fallback = [i for i in range(sp.vocab_size()) if sp.is_byte(i)][:5]
    wrong[fallback] = 3
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER, "tok.model": canonical_model,
                              "tok.meta.npz": _npz(wrong, lead, bound)})
    found = _pg301(root)
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL
    assert f"id {fallback[0]} stored as 3 bytes, canonical 1" in found[0].message


def test_npz_without_a_tokenizer_is_unchecked(tmp_path):
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER,
                              "t.npz": _npz(np.ones(64, np.int16), np.zeros(64, bool), np.zeros(64, bool))})
    found = _pg301(root)
    assert len(found) == 1 and found[0].severity == Severity.WARNING and "cannot be checked" in found[0].message


def test_corrupt_npz(tmp_path):
    root = _folder(tmp_path, {"train_gpt.py": CANONICAL_BUILDER, "t.npz": b"PK\x03\x04garbage"})
    found = _pg301(root)
    assert len(found) == 1 and found[0].severity == Severity.WARNING and "cannot be read" in found[0].message


def test_unshipped_table_file(tmp_path):
    script = '''
import numpy as np
def load_luts():
    data = np.load("tokenizer_bytes.npz")
    return data["base_bytes"], data["has_leading_space"]
'''
    found = _pg301(_folder(tmp_path, {"train_gpt.py": script}))
    assert len(found) == 1 and found[0].severity == Severity.WARNING
    assert "does not ship" in found[0].message
    shipped = _folder(tmp_path / "b", {"train_gpt.py": script,
                                       "tokenizer_bytes.npz": _npz(np.ones(4, np.int16), np.zeros(4, bool), np.zeros(4, bool))})
    assert not any("does not ship" in f.message for f in _pg301(shipped))


def test_table_loaded_from_outside_the_folder(tmp_path):
    # the folder ships a file of that name, but the code reads another one elsewhere
    script = '''
import numpy as np
def load_luts():
    data = np.load("/data/tokenizers/tokenizer_bytes.npz")
    return data["base_bytes"], data["has_leading_space"]
'''
    found = _pg301(_folder(tmp_path, {"train_gpt.py": script, "tokenizer_bytes.npz": _npz(
        np.ones(4, np.int16), np.zeros(4, bool), np.zeros(4, bool))}))
    assert any(f.severity == Severity.WARNING and "outside the record folder" in f.message for f in found)


# ------------------------------------------------------------ training window


def _log(stop_ms: float | None, after: list[str], before: list[str] = ()) -> str:
    lines = ["seed:42", "max_wallclock_seconds:600.000", *before,
             "step:1000/20000 train_loss:2.1 train_time:300000ms step_avg:300.0ms"]
    if stop_ms is not None:
        lines.append(f"stopping_early: wallclock_cap train_time:{stop_ms:.0f}ms step:2000/20000")
    lines += after
    lines.append("final_int8_zlib_roundtrip_exact val_loss:1.9 val_bpb:1.12")
    return "\n".join(lines) + "\n"


def _pg203(tmp_path, log: str):
    root = _folder(tmp_path, {"train_gpt.py": "print(1)\n", "train_seed42.log": log})
    return [f for f in window.check(load(root)) if f.code == "PG203"]


def test_calibration_after_a_full_window_is_illegal(tmp_path):
    found = _pg203(tmp_path, _log(600061, ["gptq:collecting hessians from 128 training batches",
                                           "gptq:done in 4.1s"]))
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL
    assert "600.1 s" in found[0].message and any("stopping_early" in e for e in found[0].evidence)


def test_calibration_inside_a_declared_reserve_passes(tmp_path):
    log = _log(591000, ["gptq:collecting hessians from 128 training batches", "gptq:done in 4.1s"],
               before=["gptq_reserve_seconds: 9.0"])
    assert _pg203(tmp_path, log) == []


def test_calibration_that_fits_the_time_left_passes(tmp_path):
    assert _pg203(tmp_path, _log(580000, ["calibrating hessians batches:64", "calibrated 68 layers in 3.2s"])) == []


def test_calibration_that_overruns_the_time_left(tmp_path):
    found = _pg203(tmp_path, _log(598000, ["calibrating hessians batches:64", "calibrated 68 layers in 3.2s"]))
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL


def test_self_generated_or_validation_calibration_is_not_training_data(tmp_path):
    assert _pg203(tmp_path, _log(600050, ["gptq:generating autoregressive calibration data...",
                                          "gptq:collecting hessians..."])) == []


def test_calibration_with_no_times_warns(tmp_path):
    found = _pg203(tmp_path, "seed:42\ngptq:collecting hessians from training data\nfinal val_bpb:1.1\n")
    assert len(found) == 1 and found[0].severity == Severity.WARNING and "no training stop time" in found[0].message


def test_untimed_calibration_with_time_left_warns(tmp_path):
    found = _pg203(tmp_path, _log(590000, ["gptq:collecting hessians (256 batches)"]))
    assert len(found) == 1 and found[0].severity == Severity.WARNING


# -------------------------------------------------------------- scored stream


CLAMPED = '''
import torch.nn.functional as F
class Model:
    def forward(self, x, y):
        y = y.clamp(0, self.vocab - 1)
        logits = self.head(x)
        targets = y.reshape(-1)
        return F.cross_entropy(logits, targets)
'''


def test_clamped_targets_with_two_vocab_sizes_are_illegal(tmp_path):
    root = _folder(tmp_path, {"train_gpt.py": CLAMPED,
                              "train_seed1.log": "model vocab_size:1024\ntokenizer vocab_size=8192\n"})
    found = [f for f in stream.check(load(root)) if f.code == "PG106"]
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL


def test_clamped_targets_without_log_evidence_warn(tmp_path):
    found = stream.check(load(_folder(tmp_path, {"train_gpt.py": CLAMPED})))
    assert len(found) == 1 and found[0].severity == Severity.WARNING


def test_clamped_logits_are_not_the_target_stream(tmp_path):
    script = CLAMPED.replace("y = y.clamp(0, self.vocab - 1)", "x = x.clamp(-30, 30)")
    assert stream.check(load(_folder(tmp_path, {"train_gpt.py": script}))) == []


def test_structured_log_events(tmp_path):
    log = ':::PGOLF {"event":"train_end","train_time_ms":600100,"steps":10}\n' \
          "gptq:collecting hessians from training data\n"
    found = _pg203(tmp_path, log)
    assert len(found) == 1 and found[0].severity == Severity.ILLEGAL
    reserved = ':::PGOLF {"event":"config","seed":1,"gptq_reserve_s":8.0}\n' + log.replace("600100", "592000")
    assert _pg203(tmp_path / "r", reserved) == []


def test_garbage_files_never_crash(tmp_path):
    out = io.BytesIO()
    np.savez(out, base_bytes=np.array([object()] * 20, dtype=object))
    root = _folder(tmp_path, {
        "train_gpt.py": CANONICAL_BUILDER + "\ndef weird(sp):\n    for i in sp:\n        yield sp.id_to_piece(i) ** 2\n",
        "a.vocab": bytes(range(256)) * 4, "b.npz": out.getvalue(), "c.model": b"", "d.json": b"{",
        "train_seed1.log": b"\xff\xfe garbage \x00 hessian",
    })
    record = load(root)
    for module in (byte_tables, window, stream):
        module.check(record)


def test_comprehension_table_with_space_replaced_and_added_again(tmp_path):
    script = '''
def byte_counts(sp, n):
    return [len(sp.id_to_piece(i).replace("\\u2581", " ").encode("utf-8")) if not sp.is_byte(i) else 1
            for i in range(n)]

def flags(sp, n):
    return [sp.id_to_piece(i).startswith("\\u2581") for i in range(n)]
''' + ACCUM
    found = _pg301(_folder(tmp_path, {"train_gpt.py": script}))
    assert any(f.severity == Severity.ILLEGAL and "counted twice" in f.message for f in found)
