"""Two-pass evaluation (PG103 part 3): state filled with validation tokens, then read
again by a score that reaches the reported result.

The shape, by structure and not by names: inside one function F,

1. a *fill*: an in-place accumulation into an object S with validation data (a table
   ``S[k] += 1``, ``S.scatter_add_``, ``np.add.at(S, ..)``, or a call that does so to
   S: a method of S, a local function S is passed to, a nested function that
   accumulates into the S it closes over), the call's data being validation tokens;
2. after the whole fill has ended (after the outermost loop of F around it), a *read*
   of S (S is mentioned, passed on, or closed over by a called nested function);
3. the read's value flows, through F's assignments, into what F returns, and on the
   way it is a score: a scoring site, a ``log`` of it, or a call of a scoring
   function.

A single pass that scores a chunk and then adds it to S reads S inside the loop that
fills it (step 2 fails); a cache built from training data has no validation fill
(step 1 fails); a second score that is only logged never reaches the return (step 3
fails).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import libcst as cst

from .facts import Facts, FuncInfo, base_name, dotted, is_loss_name, iter_nodes

# in-place accumulation methods of tensors / arrays / counters: statistics, not stores
_ACC_METHODS = {"add_", "index_add_", "scatter_add_", "index_put_", "scatter_reduce_", "put_", "update"}
_ACC_FUNCS = {"np.add.at", "numpy.add.at", "torch.index_add", "torch.scatter_add"}
_LOG_CALLS = {"log", "log2", "log10", "log1p", "log_softmax", "cross_entropy", "nll_loss"}


@dataclass
class Fill:
    root: str  # the name in F that holds the filled state
    line: int
    end: int
    node: cst.CSTNode
    ctx: object


@dataclass
class Read:
    node: cst.CSTNode
    line: int
    end: int
    ctx: object  # None for a return statement
    targets: set  # names the read's value is stored in
    value: cst.CSTNode
    is_return: bool = False


_COLLECT_METHODS = {"append", "extend", "insert", "add_", "copy_"}


def _collects(ci) -> str:
    """``acc.append(v)`` / ``acc.add_(v)``: the receiver name that collects the argument."""
    if ci.attr in _COLLECT_METHODS and type(ci.node.func) is cst.Attribute:
        return base_name(ci.node.func.value)
    return ""


def _params(fi: FuncInfo) -> list[str]:
    return [p.name.value for p in fi.node.params.params]


def _local(fi: FuncInfo, name: str) -> bool:
    return name in fi.defs


class TwoPass:
    def __init__(self, facts: Facts):
        self.f = facts
        self._ext: dict[FuncInfo, dict[str, bool]] = {}
        self._log_funcs: dict[FuncInfo, bool] = {}
        self.assigns_of: dict[FuncInfo | None, list] = {}
        for ai in facts.assigns:
            self.assigns_of.setdefault(ai.ctx.func, []).append(ai)
        self._build()

    # ------------------------------------------------------------- mutations
    def _direct(self, fi: FuncInfo | None):
        """(state key, line, end, node, plain, ctx) of in-place accumulations written in ``fi``;
        ``plain`` marks ``x += ...`` on a bare name (a rebinding unless ``x`` is a shared array)."""
        f = self.f
        for ai in self.assigns_of.get(fi, ()):
            if ai.value is None or not ai.targets:
                continue
            t = ai.targets[0]
            root = base_name(t)
            if not root:
                continue
            if ai.op == "AddAssign":
                yield _key(t), ai.line, ai.end, ai.node, type(t) is cst.Name, ai.ctx
            elif ai.op == "=" and type(t) is cst.Subscript and _mentions(ai.value, _key(t), f.names(ai.value)):
                yield _key(t), ai.line, ai.end, ai.node, False, ai.ctx  # read-modify-write
            elif ai.op == "=" and type(t) is cst.Attribute and _mentions(ai.value, _key(t), f.names(ai.value)) \
                    and type(ai.value) is cst.BinaryOperation:
                yield _key(t), ai.line, ai.end, ai.node, False, ai.ctx  # ``self.c = self.c + x``
        for ci in f.calls_by_func.get(fi, ()):
            func = ci.node.func
            if type(func) is cst.Attribute and ci.attr in _ACC_METHODS and not f.callees(ci):
                if base_name(func.value):
                    yield _key(func.value), ci.line, ci.end, ci.node, False, ci.ctx
            elif f.resolve(ci.name) in _ACC_FUNCS and ci.node.args:
                if base_name(ci.node.args[0].value):
                    yield _key(ci.node.args[0].value), ci.line, ci.end, ci.node, False, ci.ctx

    def _call_fills(self, fi: FuncInfo | None, ci) -> list[str]:
        """State keys of ``fi`` that the call ``ci`` accumulates into (through a local
        callee), leaving out those whose accumulation the call switches off with a
        literal argument (``score_chunks(.., update=False)`` against ``if update:``)."""
        f = self.f
        out: list[str] = []
        func = ci.node.func
        for g in f.callees(ci):
            if g is fi:
                continue
            ext = self._ext.get(g, {})
            if not ext:
                continue
            params = _params(g)
            method = g.cls is not None
            bound = _bindings(g, ci, method)

            def live(p: str) -> bool:
                return not all(_disabled(gates, g, bound) for gates in ext[p])

            if method and type(func) is cst.Attribute and params and params[0] in ext and live(params[0]):
                if base_name(func.value):
                    out.append(_key(func.value))
            for p, arg in bound.items():
                if p in ext and arg is not None and base_name(arg) and live(p) and (not method or p != params[0]):
                    out.append(_key(arg))
            if g.parent is not None and fi is not None and _is_within(g, fi):
                # a nested function accumulating into names it closes over
                out += [n for n in ext if not _local(g, n) and n not in params and live(n)]
        return out

    def _build(self) -> None:
        """``_ext[g]``: the params and free names ``g`` accumulates into (transitively),
        each with the gates of every place that does it."""
        f = self.f
        for fi in f.funcs:
            ext: dict[str, list] = {}
            params = set(_params(fi))
            returned = {n for r in fi.returns for n in f.names(r)}
            for key, _l, _e, _n, plain, ctx in self._direct(fi):
                root = _head(key)
                if plain and (root not in params or root in returned):
                    continue  # ``x += 1`` on a local or a returned value: a rebinding
                if root in params or not _local(fi, root):
                    ext.setdefault(root, []).append(ctx.gates)
            self._ext[fi] = ext
        changed, rounds = True, 0
        while changed and rounds < 8:
            changed, rounds = False, rounds + 1
            for fi in f.funcs:
                ext = self._ext[fi]
                params = set(_params(fi))
                for ci in f.calls_by_func.get(fi, ()):
                    for r in map(_head, self._call_fills(fi, ci)):
                        if r in params or not _local(fi, r):
                            lst = ext.setdefault(r, [])
                            if not any(g is ci.ctx.gates for g in lst):
                                lst.append(ci.ctx.gates)
                                changed = True

    # --------------------------------------------------------------- fills in F
    def fills(self, fi: FuncInfo, any_data: bool = False) -> list[Fill]:
        """Accumulations into state in ``fi`` with validation data (with any data when
        ``any_data``)."""
        f = self.f
        out: list[Fill] = []
        for key, line, end, node, plain, ctx in self._direct(fi):
            if plain or is_loss_name(key.split(".")[-1]):
                continue  # a scalar total, not a table
            if any_data or f.expr_tainted(node, fi, line):
                out.append(Fill(key, line, end, node, ctx))
        for ci in f.calls_by_func.get(fi, ()):
            roots = [r for r in self._call_fills(fi, ci) if not is_loss_name(r.split(".")[-1])]
            if not roots:
                continue
            tainted = any_data or any(f.expr_tainted(a.value, fi, ci.line) for a in ci.node.args)
            if not tainted:
                # a nested function: its own accumulation carries the validation data
                tainted = any(self._nested_tainted(g, r) for g in f.callees(ci) if _is_within(g, fi)
                              for r in roots)
            if tainted:
                for r in dict.fromkeys(roots):
                    out.append(Fill(r, ci.line, ci.end, ci.node, ci.ctx))
        return out

    def _nested_tainted(self, g: FuncInfo, root: str, depth: int = 0) -> bool:
        f = self.f
        for r, line, _e, node, _plain, _ctx in self._direct(g):
            if _head(r) == root and f.expr_tainted(node, g, line):
                return True
        for ci in f.calls_by_func.get(g, ()):
            if root in map(_head, self._call_fills(g, ci)) and any(f.expr_tainted(a.value, g, ci.line) for a in ci.node.args):
                return True
        return False

    # --------------------------------------------------------------- reads in F
    def reads(self, fi: FuncInfo, root: str, after: int):
        """Statements of ``fi`` after line ``after`` that read ``root``: assignments,
        returns, and ``acc.append(..)``-style calls."""
        f = self.f
        closures = [g for g in f.funcs if g.parent is fi and _head(root) in f.names(g.node.body)
                    and not _local(g, _head(root))]

        def reads_root(node) -> bool:
            names = f.names(node)
            return _mentions(node, root, names) or any(g.name in names for g in closures)

        out: list[Read] = []
        for ai in self.assigns_of.get(fi, ()):
            if ai.line > after and ai.value is not None and reads_root(ai.value):
                targets = {n for t in ai.targets for n in _all_names(t)}
                out.append(Read(ai.node, ai.line, ai.end, ai.ctx, targets, ai.value))
        for r in fi.returns:
            if type(r) is cst.Return and r.value is not None:
                line, end = f.span(r)
                if line > after and reads_root(r.value):
                    out.append(Read(r, line, end, None, set(), r.value, is_return=True))
        for ci in f.calls_by_func.get(fi, ()):
            recv = _collects(ci)
            if recv and ci.line > after and any(reads_root(a.value) for a in ci.node.args):
                out.append(Read(ci.node, ci.line, ci.end, ci.ctx, {recv}, ci.node))
        out.sort(key=lambda r: r.line)
        return out

    def _scoring_call(self, node: cst.CSTNode, fi: FuncInfo) -> bool:
        f = self.f
        for n in iter_nodes(node):
            if type(n) is not cst.Call:
                continue
            for g in f.callees_of(n):
                if g is fi:
                    continue
                if "score" in f.func_kinds.get(g, ()) or self._logs(g):
                    return True
        return False

    def _logs(self, g: FuncInfo) -> bool:
        """Does ``g`` take the log of a computed value (a probability -> an NLL)?"""
        v = self._log_funcs.get(g)
        if v is None:
            v = False
            for ci in self.f.calls_by_func.get(g, ()):
                if ci.attr in _LOG_CALLS and ci.node.args and not isinstance(
                        ci.node.args[0].value, (cst.Integer, cst.Float)):
                    v = True
                    break
            self._log_funcs[g] = v
        return v

    def reaches_report(self, fi: FuncInfo, read: "Read") -> tuple[int, bool] | None:
        """Follow the read's value forward through ``fi``: ``(line, scored)`` when it
        reaches a return (or, in a function that returns nothing, a print / log call)."""
        f = self.f
        score_nodes = {s.node for s in f.sites if s.kind == "score" and s.ctx.func is fi}
        scored = read.node in score_nodes or self._scoring_call(read.value, fi) or self._logs_chain(read.value, set())
        if read.is_return:
            return read.line, scored
        start = read.line
        chain = set(read.targets)
        later = sorted((ai for ai in self.assigns_of.get(fi, ()) if ai.line > start and ai.value is not None),
                       key=lambda a: a.line)
        collects = [(ci, recv) for ci in f.calls_by_func.get(fi, ()) if ci.line > start
                    for recv in [_collects(ci)] if recv]
        loops = [li for li, _c in f.loops if li.func is fi and li.start > start]
        for _ in range(4):
            grew = False
            for ai in later:
                if not f.names(ai.value) & chain:
                    continue
                if ai.node in score_nodes or self._logs_chain(ai.value, chain):
                    scored = True
                for t in ai.targets:
                    new = set(_all_names(t)) - chain
                    if new:
                        chain |= new
                        grew = True
            for ci, recv in collects:
                if recv not in chain and any(f.names(a.value) & chain for a in ci.node.args):
                    if ci.node in score_nodes or self._logs_chain(ci.node, chain):
                        scored = True
                    chain.add(recv)
                    grew = True
            for li in loops:
                if li.iter is not None and f.names(li.iter) & chain and set(li.targets) - chain:
                    chain |= set(li.targets)
                    grew = True
            if not grew:
                break
        value_returns = [r for r in fi.returns if type(r) is cst.Return and r.value is not None]
        for r in value_returns:
            line = f.span(r)[0]
            if line > start and f.names(r.value) & chain:
                return line, scored
        if not value_returns:
            # a function that returns nothing (``main``) reports by printing / logging
            for ci in f.calls_by_func.get(fi, ()):
                if ci.line > start and _is_report_call(ci) and f.names(ci.node) & chain:
                    return ci.line, scored
        return None

    def _logs_chain(self, node: cst.CSTNode, chain: set[str]) -> bool:
        """``node`` takes the log of a value (from ``chain`` when it is given)."""
        for n in iter_nodes(node):
            if type(n) is cst.Call and n.args:
                name = n.func.attr.value if type(n.func) is cst.Attribute else getattr(n.func, "value", "")
                if name in _LOG_CALLS:
                    arg = n.args[0].value
                    if type(arg) in (cst.Integer, cst.Float):
                        continue
                    if not chain or self.f.names(arg) & chain:
                        return True
        return False


def _key(expr: cst.CSTNode) -> str:
    """The state an expression designates: ``self.tables[n]`` -> ``self.tables``,
    ``cache`` -> ``cache``, ``self.cache.view(-1)`` -> ``self.cache``."""
    node = expr
    while True:
        if type(node) is cst.Subscript:
            node = node.value
        elif type(node) is cst.Call:
            node = node.func.value if type(node.func) is cst.Attribute else node.func
        else:
            break
    return dotted(node) or base_name(expr)


def _head(key: str) -> str:
    return key.split(".", 1)[0]


def _mentions(node: cst.CSTNode, key: str, names: set[str]) -> bool:
    """Does ``node`` read the state ``key`` (a name, or a dotted attribute path)?"""
    if "." not in key:
        return key in names
    if _head(key) not in names:
        return False
    return any(type(n) is cst.Attribute and dotted(n) == key for n in iter_nodes(node))


def _is_report_call(ci) -> bool:
    """``print(..)``, ``log0(..)``, ``logger.info(..)``: where a function without a return
    value reports its metric."""
    a = ci.attr or ""
    if a == "print" or (a.startswith("log") and a not in _LOG_CALLS):
        return True
    return type(ci.node.func) is cst.Attribute and base_name(ci.node.func.value) in ("logger", "logging", "log")


def _all_names(t: cst.CSTNode) -> list[str]:
    """Names a target binds or writes into (``a``, ``a, b``, ``a[i]`` -> ``a``)."""
    if type(t) in (cst.Tuple, cst.List):
        out: list[str] = []
        for el in t.elements:
            out += _all_names(el.value)
        return out
    if type(t) is cst.StarredElement:
        return _all_names(t.value)
    r = base_name(t)
    return [r] if r else []


def _bindings(g: FuncInfo, ci, method: bool) -> dict[str, cst.BaseExpression | None]:
    """Parameter -> the expression a call passes for it (its default when not passed)."""
    plist = list(g.node.params.params)
    if method and plist:
        plist = plist[1:]
    out: dict[str, cst.BaseExpression | None] = {}
    for p in plist + list(g.node.params.kwonly_params):
        out[p.name.value] = p.default
    pos = [a for a in ci.node.args if a.keyword is None and not a.star]
    for p, a in zip(plist, pos):
        out[p.name.value] = a.value
    for a in ci.node.args:
        if a.keyword is not None and a.keyword.value in out:
            out[a.keyword.value] = a.value
    return out


def _truth(expr: cst.BaseExpression | None):
    if type(expr) is cst.Name and expr.value in ("True", "False", "None"):
        return expr.value == "True"
    if type(expr) is cst.Integer:
        return expr.value not in ("0",)
    return None


def _needs(test: cst.BaseExpression, polarity: bool) -> list[tuple[str, bool]]:
    """(name, truth it must have) for a gate on a bare name: ``if q``, ``if not q``,
    ``if q and ...``."""
    if type(test) is cst.Name:
        return [(test.value, polarity)]
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        return _needs(test.expression, not polarity)
    if polarity and type(test) is cst.BooleanOperation and type(test.operator) is cst.And:
        return _needs(test.left, True) + _needs(test.right, True)
    return []


def _disabled(gates, g: FuncInfo, bound: dict) -> bool:
    """Is a site under ``gates`` in ``g`` switched off by the literal arguments ``bound``?"""
    for gate in gates:
        if gate.func is not g:
            continue
        for name, want in _needs(gate.test, gate.polarity):
            if name in bound:
                t = _truth(bound[name])
                if t is not None and t != want:
                    return True
    return False


def _is_within(g: FuncInfo, fi: FuncInfo) -> bool:
    p = g.parent
    while p is not None:
        if p is fi:
            return True
        p = p.parent
    return False


def _ctx_at(f: Facts, fi: FuncInfo, node: cst.CSTNode):
    for ai in f.assigns:
        if ai.node is node:
            return ai.ctx
    for ci in f.calls_by_func.get(fi, ()):
        if ci.node is node:
            return ci.ctx
    return fi.ctx


def _exclusive(a, b) -> bool:
    """Two contexts on opposite branches of one ``if``."""
    for g1 in a.gates:
        for g2 in b.gates:
            if g1.test is g2.test and g1.polarity != g2.polarity and not (g1.early_exit or g2.early_exit):
                return True
    return False


@dataclass
class TwoPassFinding:
    fill: Fill
    read_line: int
    read_end: int
    read_node: cst.CSTNode
    ret_line: int
    ctx: object  # the read's context with the fill's gates added
    outer_end: int


def two_pass_findings(facts: Facts):
    """Every (function, state) whose validation fill is read again by a reported score."""
    tp = TwoPass(facts)
    for fi in facts.funcs:
        fills = tp.fills(fi)
        if not fills:
            continue
        every = tp.fills(fi, any_data=True)
        done: set = set()
        for fl in fills:
            loops = [li for li, _c in facts.loops if li.func is fi and li.start <= fl.line <= li.end]
            outer_end = max([fl.end] + [li.end for li in loops])
            for rd in tp.reads(fi, fl.root, outer_end):
                if rd.ctx is not None and _exclusive(rd.ctx, fl.ctx):
                    continue
                rloops = [li for li, _c in facts.loops if li.func is fi and li.start <= rd.line <= li.end]
                a, b = (min(li.start for li in rloops), max(li.end for li in rloops)) if rloops else (rd.line, rd.end)
                if any(f2.root == fl.root and a <= f2.line <= b and f2.line > outer_end for f2 in every):
                    # the later pass keeps adding what it scores: one score-first pass that
                    # started from a warm state (a prefix, another rank's tokens), not a rescoring
                    continue
                res = tp.reaches_report(fi, rd)
                if res is None or not res[1]:
                    continue
                gates = tuple(rd.ctx.gates) if rd.ctx is not None else ()
                key = (fl.root, tuple(id(g.test) for g in gates))
                if key in done:
                    continue
                done.add(key)
                extra = tuple(g for g in fl.ctx.gates if g not in gates)
                ctx = replace(rd.ctx, gates=gates + extra) if rd.ctx is not None else fl.ctx
                yield TwoPassFinding(fl, rd.line, rd.end, rd.node, res[0], ctx, outer_end)
