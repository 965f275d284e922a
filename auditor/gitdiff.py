"""Git plumbing shared by `pgolf scan` and `pgolf check --diff`, and the PR gate.

Everything goes through `git` subprocesses on object ids: nothing is checked
out, nothing in the repository is modified.

The gate (`pgolf check --diff BASE`): a record PR adds exactly one folder
`records/<track>/<folder>/` and nothing else (RULEBOOK.md, evidence rules).
`diff_scope` reads the diff from the merge base of BASE and HEAD to HEAD,
`scope_findings` turns what falls outside that shape into PG430–PG432.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity

REFERENCE = "RULEBOOK.md: evidence rules (one PR adds exactly one records folder)"

DIFF_SCOPE = CheckRule(
    "PG430", "diff-scope", "a PR changes files outside the records folder it adds", REFERENCE
)
DIFF_FOLDERS = CheckRule(
    "PG431", "diff-one-folder", "a PR adds exactly one records/<track>/<folder>/, not zero or several", REFERENCE
)
DIFF_EXISTING = CheckRule(
    "PG432", "diff-existing-folder", "the PR's records folder already exists on the base: it edits a record", REFERENCE,
    severity=Severity.WARNING,
)
GATE_RULES = (DIFF_SCOPE, DIFF_FOLDERS, DIFF_EXISTING)

MAX_OUTSIDE_FINDINGS = 50
STATUS_WORDS = {"A": "added", "M": "modified", "D": "deleted", "T": "type changed"}


class GitError(Exception):
    """A git command failed (not a repository, unknown ref, no merge base)."""

    def __init__(self, message: str, returncode: int | None = None):
        super().__init__(message)
        self.returncode = returncode


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])}: {reason[-1] if reason else f'exit {done.returncode}'}", done.returncode)
    return done.stdout.decode("utf-8", errors="surrogateescape")


def is_git_repo(path: Path) -> bool:
    try:
        git(path, "rev-parse", "--git-dir")
        return True
    except (GitError, OSError):
        return False


def rev_parse(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()


def merge_base(repo: Path, a: str, b: str) -> str:
    return git(repo, "merge-base", a, b).strip()


def fork_point(repo: Path, base: str, head: str) -> str:
    """What a PR head's changes are read against: its merge base with `base`,
    or `base` itself when the two histories share no commit (a PR pushed from
    an unrelated or re-initialised repository), so the diff is then the plain
    two-tree diff base..head."""
    try:
        return merge_base(repo, base, head)
    except GitError as exc:
        # `git merge-base` exits 1, saying nothing, when there is no common ancestor.
        if exc.returncode == 1:
            return base
        raise


@dataclass(frozen=True)
class Change:
    status: str  # A, M, D, T (renames are split into D + A)
    path: str


def changes(repo: Path, old: str, new: str, *paths: str) -> list[Change]:
    """Files changed from commit `old` to commit `new` (two-dot, renames split)."""
    out = git(repo, "diff", "--name-status", "--no-renames", "-z", old, new, "--", *paths)
    parts = out.split("\0")
    result = []
    for status, path in zip(parts[0::2], parts[1::2]):
        if status and path:
            result.append(Change(status[0], path))
    return result


def record_folder_of(path: str) -> str | None:
    """`records/<track>/<folder>` for a file inside a record folder, else None."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[0] == "records":
        return "/".join(parts[:3])
    return None


def tree_has(repo: Path, commit: str, path: str) -> bool:
    return bool(git(repo, "ls-tree", commit, "--", path).strip())


@dataclass
class DiffScope:
    repo: Path
    base: str  # as the user wrote it
    merge_base: str
    head: str
    folders: dict[str, list[Change]] = field(default_factory=dict)
    outside: list[Change] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)  # folders already on the merge base
    deleted: set[str] = field(default_factory=set)  # folders gone at HEAD

    @property
    def checked(self) -> list[str]:
        """Folders to audit: every touched folder still there at HEAD."""
        return sorted(f for f in self.folders if f not in self.deleted)


def diff_scope(repo: Path, base: str, head: str = "HEAD") -> DiffScope:
    """What the diff BASE...HEAD changes, grouped by records folder."""
    top = Path(git(repo, "rev-parse", "--show-toplevel").strip())
    try:
        base_commit = rev_parse(top, base)
    except GitError:
        raise GitError(f"{base!r} is not a commit in {top} (fetch it, e.g. actions/checkout with fetch-depth: 0)") from None
    head_commit = rev_parse(top, head)
    mb = merge_base(top, base_commit, head_commit)
    scope = DiffScope(repo=top, base=base, merge_base=mb, head=head_commit)
    for change in changes(top, mb, head_commit):
        folder = record_folder_of(change.path)
        if folder is None:
            scope.outside.append(change)
        else:
            scope.folders.setdefault(folder, []).append(change)
    for folder in scope.folders:
        if tree_has(top, mb, folder):
            scope.existing.add(folder)
        if not tree_has(top, head_commit, folder):
            scope.deleted.add(folder)
    return scope


def scope_findings(scope: DiffScope) -> list[Finding]:
    """PG430–PG432 for a diff that is not "one new records folder, nothing else"."""
    span = f"{scope.base}...HEAD"
    findings: list[Finding] = []
    folders = sorted(scope.folders)
    if not folders:
        findings.append(
            DIFF_FOLDERS.finding(
                Severity.ILLEGAL,
                f"the diff {span} adds no records folder (records/<track>/<folder>/)",
                evidence=[f"{len(scope.outside)} file(s) changed, none inside a records folder"],
                key="no-folder",
            )
        )
    elif len(folders) > 1:
        evidence = []
        for folder in folders:
            state = "deleted" if folder in scope.deleted else "existing, edited" if folder in scope.existing else "new"
            evidence.append(f"{folder}/ ({state}, {len(scope.folders[folder])} file(s))")
        findings.append(
            DIFF_FOLDERS.finding(
                Severity.ILLEGAL,
                f"the diff {span} touches {len(folders)} records folders; a PR adds exactly one",
                evidence=evidence,
                key="several:" + ",".join(folders),
            )
        )
    else:
        folder = folders[0]
        if folder in scope.deleted:
            findings.append(
                DIFF_FOLDERS.finding(
                    Severity.ILLEGAL, f"the diff {span} deletes {folder}/ and adds no records folder", key="deleted:" + folder
                )
            )
        elif folder in scope.existing:
            findings.append(
                DIFF_EXISTING.finding(
                    Severity.WARNING,
                    f"{folder}/ already exists on the base: the PR edits an existing record instead of adding one",
                    evidence=[f"{c.path} ({STATUS_WORDS.get(c.status, c.status)})" for c in scope.folders[folder][:20]],
                    key="existing:" + folder,
                )
            )
    target = f" {folders[0]}/" if len(folders) == 1 else " a records folder"
    for change in scope.outside[:MAX_OUTSIDE_FINDINGS]:
        findings.append(
            DIFF_SCOPE.finding(
                Severity.ILLEGAL,
                f"{change.path} is {STATUS_WORDS.get(change.status, change.status)} outside{target}",
                location=Location(change.path),
                key=change.path,
            )
        )
    if len(scope.outside) > MAX_OUTSIDE_FINDINGS:
        rest = scope.outside[MAX_OUTSIDE_FINDINGS:]
        findings.append(
            DIFF_SCOPE.finding(
                Severity.ILLEGAL,
                f"{len(rest)} more file(s) changed outside{target}",
                evidence=[c.path for c in rest[:20]],
                key="more-outside",
            )
        )
    return findings
