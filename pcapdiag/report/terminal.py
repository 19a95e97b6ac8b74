"""The terminal view of ``pcapdiag analyze``: a summary, the problems explained, a table.

Rendered with rich: coloured and sized to the terminal, plain text when piped. Text taken
from a capture (request lines, SNI, addresses) passes through ``clean`` first, which strips
control characters and escape sequences, and is always added as ``Text`` (never markup), so
a hostile capture cannot drive the user's terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import IO

import numpy as np
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from pcapdiag._store import Records
from pcapdiag.analysis import Analysis
from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.connections import _gc_paused
from pcapdiag.explain import ConnectionRecord

_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
_COLOURS = {o: ("red" if o in PROBLEMS else "green") for o in OUTCOMES}
_COLOURS.update({"client_timeout": "yellow", "client_reset": "yellow", "open": "cyan"})
MAX_EXAMPLES = 3  # explained connections per problem outcome
MAX_ROWS = 200  # rows in the table (the rest are counted)


def clean(text: object) -> str:
    """Capture-derived text made safe for a terminal."""
    return _CONTROL.sub("", str(text)).replace("\n", " ")


def render(analysis: Analysis, out: IO[str] | None = None, *, width: int | None = None) -> None:
    # the records it reads are made at once, with no cycles for the collector to find (a
    # fifth of the time of a 124,000-connection report); what rich leaves is found later
    with _gc_paused():
        _render(analysis, out, width)


def _render(analysis: Analysis, out: IO[str] | None, width: int | None) -> None:
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    if not console.is_terminal and width is None:
        # piped: plain text, lines as long as they need to be (no wrapping mid-evidence)
        console = Console(file=out, width=10_000, highlight=False, no_color=True, soft_wrap=True)
    _summary(console, analysis)
    _problems(console, analysis)
    _h2_errors(console, analysis)
    _table(console, analysis)
    for cap in analysis.captures:
        for w in cap.warnings[:10]:
            console.print(Text("warning: " + clean(w), style="yellow"))


def _summary(console: Console, a: Analysis) -> None:
    n = a.summary["connections"]
    pk = sum(c.packets for c in a.captures)
    files = ", ".join(clean(c.path) for c in a.captures[:3]) + (" …" if len(a.captures) > 3 else "")
    console.print(
        Text(
            f"{files}: {pk} packets, {n} TCP connection{'' if n == 1 else 's'}, {sum(r.count for r in a.problems)} with problems",
            style="bold",
        )
    )
    stitched: dict[str, list[str]] = defaultdict(list)
    for c in a.captures:
        if c.stitched_to:
            stitched[c.stitched_to].append(c.path)
    for first, later in stitched.items():
        console.print(
            Text(
                f"  rotated files: {', '.join(clean(p) for p in later)} continue {clean(first)}; "
                "read as one capture, frames numbered across them (as mergecap -a numbers them)"
            )
        )
    decrypted = sum(c.decrypted for c in a.captures)
    if decrypted:
        console.print(
            Text(
                f"  TLS: {decrypted} connection{'' if decrypted == 1 else 's'} decrypted with tshark"
            )
        )
    line = Text("  ")
    for outcome, count in a.by_outcome.items():
        line.append(f"{outcome} ", style=_COLOURS[outcome])
        line.append(f"{count}   ")
    if a.by_outcome:
        console.print(line)
    for t in a.idle_timeouts[:3]:
        console.print(Text("  " + clean(t.sentence()), style="cyan"))


def _problems(console: Console, a: Analysis) -> None:
    groups: dict[str, list[ConnectionRecord]] = defaultdict(list)
    for r in a.problems:
        groups[r.outcome].append(r)
    for outcome in OUTCOMES:
        recs = groups.get(outcome)
        if not recs:
            continue
        console.print()
        head = Text(f"{outcome}", style=f"bold {_COLOURS[outcome]}")
        recs.sort(key=lambda r: r.count == 1)  # a folded flood first: it says how many
        total = sum(r.count for r in recs)
        frames = ", ".join(str(r.close_frame) for r in recs[:8] if r.close_frame is not None)
        head.append(f"  {total:,} connection{'s' if total != 1 else ''}")
        if frames:
            head.append(f" (closing frames {frames}{', …' if len(recs) > 8 else ''})")
        console.print(head)
        for r in recs[:MAX_EXAMPLES]:
            console.print(
                Text(f"  #{r.id} {clean(r.client)} → {clean(r.server)}: ", style="bold").append(
                    clean(r.evidence), style=""
                )
            )
        r0 = recs[0]
        errs = r0.client_errors
        for lib in ("stdlib", "requests", "aiohttp", "httpx"):
            if errs.get(lib):
                console.print(Text(f"    {lib:8} ", style="dim").append(clean(errs[lib])))
        if r0.cause:
            console.print(Text("    cause   ", style="dim").append(clean(r0.cause)))
        if r0.fix:
            console.print(Text("    fix     ", style="dim").append(clean(r0.fix), style="green"))


def _h2_errors(console: Console, a: Analysis) -> None:
    """HTTP/2 streams or connections the server ended with an error, on connections whose
    TCP close was otherwise fine (those already shown as problems are not repeated)."""
    records = a.records
    seen = records.not_fast() if isinstance(records, Records) else records
    recs = [r for r in seen if r.h2 and r.h2.get("httpx") and not r.is_problem]
    if not recs:
        return
    console.print()
    console.print(Text(f"HTTP/2 errors  {len(recs)} connection(s)", style="bold red"))
    for r in recs[:MAX_EXAMPLES]:
        console.print(
            Text(f"  #{r.id} {clean(r.client)} → {clean(r.server)}: ", style="bold").append(
                clean(r.h2["summary"] if r.h2 else "")
            )
        )
        console.print(
            Text("    httpx    ", style="dim").append(clean(r.h2["httpx"] if r.h2 else ""))
        )


def _table(console: Console, a: Analysis) -> None:
    if not a.records:
        return
    console.print()
    plain = console.no_color or not console.is_terminal
    t = Table(
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        box=None if plain else box.SIMPLE_HEAD,
    )
    for col, kw in (
        ("id", {"justify": "right"}),
        ("client", {}),
        ("server", {}),
        ("outcome", {}),
        ("closed by", {}),
        ("frame", {"justify": "right"}),
        ("duration", {"justify": "right"}),
        ("req/resp", {"justify": "right"}),
        ("zeek", {}),
    ):
        t.add_column(col, no_wrap=True, **kw)
    recs = _first_rows(a.records)
    for r in recs:
        t.add_row(
            str(r.id),
            Text(clean(r.client)),
            Text(clean(r.server)),
            Text(r.outcome, style=_COLOURS.get(r.outcome, "")),
            r.closed_by,
            "" if r.close_frame is None else str(r.close_frame),
            f"{(r.end_ns - r.start_ns) / 1e9:.3f} s",
            f"{r.requests}/{r.responses}",
            r.zeek_conn_state,
        )
    console.print(t)
    if len(a.records) > MAX_ROWS:
        console.print(
            Text(
                f"… {len(a.records) - MAX_ROWS} more connections (use --format csv or json for all)",
                style="dim",
            )
        )


def _first_rows(records: Sequence[ConnectionRecord]) -> list[ConnectionRecord]:
    """The table's rows: problems first, each part by start time, at most ``MAX_ROWS``;
    from a store's columns, so that only the rows shown are made (sorting every record
    of a big capture made them all: 14 s and 600 MB for 126,000)."""
    if not isinstance(records, Records):
        return sorted(records, key=lambda r: (not r.is_problem, r.start_ns))[:MAX_ROWS]
    ordinary = np.array([o not in PROBLEMS for o in records.column("outcome")], bool)
    start = np.array(records.column("start_ns"), np.int64)
    order = np.lexsort((start, ordinary))[:MAX_ROWS]  # stable: ties keep id order
    return [records[i] for i in order.tolist()]


class ReadProgress:
    """A progress bar on stderr while captures are read, for reads longer than ``delay``.

    Use as a context manager and pass the object as ``pcapdiag.analyze(..., progress=it)``
    (it is the ``callback(path, packets_read, file_size_bytes)``). Nothing is shown for a
    read that ends within ``delay`` seconds; the bar is transient (erased when reading
    ends), so only the results remain. The bar advances by file (bytes of the files done,
    of all files given); within a file it counts packets.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[str, int]] = (),
        *,
        console: Console | None = None,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.delay = delay
        self.clock = clock
        self.sizes = dict(sizes)
        self.done_bytes = 0
        self.current: str | None = None
        self.packets = 0
        self.files_done = 0
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._timer: threading.Timer | None = None
        self._started_at = clock()

    @classmethod
    def for_paths(cls, paths: Sequence[str], **kw: object) -> ReadProgress:
        """Sizes of the capture files ``paths`` stands for (directories expanded)."""
        sizes: list[tuple[str, int]] = []
        try:
            from pcapdiag.analysis import expand_paths

            for p in expand_paths(list(paths)):
                with contextlib.suppress(OSError):
                    sizes.append((p, os.path.getsize(p)))
        except Exception:  # the analysis reports bad input itself
            sizes = []
        return cls(sizes, **kw)  # type: ignore[arg-type]

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def __enter__(self) -> ReadProgress:
        self._started_at = self.clock()
        if self.delay <= 0:
            self._show()
        else:
            self._timer = threading.Timer(self.delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
            self._progress = None

    def _show(self) -> None:
        with self._lock:
            if self._progress is not None:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("reading [bold]{task.fields[name]}[/]"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task(
                "read", total=self._total(), name="", detail="", completed=self.done_bytes
            )
            self._update()
            self._progress.start()

    def _total(self) -> int | None:
        """Bytes of all files when there are several (the bar moves file by file); for one
        file None: the bar pulses, since the callback reports packets, not bytes."""
        return sum(self.sizes.values()) or None if len(self.sizes) > 1 else None

    def _update(self) -> None:
        if self._progress is None or self._task is None:
            return
        first = self.current or next(iter(self.sizes), None)
        name = clean(os.path.basename(first)) if first else "…"
        n_files = len(self.sizes)
        detail = f"{self.packets:,} packets"
        if n_files > 1:
            detail = f"file {min(self.files_done + 1, n_files)}/{n_files} · " + detail
        self._progress.update(self._task, completed=self.done_bytes, name=name, detail=detail)

    def __call__(self, path: str, packets_read: int, file_size: int) -> None:
        with self._lock:
            if path != self.current:
                if self.current is not None:
                    self.done_bytes += self.sizes.get(self.current, 0)
                    self.files_done += 1
                self.current = path
                if path not in self.sizes:
                    self.sizes[path] = file_size
                    if self._progress is not None and self._task is not None:
                        self._progress.update(self._task, total=self._total())
            self.packets = packets_read
            self._update()
