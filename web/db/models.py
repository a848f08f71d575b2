"""The database tables as SQLAlchemy 2 typed models.

Rows never leave `web.db`: the repository functions turn them into pydantic schemas
(`web.db.schemas`). Times are stored in UTC and read back timezone-aware on every database.
Secrets, webhook secrets and status tokens are stored encrypted (`web.db.encryption`); API tokens
only as a SHA-256 hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names fixed by convention, so migrations can name what they drop on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store aware times converted to UTC; naive ones are taken as UTC already."""
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite returns naive."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def storable_text(value: str) -> str:
    """`value` as every database can store it: NUL (PostgreSQL refuses it in text) becomes
    U+FFFD, and so does a lone surrogate (no UTF-8 encoding exists for it)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


class _StorableText(TypeDecorator[str]):
    """Text that takes any Python string: job output and webhook fields are someone else's."""

    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Make the value storable (see `storable_text`)."""
        return None if value is None else storable_text(value)


class CleanText(_StorableText):
    """Unbounded text (TEXT) that takes any Python string."""

    impl = Text
    cache_ok = True


class CleanString(_StorableText):
    """Bounded text (VARCHAR(n)) that takes any Python string."""

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length


class Base(DeclarativeBase):
    """Declarative base of every kapal table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Repository(Base):
    """A git repository kapal runs pipelines for."""

    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(CleanString(255), unique=True)  # "acme/shop"
    clone_url: Mapped[str] = mapped_column(CleanText())
    provider: Mapped[str] = mapped_column(CleanString(16))  # github | gitlab | gitea
    default_branch: Mapped[str] = mapped_column(CleanString(255), default="main")
    webhook_secret: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted
    status_token: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted; None: no statuses
    # fnmatch patterns over full refs (refs/heads/release/*, refs/tags/v*) whose pipelines receive
    # protected secrets, besides the default branch.
    protected_refs: Mapped[list[str]] = mapped_column(default=list)
    allow_host_network: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Pipeline(Base):
    """One run of a repository's pipeline file at one commit."""

    __tablename__ = "pipelines"
    __table_args__ = (
        Index("ix_pipelines_repository_ref_id", "repository_id", "ref", "id"),
        Index("ix_pipelines_repository_id_id", "repository_id", "id"),
        Index("ix_pipelines_status_id", "status", "id"),
        # the list's other filters (revision 0004): a branch across repositories, a source,
        # a repository's pipelines of one status
        Index("ix_pipelines_ref_id", "ref", "id"),
        Index("ix_pipelines_source_id", "source", "id"),
        Index("ix_pipelines_repository_status_id", "repository_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(
        CleanString(32)
    )  # push | tag | merge_request_event | api | ...
    ref: Mapped[str] = mapped_column(CleanText())  # branch or tag name, without refs/heads/
    tag: Mapped[bool] = mapped_column(Boolean, default=False)
    sha: Mapped[str] = mapped_column(CleanString(64))
    before_sha: Mapped[str | None] = mapped_column(CleanString(64))
    message: Mapped[str] = mapped_column(CleanText(), default="")
    author_name: Mapped[str] = mapped_column(CleanText(), default="")
    author_email: Mapped[str] = mapped_column(CleanText(), default="")
    delivery_id: Mapped[str | None] = mapped_column(CleanText())
    status: Mapped[str] = mapped_column(CleanString(32))
    reason: Mapped[str] = mapped_column(CleanText(), default="")
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the rules saw besides the ref: merge request fields, changed files...
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan: Mapped[dict[str, Any] | None] = mapped_column()  # the Plan it ran, as JSON
    # A child pipeline's: the `trigger:` job (attempt) of its parent that started it (revision
    # 0005); use_alter: pipelines and jobs refer to each other
    parent_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", use_alter=True), index=True
    )
    # Bumped by `lock_pipeline`: advancing a pipeline serialises on this row.
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class Job(Base):
    """One attempt of one job of a pipeline; a retry is a new row with `attempt` + 1."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "name", "attempt"),
        Index("ix_jobs_pipeline_id_position", "pipeline_id", "position"),
        Index("ix_jobs_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(CleanText())
    stage: Mapped[str] = mapped_column(CleanText())
    position: Mapped[int] = mapped_column(Integer)  # order in the plan
    status: Mapped[str] = mapped_column(CleanString(32))
    reason: Mapped[str] = mapped_column(CleanText(), default="")
    when: Mapped[str] = mapped_column(CleanString(32), default="on_success")
    allow_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retried: Mapped[bool] = mapped_column(Boolean, default=False)  # a later attempt replaced it
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(CleanText())
    image: Mapped[str | None] = mapped_column(CleanText())
    image_digest: Mapped[str | None] = mapped_column(CleanText())
    log_lines: Mapped[int] = mapped_column(Integer, default=0)  # lines appended so far
    # who played this manual (or delayed) attempt: kept when its reason changes (revision 0006)
    played_by: Mapped[str | None] = mapped_column(CleanText())
    # the job's `tags:`: only a worker serving every one of them runs it (`web.routing`)
    tags: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # when this attempt's artifacts expire (its end + `expire_in`, else KAPAL_ARTIFACTS_EXPIRE_IN;
    # None: never, or no artifacts), and whether the expiry sweep removed them (revision 0008)
    artifacts_expire_at: Mapped[datetime | None] = mapped_column()
    artifacts_expired: Mapped[bool] = mapped_column(Boolean, server_default=false())


# `/metrics`'s `kapal_jobs` (current attempts by status, `web.db.stats.count_jobs_by_status`)
# read from this index alone, not the table (revision 0007); `retried` in it too, or SQLite
# reads each row to check it
Index(
    "ix_jobs_status_current",
    Job.status,
    Job.retried,
    postgresql_where=Job.retried.is_(False),
    sqlite_where=Job.retried.is_(False),
)

# the attempts whose artifacts are kept and will expire, by expiry time: what the expiry sweep
# reads (`web.db.artifact_expiry`, revision 0008)
Index(
    "ix_jobs_artifacts_kept",
    Job.artifacts_expire_at,
    postgresql_where=Job.artifacts_expired.is_(False) & Job.artifacts_expire_at.is_not(None),
    sqlite_where=Job.artifacts_expired.is_(False) & Job.artifacts_expire_at.is_not(None),
)


# Upper bounds (seconds) of the `kapal_job_duration_seconds` histogram's buckets: each is a
# column `le_<bound>` of `JobDurations` (changing them takes a migration that refills them).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class JobDurations(Base):
    """The run-time histogram of the job attempts that ended in one status (revision 0007):
    counters that only grow, bumped when an attempt moves from `running` to its end
    (`web.db.stats.count_job_end`). `count` is also the `+Inf` bucket; each `le_<bound>` counts
    the attempts that ran at most that many seconds (cumulative, as Prometheus's buckets)."""

    __tablename__ = "job_durations"

    status: Mapped[str] = mapped_column(CleanString(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    sum_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    le_1: Mapped[int] = mapped_column(BigInteger, default=0)
    le_5: Mapped[int] = mapped_column(BigInteger, default=0)
    le_15: Mapped[int] = mapped_column(BigInteger, default=0)
    le_30: Mapped[int] = mapped_column(BigInteger, default=0)
    le_60: Mapped[int] = mapped_column(BigInteger, default=0)
    le_120: Mapped[int] = mapped_column(BigInteger, default=0)
    le_300: Mapped[int] = mapped_column(BigInteger, default=0)
    le_600: Mapped[int] = mapped_column(BigInteger, default=0)
    le_1800: Mapped[int] = mapped_column(BigInteger, default=0)
    le_3600: Mapped[int] = mapped_column(BigInteger, default=0)


class Worker(Base):
    """A worker process (`kapal worker`, or `kapal serve`'s own): the queues it serves and its
    last heartbeat, by which a worker that died is told from one that is busy."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_heartbeat_at", "heartbeat_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(CleanString(255), unique=True)  # "kapal@host.pid"
    host: Mapped[str] = mapped_column(CleanString(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(default=list)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column()


class LogChunk(Base):
    """Consecutive lines of a job's log: lines `first_line` .. `end_line` - 1 (0-based).

    Append-only. "The log after line N" is the range `end_line > N` of the (job_id, end_line) index.
    """

    __tablename__ = "log_chunks"
    __table_args__ = (
        UniqueConstraint("job_id", "first_line"),
        Index("ix_log_chunks_job_id_end_line", "job_id", "end_line"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    first_line: Mapped[int] = mapped_column(Integer)
    end_line: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(CleanText())  # the lines, each ended by "\n"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """A job's artifacts archive, kept under the data dir."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(CleanText())
    path: Mapped[str] = mapped_column(CleanText())  # relative to the artifacts dir
    files: Mapped[list[str]] = mapped_column(default=list)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(CleanString(64))
    expire_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TestCase(Base):
    """One test case from a job's JUnit reports."""

    __tablename__ = "test_cases"
    __test__ = False  # not a pytest test class

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    suite: Mapped[str] = mapped_column(CleanText())  # the JUnit classname / suite
    name: Mapped[str] = mapped_column(CleanText())
    status: Mapped[str] = mapped_column(CleanString(32))  # passed | failed | error | skipped
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(CleanText(), default="")


class BuiltImage(Base):
    """An image a job built (and maybe pushed)."""

    __tablename__ = "built_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(CleanText())
    digest: Mapped[str] = mapped_column(CleanText())
    pushed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """A webhook as received (raw body and headers kept for replay), once per provider + id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("provider", "delivery_id"),
        Index("ix_webhook_deliveries_repository_id_id", "repository_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(CleanString(16))
    delivery_id: Mapped[str] = mapped_column(CleanString(255))
    event: Mapped[str] = mapped_column(CleanText())
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL")
    )
    pipeline_id: Mapped[int | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    outcome: Mapped[str] = mapped_column(CleanText(), default="")  # "pipeline", "ignored: ...", ...
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token: its SHA-256 hash, never the token itself."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(CleanString(255), unique=True)
    token_hash: Mapped[str] = mapped_column(CleanString(64), unique=True)
    prefix: Mapped[str] = mapped_column(CleanString(16))  # shown in listings to tell tokens apart
    scopes: Mapped[list[str]] = mapped_column(default=list)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE")
    )  # None: every repository
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class Secret(Base):
    """A repository secret, encrypted at rest; protected ones reach only protected refs."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(CleanString(255))
    value: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Environment(Base):
    """Where a repository's deploy jobs ship (`environment: name`), one row per name."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(CleanString(255))
    url: Mapped[str | None] = mapped_column(CleanText())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Deployment(Base):
    """One deployment of an image digest to an environment (see `runner.ship.deployments`)."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_environment_id_id", "environment_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    pipeline_id: Mapped[int | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(CleanString(16))  # registry | service | script
    image: Mapped[str] = mapped_column(CleanText(), default="")
    digest: Mapped[str] = mapped_column(CleanString(80), default="")
    target: Mapped[str] = mapped_column(CleanText(), default="")
    status: Mapped[str] = mapped_column(CleanString(16))  # success | failed
    user: Mapped[str] = mapped_column(CleanText(), default="")  # who deployed
    approved_by: Mapped[str | None] = mapped_column(CleanText())  # who played the manual job
    rollback_of: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL")
    )
    message: Mapped[str] = mapped_column(CleanText(), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
