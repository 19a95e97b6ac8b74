"""TlsObserver against real captures (Wireshark and Zeek test corpora) and crafted edges.

Captures are turned into per-direction byte streams by ``streams.py`` (shared with
test_http_parser.py) and replayed into an observer the way the connection tracker does.
"""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streams import replay, tcp_streams

from pcapdiag._tls import (
    ALERT_NAMES,
    TlsAlert,
    TlsObserver,
    parse_client_hello,
    parse_server_hello,
    version_name,
)


def observe(path: Path, split: int | None = None):
    out = []
    for s in tcp_streams(path):
        t = TlsObserver()
        replay(t, s, split)
        out.append((s, t))
    return out


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------------------------------
# Crafted records
# ---------------------------------------------------------------------------------------


def u8(n: int) -> bytes:
    return bytes([n])


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u24(n: int) -> bytes:
    return struct.pack("!I", n)[1:]


def record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return u8(ctype) + u16(version) + u16(len(body)) + body


def handshake(mtype: int, body: bytes) -> bytes:
    return u8(mtype) + u24(len(body)) + body


def ext(etype: int, body: bytes) -> bytes:
    return u16(etype) + u16(len(body)) + body


def client_hello(sni=None, alpn=(), versions=(), legacy=0x0303, ciphers=(0x1301, 0xC02F)) -> bytes:
    """A ClientHello handshake message (tshark 4.0.17 dissects these without complaint)."""
    exts = b""
    if sni is not None:
        name = sni if isinstance(sni, bytes) else sni.encode()
        entry = u8(0) + u16(len(name)) + name
        exts += ext(0, u16(len(entry)) + entry)
    if alpn:
        protos = [a if isinstance(a, bytes) else a.encode() for a in alpn]
        lst = b"".join(u8(len(p)) + p for p in protos)
        exts += ext(16, u16(len(lst)) + lst)
    if versions:
        vs = b"".join(u16(v) for v in versions)
        exts += ext(43, u8(len(vs)) + vs)
    cs = b"".join(u16(c) for c in ciphers)
    body = u16(legacy) + b"\x11" * 32 + u8(0) + u16(len(cs)) + cs + b"\x01\x00"
    return handshake(1, body + u16(len(exts)) + exts)


HRR = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def server_hello(legacy=0x0303, cipher=0xC02F, selected=None, alpn=None, random=b"\x22" * 32):
    exts = b""
    if selected is not None:
        exts += ext(43, u16(selected))
    if alpn is not None:
        lst = u8(len(alpn)) + alpn.encode()
        exts += ext(16, u16(len(lst)) + lst)
    body = u16(legacy) + random + u8(0) + u16(cipher) + b"\x00" + u16(len(exts)) + exts
    return handshake(2, body)


CCS = record(20, b"\x01")
CH12 = record(22, client_hello("example.com", ["h2", "http/1.1"]))
SH12 = record(
    22,
    server_hello(alpn="h2") + handshake(11, b"\x00" * 300) + handshake(14, b""),
)
CH13 = record(22, client_hello("example.com", ["h2"], [0x7A7A, 0x0304, 0x0303]), 0x0301)
SH13 = record(22, server_hello(cipher=0x1301, selected=0x0304))


def alert(level: int, desc: int) -> bytes:
    return record(21, bytes([level, desc]))


def run(*steps, obs: TlsObserver | None = None) -> TlsObserver:
    """('c'|'s', bytes) / ('gap', 'c'|'s', n) / ('eof', 'c'|'s'); frames 1, 2, ..."""
    t = obs or TlsObserver()
    start = len(t.messages) + 1000 if obs else 1
    for frame, step in enumerate(steps, start=start):
        if step[0] == "gap":
            t.gap(step[1] == "c", step[2], frame, frame)
        elif step[0] == "eof":
            t.eof(step[1] == "c", frame, frame)
        else:
            t.feed(step[0] == "c", step[1], frame, frame)
    return t


# ---------------------------------------------------------------------------------------
# Real captures: alerts (wireshark/alerts.csv, streams.csv; zeek/tls_alerts.csv)
# ---------------------------------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _by_endpoints(results, client: tuple[str, int], server: tuple[str, int]):
    for s, t in results:
        if (s.client, s.server) == (client, server):
            return s, t
    raise AssertionError(f"no stream {client} -> {server}")


def test_every_alert_in_alerts_csv(wireshark_dir):
    rows = _rows(wireshark_dir / "alerts.csv")
    assert rows
    cache: dict[str, list] = {}
    for row in rows:
        results = cache.setdefault(row["file"], observe(wireshark_dir / "captures" / row["file"]))
        c2s = row["direction"] == "c2s"
        src, dst = _endpoint(row["src"]), _endpoint(row["dst"])
        client, server = (src, dst) if c2s else (dst, src)
        _, t = _by_endpoints(results, client, server)
        frame = int(row["frame"])
        mine = [a for a in t.alerts if a.frame == frame and a.from_client == c2s]
        if row["raw_view"] == "plaintext":
            assert [(a.level, a.description, a.encrypted) for a in mine] == [
                (int(row["level"]), int(row["desc"]), False)
            ]
        elif row["raw_view"] == "encrypted_alert_record":
            assert [(a.level, a.description, a.name, a.encrypted) for a in mine] == [
                (None, None, None, True)
            ], row
        else:
            assert row["raw_view"] == "hidden_in_application_data"
            assert mine == [] and t.version == "TLS 1.3"
            rec = t.last_record(c2s)
            assert (rec.content_type, rec.length, rec.frame) == (23, 19, frame)
            assert t.last_record_looks_like_alert(c2s)


def _expected_alerts(raw: str) -> list[tuple[bool, bool]]:
    """streams.csv ``tls_alerts_raw``: 'c2s:encrypted s2c:1/40(...)' -> (from_client, enc)."""
    out = []
    for token in raw.split():
        if token[:4] in ("c2s:", "s2c:"):
            out.append((token[:3] == "c2s", token[4:].startswith("encrypted")))
    return out


TLS_FILES = [
    "challenge01_ooo_stream.pcapng.gz",
    "dhe1.pcapng.gz",
    "dmgr.pcapng",
    "http2-brotli.pcapng",
    "http2-data-reassembly.pcap",
    "http2_follow_multistream.pcapng",
    "many_interfaces.pcapng.1",
    "retrans-tls.pcap",
    "rsa-p-lt-q.pcap",
    "rsasnakeoil2.pcap",
    "tls-fragmented-handshakes.pcap.gz",
    "tls-renegotiation.pcap",
    "tls12-aes128ccm.pcap",
    "tls12-chacha20poly1305.pcap",
    "tls12-dsb.pcapng",
    "tls13-20-chacha20poly1305.pcap",
    "tls13-rfc8446.pcap",
]


@pytest.mark.parametrize("name", TLS_FILES)
def test_streams_csv_alerts_and_nothing_else(wireshark_dir, name):
    rows = [r for r in _rows(wireshark_dir / "streams.csv") if r["file"] == name]
    results = observe(wireshark_dir / "captures" / name)
    assert len(rows) == len(results)
    for row in rows:
        s, t = _by_endpoints(results, _endpoint(row["client"]), _endpoint(row["server"]))
        assert t.is_tls, (name, s.index)
        assert t.synced and not t.anomalies, (name, s.index, t.anomalies)
        got = [(a.from_client, a.encrypted) for a in t.alerts]
        assert got == _expected_alerts(row["tls_alerts_raw"]), (name, s.index)


@pytest.mark.parametrize("split", [None, 1])
def test_zeek_fatal_alerts(zeek_dir, split):
    """zeek/tls_alerts.csv: Zeek's ssl.log for two handshakes that end in a fatal alert."""
    versions = {"-": None, "TLSv12": "TLS 1.2"}
    for row in _rows(zeek_dir / "tls_alerts.csv"):
        ((s, t),) = observe(zeek_dir / "traces" / row["trace"], split)
        assert s.client == (row["orig_h"], int(row["orig_p"]))
        assert t.alerts[-1].name == row["last_alert"]
        assert (t.alerts[-1].level, t.alerts[-1].encrypted, t.alerts[-1].from_client) == (
            2,
            False,
            False,
        )
        assert t.version == versions[row["version"]]
        assert t.cipher == (None if row["cipher"] == "-" else row["cipher"])
        assert t.sni == (None if row["server_name"] == "-" else row["server_name"])
        assert t.handshake_complete is (row["established"] == "T")
        assert t.synced and not t.anomalies


def test_zeek_handshake_failure_details(zeek_dir):
    # tshark: frame 4 client ClientHello; frame 6 server Alert (Fatal, Handshake Failure)
    ((_, t),) = observe(zeek_dir / "traces" / "tls-1.2-handshake-failure.pcap")
    assert t.stage == "client_hello" and t.offered_version == "TLS 1.2"
    assert t.alerts == [TlsAlert(6, t.alerts[0].ts_ns, False, 2, 40, "handshake_failure", False)]
    # tshark -d tcp.port==3000,tls: frame 6 server 2,11,12,13,14; frame 8 client
    # Certificate, ClientKeyExchange, ChangeCipherSpec (+ encrypted Finished); frame 9
    # server Alert (Fatal, Handshake Failure) in plaintext: the server never sent its CCS.
    ((_, t),) = observe(zeek_dir / "traces" / "certificate-request-failed.pcap")
    assert [(m.frame, m.from_client, m.name) for m in t.messages] == [
        (4, True, "ClientHello"),
        (6, False, "ServerHello"),
        (6, False, "Certificate"),
        (6, False, "ServerKeyExchange"),
        (6, False, "CertificateRequest"),
        (6, False, "ServerHelloDone"),
        (8, True, "Certificate"),
        (8, True, "ClientKeyExchange"),
        (8, True, "ChangeCipherSpec"),
    ]
    assert t.stage == "client_finished" and t.offered_version == "TLS 1.3"
    assert t.certificates == 2
    assert [(a.frame, a.name, a.encrypted) for a in t.alerts] == [(9, "handshake_failure", False)]


# ---------------------------------------------------------------------------------------
# Real captures: handshake facts. Literals read with TShark 4.0.17, e.g.
#   tshark -r F -Y 'tls.handshake.type==1 or tls.handshake.type==2' -T fields
#     -e frame.number -e tcp.stream -e tls.handshake.type -e tls.handshake.version
#     -e tls.handshake.extensions.supported_version -e tls.handshake.extensions_server_name
#     -e tls.handshake.ciphersuite -e tls.handshake.extensions_alpn_str
# (-d tcp.port==4433,tls / 8443 / 9131 for the non-standard ports).
# ---------------------------------------------------------------------------------------

# file -> {stream: (version, offered, sni, cipher id, alpn offered, alpn selected, stage)}
TSHARK_TLS = {
    "dhe1.pcapng.gz": {0: ("TLS 1.0", "TLS 1.0", None, 0x0039, [], None, "established")},
    "dmgr.pcapng": {0: ("TLS 1.0", "TLS 1.2", "localhost", 0x002F, [], None, "established")},
    "http2-brotli.pcapng": {
        0: ("TLS 1.2", "TLS 1.2", None, 0xC030, ["h2", "http/1.1"], "h2", "established")
    },
    "http2-data-reassembly.pcap": {
        0: ("TLS 1.2", "TLS 1.2", None, 0xC02B, ["h2", "http/1.1"], "h2", "established")
    },
    "http2_follow_multistream.pcapng": {
        0: (
            "TLS 1.2",
            "TLS 1.2",
            "www.mozilla.org",
            0xC02F,
            ["h2", "http/1.1"],
            "h2",
            "established",
        )
    },
    "rsa-p-lt-q.pcap": {0: ("TLS 1.2", "TLS 1.2", None, 0x0035, ["http/1.1"], None, "established")},
    "rsasnakeoil2.pcap": {
        0: ("SSL 3.0", "SSL 3.0", None, 0x0035, [], None, "established"),
        1: ("SSL 3.0", "SSL 3.0", None, 0x000A, [], None, "established"),
    },
    "tls-renegotiation.pcap": {0: ("TLS 1.2", "TLS 1.2", None, 0x002F, [], None, "established")},
    "tls12-aes128ccm.pcap": {
        0: ("TLS 1.2", "TLS 1.2", "localhost", 0xC0A4, [], None, "established")
    },
    "tls12-chacha20poly1305.pcap": {
        i: ("TLS 1.2", "TLS 1.2", "10.42.0.243", cs, [], None, "established")
        for i, cs in enumerate([0xCCA9, 0xCCA8, 0xCCAA, 0xCCAE, 0xCCAD, 0xCCAC, 0xCCAB])
    },
    "tls12-dsb.pcapng": {
        0: ("TLS 1.2", "TLS 1.2", "example.com", 0xC02F, ["http/1.1"], "http/1.1", "established"),
        1: ("TLS 1.2", "TLS 1.2", "example.net", 0xC02F, ["http/1.1"], "http/1.1", "established"),
    },
    # draft 20: ServerHello.version 0x7f14, offered supported_versions 0x7f14,0x0303,...
    "tls13-20-chacha20poly1305.pcap": {
        i: ("TLS 1.3", "TLS 1.3", "10.42.0.243", 0x1303, [], None, "established") for i in (0, 1)
    },
    "tls13-rfc8446.pcap": {
        i: ("TLS 1.3", "TLS 1.3", None, 0x1301, [], None, "established") for i in (0, 1)
    },
    # ALPN is selected in EncryptedExtensions in TLS 1.3: not visible without keys
    "challenge01_ooo_stream.pcapng.gz": {
        0: ("TLS 1.3", "TLS 1.3", "25th.syn-bit.nl", 0x1302, ["http/1.1"], None, "established")
    },
    # second connection: a ClientHello and nothing else before the capture ends
    "many_interfaces.pcapng.1": {
        0: (
            "TLS 1.2",
            "TLS 1.2",
            "clients6.google.com",
            0xC02B,
            ["http/1.1", "spdy/3.1", "h2-14", "h2"],
            "h2",
            "established",
        ),
        1: (
            None,
            "TLS 1.2",
            "clients6.google.com",
            None,
            ["http/1.1", "spdy/3.1", "h2-14", "h2"],
            None,
            "client_hello",
        ),
    },
}


@pytest.mark.parametrize("split", [None, 3])
@pytest.mark.parametrize("name", list(TSHARK_TLS))
def test_handshake_facts_match_tshark(wireshark_dir, name, split):
    results = dict((s.index, t) for s, t in observe(wireshark_dir / "captures" / name, split))
    for idx, exp in TSHARK_TLS[name].items():
        t = results[idx]
        version, offered, sni, cipher, alpn, selected, stage = exp
        assert t.is_tls and t.synced
        assert (t.version, t.offered_version, t.sni) == (version, offered, sni)
        assert (t.cipher_id, t.alpn, t.alpn_selected, t.stage) == (cipher, alpn, selected, stage)
        assert t.handshake_complete is (stage == "established")


def test_resumed_sessions_and_sslv2_hello(wireshark_dir):
    # rsasnakeoil2 frame 4: "SSLv2 Record Layer: Client Hello", Version: SSL 3.0 (tshark -O tls)
    r = dict((s.index, t) for s, t in observe(wireshark_dir / "captures" / "rsasnakeoil2.pcap"))
    assert r[0].sslv2_hello and r[0].messages[0].name == "SSLv2 ClientHello"
    assert r[0].messages[0].frame == 4 and r[0].certificates == 1
    # stream 1 and dhe1 resume a session: ServerHello then the server's CCS, no Certificate
    # (tshark lists only handshake type 2 in the server's first flight)
    for t in (r[1], observe(wireshark_dir / "captures" / "dhe1.pcapng.gz")[0][1]):
        names = [(m.from_client, m.name) for m in t.messages]
        assert names == [
            (True, "ClientHello"),
            (False, "ServerHello"),
            (False, "ChangeCipherSpec"),
            (True, "ChangeCipherSpec"),
        ]
        assert t.stage == "established" and t.certificates == 0


def test_tls13_early_data_and_compat_ccs(wireshark_dir):
    # tls13-rfc8446 stream 1 sends 0-RTT data: ClientHello, CCS, application data before
    # the ServerHello (frames 7, 8 in tshark); we must still parse the ServerHello right.
    s1 = observe(wireshark_dir / "captures" / "tls13-rfc8446.pcap")[1][1]
    assert [(m.frame, m.from_client, m.name) for m in s1.messages] == [
        (7, True, "ClientHello"),
        (8, True, "ChangeCipherSpec"),
        (9, False, "ServerHello"),
        (9, False, "ChangeCipherSpec"),
    ]
    assert s1.stage == "established" and s1.app_data_bytes(True) > 0


@pytest.mark.parametrize("split", [None, 1, 5])
def test_fragmented_handshakes(wireshark_dir, split):
    """100 connections; each carries 10 ClientHellos of 49 bytes, fragmented over several
    records and segments (tshark: 10 'Client Hello' per stream, tls.handshake.random =
    0x33 * 32, cipher_suites_length 2)."""
    results = observe(wireshark_dir / "captures" / "tls-fragmented-handshakes.pcap.gz", split)
    assert len(results) == 100
    for _, t in results:
        assert [m.name for m in t.messages] == ["ClientHello"] * 10
        assert t.client_hello.random == b"\x33" * 32 and len(t.client_hello.ciphers) == 1
        assert t.stage == "client_hello" and t.offered_version == "TLS 1.2"
        assert t.synced and not t.anomalies and t.server_records == 0


def test_retransmitted_split_record(wireshark_dir):
    # tshark: one Application Data record, tls.record.length 16, split over frames 1 and 2
    ((_, t),) = observe(wireshark_dir / "captures" / "retrans-tls.pcap")
    rec = t.last_record(True)
    assert (rec.content_type, rec.length, rec.frame, rec.complete) == (23, 16, 1, True)
    assert t.app_data_bytes(True) == 16 and t.stage == "none" and t.client_records == 1


def test_tls13_hidden_server_alert_candidate(wireshark_dir):
    """challenge01: the server's last record (frame 1664, 19 bytes, right before its FIN
    at 1665) looks like an encrypted close_notify. alerts.csv does not list it: tshark
    stopped decrypting the server's records long before (after frame 69)."""
    ((_, t),) = observe(wireshark_dir / "captures" / "challenge01_ooo_stream.pcapng.gz")
    rec = t.last_record(False)
    assert (rec.length, rec.frame) == (19, 1664) and t.last_record_looks_like_alert(False)
    assert [r.length for r in t.recent_app_records(False)] == [16401, 16401, 3680, 19]


def test_non_tls_is_rejected(wireshark_dir, zeek_dir):
    for path in [
        wireshark_dir / "captures" / "http-brotli.pcapng",
        wireshark_dir / "captures" / "gitOverTCP.pcap",
        zeek_dir / "traces" / "get.pcap",
        zeek_dir / "traces" / "imap-starttls.pcap",  # STARTTLS: plaintext first
    ]:
        for _, t in observe(path):
            assert t.is_tls is False and not t.alerts


def test_whole_corpora_never_raise(zeek_dir, wireshark_dir):
    paths = sorted((wireshark_dir / "captures").iterdir()) + sorted((zeek_dir / "traces").iterdir())
    for path in paths:
        for s in tcp_streams(path):
            small = sum(len(x[2]) for x in s.steps if x[0] == "data") < 50_000
            for split in (None, 1 if small else 13):
                t = TlsObserver()
                replay(t, s, split)
                assert len(t.anomalies) <= 32 and len(t.messages) <= 64


# ---------------------------------------------------------------------------------------
# Crafted: alerts
# ---------------------------------------------------------------------------------------


def test_alert_names_cover_the_registry():
    assert ALERT_NAMES[0] == "close_notify" and ALERT_NAMES[120] == "no_application_protocol"
    assert len(ALERT_NAMES) == 34
    assert version_name(0x7F1C) == "TLS 1.3" and version_name(0x0301) == "TLS 1.0"


def test_alert_split_across_segments():
    data = CH12 + alert(2, 40)
    t = TlsObserver()
    t.feed(True, CH12, 0, 1)
    t2 = TlsObserver()
    for i, b in enumerate(data):
        t2.feed(True, bytes([b]), i, 100 + i)
    t.feed(True, alert(2, 40)[:3], 0, 2)
    t.feed(True, alert(2, 40)[3:6], 0, 3)
    t.feed(True, alert(2, 40)[6:], 0, 4)
    for obs, frame in ((t, 4), (t2, 100 + len(data) - 1)):
        assert [(a.frame, a.level, a.description, a.name, a.encrypted) for a in obs.alerts] == [
            (frame, 2, 40, "handshake_failure", False)
        ]
        assert obs.sni == "example.com" and obs.alpn == ["h2", "http/1.1"]


def test_server_rejects_hello_with_plaintext_alert():
    t = run(("c", CH13), ("s", alert(2, 70)), ("eof", "s"))
    assert t.is_tls and t.stage == "client_hello" and t.offered_version == "TLS 1.3"
    assert [(a.from_client, a.name) for a in t.alerts] == [(False, "protocol_version")]


def test_several_alerts_in_one_record_and_unknown_codes():
    t = run(("c", CH12), ("s", record(21, b"\x01\x00\x02\xfe")))
    assert [(a.level, a.description, a.name) for a in t.alerts] == [
        (1, 0, "close_notify"),
        (2, 254, "unknown_254"),
    ]
    t = run(("c", CH12), ("s", record(21, b"\x02")))
    assert t.alerts == [] and "odd length" in t.anomalies[0].message


def test_tls12_encrypted_alerts_after_ccs():
    t = run(
        ("c", CH12),
        ("s", SH12),
        ("c", record(22, handshake(16, b"\x00" * 66)) + CCS + record(22, b"\x99" * 40)),
        ("s", CCS + record(22, b"\x98" * 40)),
        ("c", record(23, b"\x01" * 100)),
        ("s", record(23, b"\x02" * 500)),
        ("c", record(21, b"\x03" * 26)),  # an encrypted alert: 26 bytes, level unknown
        ("s", record(21, b"\x04" * 2)),  # two bytes: nothing encrypted is that short
        ("eof", "c"),
    )
    assert t.stage == "established" and t.version == "TLS 1.2" and t.alpn_selected == "h2"
    assert t.certificates == 1 and t.cipher == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert [(a.frame, a.from_client, a.encrypted, a.level) for a in t.alerts] == [
        (7, True, True, None),
        (8, False, False, 4),
    ]
    assert (t.app_data_bytes(True), t.app_data_bytes(False)) == (100, 500)
    assert (t.client_records, t.server_records) == (6, 5)
    names = [m.name for m in t.messages]
    assert names == [
        "ClientHello",
        "ServerHello",
        "Certificate",
        "ServerHelloDone",
        "ClientKeyExchange",
        "ChangeCipherSpec",
        "ChangeCipherSpec",
    ]
    assert t.synced and not t.anomalies


def test_tls12_stages_step_by_step():
    t = run(("c", CH12))
    assert t.stage == "client_hello" and not t.handshake_complete
    run(("s", SH12), obs=t)
    assert t.stage == "server_hello"
    run(("c", record(22, handshake(16, b"\x00" * 10)) + CCS), obs=t)
    assert t.stage == "client_finished"
    run(("c", record(22, b"\x55" * 40)), obs=t)  # encrypted Finished is not parsed
    assert t.stage == "client_finished" and not t.anomalies
    run(("s", CCS), obs=t)
    assert t.stage == "established" and t.handshake_complete


def test_tls13_stages_and_19_byte_heuristic():
    t = run(("c", CH13), ("s", SH13 + CCS + record(23, b"\x01" * 1000) + record(23, b"\x02" * 300)))
    assert (t.stage, t.version, t.cipher) == ("server_hello", "TLS 1.3", "TLS_AES_128_GCM_SHA256")
    assert t.offered_version == "TLS 1.3" and t.alpn == ["h2"]  # GREASE ignored
    run(("c", CCS + record(23, b"\x03" * 53)), obs=t)  # client Finished
    assert t.stage == "client_finished"
    run(("s", record(23, b"\x04" * 200)), obs=t)  # e.g. NewSessionTicket
    assert t.stage == "established"
    run(("s", record(23, b"\x05" * 19)), ("eof", "s"), obs=t)
    assert t.last_record_looks_like_alert(False) and not t.last_record_looks_like_alert(True)
    assert t.alerts == []  # a guess, not an alert: the classifier decides
    assert [r.length for r in t.recent_app_records(False)] == [1000, 300, 200, 19]


def test_tls13_established_by_two_client_records():
    t = run(("c", CH13), ("s", SH13 + record(23, b"\x01" * 90)), ("c", record(23, b"\x03" * 53)))
    assert t.stage == "client_finished"
    run(("c", record(23, b"\x03" * 80)), obs=t)
    assert t.stage == "established"


def test_tls13_plaintext_alert_from_client_after_server_switched():
    # OpenSSL clients send unknown_ca as a plaintext 2-byte record even in TLS 1.3
    t = run(
        ("c", CH13),
        ("s", SH13 + CCS + record(23, b"\x01" * 2000)),
        ("c", CCS + alert(2, 48)),
        ("eof", "c"),
    )
    assert [(a.from_client, a.level, a.name, a.encrypted) for a in t.alerts] == [
        (True, 2, "unknown_ca", False)
    ]
    assert t.stage == "server_hello"


def test_hello_retry_request():
    t = run(
        ("c", CH13),
        ("s", record(22, server_hello(cipher=0x1301, selected=0x0304, random=HRR)) + CCS),
    )
    assert t.hello_retry and t.stage == "client_hello" and t.version == "TLS 1.3"
    ch2 = record(22, client_hello("second.example", [], [0x0304]))
    run(("c", CCS + ch2), ("s", SH13 + record(23, b"\x01" * 100)), obs=t)
    assert t.stage == "server_hello" and t.sni == "example.com"  # the first hello's SNI
    assert [m.name for m in t.messages].count("ClientHello") == 2
    assert [m.name for m in t.messages][1] == "HelloRetryRequest"
    assert not t.anomalies


def test_draft_tls13_server_hello_layout():
    # drafts <= 21: ServerHello.version = 0x7fNN, no session id, no compression method
    body = u16(0x7F14) + b"\x22" * 32 + u16(0x1303) + u16(0)
    t = run(("c", CH13), ("s", record(22, handshake(2, body))))
    assert (t.version, t.version_id, t.cipher_id) == ("TLS 1.3", 0x7F14, 0x1303)


# ---------------------------------------------------------------------------------------
# Crafted: framing, decisions, bounds
# ---------------------------------------------------------------------------------------


def test_sslv2_compatible_client_hello():
    specs = bytes.fromhex("010080 000035 00002f")
    challenge = b"\x77" * 16
    body = (
        b"\x01" + u16(0x0301) + u16(len(specs)) + u16(0) + u16(len(challenge)) + specs + challenge
    )
    hello = bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body
    t = run(("c", hello[:2]), ("c", hello[2:7]), ("c", hello[7:]))
    assert t.is_tls and t.sslv2_hello and t.offered_version == "TLS 1.0"
    assert t.stage == "client_hello" and t.messages[0].frame == 1  # its first byte
    run(("s", record(22, server_hello(legacy=0x0301, cipher=0x002F), 0x0301)), obs=t)
    assert t.version == "TLS 1.0" and t.synced
    t = run(("s", hello))  # only a client may start with SSLv2
    assert t.is_tls is False


@pytest.mark.parametrize(
    "first, verdict",
    [
        (b"\x16", None),
        (b"\x16\x03", None),
        (b"\x16\x03\x01\x00", None),
        (b"\x16\x03\x01\x00\x10", True),
        (b"\x17\x03\x03\x40\x00", True),  # mid-stream application data
        (b"\x16\x03\x01\xff\xff", False),  # record bomb as the first record
        (b"\x16\x02\x00\x00\x10", False),
        (b"\x16\x03\x05\x00\x10", False),
        (b"\x19\x03\x01\x00\x10", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"SSH-2.0-x\r\n", False),
    ],
)
def test_decision(first, verdict):
    t = run(("c", first))
    assert t.is_tls is verdict


def test_first_bytes_from_server_decide():
    t = run(("s", record(23, b"\x00" * 50)), ("c", record(23, b"\x00" * 20)))
    assert t.is_tls and t.stage == "none" and t.server_records == 1 and t.client_records == 1


def test_record_bomb_mid_stream_loses_sync():
    t = run(("c", CH12), ("s", b"\x17\x03\x03\xff\xff" + b"\x00" * 100), ("s", SH12))
    assert t.is_tls and not t.synced and t.stage == "client_hello"
    assert "record length 65535" in t.anomalies[0].message
    assert t.last_record(False) is None


def test_garbage_record_type_loses_sync():
    t = run(("c", CH12), ("c", b"\x30\x03\x03\x00\x02ab"), ("c", alert(2, 40)))
    assert not t.synced and t.alerts == [] and "bad record" in t.anomalies[0].message


def test_gaps():
    # inside application data: counted; over a record header: sync is lost
    t = run(
        ("c", CH12), ("s", record(23, b"\x00" * 100)[:30]), ("gap", "s", 75), ("s", alert(1, 0))
    )
    assert t.synced and t.app_data_bytes(False) == 100 and t.alerts[0].name == "close_notify"
    run(("gap", "s", 200), obs=t)
    assert not t.synced and "not captured" in t.anomalies[-1].message
    # inside a handshake message we need: the record layer survives, the handshake not
    t = run(("c", CH12[:20]), ("gap", "c", len(CH12) - 20), ("c", alert(2, 10)))
    assert t.synced and t.sni is None and t.alerts[0].name == "unexpected_message"
    assert t.anomalies[0].message == "handshake bytes not captured"
    # inside an uninteresting handshake message (a Certificate body): nothing lost
    cut = 5 + len(server_hello(alpn="h2")) + 4 + 10  # 10 bytes into the Certificate body
    t = run(("c", CH12), ("s", SH12[:cut]), ("gap", "s", 200), ("s", SH12[cut + 200 :]))
    assert t.synced and not t.anomalies and [m.name for m in t.messages][-1] == "ServerHelloDone"
    # an alert record with a hole in it
    t = run(("c", CH12), ("s", alert(2, 40)[:5]), ("gap", "s", 2))
    assert [(a.level, a.description, a.encrypted) for a in t.alerts] == [(None, None, False)]


def test_eof_inside_a_record():
    t = run(("c", CH12), ("s", record(23, b"\x00" * 100)[:50]), ("eof", "s"))
    rec = t.last_record(False)
    assert rec.length == 100 and not rec.complete
    assert t.anomalies[-1].message == "closed inside a record: 45 of 100 bytes"
    t = run(("c", CH12), ("s", b"\x15\x03"), ("eof", "s"))
    assert t.anomalies[-1].message == "closed inside a record header"


def test_untrusted_names_are_decoded_and_truncated():
    t = run(("c", record(22, client_hello(b"\xff\xfebad\xc3", [b"a" * 255, b"h2\x00"]))))
    assert t.sni == "\ufffd\ufffdbad\ufffd"
    assert len(t.alpn[0]) == 255 and t.alpn[1] == "h2\x00"
    t = run(("c", record(22, client_hello(b"n" * 1000))))
    assert t.sni == "n" * 255


def test_malformed_hellos_do_not_raise():
    for body in (b"", b"\x03\x03", b"\x03\x03" + b"\x00" * 32 + b"\xff", client_hello("x")[4:-3]):
        t = run(("c", record(22, handshake(1, body))))
        assert t.is_tls and t.stage == "client_hello"
    t = run(("c", record(22, handshake(1, b"\x03\x03")))).anomalies
    assert t and "too short" in t[0].message


def test_huge_handshake_message_is_skipped_not_buffered():
    big = u8(1) + u24(100_000)
    t = run(("c", record(22, big + b"\x00" * 16000)))
    for _ in range(6):
        run(("c", record(22, b"\x00" * 16000)), obs=t)
    assert len(t._c.hs_buf) == 0 and "not decoded" in t.anomalies[0].message
    run(("c", alert(2, 80)), obs=t)
    assert t.alerts[0].name == "internal_error" and t.synced


def test_unknown_handshake_type_stops_handshake_parsing_only():
    t = run(("c", record(22, handshake(99, b"x"))), ("c", record(23, b"y" * 10)))
    assert t.synced and t.app_data_bytes(True) == 10
    assert "unknown handshake message type 99" in t.anomalies[0].message


def test_zero_length_and_heartbeat_records():
    t = run(("c", CH12), ("s", record(23, b"") + record(24, b"\x01" * 20) + record(23, b"z")))
    assert t.synced and t.server_records == 3 and t.app_data_bytes(False) == 1


def test_bounded_lists():
    t = run(("c", CH12))
    for _ in range(500):
        t.feed(False, alert(1, 0), 0, 1)
    assert len(t.alerts) == 64
    t = run(("c", CH12))
    for _ in range(200):
        t.feed(False, record(22, handshake(0, b"")), 0, 1)  # HelloRequest
    assert len(t.messages) == 64


def test_opaque_records_are_counted_without_looking():
    class LengthOnly:
        def __len__(self) -> int:
            return 1000

    t = run(("c", CH12), ("s", b"\x17\x03\x03\x40\x00"))
    for _ in range(16):
        t.feed(False, LengthOnly(), 0, 1)  # type: ignore[arg-type]
    assert t.app_data_bytes(False) == 16000 and not t.last_record(False).complete


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=25), st.data())
def test_random_bytes_never_raise(chunks, data):
    t = TlsObserver()
    if data.draw(st.booleans()):
        t.feed(True, CH13, 0, 0)
    for i, (fc, chunk) in enumerate(chunks):
        action = data.draw(st.integers(0, 9))
        if action == 0:
            t.gap(fc, len(chunk) + 1, i, i)
        elif action == 1:
            t.eof(fc, i, i)
        else:
            t.feed(fc, chunk, i, i)
        t.stage, t.synced, t.last_record(fc), t.app_data_bytes(fc)  # noqa: B018
    dirs = [d for d in (t._c, t._s) if d is not None]  # made on first use
    assert all(len(d.hs_buf) <= 70_000 for d in dirs)


PIECES = [CH12, CH13, SH12, SH13, CCS, alert(2, 40), alert(1, 0), record(23, b"x" * 19)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from(PIECES)), max_size=12),
    st.lists(st.integers(1, 40), max_size=10),
    st.data(),
)
def test_tls_shaped_streams_split_anywhere(pieces, cuts, data):
    """Valid records, any interleaving: any segmentation gives the same result."""

    def play(cut_sizes):
        t = TlsObserver()
        for fc, blob in pieces:
            pos, k = 0, 0
            while pos < len(blob):
                size = cut_sizes[k % len(cut_sizes)] if cut_sizes else len(blob)
                t.feed(fc, blob[pos : pos + size], 0, 1)
                pos, k = pos + size, k + 1
        return t

    whole, split = play([]), play(cuts)
    assert whole.alerts == split.alerts and whole.messages == split.messages
    assert (whole.stage, whole.version, whole.sni, whole.synced) == (
        split.stage,
        split.version,
        split.sni,
        split.synced,
    )
    mutated = bytearray(b"".join(b for _, b in pieces))
    if mutated:
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] ^= data.draw(st.integers(1, 255))
        t = TlsObserver()
        t.feed(True, bytes(mutated), 0, 1)


def test_short_server_hello_once_raised():
    t = run(("c", CH12), ("s", record(22, handshake(2, b"\x03\x03" + b"\x00" * 32))))
    assert t.synced and t.anomalies[0].message == "ServerHello truncated"


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from([b"", client_hello("a.example", ["h2"], [0x0304])[4:60]]),
)
def test_hello_parsers_are_total(blob, prefix):
    for parse in (parse_client_hello, parse_server_hello):
        h = parse(prefix + blob)
        assert h.sni is None or len(h.sni) <= 255
        assert len(h.alpn) <= 16


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6), st.booleans())
def test_handshake_records_with_random_bodies(bodies, tls13):
    """Plausible record framing around random handshake bodies: never raises."""
    t = TlsObserver()
    t.feed(True, CH13 if tls13 else CH12, 0, 1)
    for i, body in enumerate(bodies):
        mtype = (1, 2, 11, 14, 4, 99)[i % 6]
        t.feed(i % 2 == 0, record(22, handshake(mtype, body)), i, i)


FLOW_PIECES = [
    CH12,
    CH13,
    SH12,
    SH13 + CCS + record(23, b"\x01" * 90),
    CCS,
    record(23, b"x" * 19),
    record(23, b"y" * 700) + record(23, b""),
    record(24, b"\x01" * 3),
    alert(2, 40),
    alert(1, 0),
    record(21, b"\x03" * 26),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(FLOW_PIECES)), max_size=12))
def test_whole_records_match_byte_by_byte(pieces):
    """Records read straight from a segment (the fast path) leave the same state as the
    same bytes fed one at a time (headers assembled in the buffer)."""

    def play(whole: bool) -> TlsObserver:
        t = TlsObserver()
        for i, (fc, blob) in enumerate(pieces):
            for chunk in [blob] if whole else [blob[j : j + 1] for j in range(len(blob))]:
                t.feed(fc, chunk, i, i)
        t.eof(True, 99, 99)
        return t

    a, b = play(True), play(False)
    for name in ("is_tls", "stage", "version", "cipher", "sni", "alpn", "alerts", "messages"):
        assert getattr(a, name) == getattr(b, name), name
    assert (a.anomalies, a.synced, a.client_records, a.server_records) == (
        b.anomalies,
        b.synced,
        b.client_records,
        b.server_records,
    )
    for fc in (True, False):
        assert a.app_data_bytes(fc) == b.app_data_bytes(fc)
        assert a.last_record(fc) == b.last_record(fc)
        assert a.recent_app_records(fc) == b.recent_app_records(fc)
        assert a.last_record_looks_like_alert(fc) == b.last_record_looks_like_alert(fc)


def test_fresh_observer_queries():
    """Per-direction state is made on first use; until then the queries answer as for
    a direction that sent nothing."""
    t = TlsObserver()
    assert (t.is_tls, t.stage, t.synced, t.client_records, t.server_records) == (
        None,
        "none",
        True,
        0,
        0,
    )
    for fc in (True, False):
        assert t.app_data_bytes(fc) == 0 and t.last_record(fc) is None
        assert t.recent_app_records(fc) == [] and not t.last_record_looks_like_alert(fc)
    t.feed(False, b"SSH-2.0-x\r\n", 0, 1)
    assert t.is_tls is False and t.client_records == 0
    t.feed(True, CH12, 0, 2)  # a direction first seen after the verdict: ignored
    assert t.client_records == 0 and t.stage == "none"
