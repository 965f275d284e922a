"""Hashing helpers the packed script execs (uncounted code)."""


def context_hash(tokens):
    h = 0
    for t in tokens.tolist():
        h = (h * 1000003 + int(t)) & 0xFFFFFFFF
    return h
