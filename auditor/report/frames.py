"""Look up the text a finding points at, in its decoded layer or its log."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from rules.core import Finding
from auditor.record import read_text

MAX_FRAME_FILE_BYTES = 16 * 2**20

# C0 controls but tab, DEL, C1 controls, and the bidi overrides and line separators
# that make a terminal or a PR page show something other than the bytes.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_one(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value) -> str:
    """`str(value)` with every control character written as an escape (ESC as `\\x1b`),
    so file names, log lines and source lines cannot drive the reader's terminal."""
    text = str(value)
    return _UNPRINTABLE.sub(_escape_one, text) if _UNPRINTABLE.search(text) else text


def frame(audit, finding: Finding, context: int = 2) -> tuple[int, list[str]] | None:
    """(first line number, lines) around the finding, or None if not found."""
    loc = finding.location
    if loc is None or not loc.line_start or audit.record is None:
        return None
    text = _layer_text(audit.record, loc.file, loc.layer)
    if text is None:
        text = _file_text(audit.record.root / loc.file)
    if text is None:
        return None
    lines = text.split("\n")
    start = max(1, loc.line_start - context)
    end = min(len(lines), (loc.line_end or loc.line_start) + context)
    if start > len(lines):
        return None
    return start, [printable(line[:240]) for line in lines[start - 1 : end]]


def _layer_text(record, file: str, layer: str) -> str | None:
    for unit in [record.script, *record.linked] if record.script else []:
        if unit.name == file or (unit.path and unit.path.name == file):
            for candidate in unit.layers:
                if candidate.name == layer:
                    return candidate.text
    return None


def _file_text(path: Path) -> str | None:
    """A file a finding cites, read once per render however many findings cite it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int) -> str | None:
    return read_text(Path(path), MAX_FRAME_FILE_BYTES)


def artifact_path(audit, file: str) -> str:
    """Path of a finding's file as a user (or GitHub) would open it."""
    if audit.record is None:
        return file
    path = audit.record.root / file
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()
