"""trailscan.policy.authorize: one request against every policy layer, three-valued (issue 18).

Each case cites the AWS documentation it follows:

* EVAL — IAM User Guide, "Policy evaluation logic" and "Policy evaluation for requests within a
  single account" (deny evaluation, SCPs, RCPs, resource-based policies, identity, boundary, session);
* CROSS — "Cross-account policy evaluation logic";
* BOUNDARY — "Permissions boundaries for IAM entities";
* SESSION — "Session policies" (IAM User Guide, policies_session) and the STS API reference;
* SCP / RCP — AWS Organizations, "SCP evaluation" and "Resource control policies" (RCPFullAWSAccess);
* KMS — AWS KMS Developer Guide, "Key policies in AWS KMS" (the default key policy, "allows access to
  the AWS account and enables IAM policies");
* CONDITION — "IAM JSON policy elements: Condition operators" (…IfExists, Null, negated operators) and
  "Single-valued vs. multivalued context keys" (ForAllValues / ForAnyValue);
* VARIABLES — "IAM policy elements: Variables and tags" (unresolvable variables, Version);
* NOTPRINCIPAL — "AWS JSON policy elements: NotPrincipal";
* ELEMENTS — Action/NotAction, Resource/NotResource element pages.

A key the request context does not show is *unknown*, not absent: a statement whose match depends on
one is undecided, and so may be the decision ("undetermined", naming the key).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailscan import policy as p
from trailscan.errors import InputError
from trailscan.policy import AuthRequest, NamedPolicy, PolicySet, RequestPrincipal, authorize

A = "111122223333"  # the workload's account
B = "444455556666"  # another account
ROLE = f"arn:aws:iam::{A}:role/payments-api"
SESSION = f"arn:aws:sts::{A}:assumed-role/payments-api/eks-payments-api-1"
ADMIN_SESSION = f"arn:aws:sts::{A}:assumed-role/admin/ops"
USER = f"arn:aws:iam::{A}:user/alice"
B_SESSION = f"arn:aws:sts::{B}:assumed-role/reporting/job-1"
BUCKET = "arn:aws:s3:::payments-data"
OBJECT = f"{BUCKET}/invoices/1.pdf"
KEY = f"arn:aws:kms:eu-west-1:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
PROVIDER = f"arn:aws:iam::{A}:oidc-provider/{ISSUER}"


def doc(*statements, version="2012-10-17"):
    document = {"Statement": list(statements)}
    if version:
        document["Version"] = version
    return document


def allow(action="s3:GetObject", resource=OBJECT, **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action="s3:GetObject", resource=OBJECT, **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def grant(principal, action="s3:GetObject", resource=OBJECT, effect="Allow", **extra):
    """A resource-policy statement."""
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource, **extra}


FULL_ACCESS = doc({"Sid": "FullAWSAccess", "Effect": "Allow", "Action": "*", "Resource": "*"})
REGION_GUARD = doc({
    "Sid": "DenyOutsideEuWest1", "Effect": "Deny", "NotAction": ["iam:*", "sts:*", "organizations:*"],
    "Resource": "*", "Condition": {"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}},
})
GUARDED_SCPS = [[("FullAWSAccess", FULL_ACCESS)], [("FullAWSAccess", FULL_ACCESS), ("region-guard", REGION_GUARD)]]
READ = doc(allow(["s3:GetObject", "s3:ListBucket"], [BUCKET, f"{BUCKET}/*"], Sid="ReadPayments"))
EC2_ONLY = doc(allow("ec2:*", "*"))
TEAM = "aws:PrincipalTag/team"
# NOTPRINCIPAL: deny everyone but the admin role (named with its account, as the page advises).
ADMIN_ONLY = doc({"Effect": "Deny", "NotPrincipal": {"AWS": [f"arn:aws:iam::{A}:role/admin", f"arn:aws:iam::{A}:root"]},
                  "Action": "s3:*", "Resource": f"{BUCKET}/*"})


def request(principal=SESSION, action="s3:GetObject", resource=OBJECT, **kwargs):
    return AuthRequest(principal, action, resource, **kwargs)


# Each case: (id, request, policies, decision, layer, missing keys).
CASES = [
    # -- EVAL: deny evaluation, then allows ---------------------------------------------------------
    ("eval-nothing-allows", request(), PolicySet(), "implicit_deny", "identity", ()),
    ("eval-identity-allows", request(), PolicySet(identity=[READ]), "allow", "identity", ()),
    ("eval-explicit-deny-beats-allow", request(),
     PolicySet(identity=[READ, doc(deny("s3:*", f"{BUCKET}/invoices/*"))]), "explicit_deny", "identity", ()),
    ("eval-resource-policy-deny-beats-identity-allow", request(),
     PolicySet(identity=[READ], resource=doc(grant("*", effect="Deny"))), "explicit_deny", "resource", ()),
    ("eval-other-action", request(action="s3:PutObject"), PolicySet(identity=[READ]), "implicit_deny", "identity", ()),
    # -- ELEMENTS: NotAction, NotResource, Action matching ------------------------------------------------
    ("elements-notaction-allows-the-rest", request(),
     PolicySet(identity=[doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})]), "allow", "identity", ()),
    ("elements-notaction-excludes", request(action="iam:CreateUser", resource="*"),
     PolicySet(identity=[doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})]), "implicit_deny", "identity", ()),
    ("elements-notresource-excludes", request(resource=f"{BUCKET}/secret/k"),
     PolicySet(identity=[doc({"Effect": "Allow", "Action": "s3:*", "NotResource": f"{BUCKET}/secret/*"})]),
     "implicit_deny", "identity", ()),
    ("elements-action-case-insensitive", request(), PolicySet(identity=[doc(allow("S3:getobject"))]), "allow", "identity", ()),
    ("elements-action-never-trimmed", request(), PolicySet(identity=[doc(allow("s3:GetObject "))]),
     "implicit_deny", "identity", ()),
    ("elements-no-specific-resource", request(action="ec2:DescribeInstances", resource="*"),
     PolicySet(identity=[doc(allow("ec2:*", f"arn:aws:ec2:*:{A}:instance/*"))]), "implicit_deny", "identity", ()),
    # -- BOUNDARY -----------------------------------------------------------------------------------------
    ("boundary-does-not-allow", request(), PolicySet(identity=[READ], permissions_boundary=EC2_ONLY),
     "implicit_deny", "boundary", ()),
    ("boundary-allows-identity-does-not", request(), PolicySet(identity=[EC2_ONLY], permissions_boundary=READ),
     "implicit_deny", "identity", ()),
    ("boundary-both-allow", request(), PolicySet(identity=[READ], permissions_boundary=FULL_ACCESS), "allow", "identity", ()),
    ("boundary-explicit-deny", request(),
     PolicySet(identity=[READ], permissions_boundary=doc(allow("*", "*"), deny("s3:*", "*"))), "explicit_deny", "boundary", ()),
    # -- SESSION ------------------------------------------------------------------------------------------
    ("session-policy-does-not-allow", request(), PolicySet(identity=[READ], session=[EC2_ONLY]),
     "implicit_deny", "session", ()),
    ("session-policy-cannot-add", request(), PolicySet(identity=[EC2_ONLY], session=[READ]), "implicit_deny", "identity", ()),
    ("session-get-caller-identity-needs-no-permission", request(action="sts:GetCallerIdentity", resource="*"),
     PolicySet(identity=[doc(deny("sts:*", "*"))]), "allow", None, ()),
    # -- SCP: every level must allow; the region guardrail of the issue ------------------------------------
    ("scp-a-level-without-allow", request(), PolicySet(identity=[READ], scps=[[FULL_ACCESS], [EC2_ONLY]]),
     "implicit_deny", "scp", ()),
    ("scp-guardrail-region-known-identity-lacks-action", request(action="s3:PutObject", context={"aws:RequestedRegion": "eu-west-1"}),
     PolicySet(identity=[READ], scps=GUARDED_SCPS), "implicit_deny", "identity", ()),
    ("scp-guardrail-region-known-allowed", request(context={"aws:RequestedRegion": "eu-west-1"}),
     PolicySet(identity=[READ], scps=GUARDED_SCPS), "allow", "identity", ()),
    ("scp-guardrail-other-region", request(context={"aws:RequestedRegion": "us-east-1"}),
     PolicySet(identity=[READ], scps=GUARDED_SCPS), "explicit_deny", "scp", ()),
    ("scp-guardrail-region-unknown", request(), PolicySet(identity=[READ], scps=GUARDED_SCPS),
     "undetermined", "scp", ("aws:RequestedRegion",)),
    ("scp-guardrail-region-unknown-identity-lacks-action", request(action="s3:PutObject"),
     PolicySet(identity=[READ], scps=GUARDED_SCPS), "undetermined", "scp", ("aws:RequestedRegion",)),
    # CONDITION: a negated operator holds when the key is (known to be) absent
    ("scp-guardrail-region-absent", request(absent=frozenset({"aws:RequestedRegion"})),
     PolicySet(identity=[READ], scps=GUARDED_SCPS), "explicit_deny", "scp", ()),
    ("scp-do-not-apply-to-anonymous", request(principal="anonymous"),
     PolicySet(scps=[[doc(deny("*", "*"))]], resource=doc(grant("*"))), "allow", "resource", ()),
    # -- RCP: RCPFullAWSAccess is always attached, so RCPs only deny ---------------------------------------
    ("rcp-deny-without-tls", request(context={"aws:SecureTransport": "false"}),
     PolicySet(identity=[READ], rcps=[[doc(grant("*", "s3:*", "*", effect="Deny",
                                                 Condition={"Bool": {"aws:SecureTransport": "false"}}))]]),
     "explicit_deny", "rcp", ()),
    ("rcp-with-tls", request(context={"aws:SecureTransport": "true"}),
     PolicySet(identity=[READ], rcps=[[doc(grant("*", "s3:*", "*", effect="Deny",
                                                 Condition={"Bool": {"aws:SecureTransport": "false"}}))]]),
     "allow", "identity", ()),
    ("rcp-level-without-policies-still-allows", request(), PolicySet(identity=[READ], rcps=[[]]), "allow", "identity", ()),
    # -- EVAL: resource-based policies within one account ------------------------------------------------
    ("same-account-session-named-needs-nothing-else", request(), PolicySet(resource=doc(grant({"AWS": SESSION}))),
     "allow", "resource", ()),
    ("same-account-role-named-needs-no-identity-policy", request(), PolicySet(resource=doc(grant({"AWS": ROLE}))),
     "allow", "resource", ()),
    ("same-account-role-named-limited-by-boundary", request(),
     PolicySet(resource=doc(grant({"AWS": ROLE})), permissions_boundary=EC2_ONLY), "implicit_deny", "boundary", ()),
    ("same-account-role-named-limited-by-session-policy", request(),
     PolicySet(resource=doc(grant({"AWS": ROLE})), session=[EC2_ONLY]), "implicit_deny", "session", ()),
    ("same-account-session-named-not-limited-by-boundary", request(),
     PolicySet(resource=doc(grant({"AWS": SESSION})), permissions_boundary=EC2_ONLY), "allow", "resource", ()),
    ("same-account-session-named-not-limited-by-session-policy", request(),
     PolicySet(resource=doc(grant({"AWS": SESSION})), session=[EC2_ONLY]), "allow", "resource", ()),
    ("same-account-user-named-not-limited-by-boundary", request(principal=USER),
     PolicySet(resource=doc(grant({"AWS": USER})), permissions_boundary=EC2_ONLY), "allow", "resource", ()),
    ("same-account-account-named-delegates-to-iam", request(), PolicySet(resource=doc(grant({"AWS": f"arn:aws:iam::{A}:root"}))),
     "implicit_deny", "identity", ()),
    ("same-account-account-named-and-identity-allows", request(),
     PolicySet(identity=[READ], resource=doc(grant({"AWS": A}))), "allow", "identity", ()),
    ("same-account-either-side-suffices", request(), PolicySet(identity=[READ], resource=doc(grant({"AWS": ADMIN_SESSION}))),
     "allow", "identity", ()),
    ("same-account-other-principal-named", request(), PolicySet(resource=doc(grant({"AWS": ADMIN_SESSION}))),
     "implicit_deny", "identity", ()),
    ("same-account-statement-without-principal-never-applies", request(),
     PolicySet(resource=doc(allow())), "implicit_deny", "identity", ()),
    ("same-account-role-name-case-insensitive", request(),
     PolicySet(resource=doc(grant({"AWS": f"arn:aws:iam::{A}:role/Payments-API"}))), "allow", "resource", ()),
    # -- CROSS: both sides must allow ---------------------------------------------------------------------
    ("cross-account-only-identity-allows", request(B_SESSION, resource_account=A),
     PolicySet(identity=[READ]), "implicit_deny", "resource", ()),
    ("cross-account-only-resource-allows", request(B_SESSION, resource_account=A),
     PolicySet(resource=doc(grant({"AWS": B_SESSION}))), "implicit_deny", "identity", ()),
    ("cross-account-both-allow", request(B_SESSION, resource_account=A),
     PolicySet(identity=[READ], resource=doc(grant({"AWS": B_SESSION}))), "allow", "identity", ()),
    ("cross-account-account-named-and-identity-allows", request(B_SESSION, resource_account=A),
     PolicySet(identity=[READ], resource=doc(grant({"AWS": f"arn:aws:iam::{B}:root"}))), "allow", "identity", ()),
    ("cross-account-other-account-named", request(B_SESSION, resource_account=A),
     PolicySet(identity=[READ], resource=doc(grant({"AWS": f"arn:aws:iam::{A}:root"}))), "implicit_deny", "resource", ()),
    ("cross-account-boundary-still-limits", request(B_SESSION, resource_account=A),
     PolicySet(identity=[READ], resource=doc(grant({"AWS": B_SESSION})), permissions_boundary=EC2_ONLY),
     "implicit_deny", "boundary", ()),
    # -- KMS: the key policy must allow, or delegate to IAM ----------------------------------------------
    ("kms-key-policy-does-not-delegate", request(action="kms:Decrypt", resource=KEY),
     PolicySet(identity=[doc(allow("kms:Decrypt", KEY))],
               resource=doc(grant({"AWS": f"arn:aws:iam::{A}:role/key-admin"}, "kms:*", "*"))),
     "implicit_deny", "resource", ()),
    ("kms-key-policy-delegates-identity-allows", request(action="kms:Decrypt", resource=KEY),
     PolicySet(identity=[doc(allow("kms:Decrypt", KEY))], resource=doc(grant({"AWS": f"arn:aws:iam::{A}:root"}, "kms:*", "*"))),
     "allow", "identity", ()),
    ("kms-key-policy-delegates-identity-does-not", request(action="kms:Decrypt", resource=KEY),
     PolicySet(resource=doc(grant({"AWS": f"arn:aws:iam::{A}:root"}, "kms:*", "*"))), "implicit_deny", "identity", ()),
    ("kms-key-policy-names-the-role", request(action="kms:Decrypt", resource=KEY),
     PolicySet(resource=doc(grant({"AWS": ROLE}, "kms:Decrypt", "*"))), "allow", "resource", ()),
    ("kms-no-key-policy-given", request(action="kms:Decrypt", resource=KEY),
     PolicySet(identity=[doc(allow("kms:Decrypt", KEY))]), "implicit_deny", "resource", ()),
    ("kms-action-on-no-key-needs-no-key-policy", request(action="kms:ListKeys", resource="*"),
     PolicySet(identity=[doc(allow("kms:ListKeys", "*"))]), "allow", "identity", ()),
    ("kms-cross-account-key", request(B_SESSION, action="kms:Decrypt", resource=KEY),
     PolicySet(identity=[doc(allow("kms:Decrypt", KEY))], resource=doc(grant({"AWS": f"arn:aws:iam::{B}:root"}, "kms:Decrypt", "*"))),
     "allow", "identity", ()),
    # -- NOTPRINCIPAL ----------------------------------------------------------------------------------
    ("notprincipal-deny-everyone-else", request(), PolicySet(identity=[READ], resource=ADMIN_ONLY),
     "explicit_deny", "resource", ()),
    ("notprincipal-spares-the-named", request(ADMIN_SESSION), PolicySet(identity=[READ], resource=ADMIN_ONLY),
     "allow", "identity", ()),
    ("notprincipal-naming-the-account-spares-no-one-else", request(USER), PolicySet(identity=[READ], resource=ADMIN_ONLY),
     "explicit_deny", "resource", ()),
    # -- trust policies: IRSA, Pod Identity, AssumeRole ----------------------------------------------------
    ("irsa-trust-admits", request(PROVIDER, "sts:AssumeRoleWithWebIdentity", ROLE,
                                  context={f"{ISSUER}:sub": "system:serviceaccount:payments:api", f"{ISSUER}:aud": "sts.amazonaws.com"}),
     PolicySet(resource=p.irsa_trust_policy(PROVIDER, "payments", "api")), "allow", "resource", ()),
    ("irsa-trust-other-subject", request(PROVIDER, "sts:AssumeRoleWithWebIdentity", ROLE,
                                         context={f"{ISSUER}:sub": "system:serviceaccount:payments:web", f"{ISSUER}:aud": "sts.amazonaws.com"}),
     PolicySet(resource=p.irsa_trust_policy(PROVIDER, "payments", "api")), "implicit_deny", "resource", ()),
    ("irsa-trust-subject-unknown", request(PROVIDER, "sts:AssumeRoleWithWebIdentity", ROLE,
                                           context={f"{ISSUER}:aud": "sts.amazonaws.com"}),
     PolicySet(resource=p.irsa_trust_policy(PROVIDER, "payments", "api")), "undetermined", "resource", (f"{ISSUER}:sub",)),
    ("pod-identity-trust-admits", request("pods.eks.amazonaws.com", "sts:AssumeRole", ROLE),
     PolicySet(resource=p.pod_identity_trust_policy()), "allow", "resource", ()),
    ("pod-identity-trust-missing", request("pods.eks.amazonaws.com", "sts:AssumeRole", ROLE),
     PolicySet(resource=doc(grant({"Service": "ec2.amazonaws.com"}, "sts:AssumeRole", ROLE))), "implicit_deny", "resource", ()),
    ("assume-role-trust-delegates-to-account", request(USER, "sts:AssumeRole", ROLE),
     PolicySet(identity=[doc(allow("sts:AssumeRole", ROLE))], resource=doc(grant({"AWS": A}, "sts:AssumeRole", ROLE))),
     "allow", "identity", ()),
    ("assume-role-trust-delegates-identity-lacks", request(USER, "sts:AssumeRole", ROLE),
     PolicySet(resource=doc(grant({"AWS": A}, "sts:AssumeRole", ROLE))), "implicit_deny", "identity", ()),
    ("assume-role-identity-allows-trust-does-not", request(USER, "sts:AssumeRole", ROLE),
     PolicySet(identity=[doc(allow("sts:AssumeRole", ROLE))], resource=doc(grant({"AWS": B}, "sts:AssumeRole", ROLE))),
     "implicit_deny", "resource", ()),
    # -- CONDITION: three-valued ------------------------------------------------------------------------
    ("condition-tag-matches", request(RequestPrincipal(SESSION, tags={"team": "payments"})),
     PolicySet(identity=[doc(allow(Condition={"StringEquals": {TEAM: "payments"}}))]), "allow", "identity", ()),
    ("condition-tag-unknown", request(), PolicySet(identity=[doc(allow(Condition={"StringEquals": {TEAM: "payments"}}))]),
     "undetermined", "identity", (TEAM,)),
    ("condition-tag-known-absent", request(RequestPrincipal(SESSION, tags_complete=True)),
     PolicySet(identity=[doc(allow(Condition={"StringEquals": {TEAM: "payments"}}))]), "implicit_deny", "identity", ()),
    ("condition-ifexists-unknown", request(),
     PolicySet(identity=[doc(allow(Condition={"StringEqualsIfExists": {"s3:ExistingObjectTag/team": "payments"}}))]),
     "undetermined", "identity", ("s3:ExistingObjectTag/team",)),
    ("condition-ifexists-absent", request(context={"s3:ExistingObjectTag/team": None}),
     PolicySet(identity=[doc(allow(Condition={"StringEqualsIfExists": {"s3:ExistingObjectTag/team": "payments"}}))]),
     "allow", "identity", ()),
    ("condition-null-unknown", request(),
     PolicySet(identity=[doc(allow(Condition={"Null": {"aws:TokenIssueTime": "false"}}))]), "undetermined", "identity",
     ("aws:TokenIssueTime",)),
    ("condition-null-present", request(context={"aws:TokenIssueTime": "2026-11-28T06:00:00Z"}),
     PolicySet(identity=[doc(allow(Condition={"Null": {"aws:TokenIssueTime": "false"}}))]), "allow", "identity", ()),
    ("condition-forallvalues-absent-is-true", request(context={"aws:TagKeys": None}),
     PolicySet(identity=[doc(allow(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}))]), "allow", "identity", ()),
    ("condition-forallvalues-unknown", request(),
     PolicySet(identity=[doc(allow(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}))]),
     "undetermined", "identity", ("aws:TagKeys",)),
    ("condition-foranyvalue-absent-is-false", request(context_complete=True),
     PolicySet(identity=[doc(allow(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}}))]),
     "implicit_deny", "identity", ()),
    ("condition-negated-deny-on-unknown-key", request(),
     PolicySet(identity=[READ, doc(deny("s3:*", "*", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))]),
     "undetermined", "identity", ("aws:SourceIp",)),
    ("condition-negated-deny-on-absent-key", request(absent=frozenset({"aws:SourceIp"})),
     PolicySet(identity=[READ, doc(deny("s3:*", "*", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))]),
     "explicit_deny", "identity", ()),
    ("condition-arnnotlike-principal-arn-unknown-for-a-session", request(),
     PolicySet(identity=[READ], resource=doc(grant("*", "s3:*", f"{BUCKET}/*", effect="Deny",
                                                   Condition={"ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{A}:role/payments-*"}}))),
     "undetermined", "resource", ("aws:PrincipalArn",)),
    ("condition-arnnotlike-principal-arn-from-role-arn", request(RequestPrincipal(SESSION, role_arn=ROLE)),
     PolicySet(identity=[READ], resource=doc(grant("*", "s3:*", f"{BUCKET}/*", effect="Deny",
                                                   Condition={"ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{A}:role/payments-*"}}))),
     "allow", "identity", ()),
    ("condition-principal-account-derived", request(),
     PolicySet(identity=[doc(allow(Condition={"StringEquals": {"aws:PrincipalAccount": A}}))]), "allow", "identity", ()),
    # -- VARIABLES ------------------------------------------------------------------------------------
    ("variables-pod-identity-abac-tag-present",
     request(RequestPrincipal(SESSION, tags={"kubernetes-namespace": "payments"}), resource="arn:aws:s3:::bucket/payments/x"),
     PolicySet(identity=[doc(allow(resource="arn:aws:s3:::bucket/${aws:PrincipalTag/kubernetes-namespace}/*"))]),
     "allow", "identity", ()),
    ("variables-pod-identity-abac-other-namespace",
     request(RequestPrincipal(SESSION, tags={"kubernetes-namespace": "web"}), resource="arn:aws:s3:::bucket/payments/x"),
     PolicySet(identity=[doc(allow(resource="arn:aws:s3:::bucket/${aws:PrincipalTag/kubernetes-namespace}/*"))]),
     "implicit_deny", "identity", ()),
    ("variables-pod-identity-abac-tag-unknown", request(resource="arn:aws:s3:::bucket/payments/x"),
     PolicySet(identity=[doc(allow(resource="arn:aws:s3:::bucket/${aws:PrincipalTag/kubernetes-namespace}/*"))]),
     "undetermined", "identity", ("aws:PrincipalTag/kubernetes-namespace",)),
    ("variables-username-absent-for-a-role-session", request(resource=f"{BUCKET}/home/x"),
     PolicySet(identity=[doc(allow(resource=f"{BUCKET}/home/${{aws:username}}/*"))]), "implicit_deny", "identity", ()),
    ("variables-username-of-a-user", request(USER, resource=f"{BUCKET}/home/alice/x"),
     PolicySet(identity=[doc(allow(resource=f"{BUCKET}/home/${{aws:username}}/*"))]), "allow", "identity", ()),
    ("variables-literal-without-version", request(USER, resource=f"{BUCKET}/home/${{aws:username}}/x"),
     PolicySet(identity=[doc(allow(resource=f"{BUCKET}/home/${{aws:username}}/*"), version=None)]), "allow", "identity", ()),
    ("variables-deny-notresource-unresolvable-does-not-apply", request(RequestPrincipal(SESSION, tags_complete=True)),
     PolicySet(identity=[READ, doc({"Effect": "Deny", "Action": "s3:*", "NotResource": f"{BUCKET}/${{aws:PrincipalTag/team}}/*"})]),
     "allow", "identity", ()),
    ("variables-deny-negated-condition-unresolvable-does-not-apply", request(RequestPrincipal(SESSION, tags_complete=True),
                                                                          context={"s3:prefix": "x/"}),
     PolicySet(identity=[READ, doc(deny("s3:*", "*", Condition={"StringNotLike": {"s3:prefix": "${aws:PrincipalTag/team}/*"}}))]),
     "allow", "identity", ()),
    ("variables-deny-negated-condition-tag-present", request(RequestPrincipal(SESSION, tags={"team": "payments"}),
                                                             context={"s3:prefix": "x/"}),
     PolicySet(identity=[READ, doc(deny("s3:*", "*", Condition={"StringNotLike": {"s3:prefix": "${aws:PrincipalTag/team}/*"}}))]),
     "explicit_deny", "identity", ()),
    # -- VPC endpoint policies ----------------------------------------------------------------------------
    ("vpce-does-not-allow", request(), PolicySet(identity=[READ], vpc_endpoint=doc(grant("*", "s3:*", "arn:aws:s3:::other/*"))),
     "implicit_deny", "vpc_endpoint", ()),
    ("vpce-allows", request(), PolicySet(identity=[READ], vpc_endpoint=doc(grant("*", "s3:*", "*"))), "allow", "identity", ()),
    # -- what is not known ---------------------------------------------------------------------------
    ("unknown-resource-specific-statement", request(resource=None), PolicySet(identity=[READ]),
     "undetermined", "identity", (p.UNKNOWN_RESOURCE,)),
    ("unknown-resource-star-statement", request(resource=None), PolicySet(identity=[FULL_ACCESS]), "allow", "identity", ()),
    # an unread identity policy might deny as well as allow
    ("incomplete-identity-known-part-allows", request(), PolicySet(identity=[READ], incomplete=frozenset({"identity"})),
     "undetermined", "identity", ()),
    ("incomplete-identity-known-part-denies", request(),
     PolicySet(identity=[READ, doc(deny())], incomplete=frozenset({"identity"})), "explicit_deny", "identity", ()),
    ("incomplete-identity-known-part-silent", request(), PolicySet(identity=[EC2_ONLY], incomplete=frozenset({"identity"})),
     "undetermined", "identity", ()),
    ("incomplete-scp", request(), PolicySet(identity=[READ], incomplete=frozenset({"scp"})), "undetermined", "scp", ()),
    # -- the root user and anonymous callers ----------------------------------------------------------
    ("root-user-needs-no-identity-policy", request(f"arn:aws:iam::{A}:root"), PolicySet(), "allow", "identity", ()),
    ("root-user-bound-by-scp", request(f"arn:aws:iam::{A}:root"), PolicySet(scps=[[doc(deny("s3:*", "*"))]]),
     "explicit_deny", "scp", ()),
    ("anonymous-public-bucket", request("anonymous"), PolicySet(resource=doc(grant("*"))), "allow", "resource", ()),
    ("anonymous-private-bucket", request("anonymous"), PolicySet(resource=doc(grant({"AWS": ROLE}))), "implicit_deny", "resource", ()),
]


@pytest.mark.parametrize(("req", "policies", "decision", "layer", "missing"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_authorize(req, policies, decision, layer, missing):
    result = authorize(req, policies)
    assert (result.decision, result.layer, result.missing_keys) == (decision, layer, missing), result.describe()
    if decision == "undetermined":
        assert len(result.outcomes) > 1 and result.allowed in (None, False)
    else:
        assert result.outcomes == {decision}
        assert result.allowed is (decision == "allow")


def test_explicit_deny_names_its_statements():
    result = authorize(request(context={"aws:RequestedRegion": "us-east-1"}), PolicySet(identity=[READ], scps=GUARDED_SCPS))
    ((ref),) = result.statements
    assert (ref.policy, ref.index, ref.sid) == ("region-guard", 0, "DenyOutsideEuWest1")
    assert result.describe() == "explicit_deny at the scp layer: region-guard statement #0 (Sid 'DenyOutsideEuWest1')"


def test_allow_names_the_granting_statements():
    result = authorize(request(), PolicySet(identity=[NamedPolicy("arn:aws:iam::111122223333:policy/read", READ)]))
    assert [(ref.policy, ref.sid) for ref in result.statements] == [("arn:aws:iam::111122223333:policy/read", "ReadPayments")]


def test_undetermined_says_what_is_still_possible_and_which_statements_wait():
    result = authorize(request(), PolicySet(identity=[READ], scps=GUARDED_SCPS))
    assert result.outcomes == {"allow", "explicit_deny"}
    assert [ref.sid for ref in result.statements] == ["DenyOutsideEuWest1"]
    assert "aws:RequestedRegion" in result.describe()


def test_unknowns_that_cannot_change_the_outcome_are_not_asked_for():
    # The guardrail's region is unknown, but an explicit deny elsewhere decides anyway.
    result = authorize(request(), PolicySet(identity=[READ, doc(deny("s3:*", "*"))], scps=GUARDED_SCPS))
    assert (result.decision, result.layer, result.missing_keys) == ("explicit_deny", "identity", ())


def test_every_layer_reports_its_own_result():
    result = authorize(
        request(), PolicySet(identity=[READ], permissions_boundary=EC2_ONLY, scps=GUARDED_SCPS,
                             resource=doc(grant({"AWS": ADMIN_SESSION})))
    )
    assert [(layer.label, layer.allows, layer.denies) for layer in result.layers] == [
        ("scp[0]", True, False), ("scp[1]", True, None), ("resource", False, False),
        ("identity", True, False), ("boundary", False, False),
    ]
    assert result.layers[1].missing_keys == ("aws:RequestedRegion",)


def test_statements_of_bad_documents_are_named():
    with pytest.raises(InputError, match="broken-inline"):
        authorize(request(), PolicySet(identity=[("broken-inline", "{nope")]))


def test_principal_type_and_account_come_from_the_arn():
    principal = RequestPrincipal(SESSION)
    assert (principal.type, principal.account, principal.kind) == ("AssumedRole", A, "AWS")
    assert RequestPrincipal(PROVIDER).kind == "Federated"
    assert RequestPrincipal("pods.eks.amazonaws.com").type == "Service"
    with pytest.raises(InputError):
        RequestPrincipal("not-an-arn")


def test_a_resource_without_account_is_taken_to_be_the_principals_and_said_so():
    result = authorize(request(), PolicySet(identity=[READ]))
    assert not result.cross_account
    assert any("taken to be the principal's" in note for note in result.notes)


# -- properties -----------------------------------------------------------------------------------------

KEYS = ("ctx:k1", "ctx:k2")
OPERATORS = ("StringEquals", "StringNotEquals", "StringEqualsIfExists", "StringNotEqualsIfExists", "StringLike",
             "ForAllValues:StringEquals", "ForAnyValue:StringNotEquals", "Null")
statements = st.builds(
    lambda effect, action, resource, condition: {
        "Effect": effect, "Action": action, "Resource": resource, **({"Condition": condition} if condition else {})
    },
    st.sampled_from(["Allow", "Allow", "Deny"]),
    st.sampled_from(["s3:GetObject", "s3:*", "ec2:*"]),
    st.sampled_from(["*", OBJECT, f"{BUCKET}/other/*", f"{BUCKET}/${{ctx:k2}}/*"]),
    st.none() | st.builds(
        lambda operator, key, value: {operator: {key: "true" if operator == "Null" else value}},
        st.sampled_from(OPERATORS), st.sampled_from(KEYS), st.sampled_from(["a", "b", "${ctx:k2}", "a*"]),
    ),
)
documents = st.lists(statements, min_size=1, max_size=3).map(lambda items: doc(*items))
policy_sets = st.builds(
    lambda identity, boundary, scp, resource, principal: PolicySet(
        identity=identity, permissions_boundary=boundary, scps=[[FULL_ACCESS, scp]] if scp else (),
        resource=doc(*[{**s, "Principal": {"AWS": principal}} for s in resource["Statement"]]) if resource else None,
    ),
    st.lists(documents, max_size=2), st.none() | documents, st.none() | documents, st.none() | documents,
    st.sampled_from(["*", SESSION, ROLE, A]),
)
# Each key: unknown (left out), known absent (None), or a value.
contexts = st.fixed_dictionaries({key: st.sampled_from(["unknown", None, "a", "b", "invoices"]) for key in KEYS})


@given(policy_sets, contexts)
@settings(max_examples=300, deadline=None)
def test_undetermined_covers_every_way_the_unknown_keys_could_be(policies, values):
    """Sound three-valued logic: whatever the unknown keys turn out to be, the decision with them known is
    one of the outcomes said to be possible — and with every key known, nothing is undetermined."""
    known = {key: value for key, value in values.items() if value != "unknown"}
    unknown = [key for key in KEYS if key not in known]
    partial = authorize(request(context=known), policies)
    for completion in itertools.product([None, "a", "b", "invoices"], repeat=len(unknown)):
        full = authorize(request(context={**known, **dict(zip(unknown, completion))}, context_complete=True), policies)
        assert full.decision != "undetermined"
        assert full.decision in partial.outcomes, (partial.describe(), full.describe(), completion)


@given(st.lists(documents, min_size=1, max_size=3), contexts)
@settings(max_examples=200, deadline=None)
def test_identity_policies_alone_agree_with_evaluate(identity, values):
    context = {key: value for key, value in values.items() if value != "unknown"}
    named = [(f"p{i}", document) for i, document in enumerate(identity)]
    assert authorize(request(context=context, context_complete=True), PolicySet(identity=named)).decision == (
        p.evaluate(named, "s3:GetObject", OBJECT, context).effect
    )
