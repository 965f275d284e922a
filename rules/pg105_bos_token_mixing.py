from __future__ import annotations

import io
import re
import tokenize
from typing import Iterator

import libcst as cst

from auditor.findings import Severity

from .engine import Hit, Rule, register
from .facts import Facts, base_name, dotted, iter_nodes

_MASK_RE = re.compile(r"(bos|doc_start|is_start|boundary|reset|cu_seqlens|seq_start|doc_mask|segment|doc_id)",
                      re.I)
_ISOLATION_RE = re.compile(
    r"(cu_seqlens|varlen|==\s*bos\w*|bos_id|bos_token|doc_starts|doc_bounds|per_doc|split_docs|"
    r"documents?\b.*bos|nonzero\(\).*bos)", re.I)
# concatenations that build the previous-position tensor, by import-resolved name
# (``F.pad`` also for snippets that do not import ``F``)
_SHIFT_FUNCS = {"torch.cat", "torch.concat", "torch.nn.functional.pad", "F.pad"}
_IDS_RE = re.compile(r"(ids|tok|idx|index|input)", re.I)


def _code_only(text: str) -> str:
    """The region's code without comments and string literals: a comment that
    says "BOS" is not a mask. Falls back to the raw text if it won't tokenize."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(text).readline)
        return " ".join(t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.sub(r"#.*", "", text)


def _shift_bases(facts: Facts, node: cst.CSTNode) -> list[str]:
    """Bases ``B`` sliced as ``B[..., :-1]`` (the previous position) inside ``node``."""
    out = []
    for s in iter_nodes(node):
        if not isinstance(s, cst.Subscript):
            continue
        for el in s.slice:
            sl = el.slice
            if isinstance(sl, cst.Slice) and sl.lower is None and sl.upper is not None and \
                    facts.code(sl.upper).replace(" ", "") == "-1":
                out.append(dotted(s.value) or base_name(s.value))
    return out


@register
class BosTokenMixing(Rule):
    """Token-mixing across the BOS boundary in a document-isolated evaluation.

    What it flags:
        A SmearGate-style mix of a hidden state with its previous position
        (``x[:, 1:] + g * x[:, :-1]``, ``torch.cat([.., x[:, :-1]], 1)`` blended
        with ``x``) in a function or class with no BOS mask, in a file whose
        evaluation isolates documents (splits at BOS, ``cu_seqlens`` / varlen
        attention, per-document batches).

    Why: the ruling:
        PR #1797 audit (fix merged in #1851): when documents are isolated, the
        previous row's last token leaks into the BOS position of the next document
        (+0.0026 bpb on #1797); with reordered rows the neighbour is not even the
        stream predecessor (C1).

    Legal alternative:
        Zero the gate where ``input_ids[:, 1:] == BOS`` (or reset the state at
        document starts); or evaluate the stream without isolating documents.

    Known limits:
        The mask is recognised by names mentioning BOS / boundaries / cu_seqlens in
        the mixing function or class; document isolation by patterns anywhere in the
        file. Token-id hashes (BigramHash) are not token mixing and are ignored;
        recurrent state and convolutions are not analysed.
    """

    code = "PG105"
    slug = "bos-token-mixing"
    severity = Severity.ILLEGAL
    conditions = ("C1",)
    reference = "openai/parameter-golf PR #1797 audit, fix in PR #1851"

    INVALID = [
        '''
import torch
class SmearGate(torch.nn.Module):
    """Blends each position with the previous one (BOS handled upstream)."""
    def __init__(self, dim):
        super().__init__()
        self.gate = torch.nn.Parameter(torch.zeros(dim))
    def forward(self, x):
        g = torch.sigmoid(self.gate)  # the BOS boundary is safe here, trust me
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)

def eval_docs(model, val_tokens, bos_id):
    starts = (val_tokens == bos_id).nonzero().flatten().tolist()
    return [model(val_tokens[a:b]) for a, b in zip(starts, starts[1:])]
''',
        '''
import torch
class SmearGate(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gate = torch.nn.Parameter(torch.zeros(dim))
    def forward(self, x):
        g = torch.sigmoid(self.gate)
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)

def eval_docs(model, val_tokens, bos_id):
    starts = (val_tokens == bos_id).nonzero().flatten().tolist()
    return [model(val_tokens[a:b]) for a, b in zip(starts, starts[1:])]
''',
        '''
import torch
def smear(h, lam):
    prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
    return h + lam * prev

def run(model, batch, cu_seqlens):
    return model(batch, cu_seqlens=cu_seqlens)
''',
        # the shifted copy built by an aliased ``pad``
        '''
import torch
import torch.nn.functional as Fn
def smear(h, lam):
    prev = Fn.pad(h[:, :-1], (0, 0, 1, 0))
    return h + lam * prev

def run(model, batch, cu_seqlens):
    return model(batch, cu_seqlens=cu_seqlens)
''',
    ]
    VALID = [
        # BOS-masked smear
        '''
import torch
BOS_ID = 1
class SmearGate(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gate = torch.nn.Parameter(torch.zeros(dim))
    def forward(self, x, input_ids):
        g = torch.sigmoid(self.gate) * (input_ids[:, 1:] != BOS_ID)[..., None]
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)

def eval_docs(model, val_tokens, bos_id):
    starts = (val_tokens == bos_id).nonzero().flatten().tolist()
    return [model(val_tokens[a:b]) for a, b in zip(starts, starts[1:])]
''',
        # no document isolation: the stream predecessor is legal context
        '''
import torch
def smear(x, g):
    return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
''',
        # a comment about document isolation is not document isolation
        '''
import torch
# we do not use cu_seqlens: the stream is scored without splitting at BOS
def smear(x, g):
    return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
''',
        # input/target split and a token-id bigram hash are not mixing
        '''
def batches(chunk, table):
    x, y = chunk[:, :-1], chunk[:, 1:]
    h = (x[:, :-1] * 36313) ^ x[:, 1:]
    return x, y, table[h % 4096]

def doc_starts(val_tokens, bos_id):
    return (val_tokens == bos_id).nonzero()
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        if not _ISOLATION_RE.search(_code_only(facts.text)):  # "# no cu_seqlens here" is not isolation
            return
        # prev = cat([.., h[:, :-1]]) in a function -> (line, h); `x = cat(.., x[:, :-1])` rebinds
        # x to the mixed result, which is not the previous position
        shifted_names: dict[tuple, tuple[int, str]] = {}
        for ai in facts.assigns:
            if ai.op == "=" and ai.value is not None and isinstance(ai.value, cst.Call):
                bases = _shift_bases(facts, ai.value)
                if bases and facts.resolve(dotted(ai.value.func)) in _SHIFT_FUNCS:
                    for t in ai.targets:
                        if dotted(t) != bases[0]:
                            shifted_names[(ai.ctx.func, dotted(t))] = (ai.line, bases[0])
        seen: set = set()
        for b, line, ctx in facts.binops:
            if not isinstance(b.operator, (cst.Add, cst.Subtract, cst.Multiply)):
                continue
            if isinstance(b.operator, cst.Multiply) and any(
                    isinstance(o, (cst.Integer, cst.Float)) for o in (b.left, b.right)):
                continue  # hashing / scaling by a constant, not a blend
            names = facts.names(b)
            bases = [x for x in _shift_bases(facts, b) if x and x in names]
            shifted = [shifted_names.get((ctx.func, n)) for n in names]
            bases += [base for sh in shifted if sh and sh[0] < line and (base := sh[1]) in names]
            bases = [x for x in bases if not _IDS_RE.search(x)]
            if not bases:
                continue
            if _masked(facts, b, line, ctx):
                continue
            key = (ctx.cls, ctx.func, bases[0])
            if key in seen:
                continue
            seen.add(key)
            yield Hit(b, f"`{facts.code(b).strip()[:70]}` mixes position t-1 of `{bases[0]}` into position t "
                      f"with no BOS mask, while the evaluation isolates documents: the previous "
                      f"document's last token leaks into each BOS position (C1)", ctx=ctx,
                      key=f"bos smear {bases[0]}")



def _masked(facts: Facts, mix: cst.BinaryOperation, line: int, ctx) -> bool:
    """A BOS / boundary mask reaches the mix: in its own statement's code, or in a value it
    reads, followed through the function's assignments (``g = g * bos_mask``; ``keep =
    (ids[:, 1:] != self.bos_id)``). A mask elsewhere in the class (``cu_seqlens`` handed to
    attention) does not stop this mix from leaking."""
    a, b = facts.span(mix)
    if _MASK_RE.search(_code_only("\n".join(facts.lines[a - 1:b]))):
        return True
    func = ctx.func
    if func is None:
        return bool(_MASK_RE.search(_code_only(facts.text)))
    todo, seen = list(facts.names(mix)), set()
    for ai in facts.assigns:  # the whole statement: `(g * x[:, :-1]) * keep`
        if ai.ctx.func is func and ai.value is not None and ai.line <= a and b <= ai.end:
            todo.extend(facts.names(ai.value))
    while todo and len(seen) < 50:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if _MASK_RE.search(name):
            return True
        for dline, value in func.defs.get(name, ()):
            if value is None or dline > line:
                continue
            if _MASK_RE.search(_code_only(facts.code(value))):
                return True
            todo.extend(facts.names(value))
    return False
