"""The service's settings: one class extending `RunnerSettings` (`KAPAL_*` variables).

Defaults work with nothing installed: SQLite in the data dir, Celery on kombu's SQLAlchemy
transport over SQLite beside it, and an encryption key generated once into the data dir.
`KAPAL_DATABASE_URL=postgresql+psycopg://...` and `KAPAL_BROKER_URL=redis://...` (or `amqp://...`)
switch to real servers.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.durations import parse_duration
from runner.settings import RunnerSettings
from web.errors import SecretKeyError

if TYPE_CHECKING:
    from runner.objects import ObjectStore

MIB = 1024 * 1024
SECRET_KEY_FILE = "secret.key"
DATABASE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql+psycopg"})
MAX_EXPIRE_SECONDS = 10**10  # what `artifacts: expire_in:` takes at most (about 317 years)


class Settings(RunnerSettings):
    """Everything `kapal serve`, `kapal worker`, `kapal migrate` and the server-talking verbs read.

    `database_url` and `broker_url` are never empty after validation: unset, they point into the
    data dir (`kapal.db`, `broker.db`).
    """

    # SQLAlchemy URL; a plain `postgresql://` means psycopg 3. Empty: SQLite in the data dir.
    database_url: str = ""
    # Celery broker URL. Empty: kombu's SQLAlchemy transport over SQLite in the data dir.
    broker_url: str = ""
    # Key for secrets at rest (repository secrets, webhook secrets, status tokens), from
    # KAPAL_ENCRYPTION_KEY: a KAPAL_SECRET_* variable would be a job secret to `kapal run`.
    # Unset: a random key generated once into <data_dir>/secret.key (mode 0600).
    secret_key: SecretStr | None = Field(default=None, validation_alias="KAPAL_ENCRYPTION_KEY")
    # Bearer token with every right. Unset: `kapal serve` creates one on first start and prints it.
    admin_token: SecretStr | None = None
    # Whether reads (pipelines, jobs, logs, tests) need no token. Writes always need one.
    public_reads: bool = True
    # Largest webhook body accepted; larger deliveries get 413 before any parsing.
    webhook_body_limit: int = Field(default=4 * MIB, gt=0)
    # Largest request body of the REST API (repos, triggers, secrets).
    api_body_limit: int = Field(default=1 * MIB, gt=0)

    # `kapal serve`: where it listens (TCP, or a Unix socket made with mode 0660 when set).
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(default=8080, ge=0, le=65535)
    bind_socket: Path | None = None
    # The URL git hosts reach the server at (webhook URLs are built on it). Empty: the bind address.
    public_url: str = ""
    # `kapal serve` runs a Celery worker in its own process unless this is false (`--no-worker`).
    embedded_worker: bool = True
    worker_concurrency: int = Field(default=2, ge=1)
    # Workers write a heartbeat this often; one silent for `worker_lost_after` seconds is lost:
    # its running jobs fail "worker lost" (retried by `retry: {when: runner_system_failure}`).
    worker_heartbeat_interval: float = Field(default=5.0, gt=0)
    worker_lost_after: float = Field(default=30.0, gt=0)
    # Infrastructure errors of a job task are retried this many times, with exponential backoff.
    task_max_retries: int = Field(default=3, ge=0)

    # A directory every worker and the web process reach (a network file system across
    # machines): artifacts and caches live there, so a later job on another worker finds them.
    # Unset: the data dir (one machine).
    shared_dir: Path | None = None
    # Where workers keep artifacts and caches instead, packed one blob each, so workers with no
    # disk in common pass them on: `s3://bucket/prefix` on an S3-compatible server (the
    # KAPAL_S3_* settings below), or a directory (`/mnt/kapal-store`). Empty: the shared dir.
    # The web process reads artifacts from it too; `kapal run` always keeps its own directory.
    object_store: str = ""
    s3_endpoint: str = ""  # http(s)://host[:port]; empty: AWS (https://s3.amazonaws.com)
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = ""  # empty: asked of the server (us-east-1 for most S3-compatible ones)
    # How long a job's artifacts are kept after it ended when its `artifacts: expire_in:` says
    # nothing: a GitLab duration ("30 days", "1 week") or "never". The artifacts of each ref's
    # latest successful pipeline are kept even when expired (`web.artifact_expiry`).
    artifacts_expire_in: str = "30 days"
    # A registry path (`host:port/prefix`) the images jobs build are pushed to by digest and
    # pulled from by the workers running later jobs. Empty: they stay on the worker's disk.
    share_registry: str = ""
    # Log lines go to the database in batches bounded by time and size.
    log_flush_interval: float = Field(default=0.25, gt=0)
    log_flush_bytes: int = Field(default=64 * 1024, gt=0)

    # `include: remote` on the server connects only to public addresses (runner.include_addresses
    # says which); these host names, IP addresses and CIDR networks are allowed too (an internal
    # file server, 10.1.2.0/24), comma- or space-separated. KAPAL_GITLAB_URL's origin always is.
    include_allowed_hosts: str = ""

    # The CLI's side (`kapal trigger`, `kapal logs`...): the server it talks to and its token.
    # `unix:///path/kapal.sock` or `http://host:port`. Empty: the local server's bind address.
    host: str = ""
    token: SecretStr | None = None

    @field_validator("include_allowed_hosts")
    @classmethod
    def _allowed_hosts_parse(cls, value: str) -> str:
        """Refuse an allow-list entry that is neither a host name nor an address or network."""
        from runner.include_addresses import parse_allowed

        parse_allowed(value)
        return value

    @field_validator("artifacts_expire_in")
    @classmethod
    def _expire_in_parse(cls, value: str) -> str:
        """Refuse an artifacts expiry that is neither a duration nor `never`."""
        if value.strip().lower() != "never" and not expire_in_seconds(value):
            raise ValueError(
                f"KAPAL_ARTIFACTS_EXPIRE_IN={value!r} is not a duration; "
                'write it like "30 days", "1 week" or "never"'
            )
        return value

    @property
    def artifacts_expire_seconds(self) -> int | None:
        """`artifacts_expire_in` in seconds; None for `never`."""
        if self.artifacts_expire_in.strip().lower() == "never":
            return None
        return expire_in_seconds(self.artifacts_expire_in)

    @model_validator(mode="before")
    @classmethod
    def _key_by_name(cls, data: Any) -> Any:
        """Take `Settings(secret_key=...)` as well as KAPAL_ENCRYPTION_KEY."""
        if isinstance(data, dict) and "secret_key" in data:
            data = dict(data)
            data["KAPAL_ENCRYPTION_KEY"] = data.pop("secret_key")
        return data

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        """Point the database and the broker into the data dir when they are not set."""
        if not self.database_url:
            self.database_url = f"sqlite:///{self.database_file}"
        scheme, sep, rest = self.database_url.partition("://")
        if scheme in ("postgresql", "postgres"):
            self.database_url = f"postgresql+psycopg://{rest}"
        elif not sep or scheme not in DATABASE_SCHEMES:
            raise ValueError(
                f"KAPAL_DATABASE_URL {scheme + sep!r}...: kapal runs on SQLite "
                "(sqlite:///path/kapal.db) or PostgreSQL (postgresql+psycopg://user:pw@host/db)"
            )
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        return self

    @property
    def database_file(self) -> Path:
        """The embedded SQLite database file (used when `database_url` is not set)."""
        return self.data_dir / "kapal.db"

    @property
    def uses_sqlite(self) -> bool:
        """Whether the database is a SQLite file (the embedded default, which migrates itself)."""
        return self.database_url.startswith("sqlite")

    @property
    def mirrors_dir(self) -> Path:
        """Root of the per-repository git mirrors the server reads pipeline files from."""
        return self.data_dir / "mirrors"

    @property
    def artifacts_dir(self) -> Path:
        """Root of the artifact trees the server keeps (in the shared dir when set; on this
        machine's disk, beside the object store's copies, when `object_store` is set)."""
        base = self.data_dir if self.object_store else self.shared_dir or self.data_dir
        return base / "artifacts"

    @property
    def job_caches_dir(self) -> Path:
        """Root of the jobs' `cache:` trees (in the shared dir when set; unused by the workers
        when `object_store` is set: caches then live there only)."""
        return (self.shared_dir or self.data_dir) / "cache"

    def open_object_store(self) -> ObjectStore | None:
        """The store `object_store` names (connecting to nothing yet), or None when unset.

        Raises `ObjectStoreError` naming the setting that is malformed.
        """
        if not self.object_store:
            return None
        from runner.objects import open_object_store

        return open_object_store(
            self.object_store,
            endpoint=self.s3_endpoint,
            access_key=self.s3_access_key.get_secret_value() if self.s3_access_key else "",
            secret_key=self.s3_secret_key.get_secret_value() if self.s3_secret_key else "",
            region=self.s3_region,
        )

    @property
    def secret_key_file(self) -> Path:
        """Where the generated encryption key lives when `secret_key` is not set."""
        return self.data_dir / SECRET_KEY_FILE

    @property
    def server_url(self) -> str:
        """The URL webhooks and links are built on: `public_url`, else the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.bind_host}:{self.bind_port}"

    def encryption_key(self) -> str:
        """The key secrets are encrypted with: `secret_key`, else the data dir's generated one.

        The file is created once, with mode 0600, and never through a symlink.
        """
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if not value.strip():
                raise SecretKeyError(
                    "KAPAL_ENCRYPTION_KEY is empty; set a long random value or unset it"
                )
            return value
        return _read_or_create_key(self.secret_key_file)


def expire_in_seconds(text: str) -> int | None:
    """Seconds in a duration as `artifacts: expire_in:` takes it (the pipeline's parser), or None
    when it is not one, not positive, or beyond what a timestamp holds (`never` is not one)."""
    seconds = parse_duration(text)
    if seconds is None or not 0 < seconds <= MAX_EXPIRE_SECONDS:
        return None
    return seconds


def _read_or_create_key(path: Path) -> str:
    """Read the key file, creating it with a random key first when it does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then linked into place: a concurrent reader never sees a half-written key.
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        os.link(staging, path, follow_symlinks=False)
    except FileExistsError:
        pass  # another process (or an earlier start) made it: use that one
    finally:
        staging.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SecretKeyError(
                f"{path} is a symlink; the key file must be a regular file"
            ) from None
        raise SecretKeyError(f"{path}: cannot read the key file ({exc.strerror})") from None
    with os.fdopen(fd) as handle:
        value = handle.read().strip()
    if not value:
        raise SecretKeyError(
            f"{path} is empty; restore the key it held (secrets stored with it cannot be read "
            "otherwise) or delete it and set the secrets again"
        )
    return value
