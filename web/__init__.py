"""The web service (webhooks, REST API, dashboard, database) and the `kapal` entry point.

Imports `runner` and `pipeline`; nothing imports `web`.
"""
