"""PG402: submission.json parses and carries the keys reviewers rely on."""

from __future__ import annotations

import datetime as dt
import math
import re

from auditor.checks.base import CheckRule
from auditor.declared import declared
from rules.core import Finding, Location, Severity
from auditor.record import Record

SUBMISSION_JSON = CheckRule(
    "PG402",
    "submission-json",
    "submission.json is a JSON object with author, github_id, name, date and val_bpb of the right types.",
)

NUMBER = (int, float)
REQUIRED_KEYS: dict[str, tuple[type, ...]] = {
    "author": (str,),
    "github_id": (str,),
    "name": (str,),
    "date": (str,),
    "val_bpb": NUMBER,
}
# Keys seen across records; anything else is reported as info, not an error.
COMMON_KEYS: dict[str, tuple[type, ...]] = {
    "track": (str,),
    "seeds": (list,),
    "seed_results": (dict, list),
    "val_bpb_std": NUMBER,
    "val_loss": NUMBER,
    "val_loss_std": NUMBER,
    "bytes_total": (int,),
    "bytes_code": (int,),
    "bytes_model": (int,),
    "hardware": (str,),
    "compliance": (dict,),
    "blurb": (str,),
    "description": (str,),
    "pre_quant_val_bpb": NUMBER,
    "pre_quant_val_loss": NUMBER,
}
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def key_line(record: Record, key: str) -> int | None:
    """Line of `"key":` in submission.json, so a reviewer can jump to it."""
    for number, line in enumerate((record.submission_text or "").split("\n"), 1):
        if f'"{key}"' in line:
            return number
    return None


def json_location(record: Record, key: str) -> Location:
    line = key_line(record, key)
    return Location("submission.json", line, line)


def check(record: Record) -> list[Finding]:
    if record.submission_error:
        return [SUBMISSION_JSON.finding(Severity.ILLEGAL, record.submission_error, Location("submission.json"), key="parse")]
    data = record.submission
    if data is None:
        return []  # absent: PG401 reports it
    findings: list[Finding] = []
    for key, types in REQUIRED_KEYS.items():
        if key not in data:
            findings.append(
                SUBMISSION_JSON.finding(Severity.ILLEGAL, f"missing required key {key!r}", Location("submission.json"), key=f"missing:{key}")
            )
        elif not _is(data[key], types):
            findings.append(_wrong_type(record, key, data[key], types, Severity.ILLEGAL))
    for key, types in COMMON_KEYS.items():
        if key in data and data[key] is not None and not _is(data[key], types):
            findings.append(_wrong_type(record, key, data[key], types, Severity.WARNING))
    if isinstance(data.get("date"), str) and not _valid_date(data["date"]):
        findings.append(
            SUBMISSION_JSON.finding(
                Severity.WARNING, f"date {data['date']!r} is not an ISO date (YYYY-MM-DD)", json_location(record, "date"), key="date-format"
            )
        )
    if isinstance(data.get("seeds"), list) and not all(_is_int(s) for s in data["seeds"]):
        findings.append(
            SUBMISSION_JSON.finding(Severity.WARNING, "seeds must be a list of integers", json_location(record, "seeds"), key="seeds-type")
        )
    for key in ("val_bpb", "val_loss", "val_bpb_std"):
        if _is(data.get(key), NUMBER) and not _finite(data[key]):
            findings.append(
                SUBMISSION_JSON.finding(
                    Severity.ILLEGAL if key in REQUIRED_KEYS else Severity.WARNING,
                    f"{key!r} is {data[key]!r}: a score must be a finite number",
                    json_location(record, key),
                    key=f"finite:{key}",
                )
            )
    for problem in declared(data).unreadable_seed_results:
        findings.append(
            SUBMISSION_JSON.finding(
                Severity.WARNING, f"seed_results: {problem}; that entry is not compared with the logs",
                json_location(record, "seed_results"), key=f"seed_results:{problem}",
            )
        )
    for key in data:
        if key not in REQUIRED_KEYS and key not in COMMON_KEYS:
            findings.append(
                SUBMISSION_JSON.finding(Severity.INFO, f"unknown key {key!r} (not checked)", json_location(record, key), key=f"unknown:{key}")
            )
    return findings


def _is(value, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int subclass; never a valid number here
        return bool in types
    return isinstance(value, types)


def _finite(number: int | float) -> bool:
    """JSON admits NaN, Infinity and integers too large for a float."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


def _valid_date(text: str) -> bool:
    if not DATE_RE.match(text):
        return False
    try:
        dt.date.fromisoformat(text[:10])
    except ValueError:
        return False
    return True


def _wrong_type(record: Record, key: str, value, types, severity: Severity) -> Finding:
    wanted = " or ".join("number" if t in (int, float) and len(types) > 1 else t.__name__ for t in types)
    wanted = "number" if types == NUMBER else wanted
    return SUBMISSION_JSON.finding(
        severity,
        f"{key!r} should be {wanted}, found {type(value).__name__} {str(value)[:40]!r}",
        json_location(record, key),
        key=f"type:{key}",
    )
