"""A marked host directory for the symlink attacks: what a job, repository or image must not reach.

Test modules import `host_dir` from here (there is no conftest.py in this directory). The
directory lives outside every tree kapal copies from or into; its snapshot (names, modes, owners,
contents) is compared after the attack, and `SECRET` must appear nowhere the attacker can read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class HostDir:
    """A host directory holding `secret.txt` (containing `secret`) and a subdirectory."""

    path: Path
    secret: str

    def snapshot(self) -> dict[str, tuple[int, int, int, str]]:
        """Every entry below and including the directory: mode, owner, group, content digest."""
        found: dict[str, tuple[int, int, int, str]] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in ["", *dirnames, *filenames]:
                path = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(path)
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[os.path.relpath(path, self.path)] = (st.st_mode, st.st_uid, st.st_gid, digest)
        return found


def contains_secret(root: Path, secret: str) -> list[str]:
    """Files below `root` (symlinks not followed) whose bytes or name hold `secret`."""
    hits = []
    needle = secret.encode()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


@pytest.fixture
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostDir]:
    """A host directory with a secret file; asserts after the test that nothing in it changed."""
    path = tmp_path_factory.mktemp("host-owned")
    os.chmod(path, 0o750)
    secret = f"host-secret-{uuid.uuid4().hex}"
    (path / "secret.txt").write_text(f"{secret}\n")
    # a host file that parses as YAML: its keys and values would reach plans and messages
    (path / "secret.yml").write_text(f"{secret}:\n  script: [echo {secret}]\n  bogus: 1\n")
    (path / "sub").mkdir()
    (path / "sub" / "note.txt").write_text(f"{secret} in a subdirectory\n")
    host = HostDir(path, secret)
    before = host.snapshot()
    yield host
    assert host.snapshot() == before, "the host directory was changed"
