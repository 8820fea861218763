"""Fixes written in the policy layer that decided: the bucket, key, queue, topic, secret,
repository, function or endpoint policy, the SCP or RCP, the boundary, the identity policy.

They follow :mod:`.fixes`: one paragraph of prose, a blank line, then a script — the whole
document the command installs, written by a quoted here-document, never a fragment beside
a command that would replace the policy with it.  A statement to add is added to the
document as it was read; a Deny is shown removed, with a comment to narrow it instead
where it must stay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from trailscan.arn import role_name
from trailscan.explain.fixes import comment, fix, heredoc, resource_for
from trailscan.explain.text import line, sh
from trailscan.layers import resource_kind
from trailscan.policy import NamedPolicy, StatementRef, load_policy

__all__ = ["allow_in_layer_fix", "deny_in_layer_fix", "read_layers_fix"]

_FILES = {"s3": "bucket-policy.json", "kms": "key-policy.json", "sqs": "queue-policy.json", "sns": "topic-policy.json",
          "secretsmanager": "secret-policy.json", "ecr": "repository-policy.json", "lambda": "function-policy.json"}


def _statements(document: Any) -> list[dict[str, Any]]:
    policy = load_policy(document)
    found = policy["Statement"]
    return [dict(item) for item in (found if isinstance(found, list) else [found])]


def _with(document: Any, *, add: dict[str, Any] | None = None, drop: Sequence[int] = ()) -> dict[str, Any]:
    policy = load_policy(document)
    statements = [s for index, s in enumerate(_statements(policy)) if index not in set(drop)]
    policy["Statement"] = [*statements, *([add] if add else [])]
    return policy


def _install_resource(holder: str, document: dict[str, Any]) -> list[str]:
    """The script that writes *document* as the policy of the resource *holder*."""
    found = resource_kind(holder)
    kind = found[1] if found else ""
    parts = holder.split(":", 5)
    name = parts[5].split("/", 1)[-1].split(":", 1)[-1]
    if kind == "sqs":
        return [heredoc("queue-attributes.json", {"Policy": json.dumps(document)}),
                f"aws sqs set-queue-attributes --queue-url \"$(aws sqs get-queue-url --queue-name {sh(name)} "
                f"--queue-owner-aws-account-id {sh(parts[4])} --query QueueUrl --output text)\" "
                "--attributes file://queue-attributes.json"]
    file = _FILES.get(kind, "resource-policy.json")
    command = {
        "s3": f"aws s3api put-bucket-policy --bucket {sh(parts[5])} --policy file://{file}",
        "kms": f"aws kms put-key-policy --key-id {sh(holder)} --policy-name default --policy file://{file}",
        "sns": f"aws sns set-topic-attributes --topic-arn {sh(holder)} --attribute-name Policy "
               f"--attribute-value file://{file}",
        "secretsmanager": f"aws secretsmanager put-resource-policy --secret-id {sh(holder)} "
                          f"--resource-policy file://{file}",
        "ecr": f"aws ecr set-repository-policy --registry-id {sh(parts[4])} --repository-name {sh(name)} "
               f"--policy-text file://{file}",
    }.get(kind, comment(f"install {file} as the policy of {holder}"))
    return [heredoc(file, document), command]


def _identity_install(policy: str, document: dict[str, Any], role: str | None) -> list[str]:
    """Write *document* back where the identity or boundary policy *policy* lives."""
    arn = policy.split(" ")[-1]
    if arn.startswith("arn:") and ":policy/" in arn:
        if arn.startswith("arn:aws:iam::aws:policy/"):
            return [comment(f"{arn} is AWS managed and cannot be edited: detach it and attach a policy of your own")]
        return [heredoc("policy.json", document),
                f"aws iam create-policy-version --policy-arn {sh(arn)} --policy-document file://policy.json "
                "--set-as-default"]
    inline = policy.removeprefix("the inline policy ").split(" of ", 1)[0]
    return [heredoc("policy.json", document),
            f"aws iam put-role-policy --role-name {sh(role_name(role))} --policy-name {sh(inline)} "
            "--policy-document file://policy.json"]


def _organization_install(policy: str, document: dict[str, Any]) -> list[str]:
    arn = policy.rsplit("(", 1)[-1].rstrip(")") if "(" in policy else ""
    policy_id = arn.rsplit("/", 1)[-1] if arn else "POLICY_ID"
    return [comment("from the management account (or a delegated administrator):"),
            heredoc("organization-policy.json", document),
            f"aws organizations update-policy --policy-id {sh(policy_id)} --content file://organization-policy.json"]


def deny_in_layer_fix(layer: str, refs: Sequence[StatementRef], documents: dict[str, Any], *, action: str,
                      role: str | None, holder: str, session_event: str | None = None,
                      where: dict[str, str] | None = None) -> str:
    """An explicit Deny decided: the deciding document without the denying statements (or,
    when the Deny is all it holds, the policy detached or deleted).  *where* maps an SCP/RCP
    to the entity it is attached to."""
    where = where or {}
    named = "; ".join(ref.describe() for ref in refs) or holder
    summary = (f"Narrow or remove the Deny that refuses {action}: {line(named)}. An explicit deny beats every "
               "Allow, so nothing else can grant it while the statement applies.")
    if layer == "session":
        return fix(summary, comment(f"the session policy was passed when the credentials were issued "
                                    f"({session_event or 'the AssumeRole call'}): change the Policy / PolicyArns "
                                    "that code passes"))
    script: list[str] = []
    for policy, indexes in _by_policy(refs).items():
        document = documents.get(policy)
        if document is None:
            script.append(comment(f"{policy}: not in the inventory; remove statement(s) {indexes} there"))
            continue
        changed = _with(document, drop=indexes)
        if not changed["Statement"]:
            script += _remove_whole(layer, policy, role, where.get(policy))
            continue
        script.append(comment(f"the whole of {policy}, without the denying statement(s) #"
                              f"{', #'.join(map(str, indexes))}: narrow them instead if they must stay"))
        if layer in ("identity", "boundary"):
            script += _identity_install(policy, changed, role)
        elif layer in ("scp", "rcp"):
            script += _organization_install(policy, changed)
        elif layer == "vpc_endpoint":
            script += [heredoc("endpoint-policy.json", changed),
                       f"aws ec2 modify-vpc-endpoint --vpc-endpoint-id {sh(_endpoint_id(policy))} "
                       "--policy-document file://endpoint-policy.json"]
        elif layer == "resource":
            if policy.startswith("the trust policy of "):
                target = policy.removeprefix("the trust policy of ")
                script += [heredoc("trust.json", changed), f"aws iam update-assume-role-policy --role-name "
                           f"{sh(role_name(target))} --policy-document file://trust.json"]
            elif (resource_kind(_holder_arn(policy)) or ("", ""))[1] == "lambda":
                sids = [ref.sid for ref in refs if ref.policy == policy and ref.sid]
                script += [f"aws lambda remove-permission --function-name {sh(_holder_arn(policy))} "
                           f"--statement-id {sh(sid)}" for sid in sids] or [comment("remove the statement")]
            else:
                script += _install_resource(_holder_arn(policy), changed)
    return fix(summary, *script)


def _remove_whole(layer: str, policy: str, role: str | None, attached: str | None) -> list[str]:
    """The Deny is all *policy* holds: detach or delete the policy (a policy needs a statement)."""
    note = comment(f"{policy} holds nothing but the Deny: detach it where it applies, or narrow the Deny instead")
    arn = policy.split(" ")[-1].strip("()")
    if layer in ("scp", "rcp"):
        target = (attached or "TARGET_ID").rsplit(" ", 1)[-1]
        return [note, comment("from the management account (or a delegated administrator):"),
                f"aws organizations detach-policy --policy-id {sh(arn.rsplit('/', 1)[-1])} --target-id {sh(target)}"]
    if layer == "identity" and arn.startswith("arn:") and ":policy/" in arn:
        return [note, f"aws iam detach-role-policy --role-name {sh(role_name(role))} --policy-arn {sh(arn)}"]
    if layer == "identity":
        inline = policy.removeprefix("the inline policy ").split(" of ", 1)[0]
        return [note, f"aws iam delete-role-policy --role-name {sh(role_name(role))} --policy-name {sh(inline)}"]
    if layer == "boundary":
        return [note, f"aws iam delete-role-permissions-boundary --role-name {sh(role_name(role))}"]
    holder = _holder_arn(policy)
    if (resource_kind(holder) or ("", ""))[1] == "s3":
        return [note, f"aws s3api delete-bucket-policy --bucket {sh(holder.split(':', 5)[5])}"]
    return [note]


def allow_in_layer_fix(layer: str, lookup_documents: Sequence[NamedPolicy], *, holder: str, action: str,
                       resource: str | None, principal: str | None, region: str | None, account: str | None,
                       target: str | None = None) -> str:
    """A layer that must allow did not: its document with a statement allowing the call added."""
    where = resource_for(action, resource if resource != "*" else None, region=region, account=account)
    if layer == "scp":
        entity = target or "the account"
        return fix(
            f"No SCP attached to {line(entity)} allows {action}: every level from the root down to the account must "
            "allow it. Add an Allow for it to an SCP attached there, or attach one that allows it.",
            comment("from the management account (or a delegated administrator):"),
            f"aws organizations list-policies-for-target --target-id {sh(_target_id(entity))} "
            "--filter SERVICE_CONTROL_POLICY",
            comment("FullAWSAccess allows every action; an SCP of your own may allow only what is needed:"),
            f"aws organizations attach-policy --policy-id p-FullAWSAccess --target-id {sh(_target_id(entity))}",
        )
    if layer == "session":
        return fix(f"The session policy passed when the credentials were issued does not allow {action}: add it to "
                   "the Policy / PolicyArns the code that assumes the role passes, or pass none.")
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal or "ROLE_ARN"}, "Action": action,
                                 "Resource": where}
    if layer == "vpc_endpoint":
        endpoint = _endpoint_id(holder)
        base = lookup_documents[0].document if lookup_documents else {"Version": "2012-10-17", "Statement": []}
        return fix(f"Allow {action} in {line(holder)}: requests through the endpoint get only what its policy "
                   "allows.",
                   comment("the whole endpoint policy, with the statement added:"),
                   heredoc("endpoint-policy.json", _with(base, add=statement)),
                   f"aws ec2 modify-vpc-endpoint --vpc-endpoint-id {sh(endpoint)} --policy-document "
                   "file://endpoint-policy.json")
    holder_arn = _holder_arn(holder)
    kind = (resource_kind(holder_arn) or ("", ""))[1]
    if kind == "kms":
        statement["Resource"] = "*"  # in a key policy, "*" is the key itself
    if kind == "lambda":
        return fix(f"Allow {principal or 'the caller'} to call {action} in {line(holder)}.",
                   f"aws lambda add-permission --function-name {sh(holder_arn)} --statement-id "
                   f"{sh('allow-' + role_name(principal))} --action {sh(action)} --principal {sh(principal or 'ROLE_ARN')}")
    summary = f"Allow {line(role_name(principal) if principal else 'the caller')} {action} in {line(holder)}."
    if kind == "kms":
        summary += (" A key policy must allow the caller itself, or delegate to IAM (the account's root), before any "
                    "identity policy counts.")
    if not lookup_documents:
        return fix(summary, comment(f"the statement to add to {holder} (keep the others):"),
                   heredoc("statement.json", statement))
    return fix(summary, comment(f"the whole of {holder}, with the statement added:"),
               *_install_resource(holder_arn, _with(lookup_documents[0].document, add=statement)))


def read_layers_fix(commands: Sequence[tuple[str, str, str]], summary: str) -> str:
    """Read the layers that were not read: each command, saved to a file, then passed with
    ``--policies [NAME=]FILE``.  *commands*: (holder, command, name)."""
    script: list[str] = []
    files: list[str] = []
    for index, (holder, command, name) in enumerate(dict.fromkeys(commands)):
        file = f"layer-{index + 1}.json"
        script.append(comment(f"{holder}:"))
        script.append(f"{command} > {file} 2>&1")
        files.append(f"--policies {sh(name + '=' + file) if name else file}")
    if files:
        script.append(comment("then run trailscan again with: " + " ".join(files)))
    return fix(summary, *script)


def _by_policy(refs: Sequence[StatementRef]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for ref in refs:
        found.setdefault(ref.policy, []).append(ref.index)
    return found


def _holder_arn(label: str) -> str:
    """``the bucket policy of arn:aws:s3:::b`` → ``arn:aws:s3:::b``."""
    return label.rsplit(" ", 1)[-1]


def _endpoint_id(label: str) -> str:
    return next((word for word in label.split() if word.startswith("vpce-")), "VPC_ENDPOINT_ID")


def _target_id(entity: str) -> str:
    """``the OU ou-ab12-1111`` → ``ou-ab12-1111`` (a root, an OU, an account id)."""
    last = entity.rsplit(" ", 1)[-1]
    return last if last.startswith(("r-", "ou-")) or last.isdigit() else "ACCOUNT_ID"
