"""pcapdiag: which side closed each TCP connection, when, why, and what your client raised.

    >>> import pcapdiag
    >>> a = pcapdiag.analyze("capture.pcap")
    >>> a.summary["by_outcome"]
    >>> [r.evidence for r in a.problems]

The public API is what this module exports; everything else may change.
"""

from __future__ import annotations

from pcapdiag.analysis import Analysis, CaptureSummary, analyze
from pcapdiag.classify import OUTCOMES, PROBLEMS
from pcapdiag.errors import (
    CaptureError,
    CorruptCaptureError,
    NotACaptureError,
    PcapdiagError,
    UsageError,
)
from pcapdiag.explain import ConnectionRecord, IdleTimeout

__version__ = "0.1.0"

__all__ = [
    "OUTCOMES",
    "PROBLEMS",
    "Analysis",
    "CaptureError",
    "CaptureSummary",
    "ConnectionRecord",
    "CorruptCaptureError",
    "IdleTimeout",
    "NotACaptureError",
    "PcapdiagError",
    "UsageError",
    "analyze",
    "__version__",
]
