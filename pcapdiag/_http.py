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

Speed. Most heads arrive whole in one segment and look alike (same client, same server),
so ``_whole_head`` takes them without buffering: one search for the blank line, then the
start line and the field section are looked up in small caches keyed by their exact
bytes (``_simple_*``; a miss parses them with one ``partition`` per line). Anything less
plain (a head split over segments, bare LF, obs-fold, malformed or repeated fields, long
values, oversize) takes the strict byte-by-byte path (``_head``), which is the reference:
both give the same events for the same bytes.
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
# Fast-path caches (module-wide, keyed by exact bytes): entries each, and the longest key
# kept (field lines: LINE_KEY_BYTES). A full cache is emptied and refills, so memory stays
# bounded whatever the input.
CACHE_ENTRIES = 1024
CACHE_KEY_BYTES = 2048
LINE_KEY_BYTES = 256

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
_HEX_DIGITS = b"0123456789abcdefABCDEF"
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


def _content_length(vals: list[str] | None) -> tuple[int | None, bool]:
    if not vals:
        return None, True
    if len(vals) == 1 and "," not in vals[0]:  # the usual case, without the set
        v = vals[0].strip()
        if len(v) <= 18 and v.isascii() and v.isdigit():  # same as _DIGITS.fullmatch
            return int(v), True
        return None, False
    seen = {v.strip() for val in vals for v in val.split(",")}
    if len(seen) != 1:
        return None, False
    (v,) = seen
    if not _DIGITS.fullmatch(v):  # not str.isdigit(): that accepts '²'
        return None, False
    return int(v), True


def content_length(head: _Head) -> tuple[int | None, bool]:
    """(length, valid). Repeated identical values are accepted (RFC 9110 §8.6)."""
    return _content_length(head.raw.get("content-length"))


def _keep_alive_timeout(value: str) -> float | None:
    m = _KA_TIMEOUT.search(value) if value else None
    return float(m.group(1)) if m else None


def keep_alive_timeout(head: _Head) -> float | None:
    return _keep_alive_timeout(head.headers.get("keep-alive", ""))


def wants_close(head: _Head) -> bool:
    """Connection: close, or HTTP/1.0 without keep-alive (RFC 9112 §9.3)."""
    tokens = _tokens(head.headers.get("connection"))
    if "close" in tokens:
        return True
    return head.version == "1.0" and "keep-alive" not in tokens


class _Fields:
    """What the observer takes from a field section. It depends on the section's bytes
    only (never on the start line), so the fast path caches it; treat it as immutable
    (``headers`` is copied into each event)."""

    __slots__ = (
        "headers",
        "length",
        "length_ok",
        "framed",
        "chunked",
        "close",
        "keep_alive",
        "timeout",
        "problems",
    )

    def __init__(self, headers: dict[str, str], lengths: list[str] | None, problems) -> None:
        self.headers = headers
        self.length, self.length_ok = _content_length(lengths) if lengths else (None, True)
        te = headers.get("transfer-encoding")
        if te:
            tokens = _tokens(te)
            self.framed = bool(tokens) and tokens != ["identity"]  # TE decides framing
            self.chunked = bool(tokens) and tokens[-1] == "chunked"
        else:
            self.framed = self.chunked = False
        value = headers.get("connection")
        if not value:
            self.close = self.keep_alive = False
        else:
            # without a comma, what _tokens would give ('' never matches below)
            tokens = _tokens(value) if "," in value else [value.strip().lower()]
            self.close = "close" in tokens
            self.keep_alive = "keep-alive" in tokens
        value = headers.get("keep-alive")
        self.timeout = _keep_alive_timeout(value) if value else None
        # once per kind of problem
        self.problems: tuple[str, ...] = tuple(dict.fromkeys(problems)) if problems else ()

    @classmethod
    def of(cls, head: _Head) -> _Fields:
        return cls(head.headers, head.raw.get("content-length"), head.problems)


# Fast path: plain start lines and field sections, cached by their exact bytes. Only
# input the strict parser accepts without remarks is cached; the rest returns None.
_REQUEST_LINES: dict[bytes, tuple[str, str, str, str]] = {}  # method, target, version, METHOD
_STATUS_LINES: dict[bytes, tuple[str, int, str]] = {}  # version, status, reason
_FIELD_SECTIONS: dict[bytes, _Fields] = {}
_FIELD_LINES: dict[bytes, tuple[str, str]] = {}  # line -> (key, value), ('', '') if dull
_NAMES: dict[bytes, str] = {}  # field name as sent -> its key if INTERESTING, else ""
_DULL = ("", "")


def _remember(cache: dict, key: bytes, value) -> None:
    if len(key) <= CACHE_KEY_BYTES:
        if len(cache) >= CACHE_ENTRIES:
            cache.clear()
        cache[key] = value


def _simple_request_line(line: bytes) -> tuple[str, str, str, str] | None:
    """A request line as parse_request_head reads it (callers look in the cache first)."""
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        return None
    method = m.group(1).decode("ascii")
    target = m.group(2)[:TARGET_CHARS].decode("latin-1")
    parsed = (method, target, m.group(3).decode(), method.upper())
    _remember(_REQUEST_LINES, line, parsed)
    return parsed


def _simple_status_line(line: bytes) -> tuple[str, int, str] | None:
    """A status line as parse_response_head reads it (callers look in the cache first)."""
    m = _STATUS_LINE.fullmatch(line)
    if m is None:
        return None
    reason = m.group(3)
    text = reason.strip(b" \t")[:VALUE_CHARS].decode("latin-1") if reason else ""
    parsed = (m.group(1).decode(), int(m.group(2)), text)
    _remember(_STATUS_LINES, line, parsed)
    return parsed


def _field_key(name: bytes) -> str | None:
    """Key of a field name as sent ('' if not interesting); None if it is no token."""
    token = name.rstrip(b" \t")
    if not _TOKEN.fullmatch(token):
        return None
    key = token.decode("ascii").lower()
    if key not in INTERESTING:
        key = ""
    if len(_NAMES) < CACHE_ENTRIES:  # names are few: keep the first ones, never evict
        _NAMES[name] = key
    return key


def _simple_field_line(ln: bytes) -> tuple[str, str] | None:
    """(key, value) of a ``token: value`` line, ('', '') if the field is not interesting;
    None if the strict parser would remark on it or cut its value."""
    name, colon, value = ln.partition(b":")
    if not colon:
        return None
    key = _NAMES.get(name)
    if key is None:
        key = _field_key(name)  # also None for an empty line and obs-fold
        if key is None:
            return None
    if key:
        text = value.strip(b" \t").decode("latin-1")
        if len(text) > VALUE_CHARS:
            return None
        parsed = (key, text)
    else:
        parsed = _DULL
    if len(ln) <= LINE_KEY_BYTES:
        _remember(_FIELD_LINES, ln, parsed)
    return parsed


def _simple_fields(block: bytes) -> _Fields | None:
    """The field section between the start line's CRLF and the final CRLF CRLF, when
    the strict parser would take it without remarks and the same way: CRLF line ends
    only, every line ``token: value``, no interesting field twice, values of at most
    VALUE_CHARS characters. None otherwise. (Callers look in the cache first.)"""
    headers: dict[str, str] = {}
    if block:
        lines = block.split(b"\r\n")
        if block.count(b"\n") != len(lines) - 1:
            return None  # a bare LF ends a line too
        known = _FIELD_LINES
        for ln in lines:
            parsed = known.get(ln) or _simple_field_line(ln)
            if parsed is None:
                return None
            key, text = parsed
            if key:
                if key in headers:
                    return None
                headers[key] = text
    length = headers.get("content-length")
    fields = _Fields(headers, None if length is None else [length], ())
    _remember(_FIELD_SECTIONS, block, fields)
    return fields


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


_new = object.__new__


def _event(
    kind: str,
    frame: int,
    ts_ns: int,
    from_client: bool,
    index: int | None,
    method: str | None,
    target: str | None,
    version: str | None,
    status: int | None,
    reason: str | None,
    headers: dict[str, str],
    content_length: int | None,
    chunked: bool,
    close: bool,
    keep_alive_timeout_s: float | None,
    body_bytes: int | None,
    gap_bytes: int,
    close_delimited: bool,
) -> HttpEvent:
    """``HttpEvent(...)`` with ``message=None``, for the per-message events: a class
    call with this many arguments costs a third more. Sets every field (a test checks
    it builds the same event as the class)."""
    ev = _new(HttpEvent)
    ev.kind = kind
    ev.frame = frame
    ev.ts_ns = ts_ns
    ev.from_client = from_client
    ev.index = index
    ev.method = method
    ev.target = target
    ev.version = version
    ev.status = status
    ev.reason = reason
    ev.headers = headers
    ev.content_length = content_length
    ev.chunked = chunked
    ev.close = close
    ev.keep_alive_timeout_s = keep_alive_timeout_s
    ev.body_bytes = body_bytes
    ev.gap_bytes = gap_bytes
    ev.close_delimited = close_delimited
    ev.message = None
    return ev


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


class _Side:
    """Parse state of one direction."""

    __slots__ = (
        "from_client",
        "requests",
        "state",
        "buf",
        "scan",
        "line_ok",
        "started",
        "start_frame",
        "start_ts",
        "remaining",
        "planned",
        "gaps",
        "cr",
        "event",
        "expected",
        "paused_index",
        "paused_frame",
        "paused_ts",
        "eof",
    )

    def __init__(self, from_client: bool, requests: bool) -> None:
        self.from_client = from_client
        self.requests = requests  # this side sends requests (the client unless flipped)
        self.state = _HEAD
        self.buf = bytearray()
        self.scan = 0  # where the next search for the end of the head starts
        self.line_ok = False  # start line of the current head validated
        self.started = False  # first byte of the current message seen
        self.start_frame = 0
        self.start_ts = 0
        # Bytes that can be counted without looking at them: what is left of a
        # Content-Length body or a chunk, _INF for a close-delimited body / tunnel / lost
        # direction, else 0. This makes ``feed`` a single comparison while a body
        # streams past.
        self.remaining = 0
        self.planned = 0  # body bytes announced so far (Content-Length, chunks, or _INF)
        self.gaps = 0
        self.cr = False  # CR seen after chunk data, LF expected
        self.event: HttpEvent | None = None  # head event of the message in progress
        self.expected: int | None = None  # Content-Length of the body in progress
        self.paused_index: int | None = None
        self.paused_frame = 0
        self.paused_ts = 0
        self.eof = False

    def reset(self) -> None:
        # HttpObserver._message_end has an inline copy: keep the two in step
        self.state = _HEAD
        if self.buf:
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

    __slots__ = (
        "is_http",
        "roles_flipped",
        "events",
        "requests",
        "responses",
        "interim_responses",
        "last_request",
        "last_response",
        "opaque_reason",
        "anomaly_count",
        "_client",
        "_server",
        "_pending",
        "_overflow",
        "_overflow_next",
    )

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
        # A direction's state is made when it first shows up (_new_side): there is one
        # observer per connection, and captures can hold millions of short ones.
        self._client: _Side | None = None
        self._server: _Side | None = None
        self._pending: deque[tuple[int, str]] = deque()  # (index, METHOD), unanswered
        # Requests beyond MAX_PENDING (one-sided captures of long keep-alive connections)
        # are only counted; their responses still get an index, but no method.
        self._overflow = 0
        self._overflow_next = 0

    def _new_side(self, from_client: bool) -> _Side:
        side = _Side(from_client, from_client != self.roles_flipped)
        if self.opaque_reason is not None:  # as the switch to a tunnel left both sides
            side.state = _OPAQUE
            side.remaining = _INF
        elif self.is_http is False:  # as _not_http left both sides
            side.remaining = _INF
        if from_client:
            self._client = side
        else:
            self._server = side
        return side

    # -- feeding ---------------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, ts_ns: int, frame: int) -> None:
        """In-order payload bytes of one direction."""
        side = self._client if from_client else self._server
        if side is None:
            side = self._new_side(from_client)
        n = len(data)
        if n < side.remaining:  # inside a body, tunnel or lost direction: just count
            side.remaining -= n
            return
        if self.is_http is False or not n or side.state >= _OPAQUE:
            return
        pos = 0
        if side.state == _HEAD and not side.started and data.__class__ is bytes:
            end = data.find(b"\r\n\r\n")  # a whole head in this segment: the fast path
            if 0 < end <= MAX_HEAD and self._whole_head(side, data, 0, end, ts_ns, frame):
                pos = end + 4
                if pos == n:
                    return
                if side.state == _BODY and n - pos <= side.remaining:
                    # Its Content-Length body (or the start of it) and nothing after:
                    # exactly the one step ``_run`` would take.
                    side.remaining -= n - pos
                    if not side.remaining:
                        self._message_end(side, ts_ns, frame)
                    return
        self._run(side, data, ts_ns, frame, pos)  # the rest, or all of it the strict way

    def count(self, from_client: bool, n: int) -> bool:
        """``feed`` of ``n`` bytes without them, where feed would only count them off
        (its first case: inside a body, a tunnel or a lost direction); False, and
        nothing done, elsewhere. Saves the caller copying out a body's segments."""
        side = self._client if from_client else self._server
        if side is None or n >= side.remaining:
            return False
        side.remaining -= n
        return True

    def gap(self, from_client: bool, nbytes: int, ts_ns: int, frame: int) -> None:
        """``nbytes`` on the wire that were not captured: fine inside a body only."""
        side = self._client if from_client else self._server
        if side is None:
            side = self._new_side(from_client)
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
        if side is None:
            side = self._new_side(from_client)
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
        c, s = self._client, self._server
        return (c is None or c.state != _LOST) and (s is None or s.state != _LOST)

    def _side(self, requests: bool) -> _Side | None:
        """The side sending requests (or responses); None before it sent anything."""
        return self._client if requests != self.roles_flipped else self._server

    @property
    def outstanding_requests(self) -> int:
        """Requests whose (final) response has not started."""
        n = len(self._pending) + self._overflow
        srv = self._side(False)
        if n and srv is not None and srv.state == _HEAD and srv.started:
            n -= 1  # the head that is arriving probably answers the oldest one
        return n

    @property
    def request_in_progress(self) -> bool:
        side = self._side(True)
        return side is not None and side.in_message

    @property
    def response_in_progress(self) -> bool:
        side = self._side(False)
        return side is not None and side.in_message

    @property
    def response_expected_bytes(self) -> int | None:
        srv = self._side(False)
        return srv.expected if srv is not None and srv.state == _BODY else None

    @property
    def response_received_bytes(self) -> int | None:
        srv = self._side(False)
        return srv.body if srv is not None and srv.in_message else None

    def state(self, from_client: bool) -> str:
        """Parse state of one direction: idle, head, body, body_until_close, chunked,
        trailers, paused, opaque or lost."""
        side = self._client if from_client else self._server
        if side is None:
            return "idle" if self.opaque_reason is None else "opaque"
        if side.state == _HEAD and side.started:
            return "head"
        return _STATE_NAMES[side.state]

    # -- engine ------------------------------------------------------------------------

    def _run(self, side: _Side, data: bytes, ts: int, frame: int, pos: int = 0) -> None:
        n = len(data)
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
                if not side.cr and data.startswith(b"\r\n", pos):  # both at once
                    pos += 2
                    side.state = _CHUNK_SIZE
                    continue
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
        if not side.started:
            # Fast path for a whole head after other messages of this segment (``feed``
            # tries the one at its start, and what it declined goes the strict way).
            if pos and side.state == _HEAD and data.__class__ is bytes:
                end = data.find(b"\r\n\r\n", pos)
                if pos < end <= pos + MAX_HEAD and self._whole_head(
                    side, data, pos, end, ts, frame
                ):
                    return end + 4
        elif side.state == _TRAILERS and len(side.buf) == 1 and data.startswith(b"\r\n", pos):
            self._message_end(side, ts, frame)  # last chunk, no trailer fields
            return pos + 2
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

    def _whole_head(
        self, side: _Side, data: bytes, pos: int, end: int, ts: int, frame: int
    ) -> bool:
        """A head in ``data[pos:end]``, the first CRLF CRLF at ``end``, starting with the
        start line. Takes it as the strict path would if it is plain and of the kind this
        side sends; otherwise returns False having changed nothing."""
        nl = data.find(b"\r\n", pos, end + 2)
        # Neither pattern matches an empty start line (CRLF before the head: the strict
        # path skips it) nor one with a bare LF in it; only matches are cached.
        line = data[pos:nl]
        if side.requests:
            parsed = _REQUEST_LINES.get(line) or _simple_request_line(line)
        else:
            parsed = _STATUS_LINES.get(line) or _simple_status_line(line)
        if parsed is None:
            return False
        block = data[nl + 2 : end] if nl < end else b""
        fields = _FIELD_SECTIONS.get(block) or _simple_fields(block)
        if fields is None:
            return False
        if self.is_http is None:
            self.is_http = True  # of the kind this side sends: roles as the tracker said
        side.started = side.line_ok = True
        side.start_frame = frame
        side.start_ts = ts
        if side.requests:
            method, target, version, upper = parsed
            self._request(side, method, target, version, upper, fields, ts, frame)
        else:
            version, status, reason = parsed
            self._response(side, version, status, reason, fields, ts, frame)
        return True

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
                    for s in (self._client, self._server):
                        if s is not None:
                            s.requests = not s.requests
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
        digits = line.rstrip(b"\r")
        if 0 < len(digits) <= 16 and not digits.strip(_HEX_DIGITS):  # plain hex: no regex
            size = int(digits, 16)
        else:
            m = _CHUNK_LINE.fullmatch(digits)
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
        method = head.method or ""
        side.buf.clear()  # the head was buffered here (the fast path never buffers)
        side.scan = 0
        self._request(
            side,
            head.method,
            head.target,
            head.version,
            method.upper(),
            _Fields.of(head),
            ts,
            frame,
        )

    def _request(
        self,
        side: _Side,
        method: str | None,
        target: str | None,
        version: str,
        upper: str,
        f: _Fields,
        ts: int,
        frame: int,
    ) -> None:
        index = self.requests
        self.requests = index + 1
        clen = f.length
        ev = _event(
            "request",
            side.start_frame,
            side.start_ts,
            side.from_client,
            index,
            method,
            target,
            version,
            None,  # status
            None,  # reason
            f.headers.copy(),
            clen,
            f.chunked,
            f.close or (version == "1.0" and not f.keep_alive),
            f.timeout,
            None,  # body_bytes
            0,  # gap_bytes
            False,  # close_delimited
        )
        self.events.append(ev)
        self.last_request = ev
        if f.problems:
            for p in f.problems:
                self._anomaly(side, p, ts, frame)
        if self._overflow or len(self._pending) >= MAX_PENDING:
            if not self._overflow:
                self._overflow_next = index
                msg = f"more than {MAX_PENDING} requests unanswered: methods no longer kept"
                self._anomaly(side, msg, ts, frame)
            self._overflow += 1
        else:
            self._pending.append((index, upper))
        side.event = ev
        if f.framed:
            if not f.chunked:
                self._lose(side, "request Transfer-Encoding does not end in chunked", ts, frame)
                return
            if clen is not None:
                self._anomaly(side, "both Transfer-Encoding and Content-Length", ts, frame)
            side.state = _CHUNK_SIZE
        elif not f.length_ok:
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
        side.buf.clear()  # the head was buffered here (the fast path never buffers)
        side.scan = 0
        self._response(side, head.version, head.status, head.reason, _Fields.of(head), ts, frame)

    def _response(
        self,
        side: _Side,
        version: str,
        status: int,
        reason: str | None,
        f: _Fields,
        ts: int,
        frame: int,
    ) -> None:
        interim = 100 <= status < 200 and status != 101
        req: tuple[int, str] | None
        if interim:
            req = self._oldest(pop=False)
            self.interim_responses += 1
        else:
            req = self._pending.popleft() if self._pending else self._oldest(pop=True)
            self.responses += 1
        clen = f.length
        ev = _event(
            "response",
            side.start_frame,
            side.start_ts,
            side.from_client,
            req[0] if req else None,
            (req[1] or None) if req else None,
            None,  # target
            version,
            status,
            reason,
            f.headers.copy(),
            clen,
            f.chunked,
            f.close or (version == "1.0" and not f.keep_alive),
            f.timeout,
            None,  # body_bytes
            0,  # gap_bytes
            False,  # close_delimited
        )
        self.events.append(ev)
        self.last_response = ev
        if f.problems:
            for p in f.problems:
                self._anomaly(side, p, ts, frame)
        if req is None and self.requests:
            self._anomaly(side, "response without a matching request", ts, frame)
        side.event = ev
        if interim:
            side.reset()
            return
        method = req[1] if req else ""
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            self.opaque_reason = "upgrade" if status == 101 else "connect"
            self._message_end(side, ts, frame)
            for s in (self._client, self._server):
                if s is not None and s.state != _LOST:
                    s.reset()
                    s.state = _OPAQUE
                    s.remaining = _INF
            return
        if method == "HEAD" or status in (204, 304):
            self._message_end(side, ts, frame)
        elif f.framed:
            if clen is not None:
                self._anomaly(side, "both Transfer-Encoding and Content-Length", ts, frame)
            if f.chunked:
                side.state = _CHUNK_SIZE
            else:
                side.state = _CLOSE_BODY
                side.remaining = side.planned = _INF
        elif not f.length_ok:
            self._lose(side, "invalid Content-Length in response", ts, frame)
        elif clen is None:
            side.state = _CLOSE_BODY
            side.remaining = side.planned = _INF
        elif clen:
            side.state = _BODY
            side.remaining = side.planned = side.expected = clen
        else:
            self._message_end(side, ts, frame)
        cli = self._server if self.roles_flipped else self._client  # self._side(True)
        if cli is not None and cli.state == _PAUSED:  # else _maybe_unpause does nothing
            self._maybe_unpause(req, ts, frame)

    def _message_end(self, side: _Side, ts: int, frame: int, close_delimited: bool = False) -> None:
        head = side.event
        requests = side.requests
        if head is None:
            index = method = status = None
        else:
            index, method, status = head.index, head.method, head.status
        self.events.append(
            _event(
                "request_end" if requests else "response_end",
                frame,
                ts,
                side.from_client,
                index,
                method,
                None,  # target
                None,  # version
                status,
                None,  # reason
                {},  # headers
                None,  # content_length
                False,  # chunked
                False,  # close
                None,  # keep_alive_timeout_s
                side.planned - side.remaining if side.state < _PAUSED else 0,  # side.body
                side.gaps,
                close_delimited,
            )
        )
        pause = (
            requests
            and head is not None
            and (method == "CONNECT" or "upgrade" in head.headers)
            and side.state != _LOST
            and any(p[0] == index for p in self._pending)  # not answered yet
        )
        # side.reset(), inline: this runs for every message
        side.state = _HEAD
        if side.buf:
            side.buf.clear()
        side.scan = side.remaining = side.planned = side.gaps = 0
        side.line_ok = side.started = side.cr = False
        side.event = side.expected = None
        if pause:
            side.state = _PAUSED
            side.paused_index = index

    def _oldest(self, pop: bool) -> tuple[int, str] | None:
        """The oldest request still waiting for its final response (FIFO pairing)."""
        if self._pending:
            return self._pending.popleft() if pop else self._pending[0]
        if not self._overflow:
            return None
        req = (self._overflow_next, "")
        if pop:
            self._overflow -= 1
            self._overflow_next += 1
        return req

    def _maybe_unpause(self, req: tuple[int, str] | None, ts: int, frame: int) -> None:
        """The answer to a CONNECT/Upgrade request was not a tunnel: parse held bytes."""
        cli = self._side(True)
        if cli is None or cli.state != _PAUSED or req is None or req[0] != cli.paused_index:
            return
        held = bytes(cli.buf)
        cli.reset()
        cli.paused_index = None
        if held:
            self._run(cli, held, cli.paused_ts, cli.paused_frame)

    # -- bookkeeping -----------------------------------------------------------------

    def _emit(self, ev: HttpEvent) -> None:
        self.events.append(ev)

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
        c, s = self._client, self._server
        if self.is_http is None and c is not None and s is not None and c.state == s.state == _LOST:
            self._not_http()  # neither direction can ever show a start line

    def _not_http(self) -> None:
        self.is_http = False
        for s in (self._client, self._server):
            if s is None:
                continue
            if s.state != _LOST:
                s.reset()
            s.remaining = _INF  # the tracker should stop feeding; if not, this is cheap
