"""The view both templates render: the findings document arranged for people.

Summary by cause, findings grouped by cluster and namespace, the coverage with the
incomplete reads first (then the ``empty`` ones), whether the window held any event at
all, and the chart's geometry.  Titles of causes come from the cause
table (:mod:`trailscan.explain.causes`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from trailscan.errors import InputError
from trailscan.explain.causes import CAUSES, FAMILIES, family
from trailscan.findings import READ_STATUSES, change_words
from trailscan.model import Window
from trailscan.report.chart import TimelinePoint, chart
from trailscan.report.recency import STILL_FAILING, ago, judged_at, still_failing
from trailscan.report.document import (
    SCHEMA,
    _duration,
    _parse_time,
    _utc,
    _when,
    check_document,
    document_window,
    workload_label,
)
from trailscan.version import __version__

__all__ = ["ACCENT", "CAUSE_TITLES", "environment", "split_fix", "view"]

TEMPLATES = Path(__file__).parent / "templates"

#: The colour of cause badges (and nothing else), so a screenshot can be checked for it.
ACCENT = "#b42318"

#: The badge colour of each cause family (:data:`~trailscan.explain.causes.FAMILIES`);
#: permissions and denies keep :data:`ACCENT`.
FAMILY_COLOURS = {
    "trust": "#6941c6",
    "service_account": "#b54708",
    "permissions": ACCENT,
    "pod_identity": "#0e7490",
    "node": "#175cd3",
    "unexplained": "#475467",
}
#: A role's page in the IAM console (commercial partition; others have their own domains).
IAM_CONSOLE_ROLE = "https://console.aws.amazon.com/iam/home#/roles/details/{name}"
_ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
#: Shell commands a fix may give on a line of its prose; shown as code, to copy.
_COMMAND = re.compile(r"^\s*(?:kubectl|aws|eksctl|helm|trailscan)\s+\S")

#: One short line per cause, for people; an unknown cause shows its code alone.
CAUSE_TITLES = {row.code: row.title for row in CAUSES}
KIND_LABELS = {"irsa": "IRSA", "pod_identity": "Pod Identity", "denied_call": "Denied call"}
RESOLUTION_LABELS = {
    "exact": "exact",
    "by_role": "by role only",
    "node": "node instance role",
    "unknown": "unknown",
    "not_eks": "not an EKS workload",
}
#: Chart series when only the kind of each failed event is known (see :func:`failure_timeline`).
KIND_SERIES = {
    "irsa": "IRSA: AssumeRoleWithWebIdentity refused",
    "pod_identity": "Pod Identity refused",
    "denied_call": "API calls denied",
}
#: The order of coverage rows: what was not read first.
_STATUS_ORDER = {"failed": 0, "partial": 1, "empty": 2, "complete": 3}



def split_fix(text: str | None) -> list[tuple[str, str]]:
    """A fix as ``("text", prose)``, ``("json", policy)`` and ``("code", other)`` parts.

    A fix's first paragraph is prose (what to do); what follows the first blank line is
    its script — commands, comments, documents — and is kept verbatim as code, line
    breaks, ``#`` and ``_`` included, so that it can be copied and run (see
    :mod:`trailscan.explain.fixes`).  Fenced blocks are code wherever they stand
    (```` ```json ```` re-indented); in the prose paragraph, an unfenced JSON object (or
    array of objects) that parses is shown as a document of its own.
    """
    if not text:
        return []
    parts: list[tuple[str, str]] = []
    position = 0
    blank = _first_blank_line(text)
    for match in _FENCED.finditer(text):
        parts.extend(_outside_fences(text, position, match.start(), blank))
        parts.append(_code_part(match.group(2)))
        position = match.end()
    parts.extend(_outside_fences(text, position, len(text), blank))
    return [(kind, body) for kind, body in _commands_as_code(parts) if body.strip()]


def _commands_as_code(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Prose lines that are shell commands (``kubectl …``, ``aws …``) as code parts, so
    they are shown in a monospace block and copied whole."""
    split: list[tuple[str, str]] = []
    for kind, body in parts:
        if kind != "text" or not any(_COMMAND.match(line) for line in body.splitlines()):
            split.append((kind, body))
            continue
        for line in body.splitlines():
            kind_of_line = "code" if _COMMAND.match(line) else "text"
            if split and split[-1][0] == kind_of_line and kind_of_line == "text":
                split[-1] = ("text", split[-1][1] + "\n" + line)
            else:
                split.append((kind_of_line, line.strip() if kind_of_line == "code" else line))
    return split


def _first_blank_line(text: str) -> int:
    """Where the prose paragraph ends: the first blank line outside a fenced block."""
    fences = [(m.start(), m.end()) for m in _FENCED.finditer(text)]
    for blank in re.finditer(r"\n[ \t]*\n", text):
        if not any(start <= blank.start() < end for start, end in fences):
            return blank.start()
    return len(text)


def _outside_fences(text: str, start: int, end: int, blank: int) -> list[tuple[str, str]]:
    """Prose before the first blank line (JSON in it split out); the script after it, verbatim."""
    parts = _split_json(text[start:min(end, blank)]) if start < blank else []
    script = text[max(start, blank):end].strip("\n")
    if script.strip():
        parts.append(("code", script))
    return parts


_FENCED = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)\n[ \t]*\1[`~]*[ \t]*$", re.S | re.M)
_DECODER = json.JSONDecoder()


def _split_json(text: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    prose_start = 0
    index = 0
    while index < len(text):
        if text[index] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, index)
            except ValueError:
                value, end = None, index
            if (
                isinstance(value, dict)
                and value
                or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value))
            ):
                parts.append(("text", text[prose_start:index].strip()))
                parts.append(("json", json.dumps(value, indent=2, ensure_ascii=False)))
                prose_start = index = end
                continue
        index += 1
    parts.append(("text", text[prose_start:].strip()))
    return parts


def _code_part(code: str) -> tuple[str, str]:
    try:
        return ("json", json.dumps(json.loads(code), indent=2, ensure_ascii=False))
    except ValueError:
        return ("code", code.strip("\n"))


def environment(*, autoescape: bool, finalize: Callable[[Any], Any] | None = None) -> Environment:
    """A Jinja environment over the report's templates, with the shared filters."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=not autoescape,
        **({"finalize": finalize} if finalize else {}),
    )
    env.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["plural"] = lambda n, word, words=None: word if n == 1 else (words or word + "s")
    return env


def view(document: Mapping, timeline: Iterable[TimelinePoint] | None, *, notes: Sequence[str] = ()) -> dict:
    """What both templates render; ``notes`` are the findings report's (they are not part
    of the document): what the inventory lacked, what was left out."""
    document = check_document(document)
    timeline = None if timeline is None else [(str(label), _utc(moment)) for label, moment in timeline]
    try:
        window: Window | None = document_window(document)
    except InputError:
        # `trailscan findings` over a whole store may have no window: span what is known.
        window = _span(
            [
                *(moment for _, moment in timeline or ()),
                *(_parse_time(f.get(k)) for f in document["findings"] for k in ("first_seen", "last_seen")),
            ]
        )
    generated = _parse_time(document.get("generated_at"))
    at = judged_at(window.end if window else None, generated or datetime.now(UTC))
    findings = [_finding_view(index, f, at) for index, f in enumerate(document["findings"])]
    coverage = _coverage_view(document["coverage"])
    incomplete = [row for row in coverage if row["status"] not in READ_STATUSES]
    # Each event is counted in the row of the source that stored it: no row counting one
    # means no event in the window.  The all-clear needs every row read and events read.
    events_read = sum(row["events"] or 0 for row in coverage)
    no_events = bool(coverage) and not findings and all(row["events"] == 0 for row in coverage)
    return {
        "version": __version__,
        "schema": SCHEMA,
        "accent": ACCENT,
        "family_colours": sorted(FAMILY_COLOURS.items()),
        "window": {
            "start": _when(window.start),
            "end": _when(window.end),
            "length": _duration(window.end - window.start),
            "given": True,
        }
        if window
        else {"start": "the beginning", "end": "the end of the store", "length": "no window given", "given": False},
        "generated_at": _when(generated) if generated else str(document.get("generated_at") or "—"),
        "summary": _summary(findings),
        "index": sorted(findings, key=lambda f: (-f["count"], f["label"], f["anchor"])),
        "clusters": _grouped(findings),
        "coverage": coverage,
        "incomplete": incomplete,
        "notes": [str(note) for note in notes],
        "still_failing": sum(1 for f in findings if f["still_failing"]),
        "still_failing_minutes": int(STILL_FAILING.total_seconds() // 60),
        "judged_at": _when(at),
        "events_read": events_read,
        "no_events": no_events,
        "complete": bool(coverage) and not incomplete and events_read > 0,
        "chart": chart(window, timeline) if window else None,
    }


def _span(moments: list[datetime | None]) -> Window | None:
    known = [m for m in moments if m is not None]
    return Window(min(known), max(known) + timedelta(seconds=1)) if known else None


def _finding_view(index: int, finding: Mapping, at: datetime) -> dict:
    workload = finding.get("workload") or {}
    resolution = workload.get("resolution") or "unknown"
    cause = str(finding.get("cause") or "UNEXPLAINED")
    kind = str(finding.get("kind") or "")
    count = finding.get("count")
    first, last = _parse_time(finding.get("first_seen")), _parse_time(finding.get("last_seen"))
    return {
        "anchor": f"finding-{index + 1}",
        "label": workload_label(finding),
        "cluster": workload.get("cluster"),
        "namespace": workload.get("namespace"),
        "service_account": workload.get("service_account"),
        "resolution": resolution,
        "resolution_label": RESOLUTION_LABELS.get(resolution, resolution),
        "candidates": [_candidate(c) for c in workload.get("candidates") or []],
        "kind": kind,
        "kind_label": KIND_LABELS.get(kind, kind),
        "cause": cause,
        "cause_title": CAUSE_TITLES.get(cause, ""),
        "family": family(cause),
        "family_label": FAMILIES[family(cause)][0],
        "family_colour": FAMILY_COLOURS[family(cause)],
        "docs_url": FAMILIES[family(cause)][1],
        "still_failing": bool(last and still_failing(last, at, finding.get("status"))),
        "last_seen_ago": ago(last, at) if last else "",
        "role_console_url": _role_console_url(finding.get("role_arn")),
        "event_source": finding.get("event_source"),
        "event_name": finding.get("event_name"),
        "error_code": finding.get("error_code"),
        "error_message": finding.get("error_message"),
        "role_arn": finding.get("role_arn"),
        "principal_arn": finding.get("principal_arn"),
        "count": count if isinstance(count, int) else 0,
        "first_seen": _when(first) if first else finding.get("first_seen"),
        "last_seen": _when(last) if last else finding.get("last_seen"),
        "last_seen_short": last.strftime("%Y-%m-%d %H:%M") if last else finding.get("last_seen"),
        "regions": [str(r) for r in finding.get("regions") or []],
        "sample_event_ids": [str(e) for e in finding.get("sample_event_ids") or []],
        "explanation": finding.get("explanation") or "",
        "fix": split_fix(finding.get("fix")),
        "status": str(finding.get("status") or "ongoing"),
        "decisive_change": decisive_change(finding),
    }


def decisive_change(finding: Mapping) -> str:
    """From a findings/v1 finding: ``stopped after UpdateAssumeRolePolicy on payments-api by
    arn:… at …`` (the first change after its last failure), else ``began after …`` (the last
    change at or before its first failure), else ""."""
    changes = [c for c in finding.get("changes") or [] if isinstance(c, Mapping) and c.get("event_time")]
    first, last = str(finding.get("first_seen") or ""), str(finding.get("last_seen") or "")
    if finding.get("status") == "stopped":
        picked, verb = next((c for c in changes if str(c["event_time"]) > last), None), "stopped after"
    else:
        before = [c for c in changes if str(c["event_time"]) <= first]
        picked, verb = (before[-1] if before else None), "began after"
    if picked is None:
        return ""
    return change_words(verb, picked.get("event_name"), picked.get("target"), picked.get("actor"),
                        picked.get("event_time"))


def _role_console_url(arn: Any) -> str | None:
    """The role's IAM console page, for a well-formed role ARN of the commercial partition."""
    match = _ROLE_ARN.match(arn) if isinstance(arn, str) else None
    return IAM_CONSOLE_ROLE.format(name=quote(match.group(1), safe="")) if match else None


def _candidate(candidate: Any) -> str:
    """A candidate service account: ``{"cluster", "namespace", "service_account"}`` (what
    the explainer writes) or already a string."""
    if isinstance(candidate, Mapping):
        name = f"{candidate.get('namespace') or '?'}/{candidate.get('service_account') or '?'}"
        return f"{candidate['cluster']}: {name}" if candidate.get("cluster") else name
    return str(candidate)


def _summary(findings: list[dict]) -> dict:
    by_cause: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for finding in findings:
        for bucket in (by_cause[(finding["cause"], finding["kind_label"])], by_kind[finding["kind_label"]]):
            bucket[0] += 1
            bucket[1] += finding["count"]
    workloads = {
        (f["cluster"], f["namespace"], f["service_account"]) if f["service_account"] else f["label"]
        for f in findings
    }
    return {
        "findings": len(findings),
        "events": sum(f["count"] for f in findings),
        "workloads": len(workloads),
        "clusters": len({f["cluster"] for f in findings if f["cluster"]}),
        "causes": [
            {
                "cause": cause,
                "title": CAUSE_TITLES.get(cause, ""),
                "family": family(cause),
                "docs_url": FAMILIES[family(cause)][1],
                "kind": kind,
                "findings": n,
                "events": events,
            }
            for (cause, kind), (n, events) in sorted(
                by_cause.items(), key=lambda item: (-item[1][1], item[0])
            )
        ],
        "kinds": [
            {"kind": kind, "findings": n, "events": events}
            for kind, (n, events) in sorted(by_kind.items(), key=lambda item: (-item[1][1], item[0]))
        ],
    }


def _grouped(findings: list[dict]) -> list[dict]:
    """Findings by cluster, then namespace; the busiest first."""
    clusters: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for finding in findings:
        clusters[finding["cluster"] or ""][finding["namespace"] or ""].append(finding)
    result = []
    for cluster, namespaces in clusters.items():
        groups = []
        for namespace, members in namespaces.items():
            members.sort(key=lambda f: (-f["count"], f["label"], f["anchor"]))
            groups.append(
                {"namespace": namespace, "findings": members, "events": sum(f["count"] for f in members)}
            )
        groups.sort(key=lambda g: (g["namespace"] == "", -g["events"], g["namespace"]))
        result.append({"cluster": cluster, "namespaces": groups, "events": sum(g["events"] for g in groups)})
    result.sort(key=lambda c: (c["cluster"] == "", -c["events"], c["cluster"]))
    return result


def _coverage_view(coverage: list) -> list[dict]:
    rows = []
    for entry in coverage:
        entry = entry if isinstance(entry, Mapping) else {}
        status = str(entry.get("status") or "failed")
        rows.append(
            {
                "source": entry.get("source"),
                "account": entry.get("account") or "",
                "region": entry.get("region") or "",
                "status": status,
                "events": entry.get("events") if isinstance(entry.get("events"), int) else None,
                "skipped": entry.get("skipped") if isinstance(entry.get("skipped"), int) else None,
                "detail": entry.get("detail") or "",
            }
        )
    rows.sort(
        key=lambda r: (
            _STATUS_ORDER.get(r["status"], -1),
            str(r["source"]),
            str(r["account"]),
            str(r["region"]),
        )
    )
    return rows


