"""The dashboard's routes, gathered: pages (pipelines, a pipeline, a job, repositories,
environments, charts), live events, badges, the token sign-in and the write actions, which call
the same service layer as the REST API.

Reads follow the API's rule (public unless `Settings.public_reads` is false, then a signed-in
token); writes need a signed-in token with the `write` scope on the repository, and a form
carrying the browser's CSRF value. The app includes `router` and mounts `static_files` (the
CSS, JavaScript and icon, served by kapal itself: the dashboard works offline) at `STATIC_PATH`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from web.dashboard import (
    account_view,
    actions,
    charts_view,
    environment_view,
    events_view,
    job_view,
    list_view,
    pipeline_view,
    repository_view,
)

__all__ = ["STATIC_PATH", "router", "static_files"]

STATIC_PATH = "/dashboard/static"
STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)
for part in (
    list_view,
    pipeline_view,
    job_view,
    repository_view,
    environment_view,
    charts_view,
    events_view,
    account_view,
    actions,
):
    router.include_router(part.router)
static_files = StaticFiles(directory=STATIC_DIR)
