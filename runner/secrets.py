"""Secrets for a run: read from a file or the environment, and which of them a pipeline receives.

`load_secrets` reads them: `KAPAL_SECRET_NAME` and `KAPAL_PROTECTED_SECRET_NAME` environment
variables, then a secrets file of `NAME=value` lines where `protected NAME=value` marks a
protected secret. `secrets_for(access, secrets)` is the one rule `kapal run` and the service
both apply before a pipeline starts: a protected secret reaches only pipelines of protected refs
(the default branch, a protected branch or tag), and a merge request from a fork gets no secret
at all, since its code was written by someone outside the repository.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pipeline import TriggerContext
from pipeline.records import record
from runner.errors import SecretsError
from runner.masking import MIN_SECRET_LENGTH

ENV_PREFIX = "KAPAL_SECRET_"
PROTECTED_ENV_PREFIX = "KAPAL_PROTECTED_SECRET_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PROTECTED_MARK = "protected "


@record
class Secret:
    """A secret's value, and whether only pipelines of protected refs receive it."""

    value: str
    protected: bool = False


def ref_matches(pattern: str, ref: str) -> bool:
    """Whether `ref` matches a protected-ref pattern, where `*` stands for any text (GitLab's).

    Matched without regular expressions: linear in the length of the (attacker-chosen) ref.
    """
    parts = pattern.split("*")
    if len(parts) == 1:
        return ref == pattern
    first, *middle, last = parts
    if len(ref) < len(first) + len(last) or not ref.startswith(first) or not ref.endswith(last):
        return False
    position, end = len(first), len(ref) - len(last)
    for part in middle:
        found = ref.find(part, position, end)
        if found == -1:
            return False
        position = found + len(part)
    return True


@record
class PipelineAccess:
    """What decides which secrets (and which caches) a pipeline gets: its ref and its origin.

    The caller builds it from facts it holds, never from pipeline variables: the service from
    the webhook delivery and the repository's settings, `kapal run` from the local checkout.
    """

    ref: str
    is_tag: bool = False
    default_branch: str = "main"
    protected_branches: tuple[str, ...] = ()  # patterns such as `release/*`, `*-stable`
    protected_tags: tuple[str, ...] = ()  # patterns such as `v*`
    from_fork: bool = False  # a merge request pipeline whose source branch is in a fork

    @classmethod
    def of_trigger(
        cls,
        context: TriggerContext,
        *,
        protected_branches: tuple[str, ...] = (),
        protected_tags: tuple[str, ...] = (),
        from_fork: bool = False,
    ) -> PipelineAccess:
        """The access of a pipeline triggered by `context` (its branch or tag, default branch)."""
        return cls(
            ref=context.ref,
            is_tag=context.tag is not None,
            default_branch=context.default_branch,
            protected_branches=protected_branches,
            protected_tags=protected_tags,
            from_fork=from_fork,
        )

    @property
    def protected(self) -> bool:
        """Whether the pipeline runs for a protected ref (never true for a fork's code)."""
        if self.from_fork or not self.ref:
            return False
        if self.is_tag:
            return any(ref_matches(p, self.ref) for p in self.protected_tags)
        return self.ref == self.default_branch or any(
            ref_matches(p, self.ref) for p in self.protected_branches
        )


def secrets_for(access: PipelineAccess, secrets: Mapping[str, Secret]) -> dict[str, str]:
    """The secrets (name to value) a pipeline with `access` receives."""
    if access.from_fork:
        return {}
    return {
        name: secret.value
        for name, secret in secrets.items()
        if access.protected or not secret.protected
    }


def parse_secrets_file(path: Path) -> dict[str, Secret]:
    """Read `NAME=value` lines from `path`.

    `#` comments, blank lines, an `export ` prefix and quotes are allowed; a `protected ` prefix
    marks a protected secret (`protected DEPLOY_TOKEN=...`).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretsError(
            f"{path}: cannot read the secrets file ({exc.strerror}); pass a readable file"
        ) from None
    except UnicodeDecodeError:
        raise SecretsError(f"{path}: the secrets file is not UTF-8 text") from None
    secrets: dict[str, Secret] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        rest = line[len(_PROTECTED_MARK) :].lstrip()
        protected = line.startswith(_PROTECTED_MARK) and not rest.startswith("=")
        if protected:
            line = rest
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise SecretsError(
                f"{path}:{number}: expected NAME=value or protected NAME=value (NAME made of "
                "letters, digits and _)"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if raw.strip().endswith('"'):
                value = value.replace("\\n", "\n")
        secrets[name] = Secret(value, protected)
    return secrets


def secrets_from_environment(environ: Mapping[str, str]) -> dict[str, Secret]:
    """Secrets given as `KAPAL_SECRET_NAME=value` (or `KAPAL_PROTECTED_SECRET_NAME=value`)."""
    secrets: dict[str, Secret] = {}
    for key, value in environ.items():
        for prefix, protected in ((ENV_PREFIX, False), (PROTECTED_ENV_PREFIX, True)):
            if key.startswith(prefix) and len(key) > len(prefix):
                secrets[key[len(prefix) :]] = Secret(value, protected)
    return secrets


def check_maskable(secrets: Mapping[str, Secret]) -> None:
    """Refuse secrets too short to be masked without masking ordinary output."""
    for name, secret in secrets.items():
        if len(secret.value.strip()) < MIN_SECRET_LENGTH:
            raise SecretsError(
                f"secret {name} is shorter than {MIN_SECRET_LENGTH} characters, so it cannot "
                "be masked in logs; make it longer or pass it as an ordinary --var"
            )


def load_secrets(environ: Mapping[str, str], secrets_file: Path | None = None) -> dict[str, Secret]:
    """All secrets of a run: the environment's, then the file's (the file wins)."""
    secrets = secrets_from_environment(environ)
    if secrets_file is not None:
        secrets.update(parse_secrets_file(secrets_file))
    check_maskable(secrets)
    return secrets
