"""Benchmark: the service from a signed webhook to the first container, and webhook throughput.

For each stack, the embedded default (SQLite + kombu's SQLAlchemy transport over SQLite, polled
every 50 ms) and PostgreSQL + Redis, with the real HTTP app (`web.app.create_app`) served by
uvicorn on 127.0.0.1, a real Celery worker (embedded, threads pool) and the real runtime:

- latency: `--repeat` times (default 20), a commit is pushed to a local bare repository (not
  timed), then a signed GitHub push delivery is POSTed; timed are the answer (`accepted`: the
  hook verifies, records the delivery and the pipeline and sends a plan message; the worker
  fetches the commit into the mirror, plans, records the jobs and runs them) and the moment
  the job's container has started (`first container`: the runtime's `start` returned;
  measured by a subclass of the embedded backend installed in this process for the
  benchmark only). Medians and 90th percentiles are reported.
- cancel: a `sleep 60` job is canceled once running; timed until the job row is `canceled`
  (the container got SIGTERM, its after_script-free job ended, the worker recorded it).
- a job printing 50 MB of log: how long it takes, and the growth of this process's RSS (the
  worker runs in it) while it runs.
- throughput: with the worker stopped, `kapal serve --workers 2 --no-worker` is started on the
  stack's database and broker (then `--workers 1`, for comparison), and `--deliveries` signed
  deliveries (distinct ids, one commit; signed before the clock starts) are POSTed over 16
  keep-alive connections by one asyncio client process (raw HTTP/1.1 on streams, so the load
  generator takes little of the two cores the server shares with it), then 10% of them again;
  reported are accepted deliveries per second, p50/p99, the load average, and, counted in the
  database, whether every one made exactly one pipeline and every redelivery was answered with
  it, and (on Redis, once `kapal serve` stopped) whether each pipeline's plan request waits in
  the broker exactly once. The server verifies each signature, records the delivery and its
  pipeline, and sends a plan message (a worker plans). The hook's same recording without HTTP
  and the signature (16 threads in this process) is timed too (`deferred/s`).

Apart (`--part`, on PostgreSQL + Redis, merged into the same JSON file):

- `list`: `GET /api/v1/pipelines` and the dashboard's list page `/` over 100,000 recorded
  pipelines (`--list-size`; three jobs and a plan each): p50/p95/p99 of 500 calls (after 50
  untimed) of each filter and page, from a client process apart, and of the same reads through
  `list_pipelines` alone (query only); the load average around it; target p95 <= 50 ms.
- `workers`: 20 pipelines of 4 jobs (`sleep 1` each) through one `kapal worker` process, then
  through two (each `--concurrency 2`): seconds until the last one finished.

Prints a table and writes JSON to bench/results/server.json.

Usage: .venv/bin/python bench/server.py [--repeat N] [--deliveries N] [--stack embedded|postgres]
       .venv/bin/python bench/server.py --part list|workers
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

import web.execution  # noqa: E402
from runner.images import ImageStore, bootstrap_busybox  # noqa: E402
from runner.runtime.backend import Container, ContainerSpec, Sandbox  # noqa: E402
from runner.runtime.embedded import EmbeddedBackend  # noqa: E402
from tests.support.services import run_redis, start_postgres  # noqa: E402
from tests.web.test_mirrors import Project  # noqa: E402
from web.app import create_app  # noqa: E402
from web.db.migrate import upgrade  # noqa: E402
from web.db.models import Pipeline, WebhookDelivery  # noqa: E402
from web.db.pipelines import get_pipeline_detail  # noqa: E402
from web.db.repos import create_repository  # noqa: E402
from web.db.schemas import Provider, RepositoryCreate  # noqa: E402
from web.orchestration import Services, cancel_pipeline  # noqa: E402
from web.serve import tcp_socket  # noqa: E402
from web.settings import Settings  # noqa: E402
from web.tasks import create_celery, start_embedded_worker  # noqa: E402

SECRET = "bench webhook secret"
PIPELINE = "hello:\n  image: busybox:latest\n  script: [echo hello]\n"
LOUD = (  # 50 MB of log: 500,000 lines of 100 bytes
    "loud:\n  image: busybox:latest\n"
    "  script: ['(yes " + "x" * 99 + " || true) | head -n 500000']\n"
)
SLEEPER = "sleeper:\n  image: busybox:latest\n  script: [echo started, sleep 60]\n"
FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
STARTS: queue.Queue[float] = queue.Queue()


class TimedBackend(EmbeddedBackend):
    """The embedded backend, noting when each container has started (benchmark only)."""

    def start(self, sandbox: Sandbox, spec: ContainerSpec) -> Container:
        """Start the container, then note the time."""
        container = super().start(sandbox, spec)
        STARTS.put(time.perf_counter())
        return container


def _push_payload(project: Project, before: str, after: str) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "commits": [],
        "head_commit": {
            "id": after,
            "message": "bench",
            "timestamp": "2026-12-05T09:00:00+00:00",
            "author": {"name": "Ada", "email": "ada@example.com"},
            "committer": {"name": "Ada", "email": "ada@example.com"},
            "added": [],
            "removed": [],
            "modified": [],
        },
        "repository": {
            "full_name": "acme/shop",
            "name": "shop",
            "clone_url": str(project.origin),
            "default_branch": "main",
            "owner": {"login": "acme", "name": "acme"},
        },
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada"},
    }


def _signed(payload: dict[str, Any], delivery: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
    }, body


@contextmanager
def _serving(settings: Settings, services: Services) -> Iterator[str]:
    """The HTTP app on 127.0.0.1 (a free port) in a thread; yields its base URL.

    The listener is `kapal serve`'s (`web.serve.tcp_socket`): its connections send at once
    (TCP_NODELAY), where a plain socket's wait ~40 ms for a delayed ACK on a kept-alive one."""
    listener = tcp_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, services=services), log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the HTTP app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def _wait(services: Services, pipeline_id: int, until: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + 120
    while True:
        with services.database.transaction() as session:
            detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
        assert detail is not None
        if until(detail.status) or time.monotonic() > deadline:
            return detail.status
        time.sleep(0.01)


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_stack(
    name: str, settings: Settings, work: Path, repeat: int, deliveries: int
) -> dict[str, Any]:
    """Run the three measurements on one stack (see the module docstring)."""
    upgrade(settings.database_url)
    app = create_celery(settings)
    services = app.services
    project = Project(work / "repos")
    with services.database.transaction() as session:
        create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name="acme/shop",
                clone_url=str(project.origin),
                provider=Provider.GITHUB,
                webhook_secret=SECRET,
            ),
        )
    result: dict[str, Any] = {"stack": name}
    worker = start_embedded_worker(settings, app=app, concurrency=2)
    try:
        with _serving(settings, services) as base, httpx.Client(base_url=base) as client:
            before = "0" * 40
            accepted: list[float] = []
            started: list[float] = []
            project.commit({".kapal.yml": PIPELINE})
            for index in range(repeat + 1):  # the first run warms the mirror and caches up
                sha = project.commit({"round.txt": f"{index}\n"})
                project.push()
                headers, body = _signed(_push_payload(project, before, sha), str(uuid.uuid4()))
                before = sha
                while not STARTS.empty():
                    STARTS.get()
                sent = time.perf_counter()
                answer = client.post("/hooks/github", content=body, headers=headers)
                answered = time.perf_counter()
                if answer.status_code != 201:
                    raise SystemExit(f"delivery refused: {answer.status_code} {answer.text}")
                container = STARTS.get(timeout=120)
                status = _wait(services, answer.json()["pipeline_id"], FINISHED.__contains__)
                if status != "success":
                    raise SystemExit(f"the pipeline ended {status}")
                if index:
                    accepted.append(answered - sent)
                    started.append(container - sent)
            result["accepted_ms"] = _summary(accepted)
            result["first_container_ms"] = _summary(started)

            sha = project.commit({".kapal.yml": SLEEPER})
            project.push()
            headers, body = _signed(_push_payload(project, before, sha), str(uuid.uuid4()))
            pipeline_id = client.post("/hooks/github", content=body, headers=headers).json()[
                "pipeline_id"
            ]
            STARTS.get(timeout=120)
            time.sleep(0.3)
            asked = time.perf_counter()
            cancel_pipeline(services=services, pipeline_id=pipeline_id)
            status = _wait(services, pipeline_id, FINISHED.__contains__)
            result["cancel_ms"] = round((time.perf_counter() - asked) * 1000, 1)
            result["cancel_status"] = status

            sha = project.commit({".kapal.yml": LOUD})
            project.push()
            headers, body = _signed(_push_payload(project, sha, sha), str(uuid.uuid4()))
            baseline = _rss()
            peak = [baseline]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    peak[0] = max(peak[0], _rss())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            loud = time.perf_counter()
            pipeline_id = client.post("/hooks/github", content=body, headers=headers).json()[
                "pipeline_id"
            ]
            status = _wait(services, pipeline_id, FINISHED.__contains__)
            done.set()
            sampler.join()
            result["log_50mb"] = {
                "status": status,
                "seconds": round(time.perf_counter() - loud, 1),
                "rss_growth_mib": round((peak[0] - baseline) / 2**20, 1),
            }
            before = sha
            worker.stop()

            project.commit({".kapal.yml": PIPELINE})
            sha = project.commit({"round.txt": "throughput\n"})
            project.push()
            for processes in (2, 1):  # `kapal serve --workers 2`, then one HTTP process
                with _kapal_serve(settings, processes) as served:
                    _throughput(served, project, before, sha, 100, services)  # warm up
                    measured = _throughput(served, project, before, sha, deliveries, services)
                # kapal serve has stopped: each plan request it owed waits in the broker
                made = measured.pop("pipeline_ids")
                queued = _queued_plans(settings)
                if queued is not None:
                    measured["plan_requests_queued_once"] = sum(queued[p] == 1 for p in made)
                if processes == 1:
                    result["deliveries_per_s_1_process"] = measured["deliveries_per_s"]
                else:
                    result.update(measured)
            result["deferred_per_s"] = _deferred_throughput(services, sha, deliveries)
    finally:
        worker.stop()
        services.database.dispose()
    return result


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values) * 1000, 1),
        "p90": round(_quantile(values, 0.9) * 1000, 1),
        "min": round(min(values) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "n": len(values),
    }


def _raw_request(host: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 `POST /hooks/github` with `headers` and `body`, as bytes on the wire."""
    lines = [
        "POST /hooks/github HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _post_deliveries(address: tuple[str, int], requests: list[bytes], connections: int) -> Any:
    """Send each pre-signed request over `connections` keep-alive connections (asyncio
    streams in a client process apart, as a git host is: the load generator costs little of
    the two cores); (status, pipeline id, seconds) for each, in order."""
    import asyncio
    import re

    length = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
    results: list[Any] = [None] * len(requests)
    order = iter(range(len(requests)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(*address)
        try:
            for index in order:  # each connection takes the next request not yet sent
                sent = time.perf_counter()
                writer.write(requests[index])
                head = await reader.readuntil(b"\r\n\r\n")
                found = length.search(head)
                body = await reader.readexactly(int(found.group(1))) if found else b"{}"
                results[index] = (
                    int(head[9:12]),
                    json.loads(body).get("pipeline_id"),
                    time.perf_counter() - sent,
                )
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(connection() for _ in range(connections)))

    asyncio.run(run())
    return results


@contextmanager
def _kapal_serve(settings: Settings, workers: int) -> Iterator[str]:
    """`kapal serve --workers N --no-worker` on a free port over the stack's database and
    broker, as a server is deployed; yields its base URL once it answers."""
    import os
    import re
    import signal
    import subprocess

    env = dict(
        os.environ,
        KAPAL_DATABASE_URL=settings.database_url,
        KAPAL_BROKER_URL=settings.broker_url,
        KAPAL_DATA_DIR=str(settings.data_dir),
        KAPAL_ENCRYPTION_KEY="bench",
    )
    command = ["serve", "--port", "0", "--no-worker", "--workers", str(workers)]
    process = subprocess.Popen(
        [sys.executable, "-m", "web.cli", *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"API on (http://\S+:\d+) ", process.stdout.readline())
        if found is None:
            raise SystemExit(f"kapal serve did not start ({process.wait()})")
        base = found.group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("kapal serve did not answer")
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(90)
        if process.stdout is not None:
            process.stdout.close()


def _throughput(
    base: str, project: Project, before: str, sha: str, deliveries: int, services: Services
) -> dict[str, Any]:
    """`deliveries` signed deliveries (distinct ids, one commit) over 16 connections, then 10%
    of them again; whether each made exactly one pipeline, counted in the database."""
    ids = [str(uuid.uuid4()) for _ in range(deliveries)]
    payload = _push_payload(project, before, sha)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    address = (host, int(port))
    wire = {
        delivery: _raw_request(f"{host}:{port}", *_signed(payload, delivery)) for delivery in ids
    }
    connections = 16
    context = multiprocessing.get_context("spawn")
    with services.database.transaction() as session:
        pipelines_before = session.scalar(select(func.count(Pipeline.id))) or 0
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(time.sleep, 0).result()  # the client process started, not timed
        began = time.perf_counter()
        first = pool.submit(_post_deliveries, address, [wire[d] for d in ids], connections).result()
        elapsed = time.perf_counter() - began
        repeated = ids[:: max(1, deliveries // (deliveries // 10 or 1))]
        again = pool.submit(
            _post_deliveries, address, [wire[d] for d in repeated], connections
        ).result()
    with services.database.transaction() as session:
        pipelines = (session.scalar(select(func.count(Pipeline.id))) or 0) - pipelines_before
        recorded = session.scalar(
            select(func.count(WebhookDelivery.id)).where(WebhookDelivery.delivery_id.in_(ids))
        )
    made = [pid for status, pid, _ in first if status == 201]
    first_latencies = [seconds for _, _, seconds in first]
    first_ids = {delivery: pid for delivery, (_, pid, _) in zip(ids, first, strict=True)}
    return {
        "deliveries": deliveries,
        "load_average": [round(load, 2) for load in _load_average()],
        "deliveries_per_s": round(len(made) / elapsed, 1),
        "delivery_p50_ms": round(_quantile(first_latencies, 0.5) * 1000, 1),
        "delivery_p99_ms": round(_quantile(first_latencies, 0.99) * 1000, 1),
        "accepted": len(made),
        "pipelines_made": pipelines,
        "deliveries_recorded": recorded,
        "redeliveries": len(again),
        "redeliveries_same_pipeline": sum(
            1
            for delivery, (status, pid, _) in zip(repeated, again, strict=True)
            if status == 200 and pid == first_ids[delivery]
        ),
        "pipeline_ids": made,
    }


def _queued_plans(settings: Settings) -> dict[int, int] | None:
    """How many plan requests wait in the broker's service queue for each pipeline (on Redis;
    None for another broker)."""
    if not settings.broker_url.startswith("redis://"):
        return None
    import base64
    from collections import Counter

    import redis

    from web.routing import SERVICE_QUEUE
    from web.tasks import PLAN_PIPELINE, PLAN_PIPELINES

    client = redis.Redis.from_url(settings.broker_url)
    counts: Counter[int] = Counter()
    try:
        for raw in client.lrange(SERVICE_QUEUE, 0, -1):
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            if message["headers"]["task"] == PLAN_PIPELINES:
                counts.update(pipeline_id for pipeline_id, _ in args[0])
            elif message["headers"]["task"] == PLAN_PIPELINE:
                counts[args[0]] += 1
    finally:
        client.close()
    return counts


def _load_average() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


def _deferred_throughput(services: Services, sha: str, deliveries: int) -> float:
    """Deliveries per second through what the hook does past HTTP and the signature, planning
    left to a worker: the delivery and its pipeline recorded together (one statement on
    PostgreSQL), the plan request handed to the sender (`web.tasks.PlanSender`)."""
    from web.db.deliveries import record_delivery_pipeline
    from web.db.schemas import DeliveryCreate
    from web.hooks.trigger import Trigger
    from web.orchestration import pipeline_of_trigger, start_trigger_pipeline

    def deliver(index: int) -> None:
        delivery = f"deferred-{index}-{uuid.uuid4()}"
        trigger = Trigger(
            provider="github",
            delivery_id=delivery,
            event="push",
            kind="push",
            ref="refs/heads/main",
            branch="main",
            tag=None,
            sha=sha,
            before_sha="0" * 40,
            fetch_ref="refs/heads/main",
            message="bench",
            author="Ada <ada@example.com>",
            timestamp="",
            repository="acme/shop",
            clone_url="",
            default_branch="main",
            changed_files=(),
        )
        with services.database.transaction() as session:
            recorded, made = record_delivery_pipeline(
                session=session,
                delivery=DeliveryCreate(
                    provider=Provider.GITHUB, delivery_id=delivery, event="push", payload=b"{}"
                ),
                pipeline=pipeline_of_trigger(1, trigger),
                outcome="pipeline",
            )
        assert made is not None
        start_trigger_pipeline(
            services=services,
            pipeline=made,
            trigger=trigger,
            delivery_row_id=recorded.id,
            plan_now=False,
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        began = time.perf_counter()
        list(pool.map(deliver, range(deliveries)))
        return round(deliveries / (time.perf_counter() - began), 1)


LIST_PLAN = """stages: [build, test, deploy]
build:
  stage: build
  image: busybox:latest
  script: [make build]
  artifacts: {paths: [dist/]}
test:
  stage: test
  image: busybox:latest
  script: [make test]
deploy:
  stage: deploy
  image: busybox:latest
  script: [make deploy]
  rules: [{if: '$CI_COMMIT_BRANCH == "main"'}]
"""


FILL_PIPELINES = """
INSERT INTO pipelines (repository_id, source, ref, tag, sha, message, author_name, author_email,
    status, reason, variables, trigger, plan, lock_version, created_at, started_at, finished_at)
SELECT :repository, CASE WHEN i % 1000 = 0 THEN 'api' ELSE 'push' END, 'branch-' || (i % 50),
    false, lpad(to_hex(i), 40, '0'), 'Change ' || i || E'\\n\\nWhat it does and why.',
    'Ada Lovelace', 'ada@example.com',
    (ARRAY['success', 'failed', 'canceled', 'running'])[i % 4 + 1], '', '{}', '{}',
    CAST(:plan AS json), 0, now() - make_interval(secs => :count - i),
    now() - make_interval(secs => :count - i),
    CASE WHEN i % 4 = 3 THEN NULL ELSE now() - make_interval(secs => :count - i - 1) END
FROM generate_series(0, :count - 1) AS i ORDER BY i
"""
FILL_JOBS = """
INSERT INTO jobs (pipeline_id, name, stage, position, status, reason, "when", allow_failure,
    attempt, retried, cancel_requested, log_lines, tags, created_at)
SELECT p.id, s.name, s.name, s.position,
    CASE WHEN p.status = 'running' AND s.position = 2 THEN 'pending' ELSE p.status END,
    '', 'on_success', false, 1, false, false, 0, '[]', p.created_at
FROM pipelines AS p CROSS JOIN (VALUES ('build', 0), ('test', 1), ('deploy', 2))
    AS s(name, position)
WHERE p.repository_id = :repository ORDER BY p.id, s.position
"""


def _fill_pipelines(services: Services, repository_id: int, count: int) -> None:
    """`count` pipelines as a busy repository's history holds them, made by PostgreSQL itself
    (INSERT ... SELECT): 50 branches, four statuses in turn, one in 1,000 run through the API,
    each with the plan it ran (about 13 kB of JSON, never shown by a list) and three jobs
    (build, test, deploy), whose statuses the dashboard sums up per stage; then ANALYZE, as
    autovacuum would."""
    from sqlalchemy import text

    from pipeline import TriggerContext, loads, plan

    the_plan = json.dumps(
        plan(loads(LIST_PLAN), TriggerContext(source="push", branch="main")).to_dict()
    )
    with services.database.transaction() as session:
        session.execute(
            text(FILL_PIPELINES),
            {"repository": repository_id, "plan": the_plan, "count": count},
        )
        session.execute(text(FILL_JOBS), {"repository": repository_id})
    with services.database.engine.connect() as connection:
        connection.execute(text("ANALYZE pipelines"))
        connection.execute(text("ANALYZE jobs"))
        connection.commit()


def _time_gets(address: tuple[str, int], paths: dict[str, str], warmup: int, count: int) -> Any:
    """GET each path `warmup` times untimed, then `count` times timed, over one kept-alive
    connection (http.client, in a client process apart from the server's); the seconds of
    each timed call by label. A call that is not a 200 with pipelines in it stops the run."""
    import http.client

    connection = http.client.HTTPConnection(*address, timeout=60)
    spent: dict[str, list[float]] = {}
    try:
        for label, path in paths.items():
            spent[label] = []
            for n in range(warmup + count):
                sent = time.perf_counter()
                connection.request("GET", path)
                answer = connection.getresponse()
                body = answer.read()
                took = time.perf_counter() - sent
                if n >= warmup:
                    spent[label].append(took)
                found = b'"id":' in body if path.startswith("/api/") else b"branch-" in body
                if answer.status != 200 or not found:
                    raise SystemExit(f"GET {path}: {answer.status} {body[:200]!r}")
    finally:
        connection.close()
    return spent


CONCURRENT = 8  # clients listing at the same moment, for the row that shows a busy server


def _time_concurrent_gets(address: tuple[str, int], path: str, count: int) -> list[float]:
    """GET `path` `count` times from each of `CONCURRENT` threads at once (one kept-alive
    connection each, the first tenth untimed): the seconds of each timed call."""

    def client(_: int) -> list[float]:
        return _time_gets(address, {path: path}, count // 10, count)[path]

    with ThreadPoolExecutor(max_workers=CONCURRENT) as threads:
        return [took for spent in threads.map(client, range(CONCURRENT)) for took in spent]


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(_quantile(values, 0.5) * 1000, 2),
        "p95": round(_quantile(values, 0.95) * 1000, 2),
        "p99": round(_quantile(values, 0.99) * 1000, 2),
        "n": len(values),
    }


def bench_pipeline_list(
    settings: Settings, work: Path, count: int = 100_000, requests: int = 500, warmup: int = 50
) -> dict[str, Any]:
    """`GET /api/v1/pipelines` over `count` recorded pipelines (with three jobs each): p50, p95
    and p99 of `requests` calls (after `warmup` untimed) of each filter and page, from a client
    process apart; the same reads through `list_pipelines` alone (the query and its rows, no
    HTTP); the dashboard's list page the same way. The load average is recorded around it."""
    import os
    from urllib.parse import urlencode

    from web.db.pipelines import list_pipelines

    upgrade(settings.database_url)
    app = create_celery(settings)
    services = app.services
    try:
        with services.database.transaction() as session:
            repository = create_repository(
                session=session,
                cipher=services.cipher(),
                new=RepositoryCreate(
                    name="acme/list",
                    clone_url=str(work / "none.git"),
                    provider=Provider.GITHUB,
                    webhook_secret=SECRET,
                ),
            )
        began = time.perf_counter()
        _fill_pipelines(services, repository.id, count)
        filled = time.perf_counter() - began
        with services.database.transaction() as session:
            first = list_pipelines(session=session)
        reads: dict[str, dict[str, Any]] = {
            "first page": {},
            "repo + branch": {"repository_id": repository.id, "ref": "branch-7"},
            "repo + status": {"repository_id": repository.id, "status": "running"},
            "status": {"status": "failed"},
            "branch, any repo": {"ref": "branch-7"},
            "source api (1 in 1000)": {"source": "api"},
            "after a cursor": {"cursor": first.next_cursor},
            "halfway down": {"cursor": str(first.items[0].id - count // 2)},
        }
        query_ms: dict[str, dict[str, float]] = {}
        for label, filters in reads.items():
            spent = []
            for n in range(warmup + requests):
                sent = time.perf_counter()
                with services.database.reading() as session:  # as the route reads
                    page = list_pipelines(session=session, **filters)
                if n >= warmup:
                    spent.append(time.perf_counter() - sent)
            if not page.items:
                raise SystemExit(f"list_pipelines({filters}) found nothing")
            query_ms[label] = _percentiles(spent)
        names = {"repository_id": "repo"}
        paths = {
            label: "/api/v1/pipelines?"
            + urlencode(
                {
                    names.get(k, k): "acme/list" if k == "repository_id" else v
                    for k, v in filters.items()
                }
            )
            for label, filters in reads.items()
        }
        pages = {"dashboard /": "/", "dashboard / filtered": "/?branch=branch-7&status=failed"}
        load_before = os.getloadavg()
        with _serving(settings, services) as base:
            host, port = base.removeprefix("http://").rsplit(":", 1)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                spent_by_label = pool.submit(
                    _time_gets, (host, int(port)), {**paths, **pages}, warmup, requests
                ).result()
                spent_by_label[f"first page, {CONCURRENT} at once"] = pool.submit(
                    _time_concurrent_gets, (host, int(port)), paths["first page"], requests
                ).result()
        load_after = os.getloadavg()
    finally:
        services.database.dispose()
    http_ms = {label: _percentiles(spent) for label, spent in spent_by_label.items()}
    return {
        "pipelines": count,
        "jobs_per_pipeline": 3,
        "fill_s": round(filled, 1),
        "requests": requests,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "http_ms": http_ms,
        "query_ms": query_ms,
    }


def _list_table(result: dict[str, Any]) -> None:
    """The list measurement as a table, against the issue's target (p95 ≤ 50 ms)."""
    print(
        f"\npipeline list over {result['pipelines']:,} pipelines"
        f" ({result['jobs_per_pipeline']} jobs each), {result['requests']} calls each;"
        f" load average {result['load_average_before'][0]} before,"
        f" {result['load_average_after'][0]} after\n"
    )
    print(
        f"{'':<24} {'HTTP p50':>9} {'p95':>7} {'p99':>7}   {'query p50':>9} {'p95':>7} {'p99':>7}"
    )
    for label, http in result["http_ms"].items():
        query = result["query_ms"].get(label)
        alone = f"{query['p50']:>9.2f} {query['p95']:>7.2f} {query['p99']:>7.2f}" if query else ""
        print(f"{label:<24} {http['p50']:>9.2f} {http['p95']:>7.2f} {http['p99']:>7.2f}   {alone}")
    worst = max(h["p95"] for label, h in result["http_ms"].items() if label in result["query_ms"])
    # (the row of clients at once is the same page under load: shown, not the target's measure)
    verdict = "met" if worst <= 50 else "NOT met"
    print(f"\nworst API p95 {worst:.2f} ms: target p95 <= 50 ms {verdict} ({worst / 50:.2f} of it)")


SCALE_PIPELINE = "".join(
    f"job{n}:\n  image: busybox:latest\n  script: ['sleep 1']\n" for n in range(4)
)


def bench_workers(
    settings: Settings, work: Path, images: Path, pipelines: int = 20
) -> dict[str, Any]:
    """`pipelines` pipelines of 4 jobs (`sleep 1` each) through one `kapal worker` process,
    then through two (each `--concurrency 2`): seconds from the first pipeline made to the
    last one finished, and whether any job ran more than once."""
    import os
    import signal
    import subprocess

    from web.db.models import Job
    from web.orchestration import create_pipeline_for_ref

    upgrade(settings.database_url)
    app = create_celery(settings)
    services = app.services
    project = Project(work / "scale-repos")
    project.commit({".kapal.yml": SCALE_PIPELINE})
    project.push()
    with services.database.transaction() as session:
        repository = create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name="acme/scale",
                clone_url=str(project.origin),
                provider=Provider.GITHUB,
                webhook_secret=SECRET,
            ),
        )
    env = dict(
        os.environ,
        KAPAL_DATABASE_URL=settings.database_url,
        KAPAL_BROKER_URL=settings.broker_url,
        KAPAL_ENCRYPTION_KEY="bench",
    )
    result: dict[str, Any] = {"pipelines": pipelines, "jobs_per_pipeline": 4}
    try:
        for count in (1, 2):
            processes = []
            for n in range(count):
                data = work / f"worker-{count}-{n}"
                data.mkdir(parents=True)
                (data / "images").symlink_to(images)
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "web.cli", "worker", "-c", "2", "-l", "warning"],
                        env=dict(env, KAPAL_DATA_DIR=str(data)),
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(5)  # the workers connect
            began = time.perf_counter()
            made = [
                create_pipeline_for_ref(
                    services=services, repository_id=repository.id, ref="main"
                ).id
                for _ in range(pipelines)
            ]
            ends = [_wait(services, p, FINISHED.__contains__) for p in made]
            spent = time.perf_counter() - began
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(60)
            with services.database.transaction() as session:
                attempts = session.scalar(
                    select(func.count(Job.id)).where(Job.pipeline_id.in_(made))
                )
            result[f"{count}_worker_s"] = round(spent, 1)
            result[f"{count}_worker_ok"] = ends.count("success") == pipelines
            result[f"{count}_worker_job_rows"] = attempts
        result["speedup"] = round(result["1_worker_s"] / result["2_worker_s"], 2)
    finally:
        services.database.dispose()
    return result


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--stack", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument(
        "--part",
        choices=["latency", "list", "workers"],
        default="latency",
        help="latency: the per-stack measurements; list: the pipeline list over 100,000 "
        "pipelines (PostgreSQL); workers: 20 pipelines x 4 jobs through one worker, then two",
    )
    parser.add_argument("--list-size", type=int, default=100_000)
    options = parser.parse_args()
    if options.part in ("list", "workers"):
        _extra(options.part, options.list_size)
        return
    web.execution.EmbeddedBackend = TimedBackend  # type: ignore[attr-defined]
    results = []
    with tempfile.TemporaryDirectory(prefix="kapal-bench-server-") as temporary:
        root = Path(temporary)
        images = root / "images"
        bootstrap_busybox(ImageStore(images), "busybox:latest")
        stacks = ["embedded", "postgres"] if options.stack == "both" else [options.stack]
        for name in stacks:
            work = root / name
            data = work / "data"
            data.mkdir(parents=True)
            (data / "images").symlink_to(images)
            if name == "embedded":
                settings = Settings(data_dir=data, secret_key=SecretStr("bench"))
                results.append(
                    bench_stack(name, settings, work, options.repeat, options.deliveries)
                )
                continue
            server = start_postgres()
            with server.database() as url, run_redis(work / "redis") as redis_url:
                settings = Settings(
                    data_dir=data,
                    secret_key=SecretStr("bench"),
                    database_url=url,
                    broker_url=redis_url,
                )
                results.append(
                    bench_stack(
                        "postgresql+redis", settings, work, options.repeat, options.deliveries
                    )
                )
        shutil.rmtree(root / "embedded", ignore_errors=True)
    _report(results, options.repeat)


def _extra(part: str, list_size: int) -> None:
    """The pipeline list or the workers measurement on PostgreSQL + Redis; merged into
    bench/results/server.json under its name."""
    with tempfile.TemporaryDirectory(prefix="kapal-bench-server-") as temporary:
        root = Path(temporary)
        images = root / "images"
        bootstrap_busybox(ImageStore(images), "busybox:latest")
        data = root / "data"
        data.mkdir()
        (data / "images").symlink_to(images)
        server = start_postgres()
        with server.database() as url, run_redis(root / "redis") as redis_url:
            settings = Settings(
                data_dir=data, secret_key=SecretStr("bench"), database_url=url, broker_url=redis_url
            )
            if part == "list":
                result = bench_pipeline_list(settings, root, count=list_size)
            else:
                result = bench_workers(settings, root, images)
    print(json.dumps(result, indent=2))
    if part == "list":
        _list_table(result)
    out = ROOT / "bench" / "results" / "server.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(out.read_text()) if out.exists() else {"machine": platform.node()}
    recorded[f"{part}"] = result
    out.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"\nmerged into {out.relative_to(ROOT)}")


def _report(results: list[dict[str, Any]], repeat: int) -> None:
    print(f"\nkapal service, {platform.node()}: medians of {repeat} (p90 in brackets)\n")
    print(
        f"{'stack':<18} {'accepted':>16} {'first container':>18} {'cancel':>9} {'hooks/s':>9}"
        f" {'deferred/s':>11}"
    )
    for r in results:
        accepted, first = r["accepted_ms"], r["first_container_ms"]
        print(
            f"{r['stack']:<18} {accepted['median']:>7.1f} ms ({accepted['p90']:>5.0f})"
            f" {first['median']:>8.1f} ms ({first['p90']:>5.0f})"
            f" {r['cancel_ms']:>6.0f} ms {r['deliveries_per_s']:>9.1f}"
            f" {r['deferred_per_s']:>11.1f}"
        )
        loud = r["log_50mb"]
        print(
            f"{'':<18} a job printing 50 MB: {loud['status']} in {loud['seconds']} s, worker "
            f"process RSS growth {loud['rss_growth_mib']} MiB"
        )
        print(
            f"{'':<18} hooks/s: kapal serve --workers 2; {r['deliveries_per_s_1_process']}/s "
            f"with one HTTP process; p50 {r['delivery_p50_ms']} ms, p99 {r['delivery_p99_ms']} "
            f"ms; load average {r['load_average'][0]}"
        )
        queued = r.get("plan_requests_queued_once")
        print(
            f"{'':<18} {r['accepted']}/{r['deliveries']} deliveries accepted, "
            f"{r['pipelines_made']} pipelines, {r['redeliveries_same_pipeline']}/"
            f"{r['redeliveries']} redeliveries answered with their first pipeline"
            + ("" if queued is None else f", {queued} plan requests in the broker once each")
        )
    out = ROOT / "bench" / "results" / "server.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(out.read_text()) if out.exists() else {}
    extra = {k: v for k, v in kept.items() if k in ("list", "workers")}
    out.write_text(
        json.dumps(
            {"machine": platform.node(), "repeat": repeat, "results": results, **extra}, indent=2
        )
        + "\n"
    )
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
