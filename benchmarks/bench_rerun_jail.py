"""What the rerun jail costs: `pgolf rerun --smoke` jailed and with --no-jail, side by side.

    python benchmarks/bench_rerun_jail.py [--rounds 3] [--nproc 2] [RECORD]

RECORD defaults to the packed reference record under examples/. Each round runs
one seed of each mode (--force, the same runs folder and synthetic corpus, built
once before timing), alternating so that a shared machine's load falls on both;
prints the whole command's wall time and the run's own (run.json process wall),
each mode's median, the ratio, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor import jail  # noqa: E402
from auditor.harness import batch  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", nargs="?", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    record = args.record or next(iter(sorted(p.parent for p in ROOT.glob("examples/*/*reference*/train_gpt.py"))), None)
    if record is None:
        print("no reference record under examples/; pass RECORD")
        return 1
    status = jail.jail_status()
    if status.bwrap is None:
        print(f"no jail on this machine: {status.confinement}")
        return 1
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    times: dict[str, list[tuple[float, float]]] = {"jailed": [], "no-jail": []}
    with tempfile.TemporaryDirectory(prefix="pgolf-bench-rerun-") as tmp:
        runs = Path(tmp) / "runs"
        batch.prepare_smoke_data(batch.Plan(record_dir=record.resolve(), seeds=[args.seed], nproc=args.nproc,
                                            runs_dir=runs, smoke=True))
        print(f"load before: {_load()}")
        for _ in range(args.rounds):
            for mode in times:
                cmd = [sys.executable, "-P", "-m", "auditor", "rerun", str(record), "--smoke", "--seeds", str(args.seed),
                       "--nproc", str(args.nproc), "--out", str(runs), "--force", "-f", "json"]
                cmd += ["--no-jail"] if mode == "no-jail" else []
                started = time.perf_counter()
                done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - started
                run = json.loads((runs / record.name / f"seed{args.seed}" / "run.json").read_text())
                want = "bwrap" if mode == "jailed" else "unconfined: --no-jail"
                assert done.returncode == 0 and run["confinement"] == want, (done.stderr[-2000:], run["confinement"])
                times[mode].append((wall, run["process"]["wall_s"]))
                print(f"{mode:8s} command {wall:6.2f} s  run {run['process']['wall_s']:6.2f} s", flush=True)
        print(f"load after: {_load()}")
    med = {mode: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
           for mode, values in times.items()}
    for mode, (wall, run) in med.items():
        print(f"{mode:8s} median command {wall:6.2f} s, run {run:6.2f} s")
    print(f"jailed / no-jail: command {med['jailed'][0] / med['no-jail'][0]:.3f}, run {med['jailed'][1] / med['no-jail'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
