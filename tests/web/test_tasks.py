"""The Celery app: its configuration, the task policy (user errors are results, a database
that fails is retried), the embedded SQLite broker's quick pickup, and `kapal worker` apart
from the web process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError

from web.broker import POLLING_INTERVAL, TRANSPORT_PATH, broker_settings
from web.settings import Settings
from web.tasks import ADVANCE_PIPELINE, RUN_JOB, celery_settings, create_celery


def test_the_celery_configuration_acknowledges_late_one_message_at_a_time(tmp_path: Path) -> None:
    conf = celery_settings(Settings(data_dir=tmp_path, secret_key=SecretStr("k")))
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]
    assert conf["result_backend"] is None


def test_the_embedded_broker_uses_the_quickly_polled_sqlite_transport(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr("k"))
    assert settings.broker_url.startswith("sqla+sqlite:///")
    conf = broker_settings(settings.broker_url)
    assert conf["broker_url"] == f"sqlite:///{tmp_path / 'broker.db'}"
    assert conf["broker_transport"] == TRANSPORT_PATH
    assert broker_settings("redis://127.0.0.1:6379/0") == {"broker_url": "redis://127.0.0.1:6379/0"}
    app = create_celery(settings)
    try:
        with app.connection_for_write() as connection:
            assert connection.transport.polling_interval == POLLING_INTERVAL
            connection.default_channel.queue_declare("kapal")  # the engine accepts the options
    finally:
        app.services.database.dispose()


def test_a_user_error_is_a_result_and_a_failing_database_is_retried(
    tmp_path: Path, migrated_sqlite: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    shutil.copyfile(migrated_sqlite, tmp_path / "kapal.db")
    app = create_celery(Settings(data_dir=tmp_path, secret_key=SecretStr("k"), task_max_retries=2))
    app.conf.task_always_eager = True
    try:
        # a pipeline that does not exist: NotFoundError, recorded as the task's result
        result = app.tasks[ADVANCE_PIPELINE].apply(args=[999])
        assert result.successful() and result.result is None
        # the database goes away: the task is tried again, then gives up with the error
        (tmp_path / "kapal.db").unlink()
        (tmp_path / "kapal.db").mkdir()  # now not openable as a database
        app.services.database.dispose()
        caplog.clear()
        result = app.tasks[RUN_JOB].apply(args=[1])
        assert result.failed()
        assert isinstance(result.result, OperationalError)
        said = [r.getMessage() for r in caplog.records if r.name == "web.tasks"]
        assert [m.split("); ")[1] for m in said] == [
            "retry 1 in 1s",
            "retry 2 in 2s",
            "gave up after 2 retries",
        ]
    finally:
        app.services.database.dispose()


def test_kapal_worker_runs_apart_and_stops_on_sigterm(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(migrated_sqlite, data / "kapal.db")
    env = dict(os.environ, KAPAL_DATA_DIR=str(data), KAPAL_SECRET_KEY="k")
    worker = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "worker", "--concurrency", "1", "-n", "apart@test"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        app = create_celery(Settings(data_dir=data, secret_key=SecretStr("k")))
        try:
            # a job id that does not exist: the worker takes the message and says so
            app.services.dispatcher.run_jobs([424242])
        finally:
            app.services.database.dispose()
        deadline = time.monotonic() + 60
        seen = ""
        assert worker.stdout is not None
        while "424242" not in seen and time.monotonic() < deadline:
            seen += worker.stdout.readline()
        assert "job 424242 not claimed by apart@test: it is unknown" in seen
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


def test_kapal_worker_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = dict(os.environ, KAPAL_DATA_DIR=str(tmp_path), KAPAL_SECRET_KEY="k")
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "run `kapal migrate`" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("level", ["loud"])
def test_kapal_worker_refuses_a_bad_log_level(tmp_path: Path, level: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "worker", "--loglevel", level],
        env=dict(os.environ, KAPAL_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "use debug, info, warning or error" in done.stderr


def test_kapal_worker_refuses_queues_it_cannot_serve(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "worker", "--queues", "kapal,docker+linux"],
        env=dict(os.environ, KAPAL_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "error: queue 'docker+linux': use a job tag (no spaces, no '+'" in done.stderr
    assert "Traceback" not in done.stderr
