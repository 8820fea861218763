"""The pipeline as the commands run it: ingest the window, read the inventory, explain.

``trailscan since`` and ``report`` ingest then explain; ``trailscan findings`` and the
notebook's ``explain()`` explain what the store holds.  Sources are reached through their
registry (:mod:`trailscan.sources`); the judging stage (:mod:`trailscan.explain`) never
imports one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from trailscan.aws import default_session, has_credentials
from trailscan.errors import UsageError
from trailscan.explain.collect import collect_failures
from trailscan.explain.request import wanted_layers
from trailscan.explain.run import explain_failures
from trailscan.findings import FindingsReport
from trailscan.inventory import Inventory, load_eks_live, load_iam_file, load_iam_live, merge_inventories
from trailscan.kube import fetch_service_account_set, load_service_account_set
from trailscan.layers import LayerWants, PolicyLayers, load_layers_live, load_policy_file
from trailscan.model import BatchResult, Coverage, ProgressFn, Window
from trailscan.sources import IngestRequest, get_source
from trailscan.store import Store
from trailscan.troubleshooter import fetch_answers

__all__ = ["IngestRequest", "InventoryRequest", "ingest_source", "investigate", "load_inventory"]


@dataclass(frozen=True)
class InventoryRequest:
    """Where the inventory comes from (SPEC §5).  Nothing given: CloudTrail alone.

    ``live_iam``: read the roles the failures involve through boto3 — ``None`` (default)
    does so when no ``iam_files`` are given and AWS credentials are configured.
    ``clusters`` are described live (``describe_cluster``, node groups, Pod Identity
    associations) in ``regions`` (default: the session's region).  ``policy_files`` are
    ``--policies [NAME=]FILE`` values: the policy layers beyond the roles' own, as the AWS
    CLI prints them (:func:`trailscan.layers.load_policy_file`); when IAM is read live, the
    layers the failures name are read live too (:func:`trailscan.layers.load_layers_live`).
    """

    service_account_files: tuple[str, ...] = ()  # each FILE or CLUSTER=FILE
    kube_context: str | None = None
    iam_files: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    live_iam: bool | None = None
    policy_files: tuple[str, ...] = ()


def load_inventory(
    request: InventoryRequest, *, role_arns: Iterable[str] = (), session: Any = None,
    layers: LayerWants | None = None,
) -> tuple[Inventory | None, list[str]]:
    """The inventory *request* asks for, and notices for the user (what was not read).

    Returns ``(None, notices)`` when nothing at all was asked for or could be read: the
    explainer then works from CloudTrail alone.  Unreadable files raise
    :class:`InputError`; AWS refusals become inventory gaps.
    """
    parts: list[Inventory] = []
    notices: list[str] = []
    for path in request.iam_files:
        parts.append(load_iam_file(path))
    for value in request.policy_files:
        parts.append(Inventory(layers=load_policy_file(value)))
    # Each list speaks only for its own cluster: --service-accounts [CLUSTER=]FILE, and the
    # issuer the --kube-context's API server announces.
    sets = [load_service_account_set(value) for value in request.service_account_files]
    if request.kube_context:
        sets.append(fetch_service_account_set(request.kube_context))
    if sets:
        parts.append(Inventory().with_service_account_sets(sets))
    live = request.live_iam
    needs_session = live is not False and not request.iam_files or bool(request.clusters)
    if needs_session and session is None:
        try:
            session = default_session()
        except UsageError as error:
            notices.append(f"{error}: nothing read live from AWS")
            live, request = False, replace(request, clusters=())
    if live is None:
        live = not request.iam_files and has_credentials(session)
        if not request.iam_files and not live:
            notices.append("no --iam file and no AWS credentials: IAM roles, policies and OIDC providers not read")
    wanted = set(role_arns)
    if request.clusters:
        clusters = load_eks_live(session, request.clusters, request.regions or None)
        parts.append(Inventory().with_clusters(clusters))
        # The roles of Pod Identity associations: a refused AssumeRoleForPodIdentity names none.
        wanted |= {a.role_arn for c in clusters for a in c.pod_identity_associations}
    if live:
        parts.append(load_iam_live(session, role_arns=sorted(wanted)))
        if layers is not None and not layers.empty:
            # Only what the failures name: their resources, endpoints, accounts and session policies,
            # and AWS's own evaluation of the refusals whose messages carry an authorization id.
            parts.append(Inventory(layers=load_layers_live(session, layers, default_region=(request.regions or (None,))[0])))
            if layers.authorizations:
                answers, gaps = fetch_answers(session, layers.authorizations)
                parts.append(Inventory(layers=PolicyLayers(
                    answers=answers, gaps={f"authorization:{key}": why for key, why in gaps.items()})))
    if not parts:
        return None, notices
    return merge_inventories(parts), notices


def investigate(
    store: Store,
    *,
    window: Window | None,
    inventory: InventoryRequest = InventoryRequest(),
    ingest: IngestRequest | None = None,
    session: Any = None,
    progress: Any = None,
    all_principals: bool = False,
) -> FindingsReport:
    """Ingest the window (when *ingest* is given), read the inventory for the roles the
    failures involve, and explain them: what ``trailscan since`` and ``trailscan findings`` do.

    *session* (a ``boto3.Session``) is made from standard AWS configuration when an AWS
    source or live inventory needs one.  Unreadable input files are listed in the
    report's ``problems``; the readable ones are stored and explained all the same.
    Callers shown to be no EKS workload are left out (and counted in a note) unless
    *all_principals*.
    """
    problems: list[str] = []
    if ingest is not None:
        if window is None:
            raise UsageError("an ingest needs a time window")
        result, _ = ingest_source(store, ingest, window=window, session=session, progress=progress)
        problems = [str(problem) for problem in result.problems]
    failures = collect_failures(store, window)
    loaded, notices = load_inventory(inventory, role_arns=failures.role_arns(), session=session,
                                     layers=wanted_layers(failures.groups, failures.issued))
    report = explain_failures(failures, loaded, all_principals=all_principals)
    report.notes[:0] = notices
    report.problems.extend(problems)
    return report


def ingest_source(
    store: Store,
    request: IngestRequest,
    *,
    window: Window | None,
    session: Any = None,
    progress: ProgressFn | None = None,
) -> tuple[BatchResult, list[Coverage]]:
    """Read what *request* names into *store* through its source; a remote source gets
    *session* (default: standard AWS configuration).  With ``engine="athena"``, Athena
    reads the trail and only what the explainer needs is stored (:mod:`trailscan.athena`)."""
    if request.engine == "athena":
        return _ingest_by_athena(store, request, window=window, session=session, progress=progress)
    if request.engine != "local":
        raise UsageError(f"--engine {request.engine!r}: expected local or athena")
    source = get_source(request.chosen_source)
    if source.remote and session is None:
        session = default_session()
    return source.ingest(store, request, window=window, session=session, progress=progress)



def _ingest_by_athena(
    store: Store, request: IngestRequest, *, window: Window | None, session: Any, progress: ProgressFn | None
) -> tuple[BatchResult, list[Coverage]]:
    from trailscan.athena import AthenaRequest, ingest_athena

    if request.source not in (None, "s3") or request.paths:
        raise UsageError("--engine athena reads a trail's bucket through Athena: it takes no --source "
                         f"{request.source or 'files'} or --path")
    athena = request.athena
    if not isinstance(athena, AthenaRequest) or not athena.table:
        raise UsageError("--engine athena needs --athena-table DB.TABLE", "create one with `trailscan athena setup`")
    athena = replace(athena, accounts=request.accounts or athena.accounts, regions=request.regions or athena.regions)
    return ingest_athena(store, athena, window=window, session=session or default_session(), progress=progress)
