"""One line per finding, `path:line: severity CODE slug: message`, for editors and pre-commit:
the verdict line first, then illegal, warnings, and info as one line per code (every info
finding with ``verbose``)."""

from __future__ import annotations

from auditor.report.frames import artifact_path, printable
from auditor.report.order import HINT, counts_line, ordered


def render(audits, out, verbose: bool = False, quiet_when_clean: bool = False) -> None:
    """``quiet_when_clean``: a file with no finding prints nothing (lint, pre-commit's convention)."""
    for audit in audits:
        if quiet_when_clean and not audit.findings and not audit.error:
            continue
        out.write(printable(f"{audit.target}: verdict {audit.verdict.value} ({counts_line(audit)})") + "\n")
        if audit.error:
            out.write(printable(f"{audit.target}: error: {audit.error}") + "\n")
        order = ordered(audit, verbose)
        marks = getattr(audit, "suppressed", None) or {}
        for finding in order.shown + order.suppressed:
            reason = marks.get(finding.fingerprint)
            mark = f" [suppressed: {reason}]" if reason is not None else ""
            out.write(printable(f"{_where(audit, finding)}: {finding.severity.value} {finding.rule}: {finding.message}{mark}") + "\n")
        for c in order.collapsed:
            out.write(printable(f"{_where(audit, c.first)}: info {c.rule}: {c.count} finding(s), the first: "
                                f"{c.first.message} ({HINT})") + "\n")


def _where(audit, finding) -> str:
    loc = finding.location
    if loc is None:
        return audit.target
    where = artifact_path(audit, loc.file)
    if loc.line_start and loc.layer == "shipped":
        where += f":{loc.line_start}"
    elif loc.line_start:
        where += f" [{loc.layer}]:{loc.line_start}"
    return where
