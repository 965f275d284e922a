"""Values of the realized target: which names hold the target stream, which hold a
value read at the target (a loss, a log-prob, a property of the target), and which
hold a comparison of two such values.

Labels, propagated by value through one worklist fixpoint over the whole file:

* ``T``: the realized target stream. Seeds: ``TargetFacts.targets`` (a slice one ahead
  of another slice of the same stream, a loss's target argument, parameters passed
  one), the target argument of any loss call, and the shifted slice ``B[..., 1:]`` /
  ``B[a + 1:b + 1]`` of a name that holds validation tokens (``FlowFacts.tainted``).
* ``D``: a distribution over the vocabulary (``softmax`` / ``log_softmax`` output).
* ``R``: a value read *at* the target: ``X.gather(d, T)`` / ``take_along_dim`` /
  ``index_select``, an index read ``X[..., T]`` of a value that is not itself the
  target, a lookup ``d.get(T)``; a byte table read at the target is ``R`` too.
* ``L``: a loss (score) of the target: a loss call's result, an ``R`` read of a ``D``
  value, the ``log`` of an ``R`` value (``-log(p_cache[y])``), a call of an opaque
  callable (a model object, not a library function) handed the target
  (``model(x, y)``), and arithmetic on any of these.
* ``P``: a predicate of one ``R`` value (``cls[y] == 1``, ``nll > 5``): a property of
  the target.
* ``C``: an ordering comparison of two ``L`` values (``nll_mix < nll_model``): a
  choice made after seeing the target. ``P`` and ``C`` survive storing
  (``better = a < b``), indexing, negation, ``&``/``|`` and dtype casts
  (``m.float()``), not arithmetic.

Flows: assignments (tuples element-wise when both sides are literals of one
length), augmented assignments, stores into subscripts and attributes (weak: the
base gets the value's labels), mutating calls (``buf.append(v)``, ``t.copy_(v)``,
``t.add_(v)``), ``for`` targets (``zip`` / ``enumerate`` element-wise),
comprehension variables, parameters (union over the call sites of this file) and
return values. Sizes (``len``, ``.shape``, ``.numel()``, ``range``, ``*_like``)
carry nothing.

Known limits: flow-insensitive within a function (a name has the union of its
definitions' labels), context-insensitive across calls; a model whose ``forward``
computes the loss is recognised only when it is called with the target (an opaque
call), not by resolving the object's class; a loss written as
``(logp * one_hot(y)).sum(-1)`` is not recognised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from .nodes import base_name, callee_name, dotted, target_names
from .records import FuncInfo

if TYPE_CHECKING:
    from . import Facts

T, R, L, D, C, P = "T", "R", "L", "D", "C", "P"
NONE: frozenset = frozenset()
_PRED = frozenset({C, P})  # predicates: kept by storing, negation, &/|, casts; dropped by arithmetic

_LOSS_CALLS = {"cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"}
_GATHER_CALLS = {"gather": 1, "take_along_dim": 1, "index_select": 1, "take": 0, "take_along_axis": 1}
_SIZE_ATTRS = {"shape", "size", "numel", "dim", "ndim", "dtype", "device", "nelement", "stride", "is_cuda"}
_SIZE_FUNCS = {"len", "range", "isinstance", "print", "id", "type", "zeros_like", "ones_like", "empty_like",
               "full_like", "arange", "zeros", "ones", "empty", "full", "randn", "rand", "randint"}
_LIB_HEADS = {"torch", "np", "numpy", "math", "F", "jnp", "jax", "scipy", "itertools", "functools", "operator",
              "nn", "einops", "builtins"}
_BUILTINS = {"min", "max", "sum", "abs", "float", "int", "list", "tuple", "sorted", "zip", "enumerate", "map",
             "round", "reversed", "hash", "bool", "iter", "next", "dict", "set", "filter", "pow", "divmod",
             "any", "all", "str"}
_CASTS = {"float", "double", "half", "bfloat16", "long", "int", "bool", "to", "type", "cpu", "cuda", "detach",
          "clone", "contiguous", "logical_not", "logical_and", "logical_or", "bitwise_not", "item", "tolist",
          "numpy", "reshape", "view", "flatten", "squeeze", "unsqueeze"}
_MUTATORS = {"append", "extend", "insert", "copy_", "add_", "index_add_", "index_put_", "scatter_", "scatter_add_",
             "masked_scatter_", "put_", "update", "index_copy_", "fill_", "masked_fill_", "sub_", "mul_"}
_DIST_CALLS = {"softmax", "log_softmax", "sigmoid", "logsigmoid"}
_LOG_CALLS = {"log", "log1p", "log2", "log10"}
_ORDER_OPS = (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual)
_BIT_OPS = (cst.BitAnd, cst.BitOr, cst.BitXor)


def is_constant(node: cst.CSTNode | None) -> bool:
    if type(node) in (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString):
        return True
    if type(node) is cst.UnaryOperation:
        return is_constant(node.expression)
    if type(node) is cst.Call and dotted(node.func) in ("float", "int", "torch.tensor", "math.inf"):
        return all(is_constant(a.value) for a in node.args)
    return dotted(node) in ("math.inf", "float('inf')", "np.inf", "torch.inf", "inf")


def store_key(node: cst.CSTNode) -> str:
    """The name a store into ``node`` changes: ``buf`` for ``buf[i]``, ``self.tables`` for
    ``self.tables[n][k]`` (not ``self``: one table does not label the whole object)."""
    while type(node) is cst.Subscript:
        node = node.value
    if type(node) is cst.Call and type(node.func) is cst.Attribute:
        return store_key(node.func.value)
    return dotted(node) or base_name(node)


def _read_at_target(base: frozenset) -> frozenset:
    """A read of ``base`` at the target ids: a value of the target (``R``), and its score
    (``L``) when ``base`` is a distribution."""
    out = (base - _PRED - {D}) | {R}
    return out | {L} if D in base else out


def _shifted(sub: cst.Subscript) -> bool:
    """``B[1:]``, ``B[:, 1:]``, ``B[a + 1:b + 1]``: the stream one position ahead."""
    el = sub.slice[-1].slice
    if type(el) is not cst.Slice or el.step is not None:
        return False
    lo = el.lower
    if type(lo) is cst.Integer and lo.value == "1":
        return el.upper is None
    return (type(lo) is cst.BinaryOperation and type(lo.operator) is cst.Add
            and type(lo.right) is cst.Integer and lo.right.value == "1")


class TargetValues:
    """The labels of names per function, and an evaluator for expressions."""

    def __init__(self, facts: "Facts"):
        self.f = facts
        self.env: dict[tuple[int, str], frozenset] = {}
        self.ret: dict[FuncInfo, frozenset] = {}
        # per position, for functions whose every return is a tuple literal of one length
        self.ret_elems: dict[FuncInfo, list[frozenset]] = {}
        self._tuple_len: dict[FuncInfo, int] = {}
        for fi in facts.funcs:
            lens = {len(r.value.elements) if type(r.value) is cst.Tuple else -1
                    for r in fi.returns if type(r) is cst.Return and r.value is not None}
            if len(lens) == 1 and -1 not in lens and not any(type(r) is cst.Yield for r in fi.returns):
                self._tuple_len[fi] = lens.pop()
        self._memo: dict[tuple[int, int], frozenset] | None = None
        self._calls: dict[int, tuple] = {}  # id(call) -> (attr, resolved name, head, callees)
        self._stmts = self._flow_statements()
        self._fixpoint()
        self._memo = {}  # the labels are final: answers can be kept

    # ------------------------------------------------------------ lookup
    def name(self, name: str, func: FuncInfo | None) -> frozenset:
        f = func
        while f is not None:
            v = self.env.get((id(f), name))
            if v is not None or name in f.defs:
                return v or NONE
            f = f.parent
        return self.env.get((0, name), NONE)

    def _key(self, name: str, func: FuncInfo | None) -> tuple[int, str]:
        return (id(func) if func is not None else 0, name)

    def _add(self, func: FuncInfo | None, name: str, labels: frozenset) -> bool:
        if not name or not labels:
            return False
        k = self._key(name, func)
        old = self.env.get(k, NONE)
        new = old | labels
        if new != old:
            self.env[k] = new
            return True
        return False

    # ------------------------------------------------------------ expressions
    def of(self, node: cst.CSTNode | None, func: FuncInfo | None, local: dict[str, frozenset] | None = None
           ) -> frozenset:
        """The labels of the value of ``node`` evaluated in ``func``."""
        if node is None:
            return NONE
        if self._memo is not None and not local:
            key = (id(node), id(func))
            got = self._memo.get(key)
            if got is None:
                got = self._memo[key] = self._of(node, func, None)
            return got
        return self._of(node, func, local)

    def _of(self, node: cst.CSTNode, func: FuncInfo | None, local: dict[str, frozenset] | None) -> frozenset:
        tp = type(node)  # libcst nodes are final classes: ``is`` avoids the ABC isinstance
        if tp is cst.Name:
            if local and node.value in local:
                return local[node.value]
            return self.name(node.value, func)
        if tp in (cst.Integer, cst.Float, cst.SimpleString, cst.FormattedString,
                  cst.ConcatenatedString, cst.Lambda, cst.Ellipsis):
            return NONE
        if tp is cst.Attribute:
            if node.attr.value in _SIZE_ATTRS:
                return NONE
            d = dotted(node)
            own = self.name(d, func) if d else NONE
            return own | self.of(node.value, func, local)
        if tp is cst.Subscript:
            return self._subscript(node, func, local)
        if tp is cst.Call:
            return self._call(node, func, local)
        if tp is cst.Comparison:
            return self._compare(node, func, local)
        if tp is cst.BinaryOperation:
            out = self.of(node.left, func, local) | self.of(node.right, func, local)
            return out if isinstance(node.operator, _BIT_OPS) else out - _PRED
        if tp is cst.UnaryOperation:
            return self.of(node.expression, func, local)
        if tp is cst.BooleanOperation:
            return self.of(node.left, func, local) | self.of(node.right, func, local)
        if tp is cst.IfExp:
            return (self.of(node.body, func, local) | self.of(node.orelse, func, local)) - _PRED
        if tp in (cst.Tuple, cst.List, cst.Set):
            out = NONE
            for el in node.elements:
                out |= self.of(el.value, func, local)
            return out
        if tp in (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp):
            loc = dict(local or {})
            comp = node.for_in
            while comp is not None:
                self._bind(comp.target, comp.iter, func, loc)
                comp = comp.inner_for_in
            if tp is cst.DictComp:
                return self.of(node.key, func, loc) | self.of(node.value, func, loc)
            return self.of(node.elt, func, loc)
        if tp is cst.Dict:
            out = NONE
            for el in node.elements:
                if type(el) is cst.DictElement:
                    out |= self.of(el.value, func, local)
            return out
        if tp is cst.NamedExpr:
            return self.of(node.value, func, local)
        if tp in (cst.StarredElement, cst.Element):
            return self.of(node.value, func, local)
        return NONE

    def _bind(self, target: cst.CSTNode, it: cst.CSTNode, func, loc: dict) -> None:
        for name, labels in self._unpack(target, it, func, loc):
            loc[name] = loc.get(name, NONE) | labels

    def _unpack(self, target, value, func, local=None) -> list[tuple[str, frozenset]]:
        """(name, labels) bound by ``target = value`` or ``for target in value``:
        element-wise for literal tuples, ``zip(..)`` and ``enumerate(..)``."""
        if type(target) in (cst.Tuple, cst.List):
            els = [e.value for e in target.elements]
            parts = None
            if type(value) in (cst.Tuple, cst.List) and len(value.elements) == len(els):
                parts = [e.value for e in value.elements]
            elif type(value) is cst.Call and dotted(value.func) in ("zip", "enumerate"):
                args = [a.value for a in value.args if a.keyword is None]
                if dotted(value.func) == "enumerate" and args:
                    args = [None, args[0]]
                if len(args) == len(els):
                    parts = args
            if parts is None and type(value) is cst.Call:
                callees = self.f.callees_of(value)
                if callees and all(self._tuple_len.get(g) == len(els) for g in callees):
                    out = []
                    for i, t in enumerate(els):
                        lab = NONE
                        for g in callees:
                            elems = self.ret_elems.get(g)
                            lab |= elems[i] if elems else NONE
                        out += [(n, lab) for n in target_names(t)]
                    return out
            if parts is not None:
                out = []
                for t, v in zip(els, parts):
                    if v is None:
                        out += [(n, NONE) for n in target_names(t)]
                    else:
                        out += self._unpack(t, v, func, local)
                return out
        labels = self.of(value, func, local) - _PRED if type(target) is not cst.Name else self.of(value, func, local)
        return [(n, labels) for n in target_names(target)]

    def _subscript(self, node: cst.Subscript, func, local) -> frozenset:
        base = self.of(node.value, func, local)
        if T not in base and self._shift_seed(node, func):
            return base | {T}
        idx = NONE
        for el in node.slice:
            if type(el.slice) is cst.Index:
                idx |= self.of(el.slice.value, func, local)
        if T in idx and T not in base:
            return _read_at_target(base)
        return base  # an element of a stored comparison is still that comparison

    def _shift_seed(self, node: cst.Subscript, func) -> bool:
        if not _shifted(node):
            return False
        b = base_name(node.value)
        line = self.f.span(node)[0]
        return bool(b) and self.f.tainted(b, func, line)

    def _call(self, node: cst.Call, func, local) -> frozenset:
        fn = node.func
        args = [a.value for a in node.args]
        info = self._calls.get(id(node))
        if info is None:
            attr = callee_name(node)
            full = self.f.resolve(dotted(fn))
            head = full.partition(".")[0]
            info = self._calls[id(node)] = (attr, full, head,
                                            self.f.callees_of(node, attr) if head not in _LIB_HEADS else [])
        attr, full, head, callees = info
        recv = self.of(fn.value, func, local) if type(fn) is cst.Attribute else NONE
        if attr in _LOSS_CALLS:
            return frozenset({R, L})
        if attr in _SIZE_ATTRS or attr in _SIZE_FUNCS:
            return NONE
        if attr in _GATHER_CALLS and type(fn) is cst.Attribute and head not in _LIB_HEADS:
            # X.gather(dim, idx) / X.index_select(dim, idx)
            pos = [a.value for a in node.args if a.keyword is None]
            kw = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
            i = _GATHER_CALLS[attr]
            idx = kw.get("index", kw.get("indices", pos[i] if len(pos) > i else None))
            il = self.of(idx, func, local)
            if T in il and T not in recv:
                return _read_at_target(recv)
        if attr in _GATHER_CALLS and head in _LIB_HEADS:
            pos = [a.value for a in node.args if a.keyword is None]
            kw = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
            src = pos[0] if pos else kw.get("input")
            rest = pos[1:] + [v for k, v in kw.items() if k in ("index", "indices")]
            sl = self.of(src, func, local)
            il = NONE
            for v in rest:
                il |= self.of(v, func, local)
            if T in il and T not in sl:
                return _read_at_target(sl)
        argl = NONE
        for a in args:
            argl |= self.of(a, func, local)
        if callees:
            out = NONE
            for g in callees:
                out |= self.ret.get(g, NONE)
            return out
        keep_c = attr in _CASTS
        if attr in _DIST_CALLS:
            return (argl | recv | {D}) - _PRED
        if attr in _LOG_CALLS and R in (argl | recv):
            return (argl | recv | {L}) - _PRED
        if head in _LIB_HEADS or (type(fn) is cst.Name and attr in _BUILTINS) or (
                type(fn) is cst.Name and fn.value in self.f.import_aliases):
            out = argl | recv
            if attr in ("where",) or not keep_c:
                out -= _PRED
            return out
        if type(fn) is cst.Attribute and (recv or not argl):
            # a method of a labelled value (``y.reshape(-1)``, ``nll.sum()``)
            out = recv | argl
            return out if keep_c else out - _PRED
        # an opaque callable (a model object, a lookup): handed the target, its result is
        # a value of the target
        if T in argl:
            return (argl - {T, C, P, D}) | {R, L}
        return argl - _PRED

    def _compare(self, node: cst.Comparison, func, local) -> frozenset:
        ops = [node.left] + [c.comparator for c in node.comparisons]
        if all(isinstance(c.operator, _ORDER_OPS) for c in node.comparisons):
            n_r = sum(1 for o in ops if not is_constant(o) and L in self.of(o, func, local))
            if n_r >= 2:
                return frozenset({C})
        if any(R in self.of(o, func, local) for o in ops):
            return frozenset({P})
        return NONE

    # ------------------------------------------------------------ statements
    def _flow_statements(self) -> list[tuple]:
        """(kind, func, target, value) for every flow the fixpoint replays."""
        f = self.f
        out: list[tuple] = []
        for ai in f.assigns:
            if ai.value is None:
                continue
            fn = ai.ctx.func
            for t in ai.targets:
                if ai.op == "=" and type(t) not in (cst.Subscript, cst.Attribute):
                    out.append(("bind", fn, t, ai.value))
                else:
                    out.append(("weak", fn, store_key(t), ai.value))
        for ci in f.calls:
            fn = ci.node.func
            if type(fn) is cst.Attribute and ci.attr in _MUTATORS:
                b = store_key(fn.value)
                if b:
                    for a in ci.node.args:
                        out.append(("weak", ci.ctx.func, b, a.value))
            for g in f.callees_of(ci.node, ci.attr) if ci.name.partition(".")[0] not in _LIB_HEADS else ():
                names = [p.name.value for p in g.node.params.params]
                if g.cls is not None and type(fn) is cst.Attribute and names:
                    names = names[1:]
                pos = [a.value for a in ci.node.args if a.keyword is None and not a.star]
                for p, v in zip(names, pos):
                    out.append(("param", g, p, v, ci.ctx.func))
                for a in ci.node.args:
                    if a.keyword is not None:
                        out.append(("param", g, a.keyword.value, a.value, ci.ctx.func))
        for li, _ctx in f.loops:
            if type(li.node) is cst.For:
                out.append(("bind", li.func, li.node.target, li.node.iter))
        for fi in f.funcs:
            for r in fi.returns:
                if r.value is not None:
                    out.append(("ret", fi, None, r.value))
        return out

    def _fixpoint(self) -> None:
        """A worklist: every statement that can yield a label once, then again only when a
        name it reads (or a function it calls) gained one. Labels only grow, so this ends."""
        readers: dict[str, list[int]] = {}
        for i, st in enumerate(self._stmts):
            value = st[3]
            for n in self.f.names(value) if value is not None else ():
                readers.setdefault(n, []).append(i)
        # the structural targets of ``TargetFacts`` (a slice one ahead of another slice of
        # the same stream, a loss's target argument, parameters passed one)
        structural = getattr(self.f, "targets", None)
        if callable(structural):
            for fi in [None, *self.f.funcs]:
                for n in structural(fi):
                    self._add(fi, n, frozenset({T}))
        # the target argument of a loss call is the target, whatever it is called
        for ci in self.f.calls:
            if ci.attr in _LOSS_CALLS:
                pos = [a.value for a in ci.node.args if a.keyword is None]
                kw = {a.keyword.value: a.value for a in ci.node.args if a.keyword is not None}
                tgt = kw.get("target", pos[1] if len(pos) > 1 else None)
                while type(tgt) is cst.Call and type(tgt.func) is cst.Attribute \
                        and tgt.func.attr.value in _CASTS:
                    tgt = tgt.func.value
                if type(tgt) is cst.Name:
                    self._add(self._owner(tgt.value, ci.ctx.func), tgt.value, frozenset({T}))
        # The rest only carry labels (no label comes from a value that has none), so a
        # statement is first replayed when it can make one or reads a labelled name.
        labelled = {k[1].rpartition(".")[2] for k in self.env}
        todo = [i for i, st in enumerate(self._stmts)
                if st[3] is not None and (self._makes_labels(st[3]) or not labelled.isdisjoint(self.f.names(st[3])))]
        queued = set(todo)

        def touched(name: str) -> None:
            for j in readers.get(name.rpartition(".")[2], ()):
                if j not in queued:
                    queued.add(j)
                    todo.append(j)

        budget = 20 * len(self._stmts) + 100
        while todo and budget > 0:
            budget -= 1
            i = todo.pop()
            queued.discard(i)
            st = self._stmts[i]
            kind, fn = st[0], st[1]
            if kind == "bind":
                for n, lab in self._unpack(st[2], st[3], fn):
                    if self._add(fn, n, lab):
                        touched(n)
            elif kind == "weak":
                if self._add(fn, st[2], self.of(st[3], fn)):
                    touched(st[2])
            elif kind == "param":
                if self._add(fn, st[2], self.of(st[3], st[4]) - _PRED):
                    touched(st[2])
            elif kind == "ret":
                changed = False
                if fn in self._tuple_len and type(st[3]) is cst.Tuple:
                    elems = self.ret_elems.setdefault(fn, [NONE] * self._tuple_len[fn])
                    for k, el in enumerate(st[3].elements):
                        new = elems[k] | self.of(el.value, fn)
                        if new != elems[k]:
                            elems[k] = new
                            changed = True
                lab = self.of(st[3], fn)
                old = self.ret.get(fn, NONE)
                if lab | old != old:
                    self.ret[fn] = lab | old
                    changed = True
                if changed:
                    touched(fn.name)

    def _makes_labels(self, value: cst.CSTNode) -> bool:
        """Whether ``value`` holds a construct that labels a value with none: a loss or
        distribution call, a call of a function of this file (its return's labels), or a
        shifted slice (a seed of ``T``)."""
        for call in self.f.subtree_of(value, cst.Call):
            attr = callee_name(call)
            if attr in _LOSS_CALLS or attr in _DIST_CALLS or attr in self.f.funcs_by_name:
                return True
        return any(_shifted(sub) for sub in self.f.subtree_of(value, cst.Subscript))

    def _owner(self, name: str, func: FuncInfo | None) -> FuncInfo | None:
        f = func
        while f is not None:
            if name in f.defs:
                return f
            f = f.parent
        return func if func is not None and name in func.params else None


def target_values(facts: "Facts") -> TargetValues:
    tv = getattr(facts, "_target_values", None)
    if tv is None:
        tv = TargetValues(facts)
        facts._target_values = tv
    return tv
