"""Fixtures of the security suite: real runc backends under a given policy, a host server.

`busybox` (the busybox image as a backend sees it) comes from tests/runner/runtime/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner.runtime.policy import ContainerPolicy
from runner.settings import RunnerSettings
from tests.runner.runtime.conftest import busybox
from tests.security.containers import BackendFactory, host_server
from tests.support.runtime_leftovers import RecordingBackend, leftovers

__all__ = ["busybox", "loopback_server", "policy_backend"]


@pytest.fixture
def policy_backend(kapal_settings: RunnerSettings) -> Iterator[BackendFactory]:
    """Make embedded backends with a policy; each is checked for leftovers after the test."""
    made: list[RecordingBackend] = []

    def make(policy: ContainerPolicy) -> RecordingBackend:
        backend = RecordingBackend(kapal_settings)
        backend.policy = policy
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.drain()
        left = leftovers(kapal_settings, backend.container_ids, backend.sandbox_ids)
        assert left == [], f"left behind: {left}"


@pytest.fixture
def loopback_server() -> Iterator[int]:
    """A server on the host's 127.0.0.1 that no job may reach; yields its port."""
    with host_server() as port:
        yield port
