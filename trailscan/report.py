"""The report stage: the SPEC §7 findings document rendered for people and published.

Everything here reads the findings *document* (``schema: trailscan.findings/v1``), never
the explainer's internals, the way cloudsplaining renders HTML from its documented JSON
results: whatever produced the document, the report shows the same thing.

- :func:`render_html` — one self-contained page (inline CSS, inline SVG, no script, no
  fonts or CDNs, and a Content-Security-Policy that forbids them all the same): a
  summary, the failures over time, a section per failing workload with its fix, and the
  coverage, with partial and failed reads highlighted — a report never says "no
  findings" for a region it could not read.
- :func:`render_markdown` — the same for a ticket, a pull request or a chat message.
- :func:`write_report` / :func:`publish_report` — a dated folder
  (``PREFIX/2026-11-28T060000Z/``) holding ``report.html``, ``report.md``,
  ``findings.json`` and ``events.parquet``, plus a ``latest/`` copy, in a local
  folder or under ``s3://BUCKET/PREFIX/``.

Every string that comes from CloudTrail (``userAgent``, ``errorMessage``, request
fields, and whatever the explanation quotes of them) is attacker-controlled: the HTML
template autoescapes everything, and the Markdown template escapes every expression
unless this module built it (:class:`Md`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from trailscan import __version__
from trailscan.errors import InputError, UsageError
from trailscan.model import Window, utc_now

if TYPE_CHECKING:  # pragma: no cover
    import boto3

    from trailscan.findings import FindingsReport
    from trailscan.store import Store

SCHEMA = "trailscan.findings/v1"
TEMPLATES = Path(__file__).parent / "templates"

#: The artifacts of one report, in the order they are written: ``report.html`` last, so
#: that a folder whose HTML exists is complete.
ARTIFACTS = ("events.parquet", "findings.json", "report.md", "report.html")
CONTENT_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "report.md": "text/markdown; charset=utf-8",
    "findings.json": "application/json",
    "events.parquet": "application/vnd.apache.parquet",
}
LATEST = "latest"

#: The colour of cause badges (and nothing else), so a screenshot can be checked for it.
ACCENT = "#b42318"
#: Chart series colours (colour-blind safe, none close to the accent); the last is "other".
SERIES_COLOURS = ("#2563eb", "#e69f00", "#059669", "#cc79a7", "#0891b2", "#7c3aed")
OTHER_COLOUR = "#9ca3af"
MAX_SERIES = len(SERIES_COLOURS)

#: One short line per SPEC §7 cause, for people; an unknown cause shows its code alone.
CAUSE_TITLES = {
    "INVALID_ROLE_ARN": "The requested role ARN is malformed",
    "TOKEN_EXPIRED": "The service-account token had expired",
    "IDP_UNREACHABLE": "STS could not reach the cluster's OIDC issuer",
    "OIDC_PROVIDER_MISSING": "IAM has no OIDC provider for the cluster's issuer",
    "OIDC_THUMBPRINT_MISMATCH": "The OIDC provider's thumbprint does not match",
    "SA_NOT_FOUND": "The token names a service account the cluster does not have",
    "SA_NOT_ANNOTATED": "The service account has no eks.amazonaws.com/role-arn annotation",
    "ROLE_MISMATCH": "The pod asked for a role other than its service account's annotation",
    "ROLE_NOT_FOUND": "The requested role does not exist",
    "TRUST_PROVIDER_MISMATCH": "No trust statement federates this cluster's OIDC provider",
    "TRUST_ACTION_MISSING": "The trust policy does not allow sts:AssumeRoleWithWebIdentity",
    "TRUST_SUBJECT_MISMATCH": "The trust policy's sub condition excludes the service account",
    "TRUST_AUDIENCE_MISMATCH": "The trust policy's aud condition does not admit the token's audience",
    "POD_IDENTITY_TRUST": "The role does not trust pods.eks.amazonaws.com for sts:AssumeRole and sts:TagSession",
    "POD_IDENTITY_AGENT_DENIED": "The node role may not call eks-auth:AssumeRoleForPodIdentity",
    "NODE_ROLE_FALLBACK": "The call used the node's instance role: the pod never got its own credentials",
    "EXPLICIT_DENY": "An explicit deny refused the call",
    "BOUNDARY_DENY": "The permissions boundary does not allow the action",
    "RESOURCE_POLICY_DENY": "The resource's policy does not allow the caller",
    "MISSING_PERMISSION": "No identity policy of the role allows the action",
    "UNEXPLAINED": "The cause could not be established",
}
KIND_LABELS = {"irsa": "IRSA", "pod_identity": "Pod Identity", "denied_call": "Denied call"}
RESOLUTION_LABELS = {
    "exact": "exact",
    "by_role": "by role only",
    "node": "node instance role",
    "unknown": "unknown",
}
#: Chart series when only the kind of each failed event is known (see :func:`failure_timeline`).
KIND_SERIES = {
    "irsa": "IRSA: AssumeRoleWithWebIdentity refused",
    "pod_identity": "Pod Identity refused",
    "denied_call": "API calls denied",
}
# The named detection queries (queries/*.sql) that find each kind's failed events; an
# event two queries return belongs to the first (a Pod Identity sts:AssumeRole is also
# an AccessDenied).
_KIND_QUERIES = (
    ("irsa", "failed_web_identity"),
    ("pod_identity", "failed_pod_identity"),
    ("denied_call", "denied_calls"),
)
_STATUS_ORDER = {"failed": 0, "partial": 1, "complete": 2}

#: One point of the failures-over-time chart: ``(series label, event time)``.
TimelinePoint = tuple[str, datetime]


@dataclass(frozen=True)
class ReportLocation:
    """Where a report was written: its dated folder and the ``latest/`` copy, each a
    local path or an ``s3://`` URL ending in ``/``."""

    folder: str
    latest: str
    files: tuple[str, ...] = ARTIFACTS

    def url(self, name: str = "report.html", *, latest: bool = False) -> str:
        """The path or URL of one artifact."""
        return (self.latest if latest else self.folder) + name

    @property
    def html(self) -> str:
        return self.url("report.html")


# -- the document ------------------------------------------------------------------------


def check_document(document: Any) -> dict:
    """``document`` if it is a SPEC §7 findings document; :class:`InputError` otherwise."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise InputError(f"not a {SCHEMA} findings document (schema: {found!r})")
    if not isinstance(document.get("findings"), list) or not isinstance(document.get("coverage"), list):
        raise InputError(f"the {SCHEMA} document lacks its findings or coverage list")
    return document


def document_window(document: Mapping) -> Window:
    """The document's ``window`` as a :class:`Window`."""
    window = document.get("window") or {}
    start, end = _parse_time(window.get("start")), _parse_time(window.get("end"))
    if start is None or end is None or end <= start:
        raise InputError(f"the findings document has no usable window ({window!r})")
    return Window(start, end)


def workload_label(finding: Mapping) -> str:
    """A short name for a finding's workload: ``cluster/namespace/service-account`` when
    it is known, else what is known (the role, the node, the principal)."""
    workload = finding.get("workload") or {}
    cluster = workload.get("cluster")
    namespace, account = workload.get("namespace"), workload.get("service_account")
    if namespace and account:
        return f"{cluster}/{namespace}/{account}" if cluster else f"{namespace}/{account}"
    if workload.get("resolution") == "node":
        what = "node instance role"
    else:
        role = _short_arn(finding.get("role_arn")) or _short_arn(finding.get("principal_arn"))
        what = f"role {role}" if role else "unknown workload"
    return f"{cluster}: {what}" if cluster else what


# -- the timeline --------------------------------------------------------------------------


def failure_timeline(
    store: Store,
    document: Mapping,
    *,
    event_ids: Mapping[int, Iterable[str]] | None = None,
) -> list[TimelinePoint]:
    """The failed events of the document's window as ``(series, time)`` points.

    Findings carry a few ``sample_event_ids``, not all their events, so the times come
    from the store in one of two ways:

    - ``event_ids`` given (finding index in ``document["findings"]`` → every event id of
      that finding, which the explainer knows): each point is labelled with its finding's
      :func:`workload_label`, and the chart shows which workload failed when.
    - otherwise, the failed events of the window are found by the same named detection
      queries the explainer reads (``failed_web_identity``, ``failed_pod_identity``,
      ``denied_calls``) and labelled by kind (IRSA, Pod Identity, denied call).  This
      needs nothing from the explainer and cannot disagree with the store; its total may
      exceed the findings' when the explainer set some failed events aside.
    """
    findings = document.get("findings") or []
    if event_ids is not None:
        pairs = [
            (index, str(event_id))
            for index, ids in event_ids.items()
            if 0 <= index < len(findings)
            for event_id in ids
        ]
        if not pairs:
            return []
        table = pa.table({"finding": [p[0] for p in pairs], "event_id": [p[1] for p in pairs]})
        store.con.register("report_event_ids", table)
        try:
            rows = store.con.execute(
                "SELECT DISTINCT r.finding, e.event_id, e.event_time FROM report_event_ids r "
                "JOIN events e USING (event_id) WHERE e.event_time IS NOT NULL"
            ).fetchall()
        finally:
            store.con.unregister("report_event_ids")
        labels = {index: workload_label(finding) for index, finding in enumerate(findings)}
        return sorted((labels[index], _utc(moment)) for index, _, moment in rows)

    from trailscan.queries import load_queries

    window = document_window(document)
    book = load_queries()
    bounds = {"since": _iso(window.start), "until": _iso(window.end)}
    seen: set[str] = set()
    points: list[TimelinePoint] = []
    for kind, name in _KIND_QUERIES:
        query = book[name]
        _, rows = store.query(
            f"SELECT event_id, event_time FROM ({query.typed_sql()}) WHERE event_time IS NOT NULL",
            query.bind(bounds),
        )
        for event_id, moment in rows:
            if event_id not in seen:
                seen.add(event_id)
                points.append((KIND_SERIES[kind], _utc(moment)))
    return sorted(points)


# -- rendering ---------------------------------------------------------------------------


def render_html(document: Mapping, timeline: Iterable[TimelinePoint] | None = None) -> str:
    """The report as one self-contained HTML page.

    ``timeline`` (from :func:`failure_timeline`) feeds the failures-over-time chart;
    without it the page says that no event times were given.
    """
    view = _view(document, timeline)
    return _environment("html").get_template("report.html.j2").render(view)


def render_markdown(document: Mapping, timeline: Iterable[TimelinePoint] | None = None) -> str:
    """The report as GitHub-flavoured Markdown: every CloudTrail-derived string escaped
    (table pipes, newlines, backticks, emphasis, HTML tags), JSON fixes in code fences
    longer than any backtick run they hold."""
    view = _view(document, timeline)
    return _environment("md").get_template("report.md.j2").render(view)


class Md(str):
    """Markdown this module built (escaped or generated): emitted as is by the Markdown
    template, which escapes every other value."""


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$#])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLOCK_START = re.compile(r"^(?:[+=>-]|\d+[.)])")


def md_text(value: Any) -> Md:
    """``value`` as one line of Markdown text that renders literally: whitespace (newlines
    included) collapsed, ``&`` and ``<`` as entities (no HTML tag, no entity survives),
    Markdown punctuation backslash-escaped."""
    if value is None:
        return Md("")
    text = " ".join(_CONTROL.sub("", str(value)).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return Md(_MD_SPECIAL.sub(r"\\\1", text))


def md_paragraph(value: Any) -> Md:
    """:func:`md_text` for the start of a line: a leading ``-``, ``+``, ``=``, ``>`` or
    ``1.`` would otherwise begin a list, a quote or a setext underline."""
    text = md_text(value)
    match = _BLOCK_START.match(text)
    if match:
        text = Md(text[: match.end() - 1] + "\\" + text[match.end() - 1 :])
    return text


def md_fence(code: str, info: str = "") -> Md:
    """``code`` in a fenced block no content can close: the fence is one backtick longer
    than the longest backtick run inside."""
    code = _CONTROL.sub("", code).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return Md(f"{fence}{info}\n{code}\n{fence}")


def split_fix(text: str | None) -> list[tuple[str, str]]:
    """A fix as ``("text", prose)``, ``("json", policy)`` and ``("code", other)`` parts.

    JSON is recognised in fenced blocks (```` ```json … ``` ````) and, unfenced, as any
    object (or array of objects) that parses; it is re-indented for reading.  Other
    fenced blocks (a ``kubectl`` command) are kept as they are.
    """
    if not text:
        return []
    parts: list[tuple[str, str]] = []
    position = 0
    for match in _FENCED.finditer(text):
        parts.extend(_split_json(text[position : match.start()]))
        parts.append(_code_part(match.group(2)))
        position = match.end()
    parts.extend(_split_json(text[position:]))
    return [(kind, body) for kind, body in parts if body.strip()]


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


def _environment(flavour: str) -> Environment:
    if flavour == "html":
        env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    else:
        env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=False,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=lambda value: value if isinstance(value, Md) else md_text(value),
        )
        env.filters["md"] = md_paragraph
        env.filters["fence"] = md_fence
        env.filters["raw"] = Md
    env.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["plural"] = lambda n, word, words=None: word if n == 1 else (words or word + "s")
    return env


# -- the view both templates render -----------------------------------------------------------


def _view(document: Mapping, timeline: Iterable[TimelinePoint] | None) -> dict:
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
    findings = [_finding_view(index, f) for index, f in enumerate(document["findings"])]
    coverage = _coverage_view(document["coverage"])
    incomplete = [row for row in coverage if row["status"] != "complete"]
    return {
        "version": __version__,
        "schema": SCHEMA,
        "accent": ACCENT,
        "window": {
            "start": _when(window.start),
            "end": _when(window.end),
            "length": _duration(window.end - window.start),
        }
        if window
        else {"start": "the beginning", "end": "the end of the store", "length": "no window given"},
        "generated_at": _when(generated) if generated else str(document.get("generated_at") or "—"),
        "summary": _summary(findings),
        "index": sorted(findings, key=lambda f: (-f["count"], f["label"], f["anchor"])),
        "clusters": _grouped(findings),
        "coverage": coverage,
        "incomplete": incomplete,
        "chart": _chart(window, timeline) if window else None,
    }


def _span(moments: list[datetime | None]) -> Window | None:
    known = [m for m in moments if m is not None]
    return Window(min(known), max(known) + timedelta(seconds=1)) if known else None


def _finding_view(index: int, finding: Mapping) -> dict:
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
    }


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


# -- the chart ----------------------------------------------------------------------------

_BUCKETS = (300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
_MAX_BARS = 40
_PLOT = {"width": 960, "height": 250, "left": 52, "right": 28, "top": 14, "bottom": 44}


def _chart(window: Window, timeline: Iterable[TimelinePoint] | None) -> dict | None:
    """Stacked bars of failed events per bucket (an hour for a day's window), with the
    geometry computed here so the template only draws."""
    if timeline is None:
        return None
    points = [(str(label), _utc(moment)) for label, moment in timeline if window.contains(_utc(moment))]
    span = (window.end - window.start).total_seconds()
    size = next((s for s in _BUCKETS if span / s <= _MAX_BARS), None)
    if size is None:  # a long window (a whole store): whole days
        size = math.ceil(span / _MAX_BARS / 86400) * 86400
    grain = min(size, 86400)  # buckets of whole days start at midnight
    origin = math.floor(window.start.timestamp() / grain) * grain
    count = max(1, math.ceil((window.end.timestamp() - origin) / size))
    totals = Counter(label for label, _ in points)
    ranked = sorted(totals, key=lambda label: (-totals[label], label))
    if len(ranked) > MAX_SERIES:
        shown, folded = ranked[: MAX_SERIES - 1], set(ranked[MAX_SERIES - 1 :])
        other = f"{len(folded)} other series"
    else:
        shown, folded, other = ranked, set(), ""
    series = [
        {"label": label, "colour": SERIES_COLOURS[i], "total": totals[label]} for i, label in enumerate(shown)
    ]
    if folded:
        series.append(
            {"label": other, "colour": OTHER_COLOUR, "total": sum(totals[label] for label in folded)}
        )
    index_of = {s["label"]: i for i, s in enumerate(series)}
    cells = [[0] * len(series) for _ in range(count)]
    for label, moment in points:
        bucket = min(count - 1, int((moment.timestamp() - origin) // size))
        cells[bucket][index_of[other if label in folded else label]] += 1

    plot = _PLOT
    inner_w = plot["width"] - plot["left"] - plot["right"]
    inner_h = plot["height"] - plot["top"] - plot["bottom"]
    baseline = plot["top"] + inner_h
    peak = max((sum(cell) for cell in cells), default=0)
    step = _nice_step(peak)
    top = max(step, math.ceil(peak / step) * step)
    slot = inner_w / count
    bar_w = max(1.0, slot * (0.78 if count > 1 else 0.3))
    bars = []
    for i, cell in enumerate(cells):
        start = datetime.fromtimestamp(origin + i * size, timezone.utc)
        end = start + timedelta(seconds=size)
        x = plot["left"] + i * slot + (slot - bar_w) / 2
        y = float(baseline)
        rects = []
        for j, value in enumerate(cell):
            if not value:
                continue
            h = value / top * inner_h
            y -= h
            rects.append({"x": _r(x), "y": _r(y), "w": _r(bar_w), "h": _r(h), "colour": series[j]["colour"]})
        detail = "; ".join(f"{series[j]['label']}: {v}" for j, v in enumerate(cell) if v)
        bars.append(
            {
                "rects": rects,
                "title": f"{_clock(start, size)}–{_clock(end, size)} UTC: {sum(cell)} refused"
                + (f" ({detail})" if detail else ""),
            }
        )
    ticks = [{"y": _r(baseline - v / top * inner_h), "label": f"{v:,}"} for v in range(0, top + 1, step)]
    every = max(1, math.ceil(count / 12))
    labels = []
    previous_day = None
    for i in range(0, count + 1, every):
        moment = datetime.fromtimestamp(origin + i * size, timezone.utc)
        day = moment.strftime("%b %d")
        labels.append(
            {
                "x": _r(plot["left"] + i * slot),
                "time": moment.strftime("%H:%M")
                if size < 86400
                else moment.strftime("%b %Y")
                if span > 200 * 86400
                else day,
                "day": day if size < 86400 and day != previous_day else "",
            }
        )
        previous_day = day
    return {
        **plot,
        "baseline": baseline,
        "right_edge": plot["width"] - plot["right"],
        "bars": bars,
        "ticks": ticks,
        "labels": labels,
        "series": series,
        "total": len(points),
        "peak": peak,
        "bucket": _duration(timedelta(seconds=size)).removeprefix("1 "),
        "sparkline": _sparkline([sum(cell) for cell in cells]),
    }


def _nice_step(peak: int) -> int:
    """A round y-axis step giving about four gridlines."""
    if peak <= 4:
        return 1
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return int(factor * magnitude)
    return int(10 * magnitude)  # pragma: no cover


def _sparkline(values: list[int]) -> str:
    blocks = "▁▂▃▄▅▆▇█"
    peak = max(values, default=0)
    if not peak:
        return blocks[0] * len(values)
    return "".join(
        blocks[0] if v == 0 else blocks[max(1, min(7, math.ceil(v / peak * 8) - 1))] for v in values
    )


def _clock(moment: datetime, size: int) -> str:
    return moment.strftime("%H:%M" if size < 86400 else "%Y-%m-%d")


def _r(value: float) -> float:
    return round(value, 1)


# -- writing -----------------------------------------------------------------------------


def window_events(store: Store, window: Window) -> pa.Table:
    """Every stored event of ``window`` (all columns; ``raw`` is already redacted by the
    store), oldest first, timestamps in UTC."""
    return _events_reader(store, window).read_all()


def _events_reader(store: Store, window: Window, batch_rows: int = 50_000) -> pa.RecordBatchReader:
    relation = store.con.sql(
        "SELECT * FROM events WHERE event_time >= $start AND event_time < $end ORDER BY event_time, event_id",
        params={"start": window.start, "end": window.end},
    )
    # DuckDB renamed its Arrow methods (fetch_arrow_reader → to_arrow_reader); take either.
    method = "to_arrow_reader" if hasattr(relation, "to_arrow_reader") else "fetch_arrow_reader"
    reader = getattr(relation, method)(batch_rows)
    schema = _utc_schema(reader.schema)
    if schema.equals(reader.schema):
        return reader
    return pa.RecordBatchReader.from_batches(
        schema, (pa.Table.from_batches([b]).cast(schema).to_batches()[0] for b in reader if b.num_rows)
    )


def _utc_schema(schema: pa.Schema) -> pa.Schema:
    fields = [
        f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def write_report(
    document: Mapping,
    events_table: pa.Table | pa.RecordBatchReader,
    *,
    destination: str,
    session: boto3.Session | None = None,
    now: datetime,
    timeline: Iterable[TimelinePoint] | None = None,
) -> ReportLocation:
    """Write the four artifacts to ``DESTINATION/<now as 2026-11-28T060000Z>/`` and again
    to ``DESTINATION/latest/``.

    ``destination`` is a local folder (created as needed; nothing is written outside it,
    each file replaced atomically) or ``s3://BUCKET/PREFIX/`` (written with
    ``s3:PutObject`` alone, through ``session``, each object with its content type).
    """
    document = check_document(document)
    target = _parse_destination(destination)
    stamp = _utc(now).strftime("%Y-%m-%dT%H%M%SZ")
    timeline = list(timeline) if timeline is not None else None
    # Everything is rendered before anything is published: a rendering error leaves
    # the destination untouched.
    with tempfile.TemporaryDirectory(prefix="trailscan-report-") as staging:
        folder = Path(staging)
        _write_parquet(events_table, folder / "events.parquet")
        (folder / "findings.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        (folder / "report.md").write_text(render_markdown(document, timeline), encoding="utf-8")
        (folder / "report.html").write_text(render_html(document, timeline), encoding="utf-8")
        if isinstance(target, _S3Target):
            return target.upload(folder, stamp, session)
        return _copy_local(folder, target, stamp)


def publish_report(
    store: Store,
    document: Mapping,
    *,
    destination: str,
    session: boto3.Session | None = None,
    now: datetime | None = None,
    event_ids: Mapping[int, Iterable[str]] | None = None,
) -> ReportLocation:
    """Render and publish the report of ``document``: its timeline and the window's
    events come from ``store`` (see :func:`failure_timeline` for ``event_ids``); the
    events are streamed to Parquet, never all held in memory."""
    document = check_document(document)
    _parse_destination(destination)  # a bad --to fails before any work
    window = document_window(document)
    timeline = failure_timeline(store, document, event_ids=event_ids)
    return write_report(
        document,
        _events_reader(store, window),
        destination=destination,
        session=session,
        now=now or utc_now(),
        timeline=timeline,
    )


def publish_findings(
    store: Store,
    report: FindingsReport,
    *,
    window: Window | None,
    destination: str,
    session: boto3.Session | None = None,
    now: datetime | None = None,
) -> ReportLocation:
    """Publish an explained :class:`~trailscan.findings.FindingsReport`: its document, a
    chart per workload (from each finding's events) and the window's events.  What
    ``trailscan report``, the demo and the notebook session all call.

    ``window`` is the window the report was asked for; None means everything stored,
    whose span the report then carries, its end moved past the last event (windows are
    half-open).
    """
    from trailscan.findings import findings_document

    now = now or utc_now()
    document = findings_document(report, now)
    if window is None:
        if report.window_start is None or report.window_end is None:
            raise UsageError("nothing to report: the store holds no events", "ingest something first")
        end = report.window_end + timedelta(seconds=1)
        document["window"] = {
            "start": report.window_start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    event_ids = {index: finding.event_ids for index, finding in enumerate(report.findings)}
    return publish_report(store, document, destination=destination, session=session, now=now, event_ids=event_ids)


def _write_parquet(events: pa.Table | pa.RecordBatchReader, path: Path) -> None:
    if isinstance(events, pa.Table):
        events = events.cast(_utc_schema(events.schema))
        pq.write_table(events, path, compression="zstd")
        return
    with pq.ParquetWriter(path, events.schema, compression="zstd") as writer:
        for batch in events:
            writer.write_batch(batch)


@dataclass(frozen=True)
class _S3Target:
    bucket: str
    prefix: str  # "" or ending in "/"

    def upload(self, folder: Path, stamp: str, session: boto3.Session | None) -> ReportLocation:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        from trailscan.aws import default_session

        client = (session or default_session()).client("s3")
        where = f"s3://{self.bucket}/{self.prefix}"
        for sub in (stamp, LATEST):
            for name in ARTIFACTS:
                extra = {"CacheControl": "no-cache"} if sub == LATEST else {}
                key = f"{self.prefix}{sub}/{name}"
                try:
                    with open(folder / name, "rb") as body:
                        client.put_object(
                            Bucket=self.bucket, Key=key, Body=body, ContentType=CONTENT_TYPES[name], **extra
                        )
                except ClientError as exc:
                    raise _s3_error(exc, self.bucket, self.prefix, key) from None
                except NoCredentialsError:
                    raise InputError(
                        f"no AWS credentials to write the report to {where}",
                        "configure AWS_PROFILE, IRSA or instance credentials",
                    ) from None
                except BotoCoreError as exc:
                    raise InputError(f"cannot write the report to {where}: {exc}") from None
        return ReportLocation(folder=f"{where}{stamp}/", latest=f"{where}{LATEST}/")


def _s3_error(exc: Exception, bucket: str, prefix: str, key: str) -> InputError:
    """One line naming the bucket (and the object, when it is about one)."""
    error = getattr(exc, "response", {}).get("Error", {})
    code = str(error.get("Code") or "error")
    if code in ("NoSuchBucket", "404", "NotFound"):
        return InputError(f"s3://{bucket}/: no such bucket", "create it, or check the --to destination")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return InputError(
            f"s3://{bucket}/{key}: access denied ({code})",
            f"the report needs s3:PutObject on arn:aws:s3:::{bucket}/{prefix}*",
        )
    message = " ".join(str(error.get("Message") or exc).split())
    return InputError(f"cannot write s3://{bucket}/{key}: {code}: {message}")


def _parse_destination(destination: str) -> _S3Target | Path:
    text = destination.strip()
    if not text:
        raise UsageError("the report destination is empty", "give --to s3://BUCKET/PREFIX/ or a folder")
    if text.lower().startswith("s3:"):
        match = re.fullmatch(r"s3://([^/]+)/?(.*)", text, flags=re.IGNORECASE)
        bucket = match.group(1) if match else ""
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            raise UsageError(f"{destination!r} is not an s3://BUCKET/PREFIX/ destination")
        prefix = "/".join(part for part in match.group(2).split("/") if part)
        if any(part in (".", "..") for part in prefix.split("/")):
            raise UsageError(f"{destination!r}: the prefix may not hold '.' or '..' segments")
        return _S3Target(bucket, prefix + "/" if prefix else "")
    return Path(os.path.expanduser(text))


def _copy_local(staging: Path, root: Path, stamp: str) -> ReportLocation:
    root = root.absolute()
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: the report destination exists and is not a folder")
    folders = {}
    for sub in (stamp, LATEST):
        target = root / sub
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in ARTIFACTS:
                partial = target / f".{name}.partial"
                shutil.copyfile(staging / name, partial)
                os.replace(partial, target / name)
        except OSError as exc:
            raise InputError(f"cannot write the report to {target}: {exc.strerror or exc}") from None
        folders[sub] = str(target) + os.sep
    return ReportLocation(folder=folders[stamp], latest=folders[LATEST])


# -- small helpers ------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return _utc(moment)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(span: timedelta) -> str:
    """``1 day``, ``36 hours``, ``2.5 hours``, ``30 minutes``, ``3,921.6 days``."""
    seconds = int(span.total_seconds())

    def plural(n: int, unit: str) -> str:
        return f"{n:,} {unit}{'s' if n != 1 else ''}"

    for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600)):
        if seconds >= size and seconds % size == 0:
            return plural(seconds // size, unit)
    for unit, size in (("days", 86400), ("hours", 3600)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    if seconds >= 60 and seconds % 60 == 0:
        return plural(seconds // 60, "minute")
    return plural(seconds, "second")


def _short_arn(arn: Any) -> str:
    """``arn:aws:iam::1:role/path/name`` → ``name``; assumed-role ARNs → the role name."""
    if not arn:
        return ""
    text = str(arn)
    resource = text.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        return resource.split("/")[1] if resource.count("/") >= 1 else resource
    return resource.rsplit("/", 1)[-1]
