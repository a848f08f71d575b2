"""Artifact expiry on the server, as GitLab does it: a job's artifacts expire `expire_in` after the
job ended (`artifacts: expire_in:`; unset, `KAPAL_ARTIFACTS_EXPIRE_IN`, 30 days by default;
`never` keeps them), and the sweep removes them from the artifacts directory and the object
store.

    expire_seconds      how long a job's artifacts are kept, from its spec and the settings
                        (`job_expire_seconds`: of a job of a plan)
                        (`web.orchestration.finish_job` stamps the time in the transaction that
                        ends the attempt: `web.db.artifact_expiry.stamp_artifacts_expiry`)
    expire_artifacts    the sweep: each attempt past its time is claimed (a compare-and-set, so
                        of workers sweeping at once one removes it), its files removed through
                        the store's own `remove` (confined: no symlink followed), and on a
                        worker with an object store, the trees this machine keeps of artifacts
                        another worker expired go too
    expired_message     why a download answers 410 Gone: when, and which expire_in

Kept whatever their time: the artifacts of a pipeline not finished, or whose parent pipeline is
not (later jobs' `needs:` and a child's `include: artifact` still read them), and those of the
latest successful pipeline of each (repository, ref) ("keep artifacts from the most recent
successful jobs", on in GitLab by default). Workers sweep every `SWEEP_INTERVAL` seconds from
their heartbeat (`web.heartbeats`), in a thread of its own; `kapal worker --expire-artifacts`
sweeps once and exits.
"""

from __future__ import annotations

import logging
import os
import threading

from pipeline.errors import PipelineError
from pipeline.plan import ArtifactsSpec, Plan
from runner.artifacts import ArtifactStore
from runner.errors import RunnerError
from web.db.artifact_expiry import (
    DueArtifacts,
    claim_expired,
    due_artifacts,
    expired_artifacts_of,
    expired_local_names,
    release_claim,
)
from web.db.session import Database
from web.downstream import parent_artifacts
from web.settings import Settings

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 300.0  # seconds between a worker's sweeps
BATCH = 200  # attempts looked at per database round trip
LOCAL_BATCH = 500  # pipeline directories of this machine looked up at a time


def expire_seconds(spec: ArtifactsSpec | None, settings: Settings) -> int | None:
    """Seconds a job's artifacts are kept after it ended: its `expire_in` (None for `never`),
    else `KAPAL_ARTIFACTS_EXPIRE_IN`'s."""
    if spec is None or spec.expire_in is None:
        return settings.artifacts_expire_seconds
    if _is_never(spec.expire_in):
        return None
    if spec.expire_in_seconds is None:  # a plan made before kapal read expire_in
        return settings.artifacts_expire_seconds
    return spec.expire_in_seconds


def job_expire_seconds(plan: Plan | None, name: str, settings: Settings) -> int | None:
    """`expire_seconds` of the job `name` of `plan` (the setting's when it has no such job)."""
    spec = next((job.artifacts for job in plan.jobs if job.name == name), None) if plan else None
    return expire_seconds(spec, settings)


def _is_never(text: str) -> bool:
    return text.strip().lower() == "never"


def expire_artifacts(
    *, settings: Settings, database: Database, stop: threading.Event | None = None
) -> list[int]:
    """Remove the artifacts past their time (see the module docstring); returns the attempts
    this sweep marked expired. Safe to run from any number of workers at once; a removal the
    store refuses is logged and left for a later sweep. `stop` ends it between attempts."""
    expired: list[int] = []
    with parent_artifacts(settings) as store:  # the store as workers open it
        after: int | None = 0
        while after is not None and (stop is None or not stop.is_set()):
            with database.transaction() as session:
                due, last = due_artifacts(session=session, after=after, limit=BATCH)
            after = last
            for item in due:
                if stop is not None and stop.is_set():
                    break
                outcome = _expire(store, database, item)
                if outcome is None:  # the store refuses now: the rest waits for a later sweep
                    after = None
                    break
                if outcome:
                    expired.append(item.job_id)
        if settings.object_store and (stop is None or not stop.is_set()):
            _remove_local_leftovers(settings, database)
    if expired:
        log.info("removed the expired artifacts of %d job attempts", len(expired))
    return expired


def _expire(store: ArtifactStore, database: Database, item: DueArtifacts) -> bool | None:
    """Claim the attempt's artifacts and remove them when they are its own; False when another
    sweep claimed them first (or its pipeline runs again), None when the store refused (the
    claim released, so a later sweep tries again)."""
    with database.transaction() as session:
        if not claim_expired(session=session, job_id=item.job_id):
            return False
    if item.owner:
        try:
            store.remove(item.pipeline_id, item.name)
        except (RunnerError, OSError) as exc:
            log.warning(
                "job %s: cannot remove its expired artifacts (%s); trying again later",
                item.job_id,
                exc,
            )
            with database.transaction() as session:
                release_claim(session=session, job_id=item.job_id)
            return None
    return True


def _remove_local_leftovers(settings: Settings, database: Database) -> None:
    """Remove the trees this machine keeps (beside the object store's copies) of artifacts
    expired by another worker's sweep."""
    root = settings.artifacts_dir
    local = ArtifactStore(root)  # this machine's trees only, not the object store's
    if not root.is_dir() or root.is_symlink():
        return
    ids = sorted(int(entry.name) for entry in os.scandir(root) if entry.name.isdigit())
    for start in range(0, len(ids), LOCAL_BATCH):
        with database.transaction() as session:
            names = expired_local_names(
                session=session, pipeline_ids=ids[start : start + LOCAL_BATCH]
            )
        for pipeline_id, name in names:
            try:
                local.remove(pipeline_id, name)
            except (RunnerError, OSError) as exc:
                log.warning(
                    "pipeline %s: cannot remove job %r's local artifacts: %s",
                    pipeline_id,
                    name,
                    exc,
                )


def expired_message(*, database: Database, settings: Settings, job_id: int) -> str | None:
    """Why the job attempt's artifacts cannot be downloaded any more (the 410 answer's
    message), or None when they have not expired."""
    with database.transaction() as session:
        found = expired_artifacts_of(session=session, job_id=job_id)
    if found is None:
        return None
    name, expire_at, plan = found
    spec = None
    if plan is not None:
        try:
            spec = Plan.from_dict(plan).job(name).artifacts
        except (PipelineError, KeyError):  # a plan of another kapal: say less, not fail
            spec = None
    if spec is not None and spec.expire_in is not None:
        why = f"the job's `artifacts: expire_in: {spec.expire_in}`"
    else:
        why = (
            "the job sets no `artifacts: expire_in:`, so the server's "
            f"KAPAL_ARTIFACTS_EXPIRE_IN={settings.artifacts_expire_in} applies"
        )
    when = "" if expire_at is None else f" at {expire_at:%Y-%m-%d %H:%M:%S} UTC"
    return (
        f"the artifacts of job {name!r} (#{job_id}) expired{when} and were removed: {why}; "
        "run the job again to make them anew"
    )
