"""TLS record layer and plaintext handshake, observed passively from both directions.

Without keys we still see a lot: the record framing, the hellos (SNI, ALPN, versions,
cipher), ChangeCipherSpec, and alerts sent before a side switched to encryption. That
is enough to say "the server refused the handshake with handshake_failure" or "the
client sent an encrypted alert and closed". In TLS 1.3 everything after ServerHello is
an application_data record, so we also keep the sizes of the last few records per
direction: a 19-byte record right before a close is probably an encrypted alert.

Parsing (pure functions on bytes) is separate from state (``_Dir`` plus ``TlsObserver``).
Everything on the wire is untrusted: we never raise, keep bounded state (record headers,
handshake messages we decode, at most ``MAX_HANDSHAKE`` bytes), record anomalies, and
when record framing is lost in a direction we say so and stop interpreting it.

Speed. Each segment costs O(records) Python work, not O(bytes): a record header that is
whole in the segment is read in place, record bodies we do not decode are skipped by
arithmetic, and a whole application_data record (the bulk of TLS traffic) is taken in
one step. Per-direction state is made when a direction first shows up.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "ALERT_NAMES",
    "Hello",
    "TlsAlert",
    "TlsAnomaly",
    "TlsMessage",
    "TlsObserver",
    "TlsRecord",
    "version_name",
]

MAX_RECORD = 2**14 + 2048  # TLSCiphertext.length limit (RFC 5246 §6.2.3)
MAX_HANDSHAKE = 64 * 1024  # largest hello we buffer to decode
MAX_ALERTS = 64
MAX_ANOMALIES = 32
MAX_MESSAGES = 64
RECENT_RECORDS = 4  # type-23 records remembered per direction
TEXT_CHARS = 255

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24

ALERT_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

HANDSHAKE_NAMES: dict[int, str] = {
    0: "HelloRequest",
    1: "ClientHello",
    2: "ServerHello",
    3: "HelloVerifyRequest",
    4: "NewSessionTicket",
    5: "EndOfEarlyData",
    6: "HelloRetryRequest",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
    21: "CertificateURL",
    22: "CertificateStatus",
    23: "SupplementalData",
    24: "KeyUpdate",
    25: "CompressedCertificate",
    254: "MessageHash",
}

CIPHER_NAMES: dict[int, str] = {
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC0A4: "TLS_PSK_WITH_AES_128_CCM",
    0xC0A5: "TLS_PSK_WITH_AES_256_CCM",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAB: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAD: "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAE: "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
}

# ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3)
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

STAGES = ("none", "client_hello", "server_hello", "client_finished", "established")
_RANK = {s: i for i, s in enumerate(STAGES)}


_VERSION_NAMES = {2: "SSL 2.0", 0x300: "SSL 3.0", 0x301: "TLS 1.0", 0x302: "TLS 1.1"}
_VERSION_NAMES |= {0x303: "TLS 1.2", 0x304: "TLS 1.3"}


def version_name(v: int | None) -> str | None:
    """'TLS 1.2' etc.; TLS 1.3 drafts (0x7fNN) count as 'TLS 1.3'."""
    if v is None:
        return None
    name = _VERSION_NAMES.get(v)
    if name is not None:
        return name
    if v >> 8 == 0x7F:
        return "TLS 1.3"
    return f"0x{v:04x}"


def _rank(v: int) -> int:
    """Orders versions; drafts of 1.3 sort just below the final 1.3."""
    return 0x303 * 256 + (v & 0xFF) if v >> 8 == 0x7F else v * 256


def _grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def _text(b: bytes) -> str:
    return b[:TEXT_CHARS].decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------
# Parsing: pure functions on handshake message bodies
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Hello:
    """What we decode from a ClientHello or ServerHello body."""

    legacy_version: int = 0
    random: bytes = b""
    ciphers: list[int] = field(default_factory=list)  # ClientHello: offered; ServerHello: 1
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)  # supported_versions
    problem: str | None = None


def _extensions(body: bytes, pos: int, hello: Hello, server: bool) -> None:
    if pos + 2 > len(body):
        return  # no extensions: fine for old hellos
    end = min(pos + 2 + (body[pos] << 8 | body[pos + 1]), len(body))
    pos += 2
    while pos + 4 <= end:  # the 4-byte extension header is there: index, don't slice
        etype = body[pos] << 8 | body[pos + 1]
        elen = body[pos + 2] << 8 | body[pos + 3]
        pos += 4 + elen
        if etype != 0 and etype != 16 and etype != 43:
            continue  # skipped by arithmetic
        ext = body[pos - elen : pos]  # may be cut short by the end of the body
        if etype == 0 and not server and len(ext) >= 2:
            p, stop = 2, min(2 + int.from_bytes(ext[:2]), len(ext))
            while p + 3 <= stop:
                ntype, nlen = ext[p], int.from_bytes(ext[p + 1 : p + 3])
                if ntype == 0:
                    hello.sni = _text(ext[p + 3 : p + 3 + nlen])
                    break
                p += 3 + nlen
        elif etype == 16 and len(ext) >= 2:
            p, stop = 2, min(2 + int.from_bytes(ext[:2]), len(ext))
            while p < stop and len(hello.alpn) < 16:
                n = ext[p]
                hello.alpn.append(_text(ext[p + 1 : p + 1 + n]))
                p += 1 + n
        elif etype == 43:
            if server and len(ext) >= 2:
                hello.versions = [int.from_bytes(ext[:2])]
            elif not server and ext:
                raw = ext[1 : 1 + ext[0]]
                hello.versions = [int.from_bytes(raw[i : i + 2]) for i in range(0, len(raw) - 1, 2)]
    if pos > len(body):
        hello.problem = "extension runs past the end of the hello"


def parse_client_hello(body: bytes) -> Hello:
    """RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2; tolerant of truncation."""
    h = Hello()
    if len(body) < 35:
        h.problem = "ClientHello too short"
        return h
    h.legacy_version = body[0] << 8 | body[1]
    h.random = body[2:34]
    pos = 35 + body[34]
    if pos + 2 > len(body):
        h.problem = "ClientHello truncated"
        return h
    n = body[pos] << 8 | body[pos + 1]
    suites = body[pos + 2 : pos + 2 + n]
    k = min(len(suites) // 2, 256)  # whole 16-bit values, at most 256
    h.ciphers = list(struct.unpack(f">{k}H", suites[: 2 * k]))
    pos += 2 + n
    if pos >= len(body):
        h.problem = "ClientHello truncated"
        return h
    pos += 1 + body[pos]  # compression methods
    _extensions(body, pos, h, server=False)
    return h


def parse_server_hello(body: bytes) -> Hello:
    """ServerHello, also in the TLS 1.3 draft layout (0x7fNN: no session id/compression)."""
    h = Hello()
    if len(body) < 34:
        h.problem = "ServerHello too short"
        return h
    h.legacy_version = int.from_bytes(body[:2])
    h.random = body[2:34]
    pos = 34
    draft = h.legacy_version >> 8 == 0x7F
    if not draft:
        if len(body) < 35:
            h.problem = "ServerHello truncated"
            return h
        pos += 1 + body[34]
    if pos + 2 > len(body):
        h.problem = "ServerHello truncated"
        return h
    h.ciphers = [int.from_bytes(body[pos : pos + 2])]
    pos += 2 if draft else 3
    _extensions(body, pos, h, server=True)
    return h


# ---------------------------------------------------------------------------------------
# Results and state
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class TlsAlert:
    """An alert record. ``encrypted``: level/description are unknown (None)."""

    frame: int
    ts_ns: int
    from_client: bool
    level: int | None  # 1 warning, 2 fatal
    description: int | None
    name: str | None
    encrypted: bool


@dataclass(slots=True)
class TlsRecord:
    """A record header: ``frame``/``ts_ns`` of its first byte; ``complete`` once all
    ``length`` body bytes arrived (gaps count)."""

    content_type: int
    length: int
    frame: int
    ts_ns: int
    complete: bool = False


@dataclass(slots=True)
class TlsMessage:
    """A plaintext handshake message (or ChangeCipherSpec) in the order seen."""

    frame: int
    ts_ns: int
    from_client: bool
    name: str


@dataclass(slots=True)
class TlsAnomaly:
    frame: int
    ts_ns: int
    from_client: bool
    message: str


_HDR, _BODY, _LOST = 0, 1, 2
_INF = 1 << 62  # ``skip`` of a direction we no longer interpret


class _Dir:
    """Record-layer state of one direction."""

    __slots__ = (
        "from_client",
        "state",
        "hdr",
        "hdr_frame",
        "hdr_ts",
        "ctype",
        "skip",
        "want",
        "record",
        "small",
        "gapped",
        "records",
        "app_planned",
        "app_records",
        "recent",
        "ccs",
        "encrypted",
        "hs_buf",
        "hs_skip",
        "hs_ok",
        "eof",
    )

    def __init__(self, from_client: bool) -> None:
        self.from_client = from_client
        self.state = _HDR
        self.hdr = bytearray()  # a record header split over segments
        self.hdr_frame = 0  # where the record header began
        self.hdr_ts = 0
        self.ctype = 0
        # Body bytes of the current record still to come: ``skip`` if we only count them
        # (application data, encrypted handshake; _INF once the direction is lost),
        # ``want`` if we look at them. One comparison in ``feed`` then covers bulk traffic.
        self.skip = 0
        self.want = 0
        self.record: TlsRecord | None = None
        self.small = bytearray()  # CCS / alert record body
        self.gapped = False  # the current record lost bytes
        self.records = 0
        self.app_planned = 0  # lengths of application_data records begun
        self.app_records = 0
        self.recent: deque[TlsRecord] = deque(maxlen=RECENT_RECORDS)
        self.ccs = False  # sent ChangeCipherSpec (any version)
        self.encrypted = False  # handshake records are no longer plaintext
        self.hs_buf = bytearray()
        self.hs_skip = 0  # bytes of an uninteresting handshake message still to skip
        self.hs_ok = True
        self.eof = False

    @property
    def switched(self) -> bool:
        """Has this side (probably) started encrypting? Decides how alerts are read."""
        return self.ccs or self.encrypted or self.app_records > 0


class TlsObserver:
    """Follows the TLS record layer of one TCP connection; see the module docstring.

    ``is_tls`` is decided by the first bytes from either side: a plausible record header
    (type 20-24, version 3.0-3.4, length <= 2^14+2048) or an SSLv2-compatible
    ClientHello from the client.

    ``stage``: 'none', 'client_hello', 'server_hello' (ServerHello seen), then for TLS
    <= 1.2 'client_finished' (client ChangeCipherSpec) and 'established' (both sides sent
    ChangeCipherSpec; in an abbreviated handshake the server goes first), for TLS 1.3
    'client_finished' (a client application_data record after the server's encrypted
    flight) and 'established' (then any server record, or a second client record).
    """

    __slots__ = (
        "is_tls",
        "stage",
        "version",
        "version_id",
        "offered_version",
        "offered_version_id",
        "sni",
        "alpn",
        "alpn_selected",
        "cipher",
        "cipher_id",
        "hello_retry",
        "client_hello",
        "server_hello",
        "sslv2_hello",
        "certificates",
        "alerts",
        "anomalies",
        "anomaly_count",
        "messages",
        "_c",
        "_s",
        "_sh_seen",
        "_t13",
        "_server_flight",
    )

    def __init__(self) -> None:
        self.is_tls: bool | None = None
        self.stage = "none"
        self.version: str | None = None
        self.version_id: int | None = None
        self.offered_version: str | None = None
        self.offered_version_id: int | None = None
        self.sni: str | None = None
        self.alpn: list[str] = []  # offered by the client
        self.alpn_selected: str | None = None  # only visible in plaintext (TLS <= 1.2)
        self.cipher: str | None = None
        self.cipher_id: int | None = None
        self.hello_retry = False
        self.client_hello: Hello | None = None  # first ClientHello, decoded
        self.server_hello: Hello | None = None  # last ServerHello (or HRR), decoded
        self.sslv2_hello = False
        self.certificates = 0  # plaintext Certificate messages (TLS <= 1.2)
        self.alerts: list[TlsAlert] = []
        self.anomalies: list[TlsAnomaly] = []
        self.anomaly_count = 0
        self.messages: list[TlsMessage] = []
        # A direction's state is made when it first shows up (_new_dir): there is one
        # observer per connection, and captures can hold millions of short ones.
        self._c: _Dir | None = None
        self._s: _Dir | None = None
        self._sh_seen = False
        self._t13 = False
        self._server_flight = False  # TLS 1.3: server sent application_data after SH

    def _new_dir(self, from_client: bool) -> _Dir:
        d = _Dir(from_client)
        if self.is_tls is False:
            d.skip = _INF  # as _not_tls left both directions
        if from_client:
            self._c = d
        else:
            self._s = d
        return d

    # -- status ------------------------------------------------------------------------

    @property
    def handshake_complete(self) -> bool:
        return self.stage == "established"

    @property
    def synced(self) -> bool:
        c, s = self._c, self._s
        return (c is None or c.state != _LOST) and (s is None or s.state != _LOST)

    @property
    def client_records(self) -> int:
        return self._c.records if self._c is not None else 0

    @property
    def server_records(self) -> int:
        return self._s.records if self._s is not None else 0

    def app_data_bytes(self, from_client: bool) -> int:
        """application_data record bytes (headers excluded) sent by that side."""
        d = self._c if from_client else self._s
        if d is None:
            return 0
        if d.state == _BODY and d.ctype == APPLICATION_DATA:
            return d.app_planned - d.skip
        return d.app_planned

    def last_record(self, from_client: bool) -> TlsRecord | None:
        d = self._c if from_client else self._s
        return d.record if d is not None else None

    def recent_app_records(self, from_client: bool) -> list[TlsRecord]:
        """The last few complete application_data records of that side, oldest first."""
        d = self._c if from_client else self._s
        return list(d.recent) if d is not None else []

    def last_record_looks_like_alert(self, from_client: bool) -> bool:
        """TLS 1.3 heuristic: a complete 19-byte application_data record (2-byte alert,
        1-byte inner type, 16-byte AEAD tag) is probably an encrypted alert."""
        rec = self.last_record(from_client)
        if rec is None or not rec.complete:
            return False
        return rec.content_type == APPLICATION_DATA and rec.length == 19

    # -- feeding -----------------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, ts_ns: int, frame: int) -> None:
        """In-order payload bytes of one direction."""
        d = self._c if from_client else self._s
        if d is None:
            d = self._new_dir(from_client)
        n = len(data)
        if n < d.skip:  # inside an opaque record (or a lost direction): just count
            d.skip -= n
            return
        if d.state == _LOST or self.is_tls is False or not n:
            return
        self._run(d, data, ts_ns, frame)

    def gap(self, from_client: bool, nbytes: int, ts_ns: int, frame: int) -> None:
        """``nbytes`` not captured: fine inside a record body, fatal over a header."""
        d = self._c if from_client else self._s
        if d is None:
            d = self._new_dir(from_client)
        if nbytes <= 0 or d.state == _LOST or self.is_tls is False:
            return
        if d.state == _BODY:
            d.gapped = True
            if d.skip:
                take = min(nbytes, d.skip)
                d.skip -= take
            else:
                take = min(nbytes, d.want)
                d.want -= take
                if d.ctype == HANDSHAKE and not d.encrypted and d.hs_ok:
                    if d.hs_skip >= take:
                        d.hs_skip -= take
                    else:
                        d.hs_ok = False
                        self._anomaly(d, "handshake bytes not captured", ts_ns, frame)
            nbytes -= take
            if not (d.skip or d.want):
                self._end_record(d, ts_ns, frame)
            if not nbytes:
                return
        self._lose(d, f"{nbytes} bytes not captured where a record header was due", ts_ns, frame)

    def eof(self, from_client: bool, ts_ns: int, frame: int) -> None:
        """That side sent FIN: a record cut short is worth an anomaly."""
        d = self._c if from_client else self._s
        if d is None:
            d = self._new_dir(from_client)
        if d.eof:
            return
        d.eof = True
        if self.is_tls and d.state == _BODY and d.record is not None:
            got = d.record.length - d.skip - d.want
            msg = f"closed inside a record: {got} of {d.record.length} bytes"
            self._anomaly(d, msg, ts_ns, frame)
        elif self.is_tls and d.state == _HDR and d.hdr:
            self._anomaly(d, "closed inside a record header", ts_ns, frame)

    # -- record layer ------------------------------------------------------------------

    def _run(self, d: _Dir, data: bytes, ts: int, frame: int) -> None:
        pos, n = 0, len(data)
        while pos < n and d.state != _LOST:
            if d.state == _HDR:
                if not d.hdr:
                    if pos + 5 <= n and self.is_tls:  # a whole, valid header: no copy
                        ctype = data[pos]
                        length = data[pos + 3] << 8 | data[pos + 4]
                        if (
                            20 <= ctype <= 24
                            and data[pos + 1] == 3
                            and data[pos + 2] <= 4
                            and length <= MAX_RECORD
                        ):
                            pos += 5
                            if ctype == APPLICATION_DATA and pos + length <= n:
                                # The bulk of TLS traffic: a whole application_data
                                # record. _start_record + _end_record, inline.
                                pos += length
                                rec = TlsRecord(APPLICATION_DATA, length, frame, ts, True)
                                d.records += 1
                                d.ctype = APPLICATION_DATA
                                d.record = rec
                                d.gapped = False
                                if d.small:
                                    d.small.clear()
                                d.app_records += 1
                                d.app_planned += length
                                if self._t13 and (  # else _app_record_stage does nothing
                                    not self._server_flight or self.stage != "established"
                                ):
                                    self._app_record_stage(d)
                                d.recent.append(rec)
                                continue
                            self._start_record(d, ctype, length, frame, ts, ts, frame)
                            skip = d.skip
                            if skip and pos + skip <= n:  # the whole opaque body is here
                                pos += skip
                                d.skip = 0
                                self._end_record(d, ts, frame)
                            continue
                    d.hdr_frame, d.hdr_ts = frame, ts
                take = 5 - len(d.hdr)
                d.hdr += data[pos : pos + take]
                pos += take
                if not self._header(d, ts, frame):
                    return
            elif d.skip:
                take = min(n - pos, d.skip)
                d.skip -= take
                pos += take
                if not d.skip:
                    self._end_record(d, ts, frame)
            else:
                take = min(n - pos, d.want)
                if d.ctype == HANDSHAKE:
                    if not d.encrypted and d.hs_ok:
                        self._handshake_bytes(d, data[pos : pos + take], ts, frame)
                else:
                    d.small += data[pos : pos + take]
                d.want -= take
                pos += take
                if not d.want:
                    self._end_record(d, ts, frame)

    def _header(self, d: _Dir, ts: int, frame: int) -> bool:
        """Validate (partial) header bytes; start the record once all 5 are here."""
        h = d.hdr
        if self.is_tls is None:
            verdict = self._decide(d, bytes(h), ts, frame)
            if verdict is None:
                return False  # need more bytes
            if not verdict:
                self._not_tls()
                return False
            self.is_tls = True
            if d.state == _BODY:  # SSLv2 ClientHello
                return True
        elif len(h) < 5:
            if not 20 <= h[0] <= 24:
                self._lose(d, f"bad record type {h[0]}", ts, frame)
            return False
        ctype, major, minor = h[0], h[1], h[2]
        length = int.from_bytes(h[3:5])
        if not 20 <= ctype <= 24 or major != 3 or minor > 4:
            self._lose(d, f"bad record header {bytes(h).hex()}", ts, frame)
            return False
        if length > MAX_RECORD:
            self._lose(d, f"record length {length} exceeds {MAX_RECORD}", ts, frame)
            return False
        h.clear()
        self._start_record(d, ctype, length, d.hdr_frame, d.hdr_ts, ts, frame)
        return True

    def _start_record(
        self, d: _Dir, ctype: int, length: int, rec_frame: int, rec_ts: int, ts: int, frame: int
    ) -> None:
        """A valid record header (its first byte at ``rec_frame``) has been read."""
        d.records += 1
        d.ctype = ctype
        d.record = TlsRecord(ctype, length, rec_frame, rec_ts)
        d.gapped = False
        if d.small:
            d.small.clear()
        if ctype == HANDSHAKE:
            inspect = not d.encrypted and d.hs_ok
        else:
            inspect = ctype in (CHANGE_CIPHER_SPEC, ALERT) and length <= 64
        if inspect:
            d.want, d.skip = length, 0
        else:
            d.want, d.skip = 0, length
        d.state = _BODY
        if ctype == APPLICATION_DATA:
            d.app_records += 1
            d.app_planned += length
            if self._t13 and (  # else _app_record_stage does nothing
                not self._server_flight or self.stage != "established"
            ):
                self._app_record_stage(d)
        if not length:
            self._end_record(d, ts, frame)

    def _decide(self, d: _Dir, h: bytes, ts: int, frame: int) -> bool | None:
        """Is this the start of TLS? None until enough bytes are in."""
        b0 = h[0]
        if 20 <= b0 <= 24:
            if len(h) >= 2 and h[1] != 3:
                return False
            if len(h) >= 3 and h[2] > 4:
                return False
            if len(h) < 5:
                return None
            return int.from_bytes(h[3:5]) <= MAX_RECORD
        if b0 & 0x80 and d.from_client:  # SSLv2 record header, 2-byte form
            if len(h) >= 3 and h[2] != 1:
                return False
            if len(h) < 5:
                return None
            length = ((b0 & 0x7F) << 8) | h[1]
            version = int.from_bytes(h[3:5])
            if length < 9 or not (version == 2 or version >> 8 == 3):
                return False
            self.sslv2_hello = True
            self._offer(version)
            self._set_stage("client_hello")
            self._log(d, "SSLv2 ClientHello", d.hdr_ts, d.hdr_frame)
            d.records += 1
            d.record = TlsRecord(0x80, length, d.hdr_frame, d.hdr_ts)
            d.skip = length - 3  # msg type and version are in the 5 bytes read
            d.want = 0
            d.hdr.clear()
            d.state = _BODY
            d.ctype = 0x80
            return True
        return False

    def _end_record(self, d: _Dir, ts: int, frame: int) -> None:
        rec = d.record
        if rec is not None:
            rec.complete = True
        ct = d.ctype
        d.state = _HDR
        if ct == APPLICATION_DATA and rec is not None:
            d.recent.append(rec)
        elif ct == CHANGE_CIPHER_SPEC:
            self._ccs(d, ts, frame)
        elif ct == ALERT:
            self._alert(d, ts, frame)
        if d.small:
            d.small.clear()
        d.skip = d.want = 0

    def _alert(self, d: _Dir, ts: int, frame: int) -> None:
        rec = d.record
        length = rec.length if rec else 0
        if d.gapped:
            self._add_alert(TlsAlert(frame, ts, d.from_client, None, None, None, d.switched))
            return
        if length == 2 or (not d.switched and length <= 64):
            body = bytes(d.small)
            if len(body) % 2 or not body:
                self._anomaly(d, f"alert record of odd length {len(body)}", ts, frame)
            for i in range(0, len(body) - 1, 2):
                level, desc = body[i], body[i + 1]
                name = ALERT_NAMES.get(desc, f"unknown_{desc}")
                self._add_alert(TlsAlert(frame, ts, d.from_client, level, desc, name, False))
        else:
            self._add_alert(TlsAlert(frame, ts, d.from_client, None, None, None, True))

    def _ccs(self, d: _Dir, ts: int, frame: int) -> None:
        self._log(d, "ChangeCipherSpec", ts, frame)
        d.ccs = True
        if self._t13:
            return  # middlebox-compatibility CCS: means nothing in TLS 1.3
        if d.from_client and self.stage == "client_hello":
            return  # only TLS 1.3 clients send CCS before ServerHello (HRR, early data)
        d.encrypted = True
        d.hs_buf.clear()
        d.hs_skip = 0
        c, s = self._c, self._s
        if c is not None and s is not None and c.ccs and s.ccs:
            self._set_stage("established")
        elif d.from_client:
            self._set_stage("client_finished")

    def _app_record_stage(self, d: _Dir) -> None:
        if not self._t13:
            return
        if d.from_client:
            if self.stage == "client_finished":
                self._set_stage("established")  # a second client record
            elif self._server_flight and _RANK[self.stage] < _RANK["client_finished"]:
                self._set_stage("client_finished")
                d.encrypted = True
        elif self._sh_seen:
            if self.stage == "client_finished":
                self._set_stage("established")
            self._server_flight = True

    # -- handshake layer ---------------------------------------------------------------

    def _handshake_bytes(self, d: _Dir, chunk: bytes, ts: int, frame: int) -> None:
        """Reassemble plaintext handshake messages across records; skip big bodies."""
        if d.hs_skip:
            take = min(d.hs_skip, len(chunk))
            d.hs_skip -= take
            chunk = chunk[take:]
            if not chunk:
                return
        buf = d.hs_buf
        buf += chunk
        while len(buf) >= 4 and d.hs_ok and not d.encrypted:
            mtype = buf[0]
            mlen = int.from_bytes(buf[1:4])
            name = HANDSHAKE_NAMES.get(mtype)
            if name is None:
                d.hs_ok = False
                buf.clear()
                self._anomaly(d, f"unknown handshake message type {mtype}", ts, frame)
                return
            if mtype in (1, 2) and mlen <= MAX_HANDSHAKE:
                if len(buf) < 4 + mlen:
                    return  # wait for the rest of the hello
                body = bytes(buf[4 : 4 + mlen])
                del buf[: 4 + mlen]
                self._hello(d, mtype, body, ts, frame)
                continue
            if mtype in (1, 2):
                self._anomaly(d, f"{name} of {mlen} bytes not decoded", ts, frame)
            self._message(d, mtype, name, ts, frame)
            if len(buf) >= 4 + mlen:
                del buf[: 4 + mlen]
            else:
                d.hs_skip = 4 + mlen - len(buf)
                buf.clear()

    def _message(self, d: _Dir, mtype: int, name: str, ts: int, frame: int) -> None:
        self._log(d, name, ts, frame)
        if mtype == 11:
            self.certificates += 1
        elif mtype in (1, 2):
            self._set_stage("client_hello" if mtype == 1 else "server_hello")

    def _hello(self, d: _Dir, mtype: int, body: bytes, ts: int, frame: int) -> None:
        if mtype == 1:
            self._log(d, "ClientHello", ts, frame)
            h = parse_client_hello(body)
            if self.client_hello is None:
                self.client_hello = h
            if self.sni is None and h.sni is not None:
                self.sni = h.sni
            if h.alpn and not self.alpn:
                self.alpn = h.alpn
            offered = [v for v in h.versions if not _grease(v)]
            self._offer(max(offered, key=_rank) if offered else h.legacy_version)
            self._set_stage("client_hello")
        else:
            h = parse_server_hello(body)
            self.server_hello = h
            hrr = h.random == HRR_RANDOM
            self._log(d, "HelloRetryRequest" if hrr else "ServerHello", ts, frame)
            v = h.versions[0] if h.versions else h.legacy_version
            self.version_id, self.version = v, version_name(v)
            self._t13 = version_name(v) == "TLS 1.3"
            if h.ciphers:
                self.cipher_id = h.ciphers[0]
                self.cipher = CIPHER_NAMES.get(self.cipher_id, f"0x{self.cipher_id:04X}")
            if h.alpn:
                self.alpn_selected = h.alpn[0]
            if hrr:
                self.hello_retry = True
            else:
                self._sh_seen = True
                self._set_stage("server_hello")
                if self._t13:
                    d.encrypted = True  # the rest of the server flight is protected
                    d.hs_buf.clear()
        if h.problem:
            self._anomaly(d, h.problem, ts, frame)

    def _offer(self, v: int) -> None:
        if self.offered_version_id is None or _rank(v) > _rank(self.offered_version_id):
            self.offered_version_id, self.offered_version = v, version_name(v)

    # -- bookkeeping -------------------------------------------------------------------

    def _set_stage(self, stage: str) -> None:
        if _RANK[stage] > _RANK[self.stage]:
            self.stage = stage

    def _log(self, d: _Dir, name: str, ts: int, frame: int) -> None:
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(TlsMessage(frame, ts, d.from_client, name))

    def _add_alert(self, alert: TlsAlert) -> None:
        if len(self.alerts) < MAX_ALERTS:
            self.alerts.append(alert)

    def _anomaly(self, d: _Dir, message: str, ts: int, frame: int) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(TlsAnomaly(frame, ts, d.from_client, message))

    def _lose(self, d: _Dir, message: str, ts: int, frame: int) -> None:
        self._anomaly(d, f"lost sync: {message}", ts, frame)
        d.state = _LOST
        d.skip, d.want = _INF, 0
        c, s = self._c, self._s
        if self.is_tls is None and c is not None and s is not None and c.state == s.state == _LOST:
            self._not_tls()  # neither direction can show a record header any more

    def _not_tls(self) -> None:
        self.is_tls = False
        for d in (self._c, self._s):
            if d is None:
                continue
            d.skip, d.want = _INF, 0  # the tracker should stop feeding; if not, this is cheap
            d.hdr.clear()
            d.hs_buf.clear()
            d.small.clear()
