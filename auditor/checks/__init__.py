"""Folder checks: a chain of small checkers that each report every failure.

Modelled on MLCommons' mlperf_logging: no checker stops the chain, and each
finding names the file (and line) it rests on.
"""

from __future__ import annotations

from auditor.checks import bytes as byte_tables
from auditor.checks import claims, code, data, layout, logs, metadata, seeds, significance, size, stream, timing, window
from auditor.checks.base import CheckRule
from rules.core import Finding
from auditor.record import Record

FOLDER_CHECKS = (layout, metadata, logs, seeds, claims, size, timing, window, data, byte_tables, stream)
CODE_CHECKS = (code,)


def run_checks(record: Record) -> list[Finding]:
    modules = CODE_CHECKS if record.code_only else FOLDER_CHECKS + CODE_CHECKS
    # Code-only review still reports uncounted code from the size module.
    if record.code_only:
        modules = modules + (size,)
    findings: list[Finding] = []
    for module in modules:
        findings += module.check(record)
    return findings


def all_check_rules() -> list[CheckRule]:
    """Every folder-check rule, for `pgolf rules` and `pgolf explain`."""
    found = {}
    # significance runs only with --against (audit.py), but is a rule all the same
    for module in FOLDER_CHECKS + CODE_CHECKS + (significance,):
        for value in vars(module).values():
            if isinstance(value, CheckRule):
                found[value.code] = value
    return [found[c] for c in sorted(found)]
