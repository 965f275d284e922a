"""Reachability: which gates are decided false and which functions are ever called."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from .config import UNKNOWN, ConfigVar
from .records import Ctx, FuncInfo, Gate

_ENTRY_RE = re.compile(r"__name__")


@dataclass
class Switch:
    """Why a region does not run under the effective configuration."""

    test_text: str
    line: int
    vars: list[ConfigVar]
    region: tuple[int, int]
    gate: "Gate | None" = None

    def describe(self) -> str:
        if not self.vars:
            return f"`{self.test_text}` (line {self.line}) is false"
        parts = []
        for v in self.vars:
            src = f"env {v.env_key}" if v.env_key else v.where
            parts.append(f"{v.name} (default {v.default!r}, {src}, defined line {v.line})")
        return f"`{self.test_text}` (line {self.line}) is false: " + "; ".join(parts)


@dataclass
class Reach:
    reachable: bool
    switches: list[Switch] = field(default_factory=list)
    never_called: str | None = None  # function name that is never referenced


class ReachFacts:
    """The reachability part of ``Facts`` (a mixin: needs the evaluator)."""

    def test_value(self, gate: Gate) -> Any:
        v = self.eval(gate.test, gate.func)
        if v is UNKNOWN:
            return UNKNOWN
        try:
            return bool(v) == gate.polarity
        except Exception:
            return UNKNOWN

    def switch_for(self, gate: Gate) -> Switch:
        vars_ = []
        for nm in sorted(self.names(gate.test)):
            if nm in self.config:
                vars_.append(self.config[nm])
            else:
                # a local alias: show the config vars behind it
                fdefs = gate.func.defs.get(nm) if gate.func else self.module_defs.get(nm)
                if fdefs and len(fdefs) == 1 and fdefs[0][1] is not None:
                    for nm2 in sorted(self.names(fdefs[0][1])):
                        if nm2 in self.config:
                            vars_.append(self.config[nm2])
        text = self.code(gate.test).strip()
        if not gate.polarity:
            text = f"not ({text})"
        return Switch(text, gate.line, vars_, gate.region, gate)

    def _false_gates(self, ctx: Ctx) -> list[Gate]:
        return [g for g in ctx.gates if self.test_value(g) is False]

    def _compute_reachability(self) -> None:
        has_entry = any(
            isinstance(stmt, cst.If) and _ENTRY_RE.search(self.code(stmt.test))
            for stmt in self.module.body
        ) or any(
            c.ctx.func is None and c.ctx.cls is None and c.attr in self.funcs_by_name
            for c in self.calls
        )
        if not has_entry:
            for fi in self.funcs:
                self._func_reach[fi] = Reach(True)
            return
        reach: dict[FuncInfo, bool] = {fi: False for fi in self.funcs}
        reachable_classes: set[str] = set()

        def ctx_live(ctx: Ctx) -> bool:
            if ctx.func is not None and not reach.get(ctx.func, False):
                return False
            if ctx.func is None and ctx.cls is not None and ctx.cls not in reachable_classes:
                return False
            return not self._false_gates(ctx)

        changed = True
        while changed:
            changed = False
            for cname in self.classes:
                if cname not in reachable_classes and any(ctx_live(c) for c in self.refs_by_func.get(cname, ())):
                    reachable_classes.add(cname)
                    changed = True
            for fi in self.funcs:
                if reach[fi]:
                    continue
                if fi.parent is not None and not reach.get(fi.parent, False):
                    continue
                if fi.cls is not None and fi.cls not in reachable_classes:
                    continue
                implicit = fi.cls is not None and (fi.name.startswith("__") or fi.name == "forward")
                if implicit or any(ctx_live(c) for c in self.refs_by_func.get(fi.name, ())):
                    reach[fi] = True
                    changed = True
        for fi in self.funcs:
            if reach[fi]:
                self._func_reach[fi] = Reach(True)
                continue
            sws: list[Switch] = []
            for c in self.refs_by_func.get(fi.name, ()):
                if c.func is fi:
                    continue
                for g in self._false_gates(c):
                    sws.append(self.switch_for(g))
                    break
            self._func_reach[fi] = Reach(False, sws[:1], None if sws else fi.name)

    def reach_ctx(self, ctx: Ctx) -> Reach:
        key = id(ctx)
        r = self._reach_cache.get(key)
        if r is not None:
            return r
        fg = self._false_gates(ctx)
        if fg:
            r = Reach(False, [self.switch_for(fg[0])])
        elif ctx.func is not None:
            f = ctx.func
            r = self._func_reach.get(f, Reach(True))
            while r.reachable and f.parent is not None:
                f = f.parent
                r = self._func_reach.get(f, Reach(True))
        else:
            r = Reach(True)
        self._reach_cache[key] = r
        return r
