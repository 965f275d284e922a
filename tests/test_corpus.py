"""The corpus script over synthetic checkouts, and optionally the real one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditor.corpus import CorpusError, checkout, record_folders
from scripts import corpus_check
from tests.gitkit import commit_all, git
from tests.recordkit import RecordSpec, Run, write_record


def make_tree(root: Path) -> Path:
    records = root / "records"
    write_record(records, name="2026-05-01_good")
    write_record(records, RecordSpec(runs=[Run(1), Run(2), Run(3, filename="train_seed3.txt")]), name="2026-05-02_other")
    (records / "track_10min_16mb" / "2026-05-02_other" / "train_seed3.txt").write_text("nothing useful here\n")
    return root


def test_counts_over_a_work_tree(tmp_path, capsys):
    make_tree(tmp_path)
    code = corpus_check.main([str(tmp_path), "--no-rules"])
    out = capsys.readouterr().out
    assert "record folders checked : 2" in out
    assert "internal errors        : 0" in out
    assert "logs with headline bpb : 5/6" in out  # the junk log has no metric
    assert code == 1  # 83% < 95%


def test_bare_git_directory_is_read_at_a_ref(tmp_path):
    work = make_tree(tmp_path / "work")
    git(work, "init", "-q")
    commit_all(work, "records")
    git(tmp_path, "clone", "-q", "--bare", str(work), str(tmp_path / "bare.git"))
    with checkout(tmp_path / "bare.git", "HEAD") as records:
        names = [f.name for f in record_folders(records)]
    assert names == ["2026-05-01_good", "2026-05-02_other"]


def test_not_a_checkout_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no records/ folder"):
        with checkout(tmp_path):
            pass


@pytest.mark.corpus
@pytest.mark.skipif(not os.environ.get("PGOLF_CORPUS"), reason="set PGOLF_CORPUS to a checkout of openai/parameter-golf")
def test_real_corpus_has_no_internal_errors(capsys):
    code = corpus_check.main([os.environ["PGOLF_CORPUS"], "--ref", os.environ.get("PGOLF_CORPUS_REF", "HEAD")])
    out = capsys.readouterr().out
    assert "internal errors        : 0" in out, out
    assert code == 0, out


def test_archive_fallback_refuses_what_the_data_filter_would(tmp_path, monkeypatch):
    import io
    import tarfile

    from auditor import corpus

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("records/../../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    buffer.seek(0)
    monkeypatch.delattr(tarfile, "data_filter")
    with tarfile.open(fileobj=buffer) as tar, pytest.raises(CorpusError, match="refusing"):
        corpus._extract(tar, tmp_path)
    assert not (tmp_path.parent / "escape.txt").exists()
