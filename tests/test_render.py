"""The compiled line renderer (``pcapdiag._render``) writes numbers as Python does.

Ground truth is Python itself: ``repr(t / 1_000_000_000)``, ``f"{t / NS:.3f}"``,
``repr(round(t / 1e6, 3))`` and ``str``. Every value the kernels write must be Python's
text; values they leave to Python (ties, out-of-range) must be marked, never written
wrong. Random values over every range the JSON output meets (timestamps of 2004-2038,
durations, microsecond round trips) plus their edges and ties, and hypothesis beyond.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")
from pcapdiag import _render as R  # noqa: E402

NS = 1_000_000_000
PYTHON = {
    R.SECONDS: lambda v: repr(v / NS),
    R.FIXED3: lambda v: f"{v / NS:.3f}",
    R.MILLIS3: lambda v: repr(round(v / 1e6, 3)),
    R.INT: str,
}
RANGES = [
    ((1 << 30) * NS, (1 << 31) * NS),  # timestamps 2004-2038
    (1_700_000_000 * NS, 1_800_000_000 * NS),
    (0, 100_000),  # under 1e-4 s: exponent
    (0, 10**12),  # durations
    (100_000, (1 << 23) * NS),
    ((1 << 23) * NS, (1 << 30) * NS),  # beyond the fast paths
    (0, 2**62),
]


def render(kind: int, values: np.ndarray) -> tuple[list[str], set[int]]:
    p = R.Program()
    p.const("<")
    p.number(kind, 0)
    p.const(">")
    text, bad, _ = R.run(p.compile(), values.reshape(-1, 1), *R.table([]), 0)
    return [line[1:-1] for line in str(text, "utf-8").split("\n")], set(bad.tolist())


def check(kind: int, values: np.ndarray) -> int:
    """Assert every row the kernel wrote is Python's text; returns the rows it left."""
    got, bad = render(kind, values)
    for i, (v, g) in enumerate(zip(values.tolist(), got, strict=True)):
        if i not in bad:
            assert g == PYTHON[kind](v), (kind, v)
    return len(bad)


@pytest.mark.parametrize("kind", [R.SECONDS, R.FIXED3, R.MILLIS3, R.INT])
@pytest.mark.parametrize(("lo", "hi"), RANGES)
def test_random_values_are_written_as_python_writes_them(kind: int, lo: int, hi: int) -> None:
    rng = np.random.default_rng(lo ^ kind)
    values = rng.integers(lo, hi, 200_000)
    edges = [lo, lo + 1, hi - 1, lo + 500, lo + 500_000, lo + 999_999_999]
    values = np.concatenate([values, np.array(edges, np.int64)])
    left = check(kind, values)
    # what the JSON output meets is written here, bar a timestamp between two shortest
    fast = hi <= (1 << 23) * NS or (kind == R.SECONDS and lo >= RANGES[0][0] and hi <= RANGES[0][1])
    if kind == R.SECONDS and fast:
        assert left <= len(values) // 500
    elif kind != R.INT and fast:
        assert left == 0
    if kind == R.INT:
        assert left == 0


def test_ties_and_edges_are_left_to_python() -> None:
    assert render(R.SECONDS, np.array([-1, 2**62]))[1] == {0, 1}
    # the smallest and largest values of a range, and zero
    got, bad = render(R.SECONDS, np.array([0, 1, 99_999, 100_000, (1 << 30) * NS + 1]))
    assert got[:4] == ["0.0", "1e-09", "9.9999e-05", "0.0001"] and bad == {4}
    # a power of two (the interval narrower below it) is written where a whole microsecond
    got, bad = render(R.SECONDS, np.array([(1 << 30) * NS, (1 << 30) * NS - 1000]))
    assert got[0] == repr(float(1 << 30)) and bad == {1}


def test_whole_microsecond_timestamps_are_written_as_python_writes_them() -> None:
    # a pcap's timestamps: whole microseconds of 2004-2038, and their edges
    rng = np.random.default_rng(6)
    lo, hi = (1 << 30) * 1_000_000, (1 << 31) * 1_000_000
    us = np.concatenate([rng.integers(lo, hi, 300_000), [lo, lo + 1, hi - 1, lo + 999_999]])
    us = np.concatenate([us, us - us % 10, us - us % 1000, us - us % 1_000_000])
    assert check(R.SECONDS, us * 1000) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers((1 << 30) * 1_000_000, (1 << 31) * 1_000_000 - 1), min_size=1))
def test_any_whole_microsecond_timestamps(us: list[int]) -> None:
    assert check(R.SECONDS, np.array(us, np.int64) * 1000) == 0


@pytest.mark.parametrize(("kind", "unit"), [(R.FIXED3, 1_000_000), (R.MILLIS3, 1000)])
def test_exact_halves_are_written_as_python_rounds_the_double(kind: int, unit: int) -> None:
    # at an exact half millisecond (microsecond) the double's binary error decides, up or
    # down; where the double is the half itself (0.0625 s), the even digit
    rng = np.random.default_rng(unit)
    top = (1 << 23) * NS // unit
    k = np.concatenate(
        [np.arange(100_000), rng.integers(0, top, 200_000), top - 1 - np.arange(100)]
    )
    exact = np.arange(1, 20_000, 2) * 125 * (NS // unit // 2000 or 1)  # odd multiples of 1/16 s
    values = np.concatenate([k * unit + unit // 2, exact[exact % unit == unit // 2]])
    got, bad = render(kind, values)
    assert not bad
    want = [PYTHON[kind](v) for v in values.tolist()]
    assert got == want
    ups = sum(
        g.endswith(str(int(v) // unit % 10)) for g, v in zip(got, values.tolist(), strict=True)
    )
    assert 0 < ups < len(values)  # (both ways met)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, (1 << 23) * 1000 - 1), min_size=1, max_size=40))
def test_any_exact_halves(ks: list[int]) -> None:
    k = np.array(ks, np.int64)
    for kind, unit in ((R.FIXED3, 1_000_000), (R.MILLIS3, 1000)):
        values = (k % ((1 << 23) * NS // unit)) * unit + unit // 2
        assert check(kind, values) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 2**63 - 1),
            st.integers((1 << 30) * NS, (1 << 31) * NS),
            st.integers(0, 10**13),
            st.integers(-(10**12), 10**6),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_any_values(values: list[int]) -> None:
    a = np.array(values, np.int64)
    for kind in PYTHON:
        if kind != R.INT or a.min() >= 0:
            check(kind, a)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        # what a string table holds is UTF-8: lone surrogates have no encoding (the JSON
        # output cannot hold them either way)
        st.text(
            st.characters(blacklist_characters="\x1e", blacklist_categories=("Cs",)), max_size=12
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(
        st.tuples(st.integers(0, 10**12), st.integers(0, 5), st.booleans()), min_size=1, max_size=30
    ),
)
def test_a_template_of_strings_numbers_and_nulls(
    strings: list[str], rows: list[tuple[int, int, bool]]
) -> None:
    p = R.Program()
    p.const('{"n": ')
    p.number(R.INT, 0)
    p.const(', "s": ')
    p.string(1)
    p.const(', "t": ')
    p.number(R.SECONDS, 0, 2)
    p.const(', "u": ')
    p.string(1, 2, "")
    p.const("}")
    cols = np.array([(v, k % len(strings), int(b)) for v, k, b in rows], np.int64)
    text, bad, ends = R.run(p.compile(), cols, *R.table(strings), 2, b"\x1e")
    want = [
        f'{{"n": {v}, "s": {strings[k % len(strings)]}, "t": '
        f'{repr(v / NS) if b else "null"}, "u": {strings[k % len(strings)] if b else ""}}}'
        for v, k, b in rows
    ]
    raw = bytes(text)
    for i, w in enumerate(want):  # each row's text ends where the kernel says
        start = 0 if i == 0 else int(ends[i - 1]) + 1
        if i not in set(bad.tolist()):
            assert raw[start : ends[i]].decode() == w
    # the rows left to Python spliced in: the whole text, and where each line ends now
    whole, new_ends = R.splice(text, ends, b"\x1e", {i: want[i].encode() for i in bad.tolist()})
    assert bytes(whole).decode() == "\x1e".join(want)
    assert new_ends.tolist() == (np.cumsum([len(w.encode()) + 1 for w in want]) - 1).tolist()


def test_splice_replaces_any_rows() -> None:
    """Lines of any lengths replaced by longer or shorter ones, first and last included."""
    lines = [b"a", b"bcd", b"", b"efgh", b"ij"]
    text = memoryview(b"\n".join(lines))
    ends = np.cumsum([len(x) + 1 for x in lines]) - 1
    for repl in ({}, {0: b"XYZ"}, {4: b""}, {1: b"q", 2: b"long line", 4: b"zz"}):
        got, got_ends = R.splice(text, ends, b"\n", repl)
        want = [repl.get(i, x) for i, x in enumerate(lines)]
        assert bytes(got) == b"\n".join(want)
        assert got_ends.tolist() == (np.cumsum([len(x) + 1 for x in want]) - 1).tolist()


def test_the_kernels_name_the_op_kinds_they_compile_in() -> None:
    """numba caches the kernels by their file alone: the op kinds they import from
    ``_render`` must not change without that file (``_render_kernels.LAYOUT``)."""
    from pcapdiag import _render_kernels as k

    assert k.layout_digest() == k.LAYOUT, "write the new digest into _render_kernels.LAYOUT"
