"""Small server-side SVG charts for the admin: no JavaScript, no CDN, works offline.

Every label goes through `escape`; the output is marked safe only once built.
"""

from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#79aec8", "#e0a84f", "#c4505a", "#6a9f58", "#8a6fb0")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Point:
    label: str
    value: float


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _frame(width: int, height: int, title: str, body: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every interpolated label is escaped above
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" style="max-width:100%;height:auto" role="img" '
        f'aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _axes(width, height, left, bottom, top, peak) -> str:
    parts = []
    for fraction in (0, 0.5, 1):
        y = height - bottom - fraction * (height - bottom - top)
        value = peak * fraction
        label = f"{value:,.0f}" if peak >= 10 else f"{value:g}"
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT} '
            f'fill="#666">{label}</text>'
        )
    return "".join(parts)


def _x_labels(points, x_of, height, bottom, every) -> str:
    return "".join(
        f'<text x="{x_of(i):.1f}" y="{height - bottom + 14}" text-anchor="middle" {FONT} '
        f'fill="#666">{escape(point.label)}</text>'
        for i, point in enumerate(points)
        if i % every == 0 or i == len(points) - 1
    )


def bar_chart(points: list[Point], title: str, width: int = 560, height: int = 180) -> SafeString:
    left, bottom, top = 48, 22, 10
    peak = _nice_max(max((p.value for p in points), default=0))
    slot = (width - left - 8) / max(len(points), 1)

    def x_of(i: int) -> float:
        return left + slot * (i + 0.5)

    bars = []
    for i, point in enumerate(points):
        bar_height = (height - bottom - top) * point.value / peak
        y = height - bottom - bar_height
        bars.append(
            f'<rect x="{left + slot * i + slot * 0.15:.1f}" y="{y:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{bar_height:.1f}" fill="{PALETTE[0]}">'
            f"<title>{escape(point.label)}: {point.value:,.0f}</title></rect>"
        )
    every = max(1, len(points) // 6)
    body = _axes(width, height, left, bottom, top, peak) + "".join(bars)
    body += _x_labels(points, x_of, height, bottom, every)
    return _frame(width, height, title, body)


def line_chart(
    series: dict[str, list[Point]], title: str, width: int = 560, height: int = 180
) -> SafeString:
    left, bottom, top = 48, 22, 22
    all_points = [p for points in series.values() for p in points]
    peak = _nice_max(max((p.value for p in all_points), default=0))
    length = max((len(points) for points in series.values()), default=0)
    step = (width - left - 8) / max(length - 1, 1)

    def x_of(i: int) -> float:
        return left + step * i

    def y_of(value: float) -> float:
        return height - bottom - (height - bottom - top) * value / peak

    body = _axes(width, height, left, bottom, top, peak)
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        path = " ".join(f"{x_of(i):.1f},{y_of(p.value):.1f}" for i, p in enumerate(points))
        body += f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
        body += "".join(
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(p.value):.1f}" r="2.5" fill="{colour}">'
            f"<title>{escape(name)} {escape(p.label)}: {p.value:,.0f}</title></circle>"
            for i, p in enumerate(points)
        )
        body += (
            f'<text x="{left + 8 + n * 90}" y="14" {FONT} fill="{colour}">'
            f"&#9632; {escape(name)}</text>"
        )
    if series:
        first = next(iter(series.values()))
        body += _x_labels(first, x_of, height, bottom, max(1, len(first) // 8))
    return _frame(width, height, title, body)


def donut(parts: list[Point], title: str, size: int = 180) -> SafeString:
    import math

    total = sum(p.value for p in parts)
    radius, cx, cy = size * 0.32, size * 0.36, size / 2
    body, angle = "", -math.pi / 2
    for n, part in enumerate(parts):
        colour = PALETTE[n % len(PALETTE)]
        share = part.value / total if total else 0
        if share >= 0.9999:
            body += (
                f'<circle cx="{cx}" cy="{cy}" r="{radius}" fill="none" stroke="{colour}" '
                f'stroke-width="{radius * 0.5:.1f}"/>'
            )
        elif share > 0:
            end = angle + share * 2 * math.pi
            x1, y1 = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
            x2, y2 = cx + radius * math.cos(end), cy + radius * math.sin(end)
            large = 1 if share > 0.5 else 0
            body += (
                f'<path d="M {x1:.1f} {y1:.1f} A {radius} {radius} 0 {large} 1 {x2:.1f} {y2:.1f}" '
                f'fill="none" stroke="{colour}" stroke-width="{radius * 0.5:.1f}">'
                f"<title>{escape(part.label)}: {part.value:,.0f}</title></path>"
            )
            angle = end
        body += (
            f'<text x="{size * 0.78}" y="{24 + n * 18}" {FONT}>'
            f'<tspan fill="{colour}">&#9632;</tspan> {escape(part.label)}: '
            f"{part.value:,.0f}</text>"
        )
    if not total:
        body += f'<text x="{cx}" y="{cy + 4}" text-anchor="middle" {FONT} fill="#666">none</text>'
    return _frame(int(size * 1.9), size, title, body)
