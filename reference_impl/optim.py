"""Optimizers, schedules and weight averaging.

Muon (momentum + Newton-Schulz orthogonalised update) for the 2-D matrices in
the blocks; AdamW for embeddings, gains and scales. The learning-rate schedule is
warm-up, flat, then a linear warm-down driven by whichever is further along:
steps or the wall-clock budget, so a capped run still anneals. EMA and SWA keep
averaged weights that replace the live ones before quantization.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from reference_impl.config import Config


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise g (push its singular values towards 1) with a quintic iteration."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    if transposed:
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.95, ns_steps: int = 5, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad)
                update = p.grad.add(buf, alpha=group["momentum"])  # Nesterov
                update = newton_schulz(update, group["ns_steps"])
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * scale)


def build_optimizers(model: nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
    embeds, matrices, scalars = [], [], []
    for name, p in model.named_parameters():
        if name.startswith("tok_emb") or name.startswith("bigram.emb") or name.startswith("lm_head"):
            embeds.append(p)
        elif p.ndim == 2 and name.startswith(("blocks.", "bigram.proj")):
            matrices.append(p)
        else:
            scalars.append(p)
    adam = torch.optim.AdamW(
        [dict(params=embeds, lr=cfg.embed_lr), dict(params=scalars, lr=cfg.scalar_lr)],
        betas=(0.9, 0.95),
        eps=1e-8,
        weight_decay=cfg.weight_decay,
    )
    muon = Muon(matrices, lr=cfg.matrix_lr, momentum=cfg.muon_momentum, ns_steps=cfg.muon_ns_steps,
                weight_decay=cfg.weight_decay)
    opts = [adam, muon]
    for opt in opts:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return opts


def lr_scale(step: int, elapsed_s: float, cfg: Config) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    budget = max(cfg.max_wallclock_seconds - cfg.gptq_reserve_seconds, 1e-9)
    progress = max(step / max(cfg.iterations, 1), elapsed_s / budget if cfg.max_wallclock_seconds > 0 else 0.0)
    start = 1.0 - cfg.warmdown_frac
    if progress <= start or cfg.warmdown_frac <= 0:
        return 1.0
    return max(0.0, (1.0 - progress) / cfg.warmdown_frac)


def set_lr(opts: list[torch.optim.Optimizer], scale: float) -> None:
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * scale


def allreduce_grads(model: nn.Module, world_size: int) -> None:
    """Average gradients over ranks in one flat buffer (works with gloo and nccl)."""
    if world_size <= 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class EMA:
    """Exponential moving average of the weights, kept in float32."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            self.shadow[k].lerp_(v.float(), 1.0 - self.decay)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})


class SWA:
    """Uniform average of snapshots (taken during the warm-down)."""

    def __init__(self):
        self.sum: dict[str, torch.Tensor] | None = None
        self.count = 0

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        sd = model.state_dict()
        if self.sum is None:
            self.sum = {k: v.detach().float().clone() for k, v in sd.items()}
        else:
            for k, v in sd.items():
                self.sum[k] += v.float()
        self.count += 1

    def copy_to(self, model: nn.Module) -> None:
        if self.sum is None:
            return
        model.load_state_dict({k: (v / self.count).to(model.state_dict()[k].dtype) for k, v in self.sum.items()})
