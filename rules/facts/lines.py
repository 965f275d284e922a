"""The lines and the children of every node of a libcst module, in one code generation.

Only lines are used (``Facts.span``, the records' ``start``/``end``). libcst's
``PositionProvider`` computes the same starts and ends, with columns, through a
``CodePosition`` per node, a generator-based context manager per syntactic range and
a regular expression per token: three times the cost of the code generation itself,
about 0.85x a parse of the module. This state keeps libcst's own rules for which
tokens a node's range covers (its ``record_syntactic_position`` calls) and counts
only newlines, so the lines are exactly the provider's. The same pass records each node's children
in the order it generates them, which is source order: ``collect.Collector`` walks
them instead of running libcst's visitor, which rebuilds every node it passes.
"""

from __future__ import annotations

import contextlib
import re

import libcst as cst
from libcst._nodes.internal import CodegenState

_NEWLINE_RE = re.compile(r"\r\n?|\n")  # the provider's own definition of a line break


class _Range:
    """``record_syntactic_position`` without contextlib: the node's range is the tokens
    generated inside, or hoisted from the given child nodes."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(self, state: "_LineState", node, start_node, end_node) -> None:
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        self.start = self.state.line

    def __exit__(self, *exc) -> bool:
        spans = self.state.spans
        start = spans[self.start_node][0] if self.start_node is not None else self.start
        end = spans[self.end_node][1] if self.end_node is not None else self.state.line
        spans[self.node] = (start, end)
        return False


class _LineState(CodegenState):
    __slots__ = ("line", "starts", "open", "spans", "kids")

    def __init__(self, module: cst.Module) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.line = 1
        self.starts: list[int] = []
        self.open: list[cst.CSTNode] = []
        self.spans: dict[cst.CSTNode, tuple[int, int]] = {}
        self.kids: dict[cst.CSTNode, list[cst.CSTNode]] = {}

    def add_token(self, value: str) -> None:
        self.tokens.append(value)  # ``Module`` asks whether anything was generated
        if "\n" in value or "\r" in value:
            self.line += len(_NEWLINE_RE.findall(value))

    def before_codegen(self, node: cst.CSTNode) -> None:
        if self.open:
            parent = self.open[-1]
            kids = self.kids.get(parent)
            if kids is None:
                self.kids[parent] = [node]
            else:
                kids.append(node)
        self.open.append(node)
        self.starts.append(self.line)

    def after_codegen(self, node: cst.CSTNode) -> None:
        self.open.pop()
        start = self.starts.pop()
        if node not in self.spans:  # a syntactic range recorded inside wins
            self.spans[node] = (start, self.line)

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


class Layout:
    """``spans``: ``node -> (first line, last line)`` for every node of the module, as
    ``PositionProvider`` gives them (``start.line``, ``end.line``); ``kids``: ``node ->
    its child nodes`` in source order, the order libcst's visitors use."""

    __slots__ = ("spans", "kids")

    def __init__(self, module: cst.Module) -> None:
        state = _LineState(module)
        module._codegen(state)
        self.spans = state.spans
        self.kids = state.kids

    def walk(self, visitor: object, node: cst.CSTNode) -> None:
        """Call ``visitor.visit_X(n)`` / ``leave_X(n)`` for ``node`` and every node under
        it, in libcst's visiting order, skipping the children of a node whose ``visit_X``
        returns False; nothing is rebuilt, unlike ``node.visit(visitor)``."""
        handlers = _handlers(type(visitor))
        kids = self.kids

        def go(n: cst.CSTNode) -> None:
            kind = type(n)
            pair = handlers.get(kind)
            if pair is None:
                pair = handlers[kind] = (getattr(type(visitor), "visit_" + kind.__name__, None),
                                         getattr(type(visitor), "leave_" + kind.__name__, None))
            visit, leave = pair
            if visit is None or visit(visitor, n) is not False:
                for child in kids.get(n, ()):
                    go(child)
            if leave is not None:
                leave(visitor, n)

        go(node)


_HANDLERS: dict[type, dict[type, tuple]] = {}  # visitor class -> node type -> (visit_X, leave_X)


def _handlers(visitor_class: type) -> dict[type, tuple]:
    return _HANDLERS.setdefault(visitor_class, {})
