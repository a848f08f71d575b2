"""The dependencies routes declare, once, as `Annotated` aliases.

`create_app` keeps the settings, the database and the service layer on `app.state`; these read
them from there, so each route names only what it uses::

    def route(session: SessionDep, access: AccessDep) -> ...: ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.orm import Session

from web.api.auth import Access, authenticate, bearer_token
from web.db.encryption import SecretCipher
from web.db.schemas import Scope
from web.db.session import Database
from web.orchestration import Services
from web.settings import Settings


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    """The app's database."""
    database: Database = request.app.state.database
    return database


def get_services(request: Request) -> Services:
    """The service layer (pipelines, jobs) the app drives."""
    services: Services = request.app.state.services
    return services


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """A session in one transaction, committed before the response is sent."""
    with database.transaction() as session:
        yield session


def get_cipher(settings: Annotated[Settings, Depends(get_settings)]) -> SecretCipher:
    """The cipher of the secrets at rest."""
    return SecretCipher(settings.encryption_key())


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
CipherDep = Annotated[SecretCipher, Depends(get_cipher)]


def get_access(
    settings: SettingsDep,
    database: DatabaseDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Access:
    """The request's token (checked now: a bad one is 401 even on a public read)."""
    plaintext = bearer_token(authorization)
    if plaintext is None:
        return Access(token=None, public_reads=settings.public_reads)
    with database.transaction() as session:
        token = authenticate(session=session, settings=settings, plaintext=plaintext)
    return Access(token=token, public_reads=settings.public_reads)


AccessDep = Annotated[Access, Depends(get_access)]


def require_admin(access: AccessDep) -> Access:
    """The request's access, checked to hold an admin token (before the body is validated)."""
    access.need(Scope.ADMIN)
    return access


AdminDep = Annotated[Access, Depends(require_admin)]


def require_token(access: AccessDep) -> Access:
    """The request's access, checked to carry a token (401 before anything is looked up)."""
    if access.token is None:
        access.need(Scope.WRITE)
    return access


WriterDep = Annotated[Access, Depends(require_token)]


MAX_ROW_ID = 2**31 - 1  # the largest id an INTEGER primary key holds on PostgreSQL
# A row id in a path (`/pipelines/{pipeline_id}`): a larger number is a 422, not a database error.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
