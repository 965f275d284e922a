"""Post-training quantization of the state dict.

Per-row symmetric integers: int8 for embeddings, int6/int5 (config) for the
attention and MLP matrices, float16 passthrough for small and control tensors
(gains, scales, norms), where a few bytes buy nothing. Each row's clip is chosen
from a small grid to minimise the reconstruction error; with calibration the
error is weighted per input column by E[x^2] (the diagonal of H = E[x x^T]).
With `quant_method=gptq` the columns are then rounded one at a time and each
rounding error is pushed onto the columns not yet rounded (GPTQ), so the layer
output, not the weight, is what is kept close. H is measured on *training*
batches only, inside the time cap; never on validation tokens.
"""

from __future__ import annotations

import io

import torch
import torch.nn as nn

from reference_impl.config import Config

QMAX = {8: 127, 6: 31, 5: 15, 4: 7}
CLIP_GRID = (1.0, 0.995, 0.99, 0.98, 0.97, 0.95, 0.92, 0.9, 0.85, 0.8, 0.75)


def quantize_rows(
    w: torch.Tensor, bits: int, clip_search: bool = True, col_weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (int8 codes in [-qmax, qmax], float16 per-row scales)."""
    qmax = QMAX[bits]
    w = w.float()
    amax = w.abs().amax(dim=1).clamp_min(1e-12)
    cw = torch.ones(w.size(1)) if col_weight is None else col_weight.float().clamp_min(1e-12)
    best_err = torch.full((w.size(0),), float("inf"))
    best_q = torch.zeros_like(w, dtype=torch.int8)
    best_s = torch.zeros(w.size(0), dtype=torch.float16)
    for clip in CLIP_GRID if clip_search else (1.0,):
        scale = (amax * clip / qmax).half()
        s = scale.float().clamp_min(1e-12)[:, None]
        q = (w / s).round().clamp(-qmax, qmax)
        err = ((q * s - w).square() * cw).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_q[better] = q[better].to(torch.int8)
        best_s[better] = scale[better]
    return best_q, best_s


def tensor_bits(name: str, t: torch.Tensor, cfg: Config) -> int | None:
    """Bits for this tensor, or None for float16 passthrough."""
    if not t.is_floating_point() or t.ndim != 2 or t.numel() <= cfg.passthrough_numel:
        return None
    if "emb" in name or "lm_head" in name:
        return cfg.embed_bits
    return cfg.quant_bits


def magnitude_prune(w: torch.Tensor, frac: float) -> torch.Tensor:
    if frac <= 0:
        return w
    k = int(w.numel() * frac)
    if k == 0:
        return w
    thresh = w.abs().flatten().kthvalue(k).values
    return torch.where(w.abs() <= thresh, torch.zeros_like(w), w)


def gptq_rows(w: torch.Tensor, bits: int, H: torch.Tensor, clip_search: bool = True, damp: float = 0.01):
    """GPTQ with per-row scales from the clip search; returns (int8 codes, float16 scales)."""
    qmax = QMAX[bits]
    W = w.float().clone()
    H = H.float().clone()
    _, scale = quantize_rows(W, bits, clip_search, torch.diagonal(H))
    s = scale.float().clamp_min(1e-12)
    dead = torch.diagonal(H) <= 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diagonal(H).mean() * torch.eye(H.size(0))
    # upper Cholesky factor of H^-1: row i holds how column i's error spreads to later columns
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for i in range(W.size(1)):
        q = (W[:, i] / s).round().clamp(-qmax, qmax)
        Q[:, i] = q
        err = (W[:, i] - q * s) / hinv[i, i]
        W[:, i + 1 :] -= err[:, None] * hinv[i, i + 1 :][None, :]
    return Q.to(torch.int8), scale


@torch.no_grad()
def collect_calibration(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """H = E[x x^T] of the input of every Linear, from (x, y) training batches."""
    stats: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            def hook(m, inp, out, key=name + ".weight"):
                x = inp[0].detach().float().reshape(-1, inp[0].size(-1))
                stats[key] = stats.get(key, 0) + (x.T @ x).cpu()
                counts[key] = counts.get(key, 0) + x.size(0)
            hooks.append(mod.register_forward_hook(hook))
    try:
        for x, _ in batches:
            model.forward_hidden(x)
    finally:
        for h in hooks:
            h.remove()
    return {k: v / counts[k] for k, v in stats.items()}


def quantize_state(sd: dict, cfg: Config, calib: dict | None = None) -> dict:
    out = {}
    for name, t in sd.items():
        t = t.detach().cpu()
        bits = tensor_bits(name, t, cfg)
        if bits is None:
            out[name] = {"kind": "float", "data": t.half() if t.is_floating_point() else t}
            continue
        w = magnitude_prune(t.float(), cfg.prune_frac)
        H = (calib or {}).get(name)
        if H is not None and cfg.quant_method == "gptq":
            q, s = gptq_rows(w, bits, H, cfg.clip_search)
        else:
            q, s = quantize_rows(w, bits, cfg.clip_search, None if H is None else torch.diagonal(H))
        out[name] = {"kind": "int", "bits": bits, "q": q, "scale": s, "dtype": str(t.dtype)}
    return out


def dequantize_state(qsd: dict) -> dict:
    sd = {}
    for name, e in qsd.items():
        if e["kind"] == "float":
            sd[name] = e["data"].float() if e["data"].is_floating_point() else e["data"]
        else:
            sd[name] = e["q"].float() * e["scale"].float()[:, None]
    return sd


def serialize(qsd: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(qsd, buf)
    return buf.getvalue()


def deserialize(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
