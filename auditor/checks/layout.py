"""PG401: the files every record folder must hold."""

from __future__ import annotations

from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity
from auditor.record import SCRIPT_NAME, Record

REQUIRED_FILES = CheckRule(
    "PG401",
    "required-files",
    "A record folder holds README.md, submission.json, train_gpt.py and one train log per seed.",
)
FOLDER_PROBLEM = CheckRule("PG417", "folder-problem", "The folder could be read only in part.", severity=Severity.WARNING)


def check(record: Record) -> list[Finding]:
    findings = [
        FOLDER_PROBLEM.finding(Severity.WARNING, problem) for problem in record.problems
    ]
    lower = {f.lower() for f in record.files}
    for name in ("README.md", "submission.json", SCRIPT_NAME):
        if name.lower() not in lower:
            findings.append(
                REQUIRED_FILES.finding(Severity.ILLEGAL, f"missing {name}", Location(name), key=name)
            )
    if not record.logs:
        findings.append(
            REQUIRED_FILES.finding(
                Severity.ILLEGAL,
                "no train log found (expected one *.log or train*.txt per seed)",
                None,
                key="logs",
            )
        )
    for name in record.files:
        path = record.root / name
        if name in (SCRIPT_NAME, "submission.json", "README.md") and path.stat().st_size == 0:
            findings.append(REQUIRED_FILES.finding(Severity.ILLEGAL, f"{name} is empty", Location(name), key=f"empty:{name}"))
    return findings
