"""`DatabaseRecorder`: a job attempt's events written to the history database as they come.

Log lines are batched: a batch is written when it holds `flush_bytes` (then by the thread that
recorded the line, which waits for the write: a job printing faster than the database takes
it is slowed down, and the worker's memory stays bounded by one batch) or when it is
`flush_interval` old (by the recorder's flusher thread), so a follower of the log sees a line
within about that long. Test reports, artifacts and built images are written at once.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from runner.confined import ConfinedTree
from runner.engine.recorder import ArtifactStored, Event, LogLine, TestReport
from web.db.logs import append_log
from web.db.results import add_artifact, add_test_cases
from web.db.schemas import ArtifactCreate, TestCaseCreate
from web.db.session import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITE_ATTEMPTS = 5
MAX_PAUSE = 10.0  # seconds between two attempts at most


class DatabaseRecorder:
    """Records one job attempt's events (`runner.engine.recorder.Recorder`) into the database.

    Lifecycle: construct with the job's id, `start()` the flusher, pass it to a `JobRunner`,
    then `close()` once the runner returned: it writes what is left and stops the flusher.
    `record` is called by the runner, one call at a time; it never raises (a write that keeps
    failing drops its events, logged). `artifacts_root` is where the runner's `ArtifactStore`
    keeps `<pipeline id>/<job>`, so the recorded artifact names its directory.
    """

    def __init__(
        self,
        database: Database,
        *,
        job_id: int,
        pipeline_id: int,
        artifacts_root: Path,
        artifact_dir: Callable[[int, str], Path],
        flush_interval: float = 0.2,
        flush_bytes: int = 64 * 1024,
    ) -> None:
        self.database = database
        self.job_id = job_id
        self.pipeline_id = pipeline_id
        self.artifacts_root = artifacts_root
        self._artifact_dir = artifact_dir
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self._lines: list[str] = []
        self._size = 0
        self._oldest = 0.0
        self._buffer_lock = threading.Lock()  # guards _lines/_size/_oldest
        self._write_lock = threading.Lock()  # one writer at a time, in line order
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._flush_loop, name=f"kapal-log-{job_id}", daemon=True
        )
        self.lines_written = 0

    def start(self) -> DatabaseRecorder:
        """Start the flusher thread; returns self."""
        self._thread.start()
        return self

    def record(self, event: Event) -> None:
        """Take one event (see the module docstring for when it reaches the database)."""
        try:
            if isinstance(event, LogLine):
                self._add_line(event.text)
            elif isinstance(event, TestReport):
                self._test_report(event)
            elif isinstance(event, ArtifactStored):
                self._artifact(event)
        except Exception:
            log.exception("job %s: cannot record %s", self.job_id, type(event).__name__)

    def close(self) -> None:
        """Write the lines still buffered and stop the flusher."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()

    # -- log lines -------------------------------------------------------------------------

    def _add_line(self, text: str) -> None:
        with self._buffer_lock:
            if not self._lines:
                self._oldest = time.monotonic()
            self._lines.append(text)
            self._size += len(text) + 1
            full = self._size >= self.flush_bytes
        if full:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines now."""
        with self._write_lock:
            with self._buffer_lock:
                lines, self._lines, self._size = self._lines, [], 0
            if not lines:
                return

            def write() -> int:
                with self.database.transaction() as session:
                    return append_log(session=session, job_id=self.job_id, lines=lines)

            if (
                with_database_retries(write, f"job {self.job_id}: append {len(lines)} log lines")
                is not None
            ):
                self.lines_written += len(lines)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval / 2):
            with self._buffer_lock:
                due = bool(self._lines) and (time.monotonic() - self._oldest >= self.flush_interval)
            if due:
                self.flush()

    # -- results ---------------------------------------------------------------------------

    def _test_report(self, report: TestReport) -> None:
        cases = [
            TestCaseCreate(
                suite=case.classname,
                name=case.name,
                status=case.status,
                duration=max(case.duration, 0.0),
                message=case.message,
            )
            for case in report.cases
        ]

        def write() -> int:
            with self.database.transaction() as session:
                return add_test_cases(session=session, job_id=self.job_id, cases=cases)

        with_database_retries(write, f"job {self.job_id}: record {len(cases)} test cases")

    def _artifact(self, stored: ArtifactStored) -> None:
        directory = self._artifact_dir(self.pipeline_id, stored.job)
        artifact = ArtifactCreate(
            name=stored.job[:255],
            path=str(directory.relative_to(self.artifacts_root)),
            files=list(stored.files),
            size=stored.size,
            sha256=tree_digest(directory),
        )

        def write() -> object:
            with self.database.transaction() as session:
                return add_artifact(session=session, job_id=self.job_id, artifact=artifact)

        with_database_retries(write, f"job {self.job_id}: record its artifacts")


def tree_digest(directory: Path) -> str:
    """A SHA-256 over the paths and contents of the files under `directory` (links by their
    target), read without following any link."""
    digest = hashlib.sha256()
    with ConfinedTree(directory) as tree:
        for rel, info in tree.walk(""):
            if stat.S_ISDIR(info.st_mode):
                continue
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if stat.S_ISLNK(info.st_mode):
                target = tree.readlink(rel) or ""
                digest.update(b"link\0" + target.encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(info.st_mode):
                digest.update(b"file\0")
                with tree.open_file(rel) as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
            digest.update(b"\n")
    return digest.hexdigest()


def with_database_retries(
    write: Callable[[], T], what: str, attempts: int = WRITE_ATTEMPTS
) -> T | None:
    """Run a database write, again with a growing pause (0.1 s doubling up to 10 s) when the
    database fails (a restart, a lock held too long); None when it kept failing (logged)."""
    pause = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except (OperationalError, InterfaceError):
            if attempt == attempts:
                log.exception("%s: the database kept failing; dropped", what)
                return None
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
    return None
