"""Run the probe child in a jail: bubblewrap (`bwrap`) namespaces, rlimits, a wall clock.

What the jail guarantees (when `bwrap` can create namespaces on the machine):
- no network: its own network namespace with only a loopback of its own, so no
  socket (raw `_socket`, UDP, a child process's) reaches this machine or beyond;
- its own PID namespace: the child is reaped with every process it started
  (setsid daemons too) when it exits, times out or the auditor dies
  (`--die-with-parent`); a daemon holding stderr cannot hold the auditor, whose
  reads of the child's output all have deadlines (stderr goes to a file);
- a read-only view of only what Python needs (`/usr`, the interpreter's prefix,
  the import path, the auditor's checkout, a few `/etc` files, the spec's input
  files); no home folder, no `/work`, and a `/tmp` of its own (empty, 256 MiB,
  gone with the child); the one writable place of the host is the scratch folder
  (HOME and TMPDIR point into it), plus a 64 MiB `/dev/shm`;
- an environment of an explicit allow-list (`--clearenv`): no secret of the
  parent's environment reaches the child;
- no capabilities, a new session (no terminal injection), no new user namespaces;
- the memory (RLIMIT_AS), CPU, file size and wall-clock limits.

What it does not guarantee: the kernel is shared (a kernel exploit escapes any
namespace); the scratch folder's total size on disk is not capped (each file is:
RLIMIT_FSIZE); CPU time is bounded per process, not for the namespace together;
readable paths are readable (the import path's folders, the auditor's source).

When `bwrap` is missing or cannot create namespaces here (checked once per process,
the answer cached), the child runs as a plain subprocess with the same limits and
environment, the network blocked only by dead proxies and the loader's
`block_network` monkeypatch, and processes that leave its session may survive:
the result says `confinement: "unconfined: <why>"` and the probe report shows it.

The bwrap command line and the once-per-process check live in :mod:`auditor.jail`,
shared with `pgolf rerun --jail`; what is the probe's own is here: the scratch
folder, the environment's allow-list, the rlimits and reading the result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from auditor.jail import base_env, bwrap_args as jail_args, exit_status, jail_status

DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens
STDERR_TAIL = 4000
FILE_LIMIT = 1 << 30  # RLIMIT_FSIZE: no single file the child writes grows past 1 GiB
SHM_BYTES = 64 << 20
KILL_GRACE_S = 5.0
RESULT_MAX_BYTES = 64 << 20


@dataclass
class ChildResult:
    ok: bool
    data: dict | None
    reason: str  # why there is no data (timeout, crash, memory)
    elapsed_s: float
    stderr_tail: str = ""
    confinement: str = ""  # "bwrap", or "unconfined: <why>"


def child_env(extra: dict[str, str] | None = None, threads: int = 2,
              scratch: Path | None = None) -> dict[str, str]:
    """The child's whole environment: an allow-list, never a copy of the parent's."""
    env = base_env(Path(scratch) / "home" if scratch else Path(tempfile.gettempdir()))
    env.update(
        HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY, ALL_PROXY=DEAD_PROXY, NO_PROXY="",
        http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, all_proxy=DEAD_PROXY,
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
        TORCHINDUCTOR_DISABLE="1", PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
        WORLD_SIZE="1", RANK="0", LOCAL_RANK="0",
    )
    # the child imports the same auditor as the parent (a checkout run from its own folder,
    # not whichever copy is installed): the child's cwd is the scratch folder
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                  if os.path.isabs(p) and p != root])
    env.update(extra or {})
    return env


def bwrap_args(bwrap: str, scratch: Path, inputs: list[str], env: dict[str, str], hardened: bool = True) -> list[str]:
    """The probe's jail (everything but the command): scratch the one writable folder, a 64 MiB /dev/shm."""
    return jail_args(bwrap, writable=[scratch], inputs=inputs, env=env, chdir=scratch, hardened=hardened,
                     hostname="pgolf-probe", shm_bytes=SHM_BYTES)


def _limits(mem_bytes: int, cpu_s: int):
    def apply() -> None:
        import resource

        os.setsid()
        for which, value in ((resource.RLIMIT_AS, mem_bytes), (resource.RLIMIT_CPU, cpu_s),
                             (resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, FILE_LIMIT)):
            try:
                soft, hard = resource.getrlimit(which)
                value = value if hard == resource.RLIM_INFINITY else min(value, hard)
                resource.setrlimit(which, (value, hard))
            except (ValueError, OSError):
                pass

    return apply


def _tail(f) -> str:
    """The last bytes of the child's stderr file (never the whole of it)."""
    try:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - STDERR_TAIL))
        return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    """Kill the child's process group (bwrap, and with it the whole PID namespace)."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass


def run_child(spec: dict, timeout_s: float, mem_gib: float = 12.0, threads: int = 2,
              scratch: Path | None = None) -> ChildResult:
    """Run `python -m auditor.probes.child SPEC` in the jail and read its JSON result."""
    started = time.perf_counter()
    bwrap, hardened, confinement = jail_status()
    with tempfile.TemporaryDirectory(prefix="pgolf-probe-") as tmp, tempfile.TemporaryFile() as err:
        work = Path(scratch or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        spec = dict(spec, scratch=str(work), result=str(work / "result.json"),
                    deadline_s=max(1.0, timeout_s - 2.0))
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = child_env(spec.get("env_extra"), threads, work)
        (work / "home" / "tmp").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "auditor.probes.child", str(spec_path)]
        if bwrap is not None:
            inputs = [spec["tokenizer"]] if isinstance(spec.get("tokenizer"), str) else []
            cmd = bwrap_args(bwrap, work, inputs, env, hardened) + cmd
        # stderr to a file, not a pipe: a daemon that keeps it open cannot stall the read
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, preexec_fn=_limits(int(mem_gib * 2**30), int(timeout_s * threads + 30)))
        reason = ""
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout_s:.0f} s"
        _stop(proc)  # also after a clean exit: whatever the child left in its process group
        tail = _tail(err)
        data = None
        result = Path(spec["result"])
        if result.is_file() and result.stat().st_size > RESULT_MAX_BYTES:
            reason = reason or f"the probe result is over {RESULT_MAX_BYTES >> 20} MiB"
        elif result.is_file():
            try:
                data = json.loads(result.read_text())
            except (OSError, ValueError) as exc:
                reason = reason or f"unreadable probe result: {exc}"
        if isinstance(data, dict):
            data["confinement"] = confinement
        elif data is not None:
            data, reason = None, reason or "the probe result is not a JSON object"
        if data is None and not reason:
            code = exit_status(proc.returncode) if bwrap is not None else proc.returncode
            if code and code < 0 and -code in signal.valid_signals():
                sig = signal.Signals(-code).name
                reason = f"probe process killed by {sig}" + (" (memory limit?)" if sig in ("SIGKILL", "SIGSEGV") else
                                                             " (file size limit)" if sig == "SIGXFSZ" else "")
            else:
                last = [line for line in tail.strip().splitlines() if line.strip()]
                reason = f"probe process exited with {proc.returncode}" + (f": {last[-1][:300]}" if last else "")
        return ChildResult(ok=data is not None, data=data, reason=reason,
                           elapsed_s=time.perf_counter() - started, stderr_tail=tail, confinement=confinement)
