"""Progress of blob transfers for `kapal image pull/push`: rich bars on a TTY, lines otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)


class TransferProgress:
    """A `Progress` callback for the registry client; use as a context manager around a transfer.

    On a TTY it draws one rich progress bar per blob; otherwise it prints one plain line per blob
    when it completes (`pulled sha256:abcd… 2.1 MB`).
    """

    def __init__(self, verb: str, stream: TextIO | None = None) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr
        self._tty = self.stream.isatty()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._done: set[str] = set()

    def __enter__(self) -> TransferProgress:
        if self._tty:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(file=self.stream),
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, what: str, done: int, total: int) -> None:
        """Record that `done` of `total` bytes of blob `what` have moved."""
        short = what.partition(":")[2][:12] or what
        if self._progress is not None:
            if what not in self._tasks:
                self._tasks[what] = self._progress.add_task(f"{self.verb} {short}", total=total)
            self._progress.update(self._tasks[what], completed=done, total=max(total, done))
            return
        if done >= total and what not in self._done:
            self._done.add(what)
            print(f"{self.verb} {short} {done / 1e6:.1f} MB", file=self.stream, flush=True)
