"""Build synthetic record folders for tests, in the challenge's shapes.

Every value a check looks at is a parameter, so each test states the one
thing it breaks and leaves the rest valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

LEGAL_SCRIPT = '''"""Tiny legal record script used by the auditor's tests."""
import os

import torch
import torch.nn.functional as F


class Hyperparameters:
    seed = int(os.environ.get("SEED", 1337))
    train_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600))
    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))


def eval_sliding_window(model, val_tokens, seq_len, stride):
    """Score every token once, each with as much left context as fits."""
    nll_sum, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, val_tokens.numel() - 1, stride):
            end = min(start + seq_len, val_tokens.numel() - 1)
            x = val_tokens[max(0, end - seq_len):end]
            y = val_tokens[max(0, end - seq_len) + 1:end + 1]
            logits = model(x[None])
            nll = F.cross_entropy(logits[0], y, reduction="none")
            fresh = end - start
            nll_sum += nll[-fresh:].sum().item()
            count += fresh
    return nll_sum / count


def main():
    args = Hyperparameters()
    torch.manual_seed(args.seed)
    print(f"seed:{args.seed}")


if __name__ == "__main__":
    main()
'''


@dataclass
class Run:
    seed: int
    val_loss: float = 1.9012345
    val_bpb: float = 1.1260123
    train_ms: int = 599_812
    eval_ms: int = 95_321
    model_bytes: int = 15_800_000
    code_bytes: int | None = None  # what the log prints; None: the shipped size
    val_tokens: int = 40_540_160
    tokenizer: str = "fineweb_8192_bpe"  # its canonical stream: 40,540,160 tokens (auditor.challenge)
    metric: str = "final_int6_sliding_window"
    filename: str | None = None


@dataclass
class RecordSpec:
    runs: list[Run] = field(default_factory=lambda: [Run(42), Run(314), Run(999)])
    script: str | bytes = LEGAL_SCRIPT
    submission: dict | str | bytes | None = None  # None: derived from runs
    readme: str | None = "# Example record\n\nSliding-window eval, int6 + lzma, SP8192 tokenizer.\n"
    extra_files: dict[str, str | bytes] = field(default_factory=dict)
    drop: tuple[str, ...] = ()


def log_text(run: Run, code_bytes: int) -> str:
    steps = 13_000
    lines = [
        f"seed:{run.seed}",
        "world_size:8 grad_accum_steps:1",
        "train_loader:dataset:fineweb10B_sp8192 train_shards:80",
        f"tokenizer_path: ./data/tokenizers/{run.tokenizer}.model",
        f"val_tokens:{run.val_tokens}",
        "step:0/20000 val_loss:9.0108 val_bpb:5.3321 train_time:0ms step_avg:0.01ms",
    ]
    for step in range(1000, steps, 1000):
        ms = run.train_ms * step // steps
        lines.append(f"step:{step}/20000 train_loss:{2.5 - step / 1e5:.4f} train_time:{ms}ms step_avg:{ms / step:.2f}ms")
    lines += [
        f"stopping_early: wallclock_cap train_time:{run.train_ms}ms step:{steps}/20000",
        "peak memory allocated: 21034 MiB reserved: 22100 MiB",
        f"Serialized model int6+lzma: {run.model_bytes} bytes",
        f"Code size: {code_bytes} bytes",
        f"Total submission size int6+lzma: {run.model_bytes + code_bytes} bytes",
        f"{run.metric} val_loss:{run.val_loss:.4f} val_bpb:{run.val_bpb:.4f} eval_time:{run.eval_ms}ms",
        f"{run.metric}_exact val_loss:{run.val_loss:.8f} val_bpb:{run.val_bpb:.8f}",
    ]
    return "\n".join(lines) + "\n"


def default_submission(spec: RecordSpec, code_bytes: int) -> dict:
    bpbs = [round(r.val_bpb, 8) for r in spec.runs]
    return {
        "author": "Test Author",
        "github_id": "test-author",
        "name": "Synthetic record",
        "date": "2026-05-01",
        "track": "track_10min_16mb",
        "val_bpb": round(sum(bpbs) / len(bpbs), 8),
        "seeds": [r.seed for r in spec.runs],
        "seed_results": {str(r.seed): {"val_bpb": round(r.val_bpb, 8), "val_loss": round(r.val_loss, 8)} for r in spec.runs},
        "bytes_total": max(r.model_bytes for r in spec.runs) + code_bytes,
        "bytes_code": code_bytes,
        "hardware": "8xH100 SXM",
    }


def write_record(root: Path, spec: RecordSpec | None = None, name: str = "2026-05-01_synthetic",
                 track: str = "track_10min_16mb") -> Path:
    """Write a record folder under root/track/name and return it."""
    spec = spec or RecordSpec()
    folder = root / track / name
    folder.mkdir(parents=True)
    script = spec.script.encode() if isinstance(spec.script, str) else spec.script
    files: dict[str, str | bytes] = {"train_gpt.py": script}
    shipped = len(script)
    for run in spec.runs:
        files[run.filename or f"train_seed{run.seed}.log"] = log_text(run, run.code_bytes if run.code_bytes is not None else shipped)
    submission = spec.submission if spec.submission is not None else default_submission(spec, shipped)
    files["submission.json"] = submission if isinstance(submission, (str, bytes)) else json.dumps(submission, indent=2)
    if spec.readme is not None:
        files["README.md"] = spec.readme
    files.update(spec.extra_files)
    for name_, content in files.items():
        if name_ in spec.drop:
            continue
        path = folder / name_
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder
