"""Unpack what a submission's code file ships, without ever running it.

Packed scripts (``exec(lzma.decompress(base64.b85decode("...")))``) hid illegal
code from earlier reviewers because nothing was decoded. This module decodes
every payload it can prove statically (literals, names bound to literals,
stdlib decoders and decompressors), recursively, and records where each layer
came from, so rules can read the code that actually runs. It also records code
that lives outside the file (``exec(open("x.py").read())``, local imports),
which the rules say is uncounted.

Nothing from the submission is executed, imported or ``eval``'d: expressions
are parsed with libcst and only literals are turned into values
(``ast.literal_eval``). Every decompression is bounded, so a bomb is reported
instead of followed, and bad input produces a ``Problem``, never an exception.
"""

from __future__ import annotations

import ast
import base64
import io
import lzma
import tokenize
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import libcst as cst
from libcst.helpers import get_full_name_for_node

from auditor.decoders import (
    DECOMPRESSOR_OBJECTS,
    DECOMPRESSORS,
    ENCODINGS,
    LZMA_STEP,
    DecodeFailure,
    by_magic,
)
from rules.facts.lines import Layout

__all__ = [
    "Layer",
    "Link",
    "Problem",
    "SourceUnit",
    "Limits",
    "unpack_file",
    "unpack_bytes",
    "follow_links",
]

SHIPPED = "shipped"
# Problem kinds that mean a payload was found but its code could not be recovered.
DECODE_FAILURES = frozenset({"bomb", "depth", "decode-error", "missing-codec"})


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class Layer:
    """One readable version of the code: the shipped file or a decoded payload."""

    name: str
    text: str
    parent: str | None
    line: int | None
    steps: tuple[str, ...]
    origin: str
    executed: bool


@dataclass(frozen=True)
class Link:
    """Code reached outside the file: it runs but does not count toward the size."""

    kind: str  # "exec-file" | "import"
    target: str
    path: Path | None
    layer: str
    line: int


@dataclass(frozen=True)
class Problem:
    """Why part of the code could not be read; the verdict must not rest on it."""

    kind: str
    message: str
    layer: str
    line: int | None


@dataclass
class SourceUnit:
    """A code file with all it ships: layers, links to other code, problems."""

    path: Path | None
    name: str
    shipped_bytes: int
    layers: list[Layer]
    links: list[Link] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    decoded_bytes: int = 0  # spent of the decode budget (Limits.max_total_bytes)
    analysed_chars: int = 0  # spent of the analysis budget (Limits.max_record_analysed_chars)
    # layer name -> (libcst module, ``rules.facts.lines.Layout``) as the unpacker parsed
    # it, handed to the rules so that no layer is parsed twice
    trees: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)
    # layer name -> CPython's tree of it, from the same parse, for the folder checks
    ast_trees: dict[str, ast.Module] = field(default_factory=dict, repr=False, compare=False)

    @property
    def packed(self) -> bool:
        """True when some decoded payload actually runs."""
        return any(layer.parent is not None for layer in self.effective_layers)

    @property
    def effective_layers(self) -> list[Layer]:
        """Layers whose code runs: shipped, plus payloads exec'd by a layer that runs."""
        by_name = {layer.name: layer for layer in self.layers}

        def runs(layer: Layer) -> bool:
            while layer.parent is not None:
                if not layer.executed:
                    return False
                layer = by_name[layer.parent]
            return True

        return [layer for layer in self.layers if runs(layer)]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}")

    def unpacked_bytes(self) -> int:
        """Bytes of the innermost running source(s): what a log counting the
        unpacked script reports, which overstates the shipped size (PR #1835)."""
        if not self.packed:
            return self.shipped_bytes
        effective = self.effective_layers
        parents = {layer.parent for layer in effective}
        return sum(len(layer.text.encode("utf-8")) for layer in effective if layer.name not in parents)


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile file from costing more than a normal one."""

    max_file_bytes: int = 32 * 2**20
    # Decoded source of real records is under 200 KB; 16 MiB a layer (and 64 MiB in all)
    # keeps a bomb's output plus lzma's own 64 MiB window under 100 MB over a tiny script.
    max_layer_bytes: int = 16 * 2**20
    max_total_bytes: int = 64 * 2**20
    max_depth: int = 8
    # What one layer may hold to be analysed (parsed, then read by the rules): 2.7x the
    # largest real record (191,812 bytes, 4,535 lines). The analysis grows linearly, about
    # 0.8 MB of memory per KB of code (libcst), so a 5 MB script took 158 s and 2.3 GB and
    # five times the largest record 109 s and 793 MB; at these caps it stays under 500 MB.
    # Past either cap the layer is reported as too large to analyse (PG414), never parsed.
    max_analysed_chars: int = 512 * 1024
    max_analysed_lines: int = 12_000
    # ... and what all the layers of a record may hold together (the script, its payloads
    # and the files it runs: the largest real record has 191,762 characters in all).
    max_record_analysed_chars: int = 2**20


def unpack_file(path: Path, *, root: Path | None = None, limits: Limits = Limits()) -> SourceUnit:
    """Unpack a code file; ``root`` (default: its folder) resolves links."""
    path = Path(path)
    root = path.parent if root is None else Path(root)
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            return _too_large(path, path.name, size, limits)
        with path.open("rb") as handle:
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as exc:
        problem = Problem("unreadable", f"{path.name}: cannot read the file ({exc.strerror or exc})", SHIPPED, None)
        return SourceUnit(path, path.name, 0, [_shipped("")], [], [problem])
    unit = unpack_bytes(data, path.name, root=root, limits=limits)
    unit.path = path
    # The file importing itself runs counted code: not a link to uncounted code.
    unit.links = [link for link in unit.links if link.path is None or link.path != path.resolve()]
    return unit


def unpack_bytes(data: bytes, name: str, *, root: Path | None = None, limits: Limits = Limits()) -> SourceUnit:
    """Unpack code given as bytes; without ``root`` only relative imports and
    exec'd files are reported as links (unresolved), since nothing can be found."""
    if len(data) > limits.max_file_bytes:
        return _too_large(None, name, len(data), limits)
    return _Unpacker(name, None if root is None else Path(root), limits).run(data)


def follow_links(unit: SourceUnit, root: Path, limits: Limits = Limits()) -> list[SourceUnit]:
    """Unpack every file the unit links to, transitively, each file once.

    The decode and analysis budgets (``max_total_bytes``,
    ``max_record_analysed_chars``) are the record's, not each file's: what the unit
    and the files before have spent is gone for the files after, so five helper
    files with a 48 MiB payload each cost one budget, not five."""
    seen = {unit.path.resolve()} if unit.path is not None else set()
    queue, found = [unit], []
    decoded, analysed = unit.decoded_bytes, unit.analysed_chars
    while queue:
        for link in queue.pop(0).links:
            if link.path is None or link.path.resolve() in seen:
                continue
            seen.add(link.path.resolve())
            left = replace(limits, max_total_bytes=max(0, limits.max_total_bytes - decoded),
                           max_record_analysed_chars=max(0, limits.max_record_analysed_chars - analysed))
            linked = unpack_file(link.path, root=root, limits=left)
            decoded += linked.decoded_bytes
            analysed += linked.analysed_chars
            found.append(linked)
            queue.append(linked)
    return found


def _shipped(text: str) -> Layer:
    return Layer(SHIPPED, text, None, None, (), "the file as committed", True)


def _too_large(path: Path | None, name: str, size: int, limits: Limits) -> SourceUnit:
    message = f"{name} is {size:,} bytes, over the {limits.max_file_bytes:,}-byte limit; not read"
    return SourceUnit(path, name, size, [_shipped("")], [], [Problem("too-large", message, SHIPPED, None)])


# ---------------------------------------------------------------- bytes to text

_TEXT_CONTROLS = set(range(32)) - {9, 10, 12, 13} | {127}


def _to_text(data: bytes, binary_text: bool = True) -> tuple[str, str | None]:
    """Decode source bytes the way Python would (BOM, coding cookie, else UTF-8).

    Returns the text (with replacement characters when undecodable) and a
    problem kind: "binary" for data that is not text at all, "non-utf8" for text
    that Python would refuse to run.
    """
    controls = sum(1 for byte in data[:65536] if byte in _TEXT_CONTROLS)
    if b"\x00" in data or controls > 0.05 * min(len(data), 65536):
        # a decoded payload that is binary is dropped: not decoding it spares a copy of up to a layer's budget
        return (data.decode("utf-8", "replace") if binary_text else ""), "binary"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding), None
    except (SyntaxError, LookupError, UnicodeError, ValueError, TypeError):
        # UnicodeError, not only UnicodeDecodeError: a cookie naming `undefined` or
        # `punycode` fails with the base class; Python would refuse to run it too.
        return data.decode("utf-8", "replace"), "non-utf8"


def _parse(text: str) -> tuple[cst.Module, ast.Module]:
    """Parse with CPython first: it rejects what Python would, with its line
    number, and shields libcst's native parser from nesting that crashes it. Both
    trees are returned: ``Layout`` reads statement lines from CPython's."""
    tree = ast.parse(text)
    return cst.parse_module(text), tree


def _looks_like_code(text: str) -> bool:
    """A decoded literal that is not exec'd is only a layer if it reads as a program,
    not as a word or a single expression (tokens, weights, messages stay data)."""
    try:
        body = _parse(text)[0].body
    except Exception:
        return False
    if not body:
        return False
    if len(body) == 1 and isinstance(body[0], cst.SimpleStatementLine):
        return not all(isinstance(small, cst.Expr) for small in body[0].body)
    return True


# ------------------------------------------------------------ evaluation errors


class _Unknown(Exception):
    """The expression is not something we can evaluate without running code."""


_CONSTANT_MODULES = {"lzma": lzma, "zlib": zlib}
_SINKS = {"exec", "eval", "compile", "builtins.exec", "builtins.eval", "builtins.compile"}
_OPENERS = {"open", "io.open", "codecs.open", "builtins.open", "gzip.open", "bz2.open", "lzma.open"}
_PATHS = {"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "os.path.join"}
_PATH_NEUTRAL = {"os.path.dirname", "os.path.abspath", "os.path.realpath", "os.getcwd", "pathlib.Path.cwd"}
_FILE_RUNNERS = {"runpy.run_path"}
_IMPORTERS = {"importlib.import_module", "__import__"}


@dataclass(frozen=True)
class _Val:
    value: Any
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class _FileData:
    """The contents of a file read by the code (only its name is known)."""

    target: str


# ------------------------------------------------------------------------- scan


class _Scan:
    """One pass over a layer: name bindings, calls, literals and imports
    (``rules.facts.lines.Layout.walk`` calls its ``visit_X`` methods)."""

    def __init__(self, spans: dict[int, tuple[int, int]]) -> None:
        self.spans = spans
        self.aliases: dict[str, str] = {}
        self.star_modules: list[str] = []
        self.bindings: dict[str, list[tuple[int, cst.BaseExpression]]] = {}
        self.calls: list[cst.Call] = []
        self.literals: list[cst.BaseExpression] = []
        self.imports: list[tuple[str, int, int]] = []  # (module as written, relative dots, line)

    def line(self, node: cst.CSTNode) -> int:
        return self.spans[id(node)][0]

    def _bind(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            self.bindings.setdefault(target.value, []).append((self.line(target), value))

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = get_full_name_for_node(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.aliases[alias.asname.name.value] = full
            else:
                top = full.split(".")[0]
                self.aliases[top] = top
            self.imports.append((full, 0, self.line(node)))

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = get_full_name_for_node(node.module) if node.module is not None else ""
        dots = len(node.relative)
        line = self.line(node)
        if isinstance(node.names, cst.ImportStar):
            self.star_modules.append(module or "")
            self.imports.append((module or "", dots, line))
            return
        for alias in node.names:
            name = get_full_name_for_node(alias.name) or ""
            local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else name
            self.aliases[local] = f"{module}.{name}" if module else name
            if dots and not module:
                self.imports.append((name, dots, line))  # from . import helper
        if module:
            self.imports.append((module, dots, line))

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._bind(target.target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._bind(node.target, node.value)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._bind(node.asname.name, node.item)

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self.literals.append(node)

    def visit_ConcatenatedString(self, node: cst.ConcatenatedString) -> bool:
        self.literals.append(node)
        return False  # its parts are not separate literals

    # -- name resolution (after the pass, when all imports are known)

    def binding(self, name: str, line: int) -> cst.BaseExpression | None:
        """The value last bound to ``name`` before ``line`` (else the last one at all)."""
        found = self.bindings.get(name)
        if not found:
            return None
        before = [value for bound_at, value in found if bound_at < line]
        return before[-1] if before else found[-1][1]

    def qualname(self, node: cst.BaseExpression, seen: frozenset[str] = frozenset()) -> str | None:
        """Canonical dotted name of a callee: aliases, ``__import__`` and
        ``X().method`` resolved, e.g. ``L.decompress`` -> ``lzma.decompress``."""
        if isinstance(node, cst.Name):
            name = node.value
            if name in self.aliases:
                return self.aliases[name]
            bound = self.binding(name, self.line(node)) if name not in seen else None
            if isinstance(bound, (cst.Name, cst.Attribute, cst.Call)):
                return self.qualname(bound, seen | {name})
            for module in self.star_modules:
                if f"{module}.{name}" in ENCODINGS or f"{module}.{name}" in DECOMPRESSORS:
                    return f"{module}.{name}"
            return name
        if isinstance(node, cst.Attribute):
            base = self.qualname(node.value, seen)
            return f"{base}.{node.attr.value}" if base else None
        if isinstance(node, cst.Call):
            callee = self.qualname(node.func, seen)
            if callee in _IMPORTERS and node.args and isinstance(node.args[0].value, cst.SimpleString):
                module = ast.literal_eval(node.args[0].value.value)
                return module if isinstance(module, str) else None
            return f"{callee}()" if callee else None
        return None

    def constructor(self, node: cst.BaseExpression, seen: frozenset[str] = frozenset()) -> cst.Call | None:
        """The ``X(...)`` call an object expression was built by, through names."""
        if isinstance(node, cst.Call):
            return node
        if isinstance(node, cst.Name) and node.value not in seen:
            bound = self.binding(node.value, self.line(node))
            return self.constructor(bound, seen | {node.value}) if bound is not None else None
        return None


# -------------------------------------------------------------------- evaluator


class _Eval:
    """Turns an expression into a value using only literals and known decoders.

    One instance per evaluated root expression: it remembers which nodes it
    used (so they are not reported again), which names it followed (for the
    origin sentence) and which files it read (links).
    """

    def __init__(self, scan: _Scan, budget: Callable[[], int], spend: Callable[[int], None]):
        self.scan = scan
        self.budget = budget
        self.spend = spend
        self.used: set[int] = set()
        self.names: list[tuple[str, cst.BaseExpression]] = []
        self.files: list[str | None] = []
        self.codec_seen = False
        self._resolving: set[int] = set()

    def __call__(self, node: cst.BaseExpression) -> _Val:
        self.used.add(id(node))
        if isinstance(node, (cst.SimpleString, cst.Integer, cst.Float)):
            try:
                return _Val(ast.literal_eval(node.value))
            except (ValueError, SyntaxError):  # e.g. an int past the digit limit
                raise _Unknown from None
        if isinstance(node, cst.ConcatenatedString):
            try:
                return _Val(self(node.left).value + self(node.right).value)
            except TypeError:  # bytes next to str
                raise _Unknown from None
        if isinstance(node, cst.Name):
            return self._name(node)
        if isinstance(node, cst.Attribute):
            return self._constant(node)
        if isinstance(node, (cst.List, cst.Tuple)):
            items = [self(el.value).value for el in node.elements if isinstance(el, cst.Element)]
            if len(items) != len(node.elements):
                raise _Unknown
            return _Val(items if isinstance(node, cst.List) else tuple(items))
        if isinstance(node, cst.Dict):
            if not all(isinstance(el, cst.DictElement) for el in node.elements):
                raise _Unknown
            return _Val({self(el.key).value: self(el.value).value for el in node.elements})
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
            return _Val(-self._int(node.expression))
        if isinstance(node, cst.BinaryOperation):
            return self._binary(node)
        if isinstance(node, cst.Call):
            return self._call(node)
        raise _Unknown

    def _int(self, node: cst.BaseExpression) -> int:
        value = self(node).value
        if type(value) is not int:
            raise _Unknown
        return value

    def _name(self, node: cst.Name) -> _Val:
        if node.value in ("True", "False", "None"):
            return _Val({"True": True, "False": False, "None": None}[node.value])
        qualified = self.scan.qualname(node)
        if qualified and qualified != node.value:
            try:
                return self._constant_named(qualified)
            except _Unknown:
                pass
        bound = self.scan.binding(node.value, self.scan.line(node))
        if bound is None or id(bound) in self._resolving:  # x = f(x) with no earlier x
            raise _Unknown
        self._resolving.add(id(bound))
        try:
            self.names.append((node.value, bound))
            return self(bound)
        finally:
            self._resolving.discard(id(bound))

    def _constant(self, node: cst.Attribute) -> _Val:
        qualified = self.scan.qualname(node)
        if qualified is None:
            raise _Unknown
        return self._constant_named(qualified)

    @staticmethod
    def _constant_named(qualified: str) -> _Val:
        """Module constants used in decoder arguments, e.g. ``lzma.FILTER_LZMA2``."""
        module, _, attr = qualified.rpartition(".")
        if module in _CONSTANT_MODULES and attr.isupper() and hasattr(_CONSTANT_MODULES[module], attr):
            value = getattr(_CONSTANT_MODULES[module], attr)
            if isinstance(value, int):
                return _Val(value)
        raise _Unknown

    def _binary(self, node: cst.BinaryOperation) -> _Val:
        left, right = self(node.left), self(node.right)
        a, b, op = left.value, right.value, node.operator
        steps = left.steps or right.steps
        if isinstance(op, cst.Add) and type(a) is type(b) and isinstance(a, (str, bytes, int)):
            return _Val(a + b, steps)
        if type(a) is int and type(b) is int:
            if isinstance(op, cst.BitOr):
                return _Val(a | b)
            if isinstance(op, cst.Subtract):
                return _Val(a - b)
            if isinstance(op, cst.Multiply) and abs(a) < 2**64 and abs(b) < 2**64:
                return _Val(a * b)
            if isinstance(op, cst.LeftShift) and 0 <= b <= 64:
                return _Val(a << b)
            if isinstance(op, cst.Power) and 0 <= b <= 64 and abs(a) <= 2**16:
                return _Val(a**b)
        raise _Unknown

    # -- calls

    def _options(self, call: cst.Call, names: tuple[str, ...]) -> dict[str, Any]:
        """Literal arguments of a call, positional ones named by ``names``."""
        if any(arg.star for arg in call.args):
            raise _Unknown
        positional = [arg for arg in call.args if arg.keyword is None]
        options = {name: self(arg.value).value for name, arg in zip(names, positional)}
        for arg in call.args:
            if arg.keyword is not None:
                options[arg.keyword.value] = self(arg.value).value
        return options

    def _args(self, call: cst.Call, names: tuple[str, ...]) -> tuple[cst.BaseExpression, dict[str, Any]]:
        """The data argument (first positional) and the literal options after it."""
        positional = [arg for arg in call.args if arg.keyword is None]
        if not positional or positional[0].star:
            raise _Unknown
        rest = call.with_changes(args=[arg for arg in call.args if arg is not positional[0]])
        return positional[0].value, self._options(rest, names)

    def _call(self, node: cst.Call) -> _Val:
        callee = self.scan.qualname(node.func)
        if callee in ("compile", "builtins.compile") and node.args:
            return self(node.args[0].value)
        if callee in ENCODINGS:
            return self._encoding(node, *ENCODINGS[callee])
        if callee in DECOMPRESSORS:
            step, decoder, params = DECOMPRESSORS[callee]
            data, options = self._args(node, params)
            return self._decompress(data, step, decoder, options)
        if callee in DECOMPRESSOR_OBJECTS and isinstance(node.func, cst.Attribute):
            step, decoder, params = DECOMPRESSOR_OBJECTS[callee]
            built = self.scan.constructor(node.func.value)
            if built is None:
                raise _Unknown
            data, _ = self._args(node, ("max_length",))
            return self._decompress(data, step, decoder, self._options(built, params))
        if callee in ("str", "bytes") and len(node.args) >= 2:
            return self._text_codec(node.args[0].value, "decode" if callee == "str" else "encode", node.args[1:])
        if isinstance(node.func, cst.Attribute):
            method = node.func.attr.value
            if method in ("decode", "encode"):
                return self._text_codec(node.func.value, method, node.args)
            if method == "join" and len(node.args) == 1:
                sep = self(node.func.value).value
                parts = self(node.args[0].value).value
                if isinstance(sep, (str, bytes)) and isinstance(parts, (list, tuple)):
                    try:
                        return _Val(sep.join(parts))
                    except TypeError:
                        raise _Unknown from None
            if method in ("read", "read_text", "read_bytes"):
                return self._file_read(node.func, method)
        raise _Unknown

    def _encoding(self, node: cst.Call, step: str, decoder: Callable[..., bytes]) -> _Val:
        self.codec_seen = True
        data, _ = self._args(node, ())
        source = self(data)
        if not isinstance(source.value, (str, bytes)):
            raise _Unknown
        rest = [self(arg.value).value for arg in node.args[1:] if arg.keyword is None]
        options = {arg.keyword.value: self(arg.value).value for arg in node.args if arg.keyword is not None}
        try:
            out = decoder(source.value, *rest, **options)
        except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
            raise DecodeFailure("decode-error", f"{step} decoding failed: {exc}") from None
        self.spend(len(out))
        return _Val(out, source.steps + (step,))

    def _decompress(self, data: cst.BaseExpression, step: str, decoder: Callable[..., bytes], options: dict) -> _Val:
        self.codec_seen = True
        source = self(data)
        if not isinstance(source.value, bytes):
            raise _Unknown
        kwargs: dict[str, Any] = {}
        if step == "lzma":
            kwargs = {"format": options.get("format", lzma.FORMAT_AUTO), "filters": options.get("filters")}
            step = LZMA_STEP.get(kwargs["format"], "lzma")
        elif step == "zlib" and "wbits" in options:
            kwargs = {"wbits": options["wbits"]}
        limit = self.budget()
        try:
            out = decoder(source.value, limit, **kwargs)
        except DecodeFailure:
            raise
        except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError, TypeError) as exc:
            raise DecodeFailure("decode-error", f"{step} decompression failed: {exc}") from None
        except Exception as exc:  # codec packages raise their own error types (zstd, brotli)
            raise DecodeFailure("decode-error", f"{step} decompression failed: {type(exc).__name__}: {exc}") from None
        self.spend(len(out))
        return _Val(out, source.steps + (step,))

    def _text_codec(self, node: cst.BaseExpression, method: str, args: Any) -> _Val:
        source = self(node)
        positional = [self(arg.value).value for arg in args if arg.keyword is None]
        keywords = {arg.keyword.value: self(arg.value).value for arg in args if arg.keyword is not None}
        if isinstance(source.value, _FileData):
            return source
        expected = bytes if method == "decode" else str
        if not isinstance(source.value, expected):
            raise _Unknown
        try:
            return _Val(getattr(source.value, method)(*positional, **keywords), source.steps)
        except (UnicodeError, LookupError, TypeError) as exc:
            raise DecodeFailure("decode-error", f".{method}() failed: {exc}") from None

    def _file_read(self, func: cst.Attribute, method: str) -> _Val:
        """``open(p).read()``, ``Path(p).read_text()``: a file read, never performed."""
        if method == "read":
            opener = self.scan.constructor(func.value)
            if opener is None:
                raise _Unknown
            opener_name = self.scan.qualname(opener.func)
            if opener_name in _OPENERS and opener.args:
                target = self._path(opener.args[0].value)
            elif isinstance(opener.func, cst.Attribute) and opener.func.attr.value == "open":
                target = self._path(opener.func.value)  # Path(p).open().read()
            else:
                raise _Unknown
        else:
            target = self._path(func.value)
        self.files.append(target)
        if target is None:
            raise _Unknown
        return _Val(_FileData(target))

    def _path(self, node: cst.BaseExpression) -> str | None:
        """The literal part of a path expression; the script's own folder
        (``__file__``, ``dirname(...)``) counts as the record folder."""
        parts = self._path_parts(node)
        return "/".join(parts) if parts else None

    def _path_parts(self, node: cst.BaseExpression) -> list[str]:
        if isinstance(node, cst.Name) and node.value == "__file__":
            return []
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Divide):
            return self._path_parts(node.left) + self._path_parts(node.right)
        if isinstance(node, cst.Call):
            callee = self.scan.qualname(node.func)
            if callee in _PATH_NEUTRAL:
                return []
            if callee in _PATHS:
                return [part for arg in node.args for part in self._path_parts(arg.value)]
            if isinstance(node.func, cst.Attribute) and node.args:
                method = node.func.attr.value
                if method == "joinpath":
                    return self._path_parts(node.func.value) + [p for a in node.args for p in self._path_parts(a.value)]
                if method == "with_name":
                    return self._path_parts(node.func.value)[:-1] + self._path_parts(node.args[0].value)
                if (method == "replace" and len(node.args) >= 2 and isinstance(node.func.value, cst.Name)
                        and node.func.value.value == "__file__"):
                    # `__file__.replace("train_gpt.py", "train_gpt_decode.py")`: a sibling by name
                    old, new = (self._literal(a.value) for a in node.args[:2])
                    return [new] if old and new and old.endswith(".py") else []
        if isinstance(node, cst.Attribute) and node.attr.value == "parent":
            return []
        value = self._literal(node)
        return [value] if value is not None else []

    def _literal(self, node: cst.BaseExpression) -> str | None:
        try:
            value = self(node).value
        except (_Unknown, DecodeFailure):
            return None
        return value if isinstance(value, str) else None


# --------------------------------------------------------------------- unpacker


class _Unpacker:
    """Walks the layers of one file, depth first, within the limits."""

    def __init__(self, name: str, root: Path | None, limits: Limits):
        self.name = name
        self.root = root
        self.limits = limits
        self.spent = 0
        self.unit = SourceUnit(None, name, 0, [])

    def run(self, data: bytes) -> SourceUnit:
        unit = self.unit
        unit.shipped_bytes = len(data)
        if not data.strip():
            unit.layers.append(_shipped(data.decode("utf-8", "replace")))
            unit.problems.append(Problem("empty", f"{self.name} is empty", SHIPPED, None))
            return unit
        text, kind = _to_text(data)
        oversize = self._oversize(text)
        if oversize:
            unit.layers.append(_shipped(""))
            self._problem("too-large", f"{self.name} is {oversize}: too large to analyse, its code was not read", SHIPPED, None)
            return unit
        unit.layers.append(_shipped(text))
        unit.analysed_chars += len(text)
        if kind == "binary":
            self._problem("binary", f"{self.name} is binary data, not Python source", SHIPPED, None)
            return unit
        if kind == "non-utf8":
            self._problem(
                "non-utf8",
                f"{self.name} is not valid UTF-8 in the encoding it declares (read as UTF-8 with replacement characters)",
                SHIPPED,
                None,
            )
        self._scan_layer(unit.layers[0], 0)
        order = {layer.name: n for n, layer in enumerate(unit.layers)}
        unit.links.sort(key=lambda link: (order[link.layer], link.line))
        return unit

    # -- bookkeeping

    def _problem(self, kind: str, message: str, layer: str, line: int | None) -> None:
        self.unit.problems.append(Problem(kind, message, layer, line))

    def _oversize(self, text: str) -> str | None:
        """Why a layer is too large to analyse (its size against the caps and what is
        left of the record's analysis budget), or None."""
        lines = text.count("\n") + 1
        if len(text) > self.limits.max_analysed_chars or lines > self.limits.max_analysed_lines:
            return (f"{len(text):,} characters in {lines:,} lines, over the analysis cap of "
                    f"{self.limits.max_analysed_chars:,} characters or {self.limits.max_analysed_lines:,} lines")
        left = self.limits.max_record_analysed_chars - self.unit.analysed_chars
        if len(text) > left:
            return (f"{len(text):,} characters, over the {max(0, left):,} left of the record's analysis budget "
                    f"(the script, its payloads and the files it runs)")
        return None

    def _budget(self) -> int:
        return max(0, min(self.limits.max_layer_bytes, self.limits.max_total_bytes - self.spent))

    def _spend(self, n: int) -> None:
        self.spent += n
        self.unit.decoded_bytes = self.spent

    def _link(self, kind: str, target: str, path: Path | None, layer: str, line: int) -> None:
        link = Link(kind, target, path, layer, line)
        if link not in self.unit.links:
            self.unit.links.append(link)

    def _layer_name(self, parent: str, steps: tuple[str, ...]) -> str:
        base = f"{parent}>{'>'.join(steps)}"
        taken = {layer.name for layer in self.unit.layers}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}#{n}"
        return name

    # -- one layer

    def _scan_layer(self, layer: Layer, depth: int) -> None:
        try:
            module, ast_tree = _parse(layer.text)
        except cst.ParserSyntaxError as exc:
            message = f"libcst cannot parse it although Python accepts it ({exc.message}); its code is not analysed"
            self._problem("syntax-error", f"{layer.name}:{exc.raw_line}: {message}", layer.name, exc.raw_line)
            return
        except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
            line = getattr(exc, "lineno", None)
            reason = getattr(exc, "msg", None) or str(exc)
            message = f"{layer.name}:{line}: not valid Python ({reason}); its code is not analysed"
            self._problem("syntax-error", message, layer.name, line)
            return
        except (RecursionError, MemoryError):
            self._problem("depth", f"{layer.name}: code nested too deeply to parse", layer.name, None)
            return
        self.unit.ast_trees[layer.name] = ast_tree
        try:
            layout = Layout(module, layer.text, tree=ast_tree)
            if not layer.text.startswith("\ufeff"):  # the rules drop a byte-order mark first
                self.unit.trees[layer.name] = (module, layout)
            scan = _Scan(layout.spans)
            layout.walk(scan, module)
            self._scan_facts(layer, depth, scan)
        except RecursionError:
            self._problem("depth", f"{layer.name}: expressions nested too deeply to analyse", layer.name, None)
        except Exception as exc:  # a bug here must not hide the rest of the file
            message = f"{layer.name}: the unpacker failed ({type(exc).__name__}: {exc}); this layer is not fully analysed"
            self._problem("internal-error", message, layer.name, None)

    def _scan_facts(self, layer: Layer, depth: int, scan: _Scan) -> None:
        used: set[int] = set()
        calls = [(call, scan.qualname(call.func)) for call in scan.calls]
        for call, callee in calls:
            if callee in _SINKS and id(call) not in used:
                self._sink(layer, depth, scan, call, callee, used)
        for call, callee in calls:
            if id(call) not in used and (callee in ENCODINGS or callee in DECOMPRESSORS or callee in DECOMPRESSOR_OBJECTS):
                self._free_chain(layer, depth, scan, call, used)
            elif callee in _FILE_RUNNERS or callee in _IMPORTERS:
                self._call_link(layer, scan, call, callee)
        for literal in scan.literals:
            if id(literal) not in used:
                self._sniff(layer, depth, scan, literal)
        for module, dots, line in scan.imports:
            self._import_link(layer, module, dots, line)

    def _evaluator(self, scan: _Scan) -> _Eval:
        return _Eval(scan, self._budget, self._spend)

    def _sink(self, layer: Layer, depth: int, scan: _Scan, call: cst.Call, callee: str, used: set[int]) -> None:
        """exec/eval/compile: the argument is code that runs."""
        line = scan.line(call)
        used.add(id(call))
        if not call.args:
            return
        where = f"{layer.name}:{line}"
        if depth >= self.limits.max_depth:
            self._problem("depth", f"code run at {where} not followed: nesting deeper than {self.limits.max_depth} layers", layer.name, line)
            return
        evaluate = self._evaluator(scan)
        val = None
        try:
            val = evaluate(call.args[0].value)
        except _Unknown:
            pass
        except DecodeFailure as exc:
            self._problem(exc.kind, f"{callee}() payload at {where}: {exc}; not followed", layer.name, line)
            return
        finally:
            used.update(evaluate.used)
        for target in evaluate.files:
            if target is not None:
                self._link("exec-file", target, self._resolve_file(target), layer.name, line)
        if val is None or not isinstance(val.value, (str, bytes, _FileData)):
            # exec/compile of unknown code hides it; eval of unknown strings is
            # mostly configuration, so only report it when it looked like a payload.
            hides_code = callee.rsplit(".", 1)[-1] != "eval" or evaluate.codec_seen
            if None in evaluate.files or (hides_code and not evaluate.files):
                self._problem("unresolved", f"{callee}() at {where} runs code the auditor cannot decode statically; that code is not analysed", layer.name, line)
            return
        if isinstance(val.value, _FileData):
            return
        origin = f"{self._render(scan, call)} at {where}" + self._render_names(scan, evaluate)
        self._add_layer(layer, depth, val.value, val.steps or ("literal",), line, origin, executed=True)

    def _free_chain(self, layer: Layer, depth: int, scan: _Scan, call: cst.Call, used: set[int]) -> None:
        """A decoder call whose result is not exec'd: a layer only if it reads as code."""
        if depth >= self.limits.max_depth:
            return
        evaluate = self._evaluator(scan)
        try:
            val = evaluate(call)
        except (_Unknown, DecodeFailure):
            return
        finally:
            used.update(evaluate.used)
        text, kind = _to_text(val.value) if isinstance(val.value, bytes) else (val.value, None)
        if kind or not isinstance(text, str) or self._too_large_payload(layer, scan.line(call), val.steps, text):
            return
        if not _looks_like_code(text):
            return
        line = scan.line(call)
        origin = f"{self._render(scan, call)} at {layer.name}:{line}, decoded but not run" + self._render_names(scan, evaluate)
        self._add_layer(layer, depth, text, val.steps, line, origin, executed=False)

    def _sniff(self, layer: Layer, depth: int, scan: _Scan, literal: cst.BaseExpression) -> None:
        """A long literal no code decodes that still hides a program (e.g. decoded
        through a route we do not model): keep it visible as a non-executed layer."""
        if depth >= self.limits.max_depth or (isinstance(literal, cst.SimpleString) and len(literal.value) < 64):
            return
        try:
            value = self._evaluator(scan)(literal).value
        except (_Unknown, DecodeFailure):
            return
        if not isinstance(value, (str, bytes)) or len(value) < 64:
            return
        found = _sniff_value(value, self._budget())
        if found is None:
            return
        data, steps = found
        self._spend(len(data))
        text, kind = _to_text(data, binary_text=False)
        if kind or self._too_large_payload(layer, scan.line(literal), steps, text) or not _looks_like_code(text):
            return
        line = scan.line(literal)
        what = f"<{len(value):,}-{'byte' if isinstance(value, bytes) else 'char'} literal>"
        origin = f"{what} at {layer.name}:{line} decodes as {'>'.join(steps)} to Python source; no code decodes it statically"
        self._add_layer(layer, depth, text, steps, line, origin, executed=False)

    def _too_large_payload(self, parent: Layer, line: int, steps: tuple[str, ...], text: str) -> bool:
        """True (and a too-large problem) when a decoded payload is over the analysis caps."""
        oversize = self._oversize(text)
        if oversize:
            self._problem("too-large", f"payload at {parent.name}:{line} decodes ({'>'.join(steps)}) to {oversize}: "
                          "too large to analyse, not read", parent.name, line)
        return oversize is not None

    def _add_layer(self, parent: Layer, depth: int, value: str | bytes, steps: tuple[str, ...], line: int, origin: str, *, executed: bool) -> None:
        if isinstance(value, bytes):
            text, kind = _to_text(value, binary_text=False)
            if kind == "binary":
                self._problem("binary", f"payload at {parent.name}:{line} decodes ({'>'.join(steps)}) to binary data, not Python source", parent.name, line)
                return
            if kind == "non-utf8":
                self._problem("non-utf8", f"payload at {parent.name}:{line} decodes ({'>'.join(steps)}) to text that is not valid UTF-8", parent.name, line)
        else:
            text = value
        if self._too_large_payload(parent, line, steps, text):
            return
        child = Layer(self._layer_name(parent.name, steps), text, parent.name, line, steps, origin, executed)
        self.unit.layers.append(child)
        self.unit.analysed_chars += len(text)
        self._scan_layer(child, depth + 1)

    # -- links

    def _inside_root(self, path: Path) -> Path | None:
        if self.root is None:
            return None
        try:
            resolved = path.resolve()
            resolved.relative_to(self.root.resolve())
        except (ValueError, OSError):
            return None
        return resolved if resolved.is_file() else None

    def _resolve_file(self, target: str) -> Path | None:
        return self._inside_root(self.root / target) if self.root is not None else None

    def _resolve_module(self, module: str) -> Path | None:
        """The deepest file of ``a.b.c`` found in the record folder, if any."""
        if self.root is None or not module:
            return None
        parts = module.split(".")
        for n in range(len(parts), 0, -1):
            base = self.root.joinpath(*parts[:n])
            for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
                found = self._inside_root(candidate)
                if found is not None:
                    return found
        return None

    def _import_link(self, layer: Layer, module: str, dots: int, line: int) -> None:
        """Relative imports are always local; absolute ones only when the
        module exists in the record folder (the script's folder wins on sys.path)."""
        if dots:
            path = self._resolve_module(module) if dots == 1 else None
            self._link("import", "." * dots + module, path, layer.name, line)
            return
        path = self._resolve_module(module)
        if path is not None:
            self._link("import", module, path, layer.name, line)

    def _call_link(self, layer: Layer, scan: _Scan, call: cst.Call, callee: str) -> None:
        if not call.args:
            return
        evaluate = self._evaluator(scan)
        line = scan.line(call)
        if callee in _FILE_RUNNERS:
            target = evaluate._path(call.args[0].value)
            if target is not None:
                self._link("exec-file", target, self._resolve_file(target), layer.name, line)
            return
        try:
            module = evaluate(call.args[0].value).value
        except (_Unknown, DecodeFailure):
            return
        if isinstance(module, str):
            self._import_link(layer, module, 0, line)

    # -- origin sentences

    def _render(self, scan: _Scan, node: cst.CSTNode) -> str:
        """Code of a call chain with long literals abbreviated."""
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
            code = cst.Module([]).code_for_node(node)
            if len(code) <= 40:
                return code
            try:
                value = ast.literal_eval(f"({code})")
            except (SyntaxError, ValueError):
                return "<literal>"
            unit = "byte" if isinstance(value, bytes) else "char"
            return f"<{len(value):,}-{unit} literal>"
        if isinstance(node, cst.Call):
            args = ", ".join(
                (f"{arg.keyword.value}=" if arg.keyword else "") + self._render(scan, arg.value) for arg in node.args
            )
            return f"{self._render(scan, node.func)}({args})"
        if isinstance(node, cst.Attribute):
            return f"{self._render(scan, node.value)}.{node.attr.value}"
        code = cst.Module([]).code_for_node(node)
        return code if len(code) <= 60 else code[:57] + "..."

    def _render_names(self, scan: _Scan, evaluate: _Eval) -> str:
        shown = []
        for name, value in evaluate.names:
            text = f", with {name} = {self._render(scan, value)} (line {scan.line(value)})"
            if text not in shown:
                shown.append(text)
        return "".join(shown)


def _sniff_value(value: str | bytes, limit: int) -> tuple[bytes, tuple[str, ...]] | None:
    """Try the usual encodings, then a decompressor chosen by magic bytes."""
    candidates: list[tuple[bytes, tuple[str, ...]]] = []
    if isinstance(value, bytes):
        candidates.append((value, ()))
    compact = "".join(value.split()) if isinstance(value, str) else value
    for step, decode in (
        ("b85", base64.b85decode),
        ("b64", lambda s: base64.b64decode(s, validate=True)),
        ("b64url", lambda s: base64.b64decode(s, altchars=b"-_", validate=True)),
        ("a85", base64.a85decode),
        ("hex", lambda s: bytes.fromhex(s if isinstance(s, str) else s.decode("ascii"))),
    ):
        try:
            candidates.append((decode(compact), (step,)))
        except (ValueError, TypeError, UnicodeError):
            continue
    for data, steps in candidates:
        codec = by_magic(data)
        if codec is not None:
            step, decoder = codec
            try:
                return decoder(data, limit), steps + (step,)
            except Exception:
                continue
        if steps and data and _to_text(data)[1] is None:
            return data, steps
    return None
