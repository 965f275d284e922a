"""What the traversal records about each node: its function, loops, gates, context."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst


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
