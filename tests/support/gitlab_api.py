"""A small GitLab REST API (v4) over real HTTP for include tests: files, releases, templates.

It answers as GitLab does: the project's full path and the file path are one URL-encoded path
segment each (an unencoded `/` finds no route: `{"error":"404 Not Found"}`); a private project
is `404 Project Not Found` without a token; a wrong `PRIVATE-TOKEN` is `401 Unauthorized`; an
unknown ref is `404 Commit Not Found` and a missing file `404 File Not Found`; no `ref` reads
the default branch. Every request is recorded (raw path, query, headers) for the tests to check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.http_thread import serving


@dataclass
class Project:
    """A project: its files per ref, its default branch, releases (newest first), visibility."""

    refs: dict[str, dict[str, bytes]]
    default: str = "main"
    private: bool = False
    forbidden: bool = False
    releases: list[str] = field(default_factory=list)
    # a redirect answered for every file of the project (absolute or relative Location)
    redirect: str = ""


@dataclass(frozen=True)
class Seen:
    """One request the server got."""

    raw_path: str
    query: dict[str, list[str]]
    token: str | None


@dataclass
class GitLabAPI:
    """What the server serves; `requests` fills up as it is asked."""

    projects: dict[str, Project] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    token: str = ""
    requests: list[Seen] = field(default_factory=list)

    def answer(self, raw_path: str, query: str, token: str | None) -> tuple[int, bytes, str]:
        """(status, body, Location) for a GET, as GitLab would answer it."""
        found = parse_qs(query)
        self.requests.append(Seen(raw_path, found, token))
        if token is not None and token != self.token:
            return _json(401, {"message": "401 Unauthorized"})
        parts = raw_path.split("/")
        if parts[:3] != ["", "api", "v4"]:
            return _json(404, {"error": "404 Not Found"})
        route = parts[3:]
        if len(route) == 3 and route[:2] == ["templates", "gitlab_ci_ymls"]:
            key = unquote(route[2])
            if key not in self.templates:
                return _json(404, {"message": "404 Template Not Found"})
            return _json(200, {"name": key, "content": self.templates[key]})
        if len(route) < 3 or route[0] != "projects":
            return _json(404, {"error": "404 Not Found"})
        project = self.projects.get(unquote(route[1]))
        if project is None or (project.private and token is None):
            return _json(404, {"message": "404 Project Not Found"})
        if project.forbidden:
            return _json(403, {"message": "403 Forbidden"})
        if route[2:] == ["releases"]:  # paginated as GitLab does: 20 a page unless asked
            per_page = min(int(found.get("per_page", ["20"])[0]), 100)
            start = (int(found.get("page", ["1"])[0]) - 1) * per_page
            page = project.releases[start : start + per_page]
            return _json(200, [{"tag_name": tag, "name": tag} for tag in page])
        if len(route) != 6 or route[2:4] != ["repository", "files"] or route[5] != "raw":
            return _json(404, {"error": "404 Not Found"})
        if project.redirect:
            return 302, b"", project.redirect
        ref = found.get("ref", [project.default])[0]
        files = project.refs.get(ref)
        if files is None:
            return _json(404, {"message": "404 Commit Not Found"})
        content = files.get(unquote(route[4]))
        if content is None:
            return _json(404, {"message": "404 File Not Found"})
        return 200, content, ""


def _json(status: int, body: object) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), ""


@contextmanager
def serve_gitlab(api: GitLabAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `api` on `host` at a free port; yields the instance's URL (http://host:port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body, location = api.answer(
                parts.path, parts.query, self.headers.get("PRIVATE-TOKEN")
            )
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header(
                "Content-Type", "application/json" if body[:1] in b"[{" else "text/plain"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler, host) as port:
        yield f"http://{host}:{port}"
