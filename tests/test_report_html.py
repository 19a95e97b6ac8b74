"""The HTML report: structure, self-containment, size, and escaping of capture data.

The page is checked the way a careful reviewer would check it: parsed (not grepped) for
every tag, attribute and reference; filled with hostile text in every field a capture can
influence; and built for 10,000 connections to hold the size bound. ``test_browser.py``
then opens it in a real browser.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from pcapbuild import Conversation, tls_alert, tls_client_hello, write_pcap
from rich.console import Console

import pcapdiag
from pcapdiag.analysis import Analysis, CaptureSummary
from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.cli import main
from pcapdiag.explain import ConnectionRecord, IdleTimeout
from pcapdiag.report import html as report_html
from pcapdiag.report.figures import label
from pcapdiag.report.terminal import ReadProgress

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
RACE = SAMPLES / "server_close_after_request-stdlib-keepalive_race.pcap"
NS = 1_000_000_000
T0 = 1_700_000_000 * NS

# Strings a capture can carry (request line, Host header, SNI, file names...).
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror=window.__pwned=2>',
    "'><svg onload=window.__pwned=3>",
    "$\\frac{1}{2}$",
    "]]>",
    "</textarea></style></script><!--",
    "\x00\x07\x1b[31m\x85\u2028\u2029\u202e",
)
HOSTILE = "".join(PAYLOADS)


# -- captures and analyses built in code ------------------------------------------------------
def hostile_capture(folder: Path) -> Path:
    """Two connections whose request line, Host header and TLS SNI carry the payloads."""
    sni = HOSTILE
    tls = (
        Conversation(cport=40001, sport=443)
        .handshake()
        .client_sends(tls_client_hello(sni))
        .server_sends(tls_alert(40))
        .server_fin()
    )
    target = (
        b'/<script>window.__pwned=1</script>"><img/src=x/onerror=window.__pwned=2>'
        b"$\\frac{1}{2}$]]></textarea><!--\x85\x9b"
    )
    req = b"GET " + target + b" HTTP/1.1\r\nHost: " + HOSTILE.encode("utf-8") + b"\r\n\r\n"
    http = (
        Conversation(cport=40002, t=tls.t + 0.01)
        .handshake()
        .client_sends(req)
        .server_fin(dt=0.0002)
    )
    name = "h\"'><svg onload=window.__pwned=5>$x$.pcap"
    return write_pcap(folder / name, tls.packets + http.packets)


def pool_capture(folder: Path, total: int = 17, races: int = 4) -> Path:
    """``total`` connections to 10.0.0.2:8021; ``races`` of them closed right after a request."""
    packets = []
    failing = set(range(1, total, max(1, total // races))[:races])
    t = 1_700_000_000.0
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for i in range(total):
        c = Conversation(server="10.0.0.2", sport=8021, cport=41000 + i, t=t)
        c.handshake().client_sends(b"GET /item/%d HTTP/1.1\r\nHost: api\r\n\r\n" % i)
        if i in failing:
            c.server_fin(dt=0.0002)
        else:
            c.server_sends(ok, dt=0.002).client_fin(dt=0.001).server_fin()
        packets.extend(c.packets)
        t = c.t + 0.05
    return write_pcap(folder / "pool.pcap", packets)


def make_record(i: int, outcome: str, *, text: str = "", ipv6: bool = False) -> ConnectionRecord:
    """A record built directly (as ``explain`` would), for sizes no sample reaches."""
    start = T0 + i * 10_000_000
    close = start + 5_000_000
    frame = 4 * i + 1
    closer = "server" if outcome in PROBLEMS or outcome.startswith("server") else "client"
    problem = outcome in PROBLEMS
    events = [
        (start, frame, "client", "syn", ""),
        (start + 50_000, frame + 1, "server", "synack", ""),
        (start + 1_000_000, frame + 2, "client", "request", f"GET /{text}{i} HTTP/1.1"),
        (close, frame + 3, closer, "fin" if outcome != "refused" else "rst", text),
    ]
    return ConnectionRecord(
        id=i,
        capture=f"/captures/{text}big.pcap",
        ip_version=6 if ipv6 else 4,
        client_ip=f"fd00::{i % 60000:x}" if ipv6 else f"10.1.{i // 250 % 250}.{i % 250 + 1}",
        client_port=30000 + i % 30000,
        server_ip="fd00::2" if ipv6 else f"10.0.0.{i % 40 + 2}",
        server_port=8000 + i % 3,
        start_ns=start,
        end_ns=close + 1_000_000,
        outcome=outcome,
        closed_by=closer,
        close_ns=close,
        close_frame=frame + 3,
        evidence=f"The server sent FIN at frame {frame + 3} after the request 'GET /{text}{i}'.",
        client_packets=3,
        server_packets=2,
        client_bytes=100,
        server_bytes=0,
        requests=1,
        responses=0,
        handshake="full",
        first_frame=frame,
        last_frame=frame + 3,
        zeek_conn_state="SF",
        zeek_history="ShADFf",
        client_errors={
            "stdlib": f"http.client.RemoteDisconnected: {text}" if problem else None,
            "requests": f"requests.exceptions.ConnectionError: {text}" if problem else None,
            "aiohttp": f"aiohttp.ServerDisconnectedError: {text}" if problem else None,
            "httpx": f"httpx.RemoteProtocolError: {text}" if problem else None,
            "errno": None,
        },
        tls={"version": f"TLS 1.3{text}", "sni": f"{text}.example", "alerts": []} if text else None,
        icmp={"name": f"host unreachable{text}", "sender": f"10.9.9.9{text}"} if text else None,
        cause=f"Cause {text}" if problem else None,
        fix=f"Fix {text}" if problem else None,
        syn_count=1,
        last_request=f"GET /{text}{i} HTTP/1.1",
        anomalies=[f"HTTP: odd header {text}"] if text else [],
        events=events,
    )


def synthetic_analysis(n: int, *, text: str = "", problem_share: int = 10) -> Analysis:
    """``n`` records cycling through every outcome, one in ``problem_share`` a problem."""
    fine = [o for o in OUTCOMES if o not in PROBLEMS]
    problems = [o for o in OUTCOMES if o in PROBLEMS]
    recs = []
    for i in range(n):
        pool = problems if i % problem_share == 0 else fine
        recs.append(make_record(i, pool[(i // problem_share) % len(pool)], text=text))
    cap = CaptureSummary(
        path=f"/captures/{text}big.pcap",
        format="pcap",
        packets=4 * n,
        tcp_packets=4 * n,
        link_types={"EN10MB": 4 * n},
        first_ns=T0,
        last_ns=recs[-1].end_ns if recs else T0,
        warnings=[f"truncated packet at frame 7 {text}"] if text else [],
        error=f"damaged at byte 1234 {text}" if text else None,
    )
    idle = [IdleTimeout(f"10.0.0.2:8000{text}", 5.0, 3, f"uvicorn{text}")] if text else []
    return Analysis(recs, [cap], idle)


# -- a parser-based view of the page ---------------------------------------------------------
class Page(HTMLParser):
    """Every start tag with its attributes, the text, and the script bodies."""

    def __init__(self, doc: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(doc)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if a.get("id")]


ALLOWED_TAGS = {
    # the page
    "html", "head", "meta", "link", "title", "style", "body", "main", "header", "nav", "ol",
    "ul", "li", "a", "h1", "h2", "h3", "p", "section", "article", "details", "summary",
    "span", "strong", "b", "code", "br", "table", "caption", "thead", "tbody", "tr", "th",
    "td", "figure", "figcaption", "div", "label", "input", "select", "option", "footer",
    "script",
    # matplotlib's SVG (the HTML parser lower-cases names)
    "svg", "defs", "g", "path", "use", "text", "clippath", "rect", "image", "tspan",
    "lineargradient", "stop", "polyline", "polygon", "line", "circle", "ellipse", "pattern",
    "mask",
}  # fmt: skip


def check_inert(doc: str) -> Page:
    """The page's structure is ours: no foreign tags, handlers, URLs or extra scripts."""
    page = Page(doc)
    names = {t for t, _ in page.tags}
    assert names <= ALLOWED_TAGS, names - ALLOWED_TAGS
    for tag, attrs in page.tags:
        for key, value in attrs.items():
            assert not key.startswith("on"), (tag, key, value)
            if key in ("src", "href", "xlink:href", "action", "formaction", "poster", "srcset"):
                assert value is not None and value.startswith(("#", "data:")), (tag, key, value)
            if key == "style" and value:
                assert "url(" not in value or "url(#" in value, value
    assert len(page.scripts) == 1, "exactly one script, ours"
    assert [t for t, a in page.tags if t == "img"] == []
    assert "@import" not in doc
    assert not re.search(r"url\((?!#)", doc), "CSS url() other than a fragment"
    return page


# -- tests --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def race_html() -> str:
    return report_html.render(pcapdiag.analyze(RACE))


def test_sections_in_order(race_html: str) -> None:
    page = Page(race_html)
    ids = page.ids()
    order = [ids.index(sid) for sid, _ in report_html.SECTIONS]
    assert order == sorted(order), ids
    sections = [a.get("id") for t, a in page.tags if t == "section"]
    assert sections == [sid for sid, _ in report_html.SECTIONS]
    h2 = re.findall(r"<h2>(.*?)</h2>", race_html)
    assert [re.sub(r"^\d\. ", "", h) for h in h2] == [name for _, name in report_html.SECTIONS]


def test_csp_first_and_script_hash_matches(race_html: str) -> None:
    page = check_inert(race_html)
    head_tags = [t for t, _ in page.tags]
    metas = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert len(metas) == 1 and metas[0]["http-equiv"] == "Content-Security-Policy"
    # before any style, script, link or SVG
    csp_at = next(i for i, (t, a) in enumerate(page.tags) if a.get("http-equiv"))
    assert all(t in ("html", "head", "meta") for t in head_tags[:csp_at])
    csp = metas[0]["content"] or ""
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "data:"
    assert directives["style-src"] == "'unsafe-inline'"
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert directives["script-src"] == f"'sha256-{digest}'"


def test_no_external_references(race_html: str) -> None:
    check_inert(race_html)
    for attr in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', race_html):
        assert attr.startswith(("#", "data:")), attr
    assert "<svg" in race_html and "xmlns=" not in race_html  # inline SVG, no namespaces
    assert "<!DOCTYPE svg" not in race_html and "<?xml" not in race_html


def test_verdict_names_the_race_the_errors_and_the_timeout(race_html: str) -> None:
    page = Page(race_html)
    text = page.all_text
    verdict = text[text.index("1. Verdict") : text.index("2. Findings")]
    assert "The only connection failed" in verdict
    assert "closed by the server right after a request" in verdict
    assert "keep-alive race" in verdict
    assert "RemoteDisconnected" in verdict and "ServerDisconnectedError" in verdict
    assert "≈0.3 s" in verdict  # the server's idle timeout, measured
    assert "What to do" in verdict and "keepalive_expiry" in verdict
    assert "frame 8" in verdict


def test_verdict_groups_by_outcome_and_server(tmp_path: Path) -> None:
    a = pcapdiag.analyze(pool_capture(tmp_path))
    assert a.by_outcome.get("server_close_after_request") == 4, a.by_outcome
    text = Page(report_html.render(a)).all_text
    verdict = text[text.index("1. Verdict") : text.index("2. Findings")]
    assert "4 of 17 connections failed" in verdict
    assert (
        "4 of 17 connections to 10.0.0.2:8021 were closed by the server right after a request"
        in verdict
    )
    frames = [str(r.close_frame) for r in a.problems]
    assert f"frames {frames[0]}, {frames[1]}, {frames[2]}, {frames[3]}" in verdict


def test_no_problems_said_plainly() -> None:
    a = pcapdiag.analyze(SAMPLES / "keepalive-idle-requests.pcap")
    assert not a.problems
    text = Page(report_html.render(a)).all_text
    verdict = text[text.index("1. Verdict") : text.index("2. Findings")]
    assert "No connection failed" in verdict
    assert "closes idle connections after" in verdict
    assert "No problem connections, so no ladder diagrams." in text


def test_findings_problems_first_with_client_errors() -> None:
    a = pcapdiag.analyze(
        [SAMPLES / "refused-requests.pcap", SAMPLES / "keepalive-idle-requests.pcap"]
    )
    doc = report_html.render(a)
    refused = doc.index('id="outcome-refused"')
    idle = doc.index('id="outcome-server_idle_close"')
    assert refused < idle
    block = doc[refused:idle]
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in block
    for lib in ("http.client / urllib", "requests", "aiohttp", "httpx", "errno"):
        assert f"<th>{lib}</th>" in block
    assert doc.rfind("<details", 0, idle) > refused  # fine outcomes folded, no script needed


def test_table_rows_and_wireshark_filters() -> None:
    a = pcapdiag.analyze([SAMPLES / "refused-requests.pcap", SAMPLES / "refused-httpx-v6.pcap"])
    doc = report_html.render(a)
    page = Page(doc)
    rows = [
        attrs for t, attrs in page.tags if t == "tr" and (attrs.get("id") or "").startswith("conn-")
    ]
    assert len(rows) == len(a.records) == 2
    v4 = next(r for r in a.records if r.ip_version == 4)
    v6 = next(r for r in a.records if r.ip_version == 6)
    f4 = report_html.wireshark_filter(v4)
    assert f4 == (
        f"ip.addr=={v4.client_ip} && ip.addr=={v4.server_ip} && tcp.port=={v4.client_port}"
        f" && tcp.port=={v4.server_port} && frame.number>=1 && frame.number<=2"
    )
    assert report_html.wireshark_filter(v6).startswith(f"ipv6.addr=={v6.client_ip} && ipv6.addr==")
    assert "tcp.stream" not in f4
    assert html.escape(f4) in doc


def test_every_capture_field_is_escaped() -> None:
    """Hostile text in every field a capture can reach, including the ones that are
    normally safe (addresses), never becomes markup; the literal text is there."""
    a = synthetic_analysis(24, text=HOSTILE, problem_share=2)
    for r in a.records:
        r.server_ip = r.server_ip + HOSTILE
        r.client_ip = r.client_ip + HOSTILE
    doc = report_html.render(a, title=HOSTILE)
    page = check_inert(doc)
    assert "__pwned" not in page.scripts[0]
    text = page.all_text
    visible = label(HOSTILE)
    assert visible in text  # once decoded, the text reads exactly as the capture had it
    for raw in ("\x00", "\x07", "\x1b", "\x85", "\u2028", "\u2029", "\u202e"):
        assert raw not in doc, repr(raw)
    assert "\\x1b" in text and "\\u202e" in text  # made visible instead
    r0 = a.records[0]
    for value in (r0.capture, r0.evidence, r0.last_request, r0.tls["sni"], r0.icmp["sender"],
                  r0.anomalies[0], r0.cause, r0.fix, r0.client_errors["httpx"], r0.server,
                  a.captures[0].warnings[0], a.captures[0].error, a.idle_timeouts[0].server):  # fmt: skip
        assert (
            html.escape(label(value), quote=True) in doc
            or html.escape(label(value)[:100], quote=True) in doc
        ), value


def test_hostile_capture_renders_as_text(tmp_path: Path) -> None:
    path = hostile_capture(tmp_path)
    a = pcapdiag.analyze(path)
    assert [r.outcome for r in a.records] == ["tls_alert", "server_close_after_request"]
    assert HOSTILE in a.records[0].tls["sni"]
    doc = report_html.render(a)
    page = check_inert(doc)
    text = page.all_text
    assert label(HOSTILE) in text  # the SNI, in the table
    assert "<script>window.__pwned=1</script>" in text  # the request line
    assert "onload=window.__pwned=5" in text  # the file name
    assert "$\\frac{1}{2}$" in text


def test_size_bound_for_ten_thousand_connections() -> None:
    a = synthetic_analysis(10_000)
    buf = io.StringIO()
    report_html.write_report(a, buf)
    doc = buf.getvalue()
    size = len(doc.encode("utf-8"))
    assert size < 2_000_000, size
    page = check_inert(doc)
    rows = [
        t for t, attrs in page.tags if t == "tr" and (attrs.get("id") or "").startswith("conn-")
    ]
    assert len(rows) == report_html.MAX_ROWS
    text = page.all_text
    assert "Showing 2,000 of 10,000 connections" in text
    assert "10,000 connections: more than 300" in text  # the timeline says it aggregated
    ladders = [
        a for t, a in page.tags if t == "figure" and (a.get("id") or "").startswith("ladder-")
    ]
    n_problem_outcomes = len({r.outcome for r in a.problems})
    assert len(ladders) == report_html.MAX_LADDERS * n_problem_outcomes
    # problems first: the first 1,000 rows are the 1,000 problems
    first = re.findall(r'<tr id="conn-\d+"( class="problem")?', doc)[:1000]
    assert all(first)


def test_empty_analysis() -> None:
    a = Analysis([], [CaptureSummary(path="empty.pcap", format="pcap")], [])
    doc = report_html.render(a)
    check_inert(doc)
    assert "No TCP connections were found" in Page(doc).all_text


# -- command line ----------------------------------------------------------------------------
def test_cli_analyze_html_keeps_stdout(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["analyze", str(RACE), "--format", "json", "--html", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.lstrip().startswith("{")  # stdout is still the JSON, nothing else
    assert "\x1b" not in res.output
    doc = out.read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>") and "server_close_after_request" in doc


def test_cli_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    files = [SAMPLES / "refused-requests.pcap", SAMPLES / "tls_alert-requests-tls12.pcap"]
    res = CliRunner().invoke(main, ["report", *map(str, files), "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = out.read_text(encoding="utf-8")
    check_inert(doc)
    assert "refused" in doc and "tls_alert" in doc
    assert CliRunner().invoke(main, ["report", str(files[0])]).exit_code == 2  # -o required


def test_cli_report_unwritable(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main, ["report", str(RACE), "-o", str(tmp_path / "missing-dir" / "r.html")]
    )
    assert res.exit_code == 1 and "cannot write" in res.output and "Traceback" not in res.output


# -- progress bar ------------------------------------------------------------------------------
def test_progress_shows_after_delay_on_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with ReadProgress([("a.pcap", 100), ("b.pcap", 100)], console=console, delay=0) as cb:
        cb("a.pcap", 5000, 100)
        cb("b.pcap", 9000, 100)
        assert cb.shown
    out = buf.getvalue()
    assert "reading" in out and "b.pcap" in out and "packets" in out


def test_progress_silent_for_quick_reads() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with ReadProgress([("a.pcap", 100)], console=console, delay=5.0) as cb:
        cb("a.pcap", 10, 100)
        assert not cb.shown
    assert buf.getvalue() == ""


def test_progress_drives_from_analyze() -> None:
    calls: list[tuple[str, int, int]] = []
    pcapdiag.analyze(RACE, progress=lambda p, n, s: calls.append((p, n, s)))
    assert calls and calls[-1][1] == 11 and calls[-1][2] == RACE.stat().st_size


def test_cli_no_progress_when_not_a_terminal() -> None:
    res = CliRunner().invoke(main, ["analyze", str(RACE)])
    assert res.exit_code == 0
    assert "reading" not in res.output and "\x1b" not in res.output


def test_damaged_capture_is_flagged_in_the_verdict(tmp_path: Path) -> None:
    src = (SAMPLES / "client_close-httpx-tls.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(src[:5000])  # ends inside a record
    a = pcapdiag.analyze(cut)
    assert a.captures[0].warnings
    text = Page(report_html.render(a)).all_text
    verdict = text[text.index("1. Verdict") : text.index("2. Findings")]
    assert "Mind the capture" in verdict and "capture ends inside a record" in verdict
    assert "capture ends inside a record" in text[text.index("6. Capture facts") :]
