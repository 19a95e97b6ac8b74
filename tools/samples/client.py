#!/usr/bin/env python3
"""Run ONE real HTTP client against a sample server and report what it raised.

Run inside the ``pd-client`` network namespace by ``tools/record_samples.py``::

    client.py --lib LIB --action ACTION --url URL [options]

LIB: stdlib (http.client), urllib (urllib.request), requests, httpx, aiohttp, raw (socket).
The last stdout line is a JSON object::

    {"client": "requests 2.34.2", "exception": {...} | null, "events": [...],
     "connections": N}

``exception`` is built from the exception object the library really raised (class,
module, str(), errno, cause/context/wrapped-reason chain); ``connections`` is how many
TCP connections this client deliberately opened (library-internal retries are not
counted here -- the server's log sees those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import ssl
import struct
import sys
import time
import traceback
from urllib.parse import urlsplit

T0 = time.monotonic()
EVENTS: list[dict] = []


def ev(what: str, **kw) -> None:
    EVENTS.append({"t": round(time.monotonic() - T0, 6), "event": what, **kw})


# --------------------------------------------------------------------------- exceptions


def _children(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    reason = getattr(e, "reason", None)  # urllib3 MaxRetryError.reason, URLError.reason
    if isinstance(reason, BaseException):
        out.append(reason)
    os_error = getattr(e, "os_error", None)  # aiohttp ClientConnectorError
    if isinstance(os_error, BaseException):
        out.append(os_error)
    for a in getattr(e, "args", ()):
        if isinstance(a, BaseException):
            out.append(a)
    if e.__cause__ is not None:
        out.append(e.__cause__)
    if e.__context__ is not None:  # kept even when suppressed ("raise ... from None")
        out.append(e.__context__)
    return out


def exception_chain(exc: BaseException) -> list[BaseException]:
    """Pre-order walk over wrapped reason/args/__cause__/__context__, each object once."""
    seen: set[int] = set()
    order: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        order.append(e)
        stack.extend(reversed(_children(e)))
    return order


def describe(exc: BaseException | None) -> dict | None:
    if exc is None:
        return None
    cls = type(exc)
    errno = getattr(exc, "errno", None)
    chain = exception_chain(exc)
    return {
        "type": cls.__name__,
        "module": cls.__module__,
        "qualname": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "errno": errno if isinstance(errno, int) else None,
        "chain": [type(e).__name__ for e in chain],
        "chain_detail": [
            {
                "qualname": f"{type(e).__module__}.{type(e).__qualname__}",
                "errno": getattr(e, "errno", None)
                if isinstance(getattr(e, "errno", None), int)
                else None,
                "message": str(e),
            }
            for e in chain
        ],
        "traceback_tail": traceback.format_exception(exc)[-1].strip(),
    }


# --------------------------------------------------------------------------- helpers


def client_name(lib: str) -> str:
    py = f"Python {platform.python_version()}"
    if lib == "stdlib":
        return f"http.client ({py})"
    if lib == "urllib":
        return f"urllib.request ({py})"
    if lib == "raw":
        return f"socket ({py})"
    mod = __import__(lib)
    return f"{lib} {mod.__version__}"


def tls_context(args) -> ssl.SSLContext | None:
    """An explicit client context when the scenario needs one, else None (library default).

    Built with ssl.create_default_context(), which honours SSLKEYLOGFILE."""
    if not (args.tls_max or args.cafile):
        return None
    ctx = (
        ssl.create_default_context(cafile=args.cafile)
        if args.cafile
        else ssl.create_default_context(cafile=__import__("certifi").where())
    )
    if args.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def hostport(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    return u.hostname, u.port or (443 if u.scheme == "https" else 80), u.scheme


def local_port(sock) -> int | None:
    try:
        return sock.getsockname()[1]
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- stdlib


def stdlib_conn(args, timeout):
    import http.client

    host, port, scheme = hostport(args.url)
    if scheme == "https":
        ctx = tls_context(args) or ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def run_stdlib(args) -> int:
    timeout = args.connect_timeout  # http.client has one timeout for connect and reads
    path = urlsplit(args.url).path or "/"
    conn = stdlib_conn(args, timeout)
    if args.action == "get":
        conn.request("GET", path)
        ev("request sent", local_port=local_port(conn.sock))
        r = conn.getresponse()
        body = r.read()
        ev("response", status=r.status, body_bytes=len(body))
        conn.close()
        return 1
    if args.action == "keepalive_race":
        conn.request("GET", path)
        port1 = local_port(conn.sock)
        r = conn.getresponse()
        body = r.read()
        ev(
            "response 1",
            status=r.status,
            body_bytes=len(body),
            local_port=port1,
            will_close=r.will_close,
        )
        time.sleep(args.idle)
        ev("sending request 2 on the pooled connection", local_port=local_port(conn.sock))
        conn.request("GET", path + "again")
        r = conn.getresponse()
        ev("response 2", status=r.status)
        conn.close()
        return 1
    if args.action in ("close", "idle_close", "hold"):
        for i in range(args.repeat):
            if i:
                time.sleep(args.gap)
            conn.request("GET", path)
            r = conn.getresponse()
            ev(
                f"response {i + 1}",
                status=r.status,
                body_bytes=len(r.read()),
                local_port=local_port(conn.sock),
            )
        if args.action == "idle_close":
            time.sleep(args.idle)
        if args.action == "hold":
            hold()
        conn.close()
        ev("client closed")
        return 1
    raise SystemExit(f"stdlib: unsupported action {args.action}")


def run_urllib(args) -> int:
    import urllib.request

    ctx = tls_context(args)
    kw = {"context": ctx} if ctx else {}
    if args.action != "get":
        raise SystemExit(f"urllib: unsupported action {args.action}")
    with urllib.request.urlopen(args.url, timeout=args.connect_timeout, **kw) as r:
        body = r.read()
        ev("response", status=r.status, body_bytes=len(body))
    return 1


def hold() -> None:
    print("HOLDING", flush=True)
    sys.stdin.read()  # the recorder closes our stdin once tcpdump has stopped
    ev("hold released")


# --------------------------------------------------------------------------- requests


def requests_pooled_port(s, url) -> int | None:
    """Local port of the idle connection urllib3 keeps for url (the one it will reuse)."""
    try:
        pool = s.get_adapter(url).poolmanager.connection_from_url(url)
        for conn in list(pool.pool.queue):
            if conn is not None and getattr(conn, "sock", None) is not None:
                return local_port(conn.sock)
    except Exception:  # noqa: BLE001 - best effort, only an observation
        return None
    return None


def run_requests(args) -> int:
    import requests
    from requests.adapters import HTTPAdapter

    ctx = tls_context(args)

    class CtxAdapter(HTTPAdapter):
        def build_connection_pool_key_attributes(self, request, verify, cert=None):
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(
                request, verify, cert
            )
            pool_kwargs["ssl_context"] = ctx
            return host_params, pool_kwargs

    def session():
        s = requests.Session()
        if ctx is not None:
            s.mount("https://", CtxAdapter())
        if args.proxy:
            s.proxies = {"http": args.proxy, "https": args.proxy}
        return s

    timeout = (
        (args.connect_timeout, args.read_timeout)
        if (args.connect_timeout or args.read_timeout)
        else None
    )

    if args.action == "get":
        with session() as s:
            r = s.get(args.url, timeout=timeout)
            ev("response", status=r.status_code, body_bytes=len(r.content))
        return 1
    if args.action in ("close", "idle_close", "hold"):
        s = session()
        for i in range(args.repeat):
            if i:
                time.sleep(args.gap)
            r = s.get(args.url, timeout=timeout)
            ev(f"response {i + 1}", status=r.status_code, body_bytes=len(r.content))
        if args.action == "idle_close":
            time.sleep(args.idle)
        if args.action == "hold":
            hold()
        s.close()
        ev("session closed")
        return 1
    if args.action == "multi_idle":
        sessions = []
        for c in range(args.conns):
            s = session()
            sessions.append(s)
            for i in range(c + 1):
                r = s.get(args.url, timeout=timeout)
                ev(f"conn {c + 1} response {i + 1}", status=r.status_code)
                time.sleep(args.gap)
        time.sleep(args.idle)
        for s in sessions:
            s.close()
        ev("sessions closed")
        return args.conns
    if args.action == "keepalive_race":
        s = session()
        try:
            r = s.get(args.url, timeout=timeout, stream=True)
            port1 = local_port(getattr(r.raw.connection, "sock", None))
            body = r.content
            ev("response 1", status=r.status_code, body_bytes=len(body), local_port=port1)
            time.sleep(args.idle)
            ev(
                "sending request 2 on the pooled connection",
                local_port=requests_pooled_port(s, args.url),
                request_line=f"GET {urlsplit(args.url).path or '/'}again HTTP/1.1",
            )
            r = s.get(args.url + "again", timeout=timeout)
            ev("response 2", status=r.status_code, body_bytes=len(r.content))
        finally:
            s.close()
        return 1
    if args.action == "stream_abort":
        with session() as s:
            r = s.get(args.url, timeout=timeout, stream=True)
            first = r.raw.read(100)
            ev(
                "response head",
                status=r.status_code,
                content_length=r.headers.get("Content-Length"),
                read_body_bytes=len(first),
            )
            r.close()  # unread body bytes remain in the socket -> kernel sends RST
            ev("response closed with unread body")
        return 1
    raise SystemExit(f"requests: unsupported action {args.action}")


# --------------------------------------------------------------------------- httpx


def httpx_pooled_port(c) -> int | None:
    try:
        for conn in c._transport._pool.connections:
            stream = conn._connection._network_stream
            return stream.get_extra_info("client_addr")[1]
    except Exception:  # noqa: BLE001 - best effort, only an observation
        return None
    return None


def run_httpx(args) -> int:
    import httpx

    ctx = tls_context(args)
    kw = {}
    if ctx is not None:
        kw["verify"] = ctx
    if args.proxy:
        kw["proxy"] = args.proxy
    if args.http2:
        kw["http2"] = True
    if args.h2c:  # cleartext HTTP/2 with prior knowledge
        kw["http1"], kw["http2"] = False, True
    if args.timeout is not None:
        kw["timeout"] = args.timeout  # httpx.Client(timeout=2): connect/read/write/pool
    elif args.connect_timeout or args.read_timeout:
        kw["timeout"] = httpx.Timeout(
            5.0, connect=args.connect_timeout or 5.0, read=args.read_timeout or 5.0
        )
    if args.action == "get":
        with httpx.Client(**kw) as c:
            r = c.get(args.url)
            ev("response", status=r.status_code, body_bytes=len(r.content))
        return 1
    if args.action in ("close", "idle_close", "hold"):
        c = httpx.Client(**kw)
        for i in range(args.repeat):
            if i:
                time.sleep(args.gap)
            r = c.get(args.url)
            ev(
                f"response {i + 1}",
                status=r.status_code,
                body_bytes=len(r.content),
                http_version=r.http_version,
            )
        if args.action == "idle_close":
            time.sleep(args.idle)
        if args.action == "hold":
            hold()
        c.close()
        ev("client closed")
        return 1
    if args.action == "keepalive_race":
        c = httpx.Client(**kw)
        try:
            r = c.get(args.url)
            addr = r.extensions["network_stream"].get_extra_info("client_addr")
            ev(
                "response 1",
                status=r.status_code,
                body_bytes=len(r.content),
                local_port=addr[1] if addr else None,
                http_version=r.http_version,
            )
            time.sleep(args.idle)
            ev(
                "sending request 2 on the pooled connection",
                local_port=httpx_pooled_port(c),
                request_line=f"GET {urlsplit(args.url).path or '/'}again HTTP/1.1",
            )
            r = c.get(args.url + "again")
            ev("response 2", status=r.status_code, body_bytes=len(r.content))
        finally:
            c.close()
        return 1
    if args.action == "multi_idle":
        clients = []
        for n in range(args.conns):
            c = httpx.Client(**kw)
            clients.append(c)
            for i in range(n + 1):
                r = c.get(args.url)
                ev(f"conn {n + 1} response {i + 1}", status=r.status_code)
                time.sleep(args.gap)
        time.sleep(args.idle)
        for c in clients:
            c.close()
        ev("clients closed")
        return args.conns
    raise SystemExit(f"httpx: unsupported action {args.action}")


# --------------------------------------------------------------------------- aiohttp


async def _aiohttp(args) -> int:
    import aiohttp

    ctx = tls_context(args)
    req_kw = {"ssl": ctx} if ctx is not None else {}
    if args.proxy:
        req_kw["proxy"] = args.proxy
    timeout = aiohttp.ClientTimeout(
        total=None, connect=args.connect_timeout, sock_read=args.read_timeout
    )
    if args.action == "get":
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(args.url, **req_kw) as r:
            body = await r.read()
            ev("response", status=r.status, body_bytes=len(body))
        return 1
    if args.action in ("close", "idle_close", "hold"):
        s = aiohttp.ClientSession(timeout=timeout)
        try:
            for i in range(args.repeat):
                if i:
                    await asyncio.sleep(args.gap)
                async with s.get(args.url, **req_kw) as r:
                    ev(f"response {i + 1}", status=r.status, body_bytes=len(await r.read()))
            if args.action == "idle_close":
                await asyncio.sleep(args.idle)
            if args.action == "hold":
                await asyncio.get_running_loop().run_in_executor(None, hold)
        finally:
            await s.close()
        ev("session closed")
        return 1
    raise SystemExit(f"aiohttp: unsupported action {args.action}")


def run_aiohttp(args) -> int:
    return asyncio.run(_aiohttp(args))


# --------------------------------------------------------------------------- raw


def run_raw(args) -> int:
    host, port, _ = hostport(args.url)
    path = urlsplit(args.url).path or "/"
    if args.action != "rst_after_head":
        raise SystemExit(f"raw: unsupported action {args.action}")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, port))
    hh = f"[{host}]" if fam == socket.AF_INET6 else host
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {hh}:{port}\r\nUser-Agent: pcapdiag-raw\r\n"
        "Accept: */*\r\n\r\n".encode()
    )
    ev("request sent", local_port=local_port(s))
    got = s.recv(200)
    ev("received first bytes", bytes=len(got), first_line=got.split(b"\r\n", 1)[0].decode())
    time.sleep(0.05)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    ev("closed with SO_LINGER 0 (RST)")
    return 1


RUNNERS = {
    "stdlib": run_stdlib,
    "urllib": run_urllib,
    "requests": run_requests,
    "httpx": run_httpx,
    "aiohttp": run_aiohttp,
    "raw": run_raw,
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True, choices=sorted(RUNNERS))
    p.add_argument("--action", default="get")
    p.add_argument("--url", required=True)
    p.add_argument("--connect-timeout", type=float)
    p.add_argument("--read-timeout", type=float)
    p.add_argument("--timeout", type=float, help="httpx: one timeout for everything")
    p.add_argument("--tls-max", choices=["1.2"])
    p.add_argument("--cafile")
    p.add_argument("--idle", type=float, default=0.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--conns", type=int, default=3)
    p.add_argument("--gap", type=float, default=0.1)
    p.add_argument("--proxy", help="requests/httpx/aiohttp: explicit proxy URL")
    p.add_argument("--http2", action="store_true", help="httpx: http2=True (ALPN h2)")
    p.add_argument("--h2c", action="store_true", help="httpx: HTTP/2 only, prior knowledge")
    args = p.parse_args()

    exc = None
    conns = None
    if args.lib in ("requests", "httpx", "aiohttp"):
        __import__(args.lib)  # import first so that "start" is close to the first SYN
    ev("start", keylog=os.environ.get("SSLKEYLOGFILE"))
    try:
        conns = RUNNERS[args.lib](args)
    except BaseException as e:  # noqa: BLE001 - the whole point is to record it
        if isinstance(e, SystemExit) and isinstance(e.code, str):
            raise
        exc = e
        ev("exception", type=type(e).__name__)
    out = {
        "client": client_name(args.lib),
        "lib": args.lib,
        "action": args.action,
        "url": args.url,
        "exception": describe(exc),
        "events": EVENTS,
        "connections": conns,
    }
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
