"""The kernels built ahead of time (``pcapdiag._native``) give what numba's JIT kernels
give, on real captures, with no numba in the process and no call handed back; calls of
other types go to the JIT kernels; a build that failed is not tried again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
from pcapdiag import _native  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"

# One process: every sample (pcap and pcapng) and a replicated keep-alive capture (many
# batches, the tables grown): as pcap with one process and two (byte ranges), as pcapng
# with two (byte ranges), gzipped with one; the JSON of each.
_RUN = r"""
import gzip, json, struct, sys
from pathlib import Path
import pcapdiag
from pcapdiag import _native, analysis, reader
from tests.test_scale import replicate
reader.BATCH = 1000  # byte ranges and batches on small captures
samples, big = Path(sys.argv[1]), Path(sys.argv[2])
replicate(samples / "keepalive-idle-requests.pcap", big, 300)
raw = big.read_bytes()
assert raw[:4] == bytes.fromhex("d4c3b2a1")  # little-endian, microseconds
blocks = []
def block(kind, body):
    pad = bytes(-len(body) % 4)
    n = 12 + len(body) + len(pad)
    blocks.append(struct.pack("<II", kind, n) + body + pad + struct.pack("<I", n))
block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
block(1, struct.pack("<HHI", struct.unpack_from("<I", raw, 20)[0], 0, 262144))
pos = 24
while pos + 16 <= len(raw):
    sec, usec, cl, wl = struct.unpack_from("<IIII", raw, pos)
    us = sec * 1_000_000 + usec
    head = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, cl, wl)
    block(6, head + raw[pos + 16 : pos + 16 + cl])
    pos += 16 + cl
ng = big.with_suffix(".pcapng")
ng.write_bytes(b"".join(blocks))
gz = big.with_suffix(".pcap.gz")
gz.write_bytes(gzip.compress(raw))
out = {
    "samples": pcapdiag.analyze(samples).to_json(),
    "big": pcapdiag.analyze(big).to_json(),
    "big2": pcapdiag.analyze(big, jobs=2).to_json(),
    "ng2": pcapdiag.analyze(ng, jobs=2).to_json(),
    "gz": pcapdiag.analyze(gz).to_json(),
    "spans": all(any(p.span for p in analysis.plan([str(f)], [[0]], 2)) for f in (big, ng)),
}
out["numba"] = "numba" in sys.modules
out["fallbacks"] = _native.fallbacks
print(json.dumps(out))
"""


def _analyses(tmp_path: Path, native: bool) -> dict:
    env = dict(os.environ, PCAPDIAG_COMPILED="1", PCAPDIAG_FASTLANE="1")
    env["PCAPDIAG_NATIVE"] = "1" if native else "0"
    env["PYTHONPATH"] = str(ROOT)
    folder = tmp_path / ("native" if native else "jit")
    folder.mkdir()
    big = folder / "big.pcap"
    got = subprocess.run(
        [sys.executable, "-c", _RUN, str(SAMPLES), str(big)],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(got.stdout.replace(str(folder), "FOLDER"))


def _built() -> None:
    if _native.build() is None:
        if shutil.which("cc") is None:
            pytest.skip("no C compiler: the JIT kernels serve")
        raise AssertionError("the build failed: " + "".join(_failures()))


def _failures() -> list[str]:
    return [p.read_text() for f in _native.folders() for p in f.glob(_native.name() + ".failed")]


def test_built_kernels_give_the_jit_answers_without_numba(tmp_path: Path) -> None:
    _built()
    native = _analyses(tmp_path, native=True)
    jit = _analyses(tmp_path, native=False)
    assert native["spans"]  # -j 2 cut the pcap and the pcapng into byte ranges
    for key in ("samples", "big", "big2", "ng2", "gz"):
        assert native[key] == jit[key], key
    assert native["big"]["summary"]["connections"] == 900
    assert not native["numba"] and jit["numba"]
    assert native["fallbacks"] == 0


def test_calls_of_other_types_go_to_the_jit_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    _built()
    monkeypatch.setattr(_native, "_kernels", {})
    monkeypatch.setattr(_native, "_ext", None)
    monkeypatch.setenv("PCAPDIAG_NATIVE", "1")
    k = _native.kernels("_fastlane_kernels")
    assert isinstance(k, _native._Kernels)
    from pcapdiag import _fastlane_kernels as jit

    rng = np.random.default_rng(7)
    cols = [rng.integers(0, 2**63, 50, dtype=np.uint64) for _ in range(6)]
    cols[2], cols[5] = cols[2].astype(np.uint16), cols[5].astype(np.uint16)

    def hashed(kern: object, *c: np.ndarray) -> np.ndarray:
        out = np.zeros(len(c[0]), np.uint64)  # the kernels fill the caller's buffer
        kern.hashes(*c, out)  # type: ignore[attr-defined]
        return out

    want = hashed(jit, *cols)
    before = _native.fallbacks
    assert np.array_equal(hashed(k, *cols), want)
    assert _native.fallbacks == before  # the built types
    strided = [np.repeat(c, 2)[::2] for c in cols]  # not contiguous
    assert np.array_equal(hashed(k, *strided), want)
    as_int64 = [c.astype(np.int64) for c in cols]  # another dtype
    assert np.array_equal(hashed(k, *as_int64), hashed(jit, *as_int64))
    assert _native.fallbacks == before + 2
    # a table the kernel writes into, read-only: the JIT kernel refuses it as numba does
    table = np.full((8, 2), -1, np.int64)
    table.flags.writeable = False
    with pytest.raises(Exception):  # noqa: B017 (numba's typing error)
        k.rehash(table, table, np.zeros(64, np.int64), 8)


def test_a_failed_build_is_not_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCAPDIAG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PCAPDIAG_NATIVE", "1")
    monkeypatch.setattr(_native, "_kernels", {})
    monkeypatch.setattr(_native, "_ext", None)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the build's child fails
    k = _native.kernels("_render_kernels")
    from pcapdiag import _render_kernels

    assert k is _render_kernels  # the JIT module
    assert (tmp_path / (_native.name() + ".failed")).exists()

    def no_build(*a: object, **kw: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(subprocess, "run", no_build)
    monkeypatch.setattr(_native, "_kernels", {})
    monkeypatch.setattr(_native, "_ext", None)
    assert _native.kernels("_render_kernels") is _render_kernels
    assert _native.build(tmp_path) is None


def test_built_kernels_take_the_fast_paths_from_smaller_captures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading built kernels costs ~10 ms, not numba's ~0.6 s: a 17 MB capture takes the
    fast lane with them (the same answer as the exact tracker), not without."""
    import pcapdiag
    from pcapdiag import _fastlane
    from tests.test_scale import replicate

    big = tmp_path / "mid.pcap"
    replicate(SAMPLES / "keepalive-idle-requests.pcap", big, 3500)
    size = big.stat().st_size
    assert _fastlane.MIN_BYTES_BUILT <= size < _fastlane.MIN_BYTES
    monkeypatch.delenv("PCAPDIAG_FASTLANE", raising=False)
    lanes = []
    init = _fastlane.Lane.__init__

    def spy(self: _fastlane.Lane, *a: object, **kw: object) -> None:
        lanes.append(self)
        init(self, *a, **kw)

    monkeypatch.setattr(_fastlane.Lane, "__init__", spy)
    monkeypatch.setattr(_native, "ready", lambda: False)
    exact = pcapdiag.analyze(big).to_json()
    assert not lanes
    monkeypatch.setattr(_native, "ready", lambda: True)
    assert pcapdiag.analyze(big).to_json() == exact
    assert lanes
