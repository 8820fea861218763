"""The Athena engine: the same detections, run by Athena over the trail's bucket.

For trails one machine cannot read in time, the filtering is pushed down to Athena and
only what the explainer needs comes back into the local store; findings, notebooks and
reports then work on it as on any ingest.

- :mod:`.table` — the CloudTrail table: its columns (AWS's documented table), the trail's
  key layouts as partition projection, the DDL, and reading an existing table from Glue;
- :mod:`.sql` — the store's ``events`` as a view over that table, so each query of
  ``queries/`` renders for Athena (Trino's dialect) through sqlglot; the pushdown query;
- :mod:`.records` — result rows back into CloudTrail records;
- :mod:`.client` — StartQueryExecution, polling with backoff, paginated results,
  cancellation, within Athena's concurrency;
- :mod:`.engine` — the plan (which accounts and regions each query covers), the store,
  the coverage;
- :mod:`.setup` — ``trailscan athena setup``: discover the layout, create the table;
- :mod:`.names` — account, region and table names, checked before they reach SQL.

The permissions the engine needs are printed by ``trailscan iam-policy --engine athena``
(:func:`trailscan.iam_policy.athena_statements`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from trailscan.athena.engine import AthenaRequest, ingest_athena
    from trailscan.athena.setup import SetupRequest, setup_table

__all__ = ["AthenaRequest", "SetupRequest", "ingest_athena", "setup_table"]


def __getattr__(name: str) -> Any:
    # boto3 and sqlglot load only when the engine is used.
    if name in ("AthenaRequest", "ingest_athena"):
        from trailscan.athena import engine

        return getattr(engine, name)
    if name in ("SetupRequest", "setup_table"):
        from trailscan.athena import setup

        return getattr(setup, name)
    raise AttributeError(name)
