"""Synthetic git repositories for the scan, diff and action tests.

A repository has a `main` branch with some records, and PR heads under
`refs/pull/<n>/head`, made with plain git commands in a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.recordkit import RecordSpec, Run, write_record

ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_SYSTEM": os.devnull,
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def init(repo: Path) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# challenge\n")
    write_record(repo / "records", name="2026-04-01_merged")
    commit_all(repo, "main: one merged record")
    return repo


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def add_record(repo: Path, name: str, spec: RecordSpec | None = None) -> Path:
    return write_record(repo / "records", spec, name=name)


def pr(repo: Path, number: int, build, base: str = "main") -> str:
    """Branch off `base`, let `build(repo)` change files, commit, point refs/pull/N/head at it, go back."""
    git(repo, "checkout", "-q", "-b", f"pr{number}", base)
    build(repo)
    commit = commit_all(repo, f"PR {number}")
    git(repo, "update-ref", f"refs/pull/{number}/head", commit)
    git(repo, "checkout", "-q", "main")
    return commit


def failing_spec() -> RecordSpec:
    return RecordSpec(runs=[Run(1, eval_ms=650_000), Run(2)])

