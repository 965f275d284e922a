"""Reference stack, evaluation side: window plans, the ledger, every legal TTT path.

The C1 probe used throughout: change the token at position j and re-run the whole
evaluation (adaptation included); the NLL of every position before j must be
bit-identical, because nothing scored before j may depend on token j.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("sentencepiece")

from reference_impl import ttt  # noqa: E402
from reference_impl.config import Config  # noqa: E402
from reference_impl.evaluate import evaluate, plan_windows  # noqa: E402
from reference_impl.ledger import ScoreLedger, ScoreLedgerError  # noqa: E402
from tests.conftest import flip  # noqa: E402

N_VAL = 1200


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(toy_eval):
    cfg, model, _, tables, val = toy_eval(N_VAL, TTT_CHUNK_TOKENS=256, TTT_LR=0.05, LORA_LR=0.05, SLOT_LR=0.1)
    return cfg, model, tables, val


PATHS = {
    "canonical": lambda m, v, t, c: evaluate(m, v, t, c.eval_seq_len, 0, c.eval_batch_seqs, keep_nll=True),
    "sliding": lambda m, v, t, c: evaluate(m, v, t, c.eval_seq_len, c.eval_stride, c.eval_batch_seqs, keep_nll=True),
    "chunk_ttt": lambda m, v, t, c: ttt.eval_chunk_ttt(m, v, t, c, keep_nll=True),
    "lora_ttt": lambda m, v, t, c: ttt.eval_lora_ttt(m, v, t, c, keep_nll=True),
    "slot": lambda m, v, t, c: ttt.eval_slot(m, v, t, c, keep_nll=True),
    "ngram_tilt": lambda m, v, t, c: ttt.eval_ngram_tilt(m, v, t, c, keep_nll=True),
}


@pytest.mark.parametrize("n,seq,stride", [(10, 4, 0), (10, 4, 2), (11, 4, 3), (5, 8, 2), (2, 4, 0), (1000, 64, 7),
                                          (1000, 64, 64), (129, 64, 32)])
def test_window_plan_scores_every_target_once(n, seq, stride):
    counts = np.zeros(n, dtype=int)
    for s, e, first in plan_windows(n, seq, stride):
        assert 0 <= s < first <= e + 0 and e - s <= seq and first >= s + 1
        counts[first : e + 1] += 1
    assert counts[0] == 0 and (counts[1:] == 1).all()


def test_ledger_refuses_double_scoring_and_updates_on_unscored_tokens():
    led = ScoreLedger(10)
    led.score([1, 2, 3], [0.1, 0.2, 0.3], [1, 1, 1])
    led.check_update([0, 1, 2, 3])
    with pytest.raises(ScoreLedgerError, match="twice"):
        led.score([3, 4], [0.1, 0.1], [1, 1])
    with pytest.raises(ScoreLedgerError, match="twice"):
        led.score([5, 5], [0.1, 0.1], [1, 1])
    with pytest.raises(ScoreLedgerError, match="unscored"):
        led.check_update([2, 3, 4])
    with pytest.raises(ScoreLedgerError, match="never scored"):
        led.finalize()
    led.score(list(range(4, 10)), [0.5] * 6, [2] * 6)
    res = led.finalize()
    assert res["tokens"] == 9 and res["bytes"] == 15
    assert res["val_bpb"] == pytest.approx((0.6 + 3.0) / math.log(2) / 15)


@pytest.mark.parametrize("name", list(PATHS))
def test_every_path_scores_every_token_once_and_is_causal(setup, name):
    cfg, model, tables, val = setup
    res, led = PATHS[name](model, val, tables, cfg)
    assert res["tokens"] == N_VAL - 1
    assert led.scored[1:].all() and not np.isnan(led.nll[1:]).any()
    j = 700
    _, led2 = PATHS[name](model, flip(val, j, cfg), tables, cfg)
    assert np.array_equal(led.nll[1:j], led2.nll[1:j]), name
    assert not np.array_equal(led.nll[j:], led2.nll[j:])


def test_adaptation_changes_scores_after_the_first_chunk_only(setup):
    """Score-first: the first chunk is scored by the unadapted model; later chunks differ."""
    cfg, model, tables, val = setup
    _, base = PATHS["sliding"](model, val, tables, cfg)
    _, adapted = PATHS["chunk_ttt"](model, val, tables, cfg)
    first_chunk_end = ttt.group_windows(plan_windows(N_VAL, cfg.eval_seq_len, cfg.eval_stride),
                                        cfg.ttt_chunk_tokens)[0][-1][1]
    assert np.allclose(base.nll[1 : first_chunk_end + 1], adapted.nll[1 : first_chunk_end + 1], atol=1e-5)
    assert not np.allclose(base.nll[first_chunk_end + 1 :], adapted.nll[first_chunk_end + 1 :], atol=1e-5)
    for name in ("lora_ttt", "slot", "ngram_tilt"):
        _, other = PATHS[name](model, val, tables, cfg)
        assert not np.allclose(base.nll[1:], other.nll[1:], atol=1e-5), name


def test_training_before_scoring_is_refused_by_the_ledger(setup):
    """An injected illegal update (train on a chunk nobody scored yet) raises."""
    cfg, model, tables, val = setup
    led = ScoreLedger(val.numel())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(ScoreLedgerError, match="unscored"):
        ttt._train_range(model, opt, val, 1, 200, cfg, led, 0, 1, torch.device("cpu"))


def test_lora_adapter_resets_between_documents(setup):
    cfg, model, tables, val = setup
    spans = ttt.doc_spans(val, cfg.bos_id)
    assert spans[0][0] == 0 and all(val[s] == cfg.bos_id for s, _ in spans)
    assert all(e == s2 for (_, e), (s2, _) in zip(spans, spans[1:]))  # last target = next BOS
    # a document's scores do not depend on the previous document: alter doc 0, doc 2 is unchanged
    _, led = PATHS["lora_ttt"](model, val, tables, cfg)
    altered = val.clone()
    s0, e0 = spans[0]
    altered[s0 + 1 : e0] = (altered[s0 + 1 : e0] + 3) % cfg.vocab_size
    altered[s0 + 1 : e0][altered[s0 + 1 : e0] == cfg.bos_id] = 4
    _, led2 = PATHS["lora_ttt"](model, altered, tables, cfg)
    s2, e2 = spans[2]
    assert np.array_equal(led.nll[s2 + 1 : e2 + 1], led2.nll[s2 + 1 : e2 + 1])


def test_ngram_tilt_is_a_normalised_distribution():
    torch.manual_seed(0)
    logp = torch.log_softmax(torch.randn(50), -1)
    for hint in (None, 0, 17):
        tilted = ttt.tilt_logprobs(logp.clone(), hint, 0.7)
        assert tilted.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    hint = ttt.NgramHint(3)
    for tok in (5, 6, 5):
        hint.update((1, 2), tok)
    assert hint.hint((1, 2)) == 5 and hint.hint((2, 1)) is None


_RANK_SCRIPT = """
import json, sys
import torch
import torch.distributed as dist
from reference_impl import ttt
from reference_impl.config import Config
from reference_impl.model import GPT
from reference_impl.train import init_process_group

rank, blob_path, init = int(sys.argv[1]), sys.argv[2], sys.argv[3]
init_process_group("gloo", init_method=init, rank=rank, world_size=2)
blob = torch.load(blob_path)
cfg = Config.from_env(blob["env"])
model = GPT(cfg)
model.load_state_dict(blob["sd"])
res, _ = ttt.eval_lora_ttt(model.eval(), blob["val"], blob["tables"], cfg, rank, 2)
if rank == 0:
    print(json.dumps(res), flush=True)
dist.barrier()  # both ranks done before either tears its pairs down
dist.destroy_process_group()  # the reference's init leaves no gloo thread to race shutdown
"""


def test_lora_ttt_on_two_ranks_equals_one_rank(setup, tmp_path):
    """Rank 1's first document starts at a BOS that rank 0 scores; its updates may read it (grant_prefix)."""
    cfg, model, tables, val = setup
    env = {"CONFIG": "toy", "EVAL_SEQ_LEN": "64", "LORA_LR": "0.05", "LORA_CHUNK_TOKENS": "8"}
    cfg8 = Config.from_env(env)
    blob = tmp_path / "blob.pt"
    torch.save({"env": env, "sd": model.state_dict(), "val": val, "tables": tables}, blob)
    init = (tmp_path / "store").as_uri()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo)
    procs = [subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT, str(r), str(blob), init], env=child_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in reversed(list(zip(procs, outs))):  # rank 1 first: a crash there closes rank 0's pair
        assert p.returncode == 0, err[-3000:]
    two = json.loads(outs[0][0].strip().splitlines()[-1])
    one, _ = ttt.eval_lora_ttt(model, val, tables, cfg8)
    assert two["tokens"] == one["tokens"] == N_VAL - 1 and two["bytes"] == one["bytes"]
    assert two["nll_sum"] == pytest.approx(one["nll_sum"], rel=1e-9)
