"""`pgolf rerun --jail` (the default): the record's script, run by torchrun inside
bubblewrap, tries what a hostile one would: reach a listener on the host's loopback,
write outside its run folder, read a secret of the parent's environment, leave a
setsid daemon behind. One rerun does all four (torchrun's start-up is the cost);
each check is its own test. Without a working bwrap these skip; the fallback (the
run proceeds unconfined and says so) is tested everywhere. The smoke rerun of the
reference record under the jail, 2 processes on gloo, is
tests/test_harness_e2e.py::test_smoke_reference_two_seeds_then_reuse.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from auditor import jail
from auditor.harness import batch
from tests.harnesskit import invoke
from tests.jailkit import open_listener, processes_with

pytestmark = pytest.mark.slow

SECRET_NAME = "PGOLF_RERUN_TEST_SECRET"

HOSTILE = '''
import json, os, socket, sys, time
out = {"cwd": os.getcwd(), "home": os.path.expanduser("~")}
try:
    with socket.create_connection(("127.0.0.1", int(os.environ["PGOLF_PORT"])), timeout=3) as s:
        s.sendall(b"leak")
    out["connect"] = "connected"
except OSError as exc:
    out["connect"] = "blocked: " + str(exc)
out["writes"] = {}
for target in json.loads(os.environ["PGOLF_TARGETS"]) + ["inside.txt", os.path.join(out["home"], "cache.txt")]:
    try:
        with open(target, "w") as fh:
            fh.write("written")
        out["writes"][target] = "wrote"
    except OSError as exc:
        out["writes"][target] = type(exc).__name__
out["secret_keys"] = sorted(k for k in os.environ if "PGOLF_RERUN_TEST" in k)
for path in os.listdir("/proc"):
    if path.isdigit():
        try:
            if b"PGOLF_RERUN_TEST" in open(f"/proc/{path}/environ", "rb").read():
                out["secret_keys"].append(f"/proc/{path}/environ")
        except OSError:
            pass
beat = os.path.abspath("beat")
daemon = ("import sys, time\\n"
          "while True:\\n"
          "    open(sys.argv[1], 'a').write('x')\\n"
          "    time.sleep(0.1)\\n")
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", daemon, beat, os.environ["PGOLF_TAG"]])
    os._exit(0)
os.waitpid(pid, 0)
for _ in range(100):  # the daemon is up before the script ends
    if os.path.exists(beat):
        break
    time.sleep(0.05)
out["daemon_started"] = os.path.exists(beat)
open("outcome.json", "w").write(json.dumps(out))
print("outcome written", flush=True)
'''


def _jail_or_skip() -> None:
    status = jail.jail_status()
    if status.bwrap is None:
        pytest.skip(f"no bubblewrap jail on this machine: {status.confinement}")


def _hostile_rerun(base: Path, *extra: str) -> dict:
    """One rerun of HOSTILE (torchrun, 1 process) with a listener, marker targets and a
    secret in this process's environment; what the script saw and what the host saw."""
    tag = f"pgolf-rerun-daemon-{uuid.uuid4().hex}"
    record, runs, data = base / "record", base / "runs", base / "data"
    record.mkdir(parents=True)
    data.mkdir()
    (record / "train_gpt.py").write_text(HOSTILE)
    targets = [base / f"outside-{tag}", record / f"marker-{tag}", runs / "record" / f"beside-{tag}",
               Path.home() / f".pgolf-rerun-jail-{tag}", Path("/tmp") / f"pgolf-rerun-jail-{tag}"]
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    os.environ[SECRET_NAME] = secret
    listener = open_listener()
    try:
        result = invoke(record, "--seeds", "1", "--nproc", "1", "--data", data, "--tokenizer", record / "train_gpt.py",
                        "--out", runs, "--env", f"PGOLF_PORT={listener.port}", "--env", f"PGOLF_TAG={tag}",
                        "--env", f"PGOLF_TARGETS={json.dumps([str(t) for t in targets])}", "--format", "json", *extra)
        returned = time.monotonic()
        time.sleep(0.3)  # anything in flight lands
        reached = listener.close()
        run_dir = runs / "record" / "seed1"
        beat = run_dir / "beat"
        size = beat.stat().st_size if beat.exists() else None
        time.sleep(0.6)
        return {
            "result": result, "run_dir": run_dir, "tag": tag, "secret": secret, "reached": reached,
            "run": json.loads((run_dir / "run.json").read_text()),
            "outcome": json.loads((run_dir / "outcome.json").read_text()),
            "escaped": [str(t) for t in targets if t.exists()],
            "beat_grew": beat.exists() and beat.stat().st_size != size,
            "daemons": processes_with(tag), "returned": returned,
        }
    finally:
        os.environ.pop(SECRET_NAME, None)
        for t in targets[3:]:
            if t.exists():
                t.unlink()
        for pid in processes_with(tag):
            os.kill(pid, 9)


@pytest.fixture(scope="module")
def jailed(tmp_path_factory):
    _jail_or_skip()
    return _hostile_rerun(tmp_path_factory.mktemp("jailed"))


def test_jailed_rerun_runs_and_records_its_jail(jailed):
    run, result = jailed["run"], jailed["result"]
    assert run["process"]["exit_code"] == 0, (result.stderr, run["log_tail"])
    assert run["confinement"] == "bwrap"
    assert "jail: bwrap" in result.stderr
    measured = next(f for f in json.loads(result.stdout)["audits"][0]["findings"] if f["code"] == "PG428")
    assert any(line.startswith("jail: bwrap (no network but its own loopback") for line in measured["evidence"])
    assert "UNCONFINED" not in measured["message"]


def test_jailed_rerun_cannot_reach_a_host_listener(jailed):
    assert jailed["reached"] == [], jailed["outcome"]["connect"]
    assert jailed["outcome"]["connect"].startswith("blocked:")  # its own loopback: nothing listens there


def test_jailed_rerun_writes_only_its_run_folder_and_scratch(jailed):
    writes, run_dir = jailed["outcome"]["writes"], jailed["run_dir"]
    assert jailed["escaped"] == [], writes
    assert writes["inside.txt"] == "wrote" and (run_dir / "inside.txt").read_text() == "written"
    home = Path(jailed["outcome"]["home"])
    assert writes[str(home / "cache.txt")] == "wrote"  # HOME is the scratch folder, writable
    assert home.is_relative_to(run_dir.parent / "seed1.scratch") and not home.parent.exists()  # removed after
    assert jailed["outcome"]["cwd"] == str(run_dir)


def test_jailed_rerun_does_not_see_the_parents_secret(jailed):
    assert jailed["outcome"]["secret_keys"] == []
    assert jailed["secret"] not in (jailed["run_dir"] / "train.log").read_text()
    assert jailed["secret"] not in json.dumps(jailed["run"])


def test_jailed_rerun_leaves_no_daemon(jailed):
    assert jailed["outcome"]["daemon_started"], "the daemon never started: the test proves nothing"
    assert jailed["daemons"] == [] and not jailed["beat_grew"]
    assert jailed["run"]["process"]["leftover_pids"] == []


def test_without_bwrap_the_rerun_proceeds_unconfined_and_says_so(tmp_path, monkeypatch):
    """No bwrap here (or no namespaces): the run goes on, with the jail's environment
    allow-list still, and run.json and PG428 say it was unconfined and why."""
    monkeypatch.setattr(jail, "_find_bwrap", lambda: None)
    jail.jail_status.cache_clear()
    try:
        seen = _hostile_rerun(tmp_path)
    finally:
        jail.jail_status.cache_clear()
    run, result = seen["run"], seen["result"]
    assert run["process"]["exit_code"] == 0, (result.stderr, run["log_tail"])
    why = "unconfined: bwrap not found (install the bubblewrap package)"
    assert run["confinement"] == why
    measured = next(f for f in json.loads(result.stdout)["audits"][0]["findings"] if f["code"] == "PG428")
    assert measured["message"].endswith(", UNCONFINED") and f"jail: {why}" in result.stderr
    assert any(line.startswith("jail: UNCONFINED (bwrap not found") for line in measured["evidence"])
    # the environment is still the allow-list (unconfined, other processes' /proc/*/environ are readable)
    assert [k for k in seen["outcome"]["secret_keys"] if not k.startswith("/proc/")] == []


def test_jailed_dry_run_shows_the_bwrap_line(tmp_path):
    _jail_or_skip()
    data, tok = tmp_path / "data", tmp_path / "tok.model"
    data.mkdir()
    tok.write_text("x")
    record = Path(__file__).parent / "fixtures" / "harness" / "oversize"
    result = invoke(record, "--seeds", "3", "--nproc", "2", "--data", data, "--tokenizer", tok,
                    "--out", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "oversize" / "seed3"
    out = result.stdout
    assert "jail: bwrap" in out and "env -i " in out and "--unshare-all" in out and "--share-net" not in out
    for needle in (f"--bind {run_dir} {run_dir}", f"--bind {run_dir.parent / 'seed3.scratch'} ",
                   f"--ro-bind {data} {data}", f"--ro-bind {tok} {tok}", f"--ro-bind {record} {record}",
                   "--setenv SEED 3 ", "--hostname pgolf-rerun", "--clearenv",
                   "torch.distributed.run --standalone --nproc_per_node=2 train_gpt.py"):
        assert needle in out, needle
    assert not (tmp_path / "runs").exists()


def test_multi_node_jail_keeps_the_host_network_and_name(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "jail_status", lambda: jail.Jail("/usr/bin/bwrap", True, "bwrap"))
    plan = batch.Plan(record_dir=tmp_path, seeds=[1], nproc=8, runs_dir=tmp_path / "runs", nnodes="2",
                      rdzv_endpoint="node0:29500", jail=True)
    spec = plan.launch_spec(1)
    assert spec.confinement == "bwrap (host network: multi-node rendezvous)" and spec.jailed
    assert "--share-net" in spec.command and "--hostname" not in spec.command
    assert "--rdzv-endpoint=node0:29500" in spec.command


def test_gpu_device_nodes_are_bound_when_present(tmp_path, monkeypatch):
    """Not run on CUDA here: the command line binds every /dev/nvidia* node and /sys."""
    monkeypatch.setattr(batch, "jail_status", lambda: jail.Jail("/usr/bin/bwrap", True, "bwrap"))
    monkeypatch.setattr(batch, "gpu_devices", lambda: ["/dev/nvidia0", "/dev/nvidia-uvm", "/dev/nvidiactl"])
    plan = batch.Plan(record_dir=tmp_path, seeds=[1], nproc=1, runs_dir=tmp_path / "runs", jail=True)
    line = " ".join(plan.launch_spec(1).command)
    for node in ("/dev/nvidia0", "/dev/nvidia-uvm", "/dev/nvidiactl"):
        assert f"--dev-bind {node} {node}" in line
    assert "--ro-bind-try /sys /sys" in line and line.index("--dev /dev") < line.index("--dev-bind")
    monkeypatch.setattr(batch, "gpu_devices", lambda: [])
    line = " ".join(plan.launch_spec(1).command)
    assert "--dev-bind" not in line and "--ro-bind-try /sys/devices/system/cpu" in line


def test_no_jail_inherits_the_environment_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_NAME, "visible")
    plan = batch.Plan(record_dir=tmp_path, seeds=[1], nproc=1, runs_dir=tmp_path / "runs", jail=False)
    spec = plan.launch_spec(1)
    assert spec.confinement == "unconfined: --no-jail" and not spec.jailed and spec.scratch is None
    assert spec.env[SECRET_NAME] == "visible" and spec.command == plan.command(1)


def test_bwrap_signal_exit_reads_as_the_signal():
    assert jail.exit_status(128 + 9) == -9 and jail.exit_status(128 + 6) == -6
    assert jail.exit_status(1) == 1 and jail.exit_status(0) == 0 and jail.exit_status(None) is None
