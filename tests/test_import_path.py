"""`python -m auditor` never imports from the folder it audits (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from auditor.__main__ import safe_path
from tests.recordkit import write_record

REPO = Path(__file__).resolve().parents[1]


def test_safe_path_drops_the_current_and_audited_folders_but_keeps_the_auditor(tmp_path, monkeypatch):
    record = tmp_path / "rec"
    record.mkdir()
    monkeypatch.chdir(record)
    kept = safe_path(["", str(record), str(REPO), "/usr/lib/python3"], ["check", str(record)])
    assert kept == [str(REPO), "/usr/lib/python3"]


def test_python_m_auditor_inside_a_record_does_not_import_its_files(tmp_path):
    """A record that ships rules.py (or typer.py, rules/) must not run it, whatever the entry point."""
    folder = write_record(tmp_path)
    marker = tmp_path / "ran"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    for name in ("rules.py", "typer.py", "rich.py", "libcst.py", "findings.py", "report.py"):
        (folder / name).write_text(payload)
    (folder / "rules").mkdir()
    (folder / "rules" / "__init__.py").write_text(payload)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{folder}{os.pathsep}"  # even with the folder and '' on it
    out = subprocess.run(
        [sys.executable, "-m", "auditor", "check", ".", "-f", "text"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode in (0, 1), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not marker.exists()
