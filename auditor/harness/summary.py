"""Turn a batch of ``run.json`` results into Findings and one :class:`Audit`.

Every limit is checked on what the harness measured, never on what the
record claims: artifact bytes on disk (+ shipped code), the process's wall
clock, the script's own train/eval clocks as printed in *this* run's log.
The Audit's record points at the runs directory, so each finding's location
(``seed42/train.log:118``) opens in every report format.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from auditor.audit import Audit, SeedRow, seed_row as _seed_row, significance_findings
from auditor.challenge import ARTIFACT_LIMIT_BYTES, EVAL_LIMIT_S, TRAIN_LIMIT_S, TRAIN_OVERRUN_GRACE_S
from auditor.checks.base import CheckRule, cite, log_location
from auditor.declared import declared as declared_claims
from auditor.evidence import RunEvidence, parse_log_file
from rules.core import Finding, Location, Severity, sort_findings
from auditor.harness import DEFAULT_TOLERANCE_BPB
from auditor.record import Record

REF = "pgolf rerun: measured on a re-run (DESIGN.md: rerun harness)"

RERUN_SIZE_LIMIT = CheckRule(
    "PG420", "rerun-size-limit",
    f"Measured on disk after a re-run: shipped code + compressed model files <= {ARTIFACT_LIMIT_BYTES:,} bytes.",
    "README: 16,000,000 bytes (decimal), code + model; measured by pgolf rerun",
)
RERUN_TRAIN_TIME = CheckRule(
    "PG421", "rerun-train-time",
    f"The script's own training clock in the re-run's log <= {TRAIN_LIMIT_S:.0f} s.",
    "README: 600 s training; measured by pgolf rerun",
)
RERUN_EVAL_TIME = CheckRule(
    "PG422", "rerun-eval-time",
    f"The script's own evaluation clock in the re-run's log <= {EVAL_LIMIT_S:.0f} s.",
    "README: 600 s evaluation; measured by pgolf rerun",
)
RERUN_WALL_LIMIT = CheckRule(
    "PG423", "rerun-wall-limit",
    "The re-run finished within the wall-clock limit (train + eval budget + margin); killed runs are over budget.",
    "README: 600 s train + 600 s eval; enforced by pgolf rerun",
)
RERUN_SIZE_CLAIM = CheckRule(
    "PG424", "rerun-size-claim",
    "The re-run's log does not claim a smaller artifact than the bytes measured on disk.",
    "PR #1835: measure what ships",
)
RERUN_FAILED = CheckRule(
    "PG425", "rerun-failed",
    "The re-run exited with status 0 and left no process behind.",
    REF,
)
REPRODUCTION = CheckRule(
    "PG426", "reproduction",
    "Reproduced headline val_bpb per seed and mean, against the record's claimed values.",
    REF, severity=Severity.WARNING,
)
RERUN_EVIDENCE = CheckRule(
    "PG427", "rerun-evidence",
    "The re-run's log carries the evidence the limit checks need (headline, train/eval time).",
    REF, severity=Severity.WARNING,
)
RERUN_MEASURED = CheckRule(
    "PG428", "rerun-measured",
    "What the re-run measured per seed: process wall time, script clocks, artifact bytes, environment.",
    REF, severity=Severity.INFO,
)
RERUN_CRASHED_AT_EXIT = CheckRule(
    "PG429", "rerun-crashed-at-exit",
    "The re-run exited cleanly after reporting; one that died (by a signal or a non-zero exit) after printing "
    "every metric it must report (headline val_bpb, training and evaluation time) is told apart from a failed run.",
    REF, severity=Severity.WARNING,
)
RULES = (
    RERUN_SIZE_LIMIT, RERUN_TRAIN_TIME, RERUN_EVAL_TIME, RERUN_WALL_LIMIT, RERUN_SIZE_CLAIM,
    RERUN_FAILED, REPRODUCTION, RERUN_EVIDENCE, RERUN_MEASURED, RERUN_CRASHED_AT_EXIT,
)


@dataclass
class SeedResult:
    seed: int
    data: dict  # run.json
    evidence: RunEvidence  # parsed from the run's train.log
    rel_log: str  # relative to the record's runs dir
    reused: bool = False


def load_results(runs: list[tuple[int, dict, bool]], record_runs: Path,
                 parsed: dict[int, RunEvidence] | None = None) -> list[SeedResult]:
    """One SeedResult per run; ``parsed`` holds logs this invocation already parsed, by seed (not parsed again)."""
    out = []
    for seed, data, reused in runs:
        run_dir = Path(data.get("run_dir") or record_runs / f"seed{seed}")
        log = run_dir / data.get("log", "train.log")
        ev = (parsed or {}).get(seed)
        if ev is None:
            ev = parse_log_file(log)
        ev.log = f"{run_dir.name}/{log.name}"
        out.append(SeedResult(seed, data, ev, ev.log, reused))
    return out


def _loc(res: SeedResult, cited=None) -> Location:
    return log_location(res.rel_log, cited)


def _cite(res: SeedResult, cited) -> str:
    return cite(res.rel_log, cited)


def seed_findings(res: SeedResult) -> list[Finding]:
    d, ev, seed = res.data, res.evidence, res.seed
    proc, measured, limits = d["process"], d["measured"], d["limits"]
    findings: list[Finding] = []
    where = f"seed {seed}"

    # wall clock: killed at the limit, or an over-long run that still finished
    if proc.get("killed_at_limit"):
        findings.append(RERUN_WALL_LIMIT.finding(
            Severity.ILLEGAL,
            f"{where}: killed at the wall-clock limit of {limits['wall_limit_s']:.0f} s "
            f"(ran {proc['wall_s']:.1f} s; budget {limits['train_limit_s']:.0f} s train + "
            f"{limits['eval_limit_s']:.0f} s eval + {limits['margin_s']:.0f} s margin); over budget, partial log kept",
            _loc(res), evidence=[f"{res.rel_log}: {line}" for line in d.get("log_tail", [])[-3:]],
            key=f"killed:{seed}",
        ))
    elif proc["wall_s"] > limits["train_limit_s"] + limits["eval_limit_s"]:
        findings.append(RERUN_WALL_LIMIT.finding(
            Severity.WARNING,
            f"{where}: process wall time {proc['wall_s']:.1f} s exceeds the {limits['train_limit_s'] + limits['eval_limit_s']:.0f} s "
            f"train + eval budget (within the {limits['margin_s']:.0f} s margin; startup and compilation count here)",
            _loc(res), key=f"wall:{seed}",
        ))
    if proc.get("leftover_pids"):
        findings.append(RERUN_FAILED.finding(
            Severity.WARNING,
            f"{where}: processes still alive after SIGKILL: {', '.join(map(str, proc['leftover_pids']))}",
            _loc(res), key=f"leftover:{seed}",
        ))
    code = proc.get("exit_code")
    crashed_after_report = False
    if not proc.get("killed_at_limit") and code != 0:
        status = _exit_status(proc)
        tail = [f"{res.rel_log}: {line}" for line in d.get("log_tail", [])[-5:]]
        if reported_everything(ev):
            crashed_after_report = True
            findings.append(RERUN_CRASHED_AT_EXIT.finding(
                Severity.WARNING,
                f"{where}: the run died ({status}) at {proc['wall_s']:.1f} s, once it had printed every metric it must "
                f"report (headline {ev.headline.name} at line {ev.headline.line}, training and evaluation time); "
                f"the results stand, the crash at exit is the script's to fix",
                _loc(res, ev.headline), evidence=[_cite(res, ev.headline), *tail], key=f"crashed:{seed}",
            ))
        else:
            findings.append(RERUN_FAILED.finding(
                Severity.ILLEGAL,
                f"{where}: the run failed ({status}) after {proc['wall_s']:.1f} s; nothing it printed can be trusted as a result",
                _loc(res), evidence=tail, key=f"failed:{seed}",
            ))
    finished = not proc.get("killed_at_limit") and (code == 0 or crashed_after_report)

    findings.append(measured_finding(res))

    # size on disk
    total = measured["artifact_bytes"]
    counted = [f for f in measured["model_files"] if f["counted"]]
    file_lines = [f"{f['path']}: {f['bytes']:,} bytes ({f['kind']}{'' if f['counted'] else ', not counted'})"
                  for f in measured["model_files"]]
    size_detail = (f"{measured['code_bytes']:,} code bytes (shipped train_gpt.py) + {measured['model_bytes']:,} model bytes "
                   f"on disk ({len(counted)} file{'s' if len(counted) != 1 else ''}) = {total:,} bytes")
    if total > ARTIFACT_LIMIT_BYTES:
        findings.append(RERUN_SIZE_LIMIT.finding(
            Severity.ILLEGAL,
            f"{where}: {size_detail}, over the {ARTIFACT_LIMIT_BYTES:,}-byte limit by {total - ARTIFACT_LIMIT_BYTES:,}",
            _loc(res), evidence=file_lines, key=f"size:{seed}",
        ))
    elif not counted and finished:
        findings.append(RERUN_EVIDENCE.finding(
            Severity.WARNING,
            f"{where}: the run wrote no model file in its run directory; only the {measured['code_bytes']:,} code bytes were measured",
            _loc(res), key=f"nomodel:{seed}",
        ))

    # the log's own size claims vs the disk
    for attr, measured_value, what in (
        ("bytes_total", total, "artifact (code + model)"),
        ("bytes_model", measured["model_bytes"], "model"),
    ):
        claimed = getattr(ev, attr)
        if claimed is None or not counted and attr == "bytes_model":
            continue
        if int(claimed.value) < measured_value:
            findings.append(RERUN_SIZE_CLAIM.finding(
                Severity.ILLEGAL,
                f"{where}: the log claims {attr} {int(claimed.value):,} but {measured_value:,} {what} bytes were "
                f"measured on disk ({measured_value - int(claimed.value):,} more)",
                _loc(res, claimed), evidence=[_cite(res, claimed), size_detail, *file_lines],
                key=f"claim:{attr}:{seed}",
            ))

    # the script's own clocks
    if ev.train_time_ms is not None:
        train_s = float(ev.train_time_ms.value) / 1000
        if train_s > TRAIN_LIMIT_S + TRAIN_OVERRUN_GRACE_S:
            findings.append(RERUN_TRAIN_TIME.finding(
                Severity.ILLEGAL,
                f"{where}: the re-run's log shows training took {train_s:.1f} s, over the {TRAIN_LIMIT_S:.0f} s limit",
                _loc(res, ev.train_time_ms), evidence=[_cite(res, ev.train_time_ms)], key=f"train:{seed}",
            ))
    if ev.eval_time_ms is not None:
        eval_s = float(ev.eval_time_ms.value) / 1000
        if eval_s > EVAL_LIMIT_S:
            findings.append(RERUN_EVAL_TIME.finding(
                Severity.ILLEGAL,
                f"{where}: the re-run's log shows evaluation took {eval_s:.1f} s"
                f"{' (sum of phases)' if ev.eval_time_summed else ''}, over the {EVAL_LIMIT_S:.0f} s limit",
                _loc(res, ev.eval_time_ms), evidence=[_cite(res, ev.eval_time_ms)], key=f"eval:{seed}",
            ))
    if finished:
        for missing in ev.missing:
            if "total submission size" in missing or "seed" in missing:
                continue  # size is measured on disk; the seed is set by the harness
            findings.append(RERUN_EVIDENCE.finding(
                Severity.WARNING, f"{where}: {missing}", _loc(res), key=f"missing:{seed}:{missing}",
            ))
    return findings


def reported_everything(ev: RunEvidence) -> bool:
    """The log holds every metric a run must report: a final headline val_bpb after
    training, the training time and the evaluation time, and it was not cut short."""
    return (
        ev.headline is not None
        and ev.train_time_ms is not None
        and ev.eval_time_ms is not None
        and not any("appears truncated" in problem for problem in ev.problems)
    )


def _exit_status(proc: dict) -> str:
    """How the process ended: its own signal, or its exit status and the ranks torchrun saw die by a signal."""
    if proc.get("term_signal"):
        return f"signal {_signal_name(proc['term_signal'])}"
    ranks = proc.get("worker_signals") or []
    dead = ", ".join(f"rank {w['rank']} by {w['name']}" if w.get("rank") is not None else f"a rank by {w['name']}"
                     for w in ranks)
    return f"exit status {proc.get('exit_code')}" + (f"; {dead}" if dead else "")


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)


def _secs(ms_cited) -> str:
    return "n/a" if ms_cited is None else f"{float(ms_cited.value) / 1000:.1f} s"


def jail_line(confinement: str | None) -> str:
    """What the seed's jail guaranteed, for PG428's evidence (run.json ``confinement``)."""
    if not confinement:
        return "jail: not recorded (a run.json from before the rerun jail)"
    if confinement.startswith("bwrap"):
        net = ("the host's network (multi-node rendezvous)" if confinement != "bwrap"
               else "no network but its own loopback")
        return (f"jail: bwrap ({net}, own PID namespace, read-only system, writable only the run folder "
                "and a scratch folder, an allow-listed environment)")
    why = confinement.removeprefix("unconfined: ")
    if why == "--no-jail":
        return "jail: UNCONFINED (--no-jail): the submission's code ran with this user's files, network and environment"
    return (f"jail: UNCONFINED ({why}): the submission's code ran with this user's files and network "
            "(its environment still an allow-list)")


def measured_finding(res: SeedResult) -> Finding:
    d, ev = res.data, res.evidence
    proc, measured, env = d["process"], d["measured"], d.get("environment", {})
    status = "killed at limit" if proc.get("killed_at_limit") else f"exit {proc.get('exit_code')}"
    peak = f", peak memory {float(ev.peak_memory_mib.value):,.0f} MiB" if ev.peak_memory_mib else ""
    gpus = env.get("gpus") or []
    confinement = d.get("confinement")
    evidence = [
        f"command: {' '.join(d.get('command', []))}",
        jail_line(confinement),
        f"host {env.get('hostname')}, python {env.get('python')}, torch {env.get('torch')}, cuda {env.get('cuda')}, "
        f"gpus: {len(gpus)}{' (' + gpus[0] + ')' if gpus else ''}",
        f"record git HEAD {env.get('record_git_head') or 'n/a'}; train_gpt.py sha256 "
        f"{(d.get('shipped', {}).get('train_gpt.py') or {}).get('sha256', 'n/a')}",
        *(f"{f['path']}: {f['bytes']:,} bytes ({f['kind']}{'' if f['counted'] else ', not counted'})"
          for f in measured["model_files"]),
    ]
    return RERUN_MEASURED.finding(
        Severity.INFO,
        f"seed {res.seed}: {status}, process wall {proc['wall_s']:.1f} s, script train {_secs(ev.train_time_ms)}, "
        f"eval {_secs(ev.eval_time_ms)}, artifact {measured['artifact_bytes']:,} bytes measured "
        f"({measured['code_bytes']:,} code + {measured['model_bytes']:,} model){peak}"
        f"{'' if not confinement or confinement.startswith('bwrap') else ', UNCONFINED'}"
        f"{' [reused run.json]' if res.reused else ''}",
        _loc(res), evidence=evidence, key=f"measured:{res.seed}",
    )


def _claimed_by_seed(record: Record | None) -> dict[int, RunEvidence]:
    out: dict[int, RunEvidence] = {}
    for run in record.logs if record else []:
        if run.seed is not None and run.headline is not None:
            out.setdefault(int(run.seed.value), run)
    return out


def _f(x: float | None, digits: int = 6) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def reproduction(results: list[SeedResult], record: Record | None, tolerance: float) -> list[Finding]:
    claimed = _claimed_by_seed(record)
    lines, pairs = [], []
    for res in results:
        got = res.evidence.headline.val_bpb if res.evidence.headline else None
        old = claimed.get(res.seed)
        want = old.headline.val_bpb if old is not None else None
        delta = f" (delta {got - want:+.6f})" if got is not None and want is not None else ""
        source = f" from {old.log}" if old is not None else ""
        lines.append(f"seed {res.seed}: reproduced val_bpb {_f(got)} vs claimed {_f(want)}{source}{delta}")
        if got is not None and want is not None:
            pairs.append((got, want))
    declared = declared_claims(record.submission).val_bpb if record else None
    got_all = [r.evidence.headline.val_bpb for r in results if r.evidence.headline and r.evidence.headline.val_bpb is not None]
    if not got_all:
        return [REPRODUCTION.finding(
            Severity.WARNING, "no re-run produced a headline val_bpb; nothing was reproduced",
            evidence=lines, key="none",
        )]
    mean_got = mean(got_all)
    if pairs:
        mean_pair_got, mean_pair_want = mean(p[0] for p in pairs), mean(p[1] for p in pairs)
        summary = (f"mean reproduced val_bpb {mean_pair_got:.6f} vs claimed {mean_pair_want:.6f} over {len(pairs)} "
                   f"matching seed(s) (delta {mean_pair_got - mean_pair_want:+.6f}, tolerance {tolerance})")
        off = mean_pair_got - mean_pair_want > tolerance
    elif declared is not None:
        summary = (f"mean reproduced val_bpb {mean_got:.6f} vs submission.json val_bpb {declared:.6f} "
                   f"(delta {mean_got - declared:+.6f}, tolerance {tolerance}); no claimed log for these seeds")
        off = mean_got - declared > tolerance
    else:
        summary = f"mean val_bpb of the re-runs {mean_got:.6f}; the record claims nothing to compare with"
        off = False
    if declared is not None and pairs:
        lines.append(f"submission.json declares val_bpb {declared}")
    return [REPRODUCTION.finding(
        Severity.WARNING if off else Severity.INFO,
        ("not reproduced: " if off else "reproduced: " if pairs or declared is not None else "measured: ") + summary,
        None, evidence=lines, key="mean",
    )]


def build_audit(
    target: str,
    record: Record | None,
    record_runs: Path,
    results: list[SeedResult],
    *,
    against: Record | None = None,
    against_losses: list[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE_BPB,
    elapsed_s: float = 0.0,
) -> Audit:
    findings: list[Finding] = []
    for res in results:
        findings += seed_findings(res)
    findings += reproduction(results, record, tolerance)
    audit = Audit(target=target, elapsed_s=elapsed_s)
    runs = [r.evidence for r in results]
    if against is not None or against_losses is not None:
        findings += significance_findings(audit, runs, record.submission if record else None,
                                          against=against, against_losses=against_losses)
    audit.findings = sort_findings(findings)
    audit.seeds = sorted((seed_row(r) for r in results), key=lambda row: row.seed or 0)
    audit.record = Record(
        root=record_runs,
        name=record.name if record else record_runs.name,
        track=record.track if record else None,
        files=sorted(f"{Path(r.data['run_dir']).name}/{n}" for r in results for n in ("train.log", "run.json")),
        script=record.script if record else None,
        linked=list(record.linked) if record else [],
        submission=record.submission if record else None,
        logs=runs,
    )
    return audit


def seed_row(res: SeedResult) -> SeedRow:
    # the harness's seed, and the bytes measured on disk, not logged
    return _seed_row(res.evidence, res.data["measured"]["artifact_bytes"], seed=res.seed)
