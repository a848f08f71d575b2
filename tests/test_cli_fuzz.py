"""Whatever words a person types after an everyday verb, `kapal` answers with output or one
error and an exit status, never a traceback (hypothesis over each verb's own options and
awkward values). The verbs run in-process, as `kapal` runs them, against an empty data dir and
a server address where nothing listens; the verbs that need a registry or containers (image
pull/push/bootstrap, exec, build, run) have tests of their own."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.registry import free_port
from web.cli import main

VALUES = ["", "-", "--", "x", "1", "0", "-1", "99999999999999999999", "a=b", "=", "ü🙂", " ", "/"]
VERBS: dict[tuple[str, ...], list[str]] = {
    ("plan",): ["--branch", "--tag", "--json", "--strict", "--var", "--source", "--input"],
    ("lint",): ["--json", "--strict", "--input"],
    ("image", "ls"): ["-q", "--quiet"],
    ("image", "inspect"): [],
    ("image", "rm"): [],
    ("image", "tag"): [],
    ("image", "gc"): [],
    ("image",): ["ls", "nosuch"],
    ("services",): ["stop", "restart"],
    ("deployments",): [],
    ("pipelines",): ["--repo", "--ref", "--status", "--limit", "--json"],
    ("pipeline",): ["--json"],
    ("logs",): ["-f", "--follow", "--offset"],
    ("cancel",): ["--job"],
    ("retry",): ["--job", "--all"],
    ("play",): [],
    ("repo",): ["add", "list", "--clone-url", "--provider", "--secret", "--json"],
    ("trigger",): ["--ref", "--var", "--json"],
    ("rollback",): ["--to", "--json"],
}


def _run(argv: list[str]) -> tuple[int, str]:
    """`kapal ARGV` in-process: (exit status, what it wrote to stderr)."""
    err = io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    assert isinstance(code, int), f"kapal {argv}: exit {code!r}"
    return code, err.getvalue()


@pytest.fixture(scope="module")
def quiet_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-data")


@pytest.mark.parametrize("verb", list(VERBS), ids=" ".join)
def test_no_words_after_a_verb_make_a_traceback(
    verb: tuple[str, ...], quiet_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.upper().startswith("KAPAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KAPAL_DATA_DIR", str(quiet_env))
    monkeypatch.setenv("KAPAL_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("KAPAL_TOKEN", "fuzz-token")
    monkeypatch.chdir(quiet_env)
    words = st.sampled_from([*VERBS[verb], *VALUES])

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(words, max_size=5))
    def check(rest: list[str]) -> None:
        code, err = _run([*verb, *rest])
        assert "Traceback" not in err, err
        assert 0 <= code <= 3 or code in (125, 130), (code, err)

    check()
