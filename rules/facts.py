"""Shared facts about one parsed layer, computed in ONE traversal.

Every rule reads these instead of walking the tree again:

* **configuration**: env-var backed settings (``X = int(os.environ.get("X", "0"))``
  in a ``Hyperparameters``-style class or at module level, ``os.getenv``,
  argparse ``default=``, literal fields of a config class whose generic reader
  maps ``f.name.upper()`` to the environment), their defaults, where they are defined, and their
  effective value once ``LintConfig.env`` overrides them;
* **gates and reachability**: for every recorded node, the ``if`` tests that
  guard it (plus early-exit guards such as ``if not args.ttt: return``) and
  whether each test is decided by the effective configuration; functions are
  reachable when referenced from reachable code (the module body, the
  ``__main__`` guard, transitively); a file without an entry point (a snippet)
  treats every function as reachable;
* **validation-token flow**: which names hold validation data, seeded by names
  such as ``val_tokens`` / ``args.val_files`` / ``"fineweb_val_*"`` strings /
  ``load_validation_tokens`` and propagated through assignments (slicing,
  indexing, ``.to()``, arithmetic, calls), ``for`` targets, function arguments
  (caller to parameter) and return values; inside a loop a read also sees
  definitions later in the loop body (the previous iteration's value);
* **scoring sites** (loss/NLL accumulated into totals, or an NLL computed under
  ``no_grad`` handed to a ledger / accumulator: ``ledger.score(..)``,
  ``totals.add(..)``, ``score_rows(..)``; a sum into a name that is later
  ``backward()``-ed is a training objective, not a score) and **update sites**
  (``backward()``, ``autograd.grad``, optimizer ``step()``, in-place cache
  updates), each with its function, enclosing loops, gates and ``no_grad``
  context, plus per-function summaries (does calling it score / update).

Known limits: flow-insensitive except for "nearest preceding definition";
aliasing through containers, attributes of objects (``self.x``) and dynamic
dispatch are not tracked; names are matched by convention (``val``, ``loss``,
``nll``, ``opt``), so exotic naming weakens the facts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, PositionProvider

UNKNOWN = object()  # result of an expression the evaluator cannot decide


# --------------------------------------------------------------------------
# records


@dataclass(eq=False)
class Gate:
    """A condition guarding a region: the region runs when ``test`` == ``polarity``."""

    test: cst.BaseExpression
    polarity: bool
    line: int  # line of the ``if``
    region: tuple[int, int]  # lines of the guarded region
    func: "FuncInfo | None"
    early_exit: bool = False


@dataclass(eq=False)
class LoopInfo:
    node: cst.CSTNode
    targets: tuple[str, ...]
    iter: cst.BaseExpression | None
    start: int
    end: int
    func: "FuncInfo | None"


@dataclass(eq=False)
class Ctx:
    func: "FuncInfo | None"
    loops: tuple[LoopInfo, ...]
    gates: tuple[Gate, ...]
    no_grad: bool
    cls: str | None


@dataclass(eq=False)
class FuncInfo:
    name: str
    qualname: str
    node: cst.FunctionDef
    cls: str | None
    parent: "FuncInfo | None"
    params: list[str]
    start: int
    end: int
    ctx: Ctx | None = None
    no_grad: bool = False
    # name -> list of (line, value node) definitions inside the function
    defs: dict[str, list[tuple[int, cst.CSTNode | None]]] = field(default_factory=dict)
    returns: list[cst.CSTNode] = field(default_factory=list)


@dataclass(eq=False)
class CallInfo:
    node: cst.Call
    name: str  # dotted name of the callee, "" if not a plain name
    attr: str  # last component
    line: int
    end: int
    ctx: Ctx


@dataclass(eq=False)
class AssignInfo:
    node: cst.CSTNode
    targets: list[cst.BaseExpression]
    value: cst.BaseExpression | None
    op: str  # "=", "+=", ...
    line: int
    end: int
    ctx: Ctx


@dataclass(eq=False)
class ConfigVar:
    name: str  # attribute / variable name, e.g. ngram_eval_order
    env_key: str | None  # e.g. NGRAM_EVAL_ORDER
    default: str | None  # the default as written
    expr: cst.BaseExpression | None
    line: int
    where: str  # "Hyperparameters" / "module" / "argparse"
    _value: Any = UNKNOWN


@dataclass(eq=False)
class Site:
    """A scoring or update site."""

    kind: str  # "score" | "grad" | "step" | "cache"
    node: cst.CSTNode
    line: int
    end: int
    ctx: Ctx
    target: str = ""  # accumulator / receiver name


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


# --------------------------------------------------------------------------
# name conventions

_SPLIT = re.compile(r"[_\W]+")
_VAL_PARTS = {"val", "valid", "validation", "vtok", "vtokens"}
_VAL_EXCLUDE = {
    "loss", "losses", "bpb", "bits", "every", "interval", "freq", "steps", "step",
    "size", "len", "acc", "score", "scores", "nll", "ppl", "time", "ms", "lr", "max",
    "min", "metrics", "metric", "sec", "seconds", "log", "frac", "fraction", "count",
    "bs", "batch_size", "stride", "seq", "ratio", "mode", "flag", "enabled", "print",
    "byte", "bytes",
}
_LOSS_RE = re.compile(r"(nll|loss|bits|logp|log_prob|logprob|(^|_)ce(_|$)|neglog)", re.I)
_TRAIN_RE = re.compile(r"(train|(^|_)tr(_|$)|(^|_)tl(_|$)|step_loss|adapt|ttt_loss|aux|reg)", re.I)
_OPT_RE = re.compile(r"(opt|optim|optimizer|adam|sgd|muon)", re.I)
_NO_GRAD_RE = re.compile(r"(no_grad|inference_mode)")
_ENTRY_RE = re.compile(r"__name__")
# scoring handed to a ledger / accumulator object or helper (see ``Facts._ledger_score``)
_SCORE_METHOD_RE = re.compile(r"^(score|score_\w+|add_scores?|add_nll|record_scores?|record_nll|log_nll)$")
_SCORE_RECV_RE = re.compile(r"(ledger|total|tally|accum|meter|tracker|scorer|scoreboard|bpb|nll_acc)", re.I)
_ACC_METHOD_RE = re.compile(r"^(add|update|record|accumulate|push|extend)$")
_SCORE_FUNC_RE = re.compile(r"^(score_\w+|record_scores?|record_nll|accumulate_(nll|scores?|loss))$")


def is_val_name(name: str) -> bool:
    parts = [p for p in _SPLIT.split(name.lower()) if p]
    if not any(p in _VAL_PARTS for p in parts):
        return False
    return not any(p in _VAL_EXCLUDE for p in parts)


def is_loss_name(name: str) -> bool:
    return bool(_LOSS_RE.search(name))


def is_train_name(name: str) -> bool:
    return bool(_TRAIN_RE.search(name))


def base_name(node: cst.CSTNode | None) -> str:
    """``a`` for ``a``, ``a.b[c].d`` -> ``a`` ... the root Name of a chain."""
    while node is not None:
        if isinstance(node, cst.Name):
            return node.value
        if isinstance(node, cst.Attribute):
            node = node.value
        elif isinstance(node, cst.Subscript):
            node = node.value
        elif isinstance(node, cst.Call):
            node = node.func
        else:
            return ""
    return ""


def dotted(node: cst.CSTNode | None) -> str:
    if node is None:
        return ""
    try:
        return get_full_name_for_node(node) or ""
    except Exception:
        return ""


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
_SKIP_FIELD = re.compile(r"^(whitespace|lpar$|rpar$|comma$|semicolon$|leading_lines$|lines_after|header$|footer$|"
                         r"newline$|equal$|colon$|dot$|star$|asynchronous$)")


def iter_nodes(node: cst.CSTNode):
    """Every node under ``node`` (itself first), in source order, without
    libcst's visit-and-replace machinery (which rebuilds every node it passes
    and dominated the rules' running time). Whitespace and punctuation fields
    are skipped."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        names = _CHILD_FIELDS.get(type(n))
        if names is None:
            names = tuple(f.name for f in dataclasses.fields(n) if not _SKIP_FIELD.match(f.name))
            _CHILD_FIELDS[type(n)] = names
        kids: list = []
        for name in names:
            v = getattr(n, name)
            if isinstance(v, cst.CSTNode):
                kids.append(v)
            elif isinstance(v, (list, tuple)):
                kids.extend(x for x in v if isinstance(x, cst.CSTNode))
        stack.extend(reversed(kids))


def target_names(node: cst.CSTNode) -> list[str]:
    """Names bound by an assignment / for target (tuples unpacked)."""
    if isinstance(node, cst.Name):
        return [node.value]
    if isinstance(node, (cst.Tuple, cst.List)):
        out: list[str] = []
        for el in node.elements:
            out += target_names(el.value)
        return out
    if isinstance(node, cst.StarredElement):
        return target_names(node.value)
    return []


# --------------------------------------------------------------------------
# the collector: one traversal


class _Collector(cst.CSTVisitor):
    # positions come from ``facts._positions`` (see ``_positions``), not from
    # ``get_metadata``: resolving through the wrapper costs a second traversal

    def __init__(self, facts: "Facts") -> None:
        super().__init__()
        self.f = facts
        self.func_stack: list[FuncInfo] = []
        self.class_stack: list[str] = []
        self.loop_stack: list[LoopInfo] = []
        self.gate_stack: list[Gate] = []
        self.nograd_stack: list[bool] = []
        self.open_sets: list[set[str]] = []
        self.pending_gates: dict[int, list[Gate]] = {}
        self.pushed: dict[int, int] = {}
        self._ctx: Ctx | None = None

    # -- helpers
    def pos(self, node: cst.CSTNode) -> tuple[int, int]:
        r = self.f._positions[node]
        return r.start.line, r.end.line

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

    # -- generic handling of pending early-exit gates
    def on_visit(self, node: cst.CSTNode) -> bool:
        gates = self.pending_gates.pop(id(node), None)
        if gates:
            self.gate_stack.extend(gates)
            self.pushed[id(node)] = len(gates)
            self._dirty()
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        super().on_leave(original_node)
        n = self.pushed.pop(id(original_node), 0)
        if n:
            del self.gate_stack[-n:]
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
            val = node.evaluated_value
        except Exception:
            return
        if isinstance(val, bytes):
            val = val.decode("latin-1")
        if "fineweb_val" in val or "val_" in val and "*" in val:
            for s in self.open_sets:
                s.add("__VAL_STRING__")
        self.f.strings.append((self.pos(node)[0], val, self.ctx()))

    def visit_FormattedString(self, node: cst.FormattedString) -> None:
        text = "".join(p.value if isinstance(p, cst.FormattedStringText) else "{}" for p in node.parts)
        if "fineweb_val" in text:
            for s in self.open_sets:
                s.add("__VAL_STRING__")
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
        node.test.visit(self)
        self.open_sets.pop()
        fn = self.func_stack[-1] if self.func_stack else None
        body_start, body_end = self.pos(node.body)
        line = self.pos(node)[0]
        g = Gate(node.test, True, line, (body_start, body_end), fn)
        self.gate_stack.append(g)
        self._dirty()
        node.body.visit(self)
        self.gate_stack.pop()
        self._dirty()
        if node.orelse is not None:
            o_start, o_end = self.pos(node.orelse)
            g2 = Gate(node.test, False, line, (o_start, o_end), fn)
            self.gate_stack.append(g2)
            self._dirty()
            node.orelse.visit(self)
            self.gate_stack.pop()
            self._dirty()
        return False

    def _loop(self, node, targets, it) -> None:
        start, end = self.pos(node)
        li = LoopInfo(node, tuple(targets), it, start, end,
                      self.func_stack[-1] if self.func_stack else None)
        self.f.loops.append((li, self.ctx()))
        self.f.loop_by_node[node] = li
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

    def visit_Return(self, node: cst.Return) -> None:
        if self.func_stack:
            self.func_stack[-1].returns.append(node)
        self._track(node)

    def leave_Return(self, node: cst.Return) -> None:
        self.open_sets.pop()

    def visit_Call(self, node: cst.Call) -> None:
        start, end = self.pos(node)
        name = dotted(node.func)
        attr = node.func.attr.value if isinstance(node.func, cst.Attribute) else (
            node.func.value if isinstance(node.func, cst.Name) else "")
        ci = CallInfo(node, name, attr, start, end, self.ctx())
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


def _positions(module: cst.Module):
    """``node -> CodeRange`` for every node of ``module``.

    ``MetadataWrapper.resolve(PositionProvider)`` also runs an (empty) batched
    visit of the whole tree after the provider's codegen pass, which cost as
    much as parsing; generating the provider alone gives the same mapping.
    """
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    try:
        return PositionProvider()._gen(wrapper)
    except Exception:  # a libcst without the private hook: the public, slower way
        return wrapper.resolve(PositionProvider)


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


# --------------------------------------------------------------------------
# facts


class Facts:
    def __init__(self, module: cst.Module, text: str, env: dict[str, str] | None = None):
        self.module = module
        self.text = text
        self.lines = text.splitlines()
        self.env = dict(env or {})
        self.names_in: dict[cst.CSTNode, set[str]] = {}
        self.funcs: list[FuncInfo] = []
        self.func_by_node: dict[cst.CSTNode, FuncInfo] = {}
        self.funcs_by_name: dict[str, list[FuncInfo]] = {}
        self.classes: dict[str, tuple] = {}
        self.class_fields: list[tuple[str, str, Any, int]] = []
        self.loops: list[tuple[LoopInfo, Ctx]] = []
        self.loop_by_node: dict[cst.CSTNode, LoopInfo] = {}
        self.ifs: list[tuple[cst.If, int, Ctx]] = []
        self.calls: list[CallInfo] = []
        self.assigns: list[AssignInfo] = []
        self.subscripts: list[tuple[cst.Subscript, int, Ctx]] = []
        self.binops: list[tuple[cst.BinaryOperation, int, Ctx]] = []
        self.strings: list[tuple[int, str, Ctx]] = []
        self.imports: list[tuple[str, int, int, Ctx]] = []
        # local name -> what it was imported as (``ur`` -> ``urllib.request``,
        # ``fetch`` -> ``requests.get``, ``urlopen`` -> ``urllib.request.urlopen``)
        self.import_aliases: dict[str, str] = {}
        self.refs_by_func: dict[str, list[Ctx]] = {}
        self.module_defs: dict[str, list[tuple[int, Any]]] = {}
        self._code_cache: dict[cst.CSTNode, str] = {}

        self._positions = _positions(module)
        col = _Collector(self)
        module.visit(col)
        self._build_config()
        self._eval_cache: dict[tuple, Any] = {}
        self._reach_cache: dict[int, Reach] = {}
        self._func_reach: dict[FuncInfo, Reach] = {}
        self._compute_reachability()
        self._taint_cache: dict[tuple, bool] = {}
        self._build_sites()

    # ---------------------------------------------------------------- text
    def code(self, node: cst.CSTNode) -> str:
        c = self._code_cache.get(node)
        if c is None:
            c = self.module.code_for_node(node)
            self._code_cache[node] = c
        return c

    def span(self, node: cst.CSTNode) -> tuple[int, int]:
        r = self._positions.get(node)
        if r is None:
            return (0, 0)
        return r.start.line, r.end.line

    def line_text(self, a: int, b: int | None = None, limit: int = 6) -> tuple[str, ...]:
        b = b or a
        out = []
        for i in range(a, min(b, a + limit - 1) + 1):
            if 1 <= i <= len(self.lines):
                out.append(f"{i}: {self.lines[i - 1].rstrip()}")
        return tuple(out)

    def resolve(self, name: str) -> str:
        """A dotted call name with its first component replaced by what it was
        imported as: ``ur.urlopen`` -> ``urllib.request.urlopen``."""
        if not name:
            return name
        head, _, rest = name.partition(".")
        full = self.import_aliases.get(head)
        if full is None or full == head:
            return name
        return f"{full}.{rest}" if rest else full

    def names(self, node: cst.CSTNode) -> set[str]:
        s = self.names_in.get(node)
        if s is not None:
            return s
        out: set[str] = set()
        for n in iter_nodes(node):
            if isinstance(n, cst.Name):
                out.add(n.value)
            elif isinstance(n, cst.SimpleString) and "fineweb_val" in n.value:
                out.add("__VAL_STRING__")
        self.names_in[node] = out
        return out

    # ---------------------------------------------------------------- config
    def _build_config(self) -> None:
        self.config: dict[str, ConfigVar] = {}
        config_classes = set()
        for cls, name, value, line in self.class_fields:
            if value is not None and _env_read(value):
                config_classes.add(cls)
        for cls in self.classes:
            if re.search(r"(hyper|config|args|settings|params)", cls, re.I):
                config_classes.add(cls)
        # a config class filled by a generic reader (``for f in fields(cls): key = f.name.upper();
        # if key in os.environ: ...``): each literal field is backed by env NAME.upper()
        generic = set()
        for fi in self.funcs:
            if fi.cls in config_classes:
                body = self.code(fi.node)
                if re.search(r"\.upper\(\)", body) and re.search(r"(environ|getenv)", body):
                    generic.add(fi.cls)
        for cls, name, value, line in self.class_fields:
            if cls not in config_classes or value is None:
                continue
            key, default = _env_read(value) or (None, None)
            if key is None and not _literal(value):
                continue
            if key is None:
                default = self.code(value)
                if cls in generic and not name.startswith("_"):
                    key = name.upper()
            self.config[name] = ConfigVar(name, key, default, value, line, cls)
        for ai in self.assigns:
            if ai.ctx.cls is not None or ai.op != "=" or ai.value is None:
                continue
            er = _env_read(ai.value)
            if not er:
                continue
            for t in ai.targets:
                for n in target_names(t):
                    where = "module" if ai.ctx.func is None else ai.ctx.func.qualname
                    self.config.setdefault(n, ConfigVar(n, er[0], er[1], ai.value, ai.line, where))
        for ci in self.calls:
            if ci.attr == "add_argument" and ci.node.args:
                first = ci.node.args[0].value
                if isinstance(first, cst.SimpleString):
                    flag = str(first.evaluated_value)
                    if not flag.startswith("--"):
                        continue
                    dest = flag[2:].replace("-", "_")
                    default = None
                    dexpr = None
                    for a in ci.node.args:
                        if a.keyword and a.keyword.value == "dest" and isinstance(a.value, cst.SimpleString):
                            dest = str(a.value.evaluated_value)
                        if a.keyword and a.keyword.value == "default":
                            dexpr = a.value
                            default = self.code(a.value)
                        if a.keyword and a.keyword.value == "action":
                            act = self.code(a.value)
                            if "store_true" in act and default is None:
                                default, dexpr = "False", cst.Name("False")
                    self.config.setdefault(
                        dest, ConfigVar(dest, dest.upper(), default, dexpr, ci.line, "argparse"))

    def env_value(self, key: str, default: Any) -> Any:
        return self.env.get(key, default)

    def config_value(self, name: str) -> Any:
        cv = self.config.get(name)
        if cv is None:
            return UNKNOWN
        if cv.where == "argparse":
            if cv.env_key and cv.env_key in self.env:
                return _coerce(self.env[cv.env_key], cv.default)
            return self.eval(cv.expr, None) if cv.expr is not None else None
        if cv.expr is None:
            return UNKNOWN
        if cv.env_key and cv.env_key in self.env and _literal(cv.expr) and not _env_read(cv.expr):
            return _coerce(self.env[cv.env_key], cv.default)  # generic reader (see _build_config)
        return self.eval(cv.expr, None, _seen=(name,))

    # ---------------------------------------------------------------- evaluator
    def eval(self, node: cst.BaseExpression | None, func: FuncInfo | None, _seen=()) -> Any:
        """Evaluate an expression under the effective configuration, or UNKNOWN."""
        if node is None:
            return UNKNOWN
        key = (id(node), id(func))
        if key in self._eval_cache:
            return self._eval_cache[key]
        self._eval_cache[key] = UNKNOWN  # recursion guard
        try:
            v = self._eval(node, func, _seen)
        except Exception:
            v = UNKNOWN
        self._eval_cache[key] = v
        return v

    def _eval(self, n, func, seen):
        E = lambda x: self.eval(x, func, seen)  # noqa: E731
        if isinstance(n, (cst.Integer, cst.Float)):
            return n.evaluated_value
        if isinstance(n, cst.SimpleString):
            return n.evaluated_value
        if isinstance(n, cst.ConcatenatedString):
            return n.evaluated_value
        if isinstance(n, cst.Name):
            if n.value in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[n.value]
            return self._eval_name(n.value, func, seen)
        if isinstance(n, cst.Attribute):
            if n.attr.value in self.config and base_name(n) not in ("os", "torch", "np", "math"):
                return self.config_value(n.attr.value)
            return UNKNOWN
        if isinstance(n, cst.UnaryOperation):
            v = E(n.expression)
            if v is UNKNOWN:
                return UNKNOWN
            if isinstance(n.operator, cst.Not):
                return not v
            if isinstance(n.operator, cst.Minus):
                return -v
            if isinstance(n.operator, cst.Plus):
                return +v
            return UNKNOWN
        if isinstance(n, cst.BooleanOperation):
            a = E(n.left)
            if isinstance(n.operator, cst.And):
                if a is not UNKNOWN and not a:
                    return a
                b = E(n.right)
                if b is not UNKNOWN and not b:
                    return b
                if a is UNKNOWN or b is UNKNOWN:
                    return UNKNOWN
                return b
            if a is not UNKNOWN and a:
                return a
            b = E(n.right)
            if b is not UNKNOWN and b:
                return b
            if a is UNKNOWN or b is UNKNOWN:
                return UNKNOWN
            return b
        if isinstance(n, cst.Comparison):
            left = E(n.left)
            if left is UNKNOWN:
                return UNKNOWN
            for ct in n.comparisons:
                right = E(ct.comparator)
                if right is UNKNOWN:
                    return UNKNOWN
                r = _compare(ct.operator, left, right)
                if r is UNKNOWN:
                    return UNKNOWN
                if not r:
                    return False
                left = right
            return True
        if isinstance(n, cst.BinaryOperation):
            a, b = E(n.left), E(n.right)
            if a is UNKNOWN or b is UNKNOWN:
                return UNKNOWN
            op = type(n.operator).__name__
            ops = {
                "Add": lambda: a + b, "Subtract": lambda: a - b, "Multiply": lambda: a * b,
                "Divide": lambda: a / b, "FloorDivide": lambda: a // b, "Modulo": lambda: a % b,
                "Power": lambda: a ** b, "BitOr": lambda: a | b, "BitAnd": lambda: a & b,
            }
            return ops[op]() if op in ops else UNKNOWN
        if isinstance(n, cst.IfExp):
            t = E(n.test)
            if t is UNKNOWN:
                return UNKNOWN
            return E(n.body) if t else E(n.orelse)
        if isinstance(n, (cst.Tuple, cst.List, cst.Set)):
            vals = [E(e.value) for e in n.elements]
            if any(v is UNKNOWN for v in vals):
                return UNKNOWN
            return tuple(vals)
        if isinstance(n, cst.Subscript):
            if dotted(n.value) in ("os.environ", "environ") and len(n.slice) == 1:
                k = E(n.slice[0].slice.value) if isinstance(n.slice[0].slice, cst.Index) else UNKNOWN
                if isinstance(k, str):
                    return self.env[k] if k in self.env else UNKNOWN
            return UNKNOWN
        if isinstance(n, cst.Call):
            name = dotted(n.func)
            args = [a for a in n.args if a.keyword is None]
            if name in ("os.environ.get", "environ.get", "os.getenv", "getenv"):
                k = E(args[0].value) if args else UNKNOWN
                if not isinstance(k, str):
                    return UNKNOWN
                if k in self.env:
                    return self.env[k]
                if len(args) > 1:
                    return E(args[1].value)
                for a in n.args:
                    if a.keyword and a.keyword.value == "default":
                        return E(a.value)
                return None
            if name in ("int", "float", "bool", "str") and len(args) == 1:
                v = E(args[0].value)
                if v is UNKNOWN:
                    return UNKNOWN
                if name == "int" and isinstance(v, str):
                    return int(float(v)) if "." in v else int(v, 0)
                return {"int": int, "float": float, "bool": bool, "str": str}[name](v)
            if isinstance(n.func, cst.Attribute) and n.func.attr.value in ("lower", "upper", "strip"):
                v = E(n.func.value)
                if isinstance(v, str):
                    return getattr(v, n.func.attr.value)()
                return UNKNOWN
            if name in ("max", "min") and args:
                vals = [E(a.value) for a in args]
                if any(v is UNKNOWN for v in vals):
                    return UNKNOWN
                return (max if name == "max" else min)(vals)
            return UNKNOWN
        return UNKNOWN

    def _eval_name(self, name: str, func: FuncInfo | None, seen) -> Any:
        if name in seen:
            return UNKNOWN
        seen = seen + (name,)
        f = func
        while f is not None:
            defs = f.defs.get(name)
            if defs is not None:
                if len(defs) == 1 and defs[0][1] is not None and name not in f.params:
                    return self.eval(defs[0][1], f, seen)
                return UNKNOWN
            f = f.parent
        defs = self.module_defs.get(name)
        if defs is not None:
            if len(defs) == 1 and defs[0][1] is not None:
                return self.eval(defs[0][1], None, seen)
            return UNKNOWN
        if name in self.config:
            return self.config_value(name)
        return UNKNOWN

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

    # ---------------------------------------------------------------- reachability
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
        self.has_entry = has_entry
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

    # ---------------------------------------------------------------- taint
    def is_val_source_names(self, names: Iterable[str]) -> bool:
        return any(n == "__VAL_STRING__" or is_val_name(n) for n in names)

    def tainted(self, name: str, func: FuncInfo | None, line: int | None = None, _depth: int = 0) -> bool:
        """Does ``name`` (as seen in ``func`` at ``line``) hold validation data?"""
        if is_val_name(name):
            return True
        key = (name, id(func), line)
        if key in self._taint_cache:
            return self._taint_cache[key]
        self._taint_cache[key] = False
        res = False
        if _depth < 12:
            scope = func.defs if func is not None else self.module_defs
            defs = scope.get(name)
            if defs is None and func is not None and func.parent is not None:
                res = self.tainted(name, func.parent, None, _depth + 1)
            elif defs:
                chosen = defs
                if line is not None:
                    before = [d for d in defs if d[0] <= line]
                    chosen = [before[-1]] if before else defs
                    if before:
                        # a later definition in a loop around the read reaches it through the
                        # back edge (``prev = (h, y)`` at the end of the body, read at the top)
                        loops = [li for li, _c in self.loops if li.func is func and li.start <= line <= li.end]
                        chosen = chosen + [d for d in defs if d[0] > line
                                           and any(li.start <= d[0] <= li.end for li in loops)]
                for dline, value in chosen:
                    if value is None:  # a parameter: tainted by callers
                        if func is not None and self._param_tainted(func, name, _depth):
                            res = True
                            break
                        continue
                    if self.expr_tainted(value, func, dline, _depth + 1):
                        res = True
                        break
        self._taint_cache[key] = res
        return res

    def expr_tainted(self, node: cst.CSTNode, func: FuncInfo | None, line: int | None = None,
                     _depth: int = 0) -> bool:
        names = self.names(node)
        if "__VAL_STRING__" in names:
            return True
        for n in names:
            if n in self.funcs_by_name:
                if self._returns_tainted(n, _depth):
                    return True
                continue
            if self.tainted(n, func, line, _depth + 1):
                return True
        return False

    def _returns_tainted(self, fname: str, _depth: int) -> bool:
        key = ("ret", fname)
        if key in self._taint_cache:
            return self._taint_cache[key]
        self._taint_cache[key] = False
        res = False
        if is_val_name(fname):
            res = True
        elif _depth < 10:
            for fi in self.funcs_by_name.get(fname, []):
                for r in fi.returns:
                    if r.value is not None and self.expr_tainted(r.value, fi, None, _depth + 1):
                        res = True
        self._taint_cache[key] = res
        return res

    def _param_tainted(self, fi: FuncInfo, param: str, _depth: int) -> bool:
        key = ("param", id(fi), param)
        if key in self._taint_cache:
            return self._taint_cache[key]
        self._taint_cache[key] = False
        res = False
        try:
            idx = [p.name.value for p in fi.node.params.params].index(param)
        except ValueError:
            idx = -1
        if fi.cls is not None and idx >= 0:
            idx -= 1  # self
        for ci in self.calls:
            if ci.attr != fi.name:
                continue
            arg = None
            pos = [a for a in ci.node.args if a.keyword is None and not a.star]
            for a in ci.node.args:
                if a.keyword is not None and a.keyword.value == param:
                    arg = a.value
            if arg is None and 0 <= idx < len(pos):
                arg = pos[idx].value
            if arg is not None and self.expr_tainted(arg, ci.ctx.func, ci.line, _depth + 1):
                res = True
                break
        self._taint_cache[key] = res
        return res

    # ---------------------------------------------------------------- sites
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
            elif ci.attr == "step" and recv is not None and _OPT_RE.search(dotted(recv) or rname) and not re.search(
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
                    for g in self.funcs_by_name.get(ci.attr, ()):
                        if g is fi:
                            continue
                        new = kinds_by_func[g] - kinds_by_func[fi]
                        if new:
                            kinds_by_func[fi] |= new
                            changed = True
        self.func_kinds = kinds_by_func
        self.calls_by_func = calls_by_func

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
        for g in self.funcs_by_name.get(ci.attr, ()):
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
        """Is accumulator ``acc`` reported (returned, all-reduced, turned into bpb/loss)?"""
        if func is None:
            return True
        for r in func.returns:
            if acc in self.names(r):
                return True
        for ci in self.calls_by_func.get(func, ()):
            if ("all_reduce" in ci.attr or ci.attr in ("item", "append")) and acc in self.names(ci.node):
                if "all_reduce" in ci.attr:
                    return True
        for ai in self.assigns:
            if ai.ctx.func is func and ai.value is not None and acc in self.names(ai.value):
                tn = " ".join(dotted(t) for t in ai.targets)
                if re.search(r"(bpb|val_loss|final|mean|avg|result)", tn, re.I):
                    return True
        return False


def _env_read(node: cst.CSTNode) -> tuple[str, str | None] | None:
    """Find ``os.environ.get("K", d)`` / ``os.getenv`` / ``os.environ["K"]`` inside ``node``."""
    found: list[tuple[str, str | None]] = []

    for n in iter_nodes(node):
        if isinstance(n, cst.Call):
            name = dotted(n.func)
            if name in ("os.environ.get", "environ.get", "os.getenv", "getenv") and n.args:
                k = n.args[0].value
                if isinstance(k, cst.SimpleString):
                    d = None
                    if len(n.args) > 1:
                        dv = n.args[1].value
                        d = str(dv.evaluated_value) if isinstance(dv, cst.SimpleString) else (
                            dv.value if isinstance(dv, (cst.Integer, cst.Float, cst.Name)) else None)
                    found.append((str(k.evaluated_value), d))

        elif isinstance(n, cst.Subscript):
            if dotted(n.value) in ("os.environ", "environ") and n.slice and isinstance(
                    n.slice[0].slice, cst.Index) and isinstance(n.slice[0].slice.value, cst.SimpleString):
                found.append((str(n.slice[0].slice.value.evaluated_value), None))

    return found[0] if found else None


def _literal(node: cst.CSTNode) -> bool:
    if isinstance(node, (cst.Integer, cst.Float, cst.SimpleString)):
        return True
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return True
    if isinstance(node, cst.UnaryOperation):
        return _literal(node.expression)
    return False


def _coerce(s: str, default: str | None) -> Any:
    if default in ("True", "False"):
        return s.strip().lower() in ("1", "true", "yes", "on")
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def _compare(op, a, b):
    try:
        if isinstance(op, cst.Equal):
            return a == b
        if isinstance(op, cst.NotEqual):
            return a != b
        if isinstance(op, cst.LessThan):
            return a < b
        if isinstance(op, cst.LessThanEqual):
            return a <= b
        if isinstance(op, cst.GreaterThan):
            return a > b
        if isinstance(op, cst.GreaterThanEqual):
            return a >= b
        if isinstance(op, cst.In):
            return a in b
        if isinstance(op, cst.NotIn):
            return a not in b
        if isinstance(op, cst.Is):
            return a is b
        if isinstance(op, cst.IsNot):
            return a is not b
    except Exception:
        return UNKNOWN
    return UNKNOWN
