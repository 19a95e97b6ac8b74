"""Run the pipeline over captures: read → decode → track → classify → explain.

``analyze()`` streams each capture batch by batch; finished connections are explained as
soon as the tracker lets go of them, so memory follows open connections, not file size.
A damaged capture stops at the damage: everything before it is still analysed and the
error is kept in ``Analysis.errors`` (the CLI then exits 1 after printing the results).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pcapdiag import decode, reader
from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.connections import NS, Connection, Tracker
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
    IdleTimeout,
    annotate_forged_refusals,
    annotate_retries,
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
        }


@dataclass
class Analysis:
    """The result of ``pcapdiag.analyze``: one record per TCP connection, and capture facts."""

    records: list[ConnectionRecord]
    captures: list[CaptureSummary]
    idle_timeouts: list[IdleTimeout]
    errors: list[CaptureError] = field(default_factory=list)
    cwd: str = field(default_factory=os.getcwd)  # relative capture paths are relative to it

    @property
    def problems(self) -> list[ConnectionRecord]:
        return [r for r in self.records if r.outcome in PROBLEMS]

    @property
    def idle_timeout_s(self) -> float | None:
        return self.idle_timeouts[0].seconds if self.idle_timeouts else None

    @property
    def by_outcome(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for r in self.records:
            counts[r.outcome] += r.count
        return {o: counts[o] for o in OUTCOMES if counts[o]}

    @property
    def summary(self) -> dict[str, Any]:
        return {
            "connections": sum(r.count for r in self.records),
            "rows": len(self.records),
            "problems": len(self.problems),
            "by_outcome": self.by_outcome,
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

    def to_json(self) -> dict[str, Any]:
        return {
            "captures": [c.to_json() for c in self.captures],
            "summary": self.summary,
            "connections": [r.to_json() for r in self.records],
        }

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
            recs = [r for r in recs if r.outcome in PROBLEMS]
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
        """``build()`` once per list of records (a frame is rebuilt if ``records`` changes)."""
        stamp = (id(self.records), len(self.records))
        cache = self.__dict__.setdefault("_pcapdiag_cache", {})
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = cache[key] = (stamp, build())
        return hit[1]

    @property
    def connections(self) -> pd.DataFrame:
        """One row per connection, indexed by ``id``: the JSON contract flattened, with
        declared dtypes (``pcapdiag.frames.CONNECTION_SCHEMA``); an empty analysis gives an
        empty frame with the same columns and dtypes. Each access returns a fresh copy."""
        from pcapdiag import frames

        return self._cached("connections", lambda: frames.connections_frame(self.records)).copy()

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
        if not os.path.isabs(rec.capture):  # the working directory may have changed since
            rec = dataclasses.replace(rec, capture=os.path.join(self.cwd, rec.capture))
        return frames.packets_frame(rec, start)

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
) -> Analysis:
    """Analyse one or more captures (a directory means every capture in it).

    ``keylog``: NSS key log file(s) (``SSLKEYLOGFILE``); TLS connections whose secrets
    are there, or embedded in a pcapng, are decrypted with tshark and classified from
    their plaintext. ``progress(path, packets_read, file_size)`` is called after each
    batch, for a caller that wants to show progress; it must not raise.
    """
    files = expand_paths(paths)
    if isinstance(keylog, (str, os.PathLike)):
        keylog = [keylog]
    keys = KeyLog.from_files(keylog or ())
    records: list[ConnectionRecord] = []
    captures: list[CaptureSummary] = []
    errors: list[CaptureError] = []
    for idx, path in enumerate(files):
        summary = CaptureSummary(path=path)
        captures.append(summary)
        try:
            _analyze_file(path, idx, summary, records, progress, keys, decrypt_timeout)
        except CaptureError as exc:
            summary.error = str(exc)
            errors.append(exc)
    annotate_retries(records)
    annotate_forged_refusals(records)
    result = Analysis(records, captures, infer_idle_timeouts(records), errors)
    if problems or host or port is not None or at is not None:
        result = result.filter(
            problems=problems, host=host, port=port, at=parse_time(at), window=window
        )
    return result


def _analyze_file(
    path: str,
    idx: int,
    summary: CaptureSummary,
    records: list[ConnectionRecord],
    progress: Callable[[str, int, int], None] | None = None,
    keys: KeyLog | None = None,
    decrypt_timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Append the file's connections to ``records`` in order of their first frame; ids
    continue from the connections of earlier files, so they are unique per analysis.
    On damage, the connections read before it are appended before the error propagates."""
    mine: list[ConnectionRecord] = []
    tls_seen: list[_TlsSeen] = []
    secrets: list[tuple[int, bytes]] = []
    try:
        _read_file(path, idx, summary, mine, progress, tls_seen, secrets)
    finally:
        if tls_seen:
            _decrypt_file(path, idx, summary, mine, tls_seen, secrets, keys, decrypt_timeout)
        mine.sort(key=lambda r: r.first_frame)
        for i, rec in enumerate(mine, start=len(records)):
            rec.id = i
        records.extend(mine)


def _read_file(
    path: str,
    idx: int,
    summary: CaptureSummary,
    records: list[ConnectionRecord],
    progress: Callable[[str, int, int], None] | None,
    tls_seen: list[_TlsSeen],
    secrets: list[tuple[int, bytes]],
) -> None:
    t0: list[int] = []
    pending: list[Connection] = []

    folds = Folds()

    def finished(conn: Connection) -> None:
        tls = conn.tls
        if tls is not None and tls.client_hello is not None and tls.client_hello.random:
            tls_seen.append(
                _TlsSeen(conn.keys[0], conn.first_frame, conn.last_frame, tls.client_hello.random)
            )
        if folds.take(conn):
            return
        if t0:
            records.append(explain(conn, path, t0[0]))
        else:
            pending.append(conn)

    tracker = Tracker(finished)
    tracker.capture = idx
    unknown: Counter[int] = Counter()
    malformed_total = 0
    malformed_first: tuple[int, str] | None = None
    dup_count = 0
    dup_first: list[int] = []
    cap = reader.open_capture(path)
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    try:
        info = cap.info
        try:
            for batch in cap.batches():
                if not t0 and len(batch):
                    t0.append(int(batch.ts_ns[0]))
                dec = decode.decode_batch(batch)
                summary.tcp_packets += len(dec.tcp)
                unknown.update(dec.unknown_link)
                count = getattr(dec, "malformed_count", len(dec.malformed))
                malformed_total += count
                if dec.malformed and malformed_first is None:
                    malformed_first = dec.malformed[0]
                tcp = dec.tcp
                iface = batch.interface[np.searchsorted(batch.frame, tcp.frame)]
                dup = decode.duplicates(tcp, iface)
                if dup.any():
                    if not dup_count:
                        dup_first.append(int(tcp.frame[np.argmax(dup)]))
                    dup_count += int(dup.sum())
                    tcp = decode.take(tcp, np.nonzero(~dup)[0])
                tracker.feed(tcp, dec.icmp)
                if progress is not None:
                    progress(path, int(batch.frame[-1]) if len(batch) else 0, size)
        finally:
            tracker.close()
            base = t0[0] if t0 else 0
            for conn in pending:
                records.append(explain(conn, path, base))
            records.extend(folds.records(path, base))
            _fill_summary(summary, info, unknown, malformed_total, malformed_first)
            if dup_count:
                summary.warnings.append(
                    f"{path} (frame {dup_first[0]}): {dup_count} duplicate frame(s) skipped "
                    "(the same packet captured twice, e.g. on two interfaces)"
                )
            secrets.extend(info.secrets)
            summary.t0_ns = t0[0] if t0 else 0
    finally:
        cap.close()


FOLD_KEEP = 20  # flood-like connections per (server, outcome) reported one by one
FOLD_GROUPS = 1_000  # beyond this many servers, new ones share one group per outcome
FOLD_CLIENTS = 10_000  # distinct client addresses counted exactly, per group


class _Fold:
    """Connections folded into one row: what they have in common and how many."""

    __slots__ = ("sample", "count", "syns", "first_ts", "last_ts", "first_frame", "last_frame",
                 "clients", "packets")  # fmt: skip

    def __init__(self, conn: Connection) -> None:
        self.sample = conn
        self.count = self.syns = self.packets = 0
        self.first_ts, self.last_ts = conn.start_ts, conn.end_ts
        self.first_frame, self.last_frame = conn.first_frame, conn.last_frame
        self.clients: set[str] = set()

    def add(self, conn: Connection) -> None:
        self.count += 1
        self.syns += len(conn.syn_ts)
        self.packets += conn.c.packets + conn.s.packets
        self.first_ts = min(self.first_ts, conn.start_ts)
        self.last_ts = max(self.last_ts, conn.end_ts)
        self.first_frame = min(self.first_frame, conn.first_frame)
        self.last_frame = max(self.last_frame, conn.last_frame)
        if len(self.clients) < FOLD_CLIENTS:
            self.clients.add(conn.c_addr)


class Folds:
    """Floods and scans: beyond ``FOLD_KEEP`` unanswered (or refused) SYN-only connections
    to one server, the rest become one row that says how many, from how many clients, and
    when. That keeps memory and reports flat under a million SYNs; every connection is
    still counted (``ConnectionRecord.count``)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], int] = {}
        self.groups: dict[tuple[str, str], _Fold] = {}

    def take(self, conn: Connection) -> bool:
        outcome = conn.machine.outcome
        if (
            outcome not in ("syn_timeout", "refused")
            or conn.orientation != "syn"
            or conn.synack_ts is not None
            or conn.c.bytes
            or conn.s.bytes
        ):
            return False
        key = (conn.s_addr, outcome)
        if key not in self.seen and len(self.seen) >= FOLD_GROUPS:
            key = ("*", outcome)
        n = self.seen[key] = self.seen.get(key, 0) + 1
        if n <= FOLD_KEEP:
            return False
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Fold(conn)
        group.add(conn)
        return True

    def records(self, path: str, t0: int) -> list[ConnectionRecord]:
        out = []
        for (server, _), g in self.groups.items():
            rec = explain(g.sample, path, t0)
            rec.count = g.count
            rec.start_ns, rec.end_ns = g.first_ts, g.last_ts
            rec.first_frame, rec.last_frame = g.first_frame, g.last_frame
            rec.syn_count = g.syns
            clients = f"{len(g.clients):,}{'+' if len(g.clients) >= FOLD_CLIENTS else ''}"
            where = "many servers" if server == "*" else f"server {g.sample.s_addr}"
            rec.evidence = (
                f"{g.count:,} more connections like the first {FOLD_KEEP} to {where} "
                f"({rec.outcome}), folded into this row: {g.syns:,} SYNs from {clients} client "
                f"addresses, frames {g.first_frame}–{g.last_frame}, over "
                f"{(g.last_ts - g.first_ts) / NS:.1f} s — a SYN flood or scan pattern. "
                f"Like them: {rec.evidence}"
            )
            out.append(rec)
        return out


@dataclass(slots=True)
class _TlsSeen:
    """A TLS connection of the keyless pass that decryption could improve."""

    ckey: tuple  # the tracker's client-side 4-tuple key
    first_frame: int
    last_frame: int
    client_random: bytes


def _decrypt_file(
    path: str,
    idx: int,
    summary: CaptureSummary,
    mine: list[ConnectionRecord],
    tls_seen: list[_TlsSeen],
    secrets: list[tuple[int, bytes]],
    keys: KeyLog | None,
    timeout_s: float,
) -> None:
    """Replace the keyless records of the TLS connections we hold secrets for with
    records made from their plaintext. Any failure leaves the keyless records and adds a
    warning: decryption can only add to an analysis, never lose it."""
    known = KeyLog()
    if keys is not None:
        known.update(keys)
    known.add_dsb(secrets, path)
    targets = [t for t in tls_seen if t.client_random in known]
    if not targets:
        return
    why = tshark_available()
    if why is not None:
        summary.warnings.append(
            f"{path}: {why}; {len(targets)} TLS connection(s) keep their keyless verdict"
        )
        return
    try:
        new = _replay_decrypted(path, idx, summary.t0_ns, targets, known, timeout_s)
    except (DecryptError, CaptureError) as exc:
        summary.warnings.append(f"{path}: {exc}")
        return
    # A connection tshark could not decrypt (secrets that do not fit) keeps its keyless
    # record: the replay without plaintext knows less than the turns of the first pass.
    by_first = {r.first_frame: r for r in new if r.decrypted}
    for i, rec in enumerate(mine):
        repl = by_first.get(rec.first_frame)
        if repl is not None:
            repl.id = rec.id
            mine[i] = repl
    summary.decrypted = len(by_first)
    if len(by_first) < len(targets):
        summary.warnings.append(
            f"{path}: {len(targets) - len(by_first)} TLS connection(s) with secrets in the key "
            "log could not be decrypted by tshark; their keyless verdicts stay"
        )


def _selected(path: str, lookup: dict[tuple, list[tuple[int, int, int, bool]]]) -> Iterable:
    """The target connections' packets, batch by batch: (batch, tcp, rows, tags)."""
    codes = np.array(sorted({(k[2] << 16) | k[5] for k in lookup}), dtype=np.uint32)
    cap = reader.open_capture(path)
    try:
        for batch in cap.batches():
            pk = decode.decode_batch(batch).tcp
            if not len(pk):
                continue
            code = (pk.sport.astype(np.uint32) << 16) | pk.dport.astype(np.uint32)
            cand = np.nonzero(np.isin(code, codes))[0]
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
    finally:
        cap.close()


def _replay_decrypted(
    path: str, idx: int, t0: int, targets: list[_TlsSeen], keys: KeyLog, timeout_s: float
) -> list[ConnectionRecord]:
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
            for batch, pk, rows, tags in _selected(path, lookup):
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
        tracker.capture = idx
        with tshark_session(fpath, frame_map, timeout_s) as feed:
            tracker.plain = feed
            tracker.plain_targets = {(t.ckey, t.first_frame): i for i, t in enumerate(targets)}
            for _batch, pk, rows, _tags in _selected(path, lookup):
                tracker.feed(decode.take(pk, rows), [])
            tracker.close()
    return out


def _fill_summary(
    summary: CaptureSummary,
    info: reader.CaptureInfo,
    unknown: Counter[int],
    malformed_total: int,
    malformed_first: tuple[int, str] | None,
) -> None:
    summary.format = info.format + (" (gzip)" if info.compressed else "")
    summary.packets = info.packets
    summary.link_types = {
        LINKTYPE_NAMES.get(k, f"LINKTYPE_{k}"): v for k, v in info.link_types.items()
    }
    summary.first_ns, summary.last_ns = info.first_ts_ns, info.last_ts_ns
    summary.warnings = [str(w) for w in info.warnings]
    for lt, n in sorted(unknown.items()):
        summary.warnings.append(f"{summary.path}: {n} frames of unsupported link type {lt} skipped")
    if malformed_total and malformed_first is not None:
        frame, what = malformed_first
        summary.warnings.append(
            f"{summary.path} (frame {frame}): {malformed_total} malformed packet(s) skipped, first: {what}"
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
