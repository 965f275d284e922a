"""Static rule engine (libcst) for Parameter Golf submissions.

Public API::

    LintConfig(env={...}, evidence_lines=[(file, line, text), ...])
    lint_source(text, file=..., layer="shipped", config=LintConfig()) -> list[Finding]
    lint(unit, config=LintConfig()) -> list[Finding]     # every effective layer
    ALL_RULES, get_rule("PG101"), render_rule(rule), render_catalog()
"""

from __future__ import annotations

from .engine import Hit, LintConfig, Rule, all_rules, get_rule, lint, lint_source

# rule modules register themselves on import (one rule per module)
from . import pg101_ngram_target_in_key  # noqa: F401,E402
from . import pg102_target_selected_scorer  # noqa: F401,E402
from . import pg103_multi_pass_scoring  # noqa: F401,E402
from . import pg104_slot_scored_region  # noqa: F401,E402
from . import pg105_bos_token_mixing  # noqa: F401,E402
from . import pg106_scoring_coverage  # noqa: F401,E402
from . import pg201_val_update_before_score  # noqa: F401,E402
from . import pg202_network_access  # noqa: F401,E402
from . import pg203_train_data_after_window  # noqa: F401,E402
from . import pg301_byte_table  # noqa: F401,E402
from . import pg302_uncounted_code  # noqa: F401,E402

from .catalog import render_catalog, render_rule  # noqa: E402

ALL_RULES = all_rules()

__all__ = ["ALL_RULES", "Hit", "LintConfig", "Rule", "get_rule", "lint", "lint_source",
           "render_catalog", "render_rule"]
