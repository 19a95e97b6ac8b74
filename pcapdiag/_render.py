"""Compiled text rendering: many lines of one template, numbers written as Python writes
them (the numbers' rules: ``pcapdiag._render_kernels``).

Why: the fast lane's JSON lines (``_fastlane.json_tails``) are one template filled with
~25 numbers and a few strings per connection. In Python each costs ~30 µs, mostly
``repr`` of floats (~1.5 µs each here); in the kernel ~1 µs.

This module is the Python side (the program, the string table, the buffer) and imports
no numba: the kernel comes from ``pcapdiag._native``, built ahead of time where it can
be, else from numba (``_render_kernels``).
"""

from __future__ import annotations

import numpy as np

from pcapdiag import _native

CONST, INT, SECONDS, FIXED3, MILLIS3, STR = range(6)


class Program:
    """A template as a program: ``const(text)``, ``number(kind, column)`` and
    ``string(column)`` (the column holds an index into the table ``run`` is given), the
    latter two replaced by ``alt`` where column ``cond`` is 0."""

    def __init__(self) -> None:
        self.items: list[str | tuple[int, int, int, str]] = []

    def const(self, text: str) -> None:
        self.items.append(text)

    def number(self, kind: int, column: int, cond: int = -1, alt: str = "null") -> None:
        self.items.append((kind, column, cond, alt))

    def string(self, column: int, cond: int = -1, alt: str = "null") -> None:
        self.items.append((STR, column, cond, alt))

    def compile(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(ops, constants, their offsets, the most bytes a row takes beyond its strings);
        neighbouring constants become one."""
        consts: list[bytes] = []
        ids: dict[bytes, int] = {}
        ops: list[tuple[int, int, int, int]] = []
        per_row = 0

        def const_id(text: str) -> int:
            b = text.encode()
            if b not in ids:
                ids[b] = len(consts)
                consts.append(b)
            return ids[b]

        pending = ""
        for item in [*self.items, ""]:
            if isinstance(item, str):
                pending += item
                continue
            if pending:
                ops.append((CONST, const_id(pending), -1, -1))
                per_row += len(pending.encode())
                pending = ""
            kind, column, cond, alt = item
            ops.append((kind, column, cond, const_id(alt) if cond >= 0 else -1))
            per_row += max(21 if kind != STR else 0, len(alt.encode()))
        if pending:
            ops.append((CONST, const_id(pending), -1, -1))
            per_row += len(pending.encode())
        table = np.frombuffer(b"".join(consts) or b"\0", np.uint8).copy()
        coff = np.cumsum([0, *map(len, consts)]).astype(np.int64)
        return np.array(ops, np.int64).reshape(-1, 4), table, coff, per_row


def run(
    compiled: tuple[np.ndarray, np.ndarray, np.ndarray, int],
    cols: np.ndarray,
    strings: np.ndarray,
    offsets: np.ndarray,
    string_ops: int,
    sep: bytes = b"\n",
    longest: int | None = None,
) -> tuple[memoryview, np.ndarray, np.ndarray]:
    """The lines of ``cols`` joined by ``sep``, with the string table ``strings`` (UTF-8
    bytes, string k at ``offsets[k]:offsets[k + 1]``); ``string_ops``: how many string
    operations the program has, and ``longest`` string (for the buffer's size).
    Returns (UTF-8 text, bad rows, where each row's text ends). A bad row's text is
    unfinished: the caller replaces it (``splice``), the rows are not written again.
    The text is a view of the buffer it was written in, not a copy: the JSON output
    slices it and joins the slices into its writes (``_fastlane.Lines``); copying it
    whole first cost 0.1 s of a 100 MB output."""
    ops, consts, coff, per_row = compiled
    m = len(cols)
    if not m:
        return memoryview(b""), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if longest is None:
        longest = int(np.diff(offsets).max()) if len(offsets) > 1 else 0
    out = np.empty(m * (per_row + len(sep) + string_ops * longest), np.uint8)
    bad = np.zeros(m, np.uint8)
    ends = np.empty(m, np.int64)
    seps = np.frombuffer(sep, np.uint8)
    cols = np.ascontiguousarray(cols, np.int64)
    n = _native.kernels("_render_kernels").render(
        ops, cols, consts, coff, strings, offsets, seps, out, bad, ends
    )
    return memoryview(out)[:n], np.flatnonzero(bad), ends


def splice(
    text: memoryview, ends: np.ndarray, sep: bytes, lines: dict[int, bytes]
) -> tuple[bytes | memoryview, np.ndarray]:
    """``text`` (lines ending at ``ends``, joined by ``sep``) with row r's line replaced
    by ``lines[r]``: (the text, where each line ends now)."""
    if not lines:
        return text, ends
    pieces: list[bytes | memoryview] = []
    grow = np.zeros(len(ends), np.int64)
    at = 0  # the text's first byte not yet taken
    for r in sorted(lines):
        line = lines[r]
        a, b = int(ends[r - 1]) + len(sep) if r else 0, int(ends[r])
        pieces += [text[at:a], line]
        at = b
        grow[r] = len(line) - (b - a)
    pieces.append(text[at:])
    return b"".join(pieces), ends + np.cumsum(grow)


def table(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A string table for ``run``: (UTF-8 bytes, offsets). The texts are JSON; a lone
    surrogate (a file name's undecodable byte, as Python reads it) has no UTF-8 and is
    written as its JSON escape, which reads back as the same string."""
    raw = [t.encode("utf-8", "backslashreplace") for t in texts]
    data = np.frombuffer(b"".join(raw) or b"\0", np.uint8)
    return data, np.cumsum([0, *map(len, raw)]).astype(np.int64)
