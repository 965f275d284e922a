"""PG414: the shipped code could be decoded and read in full.

A layer we could not decode is code no rule has looked at: the verdict must
say so instead of reading the script as clean (the old classifier's mistake).
"""

from __future__ import annotations

from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity
from auditor.record import Record
from auditor.source import DECODE_FAILURES, Limits

UNREADABLE_CODE = CheckRule(
    "PG414",
    "unreadable-code",
    "Every packed layer of the script decodes and parses, and no layer is too large to analyse "
    f"(over {Limits().max_analysed_chars:,} characters or {Limits().max_analysed_lines:,} lines), "
    "so the rules saw all the code.",
    "RULEBOOK.md: lessons from earlier reviewers (packed scripts read as clean)",
    severity=Severity.WARNING,
)

# Problems that hide code from the rules are warnings; a plain syntax error in
# a decodable literal that is never executed is only worth knowing.
HIDING = DECODE_FAILURES | {
    "too-large", "binary", "non-utf8", "syntax-error", "unresolved", "unreadable", "internal-error",
}


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    for unit in [record.script, *record.linked] if record.script else []:
        for problem in unit.problems:
            severity = Severity.WARNING if problem.kind in HIDING else Severity.INFO
            findings.append(
                UNREADABLE_CODE.finding(
                    severity,
                    problem.message,
                    Location(unit.name, problem.line, problem.line, problem.layer),
                    key=f"{problem.kind}:{problem.layer}",
                )
            )
    return findings
