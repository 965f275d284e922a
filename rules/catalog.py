"""The static rules as registry specs: a rule class's docstring and examples become
its :class:`rules.core.RuleSpec` (pure functions)."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import replace

from rules.core import RuleSpec, Severity

from . import discover
from .engine import PARSE_ERROR_CODE, PARSE_ERROR_SLUG, Rule

_HEADINGS = ("What it flags", "Why: the ruling", "Legal alternative", "Known limits")

PARSE_ERROR = RuleSpec(
    PARSE_ERROR_CODE, PARSE_ERROR_SLUG,
    "A layer of the script that does not parse (or could not be analysed) is reported, never raised.",
    "the static rules need a parse; the folder checks still run",
    severity=Severity.INFO,
    kinds=("static rule",),
    sections=(("What it flags", "A syntax error, nesting too deep to analyse, or a failure while building the "
                                "facts; the message carries the parser's reason and position."),),
)


def _sections(rule: type[Rule]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The docstring's first line, and its ``Heading:`` blocks in order."""
    doc = inspect.cleandoc(rule.__doc__ or "")
    summary, _, rest = doc.partition("\n")
    blocks: list[tuple[str, list[str]]] = []
    for line in rest.splitlines():
        heading = line.strip()[:-1] if line.strip().endswith(":") else ""
        if heading in _HEADINGS:
            blocks.append((heading, []))
        elif blocks:
            blocks[-1][1].append(line)
    return summary.strip(), tuple((h, textwrap.dedent("\n".join(body)).strip()) for h, body in blocks)


def spec_of(rule: type[Rule]) -> RuleSpec:
    """The registry's view of a static rule class."""
    summary, sections = _sections(rule)
    examples = []
    if rule.INVALID:
        examples.append(("Example (flagged)", rule.INVALID[0]))
    if rule.VALID:
        examples.append(("Use instead / not flagged", rule.VALID[0]))
    return RuleSpec(rule.code, rule.slug, summary, rule.reference, rule.severity, ("static rule",),
                    tuple(rule.conditions), sections, tuple(examples))


def static_specs() -> list[RuleSpec]:
    """Every discovered rule on the package path, and the engine's own PG000."""
    return [spec_of(rule) for rule in discover()] + [PARSE_ERROR]


def render_rule(rule: type[Rule], *, examples: bool = True) -> str:
    """`pgolf explain`'s page for one rule class."""
    spec = spec_of(rule)
    return (spec if examples else replace(spec, examples=())).page()


def render_catalog() -> str:
    """One line per static rule: code, slug, severity, conditions, summary."""
    return "".join(f"{s.code}  {s.slug:<28} {s.severity.value:<8} {','.join(s.conditions):<8} {s.summary}\n"
                   for s in map(spec_of, discover()))
