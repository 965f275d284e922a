"""`pgolf scan` over work trees, git refs and PR refs, with the cache."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

import auditor.scan as scan_mod
from auditor.cli import app
from auditor.report.scan_summary import SCAN_FORMATS, row
from auditor.scan import ScanError, ScanOptions, scan
from tests import gitkit

runner = CliRunner()


class Counting:
    """The in-process analyser, counting its calls."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, folder, label, static_rules=True):
        self.calls.append(label)
        return scan_mod._analyse(folder, label, static_rules)


@pytest.fixture(scope="module")
def prs(tmp_path_factory):
    """main with one record; PR 1 adds a passing record, PR 2 a failing one, PR 3 only a README
    change, PR 10 two records, PR 11 a records folder without train_gpt.py."""
    repo = gitkit.init(tmp_path_factory.mktemp("scan") / "repo")
    gitkit.pr(repo, 1, lambda r: gitkit.add_record(r, "2026-05-01_pass"))
    gitkit.pr(repo, 2, lambda r: gitkit.add_record(r, "2026-05-02_fail", gitkit.failing_spec()))
    gitkit.pr(repo, 3, lambda r: (r / "README.md").write_text("# typo\n"))

    def two(r):
        gitkit.add_record(r, "2026-05-03_a")
        gitkit.add_record(r, "2026-05-03_b")

    gitkit.pr(repo, 10, two)

    def no_script(r):
        folder = gitkit.add_record(r, "2026-05-04_noscript")
        (folder / "train_gpt.py").unlink()

    gitkit.pr(repo, 11, no_script)
    return repo


def options(tmp_path, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("static_rules", False)
    return ScanOptions(**kw)


def summary(result, fmt):
    out = io.StringIO()
    SCAN_FORMATS[fmt](result, out)
    return out.getvalue()


def test_pr_refs_audit_the_folders_each_pr_adds(prs, tmp_path):
    result = scan(prs, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    got = [(e.ref, e.record.rsplit("/", 1)[-1], e.verdict) for e in result.entries]
    assert got == [
        ("refs/pull/1/head", "2026-05-01_pass", "PASS"),
        ("refs/pull/2/head", "2026-05-02_fail", "FAIL"),
        ("refs/pull/10/head", "2026-05-03_a", "PASS"),
        ("refs/pull/10/head", "2026-05-03_b", "PASS"),
    ]
    assert result.refs == 5 and result.refs_without_records == 2 and result.internal_errors == 0
    assert result.base == "refs/heads/main"
    failing = row(result.entries[1])
    assert failing["rules"] == ["PG404", "PG411"] and failing["seeds"] == 2
    assert failing["val_bpb_mean"] == pytest.approx(1.1260123) and failing["bytes_max"] > 15_800_000
    # The audit ran on blobs read from git: the working tree is on main and untouched.
    assert gitkit.git(prs, "status", "--porcelain") == ""
    assert not (prs / "records" / "track_10min_16mb" / "2026-05-01_pass").exists()


def test_a_ref_audits_every_records_folder_in_its_tree(prs, tmp_path):
    result = scan(prs, options(tmp_path, ref="refs/pull/10/head", cache_dir=None))
    assert [e.record.rsplit("/", 1)[-1] for e in result.entries] == ["2026-04-01_merged", "2026-05-03_a", "2026-05-03_b"]
    assert {e.commit for e in result.entries} == {gitkit.git(prs, "rev-parse", "refs/pull/10/head")}


def test_a_bare_mirror_is_read_without_a_work_tree(prs, tmp_path):
    bare = tmp_path / "mirror.git"
    gitkit.git(tmp_path, "clone", "-q", "--mirror", str(prs), str(bare))
    result = scan(bare, options(tmp_path, cache_dir=None))
    assert [e.record for e in result.entries] == ["records/track_10min_16mb/2026-04-01_merged"]
    result = scan(bare, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    assert len(result.entries) == 4


def test_a_work_tree_is_scanned_on_disk(tmp_path):
    from tests.recordkit import write_record

    root = tmp_path / "checkout"
    write_record(root / "records", name="2026-05-01_a")
    write_record(root / "records", gitkit.failing_spec(), name="2026-05-02_b")
    result = scan(root, options(tmp_path))
    assert [(e.ref, e.record, e.verdict) for e in result.entries] == [
        ("", "records/track_10min_16mb/2026-05-01_a", "PASS"),
        ("", "records/track_10min_16mb/2026-05-02_b", "FAIL"),
    ]
    # records/ itself, and one record folder, work too
    assert len(scan(root / "records", options(tmp_path)).entries) == 2
    assert [e.record for e in scan(root / "records" / "track_10min_16mb" / "2026-05-01_a", options(tmp_path)).entries] == ["2026-05-01_a"]


def test_the_cache_makes_a_rescan_analyse_nothing_and_render_the_same(prs, tmp_path):
    first_calls, second_calls = Counting(), Counting()
    first = scan(prs, options(tmp_path, refs="refs/pull/*/head"), analyse=first_calls)
    assert len(first_calls.calls) == 4 and first.analysed == 4 and first.cached == 0
    second = scan(prs, options(tmp_path, refs="refs/pull/*/head"), analyse=second_calls)
    assert second_calls.calls == [] and second.analysed == 0 and second.cached == 4
    assert [e.audit for e in first.entries] == [e.audit for e in second.entries]
    # PR 10's two folders hold identical files: each keeps its own name and target.
    assert [e.audit["record"]["name"] for e in second.entries] == [e.record.rsplit("/", 1)[-1] for e in second.entries]
    # The same folder reached from another ref is a hit, reported under that ref.
    third = scan(prs, options(tmp_path, ref="refs/pull/10/head"), analyse=second_calls)
    assert third.cached == 2 and len(second_calls.calls) == 1  # only main's merged record is new
    assert all(e.audit["target"] == f"refs/pull/10/head:{e.record}" for e in third.entries)
    for fmt in ("csv", "markdown"):
        body = lambda r: summary(r, fmt).split("\n\n")[:-1] if fmt == "markdown" else summary(r, fmt)
        assert body(first) == body(second), fmt
    first_json, second_json = json.loads(summary(first, "json")), json.loads(summary(second, "json"))
    assert first_json["entries"] == second_json["entries"] and first_json["totals"] == second_json["totals"]
    assert second_json["stats"]["cached"] == 4


def test_the_cache_reanalyses_only_what_changed(prs, tmp_path):
    scan(prs, options(tmp_path, refs="refs/pull/*/head"))
    # PR 1 pushes a new commit that changes one log; PR 2 pushes a commit that changes nothing in its folder.
    def touch_log(r):
        log = r / "records" / "track_10min_16mb" / "2026-05-01_pass" / "train_seed42.log"
        log.write_text(log.read_text() + "note: re-uploaded\n")

    gitkit.git(prs, "checkout", "-q", "pr1")
    touch_log(prs)
    gitkit.git(prs, "update-ref", "refs/pull/1/head", gitkit.commit_all(prs, "PR 1 again"))
    gitkit.git(prs, "checkout", "-q", "pr2")
    (prs / "CHANGELOG").write_text("x\n")
    gitkit.git(prs, "update-ref", "refs/pull/2/head", gitkit.commit_all(prs, "PR 2 again"))
    gitkit.git(prs, "checkout", "-q", "main")
    calls = Counting()
    result = scan(prs, options(tmp_path, refs="refs/pull/*/head"), analyse=calls)
    assert calls.calls == ["refs/pull/1/head:records/track_10min_16mb/2026-05-01_pass"]
    assert result.analysed == 1 and result.cached == 3


def test_rules_and_tool_fingerprint_are_part_of_the_key(prs, tmp_path, monkeypatch):
    scan(prs, options(tmp_path, ref="main"))
    calls = Counting()
    scan(prs, options(tmp_path, ref="main", static_rules=True), analyse=calls)
    assert len(calls.calls) == 1
    import auditor.cache

    monkeypatch.setattr(auditor.cache, "tool_fingerprint", lambda: "9.9.9+other")
    calls = Counting()
    scan(prs, options(tmp_path, ref="main"), analyse=calls)
    assert len(calls.calls) == 1


def test_internal_errors_are_counted_never_raised(prs, tmp_path, monkeypatch):
    import auditor.audit

    real = auditor.audit.audit_path

    def explode(path, opts=None):
        if "2026-05-02_fail" in str(path):
            raise MemoryError("simulated")
        return real(path, opts)

    monkeypatch.setattr(auditor.audit, "audit_path", explode)
    result = scan(prs, options(tmp_path, refs="refs/pull/*/head"))
    broken = [e for e in result.entries if e.internal_error]
    assert len(result.entries) == 4 and len(broken) == 1 and "MemoryError: simulated" in broken[0].internal_error
    assert result.internal_errors == 1
    assert "1 internal error(s)" in summary(result, "markdown")
    # errors are not cached: the next scan retries the record
    monkeypatch.setattr(auditor.audit, "audit_path", real)
    calls = Counting()
    scan(prs, options(tmp_path, refs="refs/pull/*/head"), analyse=calls)
    assert len(calls.calls) == 1


def _orphan_pr(repo, number, build):
    """refs/pull/<number>/head: a history of its own (no common ancestor with main) whose tree `build` writes."""
    gitkit.git(repo, "checkout", "-q", "--orphan", f"lonely{number}")
    gitkit.git(repo, "rm", "-rq", "--cached", ".")
    gitkit.git(repo, "clean", "-fdq")
    build(repo)
    gitkit.git(repo, "update-ref", f"refs/pull/{number}/head", gitkit.commit_all(repo, "orphan"))
    gitkit.git(repo, "checkout", "-q", "-f", "main")
    gitkit.git(repo, "clean", "-fdq")


def test_a_ref_without_a_merge_base_is_read_against_the_base_itself(tmp_path):
    """A PR pushed from an unrelated history: what it adds is what its tree has that main's does not."""
    repo = gitkit.init(tmp_path / "repo")

    def copy_of_main_plus_a_record(r):
        gitkit.git(r, "checkout", "-q", "main", "--", ".")
        gitkit.add_record(r, "2026-05-05_orphan")

    _orphan_pr(repo, 98, copy_of_main_plus_a_record)
    _orphan_pr(repo, 99, lambda r: (r / "x.txt").write_text("unrelated\n"))
    result = scan(repo, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    assert [(e.ref, e.record.rsplit("/", 1)[-1], e.verdict) for e in result.entries] == [
        ("refs/pull/98/head", "2026-05-05_orphan", "PASS")
    ]
    assert result.ref_errors == [] and result.internal_errors == 0 and result.refs_without_records == 1


def test_a_ref_git_cannot_read_is_an_error_entry(prs, tmp_path, monkeypatch):
    from auditor.gitdiff import GitError

    real = scan_mod.fork_point

    def broken(repo, base, head):
        if head == gitkit.git(prs, "rev-parse", "refs/pull/2/head"):
            raise GitError("git merge-base: simulated", 128)
        return real(repo, base, head)

    monkeypatch.setattr(scan_mod, "fork_point", broken)
    result = scan(prs, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    assert len(result.entries) == 3
    assert len(result.ref_errors) == 1 and result.ref_errors[0].startswith("refs/pull/2/head: git merge-base: simulated")
    assert result.internal_errors == 1


def test_parallel_workers_give_the_same_entries(prs, tmp_path):
    serial = scan(prs, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    parallel = scan(prs, options(tmp_path, refs="refs/pull/*/head", cache_dir=None, workers=2))
    timeless = lambda r: [(e.ref, e.record, {**e.audit, "elapsed_s": 0}) for e in r.entries]
    assert timeless(serial) == timeless(parallel)
    assert parallel.analysed == 4


def test_cli_formats_and_exit_code(prs, tmp_path):
    args = ["scan", str(prs), "--refs", "refs/pull/*/head", "--cache", str(tmp_path / "c"), "-j", "1", "--no-rules"]
    result = runner.invoke(app, [*args, "-f", "json"])
    assert result.exit_code == 1  # PR 2 fails
    document = json.loads(result.stdout)
    assert document["schema"] == "pgolf-scan/1"
    assert document["totals"]["verdicts"] == {"FAIL": 1, "WARN": 0, "PASS": 3, "ERROR": 0}
    assert document["totals"]["rules"] == {"PG404": 1, "PG411": 1}
    assert document["entries"][1]["audit"]["findings"]
    csv_out = runner.invoke(app, [*args, "-f", "csv"]).stdout.splitlines()
    assert csv_out[0] == "ref,record,verdict,rules,val_bpb_mean,bytes_max,seeds,error" and len(csv_out) == 5
    assert csv_out[2].startswith("refs/pull/2/head,records/track_10min_16mb/2026-05-02_fail,FAIL,PG404 PG411,")
    rich = runner.invoke(app, args).stdout
    assert "refs/pull/10/head" in rich and "PG411" in rich and "4 analysed" not in rich and "4 from cache" in rich
    out = tmp_path / "scan.md"
    assert runner.invoke(app, [*args, "-f", "markdown", "-o", str(out)]).exit_code == 1
    assert "| FAIL | 1 |" in out.read_text()


def test_cli_usage_errors(tmp_path, prs):
    assert runner.invoke(app, ["scan", str(tmp_path / "nope")]).exit_code == 2
    (tmp_path / "empty").mkdir()
    assert runner.invoke(app, ["scan", str(tmp_path / "empty")]).exit_code == 2
    assert runner.invoke(app, ["scan", str(tmp_path / "empty"), "--ref", "main"]).exit_code == 2
    assert runner.invoke(app, ["scan", str(prs), "--ref", "no-such-ref", "--no-cache"]).exit_code == 2
    assert runner.invoke(app, ["scan", str(prs), "--ref", "main", "--refs", "x"]).exit_code == 2
    with pytest.raises(ScanError):
        scan(tmp_path / "empty", ScanOptions())


def test_a_record_that_hangs_is_timed_out_and_the_scan_goes_on(tmp_path, monkeypatch):
    """The limit is CPU time (a loaded machine does not time out a healthy record);
    a record that waits without computing is stopped at WALL_FACTOR times it."""
    import time

    import auditor.audit
    from tests.recordkit import write_record

    root = tmp_path / "checkout"
    write_record(root / "records", name="2026-05-01_a")
    write_record(root / "records", name="2026-05-02_stuck")
    write_record(root / "records", name="2026-05-03_spins")
    real = auditor.audit.audit_path

    def hang(path, opts=None):
        if "stuck" in str(path):
            time.sleep(30)
        if "spins" in str(path):
            while True:
                pass
        return real(path, opts)

    monkeypatch.setattr(auditor.audit, "audit_path", hang)
    monkeypatch.setattr(scan_mod, "WALL_FACTOR", 4)
    started = time.perf_counter()
    result = scan(root, ScanOptions(workers=1, cache_dir=None, record_timeout_s=0.5, progress=False))
    assert time.perf_counter() - started < 20
    verdicts = {e.record.rsplit("/", 1)[-1]: (e.verdict, e.internal_error) for e in result.entries}
    assert verdicts["2026-05-01_a"][0] == "PASS"
    assert "took more than 2 s" in verdicts["2026-05-02_stuck"][1]
    assert "used more than 0.5 s of CPU" in verdicts["2026-05-03_spins"][1]


# --------------------------------------------------------------------------- what a PR adds, odd trees


def _records(result):
    return [(e.ref, e.record.rsplit("/", 1)[-1]) for e in result.entries]


def test_only_folders_a_pr_adds_a_train_gpt_py_to_are_audited(tmp_path):
    """Editing, extending or deleting a record already on main adds nothing; adding a
    train_gpt.py to a folder that had none, or a record under a new name, adds one."""
    repo = gitkit.init(tmp_path / "repo")
    merged = "records/track_10min_16mb/2026-04-01_merged"
    gitkit.pr(repo, 1, lambda r: (r / merged / "train_gpt.py").write_text("# edited\n"))
    gitkit.pr(repo, 2, lambda r: (r / merged / "train_seed7.log").write_text("seed:7\n"))
    gitkit.pr(repo, 3, lambda r: gitkit.git(r, "rm", "-rq", merged))
    gitkit.pr(repo, 4, lambda r: gitkit.git(r, "mv", merged, "records/track_10min_16mb/2026-04-01_renamed"))

    def scriptless(r):
        (gitkit.add_record(r, "2026-05-01_later") / "train_gpt.py").unlink()

    gitkit.pr(repo, 5, scriptless)
    gitkit.pr(repo, 6, lambda r: (r / "records/track_10min_16mb/2026-05-01_later/train_gpt.py").write_text("print(1)\n"), base="pr5")
    result = scan(repo, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    assert _records(result) == [("refs/pull/4/head", "2026-04-01_renamed"), ("refs/pull/6/head", "2026-05-01_later")]
    assert result.refs == 6 and result.refs_without_records == 4 and result.internal_errors == 0


def _drop_loose_object(repo, oid):
    (repo / ".git" / "objects" / oid[:2] / oid[2:]).unlink()


def test_a_blob_the_repository_lacks_is_left_out_and_listed(tmp_path):
    """A partial mirror has no copy of its largest files: the record is audited without them."""
    repo = gitkit.init(tmp_path / "repo")
    spec = gitkit.RecordSpec(extra_files={"final_model.int6.ptz": b"\x00" * 4096, "notes/plot.bin": b"\x01" * 512})
    gitkit.pr(repo, 1, lambda r: gitkit.add_record(r, "2026-05-01_big", spec))
    folder = "records/track_10min_16mb/2026-05-01_big"
    _drop_loose_object(repo, gitkit.git(repo, "rev-parse", f"refs/pull/1/head:{folder}/final_model.int6.ptz"))
    first = scan(repo, options(tmp_path, refs="refs/pull/*/head"))
    [entry] = first.entries
    assert entry.verdict == "PASS" and entry.internal_error is None
    assert entry.unread == ["final_model.int6.ptz"]
    document = json.loads(summary(first, "json"))
    assert document["entries"][0]["unread"] == ["final_model.int6.ptz"] and document["stats"]["unread_files"] == 1
    assert "1 file(s) absent from the repository" in summary(first, "markdown")
    # The cached run knows it too (the listing is cached with the ref).
    second = scan(repo, options(tmp_path, refs="refs/pull/*/head"))
    assert second.cached == 1 and second.entries[0].unread == ["final_model.int6.ptz"]
    # A blob that vanishes after the listing (cat-file says "missing") is left out the same way.
    _drop_loose_object(repo, gitkit.git(repo, "rev-parse", f"refs/pull/1/head:{folder}/notes/plot.bin"))
    from auditor.cache import Cache

    [target] = scan_mod._pr_targets(repo, "refs/pull/*/head", None, Cache(tmp_path / "cache"), scan_mod.ScanResult("x"))
    blobs = scan_mod.Blobs(repo)
    try:
        written = scan_mod.materialize(blobs, tmp_path / "out", 0, target)
    finally:
        blobs.close()
    assert target.unread == ["final_model.int6.ptz", "notes/plot.bin"]
    assert (written / "train_gpt.py").is_file() and not (written / "notes" / "plot.bin").exists()


def test_the_same_folder_on_several_refs_is_analysed_once(tmp_path):
    repo = gitkit.init(tmp_path / "repo")
    gitkit.pr(repo, 1, lambda r: gitkit.add_record(r, "2026-05-01_same"))
    gitkit.pr(repo, 2, lambda r: gitkit.add_record(r, "2026-05-01_same"))  # re-opened PR, same files
    gitkit.pr(repo, 3, lambda r: gitkit.add_record(r, "2026-05-01_other"))
    calls = Counting()
    result = scan(repo, options(tmp_path, refs="refs/pull/*/head", cache_dir=None), analyse=calls)
    assert len(calls.calls) == 2 and result.analysed == 2 and result.shared == 1
    assert [e.audit["target"] for e in result.entries] == [f"{e.ref}:{e.record}" for e in result.entries]
    assert [e.verdict for e in result.entries] == ["PASS"] * 3
    assert "(1 more with the same content)" in summary(result, "markdown")


def test_symlinks_submodules_and_non_utf8_names_are_scanned_without_error(tmp_path):
    """Links and gitlinks are not written out; a name that is not UTF-8 is shown (and written) with \\xNN escapes."""
    import os

    repo = gitkit.init(tmp_path / "repo")
    odd = os.fsdecode(b"2026-05-01_caf\xe9")  # a Latin-1 folder name

    def build(r):
        folder = gitkit.add_record(r, "2026-05-01_links")
        os.symlink("/etc/passwd", folder / "secrets.txt")
        os.symlink("../../../README.md", folder / "README_link.md")
        sub = gitkit.add_record(r, "2026-05-01_sub")
        inner = gitkit.git(r, "rev-parse", "HEAD")
        gitkit.git(r, "update-index", "--add", "--cacheinfo", f"160000,{inner},records/track_10min_16mb/2026-05-01_sub/vendor")
        latin = gitkit.add_record(r, odd)
        (latin / os.fsdecode(b"log_\xff.txt")).write_text("seed:1\n")

    gitkit.pr(repo, 1, build)
    result = scan(repo, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    assert result.internal_errors == 0
    names = [e.record.rsplit("/", 1)[-1] for e in result.entries]
    assert sorted(names) == sorted(["2026-05-01_links", "2026-05-01_sub", "2026-05-01_caf\\xe9"])  # shown escaped
    assert all(e.verdict in ("PASS", "WARN", "FAIL") for e in result.entries)
    for fmt in SCAN_FORMATS:
        assert summary(result, fmt)  # every format renders the undecodable name
    cli = runner.invoke(app, ["scan", str(repo), "--refs", "refs/pull/*/head", "--no-cache", "-j", "1", "--no-rules"])
    assert cli.exit_code in (0, 1) and "2026-05-01_links" in cli.stdout, cli.output


def test_a_huge_file_is_streamed_to_disk(tmp_path):
    repo = gitkit.init(tmp_path / "repo")
    big = os_urandom_like(24 << 20)
    gitkit.pr(repo, 1, lambda r: gitkit.add_record(r, "2026-05-01_huge", gitkit.RecordSpec(extra_files={"final_model.pt": big})))
    result = scan(repo, options(tmp_path, refs="refs/pull/*/head", cache_dir=None))
    assert result.internal_errors == 0 and [e.verdict for e in result.entries] != ["ERROR"]


def os_urandom_like(n: int) -> bytes:
    """n bytes that do not compress (so the blob really is n bytes in the object store)."""
    import hashlib

    block = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1 << 12))  # 128 KiB
    return (block * (n // len(block) + 1))[:n]


def test_a_work_tree_file_is_hashed_as_git_does_in_chunks(tmp_path):
    """Issue 13: the scan's content key read a 2 GB file whole (4.2 GB RSS); it is streamed now."""
    import subprocess
    import tracemalloc

    from auditor.cache import HASH_CHUNK, blob_id, file_blob_id

    small = tmp_path / "small.bin"
    small.write_bytes(b"\x00\xffodd bytes\n" * 1000)
    git_id = subprocess.run(["git", "hash-object", str(small)], capture_output=True, text=True, check=True).stdout.strip()
    assert file_blob_id(small) == blob_id(small.read_bytes()) == git_id

    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as fh:
        fh.truncate(96 << 20)
    tracemalloc.start()
    try:
        key = file_blob_id(sparse)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * HASH_CHUNK, peak  # a chunk or two, never the 96 MiB file
    assert key == subprocess.run(["git", "hash-object", str(sparse)], capture_output=True, text=True,
                                 check=True).stdout.strip()


def test_a_fifo_in_place_of_a_file_is_not_waited_on(tmp_path):
    import os

    from auditor.cache import file_blob_id

    fifo = tmp_path / "train_seed1.log"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        file_blob_id(fifo)
