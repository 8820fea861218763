"""The failures-over-time chart: stacked bars per bucket, laid out here so templates only draw."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from trailscan.model import Window
from trailscan.report.document import _duration, _utc

__all__ = ["MAX_SERIES", "OTHER_COLOUR", "SERIES_COLOURS", "TimelinePoint", "chart"]

#: Chart series colours (colour-blind safe, none close to the accent); the last is "other".
SERIES_COLOURS = ("#2563eb", "#e69f00", "#059669", "#cc79a7", "#0891b2", "#7c3aed")
OTHER_COLOUR = "#9ca3af"
MAX_SERIES = len(SERIES_COLOURS)

#: One point of the failures-over-time chart: ``(series label, event time)``.
TimelinePoint = tuple[str, datetime]

_BUCKETS = (300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
_MAX_BARS = 40
_PLOT = {"width": 960, "height": 250, "left": 52, "right": 28, "top": 14, "bottom": 44}


def chart(window: Window, timeline: Iterable[TimelinePoint] | None) -> dict | None:
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
