"""`RunnerSettings` read from `KAPAL_*` variables without pydantic, for `kapal run`'s start-up.

`RunnerSettings` (runner/settings.py) stays kapal's one settings class: the service, the workers
and every other command use it. But `kapal run` starts a fresh Python process per pipeline, and
importing pydantic-settings (with pydantic) costs about 0.1 s of its start-up, more than a small
pipeline's jobs take. So `kapal run` reads the same variables the way pydantic-settings does
(prefix `KAPAL_`, names case-insensitive, lists as JSON, booleans as 1/0/true/false/yes/no/on/off,
numbers checked against the same bounds) into `EnvSettings`, which has every field and property
of `RunnerSettings` the run needs. tests/runner/test_settings_env.py holds the two readers
together: the same fields, the same values for the same environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from runner.errors import RunnerError
from runner.runtime.environment import default_data_dir

if TYPE_CHECKING:
    from runner.runtime.policy import ContainerPolicy

T = TypeVar("T")
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class PolicySettings(Protocol):
    """The settings a `ContainerPolicy` is made from (`RunnerSettings` and `EnvSettings`)."""

    @property
    def job_memory(self) -> str:
        """Memory of each container by default (a size like 4g)."""
        ...

    @property
    def job_cpus(self) -> float:
        """CPUs of each container by default."""
        ...

    @property
    def job_pids(self) -> int:
        """Processes per container by default."""
        ...

    @property
    def max_job_memory(self) -> str:
        """The most memory a container may ask for."""
        ...

    @property
    def max_job_cpus(self) -> float:
        """The most CPUs a container may ask for."""
        ...

    @property
    def max_job_pids(self) -> int:
        """The most processes a container may ask for."""
        ...

    @property
    def max_job_timeout(self) -> str:
        """The longest a job may run (a duration like 24h)."""
        ...

    @property
    def job_disk(self) -> str:
        """Disk a job's containers may write to ("none": no cap)."""
        ...

    @property
    def allow_host_network(self) -> bool:
        """Whether `network: host` is allowed."""
        ...

    @property
    def job_allowed_networks(self) -> str:
        """CIDRs (comma-separated) jobs may reach though they are the host's or link-local."""
        ...


def container_policy(settings: PolicySettings) -> ContainerPolicy:
    """The limits, caps, disk cap and network rule of `settings`; RunnerError if malformed."""
    from runner.runtime.backend import Limits
    from runner.runtime.durations import parse_duration
    from runner.runtime.policy import ContainerPolicy, allowed_networks
    from runner.runtime.quantities import parse_size

    try:
        max_timeout = parse_duration(settings.max_job_timeout)
    except RunnerError as err:
        raise RunnerError(f"KAPAL_MAX_JOB_TIMEOUT: {err}") from None
    return ContainerPolicy(
        defaults=Limits(
            memory_bytes=parse_size(settings.job_memory, what="KAPAL_JOB_MEMORY"),
            cpus=settings.job_cpus,
            pids=settings.job_pids,
        ),
        caps=Limits(
            memory_bytes=parse_size(settings.max_job_memory, what="KAPAL_MAX_JOB_MEMORY"),
            cpus=settings.max_job_cpus,
            pids=settings.max_job_pids,
        ),
        max_timeout=max_timeout,
        allow_host_network=settings.allow_host_network,
        allowed_networks=allowed_networks(settings.job_allowed_networks),
        disk_bytes=(
            None
            if settings.job_disk.strip().lower() == "none"
            else parse_size(settings.job_disk, what="KAPAL_JOB_DISK")
        ),
    )


def _number(kind: Callable[[str], T], text: str, name: str, *, minimum: float) -> T:
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(text.strip())
    except ValueError:
        raise RunnerError(f"KAPAL_{name.upper()}={text!r}: expected {what}") from None
    if not value > minimum:  # type: ignore[operator]
        raise RunnerError(f"KAPAL_{name.upper()}={text!r}: must be greater than {minimum:g}")
    return value


def _boolean(text: str, name: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise RunnerError(f"KAPAL_{name.upper()}={text!r}: expected true or false")


def _strings(text: str, name: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RunnerError(
            f'KAPAL_{name.upper()}={text!r}: expected a JSON list of strings, e.g. ["host:5000"]'
        )
    return value


@dataclass(frozen=True)
class EnvSettings:
    """The fields of `RunnerSettings`, read straight from `KAPAL_*` environment variables."""

    data_dir: Path = field(default_factory=default_data_dir)
    runtime: str = ""
    insecure_registries: list[str] = field(default_factory=list)
    pull_registries: list[str] = field(default_factory=list)
    registry_auth_file: Path | None = None
    job_memory: str = "4g"
    job_cpus: float = 2.0
    job_pids: int = 4096
    max_job_memory: str = "16g"
    max_job_cpus: float = 8.0
    max_job_pids: int = 32768
    max_job_timeout: str = "24h"
    job_disk: str = "10g"
    allow_host_network: bool = True
    job_allowed_networks: str = ""
    build_cache_max: str = "20g"
    gitlab_url: str = ""
    gitlab_token: str = field(default="", repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> EnvSettings:
        """Read every `KAPAL_*` setting (defaults as `RunnerSettings`); RunnerError if malformed."""
        environ = os.environ if environ is None else environ
        found = {
            key.lower().removeprefix("kapal_"): value
            for key, value in environ.items()
            if key.lower().startswith("kapal_")
        }
        values: dict[str, object] = {}
        for name, text in found.items():
            if name in ("data_dir", "registry_auth_file"):
                values[name] = Path(text)
            elif name in ("insecure_registries", "pull_registries"):
                values[name] = _strings(text, name)
            elif name in ("job_cpus", "max_job_cpus"):
                values[name] = _number(float, text, name, minimum=0)
            elif name in ("job_pids", "max_job_pids"):
                values[name] = _number(int, text, name, minimum=0)
            elif name == "allow_host_network":
                values[name] = _boolean(text, name)
            elif name in _TEXT_FIELDS:
                values[name] = text
        return cls(**values)  # type: ignore[arg-type]

    @property
    def images_dir(self) -> Path:
        """Root of the OCI image store."""
        return self.data_dir / "images"

    @property
    def containers_dir(self) -> Path:
        """Root of per-container state (bundles, overlay upper/work dirs)."""
        return self.data_dir / "containers"

    @property
    def build_cache_dir(self) -> Path:
        """Root of the image builder's instruction cache."""
        return self.data_dir / "build-cache"

    def container_policy(self) -> ContainerPolicy:
        """The limits, caps, disk cap and network rule for containers; RunnerError if malformed."""
        return container_policy(self)


_TEXT_FIELDS = frozenset(
    {
        "runtime",
        "job_memory",
        "max_job_memory",
        "max_job_timeout",
        "job_disk",
        "job_allowed_networks",
        "build_cache_max",
        "gitlab_url",
        "gitlab_token",
    }
)
