#!/usr/bin/env python3
"""A small HTTP CONNECT proxy that misbehaves on purpose, for sample captures.

Run inside the ``pd-server`` network namespace by ``tools/record_samples.py``::

    proxy.py --mode MODE --host ADDR --port PORT --log FILE

Prints ``READY`` once listening; every client connection is described by one JSON line in
``--log``: the CONNECT request line, the status the proxy answered with and its headers,
what happened to the tunnel, and the ground-truth ``outcome``/``closed_by``/``note`` of
the client<->proxy TCP connection.

Modes:
  deny407        407 Proxy Authentication Required with "Connection: close", FIN in the same
                 segment as the response (TCP_CORK + shutdown), close()
  deny403        403 Forbidden, keep-alive (no "Connection: close"); wait for the client to
                 close
  bad_gateway    connect to the requested origin; it refuses (nothing listens) -> 502 Bad
                 Gateway with "Connection: close", FIN in the same segment, close()
  cut_handshake  200 Connection established, relay the ClientHello to the origin, relay
                 only the origin's first TLS record (ServerHello) back, then close() both
                 sides (FIN) in the middle of the TLS handshake
  tunnel         200 Connection established, then relay bytes both ways until one side
                 closes; close the other side then
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import signal
import socket
import struct
import sys
import threading
import time

LOCK = threading.Lock()
ARGS: argparse.Namespace
T0 = time.monotonic()


def log(entry: dict) -> None:
    entry.setdefault("t", round(time.monotonic() - T0, 6))
    with LOCK, open(ARGS.log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def fmt_peer(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def read_record(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """One whole TLS record (5-byte header + body) from buf + sock; returns (record, rest)."""
    while len(buf) < 5 or len(buf) < 5 + struct.unpack("!H", buf[3:5])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    n = 5 + struct.unpack("!H", buf[3:5])[0] if len(buf) >= 5 else len(buf)
    return buf[:n], buf[n:]


def respond(sock, status: str, headers: list[str]) -> str:
    head = f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    sock.sendall(head.encode())
    return head


def respond_and_close(sock, status: str, headers: list[str]) -> str:
    """Send the response and the FIN in one segment (TCP_CORK), then close()."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    head = respond(sock, status, headers)
    sock.shutdown(socket.SHUT_WR)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    sock.close()
    return head


def wait_client_close(sock, timeout: float = 10.0) -> str:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return "client EOF"
    except OSError as e:
        return f"client error {e!r}"


def relay(client, origin, first: bytes) -> tuple[str, dict]:
    """Relay both ways until one side closes; returns (who closed first, byte counts)."""
    if first:
        origin.sendall(first)
    counts = {"client_to_origin": len(first), "origin_to_client": 0}
    socks = {client: (origin, "client_to_origin"), origin: (client, "origin_to_client")}
    client.setblocking(True)
    while True:
        r, _, _ = select.select(list(socks), [], [], 10)
        if not r:
            return "timeout", counts
        for s in r:
            dst, key = socks[s]
            try:
                data = s.recv(65536)
            except OSError as e:
                return ("client" if s is client else "origin") + f" error {e!r}", counts
            if not data:
                return ("client" if s is client else "origin") + " EOF", counts
            counts[key] += len(data)
            with contextlib.suppress(OSError):
                dst.sendall(data)


def handle(sock: socket.socket, peer: str, n: int) -> None:
    sock.settimeout(10)
    head, rest = read_head(sock)
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, target = (line.split(" ") + ["", ""])[:2]
    entry: dict = {"conn": n, "peer": peer, "request_line": line, "origin": target}
    if method != "CONNECT":
        respond(sock, "405 Method Not Allowed", ["Content-Length: 0", "Connection: close"])
        sock.close()
        log(entry | {"status": 405, "outcome": "unknown", "closed_by": "unknown", "note": line})
        return
    host, port = split_target(target)
    if ARGS.mode == "deny407":
        sent = respond_and_close(
            sock,
            "407 Proxy Authentication Required",
            [
                'Proxy-Authenticate: Basic realm="pcapdiag"',
                "Content-Length: 0",
                "Connection: close",
            ],
        )
        log(
            entry
            | {
                "status": 407,
                "response_head": sent,
                "connection_close": True,
                "outcome": "server_close",
                "closed_by": "server",
                "note": f"proxy answered {line!r} with 407 Proxy Authentication Required "
                "(Proxy-Authenticate: Basic, Connection: close) and closed: response and FIN in one segment",
            }
        )
        return
    if ARGS.mode == "deny403":
        sent = respond(sock, "403 Forbidden", ["Content-Length: 0"])
        end = wait_client_close(sock)
        sock.close()
        log(
            entry
            | {
                "status": 403,
                "response_head": sent,
                "connection_close": False,
                "end": end,
                "outcome": "client_close" if end == "client EOF" else "unknown",
                "closed_by": "client" if end == "client EOF" else "unknown",
                "note": f"proxy answered {line!r} with 403 Forbidden and kept the connection "
                f"open (no Connection: close); the client closed it ({end})",
            }
        )
        return
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    origin = socket.socket(fam, socket.SOCK_STREAM)
    origin.settimeout(5)
    try:
        origin.connect((host, port))
    except OSError as e:
        origin.close()
        sent = respond_and_close(
            sock, "502 Bad Gateway", ["Content-Length: 0", "Connection: close"]
        )
        log(
            entry
            | {
                "status": 502,
                "response_head": sent,
                "connection_close": True,
                "origin_error": repr(e),
                "outcome": "server_close",
                "closed_by": "server",
                "note": f"proxy could not reach {target} ({e.strerror or e!r}), answered "
                "502 Bad Gateway (Connection: close) and closed: response and FIN in one segment",
            }
        )
        return
    sent = respond(sock, "200 Connection established", [])
    if ARGS.mode == "cut_handshake":
        hello, rest = read_record(sock, rest)
        origin.sendall(hello + rest)
        record, _ = read_record(origin, b"")
        sock.sendall(record)
        time.sleep(0.05)
        sock.close()
        origin.close()
        log(
            entry
            | {
                "status": 200,
                "response_head": sent,
                "relayed": {"client_to_origin": len(hello + rest), "origin_to_client": len(record)},
                "outcome": "tls_handshake_aborted",
                "closed_by": "server",
                "note": f"proxy established the tunnel to {target}, relayed the "
                f"{len(hello)}-byte ClientHello and only the origin's first TLS record "
                f"({len(record)} bytes, content type {record[0] if record else None}) and then "
                "closed the tunnel (FIN) in the middle of the handshake",
            }
        )
        return
    first_close, counts = relay(sock, origin, rest)
    sock.close()
    origin.close()
    log(
        entry
        | {
            "status": 200,
            "response_head": sent,
            "relayed": counts,
            "first_close": first_close,
            "outcome": "tunnel",
            "closed_by": "client" if first_close.startswith("client") else "server",
            "note": f"proxy relayed the tunnel to {target} until the {first_close}, then "
            "closed the other side",
        }
    )


def serve_one(conn: socket.socket, addr: tuple, n: int) -> None:
    try:
        handle(conn, fmt_peer(addr), n)
    except Exception as e:  # noqa: BLE001 - record anything unexpected in the log
        log(
            {
                "conn": n,
                "peer": fmt_peer(addr),
                "error": repr(e),
                "outcome": "unknown",
                "closed_by": "unknown",
                "note": f"proxy handler crashed: {e!r}",
            }
        )
        with contextlib.suppress(OSError):
            conn.close()


def main() -> None:
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument(
        "--mode",
        required=True,
        choices=["deny407", "deny403", "bad_gateway", "cut_handshake", "tunnel"],
    )
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
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
    seq = 0
    threads = []
    try:
        while True:
            conn, addr = ls.accept()
            seq += 1
            log({"conn": seq, "peer": fmt_peer(addr), "event": "accept"})
            t = threading.Thread(target=serve_one, args=(conn, addr, seq), daemon=True)
            t.start()
            threads.append(t)
    finally:
        ls.close()
        for t in threads:
            t.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
