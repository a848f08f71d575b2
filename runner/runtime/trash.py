"""`Trash`: a finished container's overlay dirs are removed off the path that waits for it.

Removing a container's upper and work dirs from a busy ext4 costs a few milliseconds (each rmdir
is journalled), a tenth of a short container's life. `discard(path)` renames the directory into
`<containers_dir>/trash` (one rename on the same filesystem: the container's own name is gone at
once) and a background thread deletes it from there.

Lifecycle: one `Trash` per backend. `discard` may be called from any thread; the thread that
deletes runs while there is work and exits after a second idle. `drain()` blocks until everything
discarded so far is deleted. When the interpreter exits normally, pending deletions are drained
first, so a finished process leaves an empty trash; what a killed process left there is deleted
by the next `Trash` made for the same data dir and by `kapal gc` (`empty_trash`).
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import weakref
from pathlib import Path

_IDLE_EXIT = 1.0


def trash_dir(containers_dir: Path) -> Path:
    """Where discarded container dirs wait for deletion."""
    return containers_dir / "trash"


def empty_trash(containers_dir: Path) -> list[str]:
    """Delete everything in the trash now; return the names deleted (for `kapal gc`)."""
    directory = trash_dir(containers_dir)
    names = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    for name in names:
        shutil.rmtree(directory / name, ignore_errors=True)
    return names


class Trash:
    """Deletes discarded directories on a background thread; see the module docstring."""

    def __init__(self, containers_dir: Path) -> None:
        self._dir = trash_dir(containers_dir)
        self._deleter = _Deleter()
        weakref.finalize(self, self._deleter.pending.join)
        if self._dir.is_dir():
            for leftover in self._dir.iterdir():  # left by a process that was killed
                self._deleter.put(leftover)

    def discard(self, path: Path) -> None:
        """Move `path` out of the way and delete it in the background (no-op when missing)."""
        target = self._dir / path.name
        try:
            try:
                os.rename(path, target)
            except FileNotFoundError:
                if not path.exists():
                    return
                self._dir.mkdir(exist_ok=True)
                os.rename(path, target)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)  # e.g. a stale trash entry of that name
            return
        self._deleter.put(target)

    def drain(self) -> None:
        """Block until every directory discarded so far has been deleted."""
        self._deleter.pending.join()


class _Deleter:
    """The queue and its thread, which runs while there is work and exits when idle.

    Kept apart from `Trash` so that the thread does not keep the `Trash` alive.
    """

    def __init__(self) -> None:
        self.pending: queue.Queue[Path] = queue.Queue()
        self._lock = threading.Lock()
        self._running = False

    def put(self, path: Path) -> None:
        self.pending.put(path)
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="kapal-trash", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                path = self.pending.get(timeout=_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self.pending.empty():  # else a put() came just now: keep going
                        self._running = False
                        return
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                self.pending.task_done()
