"""Run `pgolf check` over every record folder of a challenge checkout.

    python scripts/corpus_check.py PATH [--ref REF (default HEAD)] [--track track_10min_16mb]

PATH is a checkout of openai/parameter-golf (work tree, or a bare git dir read
at --ref). Prints how many folders were checked, internal errors, packed
scripts unpacked, and logs with a headline val_bpb; exits 1 when any folder
hit an internal error, a packed script did not unpack, or fewer than 95% of
logs gave a headline.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from auditor.audit import Options, audit_path
from auditor.corpus import CorpusError, checkout, record_folders
from auditor.source import DECODE_FAILURES



@dataclass
class Tally:
    folders: int = 0
    verdicts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    packed: int = 0
    packed_ok: int = 0
    logs: int = 0
    headlines: int = 0
    no_headline: list[str] = field(default_factory=list)

    def add(self, name: str, folder: Path, options: Options) -> None:
        self.folders += 1
        try:
            audit = audit_path(folder, options)
        except Exception as exc:  # a crash out of audit_path is a bug to count
            self.errors.append(f"{name}: escaped {type(exc).__name__}: {exc}")
            return
        self.verdicts[audit.verdict.value] += 1
        if audit.error:
            self.errors.append(f"{name}: {audit.error}")
        script = audit.record.script
        if script is not None and script.packed:
            self.packed += 1
            self.packed_ok += not any(p.kind in DECODE_FAILURES for p in script.problems)
        for run in audit.record.logs:
            self.logs += 1
            if run.headline is not None and run.headline.val_bpb is not None:
                self.headlines += 1
            else:
                self.no_headline.append(f"{name}/{run.log}")

    @property
    def headline_share(self) -> float:
        return self.headlines / self.logs if self.logs else 1.0

    def report(self) -> str:
        lines = [
            f"record folders checked : {self.folders}",
            f"verdicts               : {dict(sorted(self.verdicts.items()))}",
            f"internal errors        : {len(self.errors)}",
            f"packed train_gpt.py    : {self.packed} ({self.packed_ok} fully unpacked)",
            f"logs with headline bpb : {self.headlines}/{self.logs} ({self.headline_share:.1%})",
        ]
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  no headline: {n}" for n in self.no_headline[:50]]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--track", default=None)
    parser.add_argument("--no-rules", action="store_true", help="folder checks only")
    parser.add_argument("--min-headline", type=float, default=0.95)
    args = parser.parse_args(argv)

    tally = Tally()
    options = Options(static_rules=not args.no_rules)
    try:
        with checkout(args.path, args.ref) as records:
            for folder in record_folders(records, args.track):
                tally.add(folder.relative_to(records).as_posix(), folder, options)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(tally.report())
    failed = tally.errors or tally.packed_ok < tally.packed or tally.headline_share < args.min_headline
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
