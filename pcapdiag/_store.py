"""Connection records in bounded memory, for captures with millions of connections.

A record is ~5 KB as Python objects and ~150 bytes as a zlib-compressed pickle in a
chunk of its neighbours (they share most strings: outcome, cause, fix, client errors).
Both containers here keep the first ``LIVE`` records as objects, so a usual analysis pays
nothing, and compress the rest by chunks of ``CHUNK``.

``RecordStore`` collects a worker's records in the order the tracker finishes them, which
is nearly the order of their first frame: each record joins the first *run* whose last
first frame is lower (patience sorting), so a few runs hold everything and their k-way
merge (``ordered``) streams the records sorted, one chunk per run in memory.

``Records`` is the final, sorted sequence an ``Analysis`` holds: indexable and iterable
like a list, with small per-record columns (outcome, count, times) for summaries that
must not decode every chunk. Records read from it are copies: to change one, assign it
back (``records[i] = rec``).
"""

from __future__ import annotations

import bisect
import heapq
import os
import pickle
import tempfile
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, overload

from pcapdiag.classify import OUTCOMES
from pcapdiag.explain import ConnectionRecord

CHUNK = 512  # records per compressed chunk
SPILL = 32 * 1024 * 1024  # compressed bytes kept in memory; the rest go to a temporary file
LIVE = 5_000  # records kept as objects (~5 KB each) before compressing begins
MAX_RUNS = 16  # more runs than this (input far from sorted): merge them into one
_CACHE = 4  # decoded chunks kept for random access
_CODE = {o: i for i, o in enumerate(OUTCOMES)}


def _pack(records: list[ConnectionRecord]) -> bytes:
    return zlib.compress(pickle.dumps(records, protocol=5), 1)


def _unpack(blob: bytes) -> list[ConnectionRecord]:
    return pickle.loads(zlib.decompress(blob))


def _first_frame(r: ConnectionRecord) -> int:
    return r.first_frame


class _Run:
    """Records with increasing first frames: compressed chunks, then an open tail."""

    __slots__ = ("chunks", "tail", "last")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.tail: list[ConnectionRecord] = []
        self.last = -1

    def add(self, rec: ConnectionRecord, chunk: int) -> None:
        """``chunk``: compress the tail once it holds this many (0: keep objects)."""
        self.tail.append(rec)
        self.last = rec.first_frame
        if chunk and len(self.tail) >= chunk:
            self.chunks.append(_pack(self.tail))
            self.tail = []

    def __iter__(self) -> Iterator[ConnectionRecord]:
        """Consumes the run: each chunk is let go once decoded (the merge into the
        analysis's ``Records`` then never holds both copies)."""
        chunks, self.chunks = self.chunks, []
        for k in range(len(chunks)):
            blob, chunks[k] = chunks[k], b""
            yield from _unpack(blob)
        tail, self.tail = self.tail, []
        yield from tail


class RecordStore:
    """A worker's records, compressed beyond ``LIVE``, streamed back sorted by first frame."""

    def __init__(self) -> None:
        self._runs: list[_Run] = []
        self._lasts: list[int] = []  # -last first frame of each run: increasing
        self._n = 0
        self._cap, self._size = LIVE, CHUNK

    def __len__(self) -> int:
        return self._n

    def append(self, rec: ConnectionRecord) -> None:
        key = -rec.first_frame
        # leftmost run whose last first frame is lower: runs' lasts decrease left to right
        i = bisect.bisect_right(self._lasts, key)
        if i == len(self._runs) and i >= MAX_RUNS:
            self._compact()
            i = bisect.bisect_right(self._lasts, key)
        if i == len(self._runs):
            self._runs.append(_Run())
            self._lasts.append(key)
        self._n += 1
        self._runs[i].add(rec, self._size if self._n > self._cap else 0)
        self._lasts[i] = key

    def _compact(self) -> None:
        """Merge every run into one (input far from sorted order)."""
        merged = _Run()
        compress = self._size if self._n > self._cap else 0
        for rec in heapq.merge(*self._runs, key=_first_frame):
            merged.add(rec, compress)
        self._runs = [merged]
        self._lasts = [-merged.last]

    def ordered(self) -> Iterator[ConnectionRecord]:
        """The records sorted by first frame (ties in the order they were added); this
        empties the store."""
        if len(self._runs) == 1:
            return iter(self._runs[0])
        return heapq.merge(*self._runs, key=_first_frame)


class Records(Sequence[ConnectionRecord]):
    """The analysis's records in id order; see the module docstring."""

    def __init__(self, records: Iterable[ConnectionRecord] = ()) -> None:
        self._live: list[ConnectionRecord] = []
        self._chunks: list[bytes] = []
        self._tail: list[ConnectionRecord] = []
        self._n = 0
        self._over: dict[int, ConnectionRecord] = {}
        self._cap, self._size = LIVE, CHUNK  # fixed for this store's lifetime
        self._cache: OrderedDict[int, list[ConnectionRecord]] = OrderedDict()
        self._outcome = array("B")  # index in OUTCOMES
        self._count = array("q")
        self._start = array("q")
        self._mem = 0  # bytes of chunks held in memory
        self._file: IO[bytes] | None = None  # chunks beyond SPILL: (offset, length) in it
        self._spilled: list[tuple[int, int]] = []
        for r in records:
            self.append(r)

    def append(self, rec: ConnectionRecord) -> None:
        self._outcome.append(_CODE[rec.outcome])
        self._count.append(rec.count)
        self._start.append(rec.start_ns)
        self._n += 1
        if self._n <= self._cap:
            self._live.append(rec)
            return
        self._tail.append(rec)
        if len(self._tail) >= self._size:
            self._seal(_pack(self._tail))
            self._tail = []

    def _seal(self, blob: bytes) -> None:
        """Keep a chunk in memory, or beyond ``SPILL`` bytes in a temporary file (removed
        when the store is): memory then stays flat however many connections there are."""
        if self._mem + len(blob) <= SPILL and not self._spilled:
            self._chunks.append(blob)
            self._mem += len(blob)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pcapdiag-records-")  # noqa: SIM115 - the store owns it
        f = self._file
        f.seek(0, os.SEEK_END)
        self._spilled.append((f.tell(), len(blob)))
        f.write(blob)

    @property
    def compressed(self) -> bool:
        return self._n > self._cap

    def column(self, name: str) -> list[Any]:
        """``outcome``, ``count`` or ``start_ns`` of every record, without decoding any."""
        if name == "outcome":
            return [OUTCOMES[c] for c in self._outcome]
        return list(self._count if name == "count" else self._start)

    def _blob(self, c: int) -> bytes:
        if c < len(self._chunks):
            return self._chunks[c]
        off, length = self._spilled[c - len(self._chunks)]
        assert self._file is not None
        self._file.seek(off)
        return self._file.read(length)

    @property
    def _n_chunks(self) -> int:
        return len(self._chunks) + len(self._spilled)

    def __len__(self) -> int:
        return self._n

    def _chunk(self, c: int) -> list[ConnectionRecord]:
        hit = self._cache.get(c)
        if hit is None:
            hit = _unpack(self._blob(c))
            self._cache[c] = hit
            if len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(c)
        return hit

    def _get(self, i: int) -> ConnectionRecord:
        over = self._over.get(i)
        if over is not None:
            return over
        if i < self._cap:
            return self._live[i]
        c, k = divmod(i - self._cap, self._size)
        if c < self._n_chunks:
            return self._chunk(c)[k]
        return self._tail[k]

    @overload
    def __getitem__(self, i: int) -> ConnectionRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[ConnectionRecord]: ...
    def __getitem__(self, i: int | slice) -> ConnectionRecord | list[ConnectionRecord]:
        if isinstance(i, slice):
            return [self._get(k) for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("record index out of range")
        return self._get(i)

    def __setitem__(self, i: int, rec: ConnectionRecord) -> None:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("record index out of range")
        if i < self._cap:
            self._live[i] = rec
        else:
            self._over[i] = rec
        self._outcome[i] = _CODE[rec.outcome]
        self._count[i] = rec.count
        self._start[i] = rec.start_ns

    def __iter__(self) -> Iterator[ConnectionRecord]:
        yield from self._live
        over = self._over
        i = len(self._live)
        for c in range(self._n_chunks):
            for rec in _unpack(self._blob(c)):
                yield over.get(i, rec)
                i += 1
        for rec in self._tail:
            yield over.get(i, rec)
            i += 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (list(self),))

    def __repr__(self) -> str:
        return f"<Records: {self._n} connection records>"


def _rebuild(records: list[ConnectionRecord]) -> Records:
    return Records(records)
