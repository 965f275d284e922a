"""Unit tests of the probe internals: locating targets in the stream, choosing the counted
computation, and the C4/C1 arithmetic, on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.probes import probes


def stream():
    return probes.make_stream(320, 1, n_tokens=300, seed=3)


def test_stream_is_bos_separated_random_tokens():
    s = stream()
    assert s[0] == 1 and (s >= 1).all() and len(probes.doc_starts(s, 1)) >= 4
    assert not ((s == 0) | (s == 2)).any()


def test_map_row_contiguous_overlapping_and_permuted_segments():
    s = stream()
    idx = probes.StreamIndex(s)
    # two overlapping windows flattened into one row, then a jump backwards
    row = list(s[1:65]) + list(s[33:97]) + list(s[200:210])
    pos = idx.map_row([int(t) for t in row])
    assert list(pos[:64]) == list(range(1, 65))
    assert list(pos[64:128]) == list(range(33, 97))
    assert list(pos[128:]) == list(range(200, 210))
    # the stream's very end
    tail = idx.map_row([int(t) for t in s[-20:]])
    assert list(tail) == list(range(len(s) - 20, len(s)))


def test_select_prefers_the_counted_computation():
    # position 1..4, each computed twice (first pass then a later one); the total returned is the first pass
    el = {"call": np.array([0] * 4 + [1] * 4), "pos": np.array([1, 2, 3, 4] * 2),
          "loss": np.array([1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5]),
          "grad": np.array([False] * 4 + [True] * 4), "trained": np.array([False] * 4 + [True] * 4)}
    run = probes.Run(True, scalars=[("return", 10.0)], elements=el)
    pp = probes.per_position(run, 6)
    assert pp["verified"] and pp["mode"] == "first-nograd" and pp["values"][4] == 4.0
    run = probes.Run(True, scalars=[("return", 2.0)], elements=el)  # the last (trained) pass is what counts
    assert probes.per_position(run, 6)["mode"] == "last-any"
    run = probes.Run(True, scalars=[("return", 12.0)], elements=el)  # every computation summed: double counting
    pp = probes.per_position(run, 6)
    assert pp["mode"] == "all-any" and pp["counts"][1] == 2


def test_c4_counts_missing_twice_and_bos_deviation():
    s = np.array([1, 5, 6, 7, 1, 8, 9, 10])
    base = {"counts": np.array([0, 1, 1, 1, 0, 1, 1, 1]), "verified": True, "source": "t"}
    assert probes.probe_c4(base, s, 1)["status"] == "deviation"
    base["counts"] = np.array([0, 1, 2, 1, 1, 1, 1, 0])
    r = probes.probe_c4(base, s, 1)
    assert r["status"] == "fail" and r["twice"] == 1 and r["missing"] == 1 and r["first_missing"] == [7]
    base["counts"] = np.array([0, 1, 1, 1, 1, 1, 1, 1])
    assert probes.probe_c4(base, s, 1)["status"] == "pass"


def test_c1_reports_the_largest_change_before_the_flip():
    a = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0])
    b = a.copy()
    b[2] += 0.26
    b[5] += 9.0  # at or after the flip: allowed
    r = probes.probe_c1({"values": a, "source": "t", "verified": True}, {"values": b}, 4)
    assert r["status"] == "fail" and r["worst_position"] == 2 and r["max_abs"] == pytest.approx(0.26)
    b[2] = a[2]
    assert probes.probe_c1({"values": a, "source": "t", "verified": True}, {"values": b}, 4)["status"] == "pass"


@pytest.mark.parametrize("src", [
    'x = f"{", ".join(sorted(names))}"\n',
    'log(f"mode={"physical"if a else"virtual"} p={p}")\n',
    "y = f'{d['k']!r:>10}'\n",
    'z = f"{", ".join(f"{k}={v:.3f}" for k, v in d.items())}"\n',
    'w = f"{d["a"]:{width}.{prec}f}" + "plain"\nif x:\n    pass\nelif"a":\n    pass\n',
])
def test_fstrings_downgrade_requotes_pep701_fstrings(src):
    """Python 3.12 f-strings that reuse the enclosing quote compile on older interpreters after
    downgrade, with the same value and the same lines."""
    import ast
    import sys

    from auditor.probes import fstrings

    out = fstrings.downgrade(src)
    compile(out, "t", "exec")
    assert out.count("\n") == src.count("\n")
    if sys.version_info >= (3, 12):
        assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(src))
    else:
        with pytest.raises(SyntaxError):
            compile(src, "t", "exec")


def test_fstrings_downgrade_leaves_valid_code_and_refuses_what_it_cannot_requote():
    from auditor.probes import fstrings

    ok = 's = """a "b" c"""\nt = f"{x!r}" + r"\\d" + f"""{d["k"]}"""\n'
    assert fstrings.downgrade(ok) == ok
    with pytest.raises(fstrings.Unconvertible):
        fstrings.downgrade('f"{"a\\n"}"\n')  # a backslash in a replacement field: not before 3.12
