"""Training and evaluation throughput of the reference model.

    python benchmarks/bench_reference.py [--steps N] [--configs toy baseline]

Two configs: `toy` (CONFIG=toy) and `baseline` (the official baseline's size:
9 layers, 512 dim, vocab 1024, seq 1024, 8 heads / 4 KV heads, MLP x2; BigramHash
and SmearGate off). Random tokens (throughput does not depend on the data). A
training step is forward + backward + Muon/AdamW; evaluation is the no_grad
per-token NLL. On CPU only a few steps run; on CUDA the per-GPU batch is the
baseline's 524,288 tokens / 8 GPUs, in bf16 autocast. The first step of each
kind is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reference_impl.config import Config  # noqa: E402
from reference_impl.evaluate import autocast_for  # noqa: E402
from reference_impl.model import GPT  # noqa: E402
from reference_impl.optim import build_optimizers  # noqa: E402


def configs(device: torch.device) -> dict[str, tuple[Config, int]]:
    """name -> (config, sequences per step)."""
    toy = Config.from_env({"CONFIG": "toy"})
    base = Config(num_layers=9, model_dim=512, vocab_size=1024, num_heads=8, num_kv_heads=4, mlp_mult=2.0,
                  train_seq_len=1024, eval_seq_len=1024, bigram_buckets=0, smear=False)
    if device.type == "cuda":
        return {"toy": (toy, 64), "baseline": (base, 64)}  # 65,536 tokens = 524,288 / 8 GPUs
    return {"toy": (toy, toy.train_batch_tokens // toy.train_seq_len), "baseline": (base, 2)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(cfg: Config, seqs: int, steps: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opts = build_optimizers(model, cfg)
    x = torch.randint(0, cfg.vocab_size, (seqs, cfg.train_seq_len), device=device)
    y = torch.randint(0, cfg.vocab_size, (seqs, cfg.train_seq_len), device=device)

    def train_step() -> None:
        with autocast_for(device):
            loss = model(x, y)
        loss.backward()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)

    train_step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync(device)
    train_s = (time.perf_counter() - t) / steps

    model.eval()
    with torch.no_grad():
        with autocast_for(device):
            model.nll(x, y)
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            with autocast_for(device):
                model.nll(x, y)
        sync(device)
    eval_s = (time.perf_counter() - t) / steps
    tokens = seqs * cfg.train_seq_len
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_step": tokens,
        "train_step_ms": round(train_s * 1000, 2),
        "train_tokens_per_s": round(tokens / train_s),
        "eval_tokens_per_s": round(tokens / eval_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="reference model throughput")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 3 on CPU, 20 on CUDA)")
    ap.add_argument("--configs", nargs="+", default=["toy", "baseline"])
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    steps = args.steps or (20 if device.type == "cuda" else 3)
    results = {}
    for key, (cfg, seqs) in configs(device).items():
        if key not in args.configs:
            continue
        r = bench(cfg, seqs, steps, device)
        results[key] = r
        print(f"{key:8s} device={name} params={r['params']} tokens/step={r['tokens_per_step']} "
              f"train_step={r['train_step_ms']}ms train_tok/s={r['train_tokens_per_s']} "
              f"eval_tok/s={r['eval_tokens_per_s']}", flush=True)
    print(json.dumps({"device": name, "torch": torch.__version__, "steps": steps, "results": results}))


if __name__ == "__main__":
    main()
