"""Markdown: escaping for CloudTrail's strings, and the one findings → Markdown path.

Every Markdown trailscan writes — ``--format markdown`` and ``report.md`` alike — is
:func:`render_markdown` of the findings document.  The template escapes every
expression unless this module built it (:class:`Md`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trailscan.report.chart import TimelinePoint
from trailscan.report.safe import visible
from trailscan.report.view import environment, view

if TYPE_CHECKING:  # pragma: no cover
    from trailscan.findings import FindingsReport

__all__ = ["Md", "findings_markdown", "md_fence", "md_paragraph", "md_text", "render_markdown"]


def render_markdown(
    document: Mapping, timeline: Iterable[TimelinePoint] | None = None, *, notes: Sequence[str] = ()
) -> str:
    """The report as GitHub-flavoured Markdown: every CloudTrail-derived string escaped
    (table pipes, newlines, backticks, emphasis, HTML tags), JSON fixes in code fences
    longer than any backtick run they hold."""
    env = environment(autoescape=False, finalize=lambda value: value if isinstance(value, Md) else md_text(value))
    env.filters["md"] = md_paragraph
    env.filters["fence"] = md_fence
    env.filters["raw"] = Md
    return env.get_template("report.md.j2").render(view(document, timeline, notes=notes))


def findings_markdown(report: FindingsReport, *, generated_at: datetime) -> str:
    """An explained report as Markdown (what ``--format markdown`` prints)."""
    from trailscan.findings import findings_document

    return render_markdown(findings_document(report, generated_at), notes=report.notes)


class Md(str):
    """Markdown this module built (escaped or generated): emitted as is by the Markdown
    template, which escapes every other value."""


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$#])")
_BLOCK_START = re.compile(r"^(?:[+=>-]|\d+[.)])")


def md_text(value: Any) -> Md:
    """``value`` as one line of Markdown text that renders literally: whitespace (newlines
    included) collapsed, ``&`` and ``<`` as entities (no HTML tag, no entity survives),
    Markdown punctuation backslash-escaped."""
    if value is None:
        return Md("")
    text = visible(" ".join(str(value).split()))
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
    code = visible(code, newlines=True).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return Md(f"{fence}{info}\n{code}\n{fence}")
