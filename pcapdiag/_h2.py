"""HTTP/2 framing, observed passively from both directions of a cleartext (h2c) connection.

On an HTTP/2 connection the TCP close says little: many requests share it, and how each
of them ended is told by frames. A GOAWAY names the last stream the sender will process
and an error code (so the requests above it were never handled and are safe to retry),
an RST_STREAM cancels or refuses one request, and the streams still waiting for their
END_STREAM when the FIN or RST arrives are the ones the client library reports as
failed. So we follow the framing (RFC 9113 §4) and decode the header blocks (RFC 7541,
with the ``hpack`` package: the dynamic table is per direction, hence one decoder each)
to name the requests, and turn all that into events the connection tracker drains.

As in ``_http`` and ``_tls``, parsing (pure functions on bytes) is separate from state
(``_Side`` plus the stream table in ``H2Observer``). Everything on the wire is untrusted:
we never raise, state is bounded (frame headers, header blocks up to ``MAX_BLOCK``, the
first bytes of small control frames, ``MAX_STREAMS`` streams, ``MAX_ANOMALIES``), odd
traffic becomes an ``anomaly`` event, and a frame header that no peer could send (an
HTTP/2 connection error) means framing is lost: we say so once and stop interpreting that
direction. A header block we cannot decode (capture started mid-connection, so the
dynamic table is unknown; bytes not captured; a block over the cap) does not lose the
framing, only HPACK: later blocks of that direction still open and close streams, but
without method, path or status.

Speed. DATA frames are the bulk of the bytes. Their bodies are skipped by arithmetic: a
segment inside a body costs one comparison in ``feed``, a whole DATA frame inside a
segment a few integer operations, and no payload byte is copied unless we read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpack import Decoder

__all__ = [
    "ERROR_NAMES",
    "FRAME_NAMES",
    "PREFACE",
    "SETTINGS_NAMES",
    "H2Event",
    "H2Observer",
    "H2Stream",
    "error_name",
    "frame_problem",
    "header_fields",
    "looks_like_h2",
    "parse_frame_header",
    "parse_goaway",
    "parse_rst_stream",
    "parse_settings",
    "split_block_payload",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4, sent by the client first
PREFACE_MIN = 14  # "PRI * HTTP/2.0": a prefix this long is taken as the preface at EOF
FRAME_HEADER = 9
DEFAULT_MAX_FRAME = 2**14  # SETTINGS_MAX_FRAME_SIZE until a peer raises it
MAX_FRAME_LENGTH = 2**24 - 1  # what the 24-bit length field can say
MAX_BLOCK = 64 * 1024  # a header block (HEADERS/PUSH_PROMISE + CONTINUATION) we buffer
MAX_HEADER_LIST = 64 * 1024  # decoded header list size (RFC 7541 §4.1 accounting)
MAX_TABLE = 1 << 20  # largest HPACK dynamic table a peer may make us keep per direction
MAX_STREAMS = 1024  # streams tracked at once; more are only counted
MAX_CLOSED = 1024  # closed stream ids remembered, so late frames do not reopen them
MAX_ANOMALIES = 32  # anomaly events per observer; later ones are only counted
DECIDE_BYTES = 64 * 1024  # bytes held per direction while deciding whether this is h2
SETTINGS_BYTES = 6 * 32  # SETTINGS payload we read; the rest is skipped
DEBUG_BYTES = 800  # GOAWAY debug data we read (200 characters of UTF-8 at most)
DEBUG_CHARS = 200
VALUE_CHARS = 200  # method, authority in events
PATH_CHARS = 1024
_INF = 1 << 62  # ``skip`` of a direction we no longer interpret

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0, 1, 2, 3, 4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 5, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

FRAME_NAMES = (
    "DATA",
    "HEADERS",
    "PRIORITY",
    "RST_STREAM",
    "SETTINGS",
    "PUSH_PROMISE",
    "PING",
    "GOAWAY",
    "WINDOW_UPDATE",
    "CONTINUATION",
)
# Flags each type defines (RFC 9113 §6); a sender leaves the others unset.
_DEFINED_FLAGS = (
    END_STREAM | PADDED,
    END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
    0,
    0,
    ACK,
    END_HEADERS | PADDED,
    ACK,
    0,
    0,
    END_HEADERS,
)

ERROR_NAMES: dict[int, str] = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}

SETTINGS_NAMES: dict[int, str] = {
    0x1: "HEADER_TABLE_SIZE",
    0x2: "ENABLE_PUSH",
    0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE",
    0x5: "MAX_FRAME_SIZE",
    0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL",
    0x9: "NO_RFC7540_PRIORITIES",
}


def error_name(code: int) -> str:
    """'CANCEL' etc.; codes outside the registry as hex ('0xff')."""
    name = ERROR_NAMES.get(code)
    return name if name is not None else f"0x{code:x}"


def _frame_name(ftype: int) -> str:
    return FRAME_NAMES[ftype] if ftype < 10 else f"frame type 0x{ftype:02x}"


# ---------------------------------------------------------------------------------------
# Parsing: pure functions on bytes
# ---------------------------------------------------------------------------------------


def parse_frame_header(h: bytes, pos: int = 0) -> tuple[int, int, int, int, bool]:
    """(length, type, flags, stream id, reserved bit) of the 9 bytes at ``pos``."""
    length = h[pos] << 16 | h[pos + 1] << 8 | h[pos + 2]
    sid = int.from_bytes(h[pos + 5 : pos + 9])
    return length, h[pos + 3], h[pos + 4], sid & 0x7FFFFFFF, sid > 0x7FFFFFFF


def frame_problem(length: int, ftype: int, flags: int, stream: int, limit: int) -> str | None:
    """Why no HTTP/2 peer could send this frame header (a connection error, RFC 9113
    §4.2, §6), or None. ``limit``: the largest frame the receiver accepts."""
    if length > limit:
        return (
            f"{_frame_name(ftype)} frame of {length} bytes exceeds the maximum frame size {limit}"
        )
    if ftype > CONTINUATION:
        return None  # unknown types are skipped (§5.5)
    if ftype in (SETTINGS, PING, GOAWAY):
        if stream:
            return f"{FRAME_NAMES[ftype]} frame on stream {stream}"
    elif ftype != WINDOW_UPDATE and not stream:
        return f"{FRAME_NAMES[ftype]} frame on stream 0"
    if ftype == SETTINGS:
        if flags & ACK and length:
            return f"SETTINGS ACK with a {length}-byte payload"
        if length % 6:
            return f"SETTINGS frame of {length} bytes (not a multiple of 6)"
    elif (
        (ftype == RST_STREAM and length != 4)
        or (ftype == WINDOW_UPDATE and length != 4)
        or (ftype == PING and length != 8)
        or (ftype == GOAWAY and length < 8)
    ):
        return f"{FRAME_NAMES[ftype]} frame of {length} bytes"
    return None


def _detectable(length: int, ftype: int, flags: int, stream: int, reserved: bool) -> bool:
    """A frame header as a well-behaved peer writes it, within default settings: the test
    for recognising HTTP/2 without the preface (stricter than ``frame_problem``)."""
    if ftype > CONTINUATION or reserved or flags & ~_DEFINED_FLAGS[ftype]:
        return False
    if frame_problem(length, ftype, flags, stream, DEFAULT_MAX_FRAME) is not None:
        return False
    if ftype == PRIORITY:
        return length == 5
    need = 0
    if ftype in (DATA, HEADERS, PUSH_PROMISE) and flags & PADDED:
        need += 1
    if ftype == HEADERS and flags & PRIORITY_FLAG:
        need += 5
    if ftype == PUSH_PROMISE:
        need += 4
    return length >= need


def _verdict(head: bytes, final: bool) -> tuple[bool | None, int]:
    """Is ``head``, the first bytes of one direction, HTTP/2? (verdict, bytes needed):
    None until ``need`` bytes are in, unless ``final`` (no more bytes: decide now).

    True for the client connection preface, a SETTINGS frame first (what every endpoint
    sends first), or two plausible frame headers in a row (the second one must start
    where the first frame ends, so a capture that began mid-connection on a frame
    boundary is recognised). With ``final``, one plausible frame that ends exactly at the
    end of ``head`` also counts, and so does a prefix of the preface of 14+ bytes.
    The verdict never depends on how the bytes were split: more bytes only refine None.
    """
    n = len(head)
    if n >= len(PREFACE) and head.startswith(PREFACE):
        return True, 0
    if PREFACE.startswith(head[: len(PREFACE)]):  # a proper prefix, possibly empty
        if final:
            return n >= PREFACE_MIN, 0
        return None, n + 1  # the next byte may already differ
    pos = count = 0
    while pos + FRAME_HEADER <= n:
        length, ftype, flags, stream, reserved = parse_frame_header(head, pos)
        if not _detectable(length, ftype, flags, stream, reserved):
            return False, 0
        if not count:
            if ftype == CONTINUATION:
                return False, 0  # cannot begin a conversation
            if ftype == SETTINGS and not flags & ACK:
                return True, 0
        count += 1
        if count == 2:
            return True, 0
        pos += FRAME_HEADER + length
    if final:
        return bool(count) and pos == n, 0
    return None, pos + FRAME_HEADER


def looks_like_h2(head: bytes) -> bool:
    """Do these first payload bytes of a direction (one segment, or a few) start HTTP/2?

    Conservative, for the tracker to pick the observer: the client preface, a first
    SETTINGS frame (the server's opening), or frame headers that a peer with default
    settings would write (known type, only defined flags, stream-id and length rules)
    chained without a gap: two in ``head``, or one frame ending exactly at its end.
    HTTP/1.x text, TLS records and random bytes fail in the first 9 bytes.
    """
    try:
        return _verdict(bytes(head), True)[0] is True
    except Exception:  # never raise, whatever the tracker hands us
        return False


def split_block_payload(
    ftype: int, flags: int, payload: bytes
) -> tuple[bytes | None, int | None, str | None]:
    """A HEADERS or PUSH_PROMISE payload -> (header block fragment, promised stream id,
    problem). Strips padding (PADDED) and priority fields (HEADERS with PRIORITY).
    On a problem (padding longer than the payload, too short) the fragment is None."""
    pos, end = 0, len(payload)
    if flags & PADDED:
        if not end:
            return None, None, f"{FRAME_NAMES[ftype]} frame flagged PADDED has no payload"
        pad = payload[0]
        pos = 1
        end -= pad
    if ftype == HEADERS and flags & PRIORITY_FLAG:
        pos += 5
    promised = None
    if ftype == PUSH_PROMISE:
        if pos + 4 <= len(payload):
            promised = int.from_bytes(payload[pos : pos + 4]) & 0x7FFFFFFF
        pos += 4
    if pos > end:
        if flags & PADDED:
            what = f"padding of {payload[0]} bytes exceeds the {len(payload)}-byte payload"
        else:
            what = f"payload of {len(payload)} bytes is too short"
        return None, promised, f"{FRAME_NAMES[ftype]} frame: {what}"
    return bytes(payload[pos:end]), promised, None


def parse_rst_stream(payload: bytes) -> int | None:
    """The error code of an RST_STREAM payload (None if not 4 bytes)."""
    return int.from_bytes(payload) if len(payload) == 4 else None


def _printable(raw: bytes, limit: int) -> str:
    text = bytes(raw[: limit * 4]).decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text[:limit])


def parse_goaway(payload: bytes) -> tuple[int, int, str] | None:
    """(last stream id, error code, debug text) of a GOAWAY payload; None if shorter than
    8 bytes. The debug data is opaque: shown as at most ``DEBUG_CHARS`` printable
    characters (UTF-8 where it decodes, '?' for the rest)."""
    if len(payload) < 8:
        return None
    last = int.from_bytes(payload[:4]) & 0x7FFFFFFF
    return last, int.from_bytes(payload[4:8]), _printable(payload[8:], DEBUG_CHARS)


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """(identifier, value) pairs of a SETTINGS payload; a trailing partial pair is ignored."""
    return [
        (int.from_bytes(payload[i : i + 2]), int.from_bytes(payload[i + 2 : i + 6]))
        for i in range(0, len(payload) - 5, 6)
    ]


def header_fields(
    headers: list[tuple[bytes, bytes]],
) -> tuple[str | None, str | None, str | None, int | None, int | None]:
    """(:method, :path, :authority, :status, content-length) of a decoded header list.
    A status that is not three digits and a content-length that is not one decimal
    number (repeated identical values accepted) are None."""
    method = path = authority = None
    status = clen = None
    lengths: set[bytes] = set()
    for name, value in headers:
        if name == b":method":
            method = bytes(value[:VALUE_CHARS]).decode("latin-1")
        elif name == b":path":
            path = bytes(value[:PATH_CHARS]).decode("latin-1")
        elif name == b":authority":
            authority = bytes(value[:VALUE_CHARS]).decode("latin-1")
        elif name == b":status":
            if len(value) == 3 and value.isdigit():
                status = int(value)
        elif name == b"content-length":
            lengths.update(v.strip() for v in bytes(value).split(b","))
    if len(lengths) == 1:
        (v,) = lengths
        if 0 < len(v) <= 18 and v.isdigit():
            clen = int(v)
    return method, path, authority, status, clen


_BLOB = re.compile(r"(?::| from) (?:<memory at 0x[0-9a-fA-F]+>|b['\"]).*", re.S)


def _reason(exc: Exception) -> str:
    """An hpack error message without the bytes some of them quote (their repr, or a
    memoryview's address: neither helps a reader, and the address changes per run)."""
    return _BLOB.sub("", str(exc))[:80]


# ---------------------------------------------------------------------------------------
# Events and state
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class H2Event:
    """Something that happened on the wire, at ``frame`` / ``ts_ns`` (the segment in
    which the frame, or the header block, completed).

    ``kind``: 'request' (client HEADERS opening a stream), 'request_end' (client
    END_STREAM), 'response' (server HEADERS with a :status; interim 1xx ones get a
    'response' but no 'response_end'), 'response_end' (server END_STREAM, on DATA or
    trailers), 'rst_stream', 'goaway' (``from_client``: who sent it) or 'anomaly'
    (``message`` says what). ``method``/``path``/``authority`` are those of the stream's
    request (None if not seen or not decodable); ``status`` its final status.
    """

    kind: str
    frame: int
    ts_ns: int
    from_client: bool
    stream_id: int = 0
    method: str | None = None
    path: str | None = None
    authority: str | None = None
    status: int | None = None
    content_length: int | None = None  # from this message's headers
    body_bytes: int | None = None  # on *_end: DATA payload bytes (padding out, gaps in)
    error_code: int | None = None  # rst_stream, goaway
    error_name: str | None = None
    last_stream_id: int | None = None  # goaway
    debug: str | None = None  # goaway debug data, printable, <= DEBUG_CHARS
    message: str | None = None  # anomaly


@dataclass(slots=True)
class H2Stream:
    """What we know of one stream. ``requested``: its request HEADERS (or, for a pushed
    stream, the PUSH_PROMISE) was seen; streams first seen in a server frame (the capture
    began after the request) have it False."""

    stream_id: int
    requested: bool = False
    pushed: bool = False
    method: str | None = None
    path: str | None = None
    authority: str | None = None
    request_length: int | None = None  # content-length of the request
    status: int | None = None  # final status
    response_length: int | None = None  # content-length of the response
    responded: bool = False  # final response HEADERS seen
    request_end: bool = False
    response_end: bool = False
    reset: bool = False
    reset_by_client: bool | None = None
    error_code: int | None = None  # of the RST_STREAM
    request_bytes: int = 0  # DATA payload bytes from the client
    response_bytes: int = 0


# Per-direction parse states.
_UNDECIDED = 0  # is_h2 unknown: bytes held in the observer's pending list
_PREFACE = 1  # first bytes of a direction: the client preface, or a first frame
_HDR = 2  # a frame header is due (``hdr`` holds its bytes if split)
_KEEP = 3  # reading ``want`` payload bytes into ``pbuf`` (then ``rest`` to skip)
_SKIP = 4  # skipping ``skip`` payload bytes
_LOST = 5  # framing lost: stop interpreting
_STATE_NAMES = ("undecided", "preface", "idle", "frame", "frame", "lost")


class _Side:
    """Framing and HPACK state of one direction."""

    __slots__ = (
        "from_client",
        "state",
        "ppos",
        "saw_preface",
        "hdr",
        "ftype",
        "flags",
        "stream",
        "length",
        "want",
        "rest",
        "skip",
        "pbuf",
        "gapped",
        "block",
        "block_stream",
        "block_type",
        "block_end_stream",
        "block_promised",
        "decoder",
        "hpack_ok",
        "table_limit",
        "max_frame",
        "head",
        "need",
        "undecidable",
        "frames",
        "data_bytes",
        "settings",
        "pings",
        "eof",
    )

    def __init__(self, from_client: bool) -> None:
        self.from_client = from_client
        self.state = _UNDECIDED
        self.ppos = 0  # preface bytes matched
        self.saw_preface = False
        self.hdr = bytearray()  # a frame header split over segments
        self.ftype = 0  # the frame in progress
        self.flags = 0
        self.stream = 0
        self.length = 0
        # Payload bytes still to come: ``want`` we read into ``pbuf``, then ``rest`` we
        # only count; in _SKIP, ``skip`` (_INF once lost). One comparison in ``feed``
        # then covers a DATA body.
        self.want = 0
        self.rest = 0
        self.skip = 0
        self.pbuf = bytearray()
        self.gapped = False  # the frame in progress lost bytes
        # A header block waiting for CONTINUATION: its fragments so far (None once it is
        # known to be undecodable), stream, first frame's type, END_STREAM, promised id.
        self.block: bytearray | None = None
        self.block_stream: int | None = None
        self.block_type = HEADERS
        self.block_end_stream = False
        self.block_promised: int | None = None
        self.decoder: Decoder | None = None  # made at the first header block
        self.hpack_ok = True
        self.table_limit = 4096  # HPACK table size the peer allowed this side's encoder
        self.max_frame = DEFAULT_MAX_FRAME  # frame size the peer allowed this side
        self.head = bytearray()  # first bytes while undecided
        self.need = 0  # verdict is re-checked once ``head`` has this many bytes
        self.undecidable = False  # a gap or EOF came before the verdict
        self.frames = 0
        self.data_bytes = 0  # DATA payload bytes, padding included
        self.settings: dict[str, int] = {}
        self.pings = 0
        self.eof = False


class H2Observer:
    """Follows HTTP/2 framing on one TCP connection; see the module docstring.

    ``is_h2`` is None until the first bytes of a direction decide it (``_verdict``: the
    client preface, a SETTINGS frame, or chained plausible frame headers); bytes are held
    (at most ``DECIDE_BYTES`` per direction) until then and replayed. A direction whose
    first bytes cannot be HTTP/2 makes it False, and the observer ignores everything
    after. The preface from the side the tracker calls the server sets ``roles_flipped``
    (requests then come from that side; ``from_client`` in events keeps the tracker's
    labels).

    The tracker drains ``events`` (and clears the list). Queries: ``open_streams()``,
    ``stream(id)``, ``last_goaway(sent_by_client)``, ``unprocessed_streams()``, the
    counters, ``synced`` / ``direction_synced(from_client)`` and ``state(from_client)``.
    """

    looks_like_h2 = staticmethod(looks_like_h2)

    __slots__ = (
        "is_h2",
        "roles_flipped",
        "events",
        "requests",
        "responses",
        "interim_responses",
        "pushes",
        "resets_by_client",
        "resets_by_server",
        "goaways",
        "anomaly_count",
        "untracked_streams",
        "highest_stream",
        "_goaway_client",
        "_goaway_server",
        "_c",
        "_s",
        "_fresh",
        "_pending",
        "_streams",
        "_closed",
    )

    def __init__(self) -> None:
        self.is_h2: bool | None = None
        self.roles_flipped = False
        self.events: list[H2Event] = []
        self.requests = 0  # request header blocks that opened a stream
        self.responses = 0  # final (non-1xx) responses
        self.interim_responses = 0
        self.pushes = 0  # PUSH_PROMISE frames
        self.resets_by_client = 0
        self.resets_by_server = 0
        self.goaways = 0
        self.anomaly_count = 0
        self.untracked_streams = 0  # streams beyond MAX_STREAMS, only counted
        self.highest_stream = 0  # highest stream id opened by a request
        self._goaway_client: H2Event | None = None
        self._goaway_server: H2Event | None = None
        # A direction's state is made when it first shows up: there is one observer per
        # connection, and captures can hold millions of short ones.
        self._c: _Side | None = None
        self._s: _Side | None = None
        self._fresh = False  # the connection preface was seen: default settings apply
        # While undecided: ('data'|'gap'|'eof', from_client, data or nbytes, ts, frame)
        self._pending: list[tuple[str, bool, bytes | int, int, int]] = []
        self._streams: dict[int, H2Stream] = {}
        self._closed: dict[int, None] = {}  # insertion-ordered, at most MAX_CLOSED

    def _new_side(self, from_client: bool) -> _Side:
        side = _Side(from_client)
        if self.is_h2 is False:
            side.state = _LOST
            side.skip = _INF  # as _not_h2 left both directions
        elif self.is_h2:
            side.state = _PREFACE
        if from_client:
            self._c = side
        else:
            self._s = side
        return side

    # -- feeding ---------------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, ts_ns: int, frame: int) -> None:
        """In-order payload bytes of one direction."""
        side = self._c if from_client else self._s
        if side is None:
            side = self._new_side(from_client)
        n = len(data)
        if n < side.skip:  # inside a DATA body (or a lost direction): just count
            side.skip -= n
            return
        if not n or side.state == _LOST:
            return
        if side.state == _UNDECIDED:
            self._hold(side, data, ts_ns, frame)
            return
        self._run(side, data, ts_ns, frame)

    def gap(self, from_client: bool, nbytes: int, ts_ns: int, frame: int) -> None:
        """``nbytes`` on the wire that were not captured: fine inside a frame payload
        (a header block is then undecodable), fatal where a frame header was due."""
        side = self._c if from_client else self._s
        if side is None:
            side = self._new_side(from_client)
        if nbytes <= 0 or side.state == _LOST:
            return
        if side.state == _UNDECIDED:
            if not side.undecidable:
                self._pending.append(("gap", from_client, nbytes, ts_ns, frame))
                self._finish_head(side)  # what follows is no start of a direction
            return
        if side.state in (_KEEP, _SKIP):
            if side.state == _KEEP:
                side.skip = side.want + side.rest
                side.want = side.rest = 0
                side.state = _SKIP
            take = min(nbytes, side.skip)
            side.skip -= take
            nbytes -= take
            side.gapped = True
            if not side.skip:
                self._end_frame(side, ts_ns, frame)
            if not nbytes or side.state == _LOST:
                return
        where = (
            "at the start of the direction"
            if side.state == _PREFACE
            else "where a frame header was due"
        )
        self._lose(side, f"{nbytes} bytes not captured {where}", ts_ns, frame)

    def eof(self, from_client: bool, ts_ns: int, frame: int) -> None:
        """That side sent FIN: a frame or header block cut short is an anomaly."""
        side = self._c if from_client else self._s
        if side is None:
            side = self._new_side(from_client)
        if side.eof:
            return
        side.eof = True
        if side.state == _UNDECIDED:
            self._pending.append(("eof", from_client, 0, ts_ns, frame))
            if not side.undecidable:
                self._finish_head(side)
            return
        if side.state == _LOST:
            return
        who = "client" if from_client else "server"
        if side.state == _HDR and side.hdr:
            msg = f"{who} closed inside a frame header ({len(side.hdr)} of 9 bytes)"
            self._anomaly(side, msg, ts_ns, frame)
        elif side.state in (_KEEP, _SKIP):
            got = side.length - side.want - side.rest - side.skip
            name = _frame_name(side.ftype)
            msg = f"{who} closed inside a {name} frame: {got} of {side.length} payload bytes"
            self._anomaly(side, msg, ts_ns, frame)
        elif side.state == _PREFACE and side.ppos:
            self._anomaly(side, f"{who} closed inside the connection preface", ts_ns, frame)
        if side.block_stream is not None:
            msg = f"{who} closed inside the header block of stream {side.block_stream}"
            self._anomaly(side, msg, ts_ns, frame)

    # -- status queries ----------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Neither direction lost framing (an undecided or non-h2 connection counts as
        synced here; see ``is_h2``)."""
        return self.direction_synced(True) and self.direction_synced(False)

    def direction_synced(self, from_client: bool) -> bool:
        side = self._c if from_client else self._s
        return side is None or side.state != _LOST or self.is_h2 is False

    def state(self, from_client: bool) -> str:
        """Parse state of one direction: undecided, preface, idle, frame or lost (also
        for a connection that is not HTTP/2)."""
        side = self._c if from_client else self._s
        if side is None:
            return "lost" if self.is_h2 is False else "idle" if self.is_h2 else "undecided"
        if side.state == _HDR and side.hdr:
            return "frame"
        return _STATE_NAMES[side.state]

    def hpack_ok(self, from_client: bool) -> bool:
        """Header blocks of that direction are still decodable."""
        side = self._c if from_client else self._s
        return side is None or side.hpack_ok

    def stream(self, stream_id: int) -> H2Stream | None:
        """A stream still tracked (open, or half-closed); None once closed or unknown."""
        return self._streams.get(stream_id)

    def open_streams(self, include_pushed: bool = False) -> list[int]:
        """Streams with a request and no response_end, not reset; ascending."""
        return sorted(
            sid
            for sid, st in self._streams.items()
            if st.requested
            and not st.response_end
            and not st.reset
            and (include_pushed or not st.pushed)
        )

    def last_goaway(self, sent_by_client: bool) -> H2Event | None:
        """The last GOAWAY that side sent (the peer's view: what it was told)."""
        return self._goaway_client if sent_by_client else self._goaway_server

    @property
    def goaway_from_server(self) -> H2Event | None:
        return self._goaway_server

    @property
    def goaway_from_client(self) -> H2Event | None:
        return self._goaway_client

    def unprocessed_streams(self) -> list[int]:
        """Open client streams above the last stream id of the server's GOAWAY: the
        server says it never processed them, so they are safe to retry (RFC 9113 §6.8)."""
        g = self._goaway_server
        if g is None or g.last_stream_id is None:
            return []
        return [sid for sid in self.open_streams() if sid > g.last_stream_id]

    def data_bytes(self, from_client: bool) -> int:
        """DATA frame payload bytes that side sent (padding included, frames begun)."""
        side = self._c if from_client else self._s
        return side.data_bytes if side is not None else 0

    def settings(self, from_client: bool) -> dict[str, int]:
        """The SETTINGS that side sent (last value of each known identifier)."""
        side = self._c if from_client else self._s
        return dict(side.settings) if side is not None else {}

    # -- deciding --------------------------------------------------------------------

    def _hold(self, side: _Side, data: bytes, ts: int, frame: int) -> None:
        """Keep the bytes of an undecided direction; decide once enough are in."""
        if side.undecidable:  # after a gap at its start (or EOF): replay would lose it
            other = self._s if side.from_client else self._c
            if other is not None and other.undecidable:
                self._decide(False)  # neither direction can decide any more
            return
        self._pending.append(("data", side.from_client, bytes(data), ts, frame))
        head = side.head
        room = DECIDE_BYTES - len(head)
        head += data[:room]
        if len(head) < side.need and len(data) <= room:
            return
        verdict, side.need = _verdict(bytes(head), False)
        if verdict is None and len(data) > room:
            verdict = False  # a first frame this long is no evidence
        if verdict is not None:
            self._decide(verdict)

    def _finish_head(self, side: _Side) -> None:
        """No more bytes of this direction's start (a gap or EOF): decide on what came."""
        side.undecidable = True
        if side.head:
            self._decide(_verdict(bytes(side.head), True)[0] is True)
            return
        c, s = self._c, self._s
        if (
            (c is None or c.undecidable)
            and (s is None or s.undecidable)
            and any(p[0] == "data" for p in self._pending)
        ):
            self._decide(False)  # neither direction can decide any more

    def _decide(self, verdict: bool) -> None:
        pending, self._pending = self._pending, []
        for side in (self._c, self._s):
            if side is not None:
                side.head = bytearray()
        if not verdict:
            self.is_h2 = False
            for side in (self._c, self._s):
                if side is not None:
                    side.state = _LOST
                    side.skip = _INF  # the tracker should stop feeding; if not, cheap
            return
        self.is_h2 = True
        for side in (self._c, self._s):
            if side is not None:
                side.state = _PREFACE
        for kind, from_client, arg, ts, frame in pending:  # in arrival order
            side = self._c if from_client else self._s
            if side is None or side.state == _LOST:
                continue
            if kind == "data":
                assert isinstance(arg, bytes)
                if len(arg) < side.skip:
                    side.skip -= len(arg)
                else:
                    self._run(side, arg, ts, frame)
            elif kind == "gap":
                assert isinstance(arg, int)
                self.gap(from_client, arg, ts, frame)
            else:
                side.eof = False
                self.eof(from_client, ts, frame)

    # -- framing -----------------------------------------------------------------------

    def _run(self, side: _Side, data: bytes, ts: int, frame: int) -> None:
        pos, n = 0, len(data)
        while pos < n:
            st = side.state
            if st == _SKIP:
                take = min(n - pos, side.skip)
                side.skip -= take
                pos += take
                if not side.skip:
                    self._end_frame(side, ts, frame)
            elif st == _HDR:
                if side.hdr:
                    take = FRAME_HEADER - len(side.hdr)
                    side.hdr += data[pos : pos + take]
                    pos += take
                    if len(side.hdr) < FRAME_HEADER:
                        return
                    length, ftype, flags, stream, _ = parse_frame_header(side.hdr)
                    side.hdr.clear()
                elif pos + FRAME_HEADER <= n:
                    length = data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]
                    ftype = data[pos + 3]
                    flags = data[pos + 4]
                    stream = int.from_bytes(data[pos + 5 : pos + 9]) & 0x7FFFFFFF
                    pos += FRAME_HEADER
                    if (
                        not ftype
                        and not flags
                        and pos + length <= n
                        and stream
                        and side.block_stream is None
                        and (length <= side.max_frame or not self._fresh)
                    ):
                        # The bulk of HTTP/2: a whole DATA frame without flags on a
                        # tracked stream. _start_frame + _end_frame, inline.
                        st_ = self._streams.get(stream)
                        if st_ is not None:
                            pos += length
                            side.frames += 1
                            side.data_bytes += length
                            if side.from_client != self.roles_flipped:
                                st_.request_bytes += length
                            else:
                                st_.response_bytes += length
                            continue
                else:
                    side.hdr += data[pos:]
                    return
                self._start_frame(side, length, ftype, flags, stream, ts, frame)
            elif st == _KEEP:
                take = min(n - pos, side.want)
                side.pbuf += data[pos : pos + take]
                side.want -= take
                pos += take
                if not side.want:
                    if side.rest:
                        side.skip, side.rest = side.rest, 0
                        side.state = _SKIP
                    else:
                        self._end_frame(side, ts, frame)
            elif st == _PREFACE:
                pos = self._preface(side, data, pos, ts, frame)
            else:  # lost (or undecided, which _run never sees)
                return

    def _preface(self, side: _Side, data: bytes, pos: int, ts: int, frame: int) -> int:
        """The first bytes of a direction: the connection preface, or straight frames."""
        want = PREFACE[side.ppos :]
        chunk = bytes(data[pos : pos + len(want)])
        if want.startswith(chunk):
            side.ppos += len(chunk)
            if side.ppos < len(PREFACE):
                return pos + len(chunk)
            side.saw_preface = True
            side.state = _HDR
            self._fresh = True
            if not side.from_client and not self.roles_flipped:
                if self.requests or self.responses:
                    msg = "connection preface from the server side, after requests"
                    self._anomaly(side, msg, ts, frame)
                else:
                    self.roles_flipped = True
                    msg = (
                        "roles flipped: the connection preface comes from the side labelled server"
                    )
                    self._anomaly(side, msg, ts, frame)
            return pos + len(chunk)
        side.state = _HDR  # no preface: the server, or a capture begun mid-connection
        if side.ppos:  # it only began like one: read those bytes as frames after all
            matched, side.ppos = PREFACE[: side.ppos], 0
            self._run(side, matched, ts, frame)
        return pos

    def _limit(self, side: _Side, ftype: int) -> int:
        """Largest frame this side may send: unknown types are held to the default
        size; the rest only once we saw the connection start (else settings unknown)."""
        if ftype > CONTINUATION or self._fresh:
            return side.max_frame
        return MAX_FRAME_LENGTH

    def _start_frame(
        self, side: _Side, length: int, ftype: int, flags: int, stream: int, ts: int, frame: int
    ) -> None:
        """A frame header has been read: check it and plan how to read its payload."""
        side.frames += 1
        problem = frame_problem(length, ftype, flags, stream, self._limit(side, ftype))
        if problem is not None:
            self._lose(side, f"implausible frame header: {problem}", ts, frame)
            return
        if side.block_stream is not None and (ftype != CONTINUATION or stream != side.block_stream):
            what = f"{_frame_name(ftype)} on stream {stream}"
            msg = f"header block of stream {side.block_stream} interrupted by {what}"
            self._break_hpack(side, msg, ts, frame)
            side.block = side.block_stream = None
        side.ftype, side.flags, side.stream, side.length = ftype, flags, stream, length
        side.gapped = False
        if side.pbuf:
            side.pbuf.clear()
        keep = 0
        if ftype == DATA:
            side.data_bytes += length
            if flags & PADDED and length:
                keep = 1
        elif ftype in (HEADERS, PUSH_PROMISE):
            keep = length
            if length > MAX_BLOCK:
                keep = 0
                msg = f"{FRAME_NAMES[ftype]} header block of more than {MAX_BLOCK} bytes"
                self._break_hpack(side, msg, ts, frame)
        elif ftype == CONTINUATION:
            if side.block_stream is None:
                msg = f"CONTINUATION on stream {stream} without HEADERS or PUSH_PROMISE"
                self._break_hpack(side, msg, ts, frame)
            elif side.block is not None:
                keep = length
                if len(side.block) + length > MAX_BLOCK:
                    keep = 0
                    side.block = None
                    msg = f"header block of more than {MAX_BLOCK} bytes"
                    self._break_hpack(side, msg, ts, frame)
        elif ftype in (RST_STREAM, WINDOW_UPDATE):
            keep = 4
        elif ftype == SETTINGS:
            keep = min(length, SETTINGS_BYTES)
        elif ftype == GOAWAY:
            keep = min(length, 8 + DEBUG_BYTES)
        elif ftype == PRIORITY and length != 5:
            self._anomaly(side, f"PRIORITY frame of {length} bytes", ts, frame)
        if keep:
            side.want, side.rest = keep, length - keep
            side.state = _KEEP
        elif length:
            side.want = side.rest = 0
            side.skip = length
            side.state = _SKIP
        else:
            self._end_frame(side, ts, frame)

    def _end_frame(self, side: _Side, ts: int, frame: int) -> None:
        """The last payload byte of the frame is in (or was not captured)."""
        side.state = _HDR
        side.skip = 0
        ftype, flags, stream = side.ftype, side.flags, side.stream
        payload = bytes(side.pbuf)
        if side.pbuf:
            side.pbuf.clear()
        if ftype == DATA:
            self._data(side, flags, stream, payload, ts, frame)
        elif ftype in (HEADERS, PUSH_PROMISE):
            self._block_start(side, ftype, flags, stream, payload, ts, frame)
        elif ftype == CONTINUATION:
            if side.block_stream is None:
                return
            if side.gapped and side.block is not None:
                side.block = None
                self._break_hpack(side, "header block bytes not captured", ts, frame)
            if side.block is not None:
                side.block += payload
            if flags & END_HEADERS:
                self._block_end(side, ts, frame)
        elif side.gapped and len(payload) < min(side.length, 8):
            name = FRAME_NAMES[ftype] if ftype < 10 else None
            if name in ("RST_STREAM", "GOAWAY", "SETTINGS"):
                self._anomaly(side, f"{name} frame not fully captured", ts, frame)
        elif ftype == RST_STREAM:
            self._rst_stream(side, stream, parse_rst_stream(payload), ts, frame)
        elif ftype == GOAWAY:
            self._goaway(side, parse_goaway(payload), ts, frame)
        elif ftype == SETTINGS:
            if not flags & ACK:
                self._settings(side, parse_settings(payload))
        elif ftype == PING:
            side.pings += 1
        elif ftype == WINDOW_UPDATE and payload and not int.from_bytes(payload) & 0x7FFFFFFF:
            self._anomaly(side, f"WINDOW_UPDATE of 0 on stream {stream}", ts, frame)

    # -- frames ------------------------------------------------------------------------

    def _requests_side(self, side: _Side) -> bool:
        return side.from_client != self.roles_flipped

    def _data(
        self, side: _Side, flags: int, stream: int, payload: bytes, ts: int, frame: int
    ) -> None:
        body = side.length
        if flags & PADDED:
            if not payload:
                if not side.gapped:
                    msg = f"DATA frame on stream {stream} flagged PADDED without payload"
                    self._anomaly(side, msg, ts, frame)
            elif payload[0] >= side.length:
                pad = f"padding of {payload[0]} bytes exceeds the {side.length}-byte payload"
                msg = f"DATA frame on stream {stream}: {pad}"
                self._anomaly(side, msg, ts, frame)
                body = 0
            else:
                body -= 1 + payload[0]
        st = self._stream_for(side, stream, ts, frame)
        if st is False:
            return
        if st is not None:
            if self._requests_side(side):
                st.request_bytes += body
            else:
                st.response_bytes += body
        if flags & END_STREAM:
            self._stream_end(side, stream, st, ts, frame)

    def _block_start(
        self, side: _Side, ftype: int, flags: int, stream: int, payload: bytes, ts: int, frame: int
    ) -> None:
        """HEADERS or PUSH_PROMISE complete: its block, or the first fragment of it."""
        fragment: bytes | None = None
        promised: int | None = None
        if side.gapped:
            self._break_hpack(side, "header block bytes not captured", ts, frame)
        elif side.length <= MAX_BLOCK:
            fragment, promised, problem = split_block_payload(ftype, flags, payload)
            if problem is not None:
                self._break_hpack(side, problem, ts, frame)
        side.block = None if fragment is None else bytearray(fragment)
        side.block_stream = stream
        side.block_type = ftype
        side.block_end_stream = ftype == HEADERS and bool(flags & END_STREAM)
        side.block_promised = promised
        if flags & END_HEADERS:
            self._block_end(side, ts, frame)

    def _block_end(self, side: _Side, ts: int, frame: int) -> None:
        """A whole header block: decode it and act on the stream."""
        block, stream = side.block, side.block_stream
        side.block = side.block_stream = None
        if stream is None:
            return
        fields = None
        if block is not None and side.hpack_ok:
            fields = self._decode(side, bytes(block), ts, frame)
        if side.block_type == PUSH_PROMISE:
            self._push_promise(side, stream, side.block_promised, fields, ts, frame)
        elif self._requests_side(side):
            self._request_headers(side, stream, fields, side.block_end_stream, ts, frame)
        else:
            self._response_headers(side, stream, fields, side.block_end_stream, ts, frame)

    def _decode(self, side: _Side, block: bytes, ts: int, frame: int) -> tuple | None:
        dec = side.decoder
        if dec is None:
            from hpack import Decoder  # at the first header block: ~10 ms of every start

            dec = side.decoder = Decoder(MAX_HEADER_LIST)
            dec.max_allowed_table_size = side.table_limit
        try:
            headers = dec.decode(block, raw=True)
        except Exception as exc:  # hpack raises its own errors, and others on odd input
            why = f"{type(exc).__name__}: {_reason(exc)}"
            if not side.saw_preface and not (self._fresh and not side.from_client):
                why += " (capture began mid-connection?)"
            self._break_hpack(side, f"HPACK decoding failed, {why}", ts, frame)
            return None
        return header_fields(headers)  # type: ignore[arg-type]

    def _request_headers(
        self, side: _Side, stream: int, fields: tuple | None, end_stream: bool, ts: int, frame: int
    ) -> None:
        st = self._streams.get(stream)
        if st is None and (
            stream in self._closed or (self._fresh and stream <= self.highest_stream)
        ):
            return  # a late frame of a closed stream
        if st is not None and st.requested:  # trailers
            if end_stream:
                self._stream_end(side, stream, st, ts, frame)
            return
        method = path = authority = None
        clen = None
        if fields is not None:
            method, path, authority, _, clen = fields
        self.requests += 1
        self.highest_stream = max(self.highest_stream, stream)
        if st is None:
            st = self._track(side, stream, ts, frame)
        if st is not None:
            st.requested = True
            st.method, st.path, st.authority, st.request_length = method, path, authority, clen
        ev = H2Event("request", frame, ts, side.from_client, stream, method, path, authority)
        ev.content_length = clen
        self.events.append(ev)
        if end_stream:
            self._stream_end(side, stream, st, ts, frame)

    def _response_headers(
        self, side: _Side, stream: int, fields: tuple | None, end_stream: bool, ts: int, frame: int
    ) -> None:
        st = self._stream_for(side, stream, ts, frame)
        if st is False:
            return
        if st is not None and st.responded:  # trailers
            if end_stream:
                self._stream_end(side, stream, st, ts, frame)
            return
        status = clen = None
        if fields is not None:
            status, clen = fields[3], fields[4]
            if status is None:
                msg = f"response HEADERS on stream {stream} without a valid :status"
                self._anomaly(side, msg, ts, frame)
        ev = self._stream_event("response", side, stream, st, ts, frame)
        ev.status, ev.content_length = status, clen
        self.events.append(ev)
        if status is not None and 100 <= status < 200:
            self.interim_responses += 1
            return  # END_STREAM on a 1xx would be a protocol error; the final one follows
        self.responses += 1
        if st is not None:
            st.responded = True
            st.status, st.response_length = status, clen
        if end_stream:
            self._stream_end(side, stream, st, ts, frame)

    def _push_promise(
        self,
        side: _Side,
        stream: int,
        promised: int | None,
        fields: tuple | None,
        ts: int,
        frame: int,
    ) -> None:
        self.pushes += 1
        if self._requests_side(side):
            self._anomaly(side, f"PUSH_PROMISE from the client on stream {stream}", ts, frame)
            return
        if not promised or promised in self._streams or promised in self._closed:
            return
        st = self._track(side, promised, ts, frame)
        if st is not None:
            st.requested = st.pushed = st.request_end = True
            if fields is not None:
                st.method, st.path, st.authority, _, st.request_length = fields

    def _rst_stream(self, side: _Side, stream: int, code: int | None, ts: int, frame: int) -> None:
        if code is None:
            return
        if side.from_client:
            self.resets_by_client += 1
        else:
            self.resets_by_server += 1
        st = self._streams.get(stream)
        ev = self._stream_event("rst_stream", side, stream, st, ts, frame)
        ev.error_code, ev.error_name = code, error_name(code)
        self.events.append(ev)
        if st is not None:
            st.reset = True
            st.reset_by_client = side.from_client
            st.error_code = code
            self._close(stream)

    def _goaway(
        self, side: _Side, parsed: tuple[int, int, str] | None, ts: int, frame: int
    ) -> None:
        if parsed is None:
            return
        last, code, debug = parsed
        self.goaways += 1
        ev = H2Event("goaway", frame, ts, side.from_client)
        ev.last_stream_id, ev.error_code, ev.error_name = last, code, error_name(code)
        ev.debug = debug
        self.events.append(ev)
        if side.from_client:
            self._goaway_client = ev
        else:
            self._goaway_server = ev

    def _settings(self, side: _Side, pairs: list[tuple[int, int]]) -> None:
        other = self._s if side.from_client else self._c
        for ident, value in pairs:
            name = SETTINGS_NAMES.get(ident)
            if name is not None:
                side.settings[name] = value
            if other is None:
                other = self._new_side(not side.from_client)
            if ident == 0x1:  # the peer's encoder may use a table this big
                limit = min(max(other.table_limit, value), MAX_TABLE)
                other.table_limit = limit
                if other.decoder is not None:
                    other.decoder.max_allowed_table_size = limit
            elif ident == 0x5 and DEFAULT_MAX_FRAME <= value <= MAX_FRAME_LENGTH:
                other.max_frame = max(other.max_frame, value)

    # -- streams -----------------------------------------------------------------------

    def _stream_for(self, side: _Side, stream: int, ts: int, frame: int) -> H2Stream | None | bool:
        """The stream a frame is about: False for a closed one (ignore the frame), None if
        untracked (beyond MAX_STREAMS), else the entry, made if this is its first frame
        (the capture began after its request)."""
        st = self._streams.get(stream)
        if st is not None:
            return st
        if stream in self._closed:
            return False
        if self._fresh and (stream & 1) and stream <= self.highest_stream:
            return False  # a client stream we saw open and close
        return self._track(side, stream, ts, frame)

    def _track(self, side: _Side, stream: int, ts: int, frame: int) -> H2Stream | None:
        if len(self._streams) >= MAX_STREAMS:
            if not self.untracked_streams:
                msg = f"more than {MAX_STREAMS} streams at once: the rest are only counted"
                self._anomaly(side, msg, ts, frame)
            self.untracked_streams += 1
            return None
        st = self._streams[stream] = H2Stream(stream)
        return st

    def _stream_event(
        self, kind: str, side: _Side, stream: int, st: H2Stream | None, ts: int, frame: int
    ) -> H2Event:
        ev = H2Event(kind, frame, ts, side.from_client, stream)
        if st is not None:
            ev.method, ev.path, ev.authority, ev.status = (
                st.method,
                st.path,
                st.authority,
                st.status,
            )
        return ev

    def _stream_end(
        self, side: _Side, stream: int, st: H2Stream | None, ts: int, frame: int
    ) -> None:
        requests = self._requests_side(side)
        ev = self._stream_event(
            "request_end" if requests else "response_end", side, stream, st, ts, frame
        )
        if st is not None:
            if requests:
                st.request_end = True
                ev.body_bytes = st.request_bytes
            else:
                st.response_end = True
                ev.body_bytes = st.response_bytes
            if st.response_end and (st.request_end or not st.requested):
                self._close(stream)
        self.events.append(ev)

    def _close(self, stream: int) -> None:
        self._streams.pop(stream, None)
        closed = self._closed
        closed[stream] = None
        if len(closed) > MAX_CLOSED:
            del closed[next(iter(closed))]

    # -- bookkeeping -------------------------------------------------------------------

    def _anomaly(self, side: _Side, message: str, ts: int, frame: int) -> None:
        self.anomaly_count += 1
        if self.anomaly_count <= MAX_ANOMALIES:
            self.events.append(H2Event("anomaly", frame, ts, side.from_client, message=message))
        elif self.anomaly_count == MAX_ANOMALIES + 1:
            msg = "further anomalies suppressed"
            self.events.append(H2Event("anomaly", frame, ts, side.from_client, message=msg))

    def _break_hpack(self, side: _Side, message: str, ts: int, frame: int) -> None:
        """The dynamic table of this direction is unknown from now on: say so once."""
        if side.hpack_ok:
            who = "client" if side.from_client else "server"
            msg = f"{message}; {who} header blocks are no longer decoded"
            self._anomaly(side, msg, ts, frame)
        else:
            self._anomaly(side, message, ts, frame)
        side.hpack_ok = False
        side.decoder = None  # its table is no use any more

    def _lose(self, side: _Side, message: str, ts: int, frame: int) -> None:
        """Framing is lost for this direction: say so once, then ignore its bytes."""
        self._anomaly(side, f"lost sync: {message}", ts, frame)
        side.state = _LOST
        side.skip = _INF
        side.want = side.rest = 0
        side.hdr.clear()
        side.pbuf.clear()
        side.block = side.block_stream = None
        side.decoder = None
