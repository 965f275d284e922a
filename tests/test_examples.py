"""The records shipped under examples/ keep the verdicts the README promises."""

from __future__ import annotations

from pathlib import Path

from auditor.audit import audit_path
from rules.core import Severity, Verdict
from auditor.source import unpack_file
from reference_impl.pack import build_source

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def illegal_codes(audit) -> set[str]:
    return {f.code for f in audit.findings if f.severity == Severity.ILLEGAL}


def test_score_first_ttt_example_passes():
    audit = audit_path(EXAMPLES / "track_10min_16mb" / "2026-05-01_example_score_first_ttt")
    assert audit.verdict == Verdict.PASS, [f.message for f in audit.findings]


def test_ngram_cache_example_fails_on_every_planted_problem():
    audit = audit_path(EXAMPLES / "track_10min_16mb" / "2026-05-02_example_ngram_cache")
    assert audit.verdict == Verdict.FAIL
    assert illegal_codes(audit) == {"PG101", "PG302", "PG404", "PG405", "PG406", "PG411"}
    ngram = next(f for f in audit.findings if f.code == "PG101")
    assert ngram.location.layer == "shipped>b85>lzma"  # found inside the packed layer


def test_packed_reference_record_passes(committed_reference_record):
    audit = audit_path(committed_reference_record)
    assert audit.verdict == Verdict.PASS, [f.message for f in audit.findings]
    assert audit.record.script.packed
    assert len(audit.seeds) == 3 and all(row.val_bpb for row in audit.seeds)


def test_committed_reference_record_is_the_current_package(committed_reference_record):
    """The probe and harness tests run the committed script: it must decode to what reference_impl packs now."""
    assert committed_reference_record is not None
    decoded = unpack_file(committed_reference_record / "train_gpt.py").effective_layers[-1].text
    assert decoded == build_source(), (
        "examples' reference record is stale: delete it and run python -m reference_impl.pack --out "
        f"{committed_reference_record.relative_to(EXAMPLES.parent)} --seeds 1337 42 2025 --packed")
