"""The `kapal` command: one entry module that wires each package's sub-commands.

The verbs live beside what they drive: `lint`/`plan` in `pipeline.cli`, `run` in `runner.cli`,
`image` in `runner.images.cli`, `exec`/`gc` in `runner.runtime.cli`, `build` in
`runner.build.cli`. Each of those modules exposes `register(app)`. A sub-command's module is
imported only when that sub-command runs, so `kapal lint` does not pay for the image store and
`kapal build` does not pay for the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

# sub-command name -> the module whose `register(app)` defines it
COMMAND_MODULES: dict[str, str] = {
    "lint": "pipeline.cli",
    "plan": "pipeline.cli",
    "run": "runner.cli",
    "image": "runner.images.cli",
    "exec": "runner.runtime.cli",
    "gc": "runner.runtime.cli",
    "build": "runner.build.cli",
    "migrate": "web.db.cli",
    "worker": "web.worker_cli",
    "serve": "web.serve",
    "token": "web.serve",
    "repo": "web.client_cli",
    "trigger": "web.client_cli",
    "pipelines": "web.client_cli",
    "pipeline": "web.client_cli",
    "logs": "web.client_cli",
    "cancel": "web.client_cli",
    "retry": "web.client_cli",
    "play": "web.client_cli",
    "services": "runner.ship.cli",
    "deployments": "runner.ship.cli",
    "rollback": "runner.ship.cli",
}


def _package_commands(module_name: str) -> TyperGroup:
    """Import one package's CLI module and return its commands as a group."""
    module = importlib.import_module(module_name)
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        """Commands of one package."""

    module.register(app)
    command = typer.main.get_command(app)
    if not isinstance(command, TyperGroup):  # a callback always makes a group
        raise TypeError(f"{module_name}.register() did not produce a command group")
    return command


class LazyCommands(TyperGroup):
    """The root group: resolves a package's sub-commands only when one of them is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        """Every sub-command name, without importing the packages."""
        return sorted({*COMMAND_MODULES, *super().list_commands(ctx)})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """Import the module that defines `cmd_name` and return its command."""
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return super().get_command(ctx, cmd_name)
        return _package_commands(module_name).get_command(ctx, cmd_name)


def build_app() -> typer.Typer:
    """Return the `kapal` Typer application with every sub-command registered."""
    app = typer.Typer(
        name="kapal",
        cls=LazyCommands,
        help="kapal: CI/CD pipelines on containers, on a server or on your laptop.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def root() -> None:
        """kapal: CI/CD pipelines on containers, on a server or on your laptop."""

    @app.command()
    def version() -> None:
        """Print kapal's version."""
        import importlib.metadata  # only here: it costs every other command ~50 ms at start

        typer.echo(f"kapal {importlib.metadata.version('kapal')}")

    return app


def main() -> None:
    """Run the `kapal` command line."""
    build_app()()


if __name__ == "__main__":
    main()
