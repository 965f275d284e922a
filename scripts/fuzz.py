"""Fuzz the auditor at full size: `python scripts/fuzz.py --examples 10000`.

Inputs come from tests/fuzzkit.py (folder layouts, scripts with packed payloads,
submission.json, logs), split evenly across the categories, with fresh random
seeds each run (`--seed` to repeat one). Every input must end in a verdict (exit
0/1/2/3) with no traceback and no internal error, within `--time-limit` seconds.
Prints per category the count, failures, slowest input and peak RSS per input
(Linux: VmHWM, reset before each input through /proc/self/clear_refs; the RSS the
fuzzer already holds, hypothesis and freed-but-kept heap included, is in it, so the
limit applies to the peak over the RSS just before the input), and
writes each failing input under `--failures` to replay. Exit 1 on any failure,
any input over the time limit, or a peak RSS over `--max-rss-mb`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests import fuzzkit  # noqa: E402


class TimeLimit(Exception):
    pass


def _alarm(_signum, _frame):
    raise TimeLimit()


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mb(field: str = "VmHWM") -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _layout_of(kind: str, value) -> dict:
    if kind == "submission":
        return {"submission.json": value, "train_gpt.py": b"import torch\n"}
    if kind == "logs":
        files = {f"train_seed{i}.log": text for i, text in enumerate(value)}
        files["train_gpt.py"] = b"import torch\n"
        return files
    return value


CATEGORIES = {
    "layout": (fuzzkit.layouts(), lambda v: fuzzkit.check_layout(v)),
    "script": (fuzzkit.scripts(), lambda v: fuzzkit.check_script(v)),
    "submission": (fuzzkit.submissions(), lambda v: fuzzkit.check_layout(_layout_of("submission", v))),
    "logs": (st.lists(fuzzkit.logs(), min_size=1, max_size=3), lambda v: fuzzkit.check_layout(_layout_of("logs", v))),
}


def run_category(name: str, examples: int, run_seed: int, time_limit: int, failures_dir: Path) -> dict:
    strategy, oracle = CATEGORIES[name]
    stats = {"n": 0, "failed": 0, "slow": 0, "max_s": 0.0, "max_rss_mb": 0.0, "max_cost_mb": 0.0, "codes": {}}

    @seed(run_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(value):
        reset_peak()
        before = peak_rss_mb("VmRSS")
        started = time.perf_counter()
        signal.alarm(time_limit)
        problem = None
        try:
            code = oracle(value)
            stats["codes"][code] = stats["codes"].get(code, 0) + 1
        except TimeLimit:
            problem = f"over {time_limit} s"
            stats["slow"] += 1
        except BaseException:  # noqa: BLE001 - every escape is a finding of the fuzzer
            problem = traceback.format_exc(limit=8)
        finally:
            signal.alarm(0)
        elapsed = time.perf_counter() - started
        rss = peak_rss_mb()
        stats["n"] += 1
        stats["max_s"] = max(stats["max_s"], elapsed)
        stats["max_rss_mb"] = max(stats["max_rss_mb"], rss)
        stats["max_cost_mb"] = max(stats["max_cost_mb"], rss - before)
        if problem is not None:
            stats["failed"] += 1
            failures_dir.mkdir(parents=True, exist_ok=True)
            stem = failures_dir / f"{name}-{stats['n']:05d}"
            stem.with_suffix(".pickle").write_bytes(pickle.dumps(value))
            stem.with_suffix(".txt").write_text(problem)
            print(f"FAIL {name} #{stats['n']}: {problem.strip().splitlines()[-1][:200]}", flush=True)

    one()
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs in all, split across categories")
    parser.add_argument("--only", choices=sorted(CATEGORIES), action="append", help="fuzz only these categories")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (default: a fresh seed)")
    parser.add_argument("--time-limit", type=int, default=30, help="seconds one input may take")
    parser.add_argument("--max-rss-mb", type=float, default=500.0, help="peak RSS one input may add")
    parser.add_argument("--failures", type=Path, default=Path("fuzz-failures"), help="where failing inputs go")
    args = parser.parse_args(argv)
    names = args.only or list(CATEGORIES)
    run_seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    signal.signal(signal.SIGALRM, _alarm)
    print(f"pgolf fuzz: {args.examples} inputs over {', '.join(names)}, seed {run_seed}", flush=True)
    bad = False
    total = 0
    for name in names:
        stats = run_category(name, max(1, args.examples // len(names)), run_seed, args.time_limit, args.failures)
        total += stats["n"]
        codes = ", ".join(f"exit {k}: {v}" for k, v in sorted(stats["codes"].items()))
        print(
            f"{name:>10}: {stats['n']} inputs, {stats['failed']} failed, {stats['slow']} over {args.time_limit} s, "
            f"slowest {stats['max_s']:.2f} s, peak RSS per input max {stats['max_rss_mb']:.0f} MB "
            f"(at most {stats['max_cost_mb']:.0f} MB over the RSS before it) ({codes})",
            flush=True,
        )
        bad |= stats["failed"] > 0 or stats["slow"] > 0 or stats["max_cost_mb"] > args.max_rss_mb
    print(f"{total} inputs: {'FAIL' if bad else 'ok'}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
