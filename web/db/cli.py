"""`kapal migrate`: bring the database named by `KAPAL_DATABASE_URL` to this kapal's schema."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `migrate` command to `app`."""

    @app.command()
    def migrate(
        revision: str = typer.Option(
            "head", "--revision", help="Revision to go to (default: this kapal's newest)."
        ),
        check: bool = typer.Option(
            False, "--check", help="Change nothing; exit 1 unless the database is up to date."
        ),
    ) -> None:
        """Upgrade the database (KAPAL_DATABASE_URL, default: SQLite in the data dir)."""
        from pydantic import ValidationError

        from web.db.migrate import check_migrated, current_revision, describe, upgrade
        from web.errors import WebError
        from web.settings import Settings

        try:
            settings = Settings()
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
            )
            typer.echo(f"kapal migrate: bad KAPAL_* setting: {problems}", err=True)
            raise typer.Exit(2) from None
        url = settings.database_url
        try:
            if check:
                check_migrated(settings)
                typer.echo(f"{describe(url)} is up to date")
                return
            before = current_revision(url)
            upgrade(url, revision)
            after = current_revision(url)
        except WebError as exc:
            typer.echo(f"kapal migrate: {exc}", err=True)
            raise typer.Exit(1) from None
        if before == after:
            typer.echo(f"{describe(url)} is already at revision {after}")
        else:
            typer.echo(f"{describe(url)} migrated from revision {before or 'none'} to {after}")
