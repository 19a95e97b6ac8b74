"""The pandas API (``Analysis.connections`` / ``events`` / ``packets``) and the rich display.

Values are checked against what is known independently of pcapdiag: the recorded
``sample_pcaps/manifest.json`` (what each scenario really did), packets read with dpkt,
and tshark's view of crafted captures written down as literals.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapbuild import Conversation, write_pcap
from test_samples import expected, hidden_h2

import pcapdiag
from pcapdiag import frames

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())
KEYLOGS = sorted(SAMPLES.glob("*.keys"))  # every key log the recorded clients wrote
BY_FILE = {e["file"]: e for e in MANIFEST}
ETHERNET = [e["file"] for e in MANIFEST if e["link_type"].startswith("EN10MB")]
RACE = "server_close_after_request-stdlib-keepalive_race.pcap"


@functools.cache
def analysis(name: str) -> pcapdiag.Analysis:
    return pcapdiag.analyze(SAMPLES / name)


def _no_tcp_capture(path: Path) -> Path:
    """Ethernet + IPv4 + UDP (DNS-looking) frames only: not one TCP segment."""
    frames_ = []
    for i in range(3):
        udp = struct.pack("!HHHH", 53000 + i, 53, 8 + 12, 0) + b"\x12\x34" + b"\0" * 10
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
            socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"),
        )  # fmt: skip
        eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
        frames_.append((1_700_000_000.0 + i, eth + ip + udp))
    return write_pcap(path, frames_)


# -- schema ----------------------------------------------------------------------------------
def test_connections_have_the_declared_dtypes() -> None:
    df = pcapdiag.analyze(SAMPLES).connections
    assert list(df.columns) == list(frames.CONNECTION_SCHEMA)
    assert df.index.name == "id" and str(df.index.dtype) == "Int64"
    assert df.index.is_unique
    assert dict(df.dtypes) == frames.connection_dtypes()
    # the contract spelled out, not only "equal to itself"
    for col in ("start", "end", "close_time"):
        assert str(df[col].dtype) == "datetime64[ns, UTC]"
    for col in ("client_port", "server_port"):
        assert str(df[col].dtype) == "UInt16"
    for col in ("close_frame", "client_packets", "server_bytes", "requests", "first_frame",
                "last_frame", "errno", "retry_of", "syn_count"):  # fmt: skip
        assert str(df[col].dtype) == "Int64", col
    for col in ("duration_s", "idle_before_close_s", "rtt_ms"):
        assert df[col].dtype == np.float64
    for col in ("capture", "client", "server", "evidence", "tls_alert", "cause", "fix"):
        assert df[col].dtype == pd.StringDtype("python"), col
    assert str(df["keepalive_race"].dtype) == "boolean"
    assert list(df["outcome"].cat.categories) == list(pcapdiag.OUTCOMES)
    assert list(df["closed_by"].cat.categories) == ["client", "server", "network", "none"]
    assert list(df["handshake"].cat.categories) == ["full", "partial", "none"]
    assert isinstance(df["zeek_conn_state"].dtype, pd.CategoricalDtype)


def test_value_counts_list_every_outcome() -> None:
    df = analysis(RACE).connections
    counts = df["outcome"].value_counts(sort=False)
    assert list(counts.index) == list(pcapdiag.OUTCOMES)
    assert counts["server_close_after_request"] == 1
    assert counts.sum() == 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda tmp: pcapdiag.analyze(_no_tcp_capture(tmp / "udp.pcap")), id="no-tcp"),
        pytest.param(lambda tmp: pcapdiag.analyze(SAMPLES / RACE, host="192.0.2.1"), id="filtered"),
    ],
)
def test_empty_analysis_gives_empty_frames_with_every_column(make, tmp_path: Path) -> None:
    a = make(tmp_path)
    assert not a.records
    full = pcapdiag.analyze(SAMPLES / "keepalive-idle-requests.pcap")
    for empty, reference in (
        (a.connections, full.connections),
        (a.events, full.events),
        (a.problems_df, full.problems_df),
    ):
        assert len(empty) == 0
        assert list(empty.columns) == list(reference.columns)
        assert dict(empty.dtypes) == dict(reference.dtypes)
        assert empty.index.dtype == reference.index.dtype
    assert a.connections["outcome"].value_counts(sort=False).sum() == 0
    assert "0 TCP connections" in repr(a)
    assert "0 TCP connections" in a._repr_html_()


def test_events_schema_and_order() -> None:
    a = analysis("keepalive-idle-httpx-v6.pcapng")
    ev = a.events
    assert list(ev.columns) == list(frames.EVENT_SCHEMA)
    assert dict(ev.dtypes) == frames.event_dtypes()
    assert list(ev["kind"].cat.categories)[:4] == ["syn", "synack", "fin", "rst"]
    assert set(ev["conn_id"]) == set(a.connections.index)
    assert (ev["t_s"] >= 0).all()
    # in order within each connection; idle gaps are no packet
    assert ev.groupby("conn_id")["time"].apply(lambda s: s.is_monotonic_increasing).all()
    assert ev.loc[ev["kind"] == "idle_gap", "frame"].isna().all()
    # joins with connections on the id
    joined = ev.merge(a.connections[["outcome"]], left_on="conn_id", right_index=True)
    assert len(joined) == len(ev)


def test_packets_schema() -> None:
    a = analysis(RACE)
    p = a.packets(0)
    assert list(p.columns) == list(frames.PACKET_SCHEMA)
    assert dict(p.dtypes) == frames.packet_dtypes()


# -- values against the manifest -------------------------------------------------------------
@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_connection_rows_match_the_manifest(entry: dict) -> None:
    df = analysis(entry["file"]).connections.sort_values("first_frame")
    want = expected(SAMPLES, entry, keyed=False)  # keyless: what TLS hides stays hidden
    got = list(zip(df["outcome"], df["closed_by"], strict=True))
    if hidden_h2(SAMPLES, entry):
        got, want = [c for _, c in got], [c for _, c in want]
    assert got == want
    assert set(df["server"]) == {entry["server"]}
    assert set(df["client_ip"]) == {entry["client_address"]}
    server_port = int(entry["server"].rsplit(":", 1)[1])
    assert (df["server_port"] == server_port).all()
    if entry.get("icmp_from"):
        assert set(df["icmp_sender"].dropna()) == {entry["icmp_from"]}
    if entry.get("server_idle_timeout_s") is not None:
        idle = df.loc[df["outcome"] == "server_idle_close", "idle_before_close_s"]
        assert ((idle - entry["server_idle_timeout_s"]).abs() < 0.1).all()
    errnos = {
        d["errno"] for d in (entry.get("exception") or {}).get("chain_detail", []) if d["errno"]
    }
    problems = df[df["outcome"].isin(list(pcapdiag.PROBLEMS))]
    if errnos and problems["errno"].notna().any():
        assert set(problems["errno"].dropna()) <= errnos


def test_tls_alert_column_names_the_alert() -> None:
    name = "tls_alert-requests-protocol_version.pcap"
    assert "protocol_version" in BY_FILE[name]["scenario"]
    df = analysis(name).connections
    assert list(df["tls_alert"]) == ["protocol_version"]
    assert list(df["closed_by"]) == [c["closed_by"] for c in BY_FILE[name]["connections"]]


def test_times_are_the_packet_times(tmp_path: Path) -> None:
    """``start``/``end`` are the first/last packet times as dpkt reads them (UTC)."""
    for name in (RACE, "keepalive-idle-httpx-v6.pcapng"):
        times = [ts for ts, _ in _dpkt_packets(SAMPLES / name)]
        df = analysis(name).connections
        first = pd.Timestamp(min(times), unit="s", tz="UTC")
        assert abs(df["start"].min() - first) < pd.Timedelta(microseconds=2)
        assert str(df["start"].dt.tz) == "UTC"


# -- packets() against dpkt ------------------------------------------------------------------
def _dpkt_packets(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        rdr = dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        return [(float(ts), bytes(buf)) for ts, buf in rdr]


def _dpkt_tcp(path: Path) -> list[dict]:
    """Every TCP segment of an Ethernet capture, decoded by dpkt (frame numbers from 1)."""
    out = []
    for frame, (_ts, buf) in enumerate(_dpkt_packets(path), start=1):
        ip = dpkt.ethernet.Ethernet(buf).data
        if isinstance(ip, dpkt.ip.IP):
            src, dst, ttl = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst), ip.ttl  # fmt: skip
        elif isinstance(ip, dpkt.ip6.IP6):
            src, dst, ttl = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst), ip.hlim  # fmt: skip
        else:
            continue
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        out.append(
            {
                "frame": frame, "src": src, "dst": dst, "sport": tcp.sport, "dport": tcp.dport,
                "flags": tcp.flags, "seq": tcp.seq, "ack": tcp.ack, "win": tcp.win, "ttl": ttl,
                "payload_len": len(tcp.data),  # dpkt trims to the IP length
            }
        )  # fmt: skip
    return out


@pytest.mark.parametrize("name", ETHERNET)
def test_packets_match_dpkt(name: str) -> None:
    a = analysis(name)
    segs = _dpkt_tcp(SAMPLES / name)
    seen: list[int] = []
    for r in a.records:
        p = a.packets(r.id)
        mine = [
            s for s in segs
            if r.first_frame <= s["frame"] <= r.last_frame
            and {(s["src"], s["sport"]), (s["dst"], s["dport"])}
            == {(r.client_ip, r.client_port), (r.server_ip, r.server_port)}
        ]  # fmt: skip
        assert list(p["frame"]) == [s["frame"] for s in mine]
        assert list(p["side"]) == [
            "client" if (s["src"], s["sport"]) == (r.client_ip, r.client_port) else "server"
            for s in mine
        ]
        assert list(p["flags"]) == [frames.flags_text(s["flags"]) for s in mine]
        assert list(p["payload_len"]) == [s["payload_len"] for s in mine]
        assert list(p["window"]) == [s["win"] for s in mine]
        assert list(p["ttl"]) == [s["ttl"] for s in mine]
        # relative numbers: from each side's SYN when it was captured
        isn = {
            side: next((s["seq"] for s, sd in zip(mine, p["side"], strict=True)
                        if sd == side and s["flags"] & dpkt.tcp.TH_SYN), None)
            for side in ("client", "server")
        }  # fmt: skip
        for s, side, seq_rel, ack_rel in zip(mine, p["side"], p["seq_rel"], p["ack_rel"], strict=True):  # fmt: skip
            other = "server" if side == "client" else "client"
            if isn[side] is not None:
                assert seq_rel == (s["seq"] - isn[side]) % 2**32
            if isn[other] is not None and s["flags"] & dpkt.tcp.TH_ACK:
                assert ack_rel == (s["ack"] - isn[other]) % 2**32
            if not s["flags"] & dpkt.tcp.TH_ACK:
                assert ack_rel is pd.NA
        seen.extend(p["frame"])
    # every TCP segment of the capture belongs to exactly one connection
    assert sorted(seen) == [s["frame"] for s in segs]


def test_packets_count_matches_tshark_literal() -> None:
    # `tshark -r sample_pcaps/server_close_after_request-stdlib-keepalive_race.pcap -Y tcp | wc -l`
    # printed 11 when this test was written; flags from `-T fields -e tcp.flags.str`.
    p = analysis(RACE).packets(0)
    assert len(p) == 11
    assert list(p["flags"]) == ["S", "SA", "A", "PA", "A", "PA", "A", "FA", "A", "PA", "R"]
    assert list(p["side"])[-1] == "server"
    # the keepalive-idle capture: `tshark -Y tcp | wc -l` = 42 over three connections
    a = analysis("keepalive-idle-requests.pcap")
    assert sum(len(a.packets(i)) for i in a.connections.index) == 42


def test_relative_sequence_numbers_like_wireshark(tmp_path: Path) -> None:
    """Crafted captures, numbers as ``tshark -T fields -e tcp.seq -e tcp.ack`` showed them:
    across the 2**32 wrap, and mid-stream without a SYN (Wireshark then starts at 1)."""
    body = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    c = Conversation(cseq=2**32 - 5, sseq=7000).handshake()
    c.client_sends(body).server_sends(resp).client_fin().server_fin()
    a = pcapdiag.analyze(write_pcap(tmp_path / "wrap.pcap", c.packets))
    p = a.packets(0)
    assert list(p["seq_rel"]) == [0, 0, 1, 1, 1, 28, 41]
    assert list(p["ack_rel"].fillna(-1)) == [-1, 1, 1, 1, 28, 41, 29]
    assert list(p["flags"]) == ["S", "SA", "A", "PA", "PA", "FA", "FA"]

    c = Conversation(cseq=2**32 - 5, sseq=7000)
    c.client_sends(body).server_sends(resp).client_sends(body + b"x").server_fin()
    a = pcapdiag.analyze(write_pcap(tmp_path / "mid.pcap", c.packets))
    p = a.packets(0)
    assert list(p["seq_rel"]) == [1, 1, 28, 41]
    assert list(p["ack_rel"]) == [1, 28, 41, 56]


def test_packets_unknown_id() -> None:
    with pytest.raises(KeyError, match="no connection"):
        analysis(RACE).packets(99)


# -- several captures ------------------------------------------------------------------------
@functools.cache
def _rows(name: str) -> int:
    return len(analysis(name).connections)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(BY_FILE)), min_size=1, max_size=6, unique=True))
def test_any_subset_of_captures_concatenates(names: list[str]) -> None:
    a = pcapdiag.analyze([SAMPLES / n for n in names])
    df = a.connections
    assert len(df) == sum(_rows(n) for n in names)
    assert list(df.index) == list(range(len(df)))
    assert dict(df.dtypes) == frames.connection_dtypes()
    per_capture = df.groupby("capture", sort=False).size()
    assert [Path(c).name for c in per_capture.index] == [n for n in names if _rows(n)]
    assert list(per_capture) == [_rows(n) for n in names if _rows(n)]
    assert dict(a.events.dtypes) == frames.event_dtypes()
    assert set(a.events["conn_id"]) <= set(df.index)


def test_problems_df_is_the_problem_rows() -> None:
    a = pcapdiag.analyze(SAMPLES, keylog=KEYLOGS)
    pdf = a.problems_df
    assert list(pdf.index) == [r.id for r in a.problems]
    assert set(pdf["outcome"]) <= pcapdiag.PROBLEMS
    want = sum(
        1 for e in MANIFEST for o, _ in expected(SAMPLES, e, keyed=True) if o in pcapdiag.PROBLEMS
    )
    assert len(pdf) == want


def test_frames_are_copies() -> None:
    a = pcapdiag.analyze(SAMPLES / RACE)
    df = a.connections
    df["mine"] = 1
    df.loc[0, "evidence"] = "changed"
    assert "mine" not in a.connections.columns
    assert a.connections.loc[0, "evidence"] != "changed"


# -- display ---------------------------------------------------------------------------------
HOSTILE = b"GET /<script>alert('x')</script>&amp; HTTP/1.1\r\nHost: <b>h</b>\r\n\r\n"


def test_html_is_escaped_and_problems_come_first(tmp_path: Path) -> None:
    conv = Conversation().handshake().client_sends(HOSTILE).server_fin(dt=0.0002)
    a = pcapdiag.analyze(write_pcap(tmp_path / "hostile.pcap", conv.packets))
    assert a.connections.loc[0, "last_request"].startswith("GET /<script>")
    page = a._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    view = a.connection(0)
    assert "<script>" not in view._repr_html_()
    assert "&lt;script&gt;" in view._repr_html_()

    big = pcapdiag.analyze(SAMPLES, keylog=KEYLOGS)
    page = big._repr_html_()
    assert page.count("<tr>") == 1 + 20  # header + at most 20 rows
    assert f"… and {len(big.records) - 20} more" in page
    first_rows = page.split("<tbody>")[1].split("</tr>")[:20]
    assert all("pcapdiag-problem" in row for row in first_rows)
    races = sum(
        1
        for e in MANIFEST
        for o, _ in expected(SAMPLES, e, keyed=True)
        if o == "server_close_after_request"
    )
    assert f"{races} server_close_after_request" in page
    text = repr(big)
    assert text.startswith("<pcapdiag.Analysis>")
    assert "Idle timeout:" in text


def test_connection_view() -> None:
    a = analysis(RACE)
    v = a.connection(0)
    assert v.record is a.records[0]
    assert v.outcome == "server_close_after_request" and v.keepalive_race
    assert "RemoteDisconnected" in v.client_errors["stdlib"]
    html = v._repr_html_()
    for text in ("Likely cause", "Fix", "RemoteDisconnected", "Keep-alive race"):
        assert text in html
    assert "RemoteDisconnected" in repr(v)
    assert len(v.packets()) == 11
    with pytest.raises(KeyError):
        a.connection(5)


# -- delegation to the report modules ---------------------------------------------------------
def test_figures_and_report_delegate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import types

    calls: list[tuple] = []
    figs = types.ModuleType("pcapdiag.report.figures")
    figs.timeline = lambda analysis, **kw: calls.append(("timeline", analysis, kw)) or "T"  # type: ignore[attr-defined]
    figs.ladder = lambda record, **kw: calls.append(("ladder", record, kw)) or "L"  # type: ignore[attr-defined]
    rep = types.ModuleType("pcapdiag.report.html")
    rep.write_report = lambda analysis, target: calls.append(("html", analysis, target))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pcapdiag.report.figures", figs)
    monkeypatch.setitem(sys.modules, "pcapdiag.report.html", rep)
    a = analysis(RACE)
    assert a.timeline(width=5) == "T"
    assert a.ladder(0, max_events=9) == "L"
    a.to_html(tmp_path / "r.html")
    assert calls == [
        ("timeline", a, {"width": 5}),
        ("ladder", a.records[0], {"max_events": 9}),
        ("html", a, tmp_path / "r.html"),
    ]


def test_real_figures() -> None:
    pytest.importorskip("pcapdiag.report.figures", reason="pcapdiag.report.figures not built yet")
    from matplotlib.figure import Figure

    a = analysis(RACE)
    assert isinstance(a.timeline(), Figure)
    assert isinstance(a.ladder(0), Figure)
    assert isinstance(a.connection(0).ladder(), Figure)


def test_real_html_report(tmp_path: Path) -> None:
    pytest.importorskip("pcapdiag.report.html", reason="pcapdiag.report.html not built yet")
    a = analysis(RACE)
    out = tmp_path / "report.html"
    a.to_html(out)
    text = out.read_text()
    assert "server_close_after_request" in text


# -- lazy imports ----------------------------------------------------------------------------
def _imported(args: list[str]) -> set[str]:
    """Top-level packages a fresh interpreter imported (``-X importtime`` lists each one)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "pcapdiag" in names
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "import pcapdiag"],
        ["-m", "pcapdiag.cli", "--help"],
        ["-m", "pcapdiag.cli", "analyze", "--help"],
    ],
    ids=["import", "help", "analyze-help"],
)
def test_pandas_and_matplotlib_are_not_imported(args: list[str]) -> None:
    names = _imported(args)
    assert "pandas" not in names
    assert "matplotlib" not in names


def test_repr_needs_neither_pandas_nor_matplotlib() -> None:
    code = (
        "import sys, pcapdiag\n"
        f"a = pcapdiag.analyze({str(SAMPLES / RACE)!r})\n"
        "repr(a); a._repr_html_(); repr(a.connection(0)); a.connection(0)._repr_html_()\n"
        "assert 'pandas' not in sys.modules and 'matplotlib' not in sys.modules, 'imported'\n"
        "a.connections\n"
        "assert 'pandas' in sys.modules\n"
    )
    names = _imported(["-c", code])
    assert "pandas" in names
