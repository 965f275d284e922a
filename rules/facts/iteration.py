"""Loop iteration structure: which iteration a guard selects, whether a loop picks data,
where a total is reset.

These answer PG103's questions from the program's values rather than from words:

* a guard is a *value*: ``is_final = (ep == n_epochs - 1)`` then ``if is_final:``, a
  small function ``def last(i, n): return i + 1 == n``, or an early exit
  ``if ep < n - 1: continue`` all select the loop's last iteration, whatever the
  names are;
* a loop *passes over the same data* when it counts (``range``) and nothing its
  variable reaches (directly or through names assigned from it in the body)
  indexes, slices or iterates data: ``for ep in range(E)`` that only sets a
  learning rate is a pass, ``for ci in range(n_chunks)`` that slices
  ``toks[ws:ws+wl]`` through ``_window(ci, ..)`` picks data;
* a total is *reset in* a loop when the loop body rebinds it, or zeroes it in place
  (``acc = 0``, ``acc.zero_()``, ``acc[b].zero_()``, ``acc.fill_(0)``).
"""

from __future__ import annotations

import libcst as cst

from .nodes import base_name, dotted, target_names
from .records import FuncInfo, LoopInfo

FIRST, LAST, NOT_FIRST, NOT_LAST = "first", "last", "not-first", "not-last"
_NEGATE = {FIRST: NOT_FIRST, NOT_FIRST: FIRST, LAST: NOT_LAST, NOT_LAST: LAST}
# comparison operators, with the operator you get when the two sides swap
_SWAP = {cst.Equal: cst.Equal, cst.NotEqual: cst.NotEqual, cst.LessThan: cst.GreaterThan,
         cst.GreaterThan: cst.LessThan, cst.LessThanEqual: cst.GreaterThanEqual,
         cst.GreaterThanEqual: cst.LessThanEqual}
_ZEROING = {"zero_", "fill_", "mul_"}


def _norm(text: str) -> str:
    return "".join(text.split())


def _int(node: cst.CSTNode) -> int | None:
    if isinstance(node, cst.Integer):
        try:
            return int(node.value, 0)
        except ValueError:
            return None
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        v = _int(node.expression)
        return None if v is None else -v
    return None


class _Env:
    """Where a name's value comes from while a guard is read: the caller's loop body, or
    the arguments a small function was called with."""

    def __init__(self, facts, func: FuncInfo | None, loop: LoopInfo, line: int,
                 params: dict[str, tuple[cst.CSTNode, "_Env"]] | None = None):
        self.facts, self.func, self.loop, self.line = facts, func, loop, line
        self.params = params or {}

    def definition(self, name: str) -> tuple[cst.CSTNode, "_Env"] | None:
        if name in self.params:
            return self.params[name]
        if self.func is None or self.params:
            return None
        defs = [(ln, v) for ln, v in self.func.defs.get(name, ())
                if self.loop.start < ln <= self.line and v is not None]
        if len(defs) != 1 or not isinstance(defs[0][1], cst.BaseExpression):
            return None  # several bindings, or a loop/augmented one: not one value
        return defs[0][1], self


class Iteration:
    """Reads a guard relative to one loop ``for v in range(..N)``."""

    def __init__(self, facts, loop: LoopInfo):
        self.facts = facts
        self.loop = loop
        self.var = loop.targets[0] if len(loop.targets) == 1 else ""
        self.bounds = self._bounds()

    def _bounds(self) -> set[str]:
        """Normalised texts of N for ``range(N)`` / ``range(a, N)``, and of what a name N
        was assigned from (``n = args.epochs``; ``range(n)`` ... ``ep == args.epochs - 1``)."""
        it = self.loop.iter
        if not (isinstance(it, cst.Call) and dotted(it.func) == "range" and 1 <= len(it.args) <= 2):
            return set()
        n = it.args[-1].value
        out = {_norm(self.facts.code(n))}
        if isinstance(n, cst.Name) and self.loop.func is not None:
            for ln, v in self.loop.func.defs.get(n.value, ()):
                if ln <= self.loop.start and isinstance(v, cst.BaseExpression):
                    out.add(_norm(self.facts.code(v)))
        return out

    # -- what an expression says about the iteration
    def _is_var(self, node: cst.CSTNode, env: _Env, depth: int) -> bool:
        if not isinstance(node, cst.Name):
            return False
        d = env.definition(node.value)
        if d is not None and depth < 4:
            return self._is_var(d[0], d[1], depth + 1)
        return node.value == self.var and not env.params

    def _offset(self, node: cst.CSTNode, env: _Env, depth: int) -> int | None:
        """k when ``node`` is ``v + k`` / ``v - k`` / ``v`` (v the loop variable), else None."""
        if self._is_var(node, env, depth):
            return 0
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Add, cst.Subtract)):
            k = _int(node.right)
            if k is not None and self._is_var(node.left, env, depth):
                return k if isinstance(node.operator, cst.Add) else -k
        return None

    def _last_index(self, node: cst.CSTNode, env: _Env) -> int | None:
        """j when ``node`` is ``N - j`` (N the loop's bound), 0 for ``N`` itself."""
        if _norm(self.facts.code(node)) in self.bounds:
            return 0
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Subtract):
            k = _int(node.right)
            if k is not None and _norm(self.facts.code(node.left)) in self.bounds:
                return k
        if isinstance(node, cst.Name):
            d = env.definition(node.value)
            if d is not None and d[0] is not node:
                return self._last_index(d[0], d[1])
        return None

    def _compare(self, left, op, right, env: _Env, depth: int) -> str | None:
        off = self._offset(left, env, depth)
        if off is None:
            off = self._offset(right, env, depth)
            if off is None:
                return None
            left, right, op = right, left, _SWAP.get(type(op), type(op))()
        # now  v + off OP right,  i.e.  v OP right - off
        op_t = type(op)
        k = _int(right)
        if k is not None:  # v OP c: the first iteration is v == 0
            c = k - off
            if (op_t is cst.Equal and c == 0) or (op_t is cst.LessThan and c == 1) or (
                    op_t is cst.LessThanEqual and c == 0):
                return FIRST
            if (op_t is cst.NotEqual and c == 0) or (op_t is cst.GreaterThan and c == 0) or (
                    op_t is cst.GreaterThanEqual and c == 1):
                return NOT_FIRST
            return None
        j = self._last_index(right, env)
        if j is None:
            return None
        d = j + off  # v OP N - d: the last iteration is v == N - 1
        if (op_t in (cst.Equal, cst.GreaterThanEqual) and d == 1) or (op_t is cst.GreaterThan and d == 2):
            return LAST
        if (op_t in (cst.NotEqual, cst.LessThan) and d == 1) or (op_t is cst.LessThanEqual and d == 2):
            return NOT_LAST
        return None

    def classify(self, node: cst.CSTNode, env: _Env, depth: int = 0) -> str | None:
        """FIRST / LAST / NOT_FIRST / NOT_LAST when ``node`` is true exactly on (or on
        every iteration but) the first or last iteration of the loop, else None."""
        if depth > 6 or not self.var:
            return None
        if isinstance(node, cst.Comparison) and len(node.comparisons) == 1:
            c = node.comparisons[0]
            return self._compare(node.left, c.operator, c.comparator, env, depth)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            if self._is_var(node.expression, env, depth):
                return FIRST  # ``not ep``
            inner = self.classify(node.expression, env, depth + 1)
            return _NEGATE.get(inner) if inner else None
        if isinstance(node, cst.BooleanOperation):
            parts = [self.classify(node.left, env, depth + 1), self.classify(node.right, env, depth + 1)]
            if isinstance(node.operator, cst.And):  # restricted to the first/last: either side says so
                return next((p for p in parts if p in (FIRST, LAST)), None)
            return parts[0] if parts[0] == parts[1] else None
        if isinstance(node, cst.Name):
            d = env.definition(node.value)
            return self.classify(d[0], d[1], depth + 1) if d is not None else None
        if isinstance(node, cst.Call):
            return self._call(node, env, depth)
        return None

    def _call(self, call: cst.Call, env: _Env, depth: int) -> str | None:
        """A small function of this file that returns one expression: read that
        expression with its parameters bound to the call's arguments."""
        for fi in self.facts.callees_of(call):
            rets = [r.value for r in fi.returns if r.value is not None]
            if len(rets) != 1:
                continue
            params = [p.name.value for p in fi.node.params.params]
            if fi.cls is not None and params:
                params = params[1:]
            bound: dict[str, tuple[cst.CSTNode, _Env]] = {}
            for i, a in enumerate(call.args):
                if a.keyword is not None:
                    bound[a.keyword.value] = (a.value, env)
                elif i < len(params) and not a.star:
                    bound[params[i]] = (a.value, env)
            res = self.classify(rets[0], _Env(self.facts, fi, self.loop, fi.end, bound), depth + 1)
            if res:
                return res
        return None


def guard_iteration(facts, gate, loop: LoopInfo) -> str | None:
    """Which iteration of ``loop`` the region guarded by ``gate`` runs on (FIRST, LAST,
    NOT_FIRST, NOT_LAST), read through stored conditions and small functions; the
    ``else`` side and early exits (``if ep < n - 1: continue``) count by their polarity."""
    if not (loop.start <= gate.line <= loop.end):
        return None
    it = Iteration(facts, loop)
    res = it.classify(gate.test, _Env(facts, loop.func, loop, gate.line))
    if res is None:
        return None
    return res if gate.polarity else _NEGATE[res]


def picks_data(facts, loop: LoopInfo) -> bool:
    """Does the loop's variable (or a name assigned from it in the body) index, slice or
    iterate data? A loop that does not is a pass over the same data (an epoch)."""
    if not isinstance(loop.node, cst.For):
        return True
    it = loop.iter
    counts = isinstance(it, cst.Call) and dotted(it.func) == "range"
    constants = isinstance(it, (cst.List, cst.Tuple)) and all(
        isinstance(el.value, (cst.Integer, cst.Float, cst.SimpleString)) for el in it.elements)
    if not (counts or constants):
        return True  # ``for x, y in docs``: each iteration takes the next item
    derived = {t for t in loop.targets if t != "_"}
    if not derived:
        return False
    body_assigns = [ai for ai in facts.assigns
                    if ai.ctx.func is loop.func and loop.start < ai.line <= loop.end and ai.value is not None]
    derived = facts.derived_names(derived, body_assigns,
                                  lambda t: set() if isinstance(t, cst.Subscript) else set(target_names(t)))
    for sub, line, ctx in facts.subscripts:
        if ctx.func is loop.func and loop.start < line <= loop.end:
            if any(facts.names(el.slice) & derived for el in sub.slice):
                return True
    for li, _ctx in facts.loops:
        if li is not loop and li.func is loop.func and loop.start < li.start <= loop.end and li.iter is not None:
            if facts.names(li.iter) & derived:
                return True
    return False


def resets_in(facts, acc: str, loop: LoopInfo) -> list[int]:
    """Lines in ``loop``'s body that set the total ``acc`` back (rebind it, or zero it in
    place, element-wise included)."""
    out = []
    for ai in facts.assigns:
        if ai.ctx.func is loop.func and loop.start < ai.line <= loop.end and ai.op == "=":
            if any(base_name(t) == acc and not isinstance(t, cst.Subscript) for t in ai.targets):
                out.append(ai.line)
            elif any(isinstance(t, cst.Subscript) and base_name(t) == acc for t in ai.targets) and (
                    _int(ai.value) == 0 if ai.value is not None else False):
                out.append(ai.line)
    for ci in facts.calls:
        if ci.ctx.func is loop.func and loop.start < ci.line <= loop.end and ci.attr in _ZEROING:
            f = ci.node.func
            if isinstance(f, cst.Attribute) and base_name(f.value) == acc:
                if ci.attr == "zero_" or (ci.node.args and _int(ci.node.args[0].value) == 0):
                    out.append(ci.line)
    return sorted(out)

