"""A small HTTP file server for include tests: fixed answers per path, requests recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support.http_thread import serving


@dataclass
class Files:
    """What the server answers: path -> body (200) or path -> redirect target (302)."""

    bodies: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)  # the Host header of each request


@contextmanager
def serve_files(files: Files, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve `files` on `host` at a free port; yields the port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files.hosts.append(self.headers.get("Host", ""))
            if self.path in files.redirects:
                self.send_response(302)
                self.send_header("Location", files.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = files.bodies.get(self.path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b"not found"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler, host) as port:
        yield port
