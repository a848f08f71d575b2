"""Runner settings: where kapal keeps its data and how it runs containers (`KAPAL_*` variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "kapal"


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
