"""Issue 8 item 6: `include: local` stays inside the repository, symlinks included.

A repository links an include to a host file (or a directory of them); the host file parses as
YAML, so its content would reach the resolved pipeline and the messages of `kapal lint`.
Neither `kapal lint` nor the pipeline API may show a byte of it.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import PipelineError, load, resolve
from tests.security import hostfiles
from tests.security.hostfiles import HostDir
from web.cli import build_app

host_dir = hostfiles.host_dir


def _repo(root: Path, include: str, links: dict[str, str]) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / ".kapal.yml").write_text(
        textwrap.dedent(
            f"""
            include: {include}
            mine:
              script: [echo mine]
            """
        ).lstrip()
    )
    for name, target in links.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / name)
    return repo


CASES = [
    pytest.param("inc.yml", {"inc.yml": "{host}/secret.yml"}, id="file-link"),
    pytest.param("hostdir/secret.yml", {"hostdir": "{host}"}, id="dir-link"),
    pytest.param("'hostdir/*.yml'", {"hostdir": "{host}"}, id="glob-through-dir-link"),
    pytest.param("'ci/**.yml'", {"ci/inc.yml": "{host}/secret.yml"}, id="glob-matches-file-link"),
    pytest.param("'/$CI_COMMIT_REF_NAME/secret.yml'", {"main": "{host}"}, id="variable-dir-link"),
    pytest.param("root{host}/secret.yml", {"root": "/"}, id="root-link"),
    pytest.param(
        "ci/inc.yml", {"ci/inc.yml": "../../../../../../../../..{host}/secret.yml"}, id="dotdot"
    ),
]


@pytest.mark.parametrize(("include", "links"), CASES)
def test_an_include_never_reads_a_host_file(
    tmp_path: Path, host_dir: HostDir, include: str, links: dict[str, str]
) -> None:
    host = str(host_dir.path)
    repo = _repo(
        tmp_path,
        include.format(host=host),
        {name: target.format(host=host) for name, target in links.items()},
    )
    try:
        shown = repr(resolve(load(repo / ".kapal.yml")).data)
    except PipelineError as exc:
        shown = str(exc) + "".join(str(p) for p in exc.problems)
    assert host_dir.secret not in shown
    result = CliRunner().invoke(build_app(), ["lint", str(repo)])
    assert host_dir.secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_an_include_linked_inside_the_repository_still_works(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path, "ci/inc.yml", {"ci/inc.yml": "../shared/jobs.yml", "abs.yml": "/shared/jobs.yml"}
    )
    (repo / "shared").mkdir()
    (repo / "shared" / "jobs.yml").write_text("theirs:\n  script: [echo theirs]\n")
    assert "theirs" in resolve(load(repo / ".kapal.yml")).data
    (repo / ".kapal.yml").write_text("include: abs.yml\nmine:\n  script: [echo mine]\n")
    assert "theirs" in resolve(load(repo / ".kapal.yml")).data
