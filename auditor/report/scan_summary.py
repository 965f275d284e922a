"""The `pgolf scan` summary: one row per record, totals per verdict and per rule.

Rows are built from the JSON audit objects the scan holds (fresh or cached
alike), never from live Record objects, so a cached entry renders exactly as
it did when it was analysed. Renderers take ``(result, out)``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from typing import Callable

from auditor import __version__
from auditor.report.frames import printable

SCHEMA = "pgolf-scan/1"
VERDICTS = ("FAIL", "WARN", "PASS", "ERROR")
COLUMNS = ("ref", "record", "verdict", "rules", "val_bpb_mean", "bytes_max", "seeds", "error")


def row(entry) -> dict:
    """What the summary says about one record."""
    audit = entry.audit or {}
    findings = audit.get("findings") or []
    fired = sorted({f["code"] for f in findings if f.get("severity") in ("illegal", "warning") and not f.get("suppressed")})
    seeds = audit.get("seeds") or []
    bpbs = [s["val_bpb"] for s in seeds if isinstance(s.get("val_bpb"), (int, float))]
    sizes = [s["bytes_total"] for s in seeds if isinstance(s.get("bytes_total"), int)]
    distinct = {s.get("seed") for s in seeds if s.get("seed") is not None}
    return {
        "ref": entry.ref,
        "commit": entry.commit,
        "record": entry.record,
        "verdict": entry.verdict,
        "rules": fired,
        "val_bpb_mean": round(sum(bpbs) / len(bpbs), 8) if bpbs else None,
        "bytes_max": max(sizes) if sizes else None,
        "seeds": len(distinct),
        "error": entry.internal_error,
        "unread": list(getattr(entry, "unread", []) or []),
    }


def totals(result) -> dict:
    rows = [row(e) for e in result.entries]
    verdicts = Counter(r["verdict"] for r in rows)
    rules = Counter(code for r in rows for code in r["rules"])
    return {
        "records": len(rows),
        "verdicts": {v: verdicts.get(v, 0) for v in VERDICTS},
        "rules": dict(sorted(rules.items())),
        "internal_errors": result.internal_errors,
    }


def stats(result) -> dict:
    return {
        "refs": result.refs,
        "refs_without_records": result.refs_without_records,
        "ref_errors": list(result.ref_errors),
        "analysed": result.analysed,
        "cached": result.cached,
        "shared": getattr(result, "shared", 0),
        "unread_files": sum(len(getattr(e, "unread", []) or []) for e in result.entries),
        "elapsed_s": round(result.elapsed_s, 3),
    }


def render_json(result, out) -> None:
    entries = []
    for entry in result.entries:
        item = row(entry)
        item["key"] = entry.key
        item["audit"] = entry.audit
        entries.append(item)
    document = {
        "schema": SCHEMA,
        "tool": {"name": "pgolf-auditor", "version": __version__},
        "source": result.source,
        "base": result.base,
        "entries": entries,
        "totals": totals(result),
        "stats": stats(result),
    }
    out.write(json.dumps(document, indent=2) + "\n")


def render_csv(result, out) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in result.entries:
        r = row(entry)
        writer.writerow(
            [r["ref"], r["record"], r["verdict"], " ".join(r["rules"]), _n(r["val_bpb_mean"]), _n(r["bytes_max"]), r["seeds"], r["error"] or ""]
        )


def render_markdown(result, out) -> None:
    t = totals(result)
    out.write(f"### pgolf scan: {t['records']} record(s)\n\n")
    out.write("| ref | record | verdict | rules fired | val_bpb mean | bytes | seeds |\n|---|---|---|---|---:|---:|---:|\n")
    for entry in result.entries:
        r = row(entry)
        out.write(
            f"| {_md(r['ref'] or '—')} | `{_md(r['record'])}` | **{r['verdict']}** | {' '.join(r['rules']) or '—'} "
            f"| {_f(r['val_bpb_mean'])} | {_b(r['bytes_max'])} | {r['seeds']} |\n"
        )
    out.write("\n| verdict | records |\n|---|---:|\n")
    for verdict, count in t["verdicts"].items():
        out.write(f"| {verdict} | {count} |\n")
    if t["rules"]:
        out.write("\n| rule | records |\n|---|---:|\n")
        for code, count in t["rules"].items():
            out.write(f"| {code} | {count} |\n")
    out.write(f"\n{_footer(result)}\n")
    errors = [(e.ref, e.record, e.internal_error) for e in result.entries if e.internal_error]
    for ref_error in result.ref_errors:
        errors.append(("", "", ref_error))
    if errors:
        out.write("\n**Internal errors**\n\n")
        for ref, record, message in errors:
            where = f"`{_md(ref)}:{_md(record)}`: " if record else ""
            out.write(f"- {where}{_md(message.splitlines()[0])}\n")


def render_rich(result, out) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from auditor.report.console import VERDICT_STYLES

    console = Console(file=out, width=160 if not getattr(out, "isatty", lambda: False)() else None)
    table = Table(show_edge=False, header_style="bold", title="pgolf scan")
    for column, justify in (("ref", "left"), ("record", "left"), ("verdict", "center"), ("rules fired", "left"),
                            ("val_bpb mean", "right"), ("bytes", "right"), ("seeds", "right")):
        table.add_column(column, justify=justify)
    for entry in result.entries:
        r = row(entry)
        table.add_row(
            Text(printable(r["ref"] or "—")), Text(printable(r["record"])), f"[{VERDICT_STYLES[r['verdict']]}] {r['verdict']} [/]", " ".join(r["rules"]) or "—",
            _f(r["val_bpb_mean"]), _b(r["bytes_max"]), str(r["seeds"]),
        )
    console.print(table)
    t = totals(result)
    summary = Table("verdict", "records", show_edge=False, header_style="bold")
    for verdict, count in t["verdicts"].items():
        summary.add_row(verdict, str(count))
    console.print(summary)
    if t["rules"]:
        rules = Table("rule", "records", show_edge=False, header_style="bold")
        for code, count in t["rules"].items():
            rules.add_row(code, str(count))
        console.print(rules)
    for entry in result.entries:
        if entry.internal_error:
            where = f"{entry.ref + ':' if entry.ref else ''}{entry.record}"
            console.print(Text.assemble(("error", "magenta"), printable(f" {where}: {entry.internal_error.splitlines()[0]}")), highlight=False)
    for ref_error in result.ref_errors:
        console.print(Text.assemble(("error", "magenta"), printable(f" {ref_error}")), highlight=False)
    console.print(_footer(result), highlight=False)


def _footer(result) -> str:
    refs = f" from {result.refs} ref(s) ({result.refs_without_records} adding no record)" if result.refs else ""
    shared = getattr(result, "shared", 0)
    shared = f" ({shared} more with the same content)" if shared else ""
    unread = sum(len(getattr(e, "unread", []) or []) for e in result.entries)
    unread = f", {unread} file(s) absent from the repository and audited without" if unread else ""
    return (
        f"{len(result.entries)} record(s){refs}: {result.analysed} analysed{shared}, {result.cached} from cache, "
        f"{result.internal_errors} internal error(s){unread}, {result.elapsed_s:.2f} s"
    )


def _f(value) -> str:
    return "—" if value is None else f"{value:.5f}"


def _b(value) -> str:
    return "—" if value is None else f"{value:,}"


def _n(value) -> str:
    return "" if value is None else str(value)


def _md(text: str) -> str:
    return printable(text).replace("|", "\\|")


SCAN_FORMATS: dict[str, Callable] = {
    "rich": render_rich,
    "csv": render_csv,
    "json": render_json,
    "markdown": render_markdown,
}
