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


# A trailing ``val`` means "value" (``scale_val``, ``max_val``, ``clip_val``) unless it
# follows one of these (``x_val``, ``tokens_val``).
_VAL_DATA_HEADS = {"x", "y", "tok", "toks", "token", "tokens", "data", "ids", "doc", "docs", "set", "split",
                   "stream", "seq", "seqs", "batch", "inputs", "targets", "shard", "shards", "fineweb", "all"}


# The pseudo-name a validation-data path literal adds to the names of the node holding it.
VAL_STRING = "__VAL_STRING__"


def is_val_string(text: str) -> bool:
    """A literal naming validation data: ``fineweb_val_*.bin``, a ``val_*`` glob."""
    return "fineweb_val" in text or ("val_" in text and "*" in text)


def is_val_name(name: str) -> bool:
    parts = [p for p in _SPLIT.split(name.lower()) if p]
    hits = [i for i, p in enumerate(parts) if p in _VAL_PARTS]
    if not hits or any(p in _VAL_EXCLUDE for p in parts):
        return False
    if hits == [len(parts) - 1] and len(parts) > 1 and parts[-1] == "val":
        return parts[-2] in _VAL_DATA_HEADS
    return True


def is_loss_name(name: str) -> bool:
    return bool(_LOSS_RE.search(name))


def is_train_name(name: str) -> bool:
    return bool(_TRAIN_RE.search(name))


# ---------------------------------------------------------------------------
# Naming conventions the rules rely on where no fact can answer (kept here, in one
# place, so that a name added for one submission's spelling is visible as such).

# Functions / calls that calibrate a quantizer (GPTQ Hessians, AWQ activation
# statistics): they read data without a gradient step, so feeding them validation
# tokens is a statistic fitted on unscored tokens (PG201) and feeding them training
# data after the training window is still training-data use (PG203). The names
# ``collect_stats`` / ``act_stats`` / ``quantize_with`` are the spellings of the
# reference implementation and of the records seen so far.
CALIBRATION_NAME_RE = re.compile(r"(calib|hessian|gptq|awq|collect_stats|act_stats|quantize_with)", re.I)


def is_calibration_name(name: str) -> bool:
    return bool(CALIBRATION_NAME_RE.search(name or ""))
