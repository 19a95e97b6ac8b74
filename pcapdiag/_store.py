"""Connection records in bounded memory, for captures with millions of connections.

A record is ~5 KB as Python objects; here the first ``LIVE`` records of the process stay
objects (a usual analysis pays nothing) and the rest become *rows*: the tuple of every
field but ``events``, kept by chunks of ``CHUNK`` as two zlib-compressed pickles, rows
and events apart (~150 bytes a record together). Why this shape, measured per record:

- a pickled dataclass costs ~25 µs to dump and ~35 µs to load; its fields as a tuple
  (``operator.attrgetter``, one C call) dump in ~4 µs and load in ~7 µs;
- ``events`` (a list of tuples) are two thirds of that work and no part of the JSON
  contract: apart, ``--format json`` never decodes them;
- chunks are compressed once, in the worker, and decompressed once, when written: the
  merge adopts them as they are (below) instead of decoding and re-encoding every record.

``RecordStore`` collects a worker's records in the order the tracker finishes them, which
is nearly the order of their first frame: each record joins the first *run* whose last
first frame is lower (patience sorting), so a few runs hold everything, each sorted. Along
with them it keeps per record, in arrival order, the first frame, the columns ``Records``
summarises from, and the record's ``CrossFacts`` (the few integers the cross-connection
pass needs): the merge then never needs the records themselves.

``Records`` is the final sequence an ``Analysis`` holds, in id order (by first frame). It
*adopts* the runs of the stores of a capture set (``adopt``): merged a window at a time
(``_merged``: each run is sorted already), they give each id its run and position, and
the facts are kept as they came, with each record's id (``CrossFacts.extend``). Walking
the ids in order then reads each run front to back, one decoded chunk per run in memory
(a row's id is its position: the one it was stored with is the worker's). Records read from it are copies except those kept as objects: to
change one, assign it back (``records[i] = rec``), kept as an object beside the runs. The
retries and forged refusals ``CrossFacts.apply`` finds are spread over every chunk: it
hands them over as edits (``edit``), made whenever the record is read.

Chunks beyond ``SPILL`` bytes in memory (all stores of the process together) go to a
temporary file, and so do the per-record columns once big (``_columns.Column``: the
stores', the ids' and the facts'), so memory stays flat however many connections there
are.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import os
import pickle
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any, overload

import numpy as np

from pcapdiag import _arrays, _columns
from pcapdiag._columns import Column, settle
from pcapdiag._columns import full as full_column
from pcapdiag._fastlane import _OUTCOMES as _FAST_OUTCOMES
from pcapdiag._fastlane import K_HASH, Block, Lines
from pcapdiag._fastlane import events as block_events
from pcapdiag._fastlane import facts as block_facts
from pcapdiag._fastlane import record as block_record
from pcapdiag._fastlane import rows as block_rows
from pcapdiag.classify import OUTCOMES
from pcapdiag.explain import ConnectionRecord, CrossFacts

CHUNK = 512  # records per compressed chunk
FAST_CHUNK = 2048  # ... of the fast lane's (columns: numpy's and numba's calls cost less)
SPILL = 2 * 1024 * 1024  # bytes of chunks kept in memory; the rest go to a temporary file
LIVE = 1_000  # records kept as objects (~5 KB each), in all stores of the process together
JSON_SEP = ",\n  "  # between the JSON output's lines (``report.data.write_json``)
_SEP = JSON_SEP.encode()
MAX_RUNS = 16  # more runs than this (input far from sorted): the shortest are merged
_BLOCK = 65_536  # ids whose order a walk reads at once
_CODE = {o: i for i, o in enumerate(OUTCOMES)}
_FAST_CODES = np.array([_CODE[o] for o in _FAST_OUTCOMES], np.uint8)  # _fastlane.O_* as ours

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ConnectionRecord))
_EV = FIELDS.index("events")
ROW: tuple[str, ...] = FIELDS[:_EV] + FIELDS[_EV + 1 :]  # a row's fields, in this order
row_of = attrgetter(*ROW)  # a record's row, in one C call
_SEED = hash("pcapdiag.records")  # str hashes differ between processes not forked from ours

Row = tuple[Any, ...]


def _pack(rows: list[Row], events: list[list[Any]]) -> bytes:
    a = zlib.compress(pickle.dumps(rows, protocol=5), 1)
    b = zlib.compress(pickle.dumps(events, protocol=5), 1)
    return len(a).to_bytes(4, "little") + a + b


def _unpack(blob: bytes, events: bool) -> tuple[list[Row], list[list[Any]] | None]:
    n = int.from_bytes(blob[:4], "little")
    view = memoryview(blob)
    rows = pickle.loads(zlib.decompress(view[4 : 4 + n]))
    return rows, pickle.loads(zlib.decompress(view[4 + n :])) if events else None


def _record(row: Row, events: list[Any], rec_id: int | None) -> ConnectionRecord:
    rec = ConnectionRecord(*row[:_EV], events, *row[_EV:])
    if rec_id is not None:
        rec.id = rec_id
    return rec


class _Spill:
    """The temporary file chunks spill to: one per process (a file per store would run
    out of descriptors with thousands of captures), closed and gone once no store holds
    a chunk in it.

    A worker forked for a local pool (``share``) spills into a named file in the folder
    its parent made, and its stores travel to the parent with their chunks' places in
    that file, not the chunks: the parent opens the file (``reading``) and reads them
    there. Pickled as bytes, the chunks of eight times the benchmark's capture were most
    of both processes' peaks with ``--jobs 2`` (a worker's whole result in one pickle,
    and the parent's copy of it)."""

    current: _Spill | None = None
    opened: dict[str, _Spill] = {}  # other processes' files read here, by path

    def __init__(self, path: str | None = None) -> None:
        self.pid = os.getpid()  # a forked worker writes a file of its own
        self.users = 0
        self.path = path  # a named file (shared, or another process's)
        self.foreign = path is not None  # another process's: read, never written here
        if path is not None:
            self.file: Any = open(path, "rb")  # noqa: SIM115 - closed by release
        elif SHARE is not None and SHARE[1] != self.pid:
            fd, self.path = tempfile.mkstemp(prefix="records-", dir=SHARE[0])
            self.file = os.fdopen(fd, "w+b")
        else:
            self.file = tempfile.TemporaryFile(prefix="pcapdiag-records-")  # noqa: SIM115 - closed by release

    @classmethod
    def join(cls) -> _Spill:
        spill = cls.current
        if spill is None or spill.pid != os.getpid():
            spill = cls.current = cls()
        spill.users += 1
        return spill

    @classmethod
    def reading(cls, path: str) -> _Spill:
        """Another process's file (``share``), opened once however many stores read it."""
        spill = cls.opened.get(path)
        if spill is None or spill.pid != os.getpid():
            spill = cls.opened[path] = cls(path)
        spill.users += 1
        return spill

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            with contextlib.suppress(OSError):  # what a full disk left in its buffer
                self.file.close()
            cls = type(self)
            if cls.current is self:
                cls.current = None
            if self.path is not None and cls.opened.get(self.path) is self:
                del cls.opened[self.path]


SHARE: tuple[str, int] | None = None  # (folder, the pool's parent): see ``share``


@contextlib.contextmanager
def share(folder: str) -> Iterator[None]:
    """While in it, workers this process forks spill into ``folder`` and send their
    chunks (``_Spill``) and big columns (``_columns.Column``) by reference. The folder
    must outlive the workers' results' unpickling (a file, once opened here, outlives
    the folder)."""
    global SHARE
    old, SHARE = SHARE, (folder, os.getpid())
    _columns.SHARE = SHARE  # (their big columns too)
    try:
        yield
    finally:
        SHARE = _columns.SHARE = old


class _Blobs:
    """A run's compressed chunks: in memory while the process holds fewer than ``SPILL``
    bytes of them, then in the process's temporary file, or in memory again if that
    cannot be written (a full temporary directory: the analysis goes on, in more
    memory)."""

    held = 0  # bytes in memory, every store of the process together
    broken = False  # the temporary file could not be written: no more spilling

    __slots__ = ("_items", "_size", "_spill")

    def __init__(self) -> None:
        self._items: list[bytes | tuple[int, int]] = []  # a chunk, or where it is in the file
        self._size = 0  # bytes of the chunks in memory
        self._spill: _Spill | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, blob: bytes) -> int:
        k = len(self._items)
        if (
            (self._spill is None and _Blobs.held + len(blob) <= SPILL)
            or _Blobs.broken
            or (self._spill is not None and self._spill.foreign)  # (not a chunk so far)
        ):
            self._keep(blob)
            return k
        try:
            if self._spill is None:
                self._spill = _Spill.join()
            f = self._spill.file
            f.seek(0, os.SEEK_END)
            at = f.tell()
            f.write(blob)
            f.flush()  # ``get`` reads the file itself
        except OSError:
            _Blobs.broken = True
            self._keep(blob)
            return k
        self._items.append((at, len(blob)))
        return k

    def _keep(self, blob: bytes) -> None:
        self._items.append(blob)
        self._size += len(blob)
        _Blobs.held += len(blob)

    def get(self, k: int) -> bytes:
        item = self._items[k]
        if type(item) is bytes:
            return item
        off, length = item  # type: ignore[misc]
        assert self._spill is not None
        # pread, not seek + read: a forked process (``report.data.write_json``) shares
        # the file's offset
        return os.pread(self._spill.file.fileno(), length, off)

    def __getstate__(self) -> list[bytes] | tuple[str, list[bytes | tuple[int, int]]]:
        """Every chunk as bytes (a worker's store travels to the parent process), or the
        file's path and the chunks' places in it, where it is shared (``_Spill``)."""
        spill = self._spill
        if spill is not None and spill.path is not None and not spill.foreign:
            return spill.path, self._items
        return [self.get(k) for k in range(len(self))]

    def __setstate__(self, state: list[bytes] | tuple[str, list[bytes | tuple[int, int]]]) -> None:
        self.__init__()  # type: ignore[misc]
        if isinstance(state, tuple):
            path, items = state
            self._spill = _Spill.reading(path)
            for item in items:
                if type(item) is bytes:
                    self._keep(item)
                else:
                    self._items.append(item)
            return
        for b in state:
            self.add(b)

    def __del__(self) -> None:
        type(self).held -= getattr(self, "_size", 0)
        spill = getattr(self, "_spill", None)
        if spill is not None:
            spill.release()


class _Run:
    """Records in one order: the first as objects, then rows in sealed chunks of ``size``
    (their ids in ``blobs``), then an open tail of rows and their events."""

    held = 0  # records kept as objects, every run of the process together

    __slots__ = ("blobs", "size", "objects", "chunks", "rows", "events", "index", "renumber")

    def __init__(self) -> None:
        self.blobs = _Blobs()  # its own: a run merged into another lets its chunks go
        self.size = CHUNK
        self.objects: list[ConnectionRecord] = []
        self.chunks: list[int] = []
        self.rows: list[Row] = []
        self.events: list[list[Any]] = []
        self.index = Column("I")  # arrival number of each record in its store
        self.renumber = False  # ids are positions in the ``Records`` that adopted the run

    def __len__(self) -> int:
        return len(self.objects) + len(self.chunks) * self.size + len(self.rows)

    def add(self, rec: ConnectionRecord) -> None:
        if _Run.held < LIVE and not self.rows and not self.chunks:
            self.objects.append(rec)
            _Run.held += 1
        else:
            self.add_row(row_of(rec), rec.events)

    def add_row(self, row: Row, events: list[Any]) -> None:
        self.rows.append(row)
        self.events.append(events)
        if len(self.rows) >= self.size:
            self.chunks.append(self.blobs.add(_pack(self.rows, self.events)))
            self.rows, self.events = [], []

    def chunk(self, c: int, events: bool) -> tuple[list[Row], list[list[Any]] | None]:
        return _unpack(self.blobs.get(self.chunks[c]), events)

    def items(self) -> Iterator[tuple[Row, list[Any]]]:
        """Every record as (row, events), in order."""
        for rec in self.objects:
            yield row_of(rec), rec.events
        for c in range(len(self.chunks)):
            rows, events = self.chunk(c, True)
            assert events is not None
            yield from zip(rows, events, strict=True)
        yield from zip(self.rows, self.events, strict=True)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for k, v in zip(self.__slots__, state, strict=True):
            setattr(self, k, v)
        _Run.held += len(self.objects)

    def __del__(self) -> None:
        type(self).held -= len(getattr(self, "objects", ()))


class _FastRun:
    """The fast lane's records in one order (``_fastlane.Block``s): as ``_Run``, but a
    sealed chunk is a block of ``size`` connections as columns, and a record is made from
    it only when one is read (``chunk``). The JSON output takes its lines from the block
    instead (``lines``), which is most of the lane's speed."""

    __slots__ = ("blobs", "size", "objects", "chunks", "rows", "events", "index", "renumber",
                 "path", "t0", "sealed", "short", "_tail", "_ntail", "_last")  # fmt: skip

    def __init__(self, path: str, t0: int) -> None:
        self.blobs = _Blobs()
        self.size = FAST_CHUNK
        self.objects: list[ConnectionRecord] = []  # never any: the ``_Run`` interface
        self.chunks: list[int] = []
        self.rows: list[Row] = []  # ... nor an open tail once sealed (``seal``)
        self.events: list[list[Any]] = []
        self.index = Column("I")
        self.renumber = False
        self.path, self.t0 = path, t0
        self.sealed = 0  # connections in sealed chunks
        self.short = False  # the last sealed chunk is short (``seal``): no more blocks
        self._tail: list[Block] = []  # blocks not sealed yet
        self._ntail = 0
        self._last: tuple[int, Block, Lines | None] | None = None  # a decoded chunk

    def __len__(self) -> int:
        return self.sealed + self._ntail

    def add_block(self, block: Block) -> None:
        """The next connections, in order."""
        assert not self.short, "a sealed run takes no more"
        self._tail.append(block.copy())  # not a view keeping a larger block alive
        self._ntail += len(block)
        if self._ntail >= self.size:
            b = Block.concat(self._tail)
            k = 0
            while len(b) - k >= self.size:
                self.chunks.append(self.blobs.add(_pack_block(b.take(k, k + self.size))))
                k += self.size
                self.sealed += self.size
            self._tail = [b.take(k, len(b)).copy()] if k < len(b) else []
            self._ntail = len(b) - k

    def seal(self) -> None:
        """The open tail becomes the last chunk (short): a run read by ``Records``."""
        if self._ntail:
            self.chunks.append(self.blobs.add(_pack_block(Block.concat(self._tail))))
            self.sealed += self._ntail
            self._tail, self._ntail = [], 0
            self.short = True

    def _block(self, c: int) -> tuple[Block, Lines | None]:
        last = self._last
        if last is None or last[0] != c:
            blob = self.blobs.get(self.chunks[c])
            last = self._last = (c, pickle.loads(blob), None)
        return last[1], last[2]

    def blocks(self) -> list[Block]:
        """Every connection's block, in order (the tail's too)."""
        return [self._block(c)[0] for c in range(len(self.chunks))] + self._tail

    def chunk(self, c: int, events: bool) -> tuple[list[Row], list[list[Any]] | None]:
        # from the block's columns, not its records (each is made from its row after)
        block = self._block(c)[0]
        rows = block_rows(block, self.path, self.t0)
        return rows, [block_events(block, j) for j in range(len(block))] if events else None

    def one(self, c: int, j: int, events: bool) -> tuple[list[Row], list[list[Any]] | None]:
        """``chunk`` of record ``j`` of chunk ``c`` alone (a chunk's rows take ~10 ms)."""
        rec = block_record(self._block(c)[0], j, self.path, self.t0)
        return [row_of(rec)], [rec.events] if events else None

    def lines(self, c: int, j: int, m: int, ids: np.ndarray, sep: bytes) -> bytes | memoryview:
        """JSON lines of connections ``j``..``j + m`` of chunk ``c``, joined by ``sep``;
        ``ids``: the id of each connection of the chunk (``_fastlane.Lines.span``)."""
        block, lines = self._block(c)
        if lines is None:
            lines = Lines(block, self.path, self.t0)
            self._last = (c, block, lines)
        return lines.span(j, m, ids, sep)

    def __getstate__(self) -> tuple[Any, ...]:
        self.seal()
        return tuple(getattr(self, k) for k in self.__slots__[:-3])

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for k, v in zip(self.__slots__[:-3], state, strict=True):
            setattr(self, k, v)
        self._tail, self._ntail, self._last = [], 0, None


def _pack_block(block: Block) -> bytes:
    # Not compressed: its narrowed columns compress only 2:1, and zlib cost 0.26 s of a
    # 4.8 s analysis of 126,000 connections (2026-12-06); past ``SPILL`` they go to the
    # temporary file at the speed of the page cache instead.
    return pickle.dumps(block, protocol=5)


class RecordStore:
    """A worker's records in runs sorted by first frame, with their facts; see the module
    docstring."""

    def __init__(self) -> None:
        self.runs: list[_Run] = []
        self._lasts: list[int] = []  # -last first frame of each run: increasing
        # per record, in arrival order
        self.first = Column("I")  # 4 bytes while frames stay under 2**32 (``_wide``)
        self.outcome = Column("B")
        self.folds: dict[int, int] = {}  # the connections a folded record counts (not 1)
        self.facts = CrossFacts(ids=False)  # its ``_start`` is the start_ns column
        self.seed = _SEED  # the facts' hashes are comparable with the merging process's
        # a fast lane's store: each record's 4-tuple hash (``append_block``), and the
        # records the merge leaves out (``leave_out``: their arrivals, sorted)
        self.keys = Column("q")
        self.gone: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.first)

    def append(self, rec: ConnectionRecord, key: int | None = None) -> None:
        """The next record; ``key``: a fast lane's, its 4-tuple hash."""
        i = len(self.first)
        if key is not None:
            self.keys.append(key)
        ff = rec.first_frame
        if ff >= 2**32 and self.first.typecode == "I":
            self._wide()
        self.first.append(ff)
        self.outcome.append(_CODE[rec.outcome])
        if rec.count != 1:
            self.folds[i] = rec.count
        self.facts.add(rec)
        key = -ff
        # leftmost run whose last first frame is lower: runs' lasts decrease left to right
        k = bisect.bisect_right(self._lasts, key)
        if k == len(self.runs):
            if k >= MAX_RUNS:
                self._merge_shortest()
                k = bisect.bisect_right(self._lasts, key)
            if k == len(self.runs):
                self.runs.append(_Run())
                self._lasts.append(key)
        run = self.runs[k]
        run.index.append(i)
        run.add(rec)
        self._lasts[k] = key

    def append_block(self, block: Block, path: str, t0: int) -> None:
        """The fast lane's connections (a ``_fastlane.Block``, in order of first frame),
        placed as ``append`` would place them one by one: a record's run is the leftmost
        whose last first frame is lower, and in a sorted block those runs only go left,
        so each run takes one slice of it, found for all at once by ``searchsorted``."""
        i0, m = len(self.first), len(block)
        ff = block.first
        if len(ff) and int(ff[-1]) >= 2**32 and self.first.typecode == "I":  # (sorted)
            self._wide()
        self.first.frombytes(np.ascontiguousarray(ff, dtype=self.first.typecode).tobytes())
        self.outcome.frombytes(_FAST_CODES[block.derived()["outcome"]].tobytes())
        self.keys.frombytes(np.ascontiguousarray(block.rows[:, K_HASH]).tobytes())
        self.facts.add_block(block_facts(block))
        while True:
            k = np.searchsorted(np.array(self._lasts, np.int64), -ff, side="right")
            if not (k == len(self.runs)).any() or len(self.runs) < MAX_RUNS:
                break
            self._merge_shortest()
        # k falls along the block: each run's slice
        cut = np.flatnonzero(k[1:] != k[:-1]) + 1
        for lo, hi in zip([0, *cut.tolist()], [*cut.tolist(), m], strict=True):
            r = int(k[lo])
            if r == len(self.runs):
                self.runs.append(_FastRun(path, t0))
                self._lasts.append(0)
            run = self.runs[r]
            assert isinstance(run, _FastRun)
            run.add_block(block.take(lo, hi))
            run.index.frombytes(np.arange(i0 + lo, i0 + hi, dtype=np.uint32).tobytes())
            self._lasts[r] = -int(ff[hi - 1])

    def leave_out(self, arrivals: np.ndarray) -> None:
        """Records (by arrival) the merge is not to keep: a fast lane's copies of
        connections the exact tracker also followed (``analysis._overlapped``)."""
        if len(arrivals):
            old = self.gone if self.gone is not None else np.zeros(0, np.int64)
            self.gone = _arrays.union(old, np.asarray(arrivals, np.int64))

    def _wide(self) -> None:
        """First frames as 8 bytes from here: a capture set past 2**32 frames."""
        self.first = Column("q", _firsts(self).astype(np.int64).tobytes())

    def _merge_shortest(self) -> None:
        """Merge the two shortest runs into one, where the left one was (input far from
        sorted order makes more than ``MAX_RUNS``): only their records are decoded and
        sealed again. The left run's last first frame is the larger, so runs' lasts
        still decrease left to right."""
        runs = self.runs
        a, b = sorted(sorted(range(len(runs)), key=lambda k: len(runs[k]))[:2])
        pair = [runs[a], runs[b]]
        first = _firsts(self)
        index = np.concatenate([r.index.view() for r in pair]).astype(np.int64)
        which = np.repeat(np.arange(2), [len(r) for r in pair])
        order = np.argsort(first[index], kind="stable")
        if isinstance(pair[0], _FastRun):  # a fast store's runs are all fast
            fast = _FastRun(pair[0].path, pair[0].t0)
            fast.add_block(Block.concat([b for r in pair for b in r.blocks()]).select(order))
            fast.index = Column("I", index[order].astype(np.uint32).tobytes())
            runs[a] = fast
            del runs[b], self._lasts[b]
            return
        merged = _Run()
        merged.index = Column("I", index[order].astype(np.uint32).tobytes())
        if not any(r.rows or r.chunks for r in pair):  # objects still: they stay objects
            objects = pair[0].objects + pair[1].objects
            merged.objects = [objects[k] for k in order.tolist()]
            _Run.held += len(merged.objects)
        else:
            streams = [r.items() for r in pair]
            for k in which[order].tolist():
                merged.add_row(*next(streams[k]))
        runs[a] = merged
        del runs[b], self._lasts[b]


def _firsts(store: RecordStore) -> np.ndarray:
    """A store's first frames, in arrival order (a view: uint32 or int64)."""
    return store.first.view()


def _offsets(stores: list[RecordStore]) -> list[int]:
    """Where each store's records start, store after store (their arrival over all)."""
    return np.cumsum([0, *map(len, stores)])[:-1].tolist()


def _merged(
    stores: list[RecordStore],
) -> Iterator[tuple[np.ndarray, ...]]:
    """The records of the stores' runs in order of first frame, ties in run order, of
    each first frame the first only, a window at a time: (first frames, run, position
    there, arrival over all stores, outcome code, start).

    Each run is sorted by first frame. A window reads ``_BLOCK`` records, as many of each
    run (more where first frames repeat, so that equal ones stay together), and keeps
    those up to the lowest last first frame among the runs that go on past it: every
    record up to there is in the window, and every one left is later. One sort per
    window, of a window's records: the whole merge never holds a column of all of them."""
    cols = []  # per run: its index (arrivals in its store), its store's columns, offset
    for s, off in zip(stores, _offsets(stores), strict=True):
        first, start = _firsts(s), s.facts._start.view()
        outcome = s.outcome.view()
        for r in s.runs:
            cols.append((r.index.view(), first, outcome, start, off, s.gone))
    ptr = [0] * len(cols)
    step = max(1, _BLOCK // len(cols))  # a window's records, all runs together
    while True:
        ends, cut = [], None
        for k, (idx, first, *_) in enumerate(cols):
            size = len(idx)
            e = min(ptr[k] + step, size)
            while e < size and first[idx[e]] == first[idx[e - 1]]:
                e += 1
            ends.append(e)
            if ptr[k] < e < size:
                last = int(first[idx[e - 1]])
                cut = last if cut is None else min(cut, last)
        pieces = []
        going = False
        for k, (idx, first, outcome, start, off, gone) in enumerate(cols):
            loc = idx[ptr[k] : ends[k]]
            ff = first[loc].astype(np.int64)
            if cut is not None:
                m = int(np.searchsorted(ff, cut, side="right"))
                loc, ff = loc[:m], ff[:m]
            if len(loc):
                p = ptr[k]
                ptr[k] = p + len(loc)
                going = True
                pos = np.arange(p, ptr[k], dtype=np.uint32)
                if gone is not None:
                    kept = ~_arrays.member(loc, gone)
                    loc, ff, pos = loc[kept], ff[kept], pos[kept]
                run = np.full(len(loc), k, np.int32)
                pieces.append((ff, run, pos, loc + np.int64(off), outcome[loc], start[loc]))
        if not going:
            return
        settle(sum(len(p[0]) for p in pieces) * 17)
        out = [np.concatenate(c) for c in zip(*pieces, strict=True)]
        order = np.argsort(out[0], kind="stable")
        out = [c[order] for c in out]
        ff = out[0]
        keep = np.ones(len(ff), dtype=bool)
        keep[1:] = ff[1:] != ff[:-1]
        yield tuple(c[keep] for c in out)  # type: ignore[misc]


class Records(Sequence[ConnectionRecord]):
    """The analysis's records in id order; see the module docstring."""

    def __init__(self, records: Iterable[ConnectionRecord] = ()) -> None:
        self._runs: list[_Run] = []
        self._src = Column("I")  # per id: its run
        self._pos = Column("I")  # ... and its position there
        self._own = -1  # the run ``append`` fills, once it does
        self._over: dict[int, ConnectionRecord] = {}  # records assigned after the merge
        self._edits: dict[int, list[tuple[Callable[..., None], tuple[Any, ...]]]] = {}
        self._cache: dict[int, tuple[int, list[Row], list[list[Any]] | None]] = {}  # per run
        self._ids: dict[int, tuple[int, Column, np.ndarray]] = {}  # per fast run (``_ids_of``)
        self._outcome = Column("B")  # index in OUTCOMES
        self._folds: dict[int, int] = {}  # as a store's, by id
        self._start = Column("q")
        for r in records:
            self.append(r)

    def append(self, rec: ConnectionRecord) -> None:
        if self._own < 0:
            self._own = len(self._runs)
            self._runs.append(_Run())
        own = self._runs[self._own]
        self._src.append(self._own)
        self._pos.append(len(own))
        own.add(rec)
        self._outcome.append(_CODE[rec.outcome])
        if rec.count != 1:
            self._folds[len(self._src) - 1] = rec.count
        self._start.append(rec.start_ns)

    def adopt(
        self,
        stores: list[RecordStore],
        facts: CrossFacts,
        replace: dict[int, ConnectionRecord] | None = None,
    ) -> None:
        """Append the records of ``stores`` (one capture set) in order of first frame,
        ties in the order of ``stores`` and of their runs (as ``heapq.merge`` of them
        would give); of records with the same first frame only the first is kept (a
        fast-lane copy of a connection the exact tracker also saw gives way). ``replace``:
        records that take the place of those with their first frame (decrypted ones).
        ``facts`` adopts the stores' facts as they are, with the ids of the records kept.

        The runs are merged a window at a time (``_merged``): the only columns as long as
        all the records are those kept (the ids' runs, positions and summary columns, the
        facts' ranks), which keeps the merge's peak memory low. The stores are consumed:
        their runs move here, their columns and facts are let go."""
        runs = [r for s in stores for r in s.runs]
        if not runs:
            return
        for r in runs:
            if isinstance(r, _FastRun):
                r.seal()
        base, k0 = len(self), len(self._runs)
        total = sum(len(s) for s in stores)
        ranks = full_column("i" if total < 2**31 else "q", total, -1)
        rank = ranks.view()
        objects = np.array([len(r.objects) for r in runs], dtype=np.int64)
        held = np.flatnonzero(objects)
        replaced = np.fromiter(replace or (), dtype=np.int64, count=len(replace or ()))
        hits: list[tuple[int, int]] = []  # (id, first frame) of records replaced
        # the columns take room for every record at once, and give back what the copies
        # left out did not use: grown window by window, they moved in memory again and
        # again and left holes the allocator kept (30 MB at a million connections)
        columns = (self._src, self._pos, self._outcome, self._start)
        for c in columns:
            c.zeros(total)
        src, places, outcomes, starts = (c.view()[base:] for c in columns)
        folds = sorted(
            (off + i, c)
            for s, off in zip(stores, _offsets(stores), strict=True)
            for i, c in s.folds.items()
        )  # (arrival, count) of each folded record: few
        fold_at = np.array([a for a, _ in folds], dtype=np.int64)
        n = 0
        for ff, run, pos, arrival, outcome, start in _merged(stores):
            m = len(ff)
            ids = np.arange(n, n + m)
            src[n : n + m] = run + k0
            places[n : n + m] = pos
            outcomes[n : n + m] = outcome
            if len(fold_at):
                j = np.searchsorted(fold_at, arrival).clip(max=len(fold_at) - 1)
                (w,) = np.nonzero(fold_at[j] == arrival)
                for i, k in zip(ids[w].tolist(), j[w].tolist(), strict=True):
                    self._folds[base + i] = folds[k][1]
            starts[n : n + m] = start
            rank[arrival] = ids
            if len(held):
                mine = _arrays.member(run, held)
                mine[mine] = pos[mine] < objects[run[mine]]
                for r, p, i in zip(
                    run[mine].tolist(), pos[mine].tolist(), ids[mine].tolist(), strict=True
                ):
                    runs[r].objects[p].id = base + i
            if len(replaced):
                (w,) = np.nonzero(_arrays.member(ff, replaced))
                hits += zip((ids[w] + base).tolist(), ff[w].tolist(), strict=True)
            n += m
            settle(m * 32)  # (the columns' pages this window wrote and read)
        del src, places, outcomes, starts  # (their buffers: the columns can shrink)
        for c in columns:
            del c[base + n :]
        for r in runs:
            r.index, r.renumber = Column("I"), True
        self._runs.extend(runs)
        parts = [s.facts for s in stores]
        for s in stores:
            s.runs, s._lasts = [], []
            s.first, s.outcome, s.folds = Column("I"), Column("B"), {}
            s.facts = CrossFacts(ids=False)
        assert replace is not None or not hits
        for i, f in hits:
            rec = replace[f]  # type: ignore[index]
            rec.id = i
            self[i] = rec
        if replace or any(s.seed != _SEED for s in stores):
            del parts, rank
            for rec in self._walk(base, base + n, events=False):  # from the records
                facts.add(rec)
        else:
            facts.extend(parts, ranks, n, starts=False)  # they are ours (``starts``)

    @property
    def compressed(self) -> bool:
        """Are some records kept as rows (not objects)?"""
        return any(r.rows or r.chunks for r in self._runs)

    def outcome_counts(self) -> dict[str, tuple[int, int]]:
        """(records, connections they stand for) per outcome, from the columns (numpy:
        counting a million records one by one took a tenth of a second)."""
        codes = self._outcome.view()
        rows = np.bincount(codes, minlength=len(OUTCOMES))
        conns = rows.copy()
        for i, c in self._folds.items():
            conns[codes[i]] += c - 1
        return {o: (int(rows[k]), int(conns[k])) for k, o in enumerate(OUTCOMES) if rows[k]}

    def starts(self) -> np.ndarray:
        """Every record's start (ns) by id: ``CrossFacts.apply`` reads them here, not in
        a copy of its own (8 bytes a connection)."""
        return self._start.view()

    def column(self, name: str) -> list[Any]:
        """``outcome``, ``count`` or ``start_ns`` of every record, without decoding any."""
        if name == "outcome":
            return [OUTCOMES[c] for c in self._outcome]
        if name == "count":
            out = [1] * len(self)
            for i, c in self._folds.items():
                out[i] = c
            return out
        return list(self._start)

    def __len__(self) -> int:
        return len(self._src)

    def _chunk(self, k: int, c: int, events: bool) -> tuple[list[Row], list[list[Any]] | None]:
        """Chunk ``c`` of run ``k``: each run keeps its last one decoded, which is all a
        walk in id order needs (it reads every run front to back)."""
        hit = self._cache.get(k)
        if hit is None or hit[0] != c or (events and hit[2] is None):
            rows, evs = self._runs[k].chunk(c, events)
            hit = self._cache[k] = (c, rows, evs)
        return hit[1], hit[2]

    def _object(self, i: int) -> ConnectionRecord | None:
        """Record ``i`` if it is kept as an object."""
        over = self._over.get(i)
        if over is not None:
            return over
        run, p = self._runs[self._src[i]], self._pos[i]
        return run.objects[p] if p < len(run.objects) else None

    def _get(self, i: int) -> ConnectionRecord:
        rec = self._object(i)
        if rec is not None:
            return rec
        k, p = self._src[i], self._pos[i]
        run = self._runs[k]
        c, j = divmod(p - len(run.objects), run.size)
        if c < len(run.chunks):
            rows, events = self._chunk(k, c, True)
            assert events is not None
            row, ev = rows[j], events[j]
        else:
            row, ev = run.rows[j], run.events[j]
        return self._edited(i, _record(row, ev, i if run.renumber else None))

    def edit(self, i: int, fn: Callable[..., None], *args: Any) -> None:
        """Change record ``i`` by ``fn(record, *args)`` whenever it is read. The few
        records the cross-connection pass changes (``CrossFacts.apply``) are spread over
        every chunk: changing them now would decode them all once more. One kept as an
        object is changed at once."""
        rec = self._object(i)
        if rec is not None:
            fn(rec, *args)
            self._over[i] = rec
        else:
            self._edits.setdefault(i, []).append((fn, args))

    def _edited(self, i: int, rec: ConnectionRecord) -> ConnectionRecord:
        for fn, args in self._edits.get(i, ()):
            fn(rec, *args)
        return rec

    def _spans(
        self, lo: int, hi: int, events: bool, lines: bool = False
    ) -> Iterator[tuple[int, list[Any], list[list[Any]] | None, bool | None]]:
        """The records of ids ``lo``..``hi`` as spans of consecutive ones: (first id,
        objects or rows, their events, rows?). Objects come with None events, rows with
        theirs (None unless ``events``). A record assigned or edited after the merge is a
        span of its own. Ids are cut by ``_BLOCK``: numpy finds the spans of each."""
        marked = np.array(sorted({*self._over, *self._edits}), dtype=np.int64)
        for blo in range(lo, hi, _BLOCK):
            bhi = min(hi, blo + _BLOCK)
            src = self._src.view()[blo:bhi]
            pos = self._pos.view()[blo:bhi].astype(np.int64)
            cut = np.flatnonzero((src[1:] != src[:-1]) | (pos[1:] != pos[:-1] + 1)) + 1
            mine = marked[np.searchsorted(marked, blo) : np.searchsorted(marked, bhi)] - blo
            if len(mine):
                cut = _arrays.union(cut, np.concatenate([mine, mine + 1]))
            bounds = [0, *cut.tolist(), bhi - blo]
            for a, b in zip(bounds, bounds[1:], strict=False):
                if a < b:
                    yield from self._span(blo + a, int(src[a]), int(pos[a]), b - a, events, lines)

    def _span(
        self, i: int, k: int, p: int, n: int, events: bool, lines: bool = False
    ) -> Iterator[tuple[int, list[Any], list[list[Any]] | None, bool | None]]:
        """Ids ``i``.. ``i + n``: positions ``p``.. of run ``k`` (see ``_spans``)."""
        rec = self._over.get(i)
        if rec is not None:
            yield i, [rec], None, False
            return
        run = self._runs[k]
        end = p + n
        nobj = len(run.objects)
        if p < nobj:
            q = min(end, nobj)
            yield i, run.objects[p:q], None, False
            i, p = i + q - p, q
        if lines and isinstance(run, _FastRun) and i not in self._edits:
            ids = self._ids_of(k)
            while p < end:  # JSON lines, from the blocks (``json_lines``)
                c, j = divmod(p, run.size)
                q = min(end, p + run.size - j)
                at = c * run.size
                yield i, [run.lines(c, j, q - p, ids[at : at + run.size], _SEP)], None, None
                i, p = i + q - p, q
            return
        if isinstance(run, _FastRun) and n == 1 and p >= nobj:
            c, j = divmod(p - nobj, run.size)
            hit = self._cache.get(k)
            if c < len(run.chunks) and (hit is None or hit[0] != c or (events and hit[2] is None)):
                # one record of a chunk not decoded (edited, or looked up): made alone
                rows, evs = run.one(c, j, events)
                yield i, rows, evs, True
                return
        while p < end:
            c, j = divmod(p - nobj, run.size)
            if c < len(run.chunks):
                rows, evs = self._chunk(k, c, events)
                q = min(end, p + run.size - j)
            else:  # the open tail (c is the number of chunks)
                rows, evs = run.rows, run.events
                q = end
            m = q - p
            yield i, rows[j : j + m], None if evs is None else evs[j : j + m], True
            i, p = i + m, q

    def _ids_of(self, k: int) -> np.ndarray:
        """The id of each record of run ``k`` by its position there (-1: a record the
        merge dropped), for as long as no record is added."""
        got = self._ids.get(k)
        if got is None or got[0] != len(self):
            src, pos = self._src.view(), self._pos.view()
            col = full_column("i" if len(self) < 2**31 else "q", len(self._runs[k]), -1)
            ids = col.view()
            for lo in range(0, len(src), _BLOCK):  # narrow temporaries
                (at,) = np.nonzero(src[lo : lo + _BLOCK] == k)
                ids[pos[lo + at]] = at + lo
                settle(_BLOCK * 12)
            got = self._ids[k] = (len(self), col, ids)
        return got[2]

    def not_fast(self) -> Iterator[ConnectionRecord]:
        """The records the exact tracker made, in id order, without making one of the fast
        lane's: its template holds plain HTTP/1.x connections, so only these can have
        HTTP/2, TLS or ICMP (reading every record of a big capture costs ~40 µs each,
        most of a minute for a million)."""
        fast = [k for k, r in enumerate(self._runs) if isinstance(r, _FastRun)]
        ids = np.flatnonzero(~_arrays.member(self._src.view(), fast))
        if self._over:
            ids = _arrays.union(ids, np.fromiter(self._over, np.int64, len(self._over)))
        for i in ids.tolist():
            yield self[i]

    def _walk(self, lo: int, hi: int, events: bool = True) -> Iterator[ConnectionRecord]:
        """The records of ids ``lo``..``hi``, in order (``events``: else left empty)."""
        for i, items, evs, rows in self._spans(lo, hi, events):
            if not rows:
                yield from items
                continue
            n = len(items)
            ids = range(i, i + n) if self._runs[self._src[i]].renumber else [None] * n
            evs = evs if events and evs is not None else [[] for _ in range(n)]
            if n == 1 and i in self._edits:
                yield self._edited(i, _record(items[0], evs[0], ids[0]))
            else:
                yield from map(_record, items, evs, ids)

    def rows(self) -> Iterator[tuple[int, Row]]:
        """(id, row) of every record in id order, events left undecoded: what the JSON
        output needs, at the cost of decompressing and unpickling the rows only."""
        for i, items, _evs, rows in self._spans(0, len(self), False):
            yield from self._rows_of(i, items, bool(rows))

    def json_lines(
        self, line: Callable[[int, Row], str], lo: int = 0, hi: int | None = None
    ) -> Iterator[str | bytes | memoryview]:
        """The JSON lines of ids ``lo``..``hi`` (every record's, by default), in id order:
        ``line(id, row)`` of its row (``rows``), but the fast lane's records take theirs
        from their blocks (``_FastRun.lines``), several at once, as UTF-8: such an item
        holds lines joined by ``JSON_SEP``."""
        hi = len(self) if hi is None else hi
        for i, items, _evs, rows in self._spans(lo, hi, False, lines=True):
            if rows is None:
                yield from items
            else:
                for rid, row in self._rows_of(i, items, rows):
                    yield line(rid, row)

    def _rows_of(self, i: int, items: list[Any], rows: bool) -> Iterator[tuple[int, Row]]:
        """(id, row) of a span of ``_spans`` (objects or rows) starting at id ``i``."""
        renumber = rows and self._runs[self._src[i]].renumber
        if not rows:
            for rec in items:
                yield rec.id, row_of(rec)
        elif len(items) == 1 and i in self._edits:  # events are no part of the JSON
            rec = self._edited(i, _record(items[0], [], i if renumber else None))
            yield rec.id, row_of(rec)
        elif renumber:
            yield from zip(range(i, i + len(items)), items, strict=True)
        else:
            for row in items:
                yield row[0], row

    @overload
    def __getitem__(self, i: int) -> ConnectionRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[ConnectionRecord]: ...
    def __getitem__(self, i: int | slice) -> ConnectionRecord | list[ConnectionRecord]:
        if isinstance(i, slice):
            return [self._get(k) for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("record index out of range")
        return self._get(i)

    def __setitem__(self, i: int, rec: ConnectionRecord) -> None:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("record index out of range")
        self._over[i] = rec
        self._edits.pop(i, None)
        self._outcome[i] = _CODE[rec.outcome]
        if rec.count != 1:
            self._folds[i] = rec.count
        else:
            self._folds.pop(i, None)
        self._start[i] = rec.start_ns

    def __iter__(self) -> Iterator[ConnectionRecord]:
        return self._walk(0, len(self))

    def without_events(self) -> Iterator[ConnectionRecord]:
        """Every record in id order, its events left out: what a table of connections
        reads (the notebook's DataFrame, the HTML report); the fast lane's are made from
        their rows alone (``_fastlane.rows``)."""
        return self._walk(0, len(self), events=False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (list(self),))

    def __repr__(self) -> str:
        return f"<Records: {len(self)} connection records>"


def _rebuild(records: list[ConnectionRecord]) -> Records:
    return Records(records)
