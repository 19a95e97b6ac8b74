"""A SYN flood (random source ports, nothing answers): every connection is counted, the
rows stay few, and JSON, DataFrame and terminal agree on the totals. The packets are built
in code: this is the adversarial edge case, not a recording of a real failure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

import pcapdiag
from pcapdiag.analysis import FOLD_KEEP
from pcapdiag.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_flood import write_flood  # noqa: E402


def test_flood_is_counted_whole_and_folded(tmp_path: Path) -> None:
    n = 3_000
    path = tmp_path / "flood.pcap"
    write_flood(path, n, servers=2)
    a = pcapdiag.analyze(path)
    assert sum(r.count for r in a.records) == n
    assert a.by_outcome == {"syn_timeout": n}
    assert len(a.records) == 2 * (FOLD_KEEP + 1)  # per server: the first ones, then one row
    folded = [r for r in a.records if r.count > 1]
    assert sorted(r.count for r in folded) == [n // 2 - FOLD_KEEP] * 2
    assert all("folded into this row" in r.evidence for r in folded)
    df = a.connections
    assert int(df["count"].sum()) == n
    out = CliRunner().invoke(main, ["analyze", str(path), "--format", "json"])
    data = json.loads(out.output)
    assert data["summary"]["connections"] == n and data["summary"]["rows"] == len(a.records)
    table = CliRunner().invoke(main, ["analyze", str(path)]).output
    assert f"{n} TCP connections" in table and f"{n:,} connections" in table


def test_answered_connections_are_never_folded(tmp_path: Path) -> None:
    """Only SYN-only connections fold: the real samples (every one answered or a lone SYN)
    keep one row per connection."""
    samples = Path(__file__).resolve().parent.parent / "sample_pcaps"
    a = pcapdiag.analyze(samples)
    assert all(r.count == 1 for r in a.records)
