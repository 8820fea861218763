"""The judging stage: from failed CloudTrail events to workloads, causes and fixes.

One room a job:

- :mod:`.causes` — the cause table: every cause, its kind, title and meaning, in precedence order;
- :mod:`.collect` — the window's failures, grouped in SQL, and the sessions behind them;
- :mod:`.coverage` — what was read for the window, every ingest merged, and its events counted;
- :mod:`.workload` — which workload a failure belongs to, and what the inventory holds;
- :mod:`.irsa`, :mod:`.pod_identity`, :mod:`.denied` — one decision tree per kind of finding,
  written as ordered rules (:mod:`.rules`);
- :mod:`.fixes` and :mod:`.text` — what to change, and the words of explanations;
- :mod:`.run` — verdicts merged into findings.

Causes are asserted only on evidence: what AWS's message says, or what the inventory
positively shows.  Whatever could not be checked is named in the explanation, and a
finding with no established cause is ``UNEXPLAINED`` — never a guess.

This package never imports a source: ingesting is :mod:`trailscan.pipeline`'s job.  Its
entry points are loaded on first use, so that the findings model can read the cause
table without loading the decision modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CHAIN_LIMIT", "MINT_LOOKBACK", "FailureGroup", "Failures", "MintedSession", "collect_failures",
           "explain_failures", "explain_store", "measure_coverage", "window_coverage"]

if TYPE_CHECKING:  # pragma: no cover
    from trailscan.explain.collect import (
        CHAIN_LIMIT,
        MINT_LOOKBACK,
        FailureGroup,
        Failures,
        MintedSession,
        collect_failures,
    )
    from trailscan.explain.coverage import measure_coverage, window_coverage
    from trailscan.explain.run import explain_failures, explain_store

_HOMES = {
    "CHAIN_LIMIT": "collect",
    "MINT_LOOKBACK": "collect",
    "FailureGroup": "collect",
    "Failures": "collect",
    "MintedSession": "collect",
    "collect_failures": "collect",
    "explain_failures": "run",
    "explain_store": "run",
    "measure_coverage": "coverage",
    "window_coverage": "coverage",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"trailscan.explain.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'trailscan.explain' has no attribute {name!r}")
