"""``trailscan athena setup``: the CloudTrail table, partitioned by the trail's own folders.

The layout is found the way the S3 source finds it, by delimiter listings (never the whole
bucket): the organization folder (``o-…``) or the account folders under ``AWSLogs/``,
then each account's region folders.  The table is created through Glue's API
(``CreateTable``, or ``UpdateTable`` when trailscan's table is already there, to bring its
accounts and regions up to date), which needs no query result location and answers at
once; ``--dry-run`` prints the same table as Athena DDL instead.  Partition projection then
computes every partition from the query's own predicates: no crawler, no ``MSCK REPAIR``,
no ``ALTER TABLE ADD PARTITION``, ever.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from trailscan.athena.table import TableSpec, TrailLayout, check_account, check_region, parse_table_name
from trailscan.errors import SourceError, UsageError

__all__ = ["SetupRequest", "SetupResult", "discover_layout", "setup_table"]

_ACCOUNT = re.compile(r"^\d{12}$")
DEFAULT_TABLE = "cloudtrail_logs"


@dataclass(frozen=True)
class SetupRequest:
    """``athena setup``'s options: the trail's bucket (a name or ``s3://BUCKET/PREFIX``),
    its layout (discovered unless given), and the Glue database and table to create."""

    bucket: str
    database: str
    table: str = DEFAULT_TABLE
    prefix: str = ""
    org_id: str | None = None
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass
class SetupResult:
    """The table (``spec``), its DDL, and what was done: ``created``, ``updated``,
    ``unchanged`` or ``printed`` (a dry run)."""

    spec: TableSpec
    action: str
    notes: list[str] = field(default_factory=list)

    @property
    def ddl(self) -> str:
        return self.spec.ddl()


def discover_layout(session: Any, request: SetupRequest) -> tuple[TrailLayout, tuple[str, ...], tuple[str, ...]]:
    """The trail's layout, accounts and regions, listing only what was not given (the
    S3 source's listing: one delimiter level at a time)."""
    from trailscan.iam_policy import split_s3
    from trailscan.sources.s3 import _Bucket, _ListError, logs_prefix, normalize_org_id, s3_url

    bucket, prefix = split_s3(request.bucket, request.prefix, option="--bucket")
    assert bucket is not None
    for account in request.accounts:
        check_account(account)
    for region in request.regions:
        check_region(region)
    org_id = normalize_org_id(request.org_id) if request.org_id else None
    if request.accounts and request.regions and org_id:
        return TrailLayout(bucket, prefix, org_id), tuple(request.accounts), tuple(request.regions)
    reader = _Bucket(session, bucket, workers=8)
    root = logs_prefix(prefix)
    try:
        if org_id is None:
            children = reader.folders(root)
            orgs = sorted(name for name in children if name.startswith("o-"))
            plain = [name for name in children if _ACCOUNT.match(name)]
            if orgs and plain:
                raise UsageError(
                    f"{s3_url(bucket, root)} holds an organization trail's folder ({', '.join(orgs)}) and account "
                    "folders: a table reads one layout",
                    "pass --org-id for the organization's (or set up a second --table for the others)",
                )
            if len(orgs) > 1:
                raise UsageError(f"{s3_url(bucket, root)} holds several organizations' folders: {', '.join(orgs)}",
                                 "pass --org-id")
            org_id = orgs[0] if orgs else None
        container = f"{root}{org_id}/" if org_id else root
        accounts = list(request.accounts) or sorted(n for n in reader.folders(container) if _ACCOUNT.match(n))
        if not accounts:
            raise SourceError(f"no account folders under {s3_url(bucket, container)}", "check --bucket, --prefix and --org-id")
        regions = list(request.regions)
        if not regions:
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="trailscan-setup") as pool:
                found = pool.map(lambda account: reader.folders(f"{container}{account}/CloudTrail/"), accounts)
                regions = sorted({name for names in found for name in names if name})
        if not regions:
            raise SourceError(f"no CloudTrail region folders under {s3_url(bucket, container)}")
    except _ListError as exc:
        raise SourceError(str(exc)) from None
    return TrailLayout(bucket, prefix, org_id), tuple(accounts), tuple(regions)


def setup_table(session: Any, request: SetupRequest) -> SetupResult:
    """Create (or bring up to date) the table; with ``dry_run``, only say what it would be."""
    database, table = parse_table_name(f"{request.database}.{request.table}", option="--database/--table")
    layout, accounts, regions = discover_layout(session, request)
    spec = TableSpec(database, table, layout, accounts, regions)
    notes = [f"{len(accounts)} accounts and {len(regions)} regions under {layout.location}"]
    if request.dry_run:
        return SetupResult(spec, "printed", notes)
    return SetupResult(spec, _apply(session, spec), notes)


def _apply(session: Any, spec: TableSpec) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    glue = session.client("glue")
    where = f"{spec.database}.{spec.name}"
    try:
        try:
            glue.get_database(Name=spec.database)
        except ClientError as exc:
            if _code(exc) != "EntityNotFoundException":
                raise
            glue.create_database(DatabaseInput={"Name": spec.database,
                                                "Description": "CloudTrail tables (trailscan athena setup)"})
        wanted = spec.table_input()
        try:
            current = glue.get_table(DatabaseName=spec.database, Name=spec.name)["Table"]
        except ClientError as exc:
            if _code(exc) != "EntityNotFoundException":
                raise
            glue.create_table(DatabaseName=spec.database, TableInput=wanted)
            return "created"
        template = (current.get("Parameters") or {}).get("storage.location.template")
        if template != wanted["Parameters"]["storage.location.template"]:
            raise UsageError(f"a table {where} already exists and reads {template or 'another layout'}",
                             "choose another --table, or drop that one")
        if current.get("Parameters") == wanted["Parameters"]:
            return "unchanged"
        glue.update_table(DatabaseName=spec.database, TableInput=wanted)
        return "updated"
    except ClientError as exc:
        raise SourceError(f"cannot create {where} in the Glue catalog: {exc}") from None
    except BotoCoreError as exc:
        raise SourceError(f"cannot reach Glue: {exc}") from None


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
