"""The JSON state files of services: `service.json`, `status.json`, `spec.json` and the rest.

A service's state is files under `<data_dir>/services/<name>/` (see runner.ship.services), written
by `kapal`, the keepers and the port proxy, read by any of them. This module holds only how they
are written and read, so that `kapal services` reads them without importing a keeper's runtime.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner.runtime.backend import ImageDefaults


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (readers see the old or the new file, whole)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object written by `write_json`, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def defaults_from_json(data: Any) -> ImageDefaults:
    """The `ImageDefaults` a spec.json holds (`dataclasses.asdict` of one, lists for tuples)."""
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in dict(data or {}).items()
    }
    return ImageDefaults(**fields)
