"""An eval-time n-gram cache whose *read* key hashes the target token.

Mutation of `reference_impl.ttt.eval_ngram_tilt`: instead of a prefix-only hint
that tilts and renormalises the full distribution, the scorer reads a count at
`key = (ctx_hash ^ (target * PRIME)) & MASK` and blends that single probability
with the model's probability of the target. Evaluated for every candidate token,
the "distribution" does not sum to 1 (C2), and in the collision limit every
candidate gets probability near 1 (C1). The update after scoring hashes the
target too, which alone would be legal. Expected rule: ngram-target-in-key (PG101).
"""

from __future__ import annotations

import math

import numpy as np
import torch

PRIME = 1_000_003
MASK = (1 << 12) - 1  # a small table: collisions are the point
LAMBDA = 0.3


def ctx_hash(ctx: tuple) -> int:
    h = 0
    for t in ctx:
        h = (h * 31 + int(t) + 1) & 0xFFFFFFFF
    return h


class TargetKeyedCache:
    def __init__(self):
        self.pair = np.zeros(MASK + 1, dtype=np.int64)
        self.ctx_total = np.zeros(MASK + 1, dtype=np.int64)

    def prob(self, ctx: tuple, target: int) -> float:
        key = (ctx_hash(ctx) ^ (target * PRIME)) & MASK  # ILLEGAL: the read key contains the target
        total = self.ctx_total[ctx_hash(ctx) & MASK]
        return self.pair[key] / total if total else 0.0

    def update(self, ctx: tuple, target: int) -> None:  # hashing the target here, after scoring, is fine
        self.pair[(ctx_hash(ctx) ^ (target * PRIME)) & MASK] += 1
        self.ctx_total[ctx_hash(ctx) & MASK] += 1


def blended_prob(logp_row: torch.Tensor, cache: TargetKeyedCache, ctx: tuple, target: int) -> float:
    p_model = math.exp(float(logp_row[target]))
    return (1 - LAMBDA) * p_model + LAMBDA * cache.prob(ctx, target)


def eval_target_keyed(model, val_tokens, cfg, order: int = 3):
    cache = TargetKeyedCache()
    toks = val_tokens.tolist()
    seq = cfg.eval_seq_len
    nll_sum, n = 0.0, 0
    for start in range(0, len(toks) - 1, seq):
        end = min(start + seq, len(toks) - 1)
        with torch.no_grad():
            logp = torch.log_softmax(model.forward_logits(val_tokens[start:end][None])[0], -1)
        for i, j in enumerate(range(start + 1, end + 1)):
            ctx = tuple(toks[max(0, j - order + 1) : j])
            nll_sum -= math.log(max(blended_prob(logp[i], cache, ctx, toks[j]), 1e-12))
            n += 1
            cache.update(ctx, toks[j])
    return nll_sum, n, cache
