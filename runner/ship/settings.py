"""Ship settings (`KAPAL_*` variables) and the `Shipper` a local `kapal run` uses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.errors import ShipError
from runner.images.store import ImageStore
from runner.settings import RunnerSettings
from runner.ship.deploy import ShipContext, Shipper
from runner.ship.deployments import LocalDeployments
from runner.ship.push import PushSettings
from runner.ship.services import Services


class ShipSettings(BaseSettings):
    """How services are rolled out: the health check's deadline, the old version's drain time."""

    model_config = SettingsConfigDict(env_prefix="KAPAL_", extra="ignore")

    service_health_timeout: float = Field(default=60.0, gt=0)
    service_drain: float = Field(default=1.0, ge=0)
    # the host ports services may be published on (`FIRST-LAST`)
    service_ports: str = "1024-65535"

    def port_range(self) -> tuple[int, int]:
        """`service_ports` as (first, last); ShipError when it is not FIRST-LAST."""
        first, sep, last = self.service_ports.partition("-")
        if sep and first.strip().isdigit() and last.strip().isdigit():
            low, high = int(first), int(last)
            if 1 <= low <= high <= 65535:
                return low, high
        raise ShipError(
            f"KAPAL_SERVICE_PORTS={self.service_ports!r}: write it as FIRST-LAST (1-65535)"
        )


def services_for(settings: RunnerSettings, ship: ShipSettings | None = None) -> Services:
    """The services of this data dir (`<data_dir>/services`)."""
    ship = ship or ShipSettings()
    return Services(
        settings.data_dir / "services",
        settings.data_dir,
        health_timeout=ship.service_health_timeout,
        drain=ship.service_drain,
        ports=ship.port_range(),
    )


def deployments_dir(data_dir: Path) -> Path:
    """Where `kapal run` records deployments."""
    return data_dir / "deployments"


def local_shipper(
    settings: RunnerSettings,
    store: ImageStore,
    owner: str,
    pipeline_id: int | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Shipper:
    """The shipper of a `kapal run` pipeline (or a local rollback): local records, the
    operator's auth file, the run's `secrets`."""
    return Shipper(
        store,
        owner=owner,
        services=services_for(settings),
        deployments=LocalDeployments(deployments_dir(settings.data_dir)),
        push=PushSettings(
            insecure=tuple(settings.insecure_registries), auth_file=settings.registry_auth_file
        ),
        context=ShipContext(
            user=os.environ.get("USER", ""), pipeline_id=pipeline_id, secrets=dict(secrets or {})
        ),
    )
