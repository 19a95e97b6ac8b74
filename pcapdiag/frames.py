"""pandas views of an analysis, with declared dtypes, and its rich display in Jupyter.

``Analysis.connections``, ``Analysis.events`` and ``Analysis.packets(conn_id)`` are built
here. Every frame has a fixed schema (``CONNECTION_SCHEMA``, ``EVENT_SCHEMA``,
``PACKET_SCHEMA``): the same columns with the same dtypes whatever the capture holds, an
empty one included, so code written against one capture works on the next:

- times are ``datetime64[ns, UTC]``; durations are float seconds (``*_s``) or ``rtt_ms``;
- ports, counts, frame numbers are nullable integers (``UInt16``, ``Int64``…);
- closed vocabularies are ``category`` with every possible value as a category, in the
  documented order (``outcome`` uses ``pcapdiag.OUTCOMES``: ``value_counts(sort=False)``
  lists the outcomes that did not happen as zeros);
- text is ``string[python]``; a missing value is ``<NA>`` / ``NaT`` / ``NaN``.

Column names follow nfstream/zat: snake_case, ``client_*`` / ``server_*``, ``*_s`` for
seconds. pandas is imported when a frame is first built, never by ``import pcapdiag``;
the HTML and text renderings (``analysis_html``, ``analysis_text``, ``ConnectionView``) do
not need pandas at all. Capture-derived text (HTTP request lines, SNI, evidence) is
untrusted: the HTML renderings escape every value.
"""

from __future__ import annotations

import html
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from pcapdiag.classify import OUTCOMES, PROBLEMS, Ev, Side

if TYPE_CHECKING:
    import pandas as pd

    from pcapdiag.analysis import Analysis, CaptureSummary
    from pcapdiag.explain import ConnectionRecord

NS = 1_000_000_000

#: Categories of the ``category`` columns, in the order they are documented.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "outcome": OUTCOMES,
    "closed_by": ("client", "server", "network", "none"),
    "handshake": ("full", "partial", "none"),
    # Zeek's conn_state values, in the order of Zeek's conn.log documentation.
    "zeek_conn_state": (
        "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
    ),
    "side": tuple(s.value for s in Side),
    "kind": tuple(e.value for e in Ev),
    "packet_side": ("client", "server"),
}  # fmt: skip

_TIME = "datetime64[ns, UTC]"
_STR = "string[python]"

#: ``Analysis.connections``: column -> dtype (``category`` columns: see ``CATEGORIES``).
#: The index is the connection ``id`` (``Int64``), as in the JSON contract.
CONNECTION_SCHEMA: dict[str, str] = {
    "capture": _STR,
    "client_ip": _STR,
    "client_port": "UInt16",
    "server_ip": _STR,
    "server_port": "UInt16",
    "client": _STR,  # "ip:port", "[v6]:port"
    "server": _STR,
    "start": _TIME,
    "end": _TIME,
    "duration_s": "float64",
    "outcome": "category",
    "closed_by": "category",
    "close_time": _TIME,
    "close_frame": "Int64",
    "evidence": _STR,
    "client_packets": "Int64",
    "server_packets": "Int64",
    "client_bytes": "Int64",
    "server_bytes": "Int64",
    "requests": "Int64",
    "responses": "Int64",
    "handshake": "category",
    "tls_version": _STR,
    "tls_sni": _STR,
    "tls_alert": _STR,  # description of the decisive (else the first fatal) TLS alert
    "icmp_type": "UInt8",
    "icmp_code": "UInt8",
    "icmp_sender": _STR,
    "stdlib_error": _STR,
    "requests_error": _STR,
    "aiohttp_error": _STR,
    "httpx_error": _STR,
    "errno": "Int64",
    "zeek_conn_state": "category",
    "zeek_history": _STR,
    "first_frame": "Int64",
    "last_frame": "Int64",
    "keepalive_race": "boolean",
    "count": "Int64",
    "decrypted": "boolean",
    "stale": "boolean",
    "proxy_status": "Int64",
    "h2_error": _STR,
    "retry_of": "Int64",
    "idle_before_close_s": "float64",
    "syn_count": "Int64",
    "rtt_ms": "float64",
    "last_request": _STR,
    "cause": _STR,
    "fix": _STR,
}

#: ``Analysis.events``: one row per significant event of every connection.
EVENT_SCHEMA: dict[str, str] = {
    "conn_id": "Int64",
    "time": _TIME,
    "t_s": "float64",  # seconds since the start of the connection's capture
    "side": "category",  # client, server, network, none
    "kind": "category",  # syn, synack, fin, rst, request, response, ..., idle_gap, eoc
    "frame": "Int64",  # <NA> for idle_gap / eoc, which are no packet
    "detail": _STR,
}

#: ``Analysis.packets(conn_id)``: the TCP segments of one connection, in capture order.
PACKET_SCHEMA: dict[str, str] = {
    "frame": "Int64",
    "time": _TIME,
    "t_s": "float64",  # seconds since the start of the capture
    "side": "category",  # client / server: who sent it
    "flags": _STR,  # scapy-style letters in the order FSRPAUEC: "S", "SA", "PA", "FA", "R"
    "seq_rel": "Int64",  # relative to the sender's ISN, as Wireshark shows it
    "ack_rel": "Int64",  # relative to the receiver's ISN; <NA> without the ACK flag
    "payload_len": "Int64",
    "window": "UInt16",  # raw, unscaled
    "ttl": "UInt8",  # IPv4 TTL / IPv6 hop limit
}


def _dtypes(schema: dict[str, str], cats: dict[str, str] | None = None) -> dict[str, Any]:
    import pandas as pd

    out: dict[str, Any] = {}
    for name, dt in schema.items():
        if dt == "category":
            key = (cats or {}).get(name, name)
            out[name] = pd.CategoricalDtype(list(CATEGORIES[key]), ordered=False)
        else:
            out[name] = pd.api.types.pandas_dtype(dt)
    return out


def connection_dtypes() -> dict[str, Any]:
    """Column -> pandas dtype of ``Analysis.connections``."""
    return _dtypes(CONNECTION_SCHEMA)


def event_dtypes() -> dict[str, Any]:
    """Column -> pandas dtype of ``Analysis.events``."""
    return _dtypes(EVENT_SCHEMA)


def packet_dtypes() -> dict[str, Any]:
    """Column -> pandas dtype of ``Analysis.packets(conn_id)``."""
    return _dtypes(PACKET_SCHEMA, {"side": "packet_side"})


# -- building columns ------------------------------------------------------------------------
def _column(values: list[Any], dtype: Any) -> Any:
    """``values`` (None = missing) as a pandas array of exactly ``dtype``."""
    import numpy as np
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        unknown = [v for v in dict.fromkeys(values) if v is not None and v not in dtype.categories]
        if unknown:  # never drop a value: a new one is appended (the dtype then differs)
            dtype = pd.CategoricalDtype([*dtype.categories, *unknown], ordered=False)
        return pd.Categorical(values, dtype=dtype)
    if isinstance(dtype, pd.DatetimeTZDtype):
        nat = np.iinfo(np.int64).min
        ns = np.array([nat if v is None else int(v) for v in values], dtype=np.int64)
        return pd.array(pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC"), dtype=dtype)
    if dtype == np.float64:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iu":  # Int64...
        mask = np.array([v is None for v in values], dtype=bool)
        data = np.array([0 if v is None else v for v in values], dtype=dtype.numpy_dtype)
        return pd.arrays.IntegerArray(data, mask)
    return pd.array(values, dtype=dtype)


def _frame(columns: dict[str, list[Any]], dtypes: dict[str, Any], index: Any = None) -> Any:
    import pandas as pd

    data = {name: _column(columns[name], dt) for name, dt in dtypes.items()}
    if index is None:
        return pd.DataFrame(data)
    return pd.DataFrame(data, index=index)


def _tls_alert(r: ConnectionRecord) -> str | None:
    """The decisive alert (the one at the closing frame), else the first fatal one."""
    alerts = (r.tls or {}).get("alerts") or []
    chosen = next((a for a in alerts if r.close_frame is not None and a.get("frame") == r.close_frame), None)  # fmt: skip
    if chosen is None:
        chosen = next((a for a in alerts if a.get("level") == "fatal"), None)
    if chosen is None or chosen.get("description") is None:
        return None
    return str(chosen["description"])


def _h2_error(r: ConnectionRecord) -> str | None:
    """The first HTTP/2 error the server sent: 'RST_STREAM REFUSED_STREAM (stream 1)'."""
    h2 = r.h2 or {}
    for reset in h2.get("resets", ()):
        if reset["from"] == "server":
            return f"RST_STREAM {reset['error']} (stream {reset['stream_id']})"
    for g in h2.get("goaway", ()):
        if g["from"] == "server" and g["error"] != "NO_ERROR":
            return f"GOAWAY {g['error']} (last stream {g['last_stream_id']})"
    return None


def connections_frame(records: Sequence[ConnectionRecord]) -> pd.DataFrame:
    """One row per connection (index ``id``), with the dtypes of ``CONNECTION_SCHEMA``."""
    import pandas as pd

    recs = list(records)
    tls = [r.tls or {} for r in recs]
    icmp = [r.icmp or {} for r in recs]
    errs = [r.client_errors or {} for r in recs]
    simple = (
        "capture", "client_ip", "client_port", "server_ip", "server_port", "client", "server",
        "outcome", "closed_by", "close_frame", "evidence", "client_packets", "server_packets",
        "client_bytes", "server_bytes", "requests", "responses", "handshake", "zeek_conn_state",
        "zeek_history", "first_frame", "last_frame", "retry_of", "idle_before_close_s",
        "syn_count", "rtt_ms", "last_request", "cause", "fix",
    )  # fmt: skip
    got = zip(*map(attrgetter(*simple), recs), strict=True) if recs else [[] for _ in simple]
    cols: dict[str, list[Any]] = {name: list(col) for name, col in zip(simple, got, strict=True)}
    cols["start"] = [r.start_ns for r in recs]
    cols["end"] = [r.end_ns for r in recs]
    cols["close_time"] = [r.close_ns for r in recs]
    cols["duration_s"] = [(r.end_ns - r.start_ns) / NS for r in recs]
    cols["keepalive_race"] = [bool(r.keepalive_race) for r in recs]
    cols["count"] = [r.count for r in recs]
    cols["decrypted"] = [bool(r.decrypted) for r in recs]
    cols["stale"] = [bool(r.stale) for r in recs]
    cols["proxy_status"] = [(r.proxy or {}).get("status") for r in recs]
    cols["h2_error"] = [_h2_error(r) for r in recs]
    cols["tls_version"] = [t.get("version") for t in tls]
    cols["tls_sni"] = [t.get("sni") for t in tls]
    cols["tls_alert"] = [_tls_alert(r) if r.tls else None for r in recs]
    cols["icmp_type"] = [i.get("type") for i in icmp]
    cols["icmp_code"] = [i.get("code") for i in icmp]
    cols["icmp_sender"] = [i.get("sender") for i in icmp]
    for lib in ("stdlib", "requests", "aiohttp", "httpx"):
        cols[f"{lib}_error"] = [e.get(lib) for e in errs]
    cols["errno"] = [e.get("errno") for e in errs]
    ids = [r.id for r in recs]
    index = pd.Index(pd.array(ids, dtype="Int64"), name="id")
    return _frame(cols, connection_dtypes(), index)


def capture_starts(captures: Iterable[CaptureSummary]) -> dict[str, int]:
    """Capture path -> time of its earliest packet (ns), the zero of ``t_s``."""
    return {c.path: c.first_ns for c in captures if c.first_ns is not None}


def events_frame(records: Sequence[ConnectionRecord], starts: dict[str, int]) -> pd.DataFrame:
    """One row per significant event, connection by connection, in the order they happened."""
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_SCHEMA}
    for r in records:
        t0 = starts.get(r.capture, r.start_ns)
        for ts, frame, side, kind, detail in r.events:
            cols["conn_id"].append(r.id)
            cols["time"].append(ts)
            cols["t_s"].append((ts - t0) / NS)
            cols["side"].append(side)
            cols["kind"].append(kind)
            cols["frame"].append(frame)
            cols["detail"].append(detail)
    return _frame(cols, event_dtypes())


# -- packets of one connection ---------------------------------------------------------------
_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"),
                 (0x10, "A"), (0x20, "U"), (0x40, "E"), (0x80, "C"))  # fmt: skip
_M32 = 0xFFFF_FFFF


def flags_text(flags: int) -> str:
    """TCP flags as letters in scapy's order (FSRPAUEC): SYN-ACK is "SA", FIN-ACK "FA"."""
    return "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)


def packets_frame(
    record: ConnectionRecord,
    t0_ns: int | None = None,
    chain: tuple[list[str], list[int]] | None = None,
) -> pd.DataFrame:
    """The TCP segments of ``record``, read again from its capture (streamed, batch by batch):
    those of its 4-tuple between its first and last frame, with Wireshark's relative
    sequence numbers (the ISN of a side whose SYN was not captured is taken as its first
    sequence number minus one, or as the peer's first acknowledgement minus one, as
    Wireshark does). ICMP errors are not TCP segments and are not listed."""
    import numpy as np

    from pcapdiag import decode, reader

    c_hi, c_lo = decode.addr_halves(record.client_ip)
    s_hi, s_lo = decode.addr_halves(record.server_ip)
    c_port, s_port = record.client_port, record.server_port
    lo_frame, hi_frame = record.first_frame, record.last_frame
    rows: list[tuple[int, int, bool, int, int, int, int, int, int]] = []
    # ``chain``: the files (and frame offsets) of a rotated set the record spans
    files, offsets = chain or ([record.capture], [0])
    batches = reader.chain_batches(files, offsets)
    try:
        for batch in batches:
            if not len(batch) or int(batch.frame[-1]) < lo_frame:
                continue
            if int(batch.frame[0]) > hi_frame:
                break
            t = decode.decode_batch(batch).tcp
            if not len(t):
                continue
            in_range = (t.frame >= lo_frame) & (t.frame <= hi_frame)
            c2s = (
                (t.src_hi == np.uint64(c_hi)) & (t.src_lo == np.uint64(c_lo))
                & (t.dst_hi == np.uint64(s_hi)) & (t.dst_lo == np.uint64(s_lo))
                & (t.sport == c_port) & (t.dport == s_port)
            )  # fmt: skip
            s2c = (
                (t.src_hi == np.uint64(s_hi)) & (t.src_lo == np.uint64(s_lo))
                & (t.dst_hi == np.uint64(c_hi)) & (t.dst_lo == np.uint64(c_lo))
                & (t.sport == s_port) & (t.dport == c_port)
            )  # fmt: skip
            for k in np.flatnonzero(in_range & (c2s | s2c)):
                rows.append(
                    (
                        int(t.frame[k]), int(t.ts_ns[k]), bool(c2s[k]), int(t.flags[k]),
                        int(t.seq[k]), int(t.ack[k]), int(t.payload_len[k]),
                        int(t.window[k]), int(t.ttl[k]),
                    )
                )  # fmt: skip
    finally:
        batches.close()
    base: dict[bool, int] = {}  # side (True = client) -> ISN
    cols: dict[str, list[Any]] = {name: [] for name in PACKET_SCHEMA}
    start = record.start_ns if t0_ns is None else t0_ns
    for frame, ts, from_client, flags, seq, ack, plen, win, ttl in rows:
        if from_client not in base:
            base[from_client] = seq if flags & 0x02 else (seq - 1) & _M32
        has_ack = bool(flags & 0x10)
        if has_ack and (not from_client) not in base:
            base[not from_client] = (ack - 1) & _M32
        cols["frame"].append(frame)
        cols["time"].append(ts)
        cols["t_s"].append((ts - start) / NS)
        cols["side"].append("client" if from_client else "server")
        cols["flags"].append(flags_text(flags))
        cols["seq_rel"].append((seq - base[from_client]) & _M32)
        cols["ack_rel"].append((ack - base[not from_client]) & _M32 if has_ack else None)
        cols["payload_len"].append(plen)
        cols["window"].append(win)
        cols["ttl"].append(ttl)
    return _frame(cols, packet_dtypes())


# -- display ---------------------------------------------------------------------------------
def enable_figure_display() -> None:
    """Inside IPython/Jupyter, let a returned matplotlib Figure display as an image.

    pcapdiag's figures are built without pyplot, and IPython registers its figure
    formatter only when pyplot or ``%matplotlib`` activates a backend: without this, a
    notebook would show ``<Figure size ...>``. Registers the inline backend's formats
    (``InlineBackend.figure_formats``, PNG by default) unless a formatter for figures is
    registered already. Never fails.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return
    try:
        shell = ipython.get_ipython()
        if shell is None:
            return
        from matplotlib.figure import Figure

        dfm = shell.display_formatter
        extra = (getattr(dfm, "ipython_display_formatter", None), getattr(dfm, "mimebundle_formatter", None))  # fmt: skip
        for fmt in (*dfm.formatters.values(), *extra):
            if fmt is None:
                continue
            try:
                fmt.lookup_by_type(Figure)
                return
            except KeyError:
                continue
        from IPython.core.pylabtools import select_figure_formats

        formats: Any = {"png"}
        kwargs: dict[str, Any] = {}
        try:  # the formats `%config InlineBackend.figure_formats = [...]` asked for
            from matplotlib_inline.config import InlineBackend

            cfg = InlineBackend.instance(parent=shell)
            formats, kwargs = set(cfg.figure_formats), dict(cfg.print_figure_kwargs)
        except Exception:
            pass
        select_figure_formats(shell, formats, **kwargs)
    except Exception:  # displaying is a convenience: the figure itself is already built
        return


_TABLE_ROWS = 20


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counts(records: Sequence[ConnectionRecord]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:  # fmt: skip
    counts = Counter(r.outcome for r in records)
    bad = [(o, counts[o]) for o in OUTCOMES if o in PROBLEMS and counts[o]]
    good = [(o, counts[o]) for o in OUTCOMES if o not in PROBLEMS and counts[o]]
    return bad, good


def verdict_lines(analysis: Analysis) -> list[str]:
    """The analysis in a few plain sentences: counts by outcome, problems first, idle timeout."""
    recs = analysis.records
    n_caps = len(analysis.captures)
    lines = [f"{_plural(len(recs), 'TCP connection')} in {_plural(n_caps, 'capture')}."]
    bad, good = _counts(recs)
    if bad:
        total = sum(n for _, n in bad)
        lines.append(f"{_plural(total, 'problem')}: " + ", ".join(f"{n} {o}" for o, n in bad) + ".")
    elif recs:
        lines.append("No problems: every connection ended normally or is still open.")
    if good:
        total = sum(n for _, n in good)
        lines.append(f"{total} fine: " + ", ".join(f"{n} {o}" for o, n in good) + ".")
    races = sum(1 for r in recs if r.keepalive_race)
    if races:
        lines.append(
            f"{_plural(races, 'keep-alive race')}: a request reused a connection the server "
            "was closing for being idle."
        )
    for t in analysis.idle_timeouts[:3]:
        lines.append("Idle timeout: " + t.sentence() + ".")
    if len(analysis.idle_timeouts) > 3:
        more = len(analysis.idle_timeouts) - 3
        lines.append(f"(and {_plural(more, 'more server')} with an idle timeout)")
    for c in analysis.captures:
        if c.error:
            lines.append(f"Unreadable past the damage: {c.error}")
    return lines


_RANK = {o: i for i, o in enumerate(OUTCOMES)}


def _ordered(records: Sequence[ConnectionRecord]) -> list[ConnectionRecord]:
    """Problems first, by outcome in the order of ``OUTCOMES``, then by id."""
    return sorted(records, key=lambda r: (not r.is_problem, _RANK.get(r.outcome, 99), r.id))


def _close_text(r: ConnectionRecord, starts: dict[str, int]) -> str:
    if r.close_ns is None:
        return ""
    t0 = starts.get(r.capture, r.start_ns)
    where = f"t={(r.close_ns - t0) / NS:.3f} s"
    return f"{where}, frame {r.close_frame}" if r.close_frame is not None else where


_STYLE = (
    "<style>.pcapdiag-table td{text-align:left;vertical-align:top}"
    ".pcapdiag-table th{text-align:left}.pcapdiag-problem{color:#b00020;font-weight:600}"
    ".pcapdiag-evidence{max-width:60em;font-size:90%}.pcapdiag-nowrap{white-space:nowrap}</style>"
)


def analysis_html(analysis: Analysis, max_rows: int = _TABLE_ROWS) -> str:
    """HTML for Jupyter: the verdict, then a table of connections (problems first)."""
    e = html.escape
    starts = capture_starts(analysis.captures)
    out = [_STYLE, "<div class='pcapdiag'>", "<p><b>pcapdiag analysis</b></p><ul>"]
    out += [f"<li>{e(line)}</li>" for line in verdict_lines(analysis)]
    out.append("</ul>")
    recs = _ordered(analysis.records)
    if recs:
        out.append("<table class='pcapdiag-table'><thead><tr>")
        out += [f"<th>{h}</th>" for h in ("id", "outcome", "closed by", "client", "server", "closed at", "evidence")]  # fmt: skip
        out.append("</tr></thead><tbody>")
        for r in recs[:max_rows]:
            cls = " class='pcapdiag-problem'" if r.is_problem else ""
            cells = [
                f"<td>{r.id}</td>",
                f"<td{cls}>{e(r.outcome)}</td>",
                f"<td>{e(r.closed_by)}</td>",
                f"<td>{e(r.client)}</td>",
                f"<td>{e(r.server)}</td>",
                f"<td class='pcapdiag-nowrap'>{e(_close_text(r, starts))}</td>",
                f"<td class='pcapdiag-evidence'>{e(r.evidence)}</td>",
            ]
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        if len(recs) > max_rows:
            out.append(
                f"<p>… and {len(recs) - max_rows} more: <code>.connections</code> has every "
                "connection as a DataFrame.</p>"
            )
    out.append("</div>")
    return "".join(out)


def analysis_text(analysis: Analysis, max_rows: int = 10) -> str:
    """Plain text: the verdict, then the first problems (at most ``max_rows``)."""
    starts = capture_starts(analysis.captures)
    lines = ["<pcapdiag.Analysis>", *("  " + line for line in verdict_lines(analysis))]
    probs = [r for r in _ordered(analysis.records) if r.is_problem]
    for r in probs[:max_rows]:
        closed = _close_text(r, starts)
        lines.append(
            f"  #{r.id} {r.outcome} (closed by {r.closed_by}{', ' + closed if closed else ''}) "
            f"{r.client} -> {r.server}"
        )
    if len(probs) > max_rows:
        lines.append(f"  … and {len(probs) - max_rows} more problems (see .problems_df)")
    return "\n".join(lines)


_LIBS = (("stdlib", "http.client / urllib"), ("requests", "requests"),
         ("aiohttp", "aiohttp"), ("httpx", "httpx"))  # fmt: skip


class ConnectionView:
    """One connection as ``Analysis.connection(conn_id)`` returns it: every attribute of its
    :class:`~pcapdiag.ConnectionRecord` (``view.outcome``, ``view.evidence``,
    ``view.client_errors``…; the record itself is ``view.record``), plus ``packets()``,
    ``ladder()`` and a rich display in Jupyter (evidence, client errors, cause and fix)."""

    __slots__ = ("record", "_analysis")

    def __init__(self, record: ConnectionRecord, analysis: Analysis) -> None:
        self.record = record
        self._analysis = analysis

    def __getattr__(self, name: str) -> Any:
        if name in ConnectionView.__slots__:  # not yet set (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.record, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.record)))

    def packets(self) -> pd.DataFrame:
        """The connection's TCP segments (see ``Analysis.packets``)."""
        return self._analysis.packets(self.record.id)

    def ladder(self, **kw: Any) -> Any:
        """A ladder diagram of this connection (a matplotlib Figure)."""
        return self._analysis.ladder(self.record.id, **kw)

    def to_json(self) -> dict[str, Any]:
        return self.record.to_json()

    def _header(self) -> str:
        r = self.record
        return f"Connection #{r.id}: {r.client} → {r.server}: {r.outcome} (closed by {r.closed_by})"

    def __repr__(self) -> str:
        r = self.record
        lines = [f"<{self._header()}>", f"  {r.evidence}"]
        for key, lib in _LIBS:
            if r.client_errors.get(key):
                lines.append(f"  {lib}: {r.client_errors[key]}")
        if r.cause:
            lines.append(f"  cause: {r.cause}")
        if r.fix:
            lines.append(f"  fix: {r.fix}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        r = self.record
        starts = capture_starts(self._analysis.captures)
        cls = " class='pcapdiag-problem'" if r.is_problem else ""
        out = [_STYLE, "<div class='pcapdiag'>", f"<p><b>Connection #{r.id}</b>: {e(r.client)} → "
               f"{e(r.server)}: <span{cls}>{e(r.outcome)}</span>, closed by {e(r.closed_by)}"]  # fmt: skip
        closed = _close_text(r, starts)
        if closed:
            out.append(f" ({e(closed)})")
        out.append(f"</p><p>{e(r.evidence)}</p>")
        rows = [(lib, r.client_errors.get(key)) for key, lib in _LIBS]
        rows = [(lib, text) for lib, text in rows if text]
        if rows:
            out.append("<table class='pcapdiag-table'><thead><tr><th>client</th><th>what it raised</th></tr></thead><tbody>")  # fmt: skip
            out += [f"<tr><td>{e(lib)}</td><td><code>{e(text)}</code></td></tr>" for lib, text in rows]  # fmt: skip
            out.append("</tbody></table>")
        if r.client_errors.get("errno") is not None:
            out.append(f"<p>errno: {e(str(r.client_errors['errno']))}</p>")
        if r.cause:
            out.append(f"<p><b>Likely cause:</b> {e(r.cause)}</p>")
        if r.fix:
            out.append(f"<p><b>Fix:</b> {e(r.fix)}</p>")
        facts = [f"capture {r.capture}", f"frames {r.first_frame}–{r.last_frame}",
                 f"{r.client_packets}/{r.server_packets} packets client/server",
                 f"{r.requests} request(s), {r.responses} response(s)",
                 f"Zeek {r.zeek_conn_state} {r.zeek_history}"]  # fmt: skip
        if r.retry_of is not None:
            facts.append(f"repeats the request of connection #{r.retry_of}")
        out.append(f"<p style='font-size:90%'>{e('; '.join(facts))}</p></div>")
        return "".join(out)
