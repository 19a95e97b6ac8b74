"""Machine-readable output: the JSON contract and CSV (one row per connection)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import starmap
from json.encoder import encode_basestring
from typing import IO, Any

from pcapdiag._store import JSON_SEP, ROW, Records, Row, row_of
from pcapdiag.analysis import Analysis
from pcapdiag.connections import NS, _gc_paused

CSV_COLUMNS = (
    "id", "capture", "client", "server", "start", "end", "duration_s", "outcome", "closed_by",
    "close_time", "close_frame", "client_packets", "server_packets", "client_bytes",
    "server_bytes", "requests", "responses", "handshake", "zeek_conn_state", "zeek_history",
    "first_frame", "last_frame", "keepalive_race", "idle_before_close_s", "tls_version",
    "tls_sni", "icmp", "stdlib_error", "requests_error", "aiohttp_error", "httpx_error",
    "errno", "evidence",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# the CSV columns that may hold text (the others are numbers, booleans or empty)
_TEXT = tuple(i for i, c in enumerate(CSV_COLUMNS) if c not in (
    "id", "close_frame", "client_packets", "server_packets", "client_bytes", "server_bytes",
    "requests", "responses", "first_frame", "last_frame", "keepalive_race", "errno",
))  # fmt: skip


def write_json(analysis: Analysis, out: IO[str], jobs: int = 1) -> None:
    """The JSON contract, streamed: one connection per line, written by blocks of lines.

    Each line is ``json.dumps(record.to_json(), ensure_ascii=False)``, byte for byte, but
    made by ``_line`` from the record's row: building the dict and running the C encoder
    over its 45 keys costs ~3x more than one template, and a compressed store hands out
    rows without decoding the records' events (``Records.rows``). Only one block of
    lines is in memory.

    ``jobs`` (0: one per core): with more than one, and many connections, forked
    processes render the later parts of the list into temporary files while this one
    writes the head and the first part, then copies theirs after it as they are written
    (``_Rendered``)."""
    with _gc_paused():  # lines and rows hold no cycles: 0.08 s of scans of the records
        _write_json(analysis, out, jobs)


def _write_json(analysis: Analysis, out: IO[str], jobs: int) -> None:
    recs = analysis.records
    n = len(recs)
    parts = _parts(n, jobs) if _FAST and isinstance(recs, Records) else [(0, n)]
    with contextlib.ExitStack() as stack:
        # the later parts' processes start first: the head is made meanwhile
        later = [stack.enter_context(_Rendered(recs, lo, hi)) for lo, hi in parts[1:]]
        doc = analysis.to_json(connections=False)
        head = _utf8(json.dumps(doc, indent=1, ensure_ascii=False))
        out.write(head[: head.rindex("}")].rstrip() + ',\n "connections": [')
        # the fast lane's lines come as UTF-8: into a UTF-8 file's bytes as they are
        raw = getattr(out, "buffer", None)
        if raw is not None and str(getattr(out, "encoding", "")).lower().replace("-", "") != "utf8":
            raw = None
        if raw is not None:
            out.flush()
        _write_lines(_lines(recs, *parts[0]), out, raw, "\n  ")
        for r in later:
            r.copy_to(out, raw)
    if raw is not None:
        raw.flush()
    out.write("\n ]\n}\n")


PARALLEL_MIN = 20_000  # connections below which one process renders them all
# The share of lines this process renders, against a forked one's: it also writes the
# head, and copies the others' lines while they render (``copy_to``). With 2 processes,
# the whole command, JSON to a new file, six runs alternating (four of the 4x capture):
# 0.885, 0.862, 0.893 s with 0.5, 0.75, 1; 2.99, 2.93, 2.97 s on the 4x capture.
_OWN_SHARE = 0.75


def _parts(n: int, jobs: int) -> list[tuple[int, int]]:
    """Id ranges for the processes rendering the lines: one unless ``jobs`` asks for
    more, there are many lines, and processes can be forked safely (no other thread).
    The first is this process's (``_OWN_SHARE`` of another's)."""
    workers = min((os.cpu_count() or 1) if jobs == 0 else jobs, n)  # none of them empty
    if workers <= 1 or n < PARALLEL_MIN or not _forkable():
        return [(0, n)]
    total = _OWN_SHARE + workers - 1
    cuts = [0] + [round(n * (_OWN_SHARE + k) / total) for k in range(workers - 1)] + [n]
    for k in range(1, workers):  # none of them empty
        cuts[k] = min(max(cuts[k], cuts[k - 1] + 1), n - (workers - k))
    return list(zip(cuts, cuts[1:], strict=False))


def _forkable() -> bool:
    """A forked child could inherit a lock another thread holds (Jupyter, decryption):
    fork only a process with no other thread."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _lines(recs: Any, lo: int, hi: int) -> Iterable[str | bytes | memoryview]:
    if not _FAST:  # pragma: no cover
        return (json.dumps(r.to_json(), ensure_ascii=False) for r in recs)
    if isinstance(recs, Records):
        return recs.json_lines(_line, lo, hi)
    return starmap(_line, ((r.id, row_of(r)) for r in recs))


_BLOCK_BYTES = 1 << 18  # lines gathered into one write at most (about)


def _blocks(lines: Iterable[str | bytes | memoryview]) -> Iterator[list[str | bytes | memoryview]]:
    """``lines`` gathered into lists of up to 512 items or ``_BLOCK_BYTES`` (an item may
    be 2,000 lines of the fast lane already: 512 of those held at once were 15 MB of a
    4x capture's peak memory)."""
    it = iter(lines)
    while True:
        block: list[str | bytes | memoryview] = []
        size = 0
        for item in it:
            block.append(item)
            size += len(item)
            if size >= _BLOCK_BYTES or len(block) >= 512:
                break
        if not block:
            return
        yield block


def _write_lines(
    lines: Iterable[str | bytes | memoryview], out: IO[str], raw: Any, sep: str
) -> None:
    """``lines`` each after ``sep`` (then ``JSON_SEP``), to ``raw`` (bytes) if not None,
    else to ``out``, a block (``_blocks``) a write."""
    bsep = JSON_SEP.encode()
    for block in _blocks(lines):
        if raw is not None:
            raw.write(sep.encode())
            raw.write(
                bsep.join([b.encode("utf-8", _ESCAPE) if type(b) is str else b for b in block])
            )
        else:
            out.write(
                sep
                + JSON_SEP.join([_utf8(b) if type(b) is str else str(b, "utf-8") for b in block])
            )
        sep = JSON_SEP


# A lone surrogate (an undecodable byte of a file name, as Python reads it) has no UTF-8:
# it is written as its JSON escape (``\udcff``), which reads back as the same string
_ESCAPE = "backslashreplace"


def _utf8(text: str) -> str:
    """``text`` (JSON) with any lone surrogate written as its escape."""
    if text.isascii():
        return text
    return text.encode("utf-8", _ESCAPE).decode("utf-8")


class _Rendered:
    """The lines of ids ``lo``..``hi``, rendered by a forked process into a temporary
    file (UTF-8, each line after ``JSON_SEP``) while the parent goes on. If the child
    cannot be started or fails, the parent renders them itself when it comes to them:
    the output is the same."""

    def __init__(self, recs: Records, lo: int, hi: int) -> None:
        self.recs, self.lo, self.hi = recs, lo, hi
        self.pid = 0
        self.file: IO[bytes] | None = None
        try:
            self.file = tempfile.TemporaryFile(prefix="pcapdiag-json-")  # noqa: SIM115 - closed by __exit__
            # (no buffer needs flushing first: the child leaves by os._exit, flushing none)
            self.pid = os.fork()
        except OSError:  # no room for the file, or no process to spare
            return
        if self.pid == 0:  # the child: render, and leave without running any cleanup
            code = 1
            try:
                w = io.BufferedWriter(io.FileIO(self.file.fileno(), "w", closefd=False))
                _write_lines(_lines(recs, lo, hi), None, w, JSON_SEP)  # type: ignore[arg-type]
                w.flush()
                code = 0
            finally:
                os._exit(code)

    def __enter__(self) -> _Rendered:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.pid:  # the parent failed before it came to this part: stop its child
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self.file is not None:
            self.file.close()

    def copy_to(self, out: IO[str], raw: Any) -> None:
        status, done = 1, 0
        f = self.file
        if self.pid and raw is not None and f is not None:
            status, done = self._follow(f, raw)
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
        if status != 0 or f is None:  # the rest of the lines, the copied bytes left out
            _write_lines(_lines(self.recs, self.lo, self.hi), out, _Skip(raw, done) if done else raw, JSON_SEP)  # fmt: skip
            return
        if done:
            return
        f.seek(0)
        if raw is not None:
            if not _sent(f, raw):
                shutil.copyfileobj(f, raw, 1 << 20)
            return
        reader = io.TextIOWrapper(f, encoding="utf-8", newline="")
        shutil.copyfileobj(reader, out, 1 << 20)
        reader.detach()

    def _follow(self, f: IO[bytes], raw: Any) -> tuple[int, int]:
        """Copy the child's lines to ``raw`` in the kernel as it writes them, until it
        ends: (its exit status, bytes copied). Copied after the child ended, its lines of
        four times the benchmark capture took 0.2 s of their own (into a file); copied
        as they come, 0.03 s are left after it ends. Copies nothing, and leaves the child
        running, where ``raw`` takes no ``sendfile`` (returns a status of 0)."""
        src = f.fileno()
        try:
            raw.flush()
            fd = raw.fileno()
        except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
            return 0, 0
        done, idle = 0, 0.0005
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            size = os.fstat(src).st_size  # (after the exit: all of it)
            if size > done:
                if not done:  # the first bytes: does the output take sendfile at all?
                    try:
                        done = os.sendfile(fd, src, 0, size)
                    except OSError:
                        done = 0
                    if not done:  # no: copied the usual way, at the end
                        return 0, 0
                done = _send(fd, src, done, size)  # a failure now is the output's to report
                idle = 0.0005
            elif not pid:
                time.sleep(idle)  # (a short wait for more: the child writes 256 KB at once)
                idle = min(idle * 2, 0.002)
            if pid:
                self.pid = 0
                return status, done


class _Skip:
    """A writer that leaves out the first ``skip`` bytes written to it."""

    def __init__(self, raw: Any, skip: int) -> None:
        self.raw, self.skip = raw, skip

    def write(self, b: bytes) -> int:
        cut = min(self.skip, len(b))
        self.skip -= cut
        if cut < len(b):
            self.raw.write(b[cut:])
        return len(b)


def _sent(f: IO[bytes], raw: Any) -> bool:
    """Copy the file ``f`` to ``raw`` in the kernel (``sendfile``: a file or a pipe
    behind it), not through this process's buffers: a tenth of a second of a 4x
    capture's output. False, having copied nothing, where that cannot be done."""
    try:
        fd = raw.fileno()
        raw.flush()
        size = os.fstat(f.fileno()).st_size
        done = os.sendfile(fd, f.fileno(), 0, size) if size else 0
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return False
    _send(fd, f.fileno(), done, size)  # a failure now is the output's to report
    return True


def _send(fd: int, src: int, done: int, size: int) -> int:
    """Bytes ``done``..``size`` of the file ``src`` to ``fd`` by ``sendfile`` (a pipe
    takes them in parts); returns ``size``, or raises the output's failure."""
    while done < size:
        n = os.sendfile(fd, src, done, size - done)
        if n == 0:
            raise OSError(f"the output took {done} of {size} bytes")
        done += n
    return done


_dumps = json.JSONEncoder(ensure_ascii=False).encode  # what json.dumps(v, ensure_ascii=False) does
_es = encode_basestring  # a str as JSON (ensure_ascii=False): quoted, escaped
_ERRORS: dict[tuple[Any, ...], str] = {}  # client_errors as JSON, by its items and their types
_FIELDS = (
    "id", "capture", "ip_version", "client_ip", "client_port", "server_ip", "server_port",
    "start_ns", "end_ns", "outcome", "closed_by", "close_ns", "close_frame", "evidence",
    "client_packets", "server_packets", "client_bytes", "server_bytes", "requests", "responses",
    "handshake", "first_frame", "last_frame", "zeek_conn_state", "zeek_history",
    "client_errors", "tls", "icmp", "cause", "fix", "syn_count", "rtt_ms",
    "idle_before_close_s", "keepalive_race", "retry_of", "reused_after_idle_s",
    "last_request", "orientation", "count", "decrypted", "stale", "server_ttl", "client_ttl",
    "reset_ttl", "h2", "proxy", "anomalies", "zeek_rows",
)  # fmt: skip
_FAST = ROW == _FIELDS  # else a field was added: _line needs it (json.dumps meanwhile)


def _errors(errs: dict[str, Any]) -> str:
    """``client_errors`` as JSON: a few distinct dicts (most records have all None), so
    their text is cached, by items and types (1 == True, but JSON tells them apart)."""
    try:
        key = (*errs.items(), *map(type, errs.values()))
        text = _ERRORS.get(key)
    except TypeError:  # an unhashable value
        return _dumps(errs)
    if text is None:
        if len(_ERRORS) >= 4096:
            _ERRORS.clear()
        text = _ERRORS[key] = _dumps(errs)
    return text


def _float(v: float) -> str:
    """A number as json.dumps writes it: repr, but NaN and Infinity."""
    return repr(v) if v - v == 0 else _dumps(v)


def _zeek(rows: list[tuple[int, str, str]]) -> str:
    return "[" + ", ".join([
        f'{{"ts": {ts / NS!r}, "conn_state": {_es(st)}, "history": {_es(h)}}}'
        for ts, st, h in rows
    ]) + "]"  # fmt: skip


def _line(rid: int, row: Row) -> str:
    """``json.dumps(record.to_json(), ensure_ascii=False)`` from ``rid`` and the record's
    row (``_store.ROW``): keep in step with ``ConnectionRecord.to_json`` (tests compare
    the two on every sample). Times are ``ns / NS`` as there (``float.__repr__``, never
    NaN); other numbers and values that may be anything JSON allows go through
    ``_float``/``_dumps``; bools are written by identity (``1`` stays ``1``)."""
    (_, capture, ipver, cip, cport, sip, sport, start, end, outcome, closed_by, close,
     close_frame, evidence, c_pk, s_pk, c_by, s_by, requests, responses, handshake, first,
     last, z_state, z_history, errors, tls, icmp, cause, fix, syn_count, rtt, idle, race,
     retry_of, reused, last_request, _, count, decrypted, stale, _, _, _, h2, proxy,
     anomalies, zeek_rows) = row  # fmt: skip
    client = f"[{cip}]:{cport}" if ipver == 6 else f"{cip}:{cport}"
    server = f"[{sip}]:{sport}" if ipver == 6 else f"{sip}:{sport}"
    if len(zeek_rows) == 1:  # the usual: one Zeek row
        ((ts, st, h),) = zeek_rows
        zeek = f'[{{"ts": {ts / NS!r}, "conn_state": {_es(st)}, "history": {_es(h)}}}]'
    else:
        zeek = _zeek(zeek_rows)
    return (
        f'{{"id": {rid}, "capture": {_es(capture)}, "client": {_es(client)}, '
        f'"server": {_es(server)}, "start": {start / NS!r}, "end": {end / NS!r}, '
        f'"duration_s": {(end - start) / NS!r}, "outcome": {_es(outcome)}, '
        f'"closed_by": {_es(closed_by)}, '
        f'"close_time": {"null" if close is None else repr(close / NS)}, '
        f'"close_frame": {"null" if close_frame is None else close_frame}, '
        f'"evidence": {_es(evidence)}, "client_packets": {c_pk}, "server_packets": {s_pk}, '
        f'"client_bytes": {c_by}, "server_bytes": {s_by}, "requests": {requests}, '
        f'"responses": {responses}, "handshake": {_es(handshake)}, '
        f'"tls": {"null" if tls is None else _dumps(tls)}, '
        f'"icmp": {"null" if icmp is None else _dumps(icmp)}, '
        f'"client_errors": {_errors(errors)}, "zeek_conn_state": {_es(z_state)}, '
        f'"zeek_history": {_es(z_history)}, "zeek_rows": {zeek}, '
        f'"frames": [{first}, {last}], "cause": {"null" if cause is None else _es(cause)}, '
        f'"fix": {"null" if fix is None else _es(fix)}, '
        f'"keepalive_race": {"true" if race is True else "false" if race is False else _dumps(race)}, '
        f'"retry_of": {"null" if retry_of is None else retry_of}, '
        f'"reused_after_idle_s": {"null" if reused is None else _float(reused)}, '
        f'"idle_before_close_s": {"null" if idle is None else _float(idle)}, '
        f'"syn_count": {syn_count}, "rtt_ms": {"null" if rtt is None else _float(rtt)}, '
        f'"last_request": {"null" if last_request is None else _es(last_request)}, '
        f'"count": {count}, '
        f'"decrypted": {"true" if decrypted is True else "false" if decrypted is False else _dumps(decrypted)}, '
        f'"stale": {"true" if stale is True else "false" if stale is False else _dumps(stale)}, '
        f'"h2": {"null" if h2 is None else _dumps(h2)}, '
        f'"proxy": {"null" if proxy is None else _dumps(proxy)}, '
        f'"anomalies": {"[]" if anomalies == [] else _dumps(anomalies)}}}'
    )


def write_csv(analysis: Analysis, out: IO[str]) -> None:
    """One row a connection, from each record's JSON (``to_json``). A store's records
    are not made for it: their JSON lines are (the fast lane's rendered by block,
    ``write_json``) and parsed back by block, 0.2 of the time of making each record."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    recs = analysis.records
    if isinstance(recs, Records):
        dicts: Iterable[dict[str, Any]] = _parsed(_lines(recs, 0, len(recs)))
    else:
        dicts = (r.to_json() for r in recs)
    with _gc_paused():  # parsed JSON cannot hold a cycle: nothing for the collector
        _write_csv_rows(w, dicts)


def _write_csv_rows(w: Any, dicts: Iterable[dict[str, Any]]) -> None:
    rows = []
    for j in dicts:
        errs, icmp, tls = j["client_errors"], j["icmp"], j["tls"] or {}
        row = [
            j["id"], j["capture"], j["client"], j["server"], f"{j['start']:.6f}", f"{j['end']:.6f}",
            f"{j['duration_s']:.6f}", j["outcome"], j["closed_by"],
            "" if j["close_time"] is None else f"{j['close_time']:.6f}",
            "" if j["close_frame"] is None else j["close_frame"],
            j["client_packets"], j["server_packets"], j["client_bytes"], j["server_bytes"],
            j["requests"], j["responses"], j["handshake"], j["zeek_conn_state"],
            j["zeek_history"], j["frames"][0], j["frames"][1], j["keepalive_race"],
            "" if j["idle_before_close_s"] is None else f"{j['idle_before_close_s']:.6f}",
            tls.get("version") or "", tls.get("sni") or "",
            "" if icmp is None else f"{icmp['name']} from {icmp['sender']}",
            errs.get("stdlib") or "", errs.get("requests") or "", errs.get("aiohttp") or "",
            errs.get("httpx") or "", "" if errs.get("errno") is None else errs["errno"],
            j["evidence"],
        ]  # fmt: skip
        # spreadsheet formulas in text neutralised (CSV injection), inline and only where
        # text can be: a function call per cell was a fifth of the time of a big CSV
        for i in _TEXT:
            v = row[i]
            if v.__class__ is str and v.startswith(_FORMULA_START):
                row[i] = "'" + v
        rows.append(row)
        if len(rows) >= 512:
            w.writerows(rows)
            rows = []
    w.writerows(rows)


def _parsed(lines: Iterable[str | bytes | memoryview]) -> Iterator[dict[str, Any]]:
    """The records' JSON (``to_json``) from their lines (``_lines``: a line, or the fast
    lane's lines joined by ``JSON_SEP`` as UTF-8), parsed as one array a block
    (``_blocks``)."""
    for block in _blocks(lines):
        text = JSON_SEP.join([b if type(b) is str else str(b, "utf-8") for b in block])
        yield from json.loads("[" + text + "]")
