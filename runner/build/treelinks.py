"""`link_tree`: a second name for a layer tree, sharing every file's data (hard links).

A built layer lives in the build cache as an unpacked tree (the overlay lower dir of later RUN
steps); the image store wants the same layer unpacked under its own directory to run the image.
Linking the tree instead of unpacking the blob a second time keeps one copy of the data on disk
and makes the first container of a freshly built image start without an unpack.

One difference from unpacking the blob: files a RUN step wrote keep the mtimes the step gave
them (the blob clamps them to SOURCE_DATE_EPOCH), as later RUN steps of the build saw them, and
as a locally built Docker image shows them. Paths, contents, modes, owners and whiteouts match.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["link_tree"]


def link_tree(src: Path, dest: Path) -> None:
    """Recreate directory `src` at `dest` (which must not exist), hard-linking all but directories.

    Directories are new, with the owner, mode, xattrs (overlay's opaque marker among them) and
    mtime of the originals; files, symlinks and whiteout devices are hard links, so their
    metadata is shared by construction. Both must be on one filesystem (else `OSError`, EXDEV).
    """
    os.mkdir(dest)
    for dirpath, dirnames, filenames in os.walk(src):
        out = dest / os.path.relpath(dirpath, src)
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):  # a symlink to a directory
                dirnames.remove(name)
                filenames.append(name)
            else:
                os.mkdir(out / name)
        for name in filenames:
            os.link(os.path.join(dirpath, name), out / name, follow_symlinks=False)
    # bottom-up, so creating a child does not move its parent's mtime afterwards
    for dirpath, _, _ in os.walk(src, topdown=False):
        _copy_directory_metadata(Path(dirpath), dest / os.path.relpath(dirpath, src))


def _copy_directory_metadata(src: Path, dest: Path) -> None:
    st = os.lstat(src)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        os.setxattr(dest, name, os.getxattr(src, name, follow_symlinks=False))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
