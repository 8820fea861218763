"""DuckDB standing in for Athena, to test what the Athena SQL *means*.

moto answers Athena's API but runs no SQL.  Here a DuckDB table is given the CloudTrail
table's columns (``eventtime`` a string, ``useridentity`` a struct, ``requestparameters``
JSON text …) and its partition columns, filled from the same generated delivery files the
local engine reads, and each Athena rendering is parsed by sqlglot's Trino dialect and
written back as DuckDB to run over it.  :class:`DuckDBRunner` runs the engine's queries
that way.  :func:`sample_records` is the trail both engines are compared on.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import sqlglot

from trailscan.athena.client import SUCCEEDED, Job, Outcome
from trailscan.athena.table import ArrayOf, Column, MapOf, Scalar, Struct, TableSpec
from trailscan.generate import (
    iam_user_identity,
    RoleSession,
    api_call,
    healthy_traffic,
    pod_identity_assume_role,
    sample_failures,
    web_identity_call,
)
from trailscan.model import Window

END = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
WINDOW = Window(END - timedelta(hours=24), END)
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("eu-west-1", "us-east-1")
ORG = "o-a1b2c3d4e5"
PROVIDER = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/5C1A7E0E5A1B2C3D4E5F60718293A4B5"


def sample_records() -> tuple[list[dict], str]:
    """A day of two accounts and two regions, with failures of every kind, events outside
    the window on both sides, and a pod's web-identity session minted before the window
    whose access key is then refused (the second round's business)."""
    rng = random.Random(11)
    records = list(healthy_traffic(rng, count=600, start=WINDOW.start - timedelta(hours=14), end=END + timedelta(minutes=40),
                                   accounts=ACCOUNTS, regions=REGIONS))
    records += sample_failures(rng, start=WINDOW.start, end=END, account=ACCOUNTS[0], region=REGIONS[0])
    records += sample_failures(rng, start=WINDOW.start - timedelta(hours=3), end=WINDOW.start, account=ACCOUNTS[1],
                               region=REGIONS[1])  # before the window: never a finding
    records.append(pod_identity_assume_role(
        rng, when=END - timedelta(hours=2), region=REGIONS[0], account=ACCOUNTS[0],
        role_arn=f"arn:aws:iam::{ACCOUNTS[0]}:role/ledger", cluster="shop-prod", namespace="ledger",
        service_account="writer", pod="writer-7d9f", error_code="AccessDenied"))
    session = RoleSession(ACCOUNTS[0], "payments-api", "botocore-session-1764300000", "ASIAPAYMENTSAPI0001")
    minted = END - timedelta(hours=30)  # before the window, inside the 12-hour lookback of its start
    records.append(web_identity_call(
        rng, when=minted, region=REGIONS[0], account=ACCOUNTS[0], provider_arn=PROVIDER,
        subject="system:serviceaccount:payments:api", role_arn=session.role_arn, session=session))
    for minutes in (30, 90):
        when = END - timedelta(minutes=minutes)
        records.append(api_call(
            rng, when=when, region=REGIONS[0], account=ACCOUNTS[0], identity=session.user_identity(minted),
            event_source="s3.amazonaws.com", event_name="GetObject", error_code="AccessDenied",
            error_message=f"User: {session.arn} is not authorized to perform: s3:GetObject on resource: "
                          "arn:aws:s3:::ledger/x because no identity-based policy allows the s3:GetObject action"))
    # A change to the refused role, by a person, in us-east-1 (where IAM records): the change
    # events come back with the failures, so findings say what changed.
    records.append(api_call(
        rng, when=END - timedelta(hours=3), region="us-east-1", account=ACCOUNTS[0],
        identity=iam_user_identity(ACCOUNTS[0], "alice", "AKIAALICE0000000001"),
        event_source="iam.amazonaws.com", event_name="PutRolePolicy", read_only=False,
        request_parameters={"roleName": "payments-api", "policyName": "s3",
                            "policyDocument": '{"Version":"2012-10-17","Statement":[]}'}))
    return records, session.access_key_id


_KEY = re.compile(r"AWSLogs/(?:o-[a-z0-9]+/)?(?P<account>\d{12})/CloudTrail/(?P<region>[a-z0-9-]+)/(?P<day>\d{4}/\d{2}/\d{2})/")


def duckdb_type(kind) -> str:
    if isinstance(kind, Struct):
        return "STRUCT(" + ", ".join(f'"{f.sql_name}" {duckdb_type(f.type)}' for f in kind.fields) + ")"
    if isinstance(kind, ArrayOf):
        return f"{duckdb_type(kind.element)}[]"
    if isinstance(kind, MapOf):
        return f"MAP({duckdb_type(kind.key)}, {duckdb_type(kind.value)})"
    assert isinstance(kind, Scalar)
    return "VARCHAR"


def athena_value(column: Column, value, *, top: bool = False):
    """A record's value as the CloudTrail SerDe hands it to Athena: nested objects as
    structs (lower-cased field names, unknown fields dropped), JSON objects in string
    columns as their JSON text, everything else as a string."""
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, Struct):
        if not isinstance(value, dict):
            return None
        lowered = {k.lower(): v for k, v in value.items()}
        return {f.sql_name: athena_value(f, lowered.get(f.sql_name)) for f in kind.fields}
    if isinstance(kind, ArrayOf):
        return [athena_value(Column("", kind.element), item) for item in value] if isinstance(value, list) else None
    if isinstance(kind, MapOf):
        return {str(k): None if v is None else str(v) for k, v in value.items()} if isinstance(value, dict) else None
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_trail(con: duckdb.DuckDBPyConnection, spec: TableSpec, files: Iterable[tuple[str, bytes]]) -> int:
    """Create ``spec``'s table in DuckDB (schema = database) and fill it from delivery files
    ``(key, gzip bytes)``: the partition columns from each key, ``$path`` its URL."""
    columns = {c.sql_name: duckdb_type(c.type) for c in spec.columns}
    partitions = {"account": "VARCHAR", "region": "VARCHAR", "delivery_day": "VARCHAR", "$path": "VARCHAR"}
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{spec.database}"')
    definition = ", ".join(f'"{name}" {kind}' for name, kind in {**columns, **partitions}.items())
    con.execute(f'CREATE OR REPLACE TABLE "{spec.database}"."{spec.name}" ({definition})')
    # sqlglot before 30.2x writes DuckDB's lambdas as `x -> …`, which DuckDB 1.3+ reads only when asked.
    try:
        con.execute("SET lambda_syntax = 'ENABLE_SINGLE_ARROW'")
    except duckdb.Error:
        pass  # a DuckDB without the setting reads them anyway
    rows = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.ndjson"
        with open(path, "w") as out:
            for key, body in files:
                match = _KEY.search(key)
                assert match, key
                for record in json.loads(gzip.decompress(body))["Records"]:
                    lowered = {k.lower(): v for k, v in record.items()}
                    row = {c.sql_name: athena_value(c, lowered.get(c.sql_name), top=True) for c in spec.columns}
                    row.update(account=match["account"], region=match["region"], delivery_day=match["day"])
                    row["$path"] = f"s3://{spec.layout.bucket}/{key}"
                    out.write(json.dumps(row) + "\n")
                    rows += 1
        types = ", ".join(f"'{name}': '{kind}'" for name, kind in {**columns, **partitions}.items())
        con.execute(
            f'INSERT INTO "{spec.database}"."{spec.name}" '
            f"SELECT * FROM read_json('{path}', format='newline_delimited', columns={{{types}}})"
        )
    return rows


def to_duckdb(athena_sql: str) -> str:
    """An Athena rendering read by sqlglot's Trino dialect and written as DuckDB."""
    [tree] = sqlglot.parse(athena_sql, read="trino")
    return tree.sql(dialect="duckdb")


def as_text(value) -> str | None:
    """A value as Athena's GetQueryResults gives it: text, or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class DuckDBRunner:
    """Runs the engine's jobs in DuckDB (a :class:`trailscan.athena.client.Runner`).
    ``fail`` names job keys whose queries fail, as Athena's would."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fail: Sequence = ()) -> None:
        self.con = con
        self.fail = list(fail)
        self.sql: list[str] = []
        #: ``(columns, rows)`` of each query that succeeded, in the order they ran.
        self.results: list[tuple[list[str], list[list[str | None]]]] = []

    def run(self, jobs: Sequence[Job], progress=None) -> Iterator[Outcome]:
        for number, job in enumerate(jobs):
            self.sql.append(job.sql)
            if any(f(job.key) for f in self.fail):
                yield Outcome(job, "FAILED", "HIVE_CURSOR_ERROR: simulated", query_id=f"q{number}")
                continue
            started = time.monotonic()
            cursor = self.con.execute(to_duckdb(job.sql))
            columns = [d[0] for d in cursor.description]
            rows = [[as_text(v) for v in row] for row in cursor.fetchall()]
            self.results.append((columns, rows))
            yield Outcome(job, SUCCEEDED, columns=columns, rows=rows, scanned_bytes=1234567,
                          seconds=time.monotonic() - started, query_id=f"q{number}")
