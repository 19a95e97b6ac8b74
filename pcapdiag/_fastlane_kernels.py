"""Compiled kernels of the fast lane (``pcapdiag._fastlane``): importing this module
imports numba; the kernels compile on first use and are cached on disk. The lane takes
them built ahead of time (``pcapdiag._native``) where it can, without this module."""

from __future__ import annotations

import numba as nb
import numpy as np

from pcapdiag._compiled import _prefetch
from pcapdiag._fastlane import (
    C_FLAGGED,
    C_NFREE,
    C_NHEADS,
    C_NOUT,
    C_NOUTT,
    C_NWIN,
    C_RESUMED,
    C_STATUS,
    C_TABLE,
    C_TFREE,
    C_WHY,
    CHUNK,
    EMPTY,
    GAP_NS,
    GONE,
    IDLE_MAX_NS,
    K_ACK_TS,
    K_CBYTES,
    K_CFDATA_FRAME,
    K_CFIN_FRAME,
    K_CFIN_TS,
    K_CHI,
    K_CLDATA_FRAME,
    K_CLDATA_TS,
    K_CLO,
    K_CNEXT,
    K_CPKTS,
    K_CPORT,
    K_CRETX,
    K_CTTL,
    K_END_TS,
    K_HASH,
    K_HIST,
    K_IPVER,
    K_ISN,
    K_LAST_FRAME,
    K_LAST_TS,
    K_LATE_FRAME,
    K_LATE_TS,
    K_NHIST,
    K_NTURNS,
    K_PHASE,
    K_RST_FRAME,
    K_RST_TS,
    K_RST_TTL,
    K_SBYTES,
    K_SFDATA_FRAME,
    K_SFIN_FRAME,
    K_SFIN_TS,
    K_SHI,
    K_SISN,
    K_SLDATA_FRAME,
    K_SLDATA_TS,
    K_SLO,
    K_SNEXT,
    K_SPKTS,
    K_SPORT,
    K_SRETX,
    K_STTL,
    K_SYN_FRAME,
    K_SYN_TS,
    K_SYNACK_FRAME,
    K_SYNACK_TS,
    K_TFIRST,
    K_TLAST,
    K_TOFF,
    K_TURN,
    K_USED,
    MAX_SYNS,
    MAX_TURNS,
    NT,
    P_DONE,
    P_EST,
    P_RST,
    P_SYN,
    PRESSURE,
    ST_DONE,
    ST_FULL,
    ST_GROW,
    SYN_PRESSURE_NS,
    SYN_QUIET_NS,
    T_BYTES,
    T_DIR,
    T_FRAME,
    T_H1,
    T_H2,
    T_HLEN,
    T_LFRAME,
    T_LTS,
    T_NSEG,
    T_TS,
    W_AFTER_LATE,
    W_AFTER_RST,
    W_DATA_CLOSED,
    W_DONE_SEG,
    W_DONE_SYN,
    W_FIN_TWICE,
    W_HANDSHAKE,
    W_ICMP,
    W_MIDSTREAM,
    W_OPEN,
    W_RSTURG,
    W_SEQ,
    W_TIME,
    W_TUPLE,
    W_TURNS,
    W_WINDOW,
    WIN_QUIET_NS,
    WN_CAN,
    WN_CHI,
    WN_CLO,
    WN_CPORT,
    WN_END,
    WN_ISN,
    WN_KEY,
    WN_LAST,
    WN_SHI,
    WN_SLO,
    WN_SPORT,
    WN_START,
)
from pcapdiag._native import layout_digest as _layout_digest

# packets ahead of the walk whose hash-table rows and first payload lines it asks for
# (``_compiled._prefetch``), and half as far ahead, the row of the turn its bytes go to:
# the tables and the turns' pool outgrow the core's cache, and a turn's head is read
# (``_head_key``) long after the reader touched its packet. Walking the benchmark
# capture: 0.205 s without, 0.185 s with the first, 0.176 s with both (alternating
# runs); 24 ahead, or the slot's whole row too, did no better
_PF = 16

# numba's cache of these kernels is keyed on this file alone, yet they compile in the
# constants imported above: changing one there and not this file would load kernels
# built with the old one. So this file names them by a digest (``layout_digest``, checked
# by tests/test_fastlane.py): a change there fails the test until it is written here,
# which changes this file.
LAYOUT = "8cfea8d697bf0bb9"


def layout_digest() -> str:
    """A digest of the constants these kernels take from ``_fastlane``."""
    from pcapdiag import _fastlane

    return _layout_digest(globals(), _fastlane)


_FIN, _SYN, _RST, _ACK, _URG = 0x01, 0x02, 0x04, 0x10, 0x20
_M32 = 0xFFFFFFFF
# letter codes (index in _fastlane.LETTERS)
_L_S, _L_h, _L_A, _L_D, _L_a, _L_d, _L_F, _L_f, _L_T, _L_t, _L_R, _L_r = range(12)
_HALF = 0x80000000


_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_P1, _P2, _P3 = (np.uint64(0xD6E8FEB86659FD93), np.uint64(0xA0761D6478BD642F),
                 np.uint64(0xE7037ED1A0B428DB))  # fmt: skip


@nb.njit(cache=True, nogil=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = z + _G
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, nogil=True)
def hashes(shi: np.ndarray, slo: np.ndarray, sport: np.ndarray, dhi: np.ndarray,
           dlo: np.ndarray, dport: np.ndarray, out: np.ndarray) -> None:  # fmt: skip
    """A 64-bit key per packet, the same in both directions: the XOR of a hash of each
    endpoint, its three fields spread by odd multipliers and mixed once (a key two
    4-tuples share costs speed, not answers: the lane hands both over; ``_fastlane.
    tuple_hash`` in Python)."""
    n = len(shi)
    for i in range(n):
        a = _mix(np.uint64(shi[i]) * _P1 ^ np.uint64(slo[i]) * _P2 ^ np.uint64(sport[i]) * _P3)
        b = _mix(np.uint64(dhi[i]) * _P1 ^ np.uint64(dlo[i]) * _P2 ^ np.uint64(dport[i]) * _P3)
        out[i] = a ^ b


# Hash tables (4-tuple hash -> slot; the set of hashes marked for the exact tracker):
# open addressing over an int64 array of (key, value) rows, a power of two of them,
# linear probing from the key's low bits (the keys are mixed hashes already). numba's
# typed dict would do, but creating one compiles its methods anew in every process
# (~0.7 s and ~45 MB here); these compile once, into numba's cache. Their counts live in
# ``ctl`` (used, deleted), and ``_fastlane.Lane`` grows them before a call could fill
# them past half (``rehash``). Free and deleted rows: ``_fastlane.EMPTY``/``GONE``.


@nb.njit(cache=True, nogil=True, inline="always")
def _find(table: np.ndarray, key: int) -> int:
    """The row holding ``key``, or -1."""
    mask = len(table) - 1
    i = key & mask
    while True:
        v = table[i, 1]
        if v == EMPTY:
            return -1
        if v != GONE and table[i, 0] == key:
            return i
        i = (i + 1) & mask


@nb.njit(cache=True, nogil=True, inline="always")
def _get(table: np.ndarray, key: int) -> int:
    """The value of ``key``, or -1 (values are slots, or 1)."""
    i = _find(table, key)
    return -1 if i < 0 else table[i, 1]


@nb.njit(cache=True, nogil=True, inline="always")
def _put(table: np.ndarray, ctl: np.ndarray, used: int, key: int, value: int) -> None:
    mask = len(table) - 1
    i = key & mask
    gone = -1
    while True:
        v = table[i, 1]
        if v == EMPTY:
            break
        if v == GONE:
            if gone < 0:
                gone = i
        elif table[i, 0] == key:
            table[i, 1] = value
            return
        i = (i + 1) & mask
    if gone >= 0:
        i = gone
        ctl[used + 1] -= 1
    table[i, 0] = key
    table[i, 1] = value
    ctl[used] += 1


@nb.njit(cache=True, nogil=True, inline="always")
def _pop(table: np.ndarray, ctl: np.ndarray, used: int, key: int) -> None:
    i = _find(table, key)
    if i >= 0:
        table[i, 1] = GONE
        ctl[used] -= 1
        ctl[used + 1] += 1


@nb.njit(cache=True, nogil=True)
def rehash(old: np.ndarray, new: np.ndarray, ctl: np.ndarray, used: int) -> None:
    """Every key of ``old`` into ``new`` (empty), deleted rows left behind."""
    ctl[used] = 0
    ctl[used + 1] = 0
    for i in range(len(old)):
        if old[i, 1] >= 0:
            _put(new, ctl, used, old[i, 0], old[i, 1])


@nb.njit(cache=True, nogil=True)
def _window(key: int, start: int, end: int, can: bool, s: int, st: np.ndarray,
            wins: np.ndarray, ctl: np.ndarray) -> int:  # fmt: skip
    """A new window of ``key``'s frames for the exact tracker (``_fastlane.WN_*``); the
    4-tuple, first SYN and last time are slot ``s``'s (when ``can``, it must be one)."""
    w = ctl[C_NWIN]
    ctl[C_NWIN] = w + 1
    wins[w, :] = 0
    wins[w, WN_KEY] = key
    wins[w, WN_START] = start
    wins[w, WN_END] = end
    if s >= 0:
        wins[w, WN_CAN] = 1 if can else 0
        wins[w, WN_ISN] = st[s, K_ISN]
        wins[w, WN_CHI] = st[s, K_CHI]
        wins[w, WN_CLO] = st[s, K_CLO]
        wins[w, WN_CPORT] = st[s, K_CPORT]
        wins[w, WN_SHI] = st[s, K_SHI]
        wins[w, WN_SLO] = st[s, K_SLO]
        wins[w, WN_SPORT] = st[s, K_SPORT]
        wins[w, WN_LAST] = st[s, K_LAST_TS]
    return w


@nb.njit(cache=True, nogil=True)
def _stick(key: int, flagged: np.ndarray, st: np.ndarray, wins: np.ndarray,
           ctl: np.ndarray) -> None:  # fmt: skip
    """Every packet of ``key`` from the capture's start to its end to the exact tracker
    (a packet without a connection the lane follows, an ICMP error, a shared key)."""
    w = _get(flagged, key)
    if w >= 0:
        wins[w, WN_START] = 0
        wins[w, WN_CAN] = 0
    else:
        _put(flagged, ctl, C_FLAGGED, key, _window(key, 0, -1, False, -1, st, wins, ctl))


@nb.njit(cache=True, nogil=True)
def reject(row: np.ndarray, table: np.ndarray, flagged: np.ndarray, st: np.ndarray,
           wins: np.ndarray, ctl: np.ndarray) -> None:  # fmt: skip
    """A connection the walk completed (``row``, its slot row) that the template rejects
    after all (its HTTP): the exact tracker is fed its 4-tuple from its first frame, up
    to the next connection's SYN when the lane follows one already, else as a window
    the lane may end at a fresh SYN."""
    key = row[K_HASH]
    start = row[K_SYN_FRAME]
    w = _get(flagged, key)
    if w >= 0:  # handed over since (it came in the same call of a kernel): from here
        if start < wins[w, WN_START]:
            wins[w, WN_START] = start
        return
    s = _get(table, key)
    if s >= 0:  # the next connection on the 4-tuple, begun at its SYN
        _window(key, start, st[s, K_SYN_FRAME], False, -1, st, wins, ctl)
        return
    # the window's facts from the row, lent as a table of one slot
    w = _window(key, start, -1, True, 0, row.reshape(1, -1), wins, ctl)
    _put(flagged, ctl, C_FLAGGED, key, w)


@nb.njit(cache=True, nogil=True, inline="always")
def _letter(st: np.ndarray, s: int, code: int) -> None:
    packed = st[s, K_HIST]
    n = st[s, K_NHIST]
    if n >= 16:  # no room: the record will not be written (``Lane._build``)
        st[s, K_NHIST] = 17
        return
    for k in range(n):
        if (packed >> (4 * k)) & 0xF == code:
            return
    st[s, K_HIST] = packed | (code << (4 * n))
    st[s, K_NHIST] = n + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _free_turns(s: int, st: np.ndarray, tnext: np.ndarray, tfree: np.ndarray,
                ctl: np.ndarray) -> None:  # fmt: skip
    c = st[s, K_TFIRST]
    while c >= 0:
        nxt = tnext[c]
        tnext[c] = -1
        tfree[ctl[C_TFREE]] = c
        ctl[C_TFREE] += 1
        c = nxt
    st[s, K_TFIRST] = -1
    st[s, K_TLAST] = -1


@nb.njit(cache=True, nogil=True, inline="always")
def _log_letter(st: np.ndarray, s: int, code: int, count: int) -> bool:
    """Zeek's logarithmic letters (``T``): recorded at the 1st, 10th, 100th... time.
    False when the history has no room left (16 letters)."""
    if count not in (1, 10, 100, 1000, 10000, 100000, 1000000):
        return True
    n = st[s, K_NHIST]
    if n >= 16:
        return False
    st[s, K_HIST] = st[s, K_HIST] | (code << (4 * n))
    st[s, K_NHIST] = n + 1
    return True


@nb.njit(cache=True, nogil=True, inline="always")
def _counted(st: np.ndarray, s: int, d: int, f: int, t: int) -> None:
    """A packet of slot ``s`` from side ``d`` counted: its side's packets, the last frame,
    the latest and the last time."""
    if d == 0:
        st[s, K_CPKTS] += 1
    else:
        st[s, K_SPKTS] += 1
    st[s, K_LAST_FRAME] = f
    if t > st[s, K_END_TS]:
        st[s, K_END_TS] = t
    st[s, K_LAST_TS] = t


@nb.njit(cache=True, nogil=True, inline="always")
def _quiet_max(st: np.ndarray, s: int, pressure: bool) -> int:
    """The longest silence the template allows this connection now: under a flood's
    pressure, a SYN unanswered for ``SYN_PRESSURE_NS`` may be one the exact tracker has
    finished (``Tracker.sweep``), so its next packet is the exact tracker's to judge."""
    # (no branch: each would keep a reference count of ``st``, numba's, a packet)
    phase = st[s, K_PHASE]
    est = (phase == P_EST) & (st[s, K_CFIN_FRAME] == 0) & (st[s, K_SFIN_FRAME] == 0)
    syn = pressure & (phase == P_SYN)
    return GAP_NS + est * (IDLE_MAX_NS - GAP_NS) + syn * (SYN_PRESSURE_NS - GAP_NS)


@nb.njit(cache=True, nogil=True, inline="always")
def _pressed(ctl: np.ndarray) -> bool:
    """Are so many connections followed that unanswered SYNs go after a short silence, as
    in the exact tracker under a flood (``connections.LIVE_PRESSURE``)?"""
    return ctl[C_TABLE] > PRESSURE


@nb.njit(cache=True, nogil=True)
def _drop(s: int, table: np.ndarray, flagged: np.ndarray, st: np.ndarray, free: np.ndarray, ctl: np.ndarray,
          tnext: np.ndarray, tfree: np.ndarray, why: int, wins: np.ndarray) -> None:  # fmt: skip
    """Hand slot ``s``'s 4-tuple to the exact tracker from the connection's SYN (a window)
    and let the slot go; ``why`` is counted in ``ctl[C_WHY + why]``. The window may end
    at a fresh SYN, but not after a silence the exact tracker may have ended the
    connection in (its next packet would be a connection of its own there), nor after
    an ICMP error (read before the batch's packets: it may be the next connection's),
    nor for a key two 4-tuples share."""
    ctl[C_WHY + why] += 1
    _free_turns(s, st, tnext, tfree, ctl)
    key = st[s, K_HASH]
    if why == W_TUPLE:
        _stick(key, flagged, st, wins, ctl)
    elif _get(flagged, key) < 0:
        w = _window(key, st[s, K_SYN_FRAME], -1, why != W_TIME and why != W_ICMP, s, st, wins, ctl)
        _put(flagged, ctl, C_FLAGGED, key, w)
    if _get(table, key) == s:
        _pop(table, ctl, C_TABLE, key)
    st[s, K_USED] = 0
    free[ctl[C_NFREE]] = s
    ctl[C_NFREE] += 1


@nb.njit(cache=True, nogil=True)
def _new_chunk(s: int, st: np.ndarray, tnext: np.ndarray, tfree: np.ndarray,
               ctl: np.ndarray) -> bool:  # fmt: skip
    """Slot ``s``'s next turns go in a new chunk from the free pool (False: none is free;
    grow the pool, and walk on from this packet). Called every ``CHUNK`` turns only: a
    call (or a helper inlined) with arrays costs numba's reference counts of them, which
    at every turn were ~5 % of a run (the JIT kernels'; the built ones count none:
    ``_native``)."""
    if ctl[C_TFREE] == 0:
        return False
    ctl[C_TFREE] -= 1
    c = tfree[ctl[C_TFREE]]
    tnext[c] = -1
    if st[s, K_NTURNS] == 0:
        st[s, K_TFIRST] = c
    else:
        tnext[st[s, K_TLAST]] = c
    st[s, K_TLAST] = c
    return True


@nb.njit(cache=True, nogil=True)
def _begun(key: int, fresh: bool, isn: int, flagged: np.ndarray, wins: np.ndarray) -> None:
    """A slot just handed over at a client's fresh SYN (``fresh``) with another sequence
    number: the exact tracker starts a connection there, so that SYN sent again must not
    end the window, but a SYN with yet another number still may (``walk``)."""
    if fresh:
        w = _get(flagged, key)
        if w >= 0 and wins[w, WN_CAN] != 0:
            wins[w, WN_ISN] = isn


@nb.njit(cache=True, nogil=True, inline="always")
def _emit(s: int, st: np.ndarray, tu: np.ndarray, tnext: np.ndarray, tfree: np.ndarray,
          out: np.ndarray, out_t: np.ndarray, ctl: np.ndarray) -> None:  # fmt: skip
    """Copy slot ``s`` and its turns to the output and let its turn chunks go."""
    j = ctl[C_NOUT]
    for f in range(st.shape[1]):  # (element by element: a slice copied allocates)
        out[j, f] = st[s, f]
    n = st[s, K_NTURNS]
    o = ctl[C_NOUTT]
    out[j, K_TOFF] = o
    c = st[s, K_TFIRST]
    k = 0
    while k < n:
        m = min(CHUNK, n - k)
        for r in range(m):
            for f in range(tu.shape[2]):
                out_t[o + k + r, f] = tu[c, r, f]
        k += m
        c = tnext[c]
    ctl[C_NOUTT] = o + n
    ctl[C_NOUT] = j + 1
    _free_turns(s, st, tnext, tfree, ctl)


@nb.njit(cache=True, nogil=True, inline="always")
def _let_go(s: int, table: np.ndarray, st: np.ndarray, tu: np.ndarray, tnext: np.ndarray,
            tfree: np.ndarray, free: np.ndarray, out: np.ndarray, out_t: np.ndarray,
            ctl: np.ndarray) -> None:  # fmt: skip
    """A connection done and quiet: to the output, and its slot to the free list."""
    _emit(s, st, tu, tnext, tfree, out, out_t, ctl)
    _pop(table, ctl, C_TABLE, st[s, K_HASH])
    st[s, K_USED] = 0
    free[ctl[C_NFREE]] = s
    ctl[C_NFREE] += 1


@nb.njit(cache=True, nogil=True, inline="always")
def _room(out: np.ndarray, out_t: np.ndarray, ctl: np.ndarray) -> bool:
    """Can the output take one more connection? (``&``, not ``and``: a branch here cost
    numba's reference counting of the three arrays at every packet of the walk, 10 % of
    a run's time.)"""
    return (ctl[C_NOUT] < len(out) - 1) & (ctl[C_NOUTT] + MAX_TURNS <= len(out_t))


@nb.njit(cache=True, nogil=True, inline="always")
def _start(s: int, key: int, i: int, frame: np.ndarray, ts: np.ndarray, ipver: np.ndarray,
           shi: np.ndarray, slo: np.ndarray, dhi: np.ndarray, dlo: np.ndarray,
           sport: np.ndarray, dport: np.ndarray, seq: np.ndarray, ttl: np.ndarray,
           st: np.ndarray) -> None:  # fmt: skip
    st[s, :] = 0
    st[s, K_USED] = 1
    st[s, K_HASH] = key
    st[s, K_CHI] = shi[i]
    st[s, K_CLO] = slo[i]
    st[s, K_SHI] = dhi[i]
    st[s, K_SLO] = dlo[i]
    st[s, K_CPORT] = sport[i]
    st[s, K_SPORT] = dport[i]
    st[s, K_IPVER] = ipver[i]
    st[s, K_PHASE] = P_SYN
    t = ts[i]
    st[s, K_SYN_TS] = t
    st[s, K_SYN_FRAME] = frame[i]
    st[s, K_ISN] = seq[i]
    st[s, K_ACK_TS] = -1
    st[s, K_LAST_FRAME] = frame[i]
    st[s, K_END_TS] = t
    st[s, K_LAST_TS] = t
    st[s, K_CPKTS] = 1
    st[s, K_CTTL] = ttl[i]
    st[s, K_HIST] = _L_S
    st[s, K_NHIST] = 1
    st[s, K_TFIRST] = -1
    st[s, K_TLAST] = -1


_U = np.uint64
_PA, _PB = _U(0xFF51AFD7ED558CCD), _U(0xC4CEB9FE1A85EC53)
_B7F = _U(0x7F7F7F7F7F7F7F7F)
_BLF, _BCR = _U(0x0A0A0A0A0A0A0A0A), _U(0x0D0D0D0D0D0D0D0D)


@nb.njit(cache=True, nogil=True, inline="always")
def _word(data: np.ndarray, k: np.uint64) -> np.uint64:
    """Bytes ``k``..``k + 8`` as a little-endian word (LLVM makes it one load)."""
    return (_U(data[k]) | _U(data[k + _U(1)]) << _U(8) | _U(data[k + _U(2)]) << _U(16)
            | _U(data[k + _U(3)]) << _U(24) | _U(data[k + _U(4)]) << _U(32)
            | _U(data[k + _U(5)]) << _U(40) | _U(data[k + _U(6)]) << _U(48)
            | _U(data[k + _U(7)]) << _U(56))  # fmt: skip


@nb.njit(cache=True, nogil=True, inline="always")
def _zero_bytes(x: np.uint64) -> np.uint64:
    """0x80 in each byte of ``x`` that is 0, else 0 (exact: no carries between bytes)."""
    return ~(((x & _B7F) + _B7F) | x | _B7F)


@nb.njit(cache=True, nogil=True)
def _head_key(data: np.ndarray, off: int, n: int) -> tuple[int, int]:
    """A turn's first segment's key: two independent 64-bit hashes of its length and of
    its bytes up to the end of the first ``\\r\\n\\r\\n`` (all of them without one),
    which is all the HTTP verdict reads (``_fastlane._request``/``_response``). 128 bits:
    two different heads meet on one key with odds far below any hardware error's.

    A word (8 bytes) at a time: the end is found by flagging the bytes that are CR and LF
    in each word (``_zero_bytes``) and shifting the flags of the three bytes before each
    byte into place (across words too), and each hash takes one multiply a word. A byte
    at a time this cost ~10x more (~0.5 µs for a 150-byte head, 0.3 s of a capture with
    600,000 heads); ``tests/test_fastlane.py`` holds it to a plain Python twin."""
    a = _G ^ _U(n)
    b = _PA * _U(n + 1)
    k, stop = _U(off), _U(off + n)
    end = n
    lf0 = cr0 = _U(0)  # the flags of the word before
    while k < stop:
        if k + _U(8) <= stop:
            w = _word(data, k)
        else:  # the last bytes, the rest of the word 0 (neither CR nor LF)
            w = _U(0)
            j = _U(0)
            while k + j < stop:
                w |= _U(data[k + j]) << (_U(8) * j)
                j += _U(1)
        lf, cr = _zero_bytes(w ^ _BLF), _zero_bytes(w ^ _BCR)
        ends = (lf & ((cr << _U(8)) | (cr0 >> _U(56))) & ((lf << _U(16)) | (lf0 >> _U(48)))
                & ((cr << _U(24)) | (cr0 >> _U(40))))  # fmt: skip
        if ends:  # the head ends in this word: its bytes after the first end do not count
            j = 0
            while not (ends >> _U(8 * j + 7)) & _U(1):
                j += 1
            if j < 7:
                w &= (_U(1) << _U(8 * j + 8)) - _U(1)
            end = np.int64(k - _U(off)) + j + 1
            k = stop
        a = (a ^ w) * _PA
        a ^= a >> _U(32)
        b = (b + w) * _PB
        b ^= b >> _U(29)
        lf0, cr0 = lf, cr
        k += _U(8)
    return np.int64(_mix(a ^ _U(end))), np.int64(_mix(b))


@nb.njit(cache=True, nogil=True)
def walk(start: int, frame: np.ndarray, ts: np.ndarray, ipver: np.ndarray, shi: np.ndarray,
         slo: np.ndarray, dhi: np.ndarray, dlo: np.ndarray, sport: np.ndarray,
         dport: np.ndarray, seq: np.ndarray, ack: np.ndarray, flags: np.ndarray,
         win: np.ndarray, plen: np.ndarray, pcap: np.ndarray, ttl: np.ndarray,
         h: np.ndarray, data: np.ndarray, poff: np.ndarray, table: np.ndarray, flagged: np.ndarray, st: np.ndarray, tu: np.ndarray,
         tnext: np.ndarray, tfree: np.ndarray, free: np.ndarray, ctl: np.ndarray,
         out: np.ndarray, out_t: np.ndarray, heads: np.ndarray, wins: np.ndarray,
         prev_clock: int) -> int:  # fmt: skip
    """Follow packets ``start:`` of a batch. Returns where to resume, with ``ctl[C_STATUS]``
    saying why it stopped: done, out of slots (grow), or the output is full (drain).
    ``prev_clock``: the capture's clock before the batch (the exact tracker's sweeps in
    between came at most then)."""
    n = len(frame)
    ctl[C_STATUS] = ST_DONE
    pressure = _pressed(ctl)
    tmask, fmask = len(table) - 1, len(flagged) - 1
    for i in range(start, n):
        a = i + _PF
        if a < n:
            _prefetch(table, 2 * (h[a] & tmask))
            _prefetch(flagged, 2 * (h[a] & fmask))
            if plen[a] > 0:
                _prefetch(data, poff[a])
                _prefetch(data, poff[a] + 64)
        a = i + _PF // 2
        if a < n and plen[a] > 0:  # its turn's row, where its bytes are added up
            sa = _get(table, h[a])
            if sa >= 0 and st[sa, K_NTURNS] > 0:
                _prefetch(tu, (st[sa, K_TLAST] * CHUNK + (st[sa, K_NTURNS] - 1) % CHUNK) * NT)
        if not _room(out, out_t, ctl):
            ctl[C_STATUS] = ST_FULL
            return i
        key = h[i]
        fl = flags[i] & 0x37  # FIN SYN RST ACK URG
        pl = plen[i]
        t = ts[i]
        s = _get(table, key)
        if s < 0:
            w = _get(flagged, key)
            fresh = fl == _SYN and pl == 0
            if w >= 0:  # the exact tracker's, in a window
                if wins[w, WN_CAN] != 0:
                    fwd = (wins[w, WN_CHI] == shi[i] and wins[w, WN_CLO] == slo[i]
                           and wins[w, WN_CPORT] == sport[i] and wins[w, WN_SHI] == dhi[i]
                           and wins[w, WN_SLO] == dlo[i] and wins[w, WN_SPORT] == dport[i])  # fmt: skip
                    syn = (flags[i] & 0x12) == _SYN  # a SYN without ACK, as the tracker asks
                    if fwd and fresh and seq[i] != wins[w, WN_ISN]:
                        # the tracker starts a new connection here: the lane's again
                        if ctl[C_NFREE] == 0:
                            ctl[C_STATUS] = ST_GROW
                            return i
                        wins[w, WN_END] = frame[i]
                        _pop(flagged, ctl, C_FLAGGED, key)
                        ctl[C_RESUMED] += 1
                        ctl[C_NFREE] -= 1
                        s2 = free[ctl[C_NFREE]]
                        _start(s2, key, i, frame, ts, ipver, shi, slo, dhi, dlo, sport, dport,
                               seq, ttl, st)  # fmt: skip
                        _put(table, ctl, C_TABLE, key, s2)
                        continue
                    back = (wins[w, WN_SHI] == shi[i] and wins[w, WN_SLO] == slo[i]
                            and wins[w, WN_SPORT] == sport[i] and wins[w, WN_CHI] == dhi[i]
                            and wins[w, WN_CLO] == dlo[i] and wins[w, WN_CPORT] == dport[i])  # fmt: skip
                    if ((not fwd and not back) or prev_clock - wins[w, WN_LAST] > WIN_QUIET_NS
                            or (syn and not (fwd and seq[i] == wins[w, WN_ISN]))):  # fmt: skip
                        wins[w, WN_CAN] = 0
                if t > wins[w, WN_LAST]:
                    wins[w, WN_LAST] = t
                continue
            if fresh:
                if ctl[C_NFREE] == 0:
                    ctl[C_STATUS] = ST_GROW
                    return i
                ctl[C_NFREE] -= 1
                s2 = free[ctl[C_NFREE]]
                _start(s2, key, i, frame, ts, ipver, shi, slo, dhi, dlo, sport, dport, seq, ttl,
                       st)  # fmt: skip
                _put(table, ctl, C_TABLE, key, s2)
            else:
                _stick(key, flagged, st, wins, ctl)
                ctl[C_WHY + W_MIDSTREAM] += 1
            continue
        # the slot's 4-tuple, in one direction or the other (else: a hash collision)
        if (st[s, K_CHI] == shi[i] and st[s, K_CLO] == slo[i] and st[s, K_SHI] == dhi[i]
                and st[s, K_SLO] == dlo[i] and st[s, K_CPORT] == sport[i]
                and st[s, K_SPORT] == dport[i]):  # fmt: skip
            d = 0
        elif (st[s, K_SHI] == shi[i] and st[s, K_SLO] == slo[i] and st[s, K_CHI] == dhi[i]
                and st[s, K_CLO] == dlo[i] and st[s, K_SPORT] == sport[i]
                and st[s, K_CPORT] == dport[i]):  # fmt: skip
            d = 1
        else:
            _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_TUPLE, wins)
            continue
        last = st[s, K_LAST_TS]
        if (t < last or t - last > _quiet_max(st, s, pressure)) and not (
                st[s, K_PHASE] >= P_DONE and t >= last and fl == _SYN and pl == 0
                and _get(flagged, key) < 0):  # fmt: skip
            # (but the next connection on a 4-tuple whose last one ended and went quiet
            # starts below, as if a sweep had let that one go just before)
            _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_TIME, wins)
            continue
        phase = st[s, K_PHASE]
        if fl & (_RST | _URG):
            bare = (fl & (_RST | _URG | _SYN | _FIN)) == _RST and pl == 0 and phase == P_EST
            late = st[s, K_LATE_FRAME] != 0
            closed = st[s, K_CFIN_FRAME] != 0 or st[s, K_SFIN_FRAME] != 0
            if bare and d == 0 and not late and seq[i] == st[s, K_CNEXT] and (
                    (not closed and st[s, K_TURN] != 1
                     and (st[s, K_ACK_TS] >= 0 or st[s, K_CBYTES] > 0))
                    or (st[s, K_CFIN_FRAME] != 0 and st[s, K_SFIN_FRAME] == 0
                        and st[s, K_TURN] == 2
                        and st[s, K_SLDATA_FRAME] > st[s, K_CFIN_FRAME])):  # fmt: skip
                # the client's RST, in sequence: on an open connection nothing closed yet,
                # no request outstanding, whose client acknowledged the handshake or sent
                # data (a full one); or after its own FIN, at the server's data that came
                # after that FIN (a client that gave up on a response: ``Lane._block``):
                # RSTO
                _letter(st, s, _L_R)
            elif (bare and d == 1 and seq[i] == st[s, K_SNEXT] and ttl[i] == st[s, K_STTL]
                    and (late or (st[s, K_TURN] == 1 and not closed))):  # fmt: skip
                # the server's RST (its own: the TTL of its other packets) answering the
                # request sent after its FIN (the keep-alive race), or a request it had
                # not answered on an open connection: Zeek's RSTR
                _letter(st, s, _L_r)
            elif (phase == P_SYN and d == 1 and fl == (_RST | _ACK) and pl == 0
                    and ack[i] == ((st[s, K_ISN] + 1) & _M32)):  # fmt: skip
                # the server's RST answering the SYN: refused (Zeek's REJ); its TTL is the
                # server's own, as the exact tracker takes it (no other packet to differ)
                st[s, K_STTL] = ttl[i]
                _letter(st, s, _L_r)
            else:
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_RSTURG, wins)
                continue
            st[s, K_PHASE] = P_RST
            st[s, K_RST_FRAME] = frame[i]
            st[s, K_RST_TS] = t
            st[s, K_RST_TTL] = ttl[i]
            _counted(st, s, d, frame[i], t)
            continue
        if win[i] == 0 and not fl & _SYN:
            _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_WINDOW, wins)
            continue
        if phase >= P_DONE:  # both FINs, or the RST that ended it
            if fl & _SYN:
                if fl == _SYN and pl == 0:  # the next connection on this 4-tuple
                    _emit(s, st, tu, tnext, tfree, out, out_t, ctl)
                    _pop(table, ctl, C_TABLE, key)
                    _start(s, key, i, frame, ts, ipver, shi, slo, dhi, dlo, sport, dport, seq,
                           ttl, st)  # fmt: skip
                    _put(table, ctl, C_TABLE, key, s)
                else:
                    _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_DONE_SYN, wins)
                continue
            if phase == P_RST:
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_AFTER_RST, wins)
                continue
            nxt = st[s, K_CNEXT] if d == 0 else st[s, K_SNEXT]
            if fl != _ACK or pl != 0 or seq[i] != nxt:
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_DONE_SEG, wins)
                continue
            if d == 0 and st[s, K_ACK_TS] < 0:
                st[s, K_ACK_TS] = t
            _letter(st, s, _L_A if d == 0 else _L_a)
        elif phase == P_SYN:
            if d == 0 and fl == _SYN and pl == 0 and seq[i] == st[s, K_ISN]:
                # the SYN again: its frame and time kept as a turn's (an attempt has none;
                # one with another sequence number, a new connection, is the exact
                # tracker's: where it ends the first is its own clock's)
                nt = st[s, K_NTURNS]
                if nt >= MAX_SYNS:
                    _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_HANDSHAKE, wins)
                    continue
                if nt % CHUNK == 0 and not _new_chunk(s, st, tnext, tfree, ctl):
                    ctl[C_STATUS] = ST_GROW
                    return i
                c, k = st[s, K_TLAST], nt % CHUNK
                for j in range(NT):
                    tu[c, k, j] = 0
                tu[c, k, T_FRAME] = frame[i]
                tu[c, k, T_TS] = t
                st[s, K_NTURNS] = nt + 1
            elif (d == 1 and fl == (_SYN | _ACK) and pl == 0 and st[s, K_NTURNS] == 0
                    and ack[i] == ((st[s, K_ISN] + 1) & _M32)):  # fmt: skip
                # (after the SYN sent again, the exact tracker's: the template has one)
                st[s, K_PHASE] = P_EST
                st[s, K_SYNACK_TS] = t
                st[s, K_SYNACK_FRAME] = frame[i]
                st[s, K_SISN] = seq[i]
                st[s, K_SNEXT] = (seq[i] + 1) & _M32
                st[s, K_CNEXT] = (st[s, K_ISN] + 1) & _M32
                st[s, K_STTL] = ttl[i]
                _letter(st, s, _L_h)
            else:
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_HANDSHAKE, wins)
                _begun(key, d == 0 and fl == _SYN and pl == 0, seq[i], flagged, wins)
                continue
        else:
            if st[s, K_LATE_FRAME] != 0:  # after the late request, only the server's RST
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_AFTER_LATE, wins)
                continue
            nxt = st[s, K_CNEXT] if d == 0 else st[s, K_SNEXT]
            fin = fl & _FIN
            if fl & _SYN or not fl & _ACK:
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_SEQ, wins)
                _begun(key, d == 0 and fl == _SYN and pl == 0, seq[i], flagged, wins)
                continue
            if seq[i] != nxt:
                # a whole retransmission of data already delivered (before any FIN): the
                # exact tracker trims it away; only counters and Zeek's T change
                behind = (nxt - seq[i]) & _M32
                if (pl == 0 or fin or pcap[i] != pl or behind >= _HALF or behind < pl
                        or st[s, K_CFIN_FRAME] != 0 or st[s, K_SFIN_FRAME] != 0):  # fmt: skip
                    _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_SEQ, wins)
                    continue
                col = K_CRETX if d == 0 else K_SRETX
                st[s, col] += 1
                if not _log_letter(st, s, _L_T if d == 0 else _L_t, st[s, col]):
                    _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_SEQ, wins)
                    continue
                if d == 0:
                    st[s, K_CBYTES] += pl
                    st[s, K_CLDATA_TS] = t
                    st[s, K_CLDATA_FRAME] = frame[i]
                    st[s, K_CPKTS] += 1
                else:
                    st[s, K_SBYTES] += pl
                    st[s, K_SLDATA_TS] = t
                    st[s, K_SLDATA_FRAME] = frame[i]
                    st[s, K_SPKTS] += 1
                st[s, K_LAST_FRAME] = frame[i]
                if t > st[s, K_END_TS]:
                    st[s, K_END_TS] = t
                st[s, K_LAST_TS] = t
                continue
            if fin and st[s, K_CFIN_FRAME if d == 0 else K_SFIN_FRAME] != 0:
                _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_FIN_TWICE, wins)
                continue
            if pl:
                # a request after the server's FIN (and its answers): one whole segment
                # opening a client turn, the client not closed
                late = (st[s, K_SFIN_FRAME] != 0 and d == 0 and not fin
                        and st[s, K_TURN] == 2)  # fmt: skip
                # ... or the server's, after the client's FIN (the client gave up waiting)
                given_up = d == 1 and st[s, K_CFIN_FRAME] != 0 and st[s, K_SFIN_FRAME] == 0
                if pcap[i] != pl or (st[s, K_CFIN_FRAME] != 0 and not given_up) or (
                        st[s, K_SFIN_FRAME] != 0 and not late):  # fmt: skip
                    _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_DATA_CLOSED, wins)
                    continue
                nt = st[s, K_NTURNS]
                if st[s, K_TURN] != d + 1:
                    if (nt == 0 and d == 1) or nt >= MAX_TURNS:
                        _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_TURNS, wins)
                        continue
                    if nt % CHUNK == 0 and not _new_chunk(s, st, tnext, tfree, ctl):
                        ctl[C_STATUS] = ST_GROW
                        return i
                    c, k = st[s, K_TLAST], nt % CHUNK
                    tu[c, k, T_DIR] = d
                    tu[c, k, T_FRAME] = frame[i]
                    tu[c, k, T_TS] = t
                    tu[c, k, T_BYTES] = 0
                    tu[c, k, T_NSEG] = 0
                    nt += 1
                    st[s, K_NTURNS] = nt
                    st[s, K_TURN] = d + 1
                    h1, h2 = _head_key(data, poff[i], pcap[i])
                    tu[c, k, T_H1] = h1
                    tu[c, k, T_H2] = h2
                    tu[c, k, T_HLEN] = pcap[i]
                    j = ctl[C_NHEADS]
                    heads[j, 0] = i
                    heads[j, 1] = d
                    heads[j, 2] = h1
                    heads[j, 3] = h2
                    ctl[C_NHEADS] = j + 1
                if late:  # (set here: the walk may stop above to grow, and resume)
                    st[s, K_LATE_FRAME] = frame[i]
                    st[s, K_LATE_TS] = t
                c = st[s, K_TLAST]
                k = (nt - 1) % CHUNK
                tu[c, k, T_BYTES] += pl
                tu[c, k, T_LFRAME] = frame[i]
                tu[c, k, T_LTS] = t
                tu[c, k, T_NSEG] += 1
                if d == 0:
                    st[s, K_CBYTES] += pl
                    if st[s, K_CFDATA_FRAME] == 0:
                        st[s, K_CFDATA_FRAME] = frame[i]
                    st[s, K_CLDATA_TS] = t
                    st[s, K_CLDATA_FRAME] = frame[i]
                else:
                    st[s, K_SBYTES] += pl
                    if st[s, K_SFDATA_FRAME] == 0:
                        st[s, K_SFDATA_FRAME] = frame[i]
                    st[s, K_SLDATA_TS] = t
                    st[s, K_SLDATA_FRAME] = frame[i]
                nxt = (nxt + pl) & _M32
                if not fin:
                    _letter(st, s, _L_D if d == 0 else _L_d)
            elif not fin:
                if d == 0 and st[s, K_ACK_TS] < 0:
                    st[s, K_ACK_TS] = t
                _letter(st, s, _L_A if d == 0 else _L_a)
            if fin:
                nxt = (nxt + 1) & _M32
                if d == 0:
                    st[s, K_CFIN_FRAME] = frame[i]
                    st[s, K_CFIN_TS] = t
                    _letter(st, s, _L_F)
                else:
                    st[s, K_SFIN_FRAME] = frame[i]
                    st[s, K_SFIN_TS] = t
                    _letter(st, s, _L_f)
                if st[s, K_CFIN_FRAME] != 0 and st[s, K_SFIN_FRAME] != 0:
                    st[s, K_PHASE] = P_DONE
            if d == 0:
                st[s, K_CNEXT] = nxt
            else:
                st[s, K_SNEXT] = nxt
        _counted(st, s, d, frame[i], t)
    return n


@nb.njit(cache=True, nogil=True)
def sweep(start: int, clock: int, table: np.ndarray, flagged: np.ndarray, st: np.ndarray,
          free: np.ndarray, ctl: np.ndarray, out: np.ndarray, out_t: np.ndarray,
          tu: np.ndarray, tnext: np.ndarray, tfree: np.ndarray, wins: np.ndarray) -> int:  # fmt: skip
    """Let go of connections quiet for longer than the template allows, from slot
    ``start`` on: replayed when they are done, else marked for the exact tracker.
    ``ctl[C_STATUS]`` is ST_FULL when the output could not take them all: drain it, and
    sweep again from the slot returned."""
    ctl[C_STATUS] = ST_DONE
    pressure = _pressed(ctl)
    for s in range(start, len(st)):
        if st[s, K_USED] == 0 or clock - st[s, K_LAST_TS] <= _quiet_max(st, s, pressure):
            continue
        if st[s, K_PHASE] == P_SYN:
            # never answered: done once as quiet as the exact tracker waits for one
            # (``Tracker.sweep``); until then its next SYN, from the walk, is judged
            quiet = SYN_PRESSURE_NS if pressure else SYN_QUIET_NS
            if clock - st[s, K_LAST_TS] <= quiet:
                continue
        if st[s, K_PHASE] >= P_DONE or st[s, K_PHASE] == P_SYN:  # (P_DONE: both FINs, or
            if not _room(out, out_t, ctl):  # the RST that ended it)
                ctl[C_STATUS] = ST_FULL
                return s
            _let_go(s, table, st, tu, tnext, tfree, free, out, out_t, ctl)
        else:
            _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_OPEN, wins)
    return len(st)


@nb.njit(cache=True, nogil=True)
def finish(table: np.ndarray, flagged: np.ndarray, st: np.ndarray, free: np.ndarray, ctl: np.ndarray,
           out: np.ndarray, out_t: np.ndarray, tu: np.ndarray, tnext: np.ndarray,
           tfree: np.ndarray, wins: np.ndarray, final: bool) -> None:  # fmt: skip
    """End of the capture (``final``; else of a byte range of it): every connection still
    followed is replayed or marked; ``ctl[C_STATUS]`` is ST_FULL when the output could not
    take them all (call again). A SYN never answered ends only with the capture."""
    ctl[C_STATUS] = ST_DONE
    for s in range(len(st)):
        if st[s, K_USED] == 0:
            continue
        if st[s, K_PHASE] >= P_DONE or (final and st[s, K_PHASE] == P_SYN):
            if not _room(out, out_t, ctl):
                ctl[C_STATUS] = ST_FULL
                return
            _let_go(s, table, st, tu, tnext, tfree, free, out, out_t, ctl)
        else:
            _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_OPEN, wins)


@nb.njit(cache=True, nogil=True)
def flag_key(key: int, table: np.ndarray, flagged: np.ndarray, st: np.ndarray, free: np.ndarray,
             ctl: np.ndarray, tnext: np.ndarray, tfree: np.ndarray, wins: np.ndarray) -> None:  # fmt: skip
    """An ICMP error quoting ``key``: its connection (or every packet of the key) to the
    exact tracker, in a window no SYN ends."""
    s = _get(table, key)
    if s >= 0:
        _drop(s, table, flagged, st, free, ctl, tnext, tfree, W_ICMP, wins)
    else:
        w = _get(flagged, key)
        if w >= 0:
            wins[w, WN_CAN] = 0
        else:
            _stick(key, flagged, st, wins, ctl)
