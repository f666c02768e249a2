"""Charts as inline SVG, drawn on the server: no JavaScript, no build step, readable without CSS."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 480, 220
LEFT, BOTTOM, TOP, RIGHT = 48, 36, 16, 12
COLOURS = {"P1": "#b3261e", "P2": "#e8710a", "P3": "#f9ab00", "P4": "#1e8e3e", "P5": "#1a73e8"}


def _frame(title: str, body: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _empty(title: str) -> str:
    return _frame(
        title, f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No data yet</text>'
    )


def _axes(top: float, unit: str) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    out = [
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" '
        f'y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
    ]
    for i in range(5):
        value = top * i / 4
        y = HEIGHT - BOTTOM - plot_h * i / 4
        out.append(
            f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_num(value)}{escape(unit)}</text>"
        )
    return "".join(out)


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def bar_chart(
    title: str, data: Mapping[str, float], *, unit: str = "", colours: Mapping[str, str] = COLOURS
) -> str:
    if not data or max(data.values()) <= 0:
        return _empty(title)
    top = max(data.values())
    if all(float(v).is_integer() for v in data.values()):
        top = max(4.0, math.ceil(top / 4) * 4)  # counts: whole-number ticks
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(data)
    bars = []
    for i, (label, value) in enumerate(data.items()):
        h = plot_h * value / top
        x = LEFT + i * slot + slot * 0.15
        y = HEIGHT - BOTTOM - h
        colour = colours.get(label, "#5f6368")
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{colour}">'
            f"<title>{escape(label)}: {_num(value)}{escape(unit)}</title></rect>"
            f'<text class="label" x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'font-size="11">{escape(label)}</text>'
            f'<text class="value" x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
            f'font-size="10">{_num(value)}</text>'
        )
    return _frame(title, _axes(top, unit) + "".join(bars))


def line_chart(title: str, points: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    if not points:
        return _empty(title)
    top = max(v for _, v in points) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(points) - 1, 1)
    xy = [
        (LEFT + (i * step if len(points) > 1 else plot_w / 2), HEIGHT - BOTTOM - plot_h * v / top)
        for i, (_, v) in enumerate(points)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(
        f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1a73e8">'
        f"<title>{escape(label)}: {_num(v)}{escape(unit)}</title></circle>"
        for (x, y), (label, v) in zip(xy, points, strict=True)
    )
    first, last = points[0][0], points[-1][0]
    labels = (
        f'<text class="label" x="{LEFT}" y="{HEIGHT - BOTTOM + 14}" font-size="10">{escape(first)}</text>'
        f'<text class="label" x="{WIDTH - RIGHT}" y="{HEIGHT - BOTTOM + 14}" text-anchor="end" '
        f'font-size="10">{escape(last)}</text>'
    )
    line = f'<polyline class="line" points="{path}" fill="none" stroke="#1a73e8" stroke-width="2"/>'
    return _frame(title, _axes(top, unit) + line + dots + labels)


def percent_bars(title: str, data: Mapping[str, float | None]) -> str:
    """Horizontal bars from 0 to 100 %, one per row; None draws an empty track."""
    if not data:
        return _empty(title)
    rows = []
    track = WIDTH - 120 - 70
    for i, (label, value) in enumerate(data.items()):
        y = TOP + 10 + i * 48
        colour = (
            "#1e8e3e"
            if value is not None and value >= 95
            else "#f9ab00"
            if value and value >= 80
            else "#b3261e"
        )
        width = track * (value or 0) / 100
        rows.append(
            f'<text class="label" x="4" y="{y + 18}" font-size="12">{escape(label)}</text>'
            f'<rect class="track" x="120" y="{y}" width="{track}" height="26" fill="#eee"/>'
            f'<rect class="bar" x="120" y="{y}" width="{width:.1f}" height="26" fill="{colour}">'
            f"<title>{escape(label)}: {'n/a' if value is None else f'{value:.1f} %'}</title></rect>"
            f'<text class="value" x="{126 + track}" y="{y + 18}" font-size="12">'
            f"{'n/a' if value is None else f'{value:.1f} %'}</text>"
        )
    return _frame(title, "".join(rows))
