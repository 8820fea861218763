"""The AWS side of the inventory (SPEC §5): IAM roles and policies, OIDC providers, EKS clusters.

CloudTrail says *that* a call was refused; why it was refused is in the role's trust and
permission policies, in the account's OIDC providers and in the cluster.  This module
reads them into plain, frozen data the explainer can reason over:

* :func:`load_iam_file` — the output of ``aws iam get-account-authorization-details``
  (several files, e.g. one per account, merge with :func:`merge_inventories`);
* :func:`load_iam_live` — the same through boto3: the named roles, or the whole account;
* :func:`load_eks_live` — ``describe_cluster`` (OIDC issuer), node group roles and
  EKS Pod Identity associations.

An inventory must tell "the role does not exist" from "we never looked" or "we were not
allowed to look": a cause such as ``ROLE_NOT_FOUND`` or ``OIDC_PROVIDER_MISSING`` may only
be asserted on positive evidence.  So every :class:`Inventory` says which parts it loaded
completely (``complete``), which accounts it listed exhaustively (``iam_accounts``,
``oidc_accounts``), which role ARNs were looked up and found missing (``missing_roles``),
and why any part is partial (``gaps``).  Loaders never crash on a refused or failed AWS
call: the refusal becomes a gap with its reason.

Documents are normalised with :func:`trailscan.policy.load_policy` (dict, JSON text or
URL-encoded JSON, as IAM returns them), so consumers always see ``dict`` policies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from trailscan.arn import account_of, issuer_of, resource_name, role_key
from trailscan.documents import parse_json
from trailscan.errors import InputError
from trailscan.kube import ServiceAccount, ServiceAccountSet
from trailscan.layers import PolicyLayers
from trailscan.policy import NamedPolicy, load_policy

__all__ = [
    "EKS",
    "IAM",
    "KUBERNETES",
    "NODE_ROLES",
    "OIDC",
    "POD_IDENTITY",
    "Cluster",
    "Inventory",
    "OidcProvider",
    "PodIdentityAssociation",
    "Role",
    "authorization_details_inventory",
    "load_eks_live",
    "load_iam_file",
    "load_iam_live",
    "merge_inventories",
]

#: Parts of an inventory, as named in :attr:`Inventory.complete` and :attr:`Inventory.gaps`.
IAM = "iam"  #: roles with their trust, permission and boundary policies
OIDC = "oidc"  #: IAM OIDC identity providers
EKS = "eks"  #: clusters described (OIDC issuer)
NODE_ROLES = "node_roles"  #: node group instance roles of those clusters
POD_IDENTITY = "pod_identity"  #: EKS Pod Identity associations of those clusters
KUBERNETES = "kubernetes"  #: service accounts (held here, read by trailscan.kube)

RoleStatus = Literal["found", "missing", "unknown"]

#: Error codes that mean "this principal may not make the call".
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)
_OIDC_NOTE = "OIDC providers"
_OIDC_PROVIDER_HINT = (
    "add the `aws iam list-open-id-connect-providers` output (or an OpenIDConnectProviderList "
    "with Url/ClientIDList/ThumbprintList) as another --iam file, or read IAM live"
)


# --------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """One IAM role and every policy document that decides what it may do.

    ``policies`` holds ``(name, document)`` for each inline policy and each attached
    managed policy (its default version), in the form :func:`trailscan.policy.evaluate`
    takes; ``attached_policy_arns`` lists the managed ones by ARN.  ``permissions_boundary``
    is the boundary policy's document (``None`` when the role has no boundary, or when
    its document could not be read — then ``boundary_arn`` is set and the ARN is in
    ``unresolved``).  ``unresolved`` names what of this role could not be read (a policy
    ARN, or "inline policies: AccessDenied …"): while it is non-empty, "no policy allows
    the action" is not proven.
    """

    arn: str
    name: str
    account: str
    trust_policy: dict[str, Any]
    policies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    permissions_boundary: dict[str, Any] | None = None
    boundary_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    attached_policy_arns: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    @property
    def policies_complete(self) -> bool:
        """True when every permission and boundary document of the role was read."""
        return not self.unresolved


@dataclass(frozen=True)
class OidcProvider:
    """An IAM OpenID Connect identity provider (for EKS: one per cluster issuer and account).

    ``url`` is as IAM returns it (without ``https://``).  ``details_known`` is False when
    only the provider's ARN is known (``list-open-id-connect-providers`` output): its
    client ids and thumbprints were then not read, not empty.
    """

    arn: str
    url: str
    client_ids: list[str] = field(default_factory=list)
    thumbprints: list[str] = field(default_factory=list)
    details_known: bool = True

    @property
    def issuer_host_path(self) -> str:
        """``oidc.eks.eu-west-1.amazonaws.com/id/ABC``: the issuer as trust-policy condition keys spell it."""
        return issuer_of(self.url or self.arn)

    @property
    def account(self) -> str:
        return account_of(self.arn) or ""


@dataclass(frozen=True)
class PodIdentityAssociation:
    """An EKS Pod Identity association: pods of ``namespace/service_account`` get ``role_arn``.

    ``target_role_arn`` is set for a cross-account association (the role assumed in turn).
    """

    namespace: str
    service_account: str
    role_arn: str
    association_id: str
    target_role_arn: str | None = None


@dataclass(frozen=True)
class Cluster:
    """An EKS cluster as ``describe_cluster`` and its node groups describe it.

    ``oidc_issuer`` is the full issuer URL (``https://oidc.eks.REGION.amazonaws.com/id/ID``).
    ``gaps`` says what could not be read for this cluster, by part: ``"eks"`` (the
    cluster itself: not found, or refused), ``"node_roles"``, ``"pod_identity"``
    (e.g. an endpoint without the Pod Identity API) — each with its reason.
    """

    name: str
    region: str
    account: str
    arn: str
    oidc_issuer: str | None
    node_role_arns: list[str] = field(default_factory=list)
    pod_identity_associations: list[PodIdentityAssociation] = field(default_factory=list)
    gaps: dict[str, str] = field(default_factory=dict)

    @property
    def issuer_host_path(self) -> str | None:
        return issuer_of(self.oidc_issuer) if self.oidc_issuer else None

    @property
    def described(self) -> bool:
        """True when ``describe_cluster`` answered (the cluster exists and was readable)."""
        return EKS not in self.gaps


@dataclass(frozen=True)
class Inventory:
    """Everything known about the AWS and Kubernetes side, and how much of it is known.

    * ``roles`` by ARN (look up by ARN or name with :meth:`role`);
    * ``oidc_providers`` by ARN; ``clusters``; ``service_accounts``
      (:class:`trailscan.kube.ServiceAccount`, held for the explainer), and the lists they
      came in (``service_account_sets``: each speaks for one cluster only);
    * ``unattributed_oidc_lists``: empty OIDC provider lists whose account the document did
      not say (``list-open-id-connect-providers`` names none when it finds none);
    * ``complete``: the parts (:data:`IAM`, :data:`OIDC`, :data:`EKS`, :data:`NODE_ROLES`,
      :data:`POD_IDENTITY`, :data:`KUBERNETES`) that were loaded without a gap;
    * ``iam_accounts`` / ``oidc_accounts``: accounts whose roles / OIDC providers were
      listed exhaustively, so absence there is evidence;
    * ``missing_roles``: role ARNs looked up one by one and answered ``NoSuchEntity``;
    * ``gaps``: part → reasons it is partial (a refused call, a truncated file);
    * ``notes``: parts a source could not look at by nature (e.g. OIDC providers are not
      in ``get-account-authorization-details``), said once for the user;
    * ``layers``: the policy layers beyond the roles' own — resource, VPC endpoint, SCP and
      RCP, session and managed policies (:class:`trailscan.layers.PolicyLayers`).
    """

    roles: dict[str, Role] = field(default_factory=dict)
    oidc_providers: dict[str, OidcProvider] = field(default_factory=dict)
    clusters: list[Cluster] = field(default_factory=list)
    service_accounts: list[ServiceAccount] = field(default_factory=list)
    service_account_sets: list[ServiceAccountSet] = field(default_factory=list)
    complete: set[str] = field(default_factory=set)
    iam_accounts: set[str] = field(default_factory=set)
    oidc_accounts: set[str] = field(default_factory=set)
    missing_roles: set[str] = field(default_factory=set)
    gaps: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unattributed_oidc_lists: int = 0
    layers: PolicyLayers = field(default_factory=PolicyLayers)
    _by_name: dict[tuple[str, str], Role] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {(role.account, role.name): role for role in self.roles.values()}
        object.__setattr__(self, "_by_name", by_name)

    # -- roles ---------------------------------------------------------------

    def role(self, arn_or_name: str) -> Role | None:
        """The role with this ARN or name, else None.

        An ARN matches by account and role name, so ``…:role/name`` finds a role whose
        ARN carries a path (``…:role/team/name``).  A bare name matches only when exactly
        one loaded account has a role of that name.
        """
        found = self.roles.get(arn_or_name)
        if found is not None:
            return found
        if arn_or_name.startswith("arn:"):
            key = role_key(arn_or_name)
            return self._by_name.get(key) if key is not None else None
        named = [role for (_, name), role in self._by_name.items() if name == arn_or_name]
        return named[0] if len(named) == 1 else None

    def role_status(self, role_arn: str) -> RoleStatus:
        """``found``; ``missing`` only on evidence (looked up and absent, or its account was
        listed exhaustively); else ``unknown`` — we never looked, or were refused."""
        if self.role(role_arn) is not None:
            return "found"
        if role_arn in self.missing_roles:
            return "missing"
        key = role_key(role_arn)
        if key is not None and key[0] in self.iam_accounts:
            return "missing"
        return "unknown"

    # -- OIDC providers and clusters ------------------------------------------

    def provider_for_issuer(self, issuer: str, account: str | None = None) -> OidcProvider | None:
        """The OIDC provider for an issuer (URL, host/path, or provider ARN), in *account* if given."""
        wanted = issuer_of(issuer)
        for provider in self.oidc_providers.values():
            if provider.issuer_host_path == wanted and (account is None or provider.account == account):
                return provider
        return None

    def provider_status(self, issuer: str, account: str) -> RoleStatus:
        """Whether *account* has an OIDC provider for *issuer*: ``missing`` only when the
        account's providers were listed."""
        if self.provider_for_issuer(issuer, account) is not None:
            return "found"
        return "missing" if account in self.oidc_accounts else "unknown"

    def cluster_for_issuer(self, issuer_or_provider_arn: str) -> Cluster | None:
        """The cluster whose OIDC issuer this is (issuer URL, host/path or provider ARN)."""
        wanted = issuer_of(issuer_or_provider_arn)
        return next((c for c in self.clusters if c.issuer_host_path == wanted), None)

    def cluster(self, name_or_arn: str) -> Cluster | None:
        """The cluster with this name or ARN (the first, if two regions share a name)."""
        return next((c for c in self.clusters if name_or_arn in (c.name, c.arn)), None)

    def node_role_arns(self) -> set[str]:
        """The instance roles of every known node group."""
        return {arn for cluster in self.clusters for arn in cluster.node_role_arns}

    def service_accounts_for_role(self, role_arn: str) -> list[ServiceAccount]:
        """Service accounts annotated with this role (candidates when only the role is known)."""
        return [sa for sa in self.service_accounts if sa.role_arn == role_arn]

    # -- assembling ------------------------------------------------------------

    def merge(self, *others: Inventory) -> Inventory:
        """This inventory and *others* as one (see :func:`merge_inventories`)."""
        return merge_inventories([self, *others])

    def with_clusters(self, clusters: Iterable[Cluster]) -> Inventory:
        """Add clusters (from :func:`load_eks_live`), recording their completeness."""
        return self.merge(_clusters_inventory(list(clusters)))

    def with_service_accounts(self, service_accounts: Iterable[ServiceAccount]) -> Inventory:
        """Add service accounts (from :mod:`trailscan.kube`), one list per ``cluster`` label
        (the label is taken as the cluster the list was tagged with); marks :data:`KUBERNETES` loaded."""
        accounts = list(service_accounts)
        labels = dict.fromkeys(sa.cluster for sa in accounts) or {"": None}
        sets = [
            ServiceAccountSet(f"service accounts{' of ' + label if label else ''}",
                              tuple(sa for sa in accounts if sa.cluster == label), tag=label)
            for label in labels
        ]
        return self.with_service_account_sets(sets)

    def with_service_account_sets(self, sets: Iterable[ServiceAccountSet]) -> Inventory:
        """Add service-account lists, each with the cluster it says it describes."""
        sets = list(sets)
        accounts = [sa for one in sets for sa in one.accounts]
        return self.merge(Inventory(service_accounts=accounts, service_account_sets=sets, complete={KUBERNETES}))

    def gap_reasons(self, part: str) -> list[str]:
        """Why *part* is incomplete (empty when it is complete, or was never loaded)."""
        return list(self.gaps.get(part, []))


def merge_inventories(parts: Iterable[Inventory]) -> Inventory:
    """Combine inventories (several ``--iam`` files, live IAM and EKS, service accounts).

    A part is complete when some inventory loaded it and none reported a gap for it.
    A role present in several keeps the most completely read version.
    """
    parts = list(parts)
    roles: dict[str, Role] = {}
    providers: dict[str, OidcProvider] = {}
    clusters: dict[tuple[str, str, str], Cluster] = {}
    service_accounts: dict[tuple[str, str, str], ServiceAccount] = {}
    sets: list[ServiceAccountSet] = []
    gaps: dict[str, list[str]] = {}
    notes: list[str] = []
    complete: set[str] = set()
    for part in parts:
        for arn, role in part.roles.items():
            kept = roles.get(arn)
            if kept is None or len(role.unresolved) <= len(kept.unresolved):
                roles[arn] = role
        for arn, provider in part.oidc_providers.items():
            kept_provider = providers.get(arn)
            if kept_provider is None or provider.details_known or not kept_provider.details_known:
                providers[arn] = provider
        for cluster in part.clusters:
            clusters[(cluster.arn or cluster.name, cluster.region, cluster.account)] = cluster
        for sa in part.service_accounts:
            service_accounts.setdefault((sa.cluster, sa.namespace, sa.name), sa)
        for one in part.service_account_sets:
            if one not in sets:
                sets.append(one)
        for name, reasons in part.gaps.items():
            gaps.setdefault(name, []).extend(r for r in reasons if r not in gaps.get(name, []))
        notes.extend(note for note in part.notes if note not in notes and not note.startswith(_OIDC_NOTE))
        complete |= part.complete
    missing: set[str] = set().union(*(p.missing_roles for p in parts))
    oidc_accounts: set[str] = set().union(*(p.oidc_accounts for p in parts))
    unattributed = sum(p.unattributed_oidc_lists for p in parts)
    if unattributed:
        # `list-open-id-connect-providers` finding none names no account: its answer is the
        # caller's account, which is the account of the roles loaded — when there is one.
        known = {role.account for role in roles.values()} | {p.account for p in providers.values()}
        if len(known) == 1:
            oidc_accounts |= known
            unattributed = 0
        else:
            notes.append(
                f"an empty OpenIDConnectProviderList was given, but {len(known)} accounts are loaded and the list "
                "does not say whose it is: pass it with that account's get-account-authorization-details"
            )
    return Inventory(
        roles=roles,
        oidc_providers=providers,
        clusters=list(clusters.values()),
        service_accounts=list(service_accounts.values()),
        service_account_sets=sets,
        unattributed_oidc_lists=unattributed,
        complete=complete - set(gaps),
        iam_accounts=set().union(*(p.iam_accounts for p in parts)),
        oidc_accounts=oidc_accounts,
        missing_roles={arn for arn in missing if arn not in roles},
        gaps=gaps,
        notes=_with_oidc_note(notes, roles, oidc_accounts, gaps),
        layers=parts[0].layers.merge(*(p.layers for p in parts[1:])) if parts else PolicyLayers(),
    )


def _with_oidc_note(
    notes: list[str], roles: Mapping[str, Role], oidc_accounts: set[str], gaps: Mapping[str, list[str]]
) -> list[str]:
    """*notes*, plus one naming the accounts whose roles are known but whose OIDC providers
    were never listed (a refused listing is a gap instead)."""
    unlisted = sorted({role.account for role in roles.values()} - oidc_accounts)
    if not unlisted or OIDC in gaps:
        return notes
    return [
        *notes,
        f"{_OIDC_NOTE} of account {', '.join(unlisted)} were not read, so a missing provider cannot be "
        f"told: get-account-authorization-details does not include them ({_OIDC_PROVIDER_HINT})",
    ]


# --------------------------------------------------------------------------
# IAM from get-account-authorization-details
# --------------------------------------------------------------------------


def load_iam_file(path: str | os.PathLike[str]) -> Inventory:
    """Read IAM from a file saved from the AWS CLI.

    Accepted content (JSON):

    * ``aws iam get-account-authorization-details`` output: ``RoleDetailList`` (trust
      policy in ``AssumeRolePolicyDocument``, inline ``RolePolicyList``,
      ``AttachedManagedPolicies``, ``PermissionsBoundary``, ``Tags``) and ``Policies``
      (managed policies with ``PolicyVersionList``; the ``IsDefaultVersion`` one is
      used).  Documents may be objects or URL-encoded JSON strings, as the raw API
      returns them.  The roles' accounts count as listed exhaustively — unless the file
      is one page of a paginated answer (``IsTruncated`` true), which is a gap;
    * ``aws iam list-open-id-connect-providers`` output, ``OpenIDConnectProviderList``,
      alone or added to the document above.  Entries with only ``Arn`` give the
      provider's issuer; entries that also carry ``Url``, ``ClientIDList`` and
      ``ThumbprintList`` (the ``get-open-id-connect-provider`` fields) give its
      thumbprints too.  The providers' accounts — and, when the list is empty, the
      accounts of the file's roles — count as listed.

    ``get-account-authorization-details`` itself has no OIDC providers: without
    ``OpenIDConnectProviderList`` the inventory lacks :data:`OIDC` and says so in
    ``notes``.  Several files (several accounts) combine with :func:`merge_inventories`.

    Raises :class:`InputError`, one line naming the file, for a file that cannot be read
    or is not one of these documents — including one nested more than
    :data:`~trailscan.documents.MAX_DEPTH` levels deep, which no AWS CLI output is.
    """
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read IAM file ({exc.strerror or exc})") from None
    try:
        document = parse_json(data, name, "IAM file")
    except UnicodeDecodeError:
        raise InputError(f"{name}: IAM file is not UTF-8 JSON text") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name}: IAM file is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            "save it with `aws iam get-account-authorization-details --output json > FILE`",
        ) from None
    return authorization_details_inventory(document, source=name)


def authorization_details_inventory(document: Any, *, source: str) -> Inventory:
    """The inventory in a ``get-account-authorization-details`` document (see :func:`load_iam_file`).

    *source* names the document in errors and notes (a file name, or "IAM (live)").
    """
    hint = (
        "expected the output of `aws iam get-account-authorization-details` "
        "or `aws iam list-open-id-connect-providers`"
    )
    if not isinstance(document, Mapping):
        raise InputError(f"{source}: IAM file holds a JSON {_json_kind(document)}, not an object", hint)
    has_roles = "RoleDetailList" in document
    has_providers = "OpenIDConnectProviderList" in document
    if not has_roles and not has_providers:
        raise InputError(f"{source}: no RoleDetailList or OpenIDConnectProviderList", hint)

    roles: dict[str, Role] = {}
    gaps: dict[str, list[str]] = {}
    notes: list[str] = []
    complete: set[str] = set()
    iam_accounts: set[str] = set()
    oidc_accounts: set[str] = set()
    managed: dict[str, tuple[str, dict[str, Any]]] = {}
    if has_roles:
        managed = _managed_policy_documents(_list_of(document, "Policies", source, required=False), source)
        for index, detail in enumerate(_list_of(document, "RoleDetailList", source)):
            role = _role_from_detail(detail, managed, f"{source}: RoleDetailList[{index}]")
            roles[role.arn] = role
        if document.get("IsTruncated"):
            gaps[IAM] = [
                f"{source} is one page of a paginated answer (IsTruncated): roles after it are unknown"
            ]
        else:
            complete.add(IAM)
            iam_accounts = {role.account for role in roles.values()}
        unread = sorted({item for role in roles.values() for item in role.unresolved})
        if unread:
            gaps.setdefault(IAM, []).append(
                f"{source}: {len(unread)} policy document(s) not in the file: {', '.join(unread[:5])}"
                + (" …" if len(unread) > 5 else "")
            )

    providers: dict[str, OidcProvider] = {}
    if has_providers:
        for index, entry in enumerate(_list_of(document, "OpenIDConnectProviderList", source)):
            provider = _provider_from_entry(entry, f"{source}: OpenIDConnectProviderList[{index}]")
            providers[provider.arn] = provider
        complete.add(OIDC)
        oidc_accounts = {p.account for p in providers.values()} or {r.account for r in roles.values()}
    unattributed = 1 if has_providers and not oidc_accounts else 0
    return Inventory(
        roles=roles,
        oidc_providers=providers,
        complete=complete - set(gaps),
        iam_accounts=iam_accounts,
        oidc_accounts=oidc_accounts,
        gaps=gaps,
        notes=_with_oidc_note(notes, roles, oidc_accounts, gaps),
        unattributed_oidc_lists=unattributed,
        # Managed policies by ARN: a session policy may name one (PolicyArns).
        layers=PolicyLayers(managed={arn: NamedPolicy(arn, doc) for arn, (_, doc) in managed.items()})
        if has_roles else PolicyLayers(),
    )


def _managed_policy_documents(policies: list[Any], source: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Managed policy ARN → (name, default version's document)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for index, policy in enumerate(policies):
        where = f"{source}: Policies[{index}]"
        if not isinstance(policy, Mapping) or not isinstance(policy.get("Arn"), str):
            raise InputError(f"{where} is not a managed policy (no Arn)")
        arn = policy["Arn"]
        versions = policy.get("PolicyVersionList") or []
        if not isinstance(versions, list):
            raise InputError(f"{where}: PolicyVersionList is not a list")
        default_id = policy.get("DefaultVersionId")
        chosen = next(
            (v for v in versions if isinstance(v, Mapping) and v.get("IsDefaultVersion") is True), None
        ) or next((v for v in versions if isinstance(v, Mapping) and v.get("VersionId") == default_id), None)
        if chosen is None or chosen.get("Document") is None:
            continue  # the role then lists this ARN as unresolved
        name = str(policy.get("PolicyName") or resource_name(arn))
        found[arn] = (name, load_policy(chosen["Document"], name=f"{where} ({arn}) default version"))
    return found


def _role_from_detail(
    detail: Any, managed: Mapping[str, tuple[str, dict[str, Any]]], where: str
) -> Role:
    if not isinstance(detail, Mapping) or not isinstance(detail.get("Arn"), str):
        raise InputError(f"{where} is not a role (no Arn)")
    arn = detail["Arn"]
    name = str(detail.get("RoleName") or resource_name(arn))
    where = f"{where} ({name})"
    if detail.get("AssumeRolePolicyDocument") is None:
        raise InputError(f"{where} has no AssumeRolePolicyDocument")
    trust = load_policy(detail["AssumeRolePolicyDocument"], name=f"{where} trust policy")
    policies: list[tuple[str, dict[str, Any]]] = []
    for inline in _list_of(detail, "RolePolicyList", where, required=False):
        if not isinstance(inline, Mapping) or "PolicyDocument" not in inline:
            raise InputError(f"{where}: RolePolicyList entry without PolicyDocument")
        policy_name = str(inline.get("PolicyName") or "inline")
        policies.append(
            (policy_name, load_policy(inline["PolicyDocument"], name=f"{where} inline policy {policy_name}"))
        )
    attached: list[str] = []
    unresolved: list[str] = []
    for entry in _list_of(detail, "AttachedManagedPolicies", where, required=False):
        policy_arn = entry.get("PolicyArn") if isinstance(entry, Mapping) else None
        if not isinstance(policy_arn, str):
            raise InputError(f"{where}: AttachedManagedPolicies entry without PolicyArn")
        attached.append(policy_arn)
        if policy_arn in managed:
            policies.append(managed[policy_arn])
        else:
            unresolved.append(policy_arn)
    boundary_arn = _boundary_arn(detail.get("PermissionsBoundary"))
    boundary = None
    if boundary_arn:
        if boundary_arn in managed:
            boundary = managed[boundary_arn][1]
        elif boundary_arn not in unresolved:
            unresolved.append(boundary_arn)
    return Role(
        arn=arn,
        name=name,
        account=(account_of(arn) or ""),
        trust_policy=trust,
        policies=policies,
        permissions_boundary=boundary,
        boundary_arn=boundary_arn,
        tags=_tags(detail.get("Tags")),
        attached_policy_arns=attached,
        unresolved=unresolved,
    )


def _provider_from_entry(entry: Any, where: str) -> OidcProvider:
    arn = entry.get("Arn") if isinstance(entry, Mapping) else None
    if not isinstance(arn, str) or ":oidc-provider/" not in arn:
        raise InputError(f"{where} is not an OIDC provider (no oidc-provider Arn)")
    detailed = any(key in entry for key in ("Url", "ClientIDList", "ThumbprintList"))
    return OidcProvider(
        arn=arn,
        url=str(entry.get("Url") or issuer_of(arn)),
        client_ids=[str(v) for v in entry.get("ClientIDList") or []],
        thumbprints=[str(v) for v in entry.get("ThumbprintList") or []],
        details_known=detailed,
    )


# --------------------------------------------------------------------------
# IAM live
# --------------------------------------------------------------------------


def load_iam_live(session: boto3.Session, *, role_arns: Iterable[str] | None = None) -> Inventory:
    """Read IAM through boto3: roles with their policies, and the OIDC providers.

    With *role_arns*, each role of the session's account is read with ``get_role``,
    ``list_role_policies``/``get_role_policy``, ``list_attached_role_policies`` and
    ``get_policy``/``get_policy_version`` (default version; the permissions boundary
    likewise); a ``NoSuchEntity`` answer records the ARN in ``missing_roles``.  Roles of
    other accounts cannot be read with this session and are noted, never reported
    missing.  Without *role_arns*, the whole account is read in one paginated
    ``get_account_authorization_details`` (as :func:`load_iam_file` reads it), which
    makes absence evidence.  OIDC providers come from ``list_open_id_connect_providers``
    and ``get_open_id_connect_provider``.

    A refused or failed call never raises: the part becomes a gap with its reason.
    """
    iam = session.client("iam")  # IAM is global: one client
    account, account_failure = _caller_account(session)
    if role_arns is None:
        roles = _load_account_roles(iam, account)
    else:
        roles = _load_named_roles(iam, list(dict.fromkeys(role_arns)), account, account_failure)
    return merge_inventories([roles, _load_oidc_providers(iam, account)])


def _load_account_roles(iam: Any, account: str | None) -> Inventory:
    pages: dict[str, list[Any]] = {"RoleDetailList": [], "Policies": []}
    try:
        paginator = iam.get_paginator("get_account_authorization_details")
        for page in paginator.paginate(Filter=["Role", "LocalManagedPolicy", "AWSManagedPolicy"]):
            pages["RoleDetailList"].extend(page.get("RoleDetailList", []))
            pages["Policies"].extend(page.get("Policies", []))
    except (ClientError, BotoCoreError) as exc:
        return Inventory(gaps={IAM: [_failure("iam:GetAccountAuthorizationDetails", exc)]})
    inventory = authorization_details_inventory(pages, source="IAM (live)")
    if account is None or IAM not in inventory.complete:
        return inventory
    return merge_inventories([inventory, Inventory(iam_accounts={account})])  # even with no roles


def _load_named_roles(
    iam: Any, role_arns: list[str], account: str | None, account_failure: str
) -> Inventory:
    roles: dict[str, Role] = {}
    missing: set[str] = set()
    gaps: list[str] = []
    notes: list[str] = []
    documents: dict[str, tuple[str, dict[str, Any]] | str] = {}  # managed policy cache: doc or failure
    for requested in role_arns:
        key = role_key(requested)
        if key is None:
            notes.append(f"{requested!r} is not a role ARN; not looked up")
            continue
        role_account, role_name = key
        if account is None:
            gaps.append(f"{requested} not read: the session's account is unknown ({account_failure})")
            continue
        if role_account != account:
            notes.append(f"{requested} is in account {role_account}; the session reads account {account}")
            continue
        try:
            detail = iam.get_role(RoleName=role_name)["Role"]
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                missing.add(requested)
            else:
                gaps.append(_failure(f"iam:GetRole {role_name}", exc))
            continue
        except BotoCoreError as exc:
            gaps.append(_failure(f"iam:GetRole {role_name}", exc))
            continue
        try:
            role = _read_role_live(iam, detail, documents)
        except InputError as exc:
            gaps.append(f"role {role_name}: {exc.message}")
            continue
        roles[role.arn] = role
        gaps.extend(f"role {role.name}: {item}" for item in role.unresolved)
    return Inventory(
        roles=roles,
        missing_roles=missing,
        complete=set() if gaps else {IAM},
        gaps={IAM: gaps} if gaps else {},
        notes=notes,
    )


def _read_role_live(iam: Any, detail: Mapping[str, Any], documents: dict[str, Any]) -> Role:
    name = detail["RoleName"]
    policies: list[tuple[str, dict[str, Any]]] = []
    unresolved: list[str] = []
    try:
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page.get("PolicyNames", []):
                try:
                    answer = iam.get_role_policy(RoleName=name, PolicyName=policy_name)
                    label = f"role {name} inline policy {policy_name}"
                    policies.append((policy_name, load_policy(answer["PolicyDocument"], name=label)))
                except (ClientError, BotoCoreError, InputError) as exc:
                    unresolved.append(f"inline policy {policy_name}: {_reason(exc)}")
    except (ClientError, BotoCoreError) as exc:
        unresolved.append(_failure("inline policies (iam:ListRolePolicies)", exc))
    attached: list[str] = []
    try:
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            attached.extend(p["PolicyArn"] for p in page.get("AttachedPolicies", []))
    except (ClientError, BotoCoreError) as exc:
        unresolved.append(_failure("attached policies (iam:ListAttachedRolePolicies)", exc))
    for policy_arn in attached:
        found = _managed_document_live(iam, policy_arn, documents)
        if isinstance(found, str):
            unresolved.append(f"{policy_arn}: {found}")
        else:
            policies.append(found)
    boundary_arn = _boundary_arn(detail.get("PermissionsBoundary"))
    boundary = None
    if boundary_arn:
        found = _managed_document_live(iam, boundary_arn, documents)
        if isinstance(found, str):
            unresolved.append(f"{boundary_arn}: {found}")
        else:
            boundary = found[1]
    return Role(
        arn=detail["Arn"],
        name=name,
        account=(account_of(detail["Arn"]) or ""),
        trust_policy=load_policy(detail["AssumeRolePolicyDocument"], name=f"role {name} trust policy"),
        policies=policies,
        permissions_boundary=boundary,
        boundary_arn=boundary_arn,
        tags=_tags(detail.get("Tags")),
        attached_policy_arns=attached,
        unresolved=unresolved,
    )


def _managed_document_live(
    iam: Any, policy_arn: str, cache: dict[str, Any]
) -> tuple[str, dict[str, Any]] | str:
    """(name, default version document) of a managed policy, or why it could not be read."""
    if policy_arn not in cache:
        try:
            policy = iam.get_policy(PolicyArn=policy_arn)["Policy"]
            version = iam.get_policy_version(PolicyArn=policy_arn, VersionId=policy["DefaultVersionId"])
            name = policy.get("PolicyName") or resource_name(policy_arn)
            cache[policy_arn] = (
                name,
                load_policy(version["PolicyVersion"]["Document"], name=f"managed policy {policy_arn}"),
            )
        except (ClientError, BotoCoreError, InputError) as exc:
            cache[policy_arn] = _reason(exc)
    return cache[policy_arn]


def _load_oidc_providers(iam: Any, account: str | None) -> Inventory:
    try:
        listed = iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
    except (ClientError, BotoCoreError) as exc:
        return Inventory(gaps={OIDC: [_failure("iam:ListOpenIDConnectProviders", exc)]})
    providers: dict[str, OidcProvider] = {}
    gaps: list[str] = []
    for entry in listed:
        arn = entry["Arn"]
        try:
            answer = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        except (ClientError, BotoCoreError) as exc:
            # The ARN alone still names the issuer; only client ids and thumbprints are unknown.
            providers[arn] = OidcProvider(arn=arn, url=issuer_of(arn), details_known=False)
            gaps.append(_failure(f"iam:GetOpenIDConnectProvider {arn}", exc))
            continue
        providers[arn] = OidcProvider(
            arn=arn,
            url=answer.get("Url") or issuer_of(arn),
            client_ids=list(answer.get("ClientIDList", [])),
            thumbprints=list(answer.get("ThumbprintList", [])),
        )
    # The listing itself succeeded, so absence in the session's account is evidence.
    accounts = {(account_of(arn) or "") for arn in providers} | ({account} if account else set())
    return Inventory(
        oidc_providers=providers,
        oidc_accounts=accounts,
        complete=set() if gaps else {OIDC},
        gaps={OIDC: gaps} if gaps else {},
    )


def _caller_account(session: boto3.Session) -> tuple[str | None, str]:
    """The session's account, or None and why not.  Needed because ``get_role`` takes a
    name: a role of another account would otherwise be reported missing."""
    try:
        return str(session.client("sts").get_caller_identity()["Account"]), ""
    except (ClientError, BotoCoreError) as exc:
        return None, _failure("sts:GetCallerIdentity", exc)


# --------------------------------------------------------------------------
# EKS live
# --------------------------------------------------------------------------


def load_eks_live(
    session: boto3.Session,
    cluster_names: Iterable[str],
    regions: Iterable[str] | None = None,
) -> list[Cluster]:
    """Describe EKS clusters: OIDC issuer, node group roles, Pod Identity associations.

    Each name is looked for in *regions* in order (default: the session's region); a
    cluster ARN names its region itself.  With no names, every cluster of *regions* is
    read (``list_clusters``).  A cluster that is not found or cannot be described is
    returned with ``oidc_issuer=None`` and an :data:`EKS` gap; node groups or Pod
    Identity associations that cannot be listed (refused, or an endpoint without the
    Pod Identity API) become :data:`NODE_ROLES` / :data:`POD_IDENTITY` gaps of the
    cluster.  Never raises for an AWS refusal.
    """
    region_list = list(dict.fromkeys(regions or [])) or [session.region_name or "us-east-1"]
    clients: dict[str, Any] = {}

    def eks(region: str) -> Any:  # one client per region, made when first needed
        if region not in clients:
            clients[region] = session.client("eks", region_name=region)
        return clients[region]

    wanted = list(dict.fromkeys(cluster_names))
    clusters: list[Cluster] = []
    if not wanted:
        for region in region_list:
            try:
                names = [
                    name
                    for page in eks(region).get_paginator("list_clusters").paginate()
                    for name in page.get("clusters", [])
                ]
            except (ClientError, BotoCoreError) as exc:
                reason = _failure(f"eks:ListClusters in {region}", exc)
                clusters.append(Cluster("*", region, "", "", None, gaps={EKS: reason}))
                continue
            # A cluster deleted between list and describe is simply gone.
            for name in names:
                cluster = _read_cluster(eks(region), name, region)
                if cluster is not None:
                    clusters.append(cluster)
        return clusters
    for wanted_name in wanted:
        arn_region, name = _cluster_arn_parts(wanted_name)
        searched = [arn_region] if arn_region else region_list
        refused: Cluster | None = None
        for region in searched:
            cluster = _read_cluster(eks(region), name, region)
            if cluster is not None and arn_region and cluster.described and cluster.arn != wanted_name:
                # describe_cluster takes a name: this is a namesake in the session's account.
                reason = f"{wanted_name} is not readable with this session (it reads {cluster.account})"
                account = (account_of(wanted_name) or "")
                cluster = Cluster(name, region, account, wanted_name, None, gaps={EKS: reason})
            if cluster is not None and cluster.described:
                clusters.append(cluster)
                break
            refused = refused or cluster  # keep looking: it may live in the next region
        else:
            clusters.append(
                refused or Cluster(name, "", "", "", None, gaps={EKS: f"not found in {', '.join(searched)}"})
            )
    return clusters


def _read_cluster(eks: Any, name: str, region: str) -> Cluster | None:
    """The cluster as described in *region*; None when it does not exist there."""
    try:
        described = eks.describe_cluster(name=name)["cluster"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        return Cluster(name, region, "", "", None, gaps={EKS: _failure(f"eks:DescribeCluster {name}", exc)})
    except BotoCoreError as exc:
        return Cluster(name, region, "", "", None, gaps={EKS: _failure(f"eks:DescribeCluster {name}", exc)})
    gaps: dict[str, str] = {}
    node_roles: list[str] = []
    try:
        for page in eks.get_paginator("list_nodegroups").paginate(clusterName=name):
            for group in page.get("nodegroups", []):
                described_group = eks.describe_nodegroup(clusterName=name, nodegroupName=group)["nodegroup"]
                role = described_group.get("nodeRole")
                if role and role not in node_roles:
                    node_roles.append(role)
    except (ClientError, BotoCoreError) as exc:
        gaps[NODE_ROLES] = _failure(f"node groups of {name}", exc)
    associations, pod_identity_gap = _pod_identity_associations(eks, name)
    if pod_identity_gap:
        gaps[POD_IDENTITY] = pod_identity_gap
    arn = described.get("arn", "")
    return Cluster(
        name=described.get("name", name),
        region=region,
        account=(account_of(arn) or ""),
        arn=arn,
        oidc_issuer=((described.get("identity") or {}).get("oidc") or {}).get("issuer"),
        node_role_arns=node_roles,
        pod_identity_associations=associations,
        gaps=gaps,
    )


def _pod_identity_associations(eks: Any, name: str) -> tuple[list[PodIdentityAssociation], str | None]:
    if not eks.can_paginate("list_pod_identity_associations"):
        return [], "this botocore has no EKS Pod Identity API (upgrade boto3)"
    found: list[PodIdentityAssociation] = []
    try:
        for page in eks.get_paginator("list_pod_identity_associations").paginate(clusterName=name):
            for summary in page.get("associations", []):
                detail = eks.describe_pod_identity_association(
                    clusterName=name, associationId=summary["associationId"]
                )["association"]
                found.append(
                    PodIdentityAssociation(
                        namespace=detail["namespace"],
                        service_account=detail["serviceAccount"],
                        role_arn=detail["roleArn"],
                        association_id=detail["associationId"],
                        target_role_arn=detail.get("targetRoleArn"),
                    )
                )
    except (ClientError, BotoCoreError) as exc:
        return found, _failure(f"Pod Identity associations of {name}", exc)
    return found, None


def _clusters_inventory(clusters: list[Cluster]) -> Inventory:
    gaps: dict[str, list[str]] = {}
    for cluster in clusters:
        for part, reason in cluster.gaps.items():
            gaps.setdefault(part, []).append(f"cluster {cluster.name}: {reason}")
    described = [c for c in clusters if c.described]
    return Inventory(
        clusters=described,
        complete={EKS, NODE_ROLES, POD_IDENTITY} - set(gaps),
        gaps=gaps,
    )


def _cluster_arn_parts(value: str) -> tuple[str | None, str]:
    """(region, name) of ``arn:aws:eks:REGION:ACCOUNT:cluster/NAME``; (None, value) for a name."""
    parts = value.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "eks" and parts[5].startswith("cluster/"):
        return parts[3], parts[5].split("/", 1)[1]
    return None, value


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _boundary_arn(boundary: Any) -> str | None:
    if isinstance(boundary, Mapping) and isinstance(boundary.get("PermissionsBoundaryArn"), str):
        return boundary["PermissionsBoundaryArn"]
    return None


def _tags(tags: Any) -> dict[str, str]:
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {
        str(tag["Key"]): str(tag.get("Value", ""))
        for tag in tags or []
        if isinstance(tag, Mapping) and "Key" in tag
    }


def _list_of(document: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> list[Any]:
    value = document.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: no {key}")
        return []
    if not isinstance(value, list):
        raise InputError(f"{where}: {key} is a JSON {_json_kind(value)}, not a list")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: ClientError | BotoCoreError | InputError) -> str:
    """A one-line reason for a failed call or an unreadable document."""
    if isinstance(exc, InputError):
        return exc.message
    if isinstance(exc, BotoCoreError):
        return _first_line(str(exc))
    code = _code(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("", "UnknownOperationException", "InvalidAction") or code.isdigit():
        # No AWS error code, only an HTTP status (the body was not an AWS error document).
        # 404/501 mean the endpoint does not implement the operation (an emulator, a
        # partition without the API): it was not refused.
        http = status or code
        if str(http) in ("404", "501") or code in ("UnknownOperationException", "InvalidAction"):
            return f"not available at this endpoint (HTTP {http})"
        return f"{'refused' if str(http) in ('401', '403') else 'failed'}: HTTP {http}"
    message = _first_line(str(exc.response.get("Error", {}).get("Message", "")))
    label = "refused" if code in _DENIED_CODES else "failed"
    return f"{label}: {code}" + (f": {message}" if message else "")


def _failure(what: str, exc: ClientError | BotoCoreError) -> str:
    return f"{what}: {_reason(exc)}"


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= 200 else line[:199] + "…"
