"""Static rules over a challenge checkout: merged records and ruling PRs.

    python scripts/corpus_rules.py CHECKOUT [--ref main] [--track track_10min_16mb]
                                   [--pr 779 --expect PG101 ...] [--rulings] [--strict]

CHECKOUT is a checkout of openai/parameter-golf: a work tree, or a bare git
directory whose ``records/`` is read at ``--ref`` with ``git archive`` (see
``auditor.corpus.checkout``). Every ``records/<track>/*/train_gpt.py`` is
unpacked and linted with the folder's evidence (logs, README.md,
submission.json), exactly as ``pgolf check`` does; illegal findings are printed
per file, then totals.

``--pr N --expect CODE`` (repeatable, in pairs) reads ``refs/pull/N/head`` (``N~1``: the
commit before its head): the
record folders whose ``train_gpt.py`` that ref adds or changes against
``--ref`` are extracted the way ``pgolf scan`` does (one ``git ls-tree``, blobs
through ``git cat-file --batch``; symlinks are not written) and linted; the check passes
when CODE is reported as illegal. ``--rulings`` adds the ruling PRs named in
RULEBOOK.md, each at the line the ruling is about: #779 PG101, #568 PG103, and
#1797 PG105 before its fix (``1797~1``). The PR refs must have been
fetched (``git fetch origin '+refs/pull/*/head:refs/pull/*/head'``).

Exit status: 1 when an expectation fails (or, with ``--strict``, when a merged
record has an illegal finding), 2 on usage errors, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

from auditor import record as record_mod
from auditor.audit import lint_record
from auditor.corpus import CorpusError, checkout, record_folders
from rules.core import Finding, Severity
from auditor.gitdiff import GitError, changes, merge_base, record_folder_of, rev_parse
from auditor.record import SCRIPT_NAME as SCRIPT

# The same ls-tree listing and cat-file extraction `pgolf scan` uses for git record folders.
from auditor.scan import Blobs, git_target, ls_tree, materialize

# (PR, rule, a line the illegal finding must cover). A PR may carry a git revision suffix:
# #1797's head ends with its BOS-mask fix, and the ruling is about the code before it.
RULINGS = (("779", "PG101", 115), ("568", "PG103", 943), ("1797~1", "PG105", 1335))


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


def changed_scripts(repo: Path, base: str, commit: str, present: set[str]) -> list[str]:
    """``records/**/train_gpt.py`` paths that ``commit`` adds or changes against ``base``
    (from their merge base) and still has (``present``: its files, listed once)."""
    try:
        old = merge_base(repo, base, commit)
    except GitError:  # no merge base: compare the trees directly
        old = base
    return sorted(c.path for c in changes(repo, old, commit, "records")
                  if PurePosixPath(c.path).name == SCRIPT and c.path in present)


def extract(repo: Path, ref: str, commit: str, folders: dict, scripts: list[str], dest: Path) -> list[Path]:
    """Write each script's record folder at ``commit`` under ``dest``; return each script's folder there."""
    blobs = Blobs(repo)
    try:
        local = []
        for n, script in enumerate(scripts):
            record = record_folder_of(script)  # present, so inside a records/<track>/<folder>/
            root = materialize(blobs, dest, n, git_target(ref, commit, record, folders[record]))
            local.append(root.joinpath(*PurePosixPath(script).parent.relative_to(record).parts))
        return local
    finally:
        blobs.close()


def check_pr(repo: Path, base: str, pr: str, expect: str, out, line: int | None = None) -> bool:
    """``pr`` is a number, optionally with a revision suffix (``1797~1``). With ``line``, the
    illegal ``expect`` finding must cover that line of the script."""
    num, _, rev = pr.partition("~")
    ref = f"refs/pull/{num}/head" + (f"~{rev}" if rev else "")
    try:
        commit = rev_parse(repo, ref)
        folders = ls_tree(repo, commit, "records")  # record folder -> [(path inside, blob, mode)]
        present = {f"{folder}/{rel}" for folder, blobs in folders.items() for rel, _oid, _mode in blobs}
        scripts = changed_scripts(repo, base, commit, present)
    except GitError as exc:
        print(f"PR #{pr}: error: {exc}", file=out)
        return False
    if not scripts:
        print(f"PR #{pr}: {ref} changes no records/**/{SCRIPT}", file=out)
        return False
    ok = False
    with tempfile.TemporaryDirectory(prefix="pgolf-pr-") as tmp:
        for script, local in zip(scripts, extract(repo, ref, commit, folders, scripts, Path(tmp))):
            findings = lint_folder(local)
            illegal = [f for f in findings if f.code == expect and f.severity == Severity.ILLEGAL]
            hits = [f for f in illegal if line is None or _covers(f, line)]
            others = [f for f in findings if f.severity == Severity.ILLEGAL and f.code != expect]
            near = [f for f in findings if f.code == expect and f not in hits]
            status = "OK" if hits else ("WRONG LINES" if illegal else "MISSING")
            ok = ok or bool(hits)
            at = f" at line {line}" if line is not None else ""
            print(f"PR #{pr} {script}: expect {expect}{at}: {status}", file=out)
            for f in hits + near + others:
                print(f"  {f.severity.value}: {_fmt(f)}", file=out)
    return ok


def _covers(f: Finding, line: int) -> bool:
    loc = f.location
    return loc is not None and loc.line_start is not None and \
        loc.line_start <= line <= (loc.line_end or loc.line_start)


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
    pairs = [(pr, code, None) for pr, code in zip(args.pr, args.expect)] + (list(RULINGS) if args.rulings else [])
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
    for pr, expect, line in pairs:
        results.append(check_pr(args.path, args.ref, pr.lstrip("#"), expect.upper(), out, line))
    if pairs:
        print(f"ruling PRs flagged as expected: {sum(results)}/{len(results)}", file=out)
        if not all(results):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
