"""PG406: the scores submission.json claims are the scores the logs show."""

from __future__ import annotations

import math
from statistics import mean

from auditor.checks.base import CheckRule
from auditor.checks.metadata import json_location
from auditor.declared import declared, decimals
from rules.core import Finding, Severity
from auditor.record import Record

CLAIM_MISMATCH = CheckRule(
    "PG406",
    "claim-mismatch",
    "Declared val_bpb (per seed and mean) matches the headline metric of the logs.",
    "RULEBOOK.md: claims must match logs; the headline must come from the path that ran",
)


def tolerance(claimed: float) -> float:
    """Half a unit in the last decimal the claim was written with."""
    return 0.5 * 10.0 ** -min(decimals(claimed), 8) + 1e-12


def matches(claimed: float, logged: float) -> bool:
    """A claim matches a log if it is the logged value rounded, or truncated
    at 4+ decimals (coarser truncation would hide a real overclaim)."""
    if not (math.isfinite(claimed) and math.isfinite(logged)):  # a diverged metric matches no claim
        return False
    places = min(decimals(claimed), 8)
    if abs(claimed - logged) <= tolerance(claimed):
        return True
    scaled = logged * 10**places
    if not math.isfinite(scaled):  # 1e308 scaled overflows: no truncation of it is a claim
        return False
    truncated = math.trunc(scaled) / 10**places
    return places >= 4 and abs(claimed - truncated) < 1e-12


def check(record: Record) -> list[Finding]:
    claim = declared(record.submission)
    runs = [run for run in record.logs  # a diverged run (NaN, inf) is PG403's finding, not a claim to compare
            if run.headline and run.headline.val_bpb is not None and math.isfinite(run.headline.val_bpb)]
    if not runs or claim.val_bpb is None and not claim.per_seed:
        return []
    findings: list[Finding] = []
    by_seed = {int(run.seed.value): run for run in runs if run.seed is not None}
    reported: dict[int, float] = {}  # run -> the logged value its claim names, when not the headline
    for seed, seed_claim in sorted(claim.per_seed.items()):
        run = by_seed.get(seed)
        if run is None or seed_claim.val_bpb is None:
            continue
        logged = run.headline.val_bpb
        other = None if matches(seed_claim.val_bpb, logged) else _other_metric(run, seed_claim.val_bpb)
        if other is not None:
            reported[id(run)] = other.val_bpb
            findings.append(
                CLAIM_MISMATCH.finding(
                    Severity.WARNING,
                    f"seed {seed}: submission.json claims val_bpb {seed_claim.val_bpb}, the log's {other.name} "
                    f"(line {other.line}), not its last evaluation {run.headline.name} ({logged:.8g}): "
                    f"say which evaluation the record reports, and why",
                    json_location(record, "seed_results"),
                    evidence=[f"{run.log}:{other.line}: {other.text}", f"{run.log}:{run.headline.line}: {run.headline.text}"],
                    key=f"seed:{seed}",
                )
            )
        elif not matches(seed_claim.val_bpb, logged):
            severity = Severity.ILLEGAL if seed_claim.val_bpb < logged else Severity.WARNING
            findings.append(
                CLAIM_MISMATCH.finding(
                    severity,
                    f"seed {seed}: submission.json claims val_bpb {seed_claim.val_bpb} but the log's headline "
                    f"{run.headline.name} shows {logged:.8g}",
                    json_location(record, "seed_results"),
                    evidence=[f"{run.log}:{run.headline.line}: {run.headline.text}"],
                    key=f"seed:{seed}",
                )
            )
    if claim.val_bpb is not None:
        findings += _check_mean(record, claim.val_bpb, runs, reported)
    return findings


def _other_metric(run, claimed: float):
    """Another final metric of the run that the claim equals (a sliding-window score
    reported while a later TTT evaluation came out worse), or None."""
    return next((m for m in reversed(run.metrics)
                 if m is not run.headline and m.val_bpb is not None and matches(claimed, m.val_bpb)), None)


def _check_mean(record: Record, claimed: float, runs, reported: dict) -> list[Finding]:
    logged = [reported.get(id(run), run.headline.val_bpb) for run in runs]
    logged_mean = mean(logged)
    tol = tolerance(claimed)
    evidence = [f"{run.log}:{run.headline.line}: {run.headline.text}" for run in runs]
    if matches(claimed, logged_mean):
        return []
    if claimed < min(logged) - tol:
        severity, why = Severity.ILLEGAL, "better than every logged run"
    elif claimed < logged_mean:
        severity, why = Severity.WARNING, "better than the mean of the logged seeds (the headline is the mean)"
    else:
        severity, why = Severity.WARNING, "worse than the mean of the logged seeds"
    return [
        CLAIM_MISMATCH.finding(
            severity,
            f"submission.json claims val_bpb {claimed}, {why}: logged mean {logged_mean:.6f} over {len(logged)} seed(s)",
            json_location(record, "val_bpb"),
            evidence=evidence,
            key="mean",
        )
    ]


