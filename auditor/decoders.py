"""Bounded decoders for the payloads packed scripts ship.

Every decompressor stops one byte past its output limit, so a decompression
bomb is reported (a "bomb" failure) without its output ever being allocated,
and a truncated stream is an error rather than a silent short read. Used by
auditor.source; nothing here knows about Python code.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import io
import lzma
import zlib
from typing import Any, Callable


class DecodeFailure(Exception):
    """A payload was found but could not be decoded; `kind` is the Problem kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Encodings: stdlib functions on bytes/str whose output is smaller than the input.
ENCODINGS: dict[str, tuple[str, Callable[..., bytes]]] = {
    "base64.b85decode": ("b85", base64.b85decode),
    "base64.b64decode": ("b64", base64.b64decode),
    "base64.standard_b64decode": ("b64", base64.standard_b64decode),
    "base64.decodebytes": ("b64", base64.decodebytes),
    "binascii.a2b_base64": ("b64", binascii.a2b_base64),
    "base64.urlsafe_b64decode": ("b64url", base64.urlsafe_b64decode),
    "base64.a85decode": ("a85", base64.a85decode),
    "base64.b32decode": ("b32", base64.b32decode),
    "base64.b16decode": ("hex", base64.b16decode),
    "binascii.unhexlify": ("hex", binascii.unhexlify),
    "binascii.a2b_hex": ("hex", binascii.a2b_hex),
    "bytes.fromhex": ("hex", bytes.fromhex),
}

LZMA_STEP = {lzma.FORMAT_AUTO: "lzma", lzma.FORMAT_XZ: "xz", lzma.FORMAT_ALONE: "lzma-alone", lzma.FORMAT_RAW: "lzma-raw"}


def _bounded(out: bytes, limit: int, finished: bool, codec: str) -> bytes:
    if len(out) > limit:
        raise DecodeFailure("bomb", f"{codec} output exceeds {limit:,} bytes (decompression bomb?)")
    if not finished:
        raise DecodeFailure("decode-error", f"{codec} data is truncated (no end of stream)")
    return out


def _lzma(data: bytes, limit: int, format: int = lzma.FORMAT_AUTO, filters: Any = None) -> bytes:
    decoder = lzma.LZMADecompressor(format=format, filters=filters)
    return _bounded(decoder.decompress(data, max_length=limit + 1), limit, decoder.eof, "lzma")


def _zlib(data: bytes, limit: int, wbits: int = zlib.MAX_WBITS, codec: str = "zlib") -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(data, limit + 1)
    if len(out) <= limit and not decoder.unconsumed_tail:
        out += decoder.flush()
    return _bounded(out, limit, decoder.eof, codec)


def _gzip(data: bytes, limit: int) -> bytes:
    return _zlib(data, limit, 16 + zlib.MAX_WBITS, "gzip")


def _bz2(data: bytes, limit: int) -> bytes:
    decoder = bz2.BZ2Decompressor()
    return _bounded(decoder.decompress(data, max_length=limit + 1), limit, decoder.eof, "bz2")


def _zstd(data: bytes, limit: int) -> bytes:
    zstandard = _optional("zstandard", "zstd")
    out = bytearray()
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    while len(out) <= limit:
        chunk = reader.read(min(1 << 20, limit + 1 - len(out)))
        if not chunk:
            break
        out += chunk
    if len(out) > limit:
        raise DecodeFailure("bomb", f"zstd output exceeds {limit:,} bytes (decompression bomb?)")
    # The stream reader ends silently on truncated input; the output is now known
    # to be small, so a one-shot object can tell whether the frame was complete.
    checker = zstandard.ZstdDecompressor().decompressobj()
    checker.decompress(data)
    return _bounded(bytes(out), limit, checker.eof, "zstd")


def _brotli(data: bytes, limit: int) -> bytes:
    brotli = _optional("brotli", "brotli")
    decoder = brotli.Decompressor()
    try:
        out = decoder.process(data, output_buffer_limit=limit + 1)
    except TypeError:  # brotli < 1.2 cannot cap the output: feed one input byte at a time
        parts, size = [], 0
        for at in range(len(data)):
            parts.append(decoder.process(data[at : at + 1]))
            size += len(parts[-1])
            if size > limit or decoder.is_finished():
                break
        return _bounded(b"".join(parts), limit, decoder.is_finished(), "brotli")
    while len(out) <= limit and not decoder.is_finished() and not decoder.can_accept_more_data():
        out += decoder.process(b"", output_buffer_limit=limit + 1 - len(out))
    return _bounded(out, limit, decoder.is_finished(), "brotli")


def _optional(module: str, codec: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise DecodeFailure("missing-codec", f"{codec} payload cannot be decoded: the {module} package is not installed") from None


# qualified call name -> (step, decoder, parameter names after the data)
DECOMPRESSORS: dict[str, tuple[str, Callable[..., bytes], tuple[str, ...]]] = {
    "lzma.decompress": ("lzma", _lzma, ("format", "memlimit", "filters")),
    "zlib.decompress": ("zlib", _zlib, ("wbits", "bufsize")),
    "gzip.decompress": ("gzip", _gzip, ()),
    "bz2.decompress": ("bz2", _bz2, ()),
    "zstandard.decompress": ("zstd", _zstd, ("max_output_size",)),
    "compression.zstd.decompress": ("zstd", _zstd, ()),
    "brotli.decompress": ("brotli", _brotli, ()),
}

# Decompressor objects: "<constructor>().<method>" -> (step, decoder, constructor parameters)
DECOMPRESSOR_OBJECTS: dict[str, tuple[str, Callable[..., bytes], tuple[str, ...]]] = {
    "lzma.LZMADecompressor().decompress": ("lzma", _lzma, ("format", "memlimit", "filters")),
    "zlib.decompressobj().decompress": ("zlib", _zlib, ("wbits", "zdict")),
    "bz2.BZ2Decompressor().decompress": ("bz2", _bz2, ()),
    "zstandard.ZstdDecompressor().decompress": ("zstd", _zstd, ()),
    "brotli.Decompressor().process": ("brotli", _brotli, ()),
}


def by_magic(data: bytes) -> tuple[str, Callable[[bytes, int], bytes]] | None:
    if data.startswith(b"\xfd7zXZ\x00"):
        return "lzma", _lzma
    if data.startswith(b"\x5d\x00\x00"):
        return "lzma", _lzma
    if data.startswith(b"\x1f\x8b"):
        return "gzip", _gzip
    if data.startswith(b"BZh"):
        return "bz2", _bz2
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd", _zstd
    if len(data) > 2 and data[0] & 0x0F == 8 and int.from_bytes(data[:2], "big") % 31 == 0:
        return "zlib", _zlib
    return None
