"""The labelled data flow (``rules/facts/flow.py``): validation and training data are
what came from their shards, whatever the variables are called."""

from __future__ import annotations

import libcst as cst

from rules import lint_source
from rules.facts import Facts
from rules.facts.names import TRAIN, VAL


def _facts(src: str) -> Facts:
    return Facts(cst.parse_module(src), src)


def _func(f: Facts, name: str):
    return f.funcs_by_name[name][0]


CONFIG_SRC = '''
import glob, os
import numpy as np
import torch

class Settings:
    root = os.environ.get("DATA_ROOT", "./data")
    shards_a = os.path.join(root, "fineweb_val_*.bin")
    shards_b = os.path.join(root, "fineweb_train_*.bin")

def read_all(pattern):
    return torch.cat([torch.from_numpy(np.fromfile(p, dtype=np.uint16)) for p in sorted(glob.glob(pattern))])

def adapt(model, opt, blob):
    for i in range(0, blob.numel() - 1024, 1024):
        x = blob[i:i + 1024]
        loss = model(x[:-1], x[1:])
        loss.backward()
        opt.step()

def main():
    cfg = Settings()
    blob = read_all(cfg.shards_a)
    val_tokens = read_all(cfg.shards_b)
    adapt(model, opt, blob)
    adapt_other(model, opt, val_tokens)

def adapt_other(model, opt, seq):
    loss = model(seq[:-1], seq[1:])
    loss.backward()
    opt.step()

if __name__ == "__main__":
    main()
'''


def test_a_stream_named_blob_read_from_a_validation_glob_through_a_config_field_is_validation():
    f = _facts(CONFIG_SRC)
    main = _func(f, "main")
    assert f.tainted("blob", main, 24)
    assert not f.tainted("blob", main, 24, TRAIN)
    assert f.tainted("x", _func(f, "adapt"), 17)  # a parameter: what the call passes


def test_a_variable_named_val_tokens_loaded_from_training_shards_is_not_validation():
    f = _facts(CONFIG_SRC)
    main = _func(f, "main")
    assert not f.tainted("val_tokens", main, 25)
    assert f.tainted("val_tokens", main, 25, TRAIN)
    assert not f.tainted("seq", _func(f, "adapt_other"), 30)


def test_pg201_follows_the_source_not_the_name():
    found = [x for x in lint_source(CONFIG_SRC, file="train_gpt.py") if x.code == "PG201"]
    assert any("`adapt`" in x.message for x in found)
    assert not any("adapt_other" in x.message for x in found)


def test_a_shared_loader_function_returns_what_each_call_passes():
    src = '''
import numpy as np
class H:
    val_files = "data/fineweb_val_*.bin"
    train_files = "data/fineweb_train_*.bin"
def load_shard(path):
    return np.fromfile(path, dtype=np.uint16)
def main(h):
    a = load_shard(h.val_files)
    b = load_shard(h.train_files)
    return a, b
main(H())
'''
    f = _facts(src)
    main = _func(f, "main")
    assert f.tainted("a", main, 11) and not f.tainted("a", main, 11, TRAIN)
    assert f.tainted("b", main, 11, TRAIN) and not f.tainted("b", main, 11, VAL)


def test_self_attribute_and_tuple_elements():
    src = '''
class Evaluator:
    def __init__(self, pattern):
        self.stream = load(pattern)
    def chunk(self, i):
        return self.stream[i:i + 64]
def split(a, b):
    return a, b
def main():
    ev = Evaluator("shards/fineweb_val_*.bin")
    piece = ev.chunk(0)
    left, right = split(piece, [1, 2, 3])
main()
'''
    f = _facts(src)
    main = _func(f, "main")
    assert f.tainted("piece", main, 12)
    assert f.tainted("left", main, 13) and not f.tainted("right", main, 13)
    assert f.tainted("self", _func(f, "chunk"), 6)  # the receivers of the calls


def test_name_fallback_only_without_a_source():
    src = '''
def score_entry(model, val_tokens):
    return model(val_tokens)
def helper(val_tokens):
    return val_tokens
def main():
    helper([1, 2, 3])
main()
'''
    f = _facts(src)
    # an entry no call in the file reaches: only its name can say what it gets
    assert f.tainted("val_tokens", _func(f, "score_entry"), 3)
    # a called function: its callers say (a plain list here)
    assert not f.tainted("val_tokens", _func(f, "helper"), 5)
