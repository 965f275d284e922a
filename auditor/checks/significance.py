"""PG413: does the record beat the one it is compared against, significantly?

Both rulesets are always computed and shown; the one in force is picked by
the record's date (the frontier practice applies from 2026-04-28, PR #1902).
"""

from __future__ import annotations

import math

from auditor import stats
from auditor.challenge import FRONTIER_ALPHA, FRONTIER_FROM, README_ALPHA, README_MARGIN_NATS
from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity

SIGNIFICANCE = CheckRule(
    "PG413",
    "significance",
    f"The record beats the previous one: README ruleset (>= {README_MARGIN_NATS} nats, Welch p < {README_ALPHA}) "
    f"or, from {FRONTIER_FROM}, frontier practice (Welch p < {FRONTIER_ALPHA}).",
    "README: significance; PR #1902: frontier practice",
    severity=Severity.WARNING,
)


def scores(runs) -> tuple[list[float], list[float]]:
    """Per-seed headline (val_loss, val_bpb) of runs that have both or either."""
    losses = [r.headline.val_loss for r in runs
              if r.headline and r.headline.val_loss is not None and math.isfinite(r.headline.val_loss)]
    bpbs = [r.headline.val_bpb for r in runs
            if r.headline and r.headline.val_bpb is not None and math.isfinite(r.headline.val_bpb)]
    return losses, bpbs


def compare_runs(new_runs, old_runs=None, old_losses: list[float] | None = None) -> stats.Comparison | None:
    new_loss, new_bpb = scores(new_runs)
    if old_losses is not None:
        old_loss, old_bpb = list(old_losses), []
    else:
        old_loss, old_bpb = scores(old_runs or [])
    if len(new_loss) >= 2 and len(old_loss) >= 2:
        return stats.compare(new_loss, old_loss)
    if len(new_bpb) >= 2 and len(old_bpb) >= 2 and len(new_loss) == len(new_bpb) and new_loss:
        margin = stats.nats_margin_in_bpb(new_loss, new_bpb)
        return stats.compare(
            new_bpb,
            old_bpb,
            unit="val_bpb (bits/byte)",
            margin=margin,
            note=f"val_loss missing on one side; {README_MARGIN_NATS} nats/token converted to {margin:.5f} bits/byte with this run's loss/bpb ratio",
        )
    return None


def ruleset_for(date: str | None) -> str:
    return "frontier" if date and str(date)[:10] >= FRONTIER_FROM else "readme"


def check(comparison: stats.Comparison | None, date: str | None, against: str) -> list[Finding]:
    if comparison is None:
        return [
            SIGNIFICANCE.finding(
                Severity.WARNING,
                f"cannot compare with {against}: need at least 2 per-seed val_loss (or val_bpb) values on each side",
                Location("submission.json"),
                key="no-data",
            )
        ]
    in_force = ruleset_for(date)
    result = comparison.readme if in_force == "readme" else comparison.frontier
    lines = [_describe(comparison, comparison.readme), _describe(comparison, comparison.frontier)]
    if comparison.note:
        lines.append(comparison.note)
    verdict = "passes" if result.passed else "does not pass"
    return [
        SIGNIFICANCE.finding(
            Severity.INFO if result.passed else Severity.WARNING,
            f"against {against}: improvement {comparison.improvement:+.5f} {comparison.unit}; "
            f"{verdict} the {in_force} ruleset in force for this record's date (p = {_p(result.p_value)})",
            Location("submission.json"),
            evidence=lines,
            key=f"vs:{against}",
        )
    ]


def _describe(comparison: stats.Comparison, result: stats.TestResult) -> str:
    name = {"readme": "README ruleset", "frontier": "frontier practice"}[result.ruleset]
    margin = f"improvement >= {result.margin:.5f} {comparison.unit}, " if result.margin else "any improvement, "
    status = "PASS" if result.passed else "FAIL"
    return f"{name}: {margin}one-sided Welch p = {_p(result.p_value)} (needs < {result.alpha}) -> {status}"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.4g}"
