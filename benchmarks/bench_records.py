"""What a connection record costs after ``explain`` built it, stage by stage, in µs each.

    python benchmarks/bench_records.py CAPTURE [--records 125000] [--cache FILE] [--repeat 3]
    python benchmarks/bench_records.py CAPTURE --memory 500000

The records are the real ones of CAPTURE (``pcapdiag.analyze`` runs once; ``--cache``
keeps them in a pickle for the next run), replicated with new first frames up to
``--records`` when the capture has fewer. They arrive at the store in the order the
tracker finished them in the analysis (recorded with the cache; a cache of records only
is ordered as a tracker's sweeps roughly finish them): nearly the order of first frames.

  store   ``RecordStore.append`` of every record (the worker: runs, rows, compression)
  merge   ``Records.adopt`` of that store into the analysis's records (ids, facts, order)
  facts   ``CrossFacts.apply`` (retries, forged refusals) and ``idle_timeouts``
  json    ``report.data.write_json`` of the analysis to /dev/null (``--format json``)

Each stage is timed on its own (wall clock, collector paused as ``analyze`` pauses it,
best of ``--repeat``); ``total`` is their sum. ``--memory N`` instead streams N records
(copies of 20,000 of the capture's, made on the fly and dropped) through the four stages
and prints the peak RSS after each, over the baseline of the process (the copies' pool):
the stores must keep it flat (Linux: the peak is read from /proc).

An older tree without ``Records.adopt`` is measured the way its merge worked (a heap merge
of the stores' ``ordered()`` streams, ``CrossFacts.add`` and ``Records.append`` per
record): run this file with ``PYTHONPATH`` pointing at that tree to compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import heapq
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: an older tree there is measured

import pcapdiag  # noqa: E402
from pcapdiag import _store  # noqa: E402
from pcapdiag.analysis import Analysis  # noqa: E402
from pcapdiag.explain import ConnectionRecord, CrossFacts  # noqa: E402
from pcapdiag.report.data import write_json  # noqa: E402


def load(capture: Path, cache: Path | None) -> list[ConnectionRecord]:
    """The capture's records in the order the tracker finished them (the order its
    ``RecordStore`` got them), from ``cache`` when it exists."""
    if cache is not None and cache.exists():
        with open(cache, "rb") as f:
            got = pickle.load(f)
        if isinstance(got, tuple):
            records, ffs = got
        else:  # records only: finished in batches (sweeps), as a tracker roughly does
            return sorted(got, key=lambda r: (r.last_frame // 20_000, r.first_frame))
    else:
        ffs = []
        append = _store.RecordStore.append

        def spy(self: _store.RecordStore, rec: ConnectionRecord) -> None:
            ffs.append(rec.first_frame)
            append(self, rec)

        _store.RecordStore.append = spy  # type: ignore[method-assign]
        try:
            records = list(pcapdiag.analyze(capture).records)
        finally:
            _store.RecordStore.append = append  # type: ignore[method-assign]
        if cache is not None:
            with open(cache, "wb") as f:
                pickle.dump((records, ffs), f, protocol=5)
    rank = {ff: i for i, ff in enumerate(ffs)}
    return sorted(records, key=lambda r: rank.get(r.first_frame, len(rank)))


def copies(base: list[ConnectionRecord], n: int) -> Iterator[ConnectionRecord]:
    """``n`` records: ``base`` again and again, each round with first and last frames
    moved past the previous round's (the capture replayed after itself)."""
    span = max(r.last_frame for r in base) + 1
    k = 0
    while True:
        for r in base:
            if k == n:
                return
            shift = k // len(base) * span
            if shift:
                r = dataclasses.replace(
                    r, first_frame=r.first_frame + shift, last_frame=r.last_frame + shift
                )
            yield r
            k += 1


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.disable()
    try:
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out
    finally:
        gc.enable()


def merge(store: _store.RecordStore, facts: CrossFacts) -> _store.Records:
    """The store's records, as ``analysis.merge`` makes them from one set's store."""
    recs = _store.Records()
    if hasattr(recs, "adopt"):
        recs.adopt([store], facts)
    else:  # an older tree
        for rec in heapq.merge(store.ordered(), [], key=lambda r: r.first_frame):
            rec.id = len(recs)
            facts.add(rec)
            recs.append(rec)
    return recs


def stages(records: list[ConnectionRecord]) -> dict[str, float]:
    """Seconds per stage for these records (arriving in this order)."""
    out: dict[str, float] = {}

    def store() -> _store.RecordStore:
        s = _store.RecordStore()
        for r in records:
            s.append(r)
        return s

    out["store"], st = timed(store)
    facts = CrossFacts()

    out["merge"], recs = timed(lambda: merge(st, facts))

    def apply() -> list[Any]:
        facts.apply(recs)
        return facts.idle_timeouts()

    out["facts"], idle = timed(apply)
    analysis = Analysis(recs, [], idle)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        out["json"], _ = timed(lambda: write_json(analysis, sink))
    return out


def _status(field: str) -> float:
    """A ``/proc/self/status`` field, in MB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory(base: list[ConnectionRecord], n: int) -> None:
    """Peak RSS while N records (made on the fly) go through every stage: the peak is
    reset first (``/proc/self/clear_refs``), so the records loaded to copy from count
    only as the baseline."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status("VmRSS")
    peaks = []
    s = _store.RecordStore()
    for r in copies(base, n):
        s.append(r)
    peaks.append(("store", _status("VmHWM")))
    facts = CrossFacts()
    recs = merge(s, facts)
    del s
    peaks.append(("merge", _status("VmHWM")))
    facts.apply(recs)
    analysis = Analysis(recs, [], facts.idle_timeouts())
    del facts
    peaks.append(("facts", _status("VmHWM")))
    with open(os.devnull, "w", encoding="utf-8") as sink:
        write_json(analysis, sink)
    peaks.append(("json", _status("VmHWM")))
    print(f"{n:,} records, peak RSS over the baseline ({before:.0f} MB) after each stage:")
    for stage, peak in peaks:
        print(f"  {stage:6s} {peak - before:5.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--records", type=int, default=0, help="replicate up to this many")
    ap.add_argument("--cache", type=Path, help="pickle of the capture's records (made once)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory", type=int, default=0, metavar="N", help="peak RSS for N records")
    args = ap.parse_args()
    print(f"pcapdiag from {Path(pcapdiag.__file__).parent}")
    base = load(args.capture, args.cache)
    if args.memory:
        base = base[:20_000]  # the pool copies are made from (in the baseline)
        memory(base, args.memory)
        return
    n = max(args.records, len(base))
    records = list(copies(base, n))  # in arrival order (each copy after the last)
    del base
    print(f"{n:,} records of {args.capture.name}, best of {args.repeat}, µs per record:")
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for k, v in stages(records).items():
            best[k] = min(best.get(k, v), v)
    for k, v in best.items():
        print(f"  {k:6s} {v / n * 1e6:7.2f}")
    print(f"  {'total':6s} {sum(best.values()) / n * 1e6:7.2f}")


if __name__ == "__main__":
    main()
