"""One SQL, two engines: the queries of ``queries/`` rendered for Athena.

The detections are written against the store's ``events`` view (``event_time``,
``error_code``, ``identity_arn``, ``request_parameters`` …).  For Athena they are not
rewritten column by column: a CTE named ``events`` is put in front of each query, which
exposes those same names over the CloudTrail table (``eventtime`` parsed, ``useridentity``
fields, ``requestparameters`` as the JSON text it is …) and selects only the partitions
of the window.  The query itself is transpiled from DuckDB's dialect to Trino's by
sqlglot, untouched but for two things: parameters become literals
(:meth:`trailscan.queries.Query.tree`), and a path into ``raw`` (the record itself, which
the table does not hold as one value) becomes the column or struct field that holds it:
``raw -> 'userIdentity' ->> 'invokedBy'`` is ``useridentity.invokedby``.  So a new query
in ``queries/`` renders for Athena with no change here, and a test runs each rendering
back in DuckDB over a table with the CloudTrail table's columns.

:func:`pushdown_sql` builds what the engine runs: one scan of one account and region that
returns the records every detection selects (and their count of the window's events),
never the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from trailscan.athena.table import ArrayOf, AthenaTable, Column, MapOf, Scalar, Struct
from trailscan.errors import QueryError
from trailscan.model import Window

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

    from trailscan.queries import Query, QueryBook

__all__ = [
    "DIALECT",
    "Leaf",
    "Pushdown",
    "Scope",
    "detections",
    "events_view",
    "pushdown_sql",
    "render_query",
]

#: sqlglot's name for Athena's SQL (engine version 3 is Trino).
DIALECT = "trino"
#: The window parameters a detection may take: the engine binds them.
WINDOW_PARAMS = frozenset({"since", "until"})
_SIMPLE = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Scope:
    """What one Athena query reads: the delivery days (partitions, with the delivery-lag
    margin), the window its events must fall in (``eventtime``), and the accounts and
    regions (empty: all the table holds)."""

    days: tuple[date, ...]
    window: Window | None = None
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()


# -- the events view --------------------------------------------------------------------------------


def _ident(name: str) -> str:
    return name if _SIMPLE.match(name) else '"' + name.replace('"', '""') + '"'


def _field(table: AthenaTable, *path: str) -> str | None:
    """``useridentity.sessioncontext.sessionissuer.arn`` for the CloudTrail path
    ``userIdentity.sessionContext.sessionIssuer.arn``, or None when the table lacks it."""
    column = table.column(path[0])
    if column is None:
        return None
    parts, kind = [_ident(column.sql_name)], column.type
    for name in path[1:]:
        if not isinstance(kind, Struct) or kind.field(name) is None:
            return None
        found = kind.field(name)
        assert found is not None
        parts.append(_ident(found.sql_name))
        kind = found.type
    return ".".join(parts)


def _first(*candidates: str | None, cast: str = "VARCHAR") -> str:
    present = [c for c in candidates if c]
    if not present:
        return f"CAST(NULL AS {cast})"
    return present[0] if len(present) == 1 else f"COALESCE({', '.join(present)})"


def _resources_json(table: AthenaTable) -> str:
    """``resources`` as the store has it: a JSON array of objects in CloudTrail's spelling."""
    column = table.column("resources")
    if column is None or not isinstance(column.type, ArrayOf) or not isinstance(column.type.element, Struct):
        return "CAST(NULL AS JSON)"
    fields = column.type.element.fields
    keys = ", ".join(f"'{f.name}'" for f in fields)
    values = ", ".join(f"CAST(r.{_ident(f.sql_name)} AS VARCHAR)" for f in fields)
    return f"CAST(TRANSFORM({_ident(column.sql_name)}, r -> MAP(ARRAY[{keys}], ARRAY[{values}])) AS JSON)"


def _time_literal(moment) -> str:
    return f"FROM_ISO8601_TIMESTAMP('{moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}')"


def events_view(table: AthenaTable, scope: Scope) -> str:
    """The store's ``events`` columns over *table*, for the partitions and window of *scope*
    (Trino SQL, the body of a CTE).  The table's own columns pass through too: a path into
    ``raw`` reads them.  ``origin`` is the object a row was read from."""
    f = lambda *path: _field(table, *path)  # noqa: E731
    event_time = f"TRY(FROM_ISO8601_TIMESTAMP({f('eventTime')}))"
    columns = {
        "event_id": _first(f("eventID")),
        "event_time": event_time,
        "event_version": _first(f("eventVersion")),
        "event_source": _first(f("eventSource")),
        "event_name": _first(f("eventName")),
        "aws_region": _first(f("awsRegion")),
        "account_id": _first(f("recipientAccountId"), f("userIdentity", "accountId")),
        "source_ip": _first(f("sourceIPAddress")),
        "user_agent": _first(f("userAgent")),
        "error_code": _first(f("errorCode")),
        "error_message": _first(f("errorMessage")),
        "read_only": f"TRY_CAST({f('readOnly')} AS BOOLEAN)" if f("readOnly") else "CAST(NULL AS BOOLEAN)",
        "event_category": _first(f("eventCategory")),
        "event_type": _first(f("eventType")),
        "identity_type": _first(f("userIdentity", "type")),
        "identity_arn": _first(f("userIdentity", "arn")),
        "principal_id": _first(f("userIdentity", "principalId")),
        "user_name": _first(f("userIdentity", "userName")),
        "access_key_id": _first(f("userIdentity", "accessKeyId")),
        "session_issuer_arn": _first(f("userIdentity", "sessionContext", "sessionIssuer", "arn")),
        "identity_provider": _first(
            f("userIdentity", "identityProvider"),
            f("userIdentity", "sessionContext", "webIdFederationData", "federatedProvider"),
        ),
        # JSON text in the table, as the store's JSON columns are JSON.
        "request_parameters": _first(f("requestParameters")),
        "response_elements": _first(f("responseElements")),
        "resources": _resources_json(table),
        "tls_host": _first(f("tlsDetails", "clientProvidedHostHeader")),
        "origin": '"$path"',
    }
    where = [table.day_predicate(scope.days), *table.scope_predicate(scope.accounts, scope.regions)]
    if scope.window is not None:
        where.append(f"{event_time} >= {_time_literal(scope.window.start)}")
        where.append(f"{event_time} < {_time_literal(scope.window.end)}")
    select = ",\n    ".join(["*", *(f"{expr} AS {name}" for name, expr in columns.items())])
    conditions = "\n    AND ".join(where)
    return f"SELECT\n    {select}\nFROM {table.qualified}\nWHERE {conditions}"


# -- a query, rendered ---------------------------------------------------------------------------------


def _json_path(keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        parts.append(f".{key}" if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) else '["' + key.replace('"', '\\"') + '"]')
    return "$" + "".join(parts)


def _raw_path(table: AthenaTable, keys: list[str], scalar: bool, where: str) -> "exp.Expression":
    """What ``raw`` at the CloudTrail path *keys* is in *table*: a column, a struct field,
    a map entry, or a JSON path into a column of JSON text."""
    import sqlglot
    from sqlglot import exp

    column = table.column(keys[0])
    if column is None:
        return exp.Null()
    text, kind, rest = _ident(column.sql_name), column.type, keys[1:]
    while rest and isinstance(kind, Struct):
        found = kind.field(rest[0])
        if found is None:
            return exp.Null()
        text, kind, rest = f"{text}.{_ident(found.sql_name)}", found.type, rest[1:]
    if rest and isinstance(kind, MapOf) and len(rest) == 1:
        key = rest[0].replace("'", "''")
        text, kind, rest = f"ELEMENT_AT({text}, '{key}')", kind.value, []
    if rest:
        if not isinstance(kind, Scalar):
            raise QueryError(f"{where}: raw path {'.'.join(keys)} goes through a list; Athena cannot read it so")
        name = "JSON_EXTRACT_SCALAR" if scalar else "JSON_EXTRACT"
        return sqlglot.parse_one(f"{name}({text}, '{_json_path(rest)}')", read=DIALECT)
    if isinstance(kind, Scalar):
        return sqlglot.parse_one(text if scalar else f"JSON_PARSE({text})" if keys[0] in _JSON_TEXT else
                                 f"CAST({text} AS JSON)", read=DIALECT)
    json = f"CAST({text} AS JSON)"
    return sqlglot.parse_one(f"JSON_FORMAT({json})" if scalar else json, read=DIALECT)


_JSON_TEXT = frozenset({"requestParameters", "responseElements", "additionalEventData", "serviceEventDetails",
                        "edgeDeviceDetails"})


def _rewrite_raw(tree: "exp.Expression", table: AthenaTable, where: str) -> "exp.Expression":
    """Every JSON path into ``raw`` as the table column or field that holds it."""
    from sqlglot import exp

    def root_and_keys(node: exp.Expression) -> tuple[exp.Expression, list[str]] | None:
        keys: list[str] = []
        while isinstance(node, (exp.JSONExtract, exp.JSONExtractScalar)):
            path = node.expression
            if not isinstance(path, exp.JSONPath):
                return None
            parts = [p for p in path.expressions if not isinstance(p, exp.JSONPathRoot)]
            if not all(isinstance(p, exp.JSONPathKey) for p in parts):
                return None
            keys[:0] = [str(p.this) for p in parts]
            node = node.this
        return node, keys

    def visit(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.JSONExtract, exp.JSONExtractScalar)):
            found = root_and_keys(node)
            if found and isinstance(found[0], exp.Column) and found[0].name == "raw" and found[1]:
                return _raw_path(table, found[1], isinstance(node, exp.JSONExtractScalar), where)
        return node

    tree = tree.transform(visit)
    for column in tree.find_all(exp.Column):
        if column.name == "raw" and not column.table:
            raise QueryError(f"{where}: Athena's table holds no record as one value (raw)",
                             "name the field instead: raw -> 'userIdentity' ->> 'arn'")
    return tree


def _tree(query: "Query", table: AthenaTable, values: Mapping[str, object]) -> "exp.Query":
    if query.reads - {"events"}:
        others = ", ".join(sorted(query.reads - {"events"}))
        raise QueryError(f"query {query.name} reads {others}, which only the local store holds",
                         "it runs on the local engine only")
    return _rewrite_raw(query.tree(values), table, f"{query.path}:{query.line}")  # type: ignore[return-value]


def _with_events(tree: "exp.Query", view: str) -> "exp.Query":
    import sqlglot
    from sqlglot import exp

    cte = exp.CTE(this=sqlglot.parse_one(view, read=DIALECT), alias=exp.TableAlias(this=exp.to_identifier("events")))
    key = "with_" if "with_" in type(tree).arg_types else "with"
    existing = tree.args.get(key)
    if existing is None:
        tree.set(key, exp.With(expressions=[cte]))
    else:
        existing.set("expressions", [cte, *existing.expressions])
    return tree


def render_query(query: "Query", table: AthenaTable, scope: Scope, values: Mapping[str, object]) -> str:
    """*query* in Athena's SQL over *table*, for *scope*, with *values* inlined: what
    ``trailscan queries show NAME --dialect athena`` prints."""
    tree = _with_events(_tree(query, table, values), events_view(table, scope))
    return tree.sql(dialect=DIALECT, pretty=True)


# -- what the engine runs ---------------------------------------------------------------------------------


def detections(book: "QueryBook") -> list["Query"]:
    """The queries whose rows the explainer reads, found by their shape, so that a new one
    is pushed down with no change here: each reads ``events`` alone, takes the window
    (``since``, ``until``) and otherwise only optional one-value filters (left off: a list
    parameter such as ``access_keys`` marks a lookup of given rows, not a detection), returns
    one row per event (``event_id``) and aggregates nothing."""
    import sqlglot
    from sqlglot import exp

    found = []
    for query in book:
        if query.reads != {"events"} or any(
            p.name not in WINDOW_PARAMS and (p.required or p.type.endswith("[]")) for p in query.params
        ):
            continue
        tree = sqlglot.parse_one(query.sql, read="duckdb")
        if not isinstance(tree, exp.Select) or tree.args.get("group") or any(e.find(exp.AggFunc) for e in tree.expressions):
            continue
        if "event_id" in {e.alias_or_name for e in tree.expressions}:
            found.append(query)
    return found


@dataclass(frozen=True)
class Leaf:
    """One column of a pushdown's result: a CloudTrail field (its path, in CloudTrail's
    spelling), as text, or as JSON text (``json``) for maps and lists."""

    path: tuple[str, ...]
    json: bool = False


@dataclass(frozen=True)
class Pushdown:
    """A pushdown query and the meaning of its result's columns: the leaves, then the
    count of the window's events the row stands for (``trailscan_events``)."""

    sql: str
    leaves: tuple[Leaf, ...]


def _leaves(columns: Iterable[Column], prefix: tuple[str, ...] = (), text: str = "") -> Iterable[tuple[Leaf, str]]:
    for column in columns:
        path, sql = (*prefix, column.name), f"{text}.{_ident(column.sql_name)}" if text else _ident(column.sql_name)
        kind = column.type
        if isinstance(kind, Struct):
            yield from _leaves(kind.fields, path, sql)
        elif isinstance(kind, ArrayOf) and isinstance(kind.element, Struct):
            fields = kind.element.fields
            keys = ", ".join(f"'{f.name}'" for f in fields)
            values = ", ".join(f"CAST(x.{_ident(f.sql_name)} AS VARCHAR)" for f in fields)
            yield Leaf(path, json=True), (
                f"JSON_FORMAT(CAST(TRANSFORM({sql}, x -> MAP(ARRAY[{keys}], ARRAY[{values}])) AS JSON))"
            )
        elif isinstance(kind, (ArrayOf, MapOf)):
            yield Leaf(path, json=True), f"JSON_FORMAT(CAST({sql} AS JSON))"
        else:
            yield Leaf(path), sql if kind.name in ("string", "varchar") else f"CAST({sql} AS VARCHAR)"


def _predicate(query: "Query", table: AthenaTable, values: Mapping[str, object]) -> str:
    """The condition selecting the rows *query* selects, over the events view: its WHERE
    when it is one plain SELECT, else membership of its event ids (a second scan)."""
    from sqlglot import exp

    tree = _tree(query, table, values)
    source = tree.args.get("from") or tree.args.get("from_")
    simple = (
        isinstance(tree, exp.Select)
        and not any(tree.args.get(k) for k in ("with", "with_", "group", "having", "limit", "offset", "qualify",
                                                "distinct", "joins", "laterals"))
        and isinstance(source, exp.From)
        and isinstance(source.this, exp.Table)
        and source.this.name == "events"
        and not source.this.args.get("alias")
    )
    if simple:
        where = tree.args.get("where")
        return where.this.sql(dialect=DIALECT) if where is not None else "TRUE"
    return f"event_id IN (SELECT event_id FROM ({tree.sql(dialect=DIALECT)}) AS {_ident(query.name)})"


def pushdown_sql(table: AthenaTable, scope: Scope, selections: Sequence[tuple["Query", Mapping[str, object]]]) -> Pushdown:
    """One scan of *scope* that returns each record one of *selections* (a query and its
    values) selects — every field, flattened to text — and, grouped apart, how many events
    of the window the scan saw.  Rows of the records carry a count too (1, or the copies
    of a record delivered twice); the row whose fields are all NULL counts the rest."""
    leaves = list(_leaves(table.columns))
    hits = " OR ".join(f"({_predicate(query, table, values)})" for query, values in selections) or "FALSE"
    select = [f"CASE WHEN trailscan_hit THEN {sql} END AS c{n}" for n, (_, sql) in enumerate(leaves)]
    select.append("COUNT(*) AS trailscan_events")
    ordinals = ", ".join(str(n) for n in range(1, len(leaves) + 1))
    body = ",\n    ".join(select)
    sql = (
        f"WITH events AS (\n{events_view(table, scope)}\n),\n"
        f"marked AS (\nSELECT *, COALESCE({hits}, FALSE) AS trailscan_hit\nFROM events\n)\n"
        f"SELECT\n    {body}\nFROM marked\nGROUP BY {ordinals}"
    )
    return Pushdown(sql, tuple(leaf for leaf, _ in leaves))


def render_for_console(query: "Query", table_name: str, given: Mapping[str, str]) -> str:
    """``trailscan queries show NAME --dialect athena``: *query* for the table
    ``trailscan athena setup`` creates, ready to paste in Athena's console.  The window is
    ``--param since=…`` and ``until=…`` (default: the last 24 hours); the partitions follow
    from it, with the delivery-lag margin."""
    from trailscan.athena.table import parse_table_name
    from trailscan.model import utc_now
    from trailscan.sources.s3 import DELIVERY_LAG, delivery_days
    from trailscan.window import make_window

    database, name = parse_table_name(table_name)
    window = make_window(given.get("since") or "24h", given.get("until") or utc_now())
    assert window is not None
    values = {**given, "since": window.start, "until": window.end}
    values = {k: v for k, v in values.items() if k in {p.name for p in query.params}}
    table = AthenaTable.standard(database, name)
    sql = render_query(query, table, Scope(tuple(delivery_days(window, DELIVERY_LAG)), window), values)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    head = (f"-- {query.name}: {query.title}\n"
            f"-- for Athena over {database}.{name} (as `trailscan athena setup` creates it), "
            f"window {window.start:{stamp}} to {window.end:{stamp}}\n")
    return head + sql + "\n"
