"""Static rule engine (libcst) for Parameter Golf submissions, and the core.

Public API (loaded on first use, so importing ``rules.core`` never pulls libcst)::

    LintConfig(env={...}, evidence_lines=[(file, line, text), ...])
    lint_source(text, file=..., layer="shipped", config=LintConfig()) -> list[Finding]
    lint(unit, config=LintConfig()) -> list[Finding]     # every effective layer
    ALL_RULES, get_rule("PG101"), render_rule(rule), render_catalog()

A rule is one file ``pg<code>_<slug>.py`` on the package path; :func:`discover`
imports it (its class registers itself), so a new rule is listed, explained and
run without being named anywhere else.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

_RULE_MODULE = re.compile(r"^pg\d{3}_\w+$")
_ENGINE = ("Hit", "LintConfig", "Rule", "get_rule", "lint", "lint_source")
_CATALOG = ("render_catalog", "render_rule")


def discover() -> list:
    """Import every rule module on the package path and return the rule classes."""
    engine = importlib.import_module(f"{__name__}.engine")
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if _RULE_MODULE.match(m.name)):
        importlib.import_module(f"{__name__}.{mod}")
    return engine.all_rules()


def __getattr__(name: str):
    if name == "ALL_RULES":
        return discover()
    if name in _ENGINE or name in _CATALOG:
        discover()
        value = getattr(importlib.import_module(f"{__name__}.{'engine' if name in _ENGINE else 'catalog'}"), name)
        globals()[name] = value  # discovered once; later lookups are plain attributes
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALL_RULES", "Hit", "LintConfig", "Rule", "discover", "get_rule", "lint", "lint_source", "render_catalog",
           "render_rule"]
