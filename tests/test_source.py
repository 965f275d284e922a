"""Tests for auditor.source: static unpacking of packed submission code.

Every payload is packed here, from small programs written for the tests, with
the same stdlib / zstandard / brotli calls a submitter would use. Nothing is
copied from real submissions.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import lzma
import random
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import brotli
import pytest
import zstandard

from auditor.source import Layer, Limits, SourceUnit, follow_links, unpack_bytes, unpack_file

PROGRAM = "import os\n\n\ndef main():\n    return int(os.environ.get('SEED', '1337'))\n\n\nmain()\n"
IMPORTS = "import base64, binascii, bz2, gzip, lzma, zlib\nimport brotli, zstandard\n"
RAW_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]

# name -> (compress, call template with @ for the data, step recorded by the auditor)
CODECS = {
    "lzma": (lzma.compress, "lzma.decompress(@)", "lzma"),
    "xz": (lambda b: lzma.compress(b, format=lzma.FORMAT_XZ), "lzma.decompress(@, format=lzma.FORMAT_XZ)", "xz"),
    "alone": (lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE), "lzma.decompress(@, lzma.FORMAT_ALONE)", "lzma-alone"),
    "raw": (
        lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=RAW_FILTERS),
        'lzma.decompress(@, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])',
        "lzma-raw",
    ),
    "zlib": (lambda b: zlib.compress(b, 9), "zlib.decompress(@)", "zlib"),
    "gzip": (lambda b: gzip.compress(b, mtime=0), "gzip.decompress(@)", "gzip"),
    "bz2": (bz2.compress, "bz2.decompress(@)", "bz2"),
    "zstd": (lambda b: zstandard.ZstdCompressor(level=19).compress(b), "zstandard.ZstdDecompressor().decompress(@)", "zstd"),
    "brotli": (brotli.compress, "brotli.decompress(@)", "brotli"),
}

# name -> (encode bytes into a Python literal, call template, step or None for a raw bytes literal)
ENCODINGS = {
    "b85": (lambda b: repr(base64.b85encode(b).decode()), "base64.b85decode(@)", "b85"),
    "b64": (lambda b: repr(base64.b64encode(b)), "base64.b64decode(@)", "b64"),
    "b64url": (lambda b: repr(base64.urlsafe_b64encode(b).decode()), "base64.urlsafe_b64decode(@)", "b64url"),
    "a85": (lambda b: repr(base64.a85encode(b).decode()), "base64.a85decode(@)", "a85"),
    "fromhex": (lambda b: repr(b.hex()), "bytes.fromhex(@)", "hex"),
    "unhexlify": (lambda b: repr(binascii.hexlify(b)), "binascii.unhexlify(@)", "hex"),
    "bytes": (repr, "@", None),
}


def pack(program: str, codec: str = "lzma", encoding: str = "b85", sink: str = "exec(@)") -> str:
    """A packed script: the imports on lines 1-2, the payload on line 3."""
    compress, decompress, _ = CODECS[codec]
    encode, decode, _ = ENCODINGS[encoding]
    literal = encode(compress(program.encode("utf-8")))
    return IMPORTS + sink.replace("@", decompress.replace("@", decode.replace("@", literal))) + "\n"


def steps_of(codec: str, encoding: str) -> tuple[str, ...]:
    step = ENCODINGS[encoding][2]
    return ((step,) if step else ()) + (CODECS[codec][2],)


def unpack(source: str | bytes, **kwargs) -> SourceUnit:
    data = source.encode("utf-8") if isinstance(source, str) else source
    return unpack_bytes(data, "train_gpt.py", **kwargs)


def kinds(unit: SourceUnit) -> list[str]:
    return [problem.kind for problem in unit.problems]


def decoded(unit: SourceUnit) -> list[Layer]:
    return [layer for layer in unit.layers if layer.parent is not None]


# ------------------------------------------------------------ every codec chain


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_each_codec_with_each_encoding_is_unpacked(codec, encoding):
    unit = unpack(pack(PROGRAM, codec, encoding))

    assert unit.problems == []
    steps = steps_of(codec, encoding)
    layer = unit.layer("shipped>" + ">".join(steps))
    assert layer.text == PROGRAM
    assert layer.steps == steps
    assert layer.parent == "shipped"
    assert layer.line == 3
    assert layer.executed is True
    assert unit.packed
    assert [l.name for l in unit.effective_layers] == ["shipped", layer.name]


def test_shipped_layer_is_the_file_as_committed():
    source = pack(PROGRAM)
    unit = unpack(source)

    assert unit.layers[0].name == "shipped"
    assert unit.layers[0].text == source
    assert unit.layers[0].parent is None and unit.layers[0].line is None
    assert unit.shipped_bytes == len(source.encode())
    assert unit.unpacked_bytes() == len(PROGRAM.encode())


def test_plain_script_is_not_packed():
    unit = unpack(PROGRAM)

    assert [l.name for l in unit.layers] == ["shipped"]
    assert not unit.packed
    assert unit.unpacked_bytes() == unit.shipped_bytes == len(PROGRAM)
    assert unit.problems == [] and unit.links == []


def test_layer_lookup_of_unknown_name_raises_key_error():
    with pytest.raises(KeyError):
        unpack(PROGRAM).layer("shipped>b85>lzma")


# --------------------------------------------------------------- call shapes


def test_alias_imports_and_raw_filters_in_the_call():
    payload = base64.b85encode(lzma.compress(PROGRAM.encode(), format=lzma.FORMAT_RAW, filters=RAW_FILTERS)).decode()
    source = (
        "import lzma as L,base64 as B\n"
        f'exec(L.decompress(B.b85decode("{payload}"),format=L.FORMAT_RAW,'
        'filters=[{"id":L.FILTER_LZMA2,"preset":9|L.PRESET_EXTREME}]))\n'
    )
    unit = unpack(source)

    assert unit.problems == []
    assert unit.layer("shipped>b85>lzma-raw").text == PROGRAM


def test_raw_filters_from_a_variable_with_dict_size():
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20, "lc": 3}]
    payload = base64.b64encode(lzma.compress(PROGRAM.encode(), format=lzma.FORMAT_RAW, filters=filters)).decode()
    source = (
        "import lzma, base64\n"
        'F = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20, "lc": 3}]\n'
        f'exec(lzma.decompress(base64.b64decode("{payload}"), format=lzma.FORMAT_RAW, filters=F))\n'
    )
    assert unpack(source).layer("shipped>b64>lzma-raw").text == PROGRAM


def test_from_imports_with_aliases():
    payload = base64.b85encode(zlib.compress(PROGRAM.encode())).decode()
    source = (
        "from zlib import decompress as D\n"
        "from base64 import b85decode\n"
        f'exec(D(b85decode("{payload}")))\n'
    )
    assert unpack(source).layer("shipped>b85>zlib").text == PROGRAM


def test_star_import_and_dunder_import():
    payload = base64.b85encode(bz2.compress(PROGRAM.encode())).decode()
    source = f'from base64 import *\nexec(__import__("bz2").decompress(b85decode("{payload}")))\n'
    assert unpack(source).layer("shipped>b85>bz2").text == PROGRAM


@pytest.mark.parametrize(
    "call, step",
    [
        ("lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS).decompress(@)", "lzma-raw"),
        ("zlib.decompressobj(-15).decompress(@)", "zlib"),
        ("bz2.BZ2Decompressor().decompress(@)", "bz2"),
        ("D.decompress(@)", "zstd"),
    ],
)
def test_decompressor_objects(call, step):
    data = {
        "lzma-raw": lzma.compress(PROGRAM.encode(), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]),
        "zlib": zlib.compress(PROGRAM.encode())[2:-4],  # raw deflate for wbits=-15
        "bz2": bz2.compress(PROGRAM.encode()),
        "zstd": zstandard.ZstdCompressor().compress(PROGRAM.encode()),
    }[step]
    source = (
        "import bz2, lzma, zlib, zstandard\n"
        'FILTERS = [{"id": lzma.FILTER_LZMA2}]\n'
        "D = zstandard.ZstdDecompressor()\n"
        f"exec({call.replace('@', repr(data))})\n"
    )
    unit = unpack(source)
    assert unit.problems == []
    assert unit.layer(f"shipped>{step}").text == PROGRAM


@pytest.mark.parametrize(
    "sink",
    [
        "exec(@.decode())",
        "exec(@.decode('utf-8'))",
        "exec(str(@, 'utf-8'))",
        "exec(str(@, encoding='utf-8'))",
        "exec(compile(@, '<packed>', 'exec'))",
        "exec(compile(@.decode(), filename='<packed>', mode='exec'), globals())",
        "eval(compile(@, '<packed>', 'exec'))",
    ],
)
def test_decode_wrappers_and_sinks(sink):
    unit = unpack(pack(PROGRAM, "zlib", "b64", sink=sink))

    assert unit.problems == []
    layer = unit.layer("shipped>b64>zlib")
    assert layer.text == PROGRAM and layer.executed
    assert len(decoded(unit)) == 1  # compile inside exec is one sink, not two


def test_variable_assigned_payload_origin_and_lines():
    payload = base64.b85encode(lzma.compress(PROGRAM.encode())).decode()
    source = (
        "import lzma, base64\n"
        "# a packed script\n"
        f'_c = "{payload}"\n'
        "\n"
        "exec(lzma.decompress(base64.b85decode(_c)))\n"
    )
    layer = unpack(source).layer("shipped>b85>lzma")

    assert layer.line == 5
    assert layer.origin == (
        f"exec(lzma.decompress(base64.b85decode(_c))) at shipped:5, "
        f"with _c = <{len(payload):,}-char literal> (line 3)"
    )


def test_origin_text_of_an_inline_literal():
    payload = base64.b85encode(lzma.compress(PROGRAM.encode())).decode()
    source = f'import lzma, base64\nexec(lzma.decompress(base64.b85decode("{payload}")))\n'
    layer = unpack(source).layer("shipped>b85>lzma")

    assert layer.origin == f"exec(lzma.decompress(base64.b85decode(<{len(payload):,}-char literal>))) at shipped:2"


def test_payload_split_into_implicitly_concatenated_literals_and_plus():
    payload = base64.b85encode(lzma.compress(PROGRAM.encode())).decode()
    a, b, c = payload[:20], payload[20:50], payload[50:]
    source = (
        "import lzma, base64\n"
        f'_c = ("{a}"\n      "{b}")\n'
        f'_c = _c + "{c}"\n'
        "exec(lzma.decompress(base64.b85decode(_c)))\n"
    )
    unit = unpack(source)
    assert unit.problems == []
    assert unit.layer("shipped>b85>lzma").text == PROGRAM
    assert unit.layer("shipped>b85>lzma").line == 5


def test_payload_joined_from_a_list_of_literals():
    payload = base64.b64encode(zlib.compress(PROGRAM.encode())).decode()
    source = f'import zlib, base64\nparts = {[payload[:30], payload[30:]]!r}\nexec(zlib.decompress(base64.b64decode("".join(parts))))\n'
    assert unpack(source).layer("shipped>b64>zlib").text == PROGRAM


def test_exec_of_a_plain_string_literal_is_a_layer():
    unit = unpack('exec("import os\\nprint(os.getcwd())\\n")\n')

    layer = unit.layer("shipped>literal")
    assert layer.text == "import os\nprint(os.getcwd())\n"
    assert layer.executed and layer.steps == ("literal",)


def test_source_assigned_then_exec_of_the_name():
    payload = base64.b85encode(gzip.compress(PROGRAM.encode())).decode()
    source = (
        "import gzip, base64\n"
        f'src = gzip.decompress(base64.b85decode("{payload}")).decode()\n'
        "exec(src)\n"
    )
    unit = unpack(source)
    assert [l.name for l in decoded(unit)] == ["shipped>b85>gzip"]  # once, as run code
    layer = unit.layer("shipped>b85>gzip")
    assert layer.executed and layer.line == 3
    assert "with src = gzip.decompress(" in layer.origin


# -------------------------------------------------------------------- nesting


def test_nested_packing_three_deep():
    inner = pack(PROGRAM, "bz2", "fromhex")
    middle = pack(inner, "zlib", "b64")
    outer = pack(middle, "lzma", "b85")
    unit = unpack(outer)

    assert unit.problems == []
    names = [l.name for l in unit.layers]
    assert names == ["shipped", "shipped>b85>lzma", "shipped>b85>lzma>b64>zlib", "shipped>b85>lzma>b64>zlib>hex>bz2"]
    assert unit.layer(names[1]).text == middle
    assert unit.layer(names[2]).text == inner
    assert unit.layer(names[3]).text == PROGRAM
    assert [unit.layer(n).parent for n in names[1:]] == names[:-1]
    assert all(unit.layer(n).line == 3 for n in names[1:])
    assert unit.unpacked_bytes() == len(PROGRAM.encode())
    assert unit.shipped_bytes == len(outer.encode())


def test_second_payload_with_the_same_steps_gets_a_suffix():
    first = pack("x = 1\ny = 2\n")
    second = pack("z = 3\nw = 4\n").split("\n", 2)[2]  # its exec line only
    third = pack("q = 5\nr = 6\n", "zlib", "b64").split("\n", 2)[2]
    unit = unpack(first + second + third)

    assert [l.name for l in decoded(unit)] == ["shipped>b85>lzma", "shipped>b85>lzma#2", "shipped>b64>zlib"]
    assert unit.layer("shipped>b85>lzma#2").text == "z = 3\nw = 4\n"
    assert unit.layer("shipped>b85>lzma#2").line == 4
    assert unit.unpacked_bytes() == len("x = 1\ny = 2\n") * 3


def test_nesting_deeper_than_the_limit_is_a_problem_and_not_followed():
    source = PROGRAM
    for _ in range(4):
        source = pack(source, "zlib", "b64")
    unit = unpack(source, limits=Limits(max_depth=2))

    assert [l.name for l in unit.layers] == ["shipped", "shipped>b64>zlib", "shipped>b64>zlib>b64>zlib"]
    (problem,) = unit.problems
    assert problem.kind == "depth"
    assert problem.layer == "shipped>b64>zlib>b64>zlib" and problem.line == 3
    assert "deeper than 2" in problem.message


def test_default_depth_limit_stops_ten_levels():
    source = PROGRAM
    for _ in range(10):
        source = pack(source, "zlib", "b64")
    unit = unpack(source)

    assert len(decoded(unit)) == 8
    assert kinds(unit) == ["depth"]


# ----------------------------------------------------------------- bombs


def test_one_gigabyte_zstd_bomb_is_reported_without_allocating_it():
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(1024)) + compressor.flush()
    source = f"import zstandard\nexec(zstandard.ZstdDecompressor().decompress({bomb!r}))\n"

    tracemalloc.start()
    started = time.perf_counter()
    try:
        unit = unpack(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 10
    assert peak < 100 * 2**20  # bounded by the 16 MiB layer limit, far from 1 GiB
    (problem,) = unit.problems
    assert problem.kind == "bomb" and problem.line == 2 and problem.layer == "shipped"
    assert f"{Limits().max_layer_bytes:,}" in problem.message
    assert decoded(unit) == []


def _zeros(codec: str, size: int) -> bytes:
    return CODECS[codec][0](bytes(size))


@pytest.mark.parametrize("codec", ["lzma", "xz", "raw", "zlib", "gzip", "bz2", "zstd", "brotli"])
def test_bomb_over_the_layer_limit_for_every_codec(codec):
    source = IMPORTS + f"exec({CODECS[codec][1].replace('@', repr(_zeros(codec, 4 << 20)))})\n"
    unit = unpack(source, limits=Limits(max_layer_bytes=1 << 20))

    assert kinds(unit) == ["bomb"]
    assert unit.problems[0].line == 3
    assert decoded(unit) == []


def test_total_budget_stops_the_second_payload():
    filler = "# " + "x" * 78 + "\n"
    program = filler * 8000  # 640,000 bytes of valid Python
    first = pack(program, "zlib", "b64")
    second = pack(program, "zlib", "b64").split("\n", 2)[2]
    # the analysis cap is raised past the program: this test is about the decode budget
    unit = unpack(first + second, limits=Limits(max_layer_bytes=1 << 20, max_total_bytes=1 << 20,
                                                max_analysed_chars=1 << 20))

    assert [l.name for l in decoded(unit)] == ["shipped>b64>zlib"]
    assert kinds(unit) == ["bomb"]
    assert unit.problems[0].line == 4


# ------------------------------------------------------------ bad input files


def test_empty_file():
    for data in (b"", b"  \n\n"):
        unit = unpack(data)
        assert kinds(unit) == ["empty"]
        assert unit.layers[0].name == "shipped"
        assert unit.shipped_bytes == len(data)


def test_binary_garbage():
    data = random.Random(7).randbytes(4096)
    unit = unpack(data)

    assert kinds(unit) == ["binary"]
    assert unit.shipped_bytes == 4096
    assert [l.name for l in unit.layers] == ["shipped"]


def test_non_utf8_file_is_reported_and_still_unpacked():
    source = ("# caf\xe9\n" + pack(PROGRAM)).encode("latin-1")
    unit = unpack(source)

    assert kinds(unit) == ["non-utf8"]
    assert "\ufffd" in unit.layers[0].text
    assert unit.shipped_bytes == len(source)
    assert unit.layer("shipped>b85>lzma").text == PROGRAM  # decoding goes on


def test_declared_source_encoding_is_honoured():
    source = "# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n".encode("latin-1")
    unit = unpack(source)

    assert unit.problems == []
    assert "caf\xe9" in unit.layers[0].text


def test_payload_that_decodes_to_binary_is_a_problem():
    garbage = random.Random(3).randbytes(512)
    source = f"import zlib\nexec(zlib.decompress({zlib.compress(garbage)!r}))\n"
    unit = unpack(source)

    assert kinds(unit) == ["binary"]
    assert decoded(unit) == []


def test_payload_that_is_not_utf8_is_reported():
    data = zlib.compress("x = 1  # caf\xe9".encode("latin-1"))
    source = f"import zlib\nexec(zlib.decompress({data!r}))\n"
    unit = unpack(source)

    assert kinds(unit) == ["non-utf8"]
    assert unit.layer("shipped>zlib").text.startswith("x = 1")


def test_syntax_error_in_a_decoded_layer_keeps_its_text():
    broken = "import os\n\ndef f(:\n    pass\n"
    unit = unpack(pack(broken, "zlib", "b85"))

    layer = unit.layer("shipped>b85>zlib")
    assert layer.text == broken
    (problem,) = unit.problems
    assert problem.kind == "syntax-error"
    assert problem.layer == "shipped>b85>zlib"
    assert "shipped>b85>zlib" in problem.message and "not valid Python" in problem.message


def test_syntax_error_in_the_shipped_file():
    unit = unpack("x = (1,\n")
    assert kinds(unit) == ["syntax-error"]
    assert unit.problems[0].layer == "shipped"


def test_invalid_base64_is_a_decode_error():
    unit = unpack('import base64, zlib\nexec(zlib.decompress(base64.b64decode("not base64!!", validate=True)))\n')

    assert kinds(unit) == ["decode-error"]
    assert unit.problems[0].line == 2 and "b64" in unit.problems[0].message


def test_truncated_stream_is_a_decode_error():
    for codec in ("lzma", "zlib", "bz2", "zstd", "brotli"):
        data = CODECS[codec][0](PROGRAM.encode() * 20)[:-8]
        unit = unpack(IMPORTS + f"exec({CODECS[codec][1].replace('@', repr(data))})\n")
        assert kinds(unit) == ["decode-error"], codec


def test_missing_brotli_is_a_missing_codec_problem(monkeypatch):
    source = pack(PROGRAM, "brotli", "b85")
    monkeypatch.setitem(sys.modules, "brotli", None)  # makes "import brotli" fail
    unit = unpack(source)

    assert kinds(unit) == ["missing-codec"]
    assert "brotli" in unit.problems[0].message and unit.problems[0].line == 3


def test_unresolvable_exec_is_reported_but_config_eval_is_not():
    unit = unpack("import os, lzma\nexec(lzma.decompress(load_blob()))\nx = eval(os.environ.get('X', '1'))\n")

    assert kinds(unit) == ["unresolved"]
    assert unit.problems[0].line == 2


def test_unpack_file_reads_size_and_path(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(pack(PROGRAM))
    unit = unpack_file(script)

    assert unit.path == script and unit.name == "train_gpt.py"
    assert unit.shipped_bytes == script.stat().st_size
    assert unit.layer("shipped>b85>lzma").text == PROGRAM


def test_file_over_the_size_limit_is_not_read(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(PROGRAM * 10)
    unit = unpack_file(script, limits=Limits(max_file_bytes=100))

    assert kinds(unit) == ["too-large"]
    assert unit.shipped_bytes == len(PROGRAM) * 10
    assert unit.layers[0].text == ""


def test_missing_file_is_a_problem_not_an_exception(tmp_path):
    unit = unpack_file(tmp_path / "nope.py")
    assert kinds(unit) == ["unreadable"]


def test_nothing_is_executed(tmp_path):
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n"
    shipped = evil + pack(evil, "zlib", "b64") + f"exec({evil!r})\n"
    unit = unpack(shipped)

    assert not marker.exists()
    assert len(decoded(unit)) == 2


# ----------------------------------------------------- literals that are not run


def test_decoded_literal_that_is_not_executed():
    payload = base64.b85encode(lzma.compress(PROGRAM.encode())).decode()
    source = f'import lzma, base64\nSRC = lzma.decompress(base64.b85decode("{payload}")).decode()\nprint(len(SRC))\n'
    unit = unpack(source)

    layer = unit.layer("shipped>b85>lzma")
    assert layer.text == PROGRAM and layer.executed is False and layer.line == 2
    assert "not run" in layer.origin
    assert not unit.packed
    assert unit.effective_layers == [unit.layers[0]]
    assert unit.unpacked_bytes() == unit.shipped_bytes


def test_literal_no_code_decodes_is_sniffed():
    payload = base64.b85encode(lzma.compress(PROGRAM.encode())).decode()
    source = f'BLOB = "{payload}"\nrun = getattr(__builtins__, "ex" + "ec")\n'
    unit = unpack(source)

    layer = unit.layer("shipped>b85>lzma")
    assert layer.text == PROGRAM and layer.executed is False and layer.line == 1
    assert "no code decodes it" in layer.origin


def test_compressed_data_that_is_not_code_is_not_a_layer():
    weights = bytes(range(256)) * 64
    text_blob = "the quick brown fox " * 20
    source = (
        "import zlib, base64\n"
        f"W = zlib.decompress({zlib.compress(weights)!r})\n"
        f"T = zlib.decompress(base64.b64decode({base64.b64encode(zlib.compress(text_blob.encode())).decode()!r}))\n"
        f"TOKEN = base64.b64decode('aGVsbG8=').decode()\n"
    )
    unit = unpack(source)
    assert decoded(unit) == [] and unit.problems == []


def test_exec_inside_a_layer_that_never_runs_is_not_effective():
    inner = pack(PROGRAM, "zlib", "b64")
    payload = base64.b85encode(lzma.compress(inner.encode())).decode()
    unit = unpack(f'import lzma, base64\nSRC = lzma.decompress(base64.b85decode("{payload}"))\n')

    assert unit.layer("shipped>b85>lzma>b64>zlib").executed is True
    assert [l.name for l in unit.effective_layers] == ["shipped"]
    assert not unit.packed


# ---------------------------------------------------------------------- links


@pytest.mark.parametrize(
    "code",
    [
        'exec(open("helper.py").read())',
        'exec(open("helper.py", "r", encoding="utf-8").read())',
        'exec(open(os.path.join(os.path.dirname(__file__), "helper.py")).read())',
        'exec(Path("helper.py").read_text())',
        'exec((Path(__file__).parent / "helper.py").read_text())',
        'exec(pathlib.Path(__file__).with_name("helper.py").read_text(encoding="utf-8"))',
        'exec(compile(open("helper.py").read(), "helper.py", "exec"))',
        'with open("helper.py") as fh:\n    exec(fh.read())',
        'runpy.run_path("helper.py")',
        'exec(open(__file__.replace("train_gpt.py", "helper.py")).read())',
    ],
)
def test_exec_of_a_sibling_file_is_an_uncounted_link(tmp_path, code):
    (tmp_path / "helper.py").write_text(PROGRAM)
    source = "import os, pathlib, runpy\nfrom pathlib import Path\n" + code + "\n"
    script = tmp_path / "train_gpt.py"
    script.write_text(source)
    unit = unpack_file(script)

    assert unit.problems == []
    (link,) = unit.links
    assert (link.kind, link.target, link.layer) == ("exec-file", "helper.py", "shipped")
    assert link.path == (tmp_path / "helper.py").resolve()
    assert link.line == len(source.splitlines())  # the line that runs it


def test_exec_of_a_compressed_sibling_file_is_a_link(tmp_path):
    (tmp_path / "model.py.gz").write_bytes(gzip.compress(PROGRAM.encode()))
    script = tmp_path / "train_gpt.py"
    script.write_text('import gzip, zlib\nexec(gzip.open("model.py.gz").read())\nexec(zlib.decompress(open("blob.z", "rb").read()))\n')
    unit = unpack_file(script)

    assert unit.problems == []
    assert [(l.target, l.path, l.line) for l in unit.links] == [
        ("model.py.gz", (tmp_path / "model.py.gz").resolve(), 2),
        ("blob.z", None, 3),
    ]


def test_exec_of_a_missing_sibling_file(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text('exec(open("gone.py").read())\n')
    (link,) = unpack_file(script).links

    assert (link.kind, link.target, link.path, link.line) == ("exec-file", "gone.py", None, 1)


def test_file_outside_the_record_folder_is_not_resolved(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    (tmp_path / "outside.py").write_text(PROGRAM)
    (record / "train_gpt.py").write_text('exec(open("../outside.py").read())\n')
    (link,) = unpack_file(record / "train_gpt.py").links

    assert link.target == "../outside.py" and link.path is None


def test_exec_of_a_file_with_unknown_name_is_unresolved(tmp_path):
    unit = unpack("import sys\nexec(open(sys.argv[1]).read())\n", root=tmp_path)
    assert kinds(unit) == ["unresolved"] and unit.links == []


def test_local_imports_are_links_and_stdlib_imports_are_not(tmp_path):
    (tmp_path / "helper.py").write_text(PROGRAM)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(PROGRAM)
    source = (
        "import os, math\n"  # 1
        "from collections import deque\n"  # 2
        "import numpy as np\n"  # 3
        "import helper\n"  # 4
        "from helper import main as m\n"  # 5
        "from . import helper\n"  # 6
        "from .helper import main\n"  # 7
        "import pkg.mod\n"  # 8
        "import importlib\n"  # 9
        "h = importlib.import_module('helper')\n"  # 10
        "from . import absent\n"  # 11
    )
    script = tmp_path / "train_gpt.py"
    script.write_text(source)
    links = unpack_file(script).links

    helper = (tmp_path / "helper.py").resolve()
    assert [(l.kind, l.target, l.path, l.line) for l in links] == [
        ("import", "helper", helper, 4),
        ("import", "helper", helper, 5),
        ("import", ".helper", helper, 6),
        ("import", ".helper", helper, 7),
        ("import", "pkg.mod", (tmp_path / "pkg" / "mod.py").resolve(), 8),
        ("import", "helper", helper, 10),
        ("import", ".absent", None, 11),
    ]


def test_a_file_importing_itself_is_not_a_link(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text("import train_gpt\nimport helper\n")
    (tmp_path / "helper.py").write_text(PROGRAM)

    assert [l.target for l in unpack_file(script).links] == ["helper"]


def test_links_inside_a_packed_layer(tmp_path):
    (tmp_path / "helper.py").write_text(PROGRAM)
    script = tmp_path / "train_gpt.py"
    script.write_text(pack("import helper\nexec(open('helper.py').read())\n"))
    unit = unpack_file(script)

    assert {(l.kind, l.layer, l.line) for l in unit.links} == {
        ("import", "shipped>b85>lzma", 1),
        ("exec-file", "shipped>b85>lzma", 2),
    }


def test_unpack_bytes_without_root_resolves_nothing():
    unit = unpack("import helper\nexec(open('helper.py').read())\n")
    assert [(l.kind, l.path) for l in unit.links] == [("exec-file", None)]


def test_follow_links_transitively_once_without_cycles(tmp_path):
    (tmp_path / "train_gpt.py").write_text('import util\nexec(open("helper.py").read())\n')
    (tmp_path / "helper.py").write_text(pack("import util\nimport train_gpt\n"))
    (tmp_path / "util.py").write_text("import helper\nfrom . import missing\n")
    unit = unpack_file(tmp_path / "train_gpt.py")
    linked = follow_links(unit, tmp_path)

    assert sorted(u.name for u in linked) == ["helper.py", "util.py"]
    helper = next(u for u in linked if u.name == "helper.py")
    assert helper.packed
    assert {l.layer for l in helper.links} == {"shipped>b85>lzma"}


# ------------------------------------------------------------ hostile shapes


def test_pathological_nesting_is_a_problem_not_a_crash():
    too_many_parens = unpack("x = " + "(" * 3000 + "1" + ")" * 3000 + "\n")
    long_chain = unpack("x = " + "+".join(["'a'"] * 1500) + "\nexec(x)\n")

    assert kinds(too_many_parens) == ["syntax-error"]
    assert "too many nested parentheses" in too_many_parens.problems[0].message
    assert kinds(long_chain) == ["depth"]


def test_syntax_error_line_comes_from_python():
    unit = unpack("import os\n\n\nx = [1,\ny = 2\n")
    (problem,) = unit.problems
    assert problem.kind == "syntax-error" and problem.line in (4, 5)
    assert problem.message.startswith(f"shipped:{problem.line}: not valid Python")


class _OldBrotli:
    """brotli < 1.2: ``process`` takes no output limit."""

    class Decompressor:
        def __init__(self):
            self._inner = brotli.Decompressor()

        def process(self, data):
            return self._inner.process(data)

        def is_finished(self):
            return self._inner.is_finished()


def test_brotli_without_output_limit_still_decodes_and_catches_bombs(monkeypatch):
    good = pack(PROGRAM, "brotli", "b64")
    bomb = IMPORTS + f"exec(brotli.decompress({_zeros('brotli', 4 << 20)!r}))\n"
    monkeypatch.setitem(sys.modules, "brotli", _OldBrotli)

    assert unpack(good).layer("shipped>b64>brotli").text == PROGRAM
    assert kinds(unpack(bomb, limits=Limits(max_layer_bytes=1 << 20))) == ["bomb"]
