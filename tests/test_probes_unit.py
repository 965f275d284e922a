"""Unit tests of the probe internals: locating targets in the stream, choosing the counted
computation, and the C4/C1 arithmetic, on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.probes import probes


def stream():
    return probes.make_stream(320, 1, n_tokens=300, seed=3)


def test_stream_is_bos_separated_random_tokens():
    s = stream()
    assert s[0] == 1 and (s >= 1).all() and len(probes.doc_starts(s, 1)) >= 4
    assert not ((s == 0) | (s == 2)).any()


def test_map_row_contiguous_overlapping_and_permuted_segments():
    s = stream()
    idx = probes.StreamIndex(s)
    # two overlapping windows flattened into one row, then a jump backwards
    row = list(s[1:65]) + list(s[33:97]) + list(s[200:210])
    pos = idx.map_row([int(t) for t in row])
    assert list(pos[:64]) == list(range(1, 65))
    assert list(pos[64:128]) == list(range(33, 97))
    assert list(pos[128:]) == list(range(200, 210))
    # the stream's very end
    tail = idx.map_row([int(t) for t in s[-20:]])
    assert list(tail) == list(range(len(s) - 20, len(s)))


def test_select_prefers_the_counted_computation():
    # position 1..4, each computed twice (first pass then a later one); the total returned is the first pass
    el = {"call": np.array([0] * 4 + [1] * 4), "pos": np.array([1, 2, 3, 4] * 2),
          "loss": np.array([1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5]),
          "grad": np.array([False] * 4 + [True] * 4), "trained": np.array([False] * 4 + [True] * 4)}
    run = probes.Run(True, scalars=[("return", 10.0)], elements=el)
    pp = probes.per_position(run, 6)
    assert pp["verified"] and pp["mode"] == "first-nograd" and pp["values"][4] == 4.0
    run = probes.Run(True, scalars=[("return", 2.0)], elements=el)  # the last (trained) pass is what counts
    assert probes.per_position(run, 6)["mode"] == "last-any"
    run = probes.Run(True, scalars=[("return", 12.0)], elements=el)  # every computation summed: double counting
    pp = probes.per_position(run, 6)
    assert pp["mode"] == "all-any" and pp["counts"][1] == 2


def test_c4_counts_missing_twice_and_bos_deviation():
    s = np.array([1, 5, 6, 7, 1, 8, 9, 10])
    base = {"counts": np.array([0, 1, 1, 1, 0, 1, 1, 1]), "verified": True, "source": "t"}
    assert probes.probe_c4(base, s, 1)["status"] == "deviation"
    base["counts"] = np.array([0, 1, 2, 1, 1, 1, 1, 0])
    r = probes.probe_c4(base, s, 1, window=1)
    assert r["status"] == "fail" and r["twice"] == 1 and r["missing"] == 1 and r["first_missing"] == [7]
    base["counts"] = np.array([0, 1, 1, 1, 1, 1, 1, 1])
    assert probes.probe_c4(base, s, 1)["status"] == "pass"


def test_c4_errors_within_one_window_of_the_streams_edges_are_a_deviation():
    """A sliding evaluation that leaves the first window's head unscored or scores a final
    partial window again errs only within one window of the stream's start or end: a
    deviation. The same errors in the middle of the stream are a failure."""
    s = np.array([1] + list(range(3, 40)))  # 38 tokens, one document
    head = np.ones(38, dtype=np.int64)
    head[:5] = 0  # targets 1-4 never scored (position 0 is never a target)
    r = probes.probe_c4({"counts": head, "verified": True, "source": "t"}, s, 1, window=8)
    assert r["status"] == "deviation" and r["at_edges"] and r["missing"] == 4
    tail = np.ones(38, dtype=np.int64)
    tail[0], tail[33:] = 0, 2  # the last 5 targets scored twice
    r = probes.probe_c4({"counts": tail, "verified": True, "source": "t"}, s, 1, window=8)
    assert r["status"] == "deviation" and r["twice"] == 5
    middle = np.ones(38, dtype=np.int64)
    middle[0], middle[15:20] = 0, 2
    assert probes.probe_c4({"counts": middle, "verified": True, "source": "t"}, s, 1, window=8)["status"] == "fail"
    both = tail.copy()
    both[18] = 0  # one mid-stream target dropped as well
    assert probes.probe_c4({"counts": both, "verified": True, "source": "t"}, s, 1, window=8)["status"] == "fail"


def test_tracked_losses_tie_the_scored_slices_of_sliding_windows():
    """Overlapping windows, each scoring only its tail slice (`nll[i, s:].double().sum()`):
    the tracked loss tensor records which computations the sums consumed, so the counted
    losses are tied to the returned mean, and a final window scored again counts twice."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    probes.install_hooks()
    stream = probes.make_stream(16, n_tokens=40, seed=3)
    index = probes.StreamIndex(stream)
    seq, stride = 8, 4
    expected = np.zeros(len(stream), dtype=np.int64)  # how often the code below scores each target

    def sliding(val_tokens):
        total, count = torch.zeros((), dtype=torch.float64), 0
        n = val_tokens.numel() - 1
        starts = list(range(0, n - seq + 1, stride)) + [n - 2 * stride]  # a last window over the tail again
        with torch.no_grad():
            for ws in starts:
                x, y = val_tokens[ws:ws + seq], val_tokens[ws + 1:ws + seq + 1]
                logits = torch.nn.functional.one_hot(x % 16, 16).float()[: y.numel()] * 0.5
                nll = F.cross_entropy(logits, y, reduction="none")
                s = 0 if ws == 0 else nll.numel() - stride
                total += nll[s:].to(torch.float64).sum()
                count += nll.numel() - s
                expected[ws + 1 + s:ws + 1 + nll.numel()] += 1
        return (total / count).item()

    entry = type("E", (), {"fn": staticmethod(sliding)})
    run = probes.run_entry(entry, lambda tokens: {"val_tokens": tokens}, stream, index)
    assert run.ok, run.reason
    pp = probes.per_position(run, len(stream))
    assert pp["verified"] and pp["mode"].startswith("reduced"), pp["source"]
    assert expected.max() == 2 and pp["counts"].tolist() == expected.tolist()


def test_c1_reports_the_largest_change_before_the_flip():
    a = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0])
    b = a.copy()
    b[2] += 0.26
    b[5] += 9.0  # at or after the flip: allowed
    r = probes.probe_c1({"values": a, "source": "t", "verified": True}, {"values": b}, 4)
    assert r["status"] == "fail" and r["worst_position"] == 2 and r["max_abs"] == pytest.approx(0.26)
    b[2] = a[2]
    assert probes.probe_c1({"values": a, "source": "t", "verified": True}, {"values": b}, 4)["status"] == "pass"


@pytest.mark.parametrize("src", [
    'x = f"{", ".join(sorted(names))}"\n',
    'log(f"mode={"physical"if a else"virtual"} p={p}")\n',
    "y = f'{d['k']!r:>10}'\n",
    'z = f"{", ".join(f"{k}={v:.3f}" for k, v in d.items())}"\n',
    'w = f"{d["a"]:{width}.{prec}f}" + "plain"\nif x:\n    pass\nelif"a":\n    pass\n',
])
def test_fstrings_downgrade_requotes_pep701_fstrings(src):
    """Python 3.12 f-strings that reuse the enclosing quote compile on older interpreters after
    downgrade, with the same value and the same lines."""
    import ast
    import sys

    from auditor.probes import fstrings

    out = fstrings.downgrade(src)
    compile(out, "t", "exec")
    assert out.count("\n") == src.count("\n")
    if sys.version_info >= (3, 12):
        assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(src))
    else:
        with pytest.raises(SyntaxError):
            compile(src, "t", "exec")


def test_fstrings_downgrade_leaves_valid_code_and_refuses_what_it_cannot_requote():
    from auditor.probes import fstrings

    ok = 's = """a "b" c"""\nt = f"{x!r}" + r"\\d" + f"""{d["k"]}"""\n'
    assert fstrings.downgrade(ok) == ok
    with pytest.raises(fstrings.Unconvertible):
        fstrings.downgrade('f"{"a\\n"}"\n')  # a backslash in a replacement field: not before 3.12


MODEL_BUILT_IN_MAIN = '''
import os
import torch
from torch import nn


class Settings:
    model_dim = int(os.environ.get("MODEL_DIM", 32))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 64))
    num_layers = 2
    mlp_mult = 3


class HashedPairs(nn.Module):
    """A part with a large table: more parameters than the whole small model."""
    def __init__(self, model_dim, buckets=8192):
        super().__init__()
        self.table = nn.Embedding(buckets, model_dim)


class Layer(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.up, self.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)


class Net(nn.Module):
    def __init__(self, vocab_size, model_dim, hidden, num_layers):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, model_dim)
        self.layers = nn.ModuleList([Layer(model_dim, hidden) for _ in range(num_layers)])
        self.pairs = HashedPairs(model_dim, buckets=16)


def main():
    args = Settings()
    hidden = args.mlp_mult * args.model_dim
    model = Net(vocab_size=args.vocab_size, model_dim=args.model_dim, hidden=hidden, num_layers=args.num_layers)
    return model
'''


def test_the_model_is_built_the_way_main_builds_it(tmp_path, monkeypatch):
    """`Net` needs `hidden`, which main computes: it is built by replaying main's call; the
    hash part with more parameters is not taken for the model (it holds no other part)."""
    pytest.importorskip("torch")
    from auditor.probes import discover
    from auditor.probes.loader import load_source

    path = tmp_path / "train_gpt.py"
    path.write_text(MODEL_BUILT_IN_MAIN)
    mod = load_source(MODEL_BUILT_IN_MAIN, str(path), name="pgolf_unit_model")
    cfg = discover.make_config(discover.find_config_class(mod), 64)
    (name, model), errors = discover.build_model(mod, cfg, 64)
    assert name == "Net", errors
    assert model.layers[0].up.out_features == 3 * cfg.model_dim
    # without main's call, Net cannot be bound from the config and the part would win
    monkeypatch.setattr(discover, "replayed_constructions", lambda *a: [])
    (name, _), _ = discover.build_model(mod, cfg, 64)
    assert name == "HashedPairs"


def test_a_probe_stopped_before_every_entry_ran_is_not_proven():
    """No headline identified, the child timed out after one of two entries: not a PASS."""
    from rules.core.findings import Location, Severity
    from auditor.probes.runner import ProbeReport, _honesty

    ok = {"name": "eval_a", "status": "ok", "verified": True, "c1": {"status": "pass", "checked": 10}}
    data = {"planned": ["eval_a", "eval_b"], "entries": [ok], "stage": "probe"}
    where = Location("train_gpt.py", None, None, "source")
    stopped = _honesty(data, None, "no logs", None, where, stopped="timed out after 60 s")
    assert [(f.severity, f.key) for f in stopped] == [(Severity.WARNING, "stopped")]
    assert "eval_b" in stopped[0].message
    assert ProbeReport("x", stopped).outcome()[0] == "not_proven"
    finished = _honesty(dict(data, planned=["eval_a"], stage="done"), None, "no logs", None, where)
    assert [(f.severity, f.key) for f in finished] == [(Severity.INFO, "summary")]
    assert ProbeReport("x", finished).outcome()[0] == "checked"


def test_outcome_names_what_the_probes_established():
    from rules.core.findings import Severity
    from auditor.probes.runner import C1, C4, NOT_RUN, ProbeReport

    measured = C1.finding(Severity.ILLEGAL, "eval: position 3 moved", key="eval:c1:fail")
    apart = C1.finding(Severity.WARNING, "other: position 3 moved", key="other:c1:fail:apart")
    unproven = C1.finding(Severity.WARNING, "eval: NOT PROVEN: moved", key="eval:c1:fail")
    bos_gap = C4.finding(Severity.WARNING, "eval: 3 BOS positions never scored", key="eval:c4:deviation")
    not_run = NOT_RUN.finding(Severity.WARNING, "NOT PROVEN: the headline did not run", key="headline-not-run")
    summary = NOT_RUN.finding(Severity.INFO, "probes ran on 1 of 1 entries", key="summary")
    assert ProbeReport("x", [not_run, apart, measured]).outcome() == ("proven", measured.message)
    assert ProbeReport("x", [not_run, apart]).outcome()[0] == "other_evaluation"
    assert ProbeReport("x", [unproven, summary]).outcome()[0] == "unverified"
    assert ProbeReport("x", [bos_gap, not_run]).outcome()[0] == "not_proven"
    assert ProbeReport("x", [bos_gap, summary]).outcome() == ("checked", summary.message)


ENTRY_CALLED_WITH_CONFIG = MODEL_BUILT_IN_MAIN + '''

def score(model, val_tokens, order, alpha, chunk_tokens=32768, window=9):
    return float(order) + alpha


def run_eval(model, val_tokens):
    args = Settings()
    return score(model, val_tokens, args.num_layers + 1, alpha=args.mlp_mult / 10, chunk_tokens=args.model_dim)
'''


def test_an_entry_parameter_is_bound_from_the_scripts_own_call(tmp_path):
    """`order` and `alpha` have no default and no config field of that name: the values
    come from the call in run_eval, evaluated with the probe's config; so does the
    defaulted `chunk_tokens` main passes (the entry runs as main runs it), while `window`,
    which no call passes, keeps its default."""
    pytest.importorskip("torch")
    from auditor.probes import discover
    from auditor.probes.loader import load_source

    path = tmp_path / "train_gpt.py"
    path.write_text(ENTRY_CALLED_WITH_CONFIG)
    mod = load_source(ENTRY_CALLED_WITH_CONFIG, str(path), name="pgolf_unit_entry")
    cfg = discover.make_config(discover.find_config_class(mod), 64)
    cfg.num_layers = 5
    entry = discover.Entry("score", mod.score, ["model", "val_tokens", "order", "alpha"], False, None)
    kwargs, why = discover.bind_entry(entry, model=None, tokens=[1, 2], cfg=cfg, tables=None, sp=None,
                                      vocab=64, bos=1, mod=mod)
    assert why is None and kwargs["order"] == 6 and kwargs["alpha"] == pytest.approx(0.3)
    assert kwargs["chunk_tokens"] == cfg.model_dim and "window" not in kwargs
    uncalled = discover.Entry("run_eval_missing", mod.score, [], False, None)
    _, why = discover.bind_entry(uncalled, model=None, tokens=[1, 2], cfg=cfg, tables=None, sp=None,
                                 vocab=64, bos=1, mod=mod)
    assert why == "cannot bind required parameter 'order'"


LOGITS_FN_FROM_MAIN = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 4)

    def forward_logits(self, x):
        return self.emb(x)


def slide(logits_fn, val_tokens, noise):
    return logits_fn, noise


def main():
    base_model = Net()
    compiled = torch.compile(base_model.forward_logits)
    slide(compiled, None, torch.rand(3))
'''


def test_a_logits_function_is_the_probes_model_and_every_bind_draws_alike(tmp_path):
    """`logits_fn`, which main fills with a freshly built model's method, is the probe's own
    model's `forward_logits` (a model rebuilt per run would change every loss between the
    original and the flipped run: a false C1). Whatever else main's lines draw for an argument
    (`torch.rand`) is the same in every bind."""
    torch = pytest.importorskip("torch")
    from auditor.probes import discover
    from auditor.probes.loader import load_source

    path = tmp_path / "train_gpt.py"
    path.write_text(LOGITS_FN_FROM_MAIN)
    mod = load_source(LOGITS_FN_FROM_MAIN, str(path), name="pgolf_unit_logits_fn")
    model = mod.Net()
    entry = discover.Entry("slide", mod.slide, ["logits_fn", "val_tokens"], False, None)
    binds = []
    for _ in range(2):
        kwargs, why = discover.bind_entry(entry, model=model, tokens=[1], cfg=None, tables=None, sp=None,
                                          vocab=16, bos=1, mod=mod)
        assert why is None, why
        binds.append(kwargs)
        torch.rand(5)  # the probe's own draws between two runs
    assert binds[0]["logits_fn"] == model.forward_logits and binds[1]["logits_fn"] == model.forward_logits
    assert torch.equal(binds[0]["noise"], binds[1]["noise"])


def test_a_headline_evaluation_no_probe_could_read_is_not_proven():
    """The headline's evaluation ran, but its per-token losses never reached a probe (it
    mixes probabilities in numpy): that is not a check that held."""
    from rules.core.findings import Location, Severity
    from auditor.probes.headline import Headline
    from auditor.probes.runner import ProbeReport, _honesty

    unread = {"status": "not_run", "reason": "the entry neither exposes per-token losses nor calls cross_entropy"}
    hl = {"name": "eval_mix", "status": "ok", "headline": True, "c1": unread, "c4": unread,
          "c2": {"status": "not_applicable"}, "bos": {"status": "not_applicable"}}
    other = {"name": "eval_plain", "status": "ok", "verified": True, "c1": {"status": "pass", "checked": 9}}
    headline = Headline("final val_bpb:1.1", "train.log:9", [40], ["eval_mix"])
    where = Location("train_gpt.py", None, None, "source")
    got = _honesty({"entries": [hl, other], "planned": ["eval_mix", "eval_plain"], "stage": "done"},
                   headline, "", None, where)
    assert [(f.severity, f.key) for f in got] == [(Severity.WARNING, "headline-unchecked")]
    assert "eval_mix" in got[0].message and "cross_entropy" in got[0].message
    assert ProbeReport("x", got).outcome()[0] == "not_proven"
    alone = _honesty({"entries": [hl], "stage": "done"}, None, "no logs", None, where)
    assert [(f.severity, f.key) for f in alone] == [(Severity.WARNING, "unchecked")]
    read = dict(hl, c4={"status": "pass", "targets": 9, "scored": 9}, verified=True)
    fine = _honesty({"entries": [read, other], "stage": "done"}, headline, "", None, where)
    assert [(f.severity, f.key) for f in fine] == [(Severity.INFO, "summary")]
    # a pass on model losses that the returned score is not made of proves nothing
    untied = dict(read, verified=False, source="intercepted cross_entropy (not tied to a returned total)")
    got = _honesty({"entries": [untied, other], "stage": "done"}, headline, "", None, where)
    assert [(f.severity, f.key) for f in got] == [(Severity.WARNING, "headline-unchecked")]
    assert "not tied to the score it returns" in got[0].message


NESTED_CONFIG = '''
import os
from dataclasses import dataclass, field


@dataclass
class ModelSettings:
    vocab_size: int = int(os.environ.get("VOCAB_SIZE", 64))
    model_dim: int = int(os.environ.get("MODEL_DIM", 32))
    num_layers: int = 9


@dataclass
class EvalSettings:
    window: int = 7


@dataclass
class RunSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)


def evaluate(config: RunSettings, model, val_tokens):
    return config.eval.window, config.model.num_layers
'''


def test_a_config_parameter_gets_the_class_it_is_annotated_with(tmp_path):
    """The probe's config is the model settings; an entry annotated with the run settings that
    hold them gets a run-settings object whose model part is the probe's (shrunk) config."""
    from auditor.probes import discover
    from auditor.probes.loader import load_source

    path = tmp_path / "train_gpt.py"
    path.write_text(NESTED_CONFIG)
    mod = load_source(NESTED_CONFIG, str(path), name="pgolf_unit_nested")
    cfg = discover.make_config(discover.find_config_class(mod), 64)
    assert type(cfg).__name__ == "ModelSettings" and cfg.num_layers == 2
    entry = discover.Entry("evaluate", mod.evaluate, ["config", "model", "val_tokens"], False, None)
    kwargs, why = discover.bind_entry(entry, model=None, tokens=[1], cfg=cfg, tables=None, sp=None, vocab=64,
                                      bos=1, mod=mod)
    assert why is None and type(kwargs["config"]).__name__ == "RunSettings"
    assert kwargs["config"].model is cfg and mod.evaluate(**kwargs) == (7, 2)


def test_tracked_losses_follow_scaling_and_the_last_epochs_overwritten_total():
    """A multi-epoch scorer that trains on each pass (the training mean carries a gradient and
    is no score), rescales the scored losses by a temperature and resets its accumulator every
    epoch: the counted losses are each position's last consumed computation, scaled."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    probes.install_hooks()
    stream = probes.make_stream(16, n_tokens=30, seed=5)
    index = probes.StreamIndex(stream)

    def epochs(val_tokens):
        bias = torch.zeros(16, requires_grad=True)
        x, y = val_tokens[:-1], val_tokens[1:]
        for _ in range(2):
            total = torch.zeros((), dtype=torch.float64)  # overwritten each epoch
            ptl = F.cross_entropy(torch.nn.functional.one_hot(x % 16, 16).float() + bias, y, reduction="none")
            with torch.no_grad():
                total += (ptl[: y.numel()].to(torch.float64) * 0.98).sum()
            ptl.mean().backward()
            with torch.no_grad():
                bias -= 0.5 * bias.grad
                bias.grad = None
        return (total / y.numel()).item()

    entry = type("E", (), {"fn": staticmethod(epochs)})
    run = probes.run_entry(entry, lambda tokens: {"val_tokens": tokens}, stream, index)
    assert run.ok, run.reason
    pp = probes.per_position(run, len(stream))
    assert pp["verified"] and pp["mode"] == "reducedlast-any", pp["source"]
    assert pp["counts"][1:].tolist() == [1] * (len(stream) - 1)
