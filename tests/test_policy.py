"""Tests for trailscan.policy: one test (or table row) per policy shape and per rule."""

from __future__ import annotations

import itertools
import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailscan import policy as p
from trailscan.errors import InputError

ACCOUNT = "111122223333"
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
OLD_ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/0LDC1USTER0000000000000000000000"
OLD_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OLD_ISSUER}"
SUBJECT = "system:serviceaccount:payments:api"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/payments-api/botocore-session-1700000000"


def irsa_trust(sub=SUBJECT, aud="sts.amazonaws.com", issuer=ISSUER, provider=PROVIDER, operator="StringEquals"):
    """A trust policy as the EKS user guide writes it."""
    condition = {}
    if sub is not None:
        condition[f"{issuer}:sub"] = sub
    if aud is not None:
        condition[f"{issuer}:aud"] = aud
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    if condition:
        statement["Condition"] = {operator: condition}
    return {"Version": "2012-10-17", "Statement": [statement]}


# --------------------------------------------------------------------------
# load_policy
# --------------------------------------------------------------------------

DOC = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(DOC, id="dict"),
        pytest.param(json.dumps(DOC), id="json-string"),
        pytest.param(json.dumps(DOC).encode(), id="json-bytes"),
        pytest.param("  \n" + json.dumps(DOC, indent=2) + "\n", id="json-with-whitespace"),
        pytest.param(quote(json.dumps(DOC)), id="url-encoded"),
        pytest.param(quote(json.dumps(DOC)).replace("%7B", "%7b", 1), id="url-encoded-lowercase-hex"),
    ],
)
def test_load_policy_accepts_every_form(form):
    assert p.load_policy(form) == DOC


def test_load_policy_copies_so_callers_may_mutate():
    loaded = p.load_policy(DOC)
    loaded["Statement"]["Action"] = "s3:*"
    assert DOC["Statement"]["Action"] == "s3:GetObject"


def test_load_policy_url_encoded_from_account_authorization_details():
    # The exact encoding IAM uses in get-account-authorization-details output.
    encoded = (
        "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C"
        "%22Principal%22%3A%7B%22Service%22%3A%22ec2.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D"
    )
    loaded = p.load_policy(encoded)
    assert loaded["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


@pytest.mark.parametrize(
    ("junk", "fragment"),
    [
        ("", "is empty"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON list"),
        ('{"Version": "2012-10-17"}', "no Statement"),
        ('{"Statement": "Allow"}', "Statement of type str"),
        ('{"Statement": [1]}', "statement #0 is a int"),
        ('{"Statement": [{"Effect": "Maybe"}]}', "Effect 'Maybe'"),
        (42, "is a int"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_load_policy_rejects_junk_with_clear_message(junk, fragment):
    with pytest.raises(InputError) as caught:
        p.load_policy(junk, name="role payments-api trust policy")
    assert fragment in str(caught.value)
    assert "role payments-api trust policy" in str(caught.value)


def test_statements_as_list_for_single_object_and_list():
    assert p.statements(DOC) == [DOC["Statement"]]
    two = {"Statement": [DOC["Statement"], DOC["Statement"]]}
    assert len(p.statements(two)) == 2


# --------------------------------------------------------------------------
# principals
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        pytest.param("*", {"AWS": ["*"]}, id="star-string"),
        pytest.param({"AWS": "*"}, {"AWS": ["*"]}, id="aws-star"),
        pytest.param(
            {"AWS": f"arn:aws:iam::{ACCOUNT}:role/ci"}, {"AWS": [f"arn:aws:iam::{ACCOUNT}:role/ci"]}, id="aws-arn"
        ),
        pytest.param(
            {"AWS": [f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:user/bob"]},
            {"AWS": [f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:user/bob"]},
            id="aws-list",
        ),
        pytest.param({"AWS": ACCOUNT}, {"AWS": [ACCOUNT]}, id="aws-account-id"),
        pytest.param({"Federated": PROVIDER}, {"Federated": [PROVIDER]}, id="federated-oidc"),
        pytest.param(
            {"Federated": "cognito-identity.amazonaws.com"},
            {"Federated": ["cognito-identity.amazonaws.com"]},
            id="federated-name",
        ),
        pytest.param({"Service": "ec2.amazonaws.com"}, {"Service": ["ec2.amazonaws.com"]}, id="service"),
        pytest.param(
            {"Service": ["pods.eks.amazonaws.com", "ec2.amazonaws.com"]},
            {"Service": ["pods.eks.amazonaws.com", "ec2.amazonaws.com"]},
            id="service-list",
        ),
        pytest.param({"CanonicalUser": "79a59df900b949e5"}, {"CanonicalUser": ["79a59df900b949e5"]}, id="canonical"),
        pytest.param(
            {"AWS": ACCOUNT, "Service": "lambda.amazonaws.com"},
            {"AWS": [ACCOUNT], "Service": ["lambda.amazonaws.com"]},
            id="several-kinds",
        ),
        pytest.param({"service": "ec2.amazonaws.com"}, {"Service": ["ec2.amazonaws.com"]}, id="kind-any-case"),
        pytest.param(None, {}, id="absent"),
    ],
)
def test_principals_every_shape(principal, expected):
    assert p.principals(principal) == expected


@pytest.mark.parametrize("junk", [f"arn:aws:iam::{ACCOUNT}:root", 7, {"AWS": 12}, {"AWS": [None]}])
def test_principals_rejects_invalid_shapes(junk):
    with pytest.raises(InputError):
        p.principals(junk)


@pytest.mark.parametrize(
    ("principal", "kind", "value", "expected"),
    [
        ("*", "Federated", PROVIDER, True),
        ({"AWS": "*"}, "Service", "pods.eks.amazonaws.com", True),
        ({"AWS": ACCOUNT}, "AWS", f"arn:aws:iam::{ACCOUNT}:user/bob", True),
        ({"AWS": ACCOUNT}, "AWS", "arn:aws:iam::999999999999:user/bob", False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "AWS", SESSION, True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/payments-api"}, "AWS", SESSION, True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/team/payments-api"}, "AWS", SESSION, True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/other"}, "AWS", SESSION, False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/ci"}, "AWS", f"arn:aws:iam::{ACCOUNT}:role/ci", True),
        ({"Federated": PROVIDER}, "Federated", PROVIDER, True),
        ({"Federated": PROVIDER}, "Federated", OLD_PROVIDER, False),
        ({"Federated": PROVIDER}, "Federated", PROVIDER.lower(), False),
        ({"Federated": [OLD_PROVIDER, PROVIDER]}, "Federated", PROVIDER, True),
        ({"Federated": PROVIDER}, "AWS", PROVIDER, False),
        ({"Service": "Pods.EKS.amazonaws.com"}, "Service", "pods.eks.amazonaws.com", True),
        ({"Service": "ec2.amazonaws.com"}, "service", "pods.eks.amazonaws.com", False),
        ({"CanonicalUser": "abc"}, "CanonicalUser", "abc", True),
        ({"CanonicalUser": "abc"}, "CanonicalUser", "ABC", False),
        # IAM role names are unique regardless of case, so a Principal names the role whatever its case
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/Payments-API"}, "AWS", SESSION, True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/payments-api"}, "AWS", f"arn:aws:iam::{ACCOUNT}:role/PAYMENTS-API", True),
        ({"AWS": SESSION}, "AWS", SESSION, True),
        ({"AWS": SESSION}, "AWS", SESSION.replace("botocore-session", "other"), False),
        ({"AWS": SESSION}, "AWS", f"arn:aws:iam::{ACCOUNT}:role/payments-api", False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:user/bob"}, "AWS", f"arn:aws:iam::{ACCOUNT}:user/bob", True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:user/bob"}, "AWS", f"arn:aws:iam::{ACCOUNT}:user/Bob", False),
    ],
)
def test_principal_matches(principal, kind, value, expected):
    assert p.principal_matches(principal, kind, value) is expected


# --------------------------------------------------------------------------
# Actions and resources
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("s3:GetObject", "s3:GetObject", True),
        ("s3:getobject", "S3:GetObject", True),
        ("s3:Get*", "s3:GetObject", True),
        ("s3:Get*", "s3:PutObject", False),
        ("*", "kms:Decrypt", True),
        ("s3:*", "s3:ListBucket", True),
        ("s3:*", "s3express:CreateSession", False),
        ("ec2:Describe?nstances", "ec2:DescribeInstances", True),
        ("ec2:Describe?nstances", "ec2:DescribeXXnstances", False),
        ("sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", False),
    ],
)
def test_action_matches(pattern, action, expected):
    assert p.action_matches(pattern, action) is expected


@pytest.mark.parametrize(
    ("pattern", "arn", "expected"),
    [
        ("*", "arn:aws:s3:::b/k", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/dir/k", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::B/k", False),
        ("arn:aws:s3:::b", "arn:aws:s3:::b/k", False),
        ("arn:aws:dynamodb:*:*:table/orders", "arn:aws:dynamodb:eu-west-1:111122223333:table/orders", True),
        ("arn:aws:sqs:eu-west-1:111122223333:q?", "arn:aws:sqs:eu-west-1:111122223333:q1", True),
        ("arn:aws:ec2:*:*:instance/*", "*", False),
    ],
)
def test_resource_matches(pattern, arn, expected):
    assert p.resource_matches(pattern, arn) is expected


@pytest.mark.parametrize(
    ("statement", "action", "expected"),
    [
        ({"Action": "s3:GetObject"}, "s3:GetObject", True),
        ({"Action": ["sqs:*", "s3:Get*"]}, "s3:GetObject", True),
        ({"Action": ["sqs:*"]}, "s3:GetObject", False),
        ({"NotAction": "iam:*"}, "s3:GetObject", True),
        ({"NotAction": ["iam:*", "s3:*"]}, "s3:GetObject", False),
        ({}, "s3:GetObject", False),
    ],
)
def test_statement_action_and_notaction(statement, action, expected):
    assert p.statement_matches_action(statement, action) is expected


@pytest.mark.parametrize(
    ("statement", "resource", "expected"),
    [
        ({"Resource": "arn:aws:s3:::b/*"}, "arn:aws:s3:::b/k", True),
        ({"Resource": ["arn:aws:s3:::a/*", "arn:aws:s3:::b/*"]}, "arn:aws:s3:::b/k", True),
        ({"Resource": "arn:aws:s3:::a/*"}, "arn:aws:s3:::b/k", False),
        ({"NotResource": "arn:aws:s3:::secret/*"}, "arn:aws:s3:::b/k", True),
        ({"NotResource": ["arn:aws:s3:::b/*"]}, "arn:aws:s3:::b/k", False),
        ({}, "arn:aws:s3:::b/k", True),
        ({"Resource": "arn:aws:s3:::a/*"}, None, True),
    ],
)
def test_statement_resource_and_notresource(statement, resource, expected):
    assert p.statement_matches_resource(statement, resource) is expected


# --------------------------------------------------------------------------
# Wildcards: one matcher for actions, resources, principals and conditions
# --------------------------------------------------------------------------

# (id, what, pattern, text, expected): what is "action" (case-insensitive),
# "resource" (case-sensitive, per ARN segment), "like" (StringLike) or "arn" (ArnLike).
GLOB_CASES = [
    # `*` is any run, the empty one included, and crosses `/` and `:` in a resource's last segment
    ("star-empty-run", "resource", "arn:aws:s3:::b/*", "arn:aws:s3:::b/", True),
    ("star-needs-the-slash", "resource", "arn:aws:s3:::b/*", "arn:aws:s3:::b", False),
    ("star-crosses-slash", "resource", "arn:aws:s3:::b*", "arn:aws:s3:::b/x/y", True),
    ("star-crosses-colon-in-resource-part", "resource", "arn:aws:logs:*:*:log-group:app*",
     "arn:aws:logs:eu-west-1:111122223333:log-group:app:log-stream:x", True),
    ("several-stars", "resource", "arn:aws:s3:::logs-*/*/*/*.json", "arn:aws:s3:::logs-2024/01/02/x.json", True),
    ("several-stars-too-few-parts", "resource", "arn:aws:s3:::logs-*/*/*/*.json", "arn:aws:s3:::logs-2024/01/x.json", False),
    ("star-alone-covers-all", "resource", "*", "arn:aws:s3:::b/k", True),
    ("resource-case-sensitive", "resource", "arn:aws:s3:::B/*", "arn:aws:s3:::b/k", False),
    ("question-one-char", "resource", "arn:aws:s3:::b/?.txt", "arn:aws:s3:::b/a.txt", True),
    ("question-not-two", "resource", "arn:aws:s3:::b/?.txt", "arn:aws:s3:::b/ab.txt", False),
    ("question-not-none", "resource", "arn:aws:s3:::b/?.txt", "arn:aws:s3:::b/.txt", False),
    ("wildcard-region-and-account", "resource", "arn:aws:sqs:*:*:q", "arn:aws:sqs:eu-west-1:111122223333:q", True),
    ("account-star-stays-in-its-segment", "resource", "arn:aws:iam::*:role/x", "arn:aws:iam::1:2:role/x", False),
    ("short-arn-padded", "resource", "arn:aws:s3:*", "arn:aws:s3:::b/k", True),
    ("short-arn-without-wildcard-is-exact", "resource", "arn:aws:s3", "arn:aws:s3:::b/k", False),
    ("literal-star-in-text", "resource", "arn:aws:s3:::b/a*", "arn:aws:s3:::b/a*", True),
    ("no-specific-resource", "resource", "arn:aws:ec2:*:*:instance/*", "*", False),
    # actions: case-insensitive, never trimmed, the service prefix is not a wildcard's to cross
    ("action-case", "action", "S3:GETOBJECT", "s3:GetObject", True),
    ("action-star", "action", "s3:get*", "s3:GetObject", True),
    ("action-question", "action", "s3:Get?bject", "s3:GetObject", True),
    ("action-trailing-space", "action", "s3:GetObject ", "s3:GetObject", False),
    ("action-leading-space", "action", " s3:GetObject", "s3:GetObject", False),
    ("action-other-service", "action", "s3:*", "s3express:CreateSession", False),
    ("action-everything", "action", "*", "kms:Decrypt", True),
    # StringLike: case-sensitive, `*` matches the empty string
    ("like-star-empty", "like", "*", "", True),
    ("like-stars-in-order", "like", "a*b*c", "aXbYc", True),
    ("like-stars-adjacent", "like", "a*b*c", "abc", True),
    ("like-order-matters", "like", "a*b*c", "acb", False),
    ("like-question-needs-a-char", "like", "a?c", "ac", False),
    ("like-colon-crossed", "like", "system:serviceaccount:*", "system:serviceaccount:ns:sa", True),
    ("like-case", "like", "API*", "api", False),
    ("like-unicode", "like", "é*ü", "é-ß-ü", True),
    # ArnLike: every one of the six segments checked on its own
    ("arn-star-per-segment", "arn", "arn:aws:iam::*:role/*", "arn:aws:iam::123456789012:role/a/b", True),
    ("arn-partial-segment", "arn", "arn:aws:iam::1*:role/x", "arn:aws:iam::123:role/x", True),
    ("arn-needs-six-segments", "arn", "arn:aws:*", "arn:aws:iam::1:role/a", False),
    ("arn-account-star-stays-in-its-segment", "arn", "arn:aws:sts::*:assumed-role/r/s",
     "arn:aws:sts::1:2:assumed-role/r/s", False),
    ("arn-resource-part-may-hold-colons", "arn", "arn:aws:logs:*:*:log-group:*",
     "arn:aws:logs:eu-west-1:1:log-group:g:log-stream:s", True),
    ("arn-case-sensitive", "arn", "arn:aws:iam::*:role/Admin", "arn:aws:iam::1:role/admin", False),
    ("arn-escaped-star-is-literal", "arn", "arn:aws:s3:::b/${*}", "arn:aws:s3:::b/x", False),
    ("arn-escaped-star-matches-itself", "arn", "arn:aws:s3:::b/${*}", "arn:aws:s3:::b/*", True),
    ("arn-not-an-arn", "arn", "arn:aws:s3:::b", "b", False),
]


def glob_case(what, pattern, text):
    if what == "action":
        return p.action_matches(pattern, text)
    if what == "resource":
        return p.resource_matches(pattern, text)
    operator = {"like": "StringLike", "arn": "ArnLike"}[what]
    return p.condition_matches({operator: {"k": pattern}}, {"k": text})


@pytest.mark.parametrize(("what", "pattern", "text", "expected"), [c[1:] for c in GLOB_CASES], ids=[c[0] for c in GLOB_CASES])
def test_glob_semantics(what, pattern, text, expected):
    assert glob_case(what, pattern, text) is expected


def reference_glob(pattern: str, text: str) -> bool:
    """The textbook dynamic programme, quadratic and obviously right, to check the fast matcher."""
    row = [True] + [False] * len(text)
    for ch in pattern:
        if ch == "*":
            row = list(itertools.accumulate(row, lambda a, b: a or b))
        else:
            row = [False] + [row[i] and (ch == "?" or ch == text[i]) for i in range(len(text))]
    return row[-1]


@given(st.text("ab?*/", max_size=9), st.text("ab/", max_size=12))
@settings(max_examples=600, deadline=None)
def test_glob_agrees_with_the_textbook_algorithm(pattern, text):
    assert p.glob_matches(pattern, text) is reference_glob(pattern, text)
    assert p.glob_matches(pattern.upper(), text, ignore_case=True) is reference_glob(pattern, text)


# --------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------

CONDITION_CASES = [
    # (id, condition, context, expected)
    ("StringEquals-hit", {"StringEquals": {"aws:PrincipalTag/team": "pay"}}, {"aws:PrincipalTag/team": "pay"}, True),
    ("StringEquals-case", {"StringEquals": {"k": "Pay"}}, {"k": "pay"}, False),
    ("StringEquals-no-wildcards", {"StringEquals": {"k": "p*"}}, {"k": "pay"}, False),
    ("StringEquals-values-OR", {"StringEquals": {"k": ["a", "pay"]}}, {"k": "pay"}, True),
    ("StringEquals-missing", {"StringEquals": {"k": "pay"}}, {}, False),
    ("StringNotEquals-hit", {"StringNotEquals": {"k": "pay"}}, {"k": "ops"}, True),
    ("StringNotEquals-miss", {"StringNotEquals": {"k": ["ops", "pay"]}}, {"k": "pay"}, False),
    ("StringNotEquals-missing-is-true", {"StringNotEquals": {"k": "pay"}}, {}, True),
    ("StringEqualsIgnoreCase", {"StringEqualsIgnoreCase": {"k": "PAY"}}, {"k": "pay"}, True),
    ("StringNotEqualsIgnoreCase", {"StringNotEqualsIgnoreCase": {"k": "PAY"}}, {"k": "pay"}, False),
    ("StringLike-star", {"StringLike": {"k": "system:serviceaccount:pay:*"}}, {"k": SUBJECT.replace("payments", "pay")}, True),
    ("StringLike-question", {"StringLike": {"k": "ap?"}}, {"k": "api"}, True),
    ("StringLike-case", {"StringLike": {"k": "API*"}}, {"k": "api"}, False),
    ("StringNotLike", {"StringNotLike": {"k": "prod-*"}}, {"k": "dev-1"}, True),
    ("StringNotLike-missing-is-true", {"StringNotLike": {"k": "prod-*"}}, {}, True),
    ("ArnEquals", {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:eu-west-1:111122223333:t"}}, {"aws:SourceArn": "arn:aws:sns:eu-west-1:111122223333:t"}, True),
    ("ArnLike-per-component", {"ArnLike": {"aws:SourceArn": "arn:aws:eks:*:111122223333:cluster/*"}}, {"aws:SourceArn": "arn:aws:eks:eu-west-1:111122223333:cluster/prod"}, True),
    ("ArnLike-star-does-not-cross-colon", {"ArnLike": {"a": "arn:aws:s3:::*"}}, {"a": "arn:aws:sqs:eu-west-1:111122223333:q"}, False),
    ("ArnNotEquals", {"ArnNotEquals": {"a": "arn:aws:iam::111122223333:role/x"}}, {"a": "arn:aws:iam::111122223333:role/y"}, True),
    ("ArnNotLike", {"ArnNotLike": {"a": "arn:aws:iam::*:role/admin*"}}, {"a": "arn:aws:iam::111122223333:role/admin-1"}, False),
    ("ArnLike-missing", {"ArnLike": {"a": "arn:*"}}, {}, False),
    ("Bool-string", {"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": True}, True),
    ("Bool-json-bool", {"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": "false"}, True),
    ("Bool-mismatch", {"Bool": {"aws:MultiFactorAuthPresent": "true"}}, {"aws:MultiFactorAuthPresent": "false"}, False),
    ("Bool-missing", {"Bool": {"aws:MultiFactorAuthPresent": "true"}}, {}, False),
    ("BoolIfExists-missing", {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}, {}, True),
    ("Null-true-missing", {"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
    ("Null-true-present", {"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"}, False),
    ("Null-false-present", {"Null": {"aws:TokenIssueTime": "false"}}, {"aws:TokenIssueTime": "x"}, True),
    ("Null-false-missing", {"Null": {"aws:TokenIssueTime": False}}, {"aws:TokenIssueTime": None}, False),
    ("NumericEquals", {"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.0"}, True),
    ("NumericNotEquals", {"NumericNotEquals": {"s3:max-keys": ["10", "100"]}}, {"s3:max-keys": "15"}, True),
    ("NumericLessThan", {"NumericLessThan": {"n": 10}}, {"n": "9"}, True),
    ("NumericLessThanEquals", {"NumericLessThanEquals": {"n": "10"}}, {"n": 10}, True),
    ("NumericGreaterThan", {"NumericGreaterThan": {"n": "10"}}, {"n": "10"}, False),
    ("NumericGreaterThanEquals", {"NumericGreaterThanEquals": {"n": "10"}}, {"n": "10"}, True),
    ("Numeric-unparseable", {"NumericEquals": {"n": "ten"}}, {"n": "10"}, False),
    ("DateLessThan", {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, {"aws:CurrentTime": "2026-11-28T06:00:00Z"}, True),
    ("DateGreaterThan-epoch", {"DateGreaterThan": {"aws:EpochTime": "1700000000"}}, {"aws:EpochTime": "1800000000"}, True),
    ("IpAddress", {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}, {"aws:SourceIp": "192.0.2.7"}, True),
    ("NotIpAddress", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.1.2.3"}, False),
    ("keys-case-insensitive", {"StringEquals": {"AWS:PrincipalTag/Team": "pay"}}, {"aws:principaltag/team": "pay"}, True),
    ("several-keys-AND", {"StringEquals": {"a": "1", "b": "2"}}, {"a": "1", "b": "3"}, False),
    ("several-operators-AND", {"StringEquals": {"a": "1"}, "Bool": {"b": "true"}}, {"a": "1", "b": True}, True),
    ("several-operators-AND-fail", {"StringEquals": {"a": "1"}, "Bool": {"b": "true"}}, {"a": "1", "b": False}, False),
    ("IfExists-present-checked", {"StringEqualsIfExists": {"k": "pay"}}, {"k": "ops"}, False),
    ("IfExists-missing", {"StringEqualsIfExists": {"k": "pay"}}, {}, True),
    ("ForAnyValue-hit", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}}, {"aws:TagKeys": ["team", "x"]}, True),
    ("ForAnyValue-miss", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}, {"aws:TagKeys": ["team"]}, False),
    ("ForAnyValue-missing-is-false", {"ForAnyValue:StringEquals": {"aws:TagKeys": "env"}}, {}, False),
    ("ForAllValues-subset", {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}, {"aws:TagKeys": ["team", "env"]}, True),
    ("ForAllValues-not-subset", {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}, {"aws:TagKeys": ["env", "x"]}, False),
    ("ForAllValues-missing-is-true", {"ForAllValues:StringEquals": {"aws:TagKeys": "env"}}, {}, True),
    ("ForAllValues-empty-is-true", {"ForAllValues:StringEquals": {"aws:TagKeys": "env"}}, {"aws:TagKeys": []}, True),
    ("ForAllValues-StringNotLike-docs-row1", {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}, {"aws:TagKeys": ["key1:legal"]}, False),
    ("ForAllValues-StringNotLike-docs-row3", {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}, {"aws:TagKeys": ["key2:audit"]}, True),
    ("ForAnyValue-StringNotLike", {"ForAnyValue:StringNotLike": {"aws:TagKeys": "key1*"}}, {"aws:TagKeys": ["key1:a", "key2:b"]}, True),
    ("list-context-without-qualifier", {"StringEquals": {"k": "b"}}, {"k": ["a", "b"]}, True),
    ("variable", {"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, {"s3:prefix": "home/bob/x", "aws:username": "bob"}, True),
    ("variable-mismatch", {"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, {"s3:prefix": "home/eve/x", "aws:username": "bob"}, False),
    ("variable-missing", {"StringEquals": {"k": "${aws:username}"}}, {"k": ""}, False),
    ("variable-default", {"StringEquals": {"k": "${aws:username, 'nobody'}"}}, {"k": "nobody"}, True),
    ("variable-escape-star", {"StringLike": {"k": "a${*}"}}, {"k": "ab"}, False),
    ("variable-escape-star-literal", {"StringLike": {"k": "a${*}"}}, {"k": "a*"}, True),
    # A variable whose key is missing makes the statement invalid: no negation turns that into a match.
    ("variable-missing-under-negation", {"StringNotEquals": {"k": "${aws:PrincipalTag/team}"}}, {"k": "x"}, False),
    ("variable-missing-ForAllValues-negated", {"ForAllValues:StringNotLike": {"k": "${aws:username}*"}}, {"k": ["a"]}, False),
    ("variable-missing-one-of-several", {"StringEquals": {"k": ["${aws:username}", "x"]}}, {"k": "x"}, True),
    ("variable-multivalued-is-not-substituted", {"StringEquals": {"k": "${aws:TagKeys}"}}, {"k": "a", "aws:TagKeys": ["a", "b"]}, False),
    ("variable-default-with-spaces", {"StringEquals": {"k": "${aws:username , 'nobody'}"}}, {"k": "nobody"}, True),
    ("empty-condition", {}, {}, True),
]


@pytest.mark.parametrize(("condition", "context", "expected"), [c[1:] for c in CONDITION_CASES], ids=[c[0] for c in CONDITION_CASES])
def test_condition_matches(condition, context, expected):
    assert p.condition_matches(condition, context) is expected


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEqualsMaybe": {"k": "v"}},
        {"ForSomeValues:StringEquals": {"k": "v"}},
        {"NullIfExists": {"k": "true"}},
        {"StringEquals": "k=v"},
        {"StringEquals": {"k": {"nested": 1}}},
    ],
)
def test_unknown_or_malformed_condition_never_raises_and_never_matches(condition):
    result = p.check_condition(condition, {"k": "v"})
    assert result.matched is False
    assert result.failures


def test_unknown_operator_is_reported_in_notes():
    result = p.check_condition({"StringEqualsMaybe": {"k": "v"}, "StringEquals": {"k": "v"}}, {"k": "v"})
    assert result.notes == ("unknown condition operator 'StringEqualsMaybe': treated as not matching",)


def test_condition_failure_explains_key_and_values():
    result = p.check_condition({"StringEquals": {"k": ["a", "b"]}}, {"k": "c"})
    (failure,) = result.failures
    assert (failure.operator, failure.key, failure.expected, failure.actual) == ("StringEquals", "k", ("a", "b"), "c")
    assert "does not match" in failure.reason


def test_string_equals_with_wildcard_hints_at_string_like():
    result = p.check_condition({"StringEquals": {"k": "system:serviceaccount:payments:*"}}, {"k": SUBJECT})
    assert "StringLike would match" in result.failures[0].hint


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------

S3_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]}
    ],
}
DENY_SECRET = {
    "Statement": {"Sid": "NoSecret", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/secret/*"}
}


def test_evaluate_allow_names_the_statement():
    decision = p.evaluate([("payments-read", S3_READ)], "s3:GetObject", "arn:aws:s3:::b/k")
    assert decision.effect == "allow"
    assert decision.allowed
    assert [(r.policy, r.index, r.sid) for r in decision.matched] == [("payments-read", 0, "Read")]


def test_evaluate_explicit_deny_beats_allow():
    decision = p.evaluate(
        [("payments-read", S3_READ), ("guard", json.dumps(DENY_SECRET))], "s3:GetObject", "arn:aws:s3:::b/secret/k"
    )
    assert decision.effect == "explicit_deny"
    assert [r.sid for r in decision.matched] == ["NoSecret"]
    assert [r.sid for r in decision.allows] == ["Read"]


def test_evaluate_implicit_deny_when_nothing_applies():
    decision = p.evaluate([("payments-read", S3_READ)], "s3:PutObject", "arn:aws:s3:::b/k")
    assert decision.effect == "implicit_deny"
    assert decision.matched == ()


def test_evaluate_resource_star_means_no_specific_resource():
    scoped = {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "arn:aws:ec2:*:*:instance/*"}]}
    assert p.evaluate([("ec2", scoped)], "ec2:DescribeInstances").effect == "implicit_deny"
    assert p.evaluate([("ec2", scoped)], "ec2:DescribeInstances", None).effect == "allow"


def test_evaluate_reports_condition_that_kept_a_statement_from_applying():
    doc = {
        "Statement": [
            {"Sid": "OnlyVpce", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}
        ]
    }
    decision = p.evaluate([("p", doc)], "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SourceVpce": "vpce-2"})
    assert decision.effect == "implicit_deny"
    ((ref, result),) = decision.conditional
    assert ref.sid == "OnlyVpce"
    assert result.failures[0].key == "aws:SourceVpce"


def test_evaluate_conditional_deny_applies_only_when_condition_holds():
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Sid": "DenyOutsideRegion", "Effect": "Deny", "NotAction": "iam:*", "Resource": "*",
             "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["eu-west-1"]}}},
        ]
    }
    inside = p.evaluate([("p", doc)], "s3:GetObject", "*", {"aws:RequestedRegion": "eu-west-1"})
    outside = p.evaluate([("p", doc)], "s3:GetObject", "*", {"aws:RequestedRegion": "us-east-1"})
    assert inside.effect == "allow"
    assert outside.effect == "explicit_deny"
    assert outside.matched[0].sid == "DenyOutsideRegion"


def test_evaluate_unknown_operator_reported_not_raised():
    doc = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Weird": {"k": "v"}}}]}
    decision = p.evaluate([("p", doc)], "s3:GetObject")
    assert decision.effect == "implicit_deny"
    assert any("unknown condition operator 'Weird'" in note for note in decision.notes)


def test_evaluate_checks_principal_when_given():
    bucket_policy = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/payments-api"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
        ]
    }
    ok = p.evaluate([("bucket", bucket_policy)], "s3:GetObject", "arn:aws:s3:::b/k", principal=("AWS", SESSION))
    other = p.evaluate(
        [("bucket", bucket_policy)], "s3:GetObject", "arn:aws:s3:::b/k",
        principal=("AWS", f"arn:aws:sts::{ACCOUNT}:assumed-role/other/s"),
    )
    assert ok.effect == "allow"
    assert other.effect == "implicit_deny"


def test_evaluate_not_principal():
    doc = {"Statement": [{"Effect": "Deny", "NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"},
                          "Action": "s3:*", "Resource": "*"}]}
    assert p.evaluate([("b", doc)], "s3:GetObject", principal=("AWS", SESSION)).effect == "explicit_deny"
    admin = f"arn:aws:sts::{ACCOUNT}:assumed-role/admin/s"
    assert p.evaluate([("b", doc)], "s3:GetObject", principal=("AWS", admin)).effect == "implicit_deny"


def test_evaluate_names_the_bad_policy():
    with pytest.raises(InputError, match="inline-broken"):
        p.evaluate([("inline-broken", "{nope")], "s3:GetObject")


def test_statement_ref_describe():
    ref = p.evaluate([("payments-read", S3_READ)], "s3:GetObject", "arn:aws:s3:::b/k").matched[0]
    assert ref.describe() == "payments-read statement #0 (Sid 'Read')"


# --------------------------------------------------------------------------
# IRSA trust
# --------------------------------------------------------------------------


def analyze(trust, subject=SUBJECT, audience="sts.amazonaws.com", provider=PROVIDER):
    return p.analyze_web_identity_trust(trust, provider_arn=provider, subject=subject, audience=audience)


def test_oidc_issuer_of():
    assert p.oidc_issuer_of(PROVIDER) == ISSUER
    with pytest.raises(InputError):
        p.oidc_issuer_of(f"arn:aws:iam::{ACCOUNT}:role/x")


def test_irsa_trust_from_eks_guide_admits():
    verdict = analyze(irsa_trust())
    assert verdict.cause is None
    assert verdict.admitted
    assert verdict.warnings == ()


def test_irsa_trust_as_json_string_and_url_encoded():
    assert analyze(json.dumps(irsa_trust())).admitted
    assert analyze(quote(json.dumps(irsa_trust()))).admitted


def test_irsa_string_like_namespace_wildcard_admits():
    trust = irsa_trust(sub="system:serviceaccount:payments:*", operator="StringLike")
    assert analyze(trust).admitted


def test_irsa_no_sub_condition_admits_with_warning():
    verdict = analyze(irsa_trust(sub=None))
    assert verdict.admitted
    assert "every service account" in verdict.warnings[0]


def test_irsa_provider_mismatch_recreated_cluster():
    verdict = analyze(irsa_trust(issuer=OLD_ISSUER, provider=OLD_PROVIDER))
    assert verdict.cause == "TRUST_PROVIDER_MISMATCH"
    assert OLD_PROVIDER in verdict.detail and PROVIDER in verdict.detail
    assert len(verdict.candidates) == 1


def test_irsa_provider_mismatch_only_case_differs():
    verdict = analyze(irsa_trust(provider=PROVIDER.replace("EXAMPLE", "example")))
    assert verdict.cause == "TRUST_PROVIDER_MISMATCH"
    assert "letter case" in verdict.detail


def test_irsa_provider_mismatch_when_trust_is_for_ec2():
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    verdict = analyze(trust)
    assert verdict.cause == "TRUST_PROVIDER_MISMATCH"
    assert "No Allow statement" in verdict.detail


def test_irsa_second_cluster_statement_admits():
    trust = irsa_trust(issuer=OLD_ISSUER, provider=OLD_PROVIDER)
    trust["Statement"] += irsa_trust()["Statement"]
    verdict = analyze(trust)
    assert verdict.admitted
    assert verdict.candidates[0].index == 1


def test_irsa_action_missing():
    trust = irsa_trust()
    trust["Statement"][0]["Action"] = "sts:AssumeRole"
    verdict = analyze(trust)
    assert verdict.cause == "TRUST_ACTION_MISSING"
    assert "sts:AssumeRole" in verdict.detail and "sts:AssumeRoleWithWebIdentity" in verdict.detail


def test_irsa_action_wildcard_counts():
    trust = irsa_trust()
    trust["Statement"][0]["Action"] = ["sts:AssumeRole*"]
    assert analyze(trust).admitted


@pytest.mark.parametrize(
    ("sub", "operator", "fragment"),
    [
        ("system:serviceaccount:payments:api-old", "StringEquals", "api-old"),
        ("system:serviceaccount:default:api", "StringEquals", "default:api"),
        ("system:serviceaccount:payments:*", "StringEquals", "StringLike would match"),
        (["system:serviceaccount:a:b", "system:serviceaccount:c:d"], "StringEquals", "system:serviceaccount:c:d"),
        ("system:serviceaccount:orders:*", "StringLike", "orders:*"),
    ],
)
def test_irsa_subject_mismatch(sub, operator, fragment):
    verdict = analyze(irsa_trust(sub=sub, operator=operator))
    assert verdict.cause == "TRUST_SUBJECT_MISMATCH"
    assert fragment in verdict.detail
    assert f"{ISSUER}:sub" in verdict.detail


def test_irsa_subject_mismatch_keys_name_old_issuer():
    trust = irsa_trust(issuer=OLD_ISSUER)  # principal updated, condition keys not
    verdict = analyze(trust)
    assert verdict.cause == "TRUST_SUBJECT_MISMATCH"
    assert f"name issuer {OLD_ISSUER}, but this cluster's issuer is {ISSUER}" in verdict.detail
    assert verdict.detail.count("never in the request") == 1


def test_irsa_audience_mismatch():
    verdict = analyze(irsa_trust(aud="sts.amazonaws.com"), audience="vault")
    assert verdict.cause == "TRUST_AUDIENCE_MISMATCH"
    assert "'vault'" in verdict.detail


def test_irsa_audience_holds_subject_copy_paste():
    verdict = analyze(irsa_trust(sub=None, aud=SUBJECT))
    assert verdict.cause == "TRUST_AUDIENCE_MISMATCH"
    assert "service-account subject" in verdict.detail


def test_irsa_sub_and_aud_swapped_is_audience():
    verdict = analyze(irsa_trust(sub="sts.amazonaws.com", aud=SUBJECT))
    assert verdict.cause == "TRUST_AUDIENCE_MISMATCH"


def test_irsa_audience_statement_for_this_sa_beats_other_sa_statement():
    trust = irsa_trust(sub="system:serviceaccount:other:sa")
    trust["Statement"] += irsa_trust(aud="wrong")["Statement"]
    verdict = analyze(trust)
    assert verdict.cause == "TRUST_AUDIENCE_MISMATCH"
    assert verdict.candidates[0].index == 1


def test_irsa_condition_on_other_key_is_unexplained():
    trust = irsa_trust()
    trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceIp"] = "10.0.0.1"
    verdict = analyze(trust)
    assert verdict.cause == "UNEXPLAINED"
    assert "aws:SourceIp" in verdict.detail


def test_irsa_explicit_deny_on_subject():
    trust = irsa_trust(sub="system:serviceaccount:payments:*", operator="StringLike")
    trust["Statement"].append(
        {"Sid": "NoApi", "Effect": "Deny", "Principal": {"Federated": PROVIDER},
         "Action": "sts:AssumeRoleWithWebIdentity", "Condition": {"StringEquals": {f"{ISSUER}:sub": SUBJECT}}}
    )
    verdict = analyze(trust)
    assert verdict.cause == "TRUST_SUBJECT_MISMATCH"
    assert verdict.explicit_deny
    assert "NoApi" in verdict.detail
    assert verdict.candidates[0].sid == "NoApi"


def test_irsa_explicit_deny_on_audience_only():
    trust = irsa_trust()
    trust["Statement"].append(
        {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"}}}
    )
    verdict = analyze(trust)
    assert verdict.cause == "TRUST_AUDIENCE_MISMATCH"
    assert verdict.explicit_deny


def test_irsa_deny_for_other_subject_does_not_refuse():
    trust = irsa_trust()
    trust["Statement"].append(
        {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringEquals": {f"{ISSUER}:sub": "system:serviceaccount:kube-system:default"}}}
    )
    assert analyze(trust).admitted


def test_irsa_trust_policy_shape():
    trust = p.irsa_trust_policy(PROVIDER, "payments", "api")
    assert trust == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com", f"{ISSUER}:sub": SUBJECT}},
            }
        ],
    }
    assert analyze(trust).admitted


def test_merge_keeps_admitting_policy_unchanged():
    trust = irsa_trust()
    assert p.merge_irsa_statement(trust, PROVIDER, "payments", "api") == trust


@pytest.mark.parametrize("empty", [None, "", {}])
def test_merge_into_nothing_gives_fresh_policy(empty):
    assert p.merge_irsa_statement(empty, PROVIDER, "payments", "api") == p.irsa_trust_policy(PROVIDER, "payments", "api")


def test_merge_appends_for_new_cluster_and_keeps_old_statement():
    old = irsa_trust(issuer=OLD_ISSUER, provider=OLD_PROVIDER)
    ec2 = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    old["Statement"].append(ec2)
    merged = p.merge_irsa_statement(old, PROVIDER, "payments", "api")
    assert len(merged["Statement"]) == 3
    assert merged["Statement"][:2] == old["Statement"]
    assert analyze(merged).admitted


def test_merge_fixes_copy_paste_audience_in_place():
    trust = irsa_trust(sub=None, aud=SUBJECT)
    merged = p.merge_irsa_statement(trust, PROVIDER, "payments", "api")
    assert len(merged["Statement"]) == 1
    assert merged["Statement"][0]["Condition"] == {
        "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com", f"{ISSUER}:sub": SUBJECT}
    }
    assert analyze(merged).admitted


def test_merge_fixes_missing_action_in_place():
    trust = irsa_trust()
    trust["Statement"][0]["Action"] = "sts:AssumeRole"
    merged = p.merge_irsa_statement(json.dumps(trust), PROVIDER, "payments", "api")
    assert len(merged["Statement"]) == 1
    assert merged["Statement"][0]["Action"] == ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]
    assert analyze(merged).admitted


def test_merge_does_not_narrow_a_namespace_wide_statement():
    trust = irsa_trust(sub="system:serviceaccount:orders:*", operator="StringLike")
    merged = p.merge_irsa_statement(trust, PROVIDER, "payments", "api")
    assert merged["Statement"][0] == trust["Statement"][0]
    assert len(merged["Statement"]) == 2
    assert analyze(merged).admitted
    assert analyze(merged, subject="system:serviceaccount:orders:worker").admitted


def test_merge_keeps_other_condition_keys_when_fixing():
    trust = irsa_trust(aud="wrong")
    trust["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/team"] = "pay"
    merged = p.merge_irsa_statement(trust, PROVIDER, "payments", "api")
    assert merged["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/team"] == "pay"
    assert merged["Statement"][0]["Condition"]["StringEquals"][f"{ISSUER}:aud"] == "sts.amazonaws.com"


def test_merge_does_not_touch_input():
    trust = irsa_trust(aud="wrong")
    before = json.dumps(trust, sort_keys=True)
    p.merge_irsa_statement(trust, PROVIDER, "payments", "api")
    assert json.dumps(trust, sort_keys=True) == before


# --------------------------------------------------------------------------
# Pod Identity trust
# --------------------------------------------------------------------------


def test_pod_identity_trust_policy_from_eks_guide_admits():
    trust = p.pod_identity_trust_policy()
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Statement"][0]["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert p.analyze_pod_identity_trust(trust).admitted


def test_pod_identity_missing_tag_session():
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    verdict = p.analyze_pod_identity_trust(trust)
    assert verdict.cause == "POD_IDENTITY_TRUST"
    assert "only sts:AssumeRole" in verdict.detail


def test_pod_identity_actions_split_across_statements_admit():
    statement = {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}}
    trust = {"Statement": [{**statement, "Action": "sts:AssumeRole"}, {**statement, "Action": "sts:TagSession"}]}
    assert p.analyze_pod_identity_trust(trust).admitted


def test_pod_identity_irsa_only_trust_refused():
    verdict = p.analyze_pod_identity_trust(irsa_trust())
    assert verdict.cause == "POD_IDENTITY_TRUST"
    assert "No statement" in verdict.detail


def test_pod_identity_ec2_trust_refused():
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}
    assert p.analyze_pod_identity_trust(trust).cause == "POD_IDENTITY_TRUST"


def test_pod_identity_explicit_deny():
    trust = p.pod_identity_trust_policy()
    trust["Statement"].append({"Sid": "NoTags", "Effect": "Deny", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:TagSession"})
    verdict = p.analyze_pod_identity_trust(trust)
    assert verdict.cause == "POD_IDENTITY_TRUST"
    assert verdict.explicit_deny
    assert "NoTags" in verdict.detail


def test_pod_identity_conditions_with_and_without_context():
    trust = p.pod_identity_trust_policy()
    trust["Statement"][0]["Condition"] = {
        "StringEquals": {"aws:RequestTag/kubernetes-namespace": ["payments"],
                         "aws:RequestTag/kubernetes-service-account": ["api"]}
    }
    unknown = p.analyze_pod_identity_trust(trust)
    assert unknown.admitted and unknown.warnings
    tags = {"aws:RequestTag/kubernetes-namespace": "payments", "aws:RequestTag/kubernetes-service-account": "api"}
    assert p.analyze_pod_identity_trust(trust, context=tags).admitted
    other = {**tags, "aws:RequestTag/kubernetes-service-account": "worker"}
    assert p.analyze_pod_identity_trust(trust, context=other).cause == "POD_IDENTITY_TRUST"


# --------------------------------------------------------------------------
# iam_action_for
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "action"),
    [
        ("ec2.amazonaws.com", "DescribeInstances", "ec2:DescribeInstances"),
        ("monitoring.amazonaws.com", "PutMetricData", "cloudwatch:PutMetricData"),
        ("email.amazonaws.com", "SendEmail", "ses:SendEmail"),
        ("ses.amazonaws.com", "SendEmail", "ses:SendEmail"),
        ("tagging.amazonaws.com", "GetResources", "tag:GetResources"),
        ("cloudcontrolapi.amazonaws.com", "GetResource", "cloudformation:GetResource"),
        ("elasticloadbalancing.amazonaws.com", "DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancers"),
        ("es.amazonaws.com", "DescribeDomain", "es:DescribeDomain"),
        ("lambda.amazonaws.com", "GetFunction20150331v2", "lambda:GetFunction"),
        ("lambda.amazonaws.com", "ListFunctions20150331", "lambda:ListFunctions"),
        ("lambda.amazonaws.com", "Invoke", "lambda:InvokeFunction"),
        ("lambda.amazonaws.com", "InvokeWithResponseStream", "lambda:InvokeFunction"),
        ("lambda.amazonaws.com", "UpdateFunctionConfiguration20150331v2", "lambda:UpdateFunctionConfiguration"),
        ("s3.amazonaws.com", "ListObjects", "s3:ListBucket"),
        ("s3.amazonaws.com", "ListObjectsV2", "s3:ListBucket"),
        ("s3.amazonaws.com", "HeadBucket", "s3:ListBucket"),
        ("s3.amazonaws.com", "GetObject", "s3:GetObject"),
        ("s3.amazonaws.com", "HeadObject", "s3:GetObject"),
        ("s3.amazonaws.com", "ListBuckets", "s3:ListAllMyBuckets"),
        ("s3.amazonaws.com", "ListObjectVersions", "s3:ListBucketVersions"),
        ("s3.amazonaws.com", "CompleteMultipartUpload", "s3:PutObject"),
        ("s3.amazonaws.com", "CopyObject", "s3:PutObject"),
        ("s3.amazonaws.com", "DeleteObjects", "s3:DeleteObject"),
        ("s3.amazonaws.com", "GetBucketEncryption", "s3:GetEncryptionConfiguration"),
        ("s3.amazonaws.com", "PutBucketCors", "s3:PutBucketCORS"),
        ("eks-auth.amazonaws.com", "AssumeRoleForPodIdentity", "eks-auth:AssumeRoleForPodIdentity"),
        ("sts.amazonaws.com", "AssumeRoleWithWebIdentity", "sts:AssumeRoleWithWebIdentity"),
        ("kms.amazonaws.com", "Decrypt", "kms:Decrypt"),
        ("kms.amazonaws.com", "ReEncrypt", "kms:ReEncryptFrom"),
        ("dynamodb.amazonaws.com", "PutItem", "dynamodb:PutItem"),
        ("sqs.amazonaws.com", "SendMessage", "sqs:SendMessage"),
        ("sqs.amazonaws.com", "SendMessageBatch", "sqs:SendMessage"),
        ("sqs.amazonaws.com", "DeleteMessageBatch", "sqs:DeleteMessage"),
        ("sns.amazonaws.com", "PublishBatch", "sns:Publish"),
        ("execute-api.amazonaws.com", "Invoke", "execute-api:Invoke"),
        ("apigateway.amazonaws.com", "GetRestApis", "apigateway:GET"),
        ("apigateway.amazonaws.com", "CreateDeployment", "apigateway:POST"),
        ("logs.amazonaws.com", "PutLogEvents", "logs:PutLogEvents"),
        ("events.amazonaws.com", "PutEvents", "events:PutEvents"),
        ("states.amazonaws.com", "StartExecution", "states:StartExecution"),
        ("ssm.amazonaws.com", "GetParameter", "ssm:GetParameter"),
        ("secretsmanager.amazonaws.com", "GetSecretValue", "secretsmanager:GetSecretValue"),
        ("EC2.amazonaws.com", "RunInstances", "ec2:RunInstances"),
        ("s3.amazonaws.com.cn", "GetObject", "s3:GetObject"),
    ],
)
def test_iam_action_for(source, name, action):
    assert p.iam_action_for(source, name) == action


def test_iam_action_for_rejects_blank():
    with pytest.raises(InputError):
        p.iam_action_for("", "GetObject")


# --------------------------------------------------------------------------
# parse_denial_message
# --------------------------------------------------------------------------

USER = f"arn:aws:sts::{ACCOUNT}:assumed-role/x/y"


def deny(tail, action="s3:GetObject", resource="arn:aws:s3:::b/k"):
    return f"User: {USER} is not authorized to perform: {action} on resource: {resource} {tail}"


@pytest.mark.parametrize(
    ("message", "reason", "policy_type"),
    [
        (deny("because no identity-based policy allows the s3:GetObject action"), "no_identity_policy", "identity"),
        (deny("with an explicit deny in a service control policy"), "explicit_deny", "scp"),
        (deny("with an explicit deny in a resource control policy"), "explicit_deny", "rcp"),
        (deny("because no permissions boundary allows the s3:GetObject action"), "no_boundary", "boundary"),
        (deny("with an explicit deny in a permissions boundary"), "explicit_deny", "boundary"),
        (deny("because no session policy allows the s3:GetObject action"), "no_session_policy", "session"),
        (deny("with an explicit deny in a session policy"), "explicit_deny", "session"),
        (deny("with an explicit deny in an identity-based policy"), "explicit_deny", "identity"),
        (deny("because no resource-based policy allows the s3:GetObject action"), "no_resource_policy", "resource"),
        (deny("with an explicit deny in a resource-based policy"), "explicit_deny", "resource"),
        (deny("because no VPC endpoint policy allows the s3:GetObject action"), "no_vpce_policy", "vpce"),
        (deny("with an explicit deny in a VPC endpoint policy"), "explicit_deny", "vpce"),
        (deny("because no service control policy allows the s3:GetObject action"), "no_scp", "scp"),
    ],
)
def test_parse_denial_message_every_policy_type(message, reason, policy_type):
    denial = p.parse_denial_message(message)
    assert denial.principal_arn == USER
    assert denial.action == "s3:GetObject"
    assert denial.resource == "arn:aws:s3:::b/k"
    assert denial.reason == reason
    assert denial.policy_type == policy_type
    assert denial.explicit is (reason == "explicit_deny")


def test_parse_denial_with_sdk_prefix_and_policy_arn():
    scp = "arn:aws:organizations::987654321098:policy/o-qv5af4abcd/service_control_policy/p-2kgnabcd"
    message = (
        "An error occurred (AccessDenied) when calling the ListRoles operation: User: "
        f"arn:aws:iam::{ACCOUNT}:user/Matt is not authorized to perform: iam:ListRoles on resource: "
        f"arn:aws:iam::{ACCOUNT}:role/* with an explicit deny in a service control policy: {scp}"
    )
    denial = p.parse_denial_message(message)
    assert denial.principal_arn == f"arn:aws:iam::{ACCOUNT}:user/Matt"
    assert denial.action == "iam:ListRoles"
    assert denial.resource == f"arn:aws:iam::{ACCOUNT}:role/*"
    assert (denial.reason, denial.policy_type, denial.policy_arn) == ("explicit_deny", "scp", scp)


def test_parse_denial_without_resource():
    denial = p.parse_denial_message(
        f"User: {USER} is not authorized to perform: codecommit:ListRepositories because no identity-based "
        "policy allows the codecommit:ListRepositories action"
    )
    assert denial.action == "codecommit:ListRepositories"
    assert denial.resource is None
    assert denial.reason == "no_identity_policy"


def test_parse_denial_s3_quoted_resource():
    denial = p.parse_denial_message(
        f'User: {USER} is not authorized to perform: s3:GetObject on resource: "arn:aws:s3:::my bucket/k" '
        "because no resource-based policy allows the s3:GetObject action"
    )
    assert denial.resource == "arn:aws:s3:::my bucket/k"
    assert denial.reason == "no_resource_policy"


def test_parse_denial_kms_access_denied_exception():
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    denial = p.parse_denial_message(
        "An error occurred (AccessDeniedException) when calling the Decrypt operation: "
        f"User: {USER} is not authorized to perform: kms:Decrypt on resource: {key} "
        "because no resource-based policy allows the kms:Decrypt action"
    )
    assert (denial.action, denial.resource, denial.reason) == ("kms:Decrypt", key, "no_resource_policy")


def test_parse_denial_dynamodb_java_style_suffix():
    table = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"
    denial = p.parse_denial_message(
        f"User: {USER} is not authorized to perform: dynamodb:PutItem on resource: {table} because no "
        "identity-based policy allows the dynamodb:PutItem action (Service: DynamoDb, Status Code: 400, "
        "Request ID: ABC)"
    )
    assert (denial.action, denial.resource, denial.reason) == ("dynamodb:PutItem", table, "no_identity_policy")


def test_parse_denial_trust_refusal_has_no_reason():
    role = f"arn:aws:iam::{ACCOUNT}:role/payments-api"
    denial = p.parse_denial_message(f"User: {USER} is not authorized to perform: sts:AssumeRole on resource: {role}")
    assert (denial.action, denial.resource, denial.reason, denial.policy_type) == ("sts:AssumeRole", role, None, None)


def test_parse_denial_sts_web_identity_style():
    denial = p.parse_denial_message("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    assert denial.action == "sts:AssumeRoleWithWebIdentity"
    assert denial.principal_arn is None


def test_parse_denial_ec2_encoded():
    denial = p.parse_denial_message(
        "You are not authorized to perform this operation. Encoded authorization failure message: AbC-123_xyz"
    )
    assert denial.encoded_message == "AbC-123_xyz"
    assert denial.action is None and denial.reason is None


def test_parse_denial_ec2_with_user_clause_and_encoded():
    denial = p.parse_denial_message(
        f"You are not authorized to perform this operation. User: {USER} is not authorized to perform: "
        "ec2:RunInstances on resource: arn:aws:ec2:eu-west-1:111122223333:instance/* because no "
        "identity-based policy allows the ec2:RunInstances action. Encoded authorization failure message: Zm9v"
    )
    assert denial.action == "ec2:RunInstances"
    assert denial.resource == "arn:aws:ec2:eu-west-1:111122223333:instance/*"
    assert denial.reason == "no_identity_policy"
    assert denial.encoded_message == "Zm9v"


def test_parse_denial_explicit_without_type():
    denial = p.parse_denial_message(deny("with an explicit deny"))
    assert denial.reason == "explicit_deny"
    assert denial.policy_type is None


@pytest.mark.parametrize("message", [None, "", "An unknown error occurred", "Access Denied"])
def test_parse_denial_says_nothing_when_message_says_nothing(message):
    denial = p.parse_denial_message(message)
    assert (denial.principal_arn, denial.action, denial.resource, denial.reason) == (None, None, None, None)


# -- IAM Access Troubleshooter: the authorization id AccessDenied messages now end with ---------------
#
# The IAM User Guide's example ("Troubleshoot access denied error messages with authorization ID"),
# word for word but for the line breaks.
TROUBLESHOOTER_EXAMPLE = (
    "User: arn:aws:iam::123456789012:user/janedoe is not authorized to perform: iam:CreateInstanceProfile "
    "on resource: arn:aws:iam::123456789012:instance-profile/my-instance-profile with an explicit deny in an "
    "identity-based policy: arn:aws:iam::123456789012:policy/ExampleDenyPolicy. Go to "
    "https://us-east-1.console.aws.amazon.com/iam/home?region=us-east-1#/authorization-details/"
    "EXAMPLE1a2b3c4d5e6f7g8h9i0j for complete details, or call the GetRequestAuthorizationDetails API with the "
    "following authorization id: EXAMPLE1a2b3c4d5e6f7g8h9i0j"
)


def test_parse_denial_reads_the_access_troubleshooter_id_and_its_region():
    denial = p.parse_denial_message(TROUBLESHOOTER_EXAMPLE)
    assert (denial.authorization_id, denial.authorization_region) == ("EXAMPLE1a2b3c4d5e6f7g8h9i0j", "us-east-1")
    # The rest of the message reads as before.
    assert (denial.action, denial.resource) == (
        "iam:CreateInstanceProfile", "arn:aws:iam::123456789012:instance-profile/my-instance-profile")
    assert (denial.reason, denial.policy_type, denial.policy_arn) == (
        "explicit_deny", "identity", "arn:aws:iam::123456789012:policy/ExampleDenyPolicy")
    # What refusals alike share: the message without the per-refusal tail.
    assert denial.text.endswith("policy/ExampleDenyPolicy.")


def test_parse_denial_reads_an_id_without_the_console_link():
    denial = p.parse_denial_message(
        deny("because no identity-based policy allows the s3:GetObject action. Call the "
             "GetRequestAuthorizationDetails API with the following authorization id: 0a1b2c3d4e5f")
    )
    assert (denial.authorization_id, denial.authorization_region) == ("0a1b2c3d4e5f", None)
    assert denial.reason == "no_identity_policy"
    assert "0a1b2c3d4e5f" not in denial.text


@pytest.mark.parametrize("message", [
    deny("with an explicit deny"), "Access Denied",
    "You are not authorized to perform this operation. Encoded authorization failure message: Zm9v",
])
def test_parse_denial_without_an_authorization_id(message):
    denial = p.parse_denial_message(message)
    assert denial.authorization_id is None and denial.authorization_region is None
    assert denial.text == message
