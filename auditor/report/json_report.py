"""Machine-readable report with a versioned schema (see schemas/report-1.json)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from auditor import __version__

SCHEMA = "pgolf-audit/1"


def audit_to_dict(audit) -> dict:
    record = audit.record
    comparison = None
    if audit.comparison is not None:
        comparison = asdict(audit.comparison)
        comparison["improvement"] = audit.comparison.improvement
    return {
        "target": audit.target,
        "record": None
        if record is None
        else {
            "name": record.name,
            "track": record.track,
            "code_only": record.code_only,
            "files": record.files,
            "shipped_code_bytes": record.script.shipped_bytes if record.script else None,
            "packed": record.script.packed if record.script else None,
            "layers": [layer.name for layer in record.script.layers] if record.script else [],
        },
        "verdict": audit.verdict.value,
        "error": audit.error,
        "seeds": [asdict(row) for row in audit.seeds],
        "comparison": comparison,
        "findings": [_finding(f, audit) for f in audit.findings],
        "elapsed_s": round(audit.elapsed_s, 4),
    }


def _finding(finding, audit) -> dict:
    data = finding.to_dict()
    reason = (getattr(audit, "suppressed", None) or {}).get(finding.fingerprint)
    if reason is not None:
        data["suppressed"] = reason
    return data


def render(audits, out, verbose: bool = False) -> None:
    document = {
        "schema": SCHEMA,
        "tool": {"name": "pgolf-auditor", "version": __version__},
        "audits": [audit_to_dict(a) for a in audits],
    }
    out.write(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")


def _finite(value):
    """NaN (a p-value that cannot be computed) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
