"""Read capture files: the only module that opens them.

Formats
    pcap (magics a1b2c3d4 µs, a1b23c4d ns, a1b2cd34 "modified" with 24-byte record
    headers; either byte order; LINKTYPE = low 16 bits of the network field) and pcapng
    (several sections, each with its own byte order and interface ids; EPB, SPB, the
    obsolete PB, IDB with ``if_tsresol`` / ``if_tsoffset``, DSB into ``info.secrets``;
    NRB, ISB, custom and unknown blocks are skipped by their length; systemd-journal and
    sysdig event blocks are not delivered but use up a frame number, as in Wireshark).
    Either may be gzip-compressed (multi-member too). The format is decided by the magic
    number, never by the file name.

Why mmap + column batches
    An uncompressed file is mmapped read-only and exposed once as a uint8 array; each
    ``RecordBatch`` holds *columns* (frame, ts_ns, offset, caplen, ...) that point into
    it, so packet bytes are never copied and the decoder works column-wise with numpy.
    Consumed pages are handed back with ``madvise(DONTNEED)`` and gzip is inflated in
    bounded pieces (8 MiB in, at most 32 MiB out; a record cut by a piece border is
    stitched in a small buffer), so memory does not grow with the file. The one
    sequential part is finding where each record starts (each length depends on the
    previous record): a list comprehension over ``struct.unpack_from`` that only collects
    offsets, speculatively, then checked as a whole. All header fields are gathered at
    once through an unaligned ``V16``/``V28`` numpy view and converted with integer math.
    That walk is ~85% of the time of the pure path.

Compiled kernels (numba)
    ``pcapdiag._compiled`` holds numba versions of the walk (``pcap_walk`` / ``ng_walk``:
    chain, prefix checks and header gather in one loop) that also decode each record's
    headers while its bytes are in the cache (``RecordBatch._pre``, taken by
    ``decode_batch``), and of the common-case decode for batches made elsewhere. They give
    exactly the pure path's results (the same segments, hence the same warnings and
    errors); the pure code stays, as the fallback and for everything unusual. With them,
    uncompressed files are also mapped 64 MiB ahead of the walk in one call
    (``MADV_POPULATE_READ``), which keeps the CPU's prefetching going across pages.
    When: ``import numba`` plus loading the cached kernels costs ~0.6 s (compiling them,
    once per install, ~10 s; the kernels built ahead of time, ``pcapdiag._native``, load
    in ~10 ms without numba); read+decode goes from ~1.4 to ~0.2 µs a record, so the
    kernels are loaded only once at least ``COMPILE_MIN_RECORDS`` (1 M) more records are
    expected: those win back more than numba's loading costs (50,000 when they are built
    ahead of time: ``COMPILE_MIN_RECORDS_BUILT``; a 300 MB slice of the benchmark capture,
    518,872 records, takes 0.75–1.06 s with them, 1.19 s without). The estimate is made
    after each batch from 65,536 records (a default batch) on, from the share of the file
    consumed (mmap position, or gzip's compressed bytes); for a pipe, the kernels are
    loaded once as many records were read. Once loaded in a process they are used for every
    capture (small ones included: they cost nothing more then).
    ``PCAPDIAG_COMPILED=0`` forces the pure path, ``=1`` the kernels even for tiny
    captures (the tests compare both). If numba is missing or fails (no writable cache
    location, a compile error), the pure path is used, silently. numba caches next to
    ``_compiled.py`` or, in a read-only install, in its per-user cache directory
    (``NUMBA_CACHE_DIR`` overrides); with neither writable the kernels are not used.

Warnings vs errors
    ``CaptureWarning`` (one per kind: a count and the first frame) for what can be read
    around: a capture ending inside a record, timestamps going backwards, caplen >
    wirelen, caplen > snaplen (up to 256 KiB), records naming an undefined pcapng
    interface (skipped; they keep their frame number), SPBs (no timestamp: they get the
    previous record's), a truncated gzip stream or junk after it.
    ``CorruptCaptureError`` for damage that makes the rest unreadable: absurd record
    lengths, pcapng block lengths that are invalid or disagree with their trailer, a
    corrupt gzip stream. Every record before the damage is delivered first.
    ``NotACaptureError`` / ``CaptureError`` for a path that is not a readable capture.
    No other exception escapes for any input bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import stat
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from pcapdiag import _arrays
from pcapdiag.errors import (
    CaptureError,
    CorruptCaptureError,
    NotACaptureError,
    UsageError,
    located,
)

#: Largest caplen accepted (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD).
MAX_CAPLEN = 262_144
_MAX_CAPLEN_DBUS = 128 * 1024 * 1024  # LINKTYPE_DBUS (231) may carry 128 MiB messages
#: Largest pcapng block considered a plausible *truncation* when it runs past EOF.
_PLAUSIBLE_BLOCK = MAX_CAPLEN + 32 + 65_536
#: Largest pcapng block accepted at all (bounds the gzip carry buffer).
_MAX_BLOCK = _MAX_CAPLEN_DBUS + 65_536

_IN_CHUNK = 8 * 1024 * 1024  # compressed / raw bytes read at a time
_OUT_CHUNK = 32 * 1024 * 1024  # at most this many decompressed bytes per piece
_SNIFF = 65_536
BATCH = 32768  # records a batch (``Capture.batches``), unless asked otherwise
_DROP_EVERY = 4 * 1024 * 1024  # hand consumed mmap pages back in steps of this size

_PCAP_US, _PCAP_NS, _PCAP_MOD = 0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34
_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D
_IDB, _PB, _SPB, _EPB, _DSB = 1, 2, 3, 6, 0x0A
# Blocks Wireshark shows as frames although they hold no packet.
_EVENT_BLOCKS = frozenset({0x9, 0x204, 0x208, 0x216, 0x217, 0x221, 0x222})
# Blocks no byte range may start after (``Capture.spans``): what the parser carries past
# them (a section, an interface, the time an SPB takes from before, a frame of an event)
_NG_STOPS = np.array(sorted({_SHB, _IDB, _PB, _SPB, *_EVENT_BLOCKS}), np.int64)
_MAX_IFACES = 65_536  # interface column is uint16

#: Load the compiled kernels once at least this many more records are expected (numba's
#: loading), or this many when they are built ahead of time (``_native``).
COMPILE_MIN_RECORDS = 1_000_000
COMPILE_MIN_RECORDS_BUILT = 50_000
_COMPILE_PROBE = 65_536  # records read before the estimate is made
_COMPILED_ENV = "PCAPDIAG_COMPILED"
#: dtypes of the TCP columns the compiled kernels fill (``decode._TCP_FIELDS`` order)
TCP_DTYPES = (
    np.uint8, np.uint64, np.uint64, np.uint64, np.uint64, np.uint16, np.uint16, np.uint32,
    np.uint32, np.uint8, np.uint16, np.int32, np.int64, np.int32, np.uint8, np.uint16,
)  # fmt: skip

_MORE, _NEED, _DONE = 0, 1, 2  # parse status: batch full / need more input / finished
_I32MAX = 0x7FFF_FFFF
_NS = 1_000_000_000
_U32LE = struct.Struct("<I").unpack_from


@dataclass(slots=True)
class CaptureWarning:
    """Something odd but survivable (truncated last record, unknown block, ...)."""

    path: str
    message: str
    frame: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        return located(self.path, self.message, frame=self.frame, offset=self.offset)


@dataclass(slots=True)
class RecordBatch:
    """Up to N consecutive records of one capture, column-wise.

    ``data`` is a uint8 array (a view of the mmap, or a decompressed chunk) that holds
    the packet bytes of every record in the batch; ``offset[i]`` is where record i's
    packet bytes start in it and ``caplen[i]`` how many were captured. ``data`` is only
    valid until the next batch is requested.
    """

    data: np.ndarray  # uint8
    frame: np.ndarray  # int64, 1-based frame numbers as Wireshark shows them
    ts_ns: np.ndarray  # int64, epoch nanoseconds
    offset: np.ndarray  # int64, start of packet bytes in ``data``
    caplen: np.ndarray  # int32, bytes captured
    wirelen: np.ndarray  # int32, original length on the wire
    linktype: np.ndarray  # uint16, LINKTYPE_* value of the record's interface
    interface: np.ndarray  # uint16, pcapng interface id (0 for pcap)
    #: private: what the compiled walk already decoded (see ``decode_batch``)
    _pre: Predecoded | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.frame)

    def rows(self, frames: np.ndarray) -> np.ndarray:
        """The rows holding the frames ``frames`` (increasing). A batch's frames increase
        and are nearly always consecutive (pcapng may skip one): a record's row is then
        its frame minus the first, a twentieth of the time of a search."""
        fr = self.frame
        if len(fr) and int(fr[-1]) - int(fr[0]) == len(fr) - 1:
            return frames - fr[0]
        return np.searchsorted(fr, frames)


@dataclass(slots=True)
class Predecoded:
    """The decoding the compiled walk did while the bytes were in the cache: ``st`` per
    record (0: not decoded), the TCP rows' record indices ``idx`` and columns ``cols``
    (``decode._TCP_FIELDS`` order). Valid only for the arrays in ``key`` (the batch's
    data, offset, caplen, wirelen and linktype), and used once."""

    key: tuple[np.ndarray, ...]
    st: np.ndarray
    idx: np.ndarray
    cols: tuple[np.ndarray, ...]


@dataclass
class CaptureInfo:
    """Facts about one capture file, complete once its batches are exhausted.

    ``first_ts_ns`` / ``last_ts_ns`` are the earliest and latest record time (as capinfos
    reports them); they differ from the first and last record's time when time goes
    backwards. ``packets`` counts delivered records.
    """

    path: str
    format: str = ""  # "pcap" | "pcapng"
    compressed: bool = False  # gzip
    nanosecond: bool = False  # pcap magic a1b23c4d (pcapng: per interface)
    byte_order: str = ""  # "little" | "big"
    snaplen: int = 0
    packets: int = 0
    link_types: dict[int, int] = field(default_factory=dict)  # LINKTYPE -> records
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    warnings: list[CaptureWarning] = field(default_factory=list)
    secrets: list[tuple[int, bytes]] = field(default_factory=list)  # pcapng DSB (type, data)


@dataclass(slots=True)
class SpanInfo:
    """What reading one span of a file found (``Capture.span_info``): its facts, and
    its warnings still as tallies, so that ``join_spans`` can make the whole file's."""

    info: CaptureInfo  # its ``warnings`` empty: they are in ``tallies``
    tallies: dict[str, dict[str, Any]]
    first_ts: int | None  # the span's first record's time
    last_ts: int | None  # ... and its last's


# Tallies of the blocks before a pcapng's first packet, or of a pcap's header: every span
# reads those again (``Capture._run_mmap``)
_HEAD_KINDS = ("version", "too_many_ifaces")


def join_spans(path: str, spans: list[tuple[SpanInfo, int]]) -> CaptureInfo | None:
    """The ``CaptureInfo`` of a whole reading of a file, from the readings of its spans
    (``Capture.spans``), each with its first frame, in file order: counts add up, each
    warning keeps its first frame and its place (the order kinds first came), and time
    going backwards from one span's last record to the next one's first counts as it
    does within a span. None where that cannot be told exactly from the spans: secrets
    in any of them (the header's are read again by each), or a step back at a seam
    that would be a new kind of warning among others new in that span (their order
    within its first batch is not kept)."""
    if not spans:
        return None
    first = spans[0][0].info
    info = dataclasses.replace(first, path=path, warnings=[], link_types={}, secrets=[])
    tallies: dict[str, dict[str, Any]] = {}
    info.packets = 0
    last: int | None = None
    for k, (span, frame) in enumerate(spans):
        s = span.info
        if s.secrets:
            return None
        info.packets += s.packets
        for lt, n in s.link_types.items():
            info.link_types[lt] = info.link_types.get(lt, 0) + n
        lo = [t for t in (info.first_ts_ns, s.first_ts_ns) if t is not None]
        hi = [t for t in (info.last_ts_ns, s.last_ts_ns) if t is not None]
        info.first_ts_ns, info.last_ts_ns = min(lo, default=None), max(hi, default=None)
        got = {
            kind: dict(t) for kind, t in span.tallies.items() if not k or kind not in _HEAD_KINDS
        }
        if k and last is not None and span.first_ts is not None and span.first_ts < last:
            new = [kind for kind in got if kind not in tallies]
            if "backwards" not in tallies and any(kind != "backwards" for kind in new):
                return None
            t = got.setdefault("backwards", dict(count=0, frame=frame, offset=None))
            t["count"] += 1
            t["frame"] = frame  # the span's first record: its first step back
        for kind, t in got.items():
            _add_tally(tallies, kind, t)
        if span.last_ts is not None:
            last = span.last_ts
    info.warnings = _warnings(path, tallies, info.packets)
    return info


def _add_tally(tallies: dict[str, dict[str, Any]], kind: str, t: dict[str, Any]) -> None:
    """One more of ``kind`` (``t``: its count, first frame and offset, and what its
    warning names): the first keeps its place, frame and details; counts add up."""
    have = tallies.get(kind)
    if have is None:
        tallies[kind] = t
        return
    have["count"] += t["count"]
    if "biggest" in t:
        have["biggest"] = max(have["biggest"], t["biggest"])


# A run of records, column-wise: frame, ts_ns, offset, caplen, wirelen, linktype, interface,
# then what the compiled walk decoded of them (st, idx, TCP columns), or None.
_Pre = tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]
_Seg = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, _Pre | None
]
_Tally = Callable[..., None]


_kernels: Any = None  # pcapdiag._compiled once imported
_kernels_failed = False


def compiled_kernels(load: bool = False) -> Any | None:
    """The compiled kernels module, or None for the pure path.

    ``PCAPDIAG_COMPILED=0``: always None; ``=1``: loaded if possible. Otherwise the
    module once loaded (by a big capture; ``load=True`` asks for that), else None. Any
    failure to import numba or compile the kernels selects the pure path for the rest of
    the process, silently (numba's warnings are not shown).
    """
    global _kernels, _kernels_failed
    env = os.environ.get(_COMPILED_ENV, "")
    if env == "0":
        return None
    if _kernels is not None or _kernels_failed or not (load or env == "1"):
        return _kernels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pcapdiag import _native

            kernels = _native.kernels("_compiled")
    except Exception:
        _kernels_failed = True
        return None
    _kernels = kernels
    return _kernels


def _built_loaded() -> bool:
    """Is the module of kernels built ahead of time (``_native``) loaded in this process?
    Asked without importing it."""
    native = sys.modules.get("pcapdiag._native")
    return native is not None and native.loaded()


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: the kernels are compiled for read-only inputs only."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def _tcp_buffers(n: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Zeroed outcomes, row indices and empty TCP columns for ``n`` records."""
    return (
        np.zeros(n, np.uint8),
        np.empty(n, np.int64),
        tuple(np.empty(n, t) for t in TCP_DTYPES),
    )


def _scratch() -> np.ndarray:
    """The walks' room for a block of record bounds (four rows of 128): the kernels
    allocate nothing (``_native``: built without numba's reference counts)."""
    return np.empty((4, 128), np.int64)


def _head(cols: tuple[np.ndarray, ...], t: int) -> tuple[np.ndarray, ...]:
    return tuple(c[:t] for c in cols)


def _join_pre(batch: RecordBatch, segs: list[_Seg]) -> Predecoded:
    """The decoded rows of the segments of ``batch``, renumbered as batch rows (records
    of segments the walk did not decode get st 0)."""
    sts: list[np.ndarray] = []
    idxs: list[np.ndarray] = []
    cols: list[tuple[np.ndarray, ...]] = []
    row = 0
    for s in segs:
        n = len(s[0])
        pre = s[7]
        if pre is None:
            sts.append(np.zeros(n, np.uint8))
        else:
            st, idx, c = pre
            sts.append(st)
            idxs.append(idx + row if row else idx)
            cols.append(c)
        row += n
    key = (batch.data, batch.offset, batch.caplen, batch.wirelen, batch.linktype)
    if len(sts) == 1:
        return Predecoded(key, sts[0], idxs[0], cols[0])
    return Predecoded(
        key,
        np.concatenate(sts),
        np.concatenate(idxs),
        tuple(np.concatenate(c) for c in zip(*cols, strict=True)),
    )


def _max_caplen(linktype: int) -> int:
    return _MAX_CAPLEN_DBUS if linktype == 231 else MAX_CAPLEN


# --------------------------------------------------------------------------- the walk
# The only per-record Python code. Each returns the start of the record *after* each of
# k consecutive records; positions may run past the region of interest (the caller trims)
# and a read past the buffer raises struct.error (the caller falls back to the careful
# loop).


def _chain_pcap(buf: memoryview, q: int, k: int, hlen: int, u32: Callable) -> list[int]:
    # q is the position of a record's caplen field (record start + 8)
    return [q := q + hlen + u32(buf, q)[0] for _ in range(k)]


def _chain_ng(buf: memoryview, q: int, k: int, u32: Callable) -> list[int]:
    # q is the position of a block's length field (block start + 4)
    return [q := q + u32(buf, q)[0] for _ in range(k)]


class _Buf:
    """One contiguous buffer being parsed, with unaligned numpy views for gathering."""

    __slots__ = ("mv", "arr", "ro", "end", "base", "_views")

    def __init__(self, obj: Any, base: int) -> None:
        self.mv = memoryview(obj)
        self.arr = np.frombuffer(obj, np.uint8) if len(self.mv) else np.zeros(0, np.uint8)
        self.ro = _readonly(self.arr)  # what the compiled walk reads
        self.end = len(self.arr)
        self.base = base  # stream offset of arr[0] (0 for mmapped files)
        self._views: dict[str, np.ndarray] = {}

    def view(self, dtype: str) -> np.ndarray:
        """``view(d)[p]`` is the item of dtype ``d`` starting at byte ``p``."""
        v = self._views.get(dtype)
        if v is None:
            dt = np.dtype(dtype)
            n = max(self.end - dt.itemsize + 1, 0)
            v = np.ndarray((n,), dtype=dt, buffer=self.arr, strides=(1,))
            self._views[dtype] = v
        return v

    def release(self) -> None:
        self._views.clear()
        self.mv.release()


def _ng_head(mv: memoryview) -> tuple[int, bool, int] | None:
    """Where a pcapng's first Enhanced Packet Block starts, its byte order (big?) and the
    interfaces described before it, when only one Section Header Block and Interface
    Description Blocks (or blocks without frames) come first; else None."""
    end = len(mv)
    if end < 28 or _U32LE(mv, 0)[0] != _SHB:
        return None
    bom = _U32LE(mv, 8)[0]
    if bom not in (_BOM, 0x4D3C2B1A):
        return None
    u32 = struct.Struct(">I" if bom != _BOM else "<I").unpack_from
    pos = nif = 0
    for _ in range(10_000):
        if pos + 12 > end:
            return None
        btype, blen = u32(mv, pos)[0], u32(mv, pos + 4)[0]
        if btype == _EPB:
            return pos, bom != _BOM, nif
        if blen < 12 or blen & 3 or pos + blen > end:
            return None
        if (btype == _SHB and pos) or btype in (_PB, _SPB) or btype in _EVENT_BLOCKS:
            return None
        nif += btype == _IDB
        pos += blen
    return None


def _u64_wrap(v: int) -> int:
    return v & 0xFFFF_FFFF_FFFF_FFFF


def _to_i64(v: int) -> int:
    return ((v + (1 << 63)) & 0xFFFF_FFFF_FFFF_FFFF) - (1 << 63)


def _units_to_ns(units: np.ndarray, resol: int, offset_ns: int) -> np.ndarray:
    """pcapng timestamp units (uint64) -> int64 epoch ns; integer math, wraps on garbage."""
    u = units
    g = np.uint64(_NS)
    if resol & 0x80:  # 2^-n
        n = resol & 0x7F
        if n == 0:
            ns = u * g
        else:
            sec = u >> np.uint64(n) if n < 64 else np.zeros_like(u)
            frac = u & np.uint64((1 << n) - 1) if n < 64 else u
            if n <= 34:  # frac * 1e9 < 2^64
                fns = (frac * g) >> np.uint64(n)
            elif n - 34 < 64:
                fns = ((frac >> np.uint64(n - 34)) * g) >> np.uint64(34)
            else:
                fns = np.zeros_like(u)
            ns = sec * g + fns
    elif resol <= 9:
        ns = u * np.uint64(10 ** (9 - resol))
    elif resol - 9 < 20:
        ns = u // np.uint64(10 ** (resol - 9))
    else:
        ns = np.zeros_like(u)
    if offset_ns:
        ns = ns + np.uint64(_u64_wrap(offset_ns))
    return ns.view(np.int64)


def _unit_to_ns(units: int, resol: int, offset_ns: int) -> int:
    if resol & 0x80:
        ns = (units * _NS) >> (resol & 0x7F)
    elif resol <= 9:
        ns = units * 10 ** (9 - resol)
    else:
        ns = units // 10 ** (resol - 9)
    return _to_i64(ns + offset_ns)


def _clip_wire(w: np.ndarray, frames: np.ndarray, tally: _Tally) -> np.ndarray:
    if len(w) and int(w.max()) > _I32MAX:
        big = np.flatnonzero(w > _I32MAX)
        tally("wire_clip", len(big), frame=int(frames[big[0]]))
        w = np.minimum(w, _I32MAX)
    return w.astype(np.int32)


# --------------------------------------------------------------------------- pcap


class _PcapParser:
    def __init__(
        self,
        path: str,
        tally: _Tally,
        order: str,
        hlen: int,
        mul: int,
        snaplen: int,
        linktype: int,
        note: str,
    ) -> None:
        self.path, self.tally, self.order, self.note = path, tally, order, note
        self.u32 = struct.Struct(order + "I").unpack_from
        self.hdt = order + "u4"
        self.hlen, self.mul, self.snaplen, self.lt = hlen, mul, snaplen, linktype
        self.lim = _max_caplen(linktype)
        self.frame = 1  # next frame number
        self.maxrec = 2048  # largest record seen: sizes the speculative walk
        self.error: CaptureError | None = None
        self.start = 24
        self.kern: Any = None  # compiled kernels, when the capture is worth them

    def parse(self, B: _Buf, pos: int, final: bool, want: int) -> tuple[list[_Seg], int, int]:
        """Read up to ``want`` records from ``pos``; return segments, new pos, status."""
        segs: list[_Seg] = []
        H, lim, end = self.hlen, self.lim, B.end
        safe = end - H - lim  # a record starting here with caplen <= lim fits in B
        got = 0
        status = _MORE
        while got < want:
            room = safe - pos
            k = min(want - got, room // self.maxrec) if room > 0 else 0
            if k >= 16:
                c, pos = self._fast(B, pos, k, safe, segs)
                got += c
                if c == k:
                    continue
                n = k - c  # something odd ahead: look at it record by record
            else:
                n = want - got
            c, pos, status = self._careful(B, pos, final, n, segs)
            got += c
            if status != _MORE:
                break
        return segs, pos, status

    def _fast(self, B: _Buf, pos: int, k: int, safe: int, segs: list[_Seg]) -> tuple[int, int]:
        if self.kern is not None:
            got = self._fast_compiled(B, pos, k, safe, segs)
            if got is not None:
                return got
        try:
            nxt = np.fromiter(_chain_pcap(B.mv, pos + 8, k, self.hlen, self.u32), np.int64, k)
        except struct.error:
            return 0, pos
        starts = np.empty(k, np.int64)
        starts[0] = pos
        starts[1:] = nxt[:-1] - 8
        c = int(np.searchsorted(starts, safe, "right"))
        hdr = B.view("V16")[starts[:c]].view(self.hdt).reshape(c, 4)
        bad = np.flatnonzero(hdr[:, 2] > self.lim)
        if len(bad):
            c = int(bad[0])
            hdr = hdr[:c]
        if c:
            self.maxrec = max(self.maxrec, self.hlen + int(hdr[:, 2].max()))
            segs.append(self._seg(starts[:c], hdr))
            pos = int(nxt[c - 1]) - 8
        return c, pos

    def _fast_compiled(
        self, B: _Buf, pos: int, k: int, safe: int, segs: list[_Seg]
    ) -> tuple[int, int] | None:
        """``_fast`` by ``pcap_walk``: the same records, one segment (with the records
        decoded on the way); None if the kernel fails."""
        offs = np.empty(k, np.int64)
        ts = np.empty(k, np.int64)
        hdr = np.empty((k, 2), np.uint32)
        st, idx, out = _tcp_buffers(k)
        try:
            c, t = self.kern.pcap_walk(
                B.ro, pos, k, safe, self.hlen, self.order == ">", self.lim, self.lt,
                self.mul, offs, ts, hdr, st, idx, out, _scratch(),
            )  # fmt: skip
        except Exception:
            self.kern = None
            return None
        if c <= 0:
            return 0, pos
        cap = hdr[:c, 0]
        self.maxrec = max(self.maxrec, self.hlen + int(cap.max()))
        seg = self._seg_cols(offs[:c], ts[:c], cap, hdr[:c, 1])
        segs.append(seg[:7] + ((st[:c], idx[:t], _head(out, t)),))
        return c, int(offs[c - 1]) + int(cap[-1])

    def _careful(
        self, B: _Buf, pos: int, final: bool, n: int, segs: list[_Seg]
    ) -> tuple[int, int, int]:
        u32, buf, end, H, lim = self.u32, B.mv, B.end, self.hlen, self.lim
        starts: list[int] = []
        app = starts.append
        status = _MORE
        maxrec = self.maxrec
        while n > 0:
            nxt = pos + H
            if nxt > end:
                if final:
                    if pos < end:
                        self.tally("truncated", missing=None, offset=B.base + pos)
                    status = _DONE
                else:
                    status = _NEED
                break
            cl = u32(buf, pos + 8)[0]
            if cl > lim:
                self.error = CorruptCaptureError(
                    self.path,
                    f"record claims {cl} captured bytes (snaplen {self.snaplen}, at most "
                    f"{lim} accepted){self.note}",
                    offset=B.base + pos,
                    frame=self.frame + len(starts),
                )
                status = _DONE
                break
            nxt += cl
            if nxt > end:
                if final:
                    self.tally("truncated", missing=nxt - end, offset=B.base + pos)
                    status = _DONE
                else:
                    status = _NEED
                break
            if H + cl > maxrec:
                maxrec = H + cl
            app(pos)
            pos = nxt
            n -= 1
        self.maxrec = maxrec
        if starts:
            S = np.fromiter(starts, np.int64, len(starts))
            segs.append(self._seg(S, B.view("V16")[S].view(self.hdt).reshape(len(S), 4)))
        return len(starts), pos, status

    def _seg(self, starts: np.ndarray, hdr: np.ndarray) -> _Seg:
        ts = hdr[:, 0].astype(np.int64) * _NS + hdr[:, 1].astype(np.int64) * self.mul
        return self._seg_cols(starts + self.hlen, ts, hdr[:, 2], hdr[:, 3])

    def _seg_cols(
        self, offset: np.ndarray, ts: np.ndarray, cap: np.ndarray, wire: np.ndarray
    ) -> _Seg:
        """The segment of records at ``offset`` with times ``ts`` and the caplen / wirelen
        header words ``cap`` / ``wire`` (uint32); tallies what is odd about them."""
        n = len(offset)
        f0 = self.frame
        self.frame = f0 + n
        frame = np.arange(f0, f0 + n, dtype=np.int64)
        if 0 < self.snaplen < self.lim:
            over = np.flatnonzero(cap > self.snaplen)
            if len(over):
                self.tally(
                    "over_snaplen",
                    len(over),
                    frame=int(frame[over[0]]),
                    snaplen=self.snaplen,
                    biggest=int(cap[over].max()),
                )
        wire = _clip_wire(wire, frame, self.tally)
        return (
            frame,
            ts,
            offset,
            cap.astype(np.int32),
            wire,
            np.full(n, self.lt, np.uint16),
            np.zeros(n, np.uint16),
            None,
        )


# --------------------------------------------------------------------------- pcapng


class _PcapngParser:
    def __init__(self, path: str, tally: _Tally, info: CaptureInfo, note: str) -> None:
        self.path, self.tally, self.info, self.note = path, tally, info, note
        self.order = ""
        self.u32: Callable = _U32LE
        self.ifaces: list[tuple[int, int, int, int]] = []  # linktype, snaplen, tsresol, off_ns
        self._tab: tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]] | None = None
        self.frame = 1
        self.maxblk = 2048
        self.kfast = 1024
        self.last_ts = 0
        self.error: CaptureError | None = None
        self.start = 0
        self.kern: Any = None  # compiled kernels, when the capture is worth them

    # -- helpers
    def _set_order(self, order: str) -> None:
        self.order = order
        self.u32 = struct.Struct(order + "I").unpack_from
        self.u2 = struct.Struct(order + "II").unpack_from
        self.h2 = struct.Struct(order + "HH").unpack_from
        self.u4x4 = struct.Struct(order + "IIII").unpack_from
        self.idb = struct.Struct(order + "HHI").unpack_from
        self.i64 = struct.Struct(order + "q").unpack_from
        self.hdt = order + "u4"

    def _fail(self, B: _Buf, pos: int, msg: str, frame: int | None = None) -> int:
        self.error = CorruptCaptureError(
            self.path, msg + self.note, offset=B.base + pos, frame=frame
        )
        return _DONE

    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
        if self._tab is None:
            keys: dict[tuple[int, int], int] = {}
            idx = [keys.setdefault((i[2], i[3]), len(keys)) for i in self.ifaces]
            self._tab = (
                np.array([i[0] for i in self.ifaces], np.uint16),
                np.array([i[1] for i in self.ifaces], np.int64),
                np.array(idx, np.intp),
                list(keys),
            )
        return self._tab

    # -- main loop
    def parse(self, B: _Buf, pos: int, final: bool, want: int) -> tuple[list[_Seg], int, int]:
        segs: list[_Seg] = []
        safe = B.end - _PLAUSIBLE_BLOCK  # a block starting here of plausible size fits in B
        got = 0
        status = _MORE
        while got < want:
            room = safe - pos
            k = min(want - got, self.kfast, room // self.maxblk) if room > 0 else 0
            limit: int | None = None  # tail of the buffer: careful to the end
            if k >= 16 and not self.order:
                limit = 64  # the file's first blocks (SHB, IDBs, ...)
            elif k >= 16:
                c, pos = self._fast(B, pos, k, safe, segs)
                got += c
                if c == k:
                    self.kfast = min(self.kfast * 2, 65_536)
                    continue
                self.kfast = max(32, 2 * c)
                limit = 1 if c else 64  # the odd block(s), then back to the fast walk
            c, pos, status = self._careful(B, pos, final, want - got, limit, segs)
            got += c
            if status != _MORE:
                break
        return segs, pos, status

    def _fast(self, B: _Buf, pos: int, k: int, safe: int, segs: list[_Seg]) -> tuple[int, int]:
        """Speculative walk over EPBs; accepts the prefix of fully valid EPBs."""
        if self.kern is not None:
            got = self._fast_compiled(B, pos, k, safe, segs)
            if got is not None:
                return got
        try:
            nxt = np.fromiter(_chain_ng(B.mv, pos + 4, k, self.u32), np.int64, k)
        except struct.error:
            return 0, pos
        nxt -= 4  # start of the following block
        starts = np.empty(k, np.int64)
        starts[0] = pos
        starts[1:] = nxt[:-1]
        c = int(np.searchsorted(starts, safe, "right"))
        S = starts[:c]
        h = B.view("V28")[S].view(self.hdt).reshape(c, 7)
        blen = h[:, 1]
        ok = (
            (h[:, 0] == _EPB)
            & (blen >= 32)
            & ((blen & 3) == 0)
            & (blen <= _PLAUSIBLE_BLOCK)
            & (h[:, 5] <= blen - 32)
        )
        if not ok.all():
            c = int(np.argmin(ok))
            S, h, blen = S[:c], h[:c], blen[:c]
        if c:
            trailer = B.view("V4")[nxt[:c] - 4].view(self.hdt)
            bad = np.flatnonzero(trailer != blen)
            if len(bad):
                c = int(bad[0])
                S, h, blen = S[:c], h[:c], blen[:c]
        if c:
            self.maxblk = max(self.maxblk, int(blen.max()))
            f0 = self.frame
            self.frame = f0 + c
            seg = self._epb_seg(S, h, np.arange(f0, f0 + c, dtype=np.int64))
            if seg is not None:
                segs.append(seg)
            pos = int(nxt[c - 1])
        return c, pos

    def _fast_compiled(
        self, B: _Buf, pos: int, k: int, safe: int, segs: list[_Seg]
    ) -> tuple[int, int] | None:
        """``_fast`` by ``ng_walk``: the same records, one segment (with the records
        decoded on the way, unless some name an undefined interface); None if the kernel
        fails."""
        starts = np.empty(k, np.int64)
        h = np.empty((k, 7), np.uint32)
        st, idx, out = _tcp_buffers(k)
        lts = self._tables()[0]
        try:
            c, t = self.kern.ng_walk(
                B.ro, pos, k, safe, self.order == ">", _PLAUSIBLE_BLOCK,
                _readonly(lts.astype(np.int64)), starts, h, st, idx, out, _scratch(),
            )  # fmt: skip
        except Exception:
            self.kern = None
            return None
        if c <= 0:
            return 0, pos
        S, h = starts[:c], h[:c]
        blen = h[:, 1]
        self.maxblk = max(self.maxblk, int(blen.max()))
        f0 = self.frame
        self.frame = f0 + c
        seg = self._epb_seg(S, h, np.arange(f0, f0 + c, dtype=np.int64))
        if seg is not None:
            if len(seg[0]) == c:  # no record left out: the decoded rows line up
                seg = seg[:7] + ((st[:c], idx[:t], _head(out, t)),)
            segs.append(seg)
        return c, int(S[c - 1]) + int(blen[c - 1])

    def _epb_seg(self, S: np.ndarray, h: np.ndarray, frames: np.ndarray) -> _Seg | None:
        """Columns for EPB/PB headers ``h`` (type, len, iface, ts_hi, ts_lo, cap, wire)."""
        iface = h[:, 2]
        nif = len(self.ifaces)
        if nif == 0 or int(iface.max()) >= nif:
            good = iface < nif
            bad = np.flatnonzero(~good)
            self.tally("bad_iface", len(bad), frame=int(frames[bad[0]]), iface=int(iface[bad[0]]))
            S, h, frames, iface = S[good], h[good], frames[good], iface[good]
            if not len(S):
                return None
        lts, snaps, cidx, convs = self._tables()
        ifc = iface.astype(np.intp)
        units = (h[:, 3].astype(np.uint64) << np.uint64(32)) | h[:, 4].astype(np.uint64)
        if len(convs) == 1:
            ts = _units_to_ns(units, *convs[0])
        else:
            ts = np.empty(len(S), np.int64)
            ci = cidx[ifc]
            for j in _arrays.distinct(ci).tolist():
                m = ci == j
                ts[m] = _units_to_ns(units[m], *convs[int(j)])
        cap = h[:, 5]
        snap = snaps[ifc]
        over = np.flatnonzero((snap > 0) & (cap > snap))
        if len(over):
            self.tally(
                "over_snaplen",
                len(over),
                frame=int(frames[over[0]]),
                snaplen=int(snap[over[0]]),
                biggest=int(cap[over].max()),
            )
        self.last_ts = int(ts[-1])
        return (
            frames,
            ts,
            S + 28,
            cap.astype(np.int32),
            _clip_wire(h[:, 6], frames, self.tally),
            lts[ifc],
            iface.astype(np.uint16),
            None,
        )

    def _careful(
        self, B: _Buf, pos: int, final: bool, nrec: int, limit: int | None, segs: list[_Seg]
    ) -> tuple[int, int, int]:
        """Block by block, with full checks. Returns records seen, new pos, status."""
        buf, end = B.mv, B.end
        run: list[int] = []  # EPB starts not yet turned into a segment
        run_f: list[int] = []
        misc: list[tuple[int, int, int, int, int, int, int]] = []  # SPB / PB records
        n = blocks = 0
        status = _MORE

        def flush_run() -> None:
            if run:
                S = np.array(run, np.int64)
                h = B.view("V28")[S].view(self.hdt).reshape(len(S), 7)
                seg = self._epb_seg(S, h, np.array(run_f, np.int64))
                if seg is not None:
                    segs.append(seg)
                run.clear()
                run_f.clear()

        def flush_misc() -> None:
            if misc:
                cols = list(zip(*misc, strict=True))
                frames = np.array(cols[0], np.int64)
                segs.append(
                    (
                        frames,
                        np.array(cols[1], np.int64),
                        np.array(cols[2], np.int64),
                        np.array(cols[3], np.int32),
                        _clip_wire(np.array(cols[4], np.int64), frames, self.tally),
                        np.array(cols[5], np.uint16),
                        np.array(cols[6], np.uint16),
                        None,
                    )
                )
                misc.clear()

        while n < nrec and (limit is None or blocks < limit):
            if pos + 12 > end:
                if not final:
                    status = _NEED
                elif B.base + pos == 0:
                    status = self._fail(
                        B, 0, f"truncated pcapng Section Header Block ({end} of 28 bytes)"
                    )
                else:
                    if pos < end:
                        self.tally("truncated", missing=None, offset=B.base + pos)
                    status = _DONE
                break
            btype = self.u32(buf, pos)[0]  # _SHB reads the same in both byte orders
            if btype == _SHB:
                bom = _U32LE(buf, pos + 8)[0]
                if bom not in (_BOM, 0x4D3C2B1A):
                    status = self._fail(
                        B, pos, f"Section Header Block has an unknown byte-order magic 0x{bom:08x}"
                    )
                    break
                flush_run()  # gathered with the old byte order
                self._set_order("<" if bom == _BOM else ">")
            elif not self.order:
                status = self._fail(
                    B, pos, "pcapng data does not start with a Section Header Block"
                )
                break
            blen = self.u32(buf, pos + 4)[0]
            fr = self.frame if btype in (_EPB, _SPB, _PB) else None
            if blen < 12 or blen & 3:
                status = self._fail(
                    B, pos, f"block length {blen} is invalid (need a multiple of 4, >= 12)", fr
                )
                break
            if blen > _MAX_BLOCK:
                status = self._fail(B, pos, f"block claims {blen} bytes", fr)
                break
            if pos + blen > end:
                if not final:
                    status = _NEED
                elif B.base + pos == 0:
                    status = self._fail(
                        B, 0, f"truncated pcapng Section Header Block ({end} of {blen} bytes)"
                    )
                elif blen > _PLAUSIBLE_BLOCK:
                    status = self._fail(
                        B, pos, f"block claims {blen} bytes but only {end - pos} remain", fr
                    )
                else:
                    self.tally("truncated", missing=pos + blen - end, offset=B.base + pos)
                    status = _DONE
                break
            trailer = self.u32(buf, pos + blen - 4)[0]
            if trailer != blen:
                status = self._fail(
                    B,
                    pos,
                    f"block length mismatch: header says {blen} bytes, trailer says {trailer}",
                    fr,
                )
                break

            if btype == _EPB:
                if blen < 32:
                    status = self._fail(B, pos, f"Enhanced Packet Block too short ({blen})", fr)
                    break
                cl = self.u32(buf, pos + 20)[0]
                if cl > blen - 32:
                    status = self._fail(
                        B,
                        pos,
                        f"Enhanced Packet Block claims {cl} captured bytes "
                        f"but holds only {blen - 32}",
                        fr,
                    )
                    break
                flush_misc()
                run.append(pos)
                run_f.append(self.frame)
                self.frame += 1
                n += 1
            elif btype in (_SPB, _PB):
                flush_run()
                rec = self._packet_block(B, pos, btype, blen)
                if isinstance(rec, int):
                    status = rec
                    break
                if rec is not None:
                    misc.append(rec)
                self.frame += 1
                n += 1
            elif btype == _SHB:
                if blen < 28:
                    status = self._fail(B, pos, f"Section Header Block too short ({blen})")
                    break
                major, minor = self.h2(buf, pos + 12)
                if major != 1:
                    status = self._fail(B, pos, f"unsupported pcapng version {major}.{minor}")
                    break
                flush_misc()
                self.ifaces = []
                self._tab = None
            elif btype == _IDB:
                if blen < 20:
                    status = self._fail(B, pos, f"Interface Description Block too short ({blen})")
                    break
                flush_run()
                flush_misc()
                self._interface(B, pos, blen)
            elif btype == _DSB:
                if blen >= 20:
                    stype, slen = self.u2(buf, pos + 8)
                    body = pos + 16
                    self.info.secrets.append(
                        (stype, bytes(buf[body : body + min(slen, blen - 20)]))
                    )
            elif btype in _EVENT_BLOCKS:
                self.tally("events", frame=self.frame)
                self.frame += 1
            # NRB, ISB, custom blocks (0x00000BAD / 0x40000BAD), unknown: skipped
            pos += blen
            blocks += 1
        flush_run()
        flush_misc()
        return n, pos, status

    def _packet_block(
        self, B: _Buf, pos: int, btype: int, blen: int
    ) -> tuple[int, int, int, int, int, int, int] | int | None:
        """One SPB or PB as a record tuple; None when skipped; a status on error."""
        buf = B.mv
        frame = self.frame
        if btype == _SPB:
            if blen < 16:
                return self._fail(B, pos, f"Simple Packet Block too short ({blen})", frame)
            iface = 0
            wire = self.u32(buf, pos + 8)[0]
            cl = min(blen - 16, wire)
            off = pos + 12
            ts = None
        else:
            if blen < 32:
                return self._fail(B, pos, f"Packet Block too short ({blen})", frame)
            iface = self.h2(buf, pos + 8)[0]
            hi, lo, cl, wire = self.u4x4(buf, pos + 12)
            if cl > blen - 32:
                return self._fail(
                    B, pos, f"Packet Block claims {cl} captured bytes but holds {blen - 32}", frame
                )
            off = pos + 28
            ts = (hi << 32) | lo
        if iface >= len(self.ifaces):
            self.tally("bad_iface", frame=frame, iface=iface)
            return None
        lt, snap, resol, off_ns = self.ifaces[iface]
        if ts is None:
            if snap:
                cl = min(cl, snap)
            self.tally("spb_ts", frame=frame)
            t = self.last_ts
        else:
            if 0 < snap < cl:
                self.tally("over_snaplen", frame=frame, snaplen=snap, biggest=cl)
            t = _unit_to_ns(ts, resol, off_ns)
        self.last_ts = t
        return (frame, t, off, cl, wire, lt, iface)

    def _interface(self, B: _Buf, pos: int, blen: int) -> None:
        buf = B.mv
        linktype, _, snaplen = self.idb(buf, pos + 8)
        resol, offset_s = 6, 0
        o, oend = pos + 16, pos + blen - 4
        while o + 4 <= oend:
            code, olen = self.h2(buf, o)
            o += 4
            if code == 0 or o + olen > oend:
                break
            if code == 9 and olen >= 1:
                resol = buf[o]
            elif code == 14 and olen >= 8:
                offset_s = self.i64(buf, o)[0]
            o += (olen + 3) & ~3
        if len(self.ifaces) >= _MAX_IFACES:
            self.tally("too_many_ifaces", offset=B.base + pos)
            return
        self.ifaces.append((linktype, snaplen, resol, _to_i64(offset_s * _NS)))
        self._tab = None
        if (resol & 0x80 and resol & 0x7F > 20) or (not resol & 0x80 and resol > 6):
            self.info.nanosecond = True
        self.info.snaplen = max(self.info.snaplen, snaplen)


# --------------------------------------------------------------------------- gzip


class _Gunzip:
    """Inflate gzip (multi-member) from ``src`` chunks into pieces of <= ``out_max`` bytes.

    After ``pieces()`` ends: ``error`` (zlib failure, output before it was yielded),
    ``truncated`` (input ended inside a member), ``trailing`` (non-gzip bytes after the
    last member), ``consumed`` (compressed bytes read).
    """

    def __init__(self, src: Iterable[bytes], out_max: int = _OUT_CHUNK) -> None:
        self.src = iter(src)
        self.out_max = out_max
        self.error: tuple[int, str] | None = None  # (compressed offset, zlib message)
        self.truncated = False
        self.trailing = 0
        self.consumed = 0

    def _more(self, data: bytes) -> tuple[bytes, bool]:
        chunk = next(self.src, b"")
        return (data + chunk if data else chunk), bool(chunk)

    def pieces(self) -> Iterator[bytes]:
        data = b""
        d: Any = None
        drain = False
        while True:
            if d is None:  # at a member boundary
                while len(data) < 2:
                    data, got = self._more(data)
                    if not got:
                        break
                if not data:
                    return
                if data[:2] != b"\x1f\x8b":
                    if data.strip(b"\0"):
                        self.trailing = len(data)
                    return
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if not data and not drain:
                data, got = self._more(data)
                if not got:
                    self.truncated = True
                    return
            snap = d.copy()
            try:
                out = d.decompress(data, self.out_max)
            except zlib.error as exc:
                yield from self._salvage(snap, data, exc)
                return
            drain = len(out) >= self.out_max
            if d.eof:
                rest = d.unused_data
                self.consumed += len(data) - len(rest)
                data, d, drain = rest, None, False
            else:
                tail = d.unconsumed_tail
                self.consumed += len(data) - len(tail)
                data = tail
            if out:
                yield out

    def _salvage(self, d: Any, data: bytes, exc: zlib.error) -> Iterator[bytes]:
        """Re-inflate the failing input in small steps to deliver all output before the error.

        512-byte steps from the state before the failing call; the step that fails again
        is redone byte by byte (a bad CRC in the trailer comes after all the data).
        """
        step, i, total = 512, 0, 0
        outs: list[bytes] = []
        while i < len(data) and total <= self.out_max:
            snap = d.copy()
            chunk = data[i : i + step]
            try:
                out = d.decompress(chunk)
            except zlib.error as e:
                if step == 1:
                    exc = e
                    break
                d, step = snap, 1
                continue
            outs.append(out)
            total += len(out)
            i += len(chunk)
            if d.eof:
                break
        self.error = (self.consumed + i, str(exc))
        yield from (o for o in outs if o)


# --------------------------------------------------------------------------- capture

_DESCRIBE = (
    (b"\x89PNG", "a PNG image"),
    (b"\x7fELF", "an ELF executable"),
    (b"PK\x03\x04", "a zip archive"),
    (b"%PDF", "a PDF document"),
    (b"BZh", "bzip2-compressed: decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first"),
    (b"\x04\x22\x4d\x18", "lz4-compressed: decompress it first"),
    (b"snoop\0", "a Solaris snoop capture: convert it with editcap -F pcap"),
    (b"GMBU", "a Microsoft Network Monitor capture: convert it with editcap -F pcap"),
)


def _describe(head: bytes) -> str:
    if len(head) < 4:
        return f"only {len(head)} bytes: {head!r}"
    what = f"starts with {head[:4]!r}"
    for magic, name in _DESCRIBE:
        if head.startswith(magic):
            return f"{what}, {name}"
    sample = head[:256]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return f"{what}, looks like text"
    return what


def _drop_pages(mm: mmap.mmap, start: int, upto: int) -> int:
    """Unmap pages of ``mm`` in [start, upto) so RSS does not grow with the file.

    Safe for batches still held: a file mapping re-faults from the page cache.
    """
    upto &= ~(mmap.PAGESIZE - 1)
    if upto - start < _DROP_EVERY or not hasattr(mmap, "MADV_DONTNEED"):
        return start
    with contextlib.suppress(OSError, ValueError):
        mm.madvise(mmap.MADV_DONTNEED, start, upto - start)
    return upto


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14
_MAP_AHEAD = 4 * 1024 * 1024  # (16 MiB: no faster, and 12 MiB more resident)


def _map_ahead(mm: mmap.mmap, mapped: int, pos: int) -> int:
    """Map the pages of ``mm`` up to ``_MAP_AHEAD`` bytes past ``pos`` in one call, once
    fewer than half of that are mapped ahead; returns the new end of the mapped region.

    For the compiled walk only (the pure walk is too slow for it to matter): a page fault
    each time the walk reaches a new page costs as much as mapping the page here, and
    also interrupts the CPU's prefetching, leaving the walk waiting for memory (read+
    decode ~10% faster on a 1.6 GB capture). Where the system does not know the call, it
    is not tried again (the end of the map is returned).
    """
    if mapped >= pos + _MAP_AHEAD // 2 or mapped >= len(mm):
        return mapped
    start = max(mapped, pos) & ~(mmap.PAGESIZE - 1)
    end = min(start + _MAP_AHEAD, len(mm))
    try:
        mm.madvise(_MADV_POPULATE_READ, start, end - start)
    except (OSError, ValueError, AttributeError):  # AttributeError: no madvise (Windows)
        return len(mm)
    return end


def _read_chunks(f: BinaryIO, path: str, first: bytes = b"") -> Iterator[bytes]:
    if first:
        yield first
    while True:
        if f.closed:
            raise UsageError(f"{path}: capture closed while reading it")
        try:
            chunk = f.read(_IN_CHUNK)
        except OSError as exc:
            raise CaptureError(path, f"read error: {exc.strerror or exc}") from None
        if not chunk:
            return
        yield chunk


class Capture:
    """An open capture; use as a context manager. Iterating ``batches()`` streams it."""

    info: CaptureInfo

    def __init__(self, path: str, f: BinaryIO, regular: bool) -> None:
        self.info = CaptureInfo(path=path)
        self._path = path
        self._file: BinaryIO | None = f
        self._regular = regular
        self._mm: mmap.mmap | None = None
        self._head = b""  # bytes already read from a non-seekable input
        self._fmt: dict[str, Any] = {}
        self._used = False
        self._tallies: dict[str, dict[str, Any]] = {}
        self._kept: dict[str, dict[str, Any]] = {}  # the last reading's tallies
        self._first_rec: int | None = None  # the reading's first record's time
        self._last_ts: int | None = None  # ... and its last's
        self._bufs: list[_Buf] = []
        self._size = 0  # bytes in the file (0: unknown, a pipe)
        self._deciding = False  # still to decide whether to load the compiled kernels
        self._gz: _Gunzip | None = None
        self._again: _Buf | None = None  # the whole map, for ``records``
        self._dropped = 0  # pages of the map let go before this (``records``)

    # -- opening
    def _sniff(self) -> None:
        f = self._file
        assert f is not None
        try:
            head = f.read(_SNIFF)
        except OSError as exc:
            raise CaptureError(self._path, f"read error: {exc.strerror or exc}") from None
        if not head:
            raise NotACaptureError(self._path, "empty file, not a capture")
        if not self._regular:
            self._head = head
        inner = head
        if head[:2] == b"\x1f\x8b":
            self.info.compressed = True
            inner = self._gunzip_head(head)
        self._detect(inner)
        if not self.info.compressed and self._regular:
            try:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError, OverflowError):
                self._mm = None  # fall back to streaming reads

    def _gunzip_head(self, head: bytes) -> bytes:
        f = self._file
        assert f is not None
        seen = [head]

        def src() -> Iterator[bytes]:
            yield head
            while sum(map(len, seen)) < 4 * 1024 * 1024:
                try:
                    chunk = f.read(_SNIFF)
                except OSError:
                    return
                if not chunk:
                    return
                seen.append(chunk)
                yield chunk

        gz = _Gunzip(src(), out_max=4096)
        out = b""
        for piece in gz.pieces():
            out += piece
            if len(out) >= 64:
                break
        if not self._regular:
            self._head = b"".join(seen)
        if len(out) < 28 and gz.error:  # too little to even hold a file header
            raise CorruptCaptureError(
                self._path, f"gzip stream corrupt at the start ({gz.error[1]})", offset=0
            )
        if not out:
            if gz.error:
                raise CorruptCaptureError(
                    self._path, f"gzip stream corrupt at the start ({gz.error[1]})", offset=0
                )
            if gz.truncated:
                raise CorruptCaptureError(
                    self._path, "gzip stream is truncated before any data", offset=0
                )
            raise NotACaptureError(self._path, "gzip file holds no data, not a capture")
        return out

    def _detect(self, head: bytes) -> None:
        info = self.info
        gz = " (inside gzip)" if info.compressed else ""
        if len(head) >= 4:
            for order in ("<", ">"):
                magic = struct.unpack(order + "I", head[:4])[0]
                if magic in (_PCAP_US, _PCAP_NS, _PCAP_MOD):
                    break
            else:
                magic = 0
            if magic:
                if len(head) < 24:
                    raise CorruptCaptureError(
                        self._path,
                        f"truncated pcap file header ({len(head)} of 24 bytes){gz}",
                        offset=0,
                    )
                _, vmaj, vmin, _, _, snaplen, network = struct.unpack(order + "IHHiIII", head[:24])
                info.format = "pcap"
                info.byte_order = "little" if order == "<" else "big"
                info.nanosecond = magic == _PCAP_NS
                info.snaplen = snaplen
                self._fmt = dict(
                    order=order,
                    hlen=24 if magic == _PCAP_MOD else 16,
                    mul=1 if magic == _PCAP_NS else 1000,
                    snaplen=snaplen,
                    linktype=network & 0xFFFF,
                    version=(vmaj, vmin),
                )
                return
            if head[:4] == b"\n\r\r\n":
                if len(head) < 12:
                    raise CorruptCaptureError(
                        self._path,
                        f"truncated pcapng Section Header Block ({len(head)} of 28 bytes){gz}",
                        offset=0,
                    )
                bom = _U32LE(head, 8)[0]
                if bom not in (_BOM, 0x4D3C2B1A):
                    raise CorruptCaptureError(
                        self._path,
                        f"pcapng Section Header Block has an unknown byte-order magic "
                        f"0x{bom:08x}{gz}",
                        offset=8,
                    )
                info.format = "pcapng"
                info.byte_order = "little" if bom == _BOM else "big"
                return
        kind = "gzip-compressed, but the content is " if info.compressed else ""
        raise NotACaptureError(self._path, f"{kind}not a pcap or pcapng file ({_describe(head)})")

    # -- reading
    def batches(
        self,
        max_records: int | None = None,
        span: tuple[int, int, int] | None = None,
        upto: int | None = None,
        until: int | Callable[[], int | None] | None = None,
    ) -> Iterator[RecordBatch]:
        """Stream the capture as batches of at most ``max_records`` records (``BATCH``).

        Each call starts from the beginning (a pipe can be read only once) and refills
        ``info``. On damage, the good records come first, then ``CorruptCaptureError``.
        ``span``: only the records of one of ``spans()``, numbered as in the whole file
        (``info`` then counts that span's records alone). ``upto``: only the first
        ``upto`` bytes of a mapped file (``size`` of an earlier reading), so that a file
        still being written reads as it did then. ``until`` (with a ``span`` that starts
        on a batch border): the reading stops after the first batch ending at or past
        this byte, where ``cuts`` cuts; a callable is asked after each batch (None: not
        known yet), for a cut decided while the span is read.
        """
        if self._file is None:
            raise UsageError("capture is closed")
        if max_records is None:
            max_records = BATCH
        if max_records < 1:
            raise UsageError(f"max_records must be >= 1, not {max_records}")
        if self._used and not self._regular:
            raise UsageError(f"{self._path}: a pipe can be read only once")
        if span is not None and (self._mm is None or self.info.compressed):
            raise UsageError(f"{self._path}: only a mapped file is read by spans")
        self._used = True
        self._reset()
        start = (span[0], span[2]) if span is not None else None
        stop = span[1] if span is not None else upto
        return self._run(max_records, start, stop, until if span is not None else None)

    @property
    def size(self) -> int:
        """Bytes of the file as mapped when it was opened (0 when it is streamed)."""
        return len(self._mm) if self._mm is not None else 0

    def records(
        self,
        frame: np.ndarray,
        ts_ns: np.ndarray,
        offset: np.ndarray,
        caplen: np.ndarray,
        wirelen: np.ndarray,
        linktype: np.ndarray,
        interface: np.ndarray,
    ) -> RecordBatch:
        """Records an earlier reading of this mapped file delivered, by their columns
        (``offset`` into the file), as one batch over the map: a few records of a large
        file are read again without walking it (the fast lane's second pass, ``_tape``),
        from a capture opened for that (not one being read by ``batches``). The caller
        lets go of the pages it is done with (``release``), as a reading does. A record
        past the end of the map (a file cut since) comes out of ``decode.decode_batch``
        as a malformed record, not as an error."""
        if self._file is None:
            raise UsageError("capture is closed")
        mm = self._mm
        if mm is None or self.info.compressed:
            raise UsageError(f"{self._path}: only a mapped file is read by offsets")
        if self._again is None:
            self._again = _Buf(mm, 0)
            self._bufs.append(self._again)  # released by close
            self._dropped = 0
        return RecordBatch(
            self._again.arr, frame, ts_ns, offset, caplen, wirelen, linktype, interface
        )

    def release(self, upto: int) -> None:
        """The bytes before ``upto`` are done with (the batches ``records`` gave): their
        pages of the map may go, in steps of ``_DROP_EVERY``. Safe while a batch still
        refers to them: a file mapping re-faults from the page cache."""
        if self._mm is not None:
            self._dropped = _drop_pages(self._mm, self._dropped, upto)

    def spans(self, n: int) -> list[tuple[int, int, int]] | None:
        """The file cut into ``n`` byte ranges of about the same size at record borders,
        for ``n`` processes to read at once: (offset of the first record, offset after
        the last, the first's frame number). Each cut falls on a border of the batches
        of the whole read (every ``BATCH`` records), so that a span read by batches sees
        the same batches, and what is decided per batch (duplicate frames) is decided
        the same. Only the record headers up to the last cut are read (compiled: ~0.1 s
        a GB from the page cache), and the cuts are made only in a mapped file undamaged
        up to there: a classic pcap, or a pcapng of one section whose interfaces are all
        described before its first packet (a span then reads the header blocks before
        it starts); else None."""
        if n < 2:
            return None
        shape = self.cut_shape()
        if shape is None:
            return None
        start, size = shape
        cuts = [(start, 1)]
        for cut in self.cuts([start + (size - start) * k // n for k in range(1, n)]):
            if cut is None:
                return None
            cuts.append(cut)
        ends = [c[0] for c in cuts[1:]] + [size]
        spans = [(p, e, f) for (p, f), e in zip(cuts, ends, strict=True) if e > p]
        return spans if len(spans) > 1 else None

    def cut_shape(self) -> tuple[int, int] | None:
        """Where the records start and the bytes end, when the file can be cut into
        byte ranges (see ``spans``), else None."""
        head = self._cut_head()
        return None if head is None else head[:2]

    def _cut_head(self) -> tuple[int, int, bool, int] | None:
        """``cut_shape``, and the byte order and interfaces (a pcapng's) the walk reads."""
        kern = compiled_kernels(load=True)
        if kern is None or self._mm is None or self.info.compressed:
            return None
        if self.info.format == "pcapng":
            with memoryview(self._mm) as mv:
                head = _ng_head(mv)
            return None if head is None else (head[0], len(self._mm), head[1], head[2])
        return 24, len(self._mm), self._fmt["order"] == ">", 0

    def cuts(self, targets: Sequence[int | Callable[[], int]]) -> Iterator[tuple[int, int] | None]:
        """For each byte ``target`` (increasing, from ``cut_shape``), the offset and frame
        of the first record at or past it with a multiple of ``BATCH`` records before it
        (or the end), as the walk over the record headers passes it; a reading of the
        file by batches from its start has a batch border there (``batches(until=)``).
        A callable target is asked again at every step of the walk (a target that moves
        as other work goes on). None (and nothing after it) where the walk cannot go on."""
        kern = compiled_kernels(load=True)
        head = self._cut_head()
        if head is None or kern is None or self._mm is None:
            yield None
            return
        mm = self._mm
        start, size, big, nif = head
        buf = _readonly(np.frombuffer(mm, np.uint8))
        ng = self.info.format == "pcapng"
        if ng:
            hlen = lim = 0
        else:
            hlen, lim = self._fmt["hlen"], _max_caplen(self._fmt["linktype"])
        pos, frame = start, 1
        dropped = 0
        try:
            for goal in targets:
                align = BATCH
                target = goal() if callable(goal) else goal
                while pos < size and (pos < target or (frame - 1) % align):
                    # a step at a time, its pages let go behind it
                    t = min(target, pos + _DROP_EVERY)
                    a = (frame - 1, align if pos + _DROP_EVERY >= target else 1)
                    try:
                        if ng:
                            pos, passed = kern.ng_seek(
                                buf, pos, t, big, nif, _MAX_BLOCK, _NG_STOPS, *a
                            )
                        else:
                            pos, passed = kern.pcap_seek(buf, pos, t, hlen, big, lim, *a)
                    except Exception:  # the kernel did not compile: one reader then
                        pos = -1
                    if pos < 0:
                        yield None
                        return
                    frame += passed
                    dropped = _drop_pages(mm, dropped, pos)
                    if callable(goal):
                        target = max(target, goal())
                yield pos, frame
        finally:
            del buf
            _drop_pages(mm, dropped, max(pos, 0) + _DROP_EVERY)

    def _reset(self) -> None:
        info = self.info
        info.packets = 0
        info.link_types = {}
        info.first_ts_ns = info.last_ts_ns = None
        info.warnings = []
        info.secrets = []
        self._tallies = {}
        self._first_rec = self._last_ts = None
        if info.format == "pcapng":
            info.snaplen = 0
            info.nanosecond = False
        elif self._fmt["version"][0] != 2:
            vmaj, vmin = self._fmt["version"]
            self._tally("version", version=f"{vmaj}.{vmin}")

    def _parser(self) -> _PcapParser | _PcapngParser:
        note = " (offsets are in the decompressed data)" if self.info.compressed else ""
        if self.info.format == "pcap":
            fm = self._fmt
            return _PcapParser(
                self._path,
                self._tally,
                fm["order"],
                fm["hlen"],
                fm["mul"],
                fm["snaplen"],
                fm["linktype"],
                note,
            )
        return _PcapngParser(self._path, self._tally, self.info, note)

    def _run(
        self,
        want: int,
        start: tuple[int, int] | None = None,
        stop: int | None = None,
        until: int | Callable[[], int | None] | None = None,
    ) -> Iterator[RecordBatch]:
        """``start``: the offset and frame of a record to start at (a span's first);
        ``stop``: the end of the bytes read (a mapped file only)."""
        p = self._parser()
        self._size = 0
        if self._regular and self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._size = os.fstat(self._file.fileno()).st_size
        env = os.environ.get(_COMPILED_ENV, "")
        self._deciding = not (env in ("0", "1") or _kernels is not None or _kernels_failed)
        if self._deciding and _built_loaded():
            # the kernels built ahead of time are in this process already (the fast lane
            # took them for this capture): the reader's cost nothing more, from the first
            # record (the benchmark capture's first two batches: 0.036 s by the pure path
            # before the estimate, 0.025 s so)
            self._deciding = False
            compiled_kernels(load=True)
        if not self._deciding:
            p.kern = compiled_kernels()
        try:
            if self._mm is not None:
                yield from self._run_mmap(p, want, start, stop, until)
            else:
                yield from self._run_stream(p, want)
        finally:
            self._finish()

    def _run_mmap(
        self,
        p: _PcapParser | _PcapngParser,
        want: int,
        start: tuple[int, int] | None,
        stop: int | None,
        until: int | Callable[[], int | None] | None = None,
    ) -> Iterator[RecordBatch]:
        assert self._mm is not None
        mm = self._mm
        # the end of B is where the parser stops (batches keep the slice alive as they
        # keep the map)
        B = _Buf(mm if stop is None or stop >= len(mm) else memoryview(mm)[:stop], 0)
        self._bufs.append(B)
        if start is not None:
            if isinstance(p, _PcapngParser):
                # the section's header blocks first: byte order and interfaces
                with memoryview(mm) as mv:
                    head = _ng_head(mv)
                if head is None:
                    raise UsageError(f"{self._path}: this pcapng file is not read by spans")
                H = _Buf(memoryview(mm)[: head[0]], 0)
                try:
                    p.parse(H, 0, True, 1)
                finally:
                    H.release()
            p.start, p.frame = start
        dropped = p.start & ~(mmap.PAGESIZE - 1)  # pages before this were handed back
        mapped = p.start  # pages before this were mapped ahead of the walk
        read = 0  # records so far
        try:
            pos = p.start
            while True:
                if p.kern is not None:
                    mapped = _map_ahead(mm, mapped, pos)
                segs, pos, status = p.parse(B, pos, True, want)
                if segs:
                    batch = self._batch(B.arr, segs)
                    if self._deciding:
                        self._consider(p, pos / max(B.end, 1))
                    yield batch
                    if self._file is None:
                        raise UsageError(f"{self._path}: capture closed while reading it")
                    dropped = _drop_pages(mm, dropped, pos)
                    read += len(batch)
                    if until is not None and read % want == 0:
                        u = until() if callable(until) else until
                        if u is not None and pos >= u:
                            break  # a batch border at or past ``until``: where ``cuts`` cuts
                if status != _MORE:
                    break
        finally:
            if B in self._bufs:
                self._bufs.remove(B)
            B.release()
            # the last step's pages too (under ``_DROP_EVERY``): a batch kept after the
            # reading (the analysis's tail) keeps the map open; it re-faults if read
            _drop_pages(mm, dropped, len(mm) + _DROP_EVERY)
        if p.error is not None:
            raise p.error

    def _source(self) -> Iterator[bytes]:
        f = self._file
        assert f is not None
        if self._regular:
            try:
                f.seek(0)
            except OSError as exc:
                raise CaptureError(self._path, f"cannot rewind: {exc.strerror}") from None
            return _read_chunks(f, self._path)
        return _read_chunks(f, self._path, self._head)

    def _parse_all(
        self, p: _PcapParser | _PcapngParser, B: _Buf, pos: int, final: bool, want: int
    ) -> Iterator[RecordBatch | tuple[int, int]]:
        """Parse ``B`` from ``pos`` until input runs out; yields batches, then (pos, status)."""
        while True:
            segs, pos, status = p.parse(B, pos, final, want)
            if segs:
                batch = self._batch(B.arr, segs)
                if self._deciding:
                    self._consider(p, self._stream_done(B.base + pos))
                yield batch
            if status != _MORE:
                yield pos, status
                return

    def _consider(self, p: _PcapParser | _PcapngParser, done: float | None) -> None:
        """Load the compiled kernels for ``p`` if enough records are still to come (see
        the module docstring); ``done`` is the share of the input consumed so far (None
        when unknown: a pipe). Asked after every batch until they are loaded: the estimate
        gets better as the capture is read (gzip's is coarse at first)."""
        n = self.info.packets
        if n < _COMPILE_PROBE:
            return
        from pcapdiag import _native

        least = COMPILE_MIN_RECORDS_BUILT if _native.ready() else COMPILE_MIN_RECORDS
        # a pipe: as many again as were read
        ahead = n if done is None else int(n / max(done, 1e-9)) - n
        if ahead >= least:
            self._deciding = False
            p.kern = compiled_kernels(load=True)

    def _stream_done(self, stream_pos: int) -> float | None:
        """Share of a streamed regular file consumed (compressed bytes for gzip)."""
        if not self._size:
            return None
        gz = self._gz
        used = gz.consumed if gz is not None else stream_pos
        return used / self._size

    def _run_stream(self, p: _PcapParser | _PcapngParser, want: int) -> Iterator[RecordBatch]:
        gz = _Gunzip(self._source()) if self.info.compressed else None
        self._gz = gz
        pieces: Iterator[Any] = gz.pieces() if gz is not None else self._source()
        carry: bytes = b""  # unparsed bytes: the start of a record cut by a piece border
        base = p.start  # stream offset of the parse position (start of carry)
        skip = p.start  # file-header bytes still to drop
        status = _NEED
        for piece in pieces:
            if skip:
                drop = min(skip, len(piece))
                piece = memoryview(piece)[drop:]
                skip -= drop
            j = 0  # parse position inside piece
            # A record cut by the border: stitch it (and a little more) into a small
            # buffer instead of copying the whole piece behind the carry.
            while carry and j < len(piece):
                take = max(len(carry), 65_536)
                stitched = b"".join((carry, piece[j : j + take]))
                j += min(take, len(piece) - j)
                for r in self._parse_all(p, _Buf(stitched, base), 0, False, want):
                    if isinstance(r, RecordBatch):
                        yield r
                    else:
                        pos, status = r
                if status == _DONE:
                    break
                if pos >= len(carry):  # the cut record is complete: go on in piece itself
                    j -= len(stitched) - pos
                    carry = b""
                else:
                    carry = stitched[pos:]
                base += pos
            if status == _DONE:
                break
            if carry or j >= len(piece):
                continue
            start = base - j  # stream offset of piece[0]
            for r in self._parse_all(p, _Buf(piece, start), j, False, want):
                if isinstance(r, RecordBatch):
                    yield r
                else:
                    pos, status = r
            if status == _DONE:
                break
            carry = bytes(piece[pos:])
            base = start + pos
        if status != _DONE and gz is not None and gz.error is not None:
            off, why = gz.error
            raise CorruptCaptureError(
                self._path,
                f"gzip stream corrupt near compressed byte {off} ({why}); "
                f"{self.info.packets} records before it were read",
                offset=off,
                frame=p.frame,
            )
        if gz is not None:
            if gz.truncated:
                self._tally("gzip_truncated", offset=gz.consumed)
            if gz.trailing:
                self._tally("gzip_trailing", offset=gz.consumed, size=gz.trailing)
        if status != _DONE:
            if skip:  # the file header itself is incomplete (checked at open; be safe)
                raise CorruptCaptureError(self._path, "capture ends inside its file header")
            for r in self._parse_all(p, _Buf(carry, base), 0, True, want):
                if isinstance(r, RecordBatch):
                    yield r
        if p.error is not None:
            raise p.error

    def _batch(self, arr: np.ndarray, segs: list[_Seg]) -> RecordBatch:
        if len(segs) == 1:
            frame, ts, off, cap, wire, lt, iface, _ = segs[0]
        else:
            frame, ts, off, cap, wire, lt, iface = (
                np.concatenate(c) for c in zip(*(s[:7] for s in segs), strict=True)
            )
        n = len(frame)
        info = self.info
        info.packets += n
        if n:
            back = np.flatnonzero(ts[1:] < ts[:-1])
            first_back = int(frame[back[0] + 1]) if len(back) else None
            count = len(back)
            if self._last_ts is not None and ts[0] < self._last_ts:
                count += 1
                first_back = int(frame[0])
            if count:
                self._tally("backwards", count, frame=first_back)
            if self._first_rec is None:
                self._first_rec = int(ts[0])
            self._last_ts = int(ts[-1])
            lo, hi = int(ts.min()), int(ts.max())
            if info.first_ts_ns is None or lo < info.first_ts_ns:
                info.first_ts_ns = lo
            if info.last_ts_ns is None or hi > info.last_ts_ns:
                info.last_ts_ns = hi
            big = np.flatnonzero(cap > wire)
            if len(big):
                self._tally("cap_gt_wire", len(big), frame=int(frame[big[0]]))
            lt0 = int(lt[0])
            if (lt == lt0).all():
                info.link_types[lt0] = info.link_types.get(lt0, 0) + n
            else:
                counts = np.bincount(lt)
                for t in np.flatnonzero(counts):
                    info.link_types[int(t)] = info.link_types.get(int(t), 0) + int(counts[t])
        batch = RecordBatch(arr, frame, ts, off, cap, wire, lt, iface)
        if any(s[7] is not None for s in segs):
            batch._pre = _join_pre(batch, segs)
        return batch

    # -- warnings
    def _tally(
        self,
        kind: str,
        count: int = 1,
        *,
        frame: int | None = None,
        offset: int | None = None,
        **extra: Any,
    ) -> None:
        _add_tally(self._tallies, kind, dict(count=count, frame=frame, offset=offset, **extra))

    def _finish(self) -> None:
        self.info.warnings.extend(_warnings(self._path, self._tallies, self.info.packets))
        self._kept = self._tallies  # for ``span_info``
        self._tallies = {}

    def span_info(self) -> SpanInfo:
        """What the last reading (of a span, ``batches(span=)``, exhausted) found, for
        ``join_spans``."""
        return SpanInfo(
            dataclasses.replace(self.info, warnings=[], link_types=dict(self.info.link_types)),
            {k: dict(t) for k, t in self._kept.items()},
            self._first_rec,
            self._last_ts,
        )

    # -- closing
    def close(self) -> None:
        for B in self._bufs:
            B.release()
        self._bufs.clear()
        self._again = None
        if self._mm is not None:
            # BufferError: a batch still references the map; it is freed with the last view
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _warnings(path: str, tallies: dict[str, dict[str, Any]], n: int) -> list[CaptureWarning]:
    """The warnings of a reading's tallies (``Capture._tally``: one per kind, in the
    order they first came), ``n`` records read."""
    out: list[CaptureWarning] = []
    for kind, t in tallies.items():
        c = t["count"]
        if kind == "truncated":
            miss = t["missing"]
            what = f"{miss} bytes missing" if miss else "inside its header"
            msg = f"capture ends inside a record ({what}); {n} complete records read"
        elif kind == "backwards":
            msg = f"timestamps go backwards {c} times"
        elif kind == "cap_gt_wire":
            msg = f"{c} records have more captured bytes than their original length (kept)"
        elif kind == "over_snaplen":
            msg = (
                f"{c} records exceed the snaplen {t['snaplen']} (up to {t['biggest']} bytes; kept)"
            )
        elif kind == "wire_clip":
            msg = f"{c} records claim an original length of 2 GiB or more (clipped)"
        elif kind == "bad_iface":
            msg = (
                f"{c} records name an interface their section does not define "
                f"(first: interface {t['iface']}); skipped"
            )
        elif kind == "spb_ts":
            msg = (
                f"{c} Simple Packet Blocks have no timestamp; "
                f"they were given the previous record's time"
            )
        elif kind == "events":
            msg = (
                f"{c} non-packet records (systemd journal / sysdig events) not delivered; "
                f"they still use up frame numbers, as in Wireshark"
            )
        elif kind == "too_many_ifaces":
            msg = f"{c} interfaces beyond {_MAX_IFACES} in one section ignored"
        elif kind == "gzip_truncated":
            msg = f"gzip stream is truncated (no end-of-stream marker); {n} records read"
        elif kind == "gzip_trailing":
            msg = f"{t['size']} bytes of non-gzip data after the gzip stream ignored"
        elif kind == "version":
            msg = f"unusual pcap version {t['version']} (read as 2.4)"
        else:  # pragma: no cover - every kind is listed above
            msg = kind
        out.append(CaptureWarning(path, msg, t["frame"], t["offset"]))
    return out


def open_capture(path: str | os.PathLike[str]) -> Capture:
    """Open ``path`` (pcap / pcapng, optionally gzip) or raise ``CaptureError``."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise CaptureError(name, "no such file") from None
    except PermissionError:
        raise CaptureError(name, "permission denied (cannot reach the file)") from None
    except (OSError, ValueError) as exc:
        raise CaptureError(name, f"cannot open: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CaptureError(name, "is a directory, not a capture file")
    try:
        f = open(name, "rb")  # noqa: SIM115 - owned by the Capture
    except PermissionError:
        raise CaptureError(name, "permission denied (cannot read the file)") from None
    except OSError as exc:
        raise CaptureError(name, f"cannot open: {exc.strerror or exc}") from None
    cap = Capture(name, f, stat.S_ISREG(st.st_mode))
    try:
        cap._sniff()
    except BaseException:
        cap.close()
        raise
    return cap


def chain_batches(
    paths: list[str],
    offsets: list[int],
    max_records: int | None = None,
    skip_errors: bool = False,
    sizes: list[int] | None = None,
) -> Iterator[RecordBatch]:
    """The batches of several files read as one capture (rotated files stitched by the
    analysis): each file's frames numbered on from ``offsets[i]``, as ``mergecap -a``
    numbers them. ``skip_errors``: a file that cannot be opened, or read further, ends
    there and the next one follows, for a second reading whose first reported the error.
    ``sizes``: each file's ``Capture.size`` at the first reading (0: unknown), read up to
    there only (``batches(upto=…)``)."""
    for k, (path, offset) in enumerate(zip(paths, offsets, strict=True)):
        upto = sizes[k] if sizes and k < len(sizes) and sizes[k] else None
        try:
            cap = open_capture(path)
        except CaptureError:
            if skip_errors:
                continue
            raise
        with cap:
            try:
                for batch in cap.batches(max_records, upto=upto):
                    if offset:
                        batch.frame = batch.frame + offset
                    yield batch
            except CaptureError:
                if not skip_errors:
                    raise
