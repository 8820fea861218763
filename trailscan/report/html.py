"""HTML: one self-contained page (inline CSS, inline SVG, no script, no fonts or CDNs, and a
Content-Security-Policy that forbids them all the same), autoescaped throughout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from trailscan.report.chart import TimelinePoint
from trailscan.report.view import environment, view

__all__ = ["render_html"]


def render_html(
    document: Mapping, timeline: Iterable[TimelinePoint] | None = None, *, notes: Sequence[str] = ()
) -> str:
    """The report as one self-contained HTML page.

    ``timeline`` (from :func:`failure_timeline`) feeds the failures-over-time chart;
    without it the page says that no event times were given.  ``notes`` (a findings
    report's: what the inventory lacked, what was left out) are listed under the banner.
    """
    return environment(autoescape=True).get_template("report.html.j2").render(view(document, timeline, notes=notes))

