"""Multi-epoch chunk TTT that counts the loss of the last epoch.

Mutation of `reference_impl.ttt.eval_chunk_ttt`: instead of scoring each chunk
once under no_grad and then training on it, every chunk is trained for
`n_epochs` and the NLL recorded at the last epoch is what counts. That score was
taken after updates that used the very tokens it scores (C3) and is not the
first score of the token (C4). Each epoch "scores before it steps", which is why
reviewers called it legal (PR #568 says it is not). Expected rule: multi-pass-scoring
(PG103).
"""

from __future__ import annotations

import copy

import torch

from reference_impl.bytes import count_bytes


def eval_multi_epoch_ttt(model, val_tokens, tables, cfg, n_epochs: int = 3):
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.ttt_lr, momentum=0.9)
    seq = cfg.eval_seq_len
    nll_per_token = torch.zeros(val_tokens.numel(), dtype=torch.float64)
    nll_sum, byte_sum = 0.0, 0
    for start in range(0, val_tokens.numel() - 1, seq):
        end = min(start + seq, val_tokens.numel() - 1)
        x, y = val_tokens[start:end][None], val_tokens[start + 1 : end + 1][None]
        for epoch in range(n_epochs):
            nll = model.nll(x, y)
            if epoch == n_epochs - 1:  # ILLEGAL: the counted score comes after training on these tokens
                nll_sum += nll.sum().item()
                nll_per_token[start + 1 : end + 1] = nll[0].detach().double()
                byte_sum += int(count_bytes(x[0], y[0], tables).sum())
            nll.mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return nll_sum, byte_sum, nll_per_token
