"""End-to-end speed of ``pcapdiag.analyze`` and of each stage, on a large capture.

The capture is made by replaying a real recording many times over (client addresses and
ports rewritten so every copy is a new connection, copies overlapping in time), so the
traffic mix is real while the size is chosen. Run by hand, not in the test suite:

    python benchmarks/bench_pipeline.py --source sample_pcaps/keepalive-idle-requests.pcap --copies 20000
    python benchmarks/bench_pipeline.py --source ../shared/oracle/zeek/traces/ssh.pcap --copies 300
    python benchmarks/bench_pipeline.py --source sample_pcaps/server_close-requests-tls13.pcap \
        --copies 500 --keylog sample_pcaps/server_close-requests-tls13.keys

With ``--keylog`` (every copy reuses the recorded handshake, so every connection has its
secrets) it also times the analysis with TLS decryption, in wall time since tshark runs
as a child process, and tshark's peak RSS.

Prints packets/s for: reading only, reading + decoding, the full analysis; and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcapdiag import analyze, decode, reader  # noqa: E402


def replicate(source: Path, dest: Path, copies: int) -> int:
    """Write ``copies`` shifted copies of an Ethernet/IPv4 pcap; returns packets written."""
    with reader.open_capture(str(source)) as cap:
        recs = []
        for batch in cap.batches():
            for i in range(len(batch)):
                off, n = int(batch.offset[i]), int(batch.caplen[i])
                recs.append((int(batch.ts_ns[i]), bytes(batch.data[off : off + n])))
    if not recs:
        raise SystemExit("empty source")
    t0 = recs[0][0]
    span = recs[-1][0] - t0 + 10_000_000
    tcp = []
    for ts, buf in recs:
        if len(buf) < 54 or buf[12:14] != b"\x08\x00" or buf[23] != 6:
            continue
        ihl = (buf[14] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", buf, 14 + ihl)
        tcp.append((ts - t0, buf, 14 + ihl, sport > dport))
    written = 0
    with open(dest, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for c in range(copies):
            base = 1_700_000_000 * 10**9 + c * span // 50
            for rel, buf, toff, from_client in tcp:
                b = new_client(buf, toff, from_client, c)
                ts = base + rel
                out.write(struct.pack("<IIII", ts // 10**9, ts % 10**9 // 1000, len(b), len(b)))
                out.write(b)
                written += 1
    return written


def new_client(buf: bytes, toff: int, from_client: bool, copy: int, source: int = 0) -> bytes:
    """An Ethernet/IPv4 frame of copy ``copy`` (of source ``source``, when several are
    mixed): the client port shifted and the client address's 2nd (source) and 3rd octets
    rewritten, so copies never share a 4-tuple."""
    b = bytearray(buf)
    po = toff if from_client else toff + 2
    port = struct.unpack_from("!H", b, po)[0]
    struct.pack_into("!H", b, po, 1024 + (port - 1024 + (copy * 7) % 60000) % 64000)
    ip = 14 + (12 if from_client else 16)
    if source:
        b[ip + 1] = source
    b[ip + 2] = (copy // 60000) % 250
    return bytes(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--copies", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="write the capture here and keep it")
    ap.add_argument("--keylog", type=Path, help="also time the analysis with TLS decryption")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.pcap"
        n = replicate(args.source, path, args.copies)
        size = path.stat().st_size
        print(
            f"capture: {n:,} packets, {size / 1e6:.0f} MB ({args.copies} copies of {args.source.name})"
        )

        t = time.process_time()
        with reader.open_capture(str(path)) as cap:
            for _ in cap.batches():
                pass
        t_read = time.process_time() - t

        t = time.process_time()
        with reader.open_capture(str(path)) as cap:
            for batch in cap.batches():
                decode.decode_batch(batch)
        t_decode = time.process_time() - t

        t = time.process_time()
        result = analyze(str(path))
        t_all = time.process_time() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"read            {n / t_read:>12,.0f} packets/s")
        print(f"read + decode   {n / t_decode:>12,.0f} packets/s")
        print(
            f"full analysis   {n / t_all:>12,.0f} packets/s  ({len(result.records):,} connections)"
        )
        print(f"peak RSS        {rss:>12,.0f} MB")
        if args.keylog:
            t = time.perf_counter()
            plain = analyze(str(path))
            t_keyless = time.perf_counter() - t
            t = time.perf_counter()
            keyed = analyze(str(path), keylog=args.keylog)
            t_keyed = time.perf_counter() - t
            done = sum(c.decrypted for c in keyed.captures)
            child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                f"keyless (wall)  {t_keyless:>12.2f} s   ({len(plain.records):,} connections)\n"
                f"with keys       {t_keyed:>12.2f} s   ({done:,} decrypted, "
                f"{done / max(t_keyed - t_keyless, 1e-9):,.0f} decrypted connections/s, "
                f"{n / t_keyed:,.0f} packets/s overall)\n"
                f"tshark peak RSS {child:>12,.0f} MB"
            )


if __name__ == "__main__":
    main()
