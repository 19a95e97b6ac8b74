"""The fast lane's tape: what its second pass needs of the first, kept instead of reading
the capture again.

Why
    The exact tracker sees the packets of the 4-tuples the fast lane handed over, ~4 % of
    a busy server's capture, with the clock and counts of the whole capture batch by
    batch (``analysis._Chain._exact_pass``). Reading the file a second time to find them
    walked every record header again and mapped every page again: ~0.45 s of ~4.5 s on
    a 1.6 GB capture of 2.7 M packets. The first pass writes instead, for each of its
    batches, the TCP packets' 4-tuple key and their records' columns (44 bytes a packet,
    to a temporary file: memory stays flat), the batch's count and clock and its ICMP
    errors; the second reads that back, keeps the rows of handed-over 4-tuples and has
    the reader give just those records (``reader.Capture.records``): ~0.2 s in all,
    0.07 s of it writing (``benchmarks/bench_exact_pass.py`` with and without
    ``--no-tape``).

    With ``--jobs``, each byte range's fast lane writes a tape of its own into a folder
    the parent made (``folder``), and the exact tracker's shards read them all, in file
    order, instead of the whole file each (``analysis._run_tapes``).

    Only a mapped file can be read by offsets: a set with a gzip file or a pipe in it
    has no tape (``usable``), and is read a second time as before; so is one whose tape
    could not be written (the temporary directory full: the tape takes 44 bytes a TCP
    packet in ``TMPDIR``, 7 % of the benchmark's capture of 600-byte packets).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcapdiag import decode, reader

# The columns of a batch's TCP packets (duplicates dropped already), one after the other
COLUMNS = (
    ("key", np.uint64),  # the fast lane's 4-tuple key (``_fastlane.packet_hashes``)
    ("frame", np.int64),
    ("ts_ns", np.int64),
    ("offset", np.int64),
    ("caplen", np.int32),
    ("wirelen", np.int32),
    ("linktype", np.uint16),
    ("interface", np.uint16),
)
ROW_BYTES = sum(np.dtype(t).itemsize for _, t in COLUMNS)


@dataclass(slots=True)
class Batch:
    """One batch of the first pass as the exact tracker is fed it."""

    file: int  # index of the file in the set
    rows: dict[str, np.ndarray]  # the batch's TCP packets, by column (``COLUMNS``)
    seen: int  # TCP packets in the batch, every shard's (``Tracker.feed``)
    clock: int  # the capture's clock after the batch (-1: no TCP packet yet)
    icmp: list[decode.IcmpError]


class Tape:
    """Written batch by batch by the first pass (``add``), read back once (``batches``)."""

    def __init__(self, folder: str | None = None) -> None:
        self.file: Any = None  # the temporary file, on the first row
        # a tape another process reads: a file in ``folder`` (its owner removes it)
        self.folder, self.path = folder, ""
        self.size = 0
        # per batch: file, rows, seen, clock, where its rows and ICMP errors are
        self.index: list[tuple[int, int, int, int, int, int]] = []
        self.usable = True

    def add(
        self,
        fi: int,
        batch: reader.RecordBatch,
        tcp: decode.TcpPackets,
        keys: np.ndarray,
        seen: int,
        clock: int | None,
        icmp: list[decode.IcmpError],
    ) -> None:
        """The first pass's batch ``batch`` of file ``fi``: its packets ``tcp`` (their
        keys ``keys``) and the count and clock the tracker would be given."""
        if not self.usable:
            return
        at = batch.rows(tcp.frame)
        cols = [
            keys, tcp.frame, tcp.ts_ns, batch.offset[at], batch.caplen[at],
            batch.wirelen[at], batch.linktype[at], batch.interface[at],
        ]  # fmt: skip
        for (_, t), c in zip(COLUMNS, cols, strict=True):
            assert c.dtype == t, "a column of another type would be read back wrong"
        if icmp:
            cols.append(np.frombuffer(pickle.dumps(icmp, protocol=5), np.uint8))
        try:
            if self.file is None and self.folder is not None:
                fd, self.path = tempfile.mkstemp(prefix="tape-", dir=self.folder)
                self.file = os.fdopen(fd, "w+b")
            elif self.file is None:
                self.file = tempfile.TemporaryFile(prefix="pcapdiag-tape-")  # noqa: SIM115 - closed by close
            size = os.pwritev(self.file.fileno(), cols, self.size)
        except OSError:  # no room for it (a full or small temporary directory): read again
            self.drop()
            return
        n = len(tcp)
        extra = size - n * ROW_BYTES
        self.index.append((fi, n, seen, -1 if clock is None else clock, self.size, extra))
        self.size += size

    def drop(self) -> None:
        """No tape after all (a file of the set is not mapped, or the tape could not be
        written): the second pass reads the files again."""
        self.usable = False
        self.close()

    def __getstate__(self) -> tuple[Any, ...]:
        """Handed to another process: the file by its name, once ``seal`` closed it."""
        assert self.file is None, "seal the tape before handing it over"
        return self.folder, self.path, self.size, self.index, self.usable

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.file = None
        self.folder, self.path, self.size, self.index, self.usable = state

    def seal(self) -> None:
        """Written: the file is closed, to be read by name (a tape in ``folder``)."""
        if self.folder is None:
            return
        if self.file is not None:
            self.file.close()
            self.file = None

    def batches(self) -> Iterator[Batch]:
        if self.file is None and self.path:  # a sealed tape
            with open(self.path, "rb") as f:
                yield from self._batches(f.fileno())
            return
        yield from self._batches(self.file.fileno() if self.file is not None else -1)

    def _batches(self, fd: int) -> Iterator[Batch]:
        for fi, n, seen, clock, pos, extra in self.index:
            size = n * ROW_BYTES
            raw = os.pread(fd, size + extra, pos) if size + extra else b""
            rows, at = {}, 0
            for name, t in COLUMNS:
                rows[name] = np.frombuffer(raw, t, n, at)
                at += n * np.dtype(t).itemsize
            icmp = pickle.loads(raw[size:]) if extra else []
            yield Batch(fi, rows, seen, clock, icmp)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = ""
        self.index = []


def records(
    cap: reader.Capture, rows: dict[str, np.ndarray], which: np.ndarray
) -> reader.RecordBatch:
    """The records of ``rows`` (a ``Batch``'s) at ``which``, read again from ``cap``."""
    return cap.records(*(rows[name][which] for name, _ in COLUMNS[1:]))
