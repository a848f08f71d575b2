"""The `Shipper` a local `kapal run` uses, and the services of a data dir, without pydantic.

`ShipSettings` (runner/ship/settings.py) reads the rollout variables with pydantic-settings; a
`kapal run` reads the same three (`KAPAL_SERVICE_HEALTH_TIMEOUT`, `KAPAL_SERVICE_DRAIN`,
`KAPAL_SERVICE_PORTS`) with `ShipEnv.from_environ`, so that pipelines start without importing
pydantic (see runner/settings_env.py). tests/runner/test_settings_env.py holds the readers together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from runner.errors import RunnerError, ShipError
from runner.images.store import ImageStore
from runner.ship.deploy import ShipContext, Shipper
from runner.ship.deployments import LocalDeployments, deployments_dir
from runner.ship.push import PushSettings
from runner.ship.services import Services

if TYPE_CHECKING:
    from runner.settings import RunnerSettings
    from runner.settings_env import EnvSettings


class RolloutSettings(Protocol):
    """How services are rolled out (`ShipSettings` and `ShipEnv`)."""

    @property
    def service_health_timeout(self) -> float:
        """Seconds a new version has to answer its health check."""
        ...

    @property
    def service_drain(self) -> float:
        """Seconds the old version keeps serving after the switch."""
        ...

    def port_range(self) -> tuple[int, int]:
        """The host ports services may be published on (first, last)."""
        ...


def port_range(text: str) -> tuple[int, int]:
    """`KAPAL_SERVICE_PORTS` (`FIRST-LAST`) as (first, last); ShipError when it is not that."""
    first, sep, last = text.partition("-")
    if sep and first.strip().isdigit() and last.strip().isdigit():
        low, high = int(first), int(last)
        if 1 <= low <= high <= 65535:
            return low, high
    raise ShipError(f"KAPAL_SERVICE_PORTS={text!r}: write it as FIRST-LAST (1-65535)")


@dataclass(frozen=True)
class ShipEnv:
    """The fields of `ShipSettings`, read straight from `KAPAL_*` environment variables."""

    service_health_timeout: float = 60.0
    service_drain: float = 1.0
    service_ports: str = "1024-65535"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ShipEnv:
        """Read the three rollout settings (defaults as `ShipSettings`); RunnerError if bad."""
        environ = os.environ if environ is None else environ
        found = {key.lower(): value for key, value in environ.items()}
        timeout = _seconds(found, "service_health_timeout", 60.0, positive=True)
        drain = _seconds(found, "service_drain", 1.0, positive=False)
        return cls(timeout, drain, found.get("kapal_service_ports", "1024-65535"))

    def port_range(self) -> tuple[int, int]:
        """`service_ports` as (first, last); ShipError when it is not FIRST-LAST."""
        return port_range(self.service_ports)

    @classmethod
    def check(cls, environ: Mapping[str, str] | None = None) -> None:
        """Read and check every rollout setting; RunnerError naming the bad one. A server and
        a worker call it as they start, so a typo fails there, once, not each shipping job."""
        cls.from_environ(environ).port_range()


def _seconds(found: Mapping[str, str], name: str, default: float, *, positive: bool) -> float:
    text = found.get(f"kapal_{name}")
    if text is None:
        return default
    try:
        value = float(text.strip())
    except ValueError:
        raise RunnerError(f"KAPAL_{name.upper()}={text!r}: expected a number") from None
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise RunnerError(f"KAPAL_{name.upper()}={text!r}: must be {bound}")
    return value


def services_for(
    settings: RunnerSettings | EnvSettings, ship: RolloutSettings | None = None
) -> Services:
    """The services of this data dir (`<data_dir>/services`)."""
    ship = ship or ShipEnv.from_environ()
    return Services(
        settings.data_dir / "services",
        settings.data_dir,
        health_timeout=ship.service_health_timeout,
        drain=ship.service_drain,
        ports=ship.port_range(),
    )


def local_shipper(
    settings: RunnerSettings | EnvSettings,
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
