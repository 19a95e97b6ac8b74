"""The Wireshark corpus (../shared/oracle/wireshark): read every capture, agree on closers.

``streams.csv`` holds tshark's facts per TCP stream. For every stream whose first FIN
Wireshark marked (``tcp.connection.fin_active``), the side we say sent the first FIN must
be Wireshark's; where the outcome was decided by that FIN, ``closed_by`` must name it too.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pcapdiag

FIN_DECIDED = {
    "server_close",
    "server_idle_close",
    "client_close",
    "server_close_after_request",
    "truncated_response",
}


def _streams(wireshark_dir: Path) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(wireshark_dir / "streams.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["file"]].append(row)
    return out


def _facts(wireshark_dir: Path) -> list[dict[str, str]]:
    with open(wireshark_dir / "facts.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _files(wireshark_dir: Path) -> list[str]:
    return sorted(p.name for p in (wireshark_dir / "captures").iterdir())


def test_every_capture_reads(wireshark_dir: Path) -> None:
    facts = {r["file"]: r for r in _facts(wireshark_dir)}
    for name in _files(wireshark_dir):
        a = pcapdiag.analyze(wireshark_dir / "captures" / name)
        assert not a.errors, f"{name}: {a.errors}"
        if name in facts:
            assert a.captures[0].packets == int(facts[name]["packets"]), name


def _first_fin_side(rec) -> str:
    fins = [(ts, side) for ts, _f, side, kind, _d in rec.events if kind == "fin"]
    return fins[0][1] if fins else ""


def test_closer_matches_fin_active(wireshark_dir: Path) -> None:
    streams = _streams(wireshark_dir)
    checked = 0
    wrong: list[str] = []
    for name, rows in sorted(streams.items()):
        a = pcapdiag.analyze(wireshark_dir / "captures" / name)
        by_first = {r.first_frame: r for r in a.records}
        for row in rows:
            side = row["ws_fin_active_side"]
            if not side:
                continue
            rec = by_first.get(int(row["first_frame"]))
            if rec is None:
                wrong.append(
                    f"{name} stream {row['tcp_stream']}: no connection starts at frame {row['first_frame']}"
                )
                continue
            if row["client_basis"] in ("syn", "synack"):
                assert rec.client.replace("[", "").replace("]", "") == row["client"].replace(
                    "[", ""
                ).replace("]", ""), (name, row["tcp_stream"])
            checked += 1
            ours = _first_fin_side(rec)
            if ours != side:
                wrong.append(
                    f"{name} stream {row['tcp_stream']}: wireshark fin_active={side} ours={ours}"
                )
            elif rec.outcome in FIN_DECIDED and rec.closed_by != side:
                wrong.append(
                    f"{name} stream {row['tcp_stream']}: closed_by={rec.closed_by} but {side} sent the first FIN"
                )
    print(f"Wireshark fin_active agreement: {checked - len(wrong)}/{checked}")
    assert checked >= 10
    assert not wrong, "\n".join(wrong)


def test_connections_are_tshark_streams(wireshark_dir: Path) -> None:
    """One connection per tcp.stream, starting and ending on the same frames, with the same
    packets and payload bytes in each direction (a fresh SYN on a reused 4-tuple splits)."""
    streams = _streams(wireshark_dir)
    compared = 0
    for name in _files(wireshark_dir):
        rows = streams.get(name, [])
        a = pcapdiag.analyze(wireshark_dir / "captures" / name)
        assert len(a.records) == len(rows), name
        by_first = {r.first_frame: r for r in a.records}
        for row in rows:
            rec = by_first[int(row["first_frame"])]
            got = (
                rec.last_frame,
                rec.client_packets + rec.server_packets,
                rec.client_bytes + rec.server_bytes,
            )
            want = (
                int(row["last_frame"]),
                int(row["packets"]),
                int(row["payload_c2s"]) + int(row["payload_s2c"]),
            )
            assert got == want, (name, row["tcp_stream"])
            if row["client_basis"] in ("syn", "synack"):
                assert (rec.client_packets, rec.client_bytes) == (
                    int(row["packets_c2s"]),
                    int(row["payload_c2s"]),
                )
            compared += 1
    print(f"tshark streams matched: {compared}")
    assert compared > 150
