"""Where ``pcapdiag analyze CAPTURE --format json`` spends its wall time, stage by stage,
on the path a big capture takes (the fast lane, byte ranges with ``--jobs``).

    python benchmarks/profile_stages.py CAPTURE [--jobs N] [--repeat 3]

Stages, as wall time from the start of this process (the best of ``--repeat`` runs, each
in a fresh process, as the CLI runs):

  start       imports, and the compiled kernels (built ahead of time, ``pcapdiag._native``;
              with ``PCAPDIAG_NATIVE=0``, numba and its cached kernels)
  plan        the work cut into parts (with ``--jobs``: the byte ranges, ``Capture.spans``)
  first pass  read, decode and the fast lane's walk, then its connections as columns
  exact pass  the exact tracker on the 4-tuples the lane handed over, from a second read
  parts       with ``--jobs``, instead of the two passes: the processes' work (byte
              ranges through the fast lane, then shards of the exact tracker)
  merge       the parts' records put in id order, cross-connection facts
  json        ``write_json`` to /dev/null (with ``--jobs``, by forked processes)

Also printed: peak RSS of the process (the workers' own peaks with ``--jobs``). The stage
borders are found by wrapping the functions that start them, in this process only: the
numbers are what the CLI pays, within a few milliseconds.

With ``--jobs``, the best run's timeline too: when each part ran (a byte range from its
first byte, or an exact shard) and where the walk cut the file, on the same clock
(``time.perf_counter`` is the system's monotonic clock, shared by the forked workers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, os, resource, sys, time
T0 = time.perf_counter()
marks = {}
def mark(name):
    marks[name] = time.perf_counter() - T0
from pcapdiag import _fastlane, analysis
from pcapdiag.report import data
path, jobs = sys.argv[1], int(sys.argv[2])
if _fastlane.worth_it(os.path.getsize(path)):
    _fastlane.kernels()
mark("start")
plan, run_part, merge = analysis.plan, analysis.run_part, analysis.merge
def timed_plan(*a, **kw):
    out = plan(*a, **kw)
    mark("plan")
    return out
end = analysis._Chain.end
def timed_end(self):
    if self.lane is not None:
        mark("first pass")
    end(self)
    if self.tracker is None and self.set is not None:
        mark("exact pass")
def timed_merge(*a):
    mark("parts")
    out = merge(*a)
    mark("merge")
    return out
analysis.plan, analysis.merge = timed_plan, timed_merge
analysis._Chain.end = timed_end
run_part, cuts = analysis.run_part, analysis.reader.Capture.cuts
def timed_part(part, *a):
    t = time.perf_counter() - T0
    out = run_part(part, *a)
    kind = f"exact shard {part.shard}" if part.exact else (
        f"range from byte {part.span[0]:,}" if part.span else f"shard {part.shard}")
    print(f"TIMELINE {t:.3f} {time.perf_counter() - T0:.3f} {kind}", file=sys.stderr, flush=True)
    return out
def timed_cuts(self, targets):
    t = time.perf_counter() - T0
    for cut in cuts(self, targets):
        if cut is not None:
            at = time.perf_counter() - T0
            print(f"TIMELINE {t:.3f} {at:.3f} walk to the cut at byte {cut[0]:,}", file=sys.stderr, flush=True)
        yield cut
analysis.run_part, analysis.reader.Capture.cuts = timed_part, timed_cuts
result = analysis.analyze(path, jobs=jobs)
with open(os.devnull, "w", encoding="utf-8") as out:
    data.write_json(result, out, jobs=jobs)
mark("json")
marks["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
marks["children_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(marks))
"""


def run_once(capture: Path, jobs: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(capture), str(jobs)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    marks: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    marks["timeline"] = sorted(
        (float(a), float(b), what)
        for line in out.stderr.splitlines()
        if line.startswith("TIMELINE ")
        for a, b, what in [line.split(" ", 3)[1:]]
    )
    return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = [run_once(args.capture, args.jobs) for _ in range(args.repeat)]
    best = min(runs, key=lambda m: m["json"])
    size = os.path.getsize(args.capture)
    print(f"{args.capture} ({size / 1e6:,.0f} MB), --jobs {args.jobs}, best of {args.repeat}")
    print(f"{'stage':<12} {'ends at s':>9} {'takes s':>8}")
    prev = 0.0
    order = ["start", "plan", "first pass", "exact pass", "parts", "merge", "json"]
    for name in order:
        if name not in best or (name == "parts" and "exact pass" in best):
            continue
        at = best[name]
        print(f"{name:<12} {at:>9.2f} {at - prev:>8.2f}")
        prev = at
    rss = f"peak RSS: {best['rss_mb']:.0f} MB"
    if args.jobs != 1:
        rss += f" (each worker at most {best['children_rss_mb']:.0f} MB, pages shared by fork included)"
    print(rss)
    print("all runs, total s:", ", ".join(f"{m['json']:.2f}" for m in runs))
    if args.jobs != 1 and best["timeline"]:
        print("timeline of the best run (s from the start):")
        for a, b, what in best["timeline"]:
            print(f"  {a:6.3f} -> {b:6.3f}  {what}")


if __name__ == "__main__":
    main()
