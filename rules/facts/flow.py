"""Labelled data flow: which values hold validation data (``VAL``) or training data
(``TRAIN``), seeded by their sources and followed through the program.

Sources are the literals that name the data's shards (``"fineweb_val_*.bin"``,
``"fineweb_train_*.bin"``, a ``val_*`` / ``train_*`` glob; see ``names.source_labels``).
From there a label follows:

* definitions: the nearest preceding assignment / ``for`` target of a name in its
  scope (a read inside a loop also sees the loop body's later definitions, the
  previous iteration's), else the enclosing function's scope, else the module's;
* attributes: ``X.attr`` carries what ``X`` carries and what the field ``attr``
  holds, where a field is a class-level attribute (``val_files = os.path.join(
  data_path, "fineweb_val_*.bin")`` in a ``Hyperparameters`` class), an assignment
  ``obj.attr = value`` / ``self.attr = value``, a keyword given to a constructor of
  a class of this file or an ``argparse`` option's ``default=``. Fields are keyed by
  attribute name alone (every object's ``attr`` is one field); what a constructor's
  arguments carry stays with the instance (``loader = Loader(args.val_files)``) and
  reaches ``self`` in its methods through the receivers of the calls;
* calls: a call to a function of this file carries what that function returns
  (its returns and yields), where each of its parameters that reaches a return is
  replaced by what the call passes for it (the receiver for ``self``): so
  ``load_data_shard(train_file)`` is training data even when the same function also
  reads validation shards elsewhere. A call to anything else carries what its
  receiver and arguments carry (``torch.cat``, ``x.to(dev)``, ``np.fromfile``);
* parameters: inside a function, a parameter carries what every call in the file
  passes for it (or its default).

Training data stops at a statistic: a name defined by a call whose callee does not
look like loading or converting data (``names.TRAIN_CARRY_RE``: ``calib =
collect_hessians(..)``, ``n = count(..)``) holds something computed from the data,
which code after the training window may use; it keeps ``VAL`` (a statistic of
validation tokens is still fitted on them). Tuple unpacking ``a, b = f(..)`` takes
the matching element of the returned tuple.

Fallback by name (the one place identifiers decide, besides the statistic cut): a parameter of a function
that no call in this file reaches (an entry point called from outside the file,
a function only passed as a value, a snippet), or an attribute no assignment in
the file defines, is labelled by its name (``names.is_val_name`` /
``names.is_train_data_name``): nothing in the file says what it holds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import libcst as cst

from .names import TRAIN, TRAIN_CARRY_RE, VAL, is_train_data_name, is_val_name, source_labels
from .nodes import Preorder, bound_names, callee_name, string_value, target_names
from .records import FuncInfo

_EMPTY: frozenset = frozenset()
_Hops = dict  # label -> hops its shortest chain needs (see FlowFacts); never changed once made
_NONE: _Hops = {}
_LIMIT = 12  # hops of one query through definitions, parameters, returns and fields
_FAR = _LIMIT + 1
_NO_CYCLE = 1 << 62  # ``_flow_low`` of a query that read no guess
_CTOR_FACTORIES = {"SimpleNamespace", "Namespace", "dict"}
_STRINGS = {cst.SimpleString, cst.FormattedStringText, cst.FormattedString}  # the kinds ``_literal`` reads


@dataclass(frozen=True, eq=False)
class _Shape:
    """What an expression's value is made of (computed once per node)."""

    hops: _Hops  # labels of the source literals inside it (they need no hop)
    names: tuple[str, ...]  # names read (comprehension / lambda bound names left out)
    fields: tuple[str, ...]  # attributes read as data (``X.attr``, not ``X.method(..)``)
    calls: tuple  # (call node, callees) for calls of this file's functions


def _concrete(labels: frozenset) -> frozenset:
    return frozenset(x for x in labels if not x.startswith("@"))


def _literal(n: cst.CSTNode) -> str | None:
    kind = type(n)  # concrete classes: see ``nodes.base_name``
    if kind is cst.SimpleString:
        try:
            v = string_value(n)
        except Exception:
            return None
        return v.decode("latin-1") if isinstance(v, bytes) else v
    if kind is cst.FormattedStringText:
        return n.value
    if kind is cst.FormattedString:  # ``f"{root}/fineweb_val_{i:06d}.bin"``, placeholders as ``{}``
        return "".join(p.value if type(p) is cst.FormattedStringText else "{}" for p in n.parts)
    return None


class FlowFacts:
    """The data-flow part of ``Facts`` (a mixin: reads the collected definitions).

    A query (the labels of an expression, a name, a function's returns, a parameter,
    a field) is answered as if each hop through a definition, a parameter, a return
    or a field went one level deeper, and a query at level ``_LIMIT`` stopped: a
    label reaches a query only through a chain of fewer than ``_LIMIT`` hops. So each
    answer is a map ``label -> the hops its shortest chain needs`` (``_Hops``), the
    same wherever the query is asked from, and a query asked ``d`` hops deep sees
    the labels that need at most ``_LIMIT - d`` more. These maps are the least fixpoint
    of the queries' equations (a union becomes the smaller count, a hop adds one),
    solved on demand by ``_solve``: a query that does not depend on itself is computed
    once; a cycle (``i = i + 1`` read in a loop, a method reading a field it sets,
    mutual recursion) is iterated from its first query until no count in it falls.
    The answers never depend on the order of queries, so they are the same in every
    process.

    Labels are strings: ``VAL``, ``TRAIN``; inside a function summary a parameter
    ``p`` that reaches the value shows as ``"@p"`` (replaced at each call).
    """

    # ------------------------------------------------------------ public queries
    def tainted(self, name: str, func: FuncInfo | None, line: int | None = None, label: str = VAL) -> bool:
        """Does ``name`` (as seen in ``func`` at ``line``) hold data labelled ``label``?
        A dotted name (``self.tokens``) is its root and its last attribute."""
        if "." in name:
            root, *_mid, attr = name.split(".")
            return label in self._ask(self._name, root, func, line, False) or label in self._ask(self._field, attr)
        return label in self._ask(self._name, name, func, line, False)

    def expr_tainted(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None,
                     label: str = VAL) -> bool:
        """Does the value of ``node`` (in ``func`` at ``line``) hold data labelled ``label``?"""
        return label in self._ask(self._expr, node, func, line, False)

    def labels(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None) -> frozenset:
        """The labels (``VAL``, ``TRAIN``) the value of ``node`` carries."""
        return _concrete(self._ask(self._expr, node, func, line, False))

    def summary(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None) -> frozenset:
        """Labels of ``node`` with ``func``'s parameters left open as ``@name`` (what it
        carries whoever calls ``func``, plus the parameters it depends on)."""
        return self._ask(self._expr, node, func, line, True)

    def resolve_labels(self, labels: frozenset, func: FuncInfo | None, env: dict | None = None) -> frozenset:
        """``labels`` with each ``@p`` replaced by ``env[p]`` (a call's arguments), or,
        without ``env``, by what every call in the file passes for ``p``."""
        out = set(_concrete(labels))
        for s in labels - out:
            p, stat = _param_of(s)
            got = (env.get(p, _EMPTY) if env is not None
                   else self._ask(self._param, func, p) if func is not None else _EMPTY)
            out |= got - {TRAIN} if stat else got
        return frozenset(out)

    def call_env(self, call: cst.Call, callee: FuncInfo, func: FuncInfo | None, line: int | None,
                 env: dict | None = None) -> dict:
        """``param -> labels`` that ``call`` (in ``func`` at ``line``) passes to ``callee``;
        with ``env``, ``func``'s own parameters are those of its caller (a call chain)."""
        out = {}
        for p in callee.params:
            got: set = set()
            for arg, afunc, aline in self._args_for(call, callee, p, func, line):
                if env is not None and afunc is func:
                    got |= self.resolve_labels(self.summary(arg, afunc, aline), afunc, env)
                else:
                    got |= self.labels(arg, afunc, aline)
            out[p] = frozenset(got)
        return out

    # ------------------------------------------------------------ the solver
    def _ask(self, query, *args) -> frozenset:
        """A public query, asked at the top: the labels whose chains fit under the limit.
        On an error (a chain too deep for Python's stack) the solver's state of the
        unfinished queries is dropped, so that later queries start clean."""
        try:
            return frozenset(query(*args))
        except BaseException:
            if self._flow_height:
                self._flow_height = 0
                self._flow_at.clear()
                self._flow_guess.clear()
                self._flow_prov.clear()
                self._flow_log.clear()
            raise

    def _solve(self, key: tuple, compute, *args) -> _Hops:
        """The answer of query ``key``, ``compute(*args)`` being its equation.

        Tarjan's idea on the graph of queries as they recurse: ``_flow_at`` holds the
        height of each query under way, and a query that asks one under way (a cycle)
        reads that one's current guess (first: no labels) and lowers ``_flow_low`` to its
        height. A query whose answer read no guess below its own height is final: kept
        in ``_flow_done`` with the answers computed in its last round. One that read its
        own guess heads a cycle: it computes again while its answer or a member's
        changed (``_flow_changed``); counts only fall, and never below zero, so this ends.
        One that read a guess below stays provisional (``_flow_prov``, with its low
        height) until its head's round ends."""
        at = self._flow_at.get(key)
        if at is not None:
            if at < self._flow_low:
                self._flow_low = at
            return self._flow_guess.get(key, _NONE)
        prov = self._flow_prov.get(key)
        if prov is not None:
            if prov[1] < self._flow_low:
                self._flow_low = prov[1]
            return prov[0]
        here = self._flow_height
        self._flow_height = here + 1
        self._flow_at[key] = here
        outer_low, outer_changed = self._flow_low, self._flow_changed
        start = len(self._flow_log)
        while True:
            self._flow_low, self._flow_changed = _NO_CYCLE, False
            value = compute(*args)
            low = self._flow_low
            if low == here and (self._flow_changed or value != self._flow_guess.get(key, _NONE)):
                self._flow_guess[key] = value  # another round, from the new guesses
                for k in self._flow_log[start:]:
                    del self._flow_prov[k]
                del self._flow_log[start:]
                continue
            break
        del self._flow_at[key]
        self._flow_height = here
        if low < here:
            changed = self._flow_changed or value != self._flow_guess.get(key, _NONE)
            if changed:
                self._flow_guess[key] = value
            self._flow_prov[key] = (value, low)
            self._flow_log.append(key)
            self._flow_low = min(outer_low, low)
            self._flow_changed = outer_changed or changed
            return value
        for k in self._flow_log[start:]:
            self._flow_done[k] = self._flow_prov.pop(k)[0]
            self._flow_guess.pop(k, None)
        del self._flow_log[start:]
        self._flow_guess.pop(key, None)
        self._flow_done[key] = value
        self._flow_low, self._flow_changed = outer_low, outer_changed
        return value

    # ------------------------------------------------------------ expressions
    def _shape(self, node: cst.CSTNode) -> _Shape:
        shape = self._flow_names.get(id(node))  # by id: a node's own hash is Python code
        if shape is not None:
            return shape
        imported = self._imported_roots()
        bound: set[str] = set()  # ``nodes.bound_names(node)``, gathered by this walk
        labels: set[str] = set()
        names: list[str] = []
        fields: list[str] = []
        calls: list = []
        callee_ids: set[int] = set()  # the ``func`` of calls walked into: ``x.method`` is no data
        attr_ids: set[int] = set()  # the ``attr`` names of attributes: not names read
        # one slice of the indexed walk; a subtree left out is skipped by its span
        order, span = self.layout.preorder.order, self.layout.preorder.span
        i, end = span.get(id(node), (0, 0))
        if i >= len(order) or order[i] is not node:  # not a node of this module
            pre = Preorder(node)
            order, span = pre.order, pre.span
            i, end = 0, len(order)
        while i < end:
            n = order[i]
            i += 1
            kind = type(n)
            if kind is cst.Name:
                if n.value not in imported and id(n) not in attr_ids:
                    names.append(n.value)
                continue
            if kind is cst.CompFor:
                bound.update(target_names(n.target))
            elif kind is cst.Lambda:
                bound.update(p.name.value for p in n.params.params)
            elif kind in _STRINGS:
                text = _literal(n)
                if text is not None:
                    labels |= source_labels(text)
                    if kind is not cst.FormattedString:
                        i = span[id(n)][1]
            elif kind is cst.Attribute:
                if _module_root(n) in imported:
                    i = span[id(n)][1]  # ``os.path``, ``torch.long``: a module, not data
                    continue
                if id(n) not in callee_ids:
                    fields.append(n.attr.value)
                attr_ids.add(id(n.attr))
            elif kind is cst.Call:
                callees = self.callees_of(n)
                if callees:
                    calls.append((n, tuple(callees)))
                    bound |= bound_names(n, self.subtree)  # not walked, but what it binds is bound here too
                    i = span[id(n)][1]
                else:
                    callee_ids.add(id(n.func))
        if bound:
            names = [x for x in names if x not in bound]
        shape = _Shape(dict.fromkeys(labels, 0), tuple(dict.fromkeys(names)), tuple(dict.fromkeys(fields)), tuple(calls))
        self._flow_names[id(node)] = shape
        return shape

    def _expr(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None, sym: bool) -> _Hops:
        """Labels of ``node``'s value. ``sym``: a parameter of ``func`` shows as ``@name``
        (a function summary) instead of what its callers pass."""
        shape = self._shape(node)
        if not (shape.names or shape.fields or shape.calls):
            return shape.hops  # literals only: they need no hop
        key = ("e", id(node), func, line, sym)  # nodes live as long as the facts
        done = self._flow_done.get(key)
        return done if done is not None else self._solve(key, self._expr_of, shape, func, line, sym)

    def _expr_of(self, shape: _Shape, func: FuncInfo | None, line: int | None, sym: bool) -> _Hops:
        out = dict(shape.hops)
        for n in shape.names:
            _add(out, self._name(n, func, line, sym), 0)
        for a in shape.fields:
            _add(out, self._field(a), 0)
        for call, callees in shape.calls:
            _add(out, self._call(call, callees, func, line, sym), 0)
        return out

    def _name(self, name: str, func: FuncInfo | None, line: int | None, sym: bool) -> _Hops:
        # the answer depends on ``line`` only through the definitions it sees: reads
        # on different lines that see the same definitions share one answer
        seen = self._seen_defs.get((name, func, line))
        if seen is None:
            scope = func.defs if func is not None else self.module_defs
            defs = scope.get(name)
            reaching = None if defs is None else self._reaching(defs, func, line) if defs else []
            seen = self._seen_defs[(name, func, line)] = (
                None if reaching is None else tuple(map(id, reaching)), reaching)
        key = ("n", name, func, seen[0], sym)
        done = self._flow_done.get(key)
        return done if done is not None else self._solve(key, self._name_of, name, func, seen[1], sym)

    def _name_of(self, name: str, func: FuncInfo | None, reaching: list | None, sym: bool) -> _Hops:
        out: _Hops = {}
        if reaching is None and func is not None:
            # a closure reads its enclosing function's name, a function a module global
            _add(out, self._name(name, func.parent, None, False), 0)
        elif reaching:
            for dline, value in reaching:
                if value is None:  # a parameter
                    _add(out, {"@" + name: 1} if sym else self._param(func, name), 0)
                elif type(value) is cst.AugAssign:  # ``x += v``: v, and x before it
                    _add(out, self._expr(value.value, func, dline, sym), 1)
                    _add(out, self._name(name, func, dline - 1, sym), 1)
                else:
                    # the value reads what was bound before its own line: in
                    # ``tokens = tokens[:n]`` the right side is the earlier ``tokens``
                    idx = self._tuple_slots().get((func, name, dline))
                    got = (self._expr(value, func, dline - 1, sym) if idx is None
                           else self._element(value, idx, func, dline - 1, sym))
                    if type(value) is cst.Call and not _carries_train(value):
                        got = _statistic(got)  # a statistic of training data, not the data
                    _add(out, got, 1)
        return out

    def _element(self, value: cst.CSTNode, idx: int, func: FuncInfo | None, line: int | None, sym: bool) -> _Hops:
        """Labels of element ``idx`` of ``value`` unpacked by ``a, b = value``: the element of
        a tuple literal, or of what a function of this file returns as a tuple."""
        if type(value) in (cst.Tuple, cst.List) and len(value.elements) > idx and not any(
                type(el) is cst.StarredElement for el in value.elements):
            return self._expr(value.elements[idx].value, func, line, sym)
        if type(value) is cst.Call:
            callees = self.callees_of(value)
            if callees:
                return self._call(value, tuple(callees), func, line, sym, idx)
        return self._expr(value, func, line, sym)

    def _tuple_slots(self) -> dict:
        """``(function, name, line) -> position`` of a name in a flat tuple target."""
        slots = getattr(self, "_slots", None)
        if slots is None:
            slots = {}
            for ai in self.assigns:
                if ai.op != "=" or len(ai.targets) != 1 or type(ai.targets[0]) not in (cst.Tuple, cst.List):
                    continue
                els = ai.targets[0].elements
                if any(type(el) is cst.StarredElement for el in els):
                    continue
                for i, el in enumerate(els):
                    if type(el.value) is cst.Name:
                        slots[(ai.ctx.func, el.value.value, ai.line)] = i
            self._slots = slots
        return slots

    def _reaching(self, defs: list, func: FuncInfo | None, line: int | None) -> list:
        """The definitions a read at ``line`` sees: the nearest preceding one, plus the
        later ones in a loop around the read (``prev = (h, y)`` at the end of the body,
        read at the top, through the back edge); all of them when ``line`` is None."""
        if line is None:
            return defs
        lines = self._def_lines.get(id(defs))
        if lines is None:
            lines = [d[0] for d in defs]
            if any(a > b for a, b in zip(lines, lines[1:])):
                lines = None  # not in source order (rare): scan the list
            self._def_lines[id(defs)] = lines = lines or ()
        loops = [li for li in self._loops_in(func) if li.start <= line <= li.end]
        if lines:
            last = bisect.bisect_right(lines, line)
            if not last:
                return defs
            later = defs[last:bisect.bisect_right(lines, max(li.end for li in loops))] if loops else []
        else:
            last = next((i + 1 for i in range(len(defs) - 1, -1, -1) if defs[i][0] <= line), 0)
            if not last:
                return defs
            later = [d for d in defs if d[0] > line]
        return [defs[last - 1]] + [d for d in later if any(li.start <= d[0] <= li.end for li in loops)]

    def _loops_in(self, func: FuncInfo | None) -> list:
        by_func = getattr(self, "_loops_by_func", None)
        if by_func is None:
            by_func = self._loops_by_func = {}
            for li, _c in self.loops:
                by_func.setdefault(li.func, []).append(li)
        return by_func.get(func, [])

    # ------------------------------------------------------------ calls, parameters, returns
    def _call(self, call: cst.Call, callees: tuple, func: FuncInfo | None, line: int | None, sym: bool,
              idx: int | None = None) -> _Hops:
        """What a call of this file's functions carries: their returns, each open ``@p``
        replaced by what the call passes for ``p``, at the hops the longer of the two needs."""
        out: _Hops = {}
        for fi in callees:
            ret = self._returns(fi, idx)
            for label, hops in ret.items():
                if not label.startswith("@"):
                    _add(out, {label: hops}, 0, 0)
                    continue
                p, stat = _param_of(label)
                for arg, afunc, aline in self._args_for(call, fi, p, func, line):
                    got = self._expr(arg, afunc, aline, sym and afunc is func)
                    _add(out, _statistic(got) if stat else got, 0, hops)
        return out

    def _returns(self, fi: FuncInfo, idx: int | None = None) -> _Hops:
        """What ``fi`` returns or yields (element ``idx`` of a returned tuple), its
        parameters as ``@name``."""
        key = ("r", fi, idx)
        done = self._flow_done.get(key)
        return done if done is not None else self._solve(key, self._returns_of, fi, idx)

    def _returns_of(self, fi: FuncInfo, idx: int | None) -> _Hops:
        out: _Hops = {}
        for r in fi.returns:
            if r.value is None:
                continue
            if idx is not None and type(r) is cst.Return:
                _add(out, self._element(r.value, idx, fi, self.span(r)[0], True), 1)
            else:
                _add(out, self._expr(r.value, fi, self.span(r)[0], True), 1)
        return out

    def _args_for(self, call: cst.Call, fi: FuncInfo, param: str, func: FuncInfo | None,
                  line: int | None) -> list[tuple]:
        """``(expression, function, line)`` that a call passes for ``param`` of ``fi``: the
        receiver for a method's ``self``, the keyword or positional argument, else the
        parameter's default (read where ``fi`` is defined)."""
        ps = fi.node.params
        positional = [*ps.posonly_params, *ps.params]
        names = [p.name.value for p in positional]
        ctor = fi.cls is not None and fi.name == "__init__" and type(call.func) is cst.Name  # ``Loader(..)``
        method = fi.cls is not None and (type(call.func) is cst.Attribute or ctor)
        if method and names and param == names[0]:
            return [] if ctor else [(call.func.value, func, line)]
        idx = names.index(param) if param in names else -1
        if method and idx >= 0:
            idx -= 1
        pos = [a for a in call.args if a.keyword is None and not a.star]
        out = [(a.value, func, line) for a in call.args if a.keyword is not None and a.keyword.value == param]
        if not out and 0 <= idx < len(pos):
            out = [(pos[idx].value, func, line)]
        star = type(ps.star_arg) is cst.Param and ps.star_arg.name.value == param
        kwargs = ps.star_kwarg is not None and ps.star_kwarg.name.value == param
        if star:
            out = [(a.value, func, line) for a in pos[len(names) - (1 if method else 0):]]
        elif kwargs:
            known = set(names) | {p.name.value for p in ps.kwonly_params}
            out = [(a.value, func, line) for a in call.args if a.keyword is not None and a.keyword.value not in known]
        if not out:
            out = [(a.value, func, line) for a in call.args if a.star]  # ``f(*batch)``: any of it
        if not out:
            default = next((p.default for p in [*positional, *ps.kwonly_params]
                            if p.name.value == param and p.default is not None), None)
            if default is not None:
                out = [(default, fi.parent, fi.start)]
        return out

    def _param(self, fi: FuncInfo, param: str) -> _Hops:
        """What the calls in this file pass for ``param`` of ``fi``; a function no call
        reaches gets the name fallback (see the module docstring)."""
        sites = self._call_sites().get(fi, ())
        if not sites:
            return _name_fallback(param)
        key = ("p", fi, param)
        done = self._flow_done.get(key)
        return done if done is not None else self._solve(key, self._param_of_sites, fi, param, sites)

    def _param_of_sites(self, fi: FuncInfo, param: str, sites: list) -> _Hops:
        out: _Hops = {}
        for ci in sites:
            for arg, afunc, aline in self._args_for(ci.node, fi, param, ci.ctx.func, ci.line):
                _add(out, self._expr(arg, afunc, aline, False), 1)
        return out

    def _call_sites(self) -> dict:
        idx = getattr(self, "_sites_by_callee", None)
        if idx is None:
            idx = {}
            inits = {fi.cls: fi for fi in self.funcs_by_name.get("__init__", ()) if fi.cls is not None}
            for ci in self.calls:
                for fi in self.callees(ci):
                    idx.setdefault(fi, []).append(ci)
                if type(ci.node.func) is cst.Name and ci.attr in inits:  # a constructor runs ``__init__``
                    idx.setdefault(inits[ci.attr], []).append(ci)
            self._sites_by_callee = idx
        return idx

    # ------------------------------------------------------------ attributes
    def _field(self, attr: str) -> _Hops:
        """What the field ``attr`` holds, over every definition of it in the file."""
        defs = self._field_defs().get(attr)
        if defs is None:
            return _name_fallback(attr)
        key = ("f", attr)
        done = self._flow_done.get(key)
        return done if done is not None else self._solve(key, self._field_of, defs)

    def _field_of(self, defs: list) -> _Hops:
        out: _Hops = {}
        for value, func, line, on_self in defs:
            if func is None or not on_self:
                _add(out, self._expr(value, func, line, False), 1)
                continue
            # ``self.attr = value`` in a method: its ``self`` and the constructor's
            # parameters belong to the instance (they reach reads through the receiver)
            got = self._expr(value, func, line, True)
            for label, hops in got.items():
                if not label.startswith("@"):
                    _add(out, {label: hops}, 1)
                    continue
                p, stat = _param_of(label)
                if func.name != "__init__" and p != (func.params[0] if func.params else ""):
                    got_p = self._param(func, p)
                    _add(out, _without_train(got_p) if stat else got_p, 1, hops + 1)
        return out

    def _field_defs(self) -> dict:
        """``attr -> [(value, function, line, assigned on the method's self)]``."""
        idx = getattr(self, "_fields_idx", None)
        if idx is not None:
            return idx
        idx = {}
        for _cls, name, value, line in self.class_fields:
            if value is not None:
                idx.setdefault(name, []).append((value, None, line, False))
        for ai in self.assigns:
            if ai.value is None:
                continue
            func = ai.ctx.func
            stack = list(ai.targets)
            while stack:
                t = stack.pop()
                if type(t) in (cst.Tuple, cst.List):
                    stack.extend(el.value for el in t.elements)
                elif type(t) is cst.StarredElement:
                    stack.append(t.value)
                elif type(t) is cst.Attribute and type(t.value) is cst.Name:
                    on_self = (func is not None and func.cls is not None and bool(func.params)
                               and t.value.value == func.params[0])
                    if on_self or self._config_object(t.value.value, func):
                        idx.setdefault(t.attr.value, []).append((ai.value, func, ai.line, on_self))
        with_init = {fi.cls for fi in self.funcs_by_name.get("__init__", ())}
        for ci in self.calls:
            callee = ci.attr or ""
            # ``Hyperparameters(val_files=...)`` for a class without its own ``__init__`` (a
            # dataclass-like config); an ``__init__``'s parameters stay with the instance
            if (callee in self.classes and callee not in with_init) or callee in _CTOR_FACTORIES:
                for a in ci.node.args:
                    if a.keyword is not None:
                        idx.setdefault(a.keyword.value, []).append((a.value, ci.ctx.func, ci.line, False))
            elif callee == "add_argument":  # argparse: ``--val-files`` with ``default=``
                dest = next((a.value for a in ci.node.args if a.keyword is not None and a.keyword.value == "default"),
                            None)
                opts = [_literal(a.value) or "" for a in ci.node.args if a.keyword is None]
                named = next((_literal(a.value) for a in ci.node.args if a.keyword is not None
                              and a.keyword.value == "dest"), None)
                longest = max(opts, key=len, default="")
                field = named or longest.lstrip("-").replace("-", "_")
                if field and dest is not None:
                    idx.setdefault(field, []).append((dest, ci.ctx.func, ci.line, False))
        self._fields_idx = idx
        return idx

    def _config_object(self, name: str, func: FuncInfo | None) -> bool:
        """``name`` (in ``func``, else at module level) is bound to an instance of a class
        of this file or a namespace: ``args = Hyperparameters()``, ``cfg = SimpleNamespace()``.
        Attributes set on other objects (``param.data = ..``) are not fields."""
        for scope in ((func.defs,) if func is not None else ()) + (self.module_defs,):
            for _ln, v in scope.get(name, ()):
                if type(v) is cst.Call:
                    f = v.func
                    callee = f.attr.value if type(f) is cst.Attribute else getattr(f, "value", "")
                    if callee in self.classes or callee in _CTOR_FACTORIES:
                        return True
        return False

    def _imported_roots(self) -> set[str]:
        roots = getattr(self, "_imported", None)
        if roots is None:
            roots = set(self.import_aliases)
            roots |= {mod.split(".")[0] for mod, _ln, level, _ctx in self.imports if mod and not level}
            self._imported = roots
        return roots


def _param_of(sym: str) -> tuple[str, bool]:
    """``"@p"`` -> ``("p", False)``; ``"@p~"`` (p through a statistic) -> ``("p", True)``."""
    return (sym[1:-1], True) if sym.endswith("~") else (sym[1:], False)


def _statistic(got: _Hops) -> _Hops:
    """What a statistic of ``got`` carries: not ``TRAIN`` (an open parameter is marked ``~``)."""
    out: _Hops = {}
    for label, hops in got.items():
        if label != TRAIN:
            _add(out, {label if not label.startswith("@") or label.endswith("~") else label + "~": hops}, 0, 0)
    return out


def _without_train(got: _Hops) -> _Hops:
    return {label: hops for label, hops in got.items() if label != TRAIN}


def _add(out: _Hops, got: _Hops, shift: int, at_least: int = 1) -> None:
    """Merge ``got``, found ``shift`` hops further, into ``out``: each label at its fewest
    hops, no fewer than ``at_least`` (a query's own step: 1, it must be under the limit
    to ask further), and none that needs more than ``_LIMIT``."""
    for label, hops in got.items():
        hops += shift
        if hops < at_least:
            hops = at_least
        if hops <= _LIMIT and hops < out.get(label, _FAR):
            out[label] = hops


def _carries_train(call: cst.Call) -> bool:
    return bool(TRAIN_CARRY_RE.search(callee_name(call)))


def _module_root(n: cst.Attribute) -> str:
    """``os`` for ``os.path.join`` (a chain of plain attributes), else ``""``."""
    v = n.value
    while type(v) is cst.Attribute:
        v = v.value
    return v.value if type(v) is cst.Name else ""


def _name_fallback(name: str) -> _Hops:
    """Labels by name alone, for a value the file gives no source for (module docstring)."""
    out: _Hops = {}
    if is_val_name(name):
        out[VAL] = 0
    if is_train_data_name(name):
        out[TRAIN] = 0
    return out
