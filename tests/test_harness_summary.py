"""Rerun harness summary: findings from run.json results, significance, every report format.

Runs are simulated on disk (a log and an artifact written by the test, then the
real `batch.summarize_run`), so these tests launch nothing.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from auditor.harness import batch, summary
from auditor.harness.run import LaunchResult
from auditor.record import load
from auditor.report import FORMATS
from tests.recordkit import RecordSpec, Run, write_record

ROOT = Path(__file__).resolve().parents[1]
AGAINST = ROOT / "examples" / "track_10min_16mb" / "2026-05-01_example_score_first_ttt"
FIXTURES = Path(__file__).parent / "fixtures" / "harness"


def _record(tmp_path: Path, claimed: dict[int, float]) -> Path:
    runs = [Run(seed, val_bpb=bpb, val_loss=bpb * 1.6, train_ms=500_000, eval_ms=1000) for seed, bpb in claimed.items()]
    submission = {"val_bpb": sum(claimed.values()) / max(1, len(claimed)), "date": "2026-05-10"}
    return write_record(tmp_path, RecordSpec(runs=runs, script="print('hi')\n", submission=submission, readme=None),
                        name="2026-05-10_toy")


def _simulate(plan: batch.Plan, seed: int, *, bpb: float | None, exit_code: int = 0, killed: bool = False,
              train_ms: float = 500_000, eval_ms: float = 100_000, model: int = 1000, wall: float = 700.0):
    run_dir = plan.run_dir(seed)
    batch._copy_record(plan.record_dir, run_dir)
    before = batch.measure.snapshot(run_dir)
    lines = [f"seed:{seed}", f"step:10/10 train_loss:2.0 train_time:{train_ms:.0f}ms", f"train_time:{train_ms:.0f}ms"]
    if bpb is not None:
        lines.append(f"final_x val_loss:{bpb * 1.6:.6f} val_bpb:{bpb:.6f} eval_time:{eval_ms:.0f}ms")
    (run_dir / "train.log").write_text("\n".join(lines) + "\n")
    (run_dir / "model.ptz").write_bytes(os.urandom(model))
    result = LaunchResult(returncode=None if killed else exit_code, wall_s=wall, killed=killed, term_signal=None,
                          limit_s=plan.wall_limit_s)
    data = batch.summarize_run(plan, seed, result, before, "now")
    batch.write_json_atomic(run_dir / "run.json", data)
    return seed, data, False


def _audit(tmp_path, runs_spec, claimed, **kw):
    rec = _record(tmp_path, claimed)
    plan = batch.Plan(record_dir=rec, seeds=list(runs_spec), nproc=1, runs_dir=tmp_path / "runs")
    runs = [_simulate(plan, seed, **spec) for seed, spec in runs_spec.items()]
    results = summary.load_results(runs, plan.record_runs)
    return summary.build_audit(str(rec), load(rec), plan.record_runs, results, **kw)


def _codes(audit, severity=None):
    return [f.code for f in audit.findings if severity is None or f.severity.value == severity]


def test_clean_reproduction_passes_and_rows_carry_measured_bytes(tmp_path):
    audit = _audit(tmp_path, {1: dict(bpb=1.10), 2: dict(bpb=1.12)}, {1: 1.10, 2: 1.12})
    assert audit.verdict.value == "PASS", [f.message for f in audit.findings]
    assert [r.bytes_total for r in audit.seeds] == [12 + 1000, 12 + 1000]
    assert [r.train_s for r in audit.seeds] == [500.0, 500.0]
    repro = next(f for f in audit.findings if f.code == "PG426")
    assert repro.message.startswith("reproduced:") and "delta +0.000000" in repro.message


def test_worse_than_claimed_is_a_warning_with_per_seed_numbers(tmp_path):
    audit = _audit(tmp_path, {1: dict(bpb=1.20), 2: dict(bpb=1.21)}, {1: 1.10, 2: 1.11})
    repro = next(f for f in audit.findings if f.code == "PG426")
    assert repro.severity.value == "warning" and repro.message.startswith("not reproduced:")
    assert any("seed 1: reproduced val_bpb 1.200000 vs claimed 1.100000" in e for e in repro.evidence)


def test_failed_and_over_time_runs_are_illegal(tmp_path):
    audit = _audit(
        tmp_path,
        {1: dict(bpb=None, exit_code=1), 2: dict(bpb=1.1, train_ms=650_000, eval_ms=620_000)},
        {},
    )
    illegal = _codes(audit, "illegal")
    assert "PG425" in illegal and "PG421" in illegal and "PG422" in illegal
    msg = next(f.message for f in audit.findings if f.code == "PG421")
    assert "650.0 s" in msg
    assert audit.verdict.value == "FAIL"


def test_against_a_record_runs_significance_and_every_format_renders(tmp_path):
    audit = _audit(tmp_path, {1: dict(bpb=1.00), 2: dict(bpb=1.01), 3: dict(bpb=1.005)}, {},
                   against=load(AGAINST))
    assert audit.comparison is not None and "PG413" in _codes(audit)
    for name, render in FORMATS.items():
        out = io.StringIO()
        render([audit], out)
        text = out.getvalue()
        assert text, name
        if name in ("rich", "markdown"):
            assert "seed1/train.log" in text and "1,012" in text, name
    data = json.loads(_render("json", audit))
    assert data["audits"][0]["comparison"]["new"]


def _render(name, audit) -> str:
    out = io.StringIO()
    FORMATS[name]([audit], out)
    return out.getvalue()


def test_killed_run_is_over_budget(tmp_path):
    audit = _audit(tmp_path, {1: dict(bpb=None, killed=True, wall=1380.2)}, {})
    finding = next(f for f in audit.findings if f.code == "PG423")
    assert finding.severity.value == "illegal" and "killed at the wall-clock limit of 1380 s" in finding.message


def test_run_json_keeps_the_settings_but_not_credentials(tmp_path):
    rec = _record(tmp_path, {1: 1.10})
    plan = batch.Plan(record_dir=rec, seeds=[1], nproc=1, runs_dir=tmp_path / "runs",
                      user_env={"HF_TOKEN": "hf_abc", "WANDB_API_KEY": "k", "TTT_LR": "0.01"})
    _seed, data, _reused = _simulate(plan, 1, bpb=1.10)
    env = json.loads((plan.run_dir(1) / "run.json").read_text())["env"]
    assert env["HF_TOKEN"] == env["WANDB_API_KEY"] == "<redacted>"
    assert env["TTT_LR"] == "0.01" and env["SEED"] == "1"
    assert "hf_abc" in plan.describe(1)  # the dry-run line is the user's own, to copy and run
