"""Rich console report: a tree per record, a seed table, findings with code frames."""

from __future__ import annotations

from rich.console import Console, Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from auditor.report.frames import frame, printable as p
from auditor.report.order import HINT, counts_line, ordered

MAX_FRAME_LINES = 12  # a long flagged range shows its start; the location names the rest
STYLES = {"illegal": "bold red", "warning": "yellow", "info": "cyan"}
VERDICT_STYLES = {"FAIL": "bold white on red", "WARN": "bold black on yellow", "PASS": "bold white on green", "ERROR": "bold white on magenta"}


def render(audits, out, verbose: bool = False) -> None:
    console = Console(file=out, width=120 if not getattr(out, "isatty", lambda: False)() else None)
    for audit in audits:
        console.print(render_one(audit, verbose))
        console.print()


def render_one(audit, verbose: bool = False) -> Group:
    name = audit.record.display if audit.record else audit.target
    title = Text.assemble((f" {audit.verdict.value} ", VERDICT_STYLES[audit.verdict.value]), "  ", (p(name), "bold"))
    tree = Tree(title)
    if audit.error:
        tree.add(Text(f"could not be analysed: {p(audit.error)}", style="magenta"))
    record = audit.record
    if record is not None and record.script is not None:
        script = record.script
        node = tree.add(f"{p(script.name)}: {script.shipped_bytes:,} bytes shipped" + (", packed" if script.packed else ""))
        for layer in script.layers[1:]:
            node.add(Text(p(f"layer {layer.name}: {len(layer.text.encode()):,} bytes, {layer.origin}")))
        for unit in record.linked:
            node.add(Text(p(f"runs {unit.name} ({unit.shipped_bytes:,} bytes)"), style="red"))
    if audit.seeds:
        tree.add(_seed_table(audit))
    tree.add(f"{counts_line(audit)} finding(s) in {audit.elapsed_s:.2f} s")
    order = ordered(audit, verbose)
    parts = [tree]
    for finding in order.shown + order.suppressed:
        parts.append(_finding(audit, finding))
    if order.collapsed:
        parts.append(Text(f"   info {order.hidden} finding(s), one line per code ({HINT}):", style=STYLES["info"]))
        parts += [Text("        " + p(c.line()), style=STYLES["info"]) for c in order.collapsed]
    return Group(*parts)


def _seed_table(audit) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in ("seed", "log", "headline", "val_loss", "val_bpb", "train s", "eval s", "bytes"):
        table.add_column(column, justify="right" if column not in ("log", "headline") else "left")
    for r in audit.seeds:
        table.add_row(
            _v(r.seed), Text(p(r.log)), Text(p(_v(r.metric))), _f(r.val_loss, 6), _f(r.val_bpb, 6), _f(r.train_s, 1), _f(r.eval_s, 1),
            "—" if r.bytes_total is None else f"{r.bytes_total:,}",
        )
    return table


def _finding(audit, finding) -> Group:
    style = STYLES[finding.severity.value]
    head = Text.assemble((f"{finding.severity.value:>7} ", style), (finding.rule, "bold"), "  ")
    if finding.location is not None:
        head.append(p(finding.location), style="underline")
    reason = (getattr(audit, "suppressed", None) or {}).get(finding.fingerprint)
    if reason is not None:
        head.stylize("dim")
        head.append(f"  [suppressed: {p(reason)}]", style="bold dim")
    lines: list = [head, Text("        " + p(finding.message))]
    code = frame(audit, finding)
    if code is not None:
        start, text = code
        more = len(text) - MAX_FRAME_LINES
        text = text[:MAX_FRAME_LINES]
        lexer = "python" if finding.location.file.endswith(".py") else "text"
        lines.append(
            Syntax(
                "\n".join(text), lexer, line_numbers=True, start_line=start, word_wrap=True,
                highlight_lines=set(range(finding.location.line_start, (finding.location.line_end or finding.location.line_start) + 1)),
            )
        )
        if more > 0:
            lines.append(Text(f"        … {more} more line(s) ({p(finding.location)})", style="dim"))
    for item in finding.evidence:
        lines.append(Text(f"        evidence: {p(item)}", style="dim"))
    if finding.reference:
        lines.append(Text(f"        ruling: {p(finding.reference)}", style="dim"))
    return Group(*lines)


def _v(value) -> str:
    return "—" if value is None else str(value)


def _f(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
