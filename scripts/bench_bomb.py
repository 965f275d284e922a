"""Benchmark: `pgolf check` on a decompression bomb against a tiny script.

    python scripts/bench_bomb.py [--gib 1]

Writes a train_gpt.py that execs lzma.decompress(b85decode(...)) of GIB GiB of
zeros (the blob is a few hundred KB), and a tiny script, then runs `python -P -m
auditor check FILE -f json` on each in its own process and prints wall time and
peak RSS (wait4), and the bomb's cost over the tiny script. Issue 13's bar:
under 1 s and at most 100 MB over the tiny script. Exit 1 when the bar is missed.
"""

from __future__ import annotations

import argparse
import base64
import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bomb_script(gib: float) -> bytes:
    compressor = lzma.LZMACompressor(preset=9)
    chunk = b"\x00" * 2**24
    parts = [compressor.compress(b"#")]
    for _ in range(int(gib * 2**30) // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    blob = base64.b85encode(b"".join(parts)).decode()
    return f"import base64, lzma\nexec(lzma.decompress(base64.b85decode({blob!r})))\n".encode()


def measure(path: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS MB, exit code) of one `pgolf check` in its own process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-P", "-m", "auditor", "check", str(path), "-f", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="decompressed size of the bomb")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build is not None:  # in a child: the compressor's memory must not be inherited by the measured runs
        args.build.write_bytes(bomb_script(args.gib))
        return 0
    with tempfile.TemporaryDirectory(prefix="pgolf-bomb-") as tmp:
        tiny = Path(tmp) / "tiny" / "train_gpt.py"
        bomb = Path(tmp) / "bomb" / "train_gpt.py"
        tiny.parent.mkdir()
        bomb.parent.mkdir()
        tiny.write_bytes(b"import torch\nprint('hi')\n")
        made = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--gib", str(args.gib), "--build", str(bomb)], check=True)
        print(f"bomb: {args.gib:g} GiB of zeros in {bomb.stat().st_size:,} bytes (built in {time.perf_counter() - made:.1f} s)")
        tiny_s, tiny_mb, tiny_rc = measure(tiny)
        bomb_s, bomb_mb, bomb_rc = measure(bomb)
    # the process start and imports are the same for both; the bomb's own cost is the difference
    print(f"tiny script: {tiny_s:.2f} s, peak RSS {tiny_mb:.0f} MB, exit {tiny_rc}")
    print(f"bomb:        {bomb_s:.2f} s, peak RSS {bomb_mb:.0f} MB, exit {bomb_rc}")
    extra_s, extra_mb = bomb_s - tiny_s, bomb_mb - tiny_mb
    ok = extra_s < 1.0 and extra_mb <= 100 and bomb_rc in (0, 1, 2, 3)
    print(f"bomb over tiny: {extra_s:+.2f} s, {extra_mb:+.0f} MB ({'ok' if ok else 'over the bar: < 1 s, <= 100 MB'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
