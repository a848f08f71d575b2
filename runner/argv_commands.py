"""Commands that parse their own argv (argparse), added to the Typer application unchanged.

`kapal` runs such a command straight from the command line, without Typer (see web/cli.py and a
module's `ARGV_COMMANDS`); `register_argv_command` adds the same `main(argv)` to a Typer app as a
pass-through command, so `build_app()` (what the tests and `--help` listings use) runs the very
same code, its options and `--help` included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

ArgvMain = Callable[[list[str]], int]


def register_argv_command(app: typer.Typer, name: str, main: ArgvMain, help: str) -> None:
    """Add `name` to `app`: every argument after it goes to `main`, whose result is the exit."""
    import typer

    def command(ctx: typer.Context) -> None:
        raise typer.Exit(main(list(ctx.args)))

    # Typer finds the context parameter by its annotation; under `from __future__ import
    # annotations` that is a string naming `typer`, which this module imports only here.
    command.__annotations__ = {"ctx": typer.Context, "return": None}
    app.command(
        name,
        help=help,
        add_help_option=False,
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "allow_interspersed_args": False,
            "help_option_names": [],
        },
    )(command)
