"""`--chown` values: numeric ids or names looked up in the image's /etc/passwd and /etc/group."""

from __future__ import annotations

from runner.build.trees import LayeredTree

__all__ = ["resolve_chown"]


def _table(tree: LayeredTree, path: str) -> dict[str, int]:
    text = tree.read_text(path) or ""
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            out.setdefault(fields[0], int(fields[2]))
    return out


def resolve_chown(spec: str, tree: LayeredTree) -> tuple[int, int]:
    """(uid, gid) for `user[:group]`; a user alone gives gid = uid, as Docker documents.

    Raises ValueError naming what is missing from the image.
    """
    user, _, group = spec.partition(":")
    if not user:
        raise ValueError(f"'{spec}' has no user; write USER[:GROUP] (names or numbers)")
    if user.isdigit():
        uid = int(user)
    else:
        users = _table(tree, "etc/passwd")
        if user not in users:
            raise ValueError(f"user '{user}' is not in the image's /etc/passwd; use a numeric uid")
        uid = users[user]
    if not group:
        return uid, uid
    if group.isdigit():
        return uid, int(group)
    groups = _table(tree, "etc/group")
    if group not in groups:
        raise ValueError(f"group '{group}' is not in the image's /etc/group; use a numeric gid")
    return uid, groups[group]
