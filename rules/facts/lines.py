"""The first and last line of every node of a libcst module, mostly without generating its code.

``Facts.span`` and the records' ``start``/``end`` use lines only. libcst's
``PositionProvider`` generates the whole module's code with a ``CodePosition`` per
node; even counting only newlines (``_LineState``, which keeps libcst's own rules for
which tokens a node's range covers), generating every token cost half a parse of the
module. Python's own parser already knows every statement's lines, at a tenth of a
libcst parse, and a statement's range is the same in both trees. So ``Layout`` pairs
the two trees' statements in source order and generates code only where a statement's
lines do not already say where everything inside it is: a simple statement that spans
several lines, a compound statement whose header does (or that has decorators), and
the ``else:``/``except``/``finally:`` clauses, whose keyword lines ``ast`` does not keep.
Each of those is generated alone, its lines counted from 1 and shifted so that its
first statement lands on the line ``ast`` gives. A module whose statements do not pair
(a libcst and CPython disagreement) falls back to generating all of it.
"""

from __future__ import annotations

import ast
import contextlib
import re

import libcst as cst
from libcst._nodes.internal import CodegenState

from .nodes import Preorder, children

_NEWLINE_RE = re.compile(r"\r\n?|\n")  # the provider's own definition of a line break


class _Range:
    """``record_syntactic_position`` without contextlib: the node's range is the tokens
    generated inside, or hoisted from the given child nodes."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(self, state: "_LineState", node, start_node, end_node) -> None:
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        state = self.state
        self.start = state.line
        if self.node is state.anchor:
            state.anchored_at = state.line
            if state.stop:
                raise _Stop
        if self.node is state.owner:
            state.owner_start = state.line

    def __exit__(self, kind, *exc) -> bool:
        if kind is not None:  # unwinding from ``_Stop``: the range never closed
            return False
        spans = self.state.spans
        start = spans[id(self.start_node)][0] if self.start_node is not None else self.start
        end = spans[id(self.end_node)][1] if self.end_node is not None else self.state.line
        spans[id(self.node)] = (start, end)
        return False


class _Stop(Exception):
    """Raised when a header's generation reaches its first body statement."""


class _LineState(CodegenState):
    """Counts lines while libcst generates code. ``anchor``: the node whose range start is
    remembered in ``anchored_at`` (generation stops there when ``stop``); ``owner``: a
    clause whose range is still open when generation stops (``owner_start``)."""

    __slots__ = ("line", "starts", "spans", "anchor", "anchored_at", "stop", "owner", "owner_start")

    def __init__(self, module: cst.Module, anchor=None, stop: bool = False, owner=None) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.line = 1
        self.starts: list[int] = []
        self.spans: dict[int, tuple[int, int]] = {}
        self.anchor, self.anchored_at, self.stop = anchor, None, stop
        self.owner, self.owner_start = owner, None

    def add_token(self, value: str) -> None:
        self.tokens.append(value)  # ``Module`` asks whether anything was generated
        if "\n" in value or "\r" in value:
            self.line += len(_NEWLINE_RE.findall(value))

    def before_codegen(self, node: cst.CSTNode) -> None:
        self.starts.append(self.line)

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self.starts.pop()
        if id(node) not in self.spans:  # a syntactic range recorded inside wins
            self.spans[id(node)] = (start, self.line)

    def record_syntactic_position(self, node, *, start_node=None, end_node=None) -> _Range:
        return _Range(self, node, start_node, end_node)


_NO_RANGE = contextlib.nullcontext()


class _CodeState(CodegenState):
    """``CodegenState`` without the generator-based context manager libcst opens for
    every syntactic range: the tokens are the same, only positions go unrecorded."""

    __slots__ = ()

    def record_syntactic_position(self, node, *, start_node=None, end_node=None):
        return _NO_RANGE


def code_for_node(module: cst.Module, node: cst.CSTNode) -> str:
    """``module.code_for_node(node)``, the same text at about two thirds of the cost; a
    name or string literal without parentheses is its own text."""
    kind = type(node)
    if (kind is cst.Name or kind is cst.SimpleString) and not node.lpar:
        return node.value
    state = _CodeState(default_indent=module.default_indent, default_newline=module.default_newline)
    node._codegen(state)
    return "".join(state.tokens)


# libcst statement class -> the ``ast`` classes of the same statement
_PAIRS: dict[type, tuple[type, ...]] = {
    cst.Assign: (ast.Assign,), cst.AugAssign: (ast.AugAssign,), cst.AnnAssign: (ast.AnnAssign,),
    cst.Return: (ast.Return,), cst.Del: (ast.Delete,), cst.Import: (ast.Import,),
    cst.ImportFrom: (ast.ImportFrom,), cst.Expr: (ast.Expr,), cst.Pass: (ast.Pass,),
    cst.Break: (ast.Break,), cst.Continue: (ast.Continue,), cst.Global: (ast.Global,),
    cst.Nonlocal: (ast.Nonlocal,), cst.Raise: (ast.Raise,), cst.Assert: (ast.Assert,),
    cst.If: (ast.If,), cst.For: (ast.For, ast.AsyncFor), cst.While: (ast.While,),
    cst.With: (ast.With, ast.AsyncWith), cst.FunctionDef: (ast.FunctionDef, ast.AsyncFunctionDef),
    cst.ClassDef: (ast.ClassDef,), cst.Try: (ast.Try,), cst.Match: (ast.Match,),
}
for _cst_name, _ast_name in (("TryStar", "TryStar"), ("TypeAlias", "TypeAlias")):
    if hasattr(cst, _cst_name) and hasattr(ast, _ast_name):
        _PAIRS[getattr(cst, _cst_name)] = (getattr(ast, _ast_name),)
_LINES = (cst.SimpleStatementLine, cst.SimpleStatementSuite)
_HEADER_FIELDS: dict[type, tuple[str, ...]] = {  # the parts of a compound statement before its body
    cst.If: ("test",), cst.For: ("target", "iter"), cst.While: ("test",), cst.With: ("items",),
    cst.FunctionDef: ("name", "params", "returns"), cst.ClassDef: ("name", "bases", "keywords"),
    cst.Try: (), cst.Match: ("subject",),
}


class _Misaligned(Exception):
    """The libcst and ``ast`` statements do not pair one to one."""


def _clauses(st: cst.CSTNode) -> list:
    """The parts of a compound statement that hold statements, in source order: suites,
    and the ``elif`` (an ``If``), ``else``, ``except``, ``finally`` and ``case`` clauses."""
    out: list = [] if isinstance(st, cst.Match) else [st.body]
    out += getattr(st, "handlers", ()) or ()
    orelse = getattr(st, "orelse", None)
    if orelse is not None:
        out.append(orelse)
    finalbody = getattr(st, "finalbody", None)
    if finalbody is not None:
        out.append(finalbody)
    if isinstance(st, cst.Match):
        out += st.cases
    return out


def _cst_statements(body, out: list) -> None:
    for st in body:
        if isinstance(st, cst.SimpleStatementLine):
            out += st.body
        else:
            out.append(st)
            _cst_clause_statements(st, out)


def _cst_clause_statements(st, out: list) -> None:
    for part in _clauses(st):
        if isinstance(part, cst.SimpleStatementSuite):
            out += part.body
        elif isinstance(part, cst.IndentedBlock):
            _cst_statements(part.body, out)
        elif isinstance(part, cst.If):  # elif
            out.append(part)
            _cst_clause_statements(part, out)
        else:  # Else, Finally, ExceptHandler, MatchCase
            _cst_clause_statements(part, out)


def _ast_statements(body, out: list) -> None:
    for st in body:
        out.append(st)
        for name in ("body", "handlers", "orelse", "finalbody", "cases"):
            for part in getattr(st, name, ()):
                if isinstance(part, ast.stmt):
                    _ast_statements((part,), out)
                else:  # ExceptHandler, match_case
                    _ast_statements(part.body, out)


class Layout:
    """``spans``: ``id(node) -> (first line, last line)`` for every node of the module, as
    ``PositionProvider`` gives them (``start.line``, ``end.line``); keyed by ``id``
    because a libcst node's ``__hash__`` is a Python call. ``tree``: the same text's
    ``ast`` module, when the caller has already parsed it. ``preorder``: the module's
    nodes indexed in one walk (``nodes.Preorder``), which gives a one-line statement's
    nodes as a slice here and every subtree to the facts and rules after."""

    __slots__ = ("module", "spans", "preorder", "_lines")

    def __init__(self, module: cst.Module, text: str | None = None, tree: ast.Module | None = None) -> None:
        self.module = module
        self.spans: dict[int, tuple[int, int]] = {}
        self.preorder = Preorder(module)
        if text is None:
            text = module.code
        try:
            self._from_statements(module, tree if tree is not None else ast.parse(text))
            # libcst generates the statement's newline a last line may lack
            ends = 1 + len(_NEWLINE_RE.findall(text)) + (bool(text) and text[-1] not in "\r\n")
            self.spans[id(module)] = (1, ends)
        except (_Misaligned, SyntaxError, ValueError):
            state = _LineState(module)
            module._codegen(state)
            self.spans = state.spans

    def _from_statements(self, module: cst.Module, tree: ast.Module) -> None:
        mine: list = []
        _cst_statements(module.body, mine)
        theirs: list = []
        _ast_statements(tree.body, theirs)
        if len(mine) != len(theirs):
            raise _Misaligned
        lines: dict[int, tuple[int, int]] = {}  # id(statement) -> ast's lines
        for st, a in zip(mine, theirs):
            if not isinstance(a, _PAIRS.get(type(st), ())):
                raise _Misaligned
            lines[id(st)] = (a.lineno, a.end_lineno)
        self._lines = lines
        self._block(module.body)

    # -- statements
    def _first_line(self, st: cst.CSTNode) -> int:
        """The line a statement's range starts on: ``ast``'s line of its first statement."""
        return self._lines[id(st.body[0] if isinstance(st, _LINES) else st)][0]

    def _block(self, body) -> None:
        for st in body:
            if isinstance(st, cst.SimpleStatementLine):
                self._line(st)
            else:
                self._compound(st)

    def _line(self, line: cst.CSTNode) -> None:
        """A simple statement line (or a suite on its header's line): on one line, all of
        it is on that line; else its code is generated."""
        first, last = self._lines[id(line.body[0])][0], self._lines[id(line.body[-1])][1]
        if first == last:
            self._fill(line, first)
        else:
            self._generate(line, anchor=line, line=first)

    def _compound(self, st: cst.CSTNode) -> None:
        self.spans[id(st)] = self._lines[id(st)]
        first_body = _first_statement(st.body) if not isinstance(st, cst.Match) else None
        line = self._lines[id(st)][0]
        if first_body is not None and not getattr(st, "decorators", ()) and _one_line_header(
                line, self._first_line(first_body), isinstance(first_body, cst.SimpleStatementSuite)):
            for name in _HEADER_FIELDS.get(type(st), ()):
                value = getattr(st, name)
                for node in value if isinstance(value, (list, tuple)) else (value,):
                    if node is not None:
                        self._fill(node, line)
        else:  # a header over several lines, decorators, or ``match``
            anchor = first_body if first_body is not None else _first_statement(st.cases[0].body)
            self._generate(st, anchor=anchor, line=self._first_line(anchor), stop=True)
        for part in _clauses(st):
            if isinstance(part, cst.If):
                self._compound(part)
            elif isinstance(part, _LINES + (cst.IndentedBlock,)):
                self._suite(part)
            else:
                self._clause(part)

    def _clause(self, clause: cst.CSTNode) -> None:
        """``else:``, ``except ...:``, ``finally:``, ``case ...:``: generated up to the
        first statement of the body, which fixes the keyword's line."""
        anchor = _first_statement(clause.body)
        start = self._generate(clause, anchor=anchor, line=self._first_line(anchor), stop=True, owner=clause)
        self._suite(clause.body)
        self.spans[id(clause)] = (start, self.spans[id(clause.body)][1])

    def _suite(self, suite: cst.CSTNode) -> None:
        if isinstance(suite, cst.SimpleStatementSuite):
            self._line(suite)
            return
        self._block(suite.body)
        self.spans[id(suite)] = (self.spans[id(suite.body[0])][0], self.spans[id(suite.body[-1])][1])

    # -- lines
    def _fill(self, node: cst.CSTNode, line: int) -> None:
        self.spans.update(dict.fromkeys(map(id, self.preorder.subtree(node)), (line, line)))

    def _generate(self, node: cst.CSTNode, *, anchor: cst.CSTNode, line: int, stop: bool = False,
                  owner: cst.CSTNode | None = None) -> int | None:
        """Generate ``node``'s code (up to ``anchor`` when ``stop``), counting lines from 1,
        then shift every range so that ``anchor`` starts on ``line``. Returns the shifted
        start of ``owner``'s range."""
        state = _LineState(self.module, anchor=anchor, stop=stop, owner=owner)
        try:
            node._codegen(state)
        except _Stop:
            pass
        if state.anchored_at is None:
            raise _Misaligned
        shift = line - state.anchored_at
        spans = self.spans
        for n, (a, b) in state.spans.items():
            if n not in spans:
                spans[n] = (a + shift, b + shift)
        return state.owner_start + shift if state.owner_start is not None else None

    def walk(self, visitor: object, node: cst.CSTNode) -> None:
        """Call ``visitor.visit_X(n)`` / ``leave_X(n)`` for ``node`` and every node under
        it, in source order, skipping the children of a node whose ``visit_X`` returns
        False; nothing is rebuilt, unlike ``node.visit(visitor)``."""
        handlers = _handlers(type(visitor))

        def go(n: cst.CSTNode) -> None:
            kind = type(n)
            pair = handlers.get(kind)
            if pair is None:
                pair = handlers[kind] = (getattr(type(visitor), "visit_" + kind.__name__, None),
                                         getattr(type(visitor), "leave_" + kind.__name__, None))
            visit, leave = pair
            if visit is None or visit(visitor, n) is not False:
                for child in children(n):
                    go(child)
            if leave is not None:
                leave(visitor, n)

        go(node)


def _one_line_header(line: int, body_line: int, same_line_suite: bool) -> bool:
    """Whether a header starting on ``line`` ends there: a suite on the header's line starts
    on the colon's line; an indented body starts on a line after the colon's."""
    return body_line == line if same_line_suite else body_line <= line + 1


def _first_statement(suite: cst.CSTNode) -> cst.CSTNode:
    """The first statement of a suite: the ``SimpleStatementSuite`` itself, or the first
    line or compound statement of an ``IndentedBlock``."""
    return suite if isinstance(suite, cst.SimpleStatementSuite) else suite.body[0]


_HANDLERS: dict[type, dict[type, tuple]] = {}  # visitor class -> node type -> (visit_X, leave_X)


def _handlers(visitor_class: type) -> dict[type, tuple]:
    return _HANDLERS.setdefault(visitor_class, {})
