"""Containers: the Backend protocol, the embedded runc backend and the fake backend.

    from runner.runtime import ContainerSpec, SandboxSpec, run_container
    from runner.runtime.embedded import EmbeddedBackend   # runc; imported on demand
    from runner.runtime.fake import FakeBackend           # scripted, for tests of layers above

The lifecycle and thread rules of a backend are in `runner.runtime.backend`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names are imported on first use: a module of this package (the settings reader that a warm
# `kapal build` needs, say) must not pay for the backend's classes and threads at start.
_SOURCES = {
    **dict.fromkeys(
        (
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
        ),
        "runner.runtime.backend",
    ),
    "run_container": "runner.runtime.oneshot",
}

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


def __getattr__(name: str) -> Any:
    """Import a public name from the module that holds it, on first use."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
