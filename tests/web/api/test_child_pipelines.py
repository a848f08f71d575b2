"""Child pipelines through the API and on the dashboard's pipeline page: a trigger job names
the child pipeline it started, a child pipeline its trigger job and parent pipeline."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.api.conftest import AUTH, register
from tests.web.test_mirrors import Project
from web.orchestration import Services

PIPELINE = """
image: busybox:latest
start-child: {trigger: {include: ci/child.yml}}
"""
CHILD = "image: busybox:latest\ninner: {script: ['true']}\n"


def test_parent_and_child_pipelines_name_each_other(
    client: TestClient, services: Services, project: Project
) -> None:
    repo = register(services, clone_url=str(project.origin))
    project.commit({".kapal.yml": PIPELINE, "ci/child.yml": CHILD})
    project.push()
    made = client.post(f"/api/v1/repos/{repo.id}/pipelines", json={"ref": "main"}, headers=AUTH)
    assert made.status_code == 201, made.text
    parent = client.get(f"/api/v1/pipelines/{made.json()['id']}", headers=AUTH).json()
    [trigger] = parent["jobs"]
    assert trigger["status"] == "success", trigger  # no strategy: done once the child exists
    child_id = trigger["downstream_pipeline_id"]
    assert isinstance(child_id, int)
    assert parent["parent_job_id"] is None and parent["parent_pipeline_id"] is None
    child = client.get(f"/api/v1/pipelines/{child_id}", headers=AUTH).json()
    assert (child["source"], child["parent_job_id"], child["parent_pipeline_id"]) == (
        "parent_pipeline",
        trigger["id"],
        parent["id"],
    )
    assert [job["name"] for job in child["jobs"]] == ["inner"]
    job = client.get(f"/api/v1/jobs/{trigger['id']}", headers=AUTH).json()
    assert (job["worker"], job["downstream_pipeline_id"]) == ("downstream", child_id)
    listed = client.get("/api/v1/pipelines", params={"source": "parent_pipeline"}, headers=AUTH)
    assert [(p["id"], p["parent_job_id"]) for p in listed.json()["items"]] == [
        (child_id, trigger["id"])
    ]
    page = client.get(f"/pipelines/{parent['id']}", headers=AUTH)
    assert page.status_code == 200
    assert f'href="/pipelines/{child_id}"' in page.text
    child_page = client.get(f"/pipelines/{child_id}", headers=AUTH)
    assert f'href="/pipelines/{parent["id"]}#job-start-child"' in child_page.text
    assert "started by start-child" in child_page.text
    job_page = client.get(f"/jobs/{trigger['id']}", headers=AUTH)
    assert f'href="/pipelines/{child_id}"' in job_page.text
