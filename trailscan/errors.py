"""Typed errors, defined once and translated to one-line messages at the CLI edge.

Every error carries a message naming the culprit (file, bucket, option) and an
optional hint saying what to do.  ``exit_code`` follows SPEC §8: 2 for usage
or input errors, 3 for incomplete coverage (and, SPEC §10, for doctor checks that
could not run).
"""

from __future__ import annotations


class TrailscanError(Exception):
    """Base class: a failure the user can act on, never a bug."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TrailscanError):
    """An option or argument that cannot be used as given."""


class InputError(TrailscanError):
    """An input (file, bucket, inventory document) that could not be read."""


class QueryError(TrailscanError):
    """A query file that does not load, or a query that cannot run."""


class StoreError(TrailscanError):
    """The DuckDB store cannot be opened or written (busy, corrupt, read-only)."""


class NewerStoreError(StoreError):
    """The store was written by a newer trailscan, whose layout this one must not change."""


class SourceError(TrailscanError):
    """A CloudTrail source (S3, LookupEvents) that cannot be read at all."""


class IncompleteCoverage(TrailscanError):
    """Some of the window could not be read: results are partial."""

    exit_code = 3


class ChecksBlocked(TrailscanError):
    """``trailscan doctor`` could not run its checks at all (kubectl cannot reach the
    cluster, or may not read the pod): nothing was diagnosed."""

    exit_code = 3
