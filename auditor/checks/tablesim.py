"""Measure a byte table that submission code builds, without running the code.

A table builder is a small loop over token ids that asks the tokenizer about each
piece (``id_to_piece``, ``is_byte``, ``is_control``...) and writes per-id numbers.
This module walks such a function's syntax tree as a tiny interpreter over a test
tokenizer made here (normal pieces with and without ``▁``, a bare ``▁``, byte
fallbacks, control and unknown ids): nothing of the submission is imported or
executed, and anything outside the small subset below stops the walk (no result).

    simulate_builder(func_node) -> list of returned tables (lists of numbers) or None
"""

from __future__ import annotations

import ast
import operator

MARK = "\u2581"

# (piece, kind): kind n = normal, b = byte fallback, c = control, u = unknown
TEST_PIECES: tuple[tuple[str, str], ...] = (
    ("<unk>", "u"), ("<s>", "c"), ("</s>", "c"),
    ("<0x41>", "b"), ("<0xE2>", "b"), ("<0x20>", "b"),
    (MARK + "the", "n"), ("ing", "n"), (MARK, "n"), (MARK + "caf\u00e9", "n"),
    ("\u00e9t\u00e9", "n"), (",", "n"), (MARK + "a", "n"), ("ed", "n"),
)


def canonical() -> tuple[list[int], list[bool], list[bool]]:
    """The canonical (base, leading space, boundary) on TEST_PIECES (RULEBOOK: bytes in val_bpb)."""
    base, lead, bound = [], [], []
    for piece, kind in TEST_PIECES:
        if kind in "cu":
            base.append(0), lead.append(False), bound.append(True)
        elif kind == "b":
            base.append(1), lead.append(False), bound.append(False)
        else:
            has = piece.startswith(MARK)
            base.append(len((piece[1:] if has else piece).encode("utf-8")))
            lead.append(has), bound.append(False)
    return base, lead, bound


class _Stop(Exception):
    """The walk met something outside the subset: no measurement."""


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Continue(Exception):
    pass


class _Break(Exception):
    pass


class FakeSP:
    """A sentencepiece-like tokenizer over TEST_PIECES."""

    def __len__(self):
        return len(TEST_PIECES)

    def call(self, name: str, args: list):
        n = len(TEST_PIECES)
        if name in ("vocab_size", "get_piece_size", "GetPieceSize", "piece_size"):
            return n
        if name in ("unk_id",):
            return 0
        if name in ("bos_id",):
            return 1
        if name in ("eos_id",):
            return 2
        if name in ("pad_id",):
            return -1
        if not args or not isinstance(args[0], int) or not 0 <= args[0] < n:
            if name in ("piece_to_id", "PieceToId") and args and isinstance(args[0], str):
                return next((i for i, (p, _k) in enumerate(TEST_PIECES) if p == args[0]), 0)
            raise _Stop(name)
        piece, kind = TEST_PIECES[args[0]]
        if name in ("id_to_piece", "IdToPiece"):
            return piece
        if name in ("is_byte", "IsByte"):
            return kind == "b"
        if name in ("is_control", "IsControl"):
            return kind == "c"
        if name in ("is_unknown", "IsUnknown"):
            return kind == "u"
        if name in ("is_unused", "IsUnused"):
            return False
        if name in ("decode", "decode_ids", "DecodeIds"):
            return "" if kind in "cu" else piece.replace(MARK, " ")
        raise _Stop(name)


class Table(list):
    """An array the builder fills (np.zeros, torch.zeros, [0] * n ...)."""


def _array(n, fill=0):
    if not isinstance(n, int):
        if isinstance(n, tuple) and len(n) == 1 and isinstance(n[0], int):
            n = n[0]
        else:
            raise _Stop("shape")
    if not 0 <= n <= 100_000:
        raise _Stop("size")
    return Table([fill] * n)


_ARRAY_MAKERS = {"zeros": 0, "ones": 1, "empty": 0, "full": None, "zeros_like": 0, "ones_like": 1}


class Walker:
    MAX_STEPS = 200_000

    def __init__(self, env: dict):
        self.env = env
        self.steps = 0

    def tick(self):
        self.steps += 1
        if self.steps > self.MAX_STEPS:
            raise _Stop("steps")

    # statements
    def run(self, body):
        for stmt in body:
            self.stmt(stmt)

    def stmt(self, s):
        self.tick()
        if isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Constant):
                return  # docstring
            self.expr(s.value)
        elif isinstance(s, ast.Assign):
            value = self.expr(s.value)
            for target in s.targets:
                self.assign(target, value)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self.assign(s.target, self.expr(s.value))
        elif isinstance(s, ast.AugAssign):
            current = self.expr(s.target)
            self.assign(s.target, self.binop(s.op, current, self.expr(s.value)))
        elif isinstance(s, ast.For):
            items = self.expr(s.iter)
            if not isinstance(items, (list, tuple, range)):
                raise _Stop("for")
            for item in items:
                self.assign(s.target, item)
                try:
                    self.run(s.body)
                except _Continue:
                    continue
                except _Break:
                    break
            else:
                self.run(s.orelse)
        elif isinstance(s, ast.If):
            self.run(s.body if self.truth(self.expr(s.test)) else s.orelse)
        elif isinstance(s, ast.Return):
            raise _Return(self.expr(s.value) if s.value is not None else None)
        elif isinstance(s, ast.Continue):
            raise _Continue()
        elif isinstance(s, ast.Break):
            raise _Break()
        elif isinstance(s, ast.Pass):
            pass
        elif isinstance(s, ast.Assert):
            pass
        else:
            raise _Stop(type(s).__name__)

    def assign(self, target, value):
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(value) if isinstance(value, (list, tuple)) else None
            if values is None or len(values) != len(target.elts):
                raise _Stop("unpack")
            for t, v in zip(target.elts, values):
                self.assign(t, v)
        elif isinstance(target, ast.Subscript):
            obj = self.expr(target.value)
            key = self.expr(target.slice)
            if isinstance(obj, (Table, dict)) or (isinstance(obj, list) and not isinstance(obj, tuple)):
                try:
                    obj[key] = value
                except (IndexError, TypeError) as exc:
                    raise _Stop("setitem") from exc
            else:
                raise _Stop("setitem")
        elif isinstance(target, ast.Attribute):
            pass  # self.x = ... has no bearing on the returned tables
        else:
            raise _Stop("target")

    # expressions
    def truth(self, v) -> bool:
        return bool(v)

    def expr(self, e):
        self.tick()
        if isinstance(e, ast.Constant):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in self.env:
                return self.env[e.id]
            if e.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[e.id]
            return _Opaque(e.id)
        if isinstance(e, ast.Tuple):
            return tuple(self.expr(x) for x in e.elts)
        if isinstance(e, ast.List):
            return [self.expr(x) for x in e.elts]
        if isinstance(e, ast.Dict):
            return {self.expr(k): self.expr(v) for k, v in zip(e.keys, e.values) if k is not None}
        if isinstance(e, ast.BinOp):
            return self.binop(e.op, self.expr(e.left), self.expr(e.right))
        if isinstance(e, ast.UnaryOp):
            v = self.expr(e.operand)
            if isinstance(e.op, ast.Not):
                return not v
            if isinstance(e.op, ast.USub) and isinstance(v, (int, float)):
                return -v
            if isinstance(e.op, ast.Invert) and isinstance(v, bool):
                return not v
            raise _Stop("unary")
        if isinstance(e, ast.BoolOp):
            if isinstance(e.op, ast.And):
                v = True
                for x in e.values:
                    v = self.expr(x)
                    if not v:
                        return v
                return v
            v = False
            for x in e.values:
                v = self.expr(x)
                if v:
                    return v
            return v
        if isinstance(e, ast.Compare):
            left = self.expr(e.left)
            for op, comp in zip(e.ops, e.comparators):
                right = self.expr(comp)
                if not _compare(op, left, right):
                    return False
                left = right
            return True
        if isinstance(e, ast.IfExp):
            return self.expr(e.body) if self.truth(self.expr(e.test)) else self.expr(e.orelse)
        if isinstance(e, ast.Subscript):
            obj = self.expr(e.value)
            key = self.expr(e.slice)
            if isinstance(obj, (str, bytes, list, tuple, dict)):
                try:
                    return obj[key]
                except (IndexError, KeyError, TypeError) as exc:
                    raise _Stop("getitem") from exc
            raise _Stop("getitem")
        if isinstance(e, ast.Slice):
            return slice(*(self.expr(x) if x is not None else None for x in (e.lower, e.upper, e.step)))
        if isinstance(e, ast.Attribute):
            base = self.expr(e.value)
            if isinstance(base, _Opaque):
                return _Opaque(base.name + "." + e.attr)
            raise _Stop("attribute")
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.JoinedStr):
            return ""
        if isinstance(e, (ast.ListComp, ast.GeneratorExp)):
            out = Table()
            self._comp(e.elt, e.generators, out)
            return out
        raise _Stop(type(e).__name__)

    def _comp(self, elt, gens, out):
        """A comprehension, generator by generator, in a copy of the names."""
        gen, rest = gens[0], gens[1:]
        items = self.expr(gen.iter)
        if not isinstance(items, (list, tuple, range)) or gen.is_async:
            raise _Stop("comprehension")
        saved = dict(self.env)
        try:
            for item in items:
                self.assign(gen.target, item)
                if all(self.truth(self.expr(c)) for c in gen.ifs):
                    if rest:
                        self._comp(elt, rest, out)
                    else:
                        out.append(self.expr(elt))
        finally:
            self.env = saved

    def binop(self, op, a, b):
        if isinstance(a, _Opaque) or isinstance(b, _Opaque):
            raise _Stop("binop")
        try:
            if isinstance(op, ast.Add):
                return a + b
            if isinstance(op, ast.Sub):
                return a - b
            if isinstance(op, ast.Mult):
                if isinstance(a, list) and isinstance(b, int) and b <= 100_000:
                    return Table(a * b)
                return a * b
            if isinstance(op, ast.FloorDiv):
                return a // b
            if isinstance(op, ast.BitOr):
                return a | b
            if isinstance(op, ast.BitAnd):
                return a & b
        except (TypeError, ZeroDivisionError) as exc:
            raise _Stop("binop") from exc
        raise _Stop("binop")

    def call(self, e: ast.Call):
        args = [self.expr(a) for a in e.args if not isinstance(a, ast.Starred)]
        kwargs = {k.arg: self.expr(k.value) for k in e.keywords if k.arg}
        f = e.func
        if isinstance(f, ast.Name):
            name = f.id
            if name == "len":
                if isinstance(args[0], (str, bytes, list, tuple)):
                    return len(args[0])
                if isinstance(args[0], FakeSP):
                    return len(args[0])
                raise _Stop("len")
            if name == "range":
                if all(isinstance(a, int) for a in args) and args and max(args) <= 100_000:
                    return range(*args)
                raise _Stop("range")
            if name in ("int", "float", "bool", "str") and len(args) == 1:
                try:
                    return {"int": int, "float": float, "bool": bool, "str": str}[name](args[0])
                except (TypeError, ValueError) as exc:
                    raise _Stop(name) from exc
            if name in ("max", "min") and args and all(isinstance(a, (int, float)) for a in args):
                return max(args) if name == "max" else min(args)
            if name == "enumerate" and len(args) == 1 and isinstance(args[0], (list, tuple, range)):
                return list(enumerate(args[0]))
            if name in ("list", "tuple") and len(args) == 1 and isinstance(args[0], (list, tuple, range)):
                return Table(args[0])
            raise _Stop("call " + name)
        if not isinstance(f, ast.Attribute):
            raise _Stop("call")
        owner = self.expr(f.value)
        attr = f.attr
        if isinstance(owner, FakeSP):
            return owner.call(attr, args)
        if isinstance(owner, str):
            return _str_method(owner, attr, args)
        if isinstance(owner, bytes) and attr == "decode":
            return owner.decode("utf-8", errors="replace")
        if isinstance(owner, _Opaque):  # np.zeros, torch.zeros, np.array...
            if attr in _ARRAY_MAKERS:
                shape = args[0] if args else kwargs.get("shape", kwargs.get("size"))
                if isinstance(shape, list) and attr.endswith("_like"):
                    shape = len(shape)
                fill = _ARRAY_MAKERS[attr]
                if fill is None:
                    fill = args[1] if len(args) > 1 else kwargs.get("fill_value", 0)
                table = _array(shape, fill)
                if "bool" in str(kwargs.get("dtype", "")) or (args[1:] and "bool" in str(args[-1])):
                    table = Table(bool(x) for x in table)
                return table
            if attr in ("array", "tensor", "asarray", "as_tensor", "from_numpy") and args and isinstance(args[0], list):
                return Table(args[0])
            raise _Stop("call " + attr)
        if isinstance(owner, list):
            if attr == "append" and len(args) == 1:
                owner.append(args[0])
                return None
            if attr in ("to", "cpu", "numpy", "astype", "contiguous", "long", "int", "float", "bool", "clone", "copy"):
                return owner
            raise _Stop("call " + attr)
        raise _Stop("call " + attr)


class _Opaque:
    """A module or value the walk does not model (np, torch, device...)."""

    def __init__(self, name: str):
        self.name = name

    def __str__(self):
        return self.name


_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def _compare(op, a, b) -> bool:
    fn = _COMPARE.get(type(op))
    if fn is None:
        raise _Stop("compare")
    try:
        return fn(a, b)
    except TypeError as exc:
        raise _Stop("compare") from exc


def _str_method(s: str, attr: str, args: list):
    try:
        if attr == "encode":
            return s.encode(args[0] if args else "utf-8")
        if attr in ("startswith", "endswith", "replace", "lstrip", "rstrip", "strip", "removeprefix",
                    "removesuffix", "lower", "upper", "isdigit", "isspace", "split", "count"):
            return getattr(s, attr)(*args)
    except (TypeError, LookupError) as exc:
        raise _Stop("str") from exc
    raise _Stop("str " + attr)


def _uses_tokenizer_api(node: ast.AST) -> str | None:
    """The parameter the function asks piece questions of (sp.id_to_piece(i)...), if any."""
    api = {"id_to_piece", "IdToPiece", "is_byte", "IsByte"}
    params = {a.arg for a in node.args.args + node.args.kwonlyargs}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in api:
            owner = sub.func.value
            if isinstance(owner, ast.Name) and owner.id in params:
                return owner.id
    return None


def find_builders(tree: ast.AST) -> list[ast.FunctionDef]:
    """Functions that loop over ids asking a tokenizer parameter about each piece."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _uses_tokenizer_api(node):
            if any(isinstance(s, (ast.For, ast.ListComp, ast.GeneratorExp)) for s in ast.walk(node)):
                found.append(node)
    return found


def simulate_builder(node: ast.FunctionDef):
    """Run the builder over the test tokenizer; its returned tables, or None."""
    sp_name = _uses_tokenizer_api(node)
    if sp_name is None:
        return None
    n = len(TEST_PIECES)
    env: dict = {}
    all_args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
    for a in all_args:
        env[a.arg] = FakeSP() if a.arg == sp_name else _param_value(node, a.arg, n)
    walker = Walker(env)
    try:
        walker.run(node.body)
    except _Return as ret:
        value = ret.value
    except (_Stop, _Continue, _Break, RecursionError):
        return None
    except Exception:  # a shape the walk models wrongly: no measurement, never a crash
        return None
    else:
        return None
    if isinstance(value, dict):
        value = tuple(value.values())
    if isinstance(value, list) and not isinstance(value, tuple):
        value = (value,)
    if not isinstance(value, tuple):
        return None
    tables = [list(v) for v in value if isinstance(v, list) and len(v) >= n]
    return [t[:n] for t in tables if all(isinstance(x, (int, float, bool)) for x in t[:n])] or None


def _param_value(node, name: str, n: int):
    """A non-tokenizer parameter: the vocabulary size where it sizes things, else opaque."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            fname = sub.func.attr if isinstance(sub.func, ast.Attribute) else getattr(sub.func, "id", "")
            if fname in ("range", "zeros", "ones", "full", "empty", "max", "min") and any(
                isinstance(a, ast.Name) and a.id == name for a in sub.args
            ):
                return n
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Mult):
            if isinstance(sub.right, ast.Name) and sub.right.id == name:
                return n
    return _Opaque(name)
