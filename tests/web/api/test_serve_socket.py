"""`kapal serve --socket`: the socket's path over a server's life. A restart that overlaps (the
new server binds while the old one still drains) leaves the new server's socket in place; a
live server's socket is refused, a stale one replaced, a symlink or any other file refused."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.web.api.test_serve import KAPAL, _env, read_banner
from web.serve import ServeError, unix_socket, unix_socket_file


@contextmanager
def _serving(socket_path: Path, data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """`kapal serve --socket socket_path --no-worker`, once it answers; killed if still up."""
    process = subprocess.Popen(
        [*KAPAL, "serve", "--socket", str(socket_path), "--no-worker", "--data-dir", str(data_dir)],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        read_banner(process)
        assert _health(socket_path) == 200
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _health(socket_path: Path) -> int:
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://kapal", timeout=60) as client:
        return client.get("/healthz").status_code


def _refuses(socket_path: Path) -> bool:
    """Whether connecting to `socket_path` is refused (its file is there, nobody listens)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(str(socket_path)) == errno.ECONNREFUSED


def _request_in_flight(socket_path: Path) -> socket.socket:
    """A connection whose webhook request waits for its body: the server must drain it."""
    held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    held.connect(str(socket_path))
    held.sendall(
        b"POST /hooks/github HTTP/1.1\r\nHost: kapal\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    )
    # the server says "100 Continue" once the app reads the body: the request is under way
    assert held.recv(64).startswith(b"HTTP/1.1 100")
    return held


def test_an_overlapping_restart_keeps_the_new_servers_socket(tmp_path: Path) -> None:
    path = tmp_path / "run" / "kapal.sock"
    data_dir = tmp_path / "data"
    with _serving(path, data_dir) as old:
        held = _request_in_flight(path)
        try:
            old.send_signal(signal.SIGTERM)
            # the old server stops listening first, then drains the request under way: hold
            # it there (a slow drain) while the new server starts on the same path
            while not _refuses(path):
                assert old.poll() is None, "the old server ended before it drained"
                time.sleep(0.01)
            old.send_signal(signal.SIGSTOP)
            assert path.exists(), "the old server ended before the new one could start"
            with _serving(path, data_dir) as new:
                old.send_signal(signal.SIGCONT)
                held.close()
                assert old.wait(60) == 0
                assert path.is_socket() and not path.is_symlink(), "the old server removed it"
                assert _health(path) == 200
                new.send_signal(signal.SIGTERM)
                assert new.wait(60) == 0
            assert not path.exists()
        finally:
            old.send_signal(signal.SIGCONT)
            held.close()


def test_a_second_server_on_a_live_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kapal.sock"
    with _serving(path, tmp_path / "data") as first:
        second = subprocess.run(
            [*KAPAL, "serve", "--socket", str(path), "--no-worker"],
            env=_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"kapal serve: another server already listens on {path}; "
            "stop it first, or pick another path"
        )
        assert _health(path) == 200
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
    assert not path.exists()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "kapal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as crashed:
        crashed.bind(str(path))  # a server that died without removing its socket
    listener, bound = unix_socket_file(path)
    try:
        assert (bound.path, bound.inode) == (path, os.lstat(path).st_ino)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))  # the new listener answers
    finally:
        listener.close()
        bound.remove()
    assert not path.exists()


def test_a_socket_file_is_removed_only_while_it_is_the_one_bound(tmp_path: Path) -> None:
    path = tmp_path / "kapal.sock"
    listener, bound = unix_socket_file(path)
    listener.close()
    path.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        # another server's socket, on the same path since (its file may well get the inode
        # number the first one had: only its listening tells them apart then)
        other.bind(str(path))
        other.listen()
        bound.remove()
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    bound.remove()
    assert path.is_symlink()


@pytest.mark.parametrize("kind", ["symlink to a socket", "symlink to nothing", "file"])
def test_a_path_that_is_not_a_socket_is_never_removed_or_followed(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "kapal.sock"
    target = tmp_path / "target.sock"
    if kind == "file":
        path.write_text("keep me")
    else:
        path.symlink_to(target)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        if kind == "symlink to a socket":
            stale.bind(str(target))  # stale: nobody listens
        with pytest.raises(ServeError) as refused:
            unix_socket(path)
    if kind == "file":
        assert str(refused.value) == (
            f"{path} exists and is not a socket; remove it or pick another path"
        )
        assert path.read_text() == "keep me"
    else:
        assert str(refused.value) == (
            f"{path} is a symlink; give the socket's own path, not a link to it"
        )
        assert path.is_symlink()
        if kind == "symlink to a socket":
            assert stat.S_ISSOCK(os.lstat(target).st_mode)
        else:
            assert not os.path.lexists(target)
