"""The job page in a browser: the log streams while the job runs, every line stays text (a
`<script>` line never runs), ANSI colours become classes, `$ command` lines fold their output,
lines are numbered with anchors, and the page shows the job's end."""

from __future__ import annotations

from tests.web.api.conftest import ADMIN
from tests.web.dashboard.conftest import (
    Dashboard,
    add_pipeline,
    add_planned_pipeline,
    register,
    set_job,
    wait_until,
    write_log,
)
from web.db.jobs import claim_job

HOSTILE = [
    "<script>window.__pwned = 'script'</script>",
    '<img src="x" onerror="window.__pwned = \'img\'">',
    "</div><b id=injected>not bold</b>",
]


def test_log_streams_as_text_with_colours_and_sections(dashboard: Dashboard) -> None:
    repository = register(dashboard)
    _, (job_id,) = add_pipeline(dashboard, repository.id, jobs={"unit": "running"})
    write_log(
        dashboard,
        job_id,
        [
            "Running with kapal",
            "$ make test",
            "\x1b[31mred failure\x1b[0m then \x1b[1;32mbold green\x1b[0m"
            "\x1b[38:5:196m colon\x1b[0m\x1b[2K\x1b]0;title\x07",
            *HOSTILE,
            "$ echo done",
        ],
    )
    tab = dashboard.page()
    tab.goto(f"{dashboard.url}/jobs/{job_id}")
    tab.wait_for_selector("#L7")
    log = tab.locator("#log")

    # hostile lines are shown as they were written, and nothing in them ran or was parsed
    for number, line in enumerate(HOSTILE, start=4):
        assert tab.locator(f"#L{number} .text").inner_text() == line
    assert tab.evaluate("window.__pwned") is None
    assert tab.locator("#log script, #log img, #injected").count() == 0

    # colours: classes on spans holding the text
    assert tab.locator("#L3 .ansi-fg-1").inner_text() == "red failure"
    assert tab.locator("#L3 .ansi-fg-2.ansi-bold").inner_text() == "bold green"
    assert "\x1b" not in log.inner_text()
    # a 256-colour code written with colons; an erase and a window title leave nothing behind
    assert tab.locator("#L3").inner_text().endswith("bold green colon")
    assert tab.locator("#L3 .text > span:has-text('colon')").evaluate("s => s.style.color") == (
        "rgb(255, 0, 0)"
    )

    # line numbers link to their anchors
    assert tab.locator("#L3 a.ln").get_attribute("href") == "#L3"

    # each `$ command` opens a section holding the lines after it, which folds
    sections = tab.locator("#log details.section")
    assert sections.count() == 2
    first = sections.nth(0)
    assert first.locator("summary .text").inner_text() == "$ make test"
    assert first.locator(".section-body .line").count() == 4
    assert tab.locator("#L3").is_visible()
    first.locator("summary").click()
    assert not tab.locator("#L3").is_visible()
    tab.click("#log-expand")
    assert tab.locator("#L3").is_visible()

    # lines written while the page is open arrive without a reload
    tab.evaluate("window.__notReloaded = true")
    write_log(dashboard, job_id, ["done \x1b[33mwarning\x1b[0m", "last line"])
    tab.wait_for_selector("#L9", timeout=15_000)
    assert tab.locator("#L8 .ansi-fg-3").inner_text() == "warning"
    assert tab.locator("#L9").locator("xpath=ancestor::details").count() == 1  # in `$ echo done`
    assert tab.evaluate("window.__notReloaded") is True
    dashboard.screenshot(tab, "job")

    # the end of the job: the stream closes and the page shows the outcome
    set_job(dashboard, job_id, "failed", exit_code=2)
    tab.wait_for_selector("#log-end:not([hidden])", timeout=15_000)
    assert "failed" in tab.locator("#log-end").inner_text()
    assert "exit code 2" in tab.locator("#log-end").inner_text()
    tab.wait_for_selector("#job-status [data-status=failed]", timeout=15_000)
    assert tab.locator("#exit-code").inner_text() == "2"
    assert tab.locator("#log .line").count() == 9  # nothing sent twice

    # the raw log downloads as plain text
    raw = tab.request.get(f"{dashboard.url}/jobs/{job_id}/raw")
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.text().splitlines()[3] == HOSTILE[0]


AT_BOTTOM = "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 30"


def test_auto_scroll_follows_until_the_reader_scrolls_up_and_anchors_open_their_line(
    dashboard: Dashboard,
) -> None:
    repository = register(dashboard)
    _, (job_id,) = add_pipeline(dashboard, repository.id, jobs={"long": "running"})
    write_log(dashboard, job_id, [f"line {n}" for n in range(1, 301)])
    tab = dashboard.page()
    tab.goto(f"{dashboard.url}/jobs/{job_id}")
    tab.wait_for_selector("#L300")
    wait_until(tab, AT_BOTTOM)
    write_log(dashboard, job_id, [f"line {n}" for n in range(301, 321)])
    tab.wait_for_selector("#L320", timeout=15_000)
    wait_until(tab, AT_BOTTOM)  # followed the new lines

    tab.mouse.move(400, 500)
    tab.mouse.wheel(0, -1500)
    wait_until(tab, "!document.getElementById('log-follow').checked")
    before = tab.evaluate("window.scrollY")
    write_log(dashboard, job_id, [f"line {n}" for n in range(321, 341)])
    tab.wait_for_selector("#L340", timeout=15_000)
    tab.wait_for_timeout(300)  # a frame or more for any scroll that would follow
    assert tab.evaluate("window.scrollY") == before
    assert tab.evaluate(AT_BOTTOM) is False

    # a line number is a link to the line; a page opened at one shows it, and does not follow
    tab.click("#L7 a.ln")
    assert tab.locator("#L7.target").count() == 1
    fresh = dashboard.page()
    fresh.goto(f"{dashboard.url}/jobs/{job_id}#L120")
    fresh.wait_for_selector("#L120.target")
    assert fresh.locator("#log-follow").is_checked() is False
    top = fresh.evaluate("document.getElementById('L120').getBoundingClientRect().top")
    assert 0 <= top <= fresh.viewport_size["height"]


def test_the_job_facts_follow_the_job_without_a_reload(dashboard: Dashboard) -> None:
    repository = register(dashboard)
    _, (job_id,) = add_pipeline(dashboard, repository.id, jobs={"unit": "pending"})
    tab = dashboard.page()
    tab.goto(f"{dashboard.url}/jobs/{job_id}")
    assert tab.locator("#job-status [data-status=pending]").count() == 1
    tab.evaluate("window.__notReloaded = true")
    with dashboard.transaction() as session:
        assert claim_job(session=session, job_id=job_id, worker="worker-7@host")
    tab.wait_for_selector("#job-status [data-status=running]", timeout=15_000)
    assert "worker-7@host" in tab.locator("#job-meta").inner_text()
    assert tab.evaluate("window.__notReloaded") is True


HIDE = (
    "Object.defineProperty(document, 'hidden', {value: %s, configurable: true});"
    "document.dispatchEvent(new Event('visibilitychange'))"
)


def test_a_hidden_tab_lets_go_of_its_stream_and_resumes_after_its_last_line(
    dashboard: Dashboard,
) -> None:
    repository = register(dashboard)
    _, (job_id,) = add_pipeline(dashboard, repository.id, jobs={"unit": "running"})
    write_log(dashboard, job_id, ["one", "two"])
    tab = dashboard.page()
    tab.goto(f"{dashboard.url}/jobs/{job_id}")
    tab.wait_for_selector("#L2")
    tab.evaluate(HIDE % "true")
    write_log(dashboard, job_id, ["three while hidden"])
    tab.wait_for_timeout(1500)  # several polls of an open stream: the line would have come
    assert tab.locator("#L3").count() == 0
    tab.evaluate(HIDE % "false")
    tab.wait_for_selector("#L3", timeout=15_000)
    write_log(dashboard, job_id, ["four"])
    tab.wait_for_selector("#L4", timeout=15_000)
    assert [t.inner_text() for t in tab.locator("#log .line .text").all()] == [
        "one",
        "two",
        "three while hidden",
        "four",
    ]


def test_retry_from_the_job_page_opens_the_new_attempt(dashboard: Dashboard) -> None:
    repository = register(dashboard)
    _, jobs = add_planned_pipeline(dashboard, repository.id, "unit:\n  script: [make test]\n")
    set_job(dashboard, jobs["unit"], "failed", exit_code=1)
    tab = dashboard.page()
    tab.goto(f"{dashboard.url}/jobs/{jobs['unit']}")
    tab.click("#signin-link")
    tab.fill("input[name=token]", ADMIN)
    tab.click("form.signin button")
    tab.click(".title .actions button:has-text('Retry')")
    tab.wait_for_url(lambda url: not url.endswith(f"/jobs/{jobs['unit']}"))
    assert tab.url.endswith(f"/jobs/{jobs['unit'] + 1}")
    assert tab.locator("#job-meta dd").first.inner_text() == "2"
    assert tab.locator("#job-status [data-status]").get_attribute("data-status") in (
        "created",
        "pending",
    )
    assert len(dashboard.dispatcher.sent) == 1  # sent to a worker once
