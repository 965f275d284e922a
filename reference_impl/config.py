"""Run configuration: one dataclass, filled from environment variables.

Every knob of the stack is a field; `Config.from_env()` reads the upper-case
field name from the environment (e.g. NUM_LAYERS=9). `CONFIG=toy` starts from a
preset small enough to train, quantize, evaluate and adapt on a CPU in seconds;
explicit env vars still override it. The full config is logged at start so a log
alone says what ran (the auditor decides legality from the effective config).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields


@dataclass
class Config:
    # run / data
    seed: int = 1337
    run_id: str = "reference"
    data_dir: str = "./data"
    train_pattern: str = "fineweb_train_*.bin"
    val_pattern: str = "fineweb_val_*.bin"
    tokenizer_path: str = "./data/tokenizer.model"
    synthetic_data: bool = False  # generate a corpus + tokenizer into data_dir when missing
    out_dir: str = "."
    bos_id: int = 1
    # model
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 2.0
    activation: str = "leaky_relu2"  # leaky_relu2 | relu2
    rope_base: float = 10000.0
    rope_dims: int = 0  # partial RoPE: rotate only the first rope_dims of each head (0 = all)
    qk_gain_init: float = 1.5
    logit_softcap: float = 30.0
    tie_embeddings: bool = True
    smear: bool = True
    bigram_buckets: int = 2048  # 0 disables the BigramHash embedding
    bigram_dim: int = 128
    xsa_last_n: int = 0  # exclusive self-attention on the last N layers
    recur_layers: str = ""  # depth recurrence: comma-separated layer indices run twice
    # training
    iterations: int = 20000
    warmup_steps: int = 20
    warmdown_frac: float = 0.3
    train_seq_len: int = 1024
    train_batch_tokens: int = 524288
    max_wallclock_seconds: float = 600.0
    gptq_reserve_seconds: float = 10.0  # slice of the cap kept for calibration on train data
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    embed_lr: float = 0.05
    muon_momentum: float = 0.95
    muon_ns_steps: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.0  # 0 disables EMA
    swa_every: int = 0  # 0 disables SWA over the warm-down
    train_log_every: int = 100
    # quantization / artifact
    quant_bits: int = 6  # attention + MLP matrices
    embed_bits: int = 8  # embeddings
    passthrough_numel: int = 65536  # tensors at most this large stay float16
    clip_search: bool = True
    quant_method: str = "gptq"  # gptq (needs calibration) | clip (clip search only)
    calib_batches: int = 4  # batches of *training* data for the clip-search calibration
    prune_frac: float = 0.0  # magnitude pruning before quantization
    codec: str = "zstd"  # zstd | lzma | brotli | zlib
    # evaluation
    eval_seq_len: int = 1024
    eval_stride: int = 64  # sliding-window stride; 0 = canonical (non-overlapping) only
    eval_batch_seqs: int = 32
    # test-time adaptation (all score-first; see ttt.py)
    ttt_mode: str = "none"  # none | chunk | lora
    ttt_chunk_tokens: int = 32768
    ttt_epochs: int = 1
    ttt_lr: float = 1e-4
    lora_rank: int = 8
    lora_chunk_tokens: int = 256
    lora_steps: int = 1
    lora_lr: float = 1e-3
    slot_enabled: bool = False  # context-only SLOT
    slot_steps: int = 4
    slot_lr: float = 1e-2
    ngram_tilt: bool = False
    ngram_order: int = 3
    ngram_beta: float = 0.5

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Config":
        env = os.environ if env is None else env
        base = TOY if env.get("CONFIG", "").lower() == "toy" else {}
        kwargs = dict(base)
        for f in fields(cls):
            key = f.name.upper()
            if key in env:
                kwargs[f.name] = _parse(env[key], f.type)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def log_lines(self) -> list[str]:
        return [f"{k}:{v}" for k, v in sorted(self.to_dict().items())]

    def recur_list(self) -> list[int]:
        return [int(x) for x in self.recur_layers.split(",") if x.strip()]


def _parse(raw: str, typ) -> object:
    typ = typ if isinstance(typ, str) else typ.__name__
    if typ == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if typ == "int":
        return int(float(raw))
    if typ == "float":
        return float(raw)
    return raw


# Small enough that train -> quantize -> evaluate -> TTT runs on CPU in seconds.
TOY: dict = dict(
    run_id="toy",
    data_dir="./runs/toy_data",
    tokenizer_path="./runs/toy_data/tokenizer.model",
    synthetic_data=True,
    out_dir="./runs/toy",
    vocab_size=512,
    num_layers=4,
    model_dim=64,
    num_heads=4,
    num_kv_heads=2,
    mlp_mult=2.0,
    bigram_buckets=256,
    bigram_dim=32,
    xsa_last_n=1,
    iterations=40,
    warmup_steps=4,
    train_seq_len=128,
    train_batch_tokens=2048,
    max_wallclock_seconds=30.0,
    gptq_reserve_seconds=1.0,
    matrix_lr=0.02,
    scalar_lr=0.02,
    embed_lr=0.03,
    ema_decay=0.9,
    train_log_every=10,
    passthrough_numel=1024,
    calib_batches=2,
    eval_seq_len=128,
    eval_stride=64,
    eval_batch_seqs=16,
    ttt_mode="chunk",
    ttt_chunk_tokens=2048,
    ttt_lr=1e-3,
    lora_rank=4,
    lora_chunk_tokens=48,
    slot_enabled=True,
    slot_steps=2,
    ngram_tilt=True,
)

