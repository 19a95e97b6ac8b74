"""``pcapdiag._arrays`` gives numpy's answers (``np.unique``, ``np.union1d``, ``np.isin``)
for integer arrays of any of the types the analysis holds, without importing numpy.ma."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pcapdiag import _arrays

_TYPES = [np.int64, np.uint64, np.uint32, np.int32, np.uint16, np.uint8]


def _array(values: list[int], dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.array(
        [v % (int(info.max) - int(info.min) + 1) + int(info.min) for v in values], dtype
    )


@given(
    st.lists(st.integers(0, 2**64), max_size=200),
    st.lists(st.integers(0, 2**64), max_size=200),
    st.integers(1, 300),
    st.sampled_from(_TYPES),
    st.sampled_from(_TYPES),
)
def test_set_operations_are_numpys(
    xs: list[int], ys: list[int], few: int, ta: type, tb: type
) -> None:
    # repeated values (a few distinct ones, as the stores' positions and runs have), or any
    a = _array([v % few if v % 3 else v for v in xs], ta)
    b = _array([v % few if v % 3 else v for v in ys], tb)
    got = _arrays.distinct(a)
    assert got.dtype == np.unique(a).dtype and np.array_equal(got, np.unique(a))
    assert np.array_equal(_arrays.union(a, b), np.union1d(a, b))
    assert np.array_equal(_arrays.member(a, b), np.isin(a, b))
    assert np.array_equal(_arrays.member(a, list(b.tolist())), np.isin(a, b))
    square = np.resize(a, (len(a) // 2, 2)) if len(a) >= 2 else a.reshape(-1, 1)
    assert np.array_equal(_arrays.member(square, b), np.isin(square, b))


@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300),
    st.integers(1, 12),
    st.sampled_from([np.int64, np.uint64, np.uint16]),
)
def test_factorize_is_numpys_unique_with_its_inverse(
    values: list[int], distinct: int, dtype: type
) -> None:
    # few distinct values, as the lane's blocks have them, or any; signed and not
    info = np.iinfo(dtype)
    picked = [v % distinct if v % 2 else v for v in values]
    x = np.array([v % (int(info.max) + 1) if info.min == 0 else v for v in picked], dtype)
    x = np.repeat(x, 2)[::2]  # a strided column, as a block's are
    uniq, inverse = _arrays.factorize(x)
    want_u, want_i = np.unique(x, return_inverse=True)
    assert uniq.dtype == x.dtype
    assert np.array_equal(uniq, want_u)
    assert np.array_equal(inverse, want_i.reshape(-1))


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300), st.integers(1, 12))
def test_first_index_is_numpys_return_index(values: list[int], distinct: int) -> None:
    # a batch's head keys: many repeats (each packet's key), in any order
    x = np.array([v % distinct if v % 2 else v for v in values], np.int64)
    assert np.array_equal(_arrays.first_index(x), np.unique(x, return_index=True)[1])


def test_no_numpy_ma_on_the_way() -> None:
    # what the functions are for: numpy's own ask np.ma.is_masked, which imports numpy.ma
    code = (
        "import sys, numpy as np\n"
        "from pcapdiag import _arrays\n"
        "a = np.array([3, 1, 3, 2])\n"
        "_arrays.distinct(a); _arrays.union(a, a); _arrays.member(a, [1])\n"
        "assert 'numpy.ma' not in sys.modules\n"
        "np.unique(a)\n"
        "assert 'numpy.ma' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.sampled_from([np.int64, np.uint64]),
    st.sampled_from([np.int64, np.uint64]),
)
def test_maybe_in_holds_every_member_and_is_exact_on_its_low_bits(
    xs: list[int], ys: list[int], ta: type, tb: type
) -> None:
    # hashes as the merge has them (either sign), and small values: those its table
    # (at least 2**16 entries) tells apart exactly
    for a, b in (
        (_array(xs, ta), _array(ys, tb)),
        (np.array([x % 70_000 for x in xs], ta), np.array([y % 70_000 for y in ys], tb)),
    ):
        got = _arrays.maybe_in(a, b)
        want = np.isin(a, b)
        assert got.shape == a.shape and not (want & ~got).any()
        small = (a >= 0) & (a < 2**16)
        if len(b) and (b >= 0).all() and (b < 2**16).all():
            assert np.array_equal(got[small], want[small])
