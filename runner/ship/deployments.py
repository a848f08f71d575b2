"""Deployment records: what was shipped where, when, by whom, and whether it worked.

A `Deployment` is written by the job that ships (`runner.ship.deploy.Shipper`) through a
`DeploymentLog`: `kapal run` keeps them in JSON-lines files under `<data_dir>/deployments/`
(`LocalDeployments`, one file per environment); the service keeps them in its database
(`web.db.environments`). Rollback reads them back to re-deploy an earlier deployment's digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from runner.errors import ShipError


@dataclass(frozen=True)
class Deployment:
    """One deployment of an image digest to an environment.

    `kind` is `registry` (`deploy: to:`), `service` (`deploy: service:`) or `script` (a script
    job with an `environment:`). `target` is the destination reference or the service name;
    `spec` holds what a rollback needs to do it again (the service's port, health, env...).
    """

    environment: str
    kind: str
    digest: str
    image: str = ""
    target: str = ""
    status: str = "success"  # success, failed
    user: str = ""
    pipeline_id: int | None = None
    job: str = ""
    rollback_of: int | None = None
    message: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    id: int | None = None


class DeploymentLog(Protocol):
    """Where deployments are recorded and read back; methods may be called from any thread."""

    def record(self, deployment: Deployment) -> Deployment:
        """Store `deployment`; return it with its id and time."""
        ...

    def history(self, environment: str) -> list[Deployment]:
        """Every deployment of `environment`, oldest first."""
        ...


def environment_file_name(environment: str) -> str:
    """A file name of its own for an environment name (which may hold `/`, as GitLab's
    `review/x` does): the name when it is a plain one, else its safe letters and a hash."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", environment)[:80]
    if safe == environment and safe:
        return f"{safe}.jsonl"
    digest = hashlib.sha256(environment.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe}~{digest}.jsonl"


def deployments_dir(data_dir: Path) -> Path:
    """Where `kapal run` records deployments."""
    return data_dir / "deployments"


class LocalDeployments:
    """Deployments of `kapal run`, JSON lines under `root` (one file per environment)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, environment: str) -> Path:
        return self.root / environment_file_name(environment)

    def record(self, deployment: Deployment) -> Deployment:
        """Append `deployment` with the next id of its environment."""
        self.root.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock  # only a writer locks: `kapal deployments` goes without

        path = self._file(deployment.environment)
        with FileLock(str(path) + ".lock"):
            done = self.history(deployment.environment)
            stored = replace(
                deployment,
                id=(done[-1].id or 0) + 1 if done else 1,
                created_at=deployment.created_at or time.time(),
                user=deployment.user or os.environ.get("USER", ""),
            )
            with path.open("a") as out:
                out.write(json.dumps(asdict(stored)) + "\n")
        return stored

    def history(self, environment: str) -> list[Deployment]:
        """The environment's deployments, oldest first (unreadable lines are skipped)."""
        try:
            lines = self._file(environment).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                deployment = Deployment(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if deployment.environment == environment:
                out.append(deployment)
        return out

    def environments(self) -> list[str]:
        """Every environment with at least one deployment."""
        if not self.root.is_dir():
            return []
        names = []
        for path in sorted(self.root.glob("*.jsonl")):
            first = self.history_file(path)
            if first:
                names.append(first[0].environment)
        return names

    def history_file(self, path: Path) -> list[Deployment]:
        """The deployments in one file."""
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(Deployment(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return out


def current(history: list[Deployment]) -> Deployment | None:
    """The deployment in place: the last one that succeeded."""
    done = [d for d in history if d.status == "success"]
    return done[-1] if done else None


def rollback_target(history: list[Deployment], to: int | None = None) -> Deployment:
    """The deployment a rollback re-deploys: `to`, else the last success before the current one
    with another digest. `ShipError` when there is none."""
    done = [d for d in history if d.status == "success"]
    if to is not None:
        for deployment in history:
            if deployment.id == to:
                if deployment.status != "success":
                    raise ShipError(f"deployment {to} failed; roll back to one that succeeded")
                return deployment
        raise ShipError(f"there is no deployment {to} in this environment")
    if not done:
        raise ShipError("nothing was deployed to this environment yet")
    now = done[-1]
    for deployment in reversed(done[:-1]):
        if deployment.digest != now.digest or deployment.target != now.target:
            return deployment
    raise ShipError(
        f"no earlier deployment to roll back to (deployment {now.id} is the only one that "
        "succeeded)"
    )
