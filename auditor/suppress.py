"""Suppressions and baselines: reviewer-owned, never the submitter's.

A suppression file is TOML that lives with the reviewers (the CI config, the
challenge repository's maintainers' folder), not in the submission, so a
submitter cannot silence a rule by adding a comment::

    [[suppress]]
    rule = "PG410"                          # code (PG410), slug (train-time) or "PG410 train-time"
    record = "track_10min_16mb/2026-05-*"    # optional glob on <track>/<folder> (default: every record)
    file = "train_seed*.log"                 # optional glob on the finding's file
    fingerprint = "3f2a9c0d1e4b5a6c"         # optional: exactly one finding
    reason = "600.4 s: the cap fires between steps, ruled acceptable in PR #1234"   # required

A baseline is JSON written by ``--write-baseline``: the findings known at one
point, keyed by record and fingerprint, so they are carried while new ones
fail::

    {"schema": "pgolf-baseline/1",
     "findings": [{"record": "...", "fingerprint": "...", "rule": "PG410 train-time", "message": "..."}]}

A bare list of such objects is read too. Both mark findings as suppressed:
reports still show them, with the reason, and the verdict ignores them.
``--strict`` applies neither.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from auditor import catalog

BASELINE_SCHEMA = "pgolf-baseline/1"
KEYS = {"rule", "record", "file", "fingerprint", "reason"}


class SuppressionError(Exception):
    """A suppression or baseline file that cannot be used (a usage error)."""


@dataclass(frozen=True)
class Suppression:
    rule: str
    reason: str
    record: str = "*"
    file: str | None = None
    fingerprint: str | None = None
    source: str = ""

    def matches(self, record: str, finding) -> bool:
        if self.rule.upper() not in (finding.code.upper(), finding.slug.upper(), finding.rule.upper()):
            return False
        if not fnmatchcase(record, self.record):
            return False
        if self.file is not None:
            if finding.location is None or not fnmatchcase(finding.location.file, self.file):
                return False
        return self.fingerprint is None or self.fingerprint == finding.fingerprint


def load_suppressions(path: Path) -> list[Suppression]:
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuppressionError(f"{path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SuppressionError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(document) - {"suppress"}
    if unknown:
        raise SuppressionError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; use [[suppress]]")
    items = document.get("suppress", [])
    if not isinstance(items, list):
        raise SuppressionError(f"{path}: 'suppress' must be an array of tables ([[suppress]])")
    registry = catalog.registry()
    result = []
    for number, item in enumerate(items, 1):
        where = f"{path}: suppression #{number}"
        if not isinstance(item, dict):
            raise SuppressionError(f"{where}: not a table")
        extra = set(item) - KEYS
        if extra:
            raise SuppressionError(f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(sorted(KEYS))})")
        for key in KEYS:
            if key in item and not isinstance(item[key], str):
                raise SuppressionError(f"{where}: {key} must be a string")
        if not item.get("rule", "").strip():
            raise SuppressionError(f"{where}: 'rule' is required")
        if not item.get("reason", "").strip():
            raise SuppressionError(f"{where} ({item['rule']}): a suppression needs a 'reason'")
        if registry.get(item["rule"]) is None:
            # a typo would silence nothing and pass unnoticed: the rule must be one pgolf can emit
            raise SuppressionError(f"{where}: no rule {item['rule'].strip()!r} (`pgolf rules` lists every code and slug)")
        result.append(
            Suppression(
                rule=item["rule"].strip(),
                reason=item["reason"].strip(),
                record=item.get("record", "*"),
                file=item.get("file"),
                fingerprint=item.get("fingerprint"),
                source=f"{Path(path).name}#{number}",
            )
        )
    return result


def load_baseline(path: Path) -> set[tuple[str, str]]:
    """(record, fingerprint) pairs of a baseline file."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuppressionError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SuppressionError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(document, dict):
        if document.get("schema") != BASELINE_SCHEMA:
            raise SuppressionError(f"{path}: not a {BASELINE_SCHEMA} baseline")
        document = document.get("findings")
    if not isinstance(document, list):
        raise SuppressionError(f"{path}: a baseline is a list of findings")
    pairs = set()
    for item in document:
        if not isinstance(item, dict) or not isinstance(item.get("fingerprint"), str):
            raise SuppressionError(f"{path}: every baseline entry needs a 'fingerprint'")
        pairs.add((str(item.get("record", "*")), item["fingerprint"]))
    return pairs


def record_name(audit) -> str:
    return audit.record.display if audit.record is not None else audit.target


def apply(audits, suppressions: list[Suppression] = (), baseline: set[tuple[str, str]] = frozenset(), baseline_name: str = "baseline") -> int:
    """Mark matching findings suppressed on each audit; return how many."""
    count = 0
    for audit in audits:
        marked = dict(getattr(audit, "suppressed", None) or {})
        name = record_name(audit)
        for finding in audit.findings:
            fingerprint = finding.fingerprint
            if fingerprint in marked:
                continue
            for rule in suppressions:
                if rule.matches(name, finding):
                    marked[fingerprint] = f"{rule.reason} ({rule.source})"
                    break
            else:
                if (name, fingerprint) in baseline or ("*", fingerprint) in baseline:
                    marked[fingerprint] = f"known finding, carried by {baseline_name}"
            if fingerprint in marked:
                count += 1
        audit.suppressed = marked
    return count


def write_baseline(audits, path: Path) -> int:
    """Write every finding of the audits as a baseline; return how many."""
    entries = []
    seen = set()
    for audit in audits:
        name = record_name(audit)
        for finding in audit.findings:
            pair = (name, finding.fingerprint)
            if pair in seen:
                continue
            seen.add(pair)
            entries.append({"record": name, "fingerprint": finding.fingerprint, "rule": finding.rule, "message": finding.message})
    entries.sort(key=lambda e: (e["record"], e["rule"], e["fingerprint"]))
    try:
        Path(path).write_text(json.dumps({"schema": BASELINE_SCHEMA, "findings": entries}, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SuppressionError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(entries)
