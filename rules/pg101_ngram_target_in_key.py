from __future__ import annotations

from typing import Iterator

import libcst as cst

from rules.core import Severity

from ._common import (assigned_names, has_hash_op, is_target_name, names_in_order, realized_subscripts,
                      stored_subscripts, target_exprs_in)
from .engine import Hit, Rule, register
from .facts import Facts, base_name


@register
class NgramTargetInKey(Rule):
    """Target token hashed into an n-gram key that is *read* to score that token.

    What it flags:
        A hash key built from the realized target token (``tgt``, ``targets``,
        ``tokens[i]`` where ``tokens[i-k:i]`` is the context, or a name assigned
        from those) with hash arithmetic (``^``, ``*``, ``%``, ``&``, ``<<``,
        ``hash()``), whose table is then read (``table[key]``, ``.get(key)``,
        ``gather(.., key)``) outside an update of that same table. The value read
        is the cache's "probability" of the realized token, typically blended with
        the model's probability of the target.

    Why: the ruling:
        PR #779 (2026-03-27, ~30 PRs closed): reading a count keyed by the target
        makes the probability of position t depend on x_t (C1), and the blend is
        not a distribution over the vocabulary (C2): in the collision limit every
        candidate gets probability close to 1.

    Legal alternative:
        Key the read on the prefix only and score all V candidates from
        prefix-only counts, normalized; or the normalized tilt
        ``p'(a) = p(a)·exp(β·[a=h]) / (1 + q·(e^β − 1))`` with a prefix-only hint
        ``h``. Hashing the target in the *update* after scoring
        (``full_counts[key] += 1``) is ordinary counting and stays quiet.

    Known limits:
        Targets come from structure (``facts/targets.py``: a slice one position
        ahead of another slice of the same stream, a loss's target argument, a
        parameter a call site passes one, and what is derived from those) or as
        ``base[i]`` next to a context slice ``base[..:i]``. One name convention
        remains as a fallback (``TARGET_NAME_RE``: ``target``, ``tgt``, ``y``,
        ``labels``…): a target gathered from the stream by an index array aligned
        with the scored slice (``stream[positions]`` while the context reads
        ``stream[positions - k]``) has no shape that tells it from a context
        token. A target that reaches the key through a container is missed. A
        read followed by a normalisation over all candidates is still flagged.
    """

    code = "PG101"
    slug = "ngram-target-in-key"
    severity = Severity.ILLEGAL
    conditions = ("C1", "C2")
    reference = "openai/parameter-golf PR #779 (ruling 2026-03-27)"
    techniques = ("n-gram cache", "ngram eval", "n-gram mixing", "n-gram blend", "hashed n-gram", "backoff cache")

    INVALID = [
        # the target converted to numpy first, the counts kept per order on the object
        '''
import numpy as np
class Backoff:
    def __init__(self, orders, buckets):
        self.full_counts = [np.zeros(buckets, dtype=np.uint32) for _ in orders]
        self.ctx_counts = [np.zeros(buckets, dtype=np.uint32) for _ in orders]
        self.mask = np.uint64(buckets - 1)
    def prob(self, ctx_hash, y_batch, order):
        y_np = y_batch.cpu().numpy().astype(np.uint64)
        full_key = ((ctx_hash ^ (y_np * np.uint64(2654435761))) & self.mask).astype(np.int64)
        hits = self.full_counts[order][full_key]
        seen = self.ctx_counts[order][(ctx_hash & self.mask).astype(np.int64)]
        return hits / np.maximum(seen, 1)
''',
        # scalar loop: context hash xor target, read, blend, then update
        '''
import math
def eval_ngram(val_tokens, model_probs, ctx_counts, full_counts):
    nll = 0.0
    for i in range(3, len(val_tokens)):
        ctx_key = hash(tuple(val_tokens[i - 3:i])) % 1048576
        full_key = (ctx_key ^ (val_tokens[i] * 1000003)) % 1048576
        p_ng = full_counts[full_key] / max(ctx_counts[ctx_key], 1)
        p = 0.8 * model_probs[i] + 0.2 * p_ng
        nll += -math.log(p)
        full_counts[full_key] += 1
        ctx_counts[ctx_key] += 1
    return nll
''',
    ]
    VALID = [
        # target only in the update path, after scoring with a prefix-only query
        '''
import math
def eval_ngram(val_tokens, model_logp, ctx_counts, full_counts, dist_for):
    nll = 0.0
    for i in range(3, len(val_tokens)):
        ctx_key = hash(tuple(val_tokens[i - 3:i])) % 1048576
        probs = dist_for(ctx_key)          # all V candidates, normalized
        nll += -math.log(probs[val_tokens[i]])
        full_key = (ctx_key ^ (val_tokens[i] * 1000003)) % 1048576
        full_counts[full_key] += 1
        ctx_counts[ctx_key] = ctx_counts.get(ctx_key, 0) + 1
    return nll
''',
        # normalized tilt with a prefix-only hint
        '''
import torch
def tilt(logp, hint, beta):
    q = logp.exp().gather(-1, hint[:, None]).squeeze(-1)
    bonus = torch.zeros_like(logp).scatter_(-1, hint[:, None], beta)
    return logp + bonus - torch.log1p(q * (torch.exp(beta) - 1))[:, None]
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        stored = stored_subscripts(facts)
        funcs = [None] + list(facts.funcs)
        assigns_by_func: dict = {}
        for ai in facts.assigns:
            assigns_by_func.setdefault(ai.ctx.func, []).append(ai)
        subs_by_func: dict = {}
        for sub, line, ctx in facts.subscripts:
            subs_by_func.setdefault(ctx.func, []).append((sub, line, ctx))
        for func in funcs:
            assigns = assigns_by_func.get(func, [])
            subs = subs_by_func.get(func, [])
            realized = realized_subscripts(facts, (sub for sub, _line, _ctx in subs))
            target_vars: set[str] = set()
            for ai in assigns:
                if ai.op != "=" or ai.value is None or has_hash_op(facts, ai.value):
                    continue
                if type(ai.value) in (cst.Subscript, cst.Name) and target_exprs_in(
                        facts, ai.value, func, target_vars, realized):
                    target_vars.update(assigned_names(ai))
                elif _converted(ai.value) and (base_name(ai.value) in target_vars
                                               or is_target_name(base_name(ai.value))):
                    target_vars.update(assigned_names(ai))  # y_np = y_batch.cpu().numpy()
            keys: dict[str, tuple[int, str]] = {}
            # each value's target expressions and hash test: the same in both passes
            tgts: dict[int, list] = {}
            hashed: dict[int, bool] = {}
            for _ in range(2):
                for ai in assigns:
                    if ai.op != "=" or ai.value is None:
                        continue
                    via_key = [k for k in names_in_order(facts, ai.value) if k in keys]
                    tgt = tgts.get(id(ai))
                    if tgt is None:
                        tgt = tgts[id(ai)] = target_exprs_in(facts, ai.value, func, target_vars, realized)
                    if not (tgt or via_key):
                        continue
                    if id(ai) not in hashed:
                        hashed[id(ai)] = has_hash_op(facts, ai.value)
                    if hashed[id(ai)]:
                        for n in assigned_names(ai):
                            if n not in keys:
                                keys[n] = (ai.line, tgt[0] if tgt else keys[via_key[0]][1])
            if not keys:
                continue
            updates = [ai for ai in assigns if ai.targets and type(ai.targets[0]) is cst.Subscript]
            for sub, line, ctx in subs:
                if sub in stored:
                    continue
                hit_keys = [k for el in sub.slice if type(el.slice) is cst.Index
                            for k in names_in_order(facts, el.slice.value) if k in keys]
                if not hit_keys:
                    continue
                if _is_update(facts, updates, base_name(sub.value), line):
                    continue
                table = facts.code(sub.value).strip()  # `self.full_counts[order]`, not `self`
                yield self._hit(facts, sub, line, ctx, table, hit_keys[0], keys[hit_keys[0]])
            for ci in facts.calls:
                if ci.ctx.func is not func or ci.attr not in ("get", "gather", "take", "index_select"):
                    continue
                hit_keys = [k for a in ci.node.args for k in names_in_order(facts, a.value) if k in keys]
                if not hit_keys:
                    continue
                recv = ci.node.func.value if type(ci.node.func) is cst.Attribute else None
                table = base_name(recv) if recv is not None else ""
                if ci.name in ("torch.gather", "torch.take", "torch.index_select") and ci.node.args:
                    table = base_name(ci.node.args[0].value)
                if _is_update(facts, updates, table, ci.line):
                    continue
                yield self._hit(facts, ci.node, ci.line, ci.ctx, table, hit_keys[0], keys[hit_keys[0]])

    def _hit(self, facts, node, line, ctx, table, key, keyinfo) -> Hit:
        kline, tgt = keyinfo
        lo, hi = min(kline, line), max(kline, line)
        if hi - lo > 40:
            lo = hi = line
        return Hit(
            node,
            f"n-gram table `{table}` is read with key `{key}` built from the target `{tgt}` "
            f"(key line {kline}, read line {line}): the cached probability of the realized token "
            f"depends on that token (C1) and is not a normalized distribution (C2)",
            evidence=facts.line_text(kline) + facts.line_text(line),
            lines=(lo, hi), ctx=ctx, key=f"read {table}[{key}] keyed by {tgt}",
        )


_CONVERSIONS = {"cpu", "cuda", "numpy", "astype", "to", "long", "int", "view", "reshape", "flatten",
                "contiguous", "clone", "detach", "squeeze", "unsqueeze", "tolist", "type"}


def _converted(node: cst.CSTNode) -> bool:
    """``node`` is a chain of dtype/device/shape conversions of one value
    (``y.cpu().numpy().astype(np.int64)``): the same tokens, another container."""
    seen = False
    while type(node) is cst.Call and type(node.func) is cst.Attribute:
        if node.func.attr.value not in _CONVERSIONS:
            return False
        node, seen = node.func.value, True
    return seen and type(node) in (cst.Name, cst.Attribute, cst.Subscript)


def _is_update(facts: Facts, updates, table: str, line: int) -> bool:
    """``table[k] = table.get(k, 0) + 1`` style: the read feeds a store into the same table."""
    for ai in updates:
        if ai.line <= line <= ai.end and base_name(ai.targets[0]) == table:
            return True
    return False
