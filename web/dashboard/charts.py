"""Charts drawn as inline SVG by kapal (no script, no library): bars over time, a rate line,
and ranked horizontal bars. Every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

WIDTH = 560
PLOT_HEIGHT = 160
LEFT = 48
BOTTOM = 22
TOP = 10


@dataclass(frozen=True)
class Bar:
    """One bar: its value, the label under it, its status (colour), a link, a tooltip."""

    value: float
    label: str
    status: str = ""
    href: str = ""
    title: str = ""


def _open(height: float, label: str) -> str:
    return (
        f'<svg class="chart-svg" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f"aria-label={quoteattr(label)}>"
    )


def column_chart(bars: Sequence[Bar], *, label: str, unit: str = "s") -> str:
    """Vertical bars left to right (oldest first), the axis from 0 to the largest value."""
    height = TOP + PLOT_HEIGHT + BOTTOM
    parts = [_open(height, label)]
    top = max((bar.value for bar in bars), default=0.0) or 1.0
    base = TOP + PLOT_HEIGHT
    for fraction in (0.0, 0.5, 1.0):
        y = base - fraction * PLOT_HEIGHT
        parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH}" y1="{y}" y2="{y}"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">'
            f"{escape(_amount(top * fraction, unit))}</text>"
        )
    if bars:
        slot = (WIDTH - LEFT) / len(bars)
        width = max(2.0, slot * 0.7)
        for n, bar in enumerate(bars):
            h = max(1.0, bar.value / top * PLOT_HEIGHT)
            x = LEFT + n * slot + (slot - width) / 2
            rect = (
                f'<rect class="bar st-{escape(bar.status)}" x="{x:.1f}" y="{base - h:.1f}" '
                f'width="{width:.1f}" height="{h:.1f}"><title>{escape(bar.title)}</title></rect>'
            )
            parts.append(f"<a href={quoteattr(bar.href)}>{rect}</a>" if bar.href else rect)
            if len(bars) <= 15 or n % max(1, len(bars) // 10) == 0:
                parts.append(
                    f'<text x="{x + width / 2:.1f}" y="{base + 15}" text-anchor="middle">'
                    f"{escape(bar.label)}</text>"
                )
    parts.append("</svg>")
    return "".join(parts)


def rate_chart(points: Sequence[tuple[str, float | None]], *, label: str) -> str:
    """A line of rates (0..1) over labelled points; None (no data) breaks the line."""
    height = TOP + PLOT_HEIGHT + BOTTOM
    base = TOP + PLOT_HEIGHT
    parts = [_open(height, label)]
    for fraction in (0.0, 0.5, 1.0):
        y = base - fraction * PLOT_HEIGHT
        parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH}" y1="{y}" y2="{y}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{fraction:.0%}</text>')
    if points:
        step = (WIDTH - LEFT - 10) / max(1, len(points) - 1)
        runs: list[list[str]] = [[]]
        for n, (name, rate) in enumerate(points):
            x = LEFT + 5 + n * step
            if rate is None:
                runs.append([])
            else:
                y = base - rate * PLOT_HEIGHT
                runs[-1].append(f"{x:.1f},{y:.1f}")
                parts.append(
                    f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                    f"<title>{escape(name)}: {rate:.0%}</title></circle>"
                )
            if n % max(1, len(points) // 7) == 0:
                parts.append(
                    f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{escape(name)}</text>'
                )
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="line-ok" points="{" ".join(run)}"/>')
    parts.append("</svg>")
    return "".join(parts)


def ranked_chart(rows: Sequence[tuple[str, float, str]], *, label: str, unit: str = "s") -> str:
    """Horizontal bars, largest first: (label, value, note shown after the bar)."""
    row_height = 24
    height = TOP + max(1, len(rows)) * row_height
    label_width = 200
    parts = [_open(height, label)]
    top = max((value for _, value, _ in rows), default=0.0) or 1.0
    room = WIDTH - label_width - 190
    for n, (name, value, note) in enumerate(rows):
        y = TOP + n * row_height
        shown = name if len(name) <= 30 else name[:29] + "…"
        w = max(1.0, value / top * room)
        parts.append(
            f"<g><title>{escape(name)}</title>"
            f'<text class="label" x="{label_width - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(shown)}</text>"
            f'<rect class="bar" x="{label_width}" y="{y + 4}" width="{w:.1f}" height="14"/>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + 15}">'
            f"{escape(_amount(value, unit))} {escape(note)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _amount(value: float, unit: str) -> str:
    if unit != "s":
        return f"{value:g}{unit}"
    whole = round(value)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"
