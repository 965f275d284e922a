"""Which of the submission's functions computed the reported score (parent side).

Reuses the rules' facts read-only: `rules.facts.headline.headline_path` finds the log
call that printed the logs' headline metric line and the functions whose results it
formats (the evaluators). The probe runs those first and judges its verdict by them.

    headline_of(record, source) -> Headline | None, reason
    logged_env(record, source, facts, evaluators) -> {ENV_KEY: (value, why)}: switches the logs
        show were on, settings the headline evaluators' calls read that the logs printed
    defined_functions(source) -> set of module-level function names
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field


@dataclass
class Headline:
    text: str  # the headline log line
    where: str  # "log:line"
    printed_at: list[int]  # the printing calls' lines in the script
    functions: list[str] = field(default_factory=list)  # the evaluators, module-level functions


def _facts(source: str):
    import libcst as cst

    from rules.facts import Facts

    return Facts(cst.parse_module(source), source, env={})


def logged_env(record, source: str, facts=None, evaluators: set[str] = frozenset()) -> dict[str, tuple[str, str]]:
    """The environment the logs show: switches a log line shows were on (a message piece
    printed only when a switch is true, `f"{f' slot_lr={lr}' if use_slot else ''}"` printed
    ` slot_lr=`, sets the env key behind that switch so the gate holds), and the settings
    the headline `evaluators`' calls read that a log line printed. {KEY: (value, why)}."""
    try:
        from rules.engine import _gate_true_under
        from rules.facts.headline import gated_pieces, log_calls

        facts = facts or _facts(source)
        out: dict[str, tuple[str, str]] = _headline_values(facts, record, evaluators)
        grouped = [lc for lc in log_calls(facts) if lc.groups]
        if not grouped:
            return out
        for run in getattr(record, "logs", None) or []:
            for number, text in run.context:
                if not any(lc.anchor in text for lc in grouped):
                    continue
                for lc, gate, piece in gated_pieces(facts, text):
                    sw = facts.switch_for(gate)
                    for v in sw.vars:
                        key = v.env_key
                        if not key or key in out or facts.test_value(gate) is not False:
                            continue
                        for value in ("1", "True"):
                            if _gate_true_under(facts, sw, {key: value}):
                                out[key] = (value, f"{run.log}:{number} shows `{piece.strip()[:40]}`, printed at "
                                                   f"line {lc.line} only when `{facts.code(gate.test).strip()}`")
                                break
        return out
    except Exception:  # the static facts failed: the configuration stays as the logs' config events give it
        return {}


def _headline_values(facts, record, evaluators: set[str]) -> dict[str, tuple[str, str]]:
    """Settings the run's log lines print that the headline evaluation's call reads:
    `eval_val_sliding(..., eval_stride=args.eval_stride)` under `if args.eval_stride > 0`,
    and a log line printed `stride:256` from `args.eval_stride`, so the scored run had
    EVAL_STRIDE=256 (the default of 0 would skip or break the evaluation the probe must
    run). Only numbers and booleans, of names read at the evaluator's call sites (arguments
    and enclosing `if`s) and backed by an environment variable; never the process layout
    (the probe is one process) and never paths (the probe brings its own data). The probe's
    shrinking still applies on top."""
    import libcst as cst

    from auditor.probes.discover import RUNTIME_DEFAULTS
    from rules.facts.headline import logged_values

    wanted: dict[str, str] = {}  # config name -> env key
    for ci in facts.calls:
        named = {ci.name} | {a.value.value for a in ci.node.args if isinstance(a.value, cst.Name)}
        if not named & evaluators:
            continue
        parts = [a.value for a in ci.node.args] + [g.test for g in ci.ctx.gates]
        for part in parts:
            for node in _names_in(part):
                cv = facts.config.get(node)
                if cv is not None and cv.env_key and node not in RUNTIME_DEFAULTS:
                    wanted[node] = cv.env_key
    out: dict[str, tuple[str, str]] = {}
    if not wanted:
        return out
    for run in getattr(record, "logs", None) or []:
        if getattr(run, "headline", None) is None:
            continue
        for number, text in run.context:
            for lc, expr, value in logged_values(facts, text):
                name = expr.attr.value if isinstance(expr, cst.Attribute) else getattr(expr, "value", None)
                key = wanted.get(name) if isinstance(name, str) else None
                if key and key not in out and _NUMBER.fullmatch(value):
                    out[key] = (value, f"{run.log}:{number} shows `{value}` printed from "
                                       f"`{facts.code(expr).strip()}` at line {lc.line}")
        break
    return out


_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|True|False|true|false)")


def _names_in(node) -> set[str]:
    """Attribute and variable names an expression reads (`args.eval_stride` -> eval_stride)."""
    import libcst as cst

    from rules.facts.nodes import iter_nodes

    return {n.value for n in iter_nodes(node) if isinstance(n, cst.Name)}  # an attribute's name is a Name


def headline_of(record, source: str, facts=None) -> tuple[Headline | None, str]:
    from auditor.evidence import headline_lines

    lines = headline_lines(getattr(record, "logs", None) or [])
    if not lines:
        return None, "no log shows a headline metric line"
    try:
        from rules.facts.headline import headline_path

        hp = headline_path(facts or _facts(source), lines)
    except Exception as exc:  # the static facts failed: say so, never guess
        return None, f"the headline's code could not be analysed ({type(exc).__name__}: {exc})"
    if hp is None:
        return None, f"no code of the script prints the headline line `{lines[0][2].strip()[:80]}`"
    top = defined_functions(source)
    funcs = sorted(f.name for f in hp.evaluators if f.name in top)
    if not funcs:
        return None, f"the headline line is printed at line {hp.printers[0].line}, but not from a module-level function"
    return Headline(hp.text.strip(), hp.where, sorted(p.line for p in hp.printers), funcs), ""


def defined_functions(source: str) -> set[str]:
    """Module-level functions the script defines (what `--entry` may name). A script
    in Python 3.12's f-string syntax is read as the probe child reads it, re-quoted."""
    from auditor.probes import fstrings

    try:
        tree = ast.parse(source)
    except SyntaxError:
        try:
            tree = ast.parse(fstrings.downgrade(source))
        except (SyntaxError, ValueError, RecursionError):
            return set()
    except (ValueError, RecursionError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
