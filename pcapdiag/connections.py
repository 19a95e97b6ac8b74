"""Track every TCP connection and turn its packets into significant events.

One ``Tracker`` per analysis. It takes decoded packet batches in capture order, keeps one
``Connection`` per live 4-tuple and hands each connection's *significant* events (SYN,
first FIN/RST of a side, request and response boundaries, TLS milestones, ICMP errors,
idle gaps) to its classifier (``pcapdiag.classify.Machine``). Steady-state ACKs only bump
counters. A connection is finished when a new SYN reuses its 4-tuple, when it has been
quiet long enough after closing, or at the end of the capture; finished connections are
handed to ``on_finished`` at once, so memory follows the number of open connections.

Who is the client: the sender of a SYN without ACK, else the receiver of a SYN-ACK, else
(capture started mid-connection) the side whose port looks less like a server port.
A new SYN on a 4-tuple whose connection already saw a FIN or RST, or a SYN with another
initial sequence number, starts a new connection — the rule tshark's ``tcp.stream`` uses.

Payload is reassembled per direction (retransmissions trimmed, out-of-order segments
held back, bounded) only while an application observer (HTTP/1.x, TLS) wants it; other
protocols are followed as payload *turns* (bursts by direction).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from pcapdiag import _h2, _http, _tls
from pcapdiag.classify import Ev, Event, Machine, Side, State
from pcapdiag.decode import ACK, FIN, RST, SYN, IcmpError, TcpPackets, addr_halves, addr_str
from pcapdiag.decrypt import PlainFeed
from pcapdiag.zeek import ESTABLISHED, INACTIVITY_NS, ZeekConn, is_server_port

# Enum members bound once: ``Ev.FIN`` is an attribute lookup through EnumType that costs
# about 0.5 µs, and these are used for nearly every packet.
_SIDE_CLIENT = Side.CLIENT
_SIDE_NETWORK = Side.NETWORK
_SIDE_NONE = Side.NONE
_SIDE_SERVER = Side.SERVER
_EV_ALERT = Ev.ALERT
_EV_EOC = Ev.EOC
_EV_FIN = Ev.FIN
_EV_GOAWAY = Ev.GOAWAY
_EV_ICMP = Ev.ICMP
_EV_IDLE_GAP = Ev.IDLE_GAP
_EV_PROXY_REFUSED = Ev.PROXY_REFUSED
_EV_REQUEST = Ev.REQUEST
_EV_RESPONSE = Ev.RESPONSE
_EV_RESPONSE_END = Ev.RESPONSE_END
_EV_RESPONSE_END_CLOSE = Ev.RESPONSE_END_CLOSE
_EV_RST = Ev.RST
_EV_RST_STREAM = Ev.RST_STREAM
_EV_SYN = Ev.SYN
_EV_SYNACK = Ev.SYNACK
_EV_TLS_DONE = Ev.TLS_DONE
_EV_TLS_HELLO = Ev.TLS_HELLO
_ST_AWAITING = State.AWAITING
_ST_CONNECTING = State.CONNECTING
_ST_CLOSE_ANNOUNCED = State.CLOSE_ANNOUNCED
_ST_IDLE = State.IDLE
_ST_TLS_HANDSHAKE = State.TLS_HANDSHAKE
_ALWAYS_KEPT = frozenset({_EV_FIN, _EV_RST, _EV_ALERT, _EV_ICMP, _EV_EOC})  # past MAX_EVENTS

_MASK32 = 0xFFFFFFFF
ACK_ONLY = ACK
_SYN_FIN_RST = SYN | FIN | RST
_HALF32 = 0x80000000
NS = 1_000_000_000

IDLE_MIN_NS = 200_000_000  # an idle gap is at least 0.2 s ...
IDLE_RTT_FACTOR = 4  # ... and at least 4 handshake round trips
QUIET_AFTER_CLOSE_NS = 120 * NS  # closed and silent this long: finished
# Both sides closed (or one reset) and silent this long: finished, as Zeek's
# tcp_close_delay does. Memory then follows the connections of the last seconds, not of
# the last two minutes (a busy server closes thousands a second).
QUIET_AFTER_END_NS = 5 * NS
SWEEP_EVERY = 65_536  # packets between sweeps (whole capture, whatever the shard)
QUIET_SYN_ONLY_NS = 240 * NS  # unanswered SYNs: kernels give up after ~131 s
# Memory pressure (a SYN flood, a port scan): beyond this many live connections, half-open
# ones quiet for QUIET_SYN_PRESSURE_NS are finished at once. A later retransmission of
# such a SYN then starts a new connection; the evidence of a flood does not suffer.
LIVE_PRESSURE = 50_000
QUIET_SYN_PRESSURE_NS = 3 * NS
MAX_EVENTS = 200  # significant events kept per connection (closing ones always kept)
_MAX_PENDING = 64  # out-of-order segments held per direction
_TINY_TLS_RECORD = 24  # a lone TLS record this small before a close is an alert, not data


class _Stream:
    """In-order delivery of one direction's payload to the application observers."""

    __slots__ = ("next_seq", "pending")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, tuple[bytes, int, int, int]] = {}

    @staticmethod
    def _trim(data: bytes, wire_len: int, ahead: int) -> tuple[bytes, int] | None:
        """A segment that starts before what was delivered (``ahead`` ≥ 2^31, i.e. behind):
        its new tail, or None when all of it was delivered already."""
        behind = _MASK32 + 1 - ahead
        if behind >= wire_len:
            return None
        return data[min(behind, len(data)) :], wire_len - behind

    def push(
        self, seq: int, data: bytes, wire_len: int, frame: int, ts: int, sink: Callable
    ) -> None:
        """``sink(kind, payload_or_len, ts, frame)`` with kind 'data' or 'gap'."""
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) & _MASK32
        if ahead >= _HALF32:  # starts before what we delivered: trim the overlap
            tail = self._trim(data, wire_len, ahead)
            if tail is None:
                return
            data, wire_len = tail
            seq = self.next_seq
            ahead = 0
        if ahead:
            if len(self.pending) < _MAX_PENDING:
                old = self.pending.get(seq)
                if old is None or old[1] < wire_len:
                    self.pending[seq] = (data, wire_len, frame, ts)
                return
            self.flush(sink)  # too much held back: give up on the hole
            ahead = (seq - self.next_seq) & _MASK32
            if ahead and ahead < _HALF32:
                sink("gap", ahead, ts, frame)
                self.next_seq = seq
        self._deliver(data, wire_len, frame, ts, sink)
        self._drain(sink)

    def _deliver(self, data: bytes, wire_len: int, frame: int, ts: int, sink: Callable) -> None:
        if data:
            sink("data", data, ts, frame)
        if wire_len > len(data):
            sink("gap", wire_len - len(data), ts, frame)
        self.next_seq = (self.next_seq + wire_len) & _MASK32  # type: ignore[operator]

    def _drain(self, sink: Callable) -> None:
        while self.pending:
            item = self.pending.pop(self.next_seq, None)  # type: ignore[arg-type]
            if item is None:
                # an overlapping segment that starts before next_seq?
                for seq in list(self.pending):
                    ahead = (seq - self.next_seq) & _MASK32  # type: ignore[operator]
                    if ahead >= _HALF32:
                        data, wl, fr, ts = self.pending.pop(seq)
                        tail = self._trim(data, wl, ahead)
                        if tail is not None:
                            self._deliver(*tail, fr, ts, sink)
                        break
                else:
                    return
                continue
            self._deliver(*item, sink)

    def flush(self, sink: Callable) -> None:
        """Deliver what was held back, declaring the holes as gaps."""
        while self.pending:
            seq = min(self.pending, key=lambda s: (s - self.next_seq) & _MASK32)  # type: ignore[operator]
            ahead = (seq - self.next_seq) & _MASK32  # type: ignore[operator]
            data, wl, fr, ts = self.pending.pop(seq)
            if ahead >= _HALF32:
                tail = self._trim(data, wl, ahead)
                if tail is None:
                    continue
                data, wl = tail
            elif ahead:
                sink("gap", ahead, ts, fr)
                self.next_seq = seq
            self._deliver(data, wl, fr, ts, sink)


class SideStats:
    """What one side of a connection sent."""

    __slots__ = (
        "packets",
        "bytes",
        "fin_frame",
        "fin_ts",
        "rst_frame",
        "rst_ts",
        "rst_ttl",
        "ttl",
        "last_data_ts",
        "last_data_frame",
        "first_data_frame",
        "retransmits",
        "zero_windows",
        "max_end",
    )

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.fin_frame: int | None = None
        self.fin_ts: int | None = None
        self.rst_frame: int | None = None
        self.rst_ts: int | None = None
        self.rst_ttl: int | None = None
        self.ttl: int | None = None  # TTL of the first packet
        self.last_data_ts: int | None = None
        self.last_data_frame: int | None = None
        self.first_data_frame: int | None = None
        self.retransmits = 0
        self.zero_windows = 0
        self.max_end: int | None = None


@dataclass(slots=True)
class RequestInfo:
    """A request as the classifier and the explanation need it."""

    frame: int
    ts_ns: int
    line: str  # "GET /path HTTP/1.1", or "" for an opaque data turn
    idle_before_ns: int | None  # how long the connection had been idle before it
    after_server_fin: bool


class Connection:
    """One TCP connection (one handshake on one 4-tuple)."""

    __slots__ = (
        "id",
        "capture",
        "ipver",
        "c_addr",
        "s_addr",
        "c_port",
        "s_port",
        "orientation",
        "c",
        "s",
        "start_ts",
        "end_ts",
        "first_frame",
        "last_frame",
        "syn_ts",
        "syn_frames",
        "isn",
        "synack_ts",
        "synack_frame",
        "ack_ts",
        "zeek",
        "machine",
        "events",
        "mode",
        "http",
        "tls",
        "streams",
        "last_activity_ts",
        "turn",
        "icmp",
        "requests",
        "responses",
        "response_close",
        "tls_app",
        "tiny_tls",
        "last_close_ts",
        "idle_at_close_ns",
        "anomalies",
        "keep_alive_timeout_s",
        "keys",
        "steady",
        "server_isn",
        "plain",
        "plain_target",
        "plain_seen",
        "h2",
        "h2_goaway",
        "h2_resets",
        "h2_open",
        "h2_after_goaway",
        "tunnel_up",
    )

    def __init__(self, cid: int, capture: int, ipver: int) -> None:
        self.id = cid
        self.capture = capture
        self.ipver = ipver
        self.c_addr = self.s_addr = ""
        self.c_port = self.s_port = 0
        self.orientation = "syn"
        self.c = SideStats()
        self.s = SideStats()
        self.start_ts = self.end_ts = 0
        self.first_frame = self.last_frame = 0
        self.syn_ts: list[int] = []
        self.syn_frames: list[int] = []
        self.isn: int | None = None
        self.synack_ts: int | None = None
        self.synack_frame: int | None = None
        self.ack_ts: int | None = None
        self.zeek: ZeekConn
        self.machine = Machine()
        self.events: list[Event] = []
        self.mode: str | None = None  # None (undecided) | "http" | "tls" | "turns"
        self.http: _http.HttpObserver | None = None
        self.tls: _tls.TlsObserver | None = None
        self.streams: tuple[_Stream, _Stream] | None = None  # client, server; on first payload
        self.last_activity_ts: int | None = None
        self.turn: Side | None = None  # who sent the last payload turn
        self.icmp: IcmpError | None = None
        self.requests: list[RequestInfo] = []
        self.responses = 0
        self.response_close = False
        self.tls_app: list[int] | None = None  # TLS application-data bytes seen (client, server)
        self.tiny_tls: tuple[int, int, int] | None = None  # (frame, ts, len) of a lone tiny record
        self.last_close_ts: int | None = None
        self.idle_at_close_ns: int | None = None
        self.anomalies: list[str] = []
        self.keep_alive_timeout_s: float | None = None
        self.keys: tuple[tuple, tuple] = ((), ())
        # per direction (client, server): a pure ACK would change nothing but counters
        self.steady = [False, False]
        self.server_isn: int | None = None
        # TLS plaintext from tshark (decrypt.PlainFeed) and this connection's index in it
        self.plain: PlainFeed | None = None
        self.plain_target = -1
        self.plain_seen = False  # tshark decrypted something of this connection
        self.h2: _h2.H2Observer | None = None
        # HTTP/2 GOAWAYs and stream resets; a list only once there is one (millions of
        # connections never have any)
        self.h2_goaway: list[_h2.H2Event] | tuple[()] = ()
        self.h2_resets: list[_h2.H2Event] | tuple[()] = ()
        self.h2_open = 0  # HTTP/2 streams with a request and no end (nor reset) yet
        self.h2_after_goaway: str | None = None  # first server frame kind after its GOAWAY
        self.tunnel_up = False  # a CONNECT was answered 2xx: the bytes after are the tunnel's

    # ------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return bool(self.c.fin_frame or self.s.fin_frame or self.c.rst_frame or self.s.rst_frame)

    def is_steady(self, from_client: bool) -> bool:
        """Would a pure ACK from this side change anything but counters? Not once both
        sides are established in Zeek's terms, this side's pure-ACK letter is recorded,
        the handshake round trip is known, and nobody has closed."""
        c, s = self.c, self.s
        if c.fin_frame or s.fin_frame or c.rst_frame or s.rst_frame:  # self.closed, inline
            return False
        if self.synack_ts is not None and self.ack_ts is None:
            return False
        zc = self.zeek
        z = zc._cur  # rows[-1][1]
        assert z is not None
        letter = "A" if from_client == zc.orig_is_client else "a"
        return z.orig == ESTABLISHED and z.resp == ESTABLISHED and letter in z._once

    @property
    def rtt_ns(self) -> int | None:
        if self.syn_ts and self.ack_ts is not None:
            return max(0, self.ack_ts - self.syn_ts[0])
        return None

    def idle_threshold_ns(self) -> int:
        rtt = self.rtt_ns
        return IDLE_MIN_NS if rtt is None else max(IDLE_MIN_NS, IDLE_RTT_FACTOR * rtt)

    # -- events ---------------------------------------------------------------------------
    def emit(self, side: Side, kind: Ev, ts: int, frame: int | None, detail: str = "") -> None:
        m = self.machine
        last = self.last_activity_ts
        if (
            last is not None
            and kind is not _EV_IDLE_GAP
            and m.outcome is None
            and (m.state is _ST_IDLE or m.state is _ST_CLOSE_ANNOUNCED)
        ):
            # idle_threshold_ns(), inline: this runs for most events
            syn_ts, ack_ts = self.syn_ts, self.ack_ts
            if syn_ts and ack_ts is not None:
                threshold = max(IDLE_MIN_NS, IDLE_RTT_FACTOR * max(0, ack_ts - syn_ts[0]))
            else:
                threshold = IDLE_MIN_NS
            if ts - last >= threshold:
                self.emit(
                    _SIDE_NONE,
                    _EV_IDLE_GAP,
                    last + threshold,
                    None,
                    f"idle {(ts - last) / NS:.3f} s",
                )
        ev = Event(side, kind, ts, frame, detail)
        events = self.events
        if len(events) < MAX_EVENTS or kind in _ALWAYS_KEPT:
            events.append(ev)
        m.feed(ev)

    # -- payload --------------------------------------------------------------------------
    def on_payload(
        self, from_client: bool, data: bytes, wire_len: int, seq: int, frame: int, ts: int
    ) -> None:
        if self.mode == "turns":
            self._turn(from_client, frame, ts)
            if self.plain is not None:  # framing lost: plaintext is no use, don't hold it
                self.plain.take(self.plain_target, frame)
            return
        streams = self.streams
        if streams is None:
            streams = self.streams = (_Stream(), _Stream())
            if self.isn is not None:
                streams[0].next_seq = (self.isn + 1) & _MASK32
            if self.server_isn is not None:
                streams[1].next_seq = (self.server_isn + 1) & _MASK32
        stream = streams[0] if from_client else streams[1]
        if seq == stream.next_seq and not stream.pending and len(data) == wire_len:
            # The usual segment: in order, nothing held back, captured whole. ``push``
            # would deliver it as one 'data' chunk, then advance next_seq (its drain
            # finds nothing pending); done here without the general bookkeeping.
            self._sink(from_client, "data", data, ts, frame)
            stream.next_seq = (seq + wire_len) & _MASK32
            return
        if from_client:
            stream.push(seq, data, wire_len, frame, ts, self._sink_c)
        else:
            stream.push(seq, data, wire_len, frame, ts, self._sink_s)

    def counted(self, from_client: bool, seq: int, n: int) -> bool:
        """``on_payload`` of ``n`` whole bytes at ``seq`` without them, where all it would
        do is have the HTTP observer count them off: in order with nothing held back (its
        usual segment), inside a body longer than them (``HttpObserver.count``), no
        event waiting and the framing intact (nothing for ``_sink`` to act on after).
        False, and nothing done, elsewhere. The exact tracker's most common data
        segment, a big response's, then costs no copy and no observer calls."""
        obs, streams = self.http, self.streams
        if (
            self.mode != "http"
            or streams is None
            or obs.events  # type: ignore[union-attr]
            or obs.opaque_reason is not None  # type: ignore[union-attr]
            or obs.is_http is False  # type: ignore[union-attr]
            or not obs.synced  # type: ignore[union-attr]
        ):
            return False
        stream = streams[0] if from_client else streams[1]
        if seq != stream.next_seq or stream.pending or not obs.count(from_client, n):  # type: ignore[union-attr]
            return False
        stream.next_seq = (seq + n) & _MASK32
        return True

    def _sink_c(self, kind: str, payload: object, ts: int, frame: int) -> None:
        self._sink(True, kind, payload, ts, frame)

    def _sink_s(self, kind: str, payload: object, ts: int, frame: int) -> None:
        self._sink(False, kind, payload, ts, frame)

    def _sink(self, from_client: bool, kind: str, payload: object, ts: int, frame: int) -> None:
        if self.mode is None:
            if kind == "gap":
                self.mode = "turns"
                self._turn(from_client, frame, ts)
                return
            self._decide_mode(payload)  # type: ignore[arg-type]
        mode = self.mode
        if mode == "http":
            obs = self.http
            if kind == "data":
                obs.feed(from_client, payload, ts, frame)  # type: ignore[union-attr, arg-type]
            else:
                obs.gap(from_client, payload, ts, frame)  # type: ignore[union-attr, arg-type]
            if obs.events:  # type: ignore[union-attr]
                self._drain_http()
            if obs.opaque_reason == "connect":  # type: ignore[union-attr]
                # A proxy tunnel is up: what follows (usually TLS) gets its own observer.
                self.tunnel_up = True
                self.mode, self.http = None, None
            elif obs.opaque_reason is not None:  # type: ignore[union-attr]
                # protocol upgrade: what follows is not HTTP/1.x
                self._note(f"HTTP {obs.opaque_reason}: following payload turns")  # type: ignore[union-attr]
                self.mode = "turns"
            elif obs.is_http is False or not obs.synced:  # type: ignore[union-attr]
                self._note("HTTP framing lost; following payload turns")
                self.mode = "turns"
                self._turn(from_client, frame, ts)
        elif mode == "tls":
            self._feed_tls(from_client, kind, payload, ts, frame)
            if self.plain is not None:
                self._feed_plain(frame)
            tls = self.tls
            if tls is not None and (tls.is_tls is False or not tls.synced):
                self._note("TLS record framing lost; following payload turns")
                self.mode = "turns"
                self._turn(from_client, frame, ts)
        elif mode == "h2":
            obs2 = self.h2
            _give(obs2, from_client, kind, payload, ts, frame)
            self._drain_h2()
            if obs2.is_h2 is False or not obs2.synced:  # type: ignore[union-attr]
                self._note("HTTP/2 framing lost; following payload turns")
                self.mode = "turns"
                self._turn(from_client, frame, ts)
        else:
            self._turn(from_client, frame, ts)

    def _decide_mode(self, data: bytes) -> None:
        head = bytes(data[:16])
        if _looks_like_tls(head):
            self.mode = "tls"
            self.tls = _tls.TlsObserver()
        elif _looks_like_http(head):
            self.mode = "http"
            self.http = _http.HttpObserver()
        elif head.startswith(b"PRI * HTTP/2") or _h2.looks_like_h2(head):
            self.mode = "h2"  # cleartext HTTP/2 with prior knowledge (h2c)
            self.h2 = _h2.H2Observer()
        else:
            self.mode = "turns"

    def _note(self, text: str) -> None:
        if len(self.anomalies) < 8 and text not in self.anomalies:
            self.anomalies.append(text)

    def _turn(self, from_client: bool, frame: int, ts: int) -> None:
        """Opaque payload: a change of direction starts a request or response turn."""
        side = _SIDE_CLIENT if from_client else _SIDE_SERVER
        if self.turn is side:
            self.last_activity_ts = ts
            return
        self.turn = side
        if from_client:
            self._request(frame, ts, "")
        else:
            self.responses += 1
            self.emit(_SIDE_SERVER, _EV_RESPONSE, ts, frame)
            self.emit(_SIDE_SERVER, _EV_RESPONSE_END, ts, frame)
            self.last_activity_ts = ts

    def _request(self, frame: int, ts: int, line: str) -> None:
        last = self.last_activity_ts
        idle = None if last is None else ts - last
        after_fin = self.s.fin_ts is not None and self.s.fin_ts <= ts
        self.requests.append(RequestInfo(frame, ts, line, idle, after_fin))
        self.turn = _SIDE_CLIENT
        self.emit(_SIDE_CLIENT, _EV_REQUEST, ts, frame, line)  # sees the idle gap before it
        self.last_activity_ts = ts

    def _drain_http(self) -> None:
        obs = self.http
        evs = obs.events  # type: ignore[union-attr]
        if not evs:
            return
        for e in evs:
            k = e.kind
            if k == "request":
                version = e.version if str(e.version).startswith("HTTP") else f"HTTP/{e.version}"
                line = f"{e.method} {e.target} {version}"
                self._request(e.frame, e.ts_ns, _clip(line))
            elif k == "response":
                if e.status is not None and e.status < 200:
                    self.last_activity_ts = e.ts_ns
                    continue  # interim (100 Continue): the request is still outstanding
                self.turn = _SIDE_SERVER
                self.responses += 1
                if e.method == "CONNECT" and e.status is not None and not 200 <= e.status < 300:
                    detail = f"{e.status} {e.reason or ''}".strip()
                    self.emit(_SIDE_SERVER, _EV_PROXY_REFUSED, e.ts_ns, e.frame, detail)
                if e.keep_alive_timeout_s is not None:
                    self.keep_alive_timeout_s = e.keep_alive_timeout_s
                self.response_close = bool(e.close)
                self.emit(
                    _SIDE_SERVER,
                    _EV_RESPONSE,
                    e.ts_ns,
                    e.frame,
                    f"{e.status} {e.reason or ''}".strip(),
                )
                self.last_activity_ts = e.ts_ns
            elif k == "response_end":
                kind = _EV_RESPONSE_END_CLOSE if self.response_close else _EV_RESPONSE_END
                self.emit(_SIDE_SERVER, kind, e.ts_ns, e.frame)
                self.last_activity_ts = e.ts_ns
            elif k == "request_end":
                self.last_activity_ts = e.ts_ns
            elif k == "anomaly":
                self._note(f"HTTP: {e.message}")
        evs.clear()

    def _feed_tls(self, from_client: bool, kind: str, payload: object, ts: int, frame: int) -> None:
        obs = self.tls
        assert obs is not None
        before_stage = obs.stage
        n_alerts = len(obs.alerts)
        if kind == "data":
            obs.feed(from_client, payload, ts, frame)
        else:
            obs.gap(from_client, payload, ts, frame)
        if before_stage in ("none",) and obs.stage != "none" and obs.stage is not None:
            self.emit(_SIDE_CLIENT, _EV_TLS_HELLO, ts, frame, obs.sni or "")
        for alert in obs.alerts[n_alerts:] if len(obs.alerts) > n_alerts else ():
            side = _SIDE_CLIENT if alert.from_client else _SIDE_SERVER
            if alert.level == 2 or (alert.description not in (None, 0) and alert.level is not None):
                self.emit(
                    side, _EV_ALERT, alert.ts_ns, alert.frame, alert.name or str(alert.description)
                )
            elif alert.encrypted:
                self._note(f"encrypted TLS alert from the {side.value} at frame {alert.frame}")
        if obs.handshake_complete and self.machine.state is _ST_TLS_HANDSHAKE:
            self.emit(_SIDE_NONE, _EV_TLS_DONE, ts, frame, obs.version or "")
            self.last_activity_ts = ts
            if self.plain is not None:
                return  # requests and responses come from the plaintext
            if from_client:  # the record that completed it was the first request
                self.turn = _SIDE_CLIENT
                self._request(frame, ts, "")
            return
        if not obs.handshake_complete or self.plain is not None:
            return
        idx = 0 if from_client else 1
        total = obs.app_data_bytes(from_client)
        if self.tls_app is None:
            self.tls_app = [0, 0]
        got = total - self.tls_app[idx]
        if got > 0:
            self.tls_app[idx] = total
            last = obs.last_record(from_client)
            if got <= _TINY_TLS_RECORD and last is not None and last.length <= _TINY_TLS_RECORD:
                # a lone tiny record: an encrypted alert or close_notify rather than data
                self.tiny_tls = (last.frame, last.ts_ns, last.length)
                return
            self.tiny_tls = None
            self._turn(from_client, frame, ts)

    # -- decrypted TLS --------------------------------------------------------------------
    def _feed_plain(self, frame: int, final: bool = False) -> None:
        """Hand tshark's plaintext up to ``frame`` to the inner HTTP observer, alerts to
        the machine. The TLS observer keeps the record layer (handshake, versions)."""
        feed = self.plain
        assert feed is not None
        items = feed.drain(self.plain_target) if final else feed.take(self.plain_target, frame)
        for item in items:
            self.plain_seen = True
            fc, f, ts = item.from_client, item.frame, item.ts_ns
            side = _SIDE_CLIENT if fc else _SIDE_SERVER
            for level, desc in item.alerts:
                name = _tls.ALERT_NAMES.get(desc, f"alert {desc}")
                if self.tls is not None:
                    known = _tls.TlsAlert(f, ts, fc, level, desc, name, False)
                    alerts = self.tls.alerts
                    same = next(
                        (i for i, a in enumerate(alerts)
                         if a.encrypted and a.frame == f and a.from_client == fc),
                        None,
                    )  # fmt: skip
                    if same is not None:
                        alerts[same] = known  # the record the keyless pass could not read
                    elif len(alerts) < _tls.MAX_ALERTS:
                        alerts.append(known)
                self.tiny_tls = None
                if level == 2 or desc != 0:
                    self.emit(side, _EV_ALERT, ts, f, name)
                else:
                    self._note(f"close_notify from the {side.value} at frame {f} (decrypted)")
            if not item.data:
                continue
            self.tiny_tls = None
            if self.http is None and self.h2 is None:
                alpn = self.tls.alpn_selected if self.tls is not None else None
                if alpn == "h2" or item.data.startswith(b"PRI * HTTP/2"):
                    self.h2 = _h2.H2Observer()
                elif _looks_like_http(bytes(item.data[:16])):
                    self.http = _http.HttpObserver()
            if self.h2 is not None:
                self.h2.feed(fc, item.data, ts, f)
                self._drain_h2()
            elif self.http is not None:
                self.http.feed(fc, item.data, ts, f)
                self._drain_http()
            else:
                self._turn(fc, f, ts)

    def _drain_h2(self) -> None:
        """HTTP/2 streams, seen as the machine's one-request-at-a-time model: the first
        stream opened on an idle connection is a request, the last one ending is the
        response's end. Resets and GOAWAYs are kept for the explanation."""
        obs = self.h2
        evs = obs.events  # type: ignore[union-attr]
        if not evs:
            return
        for e in evs:
            k = e.kind
            if (
                k in ("response", "response_end")
                and self.h2_after_goaway is None
                and any(not g.from_client for g in self.h2_goaway)
            ):
                self.h2_after_goaway = "RECV_HEADERS" if k == "response" else "RECV_DATA"
            if k == "request":
                self.h2_open += 1
                if self.h2_open == 1:
                    line = f"{e.method or '?'} {e.path or '/'} HTTP/2 (stream {e.stream_id})"
                    self._request(e.frame, e.ts_ns, _clip(line))
            elif k == "response":
                if e.status is not None and e.status < 200:
                    continue
                if self.machine.state is _ST_AWAITING:
                    self.turn = _SIDE_SERVER
                    self.responses += 1
                    self.emit(_SIDE_SERVER, _EV_RESPONSE, e.ts_ns, e.frame, f"{e.status}")
                self.last_activity_ts = e.ts_ns
            elif k in ("response_end", "rst_stream"):
                if k == "rst_stream" and len(self.h2_resets) < 64:
                    self.h2_resets = [*self.h2_resets, e]
                    self.emit(
                        _SIDE_CLIENT if e.from_client else _SIDE_SERVER,
                        _EV_RST_STREAM,
                        e.ts_ns,
                        e.frame,
                        f"stream {e.stream_id} {e.error_name}",
                    )
                if self.h2_open > 0:
                    self.h2_open -= 1
                    if self.h2_open == 0:
                        if self.machine.state is _ST_AWAITING:
                            self.emit(_SIDE_SERVER, _EV_RESPONSE, e.ts_ns, e.frame, k)
                        self.emit(_SIDE_SERVER, _EV_RESPONSE_END, e.ts_ns, e.frame)
                self.last_activity_ts = e.ts_ns
            elif k == "goaway":
                if len(self.h2_goaway) < 8:
                    self.h2_goaway = [*self.h2_goaway, e]
                    self.emit(
                        _SIDE_CLIENT if e.from_client else _SIDE_SERVER,
                        _EV_GOAWAY,
                        e.ts_ns,
                        e.frame,
                        f"{e.error_name}, last stream {e.last_stream_id}",
                    )
                self._note(
                    f"HTTP/2 GOAWAY from the {'client' if e.from_client else 'server'} at "
                    f"frame {e.frame}: {e.error_name}, last stream {e.last_stream_id}"
                )
            elif k == "anomaly":
                self._note(f"HTTP/2: {e.message}")
        evs.clear()

    # -- closing --------------------------------------------------------------------------
    def fin(self, from_client: bool, frame: int, ts: int) -> None:
        side = self.c if from_client else self.s
        self.steady = [False, False]
        if side.fin_frame is not None:
            return
        side.fin_frame, side.fin_ts = frame, ts
        if self.plain is not None:
            self._feed_plain(frame)
        if self.mode == "http" and self.http is not None:
            self.http.eof(from_client, ts, frame)
            self._drain_http()
        elif self.mode == "tls" and self.tls is not None:
            self.tls.eof(from_client, ts, frame)
            if self.http is not None:  # decrypted HTTP/1.x inside
                self.http.eof(from_client, ts, frame)
                self._drain_http()
        elif self.mode == "h2" and self.h2 is not None:
            self.h2.eof(from_client, ts, frame)
            self._drain_h2()
        self._close_gap(ts)
        self.emit(_SIDE_CLIENT if from_client else _SIDE_SERVER, _EV_FIN, ts, frame)

    def rst(self, from_client: bool, frame: int, ts: int, ttl: int) -> None:
        side = self.c if from_client else self.s
        self.steady = [False, False]
        if side.rst_frame is not None:
            return
        side.rst_frame, side.rst_ts, side.rst_ttl = frame, ts, ttl
        if self.plain is not None:
            self._feed_plain(frame)
        self._close_gap(ts)
        who = _SIDE_CLIENT if from_client else _SIDE_SERVER
        if not from_client and side.ttl is not None and ttl != side.ttl:
            # One host on one path sends every packet with the same initial TTL and hop
            # count: an RST "from the server" arriving with another TTL was forged on the
            # way (firewall REJECT, NAT or load-balancer idle timeout, IPS).
            who = _SIDE_NETWORK
        self.emit(
            who, _EV_RST, ts, frame, f"ttl {ttl}" + ("" if side.ttl is None else f" vs {side.ttl}")
        )

    def _close_gap(self, ts: int) -> None:
        if self.last_close_ts is None:
            self.last_close_ts = ts
            if self.last_activity_ts is not None:
                self.idle_at_close_ns = ts - self.last_activity_ts


_HTTP_METHODS = (
    b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ",
    b"TRACE ", b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ",
    b"UNLOCK ", b"REPORT ", b"SEARCH ", b"PURGE ", b"HTTP/1.",
)  # fmt: skip


def _give(obs: object, from_client: bool, kind: str, payload: object, ts: int, frame: int) -> None:
    """Hand a stream's in-order chunk (``data``) or a hole (``gap``, its size) to an observer."""
    if kind == "data":
        obs.feed(from_client, payload, ts, frame)  # type: ignore[attr-defined]
    else:
        obs.gap(from_client, payload, ts, frame)  # type: ignore[attr-defined]


def _looks_like_http(head: bytes) -> bool:
    """A request line's method (or a status line, for captures that start mid-stream)."""
    return head.startswith(_HTTP_METHODS)


def _looks_like_tls(head: bytes) -> bool:
    """A TLS record header (type 20-24, version 3.x), or an SSLv2-framed ClientHello."""
    if len(head) >= 3 and 20 <= head[0] <= 24 and head[1] == 3 and head[2] <= 4:
        return True
    return len(head) >= 3 and head[0] & 0x80 == 0x80 and head[2] == 1


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


_ADDRS: dict[tuple[int, int, int], str] = {}  # (ipver, hi, lo) -> addr_str(...)
_ADDRS_MAX = 1 << 16


def _addr(ipver: int, hi: int, lo: int) -> str:
    """``addr_str``, remembered: a capture's addresses are few next to its connections
    (the same client and server addresses come back on every connection). Bounded: a
    full cache is emptied and refills."""
    key = (ipver, hi, lo)
    text = _ADDRS.get(key)
    if text is None:
        if len(_ADDRS) >= _ADDRS_MAX:
            _ADDRS.clear()
        text = _ADDRS[key] = addr_str(ipver, hi, lo)
    return text


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch is tracked (and its finished
    connections explained), back on after, if it was on.

    Why: tracking allocates millions of small objects that live as long as their
    connection, so the collector's scans of them took a third of the analysis time,
    and they find nothing: connections, observers, events and records hold no
    reference cycles (measured: no unreachable object on sample and synthetic
    captures), so reference counting frees everything as before. Outputs cannot
    change; memory does not grow. If it was off already (a caller paused it, or the
    application runs without it), it is left as it is."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Tracker:
    """Streams decoded batches into connections; calls ``on_finished(conn)`` per connection."""

    def __init__(self, on_finished: Callable[[Connection], None]) -> None:
        self.on_finished = on_finished
        self.table: dict[tuple, tuple[Connection, bool]] = {}
        self.next_id = 0
        self.capture = 0
        self.now = 0
        self.unmatched_icmp = 0
        # Frames of SYNs the fast lane follows a 4-tuple from again (``analysis._Handed``):
        # the connection before is finished there as always, and none is started; where
        # the SYN would not start one here, the lane was wrong (counted: the caller tracks
        # the 4-tuples again, whole).
        self.ends: set[int] = set()
        self.ends_missed = 0
        self._since_sweep = 0
        # A tracker that sees one shard of a capture (analysis --jobs) scales this down
        self.live_pressure = LIVE_PRESSURE
        self.clock = 0  # latest packet time of the capture, shards included
        # Replaying decrypted connections: (client key, first frame) -> index in ``plain``
        self.plain: PlainFeed | None = None
        self.plain_targets: dict[tuple[tuple, int], int] | None = None

    # -----------------------------------------------------------------------------------
    def feed(self, pk: TcpPackets, icmp: list[IcmpError], seen: int | None = None) -> None:
        """Track one batch (in capture order, after the batches before it). ``seen``: the
        capture's packets this batch stands for, when this tracker sees one shard of them
        (analysis ``jobs``): sweeps then come where they come in one process."""
        with _gc_paused():
            if len(pk) or icmp:
                self._feed(pk, icmp)
            self._since_sweep += len(pk) if seen is None else seen
            if self._since_sweep >= SWEEP_EVERY or (
                self._since_sweep >= 10_000 and len(self.table) > 2 * self.live_pressure
            ):
                self._since_sweep = 0
                self.sweep()

    def _feed(self, pk: TcpPackets, icmp: list[IcmpError]) -> None:
        n = len(pk)
        frames = pk.frame.tolist()
        tss = pk.ts_ns.tolist()
        ipv = pk.ipver.tolist()
        seqs, flags_l, wins = pk.seq.tolist(), pk.flags.tolist(), pk.window.tolist()
        plen, poff, pcap, ttls = (
            pk.payload_len.tolist(),
            pk.payload_off.tolist(),
            pk.payload_cap.tolist(),
            pk.ttl.tolist(),
        )
        data: np.ndarray = pk.data
        raw: memoryview | None = None  # a view of ``data``, made for the first payload
        icmp_i = 0
        n_icmp = len(icmp)
        table_get = self.table.get
        ends = self.ends
        keys = list(
            zip(
                pk.src_hi.tolist(),
                pk.src_lo.tolist(),
                pk.sport.tolist(),
                pk.dst_hi.tolist(),
                pk.dst_lo.tolist(),
                pk.dport.tolist(),
                strict=True,
            )
        )
        next_icmp = icmp[0].frame if n_icmp else None
        for i, frame, ts, key, flags, pl, win in zip(
            range(n), frames, tss, keys, flags_l, plen, wins, strict=True
        ):
            if next_icmp is not None and next_icmp < frame:
                while icmp_i < n_icmp and icmp[icmp_i].frame < frame:
                    self._icmp(icmp[icmp_i])
                    icmp_i += 1
                next_icmp = icmp[icmp_i].frame if icmp_i < n_icmp else None
            hit = table_get(key)
            if hit is None:
                if ends and frame in ends:  # a SYN the fast lane follows from (``ends``)
                    self.now = ts
                    continue
                conn, from_client = self._new(key, ipv[i], flags, frame, ts)
            else:
                conn, from_client = hit
                if flags == ACK_ONLY:
                    if not pl and win and conn.steady[0 if from_client else 1]:
                        zk = conn.zeek
                        if ts - zk._last <= INACTIVITY_NS:
                            # A steady-state pure ACK: counts and times only.
                            (conn.c if from_client else conn.s).packets += 1
                            conn.last_frame = frame
                            if ts > conn.end_ts:
                                conn.end_ts = ts
                            zk._last = ts
                            continue
                elif flags & SYN and not flags & ACK:
                    if self._is_new_syn(hit, seqs[i]):
                        self._finish(conn)
                        if ends and frame in ends:
                            self.now = ts
                            continue
                        conn, from_client = self._new(key, ipv[i], flags, frame, ts)
                    elif ends and frame in ends:
                        self.ends_missed += 1
            self.now = ts
            side = conn.c if from_client else conn.s
            side.packets += 1
            conn.last_frame = frame
            if ts > conn.end_ts:
                conn.end_ts = ts
            if conn.zeek.update(from_client, flags, seqs[i], pl, win, ts):
                conn.steady = [False, False]  # Zeek started a new row here
            if not flags & _SYN_FIN_RST and not pl:
                if from_client and conn.ack_ts is None and conn.synack_ts is not None:
                    conn.ack_ts = ts
                if not conn.steady[0 if from_client else 1]:
                    conn.steady[0 if from_client else 1] = conn.is_steady(from_client)
                continue
            if side.ttl is None:
                side.ttl = ttls[i]
            if flags & SYN:
                self._syn(conn, from_client, flags, seqs[i], frame, ts)
            if pl:
                side.bytes += pl
                if side.first_data_frame is None:
                    side.first_data_frame = frame
                side.last_data_ts = ts
                side.last_data_frame = frame
                if conn.mode == "turns":
                    if conn.turn is (_SIDE_CLIENT if from_client else _SIDE_SERVER):
                        conn.last_activity_ts = ts  # more of the same turn: _turn's first case
                    else:
                        conn._turn(from_client, frame, ts)
                elif not flags & RST:
                    cap = pcap[i]
                    sq = (seqs[i] + (1 if flags & SYN else 0)) & _MASK32
                    if not (cap == pl and conn.counted(from_client, sq, pl)):
                        if cap > 0:
                            if raw is None:
                                raw = memoryview(data)  # its slices cost half a numpy slice's
                            off = poff[i]
                            payload = raw[off : off + cap].tobytes()
                        else:
                            payload = b""
                        conn.on_payload(from_client, payload, pl, sq, frame, ts)
            if flags & FIN and not flags & RST:
                conn.fin(from_client, frame, ts)
            if flags & RST:
                conn.rst(from_client, frame, ts, ttls[i])
        while icmp_i < n_icmp:
            self._icmp(icmp[icmp_i])
            icmp_i += 1

    # -----------------------------------------------------------------------------------
    def _is_new_syn(self, hit: tuple[Connection, bool], seq: int) -> bool:
        conn, from_client = hit
        if conn.closed:
            return True
        return from_client and conn.isn is not None and seq != conn.isn

    def _new(
        self, key: tuple, ipver: int, flags: int, frame: int, ts: int
    ) -> tuple[Connection, bool]:
        shi, slo, sport, dhi, dlo, dport = key
        syn, ack = flags & SYN, flags & ACK
        if syn and not ack:
            sender_is_client, orient = True, "syn"
        elif syn and ack:
            sender_is_client, orient = False, "synack"
        else:
            sender_is_client, orient = not is_server_port(sport, dport), "port"
        conn = Connection(self.next_id, self.capture, ipver)
        self.next_id += 1
        src, dst = _addr(ipver, shi, slo), _addr(ipver, dhi, dlo)
        if sender_is_client:
            conn.c_addr, conn.c_port, conn.s_addr, conn.s_port = src, sport, dst, dport
            ckey, skey = key, (dhi, dlo, dport, shi, slo, sport)
        else:
            conn.c_addr, conn.c_port, conn.s_addr, conn.s_port = dst, dport, src, sport
            ckey, skey = (dhi, dlo, dport, shi, slo, sport), key
        conn.orientation = orient
        conn.zeek = ZeekConn(conn.c_port, conn.s_port)
        conn.start_ts = conn.end_ts = ts
        conn.first_frame = conn.last_frame = frame
        if orient != "syn":
            conn.machine.state = _ST_IDLE
        conn.keys = (ckey, skey)
        if self.plain_targets is not None:
            target = self.plain_targets.get((ckey, frame))
            if target is not None:
                conn.plain, conn.plain_target = self.plain, target
        self.table[ckey] = (conn, True)
        self.table[skey] = (conn, False)
        return conn, sender_is_client

    def _syn(
        self, conn: Connection, from_client: bool, flags: int, seq: int, frame: int, ts: int
    ) -> None:
        if flags & ACK:
            if not from_client and conn.synack_ts is None:
                conn.synack_ts, conn.synack_frame = ts, frame
                conn.server_isn = seq
                conn.last_activity_ts = None
                conn.emit(_SIDE_SERVER, _EV_SYNACK, ts, frame)
            return
        if not from_client:
            return
        if conn.isn is None:
            conn.isn = seq
        if len(conn.syn_ts) < 32:
            conn.syn_ts.append(ts)
            conn.syn_frames.append(frame)
        if len(conn.syn_ts) == 1:
            conn.emit(_SIDE_CLIENT, _EV_SYN, ts, frame)

    def _icmp(self, err: IcmpError) -> None:
        try:
            key = (*addr_halves(err.src), err.sport, *addr_halves(err.dst), err.dport)
        except ValueError:
            self.unmatched_icmp += 1
            return
        hit = self.table.get(key)
        if hit is None:
            self.unmatched_icmp += 1
            return
        conn, from_client = hit
        if conn.icmp is None:
            conn.icmp = err
        if not from_client:
            return
        sender_is_server = err.sender == conn.s_addr
        conn.emit(
            _SIDE_SERVER if sender_is_server else _SIDE_NETWORK,
            _EV_ICMP,
            err.ts_ns,
            err.frame,
            f"type {err.type} code {err.code} from {err.sender}",
        )

    # -----------------------------------------------------------------------------------
    def _finish(self, conn: Connection) -> None:
        """Finish ``conn``: the end of the capture for it (``EOC``) comes now, but for a
        connection still waiting for its SYN's answer, at its last packet: when a sweep
        or the capture's end came after that is the tracker's business (the fast lane
        sweeps on its own clock, ``_fastlane.Attempts``), and a SYN nobody answered
        tells nothing more by then."""
        for key in conn.keys:
            if self.table.get(key, (None,))[0] is conn:
                del self.table[key]
        if not conn.machine.done:
            for idx, stream in enumerate(conn.streams or ()):
                if stream.pending:
                    stream.flush(conn._sink_c if idx == 0 else conn._sink_s)
            if conn.plain is not None:
                conn._feed_plain(conn.last_frame, final=True)
            at = conn.end_ts if conn.machine.state is _ST_CONNECTING else max(self.now, conn.end_ts)
            conn.emit(_SIDE_NONE, _EV_EOC, at, None)
        self.on_finished(conn)

    def sweep(self) -> None:
        """Finish connections that closed (or never answered) and went quiet."""
        # the time of the whole batch (``clock``, set by the analysis), not of the last
        # packet this tracker saw: one shard of a capture then sweeps as the whole does
        now = self.now = max(self.now, self.clock)
        syn_quiet = (
            QUIET_SYN_PRESSURE_NS if len(self.table) > 2 * self.live_pressure else QUIET_SYN_ONLY_NS
        )
        done = []
        seen = set()
        for conn, _ in self.table.values():
            if conn.id in seen:
                continue
            seen.add(conn.id)
            quiet = now - conn.end_ts
            c, sv = conn.c, conn.s
            ended = (c.fin_frame is not None and sv.fin_frame is not None) or (
                c.rst_frame is not None or sv.rst_frame is not None
            )
            if (
                (ended and quiet > QUIET_AFTER_END_NS)
                or (conn.closed and quiet > QUIET_AFTER_CLOSE_NS)
            ) or (conn.synack_ts is None and not conn.c.bytes and quiet > syn_quiet):
                done.append(conn)
        for conn in done:
            self._finish(conn)

    def close(self) -> None:
        """End of capture: every connection still tracked is finished."""
        with _gc_paused():
            self._close()

    def _close(self) -> None:
        self.now = max(self.now, self.clock)  # the capture's end, whatever this shard saw
        conns = {c.id: c for c, _ in self.table.values()}
        for conn in sorted(conns.values(), key=lambda c: c.first_frame):
            self._finish(conn)
