"""The fast lane of connection tracking: ordinary connections without per-packet Python.

Why
    The exact tracker (``connections.Tracker``) costs 15–20 µs of Python a packet, and
    a busy server's capture is mostly connections with nothing to say: handshake, a few
    whole HTTP/1.x requests each answered in full, two FINs. A compiled walk (numba)
    follows every connection against a strict template of such a connection, with its
    per-connection state in numpy arrays; at its end, the connection is replayed from
    its handful of significant events (SYN, SYN-ACK, request and response boundaries,
    FINs) through the real ``Connection``, ``Machine`` and ``explain``, so its record is
    the one the exact tracker would make. Anything outside the template marks the
    connection's 4-tuple (by its symmetric 64-bit hash, sticky for the whole capture)
    for the exact tracker, which then sees every packet of that 4-tuple in a second
    pass over the capture. Records of a 4-tuple marked after some of its connections
    were already replayed come out of both lanes with the same first frame; the merge
    keeps the exact one. Tests compare both lanes on every real capture here.

The template (anything else: the exact tracker)
    A client SYN without payload, then the SYN-ACK (acknowledging it) within 5 s; then
    only ACK-flagged segments, each in sequence or a whole retransmission of data
    already sent (no reordering, partial overlap, window probe or keep-alive probe),
    captured whole, never a zero window, no RST, no URG, no silence over 100 s while
    open nor over 5 s once a side closed (Zeek would start a new row, and the exact
    tracker's sweeps come into play); payload only before the first FIN, starting with the client; at most one
    FIN per side; both FINs seen; after them only pure ACKs (a new SYN starts the next
    connection on the 4-tuple). Data turns alternate client, server: each client turn is
    one segment holding one whole request head without a body (not CONNECT, no
    upgrade), each server turn one final response whose first segment holds its whole
    head and whose Content-Length (or no body: HEAD, 204, 304) accounts for the turn's
    bytes exactly; at most ``MAX_TURNS`` turns. Heads must be ones the HTTP observer
    takes by its plain fast path (``_http._whole_head``); those are checked in Python,
    against the same parsers and caches.

numba is optional: without it (or with ``PCAPDIAG_FASTLANE=0``) every connection takes
the exact tracker. It is imported only for captures big enough to pay for its import and
compilation (``worth_it``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pcapdiag import _http
from pcapdiag.classify import Ev, Side
from pcapdiag.connections import (
    IDLE_MIN_NS,
    IDLE_RTT_FACTOR,
    MAX_EVENTS,
    Connection,
    _addr,
    _clip,
    _looks_like_http,
)
from pcapdiag.decode import IcmpError, TcpPackets, addr_halves
from pcapdiag.explain import CAUSES, ConnectionRecord, _at, _s, _shared, explain

NS = 1_000_000_000
MAX_TURNS = 4096  # data turns followed per connection (2,048 request/response exchanges)
CHUNK = 8  # turns are kept in chunks of this many, linked, from one pool
GAP_NS = 5 * NS  # longest silence the template allows around the handshake and the FINs
# ... and while the connection is open: Zeek starts a new row after 300 s of silence, the
# exact tracker lets a half-closed connection go after 120 s; both stay far away
IDLE_MAX_NS = 100 * NS
MIN_BYTES = 64 << 20  # captures smaller than this: the exact tracker alone

# Slot columns (int64): one row per connection being followed.
(K_HASH, K_CHI, K_CLO, K_SHI, K_SLO, K_CPORT, K_SPORT, K_IPVER, K_PHASE, K_SERIAL,
 K_SYN_TS, K_SYN_FRAME, K_ISN, K_SYNACK_TS, K_SYNACK_FRAME, K_SISN, K_ACK_TS, K_CNEXT,
 K_SNEXT, K_LAST_FRAME, K_END_TS, K_LAST_TS, K_CPKTS, K_SPKTS, K_CBYTES, K_SBYTES,
 K_CTTL, K_STTL, K_HIST, K_NHIST, K_CFIN_FRAME, K_CFIN_TS, K_SFIN_FRAME, K_SFIN_TS,
 K_TURN, K_NTURNS, K_CLDATA_TS, K_CLDATA_FRAME, K_SLDATA_TS, K_SLDATA_FRAME,
 K_CFDATA_FRAME, K_SFDATA_FRAME, K_USED, K_TFIRST, K_TLAST, K_TOFF, K_CRETX, K_SRETX
 ) = range(48)  # fmt: skip
NF = 48
# Turn columns: direction (0 client, 1 server), first segment's frame and time, bytes,
# last segment's frame and time, segments.
T_DIR, T_FRAME, T_TS, T_BYTES, T_LFRAME, T_LTS, T_NSEG = range(7)
NT = 7
# Phases
P_SYN, P_EST, P_DONE = 1, 2, 3
# Zeek history letters, as codes packed 4 bits each into K_HIST in order of appearance
LETTERS = "ShADadFfTt"
# ctl: free slots, next serial, emitted rows, head rows, dead serials, status, free turn
# chunks, emitted turns
C_NFREE, C_SERIAL, C_NOUT, C_NHEADS, C_NDEAD, C_STATUS, C_TFREE, C_NOUTT = range(8)
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
)
(W_TUPLE, W_TIME, W_RSTURG, W_WINDOW, W_DONE_SYN, W_DONE_SEG, W_HANDSHAKE, W_SEQ,
 W_FIN_TWICE, W_DATA_CLOSED, W_TURNS, W_OPEN, W_ICMP, W_MIDSTREAM, W_HTTP) = range(15)  # fmt: skip
ST_DONE, ST_GROW, ST_FULL = 0, 1, 2

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
    """Use the fast lane for this much capture? numba's import (~0.7 s) and loading the
    compiled kernels from its cache pay off from a few hundred thousand packets."""
    forced = enabled()
    if forced is not None:
        return forced and kernels() is not None
    return total_bytes >= MIN_BYTES and kernels() is not None


def kernels() -> Any:
    """The compiled kernels, or None when numba is unavailable."""
    global _kernels
    if _kernels is None:
        try:
            from pcapdiag import _fastlane_kernels

            _kernels = _fastlane_kernels
            _warm()
        except Exception:  # no numba, or it cannot compile here: the exact tracker only
            _kernels = False
    return _kernels or None


def _warm() -> None:
    """Compile (or load from numba's cache) every kernel for the types analysis passes,
    so that a failure shows here, where it means "no fast lane", not mid-capture."""
    z = np.zeros(1, np.int64)
    pk = TcpPackets(
        data=np.zeros(64, np.uint8), frame=z, ts_ns=z, ipver=np.array([4], np.uint8),
        src_hi=z.view(np.uint64), src_lo=z.view(np.uint64), dst_hi=z.view(np.uint64),
        dst_lo=z.view(np.uint64), sport=np.zeros(1, np.uint16), dport=np.zeros(1, np.uint16),
        seq=np.zeros(1, np.uint32), ack=np.zeros(1, np.uint32), flags=np.zeros(1, np.uint8),
        window=np.zeros(1, np.uint16), payload_len=np.zeros(1, np.int32), payload_off=z,
        payload_cap=np.zeros(1, np.int32), ttl=np.zeros(1, np.uint8), ip_id=np.zeros(1, np.uint16),
    )  # fmt: skip
    lane = Lane(lambda rec: None, 0, "", 0)
    lane.feed(pk, packet_hashes(pk), 0)
    lane.flag_icmp(IcmpError(0, 0, 4, "10.0.0.1", 3, 3, "10.0.0.1", "10.0.0.2", 1, 2, 0))
    lane.close()


_M64 = (1 << 64) - 1
_NONE_ERRORS = _shared(
    {"stdlib": None, "requests": None, "aiohttp": None, "httpx": None, "errno": None}
)
_IDLE, _KEEPALIVE, _CLOSING = (object() for _ in range(3))


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def tuple_hash(shi: int, slo: int, sport: int, dhi: int, dlo: int, dport: int) -> int:
    """The fast lane's 4-tuple key (as ``_fastlane_kernels.hashes``), either direction."""
    return _mix(shi ^ _mix(slo ^ _mix(sport))) ^ _mix(dhi ^ _mix(dlo ^ _mix(dport)))


def packet_hashes(pk: TcpPackets) -> np.ndarray:
    """The fast lane's 4-tuple key of each packet (uint64)."""
    return kernels().hashes(pk.src_hi, pk.src_lo, pk.sport, pk.dst_hi, pk.dst_lo, pk.dport)


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


_REQ_CACHE: dict[bytes, _Verdict | None] = {}
_RESP_CACHE: dict[tuple[bytes, str], _Verdict | None] = {}
_CACHE_MAX = 4096


def _cached(cache: dict, key: Any, make: Callable[[], _Verdict | None]) -> _Verdict | None:
    v = cache.get(key, False)
    if v is False:
        v = make()
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = v
    return v


def _request(data: bytes) -> _Verdict | None:
    """A request turn's only segment: one whole head, no body (cached by its bytes)."""
    return _cached(_REQ_CACHE, data, lambda: _parse_request(data))


def _parse_request(data: bytes) -> _Verdict | None:
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


def _response(data: bytes, method: str) -> _Verdict | None:
    """A response turn's first segment: a whole final head and its body's length (cached
    by its bytes, when they are few)."""
    if len(data) > 4096:
        return _parse_response(data, method)
    return _cached(_RESP_CACHE, (data, method), lambda: _parse_response(data, method))


def _parse_response(data: bytes, method: str) -> _Verdict | None:
    got = _head(data, False)
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


class _Zeek:
    """What ``explain`` reads of a ``ZeekConn``: one row, ``SF``, and its history."""

    __slots__ = ("rows",)

    def __init__(self, ts: int, history: str) -> None:
        self.rows = [(ts, _ZeekRow(history))]

    @property
    def first(self) -> _ZeekRow:
        return self.rows[0][1]


class _ZeekRow:
    __slots__ = ("history",)

    def __init__(self, history: str) -> None:
        self.history = history

    def conn_state(self) -> str:
        return "SF"

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


class Lane:
    """Follows one shard of one capture set in the fast lane; ``feed`` batches in order,
    then ``close``. Connections it completes go to ``on_finished`` as the exact tracker's
    would; ``flagged`` (after ``close``) is what the exact tracker must see."""

    def __init__(
        self,
        on_record: Callable[[ConnectionRecord], None],
        capture: int,
        path: str,
        t0: int,
        oracle: bool = False,
    ) -> None:
        k = kernels()
        assert k is not None
        self.k = k
        self.on_record = on_record
        self.capture = capture
        self.path = path
        self.t0 = t0
        # Replay through Connection and explain() instead of building the record here:
        # slower, and what the tests compare the direct records with
        self.oracle = oracle
        self.table, self.flagged = k.new_tables()
        self.cap = 0
        self.st = np.zeros((0, NF), np.int64)
        self.free = np.zeros(0, np.int64)
        self.pool = 0
        self.tu = np.zeros((0, CHUNK, NT), np.int64)
        self.tnext = np.zeros(0, np.int64)
        self.tfree = np.zeros(0, np.int64)
        self.ctl = np.zeros(C_WHY + 32, np.int64)
        self._grow(4096)
        self._grow_pool(4096)
        self.heads: dict[int, list[bytes]] = {}
        self.next_id = 0
        self.replayed = 0

    def _grow(self, more: int) -> None:
        old = self.cap
        self.cap = new = old + more
        st = np.zeros((new, NF), np.int64)
        st[:old] = self.st
        self.st = st
        self.free = self._stack(self.free, C_NFREE, old, new)
        self.out = np.zeros((new, NF), np.int64)
        self.out_t = np.zeros((max(4 * new, 2 * MAX_TURNS), NT), np.int64)

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

    def feed(self, pk: TcpPackets, h: np.ndarray, clock: int) -> None:
        """One batch of this shard's TCP packets (``h``: their 4-tuple hashes)."""
        n = len(pk)
        heads = np.zeros((max(n, 1), 2), np.int64)
        dead = np.zeros(0, np.int64)
        i = 0
        hv = h.view(np.int64)
        while True:
            if len(dead) < n + self.cap:  # a slot let go per packet, and a sweep's worth
                dead = np.zeros(n + self.cap, np.int64)
            i = self.k.walk(
                i, pk.frame, pk.ts_ns, pk.ipver, pk.src_hi.view(np.int64),
                pk.src_lo.view(np.int64), pk.dst_hi.view(np.int64), pk.dst_lo.view(np.int64),
                pk.sport, pk.dport, pk.seq, pk.ack, pk.flags, pk.window, pk.payload_len,
                pk.payload_cap, pk.ttl, hv, self.table, self.flagged, self.st, self.tu,
                self.tnext, self.tfree, self.free, self.ctl, self.out, self.out_t, heads, dead,
            )  # fmt: skip
            self._drain(pk, heads, dead)
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
        self.k.sweep(clock, self.table, self.flagged, self.st, self.free, self.ctl,
                     self.out, self.out_t, self.tu, self.tnext, self.tfree, dead)  # fmt: skip
        self._drain(None, heads, dead)

    def flag_icmp(self, err: IcmpError) -> None:
        """An ICMP error quotes a 4-tuple: the exact tracker must see it."""
        try:
            shi, slo = addr_halves(err.src)
            dhi, dlo = addr_halves(err.dst)
        except ValueError:
            return
        h = tuple_hash(shi, slo, err.sport, dhi, dlo, err.dport)
        dead = np.zeros(2, np.int64)
        self.k.flag_key(np.int64(np.uint64(h).view(np.int64)), self.table, self.flagged,
                        self.st, self.free, self.ctl, self.tnext, self.tfree, dead)  # fmt: skip
        self._drain(None, np.zeros((1, 2), np.int64), dead)

    def close(self) -> np.ndarray:
        """End of the capture set: connections done are replayed, the rest go exact.
        Returns the 4-tuple hashes the exact tracker must see (uint64, sorted)."""
        dead = np.zeros(self.cap + 1, np.int64)
        while True:  # the output may not hold them all at once
            self.k.finish(self.table, self.flagged, self.st, self.free, self.ctl, self.out,
                          self.out_t, self.tu, self.tnext, self.tfree, dead)  # fmt: skip
            more = self.ctl[C_STATUS] == ST_FULL
            self._drain(None, np.zeros((1, 2), np.int64), dead)
            if not more:
                break
        self._drain(None, np.zeros((1, 2), np.int64), dead)
        keys = np.array(sorted(self.k.keys(self.flagged)), np.int64).view(np.uint64)
        return np.sort(keys)

    @property
    def why(self) -> dict[str, int]:
        """Connections (or stray packets' 4-tuples) handed to the exact tracker, by reason."""
        return {w: int(self.ctl[C_WHY + k]) for k, w in enumerate(WHY) if self.ctl[C_WHY + k]}

    # -----------------------------------------------------------------------------------
    def _drain(self, pk: TcpPackets | None, heads: np.ndarray, dead: np.ndarray) -> None:
        ctl = self.ctl
        nh = int(ctl[C_NHEADS])
        if nh:
            assert pk is not None
            raw = memoryview(pk.data)
            rows = heads[:nh, 1]
            starts = pk.payload_off[rows]
            book = self.heads
            for serial, o, e in zip(
                heads[:nh, 0].tolist(),
                starts.tolist(),
                (starts + pk.payload_cap[rows]).tolist(),
                strict=True,
            ):
                got = book.get(serial)
                if got is None:
                    book[serial] = [raw[o:e].tobytes()]
                else:
                    got.append(raw[o:e].tobytes())
            ctl[C_NHEADS] = 0
        nd = int(ctl[C_NDEAD])
        if nd:
            for serial in dead[:nd].tolist():
                self.heads.pop(serial, None)
            ctl[C_NDEAD] = 0
        no = int(ctl[C_NOUT])
        if no:
            rows = self.out[:no]
            # in order of first frame, as the record store likes them (a sweep lets
            # connections go in slot order)
            order = np.argsort(rows[:, K_SYN_FRAME], kind="stable")
            turns = self.out_t[: int(ctl[C_NOUTT])].tolist()
            for row in rows[order].tolist():
                rec = self._build(row, turns)
                if rec is None:
                    self.k.flag_hash(row[K_HASH], self.flagged)
                    ctl[C_WHY + W_HTTP] += 1
                else:
                    self.replayed += 1
                    self.on_record(rec)
            ctl[C_NOUT] = 0
            ctl[C_NOUTT] = 0

    def _build(self, row: list[int], tu: list[list[int]]) -> ConnectionRecord | None:
        """The record the exact tracker would make of a connection the walk followed to
        its end; None when its HTTP does not fit the template after all."""
        segs = self.heads.pop(row[K_SERIAL], None)
        nturns = row[K_NTURNS]
        if nturns % 2 or (nturns and (segs is None or len(segs) != nturns)):
            return None
        if row[K_NHIST] > 16:  # Zeek's history outgrew its 16 letters
            return None
        off = row[K_TOFF]
        turns = tu[off : off + nturns]
        exchanges = []
        for t in range(0, nturns, 2):
            q, a = turns[t], turns[t + 1]
            req = _request(segs[t])  # type: ignore[index]
            if req is None or q[T_NSEG] != 1 or q[T_BYTES] != req.size:
                return None
            if t == 0 and not _looks_like_http(segs[0][:16]):  # type: ignore[index]
                return None
            resp = _response(segs[t + 1], req.method)  # type: ignore[index]
            if resp is None or a[T_BYTES] != resp.size + resp.body:
                return None
            if len(segs[t + 1]) > a[T_BYTES]:  # type: ignore[index]
                return None
            exchanges.append((q, req, a, resp))
        if self.oracle:
            conn = self._replay(row, exchanges)
            return None if conn is None else explain(conn, self.path, self.t0)
        return self._record(row, exchanges)

    def _record(self, row: list[int], exchanges: list) -> ConnectionRecord | None:
        """``explain(conn)`` for a connection of the template, without the connection:
        its events and the machine's path through them, written out (the template only
        ever takes these transitions; ``tests/test_fastlane.py`` holds this equal to
        replaying it through ``Connection`` and ``explain``)."""
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
        close = False
        idle_before: int | None = None
        line = None
        for q, req, a, resp in exchanges:
            ts = q[T_TS]
            idle_before = None if last is None else ts - last
            if last is not None and state is not _KEEPALIVE and ts - last >= threshold:
                if len(events) < MAX_EVENTS:
                    add(
                        (
                            last + threshold,
                            None,
                            "none",
                            "idle_gap",
                            f"idle {(ts - last) / NS:.3f} s",
                        )
                    )
                if state is _IDLE:
                    state = _KEEPALIVE
            if len(events) < MAX_EVENTS:
                add((ts, q[T_FRAME], "client", "request", req.line))
            if len(events) < MAX_EVENTS:
                add((a[T_TS], a[T_FRAME], "server", "response", resp.detail))
            close = resp.close
            if len(events) < MAX_EVENTS:
                add((a[T_LTS], a[T_LFRAME], "server",
                     "response_end_close" if close else "response_end", ""))  # fmt: skip
            state = _CLOSING if close else _IDLE
            last = a[T_LTS]
            line = req.line
        # the FINs, in frame order; the first decides who closed and when
        cf, sf = row[K_CFIN_FRAME], row[K_SFIN_FRAME]
        fins = [(cf, row[K_CFIN_TS], "client"), (sf, row[K_SFIN_TS], "server")]
        if sf < cf:
            fins.reverse()
        (f1, t1, who), (f2, t2, other) = fins
        idle_close = None if last is None else t1 - last
        if last is not None and state is not _KEEPALIVE and t1 - last >= threshold:
            if len(events) < MAX_EVENTS:
                add((last + threshold, None, "none", "idle_gap", f"idle {(t1 - last) / NS:.3f} s"))
            if state is _IDLE:
                state = _KEEPALIVE
        add((t1, f1, who, "fin", ""))
        add((t2, f2, other, "fin", ""))  # the outcome: no idle gap is looked for
        if who == "client":
            outcome = "client_close"
            evidence = f"The client closed (FIN at frame {f1}, {_at(t1, self.t0)}) with nothing outstanding."
        elif state is _KEEPALIVE:
            outcome = "server_idle_close"
            evidence = f"The server closed the idle connection (FIN at frame {f1}, {_at(t1, self.t0)}) after {_s(idle_close)} without traffic; no request was outstanding."
        else:
            outcome = "server_close"
            evidence = f"The server closed (FIN at frame {f1}, {_at(t1, self.t0)}) after completing {len(exchanges)} response(s)."
        ipver = row[K_IPVER]
        history = _history(row[K_HIST], row[K_NHIST])
        n = len(exchanges)
        rec = ConnectionRecord(
            id=0,
            capture=self.path,
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
            requests=n,
            responses=n,
            handshake="full",
            first_frame=row[K_SYN_FRAME],
            last_frame=row[K_LAST_FRAME],
            zeek_conn_state="SF",
            zeek_history=history,
            zeek_rows=[(syn_ts, "SF", history)],
            client_errors=_NONE_ERRORS,
            syn_count=1,
            rtt_ms=None if rtt is None else round(rtt / 1e6, 3),
            idle_before_close_s=None if idle_close is None else idle_close / NS,
            last_request=line,
            anomalies=[],
            events=events,
        )
        if n > 1 and idle_before is not None:
            rec.reused_after_idle_s = idle_before / NS
        rec.server_ttl, rec.client_ttl = row[K_STTL], row[K_CTTL]
        if outcome in CAUSES:
            rec.cause, rec.fix = CAUSES[outcome]
        return rec

    def _replay(self, row: list[int], exchanges: list) -> Connection | None:
        """The connection the exact tracker would finish, from its significant events."""
        actions: list[tuple[int, int, int, Any, Any]] = []
        for q, req, a, resp in exchanges:
            actions.append((q[T_FRAME], 0, 0, q, req))
            actions.append((a[T_FRAME], 1, 1, a, resp))
            actions.append((a[T_LFRAME], 2, 2, a, resp))
        actions.append((row[K_CFIN_FRAME], 3, 3, True, None))
        actions.append((row[K_SFIN_FRAME], 3, 3, False, None))
        actions.sort(key=lambda x: (x[0], x[1]))
        nturns = 2 * len(exchanges)

        ipver = row[K_IPVER]
        conn = Connection(self.next_id, self.capture, ipver)
        self.next_id += 1
        chi, clo, shi, slo = (
            row[K_CHI] & _M64, row[K_CLO] & _M64, row[K_SHI] & _M64, row[K_SLO] & _M64
        )  # fmt: skip
        cport, sport = row[K_CPORT], row[K_SPORT]
        conn.c_addr, conn.c_port = _addr(ipver, chi, clo), cport
        conn.s_addr, conn.s_port = _addr(ipver, shi, slo), sport
        conn.keys = ((chi, clo, cport, shi, slo, sport), (shi, slo, sport, chi, clo, cport))
        conn.zeek = _Zeek(row[K_SYN_TS], _history(row[K_HIST], row[K_NHIST]))  # type: ignore[assignment]
        conn.start_ts = row[K_SYN_TS]
        conn.end_ts = row[K_END_TS]
        conn.first_frame = row[K_SYN_FRAME]
        conn.last_frame = row[K_LAST_FRAME]
        c, s = conn.c, conn.s
        c.packets, s.packets = row[K_CPKTS], row[K_SPKTS]
        c.bytes, s.bytes = row[K_CBYTES], row[K_SBYTES]
        c.ttl, s.ttl = row[K_CTTL], row[K_STTL]
        if c.bytes:
            c.first_data_frame, c.last_data_frame = row[K_CFDATA_FRAME], row[K_CLDATA_FRAME]
            c.last_data_ts = row[K_CLDATA_TS]
        if s.bytes:
            s.first_data_frame, s.last_data_frame = row[K_SFDATA_FRAME], row[K_SLDATA_FRAME]
            s.last_data_ts = row[K_SLDATA_TS]
        conn.isn = row[K_ISN]
        conn.syn_ts.append(row[K_SYN_TS])
        conn.syn_frames.append(row[K_SYN_FRAME])
        conn.emit(_C, Ev.SYN, row[K_SYN_TS], row[K_SYN_FRAME])
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
            else:
                side = c if t else s
                ts = row[K_CFIN_TS] if t else row[K_SFIN_TS]
                side.fin_frame, side.fin_ts = frame, ts
                conn._close_gap(ts)
                conn.emit(_C if t else _S, Ev.FIN, ts, frame)
        if conn.machine.outcome is None or conn.anomalies or conn.machine.anomalies:
            return None
        return conn
