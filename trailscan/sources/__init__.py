"""CloudTrail sources: one interface, one registry.

Every source reads its input into a :class:`~trailscan.store.Store` in bounded,
transactional batches and returns what it read with the coverage it achieved.  The CLI,
the pipeline (:mod:`trailscan.pipeline`), the notebook API and ``iam-policy`` reach a
source only through :func:`get_source`:

- ``files`` (:mod:`.files`): local files, folders and globs;
- ``s3`` (:mod:`.s3`): a trail's S3 bucket;
- ``lookup`` (:mod:`.lookup`): the LookupEvents API.

To add a source: a module here with a class that implements :class:`Source`, and one
line in :data:`REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from trailscan.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from trailscan.model import BatchResult, Coverage, ProgressFn, Window
    from trailscan.store import Store

__all__ = ["REGISTRY", "IngestRequest", "Source", "get_source", "source_names"]

#: name → (``module:class`` implementing :class:`Source`, whether it reads AWS).  One line per source.
REGISTRY: dict[str, tuple[str, bool]] = {
    "files": ("trailscan.sources.files:FilesSource", False),
    "s3": ("trailscan.sources.s3:S3Source", True),
    "lookup": ("trailscan.sources.lookup:LookupSource", True),
}


@dataclass(frozen=True)
class IngestRequest:
    """What to read, as the options of ``trailscan since``/``ingest`` say: ``source`` by
    name (``None`` picks ``files`` with ``paths``, ``s3`` with a bucket, else ``lookup``),
    and each source's own settings."""

    source: str | None = None
    paths: tuple[str, ...] = ()
    bucket: str | None = None
    prefix: str = ""
    org_id: str | None = None
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    quick: bool = False
    workers: int = 8
    #: ``athena``: Athena reads the trail's window where it lies (``athena``, a
    #: :class:`trailscan.athena.AthenaRequest`, says how) and only what the explainer needs
    #: comes back; ``local`` (default): the source reads it into the store.
    engine: str = "local"
    athena: Any = None

    @property
    def chosen_source(self) -> str:
        if self.source:
            return self.source
        if self.paths:
            return "files"
        return "s3" if self.bucket else "lookup"


class Source(Protocol):
    """What every source implements."""

    #: The name users give (``--source NAME``).
    name: str
    #: Whether it reads AWS (and so needs a ``boto3.Session``).
    remote: bool

    def ingest(
        self,
        store: Store,
        request: IngestRequest,
        *,
        window: Window | None,
        session: Any,
        progress: ProgressFn | None,
    ) -> tuple[BatchResult, list[Coverage]]:
        """Read what *request* names (the *window* of it, for a remote source) into *store*;
        record and return the coverage.  Inputs that cannot be read are named in the
        result's ``problems``; a source that cannot be read at all raises a
        :class:`~trailscan.errors.TrailscanError`."""
        ...

    def required_statements(self, request: Any, notes: list[str]) -> list[dict[str, Any]]:
        """The IAM policy statements reading this source needs (``trailscan iam-policy``;
        *request* is a :class:`~trailscan.iam_policy.PolicyRequest`), adding what to replace
        or know to *notes*."""
        ...


def source_names(*, remote: bool | None = None) -> tuple[str, ...]:
    """The registered sources' names (only the remote ones, or only the local ones, when asked)."""
    return tuple(name for name, (_, is_remote) in REGISTRY.items() if remote is None or is_remote == remote)


def get_source(name: str) -> Source:
    """The source registered as *name*; :class:`UsageError` for an unknown one."""
    try:
        home, _ = REGISTRY[name]
    except KeyError:
        raise UsageError(f"--source {name!r}: expected one of {', '.join(REGISTRY)}") from None
    module, _, cls = home.partition(":")
    return getattr(import_module(module), cls)()
