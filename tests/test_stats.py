"""Significance: both rulesets, units, and the ruleset picked by date."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from auditor import stats
from auditor.checks import significance
from rules.core import Severity


def test_readme_margin_is_applied_before_the_test():
    old = [2.0000, 2.0010, 1.9990]
    just_better = [1.9990, 1.9995, 1.9985]  # 0.001 nats better: below the 0.005 margin
    result = stats.compare(just_better, old)
    assert not result.readme.passed
    assert result.frontier.passed
    expected = scipy_stats.ttest_ind(just_better, [x - 0.005 for x in old], equal_var=False, alternative="less").pvalue
    assert result.readme.p_value == pytest.approx(expected)


def test_clear_improvement_passes_both():
    old = [2.0000, 2.0010, 1.9990]
    new = [1.9900, 1.9905, 1.9895]
    result = stats.compare(new, old)
    assert result.readme.passed and result.frontier.passed
    assert result.improvement == pytest.approx(0.01)


def test_worse_record_fails_both():
    result = stats.compare([2.01, 2.02, 2.03], [2.0, 2.001, 1.999])
    assert not result.readme.passed and not result.frontier.passed


def test_too_few_seeds_gives_nan_not_a_crash():
    assert math.isnan(stats.welch_less([1.0], [2.0, 2.1]))


def test_constant_samples_are_decided_exactly():
    assert stats.welch_less([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert stats.welch_less([2.0, 2.0], [1.0, 1.0]) == 1.0


def test_margin_converted_to_bits_per_byte_with_run_ratio():
    losses, bpbs = [1.90, 1.91], [1.1260, 1.1319]
    ratio = sum(b / l for l, b in zip(losses, bpbs)) / 2
    assert stats.nats_margin_in_bpb(losses, bpbs) == pytest.approx(0.005 * ratio)


@pytest.mark.parametrize("date, ruleset", [("2026-03-20", "readme"), ("2026-04-28", "frontier"), (None, "readme")])
def test_ruleset_in_force_follows_the_date(date, ruleset):
    assert significance.ruleset_for(date) == ruleset


def test_significance_finding_reports_both_rulesets():
    comparison = stats.compare([1.9990, 1.9995, 1.9985], [2.0000, 2.0010, 1.9990])
    before = significance.check(comparison, "2026-03-20", "prev")[0]
    after = significance.check(comparison, "2026-05-01", "prev")[0]
    assert before.severity == Severity.WARNING and "readme ruleset" in before.message
    assert after.severity == Severity.INFO and "frontier ruleset" in after.message
    assert any(line.startswith("README ruleset") for line in before.evidence)
    assert any(line.startswith("frontier practice") for line in before.evidence)
