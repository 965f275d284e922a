"""Static rule engine (libcst) for Parameter Golf submissions.

Public API::

    LintConfig(env={...}, evidence_lines=[(file, line, text), ...])
    lint_source(text, file=..., layer="shipped", config=LintConfig()) -> list[Finding]
    lint(unit, config=LintConfig()) -> list[Finding]     # every effective layer
    ALL_RULES, get_rule("PG101"), render_rule(rule), render_catalog()
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from .engine import Hit, LintConfig, Rule, all_rules, get_rule, lint, lint_source

_RULE_MODULE = re.compile(r"^pg\d{3}_\w+$")


def discover() -> list[type[Rule]]:
    """Import every rule module on the package path (``pg<code>_<slug>.py``; each
    registers its rule on import) and return the registry: rules are discovered, not
    listed, so a new rule is one file."""
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if _RULE_MODULE.match(m.name)):
        importlib.import_module(f"{__name__}.{mod}")
    return all_rules()


from .catalog import render_catalog, render_rule  # noqa: E402

ALL_RULES = discover()

__all__ = ["ALL_RULES", "Hit", "LintConfig", "Rule", "discover", "get_rule", "lint", "lint_source",
           "render_catalog", "render_rule"]
