"""Denied calls judged against every policy layer (issue 18): per layer, and the interplays.

Each case writes the CloudTrail records AWS writes (trailscan.generate's builders, a real
DuckDB store), the inventory as `get-account-authorization-details` shows the roles, and the
other layers as the AWS CLI prints them (`--policies` files); then explains through the same
collect → explain path the CLI runs. The expectations follow AWS's documentation:

* EVAL — IAM User Guide, "Policy evaluation logic" / "…within a single account": an explicit deny
  in any layer wins; otherwise identity policies (within boundary and session policies) or the
  resource policy must allow;
* CROSS — "Cross-account policy evaluation logic": both sides must allow;
* KMS — AWS KMS, "Key policies": without a key policy that allows the caller or delegates to the
  account, identity policies do not count;
* SCP — AWS Organizations, "SCP evaluation" (the Deny-outside-these-regions example);
* VARIABLES — "IAM policy elements: Variables and tags" (${aws:PrincipalTag/…}) and EKS Pod Identity's
  session tags ("Grant pods access to AWS resources based on tags");
* KEYS — "AWS global condition context keys": aws:SourceIp is absent for requests through a VPC
  endpoint; aws:RequestedRegion is the request's region;
* SESSION — "Session policies": a session gets the intersection of its role's and its session policies.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.test_layers import MGMT, ORG, OU, organization_files, write
from trailscan.explain import collect_failures, explain_failures
from trailscan.generate import RoleSession, access_key_id, api_call, iso
from trailscan.inventory import Inventory, authorization_details_inventory
from trailscan.kube import ServiceAccount
from trailscan.layers import load_policy_file
from trailscan.model import Window
from trailscan.store import Store

PROD, PARTNER = "111122223333", "444455556666"
REGION = "eu-west-1"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=24), NOW)
EC2_SILENT = "You are not authorized to perform this operation."
S3_SILENT = "Access Denied"
KMS_SILENT = ("The ciphertext refers to a customer master key that does not exist, does not exist in this region, or "
              "you are not allowed to access.")
SQS_SILENT = "Access to the resource https://sqs.eu-west-1.amazonaws.com/ is denied."
KEY = f"arn:aws:kms:{REGION}:{PROD}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARTNER_QUEUE = f"arn:aws:sqs:{REGION}:{PARTNER}:partner-orders"


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{PROD}:role/{name}"


class Trail:
    """A pod's sessions and their refused calls, in a real store, explained with an inventory."""

    def __init__(self) -> None:
        self.rng = random.Random(18)
        self.records: list[dict] = []
        self.roles: list[dict] = []

    def role(self, name: str, *policies: dict, tags: dict | None = None) -> str:
        self.roles.append({
            "Arn": role_arn(name), "RoleName": name, "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
            "AssumeRolePolicyDocument": doc({"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                                             "Action": ["sts:AssumeRole", "sts:TagSession"]}),
            "RolePolicyList": [{"PolicyName": f"policy-{i}", "PolicyDocument": p} for i, p in enumerate(policies)],
            "AttachedManagedPolicies": [],
        })
        return role_arn(name)

    def pod_session(self, name: str, *, namespace: str = "payments", sa: str = "api", issued: bool = True,
                    policy: dict | None = None) -> RoleSession:
        """A session EKS Pod Identity issued for a pod (or, with *policy*, one assumed with a session policy)."""
        session = RoleSession(PROD, name, f"eks-prod-{sa}-7f9c", access_key_id(self.rng))
        if not issued:
            return session
        tags = [{"key": "eks-cluster-name", "value": "prod"}, {"key": "kubernetes-namespace", "value": namespace},
                {"key": "kubernetes-service-account", "value": sa}, {"key": "kubernetes-pod-name", "value": f"{sa}-1"}]
        parameters: dict = {"roleArn": role_arn(name), "roleSessionName": session.session_name, "tags": tags}
        if policy is not None:
            parameters["policy"] = json.dumps(policy)
        record = api_call(
            self.rng, when=NOW - timedelta(hours=2), region=REGION, account=PROD,
            identity={"type": "AWSService", "invokedBy": "pods.eks.amazonaws.com"},
            event_source="sts.amazonaws.com", event_name="AssumeRole", user_agent="pods.eks.amazonaws.com",
            request_parameters=parameters,
            response_elements={"credentials": {"accessKeyId": session.access_key_id, "sessionToken": "x",
                                               "expiration": "Nov 28, 2026, 10:00:00 AM"},
                               "assumedRoleUser": {"arn": session.arn, "assumedRoleId": f"AROAEXAMPLE:{session.session_name}"}},
        )
        record["sourceIPAddress"] = "pods.eks.amazonaws.com"
        self.records.append(record)
        return session

    def refused(self, session: RoleSession, source: str, name: str, message: str, *, code: str = "AccessDenied",
                count: int = 2, region: str | None = REGION, request: dict | None = None, resources: list | None = None,
                vpce: str | None = None, regions: tuple[str, ...] = ()) -> None:
        for index in range(count):
            when = NOW - timedelta(minutes=40 + index)  # room for a change after them, and a quiet spell
            record = api_call(self.rng, when=when, region=(regions[index % len(regions)] if regions else region) or REGION,
                              account=PROD, identity=session.user_identity(when - timedelta(hours=1)),
                              event_source=source, event_name=name, error_code=code, error_message=message,
                              request_parameters=request, resources=resources)
            if region is None and not regions:
                del record["awsRegion"]
            if vpce:
                record["vpcEndpointId"] = vpce
                record["sourceIPAddress"] = "10.0.12.34"
            self.records.append(record)

    def explain(self, *layers: str, extra: Inventory | None = None):
        inventory = authorization_details_inventory({"RoleDetailList": self.roles, "Policies": []}, source="iam.json")
        inventory = inventory.with_service_accounts([ServiceAccount("prod", "payments", "api")])
        parts = [Inventory(layers=load_policy_file(value)) for value in layers]
        inventory = inventory.merge(*parts, *([extra] if extra else []))
        with Store.open(":memory:") as store:
            store.ingest_documents([orjson.dumps({"Records": self.records})], origin="test")
            return explain_failures(collect_failures(store, WINDOW), inventory)


def denied(report) -> dict:
    [finding] = [f for f in report.findings if f.kind == "denied_call"]
    return finding


# -- SCP: the region guardrail of the issue (SCP, KEYS) ------------------------------------------------------

READ_VOLUMES = doc({"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"})


def test_region_guardrail_on_an_allowed_region_with_a_missing_permission_is_the_missing_permission(tmp_path):
    """Error (a): in eu-west-1 the guard's StringNotEquals does not hold; the role lacks the action."""
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "MISSING_PERMISSION", finding.explanation
    assert "No identity-based policy of the role app" in finding.explanation
    assert "the SCPs of account 111122223333 (read)" in finding.explanation
    assert '"Action": "ec2:DescribeVolumes"' in finding.fix and "aws iam put-role-policy --role-name app" in finding.fix


def test_region_guardrail_outside_the_allowed_region_is_the_scps_explicit_deny(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", region="us-east-1")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "a service control policy explicitly denies it" in finding.explanation
    assert "statement #0 (Sid 'DenyOutsideEuWest1')" in finding.explanation
    assert f"attached to the OU {OU}" in finding.explanation
    assert "(the request's aws:RequestedRegion is us-east-1)" in finding.explanation
    # The fix is written in the SCP: the guard holds nothing but the Deny, so it is detached where
    # it is attached (a policy needs a statement), from the management account.
    assert f"aws organizations detach-policy --policy-id p-guard --target-id {OU}" in finding.fix


def test_an_scp_deny_beside_other_statements_is_fixed_by_the_whole_document_without_it(tmp_path):
    files = organization_files(tmp_path)
    guard = json.loads(Path(files[-1]).read_text())
    content = json.loads(guard["Policy"]["Content"])
    content["Statement"].append({"Sid": "NoLeaving", "Effect": "Deny", "Action": "organizations:LeaveOrganization",
                                 "Resource": "*"})
    guard["Policy"]["Content"] = json.dumps(content)
    Path(files[-1]).write_text(json.dumps(guard))
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", region="us-east-1")
    finding = denied(trail.explain(*files))
    script = finding.fix.partition("\n\n")[2]
    assert "aws organizations update-policy --policy-id p-guard --content file://organization-policy.json" in script
    assert '"Sid": "NoLeaving"' in script and "DenyOutsideEuWest1" not in script.split("<<'EOF'")[1]


def test_region_guardrail_with_the_region_unknown_is_unexplained_naming_the_key(tmp_path):
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", region=None)
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert "aws:RequestedRegion" in finding.explanation
    assert "no identity-based policy of the role allows ec2:describevolumes" in finding.explanation.lower()
    assert "Whether a service control policy refuses it depends on aws:RequestedRegion" in finding.explanation


def test_a_group_over_two_regions_takes_the_first_cause_that_holds_and_names_the_other(tmp_path):
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", count=4, regions=("eu-west-1", "us-east-1"))
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert finding.explanation.startswith("With aws:RequestedRegion=us-east-1")
    assert "aws:RequestedRegion=eu-west-1: MISSING_PERMISSION" in finding.explanation


def test_the_scps_not_read_are_named_never_taken_as_allowing():
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    finding = denied(trail.explain())
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert "the SCPs of account 111122223333: the organization path of account 111122223333 not read" in finding.explanation
    assert "aws organizations list-parents --child-id 111122223333 > layer-1.json 2>&1" in finding.fix
    assert "--policies 111122223333=layer-1.json" in finding.fix


def test_aws_messages_explicit_scp_deny_is_named_by_statement(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
    session = trail.pod_session("app")
    trail.refused(session, "ec2.amazonaws.com", "DescribeVolumes", code="Client.UnauthorizedOperation",
                  region="us-east-1", message=f"User: {session.arn} is not authorized to perform: ec2:DescribeVolumes "
                                              "with an explicit deny in a service control policy")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY"
    assert "It is region-guard" in finding.explanation and "(Sid 'DenyOutsideEuWest1')" in finding.explanation


# -- Pod Identity ABAC on the session tags (VARIABLES) ---------------------------------------------------

ABAC = doc({"Sid": "OwnNamespaceOnly", "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::team-data/${aws:PrincipalTag/kubernetes-namespace}/*"})
OBJECT = "arn:aws:s3:::team-data/payments/report.csv"
OBJECT_RESOURCES = [{"type": "AWS::S3::Object", "ARN": OBJECT},
                    {"accountId": PROD, "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::team-data"}]
VPCE_ONLY = doc({"Sid": "OnlyThroughTheEndpoint", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": ["arn:aws:s3:::team-data", "arn:aws:s3:::team-data/*"],
                 "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-0a1b2c3d"}}},
                {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": "arn:aws:s3:::team-data/*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})


def abac_trail(namespace: str) -> Trail:
    trail = Trail()
    trail.role("app", ABAC)
    session = trail.pod_session("app", namespace=namespace)
    trail.refused(session, "s3.amazonaws.com", "GetObject", S3_SILENT, resources=OBJECT_RESOURCES,
                  request={"bucketName": "team-data", "key": "payments/report.csv"})
    return trail


def test_pod_identity_abac_with_the_session_tags_allows_so_the_refusal_is_elsewhere(tmp_path):
    """Error (b): the identity policy allows payments/… to a payments pod; the bucket policy refuses."""
    bucket = "arn:aws:s3:::team-data=" + write(tmp_path, "bucket.json", {"Policy": json.dumps(VPCE_ONLY)})
    finding = denied(abac_trail("payments").explain(bucket, *organization_files(tmp_path)))
    assert finding.cause == "RESOURCE_POLICY_DENY", finding.explanation
    assert "the bucket policy of arn:aws:s3:::team-data explicitly denies it" in finding.explanation
    assert "(Sid 'OnlyThroughTheEndpoint')" in finding.explanation
    assert "aws s3api put-bucket-policy --bucket team-data --policy file://bucket-policy.json" in finding.fix


def test_pod_identity_abac_never_a_false_missing_permission_when_the_bucket_policy_is_unread(tmp_path):
    finding = denied(abac_trail("payments").explain(*organization_files(tmp_path)))
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert "the role's identity policies allow s3:getobject" in finding.explanation.lower()
    assert "the bucket policy of arn:aws:s3:::team-data: not read" in finding.explanation
    assert "aws s3api get-bucket-policy --bucket team-data > layer-1.json 2>&1" in finding.fix


def test_pod_identity_abac_for_another_namespace_is_the_missing_permission(tmp_path):
    no_policy = write(tmp_path, "b.txt", "An error occurred (NoSuchBucketPolicy) when calling the GetBucketPolicy "
                                         "operation: The bucket policy does not exist")
    finding = denied(abac_trail("web").explain(f"arn:aws:s3:::team-data={no_policy}", *organization_files(tmp_path)))
    assert finding.cause == "MISSING_PERMISSION", finding.explanation


# -- cross-account: a grant on one side only (CROSS) ------------------------------------------------------

SEND = doc({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": PARTNER_QUEUE})


def queue_trail(*policies: dict) -> Trail:
    trail = Trail()
    trail.role("app", *policies)
    trail.refused(trail.pod_session("app"), "sqs.amazonaws.com", "SendMessage", SQS_SILENT,
                  request={"queueUrl": f"https://sqs.{REGION}.amazonaws.com/{PARTNER}/partner-orders"})
    return trail


def queue_file(tmp_path: Path, *statements: dict) -> str:
    return write(tmp_path, "queue.json", {"Attributes": {"QueueArn": PARTNER_QUEUE, "Policy": json.dumps(doc(*statements))}})


def partner_not_in_org(tmp_path: Path) -> str:
    return f"{PARTNER}=" + write(tmp_path, "partner-org.txt", "An error occurred (AWSOrganizationsNotInUseException) "
                                 "when calling the DescribeOrganization operation: not a member")


def test_cross_account_identity_allows_but_the_queue_policy_does_not(tmp_path):
    finding = denied(queue_trail(SEND).explain(queue_file(tmp_path, {
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PARTNER}:root"}, "Action": "sqs:*",
        "Resource": PARTNER_QUEUE}), partner_not_in_org(tmp_path), *organization_files(tmp_path)))
    assert finding.cause == "RESOURCE_POLICY_DENY", finding.explanation
    assert "crosses accounts" in finding.explanation and "its own policies allow it" in finding.explanation
    assert '\\"AWS\\": \\"arn:aws:iam::111122223333:role/app\\"' in finding.fix  # the policy, inside the attribute
    assert "aws sqs set-queue-attributes" in finding.fix


def test_cross_account_queue_policy_grants_but_the_identity_side_does_not(tmp_path):
    finding = denied(queue_trail(READ_VOLUMES).explain(queue_file(tmp_path, {
        "Effect": "Allow", "Principal": {"AWS": role_arn("app")}, "Action": "sqs:SendMessage",
        "Resource": PARTNER_QUEUE}), partner_not_in_org(tmp_path), *organization_files(tmp_path)))
    assert finding.cause == "MISSING_PERMISSION", finding.explanation


# -- KMS: a key policy that does not delegate to IAM (KMS) --------------------------------------------------

DECRYPT = doc({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY})


def kms_trail() -> Trail:
    trail = Trail()
    trail.role("app", DECRYPT)
    trail.refused(trail.pod_session("app"), "kms.amazonaws.com", "Decrypt", KMS_SILENT, code="AccessDeniedException",
                  resources=[{"accountId": PROD, "type": "AWS::KMS::Key", "ARN": KEY}],
                  request={"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": {"app": "payments"}})
    return trail


def test_a_key_policy_that_does_not_delegate_to_iam_refuses_whatever_the_role_allows(tmp_path):
    key_policy = doc({"Sid": "KeyAdmins", "Effect": "Allow", "Principal": {"AWS": role_arn("key-admin")},
                      "Action": "kms:*", "Resource": "*"})
    key = f"{KEY}=" + write(tmp_path, "key.json", {"Policy": json.dumps(key_policy), "PolicyName": "default"})
    finding = denied(kms_trail().explain(key, *organization_files(tmp_path)))
    assert finding.cause == "RESOURCE_POLICY_DENY", finding.explanation
    assert "neither allows" in finding.explanation and "nor delegates to IAM" in finding.explanation
    assert f"aws kms put-key-policy --key-id {KEY} --policy-name default --policy file://key-policy.json" in finding.fix
    assert '"Sid": "KeyAdmins"' in finding.fix  # the whole key policy, its statements kept


def test_a_key_policy_that_delegates_leaves_it_to_the_role(tmp_path):
    key_policy = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*",
                      "Resource": "*"})
    key = f"{KEY}=" + write(tmp_path, "key.json", {"Policy": json.dumps(key_policy)})
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "kms.amazonaws.com", "Decrypt", KMS_SILENT, code="AccessDeniedException",
                  resources=[{"accountId": PROD, "type": "AWS::KMS::Key", "ARN": KEY}])
    assert denied(trail.explain(key, *organization_files(tmp_path))).cause == "MISSING_PERMISSION"


def test_the_encryption_context_is_a_condition_key_from_the_request(tmp_path):
    key_policy = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*",
                      "Resource": "*"})
    key = f"{KEY}=" + write(tmp_path, "key.json", {"Policy": json.dumps(key_policy)})
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY,
                           "Condition": {"StringEquals": {"kms:EncryptionContext:app": "orders"}}}))
    trail.refused(trail.pod_session("app"), "kms.amazonaws.com", "Decrypt", KMS_SILENT, code="AccessDeniedException",
                  resources=[{"accountId": PROD, "type": "AWS::KMS::Key", "ARN": KEY}],
                  request={"encryptionContext": {"app": "payments"}})
    assert denied(trail.explain(key, *organization_files(tmp_path))).cause == "MISSING_PERMISSION"


# -- identity, endpoint and session layers (EVAL, KEYS, SESSION) ---------------------------------------------

def test_an_explicit_deny_in_an_identity_policy_names_its_statement_and_is_fixed_there(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}),
               doc({"Sid": "NoSnapshots", "Effect": "Deny", "Action": "ec2:DescribeSnapshots", "Resource": "*"},
                   {"Sid": "NoIam", "Effect": "Deny", "Action": "iam:*", "Resource": "*"}))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeSnapshots", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "the inline policy policy-1 of app statement #0 (Sid 'NoSnapshots')" in finding.explanation
    assert "aws iam put-role-policy --role-name app --policy-name policy-1" in finding.fix
    script = finding.fix.partition("\n\n")[2]
    assert '"Sid": "NoIam"' in script and '"Sid": "NoSnapshots"' not in script  # the deciding statement removed


def test_a_deny_that_is_all_its_policy_holds_is_detached_not_emptied(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}),
               doc({"Sid": "NoSnapshots", "Effect": "Deny", "Action": "ec2:DescribeSnapshots", "Resource": "*"}))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeSnapshots", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert "aws iam delete-role-policy --role-name app --policy-name policy-1" in finding.fix


def test_source_ip_is_absent_through_a_vpc_endpoint_so_a_not_ip_deny_holds(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
               doc({"Sid": "OfficeOnly", "Effect": "Deny", "Action": "*", "Resource": "*",
                    "Condition": {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}}))
    trail.refused(trail.pod_session("app"), "s3.amazonaws.com", "GetObject", S3_SILENT, vpce="vpce-0a1b2c3d",
                  resources=OBJECT_RESOURCES)
    endpoints = write(tmp_path, "vpce.json", {"VpcEndpoints": [{"VpcEndpointId": "vpce-0a1b2c3d", "PolicyDocument": json.dumps(
        doc({"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}))}]})
    no_policy = write(tmp_path, "b.txt", "An error occurred (NoSuchBucketPolicy) when calling the GetBucketPolicy operation")
    finding = denied(trail.explain(endpoints, f"arn:aws:s3:::team-data={no_policy}", *organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "(Sid 'OfficeOnly')" in finding.explanation


def test_a_vpc_endpoint_policy_that_does_not_allow_is_the_endpoints(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))
    trail.refused(trail.pod_session("app"), "s3.amazonaws.com", "GetObject", S3_SILENT, vpce="vpce-0a1b2c3d",
                  resources=OBJECT_RESOURCES)
    endpoints = write(tmp_path, "vpce.json", {"VpcEndpoints": [{"VpcEndpointId": "vpce-0a1b2c3d", "PolicyDocument": json.dumps(
        doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}))}]})
    no_policy = write(tmp_path, "b.txt", "An error occurred (NoSuchBucketPolicy) when calling the GetBucketPolicy operation")
    finding = denied(trail.explain(endpoints, f"arn:aws:s3:::team-data={no_policy}", *organization_files(tmp_path)))
    assert finding.cause == "RESOURCE_POLICY_DENY", finding.explanation
    assert "the policy of VPC endpoint vpce-0a1b2c3d does not allow s3:GetObject" in finding.explanation
    assert "aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-0a1b2c3d" in finding.fix


def test_a_session_policy_that_does_not_allow_refuses_what_the_role_allows(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
    session = trail.pod_session("app", policy=doc({"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}))
    trail.refused(session, "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT, code="Client.UnauthorizedOperation")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "the session policy does not allow it" in finding.explanation


def test_a_session_whose_issuing_call_is_not_in_the_store_leaves_its_policies_unread(tmp_path):
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}))
    trail.refused(trail.pod_session("app", issued=False), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    report = trail.explain(*organization_files(tmp_path))
    finding = denied(report)
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert "the STS call that issued them is not in the store" in finding.explanation
    assert finding.workload.resolution in ("by_role", "unknown")


def test_an_scp_level_without_an_allow_is_an_explicit_deny_of_the_organization(tmp_path):
    files = [f for f in organization_files(tmp_path, guard=False) if "scps-ou" not in f]
    files.append(f"{OU}=" + write(tmp_path, "ou-scps.json", {"Policies": [
        {"Id": "p-ec2only", "Arn": f"arn:aws:organizations::{MGMT}:policy/{ORG}/service_control_policy/p-ec2only",
         "Name": "ec2-only", "Type": "SERVICE_CONTROL_POLICY"}]}))
    files.append(write(tmp_path, "ec2only.json", {"Policy": {"PolicySummary": {
        "Id": "p-ec2only", "Arn": f"arn:aws:organizations::{MGMT}:policy/{ORG}/service_control_policy/p-ec2only",
        "Name": "ec2-only", "Type": "SERVICE_CONTROL_POLICY"}, "Content": json.dumps(doc(
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))}}))
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "*", "Resource": "*"}))
    trail.refused(trail.pod_session("app"), "sqs.amazonaws.com", "SendMessage", SQS_SILENT,
                  request={"queueUrl": f"https://sqs.{REGION}.amazonaws.com/{PROD}/orders"})
    queue = write(tmp_path, "q.json", {"Attributes": {"QueueArn": f"arn:aws:sqs:{REGION}:{PROD}:orders"}})
    finding = denied(trail.explain(queue, *files))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert f"no service control policy attached to the OU {OU} allows it" in finding.explanation
    assert f"aws organizations attach-policy --policy-id p-FullAWSAccess --target-id {OU}" in finding.fix


@pytest.mark.parametrize("when", [iso(NOW)])
def test_every_fix_is_prose_then_a_script(tmp_path, when):
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", region="us-east-1")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    summary, blank, script = finding.fix.partition("\n\n")
    assert summary and blank and "\n" not in summary
    assert all(line.startswith(("#", "aws ", "cat ", "{", "}", " ", "]", "EOF")) or not line for line in script.splitlines())


def test_names_from_cloudtrail_are_quoted_in_the_commands_that_read_a_layer(tmp_path):
    """A bucket name comes from a caller's request: the read command quotes it for the shell."""
    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))
    hostile = "arn:aws:s3:::x$(touch pwned);y/k"
    trail.refused(trail.pod_session("app"), "s3.amazonaws.com", "GetObject", S3_SILENT,
                  resources=[{"type": "AWS::S3::Object", "ARN": hostile}])
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "UNEXPLAINED"
    assert "aws s3api get-bucket-policy --bucket 'x$(touch pwned);y' > layer-1.json" in finding.fix
    assert "--policies 'arn:aws:s3:::x$(touch pwned);y=layer-1.json'" in finding.fix


@pytest.mark.parametrize("resources,request_parameters", [
    ([{"ARN": "arn:"}, {"ARN": "arn:x"}, {"ARN": 7}, "not an object"], ["a", "list"]),
    ("resources as a string", {"queueUrl": "https://x", "keyId": "arn:kms", "bucketName": 5, "encryptionContext": [1]}),
    ([{"ARN": "arn:aws:s3:::b"}], {"prefix": {"nested": True}, "encryptionContext": {"k": {"deep": 1}}}),
])
def test_records_of_any_shape_are_judged_without_error(tmp_path, resources, request_parameters):
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    session = trail.pod_session("app")
    for source, name in (("s3.amazonaws.com", "ListObjects"), ("kms.amazonaws.com", "Decrypt"),
                         ("sqs.amazonaws.com", "SendMessage")):
        trail.refused(session, source, name, S3_SILENT, resources=resources, request=request_parameters, vpce="vpce-1")
    report = trail.explain(*organization_files(tmp_path))
    assert {f.kind for f in report.findings} == {"denied_call"}
