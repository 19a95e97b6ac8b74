"""Bounded fuzzing in the suite, and replay of every input fuzzing ever crashed on."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pcapdiag
from pcapdiag.errors import CaptureError

HERE = Path(__file__).resolve().parent
FUZZ_SECONDS = int(os.environ.get("PCAPDIAG_FUZZ_SECONDS", "30"))
REGRESSIONS = sorted((HERE / "fuzz" / "regressions").glob("*"))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_fuzz_pipeline_for_a_bounded_time(tmp_path: Path) -> None:
    seeds = sorted(
        p for p in (HERE.parent / "sample_pcaps").glob("*.pcap*") if p.stat().st_size < 4000
    )
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    for p in seeds[:40]:
        (seed_dir / p.name).write_bytes(p.read_bytes())
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz" / "fuzz_capture.py"),
            f"-max_total_time={FUZZ_SECONDS}",
            "-rss_limit_mb=3072",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
            str(seed_dir),
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
    )
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("timeout-*"))
    assert proc.returncode == 0 and not crashes, proc.stderr[-4000:]
    assert "Done" in proc.stderr or "DONE" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_regression_inputs(path: Path, tmp_path: Path) -> None:
    target = tmp_path / "input.pcap"
    target.write_bytes(path.read_bytes())
    with contextlib.suppress(CaptureError):
        pcapdiag.analyze(target)
