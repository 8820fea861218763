"""The command line: parse options, call one library function, render.

No boto3, DuckDB or SQL here.  Library errors are typed (``trailscan.errors``) and
become one line on stderr with their exit code in one place, :class:`Cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from trailscan import __version__
from trailscan.errors import InputError, TrailscanError, UsageError
from trailscan.model import ProgressFn
from trailscan.render import FORMATS, render_rows


class Cli(click.Group):
    """A click group that turns trailscan's typed errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrailscanError as error:
            click.echo(f"trailscan: error: {error}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("trailscan: interrupted; everything stored so far is kept", err=True)
            ctx.exit(130)


def db_option(function):
    return click.option(
        "--db",
        "db",
        metavar="PATH",
        envvar="TRAILSCAN_DB",
        help="DuckDB store to use (default: ~/.local/share/trailscan/trailscan.duckdb; "
        "':memory:' for a throw-away one).",
    )(function)


def format_option(choices=FORMATS):
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default="table", show_default=True, help="Output format."
    )


@contextmanager
def progress_reporter() -> Iterator[ProgressFn | None]:
    """A progress bar on stderr when it is a terminal; nothing when piped."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def report(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield report


def open_store(db: str | None, *, read_only: bool = False):
    from trailscan.store import Store

    return Store.open(db, read_only=read_only)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trailscan")
def main() -> None:
    """Why do workloads on Amazon EKS get refused by AWS? trailscan reads CloudTrail
    into DuckDB, finds the refused calls, and says what to change."""


# -- ingest ----------------------------------------------------------------------------


@main.group()
def ingest() -> None:
    """Read CloudTrail records into the store."""


@ingest.command("files")
@click.argument("paths", nargs=-1, required=True)
@db_option
def ingest_files_command(paths: tuple[str, ...], db: str | None) -> None:
    """Ingest local files, directories (recursive) or globs.

    Every shape CloudTrail is found in is read, gzip-compressed or not: S3 delivery
    files ({"Records": […]}), JSON arrays, single records, NDJSON, LookupEvents output
    and EventBridge envelopes. Digest files are skipped. An unreadable file is named
    on stderr and the command exits 2; the readable ones are stored all the same.
    """
    from trailscan.sources.files import ingest_files

    with open_store(db) as store, progress_reporter() as progress:
        result, _ = ingest_files(store, paths, progress=progress)
        total = store.count_events()
    for problem in result.problems:
        click.echo(f"trailscan: {problem}", err=True)
    summary = (
        f"read {result.records} records from {result.files} files: {result.new_events} new events "
        f"stored ({total} in the store)"
    )
    if result.digests:
        summary += f"; {result.digests} digest files skipped"
    if result.skipped:
        summary += f"; {result.skipped} JSON values that are not CloudTrail records skipped"
    click.echo(summary, err=True)
    if result.problems:
        raise InputError(f"{len(result.problems)} of {result.files} files could not be read (named above)")


# -- queries and sql -----------------------------------------------------------------------


@main.group()
def queries() -> None:
    """The named detection queries shipped with trailscan (queries/*.sql)."""


@queries.command("list")
def queries_list() -> None:
    """List the queries with their titles."""
    from trailscan.queries import load_queries

    book = load_queries()
    width = max(len(q.name) for q in book)
    for query in book:
        click.echo(f"{query.name:<{width}}  {query.title}")


@queries.command("show")
@click.argument("name")
def queries_show(name: str) -> None:
    """Print a query's documentation, parameters and SQL."""
    from trailscan.queries import load_queries

    query = load_queries()[name]
    click.echo(f"{query.name}: {query.title}\n\n{query.description}\n")
    if query.params:
        click.echo("Parameters:")
        for param in query.params:
            default = "required" if param.required else f"default {param.default}"
            click.echo(f"  {param.name} ({param.type}, {default})  {param.doc}")
        click.echo("")
    click.echo(query.sql)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r} is not NAME=VALUE")
        params[name.strip()] = value
    return params


@queries.command("run")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="A query parameter (repeatable).")
@db_option
@format_option()
def queries_run(name: str, params: tuple[str, ...], db: str | None, fmt: str) -> None:
    """Run a named query over the store."""
    from trailscan.queries import load_queries

    query = load_queries()[name]
    values = query.bind(_parse_params(params))
    with open_store(db, read_only=db != ":memory:") as store:
        columns, rows = store.query(query.typed_sql(), values)
    render_rows(columns, rows, fmt, sys.stdout, title=query.title)


@main.command("sql")
@click.argument("statement")
@click.option("--write", is_flag=True, help="Open the store writable (default: read-only).")
@db_option
@format_option()
def sql_command(statement: str, write: bool, db: str | None, fmt: str) -> None:
    """Run one SQL statement over the store (tables: events, coverage, ingested_objects)."""
    with open_store(db, read_only=not write and db != ":memory:") as store:
        columns, rows = store.query(statement)
    render_rows(columns, rows, fmt, sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    main()
