"""PG403: every log yields the evidence a verdict needs, or says what is missing."""

from __future__ import annotations

from auditor.checks.base import CheckRule
from auditor.findings import Finding, Location, Severity
from auditor.record import Record

LOG_EVIDENCE = CheckRule(
    "PG403",
    "log-evidence",
    "Each seed's log shows its seed, headline metric, training time and submission size.",
)


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    for run in record.logs:
        for problem in run.problems:
            findings.append(LOG_EVIDENCE.finding(Severity.WARNING, problem, Location(run.log), key=f"problem:{problem}"))
        for missing in run.missing:
            findings.append(LOG_EVIDENCE.finding(Severity.WARNING, missing, Location(run.log), key=f"missing:{missing}"))
    return findings
