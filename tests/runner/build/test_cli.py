"""`kapal build` as a user runs it: step lines, CACHED, streamed output, digest, exit codes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

KAPAL = str(Path(__file__).resolve().parents[3] / ".venv" / "bin" / "kapal")


def _kapal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAPAL, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox:latest\nCOPY app.txt /app.txt\nRUN echo streamed-output && cat /app.txt\n"
    )
    return ctx


def test_build_prints_steps_output_cached_and_digest(
    kapal_env: dict[str, str], busybox_image: str, context: Path
) -> None:
    first = _kapal(kapal_env, "build", "-t", "cli-test:1", "--no-cache", str(context))
    assert first.returncode == 0, first.stderr
    assert "[1/3] FROM busybox:latest" in first.stdout
    assert "[3/3] RUN echo streamed-output && cat /app.txt" in first.stdout
    assert "  | streamed-output" in first.stdout
    digest = re.search(r"built (sha256:[0-9a-f]{64})", first.stdout)
    assert digest is not None
    assert "tagged cli-test:1" in first.stdout
    second = _kapal(kapal_env, "build", "-t", "cli-test:1", str(context))
    assert second.returncode == 0
    assert second.stdout.count("CACHED") == 2
    assert "  | streamed-output" not in second.stdout
    assert digest.group(1) in second.stdout


def test_failed_step_exits_1_with_step_code_and_last_lines(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nRUN echo about to fail; exit 9\n")
    result = _kapal(kapal_env, "build", str(tmp_path))
    assert result.returncode == 1
    assert "Dockerfile:2: RUN echo about to fail; exit 9: exited with code 9" in result.stderr
    assert "  about to fail" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_dockerfile_exits_1_with_file_line(kapal_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nCOPY --bogus a b\n")
    result = _kapal(kapal_env, "build", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path}/Dockerfile:2: unknown flag --bogus for COPY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--network", "bridge", "."], "'bridge': use default, host or none"),
        (["build", "--build-arg", "=x", "."], "'=x': write NAME=VALUE"),
        (["build", "--push", "."], "--push needs at least one -t NAME:TAG"),
        (["build", "--platform", "linux/arm64", "."], "kapal builds linux/amd64 images only"),
        (["build"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(kapal_env: dict[str, str], args: list[str], message: str) -> None:
    result = _kapal(kapal_env, *args)
    assert result.returncode == 2
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # the error box wraps lines
    assert message in text
    assert "Traceback" not in result.stderr


def test_unknown_target_says_how_to_name_a_stage(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\n")
    result = _kapal(
        kapal_env, "build", "--target", "app", "--platform", "linux/amd64", str(tmp_path)
    )
    assert result.returncode == 1
    assert "no stage named 'app' for --target (no stage has a name; write FROM IMAGE AS NAME)" in (
        result.stderr
    )


def test_missing_context_and_bad_tag_exit_1(kapal_env: dict[str, str], tmp_path: Path) -> None:
    result = _kapal(kapal_env, "build", str(tmp_path / "nope"))
    assert result.returncode == 1 and "is not a directory" in result.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\n")
    bad = _kapal(kapal_env, "build", "-t", "Bad Tag!", str(tmp_path))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_push_sends_the_image_to_a_registry(
    kapal_env: dict[str, str], busybox_image: str, context: Path, registry: str
) -> None:
    ref = f"{registry}/built/app:1"
    result = _kapal(kapal_env, "build", "-t", ref, "--push", "--insecure", str(context))
    assert result.returncode == 0, result.stderr
    built = re.search(r"built (sha256:[0-9a-f]{64})", result.stdout)
    assert built is not None and f"pushed {ref} {built.group(1)}" in result.stdout
    response = httpx.get(
        f"http://{registry}/v2/built/app/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == built.group(1)


def test_secrets_from_a_file_and_the_environment(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:latest\n"
        "RUN --mount=type=secret,id=file --mount=type=secret,id=TOKEN,env=T "
        'cat /run/secrets/file > /out && echo "$T" >> /out && cat /out\n'
    )
    secret = tmp_path / "secret.txt"
    secret.write_text("from-a-file\n")
    env = {**kapal_env, "TOKEN": "from-the-env"}
    built = _kapal(
        env, "build", "--secret", f"id=file,src={secret}", "--secret", "id=TOKEN", str(tmp_path)
    )
    assert built.returncode == 0, built.stderr
    assert "  | from-a-file" in built.stdout and "  | from-the-env" in built.stdout
    for flag, message in [
        ("id=x,src=/nonexistent/s", "cannot read /nonexistent/s"),
        ("src=/etc/hostname", "id=NAME is missing"),
        ("id=UNSET_VARIABLE_X", "the variable UNSET_VARIABLE_X is not set"),
        ("nonsense", "write id=NAME,src=FILE"),
    ]:
        bad = _kapal(kapal_env, "build", "--secret", flag, str(tmp_path))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
