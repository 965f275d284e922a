"""Evidence from training logs: one :class:`RunEvidence` per seed's log.

Logs drift a lot between records, so this parser is tolerant and never raises.
Everything it extracts is a :class:`Cited` value (or a :class:`Metric`) that
remembers the 1-based line number and the stripped line text it came from, so a
finding can quote the log line. What it cannot find goes into
``RunEvidence.missing`` as a human sentence ("could not find headline val_bpb
in train_seed42.log"); what is wrong with the log itself (empty, truncated,
binary, not UTF-8, malformed ``:::PGOLF`` JSON, contradictory values) goes into
``RunEvidence.problems``.

The log is read in one pass with precompiled regexes; per-step training lines
(the bulk of a 10+ MB log) take a fast path.

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

Headline rule
-------------
1. A ``:::PGOLF`` metric event with ``"headline": true`` wins over everything
   (the last such, if several).
2. Otherwise candidates are the structured metrics if the log has any, else the
   scraped ones; only metrics that carry a ``val_bpb``; metrics whose name marks
   them pre-quantization (``pre_quant``, ``prequant``, ``pre-quant``) are not
   candidates, since the artifact that is scored is the quantized one.
3. The headline is the *last* candidate the run printed; if its name does not end
   with ``_exact`` and a ``<name>_exact`` candidate was printed too, that exact
   (full precision) variant is the headline instead.

Eval time
---------
Phases (``eval_phases``, name → ms) come from a metric line's own
``eval_time`` (phase = metric name without ``_exact``), ``<phase>_eval_time:``
/ ``<phase>_eval time:`` lines, a bare ``eval_time:`` on a non-metric line
(phase ``eval``), and structured ``metric``/``eval_phase`` events. A phase
printed twice keeps its last value. The total (``eval_time_ms``) is, in order:
a structured ``eval_end`` event; an explicit ``total_eval_time`` /
``eval_total_time`` / ``eval_time_total``; else the sum of the phases printed
after training ended (``eval_time_summed=True``, cited at the last phase's
line). Times are in ms or s (``ms``, ``s``, ``sec``, ``seconds``, ``min``; a
``_ms``/``_s`` key suffix); a bare number is taken as ms.

Structured lines (``:::PGOLF``)
-------------------------------
The project's reference stack and rerun harness print one JSON object per line
after the prefix ``:::PGOLF`` (anything before the prefix, such as a rank or a
timestamp, is ignored); emit them with :func:`format_pgolf_line`. Every object
must have a string ``"event"``; unknown events and extra keys are kept in
``RunEvidence.structured`` and otherwise ignored. Known events and fields::

    {"event":"config","seed":42,"world_size":8,"hardware":"8x NVIDIA H100 80GB HBM3",
     "gptq_reserve_s":12.0}
    {"event":"data","val_tokens":47851520,"train_shards":80}
    {"event":"train_end","train_time_ms":599000,"steps":1234,"peak_memory_mib":10184}
    {"event":"artifact","bytes_code":48000,"bytes_model":15800000,
     "bytes_total":15848000,"codec":"zstd-22"}
    {"event":"metric","name":"final_sliding_window","val_loss":1.9,"val_bpb":1.12,
     "eval_time_ms":95000,"headline":true}
    {"event":"eval_phase","name":"ttt","eval_time_ms":312000}
    {"event":"eval_end","eval_time_ms":310000}

The scalar fields (``seed``, ``world_size``, ``hardware``, ``gptq_reserve_s``
(alias ``gptq_reserve_seconds``), ``val_tokens``, ``train_shards``,
``train_time_ms``, ``steps``, ``peak_memory_mib``, ``bytes_code``,
``bytes_model``, ``bytes_total``) are read from any event; ``eval_time_ms`` means
a phase in ``metric``/``eval_phase`` and the total in ``eval_end``. Integers
must be JSON integers (or integral floats), times and losses JSON numbers.
Structured values take precedence over scraped ones (the last structured value
of a field wins). Malformed JSON, a non-object, a missing ``event`` or a field
of the wrong type is a ``problems`` entry, never an exception. A structured
metric whose ``val_bpb`` differs from a scraped metric of the same name by more
than 1e-4 is reported in ``problems`` as well.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

__all__ = [
    "PGOLF_PREFIX",
    "Cited",
    "Metric",
    "RunEvidence",
    "format_pgolf_line",
    "looks_like_log",
    "parse_log_file",
    "parse_log_text",
    "seed_from_filename",
]

PGOLF_PREFIX = ":::PGOLF"

_TEXT_MAX = 200
_BPB_TOLERANCE = 1e-4


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) > _TEXT_MAX:
        return text[: _TEXT_MAX - 3] + "..."
    return text


@dataclass(frozen=True)
class Cited:
    """A value with the log line it came from (line 0: not from a log line)."""

    value: Any
    line: int
    text: str


@dataclass(frozen=True)
class Metric:
    """One final metric line (or structured ``metric`` event)."""

    name: str
    val_loss: float | None
    val_bpb: float | None
    eval_time_ms: float | None
    line: int
    text: str
    exact: bool


@dataclass
class RunEvidence:
    """Everything one seed's log says, each value citing its line."""

    log: str
    seed: Cited | None = None
    metrics: list[Metric] = field(default_factory=list)
    headline: Metric | None = None
    train_time_ms: Cited | None = None
    steps: Cited | None = None
    eval_phases: dict[str, Cited] = field(default_factory=dict)
    eval_time_ms: Cited | None = None
    eval_time_summed: bool = False
    bytes_code: Cited | None = None
    bytes_model: Cited | None = None
    bytes_total: Cited | None = None
    val_tokens: Cited | None = None
    train_shards: Cited | None = None
    gptq_reserve_s: Cited | None = None
    world_size: Cited | None = None
    hardware: Cited | None = None
    peak_memory_mib: Cited | None = None
    structured: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    n_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for reports and ``run.json``)."""
        return asdict(self)


# --------------------------------------------------------------------------
# regexes (compiled once)

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|[-+]?inf)(?![A-Za-z])"
_UNIT = r"(ms|seconds|secs|sec|s|minutes|min)?\b"

_STEP_RE = re.compile(r"(?<![\w])step\s*[:=]\s*(\d+)\s*/\s*(\d+)")
_TRAIN_TIME_RE = re.compile(rf"(?<![\w])train_time(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}")
_PROGRESS_RE = re.compile(r"(?<![\w./])\d+\s*/\s*\d+(?![\w./])")
_STEP_WORD_RE = re.compile(r"^\W*step\b", re.I)

# `(?![\w}])`: not the `.4` of an f-string format spec `{val_loss:.4f}` in a code dump
_VAL_LOSS_RE = re.compile(rf"(?<![\w])val_loss\s*[:=]?\s*({_NUM})(?![\w}}])")
_VAL_BPB_RE = re.compile(rf"(?<![\w])val_bpb\s*[:=]?\s*({_NUM})(?![\w}}])")
_NAME_BEFORE_RE = re.compile(r"([A-Za-z_][\w.+\-]*)[\s:=,|\]\)\-]*$")

_EVAL_TIME_RE = re.compile(rf"(?<![\w])eval[_ ]time(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}", re.I)
_PHASE_TIME_RE = re.compile(
    rf"(?<![\w])([A-Za-z]\w*?)_eval[_ ]time(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}", re.I
)
_TOTAL_EVAL_RE = re.compile(
    rf"(?<![\w])(?:total_eval_time|eval_total_time|eval_time_total)(?:_(ms|s))?\s*[:=]\s*({_NUM})\s*{_UNIT}",
    re.I,
)

# `key: N`, `"key": N` or `key=N`; not `key = N` (assignments in a pasted code dump)
_KV = r"(?:['\"]?\s*:\s*|=)"
_SEED_RE = re.compile(rf"(?<![\w])seed{_KV}['\"]?(\d+)\b", re.I)
_WORLD_RE = re.compile(rf"(?<![\w])world_size{_KV}(\d+)\b", re.I)
_SHARDS_RE = re.compile(rf"(?<![\w])train_shards{_KV}(\d+)\b", re.I)
_VAL_TOKENS_RE = re.compile(rf"(?<![\w])val_tokens{_KV}(\d+)\b", re.I)
_VAL_LOADER_RE = re.compile(r"^\W*val_loader\b.*?(?<![\w])tokens\s*[:=]\s*(\d+)\b", re.I)
_GPTQ_RE = re.compile(
    rf"(?<![\w])gptq_reserve(?:_seconds|_secs|_sec|_s)?{_KV}({_NUM})\s*(ms|s)?\b", re.I
)
_PEAK_RE = re.compile(rf"peak memory allocated\s*[:=]\s*({_NUM})\s*(MiB|GiB|MB|GB)?", re.I)

_SMI_ROW_RE = re.compile(r"^\|\s*(\d+)\s+([A-Za-z][^|]*?)\s+(?:On|Off)\s*\|")
_DEVICE_RE = re.compile(r"(?<![\w])(?:device|gpu|gpus|hardware)(?:_name)?\s*[:=]\s*(.+?)\s*$", re.I)
_GPU_WORD_RE = re.compile(r"nvidia|tesla|geforce|rtx|\b[ahlbv]\d{2,3}\b|h100|h200|a100|mi\d{3}|amd|tpu", re.I)
_COUNT_SUFFIX_RE = re.compile(r"^(.*?)\s*[x×]\s*(\d+)$")
_COUNT_PREFIX_RE = re.compile(r"^(\d+)\s*[x×]\s*(.+)$")

_SER_RE = re.compile(r"serialized model\b([^:]*):\s*([\d,_]+)\s*bytes", re.I)
_TOTAL_RE = re.compile(r"total submission size\b([^:]*):\s*([\d,_]+)\s*bytes", re.I)
_CODE_RE = re.compile(r"(?<![\w])code size\b([^:]*):\s*([\d,_]+)\s*bytes", re.I)
_BYTES_KV_RE = re.compile(rf"(?<![\w])bytes_(total|code|model){_KV}(\d+)\b")
_RAW_QUAL_RE = re.compile(r"raw|uncompressed|fp32|fp16|bf16|pre.?quant", re.I)
_PREQUANT_RE = re.compile(r"pre[_\-]?quant", re.I)

_CTRL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")

_FN_SEED_RE = re.compile(r"seed[_\-=]?(\d+)", re.I)
_FN_S_RE = re.compile(r"(?:^|[_\-.])s(\d+)(?=[_\-.]|$)", re.I)
_NOT_LOG_RE = re.compile(r"^(requirements|readme|license|licence|notes?|constraints|changelog)")
_LOG_TXT_RE = re.compile(
    r"^(train|log|seed|run|output|out|stdout|stderr|eval)|seed|(?:^|[_\-.])logs?(?:$|[_\-.])|(?:^|[_\-.])s\d+(?:$|[_\-.])"
)


# --------------------------------------------------------------------------
# small helpers


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _to_ms(num: str, key_unit: str | None, unit: str | None) -> float | None:
    v = _to_float(num)
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


def _to_int(s: str) -> int | None:
    try:
        return int(s.replace(",", "").replace("_", ""))
    except (TypeError, ValueError):
        return None


def _base_name(name: str) -> str:
    return name[: -len("_exact")] if name.endswith("_exact") else name


def _is_compressed(qualifier: str) -> bool:
    q = qualifier.strip(" \t()[]-")
    return bool(q) and not _RAW_QUAL_RE.search(q)


# structured field -> (attribute, kind)
_STRUCT_FIELDS: dict[str, tuple[str, str]] = {
    "seed": ("seed", "int"),
    "world_size": ("world_size", "int"),
    "hardware": ("hardware", "str"),
    "gptq_reserve_s": ("gptq_reserve_s", "float"),
    "gptq_reserve_seconds": ("gptq_reserve_s", "float"),
    "val_tokens": ("val_tokens", "int"),
    "train_shards": ("train_shards", "int"),
    "train_time_ms": ("train_time_ms", "float"),
    "steps": ("steps", "int"),
    "peak_memory_mib": ("peak_memory_mib", "float"),
    "bytes_code": ("bytes_code", "int"),
    "bytes_model": ("bytes_model", "int"),
    "bytes_total": ("bytes_total", "int"),
}


def _coerce(value: Any, kind: str) -> tuple[bool, Any]:
    """(ok, value) for a structured field; bools are never numbers."""
    if value is None:
        return True, None
    if isinstance(value, bool):
        return False, None
    if kind == "int":
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, None
    if kind == "float":
        if isinstance(value, (int, float)):
            return True, float(value)
        return False, None
    if kind == "str":
        return (True, value) if isinstance(value, str) else (False, None)
    return False, None


# --------------------------------------------------------------------------
# the parser


class _Scan:
    """Mutable state of one pass over a log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []
        self.scraped: dict[str, Cited] = {}
        self.struct: dict[str, Cited] = {}
        self.structured: list[dict] = []
        # (metric, from_structured, headline_flag)
        self.metrics: list[tuple[Metric, bool, bool]] = []
        self.phases: dict[str, Cited] = {}
        self.total_eval: Cited | None = None
        self.struct_total_eval: Cited | None = None
        self.last_step: tuple[int, int, int, str] | None = None  # line, n, m, text
        self.last_step_time: Cited | None = None  # last step line that carried train_time
        self.stop: Cited | None = None
        self.stop_steps: Cited | None = None
        self.seeds_seen: list[Cited] = []
        self.smi: dict[int, tuple[str, int, str]] = {}  # gpu index -> (model, line, text)
        self.device: Cited | None = None
        self.total_raw: Cited | None = None
        self.total_comp: Cited | None = None
        self.model_raw: Cited | None = None
        self.model_comp: Cited | None = None

    # -- helpers ---------------------------------------------------------
    def first(self, key: str, value: Any, line: int, text: str) -> None:
        if key not in self.scraped:
            self.scraped[key] = Cited(value, line, _clip(text))

    def last(self, key: str, value: Any, line: int, text: str) -> None:
        self.scraped[key] = Cited(value, line, _clip(text))

    # -- line handlers ---------------------------------------------------
    def structured_line(self, i: int, line: str, idx: int) -> None:
        payload = line[idx + len(PGOLF_PREFIX):].strip()
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self.problems.append(
                f"malformed {PGOLF_PREFIX} line {i} in {self.name}: {exc.__class__.__name__}: {exc}"
            )
            return
        if not isinstance(obj, dict):
            self.problems.append(f"malformed {PGOLF_PREFIX} line {i} in {self.name}: not a JSON object")
            return
        event = obj.get("event")
        if not isinstance(event, str) or not event:
            self.problems.append(f"malformed {PGOLF_PREFIX} line {i} in {self.name}: no string \"event\" key")
            return
        self.structured.append(obj)
        text = _clip(line)

        def bad(key: str) -> None:
            self.problems.append(
                f"bad {PGOLF_PREFIX} field {key}={obj.get(key)!r} ({event}) at line {i} in {self.name}"
            )

        for key, (attr, kind) in _STRUCT_FIELDS.items():
            if key in obj:
                ok, value = _coerce(obj[key], kind)
                if not ok:
                    bad(key)
                elif value is not None:
                    self.struct[attr] = Cited(value, i, text)
                    if attr == "seed":
                        self.seeds_seen.append(self.struct[attr])

        eval_ms: float | None = None
        if "eval_time_ms" in obj:
            ok, eval_ms = _coerce(obj["eval_time_ms"], "float")
            if not ok:
                bad("eval_time_ms")
                eval_ms = None

        if event == "metric":
            vals: dict[str, float | None] = {}
            for key in ("val_loss", "val_bpb"):
                ok, vals[key] = _coerce(obj.get(key), "float")
                if not ok:
                    bad(key)
            name = obj.get("name")
            if not isinstance(name, str) or not name:
                if "name" in obj:
                    bad("name")
                name = "unnamed"
            if vals["val_loss"] is None and vals["val_bpb"] is None:
                self.problems.append(
                    f"{PGOLF_PREFIX} metric at line {i} in {self.name} has neither val_loss nor val_bpb"
                )
            else:
                headline = obj.get("headline") is True
                m = Metric(name, vals["val_loss"], vals["val_bpb"], eval_ms, i, text, name.endswith("_exact"))
                self.metrics.append((m, True, headline))
            if eval_ms is not None:
                self.phases[_base_name(name)] = Cited(eval_ms, i, text)
        elif event == "eval_phase":
            name = obj.get("name")
            if isinstance(name, str) and name and eval_ms is not None:
                self.phases[name] = Cited(eval_ms, i, text)
            else:
                bad("name" if not isinstance(name, str) or not name else "eval_time_ms")
        elif event == "eval_end" and eval_ms is not None:
            self.struct_total_eval = Cited(eval_ms, i, text)

    def step_line(self, i: int, line: str, m: re.Match) -> None:
        t = _TRAIN_TIME_RE.search(line)
        ms = _to_ms(t.group(2), t.group(1), t.group(3)) if t else None
        self.last_step = (i, int(m.group(1)), int(m.group(2)), line)
        if ms is not None:
            self.last_step_time = Cited(ms, i, _clip(line))

    def stop_line(self, i: int, line: str) -> None:
        t = _TRAIN_TIME_RE.search(line)
        if t:
            ms = _to_ms(t.group(2), t.group(1), t.group(3))
            if ms is not None:
                self.stop = Cited(ms, i, _clip(line))
        s = _STEP_RE.search(line)
        if s:
            self.stop_steps = Cited(int(s.group(1)), i, _clip(line))

    def other_line(self, i: int, line: str) -> None:
        low = line.lower()
        progress = bool(_PROGRESS_RE.search(line)) or "train_loss" in low or bool(_STEP_WORD_RE.match(line))

        # final metrics
        metric_base: str | None = None
        if "val_" in low and not progress:
            lm = _VAL_LOSS_RE.search(line)
            bm = _VAL_BPB_RE.search(line)
            if lm or bm:
                pos = min(x.start() for x in (lm, bm) if x)
                nm = _NAME_BEFORE_RE.search(line[:pos])
                name = nm.group(1).rstrip(":=.-") if nm else "unnamed"
                name = name or "unnamed"
                et = _EVAL_TIME_RE.search(line)
                eval_ms = _to_ms(et.group(2), et.group(1), et.group(3)) if et else None
                metric = Metric(
                    name,
                    _to_float(lm.group(1)) if lm else None,
                    _to_float(bm.group(1)) if bm else None,
                    eval_ms,
                    i,
                    _clip(line),
                    name.endswith("_exact"),
                )
                self.metrics.append((metric, False, False))
                metric_base = _base_name(name)
                if eval_ms is not None:
                    self.phases[metric_base] = Cited(eval_ms, i, _clip(line))

        # eval time phases and totals
        if "time" in low and "eval" in low and not progress:
            tot = _TOTAL_EVAL_RE.search(line)
            if tot:
                ms = _to_ms(tot.group(2), tot.group(1), tot.group(3))
                if ms is not None:
                    self.total_eval = Cited(ms, i, _clip(line))
            for pm in _PHASE_TIME_RE.finditer(line):
                phase = pm.group(1)
                if phase.lower() == "total":
                    continue
                ms = _to_ms(pm.group(3), pm.group(2), pm.group(4))
                if ms is not None:
                    self.phases[phase] = Cited(ms, i, _clip(line))
            if metric_base is None and not tot:
                et = _EVAL_TIME_RE.search(line)
                if et:
                    ms = _to_ms(et.group(2), et.group(1), et.group(3))
                    if ms is not None:
                        self.phases["eval"] = Cited(ms, i, _clip(line))

        # stop line without the word step at start is handled by the caller

        # config
        if "seed" in low:
            sm = _SEED_RE.search(line)
            if sm:
                c = Cited(int(sm.group(1)), i, _clip(line))
                self.seeds_seen.append(c)
                self.first("seed", c.value, i, line)
        if "world_size" in low:
            wm = _WORLD_RE.search(line)
            if wm:
                self.first("world_size", int(wm.group(1)), i, line)
        if "train_shards" in low:
            sh = _SHARDS_RE.search(line)
            if sh:
                self.first("train_shards", int(sh.group(1)), i, line)
        if "tokens" in low:
            vt = _VAL_TOKENS_RE.search(line) or _VAL_LOADER_RE.search(line)
            if vt:
                self.first("val_tokens", int(vt.group(1)), i, line)
        if "gptq_reserve" in low:
            gm = _GPTQ_RE.search(line)
            if gm:
                v = _to_float(gm.group(1))
                if v is not None:
                    if (gm.group(2) or "").lower() == "ms":
                        v /= 1000.0
                    self.first("gptq_reserve_s", v, i, line)
        if "peak memory" in low:
            pk = _PEAK_RE.search(line)
            if pk:
                v = _to_float(pk.group(1))
                if v is not None:
                    unit = (pk.group(2) or "MiB").lower()
                    if unit in ("gib", "gb"):
                        v *= 1024.0
                    self.last("peak_memory_mib", v, i, line)

        # hardware
        if line.startswith("|"):
            row = _SMI_ROW_RE.match(line)
            if row:
                self.smi[int(row.group(1))] = (" ".join(row.group(2).split()), i, line)
        elif self.device is None and ("device" in low or "gpu" in low or "hardware" in low):
            dm = _DEVICE_RE.search(line)
            if dm and _GPU_WORD_RE.search(dm.group(1)):
                value = dm.group(1).strip()
                suf = _COUNT_SUFFIX_RE.match(value)
                pre = _COUNT_PREFIX_RE.match(value)
                if suf and suf.group(1):
                    value = f"{int(suf.group(2))}x {suf.group(1).strip()}"
                elif pre:
                    value = f"{int(pre.group(1))}x {pre.group(2).strip()}"
                self.device = Cited(value, i, _clip(line))

        # sizes
        if "bytes" in low:
            sm2 = _SER_RE.search(line)
            if sm2:
                n = _to_int(sm2.group(2))
                if n is not None:
                    c = Cited(n, i, _clip(line))
                    if _is_compressed(sm2.group(1)):
                        self.model_comp = c
                    else:
                        self.model_raw = c
            tm = _TOTAL_RE.search(line)
            if tm:
                n = _to_int(tm.group(2))
                if n is not None:
                    c = Cited(n, i, _clip(line))
                    if _is_compressed(tm.group(1)):
                        self.total_comp = c
                    else:
                        self.total_raw = c
            cm = _CODE_RE.search(line)
            if cm:
                n = _to_int(cm.group(2))
                if n is not None:
                    self.last("bytes_code", n, i, line)
            for bk in _BYTES_KV_RE.finditer(line):
                c = Cited(int(bk.group(2)), i, _clip(line))
                kind = bk.group(1)
                if kind == "total":
                    self.total_comp = c
                elif kind == "model":
                    self.model_comp = c
                else:
                    self.scraped["bytes_code"] = c


def _choose_headline(scan: _Scan) -> tuple[Metric | None, str | None]:
    """Apply the headline rule (module docstring); (metric, why-none)."""
    flagged = [m for m, st, h in scan.metrics if st and h and m.val_bpb is not None]
    if flagged:
        return flagged[-1], None
    structured = [(m, st) for m, st, _ in scan.metrics if st]
    pool = [m for m, st in structured] if structured else [m for m, _, _ in scan.metrics]
    with_bpb = [m for m in pool if m.val_bpb is not None]
    candidates = [m for m in with_bpb if not _PREQUANT_RE.search(m.name)]
    if not candidates:
        if with_bpb:
            names = ", ".join(sorted({m.name for m in with_bpb}))
            return None, f"only pre-quantization metrics were printed: {names}"
        return None, None
    last = candidates[-1]
    if not last.exact:
        exact = [m for m in candidates if m.name == last.name + "_exact"]
        if exact:
            return exact[-1], None
    return last, None


def parse_log_text(text: str, name: str) -> RunEvidence:
    """Parse one log's text into a :class:`RunEvidence`. Never raises."""
    try:
        return _parse(text, name)
    except Exception as exc:  # pragma: no cover - last line of defence
        ev = RunEvidence(log=name)
        ev.problems.append(f"internal error while parsing {name}: {exc.__class__.__name__}: {exc}")
        ev.missing.append(f"could not find headline val_bpb in {name}")
        return ev


def _parse(text: str, name: str) -> RunEvidence:
    if not isinstance(text, str):
        text = str(text)
    if text.startswith("\ufeff"):
        text = text[1:]
    scan = _Scan(name)
    ev = RunEvidence(log=name)

    lines = text.split("\n")
    ends_with_newline = text.endswith("\n")
    if ends_with_newline:
        lines.pop()
    ev.n_lines = len(lines) if text else 0

    nul = text.count("\x00")
    ctrl = len(_CTRL_RE.findall(text)) if text else 0
    if nul:
        ev.problems.append(f"{name} looks binary: it contains {nul} NUL byte(s)")
    elif text and ctrl > max(8, len(text) // 20):
        ev.problems.append(f"{name} looks binary: {ctrl} control characters in {len(text)} characters")
    if not text.strip():
        ev.problems.append(f"{name} is empty")

    for i, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        if not line:
            continue
        if PGOLF_PREFIX in line:
            scan.structured_line(i, line, line.index(PGOLF_PREFIX))
            continue
        if "stopping_early" in line:
            scan.stop_line(i, line)
            continue
        if "step" in line:
            sm = _STEP_RE.search(line)
            if sm:
                scan.step_line(i, line, sm)
                continue
        scan.other_line(i, line)

    _finish(scan, ev, ends_with_newline)
    return ev


def _finish(scan: _Scan, ev: RunEvidence, ends_with_newline: bool) -> None:
    name = scan.name
    ev.structured = scan.structured
    ev.metrics = [m for m, _, _ in scan.metrics]
    ev.problems.extend(scan.problems)

    # training time and steps: structured > stopping_early > last step line
    train_end_line = 0
    if scan.stop is not None:
        scan.scraped["train_time_ms"] = scan.stop
    elif scan.last_step_time is not None:
        scan.scraped["train_time_ms"] = scan.last_step_time
    if scan.stop_steps is not None:
        scan.scraped["steps"] = scan.stop_steps
    elif scan.last_step is not None:
        li, n, _, txt = scan.last_step
        scan.scraped["steps"] = Cited(n, li, _clip(txt))
    for c in (scan.stop, scan.stop_steps):
        if c is not None:
            train_end_line = max(train_end_line, c.line)
    if scan.last_step is not None:
        train_end_line = max(train_end_line, scan.last_step[0])

    # hardware: nvidia-smi table > device/gpu line
    if scan.smi:
        counts: dict[str, int] = {}
        for model, _, _ in scan.smi.values():
            counts[model] = counts.get(model, 0) + 1
        first = min(scan.smi.values(), key=lambda r: r[1])
        value = " + ".join(f"{n}x {model}" for model, n in counts.items())
        scan.scraped["hardware"] = Cited(value, first[1], _clip(first[2]))
    elif scan.device is not None:
        scan.scraped["hardware"] = scan.device

    # sizes: compressed > raw
    model = scan.model_comp or scan.model_raw
    if model is not None:
        scan.scraped["bytes_model"] = model
    raw_total_note = None
    if scan.total_comp is not None:
        scan.scraped["bytes_total"] = scan.total_comp
    elif scan.total_raw is not None:
        if scan.model_comp is not None:
            raw_total_note = (
                f"could not find total submission size in {name}: only an uncompressed total "
                f"({scan.total_raw.value} bytes, line {scan.total_raw.line}) was printed, while the model "
                f"was serialized compressed ({scan.model_comp.value} bytes, line {scan.model_comp.line})"
            )
        else:
            scan.scraped["bytes_total"] = scan.total_raw

    # structured wins
    merged = dict(scan.scraped)
    merged.update(scan.struct)
    if "train_time_ms" in scan.struct:
        train_end_line = max(train_end_line, scan.struct["train_time_ms"].line)
    for attr in (
        "seed", "train_time_ms", "steps", "bytes_code", "bytes_model", "bytes_total",
        "val_tokens", "train_shards", "gptq_reserve_s", "world_size", "hardware", "peak_memory_mib",
    ):
        setattr(ev, attr, merged.get(attr))

    # seed: conflicts, file name fallback
    distinct = {}
    for c in scan.seeds_seen:
        distinct.setdefault(c.value, c)
    if len(distinct) > 1:
        shown = ", ".join(f"{c.value} (line {c.line})" for c in distinct.values())
        ev.problems.append(f"{name} prints different seeds: {shown}")
    fn_seed = seed_from_filename(name)
    if ev.seed is None and fn_seed is not None:
        ev.seed = Cited(fn_seed, 0, _clip(PurePath(name).name))
    elif ev.seed is not None and fn_seed is not None and fn_seed != ev.seed.value:
        ev.problems.append(
            f"seed {ev.seed.value} in {name} (line {ev.seed.line}) differs from the seed {fn_seed} in its file name"
        )

    # metrics: structured vs scraped disagreement
    scraped_last: dict[str, Metric] = {}
    for m, st, _ in scan.metrics:
        if not st:
            scraped_last[_base_name(m.name)] = m
    for m, st, _ in scan.metrics:
        if st and m.val_bpb is not None:
            other = scraped_last.get(_base_name(m.name))
            if (
                other is not None
                and other.val_bpb is not None
                and not (abs(other.val_bpb - m.val_bpb) <= _BPB_TOLERANCE)
            ):
                ev.problems.append(
                    f"{PGOLF_PREFIX} metric {m.name} val_bpb {m.val_bpb} (line {m.line}) disagrees with "
                    f"the printed {other.name} val_bpb {other.val_bpb} (line {other.line}) in {name}; "
                    f"using the structured value"
                )
    for attr in ("bytes_code", "bytes_model", "bytes_total"):
        st_c, sc_c = scan.struct.get(attr), scan.scraped.get(attr)
        if st_c is not None and sc_c is not None and st_c.value != sc_c.value:
            ev.problems.append(
                f"{PGOLF_PREFIX} {attr} {st_c.value} (line {st_c.line}) disagrees with the printed "
                f"{sc_c.value} bytes (line {sc_c.line}) in {name}; using the structured value"
            )
    headline, why_none = _choose_headline(scan)
    ev.headline = headline
    if headline is not None and headline.val_bpb is not None and not math.isfinite(headline.val_bpb):
        ev.problems.append(f"headline val_bpb in {name} is not finite ({headline.val_bpb}, line {headline.line})")

    # eval time
    ev.eval_phases = dict(scan.phases)
    if scan.struct_total_eval is not None:
        ev.eval_time_ms = scan.struct_total_eval
    elif scan.total_eval is not None:
        ev.eval_time_ms = scan.total_eval
    else:
        after = [c for c in scan.phases.values() if c.line > train_end_line]
        if after:
            last_phase = max(after, key=lambda c: c.line)
            total = sum(c.value for c in after)
            ev.eval_time_ms = Cited(total, last_phase.line, last_phase.text)
            ev.eval_time_summed = True

    # truncation: training ran but nothing final followed
    if scan.last_step is not None:
        last_line = max(
            [scan.last_step[0]] + [c.line for c in (scan.stop, scan.stop_steps) if c is not None]
        )
        if not any(m.line > last_line for m in ev.metrics):
            li, n, total_steps, _ = scan.last_step
            detail = "" if ends_with_newline else "; its last line has no newline"
            ev.problems.append(
                f"{name} appears truncated: no final metric after training "
                f"(last step {n}/{total_steps} at line {li}){detail}"
            )

    # missing evidence
    if ev.headline is None:
        extra = f" ({why_none})" if why_none else ""
        ev.missing.append(f"could not find headline val_bpb in {name}{extra}")
    if ev.seed is None:
        ev.missing.append(f"could not find seed in {name} (neither in the log nor in its file name)")
    if ev.train_time_ms is None:
        ev.missing.append(f"could not find training time in {name}")
    if ev.bytes_total is None:
        ev.missing.append(raw_total_note or f"could not find total submission size in {name}")
    if ev.eval_time_ms is None:
        ev.missing.append(f"could not find eval time in {name}")


def parse_log_file(path: Path, *, max_bytes: int = 64 * 2**20) -> RunEvidence:
    """Read a log file (at most ``max_bytes``) and parse it. Never raises.

    Bytes are decoded as UTF-8 with replacement; invalid UTF-8, NUL bytes, an
    over-long file (parsed up to its last complete line within ``max_bytes``)
    and an unreadable or missing file are ``problems`` entries.
    """
    name = str(path)
    try:
        name = PurePath(path).name or str(path)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except Exception as exc:
        ev = RunEvidence(log=name)
        ev.problems.append(f"could not read {name}: {exc.__class__.__name__}: {exc}")
        ev.missing.append(f"could not find headline val_bpb in {name}")
        seed = seed_from_filename(name)
        if seed is not None:
            ev.seed = Cited(seed, 0, name)
        return ev

    notes: list[str] = []
    if len(data) > max_bytes:
        data = data[:max_bytes]
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
        notes.append(
            f"{name} is larger than {max_bytes} bytes; only its first {len(data)} bytes were parsed"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        notes.append(
            f"{name} is not valid UTF-8 (first bad byte at offset {exc.start}); decoded with replacement characters"
        )
    ev = parse_log_text(text, name)
    ev.problems[:0] = notes
    return ev


def seed_from_filename(name: str) -> int | None:
    """Seed from a log's file name: ``train_seed42.log``, ``seed_1337.txt``, ``log_s42.txt``."""
    try:
        base = PurePath(str(name).replace("\\", "/")).name
    except Exception:
        return None
    m = _FN_SEED_RE.search(base)
    if m:
        return int(m.group(1))
    stem = base.rsplit(".", 1)[0] if "." in base else base
    m = _FN_S_RE.search(stem)
    if m:
        return int(m.group(1))
    return None


def looks_like_log(name: str) -> bool:
    """True for ``*.log``, and for ``*.txt`` whose name reads like a log.

    ``train*.txt``, ``log*.txt``, ``seed*.txt``, ``run*``/``output*``/``eval*``,
    names containing ``seed``, a ``log``/``logs`` word or an ``s42``-style seed
    word; never ``requirements.txt``, ``README``, licences, notes.
    """
    try:
        base = PurePath(str(name).replace("\\", "/")).name.lower()
    except Exception:
        return False
    if base.endswith(".log"):
        return True
    if not base.endswith(".txt"):
        return False
    stem = base[: -len(".txt")]
    if not stem or _NOT_LOG_RE.match(stem):
        return False
    return bool(_LOG_TXT_RE.search(stem))


def format_pgolf_line(event: str, **fields: Any) -> str:
    """One ``:::PGOLF {json}`` line (no newline) for emitters; see the module schema.

    Compact JSON, ``"event"`` first, non-JSON values via ``str``. Raises
    ``ValueError`` only for an empty or non-string event (a programming error).
    """
    if not isinstance(event, str) or not event:
        raise ValueError("event must be a non-empty string")
    payload = {"event": event, **fields}
    return f"{PGOLF_PREFIX} " + json.dumps(payload, separators=(",", ":"), default=str, ensure_ascii=True)
