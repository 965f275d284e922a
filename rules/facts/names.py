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


# Data labels of the flow analysis (``flow.py``).
VAL = "val"
TRAIN = "train"

# The pseudo-name a validation-data path literal adds to the names of the node holding it.
VAL_STRING = "__VAL_STRING__"

_WS = re.compile(r"\s")


def _names_split(text: str, split: str) -> bool:
    """``text`` names a shard of ``split``: ``fineweb_val_*.bin``, ``.../val_000.bin``, a
    ``train_*`` glob. Path-like only (no whitespace), so a log line ``"val_loss * 2"``
    is not a source."""
    if f"fineweb_{split}" in text:
        return True
    if _WS.search(text):
        return False
    return bool(re.search(rf"(^|[/\\_.*'\"-]){split}(id|idation|ing)?_[^/]*(\*|\.bin['\"]?$)", text))


def source_labels(text: str) -> frozenset:
    """The data labels a string literal is a source of (the shards it names)."""
    out = set()
    if _names_split(text, "val"):
        out.add(VAL)
    if _names_split(text, "train"):
        out.add(TRAIN)
    return frozenset(out)


def is_val_string(text: str) -> bool:
    """A literal naming validation data: ``fineweb_val_*.bin``, a ``val_*`` glob."""
    return _names_split(text, "val")


def is_train_string(text: str) -> bool:
    """A literal naming training data: ``fineweb_train_*.bin``, a ``train_*`` glob."""
    return _names_split(text, "train")


# ---------------------------------------------------------------------------
# Names that say "validation data" / "training data". The flow analysis uses them
# only as a fallback, for a value the file gives no source for: a parameter of a
# function no call in the file reaches, an attribute no assignment defines (see
# ``flow.py``).

def is_val_name(name: str) -> bool:
    parts = [p for p in _SPLIT.split(name.lower()) if p]
    hits = [i for i, p in enumerate(parts) if p in _VAL_PARTS]
    if not hits or any(p in _VAL_EXCLUDE for p in parts):
        return False
    if hits == [len(parts) - 1] and len(parts) > 1 and parts[-1] == "val":
        return parts[-2] in _VAL_DATA_HEADS
    return True


_TRAIN_DATA_PARTS = {"files", "file", "loader", "loaders", "tokens", "toks", "data", "stream", "shards", "shard",
                     "pattern", "ds", "dataset", "iter", "iterator", "glob", "paths", "bins"}
_NOT_TRAIN_DATA = {"size", "len", "seq", "steps", "step", "every", "frac", "count", "max", "min", "time", "ms",
                   "seconds", "lr", "loss", "bpb", "batch", "log", "num", "n", "per", "bytes"}


def is_train_data_name(name: str) -> bool:
    """``train_files``, ``train_loader``, ``training_tokens``: not ``train_seq_len``."""
    parts = [p for p in _SPLIT.split(name.lower()) if p]
    if "train" not in parts and "training" not in parts:
        return False
    if any(p in _NOT_TRAIN_DATA for p in parts):
        return False
    return any(p in _TRAIN_DATA_PARTS for p in parts)


# Calls through which a value still *is* training data (a loader, a shard, a batch, a
# conversion); a name defined by any other call holds a statistic of the data
# (``calib = collect_hessians(..)``, ``n = count(..)``), which code after the training
# window may use: the ``TRAIN`` label stops there (``flow.py``).
TRAIN_CARRY_RE = re.compile(r"(load|read|shard|loader|stream|batch|token|glob|sorted|list|iter|next|from_numpy|"
                            r"memmap|fromfile|open|tensor|to|cuda|long|int|view|reshape|cat|stack|dataset)", re.I)


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
