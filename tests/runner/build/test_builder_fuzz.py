"""Fuzzing the builder's front half: any metadata-only Dockerfile builds or fails with a BuildError.

The Dockerfiles start FROM scratch and use instructions that need no container (ENV, ARG, LABEL,
EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD), so the
fake backend (never called) stands in for the runtime. A real image store and cache are used.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runner.build.builder import Builder, BuildOptions
from runner.build.cache import LayerCache
from runner.errors import BuildError
from runner.images import ImageStore
from runner.runtime.fake import FakeBackend

_WORDS = st.sampled_from(
    [
        "A",
        "B=1",
        "a=b c=d",
        '"x y"',
        "$A",
        "${A:-d}",
        "${A:+x}",
        "${",
        "}",
        "'q'",
        "80",
        "80/udp",
        "1-3",
        "/w",
        "rel",
        "..",
        "NONE",
        "CMD",
        '["a"]',
        "[",
        "--interval=1s",
        "--retries=x",
        "\\",
        "=",
    ]
)
_LINES = st.tuples(
    st.sampled_from(
        [
            "ENV",
            "ARG",
            "LABEL",
            "EXPOSE",
            "USER",
            "WORKDIR",
            "VOLUME",
            "STOPSIGNAL",
            "CMD",
            "ENTRYPOINT",
            "SHELL",
            "HEALTHCHECK",
            "ONBUILD",
            "MAINTAINER",
        ]
    ),
    st.lists(_WORDS, min_size=0, max_size=4),
).map(lambda t: f"{t[0]} {' '.join(t[1])}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_LINES, max_size=8), st.dictionaries(st.sampled_from(["A", "B"]), st.text(max_size=5))
)
def test_metadata_only_dockerfiles_build_or_raise_build_error(
    lines: list[str], build_args: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ctx = root / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("ARG A=global\nFROM scratch\n" + "\n".join(lines) + "\n")
        builder = Builder(
            store=ImageStore(root / "store"),
            cache=LayerCache(root / "cache"),
            backend=FakeBackend(),
        )
        try:
            result = builder.build(BuildOptions(context=ctx, build_args=build_args))
        except BuildError as exc:
            assert "Dockerfile:" in str(exc) or "stage" in str(exc)
        else:
            assert result.image.config["rootfs"]["type"] == "layers"


_TRIGGERS = st.tuples(
    st.sampled_from(["ENV", "LABEL", "ARG", "EXPOSE", "CMD", "ONBUILD", "FROM", "WORKDIR", "NOPE"]),
    st.lists(_WORDS, min_size=0, max_size=3),
).map(lambda t: f"ONBUILD {t[0]} {' '.join(t[1])}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TRIGGERS, max_size=5), st.lists(_LINES, max_size=4))
def test_onbuild_triggers_run_in_a_child_stage_or_raise_build_error(
    triggers: list[str], lines: list[str]
) -> None:
    # a line ending in the escape character continues onto the next: `FROM base` would be lost
    assume(not any(line.rstrip().endswith("\\") for line in triggers + lines))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ctx = root / "ctx"
        ctx.mkdir()
        text = "FROM scratch AS base\n" + "\n".join(triggers) + "\nFROM base\n" + "\n".join(lines)
        (ctx / "Dockerfile").write_text(text + "\n")
        builder = Builder(
            store=ImageStore(root / "store"),
            cache=LayerCache(root / "cache"),
            backend=FakeBackend(),
        )
        try:
            result = builder.build(BuildOptions(context=ctx))
        except BuildError as exc:
            assert "Dockerfile:" in str(exc)
        else:
            own = [line for line in lines if line.startswith("ONBUILD")]
            assert len(result.image.config["config"].get("OnBuild") or []) == len(own)
