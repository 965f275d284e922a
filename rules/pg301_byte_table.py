from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts import Facts, FuncInfo, dotted, string_value

_REPLACE_SPACE = re.compile(r"""replace\(\s*["']\u2581["']\s*,\s*["'] ["']\s*\)""")
_STRIPS = re.compile(r"""(\[1:\]|lstrip\(|removeprefix\(|replace\(\s*["']\u2581["']\s*,\s*["']["']\s*\))""")
_ACCUM = re.compile(r"has_leading_space\w*\s*\[")
_CHR_MARKER = re.compile(r"chr\(\s*(0x2581|9601)\s*\)")
_BPT_NAME = re.compile(r"(bytes_per_tok|bytes_per_token|avg_bytes|bpt\b|chars_per_tok)", re.I)


@register
class ByteTableBug(Rule):
    """Bugs in the token -> UTF-8 byte table that val_bpb divides by.

    What it flags:
        (1) The leading space counted in the table (the ``▁`` piece not stripped,
        or replaced by ``" "`` before ``len(.encode())``) while the accumulator
        also adds ``has_leading_space`` bytes: the space is counted twice.
        (2) Byte-fallback tokens (``sp.is_byte``) given a length other than 1.
        (3) A hard-coded bytes-per-token constant.

    Why: the ruling:
        Canonical lookup (challenge ``train_gpt.py``): strip ``▁`` and set
        ``has_leading_space``; fallback tokens are 1 byte; the space is added once,
        in the accumulator. Issue #1719: the double-counted space inflates bytes by
        about 17% and lowers val_bpb by as much.

    Legal alternative:
        ``base_bytes = len(piece.removeprefix("▁").encode("utf-8"))``,
        ``is_byte -> 1``, control/unknown/unused -> 0, and the space byte added in the
        accumulator when the previous token is not a boundary.

    Known limits:
        Reads the table builder by text patterns in the function that mentions
        ``▁`` (literally, as a string escape such as ``"\\u2581"``, or as
        ``chr(0x2581)``); tokenizers without a standalone ``▁`` (issue #897) and transformed
        text scored without a raw-byte sidecar are not detected here. The folder check of the
        same code (``auditor/checks/bytes.py``) measures instead: it walks table builders in
        every shipped code file over a test tokenizer, counts a sample text with each shipped
        ``.model``, and compares shipped ``.npz`` tables with the shipped tokenizer.
    """

    code = "PG301"
    slug = "byte-table-bug"
    severity = Severity.ILLEGAL
    conditions = ("bytes",)
    reference = "issue #1719 (space counted twice); challenge byte lookup"

    INVALID = [
        '''
import numpy as np
def build_luts(sp, vocab_size):
    base = np.zeros(vocab_size, dtype=np.int16)
    lead = np.zeros(vocab_size, dtype=bool)
    for i in range(vocab_size):
        piece = sp.id_to_piece(i)
        lead[i] = piece.startswith("\u2581")
        base[i] = len(piece.replace("\u2581", " ").encode("utf-8"))
    return base, lead

def count(tgt, prev, base, has_leading_space_lut, is_boundary):
    return (base[tgt] + (has_leading_space_lut[tgt] & ~is_boundary[prev])).sum()
''',
        '''
def build_luts(sp, n):
    base = [0] * n
    for i in range(n):
        if sp.is_byte(i):
            base[i] = 3
            continue
        base[i] = len(sp.id_to_piece(i).lstrip("\u2581").encode("utf-8"))
    return base
''',
    ]
    VALID = [
        '''
import numpy as np
def build_luts(sp, vocab_size):
    base = np.zeros(vocab_size, dtype=np.int16)
    lead = np.zeros(vocab_size, dtype=bool)
    for i in range(vocab_size):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, lead

def count(tgt, prev, base, has_leading_space_lut, is_boundary):
    return (base[tgt] + (has_leading_space_lut[tgt] & ~is_boundary[prev])).sum()
''',
        # escaped spelling, stripped before counting
        '''
def build_luts(sp, n):
    base, lead = [0] * n, [False] * n
    for i in range(n):
        piece = sp.id_to_piece(i)
        if piece.startswith("\\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, lead

def count(tgt, prev, base, has_leading_space_lut, is_boundary):
    return (base[tgt] + (has_leading_space_lut[tgt] & ~is_boundary[prev])).sum()
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        accum_lines = [i + 1 for i, ln in enumerate(facts.lines) if _ACCUM.search(ln) and "+" in ln]
        for fi in facts.funcs:
            body = _body_text(facts, fi)
            if "\u2581" not in body or ".encode(" not in body:
                continue
            enc_line = next((i for i in range(fi.start, fi.end + 1)
                             if "len(" in facts.lines[i - 1] and ".encode(" in facts.lines[i - 1]), fi.start)
            outside = [ln for ln in accum_lines if not (fi.start <= ln <= fi.end)]
            if outside and (_REPLACE_SPACE.search(body) or not _STRIPS.search(body)):
                yield Hit(None, f"byte table in `{fi.qualname}` counts the leading space (line {enc_line}) and "
                          f"the accumulator adds it again (line {outside[0]}): bytes inflated, val_bpb too low",
                          lines=(enc_line, enc_line), ctx=fi.ctx,
                          evidence=facts.line_text(enc_line) + facts.line_text(outside[0]),
                          key=f"space twice {fi.qualname}")
        for node, line, ctx in facts.ifs:
            if "is_byte" not in facts.code(node.test):
                continue
            for ai in facts.assigns:
                if ai.ctx.func is ctx.func and node.body and facts.span(node.body)[0] <= ai.line <= \
                        facts.span(node.body)[1] and isinstance(ai.value, cst.Integer) and ai.value.evaluated_value != 1:
                    yield Hit(ai.node, f"byte-fallback tokens counted as {ai.value.evaluated_value} bytes "
                              f"(should be 1)", ctx=ai.ctx, key="fallback bytes")
        for ai in facts.assigns:
            tn = " ".join(dotted(t) for t in ai.targets)
            if ai.op == "=" and _BPT_NAME.search(tn) and isinstance(ai.value, (cst.Float, cst.Integer)) \
                    and ai.value.evaluated_value != 0:  # ``avg_bytes = 0``: an accumulator starts
                yield Hit(ai.node, f"hard-coded bytes per token `{tn} = {facts.code(ai.value)}`: val_bpb must "
                          f"divide by the bytes the scored tokens decode to", ctx=ai.ctx, key=f"bpt {tn}")


def _body_text(facts: Facts, fi: FuncInfo) -> str:
    """The function's source with string literals that evaluate to text holding the
    piece marker written out as the character: ``"\\u2581"``, ``"\\N{LOWER ONE EIGHTH
    BLOCK}"`` and ``chr(0x2581)`` read as ``"▁"``."""
    body = "\n".join(facts.lines[fi.start - 1:fi.end])
    seen: set[str] = set()
    for node in facts.subtree_of(fi.node, cst.SimpleString):
        raw = facts.code(node)
        if raw in seen:
            continue
        seen.add(raw)
        try:
            val = string_value(node)
        except Exception:
            continue
        if isinstance(val, str) and "\u2581" in val and raw != val:
            body = body.replace(raw, '"' + val + '"')
    return _CHR_MARKER.sub('"\u2581"', body)
