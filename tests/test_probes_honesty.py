"""Verdict honesty of the dynamic probes: a probe verdict is a measured violation, a check
that held (saying what ran), or NOT PROVEN. Nothing ran, or the evaluation that printed the
logs' headline did not run -> a PG159 warning, never a pass; an unknown `--entry` is a usage
error. The scripts are written for these tests (tests/probe_scripts.GENERIC and variants)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.core import Severity
from tests import probe_scripts

HEADLINE_MAIN = '''
def main():
    args = Hyperparameters()
    val_loss, val_bpb = eval_val_sliding(args, None, None, None, None, None)
    print(f"final_sliding_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
'''
LOG = ("step:100/100 train_loss:2.0000\n"
       "final_sliding_exact val_loss:1.90000000 val_bpb:1.12000000\n")
# the headline's evaluator cannot run on CPU (a real shape: a CUDA-only kernel), another evaluation can
BROKEN_HEADLINE = '''
def eval_val_plain(args, model, val_tokens):
    with torch.no_grad():
        x, y = val_tokens[:-1].long()[None], val_tokens[1:].long()[None]
        return F.cross_entropy(model(x)[0], y[0]).item()
'''


def _record(tmp: Path, script: str, log: str | None = LOG) -> Path:
    folder = tmp / "2026-01-01_probe_honesty"
    folder.mkdir()
    (folder / "train_gpt.py").write_text(script)
    if log is not None:
        (folder / "train_seed1.log").write_text(log)
    return folder


def _generic_with_headline(broken: bool) -> str:
    src = probe_scripts.GENERIC
    head, _, _ = src.partition("\ndef main():")
    body = head
    if broken:
        body = body.replace("def eval_val_sliding(args, model, val_tokens,",
                            "def eval_val_sliding(args, model, val_tokens,", 1)
        body = body.replace('    """', '    """', 1)
        body += BROKEN_HEADLINE
        body = body.replace("def eval_val_sliding(", "def _sliding_impl(", 1) + (
            "\ndef eval_val_sliding(args, model, val_tokens, base_bytes_lut, has_leading_space_lut, "
            "is_boundary_token_lut):\n"
            "    if not torch.cuda.is_available():\n"
            "        raise RuntimeError(\"this evaluation needs its CUDA kernel\")\n"
            "    return _sliding_impl(args, model, val_tokens, base_bytes_lut, has_leading_space_lut, "
            "is_boundary_token_lut)\n")
    return body + HEADLINE_MAIN + '\nif __name__ == "__main__":\n    main()\n'


def test_headline_module_finds_the_evaluator(tmp_path):
    """The parent finds which function computed the headline (rules' facts, read-only)."""
    from auditor import record as record_mod
    from auditor.probes.headline import defined_functions, headline_of

    folder = _record(tmp_path, _generic_with_headline(broken=False))
    rec = record_mod.load(folder)
    source = (folder / "train_gpt.py").read_text()
    hl, why = headline_of(rec, source)
    assert hl is not None, why
    assert hl.functions == ["eval_val_sliding"] and "final_sliding_exact" in hl.text
    assert "eval_val_sliding" in defined_functions(source) and "main" in defined_functions(source)


# a printing helper handed the headline's label and the evaluator, in a script that uses
# Python 3.12's f-string syntax (the enclosing quote reused inside a field)
WRAPPED_MAIN = '''
def timed(label, fn, *args):
    val_loss, val_bpb = fn(*args)
    print(f"{label} val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return val_loss, val_bpb


def main():
    args = Hyperparameters()
    print(f"mode: {"sliding" if args.train_seq_len else "plain"}")
    timed("final_sliding_exact", eval_val_sliding, args, None, None, None, None, None)
'''


def test_headline_through_a_label_wrapper_in_312_syntax(tmp_path):
    """The headline is found when a helper prints it with a label the caller passes, in
    a script the auditor's interpreter can only read after re-quoting its f-strings."""
    from auditor import record as record_mod
    from auditor.probes.headline import defined_functions, headline_of

    head, _, _ = probe_scripts.GENERIC.partition("\ndef main():")
    source = head + WRAPPED_MAIN
    folder = _record(tmp_path, source)
    assert {"timed", "main", "eval_val_sliding"} <= defined_functions(source)
    hl, why = headline_of(record_mod.load(folder), source)
    assert hl is not None, why
    assert hl.functions == ["eval_val_sliding"]


STRIDE_MAIN = '''
def main():
    args = Hyperparameters()
    print(f"num_heads:{args.num_heads} leak_steps:{args.leak_steps}")
    if args.eval_stride > 0:
        val_loss, val_bpb = eval_val_sliding(args, None, None, None, None, None)
        print(f"final_sliding val_loss:{val_loss:.4f} stride:{args.eval_stride}")
        print(f"final_sliding_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
'''


def test_settings_the_headline_evaluation_reads_come_from_the_logs(tmp_path):
    """A log line printed `stride:256` from the setting that gates the headline evaluation:
    the probe runs with EVAL_STRIDE=256. Values of settings the evaluation's call does not
    read (num_heads, leak_steps) are left to the script's defaults."""
    from auditor import record as record_mod
    from auditor.probes.headline import _facts, headline_of, logged_env

    head, _, _ = probe_scripts.GENERIC.partition("\ndef main():")
    source = head + STRIDE_MAIN
    log = ("num_heads:16 leak_steps:5\nstep:100/100 train_loss:2.0000\n"
           "final_sliding val_loss:1.9000 stride:256\n"
           "final_sliding_exact val_loss:1.90000000 val_bpb:1.12000000\n")
    rec = record_mod.load(_record(tmp_path, source, log))
    hl, why = headline_of(rec, source)
    assert hl is not None and "eval_val_sliding" in hl.functions, why
    env = logged_env(rec, source, _facts(source), set(hl.functions))
    assert env["EVAL_STRIDE"][0] == "256" and "stride:" not in env["EVAL_STRIDE"][0]
    assert "train_seed1.log:3" in env["EVAL_STRIDE"][1]
    assert "NUM_HEADS" not in env and "LEAK_STEPS" not in env
    assert logged_env(rec, source, _facts(source), set()) == {}  # no headline evaluator: nothing read


def test_a_launcher_scripts_headline_is_found_in_the_file_it_runs(tmp_path):
    """train_gpt.py only execs a file it ships: the headline's evaluator is looked up in
    that file, the code that runs (the script itself defines no function)."""
    from auditor import record as record_mod
    from auditor.probes.headline import headline_of
    from auditor.probes.runner import _analysed_source, innermost_source

    launcher = 'exec(open(__file__.replace("train_gpt.py", "train_gpt_impl.py")).read())\n'
    folder = _record(tmp_path, launcher)
    (folder / "train_gpt_impl.py").write_text(_generic_with_headline(broken=False))
    rec = record_mod.load(folder)
    source, _ = innermost_source(rec.script)
    assert headline_of(rec, source)[0] is None  # the launcher alone prints nothing
    hl, why = headline_of(rec, _analysed_source(rec, source))
    assert hl is not None and hl.functions == ["eval_val_sliding"], why


def test_no_logs_no_headline_is_said(tmp_path):
    from auditor import record as record_mod
    from auditor.probes.headline import headline_of

    folder = _record(tmp_path, _generic_with_headline(broken=False), log=None)
    hl, why = headline_of(record_mod.load(folder), (folder / "train_gpt.py").read_text())
    assert hl is None and "no log" in why


def test_unknown_entry_is_a_usage_error(tmp_path):
    """`pgolf probe --entry misspelled` exits 2 before anything runs, naming what the script defines."""
    from typer.testing import CliRunner

    from auditor.cli import app

    folder = _record(tmp_path, probe_scripts.GENERIC, log=None)
    result = CliRunner().invoke(app, ["probe", str(folder), "--entry", "eval_val_slidnig"])
    assert result.exit_code == 2, result.output
    assert "eval_val_slidnig" in result.output and "eval_val_sliding" in result.output


def test_unknown_entry_raises_from_the_api(tmp_path):
    from auditor.probes.runner import UnknownEntry, probe_record

    folder = _record(tmp_path, probe_scripts.GENERIC, log=None)
    with pytest.raises(UnknownEntry):
        probe_record(folder, entries=["no_such_function"])


torch = pytest.importorskip("torch")
pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def tok_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("probe_tok_honesty")


def test_headline_evaluation_that_did_not_run_is_a_warning(tmp_path, tok_cache):
    """Another evaluation runs and passes, the headline's does not: the verdict is not PASS."""
    from auditor.probes.runner import probe_record

    folder = _record(tmp_path, _generic_with_headline(broken=True))
    r = probe_record(folder, timeout_s=120, tokenizer_cache=tok_cache)
    ran = r.ran("c1")
    assert "eval_val_plain" in ran and "eval_val_sliding" not in ran, r.data
    warn = [f for f in r.findings if f.code == "PG159" and f.severity == Severity.WARNING]
    assert len(warn) == 1, [(f.code, f.severity.value, f.message) for f in r.findings]
    msg = warn[0].message
    assert "NOT PROVEN" in msg and "headline" in msg and "eval_val_sliding" in msg and "CUDA kernel" in msg
    assert any("final_sliding_exact" in e for e in warn[0].evidence)


def test_headline_evaluation_runs_first_and_is_named(tmp_path, tok_cache):
    """When the headline's evaluation runs, the summary names it, per probe, with the functions it called."""
    from auditor.probes.runner import probe_record

    folder = _record(tmp_path, _generic_with_headline(broken=False))
    r = probe_record(folder, timeout_s=120, tokenizer_cache=tok_cache)
    assert r.data["entries"][0]["name"] == "eval_val_sliding" and r.data["entries"][0]["headline"]
    summary = [f for f in r.findings if f.code == "PG159" and f.key != "sandbox"]
    assert [f.severity for f in summary] == [Severity.INFO], [f.message for f in summary]
    ev = "\n".join(summary[0].evidence)
    assert "eval_val_sliding (headline)" in ev and "positions compared" in ev and "targets counted" in ev
    assert "eval_val_sliding called: eval_val_sliding" in ev  # the submission's functions the run called
    assert "CPU stub:" in ev
    assert not [f for f in r.findings if f.severity == Severity.WARNING]


def test_a_violation_off_the_headline_is_reported_apart(tmp_path, tok_cache):
    """A leak in an evaluation the logs' headline does not come from is a warning naming the headline's."""
    from auditor.probes.runner import probe_record

    leaky_other = BROKEN_HEADLINE.replace("def eval_val_plain(args, model, val_tokens):",
                                          "def eval_val_plain(args, model, val_tokens):\n"
                                          "    val_tokens = val_tokens.flip(0)  # reads the stream backwards")
    src = _generic_with_headline(broken=False).replace(HEADLINE_MAIN, leaky_other + HEADLINE_MAIN)
    r = probe_record(_record(tmp_path, src), timeout_s=120, tokenizer_cache=tok_cache)
    other = [f for f in r.findings if f.message.startswith("eval_val_plain") and f.code in ("PG150", "PG151")]
    assert other and all(f.severity == Severity.WARNING and "another evaluation" in f.message for f in other), \
        [(f.code, f.severity.value, f.message) for f in r.findings]
    assert not [f for f in r.findings if f.severity == Severity.ILLEGAL]
