"""`latest_pipelines`: each repository's newest pipeline in one statement, as the repositories
page shows them, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.web.db.factories import make_pipeline, make_repository
from tests.web.service_support import sent_statements
from web.db.encryption import SecretCipher
from web.db.pipelines import latest_pipeline, latest_pipelines
from web.db.session import Database


def test_each_repository_gets_its_newest_pipeline_and_one_without_none(
    database: Database, cipher: SecretCipher
) -> None:
    with database.transaction() as session:
        shop = make_repository(session, cipher, "acme/shop")
        api = make_repository(session, cipher, "acme/api")
        empty = make_repository(session, cipher, "acme/empty")
        for ref in ("main", "dev", "main"):
            make_pipeline(session, shop.id, ref=ref)
            make_pipeline(session, api.id, ref=ref)
        newest_shop = make_pipeline(session, shop.id, ref="feature/x")
    with database.reading() as session:
        newest = latest_pipelines(session=session)
        one_by_one = {
            r.id: latest_pipeline(session=session, repository_id=r.id) for r in (shop, api)
        }
    assert set(newest) == {shop.id, api.id}
    assert empty.id not in newest
    assert newest == one_by_one
    assert newest[shop.id].id == newest_shop.id
    assert newest[shop.id].ref == "feature/x"


def test_one_statement_for_any_number_of_repositories(
    database: Database, cipher: SecretCipher
) -> None:
    counts = []
    for batch in range(2):
        with database.transaction() as session:
            for n in range(1 + 9 * batch):
                repository = make_repository(session, cipher, f"acme/r{batch}-{n}")
                make_pipeline(session, repository.id)
        with database.reading() as session, sent_statements(database) as seen:
            found = latest_pipelines(session=session)
        assert len(found) == 1 + 10 * batch
        counts.append(len(seen))
    assert counts == [1, 1]
