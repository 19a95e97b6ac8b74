"""The ``pcapdiag`` command: a thin layer over ``pcapdiag.analyze`` and the reporters.

Exit codes: 0 success, 1 unreadable input (one line on stderr, results before the damage
still printed), 2 usage errors. No traceback reaches the user for either.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from pcapdiag import __version__
from pcapdiag.errors import PcapdiagError, UsageError

# The command multiplies no matrices. numpy's OpenBLAS would start a thread per core at
# import, which spin on the cores the analysis and its --jobs workers use (~0.1 s of CPU
# a run, ``perf``); before numpy is imported, and never over the user's own setting.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if TYPE_CHECKING:
    from pcapdiag.analysis import Analysis


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcapdiag")
def main() -> None:
    """Which side closed each TCP connection in a capture, when, why — and what your
    Python client (http.client, requests, aiohttp, httpx) raised."""


def _apply(options: list[Callable[..., Any]], fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``fn`` with click options, listed in the order --help shows them."""
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The connection filters every command shares."""
    options = [
        click.option("--problems", is_flag=True, help="Only connections that failed."),
        click.option(
            "--host", metavar="IP", help="Only connections with this client or server address."
        ),
        click.option(
            "--port", type=click.IntRange(0, 65535), help="Only connections with this port."
        ),
        click.option(
            "--at",
            "at",
            metavar="TIME",
            help="Around this moment (ISO 8601 or epoch seconds, as your log wrote it).",
        ),
        click.option(
            "--window",
            type=float,
            default=5.0,
            show_default=True,
            metavar="SECONDS",
            help="Half-width of the --at window.",
        ),
    ]
    return _scale(_decryption(_apply(options, fn)))


def _scale(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Parallel work and rotated files (every command that analyses captures has them)."""
    options = [
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(min=0),
            default=1,
            show_default=True,
            metavar="N",
            help="Processes to analyse with (0: one per core); results are the same.",
        ),
        click.option(
            "--dask",
            "dask",
            metavar="ADDRESS",
            help="Run on a Dask cluster (tcp://scheduler:8786); workers must see the "
            "capture paths. Needs pip install 'pcapdiag[dask]'.",
        ),
        click.option(
            "--no-stitch",
            "stitch",
            flag_value=False,
            default=True,
            help="Analyse rotated files (tcpdump -C/-G) apart instead of as one capture.",
        ),
    ]
    return _apply(options, fn)


def _decryption(fn: Callable[..., Any]) -> Callable[..., Any]:
    """TLS decryption options (every command that analyses captures has them)."""
    options = [
        click.option(
            "--keylog",
            "keylog",
            multiple=True,
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="TLS key log (SSLKEYLOGFILE) to decrypt TLS with tshark; repeatable. "
            "pcapng files with embedded secrets need none.",
        ),
        click.option(
            "--decrypt-timeout",
            type=click.FloatRange(min=1),
            default=300.0,
            show_default=True,
            metavar="SECONDS",
            help="Give up decrypting (keeping keyless verdicts) after this long.",
        ),
    ]
    return _apply(options, fn)


def _run(captures: tuple[str, ...], *, progress: bool = False, **filters: Any) -> Analysis:
    """Analyse, turning errors into exit codes: usage → 2, nothing readable → 1.

    ``progress``: show a progress bar on stderr (only when it is a terminal) for reads
    longer than a second.
    """
    # The collector paused from the imports on (numpy, numba, the kernels: 0.04 s of its
    # scans, which find nothing to free; the analysis pauses it anyway). In the command
    # (``run``), what is made by then is set aside for good (``gc.freeze``: the process
    # only writes the report and exits), else the first full scan after it reads every
    # record again (0.06 s).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(captures, progress=progress, **filters)
    finally:
        if _EXITS:
            gc.freeze()
        if enabled:
            gc.enable()


def _analyze(captures: tuple[str, ...], *, progress: bool = False, **filters: Any) -> Analysis:
    from pcapdiag.analysis import analyze as run

    if "keylog" in filters:
        filters["keylog"] = list(filters["keylog"])
    address = filters.pop("dask", None)
    cluster: Any = contextlib.nullcontext()
    if address:
        cluster = _dask_client(address)

    bar: Any = contextlib.nullcontext()
    if progress and sys.stderr.isatty():
        from pcapdiag.report.terminal import ReadProgress

        bar = ReadProgress.for_paths(list(captures))
    try:
        with cluster as client, bar as callback:
            if client is not None:
                filters["client"] = client
            result = run(list(captures), progress=callback, **filters)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except PcapdiagError as exc:
        click.echo(f"pcapdiag: {_one_line(exc)}", err=True)
        sys.exit(1)
    if all(c.error and not c.packets for c in result.captures):
        _exit_for_errors(result)  # nothing was read: only the errors to say
    return result


def _dask_client(address: str) -> Any:
    """A client of the Dask scheduler at ``address``, or a usage error saying what is missing."""
    try:
        from distributed import Client
    except ImportError:
        raise click.UsageError(
            "--dask needs Dask distributed: pip install 'pcapdiag[dask]'"
        ) from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        click.echo(f"pcapdiag: --dask {address}: cannot reach the scheduler ({exc})", err=True)
        sys.exit(1)


def _exit_for_errors(result: Analysis) -> None:
    if result.errors:
        for err in result.errors:
            click.echo(f"pcapdiag: {_one_line(err)}", err=True)
        sys.exit(1)


def _figure_output(path: str) -> str:
    """Check an output file name's extension before any work is done."""
    from pcapdiag.report.figures import format_for

    if format_for(path) is None:
        raise click.UsageError(
            f"-o {path}: the format comes from the extension; use .svg, .png or .pdf"
        )
    return path


@main.command(short_help="Analyse CAPTURES: how each TCP connection ended, and why.")
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@_filters
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write the self-contained HTML report to FILE (stdout keeps --format).",
)
def analyze(
    captures: tuple[str, ...],
    fmt: str,
    html_path: str | None,
    **filters: Any,
) -> None:
    """Analyse CAPTURES (pcap, pcapng, gzip'd; a directory means every capture in it)."""
    result = _run(
        captures,
        progress=fmt == "table",
        **filters,
    )
    html_error = _write_html(result, html_path) if html_path else None  # before stdout: a
    out = sys.stdout  # closed pipe (| head) must not lose the report
    if fmt == "json":
        from pcapdiag.report.data import write_json

        write_json(result, out, jobs=filters.get("jobs", 1))
    elif fmt == "csv":
        from pcapdiag.report.data import write_csv

        write_csv(result, out)
    else:
        from pcapdiag.report.terminal import render

        render(result, out)
    if html_error:
        click.echo(f"pcapdiag: {html_error}", err=True)
        sys.exit(1)
    _exit_for_errors(result)


def _write_html(result: Analysis, path: str) -> str | None:
    """Write the report; the error as one line if it could not be written."""
    from pcapdiag.report.html import write_report

    try:
        write_report(result, path)
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    return None


@main.command(short_help="Write a self-contained HTML report of CAPTURES.")
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@_filters
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Where to write the HTML report.",
)
def report(
    captures: tuple[str, ...],
    output: str,
    **filters: Any,
) -> None:
    """Write one self-contained HTML report of CAPTURES: verdict, findings, timeline,
    ladder diagrams, the connection table and the capture facts."""
    result = _run(
        captures,
        progress=True,
        **filters,
    )
    error = _write_html(result, output)
    if error:
        click.echo(f"pcapdiag: {error}", err=True)
        sys.exit(1)
    click.echo(f"wrote {output} ({os.path.getsize(output):,} bytes)", err=True)
    _exit_for_errors(result)


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@_filters
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Image to write: .svg, .png or .pdf (the format comes from the extension).",
)
@click.option(
    "--max-lanes",
    type=click.IntRange(1, None),
    default=300,
    show_default=True,
    help="One lane per connection up to this many; beyond, an aggregate view.",
)
def timeline(
    captures: tuple[str, ...],
    output: str,
    max_lanes: int,
    **filters: Any,
) -> None:
    """Draw every connection of CAPTURES on one time axis."""
    _figure_output(output)
    result = _run(
        captures,
        progress=True,
        **filters,
    )
    from pcapdiag.report import figures

    _save(figures.timeline(result, max_lanes=max_lanes), output)
    _exit_for_errors(result)


@main.command(short_help="Draw one connection's ladder (sequence) diagram.")
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@_decryption
@click.option(
    "--conn",
    "conn_id",
    required=True,
    type=int,
    metavar="ID",
    help="The connection's id (as in analyze's table, the JSON and the HTML report).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Image to write: .svg, .png or .pdf (the format comes from the extension).",
)
def ladder(captures: tuple[str, ...], conn_id: int, output: str, **decryption: Any) -> None:
    """Draw the ladder (sequence) diagram of one connection of CAPTURES."""
    _figure_output(output)
    result = _run(captures, progress=True, **decryption)
    rec = next((r for r in result.records if r.id == conn_id), None)
    if rec is None:
        ids = [r.id for r in result.records]
        known = (
            "the capture holds no TCP connection"
            if not ids
            else f"the only one is #{ids[0]}"
            if len(ids) == 1
            else f"ids run from {min(ids)} to {max(ids)}"
        )
        raise click.UsageError(f"--conn {conn_id}: no such connection ({known})")
    from pcapdiag.report import figures

    _save(figures.ladder(rec), output)
    _exit_for_errors(result)


def _save(fig: Any, output: str) -> None:
    from pcapdiag.report import figures

    try:
        figures.save(fig, output)
    except OSError as exc:
        click.echo(f"pcapdiag: cannot write {output}: {exc.strerror or exc}", err=True)
        sys.exit(1)


def _one_line(err: Exception) -> str:
    from pcapdiag.report.terminal import clean

    return clean(err)


_EXITS = False  # set by ``run``: this process ends with the command


def run() -> None:
    """The ``pcapdiag`` command: ``main``, then out as soon as the output is flushed.

    Tearing the interpreter down after a big capture (every module and object freed one
    by one) took 0.2 s of a 4.2 s run, with nothing left to do: temporary files are
    unlinked when made, worker processes joined, reports closed. Uncaught exceptions
    still end the usual way, with their traceback."""
    global _EXITS
    _EXITS = True
    try:
        main.main(prog_name="pcapdiag")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (| head)
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
