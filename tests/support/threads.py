"""Races for concurrency tests: the same call from several threads released at one instant."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")


def run_at_once(count: int, target: Callable[[int], T]) -> list[T | BaseException]:
    """Call `target(i)` for i in 0..count-1, each in its own thread, all released together.

    Returns what each call returned, or the exception it raised, in the order of `i`.
    """
    start = threading.Barrier(count)
    outcomes: list[T | BaseException | None] = [None] * count

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = target(index)
        except BaseException as exc:  # handed back to the test, not lost in the thread
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return cast("list[T | BaseException]", outcomes)  # every slot was filled
