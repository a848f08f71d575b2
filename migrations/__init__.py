"""Alembic environment and revisions of kapal's database (driven by `web.db.migrate`)."""
