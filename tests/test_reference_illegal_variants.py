"""The illegal variants really break what they claim to break, and the reference does not.

Dynamic evidence per variant (C1 flip probe, C2 sum, byte count); if the static
rule engine is importable, each variant's source is also linted and must be
flagged by some illegal finding, while nothing in the legal reference package is
flagged illegal.
"""

from __future__ import annotations

import importlib
import inspect
import os

import pytest
import torch

pytest.importorskip("sentencepiece")

from reference_impl.bytes import count_bytes  # noqa: E402
from reference_impl.evaluate import evaluate  # noqa: E402
from tests.conftest import flip  # noqa: E402
from tests.illegal_variants import VARIANTS  # noqa: E402
from tests.illegal_variants import multi_epoch_rescoring as multi_epoch  # noqa: E402
from tests.illegal_variants import pre_eval_ttt, scored_region_slot, space_double_counted  # noqa: E402
from tests.illegal_variants import target_keyed_ngram, unmasked_smear_sorted  # noqa: E402

N_VAL = 600
J = 300  # the flipped position


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(toy_eval):
    return toy_eval(N_VAL, TTT_LR=0.05)


def test_every_variant_is_a_documented_module():
    for name, variant in VARIANTS.items():
        mod = importlib.import_module(f"tests.illegal_variants.{name}")
        assert mod.__doc__ and "Expected rule" in mod.__doc__
        assert f"({variant.rule})" in " ".join(mod.__doc__.split()), (name, variant.rule)  # the table's rule
        assert "# ILLEGAL:" in inspect.getsource(mod)


def test_multi_epoch_rescoring_scores_depend_on_later_tokens(setup):
    cfg, model, _, tables, val = setup
    nll_sum, _, a = multi_epoch.eval_multi_epoch_ttt(model, val, tables, cfg)
    _, _, b = multi_epoch.eval_multi_epoch_ttt(model, flip(val, J, cfg), tables, cfg)
    chunk_start = (J - 1) // cfg.eval_seq_len * cfg.eval_seq_len
    assert not torch.equal(a[chunk_start + 1 : J], b[chunk_start + 1 : J])  # earlier positions moved: C1/C3
    legal, _ = evaluate(model, val, tables, cfg.eval_seq_len, 0, 4)
    assert nll_sum / (N_VAL - 1) < legal["val_loss"]  # and it pays


def test_pre_eval_ttt_is_off_by_default_and_leaks_when_on(setup):
    cfg, model, _, tables, val = setup
    assert pre_eval_ttt.PRE_EVAL_TTT is False
    off, _ = pre_eval_ttt.adapt_then_evaluate(model, val, tables, cfg)
    ref, _ = evaluate(model, val, tables, cfg.eval_seq_len, 0, cfg.eval_batch_seqs)
    assert off["val_bpb"] == pytest.approx(ref["val_bpb"], abs=1e-9)
    on, led = pre_eval_ttt.adapt_then_evaluate(model, val, tables, cfg, force=True)
    _, led2 = pre_eval_ttt.adapt_then_evaluate(model, flip(val, J, cfg), tables, cfg, force=True)
    assert on["val_bpb"] < off["val_bpb"]
    assert not (led.nll[1:J] == led2.nll[1:J]).all()


def test_target_keyed_cache_is_not_a_distribution(setup):
    cfg, model, _, _, val = setup
    _, _, cache = target_keyed_ngram.eval_target_keyed(model, val, cfg)
    toks = val.tolist()
    ctx = tuple(toks[J - 2 : J])
    with torch.no_grad():
        logp = torch.log_softmax(model.forward_logits(val[J - 40 : J][None])[0, -1], -1)
    total = sum(target_keyed_ngram.blended_prob(logp, cache, ctx, a) for a in range(cfg.vocab_size))
    assert total > 1.05  # C2: summed over candidates, the "probabilities" exceed 1
    from reference_impl.ttt import tilt_logprobs  # the legal form sums to 1 for any hint

    assert tilt_logprobs(logp.clone(), int(logp.argmax()), 0.5).exp().sum().item() == pytest.approx(1, abs=1e-5)


def test_scored_region_slot_moves_other_scored_positions(setup):
    cfg, model, _, _, val = setup
    a = scored_region_slot.eval_scored_region_slot(model, val, cfg)
    b = scored_region_slot.eval_scored_region_slot(model, flip(val, J, cfg), cfg)
    assert not torch.equal(a[1:J], b[1:J])
    from reference_impl import ttt  # the reference context-only SLOT passes the same probe

    _, la = ttt.eval_slot(model, val, setup[3], cfg, keep_nll=True)
    _, lb = ttt.eval_slot(model, flip(val, J, cfg), setup[3], cfg, keep_nll=True)
    assert (la.nll[1:J] == lb.nll[1:J]).all()


def test_unmasked_smear_leaks_across_sorted_documents(setup):
    cfg, model, _, _, val = setup
    with torch.no_grad():
        model.smear.gate.fill_(2.0)
    try:
        legal, index = unmasked_smear_sorted.doc_nll_sorted_batch(model, val, cfg.bos_id, unmasked=False)
        illegal, _ = unmasked_smear_sorted.doc_nll_sorted_batch(model, val, cfg.bos_id, unmasked=True)
        k = len(index) // 2
        (prev_start, _, prev_len), (doc_start, _, _) = index[k - 1], index[k]
        altered = val.clone()
        last = prev_start + prev_len - 1  # the last token of the document packed just before
        altered[last] = (altered[last] + 3) % cfg.vocab_size
        if altered[last] == cfg.bos_id:
            altered[last] = 4
        legal2, _ = unmasked_smear_sorted.doc_nll_sorted_batch(model, altered, cfg.bos_id, unmasked=False)
        illegal2, _ = unmasked_smear_sorted.doc_nll_sorted_batch(model, altered, cfg.bos_id, unmasked=True)
        assert torch.allclose(legal[doc_start], legal2[doc_start], atol=1e-6)
        assert not torch.allclose(illegal[doc_start], illegal2[doc_start], atol=1e-6)
    finally:
        with torch.no_grad():
            model.smear.gate.fill_(-2.0)


def test_double_counted_space_inflates_bytes(setup):
    cfg, _, sp, tables, val = setup
    bad = space_double_counted.build_byte_tables_double_space(sp, cfg.vocab_size)
    good_bytes = int(count_bytes(val[:-1], val[1:], tables).sum())
    bad_bytes = int(space_double_counted.count_bytes(val[:-1], val[1:], bad).sum())
    words = int(tables[1][val[1:]].sum())  # tokens with a leading space
    assert bad_bytes > good_bytes and bad_bytes - good_bytes == words
    assert bad_bytes / good_bytes > 1.1


def _lint(name: str, env: dict):
    rules = pytest.importorskip("rules")
    path = os.path.join(os.path.dirname(__file__), "illegal_variants", f"{name}.py")
    with open(path, encoding="utf-8") as f:
        return rules.lint_source(f.read(), file=path, config=rules.LintConfig(env=env))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_static_rules_flag_each_variant(name):
    code, env = VARIANTS[name].rule, VARIANTS[name].env
    findings = _lint(name, env)
    hits = [f for f in findings if f.code == code]
    assert hits, f"{code} did not fire on {name}: {[(f.code, f.severity) for f in findings]}"
    assert any(str(getattr(f.severity, "value", f.severity)) == "illegal" for f in hits), hits
