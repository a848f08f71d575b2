"""What the firewall of a `"nat"` sandbox costs: sandbox setup + teardown with and without it.

Run as a script (as root): `.venv/bin/python bench/nat_firewall.py [--runs N]`. In-process,
with the embedded backend: each round sets up and tears down a `"nat"` sandbox (namespace,
nftables rules, slirp4netns) once with the rules and once without them (`install_firewall`
replaced by a no-op), taking turns so that load from elsewhere hits both alike, after 3 warm-up
rounds; and times `install_firewall` alone on a fresh namespace (the host's addresses read from
/proc, one `nft -f -`, the ping sysctl). Prints medians and p90 in milliseconds with the load
average, and writes bench/results/nat_firewall.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.runtime import usernet  # noqa: E402
from runner.runtime.backend import SandboxSpec  # noqa: E402
from runner.runtime.embedded import EmbeddedBackend  # noqa: E402
from runner.runtime.environment import RuntimeEnvironment  # noqa: E402
from runner.runtime.firewall import install_firewall  # noqa: E402
from runner.runtime.netns import create_netns, remove_netns  # noqa: E402
from runner.runtime.policy import ContainerPolicy  # noqa: E402

WARMUP = 3


def _sandbox(backend: EmbeddedBackend, firewalled: bool) -> float:
    with contextlib.ExitStack() as stack:
        if not firewalled:
            stack.enter_context(mock.patch.object(usernet, "install_firewall", _no_rules))
        began = time.perf_counter()
        backend.teardown(backend.setup(SandboxSpec(name="bench", network="nat")))
        return time.perf_counter() - began


def _no_rules(pin: Path, allowed: Sequence[str] = ()) -> None:
    """What the sandbox set-up cost before the firewall: nothing installed."""


def _rules_alone(work: Path) -> float:
    pin = work / "netns"
    create_netns(pin)
    try:
        began = time.perf_counter()
        install_firewall(pin)
        return time.perf_counter() - began
    finally:
        remove_netns(pin)


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
    }


def main() -> None:
    """Time the variants and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"without rules": [], "with rules": [], "rules alone": []}
    with tempfile.TemporaryDirectory(prefix="kapal-bench-") as tmp:
        work = Path(tmp)
        settings = RuntimeEnvironment(data_dir=work / "data")
        backend = EmbeddedBackend(settings, ContainerPolicy(disk_bytes=None))
        for round_ in range(WARMUP + args.runs):
            took = {
                "without rules": _sandbox(backend, firewalled=False),
                "with rules": _sandbox(backend, firewalled=True),
                "rules alone": _rules_alone(work),
            }
            if round_ >= WARMUP:
                for name, seconds in took.items():
                    times[name].append(seconds)
    load = os.getloadavg()
    results = {name: _summary(seconds) for name, seconds in times.items()}
    cost = results["with rules"]["median_ms"] - results["without rules"]["median_ms"]
    print(f"nat sandbox setup + teardown, {args.runs} runs, load average {load[0]:.2f}")
    print(f"{'variant':<16}{'median ms':>12}{'p90 ms':>10}")
    for name, figures in results.items():
        print(f"{name:<16}{figures['median_ms']:>12.2f}{figures['p90_ms']:>10.2f}")
    ratio = results["with rules"]["median_ms"] / results["without rules"]["median_ms"]
    print(f"the rules add {cost:.2f} ms a sandbox (with/without: {ratio:.2f})")
    out = ROOT / "bench" / "results" / "nat_firewall.json"
    out.write_text(
        json.dumps(
            {"runs": args.runs, "loadavg": load, "results": results, "cost_ms": cost}, indent=2
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
