"""Run the dynamic probes over every merged record of a challenge checkout.

    python scripts/corpus_probes.py CHECKOUT [--ref REF (default HEAD)] [--track track_10min_16mb] [--timeout 300] [--limit N] [--json OUT]

For each `records/<track>/<folder>/train_gpt.py` it runs `probe_record` and
reports on how many records the headline pipeline (the evaluation the logs'
headline comes from, with the steps before it) ran, which records the probes prove
a violation on, and, per probe (C1 flip, C4 count, C2 sum, BOS isolation), on how
many scripts it ran, how many it failed, why it did not run elsewhere, and how long
each record took (median and total: the benchmark of issue 12's time bar). CHECKOUT is a work tree or a bare git directory read at
--ref (auditor.corpus.checkout extracts records/ with git archive).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

from auditor.corpus import CorpusError, checkout, record_folders
from auditor.probes.runner import PROBES as PROBE_CHECKS
from auditor.probes.runner import probe_record

PROBES = tuple(PROBE_CHECKS)  # c1, c4, c2, bos


def _why(reason: str) -> str:
    """A reason bucket for the summary: the first words, numbers and names removed."""
    reason = re.sub(r"\(train_gpt\.py:\d+\)|'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "…", reason or "unknown")
    return reason[:90]


def run(root: Path, track: str, timeout: float, limit: int | None, ref: str = "HEAD") -> dict:
    rows = []
    with checkout(root, ref) as records:
        folders = [f for f in record_folders(records, track) if (f / "train_gpt.py").is_file()]
        for folder in folders[:limit]:
            started = time.perf_counter()
            try:
                report = probe_record(folder, timeout_s=timeout)
                data, reason = report.data or {}, report.reason
                outcome, outcome_why = report.outcome()
            except Exception as exc:  # one broken record never stops the survey
                data, reason = {}, f"{type(exc).__name__}: {exc}"
                outcome, outcome_why = "not_proven", reason
            entries = data.get("entries", [])
            # the headline pipeline ran: an entry the logs' headline names, run to the end
            headline_ran = any(e.get("headline") and e.get("status") == "ok" for e in entries)
            row = {"record": folder.name, "seconds": round(time.perf_counter() - started, 2),
                   "cpu_seconds": float(data.get("cpu_s") or 0.0), "reason": reason,
                   "entries": [e.get("name") for e in entries], "headline_ran": headline_ran,
                   "outcome": outcome, "outcome_why": outcome_why, "probes": {}}
            for p in PROBES:
                statuses = [e.get(p, {}).get("status", e.get("status")) for e in entries] or ["not_run"]
                ran = [s for s in statuses if s in ("pass", "fail", "deviation", "unverified")]
                # not applicable: an entry ran and there was nothing for this probe to check
                # (no candidate-probability function for C2; no document isolation claimed for BOS)
                applicable = not ran and "not_applicable" in statuses
                why = "" if ran or applicable else _why(reason or next(
                    (e.get(p, {}).get("reason") or e.get("reason", "") for e in entries
                     if e.get(p, {}).get("status", e.get("status")) not in ("not_applicable",)), ""))
                row["probes"][p] = {"ran": bool(ran), "fail": "fail" in ran, "not_applicable": applicable,
                                    "why_not": why}
            rows.append(row)
            print(f"{folder.name}: {row['seconds']:.1f}s {outcome} headline={'ran' if headline_ran else 'no'} " + " ".join(
                f"{p}={'FAIL' if v['fail'] else 'ok' if v['ran'] else 'n/a' if v['not_applicable'] else '-'}"
                for p, v in row["probes"].items())
                + (f"  ({reason[:80]})" if reason else ""), file=sys.stderr)
    return {"records": len(rows), "rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    out = {}
    for p in PROBES:
        ran = [r for r in rows if r["probes"][p]["ran"]]
        na = [r for r in rows if r["probes"][p]["not_applicable"]]
        why = collections.Counter(r["probes"][p]["why_not"] for r in rows
                                  if not r["probes"][p]["ran"] and not r["probes"][p]["not_applicable"])
        out[p] = {"ran": len(ran), "not_applicable": len(na), "not_run": len(rows) - len(ran) - len(na),
                  "failed": sum(r["probes"][p]["fail"] for r in rows),
                  "failed_records": [r["record"] for r in rows if r["probes"][p]["fail"]],
                  "not_run_reasons": dict(why.most_common(10))}
    out["headline_ran"] = sum(r["headline_ran"] for r in rows)
    out["proven"] = [r["record"] for r in rows if r["outcome"] == "proven"]
    out["headline_not_run"] = {r["record"]: r["outcome_why"][:200] for r in rows if not r["headline_ran"]}
    secs = sorted(r["seconds"] for r in rows)
    cpu = sorted(r["cpu_seconds"] for r in rows)
    out["seconds"] = {"total": round(sum(secs), 1), "median": round(statistics.median(secs), 2) if secs else 0.0,
                      "max": secs[-1] if secs else 0.0, "under_60s": sum(s < 60 for s in secs),
                      "cpu_median": round(statistics.median(cpu), 2) if cpu else 0.0, "cpu_total": round(sum(cpu), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("--ref", default="HEAD", help="the ref to read in a bare git directory")
    ap.add_argument("--track", default="track_10min_16mb")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per record (the time bar is the median)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the full per-record table here")
    args = ap.parse_args(argv)
    try:
        result = run(args.checkout, args.track, args.timeout, args.limit, args.ref)
    except CorpusError as exc:
        print(f"corpus_probes: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    s = result["summary"]
    n = result["records"]
    print(f"{n} train_gpt.py files under records/{args.track}/")
    print(f"  headline pipeline ran on {s['headline_ran']} of {n} ({100 * s['headline_ran'] / max(n, 1):.0f} %); "
          f"proven violations on {len(s['proven'])}" + (f": {', '.join(s['proven'])}" if s["proven"] else ""))
    for record, why in list(s["headline_not_run"].items())[:12]:
        print(f"      headline not run: {record}: {why[:160]}")
    for p, name in zip(PROBES, ("C1 flip", "C4 count", "C2 sum", "BOS isolation")):
        print(f"  {name:14s} ran on {s[p]['ran']:4d}, failed on {s[p]['failed']:4d}, nothing to check on "
              f"{s[p]['not_applicable']:4d}, not run on {s[p]['not_run']:4d}"
              + (f"; failed: {', '.join(s[p]['failed_records'][:8])}" if s[p]["failed"] else ""))
        for why, n in list(s[p]["not_run_reasons"].items())[:3]:
            print(f"      not run ({n}): {why}")
    t = s["seconds"]
    print(f"  time: total {t['total']}s, median {t['median']}s, max {t['max']}s, {t['under_60s']} under 60 s; "
          f"CPU of the probe child (its own user+system): median {t['cpu_median']}s, total {t['cpu_total']}s; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
