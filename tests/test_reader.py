"""Tests for pcapdiag.reader: real captures first, then crafted damage, then properties."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcapdiag import reader
from pcapdiag.errors import CaptureError, CorruptCaptureError, NotACaptureError, UsageError
from pcapdiag.reader import CaptureInfo, RecordBatch, open_capture

# --------------------------------------------------------------------------- helpers

US, NS, MOD = 0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34
T0 = 1_700_000_000  # an epoch second


def pcap(
    records: list[tuple[int, int, bytes] | tuple[int, int, bytes, int]],
    *,
    order: str = "<",
    magic: int = US,
    snaplen: int = 262144,
    network: int = 1,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """pcap bytes; each record is (sec, frac, data[, wirelen])."""
    out = [struct.pack(order + "IHHiIII", magic, *version, 0, 0, snaplen, network)]
    for r in records:
        sec, frac, data = r[0], r[1], r[2]
        wire = r[3] if len(r) > 3 else len(data)  # type: ignore[misc]
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wire))
        if magic == MOD:
            out.append(struct.pack(order + "IHBB", 1, 0x0800, 0, 0))
        out.append(data)
    return b"".join(out)


def block(btype: int, body: bytes, order: str = "<", trailer: int | None = None) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", trailer or n)


def shb(order: str = "<", major: int = 1) -> bytes:
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1), order)


def opt(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def idb(
    linktype: int = 1,
    snaplen: int = 0,
    order: str = "<",
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += opt(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += opt(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += opt(0, b"", order)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(
    data: bytes, iface: int = 0, units: int = T0 * 10**6, order: str = "<", wire: int | None = None
) -> bytes:
    hdr = struct.pack(
        order + "IIIII",
        iface,
        units >> 32,
        units & 0xFFFFFFFF,
        len(data),
        len(data) if wire is None else wire,
    )
    return block(6, hdr + data, order)


def spb(data: bytes, wire: int | None = None, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", len(data) if wire is None else wire) + data, order)


def old_pb(data: bytes, iface: int = 0, units: int = T0 * 10**6, order: str = "<") -> bytes:
    hdr = struct.pack(
        order + "HHIIII", iface, 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data)
    )
    return block(2, hdr + data, order)


def dsb(stype: int, secret: bytes, order: str = "<") -> bytes:
    return block(0x0A, struct.pack(order + "II", stype, len(secret)) + secret, order)


def pkt(i: int, n: int = 60) -> bytes:
    """A recognisable packet body."""
    return bytes([i & 0xFF]) * n


class Drained:
    """Everything a capture delivered, flattened, plus the error that ended it."""

    def __init__(self) -> None:
        self.frame: list[int] = []
        self.ts: list[int] = []
        self.caplen: list[int] = []
        self.wirelen: list[int] = []
        self.linktype: list[int] = []
        self.interface: list[int] = []
        self.data: list[bytes] = []
        self.batches = 0
        self.info: CaptureInfo | None = None
        self.error: CaptureError | None = None

    @property
    def warnings(self) -> list[str]:
        assert self.info is not None
        return [str(w) for w in self.info.warnings]


def check_batch(b: RecordBatch) -> None:
    n = len(b)
    assert n > 0
    assert b.data.dtype == np.uint8 and b.data.ndim == 1
    for col, dt in (
        (b.frame, np.int64),
        (b.ts_ns, np.int64),
        (b.offset, np.int64),
        (b.caplen, np.int32),
        (b.wirelen, np.int32),
        (b.linktype, np.uint16),
        (b.interface, np.uint16),
    ):
        assert col.dtype == dt and col.shape == (n,)
    assert (b.offset >= 0).all() and (b.caplen >= 0).all()
    assert (b.offset + b.caplen <= len(b.data)).all()
    assert (np.diff(b.frame) > 0).all()


def drain(path: str | Path, max_records: int = 65536) -> Drained:
    """Read a capture to the end (or to its error), checking every batch's invariants."""
    d = Drained()
    try:
        with open_capture(str(path)) as cap:
            d.info = cap.info
            for b in cap.batches(max_records):
                check_batch(b)
                if d.frame:
                    assert b.frame[0] > d.frame[-1]
                d.batches += 1
                d.frame += b.frame.tolist()
                d.ts += b.ts_ns.tolist()
                d.caplen += b.caplen.tolist()
                d.wirelen += b.wirelen.tolist()
                d.linktype += b.linktype.tolist()
                d.interface += b.interface.tolist()
                d.data += [
                    bytes(b.data[o : o + c]) for o, c in zip(b.offset, b.caplen, strict=True)
                ]
    except CaptureError as exc:
        assert "\n" not in str(exc)
        d.error = exc
    if d.info is not None and d.error is None:
        assert d.info.packets == len(d.frame)
    return d


def write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


_SCRATCH = tempfile.mkdtemp(prefix="test_reader_")


def scratch(data: bytes, name: str = "x.cap") -> Path:
    """A file for property tests (hypothesis does not mix with function-scoped fixtures)."""
    p = Path(_SCRATCH) / name
    p.write_bytes(data)
    return p


@contextmanager
def tiny_chunks(n_in: int = 5, n_out: int = 7) -> Iterator[None]:
    """Force many piece borders in the streaming (gzip / pipe) path."""
    with (
        mock.patch.object(reader, "_IN_CHUNK", n_in),
        mock.patch.object(reader, "_OUT_CHUNK", n_out),
    ):
        yield


def epoch_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 10**9 + int((frac + "000000000")[:9])


# --------------------------------------------------------------------------- real captures

# wiretap encapsulation number (frame.encap_type) -> LINKTYPE_*
WTAP_TO_LINKTYPE = {1: 1, 25: 113, 15: 0, 129: 228, 7: 101}
ZEEK_LINKTYPE = {"ether": 1, "null": 0, "linux-sll": 113, "rawip4": 228}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# Same locations as the conftest fixtures (needed at collection time for parametrize;
# the fixtures still decide whether the tests run or skip).
_ORACLE = (
    Path(os.environ.get("PCAPDIAG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    / "oracle"
)


def _ws_rows() -> list[dict[str, str]]:
    p = _ORACLE / "wireshark" / "facts.csv"
    return _rows(p) if p.exists() else []


def _zeek_rows() -> list[dict[str, str]]:
    p = _ORACLE / "zeek" / "manifest.csv"
    return _rows(p) if p.exists() else []


@pytest.fixture(scope="module")
def ws_read(wireshark_dir: Path) -> dict[str, Drained]:
    caps = wireshark_dir / "captures"
    return {p.name: drain(p) for p in sorted(caps.iterdir())}


@pytest.mark.parametrize("row", _ws_rows(), ids=lambda r: r["file"])
def test_wireshark_facts(row: dict[str, str], ws_read: dict[str, Drained]) -> None:
    d = ws_read[row["file"]]
    assert d.error is None, d.error
    info = d.info
    assert info is not None
    # packets and frame numbering
    assert info.packets == len(d.frame) == int(row["packets"])
    assert d.frame == list(range(1, len(d.frame) + 1))
    # container, compression, byte order, precision
    assert info.format == ("pcapng" if row["container"] == "pcapng" else "pcap")
    assert info.compressed == (row["compressed"] == "gzip")
    assert info.byte_order == {"LE": "little", "BE": "big"}[row["byte_order"]]
    assert info.nanosecond == row["ts_precision"].startswith("nanoseconds")
    if row["container"] == "pcap-ns":
        assert info.nanosecond
    # link types: counts per LINKTYPE from tshark's per-frame encapsulation
    want: dict[int, int] = {}
    for item in filter(None, row["frame_encap_types"].split("|")):
        encap, count = item.split(":")
        lt = WTAP_TO_LINKTYPE[int(encap)]
        want[lt] = want.get(lt, 0) + int(count)
    assert info.link_types == want
    on_disk = {int(x) for x in row["linktypes_on_disk"].split("|")}
    assert set(info.link_types) <= on_disk
    # time order, secrets, snaplen-cut frames
    backwards = [w for w in info.warnings if "backwards" in w.message]
    assert (not backwards) == (row["strict_time_order"] == "True")
    assert len(info.secrets) == int(row["decryption_secrets"])
    cut = sum(c < w for c, w in zip(d.caplen, d.wirelen, strict=True))
    assert cut == int(row["snaplen_cut_frames"])
    # nothing else odd in these files
    assert all("backwards" in w.message for w in info.warnings), d.warnings
    if d.ts:
        assert info.first_ts_ns == min(d.ts) and info.last_ts_ns == max(d.ts)


def test_wireshark_corpus_is_complete(wireshark_dir: Path, ws_read: dict[str, Drained]) -> None:
    names = {r["file"] for r in _rows(wireshark_dir / "facts.csv")}
    assert names == set(ws_read), "facts.csv and captures/ disagree"
    assert len(names) == 40


def test_wireshark_stream_frames_and_times(
    wireshark_dir: Path, ws_read: dict[str, Drained]
) -> None:
    rows = _rows(wireshark_dir / "streams.csv")
    assert rows
    checked = 0
    for r in rows:
        d = ws_read[r["file"]]
        ts = dict(zip(d.frame, d.ts, strict=True))
        for fk, tk in (("first_frame", "first_time_epoch"), ("last_frame", "last_time_epoch")):
            frame = int(r[fk])
            assert frame in ts, (r["file"], frame)
            assert ts[frame] == epoch_ns(r[tk]), (r["file"], frame)
            checked += 1
    assert checked == 2 * len(rows)


def test_wireshark_first_packet_time(wireshark_dir: Path, ws_read: dict[str, Drained]) -> None:
    """Stream 0 starting at frame 1 gives the capture's first packet time."""
    seen = 0
    for r in _rows(wireshark_dir / "streams.csv"):
        if r["tcp_stream"] == "0" and r["first_frame"] == "1":
            d = ws_read[r["file"]]
            assert d.ts[0] == epoch_ns(r["first_time_epoch"])
            seen += 1
    assert seen >= 10


def test_many_interfaces(wireshark_dir: Path, ws_read: dict[str, Drained]) -> None:
    idb_lt = [1, 1, 1, 1, 0, 1, 1, 1, 12, 1, 0]
    for n in (1, 2, 3):
        d = ws_read[f"many_interfaces.pcapng.{n}"]
        assert d.error is None
        assert d.info is not None and d.info.format == "pcapng"
        for lt, iface in zip(d.linktype, d.interface, strict=True):
            assert lt == idb_lt[iface]
    assert len(set(ws_read["many_interfaces.pcapng.1"].interface)) > 1


def test_empty_pcap_is_valid(wireshark_dir: Path) -> None:
    p = wireshark_dir / "captures" / "empty.pcap"
    assert p.stat().st_size == 24
    with open_capture(str(p)) as cap:
        assert list(cap.batches()) == []
        assert cap.info.packets == 0 and cap.info.format == "pcap"
        assert cap.info.warnings == [] and cap.info.first_ts_ns is None
        assert cap.info.link_types == {}


def test_magic_not_extension(wireshark_dir: Path, ws_read: dict[str, Drained]) -> None:
    info = ws_read["tcp-exp-option-tarr.pcap.gz"].info
    assert info is not None and info.format == "pcapng" and info.compressed


def test_dsb_secrets(wireshark_dir: Path, ws_read: dict[str, Drained]) -> None:
    """tls12-dsb.pcapng embeds keys/tls12-dsb-{1,2}.keys as two TLS key-log DSBs."""
    info = ws_read["tls12-dsb.pcapng"].info
    assert info is not None
    keys = [(wireshark_dir / "keys" / f"tls12-dsb-{i}.keys").read_bytes() for i in (1, 2)]
    assert info.secrets == [(0x544C534B, k) for k in keys]


@pytest.mark.parametrize("row", _zeek_rows(), ids=lambda r: r["trace"])
def test_zeek_manifest(row: dict[str, str], zeek_dir: Path) -> None:
    d = drain(zeek_dir / "traces" / row["trace"])
    assert d.error is None, d.error
    assert d.info is not None
    assert d.info.packets == int(row["packets"])
    assert d.info.format == row["file_type"]
    assert d.info.link_types == {ZEEK_LINKTYPE[row["link_type"]]: int(row["packets"])}
    assert d.frame == list(range(1, int(row["packets"]) + 1))


def test_zeek_corpus_is_complete(zeek_dir: Path) -> None:
    rows = _zeek_rows()
    assert len(rows) == 60
    assert {r["trace"] for r in rows} == {p.name for p in (zeek_dir / "traces").iterdir()}


@pytest.mark.parametrize("max_records", [1, 3, 1000])
def test_batch_size_does_not_change_results(
    max_records: int, wireshark_dir: Path, ws_read: dict[str, Drained]
) -> None:
    for name in ("many_interfaces.pcapng.1", "communityid.pcap.gz", "rsasnakeoil2.pcap"):
        d = drain(wireshark_dir / "captures" / name, max_records)
        ref = ws_read[name]
        assert d.frame == ref.frame and d.ts == ref.ts and d.data == ref.data
        assert d.warnings == ref.warnings
        assert d.batches >= len(d.frame) // max_records


def test_gzip_piece_borders(
    wireshark_dir: Path, ws_read: dict[str, Drained], tmp_path: Path
) -> None:
    """Tiny inflate pieces (records cut everywhere) give what the mmap path gives."""
    for p in sorted((wireshark_dir / "captures").glob("*.gz")):
        if p.stat().st_size > 20_000:
            continue
        plain = write(tmp_path, p.name[:-3], gzip.decompress(p.read_bytes()))
        ref = drain(plain)
        with tiny_chunks():
            d = drain(p)
        assert d.error is None
        assert (d.frame, d.ts, d.data, d.linktype) == (ref.frame, ref.ts, ref.data, ref.linktype)
        assert d.data == ws_read[p.name].data


def test_mmap_data_is_a_view_of_the_file(wireshark_dir: Path) -> None:
    p = wireshark_dir / "captures" / "http2-data-reassembly.pcap"
    raw = p.read_bytes()
    with open_capture(str(p)) as cap:
        (b,) = list(cap.batches())
        assert len(b.data) == len(raw)  # absolute file offsets, no copy
        assert not b.data.flags.writeable
        o, c = int(b.offset[0]), int(b.caplen[0])
        assert raw[o : o + c] == bytes(b.data[o : o + c])
        assert o == 24 + 16


# --------------------------------------------------------------------------- good crafted files


def test_pcap_basic_columns(tmp_path: Path) -> None:
    recs = [(T0, 1, pkt(1, 60)), (T0, 999_999, pkt(2, 1514)), (T0 + 1, 0, pkt(3, 0))]
    d = drain(write(tmp_path, "a.pcap", pcap(recs, network=113)))
    assert d.error is None and d.warnings == []
    assert d.frame == [1, 2, 3]
    assert d.ts == [T0 * 10**9 + 1000, T0 * 10**9 + 999_999_000, (T0 + 1) * 10**9]
    assert d.data == [pkt(1, 60), pkt(2, 1514), b""]
    assert d.linktype == [113] * 3 and d.interface == [0] * 3
    assert d.info is not None and d.info.link_types == {113: 3} and d.info.snaplen == 262144


def test_nanosecond_pcap(tmp_path: Path) -> None:
    d = drain(write(tmp_path, "ns.pcap", pcap([(T0, 123_456_789, pkt(1))], magic=NS)))
    assert d.ts == [T0 * 10**9 + 123_456_789]
    assert d.info is not None and d.info.nanosecond


def test_big_endian_pcap(tmp_path: Path) -> None:
    data = pcap([(T0, 5, pkt(1)), (T0, 6, pkt(2, 99), 1500)], order=">", network=228)
    d = drain(write(tmp_path, "be.pcap", data))
    assert d.error is None
    assert d.info is not None and d.info.byte_order == "big"
    assert d.ts == [T0 * 10**9 + 5000, T0 * 10**9 + 6000]
    assert d.wirelen == [60, 1500] and d.linktype == [228, 228]
    assert d.data == [pkt(1), pkt(2, 99)]


def test_modified_pcap(tmp_path: Path) -> None:
    data = pcap([(T0, 1, pkt(1)), (T0, 2, pkt(2, 70))], magic=MOD)
    d = drain(write(tmp_path, "kuz.pcap", data))
    assert d.error is None and d.data == [pkt(1), pkt(2, 70)]


def test_linktype_is_low_16_bits_of_network(tmp_path: Path) -> None:
    fcs = 0x10000000 | (2 << 29)  # FCS-present bit and length
    d = drain(write(tmp_path, "fcs.pcap", pcap([(T0, 0, pkt(1))], network=fcs | 1)))
    assert d.linktype == [1]


def test_unusual_pcap_version_warns(tmp_path: Path) -> None:
    d = drain(write(tmp_path, "v.pcap", pcap([(T0, 0, pkt(1))], version=(3, 0))))
    assert d.error is None and len(d.frame) == 1
    assert any("version 3.0" in w for w in d.warnings)


def test_snaplen_zero_means_unlimited(tmp_path: Path) -> None:
    d = drain(write(tmp_path, "s0.pcap", pcap([(T0, 0, pkt(1, 9000))], snaplen=0)))
    assert d.error is None and d.warnings == [] and d.caplen == [9000]


def test_pcapng_blocks(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb(),
            block(4, b"\x00\x00\x00\x00"),  # NRB (empty)
            idb(1, 262144),
            idb(113, 0, tsresol=9, tsoffset=100),
            dsb(0x544C534B, b"CLIENT_RANDOM 00 11\n"),
            epb(pkt(1), 0, T0 * 10**6 + 5),
            block(0x00000BAD, struct.pack("<I", 32473) + b"custom"),  # custom, copyable
            epb(pkt(2, 61), 1, T0 * 10**9 + 7),
            block(0x40000BAD, struct.pack("<I", 32473) + b"no copy"),
            block(0x7FFF1234, b"unknown block"),
            spb(pkt(3, 62)),
            block(5, struct.pack("<IIIII", 0, 0, 0, 0, 0)),  # ISB
            old_pb(pkt(4, 63), 1, T0 * 10**9 + 9),
            epb(pkt(5, 64), 0, T0 * 10**6 + 10),
        ]
    )
    d = drain(write(tmp_path, "a.pcapng", data))
    assert d.error is None, d.error
    assert d.frame == [1, 2, 3, 4, 5]
    assert d.interface == [0, 1, 0, 1, 0]
    assert d.linktype == [1, 113, 1, 113, 1]
    assert d.data == [pkt(1), pkt(2, 61), pkt(3, 62), pkt(4, 63), pkt(5, 64)]
    off = 100 * 10**9
    assert d.ts[0] == T0 * 10**9 + 5000
    assert d.ts[1] == T0 * 10**9 + 7 + off
    assert d.ts[2] == d.ts[1]  # an SPB has no time: it gets the previous record's
    assert d.ts[3] == T0 * 10**9 + 9 + off
    assert d.ts[4] == T0 * 10**9 + 10_000
    info = d.info
    assert info is not None
    assert info.secrets == [(0x544C534B, b"CLIENT_RANDOM 00 11\n")]
    assert info.nanosecond and info.snaplen == 262144
    assert info.link_types == {1: 3, 113: 2}
    assert len(d.warnings) == 2  # SPB without timestamp, time going backwards (after SPB)
    assert any("Simple Packet Blocks" in w for w in d.warnings)


def test_pcapng_spb_caplen(tmp_path: Path) -> None:
    data = shb() + idb(1, 100) + spb(pkt(1, 120)) + spb(pkt(2, 80), wire=50)
    d = drain(write(tmp_path, "spb.pcapng", data))
    # caplen = min(block body, snaplen, wirelen); block bodies are padded to 4
    assert d.caplen == [100, 50] and d.wirelen == [120, 50]


@pytest.mark.parametrize(
    ("resol", "units", "ns"),
    [
        (6, 1_500_000, 1_500_000_000),
        (3, 1_500, 1_500_000_000),
        (9, 1_500_000_001, 1_500_000_001),
        (12, 1_500_000_000_123, 1_500_000_000),
        (0x80 | 10, 3 * 1024 + 512, 3_500_000_000),  # 2^-10
        (0x80 | 30, 5 << 30, 5_000_000_000),
        (0x80 | 40, (7 << 40) + (1 << 39), 7_500_000_000),
    ],
)
def test_pcapng_tsresol(tmp_path: Path, resol: int, units: int, ns: int) -> None:
    data = shb() + idb(1, 0, tsresol=resol) + epb(pkt(1), 0, units)
    d = drain(write(tmp_path, "r.pcapng", data))
    assert d.error is None and d.ts == [ns]
    assert d.info is not None
    assert d.info.nanosecond == (resol > 6 if resol < 0x80 else (resol & 0x7F) > 20)


def test_pcapng_two_sections_different_byte_orders(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb("<"),
            idb(1, 0, "<"),
            idb(0, 0, "<"),
            epb(pkt(1), 1, T0 * 10**6, "<"),
            shb(">"),
            idb(228, 0, ">"),
            epb(pkt(2), 0, T0 * 10**6 + 1, ">"),
            epb(pkt(3), 0, T0 * 10**6 + 2, ">"),
        ]
    )
    d = drain(write(tmp_path, "mixed.pcapng.1", data))
    assert d.error is None, d.error
    assert d.interface == [1, 0, 0]  # interface ids restart per section
    assert d.linktype == [0, 228, 228]
    assert d.data == [pkt(1), pkt(2), pkt(3)]
    assert d.ts == [T0 * 10**9, T0 * 10**9 + 1000, T0 * 10**9 + 2000]
    assert d.info is not None and d.info.byte_order == "little"


def test_big_endian_pcapng_many_records_fast_path(tmp_path: Path) -> None:
    """Enough records for the speculative walk, in a big-endian section."""
    n = 3000
    body = b"".join(epb(pkt(i, 60 + i % 7), 0, T0 * 10**6 + i, ">") for i in range(n))
    pad = epb(b"\0" * 200_000, 0, T0 * 10**6 + n, ">")  # keeps the buffer's tail far away
    data = shb(">") + idb(1, 0, ">") + body + pad * 2
    d = drain(write(tmp_path, "big.pcapng", data), 1000)
    assert d.error is None
    assert len(d.frame) == n + 2
    assert d.data[:n] == [pkt(i, 60 + i % 7) for i in range(n)]
    assert d.ts[:n] == [(T0 * 10**6 + i) * 1000 for i in range(n)]


def test_pcap_many_records_fast_path(tmp_path: Path) -> None:
    n = 5000
    recs = [(T0 + i // 1000, i % 1000, pkt(i, 60 + i % 13)) for i in range(n)]
    recs += [(T0 + 9, 0, b"\1" * 262144)] * 2
    d = drain(write(tmp_path, "many.pcap", pcap(recs)), 777)
    assert d.error is None and d.warnings == []
    assert len(d.frame) == n + 2
    assert d.data[:n] == [r[2] for r in recs[:n]]
    assert d.ts[:n] == [r[0] * 10**9 + r[1] * 1000 for r in recs[:n]]


def test_event_blocks_use_frame_numbers(tmp_path: Path) -> None:
    data = shb() + idb() + epb(pkt(1)) + block(9, b"journal entry") + epb(pkt(2))
    d = drain(write(tmp_path, "j.pcapng", data))
    assert d.frame == [1, 3]
    assert any("systemd journal" in w for w in d.warnings)


def test_multi_member_gzip(tmp_path: Path) -> None:
    raw = pcap([(T0, i, pkt(i)) for i in range(10)])
    data = gzip.compress(raw[:100]) + gzip.compress(raw[100:250]) + gzip.compress(raw[250:])
    d = drain(write(tmp_path, "m.pcap.gz", data))
    assert d.error is None and d.warnings == []
    assert d.data == [pkt(i) for i in range(10)]
    with tiny_chunks():
        assert drain(write(tmp_path, "m2.pcap.gz", data)).data == d.data


def test_batches_twice_and_close(tmp_path: Path) -> None:
    p = write(tmp_path, "t.pcap", pcap([(T0, i, pkt(i)) for i in range(5)]))
    cap = open_capture(str(p))
    first = [b.frame.tolist() for b in cap.batches(2)]
    held = list(cap.batches(2))  # keep views of the map alive across close()
    assert first == [b.frame.tolist() for b in held] == [[1, 2], [3, 4], [5]]
    assert cap.info.packets == 5
    cap.close()
    cap.close()
    assert held[0].data[24] == T0 & 0xFF  # still readable after close
    with pytest.raises(UsageError):
        cap.batches()


@pytest.mark.parametrize("gz", [False, True])
def test_close_while_reading(tmp_path: Path, gz: bool) -> None:
    raw = pcap([(T0, i, pkt(i)) for i in range(5)])
    p = write(tmp_path, "c.pcap", gzip.compress(raw) if gz else raw)
    cap = open_capture(str(p))
    with tiny_chunks(n_in=20, n_out=30):
        it = cap.batches(1)
        next(it)
        cap.close()
        with pytest.raises(UsageError, match="closed"):
            list(it)


def test_dropped_pages_stay_readable(tmp_path: Path) -> None:
    """Consumed mmap pages are handed back (RSS stays flat); held batches re-fault fine."""
    recs = [(T0, i, pkt(i, 3000)) for i in range(40)]
    p = write(tmp_path, "drop.pcap", pcap(recs))
    with mock.patch.object(reader, "_DROP_EVERY", 1), open_capture(str(p)) as cap:
        held = list(cap.batches(3))
        got = [
            bytes(b.data[o : o + c]) for b in held for o, c in zip(b.offset, b.caplen, strict=True)
        ]
    assert got == [r[2] for r in recs]


def test_bad_max_records(tmp_path: Path) -> None:
    with open_capture(str(write(tmp_path, "t.pcap", pcap([])))) as cap, pytest.raises(UsageError):
        cap.batches(0)


def test_fifo(tmp_path: Path) -> None:
    raw = pcap([(T0, i, pkt(i, 100 + i)) for i in range(50)])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(raw)

    t = threading.Thread(target=writer)
    t.start()
    with tiny_chunks(n_in=13):
        d = drain(fifo)
    t.join()
    assert d.error is None and d.data == [pkt(i, 100 + i) for i in range(50)]


# --------------------------------------------------------------------------- odd but survivable


def test_truncated_last_record_pcap(tmp_path: Path) -> None:
    raw = pcap([(T0, 0, pkt(1)), (T0, 1, pkt(2)), (T0, 2, pkt(3, 100))])
    for cut, missing in ((raw[:-40], "40 bytes missing"), (raw[:-110], "inside its header")):
        d = drain(write(tmp_path, "cut.pcap", cut))
        assert d.error is None
        assert d.data == [pkt(1), pkt(2)]
        assert len(d.warnings) == 1
        assert "capture ends inside a record" in d.warnings[0]
        assert missing in d.warnings[0] and "2 complete records read" in d.warnings[0]
        assert d.info is not None and d.info.warnings[0].offset == 24 + 2 * 76


def test_truncated_last_block_pcapng(tmp_path: Path) -> None:
    raw = shb() + idb() + epb(pkt(1)) + epb(pkt(2))
    for cut in (raw[:-10], raw[:-90]):
        d = drain(write(tmp_path, "cut.pcapng", cut))
        assert d.error is None and d.data == [pkt(1)]
        assert len(d.warnings) == 1 and "capture ends inside a record" in d.warnings[0]


def test_timestamps_backwards(tmp_path: Path) -> None:
    recs = [(T0, 5, pkt(1)), (T0, 4, pkt(2)), (T0, 6, pkt(3)), (T0 - 1, 0, pkt(4))]
    d = drain(write(tmp_path, "back.pcap", pcap(recs)), 2)  # one drop crosses batches
    assert d.error is None and len(d.warnings) == 1
    assert "backwards 2 times" in d.warnings[0]
    assert d.info is not None and d.info.warnings[0].frame == 2
    assert d.info.first_ts_ns == (T0 - 1) * 10**9 and d.info.last_ts_ns == T0 * 10**9 + 6000


def test_caplen_over_wirelen_and_snaplen(tmp_path: Path) -> None:
    recs = [(T0, 0, pkt(1, 100), 50), (T0, 1, pkt(2, 2000)), (T0, 2, pkt(3, 3000))]
    d = drain(write(tmp_path, "odd.pcap", pcap(recs, snaplen=1500)))
    assert d.error is None and len(d.frame) == 3
    assert len(d.warnings) == 2
    assert any("1 records have more captured bytes" in w for w in d.warnings)
    assert any("2 records exceed the snaplen 1500 (up to 3000 bytes" in w for w in d.warnings)


def test_interface_out_of_range(tmp_path: Path) -> None:
    data = shb() + idb() + epb(pkt(1), 0) + epb(pkt(2), 5) + epb(pkt(3), 0) + epb(pkt(4), 7)
    d = drain(write(tmp_path, "if.pcapng", data))
    assert d.error is None
    assert d.data == [pkt(1), pkt(3)] and d.frame == [1, 3]
    assert len(d.warnings) == 1 and "2 records name an interface" in d.warnings[0]
    assert "interface 5" in d.warnings[0]
    assert d.info is not None and d.info.packets == 2


def test_truncated_gzip_is_a_warning(tmp_path: Path) -> None:
    raw = pcap([(T0, i, pkt(i, 200)) for i in range(40)])
    gz = gzip.compress(raw)
    d = drain(write(tmp_path, "cut.pcap.gz", gz[: len(gz) - 30]))
    assert d.error is None
    assert 0 < len(d.frame) <= 40
    assert d.data == [pkt(i, 200) for i in range(len(d.frame))]
    assert any("gzip stream is truncated" in w for w in d.warnings)


def test_gzip_trailing_garbage(tmp_path: Path) -> None:
    raw = pcap([(T0, 0, pkt(1))])
    d = drain(write(tmp_path, "tg.pcap.gz", gzip.compress(raw) + b"\0" * 10))
    assert d.error is None and d.warnings == []
    d = drain(write(tmp_path, "tg2.pcap.gz", gzip.compress(raw) + b"junk"))
    assert d.error is None and d.data == [pkt(1)]
    assert any("non-gzip data" in w for w in d.warnings)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "cls", "text"),
    [
        (b"", NotACaptureError, "empty file, not a capture"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", NotACaptureError, "looks like text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(30), NotACaptureError, "starts with b'\\x89PNG'"),
        (b"\x7fELF\x02\x01\x01" + bytes(60), NotACaptureError, "ELF"),
        (b"BZh91AY&SY" + bytes(20), NotACaptureError, "bzip2"),
        (b"ab", NotACaptureError, "only 2 bytes"),
        (pcap([])[:10], CorruptCaptureError, "truncated pcap file header (10 of 24 bytes)"),
        (shb()[:10], CorruptCaptureError, "truncated pcapng Section Header Block"),
        (shb()[:20], CorruptCaptureError, "truncated pcapng Section Header Block"),
        (gzip.compress(b"hello world, not a capture"), NotACaptureError, "gzip-compressed"),
        (gzip.compress(b""), NotACaptureError, "gzip file holds no data"),
        (gzip.compress(pcap([]))[:8], CorruptCaptureError, "truncated before any data"),
        (b"\x1f\x8b" + bytes(30), CorruptCaptureError, "gzip stream corrupt at the start"),
        (gzip.compress(pcap([])[:10]), CorruptCaptureError, "(10 of 24 bytes) (inside gzip)"),
        (b"\n\r\r\n" + bytes(30), CorruptCaptureError, "byte-order magic"),
    ],
    ids=[
        "empty",
        "text",
        "png",
        "elf",
        "bzip2",
        "tiny",
        "pcap-header",
        "shb-10",
        "shb-20",
        "gzip-text",
        "gzip-empty",
        "gzip-cut-header",
        "gzip-bad",
        "gzip-pcap-header",
        "shb-bom",
    ],
)
def test_not_a_capture(tmp_path: Path, data: bytes, cls: type, text: str) -> None:
    p = write(tmp_path, "x.pcap", data)
    with pytest.raises(cls) as ei, open_capture(str(p)) as cap:
        for _ in cap.batches():
            pass
    assert text in str(ei.value), str(ei.value)
    assert str(ei.value).startswith(str(p))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        open_capture(str(tmp_path / "nope.pcap"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="is a directory"):
        open_capture(str(tmp_path))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read mode-000 files"
)
def test_no_permission(tmp_path: Path) -> None:
    p = write(tmp_path, "secret.pcap", pcap([]))
    p.chmod(0)
    try:
        with pytest.raises(CaptureError, match="permission denied"):
            open_capture(str(p))
    finally:
        p.chmod(0o600)


def test_huge_caplen_in_record_3(tmp_path: Path) -> None:
    good = pcap([(T0, 0, pkt(1)), (T0, 1, pkt(2))])
    bad_at = len(good)
    data = good + struct.pack("<IIII", T0, 2, 0xFFFFFFFF, 60) + pkt(3) * 5
    for max_records in (1, 65536):
        d = drain(write(tmp_path, "huge.pcap", data), max_records)
        assert d.data == [pkt(1), pkt(2)]
        assert isinstance(d.error, CorruptCaptureError)
        assert d.error.frame == 3 and d.error.offset == bad_at
        msg = str(d.error)
        assert f"(frame 3, byte offset {bad_at})" in msg and "4294967295" in msg
        assert d.info is not None and d.info.packets == 2


def test_huge_caplen_after_fast_walk(tmp_path: Path) -> None:
    """Damage deep inside a big file: everything before it arrives, in order."""
    n = 4000
    recs = [(T0, i, pkt(i, 100)) for i in range(n)]
    good = pcap(recs)
    data = good + struct.pack("<IIII", T0, 0, 300_000, 60) + b"\0" * 600_000
    d = drain(write(tmp_path, "deep.pcap", data), 1024)
    assert len(d.frame) == n and d.data[-1] == pkt(n - 1, 100)
    assert isinstance(d.error, CorruptCaptureError)
    assert d.error.frame == n + 1 and d.error.offset == len(good)


def test_record_too_long_for_a_plausible_truncation(tmp_path: Path) -> None:
    data = pcap([(T0, 0, pkt(1))]) + struct.pack("<IIII", T0, 0, 300_000, 300_000) + b"x" * 100
    d = drain(write(tmp_path, "long.pcap", data))
    assert d.data == [pkt(1)] and isinstance(d.error, CorruptCaptureError)
    assert "300000 captured bytes" in str(d.error)


def test_pcapng_block_length_mismatch(tmp_path: Path) -> None:
    head = shb() + idb() + epb(pkt(1))
    bad = block(6, struct.pack("<IIIII", 0, 0, 0, 60, 60) + pkt(2), trailer=999)
    d = drain(write(tmp_path, "mm.pcapng", head + bad + epb(pkt(3))))
    assert d.data == [pkt(1)]
    assert isinstance(d.error, CorruptCaptureError)
    assert d.error.offset == len(head) and d.error.frame == 2
    assert "header says 92 bytes, trailer says 999" in str(d.error)


@pytest.mark.parametrize("blen", [0, 8, 13, 0x7FFFFFFC])
def test_pcapng_invalid_block_length(tmp_path: Path, blen: int) -> None:
    head = shb() + idb() + epb(pkt(1))
    data = head + struct.pack("<II", 6, blen) + bytes(100)
    d = drain(write(tmp_path, "bl.pcapng", data))
    assert d.data == [pkt(1)]
    assert isinstance(d.error, CorruptCaptureError) and d.error.offset == len(head)


def test_pcapng_epb_caplen_beyond_block(tmp_path: Path) -> None:
    head = shb() + idb() + epb(pkt(1))
    bad = block(6, struct.pack("<IIIII", 0, 0, 0, 5000, 5000) + pkt(2))
    d = drain(write(tmp_path, "cl.pcapng", head + bad))
    assert d.data == [pkt(1)] and isinstance(d.error, CorruptCaptureError)
    assert "claims 5000 captured bytes" in str(d.error)


def test_pcapng_unsupported_version(tmp_path: Path) -> None:
    d = drain(write(tmp_path, "v2.pcapng", shb(major=2) + idb()))
    assert isinstance(d.error, CorruptCaptureError) and "version 2.0" in str(d.error)


def _random_payloads(n: int, size: int = 300) -> list[bytes]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]


def test_gzip_corrupt_midway(tmp_path: Path) -> None:
    payloads = _random_payloads(300)
    raw = pcap([(T0, i, p) for i, p in enumerate(payloads)])
    half = len(raw) // 2
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = z.compress(raw[:half]) + z.flush(zlib.Z_FULL_FLUSH)  # byte-aligned block border
    rest = z.compress(raw[half:]) + z.flush()
    gz = head + b"\x07" + rest  # a final block of the reserved type 3: zlib must fail here
    d = drain(write(tmp_path, "bad.pcap.gz", gz))
    assert isinstance(d.error, CorruptCaptureError)
    msg = str(d.error)
    assert "gzip stream corrupt" in msg and "invalid block type" in msg
    complete = (half - 24) // (16 + 300)  # records wholly inside the good half
    assert len(d.frame) == complete
    assert d.data == payloads[:complete]
    assert d.error.offset == len(head) and d.error.frame == complete + 1
    with tiny_chunks(n_in=50, n_out=100):
        assert drain(write(tmp_path, "bad2.pcap.gz", gz)).data == d.data


def test_gzip_smashed_midway(tmp_path: Path) -> None:
    """Smashed deflate data may inflate to garbage instead: either way, damage is an error."""
    payloads = _random_payloads(300)
    raw = pcap([(T0, i, p) for i, p in enumerate(payloads)])
    for seed in range(5):
        gz = bytearray(gzip.compress(raw))
        at = len(gz) // 3 + seed * 997
        gz[at : at + 20] = bytes(np.random.default_rng(seed).integers(0, 256, 20, np.uint8))
        d = drain(write(tmp_path, "smash.pcap.gz", bytes(gz)))
        assert isinstance(d.error, CorruptCaptureError)
        assert 50 < len(d.frame) <= 300  # stored blocks: only the CRC notices
        assert d.data[:50] == payloads[:50]


def test_gzip_crc_error_after_all_data(tmp_path: Path) -> None:
    raw = pcap([(T0, i, pkt(i)) for i in range(20)])
    gz = bytearray(gzip.compress(raw))
    gz[-8] ^= 0xFF  # CRC32 in the trailer
    d = drain(write(tmp_path, "crc.pcap.gz", bytes(gz)))
    assert d.data == [pkt(i) for i in range(20)]
    assert isinstance(d.error, CorruptCaptureError) and "gzip stream corrupt" in str(d.error)


# --------------------------------------------------------------------------- properties


def _seeds() -> dict[str, bytes]:
    p = pcap(
        [(T0, 1, pkt(1, 20)), (T0, 2, pkt(2, 33), 90), (T0 + 1, 0, pkt(3, 7))],
        snaplen=40,
    )
    ng = b"".join(
        [
            shb(),
            idb(1, 0),
            idb(113, 50, tsresol=9),
            epb(pkt(1, 10), 0, 5),
            dsb(1, b"k"),
            spb(pkt(2, 9)),
            epb(pkt(3, 12), 1, 9),
            shb(">"),
            idb(228, 0, ">"),
            epb(pkt(4, 8), 0, 1, ">"),
        ]
    )
    return {
        "pcap": p,
        "pcapng": ng,
        "gzip": gzip.compress(p + pkt(9, 3)),
        "ng.gz": gzip.compress(ng),
    }


SEEDS = _seeds()


def _survives(data: bytes, max_records: int = 2) -> Drained:
    d = drain(scratch(data), max_records)
    if d.error is not None:
        assert isinstance(d.error, CaptureError)
    return d


@pytest.mark.parametrize("name", list(SEEDS))
def test_every_truncation(name: str) -> None:
    data = SEEDS[name]
    full = _survives(data)
    assert full.error is None
    for n in range(len(data)):
        d = _survives(data[:n])
        if d.frame:
            assert d.data == full.data[: len(d.data)]  # a prefix of the real records


@pytest.mark.parametrize("name", list(SEEDS))
def test_every_truncation_streamed(name: str) -> None:
    with tiny_chunks():
        for n in range(0, len(SEEDS[name]), 3):
            _survives(SEEDS[name][:n], 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    _survives(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(SEEDS)),
    st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b\x08\x00"]),
    st.binary(max_size=200),
)
def test_arbitrary_bytes_after_a_magic(name: str, magic: bytes, tail: bytes) -> None:
    _survives(magic + tail)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(SEEDS)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(1, 4),
    st.booleans(),
)
def test_mutations(name: str, flips: list[tuple[int, int]], max_records: int, small: bool) -> None:
    data = bytearray(SEEDS[name])
    for i, v in flips:
        data[i % len(data)] = v
    if small:
        with tiny_chunks():
            _survives(bytes(data), max_records)
    else:
        _survives(bytes(data), max_records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["pcap", "pcapng"]),
    st.integers(0, 10**6),
    st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 12, 28, 32]),
)
def test_length_fields_set_to_extremes(name: str, where: int, value: int) -> None:
    """Overwrite an aligned 32-bit word (often a length) with an extreme value."""
    data = bytearray(SEEDS[name])
    i = (where % (len(data) // 4)) * 4
    data[i : i + 4] = struct.pack("<I", value)
    _survives(bytes(data))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 1600)), max_size=40))
def test_random_valid_pcaps_round_trip(recs: list[tuple[int, int]]) -> None:
    data = pcap([(T0 + i, i, pkt(b, n)) for i, (b, n) in enumerate(recs)])
    d = _survives(data, 7)
    assert d.error is None and d.warnings == []
    assert d.data == [pkt(b, n) for b, n in recs]
    with tiny_chunks(n_in=97, n_out=61):
        assert _survives(gzip.compress(data), 5).data == d.data


def teardown_module(module: Any) -> None:
    shutil.rmtree(_SCRATCH, ignore_errors=True)


# -- byte ranges (``Capture.spans``): what ``--jobs`` splits one big pcap file by ---------

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


_COLS = ("frame", "ts_ns", "caplen", "wirelen", "linktype", "interface")


def _records(path: Path, span: tuple[int, int, int] | None = None) -> dict[str, Any]:
    cols: dict[str, list[Any]] = {k: [] for k in (*_COLS, "bytes")}
    with open_capture(path) as cap:
        for b in cap.batches(1000, span=span):
            for k in _COLS:
                cols[k].append(np.asarray(getattr(b, k)))
            cols["bytes"] += [
                bytes(b.data[o : o + c])
                for o, c in zip(b.offset.tolist(), b.caplen.tolist(), strict=True)
            ]
    out: dict[str, Any] = {k: np.concatenate(cols[k]) if cols[k] else np.zeros(0) for k in _COLS}
    out["bytes"] = cols["bytes"]
    return out


def _same_records(path: Path, spans: list[tuple[int, int, int]]) -> None:
    whole = _records(path)
    parts = [_records(path, sp) for sp in spans]
    assert [int(p["frame"][0]) for p in parts if len(p["frame"])] == [
        sp[2] for sp, p in zip(spans, parts, strict=True) if len(p["frame"])
    ]
    for k, v in whole.items():
        if k == "bytes":
            assert [b for p in parts for b in p[k]] == v, path.name
        else:
            assert np.array_equal(np.concatenate([p[k] for p in parts]), v), (path.name, k)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    """Batches of 3 records: small captures cut into several spans (cuts fall on batch
    borders)."""
    monkeypatch.setattr(reader, "BATCH", 3)
    return 3


@pytest.mark.skipif(reader.compiled_kernels(load=True) is None, reason="numba cannot compile here")
@pytest.mark.parametrize("n", [2, 3, 7])
def test_spans_read_back_to_back_are_the_whole_file(n: int, small_batches: int) -> None:
    """Each span read on its own, frames numbered as in the whole file: together, every
    record once, in order, as tshark numbers them (the Wireshark corpus checks those).
    Each starts on a border of the whole read's batches."""
    path = SAMPLES / "client_reset-requests-stream.pcap"
    whole = _records(path)
    with open_capture(path) as cap:
        spans = cap.spans(n)
    assert spans is not None and len(spans) == n
    assert spans[0][0] == 24 and spans[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all((f - 1) % small_batches == 0 for _, _, f in spans)
    _same_records(path, spans)
    assert len(whole["frame"]) == 40


@pytest.mark.skipif(reader.compiled_kernels(load=True) is None, reason="numba cannot compile here")
def test_spans_of_every_capture_in_the_corpora(
    wireshark_dir: Path, tmp_path: Path, small_batches: int
) -> None:
    """Every capture of the Wireshark corpus and every sample, and the samples written as
    pcapng by editcap when it is installed: cut where a cut is sure, the spans read back
    to back give every record of the whole read (times, lengths, link types, interfaces,
    bytes), numbered the same."""
    paths = sorted((wireshark_dir / "captures").iterdir()) + sorted(SAMPLES.iterdir())[:40]
    editcap = shutil.which("editcap")
    if editcap:
        for src in sorted(SAMPLES.glob("*.pcap"))[:10]:
            dst = tmp_path / (src.stem + ".pcapng")
            subprocess.run([editcap, "-F", "pcapng", str(src), str(dst)], check=True)
            paths.append(dst)
    cut = {"pcap": 0, "pcapng": 0}
    for path in paths:
        try:
            cap = open_capture(path)
        except CaptureError:
            continue
        with cap:
            spans = cap.spans(3)
            fmt = cap.info.format
        if spans is None:
            continue
        cut[fmt] += 1
        try:
            _same_records(path, spans)
        except CaptureError:  # damage after the last cut: both reads end there
            continue
    assert cut["pcap"] >= 30 and cut["pcapng"] >= 10, cut


@pytest.mark.skipif(reader.compiled_kernels(load=True) is None, reason="numba cannot compile here")
def test_spans_only_where_a_cut_is_sure(tmp_path: Path, small_batches: int) -> None:
    """No cut in a gzip'd file, in a pcapng that describes an interface after its first
    packet (a span starting later would not know it), or past damage; damage after the
    last cut stays the last span's, reported as the whole read reports it."""
    src = SAMPLES / "client_reset-requests-stream.pcap"
    raw = src.read_bytes()
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    ng = SAMPLES / "keepalive-idle-httpx-v6.pcapng"
    data = ng.read_bytes()
    head = reader._ng_head(memoryview(data))
    assert head is not None
    start = head[0]
    idb = struct.unpack_from("<I", data, 4)[0]  # the first block after the section header
    assert struct.unpack_from("<I", data, idb)[0] == 1  # an Interface Description Block
    idb_block = data[idb : idb + struct.unpack_from("<I", data, idb + 4)[0]]
    first_epb = data[start : start + struct.unpack_from("<I", data, start + 4)[0]]
    late = tmp_path / "late-interface.pcapng"
    late.write_bytes(data[:start] + first_epb + idb_block + data[start + len(first_epb) :])
    for p in (gz, late):
        with open_capture(p) as cap:
            assert cap.spans(2) is None, p.name
    with open_capture(late) as cap:
        assert sum(len(b) for b in cap.batches()) == 62  # a valid file
    with open_capture(ng) as cap:
        assert cap.spans(2) is not None
    bad = bytearray(raw)
    struct.pack_into("<I", bad, 24 + 8, 0x7FFF_FFFF)  # the first record's caplen
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(bytes(bad))
    with open_capture(damaged) as cap:
        assert cap.spans(2) is None
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:-5])  # the last record cut short
    with open_capture(cut) as cap:
        spans = cap.spans(2)
        assert spans is not None
        for sp in spans:
            list(cap.batches(span=sp))
        assert any("capture ends inside a record" in str(w) for w in cap.info.warnings)
    with open_capture(cut) as cap:
        whole = sum(len(b) for b in cap.batches())
    assert sum(len(_records(cut, sp)["frame"]) for sp in spans) == whole


def test_upto_reads_a_growing_file_as_it_was() -> None:
    """``batches(upto=size)``: a file still being written (tcpdump has not stopped) read a
    second time gives the records of the first reading, not the ones written since; what
    was cut short at that size is reported as the cut was."""
    for name in ("client_reset-requests-stream.pcap", "keepalive-idle-httpx-v6.pcapng"):
        raw = (SAMPLES / name).read_bytes()
        with tempfile.TemporaryDirectory() as d:
            grown, cut = (
                Path(d) / ("grown" + Path(name).suffix),
                Path(d) / ("cut" + Path(name).suffix),
            )
            for size in (len(raw) // 3, len(raw) // 2 + 7, len(raw)):
                grown.write_bytes(raw[:size])
                with open_capture(grown) as cap:
                    assert cap.size == size
                    grown.write_bytes(raw + raw[24:])  # more written since it was opened
                    with open_capture(grown) as later:
                        got = _drain_batches(later.batches(upto=size))
                        warned = [str(w).split(":", 1)[1] for w in later.info.warnings]
                cut.write_bytes(raw[:size])
                with open_capture(cut) as whole:
                    want = _drain_batches(whole.batches())
                    expected = [str(w).split(":", 1)[1] for w in whole.info.warnings]
                assert got == want and warned == expected, (name, size)


def _drain_batches(batches: Iterator[RecordBatch]) -> list[tuple[int, int, bytes]]:
    out = []
    for b in batches:
        for f, t, o, c in zip(
            b.frame.tolist(), b.ts_ns.tolist(), b.offset.tolist(), b.caplen.tolist(), strict=True
        ):
            out.append((f, t, bytes(b.data[o : o + c])))
    return out


def test_records_read_again_by_offset(wireshark_dir: Path, tmp_path: Path) -> None:
    """``Capture.records``: records an earlier reading delivered, given by their columns,
    decode as they did in their batch (every capture of the Wireshark corpus and the
    samples a mapped file holds, pcapng included; every third record, so offsets jump).
    Not for a gzip file, which is not mapped."""
    from pcapdiag import decode

    paths = sorted((wireshark_dir / "captures").iterdir()) + sorted(SAMPLES.iterdir())
    checked = {"pcap": 0, "pcapng": 0}
    for path in paths:
        try:
            first = open_capture(path)
        except CaptureError:
            continue
        with first, open_capture(path) as again:
            if not first.size:
                continue
            try:
                for batch in first.batches(7):
                    rows = np.arange(0, len(batch), 3)
                    cols = (batch.frame, batch.ts_ns, batch.offset, batch.caplen,
                            batch.wirelen, batch.linktype, batch.interface)  # fmt: skip
                    back = again.records(*(c[rows] for c in cols))
                    want = decode.decode_batch(batch).tcp
                    got = decode.decode_batch(back).tcp
                    keep = np.isin(want.frame, batch.frame[rows])
                    for name in ("frame", "ts_ns", "seq", "ack", "flags", "payload_len",
                                 "src_lo", "dst_lo", "sport", "dport"):  # fmt: skip
                        assert (getattr(got, name) == getattr(want, name)[keep]).all(), path
                    w, g = want.payload_off[keep], got.payload_off
                    assert all(
                        bytes(batch.data[a : a + n]) == bytes(back.data[b : b + n])
                        for a, b, n in zip(w, g, got.payload_cap, strict=True)
                    )
                    checked[first.info.format] += len(got)
            except CaptureError:
                continue
    assert checked["pcap"] > 300 and checked["pcapng"] > 100, checked
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress((SAMPLES / "client_reset-requests-stream.pcap").read_bytes()))
    with open_capture(gz) as cap, pytest.raises(UsageError):
        z = np.zeros(0, np.int64)
        cap.records(
            z,
            z,
            z,
            z.astype(np.int32),
            z.astype(np.int32),
            z.astype(np.uint16),
            z.astype(np.uint16),
        )
