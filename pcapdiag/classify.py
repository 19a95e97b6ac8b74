"""How a connection ended: an explicit state machine, as in h11's ``_state.py``.

The tracker turns packets into a short stream of *significant events* (a SYN, the first FIN
of a side, a request starting, a response ending, a fatal TLS alert, an idle gap, the end of
the capture...). Each event moves the connection along ``TRANSITIONS``; a transition either
lands in another state or in an *outcome*, which is final. End of capture is an event
like any other (``EOC``), so every connection gets exactly one outcome.

States (what the client is waiting for, as seen on the wire):

    CONNECTING          SYN sent, nothing back yet
    TLS_HANDSHAKE       TCP up, TLS handshake under way
    IDLE                nothing outstanding, recent activity
    KEEPALIVE_IDLE      nothing outstanding for longer than the idle threshold
    AWAITING            a request is outstanding, no response bytes since
    RECEIVING           a response started and is not complete
    CLOSE_ANNOUNCED     the last response said ``Connection: close``
    SERVER_CLOSED       the server sent FIN right after activity (may still race a request)
    SERVER_IDLE_CLOSED  the server sent FIN on an idle keep-alive connection
    CLIENT_CLOSED       the client sent FIN with nothing outstanding

Observers never raise on odd traffic: an event with no row in the table leaves the state
as it is and is recorded as an anomaly by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    CONNECTING = "connecting"
    TLS_HANDSHAKE = "tls_handshake"
    IDLE = "idle"
    KEEPALIVE_IDLE = "keepalive_idle"
    AWAITING = "awaiting"
    RECEIVING = "receiving"
    CLOSE_ANNOUNCED = "close_announced"
    SERVER_CLOSED = "server_closed"
    SERVER_IDLE_CLOSED = "server_idle_closed"
    CLIENT_CLOSED = "client_closed"


class Side(StrEnum):
    CLIENT = "client"
    SERVER = "server"
    NETWORK = "network"
    NONE = "none"


class Ev(StrEnum):
    SYN = "syn"
    SYNACK = "synack"
    FIN = "fin"
    RST = "rst"
    REQUEST = "request"  # a request (or a client data turn) starts
    RESPONSE = "response"  # a final response (or a server data turn) starts
    RESPONSE_END = "response_end"
    RESPONSE_END_CLOSE = "response_end_close"  # ...and it announced Connection: close
    TLS_HELLO = "tls_hello"
    TLS_DONE = "tls_done"
    ALERT = "alert"  # fatal TLS alert readable on the wire
    PROXY_REFUSED = "proxy_refused"  # an HTTP proxy answered CONNECT with a non-2xx status
    ICMP = "icmp"  # ICMP destination unreachable quoting this connection
    IDLE_GAP = "idle_gap"
    GOAWAY = "goaway"  # HTTP/2 GOAWAY (recorded; the TCP close decides the outcome)
    RST_STREAM = "rst_stream"  # HTTP/2 stream reset (recorded, as GOAWAY)
    EOC = "eoc"  # end of capture


# The closed vocabulary of outcomes, problems first.
OUTCOMES: tuple[str, ...] = (
    "refused",
    "syn_timeout",
    "icmp_unreachable",
    "tls_alert",
    "tls_handshake_aborted",
    "proxy_refused",
    "server_close_after_request",
    "truncated_response",
    "server_reset",
    "network_reset",
    "client_reset",
    "client_timeout",
    "server_idle_close",
    "server_close",
    "client_close",
    "open",
)
PROBLEMS: frozenset[str] = frozenset(OUTCOMES[: OUTCOMES.index("server_idle_close")])


class Outcome(str):
    """A terminal entry in the table (a plain string from ``OUTCOMES``)."""


C, S, N, X = Side.CLIENT, Side.SERVER, Side.NETWORK, Side.NONE
St = State

# (state, side, event) -> next state | outcome.  One row per transition.
TRANSITIONS: dict[tuple[State, Side, Ev], State | Outcome] = {
    (St.CONNECTING, S, Ev.SYNACK): St.IDLE,
    (St.CONNECTING, S, Ev.RST): Outcome("refused"),
    (St.CONNECTING, N, Ev.ICMP): Outcome("icmp_unreachable"),
    (St.CONNECTING, S, Ev.ICMP): Outcome("icmp_unreachable"),
    (St.CONNECTING, C, Ev.RST): Outcome("syn_timeout"),
    (St.CONNECTING, C, Ev.REQUEST): St.AWAITING,  # one-sided capture: SYN-ACK not seen
    (St.CONNECTING, C, Ev.TLS_HELLO): St.TLS_HANDSHAKE,
    (St.CONNECTING, C, Ev.FIN): St.CLIENT_CLOSED,
    (St.CONNECTING, X, Ev.EOC): Outcome("syn_timeout"),
    (St.TLS_HANDSHAKE, X, Ev.TLS_DONE): St.IDLE,
    (St.TLS_HANDSHAKE, C, Ev.FIN): Outcome("tls_handshake_aborted"),
    (St.TLS_HANDSHAKE, S, Ev.FIN): Outcome("tls_handshake_aborted"),
    (St.TLS_HANDSHAKE, C, Ev.RST): Outcome("tls_handshake_aborted"),
    (St.TLS_HANDSHAKE, S, Ev.RST): Outcome("tls_handshake_aborted"),
    (St.TLS_HANDSHAKE, X, Ev.EOC): Outcome("open"),
    (St.IDLE, C, Ev.TLS_HELLO): St.TLS_HANDSHAKE,
    (St.IDLE, C, Ev.REQUEST): St.AWAITING,
    (St.IDLE, S, Ev.RESPONSE): St.RECEIVING,
    (St.IDLE, X, Ev.IDLE_GAP): St.KEEPALIVE_IDLE,
    (St.IDLE, S, Ev.FIN): St.SERVER_CLOSED,
    (St.IDLE, C, Ev.FIN): St.CLIENT_CLOSED,
    (St.IDLE, S, Ev.RST): Outcome("server_reset"),
    (St.IDLE, C, Ev.RST): Outcome("client_reset"),
    (St.IDLE, X, Ev.EOC): Outcome("open"),
    (St.KEEPALIVE_IDLE, C, Ev.REQUEST): St.AWAITING,
    (St.KEEPALIVE_IDLE, S, Ev.RESPONSE): St.RECEIVING,
    (St.KEEPALIVE_IDLE, S, Ev.FIN): St.SERVER_IDLE_CLOSED,
    (St.KEEPALIVE_IDLE, C, Ev.FIN): St.CLIENT_CLOSED,
    (St.KEEPALIVE_IDLE, S, Ev.RST): Outcome("server_reset"),
    (St.KEEPALIVE_IDLE, C, Ev.RST): Outcome("client_reset"),
    (St.KEEPALIVE_IDLE, X, Ev.EOC): Outcome("open"),
    (St.AWAITING, C, Ev.REQUEST): St.AWAITING,  # pipelined
    (St.AWAITING, S, Ev.RESPONSE): St.RECEIVING,
    (St.AWAITING, S, Ev.PROXY_REFUSED): Outcome("proxy_refused"),
    (St.AWAITING, S, Ev.FIN): Outcome("server_close_after_request"),
    (St.AWAITING, S, Ev.RST): Outcome("server_reset"),
    (St.AWAITING, C, Ev.FIN): Outcome("client_timeout"),
    (St.AWAITING, C, Ev.RST): Outcome("client_timeout"),
    (St.AWAITING, X, Ev.EOC): Outcome("open"),
    (St.RECEIVING, C, Ev.REQUEST): St.RECEIVING,  # pipelined
    (St.RECEIVING, S, Ev.RESPONSE): St.RECEIVING,
    (St.RECEIVING, S, Ev.RESPONSE_END): St.IDLE,
    (St.RECEIVING, S, Ev.RESPONSE_END_CLOSE): St.CLOSE_ANNOUNCED,
    (St.RECEIVING, S, Ev.FIN): Outcome("truncated_response"),
    (St.RECEIVING, S, Ev.RST): Outcome("server_reset"),
    (St.RECEIVING, C, Ev.FIN): Outcome("client_timeout"),
    (St.RECEIVING, C, Ev.RST): Outcome("client_reset"),
    (St.RECEIVING, X, Ev.EOC): Outcome("open"),
    (St.CLOSE_ANNOUNCED, C, Ev.REQUEST): St.AWAITING,
    (St.CLOSE_ANNOUNCED, S, Ev.FIN): St.SERVER_CLOSED,
    (St.CLOSE_ANNOUNCED, C, Ev.FIN): St.CLIENT_CLOSED,
    (St.CLOSE_ANNOUNCED, S, Ev.RST): Outcome("server_reset"),
    (St.CLOSE_ANNOUNCED, C, Ev.RST): Outcome("client_close"),
    (St.CLOSE_ANNOUNCED, X, Ev.EOC): Outcome("open"),
    (St.SERVER_CLOSED, C, Ev.REQUEST): Outcome("server_close_after_request"),
    (St.SERVER_CLOSED, C, Ev.FIN): Outcome("server_close"),
    (St.SERVER_CLOSED, C, Ev.RST): Outcome("server_close"),
    (St.SERVER_CLOSED, S, Ev.RST): Outcome("server_close"),
    (St.SERVER_CLOSED, X, Ev.EOC): Outcome("server_close"),
    (St.SERVER_IDLE_CLOSED, C, Ev.REQUEST): Outcome("server_close_after_request"),
    (St.SERVER_IDLE_CLOSED, C, Ev.FIN): Outcome("server_idle_close"),
    (St.SERVER_IDLE_CLOSED, C, Ev.RST): Outcome("server_idle_close"),
    (St.SERVER_IDLE_CLOSED, S, Ev.RST): Outcome("server_idle_close"),
    (St.SERVER_IDLE_CLOSED, X, Ev.EOC): Outcome("server_idle_close"),
    (St.CLIENT_CLOSED, S, Ev.FIN): Outcome("client_close"),
    (St.CLIENT_CLOSED, S, Ev.RST): Outcome("client_close"),
    (St.CLIENT_CLOSED, C, Ev.RST): Outcome("client_close"),
    (St.CLIENT_CLOSED, X, Ev.EOC): Outcome("client_close"),
}
# A fatal alert in the clear ends the connection from any state.
for _st in State:
    TRANSITIONS[(_st, C, Ev.ALERT)] = Outcome("tls_alert")
    TRANSITIONS[(_st, S, Ev.ALERT)] = Outcome("tls_alert")

# An RST that a middlebox forged (its TTL is not the server's: see connections.py):
for _st in (St.TLS_HANDSHAKE, St.IDLE, St.KEEPALIVE_IDLE, St.AWAITING, St.RECEIVING,
            St.CLOSE_ANNOUNCED):  # fmt: skip
    TRANSITIONS[(_st, N, Ev.RST)] = Outcome("network_reset")
TRANSITIONS[(St.CONNECTING, N, Ev.RST)] = Outcome("refused")
TRANSITIONS[(St.SERVER_CLOSED, N, Ev.RST)] = Outcome("server_close")
TRANSITIONS[(St.SERVER_IDLE_CLOSED, N, Ev.RST)] = Outcome("server_idle_close")
TRANSITIONS[(St.CLIENT_CLOSED, N, Ev.RST)] = Outcome("client_close")

# ...except once a side has closed: an alert then answers that close (servers answer a
# client's ragged TLS shutdown with decode_error), it does not end the connection.
TRANSITIONS[(St.CLIENT_CLOSED, S, Ev.ALERT)] = Outcome("client_close")
TRANSITIONS[(St.SERVER_CLOSED, C, Ev.ALERT)] = Outcome("server_close")
TRANSITIONS[(St.SERVER_IDLE_CLOSED, C, Ev.ALERT)] = Outcome("server_idle_close")

# States entered by a closing packet: that packet is who closed and when, even if the
# outcome is only settled later (by the client's answer or the end of the capture).
_CLOSING_STATES = frozenset({St.SERVER_CLOSED, St.SERVER_IDLE_CLOSED, St.CLIENT_CLOSED})


# Events that never move the machine: kept in the connection's event list for people.
_RECORDED_ONLY = frozenset({Ev.IDLE_GAP, Ev.SYN, Ev.TLS_HELLO, Ev.GOAWAY, Ev.RST_STREAM})

# Members bound once: ``Ev.ALERT`` is a class attribute lookup through EnumType, about
# 0.5 µs each; ``Machine.feed`` runs for every significant event.
_EV_ALERT, _EV_EOC = Ev.ALERT, Ev.EOC
_TRANSITIONS_GET = TRANSITIONS.get


@dataclass(slots=True)
class Event:
    """A significant event: the machine's input and a row of ``Analysis.events``."""

    side: Side
    kind: Ev
    ts_ns: int
    frame: int | None
    detail: str = ""


class Machine:
    """One connection's classifier. ``feed`` never raises."""

    __slots__ = ("state", "outcome", "decisive", "pending_close", "prior_state", "anomalies")

    def __init__(self, state: State = State.CONNECTING) -> None:
        self.state = state
        self.outcome: str | None = None
        self.decisive: Event | None = None  # the event that closed the connection
        self.pending_close: Event | None = None  # the FIN that put us in a closing state
        self.prior_state: State | None = None  # state just before the outcome
        self.anomalies: list[str] | None = None  # events with no row in the table

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def feed(self, ev: Event) -> None:
        if self.outcome is not None:
            return
        target = _TRANSITIONS_GET((self.state, ev.side, ev.kind))
        if target is None:
            if ev.kind not in _RECORDED_ONLY:
                if self.anomalies is None:
                    self.anomalies = []
                if len(self.anomalies) < 8:
                    self.anomalies.append(
                        f"{ev.side.value} {ev.kind.value} in state {self.state.value}"
                    )
            return
        if target.__class__ is Outcome:  # nothing subclasses Outcome
            self.prior_state = self.state
            self.outcome = str(target)
            if ev.kind is _EV_ALERT and target == "tls_alert":
                self.decisive = ev
            elif self.state in _CLOSING_STATES:
                self.decisive = self.pending_close  # the FIN; a racing request doesn't move it
            elif ev.kind is _EV_EOC:
                self.decisive = None
            else:
                self.decisive = ev
            return
        if target in _CLOSING_STATES and target is not self.state:
            self.pending_close = ev
        self.state = target
