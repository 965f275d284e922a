"""Scored-region SLOT: the hidden-state offset is fitted on the batch it then scores.

Mutation of `reference_impl.ttt.eval_slot`: the reference fits `delta` only on
the previous batch's scored targets; here the objective is the NLL over every
position of the current windows (`[s:wlen]`-style), after which the same windows
are scored with the fitted delta. The delta is a function of the scored targets
(C1): flip one target and the NLL at other scored positions moves (PR #1240).
Expected rule: slot-scored-region (PG104).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference_impl.evaluate import batched, plan_windows, window_tensors


def eval_scored_region_slot(model, val_tokens, cfg, steps: int = 3, lr: float = 0.1):
    n = val_tokens.numel()
    nll_per_token = torch.zeros(n, dtype=torch.float64)
    windows = plan_windows(n, cfg.eval_seq_len, cfg.eval_stride)
    for batch in batched(windows, cfg.eval_batch_seqs):
        x, y = window_tensors(val_tokens, batch, "cpu")
        with torch.no_grad():
            h = model.forward_hidden(x)
        delta = torch.zeros(1, 1, h.size(-1), requires_grad=True)
        opt = torch.optim.Adam([delta], lr=lr)
        for _ in range(steps):
            # ILLEGAL: the objective covers all positions of the windows, the scored ones included
            loss = F.cross_entropy(model.logits_from_hidden(h + delta).transpose(1, 2), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll = F.cross_entropy(model.logits_from_hidden(h + delta).transpose(1, 2), y, reduction="none")
        for i, (s, e, first) in enumerate(batch):
            nll_per_token[first : e + 1] = nll[i, first - (s + 1) :].double()
    return nll_per_token
