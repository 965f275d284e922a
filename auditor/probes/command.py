"""`pgolf probe RECORD` and the `check --probe` hook; imports nothing heavy at module level."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import List, Optional

import typer

from auditor.cli_common import Format, fail_usage, max_exit_code, parse_env, write_report


def probe(
    paths: List[Path] = typer.Argument(..., help="Record folders or train_gpt.py files."),
    timeout: float = typer.Option(120.0, "--timeout", min=5.0, help="Wall-clock limit of the probe process, seconds."),
    format: Format = typer.Option(Format.rich, "--format", "-f", help="Report format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    env: List[str] = typer.Option([], help="KEY=VALUE the run used (added to the config its logs show)."),
    entry: List[str] = typer.Option([], "--entry", help="Probe only these evaluation functions."),
) -> None:
    """Run the submission's own evaluation code on CPU in a sandbox: C1 flip, C4 count, C2 sum, BOS isolation."""
    from auditor.audit import Audit
    from auditor.probes.runner import UnknownEntry
    from auditor.record import RecordError
    from auditor.report import FORMATS

    audits = []
    for path in paths:
        try:
            report = _probe(path, timeout, parse_env(env), entry)
        except (RecordError, UnknownEntry) as exc:
            fail_usage(str(exc))
        audits.append(Audit(target=str(path), findings=report.findings, elapsed_s=report.elapsed_s))
    # each probe that held (info) is part of the answer: shown whole, never collapsed
    write_report(partial(FORMATS[format.value], verbose=True), audits, output)
    raise typer.Exit(max_exit_code(a.verdict.exit_code for a in audits))


def _probe(path: Path, timeout: float, env: dict, entries: list[str]):
    from auditor.probes.runner import probe_record

    return probe_record(path, timeout_s=timeout, env=env, entries=entries or None)


def add_probe_findings(audits, timeout: float, env: dict) -> None:
    """`check --probe`: append probe findings to each audited record, in report order."""
    from rules.core import sort_findings
    from auditor.probes.runner import probe_loaded

    for audit in audits:
        if audit.record is None or audit.error:
            continue
        report = probe_loaded(audit.record, audit.target, timeout_s=timeout, env=env)  # the record check loaded
        audit.findings = sort_findings(list(audit.findings) + report.findings)
        audit.elapsed_s += report.elapsed_s
