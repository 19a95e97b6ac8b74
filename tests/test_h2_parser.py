"""H2Observer against real HTTP/2 bytes and hostile input.

Conversations are made by the ``h2`` library: its client and server H2Connection write
the exact bytes a real endpoint sends (preface, SETTINGS, HPACK with Huffman coding and
the dynamic table, flow control). Frames no well-behaved endpoint sends (bad padding,
stray CONTINUATION, HPACK garbage) are built with ``hyperframe`` and ``hpack``. The real
capture is the Wireshark corpus' h2c (draft-14) trace, turned into per-direction byte
streams by ``streams.py`` (as in test_http_parser.py and test_tls_parser.py).
"""

from __future__ import annotations

import functools
import random
import struct
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import replay, tcp_streams

from pcapdiag import _h2
from pcapdiag._h2 import (
    ERROR_NAMES,
    MAX_ANOMALIES,
    MAX_BLOCK,
    MAX_STREAMS,
    PREFACE,
    H2Event,
    H2Observer,
    error_name,
    frame_problem,
    header_fields,
    looks_like_h2,
    parse_frame_header,
    parse_goaway,
    parse_rst_stream,
    parse_settings,
    split_block_payload,
)

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

Step = tuple  # (from_client, bytes) | ("gap", from_client, n) | ("eof", from_client)


def req(path: str = "/", method: str = "GET", authority: str = "example.com", **extra):
    hdrs = [(":method", method), (":path", path), (":authority", authority), (":scheme", "http")]
    return hdrs + [(k.replace("_", "-"), v) for k, v in extra.items()]


def resp(status: int = 200, **extra):
    return [(":status", str(status)), *((k.replace("_", "-"), v) for k, v in extra.items())]


class Conv:
    """A client and a server H2Connection talking; ``steps`` is what went on the wire,
    one step per flush of one side (one 'segment')."""

    def __init__(self, max_frame: int | None = None) -> None:
        self.c = H2Connection(H2Configuration(client_side=True))
        self.s = H2Connection(H2Configuration(client_side=False))
        self.steps: list[Step] = []
        self.c.initiate_connection()
        if max_frame is not None:
            self.c.update_settings({SettingCodes.MAX_FRAME_SIZE: max_frame})
        self.flush()
        self.s.initiate_connection()
        self.flush()

    def flush(self) -> Conv:
        for _ in range(8):
            moved = False
            for src, dst, from_client in ((self.c, self.s, True), (self.s, self.c, False)):
                data = src.data_to_send()
                if not data:
                    continue
                moved = True
                self.steps.append((from_client, data))
                for ev in dst.receive_data(data):
                    if isinstance(ev, DataReceived) and ev.flow_controlled_length:
                        dst.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if not moved:
                break
        return self

    def raw(self, from_client: bool, data: bytes) -> Conv:
        """Bytes the peers never see (frames h2 would refuse to send or to receive)."""
        self.steps.append((from_client, data))
        return self


def run(steps, split: int | None = None, obs: H2Observer | None = None) -> H2Observer:
    """Feed steps, frames 1, 2, ...; ``split`` cuts each data step into pieces."""
    o = obs or H2Observer()
    for frame, step in enumerate(steps, start=1):
        if step[0] == "gap":
            o.gap(step[1], step[2], frame * 1000, frame)
        elif step[0] == "eof":
            o.eof(step[1], frame * 1000, frame)
        elif split:
            data = step[1]
            for i in range(0, len(data), split):
                o.feed(step[0], data[i : i + split], frame * 1000, frame)
        else:
            o.feed(step[0], step[1], frame * 1000, frame)
    return o


def of(events: list[H2Event], kind: str) -> list[H2Event]:
    return [e for e in events if e.kind == kind]


def kinds(events: list[H2Event]) -> list[tuple[str, int]]:
    return [(e.kind, e.stream_id) for e in events]


def messages(o: H2Observer) -> list[str]:
    return [e.message or "" for e in of(o.events, "anomaly")]


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"", length: int | None = None):
    n = len(payload) if length is None else length
    return struct.pack("!I", n)[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def block(headers, encoder: Encoder | None = None) -> bytes:
    return (encoder or Encoder()).encode(headers)


START = PREFACE + frame(4, 0, 0)  # a client's opening: preface and empty SETTINGS


def full_conversation() -> Conv:
    """Most of what HTTP/2 has: requests with and without bodies, a response in several
    DATA frames with padding, trailers, 100-continue, RST_STREAM both ways, PING,
    PRIORITY, WINDOW_UPDATE, a server push and a GOAWAY."""
    cv = Conv()
    cv.c.send_headers(1, req("/index.html"), end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(200, content_length="5000", server="h2-test"))
    cv.s.send_data(1, b"a" * 2000)
    cv.s.send_data(1, b"b" * 2000, pad_length=17)
    cv.s.send_data(1, b"c" * 1000, end_stream=True)
    cv.flush()
    cv.c.send_headers(3, req("/upload", "POST", content_length="10"))
    cv.c.send_data(3, b"0123456789", end_stream=True)
    cv.flush()
    cv.s.send_headers(3, resp(100))
    cv.s.send_headers(3, resp(201))
    cv.s.send_data(3, b"ok")
    cv.s.send_headers(3, [("grpc-status", "0")], end_stream=True)  # trailers
    cv.c.ping(b"12345678")
    cv.c.prioritize(5, weight=32)
    cv.flush()
    cv.c.send_headers(5, req("/slow"), end_stream=True)
    cv.c.send_headers(7, req("/cancelled"), end_stream=True)
    cv.flush()
    cv.c.reset_stream(7, ErrorCodes.CANCEL)
    cv.s.push_stream(5, 2, req("/style.css"))
    cv.s.send_headers(2, resp(200), end_stream=True)
    cv.s.reset_stream(5, ErrorCodes.REFUSED_STREAM)
    cv.flush()
    cv.c.send_headers(9, req("/last"), end_stream=True)
    cv.flush()
    cv.s.close_connection(ErrorCodes.NO_ERROR, b"graceful", last_stream_id=7)
    cv.flush()
    return cv


# ---------------------------------------------------------------------------------------
# Real conversations
# ---------------------------------------------------------------------------------------


def test_get_with_a_response_in_several_data_frames():
    cv = Conv()
    cv.c.send_headers(1, req("/a?b=c", authority="host:8080"), end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(200, content_length="40000"))
    for _ in range(4):
        cv.s.send_data(1, b"x" * 10000)
    cv.s.send_data(1, b"", end_stream=True)
    cv.flush()
    o = run(cv.steps)
    assert o.is_h2 and o.synced and not messages(o)
    assert kinds(o.events) == [
        ("request", 1),
        ("request_end", 1),
        ("response", 1),
        ("response_end", 1),
    ]
    rq, rq_end, rs, rs_end = o.events
    assert (rq.method, rq.path, rq.authority, rq.from_client) == (
        "GET",
        "/a?b=c",
        "host:8080",
        True,
    )
    sent = next(i for i, s in enumerate(cv.steps, 1) if b"\x01\x05\x00\x00\x00\x01" in s[1])
    assert rq.frame == rq_end.frame == sent  # the segment with the HEADERS frame
    assert (rs.status, rs.content_length, rs.method, rs.from_client) == (200, 40000, "GET", False)
    assert rs_end.body_bytes == 40000 and rs_end.status == 200 and rs_end.path == "/a?b=c"
    assert o.requests == o.responses == 1 and o.open_streams() == [] and o.stream(1) is None
    assert o.data_bytes(False) == 40000 and o.data_bytes(True) == 0
    assert o.settings(False)  # h2 announces its SETTINGS
    assert o.hpack_ok(True) and o.hpack_ok(False)


def test_full_conversation_events():
    o = run(full_conversation().steps)
    assert o.is_h2 and o.synced and not messages(o), messages(o)
    ev = [(e.kind, e.stream_id, e.from_client) for e in o.events]
    assert ev == [
        ("request", 1, True),
        ("request_end", 1, True),
        ("response", 1, False),
        ("response_end", 1, False),
        ("request", 3, True),
        ("request_end", 3, True),
        ("response", 3, False),  # 100
        ("response", 3, False),  # 201
        ("response_end", 3, False),  # on the trailers
        ("request", 5, True),
        ("request_end", 5, True),
        ("request", 7, True),
        ("request_end", 7, True),
        ("rst_stream", 7, True),
        ("response", 2, False),  # the pushed stream
        ("response_end", 2, False),
        ("rst_stream", 5, False),
        ("request", 9, True),
        ("request_end", 9, True),
        ("goaway", 0, False),
    ]
    resp1_end = of(o.events, "response_end")[0]
    assert resp1_end.body_bytes == 5000  # padding is not body
    posts = [e for e in o.events if e.stream_id == 3]
    assert posts[0].method == "POST" and posts[0].content_length == 10
    assert posts[1].body_bytes == 10
    assert [e.status for e in posts[2:4]] == [100, 201]
    assert posts[4].body_bytes == 2 and posts[4].status == 201
    assert o.interim_responses == 1 and o.responses == 3 and o.requests == 5 and o.pushes == 1
    cancel, refused = of(o.events, "rst_stream")
    assert (cancel.error_code, cancel.error_name, cancel.path) == (8, "CANCEL", "/cancelled")
    assert (refused.error_code, refused.error_name, refused.path) == (7, "REFUSED_STREAM", "/slow")
    assert o.resets_by_client == 1 and o.resets_by_server == 1
    (goaway,) = of(o.events, "goaway")
    assert (goaway.last_stream_id, goaway.error_name, goaway.debug) == (7, "NO_ERROR", "graceful")
    assert o.last_goaway(False) is goaway and o.goaway_from_server is goaway
    assert o.last_goaway(True) is None and o.goaway_from_client is None
    assert o.open_streams() == [9] and o.unprocessed_streams() == [9]
    assert o.stream(9) is not None and o.stream(9).path == "/last"
    assert o._c is not None and o._c.pings == 1


@pytest.mark.parametrize(
    "code", [ErrorCodes.NO_ERROR, ErrorCodes.PROTOCOL_ERROR, ErrorCodes.INTERNAL_ERROR,
             ErrorCodes.FLOW_CONTROL_ERROR, ErrorCodes.REFUSED_STREAM, ErrorCodes.CANCEL,
             ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.HTTP_1_1_REQUIRED]
)  # fmt: skip
@pytest.mark.parametrize("by_client", [True, False])
def test_rst_stream_codes_from_either_side(code, by_client):
    cv = Conv()
    cv.c.send_headers(1, req("/r"))
    cv.flush()
    (cv.c if by_client else cv.s).reset_stream(1, code)
    cv.flush()
    o = run(cv.steps)
    (rst,) = of(o.events, "rst_stream")
    assert rst.from_client is by_client and rst.stream_id == 1 and rst.method == "GET"
    assert rst.error_code == int(code) and rst.error_name == code.name
    assert o.open_streams() == [] and o.stream(1) is None


def test_unknown_error_code_and_client_goaway():
    cv = Conv()
    cv.c.send_headers(1, req(), end_stream=True)
    cv.flush()
    cv.raw(False, frame(3, 0, 1, struct.pack("!I", 0xFF)))
    cv.c.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, b"\x00\x01\xff calm down \x7f", 1)
    cv.flush()
    o = run(cv.steps)
    (rst,) = of(o.events, "rst_stream")
    assert rst.error_name == "0xff" and not rst.from_client
    (g,) = of(o.events, "goaway")
    assert g.from_client and g.error_name == "ENHANCE_YOUR_CALM" and g.last_stream_id == 1
    assert g.debug == "??? calm down ?" and o.last_goaway(True) is g


def test_goaway_debug_data_is_bounded_and_printable():
    cv = Conv()
    cv.s.close_connection(ErrorCodes.PROTOCOL_ERROR, "é\n".encode() * 3000)
    cv.flush()
    for split in (None, 100):
        o = run(cv.steps, split)
        (g,) = of(o.events, "goaway")
        assert g.debug == "é?" * 100 and len(g.debug) == _h2.DEBUG_CHARS
        assert g.error_name == "PROTOCOL_ERROR" and g.last_stream_id == 0
        assert o.synced and not messages(o)


def test_continuation_for_big_header_blocks():
    cv = Conv(max_frame=16384)
    big = bytes(random.Random(1).getrandbits(8) for _ in range(20000)).hex()  # 40 KB
    cv.c.send_headers(1, req("/big", cookie=big), end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(204, x_big=big), end_stream=True)
    cv.flush()
    wire = b"".join(s[1] for s in cv.steps)
    assert wire.count(b"\x09\x04\x00\x00\x00\x01") == 2  # CONTINUATION with END_HEADERS
    for split in (None, 1000, 7):
        o = run(cv.steps, split)
        assert not messages(o) and o.synced
        assert kinds(o.events) == [
            ("request", 1),
            ("request_end", 1),
            ("response", 1),
            ("response_end", 1),
        ]
        assert o.events[0].path == "/big" and o.events[2].status == 204


def test_headers_with_padding_and_priority():
    enc = Encoder()
    hf = HeadersFrame(1, block(req("/padded"), enc), flags=["END_HEADERS", "PADDED", "PRIORITY"])
    hf.pad_length = 40
    hf.depends_on, hf.stream_weight = 0, 15
    df = DataFrame(1, b"z" * 50, flags=["PADDED", "END_STREAM"])
    df.pad_length = 9
    o = run([(True, START + hf.serialize()), (True, df.serialize())])
    assert not messages(o)
    assert kinds(o.events) == [("request", 1), ("request_end", 1)]
    assert o.events[0].path == "/padded" and o.events[1].body_bytes == 50


def test_ping_settings_window_update_priority_make_no_events():
    cv = Conv()
    cv.c.ping(b"abcdefgh")
    cv.s.ping(b"hgfedcba")
    cv.c.increment_flow_control_window(1000)
    cv.c.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 7})
    cv.flush()
    cv.raw(True, frame(2, 0, 3, b"\x00\x00\x00\x01\x10"))  # PRIORITY
    cv.raw(True, frame(0xB, 0xFF, 0, b"unknown extension frame"))
    o = run(cv.steps)
    assert o.events == [] and o.synced and o.is_h2
    assert o.settings(True)["MAX_CONCURRENT_STREAMS"] == 7
    assert o._c is not None and o._s is not None and o._c.pings == 2 and o._s.pings == 2


def test_response_without_request_mid_connection():
    """The capture begins after the client's preface and request: the server's bytes
    still open the stream, and its HPACK table (empty so far) decodes fine."""
    cv = Conv()
    cv.c.send_headers(1, req("/a"), end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(200))
    cv.s.send_data(1, b"hello", end_stream=True)
    cv.flush()
    server = [s for s in cv.steps if s[0] is False][1:]  # skip its SETTINGS
    o = run(server)
    assert o.is_h2 and kinds(o.events) == [("response", 1), ("response_end", 1)]
    assert o.events[0].status == 200 and o.events[0].method is None
    assert o.events[1].body_bytes == 5


def test_capture_starting_mid_connection_loses_hpack_not_framing():
    cv = Conv()
    for sid in (1, 3):
        cv.c.send_headers(sid, req(f"/r{sid}", user_agent="test/1.0"), end_stream=True)
        cv.flush()
    cv.s.send_headers(1, resp(200))
    cv.s.send_data(1, b"x", end_stream=True)
    cv.s.close_connection(ErrorCodes.NO_ERROR, last_stream_id=3)
    cv.flush()
    # drop the client's preface, SETTINGS and first request: the second request refers
    # to dynamic table entries the first one made
    first = next(i for i, s in enumerate(cv.steps) if s[0] and s[1][3:4] == b"\x01")
    steps = [s for i, s in enumerate(cv.steps) if i > first or not s[0]]
    assert looks_like_h2(next(s for s in steps if s[0])[1])  # a HEADERS frame, whole
    o = run(steps)
    assert o.is_h2 and o.synced and not o.hpack_ok(True)
    (anomaly,) = of(o.events, "anomaly")
    assert "HPACK decoding failed" in anomaly.message and "mid-connection" in anomaly.message
    rq = of(o.events, "request")
    assert [(e.stream_id, e.method) for e in rq] == [(3, None)]
    assert [e.kind for e in o.events if e.kind != "anomaly"] == [
        "request",
        "request_end",
        "response",
        "response_end",
        "goaway",
    ]


def test_roles_flipped_when_the_preface_comes_from_the_server_side():
    cv = Conv()
    cv.c.send_headers(1, req("/x"), end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(404), end_stream=True)
    cv.flush()
    flipped = [(not s[0], s[1]) for s in cv.steps]
    o = run(flipped)
    assert o.roles_flipped and o.is_h2
    assert [(e.kind, e.from_client) for e in o.events if e.kind != "anomaly"] == [
        ("request", False),
        ("request_end", False),
        ("response", True),
        ("response_end", True),
    ]
    assert any("roles flipped" in m for m in messages(o))


# ---------------------------------------------------------------------------------------
# The same events however the bytes are cut
# ---------------------------------------------------------------------------------------


@functools.cache
def _small_conversation() -> tuple[Step, ...]:
    cv = Conv()
    cv.c.send_headers(1, req("/s"), end_stream=True)
    cv.c.send_headers(3, req("/t", "PUT"))
    cv.c.send_data(3, b"up", end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(200))
    cv.s.send_data(1, b"hi", pad_length=3)
    cv.s.send_headers(1, [("x-trailer", "1")], end_stream=True)
    cv.s.reset_stream(3, ErrorCodes.INTERNAL_ERROR)
    cv.s.close_connection(ErrorCodes.NO_ERROR, b"bye", 3)
    cv.flush()
    return tuple(cv.steps)


def test_every_single_cut_gives_the_same_events():
    steps = _small_conversation()
    reference = run(steps).events
    assert len(reference) == 8 and not any(e.kind == "anomaly" for e in reference)
    for i, (fc, data) in enumerate(steps):
        for cut in range(1, len(data)):
            cut_steps = [*steps[:i], (fc, data[:cut]), (fc, data[cut:]), *steps[i + 1 :]]
            o = H2Observer()
            for f, (c, d) in enumerate(cut_steps, start=1):
                # both pieces belong to the original step's segment
                real = f if f <= i + 1 else f - 1
                o.feed(c, d, real * 1000, real)
            assert o.events == reference, (i, cut)


@pytest.mark.parametrize("split", [1, 2, 8, 9, 10, 1448])
def test_byte_by_byte_and_segment_sizes(split):
    steps = full_conversation().steps
    assert run(steps, split).events == run(steps).events


@functools.cache
def _full_steps() -> tuple[Step, ...]:
    return tuple(full_conversation().steps)


@functools.cache
def _full_events() -> list[H2Event]:
    return run(_full_steps()).events


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_split_gives_the_same_events(data):
    steps = _full_steps()
    reference = _full_events()
    o = H2Observer()
    for f, (fc, blob) in enumerate(steps, start=1):
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(blob) - 1)), max_size=6)))
        for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True):
            if a < b:
                o.feed(fc, blob[a:b], f * 1000, f)
    assert o.events == reference


def test_data_bodies_are_never_looked_at():
    """A DATA body that spans segments costs a length comparison: the observer never
    indexes or slices it (the fake segments below would raise)."""

    class Opaque:
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, key):
            raise AssertionError("looked at body bytes")

    o = H2Observer()
    o.feed(True, START + frame(1, 4, 1, block(req())), 1, 1)
    o.feed(True, frame(0, 1, 1, length=16384), 2, 2)  # header only; body follows
    for i in range(11):
        o.feed(True, Opaque(1448), 3 + i, 3 + i)  # type: ignore[arg-type]
    o.feed(True, b"\x00" * (16384 - 11 * 1448), 20, 20)
    assert [e.kind for e in o.events] == ["request", "request_end"]
    assert o.events[1].body_bytes == 16384 and o.events[1].frame == 20


# ---------------------------------------------------------------------------------------
# Recognising HTTP/2
# ---------------------------------------------------------------------------------------

TLS_HELLO = bytes.fromhex("160301020001") + b"\x00" * 20


@pytest.mark.parametrize(
    ("head", "verdict"),
    [
        (PREFACE, True),
        (START, True),
        (PREFACE[:14], True),  # "PRI * HTTP/2.0"
        (PREFACE[:13], False),
        (frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64"), True),  # a server's first SETTINGS
        (frame(4, 1, 0), True),  # a lone SETTINGS ACK, exactly the segment
        (frame(4, 1, 0) + b"\x00", False),
        (frame(4, 1, 0) + frame(8, 0, 0, b"\x00\x01\x00\x00"), True),
        (frame(0, 0, 1, b"x" * 100), True),  # one frame ending with the segment
        (frame(0, 0, 1, b"x" * 100)[:50], False),
        (frame(0, 0, 1, b"x" * 100) + b"\x00\x00", False),
        (frame(0, 0, 1, b"x" * 100) + frame(0, 1, 1, b"x"), True),
        (frame(0, 0, 0, b"x"), False),  # DATA on stream 0
        (frame(0, 0x40, 1, b"x"), False),  # undefined flag
        (frame(0, 0, 0x80000001, b"x"), False),  # reserved bit
        (frame(0, 0, 1, b"x" * 16385), False),  # over the default max frame size
        (frame(9, 4, 1, b"x"), False),  # CONTINUATION first
        (frame(3, 0, 1, b"\x00" * 5), False),  # RST_STREAM of 5 bytes
        (frame(0x0B, 0, 0, b"x"), False),  # unknown type
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\n\r\n", False),
        (b"POST /x HTTP/1.1\r\n", False),
        (TLS_HELLO, False),
        (b"", False),
        (b"\x00" * 9, False),
        (b"SSH-2.0-OpenSSH_9.6\r\n", False),
    ],
)
def test_looks_like_h2(head, verdict):
    assert looks_like_h2(head) is verdict
    assert H2Observer.looks_like_h2(head) is verdict


@pytest.mark.parametrize(
    "first", [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", TLS_HELLO, b"\x00" * 30, b"PRI * HTTP/1.1\r\n"]
)
def test_not_h2(first):
    o = run([(True, first), (False, frame(4, 0, 0)), ("eof", True)])
    assert o.is_h2 is False and o.events == [] and o.synced
    assert o.state(True) == o.state(False) == "lost"
    o.feed(True, b"more", 1, 1)
    o.feed(False, START, 1, 1)
    assert o.events == [] and o._pending == []


def test_decision_waits_for_enough_bytes_and_replays_them():
    o = H2Observer()
    hdrs = frame(1, 5, 1, block(req("/w")))
    wire = START + hdrs
    for i, b in enumerate(wire[:23]):
        o.feed(True, bytes([b]), i, i)
        assert o.is_h2 is None and o.state(True) == "undecided"
    o.feed(True, wire[23:], 99, 99)
    assert o.is_h2 and [(e.kind, e.frame) for e in o.events] == [
        ("request", 99),
        ("request_end", 99),
    ]
    # a mid-connection DATA frame: one frame is not enough until the next header shows
    o = H2Observer()
    o.feed(False, frame(0, 0, 1, b"x" * 30), 1, 1)
    assert o.is_h2 is None
    o.feed(False, frame(0, 1, 1, b"y" * 3)[:5], 2, 2)
    assert o.is_h2 is None
    o.feed(False, frame(0, 1, 1, b"y" * 3)[5:], 3, 3)
    assert o.is_h2 and [(e.kind, e.frame, e.body_bytes) for e in o.events] == [
        ("response_end", 3, 33)
    ]


def test_undecided_at_eof_or_gap():
    o = run([(False, frame(0, 1, 1, b"x" * 30)), ("eof", False)])
    assert o.is_h2 and [e.kind for e in o.events] == ["response_end"]
    o = run([(True, PREFACE[:16]), ("eof", True)])
    assert o.is_h2 and any("inside the connection preface" in m for m in messages(o))
    o = run([(True, PREFACE[:10]), ("eof", True)])
    assert o.is_h2 is False
    # a gap right at the start of one direction: that direction is lost once decided
    o = run([("gap", True, 100), (True, START), (False, frame(4, 0, 0))])
    assert o.is_h2 and not o.direction_synced(True) and o.direction_synced(False)
    assert o._pending == []
    o = run([("gap", True, 100), (True, START), ("gap", False, 5), (False, START)])
    assert o.is_h2 is False


def test_undecided_bytes_are_bounded():
    o = H2Observer()
    o.gap(True, 10, 0, 0)  # this direction can no longer show its start
    for i in range(1000):
        o.feed(True, b"\x00" * 1448, i, i)
    assert o.is_h2 is None and o._pending == [("gap", True, 10, 0, 0)]
    o = H2Observer()
    o.feed(False, frame(0, 0, 1, length=16384) + b"x" * 1000, 0, 0)  # a first DATA frame
    assert o.is_h2 is None
    for i in range(10):
        o.feed(False, b"x" * 1500, i, i)
    assert o.is_h2 is None
    o.feed(False, b"x" * 384 + frame(0, 1, 1)[:5], 10, 10)
    assert o.is_h2 is None
    o.feed(False, frame(0, 1, 1)[5:], 11, 11)
    assert o.is_h2 is True  # its end and the next header arrived
    assert [(e.kind, e.body_bytes) for e in o.events] == [("response_end", 16384)]
    o = H2Observer()
    o.feed(False, b"\x00" * 9, 0, 0)  # DATA without a stream: not h2
    assert o.is_h2 is False


# ---------------------------------------------------------------------------------------
# Gaps and EOF
# ---------------------------------------------------------------------------------------


def _get_steps() -> list[Step]:
    cv = Conv()
    cv.c.send_headers(1, req("/g"), end_stream=True)
    cv.flush()
    cv.s.send_headers(1, resp(200))
    cv.flush()
    cv.s.send_data(1, b"d" * 5000)
    cv.flush()
    cv.s.send_data(1, b"e" * 100, end_stream=True)
    cv.flush()
    return cv.steps


def test_gap_inside_a_data_body_is_counted():
    steps = _get_steps()
    body = steps[-2]
    assert body[0] is False and len(body[1]) == 9 + 5000
    cut = [
        *steps[:-2],
        (False, body[1][:1000]),
        ("gap", False, 3000),
        (False, body[1][4000:]),
        steps[-1],
    ]
    o = run(cut)
    assert o.synced and not messages(o)
    assert of(o.events, "response_end")[0].body_bytes == 5100


def test_gap_over_a_frame_header_loses_sync_once():
    steps = _get_steps()
    body = steps[-2][1]
    o = run([*steps[:-2], (False, body[: 9 + 4000]), ("gap", False, 1100), steps[-1]])
    assert not o.synced and o.direction_synced(True) and not o.direction_synced(False)
    assert o.state(False) == "lost"
    (m,) = messages(o)
    assert m.startswith("lost sync:") and "100 bytes not captured where a frame header was due" in m
    assert not of(o.events, "response_end")
    assert o.open_streams() == [1]


def test_gap_inside_a_header_block_breaks_hpack_not_framing():
    cv = Conv()
    cv.c.send_headers(1, req("/one", user_agent="ua"), end_stream=True)
    cv.flush()
    cv.c.send_headers(3, req("/two", user_agent="ua"), end_stream=True)
    cv.flush()
    cv.c.close_connection()
    cv.flush()
    steps = cv.steps
    i = next(k for k, s in enumerate(steps) if s[0] and s[1][3:4] == b"\x01")  # first HEADERS
    hdr = steps[i][1]
    gapped = [*steps[:i], (True, hdr[:12]), ("gap", True, len(hdr) - 12), *steps[i + 1 :]]
    o = run(gapped)
    assert o.direction_synced(True) and not o.hpack_ok(True)
    assert [(e.stream_id, e.method) for e in of(o.events, "request")] == [(1, None), (3, None)]
    assert len(of(o.events, "goaway")) == 1
    (m,) = messages(o)
    assert "header block bytes not captured" in m and "no longer decoded" in m


@pytest.mark.parametrize(
    ("tail", "text"),
    [
        (frame(0, 1, 1, length=100) + b"x" * 40, "server closed inside a DATA frame: 40 of 100"),
        (frame(0, 1, 1, length=100)[:5], "server closed inside a frame header (5 of 9 bytes)"),
        (frame(7, 0, 0, length=20) + b"\x00" * 10, "inside a GOAWAY frame: 10 of 20"),
        (frame(1, 0, 1, b"\x88"), "server closed inside the header block of stream 1"),
    ],
)
def test_truncated_frame_at_eof(tail, text):
    o = run(
        [
            (True, START + frame(1, 5, 1, block(req()))),
            (False, frame(4, 0, 0) + tail),
            ("eof", False),
        ]
    )
    assert any(text in m for m in messages(o)), messages(o)
    assert o.open_streams() == [1] and not of(o.events, "response_end")
    o.eof(False, 9, 9)  # a second FIN changes nothing
    assert len(messages(o)) == 1


def test_clean_eof_has_no_anomaly():
    o = run([*_get_steps(), ("eof", True), ("eof", False)])
    assert not messages(o) and o.open_streams() == []


# ---------------------------------------------------------------------------------------
# Hostile and broken input
# ---------------------------------------------------------------------------------------


def test_largest_frame_length():
    # after a preface, the default 16 KiB limit holds: 2^24-1 is a framing error
    o = run([(False, frame(4, 0, 0)), (True, START + frame(0, 0, 1, length=2**24 - 1))])
    assert not o.direction_synced(True)
    assert "DATA frame of 16777215 bytes exceeds the maximum frame size 16384" in messages(o)[0]
    # mid-connection the peers may have raised it: the body is skipped by arithmetic
    o = H2Observer()
    o.feed(False, frame(0, 0, 1, b"x") + frame(0, 0, 1, b"y"), 1, 1)
    o.feed(False, frame(0, 1, 1, length=2**24 - 1), 1, 1)
    for i in range(2**24 // 65536):
        o.feed(False, b"\x00" * 65535, 2 + i, 2 + i)
    o.feed(False, b"\x00" * 256, 999, 999)
    assert o.synced and [(e.kind, e.frame, e.body_bytes) for e in o.events] == [
        ("response_end", 999, 2**24 + 1)
    ]
    # an unknown type that long is garbage either way
    o = run([(False, frame(4, 0, 0) + frame(0xEE, 0, 0, length=2**24 - 1))])
    assert not o.synced and "frame type 0xee" in messages(o)[0]


def test_a_peer_raising_max_frame_size():
    o = run(
        [
            (True, START[:24] + frame(4, 0, 0, b"\x00\x05\x00\x01\x00\x00")),  # 65536
            (False, frame(4, 0, 0) + frame(0, 1, 1, length=40000) + b"x" * 40000),
        ]
    )
    assert o.synced and [e.kind for e in o.events] == ["response_end"]


def test_bad_padding():
    df = frame(0, 0x9, 1, bytes([200]) + b"x" * 10)  # pad length 200 in an 11-byte frame
    hf = frame(1, 0xD, 3, bytes([99]) + block(req()))  # PADDED HEADERS, padding too long
    empty = frame(0, 0x8, 1)  # PADDED without the pad length byte
    o = run([(True, START + frame(1, 4, 1, block(req("/p")))), (True, df + empty + hf)])
    m = messages(o)
    assert "padding of 200 bytes exceeds the 11-byte payload" in m[0]
    assert "flagged PADDED without payload" in m[1]
    assert "HEADERS frame: padding of 99 bytes exceeds" in m[2] and "no longer decoded" in m[2]
    assert o.synced and not o.hpack_ok(True)
    assert [(e.kind, e.stream_id, e.method) for e in o.events if e.kind != "anomaly"] == [
        ("request", 1, "GET"),
        ("request_end", 1, "GET"),
        ("request", 3, None),
        ("request_end", 3, None),
    ]
    assert of(o.events, "request_end")[0].body_bytes == 0  # bad frames carry no body


def test_continuation_without_headers_and_interrupted_blocks():
    enc = Encoder()
    part = block(req("/c"), enc)
    stray = ContinuationFrame(1, part, flags=["END_HEADERS"]).serialize()
    o = run([(True, START + stray)])
    assert "CONTINUATION on stream 1 without HEADERS" in messages(o)[0]
    assert o.synced and o.events[-1].kind == "anomaly" and o.requests == 0
    # HEADERS without END_HEADERS, then a DATA frame instead of CONTINUATION
    o = run([(True, START + frame(1, 0, 1, part[:3]) + frame(0, 1, 1, b"x"))])
    assert "header block of stream 1 interrupted by DATA on stream 1" in messages(o)[0]
    assert o.requests == 0 and o.synced


def test_hpack_garbage():
    garbage = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + b"\xbf" * 20
    o = run(
        [
            (True, START + frame(1, 5, 1, garbage)),
            (True, frame(1, 5, 3, block(req("/fine")))),
            (False, frame(4, 0, 0) + frame(1, 4, 1, b"\x88") + frame(0, 1, 1, b"ok")),
        ]
    )
    (m,) = messages(o)
    assert "HPACK decoding failed" in m and len(m) < 300
    assert [(e.stream_id, e.method) for e in of(o.events, "request")] == [(1, None), (3, None)]
    assert [e.status for e in of(o.events, "response")] == [200]  # server side unaffected
    assert not o.hpack_ok(True) and o.hpack_ok(False)


def test_header_bomb_is_refused_by_the_list_size():
    enc = Encoder()
    enc.header_table_size = 4096
    bomb = block([("x-a", "b" * 4000)], enc) + block([("x-a", "b" * 4000)], enc) * 100
    o = run([(True, START + frame(1, 5, 1, bomb[:16000])), (True, frame(1, 5, 3, block(req())))])
    assert any("HPACK decoding failed" in m for m in messages(o)) and o.synced


def test_header_block_over_the_cap_keeps_framing():
    pieces = [frame(1, 1, 1, b"\x00" * 16384)]
    pieces += [frame(9, 0, 1, b"\x00" * 16384) for _ in range(MAX_BLOCK // 16384)]
    pieces += [frame(9, 4, 1, b"\x00")]
    big = b"".join(pieces)
    goaway = frame(7, 0, 0, struct.pack("!II", 1, 0))
    o = run(
        [
            (False, frame(4, 0, 0)),
            (True, START[:24] + frame(4, 0, 0, b"\x00\x05\x00\xff\xff\xff")),
            (True, big + goaway),
        ],
        1448,
    )
    m = messages(o)
    assert len(m) == 1 and f"header block of more than {MAX_BLOCK} bytes" in m[0]
    assert [e.kind for e in o.events if e.kind != "anomaly"] == ["request", "request_end", "goaway"]
    assert o._c is not None and o._c.block is None and len(o._c.pbuf) == 0


def test_implausible_frame_headers_lose_sync():
    for bad, text in [
        (frame(4, 0, 1, b""), "SETTINGS frame on stream 1"),
        (frame(4, 0, 0, b"\x00" * 5), "not a multiple of 6"),
        (frame(4, 1, 0, b"\x00" * 6), "SETTINGS ACK with a 6-byte payload"),
        (frame(6, 0, 0, b"\x00" * 7), "PING frame of 7 bytes"),
        (frame(3, 0, 1, b"\x00" * 3), "RST_STREAM frame of 3 bytes"),
        (frame(1, 4, 0, b"\x88"), "HEADERS frame on stream 0"),
        (frame(7, 0, 0, b"\x00" * 4), "GOAWAY frame of 4 bytes"),
    ]:
        o = run([(True, START + bad + frame(1, 5, 1, block(req())))])
        (m,) = messages(o)
        assert m.startswith("lost sync: implausible frame header") and text in m
        assert o.requests == 0 and o.state(True) == "lost"


def test_streams_and_anomalies_are_bounded():
    enc = Encoder()
    reqs = b"".join(
        frame(1, 4, 2 * i + 1, block(req(f"/{i}"), enc)) for i in range(MAX_STREAMS + 50)
    )
    o = run([(True, START + reqs)])
    assert o.requests == MAX_STREAMS + 50 and len(o.open_streams()) == MAX_STREAMS
    assert o.untracked_streams == 50 and len(messages(o)) == 1
    o = run([(True, START + frame(9, 4, 1, b"x") * 500)])
    assert o.anomaly_count == 500 and len(messages(o)) == MAX_ANOMALIES + 1
    assert messages(o)[-1] == "further anomalies suppressed"
    # closed streams are forgotten (but remembered as closed) as they end
    steps = [(True, START), (False, frame(4, 0, 0))]
    for i in range(3 * MAX_STREAMS):
        steps += [(True, frame(1, 5, 2 * i + 1, block(req(), enc)))]
        steps += [(False, frame(1, 5, 2 * i + 1, b"\x88"))]
    o = run(steps)
    assert o.responses == 3 * MAX_STREAMS and o._streams == {} and len(o._closed) <= _h2.MAX_CLOSED
    assert o.open_streams() == []


def test_late_frames_on_closed_streams_are_ignored():
    cv = Conv()
    cv.c.send_headers(1, req(), end_stream=True)
    cv.flush()
    cv.c.reset_stream(1, ErrorCodes.CANCEL)
    cv.flush()
    cv.raw(False, frame(1, 4, 1, b"\x88") + frame(0, 1, 1, b"late"))
    o = run(cv.steps)
    assert [e.kind for e in o.events] == ["request", "request_end", "rst_stream"]


def _noise_chunks():
    return st.lists(
        st.one_of(
            st.tuples(st.booleans(), st.binary(max_size=200)),
            st.tuples(st.just("gap"), st.booleans(), st.integers(1, 50)),
            st.tuples(st.just("eof"), st.booleans()),
        ),
        max_size=25,
    )


def _check_bounded(o: H2Observer, steps) -> None:
    total = sum(len(s[1]) for s in steps if s[0] not in ("gap", "eof"))
    anomalies = len(of(o.events, "anomaly"))
    assert anomalies <= MAX_ANOMALIES + 1
    assert len(o.events) - anomalies <= 2 * (total // 9) + 2
    assert len(o._streams) <= MAX_STREAMS and len(o._closed) <= _h2.MAX_CLOSED
    for side in (o._c, o._s):
        if side is not None:
            assert len(side.pbuf) <= MAX_BLOCK and len(side.hdr) < 9
            assert side.block is None or len(side.block) <= MAX_BLOCK
    for e in o.events:
        assert e.debug is None or len(e.debug) <= _h2.DEBUG_CHARS


@settings(max_examples=400, deadline=None)
@given(
    _noise_chunks(),
    st.sampled_from([b"", PREFACE, START, START + frame(1, 4, 1, b"\x82\x86\x84")]),
)
def test_random_bytes_never_raise(chunks, prefix):
    steps = [(True, prefix), (False, frame(4, 0, 0)), *chunks] if prefix else chunks
    for split in (None, 3):
        o = run(steps, split)
        _check_bounded(o, steps)
        o.open_streams(), o.unprocessed_streams(), o.synced, o.state(True), o.state(False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_streams_never_raise(data):
    steps = list(_small_conversation())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(steps) - 1))
        fc, blob = steps[i]
        pos = data.draw(st.integers(0, len(blob)))
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        byte = bytes([data.draw(st.integers(0, 255))])
        if op == "flip" and pos < len(blob):
            blob = (
                blob[:pos]
                + bytes([blob[pos] ^ (1 << data.draw(st.integers(0, 7)))])
                + blob[pos + 1 :]
            )
        elif op == "set":
            blob = blob[:pos] + byte + blob[pos + 1 :]
        elif op == "insert":
            blob = blob[:pos] + byte * data.draw(st.integers(1, 20)) + blob[pos:]
        elif op == "delete":
            blob = blob[:pos] + blob[pos + data.draw(st.integers(1, 20)) :]
        else:
            blob = blob[:pos]
        steps[i] = (fc, blob)
    steps += [("eof", True), ("eof", False)]
    o = run(steps, data.draw(st.sampled_from([None, 1, 5])))
    _check_bounded(o, steps)


def test_inputs_that_once_raised():
    for steps in [
        [(True, PREFACE[:5]), ("gap", True, 3), ("eof", True)],
        [(True, b"P"), (True, b"\x00" * 20)],
        [
            (False, frame(4, 0, 0)),
            (True, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(5, 4, 1, b"\x00")),
        ],
        [(False, frame(4, 0, 0)), (False, frame(5, 0xC, 1, b"\x05"))],
        [(True, bytearray(START)), (True, memoryview(frame(1, 5, 1, b"\x82\x84")))],
    ]:
        run(steps)
        run(steps, 1)


# ---------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------


def test_error_names_cover_the_registry():
    assert [ERROR_NAMES[c] for c in range(14)] == [c.name for c in ErrorCodes]
    assert error_name(0xD) == "HTTP_1_1_REQUIRED" and error_name(0x1234) == "0x1234"


def test_frame_header_and_payload_parsers():
    assert parse_frame_header(frame(1, 0x25, 0x80000007, b"abc")) == (3, 1, 0x25, 7, True)
    assert parse_frame_header(frame(0, 0, 1, length=2**24 - 1)) == (2**24 - 1, 0, 0, 1, False)
    assert frame_problem(5, 2, 0, 1, 16384) is None
    assert frame_problem(16385, 0, 0, 1, 16384) is not None
    assert frame_problem(100, 0xFA, 0, 0, 16384) is None  # unknown types are fine
    assert parse_rst_stream(b"\x00\x00\x00\x08") == 8 and parse_rst_stream(b"\x00") is None
    assert parse_goaway(b"\x80\x00\x00\x05\x00\x00\x00\x0bhi\x00") == (5, 11, "hi?")
    assert parse_goaway(b"\x00" * 7) is None
    assert parse_settings(b"\x00\x03\x00\x00\x00\x64\x00\x04") == [(3, 100)]
    assert split_block_payload(1, 0x28, b"\x02" + b"\x00" * 5 + b"AB" + b"pp") == (
        b"AB",
        None,
        None,
    )
    assert split_block_payload(5, 0, b"\x00\x00\x00\x04XY") == (b"XY", 4, None)
    assert (
        split_block_payload(5, 0, b"\x00\x00")[2]
        == "PUSH_PROMISE frame: payload of 2 bytes is too short"
    )
    assert split_block_payload(1, 0x8, b"")[2] is not None
    assert header_fields(
        [(b":status", b"200"), (b"content-length", b"5, 5"), (b":method", b"GET")]
    ) == ("GET", None, None, 200, 5)
    assert header_fields([(b":status", b"2000"), (b"content-length", b"1,2")])[3:] == (None, None)
    assert header_fields([(b":path", b"/" + b"a" * 5000)])[1] == "/" + "a" * (_h2.PATH_CHARS - 1)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=60))
def test_payload_parsers_are_total(ftype, flags, payload):
    frag, promised, problem = split_block_payload(1 if ftype % 2 else 5, flags, payload)
    assert (frag is None) == (problem is not None)
    parse_goaway(payload), parse_settings(payload), parse_rst_stream(payload)
    assert looks_like_h2(payload) in (True, False)
    if len(payload) >= 9:
        length, t, f, sid, _ = parse_frame_header(payload)
        frame_problem(length, t, f, sid, 16384)


def test_fresh_observer_queries():
    o = H2Observer()
    assert o.is_h2 is None and o.synced and o.events == [] and o.open_streams() == []
    assert o.state(True) == "undecided" and o.data_bytes(True) == 0 and o.settings(False) == {}
    assert o.last_goaway(False) is None and o.unprocessed_streams() == [] and o.stream(1) is None
    assert o.hpack_ok(True) and o.direction_synced(False)
    o.gap(True, 0, 0, 0)
    o.feed(True, b"", 0, 0)
    o.eof(False, 0, 0)
    assert o.events == [] and o.is_h2 is None


# ---------------------------------------------------------------------------------------
# The Wireshark corpus: packet-h2-14_headers.pcapng, h2c draft-14 on [::1]:3000.
# Expected values from tshark 4.0.17:
#   tshark -r packet-h2-14_headers.pcapng -d tcp.port==3000,http2 -Y http2 -T fields
#          -e frame.number -e http2.type -e http2.streamid -e http2.flags
#          -e http2.header.name -e http2.header.value
# frame 4: server SETTINGS; 6: client preface, SETTINGS, HEADERS stream 1 (flags 0x05)
# GET /doc/manual/html/index.html, :authority localhost:3000; 10: SETTINGS ACK, HEADERS
# stream 1 :status 200 content-length 22617, 5 DATA; 11: DATA, DATA END_STREAM (2137+0
# bytes); 13: HEADERS stream 3 (flags 0x25) GET .../_static/css/theme.css; 14: HEADERS
# streams 5, 7, 9, 11. No answer to streams 3-11 and no FIN in the capture.
# ---------------------------------------------------------------------------------------

H2_14 = "packet-h2-14_headers.pcapng"
TSHARK_REQUESTS = [
    (6, 1, "GET", "/doc/manual/html/index.html"),
    (13, 3, "GET", "/doc/manual/html/_static/css/theme.css"),
    (14, 5, "GET", "/doc/manual/html/_static/jquery.js"),
    (14, 7, "GET", "/doc/manual/html/_static/underscore.js"),
    (14, 9, "GET", "/doc/manual/html/_static/doctools.js"),
    (14, 11, "GET", "/doc/manual/html/_static/js/theme.js"),
]


@pytest.mark.parametrize("split", [None, 1, 100])
def test_wireshark_h2c_capture_matches_tshark(wireshark_dir, split):
    (s,) = tcp_streams(wireshark_dir / "captures" / H2_14)
    assert s.server == ("::1", 3000)
    first = {
        fc: next(a for k, c, a, *_ in s.steps if k == "data" and c == fc) for fc in (True, False)
    }
    assert looks_like_h2(first[True]) and looks_like_h2(first[False])
    o = H2Observer()
    replay(o, s, split)
    assert o.is_h2 and o.synced and not messages(o)
    reqs = of(o.events, "request")
    assert [(e.frame, e.stream_id, e.method, e.path) for e in reqs] == TSHARK_REQUESTS
    assert {e.authority for e in reqs} == {"localhost:3000"}
    assert [(e.frame, e.stream_id) for e in of(o.events, "request_end")] == [
        r[:2] for r in TSHARK_REQUESTS
    ]
    (rs,) = of(o.events, "response")
    assert (rs.frame, rs.stream_id, rs.status, rs.content_length) == (10, 1, 200, 22617)
    (end,) = of(o.events, "response_end")
    assert (end.frame, end.body_bytes) == (11, 22617)
    assert o.open_streams() == [3, 5, 7, 9, 11] and o.requests == 6 and o.responses == 1


def test_wireshark_h2c_capture_through_the_project_reader(wireshark_dir):
    """The same payload bytes come out of pcapdiag's own reader and decoder (the
    tracker's input), and give the same events."""
    import numpy as np

    from pcapdiag.decode import decode_batch
    from pcapdiag.reader import open_capture

    path: Path = wireshark_dir / "captures" / H2_14
    segments: dict[bool, list[tuple[int, int, int, bytes]]] = {True: [], False: []}
    with open_capture(str(path)) as cap:
        for batch in cap.batches():
            tcp = decode_batch(batch).tcp
            data = np.asarray(tcp.data)
            for i in range(len(tcp)):
                n = int(tcp.payload_cap[i])
                if n:
                    off = int(tcp.payload_off[i])
                    fc = int(tcp.dport[i]) == 3000
                    row = (
                        int(tcp.seq[i]),
                        int(tcp.frame[i]),
                        int(tcp.ts_ns[i]),
                        data[off : off + n].tobytes(),
                    )
                    segments[fc].append(row)
    (s,) = tcp_streams(path)
    for fc in (True, False):
        ours = b"".join(p for *_, p in sorted(segments[fc]))
        theirs = b"".join(a for k, c, a, *_ in s.steps if k == "data" and c == fc)
        assert ours == theirs
    o = H2Observer()
    merged = sorted((ts, f, fc, p) for fc in (True, False) for _, f, ts, p in segments[fc])
    for ts, f, fc, p in merged:
        o.feed(fc, p, ts, f)
    assert [
        (e.frame, e.stream_id, e.method, e.path) for e in of(o.events, "request")
    ] == TSHARK_REQUESTS
    assert [(e.frame, e.status) for e in of(o.events, "response")] == [(10, 200)]


# ---------------------------------------------------------------------------------------
# The project's own h2c samples (sample_pcaps/, recorded by tools/record_samples.py with
# httpx against tools/samples/h2server.py). Expected values from tshark 4.0.17:
#   tshark -r F -d tcp.port==9451,http2 -Y http2 -T fields -e frame.number -e tcp.stream
#          -e http2.type -e http2.streamid -e http2.flags -e http2.header.value
#          -e http2.rst_stream.error -e http2.goaway.error -e http2.goaway.last_stream_id
# and the debug data from the manifest's h2.goaway.debug_data.
# ---------------------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
# file -> per TCP stream: [(kind, frame, stream id, status or error name)]
TSHARK_SAMPLES = {
    "h2_goaway-httpx-h2c.pcap": [
        [
            ("request", 6, 1, None),
            ("request_end", 6, 1, None),
            ("response", 11, 1, 200),
            ("response_end", 11, 1, 200),
            ("goaway", 11, 0, "NO_ERROR"),
        ],
        [
            ("request", 22, 1, None),
            ("request_end", 22, 1, None),
            ("response", 24, 1, 200),
            ("response_end", 24, 1, 200),
            ("goaway", 24, 0, "NO_ERROR"),
        ],
    ],
    "h2_rst_stream-httpx-h2c.pcap": [
        [
            ("request", 8, 1, None),
            ("request_end", 8, 1, None),
            ("rst_stream", 12, 1, "REFUSED_STREAM"),
        ]
    ],
    "h2_goaway_error-httpx-h2c-protocol_error.pcap": [
        [
            ("request", 10, 1, None),
            ("request_end", 10, 1, None),
            ("goaway", 13, 0, "PROTOCOL_ERROR"),
        ]
    ],
}


@pytest.mark.parametrize("split", [None, 1])
@pytest.mark.parametrize("name", list(TSHARK_SAMPLES))
def test_h2c_samples_match_tshark(name, split):
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    results = []
    for s in tcp_streams(path):
        o = H2Observer()
        replay(o, s, split)
        assert o.is_h2 and o.synced and not messages(o)
        assert {(e.method, e.path) for e in o.events if e.stream_id} == {("GET", "/")}
        results.append([(e.kind, e.frame, e.stream_id, e.status or e.error_name) for e in o.events])
        goaway = o.last_goaway(False)
        if name.startswith("h2_goaway_error"):
            assert goaway is not None and goaway.last_stream_id == 0
            assert goaway.debug == "pcapdiag: calm down, too many requests"
            assert o.open_streams() == [1] and o.unprocessed_streams() == [1]
        elif goaway is not None:
            assert goaway.last_stream_id == 1 and o.open_streams() == []
    assert results == TSHARK_SAMPLES[name]
