"""Small libcst node helpers every fact module and rule uses (names, walking)."""

from __future__ import annotations

import dataclasses
import operator
import re
from bisect import bisect_left

import libcst as cst
from libcst.helpers import get_full_name_for_node


# Parsed trees hold only libcst's concrete node classes, which have no subclasses, so the
# hot helpers test ``type(node) is X``: ``isinstance`` on a libcst class runs the ABC
# machinery's Python-level ``__instancecheck__``, several times slower.

def base_name(node: cst.CSTNode | None) -> str:
    """``a`` for ``a``, ``a.b[c].d`` -> ``a`` ... the root Name of a chain."""
    while node is not None:
        kind = type(node)
        if kind is cst.Name:
            return node.value
        if kind is cst.Attribute or kind is cst.Subscript:
            node = node.value
        elif kind is cst.Call:
            node = node.func
        else:
            return ""
    return ""


_NAMED_DEFS = (cst.FunctionDef, cst.ClassDef, cst.Decorator)  # named by their name / decorator


def dotted(node: cst.CSTNode | None) -> str:
    """``get_full_name_for_node`` (``a.b.c`` for ``a.b.c`` and ``a.b.c(..)``, "" when it has
    none), with the common shape, a chain of attributes over a name, read directly."""
    attrs: list[str] = []
    n = node
    while True:  # libcst reads a call by its callee and a subscript by its value
        kind = type(n)
        if kind is cst.Attribute:
            attrs.append(n.attr.value)
            n = n.value
        elif kind is cst.Call:
            n = n.func
        elif kind is cst.Subscript:
            n = n.value
        else:
            break
    if kind is cst.Name:
        if not attrs:
            return n.value
        attrs.append(n.value)
        attrs.reverse()
        return ".".join(attrs)
    if n is None or not attrs and kind not in _NAMED_DEFS:
        return ""  # libcst gives no name
    try:
        return get_full_name_for_node(node) or ""
    except Exception:
        return ""


_SKIP_FIELD = re.compile(r"^(whitespace|lpar$|rpar$|comma$|semicolon$|leading_lines$|lines_after|header$|footer$|"
                         r"newline$|equal$|colon$|dot$|star$|asynchronous$|[lr](bracket|brace)$|(first|second)_colon$|"
                         r"(leading|trailing)_whitespace$)")
# Node types whose dataclass fields are not in source order: the order libcst generates
# their code in (``FunctionDef`` keeps its decorators after its body, ``Arg`` its keyword
# after its value).
_SOURCE_ORDER: dict[type, tuple[str, ...]] = {
    cst.FunctionDef: ("decorators", "name", "type_parameters", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    cst.Arg: ("keyword", "value"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
    cst.Parameters: ("posonly_params", "posonly_ind", "params", "star_arg", "kwonly_params", "star_kwarg"),
    cst.MatchCase: ("pattern", "guard", "body"),
}


def children(n: cst.CSTNode) -> list[cst.CSTNode]:
    """The child nodes of ``n`` in source order, whitespace and punctuation left out.
    A parsed tree's sequence fields hold only nodes, so they are taken whole."""
    fields = _FIELDS.get(type(n))
    if fields is None:
        fields = _fields(type(n))
    kids: list = []
    for v in fields(n):
        kind = type(v)
        if kind is list or kind is tuple:
            kids += v
        else:
            known = _NODE_TYPES.get(kind)
            if known is None:
                known = _NODE_TYPES[kind] = issubclass(kind, cst.CSTNode)
            if known:
                kids.append(v)
    return kids


_FIELDS: dict[type, object] = {}  # node type -> getter of its child fields' values, as a tuple
_NODE_TYPES: dict[type, bool] = {}  # value type -> is it a libcst node (ABC checks run Python)


def child_fields(kind: type) -> tuple[str, ...]:
    """The fields of a node type that can hold child nodes, in source order."""
    return _SOURCE_ORDER.get(kind) or tuple(
        f.name for f in dataclasses.fields(kind) if not _SKIP_FIELD.match(f.name) and f.type is not str)


def _fields(kind: type):
    names = child_fields(kind)
    if not names:
        getter = _no_fields
    elif len(names) == 1:
        one = operator.attrgetter(names[0])
        getter = lambda node: (one(node),)  # noqa: E731
    else:
        getter = operator.attrgetter(*names)
    _FIELDS[kind] = getter
    return getter


def _no_fields(node: cst.CSTNode) -> tuple:
    return ()


def iter_nodes(node: cst.CSTNode):
    """Every node under ``node`` (itself first), in source order, without
    libcst's visit-and-replace machinery (which rebuilds every node it passes
    and dominated the rules' running time)."""
    stack = [node]
    pop, extend = stack.pop, stack.extend
    while stack:
        n = pop()
        yield n
        kids = children(n)
        if kids:
            kids.reverse()
            extend(kids)


class Preorder:
    """Every node of a module in ``iter_nodes`` order, indexed once, so that the nodes under
    a node (``subtree``) and those of one type (``subtree_of``) are slices, not walks: the
    rules look into the same subtrees many times."""

    __slots__ = ("order", "span", "kinds")

    def __init__(self, module: cst.Module) -> None:
        self.order: list = []
        self.span: dict[int, tuple[int, int]] = {}  # id(node) -> its subtree's slice of ``order``
        self.kinds: dict[type, list[int]] = {}  # node type -> its nodes' positions in ``order``
        order, span, kinds = self.order, self.span, self.kinds
        stack: list = [module]
        while stack:
            n = stack.pop()
            if type(n) is int:  # the end of the subtree that starts at order[n]
                span[id(order[n])] = (n, len(order))
                continue
            i = len(order)
            order.append(n)
            kinds.setdefault(type(n), []).append(i)
            kids = children(n)
            if kids:
                stack.append(i)
                kids.reverse()
                stack += kids
            else:
                span[id(n)] = (i, i + 1)

    def subtree(self, node: cst.CSTNode) -> list:
        """``list(iter_nodes(node))``."""
        s = self.span.get(id(node))
        if s is None or self.order[s[0]] is not node:  # not a node of this module
            return list(iter_nodes(node))
        return self.order[s[0]:s[1]]

    def subtree_of(self, node: cst.CSTNode, kind: type) -> list:
        """The nodes of type ``kind`` under ``node`` (itself included), in source order;
        ``kind`` is a concrete libcst class (they have no subclasses)."""
        s = self.span.get(id(node))
        if s is None or self.order[s[0]] is not node:
            return [n for n in iter_nodes(node) if type(n) is kind]
        at = self.kinds.get(kind, ())
        return [self.order[i] for i in at[bisect_left(at, s[0]):bisect_left(at, s[1])]]


def string_value(node: cst.SimpleString) -> str | bytes:
    """``node.evaluated_value`` without its ``ast.literal_eval`` (a compile per literal)
    when the text between the quotes is the value: a str with no escape and no CR."""
    raw = node.raw_value
    if "b" not in node.prefix.lower() and "\\" not in raw and "\r" not in raw:
        return raw
    return node.evaluated_value


def callee_name(call: cst.Call) -> str:
    """The last name of what ``call`` calls: ``step`` for ``opt.step()``, ``f`` for ``f(x)``,
    "" for anything else (``fns[i](x)``)."""
    func = call.func
    kind = type(func)
    return func.attr.value if kind is cst.Attribute else func.value if kind is cst.Name else ""


def bound_names(node: cst.CSTNode, walk=iter_nodes) -> set[str]:
    """Names bound inside ``node`` by a comprehension's ``for`` or a lambda's parameters:
    in ``sorted(d.items(), key=lambda x: x[1])`` the ``x`` is not the enclosing
    function's ``x``. ``walk``: how to list the nodes under ``node`` (``Facts.subtree``)."""
    out: set[str] = set()
    for n in walk(node):
        kind = type(n)
        if kind is cst.CompFor:
            out.update(target_names(n.target))
        elif kind is cst.Lambda:
            out.update(p.name.value for p in n.params.params)
    return out


def target_names(node: cst.CSTNode) -> list[str]:
    """Names bound by an assignment / for target (tuples unpacked)."""
    kind = type(node)
    if kind is cst.Name:
        return [node.value]
    if kind is cst.Tuple or kind is cst.List:
        out: list[str] = []
        for el in node.elements:
            out += target_names(el.value)
        return out
    if kind is cst.StarredElement:
        return target_names(node.value)
    return []
