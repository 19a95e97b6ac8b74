"""TLS decryption through tshark: Wireshark's own decryption corpus, the real samples
recorded with SSLKEYLOGFILE, and the promises about the tshark process (always reaped,
a timeout, a clear message when tshark is missing)."""

from __future__ import annotations

import csv
import json
import shutil
import threading
from pathlib import Path

import psutil
import pytest
from conftest import SAMPLES
from hypothesis import given
from hypothesis import strategies as st
from test_samples import check_client_errors, check_outcomes

import pcapdiag
from pcapdiag import decrypt
from pcapdiag.connections import Tracker
from pcapdiag.decrypt import KeyLog

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())


def _tshark_children() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "tshark" in (p.name() or "")]


@pytest.fixture(autouse=True)
def no_tshark_left_behind():
    """Every test here must leave no tshark process behind, whatever happened."""
    before = {p.pid for p in _tshark_children()}
    yield
    left = [p for p in _tshark_children() if p.pid not in before]
    for p in left:
        p.kill()
    assert not left, f"tshark processes left behind: {[p.pid for p in left]}"


# -- Wireshark's decryption corpus ----------------------------------------------------------
def _wireshark_alerts(wireshark_dir: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with open(wireshark_dir / "alerts.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            how = row["decrypted_with"]
            if how.startswith("keylog:") or how.startswith("dsb("):
                rows.setdefault(row["file"], []).append(row)
    return rows


def test_wireshark_corpus_alerts_are_decrypted(wireshark_dir: Path) -> None:
    """Every alert that tshark decrypts with a key log or DSB (alerts.csv, tshark 4.0.17's
    own output) is found by pcapdiag at the same frame, from the same side, with the same
    description — where the ClientHello is in the capture (we match secrets by client
    random; mid-stream captures cannot be matched)."""
    found = missed = 0
    for name, rows in _wireshark_alerts(wireshark_dir).items():
        keys = {r["decrypted_with"].split(":", 1)[1] for r in rows if ":" in r["decrypted_with"]}
        keylog = [wireshark_dir / "keys" / k for k in keys]
        result = pcapdiag.analyze(wireshark_dir / "captures" / name, keylog=keylog)
        assert not result.captures[0].warnings or all(
            "decrypt" not in w for w in result.captures[0].warnings
        ), result.captures[0].warnings
        ours = {
            (a["frame"], a["sender"], a["description"])
            for r in result.records
            for a in ((r.tls or {}).get("alerts") or [])
            if not a["encrypted"]
        }
        for row in rows:
            sender = "client" if row["direction"] == "c2s" else "server"
            want = (int(row["frame"]), sender, row["desc_name"])
            has_hello = any(
                r.decrypted and r.first_frame <= want[0] <= r.last_frame for r in result.records
            )
            if not has_hello:
                missed += 1
                continue
            assert want in ours, (name, want, ours)
            found += 1
    print(f"\nWireshark corpus: {found} decrypted alerts found, {missed} in mid-stream captures")
    assert found >= 8


def test_wireshark_http2_over_tls_is_seen_decrypted(wireshark_dir: Path) -> None:
    """http2-data-reassembly.pcap (keylog): tshark shows an HTTP/2 GET of stream 1 inside
    TLS; with the key log we see the request, and without it only opaque records."""
    cap = wireshark_dir / "captures" / "http2-data-reassembly.pcap"
    keys = wireshark_dir / "keys" / "http2-data-reassembly.keys"
    (rec,) = pcapdiag.analyze(cap, keylog=keys).records
    assert rec.decrypted
    assert rec.last_request is not None and rec.last_request.startswith("GET ")
    assert "HTTP/2" in rec.last_request
    (plain,) = pcapdiag.analyze(cap).records
    assert not plain.decrypted and plain.last_request is None


# -- real samples recorded with SSLKEYLOGFILE -------------------------------------------------
TLS_SAMPLES = [e for e in MANIFEST if (SAMPLES / (Path(e["file"]).stem + ".keys")).exists()]


@pytest.mark.parametrize("entry", TLS_SAMPLES, ids=[e["file"] for e in TLS_SAMPLES])
def test_samples_with_keys_give_the_real_outcome(entry: dict) -> None:
    """With the key log the client wrote, each connection's outcome and closer are what
    really happened (the manifest: the client's exception and the server's log), and the
    facts only the plaintext shows (the alert name, the request line) are there."""
    cap = SAMPLES / entry["file"]
    keys = SAMPLES / (Path(entry["file"]).stem + ".keys")
    check_outcomes(SAMPLES, entry, keylog=keys)
    check_client_errors(SAMPLES, entry, keylog=keys)
    result = pcapdiag.analyze(cap, keylog=keys)
    got = [r for r in result.records]
    want = entry["connections"]
    assert len(got) == len(want)
    for rec, exp in zip(got, want, strict=True):
        assert (rec.outcome, rec.closed_by) == (exp["outcome"], exp["closed_by"]), rec.evidence
        if exp.get("alert"):
            alerts = {a["description"] for a in (rec.tls or {}).get("alerts", [])}
            assert exp["alert"] in alerts, (alerts, rec.evidence)
        if exp.get("request_line"):
            assert rec.last_request is not None
            assert rec.last_request.startswith(exp["request_line"].rsplit(" ", 1)[0])
        if (rec.tls or {}).get("handshake_complete") and rec.requests:
            assert rec.decrypted


def test_dsb_secrets_need_no_key_log() -> None:
    """A pcapng with the key log embedded (dumpcap + editcap --inject-secrets) decrypts on
    its own: the two GETs httpx sent are read from the plaintext."""
    (rec,) = pcapdiag.analyze(SAMPLES / "client_close-httpx-tls.pcapng").records
    assert rec.decrypted
    assert rec.last_request == "GET / HTTP/1.1"
    assert rec.requests == 2 and rec.responses == 2


# -- the tshark process ---------------------------------------------------------------------
def test_missing_tshark_is_named_and_keyless_verdicts_stay(monkeypatch) -> None:
    cap = SAMPLES / "client_close-requests-v6-tls12.pcap"
    keys = SAMPLES / "client_close-requests-v6-tls12.keys"
    real_which = shutil.which
    monkeypatch.setattr(decrypt.shutil, "which", lambda n: None if n == "tshark" else real_which(n))
    result = pcapdiag.analyze(cap, keylog=keys)
    (rec,) = result.records
    assert rec.outcome == "client_close" and not rec.decrypted
    (warning,) = result.captures[0].warnings
    assert "apt-get install tshark" in warning


def test_timeout_kills_tshark_and_keeps_keyless_verdicts() -> None:
    cap = SAMPLES / "client_close-requests-v6-tls12.pcap"
    keys = SAMPLES / "client_close-requests-v6-tls12.keys"
    result = pcapdiag.analyze(cap, keylog=keys, decrypt_timeout=0.001)
    (rec,) = result.records
    assert rec.outcome == "client_close" and not rec.decrypted
    assert any("did not finish decrypting" in w for w in result.captures[0].warnings)


def test_interrupt_during_decryption_reaps_tshark(monkeypatch) -> None:
    """Ctrl-C while the replay consumes tshark's output: the interrupt propagates and
    tshark is gone (the autouse fixture counts processes)."""
    cap = SAMPLES / "client_close-httpx-tls.pcapng"
    original = Tracker.feed

    def interrupted(self, pk, icmp, *rest):
        if self.plain is not None:
            self.plain.upto(1)  # tshark is running now
            raise KeyboardInterrupt
        return original(self, pk, icmp, *rest)

    monkeypatch.setattr(Tracker, "feed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pcapdiag.analyze(cap)


def test_decryption_under_a_running_event_loop() -> None:
    """Jupyter runs an event loop in the main thread; pyshark must not touch it."""
    import asyncio

    async def inside() -> list:
        return pcapdiag.analyze(SAMPLES / "client_close-httpx-tls.pcapng").records

    (rec,) = asyncio.run(inside())
    assert rec.decrypted and rec.requests == 2
    assert threading.active_count() < 50


# -- key logs -------------------------------------------------------------------------------
def test_keylog_reads_nss_lines_and_skips_junk() -> None:
    rnd = "ab" * 32
    text = (
        "# comment\n"
        f"CLIENT_RANDOM {rnd} {'cd' * 48}\n"
        f"CLIENT_TRAFFIC_SECRET_0 {rnd} {'ef' * 32}\n"
        "CLIENT_RANDOM nothex zz\n"
        f"UNKNOWN_LABEL {rnd} 00\n"
        f"CLIENT_RANDOM {'ab' * 31} 00\n"
    )
    log = KeyLog()
    assert log.add_text(text) == 2
    assert bytes.fromhex(rnd) in log and len(log.lines_for(bytes.fromhex(rnd))) == 2


def test_unreadable_or_empty_keylog_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.keys"
    empty.write_text("nothing here\n")
    header = tmp_path / "header.keys"
    header.write_text("# TLS secrets log file, generated by OpenSSL / Python\n")
    assert pcapdiag.analyze(SAMPLES / "client_close-requests.pcap", keylog=header).records
    with pytest.raises(pcapdiag.UsageError, match="no NSS key log lines"):
        pcapdiag.analyze(SAMPLES / "client_close-requests.pcap", keylog=empty)
    with pytest.raises(pcapdiag.UsageError, match="cannot read the key log"):
        pcapdiag.analyze(SAMPLES / "client_close-requests.pcap", keylog=tmp_path / "missing")


@given(st.text(max_size=2000))
def test_keylog_never_raises_on_any_text(text: str) -> None:
    log = KeyLog()
    n = log.add_text(text)
    assert 0 <= n <= text.count("\n") + 1


def test_tshark_error_is_one_warning_with_its_message(monkeypatch) -> None:
    """tshark refusing its input: its stderr becomes the warning, keyless verdicts stay,
    and the process is reaped (the autouse fixture)."""
    from pcapdiag import analysis

    class Garbage(decrypt.PcapngWriter):
        def __init__(self, fh, keylog_lines):
            super().__init__(fh, keylog_lines)
            fh.seek(0)
            fh.write(b"this is not a capture file at all")

    monkeypatch.setattr(analysis, "PcapngWriter", Garbage)
    cap = SAMPLES / "client_close-requests-v6-tls12.pcap"
    keys = SAMPLES / "client_close-requests-v6-tls12.keys"
    result = pcapdiag.analyze(cap, keylog=keys)
    (rec,) = result.records
    assert rec.outcome == "client_close" and not rec.decrypted
    (warning,) = result.captures[0].warnings
    assert "tshark failed while decrypting" in warning
    assert "\n" not in warning
