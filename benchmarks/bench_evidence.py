"""Time the log parser (auditor.evidence.parse_log_text) on a generated log.

    python benchmarks/bench_evidence.py [--mb 10] [--repeat 3]

Builds a training log of about ``--mb`` megabytes (one ``step:`` line per step,
then the size and headline lines of a real record), parses it ``--repeat``
times and prints the best and median parse time and the throughput in MB/s.
The test suite checks the same log's parse for correctness, not for speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.evidence import parse_log_text  # noqa: E402


def make_log(mb: float) -> str:
    lines = ["seed:42", "world_size:8"]
    size, i = 0, 0
    target = int(mb * 1_000_000)
    while size < target:
        i += 1
        line = f"step:{i}/20000000 train_loss:{3 - i / 1e7:.4f} train_time:{i * 3}ms step_avg:3.00ms"
        lines.append(line)
        size += len(line) + 1
    lines += [
        "Total submission size int8+zlib: 15863533 bytes",
        "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570 eval_time:1406ms",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=10.0, help="size of the generated log in MB (default 10)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    text = make_log(args.mb)
    mb = len(text.encode("utf-8")) / 1e6
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ev = parse_log_text(text, "train_seed42.log")
        times.append(time.perf_counter() - t0)
    if ev.headline is None or ev.missing or ev.problems:
        raise SystemExit(f"the generated log did not parse cleanly: missing={ev.missing} problems={ev.problems}")
    best, med = min(times), statistics.median(times)
    print(f"log: {mb:.1f} MB, {text.count(chr(10)):,} lines")
    print(f"parse_log_text: best {best:.3f} s ({mb / best:.1f} MB/s), median {med:.3f} s ({mb / med:.1f} MB/s) "
          f"over {args.repeat} runs")


if __name__ == "__main__":
    main()
