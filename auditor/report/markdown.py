"""A report that fits a PR comment: verdict, seed table, findings with evidence."""

from __future__ import annotations

from auditor.report.frames import frame, printable

ICONS = {"FAIL": "❌", "WARN": "⚠️", "PASS": "✅", "ERROR": "💥"}


def render(audits, out) -> None:
    for audit in audits:
        out.write(render_one(audit))


def render_one(audit) -> str:
    p = printable
    name = p(audit.record.display if audit.record else audit.target)
    parts = [f"### {ICONS[audit.verdict.value]} pgolf: `{name}`: **{audit.verdict.value}**\n"]
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
    for finding in audit.findings:
        where = f" at `{p(finding.location)}`" if finding.location else ""
        reason = (getattr(audit, "suppressed", None) or {}).get(finding.fingerprint)
        mark = f" _(suppressed: {p(reason)})_" if reason is not None else ""
        parts.append(f"\n**{finding.severity.value}** `{finding.rule}`{where}: {p(finding.message)}{mark}\n")
        code = frame(audit, finding)
        if code is not None:
            start, lines = code
            parts.append(f"\n```{_fence(finding.location.file)}\n" + "\n".join(f"{start + i:>5} | {line}" for i, line in enumerate(lines)) + "\n```\n")
        for item in finding.evidence:
            parts.append(f"- {p(item)}\n")
        if finding.reference:
            parts.append(f"- ruling: {p(finding.reference)}\n")
    parts.append("\n")
    return "".join(parts)


def _fence(file: str) -> str:
    return {"py": "python", "json": "json"}.get(file.rsplit(".", 1)[-1], "text")


def _v(value) -> str:
    return "—" if value is None else str(value)


def _f(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _n(value) -> str:
    return "—" if value is None else f"{value:,}"
