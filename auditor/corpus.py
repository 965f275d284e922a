"""Find record folders in a challenge checkout (work tree or bare git dir).

Shared by the corpus scripts and benchmarks so they all mean the same thing by
"every folder under records/".
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class CorpusError(Exception):
    """The path holds no records and is not a git repository."""


def records_dir(root: Path) -> Path | None:
    """`root/records`, or root itself when it directly holds track_* folders."""
    if (root / "records").is_dir():
        return root / "records"
    if root.is_dir() and any(p.is_dir() and p.name.startswith("track_") for p in root.iterdir()):
        return root
    return None


def record_folders(records: Path, track: str | None = None) -> list[Path]:
    """<track>/<folder>/ directories under a records directory, sorted."""
    tracks = [records / track] if track else sorted(p for p in records.iterdir() if p.is_dir())
    return [folder for t in tracks if t.is_dir() for folder in sorted(t.iterdir()) if folder.is_dir()]


@contextmanager
def checkout(path: Path, ref: str = "HEAD") -> Iterator[Path]:
    """Yield the records directory for `path`.

    A work tree is used as it is; a bare git directory (such as a mirror with
    no work tree) gets `records/` of `ref` extracted into a temporary folder
    with `git archive`, so nothing is checked out in place.
    """
    path = Path(path)
    found = records_dir(path)
    if found is not None:
        yield found
        return
    with tempfile.TemporaryDirectory(prefix="pgolf-corpus-") as tmp:
        archive = Path(tmp) / "records.tar"
        with archive.open("wb") as fh:
            done = subprocess.run(["git", "-C", str(path), "archive", ref, "records"], stdout=fh, stderr=subprocess.PIPE)
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise CorpusError(f"{path}: no records/ folder and git archive failed: {reason[-1] if reason else done.returncode}")
        with tarfile.open(archive) as tar:
            _extract(tar, Path(tmp))
        yield Path(tmp) / "records"


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract with the "data" filter; Pythons before 3.10.12/3.11.4 lack it,
    so there refuse what it would refuse: links, absolute paths, `..`."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():
        if member.issym() or member.islnk() or Path(member.name).is_absolute() or ".." in Path(member.name).parts:
            raise CorpusError(f"refusing to extract {member.name!r} from the git archive")
    tar.extractall(dest)
