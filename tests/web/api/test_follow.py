"""Following a job's log live over SSE against a real uvicorn: lines as they are written,
resume with `Last-Event-ID`, the `end` event with the job's status; and the CLI client's
follower, which resumes by itself."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from tests.web.api.conftest import LiveServer, add_pipeline, register
from web.client import KapalClient
from web.db.jobs import set_job_status
from web.db.logs import append_log
from web.orchestration import Services


def _write(services: Services, job_id: int, lines: list[str]) -> None:
    with services.database.transaction() as session:
        append_log(session=session, job_id=job_id, lines=lines)


def _finish(services: Services, job_id: int, status: str = "success", code: int = 0) -> None:
    with services.database.transaction() as session:
        set_job_status(session=session, job_id=job_id, status=status, exit_code=code)


def _events(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """The next `count` events (pings skipped) of a streamed SSE response's lines."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in current:
                events.append(current)
                if len(events) == count:
                    return events
            current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        current[field] = value[1:] if value.startswith(" ") else value
    return events


def test_follow_sees_lines_as_written_and_resumes_after_a_disconnect(
    live_server: LiveServer, services: Services
) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    _write(services, job_id, ["first", "second"])
    url = f"{live_server.url}/api/v1/jobs/{job_id}/log"
    sse = {"Accept": "text/event-stream"}
    with httpx.Client(timeout=30) as http:
        with http.stream("GET", url, headers=sse) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            early = _events(lines, 2)
            _write(services, job_id, ["third"])  # written while the follower waits
            later = _events(lines, 1)
        assert [(e["id"], e["data"]) for e in early + later] == [
            ("1", "first"),
            ("2", "second"),
            ("3", "third"),
        ]
        # the follower went away after line 3; more lines and the end come meanwhile
        _write(services, job_id, ["fourth", "fifth"])
        _finish(services, job_id, "failed", 2)
        resume = {**sse, "Last-Event-ID": "3"}
        with http.stream("GET", url, headers=resume) as response:
            rest = _events(response.iter_lines(), 3)
    assert [(e.get("id"), e.get("event"), e["data"]) for e in rest[:2]] == [
        ("4", None, "fourth"),
        ("5", None, "fifth"),
    ]
    assert rest[2]["event"] == "end"
    assert json.loads(rest[2]["data"])["status"] == "failed"
    assert json.loads(rest[2]["data"])["exit_code"] == 2


def test_the_cli_client_follows_to_the_end_over_the_unix_socket(
    live_server: LiveServer, services: Services
) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    _write(services, job_id, ["one"])

    def produce() -> None:
        for i in range(2, 6):
            time.sleep(0.1)
            _write(services, job_id, [f"line {i}"])
        _finish(services, job_id)

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        with KapalClient(live_server.unix) as client:
            events = list(client.follow_log(job_id))
    finally:
        writer.join()
    assert [e.text for e in events if not e.end] == ["one", "line 2", "line 3", "line 4", "line 5"]
    assert [e.line_number for e in events if not e.end] == [1, 2, 3, 4, 5]
    assert events[-1].end
    assert events[-1].status == "success"


def test_a_follower_from_an_offset_gets_only_the_lines_after_it(
    live_server: LiveServer, services: Services
) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    _write(services, job_id, [f"l{i}" for i in range(10)])
    _finish(services, job_id)
    with KapalClient(live_server.url) as client:
        events = list(client.follow_log(job_id, offset=7))
    assert [(e.line_number, e.text) for e in events if not e.end] == [
        (8, "l7"),
        (9, "l8"),
        (10, "l9"),
    ]


def test_a_job_deleted_while_followed_ends_the_stream(
    live_server: LiveServer, services: Services
) -> None:
    from web.db.pipelines import delete_pipeline

    repo = register(services)
    pipeline_id, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    _write(services, job_id, ["only"])
    url = f"{live_server.url}/api/v1/jobs/{job_id}/log"
    with (
        httpx.Client(timeout=30) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"}) as response,
    ):
        lines = response.iter_lines()
        assert _events(lines, 1)[0]["data"] == "only"
        with services.database.transaction() as session:
            delete_pipeline(session=session, pipeline_id=pipeline_id)
        end = _events(lines, 1)[0]
    assert end["event"] == "end"
    assert json.loads(end["data"]) == {"status": "deleted"}


class CuttableProxy:
    """A TCP forwarder to `upstream` whose open connections can be cut at once."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.accepted = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self.accepted += 1
                self.connections += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: Any, sink: Any) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        """Break every connection open now."""
        with self._lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.connections.clear()

    def close(self) -> None:
        """Stop accepting and break what is open."""
        self.listener.close()
        self.cut()


def test_the_cli_client_resumes_after_a_broken_connection_without_losing_a_line(
    live_server: LiveServer, services: Services
) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    _write(services, job_id, ["one", "two", "three"])
    host, port = live_server.url.removeprefix("http://").split(":")
    proxy = CuttableProxy((host, int(port)))
    got: list[Any] = []
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            with KapalClient(proxy.url) as client:
                got.extend(client.follow_log(job_id))
        except BaseException as exc:
            failure.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        deadline = time.monotonic() + 60
        while len(got) < 3:
            assert time.monotonic() < deadline and not failure, (got, failure)
            time.sleep(0.02)
        proxy.cut()
        _write(services, job_id, ["four", "five"])
        _finish(services, job_id)
        follower.join(60)
    finally:
        proxy.close()
    assert not failure, failure
    assert [(e.line_number, e.text) for e in got if not e.end] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
        (5, "five"),
    ]
    assert got[-1].end and got[-1].status == "success"
    assert proxy.accepted == 2  # it did connect again
