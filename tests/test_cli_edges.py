"""The command line's edges, and reports in the order a reviewer reads them."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from auditor import __version__
from auditor.audit import Options, audit_path
from auditor.cli import app
from tests.recordkit import RecordSpec, Run, default_submission, write_record

ROOT = Path(__file__).resolve().parent.parent
FAILING_EXAMPLE = ROOT / "examples" / "track_10min_16mb" / "2026-05-02_example_ngram_cache"
runner = CliRunner()

def _slot_script(default: str) -> str:
    """PG104's own flagged example (a delta fitted on the scored slice), run from main()
    behind a switch whose default is `default`."""
    from rules import get_rule

    example = textwrap.dedent(get_rule("PG104").INVALID[1])
    assert "def slot_eval(model, windows, steps, lr)" in example
    return f"""import os
{example}

SLOT_ENABLED = bool(int(os.environ.get("SLOT_ENABLED", "{default}")))


def main():
    model, windows = torch.load("model.pt"), []
    if SLOT_ENABLED:
        print(f"slot val_loss:{{slot_eval(model, windows, 8, 0.01):.6f}}")


if __name__ == "__main__":
    main()
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout == f"pgolf {__version__}\n"


def test_lint_fails_on_default_on_scored_region_slot(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(_slot_script("1"))
    result = run("lint", script)
    assert result.exit_code == 1, result.output
    assert re.search(r"train_gpt\.py:\d+: illegal PG104 slot-scored-region", result.stdout)
    assert "depends on a switch" not in result.stderr


def test_lint_names_switch_dependent_findings_and_strict_fails_on_them(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(_slot_script("0"))
    result = run("lint", script)
    assert result.exit_code == 0, result.output
    assert ": warning PG104 slot-scored-region" in result.stdout
    note = [line for line in result.stderr.splitlines() if "depends on a switch" in line]
    assert len(note) == 1 and "PG104 slot-scored-region" in note[0] and "SLOT_ENABLED" in note[0]
    assert "--strict fails on it" in note[0]
    assert run("lint", "--strict", script).exit_code == 1
    # what the logs would show: the switch set on the command line makes it illegal without --strict
    assert run("lint", "--env", "SLOT_ENABLED=1", script).exit_code == 1


def test_check_names_a_script_as_given(tmp_path):
    script = tmp_path / "some_file.py"
    script.write_text(_slot_script("1"))
    for fmt in ("rich", "text", "markdown"):
        out = run("check", script, "-f", fmt).stdout
        assert "some_file.py" in out and "train_gpt.py" not in out, (fmt, out)


def test_an_empty_folder_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("check", tmp_path / "empty")
    assert result.exit_code == 2 and "empty folder" in result.stderr and "FAIL" not in result.stdout


def test_every_report_format_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    from auditor.cli_common import Format

    for fmt in Format:
        assert f"- `{fmt.value}`" in readme, fmt.value


def test_markdown_on_the_failing_example_fits_one_screen_with_every_illegal_finding():
    result = run("check", FAILING_EXAMPLE, "-f", "markdown")
    assert result.exit_code == 1
    lines = result.stdout.rstrip("\n").split("\n")
    assert len(lines) <= 60, len(lines)
    audit = audit_path(FAILING_EXAMPLE, Options())
    illegal = [f for f in audit.findings if f.severity.value == "illegal"]
    assert len(illegal) >= 5
    for finding in illegal:
        assert f"**illegal** `{finding.rule}`" in result.stdout
    assert lines[0].startswith("### ") and "**FAIL**" in lines[0]


def _noisy_record(tmp_path) -> Path:
    """A failing record with many info findings (unknown submission.json keys)."""
    spec = RecordSpec(runs=[Run(42), Run(314)])
    submission = default_submission(spec, len(spec.script))
    submission.update({f"note_{i}": i for i in range(12)})
    spec.submission = submission
    return write_record(tmp_path, spec)


def test_info_is_one_line_per_code_unless_verbose(tmp_path):
    folder = _noisy_record(tmp_path)
    full = json.loads(run("check", folder, "-f", "json").stdout)["audits"][0]["findings"]
    unknown = [f for f in full if f["code"] == "PG402" and f["severity"] == "info"]
    assert len(unknown) == 12  # JSON carries all of them
    for fmt in ("markdown", "text", "rich", "github"):
        short, verbose = run("check", folder, "-f", fmt).stdout, run("check", folder, "-f", fmt, "-v").stdout
        assert short.count("unknown key") == 1, (fmt, short)
        assert "12 × PG402 submission-json" in short or "PG402 submission-json: 12 finding(s)" in short, (fmt, short)
        assert verbose.count("unknown key") == 12, fmt
    # the deciding finding (PG404, illegal) comes before any info line
    text = run("check", folder, "-f", "text").stdout.splitlines()
    assert ": verdict FAIL (" in text[0] and ": illegal PG404 seed-count" in text[1]
    markdown = run("check", folder, "-f", "markdown").stdout
    assert markdown.index("`PG404 seed-count`") < markdown.index("PG402 submission-json")


def test_a_merged_record_compares_each_claim_with_the_log_that_matches_it(tmp_path):
    """Two logs of seed 42 (the original and a re-run): the claim is the original's."""
    claimed = RecordSpec(runs=[Run(42, val_bpb=1.1260123), Run(314), Run(999)])
    spec = RecordSpec(runs=[*claimed.runs, Run(42, val_bpb=1.1301, filename="train_seed42_rerun.log")],
                      submission=default_submission(claimed, len(claimed.script)))
    folder = write_record(tmp_path, spec)
    assert "train_seed42_rerun.log" in [run.log for run in audit_path(folder, Options(static_rules=False)).record.logs]
    found = [f for f in audit_path(folder, Options(static_rules=False)).findings if f.code == "PG406"]
    assert found == [], [f.message for f in found]
    # a claim that matches neither log is still reported, against the closer one
    wrong = default_submission(claimed, len(claimed.script))
    wrong["seed_results"]["42"]["val_bpb"] = 1.1299
    (folder / "submission.json").write_text(json.dumps(wrong))
    found = [f for f in audit_path(folder, Options(static_rules=False)).findings if f.code == "PG406"]
    assert any("seed 42" in f.message and "1.1301" in f.message for f in found), [f.message for f in found]
