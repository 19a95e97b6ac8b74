"""Figures checked for what they show: lanes, markers, arrows, labels — not just that a
file was written. Built from the real sample captures, plus synthetic analyses for sizes
and crafted captures for hostile text."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import matplotlib
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from test_report_html import HOSTILE, hostile_capture, synthetic_analysis

import pcapdiag
from pcapdiag.cli import main
from pcapdiag.report import figures

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
RACE = SAMPLES / "server_close_after_request-stdlib-keepalive_race.pcap"
ICMP_ROUTER = SAMPLES / "icmp_unreachable-requests-host.pcap"


@pytest.fixture(scope="module")
def samples() -> pcapdiag.Analysis:
    return pcapdiag.analyze(SAMPLES)


def _gids(fig: Figure) -> Counter[str]:
    return Counter(a.get_gid() for a in fig.findobj() if a.get_gid())


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


# -- timeline ---------------------------------------------------------------------------------
def test_timeline_one_lane_per_connection(samples: pcapdiag.Analysis) -> None:
    fig = figures.timeline(samples)
    assert isinstance(fig, Figure)
    assert fig.pcapdiag["mode"] == "lanes"
    assert sorted(fig.pcapdiag["lanes"]) == sorted(r.id for r in samples.records)
    gids = _gids(fig)
    lanes = [g for g in gids if g.startswith("lane-") and not g.startswith("lane-label")]
    assert len(lanes) == len(samples.records)
    labels = [g for g in gids if g.startswith("lane-label-")]
    assert len(labels) == len(samples.records)
    # grouped by server, sorted by start within a server
    order = {r.id: r for r in samples.records}
    lanes_in_order = [order[i] for i in fig.pcapdiag["lanes"]]
    servers = [r.server for r in lanes_in_order]
    assert [s for i, s in enumerate(servers) if i == 0 or s != servers[i - 1]] == list(
        dict.fromkeys(servers)
    ), "each server's lanes are contiguous"
    for s in set(servers):
        starts = [r.start_ns for r in lanes_in_order if r.server == s]
        assert starts == sorted(starts)
    assert gids["server-header"] == len(set(servers))


def test_timeline_markers_for_each_event_kind(samples: pcapdiag.Analysis) -> None:
    fig = figures.timeline(samples)
    gids = _gids(fig)
    present = {
        (figures._EVENT_GROUP[k], str(side))
        for r in samples.records
        for _ts, _f, side, k, _d in r.events
        if k in figures._EVENT_GROUP
    }
    assert {g for g, _ in present} == set(figures.KIND_MARKERS)  # the samples have them all
    for group, side in present:
        assert gids[f"marker-{group}-{side}"] == 1, (group, side)
    assert gids["marker-icmp-network"] == 1  # routers' ICMP, coloured as the network's
    # problem lanes stand out: tinted, label in red and bold
    assert gids["problem-lane"] == len(samples.problems)
    for t in fig.findobj(matplotlib.text.Text):
        gid = t.get_gid() or ""
        if gid.startswith("lane-label-"):
            rid = int(gid.rsplit("-", 1)[1])
            rec = next(r for r in samples.records if r.id == rid)
            assert (t.get_color() == figures.OUTCOME_COLOURS["refused"]) == rec.is_problem
    # a legend naming every marker kind, and a labelled time axis in real units
    texts = _texts(fig)
    for _marker, name, _size in figures.KIND_MARKERS.values():
        assert name in texts
    assert any(t.startswith("time since first packet (s)") for t in texts)


def test_timeline_labels_do_not_overlap_up_to_300_lanes() -> None:
    a = synthetic_analysis(300)
    fig = figures.timeline(a)
    assert fig.pcapdiag["mode"] == "lanes" and len(fig.pcapdiag["lanes"]) == 300
    renderer = fig.canvas.get_renderer()
    boxes = sorted(
        (t.get_window_extent(renderer) for t in fig.findobj(matplotlib.text.Text)
         if (t.get_gid() or "").startswith("lane-label-")),
        key=lambda b: b.y0,
    )  # fmt: skip
    assert len(boxes) == 300
    for lower, upper in zip(boxes, boxes[1:], strict=False):
        assert lower.y1 <= upper.y0 + 0.5, (lower, upper)
    axes_left = fig.axes[0].get_window_extent(renderer).x0
    assert all(b.x1 <= axes_left and b.x0 >= 0 for b in boxes)  # inside the figure


def test_timeline_aggregates_beyond_max_lanes() -> None:
    a = synthetic_analysis(1200)
    fig = figures.timeline(a, max_lanes=300)
    assert fig.pcapdiag["mode"] == "aggregate"
    texts = _texts(fig)
    assert any("1,200 connections: more than 300" in t for t in texts)
    gids = _gids(fig)
    assert {f"hist-{o}" for o in a.by_outcome} <= set(gids)
    assert {f"marker-{o}" for o in {r.outcome for r in a.problems}} <= set(gids)
    lanes = fig.pcapdiag["lanes"]
    assert 0 < len(lanes) <= 26
    assert sum(1 for t in texts if "conns," in t) == len(lanes)


def test_timeline_of_nothing() -> None:
    fig = figures.timeline(pcapdiag.Analysis([], [], []))
    assert "No TCP connections" in " ".join(_texts(fig))


# -- ladder -----------------------------------------------------------------------------------
def _arrows(fig: Figure) -> list[FancyArrowPatch]:
    return [a for a in fig.findobj(FancyArrowPatch) if (a.get_gid() or "").startswith("arrow-")]


def test_ladder_of_the_keepalive_race() -> None:
    rec = pcapdiag.analyze(RACE).records[0]
    fig = figures.ladder(rec)
    arrows = _arrows(fig)
    drawn = [e for e in rec.events if e[3] in figures._ARROW_KINDS]
    assert len(arrows) == len(drawn) == fig.pcapdiag["arrows"] == 7
    assert [a.get_gid() for a in arrows] == [
        "arrow-syn", "arrow-synack", "arrow-request", "arrow-response", "arrow-fin-close",
        "arrow-request", "arrow-rst",
    ]  # fmt: skip
    texts = _texts(fig)
    close = fig.pcapdiag["close_label"]
    assert close.startswith(
        "server sent FIN at frame 8, 303.2 ms after the end of the response at frame 6"
    )
    assert "request at frame 10" in close
    assert any("frame 8" in t for t in texts if "server sent FIN" in t)
    for frame in ("1", "2", "4", "6", "8", "10", "11"):
        assert frame in texts  # the frame column
    assert "+0.000 ms" in texts and "+602.1 ms" in texts  # time offsets in ms
    assert "GET /again HTTP/1.1" in texts
    assert any("idle 0.303 s" in t for t in texts)
    # client → server arrows point right, server → client left
    client_x, server_x = 24.0, 76.0
    for a, e in zip(arrows, drawn, strict=True):
        (x0, _), (x1, _) = a._posA_posB
        assert (x0, x1) == ((client_x, server_x) if e[2] == "client" else (server_x, client_x))


def test_ladder_icmp_from_the_network() -> None:
    rec = pcapdiag.analyze(ICMP_ROUTER).records[0]
    assert rec.closed_by == "network"
    fig = figures.ladder(rec)
    gids = _gids(fig)
    assert gids["lifeline-network"] == 1
    icmp = [a for a in _arrows(fig) if a.get_gid().startswith("arrow-icmp")]
    assert len(icmp) == sum(1 for e in rec.events if e[3] == "icmp")
    for a in icmp:
        (x0, _), (x1, _) = a._posA_posB
        assert (x0, x1) == (50.0, 24.0)  # from the network's line to the client's
    assert "network\n10.99.1.1" in _texts(fig)
    assert fig.pcapdiag["close_label"].startswith(
        "a router (10.99.1.1) sent ICMP host unreachable at frame 2"
    )


@pytest.mark.parametrize(
    "name",
    ["refused-requests.pcap", "tls_alert-requests-tls12.pcap", "syn_timeout-requests.pcap",
     "truncated_response-requests.pcap", "client_close-httpx-tls.pcapng"],
)  # fmt: skip
def test_ladder_arrows_and_closing_label(name: str) -> None:
    for rec in pcapdiag.analyze(SAMPLES / name).records:
        fig = figures.ladder(rec)
        expected = sum(1 for e in rec.events if e[3] in figures._ARROW_KINDS)
        assert len(_arrows(fig)) == expected
        closing = [a for a in _arrows(fig) if a.get_gid().endswith("-close")]
        if rec.close_frame is None:
            assert closing == [] and fig.pcapdiag["close_label"] is None
        else:
            assert len(closing) == 1
            assert f"at frame {rec.close_frame}" in fig.pcapdiag["close_label"]
            assert _gids(fig)["close-label"] == 1


def test_ladder_elides_the_middle_of_long_connections() -> None:
    rec = synthetic_analysis(1).records[0]
    t, f = rec.events[2][0], rec.events[2][1]
    many = [(t + i * 1000, f, "client" if i % 2 else "server", "request" if i % 2 else "response", "x")
            for i in range(100)]  # fmt: skip
    rec.events = [*rec.events[:2], *many, rec.events[-1]]
    fig = figures.ladder(rec, max_events=40)
    assert len(_arrows(fig)) == 40
    assert any("more events not drawn" in t for t in _texts(fig))
    closing = [g for g in _gids(fig) if g.startswith("arrow-") and g.endswith("-close")]
    assert closing == [f"arrow-{rec.events[-1][3]}-close"]  # the closing packet is always drawn


# -- text safety and output -------------------------------------------------------------------
def test_hostile_text_stays_text_in_svg(tmp_path: Path) -> None:
    a = pcapdiag.analyze(hostile_capture(tmp_path))
    for fig in [figures.timeline(a)] + [figures.ladder(r) for r in a.records]:
        svg = figures.svg_text(fig)
        root = ET.fromstring(svg.encode("utf-8"))  # well-formed XML, control chars and all
        assert root.tag.endswith("svg")
        assert not any(el.tag.endswith(("script", "foreignObject", "image")) for el in root.iter())
        for el in root.iter():
            assert not any(k.startswith("on") for k in el.attrib)
        assert "\x1b" not in svg and "\x00" not in svg and "\u202e" not in svg
    ladder_svg = figures.svg_text(figures.ladder(a.records[1]))
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in ladder_svg
    text = "".join(
        el.text or "" for el in ET.fromstring(ladder_svg).iter() if el.tag.endswith("text")
    )
    assert "$x$.pcap" in text  # the file name: dollar signs, not mathtext
    assert "<script>window.__pwned=1</script>" in text
    assert "\x85" not in ladder_svg and "\x9b" not in ladder_svg  # C1 controls made visible


def test_dollar_signs_are_not_mathtext() -> None:
    rec = synthetic_analysis(1, text="$\\frac{1}{2}$").records[0]
    svg = figures.svg_text(figures.ladder(rec))
    text = "".join(el.text or "" for el in ET.fromstring(svg).iter() if el.tag.endswith("text"))
    assert "GET /$\\frac{1}{2}$0 HTTP/1.1" in text


def test_label_escapes_what_xml_cannot_hold() -> None:
    assert (
        figures.label("a\x00b\x1bc\u2028d\u202ee\ud800f") == "a\\x00b\\x1bc\\u2028d\\u202ee\\ud800f"
    )
    assert figures.label("plain $x$ <b>") == "plain $x$ <b>"
    assert figures.label("x" * 10, 5) == "xxxx…"
    assert figures.label(HOSTILE).isprintable()


def test_figures_ignore_usetex_and_never_touch_pyplot() -> None:
    code = (
        "import sys, matplotlib\n"
        "import pcapdiag\n"
        "from pcapdiag.report import figures\n"
        f"a = pcapdiag.analyze({str(RACE)!r})\n"
        "with matplotlib.rc_context({'text.usetex': True}):\n"  # LaTeX is not installed
        "    figures.svg_text(figures.timeline(a)); figures.svg_text(figures.ladder(a.records[0]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "print('ok')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_inline_svg_is_prefixed_and_stripped() -> None:
    rec = pcapdiag.analyze(RACE).records[0]
    svg = figures.svg_text(figures.ladder(rec), inline=True, id_prefix="l0-")
    assert svg.startswith("<svg") and "<?xml" not in svg and "xmlns" not in svg
    assert "<metadata" not in svg
    ids = [
        el.attrib["id"]
        for el in ET.fromstring(svg.replace("xlink:href", "href")).iter()
        if "id" in el.attrib
    ]
    assert ids and all(i.startswith("l0-") for i in ids)


# -- command line ----------------------------------------------------------------------------
def test_cli_timeline_svg_and_png(tmp_path: Path) -> None:
    svg, png = tmp_path / "t.svg", tmp_path / "t.png"
    files = [str(SAMPLES / "refused-requests.pcap"), str(RACE)]
    assert CliRunner().invoke(main, ["timeline", *files, "-o", str(svg)]).exit_code == 0
    assert CliRunner().invoke(main, ["timeline", *files, "-o", str(png)]).exit_code == 0
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (
        sum(
            1
            for el in root.iter()
            if el.attrib.get("id", "").startswith("lane-")
            and not el.attrib["id"].startswith("lane-label")
        )
        == 2
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_ladder(tmp_path: Path) -> None:
    out = tmp_path / "l.svg"
    res = CliRunner().invoke(main, ["ladder", str(RACE), "--conn", "0", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "server sent FIN at frame 8" in out.read_text()


def test_cli_ladder_unknown_id_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main, ["ladder", str(RACE), "--conn", "7", "-o", str(tmp_path / "l.svg")]
    )
    assert res.exit_code == 2
    assert "--conn 7: no such connection (the only one is #0)" in res.output
    assert not (tmp_path / "l.svg").exists()


def test_cli_figure_format_from_extension(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["timeline", str(RACE), "-o", str(tmp_path / "t.gif")])
    assert res.exit_code == 2 and "use .svg, .png or .pdf" in res.output
