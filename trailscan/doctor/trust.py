"""Would STS accept this token for this role? The trust policy, judged before CloudTrail has a word.

A refused ``AssumeRoleWithWebIdentity`` reaches CloudTrail 5–15 minutes later; the same
verdict is available now from the token's claims (``iss``, ``sub``, ``aud``), the role's
trust policy and the account's OIDC providers, with the engine findings use
(:func:`trailscan.policy.analyze_web_identity_trust`) and in the same order: the OIDC
provider, the role, the trust statement, then the provider's client ids.

The IAM side comes from ``--iam FILE`` (``aws iam get-account-authorization-details``, plus
``list-open-id-connect-providers``), or live with the least the doctor needs:
``iam:GetRole`` on the one role (its trust policy; its permission policies are not read)
and ``iam:ListOpenIDConnectProviders`` / ``iam:GetOpenIDConnectProvider``.  A refused read
leaves the check skipped, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trailscan.arn import account_of, issuer_of, provider_arn_for, role_key
from trailscan.doctor.model import FAIL, OK, SKIPPED, WARN, Check
from trailscan.explain import fixes
from trailscan.identity import parse_subject
from trailscan.inventory import IAM, OIDC, Inventory, OidcProvider, Role, load_iam_file, merge_inventories
from trailscan.policy import analyze_web_identity_trust, load_policy

__all__ = ["TrustQuestion", "check_trust", "load_trust_inventory"]

CHECK_ID = "trust.role"


@dataclass(frozen=True)
class TrustQuestion:
    """What STS will be asked: this token (issuer, subject, audience) for this role."""

    role_arn: str
    issuer: str
    subject: str
    audience: str
    cluster: str | None = None


def load_trust_inventory(iam_files: Iterable[str], *, session: Any = None, role_arn: str | None = None,
                         ) -> tuple[Inventory | None, str]:
    """The IAM inventory for a trust verdict, and a note on what it could not read.

    ``--iam`` files when given (an unreadable one raises :class:`InputError`); else, with a
    boto3 *session*, the role and the OIDC providers read live; else None."""
    files = list(iam_files)
    if files:
        return merge_inventories([load_iam_file(path) for path in files]), ""
    if session is None or not role_arn:
        return None, "no --iam file and no AWS credentials to read IAM with"
    return _read_live(session, role_arn)


def _read_live(session: Any, role_arn: str) -> tuple[Inventory, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    iam = session.client("iam")
    key = role_key(role_arn)
    parts: list[Inventory] = []
    notes: list[str] = []
    if key is not None:
        account, name = key
        try:
            detail = iam.get_role(RoleName=name)["Role"]
            role = Role(arn=detail["Arn"], name=detail["RoleName"], account=account_of(detail["Arn"]) or account,
                        trust_policy=load_policy(detail["AssumeRolePolicyDocument"], name=f"role {name} trust policy"),
                        unresolved=["permission policies (the doctor reads only the trust policy)"])
            parts.append(Inventory(roles={role.arn: role}))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchEntity" and _session_account(session) == account:
                parts.append(Inventory(missing_roles={role_arn}))
            else:
                notes.append(f"iam:GetRole {name}: {code or error}")
        except BotoCoreError as error:
            notes.append(f"iam:GetRole {name}: {error}")
    try:
        listed = iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
        providers: dict[str, OidcProvider] = {}
        for entry in listed:
            arn = entry["Arn"]
            answer = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
            providers[arn] = OidcProvider(arn=arn, url=answer.get("Url") or issuer_of(arn),
                                          client_ids=list(answer.get("ClientIDList", [])),
                                          thumbprints=list(answer.get("ThumbprintList", [])))
        account = _session_account(session)
        parts.append(Inventory(oidc_providers=providers, oidc_accounts={account} if account else set(),
                               complete={OIDC}))
    except (ClientError, BotoCoreError) as error:
        code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
        notes.append(f"iam:ListOpenIDConnectProviders: {code or error}")
    return merge_inventories(parts), "; ".join(notes)


def _session_account(session: Any) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(session.client("sts").get_caller_identity()["Account"])
    except (ClientError, BotoCoreError):
        return None


def check_trust(question: TrustQuestion, inventory: Inventory | None, unread: str = "") -> Check:
    """``trust.role``: the findings' trust verdict for *question*, from *inventory*."""
    sa_ref = parse_subject(question.subject)
    what = f"{question.subject} (aud {question.audience}, iss {question.issuer}) for {question.role_arn}"
    if inventory is None:
        return Check(CHECK_ID, SKIPPED, None, f"Not evaluated: {unread or 'no IAM inventory'}. Pass --iam FILE "
                     "(aws iam get-account-authorization-details, plus list-open-id-connect-providers) to judge "
                     f"{what} now.")
    account = account_of(question.role_arn) or ""
    issuer = issuer_of(question.issuer)
    provider_arn = provider_arn_for(issuer, account)
    unknown: list[str] = [unread] if unread else []
    status = inventory.provider_status(issuer, account)
    if status == "missing":
        return Check(CHECK_ID, FAIL, "OIDC_PROVIDER_MISSING",
                     f"IAM in account {account} has no OIDC provider for the token's issuer {issuer}, so STS refuses "
                     f"every token of that cluster ({what}).",
                     fixes.oidc_provider_fix(question.cluster, issuer, question.audience))
    if status == "unknown":
        unknown.append(f"the OIDC providers of account {account} were not listed")
    role = inventory.role(question.role_arn)
    if role is None:
        if inventory.role_status(question.role_arn) == "missing":
            return Check(CHECK_ID, FAIL, "ROLE_NOT_FOUND",
                         f"The role {question.role_arn} does not exist in account {account} ({what}).",
                         fixes.role_not_found_fix(question.role_arn, provider_arn, sa_ref, question.audience))
        return Check(CHECK_ID, SKIPPED, None,
                     f"Not evaluated: the IAM inventory does not hold {question.role_arn}"
                     + (f" ({'; '.join(unknown)})" if unknown else "") + ".")
    verdict = analyze_web_identity_trust(role.trust_policy, provider_arn=provider_arn, subject=question.subject,
                                         audience=question.audience)
    if verdict.cause and verdict.cause != "UNEXPLAINED":
        return Check(CHECK_ID, FAIL, verdict.cause, f"The trust policy of {role.name} refuses {what}: {verdict.detail}",
                     fixes.trust_fix(role, provider_arn, sa_ref, question.audience, verdict.cause))
    if verdict.cause == "UNEXPLAINED":
        return Check(CHECK_ID, FAIL, "UNEXPLAINED", f"The trust policy of {role.name} refuses {what}: {verdict.detail}",
                     fixes.fix(f"A condition of the trust policy of {role.name} on another key than sub and aud "
                               "refuses the token: read it, and drop or correct that condition.",
                               f"aws iam get-role --role-name {fixes.sh(role.name)} "
                               "--query Role.AssumeRolePolicyDocument"))
    provider = inventory.provider_for_issuer(issuer, account)
    if provider is not None and provider.details_known and question.audience not in provider.client_ids:
        return Check(CHECK_ID, FAIL, "TRUST_AUDIENCE_MISMATCH",
                     f"The token's audience {question.audience!r} is not among the client ids of the OIDC provider "
                     f"{provider.arn} ({', '.join(provider.client_ids) or 'none'}), so STS refuses it before the "
                     "trust policy is read.",
                     fixes.fix("Add the audience to the OIDC provider's client ids.",
                               "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn "
                               f"{fixes.sh(provider.arn)} --client-id {fixes.sh(question.audience)}"))
    detail = f"The trust policy of {role.name} admits {what}: {verdict.detail.rstrip('.')}"
    notes = list(verdict.warnings)
    if unknown:
        notes.append("not checked: " + "; ".join(unknown))
    if IAM in inventory.gaps or OIDC in inventory.gaps:
        notes.extend(inventory.gaps.get(IAM, []) + inventory.gaps.get(OIDC, []))
    if notes:
        return Check(CHECK_ID, WARN, None, f"{detail}. " + " ".join(n[0].upper() + n[1:] + ("" if n.endswith(".") else ".")
                                                              for n in notes))
    return Check(CHECK_ID, OK, None, detail + ".")
