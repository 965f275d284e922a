"""Illegal variants of the reference evaluation, one small explicit mutation per module.

Each module copies the relevant piece of `reference_impl` and changes exactly one
thing (marked `# ILLEGAL:`), says which condition it breaks (RULEBOOK.md) and
which rule should flag it. They are fixtures: tests run them to show the breakage
is real (C1 flip probe, C2 sum, byte count), and static rules are expected to flag
their source. They bypass the ScoreLedger on purpose, as real submissions would.
"""

VARIANTS = {
    "multi_epoch_rescoring": "multi-epoch TTT counting a later epoch's loss (C3, C4; PR #568)",
    "pre_eval_ttt": "training on validation tokens before scoring them (C3)",
    "target_keyed_ngram": "n-gram cache read with the target in the hash key (C1, C2; PR #779)",
    "scored_region_slot": "SLOT delta fitted on the positions it then scores (C1; PR #1240)",
    "unmasked_smear_sorted": "SmearGate without the BOS mask in a length-sorted document batch (C1; PR #1797)",
    "space_double_counted": "the space byte counted in the table and in the accumulator (bytes; issue #1719)",
}
