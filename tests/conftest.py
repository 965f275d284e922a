"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Toy tensors: one intra-op thread is as fast and does not stall when cores are shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def committed_reference_record() -> Path | None:
    """The packed reference record committed under examples/ (None when there is none)."""
    found = sorted(p.parent for p in ROOT.glob("examples/*/*reference*/train_gpt.py"))
    return found[0] if found else None


def flip(val, j: int, cfg):
    """A copy of the validation tokens with token j changed (never into a BOS): the C1 probe's input."""
    out = val.clone()
    out[j] = (val[j] + 7) % cfg.vocab_size
    if out[j] == cfg.bos_id:
        out[j] = 5
    return out


@pytest.fixture(scope="session")
def toy_eval():
    """Factory for the evaluation tests: toy_eval(n_val, **env) -> (cfg, model, sp, tables, val).

    The toy config with eval windows of 64 (stride 32, 4 per batch) and the given env overrides, an untrained
    GPT seeded with 0, the session's synthetic tokenizer and byte tables, and its first n_val validation tokens.
    """

    def make(n_val: int, **env):
        import os

        import sentencepiece as spm
        import torch

        from reference_impl.bytes import build_byte_tables
        from reference_impl.config import Config
        from reference_impl.data import load_val_tokens
        from reference_impl.model import GPT
        from reference_impl.synthetic import toy_corpus

        corpus = toy_corpus()
        cfg = Config.from_env({"CONFIG": "toy", "EVAL_SEQ_LEN": "64", "EVAL_STRIDE": "32", "EVAL_BATCH_SEQS": "4",
                               **{k: str(v) for k, v in env.items()}})
        torch.manual_seed(0)
        model = GPT(cfg).eval()
        sp = spm.SentencePieceProcessor(model_file=corpus["tokenizer"])
        val = load_val_tokens(os.path.join(corpus["dir"], "fineweb_val_*.bin"))[:n_val].clone()
        return cfg, model, sp, build_byte_tables(sp, cfg.vocab_size), val

    return make
