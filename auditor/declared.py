"""What a submission.json claims, normalised across the shapes records use.

`seed_results` drifts: {"42": {"val_bpb": ..}}, {"42": 1.12}, or
[{"seed": 42, "val_bpb": ..}]. Checks compare claims with logs through this
one view instead of each guessing the shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class SeedClaim:
    val_bpb: float | None = None
    val_loss: float | None = None
    bytes_total: int | None = None


@dataclass
class Declared:
    val_bpb: float | None = None
    val_loss: float | None = None
    seeds: list[int] = field(default_factory=list)
    per_seed: dict[int, SeedClaim] = field(default_factory=dict)
    unreadable_seed_results: list[str] = field(default_factory=list)  # entries we could not read
    bytes_total: int | None = None
    bytes_code: int | None = None


def declared(data: dict | None) -> Declared:
    if not data:
        return Declared()
    out = Declared(
        val_bpb=_number(data.get("val_bpb")),
        val_loss=_number(data.get("val_loss")),
        bytes_total=_integer(data.get("bytes_total")),
        bytes_code=_integer(data.get("bytes_code")),
    )
    out.per_seed, out.unreadable_seed_results = _seed_results(data.get("seed_results"))
    seeds = data.get("seeds")
    if isinstance(seeds, list):
        out.seeds = [s for s in (_integer(x) for x in seeds) if s is not None]
    elif out.per_seed:
        out.seeds = list(out.per_seed)
    return out


def _seed_results(raw) -> tuple[dict[int, SeedClaim], list[str]]:
    """Per-seed claims, and a sentence for each entry that could not be read."""
    items: list[tuple[object, object]] = []
    unreadable: list[str] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        for n, entry in enumerate(raw):
            if isinstance(entry, dict):
                items.append((entry.get("seed"), entry))
            else:
                unreadable.append(f"entry {n} is {type(entry).__name__}, not an object")
    results: dict[int, SeedClaim] = {}
    for seed, value in items:
        seed_int = _integer(seed)
        if seed_int is None:
            unreadable.append(f"seed {str(seed)[:40]!r} is not an integer")
            continue
        if isinstance(value, dict):
            claim = SeedClaim(
                val_bpb=_number(value.get("val_bpb")),
                val_loss=_number(value.get("val_loss")),
                bytes_total=_integer(value.get("bytes_total", value.get("artifact_bytes"))),
            )
            shown = value.get("val_bpb")
        else:
            claim, shown = SeedClaim(val_bpb=_number(value)), value
        if shown is not None and claim.val_bpb is None:
            unreadable.append(f"seed {seed_int}: val_bpb {str(shown)[:40]!r} is not a finite number")
        results[seed_int] = claim
    return results, unreadable


def _number(value) -> float | None:
    """A finite float, or None: NaN, infinities and huge integers claim nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _integer(value) -> int | None:
    """An integer, or None: bools, fractions and strings of over 100 digits claim nothing."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) <= 100:
        try:  # "²" is a digit to isdigit() but not to int()
            return int(value)
        except ValueError:
            return None
    return None


def decimals(value: float) -> int:
    """Decimal places as written, for comparing a rounded claim with a log."""
    text = repr(value)
    if "e" in text or "E" in text:
        return 8
    return len(text.split(".")[1]) if "." in text else 0
