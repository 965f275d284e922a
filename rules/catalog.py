"""Render rules as text for ``pgolf rules`` and ``pgolf explain CODE`` (pure functions)."""

from __future__ import annotations

import inspect
import textwrap

from .engine import Rule, all_rules

_HEADINGS = ("What it flags:", "Why: the ruling:", "Legal alternative:", "Known limits:")


def _sections(rule: type[Rule]) -> tuple[str, dict[str, str]]:
    doc = inspect.cleandoc(rule.__doc__ or "")
    summary, _, rest = doc.partition("\n")
    sections: dict[str, str] = {}
    current = None
    buf: list[str] = []
    for line in rest.splitlines():
        if line.strip() in _HEADINGS:
            if current:
                sections[current] = textwrap.dedent("\n".join(buf)).strip()
            current, buf = line.strip().rstrip(":"), []
        elif current:
            buf.append(line)
    if current:
        sections[current] = textwrap.dedent("\n".join(buf)).strip()
    return summary.strip(), sections


def render_rule(rule: type[Rule], *, examples: bool = True) -> str:
    """Markdown-ish page for one rule: header, sections, one INVALID and one VALID example."""
    summary, sections = _sections(rule)
    out = [f"# {rule.code} {rule.slug}", "",
           f"{summary}", "",
           f"Severity: {rule.severity.value}   Conditions: {', '.join(rule.conditions) or '-'}"]
    if rule.reference:
        out.append(f"Reference: {rule.reference}")
    for h in ("What it flags", "Why: the ruling", "Legal alternative", "Known limits"):
        if h in sections:
            out += ["", f"## {h}", "", sections[h]]
    if examples:
        if rule.INVALID:
            out += ["", "## Example (flagged)", "", "```python", textwrap.dedent(rule.INVALID[0]).strip(), "```"]
        if rule.VALID:
            out += ["", "## Use instead / not flagged", "", "```python", textwrap.dedent(rule.VALID[0]).strip(), "```"]
    return "\n".join(out) + "\n"


def render_catalog() -> str:
    """One line per rule: code, slug, severity, conditions, summary."""
    lines = []
    for r in all_rules():
        summary, _ = _sections(r)
        lines.append(f"{r.code}  {r.slug:<28} {r.severity.value:<8} {','.join(r.conditions):<8} {summary}")
    return "\n".join(lines) + "\n"
