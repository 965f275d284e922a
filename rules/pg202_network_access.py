from __future__ import annotations

import re
from typing import Iterator

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts import Facts

_NET_CALLS = re.compile(
    r"^(urllib\.request\.urlopen|urllib\.request\.urlretrieve|urlopen|urlretrieve|requests\.\w+|httpx\.\w+|"
    r"socket\.socket|socket\.create_connection|http\.client\.\w+|hf_hub_download|snapshot_download|"
    r"huggingface_hub\.\w+|datasets\.load_dataset|load_dataset|torch\.hub\.load|torch\.hub\.download_url_to_file|"
    r"wget\.download|aiohttp\.\w+|ftplib\.FTP)$")
_SHELL_CALLS = re.compile(r"^(subprocess\.\w+|os\.system|os\.popen)$")
_SHELL_NET = re.compile(r"\b(curl|wget|scp|rsync|git\s+clone|huggingface-cli|aws\s+s3|gsutil)\b")


@register
class NetworkAccess(Rule):
    """Network access from the submission's code.

    What it flags:
        Reachable calls that open connections or download: ``urllib.request.urlopen``,
        ``requests.*``, ``socket``, ``http.client``, Hugging Face hub downloads,
        ``datasets.load_dataset``, ``torch.hub.load``, and ``subprocess`` / ``os.system``
        running ``curl``, ``wget``, ``git clone`` and the like.

    Why: the ruling:
        Challenge README: no network during evaluation (no downloads, hubs,
        sockets); everything the scorer uses must be in the counted artifact.

    Legal alternative:
        Ship what is needed inside the 16 MB artifact; read only the provided
        FineWeb shards and tokenizer from disk.

    Known limits:
        Calls are matched by their dotted name, with import aliases resolved
        (``import urllib.request as ur``, ``from requests import get as fetch``);
        a module bound to a name by assignment (``net = requests``) or reached
        through ``getattr``/``__import__`` is missed. The shell check reads
        string literals in the call only.
    """

    code = "PG202"
    slug = "network-access"
    severity = Severity.ILLEGAL
    conditions = ("no-network",)
    reference = "openai/parameter-golf README (evaluation rules)"

    INVALID = [
        # aliased imports
        '''
import urllib.request as ur
def fetch_table(url):
    return ur.urlopen(url).read()
''',
        '''
from requests import get as fetch
def teacher_logits(url):
    return fetch(url, timeout=5).content
''',
    ]
    VALID = [
        # a local function that happens to be called like an aliased download
        '''
import json as requests_json
def get(path):
    with open(path) as fh:
        return requests_json.load(fh)
cfg = get("config.json")
''',
        '''
import subprocess
def gpu_info():
    return subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        for ci in facts.calls:
            full = facts.resolve(ci.name)
            if facts.defined_here(ci.name):  # the file's own ``def load_dataset(...)``
                continue
            # a bare name the file does not import (``from datasets import *``) still counts
            if _NET_CALLS.match(full) or _NET_CALLS.match(ci.name):
                shown = ci.name if full == ci.name else f"{ci.name}` (`{full}`"
                shown = f"{shown})" if full != ci.name else shown
                yield Hit(ci.node, f"network call `{shown}(...)`: submissions may not download or connect "
                          f"during the run", ctx=ci.ctx, key=f"net {full}")
            elif _SHELL_CALLS.match(full):
                text = facts.code(ci.node)
                m = _SHELL_NET.search(text)
                if m:
                    yield Hit(ci.node, f"`{ci.name}` runs `{m.group(1)}`: a download from the network",
                              ctx=ci.ctx, key=f"shell {m.group(1)}")
