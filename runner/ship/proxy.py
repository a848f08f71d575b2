"""The port proxy: a detached process forwarding a host port to the current version of a service.

`python -m runner.ship.proxy SERVICE_DIR` listens on the address in `SERVICE_DIR/proxy.json`'s
request (`service.json`: `host`, `host_port`), then writes `SERVICE_DIR/proxy.json` with its pid
and address. Each accepted connection is forwarded to the target named in `SERVICE_DIR/current.json`
(`netns`, `port`), read afresh when that file changes: a thread joins the target's network
namespace (setns affects that thread alone), connects to 127.0.0.1:port there and copies bytes both
ways until either side closes. A rollout switches versions by replacing `current.json`: the
listening socket never closes, so the port answers throughout; connections already forwarded stay
with the version they reached. SIGTERM closes the listener and ends the process.

Like Docker's docker-proxy, it is plain userspace copying (no iptables), which suits a port or two
per host.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from runner.runtime.syscalls import CLONE_NEWNET, setns
from runner.ship.state_files import read_json, write_json

_BUFFER = 65536
_CONNECT_TIMEOUT = 5.0


class Targets:
    """The current target (`current.json`), re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._target: dict[str, Any] | None = None

    def current(self) -> dict[str, Any] | None:
        """`{"netns": ..., "port": ..., "version": ...}` or None when there is none yet."""
        try:
            stat = self.path.stat()
            seen = (stat.st_ino, stat.st_mtime_ns)
        except OSError:
            return None
        with self._lock:
            if seen != self._seen:
                self._target = read_json(self.path)
                self._seen = seen
            return self._target


def _connect_in(netns: str, port: int) -> socket.socket:
    """A socket connected to 127.0.0.1:`port` inside the namespace pinned at `netns`.

    Called in a thread of its own: setns moves that thread alone.
    """
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    upstream = socket.create_connection(("127.0.0.1", port), timeout=_CONNECT_TIMEOUT)
    upstream.settimeout(None)
    return upstream


def _pump(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until both directions are closed or one fails."""
    selector = selectors.DefaultSelector()
    peers = {client: upstream, upstream: client}
    for sock in peers:
        selector.register(sock, selectors.EVENT_READ)
    open_reads = 2
    try:
        while open_reads:
            for key, _ in selector.select():
                sock = client if key.fileobj is client else upstream
                try:
                    data = sock.recv(_BUFFER)
                except OSError:
                    return
                if not data:
                    selector.unregister(sock)
                    open_reads -= 1
                    with contextlib.suppress(OSError):
                        peers[sock].shutdown(socket.SHUT_WR)
                    continue
                try:
                    peers[sock].sendall(data)
                except OSError:
                    return
    finally:
        selector.close()


def _serve_connection(client: socket.socket, targets: Targets) -> None:
    with client:
        target = targets.current()
        if target is None:
            return
        try:
            upstream = _connect_in(str(target["netns"]), int(target["port"]))
        except (OSError, KeyError, ValueError):
            return
        with upstream:
            _pump(client, upstream)


def serve(directory: Path, stop: threading.Event | None = None) -> int:
    """Listen and forward until SIGTERM (or `stop`); the process's exit code."""
    config = read_json(directory / "service.json") or {}
    host = str(config.get("host", "127.0.0.1"))
    port = int(config.get("host_port", 0))
    targets = Targets(directory / "current.json")
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        write_json(directory / "proxy.json", {"pid": os.getpid(), "error": f"{host}:{port}: {exc}"})
        listener.close()
        return 1
    stop = stop or threading.Event()
    write_json(directory / "proxy.json", {"pid": os.getpid(), "address": f"{host}:{port}"})
    listener.settimeout(0.5)
    with listener:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if stop.is_set():
                    break
                continue
            client.settimeout(None)
            threading.Thread(
                target=_serve_connection, args=(client, targets), name="kapal-proxy", daemon=True
            ).start()
    return 0


def main(argv: list[str]) -> int:
    """Entry point: `python -m runner.ship.proxy SERVICE_DIR`."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return serve(Path(argv[0]), stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
