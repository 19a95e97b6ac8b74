"""Peak memory and time of ``pcapdiag analyze`` on a SYN flood (random source ports,
nothing answers), the adversarial case for per-connection state. Run by hand:

    python benchmarks/bench_flood.py --syns 1000000

Writes the capture to a temporary file (Ethernet/IPv4 pcap, 70 bytes a SYN), then runs
the CLI in a child process (``bench_limits.run``) so the figure is the analysis alone.
"""

from __future__ import annotations

import argparse
import random
import struct
import tempfile
from pathlib import Path

from bench_limits import run


def write_flood(path: Path, syns: int, servers: int = 1, seed: int = 1) -> None:
    rnd = random.Random(seed)
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(syns):
            src = bytes([10, 1, (i >> 8) & 255, i & 255])
            dst = bytes([10, 2, 0, 1 + i % servers])
            tcp = struct.pack(
                "!HHIIBBHHH", rnd.randint(1024, 65535), 80, rnd.getrandbits(32), 0, 0x50, 0x02,
                64240, 0, 0,
            )  # fmt: skip
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst)
            pkt = eth + ip + tcp
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 10_000, (i % 10_000) * 100,
                                len(pkt), len(pkt)) + pkt)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--syns", type=int, default=1_000_000)
    ap.add_argument("--servers", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flood.pcap"
        write_flood(path, args.syns, args.servers)
        run(path, args.syns, f"{args.syns:,} SYNs to {args.servers} server(s)")


if __name__ == "__main__":
    main()
