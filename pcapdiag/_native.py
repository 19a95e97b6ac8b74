"""The numba kernels built ahead of time, as one CPython extension: loaded in ~10 ms with
numpy alone, where numba's JIT path costs ~0.6 s of every big run.

Why: with the JIT kernels, a run pays ``import numba`` (~0.27 s) and, at the first kernel
it loads from numba's cache, numba's typing and lowering registries (~0.28 s) and the
kernels' unpickling: about a sixth of analyzing the 2.7 M-packet benchmark capture
(``benchmarks/profile_stages.py``: "start"). numba's ``pycc`` compiles the same Python
functions with the same LLVM into an extension that needs neither.

Build (``build``, or ``python -m pcapdiag._native``, which also tries again after a
failure): once per kernel sources, numba, numpy, Python and CPU (all in the extension's
name), in a child process that loads the JIT kernels, calls every entry point
(``ENTRIES``) with the types analysis passes (``_signatures``), and compiles each
signature numba saw. The first run that wants the kernels builds it (~15 s with
numba's cache warm, a file lock keeps concurrent runs to one build);
``tools/install.sh`` builds it at install. It needs a C compiler and Python's headers
(pycc compiles its module glue): without them the build fails once, is remembered
(``<name>.failed``, with the compiler's last words), and the JIT kernels are used, as
before. ``PCAPDIAG_NATIVE=0``: the JIT kernels only.

Reference counts: the kernels are compiled without numba's (``use_nrt = False``). With
them, every array a kernel gets from Python was wrapped in a counted object for the call,
and every helper call and branch that touches an array counted it up and down (atomic
instructions): 5 % of the CPU samples of a big run, and 0.13 s of 1.49 s on the
benchmark capture, mean of six runs each, the output the same. The kernels allocate
nothing (callers hand them their buffers), which a build without counts requires; the
JIT kernels keep them. pycc's wrappers still refer to numba's runtime, so its C source
is linked in all the same (``_Uncounted``).

CPU: the kernels are compiled for this CPU's features, as numba's JIT compiles them.
pycc itself would take the CPU model's default features, which a virtual machine may
not have (AVX-512 on a "znver4" here: SIGILL); ``_main`` gives it the host's.

Calls: pycc's glue converts arguments without checking them (an array of another dtype
would be read as bytes of the declared one). So each entry point checks its arguments
against the types it was built for (dtype, dimensions, contiguity, writability, scalar
kind: ``_Entry``) and hands any other call to the JIT kernel (importing numba then;
``fallbacks`` counts them, and the tests keep it at zero for real analyses). Anything
but an entry point (the tests' use of inner kernels) comes from the JIT module.

Where: ``PCAPDIAG_CACHE_DIR``, else ``pcapdiag/__pycache__`` if writable, else the user's
cache directory (``$XDG_CACHE_HOME``, ``~/.cache``)/pcapdiag. A build found in any of them
is used, so a read-only install built by its owner works for everyone.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# The kernel modules, and the kernels Python calls (the rest are compiled into these).
ENTRIES: dict[str, tuple[str, ...]] = {
    "_compiled": ("pcap_walk", "ng_walk", "pcap_seek", "ng_seek", "decode_common"),
    "_fastlane_kernels": ("hashes", "rehash", "walk", "sweep", "flag_key", "finish", "reject"),
    "_render_kernels": ("render",),
}
# Sources whose change changes a kernel: the kernel modules, what they import constants
# from, and this file (the build).
_SOURCES = ("_native", "_fastlane", "_render", *ENTRIES)
_ENV, _DIR_ENV = "PCAPDIAG_NATIVE", "PCAPDIAG_CACHE_DIR"
_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
_BUILD_TIMEOUT_S = 1800  # numba compiling every kernel cold, then pycc: ~1 min here

fallbacks = 0  # calls handed to the JIT kernels: arguments not of a built type
_kernels: dict[str, Any] = {}
_ext: Any = None  # the extension; False: none in this process


def kernels(module: str) -> Any:
    """The kernels of ``pcapdiag.<module>`` (one of ``ENTRIES``): the built extension's
    where there is one (building it if it can), else numba's JIT module. Raises what
    importing that raises (no numba): callers then use their pure code."""
    got = _kernels.get(module)
    if got is None:
        ext = _extension()
        got = _Kernels(module, *ext) if ext else importlib.import_module(f"pcapdiag.{module}")
        _kernels[module] = got
    return got


def ready() -> bool:
    """Are the kernels built ahead of time here (loaded already, or built for this very
    code)? Then loading them costs ~10 ms, not numba's ~0.6 s: the fast paths pay off on
    smaller captures (``_fastlane.worth_it``, ``reader.COMPILE_MIN_RECORDS_BUILT``).
    Never builds."""
    if os.environ.get(_ENV, "") == "0":
        return False
    if _ext is not None:
        return bool(_ext)
    try:
        return _found(name()) is not None
    except Exception:
        return False


def loaded() -> bool:
    """Is the extension loaded in this process already (then its kernels cost nothing
    more to use)? Never loads it."""
    return bool(_ext)


def layout_digest(kernels: dict[str, Any], source: ModuleType) -> str:
    """A digest of the integer constants a kernel module (its ``globals()``) takes from
    ``source``. numba's cache is keyed on the kernel file alone; the kernel modules write
    this digest into themselves (``LAYOUT``, checked by the tests), so that a constant
    changed in ``source`` changes them too."""
    names = sorted(
        n for n in kernels if n.isupper() and n in vars(source) and isinstance(kernels[n], int)
    )
    return hashlib.sha256(repr([(n, kernels[n]) for n in names]).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading


def _extension() -> tuple[ModuleType, dict[str, Any]] | None:
    global _ext
    if _ext is None:
        _ext = False
        if os.environ.get(_ENV, "") != "0":
            try:
                _ext = _load() or False
            except Exception:  # a damaged build, an unloadable one: the JIT kernels
                _ext = False
    return _ext or None


def name() -> str:
    """The extension's module name: a digest of everything its code depends on."""
    global _name
    if _name is None:
        _name = _digest()
    return _name


_name: str | None = None


def _digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for source in _SOURCES:
        h.update((here / f"{source}.py").read_bytes())
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        raise ImportError("no numba")
    h.update((Path(spec.origin).parent / "_version.py").read_bytes())
    h.update(f"{sys.version}|{np.__version__}|{_cpu()}".encode())
    return "_pcapdiag_native_" + h.hexdigest()[:16]


def _cpu() -> str:
    """This CPU's model and features (a build is for them)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read(1 << 16).split("\n\n")[0]
        return "\n".join(
            ln for ln in first.splitlines() if ln.startswith(("model name", "flags", "Features"))
        )
    except OSError:
        import platform

        return f"{platform.machine()} {platform.processor()}"


def folders() -> list[Path]:
    """Where builds are looked for, in order; the first writable one gets new builds."""
    env = os.environ.get(_DIR_ENV)
    if env:
        return [Path(env)]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pcapdiag"
    return [Path(__file__).parent / "__pycache__", user]


def _found(mod: str) -> Path | None:
    """The first of ``folders`` that holds the build ``mod``."""
    return next((f for f in folders() if (f / (mod + _SUFFIX)).exists()), None)


def _load() -> tuple[ModuleType, dict[str, Any]] | None:
    mod = name()
    folder = _found(mod)
    if folder is None:
        folder = _writable()
        if folder is None or (folder / (mod + ".failed")).exists() or build(folder) is None:
            return None
    so = folder / (mod + _SUFFIX)
    specs = json.loads((folder / (mod + ".json")).read_text())
    spec = importlib.util.spec_from_file_location(mod, so)
    assert spec is not None and spec.loader is not None
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return ext, specs


def _writable() -> Path | None:
    for folder in folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


def build(folder: Path | None = None) -> Path | None:
    """Build the extension into ``folder`` (default: the first writable of ``folders``)
    unless it is there or failed there; returns its path, or None (the failure is in
    ``<name>.failed``). Another process building it meanwhile: waits for that one."""
    folder = folder or _writable()
    if folder is None:
        return None
    mod = name()
    so, failed = folder / (mod + _SUFFIX), folder / (mod + ".failed")
    with open(folder / (mod + ".lock"), "a") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): concurrent builds replace each other
            pass
        if so.exists() or failed.exists():
            return so if so.exists() else None
        env = dict(os.environ, **{_ENV: "0"})
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).parent.parent), *filter(None, [env.get("PYTHONPATH")])]
        )
        cmd = [sys.executable, "-m", "pcapdiag._native", "--into", str(folder)]
        try:
            run = subprocess.run(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,  # a capture read from standard input stays ours
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
            )
            why = None if so.exists() else f"exit status {run.returncode}\n{run.stderr[-4000:]}"
        except (OSError, subprocess.SubprocessError) as e:
            why = repr(e)
        if why is not None:
            failed.write_text(why)
            return None
    return so


# --------------------------------------------------------------------------- calls


class _Kernels:
    """A kernel module's entry points from the extension; anything else from numba's
    JIT module (imported on first use)."""

    def __init__(self, module: str, ext: ModuleType, specs: dict[str, Any]) -> None:
        self._module = module
        for entry, sigs in specs.get(module, {}).items():
            fns = [getattr(ext, f"{module}__{entry}__{i}") for i in range(len(sigs))]
            setattr(self, entry, _Entry(module, entry, fns, sigs))

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(f"pcapdiag.{self._module}"), attr)


class _Entry:
    """One kernel: the first built signature its arguments fit, else the JIT kernel."""

    def __init__(self, module: str, entry: str, fns: list[Callable[..., Any]], sigs: list[Any]):
        self.module, self.entry = module, entry
        self.variants = [
            (fn, [_check(a) for a in args]) for fn, args in zip(fns, sigs, strict=True)
        ]

    def __call__(self, *args: Any) -> Any:
        for fn, checks in self.variants:
            if len(checks) == len(args) and all(c(a) for c, a in zip(checks, args, strict=True)):
                return fn(*args)
        global fallbacks
        fallbacks += 1
        jit = importlib.import_module(f"pcapdiag.{self.module}")
        return getattr(jit, self.entry)(*args)


def _check(spec: Any) -> Callable[[Any], bool]:
    """A test of one argument against a built type (``_spec``)."""
    kind = spec[0]
    if kind == "array":
        _, dtype, ndim, layout, readonly = spec
        dt = np.dtype(dtype)

        def array(a: Any) -> bool:
            return (
                isinstance(a, np.ndarray)
                and a.dtype == dt
                and a.ndim == ndim
                and (layout != "C" or a.flags.c_contiguous)
                and (readonly or a.flags.writeable)
            )

        return array
    if kind == "tuple":
        items = [_check(s) for s in spec[1]]
        return lambda a: (
            isinstance(a, tuple)
            and len(a) == len(items)
            and all(c(x) for c, x in zip(items, a, strict=True))
        )
    dt = np.dtype(spec[1])
    # numba types a Python int as int64, a bool as boolean, a float as float64
    py = {"int64": int, "bool": bool, "float64": float}.get(dt.name)
    numpy_type = dt.type
    if py is int:
        return lambda a: (type(a) is int and -(2**63) <= a < 2**63) or type(a) is numpy_type
    return lambda a: type(a) is py or type(a) is numpy_type


# --------------------------------------------------------------------------- build


def _spec(t: Any) -> Any:
    """A numba type as JSON (``_check`` reads it); raises for a type it cannot check."""
    from numba.core import types

    if isinstance(t, types.Array):
        if t.layout not in ("C", "A"):
            raise TypeError(f"layout {t.layout}")
        return ["array", np.dtype(str(t.dtype)).str, t.ndim, t.layout, bool(not t.mutable)]
    if isinstance(t, types.BaseTuple):
        return ["tuple", [_spec(x) for x in t]]
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return ["scalar", np.dtype(str(t) if not isinstance(t, types.Boolean) else "bool").name]
    raise TypeError(f"no check for {t}")


def _signatures() -> dict[str, dict[str, list[Any]]]:
    """Every entry point's signatures, as numba compiled them for the calls analysis
    makes: the explicit ones of ``_compiled``, ``_fastlane._warm``'s, and calls with the
    types the readers pass where those differ."""
    os.environ[_ENV] = "0"
    os.environ["PCAPDIAG_COMPILED"] = "1"
    from pcapdiag import _fastlane, reader

    rd = reader.compiled_kernels(load=True)
    buf = np.frombuffer(bytes(64), np.uint8)  # read-only, as a mapped file is
    rd.pcap_seek(buf, 0, 0, 16, False, 1 << 18, 0, 1)
    rd.ng_seek(buf, 0, 0, False, 1, 1 << 20, reader._NG_STOPS, 0, 1)
    if _fastlane.kernels() is None:
        raise RuntimeError("the fast lane's kernels did not compile")
    _fastlane._warm(readonly=True)
    lane = _fastlane.Lane(_fastlane._Discard(), 0, "", 0)
    lane._reserve(1 << 12)  # grows the tables: rehash
    out: dict[str, dict[str, list[Any]]] = {}
    for module, entries in ENTRIES.items():
        mod = importlib.import_module(f"pcapdiag.{module}")
        for entry in entries:
            sigs = list(getattr(mod, entry).nopython_signatures)
            if not sigs:
                raise RuntimeError(f"{module}.{entry} was not compiled")
            out.setdefault(module, {})[entry] = _read_only_merged(sigs)
    return out


def _read_only_merged(sigs: list[Any]) -> list[Any]:
    """Signatures that differ only in whether an array is writable (the fast lane's walk
    gets the packets' bytes writable from ``_warm``, read-only from a mapped file) become
    one whose array is read-only: that one takes either."""
    from numba.core import types

    if len(sigs) < 2:
        return sigs
    read_only = {
        i
        for s in sigs
        for i, t in enumerate(s.args)
        if isinstance(t, types.Array) and not t.mutable
    }
    merged = dict.fromkeys(
        (
            s.return_type,
            tuple(
                t.copy(readonly=True) if i in read_only and isinstance(t, types.Array) else t
                for i, t in enumerate(s.args)
            ),
        )
        for s in sigs
    )
    return [rt(*args) for rt, args in merged] if len(merged) < len(sigs) else sigs


def _main(folder: Path) -> None:
    import tempfile
    import warnings

    warnings.simplefilter("ignore")  # pycc's and distutils' deprecations
    mod = name()
    sigs = _signatures()
    from numba.core import codegen
    from numba.pycc import CC

    class _Uncounted(CC):  # see the docstring: "Reference counts"
        def _get_mixin_sources(self) -> list[str]:
            runtime = Path(importlib.import_module("numba.pycc").__file__).parent  # type: ignore[arg-type]
            return [*super()._get_mixin_sources(), str(runtime / "../core/runtime/nrt.cpp")]

    host = codegen.get_host_cpu_features()
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: host  # see the docstring
    specs: dict[str, dict[str, list[Any]]] = {}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cc = _Uncounted(mod)
        cc.use_nrt = False
        cc.output_dir = tmp
        cc.target_cpu = "host"
        for module, entries in sigs.items():
            jit = importlib.import_module(f"pcapdiag.{module}")
            for entry, ss in entries.items():
                for i, sig in enumerate(ss):
                    cc.export(f"{module}__{entry}__{i}", sig)(getattr(jit, entry).py_func)
                specs.setdefault(module, {})[entry] = [[_spec(t) for t in s.args] for s in ss]
        cc.compile()
        built = Path(tmp) / (mod + _SUFFIX)
        (Path(tmp) / "specs.json").write_text(json.dumps(specs))
        os.replace(Path(tmp) / "specs.json", folder / (mod + ".json"))
        os.replace(built, folder / (mod + _SUFFIX))  # last: its presence means complete
    if folder == Path(__file__).parent / "__pycache__":  # this install's: older builds go
        for old in folder.glob("_pcapdiag_native_*"):
            if not old.name.startswith(mod + "."):
                old.unlink(missing_ok=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build pcapdiag's compiled kernels.")
    parser.add_argument("--into", type=Path, help="the folder (default: as analysis looks)")
    ns = parser.parse_args()
    if ns.into is not None:
        _main(ns.into)
    else:  # by hand: a failure noted before is tried again
        folder = _writable()
        if folder is not None:
            (folder / (name() + ".failed")).unlink(missing_ok=True)
        got = build(folder)
        where = folder / (name() + ".failed") if folder else "no writable folder"
        print(got or f"not built: {where}")
        sys.exit(0 if got else 1)
