"""The ``pcapdiag`` command: a thin layer over ``pcapdiag.analyze`` and the reporters.

Exit codes: 0 success, 1 unreadable input (one line on stderr, results before the damage
still printed), 2 usage errors. No traceback reaches the user for either.
"""

from __future__ import annotations

import sys

import click

from pcapdiag import __version__
from pcapdiag.errors import PcapdiagError, UsageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcapdiag")
def main() -> None:
    """Which side closed each TCP connection in a capture, when, why — and what your
    Python client (http.client, requests, aiohttp, httpx) raised."""


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@click.option("--problems", is_flag=True, help="Only connections that failed.")
@click.option("--host", metavar="IP", help="Only connections with this client or server address.")
@click.option("--port", type=click.IntRange(0, 65535), help="Only connections with this port.")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Around this moment (ISO 8601 or epoch seconds, as your log wrote it).",
)
@click.option(
    "--window",
    type=float,
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Half-width of the --at window.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def analyze(
    captures: tuple[str, ...],
    problems: bool,
    host: str | None,
    port: int | None,
    at: str | None,
    window: float,
    fmt: str,
) -> None:
    """Analyse CAPTURES (pcap, pcapng, gzip'd; a directory means every capture in it)."""
    from pcapdiag.analysis import analyze as run

    try:
        result = run(list(captures), problems=problems, host=host, port=port, at=at, window=window)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except PcapdiagError as exc:
        click.echo(f"pcapdiag: {_one_line(exc)}", err=True)
        sys.exit(1)
    out = sys.stdout
    nothing_read = all(c.error and not c.packets for c in result.captures)
    if nothing_read:
        for err in result.errors:
            click.echo(f"pcapdiag: {_one_line(err)}", err=True)
        sys.exit(1)
    if fmt == "json":
        from pcapdiag.report.data import write_json

        write_json(result, out)
    elif fmt == "csv":
        from pcapdiag.report.data import write_csv

        write_csv(result, out)
    else:
        from pcapdiag.report.terminal import render

        render(result, out)
    if result.errors:
        for err in result.errors:
            click.echo(f"pcapdiag: {_one_line(err)}", err=True)
        sys.exit(1)


def _one_line(err: Exception) -> str:
    from pcapdiag.report.terminal import clean

    return clean(err)


if __name__ == "__main__":  # pragma: no cover
    main()
