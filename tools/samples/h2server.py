#!/usr/bin/env python3
"""A small HTTP/2 server (``h2`` library) that misbehaves on purpose, for sample captures.

Run inside the ``pd-server`` network namespace by ``tools/record_samples.py``::

    h2server.py --mode MODE --host ADDR --port PORT --log FILE [--cert C --key K]

With ``--cert``/``--key`` it speaks TLS and selects ALPN ``h2``; without them it speaks
cleartext HTTP/2 with prior knowledge (h2c: the client starts with the connection
preface). Prints ``READY`` once listening; every connection is described by one JSON
line in ``--log`` with the frames the server sent (``goaway``, ``rst_streams``) and the
ground-truth ``outcome``/``closed_by``/``note`` of the TCP connection.

Modes:
  goaway_after_one  answer the first request (200), then GOAWAY(NO_ERROR,
                    last_stream_id=<that stream>), FIN in the same segment (TCP_CORK +
                    shutdown), then read until the client closes
  rst_stream        answer every request with RST_STREAM(--error, default REFUSED_STREAM);
                    keep the connection until the client closes it
  goaway_error      on the first request, send GOAWAY(--error, default ENHANCE_YOUR_CALM,
                    last_stream_id=0, debug data) without answering, FIN in the same segment
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events

LOCK = threading.Lock()
ARGS: argparse.Namespace
T0 = time.monotonic()
DEBUG_DATA = b"pcapdiag: calm down, too many requests"


def log(entry: dict) -> None:
    entry.setdefault("t", round(time.monotonic() - T0, 6))
    with LOCK, open(ARGS.log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def fmt_peer(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request_line(headers) -> str:
    h = {k.decode() if isinstance(k, bytes) else k: v for k, v in headers}
    dec = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h.items()}
    return f"{dec.get(':method', '?')} {dec.get(':path', '?')} HTTP/2"


def handle(sock: socket.socket, peer: str, n: int) -> None:
    version = None
    if ARGS.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
        ctx.set_alpn_protocols(["h2"])
        if ARGS.tls_max == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        sock = ctx.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False)
        version = f"{sock.version()} ALPN {sock.selected_alpn_protocol()}"
    sock.settimeout(10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    error = h2.errors.ErrorCodes[ARGS.error] if ARGS.error else None
    requests: list[str] = []
    sent: dict = {"goaway": None, "rst_streams": []}
    frames: list[dict] = []
    end = None
    closed_after_goaway = False

    def frame(what: str, **kw) -> None:
        frames.append({"t": round(time.monotonic() - T0, 6), "frame": what, **kw})

    while end is None:
        try:
            data = sock.recv(65536)
        except ssl.SSLEOFError:
            end = "client FIN without close_notify"
            break
        except (OSError, ssl.SSLError) as e:
            end = f"recv error {e!r}"
            break
        if not data:
            end = "client EOF"
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                sid = event.stream_id
                requests.append(request_line(event.headers))
                frame("HEADERS received", stream_id=sid, request=requests[-1])
                if ARGS.mode == "goaway_after_one":
                    body = b"hello over h2\n"
                    conn.send_headers(
                        sid,
                        [
                            (":status", "200"),
                            ("content-type", "text/plain"),
                            ("content-length", str(len(body))),
                        ],
                    )
                    conn.send_data(sid, body, end_stream=True)
                    frame("HEADERS+DATA sent", stream_id=sid, status=200)
                    conn.close_connection(
                        error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid
                    )
                    sent["goaway"] = {"last_stream_id": sid, "error": "NO_ERROR"}
                    frame("GOAWAY sent", last_stream_id=sid, error="NO_ERROR")
                    # GOAWAY and FIN in one segment (the FIN is queued before the uncork)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                    sock.sendall(conn.data_to_send())
                    end = "server closed after GOAWAY"
                    closed_after_goaway = True
                    break
                if ARGS.mode == "rst_stream":
                    err = error or h2.errors.ErrorCodes.REFUSED_STREAM
                    conn.reset_stream(sid, error_code=err)
                    sent["rst_streams"].append({"stream_id": sid, "error": err.name})
                    frame("RST_STREAM sent", stream_id=sid, error=err.name)
                if ARGS.mode == "goaway_error":
                    err = error or h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
                    conn.close_connection(
                        error_code=err, additional_data=DEBUG_DATA, last_stream_id=0
                    )
                    sent["goaway"] = {
                        "last_stream_id": 0,
                        "error": err.name,
                        "debug_data": DEBUG_DATA.decode(),
                    }
                    frame("GOAWAY sent", last_stream_id=0, error=err.name)
                    # GOAWAY and FIN in one segment (the FIN is queued before the uncork)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                    sock.sendall(conn.data_to_send())
                    end = "server closed after GOAWAY"
                    closed_after_goaway = True
                    break
            elif isinstance(event, h2.events.ConnectionTerminated):
                frame(
                    "GOAWAY received",
                    error=getattr(event.error_code, "name", str(event.error_code)),
                    last_stream_id=event.last_stream_id,
                )
            elif isinstance(event, h2.events.StreamReset):
                frame(
                    "RST_STREAM received",
                    stream_id=event.stream_id,
                    error=getattr(event.error_code, "name", str(event.error_code)),
                )
        out = conn.data_to_send()
        if out and not closed_after_goaway:
            with contextlib.suppress(OSError):
                sock.sendall(out)
    if closed_after_goaway:
        # FIN right behind the GOAWAY (corked: same segment), then read (and discard) whatever the
        # client still sends until its own FIN, so that the final close() is not an RST
        sock.shutdown(socket.SHUT_WR)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        frame("FIN sent (shutdown SHUT_WR)")
        drained = 0
        with contextlib.suppress(OSError, ssl.SSLError):
            sock.settimeout(2)
            while chunk := sock.recv(65536):
                drained += len(chunk)
        frame("client EOF after our FIN", bytes_read_after_goaway=drained)
    sock.close()  # FIN (no close_notify over TLS)
    h2facts = {k: v for k, v in sent.items() if v}
    if ARGS.mode == "goaway_after_one":
        outcome, closer = "server_close", "server"
        note = (
            f"server answered {requests[0]!r} on stream {sent['goaway']['last_stream_id']}, sent "
            "GOAWAY(NO_ERROR) naming it as the last stream and closed the connection: FIN in "
            "the same segment as the GOAWAY, then it read until the client's FIN"
            if sent["goaway"]
            else f"no request; {end}"
        )
    elif ARGS.mode == "goaway_error":
        outcome, closer = "server_close_after_request", "server"
        note = (
            f"server received {requests[0]!r} on stream 1 and, without answering it, sent "
            f"GOAWAY({sent['goaway']['error']}, last_stream_id=0, debug data) and closed: FIN "
            "in the same segment as the GOAWAY, then it read until the client's FIN"
        )
    else:
        outcome, closer = (
            ("client_close", "client")
            if end in ("client EOF", "client FIN without close_notify")
            else ("unknown", "unknown")
        )
        note = (
            f"server reset every stream ({', '.join(r['error'] for r in sent['rst_streams'])}) "
            f"without answering; the connection stayed open until the client closed it ({end})"
        ) + (
            "; the server's OpenSSL answered the missing close_notify with a fatal "
            "decode_error alert after the client's FIN"
            if end == "client FIN without close_notify"
            else ""
        )
    log(
        {
            "conn": n,
            "peer": peer,
            "tls": version,
            "requests": requests,
            "h2": h2facts,
            "frames": frames,
            "end": end,
            "outcome": outcome,
            "closed_by": closer,
            "note": note,
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
                "note": f"server handler crashed: {e!r}",
            }
        )
        with contextlib.suppress(OSError):
            conn.close()


def main() -> None:
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument(
        "--mode", required=True, choices=["goaway_after_one", "rst_stream", "goaway_error"]
    )
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls-max", choices=["1.2"])
    p.add_argument("--error", choices=[e.name for e in h2.errors.ErrorCodes])
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
