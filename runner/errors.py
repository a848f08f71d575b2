"""Errors of the runner.

Expected failures (a bad image reference, a registry refusing a push, a Dockerfile that does not
parse, a missing runc) are `RunnerError`s with a message a person can act on. A container that exits
non-zero is *not* an error: it is a result, recorded as such.

    RunnerError                     any problem executing pipelines that kapal can explain
    ├── ImageError                  the image store and image handling
    │   ├── ImageReferenceError     an image reference does not parse
    │   ├── ImageNotFoundError      an image is in neither the store nor a registry
    │   ├── CorruptBlobError        a blob's content does not match its digest
    │   ├── ArchiveError            an image archive is truncated or malformed
    │   ├── MediaTypeError          a manifest or layer has a media type kapal does not handle
    │   └── StoreFullError          no space left on the device holding the image store
    ├── RegistryError               a registry answered with an error or cannot be reached
    │   ├── RegistryAuthError       401/403 from a registry
    │   └── RegistryStatusError     any other error status (404, 5xx...); `.status` holds it
    ├── BootstrapError              mmdebstrap is missing or failed
    ├── ConfinedPathError           a path in a tree a job, repository or image controls is unsafe
    ├── ObjectStoreError            the store of artifacts and caches (a directory, S3) failed
    │   └── ObjectKeyError          a key is not a plain relative path (`..`, absolute, empty)
    ├── ContainerRuntimeError       the container runtime (runc missing, bundle failed, ...)
    │   └── ContainerStartError     a container could not be started
    ├── BuildError                  an image build failed
    │   ├── DockerfileError         the Dockerfile does not parse or is invalid (file:line)
    │   └── BuildStepError          a RUN step exited non-zero (step, exit code, last lines)
    └── EngineError                 running a pipeline failed for a reason outside the jobs
        ├── WorkspaceError          the workspace cannot be made (missing commit, remote down)
        ├── SecretsError            a secrets file cannot be read or a secret cannot be masked
        ├── ServiceError            a service container did not start or open its ports
        └── UnknownJobError         `--job` names a job the pipeline does not have

Subpackages may add subclasses beneath these; they never raise a bare `Exception` for user input.
"""

from __future__ import annotations


class RunnerError(Exception):
    """A problem executing pipelines that kapal can explain to the user."""


class ImageError(RunnerError):
    """A problem with an image or the image store."""


class ImageReferenceError(ImageError):
    """An image reference does not follow the docker reference grammar."""


class ImageNotFoundError(ImageError):
    """An image is in neither the local store nor a configured registry."""


class CorruptBlobError(ImageError):
    """A blob's content does not match the digest that names it."""


class ArchiveError(ImageError):
    """An image archive (docker-archive or OCI layout) is truncated or malformed."""


class MediaTypeError(ImageError):
    """A manifest, config or layer has a media type kapal does not handle."""


class StoreFullError(ImageError):
    """The device holding the image store has no space left; nothing half-written was kept."""


class RegistryError(RunnerError):
    """A registry answered with an error or could not be reached."""


class RegistryAuthError(RegistryError):
    """A registry refused the credentials (401/403)."""


class RegistryStatusError(RegistryError):
    """A registry answered with an error status other than 401/403 (kept in `.status`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BootstrapError(RunnerError):
    """A base image could not be bootstrapped (mmdebstrap missing or failing)."""


class ConfinedPathError(RunnerError):
    """A path in a tree that a job, repository or image controls leads outside it or is unusable."""


class ObjectStoreError(RunnerError):
    """The artifact and cache store failed: unreachable, refused credentials, missing bucket."""


class ObjectKeyError(ObjectStoreError):
    """A key names no plain relative path (empty, absolute, `.` or `..` parts, NUL)."""


class ContainerRuntimeError(RunnerError):
    """The container runtime failed (runc missing, bundle invalid, mount failed...)."""


class ContainerStartError(ContainerRuntimeError):
    """A container could not be started."""


class BuildError(RunnerError):
    """An image build failed."""


class DockerfileError(BuildError):
    """The Dockerfile does not parse or is invalid; the message names file:line."""


class BuildStepError(BuildError):
    """A RUN step exited non-zero."""


class EngineError(RunnerError):
    """Running a pipeline failed for a reason outside the jobs themselves."""


class WorkspaceError(EngineError):
    """The job workspace cannot be prepared (unreachable remote, missing commit, copy failed)."""


class SecretsError(EngineError):
    """A secrets file cannot be read, or a secret is too short to be masked."""


class ServiceError(EngineError):
    """A service container did not start or did not open its ports in time."""


class UnknownJobError(EngineError):
    """A job named on the command line is not in the pipeline."""


class ShipError(RunnerError):
    """A push, a copy to a registry, a service rollout or a rollback failed (runner.ship)."""


class RolloutError(ShipError):
    """A service's new version never became healthy; the previous one keeps serving."""
