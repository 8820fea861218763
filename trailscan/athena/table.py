"""The CloudTrail table Athena reads: its columns, the trail's layout as partition projection.

The columns are AWS's documented CloudTrail table ("Create the table for CloudTrail logs
in Athena using partition projection", Athena User Guide) — ``eventtime`` a string,
``useridentity`` a struct, ``requestparameters`` a string holding JSON, ``resources`` an
array of structs — plus one field AWS's table lacks: ``useridentity.identityprovider``,
where a refused ``AssumeRoleWithWebIdentity`` names the OIDC provider.

The table ``trailscan athena setup`` creates partitions by the trail's own folders, so that
Athena lists no more than the window needs and no crawler or ``MSCK REPAIR`` is ever run::

    [prefix/]AWSLogs/[o-ORGID/]${account}/CloudTrail/${region}/${delivery_day}

``account`` and ``region`` are enums of the folders found by listing; ``delivery_day`` is a
date (``yyyy/MM/dd``).  It is the day the *file* was delivered, not the events' day: a
window is read with the delivery-lag margin the S3 source uses, then filtered on
``eventtime``.

An existing table (``--athena-table DB.TABLE``) is read from Glue: its columns, and the
partition columns its ``storage.location.template`` puts where the account, the region
and the day are.  A table without partition projection would make every query read the
trail's whole history, so it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from trailscan.athena.names import check_account, check_region, parse_table_name
from trailscan.errors import UsageError

__all__ = [
    "ArrayOf",
    "AthenaTable",
    "Column",
    "MapOf",
    "STANDARD_COLUMNS",
    "Scalar",
    "Struct",
    "TableSpec",
    "TrailLayout",
    "parse_table_name",
    "parse_type",
]


# -- Hive types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    name: str = "string"

    def hive(self) -> str:
        return self.name


@dataclass(frozen=True)
class Struct:
    fields: tuple["Column", ...]

    def hive(self) -> str:
        return "struct<" + ",".join(f"{f.name.lower()}:{f.type.hive()}" for f in self.fields) + ">"

    def field(self, name: str) -> "Column | None":
        lowered = name.lower()
        return next((f for f in self.fields if f.name.lower() == lowered), None)


@dataclass(frozen=True)
class ArrayOf:
    element: "HiveType"

    def hive(self) -> str:
        return f"array<{self.element.hive()}>"


@dataclass(frozen=True)
class MapOf:
    key: "HiveType"
    value: "HiveType"

    def hive(self) -> str:
        return f"map<{self.key.hive()},{self.value.hive()}>"


HiveType = Scalar | Struct | ArrayOf | MapOf


@dataclass(frozen=True)
class Column:
    """A column or struct field: its name (CloudTrail's spelling, ``userIdentity``, where
    known; Glue stores names lower-cased) and its type."""

    name: str
    type: HiveType

    @property
    def sql_name(self) -> str:
        return self.name.lower()


def parse_type(text: str) -> HiveType:
    """A Hive type as Glue stores it (``struct<arn:string,…>``, ``array<…>``, ``map<…>``)."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|`[^`]+`|[<>:,()]|\d+", text)
    position = 0

    def take(expected: str | None = None) -> str:
        nonlocal position
        if position >= len(tokens):
            raise UsageError(f"cannot read the column type {text!r}")
        token = tokens[position]
        if expected is not None and token.lower() != expected:
            raise UsageError(f"cannot read the column type {text!r}: expected {expected!r} at {token!r}")
        position += 1
        return token

    def one() -> HiveType:
        word = take().lower()
        if word == "struct":
            take("<")
            fields = []
            while True:
                name = take().strip("`")
                take(":")
                fields.append(Column(name, one()))
                if take() == ">":
                    return Struct(tuple(fields))
        if word == "array":
            take("<")
            element = one()
            take(">")
            return ArrayOf(element)
        if word == "map":
            take("<")
            key = one()
            take(",")
            value = one()
            take(">")
            return MapOf(key, value)
        if position < len(tokens) and tokens[position] == "(":  # decimal(10,2), varchar(20)
            while take() != ")":
                pass
        return Scalar(word)

    parsed = one()
    if position != len(tokens):
        raise UsageError(f"cannot read the column type {text!r}")
    return parsed


def _s(name: str) -> Column:
    return Column(name, Scalar())


def _struct(name: str, *fields: Column) -> Column:
    return Column(name, Struct(tuple(fields)))


#: AWS's documented CloudTrail table, in CloudTrail's spelling, with
#: ``userIdentity.identityProvider`` added (see the module's docstring).
STANDARD_COLUMNS: tuple[Column, ...] = (
    _s("eventVersion"),
    _struct(
        "userIdentity",
        _s("type"),
        _s("principalId"),
        _s("arn"),
        _s("accountId"),
        _s("invokedBy"),
        _s("accessKeyId"),
        _s("userName"),
        _s("identityProvider"),
        _struct("onBehalfOf", _s("userId"), _s("identityStoreArn")),
        _struct(
            "sessionContext",
            _struct("attributes", _s("mfaAuthenticated"), _s("creationDate")),
            _struct("sessionIssuer", _s("type"), _s("principalId"), _s("arn"), _s("accountId"), _s("userName")),
            _s("ec2RoleDelivery"),
            Column("webIdFederationData", Struct((
                _s("federatedProvider"),
                Column("attributes", MapOf(Scalar(), Scalar())),
            ))),
        ),
    ),
    _s("eventTime"),
    _s("eventSource"),
    _s("eventName"),
    _s("awsRegion"),
    _s("sourceIPAddress"),
    _s("userAgent"),
    _s("errorCode"),
    _s("errorMessage"),
    _s("requestParameters"),
    _s("responseElements"),
    _s("additionalEventData"),
    _s("requestID"),
    _s("eventID"),
    _s("readOnly"),
    Column("resources", ArrayOf(Struct((_s("ARN"), _s("accountId"), _s("type"))))),
    _s("eventType"),
    _s("apiVersion"),
    _s("recipientAccountId"),
    _s("serviceEventDetails"),
    _s("sharedEventID"),
    _s("vpcEndpointId"),
    _s("vpcEndpointAccountId"),
    _s("eventCategory"),
    _struct("addendum", _s("reason"), _s("updatedFields"), _s("originalRequestID"), _s("originalEventID")),
    _s("sessionCredentialFromConsole"),
    _s("edgeDeviceDetails"),
    _struct("tlsDetails", _s("tlsVersion"), _s("cipherSuite"), _s("clientProvidedHostHeader")),
)

#: CloudTrail fields that the table holds as strings of JSON text (objects in the record).
JSON_TEXT_FIELDS = frozenset(
    {"requestParameters", "responseElements", "additionalEventData", "serviceEventDetails", "edgeDeviceDetails"}
)


def spelled(columns: Sequence[Column], reference: Sequence[Column] = STANDARD_COLUMNS) -> tuple[Column, ...]:
    """*columns* (as Glue stores them, lower-cased) with CloudTrail's spelling where the
    standard table knows the field, at every depth; unknown fields keep Glue's name."""

    def one(column: Column, known: Column | None) -> Column:
        name = known.name if known is not None else column.name
        kind = column.type
        if isinstance(kind, Struct):
            inner = known.type if known is not None and isinstance(known.type, Struct) else Struct(())
            kind = Struct(tuple(one(f, inner.field(f.name)) for f in kind.fields))
        elif isinstance(kind, ArrayOf) and isinstance(kind.element, Struct):
            inner_known = known.type.element if known is not None and isinstance(known.type, ArrayOf) else None
            element = one(Column("", kind.element), Column("", inner_known) if inner_known is not None else None)
            kind = ArrayOf(element.type)
        return Column(name, kind)

    by_name = {c.name.lower(): c for c in reference}
    return tuple(one(column, by_name.get(column.name.lower())) for column in columns)


# -- the trail's layout ---------------------------------------------------------------------------

#: The partition columns of the table ``trailscan athena setup`` creates.
ACCOUNT_COLUMN, REGION_COLUMN, DAY_COLUMN = "account", "region", "delivery_day"
DAY_FORMAT = "yyyy/MM/dd"
#: Where the day projection starts: CloudTrail began in November 2013.
FIRST_DAY = "2013/11/01"


@dataclass(frozen=True)
class TrailLayout:
    """Where a trail writes: ``s3://bucket/[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/``.
    ``org_id`` is set for an organization trail that writes the ``o-`` segment."""

    bucket: str
    prefix: str = ""
    org_id: str | None = None

    @property
    def location(self) -> str:
        from trailscan.sources.s3 import logs_prefix, normalize_org_id

        org = f"{normalize_org_id(self.org_id)}/" if self.org_id else ""
        return f"s3://{self.bucket}/{logs_prefix(self.prefix)}{org}"

    @property
    def template(self) -> str:
        return f"{self.location}${{{ACCOUNT_COLUMN}}}/CloudTrail/${{{REGION_COLUMN}}}/${{{DAY_COLUMN}}}"


@dataclass(frozen=True)
class TableSpec:
    """The table ``trailscan athena setup`` creates: the standard columns, partitioned by
    the trail's folders through projection (enums of the accounts and regions found)."""

    database: str
    name: str
    layout: TrailLayout
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    columns: tuple[Column, ...] = STANDARD_COLUMNS

    def parameters(self) -> dict[str, str]:
        """The table properties: partition projection over the trail's layout."""
        return {
            "EXTERNAL": "TRUE",
            "classification": "cloudtrail",
            "projection.enabled": "true",
            f"projection.{ACCOUNT_COLUMN}.type": "enum",
            f"projection.{ACCOUNT_COLUMN}.values": ",".join(self.accounts),
            f"projection.{REGION_COLUMN}.type": "enum",
            f"projection.{REGION_COLUMN}.values": ",".join(self.regions),
            f"projection.{DAY_COLUMN}.type": "date",
            f"projection.{DAY_COLUMN}.format": DAY_FORMAT,
            f"projection.{DAY_COLUMN}.range": f"{FIRST_DAY},NOW",
            f"projection.{DAY_COLUMN}.interval": "1",
            f"projection.{DAY_COLUMN}.interval.unit": "DAYS",
            "storage.location.template": self.layout.template,
        }

    def table_input(self) -> dict:
        """The Glue ``TableInput`` that creates (or updates) the table."""
        return {
            "Name": self.name,
            "Description": "CloudTrail, partitioned by the trail's folders (created by trailscan athena setup)",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": self.parameters(),
            "PartitionKeys": [{"Name": name, "Type": "string"} for name in (ACCOUNT_COLUMN, REGION_COLUMN, DAY_COLUMN)],
            "StorageDescriptor": {
                "Columns": [{"Name": c.sql_name, "Type": c.type.hive()} for c in self.columns],
                "Location": self.layout.location,
                "InputFormat": "com.amazon.emr.cloudtrail.CloudTrailInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                "SerdeInfo": {"SerializationLibrary": "org.apache.hive.hcatalog.data.JsonSerDe"},
            },
        }

    def ddl(self) -> str:
        """The same table as Athena DDL (what ``--dry-run`` prints)."""
        described = self.table_input()
        storage = described["StorageDescriptor"]
        columns = ",\n".join(f"  `{c['Name']}` {c['Type']}" for c in storage["Columns"])
        partitions = ", ".join(f"`{p['Name']}` {p['Type']}" for p in described["PartitionKeys"])
        properties = ",\n".join(
            f"  {_quote(key)}={_quote(value)}" for key, value in described["Parameters"].items() if key != "EXTERNAL"
        )
        return (
            f"CREATE DATABASE IF NOT EXISTS `{self.database}`;\n\n"
            f"CREATE EXTERNAL TABLE IF NOT EXISTS `{self.database}`.`{self.name}` (\n{columns}\n)\n"
            f"PARTITIONED BY ({partitions})\n"
            f"ROW FORMAT SERDE {_quote(storage['SerdeInfo']['SerializationLibrary'])}\n"
            f"STORED AS INPUTFORMAT {_quote(storage['InputFormat'])}\n"
            f"OUTPUTFORMAT {_quote(storage['OutputFormat'])}\n"
            f"LOCATION {_quote(storage['Location'])}\n"
            f"TBLPROPERTIES (\n{properties}\n);\n"
        )


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- an existing table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Partitioning:
    """Which partition column holds what, as a table's projection template says.

    A part is either a column (``account_column``) or, for a table of one account or
    region, the literal the template holds (``account``)."""

    day_column: str | None = None
    day_format: str = DAY_FORMAT
    ymd_columns: tuple[str, str, str] | None = None
    account_column: str | None = None
    account: str | None = None
    region_column: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class AthenaTable:
    """A CloudTrail table as Glue describes it: enough to render queries for it."""

    database: str
    name: str
    columns: tuple[Column, ...]
    partitioning: Partitioning
    location: str = ""
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def qualified(self) -> str:
        return f'"{self.database}"."{self.name}"'

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    @classmethod
    def standard(cls, database: str, name: str, *, accounts: Sequence[str] = (), regions: Sequence[str] = ()) -> "AthenaTable":
        """The table ``trailscan athena setup`` creates (without reading Glue)."""
        return cls(
            database,
            name,
            STANDARD_COLUMNS,
            Partitioning(day_column=DAY_COLUMN, account_column=ACCOUNT_COLUMN, region_column=REGION_COLUMN),
            accounts=tuple(accounts),
            regions=tuple(regions),
        )

    @classmethod
    def from_glue(cls, database: str, table: dict) -> "AthenaTable":
        """Read a Glue ``GetTable`` answer's ``Table``; :class:`UsageError` when it is not
        a CloudTrail table trailscan can query by partition."""
        name = table.get("Name", "")
        where = f"{database}.{name}"
        storage = table.get("StorageDescriptor") or {}
        columns = spelled(tuple(Column(c["Name"], parse_type(c.get("Type", "string"))) for c in storage.get("Columns", [])))
        names = {c.name.lower() for c in columns}
        for needed in ("eventtime", "eventname", "eventsource", "useridentity"):
            if needed not in names:
                raise UsageError(f"{where} has no column {needed}: not a CloudTrail table")
        parameters = {k.lower(): v for k, v in (table.get("Parameters") or {}).items()}
        keys = [p["Name"].lower() for p in table.get("PartitionKeys") or []]
        template = parameters.get("storage.location.template", "")
        if not keys or parameters.get("projection.enabled", "").lower() != "true" or not template:
            raise UsageError(
                f"{where} has no partition projection: every query would read the trail's whole history",
                "create a partitioned table with `trailscan athena setup`",
            )
        partitioning = _partitioning(where, template, keys, parameters)

        def enum(column: str | None) -> tuple[str, ...]:
            if column and parameters.get(f"projection.{column}.type", "").lower() == "enum":
                return tuple(v.strip() for v in parameters.get(f"projection.{column}.values", "").split(",") if v.strip())
            return ()

        accounts = (partitioning.account,) if partitioning.account else enum(partitioning.account_column)
        regions = (partitioning.region,) if partitioning.region else enum(partitioning.region_column)
        notes = ()
        if not (columns and any(c.name == "userIdentity" and isinstance(c.type, Struct)
                                and c.type.field("identityProvider") for c in columns)):
            notes = (f"{where} has no useridentity.identityprovider: a refused web identity's OIDC provider is "
                     "read from its principalId",)
        return cls(database, name, columns, partitioning, storage.get("Location", ""), accounts, regions, notes)

    def day_predicate(self, days: Iterable[date]) -> str:
        """The partition predicate selecting the delivery days *days*."""
        days = sorted(set(days))
        p = self.partitioning
        if p.day_column:
            values = ", ".join(f"'{_java_date(day, p.day_format)}'" for day in days)
            return f'"{p.day_column}" IN ({values})'
        assert p.ymd_columns
        year, month, day = p.ymd_columns
        ors = " OR ".join(
            f"(\"{year}\" = '{d.year:04d}' AND \"{month}\" = '{d.month:02d}' AND \"{day}\" = '{d.day:02d}')" for d in days
        )
        return f"({ors})"

    def scope_predicate(self, accounts: Sequence[str], regions: Sequence[str]) -> list[str]:
        """Partition predicates for *accounts* and *regions* (checked, so safe to inline)."""
        found = []
        p = self.partitioning
        for column, values, check in ((p.account_column, accounts, check_account), (p.region_column, regions, check_region)):
            if column and values:
                quoted = ", ".join(f"'{check(v)}'" for v in values)
                found.append(f'"{column}" IN ({quoted})')
        return found


def _partitioning(where: str, template: str, keys: list[str], parameters: dict[str, str]) -> Partitioning:
    """Which partition columns the template puts at the account, region and day folders."""
    match = re.search(r"AWSLogs/(?:[^/]+/)?(?P<account>[^/]+)/CloudTrail/(?P<region>[^/]+)/(?P<day>.+?)/?$", template)
    if not match:
        raise UsageError(f"{where}: its storage.location.template {template!r} is not a trail's "
                         "…/AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/DAY layout")

    def part(text: str, check) -> tuple[str | None, str | None]:
        column = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}", text)
        if column:
            name = column.group(1).lower()
            if name not in keys:
                raise UsageError(f"{where}: the template names ${{{name}}}, which is not a partition column")
            return name, None
        return None, check(text, "storage.location.template")

    account_column, account = part(match["account"], check_account)
    region_column, region = part(match["region"], check_region)
    day = match["day"]
    single = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}", day)
    ymd = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}/\$\{([A-Za-z0-9_]+)\}/\$\{([A-Za-z0-9_]+)\}", day)
    if single:
        column = single.group(1).lower()
        kind = parameters.get(f"projection.{column}.type", "").lower()
        form = parameters.get(f"projection.{column}.format", "")
        if kind != "date" or form not in ("yyyy/MM/dd",):
            raise UsageError(f"{where}: the day column {column} is not a date projection formatted yyyy/MM/dd")
        return Partitioning(day_column=column, day_format=form, account_column=account_column, account=account,
                            region_column=region_column, region=region)
    if ymd:
        return Partitioning(ymd_columns=tuple(g.lower() for g in ymd.groups()), account_column=account_column,  # type: ignore[arg-type]
                            account=account, region_column=region_column, region=region)
    raise UsageError(f"{where}: cannot tell the day partition in {template!r}")


def _java_date(day: date, form: str) -> str:
    return form.replace("yyyy", f"{day.year:04d}").replace("MM", f"{day.month:02d}").replace("dd", f"{day.day:02d}")
