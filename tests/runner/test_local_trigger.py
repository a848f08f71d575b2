"""The trigger of a local `kapal run`: the working tree's commit, read from a real repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.context import TriggerContext
from runner.cli import trigger_for

GIT_ID = ["-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com"]


def git(directory: Path, *args: str) -> str:
    """Run git in `directory`; its output, stripped."""
    done = subprocess.run(
        ["git", *GIT_ID, *args], cwd=directory, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def local_trigger(project: Path) -> TriggerContext:
    """The trigger `kapal run` makes for `project`."""
    return trigger_for(project, branch=None, source="push", variables=[], pipeline_id=1)


def test_the_commit_fields_are_the_ones_git_shows_one_by_one(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "topic")
    (tmp_path / "f").write_text("x\n")
    git(tmp_path, "add", "f")
    message = "Subject line\n\nA body with\x01odd text, % signs and\n\ttabs\n"
    git(tmp_path, "commit", "-q", "-m", message)
    context = local_trigger(tmp_path)
    assert context.commit_sha == git(tmp_path, "rev-parse", "HEAD")
    assert context.commit_message == git(tmp_path, "log", "-1", "--format=%B")
    assert context.commit_message.startswith("Subject line\n\nA body with")
    assert context.commit_timestamp == git(tmp_path, "log", "-1", "--format=%cI")
    assert context.commit_author == "Ada Lovelace <ada@example.com>"
    assert context.branch == "topic"


def test_a_repository_without_commits_gets_the_defaults(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "topic")
    context = local_trigger(tmp_path)
    assert context.commit_sha == "0" * 40
    assert (context.commit_message, context.commit_timestamp, context.commit_author) == ("", "", "")
    assert context.branch == "main"


def test_a_plain_directory_gets_the_defaults(tmp_path: Path) -> None:
    context = local_trigger(tmp_path)
    assert context.commit_sha == "0" * 40
    assert (context.commit_message, context.commit_timestamp, context.commit_author) == ("", "", "")
    assert context.branch == "main"
