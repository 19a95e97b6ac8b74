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


def check_outcomes(folder: Path, entry: dict) -> None:
    """Outcome and closer of every connection, in order, as the manifest says."""
    a = pcapdiag.analyze(folder / entry["file"])
    assert not a.errors
    recs = sorted(a.records, key=lambda r: r.first_frame)
    got = [(r.outcome, r.closed_by) for r in recs]
    want = [(c["outcome"], c["closed_by"]) for c in entry["connections"]]
    assert got == want, "\n".join(r.evidence for r in recs)


def check_client_errors(folder: Path, entry: dict) -> None:
    """The prediction for the recorded client names the exception it really raised."""
    lib = _lib(entry["client"])
    a = pcapdiag.analyze(folder / entry["file"])
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
    seen = {c["outcome"] for e in MANIFEST for c in e["connections"]}
    assert set(pcapdiag.OUTCOMES) <= seen, set(pcapdiag.OUTCOMES) - seen
    assert {e["ip_version"] for e in MANIFEST} == {4, 6}
    assert len({_lib(e["client"]) for e in MANIFEST}) >= 2
