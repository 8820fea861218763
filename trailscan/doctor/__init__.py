"""``trailscan doctor``: why a pod gets no AWS credentials or cannot reach AWS, diagnosed now.

CloudTrail answers for refused calls, 5–15 minutes late; ``NoCredentialsError`` and
``EndpointConnectionError`` leave no record at all.  The doctor looks where the SDK and
the cluster look instead:

- :mod:`.local` — inside the pod (or any environment): the injected variables, the
  projected tokens (:mod:`.token`), the endpoints (:mod:`.endpoints`, :mod:`.dns`),
  botocore's credential chain and the caller (:mod:`.credentials`);
- :mod:`.pod` — from a workstation, through the user's kubectl (:mod:`.cluster`): the
  pod spec and its service account, and when its annotation changed (:mod:`.podspec`), the
  webhook, the Pod Identity agent and CoreDNS (:mod:`.addons`), and optionally a probe pod
  that runs the in-pod doctor (:mod:`.probe`);
- :mod:`.trust` — both: the token against the role's trust policy, with the findings' engine.

Every check is a row of :data:`.model.CHECKS`, its causes rows of the cause table's doctor
section; a run is a :class:`.model.DoctorReport`, printed by :mod:`.render` or as the
``trailscan.doctor/v1`` document.
"""

from __future__ import annotations

from trailscan.doctor.model import CHECKS, SCHEMA, Check, CheckSpec, DoctorReport, doctor_document

__all__ = ["CHECKS", "SCHEMA", "Check", "CheckSpec", "DoctorReport", "doctor_document"]
