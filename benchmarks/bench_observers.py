"""Cost of the HTTP and TLS observers per connection, per header block and per record.

    python benchmarks/bench_observers.py [--repeat 7] [--scale 1.0]
    python benchmarks/bench_observers.py --compare HEAD   # before (git rev) vs working tree
    python benchmarks/bench_observers.py --rev HEAD       # only the code of a git revision

Scenarios (one "op" each; the tracker feeds one call per in-order segment):

  http.new            ``HttpObserver()``
  tls.new             ``TlsObserver()``
  http.request_head   a small GET head (request line + 5 fields) in one segment
  http.response_head  a response head (5 fields, Content-Length: 0) in one segment
  http.*_head_unique  the same, but every head differs (target, Date and a request id):
                      nothing to reuse from earlier heads
  http.connection     new observer, one request and one response (200-byte body)
  http.exchange       (b) keep-alive request + response head with a 200-byte body
  http.chunked        (c) request + chunked response (3 chunks, last chunk, no trailers)
  tls.handshake       (d) new observer + TLS 1.3 handshake: ClientHello, ServerHello + CCS
                      + 4 encrypted records, client CCS + Finished
  tls.app_records     (d) 20 application_data records (one per segment, both directions)

Each scenario runs ``repeat`` times; every run times many ops and reports µs per op.
Printed: the median and the minimum of the runs (wall clock, ``time.perf_counter``) and
the median of ``time.process_time`` (CPU time of this process, less sensitive to other
processes on a busy machine). With ``--compare`` the two implementations run
alternately, run by run, so background load hits both alike. The garbage collector stays
enabled, as in the tool.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# ---------------------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------------------

REQUEST = (
    b"GET /x HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"User-Agent: bench/1.0\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
RESPONSE_EMPTY = (
    b"HTTP/1.1 204 No Content\r\n"
    b"Server: nginx/1.25.3\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 0\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
RESPONSE_200 = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.25.3\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 200\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n" + b"x" * 200
)
RESPONSE_CHUNKED = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.25.3\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b"64\r\n" + b"a" * 100 + b"\r\n"
    b"64\r\n" + b"b" * 100 + b"\r\n"
    b"32\r\n" + b"c" * 50 + b"\r\n"
    b"0\r\n\r\n"
)


def _unique_requests(n: int) -> list[bytes]:
    return [
        REQUEST.replace(b"GET /x ", b"GET /x?id=%d " % i).replace(
            b"Accept: */*", b"X-Request-Id: %08x" % i
        )
        for i in range(n)
    ]


def _unique_responses(n: int) -> list[bytes]:
    return [
        RESPONSE_EMPTY.replace(
            b"00:00:00", b"%02d:%02d:%02d" % (i // 3600 % 24, i // 60 % 60, i % 60)
        ).replace(b"Content-Type: text/plain", b'ETag: "%08x"' % i)
        for i in range(n)
    ]


def _record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + version.to_bytes(2) + len(body).to_bytes(2) + body


def _handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3) + body


def _ext(etype: int, body: bytes) -> bytes:
    return etype.to_bytes(2) + len(body).to_bytes(2) + body


def _client_hello() -> bytes:
    name = b"www.example.com"
    sni = (0).to_bytes(1) + len(name).to_bytes(2) + name
    alpn = b"\x02h2\x08http/1.1"
    versions = b"\x7a\x7a\x03\x04\x03\x03"
    exts = (
        _ext(0, len(sni).to_bytes(2) + sni)
        + _ext(10, b"\x00\x06\x00\x1d\x00\x17\x00\x18")
        + _ext(13, b"\x00\x08\x04\x03\x08\x04\x04\x01\x05\x03")
        + _ext(16, len(alpn).to_bytes(2) + alpn)
        + _ext(43, bytes([len(versions)]) + versions)
        + _ext(51, b"\x00\x24\x00\x1d\x00\x20" + b"\x42" * 32)
        + _ext(21, b"\x00" * 200)  # padding
    )
    ciphers = b"".join(c.to_bytes(2) for c in (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F))
    body = (
        b"\x03\x03"
        + b"\x11" * 32
        + b"\x20"
        + b"\x33" * 32
        + len(ciphers).to_bytes(2)
        + ciphers
        + b"\x01\x00"
        + len(exts).to_bytes(2)
        + exts
    )
    return _record(22, _handshake(1, body), 0x0301)


def _server_hello() -> bytes:
    exts = _ext(43, b"\x03\x04") + _ext(51, b"\x00\x1d\x00\x20" + b"\x44" * 32)
    body = (
        b"\x03\x03"
        + b"\x22" * 32
        + b"\x20"
        + b"\x33" * 32
        + b"\x13\x01\x00"
        + len(exts).to_bytes(2)
        + exts
    )
    return _record(22, _handshake(2, body))


CCS = _record(20, b"\x01")
TLS_CLIENT_HELLO = _client_hello()
# ServerHello, middlebox CCS, then EncryptedExtensions / Certificate / CertificateVerify /
# Finished as application_data records, all in one segment
TLS_SERVER_FLIGHT = (
    _server_hello() + CCS + b"".join(_record(23, b"\x5a" * n) for n in (40, 2400, 280, 53))
)
TLS_CLIENT_FINISHED = CCS + _record(23, b"\x5b" * 53)
UNIQUE_REQUESTS = _unique_requests(50_000)
UNIQUE_RESPONSES = _unique_responses(50_000)
TLS_APP = [(i % 2 == 0, _record(23, b"\x6c" * (300 if i % 2 == 0 else 1200))) for i in range(20)]

# ---------------------------------------------------------------------------------------
# Scenarios: run(mod_http, mod_tls, n) -> (wall seconds, cpu seconds) for n ops
# ---------------------------------------------------------------------------------------

Scenario = Callable[[types.ModuleType, types.ModuleType, int], tuple[float, float]]
clock, cpu = time.perf_counter, time.process_time


def http_new(h, t, n):
    cls = h.HttpObserver
    w, c = clock(), cpu()
    for _ in range(n):
        cls()
    return clock() - w, cpu() - c


def tls_new(h, t, n):
    cls = t.TlsObserver
    w, c = clock(), cpu()
    for _ in range(n):
        cls()
    return clock() - w, cpu() - c


BATCH = 500  # requests in flight at most (fewer than _http.MAX_PENDING)


def _http_heads(
    h, n: int, requests: list[bytes], responses: list[bytes], timed: str
) -> tuple[float, float]:
    """n request heads then n responses, in batches; time only one of the two sides."""
    wall = cpu_s = 0.0
    done = 0
    while done < n:
        k = min(BATCH, n - done)
        reqs = [requests[(done + i) % len(requests)] for i in range(k)]
        resps = [responses[(done + i) % len(responses)] for i in range(k)]
        done += k
        o = h.HttpObserver()
        feed, events = o.feed, o.events
        if timed == "request":
            w, c = clock(), cpu()
            for i, req in enumerate(reqs):
                feed(True, req, i, i)
                events.clear()
            wall, cpu_s = wall + clock() - w, cpu_s + cpu() - c
        else:
            for i, req in enumerate(reqs):
                feed(True, req, i, i)
            events.clear()
            w, c = clock(), cpu()
            for i, resp in enumerate(resps):
                feed(False, resp, i, i)
                events.clear()
            wall, cpu_s = wall + clock() - w, cpu_s + cpu() - c
        assert o.responses == (k if timed == "response" else 0) and o.synced
    return wall, cpu_s


def http_request_head(h, t, n):
    return _http_heads(h, n, [REQUEST], [RESPONSE_EMPTY], "request")


def http_response_head(h, t, n):
    return _http_heads(h, n, [REQUEST], [RESPONSE_EMPTY], "response")


def http_request_head_unique(h, t, n):
    return _http_heads(h, n, UNIQUE_REQUESTS, [RESPONSE_EMPTY], "request")


def http_response_head_unique(h, t, n):
    return _http_heads(h, n, [REQUEST], UNIQUE_RESPONSES, "response")


def http_connection(h, t, n):
    """Short connections: observer, one request, one response with a 200-byte body."""
    cls = h.HttpObserver
    w, c = clock(), cpu()
    for i in range(n):
        o = cls()
        o.feed(True, REQUEST, i, 1)
        o.feed(False, RESPONSE_200, i, 2)
    wall, cpu_s = clock() - w, cpu() - c
    assert o.responses == 1 and len(o.events) == 4
    return wall, cpu_s


def _exchanges(h, n: int, response: bytes) -> tuple[float, float]:
    o = h.HttpObserver()
    feed, events = o.feed, o.events
    w, c = clock(), cpu()
    for i in range(n):
        feed(True, REQUEST, i, 2 * i)
        events.clear()  # the tracker drains events after every feed
        feed(False, response, i, 2 * i + 1)
        events.clear()
    wall, cpu_s = clock() - w, cpu() - c
    assert o.responses == n and o.synced, "benchmark traffic was misparsed"
    return wall, cpu_s


def http_exchange(h, t, n):
    return _exchanges(h, n, RESPONSE_200)


def http_chunked(h, t, n):
    return _exchanges(h, n, RESPONSE_CHUNKED)


def tls_handshake(h, t, n):
    cls = t.TlsObserver
    w, c = clock(), cpu()
    for i in range(n):
        o = cls()
        o.feed(True, TLS_CLIENT_HELLO, i, 1)
        o.feed(False, TLS_SERVER_FLIGHT, i, 2)
        o.feed(True, TLS_CLIENT_FINISHED, i, 3)
    wall, cpu_s = clock() - w, cpu() - c
    assert o.handshake_complete is False and o.stage == "client_finished", o.stage
    return wall, cpu_s


def tls_app_records(h, t, n):
    o = t.TlsObserver()
    o.feed(True, TLS_CLIENT_HELLO, 0, 1)
    o.feed(False, TLS_SERVER_FLIGHT, 0, 2)
    o.feed(True, TLS_CLIENT_FINISHED, 0, 3)
    feed = o.feed
    w, c = clock(), cpu()
    for i in range(n):
        for fc, rec in TLS_APP:
            feed(fc, rec, i, i)
    wall, cpu_s = clock() - w, cpu() - c
    assert o.handshake_complete and o.synced and not o.anomalies
    return wall, cpu_s


# name, function, ops per run at --scale 1 (each run takes roughly 0.1-0.3 s)
SCENARIOS: list[tuple[str, Scenario, int]] = [
    ("http.new", http_new, 100_000),
    ("tls.new", tls_new, 100_000),
    ("http.request_head", http_request_head, 20_000),
    ("http.response_head", http_response_head, 20_000),
    ("http.request_head_unique", http_request_head_unique, 20_000),
    ("http.response_head_unique", http_response_head_unique, 20_000),
    ("http.connection", http_connection, 20_000),
    ("http.exchange", http_exchange, 10_000),
    ("http.chunked", http_chunked, 10_000),
    ("tls.handshake", tls_handshake, 5_000),
    ("tls.app_records", tls_app_records, 5_000),
]
UNITS = {
    "tls.app_records": "µs / 20 records",
    "tls.handshake": "µs / connection",
    "http.connection": "µs / connection",
}

# ---------------------------------------------------------------------------------------
# Implementations: the working tree, or the two modules as of a git revision
# ---------------------------------------------------------------------------------------


def load_rev(rev: str) -> tuple[types.ModuleType, types.ModuleType]:
    """_http and _tls as of ``rev`` (both import only the standard library)."""
    mods = []
    for name in ("_http", "_tls"):
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:pcapdiag/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        mod = types.ModuleType(f"bench_{rev}_{name}".replace("/", "_").replace("~", "_"))
        mod.__file__ = f"{rev}:pcapdiag/{name}.py"
        sys.modules[mod.__name__] = mod  # dataclasses looks the module up
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)
        mods.append(mod)
    return mods[0], mods[1]


def load_tree() -> tuple[types.ModuleType, types.ModuleType]:
    from pcapdiag import _http, _tls

    return _http, _tls


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per scenario (default 7)")
    ap.add_argument("--scale", type=float, default=1.0, help="ops per run, relative")
    ap.add_argument("--rev", help="measure pcapdiag/_http.py and _tls.py as of this git rev")
    ap.add_argument("--compare", metavar="REV", help="REV (before) against the working tree")
    ap.add_argument("--only", help="comma-separated scenario names (prefixes)")
    args = ap.parse_args(argv)

    impls: list[tuple[str, tuple[types.ModuleType, types.ModuleType]]] = []
    if args.compare:
        impls.append((f"before ({args.compare})", load_rev(args.compare)))
    impls.append((args.rev or "working tree", load_rev(args.rev) if args.rev else load_tree()))

    chosen = SCENARIOS
    if args.only:
        prefixes = tuple(args.only.split(","))
        chosen = [s for s in SCENARIOS if s[0].startswith(prefixes)]

    print(f"python {sys.version.split()[0]}, {args.repeat} runs per scenario, GC enabled")
    head = f"{'scenario':26} {'implementation':16} {'median':>9} {'min':>9} {'cpu med':>9}  unit"
    print(head)
    print("-" * len(head))
    for name, fn, ops in chosen:
        n = max(1, int(ops * args.scale))
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in impls}
        for _label, (h, t) in impls:  # warm-up (and traffic sanity checks)
            fn(h, t, max(1, n // 10))
        for _ in range(args.repeat):
            for label, (h, t) in impls:
                gc.collect()
                wall, cpu_s = fn(h, t, n)
                samples[label].append((wall * 1e6 / n, cpu_s * 1e6 / n))
        medians = {}
        for label, _ in impls:
            walls = [s[0] for s in samples[label]]
            cpus = [s[1] for s in samples[label]]
            medians[label] = statistics.median(walls)
            print(
                f"{name:26} {label:16} {statistics.median(walls):9.2f} {min(walls):9.2f}"
                f" {statistics.median(cpus):9.2f}  {UNITS.get(name, 'µs / op')}"
            )
        if len(impls) == 2:
            (_, before), (_, after) = medians.items()
            print(f"{'':26} {'speed-up':16} {before / after:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
