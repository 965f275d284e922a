"""Launch one run under a hard wall-clock limit, and leave nothing behind.

The command runs in its own session and process group (``start_new_session``),
with stdout and stderr appended to the log file directly (no pipe a stray
grandchild could hold open). While it runs, the launcher keeps a record of
every descendant it has seen (walking ``/proc`` parent links), because torchrun
and the scripts it starts may put workers in process groups of their own.

At the limit: SIGTERM to the group and to every known descendant's group, a
grace period, then SIGKILL to whatever is still alive. After a normal exit the
same sweep removes daemons the run left behind. The result says which pids
(if any) survived, so a caller can report it instead of trusting it.

Linux-first: ``/proc`` gives the process tree; elsewhere only the process
group is signalled and checked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

POLL_S = 0.2
TREE_SCAN_S = 1.0


@dataclass
class LaunchResult:
    returncode: int | None  # None when killed before it exited on its own
    wall_s: float
    killed: bool  # hit the wall-clock limit and was killed
    term_signal: int | None  # the signal that ended the leader, if any
    limit_s: float
    leftover: list[int] = field(default_factory=list)  # pids still alive after the sweep
    interrupted: bool = False


@dataclass(frozen=True)
class _Proc:
    pid: int
    start: int  # /proc start time in clock ticks: tells a reused pid apart


def _stat(pid: int) -> tuple[int, int, int, str, int] | None:
    """(ppid, pgid, sid, state, starttime) from /proc/<pid>/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()
    try:
        return int(rest[1]), int(rest[2]), int(rest[3]), rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _proc_available() -> bool:
    return os.path.isdir("/proc/self")


class ProcessTree:
    """Every process that descends from (or shares the session of) a leader."""

    def __init__(self, leader: int) -> None:
        self.leader = leader
        self.seen: dict[int, _Proc] = {}
        leader_stat = _stat(leader)
        if leader_stat is not None:
            self.seen[leader] = _Proc(leader, leader_stat[4])

    def scan(self) -> None:
        if not _proc_available():
            return
        stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
        known = {p.pid for p in self.seen.values() if p.pid in stats and stats[p.pid][4] == p.start}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, pgid, sid, _state, start) in stats.items():
                if pid in known:
                    continue
                if ppid in known or sid == self.leader or pgid == self.leader:
                    self.seen[pid] = _Proc(pid, start)
                    known.add(pid)
                    changed = True

    def alive(self) -> list[int]:
        """Known pids still running (zombies count as gone: nothing left to kill)."""
        out = []
        for proc in self.seen.values():
            st = _stat(proc.pid)
            if st is None:
                if not _proc_available() and _pid_exists(proc.pid):
                    out.append(proc.pid)
                continue
            if st[4] == proc.start and st[3] not in ("Z", "X"):
                out.append(proc.pid)
        if _proc_available():
            for pid in _all_pids():
                st = _stat(pid)
                if st and (st[1] == self.leader or st[2] == self.leader) and st[3] not in ("Z", "X") and pid not in out:
                    out.append(pid)
        return sorted(out)

    def signal_all(self, sig: int) -> None:
        groups = {self.leader}
        for pid in self.alive():
            try:
                groups.add(os.getpgid(pid))
            except OSError:
                pass
        own = os.getpgrp()
        for pgid in groups:
            if pgid == own or pgid <= 1:
                continue
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass
        for pid in self.alive():
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launch(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    limit_s: float,
    grace_s: float = 10.0,
    on_line: Callable[[str], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> LaunchResult:
    """Run ``cmd`` with output appended to ``log_path``; kill it all at ``limit_s``.

    ``on_line`` gets each new log line (a tail thread reads the file);
    ``on_tick`` gets the elapsed seconds about five times a second. A
    KeyboardInterrupt kills the run the same way and is re-raised.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab", buffering=0) as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tree = ProcessTree(proc.pid)
    stop_tail = threading.Event()
    tail = None
    if on_line is not None:
        tail = threading.Thread(target=_tail, args=(log_path, offset, on_line, stop_tail), daemon=True)
        tail.start()
    killed = interrupted = False
    last_scan = 0.0
    try:
        while True:
            try:
                proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now - last_scan >= TREE_SCAN_S:
                tree.scan()
                last_scan = now
            if on_tick is not None:
                on_tick(now - started)
            if now - started >= limit_s:
                killed = True
                break
    except KeyboardInterrupt:
        interrupted = True
    wall_s = time.monotonic() - started
    tree.scan()
    leftover = _sweep(proc, tree, grace_s)
    stop_tail.set()
    if tail is not None:
        tail.join(timeout=2.0)
    returncode = proc.returncode
    term_signal = -returncode if returncode is not None and returncode < 0 else None
    result = LaunchResult(
        returncode=None if killed or interrupted else returncode,
        wall_s=wall_s,
        killed=killed,
        term_signal=term_signal,
        limit_s=limit_s,
        leftover=leftover,
        interrupted=interrupted,
    )
    if interrupted:
        raise KeyboardInterrupt
    return result


def _sweep(proc: subprocess.Popen, tree: ProcessTree, grace_s: float) -> list[int]:
    """SIGTERM everything the run started, wait ``grace_s``, SIGKILL the rest."""
    if not tree.alive() and proc.poll() is not None:
        return []
    tree.signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        tree.scan()
        if not tree.alive():
            break
        time.sleep(0.05)
    if tree.alive():
        tree.signal_all(signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and tree.alive():
            proc.poll()
            time.sleep(0.05)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass
    return tree.alive()


def _tail(path: Path, offset: int, on_line: Callable[[str], None], stop: threading.Event) -> None:
    """Feed complete lines written to ``path`` after ``offset`` to ``on_line`` until stopped."""
    try:
        fh = open(path, "rb")
    except OSError:
        return
    with fh:
        fh.seek(offset)
        buffer = b""
        while True:
            chunk = fh.read(65536)
            if chunk:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        on_line(line.decode("utf-8", "replace"))
                    except Exception:
                        pass
                continue
            if stop.is_set():
                if buffer:
                    on_line(buffer.decode("utf-8", "replace"))
                return
            time.sleep(0.1)


def last_lines(path: Path, n: int = 10, max_bytes: int = 65536) -> list[str]:
    """The last ``n`` lines of a log (for evidence of a failed run)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return list(deque((line[:240] for line in lines if line.strip()), maxlen=n))


_RANK_RE = re.compile(r"^\s*rank\s*:\s*(\d+)")
_EXITCODE_RE = re.compile(r"^\s*exitcode\s*:\s*-(\d+)\b")


def worker_signals(path: Path, max_bytes: int = 65536) -> list[dict]:
    """Ranks that torchrun reports as killed by a signal, from its failure report at
    the end of the log (``rank : 1 (local_rank: 1)`` then ``exitcode : -6``): the
    launcher itself exits 1, so the signal is only in the log. One entry per rank."""
    found: dict[int | None, int] = {}
    rank = None
    for line in last_lines(path, 400, max_bytes):
        if (m := _RANK_RE.match(line)) is not None:
            rank = int(m.group(1))
        elif (m := _EXITCODE_RE.match(line)) is not None:
            found.setdefault(rank, int(m.group(1)))
            rank = None
    out = []
    for rank, number in found.items():
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        out.append({"rank": rank, "signal": number, "name": name})
    return sorted(out, key=lambda d: (d["rank"] is None, d["rank"] or 0))
