"""IRSA: why STS refused a pod's web-identity token (a failed ``AssumeRoleWithWebIdentity``).

The rules run in the cause table's order: first what the error code alone says, then
the OIDC provider, the service account, the role and its trust policy.  Each rule
asserts a cause only on evidence; what it could not check is added to the case and
named in the ``UNEXPLAINED`` verdict when no rule decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trailscan.arn import account_of, issuer_of, same_role
from trailscan.explain import fixes
from trailscan.explain.collect import FailureGroup
from trailscan.explain.rules import Rules, Verdict
from trailscan.explain.text import WEB_IDENTITY_ACTION, sentence, sh, unchecked_text
from trailscan.explain.workload import Evidence
from trailscan.findings import Workload
from trailscan.identity import (
    ServiceAccountRef,
    WebIdentity,
    not_a_kubernetes_token,
    parse_web_identity,
    provider_arn_for,
)
from trailscan.inventory import Role
from trailscan.kube import DEFAULT_AUDIENCE, ServiceAccount
from trailscan.policy import analyze_web_identity_trust

__all__ = ["RULES", "explain_irsa"]

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")

#: STS's error codes for a refused web identity, in the spellings CloudTrail and the SDKs
#: use (the Query API's ``InvalidIdentityToken``, the SDKs' ``…Exception`` shapes,
#: ``Client.`` prefixes), reduced to one name each.
_STS_CODES = {
    "validationerror": "ValidationError",
    "invalididentitytoken": "InvalidIdentityToken",
    "expiredtoken": "ExpiredToken",
    "idpcommunicationerror": "IDPCommunicationError",
    "idprejectedclaim": "IDPRejectedClaim",
    "accessdenied": "AccessDenied",
}

#: What STS's message says in so many words (lower-cased phrases), whatever the code.
_SAID_NO_PROVIDER = ("no openidconnect provider found",)
_SAID_THUMBPRINT = ("doesn't match configured thumbprint", "does not match configured thumbprint")
_SAID_NO_KEYS = ("couldn't retrieve verification key from your identity provider",
                 "could not retrieve verification key from your identity provider")
_SAID_EXPIRED = ("token expired", "token is expired", "token has expired")
_SAID_AUDIENCE = ("incorrect token audience",)


def sts_code(code: str | None) -> str:
    """An STS error code in one spelling: ``InvalidIdentityTokenException``,
    ``Client.InvalidIdentityToken`` and ``InvalidIdentityToken`` are all
    ``InvalidIdentityToken``; an unknown code is returned as it is."""
    text = (code or "").strip()
    key = text.removeprefix("Client.").removeprefix("Sender.").lower().removesuffix("exception")
    return _STS_CODES.get(key, text)


def _says(message: str, phrases: tuple[str, ...]) -> bool:
    return any(phrase in message for phrase in phrases)


@dataclass
class IrsaCase:
    """One group of refused web-identity calls, with what the rules have learnt so far."""

    ev: Evidence
    group: FailureGroup
    web: WebIdentity
    workload: Workload
    role_arn: str | None
    code: str
    message: str
    cluster: str | None
    cluster_for_fix: str | None
    who: str
    role_account: str | None
    audience: str | None
    provider_arn: str | None
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)
    role: Role | None = None

    @property
    def sa_ref(self) -> ServiceAccountRef | None:
        return self.web.service_account

    @property
    def issuer(self) -> str | None:
        return self.web.issuer

    @property
    def lowered(self) -> str:
        return self.message.lower()

    def verdict(self, cause: str, explanation: str, fix: str) -> Verdict:
        """A verdict; a decisive one also says what else was learnt on the way (the
        cross-account pattern, a mismatch that was not the cause)."""
        text = sentence(explanation)
        if cause != "UNEXPLAINED" and self.also:
            text += " " + " ".join(sentence(a[0].upper() + a[1:]) for a in self.also)
        if (outside := not_a_kubernetes_token(self.web)) is not None:
            text += " " + sentence(f"Not an EKS workload: {outside}")
        return Verdict(cause, self.workload, self.role_arn, None, WEB_IDENTITY_ACTION, text, fix)


def _case(ev: Evidence, group: FailureGroup) -> IrsaCase:
    web = parse_web_identity(
        user_name=group.get("subject"),
        principal_id=group.get("principal_id"),
        identity_provider=group.get("identity_provider"),
    )
    sa_ref = web.service_account
    role_arn = group.get("role_arn")
    cluster = ev.cluster_name(web.issuer)
    known = ev.inv.cluster_for_issuer(web.issuer) if web.issuer else None
    role_account = account_of(role_arn) or group.get("account_id")
    provider_arn = web.provider_arn if (web.provider_arn or "").startswith("arn:") else None
    if not provider_arn and web.issuer and role_account:
        provider_arn = provider_arn_for(web.issuer, role_account)
    return IrsaCase(
        ev=ev,
        group=group,
        web=web,
        workload=Workload(
            cluster=cluster,
            namespace=sa_ref.namespace if sa_ref else None,
            service_account=sa_ref.name if sa_ref else None,
            # A token no pod holds (GitHub Actions, Cognito …): no EKS workload, said so.
            resolution="exact" if sa_ref else ("not_eks" if not_a_kubernetes_token(web) else "unknown"),
        ),
        role_arn=role_arn,
        code=sts_code(group.get("error_code")),
        message=group.get("error_message") or "",
        cluster=cluster,
        cluster_for_fix=known.name if known else None,
        who=str(sa_ref) if sa_ref else (web.subject or "the web identity"),
        role_account=role_account,
        audience=web.audience,
        provider_arn=provider_arn,
    )


RULES: Rules[IrsaCase] = Rules("irsa")


# -- 1-3 and 4-5 by message: the error code alone says it ------------------------------


@RULES.rule("INVALID_ROLE_ARN")
def invalid_role_arn(c: IrsaCase) -> Verdict | None:
    if not (c.code == "ValidationError" or (c.role_arn and not _ROLE_ARN.match(c.role_arn)) or "arn is invalid" in c.lowered):
        return None
    return c.verdict(
        "INVALID_ROLE_ARN",
        f"{c.who} asked STS for the role {c.role_arn!r}, which is not a valid role ARN "
        f"({c.message or c.code}).",
        fixes.annotate_fix(c.sa_ref, "arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME",
                           "Set the service account's role-arn annotation to a valid role ARN, then restart its pods."),
    )


@RULES.rule("TOKEN_EXPIRED", said=True)
def token_expired(c: IrsaCase) -> Verdict | None:
    if not (c.code == "ExpiredToken" or _says(c.lowered, _SAID_EXPIRED)):
        return None
    return c.verdict(
        "TOKEN_EXPIRED",
        f"The service-account token {c.who} presented had expired ({c.message or c.code}). The kubelet "
        "refreshes the projected token; an SDK that read it once, a stopped clock or a token copied "
        "out of the pod keeps presenting the old one.",
        fixes.token_expired_fix(c.sa_ref),
    )


@RULES.rule("IDP_UNREACHABLE", said=True)
def idp_unreachable(c: IrsaCase) -> Verdict | None:
    if not (c.code == "IDPCommunicationError" or _says(c.lowered, _SAID_NO_KEYS)):
        return None
    return c.verdict(
        "IDP_UNREACHABLE",
        f"STS could not fetch the OIDC discovery document or keys of {c.issuer or 'the token issuer'} "
        f"to check {c.who}'s token ({c.message or c.code}).",
        fixes.idp_unreachable_fix(c.issuer),
    )


@RULES.rule("OIDC_PROVIDER_MISSING", said=True)
def provider_missing_said(c: IrsaCase) -> Verdict | None:
    if not _says(c.lowered, _SAID_NO_PROVIDER):
        return None
    return c.verdict(
        "OIDC_PROVIDER_MISSING",
        f"IAM in account {c.role_account} has no OIDC identity provider for the cluster's issuer "
        f"{c.issuer or ''} ({c.message}), so STS cannot trust any token of that cluster.",
        fixes.oidc_provider_fix(c.cluster_for_fix, c.issuer, c.audience),
    )


@RULES.rule("OIDC_THUMBPRINT_MISMATCH", said=True)
def thumbprint_said(c: IrsaCase) -> Verdict | None:
    if not _says(c.lowered, _SAID_THUMBPRINT):
        return None
    return c.verdict(
        "OIDC_THUMBPRINT_MISMATCH",
        f"The certificate of the issuer {c.issuer or ''} does not match the thumbprints configured on its "
        f"IAM OIDC provider ({c.message}).",
        fixes.thumbprint_fix(c.provider_arn, c.issuer),
    )


# -- 4: the OIDC provider, from the inventory ---------------------------------------------


@RULES.rule("OIDC_PROVIDER_MISSING")
def provider_missing(c: IrsaCase) -> Verdict | None:
    if not (c.issuer and c.role_account):
        return None
    status = c.ev.inv.provider_status(c.issuer, c.role_account)
    if status == "missing":
        return c.verdict(
            "OIDC_PROVIDER_MISSING",
            f"IAM in account {c.role_account} has no OIDC identity provider for the cluster's issuer "
            f"{c.issuer}, so STS refuses every token of that cluster.",
            fixes.oidc_provider_fix(c.cluster_for_fix, c.issuer, c.audience),
        )
    if status == "found":
        c.checked.append(f"the OIDC provider for {c.issuer} exists")
    else:
        c.unchecked.append("no OIDC provider list: whether the cluster's OIDC provider exists")
    return None


# -- 5-7: the service account ----------------------------------------------------------------


@RULES.rule("SA_NOT_FOUND", "SA_NOT_ANNOTATED", "ROLE_MISMATCH")
def service_account(c: IrsaCase) -> Verdict | None:
    """The service account, from the service accounts of the token's own cluster only."""
    sa_ref = c.sa_ref
    if not sa_ref:
        return None
    accounts = c.ev.service_accounts_of(c.issuer)
    if accounts is None:
        c.unchecked.append(
            f"no service-account list tied to cluster {c.cluster or '?'} (issuer {c.issuer or 'unknown'}): whether "
            f"{sa_ref} exists and which role it names"
        )
        return None
    in_namespace = [a for a in accounts if a.namespace == sa_ref.namespace]
    if not in_namespace:
        # Every namespace has its `default` service account: a list without any of this
        # namespace's does not cover it (a namespaced listing, or the namespace is gone).
        c.unchecked.append(
            f"the service accounts of cluster {c.cluster} list none in namespace {sa_ref.namespace} (not even "
            f"default): whether {sa_ref} exists"
        )
        return None
    sa: ServiceAccount | None = next((a for a in in_namespace if a.name == sa_ref.name), None)
    if sa is None:
        return c.verdict(
            "SA_NOT_FOUND",
            f"The token names the service account {sa_ref}, which cluster {c.cluster} does not have "
            f"(its namespace {sa_ref.namespace} has {len(in_namespace)} other service accounts); a pod running as "
            "a deleted or misspelt service account still presents a token for it.",
            fixes.sa_not_found_fix(sa_ref, c.role_arn),
        )
    if not sa.role_arn:
        return c.verdict(
            "SA_NOT_ANNOTATED",
            f"The service account {sa_ref} exists but has no eks.amazonaws.com/role-arn annotation, yet its "
            f"pod asked for {c.role_arn} (AWS_ROLE_ARN set by hand, or the annotation was removed "
            "after the pod started).",
            fixes.annotate_fix(sa_ref, c.role_arn, f"Annotate {sa_ref} with the role, then restart its pods."),
        )
    c.audience = c.audience or sa.audience
    if c.role_arn and not same_role(sa.role_arn, c.role_arn):
        mismatch = _role_mismatch(c, sa_ref, sa)
        if mismatch is not None:
            return mismatch
        return None
    c.checked.append(f"{sa_ref} exists and is annotated with this role")
    return None


def _role_mismatch(c: IrsaCase, sa_ref: ServiceAccountRef, sa: ServiceAccount) -> Verdict | None:
    """ROLE_MISMATCH, when the pod asked for another role of the same account than its
    annotation names and that role's trust policy does not admit the token.

    A role of another account is the documented cross-account pattern (the pod asks STS
    for the other account's role, which trusts that account's own OIDC provider): that
    role's trust decides, as for any role.  A requested role whose trust policy admits
    the token was not refused for the mismatch either.
    """
    requested, annotated = c.role_arn or "", sa.role_arn or ""
    if account_of(requested) != account_of(annotated):
        c.also.append(
            f"{sa_ref} is annotated with {annotated} and its pod asked for {requested}, a role of another "
            "account (the cross-account pattern): the requested role's trust policy decides"
        )
        return None
    role = c.ev.role(requested)
    if role is not None and c.provider_arn and c.web.subject:
        trust = analyze_web_identity_trust(
            role.trust_policy, provider_arn=c.provider_arn, subject=c.web.subject, audience=c.audience or DEFAULT_AUDIENCE
        )
        if trust.cause is None:
            c.also.append(
                f"{sa_ref} is annotated with {annotated}, yet its pod asked for {requested}, whose trust policy "
                "admits the token: the mismatch is not why STS refused"
            )
            return None
    return c.verdict(
        "ROLE_MISMATCH",
        f"The pod asked for {requested}, but its service account {sa_ref} is annotated with "
        f"{annotated}: the annotation changed after the pod started, or the pod overrides AWS_ROLE_ARN."
        + ("" if role is not None else f" (The trust policy of {requested} was not read.)"),
        fixes.role_mismatch_fix(sa_ref, requested=requested, annotated=annotated),
    )


# -- 8: the role ---------------------------------------------------------------------------------


@RULES.rule("ROLE_NOT_FOUND")
def role_not_found(c: IrsaCase) -> Verdict | None:
    c.audience = c.audience or DEFAULT_AUDIENCE
    c.role = c.ev.role(c.role_arn)
    if c.role is not None:
        return None
    status = c.ev.inv.role_status(c.role_arn) if c.role_arn else "unknown"
    if status == "missing":
        return c.verdict(
            "ROLE_NOT_FOUND",
            f"The role {c.role_arn} that {c.who} asked for does not exist in account {c.role_account}.",
            fixes.role_not_found_fix(c.role_arn, c.provider_arn, c.sa_ref, c.audience),
        )
    c.unchecked.append(
        f"no IAM inventory for {c.role_arn}: whether the role exists, and its trust policy"
        if not c.ev.has_iam else f"the role {c.role_arn} is not in the IAM inventory (not looked up): its trust policy"
    )
    return None


# -- 9-12: the trust policy, then the provider's audiences ---------------------------------------


@RULES.rule("TRUST_PROVIDER_MISMATCH", "TRUST_ACTION_MISSING", "TRUST_SUBJECT_MISMATCH", "TRUST_AUDIENCE_MISMATCH")
def trust_policy(c: IrsaCase) -> Verdict | None:
    role, audience = c.role, c.audience or DEFAULT_AUDIENCE
    if _says(c.lowered, _SAID_AUDIENCE):
        provider = c.ev.inv.provider_for_issuer(c.issuer, c.role_account) if c.issuer else None
        return c.verdict(
            "TRUST_AUDIENCE_MISMATCH",
            f"STS says the token's audience is incorrect ({c.message}): {audience!r} is not among the client ids "
            f"of the OIDC provider{' ' + provider.arn if provider else ''} for {c.issuer or 'the issuer'}, so STS "
            "refuses it before the trust policy is read.",
            _audience_fix(provider.arn if provider else c.provider_arn, audience),
        )
    if role is None:
        return None
    if not (c.provider_arn and c.web.subject):
        if not c.web.subject:
            c.unchecked.append("the token's subject is not in the event: trust conditions")
        return None
    trust = analyze_web_identity_trust(
        role.trust_policy, provider_arn=c.provider_arn, subject=c.web.subject, audience=audience
    )
    if trust.cause and trust.cause != "UNEXPLAINED":
        own = ""
        if trust.cause == "TRUST_PROVIDER_MISMATCH" and any(
            issuer_of(arn) == issuer_of(c.provider_arn) for arn in _federated(role.trust_policy)
        ):
            own = (f" STS accepts a web identity only through an OIDC provider of the role's own account "
                   f"({c.role_account}): {c.provider_arn}.")
        return c.verdict(
            trust.cause,
            f"The trust policy of {role.name} refuses {c.who}'s token: {trust.detail}{own}",
            fixes.trust_fix(role, c.provider_arn, c.sa_ref, audience, trust.cause),
        )
    if trust.cause == "UNEXPLAINED":
        c.also.append(trust.detail)
        return None
    c.checked.append(f"the trust policy of {role.name} admits {c.web.subject} with audience {audience}")
    provider = c.ev.inv.provider_for_issuer(c.issuer, c.role_account) if c.issuer else None
    if provider and provider.details_known and audience not in provider.client_ids:
        return c.verdict(
            "TRUST_AUDIENCE_MISMATCH",
            f"The token's audience {audience!r} is not among the client ids of the OIDC provider "
            f"{provider.arn} ({', '.join(provider.client_ids) or 'none'}), so STS refuses it before "
            "the trust policy is read.",
            _audience_fix(provider.arn, audience),
        )
    return None


def _federated(policy: object) -> list[str]:
    """The ``Federated`` principals of a trust policy's statements (any shape)."""
    found: list[str] = []
    statements = policy.get("Statement") if isinstance(policy, dict) else None
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal") if isinstance(statement, dict) else None
        federated = principal.get("Federated") if isinstance(principal, dict) else None
        found.extend([federated] if isinstance(federated, str) else [f for f in federated or [] if isinstance(f, str)])
    return found


def _audience_fix(provider_arn: str | None, audience: str) -> str:
    return fixes.fix(
        "Add the audience to the OIDC provider's client ids.",
        "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn "
        f"{sh(provider_arn or 'PROVIDER_ARN')} --client-id {sh(audience)}",
    )


def unexplained(c: IrsaCase) -> Verdict:
    return c.verdict(
        "UNEXPLAINED",
        f"STS refused {c.who}'s token for {c.role_arn or 'the role'} ({c.code}: {c.message or 'no message'}), and no "
        "cause could be established. "
        + (f"Checked: {'; '.join(c.checked)}. " if c.checked else "")
        + (" ".join(sentence(a) for a in c.also) + " " if c.also else "")
        + (unchecked_text(c.unchecked) if c.unchecked else
           "What is left is outside the inventory: an SCP or RCP on sts:AssumeRoleWithWebIdentity, or a "
           "policy already fixed since."),
        fixes.unexplained_fix(c.unchecked, default=(
            "Look for a service control or resource control policy denying sts:AssumeRoleWithWebIdentity "
            "in the role's account; if the trust policy was changed since, the failures have stopped.")),
    )


def explain_irsa(ev: Evidence, group: FailureGroup) -> Verdict:
    """The verdict for one group of refused web-identity calls."""
    return RULES.decide(_case(ev, group), unexplained)
