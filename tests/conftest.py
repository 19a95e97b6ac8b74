"""Shared test fixtures: where the peer corpora and bundled samples live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
SHARED = Path(os.environ.get("PCAPDIAG_SHARED", ROOT.parent / "shared"))
ZEEK = SHARED / "oracle" / "zeek"
WIRESHARK = SHARED / "oracle" / "wireshark"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (the peer corpora live in ../shared)")
    return path


@pytest.fixture(scope="session")
def zeek_dir() -> Path:
    return _need(ZEEK)


@pytest.fixture(scope="session")
def wireshark_dir() -> Path:
    return _need(WIRESHARK)


@pytest.fixture(scope="session", autouse=True)
def no_tshark_survives_the_suite():
    """Decryption runs tshark in many tests (any pcapng with secrets, any --keylog): not
    one process may outlive the suite."""
    yield
    import psutil

    left = [p for p in psutil.Process().children(recursive=True) if "tshark" in (p.name() or "")]
    for p in left:
        p.kill()
    assert not left, f"tshark processes survived the suite: {[p.pid for p in left]}"
