"""Document structure of the evaluation: can one row hold the end of one document and
the start of the next while the model keeps documents apart?

A row holds several documents, isolated from each other, when the evaluation hands the
model a *boundary descriptor* built from where the row's own validation tokens equal a
token id (``cu_seqlens`` from ``(x == BOS).nonzero()``, document ids from
``cumsum(x == BOS)``, a block mask) next to the row. Rows that each start inside one
document (spans found at BOS, one per row, padded) are built *from* such positions but
hand the model no descriptor: the positions chose the row, they do not split it.

Facts here (plain functions over a ``Facts``, memoised on it):

* ``token_data(facts, expr, func, line)``: ``expr`` is validation token values (a row),
  following the value path through slices, dtype/shape methods, ``torch.where``,
  ``torch.cat`` and assignments; positions, masks and counts are not token data;
* ``boundary_descriptor(facts, expr, func, line)``: ``expr`` is not token data and is
  derived, through assignments, helper returns and ``for`` targets, from an equality
  comparison of validation token data with a value (one flow-insensitive fixpoint per
  file over assignments, ``for`` targets, item assignments and helper returns);
* ``packed_calls(facts)``: calls that pass a validation row and a boundary descriptor;
* ``reaching(facts, func)``: the functions whose call can run ``func`` (callers by name,
  methods of ``self``, and module instances: ``self.smear = SmearGate(..)`` makes
  ``self.smear(x)`` a call of ``SmearGate.forward``); ``feeds`` links a packed call to
  the one of them taking its descriptor (by keyword or position);
* ``splits_rows_itself(facts, funcs)``: a model that finds document starts in the row it
  receives (an equality test of its token-id parameter), and ``stream_row_calls``: calls
  handing a model windows of the flat validation stream (slice bounds not derived from
  document starts), which then hold several documents.

Known limits: calls are resolved by name (the facts' call graph), so a model held in a
variable is linked to its forward through the descriptor's keyword or position, not
through the variable's type; token-data methods are a fixed list of tensor methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from .nodes import dotted
from .records import CallInfo, FuncInfo

# tensor methods and functions whose result holds the same token values (a row stays a row)
_KEEP_METHODS = {
    "to", "long", "int", "cuda", "cpu", "contiguous", "view", "reshape", "unsqueeze", "squeeze",
    "clone", "flatten", "pin_memory", "type", "detach", "narrow", "expand", "view_as", "reshape_as",
    "numpy", "tolist", "masked_fill", "index_select", "gather", "roll", "T",
}
_KEEP_FUNCS = {"torch.as_tensor", "torch.tensor", "torch.from_numpy", "np.asarray", "np.array",
               "numpy.asarray", "numpy.array", "torch.stack", "torch.cat", "torch.concat",
               "torch.nn.functional.pad", "F.pad"}
_TENSOR_META = {"device", "shape", "dtype", "ndim", "is_cuda", "layout", "requires_grad"}
_MAX_DEPTH = 8


@dataclass(eq=False)
class PackedCall:
    """A call handing the model a validation row and a boundary descriptor."""

    call: CallInfo
    keyword: str | None  # the descriptor's keyword, or None when positional
    position: int  # its position among the positional arguments (-1 for a keyword)
    arg: cst.BaseExpression


def _cache(facts) -> dict:
    c = getattr(facts, "_documents_cache", None)
    if c is None:
        c = {}
        facts._documents_cache = c
    return c


def _defs_before(func: FuncInfo | None, facts, name: str, line: int | None):
    scope = func.defs if func is not None else facts.module_defs
    defs = scope.get(name)
    if defs is None and func is not None and func.parent is not None:
        return _defs_before(func.parent, facts, name, None)
    if not defs:
        return [], func
    if line is None:
        return list(defs), func
    before = [d for d in defs if d[0] <= line]
    return ([before[-1]] if before else list(defs)), func


def token_data(facts, expr: cst.CSTNode | None, func: FuncInfo | None, line: int | None,
               _depth: int = 0) -> bool:
    """``expr`` holds validation token values (a row, or the stream it is cut from)."""
    if expr is None or _depth > _MAX_DEPTH:
        return False
    key = ("tok", id(expr), id(func), line, _depth)
    cache = _cache(facts)
    if key in cache:
        return cache[key]
    cache[key] = False
    res = _token_data(facts, expr, func, line, _depth)
    cache[key] = res
    return res


def _token_data(facts, n, func, line, depth) -> bool:
    nxt = depth + 1
    if isinstance(n, cst.Subscript):
        return token_data(facts, n.value, func, line, nxt)
    if isinstance(n, cst.Name):
        defs, scope = _defs_before(func, facts, n.value, line)
        if any(token_data(facts, v, scope, ln, nxt) for ln, v in _appended(facts, scope, n.value)):
            return True  # ``parts.append(val_tokens[s:e])``
        if not defs:
            return facts.tainted(n.value, func, line)
        for dline, value in defs:
            if value is None:  # a parameter: what the callers pass
                if facts.tainted(n.value, scope, dline):
                    return True
            elif isinstance(value, (cst.Assign, cst.AugAssign)):
                continue
            elif token_data(facts, value, scope, dline, nxt):
                return True
        return False
    if isinstance(n, cst.Attribute):
        # ``x.device`` / ``x.shape`` of a row describe it; ``val_data.val_tokens`` holds tokens
        return n.attr.value not in _TENSOR_META and facts.expr_tainted(n, func, line)
    if isinstance(n, cst.Call):
        name = facts.resolve(dotted(n.func))
        if isinstance(n.func, cst.Attribute) and n.func.attr.value in _KEEP_METHODS \
                and name not in _KEEP_FUNCS and not name.startswith(("torch.", "np.", "numpy.")):
            return token_data(facts, n.func.value, func, line, nxt)
        if name == "torch.where" and len(n.args) >= 3:
            return any(token_data(facts, a.value, func, line, nxt) for a in n.args[1:3])
        if name in _KEEP_FUNCS and n.args:
            return token_data(facts, n.args[0].value, func, line, nxt)
        if facts.defined_here(dotted(n.func)):  # a helper of this file: what it returns
            return any(token_data(facts, r.value, fi, None, nxt)
                       for fi in facts.callees_of(n) for r in fi.returns if r.value is not None)
        return False
    if isinstance(n, (cst.List, cst.Tuple)):
        return any(token_data(facts, el.value, func, line, nxt) for el in n.elements)
    if isinstance(n, (cst.ListComp, cst.GeneratorExp)):
        return token_data(facts, n.elt, func, line, nxt)
    return False


def _appended(facts, func: FuncInfo | None, name: str) -> list[tuple[int, cst.CSTNode]]:
    """Values put into the container ``name`` of ``func`` by ``append`` / ``extend`` / ``insert``."""
    cache = _cache(facts)
    idx = cache.get("appends")
    if idx is None:
        idx = cache["appends"] = {}
        for ci in facts.calls:
            f = ci.node.func
            if ci.attr in ("append", "extend", "insert") and isinstance(f, cst.Attribute) \
                    and isinstance(f.value, cst.Name) and ci.node.args:
                idx.setdefault((id(ci.ctx.func), f.value.value), []).append((ci.line, ci.node.args[-1].value))
    return idx.get((id(func), name), [])


def _equality_on_tokens(facts, node: cst.CSTNode, func, line) -> bool:
    for c in facts.subtree_of(node, cst.Comparison):
        if not any(isinstance(t.operator, (cst.Equal, cst.NotEqual)) for t in c.comparisons):
            continue
        sides = [c.left] + [t.comparator for t in c.comparisons]
        if any(token_data(facts, s, func, line) for s in sides):
            return True
    return False


def boundary_descriptor(facts, expr: cst.CSTNode, func: FuncInfo | None, line: int | None) -> bool:
    """``expr`` is positions, lengths, ids or masks of documents: derived from where validation
    tokens equal a value, and not itself token data."""
    return not token_data(facts, expr, func, line) and _derived_from_equality(facts, expr, func, line)


def _derived_from_equality(facts, expr, func, line) -> bool:
    """``expr`` holds an equality test of token data, or reads a name (of ``func``) or a helper's
    return value derived from one (flow-insensitive, see ``_derived``)."""
    names, returns = _derived(facts)
    if _equality_on_tokens(facts, expr, func, line):
        return True
    own = names.get(id(func), set()) | names.get(id(None), set())
    if func is not None and func.parent is not None:
        own = own | names.get(id(func.parent), set())
    for n in facts.names(expr):
        if n in own or n in returns:
            return True
    return False


def _derived(facts) -> tuple[dict[int, set[str]], set[str]]:
    """Per function, the names assigned (or bound by ``for``) from an equality test of token
    data, or from such names, or from a file-local function returning one; and the names of
    the functions whose return value is so derived. Built once, to a fixpoint."""
    cache = _cache(facts)
    if "derived" in cache:
        return cache["derived"]
    names: dict[int, set[str]] = {}
    returns: set[str] = set()
    binds = []  # (func, target names, value)
    for ai in facts.assigns:
        if ai.value is not None and ai.op == "=":
            tn = [n for t in ai.targets for n in _target_names(t)]
            if tn:
                binds.append((ai.ctx.func, tn, ai.value, ai.line))
    for li, _ctx in facts.loops:
        if li.iter is not None and li.targets:
            binds.append((li.func, list(li.targets), li.iter, li.start))
    seeds = [(f, tn, v) for f, tn, v, ln in binds
             if facts.subtree_of(v, cst.Comparison) and _equality_on_tokens(facts, v, f, ln)]
    for f, tn, _v in seeds:
        names.setdefault(id(f), set()).update(tn)
    rets = [(fi, r.value) for fi in facts.funcs for r in fi.returns if r.value is not None]
    changed = True
    while changed:
        changed = False
        for f, tn, v in [(f, tn, v) for f, tn, v, _l in binds]:
            own = names.setdefault(id(f), set())
            if set(tn) <= own:
                continue
            vn = facts.names(v)
            if vn & own or vn & returns:
                own.update(tn)
                changed = True
        for fi, v in rets:
            if fi.name in returns:
                continue
            vn = facts.names(v)
            if vn & names.get(id(fi), set()) or vn & returns or _equality_on_tokens(facts, v, fi, None):
                returns.add(fi.name)
                changed = True
    cache["derived"] = (names, returns)
    return names, returns


def _target_names(t) -> list[str]:
    """Names an assignment (re)defines, a container filled by item assignment included
    (``starts[b] = doc_start + off``)."""
    if isinstance(t, cst.Name):
        return [t.value]
    if isinstance(t, cst.Subscript):
        return _target_names(t.value)
    if isinstance(t, (cst.Tuple, cst.List)):
        return [n for el in t.elements for n in _target_names(el.value)]
    return []


def packed_calls(facts) -> list[PackedCall]:
    """Calls that hand a callee a validation row together with a boundary descriptor."""
    cache = _cache(facts)
    if "packed" in cache:
        return cache["packed"]
    out: list[PackedCall] = []
    for ci in facts.calls:
        func = ci.ctx.func
        if func is None or len(ci.node.args) < 2 or dotted(ci.node.func) in facts.classes:
            continue
        args = [a for a in ci.node.args if not a.star]
        found, pos = [], 0
        for a in args:
            kw = a.keyword.value if a.keyword is not None else None
            if not (isinstance(a.value, cst.Name) and a.value.value == "None") and \
                    _derived_from_equality(facts, a.value, func, ci.line):
                found.append((a, kw, -1 if kw else pos))
            if kw is None:
                pos += 1
        if not found or not any(token_data(facts, a.value, func, ci.line) for a in args):
            continue
        out += [PackedCall(ci, kw, p, a.value) for a, kw, p in found
                if boundary_descriptor(facts, a.value, func, ci.line)]
    cache["packed"] = out
    return out


def _instance_classes(facts) -> dict[str, set[str]]:
    """``attr or name -> classes``: ``self.smear = SmearGate(..)``, ``smear = SmearGate(..)``."""
    cache = _cache(facts)
    if "inst" in cache:
        return cache["inst"]
    out: dict[str, set[str]] = {}
    for ai in facts.assigns:
        if ai.op != "=" or not isinstance(ai.value, cst.Call):
            continue
        cls = dotted(ai.value.func)
        if cls not in facts.classes:
            continue
        for t in ai.targets:
            d = dotted(t)
            if d:
                out.setdefault(d.rsplit(".", 1)[-1], set()).add(cls)
    cache["inst"] = out
    return out


def callers_of(facts, fi: FuncInfo) -> set[FuncInfo]:
    """Functions with a call that may run ``fi``."""
    inst = _instance_classes(facts)
    out: set[FuncInfo] = set()
    for ci in facts.calls:
        caller = ci.ctx.func
        if caller is None or caller is fi:
            continue
        if fi in facts.callees(ci):
            out.add(caller)
        elif fi.cls is not None and fi.name in ("forward", "__call__") and fi.cls in inst.get(ci.attr, ()):
            out.add(caller)
    return out


def reaching(facts, fi: FuncInfo) -> set[FuncInfo]:
    """``fi`` and every function whose call may run it (up the call graph), with the
    functions ``fi`` is nested in."""
    cache = _cache(facts)
    key = ("reach", id(fi))
    if key in cache:
        return cache[key]
    out: set[FuncInfo] = set()
    todo = [fi]
    while todo and len(out) < 200:
        f = todo.pop()
        if f in out:
            continue
        out.add(f)
        if f.parent is not None:
            todo.append(f.parent)
        todo.extend(callers_of(facts, f) - out)
    cache[key] = out
    return out


def _own_params(fi: FuncInfo) -> list[str]:
    ps = [p.name.value for p in fi.node.params.params]
    return ps[1:] if fi.cls is not None and ps and ps[0] in ("self", "cls") else ps


def feeds(facts, pc: PackedCall, funcs: set[FuncInfo]) -> FuncInfo | None:
    """The function of ``funcs`` that receives ``pc``'s descriptor, if any: the call's own
    callee when it is defined here, else any function of ``funcs`` with a parameter of the
    descriptor's keyword (or position) that it reads."""
    callees = facts.callees(pc.call)
    cands = sorted([f for f in callees if f in funcs] if callees else funcs, key=lambda f: (f.start, f.qualname))
    for f in cands:
        params = _own_params(f) + [p.name.value for p in f.node.params.kwonly_params]
        if pc.keyword is not None:
            if pc.keyword not in params:
                continue
            name = pc.keyword
        else:
            own = _own_params(f)
            if pc.position <= 0 or pc.position >= len(own):
                continue
            name = own[pc.position]
        if any(name in facts.names(v) for defs in f.defs.values() for _l, v in defs if v is not None) or \
                _param_read(facts, f, name):
            return f
    return None


def _param_read(facts, f: FuncInfo, name: str) -> bool:
    for ci in facts.calls:
        if ci.ctx.func is f and name in facts.names(ci.node):
            return True
    return False


def splits_rows_itself(facts, funcs: set[FuncInfo]) -> tuple[FuncInfo, int] | None:
    """A function of ``funcs`` that finds document starts inside the row it receives: an
    equality test of its token-id parameter (``docs = (ids == BOS).cumsum(-1)`` for a block
    mask, ``cu = (ids == BOS).nonzero()`` for varlen attention). ``(fn, line)``."""
    for f in sorted(funcs, key=lambda f: (f.start, f.qualname)):
        own = _own_params(f)
        if not own:
            continue
        ids = own[0]
        for c in facts.subtree_of(f.node, cst.Comparison):
            if any(
                    isinstance(t.operator, (cst.Equal, cst.NotEqual)) for t in c.comparisons):
                sides = [c.left] + [t.comparator for t in c.comparisons]
                # the row itself, not a shifted view (``ids[:, 1:] != BOS`` is a mix's mask)
                if any(isinstance(s, cst.Name) and s.value == ids or
                       isinstance(s, cst.Call) and isinstance(s.func, cst.Attribute)
                       and isinstance(s.func.value, cst.Name) and s.func.value.value == ids for s in sides):
                    pos = facts.span(c)[0]
                    return f, pos
    return None


def stream_row_calls(facts, funcs: set[FuncInfo]) -> list[CallInfo]:
    """Calls that hand a model (a callee not resolved to another function of this file nor
    to a library) a row cut from the validation stream at positions that are not document
    starts: fixed windows of the flat stream, which hold several documents."""
    cache = _cache(facts)
    key = ("stream", tuple(sorted(id(f) for f in funcs)))
    if key in cache:
        return cache[key]
    out = []
    for ci in facts.calls:
        if ci.ctx.func is None or not ci.node.args or not _model_call(facts, ci, funcs):
            continue
        first = ci.node.args[0]
        if first.keyword is None and not first.star and _flat_window(facts, first.value, ci.ctx.func, ci.line):
            out.append(ci)
    cache[key] = out
    return out


def _flat_window(facts, expr, func, line, _depth: int = 0) -> bool:
    """``expr`` is validation tokens sliced at positions not derived from document starts."""
    if _depth > _MAX_DEPTH or not token_data(facts, expr, func, line):
        return False
    n = expr
    if isinstance(n, cst.Subscript):
        bounds = [el.slice for el in n.slice]
        if any(_derived_from_equality(facts, b, func, line) for b in bounds):
            return False
        inner = n.value
        if token_data(facts, inner, func, line) and _flat_window(facts, inner, func, line, _depth + 1):
            return True
        return any(isinstance(b, cst.Slice) and (b.lower is not None or b.upper is not None) for b in bounds)
    if isinstance(n, cst.Call):
        if isinstance(n.func, cst.Attribute) and n.func.attr.value in _KEEP_METHODS:
            return _flat_window(facts, n.func.value, func, line, _depth + 1)
        return False
    if isinstance(n, cst.Name):
        defs, scope = _defs_before(func, facts, n.value, line)
        return any(v is not None and not isinstance(v, (cst.Assign, cst.AugAssign))
                   and _flat_window(facts, v, scope, dl, _depth + 1) for dl, v in defs)
    return False


def reordered_rows(facts, expr, func, line, _depth: int = 0) -> bool:
    """``expr`` is a row concatenated from validation slices cut at document boundaries after
    the documents were reordered (``sorted`` / ``.sort`` / ``argsort`` of the spans): each
    document's first token follows the last token of an unrelated document."""
    if _depth > _MAX_DEPTH:
        return False
    n, nxt = expr, _depth + 1
    if isinstance(n, cst.Subscript):
        return reordered_rows(facts, n.value, func, line, nxt)
    if isinstance(n, cst.Tuple):
        return any(reordered_rows(facts, el.value, func, line, nxt) for el in n.elements)
    if isinstance(n, cst.Name):
        defs, scope = _defs_before(func, facts, n.value, line)
        return any(v is not None and not isinstance(v, (cst.Assign, cst.AugAssign))
                   and reordered_rows(facts, v, scope, dl, nxt) for dl, v in defs)
    if not isinstance(n, cst.Call):
        return False
    name = facts.resolve(dotted(n.func))
    if name in ("torch.cat", "torch.concat", "np.concatenate", "numpy.concatenate") and n.args:
        pieces = _pieces(facts, n.args[0].value, func)
        return any(_doc_slice(facts, p, f, ln) for f, ln, p in pieces) and _reorders(facts, func)
    if isinstance(n.func, cst.Attribute) and n.func.attr.value in _KEEP_METHODS:
        return reordered_rows(facts, n.func.value, func, line, nxt)
    if facts.defined_here(dotted(n.func)):
        return any(reordered_rows(facts, r.value, fi, None, nxt)
                   for fi in facts.callees_of(n) for r in fi.returns if r.value is not None)
    return False


def _pieces(facts, arg, func):
    if isinstance(arg, (cst.List, cst.Tuple)):
        return [(func, None, el.value) for el in arg.elements]
    if isinstance(arg, (cst.ListComp, cst.GeneratorExp)):
        return [(func, None, arg.elt)]
    if isinstance(arg, cst.Name):
        return [(func, ln, v) for ln, v in _appended(facts, func, arg.value)]
    return []


def _doc_slice(facts, piece, func, line) -> bool:
    """A slice of validation tokens whose bounds are document starts or lengths."""
    if not isinstance(piece, cst.Subscript) or not token_data(facts, piece.value, func, line):
        return False
    return any(isinstance(el.slice, cst.Slice) and any(
        b is not None and _derived_from_equality(facts, b, func, line) for b in (el.slice.lower, el.slice.upper))
        for el in piece.slice)


def _reorders(facts, func) -> bool:
    """``func`` sorts values derived from document starts (``sorted(spans, key=len)``)."""
    for ci in facts.calls:
        if ci.ctx.func is not func:
            continue
        if ci.attr in ("sorted", "argsort") and ci.node.args and \
                _derived_from_equality(facts, ci.node.args[0].value, func, ci.line):
            return True
        if ci.attr in ("sort", "argsort") and isinstance(ci.node.func, cst.Attribute) and \
                _derived_from_equality(facts, ci.node.func.value, func, ci.line):
            return True
    return False


def reordered_row_calls(facts, funcs: set[FuncInfo]) -> list[CallInfo]:
    """Calls handing a model (a callee not resolved to another function of this file nor to a
    library) a row of reordered, concatenated documents (``reordered_rows``)."""
    out = []
    for ci in facts.calls:
        if ci.ctx.func is None or not ci.node.args or not _model_call(facts, ci, funcs):
            continue
        first = ci.node.args[0]
        if first.keyword is None and not first.star and reordered_rows(facts, first.value, ci.ctx.func, ci.line):
            out.append(ci)
    return out


def _model_call(facts, ci: CallInfo, funcs: set[FuncInfo]) -> bool:
    if ci.ctx.func in funcs:
        return False
    callees = facts.callees(ci)
    if callees:
        return any(f in funcs for f in callees)
    name = facts.resolve(dotted(ci.node.func))
    return not (name.split(".", 1)[0] in facts.import_aliases or name.startswith(
        ("torch.", "F.", "np.", "numpy.", "math.")) or dotted(ci.node.func) in facts.classes
        or facts.defined_here(name) or name in _BUILTINS)


_BUILTINS = {"len", "zip", "range", "enumerate", "list", "tuple", "dict", "set", "sorted", "min", "max",
             "sum", "int", "float", "print", "str", "map", "filter", "any", "all", "iter", "next"}
