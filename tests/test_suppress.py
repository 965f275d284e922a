"""Reviewer-owned suppressions and the baseline: `check --suppressions/--baseline/--write-baseline/--strict`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from auditor.audit import audit_path, Options
from auditor.cli import app
from auditor.suppress import SuppressionError, apply, load_suppressions
from tests.recordkit import RecordSpec, Run, write_record

runner = CliRunner()


def check(*args):
    return runner.invoke(app, ["check", "--no-rules", *[str(a) for a in args]])


@pytest.fixture
def failing(tmp_path):
    # PG404 (two seeds) and PG411 (seed 1 evaluates for 650 s)
    return write_record(tmp_path / "records", RecordSpec(runs=[Run(1, eval_ms=650_000), Run(2)]), name="2026-05-01_slow")


def toml(tmp_path, text, name="suppressions.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BOTH = '''
[[suppress]]
rule = "PG411"
record = "track_10min_16mb/2026-05-*"
reason = "the eval clock included a cold cache; re-measured at 540 s"

[[suppress]]
rule = "seed-count"
reason = "third seed accepted in the PR thread"
'''


def test_a_suppression_without_a_reason_is_a_usage_error(tmp_path, failing):
    path = toml(tmp_path, '[[suppress]]\nrule = "PG411"\n')
    result = check(failing, "--suppressions", path)
    assert result.exit_code == 2 and "needs a 'reason'" in result.output
    path = toml(tmp_path, '[[suppress]]\nrule = "PG411"\nreason = "   "\n')
    assert check(failing, "--suppressions", path).exit_code == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[suppress]]\nrule = "PG411"\nreason = "x"\nrecrod = "*"\n', "unknown key"),
        ('[[suppress]]\nreason = "x"\n', "'rule' is required"),
        ('[suppres]\nrule = "PG411"\n', "unknown table"),
        ("[[suppress]\n", "not valid TOML"),
        ('[[suppress]]\nrule = 411\nreason = "x"\n', "must be a string"),
        ('[[suppress]]\nrule = "PG4111"\nreason = "x"\n', "no rule 'PG4111'"),
        ('[[suppress]]\nrule = "seed-cuont"\nreason = "x"\n', "no rule 'seed-cuont'"),
        ('[[suppress]]\nrule = "PG411 seed-count"\nreason = "x"\n', "no rule 'PG411 seed-count'"),
    ],
)
def test_bad_suppression_files_are_usage_errors(tmp_path, text, message):
    with pytest.raises(SuppressionError, match=message):
        load_suppressions(toml(tmp_path, text))


def test_missing_files_are_usage_errors(tmp_path, failing):
    assert check(failing, "--suppressions", tmp_path / "nope.toml").exit_code == 2
    assert check(failing, "--baseline", tmp_path / "nope.json").exit_code == 2


def test_suppressed_findings_are_shown_with_their_reason_and_ignored_by_the_verdict(tmp_path, failing):
    path = toml(tmp_path, BOTH)
    result = check(failing, "--suppressions", path, "-f", "json")
    assert result.exit_code == 0, result.output
    [audit] = json.loads(result.stdout)["audits"]
    assert audit["verdict"] == "PASS"
    marked = {f["code"]: f.get("suppressed") for f in audit["findings"] if f["severity"] != "info"}
    assert marked["PG411"].startswith("the eval clock included a cold cache") and "suppressions.toml#1" in marked["PG411"]
    assert marked["PG404"].startswith("third seed accepted")
    for fmt, needle in [("markdown", "_(suppressed: the eval clock"), ("text", "[suppressed: third seed"),
                        ("rich", "[suppressed: the eval clock"), ("github", "::notice "), ("sarif", '"justification": "third seed')]:
        out = check(failing, "--suppressions", path, "-f", fmt)
        assert out.exit_code == 0 and needle in out.stdout, (fmt, out.stdout[-2000:])
    rich = check(failing, "--suppressions", path).stdout
    assert "2 suppressed" in rich and "PG411 eval-time" in rich


def test_only_matching_records_are_suppressed(tmp_path, failing):
    path = toml(tmp_path, '[[suppress]]\nrule = "PG411"\nrecord = "track_non_record_16mb/*"\nreason = "other track"\n')
    result = check(failing, "--suppressions", path, "-f", "json")
    assert result.exit_code == 1
    assert not any(f.get("suppressed") for f in json.loads(result.stdout)["audits"][0]["findings"])


def test_file_and_fingerprint_narrow_a_suppression(failing):
    audit = audit_path(failing, Options(static_rules=False))
    eval_time = next(f for f in audit.findings if f.code == "PG411")
    rules = load_suppressions_text(f'[[suppress]]\nrule = "PG411"\nfile = "train_seed2.log"\nreason = "x"\n')
    assert apply([audit], rules) == 0
    rules = load_suppressions_text(f'[[suppress]]\nrule = "PG411"\nfingerprint = "{eval_time.fingerprint}"\nreason = "x"\n')
    assert apply([audit], rules) == 1 and audit.suppressed == {eval_time.fingerprint: "x (s.toml#1)"}


def load_suppressions_text(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return load_suppressions(toml(Path(tmp), text, "s.toml"))


def test_strict_ignores_suppressions_and_baseline(tmp_path, failing):
    path = toml(tmp_path, BOTH)
    baseline = tmp_path / "baseline.json"
    assert check(failing, "--write-baseline", baseline).exit_code == 0
    result = check(failing, "--suppressions", path, "--baseline", baseline, "--strict", "-f", "markdown")
    assert result.exit_code == 1
    assert "suppressed" not in result.stdout and "**FAIL**" in result.stdout


def test_baseline_carries_known_findings_and_new_ones_fail(tmp_path, failing):
    baseline = tmp_path / "baseline.json"
    result = check(failing, "--write-baseline", baseline, "-f", "json")
    assert result.exit_code == 0  # what was just written is known
    document = json.loads(baseline.read_text())
    assert document["schema"] == "pgolf-baseline/1"
    entry = next(e for e in document["findings"] if e["rule"] == "PG411 eval-time")
    assert entry["record"] == "track_10min_16mb/2026-05-01_slow" and len(entry["fingerprint"]) == 16 and entry["message"]

    result = check(failing, "--baseline", baseline, "-f", "json")
    assert result.exit_code == 0
    assert all(f.get("suppressed", "").startswith("known finding") for f in json.loads(result.stdout)["audits"][0]["findings"])

    # A new problem in the same record is not in the baseline: it fails alone.
    (failing / "submission.json").write_text("{not json")
    result = check(failing, "--baseline", baseline, "-f", "json")
    assert result.exit_code == 1
    fresh = [f for f in json.loads(result.stdout)["audits"][0]["findings"] if not f.get("suppressed") and f["severity"] == "illegal"]
    assert fresh and {f["code"] for f in fresh} <= {"PG402", "PG405", "PG406"}


def test_baseline_is_per_record(tmp_path, failing):
    baseline = tmp_path / "baseline.json"
    check(failing, "--write-baseline", baseline)
    other = write_record(tmp_path / "records", RecordSpec(runs=[Run(1, eval_ms=650_000), Run(2)]), name="2026-05-02_copy")
    assert check(other, "--baseline", baseline).exit_code == 1


def test_a_bare_list_baseline_is_read(tmp_path, failing):
    audit = audit_path(failing, Options(static_rules=False))
    baseline = tmp_path / "list.json"
    baseline.write_text(json.dumps([{"record": "track_10min_16mb/2026-05-01_slow", "fingerprint": f.fingerprint, "rule": f.rule, "message": f.message} for f in audit.findings]))
    assert check(failing, "--baseline", baseline).exit_code == 0
    baseline.write_text('[{"rule": "PG411"}]')
    assert check(failing, "--baseline", baseline).exit_code == 2
