"""`pgolf scan`: audit many record folders, from a work tree or from git refs.

Three ways to pick what to audit:

- a directory (a checkout, its ``records/``, or one record folder): every
  ``records/<track>/<folder>/`` on disk;
- ``ref=REF`` in a git repository (bare or not): every records folder in the
  tree of REF, read with ``git ls-tree`` and ``git cat-file --batch``;
- ``refs=PATTERN`` (e.g. ``refs/pull/*/head``): for each matching ref, the
  records folders to which its diff against the merge base with the base
  branch adds a ``train_gpt.py`` (a new record; see ``added_folders``).

Nothing is checked out: a folder read from git is written, blob by blob, into
a temporary directory, audited there by a worker process, then removed.

Each record's audit is cached under a key made of the record's content (git
blob ids) and the tool's own fingerprint (see auditor.cache), so a re-scan
only analyses what changed. Entries hold the JSON report's audit object,
fresh or cached alike, so both render the same. Any failure (a ref git cannot
resolve, a worker that raises or dies) becomes a counted error entry; the scan
never stops for one record. A blob the repository lacks (a partial mirror
leaves out its largest files) is not written; the record is audited without
it and the entry lists it as ``unread``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from auditor.cache import Cache, audit_key, content_key, file_blob_id
from auditor.corpus import record_folders, records_dir
from auditor.gitdiff import GitError, changes, fork_point, git, is_git_repo, record_folder_of, rev_parse
from auditor.record import SCRIPT_NAME, list_files

BASE_CANDIDATES = ("refs/heads/main", "refs/heads/master", "refs/remotes/origin/main", "refs/remotes/origin/master", "HEAD")
REGULAR_MODES = ("100644", "100755")
# One record's static audit takes seconds of CPU (40 s for the largest PR records
# of the challenge on a loaded 2-core machine); one that takes this long is stuck
# (a pathological file), and it must not stall a scan of thousands.
RECORD_TIMEOUT_S = 120.0
# The limit is CPU time, so a busy machine does not time out healthy records;
# a record that waits without computing is stopped at this many times it in wall time.
WALL_FACTOR = 10


class ScanError(Exception):
    """The path cannot be scanned at all (a usage error)."""


@dataclass
class Target:
    """One record folder to audit."""

    ref: str  # "" for a directory on disk
    commit: str
    record: str  # records/<track>/<folder> (or the folder's path on disk)
    key: str = ""
    path: Path | None = None  # a folder on disk
    blobs: list[tuple[str, str, str]] = field(default_factory=list)  # (path in folder, blob id, mode) from git
    unread: list[str] = field(default_factory=list)  # paths in folder whose blob git could not supply

    @property
    def label(self) -> str:
        return f"{self.ref}:{self.record}" if self.ref else self.record


@dataclass
class Entry:
    ref: str
    commit: str
    record: str
    key: str
    audit: dict | None = None  # the JSON report's audit object
    error: str | None = None  # the scan could not audit it
    cached: bool = False
    unread: list[str] = field(default_factory=list)  # files git could not supply; audited without them

    @property
    def verdict(self) -> str:
        if self.audit is None:
            return "ERROR"
        return self.audit.get("verdict", "ERROR")

    @property
    def internal_error(self) -> str | None:
        if self.error:
            return self.error
        if self.audit is not None and self.audit.get("verdict") == "ERROR":
            return self.audit.get("error") or "could not be analysed"
        return None


@dataclass
class ScanResult:
    source: str
    base: str | None = None
    entries: list[Entry] = field(default_factory=list)
    refs: int = 0  # refs looked at
    refs_without_records: int = 0
    ref_errors: list[str] = field(default_factory=list)
    analysed: int = 0
    cached: int = 0
    shared: int = 0  # records whose content (and name) another record of this scan has: analysed once
    elapsed_s: float = 0.0

    @property
    def internal_errors(self) -> int:
        return sum(1 for e in self.entries if e.internal_error) + len(self.ref_errors)


@dataclass
class ScanOptions:
    ref: str | None = None
    refs: str | None = None
    base: str | None = None
    workers: int = 0  # 0: one per CPU
    cache_dir: Path | None = None
    static_rules: bool = True
    progress: bool | None = None  # None: only on a TTY
    record_timeout_s: float = RECORD_TIMEOUT_S  # 0: no limit


def scan(path: Path, options: ScanOptions | None = None, analyse: Callable[[str, str, bool], dict] | None = None) -> ScanResult:
    """Collect the targets, reuse cached audits, audit the rest in parallel."""
    options = options or ScanOptions()
    started = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")
    cache = Cache(options.cache_dir)
    result = ScanResult(source=str(path))
    option_key = json.dumps({"static_rules": options.static_rules})

    if options.refs is not None or options.ref is not None:
        if not is_git_repo(path):
            raise ScanError(f"{path}: --ref/--refs need a git repository")
        if options.refs is not None:
            targets = _pr_targets(path, options.refs, options.base, cache, result)
        else:
            targets = _ref_targets(path, options.ref, result)
    elif records_dir(path) is not None or (path / SCRIPT_NAME).is_file():
        targets = _disk_targets(path)
    elif is_git_repo(path):  # a bare repository or mirror: read HEAD
        targets = _ref_targets(path, "HEAD", result)
    else:
        raise ScanError(f"{path}: no records/ folder, no {SCRIPT_NAME}, and not a git repository")

    todo: list[Target] = []
    first: dict[str, Target] = {}  # key -> the target analysed for it
    copies: list[Target] = []  # same key as a target in todo: the same folder on several refs
    for target in targets:
        target.key = audit_key(target.key, option_key)
        audit = cache.get(target.key)
        if audit is not None:
            audit = {**audit, "target": target.label}  # the same content may sit on several refs
        entry = Entry(target.ref, target.commit, target.record, target.key, audit=audit, cached=audit is not None,
                      unread=list(target.unread))
        result.entries.append(entry)
        if audit is not None:
            result.cached += 1
        elif target.key in first:
            copies.append(target)
        else:
            first[target.key] = target
            todo.append(target)

    if todo:
        by_key = {(e.ref, e.record): e for e in result.entries}
        worker = analyse or functools.partial(_analyse, timeout_s=options.record_timeout_s)
        for target, outcome in _run(path, todo, worker, options):
            entry = by_key[(target.ref, target.record)]
            entry.audit, entry.error = outcome.get("audit"), outcome.get("error")
            entry.unread = list(target.unread)  # materialize may find more than the listing did
            if entry.audit is not None and entry.audit.get("verdict") != "ERROR":
                cache.put(target.key, entry.audit)
        for target in copies:
            source, entry = by_key[(first[target.key].ref, first[target.key].record)], by_key[(target.ref, target.record)]
            entry.audit = {**source.audit, "target": target.label} if source.audit is not None else None
            entry.error = source.error.replace(first[target.key].label, target.label) if source.error else None
            entry.unread = list(source.unread)
        result.analysed = len(todo)
        result.shared = len(copies)
    cache.flush()
    result.entries.sort(key=lambda e: (_ref_order(e.ref), e.record))
    result.elapsed_s = time.perf_counter() - started
    return result


def _ref_order(ref: str):
    """refs/pull/9/head before refs/pull/10/head."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in ref.split("/")]


# --------------------------------------------------------------------------- targets


def _disk_targets(path: Path) -> list[Target]:
    path = path.resolve()
    if (path / SCRIPT_NAME).is_file() and records_dir(path) is None:
        folders = [path]
    else:
        folders = record_folders(records_dir(path))
    targets = []
    for folder in folders:
        files = []
        for name in list_files(folder):  # the files an audit reads, so the key covers exactly them
            try:
                files.append((name, file_blob_id(folder / name)))
            except OSError:
                continue
        shown = folder.relative_to(path).as_posix() if folder != path else folder.name
        targets.append(Target(ref="", commit="", record=shown, key=_where(folder.as_posix()) + content_key(files), path=folder))
    return targets


def ls_tree(repo: Path, commit: str, *paths: str, missing: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """records folder -> [(path inside it, blob id, mode)] for regular files.

    A blob the repository does not have (``git ls-tree -l`` sizes it ``BAD``:
    a partial mirror leaves out its largest files) is not listed; it goes to
    ``missing`` (folder -> [(path inside it, blob id)]) when that is given.
    """
    out = git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", commit, "--", *paths)
    folders: dict[str, list[tuple[str, str, str]]] = {}
    for item in out.split("\0"):
        if not item or "\t" not in item:
            continue
        meta, name = item.split("\t", 1)
        fields = meta.split()
        if len(fields) != 4:
            continue
        mode, kind, oid, size = fields
        folder = record_folder_of(name)
        if folder is None:
            continue
        blobs = folders.setdefault(folder, [])
        # Symlinks and submodules are not written out: a link could point
        # anywhere on the machine running the scan.
        if kind == "blob" and mode in REGULAR_MODES:
            if not size.isdigit():
                if missing is not None:
                    missing.setdefault(folder, []).append((name[len(folder) + 1 :], oid))
                continue
            blobs.append((name[len(folder) + 1 :], oid, mode))
    return folders


def _ref_targets(repo: Path, ref: str, result: ScanResult) -> list[Target]:
    missing: dict[str, list[tuple[str, str]]] = {}
    try:
        commit = rev_parse(repo, ref)
        folders = ls_tree(repo, commit, "records", missing=missing)
    except GitError as exc:
        raise ScanError(f"{repo}: {exc}") from None
    result.refs = 1
    return [git_target(ref, commit, folder, blobs, missing.get(folder, ())) for folder, blobs in sorted(folders.items())]


def git_target(ref: str, commit: str, folder: str, blobs, missing=()) -> Target:
    """A folder read from git; `missing`: (path, blob id) of files the repository lacks."""
    blobs = [tuple(b) for b in blobs]
    missing = [tuple(m) for m in missing]
    # A missing file is part of the key, so the record is analysed again once its blob arrives.
    files = [(p, oid) for p, oid, _ in blobs] + [(p, "missing:" + oid) for p, oid in missing]
    key = _where(folder) + content_key(files)
    return Target(ref=ref, commit=commit, record=printable(folder), key=key, blobs=blobs, unread=sorted(printable(p) for p, _ in missing))


def printable(name: str) -> str:
    """A git path as text: bytes that are not UTF-8 (git names are bytes, read
    with surrogateescape) become ``\\xNN``, so reports, the JSON cache and the
    audit's own fingerprints can encode it. The key keeps the raw name."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _where(folder: str) -> str:
    """The part of a record's place the audit reads: <track>/<folder> names."""
    return "/".join(folder.rstrip("/").split("/")[-2:]) + "\0"


def default_base(repo: Path) -> str:
    for candidate in BASE_CANDIDATES:
        try:
            rev_parse(repo, candidate)
            return candidate
        except GitError:
            continue
    raise ScanError(f"{repo}: no main branch to diff PR refs against; give --base")


def list_refs(repo: Path, pattern: str) -> list[tuple[str, str]]:
    out = git(repo, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(objecttype)%00%(*objectname)", pattern)
    refs = []
    for line in out.splitlines():
        name, oid, kind, peeled = (line.split("\0") + ["", "", ""])[:4]
        if kind == "tag" and peeled:
            oid = peeled
        elif kind != "commit":
            continue
        refs.append((name, oid))
    return refs


def _pr_targets(repo: Path, pattern: str, base: str | None, cache: Cache, result: ScanResult) -> list[Target]:
    base = base or default_base(repo)
    try:
        base_commit = rev_parse(repo, base)
        refs = list_refs(repo, pattern)
    except GitError as exc:
        raise ScanError(f"{repo}: {exc}") from None
    result.base = base
    result.refs = len(refs)
    targets = []
    for name, commit in refs:
        folders = cache.get_ref(commit, base_commit)
        if folders is None:
            try:
                folders = added_folders(repo, commit, base_commit)
            except GitError as exc:
                result.ref_errors.append(f"{name}: {exc}")
                continue
            cache.put_ref(commit, base_commit, folders)
        if not folders:
            result.refs_without_records += 1
        for folder, blobs, missing in folders:
            targets.append(git_target(name, commit, folder, blobs, missing))
    return targets


def added_folders(repo: Path, commit: str, base_commit: str) -> list:
    """The records folders the commit adds a record to, with their files:
    [[folder, [[path, blob, mode], ...], [[missing path, blob], ...]], ...].

    A folder counts when the diff from the fork point (the merge base with the
    base commit; the base commit itself for a history that shares none) adds
    ``<folder>/train_gpt.py`` and the commit has it as a regular file. A PR
    that only edits a record already on the base (its train_gpt.py modified,
    a log added) or deletes one adds nothing: that record is the base's, and
    ``--ref main`` audits it. A folder that existed without a train_gpt.py
    and gets one is a new record. Renames count as delete + add.
    """
    old = fork_point(repo, base_commit, commit)
    added = sorted(
        folder
        for c in changes(repo, old, commit, "records")
        if c.status == "A" and (folder := record_folder_of(c.path)) and c.path == f"{folder}/{SCRIPT_NAME}"
    )
    if not added:
        return []
    missing: dict[str, list[tuple[str, str]]] = {}
    listed = ls_tree(repo, commit, *[f + "/" for f in added], missing=missing)
    return [
        [folder, [list(b) for b in blobs], [list(m) for m in missing.get(folder, [])]]
        for folder, blobs in sorted(listed.items())
        if folder in added and any(p == SCRIPT_NAME for p, _, _ in blobs)
    ]


# --------------------------------------------------------------------------- running


class RecordTimeout(Exception):
    """One record's audit ran past ScanOptions.record_timeout_s."""


def _analyse(folder: str, label: str, static_rules: bool = True, timeout_s: float = 0) -> dict:
    """Audit one folder (in a worker process); never raises.

    The timeout is an alarm in the worker's main thread on its CPU time
    (WALL_FACTOR times it on the wall clock): it interrupts Python code, and
    native code (a parser) at its next return to Python.
    """
    try:
        with _alarm(timeout_s, label):
            from auditor.audit import Options, audit_path
            from auditor.report.json_report import _finite, audit_to_dict

            audit = audit_path(Path(folder), Options(static_rules=static_rules))
        audit.target = label
        # Through JSON and back, so a fresh entry is exactly what the cache holds.
        return {"audit": json.loads(json.dumps(_finite(audit_to_dict(audit)), allow_nan=False)), "error": None}
    except BaseException as exc:  # noqa: BLE001 - one record never stops the scan
        return {"audit": None, "error": f"internal error while analysing {label}: {type(exc).__name__}: {exc}"}


@contextmanager
def _alarm(seconds: float, label: str):
    """Raise RecordTimeout after `seconds` of this process's CPU time, or
    WALL_FACTOR times that of wall time (0, or off the main thread: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def cpu(signum, frame):
        raise RecordTimeout(f"{label} used more than {seconds:g} s of CPU; skipped")

    def wall(signum, frame):
        raise RecordTimeout(f"{label} took more than {seconds * WALL_FACTOR:g} s; skipped")

    previous = signal.signal(signal.SIGPROF, cpu), signal.signal(signal.SIGALRM, wall)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * WALL_FACTOR)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


def _warm() -> None:
    """Worker initializer: pay the import cost once per process."""
    try:
        import auditor.audit  # noqa: F401
    except Exception:
        pass


class MissingBlob(GitError):
    """The repository does not have this blob (a partial mirror)."""


class Blobs:
    """One `git cat-file --batch` process writing blobs to files."""

    def __init__(self, repo: Path):
        self.proc = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    def write(self, oid: str, dest: Path) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(oid.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) == 2 and header[1] == b"missing":
            raise MissingBlob(f"git cat-file: the repository has no blob {oid}")
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"git cat-file: cannot read blob {oid}")
        left = int(header[2])
        with dest.open("wb") as fh:
            while left:
                chunk = self.proc.stdout.read(min(left, 1 << 20))
                if not chunk:
                    raise GitError(f"git cat-file: blob {oid} truncated")
                fh.write(chunk)
                left -= len(chunk)
        self.proc.stdout.read(1)  # the newline after the content

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def materialize(blobs: Blobs, tmp: Path, n: int, target: Target) -> Path:
    """Write a git record folder to tmp/<n>/records/<track>/<folder>/.

    A blob the repository lacks is left out and added to ``target.unread``.
    A name that is not UTF-8 is written as ``printable`` spells it.
    """
    folder = tmp / str(n) / target.record
    folder.mkdir(parents=True)
    for rel, oid, _mode in target.blobs:
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            continue
        dest = folder.joinpath(*map(printable, parts))
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            blobs.write(oid, dest)
        except MissingBlob:
            target.unread = sorted({*target.unread, printable(rel)})
    return folder


def _run(repo: Path, todo: list[Target], worker: Callable, options: ScanOptions):
    """Yield (target, outcome) as audits finish; at most 2×workers folders on disk."""
    workers = options.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(todo)))
    tmp = Path(tempfile.mkdtemp(prefix="pgolf-scan-"))
    blobs = Blobs(repo) if any(t.path is None for t in todo) else None
    progress = _progress(len(todo), options.progress)
    try:
        pending = deque(enumerate(todo))

        def prepare(n: int, target: Target) -> tuple[str | None, str | None]:
            if target.path is not None:
                return str(target.path), None
            try:
                return str(materialize(blobs, tmp, n, target)), None
            except (GitError, OSError, ValueError) as exc:
                _cleanup(tmp, n)
                return None, f"could not read {target.label} from git: {exc}"

        if workers == 1:
            for n, target in pending:
                folder, error = prepare(n, target)
                if folder is None:
                    outcome = {"audit": None, "error": error}
                else:
                    try:
                        outcome = worker(folder, target.label, options.static_rules)
                    except Exception as exc:  # noqa: BLE001
                        outcome = {"audit": None, "error": f"internal error while analysing {target.label}: {type(exc).__name__}: {exc}"}
                _cleanup(tmp, n)
                progress.advance()
                yield target, outcome
            return

        while pending:
            with ProcessPoolExecutor(max_workers=workers, initializer=_warm) as pool:
                inflight: dict = {}
                broken = False
                while (pending or inflight) and not broken:
                    while pending and len(inflight) < 2 * workers:
                        n, target = pending.popleft()
                        folder, error = prepare(n, target)
                        if folder is None:
                            progress.advance()
                            yield target, {"audit": None, "error": error}
                            continue
                        inflight[pool.submit(worker, folder, target.label, options.static_rules)] = (n, target)
                    if not inflight:
                        break
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        n, target = inflight.pop(future)
                        try:
                            outcome = future.result()
                        except BrokenProcessPool:
                            broken = True
                            outcome = {"audit": None, "error": f"worker process died while analysing {target.label}"}
                        except Exception as exc:  # noqa: BLE001
                            outcome = {"audit": None, "error": f"internal error while analysing {target.label}: {type(exc).__name__}: {exc}"}
                        _cleanup(tmp, n)
                        progress.advance()
                        yield target, outcome
                if broken:
                    # Every audit still in flight died with the pool: report them
                    # and go on with a fresh pool for the rest.
                    for future, (n, target) in list(inflight.items()):
                        _cleanup(tmp, n)
                        progress.advance()
                        yield target, {"audit": None, "error": f"worker process died while analysing {target.label}"}
                    inflight.clear()
    finally:
        progress.stop()
        if blobs is not None:
            blobs.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _cleanup(tmp: Path, n: int) -> None:
    shutil.rmtree(tmp / str(n), ignore_errors=True)


class _NoProgress:
    def advance(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Progress:
    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True
        )
        self.task = self.progress.add_task("scan", total=total)
        self.progress.start()

    def advance(self) -> None:
        self.progress.advance(self.task)

    def stop(self) -> None:
        self.progress.stop()


def _progress(total: int, wanted: bool | None):
    if wanted is None:
        wanted = sys.stderr.isatty()
    return _Progress(total) if wanted else _NoProgress()
