"""One registry of every code: what the source can emit, `pgolf rules`, `pgolf explain`
and the README's tables all agree with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.catalog import registry
from auditor.cli import app
from rules.core import Registry, RuleSpec, Severity

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("auditor", "rules", "reference_impl")
CODE = re.compile(r"^PG\d{3}$")
runner = CliRunner()


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _spec_calls(tree):
    """(code, slug) of every RuleSpec/CheckRule(...) call with literal arguments."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("RuleSpec", "CheckRule")
                and len(node.args) >= 2 and all(isinstance(a, ast.Constant) for a in node.args[:2])):
            yield node.args[0].value, node.args[1].value


def test_every_code_literal_in_the_source_is_in_the_registry():
    known = {spec.code for spec in registry()}
    seen = {}
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.match(node.value):
                seen.setdefault(node.value, path.relative_to(ROOT).as_posix())
    assert len(seen) > 40  # the walk found the declarations, not nothing
    missing = {code: where for code, where in seen.items() if code not in known}
    assert not missing, f"codes emitted but not registered: {missing}"


def test_every_declared_spec_and_static_rule_is_registered_with_its_slug():
    reg = registry()
    declared = []
    for path, tree in _sources():
        declared += list(_spec_calls(tree))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            attrs = {t.id: s.value.value for s in cls.body if isinstance(s, ast.Assign) for t in s.targets
                     if isinstance(t, ast.Name) and isinstance(s.value, ast.Constant)}
            if "code" in attrs and "slug" in attrs:
                declared.append((attrs["code"], attrs["slug"]))
    assert len(declared) > 40
    for code, slug in declared:
        spec = reg.get(code)
        assert spec is not None and spec.slug == slug, (code, slug)


def test_findings_are_made_by_specs_only():
    """Outside the core and the static engine (which builds them from its registered
    rule classes), every finding comes from a spec's ``finding()``: a code nobody
    registered cannot be reported."""
    direct = set()
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Finding":
                direct.add(path.relative_to(ROOT).as_posix())
    assert direct == {"rules/core/registry.py", "rules/engine.py"}


@pytest.mark.parametrize("spec", list(registry()), ids=lambda s: s.code)
def test_explain_answers_for_every_code_by_code_and_by_slug(spec):
    for name in (spec.code, spec.code.lower(), spec.slug, f"{spec.code} {spec.slug}"):
        result = runner.invoke(app, ["explain", name])
        assert result.exit_code == 0, (name, result.output)
        assert result.stdout.startswith(f"# {spec.code} {spec.slug}\n")
        assert f"Severity: {spec.severity.value}" in result.stdout and spec.summary in result.stdout


def test_explain_a_slug_and_a_harness_code():
    page = runner.invoke(app, ["explain", "multi-pass-scoring"]).stdout
    assert page.startswith("# PG103 multi-pass-scoring") and "## Known limits" in page
    page = runner.invoke(app, ["explain", "PG420"]).stdout
    assert page.startswith("# PG420 rerun-size-limit") and "rerun harness" in page
    assert runner.invoke(app, ["explain", "PG999"]).exit_code == 2
    assert runner.invoke(app, ["explain", "PG103 wrong-slug"]).exit_code == 2


def test_every_engine_is_in_the_registry():
    kinds = {kind for spec in registry() for kind in spec.kinds}
    assert kinds == {"static rule", "folder check", "PR gate", "dynamic probe", "rerun harness"}
    shared = {spec.code for spec in registry() if len(spec.kinds) > 1}
    assert {"PG106", "PG203", "PG301", "PG302"} <= shared
    page = registry().get("PG302").page()
    assert "## What it flags" in page and "## As a folder check" in page


def test_piped_rules_lists_every_code_with_whole_slugs():
    result = runner.invoke(app, ["rules"])  # CliRunner's stdout is no TTY: the piped form
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [(s.code, s.slug, s.severity.value) for s in registry()]
    assert ["PG159", "probe-not-run", "warning", "dynamic probe"] == rows[[r[0] for r in rows].index("PG159")][:4]


def test_registry_refuses_a_code_with_two_slugs_or_a_slug_with_two_codes():
    a = RuleSpec("PG901", "one-thing", "a")
    with pytest.raises(ValueError):
        Registry([a, RuleSpec("PG901", "another-thing", "b")])
    with pytest.raises(ValueError):
        Registry([a, RuleSpec("PG902", "one-thing", "b")])
    with pytest.raises(ValueError):
        Registry([RuleSpec("PG9", "x", "bad code")])
    merged = Registry([a, RuleSpec("PG901", "one-thing", "b", severity=Severity.WARNING, kinds=("folder check",))])
    assert merged.get("one-thing").severity == Severity.ILLEGAL


def _readme_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [[cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if re.match(r"^\| `?PG\d{3}`? \|", line)]


def test_readme_tables_match_the_registry():
    """Every README row names a registered code with its slug (and severity where the
    table has one), and every registered code has a row."""
    reg = registry()
    rows = _readme_rows()
    documented = set()
    for row in rows:
        spec = reg.get(row[0])
        assert spec is not None, row
        assert row[1] == spec.slug, (row[0], row[1], spec.slug)
        if len(row) > 3 and row[2] in {s.value for s in Severity}:
            assert row[2] == spec.severity.value, (row[0], row[2], spec.severity.value)
        documented.add(row[0])
    assert documented == {spec.code for spec in reg}, {spec.code for spec in reg} ^ documented


def test_findings_on_the_examples_are_registered_and_never_above_their_severity():
    from auditor.audit import Options, audit_path

    reg = registry()
    findings = [f for folder in sorted((ROOT / "examples").glob("*/*")) if folder.is_dir()
                for f in audit_path(folder, Options()).findings]
    assert {f.code for f in findings} >= {"PG101", "PG302", "PG404", "PG411"}
    for f in findings:
        spec = reg.get(f.code)
        assert spec is not None and spec.slug == f.slug and f.severity.rank >= spec.severity.rank, f.rule
