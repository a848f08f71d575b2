"""`artifacts: reports:` at run time over the fake backend: every report kept whatever the
result, Cobertura coverage recorded, dotenv variables passed to the jobs that get artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.plan import ArtifactsSpec, Need, ReportSpec, Variable
from runner.engine.recorder import CoverageReport, JobStatus
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of
from tests.runner.test_reports import COBERTURA, LAUGHS


def named(name: str) -> Any:
    """Match the main container of job `name`."""
    return lambda spec: spec.name == name


def writes(files: dict[str, bytes], exit_code: int = 0) -> Any:
    """A behaviour writing `files` into the workspace, then exiting with `exit_code`."""

    def behave(spec: Any) -> FakeBehaviour:
        for rel, data in files.items():
            path = workspace_of(spec) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return FakeBehaviour(exit_code=exit_code)

    return behave


def env_of(harness: Harness, name: str) -> dict[str, str]:
    """The environment job `name`'s script container was started with."""
    (spec,) = [s for s in harness.backend.started if s.name == name]
    return dict(spec.env)


def reports(*entries: tuple[str, str]) -> ArtifactsSpec:
    return ArtifactsSpec(reports=tuple(ReportSpec(kind, (path,)) for kind, path in entries))


def test_every_report_is_kept_whatever_the_result(harness: Harness) -> None:
    harness.backend.script(
        named("lint"),
        writes({"gl-code-quality.json": b"[]", "sast.json": b"{}", "dist/app": b"x"}, 1),
    )
    artifacts = ArtifactsSpec(
        paths=("dist/",),
        reports=(
            ReportSpec("codequality", ("gl-code-quality.json",)),
            ReportSpec("sast", ("*.json",)),
        ),
    )
    result = harness.run(plan(job("lint", artifacts=artifacts)))
    assert result.jobs["lint"].status == JobStatus.FAILED
    # `paths` follow `when: on_success`; the reports are kept all the same
    assert harness.artifacts.files(1, "lint") == ["gl-code-quality.json", "sast.json"]


def test_cobertura_coverage_is_recorded(harness: Harness) -> None:
    harness.backend.script(named("unit"), writes({"out/coverage.xml": COBERTURA}))
    artifacts = ArtifactsSpec(reports=(ReportSpec("coverage_report", ("out/*.xml",), "cobertura"),))
    harness.run(plan(job("unit", artifacts=artifacts)))
    (coverage,) = harness.recorder.of_type(CoverageReport)
    assert coverage == CoverageReport(
        job="unit", percent=83.5, files=("out/coverage.xml",), lines_covered=167, lines_valid=200
    )
    assert "kapal: coverage 83.50% (out/coverage.xml)" in harness.recorder.log("unit")
    assert harness.artifacts.files(1, "unit") == ["out/coverage.xml"]


def test_coverage_of_several_files_is_weighted_by_their_lines(harness: Harness) -> None:
    small = b'<coverage line-rate="0" lines-covered="0" lines-valid="50"/>'
    harness.backend.script(named("unit"), writes({"a.xml": COBERTURA, "b.xml": small}))
    artifacts = ArtifactsSpec(reports=(ReportSpec("coverage_report", ("*.xml",), "cobertura"),))
    harness.run(plan(job("unit", artifacts=artifacts)))
    (coverage,) = harness.recorder.of_type(CoverageReport)
    assert coverage.percent == 66.8 and coverage.lines_valid == 250


def test_a_coverage_report_with_entities_is_not_read(harness: Harness) -> None:
    harness.backend.script(named("unit"), writes({"coverage.xml": LAUGHS}))
    artifacts = ArtifactsSpec(
        reports=(ReportSpec("coverage_report", ("coverage.xml",), "cobertura"),)
    )
    result = harness.run(plan(job("unit", artifacts=artifacts)))
    assert result.jobs["unit"].status == JobStatus.SUCCESS
    assert harness.recorder.of_type(CoverageReport) == []
    assert any("declares entities" in line for line in harness.recorder.log("unit"))


def test_a_coverage_report_linking_to_a_host_file_reads_the_workspace(
    harness: Harness, tmp_path: Path
) -> None:
    host = tmp_path / "host-coverage.xml"
    host.write_bytes(COBERTURA)

    def link(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "coverage.xml").symlink_to(host)
        return FakeBehaviour()

    harness.backend.script(named("unit"), link)
    artifacts = ArtifactsSpec(
        reports=(ReportSpec("coverage_report", ("coverage.xml",), "cobertura"),)
    )
    harness.run(plan(job("unit", artifacts=artifacts)))
    assert harness.recorder.of_type(CoverageReport) == []  # the host's file was never read
    assert any("cannot read the coverage report" in line for line in harness.recorder.log("unit"))


def test_jacoco_reports_are_kept_and_said_unread(harness: Harness) -> None:
    harness.backend.script(named("unit"), writes({"jacoco.xml": b"<report/>"}))
    artifacts = ArtifactsSpec(reports=(ReportSpec("coverage_report", ("jacoco.xml",), "jacoco"),))
    harness.run(plan(job("unit", artifacts=artifacts)))
    assert harness.artifacts.files(1, "unit") == ["jacoco.xml"]
    assert any("jacoco coverage reports are kept" in line for line in harness.recorder.log("unit"))


# -- dotenv ----------------------------------------------------------------------------------


def test_dotenv_variables_reach_later_jobs(harness: Harness) -> None:
    harness.backend.script(
        named("build"), writes({"build.env": b"VERSION=1.2.3\nGREETING=from dotenv\n"})
    )
    the_plan = plan(
        job("build", stage="build", artifacts=reports(("dotenv", "build.env"))),
        job(
            "test",
            variables=(
                Variable("GREETING", "from the file", "job"),
                Variable("TRIGGERED", "kept", "trigger"),
            ),
        ),
        job("needs-it", needs=("build",)),
        job("no-artifacts", needs=(Need(job="build", artifacts=False),)),
        job("no-dependencies", dependencies=()),
    )
    result = harness.run(the_plan)
    assert result.passed
    env = env_of(harness, "test")
    assert env["VERSION"] == "1.2.3"
    assert env["GREETING"] == "from dotenv"  # over the file's job variables, as in GitLab
    assert env_of(harness, "needs-it")["VERSION"] == "1.2.3"
    assert "VERSION" not in env_of(harness, "no-artifacts")
    assert "VERSION" not in env_of(harness, "no-dependencies")
    assert "kapal: variables from dotenv reports: GREETING, VERSION" in harness.recorder.log("test")


def test_trigger_variables_and_secrets_win_over_dotenv(harness: Harness) -> None:
    harness.backend.script(named("build"), writes({"build.env": b"MODE=dotenv\nTOKEN=leaked\n"}))
    the_plan = plan(
        job("build", stage="build", artifacts=reports(("dotenv", "build.env"))),
        job("test", variables=(Variable("MODE", "trigger", "trigger"),)),
    )
    harness.run(the_plan, secrets={"TOKEN": "the-real-secret-value"})
    env = env_of(harness, "test")
    assert env["MODE"] == "trigger"
    assert env["TOKEN"] == "the-real-secret-value"


def test_a_dotenv_report_gitlab_refuses_fails_the_job(harness: Harness) -> None:
    harness.backend.script(named("build"), writes({"build.env": b"MY-VAR=1\n"}))
    the_plan = plan(
        job("build", stage="build", artifacts=reports(("dotenv", "build.env"))),
        job("test"),
    )
    result = harness.run(the_plan)
    build = result.jobs["build"]
    assert build.status == JobStatus.FAILED
    assert build.reason == (
        "the dotenv report build.env line 1: 'MY-VAR' is not a variable name (ASCII letters, "
        "digits and _ only)"
    )
    assert result.jobs["test"].status == JobStatus.SKIPPED


def test_a_dotenv_report_linking_out_of_the_workspace_reads_nothing_of_the_host(
    harness: Harness, tmp_path: Path
) -> None:
    host = tmp_path / "host.env"
    host.write_text("HOST_SECRET=from-the-host\n")

    def link(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "build.env").symlink_to(host)
        return FakeBehaviour()

    harness.backend.script(named("build"), link)
    the_plan = plan(
        job("build", stage="build", artifacts=reports(("dotenv", "build.env"))),
        job("test", allow_failure=True),
    )
    result = harness.run(the_plan)
    assert result.jobs["build"].status == JobStatus.FAILED
    assert "dotenv report build.env" in result.jobs["build"].reason
    assert "from-the-host" not in repr(harness.recorder.events)


def test_a_stored_dotenv_report_linking_out_is_not_followed(
    harness: Harness, tmp_path: Path
) -> None:
    """An earlier job's stored artifacts hold a link to a host file: the later job reads the
    store's own path, never the host's file."""
    host = tmp_path / "host.env"
    host.write_text("HOST_SECRET=from-the-host\n")
    stored = harness.artifacts.job_dir(1, "build")
    stored.mkdir(parents=True)
    (stored / "build.env").symlink_to(host)
    build = job("build", stage="build", artifacts=reports(("dotenv", "build.env")))
    # the build job writes nothing, so stores nothing: the store keeps the link made above
    harness.run(plan(build, job("test")))
    assert (stored / "build.env").is_symlink()
    assert "HOST_SECRET" not in env_of(harness, "test")
    assert any(
        line.startswith("kapal: dotenv report build.env of build not used")
        for line in harness.recorder.log("test")
    )
    assert "from-the-host" not in repr(harness.recorder.events)
