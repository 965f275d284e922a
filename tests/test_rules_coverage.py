"""PG106 scoring-coverage and PG203 train-data-after-window beyond the embedded examples."""

from __future__ import annotations

import textwrap

from rules.core import Severity
from rules import LintConfig, lint_source


def _by(src: str, code: str, env=None):
    return [f for f in lint_source(textwrap.dedent(src), file="train_gpt.py",
                                   config=LintConfig(env=env or {})) if f.code == code]


BASELINE_LOADER = '''
import glob, os
import numpy as np
import torch
class Hyperparameters:
    val_files = os.environ.get("VAL_FILES", "data/fineweb_val_*.bin")
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", "1024"))
def load_validation_tokens(pattern):
    args = Hyperparameters()
    tokens = torch.cat([torch.from_numpy(np.fromfile(f, dtype=np.uint16)) for f in sorted(glob.glob(pattern))])
    usable = ((tokens.numel() - 1) // args.train_seq_len) * args.train_seq_len
    return tokens[:usable + 1]
'''


def test_truncation_is_a_warning_with_the_sp8192_tail_count():
    fs = _by(BASELINE_LOADER, "PG106")
    assert len(fs) == 1 and fs[0].severity == Severity.WARNING
    assert "deviation" in fs[0].message
    assert "1023 tokens" in fs[0].message and fs[0].location.line_start == 11
    # the tail count follows the effective sequence length
    fs = _by(BASELINE_LOADER, "PG106", env={"TRAIN_SEQ_LEN": "2048"})
    assert "2047 tokens" in fs[0].message


SLIDING = '''
import os
import torch
class Hyperparameters:
    seq_len = int(os.environ.get("SEQ_LEN", "1024"))
    eval_stride = int(os.environ.get("EVAL_STRIDE", "1024"))
@torch.no_grad()
def eval_windows(model, val_tokens, args):
    loss_sum = 0.0
    for a in range(0, val_tokens.numel() - 1, args.eval_stride):
        x = val_tokens[a:a + args.seq_len]
        y = val_tokens[a + 1:a + args.seq_len + 1]
        loss_sum += model(x[None], y[None]).item() * y.numel()
    return loss_sum
'''


def test_whole_window_sum_is_legal_when_the_effective_stride_equals_the_window():
    assert not _by(SLIDING, "PG106")
    fs = _by(SLIDING, "PG106", env={"EVAL_STRIDE": "64"})
    assert len(fs) == 1 and fs[0].severity == Severity.ILLEGAL
    assert "args.eval_stride" in fs[0].message and "loss_sum" in fs[0].message
    assert fs[0].location.line_start == 10  # from the loop header to the accumulation
    assert fs[0].location.line_end == 13


def test_fresh_part_through_an_intermediate_name_stays_quiet():
    src = SLIDING.replace("loss_sum += model(x[None], y[None]).item() * y.numel()",
                          "nll = model.per_token(x[None], y[None])[0]\n"
                          "        s = 0 if a == 0 else args.seq_len - args.eval_stride\n"
                          "        kept = nll[s:]\n"
                          "        loss_sum += kept.sum().item()")
    assert not _by(src, "PG106", env={"EVAL_STRIDE": "64"})


def test_bos_split_is_info_only():
    src = '''
import torch
BOS_ID = 1
def eval_docs(model, val_tokens):
    idx = torch.nonzero(val_tokens == BOS_ID).flatten()
    nll_sum = 0.0
    for a, b in zip(idx[:-1].tolist(), idx[1:].tolist()):
        nll_sum += model.nll(val_tokens[a:b])
    return nll_sum
'''
    fs = _by(src, "PG106")
    assert [f.severity for f in fs] == [Severity.INFO]
    assert "BOS" in fs[0].message and "line 5" in fs[0].message


TRAIN_AFTER = '''
import os
import torch
class Hyperparameters:
    train_files = os.environ.get("TRAIN_FILES", "data/fineweb_train_*.bin")
    extra_ttt = bool(int(os.environ.get("EXTRA_TTT", "0")))
def adapt(model, opt, stream):
    for _ in range(8):
        model.loss(*stream.next_batch()).backward()
        opt.step()
def main():
    args = Hyperparameters()
    model, opt = build()
    train_stream = TokenStream(args.train_files)
    warm = train_stream.next_batch()
    model.loss(*warm).backward()
    for step in range(1000):
        model.loss(*train_stream.next_batch()).backward()
        opt.step()
    if args.extra_ttt:
        adapt(model, opt, train_stream)
    report(model)
if __name__ == "__main__":
    main()
'''


def test_train_read_after_loop_follows_the_switch_and_names_the_route():
    fs = _by(TRAIN_AFTER, "PG203")
    assert len(fs) == 1 and fs[0].severity == Severity.WARNING  # EXTRA_TTT defaults to 0
    assert fs[0].location.line_start == 9
    assert "`adapt`, called from `main` line 21" in fs[0].message and "ending line 19" in fs[0].message
    assert "EXTRA_TTT" in " ".join(fs[0].evidence)
    fs = _by(TRAIN_AFTER, "PG203", env={"EXTRA_TTT": "1"})
    assert [f.severity for f in fs] == [Severity.ILLEGAL]


def test_warmup_read_before_the_loop_is_quiet():
    src = TRAIN_AFTER.replace("    if args.extra_ttt:\n        adapt(model, opt, train_stream)\n", "")
    assert not _by(src, "PG203")


def test_calibration_after_the_loop_without_reserve_is_a_warning_and_a_reserve_silences_it():
    src = TRAIN_AFTER.replace("adapt(model, opt, train_stream)", "h = gptq_collect(model, train_stream)")
    fs = _by(src, "PG203", env={"EXTRA_TTT": "1"})
    assert [f.severity for f in fs] == [Severity.WARNING] and "calibration" in fs[0].message
    src2 = src.replace('    extra_ttt =', '    gptq_reserve_seconds = float(os.environ.get("GPTQ_RESERVE_SECONDS", "10"))\n'
                                           '    extra_ttt =')
    assert not _by(src2, "PG203", env={"EXTRA_TTT": "1"})


SCRATCH_WARMUP = '''
import torch
def evaluate(model, val_tokens, score_all):
    for n in (64, 128):
        scratch = Adapter(model)
        wo = torch.optim.AdamW(scratch.parameters(), lr=1e-3)  # an optimizer by what builds it
        x, y = val_tokens[:n].unsqueeze(0), val_tokens[1:n + 1].unsqueeze(0)
        loss = model(x, y, adapter=scratch)
        loss.backward()
        wo.step()
        del scratch, wo
    return score_all(model, val_tokens)
'''


def test_step_on_a_deleted_scratch_adapter_is_a_warning_not_illegal():
    # a compile warm-up: the adapter that takes the step is thrown away before anything scores
    fs = _by(SCRATCH_WARMUP, "PG201")
    assert [f.severity for f in fs] == [Severity.WARNING]
    assert "`scratch`, deleted at line 11" in fs[0].message
    kept = SCRATCH_WARMUP.replace("        del scratch, wo\n", "")
    assert [f.severity for f in _by(kept, "PG201")] == [Severity.ILLEGAL]
    shared = SCRATCH_WARMUP.replace("scratch.parameters()", "model.parameters()")
    assert [f.severity for f in _by(shared, "PG201")] == [Severity.ILLEGAL]
