"""The engine over `FakeBackend`: secrets, artifacts, caches, JUnit, services, build jobs."""

from __future__ import annotations

import threading
import time
from typing import Any

from pipeline.plan import (
    ArtifactsSpec,
    BuildSpec,
    CacheSpec,
    ImageSpec,
    Need,
    ServiceSpec,
    Variable,
)
from runner.engine.recorder import ArtifactStored, JobStatus, TestReport
from runner.errors import BuildError
from runner.job_images import BuildLogReporter
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of

SECRET = "s3cr3t-t0ken-value"

JUNIT = """<?xml version="1.0"?>
<testsuite name="app" tests="2" failures="1">
  <testcase classname="app.tests.Greeting" name="test_hello" time="0.012"/>
  <testcase classname="app.tests.Greeting" name="test_bye" time="0.5">
    <failure message="assert 'bye' == 'hi'">traceback</failure>
  </testcase>
</testsuite>
"""


def named(name: str) -> Any:
    """Match the main container of job `name`."""
    return lambda spec: spec.name == name


def test_secrets_are_masked_whole_and_split_across_lines(harness: Harness) -> None:
    output = (
        ("stdout", f"token is {SECRET}!"),
        ("stdout", "first half s3cr3t-t"),
        ("stdout", "0ken-value second half"),
        ("stderr", f"{SECRET}{SECRET}"),
    )
    harness.backend.script(named("unit"), FakeBehaviour(output=output, exit_code=1))
    result = harness.run(plan(job("unit")), secrets={"API_TOKEN": SECRET})
    (spec,) = [s for s in harness.backend.started if s.name == "unit"]
    assert spec.env["API_TOKEN"] == SECRET  # the job gets the value...
    dump = repr(harness.recorder.events) + repr(result)
    assert SECRET not in dump  # ...the recorder never does
    assert "s3cr3t-t" not in dump and "0ken-value" not in dump
    log = harness.recorder.log("unit")
    assert "token is [MASKED]!" in log
    assert "first half [MASKED]" in log and "[MASKED] second half" in log


def test_artifacts_pass_to_jobs_that_need_them(harness: Harness) -> None:
    def compile_(spec: Any) -> FakeBehaviour:
        ws = workspace_of(spec)
        (ws / "dist").mkdir()
        (ws / "dist" / "app.bin").write_text("binary")
        (ws / "dist" / "debug.log").write_text("noise")
        return FakeBehaviour()

    seen: dict[str, bool] = {}

    def check(name: str) -> Any:
        def behaviour(spec: Any) -> FakeBehaviour:
            ws = workspace_of(spec)
            seen[name] = (ws / "dist" / "app.bin").is_file()
            seen[name + ".log"] = (ws / "dist" / "debug.log").exists()
            return FakeBehaviour()

        return behaviour

    harness.backend.script(named("compile"), compile_)
    harness.backend.script(named("with"), check("with"))
    harness.backend.script(named("without"), check("without"))
    result = harness.run(
        plan(
            job(
                "compile", "build", artifacts=ArtifactsSpec(paths=("dist/",), exclude=("**/*.log",))
            ),
            job("with", needs=("compile",)),
            job("without", needs=(Need(job="compile", artifacts=False),)),
        )
    )
    assert result.passed
    assert seen == {"with": True, "with.log": False, "without": False, "without.log": False}
    (stored,) = harness.recorder.of_type(ArtifactStored)
    assert stored.job == "compile" and stored.files == ("dist/app.bin",)
    assert harness.artifacts.files(1, "compile") == ["dist/app.bin"]


def test_artifacts_when_on_failure(harness: Harness) -> None:
    def fail_with_log(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "crash.txt").write_text("core")
        return FakeBehaviour(exit_code=1)

    harness.backend.script(named("unit"), fail_with_log)
    harness.run(plan(job("unit", artifacts=ArtifactsSpec(paths=("crash.txt",), when="on_failure"))))
    assert harness.artifacts.files(1, "unit") == ["crash.txt"]
    harness.backend.script(named("unit"), FakeBehaviour())
    harness.run(
        plan(job("unit", artifacts=ArtifactsSpec(paths=("crash.txt",), when="on_failure"))),
        pipeline_id=2,
    )
    assert harness.artifacts.files(2, "unit") == []


def test_junit_reports_become_test_cases(harness: Harness) -> None:
    def write_report(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "report.xml").write_text(JUNIT)
        return FakeBehaviour(exit_code=1)

    harness.backend.script(named("unit"), write_report)
    harness.run(plan(job("unit", artifacts=ArtifactsSpec(junit=("report.xml",), when="always"))))
    (report,) = harness.recorder.of_type(TestReport)
    assert [(c.classname, c.name, c.status) for c in report.cases] == [
        ("app.tests.Greeting", "test_hello", "passed"),
        ("app.tests.Greeting", "test_bye", "failed"),
    ]
    assert report.cases[1].message == "assert 'bye' == 'hi'"
    assert report.cases[1].duration == 0.5 and report.failed == 1


def test_test_reports_are_masked_too(harness: Harness) -> None:
    def write_report(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "report.xml").write_text(JUNIT.replace("'bye'", repr(SECRET)))
        return FakeBehaviour(exit_code=1)

    harness.backend.script(named("unit"), write_report)
    harness.run(
        plan(job("unit", artifacts=ArtifactsSpec(junit=("report.xml",)))),
        secrets={"TOKEN": SECRET},
    )
    (report,) = harness.recorder.of_type(TestReport)
    assert report.cases[1].message == "assert '[MASKED]' == 'hi'"
    assert harness.artifacts.files(1, "unit") == ["report.xml"]


def test_caches_flow_between_runs_with_their_policy(harness: Harness) -> None:
    counts: list[str] = []

    def use_cache(spec: Any) -> FakeBehaviour:
        ws = workspace_of(spec)
        deps = ws / ".deps" / "count"
        before = deps.read_text() if deps.exists() else "0"
        counts.append(before)
        deps.parent.mkdir(exist_ok=True)
        deps.write_text(str(int(before) + 1))
        return FakeBehaviour()

    harness.backend.script(named("unit"), use_cache)
    cache = CacheSpec(key="deps-$CI_COMMIT_REF_SLUG", paths=(".deps/",))
    variables = {"CI_COMMIT_REF_SLUG": "main"}
    harness.run(plan(job("unit", caches=(cache,)), variables=variables))
    harness.run(plan(job("unit", caches=(cache,)), variables=variables))
    pull_only = CacheSpec(key="deps-$CI_COMMIT_REF_SLUG", paths=(".deps/",), policy="pull")
    harness.run(plan(job("unit", caches=(pull_only,)), variables=variables))
    harness.run(plan(job("unit", caches=(cache,)), variables=variables))
    assert counts == ["0", "1", "2", "2"]  # the pull-only run saved nothing
    saved = harness.caches.root / harness.caches.dir_name("deps-main")
    assert (saved / ".deps" / "count").read_text() == "3"
    harness.run(plan(job("unit", caches=(cache,)), variables=variables), use_cache=False)
    assert counts[-1] == "0"


def test_services_start_first_and_are_waited_for(harness: Harness) -> None:
    harness.images.add("redis:7", ports=(6379,))
    listening = "   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
    harness.backend.script(
        lambda spec: spec.name.startswith("probe-"),
        FakeBehaviour(stdout="  sl  local_address rem_address   st\n" + listening),
    )
    harness.backend.script(named("service-cache"), FakeBehaviour(delay=60))
    result = harness.run(
        plan(job("unit", services=(ServiceSpec(name="redis:7", aliases=("cache",)),)))
    )
    assert result.passed, result.jobs["unit"].reason
    names = [s.name for s in harness.backend.started]
    assert names.index("service-cache") < names.index("probe-cache") < names.index("unit")
    sandbox_calls = [c for c in harness.backend.calls if c[0] in ("setup", "teardown")]
    assert len(sandbox_calls) == 2
    assert ("stop", "service-cache") in harness.backend.calls


def test_a_service_that_never_listens_fails_the_job_clearly(harness: Harness) -> None:
    harness.images.add("redis:7", ports=(6379,))
    harness.backend.script(named("service-redis"), FakeBehaviour(delay=60))
    result = harness.run(
        plan(job("unit", services=(ServiceSpec(name="redis:7", aliases=("redis",)),))),
        service_timeout=0.5,
    )
    assert result.jobs["unit"].status == JobStatus.FAILED
    assert "service redis:7 did not listen on port(s) 6379" in result.jobs["unit"].reason
    assert not [s for s in harness.backend.started if s.name == "unit"]


def test_build_jobs_make_images_later_jobs_use(harness: Harness) -> None:
    (harness.project / "Dockerfile").write_text("FROM busybox\n")
    result = harness.run(
        plan(
            job(
                "image",
                "build",
                image=None,
                build=BuildSpec(tags=("app:$VERSION",), build_args=(("PY", "$PYV"),)),
            ),
            job("unit", image=ImageSpec(name="app:$VERSION", has_variables=True)),
            variables={"VERSION": "1.2", "PYV": "3.11"},
        )
    )
    assert result.passed, result.jobs
    (request,) = harness.images.builds
    assert request.tags == ("app:1.2",) and dict(request.build_args) == {"PY": "3.11"}
    assert request.dockerfile == request.context / "Dockerfile"
    assert "building" in harness.recorder.log("image")


def test_builds_get_the_nat_network_unless_the_job_says_otherwise(harness: Harness) -> None:
    """RUN steps reach the outside world through NAT, never the host's loopback, by default;
    `network: none` cuts it, `network: host` asks for the host's (where the operator allows)."""
    (harness.project / "Dockerfile").write_text("FROM busybox\n")
    build = BuildSpec(tags=("app:1",))
    harness.run(
        plan(
            job("default", "build", image=None, build=build),
            job("offline", "build", image=None, build=build, network="none"),
            job("hosted", "build", image=None, build=build, network="host"),
        )
    )
    networks = sorted(request.network for request in harness.images.builds)
    assert networks == ["host", "nat", "none"]


def test_builds_take_their_timestamps_from_the_commit(harness: Harness) -> None:
    """SOURCE_DATE_EPOCH defaults to the commit time in pipelines; a job may set its own."""
    (harness.project / "Dockerfile").write_text("FROM busybox\n")
    build = BuildSpec(tags=("app:1",))
    harness.run(
        plan(
            job("from-commit", "build", image=None, build=build),
            job(
                "explicit",
                "build",
                image=None,
                build=build,
                variables=(Variable("SOURCE_DATE_EPOCH", "1234", source="job"),),
            ),
            variables={"CI_COMMIT_TIMESTAMP": "2026-11-28T03:00:00+00:00"},
        )
    )
    epochs = sorted(request.epoch for request in harness.images.builds)
    assert epochs == [1234, 1795834800]


def test_no_cache_runs_build_without_the_layer_cache(harness: Harness) -> None:
    """`kapal run --no-cache` (use_cache=False) asks the builder for no layer cache too."""
    (harness.project / "Dockerfile").write_text("FROM busybox\n")
    the_plan = plan(job("image", "build", image=None, build=BuildSpec(tags=("app:1",))))
    harness.run(the_plan)
    harness.run(the_plan, pipeline_id=2, use_cache=False)
    assert [request.no_cache for request in harness.images.builds] == [False, True]


def test_build_steps_read_as_steps_naming_only_stages_that_need_it() -> None:
    lines: list[str] = []
    reporter = BuildLogReporter(lines.append)
    reporter.step(3, 4, "0", "EXPOSE 6379")  # the first (often only) stage, unnamed
    reporter.step(5, 6, "1", "COPY --from=0 /app /app")  # a later unnamed stage
    reporter.step(1, 6, "builder", "FROM python:3.12 AS builder")
    assert lines == [
        "step 3/4: EXPOSE 6379",
        "[stage 1] step 5/6: COPY --from=0 /app /app",
        "[stage builder] step 1/6: FROM python:3.12 AS builder",
    ]


def test_a_failing_build_fails_its_job_and_skips_the_rest(harness: Harness) -> None:
    harness.images.build_error = BuildError("Dockerfile:3: RUN exited with code 2")
    result = harness.run(
        plan(
            job("image", "build", image=None, build=BuildSpec(tags=("app:1",))),
            job("unit", image=ImageSpec(name="app:1")),
        )
    )
    assert result.jobs["image"].status == JobStatus.FAILED
    assert "RUN exited with code 2" in result.jobs["image"].reason
    assert result.jobs["unit"].status == JobStatus.SKIPPED


def test_job_variables_reach_services(harness: Harness) -> None:
    harness.images.add("postgres:16")
    harness.run(
        plan(
            job(
                "unit",
                services=(
                    ServiceSpec(
                        name="postgres:16",
                        aliases=("db",),
                        variables=(Variable(name="POSTGRES_DB", value="app", source="service"),),
                    ),
                ),
                variables=(Variable(name="SHARED", value="yes", source="job"),),
            )
        )
    )
    (svc,) = [s for s in harness.backend.started if s.name == "service-db"]
    assert svc.env["POSTGRES_DB"] == "app" and svc.env["SHARED"] == "yes"


def test_the_port_probe_runs_in_the_job_image_so_a_service_needs_no_shell(
    harness: Harness,
) -> None:
    harness.images.add("distroless-db:1", ports=(5432,))
    listening = "   0: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
    harness.backend.script(named("service-db"), FakeBehaviour(delay=60))
    harness.backend.script(
        lambda spec: spec.name.startswith("probe-"), FakeBehaviour(stdout=listening)
    )
    result = harness.run(
        plan(job("unit", services=(ServiceSpec(name="distroless-db:1", aliases=("db",)),)))
    )
    assert result.passed, result.jobs["unit"].reason
    (probe,) = [s for s in harness.backend.started if s.name == "probe-db"]
    assert probe.layers == harness.images.resolve("busybox").layers  # the job's image
    assert probe.argv()[:2] == ["sh", "-c"]


def test_a_job_image_without_sh_to_probe_with_is_a_clear_error(harness: Harness) -> None:
    harness.images.add("db:1", ports=(5432,))
    harness.backend.script(named("service-db"), FakeBehaviour(delay=60))
    harness.backend.script(
        lambda spec: spec.name.startswith("probe-"),
        FakeBehaviour(exit_code=127, stderr=""),
    )
    result = harness.run(plan(job("unit", services=(ServiceSpec(name="db:1", aliases=("db",)),))))
    assert result.jobs["unit"].status == JobStatus.FAILED
    reason = result.jobs["unit"].reason
    assert "cannot check the ports of db" in reason and "exited with code 127" in reason
    assert "needs `sh` in the job's image" in reason


def test_a_canceled_job_keeps_its_artifacts_like_a_failed_one(harness: Harness) -> None:
    # GitLab (17.0+, graceful cancel) uploads a running job's artifacts when it is canceled,
    # choosing them as for a failed job: `when: always` and `on_failure`, not `on_success`
    def log_then_hang(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "partial.log").write_text("half done")
        return FakeBehaviour(delay=60)

    for name in ("always", "on-failure", "on-success"):
        harness.backend.script(named(name), log_then_hang)
    engine = harness.engine()

    def cancel_when_all_started() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len({s.name for s in harness.backend.started}) == 3:
                engine.cancel()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=cancel_when_all_started)
    thread.start()
    result = engine.run(
        plan(
            *(
                job(name, artifacts=ArtifactsSpec(paths=("partial.log",), when=when))
                for name, when in (
                    ("always", "always"),
                    ("on-failure", "on_failure"),
                    ("on-success", "on_success"),
                )
            )
        ),
        harness.source,
    )
    thread.join()
    assert {r.status for r in result.jobs.values()} == {JobStatus.CANCELED}
    assert harness.artifacts.files(1, "always") == ["partial.log"]
    assert harness.artifacts.files(1, "on-failure") == ["partial.log"]
    assert harness.artifacts.files(1, "on-success") == []
