"""What the bubblewrap jail costs a probe: jailed and unconfined runs side by side.

    python benchmarks/bench_probe_jail.py [--rounds 6] [RECORD]

Without RECORD, the probe child runs a one-line script (torch imported, the script
stops at import: the jail's start-up cost is all that differs). With RECORD, the
whole `pgolf probe` of that record. The modes alternate so that a shared machine's
load falls on both; prints each mode's median and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor import jail  # noqa: E402
from auditor.probes import sandbox  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", nargs="?", type=Path)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    real = jail._find_bwrap
    if jail.jail_status().bwrap is None:
        print(f"no jail on this machine: {jail.jail_status().confinement}")
        return 1
    times: dict[str, list[float]] = {"bwrap": [], "unconfined": []}
    for _ in range(args.rounds):
        for mode in times:
            jail._find_bwrap = real if mode == "bwrap" else (lambda: None)
            jail.jail_status.cache_clear()
            jail.jail_status()  # the one-time trial is not timed
            started = time.perf_counter()
            if args.record:
                from auditor.probes.runner import probe_record

                confinement = (probe_record(args.record, timeout_s=600).data or {}).get("confinement", "")
            else:
                confinement = sandbox.run_child({"source": "raise SystemExit('stop')", "vocab": 64}, 120).confinement
            times[mode].append(time.perf_counter() - started)
            assert confinement.startswith(mode), confinement
    for mode, values in times.items():
        print(f"{mode:10s} median {statistics.median(values):7.2f} s  runs {', '.join(f'{v:.2f}' for v in values)}")
    print(f"jailed / unconfined: {statistics.median(times['bwrap']) / statistics.median(times['unconfined']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
