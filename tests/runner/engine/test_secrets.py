"""Secrets from a file and from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SecretsError
from runner.secrets import Secret, load_secrets, parse_secrets_file


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text('# comment\n\nTOKEN=abcd1234\nexport PASS = "p a s s"\nKEY="l1\\nl2xx"\n')
    assert parse_secrets_file(path) == {
        "TOKEN": Secret("abcd1234"),
        "PASS": Secret("p a s s"),
        "KEY": Secret("l1\nl2xx"),
    }


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("OK=abcdefgh\nnot a pair\n")
    with pytest.raises(SecretsError, match=r"secrets:2: expected NAME=value"):
        parse_secrets_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="cannot read the secrets file"):
        load_secrets({}, tmp_path / "nope")


def test_environment_and_file_merge(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("B=from-file\n")
    env = {"KAPAL_SECRET_A": "from-env", "KAPAL_SECRET_B": "env-b-value", "OTHER": "x"}
    assert load_secrets(env, path) == {"A": Secret("from-env"), "B": Secret("from-file")}


def test_too_short_to_mask() -> None:
    with pytest.raises(SecretsError, match="secret PIN is shorter than 4 characters"):
        load_secrets({"KAPAL_SECRET_PIN": "12"})
