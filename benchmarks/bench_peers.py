"""pcapdiag beside its peers on one capture, in the same run, on the same machine.

    python benchmarks/bench_peers.py CAPTURE [--tools a,b,...] [--sample-packets 200000]
                                     [--pyshark-packets 3000] [--json OUT] [--timeout 3600]

Tools (each skipped, with the reason, when it is not installed): pcapdiag (and pcapdiag
--jobs 2 when the CLI has --jobs), pcapdiag x2 (two one-process runs of the capture at
once: their packets/s counts both, the ceiling for --jobs 2 on this machine), tshark-fields (7 TCP fields to /dev/null), tshark-conv
(-z conv,tcp), tcptrace (-n), nfstream (flows to pandas), dpkt (a reader loop counting
flags per 4-tuple), scapy and pyshark (first N packets only: sampled, rate extrapolated),
cat (the I/O floor). ``bash benchmarks/setup_bench.sh`` installs them all;
``benchmarks/record_load.py`` records a realistic capture to run this on.

Each tool runs as a child process, one after another, after one untimed read of the
capture so every tool starts from a warm page cache. Wall time is from start to exit,
start-up included; with ``--repeat N`` (default 3) the tools run in N rounds, one after
another in each, and a tool's wall time is its best round (a tool whose first round took
over ``--slow-s`` runs once: its ratio is far from noise).

The page cache's state matters to a reader that maps the file (pcapdiag) and hardly to
one that copies it (``read``: tcptrace, tshark, dpkt). A file just written by tcpdump sits
in the cache as 4 KB pages (its writes are small), and mapping each page costs the kernel
more than the walk over its records; read back from disk, the kernel's readahead caches it
in large folios, mapped a folio at a time (Linux 6.x with ext4, xfs or btrfs). Measured on
the benchmark capture: the record-header walk to a byte-range cut 0.155 s against 0.032 s,
and ``pcapdiag analyze`` ~1.55 s against ~1.25 s; tcptrace alike in both. ``--cache
reread`` (the default) first evicts the capture's pages (``posix_fadvise(DONTNEED)``, the
file's own pages only, no root needed) so that the warming read fills the cache from disk,
as for a capture copied from the host that took it; ``--cache as-is`` leaves the cache as
it is (after ``record_load.py``: tcpdump's small pages). Peak RSS is the larger of (a) the sum of RSS over the tool's whole
process tree, polled with psutil every 50 ms, which is what counts for tools that fork
workers, and (b) "Maximum resident set size" from ``/usr/bin/time -v`` wrapped around
the tool (the largest single process, catching a spike between two polls). Not wait4's
ru_maxrss of a child of this script: a vforked child inherits this process's high-water
mark, so every tool would show at least this script's peak. packets/s is the capture's packet count (counted once here) over wall time; for
sampled tools it is the sample over wall time. "pcapdiag ÷ tool" divides pcapdiag's
packets/s by the tool's: above 1 means pcapdiag is faster.

Connection counts are printed side by side because pcapdiag should count as tshark does
(a fresh SYN on a reused 4-tuple starts a new connection); tcptrace and the dpkt loop do
too. nfstream counts flows: it keeps a reused 4-tuple in one flow until its idle timeout
(120 s), so it reports fewer on a busy capture whose client ports wrap around.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

_VENV = Path(__file__).resolve().parent.parent / ".venv" / "bin"
VENV_BIN = _VENV if (_VENV / "python").exists() else Path(sys.executable).parent
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
TCP_FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
]

NFSTREAM = """
import json, sys
from nfstream import NFStreamer
df = NFStreamer(source=sys.argv[1], statistical_analysis=False, n_dissections=0).to_pandas()
print(json.dumps({"connections": int((df["protocol"] == 6).sum())}))
"""

DPKT = """
import json, sys
import dpkt
SYN, ACK, FIN, RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST
flags = {}  # 4-tuple -> [SYNs, FINs, RSTs, ISN of the last SYN]
conns = 0
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        try:
            ip = dpkt.ethernet.Ethernet(buf).data
        except dpkt.UnpackError:
            continue
        tcp = getattr(ip, "data", None)
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        key = (ip.src, tcp.sport, ip.dst, tcp.dport)
        if key not in flags and (ip.dst, tcp.dport, ip.src, tcp.sport) in flags:
            key = (ip.dst, tcp.dport, ip.src, tcp.sport)
        c = flags.get(key)
        if c is None:
            c = flags[key] = [0, 0, 0, None]
            conns += 1
        f_ = tcp.flags
        if f_ & SYN and not f_ & ACK:
            if c[3] is not None and c[3] != tcp.seq:
                conns += 1  # a fresh SYN on a reused 4-tuple: a new connection
            c[0] += 1
            c[3] = tcp.seq
        c[1] += bool(f_ & FIN)
        c[2] += bool(f_ & RST)
print(json.dumps({"connections": conns}))
"""

SCAPY = """
import json, sys
from scapy.all import TCP, PcapReader
n = int(sys.argv[2])
syns = count = 0
with PcapReader(sys.argv[1]) as r:
    for p in r:
        if count >= n:
            break
        count += 1
        if TCP in p and p[TCP].flags & 0x12 == 0x02:
            syns += 1
print(json.dumps({"packets": count}))
"""

PYSHARK = """
import json, sys
import pyshark
n = int(sys.argv[2])
count = 0
cap = pyshark.FileCapture(sys.argv[1], keep_packets=False)
try:
    for p in cap:
        if count >= n:
            break
        count += 1
        if "TCP" in p:
            _ = p.tcp.flags
finally:
    cap.close()
print(json.dumps({"packets": count}))
"""


# Two one-process runs of the whole capture at once, each JSON to a file of its own: what
# two cores give two processes that share nothing, the ceiling ``--jobs 2`` is measured
# against (both read the same cached pages, as ``--jobs 2``'s ranges do, and contend for
# the same memory and caches)
SIDE_BY_SIDE = """
t=$(mktemp) || exit 1
"$0" analyze "$1" --format json > "$t" & b=$!
"$0" analyze "$1" --format json; a=$?
wait $b; c=$?
rm -f "$t"
exit $((a | c))
"""


@dataclass
class Row:
    tool: str
    command: str
    wall_s: float | None = None
    peak_rss_mb: float | None = None
    packets: int | None = None  # packets the tool read (the sample for sampled tools)
    packets_per_s: float | None = None
    sampled: bool = False
    connections: int | None = None
    note: str = ""
    walls: list[float | None] = field(default_factory=list)  # every round's


@dataclass
class Tool:
    name: str
    argv: list[str]
    needs: str  # executable or Python module that must exist
    stdout_file: bool = False  # keep stdout for count(); else /dev/null
    sampled: int = 0  # packets read when sampled
    copies: int = 1  # whole readings of the capture the command makes


def count_packets(path: Path) -> int:
    """Records of a classic pcap: a walk over record headers, 4 MB at a time."""
    with open(path, "rb") as f:
        magic = f.read(4)
        endian = {
            b"\xd4\xc3\xb2\xa1": "<",
            b"\xa1\xb2\xc3\xd4": ">",
            b"\x4d\x3c\xb2\xa1": "<",
            b"\xa1\xb2\x3c\x4d": ">",
        }.get(magic)
        if endian is None:  # pcapng or compressed: let capinfos count
            out = subprocess.run(
                ["capinfos", "-c", "-M", "-T", "-r", str(path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return int(out.split()[-1])
        caplen = struct.Struct(endian + "I")
        f.seek(24)
        buf, pos, n = b"", 0, 0
        while chunk := f.read(1 << 22):
            buf, pos = buf[pos:] + chunk, 0
            while pos + 16 <= len(buf):
                end = pos + 16 + caplen.unpack_from(buf, pos + 8)[0]
                if end > len(buf):
                    break
                pos, n = end, n + 1
        return n


def machine_facts() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")),
        platform.processor(),
    )
    versions = {}
    for name, cmd in (("tshark", ["tshark", "-v"]), ("tcptrace", ["tcptrace", "-v"])):
        if shutil.which(cmd[0]):
            out = subprocess.run(cmd, capture_output=True, text=True)
            m = re.search(r"\d+\.\d+(\.\d+)?", out.stdout + out.stderr)
            versions[name] = m.group(0) if m else "?"
    for mod in ("nfstream", "dpkt", "scapy", "pyshark", "pcapdiag"):
        out = subprocess.run(
            [PY, "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            versions[mod] = out.stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def tools(capture: str, sample: int, pyshark_sample: int) -> list[Tool]:
    py, pcapdiag = PY, str(VENV_BIN / "pcapdiag")
    out = [
        Tool(
            "pcapdiag",
            [pcapdiag, "analyze", capture, "--format", "json"],
            pcapdiag,
            stdout_file=True,
        )
    ]
    if Path(pcapdiag).exists():
        helptext = subprocess.run(
            [pcapdiag, "analyze", "--help"], capture_output=True, text=True
        ).stdout
        if "--jobs" in helptext:
            out.append(
                Tool("pcapdiag --jobs 2", [*out[0].argv, "--jobs", "2"], pcapdiag, stdout_file=True)
            )
        out.append(
            Tool(
                "pcapdiag x2",
                ["sh", "-c", SIDE_BY_SIDE, pcapdiag, capture],
                pcapdiag,
                stdout_file=True,
                copies=2,
            )  # fmt: skip
        )
    fields = [a for f in TCP_FIELDS for a in ("-e", f)]
    out += [
        Tool("tshark-fields", ["tshark", "-r", capture, "-n", "-T", "fields", *fields], "tshark"),
        Tool(
            "tshark-conv",
            ["tshark", "-r", capture, "-n", "-q", "-z", "conv,tcp"],
            "tshark",
            stdout_file=True,
        ),
        Tool("tcptrace", ["tcptrace", "-n", capture], "tcptrace", stdout_file=True),
        Tool("nfstream", [py, "-c", NFSTREAM, capture], "nfstream", stdout_file=True),
        Tool("dpkt", [py, "-c", DPKT, capture], "dpkt", stdout_file=True),
        Tool(
            "scapy",
            [py, "-c", SCAPY, capture, str(sample)],
            "scapy",
            stdout_file=True,
            sampled=sample,
        ),
        Tool(
            "pyshark",
            [py, "-c", PYSHARK, capture, str(pyshark_sample)],
            "pyshark",
            stdout_file=True,
            sampled=pyshark_sample,
        ),
        Tool("cat", ["cat", capture], "cat"),
    ]
    return out


def missing(tool: Tool) -> str:
    if "/" in tool.needs:
        return "" if Path(tool.needs).exists() else f"{tool.needs} not found"
    if shutil.which(tool.needs):
        return ""
    probe = subprocess.run([PY, "-c", f"import {tool.needs}"], capture_output=True)
    if probe.returncode == 0:
        return ""
    return f"{tool.needs} is not installed (bash benchmarks/setup_bench.sh)"


def measure(argv: list[str], stdout, timeout: float) -> tuple[float, int, int, str]:
    """Run argv; return (wall s, peak RSS bytes, exit code, stderr tail). The wall time
    ends when the process does (a thread waits for it), not at the next poll of its
    memory: polling every 50 ms added 0-50 ms to every tool's time, which counts most
    for the fastest."""
    gnu_time = Path("/usr/bin/time").exists()
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rusage:
        wrapped = ["/usr/bin/time", "-v", "-o", rusage.name, *argv] if gnu_time else argv
        ended: list[float] = []
        done = threading.Event()
        t0 = time.perf_counter()
        p = subprocess.Popen(wrapped, stdout=stdout, stderr=err)

        def wait() -> None:
            p.wait()
            ended.append(time.perf_counter())
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        root, peak = psutil.Process(p.pid), 0
        while not done.is_set():
            with contextlib.suppress(psutil.Error):  # the tree, without /usr/bin/time itself
                tree = root.children(recursive=True) + ([] if gnu_time else [root])
                peak = max(peak, sum(proc.memory_info().rss for proc in tree))
            if time.perf_counter() - t0 > timeout:
                for proc in root.children(recursive=True):
                    proc.kill()
                p.kill()
                done.wait()
                break
            done.wait(0.05)
        wall = ended[0] - t0
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rusage.read())
        if m:
            peak = max(peak, int(m.group(1)) * 1024)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    return wall, peak, p.returncode, " | ".join(tail)


def count_connections(tool: Tool, text: str) -> int | None:
    if tool.name.startswith("pcapdiag"):  # only the summary: the rows may be large
        start = text.index("{", text.index('"summary"'))
        return json.JSONDecoder().raw_decode(text, start)[0]["connections"]
    if tool.name == "tshark-conv":
        return sum(1 for line in text.splitlines() if "<->" in line)
    if tool.name == "tcptrace":
        return sum(1 for line in text.splitlines() if re.match(r"\s*\d+: \S+ - \S+", line))
    if tool.name in ("nfstream", "dpkt"):
        return json.loads(text.strip().splitlines()[-1])["connections"]
    return None


def run_tool(tool: Tool, packets: int, timeout: float) -> Row:
    row = Row(tool.name, " ".join(a if "\n" not in a else "<script>" for a in tool.argv))
    reason = missing(tool)
    if reason:
        row.note = "skipped: " + reason
        print(f"  {tool.name}: {row.note}", file=sys.stderr)
        return row
    print(f"  {tool.name} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile("w+") as out:
        sink = out if tool.stdout_file else subprocess.DEVNULL
        wall, rss, code, err = measure(tool.argv, sink, timeout)
        out.seek(0)
        text = out.read() if tool.stdout_file else ""
    row.wall_s, row.peak_rss_mb = round(wall, 2), round(rss / 2**20, 1)
    row.walls.append(row.wall_s)
    if code != 0:
        row.note = f"exit {code}" + (" (timeout)" if wall > timeout else "") + f": {err}"
        return row
    row.packets = packets * tool.copies
    if tool.sampled:
        row.sampled = True
        row.packets = json.loads(text.strip().splitlines()[-1])["packets"]
        row.note = f"sampled: first {row.packets:,} packets"
    row.packets_per_s = round(row.packets / wall) if wall else None
    try:
        row.connections = count_connections(tool, text)
    except (ValueError, KeyError, IndexError) as e:
        row.note += f" (no connection count: {e})"
    return row


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def print_report(capture: Path, packets: int, facts: dict, rows: list[Row]) -> None:
    ref = next((r.packets_per_s for r in rows if r.tool == "pcapdiag"), None)
    par = next((r.packets_per_s for r in rows if r.tool == "pcapdiag --jobs 2"), None)
    size_mb = capture.stat().st_size / 1e6
    print(f"\nCapture: `{capture.name}`, {packets:,} packets, {size_mb:,.0f} MB")
    print(
        f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['ram_gb']} GB RAM, "
        f"Python {facts['python']}, Linux {facts['kernel']}, {facts['date']}"
    )
    print(f"Page cache: {facts.get('cache', 'as-is')}; wall s: each tool's best round")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) + "\n")
    print(
        "| tool | packets/s | wall s | peak RSS MB | connections | pcapdiag ÷ tool "
        "| pcapdiag --jobs 2 ÷ tool |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")

    def ratio(mine: float | None, r: Row) -> str:
        v = mine / r.packets_per_s if mine and r.packets_per_s else None
        return fmt(v, ".2f" if v and v >= 0.1 else ".2g")

    for r in rows:
        name = r.tool + (" (sampled)" if r.sampled else "")
        if r.packets_per_s is None:
            name += f" ({r.note})" if r.note else ""
        print(
            f"| {name} | {fmt(r.packets_per_s, ',.0f')} | {fmt(r.wall_s, '.2f')} | "
            f"{fmt(r.peak_rss_mb, ',.0f')} | {fmt(r.connections, ',')} | "
            f"{ratio(ref, r)} | {ratio(par, r)} |"
        )
    notes = [f"{r.tool}: {r.note}" for r in rows if r.note and r.packets_per_s is not None]
    notes += [
        f"{r.tool}: rounds " + ", ".join(fmt(w, ".2f") for w in r.walls) + " s"
        for r in rows
        if len(r.walls) > 1
    ]
    if notes:
        print("\n" + "\n".join(notes))
    speedups = _speedups(rows)
    if speedups:
        print("\n" + speedups)
    print(
        "\nConnections counted: "
        + ", ".join(f"{r.tool} {r.connections:,}" for r in rows if r.connections is not None)
    )


def _speedups(rows: list[Row]) -> str:
    """``--jobs 2`` against one process, and against what two cores give two processes
    that share nothing (``pcapdiag x2``): how close to 2x it could come here."""
    by = {r.tool: r.packets_per_s for r in rows if r.packets_per_s}
    one, par, side = (by.get(t) for t in ("pcapdiag", "pcapdiag --jobs 2", "pcapdiag x2"))
    if not one:
        return ""
    out = []
    if par:
        out.append(f"`--jobs 2`: {par / one:.2f}x one process")
    if side:
        out.append(f"two captures side by side (`pcapdiag x2`): {side / one:.2f}x one process")
    if par and side:
        out.append(f"`--jobs 2` reaches {par / side:.0%} of the side by side speed")
    return "; ".join(out) + "." if out else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--tools", help="comma-separated subset (default: all)")
    ap.add_argument("--sample-packets", type=int, default=200_000, help="scapy's sample")
    ap.add_argument("--pyshark-packets", type=int, default=3000, help="pyshark's sample")
    ap.add_argument("--timeout", type=float, default=3600, help="per tool, seconds")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each tool's best counts")
    ap.add_argument("--slow-s", type=float, default=30.0, help="a tool slower than this runs once")
    ap.add_argument(
        "--cache",
        choices=("reread", "as-is"),
        default="reread",
        help="the capture's page cache before the warming read (see the module docstring)",
    )
    args = ap.parse_args()
    capture = args.capture.resolve()
    all_tools = tools(str(capture), args.sample_packets, args.pyshark_packets)
    if args.tools:
        wanted = [t.strip() for t in args.tools.split(",")]
        unknown = set(wanted) - {t.name for t in all_tools}
        if unknown:
            ap.error(f"unknown tools {sorted(unknown)}; known: {[t.name for t in all_tools]}")
        all_tools = [t for t in all_tools if t.name in wanted]
    t0 = time.perf_counter()
    packets = count_packets(capture)
    print(f"{packets:,} packets counted in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.cache == "reread":
        fd = os.open(capture, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    subprocess.run(["cat", str(capture)], stdout=subprocess.DEVNULL, check=True)  # warm cache
    facts = machine_facts()
    facts["cache"] = args.cache
    rows = [run_tool(t, packets, args.timeout) for t in all_tools]
    for rnd in range(1, max(args.repeat, 1)):
        for k, t in enumerate(all_tools):
            r = rows[k]
            if r.wall_s is None or r.packets_per_s is None or r.wall_s > args.slow_s:
                continue
            print(f"  round {rnd + 1}:", end="", file=sys.stderr)
            again = run_tool(t, packets, args.timeout)
            r.walls.append(again.wall_s)
            if again.peak_rss_mb is not None and r.peak_rss_mb is not None:
                r.peak_rss_mb = max(r.peak_rss_mb, again.peak_rss_mb)
            if (
                again.packets_per_s is not None
                and again.wall_s is not None
                and (again.wall_s < r.wall_s)
            ):
                r.wall_s, r.packets_per_s = again.wall_s, again.packets_per_s
    print_report(capture, packets, facts, rows)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "capture": str(capture),
                    "packets": packets,
                    "bytes": capture.stat().st_size,
                    "machine": facts,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
