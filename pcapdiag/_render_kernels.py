"""The kernel of ``pcapdiag._render``: many lines of one template, numbers written as
Python writes them. Importing this module imports numba (kernels compile on first use,
cached on disk); ``pcapdiag._native`` serves them without numba once built.

A *program* is a list of operations ``(kind, arg, cond, alt)``, run for each row of an
int64 matrix ``cols``: ``CONST`` writes constant ``arg``; the others write row's column
``arg`` as ``INT`` (``str``), ``SECONDS`` (``repr(t / 1e9)``), ``FIXED3``
(``f"{t / 1e9:.3f}"``), ``MILLIS3`` (``repr(round(t / 1e6, 3))``) or ``STR`` (string
``arg`` of the table). When ``cond >= 0`` and the row's column ``cond`` is 0, constant
``alt`` is written instead (``null``, or nothing). A row with a number these kernels do
not write exactly is marked in ``bad``; the caller writes that row in Python.

Numbers, exactly (``tests/test_render.py`` compares each with Python on millions of
values: random, boundaries, ties). ``repr`` is the shortest decimal that reads back as
the double (of those, the nearest to it):

- Durations (``t / 1e9 < 2**23``): a double there is finer than a
  nanosecond, so no other decimal of 9 places or fewer lies in its rounding interval:
  the text is the nanoseconds, trailing zeros dropped.
- Timestamps of 2004 to 2038 (``2**30 <= t / 1e9 < 2**31``): the double is ``M / 2**22``;
  its rounding interval is ``(2M ± 1) / 2**23`` (closed when M is even: a tie reads back
  to the even mantissa), and the shortest decimal in it is found place by place (at most
  7: the interval is wider than 1e-7), the one nearest the double. A tie between two
  nearest is marked bad. A whole microsecond (a pcap's timestamps) is written as its
  digits at once: it lies in the double's interval (the double is its rounding), which
  is narrower (2**-22 s) than the 1e-6 between it and any other decimal of six places
  or fewer, so it is the shortest and the nearest (the search took ~40 ns a timestamp).
- ``.3f`` and ``round(., 3)`` round the nanoseconds (microseconds) as the double would;
  at an exact half the double's binary error decides, found exactly (``_above``), and
  where the double is the half itself, the even digit. (Left to Python, these were 0.1 %
  of the benchmark's lines, ~10 ms.)
- Below 1e-4 s (``4.5e-05``): the same digits, with an exponent (from -5 to -9).
- Anything else (negative, huge): marked bad.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from pcapdiag._native import layout_digest as _layout_digest
from pcapdiag._render import CONST, FIXED3, INT, SECONDS, STR

# numba's cache is keyed on this file alone, yet the kernels compile in the op kinds
# imported above: the digest of them (``layout_digest``, checked by tests/test_render.py) is
# written here, so that changing one there changes this file.
LAYOUT = "29f795995dc1695e"


def layout_digest() -> str:
    """A digest of the op kinds these kernels take from ``_render``."""
    from pcapdiag import _render

    return _layout_digest(globals(), _render)


NS = 1_000_000_000
_SMALL_MIN = 100_000  # 1e-4 s: below it repr writes an exponent
_SMALL_END = (1 << 23) * NS
_TS_MIN, _TS_END = (1 << 30) * NS, (1 << 31) * NS
_D = 1 << 23
_HALF_D = 1 << 22


@nb.njit(cache=True, nogil=True, inline="always")
def _copy(src: np.ndarray, a: int, b: int, out: np.ndarray, p: int) -> int:
    # unsigned indexes: no negative-index wraparound code, ~5x a signed loop and
    # ~2x a slice assignment (the lengths here are a few to a few hundred bytes); eight
    # bytes read before eight are written (``src`` and ``out`` might overlap, so each
    # byte read after a byte written must wait for it): the render kernel ~0.082 s ->
    # ~0.077 s on the benchmark capture (means of seven runs)
    i, k, e = np.uint64(p), np.uint64(a), np.uint64(b)
    u = np.uint64
    while k + u(8) <= e:
        b0, b1, b2, b3 = src[k], src[k + u(1)], src[k + u(2)], src[k + u(3)]
        b4, b5, b6, b7 = src[k + u(4)], src[k + u(5)], src[k + u(6)], src[k + u(7)]
        out[i], out[i + u(1)], out[i + u(2)], out[i + u(3)] = b0, b1, b2, b3
        out[i + u(4)], out[i + u(5)], out[i + u(6)], out[i + u(7)] = b4, b5, b6, b7
        i += u(8)
        k += u(8)
    while k < e:
        out[i] = src[k]
        i += np.uint64(1)
        k += np.uint64(1)
    return np.int64(i)


@nb.njit(cache=True, nogil=True)
def _int(v: int, out: np.ndarray, p: int) -> int:
    """``str(v)`` for v >= 0."""
    n = 1
    x = v
    while x >= 10:
        x //= 10
        n += 1
    for k in range(n - 1, -1, -1):
        out[p + k] = 48 + v % 10
        v //= 10
    return p + n


@nb.njit(cache=True, nogil=True)
def _frac(v: int, places: int, out: np.ndarray, p: int) -> int:
    """``v`` zero-padded to ``places`` digits."""
    for k in range(places - 1, -1, -1):
        out[p + k] = 48 + v % 10
        v //= 10
    return p + places


@nb.njit(cache=True, nogil=True)
def _seconds(t: int, out: np.ndarray, p: int) -> int:
    """``repr(t / 1e9)``; -1 when not written here (module docstring)."""
    # a duration, or a timestamp of whole microseconds (module docstring): the
    # nanoseconds' digits, trailing zeros dropped
    if t == 0 or (_SMALL_MIN <= t < _SMALL_END) or (_TS_MIN <= t < _TS_END and t % 1000 == 0):
        s, n = t // NS, t % NS
        places = 9
        while places > 1 and n % 10 == 0:
            n //= 10
            places -= 1
        p = _int(s, out, p)
        out[p] = 46
        return _frac(n, places, out, p + 1)
    if 0 < t < _SMALL_MIN:  # d.ddde-0x: the nanoseconds' digits, trailing zeros dropped
        n, zeros = t, 0
        while n % 10 == 0:
            n //= 10
            zeros += 1
        digits, x = 1, n
        while x >= 10:
            x //= 10
            digits += 1
        p = _frac(n, digits, out, p + 1)  # from the second byte: the point goes in after
        out[p - digits - 1] = out[p - digits]
        if digits > 1:
            out[p - digits] = 46
        else:
            p -= 1
        exp = 9 - (digits - 1 + zeros)
        out[p], out[p + 1], out[p + 2], out[p + 3] = 101, 45, 48, 48 + exp  # e-0x
        return p + 4
    if not (_TS_MIN <= t < _TS_END):
        return -1
    s, n = t // NS, t % NS
    q, r = (n << 22) // NS, (n << 22) % NS  # the fraction in units of 2**-22
    b = q
    if 2 * r > NS or (2 * r == NS and q & 1):  # rounded half to even
        b += 1
    if b == 1 << 22:
        s += 1
        b = 0
    if s >= 1 << 31 or (s == 1 << 30 and b == 0):  # out of range; a power of two
        return -1
    even = b & 1 == 0
    pw = 1
    for k in range(8):
        lo, hi, mid = (2 * b - 1) * pw, (2 * b + 1) * pw, 2 * b * pw
        # candidates c with lo <= c * 2**23 <= hi (strictly, when odd)
        c_lo = -((-lo) >> 23) if even else (lo >> 23) + 1
        c_hi = hi >> 23 if even else -((-hi) >> 23) - 1
        if c_lo <= c_hi:
            near = (mid + _HALF_D) >> 23
            if (mid & (_D - 1)) == _HALF_D and near - 1 >= c_lo and near <= c_hi:
                return -1  # two nearest: Python decides
            c = min(max(near, c_lo), c_hi)
            p = _int(s, out, p)
            out[p] = 46
            return _frac(c, max(k, 1), out, p + 1)
        pw *= 10
    return -1


@nb.njit(cache=True, nogil=True)
def _above(t: int, scale: float) -> float:
    """The sign of ``t / scale`` (the double) less the exact quotient, for ``t < 2**53``
    and ``scale`` 1e6 or 1e9: the double's product with ``scale``, made exact, less ``t``.
    Dekker's product: the double split in two (Veltkamp: 26 and 27 bits), whose products
    with ``scale`` (21 significant bits at most) are exact, so the rounding error of the
    product is too. It needs each multiply rounded on its own: numba fuses none (no
    fast-math; the built kernels' code holds no FMA instruction here), and
    ``tests/test_render.py`` compares 400,000 halves with Python."""
    d = t / scale
    p = d * scale
    c = 134217729.0 * d  # 2**27 + 1
    hi = c - (c - d)
    err = (hi * scale - p) + (d - hi) * scale  # d * scale - p, exactly
    return (p - t) + err  # (p - t is exact: p is within a factor 2 of t)


@nb.njit(cache=True, nogil=True)
def _fixed3(t: int, out: np.ndarray, p: int) -> int:
    """``f"{t / 1e9:.3f}"``; -1 when not written here. At an exact half millisecond the
    double's side of it decides (``_above``), and on it, the even millisecond."""
    if not (0 <= t < _SMALL_END):
        return -1
    ms = (t + 500_000) // 1_000_000
    if t % 1_000_000 == 500_000:
        s = _above(t, 1e9)
        if s < 0 or (s == 0 and ms & 1):
            ms -= 1
    p = _int(ms // 1000, out, p)
    out[p] = 46
    return _frac(ms % 1000, 3, out, p + 1)


@nb.njit(cache=True, nogil=True)
def _millis3(t: int, out: np.ndarray, p: int) -> int:
    """``repr(round(t / 1e6, 3))``; -1 when not written here. At an exact half
    microsecond, as ``_fixed3``."""
    if not (0 <= t < _SMALL_END):
        return -1
    us = (t + 500) // 1000
    if t % 1000 == 500:
        s = _above(t, 1e6)
        if s < 0 or (s == 0 and us & 1):
            us -= 1
    frac, places = us % 1000, 3
    while places > 1 and frac % 10 == 0:
        frac //= 10
        places -= 1
    p = _int(us // 1000, out, p)
    out[p] = 46
    return _frac(frac, places, out, p + 1)


@nb.njit(cache=True, nogil=True)
def render(
    ops: np.ndarray,
    cols: np.ndarray,
    consts: np.ndarray,
    coff: np.ndarray,
    strs: np.ndarray,
    soff: np.ndarray,
    sep: np.ndarray,
    out: np.ndarray,
    bad: np.ndarray,
    ends: np.ndarray,
) -> int:
    """Every row of ``cols`` through the program ``ops``, ``sep`` between lines, into
    ``out`` (large enough); returns the bytes written. Row r's text ends at ``ends[r]``
    (the separator follows). Rows marked in ``bad`` are written as far as they went (the
    caller replaces their text)."""
    p = 0
    for r in range(cols.shape[0]):
        if r:
            p = _copy(sep, 0, len(sep), out, p)
        for o in range(ops.shape[0]):
            kind, arg, cond, alt = ops[o, 0], ops[o, 1], ops[o, 2], ops[o, 3]
            if cond >= 0 and cols[r, cond] == 0:
                p = _copy(consts, coff[alt], coff[alt + 1], out, p)
                continue
            if kind == CONST:
                p = _copy(consts, coff[arg], coff[arg + 1], out, p)
                continue
            v = cols[r, arg]
            if kind == INT:
                if v < 0:
                    bad[r] = 1
                else:
                    p = _int(v, out, p)
            elif kind == STR:
                p = _copy(strs, soff[v], soff[v + 1], out, p)
            else:
                if kind == SECONDS:
                    q = _seconds(v, out, p)
                elif kind == FIXED3:
                    q = _fixed3(v, out, p)
                else:
                    q = _millis3(v, out, p)
                if q < 0:
                    bad[r] = 1
                else:
                    p = q
        ends[r] = p
    return p
