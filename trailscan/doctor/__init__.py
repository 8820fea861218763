"""``trailscan doctor``: why a pod gets no AWS credentials or cannot reach AWS, diagnosed now.

Every check is a row of :data:`.model.CHECKS`, its causes rows of the cause table's doctor
section; a run is a :class:`.model.DoctorReport`, printed as the ``trailscan.doctor/v1``
document.
"""

from __future__ import annotations

from trailscan.doctor.model import CHECKS, SCHEMA, Check, CheckSpec, DoctorReport, doctor_document

__all__ = ["CHECKS", "SCHEMA", "Check", "CheckSpec", "DoctorReport", "doctor_document"]
