"""LLVM's library pages, handed back once numba has loaded the compiled kernels.

Why
    numba loads the kernels from its cache through LLVM. Its shared library (llvmlite's
    ``libllvmlite.so``) then has ~68 MB of pages resident in this process: the library's
    static initialisers and the JIT linker touch them once, and nothing reads them again
    unless a kernel has to be compiled anew. They count in the process's resident set
    all the same: 68 of the 237 MB peak of ``pcapdiag analyze`` on the benchmark's
    capture (``benchmarks/bench_peers.py``), whatever the capture's size.

    Once the kernels are loaded, ``hand_back`` drops the pages of the library's
    read-only mappings from this process (``madvise(MADV_DONTNEED)``): they stay in the
    page cache, and fault back in from there if LLVM runs again. Only mappings without
    a private copy of any page are dropped: the relocated read-only data (RELRO) and the
    writable data hold the process's own changes, which dropping would lose.

    Linux only (``/proc/self/smaps``); elsewhere, or if anything fails, nothing is done.
"""

from __future__ import annotations

import os
from typing import Any

LIBRARY = "libllvmlite"  # the mapped file's name holds this
MADV_DONTNEED = 4

_ranges: list[tuple[int, int]] | None = None  # the clean read-only mappings, once found
_madvise: Any = None


def clean_mappings(name: str = LIBRARY) -> list[tuple[int, int]]:
    """(start, end) of the mappings of a file whose path holds ``name`` that are read-only
    and hold no private copy of a page (anonymous, or swapped out)."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    private = 0
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            head = fields[0]
            if "-" in head and not head.endswith(":"):  # a mapping's first line
                if cur is not None and not private:
                    out.append(cur)
                cur, private = None, 0
                if len(fields) > 5 and name in fields[5] and "w" not in fields[1]:
                    lo, hi = head.split("-")
                    cur = (int(lo, 16), int(hi, 16))
            elif cur is not None and head in ("Anonymous:", "Swap:"):  # private copies
                private += int(fields[1])
    if cur is not None and not private:
        out.append(cur)
    return out


def hand_back() -> int:
    """Drop LLVM's clean read-only pages from this process; returns the bytes of the
    mappings advised (0 when nothing was done). Cheap after the first call: the
    mappings are found once (a forked child has the same)."""
    global _ranges, _madvise
    try:
        if _madvise is None:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _madvise = libc.madvise
        if _ranges is None:
            _ranges = clean_mappings() if os.path.exists("/proc/self/smaps") else []
    except (OSError, AttributeError, ValueError):
        _madvise, _ranges = False, []
    if not _madvise:
        return 0
    done = 0
    for lo, hi in _ranges:
        if _madvise(lo, hi - lo, MADV_DONTNEED) == 0:
            done += hi - lo
    return done
