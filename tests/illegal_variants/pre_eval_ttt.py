"""Pre-evaluation TTT: fine-tune on all validation tokens, then evaluate them.

Mutation of the reference run: between training and evaluation, the model takes
`epochs` AdamW passes over `val_tokens`, then the canonical evaluation scores
those same tokens (C3). Gated by an env flag whose default is off, as in the
wild; the auditor must decide from the effective config and the logs.
Expected rule: val-update-before-score (PG201).
"""

from __future__ import annotations

import copy
import os

import torch

from reference_impl.evaluate import evaluate

PRE_EVAL_TTT = bool(int(os.environ.get("PRE_EVAL_TTT", "0")))


def adapt_then_evaluate(model, val_tokens, tables, cfg, epochs: int = 2, force: bool = False):
    model = copy.deepcopy(model)
    if PRE_EVAL_TTT or force:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.ttt_lr)
        seq = cfg.eval_seq_len
        for _ in range(epochs):  # ILLEGAL: gradient steps on validation tokens not yet scored
            for start in range(0, val_tokens.numel() - 1, seq):
                end = min(start + seq, val_tokens.numel() - 1)
                loss = model(val_tokens[start:end][None], val_tokens[start + 1 : end + 1][None])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
    model.eval()
    return evaluate(model, val_tokens, tables, cfg.eval_seq_len, 0, cfg.eval_batch_seqs, keep_nll=True)
