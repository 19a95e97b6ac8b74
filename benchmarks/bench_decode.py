"""Throughput of ``pcapdiag.decode.decode_batch`` on synthetic batches.

    python benchmarks/bench_decode.py [--packets 1000000] [--repeat 5] [--only a,b]

Each scenario is one RecordBatch of ``--packets`` records built with numpy: a template
frame per payload size (0, 40, 100 and 200 bytes, cycling), tiled, with the source port
and sequence number rewritten per record. Reported: best-of-``repeat`` wall time and CPU
(process) time, as packets per second. CPU time is the steadier figure on a busy machine.

``--compiled both`` (default) times every scenario twice: the pure numpy path
(``PCAPDIAG_COMPILED=0``) and with the numba kernel (``=1``: the common layouts are
decoded by ``_compiled.decode_common``, the rest by the numpy code). Batches read from a
file by the compiled reader arrive already decoded by its walk; ``bench_reader.py
--decode`` measures that.

``eth-ipv4-tcp`` is the hot path (target ≥ 3 M packets/s). The other scenarios go through
the same vectorised code with more layers or several selections: ``v4-v6-80-20`` and
``mixed`` interleave record by record, which also exercises the merge back into capture
order. ``icmp-errors`` measures the only per-packet Python (building ``IcmpError``
objects), on ``--icmp-packets`` records.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcapdiag.decode import decode_batch  # noqa: E402
from pcapdiag.reader import RecordBatch, compiled_kernels  # noqa: E402

MAC = bytes.fromhex("00112233445566778899aabb")
SPORT, DPORT = 40000, 443
PAYLOADS = (0, 40, 100, 200)


def ipv4(proto: int, payload: bytes) -> bytes:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, src, dst
    )
    return hdr + payload


def ipv6(nh: int, payload: bytes) -> bytes:
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    return struct.pack("!IHBB", 0x60000000, len(payload), nh, 64) + src + dst + payload


def tcp(payload: int, options: bytes = b"") -> bytes:
    doff = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", SPORT, DPORT, 1000, 2000, doff << 4, 0x18, 65535, 0, 0)
    return hdr + options + bytes(payload)


def ether(ethertype: int, payload: bytes, tags: bytes = b"") -> bytes:
    return MAC + tags + struct.pack("!H", ethertype) + payload


def pppoe(pkt: bytes) -> bytes:
    return ether(0x8864, struct.pack("!BBHHH", 0x11, 0, 1, 2 + len(pkt), 0x0021) + pkt)


def icmp_unreach(p: int) -> bytes:
    quoted = ipv4(6, tcp(0))[:28]
    return ether(0x0800, ipv4(1, struct.pack("!BBHI", 3, 3, 0, 0) + quoted + bytes(p)))


# scenario -> (link type, frame for a given payload size)
Template = tuple[int, Callable[[int], bytes]]
SCENARIOS: dict[str, Template] = {
    "eth-ipv4-tcp": (1, lambda p: ether(0x0800, ipv4(6, tcp(p)))),
    "eth-ipv6-tcp": (1, lambda p: ether(0x86DD, ipv6(6, tcp(p)))),
    "eth-vlan-ipv4-tcp": (1, lambda p: ether(0x0800, ipv4(6, tcp(p)), b"\x81\x00\x00\x64")),
    "sll-ipv4-tcp": (113, lambda p: bytes(14) + b"\x08\x00" + ipv4(6, tcp(p))),
    "raw-ipv4-tcp-options": (101, lambda p: ipv4(6, tcp(p, b"\x01\x01\x08\x0a" + bytes(8)))),
    "eth-mpls-ipv4-tcp": (1, lambda p: ether(0x8847, b"\x00\x01\x01\x40" + ipv4(6, tcp(p)))),
    "eth-pppoe-ipv4-tcp": (1, lambda p: pppoe(ipv4(6, tcp(p)))),
    "eth-gre-ipv4-tcp": (
        1,
        lambda p: ether(0x0800, ipv4(47, b"\x00\x00\x08\x00" + ipv4(6, tcp(p)))),
    ),
    "eth-ipv6-ext-tcp": (
        1,
        lambda p: ether(
            0x86DD, ipv6(0, bytes([60, 0]) + bytes(6) + bytes([6, 0]) + bytes(6) + tcp(p))
        ),
    ),
    "eth-ipv4-udp": (
        1,
        lambda p: ether(0x0800, ipv4(17, struct.pack("!HHHH", 53, 53, 8 + p, 0) + bytes(p))),
    ),
}
MIXES: dict[str, list[str]] = {
    "v4-v6-80-20": ["eth-ipv4-tcp"] * 4 + ["eth-ipv6-tcp"],
    "mixed": list(SCENARIOS),
}


def build(n: int, templates: list[Template]) -> RecordBatch:
    """``n`` records cycling through ``templates`` x payload sizes; per record the TCP
    source port and sequence number are rewritten (where the template has TCP)."""
    frames = [(lt, make(p)) for lt, make in templates for p in PAYLOADS]
    k = len(frames)
    kinds = np.arange(n) % k
    lens = np.array([len(f) for _, f in frames], np.int64)
    caplen = lens[kinds]
    offset = np.zeros(n, np.int64)
    offset[1:] = np.cumsum(caplen[:-1])
    period = np.frombuffer(b"".join(f for _, f in frames), np.uint8)  # records cycle
    data = np.tile(period, -(-n // k))[: int(caplen.sum())].copy()
    marker = struct.pack("!HH", SPORT, DPORT)
    for j, (_, f) in enumerate(frames):
        at = f.rfind(marker)  # the innermost TCP header
        if at < 0:
            continue
        sel = np.flatnonzero(kinds == j)
        where = offset[sel] + at
        fields = ((0, (SPORT + sel % 20000).astype(">u2")), (4, sel.astype(">u4")))
        for shift, values in fields:
            as_bytes = values.view(np.uint8).reshape(len(sel), -1)
            for b in range(as_bytes.shape[1]):
                data[where + shift + b] = as_bytes[:, b]
    return RecordBatch(
        data=data,
        frame=np.arange(1, n + 1, dtype=np.int64),
        ts_ns=np.arange(n, dtype=np.int64) * 1000,
        offset=offset,
        caplen=caplen.astype(np.int32),
        wirelen=caplen.astype(np.int32),
        linktype=np.array([lt for lt, _ in frames], np.uint16)[kinds],
        interface=np.zeros(n, np.uint16),
    )


def timeit(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (process) time of ``repeat`` calls, in seconds."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--icmp-packets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--compiled", choices=["0", "1", "both"], default="both")
    args = ap.parse_args()
    modes = {"both": ["0", "1"], "0": ["0"], "1": ["1"]}[args.compiled]
    if "1" in modes:
        os.environ["PCAPDIAG_COMPILED"] = "1"
        if compiled_kernels() is None:
            raise SystemExit("numba kernels unavailable (is numba installed?)")
    names = [s for s in args.only.split(",") if s] or [*SCENARIOS, *MIXES, "icmp-errors"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"numpy {np.__version__}, {args.packets:,} records per batch, best of {args.repeat},"
        f" load average {load:.1f}"
    )
    for name in names:
        n = args.packets
        if name == "icmp-errors":
            n = args.icmp_packets
            templates: list[Template] = [(1, icmp_unreach)]
        elif name in MIXES:
            templates = [SCENARIOS[s] for s in MIXES[name]]
        else:
            templates = [SCENARIOS[name]]
        batch = build(n, templates)
        for mode in modes:
            os.environ["PCAPDIAG_COMPILED"] = mode
            dec = decode_batch(batch)  # warm-up and sanity check
            if name.endswith("tcp") and len(dec.tcp) != n:
                raise SystemExit(f"{name}: decoded {len(dec.tcp)} TCP rows of {n}")
            if name == "icmp-errors" and len(dec.icmp) != n:
                raise SystemExit(f"{name}: {len(dec.icmp)} ICMP errors of {n}")
            wall, cpu = timeit(lambda b=batch: decode_batch(b), args.repeat)
            label = "compiled" if mode == "1" else "pure"
            print(
                f"{name:22s} {label:8s} wall {wall * 1e3:7.1f} ms {n / wall / 1e6:5.2f} M/s"
                f" | cpu {cpu * 1e3:7.1f} ms {n / cpu / 1e6:5.2f} M/s"
                f"  (n {n:,}: tcp {len(dec.tcp):,}, non_tcp {dec.non_tcp:,}, icmp {len(dec.icmp):,})"
            )


if __name__ == "__main__":
    main()
