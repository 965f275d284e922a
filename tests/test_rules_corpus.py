"""scripts/corpus_rules.py over a synthetic git checkout with fake PR refs, and
optionally over the real one (PGOLF_CORPUS, a checkout or bare mirror of
openai/parameter-golf with its PR heads; PGOLF_CORPUS_REF, default HEAD): merged
records at --ref, and refs/pull/N/head read with `git show`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from scripts import corpus_rules
from tests.gitkit import commit_all, git, pr
from tests.recordkit import RecordSpec, write_record

FIX = Path(__file__).parent / "fixtures" / "rules"


def write_folder(root: Path, name: str, script: str, readme: str = "# record\n") -> None:
    """A record with no logs: the script, its README and a minimal submission.json."""
    submission = {"author": "t", "github_id": "t", "name": name, "date": "2026-03-01", "val_bpb": 1.1}
    write_record(root / "records", RecordSpec(runs=[], script=script, readme=readme, submission=submission), name=name)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pg")
    git(root, "init", "-q", "-b", "main")
    write_folder(root, "2026-01-01_clean", (FIX / "legal_record.py").read_text())
    # switched off by default, but the README says the n-gram cache is behind the score
    write_folder(root, "2026-02-01_readme", (FIX / "gated_ngram.py").read_text(),
                 readme="# 1.02 bpb\n\nThe score comes from a hashed n-gram cache (order 5) mixed with the model.\n")
    commit_all(root, "merged records")
    ngram_on = (FIX / "gated_ngram.py").read_text().replace('"NGRAM_EVAL_ORDER", "0"', '"NGRAM_EVAL_ORDER", "5"')
    pr(root, 7, lambda r: write_folder(r, "2026-03-25_ngram", ngram_on))
    git(root, "branch", "-q", "-D", "pr7")
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
    git(tmp_path, "clone", "-q", "--mirror", str(repo), str(bare))
    code, out = run(bare, "--ref", "main", "--pr", "7", "--expect", "PG101")
    assert code == 0, out
    assert "merged train_gpt.py files linted: 2; with an illegal finding: 1" in out
    assert "expect PG101: OK" in out


def test_a_revision_before_the_pr_head_and_the_line_the_ruling_is_about(repo):
    # PR 9 adds the illegal cache, then its last commit switches it off for good (the fix)
    ngram_on = (FIX / "gated_ngram.py").read_text().replace('"NGRAM_EVAL_ORDER", "0"', '"NGRAM_EVAL_ORDER", "5"')
    git(repo, "checkout", "-q", "-b", "pr9", "main")
    write_folder(repo, "2026-04-24_fixed_later", ngram_on)
    commit_all(repo, "PR 9")
    script = repo / "records" / "track_10min_16mb" / "2026-04-24_fixed_later" / "train_gpt.py"
    script.write_text((FIX / "legal_record.py").read_text())
    git(repo, "update-ref", "refs/pull/9/head", commit_all(repo, "PR 9: the fix"))
    git(repo, "checkout", "-q", "main")
    code, out = run(repo, "--no-merged", "--pr", "9", "--expect", "PG101")
    assert code == 1 and "expect PG101: MISSING" in out
    code, out = run(repo, "--no-merged", "--pr", "9~1", "--expect", "PG101")
    assert code == 0 and "PR #9~1 records/track_10min_16mb/2026-04-24_fixed_later/train_gpt.py: expect PG101: OK" in out
    buf = io.StringIO()
    assert corpus_rules.check_pr(repo, "main", "9~1", "PG101", buf, line=23)
    assert not corpus_rules.check_pr(repo, "main", "9~1", "PG101", buf, line=2)
    assert "expect PG101 at line 2: WRONG LINES" in buf.getvalue()


def test_usage_errors():
    with pytest.raises(SystemExit):
        corpus_rules.main(["x", "--pr", "7"], out=io.StringIO())


@pytest.mark.corpus
@pytest.mark.skipif(not os.environ.get("PGOLF_CORPUS"), reason="set PGOLF_CORPUS to a checkout of openai/parameter-golf")
def test_real_ruling_prs_are_flagged_at_their_lines():
    # needs the PR heads: git fetch origin '+refs/pull/*/head:refs/pull/*/head'
    code, out = run(os.environ["PGOLF_CORPUS"], "--ref", os.environ.get("PGOLF_CORPUS_REF", "HEAD"),
                    "--no-merged", "--rulings")
    assert code == 0 and "ruling PRs flagged as expected: 3/3" in out, out
