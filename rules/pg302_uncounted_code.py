from __future__ import annotations

import re
import sys
from typing import Iterator

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts import Facts

_KNOWN = {
    "torch", "numpy", "np", "sentencepiece", "triton", "flash_attn", "flash_attn_interface", "zstandard",
    "zstd", "brotli", "einops", "scipy", "tqdm", "wandb", "huggingface_hub", "datasets", "tiktoken",
    "transformers", "safetensors", "kernels", "apex", "xformers", "liger_kernel", "lzma", "typing_extensions",
    "setuptools", "pkg_resources", "yaml", "packaging",
}
# calls that load code from another file; the bare names also count when the file
# does not import them (``from importlib.util import *``), unless it defines them
_LOADERS = {"runpy.run_path", "importlib.util.spec_from_file_location",
            "importlib.machinery.SourceFileLoader"}
_BARE_LOADERS = {"SourceFileLoader", "spec_from_file_location"}
_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}


@register
class UncountedCode(Rule):
    """Code executed from a sibling file, outside the counted ``train_gpt.py``.

    What it flags:
        ``exec(open("x.py").read())``, ``exec(Path(..).read_text())``,
        ``runpy.run_path``, ``importlib`` loading a file, relative imports; and
        (as a warning) imports of modules that are neither standard library nor
        known third-party packages, which usually are helper files in the folder.

    Why: the ruling:
        PR #1412: all counted code must live in ``train_gpt.py``; code reached via
        ``exec(open(...))`` or local imports escapes the 16,000,000-byte count.
        Packed scripts ``exec(lzma.decompress(base64.b85decode(...)))`` are
        accepted: their shipped bytes count.

    Legal alternative:
        Inline the helper into ``train_gpt.py`` (packing it with lzma + b85 if
        size matters) so its bytes are counted.

    Known limits:
        Which imports are local cannot be known from one file; the unknown-module
        warning relies on a list of common packages. Exec of a decoded payload is
        not flagged (the unpacker follows it as a layer).
    """

    code = "PG302"
    slug = "uncounted-code"
    severity = Severity.ILLEGAL
    conditions = ("size",)
    reference = "openai/parameter-golf PR #1412 (uncounted code), PR #1835 (packed scripts)"

    INVALID = [
        '''
exec(open("helpers.py").read())
''',
        '''
from pathlib import Path
exec(Path(__file__).with_name("model_code.py").read_text())
''',
    ]
    VALID = [
        # a local function named like a loader is not runpy
        '''
def run_path(p):
    return p.strip("/")
x = run_path("a/b/")
''',
        '''
def spec_from_file_location(name, path):
    return {"name": name, "path": path}
spec = spec_from_file_location("model", "model.py")
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        for ci in facts.calls:
            if ci.name in ("exec", "eval", "compile") and ci.node.args:
                text = facts.code(ci.node.args[0].value)
                if re.search(r"(\bopen\(|read_text\(|read_bytes\(|\.read\(\))", text) and not re.search(
                        r"(decompress|b85decode|b64decode|a85decode|unhexlify)", text):
                    yield Hit(ci.node, f"`{ci.name}` of a file's contents (`{text.strip()[:60]}`): that "
                              f"code is not counted in the artifact size", ctx=ci.ctx, key="exec file")
            elif facts.resolve(ci.name) in _LOADERS or (
                    ci.name in _BARE_LOADERS and not facts.defined_here(ci.name)):
                yield Hit(ci.node, f"`{ci.name}` loads code from another file: uncounted code",
                          ctx=ci.ctx, key=f"load {ci.name}")
        for mod, line, level, ctx in facts.imports:
            if level:
                yield Hit(None, f"relative import `from {'.' * level}{mod} import ...`: code from a "
                          f"sibling file is not counted", lines=(line, line), ctx=ctx, key=f"rel {mod}")
                continue
            top = mod.split(".")[0]
            if top and top not in _STDLIB and top not in _KNOWN:
                yield Hit(None, f"import of `{mod}`, neither standard library nor a known package: if it "
                          f"is a file next to train_gpt.py its code is not counted",
                          lines=(line, line), ctx=ctx, severity=Severity.WARNING, confidence="low",
                          key=f"import {mod}")
