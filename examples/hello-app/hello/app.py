"""The web application: `GET /` greets, `GET /visits` counts in Redis, `GET /healthz` is ok."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hello.redis_client import Redis, RedisError


def greeting(name: str | None) -> str:
    """The greeting for `name` (a stranger when empty)."""
    name = (name or "").strip()
    return f"Hello, {name}!" if name else "Hello, stranger!"


class Counter:
    """Counts visits in Redis under one key."""

    def __init__(self, redis: Redis, key: str = "hello:visits") -> None:
        self.redis, self.key = redis, key

    def hit(self) -> int:
        """Count one visit; return the total."""
        return self.redis.incr(self.key)


def make_handler(counter: Counter | None) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `counter`."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, _, query = self.path.partition("?")
            params = dict(p.partition("=")[::2] for p in query.split("&") if p)
            if path == "/healthz":
                self._send(200, {"status": "ok"})
            elif path == "/":
                self._send(200, {"message": greeting(params.get("name"))})
            elif path == "/visits" and counter is not None:
                try:
                    self._send(200, {"visits": counter.hit()})
                except RedisError as exc:
                    self._send(503, {"error": str(exc)})
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def serve(host: str = "0.0.0.0", port: int = 8000) -> None:
    """Serve until interrupted; Redis from REDIS_HOST / REDIS_PORT."""
    redis = Redis(os.environ.get("REDIS_HOST", "redis"), int(os.environ.get("REDIS_PORT", "6379")))
    server = ThreadingHTTPServer((host, port), make_handler(Counter(redis)))
    print(f"hello-app listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    serve(port=int(os.environ.get("PORT", "8000")))
