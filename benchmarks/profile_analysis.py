"""Where the full analysis spends its time, stage by stage, on one capture.

    python benchmarks/profile_analysis.py CAPTURE [--keylog FILE] [--top 25]
    python benchmarks/profile_analysis.py --make-mix /tmp/mix.pcap --copies 2000

Stages, each timed on its own (CPU time of this process, best of ``--repeat`` runs):

  read      ``reader.open_capture(...).batches()`` only
  decode    ``decode.decode_batch`` (and the duplicate filter, as ``analyze`` does)
  track     ``Tracker.feed`` + ``Tracker.close`` with an ``on_finished`` that only
            collects connections: the per-packet loop, the observers, Zeek's history and
            the classifier
  explain   ``explain.explain`` on every collected connection (collector paused, as in
            ``analyze``, where it runs inside ``Tracker.feed``)
  json      ``report.data.write_json`` of those records, as ``--format json`` writes them
  analyze   ``pcapdiag.analyze`` end to end (what a user gets; includes all of the above)

Then ``track`` runs once under cProfile and its own time is split by module (the
per-packet loop in ``connections``, the observers ``_http``/``_tls``/``_h2``, Zeek's
history in ``zeek``, the machine in ``classify``), followed by the top functions of
``track`` and ``explain`` by own time. cProfile inflates many small calls; the module
split is a guide, the stage times above are the measurement.

``--make-mix`` writes a capture made of many shifted copies of a set of real recordings
(the samples and a few Zeek traces; Ethernet/IPv4 TCP only), every copy a new connection,
each source contributing about the same number of packets, interleaved in time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import struct
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pipeline import new_client  # noqa: E402

from pcapdiag import analyze, decode, reader  # noqa: E402
from pcapdiag.analysis import Analysis  # noqa: E402
from pcapdiag.connections import Connection, Tracker  # noqa: E402
from pcapdiag.explain import explain  # noqa: E402
from pcapdiag.report.data import write_json  # noqa: E402

try:  # the collector pause of Tracker.feed (absent from older trees: compare with them)
    from pcapdiag.connections import _gc_paused  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    from contextlib import nullcontext as _gc_paused  # type: ignore[assignment]

MIX_SOURCES = (
    "sample_pcaps/keepalive-idle-requests.pcap",
    "sample_pcaps/server_close-requests-tls13.pcap",
    "sample_pcaps/client_close-aiohttp-tls13.pcap",
    "sample_pcaps/h2_goaway-httpx-h2c.pcap",
    "sample_pcaps/h2_goaway-httpx-tls.pcap",
    "sample_pcaps/truncated_response-requests-chunked.pcap",
    "sample_pcaps/truncated_response-requests.pcap",
    "sample_pcaps/client_timeout-requests.pcap",
    "sample_pcaps/client_timeout-httpx.pcap",
    "sample_pcaps/refused-requests.pcap",
    "sample_pcaps/syn_timeout-requests.pcap",
    "sample_pcaps/server_reset-requests-midresponse.pcap",
    "sample_pcaps/server_idle_close-requests-stale_pool.pcap",
    "sample_pcaps/client_reset-requests-stream.pcap",
    "sample_pcaps/client_reset-raw-linger.pcap",
    "sample_pcaps/server_reset-aiohttp.pcap",
    "sample_pcaps/server_close_after_request-stdlib-keepalive_race.pcap",
    "sample_pcaps/server_close_after_request-aiohttp.pcap",
    "../shared/oracle/zeek/traces/ssh.pcap",
    "../shared/oracle/zeek/traces/wikipedia.pcap",
    "../shared/oracle/zeek/traces/django-cloud.pcapng",
    "../shared/oracle/zeek/traces/irc-dcc-send.pcapng",
    "../shared/oracle/zeek/traces/get.pcap",
)


def _tcp_records(source: Path) -> list[tuple[int, bytes, int, bool]]:
    """(relative ts, frame, TCP header offset, sent by the client) of each Ethernet/IPv4
    TCP frame; the client is the side with the higher port, as bench_pipeline decides."""
    recs = []
    with reader.open_capture(str(source)) as cap:
        for batch in cap.batches():
            for i in range(len(batch)):
                off, n = int(batch.offset[i]), int(batch.caplen[i])
                recs.append((int(batch.ts_ns[i]), bytes(batch.data[off : off + n])))
    out = []
    t0 = recs[0][0] if recs else 0
    for ts, buf in recs:
        if len(buf) < 54 or buf[12:14] != b"\x08\x00" or buf[23] != 6:
            continue
        toff = 14 + (buf[14] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", buf, toff)
        out.append((ts - t0, buf, toff, sport > dport))
    return out


def make_mix(dest: Path, copies: int, sources: list[Path]) -> int:
    """Write the mixed capture; returns packets written. Copy ``c`` of source ``s`` has its
    client port shifted and the client address's second octet set to ``s``, so copies and
    sources never share a 4-tuple."""
    loaded = [(s, _tcp_records(s)) for s in sources]
    loaded = [(s, r) for s, r in loaded if r]
    per_source = copies * 40  # packets each source contributes, about
    out: list[tuple[int, bytes]] = []
    base0 = 1_700_000_000 * 10**9
    for si, (_, recs) in enumerate(loaded):
        n_copies = max(1, per_source // len(recs))
        step = 20_000_000 * copies // n_copies  # all sources span the same time
        for c in range(n_copies):
            base = base0 + c * step + si * 1_000
            for rel, buf, toff, from_client in recs:
                out.append((base + rel, new_client(buf, toff, from_client, c, si + 1)))
    out.sort(key=lambda r: r[0])
    with open(dest, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, b in out:
            fh.write(struct.pack("<IIII", ts // 10**9, ts % 10**9 // 1000, len(b), len(b)))
            fh.write(b)
    return len(out)


# ---------------------------------------------------------------------------------------


def _batches(path: str) -> list:
    with reader.open_capture(path) as cap:
        return list(cap.batches())


def _decoded(batches: list) -> list:
    out = []
    for batch in batches:
        dec = decode.decode_batch(batch)
        tcp = dec.tcp
        iface = batch.interface[decode.np.searchsorted(batch.frame, tcp.frame)]
        dup = decode.duplicates(tcp, iface)
        if dup.any():
            tcp = decode.take(tcp, decode.np.nonzero(~dup)[0])
        out.append((tcp, dec.icmp))
    return out


def _track(decoded: list) -> list[Connection]:
    conns: list[Connection] = []
    tracker = Tracker(conns.append)
    for tcp, icmp in decoded:
        tracker.feed(tcp, icmp)
    tracker.close()
    return conns


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


_GROUPS = {
    "connections.py": "track: per-packet loop + connection (connections.py)",
    "zeek.py": "track: Zeek history (zeek.py)",
    "classify.py": "track: machine (classify.py)",
    "_http.py": "track: HTTP/1.x observer (_http.py)",
    "_tls.py": "track: TLS observer (_tls.py)",
    "_h2.py": "track: HTTP/2 observer (_h2.py)",
}


def _by_module(stats: pstats.Stats) -> dict[str, float]:
    groups: dict[str, float] = defaultdict(float)
    for (file, _line, _fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        name = Path(file).name
        groups[_GROUPS.get(name, f"track: other ({name})")] += tt
    return dict(groups)


def _top(stats: pstats.Stats, n: int) -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(n)
    lines = buf.getvalue().splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    return "\n".join(lines[start:])


def profile(path: str, keylog: str | None, top: int, repeat: int) -> None:
    t_read, batches = _best(lambda: _batches(path), repeat)
    n = sum(len(b) for b in batches)  # type: ignore[union-attr]
    t_dec, decoded = _best(lambda: _decoded(batches), repeat)  # type: ignore[arg-type]
    n_tcp = sum(len(t) for t, _ in decoded)  # type: ignore[union-attr]
    t_track, conns = _best(lambda: _track(decoded), repeat)  # type: ignore[arg-type]
    t0 = int(batches[0].ts_ns[0]) if n else 0  # type: ignore[index]

    def explain_all() -> list:
        with _gc_paused():  # as in analyze(), where explain runs inside Tracker.feed
            return [explain(c, path, t0) for c in conns]  # type: ignore[union-attr]

    t_expl, records = _best(explain_all, repeat)

    def to_json() -> str:
        out = io.StringIO()
        write_json(Analysis(records, [], [], []), out)  # type: ignore[arg-type]
        return out.getvalue()

    t_json, _ = _best(to_json, repeat)
    t_all, result = _best(lambda: analyze(path, keylog=keylog), repeat)

    def json_out() -> str:
        out = io.StringIO()
        write_json(result, out)  # type: ignore[arg-type]
        return out.getvalue()

    t_json_all, _ = _best(json_out, repeat)
    print(f"capture: {path}: {n:,} packets, {n_tcp:,} TCP, {len(conns):,} connections")  # type: ignore[arg-type]
    rows = [
        ("read", t_read),
        ("decode", t_dec),
        ("track", t_track),
        ("explain", t_expl),
        ("json (records only)", t_json),
    ]
    for name, t in rows:
        print(f"  {name:<22}{t:8.3f} s  {n / max(t, 1e-9):>12,.0f} packets/s")
    total = t_read + t_dec + t_track + t_expl + t_json
    print(f"  {'sum of stages':<22}{total:8.3f} s  {n / max(total, 1e-9):>12,.0f} packets/s")
    print(f"  {'analyze()':<22}{t_all:8.3f} s  {n / max(t_all, 1e-9):>12,.0f} packets/s")
    print(
        f"  {'analyze() + json':<22}{t_all + t_json_all:8.3f} s  "
        f"{n / max(t_all + t_json_all, 1e-9):>12,.0f} packets/s"
    )
    if conns:
        per = 1e6 / len(conns)  # type: ignore[arg-type]
        print(f"  explain: {t_expl * per:.1f} µs per connection; track: "
              f"{t_track * 1e6 / max(n_tcp, 1):.2f} µs per TCP packet")  # fmt: skip

    prof = cProfile.Profile()
    prof.enable()
    _track(decoded)  # type: ignore[arg-type]
    prof.disable()
    st = pstats.Stats(prof)
    groups = _by_module(st)
    tot = sum(groups.values())
    print(f"\ntrack under cProfile: {tot:.3f} s of own time, by module")
    for name, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<58}{t:8.3f} s  {100 * t / max(tot, 1e-9):5.1f} %")
    print(f"\ntrack: top {top} functions by own time")
    print(_top(st, top))

    prof = cProfile.Profile()
    prof.enable()
    for c in conns:  # type: ignore[union-attr]
        explain(c, path, t0)
    prof.disable()
    print(f"\nexplain: top {top} functions by own time")
    print(_top(pstats.Stats(prof), top))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?")
    ap.add_argument("--keylog")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--make-mix", type=Path, help="write a mixed capture here and exit")
    ap.add_argument("--copies", type=int, default=2000)
    ap.add_argument("--source", type=Path, action="append", help="mix sources (repeatable)")
    args = ap.parse_args()
    if args.make_mix:
        sources = args.source or [ROOT / s for s in MIX_SOURCES]
        n = make_mix(args.make_mix, args.copies, sources)
        print(f"{args.make_mix}: {n:,} packets from {len(sources)} sources")
        return
    if not args.capture:
        ap.error("a capture is needed (or --make-mix)")
    profile(args.capture, args.keylog, args.top, args.repeat)


if __name__ == "__main__":
    main()
