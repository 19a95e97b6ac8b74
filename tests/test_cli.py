"""The command line: exit codes, the JSON contract, and output that a capture cannot subvert."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from pcapbuild import Conversation, write_pcap

from pcapdiag.cli import main

HOSTILE = b'GET /<script>alert(1)</script>\x1b[31mRED\x1b]0;title\x07 HTTP/1.1\r\nHost: =cmd|"/c calc"!A1\r\n\r\n'


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _hostile(tmp_path: Path) -> Path:
    conv = Conversation().handshake().client_sends(HOSTILE).server_fin(dt=0.0002)
    return write_pcap(tmp_path / "hostile.pcap", conv.packets)


def test_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    res = _run("analyze", str(tmp_path / "nope.pcap"))
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope.pcap" in lines[0]
    assert "Traceback" not in res.output


def test_not_a_capture(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a capture\n")
    res = _run("analyze", str(bad))
    assert res.exit_code == 1
    assert "notes.txt" in res.output and "Traceback" not in res.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert _run("analyze").exit_code == 2
    assert _run("analyze", "--format", "xml", "x.pcap").exit_code == 2
    path = _hostile(tmp_path)
    assert _run("analyze", str(path), "--at", "yesterday-ish").exit_code == 2


def test_json_contract(tmp_path: Path) -> None:
    res = _run("analyze", str(_hostile(tmp_path)), "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) >= {"captures", "summary", "connections"}
    cap = doc["captures"][0]
    assert set(cap) >= {"path", "packets", "link_types", "first_time", "last_time", "warnings"}
    assert set(doc["summary"]) >= {"connections", "by_outcome", "idle_timeout_s"}
    conn = doc["connections"][0]
    keys = {"id", "capture", "client", "server", "start", "end", "duration_s", "outcome", "closed_by",
            "close_time", "close_frame", "evidence", "client_packets", "server_packets", "client_bytes",
            "server_bytes", "requests", "responses", "handshake", "tls", "icmp", "client_errors",
            "zeek_conn_state", "zeek_history", "frames"}  # fmt: skip
    assert keys <= set(conn)
    assert set(conn["client_errors"]) == {"stdlib", "requests", "aiohttp", "httpx", "errno"}
    assert conn["outcome"] == "server_close_after_request"
    assert conn["closed_by"] == "server"
    assert conn["close_frame"] == 5 and conn["frames"] == [1, 5]
    assert "RemoteDisconnected" in conn["client_errors"]["stdlib"]


def test_terminal_output_strips_escape_sequences(tmp_path: Path) -> None:
    res = _run("analyze", str(_hostile(tmp_path)))
    assert res.exit_code == 0
    assert "\x1b" not in res.output and "\x07" not in res.output
    assert "server_close_after_request" in res.output


def test_csv_neutralises_formulas(tmp_path: Path) -> None:
    res = _run("analyze", str(_hostile(tmp_path)), "--format", "csv")
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert rows and rows[0]["outcome"] == "server_close_after_request"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@")), value


def test_filters(tmp_path: Path) -> None:
    path = _hostile(tmp_path)
    doc = json.loads(_run("analyze", str(path), "--format", "json", "--port", "81").output)
    assert doc["connections"] == []
    doc = json.loads(
        _run("analyze", str(path), "--format", "json", "--problems", "--host", "10.0.0.2").output
    )
    assert len(doc["connections"]) == 1
    doc = json.loads(
        _run(
            "analyze",
            str(path),
            "--format",
            "json",
            "--at",
            "2023-11-14T22:13:20Z",
            "--window",
            "1",
        ).output
    )
    assert len(doc["connections"]) == 1
    doc = json.loads(_run("analyze", str(path), "--format", "json", "--at", "1700000100").output)
    assert doc["connections"] == []


def test_the_installed_command_leaves_at_once_with_the_same_output_and_codes(
    tmp_path: Path,
) -> None:
    """``pcapdiag`` (``cli.run``) skips the interpreter's teardown once its output is
    flushed: the output is whole and the exit codes are the command's own."""
    sample = (
        Path(__file__).resolve().parent.parent
        / "sample_pcaps"
        / "client_reset-requests-stream.pcap"
    )
    cmd = [sys.executable, "-c", "from pcapdiag.cli import run; run()"]

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)

    done = command("analyze", str(sample), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stdout == _run("analyze", str(sample), "--format", "json").output
    json.loads(done.stdout)
    out = tmp_path / "out.json"
    with open(out, "w") as f:
        assert (
            subprocess.run([*cmd, "analyze", str(sample), "--format", "json"], stdout=f).returncode
            == 0
        )
    assert out.read_text() == done.stdout
    missing = command("analyze", str(tmp_path / "nope.pcap"))
    assert (
        missing.returncode == 1
        and missing.stderr.count("\n") == 1
        and "nope.pcap" in missing.stderr
    )
    assert command("analyze", "--bogus").returncode == 2
    version = command("--version")
    assert version.returncode == 0 and "pcapdiag" in version.stdout


def test_json_of_captures_whose_names_are_not_utf8(tmp_path: Path) -> None:
    """A file name with a byte that is not UTF-8 (Python reads it as a lone surrogate)
    cannot be written as UTF-8: the JSON output holds its escape (``\\udcff``), valid
    UTF-8 that reads back as the same name, from the exact tracker and the fast lane's
    compiled template alike."""
    samples = Path(__file__).resolve().parent.parent / "sample_pcaps"
    odd = tmp_path / "odd"
    odd.mkdir()
    for src in sorted(samples.glob("*.pcap"))[:30]:
        dest = os.fsencode(odd) + b"/\xff" + src.name.encode()
        with open(dest, "wb") as f:
            f.write(src.read_bytes())
    outs = []
    for lane in ("0", "1"):
        env = {**os.environ, "PCAPDIAG_FASTLANE": lane}
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pcapdiag.cli import run; run()",
                "analyze",
                str(odd),
                "--format",
                "json",
            ],
            capture_output=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        doc = json.loads(done.stdout.decode("utf-8"))
        names = {os.fsencode(c["path"]) for c in doc["captures"]}
        assert all(n.startswith(os.fsencode(odd) + b"/\xff") for n in names) and len(names) == 30
        assert {os.fsencode(c["capture"]) for c in doc["connections"]} <= names
        outs.append(done.stdout)
    assert outs[0] == outs[1]
