"""PG301 measured: the bytes val_bpb divides by, checked against the tokenizer's data.

Three measurements, none of which runs submission code:

- every byte-table builder in any shipped code file is walked over a test
  tokenizer (auditor.checks.tablesim) and its numbers compared per piece kind
  with the canonical table (RULEBOOK.md: bytes in val_bpb; reference_impl.bytes);
- every shipped sentencepiece ``.model`` is loaded and a sample text is counted
  with the canonical table: the count must equal the text's UTF-8 bytes (a
  tokenizer without a standalone ``▁`` spends 3 fallback bytes on a bare space);
- every shipped ``.npz`` holding per-token byte counts is compared, id by id, with
  the canonical counts of the shipped tokenizer (sentencepiece ``.model`` or a
  TokenMonster ``.vocab``); a table with no tokenizer to check it against, or a
  table file the code loads but the folder does not ship, is a warning.

Known limits: tables built by code outside the interpreter's subset (loops over
something other than ids, helper calls) are not measured; the accumulator is
recognised by its shape (``lead[t] & ~boundary[prev]`` added to a count); a
TokenMonster token holding capcode markers is not checked.
"""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path, PurePosixPath

from auditor.checks import tablesim
from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity
from auditor.record import Record

BYTE_TABLE = CheckRule(
    "PG301",
    "byte-table-bug",
    "The bytes val_bpb divides by match the canonical count on the tokenizer used.",
    "RULEBOOK.md: bytes in val_bpb (issue #1719; issue #897)",
)

MAX_CODE_BYTES = 2 * 2**20
MAX_DATA_BYTES = 64 * 2**20
SAMPLE_TEXT = (
    "The quick brown fox, 42 years old, jumps over the lazy dog. \"Caf\u00e9\" costs $3.50 (1 2 3) - "
    "it's here; na\u00efve r\u00e9sum\u00e9 \u2014 done! x = y + z. http://example.com/a_b?c=d "
    "Line two: 100% of 7 items, e.g. [a, b] and {c}."
)


def check(record: Record) -> list[Finding]:
    try:
        return _check(record)
    except Exception as exc:  # never a crash on input: say what was not measured
        return [BYTE_TABLE.finding(Severity.INFO, f"the byte tables could not be measured ({type(exc).__name__}: {exc})",
                                   None, key="bytes-error")]


def _check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    trees = _code_trees(record)
    findings += _code_tables(trees)
    tokenizers = _shipped_tokenizers(record, findings)
    findings += _shipped_tables(record, tokenizers)
    findings += _unshipped_tables(record, trees)
    return findings


# ------------------------------------------------------------------ code tables


def _code_trees(record: Record) -> list[tuple[str, str, ast.AST]]:
    """(file, layer, tree) for every shipped code file the loader read, plus other .py files."""
    out: list[tuple[str, str, ast.AST]] = []
    seen: set[str] = set()
    units = ([record.script] if record.script else []) + list(record.linked)
    for unit in units:
        seen.add(unit.name)
        for layer in unit.effective_layers:
            tree = unit.ast_trees.get(layer.name) or _parse(layer.text)  # the unpacker's parse, if it kept one
            if tree is not None:
                out.append((unit.name, layer.name, tree))
    if record.code_only:
        return out
    for name in record.files:
        if not name.endswith(".py") or name in seen or Path(name).name in seen:
            continue
        path = record.root / name
        try:
            if path.stat().st_size > MAX_CODE_BYTES:
                continue
            text = path.read_text("utf-8", errors="replace")
        except OSError:
            continue
        tree = _parse(text)
        if tree is not None:
            out.append((name, "shipped", tree))
    return out


def _parse(text: str):
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _adds_space_flag(trees) -> bool:
    """Somewhere a count adds ``lead[t] & ~boundary[prev]``: the canonical accumulator's space byte."""
    for _f, _l, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
                if any(isinstance(s, ast.UnaryOp) and isinstance(s.op, (ast.Invert, ast.Not))
                       for s in (node.left, node.right)):
                    return True
    return False


def _code_tables(trees) -> list[Finding]:
    findings: list[Finding] = []
    base_c, lead_c, bound_c = tablesim.canonical()
    kinds = [k for _p, k in tablesim.TEST_PIECES]
    accum = None
    for fname, layer, tree in trees:
        for func in tablesim.find_builders(tree):
            tables = tablesim.simulate_builder(func)
            if not tables:
                continue
            base = next((t for t in tables if any(not isinstance(x, bool) and x not in (0, 1) for x in t)), None)
            if base is None:
                continue
            lead = next((t for t in tables if t is not base and [bool(x) for x in t] == lead_c), None)
            bound = next((t for t in tables if t is not base and t is not lead and all(x in (0, 1) for x in t)), None)
            problems = []
            illegal = False
            lead_ids = [i for i, k in enumerate(kinds) if k == "n" and lead_c[i]]
            if lead is not None and lead_ids and all(base[i] == base_c[i] + 1 for i in lead_ids):
                if accum is None:
                    accum = _adds_space_flag(trees)
                problems.append("the leading space is in the table (+1 on every \u2581 piece)"
                                + (" and the accumulator adds it again: the space is counted twice" if accum
                                   else " while the table also flags it as a leading space"))
                illegal = illegal or accum
            elif lead is None and lead_ids and all(base[i] == base_c[i] + 1 for i in lead_ids):
                if accum is None:
                    accum = _adds_space_flag(trees)
                if accum:  # the space is in this table and the code's accumulator adds a space byte too
                    problems.append("the leading space is in the table (+1 on every \u2581 piece) and an "
                                    "accumulator adds a space byte as well: the space is counted twice")
                    illegal = True
            byte_vals = sorted({base[i] for i, k in enumerate(kinds) if k == "b"})
            if byte_vals != [1]:
                problems.append(f"byte-fallback pieces count {', '.join(map(str, byte_vals))} bytes, not 1")
                illegal = True
            other = [i for i, k in enumerate(kinds) if k == "n" and i not in lead_ids and base[i] != base_c[i]]
            if other:
                problems.append("plain pieces count " + ", ".join(
                    f"{tablesim.TEST_PIECES[i][0]!r}: {base[i]} (canonical {base_c[i]})" for i in other))
                illegal = True
            ctrl = sorted({base[i] for i, k in enumerate(kinds) if k in "cu"} - {0})
            if ctrl:
                problems.append(f"control/unknown ids count {', '.join(map(str, ctrl))} bytes, not 0")
            if not problems:
                continue
            pct = _stream_error(base, lead or lead_c, bound or bound_c, accum is not False)
            line = getattr(func, "lineno", None)
            findings.append(BYTE_TABLE.finding(
                Severity.ILLEGAL if illegal else Severity.WARNING,
                f"byte table `{func.name}` ({fname}), measured on a test tokenizer: " + "; ".join(problems)
                + f". On a test stream the denominator is {pct:+.1f}% off the canonical count, "
                "so val_bpb is off by as much",
                Location(fname, line, line, layer),
                evidence=[f"{p!r} ({k}): table {b}, canonical {c}"
                          for (p, k), b, c in zip(tablesim.TEST_PIECES, base, base_c) if b != c][:8],
                key=f"code-table:{fname}:{func.name}",
            ))
    return findings


def _stream_error(base, lead, bound, accum: bool) -> float:
    """Relative denominator error on a stream of the test tokenizer's pieces."""
    base_c, lead_c, bound_c = tablesim.canonical()
    kinds = [k for _p, k in tablesim.TEST_PIECES]
    stream = [1] + [i for i, k in enumerate(kinds) if k in "nb"] * 3
    got = want = 0
    for prev, t in zip(stream, stream[1:]):
        want += base_c[t] + (1 if lead_c[t] and not bound_c[prev] else 0)
        got += base[t] + (1 if accum and lead[t] and not bound[prev] else 0)
    return 100.0 * (got - want) / max(want, 1)


# ------------------------------------------------------------ shipped tokenizers


class _Tok:
    """A shipped tokenizer's canonical per-id bytes (None where unchecked)."""

    def __init__(self, name: str, base: list, lead: list | None, sp=None):
        self.name, self.base, self.lead, self.sp = name, base, lead, sp


def _shipped_tokenizers(record: Record, findings: list[Finding]) -> list[_Tok]:
    toks: list[_Tok] = []
    if record.code_only:
        return toks
    for name in record.files:
        low = name.lower()
        if low.endswith(".model"):
            tok = _load_sentencepiece(record.root / name, name, findings)
            if tok is not None:
                toks.append(tok)
                findings += _bare_space(tok)
        elif low.endswith(".vocab"):
            tok = _load_tokenmonster(record.root / name, name)
            if tok is not None:
                toks.append(tok)
    return toks


def _read(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > MAX_DATA_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _load_sentencepiece(path: Path, name: str, findings: list[Finding]) -> _Tok | None:
    data = _read(path)
    if data is None:
        return None
    try:
        import sentencepiece as spm

    except ImportError:
        findings.append(BYTE_TABLE.finding(
            Severity.INFO, f"{name}: sentencepiece is not installed here, so the tokenizer was not measured",
            Location(name), key=f"no-spm:{name}"))
        return None
    try:
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(data)
        if sp.vocab_size() <= 0:
            raise ValueError("no pieces")
    except Exception as exc:  # a .model that is not a sentencepiece model
        findings.append(BYTE_TABLE.finding(
            Severity.WARNING,
            f"{name} is not a readable sentencepiece model ({type(exc).__name__}); the byte count of its "
            "tokens cannot be checked",
            Location(name), key=f"bad-model:{name}"))
        return None
    tables = canonical_tables(sp)
    if tables is None:
        findings.append(BYTE_TABLE.finding(
            Severity.INFO, f"{name}: the reference byte table needs torch, not installed here; not measured",
            Location(name), key=f"no-torch:{name}"))
        return None
    base, lead, _bound = tables
    return _Tok(name, [int(x) for x in base], [bool(x) for x in lead], sp)


def canonical_tables(sp):
    """The reference implementation's (base, leading space, boundary) as lists, or None without torch."""
    try:
        from reference_impl.bytes import build_byte_tables
    except ImportError:
        return None
    return tuple(t.tolist() for t in build_byte_tables(sp))


def _bare_space(tok: _Tok) -> list[Finding]:
    """Count a sample text with the canonical table on this tokenizer; it must equal the text's bytes."""
    sp = tok.sp
    try:
        base, lead, bound = canonical_tables(sp)
        ids = sp.encode(SAMPLE_TEXT)
        text = sp.decode(ids)
    except Exception:
        return []
    counted, prev = 0, None
    for t in ids:
        counted += int(base[t]) + (1 if lead[t] and prev is not None and not bound[prev] else 0)
        prev = t
    true = len(text.replace(tablesim.MARK, " ").encode("utf-8"))
    if true == 0 or abs(counted - true) <= max(1, 0.005 * true):
        return []
    mark = sp.piece_to_id(tablesim.MARK)
    no_mark = (sp.is_unknown(mark) or sp.is_control(mark) or sp.is_unused(mark)
               or sp.id_to_piece(mark) != tablesim.MARK)
    why = ""
    if no_mark:
        space_ids = sp.encode(" 1")
        pieces = [sp.id_to_piece(i) for i in space_ids]
        why = (f"the tokenizer has no standalone \u2581 piece, so a bare space becomes {pieces[:4]} "
               f"and the canonical table counts it as {sum(int(base[i]) for i in space_ids[:3])} bytes; ")
    return [BYTE_TABLE.finding(
        Severity.ILLEGAL,
        f"{tok.name}: {why}a {true}-byte sample text counts {counted} bytes with the canonical table "
        f"({100.0 * (counted - true) / true:+.1f}%), so val_bpb on this tokenizer is off by as much",
        Location(tok.name), key=f"sample:{tok.name}")]


def _load_tokenmonster(path: Path, name: str) -> _Tok | None:
    """A TokenMonster binary vocabulary: per id, the token's bytes.

    Only the leading run of records whose stored id is their position is read (the
    single- and two-byte tokens, where byte fallbacks live); later records and tokens
    holding capcode markers stay unchecked (None)."""
    data = _read(path)
    if data is None or len(data) < 40 or data[:1] == b"<":
        return None
    capcode = data[2] != 0
    n = int.from_bytes(data[11:14], "little")
    if not 0 < n <= 1_000_000:
        return None
    base: list = [None] * n
    p = 24
    for j in range(n):
        if p >= len(data):
            break
        k = data[p]
        end = p + 12 + k
        if end + 4 > len(data) or int.from_bytes(data[p + 9 + k:end], "little") != j:
            break
        tok = data[p + 1:p + 1 + k]
        if k and not (capcode and any(c in tok for c in b"CDW")):
            base[j] = len(tok)
        p += k + 16
    return _Tok(name, base, None) if sum(b is not None for b in base) >= 16 else None


# --------------------------------------------------------------- shipped tables


def _npz_arrays(path: Path):
    import numpy as np

    data = _read(path)
    if data is None:
        raise ValueError("unreadable or too large")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _shipped_tables(record: Record, toks: list[_Tok]) -> list[Finding]:
    findings: list[Finding] = []
    if record.code_only:
        return findings
    for name in record.files:
        if not name.lower().endswith(".npz"):
            continue
        try:
            arrays = _npz_arrays(record.root / name)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            findings.append(BYTE_TABLE.finding(
                Severity.WARNING, f"{name} cannot be read as a numpy .npz ({exc}); if it holds the byte "
                "table, the denominator cannot be checked", Location(name), key=f"bad-npz:{name}"))
            continue
        table = _byte_array(arrays)
        if table is None:
            continue
        key, base = table
        lead = next((a for k, a in arrays.items() if k != key and a.dtype == bool and a.shape == base.shape), None)
        tok = next((t for t in toks if len(t.base) == len(base)), None)
        if tok is None:
            findings.append(BYTE_TABLE.finding(
                Severity.WARNING,
                f"{name} holds a per-token byte table ({key}, {len(base)} ids) but no shipped tokenizer has "
                f"{len(base)} pieces; the denominator cannot be checked",
                Location(name), key=f"unchecked-npz:{name}"))
            continue
        findings += _compare(name, key, base, lead, tok)
    return findings


def _byte_array(arrays) -> tuple[str, object] | None:
    """The per-token byte counts: a 1-D integer array of small non-negative numbers."""
    for k, a in arrays.items():
        if a.ndim == 1 and a.size >= 16 and a.dtype.kind in "iu" and a.min() >= 0 and a.max() <= 64:
            return k, a
    return None


def _compare(name: str, key: str, base, lead, tok: _Tok) -> list[Finding]:
    wrong: list[tuple[int, int, int]] = []
    for i, want in enumerate(tok.base):
        if want is None:
            continue
        got = int(base[i])
        has_space = tok.lead[i] if tok.lead is not None else False
        if lead is not None and tok.lead is None and bool(lead[i]):
            want = want - 1 if want > 0 else want  # table excludes a space it flags
        if got != want:
            wrong.append((i, got, want))
        elif has_space and lead is not None and not bool(lead[i]):
            wrong.append((i, got, want))
    if not wrong:
        return []
    extra = sum(g - w for _i, g, w in wrong)
    checked = sum(1 for w in tok.base if w is not None)
    ids = [i for i, _g, _w in wrong]
    span = f"{ids[0]}-{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else ", ".join(map(str, ids[:12]))
    return [BYTE_TABLE.finding(
        Severity.ILLEGAL,
        f"{name}: the shipped byte table `{key}` disagrees with {tok.name} on {len(wrong)} of {checked} ids "
        f"({span}): e.g. id {wrong[0][0]} stored as {wrong[0][1]} bytes, canonical {wrong[0][2]}; "
        f"{extra:+d} bytes summed over those ids, so every occurrence moves the val_bpb denominator",
        Location(name),
        evidence=[f"id {i}: table {g}, canonical {w}" for i, g, w in wrong[:8]],
        key=f"npz:{name}")]


# ----------------------------------------------------------- unshipped tables


def _unshipped_tables(record: Record, trees) -> list[Finding]:
    """A file loaded by a literal path, read for byte counts, that the folder does not ship
    (or that lies outside the folder, whatever the folder ships under that name)."""
    if record.code_only:
        return []
    shipped = {Path(f).name for f in record.files}
    findings: list[Finding] = []
    for fname, _layer, tree in trees:
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            keys = {n.slice.value for n in ast.walk(func) if isinstance(n, ast.Subscript)
                    and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str)}
            if not any("byte" in k.lower() for k in keys):
                continue
            for node in ast.walk(func):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "load" and node.args):
                    continue
                lit = _literal_path(node.args[0])
                if not lit or not lit.endswith((".npz", ".json", ".npy", ".pt")):
                    continue
                outside = PurePosixPath(lit).is_absolute() or ".." in PurePosixPath(lit).parts
                if outside or Path(lit).name not in shipped:
                    where = "a path outside the record folder" if outside else "which the folder does not ship"
                    findings.append(BYTE_TABLE.finding(
                        Severity.WARNING,
                        f"`{func.name}` ({fname}) reads byte counts from {lit}, {where}: "
                        "the val_bpb denominator cannot be checked",
                        Location(fname, node.lineno, node.lineno), key=f"unshipped:{lit}"))
    return findings


def _literal_path(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and node.args:  # Path("x.npz"), open("x.npz", "rb")
        return _literal_path(node.args[0])
    return None
