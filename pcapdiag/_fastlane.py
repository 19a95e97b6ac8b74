"""The fast lane of connection tracking: ordinary connections without per-packet Python.

Why
    The exact tracker (``connections.Tracker``) costs 15–20 µs of Python a packet, and
    a busy server's capture is mostly connections with nothing to say: handshake, a few
    whole HTTP/1.x requests each answered in full, two FINs. A compiled walk (numba)
    follows every connection against a strict template of such a connection, with its
    per-connection state in numpy arrays. At its end, the connection stays a row of
    columns (``Block``): the JSON output renders its line from them with a compiled
    template (``Lines``, ``_render``), and a record is made from them only when one is
    read (``record``, the machine's path through the template written out). Anything
    outside the template hands the connection's 4-tuple (by its symmetric 64-bit hash)
    to the exact tracker, which sees its packets in a second pass over the capture from
    the connection's first frame (a window, ``WN_*``; from the capture's start where no
    connection was followed) until the client's next fresh SYN, where the lane follows
    the 4-tuple again; the tracker finishes the connection there and starts none
    (``analysis._Handed``; where it would not start one, the set is tracked again with
    every packet of those 4-tuples). Records both lanes made (a 4-tuple shared by two)
    come with the same first frame; the merge keeps the exact one. Tests compare both
    lanes on every real capture here, record by record and line by line.

The template (anything else: the exact tracker)
    A client SYN without payload, then the SYN-ACK (acknowledging it) within 5 s; then
    only ACK-flagged segments, each in sequence or a whole retransmission of data
    already sent (no reordering, partial overlap, window probe or keep-alive probe),
    captured whole, never a zero window, no RST, no URG, no silence over 100 s while
    open nor over 5 s once a side closed (Zeek would start a new row, and the exact
    tracker's sweeps come into play); payload only before the first FIN, starting with
    the client; at most one FIN per side; both FINs seen, after them only pure ACKs; or
    instead of any FIN the client's RST, in sequence, on a connection it acknowledged,
    with nothing after it (``client_reset``, Zeek's ``RSTO``; nothing outstanding: a
    request unanswered or a response cut short leaves the template); or one request more,
    a whole segment, that nothing but the server's RST answers, in sequence and with the
    TTL of the server's other packets (Zeek's ``RSTR``): after the server's FIN (and no
    FIN of the client's) that is the keep-alive race (``server_close_after_request``),
    on an open connection a reset (``server_reset``). A new SYN starts the next
    connection on the 4-tuple. Data turns alternate client, server: each client turn is
    one segment holding one whole request head without a body (not CONNECT, no
    upgrade), each server turn one final response whose first segment holds its whole
    head and whose Content-Length (or no body: HEAD, 204, 304) accounts for the turn's
    bytes exactly; at most ``MAX_TURNS`` turns. Heads must be ones the HTTP observer
    takes by its plain fast path (``_http._whole_head``): each turn's first segment is
    keyed by a 128-bit hash of what that check reads (``_fastlane_kernels._head_key``)
    and parsed in Python once per key, with the observer's own parsers (``_Verdicts``).

Attempts (``Attempts``)
    A client SYN that nothing answers (sent again with its sequence number, at most
    ``MAX_SYNS`` times, each within 5 s of the one before), or that the server's RST
    answers (acknowledging it): ``syn_timeout`` and ``refused``, Zeek's ``S0`` and
    ``REJ``. A SYN flood is millions of them; handed to the exact tracker they cost
    ~13 µs and a few KB each while open. The lane keeps an unanswered one until it has
    been as quiet as the exact tracker waits (``Tracker.sweep``: 240 s, or 3 s while
    more than ``PRESSURE`` connections are followed), then lets it go as one row of
    ``A_*`` columns (in a file once they are many); the merge folds them into the exact
    tracker's rows (``analysis._attempt_folds``), replaying only the few reported one by
    one (``attempt_record``). An attempt a window covers (a packet of its 4-tuple came
    after the lane let it go) is left to the exact tracker, which was fed it whole.

numba is optional: without it (or with ``PCAPDIAG_FASTLANE=0``) every connection takes
the exact tracker. It is imported only for captures big enough to pay for its import and
compilation (``worth_it``).
"""

from __future__ import annotations

import json
import os
from itertools import repeat
from json.encoder import encode_basestring as _es
from operator import itemgetter
from typing import Any

import numpy as np

from pcapdiag import _arrays, _http, _resident
from pcapdiag._columns import Column, settle
from pcapdiag.classify import Ev, Side
from pcapdiag.connections import (
    IDLE_MIN_NS,
    IDLE_RTT_FACTOR,
    LIVE_PRESSURE,
    MAX_EVENTS,
    QUIET_AFTER_END_NS,
    QUIET_SYN_ONLY_NS,
    QUIET_SYN_PRESSURE_NS,
    Connection,
    _addr,
    _clip,
    _looks_like_http,
)
from pcapdiag.decode import IcmpError, TcpPackets, addr_halves
from pcapdiag.explain import (
    CAUSES,
    RACE_CAUSE,
    REMOTE_DISCONNECTED,
    RESET_AWAITING,
    ConnectionRecord,
    _at,
    _endpoint,
    _s,
    _shared,
    explain,
    request_hash,
    stale_note,
    timeout_errors,
    truncated_errors,
    truncated_size,
)

NS = 1_000_000_000
MAX_TURNS = 4096  # data turns followed per connection (2,048 request/response exchanges)
CHUNK = 8  # turns are kept in chunks of this many, linked, from one pool
GAP_NS = 5 * NS  # longest silence the template allows around the handshake and the FINs
# ... and while the connection is open: Zeek starts a new row after 300 s of silence, the
# exact tracker lets a half-closed connection go after 120 s; both stay far away
IDLE_MAX_NS = 100 * NS
MIN_BYTES = 64 << 20  # captures smaller than this: the exact tracker alone
MIN_BYTES_BUILT = 16 << 20  # ... when the kernels are built ahead of time (``_native``)
OUT_ROWS = 4096  # connections a kernel's call hands out at most (``Lane.out``)

# Slot columns (int64): one row per connection being followed. What a sweep reads of
# every slot comes first, in one cache line (a sweep read four lines a slot before:
# 0.07 s of a run).
(K_USED, K_LAST_TS, K_PHASE, K_CFIN_FRAME, K_SFIN_FRAME, K_HASH, K_CHI, K_CLO, K_SHI,
 K_SLO, K_CPORT, K_SPORT, K_IPVER, K_SYN_TS, K_SYN_FRAME, K_ISN, K_SYNACK_TS,
 K_SYNACK_FRAME, K_SISN, K_ACK_TS, K_CNEXT, K_SNEXT, K_LAST_FRAME, K_END_TS, K_CPKTS,
 K_SPKTS, K_CBYTES, K_SBYTES, K_CTTL, K_STTL, K_HIST, K_NHIST, K_CFIN_TS, K_SFIN_TS,
 K_TURN, K_NTURNS, K_CLDATA_TS, K_CLDATA_FRAME, K_SLDATA_TS, K_SLDATA_FRAME,
 K_CFDATA_FRAME, K_SFDATA_FRAME, K_TFIRST, K_TLAST, K_TOFF, K_CRETX, K_SRETX,
 K_RST_FRAME, K_RST_TS, K_RST_TTL, K_LATE_FRAME, K_LATE_TS) = range(52)  # fmt: skip
NF = 52
# Turn columns: direction (0 client, 1 server), first segment's frame and time, bytes,
# last segment's frame and time, segments.
# and its key (``_fastlane_kernels._head_key``: two hashes) and captured bytes
T_DIR, T_FRAME, T_TS, T_BYTES, T_LFRAME, T_LTS, T_NSEG, T_H1, T_H2, T_HLEN = range(10)
NT = 10
# Phases: the handshake, open, both FINs seen, the RST that ended it seen (nothing may
# follow it but the next connection's SYN)
P_SYN, P_EST, P_DONE, P_RST = 1, 2, 3, 4
# An attempt (a SYN never answered, or answered by the server's RST) keeps its SYNs sent
# again as turns (frame and time): this many at most. It is done once as quiet as the
# exact tracker waits (``Tracker.sweep``), shorter while more connections than
# ``PRESSURE`` are followed (a flood)
MAX_SYNS = 2 * CHUNK
SYN_QUIET_NS, SYN_PRESSURE_NS, PRESSURE = QUIET_SYN_ONLY_NS, QUIET_SYN_PRESSURE_NS, LIVE_PRESSURE
# Zeek history letters, as codes packed 4 bits each into K_HIST in order of appearance
LETTERS = "ShADadFfTtRr"
# ctl: free slots, emitted rows, head rows, status, free turn chunks, emitted turns,
# windows opened, windows the lane ended (the 4-tuple taken back at a fresh SYN)
C_NFREE, C_NOUT, C_NHEADS, C_STATUS, C_TFREE, C_NOUTT, C_NWIN, C_RESUMED = range(8)
# ... and the hash tables' counts (``_fastlane_kernels``): keys held, rows deleted
C_TABLE, C_TABLE_GONE, C_FLAGGED, C_FLAGGED_GONE = range(8, 12)
# The hash tables' rows (``_fastlane_kernels``): a free one's value, a deleted one's
EMPTY, GONE = -1, -2
C_WHY = 16  # ctl[C_WHY + W_...]: connections handed to the exact tracker, by reason
# Why a connection left the fast lane (``Lane.why``)
WHY = (
    "4-tuple shared (hash collision)",
    "time went back, or a silence too long",
    "RST or URG",
    "zero window",
    "SYN after both FINs",
    "not a pure ACK after both FINs",
    "handshake",
    "out of sequence",
    "FIN retransmitted",
    "data after a FIN",
    "server spoke first or too many turns",
    "open at the end",
    "ICMP error",
    "no SYN seen (mid-stream)",
    "HTTP outside the template",
    "a packet after the RST that ended it",
    "a packet after a request sent after the server's FIN",
)
(W_TUPLE, W_TIME, W_RSTURG, W_WINDOW, W_DONE_SYN, W_DONE_SEG, W_HANDSHAKE, W_SEQ,
 W_FIN_TWICE, W_DATA_CLOSED, W_TURNS, W_OPEN, W_ICMP, W_MIDSTREAM, W_HTTP, W_AFTER_RST,
 W_AFTER_LATE) = range(17)  # fmt: skip
ST_DONE, ST_GROW, ST_FULL = 0, 1, 2
# Windows (``Lane.wins``, one row each): the frames of a 4-tuple the exact tracker is fed,
# from the first frame of the connection that left the template (0: from the capture's
# start) to the client's fresh SYN at which the lane took the 4-tuple back (-1: to the
# end); while open, whether that SYN may still end it, the 4-tuple and first SYN's
# sequence number that SYN must differ from, and the latest time of its packets.
(WN_KEY, WN_START, WN_END, WN_CAN, WN_ISN, WN_CHI, WN_CLO, WN_CPORT, WN_SHI, WN_SLO,
 WN_SPORT, WN_LAST) = range(12)  # fmt: skip
NWN = 12
# A window is not ended once its 4-tuple was silent this long by the capture's clock: the
# exact tracker may have finished the connection (``Tracker.sweep``: its shortest wait)
# and made the next packet one of its own, which a fresh SYN does not end.
WIN_QUIET_NS = min(QUIET_SYN_PRESSURE_NS, QUIET_AFTER_END_NS)

_kernels: Any = None
# Tests set this: records are then made by replaying through Connection and explain()
ORACLE = False


def enabled() -> bool | None:
    """True/False when ``PCAPDIAG_FASTLANE`` forces it (1/0), else None (size decides)."""
    v = os.environ.get("PCAPDIAG_FASTLANE")
    if v == "0":
        return False
    if v == "1":
        return True
    return None


def worth_it(total_bytes: int) -> bool:
    """Use the fast lane for this much capture? numba's import and loading the compiled
    kernels from its cache (~0.6 s) pay off from a few hundred thousand packets; the
    kernels built ahead of time (``_native``: ~10 ms) from a few tens of thousands (a
    40 MB slice of the benchmark capture, 63,604 packets: 0.99 s without the lane,
    0.29–0.43 s with it; 12 MB: 0.33 s either way)."""
    forced = enabled()
    if forced is not None:
        return forced and kernels() is not None
    from pcapdiag import _native

    least = MIN_BYTES_BUILT if _native.ready() else MIN_BYTES
    return total_bytes >= least and kernels() is not None


def kernels() -> Any:
    """The compiled kernels, or None when numba is unavailable."""
    global _kernels
    if _kernels is None:
        try:
            from pcapdiag import _native

            _kernels = _native.kernels("_fastlane_kernels")
            _warm()
            _resident.hand_back()  # LLVM's pages: loading is done (``_resident``)
        except Exception:  # no numba, or it cannot compile here: the exact tracker only
            _kernels = False
    return _kernels or None


def _warm(readonly: bool = False) -> None:
    """Compile (or load from numba's cache) every kernel for the types analysis passes,
    so that a failure shows here, where it means "no fast lane", not mid-capture. The
    packets' bytes are writable, or ``readonly`` as a mapped file's (``_native`` builds
    for both)."""
    z = np.zeros(1, np.int64)
    data = np.zeros(64, np.uint8)
    data.flags.writeable = not readonly
    pk = TcpPackets(
        data=data, frame=z, ts_ns=z, ipver=np.array([4], np.uint8),
        src_hi=z.view(np.uint64), src_lo=z.view(np.uint64), dst_hi=z.view(np.uint64),
        dst_lo=z.view(np.uint64), sport=np.zeros(1, np.uint16), dport=np.zeros(1, np.uint16),
        seq=np.zeros(1, np.uint32), ack=np.zeros(1, np.uint32), flags=np.zeros(1, np.uint8),
        window=np.zeros(1, np.uint16), payload_len=np.zeros(1, np.int32), payload_off=z,
        payload_cap=np.zeros(1, np.int32), ttl=np.zeros(1, np.uint8), ip_id=np.zeros(1, np.uint16),
    )  # fmt: skip
    lane = Lane(_Discard(), 0, "", 0)
    lane.feed(pk, packet_hashes(pk), 0)
    lane.flag_icmp(IcmpError(0, 0, 4, "10.0.0.1", 3, 3, "10.0.0.1", "10.0.0.2", 1, 2, 0))
    lane._reject(np.zeros(NF, np.int64))
    lane.close()
    from pcapdiag import _render  # the JSON lines' kernel (``Lines``)

    _render.run(_program()[0], np.zeros((1, NJ), np.int64), *_render.table(["x"] * 20), 12)


def new_table(rows: int) -> np.ndarray:
    """An empty hash table of the kernels (``_fastlane_kernels._find``): ``rows`` rows of
    (key, value), a power of two."""
    table = np.empty((rows, 2), np.int64)
    table[:, 1] = EMPTY
    return table


def keys(table: np.ndarray) -> np.ndarray:
    """The keys a hash table holds."""
    return table[table[:, 1] >= 0, 0]


_M64 = (1 << 64) - 1


class _Discard:
    def append(self, rec: ConnectionRecord) -> None:
        pass

    def append_block(self, block: Block, path: str, t0: int) -> None:
        pass


_NONE_ERRORS = _shared(
    {"stdlib": None, "requests": None, "aiohttp": None, "httpx": None, "errno": None}
)
_IDLE, _KEEPALIVE, _CLOSING, _RECEIVING = (object() for _ in range(4))


_P1, _P2, _P3 = 0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def tuple_hash(shi: int, slo: int, sport: int, dhi: int, dlo: int, dport: int) -> int:
    """The fast lane's 4-tuple key (as ``_fastlane_kernels.hashes``), either direction."""
    a = (shi * _P1 & _M64) ^ (slo * _P2 & _M64) ^ (sport * _P3 & _M64)
    b = (dhi * _P1 & _M64) ^ (dlo * _P2 & _M64) ^ (dport * _P3 & _M64)
    return _mix(a) ^ _mix(b)


def packet_hashes(pk: TcpPackets) -> np.ndarray:
    """The fast lane's 4-tuple key of each packet (uint64)."""
    out = np.empty(len(pk.sport), np.uint64)
    kernels().hashes(pk.src_hi, pk.src_lo, pk.sport, pk.dst_hi, pk.dst_lo, pk.dport, out)
    return out


class _Verdict:
    """A parsed head as the HTTP observer's fast path reads it."""

    __slots__ = ("size", "method", "line", "status", "detail", "close", "timeout", "body")

    def __init__(self) -> None:
        self.size = 0
        self.method = ""
        self.line = ""
        self.status = 0
        self.detail = ""
        self.close = False
        self.timeout: float | None = None
        self.body = 0


def _head(data: bytes, requests: bool) -> tuple[Any, Any, int] | None:
    """(start line, fields, head size) as ``_http.HttpObserver._whole_head`` takes them."""
    end = data.find(b"\r\n\r\n")
    if not 0 < end <= _http.MAX_HEAD:
        return None
    nl = data.find(b"\r\n", 0, end + 2)
    line = data[:nl]
    if requests:
        parsed = _http._REQUEST_LINES.get(line) or _http._simple_request_line(line)
    else:
        parsed = _http._STATUS_LINES.get(line) or _http._simple_status_line(line)
    if parsed is None:
        return None
    block = data[nl + 2 : end] if nl < end else b""
    fields = _http._FIELD_SECTIONS.get(block) or _http._simple_fields(block)
    if fields is None or fields.problems:
        return None
    return parsed, fields, end + 4


_CACHE_MAX = 8192  # head keys per generation (``_Verdicts``)


def _parse_request(data: bytes) -> _Verdict | None:
    """A request turn's only segment: one whole head, no body."""
    got = _head(data, True)
    if got is None:
        return None
    (method, target, version, upper), f, size = got
    if (
        size != len(data)
        or upper == "CONNECT"
        or f.framed
        or not f.length_ok
        or f.length
        or "upgrade" in f.headers
    ):
        return None
    v = _Verdict()
    v.size, v.method = size, upper
    ver = version if str(version).startswith("HTTP") else f"HTTP/{version}"
    v.line = _clip(f"{method} {target} {ver}")
    return v


def _parse_responses(data: bytes) -> tuple[_Verdict | None, _Verdict | None]:
    """A response turn's first segment: a whole final head and its body's length, after
    a GET (any method but HEAD) and after a HEAD, from one parse of the head."""
    got = _head(data, False)
    return _response(got, "GET"), _response(got, "HEAD")


def _response(got: tuple[Any, Any, int] | None, method: str) -> _Verdict | None:
    if got is None:
        return None
    (version, status, reason), f, size = got
    if status < 200 or status == 101:
        return None
    if method == "HEAD" or status in (204, 304):
        body = 0
    elif f.framed or not f.length_ok or f.length is None:
        return None
    else:
        body = f.length
    v = _Verdict()
    v.size, v.status, v.body = size, status, body
    v.detail = f"{status} {reason or ''}".strip()
    v.close = bool(f.close or (version == "1.0" and not f.keep_alive))
    v.timeout = f.timeout
    return v


class _CutBody:
    """What ``explain`` reads of the HTTP observer of a response cut short."""

    __slots__ = ("response_expected_bytes", "response_received_bytes")
    request_in_progress = False

    def __init__(self, expected: int, received: int) -> None:
        self.response_expected_bytes, self.response_received_bytes = expected, received


class _Zeek:
    """What ``explain`` reads of a ``ZeekConn``: one row, its state and history."""

    __slots__ = ("rows",)

    def __init__(self, ts: int, state: str, history: str) -> None:
        self.rows = [(ts, _ZeekRow(state, history))]

    @property
    def first(self) -> _ZeekRow:
        return self.rows[0][1]


class _ZeekRow:
    __slots__ = ("state", "history")

    def __init__(self, state: str, history: str) -> None:
        self.state, self.history = state, history

    def conn_state(self) -> str:
        return self.state

    def history_str(self) -> str:
        return self.history


_C, _S = Side.CLIENT, Side.SERVER
_HIST: dict[tuple[int, int], str] = {}


def _history(packed: int, n: int) -> str:
    h = _HIST.get((packed, n))
    if h is None:
        h = "".join(LETTERS[(packed >> (4 * k)) & 0xF] for k in range(n))
        _HIST[(packed, n)] = h
    return h


# Where a replayed connection's opening facts are in a slot row, and in an attempt's row
_K_AT = (K_IPVER, K_CHI, K_CLO, K_SHI, K_SLO, K_CPORT, K_SPORT, K_SYN_TS, K_END_TS, K_SYN_FRAME,
         K_LAST_FRAME, K_CPKTS, K_SPKTS, K_CTTL, K_ISN, K_HIST, K_NHIST)  # fmt: skip


def _opened(row: Any, at: tuple[int, ...], conn_id: int, capture: int, state: str) -> Connection:
    """A connection replayed up to its client's SYN, from the columns ``at`` of ``row``
    (``_K_AT`` or ``_A_AT``): its 4-tuple, times, frames, counts and Zeek row (``state``)."""
    (ipver, chi, clo, shi, slo, cport, sport, syn_ts, end_ts, syn_frame, last_frame, cpkts,
     spkts, cttl, isn, hist, nhist) = (row[k] for k in at)  # fmt: skip
    conn = Connection(conn_id, capture, ipver)
    chi, clo, shi, slo = chi & _M64, clo & _M64, shi & _M64, slo & _M64
    conn.c_addr, conn.c_port = _addr(ipver, chi, clo), cport
    conn.s_addr, conn.s_port = _addr(ipver, shi, slo), sport
    conn.keys = ((chi, clo, cport, shi, slo, sport), (shi, slo, sport, chi, clo, cport))
    conn.zeek = _Zeek(syn_ts, state, _history(hist, nhist))  # type: ignore[assignment]
    conn.start_ts, conn.end_ts = syn_ts, end_ts
    conn.first_frame, conn.last_frame = syn_frame, last_frame
    conn.c.packets, conn.s.packets = cpkts, spkts
    conn.c.ttl = cttl
    conn.isn = isn
    conn.syn_ts.append(syn_ts)
    conn.syn_frames.append(syn_frame)
    conn.emit(_C, Ev.SYN, syn_ts, syn_frame)
    return conn


class _Verdicts:
    """What the HTTP observer's fast path makes of each turn's first segment, by the
    segment's key (``_fastlane_kernels._head_key``): parsed once, when a key is first
    seen (its bytes are at hand only then), and looked up by key when the connection
    ends. Two generations of at most ``_CACHE_MAX`` keys each: a key seen again moves to
    the newer, and a connection whose key has aged out of both is handed to the exact
    tracker (the answer stays exact; only slower)."""

    def __init__(self) -> None:
        # requests: h1 -> (h2, verdict, looks like HTTP); responses: h1 -> (h2, verdict
        # after a GET (any method but HEAD), verdict after a HEAD)
        self.gens: list[list[dict[int, tuple[Any, ...]]]] = [[{}, {}], [{}, {}]]

    def _get(self, d: int, h1: int) -> tuple[Any, ...] | None:
        new, old = self.gens[0][d], self.gens[1][d]
        got = new.get(h1)
        if got is None:
            got = old.get(h1)
            if got is not None:
                self._put(d, h1, got)
        return got

    def _put(self, d: int, h1: int, entry: tuple[Any, ...]) -> None:
        new = self.gens[0][d]
        if len(new) >= _CACHE_MAX:
            self.gens[1][d], new = new, {}
            self.gens[0][d] = new
        new[h1] = entry

    def learn(self, pk: TcpPackets, heads: np.ndarray) -> None:
        """Heads of a batch (rows: packet, direction, key): parse those not known yet."""
        first = _arrays.first_index(heads[:, 2] * 2 + heads[:, 1])
        raw = memoryview(pk.data)
        for i, d, h1, h2 in heads[first].tolist():
            got = self._get(d, h1)
            if got is not None and got[0] == h2:
                continue
            o = int(pk.payload_off[i])
            data = raw[o : o + int(pk.payload_cap[i])].tobytes()
            if d == 0:
                self._put(0, h1, (h2, _parse_request(data), _looks_like_http(data[:16])))
            else:
                entry = (h2, *_parse_responses(data))
                self._put(1, h1, entry)

    def entry(self, d: int, h1: int) -> tuple[Any, ...] | None:
        """A key's entry: (second hash, verdict(s)...), or None."""
        return self._get(d, h1)

    def request(self, h1: int, h2: int) -> tuple[_Verdict | None, bool] | None:
        """(verdict, looks like HTTP) of a request segment's key; None when unknown."""
        got = self._get(0, h1)
        return None if got is None or got[0] != h2 else (got[1], got[2])

    def response(self, h1: int, h2: int, head: bool) -> _Verdict | None:
        got = self._get(1, h1)
        return None if got is None or got[0] != h2 else got[2 if head else 1]


class Lane:
    """Follows one shard of one capture set in the fast lane; ``feed`` batches in order,
    then ``close``. Connections it completes go to its sink as ``Block``s; ``flagged``
    (after ``close``) is what the exact tracker must see."""

    def __init__(
        self,
        sink: Any,
        capture: int,
        path: str,
        t0: int,
        oracle: bool = False,
    ) -> None:
        k = kernels()
        assert k is not None
        self.k = k
        # takes the lane's blocks (``append_block``), or its records (``append``) in
        # the oracle's way (a ``_store.RecordStore``)
        self.sink = sink
        self.capture = capture
        self.path = path
        self.t0 = t0
        # Replay through Connection and explain() instead of building the record here:
        # slower, and what the tests compare the direct records with
        self.oracle = oracle
        self.table = new_table(1 << 12)
        self.flagged = new_table(1 << 12)
        self.cap = 0
        self.st = np.zeros((0, NF), np.int64)
        self.free = np.zeros(0, np.int64)
        self.pool = 0
        self.tu = np.zeros((0, CHUNK, NT), np.int64)
        self.tnext = np.zeros(0, np.int64)
        self.tfree = np.zeros(0, np.int64)
        self.ctl = np.zeros(C_WHY + 32, np.int64)
        # the windows of frames handed to the exact tracker (``WN_*``), and the capture's
        # clock before the batch being fed
        self.wins = np.zeros((1024, NWN), np.int64)
        self.clock = 0
        # connections done, drained after each call of a kernel (which stops when these
        # are full): not as many as the slots, which would be 11 MB more at 16,000 slots
        self.out = np.zeros((OUT_ROWS, NF), np.int64)
        self.out_t = np.zeros((max(4 * OUT_ROWS, 2 * MAX_TURNS), NT), np.int64)
        self._grow(4096)
        self._grow_pool(4096)
        self.verdicts = _Verdicts()
        self.next_id = 0
        self.replayed = 0
        self.attempts = Attempts()  # SYNs never answered, or refused

    def _grow(self, more: int) -> None:
        old = self.cap
        self.cap = new = old + more
        st = np.zeros((new, NF), np.int64)
        st[:old] = self.st
        self.st = st
        self.free = self._stack(self.free, C_NFREE, old, new)

    def _grow_pool(self, more: int) -> None:
        old = self.pool
        self.pool = new = old + more
        tu = np.zeros((new, CHUNK, NT), np.int64)
        tu[:old] = self.tu
        tnext = np.full(new, -1, np.int64)
        tnext[:old] = self.tnext
        self.tu, self.tnext = tu, tnext
        self.tfree = self._stack(self.tfree, C_TFREE, old, new)

    def _stack(self, stack: np.ndarray, count: int, old: int, new: int) -> np.ndarray:
        """A free stack (its depth in ``ctl[count]``) grown by the indexes ``old:new``."""
        n = int(self.ctl[count])
        out = np.zeros(new, np.int64)
        out[:n] = stack[:n]
        out[n : n + new - old] = np.arange(new - 1, old - 1, -1)
        self.ctl[count] = n + new - old
        return out

    def _reserve(self, more: int) -> None:
        """Room in both hash tables for ``more`` keys (each call of a kernel adds at most
        one per packet, and one per slot let go), kept under half full."""
        ctl = self.ctl
        for name, used in (("table", C_TABLE), ("flagged", C_FLAGGED)):
            table = getattr(self, name)
            need = int(ctl[used] + ctl[used + 1]) + more
            if 2 * need > len(table):
                rows = len(table)
                while 2 * (int(ctl[used]) + more) > rows:
                    rows *= 2
                new = new_table(rows)
                self.k.rehash(table, new, ctl, used)
                setattr(self, name, new)
        n = int(ctl[C_NWIN])  # one window at most per key added
        if n + more > len(self.wins):
            wins = np.zeros((2 * (n + more), NWN), np.int64)
            wins[:n] = self.wins[:n]
            self.wins = wins

    def feed(self, pk: TcpPackets, h: np.ndarray, clock: int) -> None:
        """One batch of this shard's TCP packets (``h``: their 4-tuple hashes)."""
        n = len(pk)
        heads = np.zeros((max(n, 1), 4), np.int64)
        i = 0
        hv = h.view(np.int64)
        while True:
            self._reserve(n - i)
            i = self.k.walk(
                i, pk.frame, pk.ts_ns, pk.ipver, pk.src_hi.view(np.int64),
                pk.src_lo.view(np.int64), pk.dst_hi.view(np.int64), pk.dst_lo.view(np.int64),
                pk.sport, pk.dport, pk.seq, pk.ack, pk.flags, pk.window, pk.payload_len,
                pk.payload_cap, pk.ttl, hv, pk.data, pk.payload_off, self.table, self.flagged, self.st, self.tu,
                self.tnext, self.tfree, self.free, self.ctl, self.out, self.out_t, heads,
                self.wins, self.clock,
            )  # fmt: skip
            self._drain(pk, heads)
            status = int(self.ctl[C_STATUS])
            if status == ST_GROW:
                if self.ctl[C_NFREE] == 0:
                    self._grow(self.cap)
                else:
                    self._grow_pool(self.pool)
                continue
            if status == ST_FULL:
                continue
            break
        at = 0
        while True:  # the output may not hold them all at once
            self._reserve(self.cap)
            at = self.k.sweep(at, clock, self.table, self.flagged, self.st, self.free,
                              self.ctl, self.out, self.out_t, self.tu, self.tnext, self.tfree,
                              self.wins)  # fmt: skip
            self._drain(None, heads)
            if self.ctl[C_STATUS] != ST_FULL:
                break
        self.clock = max(self.clock, clock)

    def flag_icmp(self, err: IcmpError) -> None:
        """An ICMP error quotes a 4-tuple: the exact tracker must see it."""
        try:
            shi, slo = addr_halves(err.src)
            dhi, dlo = addr_halves(err.dst)
        except ValueError:
            return
        h = tuple_hash(shi, slo, err.sport, dhi, dlo, err.dport)
        self._reserve(1)
        self.k.flag_key(np.int64(np.uint64(h).view(np.int64)), self.table, self.flagged,
                        self.st, self.free, self.ctl, self.tnext, self.tfree, self.wins)  # fmt: skip
        self._drain(None, np.zeros((1, 4), np.int64))

    def close(self, final: bool = True) -> np.ndarray:
        """End of the capture set (``final``; else of a byte range of it, where an
        attempt still waiting is the exact tracker's): connections done are replayed, the
        rest go exact. Returns the windows the exact tracker must be fed: rows of 4-tuple
        hash (int64), first frame (0: from the start) and last frame (the SYN the lane
        took the 4-tuple back at; -1: to the end), as ``analysis._Handed`` takes them."""
        while True:  # the output may not hold them all at once
            self._reserve(self.cap)
            self.k.finish(self.table, self.flagged, self.st, self.free, self.ctl, self.out,
                          self.out_t, self.tu, self.tnext, self.tfree, self.wins, final)  # fmt: skip
            more = self.ctl[C_STATUS] == ST_FULL
            self._drain(None, np.zeros((1, 4), np.int64))
            if not more:
                break
        self._drain(None, np.zeros((1, 4), np.int64))
        return self.wins[: int(self.ctl[C_NWIN])][:, [WN_KEY, WN_START, WN_END]].copy()

    @property
    def resumed(self) -> int:
        """Windows the lane ended at a fresh SYN, following the 4-tuple again."""
        return int(self.ctl[C_RESUMED])

    @property
    def why(self) -> dict[str, int]:
        """Connections (or stray packets' 4-tuples) handed to the exact tracker, by reason."""
        return {w: int(self.ctl[C_WHY + k]) for k, w in enumerate(WHY) if self.ctl[C_WHY + k]}

    # -----------------------------------------------------------------------------------
    def _drain(self, pk: TcpPackets | None, heads: np.ndarray) -> None:
        ctl = self.ctl
        nh = int(ctl[C_NHEADS])
        if nh:  # heads whose key is new: parsed while their bytes are at hand
            assert pk is not None
            self.verdicts.learn(pk, heads[:nh])
            ctl[C_NHEADS] = 0
        no = int(ctl[C_NOUT])
        if no:
            rows = self.out[:no]
            # in order of first frame, as the record store likes them (a sweep lets
            # connections go in slot order)
            rows = rows[np.argsort(rows[:, K_SYN_FRAME], kind="stable")]
            turns = self.out_t[: int(ctl[C_NOUTT])]
            tried = rows[:, K_SYNACK_FRAME] == 0  # attempts: folded by the merge
            if tried.any():
                self.attempts.add(rows[tried], turns)
                rows = rows[~tried]
            if self.oracle:
                self._replay_rows(rows, turns.tolist())
            elif len(rows):
                block = self._block(rows, turns)
                if block is not None:
                    self.replayed += len(block)
                    self.sink.append_block(block, self.path, self.t0)
            ctl[C_NOUT] = 0
            ctl[C_NOUTT] = 0

    def _reject(self, row: np.ndarray) -> None:
        """A connection (its slot row) whose HTTP does not fit the template after all:
        the exact tracker's, from its first frame."""
        self._reserve(1)
        self.k.reject(
            np.ascontiguousarray(row), self.table, self.flagged, self.st, self.wins, self.ctl
        )
        self.ctl[C_WHY + W_HTTP] += 1

    def _block(self, rows: np.ndarray, turns: np.ndarray) -> Block | None:
        """The connections of ``rows`` (finished, in order of first frame) whose heads fit
        the template, as a ``Block``; the others are handed to the exact tracker. Each
        distinct head's verdict is looked up once (``_Verdicts``); the checks are columns."""
        m = len(rows)
        nturns = rows[:, K_NTURNS]
        # exchanges, then for a race, a server's reset or its FIN one request more,
        # unanswered (an RST with turns odd is the server's: the walk takes the client's
        # only between them); the last response may be cut short (below)
        race = rows[:, K_LATE_FRAME] > 0
        odd = (nturns % 2) == 1
        # ... or the first request, then the server's FIN and the client's
        sfin, cfin, rst = rows[:, K_SFIN_FRAME], rows[:, K_CFIN_FRAME], rows[:, K_RST_FRAME] > 0
        sclose = (nturns == 1) & ~rst & ~race & (sfin > 0) & (cfin > sfin)
        unanswered = race | (odd & rst) | sclose
        bad = (odd != unanswered) | (race & (nturns < 3))
        bad |= rows[:, K_NHIST] > 16  # Zeek keeps 16 letters
        # the server's data after the client's FIN (the walk lets it come): only the whole
        # response to a first request the client gave up on, then the client's RST
        some_t = nturns > 0
        if len(turns):  # each connection's first and last turn's first frame
            tf = turns[np.where(some_t, rows[:, K_TOFF], 0), T_FRAME]
            tl = turns[np.where(some_t, rows[:, K_TOFF] + nturns - 1, 0), T_FRAME]
        else:
            tf = tl = np.zeros(m, np.int64)
        after = (cfin > 0) & (rows[:, K_SLDATA_FRAME] > cfin)
        gaveup = after & (nturns == 2) & rst & ~race & (sfin == 0) & (tf < cfin) & (tl > cfin)
        bad |= after & ~gaveup
        nex = np.where(bad, 0, nturns // 2)
        owner = np.repeat(np.arange(m), nex)  # each exchange's connection
        within = np.arange(len(owner)) - np.repeat(np.cumsum(nex) - nex, nex)
        qi = rows[owner, K_TOFF] + 2 * within
        q, a = turns[qi], turns[qi + 1]
        # requests: each distinct key's entry (its second hash must match too)
        keys, at = _arrays.factorize(q[:, T_H1])
        req = [self.verdicts.entry(0, k) for k in keys.tolist()]
        rv = [None if e is None else e[1] for e in req]
        eh2 = np.array([0 if e is None else e[0] for e in req], np.int64)
        size = np.array([-1 if v is None else v.size for v in rv], np.int64)
        http = np.array([e is not None and e[2] for e in req], bool)
        is_head = np.array([v is not None and v.method == "HEAD" for v in rv], bool)
        ok = (size[at] >= 0) & (eh2[at] == q[:, T_H2])
        ok &= (q[:, T_NSEG] == 1) & (q[:, T_BYTES] == size[at])
        ok &= (within > 0) | http[at]
        # responses: each distinct key's verdicts, after a HEAD and after any other method
        akeys, aat = _arrays.factorize(a[:, T_H1])
        resp = [self.verdicts.entry(1, k) for k in akeys.tolist()]
        ah2 = np.array([0 if e is None else e[0] for e in resp], np.int64)
        total = np.array(
            [[-1 if e is None or e[c] is None else e[c].size + e[c].body for c in (1, 2)]
             for e in resp],
            np.int64,
        ).reshape(-1, 2)  # fmt: skip
        hsize = np.array(
            [[-1 if e is None or e[c] is None else e[c].size for c in (1, 2)] for e in resp],
            np.int64,
        ).reshape(-1, 2)  # fmt: skip
        head = is_head[at]
        hcol = head.astype(np.int64)
        got = a[:, T_BYTES]
        # the client's RST in the middle of the last response, or the server's FIN (then
        # the client's) after its last segment: its head whole, its body short (the
        # machine is still receiving it: no response end)
        rst_o, sfin_o, cfin_o = (rows[owner, c] for c in (K_RST_FRAME, K_SFIN_FRAME, K_CFIN_FRAME))
        cut_by = (rst_o > 0) | ((sfin_o > 0) & (cfin_o > sfin_o) & (sfin_o >= a[:, T_LFRAME]))
        cut_by &= ~gaveup[owner]  # (that response whole)
        partial = (
            (within == nex[owner] - 1) & cut_by & ~unanswered[owner]
            & (hsize[aat, hcol] >= 0) & (got >= hsize[aat, hcol]) & (got < total[aat, hcol])
        )  # fmt: skip
        ok &= (ah2[aat] == a[:, T_H2]) & ((got == total[aat, hcol]) | partial)
        ok &= a[:, T_HLEN] <= a[:, T_BYTES]
        # what each exchange's heads said, gathered from the distinct keys' verdicts by
        # numpy (a list made exchange by exchange cost 0.1 s of 300,000 exchanges)
        line_of = np.empty(len(rv), object)
        line_of[:] = [None if v is None else v.line for v in rv]
        detail_of = np.empty((len(resp), 2), object)
        close_of = np.zeros((len(resp), 2), bool)
        for k, e in enumerate(resp):
            for c in (0, 1):
                v = None if e is None else e[1 + c]
                if v is not None:
                    detail_of[k, c], close_of[k, c] = v.detail, v.close
        closes = close_of[aat, head.astype(np.int64)]
        # a connection goes with all its exchanges; one the client reset after a response
        # that asked to close is the client's close (``classify``: CLOSE_ANNOUNCED)
        bad |= np.bincount(owner[~ok], minlength=m) > 0
        if len(closes):
            last = np.maximum(np.cumsum(nex) - 1, 0)
            bad |= rst & (nex > 0) & closes[last] & ~gaveup
        late = np.full(m, None, object)  # the unanswered request's line
        for j in np.flatnonzero(unanswered & ~bad).tolist():
            t = turns[rows[j, K_TOFF] + rows[j, K_NTURNS] - 1]
            got = self.verdicts.request(int(t[T_H1]), int(t[T_H2]))
            v = None if got is None else got[0]
            if v is None or t[T_NSEG] != 1 or t[T_BYTES] != v.size or not (got[1] or nex[j]):
                bad[j] = True
            elif sclose[j] and (
                t[T_LFRAME] > sfin[j] or t[T_TS] - rows[j, K_SYN_TS] >= IDLE_MIN_NS
            ):  # the request before the server's FIN, and never after an idle spell: a
                # race (``explain._race``) needs one of IDLE_MIN_NS at least
                bad[j] = True
            else:
                late[j] = v.line
                # a reset request's frame and time where a race's are (the walk's)
                rows[j, K_LATE_FRAME], rows[j, K_LATE_TS] = t[T_FRAME], t[T_TS]
        for row in rows[bad]:
            self._reject(row)
        keep = np.flatnonzero(~bad)
        if not len(keep):
            return None
        kept = ~bad[owner]
        which = (aat[kept], head[kept].astype(np.int64))
        qx, ax = q[kept], a[kept]
        ex = np.empty((len(qx), NX), np.int64)
        ex[:, X_QTS], ex[:, X_QFRAME] = qx[:, T_TS], qx[:, T_FRAME]
        ex[:, X_ATS], ex[:, X_AFRAME] = ax[:, T_TS], ax[:, T_FRAME]
        ex[:, X_LTS], ex[:, X_LFRAME] = ax[:, T_LTS], ax[:, T_LFRAME]
        cut = partial[kept]  # no response end: the last activity is the response's start
        ex[cut, X_LTS], ex[cut, X_LFRAME] = ex[cut, X_ATS], -1
        hs = hsize[aat, hcol][kept]
        ex[:, X_GOT] = np.where(cut, ax[:, T_BYTES] - hs, 0)
        ex[:, X_EXP] = np.where(cut, total[aat, hcol][kept] - hs, 0)
        return Block(rows[keep], ex, nex[keep], line_of[at[kept]].tolist(),
                     detail_of[which].tolist(), close_of[which],
                     late[keep].tolist())  # fmt: skip

    def _replay_rows(self, rows: np.ndarray, turns: list[list[int]]) -> None:
        """The oracle: each connection replayed through ``Connection`` and ``explain``."""
        for row in rows.tolist():
            rec = self._build(row, turns)
            if rec is None:
                self._reject(np.array(row, np.int64))
            else:
                self.replayed += 1
                self.sink.append(rec, row[K_HASH])

    def _build(self, row: list[int], tu: list[list[int]]) -> ConnectionRecord | None:
        """The record the exact tracker would make of a connection the walk followed to
        its end, replayed; None when its HTTP does not fit the template after all."""
        nturns = row[K_NTURNS]
        race = row[K_LATE_FRAME] != 0  # a request after the server's FIN closes the turns
        # ... or one the server reset (an RST with turns odd is the server's), or the first
        # request before the server's FIN, then the client's
        sfin, cfin = row[K_SFIN_FRAME], row[K_CFIN_FRAME]
        sclose = nturns == 1 and not row[K_RST_FRAME] and not race and 0 < sfin < cfin
        unanswered = race or (nturns % 2 == 1 and row[K_RST_FRAME] != 0) or sclose
        if nturns % 2 != unanswered or (race and nturns < 3) or row[K_NHIST] > 16:  # (16)
            return None
        off = row[K_TOFF]
        turns = tu[off : off + nturns]
        exchanges = []
        late = None
        if unanswered:
            q = turns[-1]
            got = self.verdicts.request(q[T_H1], q[T_H2])
            if got is None or got[0] is None or q[T_NSEG] != 1 or q[T_BYTES] != got[0].size:
                return None
            if nturns == 1 and not got[1]:
                return None
            if sclose and (q[T_LFRAME] > sfin or q[T_TS] - row[K_SYN_TS] >= IDLE_MIN_NS):
                return None  # (as ``_block``: no race)
            late = (q, got[0])
        for t in range(0, nturns - unanswered, 2):
            q, a = turns[t], turns[t + 1]
            got = self.verdicts.request(q[T_H1], q[T_H2])
            if got is None:
                return None
            req, http = got
            if req is None or q[T_NSEG] != 1 or q[T_BYTES] != req.size:
                return None
            if t == 0 and not http:
                return None
            resp = self.verdicts.response(a[T_H1], a[T_H2], req.method == "HEAD")
            if resp is None:
                return None
            # the client's RST in the middle of the last response, or the server's FIN
            # after its last segment (then the client's): its head whole
            partial = (
                t == nturns - 2 and not unanswered
                and (row[K_RST_FRAME] != 0 or 0 < sfin < cfin and sfin >= a[T_LFRAME])
                and resp.size <= a[T_BYTES] < resp.size + resp.body
            )  # fmt: skip
            if a[T_BYTES] != resp.size + resp.body and not partial:
                return None
            if a[T_HLEN] > a[T_BYTES]:
                return None
            exchanges.append((q, req, a, resp, partial))
        # the client's FIN while its first request awaited the response, the response after
        # it, then its RST (``_block``: nothing else after the client's FIN)
        gaveup = nturns == 2 and row[K_RST_FRAME] != 0 and not unanswered and not sfin and (
            turns[0][T_FRAME] < cfin < turns[1][T_FRAME])  # fmt: skip
        if cfin and row[K_SLDATA_FRAME] > cfin and not gaveup:
            return None
        if gaveup and exchanges[-1][4]:
            return None  # (that response whole)
        if row[K_RST_FRAME] and exchanges and exchanges[-1][3].close and not gaveup:
            return None  # reset after a response that asked to close: see ``_block``
        conn = self._replay(row, exchanges, late)
        return None if conn is None else explain(conn, self.path, self.t0)

    def _replay(self, row: list[int], exchanges: list, late: Any = None) -> Connection | None:
        """The connection the exact tracker would finish, from its significant events
        (``late``: a request after the server's FIN, its turn and verdict)."""
        actions: list[tuple[int, int, int, Any, Any]] = []
        for q, req, a, resp, partial in exchanges:
            actions.append((q[T_FRAME], 0, 0, q, req))
            actions.append((a[T_FRAME], 1, 1, a, resp))
            if not partial:
                actions.append((a[T_LFRAME], 2, 2, a, resp))
        if late is not None:  # the (server's FIN,) the request, the server's RST
            actions.append((late[0][T_FRAME], 0, 0, late[0], late[1]))
            if row[K_SFIN_FRAME]:
                actions.append((row[K_SFIN_FRAME], 3, 3, False, None))
            if row[K_RST_FRAME]:
                actions.append((row[K_RST_FRAME], 3, 5, False, None))
            else:  # ... or the request, then both FINs
                actions.append((row[K_CFIN_FRAME], 3, 3, True, None))
        elif row[K_RST_FRAME]:
            actions.append((row[K_RST_FRAME], 3, 4, True, None))
            if row[K_CFIN_FRAME]:  # the client's FIN before it (it gave up)
                actions.append((row[K_CFIN_FRAME], 3, 3, True, None))
        else:
            actions.append((row[K_CFIN_FRAME], 3, 3, True, None))
            actions.append((row[K_SFIN_FRAME], 3, 3, False, None))
        actions.sort(key=lambda x: (x[0], x[1]))
        nturns = 2 * len(exchanges)

        state = "SF" if not row[K_RST_FRAME] else "RSTR" if late is not None else "RSTO"
        conn = _opened(row, _K_AT, self.next_id, self.capture, state)
        self.next_id += 1
        c, s = conn.c, conn.s
        c.bytes, s.bytes = row[K_CBYTES], row[K_SBYTES]
        s.ttl = row[K_STTL]
        if c.bytes:
            c.first_data_frame, c.last_data_frame = row[K_CFDATA_FRAME], row[K_CLDATA_FRAME]
            c.last_data_ts = row[K_CLDATA_TS]
        if s.bytes:
            s.first_data_frame, s.last_data_frame = row[K_SFDATA_FRAME], row[K_SLDATA_FRAME]
            s.last_data_ts = row[K_SLDATA_TS]
        conn.synack_ts, conn.synack_frame = row[K_SYNACK_TS], row[K_SYNACK_FRAME]
        conn.server_isn = row[K_SISN]
        conn.emit(_S, Ev.SYNACK, row[K_SYNACK_TS], row[K_SYNACK_FRAME])
        if row[K_ACK_TS] >= 0:
            conn.ack_ts = row[K_ACK_TS]
        if nturns:
            conn.mode = "http"
        for frame, _, kind, t, v in actions:
            if kind == 0:
                conn._request(frame, t[T_TS], v.line)
                conn.last_activity_ts = t[T_TS]
            elif kind == 1:
                conn.turn = _S
                conn.responses += 1
                if v.timeout is not None:
                    conn.keep_alive_timeout_s = v.timeout
                conn.response_close = v.close
                conn.emit(_S, Ev.RESPONSE, t[T_TS], frame, v.detail)
                conn.last_activity_ts = t[T_TS]
            elif kind == 2:
                kind_ev = Ev.RESPONSE_END_CLOSE if conn.response_close else Ev.RESPONSE_END
                conn.emit(_S, kind_ev, t[T_LTS], frame)
                conn.last_activity_ts = t[T_LTS]
            elif kind in (4, 5):  # the client's RST, the server's
                conn.rst(kind == 4, frame, row[K_RST_TS], row[K_RST_TTL])
            else:
                side = c if t else s
                ts = row[K_CFIN_TS] if t else row[K_SFIN_TS]
                side.fin_frame, side.fin_ts = frame, ts
                conn._close_gap(ts)
                conn.emit(_C if t else _S, Ev.FIN, ts, frame)
        if conn.machine.outcome is None or conn.anomalies or conn.machine.anomalies:
            return None
        if exchanges and exchanges[-1][4]:  # what the HTTP observer knows of the cut body
            _, _, a, resp, _ = exchanges[-1]
            got = a[T_BYTES] - resp.size
            conn.http = _CutBody(resp.body, got)  # type: ignore[assignment]
            if not row[K_RST_FRAME]:  # the server's FIN in the middle of it
                conn._note(_cut_note(got, resp.body))
        return conn


# -----------------------------------------------------------------------------------------
# What the lane writes: blocks of columns, made into records or JSON lines on demand

# Exchange columns: the request's time and frame, the response's first segment's, its last's
# (-1: a response cut short, ``Lane._block``: its first's time), and of a response cut
# short, the body bytes that came and those its head announced
X_QTS, X_QFRAME, X_ATS, X_AFRAME, X_LTS, X_LFRAME, X_GOT, X_EXP = range(8)
NX = 8
# How a connection of the template ends (``Block.derived``): who sent the first FIN, and
# whether the server's came after an idle gap; or the client's RST; or a request sent after
# the server's FIN, answered by the server's RST (the keep-alive race); or the server's RST
# while a request awaited its response; or the server's FIN, then the client's, while the
# first request awaited its response (``Lane._block``: never a race); or the server's FIN,
# then the client's, in the middle of the last response (its ``client_errors`` are each
# row's: ``_errors``)
# ... or the client's FIN while its first request awaited a response, the response after
# it, then the client's RST (a read timeout; its ``client_errors`` name the server too)
O_CLIENT, O_IDLE, O_SERVER, O_CRESET, O_RACE, O_SRESET, O_SCLOSE, O_TRUNC, O_GAVEUP = range(9)
_OUTCOMES = ("client_close", "server_idle_close", "server_close", "client_reset",
             "server_close_after_request", "server_reset", "server_close_after_request",
             "truncated_response", "client_timeout")  # fmt: skip
_CLOSED_BY = ("client", "server", "server", "client", "server", "server", "server", "server",
              "client")  # fmt: skip
_STATES = ("SF", "SF", "SF", "RSTO", "RSTR", "RSTR", "SF", "SF", "RSTO")  # Zeek's conn_state
_NONE = _NONE_ERRORS
_ERRORS = (_NONE, _NONE, _NONE, _NONE, _shared(REMOTE_DISCONNECTED),
           _shared(RESET_AWAITING), _shared(REMOTE_DISCONNECTED), _NONE, _NONE)  # what clients raise  # fmt: skip
_CAUSES = tuple(RACE_CAUSE if o == O_RACE else CAUSES.get(_OUTCOMES[o], (None, None))
                for o in range(len(_OUTCOMES)))  # fmt: skip
_OWN = frozenset({O_RACE, O_SRESET, O_SCLOSE, O_TRUNC, O_GAVEUP})  # evidence: ``_own``


# The slot columns a block keeps once sealed (``Block.__getstate__``): what ``record``,
# ``json_tails`` and ``facts`` read
_KEPT = [
    K_HASH, K_CHI, K_CLO, K_SHI, K_SLO, K_CPORT, K_SPORT, K_IPVER, K_SYN_TS, K_SYN_FRAME,
    K_SYNACK_TS, K_SYNACK_FRAME, K_ACK_TS, K_LAST_FRAME, K_END_TS, K_CPKTS, K_SPKTS,
    K_CBYTES, K_SBYTES, K_CTTL, K_STTL, K_HIST, K_NHIST, K_CFIN_FRAME, K_CFIN_TS,
    K_SFIN_FRAME, K_SFIN_TS, K_RST_FRAME, K_RST_TS, K_RST_TTL, K_LATE_FRAME, K_LATE_TS,
]  # fmt: skip
_KEPT_AT = np.array(_KEPT)


# -----------------------------------------------------------------------------------------
# Attempts: connections whose SYN was never answered, or answered by the server's RST.
# A flood makes millions; the exact tracker folds all but the first few of each server
# into one row (``analysis.Folds``). The lane keeps each as one row of these columns, in
# a file once they are many (``_columns``), and the merge folds them with the exact
# tracker's (``analysis._attempt_folds``), replaying only the few it reports one by one.

A_COLS = (K_HASH, K_CHI, K_CLO, K_SHI, K_SLO, K_CPORT, K_SPORT, K_IPVER, K_SYN_TS,
          K_SYN_FRAME, K_ISN, K_LAST_FRAME, K_END_TS, K_CPKTS, K_SPKTS, K_CTTL, K_STTL,
          K_HIST, K_NHIST, K_RST_FRAME, K_RST_TS, K_RST_TTL, K_NTURNS, K_TOFF)  # fmt: skip
(A_KEY, A_CHI, A_CLO, A_SHI, A_SLO, A_CPORT, A_SPORT, A_IPVER, A_SYN_TS, A_SYN_FRAME,
 A_ISN, A_LAST_FRAME, A_END_TS, A_CPKTS, A_SPKTS, A_CTTL, A_STTL, A_HIST, A_NHIST,
 A_RST_FRAME, A_RST_TS, A_RST_TTL, A_NSYN, A_SYNS) = range(24)  # fmt: skip
NA = 24  # A_NSYN: SYNs sent again, at A_SYNS in ``Attempts.syns``
_A_AT = tuple(A_COLS.index(k) for k in _K_AT)  # (``_opened``)


class Attempts:
    """The attempts one lane let go, as rows of ``A_*`` columns, and their SYNs sent
    again (frame, time) in a second column."""

    def __init__(self) -> None:
        self.rows = Column("q")
        self.syns = Column("q")

    def __len__(self) -> int:
        return len(self.rows) // NA

    def add(self, rows: np.ndarray, turns: np.ndarray) -> None:
        """Slot rows of attempts (their SYNs again in ``turns``)."""
        a = np.empty((len(rows), NA), np.int64)
        a[:, : len(A_COLS)] = rows[:, A_COLS]
        nt = rows[:, K_NTURNS]
        a[:, A_SYNS] = len(self.syns) // 2 + np.cumsum(nt) - nt
        if nt.any():
            within = np.arange(int(nt.sum())) - np.repeat(np.cumsum(nt) - nt, nt)
            at = np.repeat(rows[:, K_TOFF], nt) + within
            self.syns.frombytes(np.ascontiguousarray(turns[at][:, [T_FRAME, T_TS]]).tobytes())
        self.rows.frombytes(a.tobytes())
        settle(a.nbytes)

    def chunks(self, size: int = 1 << 16) -> Any:
        """The rows, ``size`` at a time (copies: the column's pages are let go)."""
        n = len(self)
        for lo in range(0, n, size):
            part = self.rows.view()[lo * NA : min(n, lo + size) * NA].reshape(-1, NA).copy()
            settle(part.nbytes)
            yield part

    def resent(self, row: np.ndarray) -> list[tuple[int, int]]:
        """An attempt's SYNs sent again: (frame, time) each."""
        k, n = int(row[A_SYNS]), int(row[A_NSYN])
        v = self.syns.view()[2 * k : 2 * (k + n)].reshape(-1, 2)
        return [(int(f), int(t)) for f, t in v]


def attempt_record(row: np.ndarray, resent: list[tuple[int, int]], capture: int, path: str,
                   t0: int) -> ConnectionRecord:  # fmt: skip
    """The record the exact tracker makes of an attempt, replayed through ``Connection``
    and ``explain``: its SYN (and the same SYN again), then the server's RST or the end."""
    r = [int(x) for x in row]
    refused = r[A_RST_FRAME] != 0
    conn = _opened(r, _A_AT, 0, capture, "REJ" if refused else "S0")
    for f, t in resent:
        conn.syn_ts.append(t)
        conn.syn_frames.append(f)
    if refused:
        conn.s.ttl = r[A_STTL]
        conn.rst(False, r[A_RST_FRAME], r[A_RST_TS], r[A_RST_TTL])
    else:
        conn.emit(Side.NONE, Ev.EOC, r[A_END_TS], None)  # (``Tracker._finish``)
    return explain(conn, path, t0)


_KINDS = (np.uint8, np.uint16, np.uint32, np.uint64)


def _narrow(a: np.ndarray) -> tuple[np.ndarray, int, list[tuple[np.ndarray, np.ndarray]]]:
    """The columns of ``a`` (int64) as (least values, rows, groups): each column as its
    offsets from its least value in the narrowest unsigned type, the columns of one type
    together as (their indexes, their offsets: one row a column). ``_widen`` gives ``a``
    back. A few whole-array steps, not four numpy calls a column (pickling a block of
    2,048 connections: 0.46 -> 0.29 ms)."""
    n, k = a.shape
    if n == 0:
        return np.zeros(k, np.int64), 0, []
    t = a.T.copy()  # (reductions along a row of 8 bytes a step take ten times longer)
    lo = t.min(axis=1)
    t -= lo[:, None]
    d = t.view(np.uint64)  # a span beyond int64 wraps: uint64 holds it
    span = d.max(axis=1)
    kind = (span >= 1 << 8).astype(np.int64) + (span >= 1 << 16) + (span >= 1 << 32)
    groups = []
    for w, typ in enumerate(_KINDS):  # (not np.unique: 0.1 ms a call)
        cols = np.flatnonzero(kind == w)
        if len(cols):
            groups.append((cols, d[cols].astype(typ)))
    return lo, n, groups


def _widen(
    state: tuple[np.ndarray, int, list[tuple[np.ndarray, np.ndarray]]],
    out: np.ndarray | None = None,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """``_narrow``'s array, or its columns written to columns ``at`` of ``out``."""
    lo, n, groups = state
    if out is None:
        out = np.zeros((n, len(lo)), np.int64)
        at = np.arange(len(lo))
    assert at is not None
    for cols, c in groups:
        v = c.view(np.int64) if c.dtype == np.uint64 else c  # (uint64 + int64: float64)
        out[:, at[cols]] = v.T + lo[cols]
    return out


class Block:
    """Connections the lane followed to their end, as columns: their slot rows (``K_*``,
    in order of first frame), their exchanges (``X_*``, connection after connection,
    ``nex`` each) and what the heads said (request lines, response details, whether the
    response asked to close; per connection, the line of the last request if no response
    answered it, or None: one written after the server's FIN, or one the server reset or
    closed on). A last response cut short has no end (``X_LFRAME`` -1) and its body's
    bytes (``X_GOT``, ``X_EXP``).
    A record (``record``) or a JSON line (``json_tails``) is made from it when asked for:
    the lane itself makes no Python object per connection beyond its heads' verdicts."""

    __slots__ = ("rows", "ex", "nex", "lines", "details", "close", "late", "_derived")

    def __init__(
        self,
        rows: np.ndarray,
        ex: np.ndarray,
        nex: np.ndarray,
        lines: list[str],
        details: list[str],
        close: np.ndarray,
        late: list[str | None],
    ) -> None:
        self.rows, self.ex, self.nex = rows, ex, nex
        self.lines, self.details, self.close = lines, details, close
        self.late = late
        self._derived: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> tuple[Any, ...]:
        # only the columns read after the walk, each as its offset from its least value
        # in the narrowest type that holds it: what is kept and handed between processes
        # (ports, addresses, TTLs and counts take a byte or two, not eight)
        return (_narrow(self.rows[:, _KEPT]), _narrow(self.ex), self.nex, self.lines,
                self.details, self.close, self.late)  # fmt: skip

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        kept, ex, self.nex, self.lines, self.details, self.close, self.late = state
        self.rows = _widen(kept, np.zeros((kept[1], NF), np.int64), _KEPT_AT)
        self.ex = _widen(ex)
        self._derived = None

    @property
    def first(self) -> np.ndarray:
        return self.rows[:, K_SYN_FRAME]

    def _xstart(self) -> np.ndarray:
        return np.cumsum(self.nex) - self.nex

    def take(self, lo: int, hi: int) -> Block:
        """Connections ``lo``..``hi``."""
        start = self._xstart()
        a = int(start[lo]) if lo < len(self) else len(self.ex)
        b = int(start[hi]) if hi < len(self) else len(self.ex)
        return Block(self.rows[lo:hi], self.ex[a:b], self.nex[lo:hi], self.lines[a:b],
                     self.details[a:b], self.close[a:b], self.late[lo:hi])  # fmt: skip

    def select(self, idx: np.ndarray) -> Block:
        """Connections ``idx``, in that order."""
        n = self.nex[idx]
        xi = np.repeat(self._xstart()[idx], n) + (
            np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        )
        at = xi.tolist()
        late = self.late
        return Block(self.rows[idx], self.ex[xi], n, [self.lines[x] for x in at],
                     [self.details[x] for x in at], self.close[xi],
                     [late[j] for j in idx.tolist()])  # fmt: skip

    def copy(self) -> Block:
        """A block of its own arrays (``take`` gives views of this one's)."""
        return Block(self.rows.copy(), self.ex.copy(), self.nex.copy(), self.lines,
                     self.details, self.close.copy(), self.late)  # fmt: skip

    @classmethod
    def concat(cls, blocks: list[Block]) -> Block:
        if len(blocks) == 1:
            return blocks[0]
        lines: list[str] = []
        details: list[str] = []
        late: list[str | None] = []
        for b in blocks:  # (``+=`` extends in C: a comprehension was half of a concat)
            lines += b.lines
            details += b.details
            late += b.late
        return cls(
            np.concatenate([b.rows for b in blocks]),
            np.concatenate([b.ex for b in blocks]),
            np.concatenate([b.nex for b in blocks]),
            lines,
            details,
            np.concatenate([b.close for b in blocks]),
            late,
        )

    def derived(self) -> dict[str, np.ndarray]:
        """What the machine decides for each connection, as columns (``_record`` walks
        the same path one event at a time): the first FIN decides who closed, or the RST
        that ended it; the server closed an idle connection when its FIN follows the last
        response (not one that asked to close) by the idle threshold or more; a request
        no response answered makes a race (after the server's FIN), a reset, or a close
        on a request (both FINs after it); a last response cut short by the server's FIN
        is truncated (by the client's RST: the client's reset)."""
        d = self._derived
        if d is not None:
            return d
        r, ex, n = self.rows, self.ex, self.nex
        syn, ack = r[:, K_SYN_TS], r[:, K_ACK_TS]
        has_ack = ack >= 0
        rtt = np.maximum(0, ack - syn)
        threshold = np.where(has_ack, np.maximum(IDLE_MIN_NS, IDLE_RTT_FACTOR * rtt), IDLE_MIN_NS)
        # a request no response answered: after the server's FIN (then its RST: a race),
        # or before the server's RST (a reset), or before both FINs (no RST)
        unanswered = r[:, K_LATE_FRAME] > 0
        rst = r[:, K_RST_FRAME] > 0
        sclose = unanswered & ~rst
        race = unanswered & rst & (r[:, K_SFIN_FRAME] > 0)
        sreset = unanswered & rst & ~race
        # the client's FIN while its request awaited the response, its RST at the response
        gaveup = rst & (r[:, K_CFIN_FRAME] > 0) & ~unanswered
        server_first = ((r[:, K_SFIN_FRAME] < r[:, K_CFIN_FRAME]) | race) & ~gaveup
        reset = rst & ~unanswered & ~gaveup  # the client's RST, no FIN
        f1 = np.where(server_first, r[:, K_SFIN_FRAME], r[:, K_CFIN_FRAME])
        t1 = np.where(server_first, r[:, K_SFIN_TS], r[:, K_CFIN_TS])
        f1 = np.where(reset | sreset, r[:, K_RST_FRAME], f1)
        t1 = np.where(reset | sreset, r[:, K_RST_TS], t1)
        some = n > 0
        last = np.maximum(np.cumsum(n) - 1, 0)
        if len(ex):
            lts = np.where(some, ex[last, X_LTS], 0)
            lclose = some & self.close[last]
            reused = np.where(n > 1, ex[last, X_QTS] - ex[np.maximum(last - 1, 0), X_LTS], 0)
            cut = some & (ex[last, X_LFRAME] < 0)  # the last response cut short
        else:
            lts = reused = np.zeros(len(r), np.int64)
            lclose = cut = np.zeros(len(r), bool)
        reused = np.where(unanswered, r[:, K_LATE_TS] - lts, reused)  # (used when n >= 1)
        # the idle time at the close: since the last response's end, or the unanswered
        # request (before the server's RST or FIN)
        idle = t1 - np.where(sreset | sclose, r[:, K_LATE_TS], lts)
        if len(ex):  # ... or the request the client gave up on
            idle = np.where(gaveup, t1 - ex[last, X_QTS], idle)
        idle_close = server_first & some & ~lclose & (idle >= threshold)
        outcome = np.where(server_first, np.where(idle_close, O_IDLE, O_SERVER), O_CLIENT)
        trunc = cut & server_first & ~rst & ~unanswered  # the server's FIN: truncated
        outcome = np.where(trunc, O_TRUNC, np.where(gaveup, O_GAVEUP, outcome))
        outcome = np.where(reset, O_CRESET, np.where(race, O_RACE, outcome))
        outcome = np.where(sreset, O_SRESET, np.where(sclose, O_SCLOSE, outcome))
        # a reset request that came after an idle spell (``explain._stale``)
        stale = sreset & some & (reused >= threshold)
        d = self._derived = {
            "has_ack": has_ack, "rtt": rtt, "f1": f1, "t1": t1, "outcome": outcome,
            "idle": idle, "reused": reused, "last": last, "race": race, "sreset": sreset,
            "sclose": sclose, "trunc": trunc, "gaveup": gaveup, "requests": n + unanswered,
            "stale": stale,
        }  # fmt: skip
        return d


def _own(d: dict[str, np.ndarray]) -> np.ndarray:
    """The connections whose evidence goes on in words of its own after its head (an
    unanswered request, a response cut short by the server, a client that gave up):
    ``_extra``, in the JSON template ``J_EXTRA``."""
    return d["race"] | d["sreset"] | d["sclose"] | d["trunc"] | d["gaveup"]


def _ev_head(block: Block, j: int, t0: int) -> str:
    """Connection ``j``'s evidence up to ``J_EXTRA``, as the JSON template writes it
    (``_EV_HEAD``, the frame, ``_EV_AT``, the time but a client's that gave up,
    ``_EV_SEP``, ``_EV_MID``)."""
    d = block.derived()
    o = int(d["outcome"][j])
    at = "" if o == O_GAVEUP else f"{(int(d['t1'][j]) - t0) / NS:.3f}"
    return f"{_EV_HEAD[o]}{int(d['f1'][j])}{_EV_AT[o]}{at}{_EV_SEP[o]}{_EV_MID[o]}"


def _extra(block: Block, j: int, t0: int) -> str:
    """The rest of the evidence of connection ``j`` (one of ``_own``), as
    ``explain._evidence`` (and ``_stale``) write it."""
    d = block.derived()
    if d["trunc"][j]:
        return truncated_size(*_cut(block, j)) + "."
    if d["gaveup"][j]:
        x = block.ex[int(d["last"][j])]
        q, line = int(x[X_QTS]), block.lines[int(d["last"][j])]
        waited = _s(int(d["t1"][j]) - q)
        return (
            f"{waited} after its request '{line}' at frame {int(x[X_QFRAME])} ({_at(q, t0)}), "
            f"while no complete response had arrived — a read timeout of about {waited}."
        )
    r = block.rows[j]
    line, qf, qts = block.late[j] or "", int(r[K_LATE_FRAME]), int(r[K_LATE_TS])
    if d["sclose"][j]:
        return (
            f"{_s(int(d['t1'][j]) - qts)} after the request '{line}' at frame {qf} "
            f"({_at(qts, t0)}), without responding."
        )
    if d["race"][j]:
        fin = int(d["t1"][j])
        return (
            f", after {_s(int(d['idle'][j]))} idle), then the client wrote request '{line}' at "
            f"frame {qf} ({_at(qts, t0)}), {_s(qts - fin)} after the FIN; no response came, "
            f"the server answered with RST at frame {int(r[K_RST_FRAME])}."
        )
    tail = f"while the request '{line}' at frame {qf} ({_at(qts, t0)}) awaited a response."
    return tail + stale_note(int(d["reused"][j]), False) if d["stale"][j] else tail


def _cut(block: Block, j: int) -> tuple[int, int]:
    """(body bytes that came, those announced) of connection ``j``'s last response."""
    x = block.ex[int(block.derived()["last"][j])]
    return int(x[X_GOT]), int(x[X_EXP])


def _cut_note(got: int, exp: int) -> str:
    """The HTTP observer's anomaly at the server's FIN in the middle of a body."""
    return f"HTTP: server closed after {got} of {exp} body bytes"


def _own_errors(block: Block, j: int) -> dict[str, Any] | None:
    """Connection ``j``'s ``client_errors`` when they are its own, not its outcome's
    (``_ERRORS``): a truncated response's byte counts, a timed-out client's server."""
    d = block.derived()
    if d["trunc"][j]:
        return truncated_errors(*_cut(block, j))
    if d["gaveup"][j]:
        r = block.rows[j]
        host = _addr(int(r[K_IPVER]), int(r[K_SHI]) & _M64, int(r[K_SLO]) & _M64)
        return timeout_errors(host, int(r[K_SPORT]))
    return None


def _notes(block: Block, j: int) -> list[str]:
    """Connection ``j``'s anomalies: a truncated response's, from the HTTP observer."""
    return [_cut_note(*_cut(block, j))] if block.derived()["trunc"][j] else []


def _errors(block: Block, outcome: list[int]) -> list[dict[str, Any]]:
    """Each connection's ``client_errors``: its outcome's, or its own (``_own_errors``)."""
    out: list[dict[str, Any]] = [_ERRORS[o] for o in outcome]
    d = block.derived()
    for j in np.flatnonzero(d["trunc"] | d["gaveup"]).tolist():
        out[j] = _own_errors(block, j)  # type: ignore[assignment]
    return out


def _evidences(block: Block, t0: int) -> list[str]:
    """Each connection's evidence."""
    d = block.derived()
    out = list(map(_evidence, d["outcome"].tolist(), d["f1"].tolist(), d["t1"].tolist(),
                   repeat(t0), d["idle"].tolist(), block.nex.tolist()))  # fmt: skip
    for j in np.flatnonzero(_own(d)).tolist():
        out[j] = _ev_head(block, j, t0) + _extra(block, j, t0)
    return out


def _last_requests(block: Block) -> list[str | None]:
    """Each connection's last request line (None: no request), gathered in C
    (``itemgetter``): a comprehension cost 0.15 µs a connection."""
    d = block.derived()
    m = len(block)
    if not len(block.lines):
        out: list[str | None] = [None] * m
    elif m == 1:
        out = [block.lines[int(d["last"][0])]]
    else:
        out = list(itemgetter(*d["last"].tolist())(block.lines))
    for j in np.flatnonzero(block.nex == 0).tolist():
        out[j] = None
    for j in np.flatnonzero(d["requests"] > block.nex).tolist():  # an unanswered request
        out[j] = block.late[j]
    return out


def _evidence(outcome: int, f1: int, t1: int, t0: int, idle: int, n: int) -> str:
    at = _at(t1, t0)
    if outcome == O_CLIENT:
        return f"The client closed (FIN at frame {f1}, {at}) with nothing outstanding."
    if outcome == O_CRESET:
        return (
            f"The client reset the connection (RST at frame {f1}, {at}) before closing it cleanly."
        )
    if outcome == O_IDLE:
        return (
            f"The server closed the idle connection (FIN at frame {f1}, {at}) after "
            f"{_s(idle)} without traffic; no request was outstanding."
        )
    return f"The server closed (FIN at frame {f1}, {at}) after completing {n} response(s)."


def events(block: Block, j: int) -> list[tuple[int, int | None, str, str, str]]:
    """The events of connection ``j`` of ``block``, as ``record`` gives them (a table of
    events then needs no record)."""
    return _path(block, j, block.rows[j].tolist())[0]


def _path(
    block: Block, j: int, row: list[int]
) -> tuple[list[Any], Any, int | None, int | None, str | None, tuple[int, int, str]]:
    """The machine's path through connection ``j``'s events (``row``: its slot row):
    the events, the state it ends in, the last activity, the idle time before the last
    request, the last request line, and the first FIN (frame, time, side)."""
    d = block.derived()
    n = int(block.nex[j])
    x0 = int(d["last"][j]) - n + 1
    ex = block.ex[x0 : x0 + n].tolist()
    syn_ts, ack_ts = row[K_SYN_TS], row[K_ACK_TS]
    rtt = max(0, ack_ts - syn_ts) if ack_ts >= 0 else None
    threshold = IDLE_MIN_NS if rtt is None else max(IDLE_MIN_NS, IDLE_RTT_FACTOR * rtt)
    events: list[tuple[int, int | None, str, str, str]] = [
        (syn_ts, row[K_SYN_FRAME], "client", "syn", ""),
        (row[K_SYNACK_TS], row[K_SYNACK_FRAME], "server", "synack", ""),
    ]
    add = events.append
    state = _IDLE
    last: int | None = None  # last activity
    idle_before: int | None = None
    line = None

    def request(ts: int, frame: int, line: str | None) -> None:
        """A request, after the idle gap before it if there was one."""
        nonlocal state
        if last is not None and (state is _IDLE or state is _CLOSING) and ts - last >= threshold:
            if len(events) < MAX_EVENTS:
                add((last + threshold, None, "none", "idle_gap", f"idle {(ts - last) / NS:.3f} s"))
            if state is _IDLE:
                state = _KEEPALIVE
        if len(events) < MAX_EVENTS:
            add((ts, frame, "client", "request", line))

    cf, rf, qf = row[K_CFIN_FRAME], row[K_RST_FRAME], row[K_LATE_FRAME]
    if rf and cf and not qf:  # a client that gave up on its request (``Block.derived``)
        x, line = ex[0], block.lines[x0]
        add((x[X_QTS], x[X_QFRAME], "client", "request", line))
        add((row[K_CFIN_TS], cf, "client", "fin", ""))
        add((x[X_ATS], x[X_AFRAME], "server", "response", block.details[x0]))
        add((x[X_LTS], x[X_LFRAME], "server",
             "response_end_close" if block.close[x0] else "response_end", ""))  # fmt: skip
        add((row[K_RST_TS], rf, "client", "rst", f"ttl {row[K_RST_TTL]} vs {row[K_CTTL]}"))
        return events, state, x[X_QTS], None, line, (cf, row[K_CFIN_TS], "client")
    for k, x in enumerate(ex):
        ts = x[X_QTS]
        idle_before = None if last is None else ts - last
        line = block.lines[x0 + k]
        close = bool(block.close[x0 + k])
        request(ts, x[X_QFRAME], line)
        if len(events) < MAX_EVENTS:
            add((x[X_ATS], x[X_AFRAME], "server", "response", block.details[x0 + k]))
        if x[X_LFRAME] < 0:  # cut short by the client's RST (``Lane._block``)
            state = _RECEIVING
        else:
            if len(events) < MAX_EVENTS:
                add((x[X_LTS], x[X_LFRAME], "server",
                     "response_end_close" if close else "response_end", ""))  # fmt: skip
            state = _CLOSING if close else _IDLE
        last = x[X_LTS]
    sf = row[K_SFIN_FRAME]
    if qf and not rf:  # a request, then the server's FIN and the client's (never idle)
        qts, line = row[K_LATE_TS], block.late[j]
        idle_before = None if last is None else qts - last
        request(qts, qf, line)
        last = qts  # (the request: the idle time at the close is since it)
        add((row[K_SFIN_TS], sf, "server", "fin", ""))
        add((row[K_CFIN_TS], cf, "client", "fin", ""))
        return events, state, last, idle_before, line, (sf, row[K_SFIN_TS], "server")
    if qf and not sf:  # a request, then the server's RST
        qts, line = row[K_LATE_TS], block.late[j]
        idle_before = None if last is None else qts - last
        request(qts, qf, line)
        t1 = row[K_RST_TS]
        add((t1, rf, "server", "rst", f"ttl {row[K_RST_TTL]} vs {row[K_STTL]}"))
        return events, state, qts, idle_before, line, (rf, t1, "server")
    # the FINs, in frame order; the first decides who closed and when (or the client's RST)
    fins = [(cf, row[K_CFIN_TS], "client"), (sf, row[K_SFIN_TS], "server")]
    if qf:  # the server's FIN, then a request, then the server's RST
        fins = [(sf, row[K_SFIN_TS], "server")]
    elif rf:
        fins = [(rf, row[K_RST_TS], "client")]
    elif sf < cf:
        fins.reverse()
    f1, t1, who = fins[0]
    if last is not None and (state is _IDLE or state is _CLOSING) and t1 - last >= threshold:
        if len(events) < MAX_EVENTS:
            add((last + threshold, None, "none", "idle_gap", f"idle {(t1 - last) / NS:.3f} s"))
        if state is _IDLE:
            state = _KEEPALIVE
    if qf:
        add((t1, f1, who, "fin", ""))
        qts, line = row[K_LATE_TS], block.late[j]
        idle_before = None if last is None else qts - last
        if len(events) < MAX_EVENTS:  # (in a closing state: no idle gap is looked for)
            add((qts, qf, "client", "request", line))
        add((row[K_RST_TS], rf, "server", "rst", f"ttl {row[K_RST_TTL]} vs {row[K_STTL]}"))
    elif rf:  # as ``Connection.rst`` writes it
        add((t1, f1, who, "rst", f"ttl {row[K_RST_TTL]} vs {row[K_CTTL]}"))
    else:
        add((t1, f1, who, "fin", ""))
        f2, t2, other = fins[1]
        add((t2, f2, other, "fin", ""))  # the outcome: no idle gap is looked for
    return events, state, last, idle_before, line, (f1, t1, who)


def record(block: Block, j: int, path: str, t0: int) -> ConnectionRecord:
    """``explain(conn)`` for connection ``j`` of ``block``, without the connection: its
    events and the machine's path through them, written out (the template only ever
    takes these transitions; ``tests/test_fastlane.py`` holds this equal to replaying it
    through ``Connection`` and ``explain``). A table reads ``rows`` and ``events``."""
    row = block.rows[j].tolist()
    n = int(block.nex[j])
    syn_ts, ack_ts = row[K_SYN_TS], row[K_ACK_TS]
    rtt = max(0, ack_ts - syn_ts) if ack_ts >= 0 else None
    events, state, last, idle_before, line, (f1, t1, who) = _path(block, j, row)
    idle_close = None if last is None else t1 - last
    # a request: then a race, the server's reset, or its FIN
    unanswered = row[K_LATE_FRAME] != 0
    race = unanswered and row[K_RST_FRAME] != 0 and row[K_SFIN_FRAME] != 0
    rst = row[K_RST_FRAME]
    if unanswered:
        code = O_SCLOSE if not rst else O_RACE if race else O_SRESET
    else:
        code = (O_GAVEUP if rst and row[K_CFIN_FRAME] else O_CRESET if rst else
                O_CLIENT if who == "client" else O_TRUNC if state is _RECEIVING else
                O_IDLE if state is _KEEPALIVE else O_SERVER)  # fmt: skip
    if code in _OWN:
        evidence = _ev_head(block, j, t0) + _extra(block, j, t0)
    else:
        evidence = _evidence(code, f1, t1, t0, idle_close or 0, n)
    outcome = _OUTCOMES[code]
    ipver = row[K_IPVER]
    history = _history(row[K_HIST], row[K_NHIST])
    rec = ConnectionRecord(
        id=0,
        capture=path,
        ip_version=ipver,
        client_ip=_addr(ipver, row[K_CHI] & _M64, row[K_CLO] & _M64),
        client_port=row[K_CPORT],
        server_ip=_addr(ipver, row[K_SHI] & _M64, row[K_SLO] & _M64),
        server_port=row[K_SPORT],
        start_ns=syn_ts,
        end_ns=row[K_END_TS],
        outcome=outcome,
        closed_by=who,
        close_ns=t1,
        close_frame=f1,
        evidence=evidence,
        client_packets=row[K_CPKTS],
        server_packets=row[K_SPKTS],
        client_bytes=row[K_CBYTES],
        server_bytes=row[K_SBYTES],
        requests=n + unanswered,
        responses=n,
        handshake="full",
        first_frame=row[K_SYN_FRAME],
        last_frame=row[K_LAST_FRAME],
        zeek_conn_state=_STATES[code],
        zeek_history=history,
        zeek_rows=[(syn_ts, _STATES[code], history)],
        client_errors=_own_errors(block, j) or _ERRORS[code],
        syn_count=1,
        rtt_ms=None if rtt is None else round(rtt / 1e6, 3),
        idle_before_close_s=None if idle_close is None else idle_close / NS,
        keepalive_race=race,
        last_request=line,
        anomalies=_notes(block, j),
        events=events,
    )
    if n + unanswered > 1 and idle_before is not None:
        rec.reused_after_idle_s = idle_before / NS
    rec.server_ttl, rec.client_ttl = row[K_STTL], row[K_CTTL]
    if unanswered and row[K_RST_FRAME]:  # the server's RST
        rec.reset_ttl = row[K_RST_TTL]
        rec.stale = bool(block.derived()["stale"][j])
    rec.cause, rec.fix = _CAUSES[code]
    return rec


def rows(block: Block, path: str, t0: int) -> list[tuple[Any, ...]]:
    """``row_of(record(block, j, path, t0))`` for every connection of ``block``
    (``_store.ROW`` order), from its columns: a table of connections (CSV
    aside: the notebook's DataFrame, the HTML report) then makes each record once from
    its row, not twice. ``tests/test_fastlane.py`` holds the two equal."""
    from pcapdiag._store import ROW, row_of

    m = len(block)
    if not m:
        return []
    d = block.derived()
    r = block.rows
    n = block.nex
    template = list(row_of(record(block, 0, path, t0)))
    outcome = d["outcome"].tolist()
    f1, t1 = d["f1"].tolist(), d["t1"].tolist()
    some = (d["requests"] > 0).tolist()  # a request made the idle time
    idle = d["idle"].tolist()
    rtt = d["rtt"].tolist()
    has_ack = d["has_ack"].tolist()
    reused = d["reused"].tolist()
    hist, hat = _distinct_pairs(r[:, K_HIST], r[:, K_NHIST])
    htexts = [_history(a, b) for a, b in hist]
    histories = [htexts[k] for k in hat.tolist()]
    caddrs = _addresses(block, K_CHI, K_CLO)
    saddrs = _addresses(block, K_SHI, K_SLO)
    cols = {name: r[:, col].tolist() for name, col in (
        ("ip_version", K_IPVER), ("client_port", K_CPORT), ("server_port", K_SPORT),
        ("start_ns", K_SYN_TS), ("end_ns", K_END_TS), ("client_packets", K_CPKTS),
        ("server_packets", K_SPKTS), ("client_bytes", K_CBYTES), ("server_bytes", K_SBYTES),
        ("first_frame", K_SYN_FRAME), ("last_frame", K_LAST_FRAME), ("server_ttl", K_STTL),
        ("client_ttl", K_CTTL),
    )}  # fmt: skip
    nx = n.tolist()
    nq = d["requests"].tolist()
    race = d["race"]
    cols.update(
        client_ip=caddrs,
        server_ip=saddrs,
        outcome=[_OUTCOMES[o] for o in outcome],
        closed_by=[_CLOSED_BY[o] for o in outcome],
        close_ns=t1,
        close_frame=f1,
        evidence=_evidences(block, t0),
        requests=nq,
        responses=nx,
        zeek_history=histories,
        client_errors=_errors(block, outcome),
        cause=[_CAUSES[o][0] for o in outcome],
        fix=[_CAUSES[o][1] for o in outcome],
        rtt_ms=[round(v / 1e6, 3) if a else None for v, a in zip(rtt, has_ack, strict=True)],
        idle_before_close_s=[i / NS if k else None for i, k in zip(idle, some, strict=True)],
        keepalive_race=race.tolist(),
        reused_after_idle_s=[u / NS if x > 1 else None for u, x in zip(reused, nq, strict=True)],
        last_request=_last_requests(block),
        reset_ttl=[
            t if q > k and f else None
            for t, f, q, k in zip(
                r[:, K_RST_TTL].tolist(), r[:, K_RST_FRAME].tolist(), nq, nx, strict=True
            )
        ],
        stale=d["stale"].tolist(),
    )
    cols["anomalies"] = [[] for _ in range(m)]
    for j in np.flatnonzero(d["trunc"]).tolist():
        cols["anomalies"][j] = _notes(block, j)
    states = [_STATES[o] for o in outcome]
    cols["zeek_conn_state"] = states
    cols["zeek_rows"] = [
        [(t, z, h)] for t, z, h in zip(cols["start_ns"], states, histories, strict=True)
    ]
    # every field not set above is the same in every row: the first record's
    columns = [cols.get(name) or repeat(v, m) for name, v in zip(ROW, template, strict=True)]
    return list(zip(*columns, strict=True))


def _distinct(block: Block, hi: int, lo: int) -> tuple[list[str], np.ndarray]:
    """The distinct addresses of columns ``hi``/``lo`` (a capture's are few next to its
    connections), and each connection's index among them."""
    r = block.rows
    ver, his, los = r[:, K_IPVER], r[:, hi], r[:, lo]
    if len(r) and (ver == ver[0]).all() and (his == his[0]).all():  # the usual: IPv4
        uniq, inverse = _arrays.factorize(los)
        v, h = int(ver[0]), int(his[0]) & _M64
        texts = [_addr(v, h, low) for low in uniq.view(np.uint64).tolist()]
    else:
        keys = np.stack([ver, his, los], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        u = uniq.view(np.uint64)
        texts = [
            _addr(v, h, low)
            for v, h, low in zip(
                uniq[:, 0].tolist(), u[:, 1].tolist(), u[:, 2].tolist(), strict=True
            )
        ]
    return texts, inverse.reshape(-1)


def _addresses(block: Block, hi: int, lo: int) -> list[str]:
    """Each connection's address of columns ``hi``/``lo``."""
    texts, inverse = _distinct(block, hi, lo)
    return [texts[k] for k in inverse.tolist()]


def _endpoints(block: Block) -> tuple[list[str], list[str], list[str], list[str]]:
    """Each connection's client and server endpoints (``[v6]:port`` as ``_endpoint``
    writes them), and its client and server addresses."""
    r = block.rows
    caddrs = _addresses(block, K_CHI, K_CLO)
    saddrs = _addresses(block, K_SHI, K_SLO)
    six = (r[:, K_IPVER] == 6).tolist()
    clients = [
        f"[{a}]:{p}" if v6 else f"{a}:{p}"
        for a, p, v6 in zip(caddrs, r[:, K_CPORT].tolist(), six, strict=True)
    ]
    servers = [
        f"[{a}]:{p}" if v6 else f"{a}:{p}"
        for a, p, v6 in zip(saddrs, r[:, K_SPORT].tolist(), six, strict=True)
    ]
    return clients, servers, caddrs, saddrs


def facts(block: Block) -> dict[str, Any]:
    """What ``CrossFacts.add`` reads of each record, as columns (``CrossFacts.add_block``):
    the hashes and TTL keys once per distinct (client, server, port), (server, TTL)."""
    d = block.derived()
    r = block.rows
    ctexts, ci = _distinct(block, K_CHI, K_CLO)
    stexts, si = _distinct(block, K_SHI, K_SLO)
    sport, cttl = r[:, K_SPORT], r[:, K_CTTL]
    pairs, pi = _arrays.factorize((ci * len(stexts) + si) * 65536 + sport)
    pair_hash = [
        hash((ctexts[k // 65536 // len(stexts)], stexts[k // 65536 % len(stexts)], k % 65536))
        for k in pairs.tolist()
    ]
    ttls, ti = _arrays.factorize(si * 65536 + cttl)  # TTLs are 0..255
    last = _last_requests(block)
    # a capture's request lines are few: each hashed once
    hashes = {q: 0 if q is None else request_hash(q) for q in set(last)}
    request = np.fromiter(map(hashes.__getitem__, last), np.uint32, len(last))
    race = d["race"]
    six = r[:, K_IPVER] == 6

    def server(j: int) -> str:
        return _endpoint(stexts[si[j]], int(sport[j]), 6 if six[j] else 4)

    # the idle gaps before a server's close (idle closes and races), the races' reuse
    gapped = np.flatnonzero((d["outcome"] == O_IDLE) | race).tolist()
    gaps = [(j, server(j), int(d["idle"][j]) / NS) for j in gapped]
    raced = np.flatnonzero(race).tolist()
    reuse = [(j, server(j), int(d["reused"][j]) / NS) for j in raced]
    t1 = d["t1"]
    failing = np.flatnonzero(race | d["sreset"] | d["sclose"]).tolist()
    failed = [(j, int(t1[j]), last[j]) for j in failing]  # a retry may follow
    return {
        "start": r[:, K_SYN_TS],
        "pair": np.array(pair_hash, np.int64)[pi.reshape(-1)],
        "request": request,
        "ttl_keys": [(stexts[k // 65536], k % 65536) for k in ttls.tolist()],
        "ttl_key": ti.reshape(-1),
        "ttl": r[:, K_STTL],
        "gaps": gaps,
        "reuse": reuse,
        "failed": failed,
    }


_CAUSE_JSON = [
    '"cause": null, "fix": null' if c is None else f'"cause": {_es(c)}, "fix": {_es(f)}'
    for c, f in _CAUSES
]
# each outcome's client_errors and keepalive_race, as ``report.data._line`` writes them
_JSON = json.JSONEncoder(ensure_ascii=False)
_ERRORS_JSON = [_JSON.encode(e) for e in _ERRORS]
_RACE_JSON = ["true" if o == O_RACE else "false" for o in range(len(_OUTCOMES))]


def json_tails(block: Block, path: str, t0: int) -> list[str]:
    """Each connection's JSON line (``report.data._line`` of its record) from after its
    id: ``'{"id": N, ' + tail``. Kept in step with ``record`` by the tests, which compare
    the JSON output of both lanes on every capture the lane takes."""
    d = block.derived()
    r = block.rows
    clients, servers, _, _ = _endpoints(block)
    cap = _es(path)
    n = block.nex.tolist()
    nq = d["requests"].tolist()
    reused = [
        repr(v / NS) if k > 1 else "null" for v, k in zip(d["reused"].tolist(), nq, strict=True)
    ]
    idle = d["idle"].tolist()
    idles = [repr(v / NS) if k else "null" for v, k in zip(idle, nq, strict=True)]
    rtt = [
        repr(round(v / 1e6, 3)) if a else "null"
        for v, a in zip(d["rtt"].tolist(), d["has_ack"].tolist(), strict=True)
    ]
    request = ["null" if q is None else _es(q) for q in _last_requests(block)]
    outcome, f1, t1 = d["outcome"].tolist(), d["f1"].tolist(), d["t1"].tolist()
    evidence = _evidences(block, t0)
    errors = [_ERRORS_JSON[o] for o in outcome]
    notes = ["[]"] * len(outcome)
    for j in np.flatnonzero(d["trunc"] | d["gaveup"]).tolist():
        errors[j] = _JSON.encode(_own_errors(block, j))
        notes[j] = _JSON.encode(_notes(block, j))
    hist = list(map(_history, r[:, K_HIST].tolist(), r[:, K_NHIST].tolist()))
    syn = r[:, K_SYN_TS].tolist()
    starts = [repr(t / NS) for t in syn]
    return [
        f'"capture": {cap}, "client": "{client}", "server": "{server}", "start": {start}, '
        f'"end": {end / NS!r}, "duration_s": {(end - syn) / NS!r}, "outcome": "{_OUTCOMES[o]}", '
        f'"closed_by": "{_CLOSED_BY[o]}", "close_time": {t / NS!r}, "close_frame": {f}, '
        f'"evidence": {_es(ev)}, "client_packets": {cpk}, "server_packets": {spk}, '
        f'"client_bytes": {cby}, "server_bytes": {sby}, "requests": {q}, "responses": {k}, '
        f'"handshake": "full", "tls": null, "icmp": null, "client_errors": {er}, '
        f'"zeek_conn_state": "{_STATES[o]}", "zeek_history": "{h}", "zeek_rows": [{{"ts": '
        f'{start}, "conn_state": "{_STATES[o]}", "history": "{h}"}}], "frames": [{first}, {lastf}], '
        f'{_CAUSE_JSON[o]}, "keepalive_race": {_RACE_JSON[o]}, "retry_of": null, '
        f'"reused_after_idle_s": {ru}, "idle_before_close_s": {ic}, "syn_count": 1, '
        f'"rtt_ms": {rt}, "last_request": {rq}, "count": 1, "decrypted": false, '
        f'"stale": {"true" if sl else "false"}, "h2": null, "proxy": null, "anomalies": {no}}}'
        for (client, server, syn, start, end, o, t, f, ev, cpk, spk, cby, sby, q, k, h, first,
             lastf, ru, ic, rt, rq, sl, er, no) in zip(
            clients, servers, syn, starts, r[:, K_END_TS].tolist(), outcome, t1,
            f1, evidence, r[:, K_CPKTS].tolist(), r[:, K_SPKTS].tolist(),
            r[:, K_CBYTES].tolist(), r[:, K_SBYTES].tolist(), nq, n, hist,
            r[:, K_SYN_FRAME].tolist(), r[:, K_LAST_FRAME].tolist(), reused, idles, rtt,
            request, d["stale"].tolist(), errors, notes, strict=True,
        )
    ]  # fmt: skip


# The lane's JSON lines, compiled (``_render``): the columns each row fills, then the
# template as ``report.data._line`` writes it for a record of the lane
(J_ID, J_CAP, J_CADDR, J_CPORT, J_SADDR, J_SPORT, J_START, J_END, J_DUR, J_OUTCOME,
 J_CLOSE, J_F1, J_EVHEAD, J_AT, J_EVMID, J_EXTRA, J_HASEXTRA, J_N, J_SERVER, J_EVTAIL,
 J_CPK, J_SPK, J_CBY, J_SBY, J_HIST, J_FIRST, J_LAST, J_CAUSE, J_REUSED, J_MULTI, J_IDLE,
 J_SOME, J_RTT, J_HASACK, J_REQ, J_STATE, J_EVSEP, J_NREQ, J_ERRORS, J_RACE, J_STALE,
 J_EVAT, J_NOTES, J_HASAT) = range(44)  # fmt: skip
NJ = 44
# each outcome's (``O_*``) evidence around its frame and time, and around its numbers
# (a race's evidence goes on in a string of its own, in ``J_EXTRA``)
_EV_HEAD = ("The client closed (FIN at frame ", "The server closed the idle connection "
            "(FIN at frame ", "The server closed (FIN at frame ",
            "The client reset the connection (RST at frame ",
            "Keep-alive race: the server closed the idle connection (FIN at frame ",
            "The server reset the connection (RST at frame ",
            "The server sent FIN at frame ", "The server sent FIN at frame ",
            "The client gave up (FIN at frame ")  # fmt: skip
# (a client that gave up: no time after the frame, ``J_HASAT``)
_EV_AT = (", t=", ", t=", ", t=", ", t=", ", t=", ", t=", " (t=", " (t=", "")
_EV_SEP = (" s) ", " s) ", " s) ", " s) ", " s", " s) ", " s), ", " s) ", ") ")
_EV_MID = ("with nothing outstanding.", "after ", "after completing ",
           "before closing it cleanly.", "", "", "", "in the middle of a response", "")  # fmt: skip
_EV_TAIL = ("", " without traffic; no request was outstanding.", " response(s).", "", "", "",
            "", "", "")  # fmt: skip
_PROGRAM: Any = None


def _program() -> Any:
    """The template of a lane record's JSON line (``report.data._line``)."""
    global _PROGRAM
    if _PROGRAM is None:
        from pcapdiag import _render as R

        p = R.Program()
        p.const('{"id": ')
        p.number(R.INT, J_ID)
        p.const(', "capture": ')
        p.string(J_CAP)
        for name, addr, port in (("client", J_CADDR, J_CPORT), ("server", J_SADDR, J_SPORT)):
            p.const(f', "{name}": "')
            p.string(addr)
            p.const(":")
            p.number(R.INT, port)
            p.const('"')
        for name, col in (("start", J_START), ("end", J_END), ("duration_s", J_DUR)):
            p.const(f', "{name}": ')
            p.number(R.SECONDS, col)
        p.const(", ")
        p.string(J_OUTCOME)
        p.const(', "close_time": ')
        p.number(R.SECONDS, J_CLOSE)
        p.const(', "close_frame": ')
        p.number(R.INT, J_F1)
        p.const(', "evidence": "')
        p.string(J_EVHEAD)
        p.number(R.INT, J_F1)
        p.string(J_EVAT)
        p.number(R.FIXED3, J_AT, J_HASAT, "")
        p.string(J_EVSEP)
        p.string(J_EVMID)
        p.string(J_EXTRA, J_HASEXTRA, "")
        p.number(R.INT, J_N, J_SERVER, "")
        p.string(J_EVTAIL)
        p.const('"')
        for name, col in (("client_packets", J_CPK), ("server_packets", J_SPK),
                          ("client_bytes", J_CBY), ("server_bytes", J_SBY),
                          ("requests", J_NREQ), ("responses", J_N)):  # fmt: skip
            p.const(f', "{name}": ')
            p.number(R.INT, col)
        p.const(', "handshake": "full", "tls": null, "icmp": null, "client_errors": ')
        p.string(J_ERRORS)
        p.const(', "zeek_conn_state": "')
        p.string(J_STATE)
        p.const('", "zeek_history": "')
        p.string(J_HIST)
        p.const('", "zeek_rows": [{"ts": ')
        p.number(R.SECONDS, J_START)
        p.const(', "conn_state": "')
        p.string(J_STATE)
        p.const('", "history": "')
        p.string(J_HIST)
        p.const('"}], "frames": [')
        p.number(R.INT, J_FIRST)
        p.const(", ")
        p.number(R.INT, J_LAST)
        p.const("], ")
        p.string(J_CAUSE)
        p.const(', "keepalive_race": ')
        p.string(J_RACE)
        p.const(', "retry_of": null, "reused_after_idle_s": ')
        p.number(R.SECONDS, J_REUSED, J_MULTI)
        p.const(', "idle_before_close_s": ')
        p.number(R.SECONDS, J_IDLE, J_SOME)
        p.const(', "syn_count": 1, "rtt_ms": ')
        p.number(R.MILLIS3, J_RTT, J_HASACK)
        p.const(', "last_request": ')
        p.string(J_REQ, J_SOME)
        p.const(', "count": 1, "decrypted": false, "stale": ')
        p.string(J_STALE)
        p.const(', "h2": null, "proxy": null, "anomalies": ')
        p.string(J_NOTES)
        p.const("}")
        _PROGRAM = (p.compile(), sum(1 for it in p.items if not isinstance(it, str)
                                     and it[0] == R.STR))  # fmt: skip
    return _PROGRAM


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The distinct pairs ``(a[i], b[i])`` in order, and each row's index among them.
    ``b`` is small (a count of Zeek's letters, 0..17): a row's pair is one key, its
    ``a``'s rank among the distinct ``a`` times 32 plus its ``b``, in the pairs' order
    (a lexsort of the two columns cost twice as much)."""
    assert not len(b) or (int(b.min()) >= 0 and int(b.max()) < 32), "b is a count"
    ua, ia = _arrays.factorize(a)
    keys, inverse = _arrays.factorize(ia * 32 + b)
    return list(zip(ua[keys // 32].tolist(), (keys % 32).tolist(), strict=True)), inverse


class Lines:
    """A block's JSON lines, ready to render (``_render``) for any span of ids: its
    columns, its string table, and the rows the kernel leaves to Python."""

    __slots__ = ("cols", "strings", "offsets", "longest", "python", "path", "t0", "block", "text",
                 "sep", "ids", "starts", "ends")  # fmt: skip

    def __init__(self, block: Block, path: str, t0: int) -> None:
        from pcapdiag import _render

        d = block.derived()
        r = block.rows
        m = len(r)
        n = block.nex
        o = d["outcome"]
        texts: list[str] = [_es(path)]
        cols = np.zeros((m, NJ), np.int64)
        cols[:, J_CAP] = 0
        # each outcome's strings, in blocks of one entry per outcome
        k = len(_OUTCOMES)
        for col, strings in (
            (J_OUTCOME, [f'"outcome": "{a}", "closed_by": "{b}"' for a, b in zip(_OUTCOMES, _CLOSED_BY, strict=True)]),
            (J_EVHEAD, _EV_HEAD), (J_EVAT, _EV_AT), (J_EVSEP, _EV_SEP), (J_EVMID, _EV_MID),
            (J_EVTAIL, _EV_TAIL), (J_CAUSE, _CAUSE_JSON), (J_STATE, _STATES),
            (J_ERRORS, _ERRORS_JSON), (J_RACE, _RACE_JSON),
        ):  # fmt: skip
            assert len(strings) == k
            cols[:, col] = len(texts) + o
            texts += strings
        six = r[:, K_IPVER] == 6
        for col, hi, lo in ((J_CADDR, K_CHI, K_CLO), (J_SADDR, K_SHI, K_SLO)):
            uniq, at = _distinct(block, hi, lo)
            # an IPv6 endpoint's address is written in brackets: entries of their own
            cols[:, col] = len(texts) + at + six * len(uniq)
            texts += uniq
            texts += [f"[{a}]" for a in uniq]
        hist, at = _distinct_pairs(r[:, K_HIST], r[:, K_NHIST])
        cols[:, J_HIST] = len(texts) + at
        texts += [_history(a, b) for a, b in hist]
        some = d["requests"] > 0  # (a request: its line, and the idle time at the close)
        last = _last_requests(block)
        reqs = list(set(last))  # a capture's request lines are few
        index = {q: k for k, q in enumerate(reqs)}
        cols[:, J_REQ] = len(texts) + np.fromiter(map(index.__getitem__, last), np.int64, m)
        texts += [_es(q) if q is not None else "null" for q in reqs]
        idle_rows = np.flatnonzero(o == O_IDLE)
        if len(idle_rows):
            cols[idle_rows, J_EXTRA] = len(texts) + np.arange(len(idle_rows))
            cols[idle_rows, J_HASEXTRA] = 1
            texts += [_s(v) for v in d["idle"][idle_rows].tolist()]
        own = np.flatnonzero(_own(d))
        if len(own):  # the rest of an evidence of its own (``_extra``), JSON-escaped
            cols[own, J_EXTRA] = len(texts) + np.arange(len(own))
            cols[own, J_HASEXTRA] = 1
            texts += [_es(_extra(block, j, t0))[1:-1] for j in own.tolist()]
        cols[:, J_HASAT] = o != O_GAVEUP  # (a client that gave up: no time)
        cols[:, J_NOTES] = len(texts)
        texts.append("[]")
        mine = np.flatnonzero(d["trunc"] | d["gaveup"])
        if len(mine):  # client_errors of its own, and anomalies
            cols[mine, J_ERRORS] = len(texts) + 2 * np.arange(len(mine))
            cols[mine, J_NOTES] = cols[mine, J_ERRORS] + 1
            for j in mine.tolist():
                texts += [_JSON.encode(_own_errors(block, j)), _JSON.encode(_notes(block, j))]
        cols[:, J_STALE] = len(texts) + d["stale"]
        texts += ["false", "true"]
        syn = r[:, K_SYN_TS]
        cols[:, J_CPORT], cols[:, J_SPORT] = r[:, K_CPORT], r[:, K_SPORT]
        cols[:, J_START], cols[:, J_END] = syn, r[:, K_END_TS]
        cols[:, J_DUR] = r[:, K_END_TS] - syn
        cols[:, J_CLOSE], cols[:, J_F1] = d["t1"], d["f1"]
        cols[:, J_AT] = d["t1"] - t0
        cols[:, J_N] = n
        cols[:, J_NREQ] = d["requests"]
        cols[:, J_SERVER] = o == O_SERVER
        cols[:, J_CPK], cols[:, J_SPK] = r[:, K_CPKTS], r[:, K_SPKTS]
        cols[:, J_CBY], cols[:, J_SBY] = r[:, K_CBYTES], r[:, K_SBYTES]
        cols[:, J_FIRST], cols[:, J_LAST] = r[:, K_SYN_FRAME], r[:, K_LAST_FRAME]
        cols[:, J_REUSED], cols[:, J_MULTI] = d["reused"], d["requests"] > 1
        cols[:, J_IDLE], cols[:, J_SOME] = d["idle"], some
        cols[:, J_RTT], cols[:, J_HASACK] = d["rtt"], d["has_ack"]
        self.cols = cols
        self.strings, self.offsets = _render.table(texts)
        self.longest = int(np.diff(self.offsets).max())
        self.python: dict[int, str] = {}  # rows the kernel could not write: their tails
        self.path, self.t0, self.block = path, t0, block
        self.text: bytes | memoryview | None = None  # every line, once rendered (``span``)
        self.sep = b""
        self.ids = self.starts = self.ends = np.zeros(0, np.int64)

    def span(self, j: int, m: int, ids: np.ndarray, sep: bytes) -> bytes | memoryview:
        """Lines ``j``..``j + m``, joined by ``sep``: a slice of the whole block's lines,
        rendered once with ``ids`` (each row's id; -1: a row no id reads). Records of
        several runs interleave in id order (the exact tracker's between the lane's, the
        shards of ``--jobs``), so a block is mostly read in short spans: slicing one text
        costs less than rendering each span (or splitting the text into lines)."""
        last = j + m - 1
        if (
            self.text is None
            or self.sep != sep
            # a span's ids are consecutive: its ends tell whether the text holds them
            or ids[j] != self.ids[j]
            or ids[last] != self.ids[last]
        ):
            self.text, self.ends = self.render(np.maximum(ids, 0), sep)
            self.sep, self.ids = sep, ids.copy()
            self.starts = np.insert(self.ends[:-1] + len(sep), 0, 0)
        return self.text[self.starts[j] : self.ends[last]]

    def render(self, ids: np.ndarray, sep: bytes) -> tuple[bytes | memoryview, np.ndarray]:
        """Every line, with the ids ``ids``, joined by ``sep`` (UTF-8; a view of the
        kernel's buffer unless a row needed Python), and where each line ends."""
        from pcapdiag import _render

        cols = self.cols.copy()
        cols[:, J_ID] = ids
        compiled, nstr = _program()
        text, bad, ends = _render.run(compiled, cols, self.strings, self.offsets, nstr, sep, self.longest)  # fmt: skip
        bad_rows = bad.tolist()
        missing = [b for b in bad_rows if b not in self.python]
        if missing:  # their tails, by Python, all at once (one by one, each paid a block's)
            tails = json_tails(self.block.select(np.array(missing)), self.path, self.t0)
            self.python.update(zip(missing, tails, strict=True))
        lines = {b: f'{{"id": {ids[b]}, {self.python[b]}'.encode() for b in bad_rows}
        return _render.splice(text, ends, sep, lines)
