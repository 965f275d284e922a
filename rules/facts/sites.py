"""Scoring and update sites, and per-function summaries of what calling a function does."""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from .names import is_loss_name, is_train_name, is_val_name
from .nodes import base_name, dotted, target_names
from .records import CallInfo, Ctx, FuncInfo

_OPT_RE = re.compile(r"(opt|optim|optimizer|adam|sgd|muon)", re.I)
# scoring handed to a ledger / accumulator object or helper (see ``SiteFacts._ledger_score``)
_SCORE_METHOD_RE = re.compile(r"^(score|score_\w+|add_scores?|add_nll|record_scores?|record_nll|log_nll)$")
_SCORE_RECV_RE = re.compile(r"(ledger|total|tally|accum|meter|tracker|scorer|scoreboard|bpb|nll_acc)", re.I)
_ACC_METHOD_RE = re.compile(r"^(add|update|record|accumulate|push|extend)$")
_SCORE_FUNC_RE = re.compile(r"^(score_\w+|record_scores?|record_nll|accumulate_(nll|scores?|loss))$")


@dataclass(eq=False)
class Site:
    """A scoring or update site."""

    kind: str  # "score" | "grad" | "step" | "cache"
    node: cst.CSTNode
    line: int
    end: int
    ctx: Ctx
    target: str = ""  # accumulator / receiver name


class SiteFacts:
    """The scoring / update part of ``Facts`` (a mixin: reads the collected calls and assigns)."""

    def _build_sites(self) -> None:
        self.sites: list[Site] = []
        # names differentiated (``loss.backward()``, ``autograd.grad(loss, ..)``): a sum built
        # into one of them before the step is a training objective, not a score
        grad_lines: dict[tuple[int, str], list[int]] = {}
        for ci in self.calls:
            if ci.attr == "backward" and isinstance(ci.node.func, cst.Attribute):
                g = base_name(ci.node.func.value)
            elif ci.name in ("torch.autograd.grad", "autograd.grad") and ci.node.args:
                g = base_name(ci.node.args[0].value)
            else:
                continue
            if g:
                grad_lines.setdefault((id(ci.ctx.func), g), []).append(ci.line)

        def objective(name: str, func, line: int) -> bool:
            return any(gl > line for gl in grad_lines.get((id(func), name), ()))

        for ai in self.assigns:
            if ai.op == "=" and ai.value is not None:
                # total = total + nll   /  buf[i] = nll
                for t in ai.targets:
                    tn = base_name(t)
                    if not tn or not is_loss_name(tn) or is_train_name(tn):
                        continue
                    if isinstance(t, cst.Subscript) or (
                        isinstance(ai.value, cst.BinaryOperation) and tn in self.names(ai.value)
                        and not objective(tn, ai.ctx.func, ai.line)
                    ):
                        self.sites.append(Site("score", ai.node, ai.line, ai.end, ai.ctx, tn))
                continue
            if ai.op == "AddAssign":
                t = ai.targets[0]
                tn = base_name(t)
                if isinstance(t, cst.Subscript) and not is_loss_name(tn):
                    self.sites.append(Site("cache", ai.node, ai.line, ai.end, ai.ctx, tn))
                elif tn and is_loss_name(tn) and not is_train_name(tn) and not objective(tn, ai.ctx.func, ai.line):
                    self.sites.append(Site("score", ai.node, ai.line, ai.end, ai.ctx, tn))
        for ci in self.calls:
            recv = ci.node.func.value if isinstance(ci.node.func, cst.Attribute) else None
            rname = base_name(recv) if recv is not None else ""
            if ci.attr == "backward" or ci.name in ("torch.autograd.grad", "autograd.grad"):
                tgt = rname if ci.attr == "backward" else (
                    base_name(ci.node.args[0].value) if ci.node.args else "")
                self.sites.append(Site("grad", ci.node, ci.line, ci.end, ci.ctx, tgt))
            elif ci.attr == "step" and recv is not None and (
                    _OPT_RE.search(dotted(recv) or rname) or self._built_by_optim(rname, ci)) and not re.search(
                    r"sched", dotted(recv) or "", re.I):
                self.sites.append(Site("step", ci.node, ci.line, ci.end, ci.ctx, rname))
            elif ci.attr in ("add_", "index_add_", "scatter_add_") and rname and is_loss_name(rname) \
                    and not is_train_name(rname):
                self.sites.append(Site("score", ci.node, ci.line, ci.end, ci.ctx, rname))
            elif ci.attr in ("index_add_", "scatter_add_", "index_put_") or ci.name in (
                    "np.add.at", "numpy.add.at"):
                self.sites.append(Site("cache", ci.node, ci.line, ci.end, ci.ctx, rname))
            elif ci.attr == "append" and rname and is_loss_name(rname) and not is_train_name(rname):
                self.sites.append(Site("score", ci.node, ci.line, ci.end, ci.ctx, rname))
            elif self._ledger_score(ci):
                self.sites.append(Site("score", ci.node, ci.line, ci.end, ci.ctx, rname or ci.attr))
        self.sites.sort(key=lambda s: s.line)
        # per-function summaries (transitive through calls to local functions)
        kinds_by_func: dict[FuncInfo, set[str]] = {fi: set() for fi in self.funcs}
        for s in self.sites:
            f = s.ctx.func
            while f is not None:
                kinds_by_func[f].add(s.kind)
                f = f.parent
        calls_by_func: dict[FuncInfo | None, list[CallInfo]] = {}
        for ci in self.calls:
            calls_by_func.setdefault(ci.ctx.func, []).append(ci)
        changed = True
        while changed:
            changed = False
            for fi in self.funcs:
                for ci in calls_by_func.get(fi, ()):
                    for g in self.callees(ci):
                        if g is fi:
                            continue
                        new = kinds_by_func[g] - kinds_by_func[fi]
                        if new:
                            kinds_by_func[fi] |= new
                            changed = True
        self.func_kinds = kinds_by_func
        self.calls_by_func = calls_by_func

    def _built_by_optim(self, name: str, ci: CallInfo) -> bool:
        """``name`` was last built by ``torch.optim.X(...)`` before ``ci`` (``wo =
        torch.optim.AdamW(wl.parameters())``: an optimizer whatever its name)."""
        scope = ci.ctx.func.defs if ci.ctx.func is not None else self.module_defs
        defs = [v for ln, v in scope.get(name, ()) if ln <= ci.line and v is not None]
        return bool(defs) and isinstance(defs[-1], cst.Call) and ".optim." in f".{self.resolve(dotted(defs[-1].func))}"

    def _ledger_score(self, ci: CallInfo) -> bool:
        """A score handed to a ledger / accumulator by a call: ``ledger.score(pos, nll, nb)``,
        ``totals.add(nll)``, ``score_rows(ledger, .., nll, ..)``, when an argument is a
        loss-named value (``nll``) computed under ``no_grad`` / ``inference_mode`` (or the
        call itself runs there): the first, gradient-free score of those tokens."""
        func = ci.node.func
        if isinstance(func, cst.Attribute):
            recv = dotted(func.value) or base_name(func.value)
            if not (_SCORE_METHOD_RE.match(ci.attr) or (
                    _SCORE_RECV_RE.search(recv.rsplit(".", 1)[-1]) and _ACC_METHOD_RE.match(ci.attr))):
                return False
        elif isinstance(func, cst.Name):
            if not _SCORE_FUNC_RE.search(ci.attr):
                return False
        else:
            return False
        owner = ci.ctx.func
        for a in ci.node.args:
            for n in self.names(a.value):
                if not is_loss_name(n) or is_train_name(n) or is_val_name(n):
                    continue
                if ci.ctx.no_grad:
                    return True
                if self._defined_no_grad(n, owner, ci.line):
                    return True
        return False

    def _defined_no_grad(self, name: str, func: FuncInfo | None, line: int) -> bool:
        """Is the nearest definition of ``name`` before ``line`` in ``func`` computed under
        ``no_grad`` / ``inference_mode``?"""
        idx = getattr(self, "_assign_idx", None)
        if idx is None:
            idx = self._assign_idx = {}
            for ai in self.assigns:
                for t in ai.targets:
                    for n in target_names(t):
                        idx.setdefault((id(ai.ctx.func), n), []).append((ai.line, ai.ctx.no_grad))
        before = [d for d in idx.get((id(func), name), ()) if d[0] < line]
        return bool(before) and max(before)[1]

    def call_kinds(self, ci: CallInfo) -> set[str]:
        out: set[str] = set()
        for g in self.callees(ci):
            if ci.ctx.func is not None and g is ci.ctx.func:
                continue
            out |= self.func_kinds.get(g, set())
        return out

    def occurrences(self, func: FuncInfo | None, kinds: set[str]) -> list[tuple[int, int, Ctx, cst.CSTNode]]:
        """Places in ``func`` that perform (directly or via a local call) one of ``kinds``."""
        out = []
        for s in self.sites:
            if s.ctx.func is func and s.kind in kinds:
                out.append((s.line, s.end, s.ctx, s.node))
        for ci in self.calls_by_func.get(func, ()):
            if self.call_kinds(ci) & kinds:
                out.append((ci.line, ci.end, ci.ctx, ci.node))
        out.sort(key=lambda t: t[0])
        return out

    def is_counted(self, acc: str, func: FuncInfo | None) -> bool:
        """Does total ``acc`` reach what ``func`` reports, its return values (through the
        assignments that derive from it: ``val_loss = loss_sum / n``)? A running
        training loss that only feeds a log line (all-reduced for it or not) is not
        counted."""
        if func is None:
            return True
        assigns = [ai for ai in self.assigns if ai.ctx.func is func and ai.value is not None]
        reached = self.derived_names({acc}, assigns, lambda t: {base_name(t)} - {""})
        return any(self.names(r) & reached for r in func.returns)

    def derived_names(self, seeds: set[str], assigns: list, bound) -> set[str]:
        """``seeds`` and every name ``bound(target)`` gives for the targets of those
        ``assigns`` whose value mentions one of them, transitively."""
        out = set(seeds)
        changed = True
        while changed:
            changed = False
            for ai in assigns:
                if self.names(ai.value) & out:
                    for t in ai.targets:
                        new = bound(t) - out
                        if new:
                            out |= new
                            changed = True
        return out
