"""What a run left on disk, and the machine it ran on.

Artifact bytes are measured, never read from the log: every file the run
created or changed in its run directory, other than logs, caches and the
harness's own files, is a model file. The counted artifact is the shipped
``train_gpt.py`` plus the *compressed* model files. A run that writes both a
raw checkpoint (a plain ``torch.save`` zip or pickle, e.g. the baseline's
``final_model.pt``) and a compressed one (``final_model.int8.ptz``) is scored
on the compressed one; the raw file is listed but not counted. When a run
wrote no compressed file, every model file counts (the conservative reading).
Sizes are apparent sizes (``st_size``): a sparse file counts in full.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from auditor.evidence import looks_like_log

HARNESS_FILES = {"train.log", "run.json", "run.json.tmp"}
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
COMPRESSED_SUFFIXES = (".ptz", ".zst", ".zstd", ".xz", ".lzma", ".br", ".gz", ".bz2", ".zlib", ".z", ".7z")
# torch.save writes a zip; older formats are a pickle. Neither is compressed.
RAW_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass
class ModelFile:
    path: str  # relative to the run directory, POSIX
    bytes: int
    counted: bool
    kind: str  # "compressed" | "raw checkpoint" | "other"

    def to_dict(self) -> dict:
        return asdict(self)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """rel path -> (size, mtime_ns) of every regular file under ``root``."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if not path.is_symlink() and path.is_file():
                found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(COMPRESSED_SUFFIXES):
        return "compressed"
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return "other"
    if head.startswith(RAW_MAGICS):
        return "raw checkpoint"
    if head.startswith((b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"\x1f\x8b", b"BZh")):
        return "compressed"
    return "other"


def _is_log(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name in HARNESS_FILES or looks_like_log(name) or name.endswith((".log", ".txt", ".out", ".err"))


def model_files(root: Path, before: dict[str, tuple[int, int]]) -> list[ModelFile]:
    """Files the run created or changed under ``root`` that are not logs."""
    after = snapshot(root)
    files: list[ModelFile] = []
    for rel, (size, mtime) in sorted(after.items()):
        if before.get(rel) == (size, mtime) or _is_log(rel) or rel.endswith((".pyc", ".tmp")):
            continue
        files.append(ModelFile(rel, size, True, _kind(root / rel)))
    if any(f.kind == "compressed" for f in files):
        for f in files:
            f.counted = f.kind != "raw checkpoint"
    return files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_hashes(record_dir: Path) -> dict[str, dict]:
    """sha256 and size of every file that ships in the record folder."""
    out: dict[str, dict] = {}
    for rel in sorted(snapshot(record_dir)):
        path = record_dir / rel
        try:
            out[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        except OSError as exc:
            out[rel] = {"error": exc.strerror or str(exc)}
    return out


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 10.0) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


_TORCH_CACHE: dict | None = None


def torch_info() -> dict:
    """torch and CUDA versions; torch is imported here only, and may be absent."""
    global _TORCH_CACHE
    if _TORCH_CACHE is None:
        try:
            import torch  # noqa: PLC0415 - heavy, only when a run is measured

            cuda = torch.version.cuda
            _TORCH_CACHE = {
                "torch": torch.__version__,
                "cuda": cuda,
                "cudnn": torch.backends.cudnn.version() if cuda else None,
                "cuda_available": bool(torch.cuda.is_available()),
            }
        except Exception as exc:  # absent or broken: say so, do not fail the run
            _TORCH_CACHE = {"torch": None, "error": f"{type(exc).__name__}: {exc}"}
    return dict(_TORCH_CACHE)


def gpu_names() -> list[str]:
    """One entry per GPU from ``nvidia-smi -L`` (empty without NVIDIA tooling)."""
    if shutil.which("nvidia-smi") is None:
        return []
    text = _run(["nvidia-smi", "-L"])
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def git_head(path: Path) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``path``, if any."""
    if shutil.which("git") is None:
        return None
    return _run(["git", "rev-parse", "HEAD"], cwd=path)


def environment(record_dir: Path) -> dict:
    import sys

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **torch_info(),
        "gpus": gpu_names(),
        "record_git_head": git_head(record_dir),
        "record_git_dirty": _dirty(record_dir),
    }


def _dirty(path: Path) -> bool | None:
    if shutil.which("git") is None:
        return None
    text = _run(["git", "status", "--porcelain", "--", "."], cwd=path)
    return None if text is None else bool(text)
