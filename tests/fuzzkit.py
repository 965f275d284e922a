"""Hypothesis strategies for hostile or careless submissions, and the one oracle
every generated input must satisfy (issue 13).

Used by tests/test_fuzz.py (a few hundred examples in CI) and scripts/fuzz.py
(the full run, `--examples 10000`). The oracle: `pgolf check` ends in a verdict
(exit 0/1/2/3) with no traceback and no internal error, every report format
renders, and `pgolf unpack` of the script exits 0 or 3.
"""

from __future__ import annotations

import base64
import bz2
import io
import json
import lzma
import string
import tempfile
import zlib
from pathlib import Path

from hypothesis import strategies as st
from typer.testing import CliRunner

from auditor.audit import Options, audit_path
from auditor.cli import app
from auditor.report import FORMATS
from tests.recordkit import LEGAL_SCRIPT, RecordSpec, default_submission, log_text

# ------------------------------------------------------------------ numbers and text

NUMBERS = st.one_of(
    st.integers(-10, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-0", "0x10", "1_000", "1,234", ""]),
    st.integers(4290, 5200).map(lambda n: "9" * n),  # past Python's int-string limit
)
ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list("\x00\x1b\x07\r\n\t\u202e\u2028\ufeff:|`[]{}\"'\\/.%,")),
    ),
    max_size=60,
)

# ------------------------------------------------------------------ scripts

_SNIPPETS = [
    "import os\nimport torch\n",
    "def main():\n    pass\n",
    "if __name__ == '__main__':\n    main()\n",
    "val_tokens = load_validation_tokens(args.val_files)\n",
    "for x, y in loader:\n    loss = model(x, y)\n    loss.backward()\n",
    "tok = './data/tokenizers/fineweb_8192_bpe.model'\n",
    "class H:\n    seed = int(os.environ.get('SEED', 1337))\n",
    "exec(open('helper.py').read())\n",
    "import helper\n",
    "x = (" * 30 + "1" + ")" * 30 + "\n",
    "@torch.no_grad()\ndef eval_val(model, val_tokens):\n    return model(val_tokens).mean()\n",
    "print(f'val_bpb:{1.1:.4f}')\n",
    "lambda: (yield)\n",
    "async def f():\n    await g()\n",
]
_COOKIES = ["", "# coding: utf-8\n", "# coding: latin-1\n", "# coding: undefined\n", "# coding: punycode\n",
            "# -*- coding: utf-16 -*-\n", "# coding: rot13\n", "# vim: set fileencoding=ascii :\n"]

_PACKERS = {
    "b85+lzma": lambda b: ("base64.b85decode", "lzma.decompress", base64.b85encode(lzma.compress(b))),
    "b64+zlib": lambda b: ("base64.b64decode", "zlib.decompress", base64.b64encode(zlib.compress(b))),
    "b64+bz2": lambda b: ("base64.b64decode", "bz2.decompress", base64.b64encode(bz2.compress(b))),
    "hex": lambda b: ("bytes.fromhex", "", b.hex().encode()),
}


def _packed(inner: bytes, packer: str, truncate: int) -> bytes:
    decode, decompress, blob = _PACKERS[packer](inner)
    if truncate:
        blob = blob[: max(0, len(blob) - truncate)]
    call = f"{decode}({blob.decode()!r})"
    if decompress:
        call = f"{decompress}({call})"
    return f"import base64, lzma, zlib, bz2\nexec({call})\n".encode()


@st.composite
def python_scripts(draw) -> str:
    parts = draw(st.lists(st.sampled_from(_SNIPPETS), max_size=8))
    if draw(st.booleans()):
        parts.append(f"s = {draw(ODD_TEXT)!r}\n")
    if draw(st.integers(0, 9)) == 0:
        parts.append("[" * draw(st.integers(50, 3000)) + "\n")  # deep nesting: a syntax error, not a crash
    if draw(st.integers(0, 9)) == 0:
        parts.append(f"H = '{'0f' * draw(st.integers(1000, 30000))}'\n")  # long literal
    return "".join(parts)


@st.composite
def scripts(draw) -> bytes:
    """A train_gpt.py: plain, packed (possibly nested or corrupt), odd bytes, or a bomb-let."""
    kind = draw(st.sampled_from(["plain", "packed", "nested", "bytes", "cookie", "bomb"]))
    body = draw(python_scripts()).encode()
    if kind == "packed":
        return _packed(body, draw(st.sampled_from(sorted(_PACKERS))), draw(st.sampled_from([0, 0, 1, 7, 100])))
    if kind == "nested":
        inner = _packed(body, draw(st.sampled_from(sorted(_PACKERS))), 0)
        return _packed(inner, draw(st.sampled_from(sorted(_PACKERS))), draw(st.sampled_from([0, 3])))
    if kind == "bytes":
        return draw(st.binary(max_size=2000))
    if kind == "cookie":
        return draw(st.sampled_from(_COOKIES)).encode() + body + draw(st.binary(max_size=20))
    # a small bomb: a few MB of zeros, lzma-compressed to a few hundred bytes
    return _packed(b"#" + b"\x00" * draw(st.integers(1, 8)) * 2**20, "b85+lzma", 0)


# ------------------------------------------------------------------ submission.json

JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), ODD_TEXT
)
JSON_VALUES = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)),
    max_leaves=20,
)
_KEYS = ["author", "github_id", "name", "date", "track", "val_bpb", "val_loss", "seeds", "seed_results",
         "bytes_total", "bytes_code", "hardware", "blurb"]


@st.composite
def submissions(draw) -> bytes:
    kind = draw(st.sampled_from(["keys", "any", "text", "deep", "bigint"]))
    if kind == "keys":
        data = {k: draw(JSON_VALUES) for k in draw(st.lists(st.sampled_from(_KEYS), max_size=len(_KEYS), unique=True))}
        if draw(st.booleans()):
            data["seed_results"] = {draw(NUMBERS): {"val_bpb": draw(JSON_LEAF)} for _ in range(draw(st.integers(0, 4)))}
        return json.dumps(data).encode()
    if kind == "any":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "text":
        return draw(st.one_of(ODD_TEXT.map(str.encode), st.binary(max_size=300)))
    if kind == "deep":
        n = draw(st.integers(900, 200_000))
        return (draw(st.sampled_from(["[", '{"a":'])) * n).encode()
    return ('{"val_bpb": ' + "7" * draw(st.integers(4290, 6000)) + "}").encode()


# ------------------------------------------------------------------ logs

_LOG_TEMPLATES = [
    "seed:{n}", "world_size:{n} grad_accum_steps:1", "val_tokens:{n}", "train_shards:{n}",
    "tokenizer_path: ./data/tokenizers/{t}.model",
    "step:{n}/{n} train_loss:{n} train_time:{n}ms step_avg:{n}ms",
    "step:{n}/{n} val_loss:{n} val_bpb:{n} train_time:{n}ms",
    "stopping_early: wallclock_cap train_time:{n}ms step:{n}/{n}",
    "peak memory allocated: {n} MiB reserved: {n} MiB",
    "Serialized model int6+lzma: {n} bytes", "Code size: {n} bytes", "Total submission size int6+lzma: {n} bytes",
    "final_int6_sliding_window val_loss:{n} val_bpb:{n} eval_time:{n}ms",
    "final_int6_sliding_window_exact val_loss:{n} val_bpb:{n}",
    "ttt_eval_time:{n}s", "gptq_reserve_seconds:{n}", "device: {n}x NVIDIA H100 80GB HBM3",
    "|   {n}  NVIDIA H100 80GB HBM3   On  |", "{t}",
]


@st.composite
def log_lines(draw) -> str:
    if draw(st.integers(0, 5)) == 0:
        obj = draw(st.one_of(JSON_VALUES, st.fixed_dictionaries(
            {"event": st.sampled_from(["metric", "config", "artifact", "train_end", "eval_end", "eval_phase", ""])},
            optional={k: JSON_LEAF for k in ("name", "val_bpb", "val_loss", "seed", "bytes_total", "eval_time_ms",
                                               "headline", "steps", "train_time_ms")},
        )))
        try:
            payload = json.dumps(obj)
        except ValueError:
            payload = "{"
        return f"{draw(st.sampled_from(['', '[rank0] ', '0: ']))}:::PGOLF {payload}"
    template = draw(st.sampled_from(_LOG_TEMPLATES))
    out = template
    while "{n}" in out:
        out = out.replace("{n}", draw(NUMBERS), 1)
    return out.replace("{t}", draw(ODD_TEXT).replace("\n", " "))


@st.composite
def logs(draw) -> bytes:
    kind = draw(st.sampled_from(["lines", "lines", "bytes", "long"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2000))
    text = "\n".join(draw(st.lists(log_lines(), max_size=40)))
    if kind == "long":
        text += "\n" + "x" * draw(st.integers(10_000, 300_000))
    return text.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ folder layouts

_NAME_CHARS = string.ascii_letters + string.digits + "_-. " + "\x1b\x07é✓\u202e"
NAMES = st.text(alphabet=_NAME_CHARS, min_size=1, max_size=24).filter(lambda s: s not in (".", "..") and "/" not in s)


def legal_files() -> dict[str, bytes | None]:
    """The files of a passing record (tests/recordkit), to mutate one at a time."""
    spec = RecordSpec()
    script = LEGAL_SCRIPT.encode()
    files: dict[str, bytes | None] = {"train_gpt.py": script, "README.md": spec.readme.encode()}
    files["submission.json"] = json.dumps(default_submission(spec, len(script))).encode()
    for run in spec.runs:
        files[f"train_seed{run.seed}.log"] = log_text(run, len(script)).encode()
    return files


@st.composite
def mutated_records(draw) -> dict[str, bytes | None]:
    """A passing record with one file replaced, truncated, or a line of a log altered."""
    files = legal_files()
    target = draw(st.sampled_from(sorted(files)))
    how = draw(st.sampled_from(["replace", "truncate", "line"]))
    data = files[target] or b""
    if how == "truncate":
        files[target] = data[: draw(st.integers(0, len(data)))]
    elif how == "line" and target.endswith(".log"):
        lines = data.decode().split("\n")
        lines.insert(draw(st.integers(0, len(lines))), draw(log_lines()))
        files[target] = "\n".join(lines).encode("utf-8", "surrogatepass")
    else:
        files[target] = draw({"train_gpt.py": scripts(), "submission.json": submissions()}.get(target, logs()))
    return files


@st.composite
def layouts(draw) -> dict[str, bytes | None]:
    """Relative path -> bytes (None: a folder); the required files present or not."""
    if draw(st.booleans()):
        return draw(mutated_records())
    files: dict[str, bytes | None] = {}
    if draw(st.integers(0, 9)):
        files["train_gpt.py"] = draw(scripts())
    if draw(st.integers(0, 9)):
        files["submission.json"] = draw(submissions())
    if draw(st.booleans()):
        files[draw(st.sampled_from(["README.md", "readme.md", "README.MD"]))] = draw(ODD_TEXT).encode()
    for i in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([f"train_seed{i}.log", f"logs/seed{i}.txt", f"train{i}.txt", f"{i}.log"]))
        files[name] = draw(logs())
    for _ in range(draw(st.integers(0, 3))):
        sub = draw(st.sampled_from(["", "logs/", "a/b/", ".git/", "__pycache__/"]))
        files[sub + draw(NAMES)] = draw(st.one_of(st.binary(max_size=200), logs()))
    if draw(st.integers(0, 7)) == 0:
        files["helper.py"] = draw(scripts())
    return files


def write_layout(root: Path, files: dict[str, bytes | None]) -> Path:
    folder = root / "track_10min_16mb" / "2026-05-01_fuzz"
    folder.mkdir(parents=True)
    for rel, data in files.items():
        path = folder / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                path.mkdir(exist_ok=True)
            elif not path.is_dir():
                path.write_bytes(data)
        except OSError:  # a name the file system refuses
            continue
    return folder


# ------------------------------------------------------------------ the oracle

_runner = CliRunner()


def check_folder(folder: Path) -> int:
    """Audit one folder through every renderer and the CLI; raise AssertionError on any failure."""
    result = audit_path(folder, Options())
    assert result.error is None, f"internal error: {result.error}"
    for name, render in FORMATS.items():
        buffer = io.StringIO()
        render([result], buffer)
        if name in ("json", "sarif"):
            json.loads(buffer.getvalue())
        else:
            assert "\x1b" not in buffer.getvalue(), f"raw escape in {name} report"
    out = _runner.invoke(app, ["check", str(folder), "-f", "json"])
    assert out.exit_code in (0, 1, 2, 3), out.exit_code
    assert out.exception is None or isinstance(out.exception, SystemExit), repr(out.exception)
    assert "Traceback" not in out.output
    script = folder / "train_gpt.py"
    if script.is_file():
        unpacked = _runner.invoke(app, ["unpack", str(script)])
        assert unpacked.exit_code in (0, 3), (unpacked.exit_code, repr(unpacked.exception))
    return out.exit_code


def check_layout(files: dict[str, bytes | None]) -> int:
    with tempfile.TemporaryDirectory(prefix="pgolf-fuzz-") as tmp:
        return check_folder(write_layout(Path(tmp), files))


def check_script(data: bytes) -> int:
    """Lint-style: a bare script given alone."""
    with tempfile.TemporaryDirectory(prefix="pgolf-fuzz-") as tmp:
        path = Path(tmp) / "train_gpt.py"
        path.write_bytes(data)
        result = audit_path(path, Options())
        assert result.error is None, f"internal error: {result.error}"
        for render in FORMATS.values():
            render([result], io.StringIO())
        return result.verdict.exit_code


__all__ = ["layouts", "scripts", "submissions", "logs", "check_layout", "check_script", "check_folder", "write_layout"]
