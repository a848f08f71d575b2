"""`Shipper`: what `build: push:`, `deploy:` jobs and rollbacks do, for `JobRunner` and the CLI.

The image shipped is always the one in the local store, resolved once to its digest (for a
pipeline, in its owner's namespace first: the image the pipeline built and tested); it is never
rebuilt. `deploy: to:` pushes that digest to the destination; `deploy: service:` runs it through
`runner.ship.services`. Each deployment, and each service rollout that failed, is written to the
`DeploymentLog`; a push that fails records nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from filelock import FileLock, Timeout

from pipeline.plan import DeploySpec, Job
from runner.engine.variables import expand
from runner.errors import ImageError, RolloutError, ShipError
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.store import ImageStore
from runner.owners import owner_slug
from runner.runtime.backend import ImageDefaults
from runner.ship.deployments import (
    Deployment,
    DeploymentLog,
    current,
    environment_file_name,
    rollback_target,
)
from runner.ship.push import PushSettings, push_image, secret_credentials
from runner.ship.services import RolloutResult, ServiceRequest, Services

Log = Callable[[str], None]


@dataclass(frozen=True)
class ShipContext:
    """Who ships and from which pipeline job (recorded with each deployment)."""

    user: str = ""
    pipeline_id: int | None = None
    job: str = ""
    # the secrets of the run: a service's `env:` entry carrying one is recorded as written
    # (`$NAME`), never expanded, and expanded again from these on a rollback
    secrets: Mapping[str, str] = field(default_factory=dict)


def environment_of(job: Job, spec: DeploySpec | None, values: Mapping[str, str]) -> str:
    """The environment a job deploys to: its `environment: name`, else the service's name, else
    the destination reference."""
    if job.environment is not None and job.environment.name:
        return job.environment.name
    if spec is not None and spec.service is not None:
        return spec.service.name
    if spec is not None and spec.to:
        return _expand(spec.to, values)
    return job.name


def _host_port(value: int | str | None, values: Mapping[str, str]) -> int | None:
    """`host_port:` as a number, its variables expanded; ShipError when it is no port."""
    if value is None or isinstance(value, int):
        return value
    text = _expand(value, values).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ShipError(f"host_port {value!r} expands to {text!r}, which is not a port number")
    return int(text)


def _expand(text: str, values: Mapping[str, str]) -> str:
    return expand(text, values)


class Shipper:
    """Pushes, deploys and rolls back for the pipelines of one owner.

    Lifecycle: construct per pipeline (or per job on the server) with the owner's view of the
    store; methods may be called from any thread, one per job. Every failure is a `ShipError`
    with one line saying what and where.
    """

    def __init__(
        self,
        store: ImageStore,
        *,
        owner: str,
        services: Services,
        deployments: DeploymentLog,
        push: PushSettings,
        context: ShipContext | None = None,
    ) -> None:
        self.store = store.for_owner(owner)
        self.owner = owner
        self.services = services
        self.deployments = deployments
        self.push_settings = push
        self.context = context or ShipContext(user=os.environ.get("USER", ""))
        # deploys to one environment of one owner wait for each other, across pipelines
        self.locks = services.data_dir / "deploy-locks"

    @contextlib.contextmanager
    def _environment_lock(self, environment: str, log: Log) -> Iterator[None]:
        self.locks.mkdir(parents=True, exist_ok=True)
        name = f"{owner_slug(self.owner)}-{environment_file_name(environment)}.lock"
        lock = FileLock(str(self.locks / name))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"kapal: waiting for another deploy to {environment} to finish")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _image(self, name: str) -> Image:
        try:
            return self.store.resolve(Reference.parse(name))
        except ImageError as exc:
            raise ShipError(f"cannot ship {name}: {exc}") from None

    def push_built(self, tags: tuple[str, ...], values: Mapping[str, str], log: Log) -> str:
        """Push the image a build just tagged `tags` to each tag's registry; its digest."""
        image = self._image(tags[0])
        return push_image(
            self.store,
            image,
            tags,
            settings=self.push_settings,
            credentials=secret_credentials(values),
            log=log,
        )

    def deploy_job(self, job: Job, values: Mapping[str, str], log: Log) -> Deployment:
        """Run a `deploy:` job: push to `to:`, roll out `service:`; its recorded deployment.

        Deploys to one environment wait for each other (a lock per owner and environment)."""
        spec = job.deploy
        assert spec is not None
        with self._environment_lock(environment_of(job, spec, values), log):
            return self._deploy_job(job, spec, values, log)

    def _deploy_job(
        self, job: Job, spec: DeploySpec, values: Mapping[str, str], log: Log
    ) -> Deployment:
        name = _expand(spec.image, values)
        image = self._image(name)
        log(f"kapal: shipping {name} ({image.digest})")
        record = Deployment(
            environment=environment_of(job, spec, values),
            kind="service" if spec.service is not None else "registry",
            digest=image.digest,
            image=name,
            user=self.context.user,
            pipeline_id=self.context.pipeline_id,
            job=job.name,
        )
        ship_spec: dict[str, Any] = {}
        env: dict[str, str] | None = None
        if spec.service is not None and job.network == "host":
            raise ShipError(
                f"job {job.name}: a deploy service runs in a network namespace of its own; "
                "drop `network: host` (use `network: none` for a service with no outbound access)"
            )
        if spec.to:
            to = _expand(spec.to, values)
            self._push(image, to, values, log)
            ship_spec["to"] = to
            record = replace(record, target=to)
        if spec.service is not None:
            svc = spec.service
            env = {k: _expand(v, values) for k, v in svc.env}
            secret = sorted(k for k, v in svc.env if self._carries_secret(env[k]))
            ship_spec["service"] = {
                "name": svc.name,
                "port": svc.port,
                "host_port": _host_port(svc.host_port, values),
                "health": svc.health,
                "env": {k: (v if k in secret else env[k]) for k, v in svc.env},
                "secret_env": secret,
                "command": list(svc.command) if svc.command is not None else None,
                "network": job.network or "nat",
            }
            record = replace(record, target=svc.name)
        record = replace(record, spec=ship_spec)
        return self._finish(record, image, log, env)

    def _carries_secret(self, value: str) -> bool:
        return any(secret and secret in value for secret in self.context.secrets.values())

    def record_script(self, job: Job, values: Mapping[str, str]) -> Deployment | None:
        """The deployment a script job with `environment:` (action start) makes, as GitLab's."""
        env = job.environment
        if env is None or env.action != "start":
            return None
        return self.deployments.record(
            Deployment(
                environment=env.name,
                kind="script",
                digest="",
                target=env.url or "",
                user=self.context.user,
                pipeline_id=self.context.pipeline_id,
                job=job.name,
            )
        )

    def rollback(
        self,
        environment: str,
        log: Log,
        *,
        to: int | None = None,
        values: Mapping[str, str] | None = None,
    ) -> Deployment:
        """Re-deploy an earlier deployment's exact digest (`to`, else the one before the
        current); the new deployment says which one it rolls back to. `values` are the
        secrets a push to a registry may need (`CI_REGISTRY_USER`...)."""
        with self._environment_lock(environment, log):
            return self._rollback(environment, log, to, values)

    def _rollback(
        self,
        environment: str,
        log: Log,
        to: int | None,
        values: Mapping[str, str] | None,
    ) -> Deployment:
        history = self.deployments.history(environment)
        target = rollback_target(history, to)
        if target.kind == "script":
            raise ShipError(
                f"deployment {target.id} of {environment} was made by a script job; kapal "
                "cannot redo it: retry that job instead"
            )
        now = current(history)
        log(
            f"kapal: rolling {environment} back to deployment {target.id} ({target.digest})"
            + (f", replacing deployment {now.id}" if now is not None else "")
        )
        try:
            image = self.store.get(target.digest)
        except ImageError as exc:
            raise ShipError(f"cannot roll {environment} back: {exc}") from None
        record = replace(
            target,
            id=None,
            created_at=0.0,
            status="success",
            message="",
            user=self.context.user,
            pipeline_id=None,
            job="",
            rollback_of=target.id,
        )
        spec = dict(target.spec)
        if spec.get("to"):
            self._push(image, str(spec["to"]), values or {}, log)
        return self._finish(record, image, log)

    def _push(self, image: Image, to: str, values: Mapping[str, str], log: Log) -> None:
        push_image(
            self.store,
            image,
            (to,),
            settings=self.push_settings,
            credentials=secret_credentials(values),
            log=log,
        )
        log(f"kapal: deployed {image.digest} to {to}")

    def _finish(
        self, record: Deployment, image: Image, log: Log, env: Mapping[str, str] | None = None
    ) -> Deployment:
        """Roll out the service part, if any, with `env` (default: the recorded one, its secret
        entries expanded from the context's secrets) and record the deployment (failed ones
        too)."""
        svc = dict(record.spec).get("service")
        if svc:
            if env is None:
                recorded = dict(svc.get("env") or {})
                for key in svc.get("secret_env") or ():
                    recorded[key] = _expand(str(recorded.get(key, "")), self.context.secrets)
                env = recorded
            try:
                result = self._roll_out(svc, record.image, image, env, log)
            except RolloutError as exc:
                self.deployments.record(replace(record, status="failed", message=str(exc)))
                raise
            where = f" on {result.address}" if result.address else ""
            log(f"kapal: {svc['name']} runs {image.digest}{where}")
        stored = self.deployments.record(record)
        log(f"kapal: deployment {stored.id} of {stored.environment}: {stored.digest}")
        return stored

    def _roll_out(
        self,
        svc: Mapping[str, Any],
        name: str,
        image: Image,
        env: Mapping[str, str],
        log: Log,
    ) -> RolloutResult:
        layers = tuple(self.store.unpacked_layers(image))
        command = svc.get("command")
        return self.services.roll_out(
            ServiceRequest(
                name=str(svc["name"]),
                owner=self.owner,
                image=name,
                digest=image.digest,
                layers=layers,
                defaults=ImageDefaults.from_image_config(image.config),
                port=svc.get("port"),
                host_port=svc.get("host_port"),
                health=svc.get("health"),
                env=dict(env),
                command=tuple(command) if command is not None else None,
                network=str(svc.get("network") or "nat"),
            ),
            log,
        )
