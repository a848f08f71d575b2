"""The builder end to end on busybox: real runc, real overlayfs, real image store."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from runner.build.builder import BuildResult
from runner.errors import BuildError, BuildStepError, DockerfileError
from tests.runner.build.conftest import BuildHelper, serve_directory

BASE = "busybox:latest"


def test_two_clean_builds_give_the_same_digest(
    builds: BuildHelper, busybox_image: str, tmp_path: Path
) -> None:
    dockerfile = f"""
        FROM {BASE}
        COPY app/ /app/
        RUN echo built > /app/out && mkdir -p /var/x && touch /var/x/y
        ENV A=1
        CMD ["cat", "/app/out"]
        """
    ctx = builds.context(dockerfile, {"app/main.txt": "main\n", "app/sub/b.txt": "b"})
    first = builds.build(ctx, cache_dir=tmp_path / "c1", tags=("repro:1",))
    os.utime(ctx / "app" / "main.txt", (1_234_567_890, 1_234_567_890))  # mtimes do not count
    second = builds.build(ctx, cache_dir=tmp_path / "c2", tags=("repro:2",))
    assert first.run_steps == second.run_steps == 2
    assert first.image.digest == second.image.digest
    assert builds.run(first.image) == (0, "built")


def test_cache_hits_and_a_changed_file_reruns_only_later_steps(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE}
        COPY base.txt /base.txt
        RUN cat /base.txt > /derived1
        COPY app.txt /app.txt
        RUN cat /app.txt > /derived2
        """
    ctx = builds.context(dockerfile, {"base.txt": "base", "app.txt": "one"})
    cold = builds.build(ctx)
    assert (cold.run_steps, cold.cached_steps) == (4, 0)
    warm = builds.build(ctx)
    assert (warm.run_steps, warm.cached_steps) == (0, 4)
    assert warm.image.digest == cold.image.digest
    (ctx / "app.txt").write_text("two")
    changed = builds.build(ctx)
    assert builds.reporter.cached_steps == [
        "COPY base.txt /base.txt",
        "RUN cat /base.txt > /derived1",
    ]
    assert (changed.run_steps, changed.cached_steps) == (2, 2)
    assert builds.run(changed.image, "cat", "/derived2") == (0, "two")
    os.chmod(ctx / "app.txt", 0o755)  # a mode change is a change
    assert builds.build(ctx).run_steps == 2
    assert builds.build(ctx, no_cache=True).cached_steps == 0


def test_file_deleted_in_a_later_run_is_absent(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN mkdir -p /data/dir && echo x > /data/file && echo y > /data/dir/inner
        RUN rm /data/file && rm -r /data/dir && mkdir /data/dir && echo z > /data/dir/new
        """
    result = builds.build(builds.context(dockerfile))
    assert builds.run(result.image, "ls", "-A", "/data", "/data/dir") == (
        0,
        "/data:\ndir\n\n/data/dir:\nnew",
    )
    top = builds.store.blobs.path(result.image.layers[-1].digest)
    with tarfile.open(top) as tar:
        names = tar.getnames()
    assert "data/.wh.file" in names
    assert "data/dir/.wh..wh..opq" in names


def test_built_layers_are_kept_once_shared_by_the_cache_and_the_store(
    builds: BuildHelper, busybox_image: str
) -> None:
    token = uuid.uuid4().hex  # layers no other test builds, so the store has not unpacked them
    dockerfile = f"""
        FROM {BASE}
        RUN mkdir -p /data/dir && echo {token} > /data/dir/old && echo x > /data/gone
        RUN rm /data/gone && rm -r /data/dir && mkdir /data/dir && echo {token} > /data/dir/new
        """
    result = builds.build(builds.context(dockerfile))
    for layer in result.image.layers[-2:]:
        hexdigest = layer.digest.split(":")[1]
        cache_blob = builds.cache_dir / "blobs" / f"{hexdigest}.tar.gz"
        assert builds.store.blobs.path(layer.digest).samefile(cache_blob)
    first = result.image.layers[-2].diff_id.split(":")[1]
    in_cache = builds.cache_dir / "trees" / first / "data" / "dir" / "old"
    in_store = builds.store.layer_path(result.image.layers[-2].diff_id) / "data" / "dir" / "old"
    assert in_store.samefile(in_cache), f"{first}: the store unpacked its own copy"
    # the linked trees keep what overlayfs needs: whiteouts and the opaque directory's xattr
    assert builds.run(result.image, "sh", "-c", "ls -A /data /data/dir; cat /data/dir/*") == (
        0,
        f"/data:\ndir\n\n/data/dir:\nnew\n{token}",
    )


def test_multi_stage_copy_from_and_target_builds_only_needed_stages(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE} AS base
        RUN echo from-base > /artifact

        FROM {BASE} AS broken
        RUN echo this stage must not run; exit 7

        FROM base AS child
        RUN echo child >> /artifact

        FROM {BASE}
        COPY --from=child /artifact /copied
        COPY --from=0 /artifact /first
        COPY --from={BASE} /bin/busybox /from-image/busybox
        ENV LEGACY value with spaces
        RUN /from-image/busybox true && echo "$LEGACY" >> /first
        """
    ctx = builds.context(dockerfile)
    result = builds.build(ctx)
    assert not any("must not run" in s for s in builds.reporter.steps)
    assert builds.run(result.image, "cat", "/copied", "/first") == (
        0,
        "from-base\nchild\nfrom-base\nvalue with spaces",
    )
    target = builds.build(ctx, target="child")
    assert builds.run(target.image, "cat", "/artifact") == (0, "from-base\nchild")
    with pytest.raises(BuildStepError, match=r"Dockerfile:5: RUN echo this stage.*code 7"):
        builds.build(ctx, target="broken")
    with pytest.raises(BuildError, match="no stage named 'nope' for --target"):
        builds.build(ctx, target="nope")


def test_heredocs(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        ARG WHO=world
        RUN <<EOF
        echo "hello $WHO" > /greeting
        echo second >> /greeting
        EOF
        COPY <<EOT /etc/config.txt
        name=$WHO
        EOT
        COPY <<'RAW' /raw.txt
        name=$WHO
        RAW
        RUN cat <<A > /a.txt && cat <<B > /b.txt
        first
        A
        second
        B
        """
    result = builds.build(builds.context(dockerfile))
    code, out = builds.run(
        result.image, "cat", "/greeting", "/etc/config.txt", "/raw.txt", "/a.txt", "/b.txt"
    )
    assert code == 0
    assert out.splitlines() == [
        "hello world",
        "second",
        "name=world",
        "name=$WHO",
        "first",
        "second",
    ]


def test_arg_scoping_and_build_args(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = """
        ARG IMAGE=busybox
        ARG VERSION=latest
        ARG GLOBAL_ONLY=g
        FROM ${IMAGE}:${VERSION}
        ARG VERSION
        ARG LOCAL=local-default
        ENV FROM_ENV=${LOCAL}
        ARG FROM_ENV=arg-loses
        RUN echo "v=$VERSION g=$GLOBAL_ONLY l=$LOCAL e=$FROM_ENV" > /args
        """
    ctx = builds.context(dockerfile)
    result = builds.build(ctx)
    assert builds.run(result.image, "cat", "/args") == (
        0,
        "v=latest g= l=local-default e=local-default",
    )
    given = builds.build(ctx, build_args={"LOCAL": "cli", "UNUSED": "x"})
    assert builds.run(given.image, "cat", "/args") == (0, "v=latest g= l=cli e=cli")
    assert any("UNUSED" in note for note in given.notes)
    env = given.image.config["config"]["Env"]
    assert "FROM_ENV=cli" in env and not any(e.startswith("LOCAL=") for e in env)


def test_user_workdir_env_effects_and_config(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        ENV GREETING="hello there" OTHER=$GREETING
        WORKDIR /srv
        WORKDIR app
        RUN pwd > /wd && echo "$GREETING" > /env
        USER 1000:1000
        RUN id -u > /tmp/uid
        LABEL org.example.name="demo app" version=1
        EXPOSE 8000 53/udp
        VOLUME ["/data"]
        STOPSIGNAL SIGINT
        HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD wget -q localhost:8000
        ENTRYPOINT ["sh", "-c"]
        CMD ["echo $GREETING from $(pwd) as $(id -u)"]
        ONBUILD RUN echo later
        """
    result = builds.build(builds.context(dockerfile))
    assert builds.run(result.image) == (0, "hello there from /srv/app as 1000")
    assert builds.run(result.image, "cat /wd /env /tmp/uid") == (
        0,
        "/srv/app\nhello there\n1000",
    )
    config = result.image.config["config"]
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "1000:1000"
    assert "GREETING=hello there" in config["Env"] and "OTHER=" in config["Env"]
    assert config["Labels"] == {"org.example.name": "demo app", "version": "1"}
    assert config["ExposedPorts"] == {"8000/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost:8000"],
        "Interval": 30_000_000_000,
        "Timeout": 5_000_000_000,
        "Retries": 2,
    }
    assert config["Entrypoint"] == ["sh", "-c"]
    assert config["OnBuild"] == ["RUN echo later"]
    history = result.image.config["history"]
    ours = history[-14:]  # ENV, WORKDIR x2 (both create a dir), RUN, USER, RUN, then metadata
    assert [h.get("empty_layer", False) for h in ours] == [
        True, False, False, False, True, False, True, True, True, True, True, True, True, True,
    ]  # fmt: skip
    assert ours[3]["created_by"] == 'RUN /bin/sh -c pwd > /wd && echo "$GREETING" > /env # buildkit'
    assert ours[0]["created_by"] == "ENV GREETING=hello there OTHER="
    assert len(result.image.config["rootfs"]["diff_ids"]) == len(result.image.layers)


def test_copy_rules_globs_dirs_chown_chmod_dockerignore(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE}
        COPY *.txt /globbed/
        COPY dir /contents
        COPY --chown=10:20 --chmod=0640 dir/one /owned/
        COPY script.sh /usr/local/bin/
        """
    files: dict[str, str | bytes] = {
        "a.txt": "a",
        "b.txt": "b",
        "secret.txt": "no",
        "dir/one": "1",
        "dir/nested/two": "2",
        "dir/skip.log": "log",
        "script.sh": "#!/bin/sh\necho script\n",
        ".dockerignore": "secret.txt\n**/*.log\n",
    }
    ctx = builds.context(dockerfile, files)
    os.chmod(ctx / "script.sh", 0o755)
    result = builds.build(ctx)
    code, out = builds.run(
        result.image,
        "sh",
        "-c",
        "ls /globbed; ls -R /contents; stat -c '%u:%g %a' /owned/one; script.sh",
    )
    assert code == 0
    assert out.splitlines() == [
        "a.txt",
        "b.txt",
        "/contents:",
        "nested",
        "one",
        "",
        "/contents/nested:",
        "two",
        "10:20 640",
        "script",
    ]


def test_add_extracts_local_tars_and_downloads_urls(
    builds: BuildHelper, busybox_image: str, tmp_path: Path
) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = b"inside the archive\n"
        info = tarfile.TarInfo("pkg/readme")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.txt").write_text("from the web\n")
    with serve_directory(served) as port:
        dockerfile = f"""
            FROM {BASE}
            ADD bundle.tar.gz /opt/
            ADD http://127.0.0.1:{port}/remote.txt /downloads/
            """
        ctx = builds.context(dockerfile, {"bundle.tar.gz": gzip.compress(archive.getvalue())})
        result = builds.build(ctx, network="host")
    code, out = builds.run(
        result.image,
        "sh",
        "-c",
        "cat /opt/pkg/readme /downloads/remote.txt; stat -c %a /downloads/remote.txt",
    )
    assert (code, out) == (0, "inside the archive\nfrom the web\n600")


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _member(name: str, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for attr, value in attrs.items():
        setattr(info, attr, value)
    return info


def test_add_extraction_keeps_modes_and_owners_as_docker_does(
    builds: BuildHelper, busybox_image: str
) -> None:
    archive = _tar(
        (_member("bin/tool", mode=0o4755, uid=0, gid=0), b"#!/bin/sh\n"),
        (_member("shared", mode=0o2775, uid=1000, gid=50), b"s"),
        (_member("drop", type=tarfile.DIRTYPE, mode=0o1777), None),
        (_member("open", mode=0o666, uid=12, gid=34), b"o"),
    )
    dockerfile = f"""
        FROM {BASE}
        ADD root.tar /x/
        """
    result = builds.build(builds.context(dockerfile, {"root.tar": archive}))
    code, out = builds.run(
        result.image, "stat", "-c", "%n %a %u:%g", "/x/bin/tool", "/x/shared", "/x/drop", "/x/open"
    )
    assert (code, out.splitlines()) == (
        0,
        ["/x/bin/tool 4755 0:0", "/x/shared 2775 1000:50", "/x/drop 1777 0:0", "/x/open 666 12:34"],
    )


@pytest.mark.parametrize(
    ("members", "message"),
    [
        pytest.param(
            [(_member("leak", type=tarfile.LNKTYPE, linkname="../" * 40 + "etc/hostname"), None)],
            "would link to '/etc/hostname', which is outside the destination",
            id="hard-link-out",
        ),
        pytest.param(
            [(_member("../../escape"), b"x")],
            "outside the destination",
            id="dotdot-name",
        ),
        pytest.param(
            [(_member("dangling", type=tarfile.LNKTYPE, linkname="/nowhere"), None)],
            "a hard link points at a file the archive does not hold",
            id="dangling-hard-link",
        ),
    ],
)
def test_add_refuses_archives_that_reach_outside_the_destination(
    builds: BuildHelper,
    busybox_image: str,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    message: str,
) -> None:
    # ADD extracts as root on the host: a hard link to a host file would copy it into the image
    dockerfile = f"""
        FROM {BASE}
        ADD evil.tar /x/
        """
    with pytest.raises(DockerfileError) as info:
        builds.build(builds.context(dockerfile, {"evil.tar": _tar(*members)}))
    assert "Dockerfile:2: ADD: evil.tar: " in str(info.value)
    assert message in str(info.value)
    assert not Path("/tmp/p").exists()


def test_failed_run_names_step_exit_code_and_last_lines(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN echo fine
        RUN for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; exit 42
        """
    with pytest.raises(BuildStepError) as info:
        builds.build(builds.context(dockerfile))
    message = str(info.value)
    assert "Dockerfile:3: RUN for i in 1 2 3" in message
    assert "exited with code 42" in message
    assert "line 5" in message and "oops" in message


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (f"FROM {BASE}\nCOPY missing.txt /x\n", r"Dockerfile:2: COPY: 'missing.txt' was not found"),
        (
            f"FROM {BASE}\nCOPY a b /x\n",
            r"Dockerfile:2: COPY: .* must be a directory ending in '/'",
        ),
        (f"FROM --platform=linux/arm64 {BASE}\n", r"Dockerfile:1: FROM: --platform=linux/arm64"),
        ("FROM kapal-test/absent:1\n", r"Dockerfile:1: FROM: image .*absent:1.* is not in"),
        (f'FROM {BASE}\nENV A="${{B:?B is required}}"\n', r"Dockerfile:2: ENV: B: B is required"),
        (f"FROM {BASE}\nCOPY --chown=nobody-here a /x\n", r"Dockerfile:2: COPY: --chown: user"),
        (f"FROM {BASE}\nEXPOSE 80/xyz\n", r"Dockerfile:2: EXPOSE: '80/xyz'"),
        (f"RUN true\nFROM {BASE}\n", r"Dockerfile:1: RUN: only ARG may come before"),
    ],
)
def test_build_errors_name_file_line_and_instruction(
    builds: BuildHelper, busybox_image: str, dockerfile: str, message: str
) -> None:
    ctx = builds.context(dockerfile, {"a": "a", "b": "b"})
    with pytest.raises(DockerfileError, match=message):
        builds.build(ctx)


def test_network_none_cuts_the_network(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN ls /sys/class/net > /ifaces
        """
    ctx = builds.context(dockerfile)
    result = builds.build(ctx, network="none")
    assert builds.run(result.image, "cat", "/ifaces") == (0, "lo")
    host = builds.build(ctx, network="host")
    assert builds.run(host.image, "cat", "/ifaces")[1].split() == sorted(
        os.listdir("/sys/class/net")
    )
    # the default: a namespace of its own, with slirp4netns' tap device to the outside world
    default = builds.build(ctx)
    assert builds.run(default.image, "cat", "/ifaces")[1].split() == ["lo", "tap0"]


def test_concurrent_builds_share_the_cache_safely(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        COPY a.txt /a.txt
        RUN sleep 0.5 && cat /a.txt > /b.txt
        RUN echo done > /c.txt
        """
    ctx = builds.context(dockerfile, {"a.txt": "shared"})
    results: list[BuildResult] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            helper = BuildHelper(builds.store, builds.backend, builds.cache_dir, builds.root)
            results.append(helper.build(ctx))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results[0].image.digest == results[1].image.digest
    # each of the three layer steps ran exactly once; the other build waited and reused it
    assert sum(r.run_steps for r in results) == 3
    assert sum(r.cached_steps for r in results) == 3


def test_source_date_epoch_sets_created_and_clamps_mtimes(
    builds: BuildHelper, busybox_image: str
) -> None:
    ctx = builds.context(f"FROM {BASE}\nCOPY f /f\nRUN touch /g\n", {"f": "f"})
    result = builds.build(ctx, epoch=1_700_000_000)
    assert result.image.config["created"] == "2023-11-14T22:13:20Z"
    assert result.image.config["history"][-1]["created"] == "2023-11-14T22:13:20Z"
    for layer in result.image.layers[-2:]:
        with tarfile.open(builds.store.blobs.path(layer.digest)) as tar:
            assert all(m.mtime <= 1_700_000_000 for m in tar.getmembers())
    code, out = builds.run(result.image, "stat", "-c", "%Y", "/f")
    assert (code, out) == (0, "1700000000")


def test_names_from_the_image_for_chown_and_user(builds: BuildHelper, debian_image: str) -> None:
    dockerfile = f"""
        FROM {debian_image}
        RUN groupadd -g 3000 staff2 && useradd -u 2000 -g staff2 -m appuser
        COPY --chown=appuser:staff2 app.txt /home/appuser/
        COPY --chown=appuser app.txt /home/appuser/solo.txt
        USER appuser
        WORKDIR /home/appuser
        RUN id -un > whoami && python3 -c "print('py ok')" > py.txt
        """
    result = builds.build(builds.context(dockerfile, {"app.txt": "x"}))
    code, out = builds.run(
        result.image,
        "sh",
        "-c",
        "stat -c '%u:%g' app.txt solo.txt; cat whoami py.txt; stat -c %U whoami",
    )
    assert (code, out.splitlines()) == (
        0,
        ["2000:3000", "2000:2000", "appuser", "py ok", "appuser"],
    )


def test_many_layers_fit_one_overlay_mount(builds: BuildHelper, busybox_image: str) -> None:
    # RUN steps see their lower layers through short links under the cache dir; with the cache at
    # a path as long as the default (~/.local/share/kapal/build-cache) 45 layers fit one mount
    steps = "\n".join(f"COPY step-{i} /" for i in range(45))  # 45 layers, no container
    files: dict[str, str | bytes] = {f"step-{i}": str(i) for i in range(45)}
    ctx = builds.context(f"FROM {BASE}\n{steps}\nRUN cat /step-0 /step-44\n", files)
    with tempfile.TemporaryDirectory(prefix="kapal-bc-", dir="/tmp") as cache_dir:
        result = builds.build(ctx, cache_dir=Path(cache_dir))
    assert len(result.image.layers) == 47
    assert builds.reporter.lines == ["044"]  # RUN saw the bottom and the top layer


def test_shell_entrypoint_resets_inherited_cmd_and_proxy_args(
    builds: BuildHelper, busybox_image: str
) -> None:
    base = builds.context(f'FROM {BASE}\nCMD ["echo", "from-base"]\n')
    builds.build(base, tags=("kapal-test/with-cmd:1",))
    dockerfile = """
        FROM kapal-test/with-cmd:1
        SHELL ["/bin/sh", "-ec"]
        RUN echo "shell=$0 proxy=$HTTP_PROXY" > /shell.txt
        ENTRYPOINT ["cat"]
        """
    ctx = builds.root / "child"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())
    result = builds.build(ctx, build_args={"HTTP_PROXY": "http://proxy.invalid:3128"})
    config = result.image.config["config"]
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert "Cmd" not in config  # ENTRYPOINT drops a Cmd inherited from the base, as Docker does
    assert builds.run(result.image, "/shell.txt") == (
        0,
        "shell=/bin/sh proxy=http://proxy.invalid:3128",
    )
    history = json.dumps(result.image.config["history"])
    assert "proxy.invalid" not in history  # predefined proxy args stay out of the history
    assert not any("HTTP_PROXY" in note for note in result.notes)


def test_copy_skips_special_files_and_keeps_owners_from_stages(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE} AS owned
        RUN mkdir /out && echo x > /out/f && chown -R 123:456 /out
        FROM {BASE}
        COPY --from=owned /out /from-stage
        COPY dir /from-context
        """
    ctx = builds.context(dockerfile, {"dir/regular": "r"})
    os.mkfifo(ctx / "dir" / "a-fifo")
    os.chown(ctx / "dir" / "regular", 777, 777)
    result = builds.build(ctx)
    code, out = builds.run(
        result.image, "sh", "-c", "stat -c '%n %u:%g' /from-stage/f /from-context/*"
    )
    assert (code, out.splitlines()) == (
        0,
        ["/from-stage/f 123:456", "/from-context/regular 0:0"],
    )
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY dir/a-fifo /x\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: COPY: 'dir/a-fifo' is not a file"):
        builds.build(ctx)


def test_heredoc_with_a_shebang_runs_as_a_script(builds: BuildHelper, debian_image: str) -> None:
    dockerfile = f"""
        FROM {debian_image}
        RUN <<EOF
        #!/usr/bin/env python3
        import sys
        open("/interpreter.txt", "w").write(sys.executable + "\\n")
        EOF
        """
    result = builds.build(builds.context(dockerfile))
    assert builds.run(result.image, "cat", "/interpreter.txt") == (0, "/usr/bin/python3")
    assert builds.run(result.image, "ls", "/dev/pipes")[0] != 0  # the script left no trace


def test_copy_from_an_image_through_merged_usr_symlinks(
    builds: BuildHelper, debian_image: str, busybox_image: str
) -> None:
    # in Debian bookworm /bin is a symlink to usr/bin: sources and globs resolve through it
    dockerfile = f"""
        FROM {BASE}
        COPY --from={debian_image} /bin/dash /from-debian/
        COPY --from={debian_image} /bin/gzi? /from-debian/
        """
    result = builds.build(builds.context(dockerfile))
    code, out = builds.run(result.image, "ls", "/from-debian")
    assert (code, out.split()) == (0, ["dash", "gzip"])


def test_scratch_base(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE} AS tools
        FROM scratch
        COPY --from=tools /bin/busybox /busybox
        CMD ["/busybox", "echo", "from scratch"]
        """
    result = builds.build(builds.context(dockerfile))
    assert len(result.image.layers) == 1
    assert builds.run(result.image) == (0, "from scratch")
