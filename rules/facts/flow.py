"""Validation-token flow: which names hold validation data, through definitions,
calls, parameters and return values."""

from __future__ import annotations

import libcst as cst

from .names import VAL_STRING, is_val_name, is_val_string
from .nodes import bound_names, children, literal_text
from .records import FuncInfo


class FlowFacts:
    """The validation-flow part of ``Facts`` (a mixin: reads the collected definitions).

    Every query is memoised under its full arguments, the depth included. The
    recursion ends at the depth limit, so it needs no cycle guard; a guard (or a
    key without the depth) would cache a provisional ``False`` met inside a cycle or
    at the limit and hand it to a later query, so the answer would depend on the
    order of queries, and that order on set iteration, which varies between
    processes.
    """

    def tainted(self, name: str, func: FuncInfo | None, line: int | None = None, _depth: int = 0) -> bool:
        """Does ``name`` (as seen in ``func`` at ``line``) hold validation data?"""
        if is_val_name(name):
            return True
        key = (name, func, line, _depth)
        if key in self._taint_cache:
            return self._taint_cache[key]
        res = False
        if _depth < 12:
            scope = func.defs if func is not None else self.module_defs
            defs = scope.get(name)
            if defs is None and func is not None and func.parent is not None:
                res = self.tainted(name, func.parent, None, _depth + 1)
            elif defs:
                chosen = defs
                if line is not None:
                    before = [d for d in defs if d[0] <= line]
                    chosen = [before[-1]] if before else defs
                    if before:
                        # a later definition in a loop around the read reaches it through the
                        # back edge (``prev = (h, y)`` at the end of the body, read at the top)
                        loops = [li for li, _c in self.loops if li.func is func and li.start <= line <= li.end]
                        chosen = chosen + [d for d in defs if d[0] > line
                                           and any(li.start <= d[0] <= li.end for li in loops)]
                for dline, value in chosen:
                    if value is None:  # a parameter: tainted by callers
                        if func is not None and self._param_tainted(func, name, _depth):
                            res = True
                            break
                        continue
                    if self.expr_tainted(value, func, dline, _depth + 1):
                        res = True
                        break
        self._taint_cache[key] = res
        return res

    def flow_names(self, node: cst.CSTNode) -> set[str]:
        """The names whose data can reach the value of ``node``.

        The arguments of a call to a function defined in this file are left out: what
        its parameters pass on reaches its return values, which ``_returns_tainted``
        follows, while ``model = train_model(h, val_data)`` (a training loop that also
        evaluates) returns a model, not validation data. Names a comprehension or a
        lambda binds inside ``node`` are left out too (see ``bound_names``).
        """
        out = self._flow_names.get(node)
        if out is not None:
            return out
        out = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, cst.Name):
                out.add(n.value)
            elif is_val_string(literal_text(n) or ""):
                out.add(VAL_STRING)
            if isinstance(n, cst.Call) and self.callees_of(n):
                stack.append(n.func)
                continue
            stack.extend(children(n))
        out -= bound_names(node)
        self._flow_names[node] = out
        return out

    def expr_tainted(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None,
                     _depth: int = 0) -> bool:
        names = self.flow_names(node)
        if VAL_STRING in names:
            return True
        for n in names:
            if n in self.funcs_by_name:
                if self._returns_tainted(n, _depth):
                    return True
                continue
            if self.tainted(n, func, line, _depth + 1):
                return True
        return False

    def _returns_tainted(self, fname: str, _depth: int) -> bool:
        key = ("ret", fname, _depth)
        if key in self._taint_cache:
            return self._taint_cache[key]
        res = False
        if is_val_name(fname):
            res = True
        elif _depth < 10:
            for fi in self.funcs_by_name.get(fname, []):
                for r in fi.returns:
                    if r.value is not None and self.expr_tainted(r.value, fi, None, _depth + 1):
                        res = True
        self._taint_cache[key] = res
        return res

    def _param_tainted(self, fi: FuncInfo, param: str, _depth: int) -> bool:
        key = ("param", fi, param, _depth)
        if key in self._taint_cache:
            return self._taint_cache[key]
        res = False
        try:
            idx = [p.name.value for p in fi.node.params.params].index(param)
        except ValueError:
            idx = -1
        if fi.cls is not None and idx >= 0:
            idx -= 1  # self
        for ci in self.calls:
            if ci.attr != fi.name or fi not in self.callees(ci):
                continue
            arg = None
            pos = [a for a in ci.node.args if a.keyword is None and not a.star]
            for a in ci.node.args:
                if a.keyword is not None and a.keyword.value == param:
                    arg = a.value
            if arg is None and 0 <= idx < len(pos):
                arg = pos[idx].value
            if arg is not None and self.expr_tainted(arg, ci.ctx.func, ci.line, _depth + 1):
                res = True
                break
        self._taint_cache[key] = res
        return res
