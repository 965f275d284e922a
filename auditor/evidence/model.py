"""The evidence data model: every value remembers the log line it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TEXT_MAX = 200


def clip(text: str) -> str:
    """A log line as a citation quotes it: stripped, at most TEXT_MAX characters."""
    text = text.strip()
    if len(text) > TEXT_MAX:
        return text[: TEXT_MAX - 3] + "..."
    return text


def base_name(name: str) -> str:
    """A metric's name without ``_exact`` (its full-precision variant shares a phase)."""
    return name[: -len("_exact")] if name.endswith("_exact") else name


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
    # Every line that is not per-step progress, as (line number, text): the
    # static rules read these as proof that a code path ran (its log label).
    context: list[tuple[int, str]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the evidence (the raw context lines left out)."""
        data = asdict(self)
        del data["context"]
        return data


def headline_lines(runs) -> list[tuple[str, int, str]]:
    """``(log, line, text)`` of each run's headline, then of the metric lines that report
    the same val_bpb (latest first). What the static rules and the probes ask "which code
    printed this?": a summary block a harness appends to the log (`val_bpb: 1.1227`) repeats
    the score that the script printed on an earlier line with its label."""
    runs = [run for run in runs if run.headline is not None]
    lines = [(run.log, run.headline.line, run.headline.text) for run in runs]
    for run in runs:
        same = [m for m in run.metrics if m is not run.headline and m.val_bpb is not None
                and m.val_bpb == run.headline.val_bpb]
        lines += [(run.log, m.line, m.text) for m in reversed(same)]
    return lines
