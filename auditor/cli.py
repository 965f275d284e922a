"""The `pgolf` command line.

Data goes to stdout, diagnostics to stderr. Exit codes (DESIGN.md): 0 pass or
warn, 1 fail, 2 usage error, 3 analysis error. Heavy modules (torch) are never
imported here, so `pgolf --help` and `pgolf check` stay fast.
"""

from __future__ import annotations

import sys
from enum import Enum
from functools import partial
from pathlib import Path
from typing import List, Optional

import typer

from auditor.cli_common import Format, fail_usage, max_exit_code, parse_env, parse_floats, write_report
from rules.core import Verdict
from auditor.harness.command import rerun  # imports only typer at module level
from auditor.probes.command import probe as _probe_command  # likewise

app = typer.Typer(
    name="pgolf",
    help="Compliance auditor and submission validator for Parameter Golf records.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from auditor import __version__

        typer.echo(f"pgolf {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Compliance auditor and submission validator for Parameter Golf records."""


@app.command()
def check(
    paths: Optional[List[Path]] = typer.Argument(
        None, help="Record folders (or train_gpt.py files) to check; with --diff, the git work tree (default: .)."
    ),
    against: Optional[Path] = typer.Option(None, help="Record folder to test significance against."),
    against_loss: Optional[str] = typer.Option(
        None, help="Per-seed val_loss (nats) of the record to beat, comma-separated, instead of --against."
    ),
    format: Format = typer.Option(Format.rich, "--format", "-f", help="Report format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    env: List[str] = typer.Option([], help="KEY=VALUE the run used (overrides env defaults in the code)."),
    no_rules: bool = typer.Option(False, "--no-rules", help="Folder checks only, skip the static code rules."),
    debug: bool = typer.Option(False, help="Show tracebacks of internal errors."),
    diff: Optional[str] = typer.Option(
        None, "--diff", metavar="BASE",
        help="PR gate: the diff BASE...HEAD of the git work tree must add exactly one records folder; check only that folder.",
    ),
    suppressions: Optional[Path] = typer.Option(
        None, "--suppressions", metavar="FILE", help="Reviewer-owned TOML file of [[suppress]] rule/record/reason entries."
    ),
    baseline: Optional[Path] = typer.Option(None, "--baseline", metavar="FILE", help="Known findings (JSON) to carry without failing."),
    write_baseline: Optional[Path] = typer.Option(
        None, "--write-baseline", metavar="FILE", help="Write every finding of this run as a baseline file."
    ),
    strict: bool = typer.Option(False, "--strict", help="Ignore suppressions and the baseline: every finding counts."),
    probe: bool = typer.Option(False, "--probe", help="Also run the dynamic probes (CPU sandbox; needs torch)."),
    probe_timeout: float = typer.Option(120.0, "--probe-timeout", min=5.0, help="Probe time limit per record, seconds."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every info finding, not one line per code."),
) -> None:
    """Validate record folders end to end: files, metadata, seeds, claims, size, time, code."""
    from auditor.audit import Audit, Options, audit_path
    from auditor.record import RecordError
    from auditor.report import FORMATS
    from auditor.suppress import SuppressionError, apply, load_baseline, load_suppressions
    from auditor.suppress import write_baseline as save_baseline

    if against is not None and against_loss is not None:
        fail_usage("give --against or --against-loss, not both")
    if not paths and diff is None:
        fail_usage("give record folders to check, or --diff BASE")
    if diff is not None and paths and len(paths) > 1:
        fail_usage("--diff takes one git work tree")
    try:
        rules_ = [] if strict or suppressions is None else load_suppressions(suppressions)
        known = set() if strict or baseline is None else load_baseline(baseline)
    except SuppressionError as exc:
        fail_usage(str(exc))
    options = Options(
        against=against,
        against_losses=parse_floats(against_loss) if against_loss else None,
        env=parse_env(env),
        static_rules=not no_rules,
        debug=debug,
    )
    audits = []
    if diff is not None:
        from auditor.gitdiff import GitError, diff_scope, scope_findings
        from rules.core import sort_findings

        try:
            scope = diff_scope(paths[0] if paths else Path("."), diff)
        except (GitError, OSError) as exc:
            fail_usage(f"--diff {diff}: {exc}")
        gate = sort_findings(scope_findings(scope))
        if gate:
            audits.append(Audit(target=f"diff {diff}...HEAD", findings=gate))
        paths = [scope.repo / folder for folder in scope.checked]
    for path in paths:
        try:
            audits.append(audit_path(path, options))
        except RecordError as exc:
            fail_usage(str(exc))
    if probe:
        from auditor.probes.command import add_probe_findings

        add_probe_findings(audits, probe_timeout, options.env)
    if write_baseline is not None:
        try:
            count = save_baseline(audits, write_baseline)
        except SuppressionError as exc:
            fail_usage(str(exc))
        typer.echo(f"pgolf: wrote {count} finding(s) to {write_baseline}", err=True)
        if not strict:
            known |= load_baseline(write_baseline)
    apply(audits, rules_, known, baseline_name=str(write_baseline or baseline or "baseline"))
    write_report(partial(FORMATS[format.value], verbose=verbose), audits, output)
    raise typer.Exit(max_exit_code(a.verdict.exit_code for a in audits))


class ScanFormat(str, Enum):
    rich = "rich"
    csv = "csv"
    json = "json"
    markdown = "markdown"


@app.command()
def scan(
    path: Path = typer.Argument(..., help="A checkout, a records/ folder, or a git repository (bare or not)."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Audit every records folder in the tree of this git ref."),
    refs: Optional[str] = typer.Option(
        None, "--refs", metavar="PATTERN",
        help="Audit, for every ref matching PATTERN (e.g. 'refs/pull/*/head'), the records folders it adds against the merge base with --base.",
    ),
    base: Optional[str] = typer.Option(None, "--base", help="Base branch for --refs (default: main, else master)."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: one per CPU)."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help="Cache directory (default: ~/.cache/pgolf)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Analyse everything, read and write no cache."),
    format: ScanFormat = typer.Option(ScanFormat.rich, "--format", "-f", help="Summary format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the summary here instead of stdout."),
    no_rules: bool = typer.Option(False, "--no-rules", help="Folder checks only, skip the static code rules."),
    record_timeout: float = typer.Option(
        120.0, "--record-timeout", min=0, help="Seconds one record may take before it is counted as an internal error (0: no limit)."
    ),
) -> None:
    """Audit many records (a checkout, a git ref, or every PR ref) in parallel, with a cache; print a summary."""
    from auditor.cache import default_dir
    from auditor.report.scan_summary import SCAN_FORMATS
    from auditor.scan import ScanError, ScanOptions
    from auditor.scan import scan as run_scan

    if ref is not None and refs is not None:
        fail_usage("give --ref or --refs, not both")
    options = ScanOptions(
        ref=ref, refs=refs, base=base, workers=workers,
        cache_dir=None if no_cache else (cache or default_dir()), static_rules=not no_rules,
        record_timeout_s=record_timeout,
    )
    try:
        result = run_scan(path, options)
    except ScanError as exc:
        fail_usage(str(exc))
    write_report(SCAN_FORMATS[format.value], result, output)
    codes = [Verdict(e.verdict).exit_code for e in result.entries]
    raise typer.Exit(max_exit_code(codes + ([3] if result.ref_errors else [])))


@app.command()
def lint(
    files: List[Path] = typer.Argument(..., help="Python files to lint (packed scripts are decoded first)."),
    format: Format = typer.Option(Format.text, "--format", "-f", help="Report format."),
    env: List[str] = typer.Option([], help="KEY=VALUE the run used (overrides env defaults in the code)."),
    strict: bool = typer.Option(False, "--strict", help="Also fail on findings on code a switch turns off by default."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every info finding, not one line per code."),
) -> None:
    """Static rules only, on code files: for pre-commit hooks and editors.

    Fails (exit 1) on every finding `check` would call illegal on a path the code
    runs under its own defaults (and `--env`). A finding on a path that a switch
    turns off by default is a warning here, listed on stderr with its switch;
    `check` calls it illegal when the logs show the switch was on, and `--strict`
    fails on it already.
    """
    from auditor.audit import Options, audit_path
    from auditor.report import FORMATS

    options = Options(env=parse_env(env))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail_usage(f"not a file: {', '.join(missing)}")
    audits = [audit_path(f, options) for f in files]
    extra = {"quiet_when_clean": True} if format == Format.text else {}
    FORMATS[format.value](audits, sys.stdout, verbose=verbose, **extra)
    switched = [(audit, f, why) for audit in audits for f in audit.findings if (why := switch_of(f))]
    for audit, finding, why in switched:
        where = f"{audit.target}:{finding.location.line_start}" if finding.location and finding.location.line_start else audit.target
        typer.echo(f"pgolf lint: {where}: {finding.rule} depends on a switch ({why})"
                   f"{'' if strict else '; --strict fails on it'}", err=True)
    code = max_exit_code(a.verdict.exit_code for a in audits)
    raise typer.Exit(max(code, 1) if strict and switched and code != 3 else code)


def switch_of(finding) -> str | None:
    """Why a warning sits on switched-off code (the engine's ``switch:`` evidence), or None."""
    if finding.severity.value != "warning":
        return None
    return next((item.removeprefix("switch: ") for item in finding.evidence if item.startswith("switch: ")), None)


@app.command()
def unpack(
    file: Path = typer.Argument(..., help="A train_gpt.py, packed or not."),
    layer: Optional[str] = typer.Option(None, help="Print only this layer's text (e.g. 'shipped>b85>lzma')."),
) -> None:
    """Print every decoded layer of a script and its byte accounting. Executes nothing."""
    from auditor.source import follow_links, unpack_file

    if not file.is_file():
        fail_usage(f"{file}: no such file")
    unit = unpack_file(file, root=file.parent)
    if layer is not None:
        names = [candidate.name for candidate in unit.layers]
        if layer not in names:
            fail_usage(f"no layer {layer!r}; layers: {', '.join(names)}")
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
    """List every code pgolf can report: static rules, folder checks, PR gate, probes, rerun harness."""
    from auditor.catalog import registry

    rows = [(s.code, s.slug, s.severity.value, ", ".join(s.kinds), s.summary) for s in registry()]
    if not sys.stdout.isatty():  # piped: whole lines, never cut to a terminal's width
        for row in rows:
            typer.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in ("code", "slug", "severity", "reported by"):
        table.add_column(column, no_wrap=True)
    table.add_column("what it checks")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@app.command()
def explain(name: str = typer.Argument(..., metavar="CODE|SLUG", help="A code or slug, e.g. PG101 or multi-pass-scoring.")) -> None:
    """Print the documentation of one code, whatever reports it."""
    from auditor.catalog import registry

    spec = registry().get(name)
    if spec is None:
        fail_usage(f"no rule {name!r}; see `pgolf rules`")
    typer.echo(spec.page(), nl=False)


# The rerun harness lives in its own package; registered last so `check` leads the help.
app.command("rerun")(rerun)
app.command("probe")(_probe_command)
