"""SQL as an asset: the named, documented, parameterised queries in ``queries/*.sql``.

Each file holds one query and starts with a header of comment lines::

    -- name: failed_web_identity
    -- title: Failed AssumeRoleWithWebIdentity calls
    -- description: Pods whose web-identity token was refused.  More
    --   description lines may follow, indented.
    -- param: since TIMESTAMPTZ = NULL  Start of the window (inclusive)
    SELECT … WHERE event_time >= coalesce($since, '-infinity')

Files are validated when they load — a missing or duplicate name, a name that is
not the file's stem, a parameter used but not declared or declared but not used,
more than one statement — and each problem points at ``file:line``.  Parameters are
always bound by DuckDB, never formatted into the SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from trailscan.errors import QueryError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

_HEADER = re.compile(r"^--\s*(name|title|description|param):\s*(.*)$")
_PARAM = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[A-Z][A-Z0-9_\[\]]*)(?:\s*=\s*(?P<default>\S+))?\s*(?P<doc>.*)$")
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_STRING_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\"(?:[^\"]|\"\")*\"")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    doc: str

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Query:
    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path
    line: int = 1

    def bind(self, given: dict[str, object]) -> dict[str, object]:
        """Values for every declared parameter: given ones cast by DuckDB through the
        declared type, the rest from their defaults; unknown names are an error.  A
        ``TIMESTAMPTZ`` takes what every trailscan window takes (:func:`trailscan.window.parse_moment`:
        ``7d``, ``24h``, ``now``, ISO 8601, a datetime); a bad one is a :class:`UsageError`."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise QueryError(
                f"query {self.name} has no parameter {unknown[0]!r}",
                f"its parameters: {', '.join(known) or 'none'}",
            )
        values: dict[str, object] = {}
        for param in self.params:
            if param.name in given and param.type == "TIMESTAMPTZ":
                try:
                    values[param.name] = _moment(given[param.name])
                except UsageError as error:
                    raise UsageError(f"query {self.name}, parameter {param.name}: {error.message}", error.hint) from None
            elif param.name in given:
                values[param.name] = given[param.name]
            elif param.required:
                raise QueryError(f"query {self.name} needs --param {param.name}=…", param.doc or None)
            else:
                values[param.name] = None if param.default.upper() == "NULL" else param.default
        return values

    def typed_sql(self) -> str:
        """The SQL with each ``$param`` cast to its declared type, so text from the
        command line binds as the right type (a timestamp, an integer …)."""
        types = {p.name: p.type for p in self.params}

        def cast(match: re.Match) -> str:
            name = match.group(1)
            return f"CAST(${name} AS {types[name]})" if name in types else match.group(0)

        return _substitute_outside_strings(self.sql, cast)

    # -- another engine's dialect -------------------------------------------------------

    def tree(self, values: Mapping[str, object]) -> "exp.Query":
        """The query as a sqlglot tree, with every parameter inlined as a literal of its
        declared type, for another engine to run: what :mod:`trailscan.athena.sql` renders
        in Athena's dialect.

        *values* are bound as :meth:`bind` binds them (missing ones take their defaults).
        A parameter left NULL removes the condition it guards (``$since IS NULL OR …``
        becomes TRUE), and ``GROUP BY ALL``, which Trino reads differently, becomes the
        ordinals of the grouped columns.  Values reach the SQL only as typed literals
        sqlglot writes (quotes doubled): timestamps are parsed as such, lists are lists of
        strings.  :class:`QueryError` names the file and line of what the transpiler
        cannot read.
        """
        import sqlglot
        from sqlglot import exp
        from sqlglot.errors import SqlglotError

        bound = self.bind({k: v for k, v in values.items()})  # type: ignore[arg-type]
        types = {p.name: p.type for p in self.params}
        try:
            tree = sqlglot.parse_one(self.sql, read="duckdb")
        except SqlglotError as error:
            raise QueryError(f"{self.path}:{self.line}: the transpiler cannot read this query: {error}") from None
        if not isinstance(tree, exp.Query):
            raise QueryError(f"{self.path}:{self.line}: not a query")
        for lam in tree.find_all(exp.Lambda):
            names = {str(e.name) for e in lam.expressions}
            raise QueryError(
                f"{self.path}:{self.line}: `{' '.join(sorted(names))} -> …` inside a function call reads as a "
                "lambda to the transpiler",
                "write (column -> 'key') in parentheses, or json_extract_string(column, '$.key')",
            )

        def literal(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Cast) and isinstance(node.this, exp.Placeholder):
                node = node.this  # the declared type decides below
            if not isinstance(node, exp.Placeholder) or node.name not in types:
                return node
            made = _literal(bound[node.name], types[node.name], self, node.name)
            made.meta["trailscan_param"] = True
            return made

        tree = tree.transform(literal)
        # Children first, so that a condition sees its operands already folded.
        for node in reversed(list(tree.dfs())):
            folded = _fold_known_conditions(node)
            if folded is None:
                node.pop()
            elif folded is not node:
                node.replace(folded)
        for select in tree.find_all(exp.Select):
            group = select.args.get("group")
            if group is not None and group.args.get("all"):
                ordinals = [
                    exp.Literal.number(position)
                    for position, item in enumerate(select.expressions, start=1)
                    if not item.find(exp.AggFunc)
                ]
                select.set("group", exp.Group(expressions=ordinals))
        return tree  # type: ignore[return-value]

    @property
    def reads(self) -> frozenset[str]:
        """The tables and views the query reads (``events``, ``coverage`` …), CTEs excluded."""
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(self.sql, read="duckdb")
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        return frozenset(t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes)


def _literal(value: object, kind: str, query: Query, name: str) -> "exp.Expression":
    """*value* as a sqlglot literal of the declared type *kind*."""
    from sqlglot import exp

    if value is None:
        return exp.Null()
    base = kind.upper()
    if base.endswith("[]"):
        items = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        return exp.Array(expressions=[_literal(item, base[:-2], query, name) for item in items])
    if base.startswith("TIMESTAMP"):
        from trailscan.window import parse_moment

        moment = parse_moment(value if isinstance(value, (str, datetime)) else str(value))
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # FROM_ISO8601_TIMESTAMP in Trino, a TIMESTAMPTZ cast in DuckDB.
        return exp.FromISO8601Timestamp(this=exp.Literal.string(text))
    if base in ("BOOLEAN", "BOOL"):
        return exp.Boolean(this=str(value).lower() in ("true", "1", "t", "yes"))
    if base in ("INTEGER", "INT", "BIGINT", "SMALLINT", "DOUBLE", "REAL", "FLOAT", "DECIMAL"):
        try:
            number = float(value) if base in ("DOUBLE", "REAL", "FLOAT", "DECIMAL") else int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise QueryError(f"query {query.name}: --param {name}={value!r} is not a number") from None
        return exp.Literal.number(number)
    return exp.Literal.string(str(value))


def _fold_known_conditions(node: "exp.Expression") -> "exp.Expression | None":
    """Fold what an inlined parameter decides: ``NULL IS NULL`` is TRUE, ``'x' IS NULL``
    FALSE, and TRUE/FALSE through parentheses, NOT, AND and OR (a WHERE of TRUE goes)."""
    from sqlglot import exp

    def known(item: exp.Expression | None) -> bool | None:
        if isinstance(item, exp.Boolean):
            return bool(item.this)
        return None

    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null) and node.this.meta.get("trailscan_param"):
        return exp.Boolean(this=isinstance(node.this, exp.Null))
    if isinstance(node, exp.Paren) and known(node.this) is not None:
        return node.this
    if isinstance(node, exp.Not) and known(node.this) is not None:
        return exp.Boolean(this=not known(node.this))
    if isinstance(node, exp.Or):
        sides = (known(node.this), known(node.expression))
        if True in sides:
            return exp.Boolean(this=True)
        if sides[0] is False:
            return node.expression
        if sides[1] is False:
            return node.this
    if isinstance(node, exp.And):
        sides = (known(node.this), known(node.expression))
        if False in sides:
            return exp.Boolean(this=False)
        if sides[0] is True:
            return node.expression
        if sides[1] is True:
            return node.this
    if isinstance(node, exp.Where) and known(node.this) is True:
        return None
    return node


def _moment(value: object) -> object:
    """A TIMESTAMPTZ parameter as a UTC datetime; None (SQL NULL) stays None."""
    from trailscan.window import parse_moment

    if value is None or (isinstance(value, str) and value.strip().upper() == "NULL"):
        return None
    if isinstance(value, (str, datetime)):
        return parse_moment(value)
    return value


@dataclass
class QueryBook:
    queries: dict[str, Query] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Query:
        try:
            return self.queries[name]
        except KeyError:
            raise QueryError(
                f"no query named {name!r}", "run `trailscan queries list` to see them"
            ) from None

    def __iter__(self):
        return iter(sorted(self.queries.values(), key=lambda q: q.name))

    def __len__(self) -> int:
        return len(self.queries)


def queries_dir() -> Path:
    """``queries/`` ships inside the wheel as ``trailscan/queries``; in a source
    checkout it is the top-level folder beside the package."""
    packaged = Path(__file__).parent / "queries"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "queries"


def load_queries(folder: Path | None = None) -> QueryBook:
    """Load and validate every ``*.sql`` file of ``folder`` (default :func:`queries_dir`)."""
    folder = folder or queries_dir()
    if not folder.is_dir():
        raise QueryError(f"{folder}: the queries folder is missing", "reinstall trailscan")
    book = QueryBook()
    for path in sorted(folder.glob("*.sql")):
        query = parse_query(path.read_text(encoding="utf-8"), path)
        if query.name in book.queries:
            first = book.queries[query.name].path
            raise QueryError(f"{path}:1: duplicate query name {query.name!r} (first in {first.name})")
        book.queries[query.name] = query
    return book


def parse_query(text: str, path: Path) -> Query:
    """Parse one query file; raise :class:`QueryError` pointing at ``file:line``."""
    header: dict[str, str] = {}
    params: list[Param] = []
    lines = text.splitlines()
    body_start = len(lines)
    last_key = None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        match = _HEADER.match(stripped)
        if match:
            key, value = match.group(1), match.group(2).strip()
            if key == "param":
                parsed = _PARAM.match(value)
                if not parsed:
                    raise QueryError(
                        f"{path}:{number}: bad param line {value!r}",
                        "write `-- param: name TYPE [= default] description`",
                    )
                params.append(Param(parsed["name"], parsed["type"], parsed["default"], parsed["doc"].strip()))
            elif key in header:
                raise QueryError(f"{path}:{number}: second `{key}:` line")
            else:
                header[key] = value
            last_key = key
            continue
        if stripped.startswith("--"):
            continuation = stripped[2:].strip()
            if last_key == "description":
                header["description"] = f"{header['description']} {continuation}".strip()
            continue
        body_start = number - 1
        break
    for key in ("name", "title", "description"):
        if not header.get(key):
            raise QueryError(f"{path}:1: missing `-- {key}:` header line")
    if header["name"] != path.stem:
        raise QueryError(f"{path}:1: query name {header['name']!r} differs from the file name {path.stem!r}")
    sql = "\n".join(lines[body_start:]).strip()
    if not sql:
        raise QueryError(f"{path}:{body_start + 1}: no SQL after the header")
    code = _STRING_OR_COMMENT.sub("", sql).rstrip().rstrip(";")
    if ";" in code:
        raise QueryError(f"{path}:{body_start + 1}: more than one statement; one query per file")
    used = set(_PLACEHOLDER.findall(code))
    declared = [p.name for p in params]
    for name in sorted(used - set(declared)):
        line = body_start + 1 + next(
            (i for i, l in enumerate(lines[body_start:]) if f"${name}" in l), 0
        )
        raise QueryError(f"{path}:{line}: parameter ${name} is used but not declared")
    for name in declared:
        if name not in used:
            raise QueryError(f"{path}:1: parameter {name!r} is declared but never used")
    if len(set(declared)) != len(declared):
        raise QueryError(f"{path}:1: a parameter is declared twice")
    return Query(
        name=header["name"],
        title=header["title"],
        description=header["description"],
        params=tuple(params),
        sql=sql.rstrip().rstrip(";"),
        path=path,
        line=body_start + 1,
    )


def _substitute_outside_strings(sql: str, replace) -> str:
    out, last = [], 0
    for match in _STRING_OR_COMMENT.finditer(sql):
        out.append(_PLACEHOLDER.sub(replace, sql[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_PLACEHOLDER.sub(replace, sql[last:]))
    return "".join(out)


#: Statements that only read: run read-only, they fail for other reasons than read-only.
_READING = ("SELECT", "EXPLAIN", "PRAGMA", "CALL", "RELATION")
#: What DuckDB says when a read-only, confined store refuses a statement.
_REFUSED = re.compile(r"read-only mode|disabled by configuration|configuration has been locked", re.I)


def run_statement(store, sql: str, *, writable: bool = False):
    """Run the one SQL statement *sql* over *store* (a :class:`~trailscan.store.Store`), as
    ``trailscan sql`` does: its :class:`~trailscan.store.Rows` (``columns``, ``rows``, and
    whether the row cap cut it short).

    More than one statement is refused (:class:`UsageError`): only the last one's result
    could be shown, and the others would run unseen.  Unless *writable*, the store is
    confined (:meth:`~trailscan.store.Store.confine`); a statement that needs more names
    ``--write`` in its error.
    """
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_first_line(str(exc))) from None
    if not statements:
        raise UsageError("no SQL statement given")
    if len(statements) > 1:
        raise UsageError(
            f"{len(statements)} SQL statements given; trailscan sql runs one at a time",
            "run each with its own `trailscan sql`",
        )
    if not writable:
        store.confine()
    try:
        return store.query_rows(sql)
    except QueryError as error:
        kind = statements[0].type.name
        if not writable and (kind not in _READING or _REFUSED.search(error.message)):
            raise QueryError(
                error.message, f"`trailscan sql` opens the store read-only; pass --write to run {kind}"
            ) from None
        raise


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text
