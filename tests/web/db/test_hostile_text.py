"""Text from job output and webhook payloads is stored whatever it holds: NUL, lone surrogates,
control characters. PostgreSQL refuses NUL in text; no database can encode a lone surrogate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.jobs import claim_job, create_jobs, get_job, set_job_image
from web.db.logs import append_log, read_log
from web.db.models import storable_text
from web.db.pipelines import get_pipeline, list_pipelines
from web.db.repos import get_repository_by_name
from web.db.schemas import JobCreate, PipelineCreate
from web.db.session import Database

HOSTILE = "a\x00b\ud800c\x1b[31m\r\u202e\ufeffd"


def test_log_lines_with_nul_and_surrogates(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        job = make_jobs(session, pipeline.id, "test")[0]
        append_log(session=session, job_id=job.id, lines=[HOSTILE, "\x00", "after"])
    with database.transaction() as session:
        lines = read_log(session=session, job_id=job.id).lines
    assert lines == [storable_text(HOSTILE), "\ufffd", "after"]
    assert lines[0].startswith("a\ufffdb") and "\x1b[31m\r\u202e" in lines[0]


def test_webhook_fields_with_nul(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher, name="acme/\x00shop")
        pipeline = make_pipeline(
            session,
            repo.id,
            ref="feature/\x00x",
            message=HOSTILE,
            author_name="\ud83d",
            delivery_id="\x00",
            reason="\x00",
        )
    with database.transaction() as session:
        read = get_pipeline(session=session, pipeline_id=pipeline.id)
        found = get_repository_by_name(session=session, name="acme/\x00shop")  # same cleaning
        by_ref = list_pipelines(session=session, ref="feature/\x00x")
    assert read is not None
    assert read.message == storable_text(HOSTILE) and "\x00" not in read.ref
    assert read.author_name == "\ufffd" * len(storable_text("\ud83d"))
    assert found is not None and found.id == repo.id
    assert [p.id for p in by_ref.items] == [pipeline.id]


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters() | st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d"])))
def test_storable_text_encodes_and_keeps_the_rest(value: str) -> None:
    cleaned = storable_text(value)
    cleaned.encode("utf-8")  # never raises
    assert "\x00" not in cleaned
    if "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        assert cleaned == value


def test_long_free_text_fits_on_both_databases(database: Database, cipher: SecretCipher) -> None:
    """Git refs, job names and digests have no length a database column may assume."""
    long = "x" * 1000
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(
            session, repo.id, ref="feature/" + long, author_name=long, author_email=long
        )
        job = create_jobs(
            session=session,
            pipeline_id=pipeline.id,
            jobs=[JobCreate(name="test: [" + long + "]", stage=long, position=0, status="pending")],
        )[0]
        set_job_image(session=session, job_id=job.id, image=long, digest="sha512:" + "f" * 128)
        claim_job(session=session, job_id=job.id, worker="worker@" + long)
    with database.transaction() as session:
        read = get_pipeline(session=session, pipeline_id=pipeline.id)
        read_job = get_job(session=session, job_id=job.id)
    assert read is not None and read.ref == "feature/" + long
    assert read_job is not None and read_job.image_digest == "sha512:" + "f" * 128
    assert read_job.worker == "worker@" + long


def test_an_overlong_ref_is_refused_before_the_database() -> None:
    with pytest.raises(ValidationError, match="1024"):
        PipelineCreate(repository_id=1, source="push", ref="r" * 1025, sha="a" * 40)
