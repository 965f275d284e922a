"""Rerun harness, fast parts: command line, dry run, launcher kill, artifact measurement, run.json."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from auditor.harness import batch, measure
from tests.harnesskit import FIXTURES, alive, invoke
from auditor.harness.run import launch


def test_dry_run_prints_the_exact_commands_and_runs_nothing(tmp_path):
    data, tok = tmp_path / "data", tmp_path / "tok.model"
    result = invoke(FIXTURES / "oversize", "--seeds", "1,2", "--nproc", "8", "--data", data, "--tokenizer", tok,
                    "--vocab-size", "8192", "--env", "NUM_LAYERS=11", "--out", tmp_path / "runs", "--dry-run", "--no-jail")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("torch.distributed.run --standalone --nproc_per_node=8 train_gpt.py") == 2
    for needle in ("SEED=1 ", "SEED=2 ", f"DATA_PATH={data.resolve()}", f"DATA_DIR={data.resolve()}",
                   f"TOKENIZER_PATH={tok.resolve()}", "VOCAB_SIZE=8192", "RUN_ID=oversize_seed1", "NUM_LAYERS=11",
                   "wall-clock limit 1380 s"):
        assert needle in out, needle
    assert not (tmp_path / "runs").exists()


def test_dry_run_multi_node_uses_rendezvous_not_standalone(tmp_path):
    result = invoke(FIXTURES / "oversize", "--seeds", "7", "--nproc", "8", "--nnodes", "2",
                    "--rdzv-endpoint", "node0:29500", "--out", tmp_path / "runs", "--dry-run", "--margin", "60")
    assert result.exit_code == 0, result.output
    assert "--standalone" not in result.stdout
    for needle in ("--nnodes=2", "--nproc_per_node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500",
                   "--rdzv-id=pgolf-oversize-seed7", "wall-clock limit 1260 s"):
        assert needle in result.stdout, needle


def test_help_documents_multi_node():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Multi-node" in result.stdout and "rdzv" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "1,x"], "--seeds takes comma-separated integers"),
        (["--seeds", "1,1"], "repeats a seed"),
        (["--nnodes", "2"], "needs both --nnodes and --rdzv-endpoint"),
        (["--env", "NOEQUALS"], "--env takes KEY=VALUE"),
        ([], "--data and --tokenizer are required"),
        (["--nproc", "0"], "--nproc must be at least 1"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    result = invoke(FIXTURES / "oversize", "--out", tmp_path / "runs", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_record_without_script_and_out_inside_record_are_usage_errors(tmp_path):
    (tmp_path / "rec").mkdir()
    assert "no train_gpt.py" in invoke(tmp_path / "rec", "--smoke").stderr
    rec = FIXTURES / "oversize"
    result = invoke(rec, "--smoke", "--out", rec / "runs")
    assert result.exit_code == 2 and "inside the record folder" in result.stderr


def test_launch_kills_the_tree_at_the_limit_and_keeps_the_log(tmp_path):
    pid_file = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']),\n"
        "        subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'], start_new_session=True)]\n"
        f"open({str(pid_file)!r}, 'w').write(' '.join(str(k.pid) for k in kids))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "train.log"
    seen: list[str] = []
    t0 = time.monotonic()
    result = launch([sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path, log_path=log,
                    limit_s=2.0, grace_s=0.5, on_line=seen.append)
    assert result.killed and result.returncode is None
    # killed at the limit (plus grace, generous for a loaded machine), long before the script's 60 s sleep
    assert 2.0 <= result.wall_s < 2.0 + 0.5 + 15 and time.monotonic() - t0 < 45
    assert result.leftover == []
    assert "started" in log.read_text() and "started" in seen
    pids = [int(p) for p in pid_file.read_text().split()]
    assert pids and not any(alive(p) for p in pids)


def test_launch_normal_exit_reports_status(tmp_path):
    result = launch([sys.executable, "-c", "print('hi'); raise SystemExit(3)"], env=dict(os.environ),
                    cwd=tmp_path, log_path=tmp_path / "train.log", limit_s=30)
    assert not result.killed and result.returncode == 3 and result.leftover == []
    assert (tmp_path / "train.log").read_text() == "hi\n"


def test_model_files_count_the_compressed_artifact_not_a_raw_checkpoint(tmp_path):
    (tmp_path / "train_gpt.py").write_text("x = 1\n")
    (tmp_path / "train_seed1.log").write_text("old\n")
    before = measure.snapshot(tmp_path)
    (tmp_path / "final_model.pt").write_bytes(b"PK\x03\x04" + b"\0" * 1000)  # torch.save zip
    (tmp_path / "final_model.int8.ptz").write_bytes(os.urandom(300))
    (tmp_path / "train.log").write_text("log\n")
    (tmp_path / "train_seed1.log").write_text("changed, still a log\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.bin").write_bytes(b"\1" * 50)
    files = {f.path: f for f in measure.model_files(tmp_path, before)}
    assert set(files) == {"final_model.pt", "final_model.int8.ptz", "sub/weights.bin"}
    assert not files["final_model.pt"].counted and files["final_model.pt"].kind == "raw checkpoint"
    assert files["final_model.int8.ptz"].counted and files["sub/weights.bin"].counted
    # no compressed file: the raw checkpoint is the artifact
    (tmp_path / "final_model.int8.ptz").unlink()
    files = {f.path: f for f in measure.model_files(tmp_path, before)}
    assert files["final_model.pt"].counted


def test_run_json_completeness_and_atomic_write(tmp_path):
    path = tmp_path / "run.json"
    assert batch.load_complete(path, 1) is None
    path.write_text('{"schema": "pgolf-rerun/1", "complete": true, "se')  # torn write
    assert batch.load_complete(path, 1) is None
    batch.write_json_atomic(path, {"schema": batch.SCHEMA, "complete": True, "seed": 1})
    assert batch.load_complete(path, 1) == {"schema": batch.SCHEMA, "complete": True, "seed": 1}
    assert batch.load_complete(path, 2) is None
    assert not (tmp_path / "run.json.tmp").exists()
    assert json.loads(path.read_text())["seed"] == 1


def test_environment_capture_tolerates_missing_tools(tmp_path):
    env = measure.environment(tmp_path)
    assert env["hostname"] and "torch" in env and isinstance(env["gpus"], list)
    assert env["record_git_head"] is None  # tmp_path is not in a repository
    hashes = measure.shipped_hashes(FIXTURES / "oversize")
    assert len(hashes["train_gpt.py"]["sha256"]) == 64
