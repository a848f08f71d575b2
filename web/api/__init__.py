"""The HTTP side of the service: dependencies, authorization and one router per subject.

- `deps`: the `Annotated` dependencies routes declare (`SessionDep`, `ServicesDep`, `AccessDep`).
- `auth`: API tokens as the routes see them (`Access`), and the admin token made at first start.
- `RowId` (in `deps`): a row id in a path, bounded so a huge number is a 422, not a database error.
- routers: `hooks` (webhooks), `health` (`/healthz`, `/metrics`), `repos`, `pipelines`, `jobs`,
  `tokens`, `environments`; `web.app.create_app` mounts them with the dashboard's.
"""
