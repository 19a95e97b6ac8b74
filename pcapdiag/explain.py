"""Explain a classified connection in the words its user needs.

For each connection: a one-sentence ``evidence`` citing frames and times, what each Python
client would have raised (``client_errors``), the likely cause and the fix. Across
connections: the server's idle timeout measured from the idle gaps that ended in
``server_idle_close``, matched with well-known defaults.

The exception texts are the ones the libraries really print (recorded on loopback, see
``../shared/knowledge/field.md`` §2.5); the errno mapping is Linux's (§3.1).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable, Iterator, MutableSequence
from dataclasses import dataclass, field
from typing import Any

from pcapdiag._columns import Column, settle
from pcapdiag._tls import ALERT_NAMES
from pcapdiag.classify import PROBLEMS, Ev, Side
from pcapdiag.connections import NS, Connection

# -- TLS alerts ----------------------------------------------------------------------------
# OpenSSL's text for a *received* alert (ssl_err.c); the reason is the text upper-cased.
_OPENSSL_ALERT_TEXT: dict[int, str] = {
    10: "sslv3 alert unexpected message", 20: "sslv3 alert bad record mac",
    22: "tlsv1 alert record overflow", 30: "sslv3 alert decompression failure",
    40: "sslv3 alert handshake failure", 41: "sslv3 alert no certificate",
    42: "sslv3 alert bad certificate", 43: "sslv3 alert unsupported certificate",
    44: "sslv3 alert certificate revoked", 45: "sslv3 alert certificate expired",
    46: "sslv3 alert certificate unknown", 47: "sslv3 alert illegal parameter",
    48: "tlsv1 alert unknown ca", 49: "tlsv1 alert access denied",
    50: "tlsv1 alert decode error", 51: "tlsv1 alert decrypt error",
    70: "tlsv1 alert protocol version", 71: "tlsv1 alert insufficient security",
    80: "tlsv1 alert internal error", 86: "tlsv1 alert inappropriate fallback",
    90: "tlsv1 alert user cancelled", 100: "tlsv1 alert no renegotiation",
    109: "tlsv13 alert missing extension", 110: "tlsv1 unsupported extension",
    111: "tlsv1 certificate unobtainable", 112: "tlsv1 unrecognized name",
    113: "tlsv1 bad certificate status response", 115: "tlsv1 alert unknown psk identity",
    116: "tlsv13 alert certificate required", 120: "tlsv1 alert no application protocol",
}  # fmt: skip
# Alerts an OpenSSL client sends when it rejects the server's certificate.
_CERT_REJECTIONS = frozenset({42, 43, 44, 45, 46, 48})

# -- ICMP -> errno (Linux icmp_err_convert / ICMPv6 tab_unreach) ---------------------------
_ERRNO_TEXT = {
    101: ("OSError", "Network is unreachable"),
    111: ("ConnectionRefusedError", "Connection refused"),
    113: ("OSError", "No route to host"),
    13: ("PermissionError", "Permission denied"),
    92: ("OSError", "Protocol not available"),
    112: ("OSError", "Host is down"),
    64: ("OSError", "Machine is not on the network"),
    90: ("OSError", "Message too long"),
    95: ("OSError", "Operation not supported"),
}
_ICMP4_ERRNO = {0: 101, 1: 113, 2: 92, 3: 111, 4: 90, 5: 95, 6: 101, 7: 112, 8: 64,
                9: 101, 10: 113, 11: 101, 12: 113, 13: 113, 14: 113, 15: 113}  # fmt: skip
_ICMP4_NAMES = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable",
                3: "port unreachable", 4: "fragmentation needed", 5: "source route failed",
                9: "network administratively prohibited", 10: "host administratively prohibited",
                13: "communication administratively prohibited"}  # fmt: skip
_ICMP6_ERRNO = {0: 101, 1: 13, 2: 113, 3: 113, 4: 111, 5: 13, 6: 13}
_ICMP6_NAMES = {0: "no route to destination", 1: "administratively prohibited",
                2: "beyond scope of source address", 3: "address unreachable",
                4: "port unreachable", 5: "source address failed policy",
                6: "reject route to destination"}  # fmt: skip

# -- well-known idle timeouts (field.md §2.4) -----------------------------------------------
IDLE_DEFAULTS: tuple[tuple[float, str], ...] = (
    (2.0, "gunicorn keepalive (2 s)"),
    (5.0, "uvicorn / Node.js / Apache KeepAliveTimeout / httpx pool (5 s)"),
    (15.0, "aiohttp client pool (15 s)"),
    (60.0, "AWS ALB/ELB idle timeout, nginx upstream keepalive (60 s)"),
    (65.0, "nginx stock nginx.conf keepalive_timeout (65 s)"),
    (75.0, "nginx default keepalive_timeout (75 s)"),
    (90.0, "Heroku router (90 s)"),
    (240.0, "Azure Load Balancer (4 min)"),
    (350.0, "AWS Network Firewall / NAT gateway (350 s)"),
    (600.0, "GCP load balancer backend (600 s)"),
    (3600.0, "Envoy idle_timeout (1 h)"),
)

# Outcome -> (likely cause, fix). The fix names well-known remedies only.
CAUSES: dict[str, tuple[str, str]] = {
    "refused": (
        "Nothing listens on the server port (service down, wrong port, or a firewall rejecting with RST).",
        "Check that the service is up and listening on that address and port; retry with backoff during restarts.",
    ),
    "syn_timeout": (
        "SYNs were dropped: a firewall or security group, a wrong address, or a server whose accept queue is full.",
        "Check firewall rules and routing to the server; set an explicit connect timeout and retry with backoff.",
    ),
    "icmp_unreachable": (
        "A router or the host rejected the connection with ICMP destination unreachable.",
        "Check routes and firewall REJECT rules on the path; the ICMP sender is named in the evidence.",
    ),
    "tls_alert": (
        "The TLS handshake failed: one side rejected the other's certificate or parameters.",
        "Fix the certificate chain / trust store or the TLS versions and ciphers both sides allow.",
    ),
    "tls_handshake_aborted": (
        "A side gave up during the TLS handshake without a readable alert (TLS 1.3 encrypts alerts; asyncio clients close without one).",
        "Capture with SSLKEYLOGFILE set to see the hidden alert; check certificates, SNI and TLS versions.",
    ),
    "server_close_after_request": (
        "The server closed the connection while a request was outstanding.",
        "Retry idempotent requests once on a new connection (urllib3 Retry, httpx transport retries); keep the client pool's idle timeout below the server's keep-alive timeout.",
    ),
    "truncated_response": (
        "The server (or a proxy) closed before the response it announced was complete: a crash, a timeout or a size limit.",
        "Look at the server's logs at that time; raise proxy/server response timeouts and buffer limits; retry idempotent requests.",
    ),
    "server_reset": (
        "The server reset the connection (process died, closed with unread data, or SO_LINGER 0).",
        "Retry idempotent requests with backoff; check the server for crashes and request-body limits.",
    ),
    "proxy_refused": (
        "The HTTP proxy would not open the CONNECT tunnel: 407 wants proxy credentials, 403 is its policy, 502/504 means it could not reach the origin.",
        "For 407 give the proxy credentials (http://user:pass@proxy:port); for 403 ask for the destination to be allowed; for 502/504 check that the proxy can reach the origin.",
    ),
    "network_reset": (
        "A middlebox (firewall, NAT gateway, load balancer, IPS) reset the connection in the server's name: a REJECT rule, or its idle timeout forgot the connection.",
        "Check firewall/IPS rules for this traffic; if the connection was idle, keep the client pool's idle timeout (or TCP keepalive interval) below the middlebox's idle timeout.",
    ),
    "client_reset": (
        "The client aborted the connection itself (closed it with unread data, cancelled a request, or exited).",
        "Usually intended; if not, read responses to the end before closing and check for cancelled tasks.",
    ),
    "client_timeout": (
        "The client stopped waiting for the response (its read timeout expired).",
        "Raise the client's read timeout or make the server answer faster; the wait measured is in the evidence.",
    ),
}


@dataclass(slots=True)
class ConnectionRecord:
    """Everything reported about one connection (the JSON contract, plus detail)."""

    id: int
    capture: str
    ip_version: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    start_ns: int
    end_ns: int
    outcome: str
    closed_by: str
    close_ns: int | None
    close_frame: int | None
    evidence: str
    client_packets: int
    server_packets: int
    client_bytes: int
    server_bytes: int
    requests: int
    responses: int
    handshake: str
    first_frame: int
    last_frame: int
    zeek_conn_state: str
    zeek_history: str
    client_errors: dict[str, Any]
    tls: dict[str, Any] | None = None
    icmp: dict[str, Any] | None = None
    cause: str | None = None
    fix: str | None = None
    syn_count: int = 0
    rtt_ms: float | None = None
    idle_before_close_s: float | None = None
    keepalive_race: bool = False
    retry_of: int | None = None  # id of the failed connection this one repeats
    reused_after_idle_s: float | None = None  # idle time before the last request
    last_request: str | None = None
    orientation: str = "syn"
    count: int = 1  # connections this row stands for (> 1: a folded flood, see analysis)
    decrypted: bool = False  # classified from the TLS plaintext (key log or DSB)
    stale: bool = False  # reset in answer to the first data after a long idle
    server_ttl: int | None = None  # IP TTL / hop limit of the server's first packet
    client_ttl: int | None = None  # ... and of the client's (its SYN)
    reset_ttl: int | None = None  # ... and of the RST in the server's name, if any
    h2: dict[str, Any] | None = None  # HTTP/2: GOAWAYs and reset streams
    proxy: dict[str, Any] | None = None  # a CONNECT to an HTTP proxy: request, status, tunnel
    anomalies: list[str] = field(default_factory=list)
    events: list[tuple[int, int | None, str, str, str]] = field(default_factory=list)
    zeek_rows: list[tuple[int, str, str]] = field(
        default_factory=list
    )  # (start ns, state, history)

    @property
    def client(self) -> str:
        return _endpoint(self.client_ip, self.client_port, self.ip_version)

    @property
    def server(self) -> str:
        return _endpoint(self.server_ip, self.server_port, self.ip_version)

    @property
    def is_problem(self) -> bool:
        return self.outcome in PROBLEMS

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "capture": self.capture,
            "client": self.client,
            "server": self.server,
            "start": self.start_ns / NS,
            "end": self.end_ns / NS,
            "duration_s": (self.end_ns - self.start_ns) / NS,
            "outcome": self.outcome,
            "closed_by": self.closed_by,
            "close_time": None if self.close_ns is None else self.close_ns / NS,
            "close_frame": self.close_frame,
            "evidence": self.evidence,
            "client_packets": self.client_packets,
            "server_packets": self.server_packets,
            "client_bytes": self.client_bytes,
            "server_bytes": self.server_bytes,
            "requests": self.requests,
            "responses": self.responses,
            "handshake": self.handshake,
            "tls": self.tls,
            "icmp": self.icmp,
            "client_errors": self.client_errors,
            "zeek_conn_state": self.zeek_conn_state,
            "zeek_history": self.zeek_history,
            "zeek_rows": [
                {"ts": ts / NS, "conn_state": st, "history": h} for ts, st, h in self.zeek_rows
            ],
            "frames": [self.first_frame, self.last_frame],
            "cause": self.cause,
            "fix": self.fix,
            "keepalive_race": self.keepalive_race,
            "retry_of": self.retry_of,
            "reused_after_idle_s": self.reused_after_idle_s,
            "idle_before_close_s": self.idle_before_close_s,
            "syn_count": self.syn_count,
            "rtt_ms": self.rtt_ms,
            "last_request": self.last_request,
            "count": self.count,
            "decrypted": self.decrypted,
            "stale": self.stale,
            "h2": self.h2,
            "proxy": self.proxy,
            "anomalies": self.anomalies,
        }


def _endpoint(ip: str, port: int, ipver: int) -> str:
    return f"[{ip}]:{port}" if ipver == 6 else f"{ip}:{port}"


def _s(ns: int | None) -> str:
    """A duration in the unit a person reads best."""
    if ns is None:
        return "?"
    s = ns / NS
    if abs(s) >= 1:
        return f"{s:.2f} s"
    if abs(s) >= 0.001:
        return f"{s * 1000:.1f} ms"
    return f"{s * 1e6:.0f} µs"


# ``member.value`` runs Python code (enum's property) and is read twice per event here;
# a dict gives the same strings for a hash lookup.
_SIDE_VALUE: dict[Side, str] = {s: s.value for s in Side}
_EV_VALUE: dict[Ev, str] = {e: e.value for e in Ev}
_CLOSERS = frozenset({Side.CLIENT, Side.SERVER, Side.NETWORK})


# -- main entry ------------------------------------------------------------------------------
def explain(conn: Connection, capture: str, t0_ns: int) -> ConnectionRecord:
    """Build the record of a finished connection. ``t0_ns``: capture start, for relative times."""
    m = conn.machine
    outcome = m.outcome or "open"
    proxy = _proxy_info(conn)
    dec = m.decisive
    closed_by = _closed_by(conn, outcome)
    tls = _tls_info(conn)
    icmp = _icmp_info(conn)
    race = _race(conn, outcome)
    last_req = None
    for r in reversed(conn.requests):  # the last request with a line
        if r.line:
            last_req = r.line
            break
    rtt = conn.rtt_ns
    zeek_rows = [(ts, z.conn_state(), sys.intern(z.history_str())) for ts, z in conn.zeek.rows]
    if zeek_rows:  # the first row's state and history, computed once
        _, zeek_state, zeek_history = zeek_rows[0]
    else:
        zeek_state, zeek_history = conn.zeek.first.conn_state(), conn.zeek.first.history_str()
    rec = ConnectionRecord(
        id=conn.id,
        capture=capture,
        ip_version=conn.ipver,
        client_ip=conn.c_addr,
        client_port=conn.c_port,
        server_ip=conn.s_addr,
        server_port=conn.s_port,
        start_ns=conn.start_ts,
        end_ns=conn.end_ts,
        outcome=outcome,
        closed_by=closed_by,
        close_ns=dec.ts_ns if dec is not None else None,
        close_frame=dec.frame if dec is not None else None,
        evidence="",
        client_packets=conn.c.packets,
        server_packets=conn.s.packets,
        client_bytes=conn.c.bytes,
        server_bytes=conn.s.bytes,
        requests=len(conn.requests),
        responses=conn.responses,
        handshake=_handshake(conn),
        first_frame=conn.first_frame,
        last_frame=conn.last_frame,
        zeek_conn_state=zeek_state,
        zeek_history=zeek_history,
        zeek_rows=zeek_rows,
        client_errors={},
        tls=tls,
        icmp=icmp,
        syn_count=len(conn.syn_ts),
        rtt_ms=None if rtt is None else round(rtt / 1e6, 3),
        idle_before_close_s=None if conn.idle_at_close_ns is None else conn.idle_at_close_ns / NS,
        keepalive_race=race,
        last_request=last_req,
        orientation=conn.orientation,
        proxy=proxy,
        decrypted=conn.plain_seen,
        anomalies=list(conn.anomalies) + list(m.anomalies or ()),
        events=[
            (e.ts_ns, e.frame, _SIDE_VALUE[e.side], _EV_VALUE[e.kind], e.detail)
            for e in conn.events
        ],
    )
    if conn.requests and conn.requests[-1].idle_before_ns is not None and len(conn.requests) > 1:
        rec.reused_after_idle_s = conn.requests[-1].idle_before_ns / NS
    rec.evidence = _evidence(conn, rec, t0_ns)
    if conn.orientation == "port" and "no SYN seen" not in rec.evidence:
        rec.evidence = (
            rec.evidence.rstrip(".")
            + f" (no SYN seen: the server was chosen by port {conn.s_port})."
        )
    rec.server_ttl, rec.reset_ttl, rec.client_ttl = conn.s.ttl, conn.s.rst_ttl, conn.c.ttl
    rec.h2 = _h2_info(conn)
    _stale(conn, rec)
    if proxy is not None and proxy["tunnel"] and outcome != "proxy_refused":
        rec.evidence += (
            f" This is an HTTP proxy tunnel ({proxy['request']}, answered at frame "
            f"{proxy['frame']}): the server side here is the proxy relaying the origin, so a "
            "close from it is the proxy's or the origin's."
        )
    if rec.h2 is not None:
        rec.evidence += " " + rec.h2["summary"]
    rec.client_errors = _shared(client_errors(conn, rec))
    if outcome in CAUSES:
        rec.cause, rec.fix = RACE_CAUSE if race else CAUSES[outcome]
    return rec


# The cause and fix of a keep-alive race (``ConnectionRecord.keepalive_race``)
RACE_CAUSE = (
    "Keep-alive race: the client reused a pooled connection that the server was closing "
    "for being idle.",
    "Keep the client pool's idle timeout below the server's keep-alive timeout (httpx "
    "Limits(keepalive_expiry=…), aiohttp TCPConnector(keepalive_timeout=…)), and retry "
    "idempotent requests once on a new connection.",
)


_SHARED: dict[tuple, dict[str, Any]] = {}
_SHARED_MAX = 4096


def _shared(errors: dict[str, Any]) -> dict[str, Any]:
    """One dict for identical predictions: connections to one server that failed alike (a
    SYN flood, a dead backend) share it instead of holding ~1 KB of text each. Bounded;
    read-only by convention, as every record field is."""
    key = tuple(errors.items())
    try:
        hit = _SHARED.get(key)
    except TypeError:  # an unhashable value: keep it as it is
        return errors
    if hit is not None:
        return hit
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[key] = errors
    return errors


def _proxy_info(conn: Connection) -> dict[str, Any] | None:
    """The CONNECT exchange of a connection to an HTTP proxy, if it began with one."""
    if not conn.requests or not conn.requests[0].line.startswith("CONNECT "):
        return None
    req = conn.requests[0]
    status, reason, frame = None, "", None
    for e in conn.events:
        if e.kind is Ev.RESPONSE and e.frame is not None and e.ts_ns >= req.ts_ns:
            code, _, reason = e.detail.partition(" ")
            if code.isdigit():
                status, frame = int(code), e.frame
            break
    return {
        "request": req.line,
        "target": req.line.split()[1] if len(req.line.split()) > 1 else None,
        "status": status,
        "reason": reason or None,
        "frame": frame,
        "tunnel": conn.tunnel_up,
    }


def _stale(conn: Connection, rec: ConnectionRecord) -> None:
    """A reset in answer to the first request after a long idle: the peer (or a
    middlebox whose idle timeout expired) no longer knew the connection."""
    if rec.outcome not in ("server_reset", "network_reset") or len(conn.requests) < 2:
        return
    req = conn.requests[-1]
    idle = req.idle_before_ns
    if idle is None or idle < conn.idle_threshold_ns() or conn.machine.prior_state is None:
        return
    if conn.machine.prior_state.name != "AWAITING":
        return
    rec.stale = True
    rec.evidence += stale_note(idle, rec.outcome == "network_reset")


def truncated_size(got: int | None, exp: int | None) -> str:
    """How much of an announced body came before the close (the evidence's words)."""
    return f" after {got} of {exp} announced body bytes" if exp is not None else ""


def truncated_errors(got: int | None, exp: int | None) -> dict[str, Any]:
    """What each client raises when the response ends after ``got`` of ``exp`` announced
    body bytes (unknown: a chunked body)."""
    if exp is not None and got is not None:
        missing = max(0, exp - got)
        return {
            "stdlib": f"http.client.IncompleteRead: IncompleteRead({got} bytes read, {missing} more expected)",
            "requests": f"requests.exceptions.ChunkedEncodingError: ('Connection broken: IncompleteRead({got} bytes read, {missing} more expected)', IncompleteRead({got} bytes read, {missing} more expected))",
            "aiohttp": f"aiohttp.ClientPayloadError: Response payload is not completed: <ContentLengthError: 400, message='Not enough data to satisfy content length header (received {got} of {exp} bytes).'>",
            "httpx": f"httpx.RemoteProtocolError: peer closed connection without sending complete message body (received {got} bytes, expected {exp})",
            "errno": None,
        }
    return {
        "stdlib": "http.client.IncompleteRead: IncompleteRead(… bytes read)",
        "requests": "requests.exceptions.ChunkedEncodingError: ('Connection broken: IncompleteRead(… bytes read)', …)",
        "aiohttp": "aiohttp.ClientPayloadError: Response payload is not completed: <TransferEncodingError: 400, message='Not enough data to satisfy transfer length header.'>",
        "httpx": "httpx.RemoteProtocolError: peer closed connection without sending complete message body (incomplete chunked read)",
        "errno": None,
    }


def stale_note(idle: int, network: bool) -> str:
    """What a stale connection's evidence ends with (``_stale``)."""
    who = "a middlebox on the path" if network else "the server"
    return (
        f" Stale connection: the request came after {_s(idle)} idle and {who} no longer "
        "knew the connection (an idle timeout that sent no FIN)."
    )


def _h2_info(conn: Connection) -> dict[str, Any] | None:
    """HTTP/2 GOAWAYs and reset streams, with what httpx raises for them (aiohttp's
    client speaks HTTP/1.1 only)."""
    if conn.h2 is None or (not conn.h2_goaway and not conn.h2_resets):
        return None
    goaways = [
        {
            "from": "client" if g.from_client else "server",
            "frame": g.frame,
            "last_stream_id": g.last_stream_id,
            "error": g.error_name,
            "debug": g.debug or None,
        }
        for g in conn.h2_goaway
    ]
    resets = [
        {
            "from": "client" if r.from_client else "server",
            "frame": r.frame,
            "stream_id": r.stream_id,
            "error": r.error_name,
            "request": f"{r.method} {r.path}" if r.method else None,
        }
        for r in conn.h2_resets
    ]
    parts = []
    for g in goaways:
        kind = "graceful shutdown" if g["error"] == "NO_ERROR" else "connection error"
        parts.append(
            f"HTTP/2 GOAWAY from the {g['from']} at frame {g['frame']} ({g['error']}, "
            f"{kind}; streams above {g['last_stream_id']} were not processed"
            + (f"; debug '{g['debug']}'" if g["debug"] else "")
            + ")."
        )
    for r in resets[:5]:
        parts.append(
            f"HTTP/2 RST_STREAM from the {r['from']} on stream {r['stream_id']} at frame "
            f"{r['frame']} ({r['error']})."
        )
    # httpx (through httpcore and the h2 library) words these with h2's event reprs.
    httpx = None
    bad_goaway = next((g for g in conn.h2_goaway if not g.from_client and g.error_code), None)
    server_reset = next((r for r in conn.h2_resets if not r.from_client), None)
    if server_reset is not None:
        httpx = (
            f"httpx.RemoteProtocolError: <StreamReset stream_id:{server_reset.stream_id}, "
            f"error_code:{server_reset.error_code}, remote_reset:True> "
            f"({server_reset.error_name})"
        )
    elif bad_goaway is not None:
        debug = (bad_goaway.debug or "").encode("utf-8", "replace").hex()
        httpx = (
            f"httpx.RemoteProtocolError: <ConnectionTerminated error_code:"
            f"{bad_goaway.error_code}, last_stream_id:{bad_goaway.last_stream_id}, "
            f"additional_data:{debug or None}> ({bad_goaway.error_name})"
        )
    elif conn.h2_after_goaway is not None:
        # h2 closes its state machine on GOAWAY; frames the server still sends for a
        # stream it promised to finish are then refused by the client's own h2
        httpx = (
            f"httpx.LocalProtocolError: Invalid input ConnectionInputs.{conn.h2_after_goaway} "
            "in state ConnectionState.CLOSED"
        )
        parts.append(
            "The server kept sending on a stream after its GOAWAY, which httpx's h2 refuses."
        )
    return {
        "goaway": goaways,
        "resets": resets,
        "httpx": httpx,
        "aiohttp": "none: aiohttp's client speaks HTTP/1.1 only, it would not have used HTTP/2",
        "summary": " ".join(parts),
    }


def _closed_by(conn: Connection, outcome: str) -> str:
    dec = conn.machine.decisive
    if outcome in ("syn_timeout", "open"):
        return "client" if (outcome == "syn_timeout" and conn.c.rst_frame) else "none"
    if outcome == "icmp_unreachable":
        return "network" if dec is not None and dec.side is Side.NETWORK else "server"
    if dec is not None and dec.side in _CLOSERS:
        return _SIDE_VALUE[dec.side]
    if outcome.startswith("client"):
        return "client"
    return "server"


def _handshake(conn: Connection) -> str:
    if not conn.syn_ts and conn.synack_ts is None:
        return "none"
    if conn.syn_ts and conn.synack_ts is not None and conn.ack_ts is not None:
        return "full"
    if conn.syn_ts and conn.synack_ts is not None and (conn.c.bytes or conn.c.fin_frame):
        return "full"
    return "partial"


def _tls_info(conn: Connection) -> dict[str, Any] | None:
    obs = conn.tls
    if obs is None:
        return None
    alerts = [
        {
            "frame": a.frame,
            "time": a.ts_ns / NS,
            "sender": "client" if a.from_client else "server",
            "level": {1: "warning", 2: "fatal"}.get(a.level) if a.level is not None else None,
            "description": a.name if a.name else (None if a.encrypted else a.description),
            "encrypted": a.encrypted,
        }
        for a in obs.alerts[:16]
    ]
    return {
        "version": obs.version,
        "sni": obs.sni,
        "alpn": getattr(obs, "alpn_selected", None) or None,
        "stage": obs.stage,
        "handshake_complete": obs.handshake_complete,
        "alerts": alerts,
    }


def icmp_errno(ipver: int, typ: int, code: int) -> int | None:
    if ipver == 4 and typ == 3:
        return _ICMP4_ERRNO.get(code)
    if ipver == 6 and typ == 1:
        return _ICMP6_ERRNO.get(code)
    return None


def _icmp_info(conn: Connection) -> dict[str, Any] | None:
    e = conn.icmp
    if e is None:
        return None
    names = _ICMP4_NAMES if e.ipver == 4 else _ICMP6_NAMES
    unreach = (e.ipver == 4 and e.type == 3) or (e.ipver == 6 and e.type == 1)
    return {
        "type": e.type,
        "code": e.code,
        "name": names.get(e.code, f"code {e.code}") if unreach else f"type {e.type} code {e.code}",
        "sender": e.sender,
        "frame": e.frame,
        "time": e.ts_ns / NS,
        "errno": icmp_errno(e.ipver, e.type, e.code),
    }


def _race(conn: Connection, outcome: str) -> bool:
    """A request written after the server's FIN, or crossing it on the wire after idling."""
    if outcome != "server_close_after_request" or not conn.requests:
        return False
    req = conn.requests[-1]
    if req.after_server_fin:
        return True
    fin = conn.s.fin_ts
    if fin is None or req.idle_before_ns is None:
        return False
    crossing = max(conn.rtt_ns or 0, 1_000_000)
    return fin - req.ts_ns <= crossing and req.idle_before_ns >= conn.idle_threshold_ns()


# -- evidence ----------------------------------------------------------------------------------
def _at(ts: int | None, t0: int) -> str:
    return "?" if ts is None else f"t={(ts - t0) / NS:.3f} s"


def _evidence(conn: Connection, rec: ConnectionRecord, t0: int) -> str:
    o = rec.outcome
    dec = conn.machine.decisive
    frame = dec.frame if dec else None
    orient = ""
    if conn.orientation == "port":
        orient = f" (no SYN seen: server chosen by port {conn.s_port})"
    req = conn.requests[-1] if conn.requests else None
    req_txt = ""
    if req is not None:
        req_txt = f"request '{req.line}'" if req.line else "client data"
        req_txt += f" at frame {req.frame} ({_at(req.ts_ns, t0)})"
    if o == "refused":
        first = conn.syn_frames[0] if conn.syn_frames else None
        lat = dec.ts_ns - conn.syn_ts[0] if (dec and conn.syn_ts) else None
        who = "the server"
        if dec is not None and dec.side is Side.NETWORK:
            who = f"a middlebox ({dec.detail}: not the server's TTL)"
        return f"SYN at frame {first} was answered by RST from {who} at frame {frame}, {_s(lat)} later."
    if o == "proxy_refused":
        p = rec.proxy or {}
        return (
            f"The HTTP proxy refused the tunnel: '{p.get('request')}' at frame "
            f"{conn.requests[0].frame if conn.requests else '?'} was answered "
            f"'{dec.detail if dec else '?'}' at frame {frame} ({_at(dec.ts_ns if dec else None, t0)}){orient}."
        )
    if o == "network_reset":
        ctx = {"AWAITING": f" while the {req_txt} awaited a response",
               "RECEIVING": " in the middle of a response",
               "TLS_HANDSHAKE": " during the TLS handshake"}.get(
            conn.machine.prior_state.name if conn.machine.prior_state else "", " on an idle connection")  # fmt: skip
        return (
            f"An RST in the server's name (frame {frame}, {_at(dec.ts_ns if dec else None, t0)}) "
            f"reset the connection{ctx}; its IP TTL/hop limit ({dec.detail if dec else '?'} on the "
            "server's earlier packets) shows it was sent by a firewall, NAT or load balancer on "
            f"the path, not by the server{orient}."
        )
    if o == "syn_timeout":
        n = len(conn.syn_ts)
        spacing = ", ".join(_s(b - a) for a, b in zip(conn.syn_ts, conn.syn_ts[1:], strict=False))
        txt = f"{n} SYN{'s' if n != 1 else ''} (frames {_frames(conn.syn_frames)}) got no answer"
        if spacing:
            txt += f"; retransmitted after {spacing}"
        span = conn.syn_ts[-1] - conn.syn_ts[0] if conn.syn_ts else 0
        txt += f"; tried for {_s(span)}"
        if conn.c.rst_frame:
            txt += f"; the client gave up with RST at frame {conn.c.rst_frame}"
        return txt + "."
    if o == "icmp_unreachable":
        info = rec.icmp or {}
        return (
            f"SYN at frame {conn.syn_frames[0] if conn.syn_frames else '?'} was answered by ICMP "
            f"{info.get('name', '')} (type {info.get('type')}, code {info.get('code')}) "
            f"from {info.get('sender')} at frame {frame}"
            + (", a router on the path" if rec.closed_by == "network" else ", the server itself")
            + "."
        )
    if o == "tls_alert":
        who = dec.side.value if dec else "?"
        stage = (rec.tls or {}).get("stage")
        ver = (rec.tls or {}).get("version")
        extra = f"; handshake stage {stage}" + (f", {ver}" if ver else "")
        return f"The {who} sent a fatal TLS alert {dec.detail if dec else ''} at frame {frame} ({_at(dec.ts_ns if dec else None, t0)}){extra}."
    if o == "tls_handshake_aborted":
        who = dec.side.value if dec else "?"
        how = dec.kind.value.upper() if dec else "?"
        stage = (rec.tls or {}).get("stage")
        txt = f"The {who} sent {how} at frame {frame} during the TLS handshake (stage {stage}) without a readable alert"
        if conn.tiny_tls is not None:
            txt += f"; a {conn.tiny_tls[2]}-byte encrypted record just before it is probably an encrypted alert"
        return txt + "."
    if o == "server_close_after_request":
        fin = conn.s.fin_ts
        if rec.keepalive_race and req is not None and req.after_server_fin:
            idle = _s(conn.idle_at_close_ns)
            return (
                f"Keep-alive race: the server closed the idle connection (FIN at frame {conn.s.fin_frame}, "
                f"{_at(fin, t0)}, after {idle} idle), then the client wrote {req_txt}, "
                f"{_s(req.ts_ns - fin) if fin else '?'} after the FIN; no response came"
                + (
                    f", the server answered with RST at frame {conn.s.rst_frame}"
                    if conn.s.rst_frame
                    else ""
                )
                + "."
            )
        lat = (fin - req.ts_ns) if (fin and req) else None
        txt = f"The server sent FIN at frame {conn.s.fin_frame} ({_at(fin, t0)}), {_s(lat)} after the {req_txt}, without responding"
        if rec.keepalive_race:
            txt += f"; the request reused a connection idle for {_s(req.idle_before_ns if req else None)} (keep-alive race)"
        return txt + "."
    if o == "truncated_response":
        h = conn.http
        exp = getattr(h, "response_expected_bytes", None) if h else None
        got = getattr(h, "response_received_bytes", None) if h else None
        return f"The server sent FIN at frame {frame} ({_at(dec.ts_ns if dec else None, t0)}) in the middle of a response{truncated_size(got, exp)}."
    if o == "server_reset":
        ctx = {"AWAITING": f" while the {req_txt} awaited a response",
               "RECEIVING": " in the middle of a response"}.get(
            conn.machine.prior_state.name if conn.machine.prior_state else "", " on an idle connection")  # fmt: skip
        return f"The server reset the connection (RST at frame {frame}, {_at(dec.ts_ns if dec else None, t0)}){ctx}{orient}."
    if o == "client_reset":
        return f"The client reset the connection (RST at frame {frame}, {_at(dec.ts_ns if dec else None, t0)}) before closing it cleanly{orient}."
    if o == "client_timeout":
        waited = (dec.ts_ns - req.ts_ns) if (dec and req) else None
        how = dec.kind.value.upper() if dec else "?"
        return f"The client gave up ({how} at frame {frame}) {_s(waited)} after its {req_txt}, while no complete response had arrived — a read timeout of about {_s(waited)}."
    if o == "server_idle_close":
        return f"The server closed the idle connection (FIN at frame {frame}, {_at(dec.ts_ns if dec else None, t0)}) after {_s(conn.idle_at_close_ns)} without traffic; no request was outstanding{orient}."
    if o == "server_close":
        return f"The server closed (FIN at frame {frame}, {_at(dec.ts_ns if dec else None, t0)}) after completing {conn.responses} response(s){orient}."
    if o == "client_close":
        return f"The client closed (FIN at frame {frame}, {_at(dec.ts_ns if dec else None, t0)}) with nothing outstanding{orient}."
    # open
    what = (
        f"; {req_txt} still awaits a response"
        if conn.machine.prior_state and conn.machine.prior_state.name == "AWAITING"
        else ""
    )
    return f"Still open when the capture ended (last packet at frame {conn.last_frame}, {_at(conn.end_ts, t0)}){what}{orient}."


def _frames(frames: list[int]) -> str:
    if len(frames) <= 4:
        return ", ".join(map(str, frames))
    return f"{frames[0]}, {frames[1]}, …, {frames[-1]}"


# -- client errors -----------------------------------------------------------------------------
def client_errors(conn: Connection, rec: ConnectionRecord) -> dict[str, Any]:
    """What stdlib, requests, aiohttp and httpx raise for this wire pattern (None: nothing)."""
    errors = _client_errors(conn, rec)
    if rec.h2 is not None and rec.h2.get("httpx"):
        errors = dict(errors, httpx=rec.h2["httpx"])
    return errors


def _proxy_errors(rec: ConnectionRecord) -> dict[str, Any]:
    p = rec.proxy or {}
    status, reason = p.get("status"), p.get("reason") or ""
    target = p.get("target") or "?"
    host, _, port = target.rpartition(":")
    return {
        "stdlib": f"OSError: Tunnel connection failed: {status} {reason}",
        "requests": f"requests.exceptions.ProxyError: HTTPSConnectionPool(host='{host}', port={port}): Max retries exceeded with url: / (Caused by ProxyError('Unable to connect to proxy', OSError('Tunnel connection failed: {status} {reason}')))",
        "aiohttp": f"aiohttp.ClientHttpProxyError: {status}, message='{reason}'",
        "httpx": f"httpx.ProxyError: {status} {reason}",
        "errno": None,
    }


# What each client raises when the server closed after a request, without a response
REMOTE_DISCONNECTED: dict[str, Any] = {
    "stdlib": "http.client.RemoteDisconnected: Remote end closed connection without response",
    "requests": "requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))",
    "aiohttp": "aiohttp.ServerDisconnectedError: Server disconnected (idempotent requests are first retried once on a new connection)",
    "httpx": "httpx.RemoteProtocolError: Server disconnected without sending a response.",
    "errno": None,
}


# ... and when it reset the connection while a request awaited a response
RESET_AWAITING: dict[str, Any] = {
    "stdlib": "ConnectionResetError: [Errno 104] Connection reset by peer",
    "requests": "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
    "aiohttp": "aiohttp.ClientOSError: [Errno 104] Connection reset by peer (idempotent requests are first retried once on a new connection)",
    "httpx": "httpx.ReadError: [Errno 104] Connection reset by peer",
    "errno": 104,
}


def _client_errors(conn: Connection, rec: ConnectionRecord) -> dict[str, Any]:
    o = rec.outcome
    if o == "proxy_refused":
        return _proxy_errors(rec)
    host, port = rec.server_ip, rec.server_port
    none = {"stdlib": None, "requests": None, "aiohttp": None, "httpx": None, "errno": None}
    if o == "refused":
        return _connect_errors(host, port, 111)
    if o == "icmp_unreachable":
        info = rec.icmp or {}
        err = info.get("errno") or 113
        return _connect_errors(host, port, err)
    if o == "syn_timeout":
        kernel = bool(conn.syn_ts) and (conn.syn_ts[-1] - conn.syn_ts[0]) > 60 * NS
        if kernel:
            return {
                "stdlib": "TimeoutError: [Errno 110] Connection timed out",
                "requests": f"requests.exceptions.ConnectTimeout: HTTPConnectionPool(host='{host}', port={port}): Max retries exceeded (Caused by ConnectTimeoutError(..., 'Connection to {host} timed out. (connect timeout=None)'))",
                "aiohttp": f"aiohttp.ClientConnectorError: Cannot connect to host {host}:{port} ssl:default [Connect call failed ('{host}', {port})] ([Errno 110] Connection timed out)",
                "httpx": "httpx.ConnectTimeout: [Errno 110] Connection timed out",
                "errno": 110,
            }
        return {
            "stdlib": "TimeoutError: timed out (socket timeout; without one the kernel gives up after ~131 s with [Errno 110])",
            "requests": f"requests.exceptions.ConnectTimeout: HTTPConnectionPool(host='{host}', port={port}): Max retries exceeded (Caused by ConnectTimeoutError(..., 'Connection to {host} timed out. (connect timeout=…)'))",
            "aiohttp": f"aiohttp.ConnectionTimeoutError: Connection timeout to host {host}:{port}",
            "httpx": "httpx.ConnectTimeout: timed out",
            "errno": 110,
        }
    if o == "tls_alert":
        return _tls_alert_errors(conn, rec)
    if o == "tls_handshake_aborted":
        dec = conn.machine.decisive
        if dec is not None and dec.side is Side.SERVER and dec.kind is Ev.RST:
            return {
                "stdlib": "ConnectionResetError: [Errno 104] Connection reset by peer",
                "requests": "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
                "aiohttp": f"aiohttp.ClientOSError: [Errno 104] Connection reset by peer (during the TLS handshake with {host}:{port})",
                "httpx": "httpx.ConnectError: [Errno 104] Connection reset by peer",
                "errno": 104,
            }
        if dec is not None and dec.side is Side.SERVER:
            return {
                "stdlib": "ssl.SSLEOFError: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol",
                "requests": "requests.exceptions.SSLError: … (Caused by SSLError(SSLEOFError(8, '[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol')))",
                "aiohttp": f"aiohttp.ClientConnectorError: Cannot connect to host {host}:{port} ssl:default [Connection lost during the TLS handshake]",
                "httpx": "httpx.ConnectError: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol",
                "errno": None,
            }
        return {  # the client walked away: it raised locally (asyncio sends no alert)
            "stdlib": "ssl.SSLCertVerificationError or a handshake timeout (the client closed without a TLS alert)",
            "requests": "requests.exceptions.SSLError (certificate rejected) or requests.exceptions.ConnectTimeout",
            "aiohttp": f"aiohttp.ClientConnectorCertificateError: Cannot connect to host {host}:{port} ssl:True [SSLCertVerificationError: …] (asyncio closes without an alert)",
            "httpx": "httpx.ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed or httpx.ConnectTimeout",
            "errno": None,
        }
    if o == "server_close_after_request":
        return REMOTE_DISCONNECTED
    if o == "truncated_response":
        h = conn.http
        exp = getattr(h, "response_expected_bytes", None) if h else None
        got = getattr(h, "response_received_bytes", None) if h else None
        return truncated_errors(got, exp)
    if o in ("server_reset", "network_reset"):
        prior = conn.machine.prior_state.name if conn.machine.prior_state else ""
        if prior == "RECEIVING":
            return {
                "stdlib": "ConnectionResetError: [Errno 104] Connection reset by peer",
                "requests": "requests.exceptions.ChunkedEncodingError: (\"Connection broken: ConnectionResetError(104, 'Connection reset by peer')\", ConnectionResetError(104, 'Connection reset by peer'))",
                "aiohttp": "aiohttp.ClientPayloadError: Response payload is not completed: … ConnectionResetError(104, 'Connection reset by peer')",
                "httpx": "httpx.ReadError: [Errno 104] Connection reset by peer",
                "errno": 104,
            }
        uploading = conn.http is not None and conn.http.request_in_progress
        if prior == "AWAITING" and uploading:
            return {  # the reset hit the request body while it was being sent
                "stdlib": "BrokenPipeError: [Errno 32] Broken pipe or ConnectionResetError: [Errno 104] Connection reset by peer (while sending the body)",
                "requests": "requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response')) — urllib3 swallows the reset during the upload and reports RemoteDisconnected",
                "aiohttp": "aiohttp.ClientOSError: [Errno 104] Connection reset by peer",
                "httpx": "httpx.RemoteProtocolError: Server disconnected without sending a response.",
                "errno": 104,
            }
        if prior == "AWAITING":
            return RESET_AWAITING
        return {  # idle: only the next use of the pooled connection would notice
            "stdlib": "ConnectionResetError: [Errno 104] Connection reset by peer (on the next request over this connection)",
            "requests": None,
            "aiohttp": None,
            "httpx": None,
            "errno": 104,
        }
    if o == "client_timeout":
        return timeout_errors(host, port)
    return none


def timeout_errors(host: str, port: int) -> dict[str, Any]:
    """What each client raises when its read timeout ends the wait for a response."""
    return {
        "stdlib": "TimeoutError: timed out",
        "requests": f"requests.exceptions.ReadTimeout: HTTPConnectionPool(host='{host}', port={port}): Read timed out. (read timeout=…)",
        "aiohttp": "aiohttp.SocketTimeoutError: Timeout on reading data from socket (or TimeoutError for a total timeout)",
        "httpx": "httpx.ReadTimeout: timed out",
        "errno": None,
    }


def _connect_errors(host: str, port: int, err: int) -> dict[str, Any]:
    cls, text = _ERRNO_TEXT.get(err, ("OSError", f"errno {err}"))
    return {
        "stdlib": f"{cls}: [Errno {err}] {text}",
        "requests": f"requests.exceptions.ConnectionError: HTTPConnectionPool(host='{host}', port={port}): Max retries exceeded (Caused by NewConnectionError('Failed to establish a new connection: [Errno {err}] {text}'))",
        "aiohttp": f"aiohttp.ClientConnectorError: Cannot connect to host {host}:{port} ssl:default [Connect call failed ('{host}', {port})] ([Errno {err}] {text})",
        "httpx": f"httpx.ConnectError: [Errno {err}] {text}",
        "errno": err,
    }


def _tls_alert_errors(conn: Connection, rec: ConnectionRecord) -> dict[str, Any]:
    dec = conn.machine.decisive
    desc = None
    obs = conn.tls
    if obs is not None:
        for a in obs.alerts:
            if dec is not None and a.frame == dec.frame and a.description is not None:
                desc = a.description
                break
    host, port = rec.server_ip, rec.server_port
    if dec is not None and dec.side is Side.CLIENT and (desc in _CERT_REJECTIONS or desc is None):
        return {
            "stdlib": "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
            "requests": "requests.exceptions.SSLError: … (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed …')))",
            "aiohttp": f"aiohttp.ClientConnectorCertificateError: Cannot connect to host {host}:{port} ssl:True [SSLCertVerificationError: (1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed …')]",
            "httpx": "httpx.ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
            "errno": None,
        }
    if dec is not None and dec.side is Side.CLIENT:
        name = ALERT_NAMES.get(desc or -1, "alert")
        return {
            "stdlib": f"ssl.SSLError (the client aborted the handshake with {name})",
            "requests": "requests.exceptions.SSLError",
            "aiohttp": f"aiohttp.ClientConnectorSSLError: Cannot connect to host {host}:{port}",
            "httpx": "httpx.ConnectError: [SSL] …",
            "errno": None,
        }
    text = _OPENSSL_ALERT_TEXT.get(desc or -1, "alert")
    reason = text.upper().replace(" ", "_")
    ssl_msg = f"[SSL: {reason}] {text}"
    httpx_cls = "ReadError" if desc == 116 else "ConnectError"
    return {
        "stdlib": f"ssl.SSLError: {ssl_msg}",
        "requests": f"requests.exceptions.SSLError: … (Caused by SSLError(SSLError(1, '{ssl_msg}')))",
        "aiohttp": f"aiohttp.ClientConnectorSSLError: Cannot connect to host {host}:{port} ssl:default [{ssl_msg}]",
        "httpx": f"httpx.{httpx_cls}: {ssl_msg}",
        "errno": None,
    }


# -- across connections ------------------------------------------------------------------------
_RETRIED = frozenset({"server_close_after_request", "server_reset"})
RETRY_WINDOW_NS = 1_000_000_000
_RETRY_STEP = 1 << 16  # positions a window of the retries' search


@dataclass(slots=True)
class IdleTimeout:
    """The server idle timeout inferred from idle closes, per server endpoint."""

    server: str
    seconds: float
    samples: int
    matches: str | None
    client_reused_after_s: float | None = None  # longest idle reuse that raced a close

    def sentence(self) -> str:
        txt = f"{self.server} closes idle connections after ≈{self.seconds:.1f} s ({self.samples} idle close{'s' if self.samples != 1 else ''})"
        if self.matches:
            txt += f", matching {self.matches}"
        if self.client_reused_after_s is not None:
            txt += (
                f"; your client reused a connection idle for {self.client_reused_after_s:.1f} s: "
                "its pool keeps connections longer than the server does"
            )
        return txt


def request_hash(line: str) -> int:
    """A request line's hash for ``CrossFacts`` (never 0: no request): 32 bits are
    enough, a retry found by it is checked against the line itself (``_retried``)."""
    return (hash(line) & 0xFFFFFFFF) or 1


class CrossFacts:
    """What a connection's record owes to the others in the analysis, gathered in one
    streaming pass so that a capture with millions of connections needs a few integers
    per connection, not its records: ``add`` every record once (in id order), then
    ``apply`` patches the few records it changes, and ``idle_timeouts`` summarises.

    - A failed request repeated at once on a new connection is marked a retry (aiohttp
      ≥ 3.10 retries idempotent requests once after ServerDisconnectedError /
      ClientOSError).
    - A SYN answered by RST has no earlier server packet to compare the RST's TTL with;
      other connections to the same server address give one. When their SYN-ACKs all
      arrive with one TTL and the RST with another, a middlebox forged it. Keyed by the
      client's own SYN TTL too: it tells the vantage point (a capture on the client sees
      its SYNs with their initial TTL, one on the server sees them decremented), and the
      server's TTL is only comparable from the same point.
    - The server idle timeout is the median idle gap before a server's idle closes.

    Kept per record, in columns (25 bytes a record, in a temporary file once big:
    ``_columns``), and index-tagged columns and lists for the few records that need more,
    so that the workers gather the facts of their shards as the records come. The merge
    adopts those parts as they are (``extend``), with each record's position among the
    records: nothing is copied or put in id order, which kept a second set of columns
    and a sort of all of them in memory at the merge's peak. ``apply`` finds the retries
    among the connections of the client and server pairs that had a failure (a sort of
    those alone) and reads no record. The hashes
    (``hash()`` of strings) are only comparable between processes forked from one
    another; see ``_store.RecordStore.seed``.
    """

    def __init__(self, ids: bool = True) -> None:
        """``ids``: keep the records' ids and positions (a worker's facts need not:
        ``extend`` numbers them)."""
        # (``Column``: in a temporary file once big, see ``_columns``)
        self._start = Column("q")
        self._pair = Column("q")  # hash of (client address, server endpoint)
        self._request = Column("I")  # ``request_hash`` of the last request line, 0 when none
        self._id = Column("q") if ids else None
        self._at = Column("q")  # with ids: each record's position (the index ``apply`` patches)
        self._ttl_key = Column("i")  # index in _ttl_keys of (server address, client TTL), or -1
        self._ttl = Column("B")  # the server's TTL (when _ttl_key is not -1)
        self._ttl_keys: dict[tuple[str, int | None], int] = {}
        # failed (a retry may follow), closed, with a request: index, close ns, request line
        # (code in _lines); in index order
        self._fail_at, self._fail_close, self._fail_line = Column("q"), Column("q"), Column("i")
        self._lines: dict[str, int] = {}
        # refused with a RST of known TTL: (index, server address, client TTL, RST's TTL)
        self._refused: list[tuple[int, str, int | None, int]] = []
        # idle gaps before a server's close, and idle spells reused when a close raced:
        # index, server (code in _servers), seconds
        self._gap_at, self._gap_server, self._gap_s = Column("q"), Column("i"), Column("d")
        self._reuse_at, self._reuse_server, self._reuse_s = Column("q"), Column("i"), Column("d")
        self._servers: dict[str, int] = {}
        self._names: list[str] = []  # _lines by code, once read (``_failure``)
        self._parts: list[tuple[CrossFacts, Any]] = []  # adopted (``extend``), positions
        self._n = 0  # positions given so far

    def add(self, r: ConnectionRecord) -> None:
        i = len(self._start)
        self._start.append(r.start_ns)
        # (address, port) stands for the server endpoint: the address tells the IP version
        self._pair.append(hash((r.client_ip, r.server_ip, r.server_port)))
        req = r.last_request
        self._request.append(0 if req is None else request_hash(req))
        if self._id is not None:
            self._id.append(r.id)
            self._at.append(self._n)
            self._n += 1
        outcome = r.outcome
        if outcome in _RETRIED and r.close_ns is not None and req is not None:
            self._fail(i, r.close_ns, req)
        ttl = r.server_ttl
        if ttl is not None and r.handshake == "full":
            key = (r.server_ip, r.client_ttl)
            code = self._ttl_keys.get(key)
            if code is None:
                code = self._ttl_keys[key] = len(self._ttl_keys)
            self._ttl_key.append(code)
            self._ttl.append(ttl)
        else:
            self._ttl_key.append(-1)
            self._ttl.append(0)
        if outcome == "refused" and r.closed_by == "server" and r.reset_ttl is not None:
            self._refused.append((i, r.server_ip, r.client_ttl, r.reset_ttl))
        race = r.keepalive_race
        idle = r.idle_before_close_s
        if idle is not None and (race or outcome == "server_idle_close"):
            self._gaps([(i, r.server, idle)])
        if race and r.reused_after_idle_s is not None:
            self._reused([(i, r.server, r.reused_after_idle_s)])

    def _fail(self, i: int, close_ns: int, request: str) -> None:
        self._fail_at.append(i)
        self._fail_close.append(close_ns)
        self._fail_line.append(self._lines.setdefault(request, len(self._lines)))

    def _gaps(self, entries: list[tuple[int, str, float]]) -> None:
        self._entries(entries, self._gap_at, self._gap_server, self._gap_s)

    def _reused(self, entries: list[tuple[int, str, float]]) -> None:
        self._entries(entries, self._reuse_at, self._reuse_server, self._reuse_s)

    def _entries(self, entries: list[tuple[int, str, float]], *cols: Column) -> None:
        codes = self._servers
        at, server, sec = cols
        for i, name, v in entries:
            at.append(i)
            server.append(codes.setdefault(name, len(codes)))
            sec.append(v)

    def _failure(self, i: int, where: dict[int, int]) -> tuple[int, str]:
        """(close ns, request line) of failed record ``i`` (an index here). ``where``: each
        failed record's place among the failures, filled at the first call (a search of
        every failure a call cost 7 ms of a 4x capture's 1,500 retries)."""
        if not where:
            where.update((v, k) for k, v in enumerate(self._fail_at.view().tolist()))
        k = where[i]
        if len(self._names) != len(self._lines):
            self._names = list(self._lines)
        return self._fail_close[k], self._names[self._fail_line[k]]

    def add_block(self, f: dict[str, Any]) -> None:
        """``add`` for each connection of a fast-lane block, from its columns (numpy, from
        ``_fastlane.facts``): none of them was refused; its failures are keep-alive
        races and server resets."""
        import numpy as np

        i0 = len(self._start)
        assert self._id is None  # a worker's facts: the merge numbers them
        self._start.frombytes(f["start"].astype("<i8").tobytes())
        self._pair.frombytes(f["pair"].astype("<i8").tobytes())
        self._request.frombytes(f["request"].astype("<u4").tobytes())
        codes = self._ttl_keys
        own = [codes.setdefault(k, len(codes)) for k in f["ttl_keys"]]
        # each connection's code, by numpy (a list made connection by connection: 12 ms
        # of the benchmark); ``intc`` is the column's type ("i")
        self._ttl_key.frombytes(np.array(own, np.intc)[f["ttl_key"]].tobytes())
        self._ttl.frombytes(f["ttl"].astype("u1").tobytes())
        self._gaps([(i0 + j, server, idle) for j, server, idle in f["gaps"]])
        self._reused([(i0 + j, server, idle) for j, server, idle in f["reuse"]])
        for j, close_ns, request in f["failed"]:
            self._fail(i0 + j, close_ns, request)

    def extend(self, parts: list[CrossFacts], ranks: Column, n: int, starts: bool = True) -> None:
        """Adopt the facts of the records of ``parts`` (one after the other, as they are):
        ``ranks`` (a column over them, changed in place) gives each record its rank
        among the ``n`` kept, -1 for one left out; their positions, and ids, count on
        after the records already here. The parts are kept, not copied. ``starts=False``:
        their starts go, ``apply`` has them by position from its records (``starts()``)."""
        import numpy as np  # only the merge needs it (explain.py stays light to import)

        assert self._id is not None
        rank = ranks.view() if isinstance(ranks, Column) else ranks
        if self._n + n >= 2**31 and rank.dtype != np.int64:
            rank = rank.astype(np.int64)
        if self._n:
            step = 1 << 20  # (narrow temporaries)
            for lo in range(0, len(rank), step):
                r = rank[lo : lo + step]
                np.add(r, self._n, out=r, where=r >= 0)
                settle(step * rank.itemsize)
        off = 0
        for p in parts:
            size = len(p._start)
            self._parts.append((p, rank[off : off + size]))
            off += size
            if not starts:
                p._start = None  # type: ignore[assignment]
        self._n += n

    def _all(self) -> list[tuple[CrossFacts, Any, Any]]:
        """Every part of the facts with its records' positions (-1: left out) and ids."""

        assert self._id is not None
        own = self._at.view()
        out = [(p, at, at) for p, at in self._parts]
        return [(self, own, self._id.view()), *out]

    def apply(self, records: MutableSequence[ConnectionRecord]) -> None:
        """Patch ``records`` (the ones added, at their positions): each changed record is
        assigned back, so a store that hands out copies keeps the change; a store with an
        ``edit(i, fn, *args)`` method is handed the change instead (``_store.Records``
        makes it when the record is read: here no record is read at all)."""

        parts = self._all()
        edit = getattr(records, "edit", None)
        starts = getattr(records, "starts", None)  # by position: parts that left theirs
        for prev, pos, gap, request in self._retries(parts, starts() if starts else None):
            note = f"; it repeats the request of connection #{prev} {_s(gap)} after that one failed — the pattern of aiohttp's automatic retry of idempotent requests."
            self._patch(records, edit, pos, self._retried, (prev, request, note))
        seen: dict[tuple[str, int | None], set[int] | None] = {}
        refused = sorted(e for p, at, _ in parts for e in _tagged(p._refused, at))
        for ri, server_ip, client_ttl, reset_ttl in refused:
            key = (server_ip, client_ttl)
            if key not in seen:
                seen[key] = self._server_ttls(parts, key)
            ttls = seen[key]
            if ttls is None or len(ttls) != 1 or reset_ttl in ttls:
                continue
            (server_ttl,) = ttls
            note = (
                f"; its TTL {reset_ttl} is not the {server_ttl} this server's SYN-ACKs arrive with on "
                "other connections here: a firewall or load balancer on the path forged it."
            )
            self._patch(records, edit, ri, self._forged, (note,))

    @staticmethod
    def _retries(
        parts: list[tuple[CrossFacts, Any, Any]], starts: Any = None
    ) -> Iterator[tuple[int, int, int, str]]:
        """(id of the failed record, position of its retry, ns between, request line) for
        each record that follows a failed one (by start, then position) between the same
        client and server and repeats its request within ``RETRY_WINDOW_NS`` of its close.
        ``starts``: every record's start by position, for the parts that let theirs go
        (``extend``).

        Only the pairs that had a failure are looked at, a window of positions at a time
        (records come in position order nearly by start), so that memory holds a window's
        rows, not a sort of every record; the last row of each pair carries over to the
        next window. Where starts go back across windows (two captures of the same time
        in one analysis), a single window takes them all."""
        import numpy as np

        from pcapdiag import _arrays

        failed_at = [p._fail_at.view() for p, _, _ in parts]
        pairs = _arrays.distinct(
            np.concatenate(
                [
                    p._pair.view()[idx[at[idx] >= 0]]
                    for (p, at, _), idx in zip(parts, failed_at, strict=True)
                ]
            )
        )
        if not len(pairs):
            return
        n = sum(len(at) for _, at, _ in parts)  # positions are fewer (records left out)
        step = _RETRY_STEP
        picked, where, flags = CrossFacts._candidates(parts, failed_at, pairs, step)
        places: list[dict[int, int]] = [{} for _ in parts]  # (``_failure``)
        for attempt in (step, max(n, 1)):
            out: list[tuple[int, int, int, str]] = []
            carry: tuple[Any, ...] | None = None
            last = None  # the highest start of the windows before
            for lo in range(0, n, attempt):
                hi = lo + attempt
                cols: list[list[Any]] = [[], [], [], [], [], []]  # pair start pos req failed row
                for k, (p, mine, pos, failed) in enumerate(
                    zip((p for p, _, _ in parts), picked, where, flags, strict=True)
                ):
                    (w,) = np.nonzero((pos >= lo) & (pos < hi))
                    rows, at = mine[w], pos[w]
                    for col, v in zip(
                        cols,
                        (
                            p._pair.view()[rows],
                            starts[at] if p._start is None else p._start.view()[rows],
                            at,
                            p._request.view()[rows],
                            failed[w],
                            rows.astype(np.int64) * len(parts) + k,
                        ),
                        strict=True,
                    ):
                        col.append(v)
                pair, start, pos, req, failed, row = (np.concatenate(c) for c in cols)
                if len(start) and last is not None and int(start.min()) < last:
                    break  # starts went back: all at once
                if len(start):
                    last = int(start.max()) if last is None else max(last, int(start.max()))
                if carry is not None:
                    pair, start, pos, req, failed, row = (
                        np.concatenate([c, v])
                        for c, v in zip(carry, (pair, start, pos, req, failed, row), strict=True)
                    )
                seq = np.lexsort((pos, start, pair))
                pair, start, pos, req, failed, row = (
                    c[seq] for c in (pair, start, pos, req, failed, row)
                )
                hit = failed[:-1] & (pair[:-1] == pair[1:]) & (req[1:] != 0) & (req[1:] == req[:-1])
                for j in np.nonzero(hit)[0].tolist():
                    k = int(row[j]) % len(parts)
                    owner, _, ids = parts[k]
                    local = int(row[j]) // len(parts)
                    close, request = owner._failure(local, places[k])
                    gap = int(start[j + 1]) - close
                    if 0 <= gap <= RETRY_WINDOW_NS:
                        out.append((int(ids[local]), int(pos[j + 1]), gap, request))
                ends = np.ones(len(pair), dtype=bool)  # each pair's last row carries over
                ends[:-1] = pair[:-1] != pair[1:]
                carry = tuple(c[ends] for c in (pair, start, pos, req, failed, row))
            else:
                yield from out
                return

    @staticmethod
    def _candidates(
        parts: list[tuple[CrossFacts, Any, Any]], failed_at: list[Any], pairs: Any, step: int
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """Per part: the rows of records kept between the client–server ``pairs`` (sorted
        hashes), their positions, and whether each failed (``failed_at``: the part's
        failed rows). Compared ``step`` rows at a time: narrow temporaries."""
        import numpy as np

        from pcapdiag import _arrays

        picked, where, flags = [], [], []
        sieve = _arrays.Sieve(pairs)  # (made once for every part's windows)
        for (p, at, _), idx in zip(parts, failed_at, strict=True):
            pair = p._pair.view()
            narrow = np.uint32 if len(pair) < 2**32 else np.int64  # rows: all of them, at worst
            mine = [np.zeros(0, dtype=narrow)]
            for lo in range(0, len(pair), step):
                c, a = pair[lo : lo + step], at[lo : lo + step]
                (may,) = np.nonzero(sieve(c) & (a >= 0))
                near = pairs[np.searchsorted(pairs, c[may]).clip(max=len(pairs) - 1)]
                mine.append((may[near == c[may]] + lo).astype(narrow))
                settle(len(c) * (8 + at.itemsize))
            rows = np.concatenate(mine)
            picked.append(rows)
            where.append(at[rows])
            flags.append(_arrays.member(rows, idx))
        return picked, where, flags

    @staticmethod
    def _server_ttls(
        parts: list[tuple[CrossFacts, Any, Any]], key: tuple[str, int | None]
    ) -> set[int] | None:
        """The TTLs the SYN-ACKs of ``key`` (server address, client TTL) arrived with on
        the records kept; None when no record has the key."""
        from pcapdiag import _arrays

        out: set[int] | None = None
        for p, at, _ in parts:
            code = p._ttl_keys.get(key)
            if code is None:
                continue
            ttl_key, ttl = p._ttl_key.view(), p._ttl.view()
            out = out or set()
            step = 1 << 20  # (narrow temporaries)
            for lo in range(0, len(ttl), step):
                hi = lo + step
                w = (ttl_key[lo:hi] == code) & (at[lo:hi] >= 0)
                out |= set(_arrays.distinct(ttl[lo:hi][w]).tolist())
                settle(step * (5 + at.itemsize))
        return out

    @staticmethod
    def _patch(
        records: MutableSequence[ConnectionRecord],
        edit: Any,
        i: int,
        fn: Any,
        args: tuple[Any, ...],
    ) -> None:
        if edit is not None:
            edit(i, fn, *args)
        else:
            r = records[i]
            fn(r, *args)
            records[i] = r

    @staticmethod
    def _retried(r: ConnectionRecord, prev_id: int, request: str, note: str) -> None:
        if r.last_request == request:  # not a hash collision
            r.retry_of = prev_id
            r.evidence = r.evidence.rstrip(".") + note

    @staticmethod
    def _forged(r: ConnectionRecord, note: str) -> None:
        r.closed_by = "network"
        r.evidence = r.evidence.rstrip(".") + note

    def idle_timeouts(self) -> list[IdleTimeout]:
        """Median idle gap before a server's idle close, per server, most samples first."""
        parts = self._all()
        gaps: dict[str, list[float]] = {}
        kept = _kept(parts, "_gap_at", "_gap_server", "_gap_s")
        for server, gap in kept:  # in position order: the servers' order among ties
            gaps.setdefault(server, []).append(gap)
        reuse: dict[str, float] = {}
        for server, idle in _kept(parts, "_reuse_at", "_reuse_server", "_reuse_s"):
            reuse[server] = max(reuse.get(server, 0.0), idle)
        out = []
        for server, vals in gaps.items():
            sec = statistics.median(vals)
            out.append(IdleTimeout(server, sec, len(vals), match_default(sec), reuse.get(server)))
        out.sort(key=lambda t: -t.samples)
        return out


def _tagged(entries: list[tuple[Any, ...]], at: Any) -> list[tuple[Any, ...]]:
    """Index-tagged ``entries`` of a part of ``CrossFacts``, tagged with their record's
    position instead; those of records left out go."""
    import numpy as np

    if not entries:
        return []
    pos = at[np.fromiter((e[0] for e in entries), dtype=np.int64, count=len(entries))].tolist()
    return [(i, *e[1:]) for i, e in zip(pos, entries, strict=True) if i >= 0]


def _kept(parts: list[tuple[CrossFacts, Any, Any]], *names: str) -> Iterator[tuple[str, float]]:
    """(server, seconds) of the index-tagged columns ``names`` (index, server, seconds)
    of every part of ``CrossFacts``, in order of their record's position; those of
    records left out go."""
    import numpy as np

    pos, codes, secs, servers = [], [], [], []
    for p, at, _ in parts:
        index, server, sec = (getattr(p, name).view() for name in names)
        where = at[index]
        keep = where >= 0
        pos.append(where[keep])
        codes.append(server[keep] + len(servers))
        secs.append(sec[keep])
        servers += list(p._servers)  # (a dict keeps its codes' order)
    if not servers:
        return
    order = np.argsort(np.concatenate(pos), kind="stable")
    code, sec = np.concatenate(codes)[order].tolist(), np.concatenate(secs)[order].tolist()
    for c, v in zip(code, sec, strict=True):
        yield servers[c], v


def _facts(records: Iterable[ConnectionRecord]) -> CrossFacts:
    facts = CrossFacts()
    for r in records:
        facts.add(r)
    return facts


def annotate(records: MutableSequence[ConnectionRecord]) -> None:
    """Retries and forged refusals (see ``CrossFacts``), for a list of records."""
    _facts(records).apply(records)


def infer_idle_timeouts(records: Iterable[ConnectionRecord]) -> list[IdleTimeout]:
    """Median idle gap before a server's idle close, per server, most samples first."""
    return _facts(records).idle_timeouts()


def match_default(seconds: float) -> str | None:
    for value, name in IDLE_DEFAULTS:
        if abs(seconds - value) <= max(0.15 * value, 0.3):
            return name
    return None
