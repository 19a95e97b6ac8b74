"""Time and peak memory at the two extremes of connection shape. Run by hand:

    python benchmarks/bench_limits.py --long-gb 1        # one connection carrying 1 GB
    python benchmarks/bench_limits.py --tiny 1000000     # a million 6-packet connections

The capture is written to a temporary file (Ethernet/IPv4 pcap, generated: the shape is
the point, not the payload), then ``pcapdiag analyze --format json`` runs in a child
process so the peak RSS is the analysis alone.
"""

from __future__ import annotations

import argparse
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08


def _pkt(src: bytes, dst: bytes, sp: int, dp: int, seq: int, ack: int, flags: int,
         payload: bytes = b"") -> bytes:  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags,
                      65535, 0, 0)  # fmt: skip
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return ETH + ip + tcp + payload


def _rec(fh, ts_ns: int, pkt: bytes) -> None:  # noqa: ANN001
    fh.write(struct.pack("<IIII", ts_ns // 10**9, ts_ns % 10**9 // 1000, len(pkt), len(pkt)))
    fh.write(pkt)


def write_long(path: Path, gigabytes: float) -> int:
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    body = bytes(1448)
    n = 0
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000 * 10**9
        for p in (_pkt(c, s, 40000, 443, 0, 0, SYN), _pkt(s, c, 443, 40000, 0, 1, SYN | ACK),
                  _pkt(c, s, 40000, 443, 1, 1, ACK)):  # fmt: skip
            _rec(fh, t, p)
            t += 10_000
            n += 1
        seq, total = 1, int(gigabytes * 1e9)
        while seq < total:
            _rec(fh, t, _pkt(s, c, 443, 40000, seq, 1, ACK | PSH, body))
            seq += len(body)
            n += 1
            if n % 2 == 0:
                _rec(fh, t + 1000, _pkt(c, s, 40000, 443, 1, seq, ACK))
                n += 1
            t += 12_000
        _rec(fh, t, _pkt(s, c, 443, 40000, seq, 1, FIN | ACK))
        _rec(fh, t + 10_000, _pkt(c, s, 40000, 443, 1, seq + 1, FIN | ACK))
        n += 2
    return n


def write_tiny(path: Path, connections: int) -> int:
    s = bytes([10, 0, 0, 2])
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000 * 10**9
        for i in range(connections):
            c = bytes([10, 1 + (i >> 24) % 200, (i >> 8) & 255, i & 255])
            sp = 1024 + (i >> 16) % 60000
            for p in (
                _pkt(c, s, sp, 80, 0, 0, SYN), _pkt(s, c, 80, sp, 0, 1, SYN | ACK),
                _pkt(c, s, sp, 80, 1, 1, ACK), _pkt(c, s, sp, 80, 1, 1, FIN | ACK),
                _pkt(s, c, 80, sp, 1, 2, FIN | ACK), _pkt(c, s, sp, 80, 2, 2, ACK),
            ):  # fmt: skip
                _rec(fh, t, p)
                t += 20_000
    return connections * 6


def run(path: Path, packets: int, what: str) -> None:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pcapdiag.cli", "analyze", str(path), "--format", "json"],
        capture_output=True,
    )
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{what}: {packets:,} packets, {path.stat().st_size / 1e9:.2f} GB, {wall:.1f} s "
          f"({packets / wall:,.0f} packets/s), peak RSS {rss:,.0f} MB, "
          f"{len(out.stdout) / 1e3:,.0f} KB of JSON, exit {out.returncode}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long-gb", type=float, help="one connection carrying this many GB")
    ap.add_argument("--tiny", type=int, help="this many 6-packet connections")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.long_gb:
            path = Path(tmp) / "long.pcap"
            run(path, write_long(path, args.long_gb), f"one connection of {args.long_gb:g} GB")
            path.unlink()
        if args.tiny:
            path = Path(tmp) / "tiny.pcap"
            run(path, write_tiny(path, args.tiny), f"{args.tiny:,} tiny connections")


if __name__ == "__main__":
    main()
