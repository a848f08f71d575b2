"""Schema migrations: upgrade (`kapal migrate`), and the check `kapal serve` makes at start.

The Alembic environment is the `migrations` package shipped with kapal; no alembic.ini is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from web.db.session import make_engine
from web.errors import DatabaseError, NotMigratedError
from web.settings import Settings


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at `url`, on kapal's own migrations."""
    import migrations

    if migrations.__file__ is None:  # a stray `migrations` namespace shadows kapal's package
        raise NotMigratedError(
            f"kapal's migrations package is not found (got {list(migrations.__path__)}); "
            "reinstall kapal"
        )
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # '%' is ConfigParser's interpolation character; a password may hold one
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The revision this kapal's models are at."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise NotMigratedError("kapal ships no migrations; reinstall kapal")
    return head


@contextmanager
def _reaching(url: str) -> Iterator[None]:
    """Turn "the database cannot be reached" into one DatabaseError line, without a traceback."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:  # refused, unknown host, bad password, bad path
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseError(f"cannot use the database at {describe(url)}: {reason}") from None


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None: never migrated)."""
    with _reaching(url):
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        finally:
            engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision`."""
    try:
        with _reaching(url):
            command.upgrade(alembic_config(url), revision)
    except CommandError as exc:  # e.g. a revision from a newer kapal
        raise NotMigratedError(f"cannot migrate the database at {describe(url)}: {exc}") from None


def downgrade(url: str, revision: str = "base") -> None:
    """Take the database at `url` down to `revision` (`base`: no kapal tables left)."""
    try:
        with _reaching(url):
            command.downgrade(alembic_config(url), revision)
    except CommandError as exc:
        raise NotMigratedError(f"cannot migrate the database at {describe(url)}: {exc}") from None


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_migrated(settings: Settings) -> None:
    """Raise NotMigratedError, with what to run, unless the database is at this kapal's head."""
    head = head_revision()
    current = current_revision(settings.database_url)
    if current == head:
        return
    where = describe(settings.database_url)
    if current is None:
        raise NotMigratedError(
            f"the database at {where} has no kapal tables yet: run `kapal migrate` first"
        )
    raise NotMigratedError(
        f"the database at {where} is at revision {current}, this kapal needs {head}: "
        "run `kapal migrate` (or run the kapal version that migrated it)"
    )


def ensure_migrated(settings: Settings) -> None:
    """Migrate an embedded SQLite database by itself; check any other (see `check_migrated`)."""
    if settings.uses_sqlite:
        upgrade(settings.database_url)
        return
    check_migrated(settings)
