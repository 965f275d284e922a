"""Run the probe child in a subprocess: wall-clock and memory limits, no network,
a scratch working directory, a process group killed on timeout.

No network is best effort, not a jail: proxies point at a dead address and the
child replaces socket connects with a function that raises before it imports the
submission (see loader.block_network). A hostile script could still undo that;
probes are for honest code that may reach for the network by accident.
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

DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens


@dataclass
class ChildResult:
    ok: bool
    data: dict | None
    reason: str  # why there is no data (timeout, crash, memory)
    elapsed_s: float
    stderr_tail: str = ""


def child_env(extra: dict[str, str] | None = None, threads: int = 2) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
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
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root])
    env.update(extra or {})
    return env


def _limits(mem_bytes: int, cpu_s: int):
    def apply() -> None:
        import resource

        os.setsid()
        for which, value in ((resource.RLIMIT_AS, mem_bytes), (resource.RLIMIT_CPU, cpu_s),
                             (resource.RLIMIT_CORE, 0)):
            try:
                soft, hard = resource.getrlimit(which)
                value = value if hard == resource.RLIM_INFINITY else min(value, hard)
                resource.setrlimit(which, (value, hard))
            except (ValueError, OSError):
                pass

    return apply


def run_child(spec: dict, timeout_s: float, mem_gib: float = 12.0, threads: int = 2,
              scratch: Path | None = None) -> ChildResult:
    """Run `python -m auditor.probes.child SPEC` and read its JSON result."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pgolf-probe-") as tmp:
        work = Path(scratch or tmp)
        spec = dict(spec, scratch=str(work), result=str(work / "result.json"),
                    deadline_s=max(1.0, timeout_s - 2.0))
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "auditor.probes.child", str(spec_path)]
        proc = subprocess.Popen(
            cmd, cwd=work, env=child_env(spec.get("env_extra"), threads), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_limits(int(mem_gib * 2**30), int(timeout_s * threads + 30)),
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
            reason = ""
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, err = proc.communicate()
            reason = f"timed out after {timeout_s:.0f} s"
        tail = (err or b"").decode("utf-8", "replace")[-4000:]
        data = None
        result = Path(spec["result"])
        if result.is_file():
            try:
                data = json.loads(result.read_text())
            except (OSError, ValueError) as exc:
                reason = reason or f"unreadable probe result: {exc}"
        if data is None and not reason:
            if proc.returncode and proc.returncode < 0:
                sig = signal.Signals(-proc.returncode).name
                reason = f"probe process killed by {sig}" + (" (memory limit?)" if sig in ("SIGKILL", "SIGSEGV") else "")
            else:
                last = [line for line in tail.strip().splitlines() if line.strip()]
                reason = f"probe process exited with {proc.returncode}" + (f": {last[-1][:300]}" if last else "")
        return ChildResult(ok=data is not None, data=data, reason=reason,
                           elapsed_s=time.perf_counter() - started, stderr_tail=tail)
