"""What folder checks share: their codes' specs, log citations, the track's leniency."""

from __future__ import annotations

from auditor.challenge import NON_RECORD_TRACK
from rules.core import Location, RuleSpec, Severity


# A check's code, slug and ruling, shared by all its findings (``CHECK.finding(...)``):
# a registry spec. The folder checks, the PR gate, the probes and the harness
# declare their codes with it; `auditor.catalog` gathers them.
CheckRule = RuleSpec


def log_location(log: str, cited) -> Location:
    """Point at the log line a value came from (line 0 means the file name)."""
    line = getattr(cited, "line", 0) or None
    return Location(log, line, line)


def cite(log: str, cited) -> str:
    if cited is None:
        return ""
    if not getattr(cited, "line", 0):
        return f"{log}: (from the file name)"
    return f"{log}:{cited.line}: {cited.text}"


def leaderboard_severity(record, severity: Severity) -> tuple[Severity, str]:
    """A leaderboard-only rule's severity for this record, and what to add to the message:
    on the non-record track the 10-minute limits and the seed count are only noted."""
    if record.track == NON_RECORD_TRACK and severity != Severity.INFO:
        return Severity.INFO, " (non-record track: it does not apply there)"
    return severity, ""
