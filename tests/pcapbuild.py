"""Build small captures in code, for edge cases and hostile input only.

Real behaviour is proven with the recorded samples and the peer corpora; these packets
exist to reach corners those cannot (crafted strings, exact flag sequences).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_packet(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    flags: int,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    ttl: int = 64,
    window: int = 65535,
) -> bytes:
    """An Ethernet frame carrying IPv4 or IPv6 + TCP."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    tcp = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            5 << 4,
            flags,
            window,
            0,
            0,
        )
        + payload
    )
    if s.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, ttl, 6, 0, s.packed, d.packed
        )
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + tcp
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, ttl, s.packed, d.packed)
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x86\xdd" + ip6 + tcp


@dataclass
class Conversation:
    """A TCP conversation written packet by packet, with sequence numbers kept right."""

    client: str = "10.0.0.1"
    cport: int = 40000
    server: str = "10.0.0.2"
    sport: int = 80
    t: float = 1_700_000_000.0
    cseq: int = 1000
    sseq: int = 5000
    packets: list[tuple[float, bytes]] = field(default_factory=list)

    def _add(self, from_client: bool, flags: int, payload: bytes = b"", dt: float = 0.001) -> None:
        self.t += dt
        if from_client:
            pkt = tcp_packet(
                self.client,
                self.cport,
                self.server,
                self.sport,
                flags,
                self.cseq,
                self.sseq,
                payload,
            )
            self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        else:
            pkt = tcp_packet(
                self.server,
                self.sport,
                self.client,
                self.cport,
                flags,
                self.sseq,
                self.cseq,
                payload,
            )
            self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.packets.append((self.t, pkt))

    def handshake(self) -> Conversation:
        self._add(True, SYN)
        self._add(False, SYN | ACK)
        self._add(True, ACK)
        return self

    def client_sends(self, payload: bytes, dt: float = 0.001) -> Conversation:
        self._add(True, PSH | ACK, payload, dt)
        return self

    def server_sends(self, payload: bytes, dt: float = 0.001) -> Conversation:
        self._add(False, PSH | ACK, payload, dt)
        return self

    def client_fin(self, dt: float = 0.001) -> Conversation:
        self._add(True, FIN | ACK, dt=dt)
        return self

    def server_fin(self, dt: float = 0.001) -> Conversation:
        self._add(False, FIN | ACK, dt=dt)
        return self

    def server_rst(self, dt: float = 0.001) -> Conversation:
        self._add(False, RST, dt=dt)
        return self

    def client_rst(self, dt: float = 0.001, ack: bool = True) -> Conversation:
        self._add(True, RST | ACK if ack else RST, dt=dt)
        return self


def write_pcap(path: Path, packets: list[tuple[float, bytes]], linktype: int = 1) -> Path:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for ts, data in packets:
            sec = int(ts)
            usec = int(round((ts - sec) * 1e6))
            fh.write(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    return path


def tls_client_hello(sni: str | bytes, version: int = 0x0303) -> bytes:
    """A TLS handshake record carrying a ClientHello with a server_name (SNI) extension.

    ``sni`` is written byte for byte (a ``str`` as UTF-8), so a test can put anything in
    it, including bytes no real client would send.
    """
    name = sni.encode("utf-8", "surrogatepass") if isinstance(sni, str) else bytes(sni)
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    server_name = struct.pack("!H", len(entry)) + entry
    supported = b"\x02" + struct.pack("!H", version)  # supported_versions: one version
    extensions = (
        struct.pack("!HH", 0, len(server_name))
        + server_name
        + struct.pack("!HH", 43, len(supported))
        + supported
    )
    ciphers = struct.pack("!HHH", 4, 0x1301, 0xC02F)
    body = (
        struct.pack("!H", 0x0303)
        + bytes(range(32))  # random
        + b"\x00"  # no session id
        + ciphers
        + b"\x01\x00"  # compression: null
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def tls_alert(description: int = 40, level: int = 2) -> bytes:
    """A TLS alert record in the clear (default: fatal handshake_failure)."""
    return b"\x15\x03\x03\x00\x02" + bytes([level, description])
