"""PG106 scoring-coverage and PG203 train-data-after-window beyond the embedded examples."""

from __future__ import annotations

import textwrap

from auditor.findings import Severity
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
