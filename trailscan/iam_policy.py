"""The least-privilege IAM policy trailscan itself needs (``trailscan iam-policy``).

Every statement answers an AWS call the pipeline makes, and nothing else:

==========================  =====================================================================
part                        calls → actions
==========================  =====================================================================
s3 source                   ``HeadBucket``, ``ListObjectsV2`` (delimiter walk under ``AWSLogs/``)
                            → ``s3:ListBucket``; ``GetObject`` → ``s3:GetObject`` on the log
                            prefix; ``kms:Decrypt`` through S3 when the bucket uses SSE-KMS;
                            ``DescribeTrails`` → ``cloudtrail:DescribeTrails`` when no bucket is
                            given and the trail is discovered
lookup source               ``LookupEvents`` → ``cloudtrail:LookupEvents``
IAM inventory (live)        ``GetRole``, ``ListRolePolicies``, ``GetRolePolicy``,
                            ``ListAttachedRolePolicies``, ``GetPolicy``, ``GetPolicyVersion``,
                            ``ListOpenIDConnectProviders``, ``GetOpenIDConnectProvider``, and
                            ``sts:GetCallerIdentity`` (the session's account)
policy layers (live)        the resources the failures name: ``s3:GetBucketPolicy``,
                            ``kms:GetKeyPolicy``, ``sqs:GetQueueUrl``/``GetQueueAttributes``,
                            ``sns:GetTopicAttributes``, ``secretsmanager:GetResourcePolicy``,
                            ``ecr:GetRepositoryPolicy``, ``lambda:GetPolicy``;
                            ``ec2:DescribeVpcEndpoints``; ``organizations:DescribeOrganization``,
                            ``ListRoots``, ``ListParents``, ``ListPoliciesForTarget``,
                            ``DescribePolicy``; ``iam:GetRequestAuthorizationDetails`` (AWS's own
                            evaluation of a refusal)
EKS inventory (--cluster)   ``DescribeCluster``, ``ListNodegroups``, ``DescribeNodegroup``,
                            ``ListPodIdentityAssociations``, ``DescribePodIdentityAssociation``
report to S3                ``PutObject`` → ``s3:PutObject`` under the report prefix
``trailscan doctor``        (:func:`doctor_policy`) ``GetRole`` (the trust policy only),
                            ``ListOpenIDConnectProviders``, ``GetOpenIDConnectProvider``,
                            ``sts:GetCallerIdentity``; with ``--cluster`` the EKS reads above
--engine athena             Athena's query actions on the workgroup, Glue's reads of the table,
                            the trail's bucket and the query results location (see
                            :func:`athena_statements`)
==========================  =====================================================================

Resources are as narrow as the action allows; ``"*"`` is used only for actions that
support no resource-level permission (``cloudtrail:DescribeTrails``,
``cloudtrail:LookupEvents``, ``iam:ListOpenIDConnectProviders``, ``sts:GetCallerIdentity``,
``ec2:DescribeVpcEndpoints``, the Organizations reads, ``iam:GetRequestAuthorizationDetails``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trailscan.errors import UsageError
from trailscan.sources import get_source, source_names

#: Stand-in for the trail's bucket when it is to be discovered (``describe-trails``).
BUCKET_PLACEHOLDER = "TRAIL_BUCKET"

_ACCOUNT = re.compile(r"^\d{12}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_KMS_KEY = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/.+$")
_CLUSTER = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
_CLUSTER_ARN = re.compile(r"^arn:(aws[a-z-]*):eks:([a-z0-9-]+):(\d{12}):cluster/([0-9A-Za-z][A-Za-z0-9\-_]*)$")


@dataclass(frozen=True)
class PolicyRequest:
    """What trailscan will be run with, as ``trailscan iam-policy`` options say.

    ``source``: ``s3`` (a trail's bucket: ``bucket`` — a name or ``s3://BUCKET/PREFIX`` —
    ``prefix``, ``org_id``, ``accounts`` narrow what may be read; no bucket means the trail
    is discovered) or ``lookup``.  ``kms_keys``: keys the trail's bucket encrypts with.
    ``report_to``: ``s3://BUCKET/PREFIX/`` (or a local folder: nothing to allow), and
    ``report_kms_keys`` the keys of that bucket's SSE-KMS.  ``clusters``: EKS cluster names
    or ARNs described live.  ``live_iam``: roles and OIDC providers read live (``False``
    when an ``--iam`` file is given instead), and with them the policy layers the failures
    name; ``policy_buckets``: the buckets whose policies may be read.
    """

    source: str = "s3"
    bucket: str | None = None
    prefix: str = ""
    org_id: str | None = None
    accounts: tuple[str, ...] = ()
    kms_keys: tuple[str, ...] = ()
    report_to: str | None = None
    report_kms_keys: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    live_iam: bool = True
    partition: str = "aws"
    policy_buckets: tuple[str, ...] = ()
    #: ``athena``: Athena reads the trail (``--engine athena``); then ``athena_table``
    #: (``DB.TABLE``), ``workgroup``, ``output`` (``s3://…``, default: the workgroup's), and
    #: optionally the ``region`` and ``account`` of the workgroup and catalog.
    engine: str = "local"
    athena_table: str | None = None
    workgroup: str = "primary"
    output: str | None = None
    region: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class RequiredPolicy:
    """The policy document, and notes for whoever attaches it (what to replace or add)."""

    document: dict[str, Any]
    notes: tuple[str, ...]

    @property
    def actions(self) -> set[str]:
        """Every action the document allows."""
        found: set[str] = set()
        for statement in self.document["Statement"]:
            actions = statement["Action"]
            found.update([actions] if isinstance(actions, str) else actions)
        return found


def required_policy(request: PolicyRequest) -> RequiredPolicy:
    """The least-privilege identity policy for running trailscan as ``request`` says.

    Raises :class:`UsageError` for an unknown source, a malformed bucket, account, KMS
    key or cluster, or a report destination that is not ``s3://…`` or a folder.
    """
    if request.source not in source_names(remote=True):
        raise UsageError(f"--source {request.source!r}: expected one of {', '.join(source_names(remote=True))}")
    statements: list[dict[str, Any]] = []
    notes: list[str] = []
    arn = f"arn:{request.partition}"
    source = get_source(request.source)
    if request.engine == "athena":
        if request.source != "s3":
            raise UsageError("--engine athena reads a trail's bucket: --source s3")
        statements += athena_statements(request, notes)
    else:
        statements += source.required_statements(request, notes)
    if request.live_iam:
        statements += _iam_inventory(arn)
        statements += _policy_layers(arn, request.policy_buckets, notes)
        notes.append("SCPs and RCPs are read only from the organization's management account or a delegated "
                     "administrator: elsewhere the Organizations reads are refused, and named as not read")
    if source.asks_caller_identity or request.live_iam:
        statements.append(statement("SessionAccount", ["sts:GetCallerIdentity"], "*"))
    if request.clusters:
        statements += _eks_inventory(request.clusters, arn)
    else:
        notes.append("no --cluster given: add the EKS clusters trailscan describes (OIDC issuer, node roles, "
                     "Pod Identity associations) with --cluster NAME")
    if request.report_to:
        statements += _report(request.report_to, request.report_kms_keys, arn, notes)
    return RequiredPolicy({"Version": "2012-10-17", "Statement": statements}, tuple(notes))


def doctor_policy(clusters: tuple[str, ...] = (), *, live_iam: bool = True, partition: str = "aws") -> RequiredPolicy:
    """What ``trailscan doctor`` and ``trailscan doctor pod`` call AWS for, and nothing else.

    The in-pod doctor's own calls need no permission: ``AssumeRoleWithWebIdentity`` is
    decided by the role's trust policy, and ``sts:GetCallerIdentity`` is allowed to every
    principal.  What needs one is reading the trust verdict's inputs live (``iam:GetRole``
    for the trust policy, the OIDC providers) and, for ``doctor pod --cluster``, the EKS
    cluster (OIDC issuer, node groups, Pod Identity associations).
    """
    arn = f"arn:{partition}"
    statements = [statement("WhoAmI", ["sts:GetCallerIdentity"], "*")]
    notes = ["sts:AssumeRoleWithWebIdentity and sts:GetCallerIdentity need no permission of the pod's role; attach "
             "this to the role the doctor runs as only to read the trust verdict live (or pass --iam FILE)",
             "trailscan doctor pod also needs read-only Kubernetes RBAC (README: the doctor's permissions)"]
    if live_iam:
        statements += [
            statement("ReadTrustPolicies", ["iam:GetRole"], f"{arn}:iam::*:role/*"),
            statement("ListOidcProviders", ["iam:ListOpenIDConnectProviders"], "*"),
            statement("ReadOidcProviders", ["iam:GetOpenIDConnectProvider"], f"{arn}:iam::*:oidc-provider/*"),
        ]
    if clusters:
        statements += _eks_inventory(clusters, arn)
    else:
        notes.append("doctor pod --cluster NAME reads the cluster's issuer and Pod Identity associations: add "
                     "--cluster NAME")
    return RequiredPolicy({"Version": "2012-10-17", "Statement": statements}, tuple(notes))


#: Stand-in for the bucket of the Athena workgroup's result location when --output is not given.
RESULTS_PLACEHOLDER = "ATHENA_RESULTS_BUCKET"


def athena_statements(request: PolicyRequest, notes: list[str]) -> list[dict]:
    """What ``--engine athena`` needs.  Athena runs a query with the caller's own
    credentials, so besides Athena's actions the caller needs:

    - Athena: ``GetWorkGroup``, ``StartQueryExecution``, ``GetQueryExecution``,
      ``GetQueryResults``, ``StopQueryExecution`` on the workgroup;
    - the Glue catalog: ``GetTable`` (trailscan reads the table's columns and projection;
      Athena reads it too), ``GetDatabase``, ``GetPartitions``, on the catalog, the database
      and the table;
    - the trail's bucket: ``s3:GetBucketLocation``, and ``s3:ListBucket``/``s3:GetObject``
      on exactly the prefixes the S3 source reads (Athena lists the partitions' folders and
      reads their files);
    - the results location: ``s3:GetBucketLocation``, ``s3:ListBucket``, ``s3:PutObject``,
      ``s3:GetObject``, ``s3:AbortMultipartUpload``, ``s3:ListMultipartUploadParts``
      (Athena writes the results there; trailscan reads them through GetQueryResults).

    ``trailscan athena setup`` is run once by someone allowed to create tables; what it
    needs more is said in *notes*, not granted to the role that runs nightly.
    """
    from trailscan.athena.names import parse_table_name

    arn = f"arn:{request.partition}"
    region, account = request.region or "*", request.account or "*"
    if not request.bucket:
        raise UsageError("--engine athena: pass --bucket, the trail's bucket the table reads",
                         "Athena reads it with the credentials trailscan runs with")
    if not request.athena_table:
        raise UsageError("--engine athena: pass --athena-table DB.TABLE")
    if not re.match(r"^[A-Za-z0-9._-]{1,128}$", request.workgroup):
        raise UsageError(f"--workgroup {request.workgroup!r}: not an Athena workgroup name")
    database, table = parse_table_name(request.athena_table)
    statements = [
        statement(
            "RunAthenaQueries",
            ["athena:GetWorkGroup", "athena:StartQueryExecution", "athena:GetQueryExecution",
             "athena:GetQueryResults", "athena:StopQueryExecution"],
            f"{arn}:athena:{region}:{account}:workgroup/{request.workgroup}",
        ),
        statement(
            "ReadTheCloudTrailTable",
            ["glue:GetTable", "glue:GetDatabase", "glue:GetPartitions"],
            [f"{arn}:glue:{region}:{account}:catalog", f"{arn}:glue:{region}:{account}:database/{database}",
             f"{arn}:glue:{region}:{account}:table/{database}/{table}"],
        ),
    ]
    bucket, _ = split_s3(request.bucket, request.prefix, option="--bucket")
    statements.append(statement("LocateTrailBucket", ["s3:GetBucketLocation"], f"{arn}:s3:::{bucket}"))
    # The trail's log files, exactly the prefixes the S3 source reads.
    trail = get_source("s3").required_statements(request, notes)
    statements += [s for s in trail if s["Sid"] in ("ListTrailLogFolders", "ReadTrailLogFiles", "DecryptTrailLogFiles")]
    if request.output:
        results_bucket, results_prefix = split_s3(request.output, "", option="--output")
    else:
        results_bucket, results_prefix = RESULTS_PLACEHOLDER, ""
        notes.append(f"no --output given: replace {RESULTS_PLACEHOLDER} with the bucket of the workgroup's query "
                     "result location")
    key = f"{results_prefix.strip('/')}/*" if results_prefix.strip("/") else "*"
    listing = {"StringLikeIfExists": {"s3:prefix": [key]}} if results_prefix.strip("/") else None
    statements += [
        statement("LocateResultsBucket", ["s3:GetBucketLocation", "s3:ListBucket"], f"{arn}:s3:::{results_bucket}",
                  listing),
        statement("WriteAndReadQueryResults",
                  ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                  f"{arn}:s3:::{results_bucket}/{key}"),
    ]
    notes.append("`trailscan athena setup` (run once, by an administrator) also needs glue:CreateDatabase, "
                 "glue:CreateTable and glue:UpdateTable on that database and table, and s3:ListBucket on the "
                 "trail's bucket")
    return statements


def statement(sid: str, actions: list[str], resource: str | list[str], condition: dict | None = None) -> dict:
    """One Allow statement."""
    found: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        found["Condition"] = condition
    return found


def check_account(account: str) -> None:
    """:class:`UsageError` unless *account* is an AWS account id."""
    if not _ACCOUNT.match(account):
        raise UsageError(f"--accounts {account!r}: not an AWS account id (12 digits)")


def kms_statement(sid: str, actions: list[str], keys: tuple[str, ...]) -> dict:
    for key in keys:
        if not _KMS_KEY.match(key):
            raise UsageError(f"--kms-key {key!r}: expected a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")
    # Only through S3: the key cannot be used directly with these credentials.
    return statement(sid, actions, list(keys), {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}})


def _iam_inventory(arn: str) -> list[dict]:
    return [
        statement(
            "ReadRolesAndTheirPolicies",
            ["iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"],
            f"{arn}:iam::*:role/*",
        ),
        # Attached managed policies and permissions boundaries, customer and AWS managed.
        statement("ReadManagedPolicies", ["iam:GetPolicy", "iam:GetPolicyVersion"], f"{arn}:iam::*:policy/*"),
        statement("ListOidcProviders", ["iam:ListOpenIDConnectProviders"], "*"),
        statement("ReadOidcProviders", ["iam:GetOpenIDConnectProvider"], f"{arn}:iam::*:oidc-provider/*"),
    ]


def _policy_layers(arn: str, buckets: tuple[str, ...], notes: list[str]) -> list[dict]:
    """The layers beyond the roles' own, read only for what the failures name (trailscan.layers), and
    AWS's own evaluation of a refusal (trailscan.troubleshooter).  Bucket policies only of the
    buckets named: no statement reaches every bucket."""
    names = [split_s3(bucket, "", option="--policy-buckets")[0] for bucket in dict.fromkeys(buckets)]
    if not names:
        notes.append("bucket policies: add --policy-buckets NAME,… for the buckets your workloads use; without "
                     "s3:GetBucketPolicy on a bucket, trailscan names its policy as not read")
    return [
        *([statement("ReadBucketPolicies", ["s3:GetBucketPolicy"], [f"{arn}:s3:::{name}" for name in names])]
          if names else []),
        statement("ReadKeyPolicies", ["kms:GetKeyPolicy"], f"{arn}:kms:*:*:key/*"),
        statement("ReadQueuePolicies", ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"], f"{arn}:sqs:*:*:*"),
        statement("ReadTopicPolicies", ["sns:GetTopicAttributes"], f"{arn}:sns:*:*:*"),
        statement("ReadSecretPolicies", ["secretsmanager:GetResourcePolicy"], f"{arn}:secretsmanager:*:*:secret:*"),
        statement("ReadRepositoryPolicies", ["ecr:GetRepositoryPolicy"], f"{arn}:ecr:*:*:repository/*"),
        statement("ReadFunctionPolicies", ["lambda:GetPolicy"], f"{arn}:lambda:*:*:function:*"),
        # No resource-level permissions for these (Service Authorization Reference).
        statement("ReadVpcEndpointPolicies", ["ec2:DescribeVpcEndpoints"], "*"),
        statement("ReadOrganization", ["organizations:DescribeOrganization", "organizations:ListRoots"], "*"),
        statement("ReadOrganizationPaths", ["organizations:ListParents", "organizations:ListPoliciesForTarget"], [
            f"{arn}:organizations::*:account/o-*/*", f"{arn}:organizations::*:ou/o-*/ou-*",
            f"{arn}:organizations::*:root/o-*/r-*"]),
        statement("ReadOrganizationPolicies", ["organizations:DescribePolicy"], [
            f"{arn}:organizations::*:policy/o-*/service_control_policy/p-*",
            f"{arn}:organizations::*:policy/o-*/resource_control_policy/p-*",
            f"{arn}:organizations::aws:policy/service_control_policy/p-*",
            f"{arn}:organizations::aws:policy/resource_control_policy/p-*"]),
        statement("ReadAccessTroubleshooter", ["iam:GetRequestAuthorizationDetails"], "*"),
    ]


def _eks_inventory(clusters: tuple[str, ...], arn: str) -> list[dict]:
    cluster_arns, nodegroups, associations = [], [], []
    for value in dict.fromkeys(clusters):
        match = _CLUSTER_ARN.match(value)
        if match:
            partition, region, account, name = match.groups()
            base = f"arn:{partition}:eks:{region}:{account}"
        elif _CLUSTER.match(value):
            name, base = value, f"{arn}:eks:*:*"
        else:
            raise UsageError(f"--cluster {value!r}: not an EKS cluster name or ARN")
        cluster_arns.append(f"{base}:cluster/{name}")
        nodegroups.append(f"{base}:nodegroup/{name}/*/*")
        associations.append(f"{base}:podidentityassociation/{name}/*")
    return [
        statement(
            "DescribeClusters",
            ["eks:DescribeCluster", "eks:ListNodegroups", "eks:ListPodIdentityAssociations"],
            cluster_arns,
        ),
        statement("DescribeNodeGroups", ["eks:DescribeNodegroup"], nodegroups),
        statement("DescribePodIdentityAssociations", ["eks:DescribePodIdentityAssociation"], associations),
    ]


def _report(destination: str, kms_keys: tuple[str, ...], arn: str, notes: list[str]) -> list[dict]:
    if not destination.lower().startswith("s3:"):
        notes.append(f"the report goes to the local folder {destination}: no AWS permission needed for it")
        return []
    bucket, prefix = split_s3(destination, "", option="--report-to")
    assert bucket is not None
    key = f"{prefix.strip('/')}/*" if prefix.strip("/") else "*"
    statements = [statement("WriteReports", ["s3:PutObject"], f"{arn}:s3:::{bucket}/{key}")]
    if kms_keys:
        statements.append(kms_statement("EncryptReports", ["kms:GenerateDataKey"], kms_keys))
    else:
        notes.append("if the report bucket uses SSE-KMS, pass --report-kms-key ARN to add kms:GenerateDataKey")
    return statements


def split_s3(value: str | None, prefix: str, *, option: str) -> tuple[str | None, str]:
    """``bucket`` or ``s3://bucket/prefix`` → ``(bucket, prefix)``."""
    if value is None:
        return None, prefix
    text = value.strip()
    if text.lower().startswith("s3://"):
        name, _, path = text[len("s3://"):].partition("/")
        if path.strip("/") and prefix.strip("/"):
            raise UsageError(f"{option} {value} already holds a prefix; drop --prefix {prefix}")
        text, prefix = name, path or prefix
    if not _BUCKET.match(text):
        raise UsageError(f"{option} {value!r}: not an S3 bucket name or s3://BUCKET/PREFIX")
    if any(part in (".", "..") for part in prefix.split("/")):
        raise UsageError(f"{option} {value!r}: the prefix may not hold '.' or '..' segments")
    return text, prefix


__all__ = ["BUCKET_PLACEHOLDER", "PolicyRequest", "RequiredPolicy", "athena_statements", "check_account",
           "doctor_policy", "kms_statement", "required_policy", "split_s3", "statement"]
