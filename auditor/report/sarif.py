"""SARIF 2.1.0 for GitHub code scanning: one run, one result per finding."""

from __future__ import annotations

import json

from auditor import __version__
from auditor.report.frames import artifact_path

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"illegal": "error", "warning": "warning", "info": "note"}


def render(audits, out, verbose: bool = False) -> None:
    out.write(json.dumps(to_sarif(audits), indent=2) + "\n")


def to_sarif(audits) -> dict:
    from auditor.catalog import registry

    known = registry()
    rules: dict[str, dict] = {}
    results = []
    for audit in audits:
        for finding in audit.findings:
            if finding.code not in rules:
                rules[finding.code] = _rule(known.get(finding.code), finding)
            result = {
                "ruleId": finding.code,
                "level": LEVELS[finding.severity.value],
                "message": {"text": finding.message + _evidence(finding)},
                "partialFingerprints": {"pgolfFingerprint/v1": finding.fingerprint},
                "properties": {"verdict": audit.verdict.value, "record": audit.target},
            }
            reason = (getattr(audit, "suppressed", None) or {}).get(finding.fingerprint)
            if reason is not None:
                result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": reason}]
            if finding.location is not None:
                physical = {"artifactLocation": {"uri": artifact_path(audit, finding.location.file)}}
                # SARIF regions are lines of the file on disk; a line in a
                # decoded layer is only described in the message.
                if finding.location.line_start and finding.location.layer == "shipped":
                    region = {"startLine": finding.location.line_start}
                    if finding.location.line_end and finding.location.line_end >= finding.location.line_start:
                        region["endLine"] = finding.location.line_end
                    physical["region"] = region
                result["locations"] = [{"physicalLocation": physical}]
            results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pgolf-auditor",
                        "version": __version__,
                        "informationUri": "https://github.com/openai/parameter-golf",
                        "rules": [rules[k] for k in sorted(rules)],
                    }
                },
                "results": results,
            }
        ],
    }


def _rule(spec, finding) -> dict:
    """A reportingDescriptor from the registry (the finding's own code and slug if unknown)."""
    rule = {
        "id": finding.code,
        "name": finding.slug,
        "shortDescription": {"text": spec.summary if spec else finding.slug.replace("-", " ")},
        "helpUri": "https://github.com/openai/parameter-golf",
        "properties": {"reference": spec.reference if spec else finding.reference},
    }
    if spec is not None:
        rule["help"] = {"text": spec.page(), "markdown": spec.page()}
        rule["defaultConfiguration"] = {"level": LEVELS[spec.severity.value]}
        rule["properties"]["reportedBy"] = list(spec.kinds)
    return rule


def _evidence(finding) -> str:
    extra = []
    if finding.location is not None and finding.location.layer != "shipped":
        extra.append(f"in decoded layer {finding.location.layer}, line {finding.location.line_start}")
    extra += list(finding.evidence)
    return "" if not extra else "\n" + "\n".join(extra)
