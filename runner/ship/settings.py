"""Ship settings (`KAPAL_*` variables) read with pydantic-settings, as the service reads them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# what a local run ships with lives in runner.ship.local (no pydantic); importers find it here too
from runner.ship.deployments import deployments_dir
from runner.ship.local import local_shipper, port_range, services_for

__all__ = ["ShipSettings", "deployments_dir", "local_shipper", "services_for"]


class ShipSettings(BaseSettings):
    """How services are rolled out: the health check's deadline, the old version's drain time."""

    model_config = SettingsConfigDict(env_prefix="KAPAL_", extra="ignore")

    service_health_timeout: float = Field(default=60.0, gt=0)
    service_drain: float = Field(default=1.0, ge=0)
    # the host ports services may be published on (`FIRST-LAST`)
    service_ports: str = "1024-65535"

    def port_range(self) -> tuple[int, int]:
        """`service_ports` as (first, last); ShipError when it is not FIRST-LAST."""
        return port_range(self.service_ports)
