"""Masking secret values in job output, including values split across two lines."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[MASKED]"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; secrets refuses them


class SecretMasker:
    """Replaces every occurrence of a secret value with `[MASKED]`.

    A multi-line secret (a PEM key) is masked line by line. Used directly for single strings
    (`mask`) and through `LineMasker` for a stream of output lines.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        patterns: set[str] = set()
        for value in secrets:
            for part in value.splitlines() if "\n" in value else [value]:
                part = part.strip("\r")
                if len(part) >= MIN_SECRET_LENGTH:
                    patterns.add(part)
        # longest first, so a secret containing another is masked whole
        self.patterns: tuple[str, ...] = tuple(sorted(patterns, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def mark(self, text: str, masked: list[bool], *, boundary: int | None = None) -> None:
        """Set `masked[i]` for every character of `text` inside a secret.

        With `boundary`, only occurrences that cross that index are marked.
        """
        for pattern in self.patterns:
            start = text.find(pattern)
            while start != -1:
                end = start + len(pattern)
                if boundary is None or start < boundary < end:
                    for i in range(start, end):
                        masked[i] = True
                start = text.find(pattern, start + 1)

    def mask(self, text: str) -> str:
        """Return `text` with every secret replaced."""
        if not self.patterns:
            return text
        masked = [False] * len(text)
        self.mark(text, masked)
        return render(text, masked)

    def ends_with_secret_prefix(self, line: str) -> bool:
        """Whether `line` ends with the beginning of a secret (the rest may be on the next line)."""
        for pattern in self.patterns:
            for size in range(min(len(pattern) - 1, len(line)), 0, -1):
                if line.endswith(pattern[:size]):
                    return True
        return False


def render(text: str, masked: list[bool]) -> str:
    """Replace each run of masked characters of `text` with `[MASKED]`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if masked[i]:
            while i < len(text) and masked[i]:
                i += 1
            out.append(MASK)
        else:
            j = i
            while j < len(text) and not masked[j]:
                j += 1
            out.append(text[i:j])
            i = j
    return "".join(out)


class LineMasker:
    """Masks a stream of output lines, also when a secret is split across two lines.

    Lifecycle: `push` each complete line as it arrives and print what it returns; `flush` once at
    the end of the stream. A line that ends with the start of a secret is held back until the next
    line arrives, so the two halves can be recognised together; every other line passes at once.
    """

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker
        self._held: tuple[str, list[bool]] | None = None

    def push(self, line: str) -> list[str]:
        """Take one line (without its newline); return the lines now safe to show."""
        if not self._masker:
            return [line]
        masked = [False] * len(line)
        self._masker.mark(line, masked)
        out: list[str] = []
        if self._held is not None:
            held_text, held_mask = self._held
            joined_mask = held_mask + masked
            self._masker.mark(held_text + line, joined_mask, boundary=len(held_text))
            held_mask, masked = joined_mask[: len(held_text)], joined_mask[len(held_text) :]
            out.append(render(held_text, held_mask))
            self._held = None
        if self._masker.ends_with_secret_prefix(line):
            self._held = (line, masked)
        else:
            out.append(render(line, masked))
        return out

    def flush(self) -> list[str]:
        """Return the held-back line, if any; call once when the stream ends."""
        if self._held is None:
            return []
        text, masked = self._held
        self._held = None
        return [render(text, masked)]
