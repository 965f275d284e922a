"""The challenge's accepted packed form of a script (RULEBOOK: accounting rules).

``exec(lzma.decompress(base64.b85decode("...")))`` ships the same code in fewer
bytes; its shipped bytes are what counts. The folder checks use it to measure
what an unpacked script would weigh packed, and the reference packer to write one.
"""

from __future__ import annotations

import base64
import lzma


def packed_wrapper(source: str) -> str:
    blob = base64.b85encode(lzma.compress(source.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)).decode()
    return f'import lzma,base64\nexec(lzma.decompress(base64.b85decode("{blob}")))\n'


def packed_bytes(source: str) -> int:
    """Bytes ``source`` would ship as, packed."""
    return len(packed_wrapper(source).encode("utf-8"))
