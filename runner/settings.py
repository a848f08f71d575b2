"""Runner settings: where kapal keeps its data and how it runs containers (`KAPAL_*` variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.runtime.environment import default_data_dir
from runner.runtime.policy import ContainerPolicy
from runner.settings_env import container_policy


def _default_data_dir() -> Path:
    return default_data_dir()


class RunnerSettings(BaseSettings):
    """Settings shared by `kapal run`, `kapal image`, `kapal build` and the workers.

    The web service's `Settings` extends this class, so there is one source of truth per variable.
    """

    model_config = SettingsConfigDict(env_prefix="KAPAL_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    runtime: str = ""  # path or name of the OCI runtime; empty: detect runc/crun
    insecure_registries: list[str] = Field(default_factory=list)
    # Registries `image:` references are pulled from when not in the local store, in order.
    # A reference naming one of them pulls from it; a docker.io one is looked up in each (mirrors).
    # Empty (the default): kapal never pulls on its own; `kapal image pull` still works.
    pull_registries: list[str] = Field(default_factory=list)
    # Registry credentials, docker config.json format ({"auths": {"host:port": {"auth": ...}}}).
    # None: ~/.docker/config.json.
    registry_auth_file: Path | None = None
    # What every job, service and build RUN container gets (sizes like 512m, 4g; CPUs may be
    # fractional), and the maximums nothing exceeds: `kapal run --memory/--cpus/--pids` are
    # refused above them and a job's `timeout:` is cut to `max_job_timeout`.
    job_memory: str = "4g"
    job_cpus: float = Field(default=2.0, gt=0)
    job_pids: int = Field(default=4096, gt=0)
    max_job_memory: str = "16g"
    max_job_cpus: float = Field(default=8.0, gt=0)
    max_job_pids: int = Field(default=32768, gt=0)
    max_job_timeout: str = "24h"
    # Disk a job's containers may write to (their writable layers), per job; "none": no cap
    # (no loop-mounted disk per job, for hosts without loop devices).
    job_disk: str = "10g"
    # `network: host` shares the host's network (and its loopback services) with a job.
    # `kapal run` allows it; the service's settings turn it off by default.
    allow_host_network: bool = True
    # Networks (CIDRs, comma-separated, e.g. "192.0.2.10/32,10.20.0.0/16") jobs on the default
    # network may reach although they are the host's own addresses or link-local (169.254.0.0/16:
    # the cloud metadata service), which are refused otherwise (runner.runtime.firewall).
    job_allowed_networks: str = ""
    # The builder's cache (layers of build steps, RUN --mount=type=cache directories) is pruned to
    # this size, least recently used first, by `kapal image gc` and `kapal build --prune`.
    build_cache_max: str = "20g"
    # The GitLab instance `include: project`, `component` and `template` read from (its URL,
    # e.g. https://gitlab.example.com) and the access token (read_api scope) sent to it, and
    # only to it, for private projects. Empty: those includes are refused, each with one error.
    gitlab_url: str = ""
    gitlab_token: str = Field(default="", repr=False)

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
