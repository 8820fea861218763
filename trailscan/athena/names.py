"""Names trailscan inlines in Athena SQL and IAM policies, checked at the boundary: account
ids, region names, Glue database and table names."""

from __future__ import annotations

import re

from trailscan.errors import UsageError

__all__ = ["check_account", "check_region", "parse_table_name"]

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_NAME = re.compile(r"^[a-z0-9_]{1,255}$")


def check_account(value: str, option: str = "--accounts") -> str:
    if not _ACCOUNT.match(value):
        raise UsageError(f"{option} {value!r}: not an AWS account id (12 digits)")
    return value


def check_region(value: str, option: str = "--regions") -> str:
    if not _REGION.match(value):
        raise UsageError(f"{option} {value!r}: not an AWS region name")
    return value


def parse_table_name(value: str, option: str = "--athena-table") -> tuple[str, str]:
    """``DB.TABLE`` → ``(db, table)``, both as Glue names (lower case, digits, ``_``)."""
    database, dot, table = value.strip().lower().partition(".")
    if not dot or not _NAME.match(database) or not _NAME.match(table):
        raise UsageError(f"{option} {value!r}: expected DATABASE.TABLE (letters, digits and _)")
    return database, table
