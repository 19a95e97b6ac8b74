"""How long each way out of an analysis takes on a big capture: the reports and the
notebook's tables, in one process, each with a digest of what it gave.

    python benchmarks/bench_outputs.py /tmp/bench/large.pcap [--repeat 2]

Analyses CAPTURE once (timed), then times, on that analysis:

  json         ``report.data.write_json`` (what ``--format json`` writes)
  csv          ``report.data.write_csv``
  terminal     ``report.terminal.render``, as piped (the default command's report)
  html         ``report.html.render`` (its footer's date left out of the digest)
  connections  ``analysis.connections``, a fresh analysis each time (the frame is cached)
  events       ``analysis.events``, likewise

The digest (sha256, first 12 hex digits) lets two trees be compared: run this with
``PYTHONPATH`` pointing at each, from a folder outside the checkout, alternately (this
machine's speed wanders minute to minute). Peak RSS of the process is printed last.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import resource
import time
from collections.abc import Callable
from typing import Any

import pcapdiag
from pcapdiag.report import data, html, terminal


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:12]


def _json(a: Any) -> str:
    out = io.StringIO()
    data.write_json(a, out)
    return out.getvalue()


def _csv(a: Any) -> str:
    out = io.StringIO()
    data.write_csv(a, out)
    return out.getvalue()


def _terminal(a: Any) -> str:
    out = io.StringIO()
    terminal.render(a, out)
    return out.getvalue()


def _html(a: Any) -> str:
    return re.sub(r" on \d{4}-\d\d-\d\d \d\d:\d\d UTC", "", html.render(a))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    t = time.perf_counter()
    analysis = pcapdiag.analyze(args.capture)
    print(f"analyze      {time.perf_counter() - t:6.2f} s  {len(analysis.records):,} records")
    reports: list[tuple[str, Callable[[Any], str]]] = [
        ("json", _json), ("csv", _csv), ("terminal", _terminal), ("html", _html),
    ]  # fmt: skip
    for name, run in reports:
        times, digest = [], ""
        for _ in range(args.repeat):
            t = time.perf_counter()
            text = run(analysis)
            times.append(time.perf_counter() - t)
            digest = _digest(text)
        print(f"{name:12} {min(times):6.2f} s  {digest}")
    del analysis
    for name in ("connections", "events"):  # cached by the analysis: a fresh one each time
        times, digest = [], ""
        for _ in range(args.repeat):
            a = pcapdiag.analyze(args.capture)
            t = time.perf_counter()
            frame = getattr(a, name)
            times.append(time.perf_counter() - t)
            digest = _digest(frame.to_csv())
            del a, frame
        print(f"{name:12} {min(times):6.2f} s  {digest}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"peak RSS     {peak} MB")


if __name__ == "__main__":
    main()
