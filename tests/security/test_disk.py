"""Issue 8 item 10: a job cannot fill the host's disk through its writable layer.

The job writes far more than its cap; it fails with its own reason ("disk limit exceeded"), the
host's filesystem holds at most the cap for it while it runs, and nothing is left afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runner.errors import ImageNotFoundError
from runner.images import ImageStore
from runner.runtime import disk as disk_module
from runner.runtime.backend import SandboxSpec
from runner.runtime.disk import image_of, limited_disk
from runner.runtime.policy import ContainerPolicy
from runner.settings import RunnerSettings
from tests.runner.runtime.conftest import BusyboxImage
from tests.security.containers import BackendFactory

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
CAP = 64 << 20
FILL = "dd if=/dev/zero of=/tmp/fill bs=1M count=512 2>/dev/null; echo dd=$?; ls -l /tmp/fill"


def test_writing_past_the_cap_fails_with_the_disk_reason(
    policy_backend: BackendFactory, busybox: BusyboxImage, kapal_settings: RunnerSettings
) -> None:
    backend = policy_backend(ContainerPolicy(disk_bytes=CAP))
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, busybox.spec("sh", "-c", FILL + "; exit 1"))
        lines = [line.text for line in backend.logs(container)]
        status = backend.wait(container)
        assert lines[0] == "dd=1"
        written = int(lines[1].split()[4])
        assert 0 < written <= CAP
        assert status.disk_exceeded
        assert status.describe() == "disk limit exceeded (64 MiB): exited with code 1"
        # What the host's filesystem holds for the job: the image's allocated blocks.
        image = image_of(backend.paths.sandbox_disk_dir(sandbox.id))
        assert os.stat(image).st_blocks * 512 <= CAP
    finally:
        backend.teardown(sandbox)
    assert not image.exists()


def test_a_failure_without_a_full_disk_is_not_a_disk_failure(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    backend = policy_backend(ContainerPolicy(disk_bytes=CAP))
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(
            sandbox, busybox.spec("sh", "-c", "head -c 1000 /dev/zero > /x; exit 3")
        )
        status = backend.wait(container)
    finally:
        backend.teardown(sandbox)
    assert not status.disk_exceeded
    assert status.describe() == "exited with code 3"


def test_sandboxes_have_a_disk_each(policy_backend: BackendFactory, busybox: BusyboxImage) -> None:
    # A full disk in one job leaves the next job's disk empty.
    backend = policy_backend(ContainerPolicy(disk_bytes=CAP))
    first, second = backend.setup(SandboxSpec()), backend.setup(SandboxSpec())
    try:
        backend.wait(backend.start(first, busybox.spec("sh", "-c", FILL)))
        lines = []
        probe = backend.start(
            second, busybox.spec("sh", "-c", "head -c 10000000 /dev/zero > /y && echo ok")
        )
        lines = [line.text for line in backend.logs(probe)]
        assert backend.wait(probe).ok
        assert lines == ["ok"]
    finally:
        backend.teardown(first)
        backend.teardown(second)


def test_limited_disk_for_a_workspace(tmp_path: Path) -> None:
    # The engine mounts one over a job's directory so that its workspace counts too.
    workspace = tmp_path / "job"
    with limited_disk(workspace, CAP) as disk:
        with (workspace / "big").open("wb") as out, pytest.raises(OSError, match="No space left"):
            for _ in range(CAP // (1 << 20) + 8):
                out.write(b"\0" * (1 << 20))
                out.flush()
                os.fsync(out.fileno())
        assert disk.full()
    assert not workspace.exists()
    assert not image_of(workspace).exists()


def _on_a_loop_device(image: Path) -> bool:
    # backing_file ends with " (deleted)" once the image is unlinked
    files = Path("/sys/block").glob("loop*/loop/backing_file")
    return any(f.read_text().startswith(str(image)) for f in files)


@pytest.mark.parametrize("mounter", ["ioctls", "mount(8)"])
def test_each_disk_is_a_fresh_capped_nodev_nosuid_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounter: str
) -> None:
    # The second disk of a size is a copy of the first one's formatted image, not of what was
    # written on it; mounted with ioctls or, where those fail, with mount(8): either way capped,
    # nodev,nosuid, and its loop device is gone with it.
    if mounter == "mount(8)":

        def no_ioctls(*args: object) -> None:
            raise OSError("LOOP_CONFIGURE: Inappropriate ioctl for device")

        monkeypatch.setattr(disk_module, "mount_image", no_ioctls)
    for n in range(2):
        with limited_disk(tmp_path / f"job{n}", CAP) as disk:
            assert {p.name for p in disk.mount_point.iterdir()} == {"lost+found"}
            (disk.mount_point / "left-by-the-job").write_text("x")
            info = os.statvfs(disk.mount_point)
            assert CAP * 9 // 10 < info.f_blocks * info.f_frsize <= CAP
            with open("/proc/self/mountinfo") as mounts:
                line = next(m for m in mounts if f" {disk.mount_point} " in m)
            assert {"nodev", "nosuid"} <= set(line.split()[5].split(","))
            assert _on_a_loop_device(disk.image)
        assert not _on_a_loop_device(disk.image)
        assert not disk.image.exists()


def test_kapal_run_reports_the_disk_limit(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(
        f"fill:\n  image: busybox:latest\n  script:\n    - {FILL}\n    - echo never\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "run", str(project)],
        env={**kapal_env, "KAPAL_JOB_DISK": "64m"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "disk limit exceeded (64 MiB)" in done.stdout
    assert "never" not in done.stdout.replace("echo never", "")


def test_kapal_run_caps_the_workspace_too(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # The project dir is a bind mount of the job's folder, not the writable layer: the folder
    # is a disk of its own, so filling it fails the job with the same reason.
    project = tmp_path / "project"
    project.mkdir()
    fill = FILL.replace("/tmp/fill", "fill-in-workspace")
    (project / ".kapal.yml").write_text(
        f"fill:\n  image: busybox:latest\n  script:\n    - {fill}\n    - echo never\n"
    )
    before = {p.name for p in Path(kapal_env["KAPAL_DATA_DIR"]).glob("work*")}
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "run", str(project)],
        env={**kapal_env, "KAPAL_JOB_DISK": "64m"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "disk limit exceeded (64 MiB workspace)" in done.stdout
    assert "never" not in done.stdout.replace("echo never", "")
    assert not (project / "fill-in-workspace").exists()  # the copy was filled, not the tree
    with open("/proc/mounts") as mounts:
        assert str(kapal_env["KAPAL_DATA_DIR"]) not in mounts.read()
    assert {p.name for p in Path(kapal_env["KAPAL_DATA_DIR"]).glob("work*")} <= before | {"work"}


def _kapal_build(
    kapal_env: dict[str, str], context: Path, disk: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", "build", "--no-cache", *flags, str(context)],
        env={**kapal_env, "KAPAL_JOB_DISK": disk, "SOURCE_DATE_EPOCH": "0"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_kapal_build_run_step_cannot_fill_the_host_disk(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # The step's writable layer is a disk of the cap's size: the write fails there, the step
    # fails with the disk reason, and neither the disk's mount nor its image file is left.
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN dd if=/dev/zero of=/big bs=1M count=512 && echo never\n"
    )
    data_dir = Path(kapal_env["KAPAL_DATA_DIR"])
    done = _kapal_build(kapal_env, tmp_path, "64m", "-t", "kapal-test/disk-filler:1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "disk limit exceeded (64 MiB)" in done.stderr
    assert "No space left on device" in done.stderr
    assert "Traceback" not in done.stderr
    assert "never" not in done.stdout.replace("&& echo never", "")
    with open("/proc/mounts") as mounts:
        assert str(data_dir / "build-cache") not in mounts.read()
    assert not list((data_dir / "build-cache" / "tmp").glob("*/disk*"))  # mount point, image
    images = ImageStore(data_dir / "images")
    with pytest.raises(ImageNotFoundError):
        images.resolve("kapal-test/disk-filler:1")


def test_kapal_build_layer_is_the_same_with_and_without_the_cap(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # The layer is copied off the step's disk: whiteouts, an opaque dir, a hard link, owner
    # and mode must come through so that the image is the one an uncapped build makes.
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "RUN echo hi > /hello && ln /hello /hello2 && chown 5:6 /hello && chmod 640 /hello"
        " && rm /bin/arch && rm -r /usr && mkdir -p /usr/new && echo n > /usr/new/f\n"
    )
    digests = {}
    for disk in ("64m", "none"):
        done = _kapal_build(kapal_env, tmp_path, disk, "-t", f"kapal-test/disk-layer:{disk}")
        assert done.returncode == 0, done.stdout + done.stderr
        digests[disk] = done.stdout.split("built ", 1)[1].split()[0]
    assert digests["64m"] == digests["none"]
    images = ImageStore(Path(kapal_env["KAPAL_DATA_DIR"]) / "images")
    image = images.resolve("kapal-test/disk-layer:64m")
    with tarfile.open(images.blobs.path(image.layers[-1].digest)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "bin/.wh.arch" in members
    assert "usr/.wh..wh..opq" in members
    assert "usr/new/f" in members
    hello = members["hello"]
    assert (hello.uid, hello.gid, hello.mode & 0o7777) == (5, 6, 0o640)
    assert members["hello2"].islnk() and members["hello2"].linkname == "hello"


def test_kapal_build_steps_share_one_disk_and_each_has_the_whole_cap(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # The RUN steps of a build write on one disk: what a step wrote is deleted before the next
    # runs, so three steps of 40 MiB each fit a 64 MiB cap, and a fourth past it still fails.
    # The disk goes with the build.
    write = "RUN dd if=/dev/zero of=/f{n} bs=1M count=40 2>/dev/null && rm /bin/arch{n}\n"
    steps = "".join(write.format(n=n) for n in range(3))
    copies = "RUN for n in 0 1 2; do cp /bin/arch /bin/arch$n; done\n"
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\n{copies}{steps}")
    data_dir = Path(kapal_env["KAPAL_DATA_DIR"])
    done = _kapal_build(kapal_env, tmp_path, "64m", "-t", "kapal-test/disk-steps:1")
    assert done.returncode == 0, done.stdout + done.stderr
    image = ImageStore(data_dir / "images").resolve("kapal-test/disk-steps:1")
    with tarfile.open(ImageStore(data_dir / "images").blobs.path(image.layers[-1].digest)) as tar:
        assert {"f2", "bin/.wh.arch2"} <= set(tar.getnames())
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\n{copies}{steps}RUN dd if=/dev/zero of=/big bs=1M count=80\n"
    )
    done = _kapal_build(kapal_env, tmp_path, "64m", "-t", "kapal-test/disk-steps:2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "disk limit exceeded (64 MiB)" in done.stderr
    with open("/proc/mounts") as mounts:
        assert str(data_dir / "build-cache") not in mounts.read()
    assert not list((data_dir / "build-cache" / "tmp").glob("*/disk*"))


def test_pipeline_build_job_run_step_is_capped_too(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # A `build:` job runs the same builder through the engine's backend (wrapped so that the
    # job can be canceled): its RUN steps get the policy's disk as well.
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN dd if=/dev/zero of=/big bs=1M count=512 && echo never\n"
    )
    (project / ".kapal.yml").write_text(
        "image-build:\n  build:\n    context: .\n    tags: [kapal-test/disk-job:1]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "run", str(project)],
        env={**kapal_env, "KAPAL_JOB_DISK": "64m"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "disk limit exceeded (64 MiB)" in out
    with open("/proc/mounts") as mounts:
        assert str(Path(kapal_env["KAPAL_DATA_DIR"]) / "build-cache") not in mounts.read()


def test_a_disk_out_of_inodes_is_full(tmp_path: Path) -> None:
    # Many small files run out of inodes before blocks: that is the same limit.
    with limited_disk(tmp_path / "job", CAP) as disk:
        with pytest.raises(OSError, match="No space left"):
            for n in range(1_000_000):
                (disk.mount_point / str(n)).touch()
        info = os.statvfs(disk.mount_point)
        assert info.f_bavail * info.f_frsize > CAP // 2  # blocks were not what ran out
        assert disk.full()
