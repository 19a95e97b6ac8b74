"""The bundled real captures against what really happened when they were recorded.

``sample_pcaps/manifest.json`` was written by ``tools/record_samples.py`` while it ran real
clients against real servers: the outcome of each connection comes from what the scenario
did (nothing listening, iptables dropping, the server closing after reading...), and the
exception is the one the client actually raised. Nothing in it was read off pcapdiag.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pcapdiag

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
MANIFEST = (
    json.loads((SAMPLES / "manifest.json").read_text())
    if (SAMPLES / "manifest.json").exists()
    else []
)


def _lib(client: str) -> str:
    name = client.split()[0].lower()
    if name.startswith(("urllib", "http.client", "socket", "stdlib")):
        return "stdlib"
    return name


# What TLS hides without its key log: the truth -> the best answer from the record layer.
# A response cut short inside TLS is a server FIN after server records.
HIDDEN_BY_TLS = {"truncated_response": "server_close"}

# Where the capture cannot hold the answer, the documented (limited) verdict instead.
KNOWN_LIMITS = {
    # A SYN answered by a forged RST, with no other packet from that server in the
    # capture: there is no server TTL to compare the RST's with, so it reads as a refusal
    # by the server.
    "refused-requests-router_rst.pcap": [("refused", "server")],
    "refused-httpx-v6-router_rst.pcap": [("refused", "server")],
}


def _embedded(entry: dict) -> bool:
    """The capture carries its TLS secrets itself (pcapng DSB)."""
    return bool((entry.get("capture") or {}).get("tls_secrets_embedded"))


def keylog_of(folder: Path, entry: dict) -> Path | None:
    keys = folder / (Path(entry["file"]).stem + ".keys")
    return keys if keys.exists() else None


def truth(conn: dict) -> tuple[str, str]:
    """The manifest's outcome in pcapdiag's words: a proxy that answered CONNECT with a
    non-2xx status (its own log says which) refused the tunnel, whoever closed after."""
    status = (conn.get("proxy") or {}).get("status")
    if status is not None and not 200 <= status < 300:
        return ("proxy_refused", "server")
    return (conn["outcome"], conn["closed_by"])


def hidden_h2(folder: Path, entry: dict) -> bool:
    """HTTP/2 inside TLS without keys: record turns are all there is, and HTTP/2's
    control frames (SETTINGS acks, WINDOW_UPDATE, GOAWAY) look like requests."""
    return (
        keylog_of(folder, entry) is not None
        and not _embedded(entry)
        and any(c.get("h2") for c in entry["connections"])
    )


def expected(folder: Path, entry: dict, *, keyed: bool) -> list[tuple[str, str]]:
    if entry["file"] in KNOWN_LIMITS:
        return KNOWN_LIMITS[entry["file"]]
    want = [truth(c) for c in entry["connections"]]
    if keyed or keylog_of(folder, entry) is None or _embedded(entry):
        return want
    return [(HIDDEN_BY_TLS.get(o, o), c) for o, c in want]


def check_outcomes(folder: Path, entry: dict, keylog: Path | None = None) -> None:
    """Outcome and closer of every connection, in order, as the manifest says."""
    a = pcapdiag.analyze(folder / entry["file"], keylog=keylog)
    assert not a.errors
    recs = sorted(a.records, key=lambda r: r.first_frame)
    got = [(r.outcome, r.closed_by) for r in recs]
    want = expected(folder, entry, keyed=keylog is not None)
    if keylog is None and hidden_h2(folder, entry):  # only who closed is on the wire
        got, want = [c for _, c in got], [c for _, c in want]
    assert got == want, "\n".join(r.evidence for r in recs)


def check_client_errors(folder: Path, entry: dict, keylog: Path | None = None) -> None:
    """The prediction for the recorded client names the exception it really raised."""
    lib = _lib(entry["client"])
    if keylog is None and expected(folder, entry, keyed=True) != expected(
        folder, entry, keyed=False
    ):
        pytest.skip("the exception depends on what TLS hides: checked with the key log")
    if keylog is None and hidden_h2(folder, entry):
        pytest.skip("HTTP/2 inside TLS: checked with the key log")
    a = pcapdiag.analyze(folder / entry["file"], keylog=keylog)
    recs = sorted(a.records, key=lambda r: r.first_frame)
    assert recs
    problems = [r for r in recs if r.is_problem]
    rec = problems[-1] if problems else recs[-1]
    predicted = rec.client_errors.get(lib)
    exc = entry.get("exception")
    if exc is None:
        assert predicted is None, f"{lib} raised nothing, we predicted {predicted!r}"
        return
    assert predicted, f"{lib} raised {exc['type']}, we predicted nothing"
    names = exc.get("chain") or [exc["type"]]
    assert any(name in predicted for name in names), (
        f"{lib} raised {names}, we predicted {predicted!r}"
    )
    errnos = [d.get("errno") for d in exc.get("chain_detail", []) if d.get("errno")]
    if errnos and rec.client_errors.get("errno") is not None:
        assert rec.client_errors["errno"] in errnos


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_outcomes_and_closers(entry: dict) -> None:
    check_outcomes(SAMPLES, entry)


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_client_errors_match_what_the_client_raised(entry: dict) -> None:
    check_client_errors(SAMPLES, entry)


def test_manifest_covers_every_outcome() -> None:
    if not MANIFEST:
        pytest.skip("no samples recorded")
    seen = {truth(c)[0] for e in MANIFEST for c in e["connections"]}
    assert set(pcapdiag.OUTCOMES) <= seen, set(pcapdiag.OUTCOMES) - seen
    assert {e["ip_version"] for e in MANIFEST} == {4, 6}
    assert len({_lib(e["client"]) for e in MANIFEST}) >= 2


def test_forged_refusal_is_told_by_another_connection_to_that_server() -> None:
    """The router-forged RST to a SYN (manifest: closed_by network) cannot be told alone;
    next to a capture of a normal exchange with the same server (recorded in the same
    topology, so the server's SYN-ACK TTL is known) it is attributed to the network."""
    for forged, normal in (
        ("refused-requests-router_rst.pcap", "client_close-requests.pcap"),
        ("refused-httpx-v6-router_rst.pcap", "client_close-httpx-v6.pcap"),
    ):
        a = pcapdiag.analyze([SAMPLES / forged, SAMPLES / normal])
        (rec,) = [r for r in a.records if r.capture.endswith(forged)]
        entry = next(e for e in MANIFEST if e["file"] == forged)
        assert (rec.outcome, rec.closed_by) == truth(entry["connections"][0]), rec.evidence
        assert "forged" in rec.evidence


def _frames(path: Path) -> list[tuple[int, bytes]]:
    """(time in ns, bytes) of every frame of a capture, read by pcapdiag's reader."""
    from pcapdiag import reader

    out = []
    with reader.open_capture(str(path)) as cap:
        for batch in cap.batches():
            for i in range(len(batch)):
                off, n = int(batch.offset[i]), int(batch.caplen[i])
                out.append((int(batch.ts_ns[i]), bytes(batch.data[off : off + n])))
    return out


def test_duplicate_frames_from_a_router_capture_are_skipped(tmp_path: Path) -> None:
    """``tcpdump -i any`` on a router records each forwarded packet twice: arriving, and
    leaving one TTL lower. Made from a real sample by writing every frame again 20 µs
    later with the TTL lowered: the verdicts and packet counts are the original's, and a
    warning says how many copies were skipped. (Frames closer than 20 µs now arrive out of
    order, as they do on a busy router; that is a warning of its own.)"""
    from pcapbuild import write_pcap

    src = SAMPLES / "server_close-requests.pcap"
    frames = _frames(src)
    packets = []
    for ts, pkt in frames:
        copy = bytearray(pkt)
        copy[14 + 8] -= 1  # IPv4 TTL, one hop later
        packets += [(ts / 1e9, pkt), ((ts + 20_000) / 1e9, bytes(copy))]
    out = write_pcap(tmp_path / "router-any.pcap", packets)
    once = pcapdiag.analyze(src)
    twice = pcapdiag.analyze(out)
    key = [(r.outcome, r.closed_by, r.client_packets, r.server_packets) for r in once.records]
    assert [
        (r.outcome, r.closed_by, r.client_packets, r.server_packets) for r in twice.records
    ] == key
    warnings = twice.captures[0].warnings
    assert any(f"{len(frames)} duplicate frame(s) skipped" in w for w in warnings)
    assert not once.captures[0].warnings


def test_unknown_link_type_frames_are_skipped_with_a_count(tmp_path: Path) -> None:
    """A pcapng with a second interface of a link type pcapdiag does not decode (USER0):
    its frames are skipped, counted in one warning, and the TCP of the real sample on the
    first interface is analysed as without them."""
    from test_reader import epb, idb, shb

    src = SAMPLES / "server_close-requests.pcap"
    out = tmp_path / "mixed-links.pcapng"
    body = [shb(), idb(1), idb(147)]  # interface 0: Ethernet, interface 1: USER0
    for ts, pkt in _frames(src):
        body += [epb(pkt, iface, units=ts // 1000) for iface in (0, 1)]
    out.write_bytes(b"".join(body))
    once, mixed = pcapdiag.analyze(src), pcapdiag.analyze(out)
    assert [(r.outcome, r.closed_by, r.client_packets) for r in mixed.records] == [
        (r.outcome, r.closed_by, r.client_packets) for r in once.records
    ]
    frames = mixed.captures[0].packets // 2
    assert any(
        f"{frames} frames of unsupported link type 147 skipped" in w
        for w in mixed.captures[0].warnings
    ), mixed.captures[0].warnings
