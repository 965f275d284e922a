"""Rerun harness end to end through torchrun on CPU: the bar of issue 5.

(1) --smoke of the packed reference record, 2 seeds, --nproc 2: two complete
run.json files, a summary with measured times and bytes, and a second
invocation that reuses them without launching anything.
(2) a script that never finishes is killed at the limit, reported over
budget, its partial log kept, no process left behind.
(3) an artifact over 16,000,000 bytes and (4) a log that claims fewer bytes
than are on disk both fail with the measured numbers shown.

The reference record is ``examples/**/*reference*`` when it is committed;
until then the test packs one itself with ``reference_impl.pack`` (real toy
runs of the packed script supply its claimed logs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor import jail
from auditor.harness import batch
from tests.harnesskit import FIXTURES, alive, invoke


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_record(committed_reference_record, tmp_path_factory) -> Path:
    if committed_reference_record is not None:
        return committed_reference_record
    from reference_impl.pack import pack_record

    out = tmp_path_factory.mktemp("packed") / "2026-05-03_reference_toy"
    pack_record(str(out), seeds=[42, 314], nproc=1)
    return out


def _seeds_of(record: Path) -> list[int]:
    seeds = json.loads((record / "submission.json").read_text())["seeds"]
    return [int(s) for s in seeds][:2]


def test_smoke_reference_two_seeds_then_reuse(reference_record, tmp_path, monkeypatch):
    seeds = _seeds_of(reference_record)
    runs = tmp_path / "runs"
    args = [reference_record, "--smoke", "--seeds", ",".join(map(str, seeds)), "--nproc", "2", "--out", runs]
    first = invoke(*args, "--format", "json")
    assert first.exit_code == 0, first.stderr + first.stdout
    report = json.loads(first.stdout)["audits"][0]
    assert report["verdict"] == "PASS", report["findings"]

    for seed in seeds:
        data = batch.load_complete(runs / reference_record.name / f"seed{seed}" / "run.json", seed)
        assert data is not None, seed
        assert data["process"]["exit_code"] == 0 and not data["process"]["killed_at_limit"]
        assert data["process"]["wall_s"] > 0 and data["process"]["leftover_pids"] == []
        assert data["script_times"]["train_time_ms"]["value"] > 0 and data["script_times"]["eval_time_ms"]["value"] > 0
        counted = [f for f in data["measured"]["model_files"] if f["counted"]]
        assert [f["path"] for f in counted] == [f"final_model_seed{seed}.int6.ptz"]
        assert data["measured"]["code_bytes"] == (reference_record / "train_gpt.py").stat().st_size
        assert data["measured"]["artifact_bytes"] == data["measured"]["code_bytes"] + counted[0]["bytes"]
        # the reference logs its artifact honestly: the measured bytes match
        assert data["logged"]["bytes_total"]["value"] == data["measured"]["artifact_bytes"]
        assert data["env"]["SEED"] == str(seed) and data["env"]["CONFIG"] == "toy"
        # the jail is the default: torchrun's rendezvous and gloo on the jail's own loopback
        assert data["confinement"] == jail.jail_status().confinement
        assert len(data["shipped"]["train_gpt.py"]["sha256"]) == 64 and data["environment"]["torch"]

    rows = {row["seed"]: row for row in report["seeds"]}
    assert set(rows) == set(seeds)
    for row in rows.values():
        assert row["train_s"] > 0 and row["eval_s"] > 0 and row["bytes_total"] > 0 and row["val_bpb"] > 0
    codes = [f["code"] for f in report["findings"]]
    assert codes.count("PG428") == 2 and "PG426" in codes
    repro = next(f for f in report["findings"] if f["code"] == "PG426")
    assert repro["message"].startswith("reproduced:") and "claimed" in repro["message"]

    # second invocation: nothing is launched, the run.json files are reused
    stamps = {s: (runs / reference_record.name / f"seed{s}" / "run.json").stat().st_mtime_ns for s in seeds}

    def no_launch(*a, **k):
        raise AssertionError("relaunched a seed with a complete run.json")

    monkeypatch.setattr(batch, "launch", no_launch)
    second = invoke(*args, "--format", "markdown")
    assert second.exit_code == 0, second.stderr + second.stdout
    assert all(f"seed {s}: reusing" in second.stderr for s in seeds)
    assert "[reused run.json]" in second.stdout and "| seed |" in second.stdout
    assert stamps == {s: (runs / reference_record.name / f"seed{s}" / "run.json").stat().st_mtime_ns for s in seeds}


def test_slow_script_is_killed_at_the_limit_and_nothing_survives(tmp_path):
    """Unjailed, so that the pids the script writes are the host's: the launcher's own sweep."""
    runs = tmp_path / "runs"
    result = invoke(FIXTURES / "slow", "--seeds", "5", "--nproc", "1", "--data", tmp_path, "--tokenizer",
                    FIXTURES / "slow" / "train_gpt.py", "--out", runs, "--limit-seconds", "6",
                    "--grace-seconds", "1", "--format", "text", "--no-jail")
    assert result.exit_code == 1, result.stderr + result.stdout
    run_dir = runs / "slow" / "seed5"
    data = json.loads((run_dir / "run.json").read_text())
    proc = data["process"]
    assert proc["killed_at_limit"] and proc["exit_code"] is None
    assert 6.0 <= proc["wall_s"] < 6 + 1 + 15  # at the limit + grace (generous for a loaded machine); it never ends
    assert proc["leftover_pids"] == [] and data["confinement"] == "unconfined: --no-jail"
    log = (run_dir / "train.log").read_text()
    assert "children started" in log and "step:" in log  # partial log kept
    assert "PG423 rerun-wall-limit" in result.stdout and "killed at the wall-clock limit of 6 s" in result.stdout
    assert "over budget" in result.stdout
    pids = [int(p) for p in (run_dir / "pids.txt").read_text().split()]  # script, torchrun agent, 2 children
    assert len(pids) == 4
    assert not [p for p in pids if alive(p)]


def _run_fixture(name: str, tmp_path: Path):
    runs = tmp_path / "runs"
    result = invoke(FIXTURES / name, "--seeds", "1", "--nproc", "1", "--data", tmp_path, "--tokenizer",
                    FIXTURES / name / "train_gpt.py", "--out", runs, "--format", "text")
    data = json.loads((runs / name / "seed1" / "run.json").read_text())
    return result, data


def test_artifact_over_the_limit_fails_with_measured_bytes(tmp_path):
    result, data = _run_fixture("oversize", tmp_path)
    assert result.exit_code == 1, result.stderr + result.stdout
    code = (FIXTURES / "oversize" / "train_gpt.py").stat().st_size
    total = code + 16_500_000
    assert data["measured"]["artifact_bytes"] == total and data["process"]["exit_code"] == 0
    line = next(l for l in result.stdout.splitlines() if "PG420 rerun-size-limit" in l)
    assert f"{code:,} code bytes" in line and "16,500,000 model bytes" in line and f"= {total:,} bytes" in line
    assert f"by {total - 16_000_000:,}" in line
    assert "PG424" not in result.stdout  # the log was honest


def test_log_claiming_fewer_bytes_than_measured_fails_with_both_numbers(tmp_path):
    result, data = _run_fixture("size_liar", tmp_path)
    assert result.exit_code == 1, result.stderr + result.stdout
    code = (FIXTURES / "size_liar" / "train_gpt.py").stat().st_size
    assert data["measured"]["model_bytes"] == 1_000_000
    assert data["measured"]["artifact_bytes"] == code + 1_000_000
    claims = [l for l in result.stdout.splitlines() if "PG424 rerun-size-claim" in l]
    assert any(f"bytes_total {code + 500_000:,}" in l and f"{code + 1_000_000:,} artifact" in l for l in claims), claims
    assert any("bytes_model 500,000" in l and "1,000,000 model bytes" in l for l in claims), claims
    assert "PG420" not in result.stdout  # under the limit: only the claim is wrong


def _abort_run(tmp_path: Path, at: str):
    runs = tmp_path / "runs"
    result = invoke(FIXTURES / "abort_at_exit", "--seeds", "1", "--nproc", "1", "--data", tmp_path, "--tokenizer",
                    FIXTURES / "abort_at_exit" / "train_gpt.py", "--out", runs, "--env", f"ABORT_AT={at}",
                    "--format", "json")
    data = json.loads((runs / "abort_at_exit" / "seed1" / "run.json").read_text())
    return result, data, json.loads(result.stdout)["audits"][0]["findings"]


def test_a_rank_aborting_after_every_metric_is_a_crash_at_exit_not_a_failed_run(tmp_path):
    """Issue 13: a rank that died by SIGABRT at shutdown after printing every metric was PG425 illegal."""
    result, data, findings = _abort_run(tmp_path, "exit")
    # torchrun itself exits 1; the rank's signal is in its failure report in the log
    assert data["process"]["exit_code"] == 1
    assert data["process"]["worker_signals"] == [{"rank": 0, "signal": 6, "name": "SIGABRT"}]
    assert "seed 1: exit 1, rank 0 by SIGABRT after" in result.stderr
    assert result.exit_code == 0 and json.loads(result.stdout)["audits"][0]["verdict"] == "WARN", result.stdout
    codes = {f["code"]: f for f in findings}
    assert "PG425" not in codes
    crash = codes["PG429"]
    assert crash["severity"] == "warning" and "rank 0 by SIGABRT" in crash["message"]
    assert "once it had printed every metric" in crash["message"] and "final_int8_zlib_roundtrip" in crash["message"]


def test_a_rank_aborting_before_its_metrics_is_still_a_failed_run(tmp_path):
    result, data, findings = _abort_run(tmp_path, "eval")
    assert data["process"]["worker_signals"] == [{"rank": 0, "signal": 6, "name": "SIGABRT"}]
    assert result.exit_code == 1, result.stdout
    failed = next(f for f in findings if f["code"] == "PG425")
    assert failed["severity"] == "illegal" and "rank 0 by SIGABRT" in failed["message"]
    assert "PG429" not in {f["code"] for f in findings}
