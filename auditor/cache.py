"""The scan cache: one JSON file per audited record, keyed by content.

Layout under the cache directory (default ``$PGOLF_CACHE_DIR``, else
``$XDG_CACHE_HOME/pgolf``, else ``~/.cache/pgolf``)::

    audits-1/<k[:2]>/<k>.json   {"key": k, "tool": "...", "audit": {...}}
    refs-2.json                 {"<commit>:<base commit>": [[folder, [[path, blob, mode], ...], [[missing path, blob], ...]], ...]}

``k`` = sha256 of the tool fingerprint (version + a hash of the auditor's and
the rules' own source), the audit options, the record's ``<track>/<folder>``
names (the audit reads them) and its content key (the sorted (path, git blob
id) pairs of its files, so a folder hashes the same in a work tree and in git). ``audit`` is exactly the JSON report's audit object, so
a cached entry renders like a fresh one. The refs file remembers which record
folders a PR head adds (see ``auditor.scan.added_folders``), so a re-scan of
unchanged refs runs no git diff; its name carries the version of that rule.

Every read failure is a miss; writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from functools import lru_cache
from pathlib import Path

from auditor import __version__

AUDITS = "audits-1"
REFS = "refs-2.json"  # 2: only folders a ref adds a train_gpt.py to, with the blobs the repository lacks


def default_dir() -> Path:
    if os.environ.get("PGOLF_CACHE_DIR"):
        return Path(os.environ["PGOLF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgolf"


HASH_CHUNK = 1 << 20


def blob_id(data: bytes) -> str:
    """Git's blob id of some bytes (what `git hash-object` prints)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def file_blob_id(path: Path) -> str:
    """Git's blob id of a file, read in 1 MiB chunks: a 2 GB file costs one chunk of
    memory, not two copies of itself. The size is the one stat saw; a file that grows
    meanwhile is hashed up to it (a key, so any stable answer will do)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in must not block
    with open(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        size = st.st_size
        digest = hashlib.sha1(b"blob %d\0" % size)
        left = size
        while left > 0:
            chunk = fh.read(min(left, HASH_CHUNK))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def content_key(files: list[tuple[str, str]]) -> str:
    """Hash of a record's (relative path, blob id) pairs, order-free."""
    digest = hashlib.sha256(b"pgolf-record/1\0")
    for path, blob in sorted(files):
        digest.update(path.encode("utf-8", "surrogateescape") + b"\0" + blob.encode() + b"\n")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def tool_fingerprint() -> str:
    """Version plus a hash of the analysing code, so a changed rule invalidates."""
    import importlib.util

    digest = hashlib.sha256(f"pgolf-auditor {__version__}\0".encode())
    roots = [Path(__file__).parent]
    for package in ("rules", "reference_impl"):  # the core and static rules; the packer and byte tables
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            roots += [Path(p) for p in spec.submodule_search_locations]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts and path.is_file():
                digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
                digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def audit_key(content: str, options: str = "") -> str:
    # surrogateescape: a file or folder name that is not UTF-8 keeps its own bytes.
    return hashlib.sha256(f"{tool_fingerprint()}\0{options}\0{content}".encode("utf-8", "surrogateescape")).hexdigest()


class Cache:
    """Audit JSON by key. ``Cache(None)`` is a cache that never hits."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.writes = 0
        self._refs: dict | None = None
        self._refs_dirty = False

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / AUDITS / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        try:
            document = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict) or document.get("key") != key or not isinstance(document.get("audit"), dict):
            return None
        self.hits += 1
        return document["audit"]

    def put(self, key: str, audit: dict) -> None:
        if self.root is None:
            return
        _atomic_write(self._path(key), {"key": key, "tool": tool_fingerprint(), "audit": audit})
        self.writes += 1

    # PR ref resolution: commit + base commit -> folders and their files.
    def _ref_map(self) -> dict:
        if self._refs is None:
            self._refs = {}
            if self.root is not None:
                try:
                    loaded = json.loads((self.root / REFS).read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        self._refs = loaded
                except (OSError, ValueError):
                    pass
        return self._refs

    def get_ref(self, commit: str, base: str) -> list | None:
        value = self._ref_map().get(f"{commit}:{base}")
        if not isinstance(value, list) or not all(_ref_item(item) for item in value):
            return None  # absent, or written by something else: a miss
        return value

    def put_ref(self, commit: str, base: str, folders: list) -> None:
        if self.root is None:
            return
        self._ref_map()[f"{commit}:{base}"] = folders
        self._refs_dirty = True

    def flush(self) -> None:
        if self.root is not None and self._refs_dirty:
            _atomic_write(self.root / REFS, self._refs)
            self._refs_dirty = False


def _ref_item(item) -> bool:
    """[folder, [[path, blob, mode], ...], [[path, blob], ...]]"""
    return (
        isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
        and all(isinstance(b, list) and len(b) == 3 and all(isinstance(x, str) for x in b) for b in item[1])
        and all(isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m) for m in item[2])
    )


def _atomic_write(path: Path, document) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, separators=(",", ":"), allow_nan=False)
        os.replace(tmp, path)
    except (OSError, ValueError):
        # A read-only or full cache directory costs speed, never the scan.
        try:
            os.unlink(tmp)  # type: ignore[possibly-undefined]
        except (OSError, NameError):
            pass
