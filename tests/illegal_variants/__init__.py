"""Illegal variants of the reference evaluation, one small explicit mutation per module.

Each module copies the relevant piece of `reference_impl` and changes exactly one
thing (marked `# ILLEGAL:`), says which condition it breaks (RULEBOOK.md) and
which rule should flag it. They are fixtures: tests run them to show the breakage
is real (C1 flip probe, C2 sum, byte count), and static rules are expected to flag
their source. They bypass the ScoreLedger on purpose, as real submissions would.

`VARIANTS` is the one table of what each variant breaks and what must catch it;
the tests read it, and each module's docstring names the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    what: str  # the mutation, the conditions it breaks (RULEBOOK.md) and the ruling
    rule: str  # the static rule that must flag its source
    entry: str | None = None  # the evaluation entry point a dynamic probe runs (None: no probe applies)
    probe: str | None = None  # the probe finding that must catch it
    env: dict = field(default_factory=dict)  # the effective config of a run that used it



VARIANTS = {
    "multi_epoch_rescoring": Variant("multi-epoch TTT counting a later epoch's loss (C3, C4; PR #568)",
                                     "PG103", "eval_multi_epoch_ttt", "PG150"),
    "pre_eval_ttt": Variant("training on validation tokens before scoring them (C3)",
                            "PG201", "adapt_then_evaluate", "PG150", {"PRE_EVAL_TTT": "1"}),
    "target_keyed_ngram": Variant("n-gram cache read with the target in the hash key (C1, C2; PR #779)",
                                  "PG101", "eval_target_keyed", "PG152"),
    "scored_region_slot": Variant("SLOT delta fitted on the positions it then scores (C1; PR #1240)",
                                  "PG104", "eval_scored_region_slot", "PG150"),
    "unmasked_smear_sorted": Variant("SmearGate without the BOS mask in a length-sorted document batch (C1; PR #1797)",
                                     "PG105", "doc_nll_sorted_batch", "PG153"),
    "space_double_counted": Variant("the space byte counted in the table and in the accumulator (bytes; issue #1719)",
                                    "PG301"),
}
