"""Errors of the web service, each carrying the HTTP status a client is answered with.

Whatever a client sends, the service answers with one of these (a 4xx, or a 5xx only for an
upstream it depends on), never with a traceback. Each message says what is wrong, where, and
what to do. Subclasses set `status`; the HTTP layer answers `{"error": str(exc)}` with it::

    WebError                          any problem the service can explain (status 500 by default)
    ├── WebhookError                  a webhook delivery cannot be accepted (400)
    │   ├── SignatureError            missing or wrong signature / token (401)
    │   ├── HeaderError               a required header is missing or malformed (400)
    │   ├── PayloadError              the body is not JSON, or a field is missing / wrong (400)
    │   ├── UnsupportedMediaTypeError the body's content type is not JSON or form data (415)
    │   └── PayloadTooLargeError      the body is over the size limit (413)
    ├── MirrorError                   the git mirror of a repository cannot give a commit
    │   ├── RepositoryUnreachableError  the clone URL cannot be fetched from (502)
    │   ├── CommitNotFoundError       the pushed commit is not in the repository (422)
    │   ├── UnsafeTreeError           the commit's tree holds a path kapal refuses to write (422)
    │   └── MirrorBusyError           another process holds the mirror's lock too long (503)
    ├── AuthenticationError           no API token, or one that is unknown, revoked or expired (401)
    ├── PermissionDeniedError         the API token lacks the right the operation needs (403)
    ├── PipelineNotCreatedError       a trigger gives no pipeline: unknown ref, no pipeline file,
    │                                 `workflow: rules` refuse it (422)
    ├── DatabaseError                 the history database cannot serve the request (500)
    │   ├── NotMigratedError          the schema is not this kapal's: run `kapal migrate` (503)
    │   ├── NotFoundError             a row an operation names does not exist (404)
    │   ├── ConflictError             a unique name (repository, token) is already taken (409)
    │   └── InvalidCursorError        a pagination cursor this server did not hand out (400)
    ├── SettingsError                 the service's configuration is unusable (500)
    │   ├── SecretKeyError            the key that encrypts secrets at rest cannot be had
    │   └── WorkerQueuesError         `kapal worker --queues` names queues it cannot serve
    ├── ArtifactStoreError            the object store holding artifacts cannot serve them (503)
    ├── ArtifactsExpiredError         a job's artifacts expired and were removed (410)
    └── ClientError                   the kapal CLI's request was refused (exit status 1)
        └── ServerUnreachableError    the CLI cannot reach the server at KAPAL_HOST (exit 3)

An event kapal does not act on (a ping, a closed merge request, a deleted branch) is not an
error: the parsers return `web.hooks.Ignored`, answered 202 `{"ignored": reason}`.
"""

from __future__ import annotations


class WebError(Exception):
    """A problem the web service can explain; `status` is the HTTP status to answer with."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, str]:
        """The JSON body to answer with: `{"error": message}`."""
        return {"error": self.message}


class WebhookError(WebError):
    """A webhook delivery that cannot be accepted as sent."""

    status = 400


class SignatureError(WebhookError):
    """The delivery's signature (or GitLab token) is missing or does not match the secret."""

    status = 401


class HeaderError(WebhookError):
    """A header the delivery needs (the event name, say) is missing or malformed."""

    status = 400


class PayloadError(WebhookError):
    """The body is not a JSON object, or a field is missing or of the wrong type.

    `field` is the dotted path of the field at fault (`pull_request.head.sha`), when one is.
    """

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedMediaTypeError(WebhookError):
    """The body's content type is neither JSON nor form-encoded `payload=`."""

    status = 415


class PayloadTooLargeError(WebhookError):
    """The body is larger than the accepted limit; checked before anything is parsed."""

    status = 413


class MirrorError(WebError):
    """The per-repository git mirror cannot provide a commit or its files."""

    status = 502


class RepositoryUnreachableError(MirrorError):
    """The repository's clone URL cannot be cloned or fetched from."""

    status = 502


class CommitNotFoundError(MirrorError):
    """The commit named by a delivery is not in the repository (force-pushed away, or made up)."""

    status = 422


class UnsafeTreeError(MirrorError):
    """A commit's tree holds a path that would escape the directory it is written into."""

    status = 422


class MirrorBusyError(MirrorError):
    """The mirror's lock was not obtained in time (another fetch of the repository hangs)."""

    status = 503


class AuthenticationError(WebError):
    """The request carries no API token, or one that is unknown, revoked or expired."""

    status = 401


class PermissionDeniedError(WebError):
    """The request's API token lacks the scope (or repository) the operation needs."""

    status = 403


class PipelineNotCreatedError(WebError):
    """A pipeline asked for by hand cannot be made: the ref is unknown, the commit has no
    pipeline file, or its `workflow: rules` create no pipeline."""

    status = 422


class DatabaseError(WebError):
    """The history database cannot serve the request."""

    status = 500


class NotMigratedError(DatabaseError):
    """The database schema is not at the revision this kapal needs."""

    status = 503


class NotFoundError(DatabaseError):
    """A row an operation names (repository, pipeline, job...) does not exist."""

    status = 404


class ConflictError(DatabaseError):
    """A unique name (repository, token) is already taken."""

    status = 409


class InvalidCursorError(DatabaseError):
    """A pagination cursor is malformed."""

    status = 400


class SettingsError(WebError):
    """The service's configuration (settings, key files) cannot be used as given."""

    status = 500


class ArtifactStoreError(WebError):
    """The object store (KAPAL_OBJECT_STORE) holding artifacts is unreachable or refuses kapal."""

    status = 503


class ArtifactsExpiredError(WebError):
    """A job's artifacts expired (`artifacts: expire_in:`, or KAPAL_ARTIFACTS_EXPIRE_IN) and
    the expiry sweep removed them."""

    status = 410


class SecretKeyError(SettingsError):
    """The key that encrypts repository secrets at rest is missing, empty or unreadable."""

    status = 500


class WorkerQueuesError(SettingsError):
    """A worker was asked to serve queues it cannot (too many tags, a malformed name)."""

    status = 500


class ClientError(WebError):
    """The kapal CLI could not do what it was asked; `exit_code` is its exit status."""

    exit_code: int = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ServerUnreachableError(ClientError):
    """The kapal CLI cannot connect to the server KAPAL_HOST names."""

    exit_code = 3
