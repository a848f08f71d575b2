"""Shipping: pushing built images, `deploy:` jobs (to a registry, as a service), rollbacks.

`push` talks to registries, `services` rolls services out through detached `keeper` processes
and a port `proxy`, `deployments` records what was shipped, `deploy.Shipper` ties them together
for `JobRunner` and the CLI (`runner.ship.cli`: `kapal services`, `deployments`, `rollback`).
"""
