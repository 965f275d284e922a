"""Log file names: which files are logs, and the seed a name carries.

Records name their logs freely (``train_seed42.log``, ``log_s42.txt``), and the
seed in the name is the fallback when the log never prints one.
"""

from __future__ import annotations

import re
from pathlib import PurePath

_FN_SEED_RE = re.compile(r"seed[_\-=]?(\d+)", re.I)
_FN_S_RE = re.compile(r"(?:^|[_\-.])s(\d+)(?=[_\-.]|$)", re.I)
_NOT_LOG_RE = re.compile(r"^(requirements|readme|license|licence|notes?|constraints|changelog)")
_LOG_TXT_RE = re.compile(
    r"^(train|log|seed|run|output|out|stdout|stderr|eval)|seed|(?:^|[_\-.])logs?(?:$|[_\-.])|(?:^|[_\-.])s\d+(?:$|[_\-.])"
)


def seed_from_filename(name: str) -> int | None:
    """Seed from a log's file name: ``train_seed42.log``, ``seed_1337.txt``, ``log_s42.txt``."""
    try:
        base = PurePath(str(name).replace("\\", "/")).name
    except Exception:
        return None
    m = _FN_SEED_RE.search(base)
    if m:
        return int(m.group(1))
    stem = base.rsplit(".", 1)[0] if "." in base else base
    m = _FN_S_RE.search(stem)
    if m:
        return int(m.group(1))
    return None


def looks_like_log(name: str) -> bool:
    """True for ``*.log``, and for ``*.txt`` whose name reads like a log.

    ``train*.txt``, ``log*.txt``, ``seed*.txt``, ``run*``/``output*``/``eval*``,
    names containing ``seed``, a ``log``/``logs`` word or an ``s42``-style seed
    word; never ``requirements.txt``, ``README``, licences, notes.
    """
    try:
        base = PurePath(str(name).replace("\\", "/")).name.lower()
    except Exception:
        return False
    if base.endswith(".log"):
        return True
    if not base.endswith(".txt"):
        return False
    stem = base[: -len(".txt")]
    if not stem or _NOT_LOG_RE.match(stem):
        return False
    return bool(_LOG_TXT_RE.search(stem))
