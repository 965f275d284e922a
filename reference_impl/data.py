"""Token shards and loaders.

Shard format (the challenge's): a header of 256 little-endian int32 (magic
20240520, version 1, token count, rest zero), then `count` uint16 tokens.
Training data is streamed shard by shard; every rank reads the same global
batch and keeps its own slice, so no coordination is needed. Validation tokens
are loaded whole: evaluation must cover all of them.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import torch

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256


def write_shard(path: str, tokens) -> None:
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise ValueError("tokens must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    os.replace(tmp, path)


def read_header(path: str) -> int:
    """Validate the header and return the token count."""
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS or header[0] != SHARD_MAGIC:
        raise ValueError(f"{path}: bad magic (not a token shard)")
    if header[1] != SHARD_VERSION:
        raise ValueError(f"{path}: unsupported version {header[1]}")
    count = int(header[2])
    expected = HEADER_INTS * 4 + count * 2
    if os.path.getsize(path) != expected:
        raise ValueError(f"{path}: size {os.path.getsize(path)} != header says {expected}")
    return count


def read_shard(path: str) -> np.ndarray:
    count = read_header(path)
    return np.fromfile(path, dtype="<u2", count=count, offset=HEADER_INTS * 4)


def list_shards(pattern: str) -> list[str]:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no shards match {pattern}")
    return files


def load_val_tokens(pattern: str) -> torch.Tensor:
    """All validation tokens, concatenated in shard order (the canonical stream)."""
    arrays = [read_shard(p) for p in list_shards(pattern)]
    return torch.from_numpy(np.concatenate(arrays).astype(np.int64))


class TokenStream:
    """Reads shards in order, forever, handing out contiguous token spans."""

    def __init__(self, pattern: str):
        self.files = list_shards(pattern)
        self.file_idx = -1
        self.tokens = np.zeros(0, dtype=np.uint16)
        self.pos = 0
        self._next_file()

    def _next_file(self) -> None:
        self.file_idx = (self.file_idx + 1) % len(self.files)
        self.tokens = read_shard(self.files[self.file_idx])
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        parts, left = [], n
        while left > 0:
            if self.pos >= self.tokens.size:
                self._next_file()
            chunk = self.tokens[self.pos : self.pos + left]
            parts.append(chunk)
            self.pos += chunk.size
            left -= chunk.size
        return np.concatenate(parts)


class DistributedTokenLoader:
    """Each call consumes one global batch; rank r keeps the r-th contiguous slice."""

    def __init__(self, pattern: str, rank: int, world_size: int):
        self.stream = TokenStream(pattern)
        self.rank, self.world_size = rank, world_size

    def next_batch(self, global_tokens: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        per_rank = global_tokens // self.world_size
        per_rank -= per_rank % seq_len
        if per_rank <= 0:
            raise ValueError("train_batch_tokens too small for world_size * train_seq_len")
        span = self.stream.take(per_rank * self.world_size + 1)
        start = self.rank * per_rank
        local = torch.from_numpy(span[start : start + per_rank + 1].astype(np.int64))
        x = local[:-1].view(-1, seq_len)
        y = local[1:].view(-1, seq_len)
        return x, y
