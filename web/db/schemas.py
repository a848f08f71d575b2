"""What the repository functions take and return: pydantic schemas, never ORM rows.

`...Create` schemas are inputs; `...Read` schemas are rows as the rest of kapal sees them.
Secret values, webhook secrets and token hashes never appear in a `...Read` schema.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
MAX_REF_LENGTH = 1024


class Provider(StrEnum):
    """The git hosts kapal takes webhooks from."""

    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"


class Scope(StrEnum):
    """What an API token may do: read history, write (trigger, cancel, retry, play), administer."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; `next_cursor` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


class RepositoryCreate(BaseModel):
    """A repository to register."""

    name: str = Field(min_length=1, max_length=255)
    clone_url: str = Field(min_length=1)
    provider: Provider
    webhook_secret: str = Field(min_length=1)
    default_branch: str = Field(default="main", min_length=1, max_length=255)
    status_token: str | None = None
    protected_refs: list[str] = Field(default_factory=list)
    allow_host_network: bool = False


class RepositoryUpdate(BaseModel):
    """Changes to a repository; fields left None stay as they are."""

    clone_url: str | None = None
    default_branch: str | None = Field(default=None, min_length=1, max_length=255)
    webhook_secret: str | None = Field(default=None, min_length=1)
    status_token: str | None = None
    protected_refs: list[str] | None = None
    allow_host_network: bool | None = None


class RepositoryRead(_Row):
    """A registered repository, without its secrets."""

    id: int
    name: str
    clone_url: str
    provider: Provider
    default_branch: str
    protected_refs: list[str]
    allow_host_network: bool
    has_status_token: bool
    created_at: datetime
    updated_at: datetime


class RepositoryCredentials(BaseModel):
    """A repository's decrypted webhook secret and status token, for hooks and status reports."""

    model_config = ConfigDict(frozen=True)

    webhook_secret: str
    status_token: str | None


class PipelineCreate(BaseModel):
    """A pipeline to record (from a webhook, the API or a retry)."""

    repository_id: int
    source: str = Field(min_length=1, max_length=32)
    # PostgreSQL's index rows end near 2.7 kB; no branch or tag name needs a quarter of that
    ref: str = Field(min_length=1, max_length=MAX_REF_LENGTH)
    sha: str = Field(min_length=1, max_length=64)
    tag: bool = False
    before_sha: str | None = Field(default=None, max_length=64)
    message: str = ""
    author_name: str = ""
    author_email: str = ""
    delivery_id: str | None = None
    status: str = Field(default="created", max_length=32)
    reason: str = ""
    variables: dict[str, str] = Field(default_factory=dict)
    trigger: dict[str, Any] = Field(default_factory=dict)
    plan: dict[str, Any] | None = None
    parent_job_id: int | None = None  # a child pipeline's `trigger:` job


class PipelineRead(_Row):
    """A recorded pipeline (without its plan; see `get_pipeline_plan`)."""

    id: int
    repository_id: int
    source: str
    ref: str
    tag: bool
    sha: str
    before_sha: str | None
    message: str
    author_name: str
    author_email: str
    delivery_id: str | None
    status: str
    reason: str
    variables: dict[str, str]
    trigger: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_job_id: int | None = None  # a child pipeline's: the `trigger:` job that started it


class JobCreate(BaseModel):
    """A job of a pipeline, as the plan lists it."""

    name: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    position: int
    status: str = Field(default="created", max_length=32)
    reason: str = ""
    when: str = Field(default="on_success", max_length=32)
    allow_failure: bool = False
    image: str | None = None
    tags: list[str] = Field(default_factory=list)


class JobRead(_Row):
    """One attempt of a job."""

    id: int
    pipeline_id: int
    name: str
    stage: str
    position: int
    status: str
    reason: str
    when: str
    allow_failure: bool
    attempt: int
    retried: bool
    cancel_requested: bool
    exit_code: int | None
    worker: str | None
    image: str | None
    image_digest: str | None
    log_lines: int
    tags: list[str] = Field(default_factory=list)
    played_by: str | None = None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    # when its artifacts expire (None: never, or it kept none) and whether they are gone
    artifacts_expire_at: datetime | None = None
    artifacts_expired: bool = False
    # a `trigger:` job's: the child pipeline it started (filled where a pipeline is read whole)
    downstream_pipeline_id: int | None = None


class PipelineDetail(PipelineRead):
    """A pipeline with its jobs (latest attempts and retried ones, in plan order); a child
    pipeline's parent pipeline (`parent_pipeline_id`, that of its `parent_job_id`)."""

    jobs: list[JobRead]
    parent_pipeline_id: int | None = None


class LogSlice(BaseModel):
    """Lines `offset` .. `next_offset` - 1 (0-based) of a job's log."""

    offset: int
    lines: list[str]
    next_offset: int


class ArtifactCreate(BaseModel):
    """An artifacts archive a job produced."""

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    files: list[str] = Field(default_factory=list)
    size: int = Field(ge=0)
    sha256: str = Field(min_length=64, max_length=64)
    expire_at: datetime | None = None


class ArtifactRead(_Row):
    """A stored artifacts archive."""

    id: int
    job_id: int
    name: str
    path: str
    files: list[str]
    size: int
    sha256: str
    expire_at: datetime | None
    created_at: datetime


class TestCaseCreate(BaseModel):
    """One JUnit test case."""

    __test__ = False  # not a pytest test class

    suite: str
    name: str
    status: str = Field(pattern=r"^(passed|failed|error|skipped)$")
    duration: float = 0.0
    message: str = ""


class TestCaseRead(_Row):
    """A recorded test case."""

    __test__ = False  # not a pytest test class

    id: int
    pipeline_id: int
    job_id: int
    suite: str
    name: str
    status: str
    duration: float
    message: str


class BuiltImageRead(_Row):
    """An image a job built."""

    id: int
    job_id: int
    tag: str
    digest: str
    pushed: bool
    created_at: datetime


class DeliveryCreate(BaseModel):
    """A webhook delivery as received."""

    provider: Provider
    delivery_id: str = Field(min_length=1, max_length=255)
    event: str
    payload: bytes
    headers: dict[str, str] = Field(default_factory=dict)
    repository_id: int | None = None


class DeliveryRecorded(BaseModel):
    """The outcome of recording a delivery: new, or the earlier one with its pipeline."""

    model_config = ConfigDict(frozen=True)

    id: int
    created: bool
    pipeline_id: int | None
    outcome: str = ""  # a redelivery's: the first one's (`pipeline`, `ignored: ...`, ...)


class DeliveryRead(_Row):
    """A stored delivery, with its raw body for replay."""

    id: int
    provider: Provider
    delivery_id: str
    event: str
    repository_id: int | None
    pipeline_id: int | None
    headers: dict[str, str]
    payload: bytes
    outcome: str
    received_at: datetime


class TokenRead(_Row):
    """An API token's description (never the token or its hash)."""

    id: int
    name: str
    prefix: str
    scopes: list[Scope]
    repository_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def allows(self, scope: Scope, repository_id: int | None = None) -> bool:
        """Whether this token has `scope` (admin implies all) on `repository_id`."""
        if self.repository_id is not None and repository_id != self.repository_id:
            return False
        return (
            Scope.ADMIN in self.scopes
            or scope in self.scopes
            or (scope is Scope.READ and Scope.WRITE in self.scopes)
        )


class TokenCreated(BaseModel):
    """A new token: its plaintext, shown this once, and its description."""

    model_config = ConfigDict(frozen=True)

    plaintext: str
    token: TokenRead


class SecretRead(_Row):
    """A repository secret's name and flags (the value is write-only)."""

    id: int
    repository_id: int
    name: str
    protected: bool
    created_at: datetime
    updated_at: datetime
