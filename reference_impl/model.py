"""The GPT: the architecture the strongest submissions combine, each piece a switch.

Token + BigramHash embedding -> SmearGate (BOS-masked) -> blocks (GQA attention
with QK-norm, per-head gain and (partial) RoPE; optional XSA; MLP with
LeakyReLU(0.5)^2 or ReLU^2) wired as a U-Net over the (optionally recurrent)
layer order -> RMSNorm -> tied head -> logit softcap.

Causality is structural: attention is causal, and every token-mixing piece
(SmearGate, BigramHash) only looks at input positions <= t, and never across a
BOS: a document's first token cannot see the previous row's or document's tail.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impl.config import Config


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """RoPE on the first `rope_dims` channels of each head (partial RoPE when < head_dim)."""

    def __init__(self, head_dim: int, rope_dims: int, base: float):
        super().__init__()
        self.rope_dims = rope_dims or head_dim
        if self.rope_dims % 2 or self.rope_dims > head_dim:
            raise ValueError("rope_dims must be even and <= head_dim")
        inv_freq = 1.0 / (base ** (torch.arange(0, self.rope_dims, 2, dtype=torch.float32) / self.rope_dims))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, T, hd]
        t = torch.arange(x.size(2), device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
        rot, rest = x[..., : self.rope_dims], x[..., self.rope_dims :]
        x1, x2 = rot.chunk(2, dim=-1)
        rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
        return torch.cat([rotated, rest], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: Config, xsa: bool):
        super().__init__()
        self.n_head, self.n_kv = cfg.num_heads, cfg.num_kv_heads
        if cfg.model_dim % self.n_head or self.n_head % self.n_kv:
            raise ValueError("model_dim % num_heads and num_heads % num_kv_heads must be 0")
        self.head_dim = cfg.model_dim // self.n_head
        self.q = nn.Linear(cfg.model_dim, self.n_head * self.head_dim, bias=False)
        self.k = nn.Linear(cfg.model_dim, self.n_kv * self.head_dim, bias=False)
        self.v = nn.Linear(cfg.model_dim, self.n_kv * self.head_dim, bias=False)
        self.proj = nn.Linear(cfg.model_dim, cfg.model_dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((self.n_head,), cfg.qk_gain_init))
        self.rotary = Rotary(self.head_dim, cfg.rope_dims, cfg.rope_base)
        self.xsa = xsa

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = self.rotary(rms_norm(q)), self.rotary(rms_norm(k))
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        rep = self.n_head // self.n_kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        if self.xsa:  # exclusive self-attention: drop the component along the token's own value
            n = F.normalize(v, dim=-1)
            y = y - (y * n).sum(-1, keepdim=True) * n
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        hidden = int(cfg.mlp_mult * cfg.model_dim)
        self.fc = nn.Linear(cfg.model_dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.model_dim, bias=False)
        if cfg.activation not in ("leaky_relu2", "relu2"):
            raise ValueError(f"unknown activation {cfg.activation}")
        self.leaky = cfg.activation == "leaky_relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = F.leaky_relu(h, 0.5) if self.leaky else F.relu(h)
        return self.proj(h.square())


class Block(nn.Module):
    def __init__(self, cfg: Config, xsa: bool):
        super().__init__()
        self.attn = Attention(cfg, xsa)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(cfg.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(cfg.model_dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x), attn_mask)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class SmearGate(nn.Module):
    """x[t] += sigmoid(g) * x[t-1], except where token t is BOS (no mixing across documents)."""

    def __init__(self, dim: int, bos_id: int):
        super().__init__()
        self.gate = nn.Parameter(torch.full((dim,), -2.0))
        self.bos_id = bos_id

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids[:, 1:] != self.bos_id).unsqueeze(-1).to(x.dtype)
        smeared = x[:, 1:] + torch.sigmoid(self.gate).to(x.dtype) * x[:, :-1] * keep
        return torch.cat([x[:, :1], smeared], dim=1)


class BigramHash(nn.Module):
    """An embedding of hash(token[t-1], token[t]): both are inputs, never the target.

    At a row start or a BOS the previous token is replaced by BOS, so no bigram spans documents.
    """

    def __init__(self, buckets: int, dim: int, model_dim: int, bos_id: int):
        super().__init__()
        self.buckets, self.bos_id = buckets, bos_id
        self.emb = nn.Embedding(buckets, dim)
        self.proj = nn.Linear(dim, model_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        prev = F.pad(ids[:, :-1], (1, 0), value=self.bos_id)
        prev = torch.where(ids == self.bos_id, torch.full_like(prev, self.bos_id), prev)
        h = (prev * 1_000_003 + ids * 8_191) % self.buckets
        return self.proj(self.emb(h))


def layer_order(num_layers: int, recur: list[int]) -> list[int]:
    """Depth recurrence: the listed layers run a second time, right after their first pass block."""
    order = list(range(num_layers))
    if recur:
        last = max(recur)
        order = order[: last + 1] + sorted(recur) + order[last + 1 :]
    return order


class GPT(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.bigram = (
            BigramHash(cfg.bigram_buckets, cfg.bigram_dim, cfg.model_dim, cfg.bos_id) if cfg.bigram_buckets else None
        )
        self.smear = SmearGate(cfg.model_dim, cfg.bos_id) if cfg.smear else None
        n = cfg.num_layers
        self.blocks = nn.ModuleList(Block(cfg, xsa=i >= n - cfg.xsa_last_n) for i in range(n))
        self.order = layer_order(n, cfg.recur_list())
        self.n_skip = len(self.order) // 2
        self.skip_weights = nn.Parameter(torch.ones(self.n_skip, cfg.model_dim))
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """Orthogonal matrices; residual projections scaled down by depth; bigram starts neutral."""
        nn.init.normal_(self.tok_emb.weight, std=0.02 if self.lm_head is None else 1.0)
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                nn.init.orthogonal_(mod.weight)
                if name.endswith(".proj"):
                    mod.weight.data.mul_(1.0 / math.sqrt(2 * len(self.order)))
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.proj.weight)
            nn.init.normal_(self.bigram.emb.weight, std=0.02)
        if self.lm_head is not None:
            nn.init.zeros_(self.lm_head.weight)

    def doc_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """Causal and block-diagonal over documents (each starts at a BOS): [B, 1, T, T] bool."""
        seg = (ids == self.cfg.bos_id).cumsum(dim=1)
        same = seg[:, :, None] == seg[:, None, :]
        causal = torch.ones(ids.size(1), ids.size(1), dtype=torch.bool, device=ids.device).tril()
        return (same & causal).unsqueeze(1)

    def forward_hidden(self, ids: torch.Tensor, isolate_docs: bool = False) -> torch.Tensor:
        """isolate_docs: several documents packed in a row do not attend to each other."""
        mask = self.doc_mask(ids) if isolate_docs else None
        x = self.tok_emb(ids)
        if self.bigram is not None:
            x = x + self.bigram(ids)
        x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x, ids)
        skips: list[torch.Tensor] = []
        n = len(self.order)
        for i, li in enumerate(self.order):
            if i >= n - self.n_skip:  # decoder half: add the mirrored encoder output
                x = x + self.skip_weights[i - (n - self.n_skip)].to(x.dtype) * skips.pop()
            x = self.blocks[li](x, mask)
            if i < self.n_skip:
                skips.append(x)
        return rms_norm(x)

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(h, w.to(h.dtype)).float()
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def forward_logits(self, ids: torch.Tensor, isolate_docs: bool = False) -> torch.Tensor:
        return self.logits_from_hidden(self.forward_hidden(ids, isolate_docs))

    def nll(self, ids: torch.Tensor, targets: torch.Tensor, isolate_docs: bool = False) -> torch.Tensor:
        """Per-token NLL in nats, float32, shape of targets."""
        logits = self.forward_logits(ids, isolate_docs)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction="none").view_as(
            targets
        )

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.nll(ids, targets).mean()
