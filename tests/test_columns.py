"""Per-connection columns in a temporary file (``pcapdiag._columns``): they behave as the
``array.array`` they replace, the analysis of real recordings is the same with every
column in a file as with none, a temporary directory that cannot take them changes
nothing but memory, and the memory of a growing column stays flat."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapdiag
from pcapdiag import _columns

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
sys.path.insert(0, str(ROOT / "benchmarks"))
from profile_analysis import MIX_SOURCES, make_mix  # noqa: E402

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("frombytes"), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40)),
        st.tuples(st.just("zeros"), st.integers(0, 40)),
        st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("del"), st.integers(0, 10**6)),
        st.tuples(st.just("drop")),
        st.tuples(st.just("pickle")),
    ),
    max_size=60,
)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Columns go to files past 64 bytes, flush every 3 values, drop every 128 bytes
    (constants: nothing to reset between hypothesis's examples)."""
    monkeypatch.setattr(_columns, "FILE_BYTES", 64)
    monkeypatch.setattr(_columns, "TAIL", 3)
    monkeypatch.setattr(_columns, "DROP_BYTES", 128)
    monkeypatch.setattr(_columns, "broken", False)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, typecode=st.sampled_from(["i", "q"]))
def test_a_column_is_the_array_it_replaces(tiny: None, ops: list[Any], typecode: str) -> None:
    col, want = _columns.Column(typecode), array(typecode)
    for op, *args in ops:
        if op == "append":
            col.append(args[0])
            want.append(args[0])
        elif op == "frombytes":
            data = array(typecode, args[0]).tobytes()
            col.frombytes(data)
            want.frombytes(data)
        elif op == "zeros":  # over what a ``del`` left in the file too
            col.zeros(args[0])
            want.frombytes(bytes(args[0] * want.itemsize))
        elif op == "set" and want:
            i = args[0] % len(want) - (args[0] % 2) * len(want)  # negative ones too
            col[i] = args[1]
            want[i] = args[1]
        elif op == "del" and want:
            n = args[0] % (len(want) + 1)
            del col[n:]
            del want[n:]
        elif op == "drop":
            _columns.settle(1 << 30)
        elif op == "pickle":
            col = pickle.loads(pickle.dumps(col))
        assert len(col) == len(want)
    assert list(col) == list(want)
    assert col.view().tolist() == want.tolist()
    assert col.tobytes() == want.tobytes()
    assert [col[i] for i in range(-len(want), len(want))] == [*want, *want]


def test_float_columns_and_full(tiny: None) -> None:
    d = _columns.Column("d", [k / 7 for k in range(100)])
    d[5] = 2.5
    assert d[5] == 2.5 and d[-1] == 99 / 7 and d._arr is None
    f = _columns.full("q", 1000, -1)
    assert f.view().tolist() == [-1] * 1000


def _answer(paths: Any, jobs: int = 1) -> tuple[Any, ...]:
    a = pcapdiag.analyze(paths, jobs=jobs)
    return a.to_json(), a.idle_timeouts, [r.id for r in a.problems]


def test_every_column_in_a_file_gives_the_same_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every real recording, then a mix of them large enough for the fast lane and its
    byte ranges (``jobs=2``: the workers' columns travel to the parent as file names):
    the same JSON, idle timeouts (their medians come from the columns) and problems,
    retries and forged refusals among them."""
    big = tmp_path / "mix.pcap"
    make_mix(big, 60, [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()])
    want = [_answer(SAMPLES), _answer(big), _answer(big, jobs=2)]
    assert any(r.get("retry_of") is not None for r in want[0][0]["connections"])
    monkeypatch.setattr(_columns, "FILE_BYTES", 64)
    monkeypatch.setattr(_columns, "DROP_BYTES", 4096)
    made: list[str] = []
    real = _columns.tempfile.mkstemp

    def counted(*a: Any, **k: Any) -> tuple[int, str]:
        made.append(k.get("prefix", ""))
        return real(*a, **k)

    monkeypatch.setattr(_columns.tempfile, "mkstemp", counted)
    assert [_answer(SAMPLES), _answer(big), _answer(big, jobs=2)] == want
    assert len(made) > 20


def test_a_temporary_directory_that_cannot_take_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file can be made, or the disk fills while a column grows (``posix_fallocate``
    fails: a write into the mapping would have been a SIGBUS): the columns stay in, or
    come back to, memory, and the answer is the same."""
    big = tmp_path / "mix.pcap"
    make_mix(big, 30, [ROOT / s for s in MIX_SOURCES if (ROOT / s).exists()])
    want = _answer(big)
    monkeypatch.setattr(_columns, "FILE_BYTES", 64)

    def no_file(*a: Any, **k: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_columns, "broken", False)
    monkeypatch.setattr(_columns.tempfile, "mkstemp", no_file)
    assert _answer(big) == want
    assert _columns.broken
    monkeypatch.undo()
    monkeypatch.setattr(_columns, "FILE_BYTES", 64)
    monkeypatch.setattr(_columns, "broken", False)
    calls = [0]
    real = os.posix_fallocate

    def fills(fd: int, off: int, n: int) -> None:
        calls[0] += 1
        if calls[0] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, off, n)

    monkeypatch.setattr(_columns.os, "posix_fallocate", fills)
    assert _answer(big) == want
    assert _columns.broken and calls[0] > 5


FLAT = """
import numpy as np
from pcapdiag import _columns

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024

cols = [_columns.Column("q"), _columns.Column("I")]
block = np.arange(1 << 16, dtype=np.int64)
before = hwm()
for k in range(256):  # 16.8 M values: 134 MB and 67 MB of columns
    cols[0].frombytes((block + k).tobytes())
    cols[1].frombytes(block.astype(np.uint32).tobytes())
    cols[1].append(k)
total = 0
for c in cols:
    v = c.view()
    for lo in range(0, len(v), 1 << 20):
        total += int(v[lo : lo + (1 << 20)].sum())
        _columns.settle((1 << 20) * v.itemsize)
print(hwm() - before, len(cols[0]), len(cols[1]), total)
"""


def test_a_growing_column_keeps_memory_flat() -> None:
    """201 MB of columns written and read back through their views cost the process a
    few MB: what the file holds is handed back as it goes."""
    out = subprocess.run(
        [sys.executable, "-c", FLAT], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    grew, n0, n1, total = map(int, out)
    assert (n0, n1) == (1 << 24, (1 << 24) + 256)
    block = (1 << 16) * ((1 << 16) - 1) // 2
    want = 256 * block + (1 << 16) * sum(range(256)) + 256 * block + sum(range(256))
    assert total == want
    assert grew < 24, f"the process grew {grew} MB"
