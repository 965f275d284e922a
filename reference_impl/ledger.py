"""ScoreLedger: run-time enforcement of the scoring rules (C3, C4).

Positions are absolute indices into the validation stream; position j is the
target predicted from tokens[0..j-1], so targets are 1..N-1 (token 0 is the
given start). `score` refuses a position scored before (C4, single pass);
`check_update` refuses any state update that would read a token not yet scored
(C3, score before update); `finalize` checks, across ranks, that every target
was scored exactly once, and reduces the float64 totals.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from reference_impl.bytes import bits_per_byte


class ScoreLedgerError(RuntimeError):
    pass


class ScoreLedger:
    def __init__(self, n_tokens: int, keep_nll: bool = False):
        self.n = n_tokens
        self.scored = np.zeros(n_tokens, dtype=bool)  # scored by this rank
        self.known = np.zeros(n_tokens, dtype=bool)  # scored by any rank (after sync)
        self.known[0] = True  # the first token is given, never predicted
        self.nll_sum = 0.0  # python floats are float64
        self.byte_sum = 0
        self.count = 0
        self.nll = np.full(n_tokens, np.nan) if keep_nll else None

    def score(self, positions, nll, nbytes) -> None:
        pos = np.asarray(torch.as_tensor(positions).detach().cpu().reshape(-1))
        if pos.size == 0:
            return
        if pos.min() < 1 or pos.max() >= self.n:
            raise ScoreLedgerError(f"position out of range [1, {self.n - 1}]")
        if np.unique(pos).size != pos.size or self.scored[pos].any():
            raise ScoreLedgerError(f"token scored twice (first at {int(pos[self.scored[pos]][0]) if self.scored[pos].any() else int(pos[0])})")
        nll64 = torch.as_tensor(nll).detach().double().cpu().reshape(-1)
        if nll64.numel() != pos.size:
            raise ScoreLedgerError("one NLL per position required")
        self.scored[pos] = True
        self.known[pos] = True
        self.nll_sum += float(nll64.sum())
        self.byte_sum += int(torch.as_tensor(nbytes).sum())
        self.count += int(pos.size)
        if self.nll is not None:
            self.nll[pos] = nll64.numpy()

    def check_update(self, positions) -> None:
        """Raise unless every token an update reads (inputs and targets) was already scored."""
        pos = np.asarray(torch.as_tensor(positions).detach().cpu().reshape(-1))
        if pos.size and (pos.min() < 0 or pos.max() >= self.n):
            raise ScoreLedgerError("update position out of range")
        if pos.size and not self.known[pos].all():
            bad = int(pos[~self.known[pos]][0])
            raise ScoreLedgerError(f"update touches unscored token at position {bad}")

    def grant_prefix(self, upto: int) -> None:
        """Positions < upto precede this rank's block: earlier ranks score them, with states
        this rank never updates, so this rank's updates may read them (multi-rank only)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self.known[:upto] = True

    def sync(self, lo: int, hi: int) -> None:
        """Share which of positions [lo, hi) any rank has scored (for global TTT updates)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            seg = torch.from_numpy(self.scored[lo:hi].astype(np.uint8))
            dist.all_reduce(seg, op=dist.ReduceOp.SUM)
            self.known[lo:hi] |= seg.numpy() > 0

    def finalize(self) -> dict:
        """All-reduce the coverage and totals; every target 1..N-1 must be scored exactly once."""
        counts = torch.from_numpy(self.scored.astype(np.uint8))
        totals = torch.tensor([self.nll_sum, float(self.byte_sum), float(self.count)], dtype=torch.float64)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        c = counts.numpy()
        if c[0] != 0 or (c[1:] != 1).any():
            missing = int((c[1:] == 0).sum())
            twice = int((c[1:] > 1).sum())
            raise ScoreLedgerError(f"coverage: {missing} targets never scored, {twice} scored more than once")
        nll_sum, byte_sum, count = totals.tolist()
        return {
            "val_loss": nll_sum / count,
            "val_bpb": bits_per_byte(nll_sum, byte_sum),
            "nll_sum": nll_sum,
            "bytes": int(byte_sum),
            "tokens": int(count),
        }
