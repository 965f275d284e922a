"""Reference stack, model side: causality, BOS isolation, init, optimizers, quantization."""

from __future__ import annotations

import pytest
import torch

from reference_impl.compress import available_codecs, compress, decompress
from reference_impl.config import Config
from reference_impl.model import GPT, BigramHash, SmearGate, layer_order
from reference_impl.optim import EMA, SWA, Muon, build_optimizers, lr_scale, newton_schulz
from reference_impl.quant import (
    collect_calibration,
    dequantize_state,
    deserialize,
    gptq_rows,
    quantize_rows,
    quantize_state,
    serialize,
)

FULL = {"CONFIG": "toy", "VOCAB_SIZE": "96", "RECUR_LAYERS": "1", "ROPE_DIMS": "8", "XSA_LAST_N": "2",
        "TIE_EMBEDDINGS": "1"}


def _model(**over) -> GPT:
    torch.manual_seed(0)
    env = dict(FULL)
    env.update({k.upper(): str(v) for k, v in over.items()})
    return GPT(Config.from_env(env)).eval()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("over", [{}, {"activation": "relu2", "tie_embeddings": 0}, {"smear": 0, "bigram_buckets": 0}])
def test_logits_at_t_do_not_depend_on_later_tokens(over):
    model = _model(**over)
    with torch.no_grad():  # make every switchable piece non-trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ids = torch.randint(0, 96, (2, 40))
    ids[0, 10] = 1  # a BOS inside the row
    base = model.forward_logits(ids)
    for t in (0, 5, 10, 25, 38):
        changed = ids.clone()
        changed[:, t + 1 :] = torch.randint(0, 96, changed[:, t + 1 :].shape)
        out = model.forward_logits(changed)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5), t
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])  # the check can fail


def test_smeargate_and_bigram_do_not_cross_bos():
    """Whatever precedes a BOS, the mixed embeddings at and after the BOS are unchanged."""
    torch.manual_seed(0)
    smear, bigram = SmearGate(16, bos_id=1), BigramHash(64, 8, 16, bos_id=1)
    with torch.no_grad():
        smear.gate.fill_(0.0)
        bigram.proj.weight.normal_()
    emb = torch.nn.Embedding(50, 16)
    a = torch.tensor([[7, 8, 9, 1, 4, 5, 6]])
    b = torch.tensor([[30, 31, 32, 1, 4, 5, 6]])
    for f in (lambda ids: smear(emb(ids), ids), bigram):
        ya, yb = f(a), f(b)
        assert torch.allclose(ya[:, 3:], yb[:, 3:])
        assert not torch.allclose(ya[:, 1:3], yb[:, 1:3])  # it does mix inside a document
    # a BOS at the row start gets nothing from anywhere
    assert torch.allclose(smear(emb(a), a)[:, 0], emb(a)[:, 0])


def test_packed_documents_are_isolated_with_the_bos_mask():
    """Two documents in one row with document-isolated attention: the second never sees the first."""
    model = _model()
    with torch.no_grad():
        model.smear.gate.fill_(3.0)  # a strong smear: any leak would show
    a = torch.tensor([[1, 20, 21, 22, 23, 1, 40, 41, 42, 43, 44]])
    b = a.clone()
    b[0, 1:5] = torch.tensor([60, 61, 62, 63])
    la, lb = model.forward_logits(a, isolate_docs=True), model.forward_logits(b, isolate_docs=True)
    assert torch.allclose(la[:, 5:], lb[:, 5:], atol=1e-5)
    assert not torch.allclose(la[:, 1:5], lb[:, 1:5])
    plain_a, plain_b = model.forward_logits(a), model.forward_logits(b)  # without isolation it does leak
    assert not torch.allclose(plain_a[:, 5:], plain_b[:, 5:], atol=1e-5)
    alone = model.forward_logits(a[:, 5:])
    assert torch.allclose(la[:, 5:], alone, atol=1e-5)


def test_unet_order_and_orthogonal_init():
    assert layer_order(4, [1]) == [0, 1, 1, 2, 3]
    assert layer_order(5, [2, 3]) == [0, 1, 2, 3, 2, 3, 4]
    model = _model()
    assert model.n_skip == len(model.order) // 2
    w = model.blocks[0].attn.q.weight
    assert torch.allclose(w @ w.T, torch.eye(w.size(0)), atol=1e-4)
    assert model.blocks[0].attn.rotary.rope_dims == 8 and model.blocks[-1].attn.xsa


def test_nll_is_cross_entropy_of_forward_logits():
    model = _model()
    ids = torch.randint(0, 96, (2, 16))
    tgt = torch.randint(0, 96, (2, 16))
    logits = model.forward_logits(ids)
    assert logits.abs().max() <= model.cfg.logit_softcap
    ref = torch.nn.functional.cross_entropy(logits.view(-1, 96), tgt.view(-1), reduction="none").view(2, 16)
    assert torch.allclose(model.nll(ids, tgt), ref)


def test_newton_schulz_orthogonalises():
    g = torch.randn(32, 64)
    s = torch.linalg.svdvals(newton_schulz(g, 5))
    assert s.min() > 0.5 and s.max() < 1.3
    s_tall = torch.linalg.svdvals(newton_schulz(g.T.contiguous(), 5))
    assert s_tall.min() > 0.5 and s_tall.max() < 1.3


def test_optimizers_cover_every_parameter_and_reduce_loss():
    model = _model()
    model.train()
    cfg = model.cfg
    opts = build_optimizers(model, cfg)
    owned = [p for o in opts for g in o.param_groups for p in g["params"]]
    assert len(owned) == len(list(model.parameters())) == len({id(p) for p in owned})
    assert any(isinstance(o, Muon) for o in opts)
    torch.manual_seed(1)
    x = torch.randint(0, 96, (4, 32))
    y = torch.roll(x, -1, 1)
    first = None
    ema = EMA(model, 0.5)
    for _ in range(15):
        loss = model(x, y)
        first = first if first is not None else loss.item()
        loss.backward()
        for o in opts:
            o.step()
        model.zero_grad(set_to_none=True)
        ema.update(model)
    assert model(x, y).item() < first * 0.7
    swa = SWA()
    swa.add(model)
    swa.add(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    swa.copy_to(model)
    assert all(torch.allclose(before[k], v, atol=1e-6) for k, v in model.state_dict().items())
    ema.copy_to(model)
    assert not torch.allclose(before["blocks.0.attn.q.weight"], model.state_dict()["blocks.0.attn.q.weight"])


def test_lr_schedule_warmup_flat_warmdown_and_wallclock():
    cfg = Config(iterations=100, warmup_steps=10, warmdown_frac=0.2, max_wallclock_seconds=0)
    assert lr_scale(0, 0, cfg) == pytest.approx(0.1)
    assert lr_scale(50, 0, cfg) == 1.0
    assert lr_scale(90, 0, cfg) == pytest.approx(0.5)
    capped = Config(iterations=10**6, warmup_steps=0, warmdown_frac=0.5, max_wallclock_seconds=110,
                    gptq_reserve_seconds=10)
    assert lr_scale(10, 75.0, capped) == pytest.approx(0.5)  # driven by time, not steps


@pytest.mark.parametrize("bits", [8, 6, 5])
def test_quantize_rows_roundtrip_error_bounded(bits):
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    q, s = quantize_rows(w, bits, clip_search=False)
    err = (q.float() * s.float()[:, None] - w).abs()
    assert (err <= s.float()[:, None] / 2 + 1e-6).all()  # no clipping: half a step at most
    q2, s2 = quantize_rows(w, bits, clip_search=True)
    mse = lambda q_, s_: ((q_.float() * s_.float()[:, None] - w) ** 2).mean()  # noqa: E731
    assert mse(q2, s2) <= mse(q, s) + 1e-9
    assert mse(q2, s2) / w.var() < {8: 1e-4, 6: 2e-3, 5: 8e-3}[bits]
    assert q2.abs().max() <= {8: 127, 6: 31, 5: 15}[bits]


def test_calibrated_clip_search_lowers_weighted_error():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    cw = torch.rand(64) ** 4 * 100
    werr = lambda q, s: (((q.float() * s.float()[:, None] - w) ** 2) * cw).sum()  # noqa: E731
    assert werr(*quantize_rows(w, 5, True, cw)) <= werr(*quantize_rows(w, 5, True, None))


def test_gptq_keeps_layer_outputs_closer_than_rounding():
    """On correlated inputs, GPTQ's error feedback lowers the output error ||X (W - W_q)^T||."""
    torch.manual_seed(0)
    X = torch.randn(2048, 16) @ torch.randn(16, 64) + 0.1 * torch.randn(2048, 64)
    H = X.T @ X / X.size(0)
    w = torch.randn(48, 64)
    out_err = lambda q, s: ((X @ (w - q.float() * s.float()[:, None]).T) ** 2).mean().item()  # noqa: E731
    for bits in (6, 5):
        q_r, s_r = quantize_rows(w, bits, True, torch.diagonal(H))
        q_g, s_g = gptq_rows(w, bits, H, True)
        assert torch.equal(s_r, s_g) and q_g.abs().max() <= {6: 31, 5: 15}[bits]
        assert out_err(q_g, s_g) < 0.7 * out_err(q_r, s_r), bits


@pytest.mark.parametrize("method", ["gptq", "clip"])
def test_state_quantization_classes_and_roundtrip(method):
    model = _model(quant_method=method)
    cfg = model.cfg
    batches = [(torch.randint(0, 96, (2, 16)), None)]
    calib = collect_calibration(model, batches)
    assert "blocks.0.mlp.fc.weight" in calib and calib["blocks.0.mlp.fc.weight"].shape == (64, 64)
    assert calib["blocks.0.mlp.proj.weight"].shape == (128, 128)
    qsd = quantize_state(model.state_dict(), cfg, calib)
    kinds = {k: (v["kind"], v.get("bits")) for k, v in qsd.items()}
    assert kinds["blocks.0.mlp.fc.weight"] == ("int", 6)
    assert kinds["tok_emb.weight"] == ("int", 8)
    assert kinds["blocks.0.attn_scale"] == ("float", None)
    for codec in available_codecs():
        blob = compress(serialize(qsd), codec)
        sd = dequantize_state(deserialize(decompress(blob, codec)))
        fresh = GPT(cfg)
        fresh.load_state_dict(sd)
        ids = torch.randint(0, 96, (1, 32))
        a, b = model.forward_logits(ids), fresh.eval().forward_logits(ids)
        assert (a - b).abs().max() < 0.5 and (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.8
    assert "zstd" in available_codecs() and "brotli" in available_codecs()
