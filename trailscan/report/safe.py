"""The one sanitiser for text that reaches a terminal or a Markdown reader.

CloudTrail strings are whatever callers sent: a web-identity subject, a user agent, an S3
key or an AWS error text can hold ``ESC ]0;…`` (a window title), ``ESC [2J`` (clear the
screen), an OSC 8 hyperlink that shows one URL and opens another, C1 controls such as
U+009B (a one-character CSI), or bidirectional overrides that reorder what is shown.
Every such character is printed as a visible escape (``\\x1b``, ``\\u202e``), so the
operator sees that it was there and the terminal never acts on it.

- :func:`visible` — for tables, Markdown and stderr lines (newlines kept only where a
  caller asks, in prose and scripts); :func:`csv_cell` keeps the tab, CR and LF a CSV
  writer quotes;
- :func:`json_text` — for JSON output: the same characters as JSON ``\\u`` escapes, so
  the data round-trips unchanged.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["UNSAFE", "csv_cell", "json_text", "visible"]

#: C0 controls but newline, DEL, C1 controls, and the Unicode bidirectional controls.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WITH_NEWLINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_CSV = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: Any, *, newlines: bool = False) -> str:
    """*value* as text with every control character shown as an escape; a newline is
    kept as a line break only when *newlines* is true (prose, scripts)."""
    text = "" if value is None else str(value)
    return (UNSAFE if newlines else _WITH_NEWLINE).sub(_escape, text)


def csv_cell(value: Any) -> str:
    """A CSV cell: tab, carriage return and newline are data a CSV writer quotes and a
    spreadsheet needs verbatim; every other control character is shown as an escape."""
    return _CSV.sub(_escape, "" if value is None else str(value))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def json_text(text: str) -> str:
    """Serialised JSON with DEL, C1 and bidirectional controls as ``\\u`` escapes (JSON
    encoders escape C0 themselves): the same data, nothing a terminal would act on."""
    return _JSON_UNSAFE.sub(_json_escape, text)
