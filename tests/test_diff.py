"""`pgolf check --diff BASE`: the PR gate on synthetic git repositories."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.gitdiff import diff_scope, record_folder_of
from tests import gitkit

runner = CliRunner()


def gate(repo, *extra):
    result = runner.invoke(app, ["check", "--diff", "main", str(repo), "--no-rules", "-f", "json", *extra])
    document = json.loads(result.stdout) if result.stdout.startswith("{") else None
    return result, document


@pytest.fixture
def repo(tmp_path):
    repo = gitkit.init(tmp_path / "repo")
    gitkit.git(repo, "checkout", "-q", "-b", "pr")
    return repo


def codes(audit):
    return sorted(f["code"] for f in audit["findings"])


def test_record_folder_of():
    assert record_folder_of("records/track_10min_16mb/2026-05-01_x/train_gpt.py") == "records/track_10min_16mb/2026-05-01_x"
    assert record_folder_of("records/track_10min_16mb/2026-05-01_x/sub/a.py") == "records/track_10min_16mb/2026-05-01_x"
    assert record_folder_of("records/track_10min_16mb/README.md") is None
    assert record_folder_of("train_gpt.py") is None


def test_one_new_folder_is_the_only_thing_checked(repo):
    gitkit.add_record(repo, "2026-05-01_new")
    gitkit.commit_all(repo, "PR")
    result, document = gate(repo)
    assert result.exit_code == 0, result.output
    [audit] = document["audits"]
    assert audit["record"]["name"] == "2026-05-01_new" and audit["verdict"] == "PASS"


def test_the_checked_folder_decides_the_verdict(repo):
    gitkit.add_record(repo, "2026-05-01_bad", gitkit.failing_spec())
    gitkit.commit_all(repo, "PR")
    result, document = gate(repo)
    assert result.exit_code == 1
    [audit] = document["audits"]
    assert {"PG404", "PG411"} <= set(codes(audit))


def test_two_folders_fail_and_both_are_checked(repo):
    gitkit.add_record(repo, "2026-05-01_a")
    gitkit.add_record(repo, "2026-05-01_b")
    gitkit.commit_all(repo, "PR")
    result, document = gate(repo)
    assert result.exit_code == 1
    scope, *folders = document["audits"]
    assert scope["target"] == "diff main...HEAD" and codes(scope) == ["PG431"]
    assert "touches 2 records folders" in scope["findings"][0]["message"]
    assert "records/track_10min_16mb/2026-05-01_a/ (new, " in scope["findings"][0]["evidence"][0]
    assert [a["record"]["name"] for a in folders] == ["2026-05-01_a", "2026-05-01_b"]


def test_files_outside_the_folder_are_findings_with_their_path(repo):
    gitkit.add_record(repo, "2026-05-01_new")
    (repo / "README.md").write_text("# edited\n")
    (repo / "data").mkdir()
    (repo / "data" / "cached_challenge_fineweb.py").write_text("print('x')\n")
    (repo / "records" / "track_10min_16mb" / "notes.md").write_text("loose file\n")
    gitkit.commit_all(repo, "PR")
    result, document = gate(repo)
    assert result.exit_code == 1
    scope, folder = document["audits"]
    outside = {f["location"]["file"]: f["message"] for f in scope["findings"] if f["code"] == "PG430"}
    assert set(outside) == {"README.md", "data/cached_challenge_fineweb.py", "records/track_10min_16mb/notes.md"}
    assert outside["README.md"] == "README.md is modified outside records/track_10min_16mb/2026-05-01_new/"
    assert "added outside" in outside["data/cached_challenge_fineweb.py"]
    assert folder["record"]["name"] == "2026-05-01_new"


def test_no_records_folder(repo):
    (repo / "README.md").write_text("# edited\n")
    gitkit.commit_all(repo, "PR")
    result, document = gate(repo)
    assert result.exit_code == 1
    [scope] = document["audits"]
    assert codes(scope) == ["PG430", "PG431"]


def test_editing_an_existing_record_is_a_warning(repo):
    folder = repo / "records" / "track_10min_16mb" / "2026-04-01_merged"
    (folder / "README.md").write_text("# fixed typo\n")
    gitkit.commit_all(repo, "PR")
    result, document = gate(repo)
    assert result.exit_code == 0
    scope, audit = document["audits"]
    assert codes(scope) == ["PG432"] and scope["verdict"] == "WARN"
    assert audit["record"]["name"] == "2026-04-01_merged"


def test_diff_is_against_the_merge_base_not_the_moving_base(repo):
    gitkit.add_record(repo, "2026-05-01_new")
    gitkit.commit_all(repo, "PR")
    gitkit.git(repo, "checkout", "-q", "main")
    gitkit.add_record(repo, "2026-05-02_merged_meanwhile")
    (repo / "README.md").write_text("# main moved on\n")
    gitkit.commit_all(repo, "main moves")
    gitkit.git(repo, "checkout", "-q", "pr")
    scope = diff_scope(repo, "main")
    assert list(scope.folders) == ["records/track_10min_16mb/2026-05-01_new"] and not scope.outside


def test_renames_count_both_ends(repo):
    old = repo / "records" / "track_10min_16mb" / "2026-04-01_merged"
    old.rename(old.parent / "2026-05-01_renamed")
    gitkit.commit_all(repo, "PR")
    scope = diff_scope(repo, "main")
    assert sorted(scope.folders) == ["records/track_10min_16mb/2026-04-01_merged", "records/track_10min_16mb/2026-05-01_renamed"]
    assert scope.checked == ["records/track_10min_16mb/2026-05-01_renamed"]


def test_bad_base_and_no_repository_are_usage_errors(repo, tmp_path):
    result = runner.invoke(app, ["check", "--diff", "no-such-branch", str(repo)])
    assert result.exit_code == 2 and "no-such-branch" in result.output and "Traceback" not in result.output
    (tmp_path / "plain").mkdir()
    assert runner.invoke(app, ["check", "--diff", "main", str(tmp_path / "plain")]).exit_code == 2
    assert runner.invoke(app, ["check"]).exit_code == 2


def test_gate_rules_are_listed_and_explained():
    assert "diff-scope" in runner.invoke(app, ["explain", "PG430"]).output
    listing = runner.invoke(app, ["rules"]).output
    assert "PG431" in listing and "PG432" in listing


def test_fork_point_is_the_merge_base_or_the_base_for_an_unrelated_history(repo):
    from auditor.gitdiff import GitError, fork_point

    base = gitkit.git(repo, "rev-parse", "main")
    gitkit.add_record(repo, "2026-05-01_new")
    head = gitkit.commit_all(repo, "PR")
    assert fork_point(repo, base, head) == base
    gitkit.git(repo, "checkout", "-q", "--orphan", "lonely")
    (repo / "x.txt").write_text("unrelated\n")
    gitkit.git(repo, "add", "x.txt")
    lonely = gitkit.commit_all(repo, "orphan")
    assert fork_point(repo, base, lonely) == base  # no common ancestor: the base itself
    with pytest.raises(GitError):
        fork_point(repo, base, "0" * 40)  # not an object: still an error
