"""Decode link, IP and TCP headers column-wise.

INTERFACE STUB — to be implemented. The dataclasses below are the contract with
``pcapdiag.connections``; keep field names and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pcapdiag.reader import RecordBatch

# TCP flag bits as on the wire (low byte of the flags field).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


@dataclass(slots=True)
class TcpPackets:
    """One row per TCP segment, in capture order. Addresses are 128-bit, split into two
    uint64 halves; IPv4 addresses are IPv4-mapped (::ffff:a.b.c.d), ``ipver`` tells."""

    data: np.ndarray  # uint8, same buffer as the RecordBatch
    frame: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    ipver: np.ndarray  # uint8, 4 or 6
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16
    seq: np.ndarray  # uint32
    ack: np.ndarray  # uint32
    flags: np.ndarray  # uint8 (FIN..CWR)
    window: np.ndarray  # uint16 (raw, unscaled)
    payload_len: np.ndarray  # int32, from the IP length (snaplen-cut frames keep it)
    payload_off: np.ndarray  # int64, start of the TCP payload in ``data``
    payload_cap: np.ndarray  # int32, payload bytes actually captured (<= payload_len)
    ttl: np.ndarray  # uint8, IPv4 TTL or IPv6 hop limit
    ip_id: np.ndarray  # uint16, IPv4 identification (0 for IPv6)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(slots=True)
class IcmpError:
    """An ICMP/ICMPv6 destination-unreachable (or other error) that quotes a TCP header."""

    frame: int
    ts_ns: int
    ipver: int  # 4 or 6 (of the ICMP packet)
    sender: str  # address that sent the ICMP error
    type: int
    code: int
    # the quoted (original) TCP segment: it was sent src -> dst
    src: str
    dst: str
    sport: int
    dport: int
    seq: int


@dataclass
class DecodedBatch:
    tcp: TcpPackets
    icmp: list[IcmpError] = field(default_factory=list)
    non_tcp: int = 0  # IP packets of other protocols (UDP, ICMP echo, ...)
    non_ip: int = 0  # ARP, LLDP, ...
    unknown_link: dict[int, int] = field(default_factory=dict)  # LINKTYPE -> frames skipped
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (frame, what), bounded


def decode_batch(batch: RecordBatch) -> DecodedBatch:
    raise NotImplementedError


def addr_str(ipver: int, hi: int, lo: int) -> str:
    """Text form of an address from its two halves (IPv4 dotted, IPv6 compressed)."""
    raise NotImplementedError
