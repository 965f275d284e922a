"""Which log call printed a log line, and the headline path.

A log call's message (an f-string, a literal, ``"..." % x``, ``"...".format(..)``,
pieces joined with ``+``) becomes a pattern: its literal text kept, each formatted
value a wildcard. A log line is *printed by* the calls whose pattern it matches, so
the engine can ask "which code printed this line?" instead of matching words:

* ``printers(facts, text)``: the log calls that can have printed ``text``;
* ``gated_pieces(facts, text)``: the conditional pieces of a message that the line
  shows were printed (``f"{f' slot_lr={lr}' if use_slot else ''}"`` printed its
  ``slot_lr=`` piece, so ``use_slot`` was true in that run);
* ``logged_values(facts, text)``: the values of names a log call formatted, read back
  from the line (``f"dirichlet={args.ngram_dirichlet}"`` printed ``dirichlet=True``);
* ``headline_path(facts, texts)``: the functions that compute the value of the
  headline metric line (the log line the submission reports, found by
  ``auditor.evidence``): the callees whose results the printing call formats (or
  the function a printing helper is handed with the headline's label), and
  everything they call. ``None`` when no log call can have printed the headline;
* ``off_headline(facts, path, func)``: the other evaluation ``func`` serves, if any.

Known limits: a log call is recognised by its callee's name (``print``, ``log*``,
``*log*``, ``info``, ``warning``): nothing in the program says which calls write the
log, and a wrongly included call only adds patterns that no log line matches. A
message built in a variable before the call, or by a logger's own format string,
has no pattern (its lines prove nothing); a value handed to the
printing call through a container or an attribute of ``self`` is not followed, so
its evaluator is not found (the headline is then unidentified, never guessed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from .nodes import string_value
from .records import CallInfo, FuncInfo, Gate

# calls that print: ``print``, ``log0``, ``log_fn``, ``logger.info`` ...
_LOG_CALL_RE = re.compile(r"(print|log|^info$|^warning$)", re.I)
_ANY = ("any",)
_MIN_LITERAL = 4  # alphanumerics of literal text a message needs to identify its lines


@dataclass(eq=False)
class LogCall:
    ci: CallInfo
    rx: re.Pattern  # unanchored: the line may carry a logger's prefix or a longer tail
    rx_full: re.Pattern  # anchored at the line's end: decides which conditional pieces printed
    anchor: str  # the longest literal piece, a cheap substring test before the regex
    always: str  # literal text printed whatever the conditional pieces decide
    groups: dict[str, tuple[cst.IfExp, str]] = field(default_factory=dict)  # group -> (if-expression, its text)
    values: dict[str, cst.BaseExpression] = field(default_factory=dict)  # group -> the name / attribute formatted

    @property
    def line(self) -> int:
        return self.ci.line

    def literal(self) -> str:
        return self.always.strip()


def _string_tokens(node: cst.CSTNode, groups: list) -> list | None:
    """The message as tokens ("lit", text) / _ANY / ("grp", name, body, orelse);
    ``None`` when ``node`` is not built from strings."""
    if isinstance(node, cst.SimpleString):
        try:
            val = string_value(node)
        except Exception:
            return None
        if isinstance(val, bytes):
            val = val.decode("latin-1")
        return _split_lines_first(val)
    if isinstance(node, cst.FormattedString):
        out: list = []
        for p in node.parts:
            if isinstance(p, cst.FormattedStringText):
                text = p.value.replace("{{", "{").replace("}}", "}")
                for i, piece in enumerate(re.split(r"\\.", text)):
                    if i:
                        out.append(_ANY)
                    if piece:
                        out.append(("lit", piece))
            elif isinstance(p, cst.FormattedStringExpression):
                e = p.expression
                if isinstance(e, cst.IfExp):
                    body = _string_tokens(e.body, groups)
                    orelse = _string_tokens(e.orelse, groups)
                    if body is not None and orelse is not None:
                        name = f"g{len(groups)}"
                        groups.append((name, e, "".join(t[1] for t in body if t[0] == "lit")))
                        out.append(("grp", name, body, orelse))
                        continue
                if isinstance(e, (cst.Name, cst.Attribute)):  # a value worth reading back
                    name = f"v{len(groups)}"
                    groups.append((name, e, None))
                    out.append(("val", name))
                    continue
                out.append(_ANY)
        return out
    if isinstance(node, cst.ConcatenatedString):
        a, b = _string_tokens(node.left, groups), _string_tokens(node.right, groups)
        return None if a is None or b is None else a + b
    if isinstance(node, cst.BinaryOperation):
        if isinstance(node.operator, cst.Add):
            a, b = _string_tokens(node.left, groups), _string_tokens(node.right, groups)
            if a is None and b is None:
                return None
            return (a or [_ANY]) + (b or [_ANY])
        if isinstance(node.operator, cst.Modulo) and isinstance(node.left, cst.SimpleString):
            return _placeholders(node.left, r"%[-#0 +]*[\d*]*(?:\.[\d*]+)?[a-zA-Z%]")
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "format" \
            and isinstance(node.func.value, cst.SimpleString):
        return _placeholders(node.func.value, r"\{[^{}]*\}")
    return None


def _split_lines_first(val: str) -> list:
    # a message of several lines: its first line is what a log line can show
    val = val.split("\n", 1)[0]
    return [("lit", val)] if val else []


def _placeholders(node: cst.SimpleString, spec: str) -> list | None:
    try:
        val = string_value(node)
    except Exception:
        return None
    if isinstance(val, bytes):
        val = val.decode("latin-1")
    out: list = []
    for i, piece in enumerate(re.split(spec, val.split("\n", 1)[0])):
        if i:
            out.append(_ANY)
        if piece:
            out.append(("lit", piece))
    return out


def _regex(tokens: list) -> str:
    parts = []
    for t in tokens:
        if t[0] == "lit":
            parts.append(re.escape(t[1]))
        elif t[0] == "any":
            parts.append(".*?")
        elif t[0] == "val":
            parts.append(f"(?P<{t[1]}>.*?)")
        else:
            parts.append(f"(?:(?P<{t[1]}>{_regex(t[2])})|{_regex(t[3])})")
    return "".join(parts)


def _literals(tokens: list, always: bool) -> list[str]:
    out = []
    for t in tokens:
        if t[0] == "lit":
            out.append(t[1])
        elif t[0] == "grp" and not always:
            out += _literals(t[2], always) + _literals(t[3], always)
    return out


def log_calls(facts) -> list[LogCall]:
    """Every call of the layer that prints a message with a pattern."""
    cached = facts.__dict__.get("_log_calls")
    if cached is not None:
        return cached
    out: list[LogCall] = []
    for ci in facts.calls:
        if not ci.node.args or not _LOG_CALL_RE.search(ci.attr or ""):
            continue
        groups: list = []
        try:
            tokens = _string_tokens(ci.node.args[0].value, groups)
        except RecursionError:
            tokens = None
        if not tokens:
            continue
        always = _literals(tokens, True)
        if sum(ch.isalnum() for ch in "".join(always)) < _MIN_LITERAL:
            continue
        while tokens and tokens[-1] == _ANY:
            tokens = tokens[:-1]
        body = _regex(tokens)
        try:
            rx, rx_full = re.compile(body), re.compile(body + r"\s*$")
        except re.error:
            continue
        out.append(LogCall(ci, rx, rx_full, max(always, key=len), "".join(always),
                           {name: (e, text) for name, e, text in groups if text is not None},
                           {name: e for name, e, text in groups if text is None}))
    facts.__dict__["_log_calls"] = out
    return out


def printers(facts, text: str) -> list[LogCall]:
    """The log calls whose message can be ``text``."""
    cache = facts.__dict__.setdefault("_printers", {})
    got = cache.get(text)
    if got is None:
        got = cache[text] = [lc for lc in log_calls(facts) if lc.anchor in text and lc.rx.search(text)]
    return got


def gated_pieces(facts, text: str) -> list[tuple[LogCall, Gate, str]]:
    """The conditional pieces of a message that ``text`` shows were printed, each as
    (call, a gate for its condition, the piece's literal text)."""
    out = []
    for lc in printers(facts, text):
        if not lc.groups:
            continue
        m = lc.rx_full.search(text)
        if m is None:
            continue
        for name, (e, piece) in lc.groups.items():
            if m.group(name) is not None and sum(ch.isalnum() for ch in piece) >= _MIN_LITERAL:
                out.append((lc, Gate(e.test, True, lc.line, (lc.line, lc.line), lc.ci.ctx.func), piece.strip()))
    return out


def logged_values(facts, text: str) -> list[tuple[LogCall, cst.BaseExpression, str]]:
    """The values of names / attributes that ``text`` shows a log call formatted:
    ``f"dirichlet={args.ngram_dirichlet}"`` printed as ``dirichlet=True``."""
    out = []
    for lc in printers(facts, text):
        if not lc.values:
            continue
        m = lc.rx_full.search(text)
        if m is None:
            continue
        for name, e in lc.values.items():
            v = m.group(name)
            if v is not None and v.strip() and " " not in v.strip():
                out.append((lc, e, v.strip()))
    return out


@dataclass
class HeadlinePath:
    """Where the reported score comes from."""

    text: str  # the headline log line
    where: str  # "log:line"
    printers: list[LogCall]
    evaluators: set[FuncInfo]  # the functions whose results the printing call formats
    funcs: set[FuncInfo]  # ... and everything they call

    def describe(self) -> str:
        lines = ", ".join(str(p.line) for p in self.printers)
        names = ", ".join(sorted(f"`{f.name}`" for f in self.evaluators)) or "the printing function"
        return f"the headline `{self.text.strip()[:80]}` ({self.where}) is printed at line {lines} from {names}"


def value_callees(facts, lc: LogCall) -> set[FuncInfo]:
    """The file's functions whose results the log call formats: the calls in the
    definitions (before the call, in its function) of the names it prints."""
    cache = facts.__dict__.setdefault("_value_callees", {})
    got = cache.get(id(lc))
    if got is None:
        got = cache[id(lc)] = _value_callees(facts, lc)
    return got


def _value_callees(facts, lc: LogCall) -> set[FuncInfo]:
    func = lc.ci.ctx.func
    scope = func.defs if func is not None else facts.module_defs
    out: set[FuncInfo] = set()
    msg = lc.ci.node.args[0].value
    seen: set[str] = set()
    todo = [n for n in facts.names(msg)]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        for ln, value in scope.get(n, ()):
            if value is None or ln > lc.line:
                continue
            for sub in _calls_in(value):
                got = facts.callees_of(sub)
                out |= set(got)
                if not got:  # ``float(loss)``, ``loss.item()``: follow the names inside
                    todo += [m for m in facts.names(sub) if m not in seen]
            if not isinstance(value, cst.Call):
                todo += [m for m in facts.names(value) if m not in seen]
    for sub in _calls_in(msg):
        out |= set(facts.callees_of(sub))
    return out


def _calls_in(node: cst.CSTNode):
    from .nodes import iter_nodes
    return [n for n in iter_nodes(node) if isinstance(n, cst.Call)]


def closure(facts, funcs: set[FuncInfo]) -> set[FuncInfo]:
    """``funcs`` and every function of the file they (transitively) call or define."""
    cache = facts.__dict__.setdefault("_closure", {})
    key = frozenset(funcs)
    got = cache.get(key)
    if got is None:
        got = cache[key] = _closure(facts, funcs)
    return got


def _closure(facts, funcs: set[FuncInfo]) -> set[FuncInfo]:
    out = set(funcs)
    todo = list(funcs)
    while todo:
        f = todo.pop()
        for ci in facts.calls_by_func.get(f, ()):
            for g in facts.callees(ci):
                if g not in out:
                    out.add(g)
                    todo.append(g)
        for g in facts.funcs:
            if g.parent is f and g not in out:
                out.add(g)
                todo.append(g)
    return out


def headline_path(facts, headlines: list[tuple[str, int, str]]) -> HeadlinePath | None:
    """The headline path, from the headline lines ``(log, line, text)`` of the logs;
    ``None`` when no log call of this layer prints them or nothing computes them."""
    key = tuple(headlines)
    cache = facts.__dict__.setdefault("_headline", {})
    if key in cache:
        return cache[key]
    got = None
    for src, ln, text in headlines:
        ps = printers(facts, text)
        if not ps:
            continue
        evals: set[FuncInfo] = set()
        for lc in ps:
            f = lc.ci.ctx.func
            if f is not None and "score" in facts.func_kinds.get(f, set()) and not _is_entry(facts, f):
                evals.add(f)  # the evaluator prints its own result
            evals |= value_callees(facts, lc)
            for _ci, labels, passed in helper_calls(facts, lc):
                if any(lab in text for lab in labels):
                    evals |= passed
        evals = {f for f in evals if "score" in facts.func_kinds.get(f, set())}
        if evals:
            got = HeadlinePath(text, f"{src}:{ln}", ps, evals, closure(facts, evals))
            break
    cache[key] = got
    return got


def _is_entry(facts, f: FuncInfo) -> bool:
    """Called from the module body (``main()`` under the ``__main__`` guard)."""
    return any(c.func is None and c.cls is None for c in facts.refs_by_func.get(f.name, ()))


def off_headline(facts, hp: HeadlinePath, func: FuncInfo | None) -> tuple[FuncInfo, LogCall] | None:
    """Does ``func`` serve another evaluation than the headline's? That is: it belongs
    to an evaluator whose result a non-headline log call prints, outside the headline
    path, and that evaluator cannot change what the headline measures (it updates no
    weights, or every call to it comes after the headline is printed)."""
    if func is None or func in hp.funcs:
        return None
    last = max(p.line for p in hp.printers)
    pfuncs = {p.ci.ctx.func for p in hp.printers}
    for lc in log_calls(facts):
        cands = set() if lc in hp.printers else set(value_callees(facts, lc))
        for _ci, labels, passed in helper_calls(facts, lc):
            if labels and not any(lab in hp.text for lab in labels):
                cands |= passed
        for ev in sorted(cands, key=lambda g: g.start):
            kinds = facts.func_kinds.get(ev, set())
            if ev in hp.funcs or "score" not in kinds or func not in closure(facts, {ev}):
                continue
            if kinds & {"grad", "step"}:
                sites = [ci for ci in facts.calls if ev in facts.callees(ci)]
                if not sites or not all(ci.ctx.func in pfuncs and ci.line > last for ci in sites):
                    continue
            return ev, lc
    return None


def helper_calls(facts, lc: LogCall) -> list[tuple[CallInfo, list[str], set[FuncInfo]]]:
    """The calls of a printing helper (``timed_eval("final_sliding", eval_sliding, ..)``
    whose log call formats its label and the result of the function it is handed):
    each call with its string labels and the file's functions it passes."""
    f = lc.ci.ctx.func
    if f is None or _is_entry(facts, f):
        return []
    cache = facts.__dict__.setdefault("_helper_calls", {})
    got = cache.get(id(f))
    if got is not None:
        return got
    got = []
    for ci in facts.calls:
        if f not in facts.callees(ci):
            continue
        labels, passed = [], set()
        for a in ci.node.args:
            v = a.value
            if isinstance(v, cst.SimpleString):
                try:
                    lab = string_value(v)
                except Exception:
                    continue
                if isinstance(lab, str) and sum(ch.isalnum() for ch in lab) >= _MIN_LITERAL:
                    labels.append(lab)
            elif isinstance(v, cst.Name):
                passed |= {g for g in facts.funcs_by_name.get(v.value, ()) if g.cls is None
                           and "score" in facts.func_kinds.get(g, set())}
        if passed:
            got.append((ci, labels, passed))
    cache[id(f)] = got
    return got
