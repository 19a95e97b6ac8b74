"""The compiled (numba) path against the pure one: the same batches, decodes, warnings and
errors, column by column, for every real capture we have and for generated ones.

Each capture is read twice, ``PCAPDIAG_COMPILED=0`` then ``=1``. The compiled walk only
runs where the pure fast walk would (a buffer's tail of one maximal record is always read
record by record), so the real captures, mostly small, are also read with the record
limits patched down, which sends them through the walk; both paths see the same limits.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

import pcapdiag  # noqa: E402
from pcapdiag import decode, reader  # noqa: E402
from pcapdiag.decode import DecodedBatch, decode_batch  # noqa: E402
from pcapdiag.errors import CaptureError  # noqa: E402
from pcapdiag.reader import RecordBatch, open_capture  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_SHARED = Path(os.environ.get("PCAPDIAG_SHARED", ROOT.parent / "shared"))
_SUFFIXES = (".pcap", ".pcapng", ".gz", ".1", ".2", ".3", ".cap")


def _captures() -> list[Path]:
    found = sorted(p for p in (ROOT / "sample_pcaps").iterdir() if p.suffix in _SUFFIXES)
    for folder in (_SHARED / "oracle" / "zeek" / "traces", _SHARED / "oracle" / "wireshark" / "captures"):  # fmt: skip
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_file())
    return found


CAPTURES = _captures()
_RECORD_COLUMNS = ("frame", "ts_ns", "offset", "caplen", "wirelen", "linktype", "interface")
_TCP_COLUMNS = tuple(decode._TCP_FIELDS)


@pytest.fixture(autouse=True)
def _kernels_state() -> Iterator[None]:
    """Whatever a test loads or breaks, the next test starts from the state before."""
    saved = reader._kernels, reader._kernels_failed
    yield
    reader._kernels, reader._kernels_failed = saved


@pytest.fixture(scope="module", autouse=True)
def _kernels_available() -> Iterator[None]:
    """Skip when the kernels cannot load; afterwards the rest of the suite runs with the
    loading state it had (so its tests keep taking the pure path)."""
    saved = reader._kernels, reader._kernels_failed
    with mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": "1"}):
        if reader.compiled_kernels() is None:
            pytest.skip("numba kernels cannot be compiled or loaded here")
    yield
    reader._kernels, reader._kernels_failed = saved


@contextmanager
def _limits(lim: int | None) -> Iterator[None]:
    """Patch the largest record (pcap) and plausible block (pcapng) down to ``lim``."""
    if lim is None:
        yield
        return
    with (
        mock.patch.object(reader, "MAX_CAPLEN", lim),
        mock.patch.object(reader, "_PLAUSIBLE_BLOCK", lim + 64),
    ):
        yield


class Run:
    """Everything one read (and decode) of a capture produced."""

    def __init__(self) -> None:
        self.batches: list[RecordBatch] = []
        self.decoded: list[DecodedBatch] = []
        self.info: reader.CaptureInfo | None = None
        self.error: CaptureError | None = None


def _read(path: Path, mode: str, max_records: int = 65536, lim: int | None = None) -> Run:
    run = Run()
    with mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": mode}), _limits(lim):
        try:
            with open_capture(path) as cap:
                run.info = cap.info
                for b in cap.batches(max_records):
                    run.batches.append(b)
                    run.decoded.append(decode_batch(b))
        except CaptureError as exc:
            run.error = exc
    return run


def _same_array(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert np.array_equal(a, b), f"{what}: first difference at {np.flatnonzero(a != b)[:5]}"


def _same_decode(a: DecodedBatch, b: DecodedBatch, what: str) -> None:
    for col in _TCP_COLUMNS:
        _same_array(getattr(a.tcp, col), getattr(b.tcp, col), f"{what} tcp.{col}")
    for col in ("frame", "ts_ns"):
        _same_array(getattr(a.tcp, col), getattr(b.tcp, col), f"{what} tcp.{col}")
    assert a.icmp == b.icmp, what
    assert (a.non_tcp, a.non_ip, a.unknown_link) == (b.non_tcp, b.non_ip, b.unknown_link), what
    assert (a.malformed, a.malformed_count) == (b.malformed, b.malformed_count), what


def _same_run(a: Run, b: Run) -> None:
    assert len(a.batches) == len(b.batches)
    for i, (x, y) in enumerate(zip(a.batches, b.batches, strict=True)):
        for col in _RECORD_COLUMNS:
            _same_array(getattr(x, col), getattr(y, col), f"batch {i} {col}")
        assert x.data.size == y.data.size and np.array_equal(x.data, y.data)
    for i, (x, y) in enumerate(zip(a.decoded, b.decoded, strict=True)):
        _same_decode(x, y, f"batch {i}")
    assert (a.info is None) == (b.info is None)
    if a.info is not None and b.info is not None:
        assert a.info == b.info  # warnings included: message, frame, offset, order
    assert type(a.error) is type(b.error)
    if a.error is not None and b.error is not None:
        assert str(a.error) == str(b.error)
        assert (a.error.frame, a.error.offset) == (b.error.frame, b.error.offset)


def _compare(path: Path, max_records: int = 65536, lim: int | None = None) -> Run:
    pure = _read(path, "0", max_records, lim)
    fast = _read(path, "1", max_records, lim)
    _same_run(pure, fast)
    return fast


# --------------------------------------------------------------------------- real captures


@pytest.mark.parametrize("path", CAPTURES, ids=[f"{p.parent.name}/{p.name}" for p in CAPTURES])
def test_real_capture(path: Path) -> None:
    _compare(path)
    _compare(path, 7)
    _compare(path, lim=1600)  # the walk on small files; longer records are damage here
    _compare(path, 5, lim=70_000)


def test_corpus_is_there() -> None:
    """116 samples, 60 Zeek traces, 40 Wireshark captures (when ../shared is there)."""
    assert len(CAPTURES) >= (216 if (_SHARED / "oracle").is_dir() else 116)


def test_walk_decodes_what_the_decoder_would(tmp_path: Path) -> None:
    """The compiled walk really runs (and decodes on the way) on a big enough capture."""
    path = tmp_path / "big.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 40 + i % 300) for i in range(3000)]))
    calls: list[int] = []
    kern = reader.compiled_kernels(load=True)
    walk = kern.pcap_walk

    def counting(*args: Any) -> tuple[int, int]:
        c, t = walk(*args)
        calls.append(t)
        return c, t

    with mock.patch.object(kern, "pcap_walk", counting):
        fast = _compare(path, 1000, lim=2000)
    assert sum(calls) >= 2800  # nearly all records decoded by the walk
    assert sum(len(d.tcp) for d in fast.decoded) == 3000


# --------------------------------------------------------------------------- generated captures

T0 = 1_700_000_000


def _tcp_frame(i: int, payload: int, v6: bool = False) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, 7, 0x50, 0x18, 512, 0, 0)
    tcp += bytes([i & 0xFF]) * payload
    if v6:
        ip = struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64) + bytes(range(32)) + tcp
        return b"\x02" * 12 + b"\x86\xdd" + ip
    ip = struct.pack("!BBHHHBB", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0x4000, 64, 6)
    return b"\x02" * 12 + b"\x08\x00" + ip + b"\0\0" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + tcp


def _pcap(
    frames: list[bytes],
    *,
    order: str = "<",
    magic: int = 0xA1B2C3D4,
    snaplen: int = 262144,
    linktype: int = 1,
    caplen: dict[int, int] | None = None,
    wirelen: dict[int, int] | None = None,
    ts: dict[int, int] | None = None,
) -> bytes:
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, f in enumerate(frames):
        cl = (caplen or {}).get(i, len(f))
        wl = (wirelen or {}).get(i, len(f))
        sec = (ts or {}).get(i, T0 + i // 1000)
        out.append(struct.pack(order + "IIII", sec, i % 1000, cl, wl))
        if magic == 0xA1B2CD34:
            out.append(struct.pack(order + "IHBB", 1, 0x0800, 0, 0))
        out.append(f)
    return b"".join(out)


def _block(btype: int, body: bytes, order: str = "<", trailer: int | None = None) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    tail = n if trailer is None else trailer
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", tail)


def _shb(order: str = "<") -> bytes:
    return _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def _idb(linktype: int, order: str = "<", snaplen: int = 0) -> bytes:
    return _block(1, struct.pack(order + "HHI", linktype, 0, snaplen), order)


def _epb(
    data: bytes,
    iface: int = 0,
    units: int = T0 * 10**6,
    order: str = "<",
    wire: int | None = None,
    cap: int | None = None,
) -> bytes:
    cl = len(data) if cap is None else cap
    wl = len(data) if wire is None else wire
    hdr = struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, cl, wl)
    return _block(6, hdr + data, order)


def test_pcap_variants(tmp_path: Path) -> None:
    frames = [_tcp_frame(i, (i * 37) % 700, v6=i % 5 == 0) for i in range(4000)]
    for order in "<>":
        for magic in (0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34):
            path = tmp_path / f"v{order == '>'}{magic:x}.pcap"
            path.write_bytes(_pcap(frames, order=order, magic=magic))
            for mr in (65536, 333):
                _compare(path, mr, lim=1000)
                _compare(path, mr)


def test_pcap_damage(tmp_path: Path) -> None:
    frames = [_tcp_frame(i, (i * 53) % 900) for i in range(5000)]
    cases = {
        "absurd": dict(caplen={2500: 5_000_000}),
        "over_snaplen": dict(snaplen=800, caplen={10: 900}),
        "wire_clip": dict(wirelen={30: 0xFFFF_FFF0, 4000: 0x8000_0000}),
        "both": dict(snaplen=600, wirelen={5: 0x9000_0000}),
        "cap_gt_wire": dict(wirelen={7: 20, 3000: 0}),
        "backwards": dict(ts={100: T0 - 5, 4000: T0 - 9}),
    }
    for name, kw in cases.items():
        raw = _pcap(frames, **kw)  # type: ignore[arg-type]
        for tail in (b"", raw[-300:-150]):  # whole, or ending inside a record
            path = tmp_path / f"{name}{len(tail)}.pcap"
            path.write_bytes(raw + tail)
            for mr in (65536, 1000):
                _compare(path, mr, lim=1200)
                _compare(path, mr)
            gz = tmp_path / f"{name}{len(tail)}.pcap.gz"
            gz.write_bytes(gzip.compress(raw + tail, 1))
            _compare(gz, lim=1200)


def test_pcapng_variants_and_damage(tmp_path: Path) -> None:
    def body(order: str, n: int, start: int = 0) -> list[bytes]:
        out = []
        for i in range(start, start + n):
            f = _tcp_frame(i, (i * 41) % 600, v6=i % 7 == 0)
            out.append(_epb(f, i % 3, T0 * 10**6 + i, order))
        return out

    def ifaces(order: str) -> bytes:
        return _idb(1, order) + _idb(113, order, snaplen=300) + _idb(101, order)

    blocks = body("<", 3000)
    cases = {
        "plain": blocks,
        "bad_trailer": blocks[:1500] + [_block(6, blocks[1500][8:-4], "<", 999)] + blocks[1501:],
        "bad_iface": blocks[:700] + [_epb(b"x" * 60, 9)] + blocks[700:],
        "spb_isb_unknown": blocks[:500]
        + [_block(3, struct.pack("<I", 60) + b"y" * 60), _block(5, b"\0" * 16), _block(0x999, b"z")]
        + blocks[500:],
        "cap_too_big": blocks[:2000] + [_epb(b"q" * 64, cap=500)] + blocks[2000:],
        "huge_block": blocks[:1000] + [struct.pack("<II", 6, 0x7FFF_FFF0)] + blocks[1000:],
        "wire_clip": blocks[:10] + [_epb(b"w" * 70, wire=0xF000_0000)] + blocks[10:],
    }
    for name, bl in cases.items():
        raw = _shb() + ifaces("<") + b"".join(bl)
        raw += _shb(">") + ifaces(">") + b"".join(body(">", 1500, 3000))
        for tail in (b"", raw[-200:-100]):
            path = tmp_path / f"{name}{len(tail)}.pcapng"
            path.write_bytes(raw + tail)
            for mr in (65536, 999):
                _compare(path, mr, lim=1000)
                _compare(path, mr)
        gz = tmp_path / f"{name}.pcapng.gz"
        gz.write_bytes(gzip.compress(raw, 1))
        _compare(gz, lim=1000)


# --------------------------------------------------------------------------- hypothesis: decode

_ETHERTYPES = (0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x9200, 0x0806, 0x8864, 0x8847, 0x6558)
_PROTOS = (6, 6, 6, 17, 1, 4, 41, 47, 51, 0, 43, 60, 44, 58, 59, 132)


@st.composite
def _tcp(draw: st.DrawFn) -> bytes:
    doff = draw(st.sampled_from([5, 5, 5, 8, 0, 4, 15, 6]))
    hdr = struct.pack(
        "!HHIIBBHHH",
        draw(st.integers(0, 65535)),
        draw(st.integers(0, 65535)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
        doff << 4 | draw(st.integers(0, 15)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 65535)),
        0,
        0,
    )
    opts = bytes(max(doff - 5, 0) * 4)
    return hdr + opts + draw(st.binary(max_size=40))


@st.composite
def _ip(draw: st.DrawFn, version: int) -> bytes:
    proto = draw(st.sampled_from(_PROTOS))
    inner = draw(_tcp()) if proto == 6 or draw(st.booleans()) else draw(st.binary(max_size=60))
    if version == 4:
        ihl = draw(st.sampled_from([5, 5, 5, 6, 15, 4, 0]))
        ver = draw(st.sampled_from([4, 4, 4, 4, 6, 0]))
        opts = bytes(max(ihl - 5, 0) * 4)
        tot = draw(
            st.sampled_from([20 + len(opts) + len(inner), 0, 19, ihl * 4, 20 + len(opts) + 3])
            | st.integers(0, 65535)
        )
        frag = draw(st.sampled_from([0, 0x4000, 0x2000, 0x2001, 0x00B9, 0x1FFF]))
        hdr = struct.pack(
            "!BBHHHBBH",
            ver << 4 | ihl,
            0,
            tot,
            draw(st.integers(0, 65535)),
            frag,
            draw(st.integers(0, 255)),
            proto,
            0,
        )
        return hdr + draw(st.binary(min_size=8, max_size=8)) + opts + inner
    ver = draw(st.sampled_from([6, 6, 6, 4]))
    plen = draw(st.sampled_from([len(inner), 0, 3, len(inner) + 100]) | st.integers(0, 65535))
    nh = 6 if proto in (1, 132) else proto
    hdr = struct.pack("!IHBB", ver << 28, plen, nh, draw(st.integers(0, 255)))
    return hdr + draw(st.binary(min_size=32, max_size=32)) + inner


@st.composite
def _frame(draw: st.DrawFn) -> tuple[int, bytes, int]:
    """(linktype, captured bytes, wire length) of one record."""
    lt = draw(st.sampled_from([1, 1, 1, 1, 113, 276, 0, 108, 228, 229, 101, 12, 14, 147]))
    version = draw(st.sampled_from([4, 4, 6]))
    ip = draw(_ip(version))
    et = 0x0800 if version == 4 else 0x86DD
    if draw(st.integers(0, 9)) == 0:
        et = draw(st.sampled_from(_ETHERTYPES) | st.integers(0, 65535))
    if lt == 1:
        tags = b"".join(
            struct.pack("!HH", draw(st.sampled_from(_ETHERTYPES[2:6])), draw(st.integers(0, 65535)))
            for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3])))
        )
        frame = bytes(12) + tags + struct.pack("!H", et) + ip
    elif lt == 113:
        frame = bytes(14) + struct.pack("!H", et) + ip
    elif lt == 276:
        frame = struct.pack("!H", et) + bytes(18) + ip
    elif lt in (0, 108):
        af = draw(st.sampled_from([2, 24, 28, 30, 7]) | st.integers(0, 2**32 - 1))
        order = ">" if lt == 108 or draw(st.booleans()) else "<"
        frame = struct.pack(order + "I", af) + ip
    elif lt == 147:
        frame = draw(st.binary(max_size=60))
    else:
        frame = ip
    if draw(st.integers(0, 4)) == 0:  # snaplen cut
        frame = frame[: draw(st.integers(0, len(frame)))]
    if draw(st.integers(0, 19)) == 0:  # bit rot
        frame = draw(st.binary(min_size=len(frame), max_size=len(frame)))
    wire = draw(st.sampled_from([len(frame), len(frame) + 100, 0, len(frame) // 2]))
    return lt, frame, wire


@st.composite
def _batch(draw: st.DrawFn) -> RecordBatch:
    recs = draw(st.lists(_frame(), min_size=1, max_size=40))
    gaps = draw(st.lists(st.integers(0, 3), min_size=len(recs), max_size=len(recs)))
    data = bytearray()
    offs = []
    for (_, f, _), g in zip(recs, gaps, strict=True):
        data += bytes(g)
        offs.append(len(data))
        data += f
    n = len(recs)
    offset = np.array(offs, np.int64)
    caplen = np.array([len(f) for _, f, _ in recs], np.int32)
    if draw(st.integers(0, 9)) == 0:  # a record outside the buffer
        k = draw(st.integers(0, n - 1))
        offset[k], caplen[k] = draw(st.sampled_from([(len(data) + 5, 10), (-3, 4), (0, -1)]))
    return RecordBatch(
        data=np.frombuffer(bytes(data), np.uint8),
        frame=np.arange(1, n + 1, dtype=np.int64),
        ts_ns=np.arange(n, dtype=np.int64) * 1000,
        offset=offset,
        caplen=caplen,
        wirelen=np.array([w for _, _, w in recs], np.int32),
        linktype=np.array([lt for lt, _, _ in recs], np.uint16),
        interface=np.zeros(n, np.uint16),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batch())
def test_decode_paths_agree(batch: RecordBatch) -> None:
    with mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": "0"}):
        pure = decode_batch(batch)
    with mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": "1"}):
        fast = decode_batch(batch)
    _same_decode(pure, fast, "batch")


# --------------------------------------------------------------------------- hypothesis: walk


@st.composite
def _capture(draw: st.DrawFn) -> bytes:
    """A pcap or pcapng of generated frames, big enough for the fast walk once the limits
    are patched down, with some damage."""
    frames = draw(st.lists(_frame(), min_size=1, max_size=30))
    n = draw(st.integers(150, 400))
    picks = [frames[i % len(frames)] for i in range(n)]
    pad = bytes(draw(st.integers(0, 300)))
    if draw(st.booleans()):
        order = draw(st.sampled_from("<>"))
        lt = picks[0][0]
        caplen: dict[int, int] = {}
        wirelen = {i: w for i, (_, _, w) in enumerate(picks)}
        if draw(st.integers(0, 3)) == 0:
            caplen[draw(st.integers(0, n - 1))] = draw(st.sampled_from([1200, 10**6, 2**31]))
        raw = _pcap(
            [f + pad for _, f, _ in picks],
            order=order,
            linktype=lt,
            snaplen=draw(st.sampled_from([262144, 500, 0])),
            caplen=caplen,
            wirelen=wirelen,
            magic=draw(st.sampled_from([0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34])),
        )
    else:
        order = draw(st.sampled_from("<>"))
        lts = sorted({lt for lt, _, _ in picks})
        raw = _shb(order) + b"".join(_idb(lt, order) for lt in lts)
        for i, (lt, f, w) in enumerate(picks):
            raw += _epb(f + pad, lts.index(lt), T0 * 10**6 + i, order, wire=w)
            if draw(st.integers(0, 60)) == 0:
                raw += draw(
                    st.sampled_from(
                        [
                            _block(3, struct.pack(order + "I", 40) + bytes(40), order),
                            _block(5, bytes(16), order),
                            _epb(b"x" * 50, 7, order=order),
                            _block(6, bytes(40), order, trailer=12),
                            _idb(1, order),
                        ]
                    )
                )
    if draw(st.integers(0, 4)) == 0:
        raw = raw[: len(raw) - draw(st.integers(1, 200))]
    return raw


_SCRATCH = Path(tempfile.mkdtemp(prefix="test_compiled_"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_capture(), st.sampled_from([65536, 1, 17, 100]), st.booleans())
def test_walk_paths_agree(raw: bytes, max_records: int, gz: bool) -> None:
    path = _SCRATCH / ("x.cap.gz" if gz else "x.cap")
    path.write_bytes(gzip.compress(raw, 1) if gz else raw)
    _compare(path, max_records, lim=600)


# --------------------------------------------------------------------------- when and how it loads


def test_consumer_changes_a_column(tmp_path: Path) -> None:
    """Decoded-on-the-way rows are not used once the batch's columns were replaced."""
    path = tmp_path / "c.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 100) for i in range(3000)]))
    with (
        mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": "1"}),
        _limits(2000),
        open_capture(path) as cap,
    ):
        batch = next(iter(cap.batches()))
        assert batch._pre is not None
        batch.caplen = batch.caplen.copy()
        batch.caplen[:50] = 30  # cut inside the TCP header
        fast = decode_batch(batch)
    with mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": "0"}):
        batch._pre = None
        pure = decode_batch(batch)
    _same_decode(pure, fast, "changed batch")
    assert fast.malformed_count == 50


def test_predecoded_rows_are_used_once(tmp_path: Path) -> None:
    path = tmp_path / "o.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 10) for i in range(3000)]))
    with (
        mock.patch.dict(os.environ, {"PCAPDIAG_COMPILED": "1"}),
        _limits(2000),
        open_capture(path) as cap,
    ):
        batch = next(iter(cap.batches()))
        first, second = decode_batch(batch), decode_batch(batch)
    _same_decode(first, second, "twice")
    assert not np.shares_memory(first.tcp.seq, second.tcp.seq)


def test_tcp_dtypes_match_the_decoder() -> None:
    assert [np.dtype(t) for t in reader.TCP_DTYPES] == [
        np.dtype(t) for t in decode._TCP_FIELDS.values()
    ]


def test_small_capture_does_not_import_numba() -> None:
    """The test suite and most runs read small captures: no 0.7 s numba import."""
    sample = next(p for p in CAPTURES if p.suffix == ".pcap")
    code = (
        "import sys; from pcapdiag import reader, decode\n"
        f"with reader.open_capture({str(sample)!r}) as c:\n"
        "    [decode.decode_batch(b) for b in c.batches()]\n"
        "print('numba' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PCAPDIAG_COMPILED"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PCAPDIAG_COMPILED", raising=False)
    monkeypatch.setattr(reader, "_kernels", None)
    monkeypatch.setattr(reader, "_kernels_failed", False)
    monkeypatch.setattr(reader, "_COMPILE_PROBE", 100)
    monkeypatch.setattr(reader, "COMPILE_MIN_RECORDS", 2500)
    monkeypatch.setattr(reader, "COMPILE_MIN_RECORDS_BUILT", 2500)
    # as in a process where nothing loaded the kernels built ahead of time
    monkeypatch.setattr(reader, "_built_loaded", lambda: False)


def test_kernels_built_and_loaded_serve_from_the_first_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the module of kernels built ahead of time is loaded already (the fast lane
    took it), the reader uses its kernels from the first batch, however small the
    capture, and reads what the pure path reads."""
    from pcapdiag import _native

    loaded = reader._built_loaded
    monkeypatch.setattr(_native, "_ext", None)  # none loaded: the reader does not ask
    assert not loaded()
    monkeypatch.setattr(_native, "_ext", False)  # none could be
    assert not loaded()
    monkeypatch.undo()
    path = tmp_path / "s.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30) for i in range(2000)]))
    _unset(monkeypatch)
    pure = drain_decoded(path, 200)
    assert reader._kernels is None
    monkeypatch.setattr(reader, "_built_loaded", lambda: True)
    assert drain_decoded(path, 200) == pure
    assert reader._kernels is not None or reader._kernels_failed


def test_big_capture_loads_the_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "b.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30) for i in range(3000)]))
    _unset(monkeypatch)
    d = drain_decoded(path, 200)
    assert reader._kernels is not None
    assert d == drain_decoded(path, 200)


def test_big_gzip_capture_loads_the_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For gzip the estimate uses the compressed bytes consumed."""
    path = tmp_path / "b.pcap.gz"
    path.write_bytes(gzip.compress(_pcap([_tcp_frame(i, 30) for i in range(6000)])))
    _unset(monkeypatch)
    with mock.patch.object(reader, "_IN_CHUNK", 2048):  # several pieces
        d = drain_decoded(path, 200)
    assert reader._kernels is not None
    assert len(d) == 6000


def test_mapping_ahead_unsupported(tmp_path: Path) -> None:
    """Where the system refuses MADV_POPULATE_READ the walk simply takes page faults."""
    path = tmp_path / "m.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30 + i % 700) for i in range(3000)]))
    with mock.patch.object(reader, "_MADV_POPULATE_READ", 0x7FFF):
        _compare(path, 1000, lim=2000)


def test_small_capture_stays_pure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30) for i in range(2000)]))
    _unset(monkeypatch)
    drain_decoded(path, 200)
    assert reader._kernels is None
    path.write_bytes(gzip.compress(_pcap([_tcp_frame(i, 30) for i in range(2000)])))
    drain_decoded(path, 200)
    assert reader._kernels is None


def test_pipe_loads_the_kernels_after_enough_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _pcap([_tcp_frame(i, 30) for i in range(3000)])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(raw)

    _unset(monkeypatch)
    writer = threading.Thread(target=feed)
    writer.start()
    try:
        rows = drain_decoded(fifo, 200)
    finally:
        writer.join()
    assert reader._kernels is not None
    assert len(rows) == 3000


def drain_decoded(path: Path, max_records: int) -> list[tuple[int, int, int]]:
    rows: list[tuple[int, int, int]] = []
    with open_capture(path) as cap:
        for b in cap.batches(max_records):
            tcp = decode_batch(b).tcp
            rows += zip(tcp.frame.tolist(), tcp.sport.tolist(), tcp.seq.tolist(), strict=True)
    return rows


def test_forced_off_never_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30) for i in range(3000)]))
    _unset(monkeypatch)
    monkeypatch.setenv("PCAPDIAG_COMPILED", "0")
    drain_decoded(path, 200)
    assert reader._kernels is None


def test_without_numba_the_pure_path_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "n.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30) for i in range(3000)]))
    monkeypatch.setattr(reader, "_kernels", None)
    monkeypatch.setattr(reader, "_kernels_failed", False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    from pcapdiag import _native

    monkeypatch.setattr(_native, "_kernels", {})  # nor any built ahead of time (no numba)
    monkeypatch.setattr(_native, "_ext", None)
    monkeypatch.setattr(_native, "_name", None)
    monkeypatch.delitem(sys.modules, "pcapdiag._compiled", raising=False)
    monkeypatch.delattr(pcapdiag, "_compiled", raising=False)
    monkeypatch.setenv("PCAPDIAG_COMPILED", "1")
    with _limits(2000):
        rows = drain_decoded(path, 500)
    assert reader._kernels is None and reader._kernels_failed
    assert len(rows) == 3000


def test_a_failing_kernel_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "k.pcap"
    path.write_bytes(_pcap([_tcp_frame(i, 30 + i % 500) for i in range(3000)]))
    kern = reader.compiled_kernels(load=True)

    def broken(*args: Any) -> Any:
        raise TypeError("no matching definition")

    with (
        mock.patch.object(kern, "pcap_walk", broken),
        mock.patch.object(kern, "decode_common", broken),
    ):
        _compare(path, 700, lim=2000)
