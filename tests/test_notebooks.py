"""Run every notebook in ``notebooks/`` as Jupyter would, and fail on any cell error.

The notebooks end with assertions against ``sample_pcaps/manifest.json`` (what really
happened when the samples were recorded), so a wrong analysis fails here too. They are
stored without outputs; this test checks that as well.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart", "keepalive-race", "many-captures")
CELL_TIMEOUT_S = 120


def _load(name: str):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install '.[test]')")  # fmt: skip
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_every_notebook_is_tested() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name: str) -> None:
    nb = _load(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a cell was saved with its outputs"
            assert cell.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str) -> None:
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install '.[test]')")  # fmt: skip
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install '.[test]')")
    nb = _load(name)
    # The kernel imports this checkout's pcapdiag, installed or not.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}  # fmt: skip
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # working directory: notebooks/
        allow_errors=False,
    )
    t0 = time.perf_counter()
    client.execute(env=env, cwd=str(NOTEBOOKS))  # raises CellExecutionError on any error
    elapsed = time.perf_counter() - t0
    print(f"{name}.ipynb ran in {elapsed:.1f} s")

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "agree with the manifest" in text or "agrees with the manifest" in text, text[-2000:]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "no figure was displayed"
    if name == "quickstart":
        assert len(images) >= 2  # the timeline and the ladder
        html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
        assert any("pcapdiag analysis" in h for h in html)  # Analysis._repr_html_
        assert any("Likely cause" in h for h in html)  # the connection view
