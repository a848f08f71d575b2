"""The settings the container runtime reads (`KAPAL_DATA_DIR`, `KAPAL_RUNTIME`), without pydantic.

`RunnerSettings` stays kapal's one settings class. But `kapal exec` and `kapal gc` start a fresh
Python process per call and need only these two variables, and importing pydantic-settings costs
about 0.2 s there (more than runc takes to run the container). So the runtime accepts anything
shaped like `RuntimeSettings` (a `RunnerSettings` is), and those two commands read the variables
the way pydantic-settings does: prefix `KAPAL_`, names case-insensitive, the same default data
dir. tests/runner/runtime/test_environment.py holds the two readers together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Protocol


class RuntimeSettings(Protocol):
    """What the embedded backend, `kapal gc` and `kapal exec` need to know."""

    @property
    def data_dir(self) -> Path:
        """Root of everything kapal keeps on disk."""
        ...

    @property
    def runtime(self) -> str:
        """Path or name of the OCI runtime; empty: detect runc/crun."""
        ...

    @property
    def images_dir(self) -> Path:
        """Root of the OCI image store."""
        ...

    @property
    def containers_dir(self) -> Path:
        """Root of per-container overlay dirs."""
        ...


def _lookup(environ: Mapping[str, str], name: str) -> str | None:
    wanted = f"kapal_{name}"
    for key, value in environ.items():
        if key.lower() == wanted:
            return value
    return None


class RuntimeEnvironment(NamedTuple):
    """`RuntimeSettings` read straight from `KAPAL_*` environment variables.

    A named tuple, not a dataclass: a warm `kapal build` reads it and nothing else that would
    import dataclasses (a few milliseconds of start-up)."""

    data_dir: Path
    runtime: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RuntimeEnvironment:
        """Read `KAPAL_DATA_DIR` (default `~/.local/share/kapal`) and `KAPAL_RUNTIME`."""
        environ = os.environ if environ is None else environ
        data_dir = _lookup(environ, "data_dir")
        return cls(
            data_dir=Path(data_dir) if data_dir is not None else default_data_dir(),
            runtime=_lookup(environ, "runtime") or "",
        )

    @property
    def images_dir(self) -> Path:
        """Root of the OCI image store (as `RunnerSettings.images_dir`)."""
        return self.data_dir / "images"

    @property
    def containers_dir(self) -> Path:
        """Root of per-container overlay dirs (as `RunnerSettings.containers_dir`)."""
        return self.data_dir / "containers"


def default_data_dir() -> Path:
    """Where kapal keeps its data when `KAPAL_DATA_DIR` is not set."""
    return Path.home() / ".local" / "share" / "kapal"
