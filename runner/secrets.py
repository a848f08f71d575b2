"""Secrets for a run: read from a file or from `KAPAL_SECRET_*` environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from runner.errors import SecretsError
from runner.masking import MIN_SECRET_LENGTH

ENV_PREFIX = "KAPAL_SECRET_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def parse_secrets_file(path: Path) -> dict[str, str]:
    """Read `NAME=value` lines (`#` comments, blank lines, optional quotes) from `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretsError(
            f"{path}: cannot read the secrets file ({exc.strerror}); pass a readable file"
        ) from None
    except UnicodeDecodeError:
        raise SecretsError(f"{path}: the secrets file is not UTF-8 text") from None
    secrets: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise SecretsError(
                f"{path}:{number}: expected NAME=value (NAME made of letters, digits and _)"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if raw.strip().endswith('"'):
                value = value.replace("\\n", "\n")
        secrets[name] = value
    return secrets


def secrets_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Secrets given as `KAPAL_SECRET_NAME=value` environment variables, keyed by NAME."""
    return {
        key[len(ENV_PREFIX) :]: value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX)
    }


def check_maskable(secrets: Mapping[str, str]) -> None:
    """Refuse secrets too short to be masked without masking ordinary output."""
    for name, value in secrets.items():
        if len(value.strip()) < MIN_SECRET_LENGTH:
            raise SecretsError(
                f"secret {name} is shorter than {MIN_SECRET_LENGTH} characters, so it cannot "
                "be masked in logs; make it longer or pass it as an ordinary --var"
            )


def load_secrets(environ: Mapping[str, str], secrets_file: Path | None = None) -> dict[str, str]:
    """All secrets of a run: the environment's, then the file's (the file wins)."""
    secrets = secrets_from_environment(environ)
    if secrets_file is not None:
        secrets.update(parse_secrets_file(secrets_file))
    check_maskable(secrets)
    return secrets
