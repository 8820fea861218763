"""A refused call as AWS's policy evaluation saw it: the request, every policy layer, the decision.

:func:`judge` builds the :class:`~trailscan.policy.AuthRequest` from the group's records —
the request context keys CloudTrail proves, and no others — and the
:class:`~trailscan.policy.PolicySet` from every layer the inventory holds, then runs
:func:`~trailscan.policy.authorize`.  A layer that was not read enters as incomplete
(what it says is unknown, never "allows") and is named in :attr:`Judgement.unread`.

The context, key by key (IAM User Guide, "AWS global condition context keys"; each key
the event cannot prove stays unknown):

* ``aws:RequestedRegion`` ← ``awsRegion`` (and ``ec2:Region`` for EC2 actions);
* ``aws:SourceIp`` ← ``sourceIPAddress``, only when it is an IP address and the request
  came through no VPC endpoint (through one, the key is absent and ``aws:VpcSourceIp``
  holds the address); ``aws:SourceVpce`` ← ``vpcEndpointId`` (absent when the record
  names none);
* ``aws:ViaAWSService`` ← ``userIdentity.invokedBy`` (true when a service made the call
  with the caller's credentials, false when the record names none);
* ``aws:SecureTransport`` ← ``tlsDetails`` (true when present; unknown otherwise);
* ``aws:CurrentTime``/``aws:EpochTime`` ← ``eventTime``; ``aws:TokenIssueTime`` ←
  ``sessionContext.attributes.creationDate``; ``aws:userid`` ← ``principalId``;
* ``aws:PrincipalArn`` ← the session issuer's ARN (with its path); ``aws:PrincipalTag/…``
  ← the role's tags and the session tags of the STS call that issued the credentials
  (complete when both are known: EKS Pod Identity's ``kubernetes-namespace``,
  ``kubernetes-service-account``, ``eks-cluster-name`` …);
* ``aws:PrincipalOrgID``/``aws:PrincipalOrgPaths`` ← the organization inventory;
* service keys the request parameters carry: ``s3:prefix`` and ``s3:delimiter``
  (ListBucket), ``kms:EncryptionContextKeys`` and ``kms:EncryptionContext:…``.

Events of one group agree on what groups them, not on every field: a field the events
differ in leaves its key unknown — except the region and the time, which are judged
once per value when the decision depends on them.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlparse

from trailscan.arn import account_of
from trailscan.explain.collect import FailureGroup, Uniform, json_value
from trailscan.identity import pod_identity_tags
from trailscan.inventory import Inventory, Role
from trailscan.layers import (
    NONE,
    RCP,
    RCP_SERVICES,
    READ,
    SCP,
    LayerWants,
    Lookup,
    PolicyLayers,
    SessionPolicies,
    resource_kind,
)
from trailscan.policy import (
    UNDETERMINED,
    AuthDecision,
    AuthRequest,
    ContextValue,
    NamedPolicy,
    PolicySet,
    RequestPrincipal,
    authorize,
    iam_action_for,
    load_policy,
    parse_denial_message,
)

__all__ = ["Judgement", "judge", "request_resource", "wanted_layers"]

#: At most this many combinations of varying keys are judged one by one.
MAX_VARIANTS = 8

#: Actions that act on no resource: the request's resource is "*" (IAM's service
#: authorization reference: no resource type).
_NO_RESOURCE = ("ec2:Describe", "sts:GetCallerIdentity", "s3:ListAllMyBuckets", "kms:ListKeys", "kms:ListAliases",
                "sqs:ListQueues", "sns:ListTopics", "iam:List", "eks:ListClusters", "ecr:GetAuthorizationToken",
                "cloudwatch:PutMetricData", "logs:DescribeLogGroups", "dynamodb:ListTables",
                "secretsmanager:ListSecrets", "tag:GetResources", "autoscaling:Describe",
                "elasticloadbalancing:Describe")

#: S3 actions on an object (the rest act on the bucket).
_S3_OBJECT = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion", "s3:GetObjectAcl",
              "s3:PutObjectAcl", "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:AbortMultipartUpload",
              "s3:ListMultipartUploadParts", "s3:RestoreObject", "s3:GetObjectAttributes")


@dataclass(frozen=True)
class Judgement:
    """What :func:`authorize` says of a group of refused calls, with every layer it was given.

    ``decision`` is the deciding evaluation; ``variants`` the ones per value of a key the
    group's events differ in (``("aws:RequestedRegion=us-east-1", decision)``), when the
    decision depends on it.  ``unread`` names each layer not read and why ("the SCPs of
    account …: not read (…)"); ``targets`` where each SCP/RCP is attached.
    """

    request: AuthRequest
    policies: PolicySet
    decision: AuthDecision
    variants: tuple[tuple[str, AuthDecision], ...] = ()
    unread: tuple[str, ...] = ()
    lookups: Mapping[str, Lookup] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def where(self, statement_policy: str) -> str:
        """Where an SCP/RCP is attached (``the OU ou-…``), or ``""``."""
        return self.targets.get(statement_policy, "")


def request_resource(action: str, resources: object, request: Mapping[str, object] | None, region: str | None,
                     account: str | None) -> str | None:
    """The ARN *action* acted on: the record's resource of the action's own type, else one
    built from the request parameters; ``"*"`` for an action on no resource; else None."""
    arns = [r.get("ARN") for r in resources if isinstance(r, Mapping)] if isinstance(resources, list) else []
    arns = [arn for arn in arns if isinstance(arn, str) and arn.startswith("arn:")]
    service = action.split(":", 1)[0].lower()
    if service == "s3":
        objects = [arn for arn in arns if "/" in arn.split(":", 5)[-1]]
        buckets = [arn for arn in arns if "/" not in arn.split(":", 5)[-1]]
        wanted = objects if action in _S3_OBJECT else buckets
        if len(wanted) == 1:
            return wanted[0]
        bucket = (request or {}).get("bucketName")
        if isinstance(bucket, str) and bucket:
            key = (request or {}).get("key")
            return f"arn:aws:s3:::{bucket}" + (f"/{key}" if action in _S3_OBJECT and isinstance(key, str) else "")
    own = [arn for arn in arns if _service_of(arn) == service]
    if len(own) == 1:
        return own[0]
    if len(arns) == 1:
        return arns[0]
    found = _from_parameters(service, request or {}, region, account)
    if found:
        return found
    if any(action.startswith(prefix) for prefix in _NO_RESOURCE):
        return "*"
    return None


def _service_of(arn: str) -> str | None:
    parts = arn.split(":", 3)
    return parts[2] if len(parts) > 2 else None


def _from_parameters(service: str, request: Mapping[str, object], region: str | None, account: str | None) -> str | None:
    def text(name: str) -> str | None:
        value = request.get(name)
        return value if isinstance(value, str) and value else None

    if service == "sqs" and text("queueUrl"):
        url = urlparse(text("queueUrl") or "")
        parts = [part for part in url.path.split("/") if part]
        host_region = url.hostname.split(".")[1] if url.hostname and url.hostname.count(".") >= 3 else region
        if len(parts) == 2 and parts[0].isdigit():
            return f"arn:aws:sqs:{host_region or region}:{parts[0]}:{parts[1]}"
    if service == "sns":
        return text("topicArn") or text("targetArn")
    for name in ("keyId", "secretId", "functionName", "resourceArn"):
        value = text(name)
        if value and value.startswith("arn:") and _service_of(value) == service:
            return value
    if service == "ecr" and text("repositoryName") and region:
        return f"arn:aws:ecr:{region}:{text('registryId') or account}:repository/{text('repositoryName')}"
    return None


# --------------------------------------------------------------------------
# The judgement
# --------------------------------------------------------------------------


def judge(
    group: FailureGroup,
    inventory: Inventory,
    *,
    action: str,
    resource: str | None,
    role: Role | None,
) -> Judgement | str:
    """The layered evaluation of *group* (a ``denied_call`` group), or why there is none
    (the caller is not a role session the inventory holds)."""
    identity_arn = group.get("identity_arn")
    if role is None:
        return "the caller's role is not in the IAM inventory"
    try:
        principal_arn = identity_arn if identity_arn and identity_arn.startswith("arn:") else role.arn
        RequestPrincipal(principal_arn)
    except Exception:  # noqa: BLE001 - an ARN no principal type reads: judged as the role
        principal_arn = role.arn
    layers = inventory.layers
    request_text = Uniform.of(group, "request_text")
    parameters = json_value(request_text.known) if request_text.known else None
    parameters = parameters if isinstance(parameters, Mapping) else None
    region = group.regions[0] if len(group.regions) == 1 else None
    resource_account = _resource_account(json_value(group.get("resources")), resource)
    caller_account = account_of(principal_arn) or role.account
    issued = layers.sessions.get(group.get("access_key_id") or "")
    tags, tags_complete = _principal_tags(role, issued, group)
    principal = RequestPrincipal(principal_arn, role_arn=group.get("session_issuer_arn") or role.arn, tags=tags,
                                 tags_complete=tags_complete)
    context, absent = _context(group, action, parameters, region, layers, caller_account)
    lookups: dict[str, Lookup] = {}
    unread: list[str] = []
    incomplete: set[str] = set()

    def consider(layer: str, found: Lookup) -> Lookup:
        lookups[layer] = found
        if found.state not in (READ, NONE):
            incomplete.add(layer)
            unread.append(f"{found.holder}: {found.why}")
        return found

    identity_unread = [item for item in role.unresolved if item != role.boundary_arn]
    if identity_unread:
        incomplete.add("identity")
        unread.append(f"identity policies of {role.name}: {', '.join(identity_unread)} not read")
    boundary = role.permissions_boundary
    if role.boundary_arn and boundary is None:
        incomplete.add("boundary")
        unread.append(f"the permissions boundary {role.boundary_arn} of {role.name}: not read")
    session, session_lookup = _session_layer(group, issued, layers)
    consider("session", session_lookup)
    scps = consider("scp", layers.org_levels(caller_account, SCP))
    service = action.split(":", 1)[0].lower()
    rcps = consider("rcp", layers.org_levels(resource_account or caller_account, RCP)) if service in RCP_SERVICES \
        else Lookup(NONE, "RCPs", f"RCPs do not restrict {service}")
    resource_layer = consider("resource", _resource_layer(inventory, action, resource, layers))
    endpoint = Uniform.of(group, "vpc_endpoint_id")
    if endpoint.absent:
        endpoint_layer = Lookup(NONE, "a VPC endpoint policy", "the records name no VPC endpoint")
    elif endpoint.known:
        endpoint_layer = consider("vpc_endpoint", layers.endpoint_policy(str(endpoint.known)))
    else:
        endpoint_layer = consider("vpc_endpoint", Lookup("unread", "the VPC endpoint policy",
                                                         "the group's calls came through different endpoints, or not all "
                                                         "through one"))
    policies = PolicySet(
        identity=[NamedPolicy(_identity_label(role, name), document) for name, document in role.policies],
        permissions_boundary=NamedPolicy(f"the permissions boundary {role.boundary_arn}", boundary)
        if boundary is not None else None,
        session=session,
        scps=scps.levels if scps.read else (),
        rcps=rcps.levels if rcps.read else (),
        resource=resource_layer.documents[0] if resource_layer.read else None,
        vpc_endpoint=endpoint_layer.documents[0] if endpoint_layer.read else None,
        incomplete=frozenset(incomplete),
    )
    base = AuthRequest(principal, action, resource, resource_account=resource_account, context=context,
                       absent=frozenset(absent))
    varying = _varying(group)
    decision = authorize(base, policies)
    variants: list[tuple[str, AuthDecision]] = []
    needed = [key for key in varying if key in decision.missing_keys]
    if decision.decision == UNDETERMINED and needed:
        for values in itertools.islice(itertools.product(*(varying[key] for key in needed)), MAX_VARIANTS):
            assignment = dict(zip(needed, values))
            request = AuthRequest(principal, action, resource, resource_account=resource_account,
                                  context={**context, **_expand_variant(assignment)}, absent=frozenset(absent))
            label = ", ".join(f"{key}={value}" for key, value in assignment.items())
            variants.append((label, authorize(request, policies)))
    targets = {**scps.targets, **rcps.targets}
    return Judgement(base, policies, decision, tuple(variants), tuple(unread), lookups, targets, decision.notes)


def _resource_account(resources: object, resource: str | None) -> str | None:
    """The resource's account: its ARN's, else the ``accountId`` CloudTrail gives the resource
    (an S3 ARN names none; the record's bucket entry does)."""
    if not resource or resource == "*":
        return None
    found = account_of(resource)
    if found:
        return found
    bucket = resource.split("/", 1)[0]
    for entry in resources if isinstance(resources, list) else []:
        if isinstance(entry, Mapping) and entry.get("ARN") in (resource, bucket) and entry.get("accountId"):
            return str(entry["accountId"])
    return None


def _identity_label(role: Role, name: str) -> str:
    arn = next((arn for arn in role.attached_policy_arns if arn.rsplit("/", 1)[-1] == name), None)
    return f"the managed policy {arn}" if arn else f"the inline policy {name} of {role.name}"


def _principal_tags(role: Role, issued: SessionPolicies | None, group: FailureGroup) -> tuple[dict[str, str], bool]:
    """aws:PrincipalTag: the role's tags, overridden by the session's (IAM User Guide, "Passing
    session tags in AWS STS"); complete when the STS call that issued the credentials is known."""
    tags = dict(role.tags)
    if issued is None:
        return tags, False
    session_tags = pod_identity_tags(issued.tags)
    mapping = _tag_mapping(issued.tags)
    tags.update(mapping)
    # EKS service-account tokens carry no AWS tag claim: an IRSA session has no session tags
    # beyond what CloudTrail shows; Pod Identity's AssumeRole lists every one it passes.
    return tags, session_tags is not None or issued.event_name in ("AssumeRole", "AssumeRoleWithWebIdentity")


def _tag_mapping(tags: object) -> dict[str, str]:
    found: dict[str, str] = {}
    if isinstance(tags, list):
        for item in tags:
            if isinstance(item, Mapping):
                key, value = item.get("key", item.get("Key")), item.get("value", item.get("Value"))
                if key is not None and value is not None:
                    found[str(key)] = str(value)
    return found


def _session_layer(group: FailureGroup, issued: SessionPolicies | None, layers: PolicyLayers) -> tuple[list, Lookup]:
    """The session policies, from the STS call that issued the credentials."""
    key = group.get("access_key_id") or ""
    identity_type = group.get("identity_type") or ""
    holder = "the session policies"
    if identity_type == "IAMUser" or key.startswith("AKIA"):
        return [], Lookup(NONE, holder, "long-term credentials carry no session policy")
    if group.get("ec2_role_delivery"):
        return [], Lookup(NONE, holder, "instance-profile credentials carry no session policy")
    if issued is None:
        return [], Lookup("unread", f"the session policies of credentials {key or 'UNKNOWN'}",
                          "the STS call that issued them is not in the store (credentials are issued up to 12 hours "
                          "before they are used: ingest from earlier)")
    policies: list[NamedPolicy] = []
    missing: list[str] = []
    label = f"the session policy passed to {issued.event_name} (event {issued.event_id})"
    if issued.policy:
        try:
            policies.append(NamedPolicy(label, load_policy(issued.policy, name=label)))
        except Exception as exc:  # noqa: BLE001 - an unreadable session policy is a layer not read
            missing.append(f"{label}: {exc}")
    for arn in issued.policy_arns:
        found = layers.managed_policy(arn)
        if isinstance(found, str):
            missing.append(found)
        else:
            policies.append(NamedPolicy(f"the managed session policy {arn}", found.document))
    if missing:
        return policies, Lookup("unread", "the session policies", "; ".join(missing))
    if not policies:
        return [], Lookup(NONE, holder, f"{issued.event_name} (event {issued.event_id}) passed none")
    return policies, Lookup(READ, holder, documents=tuple(policies))


def _resource_layer(inventory: Inventory, action: str, resource: str | None, layers: PolicyLayers) -> Lookup:
    if action.lower().startswith(("sts:assumerole", "sts:tagsession")) and resource and ":role/" in resource:
        target = inventory.role(resource)
        holder = f"the trust policy of {resource}"
        if target is not None:
            return Lookup(READ, holder, documents=(NamedPolicy(holder, target.trust_policy),))
        return Lookup("unread", holder, "the role is not in the IAM inventory")
    return layers.resource_policy(resource if resource != "*" else None, action)


def _context(group: FailureGroup, action: str, parameters: Mapping | None, region: str | None, layers: PolicyLayers,
             account: str | None) -> tuple[dict[str, ContextValue], set[str]]:
    context: dict[str, ContextValue] = {}
    absent: set[str] = set()
    if region:
        context["aws:RequestedRegion"] = region
        if action.lower().startswith("ec2:"):
            context["ec2:Region"] = region
    endpoint, source_ip, invoked = (Uniform.of(group, name) for name in ("vpc_endpoint_id", "source_ip", "invoked_by"))
    if endpoint.absent:
        absent |= {"aws:SourceVpce", "aws:SourceVpc", "aws:VpcSourceIp"}
    elif endpoint.known:
        context["aws:SourceVpce"] = str(endpoint.known)
        absent.add("aws:SourceIp")  # "not present … when the request comes through a VPC endpoint"
        if _is_ip(source_ip.known):
            context["aws:VpcSourceIp"] = str(source_ip.known)
    if invoked.absent:
        context["aws:ViaAWSService"] = "false"
        absent.add("aws:CalledVia")
        if endpoint.absent and _is_ip(source_ip.known):
            context["aws:SourceIp"] = str(source_ip.known)
    elif invoked.known:
        context["aws:ViaAWSService"] = "true"
    if Uniform.of(group, "tls").known == "true":
        context["aws:SecureTransport"] = "true"
    issued_at = Uniform.of(group, "token_issued").known
    if issued_at:
        context["aws:TokenIssueTime"] = str(issued_at)
    userid = Uniform.of(group, "principal_id").known
    if userid:
        context["aws:userid"] = str(userid)
    if group.first_seen == group.last_seen:
        context.update(_times(group.last_seen))
    org, path = layers.org_of(account)
    if org:
        context["aws:PrincipalOrgID"] = org
        context["aws:PrincipalOrgPaths"] = [path] if path else None
    elif account and account in layers.not_in_org:
        absent |= {"aws:PrincipalOrgID", "aws:PrincipalOrgPaths"}
    if parameters is not None:
        lowered = action.lower()
        if lowered in ("s3:listbucket", "s3:listbucketversions"):
            for key in ("prefix", "delimiter"):
                value = parameters.get(key)
                if isinstance(value, str):
                    context[f"s3:{key}"] = value
                elif value is None:
                    absent.add(f"s3:{key}")
        encryption = parameters.get("encryptionContext")
        if lowered.startswith("kms:") and isinstance(encryption, Mapping):
            context["kms:EncryptionContextKeys"] = [str(k) for k in encryption] or None
            for key, value in encryption.items():
                context[f"kms:EncryptionContext:{key}"] = str(value)
    return context, absent


def _times(moment: datetime) -> dict[str, ContextValue]:
    return {"aws:CurrentTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "aws:EpochTime": str(int(moment.timestamp()))}


def _varying(group: FailureGroup) -> dict[str, list[str]]:
    """Keys the group's events differ in, with the values to judge one by one."""
    varying: dict[str, list[str]] = {}
    if len(group.regions) > 1:
        varying["aws:RequestedRegion"] = list(group.regions)
    if group.first_seen != group.last_seen:
        varying["aws:CurrentTime"] = [_times(group.first_seen)["aws:CurrentTime"],
                                      _times(group.last_seen)["aws:CurrentTime"]]  # type: ignore[list-item]
    return varying


def _expand_variant(assignment: Mapping[str, str]) -> dict[str, ContextValue]:
    expanded: dict[str, ContextValue] = dict(assignment)
    if "aws:CurrentTime" in assignment:
        moment = datetime.fromisoformat(assignment["aws:CurrentTime"].replace("Z", "+00:00"))
        expanded["aws:EpochTime"] = str(int(moment.timestamp()))
    return expanded


def _is_ip(value: object) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return value is not None


# --------------------------------------------------------------------------
# What to read live
# --------------------------------------------------------------------------


def wanted_layers(groups: list[FailureGroup], issued: Mapping[str, SessionPolicies] | None = None) -> LayerWants:
    """The layers the denied calls of *groups* need read (see :func:`trailscan.layers.load_layers_live`):
    their resources, VPC endpoints, the organization paths of their principals' and
    resources' accounts, the managed policies their sessions name, and the Access
    Troubleshooter authorization ids of their messages — most recent first."""
    resources: list[str] = []
    authorizations: list[tuple[str, str]] = []
    endpoints: list[tuple[str, str]] = []
    scp_accounts: list[str] = []
    rcp_accounts: list[str] = []
    for group in sorted(groups, key=lambda g: g.last_seen, reverse=True):
        if group.kind != "denied_call" or group.get("ec2_role_delivery"):
            continue
        try:
            action = iam_action_for(group.get("event_source") or "", group.get("event_name") or "")
        except Exception:  # noqa: BLE001 - an event no action reads: nothing to read for it
            continue
        denial = parse_denial_message(group.get("error_message") or "")
        region = group.regions[0] if group.regions else None
        if denial.authorization_id and (denial.authorization_region or region):
            authorizations.append((denial.authorization_id, denial.authorization_region or region or ""))
        request_text = Uniform.of(group, "request_text").known
        parameters = json_value(request_text) if request_text else None
        resource = denial.resource or request_resource(
            action, json_value(group.get("resources")), parameters if isinstance(parameters, Mapping) else None,
            region, group.get("account_id"))
        if resource and resource_kind(resource):
            resources.append(resource)
        endpoint = Uniform.of(group, "vpc_endpoint_id").known
        if endpoint and region:
            endpoints.append((str(endpoint), region))
        principal_account = account_of(group.get("identity_arn")) or group.get("account_id")
        if principal_account:
            scp_accounts.append(principal_account)
        if action.split(":", 1)[0].lower() in RCP_SERVICES:
            owner = account_of(resource) if resource and resource != "*" else None
            if owner or principal_account:
                rcp_accounts.append(owner or principal_account)
    managed = [arn for session in (issued or {}).values() for arn in session.policy_arns]
    return LayerWants(tuple(dict.fromkeys(resources)), tuple(dict.fromkeys(endpoints)), tuple(dict.fromkeys(scp_accounts)),
                      tuple(dict.fromkeys(rcp_accounts)), tuple(dict.fromkeys(managed)), tuple(dict.fromkeys(authorizations)))
