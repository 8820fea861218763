"""Fixes: what to change, as commands and policy documents a person can paste.

Every fix opens with one sentence (what to do), then a blank line and the commands or
documents.  Names that come from CloudTrail (a web-identity subject, a requested role
ARN) are callers' text: inside a command they are quoted for the shell (:func:`sh`), in
a comment or a prose line they are kept on one line (:func:`line`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trailscan.arn import role_name
from trailscan.explain.text import (
    POD_IDENTITY_ACTION,
    WEB_IDENTITY_ACTION,
    dump,
    inventory_hint,
    line,
    policy_kind,
    sh,
)
from trailscan.identity import ServiceAccountRef, credential_support, parse_user_agent
from trailscan.inventory import Role
from trailscan.kube import DEFAULT_AUDIENCE
from trailscan.policy import (
    Denial,
    irsa_trust_policy,
    load_policy,
    merge_irsa_statement,
    pod_identity_trust_policy,
)

WORKER_NODE_POLICY = "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"


def restart(sa_ref: ServiceAccountRef | None) -> str:
    ns = sa_ref.namespace if sa_ref else "NAMESPACE"
    return (
        f"kubectl rollout restart deployment -n {sh(ns)} DEPLOYMENT   "
        f"# each workload that runs as {line(sa_ref or 'the service account')}"
    )


def annotate_fix(sa_ref: ServiceAccountRef | None, role_arn: str | None, summary: str) -> str:
    ns, name = (sa_ref.namespace, sa_ref.name) if sa_ref else ("NAMESPACE", "SERVICE_ACCOUNT")
    annotation = sh(f"eks.amazonaws.com/role-arn={role_arn}")
    return (
        f"{summary}\n\n"
        f"kubectl annotate serviceaccount -n {sh(ns)} {sh(name)} {annotation} --overwrite\n"
        + restart(sa_ref)
    )


def role_mismatch_fix(sa_ref: ServiceAccountRef, *, requested: str, annotated: str) -> str:
    annotation = sh(f"eks.amazonaws.com/role-arn={requested}")
    return (
        f"Restart the pods of {line(sa_ref)} so they use the annotated role {line(role_name(annotated))}, or "
        f"annotate the service account with {line(role_name(requested))} if that is the right one.\n\n"
        f"# the annotation ({line(annotated)}) is right: restart, and drop any AWS_ROLE_ARN override from the pod spec\n"
        + restart(sa_ref)
        + f"\n# the requested role ({line(requested)}) is right:\n"
        f"kubectl annotate serviceaccount -n {sh(sa_ref.namespace)} {sh(sa_ref.name)} "
        f"{annotation} --overwrite\n"
        + restart(sa_ref)
    )


def sa_not_found_fix(sa_ref: ServiceAccountRef, role_arn: str | None) -> str:
    annotation = sh(f"eks.amazonaws.com/role-arn={role_arn or 'ROLE_ARN'}")
    return (
        f"Create the service account {line(sa_ref)} annotated with the role, or point the pod's "
        "serviceAccountName at an existing one.\n\n"
        f"kubectl create serviceaccount -n {sh(sa_ref.namespace)} {sh(sa_ref.name)}\n"
        f"kubectl annotate serviceaccount -n {sh(sa_ref.namespace)} {sh(sa_ref.name)} "
        f"{annotation} --overwrite\n"
        + restart(sa_ref)
    )


def oidc_provider_fix(cluster: str | None, issuer: str | None, audience: str | None) -> str:
    name = sh(cluster or "CLUSTER")
    url = sh(f"https://{issuer}") if issuer else "$(aws eks describe-cluster --name " + name + " --query cluster.identity.oidc.issuer --output text)"
    return (
        f"Create the IAM OIDC identity provider for the cluster's issuer.\n\n"
        f"eksctl utils associate-iam-oidc-provider --cluster {name} --approve\n"
        f"# or, without eksctl:\n"
        f"aws iam create-open-id-connect-provider --url {url} --client-id-list {sh(audience or DEFAULT_AUDIENCE)}"
    )


def thumbprint_fix(provider_arn: str | None, issuer: str | None) -> str:
    host = (issuer or "ISSUER").split("/", 1)[0]
    return (
        "Update the OIDC provider's thumbprint to the issuer's current certificate chain.\n\n"
        f"# the SHA-1 of the last certificate in the chain of {line(host)}:\n"
        f"openssl s_client -servername {sh(host)} -showcerts -connect {sh(host + ':443')} </dev/null 2>/dev/null "
        "| awk '/BEGIN/{c=\"\"} {c=c $0 \"\\n\"} /END/{last=c} END{printf \"%s\", last}' "
        "| openssl x509 -fingerprint -sha1 -noout | tr -d ':' | cut -d= -f2\n"
        f"aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn "
        f"{sh(provider_arn or 'PROVIDER_ARN')} --thumbprint-list THUMBPRINT"
    )


def role_not_found_fix(role_arn: str | None, provider_arn: str | None, sa_ref: ServiceAccountRef | None, audience: str) -> str:
    name = role_name(role_arn)
    if provider_arn and sa_ref:
        trust = dump(irsa_trust_policy(provider_arn, sa_ref.namespace, sa_ref.name, audience))
        return (
            f"Create the role {line(name)} with a trust policy for {line(sa_ref)}, or annotate the service "
            "account with an existing role.\n\n"
            f"aws iam create-role --role-name {sh(name)} --assume-role-policy-document file://trust.json\n"
            f"# trust.json:\n{trust}"
        )
    return f"Create the role {name}, or point the workload at an existing role."


def trust_fix(role: Role, provider_arn: str, sa_ref: ServiceAccountRef | None, audience: str, cause: str) -> str:
    if sa_ref is None:
        return (
            f"Change the trust policy of {role.name} so that a statement federating {provider_arn} allows "
            f"{WEB_IDENTITY_ACTION} for this subject and audience."
        )
    fixed = merge_irsa_statement(role.trust_policy, provider_arn, sa_ref.namespace, sa_ref.name, audience)
    what = {
        "TRUST_PROVIDER_MISMATCH": f"federate this cluster's OIDC provider {provider_arn}",
        "TRUST_ACTION_MISSING": f"allow {WEB_IDENTITY_ACTION}",
        "TRUST_SUBJECT_MISMATCH": f"admit {sa_ref.subject}",
        "TRUST_AUDIENCE_MISMATCH": f"admit the audience {audience}",
    }.get(cause, f"admit {sa_ref.subject}")
    return (
        f"Update the trust policy of {role.name} to {what}; other statements are kept.\n\n"
        f"aws iam update-assume-role-policy --role-name {sh(role.name)} --policy-document file://trust.json\n"
        f"# trust.json:\n{dump(fixed)}"
    )


def pod_trust_fix(role: Role | None, role_arn: str | None, cluster: str | None, tags: Any) -> str:
    wanted = pod_identity_trust_policy()
    if role is not None:
        policy = load_policy(role.trust_policy, name=f"trust policy of {role.name}")
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        policy["Statement"] = [*statements, *wanted["Statement"]]
        return (
            f"Let pods.eks.amazonaws.com assume {role.name} with sts:AssumeRole and sts:TagSession; other "
            "statements are kept.\n\n"
            f"aws iam update-assume-role-policy --role-name {sh(role.name)} --policy-document file://trust.json\n"
            f"# trust.json:\n{dump(policy)}"
        )
    name = sh(cluster or "CLUSTER")
    find = f"aws eks list-pod-identity-associations --cluster-name {name}"
    if tags is not None and getattr(tags, "workload", None):
        find += f" --namespace {sh(tags.namespace)} --service-account {sh(tags.service_account)}"
    return (
        f"Make the trust policy of {role_name(role_arn) if role_arn else 'the associated role'} let "
        "pods.eks.amazonaws.com call sts:AssumeRole and sts:TagSession.\n\n"
        + ("" if role_arn else f"# find the role: {find}, then aws eks describe-pod-identity-association --cluster-name {name} --association-id ID\n")
        + f"aws iam update-assume-role-policy --role-name {sh(role_name(role_arn) if role_arn else 'ROLE_NAME')} "
        "--policy-document file://trust.json   # keep the role's other statements\n"
        f"# the statement the trust policy needs:\n{dump(wanted)}"
    )


def agent_fix(node_role: str | None) -> str:
    name = role_name(node_role) if node_role else "NODE_ROLE"
    statement = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": POD_IDENTITY_ACTION, "Resource": "*"}],
    }
    return (
        f"Allow the node role {name} to call {POD_IDENTITY_ACTION} (AmazonEKSWorkerNodePolicy includes it).\n\n"
        f"aws iam attach-role-policy --role-name {sh(name)} --policy-arn {WORKER_NODE_POLICY}\n"
        f"# or an inline policy:\naws iam put-role-policy --role-name {sh(name)} --policy-name eks-pod-identity-agent "
        f"--policy-document file://policy.json\n# policy.json:\n{dump(statement)}"
    )


def node_fallback_fix(user_agent: str | None, action: str, cluster: str | None) -> str:
    sdk = parse_user_agent(user_agent)
    upgrade = ""
    if sdk is not None:
        support = credential_support(sdk)
        if support.irsa is False or support.pod_identity is False:
            wanted = support.irsa_minimum if support.irsa is False else support.pod_identity_minimum
            upgrade = (
            f"\n# first upgrade {line(sdk.label)} from {line(sdk.version)} to {wanted} or later: "
            "older versions ignore pod credentials"
        )
    name = sh(cluster or "CLUSTER")
    return (
        "Give the workload its own role (IRSA or EKS Pod Identity) and grant "
        f"{action} there, not to the node role.{upgrade}\n\n"
        "# IRSA:\n"
        "kubectl annotate serviceaccount -n NAMESPACE SERVICE_ACCOUNT eks.amazonaws.com/role-arn=ROLE_ARN --overwrite\n"
        "kubectl rollout restart deployment -n NAMESPACE DEPLOYMENT\n"
        "# or EKS Pod Identity:\n"
        f"aws eks create-pod-identity-association --cluster-name {name} --namespace NAMESPACE "
        "--service-account SERVICE_ACCOUNT --role-arn ROLE_ARN"
    )


def missing_permission_fix(role_arn: str | None, identity_arn: str | None, action: str, resource: str | None) -> str:
    statement = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource or "*"}],
    }
    policy_name = sh("allow-" + action.replace(":", "-"))
    if role_arn:
        command = (
            f"aws iam put-role-policy --role-name {sh(role_name(role_arn))} --policy-name {policy_name} "
            "--policy-document file://policy.json"
        )
        who = f"the role {role_name(role_arn)}"
    elif identity_arn and ":user/" in identity_arn:
        command = (
            f"aws iam put-user-policy --user-name {sh(identity_arn.rsplit('/', 1)[-1])} --policy-name {policy_name} "
            "--policy-document file://policy.json"
        )
        who = f"the user {identity_arn.rsplit('/', 1)[-1]}"
    else:
        command = "# attach it to the caller's identity policy"
        who = "the caller"
    narrow = "" if resource else " (narrow Resource to the ARNs the workload uses where the action supports it)"
    return f"Allow {action} to {who}{narrow}.\n\n{command}\n# policy.json:\n{dump(statement)}"


def boundary_fix(role: Role | None, role_arn: str | None, action: str, resource: str | None) -> str:
    boundary = role.boundary_arn if role is not None and role.boundary_arn else "the role's permissions boundary"
    statement = {"Effect": "Allow", "Action": action, "Resource": resource or "*"}
    return (
        f"Allow {action} in the permissions boundary {boundary} (a boundary caps what any policy of "
        f"{role_name(role_arn)} can grant).\n\n"
        f"# add this statement to a new default version of {boundary}:\n{dump(statement)}\n"
        f"aws iam create-policy-version --policy-arn {boundary if boundary.startswith('arn:') else 'BOUNDARY_POLICY_ARN'} "
        "--policy-document file://boundary.json --set-as-default"
    )


def resource_policy_fix(which: str, principal: str | None, action: str, resource: str | None) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": principal or "ROLE_ARN"},
        "Action": action,
        "Resource": resource or "RESOURCE_ARN",
    }
    return (
        f"Allow the caller in the {which} of {resource or 'the resource'}.\n\n"
        f"# add this statement to the {which}:\n{dump(statement)}"
    )


def explicit_deny_fix(denial: Denial, action: str, role_arn: str | None, resource: str | None) -> str:
    kind = policy_kind(denial.policy_type)
    target = denial.policy_arn or kind
    where = {
        "scp": "the organization's management account (aws organizations list-policies-for-target --target-id ACCOUNT_ID --filter SERVICE_CONTROL_POLICY)",
        "rcp": "the organization's management account (aws organizations list-policies-for-target --target-id ACCOUNT_ID --filter RESOURCE_CONTROL_POLICY)",
        "boundary": f"aws iam get-role --role-name {role_name(role_arn)} --query Role.PermissionsBoundary",
        "session": "the code or tool that assumed the role with a session policy (Policy / PolicyArns)",
        "resource": f"the resource policy of {resource or 'the resource'}",
        "vpce": "the VPC endpoint policy (aws ec2 describe-vpc-endpoints)",
        "identity": f"aws iam list-role-policies / list-attached-role-policies --role-name {role_name(role_arn)}",
    }.get(denial.policy_type or "", "the policies that apply to the call")
    return (
        f"Change {target} so it no longer denies {action} to this caller, or stop calling it.\n\n"
        f"Find it in {where}. An explicit deny cannot be overridden by any Allow."
    )


def unexplained_fix(unchecked: Sequence[str], *, default: str) -> str:
    hints = inventory_hint(unchecked) if unchecked else []
    if hints:
        options = ", ".join(dict.fromkeys(option.split(" (")[0] for option, _ in hints))
        lines = "\n".join(f"{option}: {how}" for option, how in hints)
        return f"Run again with the inventory trailscan lacked: {options}.\n\n{lines}"
    return default
