"""Naming conventions: which variable names mean validation data, a loss, training."""

from __future__ import annotations

import re

_SPLIT = re.compile(r"[_\W]+")
_VAL_PARTS = {"val", "valid", "validation", "vtok", "vtokens"}
_VAL_EXCLUDE = {
    "loss", "losses", "bpb", "bits", "every", "interval", "freq", "steps", "step",
    "size", "len", "acc", "score", "scores", "nll", "ppl", "time", "ms", "lr", "max",
    "min", "metrics", "metric", "sec", "seconds", "log", "frac", "fraction", "count",
    "bs", "batch_size", "stride", "seq", "ratio", "mode", "flag", "enabled", "print",
    "byte", "bytes",
}
_LOSS_RE = re.compile(r"(nll|loss|bits|logp|log_prob|logprob|(^|_)ce(_|$)|neglog)", re.I)
_TRAIN_RE = re.compile(r"(train|(^|_)tr(_|$)|(^|_)tl(_|$)|step_loss|adapt|ttt_loss|aux|reg)", re.I)


def is_val_name(name: str) -> bool:
    parts = [p for p in _SPLIT.split(name.lower()) if p]
    if not any(p in _VAL_PARTS for p in parts):
        return False
    return not any(p in _VAL_EXCLUDE for p in parts)


def is_loss_name(name: str) -> bool:
    return bool(_LOSS_RE.search(name))


def is_train_name(name: str) -> bool:
    return bool(_TRAIN_RE.search(name))
