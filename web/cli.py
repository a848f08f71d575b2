"""The `kapal` command: one entry module that wires each package's sub-commands.

The verbs live beside what they drive: `lint`/`plan` in `pipeline.cli`, `image` in
`runner.images.cli`, `exec`/`gc` in `runner.runtime.cli`, `build` in `runner.build.cli`,
`run` in `runner.cli`.
"""

from __future__ import annotations

import importlib.metadata

import typer

from pipeline import cli as pipeline_cli
from runner import cli as runner_cli
from runner.build import cli as build_cli
from runner.images import cli as images_cli
from runner.runtime import cli as runtime_cli


def build_app() -> typer.Typer:
    """Return the `kapal` Typer application with every sub-command registered."""
    app = typer.Typer(
        name="kapal",
        help="kapal: CI/CD pipelines on containers, on a server or on your laptop.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def root() -> None:
        """kapal: CI/CD pipelines on containers, on a server or on your laptop."""

    for module in (pipeline_cli, runner_cli, images_cli, runtime_cli, build_cli):
        module.register(app)

    @app.command()
    def version() -> None:
        """Print kapal's version."""
        typer.echo(f"kapal {importlib.metadata.version('kapal')}")

    return app


def main() -> None:
    """Run the `kapal` command line."""
    build_app()()


if __name__ == "__main__":
    main()
