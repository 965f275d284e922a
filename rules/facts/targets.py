"""Targets by structure: the shifted token stream, whatever it is called.

A name holds the realized next token when the program makes it so:

* it is sliced one position ahead of another slice of the same stream
  (``x, y = buf[:-1], buf[1:]``; ``tokens[s:e]`` and ``tokens[s + 1:e + 1]``;
  ``batch[:, :-1]`` and ``batch[:, 1:]``);
* it is the target argument of a loss (``F.cross_entropy(logits, t)``,
  ``nll_loss``);
* it is derived from one of those by indexing, slicing, a view or a conversion
  (``t[b, co:co + cl]``, ``y.reshape(-1)``, ``y.cpu().numpy()``);
* it is a parameter of one of this file's functions that a call site passes a
  target (``score(logits, y)`` makes ``score``'s second parameter a target).
"""

from __future__ import annotations

import libcst as cst

from .nodes import base_name, target_names
from .records import FuncInfo

_LOSSES = {"cross_entropy", "nll_loss"}
_VIEWS = {"reshape", "view", "flatten", "long", "int", "to", "cpu", "numpy", "astype", "contiguous",
          "unsqueeze", "squeeze", "clone", "detach", "cuda", "tolist", "type", "ravel", "T"}


def _bound(facts, node: cst.BaseExpression | None, upper: bool) -> tuple[str, int]:
    """A slice bound as (symbolic part, constant): ``s + 1`` -> ("s", 1), ``-1`` as an
    upper bound -> ("END", -1), an omitted upper bound -> ("END", 0)."""
    if node is None:
        return ("END", 0) if upper else ("", 0)
    if type(node) is cst.Integer:
        v = int(node.value, 0)
        return ("", v)
    if type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus \
            and type(node.expression) is cst.Integer:
        v = -int(node.expression.value, 0)
        return ("END", v) if upper else ("", v)
    if type(node) is cst.BinaryOperation and type(node.operator) in (cst.Add, cst.Subtract) \
            and type(node.right) is cst.Integer:
        k = int(node.right.value, 0)
        sym = "".join(facts.code(node.left).split())
        return (sym, k if type(node.operator) is cst.Add else -k)
    return ("".join(facts.code(node).split()), 0)


def _slices(facts, sub: cst.Subscript) -> list[tuple] | None:
    """Each dimension of a subscript as ('all',) / ('slice', lo, hi) / ('index', text)."""
    out = []
    for el in sub.slice:
        sl = el.slice
        if type(sl) is cst.Slice:
            if sl.step is not None:
                return None
            if sl.lower is None and sl.upper is None:
                out.append(("all",))
            else:
                out.append(("slice", _bound(facts, sl.lower, False), _bound(facts, sl.upper, True)))
        elif type(sl) is cst.Index:
            out.append(("index", "".join(facts.code(sl.value).split())))
        else:
            return None
    return out


def _ahead(a: list[tuple], b: list[tuple]) -> bool:
    """Is slice ``a`` the slice ``b`` moved one position ahead in exactly one dimension?"""
    if len(a) != len(b):
        return False
    moved = 0
    for da, db in zip(a, b):
        if da == db:
            continue
        if da[0] == db[0] == "slice":
            (la, ka), (ua, kua) = da[1], da[2]
            (lb, kb), (ub, kub) = db[1], db[2]
            if la == lb and ua == ub and ka == kb + 1 and kua == kub + 1:
                moved += 1
                continue
        return False
    return moved == 1


def _sliced(node: cst.BaseExpression) -> cst.Subscript | None:
    """The subscript under a chain of views/conversions: ``buf[1:].to(dev)`` -> ``buf[1:]``."""
    while type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _VIEWS:
        node = node.func.value
    return node if type(node) is cst.Subscript else None


def _derived_from(node: cst.BaseExpression, names: set[str]) -> bool:
    """``node`` is a target in ``names`` seen through indexing, slicing, views, conversions."""
    while True:
        if type(node) is cst.Name:
            return node.value in names
        if type(node) is cst.Subscript:
            node = node.value
        elif type(node) is cst.Attribute:
            if node.attr.value not in _VIEWS:
                return False
            node = node.value
        elif type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _VIEWS:
            node = node.func.value
        else:
            return False


class TargetFacts:
    """The target part of ``Facts`` (a mixin: reads the collected assignments and calls)."""

    def targets(self, func: FuncInfo | None) -> set[str]:
        cache = getattr(self, "_targets", None)
        if cache is None:
            cache = self._targets = self._build_targets()
        return cache.get(func, set())

    def _build_targets(self) -> dict:
        by_func: dict = {}
        slices_by_func: dict = {}
        for ai in self.assigns:
            if ai.op != "=" or ai.value is None:
                continue
            values = [ai.value]
            tgts = ai.targets
            if len(tgts) == 1 and type(tgts[0]) is cst.Tuple and type(ai.value) is cst.Tuple \
                    and len(tgts[0].elements) == len(ai.value.elements):
                tgts = [e.value for e in tgts[0].elements]
                values = [e.value for e in ai.value.elements]
            for t, v in zip(tgts, values) if len(values) == len(tgts) else ():
                sub = _sliced(v)
                # ``y = buf[1:]``, or filled in place: ``y_batch[i, :n] = chunk[1:]``
                name = t.value if type(t) is cst.Name else (
                    base_name(t) if type(t) is cst.Subscript else "")
                if sub is None or not name:
                    continue
                dims = _slices(self, sub)
                if dims:
                    slices_by_func.setdefault(ai.ctx.func, []).append(
                        (name, "".join(self.code(sub.value).split()), dims))
        for func, rows in slices_by_func.items():
            for name, base, dims in rows:
                if any(b == base and _ahead(dims, d) for _n, b, d in rows):
                    by_func.setdefault(func, set()).add(name)
        for ci in self.calls:
            if ci.attr in _LOSSES and len(ci.node.args) >= 2 and ci.node.args[1].keyword is None:
                n = base_name(ci.node.args[1].value)
                if n:
                    by_func.setdefault(ci.ctx.func, set()).add(n)
            for a in ci.node.args:
                if a.keyword is not None and a.keyword.value == "target" and ci.attr in _LOSSES:
                    n = base_name(a.value)
                    if n:
                        by_func.setdefault(ci.ctx.func, set()).add(n)
        for _round in range(3):
            changed = False
            for ai in self.assigns:  # derived names
                known = by_func.get(ai.ctx.func, set())
                if ai.op == "=" and ai.value is not None and known and _derived_from(ai.value, known):
                    for t in ai.targets:
                        new = set(target_names(t)) - known
                        if new and type(t) is not cst.Subscript:
                            by_func.setdefault(ai.ctx.func, set()).update(new)
                            changed = True
            for ci in self.calls:  # parameters a call site passes a target
                known = by_func.get(ci.ctx.func, set())
                if not known:
                    continue
                for fi in self.callees(ci):
                    params = [p.name.value for p in fi.node.params.params]
                    if fi.cls is not None and params:
                        params = params[1:]
                    for i, a in enumerate(ci.node.args):
                        if a.star or not _derived_from(a.value, known):
                            continue
                        p = a.keyword.value if a.keyword is not None else (params[i] if i < len(params) else None)
                        if p and p not in by_func.get(fi, set()):
                            by_func.setdefault(fi, set()).add(p)
                            changed = True
            if not changed:
                break
        return by_func

    def is_target(self, name: str, func: FuncInfo | None) -> bool:
        return name in self.targets(func)

