"""Load a submission from disk into one Record, without judging it.

Loading and checking are separate on purpose: loading collects every file and
every parse problem it meets (a malformed submission.json, an unreadable log)
and never stops early, so the checks can then report all of them at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from auditor.evidence import RunEvidence, looks_like_log, parse_log_file
from auditor.source import SourceUnit, follow_links, unpack_file

MAX_FILES = 2000
MAX_JSON_BYTES = 4 * 2**20
MAX_README_BYTES = 4 * 2**20
SCRIPT_NAME = "train_gpt.py"


class RecordError(Exception):
    """The path cannot be treated as a submission at all (a usage error)."""


@dataclass
class Record:
    root: Path
    name: str
    track: str | None
    files: list[str]
    code_only: bool = False  # a bare train_gpt.py was given, not a folder
    script: SourceUnit | None = None
    linked: list[SourceUnit] = field(default_factory=list)
    submission: dict | None = None
    submission_text: str | None = None  # as read, to point findings at a key's line
    submission_error: str | None = None
    readme: str | None = None
    logs: list[RunEvidence] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def display(self) -> str:
        return f"{self.track}/{self.name}" if self.track else self.name


def load(path: Path) -> Record:
    """Load a record folder, or a single script for code-only review."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file or folder")
    if path.is_file():
        return _load_script_only(path)
    if not path.is_dir():
        raise RecordError(f"{path}: not a regular file or folder")
    return _load_folder(path)


def _load_script_only(path: Path) -> Record:
    record = Record(root=path.parent, name=path.name, track=None, files=[path.name], code_only=True)
    record.script = unpack_file(path, root=path.parent)
    record.linked = follow_links(record.script, path.parent)
    return record


def _load_folder(root: Path) -> Record:
    files = list_files(root)
    if not files:  # nothing to judge: a wrong path, not a failing record
        raise RecordError(f"{root}: an empty folder (no files to check)")
    track = root.parent.name if root.parent.name.startswith("track_") else None
    record = Record(root=root, name=root.name, track=track, files=files)
    if len(files) >= MAX_FILES:
        record.problems.append(f"more than {MAX_FILES} files in the folder; only the first {MAX_FILES} were read")

    if SCRIPT_NAME in files:
        record.script = unpack_file(root / SCRIPT_NAME, root=root)
        record.linked = follow_links(record.script, root)

    if "submission.json" in files:
        record.submission_text, record.submission, record.submission_error = _read_json(root / "submission.json")

    readme = next((f for f in files if f.lower() == "readme.md"), None)
    if readme:
        record.readme = read_text(root / readme, MAX_README_BYTES)

    record.logs = [_parse_log(root, f) for f in files if looks_like_log(f)]
    return record


def _parse_log(root: Path, name: str) -> RunEvidence:
    """Parse a log, named by its path in the folder (logs/train_seed7.log)."""
    run = parse_log_file(root / name)
    run.log = name
    return run


_SKIP_DIRS = {".git", "__pycache__"}


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of regular files, sorted, skipping VCS and caches.

    Breadth first, so a crowded subfolder (10,000 logs) fills the cap only after
    every file of the folders above it, train_gpt.py and submission.json among
    them, has been listed. Each folder is read with one scandir, never whole trees.
    """
    found: list[str] = []
    level: list[tuple[Path, str]] = [(root, "")]
    while level and len(found) < MAX_FILES:
        below: list[tuple[Path, str]] = []
        for folder, prefix in level:
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name not in _SKIP_DIRS:
                            below.append((Path(entry.path), prefix + entry.name + "/"))
                    elif entry.is_file(follow_symlinks=False) and len(found) < MAX_FILES:
                        found.append(prefix + entry.name)
                except OSError:
                    continue
        level = below
    return sorted(found, key=lambda rel: rel.split("/"))


def _read_json(path: Path) -> tuple[str | None, dict | None, str | None]:
    """Read submission.json: (text, data, None), or a clear reason in place of data."""
    try:  # the size is checked before anything is read: a 2 GB file costs a stat
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            return None, None, f"{path.name} is {size:,} bytes, over the {MAX_JSON_BYTES:,}-byte limit"
        with path.open("rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        return None, None, f"cannot read {path.name}: {exc.strerror}"
    if len(raw) > MAX_JSON_BYTES:  # grew since the stat
        return None, None, f"{path.name} is over the {MAX_JSON_BYTES:,}-byte limit"
    if not raw.strip():
        return None, None, f"{path.name} is empty"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, None, f"{path.name} is not UTF-8 (byte {exc.start})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return text, None, f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return text, None, f"{path.name} is nested too deeply to read (arrays or objects inside each other)"
    except ValueError as exc:  # an integer past Python's int-string limit (4,300 digits)
        return text, None, f"{path.name} holds a number too long to read: {str(exc).split(';')[0]}"
    if not isinstance(data, dict):
        return text, None, f"{path.name} must hold a JSON object, found {type(data).__name__}"
    return text, data, None


def read_text(path: Path, limit: int) -> str | None:
    """The first `limit` bytes of a file as text (bad bytes replaced), or None."""
    try:
        with path.open("rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None
