"""Base images made offline: Debian with mmdebstrap, and a tiny busybox image from busybox-static.

Both are one-layer images made deterministically (numeric owners, sorted entries, mtimes clamped to
SOURCE_DATE_EPOCH, 0 when unset), so bootstrapping twice from the same packages gives the same
layer.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import BootstrapError
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.store import ImageStore

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_SUITES = ("bookworm", "trixie", "bullseye", "sid", "stable", "testing", "unstable")
SLIM_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def source_date_epoch() -> int:
    """The SOURCE_DATE_EPOCH to stamp bootstrapped images with (0 when unset or invalid)."""
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        return 0


def _created(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _config(cmd: list[str], epoch: int, created_by: str) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": _created(epoch),
        "config": {"Env": [DEFAULT_PATH], "Cmd": cmd},
        "history": [{"created": _created(epoch), "created_by": created_by}],
    }


def is_static_elf(path: Path) -> bool:
    """Whether `path` is a 64-bit little-endian ELF with no program interpreter (static)."""
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        phoff, phentsize, phnum = (
            int.from_bytes(header[32:40], "little"),
            int.from_bytes(header[54:56], "little"),
            int.from_bytes(header[56:58], "little"),
        )
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            if int.from_bytes(f.read(4), "little") == 3:  # PT_INTERP
                return False
    return True


def _busybox_binary() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and is_static_elf(path):
            return path
    raise BootstrapError(
        "a static busybox is needed for `kapal image bootstrap busybox`, none was found in "
        f"{', '.join(BUSYBOX_CANDIDATES)}; install Debian's `busybox-static` package"
    )


def write_busybox_tar(out: Path, epoch: int) -> None:
    """Write the root filesystem of the busybox image as a deterministic tar at `out`."""
    binary = _busybox_binary()
    listing = subprocess.run(
        [str(binary), "--list-full"], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise BootstrapError(f"`{binary} --list-full` failed: {listing.stderr.strip()}")
    applets = sorted({line.strip() for line in listing.stdout.splitlines() if line.strip()})
    dirs = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "proc": 0o755, "root": 0o700}
    dirs |= {"sys": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "sbin": 0o755}
    dirs |= {"usr/sbin": 0o755, "var": 0o755, "home": 0o755}
    files = {
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"
        b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
        "etc/hostname": b"busybox\n",
    }
    entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []

    def info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = (
            kind,
            mode,
            epoch,
            0,
            0,
            "",
            "",
        )
        return ti

    for name, mode in dirs.items():
        entries.append((name, info(name, tarfile.DIRTYPE, mode), None))
    for name, content in files.items():
        ti = info(name, tarfile.REGTYPE, 0o644)
        ti.size = len(content)
        entries.append((name, ti, content))
    data = binary.read_bytes()
    ti = info("bin/busybox", tarfile.REGTYPE, 0o755)
    ti.size = len(data)
    entries.append(("bin/busybox", ti, data))
    for applet in applets:
        name = applet.lstrip("/")
        if name == "bin/busybox" or "/" not in name:
            continue
        ti = info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = "/bin/busybox"
        entries.append((name, ti, None))
    entries.sort(key=lambda e: e[0])
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for _, entry, blob in entries:
            tar.addfile(entry, io.BytesIO(blob) if blob is not None else None)


def bootstrap_busybox(store: ImageStore, tag: str = "busybox:latest") -> Image:
    """Make the tiny busybox image from the host's static busybox and tag it."""
    epoch = source_date_epoch()
    ref = Reference.parse(tag)
    with tempfile.TemporaryDirectory(dir=store.tmp) as tmp, store.session():
        tar_path = Path(tmp) / "rootfs.tar"
        write_busybox_tar(tar_path, epoch)
        layer = store.add_layer(tar_path, compressed=False)
        return store.commit(_config(["sh"], epoch, "kapal image bootstrap busybox"), [layer], [ref])


def split_debian_name(name: str) -> tuple[str, bool]:
    """`debian:bookworm-slim` → ("bookworm", True); raise `BootstrapError` for unknown names."""
    ref = Reference.parse(name)
    tag = ref.tag or "bookworm"
    slim = tag.endswith("-slim")
    suite = tag.removesuffix("-slim")
    if ref.repository != "library/debian" or suite not in DEBIAN_SUITES:
        raise BootstrapError(
            f"cannot bootstrap {name!r}: kapal bootstraps `busybox` and `debian:SUITE[-slim]` "
            f"with SUITE one of {', '.join(DEBIAN_SUITES)} (e.g. `debian:bookworm`)"
        )
    return suite, slim


def mmdebstrap_command(
    suite: str, slim: bool, include: Sequence[str], out: Path, mirror: str | None
) -> list[str]:
    """The mmdebstrap command line that writes the root filesystem tar for a Debian image."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise BootstrapError(
            "mmdebstrap is not installed (it is needed to bootstrap Debian images); install "
            "Debian's `mmdebstrap` package, or import or pull the image instead"
        )
    command = [mmdebstrap, "--variant=minbase", "--quiet", "--format=tar"]
    if include:
        command.append("--include=" + ",".join(include))
    if slim:
        command += [f"--dpkgopt={opt}" for opt in SLIM_EXCLUDES]
    command += [suite, str(out)]
    if mirror:
        command.append(mirror)
    return command


def debian_cache_key(suite: str, slim: bool, include: Sequence[str]) -> str:
    """A file-name-safe key for a Debian root filesystem made from these inputs."""
    packages = ",".join(sorted(set(include)))
    digest = hashlib.sha256(f"{suite}|{slim}|{packages}".encode()).hexdigest()[:16]
    return f"debian-{suite}{'-slim' if slim else ''}-{digest}"


def bootstrap_debian(
    store: ImageStore,
    name: str = "debian:bookworm",
    *,
    include: Sequence[str] = (),
    tag: str | None = None,
    mirror: str | None = None,
    tarball_cache: Path | None = None,
) -> Image:
    """Make a Debian minbase image with mmdebstrap (one layer) and tag it `tag` or `name`.

    With `tarball_cache`, the mmdebstrap tar is kept there keyed by suite, slimness and packages,
    and reused on the next call with the same inputs (tests use this; users need not).
    """
    suite, slim = split_debian_name(name)
    include = sorted({p.strip() for p in include if p.strip()})
    epoch = source_date_epoch()
    ref = Reference.parse(tag or name)
    cached = None
    if tarball_cache is not None:
        cached = tarball_cache / f"{debian_cache_key(suite, slim, include)}.tar"
    with tempfile.TemporaryDirectory(dir=store.tmp) as tmp, store.session():
        tar_path = Path(tmp) / "rootfs.tar"
        if cached is not None and cached.is_file():
            tar_path = cached
        else:
            command = mmdebstrap_command(suite, slim, include, tar_path, mirror)
            env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
            result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                tail = "\n".join(result.stderr.strip().splitlines()[-15:])
                raise BootstrapError(
                    f"mmdebstrap failed for {name} (exit {result.returncode}); check the network "
                    f"and the package names ({', '.join(include) or 'none'}):\n{tail}"
                )
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                part = cached.with_suffix(f".{os.getpid()}.part")
                shutil.copyfile(tar_path, part)
                os.replace(part, cached)
        layer = store.add_layer(tar_path, compressed=False)
        created_by = f"kapal image bootstrap {name}" + (
            f" --include {','.join(include)}" if include else ""
        )
        return store.commit(_config(["bash"], epoch, created_by), [layer], [ref])
