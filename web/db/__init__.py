"""The history database: models, engine and sessions, migrations, repository functions.

- `models`: the tables (SQLAlchemy 2, `Mapped[...]`); rows never leave this package.
- `schemas`: what the repository functions take and return (pydantic).
- `session`: `Database` (engine + sessions; SQLite WAL or PostgreSQL via psycopg 3).
- `migrate`: `upgrade`, `check_migrated`, `ensure_migrated` (what `kapal serve` calls at start).
- repository functions, keyword-only, one module per subject: `repos`, `pipelines`, `jobs`,
  `logs`, `results` (artifacts, test cases, images), `artifact_expiry`, `deliveries`, `tokens`,
  `secrets`, `stats`.
- `encryption`: `SecretCipher`, how secrets are kept at rest.
"""
