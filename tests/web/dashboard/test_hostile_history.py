"""An attacker writes the refs, commit messages, author names, job names, test names and
messages, artifact names and image tags a dashboard shows (a webhook and a pipeline file are
theirs): on every page each one shows as text, nothing of it runs, and no element of it appears."""

from __future__ import annotations

import hashlib

from tests.web.dashboard.conftest import Dashboard, register, write_log
from web.db.jobs import create_jobs, set_job_status
from web.db.pipelines import create_pipeline
from web.db.results import add_artifact, add_built_image, add_test_cases
from web.db.schemas import ArtifactCreate, JobCreate, PipelineCreate, TestCaseCreate

PAYLOADS = {
    "ref": "<img src=x onerror=\"window.__pwned='ref'\">",
    "message": "<script>window.__pwned='message'</script>",
    "author": "<svg onload=\"window.__pwned='author'\"></svg>",
    "job": "<iframe srcdoc=\"<script>parent.__pwned='job'</script>\"></iframe>",
    "case": '"><img src=x onerror="window.__pwned=\'case\'">',
    "failure": "</pre><script>window.__pwned='failure'</script>",
    "artifact": "<a href=\"javascript:window.__pwned='artifact'\">x</a>",
    "tag": "';window.__pwned='tag';'",
    "reason": "<style>body{display:none}</style><b class=injected>reason</b>",
}
INJECTED = (
    "main script, main iframe, main style, .injected, main img:not([src^='/badges/']), "
    "main svg:not(.icon):not(.dag-graph):not(.chart-svg)"
)


def test_what_an_attacker_wrote_stays_text_on_every_page(dashboard: Dashboard) -> None:
    repository = register(dashboard)
    with dashboard.transaction() as session:
        made = create_pipeline(
            session=session,
            new=PipelineCreate(
                repository_id=repository.id,
                source="push",
                ref=PAYLOADS["ref"],
                sha="e" * 40,
                message=PAYLOADS["message"],
                author_name=PAYLOADS["author"],
                status="failed",
                reason=PAYLOADS["reason"],
            ),
        )
        (job,) = create_jobs(
            session=session,
            pipeline_id=made.id,
            jobs=[JobCreate(name=PAYLOADS["job"], stage=PAYLOADS["job"], position=0)],
        )
        set_job_status(session=session, job_id=job.id, status="failed", reason=PAYLOADS["reason"])
        add_test_cases(
            session=session,
            job_id=job.id,
            cases=[
                TestCaseCreate(
                    suite=PAYLOADS["case"],
                    name=PAYLOADS["case"],
                    status="failed",
                    message=PAYLOADS["failure"],
                )
            ],
        )
        add_artifact(
            session=session,
            job_id=job.id,
            artifact=ArtifactCreate(name=PAYLOADS["artifact"], path="a", size=1, sha256="0" * 64),
        )
        add_built_image(
            session=session,
            job_id=job.id,
            tag=PAYLOADS["tag"],
            digest="sha256:" + hashlib.sha256(b"x").hexdigest(),
        )
    write_log(dashboard, job.id, list(PAYLOADS.values()))

    tab = dashboard.page()
    for path in (
        "/",
        f"/pipelines/{made.id}",
        f"/jobs/{job.id}",
        f"/repos/{repository.id}",
        "/charts",
        f"/?branch={PAYLOADS['ref']}",
    ):
        tab.goto(dashboard.url + path)
        if path.startswith("/jobs/"):
            tab.wait_for_selector(f"#L{len(PAYLOADS)}")
        tab.wait_for_timeout(200)  # any handler an element of the payloads had would have run
        assert tab.evaluate("window.__pwned") is None, path
        assert tab.locator(INJECTED).count() == 0, (path, tab.locator(INJECTED).count())
        text = tab.locator("body").inner_text()
        shown = {name for name, payload in PAYLOADS.items() if payload in text}
        expected = {
            "/": {"ref", "message", "author"},
            f"/pipelines/{made.id}": {"ref", "message", "job", "reason", "artifact", "tag"},
            f"/jobs/{job.id}": set(PAYLOADS),
        }.get(path, set())
        assert expected <= shown, (path, expected - shown)
    tab.goto(f"{dashboard.url}/pipelines/{made.id}")
    tab.click("ul.failed-cases summary")
    assert PAYLOADS["failure"] in tab.locator("ul.failed-cases pre").inner_text()
    assert PAYLOADS["reason"] in tab.locator("pre.reason").inner_text()
