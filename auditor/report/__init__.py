"""Renderers: each turns a list of Audits into one output format.

Every renderer reads the same Audit objects, so the formats can never
disagree about a finding, only about how it looks.
"""

from __future__ import annotations

from typing import Callable

from auditor.report import console, github, json_report, markdown, sarif, text

FORMATS: dict[str, Callable] = {
    "rich": console.render,
    "json": json_report.render,
    "markdown": markdown.render,
    "sarif": sarif.render,
    "github": github.render,
    "text": text.render,
}
