"""Directory trees as single blobs: packed into a .tar.gz for the store, unpacked untrusted.

Artifacts and caches are directory trees on a worker's disk; in an `ObjectStore` each is one
blob. `pack_tree` reads a tree kapal made (through `runner.confined`, links as links) into an
archive; `unpack_tree` writes an archive from the store into a fresh directory through
`runner.confined` too: whoever can write to the bucket controls the archive, so its members are
resolved inside the destination (`..`, absolute names and links climbing out are refused), and
only directories, regular files (setuid/setgid bits dropped) and symlinks (kept as links, never
followed) are made; device nodes, fifos and hard links are left out.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path

from runner.confined import ConfinedTree
from runner.errors import ConfinedPathError, ObjectStoreError
from runner.objects.store import CHUNK

__all__ = ["pack_tree", "unpack_tree"]

COMPRESS_LEVEL = 1  # artifacts are often compressed already: speed over ratio


def pack_tree(root: Path, archive: Path) -> int:
    """Write the tree at `root` into the .tar.gz file `archive`; return the bytes of the files."""
    size = 0
    with (
        ConfinedTree(root) as tree,
        tarfile.open(
            archive, "w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT
        ) as tar,
    ):
        for rel, st in tree.walk(""):
            info = tarfile.TarInfo(rel)
            info.mtime = int(st.st_mtime)
            info.mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = tree.readlink(rel) or ""
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                with tree.open_file(rel) as handle:
                    info.size = os.fstat(handle.fileno()).st_size
                    tar.addfile(info, handle)
                size += info.size
    return size


def unpack_tree(archive: Path, root: Path, *, where: str) -> list[str]:
    """Unpack the untrusted .tar.gz `archive` into the new directory `root` (see the module
    docstring); return the files and links made. `where` names the blob in messages."""
    made: list[str] = []
    try:
        with ConfinedTree(root, create=True, mode=0o700) as tree, tarfile.open(archive) as tar:
            for member in tar:
                rel = _member_name(member.name, where)
                if not rel:
                    continue
                if member.isdir():
                    tree.make_dirs(rel, 0o700)
                elif member.isreg():
                    content = tar.extractfile(member)
                    with tree.create_file(rel, member.mode & 0o777) as out:
                        while content is not None and (chunk := content.read(CHUNK)):
                            out.write(chunk)
                    made.append(rel)
                elif member.issym():
                    tree.symlink(rel, member.linkname)
                    made.append(rel)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ObjectStoreError(
            f"{where}: not a readable archive ({exc}); delete it from the store so the next "
            "job writes it again"
        ) from None
    return made


def _member_name(name: str, where: str) -> str:
    clean = posixpath.normpath(name) if name else "."
    if clean.startswith("/") or clean == ".." or clean.startswith("../"):
        raise ConfinedPathError(f"{where}: member {name!r} points outside the destination")
    return "" if clean == "." else clean
