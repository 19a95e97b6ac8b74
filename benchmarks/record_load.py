"""Record a realistic large HTTP capture with tcpdump, to benchmark pcapdiag against peers.

    python benchmarks/record_load.py OUT.pcap [--packets 2700000] [--seconds 600] [--seed 1]
    python benchmarks/record_load.py OUT.pcap --scale 4       # also write OUT.x4.pcap
    python benchmarks/record_load.py BIG.pcap --scale 4 --from IN.pcap   # no recording

Run as root (network namespaces, iptables, tcpdump); ``bash benchmarks/setup_bench.sh``
installs the tools. Synthetic captures show one connection shape at a time; this one has
the mix a busy web server sees, made by real servers and real clients, so throughput and
connection counts measured on it mean something.

Network (made on every run, torn down at the end, also on errors and Ctrl-C)::

    pdbench-cli  pdb-c0 ========= pdb-s0  pdbench-srv      (tcpdump runs on pdb-s0)
    10.77.2.101-104/16                 10.77.1.1-4/16

Client address ``10.77.2.10i`` talks to server address ``10.77.1.i`` (host routes), so four
address pairs spread the ephemeral ports. Offloads are off on the veth so segments are
MTU-sized, as on a real NIC.

Servers, in pdbench-srv: nginx (own config, 2 workers, keepalive_timeout 2 s,
keepalive_requests 100) on :80 serving 200 B, 4 KB and 64 KB files; a small Python server on
:8081 that answers ``/ok`` but for ``/close`` closes after reading the request, for
``/reset`` resets (SO_LINGER 0), for ``/partial`` sends a truncated body and for ``/slow``
answers after the client's read timeout; nothing on :8082 (refused); :8083 dropped by
iptables (unanswered SYNs).

Load, in pdbench-cli, in rounds of about 5000 connections (counts jittered by ``--seed``):
~80 % one-request connections from ``ab`` (HTTP/1.0, nginx closes) on the three files;
~1 % keep-alive connections from ``ab -k`` (100 requests each, then nginx closes); the rest
from Python clients (http.client, requests, urllib3): keep-alive sessions of 2-8 requests
with short pauses, 10 % of them idle past nginx's keepalive_timeout before the last
request (stale connection), and about 3-4 % failures (refused, unanswered, reset, closed
without response, truncated, read timeout, client abort). ``ab`` does the bulk: measured
here, it opens 9,300 one-request connections/s against wrk's 9,900 (``Connection:
close``) and does 22,000 keep-alive requests/s like wrk, and it takes exact counts. The
Python clients are the slower part (a round takes about 6 s). The load
stops once the capture holds about ``--packets`` packets (the growing file is walked every
half second) or after ``--seconds``.

``--scale K`` writes K copies of the capture one after another, each shifted in time and
with its client addresses rewritten (10.77.2.x -> 10.(77+k).2.(x-k), which leaves every
checksum valid), so a K-times larger capture has K-times as many distinct connections. It
streams record by record and never holds the capture in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

NS_S, NS_C = "pdbench-srv", "pdbench-cli"
IF_S, IF_C = "pdb-s0", "pdb-c0"
SERVER_IPS = [f"10.77.1.{i}" for i in range(1, 5)]
CLIENT_IPS = [f"10.77.2.{100 + i}" for i in range(1, 5)]
CLIENT_PREFIX = bytes([10, 77, 2])  # what --scale rewrites
NGINX_PORT, ODD_PORT, CLOSED_PORT, DROP_PORT = 80, 8081, 8082, 8083
KEEPALIVE_TIMEOUT = 2
FILES = {"s.bin": 200, "m.bin": 4096, "l.bin": 65536}
FILE_WEIGHTS = {"s.bin": 6, "m.bin": 3, "l.bin": 1}

# One round, before jitter: ab one-request connections per file, ab -k requests, and the
# Python clients' connections per kind.
AB_SHORT = {"s.bin": 2400, "m.bin": 1200, "l.bin": 200}
AB_KEEPALIVE_REQUESTS = 5000
PY_TASKS = {
    "ka_httpclient": 200,
    "ka_requests": 150,
    "ka_urllib3": 150,
    "ok": 150,
    "close": 30,
    "reset": 30,
    "partial": 15,
    "slow": 15,
    "refused": 60,
    "unanswered": 30,
    "abort": 20,
}
PY_PROCS, PY_THREADS = 2, 48

NGINX_CONF = """\
user root;
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout {ka}s;
    keepalive_requests 100;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {port} backlog=4096 reuseport;
        root {tmp}/www;
    }}
}}
"""

PROBE = f"import urllib.request as u; u.urlopen('http://{SERVER_IPS[0]}/s.bin', timeout=1)"

PCAP_MAGICS = {  # magic -> (byte order, fractional-second units)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}


# --------------------------------------------------------------------------- pcap walking


def pcap_format(path: Path) -> tuple[struct.Struct, float]:
    """The record-header struct and fractional-second units of a classic pcap."""
    with open(path, "rb") as f:
        fmt = PCAP_MAGICS.get(f.read(4))
    if fmt is None:
        raise SystemExit(f"{path}: not a classic pcap file (pcapng? convert with editcap)")
    return struct.Struct(fmt[0] + "IIII"), fmt[1]


def iter_records(path: Path, chunk: int = 1 << 22) -> Iterator[tuple[bytes, bytes]]:
    """Yield (16-byte record header, frame) of a classic pcap, reading in large chunks."""
    rec, _ = pcap_format(path)
    with open(path, "rb") as f:
        f.seek(24)
        buf, pos = b"", 0
        while True:
            data = f.read(chunk)
            if not data:
                return
            buf = buf[pos:] + data
            pos, end = 0, len(buf)
            while pos + 16 <= end:
                caplen = rec.unpack_from(buf, pos)[2]
                if pos + 16 + caplen > end:
                    break
                yield buf[pos : pos + 16], buf[pos + 16 : pos + 16 + caplen]
                pos += 16 + caplen


class GrowingPcap:
    """Counts the records of a pcap another process is still writing, without rereading."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.packets, self.rec = path, 0, 0, None

    def update(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        with open(self.path, "rb") as f:
            if self.rec is None:
                head = f.read(24)
                if len(head) < 24:
                    return 0
                self.rec = struct.Struct(PCAP_MAGICS[head[:4]][0] + "IIII")
                self.offset = 24
            while self.offset + 16 <= size:
                f.seek(self.offset)
                caplen = self.rec.unpack(f.read(16))[2]
                if self.offset + 16 + caplen > size:
                    break
                self.offset += 16 + caplen
                self.packets += 1
        return self.packets


@dataclass
class CaptureFacts:
    packets: int = 0
    wire_bytes: int = 0
    syns: int = 0  # distinct SYNs (4-tuple + ISN): connections attempted, as seen on the wire
    first_ts: float = 0.0
    last_ts: float = 0.0


def capture_facts(path: Path) -> CaptureFacts:
    """One streaming pass: packets, bytes, time span and distinct client SYNs."""
    facts, syns = CaptureFacts(), set()
    rec, units = pcap_format(path)
    for hdr, frame in iter_records(path):
        sec, frac, _caplen, origlen = rec.unpack(hdr)
        ts = sec + frac / units
        if not facts.packets:
            facts.first_ts = ts
        facts.last_ts = ts
        facts.packets += 1
        facts.wire_bytes += origlen
        if frame[12:14] == b"\x08\x00" and len(frame) >= 34 + 20 and frame[23] == 6:
            tcp = 14 + (frame[14] & 0x0F) * 4
            if len(frame) >= tcp + 14 and frame[tcp + 13] & 0x12 == 0x02:
                syns.add(frame[26:34] + frame[tcp : tcp + 8])
    facts.syns = len(syns)
    return facts


def scale_capture(src: Path, dst: Path, copies: int) -> None:
    """Write ``copies`` time-shifted copies of ``src``, each with its own client addresses."""
    if not 1 <= copies <= 100:
        raise SystemExit("--scale must be 1..100")
    span, first = 0, None
    rec, _ = pcap_format(src)
    for hdr, _frame in iter_records(src):  # the span, so copies do not overlap in time
        sec = rec.unpack(hdr)[0]
        first = sec if first is None else first
        span = sec - first
    shift = span + 2
    with open(src, "rb") as f:
        global_header = f.read(24)
    with open(dst, "wb", buffering=1 << 22) as out:
        out.write(global_header)
        for k in range(copies):
            for hdr, frame in iter_records(src):
                sec, frac, caplen, origlen = rec.unpack(hdr)
                if k:
                    hdr = rec.pack(sec + k * shift, frac, caplen, origlen)
                    if frame[12:14] == b"\x08\x00" and len(frame) >= 34:
                        frame = _rewrite_clients(frame, k)
                out.write(hdr)
                out.write(frame)


def _rewrite_clients(frame: bytes, k: int) -> bytes:
    # 10.77.2.x -> 10.(77+k).2.(x-k): the first 16-bit word grows by k and the second shrinks
    # by k, so the one's-complement sums (IP and TCP/UDP checksums) are unchanged.
    b = bytearray(frame)
    for off in (26, 30):
        if b[off : off + 3] == CLIENT_PREFIX and b[off + 3] > k:
            b[off + 1] += k
            b[off + 3] -= k
    return bytes(b)


# --------------------------------------------------------------------------- child roles


class _OddHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                data += chunk
            mode = data.split(b" ", 2)[1].strip(b"/").split(b"?")[0]
            if mode == b"close":
                return  # the server's FIN, no response
            if mode == b"reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            if mode == b"partial":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"p" * 100)
                return
            if mode == b"slow":
                time.sleep(1.0)
            body = b"o" * 120
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )


class _OddServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


def server_main(port: int) -> None:
    """The misbehaving server (runs in pdbench-srv)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with _OddServer(("0.0.0.0", port), _OddHandler) as srv:
        print("ready", flush=True)
        srv.serve_forever()


def _path(rng: random.Random) -> str:
    if rng.random() < 0.02:
        return "/missing"  # nginx 404
    return "/" + rng.choices(list(FILE_WEIGHTS), list(FILE_WEIGHTS.values()))[0]


def _pauses(rng: random.Random, n: int) -> list[float]:
    """Pause before each request of a keep-alive session; sometimes one past the timeout."""
    pauses = [rng.uniform(0, 0.05) if rng.random() < 0.3 else 0.0 for _ in range(n)]
    pauses[0] = 0.0
    if rng.random() < 0.1:
        pauses[-1] = KEEPALIVE_TIMEOUT + 0.5
    return pauses


def _task(kind: str, rng: random.Random, stop: threading.Event) -> tuple[int, str]:
    """One client task; returns (connections it opened, "kind: outcome")."""
    n, outcome = _run_task(kind, rng, stop)
    return n, f"{kind}: {outcome}"


def _run_task(kind: str, rng: random.Random, stop: threading.Event) -> tuple[int, str]:
    if stop.is_set():
        return 0, "skipped"
    host = rng.choice(SERVER_IPS)
    try:
        if kind == "ka_httpclient":
            conns, outcome = 1, "ok"
            conn = http.client.HTTPConnection(host, NGINX_PORT, timeout=5)
            for pause in _pauses(rng, rng.randint(2, 8)):
                time.sleep(pause)
                path = _path(rng)
                try:
                    conn.request("GET", path)
                    conn.getresponse().read()
                except (http.client.RemoteDisconnected, ConnectionError) as e:
                    # The stale keep-alive connection: reconnect and retry once, as apps do.
                    outcome = type(e).__name__ + "+retried"
                    conn.close()
                    conn = http.client.HTTPConnection(host, NGINX_PORT, timeout=5)
                    conns += 1
                    conn.request("GET", path)
                    conn.getresponse().read()
            conn.close()
            return conns, outcome
        if kind in ("ka_requests", "ka_urllib3"):
            pauses = _pauses(rng, rng.randint(2, 8))
            conns = 1 + (pauses[-1] > KEEPALIVE_TIMEOUT)  # urllib3 reconnects after idle close
            if kind == "ka_requests":
                with requests.Session() as s:
                    for pause in pauses:
                        time.sleep(pause)
                        _ = s.get(f"http://{host}{_path(rng)}", timeout=5).content
            else:
                with urllib3.PoolManager(retries=False, timeout=5) as pool:
                    for pause in pauses:
                        time.sleep(pause)
                        pool.request("GET", f"http://{host}{_path(rng)}")
            return conns, "ok"
        if kind in ("ok", "close", "reset", "partial", "slow"):
            r = requests.get(f"http://{host}:{ODD_PORT}/{kind}", timeout=(2, 0.5))
            return 1, f"ok {r.status_code}"
        if kind == "refused":
            requests.get(f"http://{host}:{CLOSED_PORT}/", timeout=2)
        elif kind == "unanswered":
            requests.get(f"http://{host}:{DROP_PORT}/", timeout=(1.2, 1))
        elif kind == "abort":  # read a little of 64 KB, then close: the client's RST
            with requests.get(f"http://{host}/l.bin", stream=True, timeout=5) as r:
                r.raw.read(2000)
        return 1, "ok"
    except Exception as e:  # the outcome is the point: count what the client raised
        cause = e.__context__ or e.__cause__
        name = type(e).__name__ + (f"({type(cause).__name__})" if cause else "")
        return 1, name


def client_main(plan_json: str) -> None:
    """Python clients (run in pdbench-cli); prints one JSON line of counts on exit."""
    plan = json.loads(plan_json)
    rng = random.Random(plan["seed"])
    tasks = [kind for kind, n in plan["tasks"].items() for _ in range(n)]
    rng.shuffle(tasks)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conns, outcomes = 0, Counter()
    with ThreadPoolExecutor(plan["threads"]) as ex:
        futs = [ex.submit(_task, kind, random.Random(rng.random()), stop) for kind in tasks]
        for fut in as_completed(futs):
            n, outcome = fut.result()
            conns += n
            outcomes[outcome] += n > 0
    outcomes = Counter({k: v for k, v in outcomes.items() if v})
    print(json.dumps({"connections": conns, "outcomes": outcomes}), flush=True)


# --------------------------------------------------------------------------- orchestration


def sh(*argv: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class Lab:
    """The namespaces, servers and tcpdump; ``close`` undoes everything, even half-made."""

    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pdbench-")))
    procs: list[subprocess.Popen] = field(default_factory=list)
    tcpdump: subprocess.Popen | None = None

    def start_network(self) -> None:
        self.delete_namespaces()
        for ns in (NS_S, NS_C):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "-n",
            NS_S,
            "link",
            "add",
            IF_S,
            "type",
            "veth",
            "peer",
            "name",
            IF_C,
            "netns",
            NS_C,
        )
        for ns, dev, mac, ips in (
            (NS_S, IF_S, "02:77:00:00:00:01", SERVER_IPS),
            (NS_C, IF_C, "02:77:00:00:00:02", CLIENT_IPS),
        ):
            sh("ip", "-n", ns, "link", "set", dev, "address", mac, "mtu", "1500")
            for ip in ips:
                sh("ip", "-n", ns, "addr", "add", f"{ip}/16", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            # MTU-sized segments on the wire, as a real NIC capture shows them.
            sh(
                "ethtool",
                "-K",
                dev,
                "tso",
                "off",
                "gso",
                "off",
                "gro",
                "off",
                "tx",
                "off",
                ns=ns,
                check=False,
            )
        for srv, cli in zip(SERVER_IPS, CLIENT_IPS, strict=True):
            sh("ip", "-n", NS_C, "route", "add", f"{srv}/32", "dev", IF_C, "src", cli)
        sh("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535", ns=NS_C)
        sh("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", ns=NS_C)
        sh("sysctl", "-qw", "net.core.somaxconn=4096", ns=NS_S)
        sh("sysctl", "-qw", "net.ipv4.tcp_max_syn_backlog=8192", ns=NS_S)
        sh("iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(DROP_PORT), "-j", "DROP", ns=NS_S)

    def start_servers(self) -> None:
        www = self.tmp / "www"
        www.mkdir()
        for name, size in FILES.items():
            (www / name).write_bytes(bytes(random.Random(size).randbytes(size)))
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, ka=KEEPALIVE_TIMEOUT, port=NGINX_PORT))
        self.spawn(NS_S, "/usr/sbin/nginx", "-p", str(self.tmp), "-c", str(conf))
        odd = self.spawn(
            NS_S, sys.executable, __file__, "_server", str(ODD_PORT), stdout=subprocess.PIPE
        )
        assert odd.stdout is not None
        if odd.stdout.readline().strip() != b"ready":
            raise RuntimeError("the misbehaving server did not start")
        for _ in range(50):  # nginx ready?
            if sh(sys.executable, "-c", PROBE, ns=NS_C, check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {(self.tmp / 'error.log').read_text()}")

    def start_tcpdump(self, out: Path) -> None:
        err = open(self.tmp / "tcpdump.err", "wb")  # noqa: SIM115 (lives as long as tcpdump)
        self.tcpdump = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                NS_S,
                "tcpdump",
                "-i",
                IF_S,
                "-n",
                "-w",
                str(out),
                "-Z",
                "root",
                "--immediate-mode",
                "-B",
                "65536",
            ],
            stderr=err,
            start_new_session=True,
        )
        for _ in range(100):
            if b"listening on" in (self.tmp / "tcpdump.err").read_bytes():
                return
            if self.tcpdump.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("tcpdump: " + (self.tmp / "tcpdump.err").read_text())

    def stop_tcpdump(self) -> str:
        """SIGINT (tcpdump then flushes and prints its counters), then wait."""
        if self.tcpdump is None:
            return ""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.tcpdump.pid, signal.SIGINT)
        try:
            self.tcpdump.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.tcpdump.pid, signal.SIGKILL)
            self.tcpdump.wait()
        self.tcpdump = None
        return (self.tmp / "tcpdump.err").read_text()

    def spawn(self, ns: str, *argv: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def delete_namespaces(self) -> None:
        for ns in (NS_S, NS_C):
            if sh("ip", "netns", "pids", ns, check=False).returncode != 0:
                continue
            sh("iptables", "-F", "INPUT", ns=ns, check=False)
            sh("ip", "netns", "del", ns, check=False)

    def close(self) -> None:
        self.stop_tcpdump()
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        # Anything still inside our namespaces was started by us (e.g. nginx workers).
        for ns in (NS_S, NS_C):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        self.delete_namespaces()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _jitter(rng: random.Random, n: int) -> int:
    return max(1, round(n * rng.uniform(0.8, 1.2)))


@dataclass
class Totals:
    connections: int = 0
    requests: int = 0
    outcomes: Counter = field(default_factory=Counter)


def _parse_ab(text: str, keepalive: bool, totals: Totals) -> None:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().split(" ")[0].isdigit():
            fields[key.strip()] = int(value.strip().split(" ")[0])
    done, failed = fields.get("Complete requests", 0), fields.get("Failed requests", 0)
    totals.requests += done
    totals.outcomes["ab ok"] += done - failed
    totals.outcomes["ab failed"] += failed
    totals.connections += done - fields.get("Keep-Alive requests", 0) if keepalive else done


def run_load(lab: Lab, out: Path, target: int, seconds: float, seed: int) -> Totals:
    """Rounds of load until the capture holds ``target`` packets or time runs out."""
    rng, totals, counter = random.Random(seed), Totals(), GrowingPcap(out)
    deadline = time.monotonic() + seconds
    rnd = 0
    while counter.update() < target and time.monotonic() < deadline:
        ab: list[tuple[subprocess.Popen, bool]] = []
        for name, n in AB_SHORT.items():
            url = f"http://{rng.choice(SERVER_IPS)}/{name}"
            cmd = ["ab", "-q", "-r", "-s", "5", "-c", "8", "-n", str(_jitter(rng, n)), url]
            ab.append((lab.spawn(NS_C, *cmd, stdout=subprocess.PIPE, text=True), False))
        url = f"http://{rng.choice(SERVER_IPS)}/{rng.choice(['s.bin', 'm.bin'])}"
        n = _jitter(rng, AB_KEEPALIVE_REQUESTS)
        cmd = ["ab", "-q", "-k", "-r", "-s", "5", "-c", "4", "-n", str(n), url]
        ab.append((lab.spawn(NS_C, *cmd, stdout=subprocess.PIPE, text=True), True))
        py = []
        for i in range(PY_PROCS):
            tasks = {k: _jitter(rng, v) // PY_PROCS for k, v in PY_TASKS.items()}
            plan = {"seed": seed * 100003 + rnd * 17 + i, "tasks": tasks, "threads": PY_THREADS}
            cmd = [sys.executable, __file__, "_client", json.dumps(plan)]
            py.append(lab.spawn(NS_C, *cmd, stdout=subprocess.PIPE, text=True))
        procs = [p for p, _ in ab] + py
        stopped = False
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            if not stopped and (counter.update() >= target or time.monotonic() > deadline):
                stopped = True  # ab prints its counts on SIGINT, the clients on SIGTERM
                for p, _ in ab:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGINT)
                for p in py:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGTERM)
        for p, keepalive in ab:
            _parse_ab(p.stdout.read(), keepalive, totals)
        for p in py:
            line = p.stdout.read().strip().splitlines()
            if line:
                res = json.loads(line[-1])
                totals.connections += res["connections"]
                totals.outcomes.update({f"py {k}": v for k, v in res["outcomes"].items()})
        lab.procs = [p for p in lab.procs if p not in procs]
        rnd += 1
        print(f"  round {rnd}: {counter.packets:,} packets", file=sys.stderr, flush=True)
    return totals


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def record(out: Path, target: int, seconds: float, seed: int) -> None:
    for tool in ("tcpdump", "ab", "ethtool", "iptables"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            raise SystemExit(f"{tool} is missing: run bash benchmarks/setup_bench.sh")
    if not Path("/usr/sbin/nginx").exists():
        raise SystemExit("nginx is missing: run bash benchmarks/setup_bench.sh")
    if os.geteuid() != 0:
        raise SystemExit("must run as root (network namespaces, iptables, tcpdump)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    lab = Lab()
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT may arrive ignored from a shell
        signal.signal(sig, _interrupt)
    t0 = time.monotonic()
    try:
        lab.start_network()
        lab.start_servers()
        lab.start_tcpdump(out)
        t_load = time.monotonic()
        totals = run_load(lab, out, target, seconds, seed)
        time.sleep(KEEPALIVE_TIMEOUT + 1)  # let idle keep-alive connections be closed
        t_rec = time.monotonic() - t_load
        tcpdump_report = lab.stop_tcpdump()
    except KeyboardInterrupt:
        raise SystemExit(f"interrupted: cleaned up; {out} is incomplete") from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second Ctrl-C must not stop cleanup
            signal.signal(sig, signal.SIG_IGN)
        lab.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    wall = time.monotonic() - t0
    facts = capture_facts(out)
    print(f"capture:              {out}")
    print(f"packets:              {facts.packets:,}")
    print(
        f"connections attempted {totals.connections:,} (clients' count; "
        f"{facts.syns:,} distinct SYNs in the capture)"
    )
    print(f"HTTP requests:        {totals.requests:,} by ab (+ the Python clients')")
    print(f"bytes:                {out.stat().st_size:,} file, {facts.wire_bytes:,} on the wire")
    print(f"capture time span:    {facts.last_ts - facts.first_ts:.1f} s")
    print(
        f"recording:            {t_rec:.1f} s ({facts.packets / t_rec:,.0f} packets/s), "
        f"{wall:.1f} s with setup and teardown"
    )
    print(
        "tcpdump:              "
        + "; ".join(line for line in tcpdump_report.splitlines() if "packets" in line)
    )
    print("client outcomes:")
    for name, n in sorted(totals.outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>8,}  {name}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        return server_main(int(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        return client_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="pcap file to write")
    ap.add_argument("--packets", type=int, default=2_700_000, help="stop near this many")
    ap.add_argument("--seconds", type=float, default=600, help="stop the load after this")
    ap.add_argument("--seed", type=int, default=1, help="seed of the load mix")
    ap.add_argument(
        "--scale",
        type=int,
        default=0,
        metavar="K",
        help="also write OUT.xK.pcap: K time-shifted copies, distinct clients",
    )
    ap.add_argument(
        "--from",
        dest="src",
        type=Path,
        help="with --scale: scale this capture into OUT instead of recording",
    )
    args = ap.parse_args()
    if args.src:
        if not args.scale:
            ap.error("--from needs --scale")
        t0 = time.monotonic()
        scale_capture(args.src, args.out, args.scale)
        print(
            f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {args.scale} copies of "
            f"{args.src}) in {time.monotonic() - t0:.1f} s"
        )
        return
    record(args.out, args.packets, args.seconds, args.seed)
    if args.scale:
        big = args.out.with_suffix(f".x{args.scale}.pcap")
        scale_capture(args.out, big, args.scale)
        print(f"scaled:               {big} ({big.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
