"""One line per finding, `path:line: severity CODE slug: message`, for editors and pre-commit."""

from __future__ import annotations

from auditor.report.frames import artifact_path, printable


def render(audits, out) -> None:
    for audit in audits:
        if audit.error:
            out.write(printable(f"{audit.target}: error: {audit.error}") + "\n")
        for finding in audit.findings:
            loc = finding.location
            where = audit.target
            if loc is not None:
                where = artifact_path(audit, loc.file)
                if loc.line_start and loc.layer == "shipped":
                    where += f":{loc.line_start}"
                elif loc.line_start:
                    where += f" [{loc.layer}]:{loc.line_start}"
            reason = (getattr(audit, "suppressed", None) or {}).get(finding.fingerprint)
            mark = f" [suppressed: {reason}]" if reason is not None else ""
            out.write(printable(f"{where}: {finding.severity.value} {finding.rule}: {finding.message}{mark}") + "\n")
