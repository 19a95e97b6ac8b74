#!/usr/bin/env python3
"""Small HTTP/TLS servers that misbehave on purpose, for recording sample captures.

Run inside the ``pd-server`` network namespace by ``tools/record_samples.py``::

    server.py --mode MODE --host ADDR --port PORT --log FILE [--cert C --key K]

Prints ``READY`` on stdout once listening. Every accepted connection is handled in a
thread and described by one JSON line appended to ``--log``: the peer, what the
server did, what it observed from the client, and -- because the server is the one
that knows what it did -- the ground-truth ``outcome``/``closed_by``/``note`` for that
connection. Stops on SIGTERM/SIGINT.

Modes (HTTP/1.1 unless noted):
  fin_after_request   read the request head, close() without responding (FIN)
  rst_after_request   read the request head, SO_LINGER 0 close (RST)
  truncated_cl        announce Content-Length: 100, send 3 bytes, close (FIN)
  truncated_chunked   chunked response, announce a 16-byte chunk, send 3 bytes, close (FIN)
  rst_mid_response    announce Content-Length: 100, send 3 bytes, SO_LINGER 0 close (RST)
  slow                read the request, sleep --delay s, respond (Connection: close), close
  keepalive_idle      answer requests with keep-alive; close an idle connection after --idle s
  tls                 TLS server (--cert/--key, --tls-min/--tls-max); serves keep-alive HTTP
                      after a successful handshake, logs handshake failures
  close_after_hello   read the TLS ClientHello record, close() (FIN), no alert
  tls_truncated       TLS: announce Content-Length: 20000, send 2000 body bytes, close() (FIN,
                      no close_notify)
  tls_keepalive       TLS keep-alive server closing an idle connection after --idle s (FIN, no
                      close_notify); with --hold-data the server's own firewall holds back
                      (drops) the client's data segments from the first response until the
                      idle close, so a request sent just before the close is still in flight
                      when it happens (the client's kernel retransmits it afterwards)
  rst_after_hello     read the TLS ClientHello record, SO_LINGER 0 close (RST), no alert
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

LOCK = threading.Lock()
ARGS: argparse.Namespace
CONN_SEQ = 0
T0 = time.monotonic()


def log(entry: dict) -> None:
    entry.setdefault("t", round(time.monotonic() - T0, 6))
    with LOCK, open(ARGS.log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def fmt_peer(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_head(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the end of an HTTP request head (GET requests carry no body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def linger_close(sock: socket.socket) -> None:
    """close() with SO_LINGER {on, 0}: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def peer_closed(sock: socket.socket) -> bool:
    """True if the peer's FIN (EOF) is already queued on the socket."""
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def first_line(req: bytes) -> str:
    return req.split(b"\r\n", 1)[0].decode("latin-1")


# --------------------------------------------------------------------------- handlers


def h_fin_after_request(sock, peer, n):
    req = read_head(sock)
    sock.close()
    log(
        {
            "conn": n,
            "peer": peer,
            "request": first_line(req),
            "request_bytes": len(req),
            "action": "close() after reading the request, nothing sent",
            "outcome": "server_close_after_request",
            "closed_by": "server",
            "note": f"server read the {len(req)}-byte request ({first_line(req)!r}) and closed "
            "with FIN without sending any response byte",
        }
    )


def h_rst_after_request(sock, peer, n):
    req = read_head(sock)
    linger_close(sock)
    log(
        {
            "conn": n,
            "peer": peer,
            "request": first_line(req),
            "request_bytes": len(req),
            "action": "SO_LINGER 0 close() after reading the request",
            "outcome": "server_reset",
            "closed_by": "server",
            "note": f"server read the {len(req)}-byte request and aborted the established "
            "connection with RST (SO_LINGER 0), no response byte sent",
        }
    )


CL100_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


def h_truncated_cl(sock, peer, n):
    req = read_head(sock)
    sock.sendall(CL100_HEAD + b"abc")
    time.sleep(0.05)
    sock.close()
    log(
        {
            "conn": n,
            "peer": peer,
            "request": first_line(req),
            "action": "sent head with Content-Length: 100 and 3 body bytes, then close()",
            "outcome": "truncated_response",
            "closed_by": "server",
            "note": "server announced Content-Length: 100, sent 3 body bytes and closed with FIN "
            "(97 bytes missing)",
        }
    )


def h_truncated_chunked(sock, peer, n):
    req = read_head(sock)
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        b"5\r\nhello\r\n10\r\nabc"
    )
    time.sleep(0.05)
    sock.close()
    log(
        {
            "conn": n,
            "peer": peer,
            "request": first_line(req),
            "action": "chunked response: one complete 5-byte chunk, then a 16-byte chunk cut "
            "after 3 bytes, then close()",
            "outcome": "truncated_response",
            "closed_by": "server",
            "note": "server sent a chunked body, announced a 0x10-byte chunk, sent 3 bytes of "
            "it and closed with FIN (no terminating 0-chunk)",
        }
    )


def h_rst_mid_response(sock, peer, n):
    req = read_head(sock)
    sock.sendall(CL100_HEAD + b"abc")
    time.sleep(0.05)
    linger_close(sock)
    log(
        {
            "conn": n,
            "peer": peer,
            "request": first_line(req),
            "action": "sent head with Content-Length: 100 and 3 body bytes, then SO_LINGER 0 close()",
            "outcome": "server_reset",
            "closed_by": "server",
            "note": "server sent the response head (Content-Length: 100) and 3 body bytes, then "
            "aborted with RST (SO_LINGER 0) mid-response",
        }
    )


def h_slow(sock, peer, n):
    req = read_head(sock)
    t_req = time.monotonic()
    # Sleep like a slow backend, but note when the client gave up (its FIN).
    client_fin_after = None
    deadline = t_req + ARGS.delay
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if r and peer_closed(sock):
            client_fin_after = round(time.monotonic() - t_req, 3)
            time.sleep(max(0.0, deadline - time.monotonic()))
            break
    body = b"finally\n"
    try:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        send_err = None
    except OSError as e:
        send_err = repr(e)
    time.sleep(0.05)
    sock.close()
    if client_fin_after is not None:
        note = (
            f"server slept {ARGS.delay:g} s before answering; the client gave up and "
            f"closed (FIN) {client_fin_after} s after its request; the server's late "
            "response then hit a closed socket (client kernel answers with RST)"
        )
        outcome, closer = "client_timeout", "client"
    else:
        note = f"server slept {ARGS.delay:g} s, responded and closed; client did not close first"
        outcome, closer = "server_close", "server"
    log(
        {
            "conn": n,
            "peer": peer,
            "request": first_line(req),
            "delay_s": ARGS.delay,
            "client_fin_after_s": client_fin_after,
            "send_error": send_err,
            "action": "slow response",
            "outcome": outcome,
            "closed_by": closer,
            "note": note,
        }
    )


def h_keepalive_idle(sock, peer, n):
    served = []
    sock.settimeout(None)
    buf = b""
    reason = None
    while True:
        while b"\r\n\r\n" not in buf:
            r, _, _ = select.select([sock], [], [], ARGS.idle)
            if not r:
                reason = "idle"
                break
            chunk = sock.recv(65536)
            if not chunk:
                reason = "client_eof"
                break
            buf += chunk
        if reason:
            break
        head, buf = buf.split(b"\r\n\r\n", 1)
        body = b"ok %d\n" % (len(served) + 1)
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: keep-alive\r\n"
            + f"Keep-Alive: timeout={ARGS.idle:g}\r\n".encode()
            + b"\r\n"
            + body
        )
        served.append(first_line(head + b"\r\n"))
    sock.close()
    if reason == "idle":
        outcome, closer = "server_idle_close", "server"
        note = (
            f"server answered {len(served)} request(s) with keep-alive, then closed the "
            f"connection (FIN) after {ARGS.idle:g} s idle"
        )
    else:
        outcome, closer = "client_close", "client"
        note = f"server answered {len(served)} request(s); the client closed first (FIN)"
    log(
        {
            "conn": n,
            "peer": peer,
            "requests": served,
            "idle_timeout_s": ARGS.idle,
            "end": reason,
            "action": "keep-alive server",
            "outcome": outcome,
            "closed_by": closer,
            "note": note,
        }
    )


TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def make_server_ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    if ARGS.tls_min:
        ctx.minimum_version = TLS_VERSIONS[ARGS.tls_min]
    if ARGS.tls_max:
        ctx.maximum_version = TLS_VERSIONS[ARGS.tls_max]
    if ARGS.ignore_eof:
        # treat a TCP close without close_notify as a clean EOF (no decode_error alert)
        ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


# Server-side handshake error reason -> (outcome, closed_by, what happened)
TLS_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": (
        "tls_alert",
        "client",
        "client rejected the self-signed certificate and sent a fatal unknown_ca alert",
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        "tls_alert",
        "client",
        "client rejected the certificate with a bad_certificate alert",
    ),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": (
        "tls_alert",
        "client",
        "client rejected the certificate with certificate_unknown",
    ),
    "UNSUPPORTED_PROTOCOL": (
        "tls_alert",
        "server",
        "client offered only versions below the server's minimum; the "
        "server sent a fatal protocol_version alert and closed",
    ),
    "UNEXPECTED_EOF_WHILE_READING": (
        "tls_handshake_aborted",
        "client",
        "client closed (FIN) during the handshake without sending "
        "a TLS alert; the server's OpenSSL answers such an EOF "
        "with its own fatal decode_error alert (plaintext in TLS "
        "1.2, encrypted in TLS 1.3) after the client's FIN",
    ),
}


def h_tls(sock, peer, n):
    ctx = make_server_ctx()
    sock.settimeout(10)
    # keep a duplicate of the descriptor: a failed handshake closes the SSLSocket
    probe = socket.socket(fileno=os.dup(sock.fileno()))
    tls = ctx.wrap_socket(
        sock, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
    )
    try:
        tls.do_handshake()
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or type(e).__name__
        outcome, closer, what = TLS_REASONS.get(
            reason, ("tls_handshake_aborted", "unknown", f"handshake failed: {e}")
        )
        client_eof = peer_closed(probe)
        tls.close()
        probe.close()
        note = f"{what} (server's ssl error: {reason})"
        if client_eof and outcome == "tls_alert" and closer == "server":
            note += (
                "; the client's FIN (sent after it received the alert) had already "
                "arrived when the server closed its side"
            )
        log(
            {
                "conn": n,
                "peer": peer,
                "handshake": "failed",
                "server_error": str(e),
                "reason": reason,
                "client_fin_seen_by_server_at_failure": client_eof,
                "outcome": outcome,
                "closed_by": closer,
                "note": note,
            }
        )
        return
    except OSError as e:
        tls.close()
        probe.close()
        log(
            {
                "conn": n,
                "peer": peer,
                "handshake": "failed",
                "server_error": repr(e),
                "outcome": "tls_handshake_aborted",
                "closed_by": "client",
                "note": f"handshake aborted by the client ({e!r})",
            }
        )
        return
    probe.close()
    version = tls.version()
    served = 0
    buf = b""
    end = None
    while True:
        try:
            while b"\r\n\r\n" not in buf:
                chunk = tls.recv(65536)
                if not chunk:
                    end = "client close_notify" if not ARGS.ignore_eof else "client EOF"
                    break
                buf += chunk
        except ssl.SSLEOFError:
            end = "client FIN without close_notify"
        except (ssl.SSLError, OSError) as e:
            end = f"client_error {e!r}"
        if end:
            break
        _, buf = buf.split(b"\r\n\r\n", 1)
        served += 1
        body = b"secret %d\n" % served
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
    tls.close()
    log(
        {
            "conn": n,
            "peer": peer,
            "handshake": "ok",
            "tls_version": version,
            "requests": served,
            "end": end,
            "outcome": "client_close",
            "closed_by": "client",
            "note": f"{version} handshake ok, server answered {served} request(s) with keep-alive; "
            f"the client closed first ({end})"
            + (
                "; the server's OpenSSL answered the missing close_notify with a fatal "
                "decode_error alert after the client's FIN"
                if end == "client FIN without close_notify"
                else ""
            ),
        }
    )


def tls_accept(sock, peer, n):
    """Server-side TLS handshake for the tls_* modes; logs a failure and returns None."""
    ctx = make_server_ctx()
    sock.settimeout(10)
    tls = ctx.wrap_socket(
        sock, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
    )
    try:
        tls.do_handshake()
    except (ssl.SSLError, OSError) as e:
        tls.close()
        log(
            {
                "conn": n,
                "peer": peer,
                "handshake": "failed",
                "server_error": repr(e),
                "outcome": "unknown",
                "closed_by": "unknown",
                "note": f"unexpected handshake failure: {e!r}",
            }
        )
        return None
    return tls


def tls_read_head(tls) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def h_tls_truncated(sock, peer, n):
    tls = tls_accept(sock, peer, n)
    if tls is None:
        return
    version = tls.version()
    req = tls_read_head(tls)
    body = (b"0123456789abcdefghijklmnopqrstuvwxyz-pcapdiag-truncated\n" * 40)[:2000]
    tls.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20000\r\n"
        b"Connection: keep-alive\r\n\r\n" + body
    )
    time.sleep(0.05)
    tls.close()  # plain close(): FIN, no close_notify
    log(
        {
            "conn": n,
            "peer": peer,
            "handshake": "ok",
            "tls_version": version,
            "request": first_line(req),
            "action": "sent head with Content-Length: 20000 and 2000 body bytes, then close() "
            "without close_notify",
            "outcome": "truncated_response",
            "closed_by": "server",
            "note": f"{version}: server announced Content-Length: 20000, sent 2000 body bytes "
            "and closed with FIN without a close_notify alert (18000 bytes missing)",
        }
    )


def hold_rule(op: str, peer: str) -> list[str]:
    """iptables rule in this (pd-server) namespace dropping the peer's data segments."""
    host, port = peer.rsplit(":", 1)
    host = host.strip("[]")
    tool = "ip6tables" if ":" in host else "iptables"
    return [tool, op, "INPUT", "-p", "tcp", "-s", host, "--sport", port, "--dport",
            str(ARGS.port), "--tcp-flags", "PSH", "PSH", "-j", "DROP"]  # fmt: skip


def h_tls_keepalive(sock, peer, n):
    tls = tls_accept(sock, peer, n)
    if tls is None:
        return
    version = tls.version()
    served: list[str] = []
    events: list[dict] = []
    buf = b""
    end = None
    held = False
    while True:
        try:
            while b"\r\n\r\n" not in buf:
                if not tls.pending():
                    r, _, _ = select.select([tls], [], [], ARGS.idle)
                    if not r:
                        end = "idle"
                        break
                chunk = tls.recv(65536)
                if not chunk:
                    end = "client EOF"
                    break
                buf += chunk
        except ssl.SSLEOFError:
            end = "client FIN without close_notify"
        except (ssl.SSLError, OSError) as e:
            end = f"client_error {e!r}"
        if end:
            break
        head, buf = buf.split(b"\r\n\r\n", 1)
        served.append(first_line(head + b"\r\n"))
        body = b"ok %d\n" % len(served)
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: keep-alive\r\n"
            + f"Keep-Alive: timeout={ARGS.idle:g}\r\n".encode()
            + b"\r\n"
            + body
        )
        events.append({"t": round(time.monotonic() - T0, 6), "event": f"response {len(served)}"})
        if ARGS.hold_data and not held:
            subprocess.run(hold_rule("-I", peer), check=True)
            held = True
            events.append({"t": round(time.monotonic() - T0, 6), "event": "holding client data"})
    tls.close()  # FIN, no close_notify
    events.append({"t": round(time.monotonic() - T0, 6), "event": f"closed ({end})"})
    if held:
        subprocess.run(hold_rule("-D", peer), check=True)
        events.append({"t": round(time.monotonic() - T0, 6), "event": "released client data"})
    if end == "idle":
        outcome, closer = "server_idle_close", "server"
        note = (
            f"{version}: server answered {len(served)} request(s) with keep-alive, then closed "
            f"the connection (FIN, no close_notify) after {ARGS.idle:g} s idle"
        )
    else:
        outcome, closer = "client_close", "client"
        note = f"{version}: server answered {len(served)} request(s); the client closed first"
    log(
        {
            "conn": n,
            "peer": peer,
            "handshake": "ok",
            "tls_version": version,
            "requests": served,
            "idle_timeout_s": ARGS.idle,
            "hold_data": ARGS.hold_data,
            "events": events,
            "end": end,
            "action": "TLS keep-alive server",
            "outcome": outcome,
            "closed_by": closer,
            "note": note,
        }
    )


def read_client_hello(sock) -> bytes:
    sock.settimeout(5)
    buf = b""
    while len(buf) < 5 or len(buf) < 5 + struct.unpack("!H", buf[3:5])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def h_close_after_hello(sock, peer, n):
    hello = read_client_hello(sock)
    sock.close()
    log(
        {
            "conn": n,
            "peer": peer,
            "client_hello_bytes": len(hello),
            "action": "close() after reading the ClientHello, no ServerHello/alert",
            "outcome": "tls_handshake_aborted",
            "closed_by": "server",
            "note": f"server read the {len(hello)}-byte ClientHello record and closed with FIN "
            "without any TLS record (no alert)",
        }
    )


def h_rst_after_hello(sock, peer, n):
    hello = read_client_hello(sock)
    linger_close(sock)
    log(
        {
            "conn": n,
            "peer": peer,
            "client_hello_bytes": len(hello),
            "action": "SO_LINGER 0 close() after reading the ClientHello",
            "outcome": "tls_handshake_aborted",
            "closed_by": "server",
            "note": f"server read the {len(hello)}-byte ClientHello record and reset the "
            "connection (RST, SO_LINGER 0) without any TLS record",
        }
    )


HANDLERS = {name[2:]: fn for name, fn in globals().items() if name.startswith("h_")}


def serve_one(conn: socket.socket, addr: tuple, n: int) -> None:
    try:
        HANDLERS[ARGS.mode](conn, fmt_peer(addr), n)
    except Exception as e:  # noqa: BLE001 - record anything unexpected in the log
        log(
            {
                "conn": n,
                "peer": fmt_peer(addr),
                "error": repr(e),
                "outcome": "unknown",
                "closed_by": "unknown",
                "note": f"server handler crashed: {e!r}",
            }
        )
        with contextlib.suppress(OSError):
            conn.close()


def main() -> None:
    global ARGS, CONN_SEQ
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True, choices=sorted(HANDLERS))
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls-min", choices=sorted(TLS_VERSIONS))
    p.add_argument("--tls-max", choices=sorted(TLS_VERSIONS))
    p.add_argument("--delay", type=float, default=3.0)
    p.add_argument("--idle", type=float, default=0.3)
    p.add_argument(
        "--ignore-eof",
        action="store_true",
        help="tls: set OP_IGNORE_UNEXPECTED_EOF (no alert on a ragged close)",
    )
    p.add_argument(
        "--hold-data",
        action="store_true",
        help="tls_keepalive: drop the client's data segments from the first response "
        "until the idle close (iptables in this namespace)",
    )
    ARGS = p.parse_args()

    fam = socket.AF_INET6 if ":" in ARGS.host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ARGS.host, ARGS.port))
    ls.listen(16)

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("READY", flush=True)
    threads = []
    try:
        while True:
            conn, addr = ls.accept()
            CONN_SEQ += 1
            log({"conn": CONN_SEQ, "peer": fmt_peer(addr), "event": "accept"})
            t = threading.Thread(target=serve_one, args=(conn, addr, CONN_SEQ), daemon=True)
            t.start()
            threads.append(t)
    finally:
        ls.close()
        for t in threads:
            t.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
