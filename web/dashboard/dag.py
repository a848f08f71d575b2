"""The `needs:` graph of a pipeline drawn as inline SVG: jobs in columns by how many jobs they
wait for in a row, arrows from each need to the job that needs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

NODE_WIDTH = 168
NODE_HEIGHT = 30
COLUMN_GAP = 56
ROW_GAP = 12
MARGIN = 6
NAME_CHARS = 21


@dataclass(frozen=True)
class DagJob:
    """A job as the graph shows it: what it waits for (to place it) and what it needs (arrows)."""

    name: str
    status: str
    job_id: int
    waits_for: tuple[str, ...]
    needs: tuple[str, ...]


def _columns(jobs: Sequence[DagJob]) -> dict[str, int]:
    """Each job's column: 0 without anything to wait for, else one past its latest upstream."""
    by_name = {job.name: job for job in jobs}
    column: dict[str, int] = {}
    visiting: set[str] = set()

    def place(name: str) -> int:
        if name in column:
            return column[name]
        if name in visiting:  # a cycle cannot come from a valid plan; do not loop on one
            return 0
        visiting.add(name)
        upstream = [place(u) + 1 for u in by_name[name].waits_for if u in by_name]
        visiting.discard(name)
        column[name] = max(upstream, default=0)
        return column[name]

    for job in jobs:
        place(job.name)
    return column


def draw_dag(jobs: Sequence[DagJob]) -> str:
    """The SVG of the graph (an empty string for no jobs); every name is escaped."""
    if not jobs:
        return ""
    column = _columns(jobs)
    rows: dict[int, int] = {}
    where: dict[str, tuple[float, float]] = {}
    for job in jobs:
        col = column[job.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        x = MARGIN + col * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
        where[job.name] = (x, y)
    width = MARGIN * 2 + (max(column.values()) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + max(rows.values()) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    parts = [
        f'<svg class="dag-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="jobs and the jobs they need">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0 0L8 4L0 8z" class="arrow-head"/></marker>'
        "</defs>",
    ]
    for job in jobs:
        x2, y2 = where[job.name]
        for need in job.needs:
            if need not in where:
                continue
            x1, y1 = where[need]
            sx, sy = x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2
            ex, ey = x2 - 2, y2 + NODE_HEIGHT / 2
            # straight along the source's row, bending in the last gap only: an arrow over
            # several columns passes between the jobs of the columns it crosses
            turn = max(sx, ex - COLUMN_GAP)
            bend = (ex - turn) / 2
            parts.append(
                f'<path class="edge" data-from={quoteattr(need)} data-to={quoteattr(job.name)} '
                f'd="M{sx} {sy} L{turn} {sy} C{turn + bend} {sy} {ex - bend} {ey} {ex} {ey}" '
                'marker-end="url(#arrow)"/>'
            )
    for job in jobs:
        left, top = where[job.name]
        shown = job.name if len(job.name) <= NAME_CHARS else job.name[: NAME_CHARS - 1] + "…"
        parts.append(
            f'<a href="/jobs/{job.job_id}" class="node st-{escape(job.status)}" '
            f"data-job={quoteattr(job.name)}><title>{escape(job.name)}: {escape(job.status)}"
            f'</title><rect x="{left}" y="{top}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" '
            f'rx="15"/><circle cx="{left + 15}" cy="{top + NODE_HEIGHT / 2}" r="6"/>'
            f'<text x="{left + 28}" y="{top + NODE_HEIGHT / 2 + 4}">{escape(shown)}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
