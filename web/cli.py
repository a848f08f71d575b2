"""The `kapal` command: one entry module that wires each package's sub-commands.

The verbs live beside what they drive: `lint` in `pipeline.lint_command`, `plan` in
`pipeline.cli`, `run` in `runner.cli`, `image` in `runner.images.cli`, `exec`/`gc` in
`runner.runtime.cli`, `build` in `runner.build.cli`. Each of those modules exposes
`register(app)`. A sub-command's module is imported only when that sub-command runs, so
`kapal lint` does not pay for the image store and `kapal build` does not pay for the engine.

Start-up is what a person feels on every command, so `main` answers `kapal version`, `kapal` and
`kapal --help` without importing Typer or any verb's module (the list of verbs and their one-line
summaries are below; tests/test_startup.py keeps the summaries equal to the commands' own help).
A verb whose module lists it in `ARGV_COMMANDS` (verb -> `main(argv) -> exit code`) is run
straight from argv: every verb a person types all day (`exec`, `build`, `lint`, `plan`, `image`,
the server client's verbs...), which must start as fast as the tools they stand in for. The
server's own verbs (`serve`, `worker`, `migrate`, `token`) go through Typer, with only the
asked-for verb's module imported.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

    import typer
    from typer.core import TyperGroup

    from pipeline.remote import RemoteFetcher

ROOT_HELP = "kapal: CI/CD pipelines on containers, on a server or on your laptop."

# sub-command name -> the module whose `register(app)` defines it
COMMAND_MODULES: dict[str, str] = {
    "lint": "pipeline.lint_command",
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
    "deployments": "web.client_cli",
    "rollback": "web.client_cli",
}

# sub-command name -> its one-line summary, shown by `kapal --help` without importing the module
COMMAND_SUMMARIES: dict[str, str] = {
    "build": "Build an image from a Dockerfile (no Docker daemon needed).",
    "cancel": "Cancel a pipeline (or with --job one job).",
    "deployments": "List environments with their current deployment, or one environment's history.",
    "exec": "Run one container, like `docker run --rm`; exit with the container's exit code.",
    "gc": "Remove containers, mounts, cgroups and namespaces that crashed workers left behind.",
    "image": "Manage the local OCI image store.",
    "lint": "Check a pipeline file; print each problem as file:line:col: message.",
    "logs": "Print a job's log (with -f, follow it live until the job ends).",
    "migrate": "Upgrade the database (KAPAL_DATABASE_URL, default: SQLite in the data dir).",
    "pipeline": "Show a pipeline and its jobs.",
    "pipelines": "List pipelines, newest first.",
    "plan": "Show what a pipeline would run for a trigger: stages, jobs, skipped jobs and why, "
    "needs.",
    "play": "Start a manual job.",
    "repo": "Repositories the server takes webhooks for.",
    "retry": "Retry a pipeline's failed jobs (every job with --all; one job with --job).",
    "rollback": "Re-deploy an earlier deployment's exact digest (by default the one before).",
    "run": "Run a pipeline here: every job in a container, no server needed.",
    "serve": "Run the kapal service: webhooks, REST API and (unless --no-worker) a worker.",
    "services": "Services deployed by `deploy: service:` jobs.",
    "token": "API tokens (on the server's database).",
    "trigger": "Run the pipeline of a branch or tag's current commit.",
    "version": "Print kapal's version.",
    "worker": "Run a worker: take jobs from the broker and run them on this machine.",
}


def _package_commands(module_name: str) -> TyperGroup:
    """Import one package's CLI module and return its commands as a group."""
    import typer
    from typer.core import TyperGroup

    module = importlib.import_module(module_name)
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        """Commands of one package."""

    register = getattr(module, "register", None)
    if register is not None:
        register(app)
    else:  # a package below runner's (pipeline/): its argv commands, added here
        from runner.argv_commands import register_argv_command

        for verb, main in module.ARGV_COMMANDS.items():
            register_argv_command(app, verb, main, module.ARGV_HELP[verb])
    command = typer.main.get_command(app)
    if not isinstance(command, TyperGroup):  # a callback always makes a group
        raise TypeError(f"{module_name}.register() did not produce a command group")
    return command


def _lazy_commands_class() -> type[TyperGroup]:
    """The root group's class (made on first use: Typer is imported only when a verb runs)."""
    from typer.core import TyperGroup

    class LazyCommands(TyperGroup):
        """The root group: resolves a package's sub-commands only when one is asked for."""

        def list_commands(self, ctx: Any) -> list[str]:
            """Every sub-command name, without importing the packages."""
            return sorted({*COMMAND_MODULES, *super().list_commands(ctx)})

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            """Import the module that defines `cmd_name` and return its command."""
            module_name = COMMAND_MODULES.get(cmd_name)
            if module_name is None:
                return super().get_command(ctx, cmd_name)
            return _package_commands(module_name).get_command(ctx, cmd_name)

    return LazyCommands


def _remote_fetcher() -> RemoteFetcher:
    from runner.remote_includes import default_fetcher  # httpx: on the first remote include

    return default_fetcher()


def _wire_remote_includes() -> None:
    """`kapal lint` and `kapal plan` fetch `include: remote` with the runner's HTTP fetcher."""
    from pipeline.remote import set_command_fetcher

    set_command_fetcher(_remote_fetcher, server_url=os.environ.get("KAPAL_GITLAB_URL", ""))


def build_app() -> typer.Typer:
    """Return the `kapal` Typer application with every sub-command registered."""
    import typer

    _wire_remote_includes()

    app = typer.Typer(
        name="kapal",
        cls=_lazy_commands_class(),
        help=ROOT_HELP,
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
        typer.echo(f"kapal {installed_version()}")

    return app


def installed_version() -> str:
    """kapal's version, read from its installed metadata the way `importlib.metadata` finds it.

    `importlib.metadata` itself costs tens of milliseconds to import (email, zipfile, csv), more
    than the rest of `kapal version`; this reads the same `Version:` line from the first
    kapal .dist-info or .egg-info directory on sys.path, and falls back to it if none is found.
    """
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in sorted(names):
            stem, dot, kind = name.rpartition(".")
            if kind not in ("dist-info", "egg-info") or not dot:
                continue
            if stem.split("-", 1)[0].lower() != "kapal":
                continue
            metadata = "METADATA" if kind == "dist-info" else "PKG-INFO"
            try:
                with open(os.path.join(entry or ".", name, metadata), encoding="utf-8") as file:
                    for line in file:
                        if line.startswith("Version:"):
                            return line.partition(":")[2].strip()
                        if not line.strip():
                            break  # the headers end at the first blank line
            except OSError:
                continue
    import importlib.metadata

    return importlib.metadata.version("kapal")


def root_help() -> str:
    """`kapal --help`: what kapal is and every command with its one-line summary."""
    verbs = sorted({*COMMAND_MODULES, "version"})
    width = max(len(verb) for verb in verbs) + 2
    lines = [
        "Usage: kapal COMMAND [ARGS]...",
        "",
        ROOT_HELP,
        "",
        "Commands:",
    ]
    for verb in verbs:
        summary = COMMAND_SUMMARIES.get(verb)
        if summary is None:  # a verb registered without a summary: ask its module (slower)
            summary = _summary_from_module(verb)
        lines.append(f"  {verb:<{width}}{summary}")
    lines += ["", "Run `kapal COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _summary_from_module(verb: str) -> str:
    """The first paragraph of `verb`'s help, from its command (imports its module)."""
    import typer

    group = _package_commands(COMMAND_MODULES[verb])
    command = group.get_command(typer.Context(group), verb)
    text = (command.help or "") if command is not None else ""
    return " ".join(text.split("\n\n")[0].split())


def _import_verb(module_name: str) -> ModuleType:
    """Import a verb's module with the garbage collector off, then freeze what it made.

    Importing makes tens of thousands of objects (modules, classes, functions) and no garbage;
    collecting them again and again as they appear, and once more at exit, costs a one-off
    command like `kapal exec` or `kapal build` milliseconds. Frozen, they are never scanned again;
    collection is back on for what the command itself allocates.
    """
    gc.disable()
    try:
        return importlib.import_module(module_name)
    finally:
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> None:
    """Run the `kapal` command line.

    A reader that goes away (`kapal logs 7 | head`) ends the command quietly, with the status a
    shell gives a tool killed by SIGPIPE (141), not a traceback: the output is flushed here,
    where a broken pipe can still be caught, rather than at the interpreter's exit.
    """
    try:
        try:
            _dispatch(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # what is still buffered cannot be written; send it, and any later flush, nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise SystemExit(SIGPIPE_STATUS) from None


SIGPIPE_STATUS = 128 + 13  # a shell's status for a process ended by SIGPIPE


def _dispatch(args: list[str]) -> None:
    # The answers a person asks for most, without Typer: it alone costs more than the target.
    if args in ([], ["--help"]):
        print(root_help())
        raise SystemExit(0 if args else 2)  # as Typer did: no arguments is a usage error
    if args == ["version"]:
        print(f"kapal {installed_version()}")
        return
    # kapal uses no pydantic plugins; looking for them reads every installed distribution's
    # metadata (30-70 ms) the first time a model or a Typer option is built.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if args[0] in ("lint", "plan"):
        _wire_remote_includes()
    module_name = COMMAND_MODULES.get(args[0])
    if module_name is not None:
        # A verb whose module parses its own argv (`ARGV_COMMANDS`) runs without Typer.
        module = _import_verb(module_name)
        direct = getattr(module, "ARGV_COMMANDS", {}).get(args[0])
        if direct is not None:
            code = direct(args[1:])
            if args[0] in getattr(module, "QUICK_EXIT", ()):
                from runner.argv_commands import exit_now  # see there: no teardown

                exit_now(code)
            raise SystemExit(code)
    build_app()(args, prog_name="kapal")


if __name__ == "__main__":
    main()
