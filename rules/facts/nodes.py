"""Small libcst node helpers every fact module and rule uses (names, walking)."""

from __future__ import annotations

import dataclasses
import re

import libcst as cst
from libcst.helpers import get_full_name_for_node


def base_name(node: cst.CSTNode | None) -> str:
    """``a`` for ``a``, ``a.b[c].d`` -> ``a`` ... the root Name of a chain."""
    while node is not None:
        if isinstance(node, cst.Name):
            return node.value
        if isinstance(node, cst.Attribute):
            node = node.value
        elif isinstance(node, cst.Subscript):
            node = node.value
        elif isinstance(node, cst.Call):
            node = node.func
        else:
            return ""
    return ""


def dotted(node: cst.CSTNode | None) -> str:
    if node is None:
        return ""
    try:
        return get_full_name_for_node(node) or ""
    except Exception:
        return ""


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
_SKIP_FIELD = re.compile(r"^(whitespace|lpar$|rpar$|comma$|semicolon$|leading_lines$|lines_after|header$|footer$|"
                         r"newline$|equal$|colon$|dot$|star$|asynchronous$)")


def children(n: cst.CSTNode) -> list[cst.CSTNode]:
    """The child nodes of ``n`` in source order, whitespace and punctuation left out."""
    names = _CHILD_FIELDS.get(type(n))
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(n) if not _SKIP_FIELD.match(f.name))
        _CHILD_FIELDS[type(n)] = names
    kids: list = []
    for name in names:
        v = getattr(n, name)
        if _is_node(type(v)):
            kids.append(v)
        elif isinstance(v, (list, tuple)):
            kids.extend(x for x in v if _is_node(type(x)))
    return kids


_NODE_TYPES: dict[type, bool] = {}


def _is_node(kind: type) -> bool:
    """``isinstance(v, cst.CSTNode)`` by the value's type, looked up once: libcst's
    node classes are ABCs, and an ABC ``isinstance`` that fails runs Python code."""
    known = _NODE_TYPES.get(kind)
    if known is None:
        known = _NODE_TYPES[kind] = issubclass(kind, cst.CSTNode)
    return known


def iter_nodes(node: cst.CSTNode):
    """Every node under ``node`` (itself first), in source order, without
    libcst's visit-and-replace machinery (which rebuilds every node it passes
    and dominated the rules' running time)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def literal_text(node: cst.CSTNode) -> str | None:
    """The text of a string literal or of an f-string's literal part, else None."""
    if isinstance(node, (cst.SimpleString, cst.FormattedStringText)):
        return node.value
    return None


def bound_names(node: cst.CSTNode) -> set[str]:
    """Names bound inside ``node`` by a comprehension's ``for`` or a lambda's parameters:
    in ``sorted(d.items(), key=lambda x: x[1])`` the ``x`` is not the enclosing
    function's ``x``."""
    out: set[str] = set()
    for n in iter_nodes(node):
        if isinstance(n, cst.CompFor):
            out.update(target_names(n.target))
        elif isinstance(n, cst.Lambda):
            out.update(p.name.value for p in n.params.params)
    return out


def target_names(node: cst.CSTNode) -> list[str]:
    """Names bound by an assignment / for target (tuples unpacked)."""
    if isinstance(node, cst.Name):
        return [node.value]
    if isinstance(node, (cst.Tuple, cst.List)):
        out: list[str] = []
        for el in node.elements:
            out += target_names(el.value)
        return out
    if isinstance(node, cst.StarredElement):
        return target_names(node.value)
    return []
