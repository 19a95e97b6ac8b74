"""Set operations on 1-d integer arrays, by a sort.

numpy 2's ``np.unique`` (without indexes or counts), ``np.isin`` and ``np.union1d`` ask
``np.ma.is_masked`` first, and the first such call in a process imports ``numpy.ma``:
12 ms, 1.2 % of a one-process run on the benchmark capture, and with ``--jobs`` paid in
each worker and again in the merging parent. With indexes, numpy arg-sorts (stably, for
the first places) and scatters back, which costs two to four times what a plain sort and
a search do on the fast lane's blocks (``factorize``, ``first_index``). These give
numpy's answers for integer arrays (``tests/test_arrays.py`` holds them to it); on the
sizes met here (a few to a few million values) a sort costs what numpy's hash table does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _firsts(y: np.ndarray) -> np.ndarray:
    """Where each run of equal values of the sorted, non-empty ``y`` starts (a mask)."""
    keep = np.empty(len(y), bool)
    keep[0] = True
    np.not_equal(y[1:], y[:-1], out=keep[1:])
    return keep


def distinct(x: Any) -> np.ndarray:
    """``np.unique(x)``: the sorted distinct values of ``x``, flattened."""
    y = np.sort(np.ravel(x))
    return y[_firsts(y)] if len(y) else y


def factorize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True)`` of a 1-d array: the distinct values, then
    each value's place among them by binary search (a block's heads, addresses, ports:
    24 ms of the benchmark's blocks by numpy's, 12 ms so)."""
    uniq = distinct(x)
    return uniq, np.searchsorted(uniq, x)


def first_index(x: np.ndarray) -> np.ndarray:
    """``np.unique(x, return_index=True)[1]``: where each distinct value of the 1-d ``x``
    first occurs, in the values' order. An unstable sort, then the least place in each
    run of equal values (0.06 against 0.22 ms for a batch's 7,000 heads)."""
    if not len(x):
        return np.zeros(0, np.intp)
    order = np.argsort(x)
    return np.minimum.reduceat(order, np.flatnonzero(_firsts(x[order])))


def union(a: Any, b: Any) -> np.ndarray:
    """``np.union1d(a, b)``."""
    return distinct(np.concatenate([np.ravel(a), np.ravel(b)]))


class Sieve:
    """A table of the low bits of the integers ``b``: which values of an array may be
    among them, at one gather each (``__call__``), a superset of ``member``'s answer for
    a binary search to confirm. Made for hashes, whose low bits are spread: at 64 entries
    a value (2**24 at most), 1 in 64 of the others or fewer get through. Looking a batch's
    packets up among the handed-over 4-tuples by a search of each cost four times as
    much (2 ms a batch); the merge's records among a few thousand windows, 0.04 of its
    0.2 s on four times the benchmark capture."""

    __slots__ = ("mask", "table")

    def __init__(self, b: np.ndarray) -> None:
        bits = min(24, max(16, (len(b) * 64 - 1).bit_length()))
        self.mask = (1 << bits) - 1
        self.table = np.zeros(1 << bits, bool)
        self.table[np.bitwise_and(b, self.mask)] = True

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return self.table[np.bitwise_and(a, self.mask)]


def maybe_in(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which values of the 1-d integer ``a`` may be in ``b`` (``Sieve``), made once."""
    if not len(b) or not len(a):
        return np.zeros(len(a), bool)
    return Sieve(b)(a)


def member(a: Any, b: Any) -> np.ndarray:
    """``np.isin(a, b)``: whether each value of ``a`` is in ``b`` (shaped as ``a``)."""
    a = np.asarray(a)
    b = distinct(b)
    if not len(b) or not a.size:
        return np.zeros(a.shape, bool)
    at = np.searchsorted(b, a).clip(max=len(b) - 1)
    return b[at] == a
