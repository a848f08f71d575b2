"""Containers: the Backend protocol, the embedded runc backend and the fake backend.

    from runner.runtime import ContainerSpec, SandboxSpec, run_container
    from runner.runtime.embedded import EmbeddedBackend   # runc; imported on demand
    from runner.runtime.fake import FakeBackend           # scripted, for tests of layers above

The lifecycle and thread rules of a backend are in `runner.runtime.backend`.
"""

from runner.runtime.backend import (
    Backend,
    Container,
    ContainerSpec,
    ExitStatus,
    ImageDefaults,
    Limits,
    LogLine,
    Mount,
    Sandbox,
    SandboxSpec,
)
from runner.runtime.oneshot import run_container

__all__ = [
    "Backend",
    "Container",
    "ContainerSpec",
    "ExitStatus",
    "ImageDefaults",
    "Limits",
    "LogLine",
    "Mount",
    "Sandbox",
    "SandboxSpec",
    "run_container",
]
