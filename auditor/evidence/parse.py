"""The parser: one pass over a log's lines, then the rules that resolve what it saw.

The log is read in one pass with precompiled regexes (:mod:`.patterns`);
per-step training lines (the bulk of a 10+ MB log) take a fast path.
``:::PGOLF`` lines are read by :mod:`.structured` and take precedence over
scraped values.

Headline rule
-------------
1. A ``:::PGOLF`` metric event with ``"headline": true`` wins over everything
   (the last such, if several).
2. Otherwise candidates are the structured metrics if the log has any, else the
   scraped ones; only metrics that carry a ``val_bpb``; metrics whose name marks
   them pre-quantization (``pre_quant``, ``prequant``, ``pre-quant``) are not
   candidates, since the artifact that is scored is the quantized one.
3. The headline is the *last* candidate the run printed; if its name does not end
   with ``_exact`` and a ``<name>_exact`` candidate was printed too, that exact
   (full precision) variant is the headline instead.

Eval time
---------
Phases (``eval_phases``, name → ms) come from a metric line's own
``eval_time`` (phase = metric name without ``_exact``), ``<phase>_eval_time:``
/ ``<phase>_eval time:`` lines, a bare ``eval_time:`` on a non-metric line
(phase ``eval``), and structured ``metric``/``eval_phase`` events. A phase
printed twice keeps its last value. The total (``eval_time_ms``) is, in order:
a structured ``eval_end`` event; an explicit ``total_eval_time`` /
``eval_total_time`` / ``eval_time_total``; else the sum of the phases printed
after training ended (``eval_time_summed=True``, cited at the last phase's
line). Times are in ms or s (``ms``, ``s``, ``sec``, ``seconds``, ``min``; a
``_ms``/``_s`` key suffix); a bare number is taken as ms.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePath
from typing import Any

from auditor.evidence.model import Cited, Metric, RunEvidence, base_name, clip
from auditor.evidence.names import seed_from_filename
from auditor.evidence.patterns import (
    BYTES_KV_RE,
    CODE_RE,
    COUNT_PREFIX_RE,
    COUNT_SUFFIX_RE,
    DEVICE_RE,
    EVAL_TIME_RE,
    GPTQ_RE,
    GPU_WORD_RE,
    NAME_BEFORE_RE,
    PEAK_RE,
    PHASE_TIME_RE,
    PREQUANT_RE,
    PROGRESS_RE,
    SEED_RE,
    SER_RE,
    SHARDS_RE,
    SMI_ROW_RE,
    STEP_RE,
    STEP_WORD_RE,
    TOTAL_EVAL_RE,
    TOTAL_RE,
    TRAIN_TIME_RE,
    VAL_BPB_RE,
    VAL_LOADER_RE,
    VAL_LOSS_RE,
    VAL_TOKENS_RE,
    WORLD_RE,
    is_compressed,
    to_float,
    to_int,
    to_ms,
)
from auditor.evidence.structured import PGOLF_PREFIX, read_pgolf_line

_BPB_TOLERANCE = 1e-4
_CTRL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class _Scan:
    """Mutable state of one pass over a log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []
        self.scraped: dict[str, Cited] = {}
        self.struct: dict[str, Cited] = {}
        self.structured: list[dict] = []
        # (metric, from_structured, headline_flag)
        self.metrics: list[tuple[Metric, bool, bool]] = []
        self.phases: dict[str, Cited] = {}
        self.total_eval: Cited | None = None
        self.struct_total_eval: Cited | None = None
        self.last_step: tuple[int, int, int, str] | None = None  # line, n, m, text
        self.last_step_time: Cited | None = None  # last step line that carried train_time
        self.stop: Cited | None = None
        self.stop_steps: Cited | None = None
        self.seeds_seen: list[Cited] = []
        self.smi: dict[int, tuple[str, int, str]] = {}  # gpu index -> (model, line, text)
        self.device: Cited | None = None
        self.total_raw: Cited | None = None
        self.total_comp: Cited | None = None
        self.model_raw: Cited | None = None
        self.model_comp: Cited | None = None

    # -- helpers ---------------------------------------------------------
    def first(self, key: str, value: Any, line: int, text: str) -> None:
        if key not in self.scraped:
            self.scraped[key] = Cited(value, line, clip(text))

    def last(self, key: str, value: Any, line: int, text: str) -> None:
        self.scraped[key] = Cited(value, line, clip(text))

    # -- line handlers ---------------------------------------------------
    def structured_line(self, i: int, line: str) -> None:
        got = read_pgolf_line(line, i, self.name)
        self.problems.extend(got.problems)
        if got.obj is None:
            return
        self.structured.append(got.obj)
        text = clip(line)
        for attr, value in got.fields.items():
            self.struct[attr] = Cited(value, i, text)
        if "seed" in got.fields:
            self.seeds_seen.append(self.struct["seed"])
        if got.metric is not None:
            self.metrics.append((got.metric, True, got.headline))
        if got.phase is not None:
            self.phases[got.phase[0]] = Cited(got.phase[1], i, text)
        if got.eval_end_ms is not None:
            self.struct_total_eval = Cited(got.eval_end_ms, i, text)

    def step_line(self, i: int, line: str, m: re.Match) -> None:
        t = TRAIN_TIME_RE.search(line)
        ms = to_ms(t.group(2), t.group(1), t.group(3)) if t else None
        self.last_step = (i, int(m.group(1)), int(m.group(2)), line)
        if ms is not None:
            self.last_step_time = Cited(ms, i, clip(line))

    def stop_line(self, i: int, line: str) -> None:
        t = TRAIN_TIME_RE.search(line)
        if t:
            ms = to_ms(t.group(2), t.group(1), t.group(3))
            if ms is not None:
                self.stop = Cited(ms, i, clip(line))
        s = STEP_RE.search(line)
        if s:
            self.stop_steps = Cited(int(s.group(1)), i, clip(line))

    def other_line(self, i: int, line: str) -> None:
        low = line.lower()
        progress = bool(PROGRESS_RE.search(line)) or "train_loss" in low or bool(STEP_WORD_RE.match(line))

        # final metrics
        metric_base: str | None = None
        if "val_" in low and not progress:
            lm = VAL_LOSS_RE.search(line)
            bm = VAL_BPB_RE.search(line)
            if lm or bm:
                pos = min(x.start() for x in (lm, bm) if x)
                nm = NAME_BEFORE_RE.search(line[:pos])
                name = nm.group(1).rstrip(":=.-") if nm else "unnamed"
                name = name or "unnamed"
                et = EVAL_TIME_RE.search(line)
                eval_ms = to_ms(et.group(2), et.group(1), et.group(3)) if et else None
                metric = Metric(
                    name,
                    to_float(lm.group(1)) if lm else None,
                    to_float(bm.group(1)) if bm else None,
                    eval_ms,
                    i,
                    clip(line),
                    name.endswith("_exact"),
                )
                self.metrics.append((metric, False, False))
                metric_base = base_name(name)
                if eval_ms is not None:
                    self.phases[metric_base] = Cited(eval_ms, i, clip(line))

        # eval time phases and totals
        if "time" in low and "eval" in low and not progress:
            tot = TOTAL_EVAL_RE.search(line)
            if tot:
                ms = to_ms(tot.group(2), tot.group(1), tot.group(3))
                if ms is not None:
                    self.total_eval = Cited(ms, i, clip(line))
            for pm in PHASE_TIME_RE.finditer(line):
                phase = pm.group(1)
                if phase.lower() == "total":
                    continue
                ms = to_ms(pm.group(3), pm.group(2), pm.group(4))
                if ms is not None:
                    self.phases[phase] = Cited(ms, i, clip(line))
            if metric_base is None and not tot:
                et = EVAL_TIME_RE.search(line)
                if et:
                    ms = to_ms(et.group(2), et.group(1), et.group(3))
                    if ms is not None:
                        self.phases["eval"] = Cited(ms, i, clip(line))

        # stop line without the word step at start is handled by the caller

        # config
        if "seed" in low:
            sm = SEED_RE.search(line)
            if sm:
                c = Cited(int(sm.group(1)), i, clip(line))
                self.seeds_seen.append(c)
                self.first("seed", c.value, i, line)
        if "world_size" in low:
            wm = WORLD_RE.search(line)
            if wm:
                self.first("world_size", int(wm.group(1)), i, line)
        if "train_shards" in low:
            sh = SHARDS_RE.search(line)
            if sh:
                self.first("train_shards", int(sh.group(1)), i, line)
        if "tokens" in low:
            vt = VAL_TOKENS_RE.search(line) or VAL_LOADER_RE.search(line)
            if vt:
                self.first("val_tokens", int(vt.group(1)), i, line)
        if "gptq_reserve" in low:
            gm = GPTQ_RE.search(line)
            if gm:
                v = to_float(gm.group(1))
                if v is not None:
                    if (gm.group(2) or "").lower() == "ms":
                        v /= 1000.0
                    self.first("gptq_reserve_s", v, i, line)
        if "peak memory" in low:
            pk = PEAK_RE.search(line)
            if pk:
                v = to_float(pk.group(1))
                if v is not None:
                    unit = (pk.group(2) or "MiB").lower()
                    if unit in ("gib", "gb"):
                        v *= 1024.0
                    self.last("peak_memory_mib", v, i, line)

        # hardware
        if line.startswith("|"):
            row = SMI_ROW_RE.match(line)
            if row:
                self.smi[int(row.group(1))] = (" ".join(row.group(2).split()), i, line)
        elif self.device is None and ("device" in low or "gpu" in low or "hardware" in low):
            dm = DEVICE_RE.search(line)
            if dm and GPU_WORD_RE.search(dm.group(1)):
                value = dm.group(1).strip()
                suf = COUNT_SUFFIX_RE.match(value)
                pre = COUNT_PREFIX_RE.match(value)
                if suf and suf.group(1):
                    value = f"{int(suf.group(2))}x {suf.group(1).strip()}"
                elif pre:
                    value = f"{int(pre.group(1))}x {pre.group(2).strip()}"
                self.device = Cited(value, i, clip(line))

        # sizes
        if "bytes" in low:
            for regex, comp, raw in ((SER_RE, "model_comp", "model_raw"), (TOTAL_RE, "total_comp", "total_raw")):
                m = regex.search(line)  # "Serialized model int6+lzma: N bytes", "Total submission size ...: N"
                n = to_int(m.group(2)) if m else None
                if n is not None:
                    setattr(self, comp if is_compressed(m.group(1)) else raw, Cited(n, i, clip(line)))
            cm = CODE_RE.search(line)
            if cm:
                n = to_int(cm.group(2))
                if n is not None:
                    self.last("bytes_code", n, i, line)
            for bk in BYTES_KV_RE.finditer(line):
                n = to_int(bk.group(2))
                if n is None:
                    continue
                c = Cited(n, i, clip(line))
                kind = bk.group(1)
                if kind == "total":
                    self.total_comp = c
                elif kind == "model":
                    self.model_comp = c
                else:
                    self.scraped["bytes_code"] = c


def _choose_headline(scan: _Scan) -> tuple[Metric | None, str | None]:
    """Apply the headline rule (module docstring); (metric, why-none)."""
    flagged = [m for m, st, h in scan.metrics if st and h and m.val_bpb is not None]
    if flagged:
        return flagged[-1], None
    structured = [(m, st) for m, st, _ in scan.metrics if st]
    pool = [m for m, st in structured] if structured else [m for m, _, _ in scan.metrics]
    with_bpb = [m for m in pool if m.val_bpb is not None]
    candidates = [m for m in with_bpb if not PREQUANT_RE.search(m.name)]
    if not candidates:
        if with_bpb:
            names = ", ".join(sorted({m.name for m in with_bpb}))
            return None, f"only pre-quantization metrics were printed: {names}"
        return None, None
    last = candidates[-1]
    if not last.exact:
        exact = [m for m in candidates if m.name == last.name + "_exact"]
        if exact:
            return exact[-1], None
    return last, None


# Logs that dump their source or config can have many non-step lines; the
# rules need the labels near the end, not an unbounded copy.
CONTEXT_LINES = 20_000
CONTEXT_WIDTH = 500
# The longest line of a real log is ~5,000 characters (a :::PGOLF config event); a
# longer one is not scanned (a 64 MiB line of NUL bytes cost minutes and 670 MB).
MAX_LINE_CHARS = 64 * 1024


def parse_log_text(text: str, name: str) -> RunEvidence:
    """Parse one log's text into a :class:`RunEvidence`. Never raises."""
    try:
        return _parse(text, name)
    except Exception as exc:  # pragma: no cover - last line of defence
        ev = RunEvidence(log=name)
        ev.problems.append(f"internal error while parsing {name}: {exc.__class__.__name__}: {exc}")
        ev.missing.append(f"could not find headline val_bpb in {name}")
        return ev


def _parse(text: str, name: str) -> RunEvidence:
    if not isinstance(text, str):
        text = str(text)
    if text.startswith("\ufeff"):
        text = text[1:]
    scan = _Scan(name)
    ev = RunEvidence(log=name)

    lines = text.split("\n")
    ends_with_newline = text.endswith("\n")
    if ends_with_newline:
        lines.pop()
    ev.n_lines = len(lines) if text else 0

    nul = text.count("\x00")
    ctrl = 0 if nul or not text else _CTRL_RE.subn("", text)[1]  # a count, not a list of every match
    if nul:
        ev.problems.append(f"{name} looks binary: it contains {nul} NUL byte(s)")
    elif text and ctrl > max(8, len(text) // 20):
        ev.problems.append(f"{name} looks binary: {ctrl} control characters in {len(text)} characters")
    if not text.strip():
        ev.problems.append(f"{name} is empty")

    long_lines = 0
    for i, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            long_lines += 1
            if long_lines <= 3:
                ev.problems.append(f"line {i} of {name} is {len(line):,} characters long, over {MAX_LINE_CHARS:,}; not read")
            continue
        try:
            _scan_line(scan, ev, i, line)
        except (ValueError, OverflowError, RecursionError) as exc:
            # one odd line (a step number of 4,300 digits) costs that line, not the log
            ev.problems.append(f"line {i} of {name} could not be read ({exc.__class__.__name__}: {str(exc).split(';')[0][:120]}); skipped")

    if long_lines > 3:
        ev.problems.append(f"{long_lines - 3:,} more lines of {name} over {MAX_LINE_CHARS:,} characters were not read")
    _finish(scan, ev, ends_with_newline)
    return ev


def _scan_line(scan: _Scan, ev: RunEvidence, i: int, line: str) -> None:
    structured = PGOLF_PREFIX in line
    stop = not structured and "stopping_early" in line
    step = STEP_RE.search(line) if not (structured or stop) and "step" in line else None
    if step:
        scan.step_line(i, line, step)
        return
    if len(ev.context) < CONTEXT_LINES:
        ev.context.append((i, line[:CONTEXT_WIDTH]))
    if structured:
        scan.structured_line(i, line)
    elif stop:
        scan.stop_line(i, line)
    else:
        scan.other_line(i, line)


def _finish(scan: _Scan, ev: RunEvidence, ends_with_newline: bool) -> None:
    name = scan.name
    ev.structured = scan.structured
    ev.metrics = [m for m, _, _ in scan.metrics]
    ev.problems.extend(scan.problems)

    # training time and steps: structured > stopping_early > last step line
    train_end_line = 0
    if scan.stop is not None:
        scan.scraped["train_time_ms"] = scan.stop
    elif scan.last_step_time is not None:
        scan.scraped["train_time_ms"] = scan.last_step_time
    if scan.stop_steps is not None:
        scan.scraped["steps"] = scan.stop_steps
    elif scan.last_step is not None:
        li, n, _, txt = scan.last_step
        scan.scraped["steps"] = Cited(n, li, clip(txt))
    for c in (scan.stop, scan.stop_steps):
        if c is not None:
            train_end_line = max(train_end_line, c.line)
    if scan.last_step is not None:
        train_end_line = max(train_end_line, scan.last_step[0])

    # hardware: nvidia-smi table > device/gpu line
    if scan.smi:
        counts: dict[str, int] = {}
        for model, _, _ in scan.smi.values():
            counts[model] = counts.get(model, 0) + 1
        first = min(scan.smi.values(), key=lambda r: r[1])
        value = " + ".join(f"{n}x {model}" for model, n in counts.items())
        scan.scraped["hardware"] = Cited(value, first[1], clip(first[2]))
    elif scan.device is not None:
        scan.scraped["hardware"] = scan.device

    # sizes: compressed > raw
    model = scan.model_comp or scan.model_raw
    if model is not None:
        scan.scraped["bytes_model"] = model
    raw_total_note = None
    if scan.total_comp is not None:
        scan.scraped["bytes_total"] = scan.total_comp
    elif scan.total_raw is not None:
        if scan.model_comp is not None:
            raw_total_note = (
                f"could not find total submission size in {name}: only an uncompressed total "
                f"({scan.total_raw.value} bytes, line {scan.total_raw.line}) was printed, while the model "
                f"was serialized compressed ({scan.model_comp.value} bytes, line {scan.model_comp.line})"
            )
        else:
            scan.scraped["bytes_total"] = scan.total_raw

    # structured wins
    merged = dict(scan.scraped)
    merged.update(scan.struct)
    if "train_time_ms" in scan.struct:
        train_end_line = max(train_end_line, scan.struct["train_time_ms"].line)
    for attr in (
        "seed", "train_time_ms", "steps", "bytes_code", "bytes_model", "bytes_total",
        "val_tokens", "train_shards", "gptq_reserve_s", "world_size", "hardware", "peak_memory_mib",
    ):
        setattr(ev, attr, merged.get(attr))

    # seed: conflicts, file name fallback
    distinct = {}
    for c in scan.seeds_seen:
        distinct.setdefault(c.value, c)
    if len(distinct) > 1:
        shown = ", ".join(f"{c.value} (line {c.line})" for c in distinct.values())
        ev.problems.append(f"{name} prints different seeds: {shown}")
    fn_seed = seed_from_filename(name)
    if ev.seed is None and fn_seed is not None:
        ev.seed = Cited(fn_seed, 0, clip(PurePath(name).name))
    elif ev.seed is not None and fn_seed is not None and fn_seed != ev.seed.value:
        ev.problems.append(
            f"seed {ev.seed.value} in {name} (line {ev.seed.line}) differs from the seed {fn_seed} in its file name"
        )

    # metrics: structured vs scraped disagreement
    scraped_last: dict[str, Metric] = {}
    for m, st, _ in scan.metrics:
        if not st:
            scraped_last[base_name(m.name)] = m
    for m, st, _ in scan.metrics:
        if st and m.val_bpb is not None:
            other = scraped_last.get(base_name(m.name))
            if (
                other is not None
                and other.val_bpb is not None
                and not (abs(other.val_bpb - m.val_bpb) <= _BPB_TOLERANCE)
            ):
                ev.problems.append(
                    f"{PGOLF_PREFIX} metric {m.name} val_bpb {m.val_bpb} (line {m.line}) disagrees with "
                    f"the printed {other.name} val_bpb {other.val_bpb} (line {other.line}) in {name}; "
                    f"using the structured value"
                )
    for attr in ("bytes_code", "bytes_model", "bytes_total"):
        st_c, sc_c = scan.struct.get(attr), scan.scraped.get(attr)
        if st_c is not None and sc_c is not None and st_c.value != sc_c.value:
            ev.problems.append(
                f"{PGOLF_PREFIX} {attr} {st_c.value} (line {st_c.line}) disagrees with the printed "
                f"{sc_c.value} bytes (line {sc_c.line}) in {name}; using the structured value"
            )
    headline, why_none = _choose_headline(scan)
    ev.headline = headline
    # a non-finite headline (a diverged run) is judged by PG403, which cites its line

    # eval time
    ev.eval_phases = dict(scan.phases)
    if scan.struct_total_eval is not None:
        ev.eval_time_ms = scan.struct_total_eval
    elif scan.total_eval is not None:
        ev.eval_time_ms = scan.total_eval
    else:
        after = [c for c in scan.phases.values() if c.line > train_end_line]
        if after:
            last_phase = max(after, key=lambda c: c.line)
            total = sum(c.value for c in after)
            ev.eval_time_ms = Cited(total, last_phase.line, last_phase.text)
            ev.eval_time_summed = True

    # truncation: training ran but nothing final followed
    if scan.last_step is not None:
        last_line = max(
            [scan.last_step[0]] + [c.line for c in (scan.stop, scan.stop_steps) if c is not None]
        )
        if not any(m.line > last_line for m in ev.metrics):
            li, n, total_steps, _ = scan.last_step
            detail = "" if ends_with_newline else "; its last line has no newline"
            ev.problems.append(
                f"{name} appears truncated: no final metric after training "
                f"(last step {n}/{total_steps} at line {li}){detail}"
            )

    # missing evidence
    if ev.headline is None:
        extra = f" ({why_none})" if why_none else ""
        ev.missing.append(f"could not find headline val_bpb in {name}{extra}")
    if ev.seed is None:
        ev.missing.append(f"could not find seed in {name} (neither in the log nor in its file name)")
    if ev.train_time_ms is None:
        ev.missing.append(f"could not find training time in {name}")
    if ev.bytes_total is None:
        ev.missing.append(raw_total_note or f"could not find total submission size in {name}")
    if ev.eval_time_ms is None:
        ev.missing.append(f"could not find eval time in {name}")


def parse_log_file(path: Path, *, max_bytes: int = 64 * 2**20) -> RunEvidence:
    """Read a log file (at most ``max_bytes``) and parse it. Never raises.

    Bytes are decoded as UTF-8 with replacement; invalid UTF-8, NUL bytes, an
    over-long file (parsed up to its last complete line within ``max_bytes``)
    and an unreadable or missing file are ``problems`` entries.
    """
    name = str(path)
    try:
        name = PurePath(path).name or str(path)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes)
            over = bool(fh.read(1))  # peeked apart: slicing max_bytes + 1 would copy them
    except Exception as exc:
        ev = RunEvidence(log=name)
        ev.problems.append(f"could not read {name}: {exc.__class__.__name__}: {exc}")
        ev.missing.append(f"could not find headline val_bpb in {name}")
        seed = seed_from_filename(name)
        if seed is not None:
            ev.seed = Cited(seed, 0, name)
        return ev

    notes: list[str] = []
    view = memoryview(data)  # cut and decoded without copying the bytes again
    if over:
        cut = data.rfind(b"\n")
        if cut >= 0:
            view = view[: cut + 1]
        notes.append(
            f"{name} is larger than {max_bytes} bytes; only its first {len(view)} bytes were parsed"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        view = view[3:]
    try:
        text = str(view, "utf-8")
    except UnicodeDecodeError as exc:
        text = str(view, "utf-8", "replace")
        notes.append(
            f"{name} is not valid UTF-8 (first bad byte at offset {exc.start}); decoded with replacement characters"
        )
    view.release()
    del view, data  # the text is all the parser needs
    ev = parse_log_text(text, name)
    ev.problems[:0] = notes
    return ev
