"""Every exception pcapdiag raises on purpose, in one place.

Hierarchy::

    PcapdiagError                 base of everything below; the CLI exits 1 with str(exc)
    ├── CaptureError              a capture file cannot be read (from here on)
    │   ├── NotACaptureError      the bytes are not pcap, pcapng or gzip of either
    │   └── CorruptCaptureError   the file starts well but is damaged at ``offset``
    ├── UsageError                the caller asked for something impossible (bad filter, ...)
    └── DecryptError              TLS decryption could not run (tshark missing, failing or too
                                  slow): never raised to the caller, it becomes a warning and
                                  the keyless verdicts stand

A ``CaptureError`` raised while reading means that everything before ``offset`` /
``frame`` was delivered: results up to the damage stay valid and are reported.
Anything else that escapes is a bug.
"""

from __future__ import annotations

from typing import Any


def located(path: str, message: str, *, frame: int | None, offset: int | None) -> str:
    """``path (frame F, byte offset O): message`` — how every error and warning is worded."""
    where = []
    if frame is not None:
        where.append(f"frame {frame}")
    if offset is not None:
        where.append(f"byte offset {offset}")
    loc = f" ({', '.join(where)})" if where else ""
    return f"{path}{loc}: {message}"


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
        return located(self.path, self.message, frame=self.frame, offset=self.offset)

    def __reduce__(self) -> tuple[Any, ...]:
        # errors cross process boundaries (analyze(jobs=N), Dask): keep every field
        return (type(self), (self.path, self.message), self.__dict__.copy())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.args = (str(self),)


class NotACaptureError(CaptureError):
    """The file is not a capture format pcapdiag reads."""


class CorruptCaptureError(CaptureError):
    """The capture is damaged; records before ``offset`` were read."""


class UsageError(PcapdiagError):
    """Invalid arguments from the caller (CLI flags or API parameters)."""


class DecryptError(PcapdiagError):
    """Decryption could not run (tshark missing, failed or too slow); keyless results stand."""
