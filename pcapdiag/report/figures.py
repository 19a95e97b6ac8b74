"""Figures: a timeline of every connection, and a ladder (sequence) diagram of one.

``timeline(analysis)`` and ``ladder(record)`` return ``matplotlib.figure.Figure`` objects
built without pyplot: no global state, nothing is ever shown, any backend can draw them
(the Agg canvas is attached for PNG). ``save(fig, path)`` writes one by extension and
``svg_text(fig)`` returns SVG for inlining in the HTML report.

Text taken from a capture (request lines, SNI, addresses, file names) passes through
``label`` first: control, format and separator characters become visible ``\\xNN``
escapes (they would make the SVG invalid XML or reorder text), and every ``Text`` is
created with ``parse_math=False, usetex=False`` so a ``$`` is a dollar sign, never
mathtext or LaTeX. Matplotlib escapes ``& < >`` when it writes SVG.
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import textwrap
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.transforms import blended_transform_factory

from pcapdiag.classify import OUTCOMES, PROBLEMS

if TYPE_CHECKING:
    from pcapdiag.analysis import Analysis
    from pcapdiag.explain import ConnectionRecord

__all__ = [
    "KIND_MARKERS",
    "OUTCOME_COLOURS",
    "SIDE_COLOURS",
    "label",
    "ladder",
    "save",
    "svg_text",
    "timeline",
]

NS = 1_000_000_000
MAX_LANES = 300  # one lane per connection up to this many; beyond, an aggregate view
MAX_LADDER_EVENTS = 40  # rows in a ladder before the middle is elided

# rcParams in force while figures are built and saved, whatever the caller's settings.
RC: dict[str, Any] = {
    "text.usetex": False,
    "axes.formatter.use_mathtext": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Verdana", "Arial"],
    "font.monospace": ["DejaVu Sans Mono", "Menlo", "Consolas"],
    "svg.fonttype": "none",  # real <text>: small, selectable, searchable
    "svg.hashsalt": "pcapdiag",  # reproducible ids
    "figure.dpi": 100,
    "savefig.dpi": 110,
}
_SVG_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}

SIDE_COLOURS = {
    "client": "#1c63c7",
    "server": "#d9480f",
    "network": "#7b3fbf",
    "none": "#6c757d",
}
_PROBLEM, _CLIENT_SIDE, _FINE, _OPEN = "#c92a2a", "#d97706", "#2f9e44", "#1c7ed6"
OUTCOME_COLOURS: dict[str, str] = {o: (_PROBLEM if o in PROBLEMS else _FINE) for o in OUTCOMES}
OUTCOME_COLOURS.update({"client_timeout": _CLIENT_SIDE, "client_reset": _CLIENT_SIDE})
OUTCOME_COLOURS["open"] = _OPEN
# distinct colours per outcome for stacked (aggregate) charts: problems warm, the rest cool
_STACK_COLOURS = dict(
    zip(
        OUTCOMES,
        (
            "#7f0000", "#b30000", "#e34a33", "#c51b8a", "#f768a1", "#ae017e", "#d7301f",
            "#fc8d59", "#ef6548", "#8c2d04", "#fdbb84", "#fee08b", "#74c476", "#31a354",
            "#006d2c", "#6baed6",
        ),
        strict=True,
    )
)  # fmt: skip

# Timeline markers: shape by kind of event, colour by the side that sent it.
KIND_MARKERS: dict[str, tuple[str, str, float]] = {  # group -> (marker, legend text, size)
    "syn": (">", "SYN / SYN-ACK", 22),
    "data": ("o", "request / response", 12),
    "fin": ("s", "FIN", 22),
    "rst": ("X", "RST", 34),
    "icmp": ("^", "ICMP unreachable", 34),
    "alert": ("*", "TLS alert", 60),
}
_EVENT_GROUP = {
    "syn": "syn",
    "synack": "syn",
    "request": "data",
    "response": "data",
    "tls_hello": "data",
    "fin": "fin",
    "rst": "rst",
    "icmp": "icmp",
    "alert": "alert",
}

# -- text safety -----------------------------------------------------------------------------
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def label(text: object, limit: int | None = None) -> str:
    """Capture-derived text made safe to draw and to embed in SVG/HTML as text.

    Control, format (bidi overrides, zero-width), surrogate, private-use and line/paragraph
    separator characters become ``\\xNN`` / ``\\uNNNN`` escapes, so nothing is hidden and
    the XML stays valid. ``limit`` clips to that many characters (with an ellipsis).
    """
    s = str(text)
    if not s.isprintable():
        out = []
        for ch in s:
            if ch == " " or (ch.isprintable() and ch not in "\ufffe\uffff"):
                out.append(ch)
            elif unicodedata.category(ch) in _UNSAFE_CATEGORIES or ch in "\ufffe\uffff":
                code = ord(ch)
                out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
            else:
                out.append(ch)  # e.g. no-break space: printable enough
        s = "".join(out)
    if limit is not None and len(s) > limit:
        s = s[: max(1, limit - 1)] + "…"
    return s


def _text(ax_or_fig: Any, x: float, y: float, s: str, **kw: Any) -> Any:
    """``Text`` that is never mathtext nor LaTeX (capture text may contain ``$``)."""
    return ax_or_fig.text(x, y, s, parse_math=False, usetex=False, **kw)


# -- units -----------------------------------------------------------------------------------
def _dur(ns: float) -> str:
    s = ns / NS
    if abs(s) >= 10:
        return f"{s:.1f} s"
    if abs(s) >= 1:
        return f"{s:.2f} s"
    if abs(s) >= 0.001:
        return f"{s * 1000:.1f} ms"
    return f"{s * 1000:.3f} ms"


def _offset(ns: int) -> str:
    """A ladder's time column: milliseconds, seconds once they get long."""
    ms = ns / 1e6
    if ms >= 10_000:
        return f"+{ms / 1000:,.2f} s"
    if ms >= 100:
        return f"+{ms:,.1f} ms"
    return f"+{ms:.3f} ms"


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _time_unit(span_ns: float) -> tuple[float, str]:
    """(divisor, unit) for an axis spanning ``span_ns``."""
    if span_ns < 2 * NS:
        return 1e6, "ms"
    if span_ns < 3 * 3600 * NS:
        return NS, "s"
    return 3600 * NS, "h"


def _capture_start(analysis: Analysis) -> int | None:
    from pcapdiag._store import Records

    starts = [c.first_ns for c in analysis.captures if c.first_ns is not None]
    recs = analysis.records
    if recs:  # a store's column: making each of its records costs ~40 µs
        starts.append(
            min(recs.column("start_ns"))
            if isinstance(recs, Records)
            else min(r.start_ns for r in recs)
        )
    return min(starts) if starts else None


def _server_key(r: ConnectionRecord) -> tuple:
    try:
        ip: Any = ipaddress.ip_address(r.server_ip)
        return (r.ip_version, ip.packed, r.server_port)
    except ValueError:
        return (r.ip_version, r.server_ip.encode(), r.server_port)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout=None)
    FigureCanvasAgg(fig)
    return fig


# -- timeline --------------------------------------------------------------------------------
def timeline(
    analysis: Analysis,
    *,
    max_lanes: int = MAX_LANES,
    width: float = 11.0,
    title: str | None = None,
    records: Sequence[ConnectionRecord] | None = None,
) -> Figure:
    """Every connection on one time axis: one lane per connection, grouped by server.

    Lanes are sorted by server, then start; problem connections have a red label and a
    tinted lane. Markers show SYN, data, FIN, RST, ICMP and TLS alerts, coloured by the
    side that sent them. Beyond ``max_lanes`` connections the figure aggregates instead
    (connections per time bin by outcome, and problem closes per server) and says so.

    The figure carries ``fig.pcapdiag`` = {"mode": "lanes"|"aggregate", "lanes": [...]}:
    the record ids (lanes mode) or server names (aggregate mode) from top to bottom.

    ``records``: the analysis's records already at hand, as a list (the HTML report's).
    """
    with matplotlib.rc_context(RC):
        records = list(analysis.records if records is None else records)
        if not records:
            return _empty_timeline(width, title)
        if len(records) > max_lanes:
            return _aggregate_timeline(analysis, records, max_lanes, width, title)
        return _lane_timeline(analysis, records, width, title)


def _empty_timeline(width: float, title: str | None) -> Figure:
    fig = _new_figure(width, 1.2)
    _text(fig, 0.5, 0.5, title or "No TCP connections in the capture.", ha="center", va="center")
    fig.pcapdiag = {"mode": "lanes", "lanes": []}  # type: ignore[attr-defined]
    return fig


def _lane_timeline(
    analysis: Analysis, records: list[ConnectionRecord], width: float, title: str | None
) -> Figure:
    t0 = _capture_start(analysis) or 0
    groups: dict[str, list[ConnectionRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (_server_key(r), r.start_ns, r.id)):
        groups[r.server].append(r)
    rows: list[tuple[str, Any]] = []  # ("header", server) | ("lane", record)
    for server, recs in groups.items():
        rows.append(("header", server))
        rows.extend(("lane", r) for r in recs)

    lane_in = 0.19
    legend_in, axis_in = 0.62, 0.62
    height = len(rows) * lane_in + legend_in + axis_in + (0.3 if title else 0)
    fig = _new_figure(width, height)
    longest = max(len(f"#{r.id}  {label(r.client)}") for r in records)
    left, right = min(4.0, 0.3 + 0.056 * longest) / width, 1.0 - 1.75 / width
    bottom = axis_in / height
    top = 1.0 - (legend_in + (0.3 if title else 0)) / height
    ax = fig.add_axes((left, bottom, right - left, top - bottom))

    t_first = min(r.start_ns for r in records)
    t_last = max(max(r.end_ns, r.close_ns or 0) for r in records)
    span = max(t_last - t_first, 1)
    div, unit = _time_unit(max(t_last - t0, span))
    x0, x1 = (t_first - t0) / div, (t_last - t0) / div
    pad = (x1 - x0) * 0.02 or 1.0
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    min_w = (x1 - x0 + 2 * pad) * 0.003
    px = (x1 - x0 + 2 * pad) / 1500  # dedupe markers closer than ~a pixel

    ylab = blended_transform_factory(ax.transAxes, ax.transData)
    lane_ids: list[int] = []
    bar_y, bar_left, bar_w, bar_c, bar_ids = [], [], [], [], []
    problem_rows = []
    pts: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    close_x, close_y = [], []
    for y, (kind, item) in enumerate(rows):
        if kind == "header":
            recs = groups[item]
            nprob = sum(1 for r in recs if r.is_problem)
            head = f"server {label(item)} — {len(recs)} connection{'s' if len(recs) != 1 else ''}"
            if nprob:
                head += f", {nprob} with problems"
            _text(
                ax, 0.003, y, head, transform=ylab, fontsize=7.5, fontweight="bold",
                va="center", ha="left", color="#212529", clip_on=False, gid="server-header",
            )  # fmt: skip
            ax.axhline(y + 0.5, color="#ced4da", lw=0.6, zorder=0)
            continue
        r: ConnectionRecord = item
        lane_ids.append(r.id)
        colour = OUTCOME_COLOURS.get(r.outcome, _FINE)
        if r.is_problem:
            problem_rows.append(y)
        start, end = (r.start_ns - t0) / div, (r.end_ns - t0) / div
        bar_y.append(y)
        bar_left.append(start)
        bar_w.append(max(end - start, min_w))
        bar_c.append(colour)
        bar_ids.append(r.id)
        _text(
            ax, -0.008, y, f"#{r.id}  {label(r.client)}", transform=ylab, fontsize=6.5,
            ha="right", va="center", clip_on=False, gid=f"lane-label-{r.id}",
            color=_PROBLEM if r.is_problem else "#343a40",
            fontweight="bold" if r.is_problem else "normal",
        )  # fmt: skip
        _text(
            ax, 1.008, y, r.outcome, transform=ylab, fontsize=6.5, ha="left", va="center",
            clip_on=False, color=colour, fontweight="bold" if r.is_problem else "normal",
        )  # fmt: skip
        seen: set[tuple[str, str, int]] = set()
        for ts, frame, side, ekind, _detail in r.events:
            group = _EVENT_GROUP.get(ekind)
            if group is None:
                continue
            x = (ts - t0) / div
            key = (group, side, int(x / px))
            if key in seen:
                continue
            seen.add(key)
            xs, ys = pts[(group, side)]
            xs.append(x)
            ys.append(y)
            if (
                frame is not None
                and frame == r.close_frame
                and ekind in ("fin", "rst", "alert", "icmp")
            ):
                close_x.append(x)
                close_y.append(y)

    for y in problem_rows:
        ax.axhspan(y - 0.5, y + 0.5, color="#fff0f0", zorder=0, lw=0, gid="problem-lane")
    bars = ax.barh(
        bar_y, bar_w, left=bar_left, height=0.28, color=bar_c, alpha=0.45, lw=0, zorder=1
    )
    for patch, rid in zip(bars.patches, bar_ids, strict=True):
        patch.set_gid(f"lane-{rid}")
    if close_x:  # a ring around the packet that closed each connection
        ax.scatter(
            close_x, close_y, s=95, facecolors="none", edgecolors="#212529", linewidths=0.7,
            zorder=4, gid="marker-close",
        )  # fmt: skip
    for (group, side), (xs, ys) in sorted(pts.items()):
        marker, _, size = KIND_MARKERS[group]
        ax.scatter(
            xs, ys, marker=marker, s=size, color=SIDE_COLOURS.get(side, "#6c757d"), lw=0.3,
            edgecolors="white", zorder=3, gid=f"marker-{group}-{side}",
        )  # fmt: skip

    ax.set_yticks([])
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.6g}"))
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", color="#e9ecef", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"time since first packet ({unit}); first packet at {_utc(t0)}", fontsize=7.5)
    _legend(fig, ax, pts.keys(), close=bool(close_x), problems=bool(problem_rows))
    if title:
        _text(fig, 0.5, 1 - 0.12 / height, label(title), ha="center", va="top", fontsize=9)
    fig.pcapdiag = {"mode": "lanes", "lanes": lane_ids}  # type: ignore[attr-defined]
    return fig


def _legend(
    fig: Figure, ax: Any, present: Iterable[tuple[str, str]], *, close: bool, problems: bool
) -> None:
    present = list(present)
    groups = [g for g in KIND_MARKERS if any(p[0] == g for p in present)]
    sides = [s for s in SIDE_COLOURS if any(p[1] == s for p in present)]
    handles: list[Any] = []
    for g in groups:
        marker, text, _ = KIND_MARKERS[g]
        handles.append(
            Line2D([], [], ls="", marker=marker, color="#495057", markersize=6, label=text)
        )
    for s in sides:
        handles.append(Patch(color=SIDE_COLOURS[s], label=f"sent by {s}"))
    if close:
        handles.append(
            Line2D([], [], ls="", marker="o", markersize=9, markerfacecolor="none",
                   markeredgecolor="#212529", markeredgewidth=0.7, label="closing packet")
        )  # fmt: skip
    if problems:
        handles.append(Patch(color="#fff0f0", label="problem connection"))
    if handles:
        leg = ax.legend(
            handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=min(len(handles), 7),
            fontsize=7, frameon=False, borderaxespad=0.3, handletextpad=0.4, columnspacing=1.2,
        )  # fmt: skip
        for t in leg.get_texts():
            t.set_parse_math(False)
            t.set_usetex(False)


def _aggregate_timeline(
    analysis: Analysis,
    records: list[ConnectionRecord],
    max_lanes: int,
    width: float,
    title: str | None,
) -> Figure:
    """Too many connections for a lane each: counts per time bin, problems per server."""
    t0 = _capture_start(analysis) or 0
    t_first = min(r.start_ns for r in records)
    t_last = max(max(r.end_ns, r.close_ns or 0) for r in records)
    div, unit = _time_unit(max(t_last - t0, 1))
    x0, x1 = (t_first - t0) / div, (t_last - t0) / div
    if x1 <= x0:
        x1 = x0 + 1e-3
    nbins = 60
    edges = [x0 + (x1 - x0) * i / nbins for i in range(nbins + 1)]
    width_bin = (x1 - x0) / nbins

    by_server: dict[str, list[ConnectionRecord]] = defaultdict(list)
    for r in records:
        by_server[r.server].append(r)
    servers = sorted(by_server, key=lambda s: (-sum(r.is_problem for r in by_server[s]),
                                               -len(by_server[s]), s))  # fmt: skip
    max_servers = 25
    shown = servers[:max_servers]
    rest = servers[max_servers:]
    lanes = shown + (["other"] if rest else [])
    lane_in = 0.24
    top_in, hist_in, gap_in, axis_in = 0.75, 2.2, 0.55, 0.6
    height = top_in + hist_in + gap_in + len(lanes) * lane_in + axis_in
    fig = _new_figure(width, height)
    left, right = 2.6 / width, 1.0 - 0.3 / width
    h_bottom = 1 - (top_in + hist_in) / height
    ax_h = fig.add_axes((left, h_bottom, right - left, hist_in / height))
    l_h = len(lanes) * lane_in / height
    ax_l = fig.add_axes((left, axis_in / height, right - left, l_h), sharex=ax_h)

    # 1. stacked histogram of connection starts per bin, by outcome
    counts: dict[str, list[int]] = {o: [0] * nbins for o in OUTCOMES}
    for r in records:
        i = min(int(((r.start_ns - t0) / div - x0) / width_bin), nbins - 1)
        counts[r.outcome][max(i, 0)] += 1
    base = [0] * nbins
    by_outcome = Counter(r.outcome for r in records)
    for o in OUTCOMES:
        if not by_outcome[o]:
            continue
        top = [b + c for b, c in zip(base, counts[o], strict=True)]
        ax_h.stairs(
            top, edges, baseline=base, fill=True, color=_STACK_COLOURS[o], lw=0,
            label=f"{o} ({by_outcome[o]:,})", gid=f"hist-{o}",
        )  # fmt: skip
        base = top
    ax_h.set_ylim(0, max(base) * 1.08 if max(base) else 1)
    _text(
        ax_h, 0.0, 1.02, f"connections started per {_dur(width_bin * div)}, by outcome",
        transform=ax_h.transAxes, fontsize=7, va="bottom", ha="left", color="#495057",
    )  # fmt: skip
    ax_h.tick_params(labelsize=7, labelbottom=False)
    ax_h.grid(axis="y", color="#e9ecef", lw=0.6)
    ax_h.set_axisbelow(True)
    for spine in ("right", "top"):
        ax_h.spines[spine].set_visible(False)
    leg = ax_h.legend(
        loc="upper right", bbox_to_anchor=(-0.045, 1.04), fontsize=6.5, frameon=False,
        borderaxespad=0.0, handlelength=1.0, labelspacing=0.25,
    )  # fmt: skip
    for t in leg.get_texts():
        t.set_parse_math(False)
        t.set_usetex(False)

    # 2. one lane per server: activity extent, and a marker per problem close
    ylab = blended_transform_factory(ax_l.transAxes, ax_l.transData)
    px = (x1 - x0) / 1200
    marks: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for y, server in enumerate(lanes):
        recs = by_server[server] if server != "other" else [r for s in rest for r in by_server[s]]
        nprob = sum(r.is_problem for r in recs)
        name = label(server) if server != "other" else f"{len(rest):,} other servers"
        _text(
            ax_l, -0.008, y, f"{name}  ({len(recs):,} conns, {nprob:,} problems)", transform=ylab,
            fontsize=6.5, ha="right", va="center", clip_on=False, gid="server-lane-label",
            color=_PROBLEM if nprob else "#343a40", fontweight="bold" if nprob else "normal",
        )  # fmt: skip
        lo = (min(r.start_ns for r in recs) - t0) / div
        hi = (max(r.end_ns for r in recs) - t0) / div
        ax_l.barh(y, max(hi - lo, px), left=lo, height=0.3, color="#adb5bd", lw=0, gid=f"lane-server-{y}")  # fmt: skip
        seen: set[tuple[str, int]] = set()
        for r in recs:
            if not r.is_problem:
                continue
            x = ((r.close_ns if r.close_ns is not None else r.end_ns) - t0) / div
            key = (r.outcome, int(x / px))
            if key in seen:
                continue
            seen.add(key)
            marks[r.outcome][0].append(x)
            marks[r.outcome][1].append(y)
    for o, (xs, ys) in marks.items():
        ax_l.scatter(xs, ys, marker="|", s=60, lw=1.2, color=_STACK_COLOURS[o], zorder=3, gid=f"marker-{o}")  # fmt: skip
    ax_l.set_ylim(len(lanes) - 0.5, -0.5)
    ax_l.set_yticks([])
    for spine in ("left", "right", "top"):
        ax_l.spines[spine].set_visible(False)
    ax_l.set_xlim(x0 - width_bin, x1 + width_bin)
    ax_l.xaxis.set_major_locator(MaxNLocator(nbins=10))
    ax_l.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.6g}"))
    ax_l.tick_params(axis="x", labelsize=7)
    ax_l.grid(axis="x", color="#e9ecef", lw=0.6)
    ax_l.set_axisbelow(True)
    ax_l.set_xlabel(f"time since first packet ({unit}); first packet at {_utc(t0)}", fontsize=7.5)
    _text(
        ax_l, 0.0, 1.0 + 0.1 / (len(lanes) * lane_in), "problem connections per server (a tick per close)",
        transform=ax_l.transAxes, fontsize=7, va="bottom", ha="left", color="#495057",
    )  # fmt: skip
    note = (
        f"{len(records):,} connections: more than {max_lanes:,}, so they are counted rather than "
        f"drawn one lane each" + (f" (busiest {max_servers} servers shown)" if rest else "")
    )
    _text(
        fig, 0.5, 1 - 0.1 / height, label(title) + "\n" + note if title else note,
        ha="center", va="top", fontsize=8.5, gid="aggregate-note",
    )  # fmt: skip
    fig.pcapdiag = {"mode": "aggregate", "lanes": lanes}  # type: ignore[attr-defined]
    return fig


# -- ladder ----------------------------------------------------------------------------------
_ARROW_KINDS = (
    "syn", "synack", "request", "response", "tls_hello", "fin", "rst", "alert", "icmp",
    "goaway", "rst_stream",
)  # fmt: skip
_NOTE_KINDS = ("idle_gap", "tls_done", "response_end_close", "eoc")
_KIND_NAMES = {
    "syn": "SYN",
    "synack": "SYN-ACK",
    "fin": "FIN",
    "rst": "RST",
    "alert": "TLS alert",
    "icmp": "ICMP",
    "request": "request",
    "response": "response",
    "response_end": "end of the response",
    "response_end_close": "end of the response",
    "tls_hello": "ClientHello",
    "tls_done": "TLS handshake",
}


def ladder_events(record: ConnectionRecord) -> list[tuple[int, int | None, str, str, str]]:
    """The events a ladder draws (arrows and notes), in order."""
    return [e for e in record.events if e[3] in _ARROW_KINDS or e[3] in _NOTE_KINDS]


def closing_event(record: ConnectionRecord) -> tuple[int, int | None, str, str, str] | None:
    """The event that closed the connection (its frame is ``record.close_frame``)."""
    if record.close_frame is None:
        return None
    for e in record.events:
        if e[1] == record.close_frame and e[3] in ("fin", "rst", "alert", "icmp"):
            return e
    for e in record.events:
        if e[1] == record.close_frame and e[3] in _ARROW_KINDS:
            return e
    return None


def _event_text(e: tuple[int, int | None, str, str, str], record: ConnectionRecord) -> str:
    _ts, _frame, side, kind, detail = e
    if kind == "syn":
        return "SYN" + (f" (sent {record.syn_count}×)" if record.syn_count > 1 else "")
    if kind == "request":
        return label(detail, 64) if detail else "request data"
    if kind == "response":
        return f"response {label(detail, 48)}" if detail else "response data"
    if kind == "tls_hello":
        return f"ClientHello (SNI {label(detail, 48)})" if detail else "ClientHello"
    if kind == "alert":
        return f"TLS alert {label(detail, 40)}" if detail else "TLS alert"
    if kind == "goaway":
        return f"HTTP/2 GOAWAY {label(detail, 40)}"
    if kind == "rst_stream":
        return f"HTTP/2 RST_STREAM {label(detail, 40)}"
    if kind == "icmp":
        icmp = record.icmp or {}
        name = icmp.get("name") or label(detail, 40)
        return f"ICMP {name}"
    return _KIND_NAMES.get(kind, kind)


def close_label(record: ConnectionRecord) -> str | None:
    """'server FIN at frame 8, 303.2 ms after the end of the response at frame 6'."""
    dec = closing_event(record)
    if dec is None:
        return None
    ts, frame, side, kind, _ = dec
    prev = None
    for e in record.events:
        if e is dec or e[0] > ts:
            break
        if e[1] is not None and e[1] != frame and e[3] not in _NOTE_KINDS:
            prev = e
    who = side
    if side == "network":
        sender = (record.icmp or {}).get("sender")
        who = f"a router ({label(sender)})" if sender else "a router"
    what = _KIND_NAMES.get(kind, kind)
    if kind == "alert" and dec[4]:
        what = f"TLS alert {label(dec[4], 40)}"
    elif kind == "icmp":
        what = _event_text(dec, record)
    text = f"{who} sent {what} at frame {frame}"
    if prev is not None:
        pname = _KIND_NAMES.get(prev[3], prev[3])
        text += f", {_dur(ts - prev[0])} after the {pname} at frame {prev[1]}"
    later = [
        e for e in record.events if e[3] == "request" and e[0] >= ts and e[1] is not None
    ] if record.keepalive_race else []  # fmt: skip
    if later:
        text += (
            f"; the client's request at frame {later[0][1]} followed {_dur(later[0][0] - ts)} later"
        )
    return text


def ladder(
    record: ConnectionRecord,
    *,
    max_events: int = MAX_LADDER_EVENTS,
    width: float = 7.6,
) -> Figure:
    """A sequence diagram of one connection: client and server as vertical lines.

    One arrow per significant packet (SYN, SYN-ACK, requests, responses, ClientHello, FIN,
    RST, TLS alerts, ICMP) with its time offset from the first packet and its frame number;
    notes for idle gaps, the TLS handshake completing and the end of the capture. The
    closing packet is red and labelled. ICMP sent by a router comes from a third line,
    "network". Beyond ``max_events`` rows the middle is elided (the closing packet stays).

    ``fig.pcapdiag`` = {"arrows": n, "close_label": str|None, "rows": n}.
    """
    with matplotlib.rc_context(RC):
        return _ladder(record, max_events, width)


def _ladder(record: ConnectionRecord, max_events: int, width: float) -> Figure:
    events = ladder_events(record)
    dec = closing_event(record)
    elided = 0
    if len(events) > max_events:
        head_n = max_events // 3
        tail_n = max_events - head_n
        head, tail = events[:head_n], events[-tail_n:]
        if dec is not None and dec not in head and dec not in tail:
            tail = [dec, *tail[1:]] if dec[0] < tail[0][0] else tail
            tail = sorted(set(tail), key=events.index)
        elided = len(events) - len(head) - len(tail)
        events = [*head, None, *tail]  # type: ignore[list-item]
    network = any(e is not None and e[2] == "network" for e in events)
    cl = close_label(record)
    # keep "0.044 ms" on one line: wrap on the spaces between words, not inside a duration
    unbroken = re.sub(r"(\d) (ms|s|µs)\b", "\\1\u00a0\\2", cl) if cl else ""
    wrapped_close = textwrap.wrap(unbroken, 74) if cl else []

    row_h = 0.3
    heights = []
    for e in events:
        if e is None or e[3] in _NOTE_KINDS:
            heights.append(1.0)
        elif e is dec:
            heights.append(1.6 + 0.45 * len(wrapped_close))
        else:
            heights.append(1.0)
    header_rows = 3.6
    total_rows = header_rows + sum(heights) + 0.6
    height = total_rows * row_h
    fig = _new_figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, 100)
    ax.set_ylim(total_rows, 0)
    xc, xs, xn = 24.0, 76.0, 50.0
    pos = {"client": xc, "server": xs, "network": xn}

    colour = OUTCOME_COLOURS.get(record.outcome, _FINE)
    _text(
        ax, 1, 0.55, f"#{record.id}  {label(record.client)} → {label(record.server)}",
        fontsize=9.5, fontweight="bold", va="center", ha="left", gid="ladder-title",
    )  # fmt: skip
    closed = (
        f"  ·  closed by {record.closed_by}" if record.closed_by != "none" else "  ·  not closed"
    )
    if record.close_frame is not None:
        closed += f" at frame {record.close_frame}"
    _text(ax, 1, 1.35, record.outcome, fontsize=8.5, color=colour, fontweight="bold", va="center")
    _text(
        ax, 99, 1.35, label(os.path.basename(record.capture), 60) + closed, fontsize=7.5,
        color="#495057", va="center", ha="right",
    )  # fmt: skip
    y_head = 2.55
    for name, x, who in (
        ("client", xc, label(record.client)),
        ("server", xs, label(record.server)),
    ):
        _text(
            ax, x, y_head, f"{name}\n{who}", fontsize=7.5, ha="center", va="center",
            fontweight="bold", color=SIDE_COLOURS[name],
        )  # fmt: skip
    if network:
        sender = (record.icmp or {}).get("sender")
        who = f"network\n{label(sender)}" if sender else "network"
        _text(ax, xn, y_head, who, fontsize=7.5, ha="center", va="center", fontweight="bold", color=SIDE_COLOURS["network"])  # fmt: skip
    _text(ax, 1, y_head + 0.35, "time", fontsize=6.5, color="#868e96", va="center")
    _text(ax, 99, y_head + 0.35, "frame", fontsize=6.5, color="#868e96", va="center", ha="right")
    y_top, y_bottom = header_rows - 0.3, total_rows - 0.3
    for name, x in (("client", xc), ("server", xs)):
        ax.plot([x, x], [y_top, y_bottom], color=SIDE_COLOURS[name], lw=1.6, solid_capstyle="butt", gid=f"lifeline-{name}")  # fmt: skip
    if network:
        ax.plot([xn, xn], [y_top, y_bottom], color=SIDE_COLOURS["network"], lw=1.0, ls=(0, (3, 3)), gid="lifeline-network")  # fmt: skip

    t_first = record.start_ns
    arrows = 0
    y = header_rows
    for e, h in zip(events, heights, strict=True):
        yc = y + 0.45
        if e is None:
            _text(ax, 50, yc, f"⋯  {elided} more events not drawn  ⋯", fontsize=7, color="#868e96", ha="center", va="center", style="italic")  # fmt: skip
            y += h
            continue
        ts, frame, side, kind, detail = e
        if kind in _NOTE_KINDS:
            if kind == "idle_gap":
                note = f"⋯  {label(detail, 40) or 'idle'}  ⋯"
            elif kind == "tls_done":
                note = (
                    f"TLS handshake complete ({label(detail, 30)})"
                    if detail
                    else "TLS handshake complete"
                )
            elif kind == "response_end_close":
                note = "response complete, it announced Connection: close"
            else:
                note = "capture ends"
                if record.outcome == "syn_timeout":
                    note += " — the SYN was never answered"
                elif record.outcome == "open":
                    note += " — connection still open"
            _text(ax, 50, yc, note, fontsize=7, color="#868e96", ha="center", va="center", style="italic", gid=f"note-{kind}")  # fmt: skip
            if kind != "idle_gap":  # an idle gap's time is synthetic: where the idleness began
                _text(ax, 1, yc, _offset(ts - t_first), fontsize=6.5, color="#adb5bd", va="center")
            y += h
            continue
        closing = e is dec
        src = pos.get(side, xc)
        if side == "client":
            dst = xs
        elif side == "network":
            dst = xc
        else:
            dst = xc
        lw = 2.0 if closing else 1.1
        c = _PROBLEM if closing and record.is_problem else SIDE_COLOURS.get(side, "#6c757d")
        if closing and not record.is_problem:
            c = "#212529"
        unanswered = kind == "syn" and record.outcome == "syn_timeout"
        arrow = FancyArrowPatch(
            (src, yc - 0.1), (dst, yc + 0.32), arrowstyle="-|>", mutation_scale=9, lw=lw,
            color=c, shrinkA=0, shrinkB=1.5, ls=(0, (4, 3)) if unanswered else "-",
            gid=f"arrow-{kind}" + ("-close" if closing else ""), zorder=3,
        )  # fmt: skip
        ax.add_artist(arrow)  # limits are fixed: no autoscale bookkeeping
        arrows += 1
        text = _event_text(e, record)
        _text(
            ax, (src + dst) / 2, yc - 0.2, text, fontsize=7.5, ha="center", va="bottom",
            color=c, fontweight="bold" if closing else "normal", zorder=4,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
        )  # fmt: skip
        _text(ax, 1, yc, _offset(ts - t_first), fontsize=7, color="#495057", va="center", family="monospace")  # fmt: skip
        if frame is not None:
            _text(ax, 99, yc, f"{frame}", fontsize=7, color="#495057", va="center", ha="right", family="monospace")  # fmt: skip
        if closing and wrapped_close:
            _text(
                ax, 50, yc + 0.62, "\n".join(wrapped_close), fontsize=7.5, color=c, ha="center",
                va="top", style="italic", gid="close-label", linespacing=1.3, zorder=4,
                bbox={"boxstyle": "square,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )  # fmt: skip
        y += h
    fig.pcapdiag = {"arrows": arrows, "close_label": cl, "rows": len(events)}  # type: ignore[attr-defined]
    return fig


# -- output ----------------------------------------------------------------------------------
_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}


def format_for(path: str | os.PathLike) -> str | None:
    """The figure format a file name asks for (svg, png, pdf), or None."""
    return _FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())


def save(fig: Figure, target: str | os.PathLike | IO, format: str | None = None) -> None:
    """Write ``fig`` to a path (format from its extension) or a binary file object."""
    if format is None and isinstance(target, (str, os.PathLike)):
        format = format_for(target)
    if format is None:
        raise ValueError("unknown figure format: use a .svg, .png or .pdf file name")
    with matplotlib.rc_context(RC):
        fig.savefig(target, format=format, metadata=_SVG_METADATA if format == "svg" else None)


_TAG = re.compile(r"<[^<>]*>")
_ID_ATTR = re.compile(r'\bid="([^"]*)"')
_REF = re.compile(r'(xlink:href="#|href="#|url\(#)([^")]*)')
_FONT_FAMILY = re.compile(r"font-family: 'DejaVu Sans', [^;\"]*;? ?")
_ROTATE0 = re.compile(r' transform="rotate\(-0 [^)]*\)"')
_NUMBER = re.compile(r"(\d+\.\d\d)\d+")


def svg_text(fig: Figure, *, id_prefix: str = "", inline: bool = False) -> str:
    """The figure as SVG text (real ``<text>``, no fonts embedded).

    ``inline=True`` prepares it for an HTML page: no XML prolog, DOCTYPE, namespaces or
    metadata, width/height left to CSS (the viewBox stays), font family left to the page's
    stylesheet, coordinates rounded, and every id prefixed with ``id_prefix`` so several
    figures can share one document.
    """
    buf = io.StringIO()
    save(fig, buf, format="svg")
    svg = buf.getvalue()
    if not inline:
        return svg
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)

    def fix_tag(m: re.Match[str]) -> str:
        tag = m.group(0)
        if tag.startswith("<svg"):
            tag = re.sub(r'\s(xmlns(:\w+)?|version|width|height)="[^"]*"', "", tag)
        tag = _FONT_FAMILY.sub("", tag)
        tag = _ROTATE0.sub("", tag)
        tag = _NUMBER.sub(r"\1", tag)
        if id_prefix:
            tag = _ID_ATTR.sub(lambda a: f'id="{id_prefix}{a.group(1)}"', tag)
            tag = _REF.sub(lambda a: f"{a.group(1)}{id_prefix}{a.group(2)}", tag)
        return tag

    svg = _TAG.sub(fix_tag, svg)
    svg = re.sub(r"\n\s+", "\n", svg)
    return svg.replace("\nL ", " L ").replace("\nz\n", " z").strip()


def lane_ids(fig: Figure) -> Sequence[Any]:
    """The lanes of a timeline, top to bottom (record ids, or servers when aggregated)."""
    return getattr(fig, "pcapdiag", {}).get("lanes", [])
