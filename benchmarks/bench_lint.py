"""Time the static rules per file next to a bare parse of the same files.

    python benchmarks/bench_lint.py [DIR_OR_FILE ...] [--repeat N] [--profile]

Every ``*.py`` under the given folders (recursively) is read once, then timed
``--repeat`` times (best of N per file) with ``ast.parse``, a bare
``libcst.parse_module`` and ``rules.lint_source`` (which parses with both and
builds the facts, then runs every rule). Default inputs: the repository's own
``examples/``, ``tests/fixtures/``, ``reference_impl/`` and
``tests/illegal_variants/`` where present. For the merged records, point it at
``records/track_10min_16mb`` of a challenge checkout (packed scripts are linted
as shipped here; ``pgolf check`` lints their decoded layers).
``--profile`` prints the top functions of a cProfile run of the linting.
"""

from __future__ import annotations

import argparse
import ast
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

import libcst as cst

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's rules, not an installed copy's
DEFAULTS = ("examples", "tests/fixtures", "reference_impl", "tests/illegal_variants")


def collect(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.py") if q.is_file())
        elif p.is_file():
            out.append(p)
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=5, help="slowest files to list")
    args = parser.parse_args(argv)
    from rules import lint_source

    paths = args.paths or [ROOT / d for d in DEFAULTS if (ROOT / d).exists()]
    files = collect(paths)
    if not files:
        print("no .py files found", file=sys.stderr)
        return 2
    texts = {f: f.read_text(encoding="utf-8", errors="replace") for f in files}
    rows = []
    for f, text in texts.items():
        def parse_ast():
            try:
                ast.parse(text)
            except (SyntaxError, ValueError, RecursionError):
                pass

        def parse_cst():
            try:
                cst.parse_module(text)
            except Exception:
                pass

        rows.append((f, text.count("\n") + 1, best_of(parse_ast, args.repeat),
                     best_of(parse_cst, args.repeat),
                     best_of(lambda: lint_source(text, file=f.name), args.repeat)))
    lines = sum(r[1] for r in rows)
    print(f"files: {len(rows)}  lines: {lines}  best of {args.repeat} per file")
    # the bar compares both the median file and the total with a bare libcst parse
    print(f"{'':22}{'median ms/file':>16}{'x libcst':>10}{'total ms':>12}{'x libcst':>10}")
    cst_total = sum(r[3] for r in rows)
    cst_median = statistics.median(r[3] for r in rows)
    for label, idx in (("ast.parse", 2), ("libcst.parse_module", 3), ("rules.lint_source", 4)):
        vals = [r[idx] for r in rows]
        tot, med = sum(vals), statistics.median(vals)
        print(f"{label:22}{1000 * med:16.2f}{med / cst_median if cst_median else 0:10.2f}"
              f"{1000 * tot:12.1f}{tot / cst_total if cst_total else 0:10.2f}")
    print(f"lint per 1000 lines: {1000 * sum(r[4] for r in rows) / max(lines, 1) * 1000:.1f} ms")
    print("slowest files (lint ms, libcst ms, lines):")
    for f, n, _a, c, lint in sorted(rows, key=lambda r: -r[4])[: args.top]:
        try:
            name = f.resolve().relative_to(ROOT)
        except ValueError:
            name = f
        print(f"  {1000 * lint:8.1f} {1000 * c:8.1f} {n:6d}  {name}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for f, text in texts.items():
            lint_source(text, file=f.name)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        print(buf.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
