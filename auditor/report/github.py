"""GitHub Actions workflow commands: annotations on the PR's files."""

from __future__ import annotations

from auditor.report.frames import artifact_path, printable
from auditor.report.order import HINT, counts_line, ordered

COMMANDS = {"illegal": "error", "warning": "warning", "info": "notice"}


def render(audits, out, verbose: bool = False) -> None:
    for audit in audits:
        # the verdict first, as in every human-facing format (the job log reads top down)
        name = audit.record.display if audit.record else audit.target
        verdict = f"{name}: {audit.verdict.value} ({counts_line(audit)})"
        out.write(f"::notice title=pgolf verdict::{_escape_data(verdict)}\n")
        order = ordered(audit, verbose)
        for finding in order.shown + order.suppressed:
            props = [f"title={_escape_prop(finding.rule)}"]
            loc = finding.location
            if loc is not None:
                props.insert(0, f"file={_escape_prop(artifact_path(audit, loc.file))}")
                if loc.line_start and loc.layer == "shipped":
                    props.insert(1, f"line={loc.line_start}")
            message = finding.message
            if loc is not None and loc.layer != "shipped":
                message += f" (decoded layer {loc.layer}, line {loc.line_start})"
            command = COMMANDS[finding.severity.value]
            reason = (getattr(audit, "suppressed", None) or {}).get(finding.fingerprint)
            if reason is not None:
                command, message = "notice", f"[suppressed: {reason}] {message}"
            out.write(f"::{command} {','.join(props)}::{_escape_data(message)}\n")
        for c in order.collapsed:  # one notice per info code, where its first finding is
            loc = c.first.location
            place = f"file={_escape_prop(artifact_path(audit, loc.file))}," if loc is not None else ""
            out.write(f"::notice {place}title={_escape_prop(c.rule)}::{_escape_data(c.line() + f' ({HINT})')}\n")


def _escape_data(text: str) -> str:
    """GitHub's own escapes for % and newlines, then every other control character escaped."""
    return printable(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
