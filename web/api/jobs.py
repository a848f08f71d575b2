"""`/api/v1/jobs/{id}`: read a job, play/retry/cancel it, read or follow its log, download its
artifacts.

`GET /api/v1/jobs/{id}/log` answers the log as text from `?offset=` (0-based line), streamed so a
huge log never sits in memory; with `Accept: text/event-stream` it follows the log live: one SSE
event per line whose `id` is the line's number (1-based, so `Last-Event-ID: N` resumes at the
line after N), then an `end` event whose data is `{"status", "exit_code", "reason"}` once the job
has finished and every line was sent.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import OperationalError
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from runner.artifacts import fetch_artifacts
from runner.errors import RunnerError
from web.api.auth import Access
from web.api.deps import (
    MAX_ROW_ID,
    AccessDep,
    DatabaseDep,
    RowId,
    ServicesDep,
    SessionDep,
    SettingsDep,
    WriterDep,
)
from web.artifact_expiry import expired_message
from web.db.downstream import child_pipelines
from web.db.jobs import FINISHED_STATUSES, get_job
from web.db.logs import read_log
from web.db.pipelines import get_pipeline
from web.db.results import get_artifact, list_artifacts
from web.db.schemas import ArtifactRead, JobRead, Scope
from web.db.session import Database
from web.errors import (
    ArtifactsExpiredError,
    ArtifactStoreError,
    InvalidCursorError,
    NotFoundError,
)
from web.orchestration import cancel_job, play_job, retry_job
from web.settings import Settings

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
logger = logging.getLogger(__name__)

LINES_PER_READ = 2000
FOLLOW_POLL_SECONDS = 0.2
SSE_PING_SECONDS = 15
CHUNK = 64 * 1024


class JobOut(JobRead):
    """A job attempt with the repository it belongs to."""

    repository_id: int


def _job(database: Database, job_id: int) -> JobOut:
    if not 1 <= job_id <= MAX_ROW_ID:  # PostgreSQL would refuse to compare it with an id
        raise NotFoundError(f"job {job_id} does not exist")
    with database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
        pipeline = get_pipeline(session=session, pipeline_id=job.pipeline_id)
        child = child_pipelines(session=session, job_ids=[job.id]).get(job.id)
    assert pipeline is not None
    shown = job.model_dump() | {"downstream_pipeline_id": child}
    return JobOut(**shown, repository_id=pipeline.repository_id)


def _who(access: Access) -> str:
    return access.token.name if access.token is not None else "anonymous"


@router.get("/{job_id}")
def read_job(job_id: RowId, database: DatabaseDep, access: AccessDep) -> JobOut:
    """One job attempt: status, reason, worker, timings, exit code."""
    job = _job(database, job_id)
    access.need(Scope.READ, job.repository_id)
    return job


@router.post("/{job_id}/play")
def play(job_id: RowId, services: ServicesDep, access: WriterDep) -> JobRead:
    """Start a manual job waiting to be played (409 when it is not `manual`)."""
    job = _job(services.database, job_id)
    access.need(Scope.WRITE, job.repository_id)
    return play_job(services=services, job_id=job_id, who=_who(access))


@router.post("/{job_id}/retry")
def retry(job_id: RowId, services: ServicesDep, access: WriterDep) -> JobRead:
    """A new attempt of a finished job; answers the new attempt."""
    job = _job(services.database, job_id)
    access.need(Scope.WRITE, job.repository_id)
    return retry_job(services=services, job_id=job_id)


@router.post("/{job_id}/cancel")
def cancel(job_id: RowId, services: ServicesDep, access: WriterDep) -> JobRead:
    """Cancel a job (a running one is stopped by its worker)."""
    job = _job(services.database, job_id)
    access.need(Scope.WRITE, job.repository_id)
    return cancel_job(services=services, job_id=job_id)


def _resume_offset(offset: int, last_event_id: str | None) -> int:
    if last_event_id is None or not last_event_id.strip():
        return offset
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_ROW_ID):
        raise InvalidCursorError(
            f"Last-Event-ID {text[:40]!r} is not a line number this server sent"
        )
    return max(offset, int(text))


def _read_step(database: Database, job_id: int, offset: int) -> tuple[JobRead, list[str]]:
    """The job as it is now, then its lines from `offset` (status first: a job seen finished
    has written every line the read after it returns)."""
    with database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
    with database.transaction() as session:
        lines = read_log(session=session, job_id=job_id, offset=offset, limit=LINES_PER_READ).lines
    return job, lines


async def _follow(
    request: Request, database: Database, job_id: int, offset: int
) -> AsyncIterator[dict[str, Any]]:
    while True:
        try:
            job, lines = await anyio.to_thread.run_sync(_read_step, database, job_id, offset)
        except NotFoundError:  # deleted with its pipeline while followed
            yield {"event": "end", "id": str(offset), "data": json.dumps({"status": "deleted"})}
            return
        except OperationalError:  # the database is away for a moment: look again shortly
            logger.warning("following job %d: the database did not answer", job_id)
            await anyio.sleep(1.0)
            continue
        for line in lines:
            offset += 1
            yield {"id": str(offset), "data": line}
        if lines:
            continue
        if job.status in FINISHED_STATUSES:
            end = {"status": job.status, "exit_code": job.exit_code, "reason": job.reason}
            yield {"event": "end", "id": str(offset), "data": json.dumps(end)}
            return
        if await request.is_disconnected():
            return
        await anyio.sleep(FOLLOW_POLL_SECONDS)


def _text_lines(database: Database, job_id: int, offset: int, end: int) -> Iterator[bytes]:
    while offset < end:
        with database.transaction() as session:
            lines = read_log(
                session=session,
                job_id=job_id,
                offset=offset,
                limit=min(LINES_PER_READ, end - offset),
            ).lines
        if not lines:
            return
        offset += len(lines)
        yield ("\n".join(lines) + "\n").encode("utf-8", "replace")


@router.get(
    "/{job_id}/log",
    responses={
        200: {
            "content": {"text/plain": {}, "text/event-stream": {}},
            "description": "the log as text, or followed live as server-sent events",
        }
    },
)
async def log(
    job_id: RowId,
    request: Request,
    database: DatabaseDep,
    access: AccessDep,
    offset: Annotated[
        int, Query(ge=0, le=MAX_ROW_ID, description="first line to send (0-based)")
    ] = 0,
    accept: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Any:
    """A job's log from `offset`: text, or with `Accept: text/event-stream` followed live."""
    job = await anyio.to_thread.run_sync(_job, database, job_id)
    access.need(Scope.READ, job.repository_id)
    if accept is not None and "text/event-stream" in accept:
        start = _resume_offset(offset, last_event_id)
        return EventSourceResponse(_follow(request, database, job_id, start), ping=SSE_PING_SECONDS)
    end = job.log_lines
    return StreamingResponse(
        iterate_in_thread(_text_lines(database, job_id, offset, end)),
        media_type="text/plain; charset=utf-8",
        headers={"X-Kapal-Next-Offset": str(max(end, offset)), "X-Kapal-Job-Status": job.status},
    )


async def iterate_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Run a blocking iterator's steps in worker threads."""
    done = object()
    while True:
        chunk = await anyio.to_thread.run_sync(next, chunks, done)
        if chunk is done:
            return
        assert isinstance(chunk, bytes)
        yield chunk


@router.get("/{job_id}/artifacts")
def artifacts(
    job_id: RowId, session: SessionDep, database: DatabaseDep, access: AccessDep
) -> list[ArtifactRead]:
    """A job's artifacts (names, files, sizes)."""
    job = _job(database, job_id)
    access.need(Scope.READ, job.repository_id)
    return list_artifacts(session=session, job_id=job_id)


def _artifact_directory(root: Path, relative: str) -> Path:
    """The artifact's directory under `root`; NotFoundError for a path out of it, or one that
    is not a real directory (a symlink is never followed out)."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise NotFoundError(f"artifact path {relative!r} is not under the artifacts directory")
    current = root
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            raise NotFoundError("the artifact's files are gone (expired or deleted)") from None
        if not stat.S_ISDIR(mode):
            raise NotFoundError(f"artifact path {relative!r} is not a directory")
    return current


def _artifact_archive(settings: Settings, relative: str, name: str) -> IO[bytes]:
    """The .tar.gz of an artifact: from the artifacts directory, else (stored by a worker on
    another machine) from the object store, its untrusted archive unpacked through
    `runner.confined` into a temporary directory first."""
    if not settings.object_store or os.path.lexists(settings.artifacts_dir / relative):
        return _write_archive(_artifact_directory(settings.artifacts_dir, relative), name)
    with tempfile.TemporaryDirectory(prefix="kapal-artifact-") as scratch:
        try:
            objects = settings.open_object_store()
            found = objects is not None and fetch_artifacts(
                objects, relative, Path(scratch) / "tree"
            )
        except RunnerError as exc:
            raise ArtifactStoreError(str(exc)) from None
        if not found:
            raise NotFoundError("the artifact's files are gone (expired or deleted)")
        return _write_archive(Path(scratch) / "tree", name)


def _write_archive(directory: Path, name: str) -> IO[bytes]:
    """A gzipped tar of `directory` (links kept as links, never followed), rewound."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the response, or below)
    try:
        with tarfile.open(fileobj=spool, mode="w:gz") as archive:
            for top, dirs, files in os.walk(directory, followlinks=False):
                dirs.sort()
                for entry in [*dirs, *sorted(files)]:
                    path = Path(top) / entry
                    arcname = f"{name}/{path.relative_to(directory)}"
                    info = archive.gettarinfo(str(path), arcname)
                    if info.isreg():
                        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                        with os.fdopen(fd, "rb") as handle:
                            archive.addfile(info, handle)
                    else:
                        archive.addfile(info)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


@router.get(
    "/{job_id}/artifacts/{artifact_id}",
    responses={200: {"content": {"application/gzip": {}}, "description": "a .tar.gz"}},
)
async def download_artifact(
    job_id: RowId,
    artifact_id: RowId,
    database: DatabaseDep,
    settings: SettingsDep,
    access: AccessDep,
) -> StreamingResponse:
    """Download one of a job's artifacts as a .tar.gz."""
    job = await anyio.to_thread.run_sync(_job, database, job_id)
    access.need(Scope.READ, job.repository_id)

    def find() -> ArtifactRead:
        with database.transaction() as session:
            found = get_artifact(session=session, artifact_id=artifact_id)
        if found is None or found.job_id != job_id:
            raise NotFoundError(f"job {job_id} has no artifact {artifact_id}")
        return found

    artifact = await anyio.to_thread.run_sync(find)
    if job.artifacts_expired:

        def why() -> str:
            found = expired_message(database=database, settings=settings, job_id=job_id)
            return found or f"the artifacts of job {job_id} expired and were removed"

        raise ArtifactsExpiredError(await anyio.to_thread.run_sync(why))
    safe_name = (
        "".join(c if c.isalnum() or c in "-_." else "_" for c in artifact.name) or "artifacts"
    )
    handle = await anyio.to_thread.run_sync(_artifact_archive, settings, artifact.path, safe_name)
    return StreamingResponse(
        iterate_in_thread(_chunks(handle)),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{safe_name}.tar.gz"'},
        background=BackgroundTask(handle.close),
    )
