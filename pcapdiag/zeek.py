"""Zeek's ``conn_state`` and ``history`` for every connection, so results join with conn.log.

Written from Zeek's documented rules (``../shared/knowledge/zeek-conn-state.md``): one TCP
endpoint state per side, updated by each packet the side sends, mapped to ``conn_state``
when the connection is reported.

pcapdiag counts connections as tshark does, one per handshake, but Zeek's timers can split
one of them into several conn.log rows: an attempt still unanswered 5 s after the SYN is
logged (``S0``) and later packets start a new row; so do packets arriving more than 5 s
after a side reset, after both closed, or after one closed while the other never became
active; and after 5 minutes of silence. ``ZeekConn.rows`` reproduces those rows, so every Zeek
row can be joined with the pcapdiag connection it belongs to.
"""

from __future__ import annotations

# Endpoint states, numbered as in Zeek's init-bare.zeek.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
_INACTIVE_LIKE = (INACTIVE, PARTIAL)

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_LOG_LETTERS = {1, 10, 100, 1000, 10000, 100000, 1000000}
ATTEMPT_DELAY_NS = 5_000_000_000  # tcp_attempt_delay
CLOSE_DELAY_NS = 5_000_000_000  # tcp_close_delay / tcp_reset_delay / linger
INACTIVITY_NS = 300_000_000_000  # tcp_inactivity_timeout


class ZeekConn:
    """The Zeek rows of one pcapdiag connection; the current row is ``rows[-1]``.

    ``update`` takes the packet's side as pcapdiag sees it (client or server) and maps
    it to Zeek's originator/responder of the current row.
    """

    __slots__ = (
        "rows",
        "orig_is_client",
        "_start",
        "_last",
        "_client_port",
        "_server_port",
        "_cur",
    )

    def __init__(self, client_port: int, server_port: int) -> None:
        self.rows: list[tuple[int, ZeekState]] = []
        self.orig_is_client = True
        self._start = 0
        self._last = 0
        self._client_port = client_port
        self._server_port = server_port
        self._cur: ZeekState | None = None  # rows[-1][1]

    def update(
        self, from_client: bool, flags: int, seq: int, payload_len: int, window: int, ts: int
    ) -> bool:
        """Feed one packet; True when it started a new row.

        Runs for nearly every packet, so ``_split`` is inlined for the common case: every
        split rule but the unanswered attempt needs a silence longer than
        ``CLOSE_DELAY_NS`` (the shortest of the delays), so a packet arriving sooner never
        splits and the full rules run only after such a silence. On an established row,
        a repeated pure ACK (no change at all) and more data (bytes and the retransmission
        check only) are handled here, under the same conditions as the pure-ACK rule
        this method always had and ``ZeekState.update``'s data shortcut; everything
        else goes to ``ZeekState.update``."""
        z = self._cur
        new = False
        if z is None:
            new = True
        else:
            if z.resp == INACTIVE and (z.orig == SYN_SENT or z.orig == SYN_ACK_SENT):
                new = ts - self._start > ATTEMPT_DELAY_NS
            elif ts - self._last > CLOSE_DELAY_NS:
                new = self._split(ts)
        if new:
            self._new_row(from_client, flags, ts)
            z = self._cur
        self._last = ts
        is_orig = from_client == self.orig_is_client
        if (
            window
            and not flags & 0x07
            and z.orig == ESTABLISHED  # type: ignore[union-attr]
            and z.resp == ESTABLISHED  # type: ignore[union-attr]
        ):
            if not payload_len:
                if flags == _ACK and ("A" if is_orig else "a") in z._once:  # type: ignore[union-attr]
                    return new  # a steady-state pure ACK changes nothing
            elif ("D" if is_orig else "d") in z._once:  # type: ignore[union-attr]
                # Data on an established connection: ZeekState.update's first branch,
                # with _track_end's usual case (the segment ends past the highest end
                # seen: no retransmission) inline.
                z.bytes[0 if is_orig else 1] += payload_len  # type: ignore[union-attr]
                ends = z._max_end  # type: ignore[union-attr]
                top = ends[0 if is_orig else 1]
                end = (seq + payload_len) & 0xFFFFFFFF
                if top is not None and end != top and ((end - top) & 0xFFFFFFFF) < 0x80000000:
                    ends[0 if is_orig else 1] = end
                else:
                    z._track_end(is_orig, seq, payload_len)  # type: ignore[union-attr]
                return new
        z.update(is_orig, flags, seq, payload_len, window)  # type: ignore[union-attr]
        return new

    def _split(self, ts: int) -> bool:
        z = self.rows[-1][1]
        if z.resp == INACTIVE and z.orig in (SYN_SENT, SYN_ACK_SENT):
            return ts - self._start > ATTEMPT_DELAY_NS
        gap = ts - self._last
        o, r = z.orig, z.resp
        if RESET in (o, r) or (o == CLOSED and r == CLOSED):
            return gap > CLOSE_DELAY_NS
        if (o == CLOSED and r in _INACTIVE_LIKE) or (r == CLOSED and o in _INACTIVE_LIKE):
            return gap > CLOSE_DELAY_NS
        return gap > INACTIVITY_NS  # a half-closed or open connection lingers longer

    def _new_row(self, from_client: bool, flags: int, ts: int) -> None:
        """Zeek's orientation: a SYN's sender originates; otherwise a packet from a likely
        server port makes its receiver the originator (and marks the flip with ``^``)."""
        if flags & _SYN and not flags & _ACK:
            orig_is_sender, flipped = True, False
        else:
            sport = self._client_port if from_client else self._server_port
            dport = self._server_port if from_client else self._client_port
            from_server_port = is_server_port(sport, dport)
            orig_is_sender, flipped = not from_server_port, from_server_port
        self.orig_is_client = from_client if orig_is_sender else not from_client
        self._start = ts
        self._cur = ZeekState(flipped=flipped)
        self.rows.append((ts, self._cur))

    @property
    def first(self) -> ZeekState:
        return self.rows[0][1] if self.rows else ZeekState()


# Ports that identify a server when a capture starts mid-connection (besides < 1024).
SERVER_PORTS = frozenset(
    {
        1080, 1433, 1521, 2049, 2375, 2376, 2379, 3000, 3128, 3306, 3389, 4443, 5000,
        5432, 5601, 5672, 5900, 6379, 6443, 6667, 8000, 8008, 8080, 8081, 8088, 8443,
        8888, 9000, 9042, 9090, 9092, 9200, 9300, 11211, 15672, 27017,
    }
)  # fmt: skip


def is_server_port(port: int, other: int) -> bool:
    """Is ``port`` the server's side, compared with the peer's ``other``?"""
    p_srv = port < 1024 or port in SERVER_PORTS
    o_srv = other < 1024 or other in SERVER_PORTS
    if p_srv != o_srv:
        return p_srv
    return port < other


class ZeekState:
    """Both endpoints' states and the history string of one connection.

    ``update`` is called for every packet; its cheap exit keeps steady-state ACKs fast.
    """

    __slots__ = (
        "orig",
        "resp",
        "history",
        "_once",
        "_last_seq",
        "_counts",
        "_max_end",
        "_prev_peer",
        "bytes",
    )

    def __init__(self, flipped: bool = False) -> None:
        self.orig = INACTIVE
        self.resp = INACTIVE
        self.history: list[str] = ["^"] if flipped else []
        self._once = ""  # once-per-direction letters already recorded
        self._last_seq: dict[str, int] | None = None  # allocated on first use
        self._counts: dict[str, int] | None = None
        self._max_end: list[int | None] = [None, None]  # orig, resp
        self._prev_peer = [INACTIVE, INACTIVE]
        self.bytes = [0, 0]  # payload bytes sent by originator, responder

    # -- history ---------------------------------------------------------------------------
    def _letter(self, ch: str, is_orig: bool) -> None:
        self.history.append(ch if is_orig else ch.lower())

    def _once_letter(self, ch: str, is_orig: bool) -> None:
        key = ch if is_orig else ch.lower()
        if key not in self._once:
            self._once += key
            self.history.append(key)

    def _seq_letter(self, ch: str, is_orig: bool, seq: int) -> None:
        key = ch if is_orig else ch.lower()
        last = self._last_seq
        if last is None:
            last = self._last_seq = {}
        if last.get(key) != seq:
            last[key] = seq
            self.history.append(key)

    def _log_letter(self, ch: str, is_orig: bool) -> None:
        key = ch if is_orig else ch.lower()
        counts = self._counts
        if counts is None:
            counts = self._counts = {}
        n = counts.get(key, 0) + 1
        counts[key] = n
        if n in _LOG_LETTERS:
            self.history.append(key)

    def _track_end(self, is_orig: bool, seq: int, payload_len: int) -> None:
        """Record ``T`` when a segment ends at or before the highest end seen already."""
        side = 0 if is_orig else 1
        end = (seq + payload_len) & 0xFFFFFFFF
        top = self._max_end[side]
        if top is None or ((end - top) & 0xFFFFFFFF) < 0x80000000:
            if top is not None and end == top:
                self._log_letter("T", is_orig)
            self._max_end[side] = end
        else:
            self._log_letter("T", is_orig)

    # -- packets ---------------------------------------------------------------------------
    def update(self, is_orig: bool, flags: int, seq: int, payload_len: int, window: int) -> None:
        if (
            payload_len
            and not flags & 0x07
            and window
            and self.orig == ESTABLISHED
            and self.resp == ESTABLISHED
            and ("D" if is_orig else "d") in self._once
        ):
            # Data on an established connection: only bytes and retransmissions change.
            self.bytes[0 if is_orig else 1] += payload_len
            self._track_end(is_orig, seq, payload_len)
            return
        syn, fin, rst, ack = flags & _SYN, flags & _FIN, flags & _RST, flags & _ACK
        if payload_len:
            self.bytes[0 if is_orig else 1] += payload_len
        # History letters: one classification per packet. The common letters are
        # _once_letter / _seq_letter inlined (same keys, same checks).
        if not flags & 0x07:
            if payload_len or ack:
                key = ("D" if is_orig else "d") if payload_len else ("A" if is_orig else "a")
                if key not in self._once:
                    self._once += key
                    self.history.append(key)
        elif (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0) > 1:
            self._once_letter("I" if (fin and rst) else "Q", is_orig)
        else:
            if syn:
                key = ("H" if is_orig else "h") if ack else ("S" if is_orig else "s")
                at = seq
            elif fin:
                key = "F" if is_orig else "f"
                at = (seq + payload_len) & 0xFFFFFFFF
            else:
                key = "R" if is_orig else "r"
                at = seq
            last = self._last_seq
            if last is None:
                last = self._last_seq = {}
            if last.get(key) != at:
                last[key] = at
                self.history.append(key)
        if payload_len and not syn:
            self._track_end(is_orig, seq, payload_len)
        if window == 0 and not rst and not syn:
            self._log_letter("W", is_orig)

        # Endpoint state machine.
        me = self.orig if is_orig else self.resp
        peer = self.resp if is_orig else self.orig
        new_me, new_peer = me, peer
        if me == INACTIVE:
            if syn:
                if ack:
                    if is_orig:
                        new_me = SYN_ACK_SENT
                    else:
                        new_me = ESTABLISHED
                        if peer == SYN_SENT:
                            new_peer = ESTABLISHED
                else:
                    new_me = SYN_SENT
                if fin:
                    new_me = CLOSED
                if rst:
                    new_me = RESET
            elif rst:
                new_me = RESET
            elif fin:
                new_me = CLOSED
            elif not is_orig and peer == SYN_SENT and payload_len == 0:
                pass  # some stacks ACK a SYN before answering it
            elif ack and peer == ESTABLISHED:
                new_me = ESTABLISHED
            else:
                new_me = PARTIAL
        elif me in (SYN_SENT, SYN_ACK_SENT):
            if rst:
                new_me = RESET
            elif fin:
                new_me = CLOSED
            elif syn and ack and not is_orig and peer == SYN_SENT:
                new_me, new_peer = ESTABLISHED, ESTABLISHED
        elif me in (ESTABLISHED, PARTIAL):
            if rst:
                new_me = RESET
            elif fin:
                new_me = CLOSED
                prev = self._prev_peer[1 if is_orig else 0]
                if peer == RESET and prev == CLOSED:
                    new_peer = CLOSED
            elif syn and not ack and me == PARTIAL and peer == INACTIVE:
                new_me = SYN_SENT
        elif me == CLOSED and rst and peer != CLOSED:
            new_me = RESET
        if new_me == me and new_peer == peer:
            return  # the writes below would change nothing
        if is_orig:
            if new_me != self.orig:
                self._prev_peer[0] = self.orig
            if new_peer != self.resp:
                self._prev_peer[1] = self.resp
            self.orig, self.resp = new_me, new_peer
        else:
            if new_me != self.resp:
                self._prev_peer[1] = self.resp
            if new_peer != self.orig:
                self._prev_peer[0] = self.orig
            self.resp, self.orig = new_me, new_peer

    # -- results ---------------------------------------------------------------------------
    def history_str(self) -> str:
        return "".join(self.history)

    def conn_state(self) -> str:
        o, r = self.orig, self.resp
        orig_bytes, resp_bytes = self.bytes
        if r == RESET:
            if o in (SYN_SENT, SYN_ACK_SENT) or (
                o == RESET and orig_bytes == 0 and resp_bytes == 0
            ):
                return "REJ"
            if o in _INACTIVE_LIKE:
                return "RSTRH"
            return "RSTR"
        if o == RESET:
            if r in _INACTIVE_LIKE:
                return "RSTOS0" if _rstos0(self.history_str()) else "OTH"
            return "RSTO"
        if o == CLOSED and r == CLOSED:
            return "SF"
        if o == CLOSED:
            return "SH" if r in _INACTIVE_LIKE else "S2"
        if r == CLOSED:
            return "SHR" if o in _INACTIVE_LIKE else "S3"
        if o == SYN_SENT and r == INACTIVE:
            return "S0"
        if o == ESTABLISHED and r == ESTABLISHED:
            return "S1"
        return "OTH"


def _rstos0(history: str) -> bool:
    """Zeek's ``^\\^?S[^HAFGIQ]*R``: originator SYN, then its RST, nothing else of its own."""
    h = history[1:] if history.startswith("^") else history
    if not h.startswith("S"):
        return False
    for ch in h[1:]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False
