"""Small server-side SVG charts for the admin.

Why server-rendered SVG and not a JavaScript charting library: the figures are already computed
by the selectors when the page renders, the charts need no interaction beyond a tooltip (an SVG
<title> per bar or point gives the exact value on hover), and there is then nothing to vendor,
load or keep up to date, and nothing to break offline. Each chart names its axes with their
units. Colours come from the admin's CSS variables (see templates/analytics/_style.html), so the
charts follow its light and dark themes; the presentation attributes are only a fallback.

Every label goes through `escape`; the output is marked safe only once built.
"""

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#e0a84f", "#6a9f58", "#c4505a", "#8a6fb0", "#79aec8")
FONT_SIZE = 11
CHAR_WIDTH = 6.6  # a generous average advance of an 11 px system-ui character
FONT = f'font-family="system-ui, sans-serif" font-size="{FONT_SIZE}"'
# Margins of the plot area: room for the y tick labels and title, the x labels and title.
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 26, 44


@dataclass(frozen=True)
class Point:
    label: str
    value: float


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 10 else f"{value:,.1f}"


def _frame(width: int, height: int, title: str, body: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every interpolated label is escaped where it is built
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _intervals(peak: float) -> int:
    """How many grid intervals split `peak` (a `_nice_max`) into whole, round steps."""
    for n in (4, 5, 2):
        if peak >= n and (peak / n).is_integer():
            return n
    return 1


def _axes(width: int, height: int, peak: float, x_title: str, y_title: str) -> str:
    """Grid lines with y tick labels, and both axis titles (units in them)."""
    bottom = height - BOTTOM
    parts = []
    intervals = _intervals(peak)
    for step in range(intervals + 1):
        fraction = step / intervals
        y = bottom - fraction * (bottom - TOP)
        parts.append(
            f'<line class="sh-grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ccc" stroke-width="1"/>'
            f'<text class="sh-tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT} '
            f'fill="#666">{_number(peak * fraction)}</text>'
        )
    parts.append(
        f'<text class="sh-axis-title sh-x-title" x="{(LEFT + width - RIGHT) / 2:.1f}" '
        f'y="{height - 6}" text-anchor="middle" {FONT} fill="#444">{escape(x_title)}</text>'
        f'<text class="sh-axis-title sh-y-title" x="{-(TOP + bottom) / 2:.1f}" y="14" '
        f'transform="rotate(-90)" text-anchor="middle" {FONT} fill="#444">'
        f"{escape(y_title)}</text>"
    )
    return "".join(parts)


def _x_labels(labels: list[str], x_of, width: int, height: int) -> str:
    """As many x labels as fit without overlapping, always including the last one."""
    if not labels:
        return ""
    widest = max(len(label) for label in labels) * CHAR_WIDTH + 12
    room = (width - LEFT - RIGHT) / max(len(labels) - 1, 1)
    every = max(1, math.ceil(widest / room))
    last = len(labels) - 1
    shown = list(range(0, last + 1, every))
    if shown[-1] != last:
        if len(shown) > 1 and (last - shown[-1]) * room < widest:
            shown.pop()  # too close to the last label, which always shows
        shown.append(last)
    y = height - BOTTOM + 15
    parts = []
    for i in shown:
        x, anchor = x_of(i), "middle"
        half = len(labels[i]) * CHAR_WIDTH / 2
        if x + half > width - 2:  # keep the last label inside the frame
            x, anchor = width - 2, "end"
        parts.append(
            f'<text class="sh-tick" x="{x:.1f}" y="{y}" text-anchor="{anchor}" {FONT} '
            f'fill="#666">{escape(labels[i])}</text>'
        )
    return "".join(parts)


def bar_chart(
    points: list[Point],
    title: str,
    *,
    x_title: str,
    y_title: str,
    unit: str = "",
    width: int = 640,
    height: int = 220,
) -> SafeString:
    """Vertical bars; `unit` follows each exact value in the tooltips ("calls", "logins")."""
    peak = _nice_max(max((p.value for p in points), default=0))
    slot = (width - LEFT - RIGHT) / max(len(points), 1)
    bottom = height - BOTTOM

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    bars = []
    for i, point in enumerate(points):
        bar_height = (bottom - TOP) * point.value / peak
        tip = f"{point.label}: {_number(point.value)}{' ' + unit if unit else ''}"
        # An invisible full-height target, so that a zero or thin bar has a tooltip too.
        bars.append(
            f'<g class="sh-bar"><title>{escape(tip)}</title>'
            f'<rect x="{LEFT + slot * i:.1f}" y="{TOP}" width="{slot:.1f}" '
            f'height="{bottom - TOP:.1f}" fill="transparent"/>'
            f'<rect class="sh-series-0" x="{LEFT + slot * i + slot * 0.15:.1f}" '
            f'y="{bottom - bar_height:.1f}" width="{slot * 0.7:.1f}" height="{bar_height:.1f}" '
            f'fill="{PALETTE[0]}"/></g>'
        )
    body = _axes(width, height, peak, x_title, y_title) + "".join(bars)
    body += _x_labels([p.label for p in points], x_of, width, height)
    return _frame(width, height, title, body)


def line_chart(
    series: dict[str, list[Point]],
    title: str,
    *,
    x_title: str,
    y_title: str,
    unit: str = "",
    partial_last: bool = False,
    width: int = 640,
    height: int = 240,
) -> SafeString:
    """Lines sharing their x labels. `partial_last`: the last point is a period still running
    (today): drawn hollow at the end of a dashed segment, and said so in the legend and tooltip."""
    all_points = [p for points in series.values() for p in points]
    peak = _nice_max(max((p.value for p in all_points), default=0))
    length = max((len(points) for points in series.values()), default=0)
    step = (width - LEFT - RIGHT) / max(length - 1, 1)
    bottom = height - BOTTOM

    def x_of(i: int) -> float:
        return LEFT + step * i

    def y_of(value: float) -> float:
        return bottom - (bottom - TOP) * value / peak

    body = _axes(width, height, peak, x_title, y_title)
    legend_x: float = LEFT
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        whole = points[:-1] if partial_last else points
        path = " ".join(f"{x_of(i):.1f},{y_of(p.value):.1f}" for i, p in enumerate(whole))
        body += (
            f'<polyline class="sh-series-{n}" points="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="2"/>'
        )
        if partial_last and len(points) >= 2:
            a, b = len(points) - 2, len(points) - 1
            body += (
                f'<line class="sh-series-{n} sh-partial" x1="{x_of(a):.1f}" '
                f'y1="{y_of(points[a].value):.1f}" x2="{x_of(b):.1f}" '
                f'y2="{y_of(points[b].value):.1f}" stroke="{colour}" stroke-width="2" '
                f'stroke-dasharray="4 3"/>'
            )
        for i, p in enumerate(points):
            partial = partial_last and i == len(points) - 1
            note = " (today so far, partial)" if partial else ""
            tip = f"{name} {p.label}{note}: {_number(p.value)}{' ' + unit if unit else ''}"
            fill = "var(--body-bg, #fff)" if partial else colour
            body += (
                f'<circle class="sh-series-{n}{" sh-partial" if partial else ""}" '
                f'cx="{x_of(i):.1f}" cy="{y_of(p.value):.1f}" r="{4 if partial else 3}" '
                f'fill="{fill}" stroke="{colour}" stroke-width="1.5">'
                f"<title>{escape(tip)}</title></circle>"
            )
        body += (
            f'<text class="sh-legend" x="{legend_x}" y="14" {FONT} fill="{colour}">'
            f"&#9632; {escape(name)}</text>"
        )
        legend_x += len(name) * CHAR_WIDTH + 28
    if partial_last:
        body += (
            f'<text class="sh-legend sh-partial-note" x="{width - RIGHT}" y="14" '
            f'text-anchor="end" {FONT} fill="#666">dashed, hollow: today, partial</text>'
        )
    if series:
        labels = [p.label for p in next(iter(series.values()))]
        if partial_last and labels:
            labels[-1] = "today"
        body += _x_labels(labels, x_of, width, height)
    return _frame(width, height, title, body)
