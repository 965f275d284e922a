"""The order a reviewer reads a report in, shared by every human-facing format.

The verdict first, then the findings that decide it (illegal), then warnings;
info findings are collapsed to one line per code with a count unless the
reader asks for all of them (``-v``; JSON and SARIF always carry all).
Suppressed findings come last, still shown with their reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rules.core import Finding, Severity


@dataclass(frozen=True)
class Collapsed:
    """Info findings of one code, summarised: the count and the first message."""

    code: str
    slug: str
    count: int
    first: Finding

    @property
    def rule(self) -> str:
        return f"{self.code} {self.slug}"

    def line(self, width: int = 100) -> str:
        message = self.first.message if len(self.first.message) <= width else self.first.message[: width - 1] + "…"
        more = f" (and {self.count - 1} more)" if self.count > 1 else ""
        return f"{self.count} × {self.rule}: {message}{more}"


@dataclass
class Ordered:
    shown: list[Finding] = field(default_factory=list)  # illegal, warning, then info when verbose
    collapsed: list[Collapsed] = field(default_factory=list)  # info per code, when not verbose
    suppressed: list[Finding] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        return sum(c.count for c in self.collapsed)


HINT = "-v or -f json for all"


def ordered(audit, verbose: bool = False) -> Ordered:
    """Split an audit's (already sorted) findings in reading order."""
    marks = getattr(audit, "suppressed", None) or {}
    out = Ordered()
    info: list[Finding] = []
    for finding in audit.findings:
        if finding.fingerprint in marks:
            out.suppressed.append(finding)
        elif finding.severity == Severity.INFO and not verbose:
            info.append(finding)
        else:
            out.shown.append(finding)
    out.shown.sort(key=lambda f: f.severity.rank)  # stable: keeps the code/place order within a severity
    counts = Counter(f.code for f in info)
    firsts: dict[str, Finding] = {}
    for finding in info:
        firsts.setdefault(finding.code, finding)
    out.collapsed = [Collapsed(code, firsts[code].slug, counts[code], firsts[code]) for code in sorted(firsts)]
    return out


def counts_line(audit) -> str:
    """`2 illegal, 1 warning, 19 info`: what the verdict rests on, in one line."""
    marks = getattr(audit, "suppressed", None) or {}
    counts = Counter(f.severity.value for f in audit.findings if f.fingerprint not in marks)
    line = ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in Severity)
    if marks:
        line += f"; {sum(1 for f in audit.findings if f.fingerprint in marks)} suppressed"
    return line
