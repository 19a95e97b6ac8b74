"""Run the pipeline over captures: read → decode → track → classify → explain.

``analyze()`` streams each capture batch by batch; finished connections are explained as
soon as the tracker lets go of them, so memory follows open connections, not file size.
A damaged capture stops at the damage: everything before it is still analysed and the
error is kept in ``Analysis.errors`` (the CLI then exits 1 after printing the results).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pcapdiag import _arrays, _columns, _fastlane, _resident, _store, _tape, decode, reader
from pcapdiag._store import Records, RecordStore
from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.connections import NS, Connection, Tracker, _addr, _gc_paused
from pcapdiag.decode import ACK, SYN
from pcapdiag.decrypt import (
    DEFAULT_TIMEOUT_S,
    KeyLog,
    PcapngWriter,
    tshark_available,
    tshark_session,
)
from pcapdiag.errors import CaptureError, DecryptError, UsageError
from pcapdiag.explain import (
    ConnectionRecord,
    CrossFacts,
    IdleTimeout,
    explain,
    infer_idle_timeouts,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from pcapdiag.frames import ConnectionView

LINKTYPE_NAMES = {
    0: "NULL", 1: "EN10MB", 12: "RAW", 14: "RAW", 101: "RAW", 108: "LOOP",
    113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
}  # fmt: skip
_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz")


@dataclass
class CaptureSummary:
    """What was read from one capture file."""

    path: str
    format: str = ""
    packets: int = 0
    tcp_packets: int = 0
    link_types: dict[str, int] = field(default_factory=dict)
    first_ns: int | None = None
    last_ns: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    decrypted: int = 0  # TLS connections classified from their plaintext
    # A rotated file stitched after another: the set's first file (the records' capture),
    # and how many frames come before this file's in the set's numbering
    stitched_to: str | None = None
    frame_offset: int = 0
    t0_ns: int = 0  # time of the first record: "t=" in evidence counts from it

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "link_types": self.link_types,
            "first_time": None if self.first_ns is None else self.first_ns / NS,
            "last_time": None if self.last_ns is None else self.last_ns / NS,
            "warnings": self.warnings,
            "error": self.error,
            "decrypted": self.decrypted,
            "stitched_to": self.stitched_to,
            "frame_offset": self.frame_offset,
        }


@dataclass
class Analysis:
    """The result of ``pcapdiag.analyze``: one record per TCP connection, and capture facts."""

    records: Sequence[ConnectionRecord]  # a list, or a ``Records`` store for big captures
    captures: list[CaptureSummary]
    idle_timeouts: list[IdleTimeout]
    errors: list[CaptureError] = field(default_factory=list)
    cwd: str = field(default_factory=os.getcwd)  # relative capture paths are relative to it

    def _outcome_counts(self) -> dict[str, tuple[int, int]]:
        """(records, connections they stand for) per outcome, in ``OUTCOMES`` order; a
        compressed store counts from its columns (``Records.outcome_counts``)."""
        recs = self.records
        if isinstance(recs, Records):
            return recs.outcome_counts()
        rows: Counter[str] = Counter()
        conns: Counter[str] = Counter()
        for r in recs:
            rows[r.outcome] += 1
            conns[r.outcome] += r.count
        return {o: (rows[o], conns[o]) for o in OUTCOMES if rows[o]}

    @property
    def problems(self) -> list[ConnectionRecord]:
        recs = self.records
        if isinstance(recs, Records):
            return [recs[i] for i, o in enumerate(recs.column("outcome")) if o in PROBLEMS]
        return [r for r in recs if r.is_problem]

    @property
    def idle_timeout_s(self) -> float | None:
        return self.idle_timeouts[0].seconds if self.idle_timeouts else None

    @property
    def by_outcome(self) -> dict[str, int]:
        return {o: c for o, (_, c) in self._outcome_counts().items() if c}

    @property
    def summary(self) -> dict[str, Any]:
        counts = self._outcome_counts()  # every outcome is one of OUTCOMES: it sums them all
        by_outcome = {o: c for o, (_, c) in counts.items() if c}
        return {
            "connections": sum(by_outcome.values()),
            "rows": len(self.records),
            "problems": sum(n for o, (n, _) in counts.items() if o in PROBLEMS),
            "by_outcome": by_outcome,
            "idle_timeout_s": self.idle_timeout_s,
            "idle_timeouts": [
                {
                    "server": t.server,
                    "seconds": t.seconds,
                    "samples": t.samples,
                    "matches": t.matches,
                }
                for t in self.idle_timeouts
            ],
        }

    def to_json(self, connections: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "captures": [c.to_json() for c in self.captures],
            "summary": self.summary,
        }
        if connections:
            doc["connections"] = [r.to_json() for r in self.records]
        return doc

    def filter(
        self,
        *,
        problems: bool = False,
        host: str | None = None,
        port: int | None = None,
        at: float | None = None,
        window: float = 5.0,
    ) -> Analysis:
        """A view keeping only some connections (the summary is recomputed for them)."""
        recs = self.records
        if problems:
            recs = [r for r in recs if r.is_problem]
        if host:
            recs = [r for r in recs if host in (r.client_ip, r.server_ip)]
        if port is not None:
            recs = [r for r in recs if port in (r.client_port, r.server_port)]
        if at is not None:
            lo, hi = (at - window) * NS, (at + window) * NS
            recs = [r for r in recs if _near(r, lo, hi)]
        return Analysis(recs, self.captures, infer_idle_timeouts(recs), self.errors, self.cwd)

    # -- pandas / Jupyter (pandas and matplotlib are imported here, on first use) ----------
    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per list of records (a frame is rebuilt if ``records`` changes),
        the cyclic collector paused: the records and rows it makes hold no cycles, and its
        scans of them took 1.5 s of the 3.4 s of a 124,000-row ``connections``."""
        stamp = (id(self.records), len(self.records))
        cache = self.__dict__.setdefault("_pcapdiag_cache", {})
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            with _gc_paused():
                hit = cache[key] = (stamp, build())
        return hit[1]

    @property
    def connections(self) -> pd.DataFrame:
        """One row per connection, indexed by ``id``: the JSON contract flattened, with
        declared dtypes (``pcapdiag.frames.CONNECTION_SCHEMA``); an empty analysis gives an
        empty frame with the same columns and dtypes. Each access returns a fresh copy."""
        from pcapdiag import frames

        recs = self.records  # a store's without their events: no column reads them
        rows = recs.without_events() if isinstance(recs, Records) else recs
        return self._cached("connections", lambda: frames.connections_frame(rows)).copy()

    @property
    def problems_df(self) -> pd.DataFrame:
        """``connections`` restricted to the problem outcomes (``pcapdiag.PROBLEMS``);
        ``problems`` stays the list of records."""
        df = self.connections
        return df[df["outcome"].isin(list(PROBLEMS))]

    @property
    def events(self) -> pd.DataFrame:
        """One row per significant event of every connection (``conn_id``, ``time``, ``t_s``
        seconds since the start of its capture, ``side``, ``kind``, ``frame``, ``detail``)."""
        from pcapdiag import frames

        def build() -> pd.DataFrame:
            return frames.events_frame(self.records, frames.capture_starts(self.captures))

        return self._cached("events", build).copy()

    def _record(self, conn_id: int) -> ConnectionRecord:
        by_id = self._cached("by_id", lambda: {r.id: r for r in self.records})
        try:
            return by_id[int(conn_id)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(f"no connection with id {conn_id!r} in this analysis") from None

    def connection(self, conn_id: int) -> ConnectionView:
        """One connection: its record's attributes, ``packets()``, ``ladder()``, and a rich
        display in Jupyter (evidence, what each client raised, cause and fix)."""
        from pcapdiag.frames import ConnectionView

        return ConnectionView(self._record(conn_id), self)

    def packets(self, conn_id: int) -> pd.DataFrame:
        """The TCP segments of one connection, read again from its capture: ``frame``,
        ``time``, ``t_s``, ``side``, ``flags`` ("SA", "PA", "FA", "R"…), ``seq_rel`` /
        ``ack_rel`` (Wireshark's relative numbers), ``payload_len``, ``window``, ``ttl``."""
        from pcapdiag import frames

        rec = self._record(conn_id)
        start = frames.capture_starts(self.captures).get(rec.capture)
        # a rotated set: the files stitched after the record's capture, in frame order
        later = sorted(
            (c for c in self.captures if c.stitched_to == rec.capture and c.path != rec.capture),
            key=lambda c: c.frame_offset,
        )
        paths = [rec.capture] + [c.path for c in later]
        # the working directory may have changed since
        paths = [p if os.path.isabs(p) else os.path.join(self.cwd, p) for p in paths]
        rec = dataclasses.replace(rec, capture=paths[0])
        return frames.packets_frame(rec, start, (paths, [0] + [c.frame_offset for c in later]))

    def timeline(self, **kw: Any) -> Figure:
        """Every connection on a time axis, coloured by outcome: a matplotlib Figure, never
        shown (Jupyter displays the value of a cell as an image; a script calls ``savefig``)."""
        from pcapdiag.frames import enable_figure_display
        from pcapdiag.report.figures import timeline

        enable_figure_display()
        return timeline(self, **kw)

    def ladder(self, conn_id: int, **kw: Any) -> Figure:
        """The ladder (sequence) diagram of one connection (a matplotlib Figure)."""
        from pcapdiag.frames import enable_figure_display
        from pcapdiag.report.figures import ladder

        enable_figure_display()
        return ladder(self._record(conn_id), **kw)

    def to_html(self, path: str | os.PathLike[str] | IO[str]) -> None:
        """Write the same HTML report as the CLI to ``path`` (a file name or a text stream)."""
        from pcapdiag.report.html import write_report

        write_report(self, path)

    def _repr_html_(self) -> str:
        from pcapdiag.frames import analysis_html

        return analysis_html(self)

    def __repr__(self) -> str:
        from pcapdiag.frames import analysis_text

        return analysis_text(self)


def _near(r: ConnectionRecord, lo: float, hi: float) -> bool:
    t = r.close_ns if r.close_ns is not None else r.end_ns
    return lo <= t <= hi or (r.start_ns <= hi and r.end_ns >= lo and r.close_ns is None)


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files as given; a directory stands for the capture files in it, sorted by name."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                str(f) for f in path.iterdir() if f.is_file() and f.name.endswith(_CAPTURE_SUFFIXES)
            )
            if not found:
                raise CaptureError(str(path), "directory holds no .pcap/.pcapng files")
            out.extend(found)
        else:
            out.append(str(path))
    if not out:
        raise UsageError("no capture given")
    return out


def analyze(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    problems: bool = False,
    host: str | None = None,
    port: int | None = None,
    at: float | str | None = None,
    window: float = 5.0,
    progress: Callable[[str, int, int], None] | None = None,
    keylog: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    decrypt_timeout: float = DEFAULT_TIMEOUT_S,
    jobs: int = 1,
    client: Any = None,
    stitch: bool = True,
) -> Analysis:
    """Analyse one or more captures (a directory means every capture in it).

    ``keylog``: NSS key log file(s) (``SSLKEYLOGFILE``); TLS connections whose secrets
    are there, or embedded in a pcapng, are decrypted with tshark and classified from
    their plaintext. ``progress(path, packets_read, file_size)`` is called after each
    batch, for a caller that wants to show progress; it must not raise.

    ``jobs``: processes to use (0: one per core). ``client``: a ``dask.distributed``
    client to run on instead (every worker must see the capture paths). Both split the
    work by file and, within a file, by connection, and give the same result as one
    process. ``stitch``: rotated files (``tcpdump -C``/``-G``: names that differ only in
    digits, each starting where the previous one ended) are analysed as one capture, so
    a connection spanning two files stays one connection; frames are then numbered
    across the files, as ``mergecap -a`` numbers them.
    """
    files = expand_paths(paths)
    if isinstance(keylog, (str, os.PathLike)):
        keylog = [keylog]
    keys = KeyLog.from_files(keylog or ())
    if jobs < 0:
        raise UsageError(f"jobs must be >= 0, not {jobs}")
    workers = (os.cpu_count() or 1) if jobs == 0 else jobs
    if client is not None:
        workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
    chains = rotation_chains(files) if stitch else [[i] for i in range(len(files))]
    # ranges cut while the first is read need this process free to walk: a local pool
    parts = plan(files, chains, workers, lazy=client is None and workers > 1)
    with contextlib.ExitStack() as after:  # let go of here if the parts fail
        fragments = _execute(parts, workers, client, progress, after)
        cleanup = _Cleanup(after.pop_all())
    try:
        with _gc_paused():  # millions of small acyclic objects: see connections._gc_paused
            records, captures, errors, idle = merge(fragments, len(files), keys, decrypt_timeout)
    finally:
        cleanup.join()
    del fragments
    _give_back()  # what the merge let go, before the output is written
    result = Analysis(records, captures, idle, errors)
    if problems or host or port is not None or at is not None:
        result = result.filter(
            problems=problems, host=host, port=port, at=parse_time(at), window=window
        )
    return result


# -- units of work: rotated sets, shards, fragments and their merge ------------------------
#
# A *part* is one chain of files (usually one file) and one shard of its connections: the
# packets whose 4-tuple hashes to the shard. Every shard reads and decodes the whole chain
# and tracks only its own connections, so no connection is ever cut at a seam. Each part
# returns a *fragment*; ``merge`` puts the fragments of one chain back in frame order, so
# any split gives the one-process result.
#
# A big capture file read by the fast lane (a pcap, or a pcapng ``Capture.spans`` can cut)
# is split otherwise (``plan``), since there reading is a third of the work: first by
# byte ranges (``Part.span``; a pcap's cut while the first is read, ``_cut_while_reading``),
# each read once by a fast lane of its own, whose connections cut at a seam it hands over
# as it hands over any connection outside its template (open at the end, or begun before
# its start); then by shards for the exact tracker, each fed the windows of 4-tuples any
# range handed over (``handed``, ``_Handed``) from the ranges' tapes. A connection one
# range completed and another handed over (a window from the file's start) is then
# recorded twice with the same first frame, and the merge keeps the exact tracker's, as
# it does within one process.

ROTATION_GAP_NS = 120 * NS  # a rotated file starts at most this long after the previous
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Part:
    """One unit of work: a chain of files (indexes, in time order) and a shard of it."""

    files: tuple[int, ...]
    paths: tuple[str, ...]
    shard: int = 0
    shards: int = 1
    # A byte range of a one-file chain, read by the fast lane alone (``Capture.spans``:
    # first record's offset, the offset after the last, the first's frame), and the
    # file's first time
    span: tuple[int, int, int] | None = None
    t0: int = 0
    # records a batch, when the plan cut byte ranges on batch borders (``Capture.spans``):
    # every part of the chain reads by that many (0: the reader's default), and as many
    # bytes as the plan saw (0: all), in case the file is still being written
    batch: int = 0
    size: int = 0
    # An exact-tracker part after spans: fed only the 4-tuples they handed over (set by
    # ``_execute`` once they are known)
    exact: bool = False
    handed: np.ndarray | None = field(default=None, compare=False)
    # where the byte ranges write their tapes (``_tape``: a folder ``_execute`` made and
    # removes), and for the exact parts after them, the tapes to read instead of the file
    folder: str | None = None
    tapes: tuple[_tape.Tape, ...] | None = field(default=None, compare=False)
    # A byte range cut while the work runs (``plan(lazy=True)``): it starts at the first
    # batch border at or past byte ``cut`` (``span`` is a placeholder until ``_execute``
    # has walked there) and ends at the first one at or past ``until`` (None: the end)
    cut: int | None = None
    until: int | None = None
    # its row of ``_BOARD`` (-1: none): where it has read to, and where it ends once the
    # walk has decided (``_cut_while_reading``; forked workers only)
    slot: int = -1


@dataclass(slots=True)
class SetResult:
    """The connections of one capture set (a file, or rotated files stitched together)."""

    files: list[int]  # indexes of its files
    records: RecordStore
    folds: Folds
    tls_seen: list[_TlsSeen]
    secrets: list[tuple[int, bytes]]
    t0: int = 0
    offsets: list[int] = field(default_factory=list)  # frame offset of each file
    # bytes of each file the first reading saw (``Capture.size``): a second reading stops
    # there, as if the file were not still being written
    sizes: list[int] = field(default_factory=list)
    # Connections the fast lane replayed (``_fastlane``); the merge prefers ``records``
    # for a first frame both hold
    fast: RecordStore | None = None
    # ... and the attempts it let go (``_fastlane.Attempts``), which the merge folds; the
    # windows its lanes handed over (an attempt a window covers is the exact tracker's)
    attempts: list[_fastlane.Attempts] = field(default_factory=list)
    windows: np.ndarray | None = None


@dataclass(slots=True)
class Fragment:
    """What one part found: its shard's connections per set, and what was read."""

    part: Part
    sets: list[SetResult]
    summaries: dict[int, CaptureSummary]
    errors: list[CaptureError]
    handed: np.ndarray | None = None  # a span's: the windows its fast lane handed over
    # a span's reading, for the whole file's summary (``_joined``), and its tape
    read: tuple[reader.SpanInfo, _Counts] | None = None
    tape: _tape.Tape | None = None
    end: int | None = None  # a span's: the offset after its last record


def rotation_chains(files: list[str]) -> list[list[int]]:
    """Group files that look like one rotated capture: same directory, names equal once
    digits are removed, ordered by their first packet. Whether each really continues the
    previous one (no overlap, a short gap) is checked while reading (``_Chain``)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, f in enumerate(files):
        head, name = os.path.split(os.path.abspath(f))
        groups.setdefault((head, _DIGITS.sub("", name)), []).append(i)
    chains: list[list[int]] = []
    for members in groups.values():
        if len(members) == 1:
            chains.append(members)
            continue
        firsts = {i: _first_ts(files[i]) for i in members}
        ordered = sorted(members, key=lambda i: (firsts[i] is None, firsts[i] or 0, i))
        chains.append(ordered)
    chains.sort(key=lambda c: min(c))
    return chains


def _first_ts(path: str) -> int | None:
    """The first record's time, or None when the file cannot be read (its error comes later)."""
    try:
        with reader.open_capture(path) as cap:
            for batch in cap.batches(max_records=1):
                return int(batch.ts_ns[0]) if len(batch) else None
    except CaptureError:
        return None
    return None


def plan(files: list[str], chains: list[list[int]], workers: int, lazy: bool = False) -> list[Part]:
    """Parts for ``workers`` processes: whole chains when there are enough of them, else
    each chain split into shards by connection, or a big file into byte ranges and then
    shards (see above). ``lazy``: a pcap's byte ranges are cut while the first one is
    read (``_cut_later``), not before."""
    shards = 1 if len(chains) >= workers else -(-workers // len(chains))
    parts: list[Part] = []
    for c in chains:
        paths = tuple(files[i] for i in c)
        later = _cut_later(paths, shards) if lazy else None
        spans = later or _spans(paths, shards)
        if spans is None:
            parts += [Part(tuple(c), paths, s, shards) for s in range(shards)]
            continue
        t0, b, size = _first_ts(paths[0]) or 0, reader.BATCH, spans[-1][1]
        if later is not None:
            targets = [sp[0] for sp in later[1:]]
            parts += [
                Part(tuple(c), paths, span=sp, t0=t0, batch=b, cut=sp[0] if k else None,
                     until=targets[k] if k < len(targets) else None)
                for k, sp in enumerate(later)
            ]  # fmt: skip
        else:
            parts += [Part(tuple(c), paths, span=sp, t0=t0, batch=b) for sp in spans]
        parts += [
            Part(tuple(c), paths, s, shards, t0=t0, exact=True, batch=b, size=size)
            for s in range(shards)
        ]
    return parts


# (Where the cut does not follow the reading, ``FOLLOW``.) Walking record headers to a
# cut takes about this share of the time of reading the same bytes through the fast lane
# (0.15-0.17 s against 0.6 s for 59 % of the benchmark capture, 2026-12-07): ranges after
# the first start that much later, so they are made shorter. Set below that share: a later
# range reads its bytes a little slower (the connections begun before its start, handed
# over), and the first ended 0.05 s after the second with 0.3; with 0.2 or 0.15, ``-j 2``
# took 0.04-0.05 s less (four runs each)
_WALK_SHARE = 0.2


class _Cleanup:
    """The workers' pool shut down and the tapes' folder removed by a thread while the
    merge runs (``_execute``'s ``after``): waiting for processes to end and the kernel
    to free the tapes' pages took 0.013 s of `-j 2` on the benchmark capture, before
    the merge. ``join`` waits for it (the JSON renderers fork only with no other thread
    running), and raises what it raised."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        import threading

        self.stack = stack
        self.error: BaseException | None = None
        self.thread: Any = threading.Thread(target=self._run, name="pcapdiag-cleanup")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.stack.close()
        except BaseException as exc:  # for join to raise, in the caller's thread
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _rangeable(paths: tuple[str, ...], n: int) -> bool:
    """Is a chain worth cutting into ``n`` byte ranges: one file, big enough for the lane?"""
    return n >= 2 and len(paths) == 1 and _fastlane.worth_it(_size(paths[0]))


def _cut_later(paths: tuple[str, ...], n: int) -> list[tuple[int, int, int]] | None:
    """Byte ranges of a one-file pcap chain to cut while the work runs: the first as a
    span from the first record, the others as placeholders (their target byte, the
    end, frame 0) for ``_execute`` to walk to, sized so that each range's walk and read
    end together (``_WALK_SHARE``); None where ``_spans`` decides."""
    if not _rangeable(paths, n):
        return None
    try:
        with reader.open_capture(paths[0]) as cap:
            shape = cap.cut_shape() if cap.info.format == "pcap" else None
    except CaptureError:
        return None
    if shape is None:
        return None
    start, size = shape
    # range k reads from c_k to c_k+1 after walking to c_k: c_k+1 = c_k (1 - w) + u
    a = [1.0]
    for _ in range(n - 1):
        a.append(a[-1] * (1 - _WALK_SHARE) + 1)
    u = (size - start) / a[-1]
    cuts = [start + int(x * u) for x in a[:-1]]
    return [(start, size, 1)] + [(c, size, 0) for c in cuts]


def _spans(paths: tuple[str, ...], n: int) -> list[tuple[int, int, int]] | None:
    """Byte ranges of a one-file chain the fast lane reads (``Capture.spans``), or None."""
    if not _rangeable(paths, n):
        return None
    try:
        with reader.open_capture(paths[0]) as cap:
            spans = cap.spans(n)
    except CaptureError:
        return None
    return spans if spans is not None and len(spans) > 1 else None


def _execute(
    parts: list[Part],
    workers: int,
    client: Any,
    progress: Callable[[str, int, int], None] | None,
    after: contextlib.ExitStack | None = None,
) -> list[Fragment]:
    """The parts' fragments. ``after``: where the pool and the tapes' folder go, for the
    caller to let go of while it merges (``_Cleanup``), instead of before returning."""
    with contextlib.ExitStack() as stack:
        late = stack if after is None else after
        run_pool = None
        method = ""  # how the pool's workers start
        if client is not None:

            def run(ps: list[Part]) -> list[Fragment]:
                return list(client.gather(client.map(run_part, ps, pure=False)))

        elif workers <= 1 or len(parts) <= 1:

            def run(ps: list[Part]) -> list[Fragment]:
                return [run_part(p, progress) for p in ps]

        else:
            import multiprocessing
            import threading
            from concurrent.futures import ProcessPoolExecutor

            # fork is quickest and needs no importable __main__; with other threads
            # running (Jupyter, decryption) a forked child could inherit a held lock, so
            # fork a clean server
            method = "fork" if threading.active_count() == 1 else "forkserver"
            ctx = multiprocessing.get_context(method)
            n = min(workers, max(sum(not p.exact for p in parts), sum(p.exact for p in parts)))
            pool = late.enter_context(ProcessPoolExecutor(max_workers=n, mp_context=ctx))
            run_pool: Any = pool
            if method == "fork":  # workers forked from here: their records by reference
                shared = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="pcapdiag-records-")
                )
                stack.enter_context(_store.share(shared))

            def run(ps: list[Part]) -> list[Fragment]:
                return list(pool.map(run_part, ps))

        if client is None and any(p.span is not None for p in parts):
            # the byte ranges' tapes, in a folder every worker here sees (not a cluster's)
            folder = late.enter_context(tempfile.TemporaryDirectory(prefix="pcapdiag-tapes-"))
            parts = [dataclasses.replace(p, folder=folder) if p.span else p for p in parts]
        if run_pool is not None and any(p.cut is not None for p in parts):
            if method == "fork" and FOLLOW:  # the board, before the first task forks the workers
                global _BOARD
                ranges = [p for p in parts if p.span is not None and not p.exact]
                _BOARD = _board(len(ranges))
                stack.callback(_clear_board)
                row = {id(p): k for k, p in enumerate(ranges)}
                parts = [dataclasses.replace(p, slot=row[id(p)]) if id(p) in row else p for p in parts]  # fmt: skip
            first, failed = _cut_while_reading([p for p in parts if not p.exact], run_pool)
            if failed:  # no cut after all, or a range ended elsewhere: by shards
                first += run([_unspanned(p) for p in parts if p.exact and p.files in failed])
                parts = [p for p in parts if not (p.exact and p.files in failed)]
        else:
            first = run([p for p in parts if not p.exact])
        later = [p for p in parts if p.exact]
        if not later:
            _give_back()
            return first
        handed: dict[tuple[int, ...], list[np.ndarray]] = {}
        spans: dict[tuple[int, ...], list[Fragment]] = {}
        for f in first:
            if f.handed is not None:
                handed.setdefault(f.part.files, []).append(f.handed)
            if f.part.span is not None:
                spans.setdefault(f.part.files, []).append(f)
        joined = {files: _joined(frags) for files, frags in spans.items()}
        empty = np.zeros((0, 3), np.int64)
        later = [
            dataclasses.replace(
                p,
                handed=np.concatenate(handed.get(p.files, [empty])),
                tapes=j.tapes if (j := joined.get(p.files)) is not None else None,
            )
            for p in later
        ]
        # the exact tracker's fragments first: the merge takes a set's files, offsets and
        # summaries from its first fragment
        out = run(later) + first
        for f in out:
            j = joined.get(f.part.files)
            if j is not None and f.part.exact and f.part.shard == 0:
                f.summaries[f.part.files[0]], f.errors = j.summary, j.errors
        _give_back()
        return out


# Where each byte range cut while the work runs has read to, and where it is to end
# (``Part.slot``): a row of two int64 a range, in memory shared with the workers forked
# after it was made (``_execute``); 0 where not known yet.
_BOARD: np.ndarray | None = None
# Cut where the reading has come to (``_goal``), not at ``_cut_later``'s fixed targets
# (those serve workers not forked from here, which see no board, and tests that plant
# something at a known seam). On four times the benchmark capture, its pages in small
# folios (the walk to the cut 0.45-0.5 s), the fixed cut left the second range ending
# 0.08-0.14 s after the first; following the reading, within 0.01 s.
FOLLOW = True


def _board(rows: int) -> np.ndarray:
    import mmap

    return np.frombuffer(mmap.mmap(-1, max(rows, 1) * 16), np.int64).reshape(-1, 2)


def _goal(board: np.ndarray, row: int, start: int, end: int, later: int) -> Callable[[], int]:
    """The next cut's byte, as the range being read (``row``, from ``start``) goes on:
    half-way, for one more range, between where it has read to and the file's ``end``
    (generally, what it has left and each of the ``later`` ranges after it get the same
    bytes). The walk is faster than the reading, so the cut moves on behind the walk
    until the walk passes it; each range then ends about when the others do, however
    fast the walk and the reading are (both change with the page cache's state, where
    ``_WALK_SHARE`` assumes one ratio)."""

    def goal() -> int:
        at = max(int(board[row, 0]), start)
        return (end + later * at) // (later + 1)

    return goal


def _ask(goals: list[Callable[[], int]], k: int) -> int:
    return goals[k]()


def _clear_board() -> None:
    global _BOARD
    _BOARD = None


def _cut_while_reading(parts: list[Part], pool: Any) -> tuple[list[Fragment], set[tuple[int, ...]]]:
    """The first parts, with the byte ranges of ``plan(lazy=True)``: each file's first
    range is read at once, while this process walks the record headers to each later
    one's start and then hands it out. Each range stops at the first batch border past
    its target (``until``), where the walk cut the next: checked. With ``_BOARD``, the
    targets follow the reading (``_goal``) and a range learns its end from the board.
    Returns the fragments, and the files (as chains) whose walk could not cut or whose
    ranges did not meet: their ranges' fragments are left out, for the caller to read
    them by shards, as ``plan`` would have."""
    board = _BOARD
    futures = [pool.submit(run_part, p) for p in parts if p.cut is None]
    failed: set[tuple[int, ...]] = set()
    waiting: dict[tuple[int, ...], list[Part]] = {}
    reading: dict[tuple[int, ...], Part] = {}  # each file's range being read, before a cut
    for p in parts:
        if p.cut is not None:
            waiting.setdefault(p.files, []).append(p)
        elif p.span is not None:
            reading[p.files] = p
    for files, ws in waiting.items():
        ws.sort(key=lambda p: p.cut or 0)
        now = reading.get(files)
        dynamic = board is not None and now is not None and now.slot >= 0
        with reader.open_capture(ws[0].paths[0]) as cap:
            goals: list[int | Callable[[], int]] = [p.cut or 0 for p in ws]
            holder: list[Callable[[], int]] = []  # each cut's goal, once its range is out
            if dynamic:
                assert now is not None and now.span is not None and board is not None
                holder.append(_goal(board, now.slot, now.span[0], now.span[1], len(ws)))
                goals = [functools.partial(_ask, holder, k) for k in range(len(ws))]
            walk = cap.cuts(goals)
            for k, (p, cut) in enumerate(zip(ws, walk, strict=False)):
                assert p.span is not None
                if cut is None:
                    failed.add(files)
                    break
                if dynamic:
                    assert now is not None and board is not None
                    board[now.slot, 1] = cut[0]  # where the range before ends
                if cut[0] >= p.span[1]:  # no record left for it, nor the ones after
                    break
                q = dataclasses.replace(p, span=(cut[0], p.span[1], cut[1]), cut=None)
                futures.append(pool.submit(run_part, q))
                if dynamic:
                    assert board is not None
                    now = q
                    if k + 1 < len(ws):  # the next cut's goal, from this range
                        end = q.span[1] if q.span else 0
                        holder.append(_goal(board, q.slot, cut[0], end, len(ws) - k - 1))
            walk.close()
            if dynamic and failed & {files} and now is not None and now.until is not None:
                assert board is not None
                board[now.slot, 1] = now.until  # no cut: the range ends at its target
    frags = [f.result() for f in futures]
    ranges: dict[tuple[int, ...], list[Fragment]] = {}
    for f in frags:
        if f.part.span is not None and f.part.files in waiting:
            ranges.setdefault(f.part.files, []).append(f)
    out = [f for f in frags if f.part.files not in ranges]
    for files, fs in ranges.items():
        fs.sort(key=lambda f: f.part.span[0] if f.part.span else 0)
        starts = [f.part.span[0] for f in fs[1:] if f.part.span is not None]
        if files in failed or [f.end for f in fs[:-1]] != starts:
            failed.add(files)
            continue
        for f, end in zip(fs[:-1], starts, strict=True):
            assert f.part.span is not None
            f.part = dataclasses.replace(f.part, span=(f.part.span[0], end, f.part.span[2]))
        out += fs
    return out, failed


def _unspanned(p: Part) -> Part:
    """An exact part after byte ranges, as the shard of the whole chain it would be
    without them."""
    return Part(p.files, p.paths, p.shard, p.shards)


@dataclass(slots=True)
class _Joined:
    """A file's byte ranges read as one (``_joined``): what the exact parts need."""

    summary: CaptureSummary
    errors: list[CaptureError]
    tapes: tuple[_tape.Tape, ...]


def _joined(frags: list[Fragment]) -> _Joined | None:
    """The summary and error of a whole reading of a file from its byte ranges' readings,
    and their tapes; None when a range wrote no tape, or its readings cannot give the
    whole file's summary exactly (``reader.join_spans``): the exact parts then read the
    whole file, as before tapes."""
    frags = sorted(frags, key=lambda f: f.part.span[0] if f.part.span else 0)
    tapes = [f.tape for f in frags if f.tape is not None and f.tape.usable]
    reads = [f.read for f in frags if f.read is not None]
    if len(tapes) < len(frags) or len(reads) < len(frags):
        return None
    part = frags[0].part
    path = part.paths[0]
    firsts = [f.part.span[2] if f.part.span else 1 for f in frags]
    info = reader.join_spans(path, [(r[0], k) for r, k in zip(reads, firsts, strict=True)])
    if info is None:
        return None
    counts = _Counts()
    for _, c in reads:
        counts.absorb(c)
    summary = CaptureSummary(path=path, t0_ns=part.t0)
    counts.fill(summary, info)
    errors = [e for f in frags for e in f.errors]
    if errors:
        summary.error = str(errors[0])
    return _Joined(summary, errors[:1], tuple(tapes))


def _give_back() -> None:
    """Hand the heap's free memory back to the system (glibc's ``malloc_trim``) once the
    workers' fragments are unpickled: the big buffers freed there raise glibc's mmap
    threshold, and the memory of what follows stays in the heap, free but resident (the
    parent's peak on 11 M packets with ``-j 2``: 323 MB without, about 270 MB with)."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None  # glibc's malloc_trim, False where there is none


def run_part(part: Part, progress: Callable[[str, int, int], None] | None = None) -> Fragment:
    """Analyse one part (runs in a worker process, or on a Dask worker)."""
    frag = Fragment(part, [], {}, [])
    with _gc_paused():  # (the chain may load the compiled kernels: imports, many objects)
        chain = _Chain(part, frag, progress)
        if part.span is not None:
            _run_span(part, frag, chain)
        elif part.tapes is not None:
            _run_tapes(part, frag, chain)
        else:
            _run_chain(part, frag, chain)
    return frag


def _run_span(part: Part, frag: Fragment, chain: _Chain) -> None:
    """A byte range of one file through a fast lane of its own. What it hands over is
    left to the exact parts: they read its tape (``part.folder``), or the whole file."""
    assert part.span is not None
    fi, path = part.files[0], part.paths[0]
    fast = RecordStore()
    frag.sets.append(SetResult([fi], RecordStore(), Folds(), [], [], part.t0, [0], fast=fast))
    lane = _fastlane.Lane(fast, fi, path, part.t0, _fastlane.ORACLE)
    tape = _tape.Tape(part.folder) if part.folder is not None else None
    counts = _Counts()
    board, row = _BOARD, part.slot
    until: int | Callable[[], int | None] | None = part.until
    if board is not None and row >= 0:  # where it ends: on the board, once decided
        until = lambda: int(board[row, 1]) or None  # noqa: E731
    try:
        with reader.open_capture(path) as cap:
            try:
                for batch in cap.batches(part.batch or None, span=part.span, until=until):
                    if len(batch):
                        frag.end = int(batch.offset[-1]) + int(batch.caplen[-1])
                        if board is not None and row >= 0:
                            board[row, 0] = frag.end
                    p = chain._packets(batch)
                    counts.add(p)
                    for e in p.icmp:
                        lane.flag_icmp(e)
                    keys = _fastlane.packet_hashes(p.tcp)
                    lane.feed(p.tcp, keys, chain.last_tcp_ts or 0)
                    if tape is not None:
                        tape.add(fi, batch, p.tcp, keys, len(p.whole), chain.last_tcp_ts, p.icmp)
            except CaptureError as exc:  # the file's damage: its summary reports it
                frag.errors.append(exc)
            frag.read = (cap.span_info(), counts)
    except CaptureError as exc:
        frag.errors.append(exc)
    # (an attempt still waiting at a range's end may be answered in the next one)
    frag.handed = lane.close(final=part.until is None and part.span[1] >= _size(path))
    frag.sets[0].attempts.append(lane.attempts)
    if tape is not None:
        tape.seal()
        frag.tape = tape


def _run_tapes(part: Part, frag: Fragment, chain: _Chain) -> None:
    """An exact part after byte ranges that wrote tapes: its shard of the handed-over
    4-tuples from them, with the clock and counts of the whole file. The file's summary
    is the ranges' (``_joined``), given to shard 0's fragment by the parent."""
    assert part.tapes is not None and chain.handed is not None
    fi = part.files[0]
    try:
        chain._start(fi, part.t0)
        assert chain.set is not None and chain.tracker is not None
        chain.set.files.append(fi)
        chain.set.offsets.append(0)
        chain.set.sizes.append(part.size)
        tracker, chain.tracker = chain.tracker, None
        tapes = part.tapes
        chain._windowed(tracker, part.handed, lambda t, h: chain._replay(t, tapes, h))
    finally:
        chain.end()


def _run_chain(part: Part, frag: Fragment, chain: _Chain) -> None:
    try:
        for fi, path in zip(part.files, part.paths, strict=True):
            summary = frag.summaries[fi] = CaptureSummary(path=path)
            try:
                chain.read(fi, path, summary)
            except CaptureError as exc:
                summary.error = str(exc)
                frag.errors.append(exc)
    finally:
        chain.end()


def _conn_hash(pk: decode.TcpPackets) -> np.ndarray:
    """A hash of each packet's 4-tuple, the same in both directions."""
    h = pk.src_hi ^ pk.dst_hi ^ pk.src_lo ^ pk.dst_lo
    h ^= pk.sport.astype(np.uint64) ^ pk.dport.astype(np.uint64)
    return h * np.uint64(_MIX)


def _shard_of(pk: decode.TcpPackets, shards: int) -> np.ndarray:
    return (_conn_hash(pk) >> np.uint64(40)) % np.uint64(shards)


_MIX = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _icmp_shard(err: decode.IcmpError, shards: int, by_key: bool = False) -> int:
    """The shard of the 4-tuple an ICMP error quotes, as ``_shard_of`` (or, ``by_key``,
    ``_key_shard``) gives its packets'."""
    try:
        shi, slo = decode.addr_halves(err.src)
        dhi, dlo = decode.addr_halves(err.dst)
    except ValueError:
        return 0
    if by_key:
        return (_fastlane.tuple_hash(shi, slo, err.sport, dhi, dlo, err.dport) >> 40) % shards
    h = (shi ^ dhi ^ slo ^ dlo ^ err.sport ^ err.dport) * _MIX & _M64
    return (h >> 40) % shards


def _key_shard(keys: np.ndarray, shards: int) -> np.ndarray:
    """The shard of packets by their fast lane's key (``_fastlane.packet_hashes``): how
    the exact parts after tapes, which hold the keys, split the 4-tuples."""
    return (keys >> np.uint64(40)) % np.uint64(shards)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _interfaces(batch: reader.RecordBatch, frames: np.ndarray) -> np.ndarray | None:
    """The capture interface of the batch's records ``frames``; None where every record
    of the batch has the same one (a pcap file's always do), which ``decode.duplicates``
    takes without a row of them."""
    every = batch.interface
    if not len(every) or (every == every[0]).all():
        return None
    return every[batch.rows(frames)]


@dataclass(slots=True)
class _Packets:
    """One batch's packets as a part tracks them (``_Chain._packets``): the first pass
    and the fast lane's second take the same steps, so they see the same packets."""

    dec: decode.DecodedBatch
    whole: decode.TcpPackets  # its TCP packets without duplicates, every shard's
    tcp: decode.TcpPackets  # ... this part's shard of them
    icmp: list[decode.IcmpError]  # this shard's ICMP errors
    dups: int  # duplicate frames dropped
    first_dup: int  # the frame of the first of them, when there are


class _Handed:
    """What the fast lane handed to the exact tracker (``_fastlane.Lane.close``: windows
    of a 4-tuple hash's frames, from any number of lanes), and which of a batch's
    packets fall in them. A table of the hashes' low bits (``_arrays.Sieve``) rules out
    nearly all other packets with one gather, and only the few left are searched.

    Windows of a hash that overlap or touch are one; where one ends (the lane took the
    4-tuple back at a fresh SYN, ``ends``), the exact tracker is fed that SYN, finishes
    the connection before it as it would anyway, and starts none (``Tracker.ends``).
    ``whole``: every window made whole, every packet of each hash from the capture's
    start, as before windows (after the tracker disagreed with a lane about where a
    connection starts: ``Tracker.ends_missed``)."""

    def __init__(self, windows: np.ndarray, whole: bool = False) -> None:
        w = np.asarray(windows, np.int64).reshape(-1, 3)
        self.windows = w
        keys = w[:, 0].view(np.uint64)
        self.flagged = flagged = _arrays.distinct(keys)
        self.sieve = _arrays.Sieve(flagged)
        self.ends: set[int] = set()
        self.lo = self.hi = None  # codes of merged windows, when not all are whole
        plain = (w[:, 1] == 0).all() and (w[:, 2] < 0).all()
        if whole or plain or len(flagged) >= 1 << 22:
            return
        # merged windows per hash, as codes (hash's index << 40 | frame) to search
        kidx = np.searchsorted(flagged, keys)
        end = np.where(w[:, 2] < 0, _FRAME_MAX, np.minimum(w[:, 2], _FRAME_MAX))
        order = np.lexsort((w[:, 1], kidx))
        lo: list[int] = []
        hi: list[int] = []
        last_k = -1
        for k, a, b in zip(
            kidx[order].tolist(), w[order, 1].tolist(), end[order].tolist(), strict=True
        ):
            if k == last_k and a <= hi[-1] - (k << 40):
                hi[-1] = max(hi[-1], (k << 40) | b)
                continue
            lo.append((k << 40) | a)
            hi.append((k << 40) | b)
            last_k = k
        self.lo, self.hi = np.array(lo, np.int64), np.array(hi, np.int64)
        mask = (1 << 40) - 1
        self.ends = {h & mask for h in hi if h & mask != _FRAME_MAX}

    def rows(self, h: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """The rows of a batch's packets (``h``: their hashes, ``frames``: their frame
        numbers) that were handed over."""
        cand = np.flatnonzero(self.sieve(h))
        if not len(cand):
            return cand
        hc = h[cand]
        pos = np.searchsorted(self.flagged, hc)
        pos[pos == len(self.flagged)] = 0
        hit = self.flagged[pos] == hc
        cand = cand[hit]
        if self.lo is None or not len(cand):
            return cand
        code = (pos[hit].astype(np.int64) << 40) | np.minimum(frames[cand], _FRAME_MAX)
        j = np.searchsorted(self.lo, code, side="right") - 1
        inside = (j >= 0) & (self.hi[np.maximum(j, 0)] >= code)
        return cand[inside]

    def take(self, tcp: decode.TcpPackets) -> decode.TcpPackets:
        """The packets of ``tcp`` that were handed over."""
        if not len(tcp):
            return tcp
        return decode.take(tcp, self.rows(_fastlane.packet_hashes(tcp), tcp.frame))


_FRAME_MAX = (1 << 40) - 1  # frames past this (a trillion) are searched as this one


def _whole(windows: np.ndarray) -> np.ndarray:
    """``windows`` made whole: every frame of each 4-tuple hash (``_Handed(whole=True)``)."""
    w = np.asarray(windows, np.int64).reshape(-1, 3).copy()
    w[:, 1], w[:, 2] = 0, -1
    return w


class _Chain:
    """Reads the files of a part into one tracker, starting a new set where a file does
    not continue the previous one."""

    def __init__(
        self, part: Part, frag: Fragment, progress: Callable[[str, int, int], None] | None
    ) -> None:
        self.part, self.frag, self.progress = part, frag, progress
        self.set: SetResult | None = None
        self.tracker: Tracker | None = None
        self.offset = 0  # frames of the set's earlier files
        self.last_ts: int | None = None  # of the set's last record
        self.last_tcp_ts: int | None = None
        self.tail: decode.TcpPackets | None = None  # the last batch's TCP packets
        # The fast lane (``_fastlane``) when the part is big enough to pay for it
        self.use_lane = not part.exact and _fastlane.worth_it(sum(_size(p) for p in part.paths))
        self.lane: _fastlane.Lane | None = None
        self.tape: _tape.Tape | None = None  # what the lane's second pass reads
        self.fed = False  # has a lane had a batch?
        # after spans: what the exact tracker is fed (read from the files: every window
        # whole, as no second reading is made if the tracker disagreed with a lane; from
        # tapes, ``_run_tapes`` makes its own)
        self.handed = _Handed(part.handed, whole=True) if part.handed is not None else None

    def _start(self, fi: int, t0: int) -> None:
        self.end()
        s = self.set = SetResult([], RecordStore(), Folds(), [], [], t0)
        if self.part.handed is not None:  # an exact part fed every packet of these hashes
            s.windows = _whole(self.part.handed)
        self.frag.sets.append(s)
        self.offset = 0
        self.tracker = self._tracker(s, fi)
        if self.use_lane:
            path = self.part.paths[self.part.files.index(fi)]
            fast = s.fast = RecordStore()
            self.lane = _fastlane.Lane(fast, fi, path, t0, _fastlane.ORACLE)
            self.tape = _tape.Tape()

    def _tracker(self, s: SetResult, fi: int) -> Tracker:
        """An exact tracker whose connections go to set ``s`` (its first file ``fi``)."""
        path, t0 = self.part.paths[self.part.files.index(fi)], s.t0

        def finished(conn: Connection) -> None:
            tls = conn.tls
            if tls is not None and tls.client_hello is not None and tls.client_hello.random:
                s.tls_seen.append(
                    _TlsSeen(
                        conn.keys[0], conn.first_frame, conn.last_frame, tls.client_hello.random
                    )
                )
            if not s.folds.take(conn, path, t0):
                s.records.append(explain(conn, path, t0))

        tracker = Tracker(finished)
        tracker.capture = fi
        if self.part.shards > 1:
            tracker.live_pressure = max(1, tracker.live_pressure // self.part.shards)
        return tracker

    def end(self) -> None:
        """Finish the current set: every connection still open is finished."""
        tracker, self.tracker = self.tracker, None
        lane, self.lane = self.lane, None
        tape, self.tape = self.tape, None
        if tracker is not None:
            if lane is not None and self.set is not None:
                windows = lane.close()
                self.set.attempts.append(lane.attempts)
                del lane  # its tables and caches: not needed by the second pass
                _give_back()
                try:
                    self._windowed(tracker, windows, lambda t, h: self._exact_pass(t, h, tape))
                finally:
                    if tape is not None:
                        tape.close()
                return
            tracker.close()
        self.last_tcp_ts = None

    def _windowed(
        self, tracker: Tracker, windows: np.ndarray, feed: Callable[[Tracker, _Handed], None]
    ) -> None:
        """The exact tracker fed the lanes' ``windows`` by ``feed``, and closed. Where it did
        not start a connection at a SYN a lane took a 4-tuple back at (a lane's guess of
        the tracker's state was wrong: ``Tracker.ends_missed``), the set's connections are
        tracked again from every packet of the handed-over 4-tuples, as before windows."""
        s = self.set
        assert s is not None

        def track(t: Tracker, handed: _Handed) -> None:
            t.ends = handed.ends
            self.last_tcp_ts = None  # the clock runs again from the set's start
            feed(t, handed)
            t.close()

        s.windows = windows
        track(tracker, _Handed(windows))
        if tracker.ends_missed:
            s.records, s.folds, s.tls_seen = RecordStore(), Folds(), []
            s.windows = _whole(windows)
            track(self._tracker(s, s.files[0]), _Handed(windows, whole=True))
        self.last_tcp_ts = None

    def _exact_pass(self, tracker: Tracker, handed: _Handed, tape: _tape.Tape | None) -> None:
        """The fast lane's second pass: the exact tracker fed only the 4-tuples the fast
        lane handed over, with the sweeps and clock of the whole capture, from the first
        pass's tape (``_tape``), else from the set's files read again."""
        part = self.part
        rset = self.set
        assert rset is not None
        if tape is not None and tape.usable:
            self._replay(tracker, [tape], handed)
            return
        paths = [part.paths[part.files.index(fi)] for fi in rset.files]
        # a damaged file ends where the first pass ended, which reported it
        batches = reader.chain_batches(
            paths, rset.offsets, part.batch or None, skip_errors=True, sizes=rset.sizes
        )
        for batch in batches:
            p = self._packets(batch)
            self._track(tracker, handed.take(p.tcp), p.icmp, len(p.whole))

    def _replay(self, tracker: Tracker, tapes: Sequence[_tape.Tape], handed: _Handed) -> None:
        """Feed ``tracker`` this part's shard of the ``handed`` 4-tuples from ``tapes`` (one
        file's, in order), their records read again by offset, with the clock and counts
        of the whole reading: a tape's clock is its own reading's, so the clock is the
        largest yet."""
        part = self.part
        cap: reader.Capture | None = None
        fi = -1  # the file ``cap`` reads
        clock = -1
        try:
            for tape in tapes:
                for b in tape.batches():
                    if cap is None or b.file != fi:
                        if cap is not None:
                            cap.close()
                        fi = b.file
                        cap = reader.open_capture(part.paths[part.files.index(fi)])
                    keys = b.rows["key"]
                    which = handed.rows(keys, b.rows["frame"])
                    icmp = b.icmp
                    if part.tapes is not None and part.shards > 1:
                        # byte ranges' tapes hold every shard's: this one's by the lane's
                        # key, read alone (a shard's own tape holds its packets only)
                        which = which[_key_shard(keys[which], part.shards) == part.shard]
                        icmp = [e for e in icmp if _icmp_shard(e, part.shards, True) == part.shard]
                    tcp = decode.decode_batch(_tape.records(cap, b.rows, which)).tcp
                    clock = max(clock, b.clock)
                    self.last_tcp_ts = clock if clock >= 0 else None
                    self._track(tracker, tcp, icmp, b.seen)
                    if len(which):  # the tracker copies what it keeps of the bytes
                        cap.release(int(b.rows["offset"][which[-1]]))
        finally:
            if cap is not None:
                cap.close()

    def _packets(self, batch: reader.RecordBatch) -> _Packets:
        """What both passes do with a batch (its frames numbered in the set already):
        decode it, drop duplicate frames, move the capture's clock on (``last_tcp_ts``),
        keep this part's shard."""
        part = self.part
        dec = decode.decode_batch(batch)
        tcp, icmp = dec.tcp, dec.icmp
        dups = first_dup = 0
        dup = decode.duplicates(tcp, _interfaces(batch, tcp.frame))
        if dup.any():
            dups, first_dup = int(dup.sum()), int(tcp.frame[np.argmax(dup)])
            tcp = decode.take(tcp, np.nonzero(~dup)[0])
        whole = tcp
        if len(tcp):
            self.last_tcp_ts = max(self.last_tcp_ts or 0, int(tcp.ts_ns.max()))
        if part.shards > 1:
            mine = _shard_of(tcp, part.shards) == part.shard
            tcp = decode.take(tcp, np.nonzero(mine)[0])
            icmp = [e for e in icmp if _icmp_shard(e, part.shards) == part.shard]
        return _Packets(dec, whole, tcp, icmp, dups, first_dup)

    def _track(
        self, tracker: Tracker, tcp: decode.TcpPackets, icmp: list[decode.IcmpError], seen: int
    ) -> None:
        """Feed the exact tracker this shard's packets of a batch with the whole capture's
        clock and count (``seen``), so that its sweeps come when and as they come in one
        process that tracks everything."""
        if self.last_tcp_ts is not None:
            tracker.clock = self.last_tcp_ts
        tracker.feed(tcp, icmp, seen)

    def read(self, fi: int, path: str, summary: CaptureSummary) -> None:
        part = self.part
        counts = _Counts()
        cap = reader.open_capture(path)
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        info = cap.info
        first = True
        try:
            for batch in cap.batches(part.batch or None, upto=part.size or None):
                if first and len(batch):
                    first = False
                    ts0 = int(batch.ts_ns[0])
                    if not self._continues(ts0, batch):
                        self._start(fi, ts0)
                    assert self.set is not None
                    self.set.files.append(fi)
                    self.set.offsets.append(self.offset)
                    self.set.sizes.append(cap.size)
                    summary.t0_ns = self.set.t0
                if self.offset:
                    batch.frame = batch.frame + self.offset
                p = self._packets(batch)
                counts.add(p)
                if len(p.whole):
                    self.tail = p.whole
                tracker = self.tracker
                if tracker is None:  # no record yet (cannot happen with packets)
                    continue
                lane = self.lane
                if lane is not None:  # the second pass feeds the tracker (_exact_pass)
                    for e in p.icmp:
                        lane.flag_icmp(e)
                    keys = _fastlane.packet_hashes(p.tcp)
                    lane.feed(p.tcp, keys, self.last_tcp_ts or 0)
                    if not self.fed:  # the reader's kernels are loaded too by now
                        self.fed = True
                        _resident.hand_back()
                    tape = self.tape
                    if tape is not None and tape.usable:
                        if cap.size:
                            tape.add(fi, batch, p.tcp, keys, len(p.whole), self.last_tcp_ts, p.icmp)
                        else:  # not mapped: no reading by offsets
                            tape.drop()
                else:  # sweeps follow the packets of the whole capture
                    tcp = p.tcp if self.handed is None else self.handed.take(p.tcp)
                    self._track(tracker, tcp, p.icmp, len(p.whole))
                if self.progress is not None and part.shard == 0:
                    self.progress(
                        path, int(batch.frame[-1]) - self.offset if len(batch) else 0, size
                    )
        finally:
            counts.fill(summary, info)
            if self.set is not None and fi in self.set.files:
                self.set.secrets.extend(info.secrets)
                self.offset += info.packets
                if info.last_ts_ns is not None:
                    self.last_ts = info.last_ts_ns
            cap.close()

    def _continues(self, first_ts: int, batch: reader.RecordBatch) -> bool:
        """Does a file continue the current set, as a rotated file continues the one
        before? It starts where that one ended (no overlap, a short gap), and one of its
        first packets belongs to a connection seen at that one's end. Files that no
        connection spans keep their own frame numbers: stitching them would change nothing
        else (and two captures recorded one after the other are not one capture)."""
        last = self.last_ts
        if (
            self.set is None
            or self.tracker is None
            or last is None
            or not 0 <= first_ts - last <= ROTATION_GAP_NS
            or self.tail is None
        ):
            return False
        pk = decode.decode_batch(batch).tcp
        mid = (pk.flags & (SYN | ACK)) != SYN  # not the first SYN of a new connection
        return bool(_arrays.member(_conn_hash(pk)[mid], _conn_hash(self.tail)).any())


def merge(
    fragments: list[Fragment],
    n_files: int,
    keys: KeyLog | None = None,
    decrypt_timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[Records, list[CaptureSummary], list[CaptureError], list[IdleTimeout]]:
    """One analysis from the parts' fragments: each set's records in order of their
    first frame (ids count on from earlier sets; decrypted records replace keyless ones),
    one summary per file, each error once, and the cross-connection facts. The records
    are not decoded here: ``Records.adopt`` takes the workers' compressed runs as they
    are, and their facts, gathered by the workers, are merged by a permutation."""
    summaries: dict[int, CaptureSummary] = {}
    errors: list[CaptureError] = []
    by_set: dict[int, list[SetResult]] = {}
    for frag in fragments:
        for fi, summary in frag.summaries.items():
            summaries.setdefault(fi, summary)
        if frag.part.shard == 0 and frag.part.span is None:
            errors.extend(frag.errors)
        for s in frag.sets:
            by_set.setdefault(s.files[0], []).append(s)
    records = Records()
    facts = CrossFacts()
    for key in sorted(by_set):
        shards = by_set[key]
        first = shards[0]
        files = [summaries[i].path for i in first.files]
        seen = sorted((t for s in shards for t in s.tls_seen), key=lambda t: t.first_frame)
        plain = _decrypt_set(files, first, summaries[key], seen, keys, decrypt_timeout)
        windows = _windows(shards)
        lanes = _attempt_folds(shards, windows, files[0], first.t0)
        _overlapped(shards, windows)
        folds, kept = Folds.merged([s.folds for s in shards] + lanes)
        extra = RecordStore()
        for rec in sorted(kept + folds.records(), key=_first_frame):
            extra.append(rec)
        # The stores' chunks are adopted as they are, ordered by first frame; for a first
        # frame two stores hold, the exact tracker's record comes first and stays (the
        # fast lane's replay of a connection it handed over gives way).
        stores = [s.records for s in shards]
        stores += [s.fast for s in shards if s.fast is not None]
        records.adopt([*stores, extra], facts, plain)
        for fi, off in zip(first.files[1:], first.offsets[1:], strict=True):
            summaries[fi].stitched_to = files[0]
            summaries[fi].frame_offset = off
    facts.apply(records)
    captures = [summaries[i] for i in range(n_files) if i in summaries]
    return records, captures, errors, facts.idle_timeouts()


FOLD_KEEP = 20  # flood-like connections per (server, outcome) reported one by one
FOLD_GROUPS = 1_000  # beyond this many servers, new ones share one group per outcome
FOLD_CLIENTS = 10_000  # distinct client addresses counted exactly, per group
_FOLDABLE = ("syn_timeout", "refused")


class _Fold:
    """Connections folded into one row: what they have in common and how many. The
    sample (the one whose evidence the row quotes) is the earliest folded connection."""

    __slots__ = ("sample", "count", "syns", "first_ts", "last_ts", "first_frame", "last_frame",
                 "clients", "packets")  # fmt: skip

    def __init__(self, sample: ConnectionRecord) -> None:
        self.sample = sample
        self.count = self.syns = self.packets = 0
        self.first_ts, self.last_ts = sample.start_ns, sample.end_ns
        self.first_frame, self.last_frame = sample.first_frame, sample.last_frame
        self.clients: set[str] = set()

    def add(
        self, start: int, end: int, first: int, last: int, syns: int, packets: int, client: str
    ) -> None:
        self.count += 1
        self.syns += syns
        self.packets += packets
        self.first_ts = min(self.first_ts, start)
        self.last_ts = max(self.last_ts, end)
        self.first_frame = min(self.first_frame, first)
        self.last_frame = max(self.last_frame, last)
        if len(self.clients) < FOLD_CLIENTS:
            self.clients.add(client)

    def add_record(self, r: ConnectionRecord) -> None:
        self.add(r.start_ns, r.end_ns, r.first_frame, r.last_frame, r.syn_count,
                 r.client_packets + r.server_packets, r.client_ip)  # fmt: skip
        if r.first_frame < self.sample.first_frame:
            self.sample = r

    def absorb(self, other: _Fold) -> None:
        self.count += other.count
        self.syns += other.syns
        self.packets += other.packets
        self.first_ts = min(self.first_ts, other.first_ts)
        self.last_ts = max(self.last_ts, other.last_ts)
        self.first_frame = min(self.first_frame, other.first_frame)
        self.last_frame = max(self.last_frame, other.last_frame)
        room = FOLD_CLIENTS - len(self.clients)
        if room > 0:
            self.clients.update(list(other.clients)[:room])
        if other.sample.first_frame < self.sample.first_frame:
            self.sample = other.sample


class Folds:
    """Floods and scans: beyond ``FOLD_KEEP`` unanswered (or refused) SYN-only connections
    to one server, the rest become one row that says how many, from how many clients, and
    when. That keeps memory and reports flat under a million SYNs; every connection is
    still counted (``ConnectionRecord.count``).

    The ones kept are the ``FOLD_KEEP`` earliest by first frame, whatever order they were
    finished in, so that shards of a capture fold exactly as one process does: each shard
    keeps its own earliest, and ``merged`` keeps the earliest of those."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], list[ConnectionRecord]] = {}
        self.groups: dict[tuple[str, str], _Fold] = {}

    def _key(self, server: str, outcome: str) -> tuple[str, str]:
        key = (server, outcome)
        if key not in self.kept and len(self.kept) >= FOLD_GROUPS:
            key = ("*", outcome)
        return key

    def take(self, conn: Connection, path: str, t0: int) -> bool:
        """Keep ``conn`` aside (True) when it is flood-like; a kept connection it displaces
        from the earliest ``FOLD_KEEP`` is folded instead."""
        outcome = conn.machine.outcome
        if (
            outcome not in _FOLDABLE
            or conn.orientation != "syn"
            or conn.synack_ts is not None
            or conn.c.bytes
            or conn.s.bytes
        ):
            return False
        key = self._key(conn.s_addr, outcome)
        kept = self.kept.setdefault(key, [])
        if len(kept) < FOLD_KEEP or conn.first_frame < kept[-1].first_frame:
            rec = explain(conn, path, t0)
            bisect.insort(kept, rec, key=_first_frame)
            if len(kept) > FOLD_KEEP:
                self._fold(key, kept.pop())
            return True
        group = self.groups.get(key)
        if group is None or conn.first_frame < group.sample.first_frame:
            self._fold(key, explain(conn, path, t0))
        else:
            group.add(conn.start_ts, conn.end_ts, conn.first_frame, conn.last_frame,
                      len(conn.syn_ts), conn.c.packets + conn.s.packets, conn.c_addr)  # fmt: skip
        return True

    def take_record(
        self, key: tuple[str, str], first: int, record: Callable[[], ConnectionRecord],
        row: np.ndarray, name: Callable[[int, int, int], str],
    ) -> None:  # fmt: skip
        """A fast lane's attempt (its row, ``_fastlane.A_*``; ``record`` makes its record),
        taken as ``take`` takes a connection: a record made only where one is kept."""
        kept = self.kept.setdefault(key, [])
        if len(kept) < FOLD_KEEP or first < kept[-1].first_frame:
            bisect.insort(kept, record(), key=_first_frame)
            if len(kept) > FOLD_KEEP:
                self._fold(key, kept.pop())
            return
        group = self.groups.get(key)
        if group is None or first < group.sample.first_frame:
            self._fold(key, record())
        else:
            self.add_rows(key, row.reshape(1, -1), name)

    def add_rows(
        self, key: tuple[str, str], rows: np.ndarray, name: Callable[[int, int, int], str]
    ) -> None:
        """Attempts (rows of ``_fastlane.A_*``) folded into ``key``'s group, which holds
        an earlier one already, as columns (``name``: a client's address as text)."""
        fl = _fastlane
        group = self.groups[key]
        group.count += len(rows)
        group.syns += int(len(rows) + rows[:, fl.A_NSYN].sum())
        group.packets += int(rows[:, fl.A_CPKTS].sum() + rows[:, fl.A_SPKTS].sum())
        group.first_ts = min(group.first_ts, int(rows[:, fl.A_SYN_TS].min()))
        group.last_ts = max(group.last_ts, int(rows[:, fl.A_END_TS].max()))
        group.first_frame = min(group.first_frame, int(rows[:, fl.A_SYN_FRAME].min()))
        group.last_frame = max(group.last_frame, int(rows[:, fl.A_LAST_FRAME].max()))
        if len(group.clients) < FOLD_CLIENTS:
            ends = rows[:, [fl.A_IPVER, fl.A_CHI, fl.A_CLO]]
            if (ends[:, :2] == ends[0, :2]).all():  # (one sort of one column)
                ends = ends[np.unique(ends[:, 2], return_index=True)[1]]
            else:
                ends = np.unique(ends, axis=0)
            for ipver, hi, lo in ends.tolist():
                if len(group.clients) >= FOLD_CLIENTS:
                    break
                group.clients.add(name(ipver, hi, lo))

    def _fold(self, key: tuple[str, str], rec: ConnectionRecord) -> None:
        group = self.groups.get(key)
        if group is None:
            self.groups[key] = group = _Fold(rec)
        group.add_record(rec)

    @classmethod
    def merged(cls, parts: list[Folds]) -> tuple[Folds, list[ConnectionRecord]]:
        """The folds of a whole capture from its shards', and the connections kept apart."""
        out = cls()
        for f in parts:
            for key, group in f.groups.items():
                mine = out.groups.get(key)
                if mine is None:
                    out.groups[key] = group
                else:
                    mine.absorb(group)
            for key, kept in f.kept.items():
                out.kept.setdefault(key, []).extend(kept)
        records: list[ConnectionRecord] = []
        for key, kept in out.kept.items():
            kept.sort(key=_first_frame)
            records.extend(kept[:FOLD_KEEP])
            for rec in kept[FOLD_KEEP:]:
                out._fold(key, rec)
            del kept[FOLD_KEEP:]
        return out, records

    def records(self) -> list[ConnectionRecord]:
        out = []
        for (server, _), g in self.groups.items():
            rec = dataclasses.replace(g.sample)
            rec.count = g.count
            rec.start_ns, rec.end_ns = g.first_ts, g.last_ts
            rec.first_frame, rec.last_frame = g.first_frame, g.last_frame
            rec.syn_count = g.syns
            clients = f"{len(g.clients):,}{'+' if len(g.clients) >= FOLD_CLIENTS else ''}"
            where = "many servers" if server == "*" else f"server {g.sample.server_ip}"
            rec.evidence = (
                f"{g.count:,} more connections like the first {FOLD_KEEP} to {where} "
                f"({rec.outcome}), folded into this row: {g.syns:,} SYNs from {clients} client "
                f"addresses, frames {g.first_frame}–{g.last_frame}, over "
                f"{(g.last_ts - g.first_ts) / NS:.1f} s — a SYN flood or scan pattern. "
                f"Like them: {g.sample.evidence}"
            )
            out.append(rec)
        return out


def _windows(shards: list[SetResult]) -> np.ndarray:
    """Every window a set's lanes handed the exact tracker (``SetResult.windows``), sorted
    by 4-tuple hash: what ``_covering`` searches."""
    wins = [s.windows for s in shards if s.windows is not None and len(s.windows)]
    w = np.concatenate(wins) if wins else np.zeros((0, 3), np.int64)
    return w[np.argsort(w[:, 0], kind="stable")]


def _attempt_folds(shards: list[SetResult], w: np.ndarray, path: str, t0: int) -> list[Folds]:
    """The fast lanes' attempts of a set (``_fastlane.Attempts``) folded as the exact
    tracker folds its own (``Folds.take``), a chunk of rows at a time: per server and
    outcome, the earliest of a chunk are replayed into records (``attempt_record``) and
    taken one by one, and the rest, later than any the fold keeps or samples, are added
    up as columns. An attempt a lane's window covers is left out: the exact tracker was
    fed its packets, and made its own connection of them (a packet of its 4-tuple came
    after the lane let it go). ``w``: the set's windows (``_windows``)."""
    atts = [a for s in shards for a in s.attempts if len(a)]
    if not atts:
        return []
    fl = _fastlane
    capture = shards[0].files[0]
    out = Folds()
    names: dict[tuple[int, int, int], str] = {}

    def name(ipver: int, hi: int, lo: int) -> str:
        got = names.get((ipver, hi, lo))
        if got is None:
            got = names[(ipver, hi, lo)] = _addr(ipver, hi & _M64, lo & _M64)
        return got

    for att in atts:
        for rows in att.chunks():
            rows = rows[~_covered(rows, w)]
            for ipver, hi, lo, rst, mine in _by_server(rows):
                mine = mine[np.argsort(mine[:, fl.A_SYN_FRAME], kind="stable")]
                outcome = "refused" if rst else "syn_timeout"
                key = out._key(name(ipver, hi, lo), outcome)
                head, rest = mine[: FOLD_KEEP + 1], mine[FOLD_KEEP + 1 :]
                for r in head:
                    out.take_record(key, int(r[fl.A_SYN_FRAME]), lambda r=r, a=att: fl.attempt_record(
                        r, a.resent(r), capture, path, t0), r, name)  # fmt: skip
                if len(rest):
                    out.add_rows(key, rest, name)
    return [out]


def _covered(rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Which attempts (rows of ``_fastlane.A_*``) a window (``w``, sorted by hash) fed to
    the exact tracker (``_covering``)."""
    fl = _fastlane
    return _covering(w, rows[:, fl.A_KEY], rows[:, fl.A_SYN_FRAME], rows[:, fl.A_LAST_FRAME])


def _covering(w: np.ndarray, keys: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Which connections (their 4-tuple hashes, first and last frames) a window of ``w``
    (rows of hash, first frame, last frame or -1; sorted by hash) fed to the exact
    tracker: one of their hash from at most their last frame to past their first (a
    window that ends at a SYN was fed that SYN to start nothing)."""
    out = np.zeros(len(keys), bool)
    (cand,) = np.nonzero(_arrays.maybe_in(keys, w[:, 0]))
    lo = np.searchsorted(w[:, 0], keys[cand], "left")
    n = np.searchsorted(w[:, 0], keys[cand], "right") - lo
    (some,) = np.nonzero(n)
    if not len(some):
        return out
    cand, lo, n = cand[some], lo[some], n[some]
    each = np.repeat(np.arange(len(cand)), n)  # a candidate's every window
    ws = w[np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))]
    a = first[cand].astype(np.int64)[each]
    b = last[cand].astype(np.int64)[each]
    hit = (ws[:, 1] <= b) & ((ws[:, 2] < 0) | (ws[:, 2] > a))
    out[cand[each[hit]]] = True
    return out


_OVERLAP_STEP = 1 << 20  # fast records checked at a time: memory stays flat


def _overlapped(shards: list[SetResult], w: np.ndarray) -> None:
    """Leave out the fast lanes' records of connections a window also fed the exact
    tracker (``_covering``, at their first frame): its record of them stands. Mostly the
    tracker starts a connection where the lane did, and the merge keeps one record of a
    first frame anyway; not where byte ranges part a SYN from the same SYN sent again:
    the first range hands the attempt over, the next one's lane starts at the SYN sent
    again, the tracker at the first. ``w``: the set's windows (``_windows``)."""
    if not len(w):
        return
    for s in shards:
        if s.fast is None or not len(s.fast):
            continue
        keys, first = s.fast.keys.view(), _store._firsts(s.fast)
        assert len(keys) == len(first), "a fast lane's record without its 4-tuple hash"
        for at in range(0, len(keys), _OVERLAP_STEP):
            k, ff = keys[at : at + _OVERLAP_STEP], first[at : at + _OVERLAP_STEP]
            s.fast.leave_out(at + np.flatnonzero(_covering(w, k, ff, ff)))
            _columns.settle(len(k) * 12)  # (the columns' pages this step read)


def _by_server(rows: np.ndarray) -> Iterator[tuple[int, int, int, bool, np.ndarray]]:
    """Attempts (rows of ``_fastlane.A_*``) by server address and outcome (refused or
    not): a flood's are a few servers' (one sort of one column, not of four)."""
    fl = _fastlane
    if not len(rows):
        return
    lo = rows[:, fl.A_SLO]
    order = np.argsort(lo, kind="stable")
    cuts = np.flatnonzero(np.diff(lo[order])) + 1
    for part in np.split(order, cuts):
        some = rows[part]
        key = np.stack([some[:, fl.A_IPVER], some[:, fl.A_SHI],
                        some[:, fl.A_RST_FRAME] != 0], axis=1)  # fmt: skip
        if (key == key[0]).all():
            yield int(key[0, 0]), int(key[0, 1]), int(some[0, fl.A_SLO]), bool(key[0, 2]), some
            continue
        groups, which = np.unique(key, axis=0, return_inverse=True)
        for g, (ipver, hi, rst) in enumerate(groups.tolist()):
            yield ipver, hi, int(some[0, fl.A_SLO]), bool(rst), some[which.reshape(-1) == g]


def _first_frame(r: ConnectionRecord) -> int:
    return r.first_frame


@dataclass(slots=True)
class _TlsSeen:
    """A TLS connection of the keyless pass that decryption could improve."""

    ckey: tuple  # the tracker's client-side 4-tuple key
    first_frame: int
    last_frame: int
    client_random: bytes


def _decrypt_set(
    files: list[str],
    rset: SetResult,
    summary: CaptureSummary,
    tls_seen: list[_TlsSeen],
    keys: KeyLog | None,
    timeout_s: float,
) -> dict[int, ConnectionRecord]:
    """Records made from the plaintext of the TLS connections we hold secrets for, by
    first frame: they replace the keyless ones. Any failure leaves the keyless records
    and adds a warning: decryption can only add to an analysis, never lose it."""
    if not tls_seen:
        return {}
    path = files[0]
    known = KeyLog()
    if keys is not None:
        known.update(keys)
    known.add_dsb(rset.secrets, path)
    targets = [t for t in tls_seen if t.client_random in known]
    if not targets:
        return {}
    why = tshark_available()
    if why is not None:
        summary.warnings.append(
            f"{path}: {why}; {len(targets)} TLS connection(s) keep their keyless verdict"
        )
        return {}
    try:
        new = _replay_decrypted(files, rset, targets, known, timeout_s)
    except (DecryptError, CaptureError) as exc:
        summary.warnings.append(f"{path}: {exc}")
        return {}
    # A connection tshark could not decrypt (secrets that do not fit) keeps its keyless
    # record: the replay without plaintext knows less than the turns of the first pass.
    by_first = {r.first_frame: r for r in new if r.decrypted}
    summary.decrypted = len(by_first)
    if len(by_first) < len(targets):
        summary.warnings.append(
            f"{path}: {len(targets) - len(by_first)} TLS connection(s) with secrets in the key "
            "log could not be decrypted by tshark; their keyless verdicts stay"
        )
    return by_first


def _selected(
    files: list[str], offsets: list[int], lookup: dict[tuple, list[tuple[int, int, int, bool]]]
) -> Iterable:
    """The target connections' packets, batch by batch: (batch, tcp, rows, tags)."""
    codes = np.array(sorted({(k[2] << 16) | k[5] for k in lookup}), dtype=np.uint32)
    for batch in reader.chain_batches(files, offsets):
        pk = decode.decode_batch(batch).tcp
        if not len(pk):
            continue
        code = (pk.sport.astype(np.uint32) << 16) | pk.dport.astype(np.uint32)
        cand = np.nonzero(_arrays.member(code, codes))[0]
        if not len(cand):
            continue
        rows, tags = [], []
        sh, sl, dh, dl = pk.src_hi, pk.src_lo, pk.dst_hi, pk.dst_lo
        for i in cand.tolist():
            key = (
                int(sh[i]),
                int(sl[i]),
                int(pk.sport[i]),
                int(dh[i]),
                int(dl[i]),
                int(pk.dport[i]),
            )
            frame = int(pk.frame[i])
            for first, last, t, from_client in lookup.get(key, ()):
                if first <= frame <= last:
                    rows.append(i)
                    tags.append((t, from_client))
                    break
        if rows:
            yield batch, pk, np.array(rows, dtype=np.int64), tags


def _replay_decrypted(
    files: list[str],
    rset: SetResult,
    targets: list[_TlsSeen],
    keys: KeyLog,
    timeout_s: float,
) -> list[ConnectionRecord]:
    path, t0 = files[0], rset.t0
    lookup: dict[tuple, list[tuple[int, int, int, bool]]] = {}
    lines: list[str] = []
    for t, tgt in enumerate(targets):
        c = tgt.ckey
        s = (c[3], c[4], c[5], c[0], c[1], c[2])
        lookup.setdefault(c, []).append((tgt.first_frame, tgt.last_frame, t, True))
        lookup.setdefault(s, []).append((tgt.first_frame, tgt.last_frame, t, False))
        lines.extend(keys.lines_for(tgt.client_random))
    with tempfile.TemporaryDirectory(prefix="pcapdiag-tls-") as tmp:
        fpath = os.path.join(tmp, "tls.pcapng")
        frame_map: dict[int, tuple[int, int, int, bool]] = {}
        with open(fpath, "wb") as fh:
            w = PcapngWriter(fh, lines)
            for batch, pk, rows, tags in _selected(files, rset.offsets, lookup):
                pos = np.searchsorted(batch.frame, pk.frame[rows])
                for r, p, (t, fc) in zip(rows.tolist(), pos.tolist(), tags, strict=True):
                    off, cl = int(batch.offset[p]), int(batch.caplen[p])
                    w.write(
                        int(batch.linktype[p]),
                        int(batch.ts_ns[p]),
                        int(batch.wirelen[p]),
                        batch.data[off : off + cl].tobytes(),
                    )
                    frame_map[w.count] = (int(pk.frame[r]), int(pk.ts_ns[r]), t, fc)
        out: list[ConnectionRecord] = []
        tracker = Tracker(lambda conn: out.append(explain(conn, path, t0)))
        tracker.capture = rset.files[0]
        with tshark_session(fpath, frame_map, timeout_s) as feed:
            tracker.plain = feed
            tracker.plain_targets = {(t.ckey, t.first_frame): i for i, t in enumerate(targets)}
            for _batch, pk, rows, _tags in _selected(files, rset.offsets, lookup):
                tracker.feed(decode.take(pk, rows), [])
            tracker.close()
    return out


@dataclass(slots=True)
class _Counts:
    """What a reading of a file counts besides the reader's own facts, for its summary."""

    tcp: int = 0
    unknown: Counter[int] = field(default_factory=Counter)  # frames by unsupported link type
    malformed: int = 0
    malformed_first: tuple[int, str] | None = None
    dups: int = 0
    dup_first: int = 0

    def add(self, p: _Packets) -> None:
        dec = p.dec
        self.tcp += len(dec.tcp)
        self.unknown.update(dec.unknown_link)
        self.malformed += getattr(dec, "malformed_count", len(dec.malformed))
        if dec.malformed and self.malformed_first is None:
            self.malformed_first = dec.malformed[0]
        if p.dups:
            if not self.dups:
                self.dup_first = p.first_dup
            self.dups += p.dups

    def absorb(self, later: _Counts) -> None:
        """Add the counts of the reading of the bytes that follow."""
        self.tcp += later.tcp
        self.unknown.update(later.unknown)
        self.malformed += later.malformed
        self.malformed_first = self.malformed_first or later.malformed_first
        if later.dups and not self.dups:
            self.dup_first = later.dup_first
        self.dups += later.dups

    def fill(self, summary: CaptureSummary, info: reader.CaptureInfo) -> None:
        """The file's summary from these counts and the reader's facts (``info``)."""
        summary.format = info.format + (" (gzip)" if info.compressed else "")
        summary.packets = info.packets
        summary.tcp_packets = self.tcp
        summary.link_types = {
            LINKTYPE_NAMES.get(k, f"LINKTYPE_{k}"): v for k, v in info.link_types.items()
        }
        summary.first_ns, summary.last_ns = info.first_ts_ns, info.last_ts_ns
        path = summary.path
        summary.warnings = [str(w) for w in info.warnings]
        for lt, n in sorted(self.unknown.items()):
            summary.warnings.append(f"{path}: {n} frames of unsupported link type {lt} skipped")
        if self.malformed and self.malformed_first is not None:
            frame, what = self.malformed_first
            summary.warnings.append(
                f"{path} (frame {frame}): {self.malformed} malformed packet(s) skipped, first: {what}"
            )
        if self.dups:
            summary.warnings.append(
                f"{summary.path} (frame {self.dup_first}): {self.dups} duplicate frame(s) "
                "skipped (the same packet captured twice, e.g. on two interfaces)"
            )


def parse_time(value: float | str | None) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC), as logs write them."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(",", "."))
    except ValueError as exc:
        raise UsageError(f"--at: cannot read {text!r} as ISO 8601 or epoch seconds") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
