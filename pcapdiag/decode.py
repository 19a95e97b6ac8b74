"""Decode link, IP and TCP headers column-wise.

``decode_batch`` turns a :class:`~pcapdiag.reader.RecordBatch` into one row per TCP
segment (:class:`TcpPackets`, numpy columns in capture order), the ICMP/ICMPv6 errors that
quote a TCP header (:class:`IcmpError`), and counts of everything else. Every record lands
in exactly one of: a TCP row, ``non_tcp``, ``non_ip``, ``unknown_link``, ``malformed_count``.

Link types: 1 Ethernet, 113 Linux SLL, 276 SLL2, 101/12/14 raw IP (version from the first
nibble), 228 raw IPv4, 229 raw IPv6, 0 BSD NULL (address family in the capturing host's
byte order, told apart by value: 2 = IPv4, 24/28/30 = IPv6), 108 LOOP (network order).
Others are counted in ``unknown_link``. Encapsulations: 802.1Q/QinQ tags (0x8100, 0x88a8,
0x9100, 0x9200), MPLS (labels to bottom-of-stack, then IPv4/IPv6 by first nibble, or a
pseudowire control word + Ethernet for nibble 0), PPPoE session (PPP 0x0021/0x0057; the
PPPoE length bounds the packet, as in Wireshark), VN-Tag, PBB 802.1ah, Cisco FabricPath
(16-byte outer header, then the original frame), IPv4 options, IPv6 extension headers
(0, 43, 60, 44, 51), IP-in-IP (4, 41) and GRE v0 without routing (IPv4, IPv6, bridged
Ethernet 0x6558). Not opened: UDP tunnels (VXLAN, Teredo, GTP), GRE with routing or v1,
802.3/LLC frames, non-first fragments (fragments are not reassembled).

One vectorised path, no per-packet fallback. Each layer is a method over a *selection* of
records (index, offset, captured end, IP end): it checks bounds for the whole selection,
reads its header for all rows with one gather (``V<k>`` items through a stride-1 view of
``data``, fields from a big-endian structured dtype) and hands each group of rows on by
what the header announces. Rare encapsulations run the same code on small selections: a
few numpy calls per batch instead of Python per packet, and a single implementation of
each header. The only per-packet Python builds the ``IcmpError`` objects (rare).

Compiled rows first, when the numba kernels are loaded (``reader.compiled_kernels``: big
captures, or ``PCAPDIAG_COMPILED=1``): each record with a common, clean layout (Ethernet
with up to 2 VLAN tags, SLL, SLL2, NULL/LOOP or raw IP; IPv4 first fragment or unfragmented,
or IPv6 without extension headers; then TCP, or a protocol that makes it non-TCP) is
decoded by the kernel, usually already by the reader's walk while the bytes were in the
cache (``RecordBatch._pre``). Every other record (malformed, ICMP, tunnels, extension
headers, unknown link types) goes through the vectorised code as before, and the TCP rows
are merged back in capture order, so the result is the same either way, to the byte: the
kernel only takes the rows whose outcome it reproduces exactly.

Addresses are 128 bits in two uint64 halves (big-endian order); IPv4 is IPv4-mapped
(::ffff:a.b.c.d), ``ipver`` tells. Address, TTL/hop limit and IP ID come from the innermost
IP header. ``payload_len`` is that header's total/payload length minus the IP, extension
and TCP header lengths, bounded by the enclosing packet and the frame's wire length; a
length of 0 (TSO, jumbogram) means up to the end of the frame. ``payload_cap`` is the part
that was captured; a snaplen cut inside the TCP options still yields a row (payload_cap 0,
``payload_off`` clamped to the record end).

Malformed (skipped, counted, the first 100 described per batch): a header cut short by the
capture before the fixed TCP header is complete, an IPv4 header with version != 4, IHL < 5
or total length < header length, IPv6 version != 6, extension headers, GRE headers or TCP
options running past the IP length, IP payload shorter than 20 bytes for TCP, TCP data
offset < 5, more than 16 nested encapsulations, or a record outside ``data``. Every read
is bounds-checked against its record first; nothing raises on packet bytes.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from pcapdiag.reader import Predecoded, RecordBatch, _tcp_buffers, compiled_kernels
from pcapdiag.reader import _readonly as _readonly_view

# TCP flag bits as on the wire (low byte of the flags field).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


@dataclass(slots=True)
class TcpPackets:
    """One row per TCP segment, in capture order. Addresses are 128-bit, split into two
    uint64 halves; IPv4 addresses are IPv4-mapped (::ffff:a.b.c.d), ``ipver`` tells."""

    data: np.ndarray  # uint8, same buffer as the RecordBatch
    frame: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    ipver: np.ndarray  # uint8, 4 or 6
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16
    seq: np.ndarray  # uint32
    ack: np.ndarray  # uint32
    flags: np.ndarray  # uint8 (FIN..CWR)
    window: np.ndarray  # uint16 (raw, unscaled)
    payload_len: np.ndarray  # int32, from the IP length (snaplen-cut frames keep it)
    payload_off: np.ndarray  # int64, start of the TCP payload in ``data``
    payload_cap: np.ndarray  # int32, payload bytes actually captured (<= payload_len)
    ttl: np.ndarray  # uint8, IPv4 TTL or IPv6 hop limit
    ip_id: np.ndarray  # uint16, IPv4 identification (0 for IPv6)

    def __len__(self) -> int:
        return len(self.frame)


def take(pk: TcpPackets, rows: np.ndarray) -> TcpPackets:
    """The rows ``rows`` of ``pk`` (same packet buffer): one connection's packets, say."""
    return TcpPackets(
        pk.data,
        *(getattr(pk, f)[rows] for f in TcpPackets.__slots__ if f != "data"),  # type: ignore[attr-defined]
    )


DUPLICATE_WINDOW_NS = 1_000_000  # a copy of the same packet arrives within 1 ms


def duplicates(pk: TcpPackets, interface: np.ndarray | None) -> np.ndarray:
    """Rows that repeat the row before them: the same packet captured twice, on another
    interface (two interfaces of one pcapng) or after a hop (``-i any`` on a router sees
    it arriving and leaving, one TTL lower). Everything else must match, IPv4 ID and TCP
    window included, within ``DUPLICATE_WINDOW_NS``. A retransmission leaves by the same
    interface with the same TTL, so it is never taken for a copy. ``interface``: each
    row's, or None when all rows have the same one."""
    n = len(pk)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    # rows whose sequence and acknowledgement numbers repeat the row before are few: the
    # other columns are compared there only (all of them over every row: 14 ms of the
    # benchmark capture's 2.7 M packets)
    (before,) = np.nonzero((pk.seq[1:] == pk.seq[:-1]) & (pk.ack[1:] == pk.ack[:-1]))
    at = before + 1
    same = np.ones(len(at), dtype=bool)
    for col in (pk.src_lo, pk.dst_lo, pk.src_hi, pk.dst_hi, pk.sport, pk.dport, pk.flags,
                pk.payload_len, pk.ip_id, pk.window):  # fmt: skip
        same &= col[at] == col[before]
    same &= (pk.ts_ns[at] - pk.ts_ns[before]) <= DUPLICATE_WINDOW_NS
    hop = pk.ttl[at] != pk.ttl[before]
    same &= hop if interface is None else hop | (interface[at] != interface[before])
    out[at] = same
    return out


@dataclass(slots=True)
class IcmpError:
    """An ICMP/ICMPv6 destination-unreachable (or other error) that quotes a TCP header."""

    frame: int
    ts_ns: int
    ipver: int  # 4 or 6 (of the ICMP packet)
    sender: str  # address that sent the ICMP error
    type: int
    code: int
    # the quoted (original) TCP segment: it was sent src -> dst
    src: str
    dst: str
    sport: int
    dport: int
    seq: int


@dataclass
class DecodedBatch:
    tcp: TcpPackets
    icmp: list[IcmpError] = field(default_factory=list)
    non_tcp: int = 0  # IP packets of other protocols (UDP, ICMP echo, ...)
    non_ip: int = 0  # ARP, LLDP, ...
    unknown_link: dict[int, int] = field(default_factory=dict)  # LINKTYPE -> frames skipped
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (frame, what), bounded
    malformed_count: int = 0  # all malformed records of the batch (``malformed`` keeps 100)


MAX_MALFORMED_LISTED: Final = 100
_MAX_DEPTH: Final = 16  # nested encapsulations (Ethernet in GRE in IP in ...)
_MAX_TAGS: Final = 16  # VLAN / VN-Tag / PPPoE headers, MPLS labels or IPv6 extension headers

# ---------------------------------------------------------------------------------------
# Record outcomes (``_Decoder.st``)
_UNSET, _TCP, _NON_TCP, _NON_IP, _BAD, _LINK = 0, 1, 2, 3, 4, 5

# Why a record is malformed: message templates, "{}" gets the per-record detail value.
_WHY: Final[tuple[str, ...]] = (
    "not decoded",
    "Ethernet header truncated ({} bytes)",
    "802.1Q/QinQ tag truncated ({} bytes)",
    "VN-Tag truncated ({} bytes)",
    "PPPoE header truncated ({} bytes)",
    "MPLS label stack truncated ({} bytes)",
    "Linux cooked (SLL) header truncated ({} bytes)",
    "SLL2 header truncated ({} bytes)",
    "NULL/LOOP header truncated ({} bytes)",
    "raw IP packet with version nibble {}",
    "empty raw IP record",
    "IPv4 header truncated ({} bytes captured)",
    "IPv4 header runs past the enclosing packet ({} bytes left)",
    "IPv4 header with version {}",
    "IPv4 header length {} < 20",
    "IPv4 options truncated ({} bytes captured)",
    "IPv4 header length runs past the enclosing packet ({} bytes left)",
    "IPv4 total length {} < header length",
    "IPv6 header truncated ({} bytes captured)",
    "IPv6 header runs past the enclosing packet ({} bytes left)",
    "IPv6 header with version {}",
    "IPv6 extension header truncated ({} bytes captured)",
    "IPv6 extension header runs past the IP payload ({} bytes left)",
    "GRE header truncated ({} bytes captured)",
    "GRE header runs past the IP payload ({} bytes left)",
    "TCP header truncated ({} bytes captured)",
    "IP payload of {} bytes too short for a TCP header",
    "TCP data offset {} < 5",
    "TCP options run past the IP payload (header {} bytes)",
    "more than 16 nested encapsulations",
    "batch record lies outside the data buffer",
)
(
    _W_NONE,
    _W_ETH,
    _W_VLAN,
    _W_VNTAG,
    _W_PPPOE,
    _W_MPLS,
    _W_SLL,
    _W_SLL2,
    _W_NULL,
    _W_RAW_VER,
    _W_RAW_EMPTY,
    _W_IP4_TRUNC,
    _W_IP4_PAST,
    _W_IP4_VER,
    _W_IP4_IHL,
    _W_IP4_OPT_TRUNC,
    _W_IP4_OPT_PAST,
    _W_IP4_TOTLEN,
    _W_IP6_TRUNC,
    _W_IP6_PAST,
    _W_IP6_VER,
    _W_EXT_TRUNC,
    _W_EXT_PAST,
    _W_GRE_TRUNC,
    _W_GRE_PAST,
    _W_TCP_TRUNC,
    _W_TCP_SHORT,
    _W_TCP_DOFF,
    _W_TCP_OPTS,
    _W_DEEP,
    _W_OUTSIDE,
) = range(len(_WHY))

# What an ethertype announces.
(
    _E_OTHER,
    _E_IP4,
    _E_IP6,
    _E_VLAN,
    _E_VNTAG,
    _E_PBB,
    _E_FABRICPATH,
    _E_MPLS,
    _E_PPPOE,
    _E_ETHER,
) = range(10)
_ETHERTYPE_ACTION = np.zeros(65536, np.uint8)
_ETHERTYPE_ACTION[0x0800] = _E_IP4
_ETHERTYPE_ACTION[0x86DD] = _E_IP6
_ETHERTYPE_ACTION[[0x8100, 0x88A8, 0x9100, 0x9200]] = _E_VLAN
_ETHERTYPE_ACTION[0x8926] = _E_VNTAG
_ETHERTYPE_ACTION[0x88E7] = _E_PBB
_ETHERTYPE_ACTION[0x8903] = _E_FABRICPATH
_ETHERTYPE_ACTION[[0x8847, 0x8848]] = _E_MPLS
_ETHERTYPE_ACTION[0x8864] = _E_PPPOE
_ETHERTYPE_ACTION[0x6558] = _E_ETHER  # transparent Ethernet bridging (GRE)

# What an IP protocol / IPv6 next header announces, per IP version of the header.
_P_OTHER, _P_TCP, _P_ICMP, _P_IP4, _P_IP6, _P_GRE, _P_EXT, _P_FRAG, _P_AH = range(9)
_PROTO_ACTION_V4 = np.zeros(256, np.uint8)
_PROTO_ACTION_V4[[6, 1, 4, 41, 47, 51]] = [_P_TCP, _P_ICMP, _P_IP4, _P_IP6, _P_GRE, _P_AH]
_PROTO_ACTION_V6 = np.zeros(256, np.uint8)
_PROTO_ACTION_V6[[6, 58, 4, 41, 47, 51, 0, 43, 60, 44]] = [
    _P_TCP,
    _P_ICMP,
    _P_IP4,
    _P_IP6,
    _P_GRE,
    _P_AH,
    _P_EXT,
    _P_EXT,
    _P_EXT,
    _P_FRAG,
]


def _layout(size: int, **fields: tuple[str, int]) -> np.dtype:
    """A big-endian record layout: ``name=(format, offset)``, ``size`` bytes long."""
    return np.dtype(
        {
            "names": list(fields),
            "formats": [f for f, _ in fields.values()],
            "offsets": [o for _, o in fields.values()],
            "itemsize": size,
        }
    )


_U8 = _layout(1, v=("u1", 0))
_BE16 = _layout(2, v=(">u2", 0))
_AF = _layout(4, be=(">u4", 0), le=("<u4", 0))  # NULL / LOOP address family
_IP4_HDR = _layout(
    20,
    vihl=("u1", 0),
    tlen=(">u2", 2),
    ipid=(">u2", 4),
    frag=(">u2", 6),
    ttl=("u1", 8),
    proto=("u1", 9),
    src=(">u4", 12),
    dst=(">u4", 16),
)
_IP6_HDR = _layout(
    40,
    vtc=("u1", 0),
    plen=(">u2", 4),
    nh=("u1", 6),
    hlim=("u1", 7),
    src_hi=(">u8", 8),
    src_lo=(">u8", 16),
    dst_hi=(">u8", 24),
    dst_lo=(">u8", 32),
)
_TCP_HDR = _layout(
    20,
    sport=(">u2", 0),
    dport=(">u2", 2),
    seq=(">u4", 4),
    ack=(">u4", 8),
    doff=("u1", 12),
    flags=("u1", 13),
    win=(">u2", 14),
)
_V4MAPPED: Final = np.uint64(0xFFFF_0000_0000)
_M64: Final = (1 << 64) - 1
_ICMP4_ERRORS: Final = (3, 11, 12)
_ICMP6_ERRORS: Final = (1, 2, 3, 4)
_LINKTYPES: Final = frozenset({0, 1, 12, 14, 101, 108, 113, 228, 229, 276})


class _Rows:
    """A selection of records on their way down the headers: batch index, current offset
    in ``data``, end of the captured bytes and end of the enclosing IP packet (absolute
    offsets; the IP end starts as the frame's wire end)."""

    __slots__ = ("idx", "pos", "cap", "ipend")

    def __init__(
        self, idx: np.ndarray, pos: np.ndarray, cap: np.ndarray, ipend: np.ndarray
    ) -> None:
        self.idx = idx
        self.pos = pos
        self.cap = cap
        self.ipend = ipend

    def __len__(self) -> int:
        return self.idx.size

    def sub(self, m: np.ndarray | None) -> _Rows:
        if m is None:
            return self
        return _Rows(self.idx[m], self.pos[m], self.cap[m], self.ipend[m])

    def adv(self, k: np.ndarray | int, ipend: np.ndarray | None = None) -> _Rows:
        """The rows moved ``k`` bytes on (and optionally with a tighter IP end)."""
        return _Rows(self.idx, self.pos + k, self.cap, self.ipend if ipend is None else ipend)

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        if len(parts) == 1:
            return parts[0]
        return _Rows(
            np.concatenate([p.idx for p in parts]),
            np.concatenate([p.pos for p in parts]),
            np.concatenate([p.cap for p in parts]),
            np.concatenate([p.ipend for p in parts]),
        )


class _Ip:
    """Fields of the innermost IP header, aligned with a :class:`_Rows`. For IPv4 the
    ``*_hi`` halves are None (zero) and for IPv6 ``ip_id`` is None (zero)."""

    __slots__ = ("ver", "src_hi", "src_lo", "dst_hi", "dst_lo", "ttl", "ip_id")

    def __init__(
        self,
        ver: int,
        src_hi: np.ndarray | None,
        src_lo: np.ndarray,
        dst_hi: np.ndarray | None,
        dst_lo: np.ndarray,
        ttl: np.ndarray,
        ip_id: np.ndarray | None,
    ) -> None:
        self.ver = ver
        self.src_hi = src_hi
        self.src_lo = src_lo
        self.dst_hi = dst_hi
        self.dst_lo = dst_lo
        self.ttl = ttl
        self.ip_id = ip_id

    def sub(self, m: np.ndarray | None) -> _Ip:
        if m is None:
            return self

        def s(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[m]

        return _Ip(
            self.ver,
            s(self.src_hi),
            self.src_lo[m],
            s(self.dst_hi),
            self.dst_lo[m],
            self.ttl[m],
            s(self.ip_id),
        )


def _groups(codes: np.ndarray, nbins: int) -> list[tuple[int, np.ndarray | None]]:
    """Split a selection by small integer codes: ``[(code, row indices)]`` in code order,
    the indices increasing; ``[(code, None)]`` when every row has the same code."""
    if codes.size == 0:
        return []
    first = int(codes[0])
    same = codes == first
    if same.all():
        return [(first, None)]
    counts = np.bincount(codes, minlength=nbins)
    present = np.flatnonzero(counts)
    if present.size == 2:
        other = int(present[1] if present[0] == first else present[0])
        return sorted([(first, np.flatnonzero(same)), (other, np.flatnonzero(~same))])
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(counts[present])
    return [
        (int(c), order[e - k : e]) for c, k, e in zip(present, counts[present], ends, strict=True)
    ]


class _Decoder:
    """State of one ``decode_batch`` call: record outcomes and what was found."""

    def __init__(self, n: int, data: np.ndarray) -> None:
        self.data = data
        self._views: dict[int, np.ndarray] = {}
        self.st = np.zeros(n, np.uint8)  # outcome per record
        self.why = np.zeros(n, np.uint8)  # malformed: index into _WHY
        self.detail = np.zeros(n, np.int64)  # malformed: the value for _WHY's "{}"
        self.tcp: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self.icmp: list[tuple[_Rows, _Ip]] = []

    # -- byte access ---------------------------------------------------------------------
    def _gather(self, pos: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` bytes at each ``pos`` as one ``V<k>`` item each. Callers check first
        that ``pos + k`` lies within the record (hence within ``data``)."""
        if pos.size == 0:
            return np.empty(0, f"V{k}")
        view = self._views.get(k)
        if view is None:
            view = np.ndarray((self.data.size - k + 1,), f"V{k}", buffer=self.data, strides=(1,))
            self._views[k] = view
        return view[pos]

    def _read(self, r: _Rows, dt: np.dtype, at: int = 0) -> np.ndarray:
        """The structured ``dt`` record at ``pos + at`` of every row (the caller has
        checked that it lies within the record)."""
        return self._gather(r.pos + at if at else r.pos, dt.itemsize).view(dt)

    def _u8(self, r: _Rows, at: int = 0) -> np.ndarray:
        return self._read(r, _U8, at)["v"]

    def _be16(self, r: _Rows, at: int = 0) -> np.ndarray:
        return self._read(r, _BE16, at)["v"].astype(np.uint16)

    # -- outcomes ------------------------------------------------------------------------
    def _bad(self, idx: np.ndarray, why: int | np.ndarray, detail: np.ndarray | int = 0) -> None:
        if idx.size:
            self.st[idx] = _BAD
            self.why[idx] = why
            self.detail[idx] = detail

    def _other(self, idx: np.ndarray, inner: bool) -> None:
        self.st[idx] = _NON_TCP if inner else _NON_IP

    def _fit_mask(
        self, r: _Rows, k: np.ndarray | int, why_cap: int, why_ip: int | None = None
    ) -> np.ndarray | None:
        """Mask of the rows whose next ``k`` bytes are captured and inside the enclosing
        IP packet, None if that is all of them. The other rows are malformed for
        ``why_cap`` (cut by the capture) or ``why_ip`` (past the IP length; defaults to
        ``why_cap``), with the number of bytes that were left as detail."""
        end = np.minimum(r.cap, r.ipend)
        ok = r.pos + k <= end
        if ok.all():
            return None
        bad = ~ok
        left = (end - r.pos)[bad]
        past = (r.ipend < r.cap)[bad]  # the IP length, not the capture, ran out
        self._bad(r.idx[bad][past], why_cap if why_ip is None else why_ip, left[past])
        self._bad(r.idx[bad][~past], why_cap, left[~past])
        return ok

    def _fit(self, r: _Rows, k: np.ndarray | int, why_cap: int, why_ip: int | None = None) -> _Rows:
        """The rows of ``r`` that pass :meth:`_fit_mask`."""
        return r.sub(self._fit_mask(r, k, why_cap, why_ip))

    def _reject(self, r: _Rows, why: np.ndarray, detail: np.ndarray) -> np.ndarray | None:
        """Mark the rows with a non-zero ``why`` malformed; return the mask of the good
        rows (None when all are good)."""
        badm = why != 0
        if not badm.any():
            return None
        self._bad(r.idx[badm], why[badm], detail[badm])
        return ~badm

    # -- link layer ----------------------------------------------------------------------
    def link(self, r: _Rows, linktype: int) -> None:
        if linktype == 1:
            self.ether(r, False, 0)
        elif linktype == 113:  # type, ARPHRD, address length, address (8), protocol
            r = self._fit(r, 16, _W_SLL)
            self.ethertype(r.adv(16), self._be16(r, 14), False, 0)
        elif linktype == 276:  # protocol, reserved, ifindex, ARPHRD, type, len, address
            r = self._fit(r, 20, _W_SLL2)
            self.ethertype(r.adv(20), self._be16(r, 0), False, 0)
        elif linktype in (0, 108):
            r = self._fit(r, 4, _W_NULL)
            h = self._read(r, _AF)
            af = h["be"].astype(np.int64)
            if linktype == 0:  # the capturing host's byte order: take the reading that fits
                le = h["le"].astype(np.int64)
                af = np.where(np.isin(le, (2, 24, 28, 30)), le, af)
            et = np.where(af == 2, 0x0800, np.where(np.isin(af, (24, 28, 30)), 0x86DD, 0))
            self.ethertype(r.adv(4), et, False, 0)
        elif linktype == 228:
            self.ipv4(r, 0)
        elif linktype == 229:
            self.ipv6(r, 0)
        else:  # 101, 12, 14: raw IP, version in the first nibble
            r = self._fit(r, 1, _W_RAW_EMPTY)
            for code, m in _groups(self._u8(r) >> 4, 16):
                if code == 4:
                    self.ipv4(r.sub(m), 0)
                elif code == 6:
                    self.ipv6(r.sub(m), 0)
                else:
                    self._bad(r.sub(m).idx, _W_RAW_VER, code)

    def ether(self, r: _Rows, inner: bool, depth: int) -> None:
        """Ethernet header (dst, src, ethertype) at ``pos``. ``inner``: inside IP."""
        if depth > _MAX_DEPTH:
            self._bad(r.idx, _W_DEEP)
            return
        r = self._fit(r, 14, _W_ETH)
        self.ethertype(r.adv(14), self._be16(r, 12), inner, depth)

    def ethertype(self, r: _Rows, et: np.ndarray, inner: bool, depth: int) -> None:
        """``et`` announces what starts at ``pos``. ``inner``: an IP header was passed, so
        anything unknown counts as non-TCP rather than non-IP."""
        for _ in range(_MAX_TAGS):
            if not len(r):
                return
            again: list[tuple[_Rows, np.ndarray]] = []
            for code, m in _groups(_ETHERTYPE_ACTION[et], 16):
                g = r.sub(m)
                if code == _E_IP4:
                    self.ipv4(g, depth)
                elif code == _E_IP6:
                    self.ipv6(g, depth)
                elif code == _E_VLAN:  # TCI, ethertype
                    g = self._fit(g, 4, _W_VLAN)
                    again.append((g.adv(4), self._be16(g, 2)))
                elif code == _E_VNTAG:  # 4-byte tag, ethertype
                    g = self._fit(g, 6, _W_VNTAG)
                    again.append((g.adv(6), self._be16(g, 4)))
                elif code == _E_PPPOE:  # ver/type, code, session, length, PPP protocol
                    g = self._fit(g, 8, _W_PPPOE)
                    ppp = self._be16(g, 6)
                    inner_et = np.where(ppp == 0x0021, 0x0800, np.where(ppp == 0x0057, 0x86DD, 0))
                    # the PPPoE length (PPP protocol + payload) bounds the packet inside,
                    # as in Wireshark: pppoe-over-qinq.pcap has IP lengths that overrun it
                    inside = np.minimum(g.ipend, g.pos + 6 + self._be16(g, 4))
                    again.append((g.adv(8, inside), inner_et))
                elif code == _E_PBB:  # I-TAG, then a whole customer Ethernet header
                    self.ether(g.adv(4), inner, depth + 1)
                elif code == _E_FABRICPATH:  # FTag/TTL, then the original Ethernet frame
                    self.ether(g.adv(2), inner, depth + 1)
                elif code == _E_ETHER:
                    self.ether(g, inner, depth + 1)
                elif code == _E_MPLS:
                    self.mpls(g, inner, depth + 1)
                else:
                    self._other(g.idx, inner)
            if not again:
                return
            r = _Rows.concat([g for g, _ in again])
            et = again[0][1] if len(again) == 1 else np.concatenate([e for _, e in again])
        self._bad(r.idx, _W_DEEP)

    def mpls(self, r: _Rows, inner: bool, depth: int) -> None:
        """MPLS label stack at ``pos``: pop to bottom-of-stack, then guess the payload
        from its first nibble (4, 6, or 0 = pseudowire control word + Ethernet)."""
        if depth > _MAX_DEPTH:
            self._bad(r.idx, _W_DEEP)
            return
        for _ in range(4 * _MAX_TAGS):
            r = self._fit(r, 4, _W_MPLS)
            if not len(r):
                return
            bos = (self._u8(r, 2) & 1).astype(bool)
            r = r.adv(4)
            if bos.all():
                self._mpls_payload(r, inner, depth)
                return
            if bos.any():
                self._mpls_payload(r.sub(bos), inner, depth)
                r = r.sub(~bos)
        self._bad(r.idx, _W_DEEP)

    def _mpls_payload(self, r: _Rows, inner: bool, depth: int) -> None:
        r = self._fit(r, 1, _W_MPLS)
        for code, m in _groups(self._u8(r) >> 4, 16):
            g = r.sub(m)
            if code == 4:
                self.ipv4(g, depth)
            elif code == 6:
                self.ipv6(g, depth)
            elif code == 0:
                self.ether(g.adv(4), inner, depth + 1)
            else:
                self._other(g.idx, inner)

    # -- IP ------------------------------------------------------------------------------
    def ipv4(self, r: _Rows, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self._bad(r.idx, _W_DEEP)
            return
        r = self._fit(r, 20, _W_IP4_TRUNC, _W_IP4_PAST)
        if not len(r):
            return
        h = self._read(r, _IP4_HDR)
        vihl = h["vihl"]
        tot = h["tlen"].astype(np.int64)
        low = tot < 20  # bogus, or 0 (TSO)
        any_low = bool(low.any())
        if (vihl == 0x45).all():  # the usual header: version 4, no options
            hl: np.ndarray | int = 20  # inside the capture and the IP end: see _fit
            why = np.where(low & (tot != 0), _W_IP4_TOTLEN, 0) if any_low else None
        else:
            hl = (vihl & 15).astype(np.int64) * 4
            end = r.pos + hl
            why = np.where(tot.astype(bool) & (tot < hl), _W_IP4_TOTLEN, 0)
            why = np.where(end > r.ipend, _W_IP4_OPT_PAST, why)
            why = np.where(end > r.cap, _W_IP4_OPT_TRUNC, why)
            why = np.where(hl < 20, _W_IP4_IHL, why)
            why = np.where((vihl >> 4) != 4, _W_IP4_VER, why)
        if why is not None and why.any():
            detail = np.select(
                [why == _W_IP4_VER, why == _W_IP4_IHL, why == _W_IP4_TOTLEN],
                [vihl >> 4, (vihl & 15) * 4, tot],
                np.minimum(r.cap, r.ipend) - r.pos,
            )
            ok = self._reject(r, why, detail)
            r, h, tot = r.sub(ok), h[ok], tot[ok]
            if not isinstance(hl, int):
                hl = hl[ok]
        later = (h["frag"] & 0x1FFF) != 0  # not the first fragment: no TCP header here
        if later.any():
            self.st[r.idx[later]] = _NON_TCP
            keep = ~later
            r, h, tot = r.sub(keep), h[keep], tot[keep]
            if not isinstance(hl, int):
                hl = hl[keep]
        if any_low:  # total length 0 (TSO): up to the end of the enclosing packet / frame
            tot[tot == 0] = 1 << 40
        ipend = np.minimum(r.pos + tot, r.ipend)
        ip = _Ip(
            4,
            None,
            np.bitwise_or(h["src"], _V4MAPPED),
            None,
            np.bitwise_or(h["dst"], _V4MAPPED),
            h["ttl"],
            h["ipid"],
        )
        self.proto(r.adv(hl, ipend), h["proto"], ip, depth)

    def ipv6(self, r: _Rows, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self._bad(r.idx, _W_DEEP)
            return
        r = self._fit(r, 40, _W_IP6_TRUNC, _W_IP6_PAST)
        if not len(r):
            return
        h = self._read(r, _IP6_HDR)
        ver = h["vtc"] >> 4
        if (ver != 6).any():
            ok = self._reject(r, np.where(ver != 6, _W_IP6_VER, 0), ver)
            r, h = r.sub(ok), h[ok]
        plen = h["plen"].astype(np.int64)
        zero = plen == 0  # jumbogram (or TSO): up to the end of the enclosing packet
        if zero.any():
            plen[zero] = 1 << 40
        ipend = np.minimum(r.pos + 40 + plen, r.ipend)
        ip = _Ip(6, h["src_hi"], h["src_lo"], h["dst_hi"], h["dst_lo"], h["hlim"], None)
        self.proto(r.adv(40, ipend), h["nh"], ip, depth)

    def proto(self, r: _Rows, nh: np.ndarray, ip: _Ip, depth: int) -> None:
        """``nh`` (IP protocol / IPv6 next header) announces what starts at ``pos``."""
        table = _PROTO_ACTION_V4 if ip.ver == 4 else _PROTO_ACTION_V6
        for _ in range(_MAX_TAGS):
            if not len(r):
                return
            again: list[tuple[_Rows, np.ndarray, _Ip]] = []
            for code, m in _groups(table[nh], 16):
                g = r.sub(m)
                if code == _P_TCP:
                    self.tcp_header(g, ip.sub(m))
                elif code == _P_ICMP:
                    self.st[g.idx] = _NON_TCP
                    self.icmp.append((g, ip.sub(m)))
                elif code == _P_IP4:
                    self.ipv4(g, depth + 1)
                elif code == _P_IP6:
                    self.ipv6(g, depth + 1)
                elif code == _P_GRE:
                    self.gre(g, depth + 1)
                elif code in (_P_EXT, _P_AH, _P_FRAG):
                    again.append(self._ext_header(g, code, ip.sub(m)))
                else:
                    self.st[g.idx] = _NON_TCP
            if not again:
                return
            if len(again) > 1:  # different extension headers side by side: one at a time
                for g, gnh, gip in again:
                    self.proto(g, gnh, gip, depth + 1)
                return
            r, nh, ip = again[0]
        self._bad(r.idx, _W_DEEP)

    def _ext_header(self, r: _Rows, code: int, ip: _Ip) -> tuple[_Rows, np.ndarray, _Ip]:
        """Step over one IPv6 extension header (or AH); return the rows that go on, their
        next-header values and IP fields."""
        m = self._fit_mask(r, 8 if code == _P_FRAG else 2, _W_EXT_TRUNC, _W_EXT_PAST)
        r, ip = r.sub(m), ip.sub(m)
        nh = self._u8(r)
        if code == _P_FRAG:
            later = (self._be16(r, 2) >> 3) != 0  # not the first fragment
            if later.any():
                self.st[r.idx[later]] = _NON_TCP
                r, ip, nh = r.sub(~later), ip.sub(~later), nh[~later]
            length = np.full(len(r), 8, np.int64)
        elif code == _P_AH:
            length = (self._u8(r, 1).astype(np.int64) + 2) * 4
        else:
            length = (self._u8(r, 1).astype(np.int64) + 1) * 8
        m = r.pos + length <= r.ipend  # need not be captured: what follows is checked
        if not m.all():
            self._bad(r.idx[~m], _W_EXT_PAST, (r.ipend - r.pos)[~m])
            r, ip, nh, length = r.sub(m), ip.sub(m), nh[m], length[m]
        return r.adv(length), nh, ip

    def gre(self, r: _Rows, depth: int) -> None:
        """GRE version 0 without routing (RFC 2784/2890); anything else is non-TCP."""
        if depth > _MAX_DEPTH:
            self._bad(r.idx, _W_DEEP)
            return
        r = self._fit(r, 4, _W_GRE_TRUNC, _W_GRE_PAST)
        if not len(r):
            return
        flags = self._be16(r)
        simple = (flags & 0x4007) == 0  # no routing, version 0
        if not simple.all():
            self.st[r.idx[~simple]] = _NON_TCP
            r, flags = r.sub(simple), flags[simple]
        # checksum + reserved, key, sequence number: 4 bytes each when flagged
        hl = 4 + 4 * (((flags >> 15) & 1) + ((flags >> 13) & 1) + ((flags >> 12) & 1))
        m = self._fit_mask(r, hl, _W_GRE_TRUNC, _W_GRE_PAST)
        if m is not None:
            r, hl = r.sub(m), hl[m]
        self.ethertype(r.adv(hl), self._be16(r, 2), True, depth)

    # -- TCP -----------------------------------------------------------------------------
    def tcp_header(self, r: _Rows, ip: _Ip) -> None:
        avail = np.minimum(r.cap, r.ipend)
        ok = r.pos + 20 <= avail
        if not ok.all():
            bad = ~ok
            room = (r.ipend - r.pos)[bad]  # what the IP length leaves for TCP
            short = room < 20
            self._bad(r.idx[bad][short], _W_TCP_SHORT, room[short])
            self._bad(r.idx[bad][~short], _W_TCP_TRUNC, (r.cap - r.pos)[bad][~short])
            r, ip, avail = r.sub(ok), ip.sub(ok), avail[ok]
        if not len(r):
            return
        h = self._read(r, _TCP_HDR)
        hl = (h["doff"] >> 2) & 0x3C  # data offset in bytes
        start = r.pos + hl
        if ((hl < 20) | (start > r.ipend)).any():
            why = np.where(hl < 20, _W_TCP_DOFF, np.where(start > r.ipend, _W_TCP_OPTS, 0))
            ok = self._reject(r, why, np.where(hl < 20, hl // 4, hl))
            r, ip, h, start, avail = r.sub(ok), ip.sub(ok), h[ok], start[ok], avail[ok]
        self.st[r.idx] = _TCP
        m = len(r)
        captured = avail - start  # < 0 when the snaplen cut into the TCP options
        np.maximum(captured, 0, out=captured)

        def u64(a: np.ndarray | None) -> np.ndarray:
            return np.zeros(m, np.uint64) if a is None else a.astype(np.uint64, copy=False)

        cols = {
            "ipver": np.full(m, ip.ver, np.uint8),
            "src_hi": u64(ip.src_hi),
            "src_lo": u64(ip.src_lo),
            "dst_hi": u64(ip.dst_hi),
            "dst_lo": u64(ip.dst_lo),
            "sport": h["sport"].astype(np.uint16),
            "dport": h["dport"].astype(np.uint16),
            "seq": h["seq"].astype(np.uint32),
            "ack": h["ack"].astype(np.uint32),
            "flags": h["flags"].astype(np.uint8),
            "window": h["win"].astype(np.uint16),
            "payload_len": (r.ipend - start).astype(np.int32),
            "payload_off": np.minimum(start, r.cap),
            "payload_cap": captured.astype(np.int32),
            "ttl": ip.ttl.astype(np.uint8),
            "ip_id": np.zeros(m, np.uint16) if ip.ip_id is None else ip.ip_id.astype(np.uint16),
        }
        self.tcp.append((r.idx, cols))

    # -- ICMP errors ---------------------------------------------------------------------
    def icmp_errors(self, batch: RecordBatch) -> list[IcmpError]:
        """The ICMP/ICMPv6 errors among the ICMP packets found, with the TCP segment they
        quote (those quoting anything else are left out), in capture order."""
        found: list[tuple[int, IcmpError]] = []
        frames, stamps, data = batch.frame, batch.ts_ns, self.data
        for r, ip in self.icmp:
            # type, code, checksum, 4 bytes, then at least 20 bytes of IP and 8 of TCP
            m = r.pos + 36 <= np.minimum(r.cap, r.ipend)
            r, ip = r.sub(m), ip.sub(m)
            m = np.isin(self._u8(r), _ICMP4_ERRORS if ip.ver == 4 else _ICMP6_ERRORS)
            r, ip = r.sub(m), ip.sub(m)
            if not len(r):
                continue
            hi = [0] * len(r) if ip.src_hi is None else ip.src_hi.tolist()
            ends = np.minimum(r.cap, r.ipend).tolist()
            for k, p, e, h, lo in zip(
                r.idx.tolist(), r.pos.tolist(), ends, hi, ip.src_lo.tolist(), strict=True
            ):
                quoted = _quoted_tcp(data[p + 8 : min(e, p + 8 + 512)].tobytes())
                if quoted is not None:
                    err = IcmpError(
                        int(frames[k]),
                        int(stamps[k]),
                        ip.ver,
                        addr_str(ip.ver, h, lo),
                        int(data[p]),
                        int(data[p + 1]),
                        *quoted,
                    )
                    found.append((k, err))
        found.sort(key=lambda t: t[0])
        return [e for _, e in found]


def _quoted_tcp(q: bytes) -> tuple[str, str, int, int, int] | None:
    """Source, destination, ports and sequence number of the TCP segment quoted in an
    ICMP error (its IP header and at least 8 bytes of TCP), or None."""
    if not q:
        return None
    ver = q[0] >> 4
    if ver == 4:
        hl = (q[0] & 15) * 4
        if hl < 20 or len(q) < hl + 8 or q[9] != 6:
            return None
        if struct.unpack_from("!H", q, 6)[0] & 0x1FFF:  # not a first fragment
            return None
        src, dst, off = ".".join(map(str, q[12:16])), ".".join(map(str, q[16:20])), hl
    elif ver == 6:
        if len(q) < 48:
            return None
        nh, off = q[6], 40
        for _ in range(_MAX_TAGS):
            if nh == 6 or off + 8 > len(q):
                break
            if nh in (0, 43, 60):
                nh, off = q[off], off + (q[off + 1] + 1) * 8
            elif nh == 51:
                nh, off = q[off], off + (q[off + 1] + 2) * 4
            elif nh == 44:
                if struct.unpack_from("!H", q, off + 2)[0] >> 3:
                    return None
                nh, off = q[off], off + 8
            else:
                return None
        if nh != 6 or len(q) < off + 8:
            return None
        src, dst = _ip6_text(q[8:24]), _ip6_text(q[24:40])
    else:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", q, off)
    return src, dst, sport, dport, seq


def _ip6_text(packed: bytes) -> str:
    """RFC 5952 text, as ``ipaddress.IPv6Address(...).compressed`` has it (the C
    formatter is used unless it would write a dotted IPv4 tail)."""
    text = socket.inet_ntop(socket.AF_INET6, packed)
    return ipaddress.IPv6Address(packed).compressed if "." in text else text


_TCP_FIELDS: Final[dict[str, type]] = {
    "ipver": np.uint8,
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "sport": np.uint16,
    "dport": np.uint16,
    "seq": np.uint32,
    "ack": np.uint32,
    "flags": np.uint8,
    "window": np.uint16,
    "payload_len": np.int32,
    "payload_off": np.int64,
    "payload_cap": np.int32,
    "ttl": np.uint8,
    "ip_id": np.uint16,
}


def _as_u8(data: object) -> np.ndarray:
    """``data`` as a flat, contiguous uint8 array (no copy for the usual uint8 array)."""
    a = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)  # type: ignore[arg-type]
    if a.dtype != np.uint8:
        a = a.view(np.uint8) if a.dtype.itemsize == 1 else np.frombuffer(a.tobytes(), np.uint8)
    return np.ascontiguousarray(a.reshape(-1))


def decode_batch(batch: RecordBatch) -> DecodedBatch:
    """Decode every record of ``batch``; never raises on packet bytes."""
    data = _as_u8(batch.data)
    n = len(batch)
    kern = compiled_kernels() if n else None
    pre = _take_predecoded(batch) if kern is not None else None
    if pre is not None and pre.st.all():  # the reader's walk decoded every record
        return _all_predecoded(batch, data, pre)
    dec = _Decoder(n, data)
    size = data.size
    off = np.asarray(batch.offset, np.int64)
    caplen = np.asarray(batch.caplen)
    linktype = np.asarray(batch.linktype)
    cap = off + caplen
    wire = off + np.maximum(caplen, np.asarray(batch.wirelen))  # wire length >= caplen
    start = off
    if n and (off.min() < 0 or caplen.min() < 0 or cap.max() > size):
        inside = (off >= 0) & (caplen >= 0) & (cap <= size)
        start = np.clip(off, 0, size)
        cap = np.where(inside, cap, start)
        wire = np.where(inside, wire, start)
        dec._bad(np.flatnonzero(~inside), _W_OUTSIDE)
        keep: np.ndarray | None = inside
    else:
        keep = None

    every = _Rows(np.arange(n), start, cap, wire)
    rest: np.ndarray | None = None  # rows the compiled kernel left to the code below
    if kern is not None and linktype.dtype == np.uint16 and cap.dtype == wire.dtype == np.int64:
        if keep is not None:
            pre = None  # cannot be (the reader's records lie inside its buffer); be safe
        rest = _decode_compiled(kern, dec, pre, data, start, cap, wire, linktype, keep)
    groups = (
        _groups(linktype, int(linktype.max()) + 1 if n else 1)
        if rest is None
        else _groups(linktype[rest], int(linktype.max()) + 1)
    )
    for lt, m in groups:
        if rest is not None:
            m = rest if m is None else rest[m]
        elif keep is not None:  # leave out the records outside the buffer
            m = np.flatnonzero(keep) if m is None else m[keep[m]]
        rows = every.sub(m)
        if lt not in _LINKTYPES:
            dec.st[rows.idx] = _LINK
            continue
        dec.link(rows, lt)

    counts = np.bincount(dec.st, minlength=6)
    if counts[_UNSET]:  # cannot happen; keeps the accounting exact regardless
        dec._bad(np.flatnonzero(dec.st == _UNSET), _W_NONE)
        counts = np.bincount(dec.st, minlength=6)
    listed = np.flatnonzero(dec.st == _BAD)[:MAX_MALFORMED_LISTED] if counts[_BAD] else []
    malformed = [(int(batch.frame[k]), _WHY[dec.why[k]].format(int(dec.detail[k]))) for k in listed]
    unknown: dict[int, int] = {}
    if counts[_LINK]:
        lts, nums = np.unique(linktype[dec.st == _LINK], return_counts=True)
        unknown = {int(a): int(b) for a, b in zip(lts, nums, strict=True)}

    return DecodedBatch(
        tcp=_assemble_tcp(dec, batch, data),
        icmp=dec.icmp_errors(batch),
        non_tcp=int(counts[_NON_TCP]),
        non_ip=int(counts[_NON_IP]),
        unknown_link=unknown,
        malformed=malformed,
        malformed_count=int(counts[_BAD]),
    )


def _readonly(a: np.ndarray) -> np.ndarray:
    """A contiguous read-only view (the kernel's signature says read-only)."""
    return _readonly_view(np.ascontiguousarray(a))


def _writable(a: np.ndarray) -> np.ndarray:
    """A contiguous writable array (the kernel's signature says so; it does not write)."""
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def _take_predecoded(batch: RecordBatch) -> Predecoded | None:
    """What the reader's compiled walk decoded of ``batch``, if it is still the batch the
    walk made (same data and record columns); taken once, as its columns are handed out."""
    pre = batch._pre
    if pre is None:
        return None
    batch._pre = None
    key = (batch.data, batch.offset, batch.caplen, batch.wirelen, batch.linktype)
    if len(pre.st) != len(batch) or not all(a is b for a, b in zip(pre.key, key, strict=True)):
        return None
    return pre


def _all_predecoded(batch: RecordBatch, data: np.ndarray, pre: Predecoded) -> DecodedBatch:
    """``decode_batch`` when the walk decoded every record (TCP, non-TCP or non-IP): what
    the general code would assemble from that, without running it."""
    n = len(batch)
    idx, cols = _trimmed(pre.idx, pre.cols, n)
    counts = np.bincount(pre.st, minlength=4)
    if idx.size == n:
        frame = np.array(batch.frame, np.int64)
        ts = np.array(batch.ts_ns, np.int64)
    else:
        frame = np.asarray(batch.frame, np.int64)[idx]
        ts = np.asarray(batch.ts_ns, np.int64)[idx]
    return DecodedBatch(
        tcp=TcpPackets(data, frame, ts, *cols),
        non_tcp=int(counts[_NON_TCP]),
        non_ip=int(counts[_NON_IP]),
    )


def _trimmed(
    idx: np.ndarray, cols: tuple[np.ndarray, ...], n: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The kernel's TCP rows; copied when they fill little of their n-row buffers, so a
    mostly non-TCP batch does not keep the whole buffers alive."""
    if idx.size < n * 7 // 8:
        return idx.copy(), tuple(c.copy() for c in cols)
    return idx, cols


def _decode_compiled(
    kern: object,
    dec: _Decoder,
    pre: Predecoded | None,
    data: np.ndarray,
    start: np.ndarray,
    cap: np.ndarray,
    wire: np.ndarray,
    linktype: np.ndarray,
    keep: np.ndarray | None,
) -> np.ndarray | None:
    """Take the compiled decoding of the rows with a common, clean layout: their outcome
    goes into ``dec.st`` and their TCP rows become one chunk of ``dec.tcp``, exactly as
    the vectorised code would make them. ``pre``: what the reader's walk decoded already;
    otherwise the kernel runs here. Returns the rows left for the vectorised code
    (increasing), or None when the kernel could not run (then nothing was changed)."""
    n = start.size
    if pre is not None:
        st, idx, cols = pre.st, pre.idx, pre.cols
    else:
        st, idx, cols = _tcp_buffers(n)
        inside = np.empty(0, np.uint8) if keep is None else keep.view(np.uint8)
        try:
            t = kern.decode_common(  # type: ignore[attr-defined]
                _readonly(data),
                _writable(start),
                _writable(cap),
                _writable(wire),
                linktype.astype(np.int64),
                _readonly(inside),
                st,
                idx,
                cols,
            )
        except Exception:
            return None
        idx, cols = idx[:t], tuple(c[:t] for c in cols)
    idx, cols = _trimmed(idx, cols, n)
    np.bitwise_or(dec.st, st, out=dec.st)  # the kernel skipped the rows already marked
    if idx.size:
        dec.tcp.append((idx, dict(zip(_TCP_FIELDS, cols, strict=True))))
    return np.flatnonzero(dec.st == _UNSET)


def _assemble_tcp(dec: _Decoder, batch: RecordBatch, data: np.ndarray) -> TcpPackets:
    """The TCP rows of all selections that reached TCP, in record (capture) order."""
    chunks = dec.tcp
    if len(chunks) == 1 and _increasing(chunks[0][0]):
        idx, cols = chunks[0]
    else:  # several selections reached TCP: merge their rows back into record order
        idx = np.concatenate([c[0] for c in chunks]) if chunks else np.empty(0, np.int64)
        order = np.argsort(idx, kind="stable")  # merges the sorted runs
        idx = idx[order]
        cols = {
            k: np.concatenate([c[1][k] for c in chunks])[order] if chunks else np.empty(0, t)
            for k, t in _TCP_FIELDS.items()
        }
    if idx.size == len(batch):  # every record is a TCP row
        frame = np.array(batch.frame, np.int64)
        ts = np.array(batch.ts_ns, np.int64)
    else:
        frame = np.asarray(batch.frame, np.int64)[idx]
        ts = np.asarray(batch.ts_ns, np.int64)[idx]
    return TcpPackets(data=data, frame=frame, ts_ns=ts, **cols)


def _increasing(a: np.ndarray) -> bool:
    return a.size < 2 or bool((a[1:] > a[:-1]).all())


def addr_halves(text: str) -> tuple[int, int]:
    """The two halves of an address given as text: the inverse of ``addr_str``."""
    addr = ipaddress.ip_address(text)
    value = int(addr) | (0xFFFF << 32) if addr.version == 4 else int(addr)
    return value >> 64, value & _M64


def addr_str(ipver: int, hi: int, lo: int) -> str:
    """Text form of an address from its two halves (IPv4 dotted, IPv6 compressed)."""
    hi, lo = int(hi) & _M64, int(lo) & _M64
    if int(ipver) == 4:
        return f"{(lo >> 24) & 255}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    return _ip6_text(((hi << 64) | lo).to_bytes(16, "big"))
