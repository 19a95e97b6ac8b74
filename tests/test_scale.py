"""Scale-out gives the one-process answer: ``jobs=N`` (processes, by file and by
connection shard), a Dask cluster, and rotated files stitched into one capture.

The ground truth is always the same analysis of the same real capture in one piece, in
one process: splitting the work or the file must change nothing but frame offsets.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapdiag
from pcapdiag import reader
from pcapdiag.analysis import FOLD_KEEP
from pcapdiag.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_flood import write_flood  # noqa: E402
from bench_pipeline import replicate  # noqa: E402

# real recordings whose connections last long enough to be cut by a rotation
LONG = [
    "keepalive-idle-requests.pcap",
    "server_idle_close-requests-stale_pool.pcap",
    "h2_goaway-httpx-nginx-tls.pcap",
    "server_close-requests-tls13.pcap",
    "h2_goaway-httpx-h2c.pcap",
]


def _conns(a: pcapdiag.Analysis) -> list[dict[str, Any]]:
    """The connections as JSON, without the capture path (a set is named by its first file)."""
    out = []
    for c in a.to_json()["connections"]:
        c = dict(c)
        c.pop("capture")
        out.append(c)
    return out


def _sorted_replica(source: Path, dest: Path, copies: int) -> None:
    """A large capture of a real recording replayed ``copies`` times (every copy its own
    connections), rewritten in time order as tcpdump would have written it."""
    mixed = dest.with_suffix(".mixed.pcap")
    replicate(source, mixed, copies)
    recs: list[tuple[int, int, bytes]] = []
    with reader.open_capture(str(mixed)) as cap:
        for batch in cap.batches():
            for i in range(len(batch)):
                off, n = int(batch.offset[i]), int(batch.caplen[i])
                recs.append((int(batch.ts_ns[i]), i, bytes(batch.data[off : off + n])))
    recs.sort(key=lambda r: r[0])
    with open(dest, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, _, buf in recs:
            out.write(struct.pack("<IIII", ts // 10**9, ts % 10**9 // 1000, len(buf), len(buf)))
            out.write(buf)
    mixed.unlink()


def _split(source: Path, folder: Path, cuts: list[int]) -> list[Path]:
    """Cut a pcap at record indexes ``cuts`` into files named as ``tcpdump -C`` names them
    (cap.pcap, cap.pcap1, …)."""
    raw = source.read_bytes()
    header, pos, starts = raw[:24], 24, []
    little = raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    while pos + 16 <= len(raw):
        starts.append(pos)
        caplen = struct.unpack_from("<I" if little else ">I", raw, pos + 8)[0]
        pos += 16 + caplen
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(starts))), len(starts)]
    files = []
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        end = starts[b] if b < len(starts) else len(raw)
        path = folder / ("cap.pcap" + (str(k) if k else ""))
        path.write_bytes(header + raw[starts[a] : end])
        files.append(path)
    return files


# -- jobs ---------------------------------------------------------------------------------
def test_jobs_over_every_sample_give_the_one_process_answer() -> None:
    """116 real captures: parts by file across two processes."""
    one = pcapdiag.analyze(SAMPLES)
    two = pcapdiag.analyze(SAMPLES, jobs=2)
    assert two.to_json() == one.to_json()
    assert one.summary["connections"] > 100


def test_the_pool_and_tapes_are_let_go_of_while_the_merge_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jobs``: the pool is shut down and the tapes' folder removed by a thread while
    the merge runs, and ``analyze`` returns with that thread ended (the JSON renderers
    fork only with no other thread) and the folder gone; a failure to let go is raised
    in the caller's thread, after the merge."""
    import contextlib
    import tempfile
    import threading

    from pcapdiag import analysis

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")
    monkeypatch.setattr(reader, "BATCH", 500)  # byte ranges even in a small file
    monkeypatch.setattr(analysis, "_rangeable", lambda paths, n: n >= 2 and len(paths) == 1)
    merged: list[list[str]] = []
    merge = analysis.merge

    def spy(*a: Any, **k: Any) -> Any:  # what the merge ran beside
        merged.append([t.name for t in threading.enumerate()])
        return merge(*a, **k)

    monkeypatch.setattr(analysis, "merge", spy)
    folders: list[str] = []
    execute = analysis._execute

    def seen(parts: list[analysis.Part], *a: Any) -> Any:  # the byte ranges' tapes
        out = execute(parts, *a)
        folders.extend({f.part.folder for f in out if f.part.folder})
        return out

    monkeypatch.setattr(analysis, "_execute", seen)
    one = pcapdiag.analyze(SAMPLES / LONG[0]).to_json()
    two = pcapdiag.analyze(SAMPLES / LONG[0], jobs=2)
    assert two.to_json() == one
    assert folders and all(Path(f).parent == tmp_path for f in folders)
    assert "pcapdiag-cleanup" in merged[-1]
    assert [t.name for t in threading.enumerate()] == ["MainThread"]
    assert not list(tmp_path.glob("pcapdiag-tapes-*"))

    def fails() -> None:
        raise OSError("the folder could not be removed")

    stack = contextlib.ExitStack()
    stack.callback(fails)
    cleanup = analysis._Cleanup(stack)
    with pytest.raises(OSError, match="could not be removed"):
        cleanup.join()
    cleanup.join()  # raised once


@pytest.mark.parametrize("jobs", [2, 3])
def test_one_file_split_by_connection_gives_the_one_process_answer(
    tmp_path: Path, jobs: int
) -> None:
    """One capture, its connections shared among shards by 4-tuple; 71,400 packets, so
    more than one batch and the sweeps of closed connections run mid-capture."""
    big = tmp_path / "big.pcap"
    replicate(SAMPLES / "keepalive-idle-requests.pcap", big, 1700)
    one = pcapdiag.analyze(big)
    many = pcapdiag.analyze(big, jobs=jobs)
    assert many.to_json() == one.to_json()
    assert one.summary["connections"] == 5100


def test_shards_fold_a_flood_as_one_process_does(tmp_path: Path) -> None:
    """Each shard keeps its earliest SYN-only connections; the merge keeps the earliest of
    those and folds the rest: rows, counts and the quoted sample are the same."""
    path = tmp_path / "flood.pcap"
    write_flood(path, 2_000, servers=2)
    one = pcapdiag.analyze(path)
    three = pcapdiag.analyze(path, jobs=3)
    assert three.to_json() == one.to_json()
    assert len(one.records) == 2 * (FOLD_KEEP + 1)
    kept = [r for r in one.records if r.count == 1]
    folded = [r for r in one.records if r.count > 1]
    assert max(r.first_frame for r in kept) < min(r.first_frame for r in folded)


def test_tls_decryption_with_jobs(tmp_path: Path) -> None:
    """Decryption runs once per capture on what every shard saw."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    src = SAMPLES / "server_close-requests-tls13.pcap"
    keys = SAMPLES / "server_close-requests-tls13.keys"
    one = pcapdiag.analyze(src, keylog=keys)
    two = pcapdiag.analyze(src, keylog=keys, jobs=2)
    assert two.to_json() == one.to_json()
    assert two.captures[0].decrypted >= 1


def test_damage_is_reported_once_and_what_came_before_kept(tmp_path: Path) -> None:
    raw = bytearray((SAMPLES / "keepalive-idle-requests.pcap").read_bytes())
    pos = 24
    for _ in range(20):  # the 21st record claims 4 GB
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    struct.pack_into("<I", raw, pos + 8, 0xFFFFFFF0)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(bytes(raw))
    one = pcapdiag.analyze(cut)
    two = pcapdiag.analyze(cut, jobs=2)
    assert two.to_json() == one.to_json()
    assert len(two.errors) == 1 and str(two.errors[0]) == str(one.errors[0])
    assert one.records


def test_cli_jobs(tmp_path: Path) -> None:
    path = SAMPLES / "keepalive-idle-requests.pcap"
    one = CliRunner().invoke(main, ["analyze", str(path), "--format", "json"])
    two = CliRunner().invoke(main, ["analyze", str(path), "--format", "json", "-j", "2"])
    assert one.exit_code == two.exit_code == 0
    assert json.loads(two.output) == json.loads(one.output)
    bad = CliRunner().invoke(main, ["analyze", str(path), "--jobs", "-1"])
    assert bad.exit_code == 2


def test_the_side_by_side_benchmark_runs_two_whole_analyses(tmp_path: Path) -> None:
    """``bench_peers``' ceiling for ``--jobs 2``: two one-process runs of the capture at
    once, its packets counted twice; the pair fails if either run does, and leaves no
    file behind."""
    import bench_peers

    path = SAMPLES / "keepalive-idle-requests.pcap"
    tool = next(t for t in bench_peers.tools(str(path), 10, 10) if t.name == "pcapdiag x2")
    if not Path(tool.needs).exists():
        pytest.skip(f"{tool.needs} is not installed")
    spare = tmp_path / "tmp"
    spare.mkdir()
    env = {**os.environ, "TMPDIR": str(spare)}
    one = subprocess.run(
        [tool.needs, "analyze", str(path), "--format", "json"], capture_output=True
    )
    pair = subprocess.run(tool.argv, capture_output=True, env=env)
    assert one.returncode == pair.returncode == 0
    assert pair.stdout == one.stdout  # the first run's JSON; the second's went to a spare file
    assert not list(spare.iterdir())
    missing = [*tool.argv[:-1], str(tmp_path / "no.pcap")]
    assert subprocess.run(missing, capture_output=True, env=env).returncode != 0
    assert not list(spare.iterdir())
    row = bench_peers.run_tool(tool, packets=1000, timeout=120)
    assert (
        row.packets == 2000 and row.connections == json.loads(one.stdout)["summary"]["connections"]
    )
    rows = [
        bench_peers.Row("pcapdiag", "", packets_per_s=100.0),
        bench_peers.Row("pcapdiag --jobs 2", "", packets_per_s=150.0),
        bench_peers.Row("pcapdiag x2", "", packets_per_s=180.0),
    ]
    said = bench_peers._speedups(rows)
    assert "1.50x one process" in said and "1.80x one process" in said and "83%" in said
    assert bench_peers._speedups(rows[1:]) == ""


def test_compressed_records_give_the_same_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond ``LIVE`` records the store compresses chunks, merges runs and spills to a
    file; forced to do so after 3 records, every sample (several captures at once, retries and forged
    refusals among them) gives the same JSON, summary and idle timeouts."""
    from pcapdiag import _store

    want = pcapdiag.analyze(SAMPLES)
    monkeypatch.setattr(_store, "LIVE", 3)
    monkeypatch.setattr(_store, "CHUNK", 4)
    monkeypatch.setattr(_store, "MAX_RUNS", 2)
    monkeypatch.setattr(_store, "SPILL", 2_000)  # most chunks go to the temporary file
    got = pcapdiag.analyze(SAMPLES)
    assert isinstance(got.records, _store.Records) and got.records.compressed
    assert got.to_json() == want.to_json()
    assert got.idle_timeouts == want.idle_timeouts
    assert [r.id for r in got.problems] == [r.id for r in want.problems]
    assert any(r.retry_of is not None for r in got.records)
    assert got.connections.equals(want.connections)
    big = pcapdiag.analyze([SAMPLES / "keepalive-idle-requests.pcap"] * 1, jobs=2)
    assert big.to_json() == pcapdiag.analyze(SAMPLES / "keepalive-idle-requests.pcap").to_json()


# -- rotated files ------------------------------------------------------------------------
def test_tcpdump_rotation_is_one_capture(tmp_path: Path) -> None:
    """tcpdump -C cuts a real recording (replayed into 4 MB) into 1 MB files: analysed
    together they give the connections of the whole file, frame numbers included."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    whole = tmp_path / "whole.pcap"
    _sorted_replica(SAMPLES / "keepalive-idle-requests.pcap", whole, 800)
    ring = tmp_path / "ring"
    ring.mkdir()
    subprocess.run(
        ["tcpdump", "-r", str(whole), "-w", str(ring / "ring.pcap"), "-C", "1", "-Z", "root"],
        check=True,
        capture_output=True,
    )
    files = sorted(glob.glob(str(ring / "ring.pcap*")))  # as a shell orders ring.pcap*
    assert len(files) >= 4
    one = pcapdiag.analyze(whole)
    rot = pcapdiag.analyze(files)
    assert _conns(rot) == _conns(one)
    assert rot.summary == one.summary
    later = [c for c in rot.captures if c.stitched_to]
    assert len(later) == len(files) - 1
    caps = rot.to_json()["captures"]
    assert [c["frame_offset"] > 0 for c in caps] == [c["stitched_to"] is not None for c in caps]
    assert all(c.stitched_to == str(ring / "ring.pcap") and c.frame_offset > 0 for c in later)
    assert _conns(pcapdiag.analyze(files, jobs=2)) == _conns(one)
    # a connection across a seam: its packets are read back from both files
    seams = [c.frame_offset for c in later]
    across = next(r for r in rot.records if any(r.first_frame <= o < r.last_frame for o in seams))
    assert rot.packets(across.id).equals(one.packets(across.id))
    # analysed apart, connections that span a seam break in two halves
    apart = pcapdiag.analyze(files, stitch=False)
    assert apart.summary["connections"] > one.summary["connections"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(LONG),
    cuts=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=4),
)
def test_any_cut_of_a_recording_is_stitched_back(
    tmp_path_factory: pytest.TempPathFactory, name: str, cuts: list[int]
) -> None:
    folder = tmp_path_factory.mktemp("cut")
    src = SAMPLES / name
    files = _split(src, folder, cuts)
    keys = src.with_suffix(".keys")
    keylog = keys if keys.exists() else None
    got = pcapdiag.analyze(files, keylog=keylog)
    want = pcapdiag.analyze(src, keylog=keylog)
    # No connection is split or changed; a seam no connection spans is left alone, so
    # the file after it keeps its own frame numbers (and relative times).
    assert [_what(c) for c in _conns(got)] == [_what(c) for c in _conns(want)]
    if all(c.stitched_to for c in got.captures[1:]):
        assert _conns(got) == _conns(want)


def _what(c: dict[str, Any]) -> tuple[Any, ...]:
    """A connection without its frame numbers and relative times."""
    return tuple(c[k] for k in (
        "client", "server", "start", "end", "outcome", "closed_by", "close_time",
        "client_packets", "server_packets", "client_bytes", "server_bytes", "requests",
        "responses", "zeek_history", "client_errors",
    ))  # fmt: skip


def test_captures_recorded_one_after_the_other_are_not_stitched() -> None:
    """Names that differ only in digits, recorded a few seconds apart: no connection spans
    them, so each keeps its own frame numbers."""
    pairs = [
        ("tls_alert-requests-tls12.pcap", "tls_alert-requests-tls13.pcap"),
        ("server_close-requests-proxy407.pcap", "server_close-requests-proxy502.pcap"),
    ]
    for a, b in pairs:
        both = pcapdiag.analyze([SAMPLES / a, SAMPLES / b])
        assert not any(c.stitched_to for c in both.captures)
        alone = pcapdiag.analyze(SAMPLES / a).to_json()["connections"]
        assert both.to_json()["connections"][: len(alone)] == alone


# -- Dask ---------------------------------------------------------------------------------
def test_dask_cluster_gives_the_local_answer(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    big = tmp_path / "big.pcap"
    replicate(SAMPLES / "keepalive-idle-requests.pcap", big, 100)
    files = [big, *sorted(SAMPLES.glob("*.pcap"))[:20]]
    local = pcapdiag.analyze(files)
    single = pcapdiag.analyze(big)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert pcapdiag.analyze(files, client=client).to_json() == local.to_json()
        # one file on two workers: split by connection
        assert pcapdiag.analyze(big, client=client).to_json() == single.to_json()


def test_dask_splits_one_big_file_by_byte_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fast lane (forced on here, as a big capture turns it on), one pcap file
    on two Dask workers is split by byte ranges, then by connection for the exact
    tracker: the answer is the one of a local process without the lane."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("numba")
    from pcapdiag import _fastlane, analysis, reader

    big = tmp_path / "big.pcap"
    replicate(SAMPLES / "keepalive-idle-requests.pcap", big, 100)
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "0")
    exact = pcapdiag.analyze(big).to_json()
    monkeypatch.setenv("PCAPDIAG_FASTLANE", "1")  # before the workers start
    if _fastlane.kernels() is None:
        pytest.skip("numba cannot compile here")
    monkeypatch.setattr(reader, "BATCH", 1000)  # the parts carry it to the workers
    assert any(p.span for p in analysis.plan([str(big)], [[0]], 2))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert pcapdiag.analyze(big, client=client).to_json() == exact
