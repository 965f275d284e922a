"""``rules.facts.lines.Layout`` gives every node the lines libcst's own
``PositionProvider`` gives it, while generating code only where a statement's
``ast`` lines do not settle them; ``nodes.children`` lists children in source order."""

from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from rules.facts.lines import Layout
from rules.facts.nodes import children, iter_nodes

ROOT = Path(__file__).resolve().parent.parent

TRICKY = {
    "one line each": "import os\nx = 1\ny = f(x)\n",
    "multi-line statement": "x = foo(\n    a,\n    b)\nz = (\n  1 +\n  2)\n",
    "parenthesised statement start": "(a,\n b) = 1, 2\n(\n  call()\n)\n",
    "semicolons": "a = 1; b = (2 +\n 3); c = 4\n",
    "if elif else": (
        "if a:\n    x = 1\n\n# gap\nelif b:\n    y = (2 +\n         3)\nelse:\n    # c\n    z = 3\n"),
    "else holding only an if": "if a:\n    pass\nelse:\n    if b:\n        c = 1\n",
    "multi-line header": "if (a and\n        b):\n    c = 1\nwhile (x <\n       y): x += 1\n",
    "header on one line, suite on it": "if a: b = 1\nfor i in r: s += i\n",
    "multi-line header with a suite on its last line": "if (a and\n    b): c = 1\n",
    "decorators": "@dec\n@other(\n    1)\ndef f(x,\n      y) -> int:\n    return x\n\n@d\nclass C(B):\n    z = 1\n",
    "try clauses": (
        "try:\n    a = 1\nexcept (ValueError,\n        KeyError) as e:\n    b = 2\nexcept Exception:\n    pass\n"
        "else:\n    c = 3\nfinally:\n    d = 4\n"),
    "loops with else": "for i in range(3):\n    pass\nelse:\n    done = 1\nwhile t:\n    t -= 1\nelse: u = 1\n",
    "with and async": (
        "with open(p) as f, open(q) as g:\n    data = f.read()\n"
        "async def h():\n    async with l:\n        await x\n    async for i in y:\n        pass\n"),
    "strings": 's = ("a"\n     "b" f"{x}")\nt = """one\ntwo"""\nu = f"""{a}\n{b}"""\n',
    "backslash": "x = 1 + \\\n    2\nif a and \\\n        b:\n    pass\n",
    "comments and blank lines": "# head\n\n\ndef f():\n    # lead\n\n    return 1\n    # tail\n\n# end\n",
    "nested functions": "class A:\n    def m(self):\n        def g():\n            return [i for i in\n                    range(3)]\n        return g\n",
    "match": "match cmd:\n    case [x, y]:\n        pass\n    case {'k': v} if v:\n        w = v\n    case _:\n        pass\n",
    "no trailing newline": "x = 1\nif x:\n    y = 2",
    "empty module": "",
    "only comments": "# nothing\n",
}


def _provider_lines(module: cst.Module) -> dict[int, tuple[int, int]]:
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    return {id(n): (p.start.line, p.end.line) for n, p in positions.items()}


def _assert_same_lines(text: str) -> None:
    module = cst.parse_module(text)
    expected = _provider_lines(module)
    spans = Layout(module, text).spans
    wrong = [(type(n).__name__, module.code_for_node(n)[:40], expected.get(id(n)), spans.get(id(n)))
             for n in iter_nodes(module) if spans.get(id(n)) != expected.get(id(n))]
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_layout_lines_match_libcsts_position_provider(name):
    _assert_same_lines(TRICKY[name])


def test_layout_lines_match_on_the_projects_own_code():
    files = sorted((ROOT / "rules").rglob("*.py")) + sorted((ROOT / "reference_impl").rglob("*.py"))
    assert len(files) > 10
    for path in files:
        _assert_same_lines(path.read_text(encoding="utf-8"))


def test_statements_that_do_not_pair_fall_back_to_generating_the_module():
    text = TRICKY["try clauses"]
    module = cst.parse_module(text)
    other = ast.parse("x = 1\n")  # another text's statements: they cannot pair
    spans = Layout(module, text, tree=other).spans
    expected = _provider_lines(module)
    assert all(spans[id(n)] == expected[id(n)] for n in iter_nodes(module) if id(n) in expected)


@pytest.mark.parametrize("name", ["decorators", "try clauses", "match", "strings", "nested functions"])
def test_children_come_in_source_order(name):
    module = cst.parse_module(TRICKY[name])
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    checked = 0
    for node in iter_nodes(module):
        starts = [(positions[k].start.line, positions[k].start.column) for k in children(node) if k in positions]
        assert starts == sorted(starts), (type(node).__name__, starts)
        checked += len(starts) > 1
    assert checked > 3


@pytest.mark.parametrize("literal", ['"a"', "'''x\ny'''", 'r"a\\d"', 'b"x"', 'B"x"', '"a\\n"', 'u"z"', 'R""',
                                     "''", 'Rb"q"', '"tab\\there"'])
def test_string_value_is_the_literals_value(literal):
    from rules.facts.nodes import string_value

    node = cst.parse_expression(literal)
    assert string_value(node) == node.evaluated_value
    assert type(string_value(node)) is type(node.evaluated_value)
