"""pcapdiag: which side closed each TCP connection, when, why, and what your client raised.

    >>> import pcapdiag
    >>> a = pcapdiag.analyze("capture.pcap")
    >>> a.summary["by_outcome"]
    >>> [r.evidence for r in a.problems]
    >>> a.connections  # pandas: one row per connection; a.events, a.packets(id)

The public API is what this module exports; everything else may change. The analysis
machinery (numpy, and pandas/matplotlib where used) is imported on first use, so that
``import pcapdiag`` and ``pcapdiag --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.errors import (
    CaptureError,
    CorruptCaptureError,
    DecryptError,
    NotACaptureError,
    PcapdiagError,
    UsageError,
)

if TYPE_CHECKING:
    from pcapdiag.analysis import Analysis, CaptureSummary, analyze
    from pcapdiag.explain import ConnectionRecord, IdleTimeout
    from pcapdiag.frames import ConnectionView

__version__ = "0.1.0"

_LAZY = {
    "analyze": "pcapdiag.analysis",
    "Analysis": "pcapdiag.analysis",
    "CaptureSummary": "pcapdiag.analysis",
    "ConnectionRecord": "pcapdiag.explain",
    "ConnectionView": "pcapdiag.frames",
    "IdleTimeout": "pcapdiag.explain",
}

__all__ = [
    "OUTCOMES",
    "PROBLEMS",
    "Analysis",
    "CaptureError",
    "CaptureSummary",
    "ConnectionRecord",
    "ConnectionView",
    "CorruptCaptureError",
    "DecryptError",
    "IdleTimeout",
    "NotACaptureError",
    "PcapdiagError",
    "UsageError",
    "analyze",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pcapdiag' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
