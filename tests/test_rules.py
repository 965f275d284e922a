"""The auto suite: every rule's embedded VALID / INVALID examples."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from rules.core import Severity
from rules import ALL_RULES, lint_source


# The longer near-miss and regression examples live beside the rules' own one or two:
# tests/fixtures/rules/examples/<code>_<invalid|valid>_<n>.py (hand-written).
EXAMPLES = Path(__file__).parent / "fixtures" / "rules" / "examples"


def _cases(kind: str):
    for rule in ALL_RULES:
        for i, code in enumerate(getattr(rule, kind)):
            yield pytest.param(rule, code, id=f"{rule.code}-{kind.lower()}-{i}")
        for path in sorted(EXAMPLES.glob(f"{rule.code.lower()}_{kind.lower()}_*.py")):
            yield pytest.param(rule, path.read_text(), id=path.stem)


def _codes(code: str, rule) -> list:
    return [f for f in lint_source(textwrap.dedent(code), file="example.py") if f.code == rule.code]


@pytest.mark.parametrize("rule", ALL_RULES, ids=[r.code for r in ALL_RULES])
def test_rule_has_examples_and_docs(rule):
    assert rule.INVALID, f"{rule.code} has no INVALID examples"
    assert rule.VALID, f"{rule.code} has no VALID examples"
    doc = rule.__doc__ or ""
    for heading in ("What it flags:", "Why: the ruling:", "Legal alternative:", "Known limits:"):
        assert heading in doc, f"{rule.code} docstring lacks {heading!r}"
    assert rule.code and rule.slug and rule.conditions


_EXPECT_RE = re.compile(r"#\s*expect:\s*(illegal|warning|info)\b")


def _expected_severity(rule, code: str) -> Severity:
    """An INVALID example may say ``# expect: warning`` (or info) when the rule
    reports that shape below its own severity (a deviation, not a breach)."""
    m = _EXPECT_RE.search(code)
    return Severity(m.group(1)) if m else rule.severity


@pytest.mark.parametrize("rule,code", list(_cases("INVALID")))
def test_invalid_example_is_flagged(rule, code):
    found = _codes(code, rule)
    assert found, f"{rule.code} missed its INVALID example:\n{code}"
    want = _expected_severity(rule, code)
    assert any(f.severity == want for f in found), (want, [(f.severity, f.message) for f in found])
    if want != Severity.ILLEGAL:  # a deviation must not be reported as illegal too
        assert not any(f.severity == Severity.ILLEGAL for f in found), [f.message for f in found]
    for f in found:
        assert f.location and f.location.line_start, f


@pytest.mark.parametrize("rule,code", list(_cases("VALID")))
def test_valid_example_is_quiet(rule, code):
    found = _codes(code, rule)
    assert not found, f"{rule.code} flagged its VALID example: {[f.message for f in found]}"


def test_every_example_file_names_a_rule():
    codes = {r.code.lower() for r in ALL_RULES}
    files = list(EXAMPLES.glob("*.py"))
    assert files and all(p.stem.split("_")[0] in codes and p.stem.split("_")[1] in ("valid", "invalid")
                         for p in files)


def test_no_rule_crashes_on_examples():
    for rule in ALL_RULES:
        for code in rule.VALID + rule.INVALID:
            for f in lint_source(textwrap.dedent(code), file="x.py"):
                assert "rule crashed" not in f.message, f
