"""The fast lane on one capture: how much of it the lane replayed, why the rest went to
the exact tracker, and the time with the lane and without it (same output, checked).

    python benchmarks/bench_fastlane.py CAPTURE [--no-exact]

Times are wall time of ``pcapdiag.analyze`` plus ``write_json`` to /dev/null, one run
each, in this process (numba's import and its cached kernels are loaded before timing:
``--format json`` from the CLI pays about 1 s more for them).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pcapdiag  # noqa: E402
from pcapdiag import _fastlane  # noqa: E402
from pcapdiag.report import data  # noqa: E402


def run(path: str, lane: bool, stats: Counter[str]) -> tuple[float, str, int, int]:
    os.environ["PCAPDIAG_FASTLANE"] = "1" if lane else "0"
    t = time.perf_counter()
    a = pcapdiag.analyze(path)
    buf = io.StringIO()
    data.write_json(a, buf)
    wall = time.perf_counter() - t
    digest = hashlib.sha256(buf.getvalue().encode()).hexdigest()[:16]
    packets = sum(c.tcp_packets for c in a.captures)
    return wall, digest, packets, len(a.records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--no-exact", action="store_true", help="skip the run without the lane")
    args = ap.parse_args()
    if _fastlane.kernels() is None:
        sys.exit("numba is not available: no fast lane")
    stats: Counter[str] = Counter()
    replayed = [0]
    resumed = [0]
    close = _fastlane.Lane.close

    def counting(self: _fastlane.Lane):  # type: ignore[no-untyped-def]
        out = close(self)
        replayed[0] += self.replayed
        resumed[0] += self.resumed
        stats.update(self.why)
        return out

    _fastlane.Lane.close = counting  # type: ignore[method-assign]
    wall, digest, packets, conns = run(args.capture, True, stats)
    print(f"{args.capture}: {packets:,} TCP packets, {conns:,} connections")
    print(f"fast lane: {wall:.2f} s, {packets / wall:,.0f} packets/s (json sha256 {digest})")
    print(
        f"  replayed by the lane: {replayed[0]:,} connections ({replayed[0] / max(conns, 1):.1%})"
    )
    for why, n in stats.most_common():
        print(f"  handed to the exact tracker: {n:>8,}  {why}")
    print(f"  4-tuples the lane took back at a fresh SYN: {resumed[0]:,}")
    if not args.no_exact:
        wall0, digest0, _, _ = run(args.capture, False, Counter())
        same = "same output" if digest0 == digest else "OUTPUT DIFFERS"
        print(f"exact only: {wall0:.2f} s, {packets / wall0:,.0f} packets/s ({same})")


if __name__ == "__main__":
    main()
