"""HTTP/1.x message boundaries, observed passively from both directions of a connection.

The connection tracker feeds each direction's reassembled payload in stream order. We
find where requests and responses start and end (RFC 9112 §6) so the classifier can say
"the server closed right after a request" or "the response body was cut short". Bodies
are never kept, only counted: feeding N body bytes costs O(1) Python work, which is what
keeps the tool fast on captures that are mostly body bytes.

Like h11, parsing (pure functions on bytes) is separate from state (``_Side`` plus the
request/response pairing in ``HttpObserver``). Unlike h11 we never raise on bad input:
odd traffic becomes an ``anomaly`` event, and when framing is lost for a direction we say
so once and stop interpreting it (``synced`` goes False); the tracker then falls back
to counting payload turns.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

__all__ = ["HttpEvent", "HttpObserver"]

MAX_HEAD = 64 * 1024  # header block (start line + fields, or trailers) per direction
MAX_LINE = 16 * 1024  # start line
MAX_CHUNK_LINE = 4 * 1024  # chunk-size line including extensions
MAX_PAUSED = 64 * 1024  # client bytes held while a CONNECT/Upgrade answer is pending
MAX_PENDING = 1024  # unanswered requests remembered (method + index) for pairing
_INF = 1 << 62  # "count everything": close-delimited bodies, tunnels, lost directions
MAX_ANOMALIES = 32  # anomaly events per observer; later ones are only counted
VALUE_CHARS = 200  # header values in events
RAW_CHARS = 4096  # header values while parsing (Content-Length lists, ...)
TARGET_CHARS = 1024
INTERESTING = (
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "server",
    "user-agent",
)

# ---------------------------------------------------------------------------------------
# Parsing: pure functions on bytes
# ---------------------------------------------------------------------------------------

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + _TCHAR + rb"]+")
_REQUEST_LINE = re.compile(
    rb"([" + _TCHAR + rb"]{1,32})[ \t]+([^ \t\x00-\x1f\x7f]+)[ \t]+HTTP/(1\.[0-9])[ \t]*"
)
_STATUS_LINE = re.compile(rb"HTTP/(1\.[0-9])[ \t]+([0-9]{3})(?:[ \t]([^\r\n]*))?")
# A prefix of a start line that could still become valid once more bytes arrive.
_VERSION_PREFIX = rb"(?:H|HT|HTT|HTTP|HTTP/|HTTP/1|HTTP/1\.|HTTP/1\.[0-9][ \t]*)"
_REQUEST_PREFIX = re.compile(
    rb"["
    + _TCHAR
    + rb"]{1,32}(?:[ \t]+(?:[^ \t\x00-\x1f\x7f]+(?:[ \t]+"
    + _VERSION_PREFIX
    + rb"?)?)?)?\r?"
)
_STATUS_PREFIX = re.compile(
    rb"(?:H|HT|HTT|HTTP|HTTP/|HTTP/1|HTTP/1\.|HTTP/1\.[0-9](?:[ \t]+(?:[0-9]{1,3}"
    rb"(?:[ \t][^\r\n]*)?)?)?)\r?"
)
_PREFIX_PROBE = 80  # bytes of an unfinished start line checked for viability
_NOT_CRLF = re.compile(rb"[^\r\n]")
_CHUNK_LINE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")
_DIGITS = re.compile(r"[0-9]{1,18}")
_KA_TIMEOUT = re.compile(r"(?:^|[,;\s])timeout\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)", re.I)


@dataclass(slots=True)
class _Head:
    """A parsed start line plus the header fields we care about."""

    version: str
    method: str | None = None
    target: str | None = None
    status: int | None = None
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: dict[str, list[str]] = field(default_factory=dict)  # untruncated interesting values
    problems: list[str] = field(default_factory=list)


def _lines(block: bytes) -> list[bytes]:
    """Split a head block on LF, tolerating bare LF and stripping one CR per line."""
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in block.split(b"\n")]


def _parse_fields(lines: list[bytes], head: _Head) -> None:
    """Field lines (RFC 9112 §5): keep the interesting ones, join obs-fold continuations."""
    last: str | None = None
    bad = 0
    for ln in lines:
        if not ln:
            continue
        if ln[0] in (32, 9):  # obs-fold: continuation of the previous field value
            if last is not None:
                vals = head.raw[last]
                vals[-1] = (vals[-1] + " " + ln.strip().decode("latin-1"))[:RAW_CHARS]
            head.problems.append("obs-fold line in header section")
            continue
        name, colon, value = ln.partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not _TOKEN.fullmatch(name):
            if not bad:
                first_bad = ln[:40]
            bad += 1
            last = None
            continue
        key = name.decode("ascii").lower()
        if key in INTERESTING:
            head.raw.setdefault(key, []).append(value.strip(b" \t").decode("latin-1")[:RAW_CHARS])
            last = key
        else:
            last = None
    if bad:
        head.problems.append(f"{bad} malformed header line(s), first {first_bad!r}")
    for key, vals in head.raw.items():
        head.headers[key] = ", ".join(vals)[:VALUE_CHARS]


def parse_request_head(block: bytes) -> _Head | None:
    """Request line and fields; None if the request line is not HTTP/1.x."""
    lines = _lines(block)
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        return None
    head = _Head(
        version=m.group(3).decode(),
        method=m.group(1).decode("ascii"),
        target=m.group(2)[:TARGET_CHARS].decode("latin-1"),
    )
    _parse_fields(lines[1:], head)
    return head


def parse_response_head(block: bytes) -> _Head | None:
    """Status line and fields; None if the status line is not HTTP/1.x."""
    lines = _lines(block)
    m = _STATUS_LINE.fullmatch(lines[0])
    if m is None:
        return None
    reason = m.group(3)
    head = _Head(
        version=m.group(1).decode(),
        status=int(m.group(2)),
        reason=reason.strip(b" \t")[:VALUE_CHARS].decode("latin-1") if reason else "",
    )
    _parse_fields(lines[1:], head)
    return head


def _tokens(value: str | None) -> list[str]:
    if not value:
        return []
    return [t.strip().lower() for t in value.split(",") if t.strip()]


def content_length(head: _Head) -> tuple[int | None, bool]:
    """(length, valid). Repeated identical values are accepted (RFC 9110 §8.6)."""
    vals = head.raw.get("content-length")
    if not vals:
        return None, True
    seen = {v.strip() for val in vals for v in val.split(",")}
    if len(seen) != 1:
        return None, False
    (v,) = seen
    if not _DIGITS.fullmatch(v):  # not str.isdigit(): that accepts '²'
        return None, False
    return int(v), True


def keep_alive_timeout(head: _Head) -> float | None:
    m = _KA_TIMEOUT.search(head.headers.get("keep-alive", ""))
    return float(m.group(1)) if m else None


def wants_close(head: _Head) -> bool:
    """Connection: close, or HTTP/1.0 without keep-alive (RFC 9112 §9.3)."""
    tokens = _tokens(head.headers.get("connection"))
    if "close" in tokens:
        return True
    return head.version == "1.0" and "keep-alive" not in tokens


# ---------------------------------------------------------------------------------------
# Events and state
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class HttpEvent:
    """Something that happened on the wire, at ``frame`` / ``ts_ns``.

    ``kind`` is 'request' / 'response' (head complete; frame = first byte of the head),
    'request_end' / 'response_end' (body complete; frame = the segment that finished it,
    or the FIN for a close-delimited body) or 'anomaly' (``message`` says what).
    Interim 1xx responses get a 'response' event but no 'response_end'.
    """

    kind: str
    frame: int
    ts_ns: int
    from_client: bool
    index: int | None = None  # 0-based request number; responses are paired FIFO
    method: str | None = None  # on responses: the method of the matched request
    target: str | None = None
    version: str | None = None
    status: int | None = None
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    chunked: bool = False
    close: bool = False
    keep_alive_timeout_s: float | None = None
    body_bytes: int | None = None  # on *_end: body bytes, gaps included
    gap_bytes: int = 0  # on *_end: body bytes that were not captured
    close_delimited: bool = False  # on response_end: the body ended with the server's FIN
    message: str | None = None


# Per-direction parse states.
_HEAD = 0  # waiting for / inside a message head
_BODY = 1  # Content-Length body: ``remaining`` bytes to go
_CLOSE_BODY = 2  # response body delimited by the server's FIN
_CHUNK_SIZE = 3
_CHUNK_DATA = 4
_CHUNK_CRLF = 5
_TRAILERS = 6
_PAUSED = 7  # client after CONNECT/Upgrade: hold bytes until the answer is known
_OPAQUE = 8  # tunnel or switched protocol: no more HTTP
_LOST = 9  # framing lost: stop interpreting
_STATE_NAMES = (
    "idle",
    "body",
    "body_until_close",
    "chunked",
    "chunked",
    "chunked",
    "trailers",
    "paused",
    "opaque",
    "lost",
)


@dataclass(slots=True)
class _Pending:
    index: int
    method: str


@dataclass(slots=True)
class _Side:
    """Parse state of one direction."""

    from_client: bool
    requests: bool  # True: this side sends requests (the client unless roles are flipped)
    state: int = _HEAD
    buf: bytearray = field(default_factory=bytearray)
    scan: int = 0  # where the next search for the end of the head starts
    line_ok: bool = False  # start line of the current head validated
    started: bool = False  # first byte of the current message seen
    start_frame: int = 0
    start_ts: int = 0
    # Bytes that can be counted without looking at them: what is left of a Content-Length
    # body or a chunk, _INF for a close-delimited body / tunnel / lost direction, else 0.
    # This makes ``feed`` a single comparison while a body streams past.
    remaining: int = 0
    planned: int = 0  # body bytes announced so far (Content-Length, chunk sizes, or _INF)
    gaps: int = 0
    cr: bool = False  # CR seen after chunk data, LF expected
    event: HttpEvent | None = None  # head event of the message in progress
    expected: int | None = None  # Content-Length of the body in progress
    paused_index: int | None = None
    paused_frame: int = 0
    paused_ts: int = 0
    eof: bool = False

    def reset(self) -> None:
        self.state = _HEAD
        self.buf.clear()
        self.scan = 0
        self.line_ok = False
        self.started = False
        self.remaining = 0
        self.planned = 0
        self.gaps = 0
        self.cr = False
        self.event = None
        self.expected = None

    @property
    def body(self) -> int:
        """Body bytes of the current message so far (gaps included)."""
        return self.planned - self.remaining if self.state < _PAUSED else 0

    @property
    def in_message(self) -> bool:
        if self.state == _HEAD:
            return self.started
        return _BODY <= self.state <= _TRAILERS


class HttpObserver:
    """Follows HTTP/1.x framing on one TCP connection; see the module docstring.

    ``is_http`` is None until the first start line (or a prefix that cannot become one)
    decides it. A request line from the client, or a status line from the server for
    captures that begin mid-connection, means HTTP. A request line from the side the
    tracker calls the server (or a status line from its client) also means HTTP, with
    ``roles_flipped`` set: the tracker guessed the direction wrong.
    """

    def __init__(self) -> None:
        self.is_http: bool | None = None
        self.roles_flipped = False
        self.events: list[HttpEvent] = []
        self.requests = 0  # request heads seen
        self.responses = 0  # final (non-1xx) response heads seen
        self.interim_responses = 0
        self.last_request: HttpEvent | None = None
        self.last_response: HttpEvent | None = None
        self.opaque_reason: str | None = None  # 'connect' / 'upgrade' once tunnelled
        self.anomaly_count = 0
        self._client = _Side(True, True)
        self._server = _Side(False, False)
        self._pending: deque[_Pending] = deque()
        # Requests beyond MAX_PENDING (one-sided captures of long keep-alive connections)
        # are only counted; their responses still get an index, but no method.
        self._overflow = 0
        self._overflow_next = 0

    # -- feeding ---------------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, ts_ns: int, frame: int) -> None:
        """In-order payload bytes of one direction."""
        side = self._client if from_client else self._server
        n = len(data)
        if n < side.remaining:  # inside a body, tunnel or lost direction: just count
            side.remaining -= n
            return
        if self.is_http is False or not n or side.state >= _OPAQUE:
            return
        self._run(side, data, ts_ns, frame)

    def gap(self, from_client: bool, nbytes: int, ts_ns: int, frame: int) -> None:
        """``nbytes`` on the wire that were not captured: fine inside a body only."""
        side = self._client if from_client else self._server
        if nbytes <= 0 or self.is_http is False or side.state >= _OPAQUE:
            return
        st = side.state
        if st == _CLOSE_BODY:
            side.remaining -= nbytes
            side.gaps += nbytes
            return
        if st in (_BODY, _CHUNK_DATA):
            take = min(nbytes, side.remaining)
            side.remaining -= take
            side.gaps += take
            nbytes -= take
            if side.remaining:
                return
            if st == _BODY:
                self._message_end(side, ts_ns, frame)
            else:
                side.state = _CHUNK_CRLF
            if not nbytes:
                return
        if side.state == _PAUSED:
            self._lose(
                side, f"{nbytes} bytes not captured while waiting for a tunnel", ts_ns, frame
            )
            return
        where = "a message head" if side.state == _HEAD else "chunked framing"
        self._lose(side, f"{nbytes} bytes not captured where {where} was expected", ts_ns, frame)

    def eof(self, from_client: bool, ts_ns: int, frame: int) -> None:
        """That side sent FIN: completes a close-delimited body, exposes truncation."""
        side = self._client if from_client else self._server
        if side.eof:
            return
        side.eof = True
        if self.is_http is None and side.started and side.state == _HEAD:
            self._not_http()  # an unfinished first line that can never finish
            return
        if self.is_http is False:
            return
        st = side.state
        who = "client" if from_client else "server"
        if st == _CLOSE_BODY:
            self._message_end(side, ts_ns, frame, close_delimited=True)
        elif st == _BODY:
            self._anomaly(
                side,
                f"{who} closed after {side.body} of {side.expected} body bytes",
                ts_ns,
                frame,
            )
        elif _CHUNK_SIZE <= st <= _TRAILERS:
            self._anomaly(side, f"{who} closed inside a chunked body", ts_ns, frame)
        elif st == _HEAD and side.started:
            self._anomaly(side, f"{who} closed inside a message head", ts_ns, frame)

    # -- status queries ----------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._client.state != _LOST and self._server.state != _LOST

    def _side(self, requests: bool) -> _Side:
        return self._client if self._client.requests == requests else self._server

    @property
    def outstanding_requests(self) -> int:
        """Requests whose (final) response has not started."""
        n = len(self._pending) + self._overflow
        srv = self._side(False)
        if n and srv.state == _HEAD and srv.started:
            n -= 1  # the head that is arriving probably answers the oldest one
        return n

    @property
    def request_in_progress(self) -> bool:
        return self._side(True).in_message

    @property
    def response_in_progress(self) -> bool:
        return self._side(False).in_message

    @property
    def response_expected_bytes(self) -> int | None:
        srv = self._side(False)
        return srv.expected if srv.state == _BODY else None

    @property
    def response_received_bytes(self) -> int | None:
        srv = self._side(False)
        return srv.body if srv.in_message else None

    def state(self, from_client: bool) -> str:
        """Parse state of one direction: idle, head, body, body_until_close, chunked,
        trailers, paused, opaque or lost."""
        side = self._client if from_client else self._server
        if side.state == _HEAD and side.started:
            return "head"
        return _STATE_NAMES[side.state]

    # -- engine ------------------------------------------------------------------------

    def _run(self, side: _Side, data: bytes, ts: int, frame: int) -> None:
        pos, n = 0, len(data)
        while pos < n:
            st = side.state
            if st in (_HEAD, _TRAILERS):
                pos = self._head(side, data, pos, ts, frame)
            elif st in (_BODY, _CHUNK_DATA):
                take = min(n - pos, side.remaining)
                side.remaining -= take
                pos += take
                if not side.remaining:
                    if st == _BODY:
                        self._message_end(side, ts, frame)
                    else:
                        side.state = _CHUNK_CRLF
            elif st == _CHUNK_SIZE:
                pos = self._chunk_size(side, data, pos, ts, frame)
            elif st == _CHUNK_CRLF:
                b = data[pos]
                pos += 1
                if b == 10:
                    side.cr = False
                    side.state = _CHUNK_SIZE
                elif b == 13 and not side.cr:
                    side.cr = True
                else:
                    self._lose(side, "chunk data not followed by CRLF", ts, frame)
            elif st == _CLOSE_BODY:
                side.remaining -= n - pos
                pos = n
            elif st == _PAUSED:
                if not side.buf:
                    side.paused_frame, side.paused_ts = frame, ts
                side.buf += data[pos:]
                pos = n
                if len(side.buf) > MAX_PAUSED:
                    self._lose(side, "too much data before the tunnel was answered", ts, frame)
            else:  # opaque or lost
                return
            if self.is_http is False:
                return

    def _head(self, side: _Side, data: bytes, pos: int, ts: int, frame: int) -> int:
        """Accumulate a head (or trailer section) until its blank line; returns new pos."""
        n = len(data)
        buf = side.buf
        if side.state == _HEAD and not side.started:
            m = _NOT_CRLF.search(data, pos)  # empty lines between messages are ignored
            if m is None:
                return n
            pos = m.start()
            side.started = True
            side.start_frame, side.start_ts = frame, ts
        old = len(buf)
        buf += data[pos : pos + MAX_HEAD + 4 - old]
        if side.state == _HEAD and not side.line_ok and not self._check_line(side, old, ts, frame):
            return n
        a = buf.find(b"\n\n", side.scan)
        b = buf.find(b"\n\r\n", side.scan)
        if a < 0 and b < 0:
            if len(buf) > MAX_HEAD:
                what = "header section" if side.state == _HEAD else "trailer section"
                self._lose(side, f"{what} longer than {MAX_HEAD} bytes", ts, frame)
                return n
            side.scan = max(len(buf) - 2, 0)
            return n
        end, after = (a, a + 2) if b < 0 or 0 <= a < b else (b, b + 3)
        block = bytes(buf[:end])
        new_pos = pos + (after - old)
        if side.state == _TRAILERS:
            self._message_end(side, ts, frame)
        elif side.requests:
            self._request_head(side, block, ts, frame)
        else:
            self._response_head(side, block, ts, frame)
        return new_pos

    def _check_line(self, side: _Side, old: int, ts: int, frame: int) -> bool:
        """Validate the start line as soon as it is complete (or provably bad)."""
        buf = side.buf
        nl = buf.find(b"\n", old)
        if nl < 0:
            probe = bytes(buf[:_PREFIX_PROBE])
            if len(buf) > MAX_LINE:
                problem = f"start line longer than {MAX_LINE} bytes"
            elif self.is_http is None:
                if _REQUEST_PREFIX.fullmatch(probe) or _STATUS_PREFIX.fullmatch(probe):
                    return False
                problem = "not HTTP"
            elif (_REQUEST_PREFIX if side.requests else _STATUS_PREFIX).fullmatch(probe):
                return False
            else:
                problem = f"garbage where a {'request' if side.requests else 'status'} line was expected: {probe[:40]!r}"
        else:
            line = bytes(buf[:nl])
            if line.endswith(b"\r"):  # exactly as _lines() will cut it later
                line = line[:-1]
            is_req = _REQUEST_LINE.fullmatch(line) is not None
            is_resp = not is_req and _STATUS_LINE.fullmatch(line) is not None
            if self.is_http is None and (is_req or is_resp):
                self.is_http = True
                if is_req != side.requests:
                    self.roles_flipped = True
                    self._client.requests = not self._client.requests
                    self._server.requests = not self._server.requests
                    msg = "roles flipped: requests come from the side labelled server"
                    self._anomaly(side, msg, ts, frame)
            if (is_req and side.requests) or (is_resp and not side.requests):
                side.line_ok = True
                return True
            problem = (
                "not HTTP"
                if self.is_http is None
                else f"garbage where a {'request' if side.requests else 'status'} line was expected: {line[:40]!r}"
            )
        if self.is_http is None:
            self._not_http()
        else:
            self._lose(side, problem, ts, frame)
        return False

    def _chunk_size(self, side: _Side, data: bytes, pos: int, ts: int, frame: int) -> int:
        n = len(data)
        nl = data.find(b"\n", pos)
        if nl < 0:
            side.buf += data[pos:]
            if len(side.buf) > MAX_CHUNK_LINE:
                self._lose(side, "chunk-size line too long", ts, frame)
            return n
        if side.buf:
            side.buf += data[pos:nl]
            line = bytes(side.buf)
            side.buf.clear()
        else:
            line = data[pos:nl]
        m = _CHUNK_LINE.fullmatch(line.rstrip(b"\r"))
        if m is None:
            self._lose(side, f"bad chunk-size line {line[:40]!r}", ts, frame)
            return n
        size = int(m.group(1), 16)
        if size:
            side.remaining = size
            side.planned += size
            side.state = _CHUNK_DATA
        else:  # last chunk: a trailer section follows, ended by an empty line
            side.state = _TRAILERS
            side.buf += b"\n"  # lets the head search see an immediately empty line
            side.scan = 0
        return nl + 1

    # -- message boundaries ----------------------------------------------------------

    def _request_head(self, side: _Side, block: bytes, ts: int, frame: int) -> None:
        head = parse_request_head(block)
        if head is None:  # cannot happen: _check_line validated the line; never raise
            self._lose(side, "unparsable request line", ts, frame)
            return
        index = self.requests
        self.requests += 1
        clen, clen_ok = content_length(head)
        te = _tokens(head.headers.get("transfer-encoding"))
        chunked = bool(te) and te[-1] == "chunked"
        ev = HttpEvent(
            "request",
            side.start_frame,
            side.start_ts,
            side.from_client,
            index=index,
            method=head.method,
            target=head.target,
            version=head.version,
            headers=head.headers,
            content_length=clen,
            chunked=chunked,
            close=wants_close(head),
            keep_alive_timeout_s=keep_alive_timeout(head),
        )
        self._emit(ev)
        self.last_request = ev
        self._problems(side, head, ts, frame)
        method = head.method or ""
        if self._overflow or len(self._pending) >= MAX_PENDING:
            if not self._overflow:
                self._overflow_next = index
                msg = f"more than {MAX_PENDING} requests unanswered: methods no longer kept"
                self._anomaly(side, msg, ts, frame)
            self._overflow += 1
        else:
            self._pending.append(_Pending(index, method.upper()))
        side.buf.clear()
        side.scan = 0
        side.event = ev
        if te and te != ["identity"]:
            if not chunked:
                self._lose(side, "request Transfer-Encoding does not end in chunked", ts, frame)
                return
            if clen is not None:
                self._anomaly(side, "both Transfer-Encoding and Content-Length", ts, frame)
            side.state = _CHUNK_SIZE
        elif not clen_ok:
            self._lose(side, "invalid Content-Length in request", ts, frame)
        elif clen:
            side.state = _BODY
            side.remaining = side.planned = side.expected = clen
        else:
            self._message_end(side, ts, frame)

    def _response_head(self, side: _Side, block: bytes, ts: int, frame: int) -> None:
        head = parse_response_head(block)
        if head is None or head.status is None:  # cannot happen, see _request_head
            self._lose(side, "unparsable status line", ts, frame)
            return
        status = head.status
        interim = 100 <= status < 200 and status != 101
        req: _Pending | None
        if interim:
            req = self._oldest(pop=False)
            self.interim_responses += 1
        else:
            req = self._oldest(pop=True)
            self.responses += 1
        clen, clen_ok = content_length(head)
        te = _tokens(head.headers.get("transfer-encoding"))
        chunked = bool(te) and te[-1] == "chunked"
        ev = HttpEvent(
            "response",
            side.start_frame,
            side.start_ts,
            side.from_client,
            index=req.index if req else None,
            method=(req.method or None) if req else None,
            version=head.version,
            status=status,
            reason=head.reason,
            headers=head.headers,
            content_length=clen,
            chunked=chunked,
            close=wants_close(head),
            keep_alive_timeout_s=keep_alive_timeout(head),
        )
        self._emit(ev)
        self.last_response = ev
        self._problems(side, head, ts, frame)
        if req is None and self.requests:
            self._anomaly(side, "response without a matching request", ts, frame)
        side.buf.clear()
        side.scan = 0
        side.event = ev
        if interim:
            side.reset()
            return
        method = req.method if req else ""
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            self.opaque_reason = "upgrade" if status == 101 else "connect"
            self._message_end(side, ts, frame)
            for s in (self._client, self._server):
                if s.state != _LOST:
                    s.reset()
                    s.state = _OPAQUE
                    s.remaining = _INF
            return
        if method == "HEAD" or status in (204, 304):
            self._message_end(side, ts, frame)
        elif te and te != ["identity"]:
            if clen is not None:
                self._anomaly(side, "both Transfer-Encoding and Content-Length", ts, frame)
            if chunked:
                side.state = _CHUNK_SIZE
            else:
                side.state = _CLOSE_BODY
                side.remaining = side.planned = _INF
        elif not clen_ok:
            self._lose(side, "invalid Content-Length in response", ts, frame)
        elif clen is None:
            side.state = _CLOSE_BODY
            side.remaining = side.planned = _INF
        elif clen:
            side.state = _BODY
            side.remaining = side.planned = side.expected = clen
        else:
            self._message_end(side, ts, frame)
        self._maybe_unpause(req, ts, frame)

    def _message_end(self, side: _Side, ts: int, frame: int, close_delimited: bool = False) -> None:
        head = side.event
        kind = "request_end" if side.requests else "response_end"
        self._emit(
            HttpEvent(
                kind,
                frame,
                ts,
                side.from_client,
                index=head.index if head else None,
                method=head.method if head else None,
                status=head.status if head else None,
                body_bytes=side.body,
                gap_bytes=side.gaps,
                close_delimited=close_delimited,
            )
        )
        pause = (
            side.requests
            and head is not None
            and (head.method == "CONNECT" or "upgrade" in head.headers)
            and side.state != _LOST
            and any(p.index == head.index for p in self._pending)  # not answered yet
        )
        side.reset()
        if pause:
            side.state = _PAUSED
            side.paused_index = head.index

    def _oldest(self, pop: bool) -> _Pending | None:
        """The oldest request still waiting for its final response (FIFO pairing)."""
        if self._pending:
            return self._pending.popleft() if pop else self._pending[0]
        if not self._overflow:
            return None
        req = _Pending(self._overflow_next, "")
        if pop:
            self._overflow -= 1
            self._overflow_next += 1
        return req

    def _maybe_unpause(self, req: _Pending | None, ts: int, frame: int) -> None:
        """The answer to a CONNECT/Upgrade request was not a tunnel: parse held bytes."""
        cli = self._side(True)
        if cli.state != _PAUSED or req is None or req.index != cli.paused_index:
            return
        held = bytes(cli.buf)
        cli.reset()
        cli.paused_index = None
        if held:
            self._run(cli, held, cli.paused_ts, cli.paused_frame)

    # -- bookkeeping -----------------------------------------------------------------

    def _emit(self, ev: HttpEvent) -> None:
        self.events.append(ev)

    def _problems(self, side: _Side, head: _Head, ts: int, frame: int) -> None:
        for p in dict.fromkeys(head.problems):  # once per kind of problem
            self._anomaly(side, p, ts, frame)

    def _anomaly(self, side: _Side, message: str, ts: int, frame: int) -> None:
        self.anomaly_count += 1
        if self.anomaly_count <= MAX_ANOMALIES:
            self._emit(HttpEvent("anomaly", frame, ts, side.from_client, message=message))
        elif self.anomaly_count == MAX_ANOMALIES + 1:
            msg = "further anomalies suppressed"
            self._emit(HttpEvent("anomaly", frame, ts, side.from_client, message=msg))

    def _lose(self, side: _Side, message: str, ts: int, frame: int) -> None:
        """Framing is lost for this direction: say so once, then ignore its bytes."""
        self._anomaly(side, f"lost sync: {message}", ts, frame)
        side.reset()
        side.state = _LOST
        side.remaining = _INF
        if self.is_http is None and self._client.state == self._server.state == _LOST:
            self._not_http()  # neither direction can ever show a start line

    def _not_http(self) -> None:
        self.is_http = False
        for s in (self._client, self._server):
            if s.state != _LOST:
                s.reset()
            s.remaining = _INF  # the tracker should stop feeding; if not, this is cheap
