"""The rule engine: parse a layer once, build the facts once, run every rule.

A rule yields :class:`Hit` objects (a node or a line range, a message, the
evidence). The engine turns hits into :class:`rules.core.Finding`s and
judges each by where it sits:

* in a function nothing calls: INFO, unless a log line only that function
  prints shows it ran;
* on code the effective configuration switches off: a WARNING naming the switch,
  unless ``LintConfig.env`` or an evidence line shows the path ran: a line setting
  the switch, a log line that only a log call of that path can have printed
  (``rules.facts.headline.printers``), a message piece printed only when the
  switch is on, the switch's value as a log call printed it, or README /
  submission.json text naming the path or the rule's technique. Then it keeps the
  rule's severity and cites that line. A word that another path's log call also
  prints is never evidence;
* on code that runs: judged fully on the headline path (the evaluation whose
  result the logs' headline line prints, ``LintConfig.headlines``); a WARNING on
  another evaluation; judged fully, saying so, when the headline is unknown.

Known limits: README text "naming the path" is matched on the words of the
switch's configuration name and the string its test selects (``TTT_ENABLED`` and
``ttt_mode == "standard"`` -> ttt, standard), less a fixed list of generic parts
(enabled, use, mode ...); a switch named unlike its technique is not recognised by
that route (the log routes and the rule's technique phrases remain).

Parse errors never raise: ``lint_source`` returns one INFO finding
``PG000 parse-error`` carrying the parser's message and position, so a report
shows that the layer was not analysed (the caller decides whether that makes
the verdict ERROR).
"""

from __future__ import annotations

import ast
import contextlib
import gc
import re
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

import libcst as cst

from rules.core import Finding, Location, Severity

from .facts import Facts, Reach, Switch, iter_nodes, string_value
from .facts.lines import Layout
from .facts.headline import gated_pieces, headline_path, log_calls, logged_values, off_headline, printers


@dataclass
class LintConfig:
    """What the linter knows beyond the code.

    ``env``: environment values that a log, a README run command or the user
    supplies; they override the defaults written in the code.
    ``evidence_lines``: ``(source file, line, text)`` of log / README /
    submission.json lines; a finding on switched-off code becomes ILLEGAL when
    one of them shows that the path ran (a log line only that path prints, or an
    assignment of the switch such as ``NGRAM_EVAL_ORDER=5``).
    ``headlines``: ``(log, line, text)`` of each log's headline metric line (the
    score the submission reports, as ``auditor.evidence`` picks it); the code that
    prints it decides the headline path (``rules.facts.headline``).
    """

    env: dict[str, str] = field(default_factory=dict)
    evidence_lines: list[tuple[str, int, str]] = field(default_factory=list)
    headlines: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass
class Hit:
    node: cst.CSTNode | None
    message: str
    evidence: tuple[str, ...] = ()
    severity: Severity | None = None
    confidence: str = "high"
    key: str = ""
    lines: tuple[int, int] | None = None  # override the node's span
    ctx: Any = None  # a facts.Ctx, when the rule has it


class Rule:
    """Base class. Subclasses set the class attributes and implement ``check``."""

    code: ClassVar[str] = ""
    slug: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.ILLEGAL
    conditions: ClassVar[tuple[str, ...]] = ()
    reference: ClassVar[str] = ""
    # phrases a README / submission.json uses for the technique this rule flags
    # ("pre-quant TTT", "n-gram cache"): a line of those files describing it
    # upgrades a switched-off finding (see ``_technique_line``). A phrase of
    # capitals only (``SLOT``) matches case-sensitively, the others ignore case.
    techniques: ClassVar[tuple[str, ...]] = ()
    VALID: ClassVar[list[str]] = []
    INVALID: ClassVar[list[str]] = []

    def check(self, facts: Facts) -> Iterator[Hit]:  # pragma: no cover - interface
        raise NotImplementedError
        yield


_REGISTRY: list[type[Rule]] = []


def register(cls: type[Rule]) -> type[Rule]:
    if any(r.code == cls.code for r in _REGISTRY):
        raise ValueError(f"duplicate rule code {cls.code}")
    _REGISTRY.append(cls)
    _REGISTRY.sort(key=lambda r: r.code)
    return cls


# --------------------------------------------------------------------------


def _ctx_of(facts: Facts, node: cst.CSTNode | None):
    if node is None:
        return None
    for ci in facts.calls:
        if ci.node is node:
            return ci.ctx
    for ai in facts.assigns:
        if ai.node is node:
            return ai.ctx
    for li, ctx in facts.loops:
        if li.node is node:
            return ctx
    for sub, _, ctx in facts.subscripts:
        if sub is node:
            return ctx
    for b, _, ctx in facts.binops:
        if b is node:
            return ctx
    fi = facts.func_by_node.get(node)
    if fi is not None:
        return fi.ctx
    return None


def _is_text_source(src: str) -> bool:
    return src.replace("\\", "/").rsplit("/", 1)[-1].lower() in _TEXT_SOURCES


def _off_regions(facts: Facts, reach: Reach, ctx) -> list[tuple[int, int]]:
    """The lines of the switched-off path: the regions its switches guard, the
    finding's function when that function never runs, and the functions that only
    those regions call."""
    regions = [sw.region for sw in reach.switches]
    # a gate inside the function is the innermost switch: the function's other log
    # lines show that it ran, not that the gated region did
    local = ctx is not None and bool(facts._false_gates(ctx))
    f = ctx.func if ctx is not None and not local else None
    while f is not None:
        r = facts._func_reach.get(f)
        if r is not None and not r.reachable:
            regions.append((f.start, f.end))
        f = f.parent
    for _ in range(3):
        added = False
        for ci in facts.calls:
            if not any(a <= ci.line <= b for a, b in regions):
                continue
            for g in facts.callees(ci):
                r = facts._func_reach.get(g)
                if r is not None and not r.reachable and (g.start, g.end) not in regions:
                    regions.append((g.start, g.end))
                    added = True
        if not added:
            break
    return regions


def _own_log_line(facts: Facts, regions: list[tuple[int, int]], config: LintConfig,
                  switches: list[Switch] = ()) -> tuple[str, int, str, str] | None:
    """A log line that only a log call of the switched-off path can have printed: one
    inside its regions, or under the same switch elsewhere in the function."""
    same = {(facts.code(sw.gate.test), sw.gate.polarity, id(sw.gate.func)) for sw in switches if sw.gate is not None}

    def inside(lc) -> bool:
        return any(a <= lc.line <= b for a, b in regions) or any(
            (facts.code(g.test), g.polarity, id(g.func)) in same for g in lc.ci.ctx.gates)

    mine = [lc for lc in log_calls(facts) if inside(lc)]
    if not mine:
        return None
    for src, ln, text in config.evidence_lines:
        if _is_text_source(src) or not any(lc.anchor in text for lc in mine):
            continue
        ps = printers(facts, text)
        if ps and all(inside(p) for p in ps):
            return src, ln, text, (f"printed by the log call at line {ps[0].line} "
                                   f"(`{ps[0].literal()[:40]}`), which only that path makes")
    return None


def _logged_switch_line(facts: Facts, sw: Switch, config: LintConfig) -> tuple[str, int, str, str] | None:
    """A log line reporting the switch's own value, printed by a call that formats it
    (``f"dirichlet={args.ngram_dirichlet}"`` -> ``dirichlet=True``), that turns the switch on."""
    by_name = {v.name: v for v in sw.vars}
    if not by_name or not any(lc.values for lc in log_calls(facts)):
        return None
    for src, ln, text in config.evidence_lines:
        if _is_text_source(src):
            continue
        for lc, expr, value in logged_values(facts, text):
            name = expr.attr.value if isinstance(expr, cst.Attribute) else getattr(expr, "value", "")
            v = by_name.get(name)
            if v is None or facts.config.get(name) is not v:
                continue
            env = {v.env_key or v.name.upper(): {"True": "1", "False": "0"}.get(value, value)}
            if _gate_true_under(facts, sw, env):
                return src, ln, text, (f"reports {v.name}={value}, the value line {lc.line} prints "
                                       f"(`{facts.code(expr).strip()}`)")
    return None


def _gated_piece_line(facts: Facts, sw: Switch, config: LintConfig) -> tuple[str, int, str, str] | None:
    """A log line showing a piece of a message that is printed only when the
    switch is on (``f"{f' slot_lr={lr}' if use_slot else ''}"``)."""
    want = {id(v) for v in sw.vars}
    grouped = [lc for lc in log_calls(facts) if lc.groups]
    if not want or not grouped:
        return None
    for src, ln, text in config.evidence_lines:
        if _is_text_source(src) or not any(lc.anchor in text for lc in grouped):
            continue
        for lc, gate, piece in gated_pieces(facts, text):
            if {id(v) for v in facts.switch_for(gate).vars} & want and facts.test_value(gate) is False:
                return src, ln, text, (f"shows `{piece[:40]}`, which line {lc.line} prints only when "
                                       f"`{facts.code(gate.test).strip()}` is true")
    return None


# parts of a switch's name that say nothing about the technique it switches
_GENERIC_WORDS = frozenset(
    "enabled enable use mode flag run apply do num max min order steps step size len eval type kind "
    "the and with for".split())


def _switch_words(facts: Facts, sw: Switch) -> set[str]:
    """What a switch is called (``TTT_ENABLED`` -> ttt) and the string it selects
    (``ttt_mode == "standard"`` -> standard): the words a README uses for that path."""
    raw: list[str] = []
    for v in sw.vars:
        raw += re.split(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])", v.name)
    if sw.gate is not None:
        for n in iter_nodes(sw.gate.test):
            if isinstance(n, cst.Comparison) and any(
                    isinstance(c.operator, (cst.Equal, cst.In)) for c in n.comparisons):
                for e in [n.left] + [c.comparator for c in n.comparisons]:
                    if isinstance(e, cst.SimpleString):
                        with contextlib.suppress(Exception):
                            raw += re.split(r"[^A-Za-z0-9]+", str(string_value(e)))
    return {w.lower() for w in raw if len(w) >= 3 and w.lower() not in _GENERIC_WORDS and not w.isdigit()}


def _word_re(word: str) -> re.Pattern:
    # ``ngram`` also reads ``n-gram``, ``prequant`` ``pre-quant``
    body = "[-_ ]?".join(re.escape(ch) for ch in word)
    return re.compile(rf"(?<![A-Za-z0-9_]){body}(?![A-Za-z0-9_])", re.I)


def _sentences(text: str) -> list[str]:
    # a parenthesis or a comma stays in its sentence: "X is not used (X_ORDER stays 0)"
    return [c for c in re.split(r"(?<!\d)[.;|!?](?!\d)", text) if c.strip()]


def _switch_text_line(facts: Facts, sw: Switch, regions: list[tuple[int, int]],
                      config: LintConfig) -> tuple[str, int, str, str] | None:
    """A README / submission.json line naming the switched path (every word of the
    switch, as a word of its own, in one sentence that does not say it is off), when no log call outside
    that path prints all of those words."""
    words = _switch_words(facts, sw)
    if not words:
        return None
    for lc in log_calls(facts):
        if not any(a <= lc.line <= b for a, b in regions) and all(w in lc.always.lower() for w in words):
            return None  # another path prints the same words
    pats = [_word_re(w) for w in sorted(words)]
    for src, ln, text in config.evidence_lines:
        if not _is_text_source(src):
            continue
        for sentence in _sentences(text):
            if all(p.search(sentence) for p in pats) and not _NEGATION_RE.search(sentence):
                return src, ln, text, (f"names the switched path ({', '.join(sorted(words))}, "
                                       f"from `{sw.test_text}`)")
    return None


def _switch_env_from_line(facts: Facts, sw: Switch, text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for v in sw.vars:
        for key in {v.env_key, v.name, v.name.upper()} - {None}:
            m = re.search(rf"(?<![\w-]){re.escape(key)}\s*[=:]\s*([^\s,;]+)", text, re.I)
            if m:
                env[v.env_key or v.name.upper()] = m.group(1).strip("'\"")
            flag = "--" + v.name.replace("_", "-")
            m = re.search(rf"{re.escape(flag)}[= ]([^\s,;]+)", text)
            if m:
                env[v.env_key or v.name.upper()] = m.group(1)
    return env


def _gate_true_under(facts: Facts, sw: Switch, env_extra: dict[str, str]) -> bool:
    gate = sw.gate
    if gate is None:
        return False
    saved_env, saved_cache = facts.env, facts._eval_cache
    facts.env = {**saved_env, **env_extra}
    facts._eval_cache = {}
    try:
        return facts.test_value(gate) is True
    finally:
        facts.env, facts._eval_cache = saved_env, saved_cache


_TEXT_SOURCES = ("readme.md", "submission.json")
# a line saying the technique is NOT used does not describe the headline score
_NEGATION_RE = re.compile(
    r"(\bdisabled?\b|\bnot\s+(used|enabled|active|applied|run|part)\b|\bunused\b|\bno\b|\bnot\b|"
    r"\bwithout\b|\bnever\b|\boff\b|\bremoved\b|\bdropped\b|\bremoving\b|\bablat\w*|\bfalse\b|"
    r"\bnone\b|\bn/a\b|[=:]\s*0\b|\bwithdrawn\b|\billegal\b|\bbanned\b|\binstead of\b)", re.I)


def _phrase_re(phrase: str) -> re.Pattern:
    words = [re.escape(w) for w in re.split(r"[\s_-]+", phrase.strip()) if w]
    body = r"[\s_-]*".join(words)
    flags = 0 if phrase.isupper() and len(phrase) <= 6 else re.I
    return re.compile(rf"(?<![A-Za-z0-9_]){body}(?![A-Za-z0-9_])", flags)


def _technique_line(rule: type[Rule] | None, config: LintConfig) -> tuple[str, int, str, str] | None:
    """A README.md / submission.json line that describes the rule's technique as
    used (not as disabled / not used / off)."""
    if rule is None or not rule.techniques:
        return None
    pats = [(p, _phrase_re(p)) for p in rule.techniques]
    for src, ln, text in config.evidence_lines:
        if src.replace("\\", "/").rsplit("/", 1)[-1].lower() not in _TEXT_SOURCES:
            continue
        for phrase, pat in pats:
            m = pat.search(text)
            if not m:
                continue
            # the clause around the phrase: split at sentence / list punctuation
            lo = max(text.rfind(c, 0, m.start()) for c in ".;,|(")
            his = [i for i in (text.find(c, m.end()) for c in ".;,|)") if i >= 0]
            clause = text[lo + 1: min(his) if his else len(text)]
            if _NEGATION_RE.search(clause):
                continue
            return src, ln, text, f"describes `{phrase}`, the technique behind the submission's score"
    return None


def _upgrade(facts: Facts, reach: Reach, ctx, config: LintConfig,
             rule: type[Rule] | None = None) -> tuple[str, int, str, str] | None:
    """Find an evidence line showing the switched-off path ran: a line setting its
    switch, a log line only that path prints, or README / submission.json text about
    that path or the rule's technique. Code that nothing calls ran only if its own log
    line says so."""
    if not config.evidence_lines:
        return None
    regions = _off_regions(facts, reach, ctx)
    if not reach.switches:
        return _own_log_line(facts, regions, config)
    for sw in reach.switches:
        for src, ln, text in config.evidence_lines:
            env = _switch_env_from_line(facts, sw, text)
            if env and _gate_true_under(facts, sw, env):
                return src, ln, text, "sets " + ", ".join(f"{k}={v}" for k, v in env.items())
    found = _own_log_line(facts, regions, config, reach.switches)
    for sw in reach.switches:
        found = (found or _logged_switch_line(facts, sw, config) or _gated_piece_line(facts, sw, config)
                 or _switch_text_line(facts, sw, regions, config))
    return found or _technique_line(rule, config)


def _finding(rule: type[Rule], hit: Hit, facts: Facts, file: str, layer: str,
             config: LintConfig) -> Finding:
    node = hit.node
    if hit.lines:
        start, end = hit.lines
    elif node is not None:
        start, end = facts.span(node)
    else:
        start = end = None
    severity = hit.severity or rule.severity
    message = hit.message
    evidence = list(hit.evidence)
    if not evidence and start:
        evidence = list(facts.line_text(start, end))
    ctx = hit.ctx if hit.ctx is not None else _ctx_of(facts, node)
    if ctx is not None:
        reach = facts.reach_ctx(ctx)
        # show the config values the reached path depends on
        gates = list(ctx.gates)
        f = ctx.func
        for _ in range(3):  # gates at the places that call the function, and their callers
            if f is None:
                break
            callers = [c for c in facts.refs_by_func.get(f.name, ()) if c.func is not f]
            for c in callers:
                gates += [g for g in c.gates if g not in gates]
            f = callers[0].func if callers else None
        shown: set = set()
        for g in gates:
            if g.line in shown:
                continue
            shown.add(g.line)
            sw = facts.switch_for(g)
            for v in sw.vars:
                if v.env_key and v.env_key in facts.env:
                    evidence.append(f"effective config: {v.env_key}={facts.env[v.env_key]} "
                                    f"(supplied, default {v.default!r}) enables line {g.line}")
        ran = reach.reachable
        if not reach.reachable and severity != Severity.INFO:
            up = _upgrade(facts, reach, ctx, config, rule)
            why = (reach.switches[0].describe() if reach.switches else
                   f"function `{reach.never_called}` is never called from the entry point"
                   if reach.never_called else "unreachable")
            evidence.append(f"switch: {why}")
            if up is not None:
                src, ln, text, how = up
                evidence.append(f"{src}:{ln}: {text.strip()}  <- {how}: the path ran")
                message += f" (switched off by default, but {src}:{ln} shows it ran)"
                ran = True
            elif reach.switches:
                severity = Severity.WARNING
                message += f" [not run under the effective configuration: {why}]"
            else:  # code nothing calls: info at most
                severity = Severity.INFO
                message += f" [never run: {why}]"
        if ran and severity == Severity.ILLEGAL:
            severity, message = _headline_judgement(facts, ctx, config, message, evidence)
    loc = Location(file, start, end, layer)
    return Finding(
        code=rule.code, slug=rule.slug, severity=severity, message=message,
        location=loc, evidence=tuple(evidence), confidence=hit.confidence,
        reference=rule.reference, key=hit.key or hit.message,
    )


def _headline_judgement(facts: Facts, ctx, config: LintConfig, message: str,
                        evidence: list[str]) -> tuple[Severity, str]:
    """A finding on a path that runs is judged fully when it is on the headline
    path (or the headline is unknown); on another evaluation it is a warning."""
    hp = headline_path(facts, config.headlines) if config.headlines else None
    if hp is None:
        why = ("no code of this layer prints the logs' headline line" if config.headlines
               else "no log headline line was given")
        evidence.append(f"headline path: not identified ({why}); every path that runs is judged as the scored one")
        return Severity.ILLEGAL, message
    other = off_headline(facts, hp, ctx.func)
    if other is None:
        return Severity.ILLEGAL, message
    ev, lc = other
    evidence.append(f"headline path: {hp.describe()}")
    evidence.append(f"this code serves `{ev.name}`, whose result line {lc.line} logs "
                    f"(`{lc.literal()[:40]}`): another evaluation, not the reported score")
    return Severity.WARNING, message + f" [off the headline path: serves `{ev.name}`, not the reported score]"


PARSE_ERROR_CODE = "PG000"
PARSE_ERROR_SLUG = "parse-error"


@contextlib.contextmanager
def _deep_recursion(limit: int = 20_000):
    """libcst's code generation recurses once per nesting level, and a packed payload
    written as 800 implicitly joined string pieces is 800 levels of
    ``ConcatenatedString``; CPython's parser (run first) has already bounded real
    nesting, so a higher Python recursion limit is safe while the facts are built."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def lint_source(text: str, *, file: str, layer: str = "shipped",
                config: LintConfig | None = None,
                rules: Iterable[type[Rule]] | None = None,
                tree: tuple[cst.Module, Layout] | None = None) -> list[Finding]:
    """Lint one layer's text. Never raises on bad input. ``tree``: the layer's module
    and layout as ``auditor.source`` already parsed them (after CPython's parser
    accepted the text), so the layer is not parsed again."""
    config = config or LintConfig()
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark decoded as text: not code
        text = text[1:]
    module, layout = tree if tree is not None else (None, None)
    ast_tree = None
    with _gc_paused():
        try:
            if module is None:
                # CPython's parser first: it bounds nesting (the native libcst parser can
                # overflow the C stack on pathological input) and gives clear messages.
                # ``Layout`` reads the statements' lines from its tree.
                ast_tree = ast.parse(text, filename=file)
                module = cst.parse_module(text)
        except Exception as exc:  # SyntaxError, ParserSyntaxError, recursion, NUL bytes
            line = getattr(exc, "lineno", None) or getattr(exc, "raw_line", None)
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return [Finding(
                code=PARSE_ERROR_CODE, slug=PARSE_ERROR_SLUG, severity=Severity.INFO,
                message=f"layer not analysed: cannot parse as Python ({msg})",
                location=Location(file, line if isinstance(line, int) else None, None, layer),
                confidence="high", key="parse-error",
            )]
        findings = _analyse(module, layout, ast_tree, text, file, layer, config, rules)
        # freed now, by reference counts, while the collector is off: enabled again with
        # a parsed tree still alive, its first collection would walk every node of it
        del module, layout, ast_tree, tree
        return findings


@contextlib.contextmanager
def _gc_paused():
    """The cyclic garbage collector off while a layer is parsed and analysed. The parser,
    the facts and the rules allocate millions of small tuples, sets and dicts next to a
    libcst tree of millions of nodes, and every collection of the oldest generation
    walked that whole tree again: measured on the 43 merged scripts, a third of the
    analysis's time and a tenth of the parse's. Nothing they build needs collecting
    before the lint ends (a tree holds no cycles; it is freed by reference counts);
    what it leaves is collected after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _analyse(module: cst.Module, layout: Layout | None, ast_tree: ast.Module | None, text: str, file: str,
             layer: str, config: LintConfig, rules: Iterable[type[Rule]] | None) -> list[Finding]:
    """Build the facts of a parsed layer and run the rules on them (``lint_source``)."""
    try:
        with _deep_recursion():
            if layout is None:
                layout = Layout(module, text, tree=ast_tree)
            facts = Facts(module, text, env=config.env, layout=layout)
    except RecursionError:
        return [Finding(
            code=PARSE_ERROR_CODE, slug=PARSE_ERROR_SLUG, severity=Severity.INFO,
            message="layer not analysed: too deeply nested to analyse",
            location=Location(file, None, None, layer), key="analysis-error")]
    except Exception as exc:  # a bug in the fact builder must not abort the report
        return [Finding(
            code=PARSE_ERROR_CODE, slug=PARSE_ERROR_SLUG, severity=Severity.INFO,
            message=f"layer not analysed: building the facts failed ({type(exc).__name__}: {exc})",
            location=Location(file, None, None, layer), confidence="low", key="analysis-error")]
    try:
        return _run_rules(facts, file, layer, config, rules)
    finally:
        facts.close()


def _run_rules(facts: Facts, file: str, layer: str, config: LintConfig,
               rules: Iterable[type[Rule]] | None) -> list[Finding]:
    out: list[Finding] = []
    for rule_cls in (rules if rules is not None else _REGISTRY):
        rule = rule_cls()
        try:
            hits = list(rule.check(facts))
        except Exception as exc:  # a rule bug must not hide the other rules
            out.append(Finding(
                code=rule_cls.code, slug=rule_cls.slug, severity=Severity.INFO,
                message=f"rule crashed: {type(exc).__name__}: {exc}",
                location=Location(file, None, None, layer), confidence="low",
                key="rule-crash"))
            continue
        seen: set[tuple] = set()
        for hit in hits:
            try:
                f = _finding(rule_cls, hit, facts, file, layer, config)
            except Exception as exc:  # reporting one hit failed: say so, keep the rest
                f = Finding(
                    code=rule_cls.code, slug=rule_cls.slug, severity=Severity.INFO,
                    message=f"rule crashed while reporting a finding: {type(exc).__name__}: {exc}",
                    location=Location(file, None, None, layer), confidence="low",
                    key="rule-crash")
            k = (f.location.line_start, f.location.line_end, f.message)
            if k in seen:
                continue
            seen.add(k)
            out.append(f)
    return out


def lint(unit: Any, config: LintConfig | None = None) -> list[Finding]:
    """Lint every effective layer of a SourceUnit (duck-typed: ``.name``, ``.text``)."""
    config = config or LintConfig()
    layers = getattr(unit, "effective_layers", None)
    if layers is None:
        layers = getattr(unit, "layers", [])
    file = getattr(unit, "name", "train_gpt.py")
    trees = getattr(unit, "trees", {})  # the unpacker's parses, by layer name
    out: list[Finding] = []
    for layer in layers:
        text = getattr(layer, "text", "")
        name = getattr(layer, "name", "shipped")
        tree = trees.get(name)
        if isinstance(text, bytes):
            text, tree = text.decode("utf-8-sig", errors="replace"), None
        out += lint_source(text or "", file=file, layer=name, config=config, tree=tree)
    return out


def all_rules() -> list[type[Rule]]:
    return list(_REGISTRY)


def get_rule(code: str) -> type[Rule]:
    code = code.strip()
    for r in _REGISTRY:
        if r.code.lower() == code.lower() or r.slug == code:
            return r
    raise KeyError(f"no rule {code!r}")
