"""Read capture files: the only module that opens them.

INTERFACE STUB — to be implemented. The dataclasses below are the contract with
``pcapdiag.decode``; keep field names and dtypes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class CaptureWarning:
    """Something odd but survivable (truncated last record, unknown block, ...)."""

    path: str
    message: str
    frame: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        where = []
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        loc = f" ({', '.join(where)})" if where else ""
        return f"{self.path}{loc}: {self.message}"


@dataclass(slots=True)
class RecordBatch:
    """Up to N consecutive records of one capture, column-wise.

    ``data`` is a uint8 array (a view of the mmap, or a decompressed chunk) that holds
    the packet bytes of every record in the batch; ``offset[i]`` is where record i's
    packet bytes start in it and ``caplen[i]`` how many were captured. ``data`` is only
    valid until the next batch is requested.
    """

    data: np.ndarray  # uint8
    frame: np.ndarray  # int64, 1-based frame numbers as Wireshark shows them
    ts_ns: np.ndarray  # int64, epoch nanoseconds
    offset: np.ndarray  # int64, start of packet bytes in ``data``
    caplen: np.ndarray  # int32, bytes captured
    wirelen: np.ndarray  # int32, original length on the wire
    linktype: np.ndarray  # uint16, LINKTYPE_* value of the record's interface
    interface: np.ndarray  # uint16, pcapng interface id (0 for pcap)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class CaptureInfo:
    """Facts about one capture file, complete once its batches are exhausted."""

    path: str
    format: str = ""  # "pcap" | "pcapng"
    compressed: bool = False  # gzip
    nanosecond: bool = False  # pcap magic a1b23c4d (pcapng: per interface)
    byte_order: str = ""  # "little" | "big"
    snaplen: int = 0
    packets: int = 0
    link_types: dict[int, int] = field(default_factory=dict)  # LINKTYPE -> records
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    warnings: list[CaptureWarning] = field(default_factory=list)
    secrets: list[tuple[int, bytes]] = field(default_factory=list)  # pcapng DSB (type, data)


class Capture:
    """An open capture; use as a context manager. Iterating ``batches()`` streams it."""

    info: CaptureInfo

    def batches(self, max_records: int = 65536) -> Iterator[RecordBatch]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(path: str) -> Capture:
    """Open ``path`` (pcap / pcapng, optionally gzip) or raise ``CaptureError``."""
    raise NotImplementedError
