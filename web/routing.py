"""Which queue a job goes to, by its `tags:`, and which queues a worker takes jobs from.

A job without tags goes to the default queue `kapal`. A job with tags goes to the queue named
after all of them (`tags:docker+linux`, sorted), and a worker serving tags takes jobs from the
queue of every non-empty combination of its tags: as with GitLab's runners, a worker runs a job
when it serves every tag the job asks for, and one message is taken by one worker only.

`kapal worker --queues kapal,docker,linux` serves untagged jobs and jobs tagged `docker`,
`linux` or both; `--queues gpu` serves only jobs tagged `gpu`. Every worker also takes the
service's own tasks (plan, advance, commit status) from `kapal-service`, so workers that serve
only tags still move pipelines on. A job no live worker serves stays
pending, its reason saying which tags it waits for (`unserved_reason`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from itertools import combinations

from web.errors import WorkerQueuesError

DEFAULT_QUEUE = "kapal"
# planning, advancing and commit statuses: every worker takes them, whatever tags it serves
SERVICE_QUEUE = "kapal-service"
TAG_QUEUE_PREFIX = "tags:"
MAX_WORKER_TAGS = 8  # a worker listens to 2**n - 1 tag queues
WAITING_PREFIX = "waiting for a worker serving"


def job_queue(tags: Iterable[str]) -> str:
    """The queue of a job with these `tags:` (the default queue when it has none)."""
    wanted = sorted(set(tags))
    if not wanted:
        return DEFAULT_QUEUE
    return TAG_QUEUE_PREFIX + "+".join(wanted)


def served_tags(served: Iterable[str]) -> frozenset[str]:
    """The tags among the names a worker serves (every name but the default queue)."""
    return frozenset(name for name in served if name != DEFAULT_QUEUE)


def worker_queues(served: Sequence[str]) -> list[str]:
    """The broker queues of a worker serving `served` (tags, and `kapal` for untagged jobs)."""
    for name in served:
        if (
            not name
            or name != name.strip()
            or "+" in name
            or name.startswith(TAG_QUEUE_PREFIX)
            or name == SERVICE_QUEUE
        ):
            raise WorkerQueuesError(
                f"queue {name!r}: use a job tag (no spaces, no '+', not starting with "
                f"{TAG_QUEUE_PREFIX!r}) or {DEFAULT_QUEUE!r} for untagged jobs"
            )
    tags = sorted(served_tags(served))
    if len(tags) > MAX_WORKER_TAGS:
        raise WorkerQueuesError(
            f"{len(tags)} tags: a worker serves at most {MAX_WORKER_TAGS}; run more workers"
        )
    queues = [SERVICE_QUEUE] + ([DEFAULT_QUEUE] if DEFAULT_QUEUE in served else [])
    for size in range(1, len(tags) + 1):
        queues += [job_queue(chosen) for chosen in combinations(tags, size)]
    return queues


def serves(served: Collection[str], tags: Collection[str]) -> bool:
    """Whether a worker serving `served` runs a job with these tags."""
    if not tags:
        return DEFAULT_QUEUE in served
    return set(tags) <= served_tags(served)


def unserved_reason(tags: Collection[str], live_workers: int) -> str:
    """The reason shown on a pending job whose tags no live worker serves."""
    wanted = sorted(set(tags)) or [DEFAULT_QUEUE]
    listed = ", ".join(wanted)
    queue = ",".join(wanted)
    return (
        f"{WAITING_PREFIX} {'tags ' if tags else 'the queue '}{listed}: none of the "
        f"{live_workers} live worker(s) does; start one with `kapal worker --queues {queue}`"
    )
