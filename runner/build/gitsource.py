"""ADD of a git repository: `ADD https://host/repo.git#ref:subdir /dest`, as BuildKit does it.

A source is a git repository when its URL ends in `.git` (before the `#` fragment) or uses the
`git://` scheme; the fragment names a branch, a tag or a commit (default: the remote's HEAD)
and, after a `:`, a subdirectory. The checkout's files (without `.git`, unless
`ADD --keep-git-dir`) are added as a directory's contents are. SSH remotes (`git@host:`,
`ssh://`) are refused: kapal forwards no SSH agent into builds.

The clone runs the `git` program through GitPython with the Dockerfile author's URL, so it is
fenced: only the http, https and git transports are allowed (no `file://`, no `ext::`), no
credential helper or terminal prompt, no system or user git config, no submodules, no hooks
(a fresh repository has none). The caller runs `fetch_repository` in the build's network.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GitSource", "GitSourceError", "fetch_repository", "parse_git_source"]


class GitSourceError(ValueError):
    """A git source cannot be used or fetched (the caller adds file:line)."""


@dataclass(frozen=True)
class GitSource:
    """A parsed git source: the remote URL, the ref (empty: HEAD) and a subdirectory."""

    url: str
    ref: str
    subdir: str


def parse_git_source(text: str) -> GitSource | None:
    """The git source `text` names, None when it is no git URL; GitSourceError for SSH ones."""
    if text.startswith(("git@", "ssh://")):
        raise GitSourceError(
            f"ADD {text}: SSH git remotes are not supported (kapal forwards no SSH agent); use "
            "the https:// URL of the repository"
        )
    url, _, fragment = text.partition("#")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "git" or (scheme in ("http", "https") and url.rstrip("/").endswith(".git")):
        ref, _, subdir = fragment.partition(":")
        if ref.startswith("-") or any(c in ref for c in " \t\n\\~^?*[") or ".." in ref:
            raise GitSourceError(f"ADD {text}: '{ref}' is not a branch, tag or commit name")
        clean = posixpath.normpath("/" + subdir).lstrip("/") if subdir else ""
        return GitSource(url, ref, clean)
    return None


def _environment(home: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ASKPASS": "/bin/false",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "http:https:git",
    }
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy"):
        if proxy in os.environ:
            env[proxy] = os.environ[proxy]
    return env


def fetch_repository(source: GitSource, dest: Path, *, keep_git_dir: bool) -> Path:
    """Fetch `source` into the new directory `dest`; return the directory to add from."""
    import git  # GitPython: only builds that ADD a repository import it

    dest.mkdir(parents=True)
    home = dest.parent / f"{dest.name}-home"
    home.mkdir()
    env = _environment(home)
    fenced = [
        "-c",
        "protocol.allow=never",
        "-c",
        "protocol.http.allow=always",
        "-c",
        "protocol.https.allow=always",
        "-c",
        "protocol.git.allow=always",
        "-c",
        "credential.helper=",
        "-c",
        "core.hooksPath=/dev/null",
    ]
    try:
        repo = git.Repo.init(dest)
        runner = repo.git
        runner.update_environment(**env)
        wanted = source.ref or "HEAD"
        try:
            runner.execute(["git", *fenced, "fetch", "--depth=1", source.url, wanted])
            target = "FETCH_HEAD"
        except git.GitCommandError:
            # dumb-HTTP remotes cannot fetch shallowly, and some servers refuse a commit id
            runner.execute(
                [
                    "git",
                    *fenced,
                    "fetch",
                    "--tags",
                    source.url,
                    "+refs/heads/*:refs/remotes/origin/*",
                ]
            )
            target = _resolve_ref(repo, source.ref)
        runner.execute(["git", *fenced, "-c", "advice.detachedHead=false", "checkout", target])
    except git.GitCommandError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        why = detail[-1] if detail else f"git exited with {exc.status}"
        raise GitSourceError(f"ADD {source.url}: fetching the repository failed: {why}") from None
    if not keep_git_dir:
        import shutil

        shutil.rmtree(dest / ".git")
    return dest


def _resolve_ref(repo: object, ref: str) -> str:
    import git

    assert isinstance(repo, git.Repo)
    if not ref:
        names = [r.name for r in repo.references]
        for head in ("origin/HEAD", "origin/main", "origin/master"):
            if head in names:
                return head
        raise GitSourceError("the remote has no HEAD, main or master branch; name one after #")
    for candidate in (f"origin/{ref}", f"refs/tags/{ref}", ref):
        try:
            repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}")
            return candidate
        except git.GitCommandError:
            continue
    raise GitSourceError(f"the repository has no branch, tag or commit '{ref}'")
