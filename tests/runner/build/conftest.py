"""Fixtures for builder tests: a real embedded backend, a per-test build cache, a build helper."""

from __future__ import annotations

import contextlib
import functools
import http.server
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.build.builder import Builder, BuildOptions, BuildResult
from runner.build.cache import LayerCache
from runner.images import ImageStore
from runner.images.image import Image
from runner.runtime.backend import ContainerSpec, ImageDefaults, LogLine
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.oneshot import run_container
from runner.settings import RunnerSettings


@dataclass
class RecordingReporter:
    """Keeps what the builder reported: step texts, which steps were cached, RUN output."""

    steps: list[str] = field(default_factory=list)
    cached_steps: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        self.steps.append(text)

    def cached(self) -> None:
        self.cached_steps.append(self.steps[-1])

    def line(self, line: LogLine) -> None:
        self.lines.append(line.text)

    def done(self, seconds: float) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)


@pytest.fixture(scope="session")
def embedded_backend(kapal_settings: RunnerSettings) -> EmbeddedBackend:
    """The real runc backend on the session's data dir."""
    return EmbeddedBackend(kapal_settings)


@dataclass
class BuildHelper:
    """Writes a context, builds it, and runs commands in the result."""

    store: ImageStore
    backend: EmbeddedBackend
    cache_dir: Path
    root: Path
    reporter: RecordingReporter = field(default_factory=RecordingReporter)

    def context(self, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
        ctx = self.root / "ctx"
        ctx.mkdir(parents=True, exist_ok=True)
        (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())
        for name, content in (files or {}).items():
            path = ctx / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return ctx

    def build(self, context: Path, **options: Any) -> BuildResult:
        self.reporter = RecordingReporter()
        cache = LayerCache(options.pop("cache_dir", self.cache_dir))
        builder = Builder(
            store=self.store, cache=cache, backend=self.backend, reporter=self.reporter
        )
        return builder.build(BuildOptions(context=context, **options))

    def run(self, image: Image, *command: str, user: str | None = None) -> tuple[int, str]:
        out: list[str] = []
        spec = ContainerSpec(
            layers=tuple(self.store.unpacked_layers(image)),
            image=ImageDefaults.from_image_config(image.config),
            command=tuple(command) if command else None,
            user=user,
        )
        status = run_container(self.backend, spec, on_line=lambda line: out.append(line.text))
        return status.exit_code, "\n".join(out)


@pytest.fixture
def builds(
    image_store: ImageStore, embedded_backend: EmbeddedBackend, tmp_path: Path
) -> BuildHelper:
    """A build helper with its own build cache under tmp_path."""
    return BuildHelper(image_store, embedded_backend, tmp_path / "cache", tmp_path)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[int]:
    """Serve `directory` over HTTP on 127.0.0.1 (ADD of URLs, repositories); yield the port."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
