"""Tests for auditor.evidence: per-seed log evidence with cited lines."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from auditor.evidence import (
    PGOLF_PREFIX,
    Cited,
    Metric,
    RunEvidence,
    format_pgolf_line,
    looks_like_log,
    parse_log_file,
    headline_lines,
    parse_log_text,
    seed_from_filename,
)

LOGS = Path(__file__).parent / "fixtures" / "logs"


def ev_of(name: str) -> RunEvidence:
    return parse_log_file(LOGS / name)


class LogCase:
    """Tests over one fixture log (NAME), parsed once per class."""

    NAME = ""

    @pytest.fixture(scope="class")
    @classmethod
    def ev(cls) -> RunEvidence:
        return ev_of(cls.NAME)


def vl(c: Cited | None) -> tuple | None:
    """(value, line) of a Cited, for compact assertions."""
    return None if c is None else (c.value, c.line)


def fixture_line(name: str, n: int) -> str:
    return (LOGS / name).read_bytes().decode("utf-8", "replace").split("\n")[n - 1].strip()


# --------------------------------------------------------------------------
# baseline: int8+zlib, nvidia-smi table, stopping_early, raw then compressed sizes


class TestBaseline(LogCase):
    NAME = "baseline_int8_zlib_seed1337.log"


    def test_clean(self, ev):
        assert ev.log == self.NAME
        assert ev.n_lines == 43
        assert ev.missing == []
        assert ev.problems == []

    def test_headline_prefers_exact_and_cites_line(self, ev):
        assert ev.headline is not None
        assert ev.headline.name == "final_int8_zlib_roundtrip_exact"
        assert ev.headline.val_bpb == pytest.approx(1.22436570)
        assert ev.headline.val_loss == pytest.approx(2.07269931)
        assert ev.headline.exact is True
        assert ev.headline.line == 43
        assert ev.headline.text == fixture_line(self.NAME, 43)

    def test_step_val_lines_and_code_dump_are_not_final_metrics(self, ev):
        # step:0, step:1000 and step:13780 val lines, and the f-string in the code dump
        assert [m.name for m in ev.metrics] == [
            "final_int8_zlib_roundtrip",
            "final_int8_zlib_roundtrip_exact",
        ]
        assert [m.line for m in ev.metrics] == [42, 43]
        assert ev.metrics[0].eval_time_ms == 1406.0
        assert ev.metrics[0].exact is False

    def test_training_time_from_stopping_early(self, ev):
        assert vl(ev.train_time_ms) == (600038.0, 35)
        assert vl(ev.steps) == (13780, 35)
        assert ev.train_time_ms.text.startswith("stopping_early: wallclock_cap")

    def test_compressed_sizes_win_over_raw(self, ev):
        assert vl(ev.bytes_total) == (15863533, 41)
        assert vl(ev.bytes_model) == (15815847, 40)
        assert vl(ev.bytes_code) == (47686, 38)

    def test_config(self, ev):
        assert vl(ev.seed) == (1337, 28)
        assert vl(ev.world_size) == (8, 27)
        assert vl(ev.train_shards) == (80, 26)
        assert vl(ev.val_tokens) == (62021632, 25)  # val_loader ... tokens:N
        assert vl(ev.peak_memory_mib) == (10184.0, 36)
        assert ev.gptq_reserve_s is None

    def test_hardware_counts_nvidia_smi_rows(self, ev):
        assert vl(ev.hardware) == ("8x NVIDIA H100 80GB HBM3", 12)

    def test_eval_time_summed_from_the_metric_phase(self, ev):
        assert list(ev.eval_phases) == ["final_int8_zlib_roundtrip"]
        assert vl(ev.eval_time_ms) == (1406.0, 42)
        assert ev.eval_time_summed is True


# --------------------------------------------------------------------------
# sliding window int6 + lzma, args-dump config, no stop line


class TestSlidingWindow(LogCase):
    NAME = "train_seed42.log"


    def test_clean(self, ev):
        assert ev.missing == [] and ev.problems == []

    def test_exact_printed_before_rounded_still_wins(self, ev):
        # line 19 is ..._sliding_window_exact, line 20 the rounded one printed after it
        assert ev.headline.name == "final_int6_sliding_window_exact"
        assert ev.headline.line == 19
        assert ev.headline.val_bpb == pytest.approx(1.12591234)

    def test_train_time_from_last_step_line(self, ev):
        assert vl(ev.train_time_ms) == (588000.0, 11)
        assert vl(ev.steps) == (7312, 11)

    def test_args_dump_and_env_config(self, ev):
        assert vl(ev.seed) == (42, 2)
        assert vl(ev.world_size) == (8, 3)
        assert vl(ev.train_shards) == (80, 4)
        assert vl(ev.val_tokens) == (47851520, 5)
        assert vl(ev.gptq_reserve_s) == (12.0, 6)
        assert vl(ev.hardware) == ("8x NVIDIA H100 80GB HBM3", 7)

    def test_sizes_int6_lzma(self, ev):
        assert vl(ev.bytes_total) == (15184690, 16)
        assert vl(ev.bytes_model) == (15123456, 15)
        assert vl(ev.bytes_code) == (61234, 14)

    def test_eval_phases_keyed_by_base_name_and_summed(self, ev):
        assert {k: vl(c) for k, c in ev.eval_phases.items()} == {
            "final_int6_roundtrip": (21000.0, 17),
            "final_int6_sliding_window": (95321.0, 20),
        }
        assert vl(ev.eval_time_ms) == (116321.0, 20)
        assert ev.eval_time_summed is True


# --------------------------------------------------------------------------
# legal TTT: pre-quant metric, phased eval times, progress lines


class TestLegalTTT(LogCase):
    NAME = "legal_ttt_seed2024.log"


    def test_headline_is_legal_ttt(self, ev):
        assert ev.missing == [] and ev.problems == []
        assert (ev.headline.name, ev.headline.line) == ("legal_ttt_exact", 18)
        assert ev.headline.val_bpb == pytest.approx(1.11412345)

    def test_metrics_in_order_without_progress_lines(self, ev):
        assert [(m.name, m.line) for m in ev.metrics] == [
            ("pre_quant", 10),
            ("quantized_sliding_window", 14),
            ("legal_ttt_exact", 18),
        ]

    def test_phases_and_sum(self, ev):
        assert {k: vl(c) for k, c in ev.eval_phases.items()} == {
            "pre_quant": (18000.0, 10),
            "quantized_sliding_window": (95000.0, 14),
            "ttt": (312000.0, 17),
        }
        assert vl(ev.eval_time_ms) == (425000.0, 17)  # cited at the last phase
        assert ev.eval_time_summed is True

    def test_stop_line_and_config(self, ev):
        assert vl(ev.train_time_ms) == (588012.0, 9)
        assert vl(ev.steps) == (7851, 9)
        assert vl(ev.seed) == (2024, 1)
        assert vl(ev.gptq_reserve_s) == (12.0, 4)
        assert vl(ev.hardware) == ("NVIDIA H100 80GB HBM3", 3)  # no count printed
        assert vl(ev.bytes_total) == (15987654, 13)


def test_pre_quant_only_is_not_a_headline():
    text = (
        "seed:1\nstep:10/10 train_loss:3.0 train_time:1000ms\n"
        "pre_quant val_loss:1.9512 val_bpb:1.1556 eval_time:18000ms\n"
    )
    ev = parse_log_text(text, "train_seed1.log")
    assert [m.name for m in ev.metrics] == ["pre_quant"]
    assert ev.headline is None
    assert ev.missing[0] == (
        "could not find headline val_bpb in train_seed1.log "
        "(only pre-quantization metrics were printed: pre_quant)"
    )


def test_last_final_metric_is_headline_not_first():
    text = (
        "final_int6_roundtrip val_loss:1.95 val_bpb:1.15\n"
        "quantized_ttt_phased val_loss:1.88 val_bpb:1.11 eval_time:300s\n"
    )
    ev = parse_log_text(text, "x.log")
    assert (ev.headline.name, ev.headline.val_bpb, ev.headline.line) == ("quantized_ttt_phased", 1.11, 2)
    assert ev.eval_phases["quantized_ttt_phased"].value == 300000.0


# --------------------------------------------------------------------------
# structured :::PGOLF lines


class TestStructuredOnly(LogCase):
    NAME = "pgolf_only.log"


    def test_everything_from_structured(self, ev):
        assert ev.missing == [] and ev.problems == []
        assert len(ev.structured) == 8
        assert [e["event"] for e in ev.structured] == [
            "config", "data", "train_end", "artifact", "metric", "metric", "eval_phase", "eval_end",
        ]
        assert vl(ev.seed) == (7, 1)
        assert vl(ev.world_size) == (8, 1)
        assert vl(ev.hardware) == ("8x NVIDIA H100 80GB HBM3", 1)
        assert vl(ev.gptq_reserve_s) == (12.0, 1)
        assert vl(ev.val_tokens) == (47851520, 2)
        assert vl(ev.train_shards) == (80, 2)
        assert vl(ev.train_time_ms) == (599000.0, 3)
        assert vl(ev.steps) == (1234, 3)
        assert vl(ev.peak_memory_mib) == (10184.0, 3)
        assert vl(ev.bytes_code) == (48000, 4)
        assert vl(ev.bytes_model) == (15800000, 4)
        assert vl(ev.bytes_total) == (15848000, 4)

    def test_headline_flag_and_eval_total(self, ev):
        assert ev.headline == Metric(
            "final_sliding_window", 1.9, 1.12, 95000.0, 6, fixture_line(self.NAME, 6), False
        )
        assert vl(ev.eval_time_ms) == (310000.0, 8)
        assert ev.eval_time_summed is False
        assert {k: c.value for k, c in ev.eval_phases.items()} == {
            "final_roundtrip": 15000.0,
            "final_sliding_window": 95000.0,
            "ttt": 200000.0,
        }

    def test_structured_dicts_are_the_emitted_objects(self, ev):
        assert ev.structured[3] == {
            "event": "artifact", "bytes_code": 48000, "bytes_model": 15800000,
            "bytes_total": 15848000, "codec": "zstd-22",
        }


def test_headline_flag_beats_a_later_metric():
    text = "\n".join([
        format_pgolf_line("metric", name="sliding", val_bpb=1.12, headline=True),
        format_pgolf_line("metric", name="diagnostic_later", val_bpb=1.05),
        "final_ttt val_loss:1.8 val_bpb:1.04",
    ])
    ev = parse_log_text(text, "x.log")
    assert (ev.headline.name, ev.headline.line) == ("sliding", 1)


def test_structured_metrics_win_over_scraped_even_without_flag():
    text = "\n".join([
        format_pgolf_line("metric", name="final_sw", val_loss=1.9, val_bpb=1.12),
        "final_other val_loss:1.8 val_bpb:1.04",
    ])
    ev = parse_log_text(text, "x.log")
    assert ev.headline.name == "final_sw"
    assert [m.name for m in ev.metrics] == ["final_sw", "final_other"]


class TestDisagreement(LogCase):
    NAME = "disagree_seed11.log"


    def test_structured_metric_wins(self, ev):
        assert ev.headline.line == 8
        assert ev.headline.val_bpb == pytest.approx(1.13001234)
        assert any(
            "disagrees with the printed final_int6_sliding_window_exact val_bpb 1.12591234 (line 9)" in p
            for p in ev.problems
        )

    def test_structured_values_win_over_scraped(self, ev):
        assert vl(ev.bytes_total) == (16000001, 7)  # scraped 15999999 at line 6
        assert vl(ev.train_time_ms) == (599400.0, 5)  # stopping_early said 599500 at line 4
        assert vl(ev.seed) == (11, 2)
        assert any("bytes_total 16000001 (line 7) disagrees" in p for p in ev.problems)

    def test_malformed_structured_lines_are_problems(self, ev):
        assert any(p.startswith(f"malformed {PGOLF_PREFIX} line 10 in {self.NAME}: JSONDecodeError") for p in ev.problems)
        assert f"malformed {PGOLF_PREFIX} line 12 in {self.NAME}: not a JSON object" in ev.problems
        assert f"bad {PGOLF_PREFIX} field eval_time_ms='fast' (eval_end) at line 11 in {self.NAME}" in ev.problems
        # the bad eval_end neither counts as a total nor crashes
        assert ev.eval_time_ms is None
        assert f"could not find eval time in {self.NAME}" in ev.missing
        # only well-formed objects with an event are kept
        assert [e["event"] for e in ev.structured] == ["config", "train_end", "artifact", "metric", "eval_end"]


@pytest.mark.parametrize(
    "line, problem",
    [
        (':::PGOLF {"seed": 3}', 'no string "event" key'),
        (':::PGOLF {"event": "config", "seed": true}', "bad :::PGOLF field seed=True"),
        (':::PGOLF {"event": "config", "seed": 4.5}', "bad :::PGOLF field seed=4.5"),
        (':::PGOLF {"event": "metric", "name": "m"}', "has neither val_loss nor val_bpb"),
        (":::PGOLF", "malformed :::PGOLF line 1"),
        (':::PGOLF {"event": "eval_phase", "eval_time_ms": 5}', "bad :::PGOLF field name=None"),
    ],
)
def test_bad_structured_lines_never_raise(line, problem):
    ev = parse_log_text(line + "\n", "x.log")
    assert any(problem in p for p in ev.problems), ev.problems
    assert ev.seed is None and ev.headline is None


def test_format_pgolf_line_round_trips():
    line = format_pgolf_line("metric", name="final_sliding_window", val_loss=1.9, val_bpb=1.12,
                             eval_time_ms=95000, headline=True, path=Path("a/b"))
    assert line.startswith(PGOLF_PREFIX + ' {"event":"metric",')
    assert "\n" not in line
    assert json.loads(line[len(PGOLF_PREFIX):]) == {
        "event": "metric", "name": "final_sliding_window", "val_loss": 1.9, "val_bpb": 1.12,
        "eval_time_ms": 95000, "headline": True, "path": "a/b",
    }
    # a prefix before the marker (rank, timestamp) is tolerated
    ev = parse_log_text("[rank0] 12:00:01 " + line + "\n", "x.log")
    assert (ev.headline.name, ev.headline.val_bpb, ev.headline.eval_time_ms) == ("final_sliding_window", 1.12, 95000.0)
    with pytest.raises(ValueError):
        format_pgolf_line("")


def test_format_pgolf_line_escapes_newlines():
    line = format_pgolf_line("config", hardware="a\nb")
    assert "\n" not in line
    assert parse_log_text(line, "x.log").hardware.value == "a\nb"


# --------------------------------------------------------------------------
# key=value style


def test_key_value_style():
    name = "kv_style_seed7.txt"
    ev = ev_of(name)
    assert ev.missing == [] and ev.problems == []
    assert (ev.headline.name, ev.headline.val_loss, ev.headline.val_bpb, ev.headline.eval_time_ms) == (
        "final_eval", 1.9, 1.12, 95300.0)
    assert ev.headline.line == 5
    assert vl(ev.seed) == (7, 1)
    assert vl(ev.world_size) == (8, 1)
    assert vl(ev.train_shards) == (80, 1)
    assert vl(ev.train_time_ms) == (598200.0, 3)  # train_time=598.2s on a step=N/M line
    assert vl(ev.steps) == (4200, 3)
    assert vl(ev.bytes_total) == (15750000, 4)
    assert vl(ev.bytes_code) == (50000, 4)
    assert {k: vl(c) for k, c in ev.eval_phases.items()} == {
        "final_eval": (95300.0, 5),
        "sliding_window": (40500.0, 6),  # "sliding_window_eval time:40.5s"
    }
    # the explicit total wins over the sum (135800)
    assert vl(ev.eval_time_ms) == (140100.0, 7)
    assert ev.eval_time_summed is False


# --------------------------------------------------------------------------
# broken logs


def test_truncated_log():
    name = "truncated_seed5.log"
    ev = ev_of(name)
    assert ev.headline is None and ev.metrics == []
    assert ev.missing == [
        f"could not find headline val_bpb in {name}",
        f"could not find total submission size in {name}",
        f"could not find eval time in {name}",
    ]
    assert ev.problems == [
        f"{name} appears truncated: no final metric after training "
        "(last step 300/20000 at line 5); its last line has no newline"
    ]
    # the cut last line has no train_time: the last complete one gives it
    assert vl(ev.train_time_ms) == (9000.0, 4)
    assert vl(ev.steps) == (300, 5)
    assert vl(ev.seed) == (5, 1)


def test_truncated_during_eval_after_stop_line():
    text = (
        "seed:1\nstep:100/100 train_loss:2.0 train_time:5000ms\n"
        "stopping_early: wallclock_cap train_time:5001ms step:100/100\n"
        "Total submission size int8+zlib: 100 bytes\n"
    )
    ev = parse_log_text(text, "a.log")
    assert any("appears truncated" in p and "line 2" in p for p in ev.problems)
    assert "its last line has no newline" not in ev.problems[0]


def test_binary_garbage():
    name = "binary_garbage.log"
    ev = ev_of(name)
    assert ev.problems[0].startswith(f"{name} is not valid UTF-8")
    assert any(p.startswith(f"{name} looks binary: it contains") for p in ev.problems)
    assert ev.headline is None and ev.seed is None
    assert f"could not find headline val_bpb in {name}" in ev.missing
    assert f"could not find seed in {name} (neither in the log nor in its file name)" in ev.missing


def test_non_utf8_log_still_yields_values():
    name = "latin1_seed3.log"
    ev = ev_of(name)
    assert ev.problems == [
        f"{name} is not valid UTF-8 (first bad byte at offset 81); decoded with replacement characters"
    ]
    assert ev.missing == []
    assert (ev.headline.name, ev.headline.line) == ("final_int8_zlib_roundtrip_exact", 5)
    assert vl(ev.bytes_total) == (15863533, 4)
    assert vl(ev.seed) == (3, 1)


def test_empty_file():
    ev = ev_of("empty.log")
    assert ev.n_lines == 0 and ev.metrics == [] and ev.structured == []
    assert ev.problems == ["empty.log is empty"]
    assert ev.missing == [
        "could not find headline val_bpb in empty.log",
        "could not find seed in empty.log (neither in the log nor in its file name)",
        "could not find training time in empty.log",
        "could not find total submission size in empty.log",
        "could not find eval time in empty.log",
    ]


def test_missing_file_and_directory_never_raise(tmp_path):
    ev = parse_log_file(tmp_path / "train_seed9.log")
    assert ev.log == "train_seed9.log"
    assert ev.problems[0].startswith("could not read train_seed9.log: FileNotFoundError")
    assert vl(ev.seed) == (9, 0)
    assert "could not find headline val_bpb in train_seed9.log" in ev.missing
    ev = parse_log_file(tmp_path)
    assert ev.problems and ev.problems[0].startswith("could not read")


def test_max_bytes_cuts_at_a_line_boundary(tmp_path):
    p = tmp_path / "big.log"
    p.write_text("seed:1\n" + "x" * 50 + "\nTotal submission size int8+zlib: 15863533 bytes\n")
    ev = parse_log_file(p, max_bytes=70)
    assert ev.problems[0] == "big.log is larger than 70 bytes; only its first 58 bytes were parsed"
    assert ev.n_lines == 2
    assert ev.bytes_total is None and vl(ev.seed) == (1, 1)


def test_bom_and_crlf(tmp_path):
    p = tmp_path / "w.log"
    p.write_bytes(b"\xef\xbb\xbfseed:8\r\nfinal_x val_loss:2.0 val_bpb:1.2\r\n")
    ev = parse_log_file(p)
    assert vl(ev.seed) == (8, 1)
    assert ev.headline.text == "final_x val_loss:2.0 val_bpb:1.2"
    assert ev.problems == []


def test_unknown_format_reports_missing_not_crash():
    ev = parse_log_text("hello world\nloss went down\n", "train_seed42.log")
    assert ev.missing == [
        "could not find headline val_bpb in train_seed42.log",
        "could not find training time in train_seed42.log",
        "could not find total submission size in train_seed42.log",
        "could not find eval time in train_seed42.log",
    ]
    assert ev.problems == []


# --------------------------------------------------------------------------
# seeds


def test_seed_from_filename_when_log_has_none():
    ev = ev_of("seed_1337.txt")
    assert ev.seed == Cited(1337, 0, "seed_1337.txt")
    assert ev.problems == []
    assert "could not find seed" not in " ".join(ev.missing)


def test_seed_in_log_wins_over_filename_and_mismatch_is_a_problem():
    ev = ev_of("log_s42.txt")
    assert vl(ev.seed) == (43, 1)
    assert ev.problems == ["seed 43 in log_s42.txt (line 1) differs from the seed 42 in its file name"]


def test_conflicting_seeds_in_one_log():
    ev = parse_log_text("seed:1\nfoo\nseed=2\n", "a.log")
    assert vl(ev.seed) == (1, 1)
    assert ev.problems == ["a.log prints different seeds: 1 (line 1), 2 (line 3)"]


@pytest.mark.parametrize(
    "line, seed",
    [("seed:1337", 1337), ("seed=42", 42), ("Seed: 42", 42), ("  seed: 42", 42),
     ('args: {"seed": 7, "lr": 0.1}', 7), ("Namespace(seed=5, lr=0.1)", 5), ("SEED=9", 9)],
)
def test_seed_forms(line, seed):
    assert parse_log_text(line + "\n", "x.log").seed.value == seed


@pytest.mark.parametrize(
    "line",
    ["data_seed:5", "seed = 5", "seeds: [1, 2, 3]", "seed: int = 1337", "torch.manual_seed(seed)"],
)
def test_not_seeds(line):
    assert parse_log_text(line + "\n", "x.log").seed is None


@pytest.mark.parametrize(
    "name, seed",
    [("train_seed42.log", 42), ("seed_1337.txt", 1337), ("log_s42.txt", 42), ("records/x/train_SEED2024.log", 2024),
     ("run-seed-7.log", 7), ("train.log", None), ("train_gpt_8gpu.log", None), ("logs_v2.txt", None)],
)
def test_seed_from_filename(name, seed):
    assert seed_from_filename(name) == seed


@pytest.mark.parametrize(
    "name, ok",
    [("train.log", True), ("train_seed42.log", True), ("train_seed42.txt", True), ("log_s42.txt", True),
     ("seed_1337.txt", True), ("logs/whatever.log", True), ("train.txt", True), ("run_3.txt", True),
     ("requirements.txt", False), ("README.md", False), ("readme.txt", False), ("notes.txt", False),
     ("train_gpt.py", False), ("submission.json", False), ("vocab.txt", False)],
)
def test_looks_like_log(name, ok):
    assert looks_like_log(name) is ok


# --------------------------------------------------------------------------
# smaller forms


def test_raw_total_superseded_by_compressed_model_is_not_the_artifact():
    text = (
        "Serialized model: 67224983 bytes\nCode size: 47686 bytes\n"
        "Total submission size: 67272669 bytes\n"
        "Serialized model int8+zlib: 15815847 bytes\n"
    )
    ev = parse_log_text(text, "a.log")
    assert ev.bytes_total is None
    assert vl(ev.bytes_model) == (15815847, 4)
    assert (
        "could not find total submission size in a.log: only an uncompressed total (67272669 bytes, line 3) "
        "was printed, while the model was serialized compressed (15815847 bytes, line 4)"
    ) in ev.missing


def test_raw_total_alone_is_kept():
    ev = parse_log_text("Total submission size: 15,000,000 bytes\n", "a.log")
    assert vl(ev.bytes_total) == (15000000, 1)


def test_last_compressed_total_wins():
    text = (
        "Total submission size int8+zlib: 15863533 bytes\n"
        "Total submission size: 67272669 bytes\n"
        "Total submission size int6+brotli: 15987654 bytes\n"
    )
    assert vl(parse_log_text(text, "a.log").bytes_total) == (15987654, 3)


def test_hardware_forms():
    assert parse_log_text("device: NVIDIA H100 80GB HBM3 x8\n", "a").hardware.value == "8x NVIDIA H100 80GB HBM3"
    assert parse_log_text("hardware: 8xH100\n", "a").hardware.value == "8x H100"
    assert parse_log_text("gpu:NVIDIA H100 80GB HBM3\n", "a").hardware.value == "NVIDIA H100 80GB HBM3"
    assert parse_log_text("device: cuda:0\n", "a").hardware is None
    # a table pasted twice counts each GPU once; mixed models are listed
    rows = "|   0  NVIDIA H100 80GB HBM3  On |\n|   1  NVIDIA A100-SXM4-80GB  Off |\n"
    assert parse_log_text(rows + rows, "a").hardware.value == "1x NVIDIA H100 80GB HBM3 + 1x NVIDIA A100-SXM4-80GB"


def test_time_units_and_gptq_forms():
    ev = parse_log_text(
        "GPTQ_RESERVE_SECONDS=12\nstep:5/10 train_loss:1 train_time:1.5s\n"
        "final_a val_loss:1 val_bpb:1 eval_time:2min\nttt_eval_time_s:30\n",
        "a.log",
    )
    assert vl(ev.gptq_reserve_s) == (12.0, 1)
    assert vl(ev.train_time_ms) == (1500.0, 2)
    assert ev.eval_phases["final_a"].value == 120000.0
    assert ev.eval_phases["ttt"].value == 30000.0
    assert vl(ev.eval_time_ms) == (150000.0, 4)


def test_phases_before_training_end_are_not_summed():
    text = (
        "warmup_eval_time:5000ms\nstep:10/10 train_loss:1 train_time:100ms\n"
        "final_x val_loss:1 val_bpb:1.1 eval_time:2000ms\n"
    )
    ev = parse_log_text(text, "a.log")
    assert set(ev.eval_phases) == {"warmup", "final_x"}
    assert vl(ev.eval_time_ms) == (2000.0, 3)


def test_explicit_total_forms():
    for line, ms in [("total_eval_time:431.5s", 431500.0), ("eval_total_time: 400000ms", 400000.0),
                     ("eval_time_total=12s", 12000.0)]:
        ev = parse_log_text("final_x val_loss:1 val_bpb:1.1 eval_time:2000ms\n" + line + "\n", "a.log")
        assert vl(ev.eval_time_ms) == (ms, 2), line
        assert ev.eval_time_summed is False
        assert "total" not in ev.eval_phases


def test_progress_and_step_lines_are_not_final_metrics():
    text = (
        "ttt_chunk:10/100 val_loss:1.5 val_bpb:0.9\n"
        "step 500 val_loss:2.0 val_bpb:1.3\n"
        "epoch:1 train_loss:2.0 val_loss:2.1 val_bpb:1.25\n"
        "val_bpb_target: 1.0\n"
        "log0(f'final val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f}')\n"
    )
    ev = parse_log_text(text, "a.log")
    assert ev.metrics == []


def test_long_lines_are_clipped():
    line = "final_x val_loss:2.0 val_bpb:1.2 " + "z" * 500
    ev = parse_log_text(line, "a.log")
    assert len(ev.headline.text) == 200 and ev.headline.text.endswith("...")


def test_dataclasses_api():
    assert dataclasses.is_dataclass(Cited) and dataclasses.is_dataclass(Metric)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Cited(1, 1, "x").value = 2  # type: ignore[misc]
    ev = ev_of("pgolf_only.log")
    d = ev.to_dict()
    json.dumps(d)
    assert d["headline"]["name"] == "final_sliding_window"


# --------------------------------------------------------------------------
# robustness and speed


def test_fuzz_never_raises():
    rng = random.Random(0)
    pieces = [
        "step:", "/", "train_time:", "ms", "val_loss:", "val_bpb:", "eval_time:", "seed:", "=", ":",
        "Total submission size", "Serialized model", "bytes", ":::PGOLF", "{", "}", '"event"', "nan",
        "stopping_early", "_exact", "|", "  0  NVIDIA H100", "On |", "\n", "\x00", "\ufffd", "1e400",
        "12", "3.5", "-", "x8", "device:", "peak memory allocated:", "GiB", "total_eval_time", "s",
    ]
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 60)))
        ev = parse_log_text(text, "fuzz.log")
        assert isinstance(ev, RunEvidence)
        ev.to_dict()
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
        parse_log_text(data.decode("utf-8", "replace"), "fuzz.log")


def test_big_log_single_pass():
    """A 10 MB log parses in one pass (benchmarks/bench_evidence.py times it)."""
    n = 200_000
    lines = ["seed:42", "world_size:8"]
    lines += [f"step:{i}/{n} train_loss:{3 - i / n:.4f} train_time:{i * 3}ms step_avg:3.00ms" for i in range(1, n + 1)]
    lines += [
        "Total submission size int8+zlib: 15863533 bytes",
        "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570 eval_time:1406ms",
    ]
    text = "\n".join(lines) + "\n"
    assert len(text) > 10_000_000
    ev = parse_log_text(text, "train_seed42.log")
    assert vl(ev.steps) == (n, n + 2)
    assert vl(ev.train_time_ms) == (n * 3.0, n + 2)
    assert ev.headline.line == n + 4
    assert ev.missing == [] and ev.problems == []


def test_headline_lines_add_the_labelled_lines_a_summary_block_repeats():
    """A summary a harness appends (`val_bpb: 1.1227...`) is the headline; the lines that report
    the same value with the script's own label follow it (latest first), so "which code printed
    the score?" has an answer. A line with another value is not among them."""
    text = ("step:10/10 train_loss:2.0000\n"
            "final_roundtrip_exact val_loss:1.93592275 val_bpb:1.14656250\n"
            "final_sliding_window_exact val_loss:1.89576235 val_bpb:1.12278022\n"
            "final_compat_exact val_loss:1.89576235 val_bpb:1.12278022\n"
            "---\n"
            "val_bpb:          1.12278022\n")
    run = parse_log_text(text, "train_seed1.log")
    assert run.headline is not None and run.headline.line == 6
    assert [line for _, line, _ in headline_lines([run])] == [6, 4, 3]
    assert headline_lines([parse_log_text("step:1/1 train_loss:2.0\n", "x.log")]) == []
