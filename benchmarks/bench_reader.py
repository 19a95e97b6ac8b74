"""Throughput of pcapdiag.reader on large synthetic captures, or on a given capture.

Writes a pcap, a gzip of it, and a pcapng with the same records (sizes uniform in
60..1500 bytes, payload a repeating pattern) into a temp dir, then times
``open_capture(...).batches()`` end to end (nothing is decoded).

    python benchmarks/bench_reader.py                 # 2 M records
    python benchmarks/bench_reader.py --records 500000 --keep /tmp/bench

``--file PATH`` times a real capture instead; ``--decode`` also runs ``decode_batch``
on every batch (read+decode). ``--compiled both`` runs each file with the pure path
(``PCAPDIAG_COMPILED=0``) and the numba kernels (``=1``; loaded and, the first time,
compiled before timing), ``0`` / ``1`` only one of them, ``auto`` (default) leaves the
choice to the reader:

    python benchmarks/bench_reader.py --file /tmp/bench/large.pcap --decode --compiled both --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcapdiag.decode import decode_batch  # noqa: E402
from pcapdiag.reader import compiled_kernels, open_capture  # noqa: E402

CHUNK = 100_000  # records generated at a time (bounded memory)


def _pattern(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    pat = rng.integers(0, 256, 4099, dtype=np.uint8)  # compressible, period < 32 KiB window
    return np.resize(pat, n)


def _chunks(records: int, pcapng: bool) -> Iterator[bytes]:
    rng = np.random.default_rng(1)
    hdr = 28 if pcapng else 16
    done = 0
    while done < records:
        n = min(CHUNK, records - done)
        cap = rng.integers(60, 1501, n).astype(np.int64)
        pad = (-cap) % 4 if pcapng else np.zeros(n, np.int64)
        size = hdr + cap + pad + (4 if pcapng else 0)
        starts = np.zeros(n, np.int64)
        starts[1:] = np.cumsum(size)[:-1]
        buf = _pattern(int(size.sum()))
        idx = np.arange(done, done + n, dtype=np.int64)
        if pcapng:
            ts_us = 1_700_000_000_000_000 + idx * 10
            h = np.empty((n, 7), "<u4")
            h[:, 0] = 6
            h[:, 1] = size
            h[:, 2] = 0
            h[:, 3] = ts_us >> 32
            h[:, 4] = ts_us & 0xFFFFFFFF
            h[:, 5] = cap
            h[:, 6] = cap
            trailer = (starts + size - 4)[:, None] + np.arange(4)
            buf[trailer] = size.astype("<u4").view(np.uint8).reshape(n, 4)
        else:
            h = np.empty((n, 4), "<u4")
            h[:, 0] = 1_700_000_000 + idx // 100_000
            h[:, 1] = (idx % 100_000) * 10
            h[:, 2] = cap
            h[:, 3] = cap
        buf[starts[:, None] + np.arange(hdr)] = h.view(np.uint8).reshape(n, hdr)
        done += n
        yield buf.tobytes()


def write_pcap(path: Path, records: int) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for b in _chunks(records, pcapng=False):
            f.write(b)


def write_pcapng(path: Path, records: int) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        f.write(struct.pack("<IIHHII", 1, 20, 1, 0, 262144, 20))
        for b in _chunks(records, pcapng=True):
            f.write(b)


def write_gzip(src: Path, dst: Path) -> None:
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while b := fi.read(8 << 20):
            fo.write(z.compress(b))
        fo.write(z.flush())


def bench(path: Path, max_records: int, decode: bool = False) -> tuple[int, float, float, int]:
    """Records, wall seconds, CPU seconds, minor page faults of one full read (and decode)."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    n = 0
    with open_capture(str(path)) as cap:
        for batch in cap.batches(max_records):
            n += len(batch)
            if decode:
                decode_batch(batch)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return n, wall, cpu, r1.ru_minflt - r0.ru_minflt


def _modes(choice: str) -> list[str]:
    modes = {"both": ["0", "1"], "0": ["0"], "1": ["1"], "auto": [""]}[choice]
    if "1" in modes:
        os.environ["PCAPDIAG_COMPILED"] = "1"
        t = time.perf_counter()
        if compiled_kernels() is None:
            raise SystemExit("numba kernels unavailable (is numba installed?)")
        print(f"numba kernels loaded in {time.perf_counter() - t:.2f} s")
    return modes


def report(files: dict[str, Path], args: argparse.Namespace) -> None:
    what = "read+decode" if args.decode else "read"
    print(f"({what}; best of --repeat runs; M rec/s by wall clock and by CPU time of this process)")
    for kind, path in files.items():
        for mode in _modes(args.compiled):
            if mode:
                os.environ["PCAPDIAG_COMPILED"] = mode
            else:
                os.environ.pop("PCAPDIAG_COMPILED", None)
            runs = [bench(path, args.batch, args.decode) for _ in range(args.repeat)]
            n, wall, _, faults = min(runs, key=lambda r: r[1])
            cpu = min(r[2] for r in runs)
            mb = os.path.getsize(path) / 1e6
            label = {"0": "pure", "1": "compiled", "": "auto"}[mode]
            print(
                f"{kind:8s} {label:8s} {n:>10,} records  wall {wall:6.2f} s {n / wall / 1e6:5.2f} M rec/s"
                f"  cpu {cpu:6.2f} s {n / cpu / 1e6:5.2f} M rec/s  {mb / wall:6.0f} MB/s"
                f"  ({mb:,.0f} MB file, {faults:,} page faults)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs")
    ap.add_argument("--keep", help="write the files here and keep them")
    ap.add_argument("--file", action="append", help="time this capture (repeatable)")
    ap.add_argument("--decode", action="store_true", help="also decode every batch")
    ap.add_argument("--compiled", choices=["auto", "0", "1", "both"], default="auto")
    args = ap.parse_args()
    if args.file:
        report({Path(f).name: Path(f) for f in args.file}, args)
        return
    tmp = None
    if args.keep:
        out = Path(args.keep)
        out.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_reader_")
        out = Path(tmp.name)
    try:
        files = {"pcap": out / "big.pcap", "pcap.gz": out / "big.pcap.gz"}
        files["pcapng"] = out / "big.pcapng"
        t = time.perf_counter()
        if not files["pcap"].exists():
            write_pcap(files["pcap"], args.records)
        if not files["pcap.gz"].exists():
            write_gzip(files["pcap"], files["pcap.gz"])
        if not files["pcapng"].exists():
            write_pcapng(files["pcapng"], args.records)
        print(f"generated {args.records:,} records/file in {time.perf_counter() - t:.1f} s")
        report(files, args)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
