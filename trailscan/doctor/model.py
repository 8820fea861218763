"""The doctor's checks as data, their results, and the ``trailscan.doctor/v1`` document.

Every check the doctor can run is a row of :data:`CHECKS`: an id (a dotted name; ``*``
stands for what the run fills in, such as the service or host of ``endpoint.*``), a title,
and the causes it may establish, which must be rows of the cause table's doctor section
(:data:`trailscan.explain.causes.DOCTOR_CAUSES`) listed in that table's order.  A
:class:`Check` refuses a cause its row does not declare, so the table, the checks and the
README cannot drift apart (``tests/test_layout.py``).

A run is a :class:`DoctorReport`: its target and its checks, in the order they ran.  Its
exit code is SPEC §10's: 1 when a check fails, 3 when none fails but a check could not
run, else 0 (2, a usage or input error, is raised before any check runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from trailscan.explain.causes import DOCTOR, codes, doctor_cause

__all__ = ["CHECKS", "FAIL", "OK", "SCHEMA", "SKIPPED", "STATUSES", "WARN", "Check", "CheckSpec", "DoctorReport",
           "doctor_document", "spec_for"]

SCHEMA = "trailscan.doctor/v1"
OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
STATUSES = (OK, WARN, FAIL, SKIPPED)


@dataclass(frozen=True)
class CheckSpec:
    """One check the doctor can run: ``id`` (``*`` matches what the run fills in), what it looks at,
    and the causes it may establish, in the cause table's order."""

    id: str
    title: str
    causes: tuple[str, ...] = ()

    def matches(self, check_id: str) -> bool:
        return fnmatchcase(check_id, self.id)


#: Every check, in the order a run shows them: the pod and its cluster (``doctor pod``),
#: then what a process sees inside the pod (``doctor``, and ``doctor pod --probe``, whose
#: checks come back as ``probe.<id>``), then the IAM trust both can evaluate.
CHECKS: tuple[CheckSpec, ...] = (
    # -- the pod, through kubectl ------------------------------------------------------------
    CheckSpec("pod.service_account", "the pod's service account and the role it names", ("SA_NOT_ANNOTATED",)),
    CheckSpec("pod.restart", "the pod started after its service account's annotation last changed",
              ("POD_PREDATES_ANNOTATION",)),
    CheckSpec("cluster.webhook", "the pod identity webhook mutates this pod", ("WEBHOOK_MISSING",)),
    CheckSpec("pod.injection", "the IRSA / Pod Identity variables and token volume in the pod spec",
              ("NO_CREDENTIALS_INJECTED", "TOKEN_AUDIENCE_MISMATCH")),
    CheckSpec("pod.token_access", "the containers' users can read the token file (runAsUser, fsGroup, mode)",
              ("TOKEN_UNREADABLE",)),
    CheckSpec("pod.network", "hostNetwork and dnsPolicy"),
    CheckSpec("eks.pod_identity_association", "the EKS Pod Identity association of the service account"),
    CheckSpec("node.pod_identity_agent", "the eks-pod-identity-agent pod on the pod's node",
              ("POD_IDENTITY_AGENT_MISSING",)),
    CheckSpec("cluster.coredns", "CoreDNS pods (k8s-app=kube-dns) running and ready", ("COREDNS_UNAVAILABLE",)),
    CheckSpec("probe.run", "the probe pod ran the in-pod doctor"),
    # -- inside the pod ----------------------------------------------------------------------
    CheckSpec("env.variables", "the variables the webhook injects", ("NO_CREDENTIALS_INJECTED",)),
    CheckSpec("token.*.file", "the projected token file is readable by this user", ("TOKEN_UNREADABLE",)),
    CheckSpec("token.*.claims", "the token's claims: expiry, audience, subject",
              ("TOKEN_EXPIRED", "TOKEN_AUDIENCE_MISMATCH", "TOKEN_SUBJECT_MISMATCH")),
    CheckSpec("endpoint.*", "DNS, TCP and TLS to an AWS endpoint", ("DNS_RESOLUTION_FAILED", "ENDPOINT_UNREACHABLE")),
    CheckSpec("credentials.pod_identity_agent", "the container credentials endpoint answers",
              ("NO_CREDENTIALS_INJECTED", "POD_IDENTITY_AGENT_MISSING")),
    CheckSpec("credentials.imds", "the instance metadata service, the chain's last resort", ("IMDS_UNREACHABLE",)),
    CheckSpec("credentials.chain", "botocore's credential chain: which provider won, and why the others did not",
              ("NO_CREDENTIALS_INJECTED", "TOKEN_UNREADABLE", "TOKEN_EXPIRED", "DNS_RESOLUTION_FAILED",
               "ENDPOINT_UNREACHABLE", "POD_IDENTITY_AGENT_MISSING", "OIDC_PROVIDER_MISSING",
               "TRUST_AUDIENCE_MISMATCH", "UNEXPLAINED")),
    CheckSpec("identity.caller", "sts:GetCallerIdentity: who the workload really is",
              ("NODE_ROLE_FALLBACK", "UNEXPLAINED")),
    # -- IAM, with an inventory --------------------------------------------------------------
    CheckSpec("trust.role", "the token's claims against the role's trust policy and the OIDC providers",
              ("OIDC_PROVIDER_MISSING", "ROLE_NOT_FOUND", "TRUST_PROVIDER_MISMATCH", "TRUST_ACTION_MISSING",
               "TRUST_SUBJECT_MISMATCH", "TRUST_AUDIENCE_MISMATCH", "UNEXPLAINED")),
)

_PROBE = "probe."


def spec_for(check_id: str) -> CheckSpec:
    """The row of :data:`CHECKS` for a check id (``probe.<id>`` is the row of ``<id>``);
    :class:`KeyError` for an id no row describes."""
    inner = check_id[len(_PROBE):] if check_id.startswith(_PROBE) and check_id != "probe.run" else check_id
    for spec in CHECKS:
        if spec.matches(inner):
            return spec
    raise KeyError(check_id)


@dataclass(frozen=True)
class Check:
    """The result of one check.

    ``status`` is ``ok``, ``warn``, ``fail`` or ``skipped``; ``cause`` a doctor cause its
    row declares (required when it fails: ``UNEXPLAINED`` when none could be
    established); ``detail`` the evidence, in sentences; ``fix`` what to do, as a
    paragraph then a script (as findings' fixes read).  ``incomplete`` marks a check that
    was meant to run but could not (kubectl or AWS refused, the probe did not start): it
    makes the run exit 3 when nothing fails.
    """

    id: str
    status: str
    cause: str | None = None
    detail: str = ""
    fix: str = ""
    incomplete: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.id}: unknown status {self.status!r}")
        spec = spec_for(self.id)
        if self.cause is not None:
            doctor_cause(self.cause)  # a KeyError names a cause missing from the table
            if self.cause not in spec.causes:
                raise ValueError(f"check {self.id} does not declare the cause {self.cause}")
        if self.status == FAIL and self.cause is None:
            raise ValueError(f"check {self.id} fails without a cause (UNEXPLAINED when none is established)")

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "cause": self.cause, "detail": self.detail, "fix": self.fix}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, prefix: str = "") -> Check:
        """A check read back from a ``trailscan.doctor/v1`` document (the probe's); raises
        :class:`ValueError` for one that is not a check of this doctor."""
        try:
            return cls(
                id=prefix + str(data["id"]),
                status=str(data["status"]),
                cause=None if data.get("cause") is None else str(data["cause"]),
                detail=str(data.get("detail") or ""),
                fix=str(data.get("fix") or ""),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a doctor check: {error}") from None


@dataclass
class DoctorReport:
    """A doctor run: what was examined (``target``) and its checks, in the order they ran."""

    target: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check | None) -> Check | None:
        if check is not None:
            self.checks.append(check)
        return check

    def get(self, check_id: str) -> Check | None:
        return next((check for check in self.checks if check.id == check_id), None)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.status == FAIL]

    @property
    def root_cause(self) -> Check | None:
        """The failing check whose cause comes first in the doctor's table: what was wired
        before what depends on it (the annotation before the injection, DNS before the
        connection)."""
        order = {code: index for index, code in enumerate(codes(DOCTOR))}
        failed = self.failed
        return min(failed, key=lambda check: order.get(check.cause or "", len(order))) if failed else None

    @property
    def exit_code(self) -> int:
        """1 when a check fails; 3 when none fails but one could not run; else 0."""
        if self.failed:
            return 1
        if any(check.incomplete for check in self.checks):
            return 3
        return 0


def doctor_document(report: DoctorReport) -> dict[str, Any]:
    """The ``trailscan.doctor/v1`` document: ``schema``, ``target``, ``checks``."""
    return {"schema": SCHEMA, "target": dict(report.target), "checks": [check.as_json() for check in report.checks]}
