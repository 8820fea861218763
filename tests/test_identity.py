"""trailscan.identity: one test per CloudTrail identity shape it reads."""

from __future__ import annotations

import json

import pytest

from trailscan.identity import (
    MINIMUM_VERSIONS,
    ServiceAccountRef,
    credential_support,
    is_eks_service,
    is_instance_id,
    is_node_session,
    issuer_id,
    issuer_of,
    not_a_kubernetes_token,
    not_a_pod_identity,
    parse_subject,
    parse_user_agent,
    parse_web_identity,
    pod_identity_tags,
    provider_arn_for,
    role_arn_of_session,
    session_name_of,
)

PROVIDER = (
    "arn:aws:iam::100000000002:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C"
)


# -- web identity -------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("system:serviceaccount:argo:awf-aws-executor-plugin", ServiceAccountRef("argo", "awf-aws-executor-plugin")),
        ("system:serviceaccount:default:default", ServiceAccountRef("default", "default")),
        ("system:serviceaccount:argo", None),
        ("system:serviceaccount:a:b:c", None),
        ("system:serviceaccount::sa", None),
        ("repo:octo/app:ref:refs/heads/main", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_subject(subject, expected):
    assert parse_subject(subject) == expected


def test_service_account_ref_round_trips_its_subject():
    ref = ServiceAccountRef("payments", "api")
    assert ref.subject == "system:serviceaccount:payments:api" and str(ref) == "payments/api"


def test_parse_web_identity_from_the_real_record(real_data):
    record = json.loads((real_data / "greenpau-argo-workflows-aws-plugin" / "DEVELOPMENT.md.block1.json").read_text())
    ui = record["userIdentity"]
    web = parse_web_identity(
        user_name=ui["userName"], principal_id=ui["principalId"], identity_provider=ui["identityProvider"]
    )
    assert web.provider_arn == PROVIDER
    assert web.issuer == "oidc.eks.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C"
    assert web.audience == "sts.amazonaws.com"
    assert web.service_account == ServiceAccountRef("argo", "awf-aws-executor-plugin")


def test_parse_web_identity_from_principal_id_alone():
    web = parse_web_identity(principal_id=f"{PROVIDER}:sts.amazonaws.com:system:serviceaccount:payments:api")
    assert web.provider_arn == PROVIDER
    assert web.audience == "sts.amazonaws.com"
    assert web.subject == "system:serviceaccount:payments:api"


def test_parse_web_identity_with_a_custom_audience_and_no_principal_id():
    web = parse_web_identity(
        principal_id=f"{PROVIDER}:vault:system:serviceaccount:ns:sa", user_name="system:serviceaccount:ns:sa"
    )
    assert web.audience == "vault"
    only_name = parse_web_identity(user_name="system:serviceaccount:ns:sa")
    assert only_name.audience is None and only_name.provider_arn is None and only_name.service_account


def test_parse_web_identity_with_a_provider_that_is_not_an_arn():
    web = parse_web_identity(
        principal_id="accounts.google.com:1234.apps:9876", identity_provider="accounts.google.com"
    )
    assert web.provider_arn == "accounts.google.com" and web.audience == "1234.apps" and web.subject == "9876"


@pytest.mark.parametrize(
    "value",
    [
        PROVIDER,
        "https://oidc.eks.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C",
        "https://OIDC.EKS.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C/",
        "oidc.eks.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C",
    ],
)
def test_issuer_of_every_spelling(value):
    assert issuer_of(value) == "oidc.eks.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C"
    assert issuer_id(value) == "A8242F25BFBB8F98F5321B2AE63C8B5C"


def test_provider_arn_for():
    assert provider_arn_for("https://oidc.eks.us-west-2.amazonaws.com/id/X", "111122223333") == (
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/X"
    )


# -- sessions and nodes -----------------------------------------------------------------


def test_session_arns():
    arn = "arn:aws:sts::823571991546:assumed-role/eks-security-workshop/i-07574d724fb843fda"
    assert session_name_of(arn) == "i-07574d724fb843fda"
    assert role_arn_of_session(arn) == "arn:aws:iam::823571991546:role/eks-security-workshop"
    assert session_name_of("arn:aws:iam::1:user/bob") is None and role_arn_of_session(None) is None
    cn = "arn:aws-cn:sts::123456789012:assumed-role/r/s/with/slashes"
    assert session_name_of(cn) == "s/with/slashes" and role_arn_of_session(cn) == "arn:aws-cn:iam::123456789012:role/r"


@pytest.mark.parametrize(
    "value, expected",
    [("i-07574d724fb843fda", True), ("i-0a1b2c3d", True), ("i-XYZ", False), ("botocore-session-1", False), (None, False)],
)
def test_instance_ids(value, expected):
    assert is_instance_id(value) is expected


def test_node_sessions_by_delivery_or_by_name():
    assert is_node_session(ec2_role_delivery="2.0")
    assert is_node_session(session_name="i-02930ce60274d87a7")
    assert not is_node_session(ec2_role_delivery=None, session_name="botocore-session-1700000000")


# -- callers that are no EKS pod identity ------------------------------------------------------

SLR = "arn:aws:iam::123837392027:role/aws-service-role/inspector2.amazonaws.com/AWSServiceRoleForAmazonInspector2"
EKS_SLR = "arn:aws:iam::111122223333:role/aws-service-role/eks-nodegroup.amazonaws.com/AWSServiceRoleForAmazonEKSNodegroup"


@pytest.mark.parametrize(
    "identity, reason",
    [
        # The real stratus-red-team records: an IAM user's key (AKIA…) and a console session (ASIA…).
        ({"identity_type": "IAMUser"}, "an IAM user"),
        ({"identity_type": "Root"}, "root user"),
        ({"identity_type": "FederatedUser"}, "GetFederationToken"),
        ({"identity_type": "SAMLUser"}, "SAML"),
        ({"identity_type": "IdentityCenterUser"}, "Identity Center"),
        ({"identity_type": "AWSService", "invoked_by": "config.amazonaws.com"}, "the AWS service config.amazonaws.com"),
        ({"identity_type": "AWSService"}, "an AWS service"),
        # The real Inspector session: its issuer keeps the path the session ARN drops.
        ({"identity_type": "AssumedRole", "session_issuer_arn": SLR}, "service-linked role of inspector2.amazonaws.com"),
        # A pod's own sessions, and what says nothing either way.
        ({"identity_type": "AssumedRole", "session_issuer_arn": "arn:aws:iam::1:role/payments-api"}, None),
        ({"identity_type": "AssumedRole", "session_issuer_arn": "arn:aws:iam::1:role/svc/aws-service-role"}, None),
        ({"identity_type": "AssumedRole"}, None),
        ({"identity_type": "AWSAccount"}, None),  # another account's caller: perhaps a pod there
        ({"identity_type": "Unknown"}, None),
        ({"identity_type": None}, None),
        # EKS itself: Pod Identity's AssumeRole, and EKS's own service-linked roles.
        ({"identity_type": "AWSService", "invoked_by": "pods.eks.amazonaws.com"}, None),
        ({"identity_type": "AWSService", "invoked_by": "eks.amazonaws.com"}, None),
        ({"identity_type": "AssumedRole", "session_issuer_arn": EKS_SLR}, None),
    ],
)
def test_not_a_pod_identity(identity, reason):
    found = not_a_pod_identity(**identity)
    assert (found is None) if reason is None else (reason in found)


def test_service_linked_role_service():
    from trailscan.arn import principal_name, service_linked_role_service

    assert service_linked_role_service(SLR) == "inspector2.amazonaws.com"
    assert service_linked_role_service(EKS_SLR) == "eks-nodegroup.amazonaws.com"
    for other in ("arn:aws:iam::1:role/payments-api", "arn:aws:iam::1:role/team/aws-service-role",
                  "arn:aws:sts::1:assumed-role/AWSServiceRoleForAmazonInspector2/s", "arn:aws:iam::1:user/aws-service-role/x/y",
                  None):
        assert service_linked_role_service(other) is None
    # How people read principals: an IAM user is never called a role.
    assert principal_name("arn:aws:iam::457448411975:user/christophe") == "user christophe"
    assert principal_name("arn:aws:sts::1:assumed-role/r/s") == "role r"
    assert principal_name("arn:aws:iam::111122223333:root") == "root of 111122223333"
    assert principal_name("arn:aws:sts::111122223333:federated-user/bob") == "federated user bob"


@pytest.mark.parametrize(
    "name, expected",
    [("pods.eks.amazonaws.com", True), ("eks.amazonaws.com", True), ("eks-nodegroup.amazonaws.com", True),
     ("eks-fargate-pods.amazonaws.com", True), ("ec2.amazonaws.com", False), ("geeks.example", False),
     ("AWS Internal", False), (None, False)],
)
def test_is_eks_service(name, expected):
    assert is_eks_service(name) is expected


@pytest.mark.parametrize(
    "identity, ruled_out",
    [
        (dict(user_name="system:serviceaccount:argo:awf-aws-executor-plugin", identity_provider=PROVIDER), False),
        # GitHub Actions' OIDC token: another issuer, a subject that names no service account.
        (dict(user_name="repo:octo/app:ref:refs/heads/main",
              identity_provider="arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"), True),
        (dict(user_name="us-east-1:1234-abcd", identity_provider="cognito-identity.amazonaws.com"), True),
        # A self-managed cluster's service account: not EKS, but a Kubernetes token all the same.
        (dict(user_name="system:serviceaccount:a:b", identity_provider="arn:aws:iam::1:oidc-provider/k8s.example.com"), False),
        (dict(user_name="someone"), False),  # no issuer: nothing says
    ],
)
def test_not_a_kubernetes_token(identity, ruled_out):
    assert (not_a_kubernetes_token(parse_web_identity(**identity)) is not None) is ruled_out


# -- Pod Identity session tags ---------------------------------------------------------------


def test_pod_identity_tags_from_the_real_assume_role(real_data):
    path = real_data / "aws-samples-eks-security-immersion-day" / "3.eks-pod-identity-deep-dive_index.en.md.block3.json"
    record = json.loads(path.read_text())
    tags = pod_identity_tags(record["requestParameters"]["tags"])
    assert tags.cluster == "eksworkshop-eksctl" and tags.pod_name == "app1"
    assert tags.workload == ServiceAccountRef("ns-a", "sa1")
    assert pod_identity_tags(record["requestParameters"]) == tags


@pytest.mark.parametrize(
    "shape",
    [
        [{"Key": "kubernetes-namespace", "Value": "ns"}, {"Key": "kubernetes-service-account", "Value": "sa"},
         {"Key": "eks-cluster-arn", "Value": "arn:aws:eks:eu-west-1:111122223333:cluster/prod"}],
        {"kubernetes-namespace": "ns", "kubernetes-service-account": "sa", "eks-cluster-name": "prod"},
    ],
)
def test_pod_identity_tags_in_other_shapes(shape):
    tags = pod_identity_tags(shape)
    assert tags.cluster == "prod" and tags.workload == ServiceAccountRef("ns", "sa")


def test_no_pod_identity_tags():
    assert pod_identity_tags([{"key": "team", "value": "x"}]) is None
    assert pod_identity_tags(None) is None and pod_identity_tags("tags") is None


# -- SDKs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent, key, version",
    [
        ("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10 lang/python#3.11.8 Botocore/1.34.69", "boto3", "1.34.69"),
        ("Boto3/1.9.100 Python/3.7.0 Linux/4.14 Botocore/1.12.100", "boto3", "1.9.100"),
        ("Botocore/1.12.100 Python/3.7.0 Linux/4.14", "botocore", "1.12.100"),
        ("aws-cli/2.15.38 Python/3.11.8 Linux/5.10.213 exe/x86_64.amzn.2", "aws-cli-v2", "2.15.38"),
        ("aws-cli/1.16.100 Python/2.7.16 Linux/4.14 botocore/1.12.90", "aws-cli-v1", "1.16.100"),
        ("aws-sdk-go/1.45.1 (go1.21.4; linux; amd64)", "go-v1", "1.45.1"),
        ("aws-sdk-go-v2/1.21.2 os/linux lang/go#1.19.13 md/GOOS#linux api/eksauth#1.0.0", "go-v2", "1.21.2"),
        ("aws-sdk-java/2.25.16 Linux/5.10.213 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10", "java-v2", "2.25.16"),
        ("aws-sdk-java/1.12.261 Linux/5.4 OpenJDK_64-Bit_Server_VM/11.0.16 java/11.0.16", "java-v1", "1.12.261"),
        ("aws-sdk-nodejs/2.1000.0 linux/v16.13.0 exec-env/AWS_ECS_EC2", "js-v2", "2.1000.0"),
        ("aws-sdk-js/3.540.0 ua/2.0 os/linux#5.10.213 lang/js md/nodejs#20.12.0 api/s3#3.540.0", "js-v3", "3.540.0"),
        ("aws-sdk-nodejs-v3-@aws-sdk/client-s3/3.20.0 linux/v14.17.0", "js-v3", "3.20.0"),
        ("aws-sdk-ruby3/3.130.0 ruby/3.1.2 x86_64-linux aws-sdk-s3/1.114.0", "ruby", "3.130.0"),
        ("aws-sdk-php/3.209.0 OS/Linux/5.10 lang/php/8.1.1 GuzzleHttp/7", "php", "3.209.0"),
        ("aws-sdk-cpp/1.7.100 Linux/4.14 x86_64 GCC/7.3.1", "cpp", "1.7.100"),
        ("aws-sdk-dotnet-coreclr/3.7.300.1 aws-sdk-dotnet-core/3.7.300.1 .NET_Core/6.0.5", "dotnet", "3.7.300.1"),
        ("aws-sdk-kotlin/1.0.0 ua/2.0 api/s3#1.0.0 os/linux lang/kotlin#1.9", "kotlin", "1.0.0"),
        ("aws-sdk-rust/1.1.7 os/linux lang/rust/1.75.0", "rust", "1.1.7"),
        ("AWSPowerShell.NetCore/4.1.400.0 .NET_Core/6.0", "powershell", "4.1.400.0"),
    ],
)
def test_parse_user_agent(agent, key, version):
    sdk = parse_user_agent(agent)
    assert sdk is not None and sdk.key == key and sdk.version == version
    assert sdk.label == MINIMUM_VERSIONS[key][0]


@pytest.mark.parametrize("agent", ["ec2.amazonaws.com", "pods.eks.amazonaws.com", "kubectl/v1.29", "", None])
def test_user_agents_that_name_no_sdk(agent):
    assert parse_user_agent(agent) is None


@pytest.mark.parametrize(
    "agent, irsa, pod_identity",
    [
        ("Boto3/1.9.219 Python/3.7 Botocore/1.12.199", False, False),
        ("Boto3/1.9.220 Python/3.7 Botocore/1.12.200", True, False),
        ("Boto3/1.34.41 Python/3.11 Botocore/1.34.41", True, True),
        ("Boto3/1.34.69 md/Botocore#1.34.69 Botocore/1.34.69", True, True),
        ("aws-sdk-go/1.23.12 (go1.12; linux; amd64)", False, False),
        ("aws-sdk-go/1.45.1 (go1.21.4; linux; amd64)", True, False),
        ("aws-sdk-go/1.47.11 (go1.21.4; linux; amd64)", True, True),
        ("aws-sdk-go-v2/1.0.0 os/linux", True, False),
        ("aws-sdk-java/2.10.10 Linux/4.14", False, False),
        ("aws-sdk-java/2.21.30 Linux/4.14", True, True),
        ("aws-sdk-nodejs/2.524.0 linux/v10", False, False),
        ("aws-sdk-js/3.27.0 os/linux", True, False),
        ("aws-sdk-rust/1.1.7 os/linux", True, None),
        ("AWSPowerShell.NetCore/4.1.502.0 .NET_Core/6.0", None, True),
    ],
)
def test_credential_support_against_the_minimum_versions(agent, irsa, pod_identity):
    support = credential_support(parse_user_agent(agent))
    assert (support.irsa, support.pod_identity) == (irsa, pod_identity)


def test_the_spec_minimums_are_in_the_table():
    assert MINIMUM_VERSIONS["boto3"][1:] == ("1.9.220", "1.34.41")
    assert MINIMUM_VERSIONS["botocore"][1] == "1.12.200"
    assert MINIMUM_VERSIONS["go-v1"][1:] == ("1.23.13", "1.47.11")
    assert MINIMUM_VERSIONS["java-v2"][1:] == ("2.10.11", "2.21.30")
    assert MINIMUM_VERSIONS["js-v2"][1] == "2.525.0" and MINIMUM_VERSIONS["js-v3"][1] == "3.27.0"
