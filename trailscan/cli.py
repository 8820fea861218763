"""The command line: parse options, call one library function, render.

No boto3, DuckDB or SQL here.  Library errors are typed (``trailscan.errors``) and
become one line on stderr with their exit code in one place, :class:`Cli`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from trailscan.errors import InputError, TrailscanError, UsageError
from trailscan.model import ProgressFn, Window
from trailscan.report.terminal import ROW_FORMATS, render_rows
from trailscan.sources import IngestRequest, source_names
from trailscan.version import __version__


def say(text: object) -> None:
    """One line on stderr; whatever it quotes of CloudTrail or AWS (an S3 key, an error text)
    has its control characters shown, never acted on by the terminal."""
    from trailscan.report.safe import visible

    click.echo(visible(text), err=True)


class Cli(click.Group):
    """A click group that turns trailscan's typed errors, and click's own usage errors
    (an option value its type refused, a missing argument), into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrailscanError as error:
            say(f"trailscan: error: {error}")
            ctx.exit(error.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a group named alone: its help, as click shows it
        except click.UsageError as error:
            _usage_error(ctx, error)
        except KeyboardInterrupt as stop:
            from trailscan.interrupt import Terminated

            if isinstance(stop, Terminated):
                say("trailscan: terminated (SIGTERM); everything stored so far is kept")
                ctx.exit(143)
            say("trailscan: interrupted; everything stored so far is kept")
            ctx.exit(130)
        except RuntimeError as error:
            # DuckDB turns a signal during a statement into this (a Ctrl-C while it works).
            if "interrupted" not in str(error).lower():
                raise
            say("trailscan: interrupted; everything stored so far is kept")
            ctx.exit(130)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:  # `trailscan --bogus`
            _usage_error(ctx, error)
            raise


def _usage_error(ctx: click.Context, error: click.UsageError) -> None:
    where = error.ctx.command_path if error.ctx else ctx.command_path
    click.echo(f"trailscan: error: {error.format_message()} (see `{where} --help`)", err=True)
    ctx.exit(error.exit_code)


def db_option(function):
    return click.option(
        "--db",
        "db",
        metavar="PATH",
        envvar="TRAILSCAN_DB",
        help="DuckDB store to use (default: ~/.local/share/trailscan/trailscan.duckdb; "
        "':memory:' for a throw-away one).",
    )(function)


def format_option(choices=ROW_FORMATS):
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default="table", show_default=True, help="Output format."
    )


class MomentType(click.ParamType):
    """``30m``, ``24h``, ``7d``, ``now`` or an ISO time, checked when the options are read
    (the window is built from ``--since`` and ``--until`` together: a duration for the
    start counts back from the end)."""

    name = "WHEN"

    def convert(self, value, param, ctx):
        from trailscan.window import parse_moment

        try:
            parse_moment(value)
        except TrailscanError as error:
            self.fail(str(error), param, ctx)
        return value


MOMENT = MomentType()


def window_options(*, required: bool):
    """``--since`` and ``--until``, the same for every command that takes a window."""
    since_help = "Window start: 30m, 24h, 7d or an ISO time." + ("" if required else " (default: everything stored)")

    def decorate(function):
        function = click.option("--until", type=MOMENT, metavar="WHEN", help="Window end (default: now).")(function)
        return click.option("--since", type=MOMENT, required=required, metavar="WHEN", help=since_help)(function)

    return decorate


def make_window(since: str | None, until: str | None) -> Window | None:
    from trailscan.window import make_window as build

    return build(since, until)


def _values(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A repeatable, comma-separated list option as one tuple."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def engine_options(function):
    """``--engine`` and Athena's options (``--athena-table``, ``--workgroup``, ``--output``)."""
    options = [
        click.option("--engine", type=click.Choice(("local", "athena")), default="local", show_default=True,
                     help="Who reads the trail: this machine, or Athena where the trail lies (only what the "
                     "explainer needs comes back)."),
        click.option("--athena-table", metavar="DB.TABLE",
                     help="The CloudTrail table Athena reads (--engine athena; see `trailscan athena setup`)."),
        click.option("--workgroup", default="primary", show_default=True, metavar="NAME",
                     help="Athena workgroup (--engine athena)."),
        click.option("--output", metavar="s3://BUCKET/PREFIX/",
                     help="Where Athena writes query results (default: the workgroup's)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _athena_request(engine: str, athena_table: str | None, workgroup: str, output: str | None):
    """The Athena options as the library takes them (None for the local engine)."""
    if engine != "athena":
        if athena_table or output:
            raise UsageError("--athena-table and --output go with --engine athena")
        return None
    from trailscan.athena import AthenaRequest

    if not athena_table:
        raise UsageError("--engine athena needs --athena-table DB.TABLE", "create one with `trailscan athena setup`")
    return AthenaRequest(table=athena_table, workgroup=workgroup, output=output)


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
    # What trailscan writes is an account's activity (the store and its WAL, downloads,
    # reports): none of it readable by others unless asked (report --file-mode).
    os.umask(os.umask(0o077) | 0o077)


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
    from trailscan.pipeline import ingest_source

    with open_store(db) as store, progress_reporter() as progress:
        result, _ = ingest_source(store, IngestRequest("files", paths=paths), window=None, progress=progress)
        total = store.count_events()
    for problem in result.problems:
        say(f"trailscan: {problem}")
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


@ingest.command("s3")
@click.option("--bucket", metavar="BUCKET", help="The trail's bucket, or s3://BUCKET/PREFIX (default: found with describe-trails).")
@click.option("--prefix", default="", metavar="PREFIX", help="The trail's S3 key prefix, if any.")
@click.option("--org-id", metavar="o-…", help="Organization trail id (default: discovered).")
@click.option(
    "--accounts",
    multiple=True,
    callback=_values,
    metavar="ID,…",
    help="Accounts to read (default: every account folder).",
)
@click.option(
    "--regions",
    multiple=True,
    callback=_values,
    metavar="REGION,…",
    help="Regions to read (default: every region folder).",
)
@window_options(required=True)
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True, help="Parallel downloads.")
@engine_options
@db_option
def ingest_s3_command(
    bucket: str | None,
    prefix: str,
    org_id: str | None,
    accounts: tuple[str, ...],
    regions: tuple[str, ...],
    since: str,
    until: str | None,
    workers: int,
    engine: str,
    athena_table: str | None,
    workgroup: str,
    output: str | None,
    db: str | None,
) -> None:
    """Ingest a window of a trail's log files from its S3 bucket.

    Reads [PREFIX/]AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/, listing only
    the days the window needs (plus an hour for delivery lag) and keeping the events
    whose eventTime is in the window. Objects already stored are not downloaded again.
    Standard AWS configuration applies (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL).
    Objects are downloaded with the AWS Common Runtime, or with boto3 behind a proxy or
    with TRAILSCAN_S3_DOWNLOADER=boto3.
    With --engine athena, Athena reads the window where it lies (--athena-table) and only
    the records the detections select come back.
    Exits 2 when some objects could not be read (named on stderr; the rest is stored),
    3 when an account or region could not be listed (or an Athena query failed).
    """
    from trailscan.errors import IncompleteCoverage
    from trailscan.model import COMPLETE, FAILED
    from trailscan.pipeline import ingest_source

    athena = _athena_request(engine, athena_table, workgroup, output)
    request = IngestRequest("s3", bucket=bucket, prefix=prefix, org_id=org_id, accounts=accounts, regions=regions,
                            workers=workers, engine=engine, athena=athena)
    window = make_window(since, until)
    with open_store(db) as store, progress_reporter() as progress:
        result, coverages = ingest_source(store, request, window=window, progress=progress)
        total = store.count_events()
    for problem in result.problems:
        say(f"trailscan: {problem}")
    for coverage in coverages:
        if coverage.status != COMPLETE:
            where = " ".join(filter(None, (coverage.account, coverage.region)))
            say(f"trailscan: {where}: {coverage.status}: {coverage.detail}")
    read = (f"Athena read {sum(c.events for c in coverages)} events in {len(coverages)} account/regions and returned "
            f"{result.records} records" if athena else
            f"read {result.records} records from {result.files} objects in {len(coverages)} account/regions")
    click.echo(f"{read}: {result.new_events} new events stored ({total} in the store)", err=True)
    failed = [c for c in coverages if c.status == FAILED]
    if failed:
        raise IncompleteCoverage(f"{len(failed)} account/regions could not be read (named above)")
    if result.problems:
        raise InputError(f"{len(result.problems)} objects could not be read (named above)")


@ingest.command("lookup")
@window_options(required=True)
@click.option(
    "--regions",
    multiple=True,
    callback=_values,
    metavar="REGION,…",
    help="Regions to read (default: us-east-1, for global STS and IAM events, and the configured region).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Targeted lookups only: web-identity and Pod Identity calls, then the calls of the sessions they "
    "minted. Much faster, but blind to everything else (node-role fallbacks among it).",
)
@db_option
def ingest_lookup_command(
    since: str, until: str | None, regions: tuple[str, ...], quick: bool, db: str | None
) -> None:
    """Ingest a window of management events through CloudTrail's LookupEvents API.

    For accounts without a trail bucket. LookupEvents serves the last 90 days, 50 events
    a page, 2 requests per second per region: every management event of the window is
    paged at that pace, regions in parallel (a region holding 20,000 events in the window
    takes 200 s). An interrupted run, started again, continues where it stopped. Data events
    (S3 object calls and the like) are never visible this way. Standard AWS configuration
    applies (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_CLOUDTRAIL). Exits 3 when a region
    could not be read completely (always so with --quick).
    """
    from trailscan.errors import IncompleteCoverage
    from trailscan.model import COMPLETE
    from trailscan.pipeline import ingest_source

    window = make_window(since, until)
    with open_store(db) as store, progress_reporter() as progress:
        result, coverages = ingest_source(store, IngestRequest("lookup", regions=regions, quick=quick), window=window,
                                          progress=progress)
        total = store.count_events()
    for coverage in coverages:
        where = f"trailscan: lookup {coverage.region}: {coverage.status}, {coverage.events} events"
        say(f"{where}: {coverage.detail}")
    click.echo(
        f"read {result.records} events in {result.files} pages from {len(coverages)} regions: "
        f"{result.new_events} new events stored ({total} in the store)",
        err=True,
    )
    incomplete = [c.region for c in coverages if c.status != COMPLETE]
    if incomplete:
        raise IncompleteCoverage(
            f"LookupEvents coverage is not complete in {', '.join(incomplete)} (see above)"
        )


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
@click.option("--dialect", type=click.Choice(("duckdb", "athena")), default="duckdb", show_default=True,
              help="duckdb: the query as written, for the local store; athena: rendered for Athena over the "
              "CloudTrail table, with its window and partitions.")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="With --dialect athena: a parameter to inline (default window: the last 24 hours).")
@click.option("--athena-table", default="cloudtrail.cloudtrail_logs", show_default=True, metavar="DB.TABLE",
              help="With --dialect athena: the table, as `trailscan athena setup` creates it.")
def queries_show(name: str, dialect: str, params: tuple[str, ...], athena_table: str) -> None:
    """Print a query's documentation, parameters and SQL (or its Athena rendering)."""
    from trailscan.queries import load_queries

    query = load_queries()[name]
    if dialect == "athena":
        from trailscan.athena.sql import render_for_console

        click.echo(render_for_console(query, athena_table, _parse_params(params)))
        return
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


@main.command("changes")
@window_options(required=False)
@click.option("--role", metavar="NAME", help="Only the changes to this role (by name), its policies and association.")
@db_option
@format_option()
def changes_command(since, until, role, db, fmt) -> None:
    """List the successful change events on their own: roles, trust and role policies, OIDC
    providers, Pod Identity associations, clusters, SCPs, bucket and key policies.

    Oldest first; who changed what, when (the query `change_events`). The policy documents
    the calls set are in `trailscan queries run change_events`.
    """
    from trailscan.explain.changes import change_event_rows
    from trailscan.findings import CHANGE_FIELDS

    with open_store(db, read_only=db != ":memory:") as store:
        columns, rows = change_event_rows(store, make_window(since, until), role=role)
    index = [columns.index(name) for name in CHANGE_FIELDS]
    render_rows(list(CHANGE_FIELDS), [tuple(row[i] for i in index) for row in rows], fmt, sys.stdout,
                title="Change events")


@main.command("sql")
@click.argument("statement")
@click.option("--write", is_flag=True,
              help="Open the store writable, with files, extensions and other databases in reach "
              "(default: read-only, and the store is all the SQL can see).")
@db_option
@format_option()
def sql_command(statement: str, write: bool, db: str | None, fmt: str) -> None:
    """Run one SQL statement over the store (tables: events, coverage, ingested_objects).

    Read-only unless --write; more than one statement is refused (exit 2)."""
    from trailscan.queries import run_statement

    with open_store(db, read_only=not write and db != ":memory:") as store:
        result = run_statement(store, statement, writable=write)
    render_rows(result.columns, result.rows, fmt, sys.stdout)
    if result.truncated:
        say(f"trailscan: note: {result.note}")


# -- findings and since ----------------------------------------------------------------------


def inventory_options(function):
    """The options that say where the inventory comes from (SPEC §5)."""
    options = [
        click.option(
            "--service-accounts",
            "service_account_files",
            multiple=True,
            metavar="[CLUSTER=]FILE",
            help="Service accounts: `kubectl get serviceaccounts -A -o json` (or YAML) saved to a file, tagged with "
            "the cluster it was saved from (a --cluster name or its OIDC issuer). An untagged file is used only "
            "when CloudTrail shows it is the cluster's. Repeatable.",
        ),
        click.option("--kube-context", metavar="NAME",
                     help="Read service accounts live with your kubectl and this context (and the cluster's OIDC "
                     "issuer, from the API server's /.well-known/openid-configuration)."),
        click.option(
            "--iam",
            "iam_files",
            multiple=True,
            metavar="FILE",
            help="IAM: `aws iam get-account-authorization-details` output (add `list-open-id-connect-providers` "
            "output as another file). Without it, the roles involved are read live when AWS credentials are set.",
        ),
        click.option(
            "--cluster",
            "clusters",
            multiple=True,
            callback=_values,
            metavar="NAME,…",
            help="EKS clusters to describe live: OIDC issuer, node group roles, Pod Identity associations.",
        ),
        click.option(
            "--policies",
            "policy_files",
            multiple=True,
            metavar="[NAME=]FILE",
            help="A policy layer beyond the roles' own, as an `aws` command prints it (get-bucket-policy, "
            "get-key-policy, describe-vpc-endpoints, organizations describe-policy/list-parents/"
            "list-policies-for-target …); NAME says whose, for output that does not (an ARN, account or OU id). "
            "Repeatable. Live runs read the layers the failures name themselves.",
        ),
        click.option("--offline", is_flag=True, help="Read nothing from AWS for the inventory (files only)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def all_principals_option(function):
    return click.option(
        "--all-principals",
        is_flag=True,
        help="Also list refused calls of callers shown to be no EKS workload (IAM users, root, AWS services, "
        "sessions they started): left out by default, and counted on stderr.",
    )(function)


def _emit_report(report, fmt: str, fail_on_findings: bool) -> None:
    """Print a findings report (stdout), its notices (stderr), and exit as SPEC §8 says."""
    from trailscan.errors import IncompleteCoverage
    from trailscan.findings import READ_STATUSES
    from trailscan.model import utc_now
    from trailscan.report.terminal import no_events_line, render_findings

    for note in report.notes:
        say(f"trailscan: note: {note}")
    for problem in report.problems:
        say(f"trailscan: {problem}")
    render_findings(report, fmt, sys.stdout, generated_at=utc_now())
    sys.stdout.flush()
    if not report.complete:
        unread = [f"{row.source} {row.account} {row.region}".strip() + f": {row.status}" for row in report.coverage
                  if row.status not in READ_STATUSES]
        if report.coverage and report.window_events == 0:
            # Nothing in the window: no finding says nothing, whatever was read.
            headline = no_events_line(report.window_start, report.window_end)
            message = f"{headline[0].lower()}{headline[1:]}: what was read can show neither a refused call nor its absence"
            raise IncompleteCoverage(message + (f"; coverage is incomplete too: {'; '.join(unread)}" if unread else ""))
        missing = unread or ["nothing was ingested for this window"]
        raise IncompleteCoverage("coverage is incomplete, findings may be missing: " + "; ".join(missing))
    if report.problems:
        raise InputError(f"{len(report.problems)} input files could not be read (named above)")
    if fail_on_findings and report.findings:
        say(f"trailscan: {len(report.findings)} findings")
        click.get_current_context().exit(1)


def _inventory_request(service_account_files, kube_context, iam_files, clusters, regions, offline, policy_files=()):
    from trailscan.pipeline import InventoryRequest

    return InventoryRequest(
        service_account_files=tuple(service_account_files),
        kube_context=kube_context,
        iam_files=tuple(iam_files),
        clusters=tuple(clusters),
        regions=tuple(regions),
        live_iam=False if offline else None,
        policy_files=tuple(policy_files),
    )


@main.command("findings")
@format_option(("table", "json", "markdown"))
@window_options(required=False)
@inventory_options
@all_principals_option
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when there are findings.")
@db_option
def findings_command(fmt, since, until, service_account_files, kube_context, iam_files, clusters, policy_files,
                     offline, all_principals, fail_on_findings, db) -> None:
    """Explain the refused calls already in the store: which workload, why, and the fix.

    Reads no CloudTrail (see `trailscan since` to ingest and explain in one go). The
    inventory options let trailscan check service accounts, trust policies and role
    policies; without them findings are still listed, and what could not be checked is
    said. `--format json` prints the trailscan.findings/v1 document on stdout alone.
    Exits 3 when the window's coverage is incomplete.
    """
    from trailscan.pipeline import investigate

    window = make_window(since, until)
    request = _inventory_request(service_account_files, kube_context, iam_files, clusters, (), offline, policy_files)
    with open_store(db, read_only=db != ":memory:") as store:
        report = investigate(store, window=window, inventory=request, all_principals=all_principals)
    _emit_report(report, fmt, fail_on_findings)


def source_options(function):
    """The options that say where CloudTrail is read (SPEC §4), shared by since and report."""
    options = [
        click.option("--source", type=click.Choice(source_names()),
                     help="Where CloudTrail is read (default: s3 when --bucket is given, files with --path, "
                     "else lookup)."),
        click.option("--path", "paths", multiple=True, metavar="P",
                     help="Files, directories or globs (--source files). Repeatable."),
        click.option("--bucket", metavar="BUCKET", help="The trail's bucket, or s3://BUCKET/PREFIX (--source s3)."),
        click.option("--prefix", default="", metavar="PREFIX", help="The trail's S3 key prefix, if any."),
        click.option("--org-id", metavar="o-…", help="Organization trail id (default: discovered)."),
        click.option("--accounts", multiple=True, callback=_values, metavar="ID,…",
                     help="Accounts to read (s3; default: all)."),
        click.option("--regions", multiple=True, callback=_values, metavar="REGION,…",
                     help="Regions to read, and where --cluster names are looked for."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _investigate_window(db, window, source, paths, bucket, prefix, org_id, accounts, regions,
                        service_account_files, kube_context, iam_files, clusters, offline, all_principals,
                        publish_to=None, publish_options=None, policy_files=(), athena=None):
    """Ingest the window (through Athena with ``athena``), explain it, and (with
    ``publish_to``) publish the report."""
    from trailscan.aws import default_session
    from trailscan.pipeline import investigate

    ingest = IngestRequest(
        source=source, paths=tuple(paths), bucket=bucket, prefix=prefix, org_id=org_id,
        accounts=tuple(accounts), regions=tuple(regions), engine="athena" if athena else "local", athena=athena,
    )
    request = _inventory_request(service_account_files, kube_context, iam_files, clusters, regions, offline,
                                 policy_files)
    # One session for reading and publishing when the report goes to S3; otherwise
    # investigate() makes one only if a source or the inventory needs AWS.
    session = default_session() if publish_to and publish_to.startswith("s3://") else None
    with open_store(db) as store, progress_reporter() as progress:
        report = investigate(store, window=window, inventory=request, ingest=ingest, session=session,
                             progress=progress, all_principals=all_principals)
        location = None
        if publish_to:
            from trailscan.report import publish_findings

            location = publish_findings(store, report, window=window, destination=publish_to, session=session,
                                        **(publish_options or {}))
    return report, location


@main.command("since")
@click.argument("duration", type=MOMENT)
@click.option("--until", type=MOMENT, metavar="WHEN", help="Window end (default: now).")
@source_options
@engine_options
@inventory_options
@all_principals_option
@format_option(("table", "json", "markdown"))
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when there are findings.")
@db_option
def since_command(duration, until, source, paths, bucket, prefix, org_id, accounts, regions, engine, athena_table,
                  workgroup, output, service_account_files, kube_context, iam_files, clusters, policy_files, offline,
                  all_principals, fmt,
                  fail_on_findings, db) -> None:
    """Ingest the last DURATION (30m, 24h, 7d) of CloudTrail, then explain every refused call.

    The on-call command: reads the window from a trail's S3 bucket, the LookupEvents API or
    local files, reads the inventory (service accounts, IAM roles — live when AWS
    credentials are set and no --iam file is given — and the --cluster EKS clusters), and
    prints the failing workloads grouped by cluster and namespace with the cause and the
    fix, then what was read. `--format json` prints the trailscan.findings/v1 document on
    stdout alone. Exits 1 with --fail-on-findings when there are findings, 2 when an input
    could not be read, 3 when the coverage is incomplete. With --engine athena, Athena reads
    the window where it lies (--athena-table) and the explanation is made here as usual.
    """
    athena = _athena_request(engine, athena_table, workgroup, output)
    report, _ = _investigate_window(db, make_window(duration, until), source, paths, bucket, prefix, org_id,
                                    accounts, regions, service_account_files, kube_context, iam_files, clusters,
                                    offline, all_principals, policy_files=policy_files, athena=athena)
    _emit_report(report, fmt, fail_on_findings)


@main.command("report")
@window_options(required=True)
@click.option("--to", "destination", required=True, metavar="s3://BUCKET/PREFIX/|DIR",
              help="Where the dated report folder (and latest/) is written.")
@click.option("--report-kms-key", metavar="ARN", help="Encrypt the report objects with this KMS key (SSE-KMS; s3:// only).")
@click.option("--file-mode", default="600", show_default=True, metavar="OCTAL",
              help="Mode of the report files in a local folder (folders get search where files get read).")
@source_options
@engine_options
@inventory_options
@all_principals_option
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when there are findings.")
@db_option
def report_command(since, until, destination, report_kms_key, file_mode, source, paths, bucket, prefix, org_id, accounts,
                   regions, engine, athena_table, workgroup, output, service_account_files, kube_context, iam_files,
                   clusters, policy_files, offline, all_principals, fail_on_findings, db) -> None:
    """Ingest the window, explain it, and publish the report: the nightly job.

    Writes a dated folder holding report.html (one self-contained page), report.md,
    findings.json (the trailscan.findings/v1 document) and events.parquet (the window's
    events, secrets removed), plus a stable latest/ copy, to a local folder or
    s3://BUCKET/PREFIX/. Takes the source and inventory options of `trailscan since`.
    The report is published even when coverage is incomplete, then the command exits 3.
    """
    try:
        mode = int(file_mode, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or not mode & 0o600 == 0o600:
        raise UsageError(f"--file-mode {file_mode!r}: expected an octal mode the owner can read and write, e.g. 600 or 644")
    athena = _athena_request(engine, athena_table, workgroup, output)
    report, location = _investigate_window(db, make_window(since, until), source, paths, bucket, prefix, org_id,
                                           accounts, regions, service_account_files, kube_context, iam_files,
                                           clusters, offline, all_principals, publish_to=destination,
                                           publish_options={"file_mode": mode, "kms_key": report_kms_key},
                                           policy_files=policy_files, athena=athena)
    say(f"trailscan: report written to {location.html} (latest copy in {location.latest})")
    _emit_report(report, "table", fail_on_findings)


# -- demo and iam-policy ------------------------------------------------------------------------


@main.command("demo")
@click.option("--out", default="trailscan-demo", show_default=True, metavar="DIR",
              help="Folder the HTML report is written to (a dated folder and latest/).")
@format_option(("table", "json", "markdown"))
@click.option("--db", metavar="PATH", help="The demo's DuckDB store (default: DIR/demo.duckdb); its service "
              "accounts and IAM snapshot are written beside it.")
def demo_command(out: str, fmt: str, db: str | None) -> None:
    """Run trailscan end to end on a simulated AWS account: no account, no network.

    Starts moto on 127.0.0.1, seeds an EKS cluster whose workloads fail in a dozen
    different ways (IRSA trust policies, service-account annotations, missing roles and
    permissions, an SCP, an SDK too old for IRSA, Pod Identity) amid healthy traffic, in an
    organization trail's bucket over two regions, then runs what `trailscan since 24h
    --bucket … --service-accounts … --cluster …` runs, prints the findings and writes the
    HTML report to DIR. Your AWS configuration is neither read nor used.
    """
    from trailscan.demo import run_demo

    click.echo("trailscan demo: seeding a simulated AWS account (moto on 127.0.0.1) with a broken EKS "
               "cluster and a day of CloudTrail…", err=True)
    with progress_reporter() as progress:
        run = run_demo(out=out, db=db, progress=progress)
    click.echo(
        f"trailscan demo: {run.events} events in {run.log_files} log files (and {run.digest_files} digest files), "
        f"then the equivalent of `{run.command}`:",
        err=True,
    )
    try:
        _emit_report(run.report, fmt, False)
    finally:
        click.echo(f"trailscan demo: report written to {run.location.html} (copy in {run.location.latest}); "
                   f"{run.seconds:.0f} s", err=True)
        click.echo(f"trailscan demo: replay it without moto: {run.replay}", err=True)


@main.command("iam-policy")
@click.option("--source", type=click.Choice(source_names(remote=True)), default="s3", show_default=True,
              help="Where trailscan will read CloudTrail.")
@click.option("--bucket", metavar="BUCKET", help="The trail's bucket, or s3://BUCKET/PREFIX (default: discovered).")
@click.option("--prefix", default="", metavar="PREFIX", help="The trail's S3 key prefix, if any.")
@click.option("--org-id", metavar="o-…", help="Only this organization trail's folder.")
@click.option("--accounts", multiple=True, callback=_values, metavar="ID,…", help="Only these accounts' logs.")
@click.option("--kms-key", "kms_keys", multiple=True, metavar="ARN",
              help="KMS key of the trail bucket's SSE-KMS (adds kms:Decrypt through S3). Repeatable.")
@click.option("--report-to", metavar="s3://BUCKET/PREFIX/", help="Where `trailscan report --to` writes.")
@click.option("--report-kms-key", "report_kms_keys", multiple=True, metavar="ARN",
              help="KMS key of the report bucket's SSE-KMS (adds kms:GenerateDataKey). Repeatable.")
@click.option("--cluster", "clusters", multiple=True, callback=_values, metavar="NAME,…",
              help="EKS clusters described live (names or ARNs).")
@click.option("--policy-buckets", multiple=True, callback=_values, metavar="NAME,…",
              help="Buckets whose bucket policies trailscan may read when a refused call names them.")
@click.option("--offline", is_flag=True,
              help="IAM and the policy layers come from files (--iam, --policies): leave out the live reads.")
@click.option("--doctor", is_flag=True,
              help="Print what `trailscan doctor` and `doctor pod` need instead (with --cluster and --offline only).")
@engine_options
def iam_policy_command(source, bucket, prefix, org_id, accounts, kms_keys, report_to, report_kms_keys,
                       clusters, policy_buckets, offline, doctor, engine, athena_table, workgroup, output) -> None:
    """Print the least-privilege IAM policy trailscan itself needs (JSON, on stdout).

    One statement per kind of call made for the chosen source (a trail's S3 bucket, or
    LookupEvents), the live inventory (IAM roles and policies, OIDC providers, the --cluster
    EKS clusters, the policy layers refused calls name: resource, endpoint, SCP/RCP policies
    and AWS's own evaluation of a refusal) and the report destination; resources as narrow
    as each action allows.
    Attach it to the role trailscan runs as (for the nightly CronJob, the role of its
    service account). Notes on what to replace or add go to stderr. --doctor prints what
    `trailscan doctor` needs instead. With --engine athena: Athena's, Glue's and S3's (the
    trail and the query results) permissions instead of reading the bucket.
    """
    from trailscan.iam_policy import PolicyRequest, doctor_policy, required_policy

    if doctor:
        if bucket or prefix or org_id or accounts or kms_keys or report_to or report_kms_keys or policy_buckets:
            raise UsageError("--doctor takes only --cluster and --offline: the doctor reads no CloudTrail")
        _print_policy(doctor_policy(tuple(clusters), live_iam=not offline))
        return
    policy = required_policy(PolicyRequest(
        source=source, bucket=bucket, prefix=prefix, org_id=org_id, accounts=tuple(accounts),
        kms_keys=tuple(kms_keys), report_to=report_to, report_kms_keys=tuple(report_kms_keys),
        clusters=tuple(clusters), live_iam=not offline, policy_buckets=tuple(policy_buckets), engine=engine,
        athena_table=athena_table, workgroup=workgroup, output=output,
    ))
    _print_policy(policy)


def _print_policy(policy) -> None:
    import json

    click.echo(json.dumps(policy.document, indent=2))
    for note in policy.notes:
        say(f"trailscan: note: {note}")


# -- doctor ----------------------------------------------------------------------------------------


def _doctor_output(report, fmt: str) -> None:
    """Print a doctor report (stdout) and exit with its code: 0, 1 (a check failed), 3 (a
    check could not run)."""
    from trailscan.doctor.render import render_json, render_text

    (render_json if fmt == "json" else render_text)(report, sys.stdout)
    sys.stdout.flush()
    click.get_current_context().exit(report.exit_code)


def _dns_server(_ctx, _param, value: str | None):
    if value is None:
        return None
    from trailscan.doctor.dns import parse_address

    try:
        return parse_address(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected IP or IP:PORT (the address of a nameserver)") from None


def doctor_network_options(function):
    """The options both doctors share: output, timeouts and the IAM inventory."""
    options = [
        click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True,
                     help="Output format; json prints the trailscan.doctor/v1 document on stdout alone."),
        click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True, metavar="SECONDS",
                     help="Timeout of each network step (DNS, TCP, TLS, an AWS call, a kubectl call counts 10×)."),
        click.option("--iam", "iam_files", multiple=True, metavar="FILE",
                     help="IAM: `aws iam get-account-authorization-details` output (add `list-open-id-connect-"
                     "providers` output as another file), to judge the token against the role's trust policy. "
                     "Without it the role and OIDC providers are read live when AWS credentials are set."),
        click.option("--offline", is_flag=True, help="Read nothing from IAM live (the trust check needs --iam)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@main.group("doctor", invoke_without_command=True)
@doctor_network_options
@click.option("--endpoint", "endpoints", multiple=True, callback=_values, metavar="URL,…",
              help="Also check these endpoints (the URL an EndpointConnectionError names). Repeatable.")
@click.option("--service", "services", multiple=True, callback=_values, metavar="NAME,…",
              help="Also check the endpoints botocore resolves for these services (s3, ec2, …). Repeatable.")
@click.option("--dns-server", callback=_dns_server, metavar="IP[:PORT]",
              help="Resolve by asking this nameserver directly (as `nslookup NAME SERVER`), e.g. the kube-dns "
              "service IP, instead of the C library and /etc/resolv.conf.")
@click.option("--audience", metavar="AUD",
              help="The IRSA token audience to expect (the service account's eks.amazonaws.com/audience; default "
              "sts.amazonaws.com).")
@click.option("--service-account", metavar="NS/NAME",
              help="The pod's service account, when its own token is not mounted (default: read from "
              "/var/run/secrets/kubernetes.io/serviceaccount).")
@click.pass_context
def doctor_group(ctx, fmt, timeout, iam_files, offline, endpoints, services, dns_server, audience,
                 service_account) -> None:
    """Why does this pod get no AWS credentials, or no connection? Checked now, from inside.

    Run in the pod (kubectl exec, or any environment): the variables the pod identity
    webhook injects; each projected token (readable, expired, audience, subject);
    DNS, TCP and TLS to the STS endpoint the SDK calls and to --endpoint/--service, through
    the proxy when HTTPS_PROXY applies; botocore's credential chain (which provider won
    and why the others did not); sts:GetCallerIdentity (the node's instance role is
    NODE_ROLE_FALLBACK); and, with an IAM inventory, the token against the role's trust
    policy. `trailscan doctor pod NS/NAME` looks from a workstation instead.

    Exits 0 when no check fails, 1 when one does, 2 for a usage or input error, 3 when
    checks could not run.
    """
    if ctx.invoked_subcommand is not None:
        given = [name for name in ("endpoints", "services", "dns_server", "audience", "service_account", "iam_files",
                                   "offline") if ctx.params.get(name)]
        if given or fmt != "table" or timeout != 3.0:
            raise UsageError(f"options before `{ctx.invoked_subcommand}` belong to the in-pod doctor: put them after "
                             f"`trailscan doctor {ctx.invoked_subcommand} …`")
        return
    from trailscan.doctor.local import LocalOptions, run_local

    report = run_local(LocalOptions(
        timeout=timeout, endpoints=tuple(endpoints), services=tuple(services), dns_server=dns_server,
        audience=audience, service_account=service_account, iam_files=tuple(iam_files), offline=offline,
    ))
    _doctor_output(report, fmt)


@doctor_group.command("pod")
@click.argument("target", metavar="NAMESPACE/NAME")
@click.option("-n", "--namespace", metavar="NS", help="The namespace, when TARGET does not name it.")
@click.option("--kube-context", "kube_context", metavar="NAME", help="kubectl context (default: the current one).")
@doctor_network_options
@click.option("--cluster", metavar="NAME|ARN",
              help="The EKS cluster, described live: its OIDC issuer and Pod Identity associations.")
@click.option("--region", metavar="REGION", help="The cluster's region (default: standard AWS configuration).")
@click.option("--probe", is_flag=True,
              help="Run the in-pod doctor in a short-lived pod with the same service account, namespace and node "
              "(needs create/delete pods and pods/log in the namespace), then delete it.")
@click.option("--image", envvar="TRAILSCAN_IMAGE", metavar="IMAGE",
              help="The probe's image: trailscan on PATH (default: $TRAILSCAN_IMAGE).")
@click.option("--probe-timeout", type=click.FloatRange(10, 900), default=120, show_default=True, metavar="SECONDS",
              help="How long the probe may take, start to finish.")
@click.option("--endpoint", "endpoints", multiple=True, callback=_values, metavar="URL,…",
              help="Endpoints the probe checks too.")
@click.option("--service", "services", multiple=True, callback=_values, metavar="NAME,…",
              help="Services whose endpoints the probe checks too.")
@click.option("--dry-run", is_flag=True, help="With --probe: print the probe pod's manifest, create nothing.")
def doctor_pod_command(target, namespace, kube_context, fmt, timeout, iam_files, offline, cluster, region, probe,
                       image, probe_timeout, endpoints, services, dry_run) -> None:
    """Why does this pod get no AWS credentials? Checked from a workstation, through kubectl.

    TARGET is NAMESPACE/NAME (a pod), NAMESPACE/deployment/NAME or deployment/NAME with -n
    (the newest running pod). Reads, with your kubectl and read-only RBAC: the pod spec
    (service account, the IRSA / Pod Identity variables and token volume the webhook
    injects, runAsUser/fsGroup against the token file's mode, hostNetwork, dnsPolicy),
    the service account's annotations and when they last changed (managedFields: a pod
    older than its annotation must be restarted), the pod identity webhook, the
    eks-pod-identity-agent pod on the pod's node, and CoreDNS; with --cluster the Pod
    Identity association; with an IAM inventory the trust verdict. --probe runs the
    in-pod doctor beside it.

    Exits 0 when no check fails, 1 when one does, 2 for a usage or input error (no such
    pod), 3 when checks could not run.
    """
    from trailscan.doctor.pod import PodOptions, probe_manifest_for, run_pod

    if (probe or dry_run) and not image:
        raise UsageError("--probe needs --image IMAGE (an image with trailscan on PATH), or TRAILSCAN_IMAGE")
    if dry_run and not probe:
        raise UsageError("--dry-run shows the probe's manifest: use it with --probe")
    options = PodOptions(target=target, namespace=namespace, context=kube_context, timeout=timeout,
                         iam_files=tuple(iam_files), offline=offline, cluster=cluster, region=region, probe=probe,
                         image=image, probe_timeout=probe_timeout, endpoints=tuple(endpoints),
                         services=tuple(services))
    if dry_run:
        import json

        import yaml

        manifest = probe_manifest_for(options)
        click.echo(json.dumps(manifest, indent=2) if fmt == "json" else yaml.safe_dump(manifest, sort_keys=False),
                   nl=fmt == "json")
        return
    _doctor_output(run_pod(options), fmt)


# -- athena -----------------------------------------------------------------------------------------------


@main.group()
def athena() -> None:
    """Athena over the trail's bucket, for trails one machine cannot read in time."""


@athena.command("setup")
@click.option("--bucket", required=True, metavar="BUCKET", help="The trail's bucket, or s3://BUCKET/PREFIX.")
@click.option("--prefix", default="", metavar="PREFIX", help="The trail's S3 key prefix, if any.")
@click.option("--org-id", metavar="o-…", help="Organization trail id (default: discovered).")
@click.option("--accounts", multiple=True, callback=_values, metavar="ID,…",
              help="Accounts the table holds (default: every account folder).")
@click.option("--regions", multiple=True, callback=_values, metavar="REGION,…",
              help="Regions the table holds (default: every region folder found).")
@click.option("--database", required=True, metavar="NAME", help="Glue database (created if missing).")
@click.option("--table", default="cloudtrail_logs", show_default=True, metavar="NAME", help="Table name.")
@click.option("--dry-run", is_flag=True, help="Print the table's DDL instead of creating it.")
def athena_setup_command(bucket, prefix, org_id, accounts, regions, database, table, dry_run) -> None:
    """Create the CloudTrail table Athena reads, partitioned by the trail's folders.

    Lists the trail's layout as `ingest s3` does (organization or account folders, then
    each account's regions) and creates DATABASE.TABLE in the Glue catalog with partition
    projection over [PREFIX/]AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD, so no
    crawler and no MSCK REPAIR are ever needed. Run it again when accounts or regions are
    added. --dry-run prints the Athena DDL instead (on stdout).
    """
    from trailscan.athena import SetupRequest, setup_table
    from trailscan.aws import default_session

    result = setup_table(default_session(), SetupRequest(
        bucket=bucket, prefix=prefix, org_id=org_id, accounts=tuple(accounts), regions=tuple(regions),
        database=database, table=table, dry_run=dry_run,
    ))
    for note in result.notes:
        say(f"trailscan: {note}")
    if dry_run:
        click.echo(result.ddl, nl=False)
        return
    say(f"trailscan: {result.spec.database}.{result.spec.name} {result.action}; query it with "
        f"--engine athena --athena-table {result.spec.database}.{result.spec.name}")


if __name__ == "__main__":  # pragma: no cover
    main()
