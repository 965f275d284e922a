"""Is a new record significantly better than the one it claims to beat?

Two rulesets are in use (RULEBOOK.md, "Significance"):

* README: the new mean val_loss must be lower by at least 0.005 nats, tested
  one-sided with Welch's t-test at p < 0.01. We test the shifted hypothesis
  H0: mean_new >= mean_old - 0.005 against H1: mean_new < mean_old - 0.005.
* Frontier practice (from 2026-04-28, PR #1902): any improvement over the
  previous frontier with one-sided Welch p < 0.25, no margin.

Both are computed on per-seed val_loss (nats per token), the unit the README
states its margin in. When only val_bpb is available the same test runs on
val_bpb with the margin converted through the observed bits-per-byte to
nats-per-token ratio, and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

from auditor.challenge import FRONTIER_ALPHA, README_ALPHA, README_MARGIN_NATS


@dataclass(frozen=True)
class TestResult:
    ruleset: str  # "readme" | "frontier"
    margin: float  # in the unit of the samples
    alpha: float
    p_value: float
    passed: bool


@dataclass(frozen=True)
class Comparison:
    unit: str  # "val_loss (nats/token)" or "val_bpb (bits/byte)"
    new: tuple[float, ...]
    old: tuple[float, ...]
    readme: TestResult
    frontier: TestResult
    note: str = ""

    @property
    def improvement(self) -> float:
        return mean(self.old) - mean(self.new)


def welch_less(new: list[float], old: list[float], margin: float = 0.0) -> float:
    """One-sided Welch p-value for mean(new) < mean(old) - margin."""
    if len(new) < 2 or len(old) < 2:
        return math.nan
    shifted = [x - margin for x in old]
    if stdev(new) == 0 and stdev(shifted) == 0:
        # scipy returns nan for two constant samples; the answer is certain.
        return 0.0 if mean(new) < mean(shifted) else 1.0
    from scipy import stats  # here: scipy costs most of `pgolf check`'s start-up

    result = stats.ttest_ind(new, shifted, equal_var=False, alternative="less")
    return float(result.pvalue)


def compare(
    new: list[float],
    old: list[float],
    *,
    unit: str = "val_loss (nats/token)",
    margin: float = README_MARGIN_NATS,
    note: str = "",
) -> Comparison:
    """Run both rulesets on per-seed scores (lower is better)."""
    p_readme = welch_less(new, old, margin)
    p_frontier = welch_less(new, old, 0.0)
    return Comparison(
        unit=unit,
        new=tuple(new),
        old=tuple(old),
        readme=TestResult("readme", margin, README_ALPHA, p_readme, p_readme < README_ALPHA),
        frontier=TestResult("frontier", 0.0, FRONTIER_ALPHA, p_frontier, p_frontier < FRONTIER_ALPHA),
        note=note,
    )


def nats_margin_in_bpb(losses: list[float], bpbs: list[float], margin: float = README_MARGIN_NATS) -> float:
    """Convert a margin in nats/token to bits/byte with the run's own ratio.

    val_bpb = val_loss / ln 2 * tokens / bytes, so bpb / loss is the same
    factor for every token of a run; averaging the per-seed ratio is exact
    enough for a threshold.
    """
    ratios = [b / l for l, b in zip(losses, bpbs) if l]
    return margin * mean(ratios)
