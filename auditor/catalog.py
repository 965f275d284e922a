"""Every code `pgolf` can report, gathered into one registry.

Each engine declares its codes where it emits them (a :class:`rules.core.RuleSpec`
per code); this module only says where to look. Static rules are discovered
from the files in `rules/`, so a new rule needs no line here.
"""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

from rules.core import Registry, RuleSpec


def declared_in(module: ModuleType) -> list[RuleSpec]:
    """The specs a module declares at its top level."""
    return [value for value in vars(module).values() if isinstance(value, RuleSpec)]


def registry() -> Registry:
    """Static rules, folder checks, the PR gate, the probes and the rerun harness."""
    from auditor import gitdiff
    from auditor.checks import all_check_rules
    from auditor.harness import summary
    from auditor.probes import runner
    from rules.catalog import static_specs

    engines = [
        ("folder check", all_check_rules()),
        ("PR gate", declared_in(gitdiff)),
        ("dynamic probe", declared_in(runner)),
        ("rerun harness", declared_in(summary)),
    ]
    return Registry(static_specs() + [replace(spec, kinds=(kind,)) for kind, specs in engines for spec in specs])
