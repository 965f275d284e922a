"""Run the whole chain on one path and return what a report needs.

load → unpack → evidence (inside load) → static rules → folder checks →
significance. Any unexpected exception becomes an ERROR verdict with its
reason: a reviewer gets an answer, never a traceback.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from auditor import record as record_mod
from auditor.checks import run_checks, significance
from auditor.checks.size import UNCOUNTED_CODE, model_bytes
from auditor.evidence import RunEvidence, headline_lines
from rules.core import Finding, Verdict, sort_findings, verdict_of
from auditor.record import Record, RecordError
from auditor.stats import Comparison


@dataclass
class SeedRow:
    log: str
    seed: int | None
    metric: str | None
    val_loss: float | None
    val_bpb: float | None
    train_s: float | None
    eval_s: float | None
    bytes_total: int | None  # shipped code + logged model bytes


@dataclass
class Audit:
    target: str
    record: Record | None = None
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    comparison: Comparison | None = None
    seeds: list[SeedRow] = field(default_factory=list)
    elapsed_s: float = 0.0
    # fingerprint -> reason, for findings a reviewer suppressed (auditor.suppress):
    # still reported, ignored by the verdict.
    suppressed: dict[str, str] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return verdict_of([f for f in self.findings if f.fingerprint not in self.suppressed], self.error)


@dataclass
class Options:
    against: Path | None = None
    against_losses: list[float] | None = None
    env: dict[str, str] = field(default_factory=dict)
    static_rules: bool = True
    debug: bool = False


def audit_path(path: Path, options: Options | None = None) -> Audit:
    """Audit one record folder or script. Raises RecordError for usage errors."""
    options = options or Options()
    started = time.perf_counter()
    audit = Audit(target=str(path))
    audit.record = record_mod.load(path)  # RecordError: not a submission at all
    try:
        findings = run_checks(audit.record)
        if options.static_rules:
            findings = merge_uncounted(findings, lint_record(audit.record, options.env), audit.record)
        for unit in [audit.record.script, *audit.record.linked]:
            if unit is not None:
                unit.trees.clear()  # the parses were for the checks and rules; an Audit should not hold them
                unit.ast_trees.clear()
        if options.against is not None or options.against_losses is not None:
            findings += _significance(audit.record, options, audit)
        audit.findings = sort_findings(findings)
        audit.seeds = seed_rows(audit.record)
    except RecordError:
        raise
    except Exception as exc:  # never a traceback for the user; keep the reason
        audit.error = f"internal error while analysing {path}: {type(exc).__name__}: {exc}"
        if options.debug:
            audit.error += "\n" + traceback.format_exc()
    audit.elapsed_s = time.perf_counter() - started
    return audit


def lint_record(record: Record, env: dict[str, str]) -> list[Finding]:
    """Static rules over every code unit the script runs."""
    import rules  # here, so a --no-rules run never builds the rule registry

    if record.script is None:
        return []
    config = rules.LintConfig(env=dict(env), evidence_lines=evidence_lines(record),
                              headlines=headline_lines(record.logs))
    findings: list[Finding] = []
    for unit in [record.script, *record.linked]:
        findings += rules.lint(unit, config)
    return findings


def merge_uncounted(checks: list[Finding], static: list[Finding], record: Record | None = None) -> list[Finding]:
    """Keep one uncounted-code finding per line: the folder's, which resolved
    the link against the files actually there, over the one-file guess. The
    rule's guess that an unknown import (``import python_minifier``) may be a
    sibling file is dropped when the folder holds no such file: it is a package."""
    resolved = {
        (f.location.file, f.location.layer, f.location.line_start)
        for f in checks
        if f.code == UNCOUNTED_CODE.code and f.location is not None
    }
    kept = [
        f
        for f in static
        if not (
            f.code == UNCOUNTED_CODE.code
            and (f.location is not None
                 and (f.location.file, f.location.layer, f.location.line_start) in resolved
                 or record is not None and _not_a_sibling(f, record))
        )
    ]
    return checks + kept


def _not_a_sibling(finding: Finding, record: Record) -> bool:
    """A PG302 unknown-import guess whose module is no file of the folder."""
    if record.code_only or not finding.key.startswith("import "):
        return False
    top = finding.key.removeprefix("import ").split(".")[0]
    return not any(f == f"{top}.py" or f.startswith(f"{top}/") for f in record.files)


def evidence_lines(record: Record) -> list[tuple[str, int, str]]:
    """Lines of logs, README and submission.json that can show a path ran.

    Everything here was read when the record was loaded; log lines come from
    the parser, which keeps every line that is not per-step progress.
    """
    lines = [(run.log, number, text) for run in record.logs for number, text in run.context]
    readme = next((f for f in record.files if f.lower() == "readme.md"), "README.md")
    for name, text in ((readme, record.readme), ("submission.json", record.submission_text)):
        lines += [(name, number, line[:500]) for number, line in enumerate((text or "").split("\n"), 1)]
    return lines


def seed_rows(record: Record) -> list[SeedRow]:
    shipped = record.script.shipped_bytes if record.script else 0
    rows = []
    for run in record.logs:
        model, _ = model_bytes(run)
        rows.append(seed_row(run, shipped + model if model is not None and record.script else None))
    return sorted(rows, key=lambda r: (r.seed is None, r.seed or 0, r.log))


def seed_row(run: RunEvidence, bytes_total: int | None, seed: int | None = None) -> SeedRow:
    """One table row from a parsed log; `seed` overrides the logged one (pgolf rerun sets it)."""
    return SeedRow(
        log=run.log,
        seed=seed if seed is not None else int(run.seed.value) if run.seed else None,
        metric=run.headline.name if run.headline else None,
        val_loss=run.headline.val_loss if run.headline else None,
        val_bpb=run.headline.val_bpb if run.headline else None,
        train_s=float(run.train_time_ms.value) / 1000 if run.train_time_ms else None,
        eval_s=float(run.eval_time_ms.value) / 1000 if run.eval_time_ms else None,
        bytes_total=bytes_total,
    )


def _significance(record: Record, options: Options, audit: Audit) -> list[Finding]:
    against = record_mod.load(options.against) if options.against is not None else None
    return significance_findings(audit, record.logs, record.submission, against=against,
                                 against_losses=options.against_losses)


def significance_findings(audit: Audit, runs: list[RunEvidence], submission: dict | None, *,
                          against: Record | None = None, against_losses: list[float] | None = None) -> list[Finding]:
    """Compare `runs` with another record's logs (or with given val_losses); sets audit.comparison."""
    if against is not None:
        audit.comparison = significance.compare_runs(runs, against.logs)
        label = against.display
    else:
        audit.comparison = significance.compare_runs(runs, old_losses=against_losses)
        label = "the given val_loss values"
    date = (submission or {}).get("date")
    return significance.check(audit.comparison, date if isinstance(date, str) else None, label)
