"""What the harness tests share: invoking `pgolf rerun` and checking a process is gone.

`alive` reads /proc itself rather than reusing the harness's own helpers, so a
bug there cannot hide a process it left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from auditor.cli import app
from auditor.harness.run import _pid_exists

FIXTURES = Path(__file__).parent / "fixtures" / "harness"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["rerun", *[str(a) for a in args]])


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return not os.path.isdir("/proc") and _pid_exists(pid)  # no procfs: existence is all we can ask
