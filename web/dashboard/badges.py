"""Status badges: a small SVG saying `pipeline | passed` in the status's colour."""

from __future__ import annotations

from xml.sax.saxutils import escape

BADGE_COLOURS = {
    "success": "#2e9e4f",
    "failed": "#d73a3a",
    "running": "#1f78d1",
    "pending": "#c17d10",
    "created": "#8a8f98",
    "manual": "#6e49cb",
    "canceled": "#5c6370",
    "skipped": "#8a8f98",
    "unknown": "#9aa0a6",
}
BADGE_WORDS = {"success": "passed"}
MAX_WORD = 24
# Verdana 11px advance widths are near 7 px a character for these words; a fixed table keeps the
# badge independent of fonts installed on the server.
CHAR_WIDTH = 7
PADDING = 10


def badge_svg(status: str | None, label: str = "pipeline") -> str:
    """The badge of a status (None: no pipeline yet, shown as `unknown`)."""
    key = status or "unknown"
    word = BADGE_WORDS.get(key, key)[:MAX_WORD]
    colour = BADGE_COLOURS.get(key, BADGE_COLOURS["unknown"])
    left = len(label) * CHAR_WIDTH + PADDING
    right = len(word) * CHAR_WIDTH + PADDING
    width = left + right
    label_text, word_text = escape(label), escape(word)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label_text}: {word_text}">'
        f"<title>{label_text}: {word_text}</title>"
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        f'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        f'font-size="11">'
        f'<text x="{left / 2}" y="14">{label_text}</text>'
        f'<text x="{left + right / 2}" y="14" class="status">{word_text}</text></g></svg>'
    )
