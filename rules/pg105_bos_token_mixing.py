from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts import Facts, base_name, documents, dotted, iter_nodes

# a mask handed to the mixing function as a parameter (computed by its caller)
_MASK_RE = re.compile(r"(bos|doc_start|is_start|boundary|doc_mask|segment|doc_id|keep)", re.I)
# concatenations that build the previous-position tensor, by import-resolved name
# (``F.pad`` also for snippets that do not import ``F``)
_SHIFT_FUNCS = {"torch.cat", "torch.concat", "torch.nn.functional.pad", "F.pad"}
_IDS_RE = re.compile(r"(ids|tok|idx|index|input)", re.I)


def _shift_bases(facts: Facts, node: cst.CSTNode) -> list[str]:
    """Bases ``B`` sliced as ``B[..., :-1]`` (the previous position) inside ``node``."""
    out = []
    for s in facts.subtree_of(node, cst.Subscript):
        for el in s.slice:
            sl = el.slice
            if type(sl) is cst.Slice and sl.lower is None and sl.upper is not None and \
                    facts.code(sl.upper).replace(" ", "") == "-1":
                out.append(dotted(s.value) or base_name(s.value))
    return out


@register
class BosTokenMixing(Rule):
    """Token mixing across the BOS boundary of documents packed in one row.

    What it flags:
        A SmearGate-style mix of a hidden state with its previous position
        (``x[:, 1:] + g * x[:, :-1]``, ``torch.cat`` / ``F.pad`` of ``x[:, :-1]``
        blended with ``x``) with no document-start mask, when the evaluation can
        put the end of one document and the start of the next in the same row and
        tells the model where they split: a call hands the model a validation row
        together with boundaries derived from where the row's tokens equal a token
        id (``cu_seqlens`` for varlen attention, document ids, a block mask), and
        that descriptor reaches the mixing function or a function that runs it.
        Also: a model that splits its own rows at BOS (an equality test of its
        token-id parameter) fed windows of the flat validation stream; and rows
        concatenated from documents after sorting them (length-sorted packing),
        where each document follows an unrelated one.
        Rows that each hold one document (spans found at BOS, one per row, padded,
        position 0 kept or zero-padded) get no finding, nor does a flat stream
        scored without boundaries (the predecessor is legal context). A shift built
        with ``torch.roll`` along the sequence is flagged in any structure: it wraps
        the row's last token into position 0.

    Why: the ruling:
        PR #1797 audit (fix merged in #1851): when packed documents are isolated
        (varlen attention), the previous document's last token leaks into the BOS
        position of the next (+0.0026 bpb on #1797); with reordered rows the
        neighbour is not even the stream predecessor (C1).

    Legal alternative:
        Zero the gate where ``input_ids[:, 1:] == BOS`` (or reset the state at
        document starts); evaluate one document per row; or score the stream
        without isolating documents.

    Known limits:
        The model call is linked to the mixing function through the descriptor's
        keyword or position and the call graph by name, not through the type of
        the variable holding the model. A mask computed inside the mixing function
        is any equality test of token ids reaching the mix; one handed in as a
        parameter is recognised by its name (bos, boundary, doc_mask, keep...).
        Shifts of tensors whose names say token ids (``ids``, ``tok``, ``idx``,
        ``input``) are taken as input/target splits or token hashes, not mixing.
        Documents concatenated in stream order with no descriptor (full attention)
        are not flagged: the neighbour is the stream predecessor, which attention
        sees too. A model held in a variable is taken to run the mix when the call
        resolves to no function of this file nor to a library. Rows filled item by
        item into a zero tensor are not followed as rows. The data-flow facts are
        flow-insensitive within a function. Whether the packed evaluation is the
        one behind the headline is left to reachability (a diagnostic evaluation
        that runs by default counts). Recurrent state and convolutions are not
        analysed.
    """

    code = "PG105"
    slug = "bos-token-mixing"
    severity = Severity.ILLEGAL
    conditions = ("C1",)
    reference = "openai/parameter-golf PR #1797 audit, fix in PR #1851"

    INVALID = [
        # varlen packing: cu_seqlens from the row's BOS positions, smear unmasked (line 7)
        '''
import torch
class GPT(torch.nn.Module):
    def forward(self, ids, cu_seqlens=None):
        x = self.emb(ids)
        g = torch.sigmoid(self.gate(x[:, 1:]))
        x = torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
        return self.blocks(x, cu_seqlens)

def eval_val(model, val_tokens, seq_len):
    for i in range(0, val_tokens.numel() - 1, seq_len):
        x = val_tokens[i:i + seq_len]
        starts = (x == 1).nonzero().flatten()
        cu = torch.cat([starts, torch.tensor([x.numel()])]).int()
        model(x[None], cu_seqlens=cu)
''',
        # a packed stream with document ids for a block-diagonal mask, zero-padded shift (line 8)
        '''
import torch
import torch.nn.functional as F
class GPT(torch.nn.Module):
    def forward(self, ids, doc):
        h = self.emb(ids)
        prev = F.pad(h[:, :-1], (0, 0, 1, 0))
        h = h + self.lam * prev
        return self.attn(h, doc[:, :, None] == doc[:, None, :])

def eval_val(model, val_tokens, seq_len):
    rows = val_tokens[: (val_tokens.numel() // seq_len) * seq_len].view(-1, seq_len)
    doc = torch.cumsum(rows == 1, dim=1)
    return model(rows, doc)
''',
    ]
    VALID = [
        # the same varlen packing with the gate zeroed at BOS
        '''
import torch
class GPT(torch.nn.Module):
    def forward(self, ids, cu_seqlens=None):
        x = self.emb(ids)
        g = torch.sigmoid(self.gate(x[:, 1:])) * (ids[:, 1:] != 1)[..., None]
        x = torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
        return self.blocks(x, cu_seqlens)

def eval_val(model, val_tokens, seq_len):
    for i in range(0, val_tokens.numel() - 1, seq_len):
        x = val_tokens[i:i + seq_len]
        starts = (x == 1).nonzero().flatten()
        cu = torch.cat([starts, torch.tensor([x.numel()])]).int()
        model(x[None], cu_seqlens=cu)
''',
        # one document per row, found at BOS, zero-padded shift: nothing crosses a boundary
        '''
import torch
class SmearGate(torch.nn.Module):
    def forward(self, x):
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        return x + self.g * prev

def eval_docs(model, val_tokens, bos_id):
    starts = (val_tokens == bos_id).nonzero().flatten().tolist() + [val_tokens.numel()]
    return [model(val_tokens[a:b][None]) for a, b in zip(starts, starts[1:])]
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        # prev = cat([.., h[:, :-1]]) / roll(h, 1, 1) in a function -> (line, h, rolled); `x = cat(.., x[:, :-1])`
        # rebinds x to the mixed result, which is not the previous position
        shifted_names: dict[tuple, tuple[int, str, bool]] = {}
        for ai in facts.assigns:
            if ai.op == "=" and ai.value is not None and type(ai.value) is cst.Call:
                rolled = _rolled_base(facts, ai.value)
                bases = [rolled] if rolled else _shift_bases(facts, ai.value)
                if bases and (rolled or facts.resolve(dotted(ai.value.func)) in _SHIFT_FUNCS):
                    for t in ai.targets:
                        if dotted(t) != bases[0]:
                            shifted_names[(ai.ctx.func, dotted(t))] = (ai.line, bases[0], bool(rolled))
        seen: set = set()
        for b, line, ctx in facts.binops:
            if type(b.operator) not in (cst.Add, cst.Subtract, cst.Multiply):
                continue
            if type(b.operator) is cst.Multiply and any(
                    type(o) in (cst.Integer, cst.Float) for o in (b.left, b.right)):
                continue  # hashing / scaling by a constant, not a blend
            names = facts.names(b)
            bases = [(x, False) for x in _shift_bases(facts, b) if x and x in names]
            shifted = [shifted_names.get((ctx.func, n)) for n in names]
            bases += [(sh[1], sh[2]) for sh in shifted if sh and sh[0] < line and sh[1] in names]
            bases = [x for x in bases if not _IDS_RE.search(x[0])]
            if not bases or ctx.func is None:
                continue
            base, rolled = bases[0]
            key = (ctx.cls, ctx.func, base)
            if key in seen or _masked(facts, b, line, ctx):
                continue
            if rolled:
                if _first_position_reset(facts, ctx.func, base, line, names):
                    continue
                seen.add(key)
                yield Hit(b, f"`{facts.code(b).strip()[:70]}` mixes a rolled copy of `{base}` into it: the roll "
                          f"wraps the row's last token into position 0, so the first position of every row "
                          f"sees a later token (C1)", ctx=ctx, key=f"bos smear roll {base}")
                continue
            packed = _packed_feed(facts, ctx.func)
            if packed is None:
                continue  # every row the mix sees starts inside one document
            pc, fed = packed
            seen.add(key)
            call = pc.call
            desc = f"`{pc.keyword}=`" if pc.keyword else f"argument {pc.position + 1}"
            how = {-2: f"hands the model windows of the flat stream, while `{fed.qualname}` splits each "
                       f"row at its own document starts",
                   -3: "concatenates them after reordering (each document follows an unrelated one)"}.get(
                pc.position, f"hands `{fed.qualname}` their boundaries ({desc}, from the positions where "
                             f"the row's tokens equal a token id)")
            use_ctx = ctx if not facts.reach_ctx(ctx).reachable or facts.reach_ctx(call.ctx).reachable \
                else call.ctx
            yield Hit(b, f"`{facts.code(b).strip()[:70]}` mixes position t-1 of `{base}` into position t "
                      f"with no BOS mask, while line {call.line} packs several validation documents in one "
                      f"row and {how}: the previous document's last token leaks into each BOS position (C1)", ctx=use_ctx,
                      evidence=facts.line_text(*facts.span(b)) + facts.line_text(call.line, call.end, 3),
                      key=f"bos smear {base}")


def _rolled_base(facts: Facts, call: cst.Call) -> str:
    """``h`` for ``torch.roll(h, 1, 1)`` / ``h.roll(1, dims=1)`` along the sequence (dims 1 or -2,
    or no dims: the flattened tensor): the previous position with the row's last token
    wrapped into position 0."""
    name = facts.resolve(dotted(call.func))
    if name == "torch.roll" and call.args:
        base, rest = call.args[0].value, list(call.args[1:])
    elif type(call.func) is cst.Attribute and call.func.attr.value == "roll":
        base, rest = call.func.value, list(call.args)
    else:
        return ""
    dims = [a.value for a in rest if a.keyword is not None and a.keyword.value == "dims"]
    pos = [a.value for a in rest if a.keyword is None]
    if not dims and len(pos) >= 2:
        dims = [pos[1]]
    if dims and facts.code(dims[0]).replace(" ", "") not in ("1", "-2", "(1,)", "(-2,)"):
        return ""
    return dotted(base) or base_name(base)


def _first_position_reset(facts: Facts, func, base: str, line: int, names: set[str]) -> bool:
    """A rolled copy whose position 0 is overwritten before the mix (``prev[:, 0] = 0``,
    ``prev[:, :1] = pad``): the wrapped token never reaches it."""
    rolled = {n for (f, n), sh in _rolled_names(facts).items() if f is func and sh == base}
    for ai in facts.assigns:
        if ai.ctx.func is not func or ai.line > line:
            continue
        for t in ai.targets:
            if type(t) is cst.Subscript and dotted(t.value) in rolled & names:
                parts = [facts.code(el.slice).replace(" ", "") for el in t.slice]
                if len(parts) >= 2 and parts[0] == ":" and parts[1] in ("0", ":1", "0:1"):
                    return True
    return False


def _rolled_names(facts: Facts) -> dict:
    out = {}
    for ai in facts.assigns:
        if ai.op == "=" and type(ai.value) is cst.Call:
            base = _rolled_base(facts, ai.value)
            if base:
                for t in ai.targets:
                    out[(ai.ctx.func, dotted(t))] = base
    return out


def _packed_feed(facts: Facts, func):
    """A call that packs validation documents in one row with their boundaries and hands
    them to ``func`` or a function that runs it: ``(PackedCall, receiving function)``,
    preferring a call the effective configuration runs."""
    funcs = documents.reaching(facts, func)
    found = []
    for pc in documents.packed_calls(facts):
        fed = documents.feeds(facts, pc, funcs)
        if fed is not None:
            found.append((pc, fed))
    found.sort(key=lambda pf: not facts.reach_ctx(pf[0].call.ctx).reachable)
    if found:
        return found[0]
    # the model finds the documents in its row itself, and the evaluation feeds it windows
    # of the flat stream
    split = documents.splits_rows_itself(facts, funcs)
    if split is not None:
        calls = documents.stream_row_calls(facts, funcs)
        calls.sort(key=lambda c: not facts.reach_ctx(c.ctx).reachable)
        if calls:
            return documents.PackedCall(calls[0], None, -2, calls[0].node), split[0]
    # documents reordered and concatenated into one row: the neighbour is another document
    calls = documents.reordered_row_calls(facts, funcs)
    calls.sort(key=lambda c: not facts.reach_ctx(c.ctx).reachable)
    return (documents.PackedCall(calls[0], None, -3, calls[0].node), func) if calls else None


def _masked(facts: Facts, mix: cst.BinaryOperation, line: int, ctx) -> bool:
    """A document-start mask reaches the mix: an equality test of token ids (``ids[:, 1:] !=
    bos``, ``seg[:, 1:] == seg[:, :-1]``) in its own statement or in a value it reads, followed
    through the function's assignments (``g = g * keep``; ``keep = (ids[:, 1:] != self.bos_id)``).
    A mask handed in as a parameter is recognised by its name (Known limits). A boundary
    descriptor elsewhere in the class (``cu_seqlens`` handed to attention) does not stop this
    mix from leaking."""
    a, b = facts.span(mix)
    func = ctx.func
    todo: list = [mix]
    for ai in facts.assigns:  # the whole statement: `(g * x[:, :-1]) * keep`
        if ai.ctx.func is func and ai.value is not None and ai.line <= a and b <= ai.end:
            todo.append(ai.value)
    seen: set = set()
    while todo and len(seen) < 60:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if _equality(node):
            return True
        for name in facts.names(node):
            defs = func.defs.get(name, ()) if func is not None else ()
            for dline, value in defs:
                if dline > line:
                    continue
                if value is None:  # a parameter: a mask computed by the caller
                    if _MASK_RE.search(name):
                        return True
                    continue
                todo.append(value)
    return False


def _equality(node: cst.CSTNode) -> bool:
    return any(type(c) is cst.Comparison and any(type(t.operator) in (cst.Equal, cst.NotEqual)
                                                     for t in c.comparisons)
               for c in iter_nodes(node))
