"""Time `pgolf scan` on 2 cores: a first run, then a run served by the cache.

    python benchmarks/bench_scan.py PATH [--refs 'refs/pull/*/head'] [--base main] [--workers 2] [--out figures.json]
    python benchmarks/bench_scan.py PATH --synthetic 40     # build a test repo with 40 PR refs at PATH first

PATH is a checkout of the challenge repository with its PR heads fetched
(`git fetch origin '+refs/pull/*/head:refs/pull/*/head'`), or any repository
of the same shape. Each run is the real command line in a fresh process
(`python -m auditor scan ...`), pinned to two CPUs where the OS allows, with a
new, empty cache directory for the first run and the same one for the second.
Prints both wall times, the speed-up, and the scan's own totals; `--out`
also writes them, with both scans' JSON summaries, to a file.

The cache key includes a hash of the tool's own source, so an edit to
`auditor/` or `rules/` between the two runs would (rightly) miss. Both runs
therefore import a snapshot of the packages copied to a temporary folder.

`--synthetic N` writes a git repository with a `main` branch and N PRs, each
adding one record folder whose train_gpt.py is about 1,200 lines (the size of
a typical record script, so the static rules have real work) and, for every
fifth PR, a failing record.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_synthetic(repo: Path, prs: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests import gitkit
    from tests.recordkit import LEGAL_SCRIPT, RecordSpec, Run

    gitkit.init(repo)
    for n in range(1, prs + 1):
        body = [LEGAL_SCRIPT]
        for i in range(120):  # ~1,200 lines of ordinary model code, distinct per PR
            body.append(
                f"\n\ndef block_{n}_{i}(x, w, b, scale={1 + i % 7}):\n"
                f"    h = torch.matmul(x, w) + b\n"
                f"    h = F.gelu(h) * scale\n"
                f"    if h.shape[-1] > {64 + i}:\n"
                f"        h = h[..., :{64 + i}]\n"
                f"    norm = h.pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt()\n"
                f"    return h * norm\n"
            )
        runs = [Run(1, eval_ms=650_000), Run(2)] if n % 5 == 0 else [Run(s, val_bpb=1.12 + n * 1e-4) for s in (42, 314, 999)]
        spec = RecordSpec(script="".join(body), runs=runs)
        gitkit.pr(repo, n, lambda r, n=n, spec=spec: gitkit.add_record(r, f"2026-05-{1 + n % 28:02d}_pr{n}", spec))


def pin_two_cpus() -> None:
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, set(cpus))


def snapshot(dest: Path) -> Path:
    """Copy the packages the scan imports, so both runs run the same code."""
    import shutil

    for package in ("auditor", "rules"):
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run_scan(path: Path, refs: str, workers: int, cache: Path, code: Path, base: str | None = None) -> tuple[float, dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        command = [sys.executable, "-m", "auditor", "scan", str(path), "--refs", refs, "--workers", str(workers),
                   "--cache", str(cache), "--format", "json", "--output", report.name, *(["--base", base] if base else [])]
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        done = subprocess.run(command, preexec_fn=pin_two_cpus, stderr=subprocess.PIPE, text=True, env=env, cwd=code)
        elapsed = time.perf_counter() - started
        if done.returncode not in (0, 1, 3):
            raise SystemExit(f"pgolf scan failed ({done.returncode}): {done.stderr.strip()}")
        return elapsed, json.loads(Path(report.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--refs", default="refs/pull/*/head")
    parser.add_argument("--base", help="base branch for --refs (default: the scan's own, main)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures and both scans' JSON summaries here")
    parser.add_argument("--synthetic", type=int, metavar="N", help="first build a synthetic repository with N PR refs at PATH")
    args = parser.parse_args()
    if args.synthetic:
        if args.path.exists() and any(args.path.iterdir()):
            raise SystemExit(f"{args.path} exists and is not empty; --synthetic writes a new repository")
        started = time.perf_counter()
        build_synthetic(args.path, args.synthetic)
        print(f"built {args.path}: {args.synthetic} PR refs in {time.perf_counter() - started:.1f} s")
    path = args.path.resolve()
    with tempfile.TemporaryDirectory(prefix="pgolf-bench-") as tmp:
        code, cache = snapshot(Path(tmp) / "code"), Path(tmp) / "cache"
        cold, first = run_scan(path, args.refs, args.workers, cache, code, args.base)
        warm, second = run_scan(path, args.refs, args.workers, cache, code, args.base)
    totals, stats = first["totals"], first["stats"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"refs: {stats['refs']} ({stats['refs_without_records']} adding no record, {len(stats['ref_errors'])} unreadable), "
          f"records: {totals['records']} ({stats.get('shared', 0)} sharing another's content), "
          f"files absent from the repository: {stats.get('unread_files', 0)}, workers: {args.workers}, cpus: the scans pinned to {min(cpus or 1, 2)} of {cpus}")
    print(f"verdicts: {totals['verdicts']}  internal errors: {totals['internal_errors']}")
    print(f"rules: {totals['rules']}")
    print(f"first run:  {cold:7.2f} s  (analysed {stats['analysed']}, cached {stats['cached']})")
    print(f"cached run: {warm:7.2f} s  (analysed {second['stats']['analysed']}, cached {second['stats']['cached']})")
    print(f"speed-up:   {cold / warm:7.1f}x")
    same = second["entries"] == first["entries"]
    if not same:
        print("WARNING: the cached run's entries differ from the first run's")
    if args.out:
        figures = {"path": str(path), "refs_pattern": args.refs, "workers": args.workers, "cpus": cpus, "cold_s": round(cold, 2),
                   "cached_s": round(warm, 2), "speedup": round(cold / warm, 1), "same_entries": same,
                   "totals": totals, "stats": stats, "cached_stats": second["stats"]}
        args.out.write_text(json.dumps({"figures": figures, "first": first, "second": second}, indent=1) + "\n")


if __name__ == "__main__":
    main()
