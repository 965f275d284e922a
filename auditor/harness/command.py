"""`pgolf rerun`: the typer command function (registered by auditor/cli.py).

Kept free of heavy imports at module level: torch is imported only when a run
is measured, reference_impl only in --smoke.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from typing import List, Optional

import typer

from auditor.cli_common import Format, fail_usage, parse_env, parse_floats, write_report
from auditor.harness import DEFAULT_GRACE_S, DEFAULT_MARGIN_S, DEFAULT_TOLERANCE_BPB

ANALYSIS_ERROR = 3
INTERRUPTED = 130


def _say(message: str) -> None:
    typer.echo(f"pgolf rerun: {message}", err=True)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        fail_usage(f"--seeds takes comma-separated integers, got {text!r}")
    if not seeds:
        fail_usage("--seeds is empty")
    if len(set(seeds)) != len(seeds):
        fail_usage(f"--seeds repeats a seed: {text!r}")
    if any(s < 0 for s in seeds):
        fail_usage(f"--seeds must be non-negative, got {text!r}")
    return seeds


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def rerun(
    record: Path = typer.Argument(..., help="Record folder holding the train_gpt.py to re-run."),
    seeds: str = typer.Option("42,314,999", help="Comma-separated seeds; one run each."),
    nproc: int = typer.Option(8, "--nproc", help="Processes (GPUs) per node: torchrun --nproc_per_node."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder with the shards (DATA_PATH and DATA_DIR)."),
    tokenizer: Optional[Path] = typer.Option(None, help="Tokenizer model file (TOKENIZER_PATH)."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="VOCAB_SIZE for the run (unset: the script's default)."),
    env: List[str] = typer.Option([], "--env", help="Extra KEY=VALUE for the run's environment (repeatable); wins over the harness's."),
    out: Path = typer.Option(Path("runs"), "--out", help="Runs directory: RUNS_DIR/<record-name>/seed<N>/."),
    margin: float = typer.Option(DEFAULT_MARGIN_S, "--margin", help="Seconds added to the 600 s train + 600 s eval budget for the hard limit."),
    limit_seconds: Optional[float] = typer.Option(None, "--limit-seconds", hidden=True, help="Hard wall-clock limit per run, overriding budget + margin (tests)."),
    grace_seconds: float = typer.Option(DEFAULT_GRACE_S, "--grace-seconds", hidden=True, help="SIGTERM to SIGKILL grace at the limit."),
    force: bool = typer.Option(False, "--force", help="Re-run seeds that already have a complete run.json."),
    smoke: bool = typer.Option(False, "--smoke", help="CPU + gloo, synthetic corpus and tokenizer, the reference stack's toy config."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the exact commands and environment; run nothing."),
    jail: bool = typer.Option(True, "--jail/--no-jail", help="Run torchrun inside a bubblewrap jail (the default): network only on its own loopback, its own PID namespace, the system read-only, writable only the seed's run folder and a scratch folder, an allow-listed environment (add variables with --env). Without a usable bwrap the run proceeds unconfined and run.json and the report say why. --no-jail: this user's files, network and environment, as before."),
    nnodes: Optional[str] = typer.Option(None, "--nnodes", help="Multi-node: torchrun --nnodes (e.g. 2 or 1:4); needs --rdzv-endpoint."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="Multi-node: HOST:PORT of the c10d rendezvous."),
    rdzv_id: Optional[str] = typer.Option(None, "--rdzv-id", help="Multi-node: rendezvous id prefix (default: pgolf-<record-name>); -seed<N> is appended."),
    against: Optional[Path] = typer.Option(None, help="Record folder to test the reproduced scores against."),
    against_loss: Optional[str] = typer.Option(None, help="Per-seed val_loss (nats) to beat, comma-separated, instead of --against."),
    tolerance: float = typer.Option(DEFAULT_TOLERANCE_BPB, help="val_bpb by which the reproduced mean may exceed the claimed mean."),
    format: Format = typer.Option(Format.rich, "--format", "-f", help="Report format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
) -> None:
    """Re-run a record once per seed under measured limits and report what reproduced.

    Each seed runs the record's own train_gpt.py in a scratch copy
    (RUNS_DIR/<record>/seed<N>/) under `python -m torch.distributed.run
    --standalone --nproc_per_node=N`, with SEED, DATA_PATH, DATA_DIR,
    TOKENIZER_PATH, VOCAB_SIZE and RUN_ID set. The whole process group is
    killed at 600 + 600 + --margin seconds. Artifact bytes are measured on
    disk; run.json is written atomically, and a later invocation reuses
    complete ones (--force redoes them).

    Multi-node: run the same command on every node with --nnodes N and
    --rdzv-endpoint HOST:PORT (a port on one of the nodes that all can reach);
    torchrun's c10d rendezvous joins them (the rendezvous id is
    <--rdzv-id or pgolf-<record-name>>-seed<N>, the same on every node, new per seed). The node that hosts global rank 0
    gets the log with the metrics; read its report. Each node measures the
    artifacts its own ranks wrote.

    Jail (--jail, the default): each seed's torchrun runs under bubblewrap, as
    the probes do; multi-node runs keep the host's network for the rendezvous.
    """
    from auditor.harness import batch

    seed_list = _parse_seeds(seeds)
    user_env = parse_env(env)
    if nproc < 1:
        fail_usage("--nproc must be at least 1")
    if not record.is_dir():
        fail_usage(f"{record}: not a record folder")
    if not (record / batch.SCRIPT).is_file():
        fail_usage(f"{record}: no {batch.SCRIPT} to run")
    if (nnodes is None) != (rdzv_endpoint is None):
        fail_usage("multi-node needs both --nnodes and --rdzv-endpoint")
    if smoke and nnodes is not None:
        fail_usage("--smoke runs on one machine; drop --nnodes/--rdzv-endpoint")
    if against is not None and against_loss is not None:
        fail_usage("give --against or --against-loss, not both")
    if against is not None and not against.exists():
        fail_usage(f"--against {against}: no such folder")
    if _inside(out, record):
        fail_usage(f"--out {out} lies inside the record folder; the copy would contain itself")
    if limit_seconds is not None and limit_seconds <= 0:
        fail_usage("--limit-seconds must be positive")
    if not smoke and not dry_run:
        if data is None or tokenizer is None:
            fail_usage("--data and --tokenizer are required (or use --smoke)")
        if not data.is_dir():
            fail_usage(f"--data {data}: not a folder")
        if not tokenizer.is_file():
            fail_usage(f"--tokenizer {tokenizer}: no such file")

    plan = batch.Plan(
        record_dir=record.resolve(),
        seeds=seed_list,
        nproc=nproc,
        runs_dir=out.resolve(),
        data=data,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        user_env=user_env,
        margin_s=margin,
        limit_s=limit_seconds,
        grace_s=grace_seconds,
        smoke=smoke,
        nnodes=nnodes,
        rdzv_endpoint=rdzv_endpoint,
        rdzv_id=rdzv_id,
        jail=jail,
    )

    if dry_run:
        if smoke:
            typer.echo(f"# --smoke: synthetic corpus + tokenizer generated into {plan.smoke_data} (reference_impl.synthetic.make_corpus)")
        for seed in seed_list:
            done = batch.load_complete(plan.run_dir(seed) / batch.RUN_JSON, seed)
            if done is not None and not force:
                typer.echo(f"# seed {seed}: complete run.json at {plan.run_dir(seed) / batch.RUN_JSON}; would be reused (--force reruns)")
            typer.echo(plan.describe(seed))
        raise typer.Exit(0)

    started = time.perf_counter()
    if smoke:
        try:
            if batch.prepare_smoke_data(plan):
                _say(f"built the synthetic corpus and tokenizer in {plan.smoke_data}")
        except Exception as exc:
            typer.echo(f"pgolf: error: --smoke could not build its synthetic corpus: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(ANALYSIS_ERROR)

    runs: list[tuple[int, dict, bool]] = []
    parsed: dict = {}  # seed -> RunEvidence of the logs run here, handed to the summary
    for seed in seed_list:
        run_json = plan.run_dir(seed) / batch.RUN_JSON
        done = None if force else batch.load_complete(run_json, seed)
        if done is not None:
            _say(f"seed {seed}: reusing {run_json} (--force reruns)")
            runs.append((seed, done, True))
            continue
        _say(f"seed {seed}: running in {plan.run_dir(seed)} (limit {plan.wall_limit_s:.0f} s)")
        try:
            data_out, parsed[seed] = _run_with_view(batch, plan, seed)
        except KeyboardInterrupt:
            _say(f"interrupted: seed {seed} killed, its run.json not written; completed seeds are kept")
            raise typer.Exit(INTERRUPTED)
        except OSError as exc:
            typer.echo(f"pgolf: error: seed {seed}: could not run: {exc}", err=True)
            raise typer.Exit(ANALYSIS_ERROR)
        p = data_out["process"]
        state = "killed at limit" if p["killed_at_limit"] else f"exit {p['exit_code']}"
        state += "".join(f", rank {w['rank']} by {w['name']}" for w in p.get("worker_signals") or [])
        _say(f"seed {seed}: {state} after {p['wall_s']:.1f} s, artifact {data_out['measured']['artifact_bytes']:,} bytes "
             f"measured; jail: {data_out['confinement']}")
        runs.append((seed, data_out, False))

    _report(plan, runs, parsed, against, against_loss, tolerance, format, output, time.perf_counter() - started)


def _run_with_view(batch, plan, seed: int):
    """Run one seed (``batch.run_seed``: run.json data, parsed log); a live tail of its log on stderr when stderr is a terminal."""
    if not sys.stderr.isatty():
        return batch.run_seed(plan, seed)
    from collections import deque

    from rich.console import Console
    from rich.live import Live
    from rich.panel import Panel
    from rich.text import Text

    lines: deque[str] = deque(maxlen=15)
    state = {"elapsed": 0.0}

    def view() -> Panel:
        body = Text("\n".join(line[:200] for line in lines) or "(waiting for output)")
        title = f"seed {seed}: {state['elapsed']:.0f} s / limit {plan.wall_limit_s:.0f} s"
        return Panel(body, title=title, subtitle=str(plan.run_dir(seed) / batch.LOG_NAME))

    with Live(view(), console=Console(stderr=True), refresh_per_second=4, transient=True) as live:
        def on_line(line: str) -> None:
            lines.append(line)
            live.update(view())

        def on_tick(elapsed: float) -> None:
            state["elapsed"] = elapsed
            live.update(view())

        return batch.run_seed(plan, seed, on_line=on_line, on_tick=on_tick)


def _report(plan, runs, parsed, against, against_loss, tolerance, format, output, elapsed_s) -> None:
    from auditor.harness.summary import build_audit, load_results
    from auditor.record import RecordError, load
    from auditor.report import FORMATS

    try:
        record = load(plan.record_dir)
    except RecordError as exc:
        fail_usage(str(exc))
    other = None
    if against is not None:
        try:
            other = load(against)
        except RecordError as exc:
            fail_usage(str(exc))
    results = load_results(runs, plan.record_runs, parsed)
    audit = build_audit(
        str(plan.record_dir),
        record,
        plan.record_runs,
        results,
        against=other,
        against_losses=parse_floats(against_loss) if against_loss else None,
        tolerance=tolerance,
        elapsed_s=elapsed_s,
    )
    # what each seed measured (info) is what a rerun is asked for: shown whole, never collapsed
    write_report(partial(FORMATS[format.value], verbose=True), [audit], output)
    raise typer.Exit(audit.verdict.exit_code)
