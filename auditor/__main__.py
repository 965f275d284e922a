"""`python -m auditor` is the same as `pgolf`.

`python -m` puts the current folder first on the import path, so `python -m
auditor check .` inside a record that ships `rules.py` (or `typer.py`) would
import and run it. Before anything else is imported, drop every path entry that
is the current folder or a folder named on the command line (exact matches only,
so site-packages under an audited home folder stay), unless it is where this
auditor itself is installed.
"""

import os
import sys
from pathlib import Path


def _resolved(entry: str) -> Path | None:
    try:
        return Path(entry or os.curdir).resolve()
    except (OSError, RuntimeError):
        return None


def _audited_roots(argv: list[str]) -> list[Path]:
    roots = [Path.cwd()]
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            path = Path(arg).resolve()
            if path.exists():
                roots.append(path if path.is_dir() else path.parent)
        except (OSError, RuntimeError, ValueError):
            continue
    return roots


def safe_path(path: list[str], argv: list[str]) -> list[str]:
    """`path` without the entries an audited folder could plant modules in."""
    home = Path(__file__).resolve().parent.parent  # the folder that holds this package
    roots = _audited_roots(argv)
    kept = []
    for entry in path:
        where = _resolved(entry)
        if where is not None and where != home and where in roots:
            continue
        kept.append(entry)
    return kept


if __name__ == "__main__":
    sys.path[:] = safe_path(sys.path, sys.argv[1:])

    from auditor.cli import app  # after the import path is made safe

    app(prog_name="pgolf")
