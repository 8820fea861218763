"""Fixes that cannot hurt: whole documents, the faulty statement corrected in place, the
resource from the event.

Each fix's script is run in bash with ``aws``/``kubectl``/``jq`` replaced by recorders,
and the documents it writes are read back: what would reach IAM is what is checked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from trailscan.explain import fixes
from trailscan.inventory import Role
from trailscan.policy import analyze_pod_identity_trust, analyze_web_identity_trust, merge_irsa_statement

ACCOUNT = "111122223333"
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
OLD_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/OLD0000000000000"
SUBJECT = "system:serviceaccount:payments:api"


def run_script(fix: str, folder: Path) -> list[str]:
    """Run a fix's script (what follows its prose) and return the recorded tool calls."""
    summary, _, script = fix.partition("\n\n")
    assert summary and "\n" not in summary
    tools = folder / "bin"
    tools.mkdir(exist_ok=True)
    for tool in ("aws", "kubectl", "eksctl", "jq"):
        (tools / tool).write_text('#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "$RECORD"\n')
        (tools / tool).chmod(0o755)
    record = folder / "record.txt"
    done = subprocess.run(["bash", "-e", "-c", script], cwd=folder, capture_output=True, text=True,
                          env={"PATH": f"{tools}:/usr/bin:/bin", "RECORD": str(record)})
    assert done.returncode == 0, (script, done.stderr)
    return [line.split("/bin/", 1)[-1] for line in record.read_text().splitlines()] if record.exists() else []


def statement(sub, *, provider=PROVIDER, aud="sts.amazonaws.com", operator="StringEquals",
              action="sts:AssumeRoleWithWebIdentity") -> dict:
    issuer = provider.split(":oidc-provider/", 1)[1]
    return {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": action,
            "Condition": {operator: {f"{issuer}:sub": sub, f"{issuer}:aud": aud}}}


def trust(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def admitted(policy: dict) -> bool:
    return analyze_web_identity_trust(policy, provider_arn=PROVIDER, subject=SUBJECT, audience="sts.amazonaws.com").admitted


EC2 = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}


@pytest.mark.parametrize("broken", [
    statement("system:serviceaccount:payment:api"),                            # a typo in the namespace
    statement(["system:serviceaccount:orders:worker"]),                        # another service account's list
    statement(SUBJECT, aud="system:serviceaccount:payments:api"),              # the subject pasted under :aud
    statement(SUBJECT, action="sts:AssumeRole"),                               # the action missing
    statement(SUBJECT, aud="wrong"),
])
def test_the_statement_for_this_provider_is_corrected_in_place(broken):
    fixed = merge_irsa_statement(trust(EC2, broken), PROVIDER, "payments", "api")
    assert admitted(fixed)
    assert len(fixed["Statement"]) == 2 and fixed["Statement"][0] == EC2  # no second statement, others kept


def test_service_accounts_the_statement_admits_keep_working():
    fixed = merge_irsa_statement(trust(statement(["system:serviceaccount:orders:worker"])), PROVIDER, "payments", "api")
    for subject in (SUBJECT, "system:serviceaccount:orders:worker"):
        assert analyze_web_identity_trust(fixed, provider_arn=PROVIDER, subject=subject, audience="sts.amazonaws.com").admitted


def test_another_providers_statement_is_kept_and_one_is_added():
    """A recreated cluster: the old cluster's statement may still serve it."""
    old = statement(SUBJECT, provider=OLD_PROVIDER)
    fixed = merge_irsa_statement(trust(old), PROVIDER, "payments", "api")
    assert admitted(fixed) and fixed["Statement"][0] == old and len(fixed["Statement"]) == 2


def test_a_trust_fix_writes_the_whole_corrected_policy(tmp_path):
    role = Role(f"arn:aws:iam::{ACCOUNT}:role/payments-api", "payments-api", ACCOUNT,
                trust(EC2, statement("system:serviceaccount:payment:api")))
    from trailscan.identity import ServiceAccountRef

    fix = fixes.trust_fix(role, PROVIDER, ServiceAccountRef("payments", "api"), "sts.amazonaws.com",
                          "TRUST_SUBJECT_MISMATCH")
    calls = run_script(fix, tmp_path)
    assert calls == ["aws iam update-assume-role-policy --role-name payments-api --policy-document file://trust.json"]
    written = json.loads((tmp_path / "trust.json").read_text())
    assert admitted(written) and written["Statement"][0] == EC2 and len(written["Statement"]) == 2
    assert "it still admits system:serviceaccount:payment:api" in fix


def test_a_boundary_fix_writes_the_whole_boundary(tmp_path):
    boundary = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]}
    role = Role(f"arn:aws:iam::{ACCOUNT}:role/exporter", "exporter", ACCOUNT, trust(EC2),
                permissions_boundary=boundary, boundary_arn=f"arn:aws:iam::{ACCOUNT}:policy/dev-boundary")
    fix = fixes.boundary_fix(role, role.arn, "ec2:DescribeSnapshots", None)
    calls = run_script(fix, tmp_path)
    assert calls == [f"aws iam create-policy-version --policy-arn arn:aws:iam::{ACCOUNT}:policy/dev-boundary "
                     "--policy-document file://boundary.json --set-as-default"]
    written = json.loads((tmp_path / "boundary.json").read_text())
    assert written["Statement"][:2] == boundary["Statement"]  # nothing of the boundary is lost
    assert written["Statement"][2] == {"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"}


def test_a_boundary_fix_without_its_document_never_installs_a_fragment(tmp_path):
    role = Role(f"arn:aws:iam::{ACCOUNT}:role/exporter", "exporter", ACCOUNT, trust(EC2),
                boundary_arn=f"arn:aws:iam::{ACCOUNT}:policy/dev-boundary")
    fix = fixes.boundary_fix(role, role.arn, "s3:GetObject", "arn:aws:s3:::reports/q3.csv")
    calls = run_script(fix, tmp_path)
    # The current version is fetched and merged: boundary.json is jq's output, not the statement.
    assert any(c.startswith("aws iam get-policy-version") for c in calls)
    assert any(c.startswith("jq ") and "current-boundary.json" in c for c in calls)
    assert calls[-1].endswith("--policy-document file://boundary.json --set-as-default")
    assert json.loads((tmp_path / "statement.json").read_text())["Resource"] == "arn:aws:s3:::reports/q3.csv"


def test_an_aws_managed_boundary_is_not_edited():
    role = Role(f"arn:aws:iam::{ACCOUNT}:role/x", "x", ACCOUNT, trust(EC2),
                boundary_arn="arn:aws:iam::aws:policy/PowerUserAccess")
    fix = fixes.boundary_fix(role, role.arn, "iam:PassRole", None)
    assert "create-policy-version" not in fix and "put-role-permissions-boundary" in fix


@pytest.mark.parametrize("action, resource, expected", [
    ("s3:GetObject", "arn:aws:s3:::reports/q3.csv", "arn:aws:s3:::reports/q3.csv"),
    ("ec2:DescribeVolumes", None, "*"),                      # EC2 Describe* takes no resource
    ("sts:GetCallerIdentity", None, "*"),
    ("dynamodb:PutItem", None, f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:RESOURCE"),  # never "*" for a resource action
])
def test_a_permission_fix_names_the_resource(tmp_path, action, resource, expected):
    fix = fixes.missing_permission_fix(f"arn:aws:iam::{ACCOUNT}:role/app", None, action, resource,
                                       region="eu-west-1", account=ACCOUNT)
    run_script(fix, tmp_path)
    [written] = json.loads((tmp_path / "policy.json").read_text())["Statement"]
    assert written["Resource"] == expected


def test_a_pod_identity_fix_adds_the_missing_action_to_its_statement(tmp_path):
    pods = {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    role = Role(f"arn:aws:iam::{ACCOUNT}:role/orders", "orders", ACCOUNT, trust(EC2, pods))
    run_script(fixes.pod_trust_fix(role, role.arn, "prod", None), tmp_path)
    written = json.loads((tmp_path / "trust.json").read_text())
    assert len(written["Statement"]) == 2 and written["Statement"][0] == EC2
    assert written["Statement"][1]["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert analyze_pod_identity_trust(written).cause is None
