"""One rerun batch: a plan, the torchrun command and environment per seed, and
the per-seed run that ends in an atomically written ``run.json``.

Layout on disk::

    RUNS_DIR/<record-name>/seed<N>/      scratch copy of the record folder
        train.log                        everything the run printed (kept if killed)
        run.json                         what was measured (written last, atomically)
    RUNS_DIR/<record-name>/seed<N>.scratch/  the jail's HOME, TMPDIR and caches (removed after)
    RUNS_DIR/_smoke_data/                synthetic corpus + tokenizer (--smoke)

A seed whose ``run.json`` is complete (same schema, same seed, ``complete``) is
not run again unless forced; an incomplete run directory is wiped and redone.
A run that was killed at the limit or failed is complete too (it is a result;
running it again would end the same way): use --force to retry it.

With ``Plan.jail`` (``pgolf rerun --jail``, the default) torchrun runs inside
bubblewrap (:mod:`auditor.jail`, the probes' jail): network only on its own
loopback, its own PID namespace, the system read-only, writable only the seed's
run folder and its scratch folder, an allow-listed environment. Where bwrap cannot
create namespaces the run proceeds with the same environment, unconfined, and
``run.json`` says why (``confinement``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from auditor.challenge import EVAL_LIMIT_S, TRAIN_LIMIT_S
from auditor.evidence import RunEvidence, parse_log_file
from auditor.harness import DEFAULT_GRACE_S, DEFAULT_MARGIN_S, measure
from auditor.harness.run import LaunchResult, last_lines, launch, worker_signals
from auditor.jail import CONFINED, PASS_ENV, base_env, bwrap_args, exit_status, gpu_devices, jail_status
from auditor.record import SCRIPT_NAME as SCRIPT

SCHEMA = "pgolf-rerun/1"
LOG_NAME = "train.log"
RUN_JSON = "run.json"
SMOKE_VOCAB = 512
# What the reference stack (reference_impl/config.py) reads in --smoke mode.
SMOKE_ENV = {
    "CONFIG": "toy",
    "OUT_DIR": ".",
    "SYNTHETIC_DATA": "0",
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
}
# what a jailed run gets of this process's environment besides the harness's variables
JAIL_PASS_ENV = PASS_ENV + ("PYTHONPATH", "CUDA_HOME", "CUDA_VISIBLE_DEVICES")
JAIL_HOSTNAME = "pgolf-rerun"
# the single-node jail's /etc/hosts: torchrun's rendezvous and gloo resolve these names
JAIL_HOSTS = f"127.0.0.1\tlocalhost {JAIL_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
NOT_JAILED = "unconfined: --no-jail"
MULTI_NODE_NET = " (host network: multi-node rendezvous)"


@dataclass
class Launch:
    """What one seed launches: the command line (bwrap's included), its environment,
    the jail it runs in ("bwrap..." or "unconfined: <why>"), and its scratch folder."""

    command: list[str]
    env: dict[str, str]
    confinement: str
    scratch: Path | None = None

    @property
    def jailed(self) -> bool:
        return self.confinement.startswith(CONFINED)


@dataclass
class Plan:
    record_dir: Path
    seeds: list[int]
    nproc: int
    runs_dir: Path
    data: Path | None = None
    tokenizer: Path | None = None
    vocab_size: int | None = None
    user_env: dict[str, str] = field(default_factory=dict)
    margin_s: float = DEFAULT_MARGIN_S
    limit_s: float | None = None  # overrides train + eval + margin
    grace_s: float = DEFAULT_GRACE_S
    smoke: bool = False
    nnodes: str | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    python: str = sys.executable
    jail: bool = False  # run torchrun inside bubblewrap (the CLI's default)

    @property
    def name(self) -> str:
        return self.record_dir.name

    @property
    def wall_limit_s(self) -> float:
        if self.limit_s is not None:
            return self.limit_s
        return TRAIN_LIMIT_S + EVAL_LIMIT_S + self.margin_s

    @property
    def record_runs(self) -> Path:
        return self.runs_dir / self.name

    def run_dir(self, seed: int) -> Path:
        return self.record_runs / f"seed{seed}"

    @property
    def smoke_data(self) -> Path:
        return self.runs_dir / "_smoke_data"

    def scratch_dir(self, seed: int) -> Path:
        return self.record_runs / f"seed{seed}.scratch"

    def inputs(self) -> list[str]:
        """What a jailed run may read besides the Python install: the record, the data and
        tokenizer, and any absolute path an --env value names."""
        paths = [self.record_dir] + ([self.smoke_data] if self.smoke else [self.data, self.tokenizer])
        paths += [v for v in self.user_env.values() if os.path.isabs(v) and os.path.exists(v)]
        return [str(Path(p).resolve()) for p in paths if p is not None]

    def launch_spec(self, seed: int) -> Launch:
        """The seed's command, environment and jail. Jailed: only the allow-list of
        ``base_env`` and the harness's variables reach the run (also where bwrap cannot
        sandbox and the run proceeds unconfined); --no-jail: this process's environment."""
        if not self.jail:
            return Launch(self.command(seed), {**os.environ, **self.seed_env(seed)}, NOT_JAILED)
        scratch = self.scratch_dir(seed)
        env = {**base_env(scratch / "home", JAIL_PASS_ENV), **self.seed_env(seed)}
        status = jail_status()
        if status.bwrap is None:
            return Launch(self.command(seed), env, status.confinement, scratch)
        multi = self.nnodes is not None  # the rendezvous needs the other nodes: the host's network and names
        files = ({k: Path(k) for k in ("/etc/hosts", "/etc/resolv.conf") if os.path.exists(k)} if multi
                 else {"/etc/hosts": scratch / "hosts"})
        devices = gpu_devices()
        prefix = bwrap_args(status.bwrap, writable=[self.run_dir(seed), scratch], inputs=self.inputs(), env=env,
                            chdir=self.run_dir(seed), hardened=status.hardened,
                            hostname=None if multi else JAIL_HOSTNAME, shm_bytes=None, devices=devices,
                            share_net=multi, files=files, all_sys=bool(devices))
        return Launch(prefix + self.command(seed), env, CONFINED + (MULTI_NODE_NET if multi else ""), scratch)

    def command(self, seed: int | None = None) -> list[str]:
        """torchrun command; multi-node runs get one rendezvous id per seed so consecutive seeds never meet."""
        cmd = [self.python, "-m", "torch.distributed.run"]
        if self.nnodes is not None:
            cmd += [
                f"--nnodes={self.nnodes}",
                f"--nproc_per_node={self.nproc}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={self.rdzv_endpoint}",
                f"--rdzv-id={self.rdzv_id or 'pgolf-' + self.name}" + (f"-seed{seed}" if seed is not None else ""),
            ]
        else:
            cmd += ["--standalone", f"--nproc_per_node={self.nproc}"]
        return cmd + [SCRIPT]

    def seed_env(self, seed: int) -> dict[str, str]:
        """The variables the harness sets for one seed (on top of the inherited environment)."""
        env: dict[str, str] = {}
        if self.smoke:
            env.update(SMOKE_ENV)
            data, tokenizer = self.smoke_data, self.smoke_data / "tokenizer.model"
            vocab = self.vocab_size or SMOKE_VOCAB
        else:
            data, tokenizer, vocab = self.data, self.tokenizer, self.vocab_size
        env["SEED"] = str(seed)
        if data is not None:
            env["DATA_PATH"] = env["DATA_DIR"] = str(Path(data).resolve())
        if tokenizer is not None:
            env["TOKENIZER_PATH"] = str(Path(tokenizer).resolve())
        if vocab is not None:
            env["VOCAB_SIZE"] = str(vocab)
        env["RUN_ID"] = f"{self.name}_seed{seed}"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.user_env)
        return env

    def describe(self, seed: int) -> str:
        """The exact shell line a seed runs (for --dry-run); jailed, bwrap's --setenv carry the environment."""
        spec = self.launch_spec(seed)
        cmd = " ".join(shlex.quote(c) for c in spec.command)
        if spec.jailed:
            line = f"env -i {cmd}"
        else:
            env = self.seed_env(seed) if not self.jail else spec.env
            line = f"env {'-i ' if self.jail else ''}" + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + f" {cmd}"
        return (
            f"# seed {seed}: copy {self.record_dir} -> {self.run_dir(seed)}; "
            f"wall-clock limit {self.wall_limit_s:.0f} s (process group killed, SIGKILL after {self.grace_s:.0f} s); "
            f"jail: {spec.confinement}\n"
            f"cd {shlex.quote(str(self.run_dir(seed)))} && {line} > {LOG_NAME} 2>&1"
        )


def load_complete(path: Path, seed: int) -> dict | None:
    """A finished ``run.json`` for this seed, or None (missing, partial, other seed or schema)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("complete") is not True:
        return None
    if data.get("seed") != seed:
        return None
    return data


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def prepare_smoke_data(plan: Plan) -> bool:
    """Synthetic corpus + tokenizer for --smoke, built once per runs dir (True if built now)."""
    target = plan.smoke_data
    if (target / "tokenizer.model").is_file() and any(target.glob("fineweb_val_*.bin")):
        return False
    from reference_impl.synthetic import make_corpus

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    make_corpus(str(tmp), vocab_size=plan.vocab_size or SMOKE_VOCAB)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return True


def _copy_record(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(*measure.SKIP_DIRS))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cited(c) -> dict | None:
    return None if c is None else {"value": c.value, "line": c.line, "text": c.text}


def run_seed(
    plan: Plan,
    seed: int,
    *,
    on_line: Callable[[str], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> tuple[dict, RunEvidence]:
    """Copy, launch, measure one seed; write its ``run.json``; return its data and the parsed log."""
    run_dir = plan.run_dir(seed)
    _copy_record(plan.record_dir, run_dir)
    before = measure.snapshot(run_dir)
    spec = plan.launch_spec(seed)
    if spec.scratch is not None:
        shutil.rmtree(spec.scratch, ignore_errors=True)
        (spec.scratch / "home" / "tmp").mkdir(parents=True)
        (spec.scratch / "hosts").write_text(JAIL_HOSTS)
    log_path = run_dir / LOG_NAME
    started_at = _now()
    try:
        result: LaunchResult = launch(
            spec.command,
            env=spec.env,
            cwd=run_dir,
            log_path=log_path,
            limit_s=plan.wall_limit_s,
            grace_s=plan.grace_s,
            on_line=on_line,
            on_tick=on_tick,
        )
    finally:
        if spec.scratch is not None:
            shutil.rmtree(spec.scratch, ignore_errors=True)
    if spec.jailed and result.returncode is not None:  # torchrun killed by signal N: bwrap exits 128+N
        result.returncode = exit_status(result.returncode)
        result.term_signal = -result.returncode if result.returncode < 0 else None
    ev = parse_log_file(log_path)
    data = summarize_run(plan, seed, result, before, started_at, ev, spec.confinement)
    write_json_atomic(run_dir / RUN_JSON, data)
    return data, ev


_SECRET_KEY_RE = re.compile(r"(TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH)", re.I)


def redact(env: dict[str, str]) -> dict[str, str]:
    """The run's environment as run.json keeps it: run.json travels with the evidence,
    so values of variables named like credentials (``HF_TOKEN``, ``WANDB_API_KEY``)
    are left out; every other setting stays, to rerun with."""
    return {k: "<redacted>" if _SECRET_KEY_RE.search(k) else v for k, v in env.items()}


def summarize_run(plan: Plan, seed: int, result: LaunchResult, before: dict, started_at: str,
                  ev: RunEvidence | None = None, confinement: str = NOT_JAILED) -> dict:
    """``run.json`` data for a finished run; ``ev`` is its parsed log (parsed here when not given),
    ``confinement`` the jail it ran in."""
    run_dir = plan.run_dir(seed)
    log_path = run_dir / LOG_NAME
    if ev is None:
        ev = parse_log_file(log_path)
    files = measure.model_files(run_dir, before)
    code_path = plan.record_dir / SCRIPT
    code_bytes = code_path.stat().st_size if code_path.is_file() else 0
    model_bytes = sum(f.bytes for f in files if f.counted)
    headline = ev.headline
    return {
        "schema": SCHEMA,
        "complete": True,
        "record": {"path": str(plan.record_dir.resolve()), "name": plan.name},
        "seed": seed,
        "run_dir": str(run_dir.resolve()),
        "smoke": plan.smoke,
        "command": plan.command(seed),
        "confinement": confinement,
        "env": redact(plan.seed_env(seed)),
        "nproc_per_node": plan.nproc,
        "nnodes": plan.nnodes,
        "rdzv_endpoint": plan.rdzv_endpoint,
        "started_at": started_at,
        "finished_at": _now(),
        "limits": {
            "wall_limit_s": plan.wall_limit_s,
            "grace_s": plan.grace_s,
            "margin_s": plan.margin_s,
            "train_limit_s": TRAIN_LIMIT_S,
            "eval_limit_s": EVAL_LIMIT_S,
        },
        "process": {
            "exit_code": result.returncode,
            "term_signal": result.term_signal,
            "killed_at_limit": result.killed,
            "wall_s": round(result.wall_s, 3),
            "leftover_pids": result.leftover,
            # torchrun exits 1 when a rank dies by a signal; which one is only in its report
            "worker_signals": worker_signals(log_path) if result.returncode else [],
        },
        "log": LOG_NAME,
        "log_bytes": log_path.stat().st_size if log_path.exists() else 0,
        "log_tail": last_lines(log_path, 10) if (result.killed or result.returncode) else [],
        "script_times": {
            "train_time_ms": _cited(ev.train_time_ms),
            "eval_time_ms": _cited(ev.eval_time_ms),
            "eval_time_summed": ev.eval_time_summed,
            "eval_phases": {k: _cited(v) for k, v in ev.eval_phases.items()},
            "steps": _cited(ev.steps),
        },
        "measured": {
            "code_bytes": code_bytes,
            "model_files": [f.to_dict() for f in files],
            "model_bytes": model_bytes,
            "artifact_bytes": code_bytes + model_bytes,
        },
        "logged": {
            "bytes_total": _cited(ev.bytes_total),
            "bytes_model": _cited(ev.bytes_model),
            "bytes_code": _cited(ev.bytes_code),
            "seed": _cited(ev.seed),
            "world_size": _cited(ev.world_size),
            "hardware": _cited(ev.hardware),
            "peak_memory_mib": _cited(ev.peak_memory_mib),
            "val_tokens": _cited(ev.val_tokens),
        },
        "headline": None
        if headline is None
        else {"name": headline.name, "val_loss": headline.val_loss, "val_bpb": headline.val_bpb, "line": headline.line},
        "metrics": [
            {"name": m.name, "val_loss": m.val_loss, "val_bpb": m.val_bpb, "eval_time_ms": m.eval_time_ms, "line": m.line}
            for m in ev.metrics
        ],
        "evidence_missing": ev.missing,
        "evidence_problems": ev.problems,
        "environment": measure.environment(plan.record_dir),
        "shipped": measure.shipped_hashes(plan.record_dir),
    }
