"""The HTTP side of the service: dependencies, authorization and one router per subject.

- `deps`: the `Annotated` dependencies routes declare (`SessionDep`, `ServicesDep`, `AccessDep`).
- `auth`: API tokens as the routes see them (`Access`), and the admin token made at first start.
- routers: `hooks` (webhooks), `health` (`/healthz`, `/metrics`), `repos`, `pipelines`, `jobs`,
  `tokens`; `web.app.create_app` mounts them.
"""
