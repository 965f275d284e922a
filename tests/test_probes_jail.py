"""The probe jail (auditor.probes.sandbox): scripts written here try what a hostile or
careless submission would at import time (raw sockets, UDP, a child process's connect,
writes and reads outside scratch, the parent's secrets, daemons that outlive the probe
or hold its stderr); each is blocked or killed, the probe returns within its timeout,
and no process is left behind. Without bubblewrap these skip; the fallback is reported
as unconfined."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("torch")

from auditor import jail  # noqa: E402
from auditor.probes import sandbox  # noqa: E402
from tests.jailkit import open_listener, processes_with  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DONE = '\nraise SystemExit("done")\n'  # the child then stops at its import stage: no tokenizer needed


def _jail_or_skip() -> None:
    status = jail.jail_status()
    if status.bwrap is None:
        pytest.skip(f"no bubblewrap jail on this machine: {status.confinement}")


def _run(tmp_path: Path, source: str, timeout: float = 30.0):
    scratch = tmp_path / "scratch"
    started = time.monotonic()
    result = sandbox.run_child({"source": source, "vocab": 64}, timeout, scratch=scratch)
    return result, scratch, time.monotonic() - started


@pytest.fixture
def listener():
    lst = open_listener()
    yield lst
    lst.close()


@pytest.fixture
def fresh_jail_status():
    jail.jail_status.cache_clear()
    yield
    jail.jail_status.cache_clear()


RAW_SOCKET = '''
import _socket
s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
s.settimeout(3)
try:
    s.connect(("127.0.0.1", {port}))
    s.send(b"leak")
    out = "connected"
except OSError as exc:
    out = "blocked: " + str(exc)
open("outcome", "w").write(out)
'''

RELOADED_SOCKET = '''
import importlib, socket
socket = importlib.reload(socket)
try:
    socket.socket.connect = socket._socket.socket.connect
except Exception:
    pass
try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=3) as s:
        s.sendall(b"leak")
    out = "connected"
except OSError as exc:
    out = "blocked: " + str(exc)
open("outcome", "w").write(out)
'''

UDP = '''
import _socket
s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
out = []
for host in ("127.0.0.1", "8.8.8.8"):
    try:
        s.sendto(b"leak", (host, {port}))
        out.append(host + " sent (nobody there)")
    except OSError as exc:
        out.append(host + " blocked: " + str(exc))
open("outcome", "w").write("; ".join(out))
'''

CHILD_PROCESS = '''
import subprocess, sys
code = ("import _socket; s = _socket.socket(); s.settimeout(3); "
        "s.connect(('127.0.0.1', {port})); s.send(b'leak')")
p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
open("outcome", "w").write(f"exit {{p.returncode}}: " + p.stderr.decode()[-200:])
'''


@pytest.mark.parametrize("name,script", [("raw _socket", RAW_SOCKET), ("reloaded socket", RELOADED_SOCKET),
                                         ("udp", UDP), ("child process", CHILD_PROCESS)],
                         ids=["raw_socket", "reloaded_socket", "udp", "child_process"])
def test_network_never_reaches_the_host(name, script, listener, tmp_path):
    _jail_or_skip()
    result, scratch, _ = _run(tmp_path, script.format(port=listener.port) + DONE)
    assert result.confinement == "bwrap"
    assert "SystemExit: done" in result.data["error"], (result.data, result.stderr_tail)
    outcome = (scratch / "outcome").read_text()
    time.sleep(0.3)  # anything in flight lands
    assert listener.close() == [], f"{name} reached the host listener ({outcome})"
    if name == "udp":
        assert "8.8.8.8 blocked" in outcome, outcome  # no route out of the namespace
    else:
        assert "connected" not in outcome.replace("exit 1", ""), outcome


def test_writes_and_reads_stay_inside_scratch(tmp_path):
    _jail_or_skip()
    tag = uuid.uuid4().hex[:12]
    private = tmp_path / "private.txt"
    private.write_text("host-only")
    targets = [tmp_path / "outside.txt", Path.home() / f".pgolf-jail-{tag}", ROOT / f"pgolf-jail-{tag}",
               Path("/etc") / f"pgolf-jail-{tag}"]
    own_tmp = Path("/tmp") / f"pgolf-jail-{tag}"
    script = f'''
import json, os
out = {{}}
for t in {[str(t) for t in targets]!r}:
    try:
        with open(t, "w") as f:
            f.write("escaped")
        out[t] = "wrote"
    except OSError as exc:
        out[t] = type(exc).__name__
try:
    out["read"] = open({str(private)!r}).read()
except OSError as exc:
    out["read"] = type(exc).__name__
out["home"] = os.path.expanduser("~")
open("mine.txt", "w").write("scratch is writable")
try:  # a fixed /tmp path: the jail's own /tmp, not the host's
    open({str(own_tmp)!r}, "w").write("private")
    out["own_tmp"] = "wrote"
except OSError as exc:
    out["own_tmp"] = type(exc).__name__
open("outcome", "w").write(json.dumps(out))
''' + DONE
    try:
        result, scratch, _ = _run(tmp_path, script)
        leaked = [str(t) for t in [*targets, own_tmp] if t.exists()]
    finally:
        for t in [*targets[1:], own_tmp]:
            t.unlink(missing_ok=True)
    out = json.loads((scratch / "outcome").read_text())
    assert leaked == [], out
    assert out["own_tmp"] == "wrote", out  # writable inside, gone with the child
    assert out["read"] != "host-only", out
    assert out["home"].startswith(str(scratch)), out  # HOME points into scratch
    assert (scratch / "mine.txt").read_text() == "scratch is writable"


def test_parent_environment_secrets_do_not_reach_the_child(tmp_path, monkeypatch):
    _jail_or_skip()
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("PGOLF_TEST_SECRET", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    script = '''
import glob, json, os
seen = sorted(k for k in os.environ if "SECRET" in k)
for path in glob.glob("/proc/*/environ"):
    try:
        if b"SECRET" in open(path, "rb").read():
            seen.append(path)
    except OSError:
        pass
open("outcome", "w").write(json.dumps(seen))
''' + DONE
    result, scratch, _ = _run(tmp_path, script)
    assert json.loads((scratch / "outcome").read_text()) == []
    assert secret not in result.stderr_tail and secret not in json.dumps(result.data)


DAEMON = '''
import os, sys, time
beat = os.path.join(os.getcwd(), "beat")
daemon = ("import sys, time\\n"
          "while True:\\n"
          "    try:\\n"
          "        open(sys.argv[1], 'a').write('x')\\n"
          "    except OSError:\\n"
          "        pass\\n"
          "    print('still here', file=sys.stderr, flush=True)\\n"
          "    time.sleep(0.1)\\n")
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", daemon, beat, "{tag}"])
    os._exit(0)
os.waitpid(pid, 0)
for _ in range(100):  # the daemon is up before the script goes on
    if os.path.exists(beat):
        break
    time.sleep(0.05)
'''


def _assert_daemon_gone(scratch: Path, tag: str) -> None:
    beat = scratch / "beat"
    assert beat.is_file() and beat.stat().st_size > 0, "the daemon never started: the test proves nothing"
    size = beat.stat().st_size
    time.sleep(0.6)
    assert beat.stat().st_size == size, "the daemon still writes after the probe returned"
    assert processes_with(tag) == []


def test_setsid_daemon_dies_with_the_probe(tmp_path):
    """A double-forked setsid daemon (which also holds stderr) is killed when the probe's
    process exits, and does not delay the return."""
    _jail_or_skip()
    tag = f"pgolf-daemon-{uuid.uuid4().hex}"
    result, scratch, elapsed = _run(tmp_path, DAEMON.format(tag=tag) + DONE, timeout=60)
    try:
        assert "SystemExit: done" in result.data["error"], (result.data, result.stderr_tail)
        assert elapsed < 40, elapsed  # returned when the script did, not at the timeout
        _assert_daemon_gone(scratch, tag)
    finally:
        for pid in processes_with(tag):
            os.kill(pid, 9)


def test_hung_probe_with_daemon_holding_stderr_returns_after_its_timeout(tmp_path):
    """`pgolf probe --timeout 8` on a script that starts a setsid daemon holding stderr, then
    hangs: the command returns within the timeout plus a few seconds, says the probe timed
    out, names the jail, and leaves no process behind."""
    _jail_or_skip()
    tag = f"pgolf-daemon-{uuid.uuid4().hex}"
    record = tmp_path / "record"
    record.mkdir()
    (record / "train_gpt.py").write_text(DAEMON.format(tag=tag) + "\ntime.sleep(600)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PGOLF_CACHE=str(tmp_path / "cache"))
    timeout = 8
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-P", "-m", "auditor", "probe", str(record), "--timeout", str(timeout),
                               "-f", "json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        wall = time.monotonic() - started
        report = json.loads(done.stdout)
        audit = report["audits"][0] if "audits" in report else report
        messages = [f["message"] for f in audit["findings"]]
        assert any("timed out after 8 s" in m for m in messages), messages
        assert any(m.startswith("probe sandbox: bwrap") for m in messages), messages
        assert audit["elapsed_s"] < timeout + 5, audit["elapsed_s"]  # the probe, from loading the record
        assert wall < timeout + 30, wall  # the whole command, interpreter start included
        assert processes_with(tag) == []  # the scratch folder is gone: the daemon is found by its tag
    finally:
        for pid in processes_with(tag):
            os.kill(pid, 9)


def test_missing_bwrap_runs_unconfined_and_says_so(tmp_path, monkeypatch, fresh_jail_status):
    from rules.core.findings import Severity
    from auditor.probes import probe_record

    monkeypatch.setattr(jail, "_find_bwrap", lambda: None)
    result, scratch, _ = _run(tmp_path, "open('outcome', 'w').write('ran')" + DONE)
    assert result.confinement == "unconfined: bwrap not found (install the bubblewrap package)"
    assert result.data["confinement"] == result.confinement
    assert (scratch / "outcome").read_text() == "ran"
    script = tmp_path / "rec" / "train_gpt.py"
    script.parent.mkdir()
    script.write_text("x = 1" + DONE)
    report = probe_record(script, timeout_s=30, tokenizer_cache=tmp_path / "tok")
    found = [f for f in report.findings if f.key == "sandbox"]
    assert len(found) == 1 and found[0].severity == Severity.INFO
    assert found[0].message.startswith("probe sandbox: UNCONFINED (bwrap not found"), found[0].message


def test_bwrap_that_cannot_sandbox_is_reported(monkeypatch, fresh_jail_status):
    """A bwrap that fails its one trial run (no user namespaces here): unconfined, with why."""
    monkeypatch.setattr(jail, "_find_bwrap", lambda: "/bin/false")
    status = jail.jail_status()
    assert status.bwrap is None and status.confinement.startswith("unconfined: bwrap cannot create a sandbox here"), status


def test_old_bwrap_gets_the_basic_jail(tmp_path, listener, monkeypatch, fresh_jail_status):
    """A bwrap without --disable-userns (older than 0.8, or no user namespaces): the basic
    jail, still with its own network namespace."""
    real = jail._find_bwrap()
    if real is None:
        pytest.skip("bwrap is not installed")
    old = tmp_path / "bwrap"
    old.write_text(f'#!/bin/sh\ncase " $* " in *" --disable-userns "*) echo "bwrap: Unknown option '
                   f'--disable-userns" >&2; exit 1;; esac\nexec {real} "$@"\n')
    old.chmod(0o755)
    monkeypatch.setattr(jail, "_find_bwrap", lambda: str(old))
    status = jail.jail_status()
    if status.bwrap is None:
        pytest.skip(f"no bubblewrap jail on this machine: {status.confinement}")
    assert status == jail.Jail(str(old), False, "bwrap")
    result, scratch, _ = _run(tmp_path, RAW_SOCKET.format(port=listener.port) + DONE)
    assert result.confinement == "bwrap" and "SystemExit: done" in result.data["error"], result
    assert listener.close() == [], (scratch / "outcome").read_text()
