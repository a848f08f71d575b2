"""Resolve a container user ("app", "1000", "app:staff", "1000:1000") against the image's files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from runner.errors import ContainerStartError


class ProcessUser(NamedTuple):
    """The numeric identity of a container process."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def _read_table(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: Path, spec: str) -> ProcessUser:
    """Map `spec` to uids/gids with the image's /etc/passwd and /etc/group (as Docker does)."""
    user, _, group = spec.partition(":")
    passwd = _read_table(rootfs / "etc" / "passwd")
    groups = _read_table(rootfs / "etc" / "group")
    entry = next((e for e in passwd if len(e) >= 4 and (e[0] == user or e[2] == user)), None)
    if entry is not None:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] if len(entry) > 5 else "/"
        name = entry[0]
    elif user.isdigit():
        uid, gid, home, name = int(user), 0, "/", ""
    else:
        raise ContainerStartError(
            f"user {user!r} is not in the image's /etc/passwd: use a numeric uid[:gid] or a user "
            "the image defines"
        )
    if group:
        match = next((g for g in groups if len(g) >= 3 and (g[0] == group or g[2] == group)), None)
        if match is not None:
            gid = int(match[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise ContainerStartError(
                f"group {group!r} is not in the image's /etc/group: use a numeric gid or a group "
                "the image defines"
            )
    extra = tuple(
        sorted(
            {
                int(g[2])
                for g in groups
                if len(g) >= 4 and name and name in g[3].split(",") and g[2].isdigit()
            }
            - {gid}
        )
    )
    return ProcessUser(uid=uid, gid=gid, additional_gids=extra, home=home or "/")
