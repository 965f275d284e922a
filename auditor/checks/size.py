"""PG407/PG408/PG302: the artifact fits, as measured on what ships.

Code bytes are measured on the shipped train_gpt.py, never taken from a log:
packed scripts count their shipped (compressed) bytes, and logs that count the
unpacked source overstate the size (PR #1835). Model bytes can only come from
the logs here; the rerun harness measures them on disk.
"""

from __future__ import annotations

from auditor.challenge import ARTIFACT_LIMIT_BYTES
from auditor.checks.base import CheckRule, cite, log_location
from auditor.checks.metadata import json_location
from auditor.declared import declared
from rules.core import Finding, Location, Severity
from reference_impl.packing import packed_bytes
from auditor.record import SCRIPT_NAME, Record

SIZE_LIMIT = CheckRule(
    "PG407",
    "size-limit",
    f"Shipped code bytes + compressed model bytes <= {ARTIFACT_LIMIT_BYTES:,} for every seed.",
    "README: 16,000,000 bytes (decimal), code + model",
)
SIZE_CLAIM = CheckRule(
    "PG408",
    "size-claim",
    "Declared and logged byte counts match the measured shipped code and logged model bytes.",
    "PR #1835: measure what ships",
)
# Same code as the static rule: the static rule judges one file alone, this
# check resolves each link against the folder, and its finding replaces the
# static one at the same line (see audit.merge_uncounted).
UNCOUNTED_CODE = CheckRule(
    "PG302",
    "uncounted-code",
    "All code that runs lives in train_gpt.py; exec'd or imported sibling files are uncounted code.",
    "PR #1412: all counted code must live in train_gpt.py",
)


def model_bytes(run) -> tuple[int | None, str]:
    """Model bytes from a log, and the line they rest on."""
    if run.bytes_model is not None:
        return int(run.bytes_model.value), cite(run.log, run.bytes_model)
    if run.bytes_total is not None and run.bytes_code is not None:
        value = int(run.bytes_total.value) - int(run.bytes_code.value)
        return value, f"{cite(run.log, run.bytes_total)} minus {cite(run.log, run.bytes_code)}"
    return None, ""


def check(record: Record) -> list[Finding]:
    findings = _uncounted(record)
    if record.script is None or record.code_only:
        return findings
    shipped = record.script.shipped_bytes
    packed: int | None = None  # what the shipped script would weigh packed, measured when needed
    measured_totals: list[int] = []
    for run in record.logs:
        model, source = model_bytes(run)
        if model is None:
            continue
        total = shipped + model
        measured_totals.append(total)
        if total > ARTIFACT_LIMIT_BYTES:
            if packed is None and not record.script.packed:
                packed = packed_bytes(record.script.layers[0].text)
            fits_packed = packed is not None and packed + model <= ARTIFACT_LIMIT_BYTES
            tail = "" if packed is None else (
                f"; packed it would ship {packed:,} code bytes, {packed + model:,} in all: "
                + ("ship it packed" if fits_packed else "still over"))
            findings.append(
                SIZE_LIMIT.finding(
                    Severity.WARNING if fits_packed else Severity.ILLEGAL,
                    f"{run.log}: {shipped:,} code bytes (measured) + {model:,} model bytes = {total:,} bytes, "
                    f"over the {ARTIFACT_LIMIT_BYTES:,}-byte limit by {total - ARTIFACT_LIMIT_BYTES:,}{tail}",
                    log_location(run.log, run.bytes_model or run.bytes_total),
                    evidence=[source],
                    key=f"limit:{run.log}",
                )
            )
        findings += _logged_code_size(record, run, shipped)
    over = any(f.code == SIZE_LIMIT.code and f.severity == Severity.ILLEGAL for f in findings)
    findings += _declared(record, shipped, measured_totals, over)
    return findings


def _logged_code_size(record: Record, run, shipped: int) -> list[Finding]:
    if run.bytes_code is None or int(run.bytes_code.value) == shipped:
        return []
    logged = int(run.bytes_code.value)
    unpacked = record.script.unpacked_bytes() if record.script.packed else None
    if unpacked is not None and logged == unpacked:
        why = "it counts the unpacked source; the packed file is what ships and counts (PR #1835)"
        severity = Severity.INFO
    elif logged > shipped:
        why = "the log overstates it; the shipped file was changed after this run or the count includes more"
        severity = Severity.WARNING
    else:
        why = "the log understates it: the run's code was smaller than what ships"
        severity = Severity.WARNING
    return [
        SIZE_CLAIM.finding(
            severity,
            f"{run.log} prints code size {logged:,} bytes but the shipped {SCRIPT_NAME} is {shipped:,} bytes: {why}",
            log_location(run.log, run.bytes_code),
            evidence=[cite(run.log, run.bytes_code)],
            key=f"code:{run.log}",
        )
    ]


def _declared(record: Record, shipped: int, measured_totals: list[int], over: bool) -> list[Finding]:
    """``over``: the artifact is over the limit as it ships and packed (PG407 illegal)."""
    claim = declared(record.submission)
    findings: list[Finding] = []
    if claim.bytes_total is not None:
        if claim.bytes_total > ARTIFACT_LIMIT_BYTES:
            findings.append(
                SIZE_LIMIT.finding(
                    Severity.ILLEGAL,
                    f"submission.json declares bytes_total {claim.bytes_total:,}, over the {ARTIFACT_LIMIT_BYTES:,}-byte limit",
                    json_location(record, "bytes_total"),
                    key="declared-limit",
                )
            )
        if measured_totals and claim.bytes_total < max(measured_totals):
            # an understated total that still fits is a wrong claim; one that hides an
            # artifact over the limit is illegal (PG407 reports the limit itself)
            findings.append(
                SIZE_CLAIM.finding(
                    Severity.ILLEGAL if over else Severity.WARNING,
                    f"submission.json declares bytes_total {claim.bytes_total:,} but the largest measured total is "
                    f"{max(measured_totals):,} (shipped code {shipped:,} + logged model bytes)",
                    json_location(record, "bytes_total"),
                    key="declared-total",
                )
            )
    if claim.bytes_code is not None and claim.bytes_code != shipped:
        severity = Severity.ILLEGAL if claim.bytes_code < shipped and over else Severity.WARNING
        findings.append(
            SIZE_CLAIM.finding(
                severity,
                f"submission.json declares bytes_code {claim.bytes_code:,} but the shipped {SCRIPT_NAME} is {shipped:,} bytes",
                json_location(record, "bytes_code"),
                key="declared-code",
            )
        )
    return findings


def _uncounted(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    units = [record.script, *record.linked] if record.script else []
    for unit in units:
        running = {layer.name for layer in unit.effective_layers}
        for link in unit.links:
            where = Location(unit.name, link.line, link.line, link.layer)
            if link.layer not in running:
                findings.append(
                    UNCOUNTED_CODE.finding(
                        Severity.INFO,
                        f"{link.kind} of {link.target!r} sits in layer {link.layer}, which is decoded but never executed",
                        where,
                        key=f"dormant:{link.target}",
                    )
                )
                continue
            if link.path is None:
                findings.append(
                    UNCOUNTED_CODE.finding(
                        Severity.WARNING,
                        f"{link.kind} of {link.target!r}, which is not in the folder: the code it runs cannot be reviewed",
                        where,
                        key=f"missing:{link.target}",
                    )
                )
                continue
            size = link.path.stat().st_size if link.path.exists() else 0
            findings.append(
                UNCOUNTED_CODE.finding(
                    Severity.ILLEGAL,
                    f"{link.kind} of {link.target!r} runs {size:,} bytes of code that are not counted in {SCRIPT_NAME}",
                    where,
                    key=f"link:{link.target}",
                )
            )
    return findings
