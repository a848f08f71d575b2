"""Helpers of the security suite: a server on the host that jobs must not reach, disk space."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.runtime.policy import ContainerPolicy
from tests.support.runtime_leftovers import RecordingBackend

HOST_SECRET = "served-only-on-the-host"

BackendFactory = Callable[[ContainerPolicy], RecordingBackend]


class _Secret(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = HOST_SECRET.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def host_server(address: str = "127.0.0.1") -> Iterator[int]:
    """An HTTP server on the host answering HOST_SECRET to every GET; yields its port."""
    server = http.server.ThreadingHTTPServer((address, 0), _Secret)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding `path`."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize
