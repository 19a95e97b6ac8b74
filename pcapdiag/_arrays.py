"""Set operations on 1-d integer arrays, by a sort.

numpy 2's ``np.unique`` (without indexes or counts), ``np.isin`` and ``np.union1d`` ask
``np.ma.is_masked`` first, and the first such call in a process imports ``numpy.ma``:
12 ms, 1.2 % of a one-process run on the benchmark capture, and with ``--jobs`` paid in
each worker and again in the merging parent. These give numpy's answers for integer
arrays (``tests/test_arrays.py`` holds them to it) without that import; on the sizes met
here (a few to a few million values) a sort costs what numpy's hash table does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def distinct(x: Any) -> np.ndarray:
    """``np.unique(x)``: the sorted distinct values of ``x``, flattened."""
    y = np.sort(np.ravel(x))
    if len(y) < 2:
        return y
    keep = np.empty(len(y), bool)
    keep[0] = True
    np.not_equal(y[1:], y[:-1], out=keep[1:])
    return y[keep]


def union(a: Any, b: Any) -> np.ndarray:
    """``np.union1d(a, b)``."""
    return distinct(np.concatenate([np.ravel(a), np.ravel(b)]))


def member(a: Any, b: Any) -> np.ndarray:
    """``np.isin(a, b)``: whether each value of ``a`` is in ``b`` (shaped as ``a``)."""
    a = np.asarray(a)
    b = distinct(b)
    if not len(b) or not a.size:
        return np.zeros(a.shape, bool)
    at = np.searchsorted(b, a).clip(max=len(b) - 1)
    return b[at] == a
