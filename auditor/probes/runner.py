"""Orchestrate the probes for one record and turn the child's measurements into Findings.

    probe_record(path, timeout_s=120) -> ProbeReport
    probe_loaded(record, target, timeout_s=120) -> ProbeReport  (record already loaded)

Codes: PG150 probe-c1-flip, PG151 probe-c4-count, PG152 probe-c2-sum,
PG153 probe-bos-isolation (illegal when a leak is measured, info with the
numbers when the probe passed), PG159 probe-not-run (why a probe, or all of
them, could not run).

Verdict honesty: a probe result is a measured violation, a check that held (with
the functions that ran and the positions compared), or not proven. When nothing
ran, or the evaluation that printed the logs' headline (auditor.probes.headline)
did not run, PG159 is a WARNING naming what could not run: never a PASS. A
PG159 summary (info) lists, per probe, the entries it ran on and the
submission's functions each entry called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from auditor.checks.base import CheckRule
from rules.core import Finding, Location, Severity, sort_findings

C1 = CheckRule("PG150", "probe-c1-flip", "Flip one token; earlier positions' losses must not move (C1).",
               "RULEBOOK.md: C1 causal; PR #1240's flip probe")
C4 = CheckRule("PG151", "probe-c4-count", "Every target is scored exactly once, measured from per-token losses (C4).",
               "RULEBOOK.md: C4 single pass; BOS boundaries (scoring coverage)")
C2 = CheckRule("PG152", "probe-c2-sum", "Candidate-token probabilities the code computes sum to 1 (C2).",
               "RULEBOOK.md: C2 normalized; ruling PR #779")
BOS = CheckRule("PG153", "probe-bos-isolation", "Changing one document leaves other documents' losses unchanged.",
                "RULEBOOK.md: BOS boundaries (PR #1797 audit, fix #1851)")
NOT_RUN = CheckRule("PG159", "probe-not-run", "A dynamic probe could not run; the verdict rests on the static rules.",
                    "DESIGN.md: dynamic probes", severity=Severity.WARNING)
PROBE_RULES = [C1, C4, C2, BOS, NOT_RUN]
# the probe stream: whole evaluation sequences plus one token (targets are shifted by one),
# the shape the challenge's validation loader gives an evaluation (it trims the stream to
# `(n - 1) // seq_len * seq_len + 1` tokens), so a trailing partial sequence the loader
# already removed is not counted against the evaluation; 64 is discover.SEQ
STREAM_TOKENS = 7 * 64 + 1
SIBLING_MAX_BYTES = 4_000_000
PROBES = {"c1": C1, "c4": C4, "c2": C2, "bos": BOS}
PROBE_CODES = frozenset(rule.code for rule in PROBES.values())
RAN = ("pass", "fail", "deviation", "unverified")  # a probe status that is a verdict


class UnknownEntry(ValueError):
    """`--entry` names a function the script does not define (a usage error)."""


@dataclass
class ProbeReport:
    target: str
    findings: list[Finding] = field(default_factory=list)
    data: dict | None = None
    reason: str = ""  # why nothing ran at all
    elapsed_s: float = 0.0

    def ran(self, probe: str) -> list[str]:
        """Entries on which a probe produced a verdict (pass, fail, deviation)."""
        return [e["name"] for e in (self.data or {}).get("entries", [])
                if e.get(probe, {}).get("status") in RAN]

    def failed(self, probe: str) -> list[str]:
        return [e["name"] for e in (self.data or {}).get("entries", [])
                if e.get(probe, {}).get("status") == "fail"]

    def outcome(self) -> tuple[str, str]:
        """What the probes established, in one word and the message behind it: ``proven``
        (a violation measured on the scoring path), ``other_evaluation`` (measured on an
        evaluation that did not produce the headline), ``unverified`` (something moved,
        but not provably counted), ``not_proven`` (the scoring path did not run) or
        ``checked`` (it ran and every probe held)."""
        measured = [f for f in self.findings if f.code in PROBE_CODES]
        for f in measured:
            if f.severity == Severity.ILLEGAL:
                return "proven", f.message
        for f in measured:
            if f.severity == Severity.WARNING and not f.key.endswith(":deviation"):  # a BOS gap is accepted
                return ("other_evaluation" if f.key.endswith(":apart") else "unverified"), f.message
        for f in self.findings:
            if f.code == NOT_RUN.code and f.severity == Severity.WARNING:
                return "not_proven", f.message
        summary = next((f.message for f in self.findings if f.key == "summary"), "")
        return "checked", summary


def innermost_source(unit) -> tuple[str, str]:
    """(text, layer name) of the code that runs: the deepest effective layer."""
    layers = unit.effective_layers
    parents = {layer.parent for layer in layers}
    leaves = [layer for layer in layers if layer.name not in parents]
    best = max(leaves or layers, key=lambda layer: (len(layer.steps), len(layer.text)))
    return best.text, best.name


def _analysed_source(record, source: str) -> str:
    """The code whose functions print the headline: the script's own, or, when the script
    only launches a file it ships (`exec(open("train_gpt_decode.py").read())`, defining no
    function itself), that file's. The child runs the script as it is either way."""
    from auditor.probes.headline import defined_functions

    if defined_functions(source):
        return source
    for unit in getattr(record, "linked", None) or []:
        text, _ = innermost_source(unit)
        if defined_functions(text):
            return text
    return source


def config_env(record) -> dict[str, str]:
    """The effective configuration the logs show (structured config events), as env vars."""
    env: dict[str, str] = {}
    for run in getattr(record, "logs", []) or []:
        for event in getattr(run, "structured", []) or []:
            if isinstance(event, dict) and event.get("event") == "config":
                for key, value in event.items():
                    if key in ("event",) or isinstance(value, (dict, list)) or value is None:
                        continue
                    env.setdefault(str(key).upper(), str(int(value)) if isinstance(value, bool) else str(value))
        if env:
            break
    return env


def probe_record(path: Path, **options) -> ProbeReport:
    """Load the record at `path` and probe it (`pgolf probe`); options as for probe_loaded."""
    from auditor import record as record_mod

    started = time.perf_counter()
    record = record_mod.load(Path(path))
    report = probe_loaded(record, str(path), **options)
    report.elapsed_s = time.perf_counter() - started  # the load counts too
    return report


def probe_loaded(record, target: str, timeout_s: float = 120.0, env: dict[str, str] | None = None,
                 entries: list[str] | None = None, tokenizer_cache: Path | None = None,
                 n_tokens: int = STREAM_TOKENS, threads: int = 2,
                 intercept_only: bool = False) -> ProbeReport:
    """Probe an already loaded Record (`check --probe` reuses the one it audited)."""
    from auditor.probes.sandbox import run_child

    started = time.perf_counter()
    report = ProbeReport(target=target)
    unit = record.script
    if unit is None:
        return _nothing(report, "no train_gpt.py to run", None, started)
    source, layer = innermost_source(unit)
    where = Location(unit.name, None, None, layer)
    from auditor.probes.headline import _facts, defined_functions, headline_of, logged_env

    if entries:
        defined = defined_functions(source)
        unknown = [e for e in entries if e not in defined]
        if unknown:
            raise UnknownEntry(f"--entry {', '.join(unknown)}: no such function in {unit.name} ({layer} layer)"
                               + (f"; it defines {', '.join(sorted(defined)[:12])}" if defined else ""))
    analysed = _analysed_source(record, source)
    try:
        facts = _facts(analysed)
    except Exception:  # unparsable here: the child reports the import error
        facts = None
    headline, headline_why = headline_of(record, analysed, facts) if facts is not None else (None, "the script does not parse")
    evaluators = set(headline.functions) if headline is not None else set()
    switched = logged_env(record, analysed, facts, evaluators) if facts is not None else {}
    cfg_env = {**config_env(record), **{k: v for k, (v, _) in switched.items()}, **(env or {})}
    try:
        from auditor.probes.tokenizer import ensure_tokenizer

        tok, vocab = ensure_tokenizer(tokenizer_cache)
    except Exception as exc:  # sentencepiece missing, unwritable cache
        return _nothing(report, f"no probe tokenizer: {type(exc).__name__}: {exc}", where, started)
    spec = {"source": source, "siblings": _siblings(record, unit.name), "tokenizer": tok, "vocab": vocab, "bos": 1, "n_tokens": n_tokens,
            "config_env": cfg_env, "entries": entries or [], "intercept_only": intercept_only,
            "headline": (headline.functions if headline and not entries else [])}
    child = run_child(spec, timeout_s, threads=threads)
    report.data = child.data
    jail = NOT_RUN.finding(Severity.INFO, _jail_message(child.confinement), where, key="sandbox")
    if child.data is None:
        return _nothing(report, child.reason, where, started, jail)
    data = child.data
    if data.get("error") and not data.get("entries"):
        stage = {"import": "importing the script failed"}.get(data.get("stage"), "the probes could not start")
        return _nothing(report, f"{stage}: {data['error']}", where, started, jail)
    findings = [jail]
    for e in data.get("entries", []):
        loc = Location(unit.name, e.get("line"), e.get("line"), layer)
        if e.get("status") != "ok":
            findings.append(NOT_RUN.finding(Severity.INFO, f"{e['name']}: no probe ran: {e.get('reason')}", loc,
                                            key=f"{e['name']}:entry"))
            continue
        for probe, rule in PROBES.items():
            got = _entry_findings(probe, rule, e, data, loc)
            if not e.get("verified") and probe in ("c1", "c4", "bos"):
                got = [f if f.severity != Severity.INFO else
                       replace(f, message=f.message + " (on losses not tied to the score the entry returns: not proof)")
                       for f in got]
            if headline is not None and not entries and not e.get("headline"):
                got = [_apart(f, headline) for f in got]
            findings += got
    if child.reason:  # timed out after some entries
        findings.append(NOT_RUN.finding(Severity.INFO, f"probes stopped: {child.reason}", where, key="timeout"))
    findings += _honesty(data, headline, headline_why, entries, where,
                         [f"{k}={v} ({why})" for k, (v, why) in switched.items() if k not in (env or {})],
                         data.get("stubs", []), child.reason)
    report.findings = sort_findings(findings)
    report.elapsed_s = time.perf_counter() - started
    return report


def _siblings(record, script_name: str) -> dict[str, str]:
    """The record's other Python files, written next to the script in the sandbox, for
    scripts that exec or import a file they ship alongside (e.g. `train_gpt_decode.py`)."""
    root = getattr(record, "root", None)
    if root is None or getattr(record, "code_only", False):
        return {}
    out = {}
    for name in getattr(record, "files", []) or []:
        path = Path(root) / name
        if name == script_name or "/" in name or not name.endswith(".py") or not path.is_file():
            continue
        if path.stat().st_size <= SIBLING_MAX_BYTES:
            out[name] = path.read_text(encoding="utf-8", errors="replace")
    return out


def _apart(f: Finding, headline) -> Finding:
    """A violation measured on an evaluation that did not produce the headline score is
    reported apart: a warning, not the score's violation."""
    if f.severity != Severity.ILLEGAL:
        return f
    return replace(f, severity=Severity.WARNING, key=f.key + ":apart",
                   message=f.message + f" [another evaluation: the headline score comes from "
                                       f"{', '.join(headline.functions)}]",
                   evidence=tuple(f.evidence) + (f"headline `{headline.text[:80]}` ({headline.where})",))


def _label(e: dict) -> str:
    pre = e.get("pre_steps")
    return (e["name"] + (" (headline)" if e.get("headline") else "")
            + (f" (after {pre['function']}() lines {pre['lines'][0]}-{pre['lines'][1]})" if pre else ""))


def _honesty(data: dict, headline, headline_why: str, named: list[str] | None, where,
             switched: list[str] = (), stubs: list[str] = (), stopped: str = "") -> list[Finding]:
    """The summary (which entries each probe ran on, which functions they called) and
    the verdict guard: nothing ran, or the headline's evaluation did not run -> WARNING."""
    ents = data.get("entries", [])
    ok = [e for e in ents if e.get("status") == "ok"]
    out = []
    ran_lines = []
    for probe, rule in PROBES.items():
        on = [e for e in ok if (e.get(probe) or {}).get("status") in RAN]
        if on:
            ran_lines.append(f"{rule.code} {probe} ran on: " + ", ".join(
                _label(e)
                + (f", {e[probe]['checked']} positions compared" if "checked" in e[probe] else "")
                + (f", {e[probe]['targets']} targets counted" if "targets" in e[probe] else "") for e in on))
        else:
            ran_lines.append(f"{rule.code} {probe} ran on no entry")
    for e in ents:
        if e.get("functions"):
            ran_lines.append(f"{e['name']} called: {', '.join(e['functions'][:40])}"
                             + (f" (+{len(e['functions']) - 40} more)" if len(e["functions"]) > 40 else ""))
    if headline is not None:
        ran_lines.insert(0, f"headline `{headline.text[:80]}` ({headline.where}) is printed at line "
                            f"{', '.join(map(str, headline.printed_at))} from {', '.join(headline.functions)}")
    elif not named:
        ran_lines.insert(0, f"headline evaluation not identified: {headline_why}")
    ran_lines += [f"configuration the logs show: {s}" for s in switched]
    ran_lines += [f"CPU stub: {s}" for s in stubs]
    if not ok:
        why = "; ".join(f"{e['name']}: {e.get('reason')}" for e in ents) or data.get("error") or "no entry ran"
        out.append(NOT_RUN.finding(Severity.WARNING, f"NOT PROVEN: no evaluation ran, so no probe checked anything "
                                                     f"({why[:400]})", where, tuple(ran_lines), key="none-ran"))
        return out
    if headline is not None and not named:
        hl_ok = [e for e in ok if e.get("headline")]
        if not hl_ok:
            missing = [e for e in ents if e.get("headline")]
            why = ("; ".join(f"{e['name']}: {e.get('reason')}" for e in missing) if missing else
                   f"the probes stopped before it ran: {stopped}" if stopped else
                   f"{', '.join(headline.functions)} could not be loaded from the script")
            out.append(NOT_RUN.finding(
                Severity.WARNING, f"NOT PROVEN: the evaluation that produced the headline score "
                                  f"({', '.join(headline.functions)}) did not run ({why[:400]}); the probes that "
                                  f"ran checked other evaluations only", where, tuple(ran_lines), key="headline-not-run"))
            return out
        # the headline may come from any of its printers' evaluators: each one that ran must be checked
        unread = [e for e in hl_ok if _unchecked(e)]
        if unread:
            why = "; ".join(f"{e['name']}: {_unchecked(e)}" for e in unread)
            out.append(NOT_RUN.finding(
                Severity.WARNING, f"NOT PROVEN: the headline score may come from {', '.join(e['name'] for e in unread)}, "
                                  f"which ran, but no probe could check it ({why[:400]})", where, tuple(ran_lines),
                key="headline-unchecked"))
            return out
    if all(_unchecked(e) for e in ok):
        out.append(NOT_RUN.finding(
            Severity.WARNING, "NOT PROVEN: evaluations ran, but no probe could check any of them ("
                              + "; ".join(f"{e['name']}: {_unchecked(e)}" for e in ok)[:400] + ")",
            where, tuple(ran_lines), key="unchecked"))
        return out
    unfinished = [n for n in data.get("planned", []) if n not in {e["name"] for e in ok}]
    if headline is None and not named and unfinished and (stopped or data.get("stage") != "done"
                                                             or data.get("out_of_time")):
        out.append(NOT_RUN.finding(
            Severity.WARNING, f"NOT PROVEN: the probes stopped ({stopped or 'out of time'}) before "
                              f"{', '.join(unfinished)} ran, and which evaluation produced the headline score is "
                              f"not known; the ones that ran held", where, tuple(ran_lines), key="stopped"))
        return out
    names = ", ".join(_label(e) for e in ok)
    out.append(NOT_RUN.finding(Severity.INFO, f"probes ran on {len(ok)} of {len(ents)} entries: {names}", where,
                               tuple(ran_lines), key="summary"))
    return out


def _unchecked(e: dict) -> str:
    """Why no probe checked what an entry that ran returns ("" when one did): no probe gave a
    verdict, or the per-token losses compared are not the ones its returned score is made of."""
    if not any((e.get(p) or {}).get("status") in RAN for p in PROBES):
        return (e.get("c1") or {}).get("reason") or "no probe verdict"
    if not e.get("verified") and not any((e.get(p) or {}).get("status") == "fail" for p in PROBES):
        return (f"the per-token losses compared ({e.get('source')}) are not tied to the score it returns, "
                f"which is computed some other way")
    return ""


def _jail_message(confinement: str) -> str:
    if confinement == "bwrap":
        return ("probe sandbox: bwrap (no network, own PID namespace, read-only system, writable scratch only, "
                "allow-listed environment)")
    return (f"probe sandbox: UNCONFINED ({confinement.removeprefix('unconfined: ')}): the submission's code ran "
            f"as a plain subprocess, this machine's network, files and processes within its reach")


def _nothing(report: ProbeReport, reason: str, where, started, *extra: Finding) -> ProbeReport:
    report.reason = reason
    report.findings = [NOT_RUN.finding(Severity.WARNING, f"NOT PROVEN: no probe ran: {reason}", where, key="record"),
                       *extra]
    report.elapsed_s = time.perf_counter() - started
    return report


def _entry_findings(probe: str, rule: CheckRule, e: dict, data: dict, loc: Location) -> list[Finding]:
    r = e.get(probe) or {}
    name, status = e["name"], r.get("status")
    key = f"{name}:{probe}:{status}"
    src = f"per-token losses: {e.get('source')}"
    if e.get("loss_lines") and "intercepted" in str(e.get("source")):
        src += f"; computed by cross_entropy at {e.get('file', 'train_gpt.py')} line(s) " + ", ".join(
            map(str, e["loss_lines"][:8]))
    if e.get("pre_steps"):
        a, b = e["pre_steps"]["lines"]
        src += (f"; pipeline: {e['pre_steps']['function']}() lines {a}-{b} (steps after the weights are loaded that "
                f"train on validation tokens) ran first, on the same model")
    if status == "not_applicable":
        return []
    if status == "not_run":
        return [NOT_RUN.finding(Severity.INFO, f"{name}: {rule.slug} did not run: {r.get('reason')}", loc, key=key)]
    ev = [src]
    if probe == "c1":
        k = r["flipped"]
        if status == "fail":
            sev = Severity.ILLEGAL if r.get("verified") else Severity.WARNING
            if r.get("uncounted"):
                msg = (f"{name}: NOT PROVEN: flipping token {k} moved computations of {r['changed']} earlier positions "
                       f"(up to {r['max_abs']:.3g} nats at position {r['worst_position']}), but which computations are "
                       f"counted in the returned score could not be determined (C1 unverified)")
            else:
                msg = (f"{name}: position {r['worst_position']}'s loss changed by {r['max_abs']:.3g} nats when token {k} "
                   f"was flipped; {r['changed']} of {r['checked']} earlier positions moved (C1: a score depends on a "
                   f"later token)")
            ev.append("first changed positions (position, loss change in nats): "
                      + ", ".join(f"{p}: {d:+.4g}" for p, d in r.get("sample", [])))
            if r.get("all_moved"):
                ev.append(f"the counted losses were not tied to a returned total, but every no-grad computation of "
                          f"{r['all_moved']} earlier positions moved (first {r['all_moved_sample']}): whichever "
                          f"computation is counted, it moved")
            elif r.get("uncounted"):
                ev.append("the counted losses could not be tied to a returned total; these are computations the "
                          "entry made for earlier positions (any of them may be the counted one)")
            elif not r.get("verified"):
                ev.append("the counted losses could not be tied to a returned total; the moved values were computed "
                          "by the entry but may not all be counted")
            return [rule.finding(sev, msg, loc, ev, key)]
        return [rule.finding(Severity.INFO, f"{name}: flipping token {k} changed none of the {r['checked']} earlier "
                                            f"positions' losses (largest difference {r.get('max_abs', 0.0):.2g} nats)",
                             loc, ev, key)]
    if probe == "c4":
        n = r["targets"]
        if status in ("fail", "unverified") or (status == "deviation" and r.get("at_edges")):
            parts = []
            if r["twice"]:
                parts.append(f"{r['twice']} positions counted more than once (up to {r['max_times']} times, "
                             f"first {r['first_twice'][:4]})")
            if r["missing"]:
                parts.append(f"{r['missing']} of {n} targets never scored"
                             + (f", {r['tail_missing']} of them in the stream's tail" if r["tail_missing"] else "")
                             + f" (first {r['first_missing'][:4]})")
            sev = Severity.ILLEGAL if status == "fail" else Severity.WARNING
            if status == "deviation":  # only within one window of the stream's start or end
                return [rule.finding(sev, f"{name}: " + "; ".join(parts) + f", all within {r['window']} tokens of "
                                     "the stream's start or end (a deviation: at most one evaluation window of the "
                                     "whole validation set; C4: every token scored exactly once)", loc, ev, key)]
            return [rule.finding(sev, f"{name}: " + "; ".join(parts) + " (C4: every token scored exactly once)",
                                 loc, ev, key)]
        if status == "deviation":
            return [rule.finding(Severity.WARNING, f"{name}: {r['bos_missing']} BOS positions are never scored as "
                                                   f"targets; every other target of {n} is scored once (a deviation "
                                                   f"accepted in practice)", loc, ev, key)]
        return [rule.finding(Severity.INFO, f"{name}: all {n} targets scored exactly once", loc, ev, key)]
    if probe == "c2":
        fn = r["function"]
        what = (f"{fn}() summed over all {r['candidates']} values of its candidate argument {r['arg']!r}"
                if r["kind"] == "candidate" else f"the vocabulary-sized output of {fn}()")
        ev = [f"sampled sums per function: {r['functions']}"]
        if status == "fail":
            return [rule.finding(Severity.ILLEGAL, f"{name}: {what} gives {r['sum']:.4f} at call #{r['call']}, not 1 "
                                                   f"(C2: not a normalized distribution)", loc, ev, key)]
        return [rule.finding(Severity.INFO, f"{name}: {what} sums to 1 (within 1e-3) at every sampled call",
                             loc, ev, key)]
    if probe == "bos":
        lo, hi = r["doc"]
        if status == "fail":
            return [rule.finding(Severity.ILLEGAL,
                                 f"{name}: changing the document at tokens {lo}-{hi - 1} moved {r['changed']} losses in "
                                 f"{r['n_documents']} other document(s), up to {r['max_abs']:.3g} nats at position "
                                 f"{r['worst_position']} (documents leak into each other)", loc,
                                 ev + [f"documents affected (start positions): {r['documents']}"], key)]
        return [rule.finding(Severity.INFO, f"{name}: changing the document at tokens {lo}-{hi - 1} left the "
                                            f"{r['checked']} losses of other documents unchanged", loc, ev, key)]
    return []
