"""numba kernels for the hot loops: the record walk and the common-case decode.

Private: ``pcapdiag.reader`` / ``pcapdiag.decode`` load these kernels only through
``reader.compiled_kernels`` (``import numba`` alone costs ~0.3 s, paid only for captures
big enough to win it back), which takes them built ahead of time (``pcapdiag._native``)
where it can, without importing this module. Every kernel mirrors one piece of the pure code exactly and
leaves out ("not handled") whatever that code would treat in any unusual way, so the
callers hand the rest to the pure code and get byte-identical results.

Explicit signatures: everything is compiled (or loaded from numba's cache) when this
module is imported, so a failure shows up there, once, and the callers fall back to the
pure path. The callers pass exactly these types. Compiling takes ~10 s (once per
install: ``cache=True``); loading from the cache ~0.3 s. ``_decode_range`` has a
signature too, so it is compiled once, not once per caller.

Cache: numba writes next to this file (``__pycache__``) or, when that is not writable (a
read-only install), in its per-user cache directory; ``NUMBA_CACHE_DIR`` overrides both.
If no location is writable, numba refuses ``cache=True`` at import time and the callers
use the pure path (compiling on every run would cost more than it saves).

Speed: header fields are read with single unaligned loads of their width plus a byte
swap (``_load``), without the negative-index wraparound code numba adds to every
indexing with a signed index: about a third less time per record than byte-wise
indexing. Decoding inside the walk, a block at a time, saves the second trip to memory
that ``decode_batch`` would make (the batch's bytes are long out of the caches by then).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_u8ro = types.Array(types.uint8, 1, "C", readonly=True)
_i64ro = types.Array(types.int64, 1, "C", readonly=True)
_u8w = types.Array(types.uint8, 1, "C")
_u16w = types.Array(types.uint16, 1, "C")
_u32w = types.Array(types.uint32, 1, "C")
_i32w = types.Array(types.int32, 1, "C")
_i64w = types.Array(types.int64, 1, "C")
_u64w = types.Array(types.uint64, 1, "C")
_u32w2 = types.Array(types.uint32, 2, "C")
_i64w2 = types.Array(types.int64, 2, "C")
_i64, _b1 = types.int64, types.boolean
# The TCP columns, in ``decode._TCP_FIELDS`` order (``reader.TCP_DTYPES``).
_OUT = types.Tuple(
    (_u8w, _u64w, _u64w, _u64w, _u64w, _u16w, _u16w, _u32w)
    + (_u32w, _u8w, _u16w, _i32w, _i64w, _i32w, _u8w, _u16w)
)
_I32MAX = 0x7FFF_FFFF

_OPTS: dict[str, Any] = dict(cache=True, nogil=True)


def _bytes_at(arr: types.Type, pos: types.Type) -> bool:
    """Do an intrinsic's arguments name a byte of a uint8 array?"""
    return (
        isinstance(arr, types.Array) and arr.dtype == types.uint8 and isinstance(pos, types.Integer)
    )


def _load(width: int, swap: bool, result: types.Integer) -> Any:
    """An intrinsic ``f(a, p)``: the ``width``-bit integer at byte ``p`` of the uint8 array
    ``a`` (unaligned; big-endian when ``swap``), as ``result``. No bounds check and no
    negative-index wraparound: every caller checks ``p`` first."""

    @intrinsic
    def load(typingctx: Any, arr: types.Type, pos: types.Type) -> Any:
        if not _bytes_at(arr, pos):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            ity = ir.IntType(width)
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ity.as_pointer())
            v = builder.load(ptr, align=1)
            if swap and width > 8:
                v = builder.call(builder.module.declare_intrinsic("llvm.bswap", [ity]), [v])
            return builder.zext(v, ir.IntType(64)) if width < 64 else v

        return result(arr, pos), codegen

    return load


@intrinsic
def _prefetch(typingctx: Any, arr: types.Type, pos: types.Type) -> Any:
    """Ask for the cache line of item ``pos`` of the C-contiguous array ``arr`` (x86
    ``prefetcht0``; never faults, so it may point past a mapping's mapped pages).

    A walk from record header to record header waits for memory at every step: where
    the next header is, only the one before says, and the hardware prefetcher stays
    within a page. Asking for the lines a few KB ahead of the walk, which moves
    forward through the file, turns that wait into a stream: reading and decoding the
    1.6 GB benchmark capture took 0.50-0.52 s without, 0.38 s with
    (``benchmarks/bench_reader.py --file ... --decode --compiled 1``), and the cut of
    ``--jobs 2`` (``pcap_seek``) 0.28-0.31 s without, 0.18-0.20 s with. The fast
    lane's walk asks for the hash-table row and the payload of a packet a few ahead
    (``_fastlane_kernels.walk``)."""
    if not (isinstance(arr, types.Array) and arr.layout == "C" and isinstance(pos, types.Integer)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        # a read, kept in every cache level, of data
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, pos), codegen


_AHEAD = 4096  # bytes of lines asked for ahead of a walk (1-16 KB measured alike)


@njit(**_OPTS, inline="always")
def _ask_ahead(buf: np.ndarray, ahead: int, upto: int) -> int:
    """Ask for the cache lines of ``buf`` from byte ``ahead`` up to ``upto`` (``_prefetch``,
    the walks' step ahead of the header they read); returns where the asking stopped."""
    end = buf.shape[0]
    while ahead < upto and ahead < end:
        _prefetch(buf, ahead)
        ahead += 64
    return ahead


_u8 = _load(8, False, types.int64)
_be16 = _load(16, True, types.int64)
_be32 = _load(32, True, types.int64)
_le32 = _load(32, False, types.int64)
_be64 = _load(64, True, types.uint64)


@njit(**_OPTS, inline="always")
def _u32(buf: np.ndarray, p: int, big: bool) -> int:
    return _be32(buf, p) if big else _le32(buf, p)


# --------------------------------------------------------------------------- decode

# Record outcomes, as ``decode._Decoder.st`` has them (0: left to the pure decoder).
_TCP, _NON_TCP, _NON_IP = 1, 2, 3
_V4MAPPED = np.uint64(0xFFFF_0000_0000)
_BIG = np.int64(1) << np.int64(40)  # an IP length of 0 (TSO, jumbogram): no limit
_BLOCK = 128  # records per call of _decode_range


@njit(
    types.int64(
        _u8ro, _i64w, _i64w, _i64w, _i64w, _i64, _i64, _i64, _i64, _u8w, _i64w,
        _u8w, _u64w, _u64w, _u64w, _u64w, _u16w, _u16w, _u32w,
        _u32w, _u8w, _u16w, _i32w, _i64w, _i32w, _u8w, _u16w,
    ),
    **_OPTS,
)  # fmt: skip
def _decode_range(
    data: np.ndarray,
    start: np.ndarray,
    cap: np.ndarray,
    wire: np.ndarray,
    linktype: np.ndarray,
    lo: int,
    hi: int,
    row0: int,
    t: int,
    st: np.ndarray,
    idx: np.ndarray,
    o_ipver: np.ndarray,
    o_src_hi: np.ndarray,
    o_src_lo: np.ndarray,
    o_dst_hi: np.ndarray,
    o_dst_lo: np.ndarray,
    o_sport: np.ndarray,
    o_dport: np.ndarray,
    o_seq: np.ndarray,
    o_ack: np.ndarray,
    o_flags: np.ndarray,
    o_window: np.ndarray,
    o_plen: np.ndarray,
    o_poff: np.ndarray,
    o_pcap: np.ndarray,
    o_ttl: np.ndarray,
    o_ipid: np.ndarray,
) -> int:
    """Decode records lo..hi-1 of the arrays (absolute start, captured end and wire end in
    ``data``, link type; row number ``row0 + j``) as ``decode._Decoder`` would, where the
    layout is common and clean: Ethernet (up to 2 VLAN tags), SLL, SLL2, NULL/LOOP or raw
    IP, then IPv4 (any IHL, first fragment or none) or IPv6 without extension headers,
    then TCP. Such a record gets its outcome in ``st`` (TCP, or non-TCP / non-IP when a
    header says so) and, for TCP, row ``t`` of the ``o_*`` columns (``idx[t]`` = its row
    number). Any other record (malformed, ICMP, tunnels, extension headers, unknown link
    types, ...) keeps st 0 for the pure decoder. Returns the next free TCP row.

    Called once per block of records, not per record: a call with array arguments costs
    reference counting, several hundred ns. The walks load the second line of each
    packet's headers as they pass it (``touched``): the load runs while the walk goes on,
    and the decode then finds it in the cache (15 ns a record)."""
    for jj in range(lo, hi):
        j = np.uint64(jj)  # unsigned indexes: no negative-index wraparound code
        r = np.uint64(row0 + jj)
        pos = start[j]
        c = cap[j]
        ipe = wire[j]
        lt = linktype[j]
        ver = 0
        et = np.int64(-1)
        # -- link layer
        if lt == 1:
            if pos + 14 > min(c, ipe):
                continue
            et = _be16(data, pos + 12)
            pos += 14
        elif lt == 113:
            if pos + 16 > min(c, ipe):
                continue
            et = _be16(data, pos + 14)
            pos += 16
        elif lt == 276:
            if pos + 20 > min(c, ipe):
                continue
            et = _be16(data, pos)
            pos += 20
        elif lt == 0 or lt == 108:
            if pos + 4 > min(c, ipe):
                continue
            af = _be32(data, pos)
            if lt == 0:  # the capturing host's byte order: take the reading that fits
                le = _le32(data, pos)
                if le == 2 or le == 24 or le == 28 or le == 30:
                    af = le
            if af == 2:
                et = 0x0800
            elif af == 24 or af == 28 or af == 30:
                et = 0x86DD
            else:
                et = 0
            pos += 4
        elif lt == 228:
            ver = 4
        elif lt == 229:
            ver = 6
        elif lt == 101 or lt == 12 or lt == 14:
            if pos + 1 > min(c, ipe):
                continue
            nib = _u8(data, pos) >> 4
            if nib == 4:
                ver = 4
            elif nib == 6:
                ver = 6
            else:
                continue
        else:
            continue
        # -- ethertypes, VLAN tags
        tags = 0
        while ver == 0:
            if et == 0x0800:
                ver = 4
            elif et == 0x86DD:
                ver = 6
            elif et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200:
                if tags == 2 or pos + 4 > min(c, ipe):
                    ver = -1
                else:
                    et = _be16(data, pos + 2)
                    pos += 4
                    tags += 1
            elif (
                et == 0x8926  # VN-Tag
                or et == 0x88E7  # PBB
                or et == 0x8903  # FabricPath
                or et == 0x8847  # MPLS
                or et == 0x8848
                or et == 0x8864  # PPPoE
                or et == 0x6558  # Ethernet bridging
            ):
                ver = -1
            else:
                st[r] = _NON_IP
                ver = -1
        if ver < 0:
            continue
        # -- IP
        if ver == 4:
            if pos + 20 > min(c, ipe):
                continue
            w = _be32(data, pos)  # version/IHL, TOS, total length
            hl = ((w >> 24) & 15) * 4
            tot = w & 0xFFFF
            if (w >> 28) != 4 or hl < 20 or pos + hl > c or pos + hl > ipe:
                continue
            if tot != 0 and tot < hl:
                continue
            w = _be32(data, pos + 4)  # identification, flags/fragment offset
            ident = w >> 16
            if w & 0x1FFF:  # not the first fragment
                st[r] = _NON_TCP
                continue
            if tot == 0:
                tot = _BIG
            ipe = min(pos + tot, ipe)
            w = _be32(data, pos + 8)  # TTL, protocol, checksum
            hop = w >> 24
            proto = (w >> 16) & 0xFF
            if proto != 6:
                if proto == 1 or proto == 4 or proto == 41 or proto == 47 or proto == 51:
                    continue
                st[r] = _NON_TCP
                continue
            shi = np.uint64(0)
            dhi = np.uint64(0)
            slo = np.uint64(_be32(data, pos + 12)) | _V4MAPPED
            dlo = np.uint64(_be32(data, pos + 16)) | _V4MAPPED
            pos += hl
        else:
            if pos + 40 > min(c, ipe):
                continue
            if (_u8(data, pos) >> 4) != 6:
                continue
            w = _be32(data, pos + 4)  # payload length, next header, hop limit
            plen = w >> 16
            nh = (w >> 8) & 0xFF
            hop = w & 0xFF
            if plen == 0:
                plen = _BIG
            ipe = min(pos + 40 + plen, ipe)
            if nh != 6:
                if (
                    nh == 58
                    or nh == 4
                    or nh == 41
                    or nh == 47
                    or nh == 51
                    or nh == 0
                    or nh == 43
                    or nh == 60
                    or nh == 44
                ):
                    continue
                st[r] = _NON_TCP
                continue
            shi = _be64(data, pos + 8)
            slo = _be64(data, pos + 16)
            dhi = _be64(data, pos + 24)
            dlo = _be64(data, pos + 32)
            ident = np.int64(0)
            pos += 40
        # -- TCP
        avail = min(c, ipe)
        if pos + 20 > avail:
            continue
        w = _be32(data, pos + 12)  # data offset, flags, window
        thl = (w >> 26) & 0x3C
        body = pos + thl
        if thl < 20 or body > ipe:
            continue
        ports = _be32(data, pos)
        st[r] = _TCP
        u = np.uint64(t)
        idx[u] = r
        o_ipver[u] = ver
        o_src_hi[u] = shi
        o_src_lo[u] = slo
        o_dst_hi[u] = dhi
        o_dst_lo[u] = dlo
        o_sport[u] = ports >> 16
        o_dport[u] = ports & 0xFFFF
        o_seq[u] = _be32(data, pos + 4)
        o_ack[u] = _be32(data, pos + 8)
        o_flags[u] = (w >> 16) & 0xFF
        o_window[u] = w & 0xFFFF
        o_plen[u] = ipe - body
        o_poff[u] = min(body, c)
        o_pcap[u] = max(avail - body, 0)
        o_ttl[u] = hop
        o_ipid[u] = ident
        t += 1
    return t


@njit(**_OPTS)
def _touch(data: np.ndarray, start: np.ndarray, cap: np.ndarray, lo: int, hi: int) -> int:
    """Load the first bytes of rows lo..hi-1 before they are decoded: independent loads
    the CPU overlaps, where the decoding waits for one cache miss after another (this
    halves the time of a batch whose bytes are no longer in the caches)."""
    acc = np.int64(0)
    for j in range(lo, hi):
        p = start[j]
        e = cap[j]
        if p + 64 <= e:
            acc += _u8(data, p) + _u8(data, p + 63)
        elif p < e:
            acc += _u8(data, p)
    return acc


@njit(
    types.int64(_u8ro, _i64w, _i64w, _i64w, _i64w, _u8ro, _u8w, _i64w, _OUT),
    **_OPTS,
)
def decode_common(
    data: np.ndarray,
    start: np.ndarray,
    cap: np.ndarray,
    wire: np.ndarray,
    linktype: np.ndarray,
    keep: np.ndarray,
    st: np.ndarray,
    idx: np.ndarray,
    out: tuple,
) -> int:
    """``_decode_range`` over a batch, skipping the rows whose ``keep`` is 0 (an empty
    ``keep``: none). Returns the number of TCP rows written."""
    n = start.shape[0]
    o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15 = out
    t = 0
    touched = _touch(data, start, cap, 0, min(_BLOCK, n))
    for lo in range(0, n, _BLOCK):
        hi = min(lo + _BLOCK, n)
        touched += _touch(data, start, cap, hi, min(hi + _BLOCK, n))
        j = lo
        while j < hi:  # runs of kept rows
            if keep.shape[0] == n and keep[j] == 0:
                j += 1
                continue
            e = j + 1
            while e < hi and (keep.shape[0] != n or keep[e] != 0):
                e += 1
            t = _decode_range(
                data, start, cap, wire, linktype, j, e, 0, t, st, idx,
                o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15,
            )  # fmt: skip
            j = e
    if touched == -1:  # never true: only keeps the loads
        st[0] = 0
    return t


# --------------------------------------------------------------------------- reader
# The walks also decode the records they accept, a block at a time while the block's
# bytes are in the cache (the batch's bytes no longer are by the time ``decode_batch``
# sees it): ``st``/``idx``/``out`` as in ``decode_common``, rows numbered from 0 for the
# first record of the walk.


@njit(
    types.UniTuple(types.int64, 2)(
        _u8ro, _i64, _i64, _i64, _i64, _b1, _i64, _i64, _i64,
        _i64w, _i64w, _u32w2, _u8w, _i64w, _OUT, _i64w2,
    ),
    **_OPTS,
)  # fmt: skip
def pcap_walk(
    buf: np.ndarray,
    pos: int,
    k: int,
    safe: int,
    hlen: int,
    big: bool,
    lim: int,
    linktype: int,
    mul: int,
    offs: np.ndarray,
    ts: np.ndarray,
    hdr: np.ndarray,
    st: np.ndarray,
    idx: np.ndarray,
    out: tuple,
    scratch: np.ndarray,
) -> tuple[int, int]:
    """``_PcapParser._fast`` without the Python loop: the k speculative record starts from
    ``pos``; c = -1 if any of their caplen fields lies past ``buf`` (the pure walk's
    ``struct.error``), else the length c of the accepted prefix (starts <= ``safe``,
    caplen <= ``lim``), with, for those, the packet offsets ``offs``, the times ``ts``
    (seconds * 1e9 + fraction * ``mul``, as ``_PcapParser._seg`` computes them) and the
    caplen / wirelen header words ``hdr``. Returns (c, TCP rows decoded). ``scratch``:
    four rows for a block's record bounds (a kernel allocates nothing: ``_native``)."""
    end = buf.shape[0]
    o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15 = out
    b_start, b_cap, b_wire, b_lt = scratch[0], scratch[1], scratch[2], scratch[3]
    blk = scratch.shape[1]
    b_lt[:] = linktype
    m = 0  # records in the block
    q = pos + 8  # caplen field of the current record
    c = -1
    t = 0
    touched = 0
    ahead = pos  # lines asked for (``_ask_ahead``) up to here
    for i in range(k):
        if q + 4 > end:
            return -1, 0
        ahead = _ask_ahead(buf, ahead, q + _AHEAD)
        cl = _u32(buf, q, big)
        if c < 0:
            s = q - 8
            if s > safe or cl > lim:
                c = i
            else:
                wl = _u32(buf, s + 12, big)
                off = s + hlen
                touched += _u8(buf, min(off + 63, end - 1))  # see _decode_range
                offs[i] = off
                ts[i] = _u32(buf, s, big) * 1_000_000_000 + _u32(buf, s + 4, big) * mul
                hdr[i, 0] = cl
                hdr[i, 1] = wl
                b_start[m] = off
                b_cap[m] = off + cl
                b_wire[m] = off + max(cl, min(wl, _I32MAX))
                m += 1
                if m == blk:
                    t = _decode_range(
                        buf, b_start, b_cap, b_wire, b_lt, 0, m, i + 1 - m, t, st, idx,
                        o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15,
                    )  # fmt: skip
                    m = 0
        q += hlen + cl
    if c < 0:
        c = k
    if m:
        t = _decode_range(
            buf, b_start, b_cap, b_wire, b_lt, 0, m, c - m, t, st, idx,
            o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15,
        )  # fmt: skip
    if touched == -1:  # never true: only keeps the loads
        st[0] = 0
    return c, t


@njit(
    types.UniTuple(types.int64, 2)(
        _u8ro, _i64, _i64, _i64, _b1, _i64, _i64ro, _i64w, _u32w2, _u8w, _i64w, _OUT, _i64w2
    ),
    **_OPTS,
)
def ng_walk(
    buf: np.ndarray,
    pos: int,
    k: int,
    safe: int,
    big: bool,
    plausible: int,
    linktypes: np.ndarray,
    starts: np.ndarray,
    hdr: np.ndarray,
    st: np.ndarray,
    idx: np.ndarray,
    out: tuple,
    scratch: np.ndarray,
) -> tuple[int, int]:
    """``_PcapngParser._fast`` without the Python loop: c = -1 if any of the k speculative
    block-length fields lies past ``buf``, else the length c of the prefix of valid EPBs
    (start <= ``safe``, sane length, caplen fits, trailer matches), with their starts and
    the seven header words (type, length, interface, ts_hi, ts_lo, caplen, wirelen).
    ``linktypes``: per interface of the section (records naming another are not decoded).
    Returns (c, TCP rows decoded)."""
    end = buf.shape[0]
    nif = linktypes.shape[0]
    o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15 = out
    b_start, b_cap, b_wire, b_lt = scratch[0], scratch[1], scratch[2], scratch[3]
    blk = scratch.shape[1]
    m = 0  # records in the block
    q = pos + 4  # length field of the current block
    c = -1
    t = 0
    touched = 0
    ahead = pos  # see pcap_walk
    for i in range(k):
        if q + 4 > end:
            return -1, 0
        ahead = _ask_ahead(buf, ahead, q + _AHEAD)
        blen = _u32(buf, q, big)
        if c < 0:
            s = q - 4
            if s > safe:
                c = i
            else:
                for j in range(7):
                    hdr[i, j] = _u32(buf, s + 4 * j, big)
                cl = np.int64(hdr[i, 5])
                if (
                    hdr[i, 0] != 6
                    or blen < 32
                    or (blen & 3) != 0
                    or blen > plausible
                    or cl > blen - 32
                    or _u32(buf, s + blen - 4, big) != blen
                ):
                    c = i
                else:
                    starts[i] = s
                    iface = np.int64(hdr[i, 2])
                    off = s + 28
                    touched += _u8(buf, min(off + 63, end - 1))  # see _decode_range
                    b_start[m] = off
                    b_cap[m] = off + cl
                    b_wire[m] = off + max(cl, min(np.int64(hdr[i, 6]), _I32MAX))
                    b_lt[m] = linktypes[iface] if iface < nif else -1  # -1: not decoded
                    m += 1
                    if m == blk:
                        t = _decode_range(
                            buf, b_start, b_cap, b_wire, b_lt, 0, m, i + 1 - m, t, st, idx,
                            o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14,
                            o15,
                        )  # fmt: skip
                        m = 0
        q += blen
    if c < 0:
        c = k
    if m:
        t = _decode_range(
            buf, b_start, b_cap, b_wire, b_lt, 0, m, c - m, t, st, idx,
            o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15,
        )  # fmt: skip
    if touched == -1:  # never true: only keeps the loads
        st[0] = 0
    return c, t


# The two seeks below have no signature: only ``--jobs`` calls them, so they are loaded
# (or compiled) on their first call, not with every import (~30 ms). A failure there makes
# ``reader.Capture.spans`` give up on byte ranges.
@njit(**_OPTS)
def pcap_seek(
    buf: np.ndarray, pos: int, target: int, hlen: int, big: bool, lim: int, n0: int, align: int
) -> tuple:
    """From the record at ``pos`` (``n0`` records before it), the first record that
    starts at or after ``target`` with a multiple of ``align`` records before it (or the
    end of ``buf``): (its offset, records passed on the way). Only the headers are read,
    for ``reader.Capture.spans``. (-1, records passed) at a record whose caplen is over
    ``lim`` or runs past the end: the split gives way to one reader."""
    end = buf.shape[0]
    n = 0
    ahead = pos  # see pcap_walk
    while (pos < target or (n0 + n) % align) and pos < end:
        if pos + hlen > end:
            return -1, n
        ahead = _ask_ahead(buf, ahead, pos + _AHEAD)
        cl = _u32(buf, pos + 8, big)
        if cl > lim or pos + hlen + cl > end:
            return -1, n
        pos += hlen + cl
        n += 1
    return pos, n


@njit(**_OPTS)
def ng_seek(
    buf: np.ndarray,
    pos: int,
    target: int,
    big: bool,
    nif: int,
    most: int,
    stops: np.ndarray,
    n0: int,
    align: int,
) -> tuple:
    """``pcap_seek`` for pcapng, from a block past the section's header blocks: the first
    block at or after ``target``, and the Enhanced Packet Blocks passed (a frame each).
    (-1, passed) at any block a span could not start after as the whole read does: one
    damaged (length under 12, not a multiple of 4, over ``most``, past the end, trailer
    differing, an EPB's caplen past its block or its interface not among ``nif``), or one
    of the block types ``stops`` (``reader._NG_STOPS``: a new section or interface, or a
    packet block with state)."""
    end = buf.shape[0]
    n = 0
    ahead = pos  # see pcap_walk
    while (pos < target or (n0 + n) % align) and pos < end:
        if pos + 12 > end:
            return -1, n
        ahead = _ask_ahead(buf, ahead, pos + _AHEAD)
        bt = _u32(buf, pos, big)
        bl = _u32(buf, pos + 4, big)
        if bl < 12 or bl & 3 or bl > most or pos + bl > end or _u32(buf, pos + bl - 4, big) != bl:
            return -1, n
        if bt == 6:
            if bl < 32 or _u32(buf, pos + 20, big) > bl - 32 or _u32(buf, pos + 8, big) >= nif:
                return -1, n
            n += 1
        else:
            for stop in stops:
                if bt == stop:
                    return -1, n
        pos += bl
    return pos, n
