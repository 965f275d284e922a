"""scripts/corpus_rules.py over a synthetic git checkout with a fake PR ref.

The real openai/parameter-golf checkout is not available here, so this is the
script's only test: merged records at --ref, and refs/pull/N/head read with
`git show`, from a work tree and from a bare mirror.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from scripts import corpus_rules

FIX = Path(__file__).parent / "fixtures" / "rules"
TRACK = "records/track_10min_16mb"


def git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def write_folder(root: Path, name: str, script: str, readme: str = "# record\n") -> None:
    folder = root / TRACK / name
    folder.mkdir(parents=True)
    (folder / "train_gpt.py").write_text(script)
    (folder / "README.md").write_text(readme)
    (folder / "submission.json").write_text(json.dumps({"author": "t", "github_id": "t", "name": name,
                                                        "date": "2026-03-01", "val_bpb": 1.1}))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pg")
    git("init", "-q", "-b", "main", cwd=root)
    write_folder(root, "2026-01-01_clean", (FIX / "legal_record.py").read_text())
    # switched off by default, but the README says the n-gram cache is behind the score
    write_folder(root, "2026-02-01_readme", (FIX / "gated_ngram.py").read_text(),
                 readme="# 1.02 bpb\n\nThe score comes from a hashed n-gram cache (order 5) mixed with the model.\n")
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "merged records", cwd=root)
    git("checkout", "-q", "-b", "pr7", cwd=root)
    ngram_on = (FIX / "gated_ngram.py").read_text().replace('"NGRAM_EVAL_ORDER", "0"', '"NGRAM_EVAL_ORDER", "5"')
    write_folder(root, "2026-03-25_ngram", ngram_on)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "pr 7", cwd=root)
    git("update-ref", "refs/pull/7/head", git("rev-parse", "HEAD", cwd=root), cwd=root)
    git("checkout", "-q", "main", cwd=root)
    git("branch", "-q", "-D", "pr7", cwd=root)
    return root


def run(*argv) -> tuple[int, str]:
    buf = io.StringIO()
    code = corpus_rules.main([str(a) for a in argv], out=buf)
    return code, buf.getvalue()


def test_merged_records_and_pr_expectation_on_a_work_tree(repo):
    code, out = run(repo, "--pr", "7", "--expect", "PG101")
    assert code == 0, out
    assert "2026-01-01_clean" not in out  # the legal record prints nothing
    assert "track_10min_16mb/2026-02-01_readme/train_gpt.py: 1 illegal" in out
    assert "PG101 ngram-target-in-key line 23" in out  # upgraded by its README line
    assert "merged train_gpt.py files linted: 2; with an illegal finding: 1" in out
    assert "PR #7 records/track_10min_16mb/2026-03-25_ngram/train_gpt.py: expect PG101: OK" in out
    assert "illegal: PG101" in out
    assert "ruling PRs flagged as expected: 1/1" in out
    # the PR's folder is not on main: it is not among the merged records
    assert "2026-03-25_ngram/train_gpt.py: 1 illegal" not in out


def test_wrong_expectation_and_strict_fail(repo):
    code, out = run(repo, "--no-merged", "--pr", "7", "--expect", "PG103")
    assert code == 1 and "expect PG103: MISSING" in out
    assert "ruling PRs flagged as expected: 0/1" in out
    code, out = run(repo, "--strict")
    assert code == 1
    code, out = run(repo, "--no-merged", "--pr", "8", "--expect", "PG101")
    assert code == 1 and "PR #8: error" in out


def test_bare_mirror_reads_records_and_pr_refs(repo, tmp_path):
    bare = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(repo), str(bare)], check=True)
    code, out = run(bare, "--ref", "main", "--pr", "7", "--expect", "PG101")
    assert code == 0, out
    assert "merged train_gpt.py files linted: 2; with an illegal finding: 1" in out
    assert "expect PG101: OK" in out


def test_usage_errors():
    with pytest.raises(SystemExit):
        corpus_rules.main(["x", "--pr", "7"], out=io.StringIO())
