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

from dataclasses import dataclass

import libcst as cst

from .names import TRAIN, TRAIN_CARRY_RE, VAL, is_train_data_name, is_val_name, source_labels
from .nodes import bound_names, children, target_names
from .records import FuncInfo

_EMPTY: frozenset = frozenset()
_LIMIT = 12  # hops of one query through definitions, parameters, returns and fields
_CTOR_FACTORIES = {"SimpleNamespace", "Namespace", "dict"}


@dataclass(frozen=True, eq=False)
class _Shape:
    """What an expression's value is made of (computed once per node)."""

    labels: frozenset  # from source literals inside it
    names: tuple[str, ...]  # names read (comprehension / lambda bound names left out)
    fields: tuple[str, ...]  # attributes read as data (``X.attr``, not ``X.method(..)``)
    calls: tuple  # (call node, callees) for calls of this file's functions


def _concrete(labels: frozenset) -> frozenset:
    return frozenset(x for x in labels if not x.startswith("@"))


def _literal(n: cst.CSTNode) -> str | None:
    if isinstance(n, cst.SimpleString):
        try:
            v = n.evaluated_value
        except Exception:
            return None
        return v.decode("latin-1") if isinstance(v, bytes) else v
    if isinstance(n, cst.FormattedStringText):
        return n.value
    if isinstance(n, cst.FormattedString):  # ``f"{root}/fineweb_val_{i:06d}.bin"``, placeholders as ``{}``
        return "".join(p.value if isinstance(p, cst.FormattedStringText) else "{}" for p in n.parts)
    return None


class FlowFacts:
    """The data-flow part of ``Facts`` (a mixin: reads the collected definitions).

    Every query is memoised under its full arguments, the depth included. The
    recursion ends at the depth limit, so it needs no cycle guard; a guard (or a
    key without the depth) would cache a provisional empty answer met inside a
    cycle or at the limit and hand it to a later query, so the answer would depend
    on the order of queries, and that order on set iteration, which varies between
    processes. An answer the limit did not cut anywhere below it is the same at
    every depth where the limit would still cut nothing below it (the depth only
    decides where the limit cuts), so it is also kept under the arguments without
    the depth, with the deepest depth it holds at: its own depth plus the room its
    deepest recursion left below the limit. The same answers, each query computed
    about once instead of once per depth (see ``_memo`` and ``_keep``).

    Labels are strings: ``VAL``, ``TRAIN``; inside a function summary a parameter
    ``p`` that reaches the value shows as ``"@p"`` (replaced at each call).
    """

    # ------------------------------------------------------------ public queries
    def tainted(self, name: str, func: FuncInfo | None, line: int | None = None, label: str = VAL,
                _depth: int = 0) -> bool:
        """Does ``name`` (as seen in ``func`` at ``line``) hold data labelled ``label``?
        A dotted name (``self.tokens``) is its root and its last attribute."""
        if "." in name:
            root, *_mid, attr = name.split(".")
            return label in self._name(root, func, line, _depth, False) or label in self._field(attr, _depth)
        return label in self._name(name, func, line, _depth, False)

    def expr_tainted(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None,
                     label: str = VAL, _depth: int = 0) -> bool:
        """Does the value of ``node`` (in ``func`` at ``line``) hold data labelled ``label``?"""
        return label in self._expr(node, func, line, _depth, False)

    def labels(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None) -> frozenset:
        """The labels (``VAL``, ``TRAIN``) the value of ``node`` carries."""
        return _concrete(self._expr(node, func, line, 0, False))

    def summary(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None) -> frozenset:
        """Labels of ``node`` with ``func``'s parameters left open as ``@name`` (what it
        carries whoever calls ``func``, plus the parameters it depends on)."""
        return self._expr(node, func, line, 0, True)

    def resolve_labels(self, labels: frozenset, func: FuncInfo | None, env: dict | None = None) -> frozenset:
        """``labels`` with each ``@p`` replaced by ``env[p]`` (a call's arguments), or,
        without ``env``, by what every call in the file passes for ``p``."""
        out = set(_concrete(labels))
        for s in labels - out:
            p, stat = _param_of(s)
            got = env.get(p, _EMPTY) if env is not None else (self._param(func, p, 0) if func is not None else _EMPTY)
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

    # ------------------------------------------------------------ memo
    # The deepest depth at which a query under way (or one it asked) checked the limit and
    # recursed: ``_keep`` turns it into the room left below the limit.
    _deep = -1

    def _memo(self, key: tuple, depth: int) -> frozenset | None:
        """The memoised answer of query ``key`` at ``depth``, else None. ``_flow_whole``
        holds ``key -> (deepest depth, answer)`` of answers the limit did not cut, valid
        at that depth and every smaller one; ``_flow_cut`` the others, by depth. Handing
        out a cut answer counts as a cut for the query that asked; a whole one counts as
        recursing as deep as its computation did, shifted to ``depth``."""
        whole = self._flow_whole.get(key)
        if whole is not None and depth <= whole[0]:
            deep = depth + _LIMIT - 1 - whole[0]
            if deep > self._deep:
                self._deep = deep
            return whole[1]
        res = self._flow_cut.get((key, depth))
        if res is not None:
            self._cuts += 1
        return res

    def _keep(self, key: tuple, depth: int, res: frozenset, cuts: int, outer: int) -> frozenset:
        """Memoise ``res``: whole when no cut happened since ``self._cuts`` was ``cuts``. A
        whole answer whose recursion went no deeper than ``self._deep`` is the same at any
        depth up to ``depth + (_LIMIT - 1 - self._deep)``: the limit cuts nothing there
        either. ``outer`` is the asking query's ``_deep``, which takes this one's."""
        inner = self._deep
        if outer > inner:
            self._deep = outer
        if self._cuts == cuts:
            valid = depth + _LIMIT - 1 - inner
            whole = self._flow_whole.get(key)
            if whole is None or whole[0] < valid:
                self._flow_whole[key] = (valid, res)
        else:
            self._flow_cut[(key, depth)] = res
        return res

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
        stack: list = [(node, False)]
        while stack:
            n, is_callee = stack.pop()
            kind = type(n)
            if kind is cst.Name:
                if n.value not in imported:
                    names.append(n.value)
                continue
            if kind is cst.CompFor:
                bound.update(target_names(n.target))
            elif kind is cst.Lambda:
                bound.update(p.name.value for p in n.params.params)
            text = _literal(n)
            if text is not None:
                labels |= source_labels(text)
                if not isinstance(n, cst.FormattedString):
                    continue
            if isinstance(n, cst.Attribute):
                if _module_root(n) in imported:
                    continue  # ``os.path``, ``torch.long``: a module, not data
                if not is_callee:
                    fields.append(n.attr.value)
                stack.append((n.value, False))
                continue
            if isinstance(n, cst.Call):
                callees = self.callees_of(n)
                if callees:
                    calls.append((n, tuple(callees)))
                    bound |= bound_names(n)  # not walked, but what it binds is bound here too
                    continue
                stack.append((n.func, True))
                stack.extend((c, False) for c in children(n) if c is not n.func)
                continue
            stack.extend((c, False) for c in children(n))
        if bound:
            names = [x for x in names if x not in bound]
        shape = _Shape(frozenset(labels), tuple(dict.fromkeys(names)), tuple(dict.fromkeys(fields)), tuple(calls))
        self._flow_names[id(node)] = shape
        return shape

    def _expr(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None, depth: int,
              sym: bool) -> frozenset:
        """Labels of ``node``'s value. ``sym``: a parameter of ``func`` shows as ``@name``
        (a function summary) instead of what its callers pass."""
        key = ("e", id(node), func, line, sym)  # nodes live as long as the facts
        res = self._memo(key, depth)
        if res is not None:
            return res
        cuts, outer = self._cuts, self._deep
        shape = self._shape(node)
        out = set(shape.labels)
        opens = bool(shape.names or shape.fields or shape.calls)
        self._deep = depth if opens else -1
        if depth < _LIMIT:
            for n in shape.names:
                out |= self._name(n, func, line, depth, sym)
            for a in shape.fields:
                out |= self._field(a, depth)
            for call, callees in shape.calls:
                out |= self._call(call, callees, func, line, depth, sym)
        elif opens:
            self._cuts += 1
        return self._keep(key, depth, frozenset(out), cuts, outer)

    def _name(self, name: str, func: FuncInfo | None, line: int | None, depth: int, sym: bool) -> frozenset:
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
        res = self._memo(key, depth)
        if res is not None:
            return res
        cuts, outer = self._cuts, self._deep
        self._deep = depth
        out: set[str] = set()
        if depth >= _LIMIT:
            self._cuts += 1
        else:
            reaching = seen[1]
            if reaching is None and func is not None:
                # a closure reads its enclosing function's name, a function a module global
                out |= self._name(name, func.parent, None, depth, False)
            elif reaching:
                for dline, value in reaching:
                    if value is None:  # a parameter
                        out |= {"@" + name} if sym else self._param(func, name, depth)
                    elif isinstance(value, cst.AugAssign):  # ``x += v``: v, and x before it
                        out |= self._expr(value.value, func, dline, depth + 1, sym)
                        out |= self._name(name, func, dline - 1, depth + 1, sym)
                    else:
                        # the value reads what was bound before its own line: in
                        # ``tokens = tokens[:n]`` the right side is the earlier ``tokens``
                        idx = self._tuple_slots().get((func, name, dline))
                        got = (self._expr(value, func, dline - 1, depth + 1, sym) if idx is None
                               else self._element(value, idx, func, dline - 1, depth + 1, sym))
                        if isinstance(value, cst.Call) and not _carries_train(value):
                            got = _statistic(got)  # a statistic of training data, not the data
                        out |= got
        return self._keep(key, depth, frozenset(out), cuts, outer)

    def _element(self, value: cst.CSTNode, idx: int, func: FuncInfo | None, line: int | None, depth: int,
                 sym: bool) -> frozenset:
        """Labels of element ``idx`` of ``value`` unpacked by ``a, b = value``: the element of
        a tuple literal, or of what a function of this file returns as a tuple."""
        if isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) > idx and not any(
                isinstance(el, cst.StarredElement) for el in value.elements):
            return self._expr(value.elements[idx].value, func, line, depth, sym)
        if isinstance(value, cst.Call):
            callees = self.callees_of(value)
            if callees:
                return self._call(value, tuple(callees), func, line, depth, sym, idx)
        return self._expr(value, func, line, depth, sym)

    def _tuple_slots(self) -> dict:
        """``(function, name, line) -> position`` of a name in a flat tuple target."""
        slots = getattr(self, "_slots", None)
        if slots is None:
            slots = {}
            for ai in self.assigns:
                if ai.op != "=" or len(ai.targets) != 1 or not isinstance(ai.targets[0], (cst.Tuple, cst.List)):
                    continue
                els = ai.targets[0].elements
                if any(isinstance(el, cst.StarredElement) for el in els):
                    continue
                for i, el in enumerate(els):
                    if isinstance(el.value, cst.Name):
                        slots[(ai.ctx.func, el.value.value, ai.line)] = i
            self._slots = slots
        return slots

    def _reaching(self, defs: list, func: FuncInfo | None, line: int | None) -> list:
        """The definitions a read at ``line`` sees: the nearest preceding one, plus the
        later ones in a loop around the read (``prev = (h, y)`` at the end of the body,
        read at the top, through the back edge); all of them when ``line`` is None."""
        if line is None:
            return defs
        before = [d for d in defs if d[0] <= line]
        if not before:
            return defs
        by_func = getattr(self, "_loops_by_func", None)
        if by_func is None:
            by_func = self._loops_by_func = {}
            for li, _c in self.loops:
                by_func.setdefault(li.func, []).append(li)
        loops = [li for li in by_func.get(func, ()) if li.start <= line <= li.end]
        return [before[-1]] + [d for d in defs if d[0] > line and any(li.start <= d[0] <= li.end for li in loops)]

    # ------------------------------------------------------------ calls, parameters, returns
    def _call(self, call: cst.Call, callees: tuple, func: FuncInfo | None, line: int | None, depth: int,
              sym: bool, idx: int | None = None) -> frozenset:
        out: set[str] = set()
        for fi in callees:
            ret = self._returns(fi, depth, idx)
            out |= _concrete(ret)
            for s in ret - _concrete(ret):
                p, stat = _param_of(s)
                for arg, afunc, aline in self._args_for(call, fi, p, func, line):
                    got = self._expr(arg, afunc, aline, depth, sym and afunc is func)
                    out |= _statistic(got) if stat else got
        return frozenset(out)

    def _returns(self, fi: FuncInfo, depth: int, idx: int | None = None) -> frozenset:
        """What ``fi`` returns or yields (element ``idx`` of a returned tuple), its
        parameters as ``@name``."""
        key = ("r", fi, idx)
        res = self._memo(key, depth)
        if res is not None:
            return res
        cuts, outer = self._cuts, self._deep
        self._deep = depth
        out: set[str] = set()
        if depth >= _LIMIT:
            self._cuts += 1
        else:
            for r in fi.returns:
                if r.value is None:
                    continue
                if idx is not None and isinstance(r, cst.Return):
                    out |= self._element(r.value, idx, fi, self.span(r)[0], depth + 1, True)
                else:
                    out |= self._expr(r.value, fi, self.span(r)[0], depth + 1, True)
        return self._keep(key, depth, frozenset(out), cuts, outer)

    def _args_for(self, call: cst.Call, fi: FuncInfo, param: str, func: FuncInfo | None,
                  line: int | None) -> list[tuple]:
        """``(expression, function, line)`` that a call passes for ``param`` of ``fi``: the
        receiver for a method's ``self``, the keyword or positional argument, else the
        parameter's default (read where ``fi`` is defined)."""
        ps = fi.node.params
        positional = [*ps.posonly_params, *ps.params]
        names = [p.name.value for p in positional]
        ctor = fi.cls is not None and fi.name == "__init__" and isinstance(call.func, cst.Name)  # ``Loader(..)``
        method = fi.cls is not None and (isinstance(call.func, cst.Attribute) or ctor)
        if method and names and param == names[0]:
            return [] if ctor else [(call.func.value, func, line)]
        idx = names.index(param) if param in names else -1
        if method and idx >= 0:
            idx -= 1
        pos = [a for a in call.args if a.keyword is None and not a.star]
        out = [(a.value, func, line) for a in call.args if a.keyword is not None and a.keyword.value == param]
        if not out and 0 <= idx < len(pos):
            out = [(pos[idx].value, func, line)]
        star = isinstance(ps.star_arg, cst.Param) and ps.star_arg.name.value == param
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

    def _param(self, fi: FuncInfo, param: str, depth: int) -> frozenset:
        """What the calls in this file pass for ``param`` of ``fi``; a function no call
        reaches gets the name fallback (see the module docstring)."""
        key = ("p", fi, param)
        res = self._memo(key, depth)
        if res is not None:
            return res
        cuts, outer = self._cuts, self._deep
        self._deep = depth
        out: set[str] = set()
        sites = self._call_sites().get(fi, ())
        if depth >= _LIMIT:
            self._cuts += 1
        else:
            for ci in sites:
                for arg, afunc, aline in self._args_for(ci.node, fi, param, ci.ctx.func, ci.line):
                    out |= self._expr(arg, afunc, aline, depth + 1, False)
        if not sites:
            out |= _name_fallback(param)
        return self._keep(key, depth, frozenset(out), cuts, outer)

    def _call_sites(self) -> dict:
        idx = getattr(self, "_sites_by_callee", None)
        if idx is None:
            idx = {}
            inits = {fi.cls: fi for fi in self.funcs_by_name.get("__init__", ()) if fi.cls is not None}
            for ci in self.calls:
                for fi in self.callees(ci):
                    idx.setdefault(fi, []).append(ci)
                if isinstance(ci.node.func, cst.Name) and ci.attr in inits:  # a constructor runs ``__init__``
                    idx.setdefault(inits[ci.attr], []).append(ci)
            self._sites_by_callee = idx
        return idx

    # ------------------------------------------------------------ attributes
    def _field(self, attr: str, depth: int) -> frozenset:
        """What the field ``attr`` holds, over every definition of it in the file."""
        key = ("f", attr)
        res = self._memo(key, depth)
        if res is not None:
            return res
        cuts, outer = self._cuts, self._deep
        out: set[str] = set()
        defs = self._field_defs().get(attr)
        self._deep = depth if defs is not None else -1
        if defs is None:
            out |= _name_fallback(attr)
        elif depth >= _LIMIT:
            self._cuts += 1
        else:
            for value, func, line, on_self in defs:
                if func is None or not on_self:
                    out |= self._expr(value, func, line, depth + 1, False)
                    continue
                # ``self.attr = value`` in a method: its ``self`` and the constructor's
                # parameters belong to the instance (they reach reads through the receiver)
                got = self._expr(value, func, line, depth + 1, True)
                out |= _concrete(got)
                if func.name != "__init__":
                    for s in got - _concrete(got):
                        p, stat = _param_of(s)
                        if p != (func.params[0] if func.params else ""):
                            got_p = self._param(func, p, depth + 1)
                            out |= got_p - {TRAIN} if stat else got_p
        return self._keep(key, depth, frozenset(out), cuts, outer)

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
                if isinstance(t, (cst.Tuple, cst.List)):
                    stack.extend(el.value for el in t.elements)
                elif isinstance(t, cst.StarredElement):
                    stack.append(t.value)
                elif isinstance(t, cst.Attribute) and isinstance(t.value, cst.Name):
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
                if isinstance(v, cst.Call):
                    f = v.func
                    callee = f.attr.value if isinstance(f, cst.Attribute) else getattr(f, "value", "")
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


def _statistic(labels: frozenset) -> frozenset:
    """What a statistic of ``labels`` carries: not ``TRAIN`` (an open parameter is marked ``~``)."""
    return frozenset(x if not x.startswith("@") or x.endswith("~") else x + "~" for x in labels if x != TRAIN)


def _carries_train(call: cst.Call) -> bool:
    f = call.func
    name = f.attr.value if isinstance(f, cst.Attribute) else (f.value if isinstance(f, cst.Name) else "")
    return bool(TRAIN_CARRY_RE.search(name))


def _module_root(n: cst.Attribute) -> str:
    """``os`` for ``os.path.join`` (a chain of plain attributes), else ``""``."""
    v = n.value
    while isinstance(v, cst.Attribute):
        v = v.value
    return v.value if isinstance(v, cst.Name) else ""


def _name_fallback(name: str) -> frozenset:
    """Labels by name alone, for a value the file gives no source for (module docstring)."""
    out = set()
    if is_val_name(name):
        out.add(VAL)
    if is_train_data_name(name):
        out.add(TRAIN)
    return frozenset(out)
