"""The headline pipeline: main()'s steps that train on validation tokens after the weights
are loaded run before the evaluation they precede; the C1 selections for sliding-window tails
and multi-epoch last passes; the CPU stand-ins (inference_mode as no_grad). Scripts and arrays
are written for these tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rules.core import Severity
from tests import probe_scripts

torch = pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

PRE_EVAL = '''
def main():
    args = Hyperparameters()
    model = TinyGPT(args)
    model.load_state_dict(torch.load("final_model.pt"))
    val_tokens = torch.load("val.pt")
    if args.adapt_epochs > 0:  # adapt the trained model on the validation stream, then score it
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(args.adapt_epochs):
            x, y = val_tokens[:-1][None], val_tokens[1:][None]
            loss = F.cross_entropy(model(x)[0], y[0])
            opt.zero_grad()
            loss.backward()
            opt.step()
    base, space, boundary = build_sentencepiece_luts(None, args.vocab_size, "cpu")
    print(eval_val_sliding(args, model, val_tokens, base, space, boundary))


if __name__ == "__main__":
    main()
'''


def _script(adapt: int) -> str:
    head, _, _ = probe_scripts.GENERIC.partition("\ndef main():")
    head = head.replace('    leak_steps = int(os.environ.get("LEAK_STEPS", 0))',
                        '    leak_steps = int(os.environ.get("LEAK_STEPS", 0))\n'
                        f'    adapt_epochs = int(os.environ.get("ADAPT_EPOCHS", {adapt}))')
    return head + PRE_EVAL


@pytest.fixture(scope="module")
def tok_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("probe_tok_pipeline")


def _probe(tmp_path: Path, src: str, tok_cache):
    from auditor.probes.runner import probe_record

    path = tmp_path / "train_gpt.py"
    path.write_text(src)
    return probe_record(path, timeout_s=120, tokenizer_cache=tok_cache)


def test_pre_eval_adaptation_runs_before_the_evaluation_and_is_caught(tmp_path, tok_cache):
    r = _probe(tmp_path, _script(adapt=2), tok_cache)
    e = r.data["entries"][0]
    assert e["name"] == "eval_val_sliding" and e["pre_steps"]["function"] == "main", e
    a, b = e["pre_steps"]["lines"]
    assert b > a
    c1 = [f for f in r.findings if f.code == "PG150" and f.severity == Severity.ILLEGAL]
    assert c1 and "eval_val_sliding" in c1[0].message, [(f.code, f.severity.value, f.message) for f in r.findings]
    assert any(f"main() lines {a}-{b}" in ev for ev in c1[0].evidence)
    summary = next(f for f in r.findings if f.code == "PG159" and "probes ran on" in f.message)
    assert f"(after main() lines {a}-{b})" in summary.message


def test_pre_eval_step_switched_off_passes(tmp_path, tok_cache):
    """Same pipeline, the adaptation's own gate false: the steps run (and do nothing), C1 holds."""
    r = _probe(tmp_path, _script(adapt=0), tok_cache)
    e = r.data["entries"][0]
    assert e["pre_steps"] and e["c1"]["status"] == "pass", e
    assert not [f for f in r.findings if f.severity == Severity.ILLEGAL]


def test_inference_mode_runs_as_no_grad_and_a_later_backward_works():
    """A tensor made under inference_mode can be saved for a later backward (a SLOT shape)."""
    from auditor.probes.loader import _inference_as_no_grad

    im = _inference_as_no_grad()
    with im():
        h = torch.ones(3) * 2
        assert not torch.is_grad_enabled()
    delta = torch.zeros(3, requires_grad=True)
    ((h + delta) ** 2).sum().backward()
    assert delta.grad.tolist() == [4.0, 4.0, 4.0]

    @im
    def bare():
        return torch.is_grad_enabled()

    @im()
    def called():
        return torch.is_grad_enabled()

    assert bare() is False and called() is False and torch.is_grad_enabled()


def _elements(rows):
    """(call, positions, losses, grad) rows -> the element arrays run_entry builds."""
    from auditor.probes import probes

    calls, pos, loss, grad, col, sig = [], [], [], [], [], []
    sigs = {}
    for ci, (p, l, g) in enumerate(rows):
        sid = sigs.setdefault(tuple(p), len(sigs))
        calls.append(np.full(len(p), ci)), pos.append(np.asarray(p)), loss.append(np.asarray(l, dtype=float))
        grad.append(np.full(len(p), g)), col.append(np.arange(len(p))), sig.append(np.full(len(p), sid))
    el = {"call": np.concatenate(calls), "pos": np.concatenate(pos), "loss": np.concatenate(loss),
          "grad": np.concatenate(grad), "col": np.concatenate(col), "sig": np.concatenate(sig)}
    el["trained"] = el["grad"].copy()
    return probes, el


def test_maxctx_picks_the_scored_tail_of_overlapping_windows():
    probes, el = _elements([([1, 2, 3, 4], [1, 2, 3, 4], False), ([3, 4, 5, 6], [30, 40, 5, 6], False)])
    values, counts, total, n = probes.select(el, "maxctx-nograd", 7)
    assert values[3] == 3 and values[4] == 4 and values[5] == 5 and total == 21 and n == 6


def test_lastpass_picks_the_first_computation_of_the_final_epoch():
    # two epochs over two chunk windows that overlap: position 2 is scored in window 1, context in window 2
    w1, w2 = [1, 2], [1, 2, 3, 4]
    probes, el = _elements([(w1, [1, 2], True), (w2, [10, 20, 3, 4], True),
                            (w1, [0.1, 0.2], True), (w2, [0.5, 0.6, 0.3, 0.4], True)])
    values, _, total, n = probes.select(el, "lastpass-any", 5)
    assert values[1:5].tolist() == [0.1, 0.2, 0.3, 0.4] and n == 4 and abs(total - 1.0) < 1e-12


def test_every_and_any_computation_moved():
    probes, a = _elements([([1, 2, 3], [1, 1, 1], False), ([2, 3], [1, 1], False)])
    _, b = _elements([([1, 2, 3], [1, 2, 2], False), ([2, 3], [1, 2], False)])
    assert probes.every_computation_moved(a, b, 4) == [3]  # position 2 has a computation that did not move
    assert probes.computations_moved(a, b, 4) == {2: -1.0, 3: -1.0}
