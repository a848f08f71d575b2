"""ONBUILD: a base's triggers run at the start of the child build; the child keeps only its own."""

from __future__ import annotations

import pytest

from runner.errors import DockerfileError
from runner.images.reference import Reference
from tests.runner.build.conftest import BuildHelper

BASE = "busybox:latest"


def test_image_triggers_run_in_the_child_and_are_not_inherited(
    builds: BuildHelper, busybox_image: str
) -> None:
    parent = f"""
        FROM {BASE}
        ONBUILD ARG FLAVOUR=plain
        ONBUILD COPY app.txt /app/
        ONBUILD RUN echo "flavour=$FLAVOUR" > /app/flavour && cat /app/app.txt >> /app/flavour
        ONBUILD LABEL built.from=parent
        ONBUILD RUN <<EOF
        echo heredoc-body > /app/heredoc
        EOF
        """
    ctx = builds.context(parent, {"app.txt": "parent-context\n"})
    base = builds.build(ctx, tags=("onbuild-parent:1",))
    triggers = base.image.config["config"]["OnBuild"]
    assert triggers[-1] == "RUN <<EOF\necho heredoc-body > /app/heredoc\nEOF"
    # the parent runs none of its own triggers
    code, _ = builds.run(base.image, "test", "-e", "/app")
    assert code != 0

    child = """
        FROM onbuild-parent:1
        ONBUILD RUN echo grandchild
        RUN cat /app/flavour /app/heredoc > /app/all
        """
    ctx2 = builds.root / "child"
    ctx2.mkdir()
    (ctx2 / "Dockerfile").write_text("\n".join(line.strip() for line in child.splitlines()))
    (ctx2 / "app.txt").write_text("child-context\n")
    result = builds.build(ctx2, tags=("onbuild-child:1",), build_args={"FLAVOUR": "given"})
    code, out = builds.run(result.image, "cat", "/app/all")
    assert code == 0
    assert out.splitlines() == ["flavour=given", "child-context", "heredoc-body"]
    config = result.image.config["config"]
    assert config["Labels"]["built.from"] == "parent"
    assert config["OnBuild"] == ["RUN echo grandchild"]


def test_stage_triggers_run_in_a_stage_built_from_it(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE} AS base
        ONBUILD RUN echo from-trigger > /trigger
        FROM base
        RUN cat /trigger > /seen
        """
    result = builds.build(builds.context(dockerfile))
    code, out = builds.run(result.image, "cat", "/seen")
    assert (code, out) == (0, "from-trigger")
    assert not result.image.config["config"].get("OnBuild")


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("FROM busybox", "not an instruction ONBUILD may run"),
        ("RUN echo a\nRUN echo b", "not an instruction ONBUILD may run"),
        ("NOPE x", "unknown instruction"),
        ("COPY missing.txt /x", "not found"),
    ],
)
def test_bad_triggers_of_an_image_are_clear_errors(
    builds: BuildHelper, busybox_image: str, trigger: str, message: str
) -> None:
    # an image's author controls its triggers' text: kapal parses it and reports, never crashes
    base = builds.build(builds.context(f"FROM {BASE}\nLABEL a=b\n"))
    config = dict(base.image.config)
    config["config"] = {**config["config"], "OnBuild": [trigger]}
    builds.store.commit(config, list(base.image.layers), [Reference.parse("onbuild-bad:1")])
    ctx = builds.root / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM onbuild-bad:1\nRUN true\n")
    with pytest.raises(DockerfileError, match=message) as caught:
        builds.build(ctx)
    assert "Dockerfile:1:" in str(caught.value) and "ONBUILD trigger of onbuild-bad:1" in str(
        caught.value
    )
