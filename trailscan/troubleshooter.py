"""AWS's own answer: the IAM Access Troubleshooter's evaluation of a refusal.

AccessDenied messages now often end with an authorization id ("… call the
GetRequestAuthorizationDetails API with the following authorization id: …", see
:func:`trailscan.policy.parse_denial_message`).  AWS keeps its evaluation of that request
for at least 24 hours, in the region of the refusal, for callers of the same account or
organization (IAM User Guide, "Troubleshoot access denied error messages with
authorization ID").  :func:`fetch_answers` reads it through botocore's ``iam-toolbox``
service — ``GetRequestAuthorizationDetails``: REST-JSON, ``GET
/authorization-details/{authorizationId}?nextToken=…``, signed for ``iam``, the
``evaluations`` paginated — and never raises for AWS's answer: a refusal (the caller
lacks ``iam:GetRequestAuthorizationDetails``), an expired or unknown id
(``ResourceNotFoundException``) or an endpoint without the API is a gap, named.

Each evaluation's ``checks`` list one requirement each — RCPs and SCPs per organization
level, the VPC endpoint, the resource, the principal's identity policies, its boundary,
its session — with the effect AWS evaluated; :meth:`AwsAnswer.deciding` finds the one
that refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trailscan.layers import describe_failure

__all__ = ["CHECK_LAYERS", "LIMIT", "AwsAnswer", "Check", "Evaluation", "fetch_answers", "parse_answer"]

#: At most this many authorization ids are looked up per run: the most recent refusals'.
LIMIT = 25

#: The API's check types, as :data:`trailscan.policy.LAYERS` names the layers.
CHECK_LAYERS = {
    "SERVICE_CONTROL_POLICY": "scp",
    "RESOURCE_CONTROL_POLICY": "rcp",
    "VPC_ENDPOINT": "vpc_endpoint",
    "RESOURCE": "resource",
    "PRINCIPAL": "identity",
    "PERMISSIONS_BOUNDARY": "boundary",
    "SESSION": "session",
}


@dataclass(frozen=True)
class Check:
    """One requirement AWS evaluated: its layer, the effect, where (an SCP's OU …), the
    policies that matched (URI, Sids)."""

    layer: str
    effect: str
    target: str | None
    matched: tuple[tuple[str, tuple[str, ...]], ...]

    def describe(self, policies: Mapping[str, str]) -> str:
        named = [f"{uri}" + (f" (Sid {', '.join(repr(s) for s in sids)})" if sids else "")
                 for uri, sids in self.matched]
        where = f" at {self.target}" if self.target else ""
        return f"{self.effect} by the {self.layer} check{where}" + (f": {'; '.join(named)}" if named else "")


@dataclass(frozen=True)
class Evaluation:
    action: str
    resource: str
    effect: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class AwsAnswer:
    """AWS's evaluation of one refused request."""

    authorization_id: str
    region: str
    evaluations: tuple[Evaluation, ...]
    policies: Mapping[str, str]  #: policy URI → type (IDENTITY_BASED_POLICY …)
    context: Mapping[str, Any]

    def deciding(self, action: str | None = None) -> Check | None:
        """The check that refused *action* (the refused evaluation when not given): the
        explicit deny, else the first implicit deny in AWS's order."""
        refused = [e for e in self.evaluations if e.effect in ("EXPLICIT_DENY", "IMPLICIT_DENY")]
        if action:
            refused = [e for e in refused if e.action.lower() == action.lower()] or refused
        for evaluation in refused:
            for effect in ("EXPLICIT_DENY", "IMPLICIT_DENY"):
                found = next((check for check in evaluation.checks if check.effect == effect), None)
                if found is not None:
                    return found
        return None


def parse_answer(authorization_id: str, region: str, pages: Iterable[Mapping[str, Any]]) -> AwsAnswer:
    """The pages of ``GetRequestAuthorizationDetails`` as one answer."""
    evaluations: list[Evaluation] = []
    policies: dict[str, str] = {}
    context: dict[str, Any] = {}
    for page in pages:
        context.update(page.get("requestContext") or {})
        for policy in page.get("policies") or []:
            if isinstance(policy, Mapping) and policy.get("uri"):
                policies[str(policy["uri"])] = str(policy.get("type") or "")
        for item in page.get("evaluations") or []:
            checks = tuple(
                Check(
                    CHECK_LAYERS.get(str(check.get("checkType")), str(check.get("checkType")).lower()),
                    str(check.get("evaluatedEffect")),
                    check.get("targetArn"),
                    tuple((str(m.get("uri")), tuple(str(s.get("sid")) for s in m.get("matchedStatements") or []
                                                    if s.get("sid")))
                          for m in check.get("matchedPolicies") or []),
                )
                for check in item.get("checks") or []
            )
            evaluations.append(Evaluation(str(item.get("action")), str(item.get("resource") or ""),
                                          str(item.get("evaluatedEffect")), checks))
    return AwsAnswer(authorization_id, region, tuple(evaluations), policies, context)


def fetch_answers(
    session: Any, wanted: Sequence[tuple[str, str]], *, limit: int = LIMIT
) -> tuple[dict[str, AwsAnswer], dict[str, str]]:
    """AWS's evaluations of the refusals *wanted* names, ``(authorization id, region)``,
    at most *limit* of them: (answers by id, gaps by id)."""
    from botocore.exceptions import BotoCoreError, ClientError, UnknownServiceError

    answers: dict[str, AwsAnswer] = {}
    gaps: dict[str, str] = {}
    clients: dict[str, Any] = {}
    wanted = list(dict.fromkeys(wanted))
    for authorization_id, _ in wanted[limit:]:
        gaps[authorization_id] = f"not looked up: more than {limit} authorization ids in the window"
    for authorization_id, region in wanted[:limit]:
        what = f"iam:GetRequestAuthorizationDetails {authorization_id} in {region}"
        try:
            if region not in clients:
                clients[region] = session.client("iam-toolbox", region_name=region)
            paginator = clients[region].get_paginator("get_request_authorization_details")
            pages = list(paginator.paginate(authorizationId=authorization_id))
        except UnknownServiceError:
            gaps[authorization_id] = f"{what}: this botocore has no iam-toolbox service (upgrade boto3)"
            continue
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ResourceNotFoundException":
                gaps[authorization_id] = (f"{what}: AWS no longer has it (kept at least 24 hours after the refusal, in "
                                          "its region, for callers of the same account or organization)")
            else:
                gaps[authorization_id] = describe_failure(what, exc)
            continue
        except BotoCoreError as exc:
            gaps[authorization_id] = describe_failure(what, exc)
            continue
        answers[authorization_id] = parse_answer(authorization_id, region, pages)
    return answers, gaps
