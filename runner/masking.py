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

    def pending_prefix(self, text: str) -> int:
        """Length of the longest end of `text` that begins a secret without completing it."""
        longest = 0
        for pattern in self.patterns:
            for size in range(min(len(pattern) - 1, len(text)), longest, -1):
                if text.endswith(pattern[:size]):
                    longest = size
                    break
        return longest


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
    """Masks a stream of output lines, also when a secret is split across lines.

    Lifecycle: `push` each complete line as it arrives and print what it returns; `flush` once at
    the end of the stream. Lines that end with the beginning of a secret are held back until the
    following lines show whether the secret continues there, so the pieces can be recognised
    together; every other line passes at once.
    """

    _MAX_HELD = 64  # a secret split over more lines than this is not recognised

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker
        self._held: list[tuple[str, list[bool]]] = []

    def push(self, line: str) -> list[str]:
        """Take one line (without its newline); return the lines now safe to show."""
        if not self._masker:
            return [line]
        masked = [False] * len(line)
        self._masker.mark(line, masked)
        self._held.append((line, masked))
        if len(self._held) > 1:
            joined = "".join(text for text, _ in self._held)
            joined_mask = [flag for _, flags in self._held for flag in flags]
            self._masker.mark(joined, joined_mask)
            start = 0
            for index, (text, _) in enumerate(self._held):
                self._held[index] = (text, joined_mask[start : start + len(text)])
                start += len(text)
        return self._release()

    def _release(self) -> list[str]:
        joined = "".join(text for text, _ in self._held)
        boundary = len(joined) - self._masker.pending_prefix(joined)
        out: list[str] = []
        end = 0
        while self._held:
            text, flags = self._held[0]
            end += len(text)
            if end > boundary and len(self._held) <= self._MAX_HELD:
                break  # this line may hold the start of a secret that continues below
            out.append(render(text, flags))
            self._held.pop(0)
        return out

    def flush(self) -> list[str]:
        """Return the held-back lines, if any; call once when the stream ends."""
        out = [render(text, flags) for text, flags in self._held]
        self._held = []
        return out
