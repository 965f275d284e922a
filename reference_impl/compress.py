"""Artifact compression: zstd level 22 (default), lzma, brotli when installed, zlib."""

from __future__ import annotations

import lzma
import zlib


def available_codecs() -> list[str]:
    codecs = ["lzma", "zlib"]
    try:
        import zstandard  # noqa: F401

        codecs.insert(0, "zstd")
    except ImportError:
        pass
    try:
        import brotli  # noqa: F401

        codecs.append("brotli")
    except ImportError:
        pass
    return codecs


def compress(data: bytes, codec: str = "zstd") -> bytes:
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=22).compress(data)
    if codec == "lzma":
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    if codec == "brotli":
        import brotli

        return brotli.compress(data, quality=11)
    if codec == "zlib":
        return zlib.compress(data, 9)
    raise ValueError(f"unknown codec {codec!r}; available: {available_codecs()}")


def decompress(data: bytes, codec: str = "zstd") -> bytes:
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data)
    if codec == "lzma":
        return lzma.decompress(data)
    if codec == "brotli":
        import brotli

        return brotli.decompress(data)
    if codec == "zlib":
        return zlib.decompress(data)
    raise ValueError(f"unknown codec {codec!r}; available: {available_codecs()}")
