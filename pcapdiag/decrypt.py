"""TLS decryption for the connections that need it, through pyshark driving tshark.

Why tshark: it implements every cipher suite and TLS version (1.0 to 1.3, drafts, PSK,
DSB secrets) and is what users already trust; re-implementing that would be a second,
worse Wireshark. Why only some connections: tshark dissects ~20-50 k packets/s, our
own path ~1 M. So the first pass runs keyless; afterwards the packets of the TLS
connections whose ClientHello random is in the key log are copied (already decoded,
pure ACKs dropped) into a small pcapng with the matching secrets embedded as a DSB,
tshark decrypts that file, and a fresh tracker replays just those connections with the
plaintext fed to the HTTP/1.x and HTTP/2 observers and the decrypted alerts as events.

tshark's output (JSON, not PDML) is consumed as it is produced, through a bounded
queue, while the replay runs: memory stays bounded whatever the amount of plaintext.
tshark runs in a worker thread with its own event loop (pyshark is asyncio inside and
must not touch a notebook's running loop). Whatever happens — end of data, an error, a
timeout, Ctrl-C — the tshark process is killed and reaped before we return.

Secrets come from NSS key log files (``SSLKEYLOGFILE``, written by Python's ssl,
urllib3, httpx, aiohttp, curl and browsers) and from pcapng Decryption Secrets Blocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pcapdiag.errors import DecryptError, UsageError

if TYPE_CHECKING:  # imported where used: 0.03 s of every analysis otherwise
    import asyncio

__all__ = [
    "KeyLog",
    "Plaintext",
    "PlainFeed",
    "tshark_available",
]

DSB_TLS_KEYLOG = 0x544C534B  # 'TLSK': pcapng Decryption Secrets Block, NSS key log
QUEUE_ITEMS = 4096  # decrypted records in flight between tshark and the replay
DEFAULT_TIMEOUT_S = 300.0
TSHARK_PACKAGE = "tshark (Debian/Ubuntu: apt-get install tshark; macOS: brew install wireshark)"
_LABELS = (
    "CLIENT_RANDOM",
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
)


# ---------------------------------------------------------------------------------------
# Key logs
# ---------------------------------------------------------------------------------------


class KeyLog:
    """NSS key log lines indexed by client random (32 bytes)."""

    def __init__(self) -> None:
        self._by_random: dict[bytes, list[str]] = {}
        self.sources: list[str] = []

    def __len__(self) -> int:
        return len(self._by_random)

    def __contains__(self, client_random: object) -> bool:
        return client_random in self._by_random

    def add_text(self, text: str, source: str = "") -> int:
        """Add every well-formed line; returns how many. Comments and junk are skipped."""
        n = 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 3 or parts[0] not in _LABELS:
                continue
            try:
                rnd = bytes.fromhex(parts[1])
                bytes.fromhex(parts[2])
            except ValueError:
                continue
            if len(rnd) != 32:
                continue
            lines = self._by_random.setdefault(rnd, [])
            clean = " ".join(parts)
            if clean not in lines and len(lines) < 16:
                lines.append(clean)
                n += 1
        if source and n:
            self.sources.append(source)
        return n

    def add_file(self, path: str | os.PathLike[str]) -> int:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read(64 * 1024 * 1024)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the key log: {exc.strerror or exc}") from exc
        n = self.add_text(text, str(path))
        junk = any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())
        if n == 0 and junk:  # a header-only log is fine: a failed TLS 1.2 handshake logs nothing
            raise UsageError(
                f"{path}: no NSS key log lines (CLIENT_RANDOM / *_TRAFFIC_SECRET_0 ...) found"
            )
        return n

    def add_dsb(self, secrets: Iterable[tuple[int, bytes]], source: str) -> int:
        n = 0
        for stype, data in secrets:
            if stype == DSB_TLS_KEYLOG:
                n += self.add_text(data.decode("ascii", "replace"), "")
        if n:
            self.sources.append(f"{source} (embedded secrets)")
        return n

    def update(self, other: KeyLog) -> None:
        for rnd, lines in other._by_random.items():
            self._by_random.setdefault(rnd, []).extend(lines)
        self.sources.extend(other.sources)

    def lines_for(self, client_random: bytes) -> list[str]:
        return self._by_random.get(client_random, [])

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> KeyLog:
        log = cls()
        for p in paths:
            log.add_file(p)
        return log


def tshark_available() -> str | None:
    """Why decryption cannot run here, or None when it can."""
    if shutil.which("tshark") is None:
        return f"TLS decryption needs {TSHARK_PACKAGE}, which is not installed"
    try:
        import pyshark  # noqa: F401
    except ImportError:
        return "TLS decryption needs the Python package pyshark (pip install pyshark)"
    return None


# ---------------------------------------------------------------------------------------
# The small pcapng handed to tshark
# ---------------------------------------------------------------------------------------


def _block(btype: int, body: bytes) -> bytes:
    pad = (-len(body)) % 4
    total = 12 + len(body) + pad
    return struct.pack("<II", btype, total) + body + b"\0" * pad + struct.pack("<I", total)


class PcapngWriter:
    """Just enough pcapng to hand records to tshark: SHB, one IDB per link type, a DSB
    with the key log lines, EPBs with nanosecond timestamps."""

    def __init__(self, fh: Any, keylog_lines: list[str]) -> None:
        self.fh = fh
        self.ifaces: dict[int, int] = {}
        fh.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        if keylog_lines:
            text = ("\n".join(keylog_lines) + "\n").encode()
            fh.write(_block(0x0000000A, struct.pack("<II", DSB_TLS_KEYLOG, len(text)) + text))
        self.count = 0

    def _iface(self, linktype: int) -> int:
        idx = self.ifaces.get(linktype)
        if idx is None:
            idx = self.ifaces[linktype] = len(self.ifaces)
            # if_tsresol = 9 (nanoseconds)
            opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
            self.fh.write(_block(1, struct.pack("<HHI", linktype, 0, 0) + opts))
        return idx

    def write(self, linktype: int, ts_ns: int, wirelen: int, data: bytes) -> None:
        iface = self._iface(linktype)
        body = struct.pack("<IIIII", iface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), wirelen)
        self.fh.write(_block(6, body + data))
        self.count += 1


# ---------------------------------------------------------------------------------------
# What tshark tells us
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Plaintext:
    """Decrypted content of one frame of one connection: application bytes and/or alerts."""

    frame: int  # frame number in the original capture
    ts_ns: int
    target: int  # index of the connection among the decrypted ones
    from_client: bool
    data: bytes = b""
    alerts: list[tuple[int, int]] = field(default_factory=list)  # (level, description)


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _records(layers: Any) -> Iterator[dict]:
    for tls in _as_list(layers):
        fields = getattr(tls, "_all_fields", tls)
        if not isinstance(fields, dict):
            continue
        for rec in _as_list(fields.get("tls.record")):
            if isinstance(rec, dict):
                yield rec


def _hex(s: str) -> bytes:
    try:
        return bytes.fromhex(s.replace(":", ""))
    except ValueError:
        return b""


def plaintext_of(tls_layers: Any, data_layers: Any) -> tuple[bytes, list[tuple[int, int]]]:
    """The decrypted bytes and alerts of one frame, from tshark's JSON layers.

    Decrypted application data reaches tshark's ``data`` dissector (we disable HTTP and
    HTTP/2 so nothing else claims it); a record that stayed encrypted has no ``data``."""
    alerts: list[tuple[int, int]] = []
    for rec in _records(tls_layers):
        if rec.get("tls.record.content_type") != "21":
            continue
        for msg in _as_list(rec.get("tls.alert_message")):
            if isinstance(msg, dict) and "tls.alert_message.level" in msg:
                with contextlib.suppress(ValueError, KeyError):
                    alerts.append(
                        (int(msg["tls.alert_message.level"]), int(msg["tls.alert_message.desc"]))
                    )
    chunks = []
    for d in _as_list(data_layers):
        fields = getattr(d, "_all_fields", d)
        if isinstance(fields, dict) and "data.data" in fields:
            chunks.append(_hex(str(fields["data.data"])))
    return b"".join(chunks), alerts


# ---------------------------------------------------------------------------------------
# Running tshark
# ---------------------------------------------------------------------------------------


_DONE = object()


class _TsharkRun:
    """pyshark's FileCapture, consumed lazily. In a plain Python process it runs in the
    calling thread with a private event loop; under a running loop (Jupyter) it runs in a
    worker thread that hands results over through a bounded queue."""

    def __init__(
        self, path: str, frame_map: dict[int, tuple[int, int, int, bool]], timeout_s: float
    ) -> None:
        self.path = path
        # tshark's frame -> (original frame, time, target, from_client)
        self.frame_map = frame_map
        self.timeout_s = timeout_s
        self.procs: list[Any] = []  # asyncio Process objects of the tshark runs
        self.expired = False
        self.abandoned = False  # stopped from outside (timeout, consumer gone): not an error
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    # -- the pyshark part, the same in both modes --------------------------------------
    def _capture(self, loop: asyncio.AbstractEventLoop) -> Any:
        import asyncio

        import pyshark

        cap = pyshark.FileCapture(
            self.path,
            use_json=True,
            keep_packets=False,
            eventloop=loop,
            display_filter="tls",
            disable_protocol="http",
            custom_parameters=["--disable-protocol", "http2", "-J", "frame tls data"],
        )
        original = cap._get_tshark_process

        async def tracked(*a: Any, **kw: Any) -> Any:
            proc = await original(*a, **kw)
            self.procs.append(proc)
            return proc

        cap._get_tshark_process = tracked  # type: ignore[method-assign]
        cleanup = cap._cleanup_subprocess

        async def patient_cleanup(process: Any) -> Any:
            # pyshark kills tshark even when it has just exited at the end of its output;
            # the kill's pid check then reaps it before asyncio learns its exit status, and
            # a clean run reads as a crash (code 255). Let the status arrive first.
            if process.returncode is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), 2)
            return await cleanup(process)

        cap._cleanup_subprocess = patient_cleanup  # type: ignore[method-assign]
        return cap

    def _plaintexts(self, cap: Any) -> Iterator[Plaintext]:
        for pkt in cap:
            if self.stop.is_set():
                return
            try:
                num = int(pkt.frame_info.number)
            except (AttributeError, ValueError):
                continue
            where = self.frame_map.get(num)
            if where is None:
                continue
            data, alerts = plaintext_of(
                pkt.get_multiple_layers("tls"), pkt.get_multiple_layers("data")
            )
            if data or alerts:
                orig, ts, target, from_client = where
                yield Plaintext(orig, ts, target, from_client, data, alerts)

    def _close(self, cap: Any, loop: asyncio.AbstractEventLoop) -> BaseException | None:
        self.kill_process()
        err = None
        if cap is not None:
            try:
                cap.close()
            except BaseException as exc:  # noqa: BLE001 - tshark killed or crashed
                err = exc
            cap._running_processes.clear()  # pyshark's __del__ must not run the loop again
        with contextlib.suppress(BaseException):
            loop.close()
        return err

    def _expire(self) -> None:
        self.expired = self.abandoned = True
        self.kill_process()

    def kill_process(self) -> None:
        """SIGKILL through Popen, which checks first that the pid is still our child."""
        self.stop.set()
        for proc in list(self.procs):
            popen = getattr(getattr(proc, "_transport", None), "_proc", None)
            if popen is not None:
                with contextlib.suppress(OSError):
                    popen.send_signal(signal.SIGKILL)

    def _timeout_error(self) -> DecryptError:
        return DecryptError(
            f"tshark did not finish decrypting within {self.timeout_s:g} s "
            "(--decrypt-timeout); keyless verdicts kept"
        )

    # -- the two ways of running it -----------------------------------------------------
    def items(self) -> Iterator[Plaintext]:
        import asyncio

        quiet = _QuietReaping()
        logging.getLogger("asyncio").addFilter(quiet)
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                yield from self._inline()
            else:
                yield from self._threaded()
        finally:
            logging.getLogger("asyncio").removeFilter(quiet)

    def _inline(self) -> Iterator[Plaintext]:
        import asyncio

        loop = asyncio.new_event_loop()
        cap = None
        timer = threading.Timer(self.timeout_s, self._expire)
        timer.daemon = True
        timer.start()
        err: BaseException | None = None
        try:
            cap = self._capture(loop)
            yield from self._plaintexts(cap)
        except Exception as exc:  # noqa: BLE001 - worded below
            err = exc
        finally:
            timer.cancel()
            close_err = self._close(cap, loop)
        if self.expired:
            raise self._timeout_error()
        err = err or close_err
        if err is not None and not self.abandoned:
            raise DecryptError(_tshark_message(err)) from None

    def _threaded(self) -> Iterator[Plaintext]:
        q: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
        box: list[BaseException] = []

        def put(item: object) -> bool:
            while not self.stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            import asyncio

            loop = asyncio.new_event_loop()
            cap = None
            try:
                with _pidfd_watcher(loop):
                    cap = self._capture(loop)
                    for item in self._plaintexts(cap):
                        if not put(item):
                            break
                    err = self._close(cap, loop)
                    cap = None
                    if err is not None and not self.abandoned:
                        box.append(err)
            except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
                box.append(exc)
            finally:
                if cap is not None:
                    self._close(cap, loop)
                with contextlib.suppress(queue.Full):  # the consumer may have left
                    q.put(_DONE, timeout=5)

        self.thread = threading.Thread(target=work, name="pcapdiag-tshark", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.expired = self.abandoned = True
                    raise self._timeout_error()
                try:
                    item = q.get(timeout=min(left, 0.5))
                except queue.Empty:
                    if not self.thread.is_alive() and q.empty():
                        break
                    continue
                if item is _DONE:
                    break
                yield item
        finally:
            if self.thread.is_alive():
                self.abandoned = True
            self.kill_process()
            self.thread.join(timeout=10)
        if box and not self.expired:
            raise DecryptError(_tshark_message(box[0])) from None

    def kill(self) -> None:
        """Stop tshark now; it is reaped by its event loop. Safe to call more than once."""
        self.abandoned = True
        self.kill_process()
        if self.thread is not None:
            self.thread.join(timeout=10)


class _QuietReaping(logging.Filter):
    """pyshark kills tshark after it has exited; Popen's pid check then reaps it first
    and asyncio logs that it lost the exit status. Expected here, so not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (
            msg.startswith("Unknown child process pid") or "exit status already read" in msg
        )


@contextlib.contextmanager
def _pidfd_watcher(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """asyncio's default ThreadedChildWatcher can lose tshark's exit status when the loop
    runs outside the main thread (pyshark then reports a crash with code 255); the pidfd
    watcher (Linux >= 5.3) does not. asyncio's watcher is process-wide, so it is put
    back afterwards."""
    import asyncio

    if not hasattr(os, "pidfd_open"):
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        previous = getattr(policy, "_watcher", None)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if getattr(policy, "_watcher", None) is watcher:
                policy._watcher = previous  # type: ignore[attr-defined]


class PlainFeed:
    """The replay's side: plaintext per connection, pulled in frame order, on demand.

    ``upto(frame)`` moves every item with an original frame <= ``frame`` from tshark's
    output into its connection's deque; ``take(target, frame)`` hands them out."""

    def __init__(self, run: _TsharkRun) -> None:
        self.run = run
        self.it = run.items()
        self.pending: dict[int, deque[Plaintext]] = {}
        self.head: Plaintext | None = None
        self.done = False

    def upto(self, frame: int) -> None:
        while not self.done:
            if self.head is None:
                self.head = next(self.it, None)
                if self.head is None:
                    self.done = True
                    return
            if self.head.frame > frame:
                return
            item, self.head = self.head, None
            self.pending.setdefault(item.target, deque()).append(item)

    def take(self, target: int, frame: int) -> list[Plaintext]:
        self.upto(frame)
        dq = self.pending.get(target)
        if not dq:
            return []
        out = []
        while dq and dq[0].frame <= frame:
            out.append(dq.popleft())
        return out

    def drain(self, target: int) -> list[Plaintext]:
        """Everything left for ``target`` (end of its connection)."""
        self.upto(1 << 62)
        dq = self.pending.pop(target, None)
        return list(dq) if dq else []

    def close(self) -> None:
        close = getattr(self.it, "close", None)
        if close is not None:
            close()
        self.run.kill()


def _tshark_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    last = [line for line in text if line.strip()]
    detail = last[-1] if last else type(exc).__name__
    if "Last error line" in str(exc):
        for line in text:
            if line.startswith("Last error line:"):
                detail = line.split(":", 1)[1].strip() or detail
    return f"tshark failed while decrypting: {detail}"


@contextlib.contextmanager
def tshark_session(
    path: str, frame_map: dict[int, tuple[int, int, int, bool]], timeout_s: float
) -> Iterator[PlainFeed]:
    """Run tshark on ``path`` for the duration of the block; it is always reaped."""
    feed = PlainFeed(_TsharkRun(path, frame_map, timeout_s))
    try:
        yield feed
    finally:
        feed.close()
