"""Build memos: `kapal build` with nothing changed answers from its memo, and nothing stale.

Each test runs the real command (`build_main`, in this process: the builder and runc for real,
only the process start-up is saved) against the session's image store, and checks what a person
sees: the digest printed, the image's content, the tags. Whether the memo answered is told by
whether the builder ran (`runner.build.cli._build`, counted; it is the only way to the builder).
Files are written a little more than `RACY_NS` before a build, as a person's edits are: a
snapshot taken right after a change is too fresh to record (see `test_a_fresh_change_is_never_
recorded`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.build import cli as build_cli
from runner.build import memo
from runner.build.builder import BuildResult
from runner.images import ImageStore
from runner.runtime.backend import ContainerSpec, ImageDefaults
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.oneshot import run_container

DOCKERFILE = "FROM {base}\nARG V=1\nCOPY . /app/\nRUN echo v=$V > /app/v.txt\n"


def settle() -> None:
    """Wait until the files just written are older than a snapshot's racy window."""
    time.sleep(memo.RACY_NS / 1e9 + 0.05)


class Kapal:
    """`kapal build` in this process, counting how often the builder itself ran."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        data_dir: Path,
    ) -> None:
        self.capsys = capsys
        self.builder_runs = 0
        monkeypatch.setenv("KAPAL_DATA_DIR", str(data_dir))
        real: Callable[..., tuple[BuildResult, list[tuple[int, int, str]]]] = build_cli._build

        def counted(*args: object) -> tuple[BuildResult, list[tuple[int, int, str]]]:
            self.builder_runs += 1
            return real(*args)

        monkeypatch.setattr(build_cli, "_build", counted)

    def build(self, *args: str) -> tuple[str, str]:
        """Run `kapal build ARGS`; return the digest it printed and all of stdout."""
        self.capsys.readouterr()
        code = build_cli.build_main(["--network", "none", *args])
        out, err = self.capsys.readouterr()
        assert code == 0, err
        found = re.search(r"^built (sha256:[0-9a-f]{64}) ", out, re.M)
        assert found is not None, out
        return found.group(1), out


@pytest.fixture
def kapal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kapal_data_dir: Path
) -> Kapal:
    return Kapal(monkeypatch, capsys, kapal_data_dir)


@pytest.fixture
def context(tmp_path: Path, busybox_image: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=busybox_image))
    (ctx / "a.txt").write_text("aaaa\n")
    (ctx / "sub").mkdir()
    (ctx / "sub" / "b.txt").write_text("b\n")
    settle()
    return ctx


def file_in_image(store: ImageStore, digest: str, path: str, backend: EmbeddedBackend) -> str:
    image = store.get(digest)
    out: list[str] = []
    spec = ContainerSpec(
        layers=tuple(store.unpacked_layers(image)),
        image=ImageDefaults.from_image_config(image.config),
        command=("cat", path),
    )
    status = run_container(backend, spec, on_line=lambda line: out.append(line.text))
    assert status.exit_code == 0, out
    return "\n".join(out)


def memo_of(data_dir: Path, context: Path) -> dict[str, Any] | None:
    """The memo recorded for `context` (its Dockerfile), if any."""
    for path in (data_dir / "build-cache" / "memo").glob("*.json"):
        recorded = json.loads(path.read_text())
        if recorded["inputs"]["context"] == str(context.resolve()):
            return dict(recorded)
    return None


def test_an_unchanged_build_is_answered_by_its_memo(kapal: Kapal, context: Path) -> None:
    first, _ = kapal.build("-t", "memo-test:same", str(context))
    assert kapal.builder_runs == 1
    second, out = kapal.build("-t", "memo-test:same", str(context))
    assert kapal.builder_runs == 1  # answered without the builder
    assert second == first
    # the steps as a fully cached build prints them
    assert out.count("CACHED") == 2
    assert "[1/4] FROM busybox:latest" in out
    assert "(0 layer steps run, 2 cached)" in out
    assert "tagged memo-test:same" in out
    third, _ = kapal.build(str(context))  # no tag: still the same build
    assert (third, kapal.builder_runs) == (first, 1)


def test_changed_content_with_the_old_size_and_mtime_misses(
    kapal: Kapal,
    context: Path,
    kapal_data_dir: Path,
    embedded_backend: EmbeddedBackend,
) -> None:
    first, _ = kapal.build(str(context))
    target = context / "a.txt"
    before = target.stat()
    target.write_text("bbbb\n")  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back
    settle()
    second, _ = kapal.build(str(context))
    assert kapal.builder_runs == 2
    assert second != first
    store = ImageStore(kapal_data_dir / "images")
    assert file_in_image(store, second, "/app/a.txt", embedded_backend) == "bbbb"


@pytest.mark.parametrize(
    "change",
    [
        "add a file",
        "remove a file",
        "chmod a file",
        "retarget a symlink",
        "add a .dockerignore",
        "edit the Dockerfile",
    ],
)
def test_a_change_in_the_context_misses(kapal: Kapal, context: Path, change: str) -> None:
    (context / "link").symlink_to("a.txt")
    settle()
    first, _ = kapal.build(str(context))
    kapal.build(str(context))
    assert kapal.builder_runs == 1
    if change == "add a file":
        (context / "sub" / "new.txt").write_text("new\n")
    elif change == "remove a file":
        (context / "sub" / "b.txt").unlink()
    elif change == "chmod a file":
        (context / "a.txt").chmod(0o600)
    elif change == "retarget a symlink":
        (context / "link").unlink()
        (context / "link").symlink_to("sub/b.txt")
    elif change == "add a .dockerignore":
        (context / ".dockerignore").write_text("sub\n")
    else:
        with (context / "Dockerfile").open("a") as dockerfile:
            dockerfile.write("LABEL changed=yes\n")
    settle()
    second, _ = kapal.build(str(context))
    assert kapal.builder_runs == 2
    assert second != first


def test_a_build_arg_or_epoch_change_misses(
    kapal: Kapal, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, _ = kapal.build(str(context))
    with_arg, _ = kapal.build("--build-arg", "V=2", str(context))
    assert kapal.builder_runs == 2
    assert with_arg != plain
    assert kapal.build("--build-arg", "V=2", str(context))[0] == with_arg
    assert kapal.builder_runs == 2  # the same arguments again: the memo answers
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    dated, _ = kapal.build("--build-arg", "V=2", str(context))
    assert kapal.builder_runs == 3
    assert dated != with_arg


def test_a_dockerfile_outside_the_context_is_watched(
    kapal: Kapal, context: Path, tmp_path: Path, busybox_image: str
) -> None:
    outside = tmp_path / "Dockerfile.release"
    outside.write_text(DOCKERFILE.format(base=busybox_image))
    settle()
    first, _ = kapal.build("-f", str(outside), str(context))
    kapal.build("-f", str(outside), str(context))
    assert kapal.builder_runs == 1
    outside.write_text(DOCKERFILE.format(base=busybox_image) + "ENV RELEASE=1\n")
    second, _ = kapal.build("-f", str(outside), str(context))  # at once: no settle needed
    assert kapal.builder_runs == 2
    assert second != first


def test_a_base_image_tag_moved_elsewhere_misses(
    kapal: Kapal, context: Path, tmp_path: Path, kapal_data_dir: Path, busybox_image: str
) -> None:
    store = ImageStore(kapal_data_dir / "images")
    base = f"memo-base-{tmp_path.name}:1"
    store.tag(store.resolve(busybox_image), base)
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    settle()
    first, _ = kapal.build(str(context))
    kapal.build(str(context))
    assert kapal.builder_runs == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "Dockerfile").write_text(f"FROM {busybox_image}\nENV OTHER=1\n")
    other_digest, _ = kapal.build(str(other))
    store.tag(other_digest, base)  # the base name now means another image
    second, _ = kapal.build(str(context))
    assert kapal.builder_runs == 3
    assert second != first


def test_a_requested_tag_pointing_elsewhere_is_set_again(
    kapal: Kapal, context: Path, kapal_data_dir: Path, busybox_image: str
) -> None:
    store = ImageStore(kapal_data_dir / "images")
    first, _ = kapal.build("-t", "memo-test:moved", str(context))
    store.tag(store.resolve(busybox_image), "memo-test:moved")
    again, out = kapal.build("-t", "memo-test:moved", str(context))
    assert kapal.builder_runs == 2  # the memo cannot tag: the builder ran and did
    assert again == first
    assert store.resolve("memo-test:moved").digest == first
    assert "tagged memo-test:moved" in out


def test_a_pruned_cache_entry_makes_the_build_run_again(
    kapal: Kapal, context: Path, kapal_data_dir: Path
) -> None:
    kapal.build(str(context))
    recorded = memo_of(kapal_data_dir, context)
    assert recorded is not None
    run_key = recorded["result"]["cache"][-1][0]  # the RUN step's entry
    (kapal_data_dir / "build-cache" / "keys" / f"{run_key}.json").unlink()
    _, out = kapal.build(str(context))
    assert kapal.builder_runs == 2
    assert "(1 layer steps run, 1 cached)" in out


def test_no_cache_never_asks_the_memo(kapal: Kapal, context: Path) -> None:
    kapal.build(str(context))
    _, out = kapal.build("--no-cache", str(context))
    assert kapal.builder_runs == 2
    assert "CACHED" not in out


def test_a_fresh_change_is_never_recorded(
    kapal: Kapal, context: Path, kapal_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written just now: the same clock tick could hold another change with the same ctime, so
    # the build runs but leaves no memo (the window is widened here so that a slow machine
    # cannot let the build start after it).
    kapal.build(str(context))
    assert memo_of(kapal_data_dir, context) is not None
    with monkeypatch.context() as patch:
        patch.setattr(memo, "RACY_NS", 60 * 10**9)
        (context / "a.txt").write_text("fresh\n")
        kapal.build(str(context))
    assert kapal.builder_runs == 2
    assert memo_of(kapal_data_dir, context) is None  # the old one is gone too
    settle()
    kapal.build(str(context))  # now older than the window: recorded
    assert kapal.builder_runs == 3
    assert memo_of(kapal_data_dir, context) is not None


def test_snapshot_reads_nothing_it_would_follow(tmp_path: Path) -> None:
    # lstat only: a symlink to a host file or a fifo in the context is metadata, never opened
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(ctx / "fifo")
    snap = memo.snapshot(
        cache_root=tmp_path / "cache",
        images_root=tmp_path / "images",
        context=ctx,
        dockerfile=ctx / "Dockerfile",
        settings={},
    )
    assert snap is not None
    entries = {entry[0]: entry for entry in snap.inputs["tree"]}
    assert entries["passwd"][-1] == "/etc/passwd"
    assert set(entries) == {"", "Dockerfile", "passwd", "fifo"}
    assert snap.racy  # all of it written just now
    # a Dockerfile that is a fifo is not read (it would block): no memo for such a build
    os.mkfifo(tmp_path / "Dockerfile.fifo")
    assert (
        memo.snapshot(
            cache_root=tmp_path / "cache",
            images_root=tmp_path / "images",
            context=ctx,
            dockerfile=tmp_path / "Dockerfile.fifo",
            settings={},
        )
        is None
    )


def test_a_build_missing_a_required_secret_still_fails(
    kapal: Kapal,
    tmp_path: Path,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Secret values are in no cache key, but which secrets were given is an input: a step that
    # requires one fails without it, memo or not.
    ctx = tmp_path / "secret-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "RUN --mount=type=secret,id=tok,required=true test -s /run/secrets/tok\n"
    )
    settle()
    monkeypatch.setenv("TOK", "s3cret")
    first, _ = kapal.build("--secret", "id=tok,env=TOK", str(ctx))
    monkeypatch.setenv("TOK", "another")  # a new value: the step's cache key is the same
    again, _ = kapal.build("--secret", "id=tok,env=TOK", str(ctx))
    assert (again, kapal.builder_runs) == (first, 1)
    capsys.readouterr()
    assert build_cli.build_main(["--network", "none", str(ctx)]) == 1
    assert "required but no secret 'tok' was given" in capsys.readouterr().err
    assert kapal.builder_runs == 2


def test_after_a_no_cache_build_the_memo_answers_its_image(kapal: Kapal, context: Path) -> None:
    # --no-cache builds replace the cache's entries; the memo follows, as the builder would.
    (context / "Dockerfile").write_text(
        (context / "Dockerfile").read_text() + "RUN head -c 16 /dev/urandom > /random\n"
    )
    settle()
    first, _ = kapal.build(str(context))
    fresh, _ = kapal.build("--no-cache", str(context))
    assert fresh != first  # /random differs
    again, _ = kapal.build(str(context))
    assert kapal.builder_runs == 2
    assert again == fresh
