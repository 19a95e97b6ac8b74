"""Machine-readable output: the JSON contract and CSV (one row per connection)."""

from __future__ import annotations

import csv
import json
from typing import IO

from pcapdiag.analysis import Analysis

CSV_COLUMNS = (
    "id", "capture", "client", "server", "start", "end", "duration_s", "outcome", "closed_by",
    "close_time", "close_frame", "client_packets", "server_packets", "client_bytes",
    "server_bytes", "requests", "responses", "handshake", "zeek_conn_state", "zeek_history",
    "first_frame", "last_frame", "keepalive_race", "idle_before_close_s", "tls_version",
    "tls_sni", "icmp", "stdlib_error", "requests_error", "aiohttp_error", "httpx_error",
    "errno", "evidence",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_json(analysis: Analysis, out: IO[str]) -> None:
    """The JSON contract, streamed: one connection per line, written as it is encoded.

    ``json.dump(indent=…)`` runs the pure-Python encoder (~4x slower than the C one) and
    would hold the whole document in memory; here only one connection is."""
    doc = analysis.to_json(connections=False)
    head = json.dumps(doc, indent=1, ensure_ascii=False)
    out.write(head[: head.rindex("}")].rstrip() + ',\n "connections": [')
    sep = "\n  "
    for r in analysis.records:
        out.write(sep)
        out.write(json.dumps(r.to_json(), ensure_ascii=False))
        sep = ",\n  "
    out.write("\n ]\n}\n")


def _cell(value: object) -> object:
    """Neutralise spreadsheet formulas in capture-derived text (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(analysis: Analysis, out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in analysis.records:
        j = r.to_json()
        errs = r.client_errors
        icmp = r.icmp
        row = [
            j["id"], j["capture"], j["client"], j["server"], f"{j['start']:.6f}", f"{j['end']:.6f}",
            f"{j['duration_s']:.6f}", j["outcome"], j["closed_by"],
            "" if j["close_time"] is None else f"{j['close_time']:.6f}",
            "" if j["close_frame"] is None else j["close_frame"],
            j["client_packets"], j["server_packets"], j["client_bytes"], j["server_bytes"],
            j["requests"], j["responses"], j["handshake"], j["zeek_conn_state"],
            j["zeek_history"], r.first_frame, r.last_frame, r.keepalive_race,
            "" if r.idle_before_close_s is None else f"{r.idle_before_close_s:.6f}",
            (r.tls or {}).get("version") or "", (r.tls or {}).get("sni") or "",
            "" if icmp is None else f"{icmp['name']} from {icmp['sender']}",
            errs.get("stdlib") or "", errs.get("requests") or "", errs.get("aiohttp") or "",
            errs.get("httpx") or "", "" if errs.get("errno") is None else errs["errno"],
            j["evidence"],
        ]  # fmt: skip
        w.writerow([_cell(v) for v in row])
