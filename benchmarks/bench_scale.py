"""Does pcapdiag scale? Time and peak memory as the capture grows, with 1 and N processes.

    python benchmarks/bench_scale.py CAPTURE [--factors 1,2,4] [--jobs 1,2] [--keep DIR]

For each factor K the capture is written K times over, one copy after the other, each
shifted in time with its own client addresses (``record_load.scale_capture``: streamed,
never held in memory), and ``pcapdiag analyze COPY --format json -j J > /dev/null`` runs
under ``/usr/bin/time -v``. Printed per run: packets, wall time, packets/s, peak RSS of the
process tree (all workers summed), and time per packet relative to the smallest capture
(1.0 is linear scaling). A flat memory line means peak RSS does not follow K.

Record a capture first (``python benchmarks/record_load.py /tmp/bench/large.pcap``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_peers import count_packets, machine_facts, measure  # noqa: E402
from record_load import scale_capture  # noqa: E402

PCAPDIAG = str(Path(sys.executable).with_name("pcapdiag"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--factors", default="1,2,4", help="sizes, as multiples of CAPTURE")
    ap.add_argument("--jobs", default="1,2", help="process counts to run each size with")
    ap.add_argument("--keep", type=Path, help="write the scaled captures here and keep them")
    ap.add_argument("--timeout", type=float, default=7200.0)
    args = ap.parse_args()
    factors = [int(f) for f in args.factors.split(",")]
    jobs = [int(j) for j in args.jobs.split(",")]
    facts = machine_facts()
    print(f"Machine: {facts}")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pcapdiag-scale-", dir=args.keep))
    rows = []
    base: dict[int, float] = {}
    try:
        for k in factors:
            path = args.capture
            if k > 1:
                path = tmp / f"{args.capture.stem}.x{k}.pcap"
                if not path.exists():
                    scale_capture(args.capture, path, k)
            packets = count_packets(path)
            for j in jobs:
                argv = [PCAPDIAG, "analyze", str(path), "--format", "json", "-j", str(j)]
                with open("/dev/null", "wb") as sink:
                    wall, peak, code, tail = measure(argv, sink, args.timeout)
                per = wall / packets
                base.setdefault(j, per)
                rows.append((k, j, packets, wall, packets / wall, peak / 1e6, per / base[j]))
                print(
                    f"x{k} -j {j}: {packets:,} packets in {wall:.1f} s = {packets / wall:,.0f}/s, "
                    f"peak RSS {peak / 1e6:,.0f} MB" + (f" (exit {code}: {tail})" if code else ""),
                    flush=True,
                )
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| size | jobs | packets | wall s | packets/s | peak RSS MB | time per packet vs x1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, j, packets, wall, rate, rss, rel in rows:
        print(f"| x{k} | {j} | {packets:,} | {wall:.1f} | {rate:,.0f} | {rss:,.0f} | {rel:.2f} |")


if __name__ == "__main__":
    main()
