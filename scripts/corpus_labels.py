"""Audit labelled real submissions and say, per family, whether the right rule fired.

    python scripts/corpus_labels.py MIRROR [--labels FILE] [--only 467,568] [--verbose]
    python scripts/corpus_labels.py MIRROR --probes [--timeout 280] [--json OUT]

MIRROR is a bare mirror (or clone) of openai/parameter-golf holding the labelled
commits (``refs/pull/N/head``). ``--labels`` is a JSON list of entries with ``pr``,
``commit``, ``path`` (the script; its folder is the record), ``family``, ``verdict``
(``illegal`` | ``legal``) and ``expect`` (the rule codes that must fire; empty: any
PG1xx-PG3xx), as in the shared development corpus (default: ``../shared/corpus/dev.json``
beside this repository, when present). Each folder is read from git at its commit
the way ``pgolf scan`` reads one (blobs the mirror lacks are left out) and audited
in this process exactly as ``pgolf check`` audits it.

A hit needs an illegal finding of an expected code; a false alarm is an illegal
PG1xx-PG3xx finding on a legal entry. ``--verbose`` prints, for every entry, the
illegal findings with their lines. Exit status: 0 when every illegal entry is a hit
and no legal entry is flagged, 1 otherwise, 2 on usage errors.

``--probes`` runs ``pgolf probe`` instead, on the illegal entries of the families a
dynamic probe can see (PROBE_FAMILIES), and tallies per family how many the probes
prove (a violation measured on the evaluation that produced the headline), measure on
another evaluation only, measure without proof that the moved values are counted,
check without finding anything, and leave not proven, with each entry's reason.
Exit status 0 (it is a survey, not a gate).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from auditor.audit import audit_path
from rules.core import Finding, Severity
from auditor.gitdiff import GitError, git, record_folder_of
from auditor.record import SCRIPT_NAME as SCRIPT

# The same ls-tree listing and cat-file extraction `pgolf scan` uses for git record folders.
from auditor.scan import Blobs, git_target, ls_tree, materialize

DEFAULT_LABELS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "dev.json"
# the families whose violation shows in per-token losses: multi-epoch rescoring, two-pass,
# pre-evaluation TTT, scored-region SLOT, target-keyed caches (the others are byte tables,
# calibration constants and code the probes do not see)
PROBE_FAMILIES = ("multi_epoch_rescore", "two_pass", "prequant_ttt", "scored_slot", "ngram_target_in_key")
OUTCOMES = ("proven", "other_evaluation", "unverified", "checked", "not_proven")


def static_code(f: Finding) -> bool:
    """A PG1xx-PG3xx code: what the labels are about (folder checks are PG4xx)."""
    return f.code[2:5].isdigit() and 100 <= int(f.code[2:5]) < 400


def audit_entry(repo: Path, entry: dict, tmp: Path, n: int) -> list[Finding]:
    """The findings of ``pgolf check`` on the entry's folder at its commit (a script that
    is not in a ``records/<track>/<folder>/`` is audited alone)."""
    audit = audit_path(extract_entry(repo, entry, tmp, n))
    if audit.error:
        raise GitError(audit.error)
    return audit.findings


def extract_entry(repo: Path, entry: dict, tmp: Path, n: int) -> Path:
    """Write the entry's folder at its commit under ``tmp/<n>/`` and return it."""
    path = entry["path"]
    folder = record_folder_of(path)
    if folder is None:
        root = tmp / str(n)
        root.mkdir(parents=True)
        (root / SCRIPT).write_bytes(git(repo, "show", f"{entry['commit']}:{path}").encode("utf-8", "surrogateescape"))
    else:
        listing = ls_tree(repo, entry["commit"], folder)
        blobs = Blobs(repo)
        try:
            root = materialize(blobs, tmp, n, git_target("labels", entry["commit"], folder, listing.get(folder, [])))
        finally:
            blobs.close()
    return root


def judge(entry: dict, findings: list[Finding]) -> tuple[bool, set[str]]:
    codes = {f.code for f in findings if f.severity == Severity.ILLEGAL and static_code(f)}
    if entry["verdict"] != "illegal":
        return not codes, codes
    return (bool(codes & set(entry["expect"])) if entry["expect"] else bool(codes)), codes


def probe_survey(repo: Path, entries: list[dict], timeout_s: float, out=sys.stdout) -> list[dict]:
    """Probe every illegal entry of PROBE_FAMILIES; one row per entry, printed as it ends."""
    from auditor.probes.runner import probe_record

    rows = []
    with tempfile.TemporaryDirectory(prefix="pgolf-labels-probe-") as tmp:
        for n, e in enumerate(entries):
            if e["verdict"] != "illegal" or e["family"] not in PROBE_FAMILIES:
                continue
            started = time.perf_counter()
            try:
                folder = extract_entry(repo, e, Path(tmp) / "src", n)
                outcome, why = probe_record(folder, timeout_s=timeout_s, tokenizer_cache=Path(tmp)).outcome()
            except (GitError, OSError) as exc:
                outcome, why = "not_proven", f"could not extract the entry: {exc}"
            row = {"pr": e["pr"], "family": e["family"], "outcome": outcome, "why": why,
                   "seconds": round(time.perf_counter() - started, 1)}
            rows.append(row)
            print(f"#{e['pr']:<5} {e['family']:20} {outcome:16} {row['seconds']:6.1f}s  {why[:150]}", file=out, flush=True)
    return rows


def print_survey(rows: list[dict], out=sys.stdout) -> None:
    per = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for r in rows:
        per[r["family"]][r["outcome"]] += 1
    print(f"{'family':22} " + " ".join(f"{o:>16}" for o in OUTCOMES), file=out)
    for fam in sorted(per):
        print(f"{fam:22} " + " ".join(f"{per[fam][o]:>16}" for o in OUTCOMES), file=out)
    total = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    print(f"{'all ' + str(len(rows)):22} " + " ".join(f"{total[o]:>16}" for o in OUTCOMES), file=out)


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mirror", type=Path)
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--only", help="comma-separated PR numbers")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--probes", action="store_true", help="survey the dynamic probes instead of the static audit")
    ap.add_argument("--timeout", type=float, default=280.0, help="seconds per probe run (with --probes)")
    ap.add_argument("--json", type=Path, default=None, help="write the probe survey's rows here (with --probes)")
    a = ap.parse_args(argv)
    try:
        entries = json.loads(a.labels.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read labels {a.labels}: {exc}", file=sys.stderr)
        return 2
    if a.only:
        keep = {int(x) for x in a.only.split(",")}
        entries = [e for e in entries if e["pr"] in keep]
    if a.probes:
        rows = probe_survey(a.mirror, entries, a.timeout, out)
        print_survey(rows, out)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=2))
        return 0
    per = defaultdict(lambda: [0, 0])
    misses, alarms, errors = [], [], []
    with tempfile.TemporaryDirectory(prefix="pgolf-labels-") as tmp:
        for n, e in enumerate(entries):
            try:
                findings = audit_entry(a.mirror, e, Path(tmp), n)
            except (GitError, OSError) as exc:
                errors.append((e["pr"], str(exc)))
                continue
            ok, codes = judge(e, findings)
            if e["verdict"] == "illegal":
                per[e["family"]][1] += 1
                per[e["family"]][0] += ok
                if not ok:
                    misses.append((e, codes))
            elif not ok:
                alarms.append((e, codes))
            if a.verbose:
                print(f"#{e['pr']} {e['family']} {'ok' if ok else 'WRONG'}", file=out)
                for f in findings:
                    if f.severity == Severity.ILLEGAL and static_code(f):
                        loc = f.location
                        print(f"  {f.code} {loc.file if loc else ''}:{loc.line_start if loc else ''} {f.message[:120]}",
                              file=out)
    for fam, (h, t) in sorted(per.items()):
        print(f"{fam:24} {h}/{t}", file=out)
    for e, codes in misses:
        print(f"miss   #{e['pr']:<5} {e['family']:22} want {'/'.join(e['expect']) or 'any'} "
              f"got {','.join(sorted(codes)) or 'nothing'}", file=out)
    for e, codes in alarms:
        print(f"alarm  #{e['pr']:<5} legal, flagged {','.join(sorted(codes))}", file=out)
    for pr, err in errors:
        print(f"error  #{pr:<5} {err}", file=out)
    hits = sum(h for h, _ in per.values())
    total = sum(t for _, t in per.values())
    print(f"right-rule recall {hits}/{total}, false alarms {len(alarms)}, errors {len(errors)}", file=out)
    return 0 if hits == total and not alarms and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
