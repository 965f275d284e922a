"""PG403: every log yields the evidence a verdict needs, or says what is missing."""

from __future__ import annotations

import math

from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity
from auditor.record import Record

LOG_EVIDENCE = CheckRule(
    "PG403",
    "log-evidence",
    "Each seed's log shows its seed, headline metric, training time and submission size.",
)


def diverged(run) -> bool:
    """The run's headline score is NaN or infinite: the run diverged, it has no score."""
    h = run.headline
    return h is not None and any(v is not None and not math.isfinite(v) for v in (h.val_bpb, h.val_loss))


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    for run in record.logs:
        if diverged(run):
            h = run.headline
            findings.append(
                LOG_EVIDENCE.finding(
                    Severity.ILLEGAL,
                    f"the run diverged: its headline {h.name} is val_bpb {h.val_bpb}, val_loss {h.val_loss} "
                    f"(line {h.line}); a NaN or infinite score is no score",
                    Location(run.log, h.line, h.line),
                    evidence=[f"{run.log}:{h.line}: {h.text}"],
                    key="diverged",
                )
            )
        for problem in run.problems:
            findings.append(LOG_EVIDENCE.finding(Severity.WARNING, problem, Location(run.log), key=f"problem:{problem}"))
        for missing in run.missing:
            findings.append(LOG_EVIDENCE.finding(Severity.WARNING, missing, Location(run.log), key=f"missing:{missing}"))
    return findings
