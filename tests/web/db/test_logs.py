"""Job logs: appended in chunks, read from any line on, never interleaved."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.support.threads import run_at_once
from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.logs import append_log, log_line_count, read_log
from web.db.models import LogChunk
from web.db.session import Database
from web.errors import NotFoundError


def _job_id(database: Database, cipher: SecretCipher) -> int:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        return make_jobs(session, pipeline.id, "test")[0].id


def test_append_then_read_from_any_offset(database: Database, cipher: SecretCipher) -> None:
    job_id = _job_id(database, cipher)
    batches = [["$ make test", "collecting"], [""], ["ok ü 🚀", "  indented", "done"]]
    every = [line for batch in batches for line in batch]
    with database.transaction() as session:
        totals = [append_log(session=session, job_id=job_id, lines=b) for b in batches]
    assert totals == [2, 3, 6]
    with database.transaction() as session:
        assert log_line_count(session=session, job_id=job_id) == 6
        for offset in range(len(every) + 2):
            got = read_log(session=session, job_id=job_id, offset=offset)
            assert got.lines == every[offset:], offset
            assert got.offset == offset
            assert got.next_offset == max(offset, len(every))
        limited = read_log(session=session, job_id=job_id, offset=1, limit=3)
    assert limited.lines == every[1:4] and limited.next_offset == 4


def test_a_line_with_newlines_becomes_several(database: Database, cipher: SecretCipher) -> None:
    job_id = _job_id(database, cipher)
    with database.transaction() as session:
        assert append_log(session=session, job_id=job_id, lines=["a\nb", "c"]) == 3
        assert append_log(session=session, job_id=job_id, lines=[]) == 3
        assert read_log(session=session, job_id=job_id).lines == ["a", "b", "c"]


def test_reading_after_n_touches_only_later_chunks(
    database: Database, cipher: SecretCipher
) -> None:
    job_id = _job_id(database, cipher)
    with database.transaction() as session:
        for i in range(50):
            append_log(session=session, job_id=job_id, lines=[f"line {2 * i}", f"line {2 * i + 1}"])
    with database.transaction() as session:
        chunks = session.execute(
            select(LogChunk.first_line, LogChunk.end_line)
            .where(LogChunk.job_id == job_id)
            .order_by(LogChunk.first_line)
        ).all()
        tail = read_log(session=session, job_id=job_id, offset=97)
    assert [tuple(c) for c in chunks] == [(2 * i, 2 * i + 2) for i in range(50)]
    assert tail.lines == ["line 97", "line 98", "line 99"]
    assert tail.next_offset == 100


def test_concurrent_appenders_never_interleave(database: Database, cipher: SecretCipher) -> None:
    job_id = _job_id(database, cipher)

    def write(writer: int) -> None:
        for batch in range(10):
            with database.transaction() as session:
                append_log(
                    session=session,
                    job_id=job_id,
                    lines=[f"{writer}:{batch}:{n}" for n in range(3)],
                )

    assert run_at_once(4, write) == [None] * 4
    with database.transaction() as session:
        lines = read_log(session=session, job_id=job_id).lines
    assert len(lines) == 120
    for start in range(0, 120, 3):  # each batch stayed whole and in order
        prefix = lines[start].rsplit(":", 1)[0]
        assert lines[start : start + 3] == [f"{prefix}:{n}" for n in range(3)]


def test_unknown_job(database: Database) -> None:
    with pytest.raises(NotFoundError, match="job 7"), database.transaction() as session:
        append_log(session=session, job_id=7, lines=["x"])
    with pytest.raises(NotFoundError), database.transaction() as session:
        append_log(session=session, job_id=7, lines=[])
    with pytest.raises(NotFoundError), database.transaction() as session:
        log_line_count(session=session, job_id=7)
    with database.transaction() as session:
        assert read_log(session=session, job_id=7).lines == []
