"""Reference stack, data side: config, shard format, loaders, byte tables, bpb formula."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

sp_mod = pytest.importorskip("sentencepiece")

from reference_impl.bytes import build_byte_tables, count_bytes  # noqa: E402
from reference_impl.config import Config  # noqa: E402
from reference_impl.data import (  # noqa: E402
    SHARD_MAGIC,
    DistributedTokenLoader,
    load_val_tokens,
    read_header,
    read_shard,
    write_shard,
)
from reference_impl.evaluate import evaluate  # noqa: E402
from reference_impl.model import GPT  # noqa: E402
from reference_impl.synthetic import generate_documents, toy_corpus  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus():
    return toy_corpus()


@pytest.fixture(scope="module")
def sp(corpus):
    return sp_mod.SentencePieceProcessor(model_file=corpus["tokenizer"])


# -- config ---------------------------------------------------------------------------------------


def test_config_env_overrides_and_types():
    cfg = Config.from_env({"NUM_LAYERS": "3", "MLP_MULT": "3.5", "SMEAR": "0", "CODEC": "lzma", "UNRELATED": "x"})
    assert (cfg.num_layers, cfg.mlp_mult, cfg.smear, cfg.codec) == (3, 3.5, False, "lzma")
    assert Config.from_env({}).num_layers == 9


def test_toy_preset_is_overridable_and_logged_in_full():
    cfg = Config.from_env({"CONFIG": "toy", "MODEL_DIM": "32"})
    assert cfg.model_dim == 32 and cfg.num_layers == 4 and cfg.synthetic_data
    lines = cfg.log_lines()
    assert len(lines) == len(cfg.to_dict()) and "model_dim:32" in lines


# -- shards ---------------------------------------------------------------------------------------


def test_shard_roundtrip_and_header(tmp_path):
    toks = np.arange(1000) % 65535
    path = str(tmp_path / "s.bin")
    write_shard(path, toks)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == SHARD_MAGIC and header[1] == 1 and header[2] == 1000 and not header[3:].any()
    assert os.path.getsize(path) == 1024 + 2000
    assert (read_shard(path) == toks).all()


def test_bad_shards_are_rejected(tmp_path):
    path = str(tmp_path / "s.bin")
    write_shard(path, np.arange(10))
    with open(path, "ab") as f:
        f.write(b"xx")  # truncated/extended file: header count no longer matches
    with pytest.raises(ValueError, match="size"):
        read_header(path)
    bad = np.zeros(256, dtype="<i4")
    bad[0] = 1234
    bad.tofile(path)
    with pytest.raises(ValueError, match="magic"):
        read_header(path)
    with pytest.raises(ValueError):
        write_shard(path, [70000])


def test_distributed_loader_ranks_take_disjoint_slices_of_one_stream(tmp_path):
    toks = np.arange(5000) % 60000
    write_shard(str(tmp_path / "t_000.bin"), toks[:2600])
    write_shard(str(tmp_path / "t_001.bin"), toks[2600:])
    pattern = str(tmp_path / "t_*.bin")
    xs = [DistributedTokenLoader(pattern, r, 2).next_batch(512, 64) for r in range(2)]
    (x0, y0), (x1, y1) = xs
    assert x0.shape == (4, 64) and (y0.flatten()[:-1] == x0.flatten()[1:]).all()
    assert x1.flatten()[0] == x0.flatten()[-1] + 1  # rank 1 continues where rank 0 stops
    single = DistributedTokenLoader(pattern, 0, 1)
    for _ in range(12):  # crosses shard boundaries and wraps around
        x, y = single.next_batch(512, 64)
        assert ((y - x) % 5000 == 1).all()
    assert x.max() < 5000


# -- bytes ----------------------------------------------------------------------------------------


def test_byte_table_matches_hand_computed_fixture(sp):
    base, lead, boundary = build_byte_tables(sp)
    pid = sp.piece_to_id
    ids = {
        "bos": 1,
        "sp": pid("\u2581"),  # the standalone space piece: 0 base bytes + a space
        "u": pid("ü"),  # 2 UTF-8 bytes, no space
        "byte": pid("<0x7A>"),
        "unk": 0,
    }
    assert ids["sp"] != 0 and ids["u"] != 0 and ids["byte"] != 0
    word = next(i for i in range(sp.vocab_size()) if sp.id_to_piece(i).startswith("\u2581") and len(sp.id_to_piece(i)) == 3)
    w_bytes = len(sp.id_to_piece(word)[1:].encode())
    assert (base[1], boundary[1], base[0], boundary[0]) == (0, True, 0, True)
    assert base[ids["byte"]] == 1 and not lead[ids["byte"]]
    assert base[ids["u"]] == 2 and not lead[ids["u"]]
    assert base[word] == w_bytes and lead[word]
    # stream: BOS ▁word ü <z> ▁word BOS ▁word ; the space after a BOS is not counted
    seq = torch.tensor([1, word, ids["u"], ids["byte"], word, 1, word])
    got = count_bytes(seq[:-1], seq[1:], (base, lead, boundary)).tolist()
    assert got == [w_bytes, 2, 1, w_bytes + 1, 0, w_bytes]


def test_val_stream_bytes_equal_raw_utf8_bytes(corpus, sp):
    """Summed over the stream, the table reproduces the raw text's byte count exactly."""
    tables = build_byte_tables(sp)
    val = load_val_tokens(os.path.join(corpus["dir"], "fineweb_val_*.bin"))
    assert int(count_bytes(val[:-1], val[1:], tables).sum()) == sum(len(d.encode()) for d in corpus["val_docs"])


def _hand_bytes(sp, prev: int, tok: int) -> int:
    """The rule, spelled out with string operations, independent of the table code."""
    if sp.is_control(tok) or sp.is_unknown(tok):
        return 0
    if sp.is_byte(tok):
        return 1
    piece = sp.id_to_piece(tok)
    if piece.startswith("\u2581"):
        space = 0 if (sp.is_control(prev) or sp.is_unknown(prev)) else 1
        return space + len(piece[1:].encode("utf-8"))
    return len(piece.encode("utf-8"))


def test_bpb_equals_canonical_formula_for_a_uniform_model(corpus, sp):
    """A model with all-zero weights predicts uniformly: NLL = ln V per token, exactly."""
    cfg = Config.from_env({"CONFIG": "toy"})
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    tables = build_byte_tables(sp, cfg.vocab_size)
    val = load_val_tokens(os.path.join(corpus["dir"], "fineweb_val_*.bin"))[:3001]
    n_bytes = sum(_hand_bytes(sp, int(p), int(t)) for p, t in zip(val[:-1], val[1:]))
    expected = 3000 * math.log(cfg.vocab_size) / math.log(2) / n_bytes
    for stride in (0, 32):
        res, _ = evaluate(model, val, tables, cfg.eval_seq_len, stride, 8)
        assert res["tokens"] == 3000 and res["bytes"] == n_bytes
        assert res["val_bpb"] == pytest.approx(expected, rel=1e-6)
        assert res["val_loss"] == pytest.approx(math.log(cfg.vocab_size), rel=1e-6)


def test_generated_documents_are_deterministic():
    assert generate_documents(5, seed=3) == generate_documents(5, seed=3)
    assert generate_documents(5, seed=3) != generate_documents(5, seed=4)
