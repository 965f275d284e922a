"""The one libcst traversal that fills a ``Facts`` with its records."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

import libcst as cst

from .names import VAL_STRING, is_val_string
from .nodes import bound_names, callee_name, children, dotted, string_value, target_names
from .records import AssignInfo, CallInfo, Ctx, FuncInfo, Gate, LoopInfo

if TYPE_CHECKING:
    from . import Facts

_NO_GRAD_RE = re.compile(r"(no_grad|inference_mode)")


class Collector:
    """Fills ``facts`` in one walk: ``walk`` calls ``visit_X`` / ``leave_X`` in the order
    libcst's visitors do, over ``nodes.children`` (source order), so no node is
    rebuilt (libcst's ``visit`` reconstructs every node it passes); a ``visit_X`` that
    returns False walks the parts it wants itself. Lines come from ``facts._positions``."""

    def __init__(self, facts: "Facts") -> None:
        self.f = facts
        self.func_stack: list[FuncInfo] = []
        self.class_stack: list[str] = []
        self.loop_stack: list[LoopInfo] = []
        self.gate_stack: list[Gate] = []
        self.nograd_stack: list[bool] = []
        self.open_sets: list[set[str]] = []
        self.pending_gates: dict[int, list[Gate]] = {}
        self.scope_stack: list[set[str]] = []  # names bound by the comprehensions / lambdas around
        self._ctx: Ctx | None = None

    # -- helpers
    def pos(self, node: cst.CSTNode) -> tuple[int, int]:
        return self.f._positions[id(node)]

    def ctx(self) -> Ctx:
        if self._ctx is None:
            self._ctx = Ctx(
                func=self.func_stack[-1] if self.func_stack else None,
                loops=tuple(self.loop_stack),
                gates=tuple(self.gate_stack),
                no_grad=any(self.nograd_stack)
                or any(fi.no_grad for fi in self.func_stack),
                cls=self.class_stack[-1] if self.class_stack else None,
            )
        return self._ctx

    def _dirty(self) -> None:
        self._ctx = None

    def _track(self, node: cst.CSTNode) -> None:
        s: set[str] = set()
        self.f.names_in[node] = s
        self.open_sets.append(s)

    # -- the walk, with the pending early-exit gates of each statement
    def walk(self, node: cst.CSTNode) -> None:
        kind = type(node)
        handlers = _HANDLERS.get(kind)
        if handlers is None:
            handlers = _HANDLERS[kind] = (Collector.__dict__.get("visit_" + kind.__name__),
                                          Collector.__dict__.get("leave_" + kind.__name__))
        visit, leave = handlers
        gates = self.pending_gates.pop(id(node), None) if self.pending_gates else None
        if gates:
            self.gate_stack.extend(gates)
            self._dirty()
        if visit is None or visit(self, node) is not False:
            for child in children(node):
                self.walk(child)
        if leave is not None:
            leave(self, node)
        if gates:
            del self.gate_stack[-len(gates):]
            self._dirty()

    def _scan_block(self, body: Iterable[cst.CSTNode]) -> None:
        body = list(body)
        for i, stmt in enumerate(body):
            if (
                isinstance(stmt, cst.If)
                and stmt.orelse is None
                and _terminates(stmt.body)
                and i + 1 < len(body)
            ):
                start = self.pos(body[i + 1])[0]
                end = self.pos(body[-1])[1]
                g = Gate(
                    stmt.test, False, self.pos(stmt)[0], (start, end),
                    self.func_stack[-1] if self.func_stack else None, early_exit=True,
                )
                for later in body[i + 1:]:
                    self.pending_gates.setdefault(id(later), []).append(g)

    def visit_Module(self, node: cst.Module) -> None:
        self._scan_block(node.body)

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._scan_block(node.body)

    # -- names
    def visit_Name(self, node: cst.Name) -> None:
        for s in self.open_sets:
            s.add(node.value)
        if self.func_stack:
            self.f.refs_by_func.setdefault(node.value, []).append(self.ctx())
        else:
            self.f.refs_by_func.setdefault(node.value, []).append(self.ctx())

    def visit_Attribute(self, node: cst.Attribute) -> None:
        # the attr Name is visited too; record attr references for reachability
        pass

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        try:
            val = string_value(node)
        except Exception:
            return
        if isinstance(val, bytes):
            val = val.decode("latin-1")
        self._literal(node, val)

    def visit_FormattedString(self, node: cst.FormattedString) -> None:
        self._literal(node, "".join(p.value if isinstance(p, cst.FormattedStringText) else "{}" for p in node.parts))

    def _literal(self, node: cst.CSTNode, text: str) -> None:
        if is_val_string(text):
            for s in self.open_sets:
                s.add(VAL_STRING)
        self.f.strings.append((self.pos(node)[0], text, self.ctx()))

    # -- scopes
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.class_stack.append(node.name.value)
        start, end = self.pos(node)
        self.f.classes[node.name.value] = (node, start, end, self.ctx())
        self._dirty()

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.class_stack.pop()
        self._dirty()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        start, end = self.pos(node)
        parent = self.func_stack[-1] if self.func_stack else None
        cls = self.class_stack[-1] if self.class_stack and (
            not parent or parent.cls != self.class_stack[-1]) else None
        params = [p.name.value for p in node.params.params] + [
            p.name.value for p in node.params.kwonly_params] + [
            p.name.value for p in node.params.posonly_params]
        no_grad = any(_NO_GRAD_RE.search(dotted(d.decorator)) for d in node.decorators)
        qual = ".".join(x for x in (cls, node.name.value) if x)
        if parent:
            qual = parent.qualname + "." + node.name.value
        fi = FuncInfo(node.name.value, qual, node, cls, parent, params, start, end,
                      ctx=self.ctx(), no_grad=no_grad)
        for p in params:
            fi.defs.setdefault(p, []).append((start, None))
        self.f.funcs.append(fi)
        self.f.func_by_node[node] = fi
        self.f.funcs_by_name.setdefault(node.name.value, []).append(fi)
        self.func_stack.append(fi)
        # a new function starts with no loops and no gates of its own
        self._saved = getattr(self, "_saved", [])
        self._saved.append((self.loop_stack, self.gate_stack, self.nograd_stack))
        self.loop_stack, self.gate_stack, self.nograd_stack = [], [], []
        self._dirty()

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.func_stack.pop()
        self.loop_stack, self.gate_stack, self.nograd_stack = self._saved.pop()
        self._dirty()

    # -- control flow
    def visit_If(self, node: cst.If) -> bool:
        self.f.ifs.append((node, self.pos(node)[0], self.ctx()))
        self._track(node.test)
        self.walk(node.test)
        self.open_sets.pop()
        fn = self.func_stack[-1] if self.func_stack else None
        body_start, body_end = self.pos(node.body)
        line = self.pos(node)[0]
        g = Gate(node.test, True, line, (body_start, body_end), fn)
        self.gate_stack.append(g)
        self._dirty()
        self.walk(node.body)
        self.gate_stack.pop()
        self._dirty()
        if node.orelse is not None:
            o_start, o_end = self.pos(node.orelse)
            g2 = Gate(node.test, False, line, (o_start, o_end), fn)
            self.gate_stack.append(g2)
            self._dirty()
            self.walk(node.orelse)
            self.gate_stack.pop()
            self._dirty()
        return False

    def _loop(self, node, targets, it) -> None:
        start, end = self.pos(node)
        li = LoopInfo(node, tuple(targets), it, start, end,
                      self.func_stack[-1] if self.func_stack else None)
        self.f.loops.append((li, self.ctx()))
        self.loop_stack.append(li)
        self._track(node)
        self._dirty()

    def _leave_loop(self) -> None:
        self.loop_stack.pop()
        self.open_sets.pop()
        self._dirty()

    def visit_For(self, node: cst.For) -> None:
        names = target_names(node.target)
        fi = self.func_stack[-1] if self.func_stack else None
        line = self.pos(node)[0]
        defs = fi.defs if fi else self.f.module_defs
        for n in names:
            defs.setdefault(n, []).append((line, node.iter))
        self._loop(node, names, node.iter)

    def leave_For(self, node: cst.For) -> None:
        self._leave_loop()

    def visit_While(self, node: cst.While) -> None:
        self._loop(node, [], None)

    def leave_While(self, node: cst.While) -> None:
        self._leave_loop()

    def visit_With(self, node: cst.With) -> None:
        ng = any(_NO_GRAD_RE.search(dotted(it.item)) for it in node.items)
        self.nograd_stack.append(ng)
        self._dirty()

    def leave_With(self, node: cst.With) -> None:
        self.nograd_stack.pop()
        self._dirty()

    # -- statements
    def _assign(self, node, targets, value, op) -> None:
        start, end = self.pos(node)
        ai = AssignInfo(node, targets, value, op, start, end, self.ctx())
        self.f.assigns.append(ai)
        fi = self.func_stack[-1] if self.func_stack else None
        defs = fi.defs if fi else self.f.module_defs
        for t in targets:
            for n in target_names(t):
                defs.setdefault(n, []).append((start, value if op == "=" else node))
        if fi is None and self.class_stack:
            for t in targets:
                for n in target_names(t):
                    self.f.class_fields.append((self.class_stack[-1], n, value, start))
        self._track(node)

    def visit_Assign(self, node: cst.Assign) -> None:
        self._assign(node, [t.target for t in node.targets], node.value, "=")

    def leave_Assign(self, node: cst.Assign) -> None:
        self.open_sets.pop()

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._assign(node, [node.target], node.value, "=")

    def leave_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.open_sets.pop()

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        op = type(node.operator).__name__
        self._assign(node, [node.target], node.value, op)

    def leave_AugAssign(self, node: cst.AugAssign) -> None:
        self.open_sets.pop()

    def visit_Del(self, node: cst.Del) -> None:
        self.f.deletes.append((set(target_names(node.target)), self.pos(node)[0], self.ctx()))

    def visit_Return(self, node: cst.Return) -> None:
        if self.func_stack:
            self.func_stack[-1].returns.append(node)
        self._track(node)

    def leave_Return(self, node: cst.Return) -> None:
        self.open_sets.pop()

    def visit_Yield(self, node: cst.Yield) -> None:
        if self.func_stack:  # what a generator yields is what its callers get
            self.func_stack[-1].returns.append(node)

    # -- comprehensions and lambdas: the names they bind around each call
    def _enter_scope(self, node: cst.CSTNode) -> None:
        self.scope_stack.append(bound_names(node, self.f.subtree))

    def _leave_scope(self, node: cst.CSTNode) -> None:
        self.scope_stack.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda = _enter_scope
    leave_ListComp = leave_SetComp = leave_DictComp = leave_GeneratorExp = leave_Lambda = _leave_scope

    def visit_Call(self, node: cst.Call) -> None:
        if self.scope_stack:
            self.f.comp_bound[node] = set().union(*self.scope_stack)
        start, end = self.pos(node)
        name = dotted(node.func)
        ci = CallInfo(node, name, callee_name(node), start, end, self.ctx())
        self.f.calls.append(ci)
        self._track(node)

    def leave_Call(self, node: cst.Call) -> None:
        self.open_sets.pop()

    def visit_Subscript(self, node: cst.Subscript) -> None:
        self.f.subscripts.append((node, self.pos(node)[0], self.ctx()))
        self._track(node)

    def leave_Subscript(self, node: cst.Subscript) -> None:
        self.open_sets.pop()

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        self.f.binops.append((node, self.pos(node)[0], self.ctx()))
        self._track(node)

    def leave_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        self.open_sets.pop()

    def visit_Import(self, node: cst.Import) -> None:
        for a in node.names:
            full = dotted(a.name)
            self.f.imports.append((full, self.pos(node)[0], 0, self.ctx()))
            if a.asname is not None and isinstance(a.asname.name, cst.Name):
                self.f.import_aliases[a.asname.name.value] = full  # import urllib.request as ur

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        mod = dotted(node.module) if node.module else ""
        level = len(node.relative)
        self.f.imports.append((mod, self.pos(node)[0], level, self.ctx()))
        if level == 0 and mod and not isinstance(node.names, cst.ImportStar):
            for a in node.names:
                local = a.asname.name.value if a.asname is not None and isinstance(a.asname.name, cst.Name) \
                    else dotted(a.name)
                self.f.import_aliases[local] = f"{mod}.{dotted(a.name)}"  # from requests import get as fetch


_HANDLERS: dict[type, tuple] = {}  # node type -> (visit_X, leave_X) of Collector, or None


def _terminates(block: cst.BaseSuite) -> bool:
    body = getattr(block, "body", None)
    if not body:
        return False
    last = body[-1] if isinstance(body, (list, tuple)) else body
    if isinstance(last, cst.SimpleStatementLine):
        return any(isinstance(s, (cst.Return, cst.Raise, cst.Continue, cst.Break)) for s in last.body)
    if isinstance(block, cst.SimpleStatementSuite):
        return any(isinstance(s, (cst.Return, cst.Raise, cst.Continue, cst.Break)) for s in block.body)
    return False
