"""PG203 from the logs: training data read after the 600 s training window.

Per seed, the log says when training stopped (``train_time:…ms`` at the stop,
or a ``:::PGOLF`` ``train_end`` event) and, after it, whether a phase collected
GPTQ Hessians or calibration statistics, from which data, and for how long.
Training data read after the window is PG203 (RULEBOOK.md: time): the Hessian
pass must fit a declared reserve (``GPTQ_RESERVE_SECONDS``, PR #1868).

- the stop used the whole window (no time left) and a later phase collects
  Hessians/calibration from data the log does not name as validation or
  self-generated: illegal, with the log lines as evidence;
- a declared reserve (``gptq_reserve_seconds``): passes;
- time left but the phase's duration is not logged: a warning that says what is
  missing; a phase after no logged stop time at all: the same warning.

Known limits: phases are recognised by their log wording (Hessian, calibrat,
GPTQ); a calibration pass that prints nothing is left to the static PG203.
"""

from __future__ import annotations

import re

from auditor.challenge import TRAIN_LIMIT_S
from auditor.checks.base import CheckRule, leaderboard_severity, log_location
from rules.core import Finding, Location, Severity
from auditor.record import Record

WINDOW = CheckRule(
    "PG203",
    "train-data-after-window",
    "No training data is read after the 600 s training window (GPTQ calibration fits a declared reserve).",
    "RULEBOOK.md: time (training data may not be read after the training window; PR #1868)",
)

PHASE_RE = re.compile(r"hessian|calibrat", re.I)
# data that is not training data: validation (PG201's business) or made by the model
OTHER_SOURCE_RE = re.compile(r"\bval\b|valid|generat|autoregress|self[-_ ]?gen|synthetic|random", re.I)
DURATION_RE = re.compile(r"(?:\bin|time[=:]|took)\s*(\d+(?:\.\d+)?)\s*(ms|s)\b", re.I)
SETTING_RE = re.compile(r"\s*[a-z_]+\s*[:=]\s*[\w./-]+\s*$")  # gptq_calibration_batches: 16
# a stop with less than this left is a stop at the cap (the loop checks the clock between steps)
NO_TIME_LEFT_S = 0.5


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    severity, note = leaderboard_severity(record, Severity.ILLEGAL)
    for run in record.logs:
        stop = run.train_time_ms
        stop_line = stop.line if stop is not None and stop.line else 0
        after = [(n, t) for n, t in run.context if n > stop_line]
        phases = [(n, t) for n, t in after if PHASE_RE.search(t) and not SETTING_RE.match(t)]
        if not phases:
            continue
        near = [t for n, t in after if phases[0][0] <= n <= phases[-1][0] + 1]
        if any(OTHER_SOURCE_RE.search(t) for t in near):
            continue
        evidence = [f"{run.log}:{n}: {t.strip()[:160]}" for n, t in phases[:3]]
        if stop is None:
            findings.append(WINDOW.finding(
                Severity.WARNING,
                f"{run.log}: a calibration phase is logged but no training stop time, so whether it read "
                "training data after the 600 s window cannot be checked",
                log_location(run.log, type("L", (), {"line": phases[0][0]})()),
                evidence=evidence, key=f"no-stop:{run.log}"))
            continue
        reserve = run.gptq_reserve_s
        if reserve is not None and _float(reserve.value) > 0:
            continue
        train_s = _float(stop.value) / 1000
        left = TRAIN_LIMIT_S - train_s
        took = _duration(near)
        stop_cite = f"{run.log}:{stop.line}: {stop.text.strip()[:160]}"
        if left <= NO_TIME_LEFT_S or (took is not None and took > left):
            what = f"for {took:.1f} s" if took is not None else "for a time the log does not print"
            findings.append(WINDOW.finding(
                severity,
                f"{run.log}: training stopped at {train_s:.1f} s ({max(left, 0):.1f} s of the window left, no "
                f"reserve declared), then Hessian/calibration statistics were collected {what}: training data "
                "read after the training window" + note,
                Location(run.log, phases[0][0], phases[-1][0]),
                evidence=[stop_cite] + evidence, key=f"after:{run.log}"))
        elif took is None:
            findings.append(WINDOW.finding(
                Severity.WARNING,
                f"{run.log}: training stopped at {train_s:.1f} s and a calibration phase follows, but the log "
                f"prints neither its duration nor a reserve, so whether it fit the {left:.1f} s left is unknown",
                Location(run.log, phases[0][0], phases[-1][0]),
                evidence=[stop_cite] + evidence, key=f"untimed:{run.log}"))
    return findings


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _duration(lines: list[str]) -> float | None:
    for text in lines:
        m = DURATION_RE.search(text)
        if m:
            return float(m.group(1)) / (1000 if m.group(2).lower() == "ms" else 1)
    return None
