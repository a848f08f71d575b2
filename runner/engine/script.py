"""Shell scripts for a job's container, written the way GitLab's shell executor writes them.

Each line is echoed as `$ command` before it runs, and the script stops at the first failing
line with that line's exit code (`set -e`, plus `pipefail` where the shell has it). The script
prefers bash when the image has it, and falls back to the image's `sh`.
"""

from __future__ import annotations

from collections.abc import Sequence

_PREAMBLE = """\
if [ -z "${KAPAL_SHELL_REEXEC:-}" ] && command -v bash >/dev/null 2>&1; then
  KAPAL_SHELL_REEXEC=1 exec bash "$0" "$@"
fi
unset KAPAL_SHELL_REEXEC
set -e
(set -o pipefail) >/dev/null 2>&1 && set -o pipefail
set +o noclobber 2>/dev/null || true
"""


def shell_quote(text: str) -> str:
    """Quote `text` for a POSIX shell (single quotes; embedded quotes escaped)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def echo_line(command: str) -> str:
    """What is printed before a command runs: `$ command` (first line of a multi-line one)."""
    lines = command.strip("\n").splitlines() or [""]
    shown = lines[0]
    if len(lines) > 1:
        shown += " # collapsed multi-line command"
    return f"$ {shown}"


def job_script(commands: Sequence[str], *, project_dir: str) -> str:
    """The script for `before_script` + `script`: each command echoed, the first failure ends it."""
    parts = [_PREAMBLE, f"cd {shell_quote(project_dir)}\n"]
    for command in commands:
        if not command.strip():
            continue
        parts.append(f"printf '%s\\n' {shell_quote(echo_line(command))}\n")
        parts.append(command.rstrip("\n") + "\n")
    parts.append("exit 0\n")
    return "".join(parts)


def after_script(commands: Sequence[str], *, project_dir: str) -> str:
    """The `after_script` script: a fresh shell, same echo and stop-at-first-failure rules."""
    return job_script(commands, project_dir=project_dir)
