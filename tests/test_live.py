"""Record fresh captures now, with real clients and servers, and analyse them.

The bundled samples were recorded once; this test records a handful of the same
scenarios again on this machine (network namespaces, tcpdump, nginx, the misbehaving
servers in ``tools/samples/``) and holds pcapdiag to what the clients raise today. It needs
root, ``ip``, ``tcpdump``, ``iptables``, ``nginx`` and ``openssl`` (``tools/setup_test_env.sh``
installs them) and is skipped, with the reason, where they are missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_samples import check_client_errors, check_outcomes

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "refused-requests",
    "syn_timeout-httpx-v6",
    "icmp_unreachable-stdlib-port",
    "tls_alert-requests-tls13",
    "server_close_after_request-aiohttp",
    "server_close_after_request-stdlib-keepalive_race",
    "truncated_response-httpx",
    "server_reset-requests",
    "client_timeout-requests",
    "server_idle_close-requests",
)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "tcpdump", "iptables", "nginx", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tools/setup_test_env.sh installs it)"
    return None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("live")
    # The recorder uses fixed namespace names: one recording on this machine at a time.
    lock = open("/tmp/pcapdiag-netns.lock", "w")  # noqa: SIM115 - held for the fixture's life
    fcntl.flock(lock, fcntl.LOCK_EX)
    cmd = [sys.executable, str(ROOT / "tools" / "record_samples.py"), "--out", str(out)]
    for name in SCENARIOS:
        cmd += ["--only", name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:  # a loaded machine can starve a scenario's servers: once more
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == len(SCENARIOS), proc.stdout[-2000:]
    return out, manifest


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=SCENARIOS)
def test_fresh_capture(recorded: tuple[Path, list[dict]], index: int) -> None:
    folder, manifest = recorded
    name = SCENARIOS[index]
    entry = next(e for e in manifest if e["file"].rsplit(".", 1)[0] == name)
    check_outcomes(folder, entry)
    check_client_errors(folder, entry)
