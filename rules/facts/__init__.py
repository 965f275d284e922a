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
* **labelled data flow** (``flow.py``): which values hold validation data (``VAL``)
  or training data (``TRAIN``), seeded by the literals naming their shards
  (``"fineweb_val_*"``, ``"fineweb_train_*"``) and followed through assignments,
  tuple unpacking, ``for`` targets, attributes (config-class fields,
  ``self.x = ..``), calls of this file's functions (each call gets what the
  function returns for the arguments it passes) and parameters (what the calls
  pass); inside a loop a read also sees definitions later in the loop body (the
  previous iteration's value). Names decide only for a parameter no call reaches
  and an attribute nothing defines;
* **scoring sites** (loss/NLL accumulated into totals, or an NLL computed under
  ``no_grad`` handed to a ledger / accumulator: ``ledger.score(..)``,
  ``totals.add(..)``, ``score_rows(..)``; a sum into a name that is later
  ``backward()``-ed is a training objective, not a score) and **update sites**
  (``backward()``, ``autograd.grad``, optimizer ``step()``, in-place cache
  updates), each with its function, enclosing loops, gates and ``no_grad``
  context, plus per-function summaries (does calling it score / update).

Known limits: flow-insensitive except for "nearest preceding definition";
aliasing through containers and dynamic dispatch are not tracked, attributes are
one field per name across objects; names are matched by convention (``val``, ``loss``,
``nll``, ``opt``), so exotic naming weakens the facts.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from .collect import Collector
from .config import UNKNOWN, ConfigFacts, ConfigVar
from .flow import FlowFacts
from .lines import Layout, code_for_node
from .names import VAL_STRING, is_loss_name, is_train_name, is_val_name, is_val_string
from .nodes import base_name, bound_names, dotted, iter_nodes, string_value, target_names
from .reach import Reach, ReachFacts, Switch
from .records import AssignInfo, CallInfo, Ctx, FuncInfo, Gate, LoopInfo
from .sites import Site, SiteFacts
from .targets import TargetFacts

__all__ = [
    "UNKNOWN", "VAL_STRING", "AssignInfo", "CallInfo", "ConfigVar", "Ctx", "Facts", "FuncInfo", "Gate",
    "LoopInfo", "Reach", "Site", "Switch", "base_name", "bound_names", "dotted", "is_loss_name",
    "is_train_name", "is_val_name", "iter_nodes", "string_value", "target_names",
]


class Facts(ConfigFacts, ReachFacts, FlowFacts, SiteFacts, TargetFacts):
    """Everything the rules know about one layer: the records of one traversal, then
    the configuration, reachability, validation flow, sites and targets derived from them."""

    def __init__(self, module: cst.Module, text: str, env: dict[str, str] | None = None,
                 layout: Layout | None = None):
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
        self.ifs: list[tuple[cst.If, int, Ctx]] = []
        self.calls: list[CallInfo] = []
        self.assigns: list[AssignInfo] = []
        self.subscripts: list[tuple[cst.Subscript, int, Ctx]] = []
        self.binops: list[tuple[cst.BinaryOperation, int, Ctx]] = []
        self.strings: list[tuple[int, str, Ctx]] = []
        self.deletes: list[tuple[set[str], int, Ctx]] = []
        # call -> names bound by the comprehensions and lambdas that hold it
        # (``x`` in ``(int(x) for x in spec.split(","))``)
        self.comp_bound: dict[cst.Call, set[str]] = {}  # ``del a, b``: names, line, where
        self.imports: list[tuple[str, int, int, Ctx]] = []
        # local name -> what it was imported as (``ur`` -> ``urllib.request``,
        # ``fetch`` -> ``requests.get``, ``urlopen`` -> ``urllib.request.urlopen``)
        self.import_aliases: dict[str, str] = {}
        self.refs_by_func: dict[str, list[Ctx]] = {}
        self.module_defs: dict[str, list[tuple[int, Any]]] = {}
        self._code_cache: dict[cst.CSTNode, str] = {}

        self.layout = layout if layout is not None else Layout(module, text)
        self._positions = self.layout.spans
        col = Collector(self)
        col.walk(module)
        self._build_config()
        self._eval_cache: dict[tuple, Any] = {}
        self._reach_cache: dict[int, Reach] = {}
        self._func_reach: dict[FuncInfo, Reach] = {}
        self._compute_reachability()
        self._taint_cache: dict[tuple, bool] = {}
        # the flow solver's state (see FlowFacts._solve)
        self._flow_done: dict[tuple, dict] = {}
        self._flow_at: dict[tuple, int] = {}
        self._flow_guess: dict[tuple, dict] = {}
        self._flow_prov: dict[tuple, tuple[dict, int]] = {}
        self._flow_log: list[tuple] = []
        self._flow_height = 0
        self._flow_low = 0
        self._flow_changed = False
        self._def_lines: dict[int, tuple | list] = {}  # id(definitions) -> their lines, if in order
        self._seen_defs: dict[tuple, tuple] = {}  # (name, func, line) -> the definitions a read sees
        self._flow_names: dict[int, object] = {}  # id(node) -> its flow shape
        self._build_sites()

    def close(self) -> None:
        """Let go of everything. The facts' caches refer back to them (``target_values``
        holds the facts), so without this the layer's whole tree waits for the cyclic
        collector instead of being freed when the lint returns."""
        self.__dict__.clear()

    # ---------------------------------------------------------------- text
    def code(self, node: cst.CSTNode) -> str:
        c = self._code_cache.get(node)
        if c is None:
            c = code_for_node(self.module, node)
            self._code_cache[node] = c
        return c

    def subtree(self, node: cst.CSTNode) -> list:
        """``list(iter_nodes(node))``, a slice of one indexed walk (``nodes.Preorder``)."""
        return self.layout.preorder.subtree(node)

    def subtree_of(self, node: cst.CSTNode, kind: type) -> list:
        """The nodes of the concrete libcst class ``kind`` under ``node``, in source order."""
        return self.layout.preorder.subtree_of(node, kind)

    def span(self, node: cst.CSTNode) -> tuple[int, int]:
        return self._positions.get(id(node), (0, 0))

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

    def defined_here(self, name: str) -> bool:
        """The first component of ``name`` is bound by this file (a function, a class or
        a module-level assignment) and not by an import: ``load_dataset`` in a file with
        its own ``def load_dataset(...)`` is that function, not ``datasets.load_dataset``."""
        head = name.partition(".")[0]
        if not head or head in self.import_aliases:
            return False
        return (any(fi.cls is None for fi in self.funcs_by_name.get(head, ()))
                or head in self.classes or head in self.module_defs)

    def callees(self, ci: CallInfo) -> list[FuncInfo]:
        """The functions of this file that call ``ci`` may run. A bare name calls a
        function (``train(cfg)``), an attribute a method (``self.step()``,
        ``model.forward(x)``): ``spm.SentencePieceTrainer.train(...)`` is not the file's
        own ``def train``."""
        return self.callees_of(ci.node, ci.attr)

    def callees_of(self, call: cst.Call, attr: str | None = None) -> list[FuncInfo]:
        """``callees`` for a call node that has no ``CallInfo`` at hand."""
        func = call.func
        method = type(func) is cst.Attribute
        if attr is None:
            attr = func.attr.value if method else getattr(func, "value", "")
        return [fi for fi in self.funcs_by_name.get(attr, ()) if (fi.cls is not None) == method]

    def names(self, node: cst.CSTNode) -> set[str]:
        s = self.names_in.get(node)
        if s is not None:
            return s
        out: set[str] = set()
        for n in self.subtree(node):
            kind = type(n)
            if kind is cst.Name:
                out.add(n.value)
            elif (kind is cst.SimpleString or kind is cst.FormattedStringText) and is_val_string(n.value):
                out.add(VAL_STRING)
        self.names_in[node] = out
        return out
