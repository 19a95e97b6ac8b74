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
