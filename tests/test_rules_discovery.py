"""A static rule is one file: the package finds it, lists it, explains it and runs it."""

from __future__ import annotations

import sys
import textwrap

from typer.testing import CliRunner

import rules
from auditor.cli import app
from rules import engine, lint_source

runner = CliRunner()


def test_a_new_rule_file_is_discovered_listed_and_run(tmp_path, monkeypatch):
    (tmp_path / "pg199_print_call.py").write_text(textwrap.dedent('''
        from rules.core import Severity
        from rules.engine import Hit, Rule, register

        @register
        class PrintCall(Rule):
            """Flags print calls (a test rule).

            What it flags:
                ``print(...)``.
            Why: the ruling:
                none; a test.
            Legal alternative:
                logging.
            Known limits:
                none.
            """
            code = "PG199"
            slug = "print-call"
            severity = Severity.WARNING
            conditions = ("test",)
            INVALID = ["print(1)"]
            VALID = ["x = 1"]

            def check(self, facts):
                for ci in facts.calls:
                    if ci.name == "print":
                        yield Hit(ci.node, "a print call")
    '''))
    monkeypatch.setattr(rules, "__path__", [*rules.__path__, str(tmp_path)])
    before = list(engine._REGISTRY)
    try:
        found = rules.discover()
        assert "PG199" in [r.code for r in found]
        assert "PG199" in rules.render_catalog()
        assert [f.code for f in lint_source("print(1)\n", file="t.py")] == ["PG199"]
        # the CLI's registry finds it too: listed, explained by code and slug, run by lint
        listing = runner.invoke(app, ["rules"]).stdout
        assert "PG199\tprint-call\twarning\tstatic rule\tFlags print calls (a test rule)." in listing.splitlines()
        for name in ("PG199", "print-call"):
            page = runner.invoke(app, ["explain", name]).stdout
            assert page.startswith("# PG199 print-call") and "## Legal alternative\n\nlogging." in page
        script = tmp_path / "uses_print.py"
        script.write_text("print(1)\n")
        linted = runner.invoke(app, ["lint", str(script)])
        assert ": warning PG199 print-call: a print call" in linted.stdout
    finally:
        engine._REGISTRY[:] = before
        sys.modules.pop("rules.pg199_print_call", None)


def test_every_rule_module_in_the_package_is_registered():
    from pathlib import Path
    files = sorted(p.stem for p in Path(rules.__file__).parent.glob("pg[0-9][0-9][0-9]_*.py"))
    assert [f[:5].upper() for f in files] == [r.code for r in rules.ALL_RULES]
