"""Time `pgolf check` per record folder over a challenge checkout.

    python benchmarks/bench_check.py PATH [--ref main] [--no-rules]

Prints median, p95, max and total seconds per record, and the slowest five.
Without a checkout, PATH may be any folder holding records/<track>/<folder>/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy
from auditor.audit import Options, audit_path  # noqa: E402
from auditor.corpus import CorpusError, checkout, record_folders  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--no-rules", action="store_true")
    args = parser.parse_args()
    timings: list[tuple[float, str]] = []
    try:
        with checkout(args.path, args.ref) as root:
            folders = record_folders(root)
            if folders:  # untimed warm-up: the first audit pays one-time imports
                audit_path(folders[0], Options(static_rules=not args.no_rules))
            for folder in folders:
                started = time.perf_counter()
                audit_path(folder, Options(static_rules=not args.no_rules))
                timings.append((time.perf_counter() - started, folder.name))
    except CorpusError as exc:
        raise SystemExit(f"error: {exc}")
    if not timings:
        print("no record folders found")
        return
    seconds = sorted(t for t, _ in timings)
    p95 = seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]
    print(f"records: {len(seconds)}  rules: {'off' if args.no_rules else 'on'}")
    print(f"per record: median {statistics.median(seconds):.3f} s, p95 {p95:.3f} s, max {seconds[-1]:.3f} s")
    print(f"total: {sum(seconds):.2f} s")
    for t, name in sorted(timings, reverse=True)[:5]:
        print(f"  {t:.3f} s  {name}")


if __name__ == "__main__":
    main()
