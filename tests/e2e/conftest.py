"""End-to-end fixtures: the engine on the embedded runtime, and `kapal` as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

KAPAL = [sys.executable, "-m", "web.cli"]
REPO = Path(__file__).resolve().parents[2]


def kapal(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `kapal ARGS` to completion and return what it did (stdout is not a terminal)."""
    return subprocess.run(
        [*KAPAL, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
