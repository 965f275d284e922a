"""A synthetic corpus for CPU runs: generated text, a tiny sentencepiece model
trained on it, and train/val shards of BOS-separated documents.

The text has learnable structure (a word-level Markov chain over a Zipf-ish
lexicon), some multi-byte UTF-8 words, and a few rare characters left out of the
tokenizer's character coverage so that byte-fallback tokens really occur; the
byte tables are exercised on every piece type.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import tempfile

import numpy as np

from reference_impl.data import write_shard

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el", "or", "un", "ta", "po", "de"]
_ACCENTED = ["café", "naïve", "zürich", "façade", "señor", "crème", "déjà", "smörgås"]
_RARE = ["😀", "漢字", "ß", "Ω", "→", "€"]


def _lexicon(rng: random.Random, n_words: int) -> list[str]:
    words = set()
    while len(words) < n_words:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))))
    return sorted(words) + _ACCENTED


def generate_documents(n_docs: int, seed: int = 0, n_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    lex = _lexicon(random.Random(1234), n_words)  # the language is fixed; only sampling varies
    trans_rng = random.Random(99)
    # each word prefers a handful of successors: learnable bigram structure
    successors = {w: trans_rng.sample(lex, 4) for w in lex}
    weights = [1.0 / (i + 1) for i in range(len(lex))]
    docs = []
    for _ in range(n_docs):
        sentences = []
        for _ in range(rng.randint(1, 4)):
            w = rng.choices(lex, weights)[0]
            words = [w]
            for _ in range(rng.randint(3, 12)):
                w = rng.choice(successors[w]) if rng.random() < 0.8 else rng.choices(lex, weights)[0]
                words.append(w)
            if rng.random() < 0.05:
                words.insert(rng.randrange(len(words)), rng.choice(_RARE))
            if rng.random() < 0.2:
                words.append(str(rng.randint(0, 999)))
            sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
        docs.append(" ".join(sentences))
    return docs


def train_tokenizer(docs: list[str], out_dir: str, vocab_size: int) -> str:
    """Train a BPE sentencepiece model with byte fallback; unk=0, BOS=1, EOS=2."""
    import sentencepiece as spm

    prefix = os.path.join(out_dir, "tokenizer")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(docs),
        model_prefix=prefix,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return prefix + ".model"


def encode_stream(sp, docs: list[str], bos_id: int = 1) -> np.ndarray:
    ids: list[int] = []
    for piece_ids in sp.encode(docs):
        ids.append(bos_id)
        ids.extend(piece_ids)
    return np.asarray(ids, dtype=np.int64)


def make_corpus(
    out_dir: str,
    vocab_size: int = 512,
    n_train_docs: int = 3000,
    n_val_docs: int = 300,
    n_train_shards: int = 2,
    seed: int = 0,
) -> dict:
    """Write tokenizer.model, fineweb_train_*.bin and fineweb_val_000000.bin into out_dir."""
    import sentencepiece as spm

    os.makedirs(out_dir, exist_ok=True)
    train_docs = generate_documents(n_train_docs, seed=seed)
    val_docs = generate_documents(n_val_docs, seed=seed + 10_000)
    model_path = train_tokenizer(train_docs, out_dir, vocab_size)
    sp = spm.SentencePieceProcessor(model_file=model_path)
    val = encode_stream(sp, val_docs)
    write_shard(os.path.join(out_dir, "fineweb_val_000000.bin"), val)
    train = encode_stream(sp, train_docs)
    for i, part in enumerate(np.array_split(train, n_train_shards)):
        write_shard(os.path.join(out_dir, f"fineweb_train_{i:06d}.bin"), part)
    return {"tokenizer": model_path, "val_tokens": int(val.size), "train_tokens": int(train.size),
            "train_shards": n_train_shards, "val_docs": val_docs}


@functools.lru_cache(maxsize=None)
def toy_corpus(vocab_size: int = 512) -> dict:
    """One small corpus per process (tests share it); removed at exit."""
    out = tempfile.mkdtemp(prefix="pgolf_toy_")
    atexit.register(shutil.rmtree, out, True)
    info = make_corpus(out, vocab_size=vocab_size, n_train_docs=1500, n_val_docs=150)
    info["dir"] = out
    return info
