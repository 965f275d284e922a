"""PG106 from code and logs: the scored target stream clamped or remapped before the loss.

A target id clamped into a range (``.clamp``, ``torch.clamp``, ``.clip``) or folded
(``% n``, ``remainder``, ``fmod``) before it reaches a loss's target argument is no
longer the token the validation stream holds: the score is not the canonical one
(RULEBOOK.md: bytes in val_bpb, "scoring a remapped or clamped target stream").
When the logs show two different vocabulary sizes (the model's smaller than the
tokenizer's) the clamp changes real targets: illegal. Without that, a warning.

Known limits: follows the clamped value through plain assignments in one function;
the loss is recognised by its API name (``cross_entropy``, ``nll_loss``).
"""

from __future__ import annotations

import ast
import re

from auditor.checks.base import CheckRule, leaderboard_severity
from rules.core import Finding, Location, Severity
from auditor.record import Record

STREAM = CheckRule(
    "PG106",
    "scoring-coverage",
    "Every validation target is scored as the token it is: no clamped, remapped or subset stream.",
    "RULEBOOK.md: bytes in val_bpb (a remapped or clamped target stream); full validation set",
)

ALTER = {"clamp", "clamp_", "clip", "clip_", "remainder", "fmod"}
VIEWS = {"reshape", "view", "flatten", "long", "int", "to", "contiguous", "squeeze", "unsqueeze", "clone"}
LOSSES = {"cross_entropy", "nll_loss"}
VOCAB_RE = re.compile(r"vocab[_ ]?size\s*[:=]?\s*(\d{3,7})", re.I)


def check(record: Record) -> list[Finding]:
    from auditor.checks.bytes import _code_trees

    findings: list[Finding] = []
    sizes, size_lines = _logged_vocab_sizes(record)
    severity, note = leaderboard_severity(record, Severity.ILLEGAL)
    for fname, layer, tree in _code_trees(record):
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            hit = _clamped_target(func)
            if hit is None:
                continue
            line, loss_line = hit
            mismatch = len(sizes) > 1
            findings.append(STREAM.finding(
                severity if mismatch else Severity.WARNING,
                f"`{func.name}` ({fname}) clamps or remaps the target ids (line {line}) before the loss "
                f"(line {loss_line}): targets outside the range are scored as other tokens"
                + (f"; the logs show vocabulary sizes {', '.join(map(str, sorted(sizes)))}, so real validation "
                   "targets are changed and the score is not the canonical one" + note if mismatch else ""),
                Location(fname, line, line, layer),
                evidence=size_lines[:3] if mismatch else [],
                key=f"clamp:{fname}:{func.name}",
            ))
    return findings


def _logged_vocab_sizes(record: Record) -> tuple[set[int], list[str]]:
    """Distinct vocabulary sizes the logs print, and the lines that print them."""
    sizes: set[int] = set()
    lines: list[str] = []
    if record.code_only:
        return sizes, lines
    for run in record.logs:
        for n, text in run.context:
            if "def " in text or "environ" in text:
                continue  # code echoed into the log
            values = {int(v) for v in VOCAB_RE.findall(text)}
            if values - sizes:
                lines.append(f"{run.log}:{n}: {text.strip()[:160]}")
            sizes |= values
    return sizes, lines


def _clamped_target(func) -> tuple[int, int] | None:
    """(line of the clamp, line of the loss) when a clamped value reaches a loss's target."""
    tainted: dict[str, int] = {}
    assigns = [n for n in ast.walk(func) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))]
    for _ in range(4):
        for node in assigns:
            value = node.value
            if value is None:
                continue
            origin = _alters(value)
            if origin is None:
                root = _view_of(value)
                origin = tainted.get(root) if root else None
            if origin is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id not in tainted:
                    tainted[t.id] = origin
    for call in ast.walk(func):
        if not isinstance(call, ast.Call):
            continue
        fname = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if fname not in LOSSES:
            continue
        target = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "target"), None)
        if target is None:
            continue
        direct = _alters(target)
        if direct is not None:
            return direct, call.lineno
        root = _view_of(target)
        if root in tainted:
            return tainted[root], call.lineno
    return None


def _view_of(expr) -> str | None:
    """The name ``expr`` is a view of: ``y``, ``y.reshape(-1)``, ``y[:, 1:]``, ``y.long().view(-1)``."""
    node = expr
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in VIEWS:
            node = node.func.value
        else:
            return None


def _alters(expr) -> int | None:
    """The line of a clamp/fold at the top of ``expr`` (through reshape/view/long calls)."""
    node = expr
    while True:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return node.lineno
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ALTER:
                return node.lineno
            if isinstance(f, ast.Attribute):
                node = f.value
                continue
        return None
