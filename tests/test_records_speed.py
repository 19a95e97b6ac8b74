"""The fast record path gives what the simple one gave: the JSON line template is
``json.dumps(record.to_json(), ensure_ascii=False)`` byte for byte; a merge that adopts
the workers' compressed runs (and adopts their facts as they are) gives the records, ids and
facts of a heap merge that decodes every record; and the store stays correct when it
spills, merges runs, crosses processes or meets hashes from another process.

The reference implementations here are the code these replaced, kept small.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import io
import json
import os
import pickle
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pcapdiag
from pcapdiag import _store, explain
from pcapdiag.analysis import Analysis
from pcapdiag.explain import RETRY_WINDOW_NS, ConnectionRecord, CrossFacts
from pcapdiag.report import data

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"


@pytest.fixture(scope="module")
def samples() -> list[ConnectionRecord]:
    """Every sample's records (retries, forged refusals, TLS, HTTP/2, proxies, ICMP)."""
    return list(pcapdiag.analyze(SAMPLES).records)


@pytest.fixture
def small_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows after 3 objects, chunks of 4, runs merged beyond 3, chunks spilled early,
    walks by 7 ids."""
    monkeypatch.setattr(_store, "LIVE", _store._Run.held + 3)
    monkeypatch.setattr(_store, "CHUNK", 4)
    monkeypatch.setattr(_store, "MAX_RUNS", 3)
    monkeypatch.setattr(_store, "SPILL", _store._Blobs.held + 2_000)
    monkeypatch.setattr(_store, "_BLOCK", 7)  # walks cut in blocks of 7 ids
    monkeypatch.setattr(explain, "_RETRY_STEP", 5)  # the retries looked for by 5 positions


def _dumps(r: ConnectionRecord) -> str:
    return json.dumps(r.to_json(), ensure_ascii=False)


# -- the JSON line ------------------------------------------------------------------------
def test_line_is_json_dumps_of_to_json_on_every_sample(samples: list[ConnectionRecord]) -> None:
    assert len(samples) > 100
    for r in samples:
        assert data._line(r.id, _store.row_of(r)) == _dumps(r)


text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
scalar = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | text
number = st.none() | st.integers(0, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
nested = st.none() | st.dictionaries(text, scalar | st.lists(scalar, max_size=3), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    strings=st.tuples(text, text, text, text, text, text),
    ipv6=st.booleans(),
    close=st.none() | st.integers(0, 2**62),
    maybe=st.tuples(st.none() | text, st.none() | text, st.none() | text),
    numbers=st.tuples(number, number, number),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    dicts=st.tuples(nested, nested, nested, nested),
    errors=st.dictionaries(text, scalar, max_size=5),
    anomalies=st.lists(text, max_size=3),
    zeek=st.lists(st.tuples(st.integers(0, 2**62), text, text), max_size=3),
    times=st.tuples(st.integers(0, 2**62), st.integers(0, 2**40)),
)
def test_line_is_json_dumps_of_to_json_for_any_values(
    samples: list[ConnectionRecord],
    strings: tuple[str, ...],
    ipv6: bool,
    close: int | None,
    maybe: tuple[str | None, ...],
    numbers: tuple[Any, ...],
    flags: tuple[bool, ...],
    dicts: tuple[Any, ...],
    errors: dict[str, Any],
    anomalies: list[str],
    zeek: list[tuple[int, str, str]],
    times: tuple[int, int],
) -> None:
    """Escapes, unicode, None, NaN and infinities, bools, nested values, IPv6."""
    r = dataclasses.replace(
        samples[0],
        capture=strings[0],
        client_ip=strings[1],
        server_ip=strings[2],
        ip_version=6 if ipv6 else 4,
        evidence=strings[3],
        outcome=strings[4],
        zeek_history=strings[5],
        start_ns=times[0],
        end_ns=times[0] + times[1],
        close_ns=close,
        close_frame=None if close is None else 7,
        cause=maybe[0],
        fix=maybe[1],
        last_request=maybe[2],
        rtt_ms=numbers[0],
        idle_before_close_s=numbers[1],
        reused_after_idle_s=numbers[2],
        keepalive_race=flags[0],
        decrypted=flags[1],
        stale=flags[2],
        tls=dicts[0],
        icmp=dicts[1],
        h2=dicts[2],
        proxy=dicts[3],
        client_errors=errors,
        anomalies=anomalies,
        zeek_rows=zeek,
        retry_of=None if close is None else 3,
    )
    assert data._line(r.id, _store.row_of(r)) == _dumps(r)


def test_client_errors_cache_tells_1_from_true(samples: list[ConnectionRecord]) -> None:
    a = dataclasses.replace(samples[0], client_errors={"errno": 1})
    b = dataclasses.replace(samples[0], client_errors={"errno": True})
    c = dataclasses.replace(samples[0], client_errors={"errno": 1.0})
    for r in (a, b, c, a):
        assert data._line(r.id, _store.row_of(r)) == _dumps(r)


# -- the merge ----------------------------------------------------------------------------
def _old_merge(
    stores: list[list[ConnectionRecord]], replace: dict[int, ConnectionRecord], base: int = 0
) -> list[ConnectionRecord]:
    """The merge these replaced: a heap merge of sorted streams, a record per first
    frame, ids counting on from ``base``."""
    out: list[ConnectionRecord] = []
    last = None
    for rec in heapq.merge(*stores, key=lambda r: r.first_frame):
        if rec.first_frame == last:
            continue
        last = rec.first_frame
        out.append(dataclasses.replace(replace.get(rec.first_frame, rec), id=base + len(out)))
    return out


def _old_facts(records: list[ConnectionRecord]) -> list[Any]:
    """... and its facts, added one by one: the records patched, the idle timeouts."""
    facts = CrossFacts()
    for r in records:
        facts.add(r)
    facts.apply(records)
    return facts.idle_timeouts()


def _shuffled_arrival(records: list[ConnectionRecord], rng: random.Random) -> list:
    """Nearly sorted, as a tracker finishes them: each record late by a random amount."""
    keyed = [(i + rng.expovariate(0.05) * (rng.random() < 0.3), r) for i, r in enumerate(records)]
    return [r for _, r in sorted(keyed, key=lambda t: t[0])]


def _stores(
    records: list[ConnectionRecord], k: int, rng: random.Random
) -> tuple[list[_store.RecordStore], list[list[ConnectionRecord]]]:
    """``records`` dealt among ``k`` stores (the last one repeats a few of the others'
    first frames, as the fast lane does), and the same as sorted lists."""
    parts: list[list[ConnectionRecord]] = [[] for _ in range(k)]
    for r in records:
        parts[rng.randrange(k)].append(r)
    others = [r for p in parts[:-1] for r in p]
    parts[-1] += [dataclasses.replace(r, evidence="a copy") for r in rng.sample(others, 5)]
    parts[-1].sort(key=lambda r: r.first_frame)
    stores = []
    for part in parts:
        s = _store.RecordStore()
        for r in _shuffled_arrival(part, rng):
            s.append(dataclasses.replace(r))
        stores.append(s)
    return stores, parts


def _base(samples: list[ConnectionRecord], copies: int) -> list[ConnectionRecord]:
    """Sample records again and again (retries and forged refusals included), each
    with a first frame of its own (the samples' files all count from 1), in that order;
    one in 13 folded (it counts 3 connections)."""
    return [
        dataclasses.replace(
            r, first_frame=10 * i, last_frame=10 * i + 5, count=3 if i % 13 == 5 else r.count
        )
        for i, r in enumerate(r for _ in range(copies) for r in samples)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_adopt_gives_the_heap_merge(
    samples: list[ConnectionRecord], small_store: None, seed: int
) -> None:
    rng = random.Random(seed)
    base = _base(samples, 3)
    stores, parts = _stores(base, 3, rng)
    replace = {r.first_frame: dataclasses.replace(r, evidence="decrypted") for r in base[5:9]}
    want = _old_merge(parts, replace if seed == 3 else {})
    want_idle = _old_facts(want)
    facts = CrossFacts()
    got = _store.Records()
    got.adopt(stores, facts, replace if seed == 3 else None)
    facts.apply(got)
    assert got.compressed and len(got) == len(want)
    assert list(got) == want
    for i in rng.sample(range(len(got)), 200):  # out of order
        assert got[i] == want[i]
    assert got[-1] == want[-1] and got[3:9] == want[3:9]
    assert facts.idle_timeouts() == want_idle
    assert any(r.retry_of is not None for r in got)
    assert got.column("outcome") == [r.outcome for r in want]
    assert got.column("start_ns") == [r.start_ns for r in want]
    assert got.column("count") == [r.count for r in want] and max(got.column("count")) == 3
    # the summary from the columns (bincount) is the one counted record by record
    folded = dataclasses.replace(want[0], count=7)
    got[0], want[0] = folded, folded
    assert Analysis(got, [], []).summary == Analysis(want, [], []).summary
    rows = [(i, row[1:]) for i, row in got.rows()]  # a row's own id may be stale
    assert rows == [(r.id, _store.row_of(r)[1:]) for r in want]


def test_sets_one_after_the_other_count_ids_on(
    samples: list[ConnectionRecord], small_store: None
) -> None:
    rng = random.Random(7)
    base = _base(samples, 2)
    half = len(base) // 2
    got, facts = _store.Records(), CrossFacts()
    wants = []
    for chunk in (base[:half], base[half:]):
        stores, parts = _stores(chunk, 2, rng)
        got.adopt(stores, facts)
        wants += _old_merge(parts, {}, len(wants))
    facts.apply(got)
    idle = _old_facts(wants)
    assert list(got) == wants
    assert facts.idle_timeouts() == idle


def test_facts_from_another_process_are_recomputed(
    samples: list[ConnectionRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashes of strings made by a process not forked from this one (forkserver, Dask)
    are not comparable: the merge gathers the facts from the records instead."""
    rng = random.Random(4)
    base = _base(samples, 2)
    stores, parts = _stores(base, 2, rng)
    stores[0].seed += 1
    calls = []
    monkeypatch.setattr(CrossFacts, "extend", lambda *a: calls.append(a))
    facts, got = CrossFacts(), _store.Records()
    got.adopt(stores, facts)
    facts.apply(got)
    want = _old_merge(parts, {})
    idle = _old_facts(want)
    assert not calls
    assert list(got) == want and facts.idle_timeouts() == idle


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),  # part
            st.integers(1, 3),  # client and server pair
            st.integers(-3, 12),  # start: the position's time, give or take
            st.integers(0, 2),  # request (0: none)
            st.integers(0, 3),  # failed (0: no), closed this long after its start
            st.booleans(),  # left out (a copy another part holds)
        ),
        max_size=40,
    ),
    step=st.sampled_from([1, 2, 3, 7, 1 << 18]),
)
@example(  # a retry's start before the failure's window: the rows the window carried over miss it
    rows=[
        (0, 1, 4, 1, 0, False),
        (0, 1, 4, 0, 0, False),
        (0, 2, 0, 0, 0, False),
        (0, 1, 0, 1, 1, False),
    ],
    step=2,
)
def test_retries_windowed_are_the_sort_of_every_record(
    rows: list[tuple[int, int, int, int, int, bool]], step: int
) -> None:
    """The retries found a window of positions at a time (rows carried over between
    windows, starts that go back) are those of one sort of every record by pair, start
    and position, as ``CrossFacts.apply`` found them before."""
    s = 1_000_000_000  # a second: a window shorter than the retry's, gaps up to 3 s
    parts = [CrossFacts(ids=False) for _ in range(3)]
    kept = []  # (index over parts, pair, start, request, failed)
    sizes = [sum(1 for r in rows if r[0] == k) for k in range(3)]
    offs = [0, sizes[0], sizes[0] + sizes[1]]
    seen = [0, 0, 0]
    for pos_guess, (part, pair, jitter, req, fail, out) in enumerate(rows):
        p = parts[part]
        i = len(p._start)
        start = (pos_guess + jitter) * s // 2
        p._start.append(start)
        p._pair.append(pair)
        p._request.append(req)
        p._ttl_key.append(-1)
        p._ttl.append(0)
        if fail:
            p._fail(i, start + (fail - 1) * s, f"GET /{req}")
        if not out:
            kept.append((offs[part] + seen[part], pair, start, req, fail))
        seen[part] += 1
    rank = np.full(len(rows), -1, dtype=np.int32)  # each record's rank among those kept
    rank[[k[0] for k in kept]] = np.arange(len(kept))
    facts = CrossFacts()
    facts.extend(parts, rank, len(kept))
    want = []
    order = sorted(range(len(kept)), key=lambda j: (kept[j][1], kept[j][2], j))
    for a, b in zip(order, order[1:], strict=False):
        _, pair, start, req, fail = kept[a]
        _, pair2, start2, req2, _ = kept[b]
        gap = start2 - (start + (fail - 1) * s)
        if fail and pair == pair2 and req2 and req2 == req and 0 <= gap <= RETRY_WINDOW_NS:
            want.append((a, b, gap, f"GET /{req}"))
    old = explain._RETRY_STEP
    explain._RETRY_STEP = step
    try:
        got = list(facts._retries(facts._all()))
    finally:
        explain._RETRY_STEP = old
    assert sorted(got) == sorted(want)


def _merges_as_before(stores: list[Any], parts: Any) -> _store.Records:
    """The stores merged give the records the merge of lists gave."""
    facts, got = CrossFacts(), _store.Records()
    got.adopt(stores, facts)
    facts.apply(got)
    want = _old_merge(parts, {})
    _old_facts(want)
    assert list(got) == want
    return got


def _spilled(blobs: Any) -> bool:
    """Does a run hold chunks in the temporary file?"""
    return any(type(item) is tuple for item in blobs._items)


def test_a_full_temporary_directory_keeps_chunks_in_memory(
    samples: list[ConnectionRecord], small_store: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records' spill file cannot be written (``/dev/full``: ENOSPC, as a full
    ``TMPDIR`` gives): the chunks stay in memory and the answer is the same."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(
        _store.tempfile,
        "TemporaryFile",
        lambda **kw: open("/dev/full", "w+b"),  # noqa: SIM115
    )
    monkeypatch.setattr(_store._Spill, "current", None)
    monkeypatch.setattr(_store._Blobs, "broken", False)
    stores, parts = _stores(_base(samples, 2), 2, random.Random(5))
    assert _store._Blobs.broken  # a write was tried, and failed
    assert not any(_spilled(r.blobs) for s in stores for r in s.runs)
    _merges_as_before(stores, parts)


def test_a_store_travels_between_processes(
    samples: list[ConnectionRecord], small_store: None
) -> None:
    """A worker's store is pickled to the parent: spilled chunks go along."""
    rng = random.Random(5)
    stores, parts = _stores(_base(samples, 2), 2, rng)
    assert any(_spilled(r.blobs) for s in stores for r in s.runs)
    stores = pickle.loads(pickle.dumps(stores))
    got = _merges_as_before(stores, parts)
    again = pickle.loads(pickle.dumps(got))
    assert list(again) == list(got)


def test_a_forked_workers_store_travels_by_reference(
    samples: list[ConnectionRecord],
    small_store: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker of a local pool spills into the folder its parent shares: its store
    travels with the chunks' places in that file, and the parent reads them there."""
    monkeypatch.setattr(_store._Spill, "current", None)
    monkeypatch.setattr(_store, "SHARE", (str(tmp_path), -1))  # this process: a worker
    stores, parts = _stores(_base(samples, 2), 2, random.Random(5))
    assert any(_spilled(r.blobs) for s in stores for r in s.runs)
    blob = pickle.dumps(stores)
    monkeypatch.setattr(_store, "SHARE", None)  # ... and now the parent
    as_bytes = pickle.dumps(pickle.loads(blob))  # read there, sent on as bytes
    assert len(blob) < len(as_bytes) / 2
    monkeypatch.setattr(_store._Spill, "current", None)
    del stores
    gc.collect()  # the worker's stores are gone: the file stays for the parent
    got = pickle.loads(blob)
    spills = {r.blobs._spill for s in got for r in s.runs if _spilled(r.blobs)}
    assert spills and all(sp.foreign and sp.path.startswith(str(tmp_path)) for sp in spills)
    _merges_as_before(got, parts)


_POOL_BY_REFERENCE = """
import io, sys
import pcapdiag
from pcapdiag import _store
from pcapdiag.report import data
_store.LIVE, _store.CHUNK, _store.SPILL = 3, 4, 2_000  # as the small_store fixture's
one = pcapdiag.analyze(sys.argv[1])
two = pcapdiag.analyze(sys.argv[1], jobs=2)
print(any(r.blobs._spill is not None and r.blobs._spill.foreign
          for r in two.records._runs if any(type(i) is tuple for i in r.blobs._items)))
a, b = io.StringIO(), io.StringIO()
data.write_json(one, a)
data.write_json(two, b)
print(a.getvalue() == b.getvalue())
"""


def test_records_of_pool_workers_come_by_reference() -> None:
    """``analyze`` with a local pool: the workers' chunks are read from their files, and
    the analysis is the one of a single process. In a process of its own: the pool forks
    only where no other thread runs (a Dask cluster of an earlier test leaves some)."""
    out = subprocess.run(
        [sys.executable, "-c", _POOL_BY_REFERENCE, str(SAMPLES)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    came_by_reference, same_json = out.stdout.split()
    assert came_by_reference == "True", "no chunk came by reference"
    assert same_json == "True"


def test_one_spill_file_per_process(samples: list[ConnectionRecord], small_store: None) -> None:
    """Thousands of captures must not hold a file each: every store of the process
    spills to one, closed once no chunk is left in it."""
    stores, _ = _stores(_base(samples, 2), 3, random.Random(6))
    spills = {id(r.blobs._spill) for s in stores for r in s.runs if _spilled(r.blobs)}
    assert len(spills) == 1
    spill = _store._Spill.current
    assert spill is not None and spill.users > 1
    del stores
    gc.collect()
    assert spill.file.closed and _store._Spill.current is not spill


def test_first_frames_past_32_bits(samples: list[ConnectionRecord], small_store: None) -> None:
    """A store keeps first frames in 4 bytes until one needs 8 (a capture set of more
    than 2**32 frames): from there on, 8, and the merge is the heap merge."""
    rng = random.Random(9)
    base = [
        dataclasses.replace(
            r, first_frame=r.first_frame + 2**32 - 200, last_frame=r.last_frame + 2**32
        )
        for r in _base(samples, 1)
    ]
    stores, parts = _stores(base, 2, rng)
    assert {s.first.typecode for s in stores} == {"q"}  # both crossed
    _merges_as_before(stores, parts)
    assert _store.RecordStore().first.typecode == "I"


def test_input_far_from_sorted(samples: list[ConnectionRecord], small_store: None) -> None:
    """Reversed arrival makes a run per record: the two shortest runs are merged each
    time, so the store keeps ``MAX_RUNS`` runs and its order."""
    base = _base(samples, 1)
    s = _store.RecordStore()
    for r in reversed(base):
        s.append(dataclasses.replace(r))
    assert len(s.runs) <= _store.MAX_RUNS
    got, facts = _store.Records(), CrossFacts()
    got.adopt([s], facts)
    assert [r.first_frame for r in got] == [r.first_frame for r in base]


def test_changed_records_are_kept(samples: list[ConnectionRecord], small_store: None) -> None:
    got = _store.Records(samples)
    assert got.compressed
    r = got[len(samples) - 2]
    r.evidence = "changed"
    got[-2] = r
    assert got[len(samples) - 2].evidence == "changed"
    assert list(got)[-2].evidence == "changed"
    assert dict(got.rows())[r.id][ROW_EVIDENCE] == "changed"


ROW_EVIDENCE = _store.ROW.index("evidence")


# -- the JSON output ----------------------------------------------------------------------
def test_write_json_of_a_store_and_of_a_list(
    samples: list[ConnectionRecord], small_store: None
) -> None:
    analysis = pcapdiag.analyze(SAMPLES)
    assert isinstance(analysis.records, _store.Records) and analysis.records.compressed
    as_list = Analysis(list(analysis.records), analysis.captures, analysis.idle_timeouts)
    a, b = io.StringIO(), io.StringIO()
    data.write_json(analysis, a)
    data.write_json(as_list, b)
    assert a.getvalue() == b.getvalue()
    assert json.loads(a.getvalue()) == json.loads(json.dumps(analysis.to_json()))


def test_write_json_by_several_processes(
    samples: list[ConnectionRecord],
    small_store: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``jobs``: forked processes render the later parts of the list; the output is the
    one process's, into a text stream or a UTF-8 file, and a part whose process fails is
    rendered by the parent."""
    analysis = pcapdiag.analyze(SAMPLES)
    one = io.StringIO()
    data.write_json(analysis, one)
    monkeypatch.setattr(data, "PARALLEL_MIN", 1)
    monkeypatch.setattr(data, "_forkable", lambda: True)  # other tests leave idle threads
    n = len(analysis.records)  # and more processes asked for than lines: one line each
    for jobs in (2, 3, 7, n + 5):
        parts = data._parts(n, jobs)
        assert len(parts) == min(jobs, n) and all(lo < hi for lo, hi in parts)
        got = io.StringIO()
        data.write_json(analysis, got, jobs=jobs)
        assert got.getvalue() == one.getvalue(), jobs
    path = tmp_path / "out.json"
    with open(path, "w", encoding="utf-8") as f:
        data.write_json(analysis, f, jobs=3)
    assert path.read_text(encoding="utf-8") == one.getvalue()
    # into a pipe (the CLI's stdout piped on): the parts are copied by the kernel, each
    # more than a pipe holds, so in several steps
    assert len(one.getvalue()) > 4 * 65536
    rfd, wfd = os.pipe()
    got_bytes: list[bytes] = []
    reader = threading.Thread(target=lambda: got_bytes.append(os.fdopen(rfd, "rb").read()))
    reader.start()
    with open(wfd, "w", encoding="utf-8") as f:
        data.write_json(analysis, f, jobs=3)
    reader.join()
    assert got_bytes[0].decode("utf-8") == one.getvalue()
    parent, lines = os.getpid(), data._lines

    def failing(*a: Any) -> Any:
        if os.getpid() != parent:
            raise RuntimeError("a renderer fails")
        return lines(*a)

    monkeypatch.setattr(data, "_lines", failing)
    got = io.StringIO()
    data.write_json(analysis, got, jobs=3)
    assert got.getvalue() == one.getvalue()

    # into a file, a renderer that fails after writing some of its lines: the parent
    # copied those as they came, and writes the rest of the part (what it copied left out)
    def failing_late(recs: Any, lo: int, hi: int) -> Any:
        for k, line in enumerate(lines(recs, lo, hi)):
            if os.getpid() != parent and k == (hi - lo) // 2:
                raise RuntimeError("a renderer fails half-way")
            yield line

    skipped: list[int] = []
    skip = data._Skip
    monkeypatch.setattr(data, "_Skip", lambda raw, n: skipped.append(n) or skip(raw, n))
    monkeypatch.setattr(data, "_BLOCK_BYTES", 2000)  # a write every few lines
    monkeypatch.setattr(data, "_lines", failing_late)
    with open(path, "w", encoding="utf-8") as f:
        data.write_json(analysis, f, jobs=3)
    assert path.read_text(encoding="utf-8") == one.getvalue()
    assert len(skipped) == 2 and all(skipped)
    monkeypatch.setattr(data, "_lines", lines)

    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    got = io.StringIO()
    data.write_json(analysis, got, jobs=3)
    assert got.getvalue() == one.getvalue()
