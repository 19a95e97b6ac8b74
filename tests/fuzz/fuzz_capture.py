"""Coverage-guided fuzzing of the whole pipeline with atheris (libFuzzer).

Any bytes, read as a capture file, must give results or a ``CaptureError`` — never any
other exception, never a hang. Run by hand for long sessions:

    python tests/fuzz/fuzz_capture.py -max_total_time=600 /tmp/corpus sample_pcaps/

``tests/test_fuzz.py`` runs it for a bounded time in the suite. A crash input it finds is
saved by libFuzzer as ``crash-*``; copy it to ``tests/fuzz/regressions/`` so it is replayed
by every test run from then on.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

with atheris.instrument_imports(include=["pcapdiag"]):
    # pcapdiag imports its stages lazily: import them here so they are instrumented.
    import pcapdiag
    import pcapdiag._http
    import pcapdiag._tls
    import pcapdiag.analysis
    import pcapdiag.classify
    import pcapdiag.connections
    import pcapdiag.decode
    import pcapdiag.explain
    import pcapdiag.reader
    import pcapdiag.zeek
    from pcapdiag.errors import CaptureError

_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_FD, _PATH = tempfile.mkstemp(suffix=".pcap", dir=_DIR)
os.close(_FD)


def one_input(data: bytes) -> None:
    with open(_PATH, "wb") as fh:
        fh.write(data)
    try:
        result = pcapdiag.analyze(_PATH)
    except CaptureError:
        return
    for rec in result.records:
        rec.to_json()  # every field renders


def main() -> None:
    try:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
    finally:
        os.unlink(_PATH)


if __name__ == "__main__":
    main()
