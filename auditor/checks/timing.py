"""PG410/PG411: training and evaluation each fit in 600 s, per seed, per the logs."""

from __future__ import annotations

from auditor.challenge import EVAL_LIMIT_S, TRAIN_LIMIT_S, TRAIN_OVERRUN_GRACE_S
from auditor.checks.base import CheckRule, cite, leaderboard_severity, log_location
from rules.core import Finding, Severity
from auditor.record import Record

TRAIN_TIME = CheckRule(
    "PG410", "train-time", f"Training stops within {TRAIN_LIMIT_S:.0f} s wall clock.", "README: 600 s on 8xH100"
)
EVAL_TIME = CheckRule(
    "PG411", "eval-time", f"Evaluation, all phases, takes at most {EVAL_LIMIT_S:.0f} s.", "README: 600 s evaluation"
)


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    over_limit, note = leaderboard_severity(record, Severity.ILLEGAL)
    for run in record.logs:
        if run.train_time_ms is not None:
            seconds = float(run.train_time_ms.value) / 1000
            over = seconds - TRAIN_LIMIT_S
            if over > TRAIN_OVERRUN_GRACE_S:
                findings.append(
                    TRAIN_TIME.finding(
                        over_limit,
                        f"{run.log}: training ran {seconds:.1f} s, over the {TRAIN_LIMIT_S:.0f} s limit by {over:.1f} s"
                        + note,
                        log_location(run.log, run.train_time_ms),
                        evidence=[cite(run.log, run.train_time_ms)],
                        key=f"train:{run.log}",
                    )
                )
            elif over > 0:
                findings.append(
                    TRAIN_TIME.finding(
                        Severity.INFO,
                        f"{run.log}: training stopped {over * 1000:.0f} ms after {TRAIN_LIMIT_S:.0f} s, "
                        "the usual overrun of a cap checked between steps",
                        log_location(run.log, run.train_time_ms),
                        evidence=[cite(run.log, run.train_time_ms)],
                        key=f"train-overrun:{run.log}",
                    )
                )
        if run.eval_time_ms is not None:
            seconds = float(run.eval_time_ms.value) / 1000
            if seconds > EVAL_LIMIT_S:
                how = "sum of the phases" if run.eval_time_summed else "as printed"
                findings.append(
                    EVAL_TIME.finding(
                        over_limit,
                        f"{run.log}: evaluation took {seconds:.1f} s ({how}), over the {EVAL_LIMIT_S:.0f} s limit" + note,
                        log_location(run.log, run.eval_time_ms),
                        evidence=[f"{phase}: {float(c.value) / 1000:.1f} s ({run.log}:{c.line})" for phase, c in run.eval_phases.items()],
                        key=f"eval:{run.log}",
                    )
                )
    return findings
