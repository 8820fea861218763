"""The report stage: the findings document rendered for people and programs, and published.

One room a job:

- :mod:`.document` — the ``trailscan.findings/v1`` document as the report reads it;
- :mod:`.markdown` — Markdown escaping, and the one findings → Markdown path
  (``--format markdown`` and ``report.md`` alike);
- :mod:`.terminal` — the findings table, and query results as table, JSON or CSV;
- :mod:`.view`, :mod:`.html`, :mod:`.chart` — the page: the view both templates render,
  the self-contained HTML, the failures-over-time chart;
- :mod:`.publish` — the dated folder and ``latest/`` copy, in a folder or S3.

Every string that comes from CloudTrail (``userAgent``, ``errorMessage``, request fields,
and whatever the explanation quotes of them) is attacker-controlled: the HTML template
autoescapes everything, and the Markdown template escapes every expression unless the
report built it (:class:`~trailscan.report.markdown.Md`).
"""

from __future__ import annotations

from trailscan.report.chart import TimelinePoint
from trailscan.report.document import SCHEMA, check_document, document_window, workload_label
from trailscan.report.html import render_html
from trailscan.report.markdown import Md, findings_markdown, md_fence, md_paragraph, md_text, render_markdown
from trailscan.report.publish import (
    ARTIFACTS,
    CONTENT_TYPES,
    LATEST,
    ReportLocation,
    failure_timeline,
    publish_findings,
    publish_report,
    window_events,
    write_report,
)
from trailscan.report.view import ACCENT, CAUSE_TITLES, split_fix

__all__ = [
    "ACCENT",
    "ARTIFACTS",
    "CAUSE_TITLES",
    "CONTENT_TYPES",
    "LATEST",
    "SCHEMA",
    "Md",
    "ReportLocation",
    "TimelinePoint",
    "check_document",
    "document_window",
    "failure_timeline",
    "findings_markdown",
    "md_fence",
    "md_paragraph",
    "md_text",
    "publish_findings",
    "publish_report",
    "render_html",
    "render_markdown",
    "split_fix",
    "window_events",
    "workload_label",
    "write_report",
]
