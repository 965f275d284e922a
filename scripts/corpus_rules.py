"""Static rules over a challenge checkout: merged records and ruling PRs.

    python scripts/corpus_rules.py CHECKOUT [--ref main] [--track track_10min_16mb]
                                   [--pr 779 --expect PG101 ...] [--rulings] [--strict]

CHECKOUT is a checkout of openai/parameter-golf: a work tree, or a bare git
directory whose ``records/`` is read at ``--ref`` with ``git archive`` (see
``auditor.corpus.checkout``). Every ``records/<track>/*/train_gpt.py`` is
unpacked and linted with the folder's evidence (logs, README.md,
submission.json), exactly as ``pgolf check`` does; illegal findings are printed
per file, then totals.

``--pr N --expect CODE`` (repeatable, in pairs) reads ``refs/pull/N/head``: the
record folders whose ``train_gpt.py`` that ref adds or changes against
``--ref`` are extracted with ``git show REF:path`` and linted; the check passes
when CODE is reported as illegal. ``--rulings`` adds the ruling PRs named in
RULEBOOK.md: #779 PG101, #568 PG103, #1797 PG105. The PR refs must have been
fetched (``git fetch origin '+refs/pull/*/head:refs/pull/*/head'``).

Exit status: 1 when an expectation fails (or, with ``--strict``, when a merged
record has an illegal finding), 2 on usage errors, 0 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

from auditor import record as record_mod
from auditor.audit import lint_record
from auditor.corpus import CorpusError, checkout, record_folders
from auditor.findings import Finding, Severity
from auditor.record import SCRIPT_NAME as SCRIPT

RULINGS = (("779", "PG101"), ("568", "PG103"), ("1797", "PG105"))


def _git(repo: Path, *args: str, binary: bool = False):
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if done.returncode != 0:
        msg = done.stderr.decode(errors="replace").strip().splitlines()
        raise CorpusError(f"git {' '.join(args)}: {msg[-1] if msg else done.returncode}")
    return done.stdout if binary else done.stdout.decode(errors="replace")


def _fmt(f: Finding) -> str:
    loc = f.location
    where = f"line {loc.line_start}" if loc and loc.line_start else "line ?"
    if loc and loc.line_end and loc.line_end != loc.line_start:
        where += f"-{loc.line_end}"
    layer = f" [{loc.layer}]" if loc and loc.layer and loc.layer != "shipped" else ""
    return f"{f.code} {f.slug} {where}{layer}: {f.message}"


def lint_folder(folder: Path) -> list[Finding]:
    record = record_mod.load(folder)
    return lint_record(record, env={})


def merged(path: Path, ref: str, track: str | None, out) -> tuple[int, int, Counter]:
    files = flagged = 0
    codes: Counter = Counter()
    warnings = 0
    with checkout(path, ref) as records:
        for folder in record_folders(records, track):
            if not (folder / SCRIPT).is_file():
                continue
            files += 1
            name = folder.relative_to(records).as_posix()
            try:
                findings = lint_folder(folder)
            except Exception as exc:  # report and go on: one bad folder must not hide the rest
                print(f"{name}: error: {type(exc).__name__}: {exc}", file=out)
                continue
            illegal = [f for f in findings if f.severity == Severity.ILLEGAL]
            warnings += sum(f.severity == Severity.WARNING for f in findings)
            if illegal:
                flagged += 1
                print(f"{name}/{SCRIPT}: {len(illegal)} illegal", file=out)
                for f in illegal:
                    codes[f.code] += 1
                    print(f"  {_fmt(f)}", file=out)
    print(f"merged {SCRIPT} files linted: {files}; with an illegal finding: {flagged}; "
          f"illegal findings by rule: {dict(sorted(codes.items())) or '{}'}; warnings: {warnings}", file=out)
    return files, flagged, codes


def changed_scripts(repo: Path, base: str, ref: str) -> list[str]:
    """``records/**/train_gpt.py`` paths that ``ref`` adds or changes against ``base``."""
    try:
        names = _git(repo, "diff", "--name-only", f"{base}...{ref}", "--", "records").splitlines()
    except CorpusError:  # no merge base: compare the trees directly
        names = _git(repo, "diff", "--name-only", base, ref, "--", "records").splitlines()
    return sorted(n for n in names if PurePosixPath(n).name == SCRIPT
                  and n in set(_git(repo, "ls-tree", "-r", "--name-only", ref, "--", "records").splitlines()))


def extract_folder(repo: Path, ref: str, folder: str, dest: Path) -> Path:
    """Write every file of ``folder`` at ``ref`` under ``dest`` (``git show REF:path``)."""
    target = dest / folder
    for name in _git(repo, "ls-tree", "-r", "--name-only", ref, "--", folder).splitlines():
        rel = PurePosixPath(name).relative_to(folder)
        if ".." in rel.parts:
            continue
        path = target / Path(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_git(repo, "show", f"{ref}:{name}", binary=True))
    return target


def check_pr(repo: Path, base: str, pr: str, expect: str, out) -> bool:
    ref = f"refs/pull/{pr}/head"
    try:
        scripts = changed_scripts(repo, base, ref)
    except CorpusError as exc:
        print(f"PR #{pr}: error: {exc}", file=out)
        return False
    if not scripts:
        print(f"PR #{pr}: {ref} changes no records/**/{SCRIPT}", file=out)
        return False
    ok = False
    with tempfile.TemporaryDirectory(prefix="pgolf-pr-") as tmp:
        for script in scripts:
            folder = str(PurePosixPath(script).parent)
            local = extract_folder(repo, ref, folder, Path(tmp))
            findings = lint_folder(local)
            hits = [f for f in findings if f.code == expect and f.severity == Severity.ILLEGAL]
            others = [f for f in findings if f.severity == Severity.ILLEGAL and f.code != expect]
            near = [f for f in findings if f.code == expect and f.severity != Severity.ILLEGAL]
            status = "OK" if hits else "MISSING"
            ok = ok or bool(hits)
            print(f"PR #{pr} {script}: expect {expect}: {status}", file=out)
            for f in hits + near + others:
                print(f"  {f.severity.value}: {_fmt(f)}", file=out)
    return ok


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--ref", default="main")
    parser.add_argument("--track", default="track_10min_16mb")
    parser.add_argument("--pr", action="append", default=[])
    parser.add_argument("--expect", action="append", default=[])
    parser.add_argument("--rulings", action="store_true", help="check the ruling PRs of RULEBOOK.md")
    parser.add_argument("--no-merged", action="store_true", help="only the PR checks")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a merged record is flagged illegal")
    args = parser.parse_args(argv)
    if len(args.pr) != len(args.expect):
        parser.error("give one --expect CODE per --pr N")
    pairs = list(zip(args.pr, args.expect)) + (list(RULINGS) if args.rulings else [])
    status = 0
    if not args.no_merged:
        try:
            _files, flagged, _codes = merged(args.path, args.ref, args.track, out)
        except CorpusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.strict and flagged:
            status = 1
    results = []
    for pr, expect in pairs:
        results.append(check_pr(args.path, args.ref, pr.lstrip("#"), expect.upper(), out))
    if pairs:
        print(f"ruling PRs flagged as expected: {sum(results)}/{len(results)}", file=out)
        if not all(results):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
