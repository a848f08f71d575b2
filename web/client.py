"""The kapal CLI's client of the REST API, over a Unix socket or TCP (as Docker's CLI talks to
its daemon).

`KAPAL_HOST` says where: `unix:///path/kapal.sock` or `http://host:port` (unset: the local
server's `--socket`, else its bind address); `KAPAL_TOKEN` is the bearer token sent. Every
failure is a `web.errors.ClientError` with one line to show: `ServerUnreachableError` when
nothing answers, `ClientError` carrying the server's own `{"error": ...}` when it refuses.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from web.errors import ClientError, ServerUnreachableError

UNIX_BASE_URL = "http://kapal"  # the host part is not used over a Unix socket
FOLLOW_RECONNECTS = 5
FOLLOW_READ_TIMEOUT = 90.0  # the server pings a followed log every 15 s


@dataclass(frozen=True)
class LogEvent:
    """One event of a followed log: a line (`end` False) or the end with the job's status."""

    line_number: int
    text: str
    end: bool = False
    status: str = ""
    exit_code: int | None = None
    reason: str = ""


class _UnixBackend(httpcore.SyncBackend):
    """httpcore's backend, closing a Unix socket whose connect failed (httpcore leaks it)."""

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return SyncStream(sock)


def _unix_transport(path: str) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(uds=path)
    transport._pool = httpcore.ConnectionPool(uds=path, network_backend=_UnixBackend())
    return transport


def parse_host(host: str) -> tuple[str, httpx.HTTPTransport]:
    """The base URL and transport for a KAPAL_HOST value; ClientError for anything else."""
    text = host.strip()
    if text.startswith("unix://"):
        path = text.removeprefix("unix://")
        if not path.startswith("/"):
            raise ClientError(f"KAPAL_HOST {host!r}: a socket is written unix:///absolute/path")
        return UNIX_BASE_URL, _unix_transport(path)
    if text.startswith(("http://", "https://")):
        return text.rstrip("/"), httpx.HTTPTransport()
    raise ClientError(
        f"KAPAL_HOST {host!r} is neither unix:///path/kapal.sock nor http://host:port"
    )


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class KapalClient:
    """A client of one kapal server.

    Lifecycle: make it, call its methods, `close()` it (or use it as a context manager).
    """

    def __init__(self, host: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        self.host = host
        base_url, transport = parse_host(host)
        headers = {"User-Agent": "kapal-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url, transport=transport, headers=headers, timeout=timeout
        )

    def __enter__(self) -> KapalClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _unreachable(self, exc: Exception) -> ServerUnreachableError:
        reason = str(exc).strip() or type(exc).__name__
        return ServerUnreachableError(
            f"cannot reach the kapal server at {self.host} ({reason}); is `kapal serve` "
            "running there? (KAPAL_HOST says where)"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Send a request; the answer's JSON (None for 204), or ClientError."""
        try:
            response = self._http.request(
                method,
                path,
                json=json_body,
                params={k: v for k, v in (params or {}).items() if v is not None},
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise ClientError(_error_of(response), status=response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"the server at {self.host} answered {path} with something not JSON; "
                "is KAPAL_HOST a kapal server?"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` with query `params`."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST `body` as JSON to `path`."""
        return self.request("POST", path, json_body=body, params=params)

    def log_text(self, job_id: int, offset: int = 0) -> Iterator[str]:
        """A job's log from line `offset`, streamed as text pieces."""
        try:
            with self._http.stream(
                "GET", f"/api/v1/jobs/{job_id}/log", params={"offset": offset}
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_of(response), status=response.status_code)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def follow_log(self, job_id: int, offset: int = 0) -> Iterator[LogEvent]:
        """Follow a job's log live (SSE) from line `offset` until its end event.

        A connection lost midway is made again, resuming after the last line received
        (`Last-Event-ID`), a few times before giving up.
        """
        last = offset
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last > offset:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._http.stream(
                    "GET",
                    f"/api/v1/jobs/{job_id}/log",
                    params={"offset": offset},
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=FOLLOW_READ_TIMEOUT),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ClientError(_error_of(response), status=response.status_code)
                    for event in _sse_events(response.iter_lines()):
                        failures = 0
                        if event.end:
                            yield event
                            return
                        last = event.line_number
                        yield event
            except httpx.TransportError as exc:
                failures += 1
                if failures > FOLLOW_RECONNECTS:
                    raise self._unreachable(exc) from None
                time.sleep(min(5.0, 0.5 * 2**failures))
                continue
            # the stream closed without an end event: the server went away; reconnect
            failures += 1
            if failures > FOLLOW_RECONNECTS:
                raise ServerUnreachableError(
                    f"the kapal server at {self.host} keeps closing the log of job {job_id}"
                )
            time.sleep(min(5.0, 0.5 * 2**failures))


def _sse_events(lines: Iterator[str]) -> Iterator[LogEvent]:
    """The events of an SSE stream (pings and comments skipped)."""
    ident: str | None = None
    name: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line == "":
            if data or name:
                yield _event(ident, name, data)
            ident, name, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            ident = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data or name:
        yield _event(ident, name, data)


def _event(ident: str | None, name: str | None, data: list[str]) -> LogEvent:
    number = int(ident) if ident and ident.isdigit() else 0
    text = "\n".join(data)
    if name == "end":
        try:
            end = json.loads(text)
        except ValueError:
            end = {}
        if not isinstance(end, dict):
            end = {}
        return LogEvent(
            line_number=number,
            text="",
            end=True,
            status=str(end.get("status", "")),
            exit_code=end.get("exit_code") if isinstance(end.get("exit_code"), int) else None,
            reason=str(end.get("reason", "")),
        )
    return LogEvent(line_number=number, text=text)
