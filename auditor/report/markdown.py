"""A report that fits a PR comment: the verdict, the seed table, and the findings in reading order."""

from __future__ import annotations

from auditor.report.frames import frame, printable
from auditor.report.order import HINT, counts_line, ordered

MAX_FRAME_LINES = 8
ICONS = {"FAIL": "❌", "WARN": "⚠️", "PASS": "✅", "ERROR": "💥"}


def render(audits, out, verbose: bool = False) -> None:
    for audit in audits:
        out.write(render_one(audit, verbose))


def render_one(audit, verbose: bool = False) -> str:
    """Verdict and counts, the seed table, the findings that decide the verdict with the
    lines they flag, warnings, then info as one line per code (all of it with ``verbose``)."""
    p = printable
    name = p(audit.record.display if audit.record else audit.target)
    parts = [f"### {ICONS[audit.verdict.value]} pgolf: `{name}`: **{audit.verdict.value}** ({counts_line(audit)})\n"]
    if audit.error:
        parts.append(f"\n> Could not be analysed: {p(audit.error)}\n")
    if audit.seeds:
        parts.append("\n| seed | log | headline | val_loss | val_bpb | train s | eval s | bytes |\n")
        parts.append("|---:|---|---|---:|---:|---:|---:|---:|\n")
        for r in audit.seeds:
            parts.append(
                f"| {_v(r.seed)} | `{p(r.log)}` | {p(_v(r.metric))} | {_f(r.val_loss, 6)} | {_f(r.val_bpb, 6)} "
                f"| {_f(r.train_s, 1)} | {_f(r.eval_s, 1)} | {_n(r.bytes_total)} |\n"
            )
    if not audit.findings:
        parts.append("\nNo findings.\n")
    order = ordered(audit, verbose)
    marks = getattr(audit, "suppressed", None) or {}
    for finding in order.shown + order.suppressed:
        parts.append(_finding(audit, finding, marks.get(finding.fingerprint)))
    if order.collapsed:
        parts.append(f"\n<details><summary>{order.hidden} info finding(s), one line per code ({HINT})</summary>\n\n")
        parts += [f"- {p(c.line())}\n" for c in order.collapsed]
        parts.append("</details>\n")
    parts.append("\n")
    return "".join(parts)


def _finding(audit, finding, reason: str | None) -> str:
    """The finding, the flagged lines themselves (no context: the comment stays short), the
    evidence that is not one of those lines, and the ruling."""
    p = printable
    where = f" at `{p(finding.location)}`" if finding.location else ""
    mark = f" _(suppressed: {p(reason)})_" if reason is not None else ""
    parts = [f"\n**{finding.severity.value}** `{finding.rule}`{where}: {p(finding.message)}{mark}\n"]
    shown: set[str] = set()
    code = frame(audit, finding, context=0)
    if code is not None:
        start, lines = code
        more = len(lines) - MAX_FRAME_LINES
        lines = lines[:MAX_FRAME_LINES]
        shown = {f"{start + i}: {line.strip()}" for i, line in enumerate(lines)}
        tail = f"\n    … | {more} more line(s)" if more > 0 else ""
        parts.append(f"```{_fence(finding.location.file)}\n"
                     + "\n".join(f"{start + i:>5} | {line}" for i, line in enumerate(lines)) + tail + "\n```\n")
    for item in finding.evidence:
        if " ".join(item.split()) not in {" ".join(s.split()) for s in shown}:
            parts.append(f"- {p(item)}\n")
    if finding.reference:
        parts.append(f"- ruling: {p(finding.reference)}\n")
    return "".join(parts)


def _fence(file: str) -> str:
    return {"py": "python", "json": "json"}.get(file.rsplit(".", 1)[-1], "text")


def _v(value) -> str:
    return "—" if value is None else str(value)


def _f(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _n(value) -> str:
    return "—" if value is None else f"{value:,}"
