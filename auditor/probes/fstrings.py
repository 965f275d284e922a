"""Rewrite Python 3.12 f-strings (PEP 701) so an older interpreter can compile them.

Python 3.12 lets a replacement field reuse the enclosing quote, e.g.
`f"{", ".join(names)}"` or `f"mode={"a" if x else "b"}"`; 3.11 reads the inner
quote as the end of the string. Submissions are run on 3.12+ machines and use
this freely, and the probe child runs on the auditor's interpreter, so before
giving up on a SyntaxError the child rewrites the source:

    downgrade(source) -> source with every nested string literal that reuses an
    enclosing quote re-quoted with one that does not (`", "` -> `', '`)

Only string delimiters change: no line moves (line numbers in findings and
`inspect.getsource` stay right) and no value changes. When a nested string
cannot be re-quoted under 3.11's rules (it holds both quote characters, a
backslash or a newline), `Unconvertible` is raised and the caller keeps the
original error.
"""

from __future__ import annotations

import re
import sys

_START = re.compile(r"([rRbBuUfF]{0,2})('''|\"\"\"|'|\")")
_PREFIXES = {"", "r", "u", "b", "br", "rb", "f", "fr", "rf"}


class Unconvertible(ValueError):
    pass


def needed() -> bool:
    return sys.version_info < (3, 12)


def downgrade(source: str) -> str:
    out, i, n = [], 0, len(source)
    while i < n:
        c = source[i]
        if c == "#":
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(source[i:j])
            i = j
            continue
        m = _string_start(source, i)
        if m is not None:
            text, i = _string(source, m, forbidden=())
            out.append(text)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _string_start(src: str, i: int):
    m = _START.match(src, i)
    if m is None or m.group(1).lower() not in _PREFIXES:
        return None
    if m.group(1) and i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_"):
        return None  # the end of a name (`elif"x"`): the string starts at the quote
    return m


def _conflicts(delim: str, forbidden: tuple[str, ...]) -> bool:
    """Would this delimiter end (or break) an enclosing string under 3.11's rules?"""
    for f in forbidden:
        if len(f) == 1 and f in delim:
            return True
        if len(f) == 3 and delim == f:
            return True
    return False


def _string(src: str, m, forbidden: tuple[str, ...]) -> tuple[str, int]:
    """The literal starting at match m, rewritten; and the index after it."""
    prefix, q = m.group(1), m.group(2)
    start = m.end()
    if "f" not in prefix.lower():
        j = _plain_end(src, start, q)
        body = src[start:j - len(q)]
        if forbidden and _conflicts(q, forbidden):
            q = _requote(body, q, forbidden)
        return prefix + q + body + q, j
    parts, j = _fstring_parts(src, start, q, forbidden + (q,))
    if forbidden and _conflicts(q, forbidden):
        new_q = _requote("".join(p for kind, p in parts if kind == "lit"), q, forbidden)
        parts, _ = _fstring_parts(src, start, q, forbidden + (new_q,))  # its own fields now avoid new_q
        q = new_q
    return prefix + q + "".join(p for _, p in parts) + q, j


def _plain_end(src: str, j: int, q: str) -> int:
    n = len(src)
    while j < n:
        if src.startswith(q, j):
            return j + len(q)
        if src[j] == "\\":
            j += 2
            continue
        if len(q) == 1 and src[j] == "\n":
            raise Unconvertible("unterminated string")
        j += 1
    raise Unconvertible("unterminated string")


def _requote(body: str, q: str, forbidden: tuple[str, ...]) -> str:
    """A quote for a nested literal (inside a replacement field: no backslash, no newline)."""
    if "\\" in body:
        raise Unconvertible("a backslash inside a replacement field")
    for cand in ("'", '"', "'''", '"""'):
        if _conflicts(cand, forbidden):
            continue
        if len(cand) == 1 and (cand in body or "\n" in body):
            continue
        if len(cand) == 3 and (cand in body or body.endswith(cand[0])):
            continue
        return cand
    raise Unconvertible("no quote left for a nested string")


def _fstring_parts(src: str, j: int, q: str, forbidden: tuple[str, ...]):
    """[(kind, text)] of an f-string body from j (after the opening quote); kind is
    'lit' (literal text) or 'expr' (a replacement field with its braces)."""
    parts, n = [], len(src)
    lit_start = j
    while j < n:
        if src.startswith(q, j):
            parts.append(("lit", src[lit_start:j]))
            return parts, j + len(q)
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if src.startswith("{{", j) or src.startswith("}}", j):
            j += 2
            continue
        if c == "{":
            parts.append(("lit", src[lit_start:j]))
            text, j = _field(src, j + 1, forbidden)
            parts.append(("expr", "{" + text + "}"))
            lit_start = j
            continue
        if len(q) == 1 and c == "\n":
            raise Unconvertible("unterminated f-string")
        j += 1
    raise Unconvertible("unterminated f-string")


def _field(src: str, j: int, forbidden: tuple[str, ...]) -> tuple[str, int]:
    """A replacement field's text from j (after '{') to its '}' (exclusive), nested
    strings rewritten; and the index after the '}'."""
    out, depth, n = [], 0, len(src)
    while j < n:
        c = src[j]
        m = _string_start(src, j) if c in "'\"rRbBuUfF" else None
        if m is not None:
            text, j = _string(src, m, forbidden)
            out.append(text)
            continue
        if c in "\\#":
            raise Unconvertible("a backslash or comment inside a replacement field")
        if c in "([{":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "}" and depth == 0:
            return "".join(out), j + 1
        elif c == "}":
            depth -= 1
        elif c == ":" and depth == 0 and not src.startswith(":=", j):
            out.append(":")
            spec, j = _format_spec(src, j + 1, forbidden)
            return "".join(out) + spec, j
        elif c.isalpha() or c == "_":  # a whole name, so its last letter is not read as a string prefix
            k = j
            while k < n and (src[k].isalnum() or src[k] == "_"):
                k += 1
            out.append(src[j:k])
            j = k
            continue
        out.append(c)
        j += 1
    raise Unconvertible("unterminated replacement field")


def _format_spec(src: str, j: int, forbidden: tuple[str, ...]) -> tuple[str, int]:
    out, n = [], len(src)
    while j < n:
        c = src[j]
        if c == "{":
            text, j = _field(src, j + 1, forbidden)
            out.append("{" + text + "}")
            continue
        if c == "}":
            return "".join(out), j + 1
        if c in "'\"\\\n":
            raise Unconvertible("a quote, backslash or newline in a format spec")
        out.append(c)
        j += 1
    raise Unconvertible("unterminated format spec")
