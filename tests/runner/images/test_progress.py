"""Transfer progress: rich bars on a terminal, one plain line per finished blob otherwise."""

from __future__ import annotations

import io

from runner.images.progress import TransferProgress


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with TransferProgress("pulled", stream) as progress:
        progress("sha256:" + "a" * 64, 10, 2_000_000)
        progress("sha256:" + "a" * 64, 2_000_000, 2_000_000)
        progress("sha256:" + "a" * 64, 2_000_000, 2_000_000)  # reported once only
        progress("sha256:" + "b" * 64, 5, 5)
    assert stream.getvalue().splitlines() == [
        "pulled aaaaaaaaaaaa 2.0 MB",
        "pulled bbbbbbbbbbbb 0.0 MB",
    ]


def test_progress_bars_on_a_terminal() -> None:
    stream = FakeTerminal()
    with TransferProgress("pushed", stream) as progress:
        progress("sha256:" + "c" * 64, 500_000, 1_000_000)
        progress("sha256:" + "c" * 64, 1_000_000, 1_000_000)
    output = stream.getvalue()
    assert "pushed cccccccccccc" in output
    assert "1.0/1.0 MB" in output
    assert "\x1b[" in output  # drawn with terminal control sequences, not plain lines
