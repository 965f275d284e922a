"""scripts/corpus_probes.py on a synthetic records tree (the real checkout is not available here)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

from scripts import corpus_probes  # noqa: E402
from tests import probe_scripts  # noqa: E402
from tests.test_probes_honesty import LOG, _generic_with_headline  # noqa: E402


def test_corpus_probes_counts_runs_failures_and_reasons(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PGOLF_CACHE", str(tmp_path / "cache"))
    track = tmp_path / "records" / "track_10min_16mb"
    for name, src in (("2026-01-01_legal", probe_scripts.GENERIC), ("2026-01-02_leaky", probe_scripts.GENERIC_LEAKY),
                      ("2026-01-03_noentry", probe_scripts.NO_ENTRY)):
        (track / name).mkdir(parents=True)
        (track / name / "train_gpt.py").write_text(src)
    (track / "2026-01-04_readme_only").mkdir()
    (track / "2026-01-05_headline").mkdir()  # its log's headline names the evaluation that printed it
    (track / "2026-01-05_headline" / "train_gpt.py").write_text(_generic_with_headline(broken=False))
    (track / "2026-01-05_headline" / "train_seed1.log").write_text(LOG)
    out = tmp_path / "table.json"
    assert corpus_probes.main([str(tmp_path), "--timeout", "90", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["records"] == 4  # the folder without train_gpt.py is not counted
    s = data["summary"]
    rows = {r["record"]: r for r in data["rows"]}
    # without logs no headline is known: only the record whose log names one ran "its headline pipeline"
    assert s["headline_ran"] == 1 and rows["2026-01-05_headline"]["headline_ran"]
    assert rows["2026-01-05_headline"]["outcome"] == "checked" and rows["2026-01-02_leaky"]["outcome"] == "proven"
    assert s["proven"] == ["2026-01-02_leaky"] and rows["2026-01-05_headline"]["cpu_seconds"] > 0
    assert s["c1"]["ran"] == 3 and s["c1"]["failed_records"] == ["2026-01-02_leaky"]
    assert s["c4"]["ran"] == 3 and s["c4"]["failed"] == 0
    assert any("no evaluation entry point" in why for why in s["c1"]["not_run_reasons"])
    assert s["seconds"]["under_60s"] == 4
    text = capsys.readouterr().out
    assert "4 train_gpt.py files" in text and "C1 flip" in text and "headline pipeline ran on 1 of 4" in text
