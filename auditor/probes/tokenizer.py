"""A tiny sentencepiece model for the probes (byte fallback, unk=0, BOS=1, EOS=2).

Trained once on generated syllable text and cached; the probes only need a real
tokenizer so that a submission's own byte-table builder runs on real pieces.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

VOCAB = 320
VERSION = "v1"


def default_cache() -> Path:
    base = os.environ.get("PGOLF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pgolf")
    return Path(base) / f"probe_tokenizer_{VERSION}_{VOCAB}"


def _text(n_lines: int = 2000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    syl = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el", "or", "un", "ta", "po", "de", "qu", "zi"]
    words = sorted({"".join(rng.choice(syl) for _ in range(rng.randint(1, 3))) for _ in range(400)})
    extra = ["café", "naïve", "Zürich", "déjà", "42", "1999", "!", "?", ","]
    return [" ".join(rng.choice(words + extra) for _ in range(rng.randint(4, 14))).capitalize() + "."
            for _ in range(n_lines)]


def ensure_tokenizer(cache: Path | None = None) -> tuple[str, int]:
    """Path of the cached tokenizer model (trained on first use) and its vocabulary size."""
    import sentencepiece as spm

    cache = Path(cache or default_cache())
    model = cache / "tokenizer.model"
    if not model.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp_prefix = cache / f"tokenizer.{os.getpid()}"
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(_text()), model_prefix=str(tmp_prefix), vocab_size=VOCAB, model_type="bpe",
            byte_fallback=True, character_coverage=0.995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=1, minloglevel=2,
        )
        os.replace(str(tmp_prefix) + ".model", model)
        try:
            os.remove(str(tmp_prefix) + ".vocab")
        except OSError:
            pass
    sp = spm.SentencePieceProcessor(model_file=str(model))
    return str(model), int(sp.vocab_size())
