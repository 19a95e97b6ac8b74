"""Every exception pcapdiag raises on purpose, in one place.

Hierarchy::

    PcapdiagError                 base of everything below; the CLI exits 1 with str(exc)
    ├── CaptureError              a capture file cannot be read (from here on)
    │   ├── NotACaptureError      the bytes are not pcap, pcapng or gzip of either
    │   └── CorruptCaptureError   the file starts well but is damaged at ``offset``
    └── UsageError                the caller asked for something impossible (bad filter, ...)

A ``CaptureError`` raised while reading means that everything before ``offset`` /
``frame`` was delivered: results up to the damage stay valid and are reported.
Anything else that escapes is a bug.
"""

from __future__ import annotations


class PcapdiagError(Exception):
    """Base class: the message is one line a user can act on."""


class CaptureError(PcapdiagError):
    """A capture cannot be read, completely or from ``offset`` on."""

    def __init__(
        self,
        path: str,
        message: str,
        *,
        offset: int | None = None,
        frame: int | None = None,
    ) -> None:
        self.path = str(path)
        self.message = message
        self.offset = offset
        self.frame = frame
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        loc = f" ({', '.join(where)})" if where else ""
        return f"{self.path}{loc}: {self.message}"


class NotACaptureError(CaptureError):
    """The file is not a capture format pcapdiag reads."""


class CorruptCaptureError(CaptureError):
    """The capture is damaged; records before ``offset`` were read."""


class UsageError(PcapdiagError):
    """Invalid arguments from the caller (CLI flags or API parameters)."""
