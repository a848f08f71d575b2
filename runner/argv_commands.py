"""Commands that parse their own argv (argparse), added to the Typer application unchanged.

`kapal` runs such a command straight from the command line, without Typer (see web/cli.py and a
module's `ARGV_COMMANDS`); `register_argv_command` adds the same `main(argv)` to a Typer app as a
pass-through command, so `build_app()` (what the tests and `--help` listings use) runs the very
same code, its options and `--help` included.

A module may also list verbs in `QUICK_EXIT`: their `main` releases everything it holds before it
returns (its `finally` blocks ran, background work drained), so `kapal` ends the process with
`exit_now` instead of a normal interpreter exit, whose teardown of every module and object costs
a one-off command like `kapal exec` about 10 ms.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import typer

ArgvMain = Callable[[list[str]], int]


def exit_now(code: int) -> NoReturn:
    """End the process with `code` at once: output flushed, no atexit handlers, no teardown.

    Only for a command whose main released everything (see `QUICK_EXIT` above).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(code)


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
