"""The hot reads use their indexes: the database's own plan for the statements kapal sends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.jobs import list_jobs
from web.db.logs import append_log, read_log
from web.db.pipelines import list_pipelines
from web.db.session import Database


@contextmanager
def _statements(database: Database) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)


def _plan(database: Database, session: Session, statement: str, parameters: Any) -> str:
    connection = session.connection()
    if database.dialect == "sqlite":
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(str(r[-1]) for r in rows)
    # statistics, as autovacuum keeps them (without, the planner tells apart no two indexes
    # of one table); too few rows for it to prefer an index on its own: forbid the table scan
    session.execute(text("ANALYZE pipelines"))
    session.execute(text("SET LOCAL enable_seqscan = off"))
    rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters)
    return "\n".join(str(r[0]) for r in rows)


@pytest.mark.parametrize(
    ("index", "read"),
    [
        (
            "ix_pipelines_repository_ref_id",
            lambda s, ids: list_pipelines(session=s, repository_id=ids["repo"], ref="main"),
        ),
        (
            "ix_pipelines_ref_id",
            lambda s, ids: list_pipelines(session=s, ref="feature/rare"),
        ),
        ("ix_pipelines_source_id", lambda s, ids: list_pipelines(session=s, source="api")),
        (
            "ix_pipelines_repository_status_id",
            lambda s, ids: list_pipelines(session=s, repository_id=ids["repo"], status="failed"),
        ),
        ("ix_jobs_pipeline_id_position", lambda s, ids: list_jobs(session=s, pipeline_id=ids["p"])),
        (
            "ix_log_chunks_job_id_end_line",
            lambda s, ids: read_log(session=s, job_id=ids["job"], offset=40),
        ),
    ],
    ids=[
        "latest-pipelines-of-a-branch",
        "a-branch-across-repositories",
        "pipelines-of-a-source",
        "a-repositorys-pipelines-of-a-status",
        "jobs-of-a-pipeline",
        "log-after-line-n",
    ],
)
def test_hot_reads_use_their_index(
    database: Database,
    cipher: SecretCipher,
    index: str,
    read: Callable[[Session, dict[str, int]], object],
) -> None:
    with database.transaction() as session:
        # every repository has a main branch: the branch alone does not find a repository's
        for name in ("acme/blog", "acme/docs"):
            other = make_repository(session, cipher, name)
            for ref in ("main", "main", "dev"):
                make_pipeline(session, other.id, ref=ref, status="failed")
        repo = make_repository(session, cipher)
        make_pipeline(session, repo.id, ref="feature/rare", source="api", status="failed")
        for ref in ("main", "dev", "main"):
            pipeline = make_pipeline(session, repo.id, ref=ref)
        job = make_jobs(session, pipeline.id, "a", "b")[0]
        for n in range(30):
            append_log(session=session, job_id=job.id, lines=[f"{n}.1", f"{n}.2"])
    ids = {"repo": repo.id, "p": pipeline.id, "job": job.id}
    with database.transaction() as session:
        with _statements(database) as seen:
            read(session, ids)
        statement, parameters = next(s for s in seen if s[0].lstrip().upper().startswith("SELECT"))
        plan = _plan(database, session, statement, parameters)
    assert index in plan, plan
