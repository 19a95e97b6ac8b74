"""Where the fast lane's second pass (``analysis._Chain._exact_pass``) spends its time.

    python benchmarks/bench_exact_pass.py /tmp/bench/large.pcap [--repeat 3] [--profile]
    python benchmarks/bench_exact_pass.py CAPTURE --save-flagged /tmp/flagged.npy
    python benchmarks/bench_exact_pass.py CAPTURE --flagged /tmp/flagged.npy --digest

Runs ``pcapdiag.analyze(CAPTURE)`` in this process with the fast lane on (the first run
after a change to ``_fastlane*.py`` compiles its kernels, ~25 s) and times the calls of
``_exact_pass`` only: its wall time, and the own time (callees excluded) of each step:

  tape      the first pass's tape read back (``_tape``; ``--no-tape``: the file is
            read again instead)
  read      the reader's records by offset (``Capture.records``), or its batches
  decode    ``decode.decode_batch``
  dups      ``decode.duplicates`` (and the interface lookup before it is in ``other``)
  hash      ``_fastlane.packet_hashes``
  feed      ``Tracker.feed``: the per-packet loop of the fed packets
  sweep     ``Tracker.sweep`` (the table walk; finishing is under ``finish``)
  finish    ``Tracker._finish`` (flushing, the end event, storing or folding the record)
  explain   ``explain`` of the finished connections (the records the merge keeps)
  other     the rest of ``_exact_pass``: filters, ``take``, the loop itself

``--flagged`` replaces the fast lane's list of handed-over 4-tuple hashes with a saved one
(``--save-flagged``), so that the exact pass can be compared across trees whatever the
fast lane hands over. ``--digest`` prints a sha256 of what the exact tracker produced
(its records, folds and TLS list, after ``Tracker.close``): the same flagged list must
give the same digest before and after a change to the exact pass.

On large.pcap (2.75 M packets, 5,869 4-tuples handed over, 126 k packets fed) the pass
took ~3.3 s: feeding those packets ~1.9 s (14 µs a packet, as in an exact-only run),
reading the 1.6 GB again ~0.6 s, explain + finish + sweeps ~0.6 s, the rest ~0.2 s.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pcapdiag import _fastlane, _tape, analysis, connections, decode, reader  # noqa: E402

STEPS = ("tape", "read", "decode", "dups", "hash", "feed", "sweep", "finish", "explain")


class Clock:
    """Own times of nested timed calls (a callee's time is not its caller's)."""

    def __init__(self) -> None:
        self.own: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.stack: list[list[float]] = []  # [start, time of timed callees]
        self.on = False

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*a: Any, **kw: Any) -> Any:
            if not self.on:
                return fn(*a, **kw)
            self.stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*a, **kw)
            finally:
                t0, inner = self.stack.pop()
                took = time.perf_counter() - t0
                self.own[name] += took - inner
                self.calls[name] += 1
                if self.stack:
                    self.stack[-1][1] += took

        return timed

    def wrap_iter(self, name: str, fn: Callable) -> Callable:
        """A generator function: each ``next`` is timed."""

        def timed(*a: Any, **kw: Any) -> Any:
            it = iter(fn(*a, **kw))
            while True:
                item = self.wrap(name, next)(it, None)
                if item is None:
                    return
                yield item

        return timed


def digest(made: list[Any], rset: analysis.SetResult) -> str:
    """Of the records ``explain`` made (in order), the folds and the TLS list of a set."""
    h = hashlib.sha256()
    for rec in made + rset.folds.records():
        h.update(json.dumps(rec.to_json(), sort_keys=True, default=str).encode())
    for t in rset.tls_seen:
        h.update(repr((t.ckey, t.first_frame, t.last_frame, t.client_random)).encode())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile one exact pass")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--save-flagged", metavar="NPY")
    ap.add_argument("--flagged", metavar="NPY", help="use this flagged list instead")
    ap.add_argument("--digest", action="store_true")
    ap.add_argument("--no-tape", action="store_true", help="read the capture again instead")
    args = ap.parse_args()
    os.environ.setdefault("PCAPDIAG_FASTLANE", "1")

    clk = Clock()
    reader.Capture.batches = clk.wrap_iter("read", reader.Capture.batches)  # type: ignore[method-assign]
    reader.Capture.records = clk.wrap("read", reader.Capture.records)  # type: ignore[method-assign]
    _tape.Tape.batches = clk.wrap_iter("tape", _tape.Tape.batches)  # type: ignore[method-assign]
    decode.decode_batch = clk.wrap("decode", decode.decode_batch)
    decode.duplicates = clk.wrap("dups", decode.duplicates)
    _fastlane.packet_hashes = clk.wrap("hash", _fastlane.packet_hashes)
    Tracker = connections.Tracker
    Tracker.feed = clk.wrap("feed", Tracker.feed)  # type: ignore[method-assign]
    Tracker.sweep = clk.wrap("sweep", Tracker.sweep)  # type: ignore[method-assign]
    Tracker._finish = clk.wrap("finish", Tracker._finish)  # type: ignore[method-assign]
    made: list[Any] = []  # the records of the exact tracker, for ``--digest``
    explain = clk.wrap("explain", analysis.explain)

    def explain_kept(*a: Any, **kw: Any) -> Any:
        rec = explain(*a, **kw)
        if collect:
            made.append(rec)
        return rec

    analysis.explain = explain_kept
    collect = False

    walls: list[float] = []
    digests: list[str] = []
    profiler: cProfile.Profile | None = None
    exact = analysis._Chain._exact_pass
    end = analysis._Chain.end

    def timed_exact(self: analysis._Chain, tracker: Any, handed: Any, tape: Any) -> None:
        nonlocal profiler, collect
        collect = args.digest
        if args.save_flagged:
            np.save(args.save_flagged, handed.windows)
        if args.flagged:
            handed = analysis._Handed(np.load(args.flagged))
        print(
            f"  {len(handed.flagged):,} flagged 4-tuples in {len(handed.windows):,} windows,"
            f" {len(handed.ends):,} ending at a SYN the lane took back",
            file=sys.stderr,
        )
        clk.on = True
        if args.profile and profiler is None:
            profiler = cProfile.Profile()
            profiler.enable()
        t0 = time.perf_counter()
        try:
            exact(self, tracker, handed, None if args.no_tape else tape)
        finally:
            walls.append(time.perf_counter() - t0)
            clk.on = False
            if profiler is not None:
                profiler.disable()

    def end_digest(self: analysis._Chain) -> None:
        nonlocal collect
        rset = self.set
        end(self)
        collect = False
        if args.digest and rset is not None and made:
            digests.append(digest(made, rset))
            made.clear()

    analysis._Chain._exact_pass = timed_exact  # type: ignore[method-assign]
    analysis._Chain.end = end_digest  # type: ignore[method-assign]

    for r in range(args.repeat):
        clk.own.clear()
        clk.calls.clear()
        t0 = time.perf_counter()
        res = analysis.analyze(args.capture)
        total = time.perf_counter() - t0
        wall = sum(walls[-1:])
        print(f"run {r + 1}: analyze {total:.2f} s, {len(res.records):,} rows; "
              f"_exact_pass {wall:.2f} s")  # fmt: skip
        for name in STEPS:
            print(f"  {name:<8} {clk.own[name]:6.2f} s  {clk.calls[name]:>9,} calls")
        print(f"  {'other':<8} {wall - sum(clk.own.values()):6.2f} s")
        if digests:
            print(f"  exact tracker output sha256 {digests[-1]}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
