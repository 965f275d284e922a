"""Hostile or careless input (issue 13): every reproducer ends in a verdict with
findings, never a traceback, and loses nothing it could still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.audit import Options, audit_path
from auditor.cli import app
from auditor.evidence.parse import parse_log_text
from rules.core import Severity
from auditor.record import MAX_FILES, load
from auditor.source import unpack_file
from tests.recordkit import RecordSpec, Run, write_record

def audit(folder: Path):
    result = audit_path(folder, Options())
    assert result.error is None, result.error
    return result


def codes(result, severity=None) -> set[str]:
    return {f.code for f in result.findings if severity is None or f.severity == severity}


# ------------------------------------------------------------ submission.json


@pytest.mark.parametrize(
    "text, says",
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"val_bpb": ' + "9" * 5000 + "}", "number too long"),
    ],
    ids=["nested-100k", "int-5000-digits"],
)
def test_unreadable_submission_json_is_a_finding_not_a_crash(tmp_path, text, says):
    folder = write_record(tmp_path, RecordSpec(submission=text))
    result = audit(folder)
    assert any(f.code == "PG402" and says in f.message for f in result.findings)
    assert result.record.script is not None and len(result.record.logs) == 3  # nothing else lost


# ------------------------------------------------------------ coding cookies


@pytest.mark.parametrize("codec", ["undefined", "punycode"])
def test_coding_cookie_python_cannot_decode_is_a_finding(tmp_path, codec):
    path = tmp_path / "train_gpt.py"
    path.write_bytes(f"# coding: {codec}\nprint(1)\n".encode())
    unit = unpack_file(path, root=tmp_path)
    assert [p.kind for p in unit.problems] == ["non-utf8"]
    folder = write_record(tmp_path / "rec", RecordSpec(script=f"# coding: {codec}\nprint(1)\n".encode()))
    assert "PG414" in codes(audit(folder))


# ------------------------------------------------------------ diverged runs


def _diverge(folder: Path, seed: int, old: str, new: str) -> None:
    log = folder / f"train_seed{seed}.log"
    log.write_text(log.read_text().replace(old, new))


def test_nan_headline_is_an_illegal_finding_citing_its_line(tmp_path):
    folder = write_record(tmp_path)
    _diverge(folder, 42, "val_bpb:1.12601230", "val_bpb:nan")
    result = audit(folder)
    hits = [f for f in result.findings if "diverged" in f.message]
    assert len(hits) == 1 and hits[0].severity == Severity.ILLEGAL
    assert hits[0].location.file == "train_seed42.log" and hits[0].location.line_start
    assert "nan" in hits[0].evidence[0]


def test_infinite_pgolf_metric_is_an_illegal_finding(tmp_path):
    folder = write_record(tmp_path)
    log = folder / "train_seed314.log"
    log.write_text(
        log.read_text()
        + ':::PGOLF {"event":"metric","name":"final_sliding_window","val_loss":Infinity,'
        '"val_bpb":Infinity,"headline":true}\n'
    )
    result = audit(folder)
    hits = [f for f in result.findings if "diverged" in f.message]
    assert len(hits) == 1 and hits[0].severity == Severity.ILLEGAL
    assert hits[0].location.file == "train_seed314.log"


def test_nan_headline_through_the_cli_is_a_fail_not_an_error(tmp_path):
    folder = write_record(tmp_path)
    _diverge(folder, 42, "val_bpb:1.12601230", "val_bpb:nan")
    out = CliRunner().invoke(app, ["check", str(folder), "-f", "json"])
    assert out.exit_code == 1, out.output
    doc = json.loads(out.output)
    assert "NaN" not in out.output or "diverged" in out.output
    assert doc


# ------------------------------------------------------------ huge scripts


def _ordinary_code(lines: int) -> str:
    """Distinct, valid, ordinary functions: what a very long script would hold."""
    return "".join(f"def block_{i}(x, w):\n    h = x * w + {i}\n    return h\n\n" for i in range(lines // 4 + 1))


@pytest.fixture
def parsed_sizes(monkeypatch):
    """The length of every text libcst is asked to parse (the unpacker's and the rules engine's)."""
    import libcst

    sizes: list[int] = []
    real = libcst.parse_module

    def spy(source, *args, **kwargs):
        sizes.append(len(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(libcst, "parse_module", spy)
    return sizes


@pytest.mark.parametrize("shape", ["characters", "lines"])
def test_a_huge_script_is_too_large_to_analyse_and_never_parsed(tmp_path, parsed_sizes, shape):
    """A 5 MB script took 158 s and 2.3 GB (libcst, then the rules engine): over the
    analysis caps it is a PG414 warning saying so, and nothing parses it."""
    from auditor.source import Limits

    caps = Limits()
    if shape == "characters":  # few lines, many characters
        script = "x = 1\n" + "# " + "y" * caps.max_analysed_chars + "\n"
    else:  # short lines, well under the character cap
        script = _ordinary_code(caps.max_analysed_lines + 100)
        assert len(script) < caps.max_analysed_chars
    folder = write_record(tmp_path, RecordSpec(script=script))
    result = audit(folder)
    [finding] = [f for f in result.findings if f.code == "PG414"]
    assert finding.severity == Severity.WARNING and "too large to analyse" in finding.message
    assert f"{caps.max_analysed_lines:,} lines" in finding.message
    assert result.record.script.shipped_bytes == len(script.encode())  # it still counts toward the size
    assert not any(n > caps.max_analysed_chars for n in parsed_sizes) and max(parsed_sizes, default=0) < len(script)
    lint = CliRunner().invoke(app, ["lint", str(folder / "train_gpt.py"), "-f", "text"])
    assert "PG414" in lint.output and "too large to analyse" in lint.output and lint.exit_code in (0, 1)


def test_a_huge_packed_payload_is_too_large_to_analyse(tmp_path, parsed_sizes):
    import base64
    import zlib

    from auditor.source import Limits

    program = _ordinary_code(Limits().max_analysed_lines + 100)
    blob = base64.b64encode(zlib.compress(program.encode())).decode()
    script = f"import base64, zlib\nexec(zlib.decompress(base64.b64decode({blob!r})))\n"
    path = tmp_path / "train_gpt.py"
    path.write_text(script)
    unit = unpack_file(path)
    [problem] = unit.problems
    assert problem.kind == "too-large" and problem.line == 2 and "too large to analyse" in problem.message
    assert [layer.name for layer in unit.layers] == ["shipped"]  # the payload is not a layer the rules read
    assert max(parsed_sizes) == len(script)


def test_the_decode_budget_is_the_records_not_each_files(tmp_path):
    """Five helper files with a 48 MiB payload each cost 14.5 s and 611 MB (a budget per
    file); linked files now share the record's budget: the third helper's payload is
    over what the first two left, so it is not decoded."""
    import base64
    import zlib

    from auditor.source import Limits, follow_links

    program = _ordinary_code(800)  # ~9 kB of code per helper
    blob = base64.b64encode(zlib.compress(program.encode())).decode()
    for n in (1, 2, 3):
        (tmp_path / f"helper{n}.py").write_text(f"import base64, zlib\nexec(zlib.decompress(base64.b64decode({blob!r})))\n")
    (tmp_path / "train_gpt.py").write_text("import helper1\nimport helper2\nimport helper3\n")
    limits = Limits(max_total_bytes=int(2.5 * len(program)))
    unit = unpack_file(tmp_path / "train_gpt.py", limits=limits)
    linked = follow_links(unit, tmp_path, limits)
    assert [u.name for u in linked] == ["helper1.py", "helper2.py", "helper3.py"]
    assert [len(u.layers) for u in linked] == [2, 2, 1]  # the third payload stays undecoded
    assert [p.kind for p in linked[2].problems] == ["bomb"]
    assert sum(u.decoded_bytes for u in linked) <= limits.max_total_bytes


def test_the_analysis_budget_is_the_records_too(tmp_path, parsed_sizes):
    """Each layer under the cap, but many of them (helper files, or payloads in one
    script) would still add up to hours: the record's layers share one budget."""
    from auditor.source import Limits, follow_links

    code = _ordinary_code(400)
    for n in (1, 2, 3):
        (tmp_path / f"helper{n}.py").write_text(code)
    (tmp_path / "train_gpt.py").write_text("import helper1\nimport helper2\nimport helper3\n")
    limits = Limits(max_record_analysed_chars=int(2.5 * len(code)))
    unit = unpack_file(tmp_path / "train_gpt.py", limits=limits)
    linked = follow_links(unit, tmp_path, limits)
    assert [bool(u.layers[0].text) for u in linked] == [True, True, False]
    [problem] = linked[2].problems
    assert problem.kind == "too-large" and "left of the record's analysis budget" in problem.message
    assert sum(parsed_sizes) <= limits.max_record_analysed_chars


# ------------------------------------------------------------ logs


def test_a_step_number_past_the_int_limit_costs_one_line_not_the_log():
    log = "step:" + "9" * 5000 + "/100 train_loss:3.0\nseed:7\nfinal_x val_loss:2.0 val_bpb:1.10\n"
    ev = parse_log_text(log, "t.log")
    assert ev.headline is not None and ev.headline.val_bpb == 1.10
    assert ev.seed is not None and ev.seed.value == 7
    assert any("line 1" in p and "skipped" in p for p in ev.problems)


def test_a_2_gib_log_is_read_only_to_its_cap(tmp_path):
    """A 2 GB log was read whole (8-10 s, up to 2.1 GB)."""
    from auditor.evidence.parse import parse_log_file

    log = tmp_path / "train_seed7.log"
    log.write_text("seed:7\nfinal_x val_loss:2.0 val_bpb:1.10 eval_time:40ms\n")
    with log.open("r+b") as fh:
        fh.truncate(2 * 2**30)  # sparse NUL bytes after the two lines
    ev = parse_log_file(log, max_bytes=1 << 20)
    assert ev.headline is not None and ev.headline.val_bpb == 1.10
    assert any(f"larger than {1 << 20} bytes" in p for p in ev.problems)


def test_an_over_long_log_line_is_skipped_not_scanned():
    """A 2 GB log of NUL bytes is read up to its 64 MiB cap, and that one 64 MiB line took
    minutes and 670 MB in the line regexes: a line over MAX_LINE_CHARS is not scanned."""
    from auditor.evidence.parse import MAX_LINE_CHARS

    junk = "val_bpb:" * (MAX_LINE_CHARS // 8 + 1)
    nul = "\x00" * (MAX_LINE_CHARS + 1)
    log = f"seed:7\n{junk}\n{nul}\nfinal_x val_loss:2.0 val_bpb:1.10 eval_time:40ms\n"
    ev = parse_log_text(log, "t.log")
    assert ev.headline is not None and ev.headline.val_bpb == 1.10 and ev.headline.line == 4
    assert [m.line for m in ev.metrics] == [4]  # nothing was read out of the long line of val_bpb
    assert sum("characters long" in p and "not read" in p for p in ev.problems) == 2
    assert any("NUL" in p for p in ev.problems)


# ------------------------------------------------------------ folder layout


def test_ten_thousand_logs_do_not_push_out_the_required_files(tmp_path):
    folder = write_record(tmp_path)
    logs = folder / "logs"
    logs.mkdir()
    for i in range(MAX_FILES + 500):
        (logs / f"extra_{i:05d}.txt").write_text("x\n")
    record = load(folder)
    for name in ("train_gpt.py", "submission.json", "README.md", "train_seed42.log"):
        assert name in record.files
    assert record.script is not None and record.submission is not None
    assert any("more than" in p for p in record.problems)
    assert "PG401" not in codes(audit(folder), Severity.ILLEGAL)


# ------------------------------------------------------------ linear tokenizer scan


def test_tokenizer_names_are_found_as_the_old_regex_found_them():
    import re

    from auditor.checks.data import model_names

    old = re.compile(r"([\w.-]+)\.model\b")
    for text in (
        "tokenizer_path: ./data/tokenizers/fineweb_8192_bpe.model",
        "sp = spm.SentencePieceProcessor(model_file='fineweb_1024_bpe.model'); self.model = m",
        "a.models b-c.model, x.model\n",
    ):
        assert model_names(text) == [m.group(1) for m in old.finditer(text)]


def test_a_huge_hex_literal_is_scanned_for_tokenizer_names_in_linear_time(tmp_path):
    """60 KB of word characters without `.model` (quadratic before), then a real name."""
    from auditor.checks.data import model_names, tokenizer_name

    blob = "ab12" * 500_000  # 2 MB: minutes for the old regex, milliseconds now
    assert model_names(blob) == []
    assert model_names(blob + ".model") == [blob[-200:]]  # bounded name, still one hit
    script = f'BLOB = "{"0f" * 30_000}"\nTOK = "./data/tokenizers/fineweb_8192_bpe.model"\n'
    folder = write_record(tmp_path, RecordSpec(script=script))
    record = load(folder)
    run = record.logs[0]
    run.context = [(n, t) for n, t in run.context if "tokenizer" not in t.lower()]
    assert tokenizer_name(record, run) == "fineweb_8192_bpe"


# ------------------------------------------------------------ terminal escapes in reports


@pytest.mark.parametrize("fmt", ["rich", "text", "markdown", "github"])
def test_reports_escape_control_characters_from_file_names_and_lines(tmp_path, fmt):
    evil = "\x1b]0;pwned\x07\x1b[2J\u202e"
    log = (
        f"seed:7 {evil}\n"
        f"final_sliding_window val_loss:nan val_bpb:nan {evil}\n"
    )
    folder = write_record(tmp_path, RecordSpec(extra_files={f"train_seed7{evil}.log": log}))
    out = CliRunner().invoke(app, ["check", str(folder), "-f", fmt])
    assert out.exit_code == 1, out.output
    text = out.output
    assert "diverged" in text
    for char in ("\x1b", "\x07", "\u202e"):
        assert char not in text
    assert "\\x1b" in text


def test_printable_keeps_tabs_and_text_and_escapes_the_rest():
    from auditor.report.frames import printable

    assert printable("a\tb é ✓") == "a\tb é ✓"
    assert printable("a\x1b[31m\r\n\x9b\x7f") == "a\\x1b[31m\\x0d\\x0a\\x9b\\x7f"


def test_seed_keys_past_the_int_limit_or_in_odd_digits_claim_nothing(tmp_path):
    """Found by the fuzz suite: a 4,301-digit seed key was an internal error."""
    from auditor.declared import declared

    claim = declared({"seed_results": {"9" * 4301: {"val_bpb": 1.1}, "²": 1.2, "42": 1.3}, "seeds": ["²", "7"]})
    assert list(claim.per_seed) == [42] and claim.seeds == [7]
    assert len(claim.unreadable_seed_results) == 2


def test_a_huge_submission_json_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from auditor import record as record_mod

    folder = write_record(tmp_path)
    with (folder / "submission.json").open("r+b") as fh:
        fh.truncate(2 * 2**30)  # 2 GiB, sparse: reading it whole would cost 2 GiB
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self.name) or real_open(self, *a, **k))
    text, data, error = record_mod._read_json(folder / "submission.json")
    assert data is None and "over the" in error and "submission.json" not in opened


def test_absurd_byte_counts_in_a_log_claim_nothing(tmp_path):
    """Found by scripts/fuzz.py: a model size of 4,300 digits plus the code size overflowed
    printing in PG405 (an internal error). Counts past 10**18 are not read."""
    folder = write_record(tmp_path)
    log = folder / "train_seed42.log"
    huge = "9" * 4300
    log.write_text(
        log.read_text()
        .replace("Serialized model int6+lzma: 15800000 bytes", f"Serialized model int6+lzma: {huge} bytes")
        + f"bytes_total:{huge}\n"
        + ':::PGOLF {"event":"artifact","bytes_model":' + huge + "}\n"
    )
    result = audit(folder)
    run = next(r for r in result.record.logs if r.log == "train_seed42.log")
    assert run.bytes_model is None or run.bytes_model.value < 10**18
    assert any("bytes_model" in p for p in run.problems)


def test_an_infinite_metric_that_is_not_the_headline_matches_no_claim(tmp_path):
    """Found by scripts/fuzz.py: an inf val_bpb on an earlier final metric was an internal error."""
    from auditor.checks.claims import matches

    assert not matches(1.1, float("inf")) and not matches(1.1, float("nan")) and not matches(1.1, 1e308)
    folder = write_record(tmp_path)
    log = folder / "train_seed42.log"
    text = log.read_text()
    log.write_text(text.replace("final_int6_sliding_window val_loss", "final_int8_roundtrip val_loss:inf val_bpb:inf\nfinal_int6_sliding_window val_loss", 1))
    submission = json.loads((folder / "submission.json").read_text())
    submission["seed_results"]["42"]["val_bpb"] = 1.5  # a claim that matches neither metric
    (folder / "submission.json").write_text(json.dumps(submission))
    assert "PG406" in codes(audit(folder))
