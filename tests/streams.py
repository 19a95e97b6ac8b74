"""Capture -> per-connection byte streams, for the observer tests (test_http_parser.py,
test_tls_parser.py); import it as ``from streams import tcp_streams, replay``.

It mirrors the connection tracker's contract: each TCP stream's two directions are
extracted with dpkt in stream order (segments sorted by sequence number, duplicates and
overlaps dropped, holes and snaplen-cut tails turned into gaps, frame numbers kept) and
replayed into an observer the way the tracker does it (both directions interleaved by
the time each byte became deliverable in order).
"""

from __future__ import annotations

import gzip
import heapq
import io
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

__all__ = ["Segment", "Stream", "read_segments", "replay", "tcp_streams"]


@dataclass
class Segment:
    frame: int
    ts_ns: int
    src: tuple[str, int]
    seq: int
    flags: int
    payload: bytes
    wire_len: int  # payload length according to the IP header (>= len(payload))


@dataclass
class Stream:
    """One TCP connection: ``steps`` are ('data'|'gap'|'eof', from_client, arg, ts, frame)."""

    index: int
    client: tuple[str, int]
    server: tuple[str, int]
    segments: list[Segment] = field(default_factory=list)
    steps: list[tuple[str, bool, object, int, int]] = field(default_factory=list)


def _open(path: Path):
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # by magic number, not by file name
        raw = gzip.decompress(raw)
    f = io.BytesIO(raw)
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        return dpkt.pcapng.Reader(f)
    return dpkt.pcap.Reader(f)


def _ip_layer(linktype: int, buf: bytes):
    if linktype == 1:
        ip = dpkt.ethernet.Ethernet(buf).data
    elif linktype == 0:
        ip = dpkt.loopback.Loopback(buf).data
    elif linktype == 113:
        ip = dpkt.sll.SLL(buf).data
    elif linktype in (101, 12, 14, 228, 229):
        ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    else:
        return None
    return ip if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) else None


def _addr(ip) -> tuple[str, str]:
    if isinstance(ip, dpkt.ip.IP):
        return socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst)
    return socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)


def read_segments(path: Path) -> Iterator[tuple[Segment, tuple[str, int]]]:
    """(segment, destination) for every TCP segment, frame numbers 1-based."""
    reader = _open(path)
    linktype = reader.datalink()
    for frame, (ts, buf) in enumerate(reader, start=1):
        try:
            ip = _ip_layer(linktype, buf)
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            hdr = tcp.off * 4
            if isinstance(ip, dpkt.ip.IP):
                wire = ip.len - ip.hl * 4 - hdr
            elif ip.nxt == dpkt.ip.IP_PROTO_TCP and not ip.extension_hdrs:
                wire = ip.plen - hdr
            else:
                wire = len(tcp.data)
        except (dpkt.UnpackError, IndexError, struct.error, AttributeError):
            continue
        src, dst = _addr(ip)
        payload = bytes(tcp.data)
        seg = Segment(frame, round(ts * 1e9), (src, tcp.sport), tcp.seq, tcp.flags, payload, 0)
        seg.wire_len = max(wire, len(payload))
        yield seg, (dst, tcp.dport)


def tcp_streams(path: Path) -> list[Stream]:
    """Every TCP connection of a capture, numbered in order of first packet (like
    tshark's tcp.stream when ports are not reused)."""
    streams: dict[frozenset, Stream] = {}
    for seg, dst in read_segments(path):
        key = frozenset((seg.src, dst))
        s = streams.get(key)
        if s is None:
            s = streams[key] = Stream(len(streams), seg.src, dst)
        s.segments.append(seg)
    for s in streams.values():
        _orient(s)
        _build_steps(s)
    return list(streams.values())


def _orient(s: Stream) -> None:
    syn = next((g for g in s.segments if g.flags & 0x12 == 0x02), None)
    synack = next((g for g in s.segments if g.flags & 0x12 == 0x12), None)
    first = s.segments[0]
    if syn is not None:
        client = syn.src
    elif synack is not None:
        client = s.server if synack.src == s.client else s.client
    else:
        client = first.src
    if client != s.client:
        s.client, s.server = s.server, s.client


def _direction(segs: list[Segment], from_client: bool):
    """In-order delivery of one direction: (ts, frame, kind, from_client, arg)."""
    out: list[tuple[int, int, str, bool, object]] = []
    syn = next((g for g in segs if g.flags & 0x02), None)
    data = [g for g in segs if g.wire_len > 0]
    fins = [g for g in segs if g.flags & 0x01]
    if syn is not None:
        base = (syn.seq + 1) & 0xFFFFFFFF
    elif data:
        base = data[0].seq
    elif fins:
        base = fins[0].seq
    else:
        return out

    def rel(seq: int) -> int:
        return ((seq - base + 2**31) % 2**32) - 2**31

    if syn is None and data:  # mid-stream: start at the lowest sequence number seen
        low = min(rel(g.seq) for g in data)
        base = (base + low) & 0xFFFFFFFF
    nxt = 0
    clock = 0
    for g in sorted(data, key=lambda g: (rel(g.seq), g.frame)):
        start = rel(g.seq)
        cap_end = start + len(g.payload)
        clock = max(clock, g.ts_ns)
        if start + g.wire_len <= nxt:
            continue
        if start > nxt:
            out.append((clock, g.frame, "gap", from_client, start - nxt))
            nxt = start
        if cap_end > nxt:
            out.append((clock, g.frame, "data", from_client, g.payload[nxt - start :]))
            nxt = cap_end
        if start + g.wire_len > nxt:  # snaplen cut: the tail was on the wire, not here
            out.append((clock, g.frame, "gap", from_client, start + g.wire_len - nxt))
            nxt = start + g.wire_len
    end = max((rel(g.seq) + g.wire_len for g in data), default=0)
    if fins:
        fin = fins[0]
        end = max(end, rel(fin.seq))
    if end > nxt:
        last = fins[0] if fins else max(data, key=lambda g: g.frame)
        clock = max(clock, last.ts_ns)
        out.append((clock, last.frame, "gap", from_client, end - nxt))
    if fins:
        clock = max(clock, fins[0].ts_ns)
        out.append((clock, fins[0].frame, "eof", from_client, None))
    return out


def _build_steps(s: Stream) -> None:
    c = [g for g in s.segments if g.src == s.client]
    v = [g for g in s.segments if g.src == s.server]
    # heapq.merge keeps each direction's own (stream) order, whatever the frame numbers
    merged = heapq.merge(_direction(c, True), _direction(v, False), key=lambda e: (e[0], e[1]))
    s.steps = [(kind, fc, arg, ts, frame) for ts, frame, kind, fc, arg in merged]


def replay(observer, stream: Stream, split: int | None = None) -> None:
    """Feed a stream's steps; ``split`` cuts every data step into pieces of that size."""
    for kind, fc, arg, ts, frame in stream.steps:
        if kind == "data":
            if split:
                for i in range(0, len(arg), split):
                    observer.feed(fc, arg[i : i + split], ts, frame)
            else:
                observer.feed(fc, arg, ts, frame)
        elif kind == "gap":
            observer.gap(fc, arg, ts, frame)
        else:
            observer.eof(fc, ts, frame)
