"""The `pgolf` command line.

Data goes to stdout, diagnostics to stderr. Exit codes (DESIGN.md): 0 pass or
warn, 1 fail, 2 usage error, 3 analysis error. Heavy modules (torch) are never
imported here, so `pgolf --help` and `pgolf check` stay fast.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    name="pgolf",
    help="Compliance auditor and submission validator for Parameter Golf records.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

USAGE_ERROR = 2


class Format(str, Enum):
    rich = "rich"
    json = "json"
    markdown = "markdown"
    sarif = "sarif"
    github = "github"
    text = "text"


def _fail_usage(message: str) -> None:
    typer.echo(f"pgolf: error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        if "=" not in pair:
            _fail_usage(f"--env takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        env[key.strip()] = value
    return env


def _parse_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        _fail_usage(f"--against-loss takes comma-separated numbers, got {text!r}")
        return []


def _open_output(output: Optional[Path]):
    if output is None:
        return sys.stdout
    try:
        return output.open("w", encoding="utf-8")
    except OSError as exc:
        _fail_usage(f"cannot write {output}: {exc.strerror}")


@app.command()
def check(
    paths: List[Path] = typer.Argument(..., help="Record folders (or train_gpt.py files) to check."),
    against: Optional[Path] = typer.Option(None, help="Record folder to test significance against."),
    against_loss: Optional[str] = typer.Option(
        None, help="Per-seed val_loss (nats) of the record to beat, comma-separated, instead of --against."
    ),
    format: Format = typer.Option(Format.rich, "--format", "-f", help="Report format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    env: List[str] = typer.Option([], help="KEY=VALUE the run used (overrides env defaults in the code)."),
    no_rules: bool = typer.Option(False, "--no-rules", help="Folder checks only, skip the static code rules."),
    debug: bool = typer.Option(False, help="Show tracebacks of internal errors."),
) -> None:
    """Validate record folders end to end: files, metadata, seeds, claims, size, time, code."""
    from auditor.audit import Options, audit_path
    from auditor.record import RecordError
    from auditor.report import FORMATS

    if against is not None and against_loss is not None:
        _fail_usage("give --against or --against-loss, not both")
    options = Options(
        against=against,
        against_losses=_parse_floats(against_loss) if against_loss else None,
        env=_parse_env(env),
        static_rules=not no_rules,
        debug=debug,
    )
    audits = []
    for path in paths:
        try:
            audits.append(audit_path(path, options))
        except RecordError as exc:
            _fail_usage(str(exc))
    out = _open_output(output)
    try:
        FORMATS[format.value](audits, out)
    finally:
        if out is not sys.stdout:
            out.close()
    raise typer.Exit(max_exit_code(a.verdict.exit_code for a in audits))


def max_exit_code(codes) -> int:
    """Analysis error beats fail beats pass, whatever the order of records."""
    codes = set(codes)
    for code in (3, 1):
        if code in codes:
            return code
    return 0


@app.command()
def lint(
    files: List[Path] = typer.Argument(..., help="Python files to lint (packed scripts are decoded first)."),
    format: Format = typer.Option(Format.text, "--format", "-f", help="Report format."),
    env: List[str] = typer.Option([], help="KEY=VALUE the run used (overrides env defaults in the code)."),
) -> None:
    """Static rules only, on code files: for pre-commit hooks and editors."""
    from auditor.audit import Options, audit_path
    from auditor.report import FORMATS

    options = Options(env=_parse_env(env))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail_usage(f"not a file: {', '.join(missing)}")
    audits = [audit_path(f, options) for f in files]
    FORMATS[format.value](audits, sys.stdout)
    raise typer.Exit(max_exit_code(a.verdict.exit_code for a in audits))


@app.command()
def unpack(
    file: Path = typer.Argument(..., help="A train_gpt.py, packed or not."),
    layer: Optional[str] = typer.Option(None, help="Print only this layer's text (e.g. 'shipped>b85>lzma')."),
) -> None:
    """Print every decoded layer of a script and its byte accounting. Executes nothing."""
    from auditor.source import follow_links, unpack_file

    if not file.is_file():
        _fail_usage(f"{file}: no such file")
    unit = unpack_file(file, root=file.parent)
    if layer is not None:
        names = [candidate.name for candidate in unit.layers]
        if layer not in names:
            _fail_usage(f"no layer {layer!r}; layers: {', '.join(names)}")
        sys.stdout.write(unit.layer(layer).text)
        raise typer.Exit(0)
    out = sys.stdout
    out.write(f"# {unit.name}: {unit.shipped_bytes:,} bytes shipped (these count toward the 16,000,000-byte limit)\n")
    if unit.packed:
        out.write(f"# unpacked source: {unit.unpacked_bytes():,} bytes (does not count; PR #1835)\n")
    for linked in follow_links(unit, file.parent):
        out.write(f"# runs {linked.name}: {linked.shipped_bytes:,} bytes NOT counted in train_gpt.py (PR #1412)\n")
    for problem in unit.problems:
        out.write(f"# problem [{problem.kind}] {problem.message}\n")
    for item in unit.layers:
        out.write(f"\n# ===== layer {item.name} ({len(item.text.encode()):,} bytes)")
        out.write(f": {item.origin}\n" if item.parent else "\n")
        out.write(item.text if item.text.endswith("\n") or not item.text else item.text + "\n")
    from auditor.checks.code import HIDING

    raise typer.Exit(3 if any(p.kind in HIDING for p in unit.problems) else 0)


@app.command("rules")
def list_rules() -> None:
    """List every rule: static code rules and folder checks."""
    from rich.console import Console
    from rich.table import Table

    table = Table("code", "slug", "severity", "what it checks", show_edge=False, header_style="bold")
    for code, slug, severity, summary in _catalog():
        table.add_row(code, slug, severity, summary)
    Console().print(table)


@app.command()
def explain(code: str = typer.Argument(..., help="A rule code, e.g. PG101 or PG407.")) -> None:
    """Print one rule's documentation."""
    code = code.upper()
    text = _explain(code)
    if text is None:
        _fail_usage(f"no rule {code}; see `pgolf rules`")
    typer.echo(text)


def _catalog() -> list[tuple[str, str, str, str]]:
    from auditor.checks import all_check_rules

    rows = [(r.code, r.slug, "folder check", r.summary) for r in all_check_rules()]
    for rule in _static_rules():
        summary = (rule.__doc__ or "").strip().splitlines()[0] if rule.__doc__ else ""
        rows.append((rule.code, rule.slug, getattr(rule.severity, "value", str(rule.severity)), summary))
    return sorted(rows)


def _explain(code: str) -> str | None:
    from auditor.checks import all_check_rules

    for rule in all_check_rules():
        if rule.code == code:
            return f"{rule.code} {rule.slug} (folder check)\n\n{rule.summary}\n\nRuling: {rule.reference}"
    for rule in _static_rules():
        if rule.code == code:
            from rules.catalog import render_rule

            return render_rule(rule)
    return None


def _static_rules() -> list:
    try:
        from rules import ALL_RULES
    except ImportError:
        return []
    return list(ALL_RULES)
