"""`run_container`: run one container in its own sandbox and wait for it (builder, `kapal exec`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from runner.runtime.backend import (
    Backend,
    ContainerSpec,
    ExitStatus,
    LogLine,
    NetworkMode,
    SandboxSpec,
)

_CANCEL_POLL = 0.05


def run_container(
    backend: Backend,
    spec: ContainerSpec,
    *,
    on_line: Callable[[LogLine], None] | None = None,
    network: NetworkMode = "none",
    cancel: threading.Event | None = None,
) -> ExitStatus:
    """Run `spec` to completion in a fresh sandbox, passing each output line to `on_line`.

    Setting `cancel` (from another thread) stops the container; the returned status then says
    `canceled`. The sandbox is torn down before this returns, whatever happens.
    """
    sandbox = backend.setup(SandboxSpec(name=spec.name, network=network))
    # The watcher may stop the container only while this call still owns it. It is not joined:
    # joining would wait out its poll interval (tens of ms per container) after every run.
    guard = threading.Lock()
    done = False
    try:
        container = backend.start(sandbox, spec)
        if cancel is not None:
            watched = cancel

            def watch() -> None:
                while not watched.wait(_CANCEL_POLL):
                    with guard:
                        if done:
                            return
                with guard:
                    if not done:
                        backend.stop(container)

            threading.Thread(target=watch, name=f"cancel-{container.id}", daemon=True).start()
        if on_line is not None:
            for line in backend.logs(container):
                on_line(line)
        return backend.wait(container)
    finally:
        with guard:
            done = True
        backend.teardown(sandbox)
