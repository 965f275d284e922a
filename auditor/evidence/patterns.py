"""The log forms the parser scrapes: precompiled regexes and readers for what they capture.

Logs drift a lot between records; each regex below names the forms it accepts.

Scraped forms
-------------
- Training steps ``step:100/20000 train_loss:3.21 train_time:4321ms ...`` and
  periodic ``step:1000/20000 val_loss:... val_bpb:... train_time:...``. Step
  lines are *never* final metrics. ``step=N/M`` and ``train_time=43.2s`` work too.
- Training time and steps: ``stopping_early: wallclock_cap train_time:600038ms
  step:13780/20000`` if printed, else the last step line.
- Config: ``seed:1337`` / ``seed=42`` / ``Seed: 42`` / ``"seed": 42``,
  ``world_size:8``, ``train_shards:80``, ``val_tokens:47851520``,
  ``val_loader:... tokens:62021632``, ``GPTQ_RESERVE_SECONDS=12`` /
  ``gptq_reserve_seconds:12.0``, ``peak memory allocated: 10184 MiB ...``.
  The first occurrence wins; a second, different seed is a problem.
- Hardware: GPU rows of a pasted ``nvidia-smi`` table (distinct indices counted
  per model, e.g. ``8x NVIDIA H100 80GB HBM3``), else ``device: NVIDIA H100
  80GB HBM3 x8`` / ``gpu:NVIDIA H100 80GB HBM3`` (a count only when printed).
- Sizes: ``Code size: N bytes`` (last), ``Serialized model[ <quant>+<codec>]: N
  bytes`` and ``Total submission size[ <quant>+<codec>]: N bytes``. The
  artifact is the *compressed* one: the last qualified line wins over raw ones.
  A raw ``Total submission size`` printed while the model was later serialized
  compressed is not the artifact: ``bytes_total`` stays ``None`` and ``missing``
  says why (the raw total would otherwise read as a false size violation).
  ``bytes_total=N`` / ``bytes_code=N`` / ``bytes_model=N`` count as compressed.
- Final metrics: a line with ``val_loss`` and/or ``val_bpb`` followed by a
  number (``:``, ``=`` or a space), which is not a training/progress line (no
  ``step:``, no ``train_loss``, no ``N/M`` counter). Its name is the word just
  before the first ``val_*`` key (``final_int8_zlib_roundtrip``,
  ``legal_ttt_exact``, ``final_eval:`` → ``final_eval``; ``unnamed`` if none).
  ``eval_time:1406ms`` / ``eval_time=95.3s`` on the line is its eval time.
- Eval times: ``<phase>_eval_time:`` / ``<phase>_eval time:``, a bare
  ``eval_time:``, and totals ``total_eval_time`` / ``eval_total_time`` /
  ``eval_time_total``. Times are in ms or s (``ms``, ``s``, ``sec``,
  ``seconds``, ``min``; a ``_ms``/``_s`` key suffix); a bare number is ms.
"""

from __future__ import annotations

import re

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|[-+]?inf)(?![A-Za-z])"
_UNIT = r"(ms|seconds|secs|sec|s|minutes|min)?\b"

# training progress
STEP_RE = re.compile(r"(?<![\w])step\s*[:=]\s*(\d+)\s*/\s*(\d+)")
TRAIN_TIME_RE = re.compile(rf"(?<![\w])train_time(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}")
PROGRESS_RE = re.compile(r"(?<![\w./])\d+\s*/\s*\d+(?![\w./])")
STEP_WORD_RE = re.compile(r"^\W*step\b", re.I)

# final metrics; `(?![\w}])`: not the `.4` of an f-string format spec `{val_loss:.4f}` in a code dump
VAL_LOSS_RE = re.compile(rf"(?<![\w])val_loss\s*[:=]?\s*({_NUM})(?![\w}}])")
VAL_BPB_RE = re.compile(rf"(?<![\w])val_bpb\s*[:=]?\s*({_NUM})(?![\w}}])")
NAME_BEFORE_RE = re.compile(r"([A-Za-z_][\w.+\-]*)[\s:=,|\]\)\-]*$")
PREQUANT_RE = re.compile(r"pre[_\-]?quant", re.I)

# eval times
EVAL_TIME_RE = re.compile(rf"(?<![\w])eval[_ ]time(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}", re.I)
PHASE_TIME_RE = re.compile(
    rf"(?<![\w])([A-Za-z]\w*?)_eval[_ ]time(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}", re.I
)
TOTAL_EVAL_RE = re.compile(
    rf"(?<![\w])(?:total_eval_time|eval_total_time|eval_time_total)(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}",
    re.I,
)

# config: `key: N`, `"key": N` or `key=N`; not `key = N` (assignments in a pasted code dump)
_KV = r"(?:['\"]?\s*:\s*|=)"
SEED_RE = re.compile(rf"(?<![\w])seed{_KV}['\"]?(\d+)\b", re.I)
WORLD_RE = re.compile(rf"(?<![\w])world_size{_KV}(\d+)\b", re.I)
SHARDS_RE = re.compile(rf"(?<![\w])train_shards{_KV}(\d+)\b", re.I)
VAL_TOKENS_RE = re.compile(rf"(?<![\w])val_tokens{_KV}(\d+)\b", re.I)
VAL_LOADER_RE = re.compile(r"^\W*val_loader\b.*?(?<![\w])tokens\s*[:=]\s*(\d+)\b", re.I)
GPTQ_RE = re.compile(
    rf"(?<![\w])gptq_reserve(?:_seconds|_secs|_sec|_s)?{_KV}({_NUM})\s*(ms|s)?\b", re.I
)
PEAK_RE = re.compile(rf"peak memory allocated\s*[:=]\s*({_NUM})\s*(MiB|GiB|MB|GB)?", re.I)

# hardware
SMI_ROW_RE = re.compile(r"^\|\s*(\d+)\s+([A-Za-z][^|]*?)\s+(?:On|Off)\s*\|")
DEVICE_RE = re.compile(r"(?<![\w])(?:device|gpu|gpus|hardware)(?:_name)?\s*[:=]\s*(.+?)\s*$", re.I)
GPU_WORD_RE = re.compile(r"nvidia|tesla|geforce|rtx|\b[ahlbv]\d{2,3}\b|h100|h200|a100|mi\d{3}|amd|tpu", re.I)
COUNT_SUFFIX_RE = re.compile(r"^(.*?)\s*[x×]\s*(\d+)$")
COUNT_PREFIX_RE = re.compile(r"^(\d+)\s*[x×]\s*(.+)$")

# sizes
SER_RE = re.compile(r"serialized model\b([^:]*):\s*([\d,_]+)\s*bytes", re.I)
TOTAL_RE = re.compile(r"total submission size\b([^:]*):\s*([\d,_]+)\s*bytes", re.I)
CODE_RE = re.compile(r"(?<![\w])code size\b([^:]*):\s*([\d,_]+)\s*bytes", re.I)
BYTES_KV_RE = re.compile(rf"(?<![\w])bytes_(total|code|model){_KV}(\d+)\b")
_RAW_QUAL_RE = re.compile(r"raw|uncompressed|fp32|fp16|bf16|pre.?quant", re.I)


def to_float(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def to_ms(num: str, key_unit: str | None, unit: str | None) -> float | None:
    """A captured time in ms; the unit after the number beats a ``_ms``/``_s`` key suffix."""
    v = to_float(num)
    if v is None:
        return None
    u = (unit or key_unit or "ms").lower()
    if u == "ms":
        return v
    if u in ("s", "sec", "secs", "seconds"):
        return v * 1000.0
    if u in ("min", "minutes"):
        return v * 60000.0
    return v


MAX_COUNT = 10**18  # no byte count, token count or step is this large; sums of larger ones overflow printing


def to_int(s: str) -> int | None:
    """A captured byte count; ``,`` and ``_`` digit separators allowed; None past MAX_COUNT."""
    try:
        n = int(s.replace(",", "").replace("_", ""))
    except (TypeError, ValueError):
        return None
    return n if abs(n) < MAX_COUNT else None


def is_compressed(qualifier: str) -> bool:
    """Whether a size line's qualifier (``int6+lzma``, ``(raw)``) names a compressed artifact."""
    q = qualifier.strip(" \t()[]-")
    return bool(q) and not _RAW_QUAL_RE.search(q)
