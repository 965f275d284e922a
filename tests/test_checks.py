"""Folder checks on synthetic records: each test breaks one thing."""

from __future__ import annotations

import base64
import json
import lzma
import os

import pytest

from auditor.audit import Options, audit_path
from rules.core import Severity, Verdict
from auditor.record import RecordError
from tests.recordkit import LEGAL_SCRIPT, RecordSpec, Run, write_record

FOLDER_ONLY = Options(static_rules=False)


def audit(tmp_path, spec=None, options=FOLDER_ONLY):
    return audit_path(write_record(tmp_path, spec), options)


def codes(result, severity=None):
    return sorted({f.code for f in result.findings if severity is None or f.severity == severity})


def by_code(result, code):
    return [f for f in result.findings if f.code == code]


def test_valid_record_passes_with_seed_table(tmp_path):
    result = audit(tmp_path)
    assert result.verdict == Verdict.PASS, [f.message for f in result.findings]
    assert [row.seed for row in result.seeds] == [42, 314, 999]
    row = result.seeds[0]
    assert row.metric == "final_int6_sliding_window_exact"
    assert row.val_bpb == pytest.approx(1.1260123)
    assert row.train_s == pytest.approx(599.812)
    assert row.bytes_total == 15_800_000 + len(LEGAL_SCRIPT.encode())


def test_training_overrun_within_one_step_is_only_info(tmp_path):
    result = audit(tmp_path, RecordSpec(runs=[Run(1, train_ms=600_038), Run(2), Run(3)]))
    assert result.verdict == Verdict.PASS
    assert [f.severity for f in by_code(result, "PG410")] == [Severity.INFO]


def test_oversize_artifact_fails_with_measured_numbers(tmp_path):
    runs = [Run(42, model_bytes=15_999_000), Run(314), Run(999)]
    result = audit(tmp_path, RecordSpec(runs=runs, submission=None))
    limit = [f for f in by_code(result, "PG407") if "train_seed42.log" in f.message]
    assert result.verdict == Verdict.FAIL
    assert len(limit) == 1
    total = 15_999_000 + len(LEGAL_SCRIPT.encode())
    assert f"{total:,}" in limit[0].message
    assert limit[0].location.file == "train_seed42.log" and limit[0].location.line_start


def test_just_under_the_limit_passes(tmp_path):
    model = 16_000_000 - len(LEGAL_SCRIPT.encode())
    result = audit(tmp_path, RecordSpec(runs=[Run(1, model_bytes=model), Run(2, model_bytes=model), Run(3)]))
    assert "PG407" not in codes(result)


def test_missing_seed_log(tmp_path):
    result = audit(tmp_path, RecordSpec(drop=("train_seed999.log",)))
    assert result.verdict == Verdict.FAIL
    assert "PG404" in codes(result, Severity.ILLEGAL)  # two seeds left
    mismatch = by_code(result, "PG405")
    assert any("seed 999 is declared" in f.message for f in mismatch)


def test_duplicate_seed_is_counted_once(tmp_path):
    runs = [Run(1), Run(1, filename="train_seed1_again.log"), Run(2)]
    result = audit(tmp_path, RecordSpec(runs=runs))
    assert any("appears in 2 logs" in f.message for f in by_code(result, "PG404"))
    assert any(f.severity == Severity.ILLEGAL for f in by_code(result, "PG404"))


def test_claimed_score_better_than_logs_is_illegal(tmp_path):
    spec = RecordSpec()
    write_record(tmp_path, spec)  # throwaway, only to learn the shipped size
    submission = json.loads((tmp_path / "track_10min_16mb/2026-05-01_synthetic/submission.json").read_text())
    submission["val_bpb"] = 1.05
    submission["seed_results"]["42"]["val_bpb"] = 1.11
    result = audit(tmp_path / "second", RecordSpec(submission=submission))
    mismatch = by_code(result, "PG406")
    assert {f.key for f in mismatch} == {"mean", "seed:42"}
    assert all(f.severity == Severity.ILLEGAL for f in mismatch)
    mean_finding = next(f for f in mismatch if f.key == "mean")
    assert "better than every logged run" in mean_finding.message
    assert mean_finding.location.line_start  # points at the "val_bpb" line


def test_claim_rounded_to_four_decimals_is_not_a_mismatch(tmp_path):
    spec = RecordSpec()
    write_record(tmp_path, spec)
    submission = json.loads((tmp_path / "track_10min_16mb/2026-05-01_synthetic/submission.json").read_text())
    submission["val_bpb"] = 1.126  # rounded
    submission["seed_results"] = {"42": 1.1260, "314": 1.126012, "999": 1.12601}  # truncated
    result = audit(tmp_path / "second", RecordSpec(submission=submission))
    assert "PG406" not in codes(result)


def test_packed_script_counts_shipped_bytes_and_flags_log_counting_unpacked(tmp_path):
    payload = base64.b85encode(lzma.compress(LEGAL_SCRIPT.encode())).decode()
    packed = f'import lzma,base64\nexec(lzma.decompress(base64.b85decode("{payload}")))\n'
    unpacked = len(LEGAL_SCRIPT.encode())
    runs = [Run(s, code_bytes=unpacked) for s in (1, 2, 3)]
    spec = RecordSpec(runs=runs, script=packed)
    result = audit(tmp_path, spec)
    assert result.record.script.packed
    claim = by_code(result, "PG408")
    log_findings = [f for f in claim if f.location.file.endswith(".log")]
    assert len(log_findings) == 3
    assert all("counts the unpacked source" in f.message for f in log_findings)
    assert result.seeds[0].bytes_total == 15_800_000 + len(packed.encode())


def test_execd_sibling_file_is_uncounted_code(tmp_path):
    script = LEGAL_SCRIPT + '\nexec(open("helpers.py").read())\n'
    spec = RecordSpec(script=script, extra_files={"helpers.py": "def helper():\n    return 1\n"})
    result = audit(tmp_path, spec)
    uncounted = by_code(result, "PG302")
    assert result.verdict == Verdict.FAIL
    assert len(uncounted) == 1 and "helpers.py" in uncounted[0].message
    assert uncounted[0].location.line_start == script.count("\n")


def test_local_import_is_uncounted_but_stdlib_is_not(tmp_path):
    script = "import os\nimport json\nfrom kernels import fused_mlp\n" + LEGAL_SCRIPT
    spec = RecordSpec(script=script, extra_files={"kernels.py": "def fused_mlp(x):\n    return x\n"})
    result = audit(tmp_path, spec)
    uncounted = by_code(result, "PG302")
    assert [f.key for f in uncounted] == ["link:kernels"]


def test_eval_over_600_seconds(tmp_path):
    result = audit(tmp_path, RecordSpec(runs=[Run(1, eval_ms=612_000), Run(2), Run(3)]))
    slow = by_code(result, "PG411")
    assert result.verdict == Verdict.FAIL
    assert len(slow) == 1 and "612.0 s" in slow[0].message


def test_training_over_the_cap(tmp_path):
    result = audit(tmp_path, RecordSpec(runs=[Run(1, train_ms=640_000), Run(2), Run(3)]))
    assert [f.severity for f in by_code(result, "PG410")] == [Severity.ILLEGAL]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"author": "x", "val_bpb": 1.1,', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("", "is empty"),
        ("[1, 2, 3]", "must hold a JSON object"),
    ],
)
def test_malformed_submission_json(tmp_path, content, fragment):
    result = audit(tmp_path, RecordSpec(submission=content))
    parse = by_code(result, "PG402")
    assert result.verdict == Verdict.FAIL
    assert any(fragment in f.message for f in parse), [f.message for f in parse]
    # the rest of the chain still ran
    assert result.seeds and "PG404" not in codes(result)


def test_submission_json_types_and_unknown_keys(tmp_path):
    submission = {"author": "a", "github_id": "a", "name": "n", "date": "yesterday", "val_bpb": "1.12", "flux": 3}
    result = audit(tmp_path, RecordSpec(submission=submission))
    findings = {f.key: f for f in by_code(result, "PG402")}
    assert findings["type:val_bpb"].severity == Severity.ILLEGAL
    assert findings["date-format"].severity == Severity.WARNING
    assert findings["unknown:flux"].severity == Severity.INFO


def test_garbage_log_is_reported_not_crashed(tmp_path):
    garbage = bytes(range(256)) * 64
    spec = RecordSpec(extra_files={"train_seed7.log": garbage})
    result = audit(tmp_path, spec)
    evidence = [f for f in by_code(result, "PG403") if f.location.file == "train_seed7.log"]
    assert evidence, "a garbage log must produce a log-evidence finding"
    assert result.verdict != Verdict.ERROR


def test_truncated_log_reports_missing_headline(tmp_path):
    spec = RecordSpec()
    folder = write_record(tmp_path, spec)
    log = folder / "train_seed42.log"
    text = log.read_text()
    log.write_text(text[: text.index("stopping_early")])
    result = audit_path(folder, FOLDER_ONLY)
    messages = [f.message for f in by_code(result, "PG403") if f.location.file == "train_seed42.log"]
    assert any("headline" in m for m in messages), messages
    assert result.verdict == Verdict.WARN


def test_declared_bytes_smaller_than_measured(tmp_path):
    submission_bytes = 15_000_000
    spec = RecordSpec()
    write_record(tmp_path, spec)
    submission = json.loads((tmp_path / "track_10min_16mb/2026-05-01_synthetic/submission.json").read_text())
    submission["bytes_total"] = submission_bytes
    result = audit(tmp_path / "second", RecordSpec(submission=submission))
    claim = [f for f in by_code(result, "PG408") if f.key == "declared-total"]
    # understated, but the measured artifact fits: a wrong claim, not an illegal artifact
    assert len(claim) == 1 and claim[0].severity == Severity.WARNING
    assert "15,000,000" in claim[0].message
    hidden = audit(tmp_path / "third", RecordSpec(submission=submission,
                                                  runs=[Run(s, model_bytes=15_999_990) for s in (1, 2, 3)]))
    claim = [f for f in by_code(hidden, "PG408") if f.key == "declared-total"]
    assert [f.severity for f in claim] == [Severity.ILLEGAL]  # it hides a total over the limit


def test_validation_subset_is_flagged(tmp_path):
    result = audit(tmp_path, RecordSpec(runs=[Run(1, val_tokens=4_000_000), Run(2), Run(3)]))
    tokens = by_code(result, "PG412")
    assert any(f.severity == Severity.ILLEGAL and "4,000,000" in f.message for f in tokens)
    assert any(f.key == "differ" for f in tokens)


def test_the_canonical_count_is_the_tokenizers_own(tmp_path):
    # the case-ops SP8192 model makes more tokens of the same documents than the plain one
    caseops = "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved"
    runs = [Run(s, tokenizer=caseops, val_tokens=47_851_520) for s in (1, 2, 3)]
    assert not by_code(audit(tmp_path / "a", RecordSpec(runs=runs)), "PG412")
    assert not by_code(audit(tmp_path / "b", RecordSpec()), "PG412")  # plain SP8192: 40,540,160
    runs = [Run(s, tokenizer=caseops, val_tokens=40_540_160) for s in (1, 2, 3)]
    wrong = by_code(audit(tmp_path / "c", RecordSpec(runs=runs)), "PG412")
    assert [f.severity for f in wrong] == [Severity.ILLEGAL] * 3 and f"{caseops}.model" in wrong[0].message
    runs = [Run(s, tokenizer="my_own_tokenizer", val_tokens=123) for s in (1, 2, 3)]
    assert not by_code(audit(tmp_path / "d", RecordSpec(runs=runs)), "PG412")  # unknown: no claim


def test_non_record_track_notes_the_leaderboard_limits_but_keeps_the_size_limit(tmp_path):
    spec = RecordSpec(runs=[Run(1, train_ms=14_400_000, eval_ms=700_000, model_bytes=16_100_000)])
    for track, expected in (("track_10min_16mb", Severity.ILLEGAL), ("track_non_record_16mb", Severity.INFO)):
        result = audit_path(write_record(tmp_path / track, spec, track=track), FOLDER_ONLY)
        for code in ("PG404", "PG410", "PG411"):
            found = by_code(result, code)
            assert [f.severity for f in found] == [expected], (track, code, found)
        assert any(f.severity == Severity.ILLEGAL for f in by_code(result, "PG407"))  # 16 MB holds on both
    assert "non-record track" in by_code(result, "PG410")[0].message


def test_a_claim_of_an_earlier_evaluation_than_the_last_is_a_warning(tmp_path):
    # seed 1's log ends with a TTT evaluation that came out worse; the record reports the
    # sliding-window score above it
    folder = write_record(tmp_path, RecordSpec(runs=[Run(1), Run(2), Run(3)]))
    log = folder / "train_seed1.log"
    log.write_text(log.read_text() + "final_int6_ttt val_loss:3.07421378 val_bpb:1.33603200 eval_time:40541ms\n")
    found = by_code(audit_path(folder, FOLDER_ONLY), "PG406")
    assert [f.severity for f in found] == [Severity.WARNING]
    assert "final_int6_sliding_window" in found[0].message and "final_int6_ttt (1.336032)" in found[0].message
    submission = json.loads((folder / "submission.json").read_text())
    submission["seed_results"]["1"]["val_bpb"] = 1.0  # a claim no line shows
    (folder / "submission.json").write_text(json.dumps(submission))
    assert Severity.ILLEGAL in [f.severity for f in by_code(audit_path(folder, FOLDER_ONLY), "PG406")]


def test_an_unpacked_script_that_fits_once_packed_is_a_warning(tmp_path):
    script = LEGAL_SCRIPT + "# " + "padding " * 25_000 + "\n"  # 200 kB that lzma packs to little
    fits = audit(tmp_path / "a", RecordSpec(script=script, runs=[Run(s, model_bytes=15_900_000) for s in (1, 2, 3)]))
    found = [f for f in by_code(fits, "PG407") if f.key.startswith("limit:")]
    assert [f.severity for f in found] == [Severity.WARNING] * 3 and "ship it packed" in found[0].message
    over = audit(tmp_path / "b", RecordSpec(script=script, runs=[Run(s, model_bytes=15_999_000) for s in (1, 2, 3)]))
    assert [f.severity for f in by_code(over, "PG407") if f.key.startswith("limit:")] == [Severity.ILLEGAL] * 3


def test_a_file_name_that_is_not_utf8_gets_a_verdict_and_fingerprints(tmp_path):
    folder = write_record(tmp_path, RecordSpec())
    with open(os.path.join(os.fsencode(folder), b"train_\xff\xfe.log"), "wb") as f:
        f.write(b"seed:7\n")
    result = audit_path(folder, Options())
    assert result.error is None
    assert all(len(f.fingerprint) == 16 for f in result.findings)
    assert any("\udcff" in (f.location.file if f.location else "") for f in result.findings)


def test_missing_required_files(tmp_path):
    result = audit(tmp_path, RecordSpec(drop=("README.md",), readme=None))
    assert [f.key for f in by_code(result, "PG401")] == ["README.md"]


def test_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(RecordError):
        audit_path(tmp_path / "nope")


def test_code_only_review_skips_folder_checks(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(LEGAL_SCRIPT)
    result = audit_path(script, FOLDER_ONLY)
    assert result.verdict == Verdict.PASS
    assert result.record.code_only and not result.seeds


def test_fingerprints_are_stable_across_line_moves(tmp_path):
    first = audit(tmp_path / "a", RecordSpec(runs=[Run(1, eval_ms=700_000), Run(2), Run(3)]))
    second = audit(tmp_path / "b", RecordSpec(runs=[Run(1, eval_ms=800_000), Run(2), Run(3)]))
    fp = lambda r: {f.fingerprint for f in by_code(r, "PG411")}  # noqa: E731
    assert fp(first) == fp(second) and len(fp(first)) == 1


@pytest.mark.parametrize(
    "claimed, logged, ok",
    [(1.126, 1.1260123, True), (1.1261, 1.12605, True), (1.1260, 1.12609, True), (1.12, 1.1260123, False), (1.1259, 1.1260123, False)],
)
def test_claim_matches_only_as_rounded_or_truncated(claimed, logged, ok):
    from auditor.checks.claims import matches

    assert matches(claimed, logged) is ok


def test_uncounted_code_is_reported_once_with_static_rules_on(tmp_path):
    script = LEGAL_SCRIPT + '\nexec(open("helpers.py").read())\n'
    helper = "def helper():\n    return 1\n"
    spec = RecordSpec(script=script, extra_files={"helpers.py": helper})
    result = audit(tmp_path, spec, options=Options())
    uncounted = by_code(result, "PG302")
    assert len(uncounted) == 1
    assert f"{len(helper)} bytes of code" in uncounted[0].message  # the folder's resolved finding won


def test_an_unknown_import_is_a_package_when_the_folder_has_no_such_file(tmp_path):
    script = "import python_minifier\nimport helpers_local\n" + LEGAL_SCRIPT
    spec = RecordSpec(script=script, extra_files={"helpers_local.py": "x = 1\n"})
    uncounted = by_code(audit(tmp_path / "a", spec, options=Options()), "PG302")
    assert not [f for f in uncounted if "python_minifier" in f.message]  # no python_minifier.py here
    assert [f for f in uncounted if "helpers_local" in f.message]        # a file of the folder


def test_link_in_a_layer_that_never_runs_is_only_info(tmp_path):
    inner = 'exec(open("helpers.py").read())\nprint("hi")\n'
    payload = base64.b85encode(lzma.compress(inner.encode())).decode()
    script = LEGAL_SCRIPT + f'\nSTASHED = lzma.decompress(base64.b85decode("{payload}"))\n'
    script = "import base64\nimport lzma\n" + script
    spec = RecordSpec(script=script, extra_files={"helpers.py": "x = 1\n"})
    result = audit(tmp_path, spec)
    uncounted = by_code(result, "PG302")
    assert [f.severity for f in uncounted] == [Severity.INFO]


def test_unresolved_exec_hides_code_and_warns(tmp_path):
    script = LEGAL_SCRIPT + "\nimport sys\nexec(sys.stdin.read())\n"
    result = audit(tmp_path, RecordSpec(script=script))
    hidden = by_code(result, "PG414")
    assert hidden and hidden[0].severity == Severity.WARNING


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 40, b"\xff\xfe not utf-8 \x80\x81", b"def broken(:\n"])
def test_every_file_empty_or_garbage_still_gets_a_verdict(tmp_path, content):
    folder = tmp_path / "track_10min_16mb" / "junk"
    folder.mkdir(parents=True)
    for name in ("train_gpt.py", "submission.json", "README.md", "train_seed1.log", "train_seed2.log"):
        (folder / name).write_bytes(content)
    result = audit_path(folder, Options())
    assert result.error is None
    assert result.verdict == Verdict.FAIL  # no valid JSON, no seeds
    assert "PG402" in codes(result, Severity.ILLEGAL)


def test_evidence_lines_come_from_every_log_even_in_a_subfolder(tmp_path):
    from auditor import record as record_mod
    from auditor.audit import evidence_lines

    spec = RecordSpec(runs=[Run(1), Run(2), Run(3, filename="logs/train_seed3.log")])
    record = record_mod.load(write_record(tmp_path, spec))
    lines = evidence_lines(record)
    from_nested = [(n, text) for log, n, text in lines if log == "logs/train_seed3.log"]
    assert any(text.startswith("final_int6_sliding_window_exact") for _, text in from_nested)
    assert not any(text.startswith("step:") for _, _, text in lines)  # per-step lines never kept
    assert any(log == "submission.json" and '"val_bpb"' in text for log, _, text in lines)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1" + "0" * 400])
def test_non_finite_or_huge_val_bpb_is_a_clear_finding_not_an_error(tmp_path, value):
    text = (
        '{"author": "a", "github_id": "a", "name": "n", "date": "2026-05-01", '
        f'"val_bpb": {value}, "seed_results": {{"42": "abc", "oops": 1.1}}}}'
    )
    result = audit(tmp_path, RecordSpec(submission=text))
    assert result.error is None and result.verdict == Verdict.FAIL
    messages = {f.key: f for f in by_code(result, "PG402")}
    assert messages["finite:val_bpb"].severity == Severity.ILLEGAL
    assert any(k.startswith("seed_results:") and "'abc'" in k for k in messages)
    assert any(k.startswith("seed_results:") and "'oops'" in k for k in messages)
    assert "PG406" not in codes(result)  # a non-number claims nothing to compare


def test_the_byte_and_stream_checks_read_the_unpackers_parse_and_an_audit_drops_it(tmp_path, monkeypatch):
    """A layer is parsed once per record: the folder checks take CPython's tree the
    unpacker already built, and the finished audit holds neither tree."""
    import ast

    from auditor import record as record_mod
    from auditor.checks import bytes as byte_tables

    record = record_mod.load(write_record(tmp_path))
    layer = record.script.effective_layers[0]
    kept = record.script.ast_trees[layer.name]
    assert isinstance(kept, ast.Module)
    parsed = []
    monkeypatch.setattr(byte_tables, "_parse", lambda text: parsed.append(text) or ast.parse(text))
    trees = byte_tables._code_trees(record)
    assert any(tree is kept for _f, _l, tree in trees)
    assert layer.text not in parsed

    result = audit_path(record.root, Options())
    assert result.record.script.ast_trees == {} and result.record.script.trees == {}
