#!/usr/bin/env python3
"""Record the real sample captures in ``sample_pcaps/`` and their ground-truth manifest.

Run as root on Linux (needs network namespaces, veth, iptables, tcpdump, dumpcap)::

    python tools/record_samples.py [--only NAME ...] [--out sample_pcaps] [--list]

Topology (re-created on every run, torn down at the end, also on errors)::

    pd-client  pdc0 ==== pdr0  pd-router  pdr1 ==== pds0  pd-server
    10.99.1.2/24         10.99.1.1   10.99.2.1         10.99.2.2/24
    fd99:1::2/64         fd99:1::1   fd99:2::1         fd99:2::2/64

Nothing is routed outside 10.99.0.0/16 / fd99::/16. For every scenario the recorder
starts the server(s) in pd-server (a misbehaving Python server from
``tools/samples/server.py`` or a real nginx), applies firewall rules (pd-router /
pd-server), starts tcpdump or dumpcap, runs ONE real client from
``tools/samples/client.py`` in pd-client, waits for the server to finish, stops the
capture and writes a manifest entry. Ground truth comes from the world: the exception
is the one the client process caught (serialised by the client itself), and each
connection's outcome comes from what the server did (its own log) or from what the
scenario set up (nothing listening, iptables DROP/REJECT, nginx keepalive_timeout, the
client closing or holding the connection). Afterwards every capture is checked with
tshark at the packet level (number of connections, who sent the first FIN/RST, ICMP
source, TLS alert sender); a capture that does not show the expected wire pattern is
re-recorded (up to 3 attempts) and reported if it still does not.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SERVER_PY = SAMPLES_DIR / "server.py"
CLIENT_PY = SAMPLES_DIR / "client.py"
H2SERVER_PY = SAMPLES_DIR / "h2server.py"
PROXY_PY = SAMPLES_DIR / "proxy.py"
SERVER_SCRIPTS = {"py": SERVER_PY, "h2": H2SERVER_PY, "proxy": PROXY_PY}
NGINX_CONF = SAMPLES_DIR / "nginx.conf.in"
PY = sys.executable

NS_C, NS_R, NS_S = "pd-client", "pd-router", "pd-server"
NAMESPACES = (NS_C, NS_R, NS_S)
IF_C, IF_RC, IF_RS, IF_S = "pdc0", "pdr0", "pdr1", "pds0"
ADDR = {
    4: {
        "client": "10.99.1.2",
        "router_c": "10.99.1.1",
        "router_s": "10.99.2.1",
        "server": "10.99.2.2",
        "plen": 24,
        "net": "10.99.0.0/16",
    },
    6: {
        "client": "fd99:1::2",
        "router_c": "fd99:1::1",
        "router_s": "fd99:2::1",
        "server": "fd99:2::2",
        "plen": 64,
        "net": "fd99::/16",
    },
}
MACS = {
    IF_C: "02:99:01:00:00:02",
    IF_RC: "02:99:01:00:00:01",
    IF_RS: "02:99:02:00:00:01",
    IF_S: "02:99:02:00:00:02",
}
# TCP plus ICMP errors; drops ARP, neighbour discovery and router solicitations.
CAPTURE_FILTER = "tcp or icmp or (icmp6 and ip6[40] < 128)"
MAX_BYTES = 50_000
OUTCOMES = (
    "refused",
    "syn_timeout",
    "icmp_unreachable",
    "tls_alert",
    "tls_handshake_aborted",
    "server_close_after_request",
    "truncated_response",
    "server_reset",
    "client_reset",
    "client_timeout",
    "server_idle_close",
    "server_close",
    "client_close",
    "open",
    "network_reset",
)
CLOSERS = ("client", "server", "network", "none")
NGINX_PORTS = {
    "idle1s": 8080,
    "ka0": 8081,
    "ka75": 8082,
    "tls_ka0": 8443,
    "h2_tls": 8444,
    "h2c": 8445,
}
# Initial TTL / hop limit of every namespace (Linux default); packets from pd-server cross
# one router hop before pdc0, packets the router forges itself do not.
DEFAULT_TTL = 64
PROXY_PORT = 3128
ORIGIN_PORT = 9443
NGINX_IDLE_TIMEOUT_S = 1.0
NO_LISTENER_PORT = 9999


def version_of(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # noqa: BLE001
        return "?"


def log(msg: str) -> None:
    print(msg, flush=True)


def sh(
    *argv: str, check: bool = True, ns: str | None = None, capture: bool = True
) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    r = subprocess.run(cmd, capture_output=capture, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


LIBNAME = {"stdlib": "http.client", "urllib": "urllib.request", "raw": "raw socket"}


def hostport(ipv: int, port: int) -> str:
    a = ADDR[ipv]["server"]
    return f"[{a}]:{port}" if ipv == 6 else f"{a}:{port}"


# =========================================================================== topology


def ethtool_off(ns: str, ifname: str) -> None:
    """Turn off checksum/segmentation offloads (no ethtool binary here: SIOCETHTOOL).

    Without this, packets captured on the sending veth carry partial checksums and
    TSO/GSO can show super-packets larger than the MTU."""
    code = r"""
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL = 0x8946
# ETHTOOL_SRXCSUM, ETHTOOL_STXCSUM, ETHTOOL_SSG, ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO
cmds = [0x15, 0x17, 0x19, 0x1f, 0x24, 0x2c]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for c in cmds:
    val = bytearray(struct.pack("II", c, 0))          # struct ethtool_value {cmd, data=0}
    ptr = ctypes.addressof((ctypes.c_char * len(val)).from_buffer(val))
    ifr = struct.pack("16sP16x", sys.argv[1].encode(), ptr)  # struct ifreq (40 bytes)
    try:
        fcntl.ioctl(s, SIOCETHTOOL, ifr)
    except OSError:
        pass
    if c in (0x17, 0x1f, 0x24):  # read back TX checksum / TSO / GSO: must be off now
        val = bytearray(struct.pack("II", c - 1, 0))
        ptr = ctypes.addressof((ctypes.c_char * len(val)).from_buffer(val))
        fcntl.ioctl(s, SIOCETHTOOL, struct.pack("16sP16x", sys.argv[1].encode(), ptr))
        if struct.unpack("II", bytes(val))[1]:
            sys.exit(f"{sys.argv[1]}: offload {c - 1:#x} still enabled")
"""
    sh(PY, "-c", code, ifname, ns=ns)


def teardown() -> None:
    for ns in NAMESPACES:
        if sh("ip", "netns", "pids", ns, check=False).returncode == 0:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                # only processes inside our own namespaces, i.e. started by this script
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)


def setup_topology() -> None:
    teardown()
    for ns in NAMESPACES:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh(
        "ip",
        "link",
        "add",
        IF_C,
        "netns",
        NS_C,
        "type",
        "veth",
        "peer",
        "name",
        IF_RC,
        "netns",
        NS_R,
    )
    sh(
        "ip",
        "link",
        "add",
        IF_RS,
        "netns",
        NS_R,
        "type",
        "veth",
        "peer",
        "name",
        IF_S,
        "netns",
        NS_S,
    )
    for ns, ifname, role in (
        (NS_C, IF_C, "client"),
        (NS_R, IF_RC, "router_c"),
        (NS_R, IF_RS, "router_s"),
        (NS_S, IF_S, "server"),
    ):
        sh("ip", "link", "set", ifname, "address", MACS[ifname], ns=ns)
        for v in (4, 6):
            a = ADDR[v]
            extra = ["nodad"] if v == 6 else []
            sh("ip", f"-{v}", "addr", "add", f"{a[role]}/{a['plen']}", "dev", ifname, *extra, ns=ns)
        sh("ip", "link", "set", ifname, "up", ns=ns)
        ethtool_off(ns, ifname)
    for v in (4, 6):
        a = ADDR[v]
        sh("ip", f"-{v}", "route", "add", a["net"], "via", a["router_c"], ns=NS_C)
        sh("ip", f"-{v}", "route", "add", a["net"], "via", a["router_s"], ns=NS_S)
    for k, val in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv4.icmp_ratelimit", "0"),
        ("net.ipv6.icmp.ratelimit", "0"),
        ("net.ipv4.icmp_msgs_per_sec", "100000"),
    ):
        sh("sysctl", "-qw", f"{k}={val}", ns=NS_R, check=False)
    for ns in (NS_C, NS_S):
        sh("sysctl", "-qw", "net.ipv6.conf.all.accept_ra=0", ns=ns, check=False)
    # wait for the path to work in both families (also fills ARP/ND caches)
    for v in (4, 6):
        ok = False
        for _ in range(50):
            r = sh(
                PY,
                "-c",
                "import socket,sys;s=socket.socket(socket.AF_INET%s,"
                "socket.SOCK_DGRAM);s.connect((sys.argv[1],9));s.send(b'x')"
                % ("6" if v == 6 else ""),
                ADDR[v]["server"],
                ns=NS_C,
                check=False,
            )
            if r.returncode == 0:
                ok = True
                break
            time.sleep(0.1)
        if not ok:
            raise RuntimeError(f"IPv{v} path pd-client -> pd-server not usable")
    for ns, target in ((NS_C, "server"), (NS_S, "client")):
        for v in (4, 6):
            peer = ADDR[v]["router_c" if ns == NS_C else "router_s"]
            for _ in range(30):
                r = sh("ip", f"-{v}", "neigh", "show", peer, ns=ns, check=False)
                if "REACHABLE" in r.stdout or "STALE" in r.stdout or "DELAY" in r.stdout:
                    break
                sh(
                    PY,
                    "-c",
                    "import socket,sys;s=socket.socket(socket.AF_INET%s,"
                    "socket.SOCK_DGRAM);s.connect((sys.argv[1],9));s.send(b'x')"
                    % ("6" if v == 6 else ""),
                    ADDR[v][target],
                    ns=ns,
                    check=False,
                )
                time.sleep(0.1)


def flush_firewalls() -> None:
    for ns in NAMESPACES:
        for tool in ("iptables", "ip6tables"):
            sh(tool, "-F", ns=ns, check=False)


# =========================================================================== processes


class Proc:
    """A child process started by us, with stdout/stderr drained by threads."""

    def __init__(
        self,
        argv: list[str],
        ns: str | None = None,
        env: dict | None = None,
        stdin=subprocess.DEVNULL,
    ):
        cmd = (["ip", "netns", "exec", ns] if ns else []) + argv
        self.cmd = cmd
        self.p = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, text=True, env=env
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._cv = threading.Condition()
        self._threads = [
            threading.Thread(target=self._drain, args=(self.p.stdout, self.out), daemon=True),
            threading.Thread(target=self._drain, args=(self.p.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, fh, sink: list[str]) -> None:
        for line in fh:
            with self._cv:
                sink.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_line(self, pattern: str, stream: str = "out", timeout: float = 10.0) -> str:
        sink = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self._cv:
            while True:
                for line in sink:
                    if rx.search(line):
                        return line
                if self.p.poll() is not None and all(not t.is_alive() for t in self._threads):
                    raise RuntimeError(
                        f"{self.cmd[3:5]} exited ({self.p.returncode}) before "
                        f"{pattern!r}: {' | '.join(self.err[-5:])}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"timeout waiting for {pattern!r} from {self.cmd}: "
                        f"{' | '.join(self.err[-5:])}"
                    )
                self._cv.wait(min(left, 0.2))

    def send(self, sig: int) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.p.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait(5)
        for t in self._threads:
            t.join(2)
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        self.send(sig)
        return self.wait(timeout)


class Capture:
    def __init__(
        self,
        path: Path,
        ns: str,
        iface: str,
        tool: str = "tcpdump",
        linktype: str | None = None,
        nano: bool = False,
        comment: str = "",
    ):
        self.path, self.ns, self.iface, self.tool = path, ns, iface, tool
        self.linktype, self.nano, self.comment = linktype, nano, comment
        self.proc: Proc | None = None
        self.stats: list[str] = []

    def start(self) -> None:
        if self.path.exists():
            self.path.unlink()
        if self.tool == "tcpdump":
            argv = [
                "tcpdump",
                "-i",
                self.iface,
                "-Z",
                "root",
                "--immediate-mode",
                # immediate mode keeps a snapshot-length frame (256 KiB) a packet: the
                # default 2 MiB buffer holds eight, and a loaded machine drops the rest
                "-B",
                "65536",
                "-U",
                "-w",
                str(self.path),
            ]
            if self.linktype:
                argv += ["-y", self.linktype]
            if self.nano:
                argv += ["--time-stamp-precision=nano"]
            argv.append(CAPTURE_FILTER)
            ready = r"listening on "
        else:
            argv = ["dumpcap", "-q", "-i", self.iface, "-f", CAPTURE_FILTER, "-w", str(self.path)]
            if self.comment:
                argv += ["--capture-comment", self.comment]
            ready = r"Capturing on "
        self.proc = Proc(argv, ns=self.ns)
        self.proc.wait_line(ready, stream="err", timeout=10)
        time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.stop(signal.SIGINT, timeout=10)
        self.stats = [ln for ln in self.proc.err if "packet" in ln]
        self.proc = None


class Nginx:
    def __init__(self, workdir: Path, cert: Path, key: Path):
        self.prefix = workdir / "nginx"
        self.cert, self.key = cert, key
        self.proc: Proc | None = None

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "tmp").mkdir(exist_ok=True)
        # 24 000-byte body for client_reset (a reader closing with unread bytes)
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-pcapdiag\n"
        (self.prefix / "big.txt").write_bytes((line * 400)[:24000])
        conf = (
            NGINX_CONF.read_text()
            .replace("@PREFIX@", str(self.prefix))
            .replace("@V4@", ADDR[4]["server"])
            .replace("@V6@", ADDR[6]["server"])
            .replace("@CERT@", str(self.cert))
            .replace("@KEY@", str(self.key))
        )
        (self.prefix / "nginx.conf").write_text(conf)
        self.proc = Proc(
            [
                "nginx",
                "-p",
                str(self.prefix),
                "-e",
                str(self.prefix / "error.log"),
                "-c",
                str(self.prefix / "nginx.conf"),
            ],
            ns=NS_S,
        )
        for _ in range(100):
            r = sh("ss", "-Hltn", ns=NS_S, check=False)
            if (
                all(f":{p} " in r.stdout for p in NGINX_PORTS.values())
                and r.stdout.count(":808") >= 6
            ):
                return
            if self.proc.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"nginx did not start: {' | '.join(self.proc.err[-5:])} "
            f"{(self.prefix / 'error.log').read_text()[-500:]}"
        )

    def version(self) -> str:
        r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return r.stderr.strip().split("/", 1)[-1]

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(signal.SIGQUIT, timeout=5)
            self.proc = None


def make_cert(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "server.crt", workdir / "server.key"
    sh(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pd-server.pcapdiag.test",
        "-addext",
        f"subjectAltName=IP:{ADDR[4]['server']},IP:{ADDR[6]['server']}",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    )
    return cert, key


# =========================================================================== scenarios


def C(outcome: str, closed_by: str, note: str) -> dict:
    return {"outcome": outcome, "closed_by": closed_by, "note": note}


@dataclass
class Sc:
    name: str  # file stem: <outcome>-<client>[-v6][-variant]
    scenario: str  # one line: what the server and client did
    lib: str
    # ("py"|"h2"|"proxy", mode, port, [args]) | ("nginx", key) | None; "py" is
    # tools/samples/server.py, "h2" h2server.py (TLS when tls=True), "proxy" proxy.py
    server: tuple | None
    conns: object = None  # callable(ctx) -> list[dict]; None: from the server log
    ipv: int = 4
    action: str = "get"
    opts: list = field(default_factory=list)
    path: str = "/"
    scheme: str = "http"
    port: int | None = None  # for server=None scenarios
    fw: list = field(default_factory=list)  # [(ns, "iptables"|"ip6tables", [args])]
    client_sysctl: dict = field(default_factory=dict)
    point: str = "client"  # capture in pd-client ("client") or pd-server ("server")
    iface: str = "veth"  # "veth" or "any"
    linktype: str | None = None
    tool: str = "tcpdump"
    nano: bool = False
    ext: str = "pcap"
    tls: bool = False
    inject_secrets: bool = False
    hold: bool = False
    settle: float = 0.4
    idle_timeout: float | None = None
    icmp_from: str | None = None
    expect_alert: str | None = None  # "client" | "server": sender of a plaintext TLS alert
    client_timeout: float = 60.0
    extra_note: str = ""  # appended to every connection note (client-side facts)
    origin: tuple | None = None  # ("py", mode, port, [args]): a second server (proxy origin)
    target_port: int | None = None  # port in the client's URL when it is not the server's
    router_sysctl: dict = field(default_factory=dict)  # sysctls set in pd-router for the run
    h2_decode_port: int | None = None  # tshark: decode this TCP port as (cleartext) HTTP/2

    @property
    def file(self) -> str:
        return f"{self.name}.{self.ext}"

    def port_(self) -> int:
        if self.server is None:
            return self.port or NO_LISTENER_PORT
        if self.server[0] == "nginx":
            return NGINX_PORTS[self.server[1]]
        return self.server[2]

    def url(self) -> str:
        return f"{self.scheme}://{hostport(self.ipv, self.target_port or self.port_())}{self.path}"


def fw_router(ipv: int, port: int, target: list[str]) -> tuple:
    tool = "ip6tables" if ipv == 6 else "iptables"
    return (
        NS_R,
        tool,
        [
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "-d",
            ADDR[ipv]["server"],
            "--dport",
            str(port),
            "-j",
            *target,
        ],
    )


def fw_server(ipv: int, port: int, target: list[str]) -> tuple:
    tool = "ip6tables" if ipv == 6 else "iptables"
    return (
        NS_S,
        tool,
        [
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "-d",
            ADDR[ipv]["server"],
            "--dport",
            str(port),
            "-j",
            *target,
        ],
    )


def sc_refused(name, lib, ipv=4, **kw) -> Sc:
    srv = hostport(ipv, NO_LISTENER_PORT)
    return Sc(
        name,
        f"nothing listens on {srv}; {LIBNAME.get(lib, lib)} GET -> SYN answered by RST",
        lib,
        None,
        conns=lambda ctx: [
            C(
                "refused",
                "server",
                f"no socket listens on {srv}: the server host's kernel "
                "answered the SYN with RST,ACK",
            )
        ],
        ipv=ipv,
        **kw,
    )


def sc_syn_timeout(name, lib, ipv=4, where="router", opts=(), kernel=False, how="", **kw) -> Sc:
    port = NGINX_PORTS["ka75"]
    rule = (fw_router if where == "router" else fw_server)(ipv, port, ["DROP"])
    how = (
        "kernel SYN retry limit (tcp_syn_retries=1 in pd-client, no socket timeout)"
        if kernel
        else f"connect timeout ({how})"
    )
    chain = "pd-router FORWARD" if where == "router" else "pd-server INPUT"
    return Sc(
        name,
        f"nginx listens on {hostport(ipv, port)} but iptables DROPs the SYNs in "
        f"{chain}; {LIBNAME.get(lib, lib)} GET gives up by its {how}",
        lib,
        ("nginx", "ka75"),
        conns=lambda ctx: [
            C(
                "syn_timeout",
                "none",
                f"iptables DROP in {chain} silently discarded every SYN "
                f"(and retransmission); nothing came back; the client gave "
                f"up by its {how}",
            )
        ],
        ipv=ipv,
        fw=[rule],
        opts=list(opts),
        client_sysctl={"net.ipv4.tcp_syn_retries": "1"} if kernel else {},
        **kw,
    )


ICMP_DESC = {
    "icmp-port-unreachable": "ICMP type 3 code 3 (port unreachable)",
    "icmp-host-unreachable": "ICMP type 3 code 1 (host unreachable)",
    "icmp-admin-prohibited": "ICMP type 3 code 13 (communication administratively prohibited)",
    "icmp-net-unreachable": "ICMP type 3 code 0 (net unreachable)",
    "icmp6-adm-prohibited": "ICMPv6 type 1 code 1 (administratively prohibited)",
    "icmp6-port-unreachable": "ICMPv6 type 1 code 4 (port unreachable)",
    "icmp6-addr-unreachable": "ICMPv6 type 1 code 3 (address unreachable)",
    "icmp6-no-route": "ICMPv6 type 1 code 0 (no route to destination)",
}


def sc_icmp(name, lib, reject, ipv=4, where="router", **kw) -> Sc:
    port = NGINX_PORTS["ka75"]
    if where == "router":
        rule = fw_router(ipv, port, ["REJECT", "--reject-with", reject])
        sender = ADDR[ipv]["router_c"]
        closer = "network"
        who = f"the router ({sender}, a third address on the path)"
        chain = "pd-router FORWARD"
    else:
        rule = fw_server(ipv, port, ["REJECT", "--reject-with", reject])
        sender = ADDR[ipv]["server"]
        closer = "server"
        who = f"the server host itself ({sender})"
        chain = "pd-server INPUT"
    return Sc(
        name,
        f"iptables REJECT --reject-with {reject} in {chain} for "
        f"{hostport(ipv, port)}; {LIBNAME.get(lib, lib)} GET",
        lib,
        ("nginx", "ka75"),
        conns=lambda ctx: [
            C(
                "icmp_unreachable",
                closer,
                f"{who} answered the SYN with {ICMP_DESC[reject]} "
                f"(iptables REJECT --reject-with {reject} in {chain})",
            )
        ],
        ipv=ipv,
        fw=[rule],
        icmp_from=sender,
        **kw,
    )


def from_server_log(ctx) -> list[dict]:
    out = [C(e["outcome"], e["closed_by"], f"{e['peer']}: {e['note']}") for e in ctx["server_log"]]
    if (
        ctx["client"]["lib"] == "aiohttp"
        and len(out) == 2
        and ctx["server_log"][0].get("request") == ctx["server_log"][1].get("request")
    ):
        out[0]["note"] += "; aiohttp's first attempt"
        out[1]["note"] += (
            "; aiohttp's automatic retry of the same idempotent GET on a new "
            "connection (the client raised only after this one)"
        )
    return out


def keepalive_race_conns(ctx) -> list[dict]:
    (e,) = ctx["server_log"]
    ev = {x["event"]: x for x in ctx["client"]["events"]}
    p1 = ev.get("response 1", {}).get("local_port")
    p2 = ev.get("sending request 2 on the pooled connection", {}).get("local_port")
    assert e["end"] == "idle" and p1 == p2 and e["peer"].endswith(f":{p1}"), (e, ev)
    return [
        C(
            "server_close_after_request",
            "server",
            f"{e['peer']}: keep-alive race: the server answered request 1 with keep-alive "
            f"and closed the idle connection (FIN) after {e['idle_timeout_s']:g} s; the "
            "client (http.client, same socket) wrote request 2 into the half-closed "
            "connection later, and the server's kernel answered it with RST",
        )
    ]


def nginx_conns(outcome, closer, note, n=1):
    def f(ctx):
        k = ctx["client"].get("connections") or n
        return [C(outcome, closer, note) for _ in range(k)]

    return f


OPENSSL_EOF_NOTE = (
    "the client's OpenSSL (blocking ssl socket) reacts to the EOF by sending "
    "a fatal decode_error alert into the already closed connection, which the "
    "server's kernel answers with RST; that alert is a reaction, not the cause"
)
CERT_REJECT_NOTE = (
    "OpenSSL stops reading at the Certificate message, so the server's "
    "remaining handshake records are still unread when the client closes and "
    "its kernel sends RST rather than FIN; the server closes (FIN) as soon as "
    "it has read the alert, so which of the two comes first is a race"
)


# --------------------------------------------------------------------------- new-scenario facts


def client_event(ctx, name: str) -> dict:
    return next((e for e in ctx["client"]["events"] if e["event"] == name), {})


def idle_before(ctx) -> float:
    """Seconds the client idled between response 1 and sending request 2 (its own clock)."""
    t1 = client_event(ctx, "response 1")["t"]
    t2 = client_event(ctx, "sending request 2 on the pooled connection")["t"]
    return round(t2 - t1, 3)


def fw_hit(ctx, needle: str) -> int:
    hits = [h["packets"] for h in ctx["firewall"] if needle in h["rule"]]
    assert hits and hits[0], f"firewall rule {needle!r} never matched: {ctx['firewall']}"
    return hits[0]


def with_request_line(ctx) -> list[dict]:
    """Server-log outcomes plus the request line the server read (HTTP/1.1 servers)."""
    out = from_server_log(ctx)
    for c, e in zip(out, ctx["server_log"], strict=True):
        if e.get("request"):
            c["request_line"] = e["request"]
    return out


def tls_keepalive_race_conns(ctx) -> list[dict]:
    (e,) = ctx["server_log"]
    req2 = client_event(ctx, "sending request 2 on the pooled connection")
    p1 = client_event(ctx, "response 1").get("local_port")
    assert e["end"] == "idle" and e["hold_data"] and len(e["requests"]) == 1, e
    assert p1 is None or e["peer"].endswith(f":{p1}"), (e, p1)
    held = {x["event"]: x["t"] for x in e["events"]}
    return [
        C(
            "server_close_after_request",
            "server",
            f"{e['peer']}: {e['tls_version']} keep-alive race: the server answered "
            f"{e['requests'][0]!r}, and closed the idle connection (FIN, no close_notify) "
            f"{e['idle_timeout_s']:g} s later while the client's next request (sent "
            f"{idle_before(ctx)} s after response 1 on the same pooled connection) was still "
            "in flight: the server's own firewall held back the client's data segments from "
            f"response 1 until {round(held['released client data'] - held['response 1'], 3)} s "
            "after it (emulating path latency), so the server never read it; the client's "
            "segments that reached the server after the close (the retransmitted request, or "
            "the client's TLS alert/FIN reacting to the EOF) were answered by the server's "
            "kernel with RST",
        )
        | {"request_line": req2["request_line"]}
    ]


def h2_server_conns(ctx) -> list[dict]:
    out = []
    for e in ctx["server_log"]:
        c = C(e["outcome"], e["closed_by"], f"{e['peer']}: {e['note']}")
        if e.get("requests"):
            c["request_line"] = e["requests"][-1]
        if e.get("h2"):
            c["h2"] = e["h2"]
        out.append(c)
    return out


NGINX_GOAWAY = re.compile(r"http2 send GOAWAY frame: last sid (\d+), error (\d+)")


def nginx_h2_conns(ctx) -> list[dict]:
    """nginx keepalive_requests 1: GOAWAY per connection, from nginx's own debug log."""
    goaways = [tuple(map(int, m.groups())) for m in map(NGINX_GOAWAY.search, ctx["nginx_log"]) if m]
    k = ctx["client"].get("connections") or 1
    names = {v: n for n, v in H2_ERRORS.items()}
    n_conn = max(k, len(goaways))
    assert goaways, "nginx logged no GOAWAY"
    log_ = ctx["nginx_log"]
    i_go = next(i for i, ln in enumerate(log_) if "GOAWAY" in ln)
    i_hd = next((i for i, ln in enumerate(log_) if "create HEADERS frame" in ln), None)
    when = (
        "as soon as it accepted the request on stream {sid}, before it created the response "
        "HEADERS frame (order of its debug log: 'http2 send GOAWAY frame', then 'create "
        "HEADERS frame'), i.e. GOAWAY precedes the response on the wire"
        if i_hd is not None and i_go < i_hd
        else "after answering the request on stream {sid} (its debug log: 'http2 send "
        "GOAWAY frame')"
    )
    path = urlsplit(ctx["client"]["url"]).path or "/"
    out = []
    for i in range(n_conn):
        sid, err = goaways[i] if i < len(goaways) else goaways[-1]
        out.append(
            C(
                "server_close",
                "server",
                "nginx keepalive_requests 1: nginx sent GOAWAY(last_stream_id="
                f"{sid}, {names.get(err, err)}) {when.format(sid=sid)}, answered the request "
                "and closed the connection (FIN)",
            )
            | {
                "request_line": f"GET {path} HTTP/2",
                "h2": {"goaway": {"last_stream_id": sid, "error": names.get(err, str(err))}},
            }
        )
    return out


SSL_ALERT = {
    "TLSV1_ALERT_UNKNOWN_CA": "unknown_ca",
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad_certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "certificate_unknown",
}


def proxy_conns(ctx) -> list[dict]:
    out = []
    for e in ctx["server_log"]:
        facts = {
            "request_line": e["request_line"],  # the CONNECT, as the proxy read it
            "proxy": {"status": e["status"], "origin": e["origin"]},
        }
        if e["outcome"] == "tunnel" and not SSL_ALERT.get(ctx["origin_log"][0].get("reason")):
            (o,) = ctx["origin_log"]
            assert o["closed_by"] == "client", o
            c = C(
                o["outcome"],
                "client",
                f"{e['peer']}: proxy answered {e['request_line']!r} with 200 Connection "
                f"established and relayed the tunnel; inside it (origin's log): {o['note']}; "
                f"the proxy then saw the {e['first_close']} and closed the other side",
            )
        elif e["outcome"] == "tunnel":  # the end of the tunnel: from the origin's log
            (o,) = ctx["origin_log"]
            alert = SSL_ALERT.get(o.get("reason"))
            assert alert and o["closed_by"] == "client", o
            c = C(
                "tls_alert",
                "client",
                f"{e['peer']}: proxy answered {e['request_line']!r} with 200 Connection "
                f"established and relayed the tunnel; inside it (origin's log): {o['note']}; "
                f"the proxy then saw the {e['first_close']} and closed the "
                "other side",
            )
            facts |= {"alert": alert, "alert_from": "client"}
        else:
            c = C(e["outcome"], e["closed_by"], f"{e['peer']}: {e['note']}")
            if ctx["origin_log"]:
                c["note"] += "; origin's log: " + "; ".join(
                    o.get("server_error", o["note"]) for o in ctx["origin_log"]
                )
        out.append(c | facts)
    return out


def blocked_conns(injected: str):
    def f(ctx):
        n = fw_hit(ctx, "--string")
        assert not any("/blocked" in str(e) for e in ctx["server_log"]), ctx["server_log"]
        return [
            C(
                "network_reset",
                "network",
                "pd-router's firewall matched the request segment ('GET /blocked', "
                f"{n} packet(s) hit the rule), dropped it and answered the client with a "
                "forged RST carrying the server's address; the server never saw the request",
            )
            | {"request_line": "GET /blocked HTTP/1.1", "injected_by": injected}
            for _ in range(n)
        ]

    return f


def router_refused_conns(injected: str):
    def f(ctx):
        n = fw_hit(ctx, "--syn")
        return [
            C(
                "refused",
                "network",
                f"pd-router's firewall answered the SYN ({n} packet(s) hit the rule) with a "
                "forged RST,ACK carrying the server's address; nothing reached the "
                "listening server",
            )
            | {"injected_by": injected}
        ]

    return f


def stale_conntrack_conns(ctx) -> list[dict]:
    (e,) = ctx["server_log"]
    n = fw_hit(ctx, "INVALID")
    assert e["requests"] and len(e["requests"]) == 1, e
    req2 = client_event(ctx, "sending request 2 on the pooled connection")
    return [
        C(
            "network_reset",
            "network",
            f"{e['peer']}: keep-alive connection idle for {idle_before(ctx)} s while pd-router's "
            "conntrack entry expired (nf_conntrack_tcp_timeout_established=3, "
            "nf_conntrack_tcp_loose=0); the client's next request was INVALID for the router, "
            f"which dropped it and answered with a forged RST ({n} packet(s) hit the rule); "
            f"the server never saw it (it served {len(e['requests'])} request)",
        )
        | {
            "request_line": req2["request_line"],
            "stale": True,
            "idle_before_s": idle_before(ctx),
            "injected_by": f"pd-router {ctx['firewall'][0]['rule'].split()[0]} -m conntrack "
            "--ctstate INVALID REJECT --reject-with tcp-reset",
        }
    ]


def stale_server_conns(ctx) -> list[dict]:
    (e,) = ctx["server_log"]
    n = fw_hit(ctx, "FIN")
    assert e["end"] == "idle" and len(e["requests"]) == 1, e
    req2 = client_event(ctx, "sending request 2 on the pooled connection")
    return [
        C(
            "server_reset",
            "server",
            f"{e['peer']}: the server closed the idle keep-alive connection after "
            f"{e['idle_timeout_s']:g} s, but pd-router dropped its FIN ({n} packet(s), "
            "retransmissions included), so the client still believed the connection open; "
            f"after {idle_before(ctx)} s idle it sent its next request; the server application "
            "had already closed that socket (its kernel still held it in FIN-WAIT-1, "
            "retransmitting the dropped FIN), so the server's kernel answered the data with RST",
        )
        | {"request_line": req2["request_line"], "stale": True, "idle_before_s": idle_before(ctx)}
    ]


# A router that forgets idle connections after 3 s (conntrack) and answers what it no longer
# knows with a forged RST, like a NAT gateway or load balancer past its idle timeout.
STALE_CONNTRACK_SYSCTL = {
    "net.netfilter.nf_conntrack_tcp_timeout_established": "3",
    "net.netfilter.nf_conntrack_tcp_loose": "0",
}


def stale_conntrack_rule(ipv: int) -> tuple:
    reject = ["-j", "REJECT", "--reject-with", "tcp-reset"]
    return fw_rule(
        NS_R,
        ipv,
        ["-A", "FORWARD", "-p", "tcp", "-m", "conntrack", "--ctstate", "INVALID", *reject],
    )


def scenarios() -> list[Sc]:
    S: list[Sc] = []
    ka75, ka0, idle = (hostport(4, NGINX_PORTS[k]) for k in ("ka75", "ka0", "idle1s"))

    # ------------------------------------------------------------------ refused
    S += [
        sc_refused("refused-urllib", "urllib"),
        sc_refused("refused-requests", "requests"),
        sc_refused("refused-stdlib-v6", "stdlib", ipv=6),
        sc_refused("refused-httpx-v6", "httpx", ipv=6, iface="any"),
        sc_refused("refused-aiohttp-v6", "aiohttp", ipv=6, iface="any", linktype="LINUX_SLL"),
    ]
    # ------------------------------------------------------------------ syn_timeout
    S += [
        sc_syn_timeout(
            "syn_timeout-requests",
            "requests",
            how="timeout=(2, 5)",
            opts=["--connect-timeout", "2", "--read-timeout", "5"],
        ),
        sc_syn_timeout(
            "syn_timeout-httpx-v6",
            "httpx",
            ipv=6,
            how="httpx.Client(timeout=2)",
            opts=["--timeout", "2"],
        ),
        sc_syn_timeout("syn_timeout-stdlib-kernel", "stdlib", kernel=True),
        sc_syn_timeout(
            "syn_timeout-aiohttp-serverside",
            "aiohttp",
            where="server",
            how="ClientTimeout(connect=2)",
            opts=["--connect-timeout", "2"],
            point="server",
        ),
    ]
    # ------------------------------------------------------------------ icmp_unreachable
    S += [
        sc_icmp("icmp_unreachable-stdlib-port", "stdlib", "icmp-port-unreachable"),
        sc_icmp("icmp_unreachable-requests-host", "requests", "icmp-host-unreachable"),
        sc_icmp("icmp_unreachable-httpx-admin", "httpx", "icmp-admin-prohibited"),
        sc_icmp("icmp_unreachable-aiohttp-host", "aiohttp", "icmp-host-unreachable"),
        sc_icmp(
            "icmp_unreachable-requests-serverhost",
            "requests",
            "icmp-port-unreachable",
            where="server",
        ),
        sc_icmp("icmp_unreachable-stdlib-v6-admin", "stdlib", "icmp6-adm-prohibited", ipv=6),
        sc_icmp("icmp_unreachable-requests-v6-admin", "requests", "icmp6-adm-prohibited", ipv=6),
        sc_icmp("icmp_unreachable-httpx-v6-port", "httpx", "icmp6-port-unreachable", ipv=6),
        sc_icmp("icmp_unreachable-aiohttp-v6-noroute", "aiohttp", "icmp6-no-route", ipv=6),
    ]

    # ------------------------------------------------------------------ TLS
    def tls_sc(name, lib, mode_args, desc, ipv=4, opts=(), port=9443, **kw):
        if kw.get("expect_alert") == "client":
            kw["extra_note"] = CERT_REJECT_NOTE
        return Sc(
            name,
            desc,
            lib,
            ("py", "tls", port, mode_args),
            ipv=ipv,
            scheme="https",
            opts=list(opts),
            tls=True,
            **kw,
        )

    selfsigned = (
        "Python ssl server with a self-signed certificate ({v}); {lib} verifies "
        "it against its default CA store and rejects it"
    )
    S += [
        tls_sc(
            "tls_alert-requests-tls12",
            "requests",
            ["--tls-max", "1.2"],
            selfsigned.format(v="TLS 1.2 max", lib="requests"),
            expect_alert="client",
        ),
        tls_sc(
            "tls_alert-requests-tls13",
            "requests",
            [],
            selfsigned.format(v="TLS 1.3", lib="requests"),
            expect_alert="client",
        ),
        tls_sc(
            "tls_alert-httpx-tls12",
            "httpx",
            ["--tls-max", "1.2"],
            selfsigned.format(v="TLS 1.2 max", lib="httpx"),
            expect_alert="client",
            tool="dumpcap",
            ext="pcapng",
        ),
        tls_sc(
            "tls_alert-httpx-v6-tls13",
            "httpx",
            [],
            selfsigned.format(v="TLS 1.3", lib="httpx"),
            ipv=6,
            expect_alert="client",
        ),
        tls_sc(
            "tls_alert-stdlib-v6-tls12",
            "stdlib",
            ["--tls-max", "1.2"],
            selfsigned.format(v="TLS 1.2 max", lib="http.client"),
            ipv=6,
            expect_alert="client",
        ),
        tls_sc(
            "tls_alert-requests-protocol_version",
            "requests",
            ["--tls-min", "1.3"],
            "Python ssl server requires TLS 1.3 (minimum_version); requests client "
            "context limited to TLS 1.2 -> server sends protocol_version",
            opts=["--tls-max", "1.2"],
            expect_alert="server",
        ),
        tls_sc(
            "tls_alert-httpx-v6-protocol_version",
            "httpx",
            ["--tls-min", "1.3"],
            "Python ssl server requires TLS 1.3 (minimum_version); httpx client context "
            "limited to TLS 1.2 -> server sends protocol_version",
            ipv=6,
            opts=["--tls-max", "1.2"],
            expect_alert="server",
        ),
        tls_sc(
            "tls_handshake_aborted-aiohttp-badcert",
            "aiohttp",
            [],
            "Python ssl server (TLS 1.3) with a self-signed certificate; aiohttp "
            "(asyncio ssl) rejects it",
        ),
        tls_sc(
            "tls_handshake_aborted-aiohttp-v6-badcert-tls12",
            "aiohttp",
            ["--tls-max", "1.2"],
            "Python ssl server (TLS 1.2 max) with a self-signed certificate; aiohttp "
            "(asyncio ssl) rejects it",
            ipv=6,
        ),
        Sc(
            "tls_handshake_aborted-requests-serverfin",
            "raw TCP server reads the ClientHello and close()s (FIN) without any TLS record; "
            "requests https GET",
            "requests",
            ("py", "close_after_hello", 9444, []),
            scheme="https",
            tls=True,
            extra_note=OPENSSL_EOF_NOTE,
        ),
        Sc(
            "tls_handshake_aborted-httpx-v6-serverfin",
            "raw TCP server reads the ClientHello and close()s (FIN) without any TLS record; "
            "httpx https GET",
            "httpx",
            ("py", "close_after_hello", 9444, []),
            ipv=6,
            scheme="https",
            tls=True,
            extra_note=OPENSSL_EOF_NOTE,
        ),
        Sc(
            "tls_handshake_aborted-httpx-serverrst",
            "raw TCP server reads the ClientHello and resets (SO_LINGER 0) without any TLS "
            "record; httpx https GET",
            "httpx",
            ("py", "rst_after_hello", 9445, []),
            scheme="https",
            tls=True,
        ),
    ]
    # ------------------------------------------------------------------ server_close_after_request
    fin = "Python server reads the request and close()s (FIN) without responding; {lib} GET"
    for lib, ipv, extra in (
        ("stdlib", 4, {}),
        ("requests", 4, {}),
        ("httpx", 4, {}),
        ("aiohttp", 4, {}),
        ("requests", 6, {}),
        ("httpx", 6, {}),
        ("aiohttp", 6, {"tool": "dumpcap", "ext": "pcapng"}),
    ):
        v6 = "-v6" if ipv == 6 else ""
        S.append(
            Sc(
                f"server_close_after_request-{lib}{v6}",
                fin.format(lib=lib)
                + (
                    " (aiohttp retries the idempotent GET once on a new connection)"
                    if lib == "aiohttp"
                    else ""
                ),
                lib,
                ("py", "fin_after_request", 9001, []),
                ipv=ipv,
                path="/noreply",
                **extra,
            )
        )
    S += [
        Sc(
            "server_close_after_request-requests-serverside",
            fin.format(lib="requests") + "; captured on the server's interface",
            "requests",
            ("py", "fin_after_request", 9001, []),
            path="/noreply",
            point="server",
        ),
        Sc(
            "server_close_after_request-stdlib-keepalive_race",
            "keep-alive race: Python server answers GET 1 with keep-alive and closes the idle "
            "connection after 0.3 s; http.client writes GET 2 on the same connection 0.6 s "
            "after response 1 (after the FIN arrived) -> server kernel RST",
            "stdlib",
            ("py", "keepalive_idle", 9007, ["--idle", "0.3"]),
            action="keepalive_race",
            opts=["--idle", "0.6"],
            conns=keepalive_race_conns,
            idle_timeout=0.3,
        ),
        Sc(
            "server_close_after_request-stdlib-v6-keepalive_race",
            "keep-alive race over IPv6 (see the IPv4 variant): server idle close 0.3 s, "
            "http.client reuses the connection 0.6 s after response 1",
            "stdlib",
            ("py", "keepalive_idle", 9007, ["--idle", "0.3"]),
            ipv=6,
            action="keepalive_race",
            opts=["--idle", "0.6"],
            conns=keepalive_race_conns,
            idle_timeout=0.3,
        ),
    ]
    # ------------------------------------------------------------------ truncated_response
    tr = "Python server announces Content-Length: 100, sends 3 body bytes and closes (FIN); {lib} GET"
    trc = "Python server sends a chunked body cut in the middle of a chunk and closes (FIN); {lib} GET"
    S += [
        Sc(
            "truncated_response-stdlib",
            tr.format(lib="http.client"),
            "stdlib",
            ("py", "truncated_cl", 9003, []),
            path="/short",
        ),
        Sc(
            "truncated_response-requests",
            tr.format(lib="requests"),
            "requests",
            ("py", "truncated_cl", 9003, []),
            path="/short",
        ),
        Sc(
            "truncated_response-httpx",
            tr.format(lib="httpx"),
            "httpx",
            ("py", "truncated_cl", 9003, []),
            path="/short",
            iface="any",
        ),
        Sc(
            "truncated_response-aiohttp",
            tr.format(lib="aiohttp"),
            "aiohttp",
            ("py", "truncated_cl", 9003, []),
            path="/short",
            nano=True,
        ),
        Sc(
            "truncated_response-requests-v6",
            tr.format(lib="requests"),
            "requests",
            ("py", "truncated_cl", 9003, []),
            ipv=6,
            path="/short",
        ),
        Sc(
            "truncated_response-aiohttp-v6",
            tr.format(lib="aiohttp"),
            "aiohttp",
            ("py", "truncated_cl", 9003, []),
            ipv=6,
            path="/short",
        ),
        Sc(
            "truncated_response-requests-chunked",
            trc.format(lib="requests"),
            "requests",
            ("py", "truncated_chunked", 9004, []),
            path="/chunked",
        ),
        Sc(
            "truncated_response-httpx-v6-chunked",
            trc.format(lib="httpx"),
            "httpx",
            ("py", "truncated_chunked", 9004, []),
            ipv=6,
            path="/chunked",
        ),
        Sc(
            "truncated_response-stdlib-chunked",
            trc.format(lib="http.client"),
            "stdlib",
            ("py", "truncated_chunked", 9004, []),
            path="/chunked",
        ),
    ]
    # ------------------------------------------------------------------ server_reset
    rst = "Python server reads the request and resets (SO_LINGER 0 close, RST) without responding; {lib} GET"
    rstm = "Python server sends the head (Content-Length: 100) and 3 body bytes, then resets (SO_LINGER 0); {lib} GET"
    S += [
        Sc(
            "server_reset-stdlib",
            rst.format(lib="http.client"),
            "stdlib",
            ("py", "rst_after_request", 9002, []),
            path="/reset",
        ),
        Sc(
            "server_reset-requests",
            rst.format(lib="requests"),
            "requests",
            ("py", "rst_after_request", 9002, []),
            path="/reset",
        ),
        Sc(
            "server_reset-aiohttp",
            rst.format(lib="aiohttp") + " (aiohttp retries the idempotent GET once)",
            "aiohttp",
            ("py", "rst_after_request", 9002, []),
            path="/reset",
        ),
        Sc(
            "server_reset-httpx-v6",
            rst.format(lib="httpx"),
            "httpx",
            ("py", "rst_after_request", 9002, []),
            ipv=6,
            path="/reset",
        ),
        Sc(
            "server_reset-requests-v6",
            rst.format(lib="requests"),
            "requests",
            ("py", "rst_after_request", 9002, []),
            ipv=6,
            path="/reset",
            iface="any",
        ),
        Sc(
            "server_reset-requests-midresponse",
            rstm.format(lib="requests"),
            "requests",
            ("py", "rst_mid_response", 9005, []),
            path="/halfway",
        ),
        Sc(
            "server_reset-aiohttp-midresponse",
            rstm.format(lib="aiohttp"),
            "aiohttp",
            ("py", "rst_mid_response", 9005, []),
            path="/halfway",
        ),
        Sc(
            "server_reset-httpx-v6-midresponse",
            rstm.format(lib="httpx"),
            "httpx",
            ("py", "rst_mid_response", 9005, []),
            ipv=6,
            path="/halfway",
        ),
    ]
    # ------------------------------------------------------------------ client_reset
    S += [
        Sc(
            "client_reset-requests-stream",
            f"nginx ({ka75}) sends a 24 000-byte body; requests GET stream=True reads 100 "
            "body bytes and closes the response with the rest unread -> client kernel RST",
            "requests",
            ("nginx", "ka75"),
            action="stream_abort",
            path="/big",
            conns=nginx_conns(
                "client_reset",
                "client",
                "requests closed the streamed response with unread body bytes "
                "in the socket buffer; the client kernel aborted with RST",
            ),
        ),
        Sc(
            "client_reset-raw-linger",
            f"raw socket client sends GET / to nginx ({ka75}), reads the response head and "
            "closes with SO_LINGER 0 (RST)",
            "raw",
            ("nginx", "ka75"),
            action="rst_after_head",
            conns=nginx_conns(
                "client_reset",
                "client",
                "client got the response, then close() with SO_LINGER {1,0} "
                "on the established keep-alive connection -> RST",
            ),
        ),
        Sc(
            "client_reset-raw-v6-linger",
            "raw socket client sends GET / to nginx over IPv6, reads the response and "
            "closes with SO_LINGER 0 (RST)",
            "raw",
            ("nginx", "ka75"),
            ipv=6,
            action="rst_after_head",
            iface="any",
            conns=nginx_conns(
                "client_reset",
                "client",
                "client got the response, then close() with SO_LINGER {1,0} "
                "on the established keep-alive connection -> RST",
            ),
        ),
    ]
    # ------------------------------------------------------------------ client_timeout
    slow = "Python server sleeps 3 s before answering; {lib} read timeout 1 s gives up and closes"
    S += [
        Sc(
            "client_timeout-requests",
            slow.format(lib="requests"),
            "requests",
            ("py", "slow", 9006, ["--delay", "3"]),
            path="/slow",
            opts=["--connect-timeout", "2", "--read-timeout", "1"],
        ),
        Sc(
            "client_timeout-httpx",
            slow.format(lib="httpx"),
            "httpx",
            ("py", "slow", 9006, ["--delay", "3"]),
            path="/slow",
            opts=["--read-timeout", "1"],
        ),
        Sc(
            "client_timeout-aiohttp",
            slow.format(lib="aiohttp") + " (ClientTimeout sock_read=1)",
            "aiohttp",
            ("py", "slow", 9006, ["--delay", "3"]),
            path="/slow",
            opts=["--read-timeout", "1"],
        ),
        Sc(
            "client_timeout-stdlib-v6",
            slow.format(lib="http.client (socket timeout)"),
            "stdlib",
            ("py", "slow", 9006, ["--delay", "3"]),
            ipv=6,
            path="/slow",
            opts=["--connect-timeout", "1"],
        ),
    ]
    # ------------------------------------------------------------------ server_idle_close
    idle_note = (
        "nginx keepalive_timeout 1s closed the idle keep-alive connection (FIN) "
        "1 s after the last response; the client sent nothing more and closed its "
        "side later"
    )
    S += [
        Sc(
            "server_idle_close-requests",
            f"nginx ({idle}) keepalive_timeout 1s; requests Session GET, idle 2 s, Session.close()",
            "requests",
            ("nginx", "idle1s"),
            action="idle_close",
            opts=["--idle", "2"],
            conns=nginx_conns("server_idle_close", "server", idle_note),
            idle_timeout=NGINX_IDLE_TIMEOUT_S,
        ),
        Sc(
            "server_idle_close-httpx-v6",
            "nginx keepalive_timeout 1s over IPv6; httpx Client GET, idle 2 s, close()",
            "httpx",
            ("nginx", "idle1s"),
            ipv=6,
            action="idle_close",
            opts=["--idle", "2"],
            conns=nginx_conns("server_idle_close", "server", idle_note),
            idle_timeout=NGINX_IDLE_TIMEOUT_S,
        ),
        Sc(
            "server_idle_close-aiohttp-serverside",
            f"nginx ({idle}) keepalive_timeout 1s; aiohttp session GET, idle 2 s, close; "
            "captured on the server's interface",
            "aiohttp",
            ("nginx", "idle1s"),
            action="idle_close",
            opts=["--idle", "2"],
            conns=nginx_conns("server_idle_close", "server", idle_note),
            idle_timeout=NGINX_IDLE_TIMEOUT_S,
            point="server",
        ),
        Sc(
            "server_idle_close-requests-stale_pool",
            "Python keep-alive server closes idle connections after 0.3 s; requests Session "
            "GET, 0.6 s pause, GET again: urllib3 sees the dropped pooled connection and "
            "opens a new one; Session.close()",
            "requests",
            ("py", "keepalive_idle", 9007, ["--idle", "0.3"]),
            action="close",
            opts=["--repeat", "2", "--gap", "0.6"],
            idle_timeout=0.3,
        ),
        Sc(
            "keepalive-idle-requests",
            f"nginx ({idle}) keepalive_timeout 1s; 3 requests Sessions opened 0.2 s apart "
            "doing 1, 2 and 3 GETs (0.2 s apart), then idle 1.6 s: each connection ends "
            "by nginx's idle close",
            "requests",
            ("nginx", "idle1s"),
            action="multi_idle",
            opts=["--conns", "3", "--gap", "0.2", "--idle", "1.6"],
            conns=nginx_conns("server_idle_close", "server", idle_note),
            idle_timeout=NGINX_IDLE_TIMEOUT_S,
        ),
        Sc(
            "keepalive-idle-httpx-v6",
            "nginx keepalive_timeout 1s over IPv6; 4 httpx Clients opened 0.3 s apart doing "
            "1-4 GETs (0.3 s apart), then idle 1.6 s: each connection ends by nginx's idle "
            "close",
            "httpx",
            ("nginx", "idle1s"),
            ipv=6,
            action="multi_idle",
            opts=["--conns", "4", "--gap", "0.3", "--idle", "1.6"],
            conns=nginx_conns("server_idle_close", "server", idle_note),
            idle_timeout=NGINX_IDLE_TIMEOUT_S,
            tool="dumpcap",
            ext="pcapng",
        ),
    ]
    # ------------------------------------------------------------------ server_close
    sc_note = (
        "nginx keepalive_timeout 0: the response carried 'Connection: close' and "
        "nginx closed (FIN) right after it"
    )
    S += [
        Sc(
            "server_close-requests",
            f"nginx ({ka0}) keepalive_timeout 0; requests GET",
            "requests",
            ("nginx", "ka0"),
            conns=nginx_conns("server_close", "server", sc_note),
        ),
        Sc(
            "server_close-httpx-v6",
            "nginx keepalive_timeout 0 over IPv6; httpx GET",
            "httpx",
            ("nginx", "ka0"),
            ipv=6,
            conns=nginx_conns("server_close", "server", sc_note),
        ),
        Sc(
            "server_close-aiohttp",
            f"nginx ({ka0}) keepalive_timeout 0; aiohttp GET",
            "aiohttp",
            ("nginx", "ka0"),
            iface="any",
            conns=nginx_conns("server_close", "server", sc_note),
        ),
        Sc(
            "server_close-urllib",
            f"nginx ({ka75}, keep-alive allowed) but urllib.request sends 'Connection: close'; "
            "nginx honours it and closes first",
            "urllib",
            ("nginx", "ka75"),
            conns=nginx_conns(
                "server_close",
                "server",
                "urllib sent 'Connection: close'; nginx answered and closed "
                "(FIN) right after the response, before the client closed",
            ),
        ),
    ]
    # ------------------------------------------------------------------ client_close
    cc_note = (
        "nginx keepalive_timeout 75s kept the connection open; the client closed it "
        "(FIN) when it was done"
    )
    S += [
        Sc(
            "client_close-requests",
            f"nginx ({ka75}) keepalive_timeout 75s; requests Session 2 GETs then Session.close()",
            "requests",
            ("nginx", "ka75"),
            action="close",
            opts=["--repeat", "2"],
            conns=nginx_conns("client_close", "client", cc_note),
        ),
        Sc(
            "client_close-stdlib",
            f"nginx ({ka75}) keepalive_timeout 75s; http.client HTTPConnection GET then close()",
            "stdlib",
            ("nginx", "ka75"),
            action="close",
            conns=nginx_conns("client_close", "client", cc_note),
        ),
        Sc(
            "client_close-httpx-v6",
            "nginx keepalive_timeout 75s over IPv6; httpx Client 2 GETs then close()",
            "httpx",
            ("nginx", "ka75"),
            ipv=6,
            action="close",
            opts=["--repeat", "2"],
            conns=nginx_conns("client_close", "client", cc_note),
        ),
        Sc(
            "client_close-aiohttp-v6",
            "nginx keepalive_timeout 75s over IPv6; aiohttp session GET then close",
            "aiohttp",
            ("nginx", "ka75"),
            ipv=6,
            action="close",
            conns=nginx_conns("client_close", "client", cc_note),
            linktype="LINUX_SLL",
            iface="any",
        ),
        Sc(
            "client_close-httpx-tls",
            "Python TLS 1.3 server (self-signed cert trusted by the "
            "client via cafile); httpx Client 2 GETs over HTTPS then close(); pcapng with the "
            "TLS key log embedded (Decryption Secrets Block)",
            "httpx",
            ("py", "tls", 9443, []),
            scheme="https",
            action="close",
            opts=["--repeat", "2", "--cafile", "@CERT@"],
            tls=True,
            tool="dumpcap",
            ext="pcapng",
            inject_secrets=True,
        ),
        Sc(
            "client_close-requests-v6-tls12",
            "Python TLS 1.2 server (self-signed cert trusted "
            "via cafile, OP_IGNORE_UNEXPECTED_EOF so a close without close_notify is a clean "
            "EOF) over IPv6; requests Session 2 GETs then close()",
            "requests",
            ("py", "tls", 9443, ["--tls-max", "1.2", "--ignore-eof"]),
            ipv=6,
            scheme="https",
            action="close",
            opts=["--repeat", "2", "--cafile", "@CERT@"],
            tls=True,
        ),
    ]
    # ------------------------------------------------------------------ open
    open_note = (
        "the client still held the idle keep-alive connection (nginx "
        "keepalive_timeout 75s) when the capture was stopped"
    )
    S += [
        Sc(
            "open-requests",
            f"nginx ({ka75}) keepalive_timeout 75s; requests Session GET and "
            "keeps the connection; capture stopped before anyone closed",
            "requests",
            ("nginx", "ka75"),
            action="hold",
            hold=True,
            conns=nginx_conns("open", "none", open_note),
        ),
        Sc(
            "open-httpx-v6",
            "nginx keepalive_timeout 75s over IPv6; httpx Client 2 GETs and "
            "keeps the connection; capture stopped before anyone closed",
            "httpx",
            ("nginx", "ka75"),
            ipv=6,
            action="hold",
            opts=["--repeat", "2"],
            hold=True,
            conns=nginx_conns("open", "none", open_note),
        ),
    ]
    S += new_scenarios()
    return S


def fw_rule(ns: str, ipv: int, args: list[str]) -> tuple:
    return (ns, "ip6tables" if ipv == 6 else "iptables", list(args))


def new_scenarios() -> list[Sc]:
    """TLS with key logs, HTTP/2, CONNECT proxies, middlebox resets, stale connections."""
    S: list[Sc] = []
    cafile = ["--cafile", "@CERT@"]

    # ------------------------------------------------------------------ TLS (key logs)
    trunc = (
        "Python ssl server ({v}) announces Content-Length: 20000, sends 2000 body bytes and "
        "closes (FIN, no close_notify); {lib} GET (cert trusted via cafile)"
    )
    for lib, v, sargs, extra in (
        ("requests", "TLS 1.3", [], {"extra_note": OPENSSL_EOF_NOTE}),
        ("aiohttp", "TLS 1.2", ["--tls-max", "1.2"], {}),
        (
            "httpx",
            "TLS 1.3",
            [],
            {"tool": "dumpcap", "ext": "pcapng", "extra_note": OPENSSL_EOF_NOTE},
        ),
        ("requests", "TLS 1.2", ["--tls-max", "1.2"], {"ipv": 6, "extra_note": OPENSSL_EOF_NOTE}),
    ):
        tag = "tls13" if v == "TLS 1.3" else "tls12"
        v6 = "-v6" if extra.get("ipv") == 6 else ""
        S.append(
            Sc(
                f"truncated_response-{lib}{v6}-{tag}",
                trunc.format(v=v, lib=lib),
                lib,
                ("py", "tls_truncated", 9446, sargs),
                conns=with_request_line,
                scheme="https",
                path="/big",
                opts=cafile,
                tls=True,
                **extra,
            )
        )
    race = (
        "keep-alive race over {v}: Python ssl server answers GET / with keep-alive and closes "
        "the idle connection after 0.35 s (FIN, no close_notify); {lib} reuses the pooled "
        "connection for GET /again 0.3 s after response 1, and the server's own firewall "
        "holds back the client's data segments until that close (emulated latency), so the "
        "request is in flight when the server closes -> FIN, then RST for the retransmission"
    )
    for lib, v, sargs, opts in (
        ("requests", "TLS 1.3", [], []),
        ("httpx", "TLS 1.2", ["--tls-max", "1.2"], ["--tls-max", "1.2"]),
    ):
        tag = "tls13" if v == "TLS 1.3" else "tls12"
        S.append(
            Sc(
                f"server_close_after_request-{lib}-{tag}-keepalive_race",
                race.format(v=v, lib=lib),
                lib,
                ("py", "tls_keepalive", 9447, ["--idle", "0.35", "--hold-data", *sargs]),
                conns=tls_keepalive_race_conns,
                scheme="https",
                action="keepalive_race",
                opts=["--idle", "0.3", *opts, *cafile],
                tls=True,
                idle_timeout=0.35,
                extra_note=OPENSSL_EOF_NOTE,
            )
        )
    S += [
        Sc(
            "client_close-aiohttp-tls13",
            "Python ssl server (TLS 1.3, cert trusted via cafile); aiohttp session 2 GETs "
            "over HTTPS, then session.close()",
            "aiohttp",
            ("py", "tls", ORIGIN_PORT, []),
            scheme="https",
            action="close",
            opts=["--repeat", "2", *cafile],
            tls=True,
        ),
        Sc(
            "server_close-requests-tls13",
            f"nginx ({hostport(4, NGINX_PORTS['tls_ka0'])}, TLS 1.3, keepalive_timeout 0); "
            "requests GET (cert trusted via cafile): nginx answers with Connection: close, "
            "sends close_notify and closes",
            "requests",
            ("nginx", "tls_ka0"),
            scheme="https",
            opts=cafile,
            tls=True,
            conns=nginx_conns(
                "server_close",
                "server",
                "nginx keepalive_timeout 0 over TLS: the response carried 'Connection: close'; "
                "nginx sent close_notify and closed (FIN) right after it",
            ),
        ),
        Sc(
            "server_close-httpx-v6-tls12",
            "nginx (TLS, keepalive_timeout 0) over IPv6; httpx GET limited to TLS 1.2 (cert "
            "trusted via cafile): nginx answers with Connection: close, close_notify, FIN",
            "httpx",
            ("nginx", "tls_ka0"),
            ipv=6,
            scheme="https",
            opts=["--tls-max", "1.2", *cafile],
            tls=True,
            conns=nginx_conns(
                "server_close",
                "server",
                "nginx keepalive_timeout 0 over TLS 1.2: the response carried 'Connection: "
                "close'; nginx sent close_notify and closed (FIN) right after it",
            ),
        ),
    ]

    # ------------------------------------------------------------------ HTTP/2
    def h2(name, mode, desc, tls_, sargs=(), opts=(), **kw):
        port = 9450 if tls_ else 9451
        return Sc(
            name,
            desc,
            "httpx",
            ("h2", mode, port, list(sargs)),
            conns=h2_server_conns,
            scheme="https" if tls_ else "http",
            opts=(["--http2", *cafile] if tls_ else ["--h2c"]) + list(opts),
            tls=tls_,
            h2_decode_port=None if tls_ else port,
            **kw,
        )

    two = ["--repeat", "2", "--gap", "0.5"]
    S += [
        h2(
            "h2_goaway-httpx-tls",
            "goaway_after_one",
            "Python h2 server over TLS 1.3 (ALPN h2) answers the first request, sends "
            "GOAWAY(NO_ERROR, last_stream_id=1) and closes; httpx (http2=True) does 2 "
            "sequential GETs 0.5 s apart",
            True,
            opts=two,
            action="close",
        ),
        h2(
            "h2_goaway-httpx-h2c",
            "goaway_after_one",
            "Python h2 server, cleartext h2c (prior knowledge), answers the first request, "
            "sends GOAWAY(NO_ERROR, last_stream_id=1) and closes; httpx (http1=False, "
            "http2=True) does 2 sequential GETs 0.5 s apart",
            False,
            opts=two,
            action="close",
        ),
        h2(
            "h2_rst_stream-httpx-h2c",
            "rst_stream",
            "Python h2 server (h2c, prior knowledge) answers the request with "
            "RST_STREAM(REFUSED_STREAM) and keeps the connection; httpx GET",
            False,
        ),
        h2(
            "h2_rst_stream-httpx-tls13-internal_error",
            "rst_stream",
            "Python h2 server over TLS 1.3 (ALPN h2) answers the request with "
            "RST_STREAM(INTERNAL_ERROR) and keeps the connection; httpx GET",
            True,
            sargs=["--error", "INTERNAL_ERROR"],
        ),
        h2(
            "h2_goaway_error-httpx-tls13",
            "goaway_error",
            "Python h2 server over TLS 1.3 (ALPN h2) receives the request and, without "
            "answering, sends GOAWAY(ENHANCE_YOUR_CALM, last_stream_id=0, debug data) and "
            "closes; httpx GET",
            True,
        ),
        h2(
            "h2_goaway_error-httpx-h2c-protocol_error",
            "goaway_error",
            "Python h2 server (h2c, prior knowledge) receives the request and, without "
            "answering, sends GOAWAY(PROTOCOL_ERROR, last_stream_id=0, debug data) and "
            "closes; httpx GET",
            False,
            sargs=["--error", "PROTOCOL_ERROR"],
        ),
        Sc(
            "h2_goaway-httpx-nginx-tls",
            f"nginx ({hostport(4, NGINX_PORTS['h2_tls'])}, http2 over TLS, keepalive_requests "
            "1: GOAWAY(NO_ERROR) after the first request); httpx (http2=True) 2 GETs 0.3 s "
            "apart on one Client, then close()",
            "httpx",
            ("nginx", "h2_tls"),
            conns=nginx_h2_conns,
            scheme="https",
            action="close",
            opts=["--http2", "--repeat", "2", "--gap", "0.3", *cafile],
            tls=True,
        ),
        Sc(
            "h2_goaway-httpx-v6-nginx-h2c",
            "nginx over IPv6 (cleartext http2, prior knowledge, keepalive_requests 1: "
            "GOAWAY(NO_ERROR) after the first request); httpx (http1=False, http2=True) 2 "
            "GETs 0.3 s apart on one Client, then close()",
            "httpx",
            ("nginx", "h2c"),
            ipv=6,
            conns=nginx_h2_conns,
            action="close",
            opts=["--h2c", "--repeat", "2", "--gap", "0.3"],
            h2_decode_port=NGINX_PORTS["h2c"],
        ),
    ]

    # ------------------------------------------------------------------ CONNECT proxy
    proxy_url = f"http://{hostport(4, PROXY_PORT)}"
    origin = ("py", "tls", ORIGIN_PORT, [])

    def px(name, lib, mode, desc, origin_=origin, target=ORIGIN_PORT, opts=(), **kw):
        return Sc(
            name,
            desc + f"; {lib} GET https://{hostport(4, target)}/ via proxy {proxy_url}",
            lib,
            ("proxy", mode, PROXY_PORT, []),
            conns=proxy_conns,
            origin=origin_,
            target_port=target,
            scheme="https",
            opts=["--proxy", proxy_url, *opts],
            tls=True,
            **kw,
        )

    d407 = "Python CONNECT proxy answers 407 Proxy Authentication Required (Connection: close) and closes"
    S += [
        px("server_close-requests-proxy407", "requests", "deny407", d407, origin_=None),
        px("server_close-httpx-proxy407", "httpx", "deny407", d407, origin_=None),
        px("server_close-aiohttp-proxy407", "aiohttp", "deny407", d407, origin_=None),
        px(
            "client_close-httpx-proxy403",
            "httpx",
            "deny403",
            "Python CONNECT proxy answers 403 Forbidden and keeps the connection open",
            origin_=None,
        ),
        px(
            "server_close-requests-proxy502",
            "requests",
            "bad_gateway",
            f"Python CONNECT proxy cannot reach the origin ({hostport(4, NO_LISTENER_PORT)}, "
            "nothing listens) and answers 502 Bad Gateway (Connection: close)",
            origin_=None,
            target=NO_LISTENER_PORT,
        ),
        px(
            "tls_handshake_aborted-aiohttp-proxy_cut",
            "aiohttp",
            "cut_handshake",
            "Python CONNECT proxy establishes the tunnel to a Python ssl origin (TLS 1.3, "
            "cert trusted via cafile), relays the ClientHello and only the ServerHello record, "
            "then closes the tunnel (FIN) mid-handshake",
            opts=cafile,
        ),
        px(
            "tls_handshake_aborted-requests-proxy_cut",
            "requests",
            "cut_handshake",
            "Python CONNECT proxy establishes the tunnel to a Python ssl origin (TLS 1.3, "
            "cert trusted via cafile), relays the ClientHello and only the ServerHello record, "
            "then closes the tunnel (FIN) mid-handshake",
            opts=cafile,
            extra_note=OPENSSL_EOF_NOTE.replace("server's kernel", "proxy's kernel"),
        ),
        px(
            "tls_handshake_aborted-aiohttp-proxy_tunnel",
            "aiohttp",
            "tunnel",
            "Python CONNECT proxy tunnels to a Python ssl origin (TLS 1.3) with a self-signed "
            "certificate; aiohttp (asyncio ssl) verifies it against its default CA store and "
            "rejects it inside the tunnel",
        ),
        px(
            "tls_alert-requests-proxy_tunnel",
            "requests",
            "tunnel",
            "Python CONNECT proxy tunnels to a Python ssl origin (TLS 1.3) with a self-signed "
            "certificate; the client verifies it against its default CA store and rejects it "
            "inside the tunnel",
            extra_note="alert sent inside the CONNECT tunnel, i.e. on the client<->proxy "
            "connection; " + CERT_REJECT_NOTE,
            expect_alert="client",
        ),
        px(
            "tls_alert-httpx-proxy_tunnel",
            "httpx",
            "tunnel",
            "Python CONNECT proxy tunnels to a Python ssl origin (TLS 1.3) with a self-signed "
            "certificate; the client verifies it against its default CA store and rejects it "
            "inside the tunnel",
            extra_note="alert sent inside the CONNECT tunnel, i.e. on the client<->proxy "
            "connection; " + CERT_REJECT_NOTE,
            expect_alert="client",
        ),
    ]

    # ------------------------------------------------------------------ middlebox resets
    ka75 = NGINX_PORTS["ka75"]
    for lib, ipv in (("requests", 4), ("aiohttp", 6)):
        tool = "ip6tables" if ipv == 6 else "iptables"
        injected = f"pd-router {tool} REJECT --reject-with tcp-reset"
        v6 = "-v6" if ipv == 6 else ""
        S.append(
            Sc(
                f"network_reset-{lib}{v6}-blocked",
                f"nginx ({hostport(ipv, ka75)}); pd-router {tool} FORWARD -m string "
                "--string 'GET /blocked' REJECT --reject-with tcp-reset: the router drops the "
                f"request segment and forges an RST to the client; {lib} GET /blocked",
                lib,
                ("nginx", "ka75"),
                ipv=ipv,
                path="/blocked",
                fw=[
                    fw_rule(
                        NS_R,
                        ipv,
                        [
                            "-A",
                            "FORWARD",
                            "-p",
                            "tcp",
                            "-d",
                            ADDR[ipv]["server"],
                            "--dport",
                            str(ka75),
                            "-m",
                            "string",
                            "--string",
                            "GET /blocked",
                            "--algo",
                            "bm",
                            "-j",
                            "REJECT",
                            "--reject-with",
                            "tcp-reset",
                        ],
                    )
                ],  # fmt: skip
                conns=blocked_conns(injected),
            )
        )
    for lib, ipv in (("requests", 4), ("httpx", 6)):
        tool = "ip6tables" if ipv == 6 else "iptables"
        injected = f"pd-router {tool} REJECT --reject-with tcp-reset (on the SYN)"
        v6 = "-v6" if ipv == 6 else ""
        S.append(
            Sc(
                f"refused-{lib}{v6}-router_rst",
                f"nginx listens on {hostport(ipv, ka75)}, but pd-router {tool} FORWARD --syn "
                f"REJECT --reject-with tcp-reset answers the SYN with a forged RST; {lib} GET",
                lib,
                ("nginx", "ka75"),
                ipv=ipv,
                fw=[
                    fw_rule(
                        NS_R,
                        ipv,
                        [
                            "-A",
                            "FORWARD",
                            "-p",
                            "tcp",
                            "-d",
                            ADDR[ipv]["server"],
                            "--dport",
                            str(ka75),
                            "--syn",
                            "-j",
                            "REJECT",
                            "--reject-with",
                            "tcp-reset",
                        ],
                    )
                ],  # fmt: skip
                conns=router_refused_conns(injected),
            )
        )

    # ------------------------------------------------------------------ stale connections
    S += [
        Sc(
            "network_reset-requests-stale_conntrack",
            "pd-router tracks connections with a 3 s established timeout "
            "(nf_conntrack_tcp_loose=0) and REJECTs --reject-with tcp-reset what conntrack "
            "calls INVALID; Python keep-alive server (idle close after 8 s); requests Session "
            "GET /, idle 6 s, GET /again on the same connection -> the router forges an RST",
            "requests",
            ("py", "keepalive_idle", 9008, ["--idle", "8"]),
            action="keepalive_race",
            opts=["--idle", "6"],
            fw=[stale_conntrack_rule(4)],
            router_sysctl=STALE_CONNTRACK_SYSCTL,
            conns=stale_conntrack_conns,
            client_timeout=30,
        ),
        Sc(
            "network_reset-httpx-v6-stale_conntrack",
            "IPv6 variant: pd-router tracks connections with a 3 s established timeout "
            "(nf_conntrack_tcp_loose=0) and ip6tables REJECTs --reject-with tcp-reset what "
            "conntrack calls INVALID; Python keep-alive server (idle close after 8 s); httpx "
            "Client GET /, idle 4.2 s (below httpcore's 5 s keepalive_expiry, so the pooled "
            "connection is reused), GET /again on the same connection -> the router forges "
            "an RST",
            "httpx",
            ("py", "keepalive_idle", 9008, ["--idle", "8"]),
            ipv=6,
            action="keepalive_race",
            opts=["--idle", "4.2"],
            fw=[stale_conntrack_rule(6)],
            router_sysctl=STALE_CONNTRACK_SYSCTL,
            conns=stale_conntrack_conns,
            client_timeout=30,
        ),
        Sc(
            "server_reset-requests-stale",
            "Python keep-alive server closes the idle connection after 0.5 s, but pd-router "
            "DROPs the server's FIN segments, so the client never learns; requests Session "
            "GET /, idle 2 s, GET /again on the same connection -> the server's kernel "
            "answers with RST",
            "requests",
            ("py", "keepalive_idle", 9009, ["--idle", "0.5"]),
            action="keepalive_race",
            opts=["--idle", "2"],
            fw=[
                fw_rule(
                    NS_R,
                    4,
                    [
                        "-A",
                        "FORWARD",
                        "-p",
                        "tcp",
                        "-s",
                        ADDR[4]["server"],
                        "--sport",
                        "9009",
                        "--tcp-flags",
                        "FIN",
                        "FIN",
                        "-j",
                        "DROP",
                    ],
                )
            ],  # fmt: skip
            conns=stale_server_conns,
            idle_timeout=0.5,
        ),
    ]
    return S


# =========================================================================== verification


H2_ERRORS = {
    "NO_ERROR": 0,
    "PROTOCOL_ERROR": 1,
    "INTERNAL_ERROR": 2,
    "FLOW_CONTROL_ERROR": 3,
    "REFUSED_STREAM": 7,
    "CANCEL": 8,
    "ENHANCE_YOUR_CALM": 11,
}


def tshark_packets(path: Path, keys: Path | None = None, h2_port: int | None = None) -> list[dict]:
    fields = [
        "frame.number",
        "frame.time_relative",
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.flags.syn",
        "tcp.flags.ack",
        "tcp.flags.fin",
        "tcp.flags.reset",
        "icmp.type",
        "icmpv6.type",
        "tls.alert_message.desc",
        "tcp.len",
        "ip.ttl",
        "ipv6.hlim",
        "http2.type",
        "http2.goaway.error",
        "http2.goaway.last_stream_id",
        "http2.rst_stream.error",
        "http2.streamid",
        "http.response.code",
        "http.request.method",
    ]
    extra = []
    if keys is not None:
        extra += ["-o", f"tls.keylog_file:{keys}"]
    if h2_port is not None:
        extra += ["-d", f"tcp.port=={h2_port},http2"]
    r = subprocess.run(
        [
            "tshark",
            "-n",
            *extra,
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            *sum((["-e", f] for f in fields), []),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = []
    for line in r.stdout.splitlines():
        vals = dict(zip(fields, line.split("\t"), strict=False))
        out.append(vals)
    return out


def verify(sc: Sc, path: Path, conns: list[dict], keys: Path | None = None) -> list[str]:
    """Packet-level sanity check of the recorded capture against the ground truth."""
    errs: list[str] = []
    pk = tshark_packets(path, keys, sc.h2_decode_port)
    client_ip = ADDR[sc.ipv]["client"]
    flows: dict[tuple, dict] = {}
    order: list[tuple] = []
    icmp_srcs: list[str] = []
    for p in pk:
        src = (p["ip.src"] or p["ipv6.src"]).split(",")[0]
        if p["icmp.type"] or p["icmpv6.type"]:
            icmp_srcs.append(src)
            continue
        if not p["tcp.srcport"]:
            continue
        sport, dport = int(p["tcp.srcport"]), int(p["tcp.dstport"])
        from_client = src == client_ip
        key = (sport, dport) if from_client else (dport, sport)
        if key not in flows:
            flows[key] = {
                "first_close": None,
                "server_pkts": 0,
                "syn": False,
                "alerts": [],
                "synack_ttl": None,
                "goaway": [],
                "rst_stream": [],
                "status": [],
                "last_payload": None,
            }
            order.append(key)
        f = flows[key]
        side = "client" if from_client else "server"
        ttl = int((p["ip.ttl"] or p["ipv6.hlim"] or "0").split(",")[0])
        if side == "server" and p["tcp.flags.syn"] in ("1", "True") and f["synack_ttl"] is None:
            f["synack_ttl"] = ttl
        if side == "server" and p["http2.goaway.error"]:
            errs_ = p["http2.goaway.error"].split(",")
            sids = p["http2.goaway.last_stream_id"].split(",")
            f["goaway"] += [(int(e, 0), int(s_, 0)) for e, s_ in zip(errs_, sids, strict=False)]
        if side == "server" and p["http2.rst_stream.error"]:
            f["rst_stream"] += [int(e, 0) for e in p["http2.rst_stream.error"].split(",")]
        if side == "server" and p["http.response.code"]:
            f["status"] += [int(c) for c in p["http.response.code"].split(",")]
        if p["tcp.flags.syn"] in ("1", "True") and side == "client":
            f["syn"] = True
        if side == "server":
            f["server_pkts"] += 1
        if p["tls.alert_message.desc"]:
            # (sender, alert code, sent before anybody's first FIN/RST?)
            f["alerts"].append((side, p["tls.alert_message.desc"], f["first_close"] is None))
        if f["first_close"] is None and p["tcp.len"] not in ("", "0"):
            f["last_payload"] = side
        if f["first_close"] is None and (
            "1" in (p["tcp.flags.fin"], p["tcp.flags.reset"])
            or "True" in (p["tcp.flags.fin"], p["tcp.flags.reset"])
        ):
            kind = "RST" if p["tcp.flags.reset"] in ("1", "True") else "FIN"
            f["first_close"] = (side, kind, ttl)
    if len(order) != len(conns):
        errs.append(f"{len(order)} TCP connections in the capture, manifest has {len(conns)}")
        return errs
    for i, (key, c) in enumerate(zip(order, conns, strict=True), 1):
        f = flows[key]
        fc = f["first_close"]
        if not f["syn"]:
            errs.append(f"conn {i}: no client SYN captured")
        o, by = c["outcome"], c["closed_by"]
        if o not in OUTCOMES or by not in CLOSERS:
            errs.append(f"conn {i}: outcome/closed_by {o}/{by} not in the vocabulary")
        if o == "syn_timeout":
            if f["server_pkts"] or fc:
                errs.append(f"conn {i}: syn_timeout but server packets/close seen ({fc})")
        elif o == "icmp_unreachable":
            if sc.icmp_from not in icmp_srcs:
                errs.append(f"conn {i}: no ICMP error from {sc.icmp_from} ({icmp_srcs})")
            if f["server_pkts"]:
                errs.append(f"conn {i}: server answered although ICMP expected")
        elif o == "open":
            if fc:
                errs.append(f"conn {i}: open but {fc} seen")
        elif o == "tls_alert":
            pass  # ended by the fatal alert (checked below); the FIN/RST order after it is a race
        elif by == "network":
            # forged by pd-router in the name of the server: RST from the server's address
            # whose TTL says it did not cross the router hop (the server's packets did)
            if not fc or fc[:2] != ("server", "RST"):
                errs.append(f"conn {i}: closed_by network but first FIN/RST is {fc}")
            elif fc[2] != DEFAULT_TTL or (f["synack_ttl"] is not None and fc[2] == f["synack_ttl"]):
                errs.append(
                    f"conn {i}: RST TTL {fc[2]} does not look forged by the adjacent router "
                    f"(SYN-ACK TTL {f['synack_ttl']})"
                )
            if o == "refused" and f["synack_ttl"] is not None:
                errs.append(f"conn {i}: refused by the network but a SYN-ACK was captured")
        elif by in ("client", "server"):
            if not fc or fc[0] != by:
                errs.append(f"conn {i}: closed_by {by} but first FIN/RST is {fc}")
            elif (
                by == "server"
                and f["synack_ttl"] is not None
                and fc[2] != f["synack_ttl"]
                and sc.point == "client"
            ):
                errs.append(f"conn {i}: server close TTL {fc[2]} != SYN-ACK TTL {f['synack_ttl']}")
            if o in ("refused", "server_reset", "client_reset") and fc and fc[1] != "RST":
                errs.append(f"conn {i}: {o} but first close is {fc[1]}")
            if (
                o
                in (
                    "server_close_after_request",
                    "truncated_response",
                    "server_close",
                    "server_idle_close",
                    "client_close",
                )
                and fc
                and fc[1] != "FIN"
            ):
                errs.append(f"conn {i}: {o} but first close is {fc[1]}")
        if o == "tls_alert":
            want = sc.expect_alert or by
            if not any(s == want and before for s, _, before in f["alerts"]):
                errs.append(
                    f"conn {i}: no plaintext TLS alert from {want} before the first "
                    f"FIN/RST ({f['alerts']})"
                )
        if o == "tls_handshake_aborted" and any(before for _, _, before in f["alerts"]):
            errs.append(f"conn {i}: handshake_aborted but alerts {f['alerts']}")
        h2 = c.get("h2") or {}
        # a request outstanding when the connection was closed / reset (the new, request_line
        # scenarios; in the older keep-alive races the FIN came before the late request): the
        # client's data is the last payload on the wire before the first FIN/RST
        if (
            (o == "server_close_after_request" and c.get("request_line") and not h2)
            or o == "network_reset"
            or c.get("stale")
        ) and f["last_payload"] != "client":
            errs.append(
                f"conn {i}: {o} but the last payload before the close is {f['last_payload']}"
            )
        if h2.get("goaway"):
            want = (H2_ERRORS[h2["goaway"]["error"]], h2["goaway"]["last_stream_id"])
            if want not in f["goaway"]:
                errs.append(f"conn {i}: GOAWAY {want} not decoded by tshark ({f['goaway']})")
        for rs in h2.get("rst_streams", []):
            if H2_ERRORS[rs["error"]] not in f["rst_stream"]:
                errs.append(f"conn {i}: RST_STREAM {rs} not decoded by tshark ({f['rst_stream']})")
        if c.get("proxy") and c["proxy"]["status"] not in f["status"]:
            errs.append(f"conn {i}: proxy status {c['proxy']['status']} not seen ({f['status']})")
    if sc.icmp_from is None and icmp_srcs:
        errs.append(f"unexpected ICMP errors from {icmp_srcs}")
    return errs


def tcpdump_linktype(path: Path) -> str:
    r = subprocess.run(
        ["tcpdump", "-r", str(path), "-c", "1", "-n"], capture_output=True, text=True
    )
    m = re.search(r"link-type (\S+ \([^)]*\))", r.stderr)
    return m.group(1) if m else "unknown"


# =========================================================================== runner


class Recorder:
    def __init__(self, out: Path, workdir: Path):
        self.out, self.work = out, workdir
        self.nginx: Nginx | None = None
        self.cert: Path | None = None
        self.key: Path | None = None

    def ensure_nginx(self) -> None:
        if self.nginx is None:
            self.ensure_cert()
            self.nginx = Nginx(self.work, self.cert, self.key)
            self.nginx.start()

    def ensure_cert(self) -> None:
        if self.cert is None:
            self.cert, self.key = make_cert(self.work)

    def close(self) -> None:
        if self.nginx:
            self.nginx.stop()
            self.nginx = None

    def record(self, sc: Sc, attempts: int = 3) -> dict:
        last = None
        for attempt in range(1, attempts + 1):
            entry, errs = self._record_once(sc)
            if not errs:
                return entry
            log(f"    attempt {attempt}: capture does not match: {errs}")
            last = entry
            last["verify_errors"] = errs
        return last

    def _record_once(self, sc: Sc) -> tuple[dict, list[str]]:
        path = self.out / sc.file
        keys_tmp = self.work / f"{sc.name}.keys"
        srv_log = self.work / f"{sc.name}.server.jsonl"
        for p in (keys_tmp, srv_log):
            if p.exists():
                p.unlink()
        if sc.server and sc.server[0] == "nginx":
            self.ensure_nginx()
        if sc.tls or sc.scheme == "https":
            self.ensure_cert()
        server = cap = client = origin = None
        saved_sysctl: dict[str, str] = {}
        saved_router: dict[str, str] = {}
        fw_hits: list[dict] = []
        origin_entries: list[dict] = []
        origin_log = self.work / f"{sc.name}.origin.jsonl"
        if origin_log.exists():
            origin_log.unlink()
        try:
            for ns, tool, args in sc.fw:
                sh(tool, *args, ns=ns)
            for k, v in sc.client_sysctl.items():
                saved_sysctl[k] = sh("sysctl", "-n", k, ns=NS_C).stdout.strip()
                sh("sysctl", "-qw", f"{k}={v}", ns=NS_C)
            if sc.origin is not None:
                origin = self._start_server(sc, sc.origin, origin_log)
            if sc.server and sc.server[0] in SERVER_SCRIPTS:
                server = self._start_server(sc, sc.server, srv_log)
            for k, v in sc.router_sysctl.items():
                saved_router[k] = sh("sysctl", "-n", k, ns=NS_R).stdout.strip()
                sh("sysctl", "-qw", f"{k}={v}", ns=NS_R)
            ns = NS_C if sc.point == "client" else NS_S
            iface = "any" if sc.iface == "any" else (IF_C if sc.point == "client" else IF_S)
            cap = Capture(
                path,
                ns,
                iface,
                tool=sc.tool,
                linktype=sc.linktype,
                nano=sc.nano,
                comment=f"pcapdiag sample {sc.file}: {sc.scenario}",
            )
            cap.start()

            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            if "--proxy" not in sc.opts:  # an explicit proxy must not be bypassed
                env |= {"NO_PROXY": "*", "no_proxy": "*"}
            if sc.tls or sc.scheme == "https":
                env["SSLKEYLOGFILE"] = str(keys_tmp)
            opts = [str(self.cert) if o == "@CERT@" else o for o in sc.opts]
            argv = [
                PY,
                str(CLIENT_PY),
                "--lib",
                sc.lib,
                "--action",
                sc.action,
                "--url",
                sc.url(),
                *opts,
            ]
            t_start = time.time()
            client = Proc(
                argv, ns=NS_C, env=env, stdin=subprocess.PIPE if sc.hold else subprocess.DEVNULL
            )
            if sc.hold:
                client.wait_line(r"^HOLDING$", timeout=sc.client_timeout)
                time.sleep(sc.settle)
                cap.stop()
                client.p.stdin.close()
            rc = client.wait(sc.client_timeout)
            duration = time.time() - t_start
            if rc != 0 or not client.out:
                raise RuntimeError(f"client failed rc={rc}: {' | '.join(client.err[-8:])}")
            cres = json.loads(client.out[-1])
            fw_hits = self._fw_hits(sc)
            # wait until the server has finished every connection it accepted
            entries = self._server_entries(srv_log, wait=server is not None)
            if origin is not None:
                origin_entries = self._server_entries(origin_log, wait=True, need_accept=False)
            time.sleep(sc.settle)
            cap.stop()
        finally:
            for c in (client,):
                if c is not None and c.p.poll() is None:
                    c.stop(signal.SIGKILL)
            if cap is not None:
                cap.stop()
            if server is not None:
                server.stop()
            if origin is not None:
                origin.stop()
            flush_firewalls()
            for k, v in saved_router.items():
                sh("sysctl", "-qw", f"{k}={v}", ns=NS_R, check=False)
            for k, v in saved_sysctl.items():
                sh("sysctl", "-qw", f"{k}={v}", ns=NS_C, check=False)

        ctx = {
            "server_log": entries,
            "origin_log": origin_entries,
            "client": cres,
            "firewall": fw_hits,
            "nginx_log": self._nginx_debug(sc),
        }
        conns = (sc.conns or from_server_log)(ctx)
        if sc.extra_note:
            conns = [c | {"note": f"{c['note']}; {sc.extra_note}"} for c in conns]
        keys_file = None
        if keys_tmp.exists() and any(
            ln.strip() and not ln.startswith("#") for ln in keys_tmp.read_text().splitlines()
        ):
            keys_file = f"{sc.name}.keys"
            shutil.copyfile(keys_tmp, self.out / keys_file)
            if sc.inject_secrets:
                tmp = path.with_suffix(".tmp.pcapng")
                sh("editcap", "--inject-secrets", f"tls,{keys_tmp}", str(path), str(tmp))
                tmp.replace(path)
        elif (self.out / f"{sc.name}.keys").exists():
            (self.out / f"{sc.name}.keys").unlink()

        errs = verify(sc, path, conns, keys_tmp if keys_file else None)
        size = path.stat().st_size
        if size > MAX_BYTES:
            errs.append(f"capture is {size} bytes (> {MAX_BYTES})")
        exc = cres["exception"]
        if exc is not None:
            exc = {
                k: exc[k] for k in ("type", "module", "qualname", "message", "errno", "chain")
            } | {"chain_detail": exc["chain_detail"]}
        entry = {
            "file": sc.file,
            "scenario": sc.scenario,
            "client": cres["client"],
            "link_type": tcpdump_linktype(path),
            "ip_version": sc.ipv,
            "server": hostport(sc.ipv, sc.port_()),
            "client_address": ADDR[sc.ipv]["client"],
            "exception": exc,
            "connections": conns,
        }
        if sc.idle_timeout is not None:
            entry["server_idle_timeout_s"] = sc.idle_timeout
        if sc.icmp_from:
            entry["icmp_from"] = sc.icmp_from
        if sc.fw:
            entry["firewall"] = fw_hits
        if sc.router_sysctl:
            entry["router_sysctl"] = sc.router_sysctl
        entry["server_software"] = self._server_software(sc)
        entry["capture"] = {
            "tool": sc.tool,
            "format": "pcapng" if sc.ext == "pcapng" else "pcap",
            "netns": NS_C if sc.point == "client" else NS_S,
            "interface": "any" if sc.iface == "any" else (IF_C if sc.point == "client" else IF_S),
            "point": sc.point,
            "filter": CAPTURE_FILTER,
            "timestamp_precision": "nano" if sc.nano else "micro",
            "bytes": size,
            "tls_secrets_embedded": bool(sc.inject_secrets and keys_file),
        }
        entry["keylog"] = keys_file
        entry["client_events"] = cres["events"]
        entry["server_log"] = [e for e in entries]
        if sc.origin is not None:
            entry["origin_log"] = origin_entries
        if ctx["nginx_log"]:
            entry["nginx_debug_log"] = ctx["nginx_log"]
        entry["client_run_s"] = round(duration, 3)
        return entry, errs

    def _server_software(self, sc: Sc) -> str | None:
        if sc.server is None:
            return None
        if sc.server[0] == "nginx":
            return f"nginx {self.nginx.version()} ({sc.server[1]})"
        out = (
            f"tools/samples/{SERVER_SCRIPTS[sc.server[0]].name} --mode {sc.server[1]} "
            f"{' '.join(sc.server[3])}"
        ).strip()
        if sc.server[0] == "h2":
            out += f" (h2 {version_of('h2')}{', TLS' if sc.tls else ', h2c'})"
        if sc.origin is not None:
            out += (
                f"; origin: tools/samples/server.py --mode {sc.origin[1]} "
                f"{' '.join(sc.origin[3])} on {hostport(sc.ipv, sc.origin[2])}"
            ).rstrip()
        return out

    def _start_server(self, sc: Sc, spec: tuple, log_path: Path) -> Proc:
        kind, mode, port, sargs = spec
        argv = [
            PY,
            str(SERVER_SCRIPTS[kind]),
            "--mode",
            mode,
            "--host",
            ADDR[sc.ipv]["server"],
            "--port",
            str(port),
            "--log",
            str(log_path),
        ]
        if (kind == "py" and mode.startswith("tls")) or (kind == "h2" and sc.tls):
            argv += ["--cert", str(self.cert), "--key", str(self.key)]
        proc = Proc(argv + list(sargs), ns=NS_S)
        proc.wait_line(r"^READY$", timeout=10)
        return proc

    @staticmethod
    def _fw_hits(sc: Sc) -> list[dict]:
        """Packet counters of the scenario's own firewall rules (read before the flush)."""
        out = []
        for ns, tool, args in sc.fw:
            chain = args[1]
            r = sh(tool, "-v", "-x", "-n", "-L", chain, "--line-numbers", ns=ns, check=False)
            rows = [ln.split() for ln in r.stdout.splitlines()[2:] if ln.strip()]
            idx = [
                i for i, (n2, t2, a2) in enumerate(sc.fw) if (n2, t2, a2[1]) == (ns, tool, chain)
            ]
            pos = idx.index(sc.fw.index((ns, tool, args)))
            pk = int(rows[pos][1]) if pos < len(rows) else None
            out.append({"netns": ns, "rule": f"{tool} {' '.join(args)}", "packets": pk})
        return out

    def _nginx_debug(self, sc: Sc) -> list[str]:
        """nginx's own debug lines about HTTP/2 frames it sent, for the h2 nginx servers."""
        if not (sc.server and sc.server[0] == "nginx" and sc.server[1] in ("h2_tls", "h2c")):
            return []
        f = self.nginx.prefix / ("h2-tls.log" if sc.server[1] == "h2_tls" else "h2c.log")
        time.sleep(0.2)
        lines = f.read_text().splitlines() if f.exists() else []
        f.write_text("")  # next scenario starts from an empty log
        keep = ("GOAWAY", "RST_STREAM", "close http connection", "create HEADERS frame")
        return [ln for ln in lines if any(k in ln for k in keep)][:60]

    @staticmethod
    def _server_entries(
        path: Path, wait: bool, timeout: float = 15.0, need_accept: bool = True
    ) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            recs = [json.loads(x) for x in lines]
            accepted = {r["conn"] for r in recs if r.get("event") == "accept"}
            done = {r["conn"]: r for r in recs if "outcome" in r}
            if (
                not wait
                or (accepted and accepted <= set(done))
                or (not need_accept and not accepted)
                or time.monotonic() > deadline
            ):
                if wait and not accepted <= set(done):
                    raise RuntimeError(f"server did not finish connections {accepted - set(done)}")
                return [done[c] for c in sorted(done)]
            time.sleep(0.05)


# =========================================================================== outputs


def exc_summary(exc: dict | None) -> str:
    if exc is None:
        return "—"
    msg = exc["message"].replace("|", "\\|").replace("\n", " ")
    if len(msg) > 110:
        msg = msg[:107] + "..."
    errno = f" [errno {exc['errno']}]" if exc["errno"] is not None else ""
    return f"`{exc['qualname']}`{errno}: {msg}"


def write_readme(out: Path, manifest: list[dict], run_s: float | None) -> None:
    rows = []
    for e in manifest:
        outs = []
        for c in e["connections"]:
            outs.append(f"{c['outcome']} ({c['closed_by']})")
        compact = []
        for o in outs:  # "a (x) ×2"
            if compact and compact[-1][0] == o:
                compact[-1][1] += 1
            else:
                compact.append([o, 1])
        exp = ", ".join(o if n == 1 else f"{o} ×{n}" for o, n in compact)
        scen = e["scenario"].replace("|", "\\|")
        rows.append(
            f"| `{e['file']}` | {scen} | {e['client']} | {exp} | {exc_summary(e['exception'])} |"
        )
    link_types = sorted({e["link_type"] for e in manifest})
    if run_s is None and (out / "README.md").exists():  # --only: keep the full-run figure
        m = re.search(r"everything \(~(\d+) s\)", (out / "README.md").read_text())
        run_s = float(m.group(1)) if m else None
    text = (
        f"""# Sample captures

Real captures recorded by `tools/record_samples.py` (generated file — do not edit by hand).
Each one is ONE real Python HTTP client talking to a real server (nginx, or a small Python
server from `tools/samples/server.py` that misbehaves on purpose) across three Linux
network namespaces:

```
pd-client  pdc0 ==== pdr0  pd-router  pdr1 ==== pds0  pd-server
10.99.1.2            10.99.1.1   10.99.2.1         10.99.2.2
fd99:1::2            fd99:1::1   fd99:2::1         fd99:2::2
```

Captures are taken on the client's veth (`pdc0`) unless the manifest says otherwise
(`capture.point` = `server`: on `pds0`; `capture.interface` = `any`: Linux cooked
headers). Filter: `{CAPTURE_FILTER}` (TCP plus ICMP errors; ARP/ND dropped). Offloads
are disabled on the veths, so checksums are final and no segment exceeds the MTU.
Link types present: {", ".join(link_types)}.

`manifest.json` is the ground truth: for each file the exception the client really
raised (serialised by the client process from the caught object: class, module,
`str()`, errno, the `__cause__`/`__context__`/wrapped-reason chain) and, for EVERY TCP
connection in order of its first packet, `outcome` / `closed_by` / `note` taken from what
the scenario did (the server's own log of what it did, iptables rules, nginx
`keepalive_timeout`, the client closing or holding the connection) — never from an
analyzer. `server_idle_timeout_s` is the configured idle timeout where there is one,
`icmp_from` the address that sent the ICMP error, `keylog` the TLS key log saved beside
the capture (`NAME.keys`, NSS key log format; only when the client derived any secrets).
`client_events` / `server_log` are the raw observations the entry was built from.

Outcomes: refused, syn_timeout, icmp_unreachable, tls_alert, tls_handshake_aborted,
server_close_after_request, truncated_response, server_reset, client_reset,
client_timeout, server_idle_close, server_close, client_close, open, and network_reset (an
RST forged by a middlebox on an established connection); `closed_by` is client, server,
network (a firewall on pd-router answered in the server's name: a SYN answered that way is
"refused" by the network) or none. Optional facts per connection, filled from the servers'
logs and the scenario's own setup: `request_line` (the last request the client sent before
the close), `alert` / `alert_from` (TLS alert from the TLS server's log), `h2` (`goaway`:
`last_stream_id`, `error`; `rst_streams`: `stream_id`, `error` — frames the HTTP/2 server
sent, from its log or nginx's debug log), `proxy` (`status`, `origin` of the CONNECT),
`stale` / `idle_before_s` (a pooled connection reused after that long idle, by the client's
own clock) and `injected_by` (the rule that forged the RST). Per file, `firewall` lists the
scenario's iptables rules with their packet counters, `router_sysctl` pd-router's settings,
`origin_log` the log of the TLS origin behind the proxy and `nginx_debug_log` nginx's own
lines about the HTTP/2 frames it sent. TLS captures have their key log beside them
(`NAME.keys`; `tshark -o tls.keylog_file:NAME.keys`); for cleartext HTTP/2 (h2c) use
`-d tcp.port==PORT,http2`.
`tshark` was used only afterwards, as a packet-level cross-check (connection count, who
sent the first FIN/RST and its TTL — a forged RST is one hop "closer" than the server —,
ICMP source, TLS alert sender, HTTP/2 GOAWAY/RST_STREAM frames and proxy status codes).

## Re-recording

```
sudo python tools/record_samples.py                 # everything (~{int(run_s or 0)} s)
sudo python tools/record_samples.py --only 'tls_*'  # a subset (updates those entries)
python tools/record_samples.py --list               # scenario names
```

Needs root, iproute2, iptables/ip6tables (nf_tables), tcpdump, dumpcap/tshark/editcap,
nginx (nginx-light, with the http_v2 and ssl modules), openssl and requests/httpx/aiohttp
and h2 in the running Python. Only
private addresses inside the script's own namespaces (10.99.0.0/16, fd99::/16) are used
and nothing is routed outside them; the namespaces, firewall rules and every process the
script started are removed at the end (also on errors). Timestamps, ports, sequence
numbers and some close-order races differ between runs; outcomes and exceptions should not.

## Files

| file | scenario | client | expected outcome(s) (closed_by) | exception |
|---|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )
    (out / "README.md").write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", help="scenario name/glob (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "sample_pcaps"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args()

    all_sc = scenarios()
    names = [s.name for s in all_sc]
    assert len(names) == len(set(names)), "duplicate scenario names"
    if args.list:
        for s in all_sc:
            print(f"{s.file:55s} {s.scenario}")
        return 0
    chosen = all_sc
    if args.only:
        chosen = [
            s
            for s in all_sc
            if any(
                fnmatch.fnmatch(s.name, pat) or fnmatch.fnmatch(s.file, pat) for pat in args.only
            )
        ]
        if not chosen:
            ap.error(f"no scenario matches {args.only}")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces, iptables, tcpdump)")

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    old: dict[str, dict] = {}
    if args.only and manifest_path.exists():
        old = {e["file"]: e for e in json.loads(manifest_path.read_text())}
    elif not args.only:
        for f in list(out.glob("*.pcap")) + list(out.glob("*.pcapng")) + list(out.glob("*.keys")):
            f.unlink()

    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pcapdiag-rec-"))
    results: dict[str, dict] = {}
    failed: list[str] = []
    rec = Recorder(out, workdir)
    try:
        log(f"setting up namespaces {', '.join(NAMESPACES)}")
        setup_topology()
        for i, sc in enumerate(chosen, 1):
            log(f"[{i}/{len(chosen)}] {sc.file}")
            try:
                entry = rec.record(sc)
            except Exception as e:  # noqa: BLE001 - report, continue with the rest
                log(f"    FAILED: {e!r}")
                failed.append(sc.file)
                continue
            results[sc.file] = entry
            if entry.get("verify_errors"):
                failed.append(sc.file)
            exc = entry["exception"]
            log(
                f"    {[c['outcome'] + '/' + c['closed_by'] for c in entry['connections']]} "
                f"{exc['qualname'] if exc else None} ({entry['capture']['bytes']} B)"
            )
    finally:
        rec.close()
        teardown()
        if args.keep_workdir:
            log(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    run_s = time.monotonic() - t0

    order = [s.file for s in all_sc]
    merged = dict(old)
    merged.update(results)
    manifest = [merged[f] for f in order if f in merged]
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    write_readme(out, manifest, run_s if not args.only else None)
    log(f"recorded {len(results)}/{len(chosen)} captures in {run_s:.1f} s -> {out}")
    if failed:
        log(f"PROBLEMS: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
