"""PG404/PG405/PG416: enough distinct seeds, the declared ones, of one configuration."""

from __future__ import annotations

from collections import Counter

from auditor.challenge import MIN_SEEDS
from auditor.checks.base import CheckRule, cite, leaderboard_severity
from auditor.checks.metadata import json_location
from auditor.declared import declared
from rules.core import Finding, Location, Severity
from auditor.record import Record

SEED_COUNT = CheckRule(
    "PG404",
    "seed-count",
    f"At least {MIN_SEEDS} distinct seeds, one log each.",
    "README: significance is usually shown over 3 seeds",
)
SEED_MISMATCH = CheckRule("PG405", "seed-mismatch", "The seeds in submission.json are the seeds in the logs.")
ONE_CONFIGURATION = CheckRule(
    "PG416", "one-configuration", "All seeds ran the same configuration: same headline metric, same code size.",
    severity=Severity.WARNING,
)


def logged_seeds(record: Record) -> dict[int, list[str]]:
    seeds: dict[int, list[str]] = {}
    for run in record.logs:
        if run.seed is not None:
            seeds.setdefault(int(run.seed.value), []).append(run.log)
    return seeds


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    seeds = logged_seeds(record)
    for seed, logs in seeds.items():
        if len(logs) > 1:
            findings.append(
                SEED_COUNT.finding(
                    Severity.WARNING,
                    f"seed {seed} appears in {len(logs)} logs ({', '.join(logs)}); a seed counts once",
                    Location(logs[1]),
                    key=f"dup:{seed}",
                )
            )
    if record.logs and len(seeds) < MIN_SEEDS:
        severity, note = leaderboard_severity(record, Severity.ILLEGAL)
        findings.append(
            SEED_COUNT.finding(
                severity,
                f"{len(seeds)} distinct seed(s) in the logs ({_list(seeds)}); at least {MIN_SEEDS} are required"
                + note,
                None,
                key="count",
            )
        )
    claim = declared(record.submission)
    if claim.seeds and record.logs:
        declared_set, logged_set = set(claim.seeds), set(seeds)
        for seed in sorted(declared_set - logged_set):
            findings.append(
                SEED_MISMATCH.finding(
                    Severity.ILLEGAL,
                    f"seed {seed} is declared in submission.json but no log shows it",
                    json_location(record, "seeds"),
                    key=f"declared:{seed}",
                )
            )
        for seed in sorted(logged_set - declared_set):
            findings.append(
                SEED_MISMATCH.finding(
                    Severity.WARNING,
                    f"seed {seed} has a log ({seeds[seed][0]}) but is not declared in submission.json",
                    Location(seeds[seed][0]),
                    key=f"logged:{seed}",
                )
            )
    findings += _one_configuration(record)
    return findings


def _one_configuration(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    headlines = Counter(run.headline.name for run in record.logs if run.headline)
    if len(headlines) > 1:
        usual = headlines.most_common(1)[0][0]
        for run in record.logs:
            if run.headline and run.headline.name != usual:
                findings.append(
                    ONE_CONFIGURATION.finding(
                        Severity.WARNING,
                        f"headline metric is {run.headline.name!r} here but {usual!r} in the other logs",
                        Location(run.log, run.headline.line, run.headline.line),
                        key=f"metric:{run.headline.name}",
                    )
                )
    code_sizes = {run.bytes_code.value for run in record.logs if run.bytes_code}
    if len(code_sizes) > 1:
        findings.append(
            ONE_CONFIGURATION.finding(
                Severity.WARNING,
                f"the logs print different code sizes ({', '.join(f'{s:,}' for s in sorted(code_sizes))}): "
                "the seeds did not all run the same train_gpt.py",
                None,
                evidence=[cite(r.log, r.bytes_code) for r in record.logs if r.bytes_code],
                key="code-size",
            )
        )
    return findings


def _list(seeds: dict) -> str:
    return ", ".join(str(s) for s in sorted(seeds)) or "none"


