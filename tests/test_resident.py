"""LLVM's pages handed back after numba loaded the kernels (``pcapdiag._resident``): only
clean read-only mappings are dropped, their contents read back the same, LLVM still
compiles afterwards, and an analysis through the fast lane ends with the library's pages
out of the process and the answer unchanged."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcapdiag import _resident

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps"), reason="Linux only (/proc/self/smaps)"
)


def _rss_kb(start: int) -> int:
    """Resident kB of the mapping starting at ``start``."""
    found = False
    with open("/proc/self/smaps", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                found = int(fields[0].split("-")[0], 16) == start
            elif found and fields[0] == "Rss:":
                return int(fields[1])
    raise AssertionError("no such mapping")


def _private(path: Path, writes: bool = False) -> mmap.mmap:
    """``path`` mapped privately, read-only; with ``writes``, its first page written
    before it is made read-only (as the loader leaves relocated data: RELRO)."""
    with open(path, "rb") as f:
        if not writes:
            return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    m[0] = 255
    buf = (ctypes.c_char * len(m)).from_buffer(m)
    addr = ctypes.addressof(buf)
    del buf
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr, len(m), mmap.PROT_READ) == 0
    return m


def test_only_clean_read_only_mappings_are_found(tmp_path: Path) -> None:
    """A file mapped privately and read-only is found; the same file mapped so with a
    page written before (a private copy: the loader's relocated data) is not, as
    dropping it would lose the write."""
    path = tmp_path / "pcapdiag-resident-probe.bin"
    page = mmap.PAGESIZE
    path.write_bytes(bytes(range(256)) * (16 * page // 256))
    clean = _private(path)
    relro = _private(path, writes=True)
    try:
        assert sum(clean[i] for i in range(0, len(clean), page)) == 0  # every page touched
        assert relro[0] == 255
        found = _resident.clean_mappings(path.name)
        assert len(found) == 1
        lo, hi = found[0]
        assert hi - lo == len(clean)
        assert _rss_kb(lo) == len(clean) // 1024
    finally:
        clean.close()
        relro.close()


def test_dropped_pages_read_back_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pcapdiag-resident-probe.bin"
    data = os.urandom(32 * mmap.PAGESIZE)
    path.write_bytes(data)
    m = _private(path)
    try:
        assert m[:] == data
        monkeypatch.setattr(_resident, "_ranges", _resident.clean_mappings(path.name))
        ((lo, _hi),) = _resident._ranges
        assert _rss_kb(lo) == len(data) // 1024
        assert _resident.hand_back() == len(data)
        assert _rss_kb(lo) == 0
        assert m[:] == data
    finally:
        m.close()


_CHILD = r"""
import io, json, sys
from pcapdiag import _fastlane, _resident, analyze
from pcapdiag.report import data
assert _fastlane.kernels() is not None
def llvm_kb():
    total, cur = 0, False
    for line in open("/proc/self/smaps"):
        f = line.split()
        if "-" in f[0] and not f[0].endswith(":"):
            cur = len(f) > 5 and _resident.LIBRARY in f[5] and "w" not in f[1]
        elif cur and f[0] == "Rss:":
            total += int(f[1])
    return total
result = analyze(sys.argv[1])
out = io.StringIO()
data.write_json(result, out)
after = llvm_kb()
import numba
@numba.njit
def fresh(x):  # compiled now, after the pages went: LLVM runs from the page cache
    return x * 3 + 1
print(json.dumps({"llvm_kb": after, "fresh": fresh(13), "json": out.getvalue()}))
"""


def _child(capture: Path, lane: str) -> dict:
    import json

    env = dict(os.environ, PCAPDIAG_FASTLANE=lane)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(capture)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_an_analysis_through_the_lane_leaves_llvm_out_and_the_answer_as_it_was() -> None:
    capture = SAMPLES / "keepalive-idle-requests.pcap"
    got = _child(capture, "1")
    # the library's read-only pages: 68 MB resident before, with llvmlite 0.4x
    assert got["llvm_kb"] < 8 * 1024, got["llvm_kb"]
    assert got["fresh"] == 40
    assert got["json"] == _child(capture, "0")["json"]  # the exact tracker's
