"""trailscan.layers: the policy layers beyond a role's own, offline (`--policies`) and live (moto).

Offline, each file is the plain output of the AWS CLI command that shows a layer, recognised by
its shape; live, only the resources, endpoints and accounts the failures name are read, through
boto3 against moto in server mode, and a refused read is a gap that names the call.

What a lookup answers follows AWS's documentation:

* ORGS — AWS Organizations, "SCP evaluation" / "RCP evaluation": every level from the root down
  to the account must allow; SCPs "don't affect users or roles in the management account", RCPs
  "don't affect resources in the management account"; while a type is enabled every root, OU and
  account has at least one policy of it attached (FullAWSAccess, RCPFullAWSAccess);
* RBP — IAM User Guide, "AWS services that work with IAM": which services have resource-based
  policies (EC2's actions have none).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trailscan.errors import InputError
from trailscan.layers import (
    NONE,
    RCP,
    READ,
    SCP,
    UNREAD,
    LayerWants,
    PolicyLayers,
    load_layers_live,
    load_policy_file,
    resource_kind,
    split_policies_option,
)

MGMT, PROD = "999988887777", "111122223333"
ORG = "o-a1b2c3d4e5"
ROOT = "r-ab12"
OU = "ou-ab12-11111111"
BUCKET = "arn:aws:s3:::payments-data"
KEY = f"arn:aws:kms:eu-west-1:{PROD}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
QUEUE = f"arn:aws:sqs:eu-west-1:{PROD}:orders"
FULL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
GUARD = {"Version": "2012-10-17", "Statement": [{
    "Sid": "DenyOutsideEuWest1", "Effect": "Deny", "NotAction": ["iam:*", "sts:*"], "Resource": "*",
    "Condition": {"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}}]}


def write(folder: Path, name: str, content) -> str:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def policy_summary(policy_id: str, name: str, kind: str = SCP) -> dict:
    folder = "service_control_policy" if kind == SCP else "resource_control_policy"
    return {"Id": policy_id, "Arn": f"arn:aws:organizations::{MGMT}:policy/{ORG}/{folder}/{policy_id}",
            "Name": name, "Type": kind, "AwsManaged": policy_id == "p-FullAWSAccess"}


def organization_files(folder: Path, *, guard: bool = True, rcp: bool = False) -> list[str]:
    """What `aws organizations …` prints for account PROD under OU under the root, saved as files."""
    enabled = [{"Type": SCP, "Status": "ENABLED"}] + ([{"Type": RCP, "Status": "ENABLED"}] if rcp else [])
    files = [
        write(folder, "org.json", {"Organization": {"Id": ORG, "MasterAccountId": MGMT, "FeatureSet": "ALL",
                                                    "Arn": f"arn:aws:organizations::{MGMT}:organization/{ORG}"}}),
        write(folder, "roots.json", {"Roots": [{"Id": ROOT, "Arn": f"arn:aws:organizations::{MGMT}:root/{ORG}/{ROOT}",
                                                "Name": "Root", "PolicyTypes": enabled}]}),
        f"{PROD}=" + write(folder, "parents-prod.json", {"Parents": [{"Id": OU, "Type": "ORGANIZATIONAL_UNIT"}]}),
        f"{OU}=" + write(folder, "parents-ou.json", {"Parents": [{"Id": ROOT, "Type": "ROOT"}]}),
        f"{ROOT}=" + write(folder, "scps-root.json", {"Policies": [policy_summary("p-FullAWSAccess", "FullAWSAccess")]}),
        f"{OU}=" + write(folder, "scps-ou.json", {"Policies": [policy_summary("p-FullAWSAccess", "FullAWSAccess")]
                                                  + ([policy_summary("p-guard", "region-guard")] if guard else [])}),
        f"{PROD}=" + write(folder, "scps-prod.json", {"Policies": [policy_summary("p-FullAWSAccess", "FullAWSAccess")]}),
        write(folder, "full.json", {"Policy": {"PolicySummary": policy_summary("p-FullAWSAccess", "FullAWSAccess"),
                                               "Content": json.dumps(FULL)}}),
        write(folder, "guard.json", {"Policy": {"PolicySummary": policy_summary("p-guard", "region-guard"),
                                                "Content": json.dumps(GUARD)}}),
    ]
    return files


def load(*values: str) -> PolicyLayers:
    parts = [load_policy_file(value) for value in values]
    return parts[0].merge(*parts[1:])


# -- the option ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("policy.json", ("", "policy.json")),
    (f"{BUCKET}=bucket.json", (BUCKET, "bucket.json")),
    (f"{PROD}=dir=with/equals.json", (PROD, "dir=with/equals.json")),
])
def test_the_option_takes_a_name_before_the_file(value, expected):
    assert split_policies_option(value) == expected


# -- resources --------------------------------------------------------------------------------------------


def test_bucket_policy_from_get_bucket_policy(tmp_path):
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                                        "Resource": f"{BUCKET}/*"}]}
    layers = load(f"{BUCKET}=" + write(tmp_path, "b.json", {"Policy": json.dumps(document)}))
    found = layers.resource_policy(f"{BUCKET}/invoices/1.pdf", "s3:GetObject")
    assert found.state == READ and found.holder == f"the bucket policy of {BUCKET}"
    assert found.documents[0].document == document


def test_output_that_does_not_say_whose_needs_a_name(tmp_path):
    path = write(tmp_path, "b.json", {"Policy": json.dumps(FULL)})
    with pytest.raises(InputError, match=f"--policies .*={path}"):
        load_policy_file(path)


def test_key_policy_queue_topic_secret_repository(tmp_path):
    topic = f"arn:aws:sns:eu-west-1:{PROD}:alerts"
    secret = f"arn:aws:secretsmanager:eu-west-1:{PROD}:secret:db-AbCdEf"
    layers = load(
        f"{KEY}=" + write(tmp_path, "key.json", {"Policy": json.dumps(FULL), "PolicyName": "default"}),
        write(tmp_path, "queue.json", {"Attributes": {"Policy": json.dumps(FULL), "QueueArn": QUEUE}}),
        write(tmp_path, "topic.json", {"Attributes": {"Policy": json.dumps(FULL), "TopicArn": topic, "Owner": PROD}}),
        write(tmp_path, "secret.json", {"ARN": secret, "Name": "db"}),
        write(tmp_path, "repo.json", {"registryId": PROD, "repositoryName": "api", "policyText": json.dumps(FULL)}),
    )
    assert layers.resource_policy(KEY, "kms:Decrypt").state == READ
    assert layers.resource_policy(QUEUE, "sqs:SendMessage").state == READ
    assert layers.resource_policy(topic, "sns:Publish").state == READ
    # get-resource-policy without ResourcePolicy: AWS says the secret has none.
    assert layers.resource_policy(secret, "secretsmanager:GetSecretValue").state == NONE
    # A repository's output names no region: it stands for the repository in any region.
    assert layers.resource_policy(f"arn:aws:ecr:us-east-1:{PROD}:repository/api", "ecr:BatchGetImage").state == READ


def test_a_cli_error_saved_with_the_output_is_aws_answer(tmp_path):
    no_policy = write(tmp_path, "b.txt", "\nAn error occurred (NoSuchBucketPolicy) when calling the GetBucketPolicy "
                                         "operation: The bucket policy does not exist\n")
    refused = write(tmp_path, "k.txt", "An error occurred (AccessDeniedException) when calling the GetKeyPolicy "
                                       f"operation: User: arn:aws:iam::{PROD}:user/me is not authorized")
    layers = load(f"{BUCKET}={no_policy}", f"{KEY}={refused}")
    assert layers.resource_policy(f"{BUCKET}/x", "s3:GetObject").state == NONE
    found = layers.resource_policy(KEY, "kms:Decrypt")
    assert found.state == UNREAD and "GetKeyPolicy refused (AccessDeniedException)" in found.why


def test_services_without_resource_policies_and_resources_not_read(tmp_path):
    layers = PolicyLayers()
    assert layers.resource_policy(None, "ec2:DescribeVolumes").state == NONE
    unread = layers.resource_policy(f"{BUCKET}/k", "s3:GetObject")
    assert unread.state == UNREAD
    assert (unread.command, unread.name) == ("aws s3api get-bucket-policy --bucket payments-data", BUCKET)
    assert layers.resource_policy(f"arn:aws:dynamodb:eu-west-1:{PROD}:table/t", "dynamodb:PutItem").state == UNREAD


@pytest.mark.parametrize(("arn", "holder"), [
    (f"{BUCKET}/a/b.pdf", (BUCKET, "s3")),
    (BUCKET, (BUCKET, "s3")),
    (KEY, (KEY, "kms")),
    (f"arn:aws:kms:eu-west-1:{PROD}:alias/app", None),
    (f"arn:aws:sns:eu-west-1:{PROD}:alerts:5f8e-subscription", (f"arn:aws:sns:eu-west-1:{PROD}:alerts", "sns")),
    (f"arn:aws:ec2:eu-west-1:{PROD}:instance/i-1", None),
    ("not an arn", None),
])
def test_resource_kind(arn, holder):
    assert resource_kind(arn) == holder


def test_endpoints_from_describe_vpc_endpoints(tmp_path):
    layers = load(write(tmp_path, "vpce.json", {"VpcEndpoints": [
        {"VpcEndpointId": "vpce-0a1b", "ServiceName": "com.amazonaws.eu-west-1.s3", "PolicyDocument": json.dumps(FULL)},
        {"VpcEndpointId": "vpce-gwlb", "ServiceName": "com.amazonaws.vpce.eu-west-1.vpce-svc-1"},
    ]}))
    assert layers.endpoint_policy("vpce-0a1b").state == READ
    assert layers.endpoint_policy("vpce-9999").state == UNREAD


# -- the organization (ORGS) ------------------------------------------------------------------------------


def test_scp_levels_root_ou_account(tmp_path):
    layers = load(*organization_files(tmp_path))
    found = layers.org_levels(PROD, SCP)
    assert found.state == READ
    assert [[policy.name.split(" ")[0] for policy in level] for level in found.levels] == [
        ["FullAWSAccess"], ["FullAWSAccess", "region-guard"], ["FullAWSAccess"]]
    assert found.targets[f"region-guard (arn:aws:organizations::{MGMT}:policy/{ORG}/service_control_policy/p-guard)"] == (
        f"the OU {OU}")
    assert layers.org_of(PROD) == (ORG, f"{ORG}/{ROOT}/{OU}/")


def test_the_management_account_is_bound_by_neither(tmp_path):
    layers = load(*organization_files(tmp_path), f"{MGMT}=" + write(tmp_path, "p.json", {"Parents": [{"Id": ROOT}]}))
    assert layers.org_levels(MGMT, SCP).state == NONE
    assert "management account" in layers.org_levels(MGMT, RCP).why


def test_a_type_not_enabled_does_not_apply(tmp_path):
    layers = load(*organization_files(tmp_path))  # list-roots: only SCPs enabled
    found = layers.org_levels(PROD, RCP)
    assert found.state == NONE and "RCPs are not enabled" in found.why


def test_a_level_not_read_leaves_the_layer_unread(tmp_path):
    files = [f for f in organization_files(tmp_path) if "scps-ou" not in f]
    found = load(*files).org_levels(PROD, SCP)
    assert found.state == UNREAD
    assert found.command == f"aws organizations list-policies-for-target --target-id {OU} --filter {SCP}"
    assert found.name == OU


def test_without_the_path_nothing_is_assumed(tmp_path):
    files = [f for f in organization_files(tmp_path) if "parents-ou" not in f]
    found = load(*files).org_levels(PROD, SCP)
    assert found.state == UNREAD and found.command == f"aws organizations list-parents --child-id {OU}"
    assert PolicyLayers().org_levels(PROD, SCP).state == UNREAD


def test_an_account_in_no_organization(tmp_path):
    error = write(tmp_path, "org.txt", "An error occurred (AWSOrganizationsNotInUseException) when calling the "
                                       "DescribeOrganization operation: Your account is not a member of an organization.")
    layers = load(f"{PROD}={error}")
    assert layers.org_levels(PROD, SCP).state == NONE
    assert layers.org_levels(PROD, RCP).state == NONE
    assert layers.org_levels("444455556666", SCP).state == UNREAD


@pytest.mark.parametrize(("content", "message"), [
    ({"Parents": [{"Id": ROOT}]}, "list-parents"),
    ({"Policies": [policy_summary("p-FullAWSAccess", "FullAWSAccess")]}, "target"),
    ({"RoleDetailList": []}, "not a policy layer"),
    ({"Policies": [{"PolicyName": "x", "PolicyVersionList": []}]}, "--iam"),
    ([1, 2], "JSON object"),
])
def test_files_that_are_not_layers_are_one_line_errors(tmp_path, content, message):
    path = write(tmp_path, "x.json", content)
    with pytest.raises(InputError, match=message) as error:
        load_policy_file(path)
    assert path in str(error.value) and "\n" not in error.value.message


def test_an_unreadable_file(tmp_path):
    with pytest.raises(InputError, match="cannot read policy file"):
        load_policy_file(str(tmp_path / "absent.json"))


def test_live_reads_nothing_when_nothing_is_wanted():
    class NoSession:
        def client(self, *args, **kwargs):
            raise AssertionError("no AWS call was wanted")

    assert load_layers_live(NoSession(), LayerWants()).resources == {}


# -- live: only what the failures name, through boto3 against moto in server mode ---------------------------


@pytest.fixture(scope="module")
def moto():
    from tests.support.moto_server import MotoServer

    with MotoServer() as server:
        yield server


def test_live_reads_resource_policies_and_says_which_have_none(moto):
    moto.reset()
    session = moto.session("eu-west-1")
    s3, kms, sqs = session.client("s3"), session.client("kms"), session.client("sqs")
    account = session.client("sts").get_caller_identity()["Account"]
    s3.create_bucket(Bucket="with-policy", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.create_bucket(Bucket="without-policy", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    bucket_policy = {"Version": "2012-10-17", "Statement": [{"Sid": "DenyAll", "Effect": "Deny", "Principal": "*",
                                                             "Action": "s3:*", "Resource": "arn:aws:s3:::with-policy/*"}]}
    s3.put_bucket_policy(Bucket="with-policy", Policy=json.dumps(bucket_policy))
    key = kms.create_key()["KeyMetadata"]["Arn"]
    queue_url = sqs.create_queue(QueueName="orders", Attributes={"Policy": json.dumps(FULL)})["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    layers = load_layers_live(session, LayerWants(resources=(
        "arn:aws:s3:::with-policy/a.txt", "arn:aws:s3:::without-policy/b.txt", key, queue)))
    assert layers.resource_policy("arn:aws:s3:::with-policy/a.txt", "s3:GetObject").documents[0].document == bucket_policy
    assert layers.resource_policy("arn:aws:s3:::without-policy/b.txt", "s3:GetObject").state == NONE
    # moto writes the default key policy: the account's root, delegating to IAM (AWS KMS, "Default key policy").
    key_policy = layers.resource_policy(key, "kms:Decrypt").documents[0].document
    assert f"arn:aws:iam::{account}:root" in json.dumps(key_policy)
    assert layers.resource_policy(queue, "sqs:SendMessage").state == READ


def test_live_reads_the_organization_path_and_its_scps(moto):
    moto.reset()
    session = moto.session("eu-west-1")
    org = session.client("organizations")
    management = org.create_organization(FeatureSet="ALL")["Organization"]["MasterAccountId"]
    root = org.list_roots()["Roots"][0]["Id"]
    org.enable_policy_type(RootId=root, PolicyType=SCP)
    ou = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    member = org.create_account(Email="prod@example.com", AccountName="prod")["CreateAccountStatus"]["AccountId"]
    org.move_account(AccountId=member, SourceParentId=root, DestinationParentId=ou)
    guard = org.create_policy(Content=json.dumps(GUARD), Description="regions", Name="region-guard", Type=SCP)
    org.attach_policy(PolicyId=guard["Policy"]["PolicySummary"]["Id"], TargetId=ou)
    layers = load_layers_live(session, LayerWants(scp_accounts=(member, management)))
    found = layers.org_levels(member, SCP)
    assert found.state == READ, found.why
    assert [len(level) for level in found.levels] == [1, 2, 1]  # FullAWSAccess everywhere, the guard on the OU
    assert any("region-guard" in policy.name for policy in found.levels[1])
    assert layers.org_levels(management, SCP).state == NONE  # SCPs do not affect the management account
    assert layers.org_of(member)[1].endswith(f"/{root}/{ou}/")


def test_live_refusals_are_gaps_named_in_the_lookup(moto):
    moto.reset()
    session = moto.session("eu-west-1")
    account = session.client("sts").get_caller_identity()["Account"]
    # An account in no organization: AWS says so, and neither SCPs nor RCPs apply.
    layers = load_layers_live(session, LayerWants(scp_accounts=(account,), resources=("arn:aws:s3:::gone/x",)))
    assert layers.org_levels(account, SCP).state == NONE
    found = layers.resource_policy("arn:aws:s3:::gone/x", "s3:GetObject")
    assert found.state == UNREAD and "s3:GetBucketPolicy arn:aws:s3:::gone: failed: NoSuchBucket" in found.why


def test_live_refused_reads_never_raise():
    from botocore.exceptions import ClientError

    class Refusing:
        region_name = "eu-west-1"

        def client(self, service, region_name=None):
            return self

        def __getattr__(self, name):
            def refuse(**_):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not you"},
                                   "ResponseMetadata": {"HTTPStatusCode": 403}}, name)
            return refuse

    layers = load_layers_live(Refusing(), LayerWants(resources=(f"{BUCKET}/k",), scp_accounts=(PROD,)),
                              caller_account=PROD)
    assert "refused: AccessDenied" in layers.resource_policy(f"{BUCKET}/k", "s3:GetObject").why
    assert "organizations:DescribeOrganization: refused" in layers.org_levels(PROD, SCP).why
