"""The policy layers beyond a role's own, as AWS's policy evaluation reads them.

A refused call is judged against every layer AWS reads (IAM User Guide, "Policy evaluation
logic"): the SCPs of the principal's account and the RCPs of the resource's account, level
by level up their OU path (AWS Organizations, "SCP evaluation", "RCP evaluation"); the
policy of the VPC endpoint the request came through; the resource's own policy (bucket,
KMS key, queue, topic, secret, repository, function); the role's identity policies and
boundary (:mod:`trailscan.inventory`); and the session policies passed when the session
was created (read from CloudTrail, see :class:`SessionPolicies`).

:class:`PolicyLayers` holds what is known of each, and — as important — what is not:
every lookup answers with a :class:`Lookup` whose ``state`` is ``read`` (the documents),
``none`` (the layer does not bear on the request, on evidence: the bucket has no policy,
the account is in no organization or is its management account, the service has no
resource policies) or ``unread`` (never read, or the read was refused — and why).  An
unread layer is never taken as allowing.

Where the layers come from, offline and live alike:

* :func:`load_policy_file` reads the plain output of the ``aws`` CLI command that shows a
  layer, recognised by its shape (``--policies [NAME=]FILE``; NAME says what a shape that
  does not name its subject is about — see :data:`SHAPES`);
* :func:`load_layers_live` reads, through boto3, only the resources, endpoints, accounts
  and managed policies the failures name (bounded by :data:`LIVE_LIMITS`); a refused read
  is a gap with its reason, never an error.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trailscan.documents import parse_json
from trailscan.errors import InputError
from trailscan.policy import NamedPolicy, load_policy

__all__ = [
    "LIVE_LIMITS",
    "NO_RESOURCE_POLICY",
    "RCP_SERVICES",
    "SHAPES",
    "EndpointPolicy",
    "LayerWants",
    "Lookup",
    "OrgPolicy",
    "PolicyLayers",
    "ResourceKind",
    "ResourcePolicy",
    "SessionPolicies",
    "describe_failure",
    "load_layers_live",
    "load_policy_file",
    "resource_kind",
    "split_policies_option",
]

SCP, RCP = "SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY"
READ, NONE, UNREAD = "read", "none", "unread"

#: Services whose actions no resource-based policy bears on (IAM User Guide, "AWS services
#: that work with IAM", column "Resource-based policies": No).  ``sts`` and ``iam`` are here
#: for their other actions; a role's trust policy, the resource policy of ``sts:AssumeRole``,
#: comes from the IAM inventory.
NO_RESOURCE_POLICY = frozenset({
    "autoscaling", "cloudformation", "cloudwatch", "ec2", "ecs", "eks", "eks-auth", "elasticloadbalancing", "iam",
    "rds", "route53", "sts", "tag",
})

#: Services whose resources RCPs restrict (AWS Organizations, "Resource control policies":
#: the list of services that support RCPs).  RCPs bear on no other service's actions.
RCP_SERVICES = frozenset({"s3", "sts", "kms", "sqs", "secretsmanager", "ecr", "cognito-identity", "logs", "dynamodb",
                          "aoss"})

#: At most this many of each are read live per run: the failures' own, most recent first.
LIVE_LIMITS = {"resources": 25, "endpoints": 10, "accounts": 10, "managed": 25}


@dataclass(frozen=True)
class ResourceKind:
    """A kind of resource whose policy trailscan reads: how it is named and read."""

    service: str
    label: str  #: "bucket policy"
    actions: tuple[str, ...]  #: the IAM actions reading it needs
    command: str  #: the AWS CLI command whose output ``--policies`` takes ({arn}, {name}, {account})


KINDS: dict[str, ResourceKind] = {
    "s3": ResourceKind("s3", "bucket policy", ("s3:GetBucketPolicy",),
                       "aws s3api get-bucket-policy --bucket {name}"),
    "kms": ResourceKind("kms", "key policy", ("kms:GetKeyPolicy",),
                        "aws kms get-key-policy --key-id {arn} --policy-name default"),
    "sqs": ResourceKind("sqs", "queue policy", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
                        "aws sqs get-queue-attributes --queue-url \"$(aws sqs get-queue-url --queue-name {name} "
                        "--queue-owner-aws-account-id {account} --query QueueUrl --output text)\" "
                        "--attribute-names Policy QueueArn"),
    "sns": ResourceKind("sns", "topic policy", ("sns:GetTopicAttributes",),
                        "aws sns get-topic-attributes --topic-arn {arn}"),
    "secretsmanager": ResourceKind("secretsmanager", "secret's resource policy", ("secretsmanager:GetResourcePolicy",),
                                   "aws secretsmanager get-resource-policy --secret-id {arn}"),
    "ecr": ResourceKind("ecr", "repository policy", ("ecr:GetRepositoryPolicy",),
                        "aws ecr get-repository-policy --registry-id {account} --repository-name {name}"),
    "lambda": ResourceKind("lambda", "function policy", ("lambda:GetPolicy",),
                           "aws lambda get-policy --function-name {arn}"),
}

#: The shapes ``--policies`` recognises: (the CLI command, what NAME= must say when the output
#: does not name its subject).
SHAPES: tuple[tuple[str, str], ...] = (
    ("aws s3api get-bucket-policy", "the bucket: arn:aws:s3:::BUCKET="),
    ("aws kms get-key-policy", "the key: arn:aws:kms:REGION:ACCOUNT:key/ID="),
    ("aws lambda get-policy", "the function: arn:aws:lambda:REGION:ACCOUNT:function:NAME="),
    ("aws sqs get-queue-attributes --attribute-names Policy QueueArn", "nothing (the queue ARN is in it)"),
    ("aws sns get-topic-attributes", "nothing (the topic ARN is in it)"),
    ("aws secretsmanager get-resource-policy", "nothing (the secret ARN is in it)"),
    ("aws ecr get-repository-policy", "nothing (registry and repository are in it)"),
    ("aws ec2 describe-vpc-endpoints", "nothing (the endpoint ids are in it)"),
    ("aws organizations describe-organization", "nothing"),
    ("aws organizations list-roots", "nothing"),
    ("aws organizations list-parents --child-id ID", "the child: ACCOUNT_ID= or ou-…="),
    ("aws organizations list-policies-for-target --target-id ID --filter …", "the target: ACCOUNT_ID=, ou-…= or r-…="),
    ("aws organizations describe-policy --policy-id ID", "nothing"),
    ("aws iam get-policy-version (a session policy's managed policy)", "the policy: arn:aws:iam::ACCOUNT:policy/NAME="),
    ("an AWS CLI error saved with 2>&1 (NoSuchBucketPolicy, AWSOrganizationsNotInUseException, AccessDenied …)",
     "its subject, as above"),
)


# --------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourcePolicy:
    """The policy of one resource: ``document`` None means AWS said it has none."""

    arn: str
    kind: str
    document: dict[str, Any] | None
    source: str


@dataclass(frozen=True)
class EndpointPolicy:
    """A VPC endpoint's policy (every endpoint has one; the default allows everything)."""

    endpoint_id: str
    document: dict[str, Any]
    service: str | None
    source: str


@dataclass(frozen=True)
class OrgPolicy:
    """An SCP or RCP, as ``describe-policy`` shows it."""

    id: str
    arn: str
    name: str
    type: str
    document: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.arn})" if self.arn else self.name


@dataclass(frozen=True)
class SessionPolicies:
    """The STS call that issued temporary credentials, as CloudTrail shows it: its session
    policies (``requestParameters.policy``, a JSON string, and ``policyArns``) and session tags."""

    access_key_id: str
    event_id: str
    event_name: str
    policy: str | None
    policy_arns: tuple[str, ...]
    tags: Any = None


@dataclass(frozen=True)
class Lookup:
    """What is known of one layer for one request.

    ``state``: ``read`` (``documents``, or ``levels`` for SCPs/RCPs, hold it), ``none`` (it
    does not bear on the request, on evidence — ``why`` says which) or ``unread`` (``why``
    says what was not read and how to read it).  ``holder`` names it for people ("the
    bucket policy of arn:aws:s3:::b").  ``targets`` maps an SCP/RCP label to the
    organization entities it is attached to at each level.
    """

    state: str
    holder: str
    why: str = ""
    documents: tuple[NamedPolicy, ...] = ()
    command: str = ""  #: for an unread layer: the AWS CLI command that shows it
    name: str = ""  #: … and the NAME its output needs in ``--policies NAME=FILE``
    levels: tuple[tuple[NamedPolicy, ...], ...] = ()
    targets: Mapping[str, str] = field(default_factory=dict)

    @property
    def read(self) -> bool:
        return self.state == READ


@dataclass(frozen=True)
class LayerWants:
    """What the failures need read live: resource ARNs (with region), VPC endpoint ids
    (with region), accounts whose organization path matters (principals' and resources'),
    managed policy ARNs (session policies), and whether RCPs are wanted for each account."""

    resources: tuple[str, ...] = ()
    endpoints: tuple[tuple[str, str], ...] = ()
    scp_accounts: tuple[str, ...] = ()
    rcp_accounts: tuple[str, ...] = ()
    managed: tuple[str, ...] = ()
    authorizations: tuple[tuple[str, str], ...] = ()  #: (Access Troubleshooter authorization id, region)

    @property
    def empty(self) -> bool:
        return not (self.resources or self.endpoints or self.scp_accounts or self.rcp_accounts or self.managed
                    or self.authorizations)


@dataclass(frozen=True)
class PolicyLayers:
    """Every layer read so far (files and live), and what could not be read.

    ``resources`` by the ARN of the resource holding the policy (a bucket's, not an
    object's); ``endpoints`` by VPC endpoint id; the organization as AWS Organizations
    describes it — ``not_in_org`` (accounts AWS said are in no organization),
    ``organizations`` (org id → management account), ``roots`` (root id → (org id, policy
    types enabled, or None when not known)), ``parents`` (child → parent id),
    ``attached`` ((target, type) → policy ids), ``org_policies``; ``managed`` IAM policies
    by ARN; ``sessions`` by access key id; ``answers``: AWS's own evaluations by
    authorization id (:class:`trailscan.troubleshooter.AwsAnswer`); ``gaps``: subject →
    why it could not be read (``authorization:ID`` for an evaluation not read).
    """

    resources: Mapping[str, ResourcePolicy] = field(default_factory=dict)
    endpoints: Mapping[str, EndpointPolicy] = field(default_factory=dict)
    not_in_org: frozenset[str] = frozenset()
    organizations: Mapping[str, str] = field(default_factory=dict)
    roots: Mapping[str, tuple[str, frozenset[str] | None]] = field(default_factory=dict)
    parents: Mapping[str, str] = field(default_factory=dict)
    attached: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    org_policies: Mapping[str, OrgPolicy] = field(default_factory=dict)
    managed: Mapping[str, NamedPolicy] = field(default_factory=dict)
    sessions: Mapping[str, SessionPolicies] = field(default_factory=dict)
    answers: Mapping[str, Any] = field(default_factory=dict)
    gaps: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def merge(self, *others: PolicyLayers) -> PolicyLayers:
        """These layers and *others* as one; what one read beats another's gap."""
        parts = [self, *others]

        def union(name: str) -> dict:
            merged: dict = {}
            for part in parts:
                merged.update(getattr(part, name))
            return merged

        roots: dict[str, tuple[str, frozenset[str] | None]] = {}
        for part in parts:
            for root, (org, enabled) in part.roots.items():
                if root not in roots or roots[root][1] is None:
                    roots[root] = (org, enabled)
        merged = PolicyLayers(
            resources=union("resources"), endpoints=union("endpoints"),
            not_in_org=frozenset().union(*(p.not_in_org for p in parts)), organizations=union("organizations"),
            roots=roots, parents=union("parents"), attached=union("attached"), org_policies=union("org_policies"),
            managed=union("managed"), sessions=union("sessions"), answers=union("answers"),
            sources=tuple(dict.fromkeys(s for p in parts for s in p.sources)),
        )
        read = set(merged.resources) | set(merged.endpoints) | set(merged.managed) | {
            f"authorization:{key}" for key in merged.answers}
        gaps = {key: why for part in parts for key, why in part.gaps.items() if key not in read}
        return _replace(merged, gaps=gaps)

    # -- lookups -------------------------------------------------------------------------------

    def resource_policy(self, resource: str | None, action: str) -> Lookup:
        """The resource-based policy layer of *action* on *resource* (an ARN, or None)."""
        service = action.split(":", 1)[0].lower()
        if service in NO_RESOURCE_POLICY:
            return Lookup(NONE, "a resource policy", f"{service} has no resource-based policies")
        kind = resource_kind(resource) if resource else None
        if kind is None:
            what = resource or f"the resource of {action}"
            return Lookup(UNREAD, f"the resource policy of {what}",
                          "trailscan does not read this kind of resource's policy" if resource else
                          "the event does not name the resource")
        holder_arn, resource_type = kind
        label = f"the {KINDS[resource_type].label} of {holder_arn}"
        found = self.resources.get(holder_arn) or self._ecr_any_region(holder_arn, resource_type)
        if found is None:
            command, name = _how_to_read(holder_arn, resource_type)
            return Lookup(UNREAD, label, self.gaps.get(holder_arn) or "not read", command=command, name=name)
        if found.document is None:
            return Lookup(NONE, label, f"{holder_arn} has no {KINDS[resource_type].label} ({found.source})")
        return Lookup(READ, label, documents=(NamedPolicy(label, found.document),))

    def _ecr_any_region(self, arn: str, kind: str) -> ResourcePolicy | None:
        if kind != "ecr":
            return None
        parts = arn.split(":", 5)
        return self.resources.get(":".join([*parts[:3], "*", *parts[4:]]))

    def endpoint_policy(self, endpoint_id: str) -> Lookup:
        label = f"the policy of VPC endpoint {endpoint_id}"
        found = self.endpoints.get(endpoint_id)
        if found is None:
            return Lookup(UNREAD, label, self.gaps.get(endpoint_id) or "not read",
                          command=f"aws ec2 describe-vpc-endpoints --vpc-endpoint-ids {shlex.quote(endpoint_id)}")
        return Lookup(READ, label, documents=(NamedPolicy(label, found.document),))

    def managed_policy(self, arn: str) -> NamedPolicy | str:
        """A managed policy's default version, or why it is not known."""
        found = self.managed.get(arn)
        if found is not None:
            return found
        return self.gaps.get(arn) or (f"{arn} not read (aws iam get-policy-version --policy-arn {arn} --version-id "
                                      "DEFAULT_VERSION, passed with --policies ARN=FILE)")

    def org_levels(self, account: str | None, policy_type: str) -> Lookup:
        """The SCPs (or RCPs) of *account*, root → OUs → account, as :func:`trailscan.policy.authorize` takes them.

        ``none`` when AWS said the account is in no organization, when it is the
        organization's management account (SCPs do not affect its principals, RCPs its
        resources), or when the policy type is not enabled in the organization.
        """
        kind = "SCPs" if policy_type == SCP else "RCPs"
        holder = f"the {kind} of account {account or 'UNKNOWN'}"
        if not account:
            return Lookup(UNREAD, holder, "the account is not known")
        if account in self.not_in_org:
            return Lookup(NONE, holder, f"account {account} is in no organization")
        managed = [org for org, management in self.organizations.items() if management == account]
        if managed:
            return Lookup(NONE, holder, f"account {account} is the management account of {managed[0]}, which {kind} "
                                        "do not affect")
        path, missing = self._path(account)
        if missing:
            child = path[-1]
            return Lookup(UNREAD, holder, missing, command=f"aws organizations list-parents --child-id {shlex.quote(child)}",
                          name=child)
        root = path[-1]
        org = self._org_of_root(root)
        enabled = self.roots.get(root, ("", None))[1]
        management = self.organizations.get(org or "")
        if management is None:
            return Lookup(UNREAD, holder, self.gaps.get(f"organization:{account}") or (
                f"which account manages organization {org or 'of ' + root} is not known"),
                command="aws organizations list-roots")
        if management == account:
            return Lookup(NONE, holder, f"account {account} is the management account of {org}, which {kind} do not affect")
        if enabled is not None and policy_type not in enabled:
            return Lookup(NONE, holder, f"{kind} are not enabled in organization {org}")
        levels: list[tuple[NamedPolicy, ...]] = []
        targets: dict[str, str] = {}
        for target in reversed(path):  # root first
            ids = self.attached.get((target, policy_type))
            if ids is None:
                return Lookup(UNREAD, holder, self.gaps.get(f"{target}:{policy_type}") or (
                    f"the {kind} attached to {target} not read"),
                    command=f"aws organizations list-policies-for-target --target-id {shlex.quote(target)} "
                            f"--filter {policy_type}",
                    name=target)
            level = []
            for policy_id in ids:
                policy = self.org_policies.get(policy_id)
                if policy is None:
                    return Lookup(UNREAD, holder, self.gaps.get(policy_id) or f"{policy_id} not read",
                                  command=f"aws organizations describe-policy --policy-id {shlex.quote(policy_id)}")
                level.append(NamedPolicy(policy.label, policy.document))
                targets[policy.label] = _entity(target)
            levels.append(tuple(level))
        if enabled is None and not all(levels):
            # Every root, OU and account has at least one SCP (RCPFullAWSAccess for RCPs) while the
            # type is enabled: a level with none means it is not.
            return Lookup(NONE, holder, f"{kind} are not enabled in organization {org} (a level has none attached)")
        return Lookup(READ, holder, levels=tuple(levels), targets=targets)

    def org_of(self, account: str | None) -> tuple[str | None, str | None]:
        """(organization id, ``aws:PrincipalOrgPaths`` entry) of *account*, when known."""
        if not account or account in self.not_in_org:
            return None, None
        path, missing = self._path(account)
        if missing:
            return None, None
        org = self._org_of_root(path[-1])
        if not org:
            return None, None
        return org, "/".join([org, *reversed(path[1:])]) + "/"

    def org_path(self, account: str) -> list[str] | None:
        """[account, parent OU, …, root] as the organization tree read says, or None when
        it does not reach the root (the tree was not read, or not all of it)."""
        path, missing = self._path(account)
        return None if missing else path

    def _path(self, account: str) -> tuple[list[str], str]:
        """[account, parent, …, root], or what is missing to know it."""
        path = [account]
        while not path[-1].startswith("r-"):
            parent = self.parents.get(path[-1])
            if parent is None:
                child = path[-1]
                return path, self.gaps.get(f"organization:{child}") or (
                    f"the organization path of account {account} not read")
            if parent in path or len(path) > 8:  # Organizations nests OUs five deep at most
                return path, f"the organization path of {account} loops at {parent}"
            path.append(parent)
        return path, ""

    def _org_of_root(self, root: str) -> str | None:
        """The organization of a root: from list-roots, else the one organization known
        (an organization has exactly one root)."""
        if root in self.roots:
            return self.roots[root][0] or None
        return next(iter(self.organizations)) if len(self.organizations) == 1 else None


def _replace(layers: PolicyLayers, **changes: Any) -> PolicyLayers:
    return replace(layers, **changes)


def _entity(target: str) -> str:
    if target.startswith("r-"):
        return f"the root {target}"
    if target.startswith("ou-"):
        return f"the OU {target}"
    return f"the account {target}"


# --------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------


def resource_kind(arn: str | None) -> tuple[str, str] | None:
    """(the ARN of the resource holding the policy, its :data:`KINDS` key) for a resource
    whose policy trailscan reads, else None: ``arn:aws:s3:::b/k`` → the bucket's ARN."""
    parts = (arn or "").split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    partition, service, region, account, resource = parts[1], parts[2], parts[3], parts[4], parts[5]
    if service == "s3" and not region and not account and resource:
        bucket = resource.split("/", 1)[0]
        return (f"arn:{partition}:s3:::{bucket}", "s3") if bucket else None
    if service == "kms" and resource.startswith("key/"):
        return arn, "kms"
    if service == "sqs" and resource and "/" not in resource:
        return arn, "sqs"
    if service == "sns" and resource:
        return f"arn:{partition}:sns:{region}:{account}:{resource.split(':', 1)[0]}", "sns"
    if service == "secretsmanager" and resource.startswith("secret:"):
        return arn, "secretsmanager"
    if service == "ecr" and resource.startswith("repository/"):
        return arn, "ecr"
    if service == "lambda" and resource.startswith("function:"):
        return arn, "lambda"
    return None


def _how_to_read(arn: str, kind: str) -> tuple[str, str]:
    """(the AWS CLI command whose output holds the policy, the NAME ``--policies`` needs for it)."""
    parts = arn.split(":", 5)
    name = parts[5].split("/", 1)[-1].split(":", 1)[-1] if kind not in ("s3",) else parts[5]
    # The names come from CloudTrail, that is from callers: quoted for the shell.
    command = KINDS[kind].command.format(arn=shlex.quote(arn), name=shlex.quote(name), account=shlex.quote(parts[4]))
    return command, arn if kind in _NEEDS_NAME else ""


#: Kinds whose CLI output does not name the resource: ``--policies ARN=FILE``.
_NEEDS_NAME = ("s3", "kms", "lambda")


# --------------------------------------------------------------------------
# Offline: the AWS CLI's output, recognised by shape
# --------------------------------------------------------------------------


def split_policies_option(value: str) -> tuple[str, str]:
    """``NAME=FILE`` → ``(NAME, FILE)``; a plain ``FILE`` (or an existing file whose name
    holds ``=``) → ``("", FILE)``.  NAME (an ARN, account or OU id) never holds ``=``."""
    if os.path.exists(value):
        return "", value
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path:
        return "", value
    return name.strip(), path


_CLI_ERROR = re.compile(
    r"An error occurred \((?P<code>[\w.]+)\)(?: \(reached max retries: \d+\))? when calling the (?P<op>\w+) "
    r"operation(?:: (?P<message>.*))?", re.DOTALL)
_ACCOUNT = re.compile(r"^\d{12}$")
_REFUSED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Client.UnauthorizedOperation")


def load_policy_file(value: str) -> PolicyLayers:
    """Read one ``--policies [NAME=]FILE``: the plain output of an AWS CLI command that shows a
    policy layer (see :data:`SHAPES`), or the error line such a command printed (saved with
    ``2>&1``): ``NoSuchBucketPolicy`` and the like say the resource has no policy,
    ``AWSOrganizationsNotInUseException`` that the account is in no organization, a refusal
    that the layer could not be read.

    Raises :class:`InputError`, one line naming the file, for a file that cannot be read,
    is not one of these shapes, or needs a NAME it was not given.
    """
    name, path = split_policies_option(value)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read policy file ({exc.strerror or exc})") from None
    text = data.decode("utf-8", "replace").strip()
    error = _CLI_ERROR.search(text) if text.startswith("An error occurred") or "\nAn error occurred" in text else None
    if error:
        return _error_layers(name, path, error)
    try:
        document = parse_json(data, path, "policy file")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: not JSON, nor an AWS CLI error line",
                         "save the command's output with --output json (and 2>&1 for its error)") from None
    if not isinstance(document, Mapping):
        raise InputError(f"{path}: a policy file holds a JSON object", _SHAPE_HINT)
    return _shape_layers(name, path, document)


_SHAPE_HINT = ("expected the output of one of: " + "; ".join(command for command, _ in SHAPES[:-1])
               + " (see the README: --policies)")


def _need(name: str, path: str, command: str, what: str, pattern: str | None = None) -> str:
    """NAME of ``--policies NAME=FILE``, required for output (of *command*) that does not name its subject."""
    if not name:
        raise InputError(f"{path}: {command} output does not say whose it is: pass it as --policies NAME={path}, "
                         f"NAME being {what}")
    if pattern and not re.match(pattern, name):
        raise InputError(f"{path}: {name!r} is not {what}")
    return name


def _document(text: Any, path: str, what: str) -> dict[str, Any]:
    return load_policy(text, name=f"{path}: {what}")


def _shape_layers(name: str, path: str, doc: Mapping[str, Any]) -> PolicyLayers:
    source = (path,)
    policy = doc.get("Policy")
    if isinstance(policy, Mapping) and "Content" in policy:  # organizations describe-policy
        summary = policy.get("PolicySummary") or {}
        policy_id = str(summary.get("Id") or name)
        kind = str(summary.get("Type") or "")
        if kind not in (SCP, RCP):
            return PolicyLayers(sources=source)  # tag, backup … policies: not authorization
        found = OrgPolicy(policy_id, str(summary.get("Arn") or ""), str(summary.get("Name") or policy_id), kind,
                          _document(policy["Content"], path, f"{kind} {policy_id}"))
        return PolicyLayers(org_policies={policy_id: found}, organizations=_org_from_arn(found.arn), sources=source)
    if isinstance(policy, str):  # s3api get-bucket-policy, kms get-key-policy, lambda get-policy
        arn = _need(name, path, "get-bucket-policy, get-key-policy or lambda get-policy",
                    "the resource's ARN (arn:aws:s3:::BUCKET, a KMS key or Lambda function ARN)", r"arn:")
        found = resource_kind(arn)
        if found is None or found[1] not in ("s3", "kms", "lambda"):
            raise InputError(f"{path}: {arn!r} is not a bucket, KMS key or Lambda function ARN")
        holder, kind = found
        return PolicyLayers(resources={holder: ResourcePolicy(holder, kind, _document(policy, path, holder), path)},
                            sources=source)
    if isinstance(doc.get("Attributes"), Mapping):  # sqs get-queue-attributes, sns get-topic-attributes
        attributes = doc["Attributes"]
        arn = attributes.get("QueueArn") or attributes.get("TopicArn") or _need(name, path, "get-queue-attributes", "the queue or topic ARN")
        found = resource_kind(str(arn))
        if found is None or found[1] not in ("sqs", "sns"):
            raise InputError(f"{path}: {arn!r} is not a queue or topic ARN")
        holder, kind = found
        text = attributes.get("Policy")
        document = _document(text, path, holder) if text else None
        if text is None and kind == "sqs" and "QueueArn" not in attributes:
            raise InputError(f"{path}: no Policy attribute: ask for it (--attribute-names Policy QueueArn)")
        return PolicyLayers(resources={holder: ResourcePolicy(holder, kind, document, path)}, sources=source)
    if "ARN" in doc and "Name" in doc and str(doc.get("ARN", "")).startswith("arn:"):  # secretsmanager
        holder = str(doc["ARN"])
        text = doc.get("ResourcePolicy")
        return PolicyLayers(resources={holder: ResourcePolicy(
            holder, "secretsmanager", _document(text, path, holder) if text else None, path)}, sources=source)
    if "policyText" in doc and "repositoryName" in doc:  # ecr get-repository-policy
        arn = name or f"arn:aws:ecr:*:{doc.get('registryId')}:repository/{doc['repositoryName']}"
        return PolicyLayers(resources={arn: ResourcePolicy(arn, "ecr", _document(doc["policyText"], path, arn), path)},
                            sources=source)
    if isinstance(doc.get("VpcEndpoints"), list):  # ec2 describe-vpc-endpoints
        endpoints = {}
        for entry in doc["VpcEndpoints"]:
            if not isinstance(entry, Mapping) or not entry.get("VpcEndpointId"):
                raise InputError(f"{path}: a VpcEndpoints entry without VpcEndpointId")
            endpoint = str(entry["VpcEndpointId"])
            text = entry.get("PolicyDocument")
            if text:  # Gateway Load Balancer and some interface endpoints take no policy
                endpoints[endpoint] = EndpointPolicy(endpoint, _document(text, path, endpoint),
                                                     entry.get("ServiceName"), path)
        return PolicyLayers(endpoints=endpoints, sources=source)
    if isinstance(doc.get("Organization"), Mapping):  # organizations describe-organization
        org = doc["Organization"]
        return PolicyLayers(organizations={str(org.get("Id")): str(org.get("MasterAccountId"))}, sources=source)
    if isinstance(doc.get("Roots"), list):  # organizations list-roots
        roots: dict[str, tuple[str, frozenset[str] | None]] = {}
        organizations: dict[str, str] = {}
        for root in doc["Roots"]:
            arn = str(root.get("Arn") or "")
            org = _org_from_arn(arn)
            organizations.update(org)
            enabled = frozenset(t.get("Type") for t in root.get("PolicyTypes") or [] if t.get("Status") == "ENABLED")
            roots[str(root.get("Id"))] = (next(iter(org), ""), enabled)
        return PolicyLayers(roots=roots, organizations=organizations, sources=source)
    if isinstance(doc.get("Parents"), list):  # organizations list-parents
        child = _need(name, path, "list-parents", "the child's id (an account id or ou-…)", r"(\d{12}|ou-[0-9a-z-]+)$")
        parents = [p for p in doc["Parents"] if isinstance(p, Mapping) and p.get("Id")]
        if len(parents) != 1:
            raise InputError(f"{path}: list-parents names {len(parents)} parents; an account or OU has one")
        return PolicyLayers(parents={child: str(parents[0]["Id"])}, sources=source)
    if isinstance(doc.get("Policies"), list):  # organizations list-policies-for-target
        items = doc["Policies"]
        if any(isinstance(p, Mapping) and "PolicyVersionList" in p for p in items):
            raise InputError(f"{path}: this is get-account-authorization-details output: pass it with --iam")
        target = _need(name, path, "list-policies-for-target", "the target's id (an account id, ou-… or r-…)",
                       r"(\d{12}|ou-[0-9a-z-]+|r-[0-9a-z]+)$")
        kinds = {str(p.get("Type")) for p in items if isinstance(p, Mapping)}
        if not items:
            return PolicyLayers(sources=source)  # an empty list does not say of which type
        if len(kinds) != 1 or not kinds <= {SCP, RCP}:
            raise InputError(f"{path}: expected SCPs or RCPs (list-policies-for-target --filter …), found {sorted(kinds)}")
        return PolicyLayers(attached={(target, kinds.pop()): tuple(str(p["Id"]) for p in items)}, sources=source)
    if isinstance(doc.get("PolicyVersion"), Mapping):  # iam get-policy-version
        arn = _need(name, path, "get-policy-version", "the managed policy's ARN", r"arn:[\w-]+:iam::(\d{12}|aws):policy/")
        return PolicyLayers(managed={arn: NamedPolicy(arn, _document(doc["PolicyVersion"].get("Document"), path, arn))},
                            sources=source)
    raise InputError(f"{path}: not a policy layer trailscan reads", _SHAPE_HINT)


def _org_from_arn(arn: str) -> dict[str, str]:
    """``arn:aws:organizations::MANAGEMENT:root/o-x/r-y`` (or a policy's) → {o-x: MANAGEMENT}."""
    found = re.match(r"arn:[\w-]+:organizations::(\d{12}):\w+/(o-[0-9a-z]+)", arn or "")
    return {found.group(2): found.group(1)} if found else {}


def _error_layers(name: str, path: str, error: re.Match[str]) -> PolicyLayers:
    code, operation = error.group("code"), error.group("op")
    message = " ".join((error.group("message") or "").split())[:200]
    source = (path,)
    if code in _REFUSED or code.endswith("AccessDenied"):
        subject = _need(name, path, f"the {operation} error", "what the refused read was about (an ARN, account id or ou-…)")
        return PolicyLayers(gaps={_gap_key(subject, operation): f"{operation} refused ({code}): {message}"}, sources=source)
    if operation == "DescribeOrganization" and code == "AWSOrganizationsNotInUseException":
        account = _need(name, path, "the DescribeOrganization error", "the account whose session ran it", r"\d{12}$")
        return PolicyLayers(not_in_org=frozenset({account}), sources=source)
    absent = {("GetBucketPolicy", "NoSuchBucketPolicy"): "s3", ("GetRepositoryPolicy", "RepositoryPolicyNotFoundException"): "ecr",
              ("GetPolicy", "ResourceNotFoundException"): "lambda"}
    kind = absent.get((operation, code))
    if kind:
        arn = _need(name, path, f"the {operation} error", "the resource's ARN", r"arn:")
        found = resource_kind(arn)
        if found is None or found[1] != kind:
            raise InputError(f"{path}: {arn!r} is not the ARN of a resource {operation} reads")
        return PolicyLayers(resources={found[0]: ResourcePolicy(found[0], kind, None, f"{path}: {code}")}, sources=source)
    raise InputError(f"{path}: the AWS CLI error {code} from {operation} says nothing trailscan can use", _SHAPE_HINT)


def _gap_key(subject: str, operation: str) -> str:
    """Where a refused read is looked up: a resource's holder ARN, an endpoint id, an
    account's organization path, a target's policies, a policy id."""
    found = resource_kind(subject)
    if found:
        return found[0]
    if _ACCOUNT.match(subject) or subject.startswith("ou-"):
        if operation == "ListPoliciesForTarget":
            return f"{subject}:{SCP}"
        return f"organization:{subject}"
    return subject


# --------------------------------------------------------------------------
# Live: only what the failures name
# --------------------------------------------------------------------------


def describe_failure(what: str, exc: BaseException) -> str:
    """One line: what was asked, and how AWS answered (``refused: AccessDenied: …``)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        message = " ".join(str(error.get("Message", "")).split())[:200]
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        refused = code in _REFUSED or "AccessDenied" in code or status in (401, 403)
        return f"{what}: {'refused' if refused else 'failed'}: {code or 'HTTP ' + str(status)}" + (
            f": {message}" if message else "")
    text = " ".join(str(exc).split())
    return f"{what}: failed: {text[:200]}"


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, Mapping) else ""


def load_layers_live(
    session: Any, wants: LayerWants, *, default_region: str | None = None, caller_account: str | None = None
) -> PolicyLayers:
    """Read, through *session*, the layers *wants* names — and no others: at most
    :data:`LIVE_LIMITS` of each (the first given; the rest named as not read).  A refused
    or failed read becomes a gap naming the call; nothing raises for an AWS answer.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    errors = (ClientError, BotoCoreError)
    clients: dict[tuple[str, str | None], Any] = {}
    region_default = default_region or getattr(session, "region_name", None) or "us-east-1"

    def client(service: str, region: str | None = None) -> Any:
        key = (service, region)
        if key not in clients:
            clients[key] = session.client(service, region_name=region or region_default)
        return clients[key]

    parts: list[PolicyLayers] = [PolicyLayers(sources=("live",))]
    gaps: dict[str, str] = {}
    for arn in _limited(wants.resources, "resources", gaps):
        parts.append(_read_resource(client, arn, gaps, errors))
    for endpoint, region in _limited(wants.endpoints, "endpoints", gaps):
        try:
            answer = client("ec2", region).describe_vpc_endpoints(VpcEndpointIds=[endpoint])
            parts.append(_shape_layers("", "live", answer))
            if endpoint not in parts[-1].endpoints:
                gaps[endpoint] = f"ec2:DescribeVpcEndpoints {endpoint}: the endpoint has no policy document"
        except errors as exc:
            gaps[endpoint] = describe_failure(f"ec2:DescribeVpcEndpoints {endpoint}", exc)
    accounts = list(dict.fromkeys([*wants.scp_accounts, *wants.rcp_accounts]))
    if accounts:
        if caller_account is None:
            try:
                caller_account = str(client("sts").get_caller_identity()["Account"])
            except errors as exc:
                gaps["caller"] = describe_failure("sts:GetCallerIdentity", exc)
        parts.append(_read_organization(client("organizations", "us-east-1"), _limited(accounts, "accounts", gaps),
                                        set(wants.rcp_accounts), caller_account, gaps, errors))
    for arn in _limited(wants.managed, "managed", gaps):
        try:
            iam = client("iam")
            policy = iam.get_policy(PolicyArn=arn)["Policy"]
            version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
            parts.append(PolicyLayers(managed={arn: NamedPolicy(arn, load_policy(version["Document"], name=arn))}))
        except errors as exc:
            gaps[arn] = describe_failure(f"iam:GetPolicyVersion {arn}", exc)
        except InputError as exc:
            gaps[arn] = f"{arn}: {exc.message}"
    merged = parts[0].merge(*parts[1:])
    return _replace(merged, gaps={**gaps, **merged.gaps})


def _limited(items: Iterable[Any], kind: str, gaps: dict[str, str]) -> list[Any]:
    items = list(dict.fromkeys(items))
    limit = LIVE_LIMITS[kind]
    for item in items[limit:]:
        key = item[0] if isinstance(item, tuple) else item
        gaps[key] = f"not read live: more than {limit} {kind} were named by the failures (pass it with --policies)"
    return items[:limit]


def _read_resource(client: Any, arn: str, gaps: dict[str, str], errors: tuple) -> PolicyLayers:
    found = resource_kind(arn)
    if found is None:
        return PolicyLayers()
    holder, kind = found
    parts = holder.split(":", 5)
    region, account, resource = parts[3] or None, parts[4], parts[5]
    what = f"{KINDS[kind].actions[-1]} {holder}"
    text: Any = None
    try:
        if kind == "s3":
            text = client("s3").get_bucket_policy(Bucket=resource)["Policy"]
        elif kind == "kms":
            text = client("kms", region).get_key_policy(KeyId=holder, PolicyName="default")["Policy"]
        elif kind == "sqs":
            sqs = client("sqs", region)
            url = sqs.get_queue_url(QueueName=resource, QueueOwnerAWSAccountId=account)["QueueUrl"]
            text = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {}).get("Policy")
        elif kind == "sns":
            text = client("sns", region).get_topic_attributes(TopicArn=holder)["Attributes"].get("Policy")
        elif kind == "secretsmanager":
            text = client("secretsmanager", region).get_resource_policy(SecretId=holder).get("ResourcePolicy")
        elif kind == "ecr":
            text = client("ecr", region).get_repository_policy(
                registryId=account, repositoryName=resource.split("/", 1)[1])["policyText"]
        elif kind == "lambda":
            text = client("lambda", region).get_policy(FunctionName=holder)["Policy"]
    except errors as exc:
        if _code(exc) in ("NoSuchBucketPolicy", "RepositoryPolicyNotFoundException", "ResourceNotFoundException"):
            return PolicyLayers(resources={holder: ResourcePolicy(holder, kind, None, f"live: {_code(exc)}")})
        gaps[holder] = describe_failure(what, exc)
        return PolicyLayers()
    try:
        document = load_policy(text, name=f"the {KINDS[kind].label} of {holder}") if text else None
    except InputError as exc:
        gaps[holder] = exc.message
        return PolicyLayers()
    return PolicyLayers(resources={holder: ResourcePolicy(holder, kind, document, "live")})


def _read_organization(org: Any, accounts: list[str], rcp_accounts: set[str], caller_account: str | None,
                       gaps: dict[str, str], errors: tuple) -> PolicyLayers:
    """describe-organization, list-roots, then each account's path and the SCPs (and, for a
    resource's account, RCPs) attached along it."""
    try:
        described = org.describe_organization()["Organization"]
    except errors as exc:
        code = _code(exc)
        for account in accounts:
            if code == "AWSOrganizationsNotInUseException" and account != caller_account:
                gaps[f"organization:{account}"] = (
                    f"not read: trailscan's own account {caller_account or ''} is in no organization, so it cannot "
                    f"read account {account}'s")
            elif code != "AWSOrganizationsNotInUseException":
                gaps[f"organization:{account}"] = describe_failure("organizations:DescribeOrganization", exc)
        # AWS's answer for the session's own account: it is in no organization.
        mine = {caller_account} & set(accounts) if code == "AWSOrganizationsNotInUseException" else set()
        return PolicyLayers(not_in_org=frozenset(a for a in mine if a))
    layers = PolicyLayers(organizations={described["Id"]: described["MasterAccountId"]})
    parts = [layers]
    try:
        parts.append(_shape_layers("", "live", {"Roots": org.list_roots()["Roots"]}))
    except errors as exc:
        gaps[f"roots:{described['Id']}"] = describe_failure("organizations:ListRoots", exc)
    parents: dict[str, str] = {}
    attached: dict[tuple[str, str], tuple[str, ...]] = {}
    policies: dict[str, OrgPolicy] = {}
    for account in accounts:
        if account == described["MasterAccountId"]:
            continue  # neither SCPs nor RCPs bear on the management account: nothing to read
        chain, child = [account], account
        try:
            while not child.startswith("r-") and len(chain) <= 8:
                parent = org.list_parents(ChildId=child)["Parents"][0]["Id"]
                parents[child] = parent
                chain.append(parent)
                child = parent
        except errors as exc:
            gaps[f"organization:{child}"] = describe_failure(f"organizations:ListParents {child}", exc)
            continue
        types = [SCP] + ([RCP] if account in rcp_accounts else [])
        for target in chain:
            for policy_type in types:
                if (target, policy_type) in attached:
                    continue
                try:
                    listed = [p["Id"] for page in org.get_paginator("list_policies_for_target").paginate(
                        TargetId=target, Filter=policy_type) for p in page["Policies"]]
                except errors as exc:
                    if _code(exc) == "PolicyTypeNotEnabledException":
                        continue
                    gaps[f"{target}:{policy_type}"] = describe_failure(
                        f"organizations:ListPoliciesForTarget {target} {policy_type}", exc)
                    continue
                attached[(target, policy_type)] = tuple(listed)
                for policy_id in listed:
                    if policy_id in policies or policy_id in gaps:
                        continue
                    try:
                        found = _shape_layers("", "live", {"Policy": org.describe_policy(PolicyId=policy_id)["Policy"]})
                        policies.update(found.org_policies)
                    except errors as exc:
                        gaps[policy_id] = describe_failure(f"organizations:DescribePolicy {policy_id}", exc)
                    except InputError as exc:
                        gaps[policy_id] = exc.message
    parts.append(PolicyLayers(parents=parents, attached=attached, org_policies=policies))
    return parts[0].merge(*parts[1:])
