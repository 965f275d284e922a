"""The ``:::PGOLF`` structured-line schema: reading one line, and emitting one.

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
from dataclasses import dataclass, field
from typing import Any

from auditor.evidence.model import Metric, base_name, clip
from auditor.evidence.patterns import MAX_COUNT

PGOLF_PREFIX = ":::PGOLF"

# structured field -> (attribute, kind)
_FIELDS: dict[str, tuple[str, str]] = {
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
            return (True, value) if abs(value) < MAX_COUNT else (False, None)
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


@dataclass
class PgolfLine:
    """What one ``:::PGOLF`` line says, read against the schema (``obj`` None: malformed)."""

    obj: dict | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # RunEvidence attribute -> value
    metric: Metric | None = None
    headline: bool = False
    phase: tuple[str, float] | None = None  # (phase name, eval ms)
    eval_end_ms: float | None = None
    problems: list[str] = field(default_factory=list)


def read_pgolf_line(line: str, i: int, log: str) -> PgolfLine:
    """Read line ``i`` of ``log``, which contains the prefix. Never raises."""
    got = PgolfLine()
    payload = line[line.index(PGOLF_PREFIX) + len(PGOLF_PREFIX):].strip()
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        got.problems.append(f"malformed {PGOLF_PREFIX} line {i} in {log}: {exc.__class__.__name__}: {exc}")
        return got
    if not isinstance(obj, dict):
        got.problems.append(f"malformed {PGOLF_PREFIX} line {i} in {log}: not a JSON object")
        return got
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        got.problems.append(f"malformed {PGOLF_PREFIX} line {i} in {log}: no string \"event\" key")
        return got
    got.obj = obj

    def bad(key: str) -> None:
        got.problems.append(f"bad {PGOLF_PREFIX} field {key}={obj.get(key)!r} ({event}) at line {i} in {log}")

    for key, (attr, kind) in _FIELDS.items():
        if key in obj:
            ok, value = _coerce(obj[key], kind)
            if not ok:
                bad(key)
            elif value is not None:
                got.fields[attr] = value

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
            got.problems.append(f"{PGOLF_PREFIX} metric at line {i} in {log} has neither val_loss nor val_bpb")
        else:
            got.headline = obj.get("headline") is True
            got.metric = Metric(
                name, vals["val_loss"], vals["val_bpb"], eval_ms, i, clip(line), name.endswith("_exact")
            )
        if eval_ms is not None:
            got.phase = (base_name(name), eval_ms)
    elif event == "eval_phase":
        name = obj.get("name")
        if isinstance(name, str) and name and eval_ms is not None:
            got.phase = (name, eval_ms)
        else:
            bad("name" if not isinstance(name, str) or not name else "eval_time_ms")
    elif event == "eval_end" and eval_ms is not None:
        got.eval_end_ms = eval_ms
    return got


def format_pgolf_line(event: str, **fields: Any) -> str:
    """One ``:::PGOLF {json}`` line (no newline) for emitters; see the module schema.

    Compact JSON, ``"event"`` first, non-JSON values via ``str``. Raises
    ``ValueError`` only for an empty or non-string event (a programming error).
    """
    if not isinstance(event, str) or not event:
        raise ValueError("event must be a non-empty string")
    payload = {"event": event, **fields}
    return f"{PGOLF_PREFIX} " + json.dumps(payload, separators=(",", ":"), default=str, ensure_ascii=True)
