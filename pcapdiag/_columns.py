"""Per-connection columns that move into a temporary file once they are big, so that the
memory of an analysis stays flat however many connections the capture holds.

The stores, the merge and the cross-connection facts keep a few integers per connection
(first frame, outcome, start, run and place, client–server pair, request hash, TTL: about
50 bytes). In memory that grew by 50 MB a million connections, the only part of a big
run's memory that did not stay put (``docs/speed-log.md``). A ``Column`` is an
``array.array`` while small; past ``FILE_BYTES`` it lives in a file mapping, and the
pages the process touched are handed back (``madvise(MADV_DONTNEED)``: the data stays in
the file, and comes back from the page cache when read) each time ``settle`` finds more
than ``DROP_BYTES`` touched since the last time.

Why not ``numpy.memmap`` or ``np.lib.format.open_memmap``: they map a file of a fixed
size, and these columns grow a record at a time; and a column that is small (nearly
every capture) must cost no file at all. Why a file and not a compressed list of chunks:
every reader here takes whole numpy views of a column (``view``) and indexes them at
random; a mapping gives that at the speed of memory, with no decoding step. A file that
cannot be made or grown (a full temporary directory) leaves the columns in memory: the
analysis goes on, in more memory.

Appends of one value (the exact tracker's records) go to a short ``array`` tail, written
to the file ``TAIL`` values at a time. A column's file is unlinked at once (its mapping
keeps it), or, in a worker forked for a local pool (``_store.share``), named in the
folder its parent made: pickled, the column then travels as that name.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

FILE_BYTES = 1024 * 1024  # a column past this many bytes moves into a file
DROP_BYTES = 4 * 1024 * 1024  # pages touched before ``settle`` hands them back
TAIL = 16_384  # values appended one by one, kept before they are written
_RESERVE = 1 << 33  # bytes of address space a file column maps (sparse: no disk, no memory)

_NP = {"b": "i1", "B": "u1", "i": "i4", "I": "u4", "q": "i8", "Q": "u8", "d": "f8"}
_maps: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()  # file columns' mappings, while alive
_touched = 0  # bytes written or viewed in file columns since the last drop
SHARE: tuple[str, int] | None = None  # (folder, the pool's parent): ``_store.share``
broken = False  # a column file could not be made or grown: columns stay in memory


def full(typecode: str, n: int, value: int) -> Column:
    """A column of ``n`` times ``value``, filled a window at a time."""
    c = Column(typecode)
    c.zeros(n)
    if value:
        v = c.view()
        step = DROP_BYTES // c.itemsize
        for lo in range(0, n, step):
            v[lo : lo + step] = value
            settle(min(step, n - lo) * c.itemsize)
    return c


def settle(nbytes: int = 0) -> None:
    """Count ``nbytes`` more touched in file columns; past ``DROP_BYTES``, hand back the
    pages of every file column (they stay in the file)."""
    global _touched
    _touched += nbytes
    if _touched < DROP_BYTES:
        return
    _touched = 0
    for m in list(_maps):
        with contextlib.suppress(ValueError):  # (closed)
            m.madvise(mmap.MADV_DONTNEED)  # the whole reservation: ~6 µs for 8 GB


class Column:
    """A growing column of one C type (``array.array``'s typecodes above), as
    ``array.array`` for the operations the analysis uses: ``append``, ``extend``,
    ``frombytes``, ``zeros``, indexing, ``del c[n:]``, ``len``, iteration; ``view()`` is
    its numpy array (writable, valid until the column grows)."""

    __slots__ = ("typecode", "itemsize", "_arr", "_tail", "_n", "_fd", "_mm", "_cap", "_alloc",
                 "_hi", "_path", "__weakref__")  # fmt: skip

    def __init__(self, typecode: str, data: bytes | Iterable[Any] = b"") -> None:
        self.typecode = typecode
        self.itemsize = array(typecode).itemsize
        self._arr: array[int] | None = array(typecode)  # None once in a file
        self._tail = array(typecode)
        self._n = 0  # values in the file
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._cap = 0
        self._alloc = 0  # bytes of the file given blocks (``posix_fallocate``)
        self._hi = 0  # bytes ever written: past them the file reads zeros
        self._path: str | None = None
        if isinstance(data, bytes | bytearray | memoryview):
            self.frombytes(data)
        else:
            self.extend(data)

    def __len__(self) -> int:
        return len(self._arr) if self._arr is not None else self._n + len(self._tail)

    def append(self, v: Any) -> None:
        if self._arr is not None:
            self._arr.append(v)
            if len(self._arr) * self.itemsize > FILE_BYTES and not broken:
                self._to_file()
        else:
            self._tail.append(v)
            if len(self._tail) >= TAIL:
                self._flush()

    def extend(self, values: Iterable[Any]) -> None:
        self.frombytes(array(self.typecode, values).tobytes())

    def frombytes(self, data: Any) -> None:
        mv = memoryview(data).cast("B")
        if self._arr is not None:
            self._arr.frombytes(mv)
            if len(self._arr) * self.itemsize > FILE_BYTES and not broken:
                self._to_file()
            return
        self._flush()
        self._write(mv)

    def zeros(self, n: int) -> None:
        """``n`` zeros more (a file column's come from the file's hole: no memory)."""
        if self._arr is not None and (broken or (len(self._arr) + n) * self.itemsize <= FILE_BYTES):
            self._arr.frombytes(bytes(n * self.itemsize))
            return
        if self._arr is not None:
            self._to_file()
        if self._arr is None:
            self._flush()
            lo, end = self._n * self.itemsize, (self._n + n) * self.itemsize
            if self._room(end):
                assert self._mm is not None
                if lo < self._hi:  # bytes a shortened column left
                    hi = min(end, self._hi)
                    self._mm[lo:hi] = bytes(hi - lo)
                self._n += n
                self._hi = max(self._hi, end)
                return
        assert self._arr is not None
        self._arr.frombytes(bytes(n * self.itemsize))

    def view(self) -> Any:
        """The column as a numpy array (writable) of its current length."""
        import numpy as np

        dt = np.dtype(_NP[self.typecode])
        self._flush()  # (which may bring the column back to memory: ``_room``)
        if self._arr is not None:
            return np.frombuffer(self._arr, dtype=dt)
        settle(self._n * self.itemsize)
        assert self._mm is not None
        return np.frombuffer(self._mm, dtype=dt, count=self._n)

    def __getitem__(self, i: int) -> Any:
        if self._arr is not None:
            return self._arr[i]
        if i < 0:
            i += len(self)
        if i >= self._n:
            return self._tail[i - self._n]
        if i < 0:
            raise IndexError("column index out of range")
        assert self._mm is not None
        s = self.itemsize
        with memoryview(self._mm) as mv, mv[i * s : (i + 1) * s].cast(self.typecode) as one:
            return one[0]

    def __setitem__(self, i: int, v: Any) -> None:
        if self._arr is not None:
            self._arr[i] = v
            return
        if i < 0:
            i += len(self)
        if i >= self._n:
            self._tail[i - self._n] = v
            return
        assert self._mm is not None
        s = self.itemsize
        with memoryview(self._mm) as mv, mv[i * s : (i + 1) * s].cast(self.typecode) as one:
            one[0] = v

    def __delitem__(self, key: slice) -> None:
        """``del c[n:]`` only: the column ends at ``n``."""
        assert isinstance(key, slice) and key.stop is None and key.step is None
        n = key.start if key.start >= 0 else len(self) + key.start
        self._flush()
        if self._arr is not None:
            del self._arr[n:]
            return
        self._n = min(self._n, n)

    def __iter__(self) -> Iterator[Any]:
        if self._arr is not None:
            return iter(self._arr)
        return iter(self.view().tolist())

    def tobytes(self) -> bytes:
        return self._arr.tobytes() if self._arr is not None else self.view().tobytes()

    def __getstate__(self) -> tuple[Any, ...]:
        self._flush()
        if self._arr is None and self._path is not None:
            return (self.typecode, None, self._path, self._n)
        return (self.typecode, self.tobytes(), None, 0)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        typecode, data, path, n = state
        Column.__init__(self, typecode)
        if data is not None:
            self.frombytes(data)
            return
        self._arr = None
        self._fd = os.open(path, os.O_RDWR)
        self._map(max(_RESERVE, n * self.itemsize))
        self._n, self._path = n, path
        self._alloc = self._hi = n * self.itemsize

    def __del__(self) -> None:
        self._close()

    # the file

    def _to_file(self) -> None:
        global broken
        assert self._arr is not None
        try:
            if SHARE is not None and SHARE[1] != os.getpid():
                fd, path = tempfile.mkstemp(prefix="column-", dir=SHARE[0])
            else:
                fd, path = tempfile.mkstemp(prefix="pcapdiag-column-")
                os.unlink(path)
                path = None
        except OSError:
            broken = True
            return
        self._fd, self._path = fd, path
        try:
            self._map(_RESERVE)
        except OSError:
            broken = True
            self._close()
            return
        data, self._arr = self._arr, None
        self._n = 0
        self._write(memoryview(data).cast("B"))

    def _map(self, size: int) -> None:
        os.ftruncate(self._fd, size)  # sparse: blocks only where written
        self._mm = mmap.mmap(self._fd, size)
        self._cap = size
        _maps.add(self._mm)

    def _room(self, end: int) -> bool:
        """Make the file hold ``end`` bytes, blocks given (a write into a hole the disk
        cannot fill would be a SIGBUS, not an error); False (the column back in memory,
        and no file column from here) where it cannot."""
        global broken
        try:
            if end > self._cap:  # past the reservation: a larger mapping (views of the old stay)
                self._map(max(end, 2 * self._cap))
            if end > self._alloc:
                grow = max(end - self._alloc, FILE_BYTES)
                os.posix_fallocate(self._fd, self._alloc, grow)
                self._alloc += grow
        except OSError:
            broken = True
            self._unfile()
            return False
        return True

    def _write(self, mv: memoryview) -> None:
        if self._arr is None:
            s = self._n * self.itemsize
            if self._room(s + len(mv)):
                assert self._mm is not None
                self._mm[s : s + len(mv)] = mv
                self._n += len(mv) // self.itemsize
                self._hi = max(self._hi, s + len(mv))
                settle(len(mv))
                return
        assert self._arr is not None  # (back in memory)
        self._arr.frombytes(mv)

    def _flush(self) -> None:
        if self._tail and self._arr is None:
            t, self._tail = self._tail, array(self.typecode)
            self._write(memoryview(t).cast("B"))

    def _unfile(self) -> None:
        """Back into memory: what the file holds, and the tail."""
        arr = array(self.typecode)
        if self._mm is not None:
            arr.frombytes(self._mm[: self._n * self.itemsize])
        arr.extend(self._tail)
        self._tail = array(self.typecode)
        self._arr, self._n, self._mm = arr, 0, None  # (views of the mapping keep it alive)
        self._cap = self._alloc = self._hi = 0
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
