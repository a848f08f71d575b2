"""Sub-commands of `kapal` for this package (registered by `web.cli`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the `kapal` application."""
