"""Fixes: what to change, as commands and policy documents a person can paste.

Every fix is one paragraph of prose (what to do, for people), a blank line, and a
script that can be pasted into a shell as a whole (:func:`fix`): commands, ``#``
comments, and policy documents written to files by quoted here-documents.  Nothing in
the script is prose, so a code block's copy button copies only what is meant to run.

Names that come from CloudTrail (a web-identity subject, a requested role ARN) are
callers' text: in a command they are quoted for the shell (:func:`sh`), in a comment
kept on one line (:func:`comment`), and in a document JSON-encoded inside a
here-document whose delimiter no JSON line can be.  Policies are written whole — the
document the command installs — never a fragment next to a command that would replace
the whole policy with it.
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

#: Actions that take no resource-level permission ("Resource": "*" is the only way).
_ACTION_ONLY = ("ec2:Describe*", "sts:GetCallerIdentity", "s3:ListAllMyBuckets", "iam:ListRoles", "iam:ListPolicies",
                "eks:ListClusters", "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData",
                "logs:DescribeLogGroups", "kms:ListKeys", "kms:ListAliases", "sqs:ListQueues", "sns:ListTopics",
                "dynamodb:ListTables", "secretsmanager:ListSecrets", "tag:GetResources")


def fix(summary: str, *script: str) -> str:
    """A fix: *summary* (prose) then, after a blank line, the script lines."""
    lines = [part for part in script if part]
    return summary.strip() + ("\n\n" + "\n".join(lines) if lines else "")


def extend(text: str, *script: str) -> str:
    """A fix with more script lines after its own."""
    summary, _, own = text.partition("\n\n")
    return fix(summary, *own.splitlines(), *script)


def script_of(text: str) -> list[str]:
    """The script lines of a fix."""
    return text.partition("\n\n")[2].splitlines()


def comment(text: object) -> str:
    """A ``#`` comment line: whatever *text* holds stays on this one line."""
    return "# " + line(text)


def heredoc(filename: str, document: object) -> str:
    """``cat > FILE <<'EOF'`` … ``EOF``: writes *document* as JSON, nothing expanded."""
    return f"cat > {filename} <<'EOF'\n{dump(document)}\nEOF"


def restart(sa_ref: ServiceAccountRef | None) -> str:
    ns = sa_ref.namespace if sa_ref else "NAMESPACE"
    who = str(sa_ref) if sa_ref else "the service account"
    return f"kubectl rollout restart deployment -n {sh(ns)} DEPLOYMENT   " + comment(f"each workload that runs as {who}")


def annotate_fix(sa_ref: ServiceAccountRef | None, role_arn: str | None, summary: str) -> str:
    ns, name = (sa_ref.namespace, sa_ref.name) if sa_ref else ("NAMESPACE", "SERVICE_ACCOUNT")
    annotation = sh(f"eks.amazonaws.com/role-arn={role_arn}")
    return fix(summary, f"kubectl annotate serviceaccount -n {sh(ns)} {sh(name)} {annotation} --overwrite", restart(sa_ref))


def token_expired_fix(sa_ref: ServiceAccountRef | None) -> str:
    return fix(
        "Make the workload re-read its projected token instead of caching it, then restart its pods.",
        comment("use an SDK version that reloads AWS_WEB_IDENTITY_TOKEN_FILE on every refresh, check the node's "
                "clock (chrony), and never copy the token out of the pod; then:"),
        restart(sa_ref),
    )


def idp_unreachable_fix(issuer: str | None) -> str:
    return fix(
        "Retry: STS reaches the EKS OIDC issuer over the internet, and this error is usually transient.",
        comment("if it persists, check that the issuer's discovery document answers from the internet, and see "
                "the AWS Health Dashboard for STS and EKS in the region:"),
        "curl -fsS " + sh("https://" + (issuer or "ISSUER") + "/.well-known/openid-configuration"),
    )


def role_mismatch_fix(sa_ref: ServiceAccountRef, *, requested: str, annotated: str) -> str:
    annotation = sh(f"eks.amazonaws.com/role-arn={requested}")
    return fix(
        f"Restart the pods of {line(sa_ref)} so they use the annotated role {line(role_name(annotated))}, or "
        f"annotate the service account with {line(role_name(requested))} if that is the right one.",
        comment(f"the annotation ({annotated}) is right: restart, and drop any AWS_ROLE_ARN override from the pod spec"),
        restart(sa_ref),
        comment(f"the requested role ({requested}) is right:"),
        f"kubectl annotate serviceaccount -n {sh(sa_ref.namespace)} {sh(sa_ref.name)} {annotation} --overwrite",
        restart(sa_ref),
    )


def sa_not_found_fix(sa_ref: ServiceAccountRef, role_arn: str | None) -> str:
    annotation = sh(f"eks.amazonaws.com/role-arn={role_arn or 'ROLE_ARN'}")
    return fix(
        f"Create the service account {line(sa_ref)} annotated with the role, or point the pod's "
        "serviceAccountName at an existing one.",
        f"kubectl create serviceaccount -n {sh(sa_ref.namespace)} {sh(sa_ref.name)}",
        f"kubectl annotate serviceaccount -n {sh(sa_ref.namespace)} {sh(sa_ref.name)} {annotation} --overwrite",
        restart(sa_ref),
    )


def oidc_provider_fix(cluster: str | None, issuer: str | None, audience: str | None) -> str:
    name = sh(cluster or "CLUSTER")
    url = sh(f"https://{issuer}") if issuer else (
        "$(aws eks describe-cluster --name " + name + " --query cluster.identity.oidc.issuer --output text)"
    )
    return fix(
        "Create the IAM OIDC identity provider for the cluster's issuer.",
        f"eksctl utils associate-iam-oidc-provider --cluster {name} --approve",
        comment("or, without eksctl:"),
        f"aws iam create-open-id-connect-provider --url {url} --client-id-list {sh(audience or DEFAULT_AUDIENCE)}",
    )


def thumbprint_fix(provider_arn: str | None, issuer: str | None) -> str:
    host = (issuer or "ISSUER").split("/", 1)[0]
    return fix(
        "Update the OIDC provider's thumbprint to the issuer's current certificate chain.",
        comment(f"the SHA-1 of the last certificate in the chain of {host}:"),
        f"THUMBPRINT=$(openssl s_client -servername {sh(host)} -showcerts -connect {sh(host + ':443')} </dev/null "
        "2>/dev/null | awk '/BEGIN/{c=\"\"} {c=c $0 \"\\n\"} /END/{last=c} END{printf \"%s\", last}' "
        "| openssl x509 -fingerprint -sha1 -noout | tr -d ':' | cut -d= -f2)",
        f"aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn "
        f"{sh(provider_arn or 'PROVIDER_ARN')} --thumbprint-list \"$THUMBPRINT\"",
    )


def role_not_found_fix(role_arn: str | None, provider_arn: str | None, sa_ref: ServiceAccountRef | None, audience: str) -> str:
    name = role_name(role_arn)
    if provider_arn and sa_ref:
        return fix(
            f"Create the role {line(name)} with a trust policy for {line(sa_ref)}, or annotate the service "
            "account with an existing role.",
            heredoc("trust.json", irsa_trust_policy(provider_arn, sa_ref.namespace, sa_ref.name, audience)),
            f"aws iam create-role --role-name {sh(name)} --assume-role-policy-document file://trust.json",
        )
    return fix(f"Create the role {line(name)}, or point the workload at an existing role.")


def trust_fix(role: Role, provider_arn: str, sa_ref: ServiceAccountRef | None, audience: str, cause: str) -> str:
    if sa_ref is None:
        return fix(
            f"Change the trust policy of {line(role.name)} so that a statement federating {provider_arn} allows "
            f"{WEB_IDENTITY_ACTION} for this subject and audience."
        )
    fixed = merge_irsa_statement(role.trust_policy, provider_arn, sa_ref.namespace, sa_ref.name, audience)
    what = {
        "TRUST_PROVIDER_MISMATCH": f"federate this cluster's OIDC provider {provider_arn}",
        "TRUST_ACTION_MISSING": f"allow {WEB_IDENTITY_ACTION}",
        "TRUST_SUBJECT_MISMATCH": f"admit {sa_ref.subject}",
        "TRUST_AUDIENCE_MISMATCH": f"admit the audience {audience}",
    }.get(cause, f"admit {sa_ref.subject}")
    others = sorted({
        value for statement in fixed.get("Statement") or [] if isinstance(statement, dict)
        for block in (statement.get("Condition") or {}).values() if isinstance(block, dict)
        for key, values in block.items() if str(key).endswith(":sub")
        for value in ([values] if isinstance(values, str) else values if isinstance(values, list) else [])
        if isinstance(value, str) and value != sa_ref.subject
    })
    before = load_policy(role.trust_policy, name=f"trust policy of {role.name}").get("Statement")
    added = len(fixed.get("Statement") or []) > len(before if isinstance(before, list) else [before])
    how = "a statement for this provider is added" if added else "the statement for this provider is corrected"
    return fix(
        f"Update the trust policy of {line(role.name)} to {line(what)}: {how}, other statements are kept.",
        comment(f"it still admits {', '.join(others)}: remove those no service account uses") if others else "",
        comment(f"the whole trust policy of {role.name}, corrected:"),
        heredoc("trust.json", fixed),
        f"aws iam update-assume-role-policy --role-name {sh(role.name)} --policy-document file://trust.json",
    )


def pod_trust_fix(role: Role | None, role_arn: str | None, cluster: str | None, tags: Any) -> str:
    wanted = pod_identity_trust_policy()
    if role is not None:
        policy = load_policy(role.trust_policy, name=f"trust policy of {role.name}")
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        policy["Statement"] = _with_pod_identity(statements, wanted["Statement"][0])
        return fix(
            f"Let pods.eks.amazonaws.com assume {line(role.name)} with sts:AssumeRole and sts:TagSession: its "
            "statement gains the action it lacks (or is added), other statements are kept.",
            comment(f"the whole trust policy of {role.name}, with the statement EKS Pod Identity needs:"),
            heredoc("trust.json", policy),
            f"aws iam update-assume-role-policy --role-name {sh(role.name)} --policy-document file://trust.json",
        )
    name = sh(cluster or "CLUSTER")
    find = f"aws eks list-pod-identity-associations --cluster-name {name}"
    if tags is not None and getattr(tags, "workload", None):
        find += f" --namespace {sh(tags.namespace)} --service-account {sh(tags.service_account)}"
    target = sh(role_name(role_arn)) if role_arn else '"$ROLE_NAME"'
    return fix(
        f"Make the trust policy of {line(role_name(role_arn)) if role_arn else 'the associated role'} let "
        "pods.eks.amazonaws.com call sts:AssumeRole and sts:TagSession, keeping its other statements.",
        *((comment("find the role of the association:"), find,
           f"aws eks describe-pod-identity-association --cluster-name {name} --association-id ASSOCIATION_ID",
           "ROLE_NAME=ROLE_NAME   # the role name the association names") if not role_arn else ()),
        comment("the role's current trust policy, and the statement to add to its Statement list:"),
        f"aws iam get-role --role-name {target} --query Role.AssumeRolePolicyDocument > current-trust.json",
        heredoc("statement.json", wanted["Statement"][0]),
        "jq --slurpfile add statement.json '.Statement = ([.Statement] | flatten) + $add' current-trust.json > trust.json",
        f"aws iam update-assume-role-policy --role-name {target} --policy-document file://trust.json",
    )


def _with_pod_identity(statements: list[Any], wanted: dict[str, Any]) -> list[Any]:
    """The statements with EKS Pod Identity trusted: the one Allow statement for
    pods.eks.amazonaws.com (without conditions) gains the actions it lacks; with none, or
    several, the statement EKS documents is added.  Other statements are kept."""
    from trailscan.policy import action_matches

    for_pods = [
        index for index, statement in enumerate(statements)
        if isinstance(statement, dict) and str(statement.get("Effect", "")).lower() == "allow"
        and "NotAction" not in statement and not statement.get("Condition")
        and "pods.eks.amazonaws.com" in _service_principals(statement.get("Principal"))
    ]
    if len(for_pods) != 1:
        return [*statements, wanted]
    statement = dict(statements[for_pods[0]])
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else [a for a in actions or [] if isinstance(a, str)]
    missing = [a for a in wanted["Action"] if not any(action_matches(have, a) for have in actions)]
    statement["Action"] = [*actions, *missing]
    return [*statements[:for_pods[0]], statement, *statements[for_pods[0] + 1:]]


def _service_principals(principal: Any) -> list[str]:
    service = principal.get("Service") if isinstance(principal, dict) else None
    return [service] if isinstance(service, str) else [s for s in service or [] if isinstance(s, str)]


def agent_fix(node_role: str | None) -> str:
    name = role_name(node_role) if node_role else "NODE_ROLE"
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": POD_IDENTITY_ACTION, "Resource": "*"}],
    }
    return fix(
        f"Allow the node role {line(name)} to call {POD_IDENTITY_ACTION} (AmazonEKSWorkerNodePolicy includes it).",
        f"aws iam attach-role-policy --role-name {sh(name)} --policy-arn {WORKER_NODE_POLICY}",
        comment("or an inline policy:"),
        heredoc("policy.json", document),
        f"aws iam put-role-policy --role-name {sh(name)} --policy-name eks-pod-identity-agent "
        "--policy-document file://policy.json",
    )


def node_fallback_fix(user_agent: str | None, action: str, cluster: str | None) -> str:
    sdk = parse_user_agent(user_agent)
    upgrade = None
    if sdk is not None:
        support = credential_support(sdk)
        if support.irsa is False or support.pod_identity is False:
            wanted = support.irsa_minimum if support.irsa is False else support.pod_identity_minimum
            upgrade = comment(f"first upgrade {sdk.label} from {sdk.version} to {wanted} or later: "
                              "older versions ignore pod credentials")
    name = sh(cluster or "CLUSTER")
    return fix(
        f"Give the workload its own role (IRSA or EKS Pod Identity) and grant {action} there, not to the node role.",
        upgrade or "",
        comment("IRSA:"),
        "kubectl annotate serviceaccount -n NAMESPACE SERVICE_ACCOUNT eks.amazonaws.com/role-arn=ROLE_ARN --overwrite",
        "kubectl rollout restart deployment -n NAMESPACE DEPLOYMENT",
        comment("or EKS Pod Identity:"),
        f"aws eks create-pod-identity-association --cluster-name {name} --namespace NAMESPACE "
        "--service-account SERVICE_ACCOUNT --role-arn ROLE_ARN",
    )


def resource_for(action: str, resource: str | None, *, region: str | None = None, account: str | None = None) -> str:
    """The ``Resource`` of an Allow statement for *action*: the resource the event names;
    ``*`` only for an action that takes no resource; else a placeholder ARN to fill in —
    never a wildcard granting the action on everything."""
    if resource:
        return resource
    from trailscan.policy import action_matches

    if any(action_matches(pattern, action) for pattern in _ACTION_ONLY):
        return "*"
    service = action.split(":", 1)[0]
    return f"arn:aws:{service}:{region or 'REGION'}:{account or 'ACCOUNT_ID'}:RESOURCE"


def missing_permission_fix(role_arn: str | None, identity_arn: str | None, action: str, resource: str | None,
                           *, region: str | None = None, account: str | None = None) -> str:
    target = resource_for(action, resource, region=region, account=account)
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": target}]}
    policy_name = sh("allow-" + action.replace(":", "-"))
    if role_arn:
        command = (f"aws iam put-role-policy --role-name {sh(role_name(role_arn))} --policy-name {policy_name} "
                   "--policy-document file://policy.json")
        who = f"the role {role_name(role_arn)}"
    elif identity_arn and ":user/" in identity_arn:
        command = (f"aws iam put-user-policy --user-name {sh(identity_arn.rsplit('/', 1)[-1])} --policy-name "
                   f"{policy_name} --policy-document file://policy.json")
        who = f"the user {identity_arn.rsplit('/', 1)[-1]}"
    else:
        command = comment("attach policy.json to the caller's identity")
        who = "the caller"
    placeholder = target.endswith(":RESOURCE")
    return fix(
        f"Allow {action} to {line(who)} on "
        + (f"{line(target)}." if not placeholder else "the resources the workload uses (the event does not name them)."),
        comment("replace RESOURCE in the ARN below with the resources the workload uses") if placeholder else "",
        heredoc("policy.json", document),
        command,
    )


def boundary_fix(role: Role | None, role_arn: str | None, action: str, resource: str | None,
                 *, region: str | None = None, account: str | None = None) -> str:
    """The boundary's whole new version: the document it has, plus the statement — never a
    fragment beside ``--set-as-default``, which would make the fragment the boundary."""
    statement = {"Effect": "Allow", "Action": action, "Resource": resource_for(action, resource, region=region,
                                                                              account=account)}
    boundary = role.boundary_arn if role is not None and role.boundary_arn else None
    who = role_name(role_arn)
    summary = (f"Allow {action} in the permissions boundary {boundary or 'of the role'} (a boundary caps what "
               f"any policy of {line(who)} can grant).")
    if boundary and boundary.startswith("arn:aws:iam::aws:policy/"):
        return fix(
            summary.replace("Allow", "The boundary is an AWS managed policy, which cannot be edited: allow", 1),
            comment("attach a boundary of your own that allows the action, or remove the boundary:"),
            f"aws iam put-role-permissions-boundary --role-name {sh(who)} --permissions-boundary BOUNDARY_POLICY_ARN",
        )
    arn = sh(boundary) if boundary else '"$BOUNDARY_ARN"'
    if role is not None and role.permissions_boundary is not None and boundary:
        document = load_policy(role.permissions_boundary, name=f"permissions boundary {boundary}")
        statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        document["Statement"] = [*statements, statement]
        return fix(
            summary,
            comment("the whole boundary, as its default version reads today, with the statement added:"),
            heredoc("boundary.json", document),
            f"aws iam create-policy-version --policy-arn {arn} --policy-document file://boundary.json --set-as-default",
        )
    return fix(
        summary,
        *((f"BOUNDARY_ARN=$(aws iam get-role --role-name {sh(who)} --query Role.PermissionsBoundary."
           "PermissionsBoundaryArn --output text)",) if not boundary else ()),
        comment("the boundary's current default version, and the statement to add to it:"),
        f"VERSION=$(aws iam get-policy --policy-arn {arn} --query Policy.DefaultVersionId --output text)",
        f"aws iam get-policy-version --policy-arn {arn} --version-id \"$VERSION\" "
        "--query PolicyVersion.Document > current-boundary.json",
        heredoc("statement.json", statement),
        "jq --slurpfile add statement.json '.Statement = ([.Statement] | flatten) + $add' "
        "current-boundary.json > boundary.json",
        f"aws iam create-policy-version --policy-arn {arn} --policy-document file://boundary.json --set-as-default",
    )


def resource_policy_fix(which: str, principal: str | None, action: str, resource: str | None) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": principal or "ROLE_ARN"},
        "Action": action,
        "Resource": resource or "RESOURCE_ARN",
    }
    return fix(
        f"Allow the caller in the {which} of {line(resource or 'the resource')}.",
        comment(f"the statement to add to the {which}'s Statement list (keep the others):"),
        heredoc("statement.json", statement),
    )


def explicit_deny_fix(denial: Denial, action: str, role_arn: str | None, resource: str | None) -> str:
    kind = policy_kind(denial.policy_type)
    target = denial.policy_arn or kind
    where = {
        "scp": ("aws organizations list-policies-for-target --target-id ACCOUNT_ID --filter SERVICE_CONTROL_POLICY"
                "   # from the management account"),
        "rcp": ("aws organizations list-policies-for-target --target-id ACCOUNT_ID --filter RESOURCE_CONTROL_POLICY"
                "   # from the management account"),
        "boundary": f"aws iam get-role --role-name {sh(role_name(role_arn))} --query Role.PermissionsBoundary",
        "session": comment("the code or tool that assumed the role with a session policy (Policy / PolicyArns)"),
        "resource": comment(f"the resource policy of {resource or 'the resource'}"),
        "vpce": "aws ec2 describe-vpc-endpoints --query 'VpcEndpoints[].[VpcEndpointId,PolicyDocument]'",
        "identity": (f"aws iam list-role-policies --role-name {sh(role_name(role_arn))}; "
                     f"aws iam list-attached-role-policies --role-name {sh(role_name(role_arn))}"),
    }.get(denial.policy_type or "", comment("the policies that apply to the call"))
    return fix(
        f"Change {line(target)} so it no longer denies {action} to this caller, or stop calling it. An explicit "
        "deny cannot be overridden by any Allow.",
        comment("find it:"),
        where,
    )


def unexplained_fix(unchecked: Sequence[str], *, default: str) -> str:
    hints = inventory_hint(unchecked) if unchecked else []
    if hints:
        options = ", ".join(dict.fromkeys(option.split(" (")[0] for option, _ in hints))
        return fix(f"Run again with the inventory trailscan lacked: {options}.",
                   *(comment(f"{option}: {how}") for option, how in hints))
    return fix(default)
