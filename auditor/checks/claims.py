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
    by_seed: dict[int, list] = {}
    for run in runs:
        if run.seed is not None:
            by_seed.setdefault(int(run.seed.value), []).append(run)
    reported: dict[int, float] = {}  # run -> the logged value its claim names, when not the headline
    left_out: set[int] = set()  # ids of a claimed seed's other logs (re-runs): not in the mean
    for seed, seed_claim in sorted(claim.per_seed.items()):
        if seed not in by_seed or seed_claim.val_bpb is None:
            continue
        run = _matching_run(by_seed[seed], seed_claim.val_bpb)
        left_out |= {id(r) for r in by_seed[seed] if r is not run}
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
        findings += _check_mean(record, claim.val_bpb, [r for r in runs if id(r) not in left_out], reported)
    return findings


def _matching_run(candidates: list, claimed: float):
    """The log a seed's claim is about, when a merged record keeps several for one seed (a
    re-run beside the original): the one whose headline matches, else one with another
    final metric that matches, else the closest headline."""
    return (next((r for r in candidates if matches(claimed, r.headline.val_bpb)), None)
            or next((r for r in candidates if _other_metric(r, claimed) is not None), None)
            or min(candidates, key=lambda r: abs(r.headline.val_bpb - claimed)))


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


