"""Benchmark: `pgolf scan --no-cache` on a record holding a 2 GB file, against the same record without it.

    python scripts/bench_scan_big.py [--gib 2]

Writes one small legal record folder three times under records/track_10min_16mb/:
plain; with a sparse GIB GiB `final_model.int8.ptz` (the scan hashes it, the audit
does not read it); with a sparse GIB GiB `train_seed7.log` (hashed, and the audit
reads its first 64 MiB, the log cap). Sparse files (truncate) use no disk. Runs
`python -P -m auditor scan DIR --no-cache -j 1 -f json` on each in its own process
and prints wall time and peak RSS (wait4: the scan and its worker) and the cost
over the plain record. Issue 13: the scan hashed such a file whole (4.2 GB RSS).
Bars: the hashed model file at most 100 MB over the plain record; the log at most
100 MB plus twice the 64 MiB log cap (its bytes and their text). Exit 1 when missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.recordkit import RecordSpec, write_record  # noqa: E402

def measure(path: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS MB, exit code) of one `pgolf scan` in its own process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-P", "-m", "auditor", "scan", str(path), "--no-cache", "-j", "1", "-f", "json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    return elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the sparse file")
    args = parser.parse_args(argv)
    size = int(args.gib * 2**30)
    cases = {"plain": None, "model file": "final_model.int8.ptz", "log": "train_seed7.log"}
    figures = {}
    with tempfile.TemporaryDirectory(prefix="pgolf-scanbig-") as tmp:
        for case, big in cases.items():
            top = Path(tmp) / case.replace(" ", "_")
            folder = write_record(top / "records", RecordSpec(), name="2026-05-01_record")
            if big is not None:
                with open(folder / big, "wb") as fh:
                    fh.truncate(size)
            figures[case] = measure(top)
    print(f"sparse file: {size:,} bytes ({args.gib:g} GiB)")
    plain_s, plain_mb, _ = figures["plain"]
    ok = True
    for case, (secs, mb, rc) in figures.items():
        line = f"{case:>10}: {secs:6.2f} s, peak RSS {mb:4.0f} MB, exit {rc}"
        if case != "plain":
            bar = 100 if case == "model file" else 100 + 2 * 64
            over = mb - plain_mb
            good = over <= bar and rc in (0, 1, 2, 3)
            ok &= good
            line += f"; over plain {secs - plain_s:+.2f} s, {over:+.0f} MB ({'ok' if good else f'over the bar: <= {bar} MB'})"
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
