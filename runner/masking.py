"""Masking secret values in job output: as printed, encoded, split by lines or control sequences.

A secret is masked in every form a job is likely to print it in: its value; its base64, in the
standard and URL-safe alphabets at each of the three alignments it can have inside a longer
base64 text (as GitLab and GitHub mask it); and its URL encodings. A multi-line secret (a PEM
key) is masked line by line, and `LineMasker` recognises a secret split across output lines.

Matching looks at what a terminal shows, not at the raw characters. Escape sequences (CSI, OSC,
DCS, ...) and other control and invisible format characters between a secret's characters are
ignored, so `sup3rS3cr\\033[0metValue42` is masked whole; and where a line moves the cursor
within itself (`\\r`, `\\b`, tabs, cursor movement, erase, insert and delete), the characters are
also matched where they land, so a secret assembled by writing over other text is masked too.
Sequences that could take the cursor back to an earlier row (cursor up, absolute positions,
restoring a saved cursor, reverse index, scrolling, inserting or deleting lines, the alternate
screen), repeat a character or set tab stops are removed from the output of jobs that have
secrets, so no secret is assembled across rows or out of repeated characters either.
Not modelled: line wrapping at the terminal's width, and bidirectional reordering.
"""

from __future__ import annotations

import base64
import bisect
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator

MASK = "[MASKED]"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; secrets refuses them

# characters that may change what a terminal shows without being shown themselves: C0 and C1
# controls (the tab too: it moves the cursor) and Unicode's invisible format characters
_CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")
_PLAIN = re.compile(f"[^{_CONTROL_CLASS}]+")
_STRING_END = re.compile(r"[\x07\x18\x1a\x1b\x9c]")
_CSI_PARAMS = re.compile(r"[0-9;]*\Z")
_CSI_BODY = re.compile(r"([\x20-\x3f]*)([\x40-\x7e])")
_RENDER_ROUNDS = 4
_MAX_COLUMN = 1 << 14  # cursor movement beyond this is clamped (terminals clamp far sooner)

# operations a line performs on the cursor's row, in order
_PRINT, _TAB, _LEFT, _RIGHT, _COLUMN, _ERASE_LINE, _ERASE, _DELETE, _INSERT = range(9)
_BACK_TAB, _DROPPED = range(9, 11)
_WIDE = -2  # in a row's cells: the second column of a character two columns wide
_MOVES = frozenset({_LEFT, _COLUMN, _ERASE_LINE, _ERASE, _DELETE, _INSERT, _BACK_TAB})
# sequences removed from the output of jobs with secrets, as they could assemble a secret where
# the masker does not look: CSI finals that take the cursor to an earlier row or bring one to it
# (up, previous line, absolute position or row, margins, insert/delete lines, scrolling,
# restore), repeat the last character (REP) or clear tab stops; and the alternate screen
_DROPPED_FINALS = frozenset("AFHfdrLMSTubg")
_SCREEN_MODES = frozenset({"47", "1047", "1048", "1049"})
# (kind, a, b): _PRINT text[a:b]; _TAB of text[a] (-1: CSI I); _DROPPED text[a:b]; others count a
Op = tuple[int, int, int]


def encoded_forms(value: str) -> set[str]:
    """The base64 (3 alignments, 2 alphabets) and URL-encoded forms of `value` to mask."""
    forms: set[str] = set()
    data = value.encode("utf-8", "surrogatepass")
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii")
        # only the characters made of the secret's bits alone, whatever comes around it
        middle = encoded[(8 * shift + 5) // 6 : 8 * (shift + len(data)) // 6]
        forms.add(middle)
        forms.add(middle.translate(str.maketrans("+/", "-_")))
    for quoted in (
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value, safe="/"),
        urllib.parse.quote_plus(value, safe=""),
    ):
        forms.add(quoted)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted))
    forms.discard(value)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _parse(text: str) -> list[Op]:
    """What `text` does on a terminal line: runs of printed characters and cursor operations."""
    ops: list[Op] = []
    i, end = 0, len(text)
    while i < end:
        plain = _PLAIN.match(text, i)
        if plain is not None:
            ops.append((_PRINT, i, plain.end()))
            i = plain.end()
        else:
            i = _control(text, i, ops)
    return ops


def _control(text: str, i: int, ops: list[Op]) -> int:
    """Parse the control character at `i` and what it starts; return the index after it."""
    char = text[i]
    before = len(ops)
    if char == "\x1b":
        end = _escape(text, i + 1, ops)
    elif char == "\x9b":
        end = _csi(text, i + 1, ops)
    elif char in "\x90\x98\x9d\x9e\x9f":
        end = _string(text, i + 1, ops)
    elif char in "\x8d\x88":  # reverse index, tab stop
        ops.append((_DROPPED, -1, 0))
        end = i + 1
    else:
        _execute(char, i, ops)
        end = i + 1
    for index in range(before, len(ops)):
        if ops[index][0] == _DROPPED:  # the whole sequence goes
            ops[index] = (_DROPPED, i, end)
    return end


def _execute(char: str, i: int, ops: list[Op]) -> None:
    """A C0 control executed on its own (also inside a sequence, as terminals do)."""
    if char == "\t":
        ops.append((_TAB, i, 0))
    elif char == "\b":
        ops.append((_LEFT, 1, 0))
    elif char == "\r":
        ops.append((_COLUMN, 0, 0))
    # others (BEL, NUL, SO/SI, format characters...) show nothing and leave the cursor


def _escape(text: str, i: int, ops: list[Op]) -> int:
    """After ESC: a CSI, a control string, or a short sequence (`ESC ( B`, `ESC 7`...)."""
    intermediates = False
    while i < len(text):
        char = text[i]
        if not intermediates and char == "[":
            return _csi(text, i + 1, ops)
        if not intermediates and char in "]PX^_":
            return _string(text, i + 1, ops)
        if "\x20" <= char <= "\x2f":
            intermediates = True
        elif "\x30" <= char <= "\x7e":
            if not intermediates and char == "E":  # next line
                ops.append((_COLUMN, 0, 0))
            elif not intermediates and char in "8MH":  # restore cursor, reverse index, tab stop
                ops.append((_DROPPED, -1, 0))
            return i + 1
        elif char in "\x18\x1a":
            return i + 1
        elif char == "\x1b":
            intermediates = False
        elif char < "\x20":
            _execute(char, i, ops)
        else:
            return i  # not a sequence after all: the character is shown
        i += 1
    return i


def _csi(text: str, i: int, ops: list[Op]) -> int:
    """A control sequence: parameters, intermediates, one final character."""
    whole = _CSI_BODY.match(text, i)
    if whole is not None:  # the usual case, with no control inside
        if whole.group(2) != "m":  # SGR (colours) does nothing to the cursor
            _csi_action(whole.group(1), whole.group(2), ops)
        return whole.end()
    start = i
    while i < len(text):
        char = text[i]
        if "\x20" <= char <= "\x3f":
            i += 1
        elif "\x40" <= char <= "\x7e":
            _csi_action(text[start:i], char, ops)
            return i + 1
        elif char in "\x18\x1a":
            return i + 1
        elif char == "\x1b":
            return _escape(text, i + 1, ops)
        elif char < "\x20" or char == "\x7f":
            _execute(char, i, ops)
            i += 1
        else:
            return i
    return i


def _csi_action(params: str, final: str, ops: list[Op]) -> None:
    """The effect on the cursor's row of `CSI params final`, when it has one."""
    if final in _DROPPED_FINALS or (
        final in "hl" and params.startswith("?") and _SCREEN_MODES & set(params[1:].split(";"))
    ):
        ops.append((_DROPPED, -1, 0))
        return
    if not _CSI_PARAMS.match(params):
        return  # private (`?25l`) or with intermediates: nothing on this row
    numbers = [min(int(p), _MAX_COLUMN) if p else 0 for p in params.split(";")]
    count = max(numbers[0], 1)
    if final == "I":
        ops.extend([(_TAB, -1, 0)] * min(count, 64))
    elif final == "Z":
        ops.extend([(_BACK_TAB, 0, 0)] * min(count, 64))
    elif final in "Ca":
        ops.append((_RIGHT, count, 0))
    elif final == "D":
        ops.append((_LEFT, count, 0))
    elif final in "G`":
        ops.append((_COLUMN, count - 1, 0))
    elif final in "EF":
        ops.append((_COLUMN, 0, 0))
    elif final == "K":
        ops.append((_ERASE_LINE, numbers[0], 0))
    elif final == "X":
        ops.append((_ERASE, count, 0))
    elif final == "P":
        ops.append((_DELETE, count, 0))
    elif final == "@":
        ops.append((_INSERT, count, 0))


def _string(text: str, i: int, ops: list[Op]) -> int:
    """A control string (OSC, DCS, SOS, PM, APC): shown never, ended by BEL or ST."""
    found = _STRING_END.search(text, i)
    if found is None:
        return len(text)
    if found.group() != "\x1b":
        return found.end()
    if text.startswith("\\", found.end()):
        return found.end() + 1
    return _escape(text, found.end(), ops)


class _Projection:
    """The characters of a line in the order they are printed, mapped back to their indices."""

    def __init__(self, text: str, ops: list[Op]) -> None:
        pieces: list[str] = []
        self.starts: list[int] = []  # where each run begins in `visible`
        self.origins: list[int] = []  # and in the text
        length = 0
        for kind, a, b in ops:
            if kind == _PRINT or (kind == _TAB and a >= 0):
                b = b if kind == _PRINT else a + 1
                pieces.append(text[a:b])
                self.starts.append(length)
                self.origins.append(a)
                length += b - a
        self.visible = "".join(pieces)

    def origin(self, position: int) -> int:
        """The index in the text of the character at `position` of `visible`."""
        run = bisect.bisect_right(self.starts, position) - 1
        return self.origins[run] + position - self.starts[run]


def _width(char: str) -> int:
    """How many columns a terminal gives `char`: 2 for East Asian wide ones, 0 for marks."""
    if unicodedata.east_asian_width(char) in "WF":
        return 2
    return 0 if unicodedata.combining(char) or unicodedata.category(char) == "Me" else 1


def _cells(text: str, ops: list[Op]) -> tuple[list[int], int]:
    """For each column of the row, the index of the character left showing there (-1: blank,
    `_WIDE`: the second column of a wide one); and the column of the cursor at the end."""
    cells: list[int] = []
    cursor = 0
    narrow = text.isascii()
    for kind, a, b in ops:
        if kind == _PRINT and narrow:
            stop = cursor + b - a
            if len(cells) < stop:
                cells.extend([-1] * (stop - len(cells)))
            cells[cursor:stop] = range(a, b)
            cursor = stop
        elif kind == _PRINT:
            for index in range(a, b):
                width = _width(text[index])
                if width == 0:
                    continue  # drawn over the character before it
                if len(cells) < cursor + width:
                    cells.extend([-1] * (cursor + width - len(cells)))
                cells[cursor : cursor + width] = [index, _WIDE][:width]
                cursor += width
        elif kind == _TAB:
            cursor = min((cursor // 8 + 1) * 8, _MAX_COLUMN)
        elif kind == _BACK_TAB:
            cursor = max((cursor - 1) // 8 * 8, 0)
        elif kind == _LEFT:
            cursor = max(cursor - a, 0)
        elif kind == _RIGHT:
            cursor = min(cursor + a, _MAX_COLUMN)
        elif kind == _COLUMN:
            cursor = a
        elif kind == _ERASE_LINE:
            lo, hi = {0: (cursor, len(cells)), 1: (0, cursor + 1)}.get(a, (0, len(cells)))
            cells[lo:hi] = [-1] * len(cells[lo:hi])
        elif kind == _ERASE:
            cells[cursor : cursor + a] = [-1] * len(cells[cursor : cursor + a])
        elif kind == _DELETE:
            del cells[cursor : cursor + a]
        elif kind == _INSERT and cursor < len(cells):
            cells[cursor:cursor] = [-1] * a
    return cells, cursor


def _row(text: str, cells: list[int]) -> tuple[str, list[int]]:
    """What `cells` show (a blank as a space, a wide character once), and each one's index."""
    owners = [i for i in cells if i != _WIDE]
    return "".join(text[i] if i >= 0 else " " for i in owners), owners


def _occurrences(text: str, pattern: str) -> Iterator[int]:
    start = text.find(pattern)
    while start != -1:
        yield start
        start = text.find(pattern, start + 1)


class SecretMasker:
    """Replaces every occurrence of a secret (or an encoded form of it) with `[MASKED]`.

    Used directly for single strings (`mask`) and through `LineMasker` for a stream of lines.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        patterns: set[str] = set()
        for value in secrets:
            for part in value.splitlines() if "\n" in value else [value]:
                part = part.strip("\r")
                if len(part.strip()) >= MIN_SECRET_LENGTH:
                    patterns.add(part)
            if len(value.strip()) >= MIN_SECRET_LENGTH:
                patterns |= encoded_forms(value)
        # longest first, so a secret containing another is masked whole
        self.patterns: tuple[str, ...] = tuple(sorted(patterns, key=len, reverse=True))
        self._last_parse: tuple[str, list[Op]] = ("", [])
        # one scan telling whether a text holds any pattern at all (most lines hold none)
        self._any = re.compile("|".join(re.escape(p) for p in self.patterns) or "(?!)")
        # for `pending_prefix`: per pattern, the prefix lengths ending with each character
        self._prefix_ends: list[dict[str, list[int]]] = []
        for pattern in self.patterns:
            ends: dict[str, list[int]] = {}
            for size in range(len(pattern) - 1, 0, -1):
                ends.setdefault(pattern[size - 1], []).append(size)
            self._prefix_ends.append(ends)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def mark(self, text: str, masked: list[bool], *, boundary: int | None = None) -> None:
        """Set `masked[i]` for every character of `text` that shows part of a secret.

        With `boundary`, only occurrences that cross that index are marked.
        """
        if _CONTROL.search(text) is None:
            for pattern in self._present(text):
                for start in _occurrences(text, pattern):
                    end = start + len(pattern)
                    if boundary is None or start < boundary < end:
                        masked[start:end] = [True] * len(pattern)
            return
        ops = self._parsed(text)
        projection = _Projection(text, ops)
        for pattern in self._present(projection.visible):
            for start in _occurrences(projection.visible, pattern):
                first = projection.origin(start)
                last = projection.origin(start + len(pattern) - 1)
                if boundary is None or first < boundary <= last:
                    # the sequences between its characters go too: the mask shows instead
                    masked[first : last + 1] = [True] * (last + 1 - first)
        if not any(kind in _MOVES for kind, _, _ in ops):
            return
        shown, owners = _row(text, _cells(text, ops)[0])
        for pattern in self._present(shown):
            for start in _occurrences(shown, pattern):
                indices = [i for i in owners[start : start + len(pattern)] if i >= 0]
                if indices and (boundary is None or min(indices) < boundary <= max(indices)):
                    for i in indices:
                        masked[i] = True

    def _parsed(self, text: str) -> list[Op]:
        """`_parse(text)`, remembering the last line (`LineMasker` asks twice for each line)."""
        last = self._last_parse  # one read: other threads may replace it meanwhile
        if last[0] == text:
            return last[1]
        ops = _parse(text)
        self._last_parse = (text, ops)
        return ops

    def _present(self, text: str) -> tuple[str, ...]:
        """The patterns to look for in `text`: none when one scan finds no pattern there."""
        return self.patterns if self._any.search(text) is not None else ()

    def without_unsafe_sequences(self, text: str) -> str:
        """`text` without the sequences that could show a secret where matching does not look.

        They take the cursor back to an earlier row (where pieces of a secret printed on
        different rows would be assembled), repeat characters or move tab stops. A masker
        without secrets leaves every text as it is.
        """
        if not self.patterns or _CONTROL.search(text) is None:
            return text
        pieces: list[str] = []
        kept = 0
        for kind, start, end in self._parsed(text):
            if kind == _DROPPED and start >= kept:
                pieces.append(text[kept:start])
                kept = end
        return "".join(pieces) + text[kept:] if pieces else text

    def mask(self, text: str) -> str:
        """Return `text` with every secret replaced."""
        if not self.patterns:
            return text
        text = self.without_unsafe_sequences(text)
        masked = [False] * len(text)
        self.mark(text, masked)
        return self.render(text, masked)

    def render(self, text: str, masked: list[bool]) -> str:
        """`text` with its `masked` characters replaced, checked again until nothing shows.

        A mask is not as wide as what it hides, so the rest of a line that moves the cursor
        lands elsewhere; the result is matched again, and a line that still shows a secret
        after a few rounds is replaced whole.
        """
        for _ in range(_RENDER_ROUNDS):
            if not any(masked):
                return text
            text = render(text, masked)
            masked = [False] * len(text)
            self.mark(text, masked)
        return MASK if any(masked) else text

    def pending_prefix(self, text: str) -> int:
        """Length of the longest end of `text` that begins a secret without completing it.

        Measured on what the text shows, both in printing order and as the row shows it
        before the cursor (where what follows is printed); control sequences inside count.
        """
        if _CONTROL.search(text) is None:
            return self._visible_prefix(text)
        ops = self._parsed(text)
        projection = _Projection(text, ops)
        start = len(text)
        size = self._visible_prefix(projection.visible)
        if size:
            start = projection.origin(len(projection.visible) - size)
        if any(kind in _MOVES for kind, _, _ in ops):
            cells, cursor = _cells(text, ops)
            shown, owners = _row(text, cells[:cursor])
            size = self._visible_prefix(shown)
            start = min([start, *(i for i in owners[len(owners) - size :] if size and i >= 0)])
        return len(text) - start

    def _visible_prefix(self, text: str) -> int:
        if not text:
            return 0
        longest = 0
        for pattern, ends in zip(self.patterns, self._prefix_ends, strict=True):
            for size in ends.get(text[-1], ()):
                if size <= longest:
                    break
                if size <= len(text) and text.endswith(pattern[:size]):
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
        line = self._masker.without_unsafe_sequences(line)
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
            out.append(self._masker.render(text, flags))
            self._held.pop(0)
        return out

    def flush(self) -> list[str]:
        """Return the held-back lines, if any; call once when the stream ends."""
        out = [self._masker.render(text, flags) for text, flags in self._held]
        self._held = []
        return out
