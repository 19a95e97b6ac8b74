"""HttpObserver against real captures (Wireshark and Zeek test corpora) and crafted edges.

Captures are turned into per-direction byte streams by ``streams.py`` (shared with
test_tls_parser.py) and replayed into an observer the way the connection tracker does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import Stream, replay, tcp_streams

from pcapdiag import _http
from pcapdiag._http import (
    HttpEvent,
    HttpObserver,
    content_length,
    keep_alive_timeout,
    parse_request_head,
    parse_response_head,
    wants_close,
)

# ---------------------------------------------------------------------------------------
# Helpers for the tests below
# ---------------------------------------------------------------------------------------


def observe(path: Path, split: int | None = None) -> list[tuple[Stream, HttpObserver]]:
    out = []
    for s in tcp_streams(path):
        o = HttpObserver()
        replay(o, s, split)
        out.append((s, o))
    return out


def kinds(events: list[HttpEvent]) -> list[str]:
    return [e.kind for e in events]


def of(events: list[HttpEvent], kind: str) -> list[HttpEvent]:
    return [e for e in events if e.kind == kind]


def run(*steps, obs: HttpObserver | None = None) -> HttpObserver:
    """Feed ('c'|'s', bytes) / ('gap', 'c'|'s', n) / ('eof', 'c'|'s') steps, frames 1, 2, ..."""
    o = obs or HttpObserver()
    for frame, step in enumerate(steps, start=1):
        if step[0] == "gap":
            o.gap(step[1] == "c", step[2], frame * 1000, frame)
        elif step[0] == "eof":
            o.eof(step[1] == "c", frame * 1000, frame)
        else:
            o.feed(step[0] == "c", step[1], frame * 1000, frame)
    return o


# ---------------------------------------------------------------------------------------
# Real captures. Expected values were read with TShark 4.0.17 (the version that made the
# corpus CSVs), e.g.
#   tshark -r F -d tcp.port==8000,http -d tcp.port==27272,http
#          -Y 'http.request or http.response' -T fields -e frame.number -e tcp.stream
#          -e http.request.method -e http.request.uri -e http.response.code
#          -e http.content_length -e http.request_in
# tshark reports a message at the frame that completes it, which is our *_end frame.
# ---------------------------------------------------------------------------------------

# file -> {tcp.stream: [(request frame, method, uri, response frame or None, status)]}
TSHARK_HTTP = {
    ("wireshark", "http.pcap"): {0: [(1, "HEAD", "/v4/iuident.cab?0307011208", None, None)]},
    ("wireshark", "http-brotli.pcapng"): {0: [(4, "GET", "/test.txt", 6, 200)]},
    ("zeek", "get.pcap"): {0: [(4, "GET", "/download/CHANGES.bro-aux.txt", 9, 200)]},
    ("zeek", "tcp-http-with-padding.pcap"): {0: [(18, "GET", "/", 21, 200)]},
    ("zeek", "zeek-image-post-1080-8000-x.pcap"): {0: [(7, "POST", "/", 15, 200)]},
    ("zeek", "connect-with-header.pcap"): {0: [(5, "CONNECT", "secure.newegg.com:443", 7, 200)]},
    ("zeek", "missing-syn.pcap"): {0: [(3, "GET", "/", 16, 200)]},
    ("zeek", "http-on-irc-port-missing-syn.pcapng"): {
        0: [(3, "GET", "/download/CHANGES.bro-aux.txt", 8, 200)]
    },
    ("wireshark", "grpc_web.pcapng.gz"): {
        0: [
            (4, "POST", "/greet.Greeter/SayHello", 6, 200),
            (8, "POST", "/greet.Greeter/SayHello", 10, 200),
        ],
        5: [
            (137, "POST", "/greet.Greeter/SayHello", 143, 200),
            (145, "POST", "/greet.Greeter/SayHello", 149, 200),
        ],
        7: [(235, "POST", "/greet.Greeter/SayHello", 240, 200)],
    },
    ("zeek", "wikipedia.pcap"): {
        # tshark -Y http.response -e tcp.stream -e http.request_in -e frame.number
        0: [(6, "GET", "/", 7, 304)],
        1: [(12, "GET", "/skins-1.5/monobook/main.css", 14, 304)],
        2: [(56, "GET", None, 77, 304), (79, "GET", None, 100, 304)],
        3: [
            (53, "GET", "/wikipedia/commons/6/63/Wikipedia-logo.png", 74, 304),
            (76, "GET", None, 99, 304),
        ],
        4: [(59, "GET", None, 81, 304), (83, "GET", None, 101, 304)],
        5: [(64, "GET", None, 88, 304), (91, "GET", None, 104, 304)],
        6: [(65, "GET", None, 86, 304), (92, "GET", None, 103, 304)],
        7: [(68, "GET", None, 93, 304), (95, "GET", None, 107, 304)],
        8: [(71, "GET", "/images/wikimedia-button.png", 97, 304)],
    },
}


def _corpus(zeek_dir: Path, wireshark_dir: Path, where: str, name: str) -> Path:
    return (zeek_dir / "traces" if where == "zeek" else wireshark_dir / "captures") / name


@pytest.mark.parametrize("split", [None, 7])
@pytest.mark.parametrize("key", list(TSHARK_HTTP), ids=lambda k: k[1])
def test_requests_and_responses_match_tshark(zeek_dir, wireshark_dir, key, split):
    results = observe(_corpus(zeek_dir, wireshark_dir, *key), split)
    expected = TSHARK_HTTP[key]
    http_streams = {s.index: o for s, o in results if o.is_http}
    assert sorted(http_streams) == sorted(expected)
    for idx, pairs in expected.items():
        o = http_streams[idx]
        assert o.synced, [e.message for e in of(o.events, "anomaly")]
        req_ends = of(o.events, "request_end")
        reqs = of(o.events, "request")
        finals = [e for e in of(o.events, "response") if e.status >= 200]
        resp_ends = of(o.events, "response_end")
        assert [e.frame for e in req_ends] == [p[0] for p in pairs]
        assert [e.method for e in reqs] == [p[1] for p in pairs]
        for e, p in zip(reqs, pairs, strict=True):
            assert p[2] is None or e.target == p[2]
        answered = [p for p in pairs if p[3] is not None]
        assert [e.frame for e in resp_ends] == [p[3] for p in answered]
        assert [e.status for e in finals] == [p[4] for p in answered]
        assert [e.index for e in finals] == list(range(len(answered)))
        assert o.requests == len(pairs) and o.responses == len(answered)
        assert o.outstanding_requests == len(pairs) - len(answered)
        assert not o.request_in_progress and not o.response_in_progress


def test_body_sizes_match_tshark_content_length(zeek_dir, wireshark_dir):
    # tshark http.content_length: http-brotli 52, get 4705, image POST 5816 / 37
    ((_, o),) = observe(wireshark_dir / "captures" / "http-brotli.pcapng")
    assert of(o.events, "response")[0].content_length == 52
    assert of(o.events, "response_end")[0].body_bytes == 52
    ((_, o),) = observe(zeek_dir / "traces" / "get.pcap")
    assert of(o.events, "response_end")[0].body_bytes == 4705
    ((_, o),) = observe(zeek_dir / "traces" / "zeek-image-post-1080-8000-x.pcap")
    assert of(o.events, "request")[0].content_length == 5816
    assert [e.body_bytes for e in of(o.events, "request_end")] == [5816]
    assert [e.body_bytes for e in of(o.events, "response_end")] == [37]
    # tshark: "HTTP/1.0 200 OK", Content-Length 6, then the server's FIN
    ((_, o),) = observe(zeek_dir / "traces" / "tcp-http-with-padding.pcap")
    resp = of(o.events, "response")[0]
    assert resp.version == "1.0" and resp.close and resp.content_length == 6


def test_http_ooo_reassembled_requests(wireshark_dir):
    """Crafted out-of-order capture. tshark's HTTP dissector gives up on most of it (it
    lists only PUT /4), so the expectation is the byte stream `tshark -qz follow,tcp,raw,0`
    prints: PUT /1 (4-byte body), GET /2, PUT /3 (6), PUT /4 (5), PUT /5 (chunked 'DATA')."""
    ((_, o),) = observe(wireshark_dir / "captures" / "http-ooo.pcap")
    reqs = of(o.events, "request")
    assert [(e.method, e.target) for e in reqs] == [
        ("PUT", "/1"),
        ("GET", "/2"),
        ("PUT", "/3"),
        ("PUT", "/4"),
        ("PUT", "/5"),
    ]
    assert [e.body_bytes for e in of(o.events, "request_end")] == [4, 0, 6, 5, 4]
    assert reqs[4].chunked and reqs[4].headers["transfer-encoding"] == "chunked"
    assert o.synced and o.outstanding_requests == 5 and o.responses == 0
    assert of(o.events, "request_end")[3].frame == 11  # tshark: PUT /4 at frame 11


def test_http_ooo2_one_sided(wireshark_dir):
    # SYN, then "PUT /0" with a 6-byte body delivered out of order (tshark follow)
    ((_, o),) = observe(wireshark_dir / "captures" / "http-ooo2.pcap")
    assert [(e.kind, e.frame) for e in o.events] == [("request", 3), ("request_end", 6)]
    assert of(o.events, "request_end")[0].body_bytes == 6


def test_response_not_captured_loses_sync_instead_of_guessing(zeek_dir):
    # miss_end_data: the server's 2902 response bytes are missing, only its FIN is there
    ((_, o),) = observe(zeek_dir / "traces" / "miss_end_data.pcap")
    assert o.requests == 1 and o.responses == 0
    assert not o.synced and o.state(False) == "lost"
    (anomaly,) = of(o.events, "anomaly")
    assert "2902 bytes not captured" in anomaly.message and anomaly.frame == 6


def test_connect_tunnel_becomes_opaque(zeek_dir):
    ((_, o),) = observe(zeek_dir / "traces" / "connect-with-header.pcap")
    assert o.opaque_reason == "connect" and o.synced
    assert o.state(True) == o.state(False) == "opaque"
    resp = of(o.events, "response")[0]
    assert resp.reason == "Connection Established" and resp.version == "1.0"
    assert kinds(o.events) == ["request", "request_end", "response", "response_end"]


def test_chunk_size_overflow_is_refused(zeek_dir):
    # Zeek's "chunk_2pow64_overflow": chunk size 0x10000000000000000 hides a second request
    ((_, o),) = observe(zeek_dir / "traces" / "variant-01-chunk_2pow64_overflow.pcap")
    assert o.requests == 1 and not o.synced
    assert "chunk-size" in of(o.events, "anomaly")[-1].message


def test_server_answering_with_another_protocol(zeek_dir):
    ((_, o),) = observe(zeek_dir / "traces" / "http-to-ssh.pcap")
    assert o.is_http and o.requests == 1 and o.outstanding_requests == 1
    assert not o.synced and "SSH-2.0" in of(o.events, "anomaly")[0].message


@pytest.mark.parametrize(
    "name",
    [
        "dhe1.pcapng.gz",
        "gitOverTCP.pcap",
        "dtn_tcpclv4_bpv7_transfer.pcapng",
        "smb311-lz77-lz77huff-lznt1.pcap.gz",
        "packet-h2-14_headers.pcapng",
    ],
)
def test_other_protocols_are_not_http(wireshark_dir, name):
    for s, o in observe(wireshark_dir / "captures" / name):
        assert o.is_http is False, s.index
        assert not o.events


def test_whole_corpora_never_raise(zeek_dir, wireshark_dir):
    paths = sorted((wireshark_dir / "captures").iterdir()) + sorted((zeek_dir / "traces").iterdir())
    for path in paths:
        for s in tcp_streams(path):
            small = sum(len(x[2]) for x in s.steps if x[0] == "data") < 50_000
            for split in (None, 1 if small else 13):
                replay(HttpObserver(), s, split)


# ---------------------------------------------------------------------------------------
# Crafted edge cases
# ---------------------------------------------------------------------------------------

REQ = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nServer: s\r\n\r\n"
    b'5;name=value;x="q;x"\r\nhello\r\n'
    b"1A  \r\n" + b"z" * 26 + b"\r\n"
    b"0\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n"
)
PIPELINE = (
    REQ
    + b"POST /up HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    + b"\r\n"  # a stray CRLF between messages is tolerated
    + b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    + b"HEAD /h HTTP/1.1\r\n\r\n"
)
RESPONSES = (
    CHUNKED
    + b"HTTP/1.1 100 Continue\r\n\r\n"
    + b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    + b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
    + b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # HEAD: no body
    + b"HTTP/1.0 200 OK\r\n\r\nuntil close"
)


def conversation(split_c: list[int], split_s: list[int]) -> list[HttpEvent]:
    """All of PIPELINE, then all of RESPONSES, each cut at the given offsets."""
    o = HttpObserver()
    for fc, data, cuts in ((True, PIPELINE, split_c), (False, RESPONSES, split_s)):
        bounds = [0, *sorted(set(cuts)), len(data)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            o.feed(fc, data[a:b], 0, 1)
    o.eof(False, 0, 2)
    return o.events


def test_pipelined_conversation():
    events = conversation([], [])
    assert [(e.kind, e.index, e.method, e.status) for e in events if e.kind != "anomaly"] == [
        ("request", 0, "GET", None),
        ("request_end", 0, "GET", None),
        ("request", 1, "POST", None),
        ("request_end", 1, "POST", None),
        ("request", 2, "PUT", None),
        ("request_end", 2, "PUT", None),
        ("request", 3, "HEAD", None),
        ("request_end", 3, "HEAD", None),
        ("response", 0, "GET", 200),
        ("response_end", 0, "GET", 200),
        ("response", 1, "POST", 100),
        ("response", 1, "POST", 201),
        ("response_end", 1, "POST", 201),
        ("response", 2, "PUT", 204),
        ("response_end", 2, "PUT", 204),
        ("response", 3, "HEAD", 200),
        ("response_end", 3, "HEAD", 200),
        ("response", None, None, 200),
        ("response_end", None, None, 200),
    ]
    ends = of(events, "response_end")
    assert [e.body_bytes for e in ends] == [31, 2, 0, 0, len(b"until close")]
    assert [e.close_delimited for e in ends] == [False] * 4 + [True]
    assert of(events, "request_end")[2].body_bytes == 3
    first = of(events, "response")[0]
    assert first.chunked and first.headers == {"transfer-encoding": "gzip, chunked", "server": "s"}
    assert of(events, "response")[-1].close  # HTTP/1.0 without keep-alive
    assert [e.message for e in of(events, "anomaly")] == ["response without a matching request"]


def test_every_single_cut_gives_the_same_events():
    whole = conversation([], [])
    for i in range(1, len(PIPELINE)):
        assert conversation([i], []) == whole, i
    for i in range(1, len(RESPONSES)):
        assert conversation([], [i]) == whole, i


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(1, len(PIPELINE) - 1), max_size=40),
    st.lists(st.integers(1, len(RESPONSES) - 1), max_size=60),
)
def test_any_split_gives_the_same_events(cuts_c, cuts_s):
    assert conversation(cuts_c, cuts_s) == conversation([], [])


def test_byte_by_byte_with_frames():
    o = HttpObserver()
    for i, b in enumerate(REQ):
        o.feed(True, bytes([b]), i, 100 + i)
    req, end = o.events
    assert (req.kind, req.frame, end.kind, end.frame) == (
        "request",
        100,
        "request_end",
        100 + len(REQ) - 1,
    )
    assert req.headers == {"host": "example.com", "user-agent": "t"}


def test_100_continue_keeps_the_request_outstanding():
    o = run(("c", b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"))
    assert o.request_in_progress and o.outstanding_requests == 1
    run(("s", b"HTTP/1.1 100 Continue\r\n\r\n"), obs=o)
    assert o.outstanding_requests == 1 and not o.response_in_progress
    assert o.interim_responses == 1 and o.responses == 0
    run(("c", b"data"), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), obs=o)
    assert not o.request_in_progress and o.outstanding_requests == 0
    assert o.response_in_progress
    assert (o.response_expected_bytes, o.response_received_bytes) == (5, 2)
    assert o.last_response.status == 200 and o.last_response.index == 0


def test_truncated_response_then_server_fin():
    o = run(
        ("c", REQ),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: keep-alive\r\n"),
        ("s", b"Keep-Alive: timeout=5, max=100\r\n\r\nabc"),
        ("eof", "s"),
    )
    assert o.response_in_progress
    assert (o.response_expected_bytes, o.response_received_bytes) == (100, 3)
    assert o.outstanding_requests == 0 and o.synced
    assert o.last_response.keep_alive_timeout_s == 5.0 and not o.last_response.close
    assert of(o.events, "response_end") == []
    assert of(o.events, "anomaly")[0].message == "server closed after 3 of 100 body bytes"
    assert o.state(False) == "body"


def test_server_fin_right_after_request():
    o = run(
        ("c", REQ), ("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), ("eof", "s")
    )
    assert o.outstanding_requests == 1 and not o.response_in_progress
    assert o.last_request.index == 1 and o.events[-1].kind == "response_end"


def test_fin_inside_response_head():
    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nContent-Le"), ("eof", "s"))
    assert o.response_in_progress and o.outstanding_requests == 0
    assert o.response_expected_bytes is None and o.response_received_bytes == 0
    assert o.state(False) == "head"
    assert "closed inside a message head" in o.events[-1].message


def test_close_delimited_response():
    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\n\r\nabc"), ("s", b"def"))
    assert o.response_in_progress and o.response_expected_bytes is None
    assert o.response_received_bytes == 6 and o.state(False) == "body_until_close"
    run(("gap", "s", 10), ("eof", "s"), obs=o)
    end = o.events[-1]
    assert (end.kind, end.close_delimited, end.body_bytes, end.gap_bytes) == (
        "response_end",
        True,
        16,
        10,
    )
    assert not o.response_in_progress


def test_head_204_304_have_no_body_even_with_content_length():
    o = run(
        ("c", b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
        ("s", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
        ("s", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
    )
    assert [(e.status, e.body_bytes) for e in of(o.events, "response_end")] == [
        (200, 0),
        (304, 0),
        (204, 0),
    ]
    assert o.synced and not o.response_in_progress


def test_gap_inside_body_is_counted():
    o = run(
        ("c", REQ),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
        ("gap", "s", 5),
        ("s", b"cde"),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
    )
    end = of(o.events, "response_end")[0]
    assert (end.body_bytes, end.gap_bytes, end.frame) == (10, 5, 4)
    assert o.synced and len(of(o.events, "response_end")) == 2


def test_gap_inside_chunk_data_is_counted_but_not_over_a_size_line():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    o = run(("c", REQ), ("s", head + b"10\r\nab"), ("gap", "s", 14), ("s", b"\r\n0\r\n\r\n"))
    assert o.synced and of(o.events, "response_end")[0].body_bytes == 16
    o = run(("c", REQ), ("s", head + b"10\r\nab"), ("gap", "s", 20))
    assert not o.synced and "chunked framing" in o.events[-1].message


def test_gap_inside_headers_loses_sync():
    o = run(("c", b"GET / HTTP/1.1\r\nHo"), ("gap", "c", 30), ("c", b"st: x\r\n\r\n"))
    assert not o.synced and o.is_http and o.requests == 0
    assert o.state(True) == "lost" and o.state(False) == "idle"
    (anomaly,) = of(o.events, "anomaly")
    assert anomaly.message.startswith("lost sync: 30 bytes not captured") and anomaly.frame == 2
    run(("c", REQ), obs=o)  # ignored from now on
    assert o.requests == 0


def test_garbage_after_a_message():
    o = run(("c", REQ), ("c", b"\x16\x03\x01\x02\x00garbage\r\n\r\n"), ("c", REQ))
    assert o.is_http is True and not o.synced and o.requests == 1
    assert "garbage where a request line was expected" in of(o.events, "anomaly")[0].message


@pytest.mark.parametrize(
    "first",
    [
        b"\x16\x03\x01\x02\x00\x01",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"220 smtp.example.com ESMTP\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/2\r\n",
        b"G\x00",
    ],
)
def test_not_http(first):
    o = run(("c", first))
    assert o.is_http is False and o.events == []
    run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\n\r\n"), obs=o)
    assert o.events == []


def test_decision_waits_for_enough_bytes():
    o = run(("c", b"GE"))
    assert o.is_http is None
    run(("c", b"T /x HT"), obs=o)
    assert o.is_http is None
    run(("c", b"TP/1.1\r\n"), obs=o)
    assert o.is_http is True and o.events == []  # the head is not complete yet
    o = run(("c", b"GET /x\r\n"))  # HTTP/0.9 style: not supported
    assert o.is_http is False
    o = run(("c", b"147.32.82.195"), ("eof", "c"))  # could still be a method, then FIN
    assert o.is_http is False and o.events == []


def test_capture_starting_with_a_response():
    o = run(
        ("s", b"body of an earlier response\r\n"),
    )
    assert o.is_http is False
    o = run(("s", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), ("c", REQ))
    assert o.is_http and not o.roles_flipped
    resp = of(o.events, "response")[0]
    assert resp.index is None and resp.method is None
    assert [e.kind for e in o.events if e.kind == "anomaly"] == []
    assert o.outstanding_requests == 1 and of(o.events, "request")[0].index == 0


def test_roles_flipped_by_the_tracker():
    # the tracker thought the server was the client (mid-stream capture, first packet)
    o = run(("s", REQ), ("c", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert o.is_http and o.roles_flipped
    req = of(o.events, "request")[0]
    resp = of(o.events, "response")[0]
    assert req.from_client is False and resp.from_client is True and resp.index == 0
    assert o.outstanding_requests == 0 and o.synced


def test_tolerated_syntax():
    o = run(
        ("c", b"\r\n\r\nGET /lf HTTP/1.1\nHost: a\nX-Folded: one\n two\nContent-Length: 2\n\nok"),
        ("c", b"GET /sp  HTTP/1.1 \r\nConnection: Keep-Alive, Upgrade-Insecure\r\nHost:b\r\n\r\n"),
        ("s", b"HTTP/1.1 200\nContent-Length: 0\n\n"),
        ("s", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: max=5, timeout=2.5\r\n"),
        ("s", b"Content-Length: 3, 3\r\nBroken header line\r\n\r\nabc"),
    )
    assert o.synced
    reqs = of(o.events, "request")
    assert [(r.target, r.content_length) for r in reqs] == [("/lf", 2), ("/sp", None)]
    assert reqs[1].headers["host"] == "b" and not reqs[1].close
    resps = of(o.events, "response")
    assert resps[0].reason == "" and resps[0].status == 200
    assert not resps[1].close and resps[1].keep_alive_timeout_s == 2.5
    assert resps[1].content_length == 3
    assert [e.body_bytes for e in of(o.events, "response_end")] == [0, 3]
    messages = [e.message for e in of(o.events, "anomaly")]
    assert "obs-fold line in header section" in messages
    assert any("malformed header line" in m for m in messages)


def test_header_values_are_truncated():
    o = run(("c", b"GET / HTTP/1.1\r\nUser-Agent: " + b"u" * 5000 + b"\r\nHost: \xff\xfe\r\n\r\n"))
    req = o.events[0]
    assert len(req.headers["user-agent"]) == 200 and req.headers["host"] == "\xff\xfe"


def test_conflicting_lengths():
    o = run(
        ("c", REQ),
        (
            "s",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ),
    )
    assert o.synced and of(o.events, "response_end")[0].body_bytes == 2
    assert "both Transfer-Encoding and Content-Length" in of(o.events, "anomaly")[0].message
    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello"))
    assert not o.synced and "invalid Content-Length" in o.events[-1].message
    o = run(("c", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"))
    assert not o.synced and "does not end in chunked" in o.events[-1].message
    # a response whose Transfer-Encoding is not chunked is delimited by close
    o = run(
        ("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"), ("eof", "s")
    )
    assert o.events[-1].close_delimited and o.events[-1].body_bytes == 2


def test_chunk_framing_errors():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for bad in (b"zz\r\n", b"2\r\nabX", b"1" * 17 + b"\r\n", b"2;" + b"e" * 5000):
        o = run(("c", REQ), ("s", head + bad))
        assert not o.synced and o.events[-1].kind == "anomaly", bad
    o = run(("c", REQ), ("s", head + b"2\nab\n0\n\n"))  # bare LF everywhere
    assert o.synced and of(o.events, "response_end")[0].body_bytes == 2
    o = run(("c", REQ), ("s", head + b"2\r\nab\r\n0\r\n"), ("eof", "s"))
    assert o.response_in_progress and "inside a chunked body" in o.events[-1].message


def test_header_bomb_is_bounded():
    o = run(("c", b"GET / HTTP/1.1\r\n"))
    for i in range(2000):
        o.feed(True, b"X-Filler: " + b"a" * 100 + b"\r\n", 0, i)
        assert len(o._client.buf) <= 64 * 1024 + 200
    assert not o.synced and "header section longer than 65536 bytes" in o.events[-1].message
    o = run(("c", REQ), ("c", b"GET /" + b"a" * 20000))
    assert not o.synced and "start line longer" in o.events[-1].message
    o = run(("c", b"GET /" + b"a" * 20000))  # undecided: an endless first line is not HTTP
    assert o.is_http is False and o.events == []


def test_trailer_bomb_is_bounded():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    o = run(("c", REQ), ("s", head))
    for i in range(1000):
        o.feed(False, b"T: " + b"t" * 100 + b"\r\n", 0, i)
    assert not o.synced and "trailer section longer" in o.events[-1].message


def test_anomalies_are_bounded():
    o = run(("c", REQ))
    for _ in range(100):
        o.feed(
            False,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            0,
            1,
        )
    assert len(of(o.events, "anomaly")) == 33 and o.anomaly_count > 33
    assert o.events[-1].message == "further anomalies suppressed" or o.events[-1].kind != "anomaly"


def test_unanswered_requests_are_bounded():
    o = HttpObserver()
    for i in range(3000):
        o.feed(True, b"HEAD / HTTP/1.1\r\n\r\n" if i == 1500 else REQ, 0, i)
    assert o.outstanding_requests == 3000 and len(o._pending) == 1024
    for _ in range(1500):
        o.feed(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 1)
    assert o.outstanding_requests == 1500 and o.last_response.index == 1499
    o.feed(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 1)
    # the HEAD request's method was not kept: its response is read as a GET's would be
    assert o.last_response.index == 1500 and o.last_response.method is None
    assert o.synced


def test_connect_tunnel_with_early_client_data():
    hello = b"\x16\x03\x01\x00\x05hello"
    o = run(
        ("c", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + hello),
        ("s", b"HTTP/1.1 200 Connection established\r\n\r\n"),
        ("c", hello),
        ("s", b"\x16\x03\x03\x00\x10" + bytes(16)),
    )
    assert o.opaque_reason == "connect" and o.synced
    assert kinds(o.events) == ["request", "request_end", "response", "response_end"]
    assert o.state(True) == "opaque"


def test_connect_refused_resumes_parsing():
    o = run(
        ("c", b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
        ("c", REQ),  # held until the answer is known
    )
    assert o.state(True) == "paused" and o.requests == 1
    run(("s", b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"), obs=o)
    assert o.opaque_reason is None and o.requests == 2 and o.outstanding_requests == 1
    assert of(o.events, "request")[1].frame == 2


def test_upgrade():
    ws = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    o = run(
        ("c", ws),
        ("s", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
    )
    assert o.opaque_reason == "upgrade" and o.outstanding_requests == 0
    assert of(o.events, "request")[0].headers["upgrade"] == "websocket"
    # an Upgrade offer the server declines
    o = run(("c", ws), ("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert o.opaque_reason is None and o.requests == 2 and o.synced


def test_paused_client_is_bounded():
    o = run(("c", b"CONNECT h:1 HTTP/1.1\r\n\r\n"))
    for i in range(100):
        o.feed(True, b"x" * 1000, 0, i)
    assert not o.synced and "tunnel" in o.events[-1].message


def test_body_counting_never_looks_at_the_bytes():
    class LengthOnly:
        """Stands in for a huge segment: only len() is allowed."""

        def __len__(self) -> int:
            return 1_000_000

    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\n\r\n"))
    for _ in range(100):
        o.feed(False, LengthOnly(), 0, 1)  # type: ignore[arg-type]
    assert o.response_received_bytes == 100_000_000
    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\n\r\n"))  # close-delimited
    o.feed(False, LengthOnly(), 0, 1)  # type: ignore[arg-type]
    assert o.response_received_bytes == 1_000_000
    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n"))
    o.feed(False, LengthOnly(), 0, 1)  # type: ignore[arg-type]
    assert o.response_received_bytes == 1_000_000


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=20), st.data())
def test_random_bytes_never_raise(chunks, data):
    o = HttpObserver()
    prefix = data.draw(
        st.sampled_from([b"", REQ, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"])
    )
    if prefix:
        o.feed(True, prefix, 0, 0)
        o.feed(False, data.draw(st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n"])), 0, 0)
    for i, (fc, chunk) in enumerate(chunks):
        action = data.draw(st.integers(0, 9))
        if action == 0:
            o.gap(fc, len(chunk) + 1, i, i)
        elif action == 1:
            o.eof(fc, i, i)
        else:
            o.feed(fc, chunk, i, i)
        o.outstanding_requests, o.request_in_progress, o.response_in_progress  # noqa: B018
        o.response_expected_bytes, o.response_received_bytes, o.synced  # noqa: B018
    sides = [s for s in (o._client, o._server) if s is not None]  # made on first use
    assert all(len(s.buf) <= 70_000 for s in sides)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"\r\n",
                b"\n",
                b" ",
                b"GET",
                b"/",
                b"HTTP/1.1",
                b"HTTP/1.0",
                b"200",
                b"OK",
                b"Content-Length:",
                b"5",
                b"Transfer-Encoding:",
                b"chunked",
                b";",
                b"0",
                b"a",
                b"HEAD",
                b"CONNECT",
                b"101",
                b"100",
                b"\t",
            ]
        ),
        max_size=80,
    ),
    st.booleans(),
)
def test_http_shaped_noise_never_raises(tokens, server):
    o = HttpObserver()
    if server:
        o.feed(True, REQ, 0, 0)
    blob = b"".join(tokens)
    for i in range(0, len(blob), 5):
        o.feed(not server, blob[i : i + 5], i, i)
    o.eof(not server, 0, 0)


def test_odd_bytes_that_once_raised():
    # a start line ending in CR CR LF; a Content-Length of '²' (latin-1 0xb2 isdigit())
    o = run(("c", b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"))
    assert o.is_http is False
    o = run(("c", REQ), ("c", b"GET / HTTP/1.1\r\r\n\r\n"))
    assert not o.synced and o.requests == 1
    o = run(("c", REQ), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n"))
    assert not o.synced and "invalid Content-Length" in o.events[-1].message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"HTTP/1.0 200 OK\n"]))
def test_head_parsers_are_total(blob, prefix):
    for parse in (parse_request_head, parse_response_head):
        head = parse(prefix + blob)
        if head is not None:
            content_length(head), keep_alive_timeout(head), wants_close(head)  # noqa: B018


# ---------------------------------------------------------------------------------------
# Fast path (a whole head in one segment, with caches) against the strict path
# ---------------------------------------------------------------------------------------

REQUEST_LINES = [
    b"GET /a HTTP/1.1",
    b"POST /u?x=1 HTTP/1.0",
    b"HEAD / HTTP/1.1",
    b"CONNECT h:443 HTTP/1.1",
    b"get /lower HTTP/1.1",
    b"GET  /two-spaces HTTP/1.1 ",
    b"GET\t/tab HTTP/1.1",
    b"GET /x HTTP/1.2",
    b"GET /\xe9t\xe9 HTTP/1.1",
    b"GET /x HTTP/2",
    b"GET /x HTTP/1.1\r",
    b"",
]
STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 ",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 200 \xe9t\xe9  ",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 200 OK\r",
]
FIELD_LINES = [  # plain lines: the fast path takes them (the long ones: it must not)
    b"Host: example.com",
    b"host:x",
    b"HOST \t:  spaced  ",
    b"User-Agent: t",
    b"Accept: */*",
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT",
    b"Content-Length: 3",
    b"Content-Length: 3, 3",
    b"Content-Length: 0",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: identity",
    b"Connection: close",
    b"Connection: Keep-Alive, Upgrade",
    b"connection: keep-alive",
    b"Keep-Alive: timeout=5, max=9",
    b"Upgrade: websocket",
    b"Server: s",
    b"Host: \xff\xfe",
    b"X-Cr: a\rb",
    b"X-Empty:",
    b"X-Long: " + b"v" * 300,
    b"User-Agent: " + b"u" * 201,
    b"Server: " + b"s" * 200 + b" ",
    b"Keep-Alive: " + b"k" * 250 + b", timeout=7",
]
ODD_FIELD_LINES = [  # the strict parser remarks on these (or keeps a raw value longer)
    b" folded continuation",
    b"\tfolded",
    b"Broken header line",
    b"NoColon",
    b": empty name",
    b"",
    b"content-length:\t\xb2",
    b"Content-Length: 2, 3",
    b"Content-Length: " + b"4" * 250,
]


def _no_fast_path(self, *args) -> bool:
    return False


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    st.sampled_from(REQUEST_LINES),
    st.sampled_from(STATUS_LINES),
    st.lists(st.sampled_from(FIELD_LINES), max_size=8),
    st.one_of(st.none(), st.tuples(st.integers(0, 8), st.sampled_from(ODD_FIELD_LINES))),
    st.one_of(st.none(), st.integers(0, 9)),  # the line end that is a bare LF
    st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n"]),
    st.sampled_from([b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"\r\nGET /next HTTP/1.1\r\n\r\n"]),
    st.integers(0, 400),
)
def test_whole_heads_match_the_strict_path(
    response, request_line, status_line, fields, odd, bare_lf, end, tail, cut
):
    """The fast path (a whole head in one segment; the second time from its caches)
    gives the same events and state as the strict path fed the same segments."""
    lines = [status_line if response else request_line, *fields]
    if odd is not None:
        lines.insert(min(odd[0], len(lines) - 1) + 1, odd[1])
    eols = [b"\n" if i == bare_lf else b"\r\n" for i in range(len(lines))]
    head = b"".join(line + eol for line, eol in zip(lines, eols, strict=True)) + end
    data = head + tail
    cut = min(cut, len(data))

    def play() -> HttpObserver:
        o = HttpObserver()
        if response:
            o.feed(True, REQ + REQ, 0, 1)
        for copy in range(2):
            for piece in (data[:cut], data[cut:]) if cut else (data,):
                o.feed(not response, piece, copy, 2 + copy)
        o.eof(not response, 9, 9)
        return o

    fast = play()
    with mock.patch.object(HttpObserver, "_whole_head", _no_fast_path):
        strict = play()
    assert fast.events == strict.events
    for name in ("is_http", "roles_flipped", "requests", "responses", "interim_responses"):
        assert getattr(fast, name) == getattr(strict, name), name
    for name in ("outstanding_requests", "synced", "opaque_reason", "anomaly_count"):
        assert getattr(fast, name) == getattr(strict, name), name
    assert [fast.state(fc) for fc in (True, False)] == [strict.state(fc) for fc in (True, False)]


@pytest.mark.parametrize(
    "response, data",
    [
        (True, b"HTTP/1.1 200 OK\r\n\r\n\r\n"),  # the body is the last CRLF
        (True, b"HTTP/1.1 200 OK\r\nServer: s\r\n\r\n\r\n\r\n"),
        (False, b"GET / HTTP/1.1\r\n\r\n\r\n"),  # then a stray CRLF
        (False, b"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),  # pipelined
        (False, b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
        (False, b"\r\nGET / HTTP/1.1\r\n\r\n"),
    ],
)
def test_segment_ending_in_a_blank_line_after_an_earlier_one(response, data):
    """The first blank line ends the head, also when the segment ends in another."""

    def play() -> HttpObserver:
        o = HttpObserver()
        if response:
            o.feed(True, REQ, 0, 1)
        o.feed(not response, data, 0, 2)
        o.eof(not response, 0, 3)
        return o

    fast = play()
    with mock.patch.object(HttpObserver, "_whole_head", _no_fast_path):
        strict = play()
    assert fast.events == strict.events and fast.requests == strict.requests


def test_fast_path_caches_are_bounded():
    o = HttpObserver()
    for i in range(3 * _http.CACHE_ENTRIES):
        o.feed(True, b"GET /%d HTTP/1.1\r\nX-Id: %d\r\nHost: h\r\n\r\n" % (i, i), 0, i)
        o.feed(
            False,
            b"HTTP/1.1 %d OK\r\nX-Id: %d\r\nContent-Length: 0\r\n\r\n" % (200 + i % 99, i),
            0,
            i,
        )
        o.events.clear()
    assert o.requests == o.responses == 3 * _http.CACHE_ENTRIES and o.synced
    for cache in (_http._REQUEST_LINES, _http._STATUS_LINES, _http._FIELD_SECTIONS):
        assert 0 < len(cache) <= _http.CACHE_ENTRIES
    assert len(_http._FIELD_LINES) <= _http.CACHE_ENTRIES
    assert len(_http._NAMES) <= _http.CACHE_ENTRIES


def test_cached_heads_give_each_event_its_own_headers():
    o = run(("c", REQ), ("c", REQ))
    first, second = of(o.events, "request")
    assert first.headers == second.headers and first.headers is not second.headers


def test_event_builder_matches_the_dataclass():
    names = [f.name for f in dataclasses.fields(HttpEvent)]
    values = [f"v{i}" for i in range(len(names) - 1)]  # all but message
    built = _http._event(*values)  # type: ignore[arg-type]
    assert names[-1] == "message" and built == HttpEvent(*values)  # type: ignore[arg-type]
    assert [getattr(built, n) for n in names] == [*values, None]


def test_fresh_observer_queries():
    """Per-direction state is made on first use; until then the queries answer as for
    an idle direction."""
    o = HttpObserver()
    assert (o.is_http, o.synced, o.outstanding_requests, o.events) == (None, True, 0, [])
    assert not o.request_in_progress and not o.response_in_progress
    assert o.response_expected_bytes is None and o.response_received_bytes is None
    assert o.state(True) == o.state(False) == "idle"
    o = run(("s", b"HTTP/1.1 101 Switching Protocols\r\n\r\n"))  # the client never seen
    assert o.opaque_reason == "upgrade" and o.state(True) == o.state(False) == "opaque"
    run(("c", b"GET / HTTP/1.1\r\n\r\n"), obs=o)
    assert o.requests == 0 and o.state(True) == "opaque"
