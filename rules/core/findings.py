"""The one currency every part of the auditor pays in: a Finding.

Checks, static rules, probes and the harness all return lists of Findings;
reports only ever render Findings and the verdict derived from them. Keeping a
single shape is what lets a reviewer read one list, sorted the same way, with
the same fingerprints, whatever produced it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Iterable


class Severity(str, Enum):
    ILLEGAL = "illegal"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"illegal": 0, "warning": 1, "info": 2}[self.value]


class Verdict(str, Enum):
    FAIL = "FAIL"
    WARN = "WARN"
    PASS = "PASS"
    ERROR = "ERROR"

    @property
    def exit_code(self) -> int:
        """Exit codes per DESIGN.md: 0 pass/warn, 1 fail, 3 analysis error."""
        return {"PASS": 0, "WARN": 0, "FAIL": 1, "ERROR": 3}[self.value]


@dataclass(frozen=True)
class Location:
    """Where a reviewer should look.

    ``layer`` names the decoded layer of a packed script ("shipped" for the
    file as committed, otherwise e.g. "shipped>b85>lzma"); lines are 1-based
    and refer to that layer's text.
    """

    file: str
    line_start: int | None = None
    line_end: int | None = None
    layer: str = "shipped"

    def __str__(self) -> str:
        where = self.file
        if self.layer != "shipped":
            where += f" [{self.layer}]"
        if self.line_start:
            where += f":{self.line_start}"
            if self.line_end and self.line_end != self.line_start:
                where += f"-{self.line_end}"
        return where


@dataclass(frozen=True)
class Finding:
    """One problem (or fact worth reporting) about a submission.

    ``key`` is what makes two findings "the same" across runs: it feeds the
    fingerprint and must not contain line numbers or measured values that move
    when unrelated code changes. By default the message is used.
    """

    code: str
    slug: str
    severity: Severity
    message: str
    location: Location | None = None
    evidence: tuple[str, ...] = ()
    confidence: str = "high"
    reference: str = ""
    key: str = ""

    @property
    def fingerprint(self) -> str:
        parts = [
            self.code,
            self.location.file if self.location else "",
            self.location.layer if self.location else "",
            self.key or self.message,
        ]
        # a file name that is not UTF-8 reaches here with surrogate escapes (os.listdir)
        return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]

    @property
    def rule(self) -> str:
        return f"{self.code} {self.slug}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["evidence"] = list(self.evidence)
        data["fingerprint"] = self.fingerprint
        return data


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then by code and place: the order reviewers read."""

    def order(f: Finding):
        loc = f.location
        return (
            f.severity.rank,
            f.code,
            loc.file if loc else "",
            loc.line_start or 0 if loc else 0,
            f.message,
        )

    return sorted(findings, key=order)


def verdict_of(findings: Iterable[Finding], error: str | None = None) -> Verdict:
    """FAIL on any illegal finding, WARN on any warning, else PASS.

    ``error`` set means the record could not be analysed at all; that wins,
    since a verdict on nothing would be a lie.
    """
    if error:
        return Verdict.ERROR
    severities = {f.severity for f in findings}
    if Severity.ILLEGAL in severities:
        return Verdict.FAIL
    if Severity.WARNING in severities:
        return Verdict.WARN
    return Verdict.PASS
