"""The HTML report: one self-contained file to attach to a ticket.

Sections, in order: the verdict in plain words (what failed, how often, who closed, the
likely cause, the fix); findings by outcome with evidence and the exception each Python
client raises; a timeline of every connection; ladder diagrams of the first few problem
connections of each outcome; the connection table (sortable and filterable by a small
inline script, a plain table without it) with a Wireshark display filter per row; and the
capture facts.

Self-contained and inert: inline CSS, inline SVG (text as ``<text>``, no fonts), no URL
leaves the page, and a Content-Security-Policy that allows only the one inline script (by
its hash), inline styles and ``data:`` images. Everything that comes from a capture is
passed through ``figures.label`` (control and bidi characters made visible) and
``html.escape(..., quote=True)``; the script reads the table from the DOM, so no capture
data is ever embedded in JavaScript.

Size is bounded for big captures: at most ``max_rows`` table rows (problems first),
ladders for the first ``max_ladders`` connections of each problem outcome, and an
aggregate timeline beyond ``max_lanes`` connections; the page says what was left out.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from pcapdiag import __version__
from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.connections import _gc_paused
from pcapdiag.report import figures
from pcapdiag.report.figures import label

if TYPE_CHECKING:
    from pcapdiag.analysis import Analysis
    from pcapdiag.explain import ConnectionRecord, IdleTimeout

__all__ = ["MAX_LADDERS", "MAX_ROWS", "render", "wireshark_filter", "write_report"]

MAX_ROWS = 2000  # connection table rows (problems first); the rest are counted
MAX_LADDERS = 3  # ladder diagrams per problem outcome
MAX_EXAMPLES = 3  # evidence sentences per outcome in the findings
MAX_VERDICT_GROUPS = 6  # (outcome, server) groups spelled out in the verdict
NS = 1_000_000_000

SECTIONS = (
    ("verdict", "Verdict"),
    ("findings", "Findings by outcome"),
    ("timeline", "Timeline"),
    ("ladders", "Ladder diagrams"),
    ("connections", "Connections"),
    ("capture", "Capture facts"),
)

# What the wire shows, per outcome (README's table).
OUTCOME_TEXT = {
    "refused": "The SYN was answered by RST: nothing listened on that port.",
    "syn_timeout": "The SYN (and its retransmissions) was never answered.",
    "icmp_unreachable": "The SYN was answered by ICMP destination unreachable, from a router or the server host.",
    "tls_alert": "A fatal TLS alert, visible in the clear, ended the connection.",
    "tls_handshake_aborted": "A side closed (FIN or RST) during the TLS handshake without a readable alert.",
    "server_close_after_request": "The server sent FIN while a request was outstanding, or the client wrote a request after the server's FIN (keep-alive race).",
    "truncated_response": "The server sent FIN before the response it announced was complete.",
    "server_reset": "The server sent RST on an established connection.",
    "client_reset": "The client sent RST on an established connection.",
    "client_timeout": "The client gave up (FIN or RST) while it waited for a response.",
    "server_idle_close": "The server closed an idle keep-alive connection with nothing outstanding.",
    "server_close": "The server closed after completing its responses.",
    "client_close": "The client closed with nothing outstanding.",
    "open": "Still open when the capture ended.",
}
LIBS = (
    ("stdlib", "http.client / urllib"),
    ("requests", "requests"),
    ("aiohttp", "aiohttp"),
    ("httpx", "httpx"),
)


def e(value: object) -> str:
    """Capture-derived (or any) text for HTML text and attribute values."""
    return html.escape(label(value), quote=True)


# -- public entry points ---------------------------------------------------------------------
def write_report(
    analysis: Analysis,
    target: str | os.PathLike | IO[str],
    *,
    max_rows: int = MAX_ROWS,
    max_ladders: int = MAX_LADDERS,
    max_lanes: int = figures.MAX_LANES,
    title: str | None = None,
) -> None:
    """Write the self-contained HTML report of ``analysis`` to a path or a text stream."""
    page = render(
        analysis, max_rows=max_rows, max_ladders=max_ladders, max_lanes=max_lanes, title=title
    )
    if isinstance(target, (str, os.PathLike)):
        with open(target, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(page)
    else:
        target.write(page)


def render(
    analysis: Analysis,
    *,
    max_rows: int = MAX_ROWS,
    max_ladders: int = MAX_LADDERS,
    max_lanes: int = figures.MAX_LANES,
    title: str | None = None,
) -> str:
    """The report as one HTML string."""
    with _gc_paused():  # every record made at once: no cycles for the collector to find
        records = _records(analysis, max_lanes)
    ctx = _Context(analysis, max_rows=max_rows, max_ladders=max_ladders, records=records)
    out = io.StringIO()
    w = out.write
    files = [os.path.basename(c.path) for c in analysis.captures]
    page_title = title or "pcapdiag report: " + (
        files[0] if len(files) == 1 else f"{len(files):,} capture files" if files else "no capture"
    )
    script = _SCRIPT.strip()
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    w('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    w(f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp, quote=True)}">\n')
    w('<meta name="referrer" content="no-referrer">\n')
    w('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
    w('<meta name="generator" content="pcapdiag ' + e(__version__) + '">\n')
    w('<link rel="icon" href="data:,">\n')
    w(f"<title>{e(page_title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n")
    _header(w, ctx, page_title)
    _verdict(w, ctx)
    _findings(w, ctx)
    _timeline(w, ctx, max_lanes)
    _ladders(w, ctx)
    _table(w, ctx)
    _capture_facts(w, ctx)
    w(
        "<footer><p>Generated by pcapdiag "
        + e(__version__)
        + " on "
        + e(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        + ". Frame numbers are per capture file, as Wireshark shows them.</p></footer>\n"
    )
    w("</main>\n")
    w(f"<script>{script}</script>\n</body>\n</html>\n")
    return out.getvalue()


def _records(analysis: Analysis, max_lanes: int) -> list[ConnectionRecord]:
    """Every record once, in id order, for all the sections (walking a big capture's
    store once per section made each fast-lane record a dozen times: a minute for
    126,000). A store's are made without their events, but the problems' (the sections
    read events of problems only) and when the timeline gives each its lane."""
    from pcapdiag._store import Records

    recs = analysis.records
    if not isinstance(recs, Records) or len(recs) <= max_lanes:
        return list(recs)
    out = list(recs.without_events())
    for i, o in enumerate(recs.column("outcome")):
        if o in PROBLEMS:
            out[i] = recs[i]
    return out


def wireshark_filter(r: ConnectionRecord) -> str:
    """A display filter for one connection that does not depend on tcp.stream."""
    ip = "ipv6.addr" if r.ip_version == 6 else "ip.addr"
    f = (
        f"{ip}=={r.client_ip} && {ip}=={r.server_ip} && "
        f"tcp.port=={r.client_port} && tcp.port=={r.server_port}"
    )
    if r.client_port == r.server_port:
        f = f"{ip}=={r.client_ip} && {ip}=={r.server_ip} && tcp.port=={r.client_port}"
    return f + f" && frame.number>={r.first_frame} && frame.number<={r.last_frame}"


# -- shared context --------------------------------------------------------------------------
class _Context:
    def __init__(
        self,
        analysis: Analysis,
        *,
        max_rows: int,
        max_ladders: int,
        records: list[ConnectionRecord],
    ) -> None:
        self.a = analysis
        self.records = records
        self.problems = analysis.problems
        self.by_outcome: dict[str, list[ConnectionRecord]] = defaultdict(list)
        for r in self.records:
            self.by_outcome[r.outcome].append(r)
        self.t0 = figures._capture_start(analysis) or 0
        self.multi = len({r.capture for r in self.records}) > 1 or len(analysis.captures) > 1
        ordered = sorted(self.records, key=lambda r: (not r.is_problem, r.start_ns, r.id))
        self.rows = ordered[:max_rows]
        self.row_ids = {r.id for r in self.rows}
        self.max_rows = max_rows
        self.ladder_recs: list[ConnectionRecord] = []
        for o in OUTCOMES:
            if o in PROBLEMS:
                self.ladder_recs.extend(self.by_outcome.get(o, [])[:max_ladders])
        self.ladder_ids = {r.id for r in self.ladder_recs}
        self.max_ladders = max_ladders
        self.idle = {t.server: t for t in analysis.idle_timeouts}
        self.retries: dict[int, list[ConnectionRecord]] = defaultdict(list)
        for r in self.records:
            if r.retry_of is not None:
                self.retries[r.retry_of].append(r)
        self.per_server = Counter(r.server for r in self.records)

    def conn_link(self, r: ConnectionRecord, text: str | None = None) -> str:
        text = e(text if text is not None else f"#{r.id}")
        if r.id in self.ladder_ids:
            return f'<a href="#ladder-{r.id}">{text}</a>'
        if r.id in self.row_ids:
            return f'<a href="#conn-{r.id}">{text}</a>'
        return text

    def file(self, r: ConnectionRecord) -> str:
        return os.path.basename(r.capture)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _chip(outcome: str) -> str:
    cls = "p" if outcome in PROBLEMS else ("o" if outcome == "open" else "ok")
    if outcome in ("client_timeout", "client_reset"):
        cls = "c"
    return f'<span class="chip {cls}">{e(outcome)}</span>'


def _dur(ns: float | None) -> str:
    return "?" if ns is None else figures._dur(ns)


# -- header ----------------------------------------------------------------------------------
def _header(w, ctx: _Context, page_title: str) -> None:  # noqa: ANN001
    a = ctx.a
    packets = sum(c.packets for c in a.captures)
    w('<header class="top">\n')
    w(f"<h1>{e(page_title)}</h1>\n")
    w(
        f'<p class="sub">{_plural(len(a.captures), "capture file")} · {_plural(packets, "packet")}'
        f" · {_plural(len(ctx.records), 'TCP connection')} · "
        f"{_plural(len(ctx.problems), 'problem')}</p>\n"
    )
    w('<nav aria-label="sections"><ol>')
    for sid, name in SECTIONS:
        w(f'<li><a href="#{sid}">{name}</a></li>')
    w("</ol></nav>\n</header>\n")


# -- 1. verdict ------------------------------------------------------------------------------
@dataclass
class Group:
    """Problem connections with one outcome to one server (a verdict line); an outcome
    spread over more than ``MAX_SERVERS_APART`` servers makes one group for all of them."""

    outcome: str
    servers: list[tuple[str, int, int]]  # (server, failed, connections to it), most failed first
    records: list[ConnectionRecord]
    total: int  # connections to those servers

    @property
    def server(self) -> str | None:
        return self.servers[0][0] if len(self.servers) == 1 else None


MAX_SERVERS_APART = 2


def verdict_groups(
    analysis: Analysis, records: Sequence[ConnectionRecord] | None = None
) -> list[Group]:
    """Problems grouped by (outcome, server), the biggest first (``records``: the
    analysis's, already at hand)."""
    recs = analysis.records if records is None else records
    by_outcome: dict[str, dict[str, list[ConnectionRecord]]] = defaultdict(dict)
    per_server: Counter[str] = Counter()
    for r in recs:
        if r.is_problem:
            by_outcome[r.outcome].setdefault(r.server, []).append(r)
        per_server[r.server] += r.count
    out = []
    for o, servers in by_outcome.items():
        ranked = sorted(servers.items(), key=lambda kv: (-_n(kv[1]), kv[0]))
        if len(ranked) <= MAX_SERVERS_APART:
            for s, recs in ranked:
                out.append(Group(o, [(s, _n(recs), per_server[s])], recs, per_server[s]))
        else:
            recs = sorted((r for _, rs in ranked for r in rs), key=lambda r: (r.start_ns, r.id))
            info = [(s, _n(rs), per_server[s]) for s, rs in ranked]
            out.append(Group(o, info, recs, sum(per_server[s] for s, _ in ranked)))
    out.sort(key=lambda g: (-_n(g.records), OUTCOMES.index(g.outcome), g.servers[0][0]))
    return out


def _n(recs: list[ConnectionRecord]) -> int:
    """Connections, not rows: a folded flood row stands for ``count`` connections."""
    return sum(r.count for r in recs)


def _phrase(g: Group) -> str:
    """What happened to the group's connections, as the end of '4 of 17 connections to X …'."""
    n = _n(g.records)
    were = "was" if n == 1 else "were"
    their = "its" if n == 1 else "their"
    r0 = g.records[0]
    closer = Counter(r.closed_by for r in g.records).most_common(1)[0][0]
    o = g.outcome
    if o == "refused":
        return f"{were} refused: the server answered {their} SYN with RST (nothing listening on that port)"
    if o == "syn_timeout":
        return f"never got an answer to {their} SYN"
    if o == "icmp_unreachable":
        names = Counter((r.icmp or {}).get("name") or "destination unreachable" for r in g.records)
        senders = Counter(
            ((r.icmp or {}).get("sender"), r.closed_by == "network") for r in g.records
        )
        what = " / ".join(e(x) for x, _ in names.most_common(3))
        parts = []
        for (sender, router), _count in senders.most_common(2):
            who = "a router" if router else "the server host"
            parts.append(who + (f" <code>{e(sender)}</code>" if sender else ""))
        return f"{were} rejected with ICMP {what} from " + " and ".join(parts)
    if o == "tls_alert":
        pairs = Counter((_alert_name(r), r.closed_by) for r in g.records)
        if len(pairs) == 1:
            alert = _alert_name(r0)
            return f"failed the TLS handshake: the {e(closer)} sent a fatal alert" + (
                f" <code>{e(alert)}</code>" if alert else ""
            )
        items = [
            (f"<code>{e(a)}</code>" if a else "an alert") + f" from the {e(side)} ({n}×)"
            for (a, side), n in pairs.most_common(3)
        ]
        return "failed the TLS handshake with a fatal alert: " + ", ".join(items)
    if o == "tls_handshake_aborted":
        return f"{were} abandoned by the {e(closer)} during the TLS handshake, without a readable alert"
    if o == "server_close_after_request":
        txt = f"{were} closed by the server right after a request"
        if any(r.keepalive_race for r in g.records):
            txt += (
                " (a keep-alive race: the request went out on a connection the server was closing)"
            )
        return txt
    if o == "truncated_response":
        return f"{were} cut off by the server in the middle of a response"
    if o == "server_reset":
        return f"{were} reset (RST) by the server"
    if o == "client_reset":
        return f"{were} reset (RST) by the client itself"
    if o == "client_timeout":
        waits = [w for w in (_waited(r) for r in g.records) if w is not None]
        txt = f"{were} abandoned by the client while it waited for a response"
        if waits:
            txt += f" (after ≈{_dur(statistics.median(waits))}: its read timeout)"
        return txt
    return f"ended as {e(o)}"


def _alert_name(r: ConnectionRecord) -> str | None:
    for a in (r.tls or {}).get("alerts") or []:
        if a.get("frame") == r.close_frame and a.get("description"):
            return str(a["description"])
    for ev in r.events:
        if ev[3] == "alert" and ev[1] == r.close_frame:
            return ev[4] or None
    return None


def _waited(r: ConnectionRecord) -> int | None:
    dec = figures.closing_event(r)
    if dec is None:
        return None
    reqs = [ev for ev in r.events if ev[3] == "request" and ev[0] <= dec[0]]
    return dec[0] - reqs[-1][0] if reqs else None


def _reuse_idle(r: ConnectionRecord) -> int | None:
    """How long the connection had been idle when the client reused it (keep-alive race)."""
    known = getattr(r, "reused_after_idle_s", None)
    if known is not None:
        return int(known * NS)
    reqs = [i for i, ev in enumerate(r.events) if ev[3] == "request"]
    if len(reqs) < 1:
        return None
    i = reqs[-1]
    for ev in reversed(r.events[:i]):
        if ev[3] in (
            "response_end",
            "response_end_close",
            "response",
            "request",
            "synack",
            "tls_done",
        ):
            return r.events[i][0] - ev[0]
    return None


def _frames_text(ctx: _Context, recs: list[ConnectionRecord], limit: int = 4) -> str:
    files = {r.capture for r in recs}
    single = len(files) == 1
    limit = limit if single else 3
    items = []
    for r in recs[:limit]:
        frame = r.close_frame if r.close_frame is not None else r.last_frame
        link = ctx.conn_link(r, str(frame))
        items.append(link if single else f'{link} <span class="file">{e(ctx.file(r))}</span>')
    more = ", …" if len(recs) > limit else ""
    closing = any(r.close_frame is not None for r in recs)
    word = ("frame" if len(recs) == 1 else "frames") if closing else "last frame"
    if not closing and len(recs) > 1:
        word = "last frames"
    tail = "" if single else f" in {_plural(len(files), 'file')}"
    return f"{word} {', '.join(items)}{more}{tail}"


def _exc_short(text: str) -> str:
    head = text.split(":", 1)[0].strip().split(" ")[0]
    return head.rsplit(".", 1)[-1]


def _client_saw(g: Group) -> str:
    parts = []
    for key, name in LIBS:
        seen: list[str] = []
        for r in g.records:
            val = r.client_errors.get(key)
            short = _exc_short(val) if val else None
            if short and short not in seen:
                seen.append(short)
        if seen:
            parts.append(
                f'<span class="lib">{name}</span> <code>{" / ".join(e(s) for s in seen[:2])}</code>'
            )
    errnos = sorted({r.client_errors.get("errno") for r in g.records} - {None})
    if not parts:
        return ""
    txt = "Your client raised: " + ", ".join(parts)
    if errnos:
        txt += " (errno " + ", ".join(e(x) for x in errnos) + ")"
    return txt + "."


def _cause_text(ctx: _Context, g: Group) -> str:
    recs = g.records
    bits = []
    race = [r for r in recs if r.keepalive_race]
    causes: list[str] = []
    for r in sorted(recs, key=lambda r: not r.keepalive_race):
        if r.cause and r.cause not in causes:
            causes.append(r.cause)
    if causes:
        bits.append("Likely cause: " + " / ".join(e(c.rstrip(".")) for c in causes[:2]))
    t: IdleTimeout | None = next(
        (ctx.idle[srv] for srv, _n, _t in g.servers if srv in ctx.idle), None
    )
    idles = [x for x in (_reuse_idle(r) for r in race) if x is not None]
    reuse = (
        f"your client reused a pooled connection after ≈{e(_dur(max(idles)))} idle"
        if idles
        else "your client pool keeps connections longer"
    )
    if t is not None and g.outcome in (
        "server_close_after_request",
        "server_reset",
        "truncated_response",
    ):
        txt = e(t.sentence())
        if race and getattr(t, "client_reused_after_s", None) is None:
            txt += f"; {reuse} — longer than the server keeps them"
        bits.append(txt[0].upper() + txt[1:])
    elif race and idles:
        bits.append(reuse[0].upper() + reuse[1:] + ", after the server had decided to close it")
    retried = [x for r in recs for x in ctx.retries.get(r.id, [])]
    if retried:
        links = ", ".join(ctx.conn_link(x) for x in retried[:4])
        bits.append(
            f"{_plural(len(retried), 'failed request was', 'failed requests were')} repeated at once on"
            f" a new connection ({links}): aiohttp's automatic retry of idempotent requests, so"
            " the application may never have seen the error"
        )
    return ". ".join(bits) + ("." if bits else "")


def _fixes(ctx: _Context, groups: list[Group]) -> list[tuple[str, list[Group]]]:
    fixes: dict[str, list[Group]] = {}
    for g in groups:
        seen = []
        for r in sorted(g.records, key=lambda r: not r.keepalive_race):
            if r.fix and r.fix not in seen:
                seen.append(r.fix)
        for fx in seen[:2]:
            fixes.setdefault(fx, []).append(g)
    return list(fixes.items())


def _verdict(w, ctx: _Context) -> None:  # noqa: ANN001
    n = _n(ctx.records)
    p = _n(ctx.problems)
    cls = "bad" if p else "good"
    w(f'<section id="verdict" class="verdict {cls}">\n<h2>1. Verdict</h2>\n')
    if not n:
        w('<p class="headline">No TCP connections were found in the capture.</p>\n')
        _quality_note(w, ctx)
        w("</section>\n")
        return
    if not p:
        counts = ", ".join(f"{e(o)} {_n(rs):,}" for o, rs in _present(ctx))
        w(
            f'<p class="headline">No connection failed: all {_plural(n, "connection")} ended'
            f" normally ({counts}).</p>\n"
        )
        for t in ctx.a.idle_timeouts[:3]:
            w(f"<p>{e(t.sentence()[0].upper() + t.sentence()[1:])}.</p>\n")
        _quality_note(w, ctx)
        w("</section>\n")
        return
    groups = verdict_groups(ctx.a, ctx.records)
    outcomes: Counter[str] = Counter()
    for r in ctx.problems:
        outcomes[r.outcome] += r.count
    kinds = ", ".join(f"{e(o)} {c:,}" for o, c in sorted(outcomes.items(), key=lambda x: -x[1]))
    if n == 1:
        head = "The only connection failed"
    elif p == n:
        head = f"All {n:,} connections failed"
    else:
        head = f"{p:,} of {_plural(n, 'connection')} failed"
    w(
        f'<p class="headline">{head} <span class="kinds">({kinds})</span>.</p>\n'
        '<ol class="groups">\n'
    )
    for g in groups[:MAX_VERDICT_GROUPS]:
        w('<li class="group">')
        n = _n(g.records)
        if g.total == 1:
            who = "The connection"
        elif n == g.total:
            who = f"All {n:,} connections"
        else:
            who = f"{n:,} of {g.total:,} connections"
        where = f"<code>{e(g.server)}</code>" if g.server else f"{len(g.servers):,} servers"
        w(
            f'<p class="claim">{_chip(g.outcome)} <strong>{who} to {where} '
            f"{_phrase(g)}</strong> ({_frames_text(ctx, g.records)}).</p>"
        )
        if g.server is None:
            top = ", ".join(
                f"<code>{e(srv)}</code> {k:,} of {tot:,}" for srv, k, tot in g.servers[:4]
            )
            rest = len(g.servers) - 4
            w(
                f'<p class="where">Most at {top}{f", and {rest:,} more servers" if rest > 0 else ""}.</p>'
            )
        saw = _client_saw(g)
        if saw:
            w(f'<p class="saw">{saw}</p>')
        cause = _cause_text(ctx, g)
        if cause:
            w(f'<p class="cause">{cause}</p>')
        w("</li>\n")
    w("</ol>\n")
    if len(groups) > MAX_VERDICT_GROUPS:
        rest = groups[MAX_VERDICT_GROUPS:]
        w(
            f'<p class="more">…and {_plural(len(rest), "more group")} of problems '
            f"({sum(_n(g.records) for g in rest):,} connections): see the findings below.</p>\n"
        )
    fixes = _fixes(ctx, groups)
    if fixes:
        w('<h3 class="todo">What to do</h3>\n<ul class="fixes">\n')
        for fx, gs in fixes:
            where = ", ".join(sorted({e(g.outcome) for g in gs}, key=lambda o: OUTCOMES.index(o)))
            extra = ""
            servers = [srv for g in gs for srv, _n, _t in g.servers if srv in ctx.idle]
            if any(r.keepalive_race for g in gs for r in g.records) and servers:
                t = ctx.idle[servers[0]]
                extra = (
                    f" Here: below ≈{t.seconds:.1f} s for <code>{e(t.server)}</code>"
                    " (measured from its idle closes in this capture)."
                )
            w(f'<li>{e(fx)}{extra} <span class="for">({where})</span></li>\n')
        w("</ul>\n")
    named = {srv for g in groups for srv, _n, _t in g.servers}
    others = [t for t in ctx.a.idle_timeouts if t.server not in named]
    for t in others[:2]:
        w(f'<p class="note">Also measured: {e(t.sentence())}.</p>\n')
    _quality_note(w, ctx)
    w("</section>\n")


def _quality_note(w, ctx: _Context) -> None:  # noqa: ANN001
    """Say in the verdict when the capture was damaged or incomplete: it limits the verdict."""
    errors = [c for c in ctx.a.captures if c.error]
    warned = [(c, x) for c in ctx.a.captures for x in c.warnings]
    if not errors and not warned:
        return
    bits = []
    if errors:
        bits.append(f"{_plural(len(errors), 'capture file')} could not be read to the end")
    if warned:
        bits.append(
            f"the reader reported {_plural(len(warned), 'warning')}, first: {e(warned[0][1])}"
        )
    w(
        '<p class="note warn">Mind the capture: '
        + "; ".join(bits)
        + ' (<a href="#capture">capture facts</a>).</p>\n'
    )


def _present(ctx: _Context) -> list[tuple[str, list[ConnectionRecord]]]:
    return [(o, ctx.by_outcome[o]) for o in OUTCOMES if ctx.by_outcome.get(o)]


# -- 2. findings -----------------------------------------------------------------------------
def _findings(w, ctx: _Context) -> None:  # noqa: ANN001
    w('<section id="findings">\n<h2>2. Findings by outcome</h2>\n')
    present = _present(ctx)
    if not present:
        w("<p>Nothing to report.</p>\n</section>\n")
        return
    w('<p class="chips">')
    for o, recs in present:
        w(f'<a class="chiplink" href="#outcome-{e(o)}">{_chip(o)} {_n(recs):,}</a> ')
    w("</p>\n")
    for o, recs in present:
        problem = o in PROBLEMS
        closers = Counter(r.closed_by for r in recs)
        closed = ", ".join(f"{e(k)} {v:,}" for k, v in closers.most_common())
        head = (
            f"{_chip(o)} {_plural(_n(recs), 'connection')}"
            f' <span class="closed">closed by: {closed}</span>'
        )
        if problem:
            w(f'<article class="finding problem" id="outcome-{e(o)}">\n<h3>{head}</h3>\n')
        else:
            w(
                f'<details class="finding fine" id="outcome-{e(o)}">\n'
                f"<summary><h3>{head}</h3></summary>\n"
            )
        w(f'<p class="wire">{e(OUTCOME_TEXT.get(o, ""))}</p>\n<ol class="evidence">\n')
        for r in recs[:MAX_EXAMPLES]:
            link = (
                f' <a class="ladderlink" href="#ladder-{r.id}">ladder ↓</a>'
                if r.id in ctx.ladder_ids
                else ""
            )
            w(
                f"<li>{ctx.conn_link(r)} <code>{e(r.client)} → {e(r.server)}</code>"
                f' <span class="file">{e(ctx.file(r))}</span>: {e(r.evidence)}{link}</li>\n'
            )
        w("</ol>\n")
        if len(recs) > MAX_EXAMPLES:
            w(
                f'<p class="more">…and {len(recs) - MAX_EXAMPLES:,} more in the connection table.</p>\n'
            )
        if problem:
            _errors_table(w, recs)
            causes, fixes = [], []
            for r in sorted(recs, key=lambda r: not r.keepalive_race):
                if r.cause and r.cause not in causes:
                    causes.append(r.cause)
                if r.fix and r.fix not in fixes:
                    fixes.append(r.fix)
            for c in causes[:2]:
                w(f'<p class="cause"><b>Likely cause:</b> {e(c)}</p>\n')
            for fx in fixes[:2]:
                w(f'<p class="fix"><b>Fix:</b> {e(fx)}</p>\n')
            anomalies = sorted({a for r in recs for a in r.anomalies})
            if anomalies:
                w(
                    '<p class="anom"><b>Anomalies:</b> '
                    + "; ".join(e(x) for x in anomalies[:5])
                    + (" …" if len(anomalies) > 5 else "")
                    + "</p>\n"
                )
            w("</article>\n")
        else:
            w("</details>\n")
    w("</section>\n")


def _error_variants(recs: list[ConnectionRecord], key: str) -> list[str]:
    """Distinct messages of one library, ignoring differences of address and port alone."""
    seen: dict[str, str] = {}
    for r in recs:
        v = r.client_errors.get(key)
        if not v:
            continue
        norm = v.replace(r.server_ip, "HOST").replace(str(r.server_port), "PORT")
        seen.setdefault(norm, v)
    return list(seen.values())


_NOTHING = {
    "client_reset": "nothing: the client aborted the connection itself",
    "server_reset": "nothing at once: the next request on this idle connection fails",
}


def _errors_table(w, recs: list[ConnectionRecord]) -> None:  # noqa: ANN001
    w('<table class="errors"><caption>What each Python client raises for this</caption>\n')
    for key, name in LIBS:
        vals = _error_variants(recs, key)
        cell = "<br>".join(f"<code>{e(v)}</code>" for v in vals[:2])
        if not cell:
            cell = f'<span class="muted">{_NOTHING.get(recs[0].outcome, "nothing")}</span>'
        if len(vals) > 2:
            cell += f' <span class="muted">(+{len(vals) - 2} more variants)</span>'
        w(f"<tr><th>{e(name)}</th><td>{cell}</td></tr>\n")
    errnos = sorted({r.client_errors.get("errno") for r in recs} - {None})
    if errnos:
        w(f"<tr><th>errno</th><td>{', '.join(e(x) for x in errnos)}</td></tr>\n")
    w("</table>\n")


# -- 3. timeline -----------------------------------------------------------------------------
def _timeline(w, ctx: _Context, max_lanes: int) -> None:  # noqa: ANN001
    w('<section id="timeline">\n<h2>3. Timeline</h2>\n')
    if not ctx.records:
        w("<p>No connections to draw.</p>\n</section>\n")
        return
    fig = figures.timeline(ctx.a, max_lanes=max_lanes, records=ctx.records)
    mode = getattr(fig, "pcapdiag", {}).get("mode")
    if mode == "aggregate":
        w(
            f"<p>{len(ctx.records):,} connections are more than {max_lanes:,} lanes can show:"
            " the chart counts connections per time bin by outcome, and marks each problem"
            " connection's close on its server's lane.</p>\n"
        )
    else:
        w(
            "<p>One lane per connection, grouped by server and sorted by start. Markers: shape"
            " for the kind of packet, colour for the side that sent it; a ring marks the packet"
            " that closed the connection; problem connections are tinted red.</p>\n"
        )
    svg = figures.svg_text(fig, inline=True, id_prefix="tl-")
    w(
        f'<figure class="fig timeline" role="img" aria-label="timeline of connections">{svg}</figure>\n'
    )
    w("</section>\n")


# -- 4. ladders ------------------------------------------------------------------------------
def _ladders(w, ctx: _Context) -> None:  # noqa: ANN001
    w('<section id="ladders">\n<h2>4. Ladder diagrams</h2>\n')
    if not ctx.ladder_recs:
        w("<p>No problem connections, so no ladder diagrams.</p>\n</section>\n")
        return
    not_drawn = len(ctx.problems) - len(ctx.ladder_recs)
    w(
        f"<p>The first {ctx.max_ladders} problem connections of each outcome, packet by packet:"
        " time since the connection's first packet on the left, frame number on the right, the"
        " closing packet in red."
    )
    if not_drawn > 0:
        w(
            f" {not_drawn:,} more problem connection{'s are' if not_drawn != 1 else ' is'} not drawn;"
            " <code>pcapdiag ladder CAPTURE --conn ID -o ladder.svg</code> draws any one."
        )
    w("</p>\n")
    for r in ctx.ladder_recs:
        fig = figures.ladder(r)
        svg = figures.svg_text(fig, inline=True, id_prefix=f"l{r.id}-")
        w(
            f'<figure class="fig ladder" id="ladder-{r.id}">{svg}'
            f"<figcaption>{_chip(r.outcome)} <b>#{r.id}</b> {e(r.evidence)}</figcaption></figure>\n"
        )
    w("</section>\n")


# -- 5. table --------------------------------------------------------------------------------
def _table(w, ctx: _Context) -> None:  # noqa: ANN001
    w('<section id="connections">\n<h2>5. Connections</h2>\n')
    if not ctx.records:
        w("<p>No connections.</p>\n</section>\n")
        return
    total = len(ctx.records)
    shown = len(ctx.rows)
    if shown < total:
        w(
            f'<p class="cut">Showing {shown:,} of {total:,} connections: all problems first'
            f" ({min(len(ctx.problems), shown):,} of {len(ctx.problems):,}), then the rest by start"
            " time. <code>pcapdiag analyze CAPTURE --format csv</code> lists every one.</p>\n"
        )
    else:
        w(f"<p>All {_plural(total, 'connection')}, problems first.</p>\n")
    w(
        "<p>Each row carries a Wireshark display filter (addresses, ports and the frame range;"
        " it does not depend on <code>tcp.stream</code>): select it, or click it to copy.</p>\n"
    )
    w(
        '<div id="table-controls" class="controls" hidden>'
        '<label>Filter <input id="filter" type="search" placeholder="address, outcome, request…"'
        ' autocomplete="off"></label> '
        '<label>Outcome <select id="outcome-filter"><option value="">any</option>'
    )
    for o, _recs in _present(ctx):
        w(f'<option value="{e(o)}">{e(o)}</option>')
    w(
        "</select></label> "
        '<label><input id="problems-only" type="checkbox"> problems only</label> '
        '<span id="shown-count" class="muted" aria-live="polite"></span></div>\n'
    )
    cols = [("#", "num"), ("client → server", ""), ("outcome", ""), ("closed by", ""),
            ("frame", "num"), ("start (s)", "num"), ("duration", "num"), ("req/resp", "num"),
            ("request · Wireshark filter", "")]  # fmt: skip
    w('<div class="tablewrap"><table id="conn-table" class="conns">\n<thead><tr>')
    for name, kind in cols:
        w(f'<th scope="col" data-type="{kind or "text"}">{e(name)}</th>')
    w("</tr></thead>\n<tbody>\n")
    for r in ctx.rows:
        prob = r.is_problem
        start = (r.start_ns - ctx.t0) / NS
        dur = r.end_ns - r.start_ns
        if ctx.multi:  # frame numbers are per file: name it with the id
            cells = [
                f'<td data-sort="{r.id}">{r.id}<br><span class="file">{e(ctx.file(r))}</span></td>'
            ]
        else:
            cells = [f"<td>{r.id}</td>"]
        cells.append(
            f'<td class="ends">{e(r.client)}<br>→ {e(r.server)}</td><td>{_chip(r.outcome)}</td>'
        )
        cells.append(f"<td>{e(r.closed_by)}</td>")
        cf = "" if r.close_frame is None else str(r.close_frame)
        cells.append(f"<td>{cf}</td>" if cf else '<td data-sort="-1"></td>')
        cells.append(f"<td>{start:.3f}</td>")
        cells.append(f'<td data-sort="{dur}">{e(_dur(dur))}</td>')
        cells.append(f"<td>{r.requests}/{r.responses}</td>")  # sorts by requests
        cells.append(
            f'<td class="req"><div>{_request_or_tls(r)}</div>'
            f'<code class="wsf">{e(wireshark_filter(r))}</code></td>'
        )
        cls = ' class="problem"' if prob else ""
        w(f'<tr id="conn-{r.id}"{cls} data-outcome="{e(r.outcome)}">{"".join(cells)}</tr>\n')
    w("</tbody></table></div>\n</section>\n")


def _request_or_tls(r: ConnectionRecord) -> str:
    """The last request line, or what TLS showed (version, SNI) when HTTP was encrypted."""
    if r.last_request:
        return e(label(r.last_request, 240))
    if not r.tls:
        return ""
    version = str(r.tls.get("version") or "")
    bits = [version if version.startswith(("TLS", "SSL")) else f"TLS {version}".strip()]
    if r.tls.get("sni"):
        bits.append(f"SNI {r.tls['sni']}")
    return e(label(" · ".join(bits), 240))


# -- 6. capture facts ------------------------------------------------------------------------
def _capture_facts(w, ctx: _Context) -> None:  # noqa: ANN001
    a = ctx.a
    w('<section id="capture">\n<h2>6. Capture facts</h2>\n')
    w(
        '<table class="facts"><thead><tr><th>file</th><th>format</th><th>packets</th>'
        "<th>TCP packets</th><th>first packet (UTC)</th><th>time span</th><th>link types</th>"
        "</tr></thead><tbody>\n"
    )
    for c in a.captures[:500]:
        first = figures._utc(c.first_ns) if c.first_ns is not None else "—"
        span = (
            _dur(c.last_ns - c.first_ns)
            if c.first_ns is not None and c.last_ns is not None
            else "—"
        )
        links = ", ".join(f"{e(k)} ({v:,})" for k, v in c.link_types.items()) or "—"
        w(
            f"<tr><td><code>{e(c.path)}</code></td><td>{e(c.format or '—')}</td>"
            f"<td>{c.packets:,}</td><td>{c.tcp_packets:,}</td><td>{e(first)}</td>"
            f"<td>{e(span)}</td><td>{links}</td></tr>\n"
        )
    w("</tbody></table>\n")
    if len(a.captures) > 500:
        w(f'<p class="cut">{len(a.captures) - 500:,} more capture files not listed.</p>\n')
    decrypted = sum(c.decrypted for c in a.captures)
    if decrypted:
        w(
            f"<p>TLS: {decrypted:,} connection{'' if decrypted == 1 else 's'} decrypted with "
            "tshark from the key log or the capture's embedded secrets; their verdicts come "
            "from the plaintext.</p>\n"
        )
    warnings = [(c.path, x) for c in a.captures for x in c.warnings]
    errors = [(c.path, c.error) for c in a.captures if c.error]
    errors += [("", str(x)) for x in a.errors if str(x) not in {m for _, m in errors}]
    if warnings:
        w('<h3>Warnings</h3>\n<ul class="warnings">\n')
        for _p, text in warnings[:50]:
            w(f"<li>{e(text)}</li>\n")
        if len(warnings) > 50:
            w(f"<li>…and {len(warnings) - 50:,} more.</li>\n")
        w("</ul>\n")
    else:
        w(
            "<p>No warnings: no truncated packets, gaps or unsupported link types were reported.</p>\n"
        )
    if errors:
        w('<h3>Errors</h3>\n<ul class="errors-list">\n')
        for _p, text in errors[:50]:
            w(f"<li>{e(text)} — connections read before the damage are still reported.</li>\n")
        w("</ul>\n")
    if a.idle_timeouts:
        w("<h3>Server idle timeouts measured</h3>\n<ul>\n")
        for t in a.idle_timeouts[:20]:
            w(f"<li>{e(t.sentence())}</li>\n")
        w("</ul>\n")
    w("</section>\n")


# -- static parts ----------------------------------------------------------------------------
_CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--red:#c92a2a;
--redbg:#fff0f0;--green:#2f9e44;--greenbg:#ebfbee;--amber:#b35c00;--blue:#1c7ed6}
*{box-sizing:border-box}
[hidden]{display:none!important}
html{color-scheme:light}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:0 24px}
header.top{padding-top:18px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h1{font-size:22px;margin:0 0 2px;word-break:break-all}
h2{font-size:19px;margin:30px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:18px 0 6px}
.sub{margin:0;color:var(--muted)}
nav ol{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;padding:0;margin:8px 0}
nav a{color:var(--blue);text-decoration:none}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
background:var(--soft);padding:1px 4px;border-radius:4px;word-break:break-word}
a{color:var(--blue)}
.verdict{margin-top:16px;border:2px solid var(--red);border-radius:8px;background:var(--redbg);
padding:4px 22px 12px}
.verdict.good{border-color:var(--green);background:var(--greenbg)}
.verdict h2{border:0;margin:10px 0 0;font-size:14px;text-transform:uppercase;letter-spacing:.06em;
color:var(--muted)}
.headline{font-size:20px;font-weight:650;margin:4px 0 10px}
.headline .kinds{font-weight:400;font-size:15px;color:var(--muted)}
ol.groups{padding-left:22px;margin:0}
li.group{margin:0 0 12px}
li.group p{margin:2px 0}
.claim{font-size:16px}
.saw,.cause,.where{color:#333}
.saw .lib{color:var(--muted)}
.todo{margin:14px 0 4px}
ul.fixes{margin:0;padding-left:22px}
ul.fixes li{margin:3px 0}
.for,.muted,.file,.closed{color:var(--muted);font-size:13px}
.note{color:var(--muted)}
.note.warn{color:#7a4a00}
.chip{display:inline-block;font:600 12px/1.6 ui-monospace,Menlo,Consolas,monospace;padding:0 7px;
border-radius:10px;background:#e7f5ea;color:#1b6b2c;white-space:nowrap}
.chip.p{background:#ffe3e3;color:#a51111}
.chip.c{background:#fff0d6;color:#8a4b00}
.chip.o{background:#e0efff;color:#135ca8}
.chips a{text-decoration:none;margin-right:8px;color:var(--fg)}
.finding{border:1px solid var(--line);border-radius:8px;padding:2px 16px 8px;margin:12px 0}
.finding.problem{border-left:5px solid var(--red)}
details.finding summary{cursor:pointer;list-style-position:outside}
details.finding summary h3{display:inline;font-size:15px}
.wire{margin:4px 0;color:#333}
ol.evidence{padding-left:20px;margin:6px 0}
ol.evidence li{margin:3px 0}
table{border-collapse:collapse}
table.errors{margin:8px 0;font-size:14px}
table.errors caption{text-align:left;font-weight:600;padding:2px 0}
table.errors th{text-align:left;padding:3px 12px 3px 0;vertical-align:top;white-space:nowrap;
font-weight:500;color:var(--muted)}
table.errors td{padding:3px 0}
.cause,.fix,.anom{margin:4px 0}
.fix b{color:var(--green)}
figure.fig{margin:10px 0;padding:0}
figure.fig svg{width:100%;height:auto;display:block}
figure.fig svg text{font-family:"DejaVu Sans",Verdana,Arial,sans-serif}
figure.ladder{max-width:800px;border:1px solid var(--line);border-radius:8px;padding:6px 8px;
margin:14px 0}
figcaption{font-size:13.5px;color:#333;padding:4px 4px 2px}
.controls{display:flex;flex-wrap:wrap;gap:8px 18px;align-items:center;margin:10px 0;
padding:8px 10px;background:var(--soft);border:1px solid var(--line);border-radius:6px}
.controls input[type=search]{width:280px;padding:4px 6px;font:inherit}
.controls select{font:inherit;padding:2px}
.tablewrap{overflow-x:auto;max-width:100%}
table.conns{font-size:12.5px;width:100%}
table.conns th,table.conns td{border-bottom:1px solid #eaeef2;padding:4px 8px;text-align:left;
vertical-align:top}
table.conns th{position:sticky;top:0;background:#f0f3f6;z-index:1}
table.conns th button{all:unset;cursor:pointer}
table.conns th button::after{content:" \\2195";color:#9aa4ad}
table.conns th[aria-sort=ascending] button::after{content:" \\25B2";color:var(--fg)}
table.conns th[aria-sort=descending] button::after{content:" \\25BC";color:var(--fg)}
table.conns tr.problem td:first-child{box-shadow:inset 4px 0 var(--red)}
table.conns td.req{min-width:22em;max-width:30em}
table.conns td.req div{word-break:break-all}
table.conns td.ends{white-space:nowrap}
table.conns td .file{display:inline-block;width:10em;word-break:break-all;font-size:11.5px}
table.conns .chip{font-size:11px}
table.conns td.nw{white-space:nowrap}
code.wsf{user-select:all;cursor:copy;font-size:11.5px;display:inline-block;margin-top:2px}
code.wsf.copied{background:#d3f9d8}
table.facts{font-size:13.5px}
table.facts th,table.facts td{border-bottom:1px solid #eaeef2;padding:4px 10px 4px 0;
text-align:left}
.cut{background:#fff8db;border:1px solid #f1d77a;border-radius:6px;padding:6px 10px}
footer{color:var(--muted);font-size:13px;margin-top:30px;padding-bottom:30px}
@media print{nav,.controls{display:none}}
"""

# The page's only script: sorting, filtering and copy-on-click, reading the DOM table (no
# data embedded). Without it the table is a plain table; CSP allows exactly this text.
_SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("conn-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
  var input = document.getElementById("filter");
  var outcome = document.getElementById("outcome-filter");
  var problems = document.getElementById("problems-only");
  var count = document.getElementById("shown-count");
  document.getElementById("table-controls").hidden = false;
  function apply() {
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var want = outcome.value, onlyProblems = problems.checked, shown = 0;
    rows.forEach(function (r, i) {
      var ok = (!want || r.getAttribute("data-outcome") === want) &&
        (!onlyProblems || r.classList.contains("problem")) &&
        terms.every(function (t) { return texts[i].indexOf(t) !== -1; });
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " rows shown";
  }
  input.addEventListener("input", apply);
  outcome.addEventListener("change", apply);
  problems.addEventListener("change", apply);
  apply();
  var heads = table.tHead.rows[0].cells;
  function key(row, col, numeric) {
    var cell = row.cells[col];
    var v = cell.getAttribute("data-sort");
    if (numeric) { return parseFloat(v === null ? cell.textContent : v); }
    return cell.textContent.toLowerCase();
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    button.title = "sort by " + th.textContent;
    th.textContent = "";
    th.appendChild(button);
    th.setAttribute("aria-sort", "none");
    button.addEventListener("click", function () {
      var numeric = th.getAttribute("data-type") === "num";
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      Array.prototype.forEach.call(heads, function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var order = rows.map(function (r, i) { return [key(r, col, numeric), i]; });
      order.sort(function (a, b) {
        if (a[0] < b[0]) { return -dir; }
        if (a[0] > b[0]) { return dir; }
        return a[1] - b[1];
      });
      var frag = document.createDocumentFragment();
      order.forEach(function (p) { frag.appendChild(rows[p[1]]); });
      body.appendChild(frag);
    });
  });
  body.addEventListener("click", function (ev) {
    var code = ev.target.closest ? ev.target.closest("code.wsf") : null;
    if (!code) { return; }
    var text = code.textContent;
    function done() {
      code.classList.add("copied");
      setTimeout(function () { code.classList.remove("copied"); }, 900);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var range = document.createRange();
      range.selectNodeContents(code);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { if (document.execCommand("copy")) { done(); } } catch (err) { /* selected */ }
    }
  });
})();
"""
