"""The doctor's report for people (a terminal) and for programs (``trailscan.doctor/v1`` JSON).

Details quote what the pod, the cluster and AWS said — annotation values, kubectl's and
STS's messages, token claims — so everything for a terminal goes through
:func:`trailscan.report.safe.visible`, and JSON through :func:`~trailscan.report.safe.json_text`.
"""

from __future__ import annotations

import json
import textwrap
from typing import TextIO

from trailscan.doctor.model import FAIL, OK, SKIPPED, WARN, DoctorReport, doctor_document
from trailscan.explain.causes import doctor_cause
from trailscan.report.safe import json_text, visible

__all__ = ["render_json", "render_text"]

_TAGS = {OK: "ok", WARN: "WARN", FAIL: "FAIL", SKIPPED: "skip"}
_WIDTH = 100


def render_json(report: DoctorReport, out: TextIO) -> None:
    """The ``trailscan.doctor/v1`` document, on *out* alone."""
    out.write(json_text(json.dumps(doctor_document(report), indent=2, ensure_ascii=False)) + "\n")


def render_text(report: DoctorReport, out: TextIO) -> None:
    """One block per check: status, id and cause, the evidence, and the fix for what is not ok."""
    out.write(visible(_headline(report)) + "\n\n")
    for check in report.checks:
        head = f"{_TAGS[check.status]:<5} {check.id}"
        if check.cause:
            head += f"  {check.cause}"
        out.write(visible(head) + "\n")
        out.writelines(f"      {line}\n" for line in _wrap(visible(check.detail), _WIDTH - 6) or [""])
        if check.fix and check.status in (FAIL, WARN):
            summary, _, script = check.fix.partition("\n\n")
            out.write("      fix: " + "\n           ".join(_wrap(visible(summary), _WIDTH - 11)) + "\n")
            for line in script.splitlines():
                out.write(f"        {visible(line)}\n")
        out.write("\n")
    out.write(visible(_verdict(report)) + "\n")


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most *width*, never breaking inside an ARN or a name at its hyphens."""
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)


def _headline(report: DoctorReport) -> str:
    target = report.target
    if target.get("kind") == "pod":
        where = f"pod {target.get('namespace')}/{target.get('name')}"
        extras = [f"context {target['context']}"] if target.get("context") else []
        if target.get("service_account"):
            extras.append(f"service account {target.get('namespace')}/{target['service_account']}")
        if target.get("node"):
            extras.append(f"node {target['node']}")
        if target.get("chosen"):
            extras.append(str(target["chosen"]))
        return f"trailscan doctor: {where}" + (f" ({', '.join(extras)})" if extras else "")
    who = target.get("service_account") or "no service-account token"
    return f"trailscan doctor: this environment (host {target.get('hostname')}, {who})"


def _verdict(report: DoctorReport) -> str:
    counts = {status: sum(1 for c in report.checks if c.status == status) for status in (OK, WARN, FAIL, SKIPPED)}
    tally = ", ".join(f"{n} {name}" for name, n in (("ok", counts[OK]), ("warning", counts[WARN]),
                                                    ("failed", counts[FAIL]), ("skipped", counts[SKIPPED])) if n)
    root = report.root_cause
    if root is not None and root.cause:
        return f"{tally}. Root cause: {root.cause} ({root.id}): {doctor_cause(root.cause).title}."
    if report.exit_code == 3:
        blocked = ", ".join(c.id for c in report.checks if c.incomplete)
        return f"{tally}. Some checks could not run ({blocked}): nothing failed among the others."
    return f"{tally}. Nothing failed."
