"""Benchmark: kapal's image store and registry client against skopeo and umoci.

Measures, on the same machine and the same Debian minbase+python3 image (bootstrapped with
mmdebstrap, cached under /var/cache/kapal-tests): push to and pull from a local docker-registry
(kapal vs `skopeo copy`), and unpacking the image for use (kapal's `unpacked_layers` vs
`umoci unpack`). Prints a table and writes JSON (`--json PATH`, default
bench/results/image_transfer.json).

Caveats that the ratios carry: kapal stores and pushes bootstrapped layers uncompressed, while
skopeo gzips an uncompressed layer when it pushes it (more CPU, fewer bytes); each push round goes
to a new, empty registry so neither tool can skip blobs; umoci unpack also writes a runtime config
and an mtree manifest of the rootfs.

    .venv/bin/python -m bench.image_transfer [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.images import (
    ImageStore,
    Reference,
    RegistryClient,
    bootstrap_debian,
    export_images,
)
from tests.support.registry import run_registry

CACHE = Path("/var/cache/kapal-tests")


def timed(action: Callable[[], object], rounds: int, reset: Callable[[], None]) -> float:
    """Median seconds of `action` over `rounds` runs, calling `reset` before each."""
    times = []
    for _ in range(rounds):
        reset()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(command: list[str]) -> None:
    """Run a peer's command, failing loudly."""
    subprocess.run(command, check=True, capture_output=True)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench/results/image_transfer.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kapal-bench-"))
    try:
        store = ImageStore(work / "store")
        image = bootstrap_debian(store, "debian:bookworm", include=["python3"], tarball_cache=CACHE)
        layout = work / "layout"
        export_images(store, ["debian:bookworm"], layout, "oci", as_directory=True)
        results: dict[str, dict[str, float]] = {}
        # Push: each round into a new, empty registry (so no peer can skip blobs it knows).
        pushes: dict[str, list[float]] = {"kapal": [], "skopeo": []}
        for round_number in range(args.rounds):
            for tool in pushes:
                with run_registry(work / f"registry-{tool}-{round_number}") as address:
                    target = f"{address}/bench/debian:1"
                    start = time.perf_counter()
                    if tool == "kapal":
                        with RegistryClient() as client:
                            client.push(store, image, Reference.parse(target))
                    else:
                        run(
                            [
                                "skopeo",
                                "copy",
                                "-q",
                                "--dest-tls-verify=false",
                                f"oci:{layout}:bookworm",
                                f"docker://{target}",
                            ]
                        )
                    pushes[tool].append(time.perf_counter() - start)
        results["push"] = {tool: statistics.median(times) for tool, times in pushes.items()}
        with run_registry(work / "registry") as address:
            source = f"{address}/bench/debian:1"
            with RegistryClient() as client:
                client.push(store, image, Reference.parse(source))
            pull_store = work / "pull-store"
            pull_dir = work / "pull-oci"

            def reset_pull() -> None:
                shutil.rmtree(pull_store, ignore_errors=True)
                shutil.rmtree(pull_dir, ignore_errors=True)

            def kapal_pull() -> None:
                with RegistryClient() as client:
                    client.pull(Reference.parse(source), ImageStore(pull_store))

            def skopeo_pull() -> None:
                run(
                    [
                        "skopeo",
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        f"docker://{source}",
                        f"oci:{pull_dir}:x",
                    ]
                )

            results["pull"] = {
                "kapal": timed(kapal_pull, args.rounds, reset_pull),
                "skopeo": timed(skopeo_pull, args.rounds, reset_pull),
            }
        bundle = work / "bundle"

        def reset_unpack() -> None:
            shutil.rmtree(store.layers_dir, ignore_errors=True)
            store.layers_dir.mkdir()
            shutil.rmtree(bundle, ignore_errors=True)

        results["unpack"] = {
            "kapal": timed(lambda: store.unpacked_layers(image), args.rounds, reset_unpack),
            "umoci": timed(
                lambda: run(["umoci", "unpack", "--image", f"{layout}:bookworm", str(bundle)]),
                args.rounds,
                reset_unpack,
            ),
        }
        size_mb = image.size / 1e6
        print(
            f"image: debian:bookworm minbase + python3, {size_mb:.0f} MB, 1 layer; "
            f"median of {args.rounds} rounds"
        )
        print(f"{'operation':<10}{'kapal s':>10}{'peer':>8}{'peer s':>10}{'kapal/peer':>12}")
        for operation, row in results.items():
            peer = next(k for k in row if k != "kapal")
            ratio = row["kapal"] / row[peer]
            print(f"{operation:<10}{row['kapal']:>10.2f}{peer:>8}{row[peer]:>10.2f}{ratio:>12.2f}")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"image_mb": size_mb, "rounds": args.rounds, "results": results}, indent=2)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
