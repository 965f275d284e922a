"""Engine behaviour: effective configuration, env override, evidence upgrade,
layers, parse errors, catalog."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
import pytest

from rules.core import Severity
from rules import ALL_RULES, LintConfig, get_rule, lint, lint_source, render_catalog, render_rule
from rules.facts import UNKNOWN, Facts

FIX = Path(__file__).parent / "fixtures" / "rules"
GATED = (FIX / "gated_ngram.py").read_text()


def _facts(src: str, env=None) -> Facts:
    return Facts(cst.parse_module(src), src, env=env)


def _by_code(findings, code):
    return [f for f in findings if f.code == code]


# ---------------------------------------------------------------- configuration

def test_effective_config_reads_env_defaults_in_class_module_and_argparse():
    src = '''
import os, argparse
class Hyperparameters:
    order = int(os.environ.get("NGRAM_ORDER", "0"))
    lr = float(os.environ.get("LR", "3e-4"))
    slot = os.environ.get("SLOT_ENABLED", "1") == "1"
    seq_len = 1024
USE_TILT = bool(int(os.getenv("USE_TILT", "1")))
p = argparse.ArgumentParser()
p.add_argument("--ttt-epochs", type=int, default=0)
'''
    f = _facts(src)
    assert f.config_value("order") == 0
    assert f.config_value("lr") == 3e-4
    assert f.config_value("slot") is True
    assert f.config_value("seq_len") == 1024
    assert f.config_value("USE_TILT") is True
    assert f.config_value("ttt_epochs") == 0
    assert f.config["order"].env_key == "NGRAM_ORDER" and f.config["order"].line == 4
    f2 = _facts(src, env={"NGRAM_ORDER": "7", "SLOT_ENABLED": "0", "TTT_EPOCHS": "3"})
    assert f2.config_value("order") == 7
    assert f2.config_value("slot") is False
    assert f2.config_value("ttt_epochs") == 3


def test_unknown_env_read_without_default_is_unknown():
    f = _facts('import os\nclass Hyperparameters:\n    x = int(os.environ["X"])\n')
    assert f.config_value("x") is UNKNOWN


def test_gates_and_local_aliases_decide_reachability():
    src = '''
import os
class Hyperparameters:
    order = int(os.environ.get("ORDER", "0"))
def helper():
    pass
def other():
    pass
def main():
    args = Hyperparameters()
    use = args.order > 0
    if use:
        helper()
    if not use:
        return
    other()
if __name__ == "__main__":
    main()
'''
    f = _facts(src)
    by = {fi.name: fi for fi in f.funcs}
    assert f._func_reach[by["main"]].reachable
    r = f._func_reach[by["helper"]]
    assert not r.reachable and r.switches and r.switches[0].vars[0].name == "order"
    # early exit guard: `if not use: return` switches off what follows
    assert not f._func_reach[by["other"]].reachable
    f2 = _facts(src, env={"ORDER": "2"})
    by2 = {fi.name: fi for fi in f2.funcs}
    assert f2._func_reach[by2["helper"]].reachable and f2._func_reach[by2["other"]].reachable


def test_val_flow_through_args_slices_and_returns():
    src = '''
def load_validation_tokens(pattern):
    return read(pattern)
def prep(t):
    return t[:1000].to("cuda")
def work(tokens):
    x = tokens[0:10]
    y = x + 1
    return y
def main(args):
    stream = load_validation_tokens(args.val_files)
    w = prep(stream)
    work(w)
    other = [1, 2, 3]
'''
    f = _facts(src)
    by = {fi.name: fi for fi in f.funcs}
    assert f.tainted("stream", by["main"])
    assert f.tainted("w", by["main"])
    assert f.tainted("y", by["work"])
    assert not f.tainted("other", by["main"])


def test_taint_follows_what_a_local_function_returns_or_yields_not_its_arguments():
    src = '''
def batches(tokens, n):
    for i in range(0, len(tokens), n):
        yield tokens[i:i + n]

def fit(model, val_data):
    score(model, val_data)
    return model

def main(model, val_tokens):
    for chunk in batches(val_tokens, 64):
        pass
    trained = fit(model, val_tokens)
    stats = summary(model, val_tokens)
'''
    f = _facts(src)
    main = f.funcs_by_name["main"][0]
    assert f.tainted("chunk", main, 12)       # yielded from the validation tokens
    assert not f.tainted("trained", main, 14)  # the model handed back, not the data
    assert f.tainted("stats", main, 15)        # an unknown callee: its arguments flow


def test_a_method_call_is_not_the_file_function_of_the_same_name():
    src = '''
import sentencepiece as spm
def train(model, opt, loader):
    for x, y in loader:
        model(x, y).backward()
        opt.step()
def make_tokenizer(docs):
    spm.SentencePieceTrainer.train(sentence_iterator=iter(docs), model_prefix="tok")
def main(model, opt, loader, docs):
    make_tokenizer(docs)
    train(model, opt, loader)
'''
    f = _facts(src)
    by = {fi.name: fi for fi in f.funcs}
    assert "step" not in f.func_kinds[by["make_tokenizer"]]
    assert "step" in f.func_kinds[by["main"]]
    spm_call, train_call = (next(ci for ci in f.calls if ci.attr == "train" and ci.ctx.func is by[n])
                            for n in ("make_tokenizer", "main"))
    assert f.callees(spm_call) == [] and f.callees(train_call) == [by["train"]]


def test_taint_through_a_loop_cycle_does_not_depend_on_query_order():
    # a@6 reads the loop's back edges: `a = b` (b from a, a cycle) and `a = val_tokens[i]`.
    # Answering a@6 meets b@7 while a@6 is still open; a provisional "clean" for b@7 must
    # not be kept for a later query (CI once saw PG201 vanish this way: order came from
    # set iteration, which varies between processes).
    src = '''
def f(val_tokens, n):
    a = 0
    b = 0
    for i in range(n):
        b = a
        a = b
        a = val_tokens[i]
    return a
'''
    first, second = _facts(src), _facts(src)
    f1, f2 = first.funcs[0], second.funcs[0]
    assert first.tainted("a", f1, 6) and first.tainted("b", f1, 7)
    assert second.tainted("b", f2, 7) and second.tainted("a", f2, 6)


# ---------------------------------------------------------------- reachability + evidence

def test_switched_off_path_is_at_most_a_warning_naming_the_switch():
    fs = lint_source(GATED, file="train_gpt.py")
    ng = _by_code(fs, "PG101")
    assert ng and all(f.severity == Severity.WARNING for f in ng)
    assert "NGRAM_EVAL_ORDER" in " ".join(ng[0].evidence)
    assert "default '0'" in " ".join(ng[0].evidence)
    ttt = _by_code(fs, "PG201")
    assert ttt and ttt[0].severity == Severity.WARNING
    assert "PRE_EVAL_TTT" in " ".join(ttt[0].evidence)


def test_env_override_makes_it_illegal():
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(env={"NGRAM_EVAL_ORDER": "5"}))
    ng = _by_code(fs, "PG101")
    assert ng and ng[0].severity == Severity.ILLEGAL
    assert any("NGRAM_EVAL_ORDER=5" in e for e in ng[0].evidence)
    # the other switch is untouched
    assert _by_code(fs, "PG201")[0].severity == Severity.WARNING


def test_log_label_of_the_path_upgrades_and_is_cited():
    ev = [("seed1337.log", 412, "ngram_eval_exact val_loss:2.0132 val_bpb:1.0190")]
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=ev))
    ng = _by_code(fs, "PG101")[0]
    assert ng.severity == Severity.ILLEGAL
    assert any(e.startswith("seed1337.log:412:") for e in ng.evidence)


def test_readme_run_command_setting_the_switch_upgrades():
    ev = [("README.md", 30, "PRE_EVAL_TTT=1 TTT_EPOCHS=4 torchrun --standalone --nproc_per_node=8 train_gpt.py")]
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=ev))
    ttt = _by_code(fs, "PG201")[0]
    assert ttt.severity == Severity.ILLEGAL
    assert any("README.md:30" in e for e in ttt.evidence)
    assert _by_code(fs, "PG101")[0].severity == Severity.WARNING


def test_hyperparameter_dump_and_shared_labels_do_not_upgrade():
    ev = [("seed1.log", 3, "ngram_eval_order: 0"), ("seed1.log", 4, "pre_eval_ttt: False"),
          ("seed1.log", 90, "final_eval val_loss:2.3012")]
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=ev))
    assert all(f.severity == Severity.WARNING for f in fs if f.code in ("PG101", "PG201"))


# ---------------------------------------------------------------- layers and bad input

@dataclass
class _Layer:
    name: str
    text: str


@dataclass
class _Unit:
    name: str
    layers: list

    @property
    def effective_layers(self):
        return self.layers


def test_layer_names_propagate_to_locations():
    unit = _Unit("records/x/train_gpt.py", [
        _Layer("shipped", "import lzma, base64\nexec(lzma.decompress(base64.b85decode('xx')))\n"),
        _Layer("shipped>b85>lzma", GATED),
    ])
    fs = lint(unit, LintConfig(env={"NGRAM_EVAL_ORDER": "3"}))
    ng = _by_code(fs, "PG101")
    assert ng and ng[0].location.layer == "shipped>b85>lzma"
    assert ng[0].location.file == "records/x/train_gpt.py"
    assert ng[0].location.line_start == 23
    assert not [f for f in fs if f.location.layer == "shipped" and f.severity != Severity.INFO]


def test_syntax_error_layer_gives_one_info_finding_and_no_crash():
    unit = _Unit("t.py", [_Layer("shipped", "def broken(:\n  pass\n"), _Layer("shipped>b64", GATED)])
    fs = lint(unit)
    pe = _by_code(fs, "PG000")
    assert len(pe) == 1 and pe[0].severity == Severity.INFO
    assert pe[0].location.layer == "shipped" and "cannot parse" in pe[0].message
    assert _by_code(fs, "PG101")  # the other layer is still analysed


def test_garbage_inputs_never_raise():
    for text in ["", "\x00\x01", "(" * 5000, "x = 1\n" * 3, "\ufeffprint('hi')\n", "if True:\n\tpass\n  pass\n"]:
        out = lint_source(text, file="g.py")
        assert isinstance(out, list)


# ---------------------------------------------------------------- registry + catalog

def test_registry_and_catalog():
    codes = [r.code for r in ALL_RULES]
    assert codes == sorted(codes) and len(set(codes)) == len(codes)
    assert get_rule("PG101").slug == "ngram-target-in-key"
    assert get_rule("pg101") is get_rule("ngram-target-in-key")
    page = render_rule(get_rule("PG101"))
    assert page.startswith("# PG101 ngram-target-in-key")
    for h in ("## What it flags", "## Why: the ruling", "## Legal alternative", "## Known limits", "```python"):
        assert h in page
    cat = render_catalog()
    assert all(c in cat for c in codes)


def test_findings_have_stable_fingerprints_across_line_shifts():
    a = _by_code(lint_source(GATED, file="t.py"), "PG101")[0]
    b = _by_code(lint_source("\n\n" + GATED, file="t.py"), "PG101")[0]
    assert a.location.line_start + 2 == b.location.line_start
    assert a.fingerprint == b.fingerprint


def test_legal_record_shape_stays_quiet():
    """Score-first chunk TTT, sliding window, SmearGate without document isolation,
    periodic validation during training: no finding at all."""
    src = (FIX / "legal_record.py").read_text()
    fs = [f for f in lint_source(src, file="train_gpt.py") if f.severity != Severity.INFO]
    assert not fs, [(f.code, f.location, f.message) for f in fs]


# ---------------------------------------------------------------- README / submission.json text

def _sev(fs, code):
    return [f.severity for f in _by_code(fs, code)]


def test_readme_describing_the_technique_upgrades_and_cites_the_line():
    ev = [("README.md", 5, "# 1.0190 val_bpb"),
          ("README.md", 12, "The headline score uses pre-quant TTT: 4 epochs of AdamW before GPTQ.")]
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=ev))
    ttt = _by_code(fs, "PG201")[0]
    assert ttt.severity == Severity.ILLEGAL
    assert any(e.startswith("README.md:12:") and "pre-quant TTT" in e for e in ttt.evidence)
    assert "README.md:12 shows it ran" in ttt.message
    # the phrase belongs to PG201 only: the n-gram finding stays a warning
    assert _sev(fs, "PG101") == [Severity.WARNING]


def test_submission_json_technique_upgrades_the_ngram_finding():
    ev = [("records/x/submission.json", 7, '  "technique": "11L + hashed n-gram cache (order 5)",')]
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=ev))
    assert _sev(fs, "PG101") == [Severity.ILLEGAL]
    assert _sev(fs, "PG201") == [Severity.WARNING]


def test_text_saying_the_technique_is_off_does_not_upgrade():
    for line in ("Pre-quant TTT is disabled for this run.",
                 "The n-gram cache is not used (NGRAM_EVAL_ORDER stays 0).",
                 "- pre-quant TTT: off",
                 '  "ngram_cache": false,',
                 "We tried SLOT and an n-gram cache but removed both; neither is in the final score."):
        src = "submission.json" if line.lstrip().startswith('"') else "README.md"
        fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=[(src, 3, line)]))
        assert _sev(fs, "PG101") == [Severity.WARNING], line
        assert _sev(fs, "PG201") == [Severity.WARNING], line


def test_technique_text_in_a_log_is_not_readme_evidence():
    ev = [("seed1337.log", 40, "note: pre-quant TTT and n-gram cache are available via env flags")]
    fs = lint_source(GATED, file="train_gpt.py", config=LintConfig(evidence_lines=ev))
    assert _sev(fs, "PG101") == [Severity.WARNING] and _sev(fs, "PG201") == [Severity.WARNING]


def test_rules_with_techniques_declare_phrases():
    for code in ("PG101", "PG103", "PG104", "PG201"):
        assert get_rule(code).techniques, code


# ---------------------------------------------------------------- bad input

def _crashes(fs):
    return [f for f in fs if f.key in ("rule-crash", "analysis-error")]


def test_empty_tuple_assignment_does_not_crash_pg106():
    src = "EMPTY = ()\nx = ((val_tokens.numel() - 1) // 1024) * 1024\n"
    fs = lint_source(src, file="t.py")
    assert not _crashes(fs), [f.message for f in fs]


def test_huge_constant_arithmetic_is_unknown_not_computed():
    import time
    t0 = time.monotonic()
    for src in ("if 9**9**9 > 1:\n    x = 1\n", "N = 7 ** 10**8\nif N:\n    pass\n",
                "A = 10**4000\nB = A * A * A\nif B > 1:\n    pass\n",
                "S = 'x' * 10**12\nif S:\n    pass\n"):
        fs = lint_source(src, file="t.py")
        assert isinstance(fs, list) and not _crashes(fs)
    assert time.monotonic() - t0 < 20
    f = _facts("A = 2 ** 10\nB = 9 ** 9 ** 9\nC = 10 ** 4000 * 10 ** 4000\n")
    assert f.eval(f.module_defs["A"][0][1], None) == 1024
    assert f.eval(f.module_defs["B"][0][1], None) is UNKNOWN
    assert f.eval(f.module_defs["C"][0][1], None) is UNKNOWN


def test_leading_byte_order_mark_is_not_a_parse_error():
    plain = lint_source(GATED, file="t.py")
    assert _by_code(plain, "PG101")
    for text in ("\ufeff" + GATED,):
        fs = lint_source(text, file="t.py")
        assert not _by_code(fs, "PG000"), [f.message for f in fs]
        assert [(f.code, f.location.line_start) for f in fs] == [(f.code, f.location.line_start) for f in plain]
    unit = _Unit("t.py", [_Layer("shipped", b"\xef\xbb\xbf" + GATED.encode())])
    fs = lint(unit)
    assert not _by_code(fs, "PG000") and _by_code(fs, "PG101")


def test_fact_builder_or_reporting_failure_is_an_info_finding(monkeypatch):
    import rules.engine as engine
    from rules import Hit, Rule

    class _Boom(Exception):
        pass

    def broken_facts(*a, **k):
        raise _Boom("facts exploded")

    with monkeypatch.context() as m:
        m.setattr(engine, "Facts", broken_facts)
        fs = lint_source("x = 1\n", file="t.py")
    assert len(fs) == 1 and fs[0].code == "PG000" and fs[0].severity == Severity.INFO
    assert "facts exploded" in fs[0].message

    class _BadHit(Rule):
        code, slug = "PG999", "bad-hit"

        def check(self, facts):
            yield Hit(None, "broken", ctx=object())  # not a Ctx: reporting it fails
            yield Hit(None, "fine")

    fs = lint_source("x = 1\n", file="t.py", rules=[_BadHit])
    assert [f.severity for f in fs] == [Severity.INFO, Severity.ILLEGAL]
    assert "while reporting" in fs[0].message and fs[1].message == "fine"


@pytest.mark.parametrize("name, is_val", [
    ("val_tokens", True), ("x_val", True), ("tokens_val", True), ("validation_set", True), ("val", True),
    ("scale_val", False), ("max_val", False), ("clip_val", False),  # a value, not validation data
    ("val_loss", False), ("val_bpb", False),                        # a metric over it
])
def test_validation_names(name, is_val):
    from rules.facts import is_val_name
    assert is_val_name(name) is is_val


def test_a_payload_of_many_joined_string_pieces_is_analysed():
    # packers split a base85 payload into hundreds of implicitly joined literals: libcst
    # nests them one ConcatenatedString per piece, deeper than Python's default limit
    pieces = "\n".join(f"    'abcdefghij{i}'" for i in range(1200))
    src = f"_DATA = (\n{pieces}\n)\nexec(open('helpers.py').read())\n"
    before = sys.getrecursionlimit()
    findings = lint_source(src, file="train_gpt.py")
    assert not [f for f in findings if f.code == "PG000"]
    assert [f.code for f in findings if f.code == "PG302"] == ["PG302"]
    assert sys.getrecursionlimit() == before  # raised only while the facts are built



_ENV_READER = """
import os
def _env_flag(name, default):
    raw = os.environ.get(name)
    return default if raw is None else raw.strip() == "1"
class Cfg:
    rescore: bool = _env_flag("RESCORE_ALL", False)
    order = _env_flag("ORDER", 5)
"""


def test_a_local_env_reader_is_a_setting_with_its_default():
    f = Facts(cst.parse_module(_ENV_READER), _ENV_READER)
    assert (f.config["rescore"].env_key, f.config_value("rescore")) == ("RESCORE_ALL", False)
    on = Facts(cst.parse_module(_ENV_READER), _ENV_READER, env={"RESCORE_ALL": "1", "ORDER": "7"})
    assert on.config_value("rescore") is True
    assert on.config_value("order") == 7


def test_a_lint_leaves_its_tree_to_reference_counts_not_to_the_cyclic_collector():
    """The facts' caches refer back to the facts; a lint that left them so would leave
    the whole parsed tree for the cyclic collector, whose first pass after the lint
    walks every node (a tenth of the lint's time on the merged records)."""
    import gc

    lint_source(GATED, file="t.py")  # first use: imports and module-level caches
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert _by_code(lint_source(GATED, file="t.py"), "PG101")
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    assert not {"Module", "Facts", "Layout", "TargetValues"} & set(left), sorted(set(left))
    assert len(left) < 1000, len(left)
