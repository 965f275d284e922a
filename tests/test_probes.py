"""Dynamic probes (auditor.probes): the reference's legal evaluation modes pass every
probe; each illegal variant (tests/illegal_variants), packed with the reference into
one script, is caught by a probe with measured numbers; the sandbox reports why a
probe could not run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

from rules.core import Severity  # noqa: E402
from auditor.probes import probe_record  # noqa: E402
from tests import probe_scripts  # noqa: E402
from tests.illegal_variants import VARIANTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ENTRIES = {"evaluate", "eval_chunk_ttt", "eval_lora_ttt", "eval_slot", "eval_ngram_tilt"}


@pytest.fixture(scope="session")
def tok_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("probe_tok")


@pytest.fixture(scope="session")
def reference_script(committed_reference_record, tmp_path_factory) -> Path:
    if committed_reference_record is not None:
        return committed_reference_record / "train_gpt.py"
    from reference_impl.pack import write_script

    out = tmp_path_factory.mktemp("ref") / "train_gpt.py"
    write_script(str(out), packed=True)  # shipped lzma+b85: the probe must run the decoded layer
    return out


def _variant_script(tmp: Path, name: str) -> Path:
    """The reference packed into one file, with the variant module appended (imports stripped)."""
    from reference_impl.pack import _strip, build_source

    lines, _ = _strip((ROOT / "tests" / "illegal_variants" / f"{name}.py").read_text(), keep_main=False)
    path = tmp / name / "train_gpt.py"
    path.parent.mkdir(parents=True)
    path.write_text(build_source() + "\n# ---- illegal variant: " + name + "\n" + "\n".join(lines) + "\n")
    return path


def _illegal(report):
    return [f for f in report.findings if f.severity == Severity.ILLEGAL]


@pytest.fixture(scope="session")
def reference_report(reference_script, tok_cache):
    return probe_record(reference_script, timeout_s=170, tokenizer_cache=tok_cache)


def test_reference_legal_modes_pass_every_probe(reference_report):
    r = reference_report
    assert r.reason == ""
    assert not [f for f in r.findings if f.severity != Severity.INFO], [f.message for f in r.findings]
    assert set(r.ran("c1")) == REFERENCE_ENTRIES and set(r.ran("c4")) == REFERENCE_ENTRIES
    assert r.ran("bos") == ["eval_lora_ttt"]  # the only mode that isolates documents
    for e in r.data["entries"]:
        assert e["c1"]["status"] == "pass" and e["c1"]["checked"] > 200 and e["c1"]["max_abs"] == 0.0
        assert e["c4"]["scored"] == e["c4"]["targets"] == r.data["n_tokens"] - 1
    assert r.data["model_class"] == "GPT" and r.data["config_class"] == "Config"


def test_reference_passes_on_intercepted_losses_alone(reference_script, tok_cache):
    """Without the ledger's per-token array, cross-entropy interception must reach the same verdict
    and tie its counted selection to the returned totals."""
    r = probe_record(reference_script, timeout_s=170, tokenizer_cache=tok_cache, intercept_only=True,
                     entries=["evaluate", "eval_chunk_ttt", "eval_lora_ttt"])
    assert not _illegal(r), [f.message for f in _illegal(r)]
    assert set(r.ran("c1")) == {"evaluate", "eval_chunk_ttt", "eval_lora_ttt"}
    assert all(e["verified"] and "intercepted" in e["source"] for e in r.data["entries"])
    assert all(e["c4"]["status"] == "pass" for e in r.data["entries"])


PROBED = sorted(name for name, v in VARIANTS.items() if v.probe)  # entry, env and probe from the one table


@pytest.mark.parametrize("name", PROBED)
def test_each_illegal_variant_is_caught_with_numbers(name, tmp_path, tok_cache):
    v = VARIANTS[name]
    entry, env, code = v.entry, v.env, v.probe
    script = _variant_script(tmp_path, name)
    r = probe_record(script, timeout_s=170, env=env, entries=[entry], tokenizer_cache=tok_cache)
    hits = [f for f in _illegal(r) if f.code == code]
    assert hits, [(f.code, f.severity.value, f.message) for f in r.findings]
    msg = hits[0].message
    assert entry in msg and re.search(r"\d+\.\d+", msg)  # measured numbers, not an opinion
    e = r.data["entries"][0]
    if code == "PG150":
        assert e["c1"]["changed"] > 0 and e["c1"]["worst_position"] < e["c1"]["flipped"]
    elif code == "PG152":
        assert abs(e["c2"]["sum"] - 1) > 1e-3 and e["c2"]["function"] == "blended_prob"
    else:
        assert e["bos"]["changed"] > 0 and e["bos"]["n_documents"] >= 1


def test_pre_eval_ttt_switched_off_passes(tmp_path, tok_cache):
    """Same script, flag off (its env default): nothing trains on validation tokens, C1 holds."""
    script = _variant_script(tmp_path, "pre_eval_ttt")
    r = probe_record(script, timeout_s=170, env={"PRE_EVAL_TTT": "0"}, entries=["adapt_then_evaluate"],
                     tokenizer_cache=tok_cache)
    assert r.data["entries"][0]["c1"]["status"] == "pass"


@pytest.mark.parametrize("name", ["multi_epoch_rescoring", "scored_region_slot"])
def test_variants_caught_from_intercepted_losses(name, tmp_path, tok_cache):
    entry, env = VARIANTS[name].entry, VARIANTS[name].env
    r = probe_record(_variant_script(tmp_path, name), timeout_s=170, env=env, entries=[entry],
                     tokenizer_cache=tok_cache, intercept_only=True)
    e = r.data["entries"][0]
    assert "intercepted" in e["source"] and e["c1"]["status"] == "fail", e


def test_generic_script_shapes_load_and_leak_is_found(tmp_path, tok_cache):
    """Env-var hyperparameters, flash_attn, .cuda(), torch.compile, three LUT arguments."""
    results = {}
    for label, src in (("legal", probe_scripts.GENERIC), ("leaky", probe_scripts.GENERIC_LEAKY)):
        path = tmp_path / label / "train_gpt.py"
        path.parent.mkdir()
        path.write_text(src)
        results[label] = probe_record(path, timeout_s=120, tokenizer_cache=tok_cache)
    legal, leaky = results["legal"], results["leaky"]
    assert legal.data["model_class"] == "TinyGPT" and legal.data["tables_fn"] == "build_sentencepiece_luts"
    assert legal.ran("c1") == ["eval_val_sliding"] and not _illegal(legal)
    assert legal.data["entries"][0]["verified"]
    assert [f.code for f in _illegal(leaky)] == ["PG150"]


@pytest.mark.parametrize("src,reason", [
    (probe_scripts.SLEEPS_AT_IMPORT, "timed out"),
    (probe_scripts.NETWORK_AT_IMPORT, "network access is disabled"),
    (probe_scripts.NO_ENTRY, "no evaluation entry point"),
    ("def broken(:\n", "SyntaxError"),
])
def test_probe_not_run_says_why(src, reason, tmp_path, tok_cache):
    path = tmp_path / "train_gpt.py"
    path.write_text(src)
    r = probe_record(path, timeout_s=2 if reason == "timed out" else 30, tokenizer_cache=tok_cache)
    assert [f.code for f in r.findings if f.key != "sandbox"] == ["PG159"]
    # nothing ran: never a pass, a warning that says what could not run
    f = r.findings[0]
    assert f.severity == Severity.WARNING and "NOT PROVEN" in f.message and reason in f.message, f.message


@pytest.fixture(scope="session")
def modern_report(tmp_path_factory, tok_cache):
    path = tmp_path_factory.mktemp("modern") / "train_gpt.py"
    path.write_text(probe_scripts.MODERN)
    return probe_record(path, timeout_s=120, tokenizer_cache=tok_cache)


def test_modern_script_shapes_are_probed(modern_report):
    """triton, config attributes main() sets, log() via a global, a ValidationData holder, a
    forward function passed in, fused AdamW, out-of-range layer indices at 2 layers, 3.12
    f-strings, evaluation lengths as parameter defaults: every legal entry runs and passes."""
    r = modern_report
    assert r.reason == "", r.reason
    stubs = " ".join(r.data["stubs"])
    assert "triton" in stubs and "f-strings" in stubs and "log" in stubs
    assert any("configured depth" in n for n in r.data["notes"])
    assert set(r.ran("c1")) == {"eval_val", "eval_val_ttt", "eval_val_sliding"}, r.data["entries"]
    assert set(r.ran("c4")) == {"eval_val", "eval_val_ttt", "eval_val_sliding"}
    assert not _illegal(r), [f.message for f in _illegal(r)]
    for e in r.data["entries"]:
        if e["name"] != "eval_val_fused":
            # eval_val drops a trailing partial sequence: the stream is whole sequences plus one
            assert e["c4"]["status"] == "pass" and e["c4"]["scored"] == r.data["n_tokens"] - 1, e


def test_a_triton_kernel_launched_by_an_entry_is_reported_not_faked(modern_report):
    e = next(e for e in modern_report.data["entries"] if e["name"] == "eval_val_fused")
    assert e["status"] == "not_run" and "triton kernel _square_kernel cannot run in the CPU probe" in e["reason"]


def test_a_script_that_execs_a_shipped_sibling_is_probed(tmp_path, tok_cache):
    folder = tmp_path / "2026-01-01_sibling"
    folder.mkdir()
    (folder / "train_gpt.py").write_text(probe_scripts.EXEC_SIBLING)
    (folder / "train_gpt_decode.py").write_text(probe_scripts.GENERIC)
    r = probe_record(folder, timeout_s=120, tokenizer_cache=tok_cache)
    assert r.ran("c1") == ["eval_val_sliding"], (r.reason, r.data and r.data.get("error"))
