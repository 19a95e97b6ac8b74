"""The fast lane (``pcapdiag._fastlane``) gives the exact tracker's answer.

Ground truth is the exact tracker on the same capture (``PCAPDIAG_FASTLANE=0``): with the
fast lane forced on, every record and the whole JSON must be the same, on every recorded
sample, the Zeek and Wireshark corpora and a large mix of real recordings. Each run is
made twice, once with the lane's records written directly and once replayed through
``Connection`` and ``explain`` (the oracle), so the direct writer is held to the code
that makes every other record. Packets built in code only reach the hand-over corners:
a 4-tuple reused after an ordinary connection, late packets, random conversations.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapdiag
from pcapdiag import _fastlane, analysis, connections, reader
from pcapdiag.report import data, figures
from pcapdiag.report.data import write_json

pytest.importorskip("numba")
if _fastlane.kernels() is None:
    pytest.skip("numba cannot compile here", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
ORACLE = ROOT.parent / "shared" / "oracle"
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from pcapbuild import Conversation, write_pcap  # noqa: E402
from profile_analysis import MIX_SOURCES, make_mix  # noqa: E402

REPLAYED = [0]


@pytest.fixture(autouse=True)
def _count(monkeypatch: pytest.MonkeyPatch) -> None:
    close = _fastlane.Lane.close

    def counting(self: _fastlane.Lane, final: bool = True) -> Any:
        out = close(self, final)
        REPLAYED[0] += self.replayed
        return out

    monkeypatch.setattr(_fastlane.Lane, "close", counting)


def _run(path: Path, mode: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> pcapdiag.Analysis:
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0" if mode == "exact" else "1")
    monkeypatch.setattr(_fastlane, "ORACLE", mode == "oracle")
    return pcapdiag.analyze(str(path), **kw)


def _stream(analysis: pcapdiag.Analysis, jobs: int = 1) -> str:
    """``--format json``: the fast lane's lines come from its blocks, not its records,
    written as text (a StringIO) or, into a UTF-8 file, as bytes: both the same (and
    with ``jobs``, rendered by several processes)."""
    out = io.StringIO()
    write_json(analysis, out, jobs=jobs)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        write_json(analysis, f, jobs=jobs)
        f.seek(0)
        assert f.read() == out.getvalue()
    return out.getvalue()


def _text(analysis: pcapdiag.Analysis) -> str:
    """The terminal report, as piped."""
    from pcapdiag.report import terminal

    out = io.StringIO()
    terminal.render(analysis, out)
    return out.getvalue()


def _html(analysis: pcapdiag.Analysis) -> str:
    """The HTML report (a store's records made once, problems' with their events), its
    footer's date left out."""
    import re

    from pcapdiag.report import html

    return re.sub(r" on \d{4}-\d\d-\d\d \d\d:\d\d UTC", "", html.render(analysis))


def _csv(analysis: pcapdiag.Analysis) -> str:
    """The CSV output (the fast lane's records made without their events)."""
    out = io.StringIO()
    data.write_csv(analysis, out)
    return out.getvalue()


def _same(path: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> int:
    """Assert the three ways agree on ``path``, record by record, as one JSON document,
    as the JSON output, as CSV, as the terminal report and as the HTML report (which read
    a store's columns, and its records once: the same as from a list of every record);
    returns connections the lane took."""
    before = REPLAYED[0]
    exact = _run(path, "exact", monkeypatch)
    want = list(exact.records)
    want_json = json.dumps(exact.to_json(), default=str)
    want_stream = _stream(exact)
    want_text = _text(exact)
    want_csv = _csv(exact)
    # the HTML report reads a store its own way past the timeline's lanes (``_records``)
    big = len(want) > figures.MAX_LANES
    want_html = _html(exact) if big else ""
    listed = pcapdiag.Analysis(want, exact.captures, exact.idle_timeouts, exact.errors)
    assert _text(listed) == want_text, path.name
    assert _csv(listed) == want_csv, path.name  # each record's to_json, not the JSON lines
    if big:
        assert _html(listed) == want_html, path.name
    want_frame = exact.connections
    for mode in ("oracle", "direct"):
        got = _run(path, mode, monkeypatch, **kw)
        recs = list(got.records)
        for a, b in zip(want, recs, strict=True):
            assert a == b, (path.name, mode, a.first_frame)
        # the DataFrame: a store's records made from rows, the lane's from its columns
        pd.testing.assert_frame_equal(got.connections, want_frame)
        assert json.dumps(got.to_json(), default=str) == want_json, (path.name, mode)
        assert _stream(got, kw.get("jobs", 1)) == want_stream, (path.name, mode)
        assert _text(got) == want_text, (path.name, mode)
        assert _csv(got) == want_csv, (path.name, mode)
        if big:
            assert _html(got) == want_html, (path.name, mode)
    return (REPLAYED[0] - before) // 2


def test_rows_from_a_blocks_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_fastlane.rows`` and ``events`` give each connection's row and events as
    ``record`` makes them, for every block of the real-recordings mix and of the samples
    the lane takes."""
    from pcapdiag._store import _FastRun, row_of

    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    mix = tmp_path / "mix.pcap"
    make_mix(mix, 120, sources)
    files = [mix, *sorted(SAMPLES.glob("*.pcap"))]
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    checked = 0
    for f in files:
        recs = pcapdiag.analyze(str(f)).records
        for run in getattr(recs, "_runs", []):
            if not isinstance(run, _FastRun):
                continue
            for block in run.blocks():
                recs = [_fastlane.record(block, j, run.path, run.t0) for j in range(len(block))]
                want = [row_of(r) for r in recs]
                assert _fastlane.rows(block, run.path, run.t0) == want, f.name
                evs = [r.events for r in recs]
                assert [_fastlane.events(block, j) for j in range(len(block))] == evs, f.name
                checked += len(block)
    assert checked > 1000


def test_every_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(SAMPLES.glob("*.pcap")) + sorted(SAMPLES.glob("*.pcapng"))
    assert len(files) > 100
    replayed = sum(_same(f, monkeypatch) for f in files)
    assert replayed >= 15  # the lane did take the ordinary ones


def test_client_resets_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients that reset a connection with nothing outstanding (Zeek's RSTO): a raw
    socket closed with SO_LINGER 0 after its response, over IPv4 and IPv6, and requests
    closing a streamed response whose body had all arrived but was not read (the kernel
    answers unread data with RST). Each is the lane's, and the same as the exact
    tracker's; the manifest says the client raised nothing."""
    for name in ("client_reset-raw-linger.pcap", "client_reset-raw-v6-linger.pcap",
                 "client_reset-requests-stream.pcap"):  # fmt: skip
        assert _same(SAMPLES / name, monkeypatch) == 1, name
        got = _run(SAMPLES / name, "direct", monkeypatch)
        assert [(r.outcome, r.zeek_conn_state) for r in got.records] == [("client_reset", "RSTO")]
        assert not any(got.records[0].client_errors.values())


def test_keepalive_races_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keep-alive race as recorded: the server closed an idle keep-alive connection,
    the client (http.client, over IPv4 and IPv6) wrote its next request after the FIN,
    the server answered with RST, and the client raised RemoteDisconnected (the
    manifest). The lane takes it, and says what the exact tracker says."""
    for name in ("server_close_after_request-stdlib-keepalive_race.pcap",
                 "server_close_after_request-stdlib-v6-keepalive_race.pcap"):  # fmt: skip
        assert _same(SAMPLES / name, monkeypatch) == 1, name
        (rec,) = _run(SAMPLES / name, "direct", monkeypatch).records
        assert (rec.outcome, rec.keepalive_race, rec.zeek_conn_state) == (
            "server_close_after_request", True, "RSTR")  # fmt: skip
        assert rec.client_errors["stdlib"].startswith("http.client.RemoteDisconnected")


def test_a_4_tuple_reused_after_a_quiet_spell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client port used again 6 s after its connection ended (longer than the lane
    keeps a finished connection, in one batch: no sweep between): the lane lets the
    first go at the fresh SYN and follows the second, as a sweep would have."""
    a = Conversation().handshake().client_sends(GET).server_sends(_http_ok())
    a.client_fin().server_fin()._add(True, 0x10)
    b = Conversation(t=a.t + 6.0, cseq=90000, sseq=70000).handshake().client_sends(GET)
    b.server_sends(_http_ok()).server_fin().client_fin()._add(False, 0x10)
    path = write_pcap(tmp_path / "reuse.pcap", a.packets + b.packets)
    assert _same(path, monkeypatch) == 2


SERVER_RESETS = {  # recorded: the exception each client raised (the manifest)
    "server_reset-stdlib.pcap": ("stdlib", "ConnectionResetError: [Errno 104]"),
    "server_reset-requests.pcap": ("requests", "requests.exceptions.ConnectionError"),
    "server_reset-requests-v6.pcap": ("requests", "requests.exceptions.ConnectionError"),
    "server_reset-httpx-v6.pcap": ("httpx", "httpx.ReadError"),
    "server_reset-aiohttp.pcap": ("aiohttp", "aiohttp.ClientOSError"),
    "server_reset-requests-stale.pcap": ("requests", "requests.exceptions.ConnectionError"),
}


def test_server_resets_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that reset the connection while a request awaited its response: every
    such recording is the lane's, the same as the exact tracker's, with the exception
    the client raised. aiohttp retried once on a new connection, reset again: the retry
    names the first. requests reused a pooled connection the server had forgotten: stale."""
    for name, (lib, raised) in SERVER_RESETS.items():
        recs = list(_run(SAMPLES / name, "direct", monkeypatch).records)
        assert _same(SAMPLES / name, monkeypatch) == len(recs), name
        assert {(r.outcome, r.zeek_conn_state) for r in recs} == {("server_reset", "RSTR")}
        assert recs[-1].client_errors[lib].startswith(raised), name
    first, retry = _run(SAMPLES / "server_reset-aiohttp.pcap", "direct", monkeypatch).records
    assert retry.retry_of == first.id
    (stale,) = _run(SAMPLES / "server_reset-requests-stale.pcap", "direct", monkeypatch).records
    assert stale.stale and "Stale connection" in stale.evidence


# what each recorded client raised (``tools/record_samples.py``)
RAISED = {e["file"]: e["exception"] for e in json.loads((SAMPLES / "manifest.json").read_text())}
SERVER_CLOSES = {  # recorded: the client that raised, as the manifest names it
    "server_close_after_request-stdlib.pcap": "stdlib",
    "server_close_after_request-requests.pcap": "requests",
    "server_close_after_request-requests-v6.pcap": "requests",
    "server_close_after_request-requests-serverside.pcap": "requests",
    "server_close_after_request-httpx.pcap": "httpx",
    "server_close_after_request-httpx-v6.pcap": "httpx",
    "server_close_after_request-aiohttp.pcap": "aiohttp",
    "server_close_after_request-aiohttp-v6.pcapng": "aiohttp",
}


def test_servers_closing_on_a_request_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that closed the connection (FIN) as soon as the first request came, the
    client's FIN after it (Zeek's ShADafF): every such recording is the lane's, the same
    as the exact tracker's, and the exception predicted for the client is the one it
    raised (the manifest: its type, and its message where ours quotes one). aiohttp
    retried once on a new connection, closed on again: the retry names the first."""
    for name, lib in SERVER_CLOSES.items():
        recs = list(_run(SAMPLES / name, "direct", monkeypatch).records)
        assert _same(SAMPLES / name, monkeypatch) == len(recs), name
        assert {(r.outcome, r.zeek_conn_state, r.zeek_history, r.keepalive_race)
                for r in recs} == {("server_close_after_request", "SF", "ShADafF", False)}  # fmt: skip
        raised = RAISED[name]
        assert raised["type"] in recs[-1].client_errors[lib], name
        assert raised["chain_detail"][-1]["message"] in recs[-1].client_errors[lib], name
        assert recs[-1].evidence.startswith("The server sent FIN at frame "), name
    first, retry = _run(
        SAMPLES / "server_close_after_request-aiohttp.pcap", "direct", monkeypatch
    ).records
    assert retry.retry_of == first.id


TRUNCATED = {  # recorded: the client that raised, as the manifest names it
    "truncated_response-stdlib.pcap": "stdlib",
    "truncated_response-requests.pcap": "requests",
    "truncated_response-requests-v6.pcap": "requests",
    "truncated_response-httpx.pcap": "httpx",
    "truncated_response-aiohttp.pcap": "aiohttp",
    "truncated_response-aiohttp-v6.pcap": "aiohttp",
}


def test_truncated_responses_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that closed (FIN) after 3 of the 100 body bytes its head announced, the
    client's FIN after it: every such recording is the lane's, the same as the exact
    tracker's (the HTTP observer's anomaly included), and the exception predicted for
    the client is the one it raised, byte counts and all (the manifest). Chunked bodies
    stay with the exact tracker: their length is the parser's."""
    for name, lib in TRUNCATED.items():
        (rec,) = _run(SAMPLES / name, "direct", monkeypatch).records
        assert _same(SAMPLES / name, monkeypatch) == 1, name
        assert (rec.outcome, rec.zeek_conn_state, rec.closed_by) == (
            "truncated_response", "SF", "server")  # fmt: skip
        raised = RAISED[name]
        assert raised["type"] in rec.client_errors[lib], name
        assert raised["message"] in rec.client_errors[lib], name
        assert rec.evidence.endswith("after 3 of 100 announced body bytes."), name
    assert _same(SAMPLES / "truncated_response-requests-chunked.pcap", monkeypatch) == 0


CLIENT_TIMEOUTS = {  # recorded: the client that raised, as the manifest names it
    "client_timeout-requests.pcap": "requests",
    "client_timeout-httpx.pcap": "httpx",
    "client_timeout-aiohttp.pcap": "aiohttp",
    "client_timeout-stdlib-v6.pcap": "stdlib",
}


def test_clients_that_gave_up_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose read timeout ended the wait: its FIN while the request awaited the
    response, the response after it, the client's kernel resetting it (Zeek's
    ShADaFdR). Every such recording is the lane's, the same as the exact tracker's, and
    the exception predicted for the client is the one it raised (the manifest: its type,
    and its message up to the timeout's value, which the capture does not hold)."""
    for name, lib in CLIENT_TIMEOUTS.items():
        (rec,) = _run(SAMPLES / name, "direct", monkeypatch).records
        assert _same(SAMPLES / name, monkeypatch) == 1, name
        assert (rec.outcome, rec.zeek_conn_state, rec.zeek_history, rec.closed_by) == (
            "client_timeout", "RSTO", "ShADaFdR", "client")  # fmt: skip
        raised = RAISED[name]
        assert raised["type"] in rec.client_errors[lib], name
        assert raised["message"].split(" (read timeout=")[0] in rec.client_errors[lib], name
        assert rec.evidence.startswith("The client gave up (FIN at frame "), name


def test_a_client_reset_in_the_middle_of_a_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded (tcpdump on loopback): a server sends a response's head and the first
    60,000 of its 100,000 body bytes, then waits; requests (``stream=True``) reads ten
    bytes of the body and closes the response, the rest unread: the kernel resets the
    connection. The lane takes it, the same as the exact tracker: the client's reset,
    the response begun and never ended, nothing raised (the client closed it itself)."""
    import os
    import socket
    import threading
    import time

    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root and tcpdump to record on loopback")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    sport = srv.getsockname()[1]
    path = tmp_path / "cut.pcap"

    def serve() -> None:
        c, _ = srv.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 60000)
        time.sleep(1.0)
        c.close()

    import requests

    try:
        with _recording(path, sport), requests.Session() as session:
            server = threading.Thread(target=serve, daemon=True)
            server.start()
            resp = session.get(f"http://127.0.0.1:{sport}/big", stream=True, timeout=5)
            assert resp.raw.read(10) == b"x" * 10
            time.sleep(0.2)  # the 60,000 bytes in: more than the reader buffers
            resp.close()
            server.join(5)
    finally:
        srv.close()
    assert _same(path, monkeypatch) == 1
    (rec,) = _run(path, "direct", monkeypatch).records
    assert (rec.outcome, rec.zeek_conn_state, rec.closed_by) == ("client_reset", "RSTO", "client")
    kinds = [e[3] for e in rec.events]
    assert "response" in kinds and not any(k.startswith("response_end") for k in kinds)
    assert not any(rec.client_errors.values())


def test_a_request_closed_on_that_the_lane_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the lane leaves to the exact tracker of a request the server closed on: one
    sent after an idle spell (the FIN may have crossed it: a race), the client's FIN
    before the server's, a second request on the connection; and a response, or the
    rest of one, after the client's FIN, that no RST ends. Every one is the same either
    way."""
    a = Conversation().handshake().client_sends(GET, dt=0.5).server_fin().client_fin()
    a._add(False, 0x10)
    b = Conversation(t=a.t + 1, cport=40001).handshake().client_sends(GET).client_fin()
    b.server_fin()._add(True, 0x10)
    c = Conversation(t=b.t + 1, cport=40002).handshake().client_sends(GET)
    c.server_sends(_http_ok()).client_sends(GET).server_fin().client_fin()._add(False, 0x10)
    d = Conversation(t=c.t + 1, cport=40003).handshake().client_sends(GET).server_fin()
    d.client_fin()._add(False, 0x10)
    # (and a client's half-close: the response after its FIN, then the server's FIN)
    e = Conversation(t=d.t + 1, cport=40004).handshake().client_sends(GET).client_fin()
    e.server_sends(_http_ok()).server_fin()._add(True, 0x10)
    # (and the client's FIN in the middle of a response, the rest of it after)
    f = Conversation(t=e.t + 1, cport=40005).handshake().client_sends(GET)
    f.server_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello").client_fin()
    f.server_sends(b"world").server_fin()._add(True, 0x10)
    packets = a.packets + b.packets + c.packets + d.packets + e.packets + f.packets
    path = write_pcap(tmp_path / "closed.pcap", packets)
    assert _same(path, monkeypatch) == 1  # the last only
    got = list(_run(path, "direct", monkeypatch).records)
    assert got[3].evidence.startswith("The server sent FIN at frame ")
    assert got[1].outcome != "server_close_after_request"  # the client closed first


def test_a_race_retried_on_a_new_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A race the lane ends, then the same request on a new connection at once (aiohttp's
    retry): the retry names the race's connection, as when the exact tracker made both."""
    a = Conversation(cport=40000).handshake().client_sends(GET).server_sends(_http_ok())
    a.server_fin(dt=2.5)._add(True, 0x10)  # idle, the server's FIN, the client's ACK
    a.client_sends(GET, dt=0.3).server_rst()
    b = Conversation(cport=40001, t=a.t + 0.005, cseq=7000).handshake().client_sends(GET)
    b.server_sends(_http_ok()).client_fin().server_fin()
    path = write_pcap(tmp_path / "retry.pcap", a.packets + b.packets)
    assert _same(path, monkeypatch) == 2
    first, second = _run(path, "direct", monkeypatch).records
    assert first.keepalive_race and second.retry_of == first.id


@pytest.mark.skipif(not ORACLE.exists(), reason="../shared/oracle not beside the repository")
def test_peer_corpora(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [
        p
        for d in (ORACLE / "zeek" / "traces", ORACLE / "wireshark" / "captures")
        for p in sorted(d.rglob("*"))
        if p.is_file()
        and p.suffix in (".pcap", ".pcapng", ".cap", ".gz")
        and p.stat().st_size < 20 << 20
    ]
    assert len(files) > 50
    for f in files:
        _same(f, monkeypatch)


def test_a_large_mix_of_recordings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real recordings replayed side by side: more than one batch (connections cross
    batch borders, sweeps run), ordinary and unusual connections interleaved; by
    connection shards too."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    n = make_mix(big, 120, sources)
    assert n > 70_000
    assert _same(big, monkeypatch) > 500
    _same(big, monkeypatch, jobs=2)
    # the kernels' output full many times a batch: drained and called again
    monkeypatch.setattr(_fastlane, "OUT_ROWS", 8)
    _same(big, monkeypatch)


def test_one_big_file_split_by_byte_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobs`` on one big pcap file: byte ranges, each read by a fast lane of its own
    (connections cut at a seam handed over), then shards of the exact tracker, then the
    JSON lines rendered by several processes. The answer is the exact tracker's."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 60, sources)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    monkeypatch.setattr(reader, "BATCH", 2000)  # cuts fall on batch borders: more of them
    parts = analysis.plan([str(big)], [[0]], 3)
    assert [p.span is not None for p in parts] == [True] * 3 + [False] * 3
    assert [p.exact for p in parts] == [False] * 3 + [True] * 3
    monkeypatch.setattr(data, "PARALLEL_MIN", 1)
    monkeypatch.setattr(data, "_forkable", lambda: True)  # other tests leave idle threads
    assert len(data._parts(10, 3)) == 3
    seams = []
    joins = _joins(monkeypatch)
    cut = _cuts_while_reading(monkeypatch)
    goals: list[tuple[Any, ...]] = []
    goal = analysis._goal
    monkeypatch.setattr(analysis, "_goal", lambda *a: goals.append(a) or goal(*a))
    for jobs in (2, 5):
        _same(big, monkeypatch, jobs=jobs)
        seams += [p.span[0] for p in analysis.plan([str(big)], [[0]], jobs) if p.span]
    assert len(set(seams)) == 2 + 5 - 1  # the file's start is the first span of both
    assert joins and all(joins)  # the exact parts read the ranges' tapes
    # the analysis cut its ranges while the first was read, where the reading had come
    # to (each range read so far on the board), and they met
    assert cut and all(not failed for failed in cut)
    assert sorted({a[4] for a in goals}) == [1, 2, 3, 4]  # ranges after: 1; 4, 3, 2, 1
    editcap = shutil.which("editcap")
    if editcap:  # the same as pcapng, as dumpcap and Wireshark write it
        ng = tmp_path / "mix.pcapng"
        subprocess.run([editcap, "-F", "pcapng", str(big), str(ng)], check=True)
        assert any(p.span for p in analysis.plan([str(ng)], [[0]], 3))
        joins.clear()
        _same(ng, monkeypatch, jobs=3)
        assert joins and all(joins)


def _record_syn_sent_again(path: Path) -> dict[str, Any]:
    """Record (tcpdump on loopback) a connect whose first SYN the server's kernel drops
    (its listener's accept queue is full: one connection waits in it) and whose SYN sent
    again a second later is answered, then a request and its response. Returns what the
    clients saw."""
    import socket
    import threading
    import time

    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    seen: dict[str, Any] = {}

    def ask(sock: socket.socket, name: str) -> None:
        sock.sendall(request)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        seen[name] = got.split(b"\r\n", 1)[0].decode()

    def answer(sock: socket.socket) -> None:
        with sock:
            got = b""
            while b"\r\n\r\n" not in got:
                got += sock.recv(4096)
            sock.sendall(reply)

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)  # one connection waiting to be accepted fills the queue
        port = srv.getsockname()[1]
        with _recording(path, port):
            first = socket.create_connection(("127.0.0.1", port), timeout=5)

            def late() -> None:
                t = time.monotonic()
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    seen["connect_s"] = time.monotonic() - t
                    ask(sock, "late")

            thread = threading.Thread(target=late)
            thread.start()
            time.sleep(0.3)  # its SYN came and was dropped
            conn, _ = srv.accept()  # room in the queue: the SYN sent again is answered
            with first:
                ask_thread = threading.Thread(target=ask, args=(first, "first"))
                ask_thread.start()
                answer(conn)
                ask_thread.join(10)
            conn, _ = srv.accept()
            answer(conn)
            thread.join(10)
    return seen


def test_a_syn_sent_again_across_the_cut_of_byte_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real connect whose first SYN went unanswered and whose SYN sent again was (the
    server's accept queue was full), placed after a mix of recordings so that ``jobs=2``
    cuts the file between the two SYNs. The first range's lane hands the attempt over
    (the exact tracker follows the 4-tuple from its SYN); the second range's lane takes
    the SYN sent again as a fresh connection. One connection, counted once: the lane's
    copy gives way to the exact tracker's."""
    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root and tcpdump to record on loopback")
    live = tmp_path / "again.pcap"
    seen = _record_syn_sent_again(live)
    assert seen["first"] == seen["late"] == "HTTP/1.1 200 OK"
    assert seen["connect_s"] > 0.9  # the kernel sent its SYN again (after 1 s)
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 60, sources)
    raw = bytearray(big.read_bytes())
    offs = _records(raw)
    last_us = _us(raw, offs[-1])
    tail = live.read_bytes()
    toffs = _records(tail)
    shift = last_us + 1_000_000 - _us(tail, toffs[0])
    syns = []  # frames of the late connect's SYNs
    for k, at in enumerate(toffs):
        rec = bytearray(tail[at : at + 16 + struct.unpack_from("<I", tail, at + 8)[0]])
        _set_us(rec, 0, _us(rec, 0) + shift)
        tcp = 16 + 14 + 4 * (rec[16 + 14] & 0xF)
        if rec[tcp + 13] & 0x12 == 0x02:
            syns.append((len(offs) + k + 1, struct.unpack_from(">H", rec, tcp)[0]))
        raw += rec
    big.write_bytes(raw)
    sport = max(set(p for _, p in syns), key=[p for _, p in syns].count)
    again = [f for f, p in syns if p == sport]
    assert len(again) >= 2  # the late client's SYN, and the same sent again
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    monkeypatch.setattr(reader, "BATCH", again[1] - 1)  # a batch border at the SYN again
    monkeypatch.setattr(data, "_forkable", lambda: True)
    monkeypatch.setattr(analysis, "FOLLOW", False)  # the cut where _cut_at says
    assert _cut_at(big, 2) == [_records(raw)[again[1] - 1]]
    monkeypatch.setattr(analysis, "_OVERLAP_STEP", 7)  # the merge's check, a few at a time
    _same(big, monkeypatch, jobs=2)
    got = pcapdiag.analyze(str(big), jobs=2)
    mine = [r for r in got.records if r.client == f"127.0.0.1:{sport}"]
    assert len(mine) == 1 and mine[0].first_frame == again[0]


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40), st.integers(1, 64))
def test_a_cut_that_follows_the_reading_gives_each_range_the_same_bytes(
    start: int, read: int, size: int, later: int
) -> None:
    """``_goal``: the next cut leaves the range being read (from ``start``, read to
    ``read``) as many bytes still to read as each of the ``later`` ranges after it gets,
    to a byte, and never falls behind the reading or past the end."""
    start, at, end = sorted((start, read, size))
    board = np.zeros((3, 2), np.int64)
    board[1, 0] = read if start <= read <= end else 0  # nothing read yet: its start
    at = max(int(board[1, 0]), start)
    g = analysis._goal(board, 1, start, end, later)()
    assert at <= g <= end
    assert abs((g - at) * later - (end - g)) <= later


def test_a_walk_to_a_target_that_moves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Capture.cuts`` asks a callable target again at every step of its walk: the cut
    is the batch border a fixed target at the last answer gives."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 30, sources)
    monkeypatch.setattr(reader, "BATCH", 500)
    monkeypatch.setattr(reader, "_DROP_EVERY", 4096)  # many steps
    size = big.stat().st_size
    asked: list[int] = []

    def moving() -> int:  # on by a tenth of the file at each step, up to 60 %
        asked.append(min(size * (1 + len(asked)) // 10, size * 6 // 10))
        return asked[-1]

    with reader.open_capture(str(big)) as cap:
        got = list(cap.cuts([moving]))
        assert len(asked) > 6 and asked[-1] == size * 6 // 10
        assert got == list(cap.cuts([asked[-1]]))
    raw = big.read_bytes()
    offsets = _records(raw)
    ((pos, frame),) = got
    assert offsets[frame - 1] == pos and (frame - 1) % 500 == 0 and pos >= asked[-1]


def _cuts_while_reading(monkeypatch: pytest.MonkeyPatch) -> list[set[Any]]:
    """The files whose ranges, cut while the first was read, did not meet (one set per
    analysis that cut so)."""
    seen: list[set[Any]] = []
    cut = analysis._cut_while_reading

    def spy(parts: list[analysis.Part], pool: Any) -> Any:
        out = cut(parts, pool)
        seen.append(set(out[1]))
        return out

    monkeypatch.setattr(analysis, "_cut_while_reading", spy)
    return seen


def test_ranges_cut_while_reading_that_do_not_meet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the walk cannot cut, or a later range would not start where the one before
    it stopped (planted: the cut moved one record on), the file is read by shards as
    if it had not been cut, and the answer is the exact tracker's."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 30, sources)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    monkeypatch.setattr(reader, "BATCH", 2000)
    monkeypatch.setattr(data, "_forkable", lambda: True)
    raw = big.read_bytes()
    cuts = reader.Capture.cuts

    def moved(self: reader.Capture, targets: list[int]) -> Any:
        for cut in cuts(self, targets):
            if cut is None:
                yield None
                return
            pos, frame = cut
            yield pos + 16 + struct.unpack_from("<I", raw, pos + 8)[0], frame + 1

    def fails(self: reader.Capture, targets: list[int]) -> Any:
        yield None

    for wrong in (moved, fails):
        monkeypatch.setattr(reader.Capture, "cuts", wrong)
        cut = _cuts_while_reading(monkeypatch)
        _same(big, monkeypatch, jobs=2)
        assert cut == [{(0,)}, {(0,)}]  # direct and oracle: the file, read by shards


def _joins(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each file cut into byte ranges had its exact parts read the ranges' tapes
    (else the whole file again)."""
    seen: list[bool] = []
    joined = analysis._joined

    def spy(frags: list[analysis.Fragment]) -> Any:
        out = joined(frags)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(analysis, "_joined", spy)
    return seen


def _cut_at(path: Path, jobs: int) -> list[int]:
    """Where ``analyze(path, jobs=jobs)`` cuts the file into byte ranges (while reading
    it, ``analysis._cut_later``, with ``analysis.FOLLOW`` off; else as ``plan`` does)."""
    later = analysis._cut_later((str(path),), jobs)
    if later is None:
        return [p.span[0] for p in analysis.plan([str(path)], [[0]], jobs) if p.span][1:]
    with reader.open_capture(str(path)) as cap:
        return [c[0] for c in cap.cuts([sp[0] for sp in later[1:]]) if c is not None]


def _records(raw: bytes | bytearray) -> list[int]:
    """The offsets of a little-endian pcap's records."""
    out, pos = [], 24
    while pos + 16 <= len(raw):
        out.append(pos)
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    return out


def _set_us(raw: bytearray, at: int, us: int) -> None:
    struct.pack_into("<II", raw, at, us // 1_000_000, us % 1_000_000)


def _us(raw: bytes | bytearray, at: int) -> int:
    sec, usec = struct.unpack_from("<II", raw, at)
    return sec * 1_000_000 + usec


def test_warnings_across_byte_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact parts read the byte ranges' tapes, and the file's summary is joined from
    the ranges' readings: every warning as one reading of the whole file gives it, with
    its count, first frame and place. Time steps back at each seam and within a range, a
    small snaplen is exceeded all along, the capture ends inside a record. Where the
    order of two warnings a range is first to give cannot be told (a step back at its
    first record and another new kind), the exact parts read the whole file."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    mix = tmp_path / "mix.pcap"
    make_mix(mix, 30, sources)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    monkeypatch.setattr(reader, "BATCH", 2000)
    monkeypatch.setattr(analysis, "FOLLOW", False)  # the cuts where _cut_at says
    clean = bytearray(mix.read_bytes())
    offsets = _records(clean)
    cuts = _cut_at(mix, 3)
    assert len(cuts) == 2
    seams = [offsets.index(c) for c in cuts]

    raw = bytearray(clean)
    struct.pack_into("<I", raw, 16, 200)  # snaplen
    struct.pack_into("<H", raw, 4, 3)  # version 3.4: every range reads the header
    for k in seams:  # a step back at each seam: the range's first record
        _set_us(raw, offsets[k], _us(raw, offsets[k - 1]) - 1_000_000)
    k = seams[0] + 700  # and one within the second range
    _set_us(raw, offsets[k], _us(raw, offsets[k - 1]) - 5)
    raw += struct.pack("<IIII", 1, 0, 100, 100) + b"x" * 10  # a record cut short
    stepped = tmp_path / "stepped.pcap"
    stepped.write_bytes(raw)
    assert _cut_at(stepped, 3) == cuts
    times = [_us(raw, o) for o in offsets]
    backwards = sum(b < a for a, b in zip(times, times[1:], strict=False))
    one = pcapdiag.analyze(str(stepped)).captures[0].warnings
    assert f"timestamps go backwards {backwards} times" in " ".join(one)
    for what in ("version 3.4", "snaplen 200", "ends inside a record"):
        assert sum(what in w for w in one) == 1, what
    joins = _joins(monkeypatch)
    _same(stepped, monkeypatch, jobs=3)
    assert joins and all(joins)

    # a seam's step back, and a record with more bytes than the wire's, both first in
    # the second range: their order is not known from it
    raw = bytearray(clean)
    k = seams[0]
    _set_us(raw, offsets[k], _us(raw, offsets[k - 1]) - 1_000_000)
    at = offsets[k + 5]
    struct.pack_into("<I", raw, at + 12, struct.unpack_from("<I", raw, at + 8)[0] - 1)
    odd = tmp_path / "odd.pcap"
    odd.write_bytes(raw)
    joins.clear()
    _same(odd, monkeypatch, jobs=3)
    assert joins and not any(joins)


def _with_hop_copies(src: Path, dest: Path, every: int) -> int:
    """``src`` (a microsecond pcap of Ethernet/IPv4) with every ``every``-th packet seen
    again 1 µs later one hop on, TTL one lower (``tcpdump -i any`` on a router): what
    the reader's duplicate filter drops, batch by batch. Returns the copies added."""
    raw = src.read_bytes()
    out, pos, k, added = [raw[:24]], 24, 0, 0
    while pos + 16 <= len(raw):
        sec, usec, cap, wire = struct.unpack_from("<IIII", raw, pos)
        rec = raw[pos : pos + 16 + cap]
        out.append(rec)
        pos += 16 + cap
        k += 1
        if k % every or cap < 34 or rec[16 + 12 : 16 + 14] != b"\x08\x00" or rec[16 + 22] < 2:
            continue
        pkt = bytearray(rec[16:])
        pkt[22] -= 1  # TTL
        pkt[24:26] = b"\0\0"
        words = struct.unpack("!10H", bytes(pkt[14:34]))
        total = sum(words)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        pkt[24:26] = struct.pack("!H", ~total & 0xFFFF)
        t = sec * 1_000_000 + usec + 1
        out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, cap, wire) + bytes(pkt))
        added += 1
    dest.write_bytes(b"".join(out))
    return added


def test_duplicate_frames_across_byte_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicate frames are dropped per batch; byte ranges are cut on batch borders, so
    every split drops the same copies as one process does, wherever they fall."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    mix, dup = tmp_path / "mix.pcap", tmp_path / "dup.pcap"
    make_mix(mix, 20, sources)
    assert _with_hop_copies(mix, dup, 1) > 10_000  # some pairs straddle every border
    monkeypatch.setattr(reader, "BATCH", 301)
    one = pcapdiag.analyze(str(dup))
    assert any("duplicate frame" in w for c in one.captures for w in c.warnings)
    _same(dup, monkeypatch, jobs=3)


def test_a_capture_still_being_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tcpdump has not stopped: more packets land in the file between the fast lane's
    pass and the exact tracker's (one process), or between the cut into byte ranges and
    the exact tracker's shards (``jobs``). Both read what the first reading saw: the
    answer is the one for the file as it was."""
    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 30, sources)
    raw = big.read_bytes()
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0")
    want = json.dumps(pcapdiag.analyze(str(big)).to_json(), default=str)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    monkeypatch.setattr(reader, "BATCH", 2000)

    def grow() -> None:
        with open(big, "ab") as f:
            f.write(raw[24:])  # the same traffic again, written since

    close = _fastlane.Lane.close

    def close_then_grow(self: _fastlane.Lane) -> Any:
        out = close(self)
        grow()
        return out

    with monkeypatch.context() as m:
        m.setattr(_fastlane.Lane, "close", close_then_grow)
        got = pcapdiag.analyze(str(big))
    assert json.dumps(got.to_json(), default=str) == want
    big.write_bytes(raw)
    spans = analysis._spans

    def spans_then_grow(*a: Any) -> Any:
        out = spans(*a)
        grow()
        return out

    monkeypatch.setattr(analysis, "_spans", spans_then_grow)
    got = pcapdiag.analyze(str(big), jobs=2)
    assert json.dumps(got.to_json(), default=str) == want


def _http_ok(body: bytes = b"hello") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_reused_4_tuple_handed_over_late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ordinary connection, then on the same 4-tuple one the lane cannot take (a
    reset): the lane has replayed the first already; the exact tracker's record of it
    wins, and nothing is counted twice. Then a stray ACK 6 s after both FINs."""
    a = Conversation().handshake().client_sends(GET).server_sends(_http_ok())
    a.client_fin().server_fin()
    a._add(True, 0x10)
    b = Conversation(t=a.t + 1, cseq=90000, sseq=70000).handshake().client_sends(GET)
    b.server_rst()
    c = Conversation(cport=40001, t=b.t + 1).handshake().client_sends(GET)
    c.server_sends(_http_ok()).client_fin().server_fin()
    c._add(True, 0x10, dt=6.0)
    path = write_pcap(tmp_path / "reuse.pcap", a.packets + b.packets + c.packets)
    _same(path, monkeypatch)


def test_attempts_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real refused and unanswered connects (each client's exception in the manifest):
    the lane keeps them as attempts (``_fastlane.Attempts``), hands none over, and the
    merge folds them into the exact tracker's answer."""
    kept: list[int] = []
    add = _fastlane.Attempts.add

    def counting(self: _fastlane.Attempts, rows: Any, turns: Any) -> None:
        kept.append(len(rows))
        add(self, rows, turns)

    monkeypatch.setattr(_fastlane.Attempts, "add", counting)
    names = [n for n in RAISED if n.startswith(("refused-", "syn_timeout-"))]
    assert len(names) >= 4
    for name in names:
        kept.clear()
        n = _same(SAMPLES / name, monkeypatch)
        assert n == 0 and sum(kept) == 2, name  # oracle and direct: the one attempt
        got = pcapdiag.analyze(SAMPLES / name)
        assert [r.outcome for r in got.records] in (["refused"], ["syn_timeout"]), name


def test_many_real_refused_connects_fold_as_the_exact_tracker_folds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded (tcpdump on loopback): sixty connects to a port nothing listens on, each
    refused by the kernel's RST (the client raised ConnectionRefusedError each time). The
    lane keeps them; the merge reports the first twenty and folds the rest into one row,
    as the exact tracker does."""
    import socket

    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root and tcpdump to record on loopback")
    with socket.socket() as probe:  # a free port, then closed: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "refused.pcap"
    raised = []
    with _recording(path, port):
        for _ in range(60):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError as exc:
                raised.append(type(exc).__name__)
    assert raised == ["ConnectionRefusedError"] * 60
    _same(path, monkeypatch)
    got = pcapdiag.analyze(str(path))
    assert got.by_outcome == {"refused": 60}
    assert sorted(r.count for r in got.records) == [1] * analysis.FOLD_KEEP + [40]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30), st.integers(-1, 30)), max_size=12),
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 30), st.integers(0, 8)), max_size=12),
)
def test_which_connections_a_window_covers(
    wins: list[tuple[int, int, int]], conns: list[tuple[int, int, int]]
) -> None:
    """The merge's test of whether the exact tracker was fed a connection (its 4-tuple
    hash, first and last frame) by a window (hash, first frame, last frame or -1), done
    for many at once, against the rule written out one pair at a time."""
    w = np.array(wins, np.int64).reshape(-1, 3)
    w = w[np.argsort(w[:, 0], kind="stable")]
    keys = np.array([k for k, _, _ in conns], np.int64)
    first = np.array([f for _, f, _ in conns], np.int64)
    last = first + np.array([d for _, _, d in conns], np.int64)
    want = [
        any(wk == k and ws <= f + d and (we < 0 or we > f) for wk, ws, we in wins)
        for k, f, d in conns
    ]
    assert analysis._covering(w, keys, first, last).tolist() == want


def test_an_attempt_let_go_then_answered_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty SYNs to one server nobody answers; 250 s later other traffic (the lane's
    sweep lets the attempts go, folded but the first few); then a SYN-ACK for one of the
    folded ones. That 4-tuple is the exact tracker's from the capture's start, so the
    attempt the lane let go is left out of the fold: every connection counted once."""
    packets: list[tuple[float, bytes]] = []
    convs = []
    for k in range(30):
        c = Conversation(cport=41000 + k, t=1_700_000_000.0 + k * 0.01, cseq=1000 + 999 * k)
        c._add(True, 0x02)
        convs.append(c)
        packets += c.packets
    other = Conversation(client="10.0.0.9", t=1_700_000_250.0).handshake()
    other.client_sends(GET).server_sends(_http_ok()).client_fin().server_fin()
    packets += other.packets
    late = convs[25]
    late.t = 1_700_000_260.0
    late._add(False, 0x12)  # SYN, ACK
    packets += late.packets[-1:]
    packets.sort(key=lambda p: p[0])
    path = write_pcap(tmp_path / "late.pcap", packets)
    monkeypatch.setattr(reader, "BATCH", 4)  # the lane sweeps between
    _same(path, monkeypatch)
    got = pcapdiag.analyze(str(path))
    assert sum(r.count for r in got.records) == 31
    assert sum(r.count for r in got.records if r.outcome == "syn_timeout") == 29


_ACTS = [
    "get",
    "ok",
    "ok_close",
    "short",
    "gap",
    "long_gap",
    "cfin",
    "sfin",
    "rst",
    "crst",
    "crst_bare",
    "again",
    "very_long_gap",
]
ACTIONS = st.lists(st.sampled_from(_ACTS), max_size=12)
# How a conversation opens: the handshake, or an attempt (a SYN, sent again, refused),
# or the SYN sent again before the answer
OPENINGS = st.sampled_from(
    ["handshake", "handshake", "syn", "syn_again", "refused", "again_refused", "again_answered"]
)


def _open(c: Conversation, how: str) -> None:
    if how == "handshake":
        c.handshake()
        return
    c._add(True, 0x02)  # SYN
    if how in ("syn_again", "again_refused", "again_answered"):
        c.t += 1.0
        c.packets.append((c.t, c.packets[-1][1]))  # the same SYN, sent again
    if how in ("refused", "again_refused"):
        c._add(False, 0x14)  # RST, ACK
    elif how == "again_answered":
        c._add(False, 0x12)  # SYN, ACK
        c._add(True, 0x10)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(OPENINGS, ACTIONS), min_size=1, max_size=3), st.booleans())
def test_random_conversations(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    convs: list[tuple[str, list[str]]],
    same_port: bool,
) -> None:
    """Whatever happens on the wire, the lane either replays a connection exactly (or
    keeps an attempt the merge folds exactly) or hands it over."""
    packets: list[tuple[float, bytes]] = []
    t = 1_700_000_000.0
    for k, (how, actions) in enumerate(convs):
        c = Conversation(cport=40000 if same_port else 40000 + k, t=t, cseq=1000 + 77777 * k)
        _open(c, how)
        for a in actions:
            if a == "get":
                c.client_sends(GET)
            elif a == "ok":
                c.server_sends(_http_ok())
            elif a == "ok_close":
                c.server_sends(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            elif a == "short":
                c.server_sends(_http_ok(b"x" * 50)[:-20])
            elif a == "gap":
                c.t += 0.5
            elif a == "long_gap":
                c.t += 7.0
            elif a == "very_long_gap":  # past the exact tracker's wait for a SYN's answer
                c.t += 300.0
            elif a == "cfin":
                c.client_fin()
            elif a == "sfin":
                c.server_fin()
            elif a == "rst":
                c.server_rst()
            elif a in ("crst", "crst_bare"):
                c.client_rst(ack=a == "crst")
            elif a == "again":  # a retransmission of the last packet
                c.packets.append((c.t + 0.001, c.packets[-1][1]))
                c.t += 0.001
        packets += c.packets
        t = c.t + 0.01
    packets.sort(key=lambda p: p[0])
    _same(write_pcap(tmp_path / "conv.pcap", packets), monkeypatch)


@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(0, 17)), max_size=200))
def test_distinct_pairs_are_the_sorted_set_of_pairs(rows: list[tuple[int, int]]) -> None:
    # (a block's packed history letters, and how many letters)
    a = np.array([x for x, _ in rows], np.int64)
    b = np.array([y for _, y in rows], np.int64)
    pairs, inverse = _fastlane._distinct_pairs(a, b)
    assert pairs == sorted(set(rows))
    assert [pairs[k] for k in inverse.tolist()] == rows


_SPANS = [0, 1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1]


@given(
    st.integers(0, 40),
    st.lists(st.sampled_from(_SPANS), min_size=1, max_size=12),
    st.integers(0, 2**32),
)
def test_a_blocks_narrowed_columns_widen_to_the_same_values(
    rows: int, spans: list[int], seed: int
) -> None:
    # each column spans a chosen width (at and past each type's edge), from anywhere in
    # int64 (a span past int64's range wraps): narrowed to the type that holds its span,
    # and back
    rng = np.random.default_rng(seed)
    cols = []
    for span in spans:
        base = np.uint64(int(rng.integers(0, 2**64 - 1, dtype=np.uint64, endpoint=True)))
        off = rng.integers(0, span, rows, dtype=np.uint64, endpoint=True)
        if rows > 1:  # its span is the one chosen: a row at each end
            i, j = rng.choice(rows, 2, replace=False)
            off[i], off[j] = span, 0
        cols.append((off + base).view(np.int64))  # (uint64 arithmetic wraps)
    a = np.stack(cols, axis=1) if rows else np.zeros((0, len(spans)), np.int64)
    state = _fastlane._narrow(a)
    assert np.array_equal(_fastlane._widen(state), a)
    for at, typed in state[2]:  # each column in the narrowest type that holds its span
        for k in at.tolist():
            span = int(a[:, k].max()) - int(a[:, k].min())  # (as int64 orders them)
            want = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64)
                        if span <= np.iinfo(t).max)  # fmt: skip
            assert typed.dtype == want
    # ... and into chosen columns of a wider array, the others left as they were
    out = np.full((rows, len(spans) + 3), 7, np.int64)
    at = rng.permutation(len(spans) + 3)[: len(spans)]
    _fastlane._widen(state, out, at)
    assert np.array_equal(out[:, at], a)
    assert (np.delete(out, at, axis=1) == 7).all()


@given(st.tuples(*[st.integers(0, 2**64 - 1)] * 4, *[st.integers(0, 65535)] * 2))
def test_the_4_tuple_key_is_one_for_both_directions(v: tuple[int, ...]) -> None:

    shi, slo, dhi, dlo, sport, dport = v
    k = _fastlane.tuple_hash(shi, slo, sport, dhi, dlo, dport)
    assert k == _fastlane.tuple_hash(dhi, dlo, dport, shi, slo, sport)
    u = np.array([shi], np.uint64), np.array([slo], np.uint64), np.array([sport], np.uint16)
    w = np.array([dhi], np.uint64), np.array([dlo], np.uint64), np.array([dport], np.uint16)
    got = np.zeros(1, np.uint64)
    _fastlane.kernels().hashes(u[0], u[1], u[2], w[0], w[1], w[2], got)
    assert int(got[0]) == k


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "pop", "flag"]),
            # few distinct low bits: long probe runs, deleted rows reused
            st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 40).map(lambda k: k << 12)),
            st.integers(0, 1000),
        ),
        max_size=300,
    )
)
def test_the_hash_tables_hold_what_a_dict_holds(ops: list[tuple[str, int, int]]) -> None:
    """The lane's open-addressing tables (``_fastlane_kernels``) against a dict, through
    ``Lane._reserve``'s growth and the kernels that put, pop and flag."""

    k = _fastlane.kernels()
    lane = _fastlane.Lane(_fastlane._Discard(), 0, "", 0)
    lane.table = _fastlane.new_table(8)
    lane.flagged = _fastlane.new_table(8)
    want: dict[int, int] = {}
    flagged: set[int] = set()
    for op, key, value in ops:
        lane._reserve(1)
        if op == "put":
            k._put(lane.table, lane.ctl, _fastlane.C_TABLE, key, value)
            want[key] = value
        elif op == "pop":
            k._pop(lane.table, lane.ctl, _fastlane.C_TABLE, key)
            want.pop(key, None)
        else:
            k._stick(key, lane.flagged, lane.st, lane.wins, lane.ctl)
            flagged.add(key)
        assert k._get(lane.table, key) == want.get(key, -1)
    assert lane.ctl[_fastlane.C_TABLE] == len(want)
    assert {int(x): k._get(lane.table, int(x)) for x in _fastlane.keys(lane.table)} == want
    assert set(_fastlane.keys(lane.flagged).tolist()) == flagged
    assert np.count_nonzero(lane.flagged[:, 1] >= 0) == len(flagged)
    # each flagged key's value is its window: the whole capture
    wins = lane.wins[: lane.ctl[_fastlane.C_NWIN]]
    for key in flagged:
        w = k._get(lane.flagged, key)
        assert wins[w, _fastlane.WN_KEY] == key
        assert (wins[w, _fastlane.WN_START], wins[w, _fastlane.WN_END]) == (0, -1)


def _head_key_twin(head: bytes) -> tuple[int, int]:
    """``_fastlane_kernels._head_key`` in plain Python: the bytes up to the first
    CRLFCRLF (all without one), zero-padded to words, each hash one multiply a word."""
    m64 = (1 << 64) - 1
    n = len(head)
    e = head.find(b"\r\n\r\n")
    end = n if e < 0 else e + 4
    a, b = 0x9E3779B97F4A7C15 ^ n, (0xFF51AFD7ED558CCD * (n + 1)) & m64
    body = head[:end]
    for k in range(0, len(body), 8):
        w = int.from_bytes(body[k : k + 8], "little")
        a = ((a ^ w) * 0xFF51AFD7ED558CCD) & m64
        a ^= a >> 32
        b = ((b + w) * 0xC4CEB9FE1A85EC53) & m64
        b ^= b >> 29

    def signed(x: int) -> int:
        return x - (1 << 64) if x >> 63 else x

    return signed(_fastlane._mix(a ^ end)), signed(_fastlane._mix(b))


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=6),
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"a", b"GET / HTTP/1.1"]))
    .map(b"".join)
    .filter(lambda b: 0 < len(b) <= 200),
    st.binary(max_size=9),
)
def test_the_head_key_reads_what_its_python_twin_reads(
    before: bytes, head: bytes, after: bytes
) -> None:
    """The word-at-a-time key against the plain reading: the end of the head is found
    wherever it falls in a word (or across two), and bytes around the segment or after
    the head's end change nothing."""

    buf = np.frombuffer(before + head + after, np.uint8)
    got = _fastlane.kernels()._head_key(buf, len(before), len(head))
    assert got == _head_key_twin(head)


def test_the_exact_pass_reads_the_first_pass_tape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact tracker's pass reads the first pass's tape (``_tape``): the file is
    walked once, its handed-over records read again by offset, and the answer is the
    exact tracker's alone. A gzip file cannot be read by offset: it is read twice, with
    the same answer."""
    import gzip

    from pcapdiag import _tape

    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 30, sources)
    gz = tmp_path / "mix.pcap.gz"
    gz.write_bytes(gzip.compress(big.read_bytes(), 1))
    monkeypatch.setattr(reader, "BATCH", 2000)
    walks: list[str] = []
    again: list[int] = []
    batches, records = reader.Capture.batches, reader.Capture.records

    def counting_batches(self: reader.Capture, *a: Any, **kw: Any) -> Any:
        walks.append(self.info.path)
        return batches(self, *a, **kw)

    def counting_records(self: reader.Capture, *a: Any) -> Any:
        out = records(self, *a)
        again.append(len(out))
        return out

    monkeypatch.setattr(reader.Capture, "batches", counting_batches)
    monkeypatch.setattr(reader.Capture, "records", counting_records)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0")
    want = _stream(pcapdiag.analyze(str(big)))
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    for path, walked in ((big, 1), (gz, 2)):
        walks.clear()
        again.clear()
        got = _stream(pcapdiag.analyze(str(path))).replace(str(path), str(big))
        assert json.loads(got)["connections"] == json.loads(want)["connections"], path.name
        assert len(walks) == walked, path.name
        assert (sum(again) > 1000) == (walked == 1), path.name
    assert _tape.ROW_BYTES == 44
    # no room for the tape (a full temporary directory): the file is read again instead
    walks.clear()

    def full(*a: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_tape.os, "pwritev", full)
    got = _stream(pcapdiag.analyze(str(big)))
    assert json.loads(got)["connections"] == json.loads(want)["connections"]
    assert len(walks) == 2


def test_byte_ranges_without_room_for_their_tapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte ranges whose tapes cannot be written (a full temporary directory): their
    exact shards read the whole file instead, and the answer is the exact tracker's. The
    parts run one after the other in this process (a plan for three run with ``jobs=1``),
    where the failure can be made."""
    from pcapdiag import _tape

    sources = [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()]
    big = tmp_path / "mix.pcap"
    make_mix(big, 30, sources)
    monkeypatch.setattr(reader, "BATCH", 2000)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0")
    want = json.dumps(pcapdiag.analyze(str(big)).to_json(), default=str)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    plan = analysis.plan
    monkeypatch.setattr(
        analysis, "plan", lambda files, chains, _, **kw: plan(files, chains, 3, **kw)
    )
    joins = _joins(monkeypatch)
    got = pcapdiag.analyze(str(big))
    assert json.dumps(got.to_json(), default=str) == want
    assert len(joins) == 1 and joins[0]  # three ranges, and their tapes read

    def full(*a: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_tape.os, "pwritev", full)
    joins.clear()
    got = pcapdiag.analyze(str(big))
    assert json.dumps(got.to_json(), default=str) == want
    assert joins == [False]


def test_the_tape_keeps_the_capture_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handed-over connection reset, then 40 s of connections the lane takes alone,
    then one more packet of it: the exact tracker, fed from the tape, must let the reset
    connection go when one process tracking everything does (by the capture's clock,
    batch by batch), so that the late packet is a connection of its own there too."""
    a = Conversation(cport=41000).handshake().client_sends(GET).server_rst()
    packets = list(a.packets)
    t = a.t
    for k in range(20):
        c = Conversation(cport=42000 + k, t=t + 2).handshake().client_sends(GET)
        c.server_sends(_http_ok()).client_fin().server_fin()
        packets += c.packets
        t = c.t
    a.t = t + 1
    a.client_sends(GET)
    packets += a.packets[-1:]
    monkeypatch.setattr(reader, "BATCH", 8)
    monkeypatch.setattr(connections, "SWEEP_EVERY", 16)
    path = write_pcap(tmp_path / "late.pcap", packets)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0")
    exact = pcapdiag.analyze(str(path))
    assert len([r for r in exact.records if r.client.endswith(":41000")]) == 2
    _same(path, monkeypatch)


def test_the_kernels_file_names_the_layout_it_was_compiled_with() -> None:
    """numba caches the kernels by their file alone: a constant of ``_fastlane`` they
    compile in must not change without that file (see ``_fastlane_kernels.LAYOUT``)."""
    k = _fastlane.kernels()
    assert k.layout_digest() == k.LAYOUT, "write the new digest into _fastlane_kernels.LAYOUT"


@contextlib.contextmanager
def _recording(path: Path, port: int) -> Iterator[None]:
    """tcpdump on loopback, writing the packets of TCP ``port`` to ``path`` while in it.
    A 64 MiB kernel buffer (``-B``): immediate mode keeps a frame of the snapshot length
    (256 KiB) for every packet, so the default 2 MiB holds eight, and on a busy machine
    the kernel dropped most of a burst (176 of 240 packets of 60 refused connects, with
    both cores loaded; none with the larger buffer)."""
    import time

    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-w", str(path), "-U", "--immediate-mode", "-Z", "root",
         "-s", "0", "-B", "65536", f"tcp port {port}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert dump.stderr is not None
        for line in dump.stderr:
            if "listening on" in line:
                break
        yield
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(5)


def _record_reused_port(path: Path, paths: list[str]) -> list[str]:
    """Record (tcpdump on loopback) one client port asking ``paths`` in turn of a small
    server, each on a new connection from the same 4-tuple: ``/ok`` answers and closes,
    ``/reset`` resets, ``/cut`` resets after a part of its answer, ``/close`` closes
    without an answer. Returns what the client got: the status, or the exception's name."""
    import socket
    import time

    sys.path.insert(0, str(ROOT / "tools" / "samples"))
    from server import linger_close, read_head  # the misbehaving servers' own

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    sport = srv.getsockname()[1]

    def serve() -> None:
        for _ in paths:
            c, _ = srv.accept()
            data = read_head(c)
            what = data.split(b" ")[1] if data.count(b" ") else b""
            if what == b"/reset":
                linger_close(c)
                continue
            if what == b"/cut":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                time.sleep(0.05)
                linger_close(c)
                continue
            if what != b"/close":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            c.close()

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    cport = probe.getsockname()[1]
    probe.close()
    try:
        with _recording(path, sport):
            got = _ask_from_one_port(paths, cport, sport, serve)
    finally:
        srv.close()
    return got


def _ask_from_one_port(
    paths: list[str], cport: int, sport: int, serve: Callable[[], None]
) -> list[str]:
    """Each of ``paths`` asked from client port ``cport`` of the server ``serve`` runs."""
    import http.client
    import socket
    import threading
    import time

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    got = []
    for p in paths:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", cport))
        s.connect(("127.0.0.1", sport))
        conn = http.client.HTTPConnection("127.0.0.1", sport, timeout=5)
        conn.sock = s
        try:
            conn.request("GET", p)
            resp = conn.getresponse()
            resp.read()
            got.append(str(resp.status))
        except (OSError, http.client.HTTPException) as exc:
            got.append(type(exc).__name__)
        conn.close()
        time.sleep(0.05)
    server.join(5)
    return got


def test_a_4_tuple_reused_after_a_reset_goes_back_to_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real client port reused for eight connections, recorded: after the response cut
    short by a reset, the lane takes the 4-tuple back at the next fresh SYN, the exact
    tracker is fed only the connection it was handed (a window) and starts none at that
    SYN, and every answer is the exact tracker's alone. A reset before any answer, and
    the request the server closed on without an answer, are the lane's own. The client's
    own exceptions say what the three failures were."""
    import os

    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root and tcpdump to record on loopback")
    paths = ["/ok", "/reset", "/ok", "/cut", "/ok", "/close", "/ok", "/ok"]
    path = tmp_path / "reuse.pcap"
    got = _record_reused_port(path, paths)
    assert got == ["200", "ConnectionResetError", "200", "ConnectionResetError", "200",
                   "RemoteDisconnected", "200", "200"]  # fmt: skip
    seen: dict[str, int] = {"resumed": 0, "ends": 0, "missed": 0, "wholes": 0}
    close, windowed = _fastlane.Lane.close, analysis._Chain._windowed

    def counting(self: _fastlane.Lane, final: bool = True) -> Any:
        out = close(self, final)
        seen["resumed"] += self.resumed
        return out

    def spying(self: analysis._Chain, tracker: Any, windows: Any, feed: Any) -> None:
        def spy(t: Any, handed: analysis._Handed) -> None:
            feed(t, handed)
            seen["ends"] += len(handed.ends)
            seen["missed"] += t.ends_missed
            seen["wholes"] += handed.lo is None

        windowed(self, tracker, windows, spy)

    monkeypatch.setattr(_fastlane.Lane, "close", counting)
    monkeypatch.setattr(analysis._Chain, "_windowed", spying)
    took = _same(path, monkeypatch)
    assert took == 7  # the five answered connections, the first reset, the one closed on
    # in each mode (direct, oracle): the cut one's window ended by the walk at the next
    # SYN; the tracker agreed, no whole re-run
    assert seen == {"resumed": 2, "ends": 2, "missed": 0, "wholes": 0}
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0")
    recs = sorted(pcapdiag.analyze(str(path)).records, key=lambda r: r.first_frame)
    outcomes = [r.outcome for r in recs]
    assert outcomes[1] == outcomes[3] == "server_reset"
    assert outcomes[5] == "server_close_after_request"
    # the answered ones: either side's FIN may come first (the server closes as it answers)
    assert {outcomes[k] for k in (0, 2, 4, 6, 7)} <= {"server_close", "client_close"}
    assert "ConnectionResetError" in recs[1].client_errors["stdlib"]
    assert "ConnectionResetError" in recs[3].client_errors["stdlib"]
    assert "RemoteDisconnected" in recs[5].client_errors["stdlib"]


def test_a_lane_wrong_about_a_fresh_syn_is_tracked_again_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the exact tracker would not start a connection at a SYN a lane says it took
    the 4-tuple back at (a retransmitted SYN, planted here as the window's end: the
    connection's later packets are not fed), it counts the miss and the set is tracked
    again from every packet of the handed-over 4-tuples: the answer stays the exact
    tracker's alone."""
    import dpkt

    path = SAMPLES / "syn_timeout-stdlib-kernel.pcap"  # one SYN and two retransmissions
    with open(path, "rb") as f:
        syns = [
            k + 1
            for k, (_, buf) in enumerate(dpkt.pcap.Reader(f))
            if isinstance(ip := dpkt.ethernet.Ethernet(buf).data, dpkt.ip.IP)
            and isinstance(tcp := ip.data, dpkt.tcp.TCP)
            and tcp.flags & dpkt.tcp.TH_SYN
            and not tcp.flags & dpkt.tcp.TH_ACK
        ]
    assert len(syns) >= 3
    init = analysis._Handed.__init__
    feeds: list[tuple[bool, int]] = []

    def wrong(self: analysis._Handed, windows: Any, whole: bool = False) -> None:
        w = np.array(windows, np.int64).reshape(-1, 3)
        if not whole:  # the window holding the first SYN's retransmission ends there
            w[(w[:, 1] <= syns[1]) & ((w[:, 2] < 0) | (w[:, 2] >= syns[1])), 2] = syns[1]
        init(self, w, whole)

    windowed = analysis._Chain._windowed

    def spying(self: analysis._Chain, tracker: Any, windows: Any, feed: Any) -> None:
        def spy(t: Any, handed: analysis._Handed) -> None:
            feed(t, handed)
            feeds.append((handed.lo is None, t.ends_missed))

        windowed(self, tracker, windows, spy)

    monkeypatch.setattr(analysis._Handed, "__init__", wrong)
    monkeypatch.setattr(analysis._Chain, "_windowed", spying)
    _handing_attempts_over(monkeypatch)  # (the lane folds this one itself)
    _same(path, monkeypatch)
    assert feeds == [(False, 1), (True, 0)] * 2  # direct and oracle: missed, then whole


def _handing_attempts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the lanes hand every attempt (a SYN unanswered, or refused) to the exact
    tracker from its SYN, as they did before they kept them (``_fastlane.Attempts``)."""
    drain = _fastlane.Lane._drain

    def handing(self: _fastlane.Lane, pk: Any, heads: Any) -> None:
        rows = self.out[: int(self.ctl[_fastlane.C_NOUT])]
        tried = rows[:, _fastlane.K_SYNACK_FRAME] == 0
        if tried.any():
            rest = rows[~tried].copy()
            for row in rows[tried].copy():
                self._reject(row)
            self.out[: len(rest)] = rest
            self.ctl[_fastlane.C_NOUT] = len(rest)
        drain(self, pk, heads)

    monkeypatch.setattr(_fastlane.Lane, "_drain", handing)


def test_icmp_errors_reach_their_shard_from_the_tapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded ICMP errors (port, host and admin unreachable, v4 and v6) with ``jobs``:
    byte ranges write them on their tapes, and each goes to the exact part whose shard
    holds the 4-tuple it quotes (both split by the fast lane's key)."""
    monkeypatch.setattr(reader, "BATCH", 2)  # cuts fall on batch borders: small files cut
    monkeypatch.setattr(data, "_forkable", lambda: True)
    joins = _joins(monkeypatch)
    cut = 0
    for path in sorted(SAMPLES.glob("icmp_unreachable-*.pcap*")):
        for jobs in (2, 3):
            monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
            if any(p.span for p in analysis.plan([str(path)], [[0]], jobs)):
                cut += 1
            _same(path, monkeypatch, jobs=jobs)
    assert cut >= 8 and joins and all(joins)
