"""The pgolf command line: exit codes, formats, bad input."""

from __future__ import annotations

import base64
import json
import lzma
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from tests.recordkit import LEGAL_SCRIPT, RecordSpec, Run, write_record

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def passing(tmp_path):
    return write_record(tmp_path / "pass")


@pytest.fixture
def failing(tmp_path):
    return write_record(tmp_path / "fail", RecordSpec(runs=[Run(1, eval_ms=650_000), Run(2)]))


def test_pass_exits_zero_and_shows_the_verdict(passing):
    result = run("check", passing, "--no-rules")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "final_int6_sliding_window_exact" in result.output


def test_fail_exits_one(failing):
    result = run("check", failing, "--no-rules")
    assert result.exit_code == 1
    assert "PG411" in result.output and "PG404" in result.output


def test_worst_verdict_decides_exit_code(passing, failing):
    assert run("check", passing, failing, "--no-rules").exit_code == 1


def test_missing_folder_is_usage_error_without_traceback(tmp_path):
    result = run("check", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "no such file or folder" in result.output
    assert "Traceback" not in result.output


def test_bad_option_value_is_usage_error(passing):
    assert run("check", passing, "--format", "xml").exit_code == 2
    assert run("check", passing, "--env", "NOEQUALS").exit_code == 2
    assert run("check", passing, "--against-loss", "a,b").exit_code == 2


def test_json_report_matches_its_schema(passing, failing):
    result = run("check", passing, failing, "--no-rules", "-f", "json")
    document = json.loads(result.stdout)
    schema = json.loads(resources.files("auditor").joinpath("schemas/report-1.json").read_text())
    jsonschema.validate(document, schema)
    verdicts = [a["verdict"] for a in document["audits"]]
    assert verdicts == ["PASS", "FAIL"]


def test_sarif_report_has_rules_results_and_levels(failing):
    result = run("check", failing, "--no-rules", "-f", "sarif")
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    run0 = sarif["runs"][0]
    rule_ids = {r["id"] for r in run0["tool"]["driver"]["rules"]}
    assert {"PG411", "PG404"} <= rule_ids
    levels = {r["ruleId"]: r["level"] for r in run0["results"]}
    assert levels["PG411"] == "error"
    located = [r for r in run0["results"] if r["ruleId"] == "PG411"][0]
    assert located["locations"][0]["physicalLocation"]["region"]["startLine"] > 0


def test_markdown_report_fits_a_pr_comment(failing):
    result = run("check", failing, "--no-rules", "-f", "markdown")
    assert "**FAIL**" in result.stdout
    assert "| seed | log |" in result.stdout
    assert "`PG411 eval-time`" in result.stdout


def test_github_annotations(failing):
    result = run("check", failing, "--no-rules", "-f", "github")
    lines = result.stdout.splitlines()
    assert any(line.startswith("::error file=") and "PG411" in line for line in lines)
    # the verdict first, with its counts, as in every human-facing format
    assert lines[0].startswith("::notice title=pgolf verdict::") and ": FAIL (" in lines[0]


def test_output_file(passing, tmp_path):
    target = tmp_path / "report.json"
    result = run("check", passing, "--no-rules", "-f", "json", "-o", target)
    assert result.exit_code == 0
    assert json.loads(target.read_text())["audits"][0]["verdict"] == "PASS"


def test_against_loss_runs_significance(passing):
    result = run("check", passing, "--no-rules", "-f", "json", "--against-loss", "1.95,1.951,1.949")
    audit = json.loads(result.stdout)["audits"][0]
    assert audit["comparison"]["readme"]["passed"] is True
    assert any(f["code"] == "PG413" for f in audit["findings"])


def test_against_record(passing, tmp_path):
    older = write_record(tmp_path / "old", RecordSpec(runs=[Run(s, val_loss=1.9013, val_bpb=1.1261) for s in (1, 2, 3)]))
    result = run("check", passing, "--no-rules", "-f", "json", "--against", older)
    audit = json.loads(result.stdout)["audits"][0]
    assert audit["comparison"]["unit"] == "val_loss (nats/token)"
    assert audit["comparison"]["readme"]["passed"] is False


def test_internal_error_becomes_error_verdict(passing, monkeypatch):
    from auditor.checks import timing

    def explode(record):
        raise RuntimeError("boom")

    monkeypatch.setattr(timing, "check", explode)
    result = run("check", passing, "--no-rules")
    assert result.exit_code == 3
    assert "internal error" in result.output and "boom" in result.output
    assert "Traceback" not in result.output


def test_unpack_prints_layers_and_accounting(tmp_path):
    payload = base64.b85encode(lzma.compress(LEGAL_SCRIPT.encode())).decode()
    script = tmp_path / "train_gpt.py"
    script.write_text(f'import lzma,base64\nexec(lzma.decompress(base64.b85decode("{payload}")))\n')
    result = run("unpack", script)
    assert result.exit_code == 0, result.output
    assert f"{script.stat().st_size:,} bytes shipped" in result.stdout
    assert "def eval_sliding_window" in result.stdout
    layer_names = [line for line in result.stdout.splitlines() if line.startswith("# ===== layer")]
    assert len(layer_names) == 2


def test_unpack_missing_file_is_usage_error(tmp_path):
    assert run("unpack", tmp_path / "x.py").exit_code == 2


def test_explain_and_rules():
    assert "16,000,000" in run("explain", "PG407").stdout
    assert run("explain", "PG999").exit_code == 2
    listing = run("rules").stdout
    assert "PG401" in listing and "PG411" in listing


def test_console_script_runs_as_a_process(passing):
    completed = subprocess.run(
        [sys.executable, "-m", "auditor", "check", str(passing), "--no-rules", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["audits"][0]["verdict"] == "PASS"


NGRAM_READ = """
import torch

def eval_ngram(model, val_tokens, counts, mask):
    total = 0.0
    for i in range(4, val_tokens.numel()):
        ctx_hash = hash(tuple(val_tokens[i - 4:i].tolist()))
        target = int(val_tokens[i])
        key = (ctx_hash ^ (target * 1000003)) & mask
        total += -torch.log(counts[key] + 1e-9)
    return total
"""


def test_lint_flags_a_file_in_one_line_per_finding(tmp_path):
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text(NGRAM_READ)
    good.write_text(LEGAL_SCRIPT)
    result = run("lint", good, bad)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if "PG101" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{bad}:") and ": illegal PG101 " in lines[0]
    assert str(good) not in result.stdout
    assert run("lint", good).exit_code == 0


def test_lint_of_missing_file_is_usage_error(tmp_path):
    assert run("lint", tmp_path / "none.py").exit_code == 2


def test_every_folder_check_code_in_the_readme_is_listed_by_rules():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    documented = set(re.findall(r"^\| (PG\d{3}) \|", readme, flags=re.M))
    listing = run("rules").stdout
    assert documented and all(code in listing for code in documented), documented - set(re.findall(r"PG\d{3}", listing))
