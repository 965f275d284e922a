"""The effective configuration: env-backed settings, their overrides, and a safe
evaluator of expressions under them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import libcst as cst

from .nodes import base_name, dotted, string_value, target_names
from .records import FuncInfo

UNKNOWN = object()  # result of an expression the evaluator cannot decide


@dataclass(eq=False)
class ConfigVar:
    name: str  # attribute / variable name, e.g. ngram_eval_order
    env_key: str | None  # e.g. NGRAM_EVAL_ORDER
    default: str | None  # the default as written
    expr: cst.BaseExpression | None
    line: int
    where: str  # "Hyperparameters" / "module" / "argparse"
    _value: Any = UNKNOWN


class ConfigFacts:
    """The configuration part of ``Facts`` (a mixin: reads the collected records)."""

    def _build_config(self) -> None:
        self.config: dict[str, ConfigVar] = {}
        self._env_readers = self._find_env_readers()
        config_classes = set()
        for cls, name, value, line in self.class_fields:
            if value is not None and self._env_read(value):
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
            key, default = self._env_read(value) or (None, None)
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
            er = self._env_read(ai.value)
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
        if cv.env_key and cv.env_key in self.env and _literal(cv.expr) and not self._env_read(cv.expr):
            return _coerce(self.env[cv.env_key], cv.default)  # generic reader (see _build_config)
        return self.eval(cv.expr, None, _seen=(name,))

    def _find_env_readers(self) -> frozenset[str]:
        """This file's functions that read the environment variable their first parameter
        names (``def _env_bool(name, default): raw = os.environ.get(name) ...``): a call
        ``_env_bool("K", False)`` is a setting K with default False."""
        out = set()
        for fi in self.funcs:
            params = [p.name.value for p in fi.node.params.params]
            if fi.cls is not None or not params:
                continue
            for n in self.subtree(fi.node.body):
                key = None
                kind = type(n)
                if kind is cst.Call and dotted(n.func) in _ENV_GETS and n.args:
                    key = n.args[0].value
                elif kind is cst.Subscript and dotted(n.value) in ("os.environ", "environ") and n.slice \
                        and isinstance(n.slice[0].slice, cst.Index):
                    key = n.slice[0].slice.value
                if key is not None and type(key) is cst.Name and key.value == params[0]:
                    out.add(fi.name)
                    break
        return frozenset(out)

    def _env_read(self, node: cst.CSTNode) -> tuple[str, str | None] | None:
        """Find ``os.environ.get("K", d)`` / ``os.getenv`` / ``os.environ["K"]`` inside ``node``,
        or a call ``reader("K", d)`` of one of this file's env readers."""
        readers = self._env_readers
        for n in self.subtree(node):
            kind = type(n)
            if kind is cst.Call:
                name = dotted(n.func)
                if (name in _ENV_GETS or name in readers) and n.args:
                    k = n.args[0].value
                    if isinstance(k, cst.SimpleString):
                        d = None
                        if len(n.args) > 1:
                            dv = n.args[1].value
                            d = str(string_value(dv)) if isinstance(dv, cst.SimpleString) else (
                                dv.value if isinstance(dv, (cst.Integer, cst.Float, cst.Name)) else None)
                        return str(string_value(k)), d
            elif kind is cst.Subscript:
                if dotted(n.value) in ("os.environ", "environ") and n.slice and isinstance(
                        n.slice[0].slice, cst.Index) and isinstance(n.slice[0].slice.value, cst.SimpleString):
                    return str(string_value(n.slice[0].slice.value)), None
        return None

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
            return string_value(n)
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
            return _binop(type(n.operator).__name__, a, b)
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
            if name in self._env_readers and args:
                # ``_env_bool("K", False)``: the reader's own parsing, if K is set, is not
                # evaluated; a default that is a bool reads the value as a flag
                k = E(args[0].value)
                if not isinstance(k, str):
                    return UNKNOWN
                default = E(args[1].value) if len(args) > 1 else None
                if k in self.env:
                    return _coerce(self.env[k], str(default) if isinstance(default, bool) else None)
                return default
            if name in _ENV_GETS:
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
                    if _empty_container(defs[0][1]):  # filled later by ``.append`` / stores
                        return UNKNOWN
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


_ENV_GETS = ("os.environ.get", "environ.get", "os.getenv", "getenv")


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


# The evaluator only needs configuration-sized values: a result larger than these
# is UNKNOWN rather than computed (``9**9**9`` or ``"x" * 10**12`` in a gate would
# otherwise hang or exhaust memory).
_MAX_INT_BITS = 4096
_MAX_SEQ_LEN = 1 << 20


def _size_ok(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, int):
        return v.bit_length() <= _MAX_INT_BITS
    if isinstance(v, (str, bytes, tuple)):
        return len(v) <= _MAX_SEQ_LEN
    return True


def _binop(op: str, a: Any, b: Any) -> Any:
    """``a <op> b`` for the operators the evaluator knows, or UNKNOWN when the operands
    or the result would be too large to compute cheaply."""
    if not (_size_ok(a) and _size_ok(b)):
        return UNKNOWN
    if op == "Power":
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            base = abs(a)
            if base > 1 and b > 0 and b * math.log2(base) > _MAX_INT_BITS:
                return UNKNOWN
        else:
            return UNKNOWN
        return a ** b
    if op == "Multiply":
        if isinstance(a, int) and isinstance(b, int):
            if a.bit_length() + b.bit_length() > _MAX_INT_BITS:
                return UNKNOWN
        else:
            n, seq = (b, a) if isinstance(b, int) else (a, b)
            if isinstance(n, int) and isinstance(seq, (str, bytes, tuple, list)) and n * len(seq) > _MAX_SEQ_LEN:
                return UNKNOWN
        return a * b
    ops = {
        "Add": lambda: a + b, "Subtract": lambda: a - b,
        "Divide": lambda: a / b, "FloorDivide": lambda: a // b, "Modulo": lambda: a % b,
        "BitOr": lambda: a | b, "BitAnd": lambda: a & b,
    }
    if op not in ops:
        return UNKNOWN
    v = ops[op]()
    return v if _size_ok(v) else UNKNOWN


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


def _empty_container(node: cst.CSTNode) -> bool:
    """``[]``, ``{}``, ``list()``, ``dict()``, ``set()``: a local collection that is filled
    later (``xs.append(..)``, ``d[k] = v``), so its truth is not that of its first value."""
    if isinstance(node, (cst.List, cst.Dict, cst.Set)):
        return not node.elements
    return isinstance(node, cst.Call) and not node.args and dotted(node.func) in ("list", "dict", "set")
