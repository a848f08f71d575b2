"""The registry client against a real docker-registry: pull, push, manifest lists, auth, faults."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from runner.errors import (
    CorruptBlobError,
    ImageError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryError,
)
from runner.images import ImageStore, Reference, RegistryClient, export_images
from runner.images import mediatypes as mt
from runner.images import registry as registry_module
from runner.images.registry import is_local_host, load_credentials, parse_challenge
from tests.support.registry import run_registry
from tests.support.tars import Entry, write_tar
from tests.support.token_server import run_token_server, token_auth_config


class RecordingTransport(httpx.BaseTransport):
    """Passes requests to the real transport and records (method, path, Range) of each."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls: list[tuple[str, str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path, request.headers.get("range", "")))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def source(tmp_path: Path) -> ImageStore:
    """A store with `app:1`: an uncompressed and a gzip layer of random content."""
    store = ImageStore(tmp_path / "source")
    a = store.add_layer(
        write_tar(tmp_path / "a.tar", [Entry("a.bin", data=_random(300_000))]), compressed=False
    )
    b = store.add_layer(
        write_tar(tmp_path / "b.tgz", [Entry("b.bin", data=_random(200_000))], compress=True),
        compressed=True,
    )
    store.commit({"config": {"Cmd": ["/bin/sh"]}}, [a, b], ["app:1"])
    return store


def _random(n: int) -> bytes:
    return os.urandom(n)


def _repo(registry: str, request: pytest.FixtureRequest) -> str:
    return f"{registry}/kapal-tests/{request.node.name.replace('_', '-').strip('-')[:60]}"


def test_push_then_pull_into_another_store(
    registry: str, source: ImageStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref = Reference.parse(f"{_repo(registry, request)}:1")
    image = source.resolve("app:1")
    transport = RecordingTransport()
    with RegistryClient(transport=transport) as client:
        assert client.push(source, image, ref) == image.digest
        first = list(transport.calls)
        transport.calls.clear()
        client.push(source, image, ref)  # everything is there: HEADs and the manifest only
        second = list(transport.calls)
        target = ImageStore(tmp_path / "target")
        pulled = client.pull(ref, target)
    assert [m for m, _, _ in first].count("POST") == 3  # config + two layers
    assert [m for m, _, _ in second] == ["HEAD", "HEAD", "HEAD", "PUT"]
    assert first[-1][0] == "PUT" and "/manifests/" in first[-1][1]  # manifest last
    assert pulled.digest == image.digest
    assert target.resolve(ref).digest == image.digest
    lowers = target.unpacked_layers(pulled)
    assert (lowers[0] / "a.bin").stat().st_size == 300_000
    assert (lowers[1] / "b.bin").stat().st_size == 200_000


def test_push_to_another_repository_mounts_known_blobs(
    registry: str, source: ImageStore, request: pytest.FixtureRequest
) -> None:
    image = source.resolve("app:1")
    transport = RecordingTransport()
    with RegistryClient(transport=transport) as client:
        client.push(source, image, Reference.parse(f"{_repo(registry, request)}-a:1"))
        transport.calls.clear()
        client.push(source, image, Reference.parse(f"{_repo(registry, request)}-b:1"))
    methods = [m for m, _, _ in transport.calls]
    assert methods == ["HEAD", "POST"] * 3 + ["PUT"]  # three mounts, then the manifest
    assert "/manifests/" in transport.calls[-1][1]
    with httpx.Client() as http:
        for layer in image.layers:
            url = f"http://{_repo(registry, request)}-b/blobs/{layer.digest}"
            head = http.head(url.replace(registry + "/", registry + "/v2/", 1))
            assert head.status_code == 200


def test_chunked_upload(
    registry: str,
    source: ImageStore,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "CHUNK_UPLOAD_SIZE", 64 * 1024)
    ref = Reference.parse(f"{_repo(registry, request)}:1")
    transport = RecordingTransport()
    with RegistryClient(transport=transport) as client:
        client.push(source, source.resolve("app:1"), ref)
        assert [m for m, _, _ in transport.calls].count("PATCH") >= 5
        pulled = client.pull(ref, ImageStore(tmp_path / "t"))
    assert pulled.digest == source.resolve("app:1").digest


def _put_index(registry: str, repo_ref: Reference, tag: str, manifests: list[dict]) -> str:
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    body = json.dumps(index).encode()
    response = httpx.put(
        f"http://{registry}/v2/{repo_ref.repository}/manifests/{tag}",
        content=body,
        headers={"Content-Type": mt.OCI_INDEX},
    )
    assert response.status_code == 201, response.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


def test_manifest_list_picks_linux_amd64(
    registry: str, source: ImageStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    repo = Reference.parse(f"{_repo(registry, request)}:x")
    image = source.resolve("app:1")
    other = source.commit({"config": {"Cmd": ["arm"]}}, image.layers, ["arm:1"])
    with RegistryClient() as client:
        client.push(source, image, repo.with_tag("amd64"))
        client.push(source, other, repo.with_tag("arm64"))

        def desc(img: object, arch: str) -> dict:
            digest = getattr(img, "digest")  # noqa: B009
            size = source.blobs.size(digest)
            return {
                "mediaType": mt.OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }

        index = _put_index(registry, repo, "multi", [desc(other, "arm64"), desc(image, "amd64")])
        _put_index(registry, repo, "armonly", [desc(other, "arm64")])
        target = ImageStore(tmp_path / "t")
        pulled = client.pull(repo.with_tag("multi"), target)
        assert pulled.digest == image.digest
        assert target.resolve(repo.with_tag("multi")).config["config"]["Cmd"] == ["/bin/sh"]
        with pytest.raises(ImageError, match=r"no linux/amd64 image \(it has: linux/arm64\)"):
            client.pull(repo.with_tag("armonly"), target)
        by_digest = ImageStore(tmp_path / "by-digest")
        pinned = repo.with_digest(index)
        assert client.pull(pinned, by_digest).digest == image.digest
    assert by_digest.gc().blobs == 0  # a pull by digest keeps its image
    assert by_digest.resolve(pinned).digest == image.digest
    assert [t.reference for t in by_digest.list_images()] == [pinned]
    by_digest.remove(pinned)
    assert list(by_digest.blobs.digests()) == []


def test_pull_missing_image_is_a_clear_error(registry: str, tmp_path: Path) -> None:
    with RegistryClient() as client, pytest.raises(ImageNotFoundError) as info:
        client.pull(Reference.parse(f"{registry}/nobody/nothing:1"), ImageStore(tmp_path / "s"))
    assert "not in registry" in str(info.value) and "nobody/nothing:1" in str(info.value)


def _registry_blob(storage: Path, digest: str) -> Path:
    hexpart = digest.split(":")[1]
    return storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def test_corrupt_blob_from_registry_is_refused_and_store_stays_consistent(
    tmp_path: Path, source: ImageStore
) -> None:
    image = source.resolve("app:1")
    with run_registry(tmp_path / "reg") as address:
        ref = Reference.parse(f"{address}/c/app:1")
        with RegistryClient() as client:
            client.push(source, image, ref)
        blob = _registry_blob(tmp_path / "reg" / "data", image.layers[1].digest)
        blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
        target = ImageStore(tmp_path / "t")
        source.commit({"config": {}}, image.layers[:1], ["keep:1"])
        keep = source.resolve("keep:1")
        with RegistryClient() as client:
            client.push(source, keep, Reference.parse(f"{address}/c/keep:1"))
            client.pull(Reference.parse(f"{address}/c/keep:1"), target)
            with pytest.raises(CorruptBlobError, match=image.layers[1].digest):
                client.pull(ref, target)
    assert [t.reference.familiar for t in target.list_images()] == [f"{address}/c/keep:1"]
    assert not target.blobs.has(image.layers[1].digest)
    assert [p for p in target.tmp.iterdir() if not p.name.endswith(".lock")] == []
    assert target.unpacked_layers(target.resolve(f"{address}/c/keep:1"))


def test_interrupted_download_resumes_with_range(
    registry: str, source: ImageStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref = Reference.parse(f"{_repo(registry, request)}:1")
    image = source.resolve("app:1")
    with RegistryClient() as client:
        client.push(source, image, ref)
    target = ImageStore(tmp_path / "t")
    layer = image.layers[0]
    partial = source.blobs.path(layer.digest).read_bytes()[:100_000]
    (target.tmp / f"download-{layer.digest[7:]}.part").write_bytes(partial)
    transport = RecordingTransport()
    with RegistryClient(transport=transport) as client:
        client.pull(ref, target)
    assert ("GET", f"/v2/{ref.repository}/blobs/{layer.digest}", "bytes=100000-") in (
        transport.calls
    )
    assert (
        target.blobs.path(layer.digest).read_bytes() == source.blobs.path(layer.digest).read_bytes()
    )


def test_basic_auth_with_htpasswd(tmp_path: Path, source: ImageStore) -> None:
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", "bob", "correct horse"], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / "htpasswd").write_text(htpasswd)
    auth = {"htpasswd": {"realm": "kapal-tests", "path": str(tmp_path / "htpasswd")}}
    auth_file = tmp_path / "config.json"
    with run_registry(tmp_path / "reg", auth=auth) as address:
        ref = Reference.parse(f"{address}/private/app:1")
        with RegistryClient(auth_file=auth_file) as client, pytest.raises(RegistryAuthError) as e:
            client.push(source, source.resolve("app:1"), ref)
        assert str(auth_file) in str(e.value) and address in str(e.value)
        _write_auth(auth_file, address, "bob", "wrong")
        with RegistryClient(auth_file=auth_file) as client, pytest.raises(RegistryAuthError):
            client.push(source, source.resolve("app:1"), ref)
        _write_auth(auth_file, address, "bob", "correct horse")
        with RegistryClient(auth_file=auth_file) as client:
            client.push(source, source.resolve("app:1"), ref)
            pulled = client.pull(ref, ImageStore(tmp_path / "t"))
    assert pulled.digest == source.resolve("app:1").digest


def _write_auth(path: Path, registry: str, user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))


def test_bearer_token_flow(tmp_path: Path, source: ImageStore) -> None:
    auth_file = tmp_path / "config.json"
    with (
        run_token_server(tmp_path, "alice", "s3cret") as tokens,
        run_registry(tmp_path / "reg", auth=token_auth_config(tokens)) as address,
    ):
        ref = Reference.parse(f"{address}/team/app:1")
        with RegistryClient(auth_file=auth_file) as client, pytest.raises(RegistryAuthError):
            client.push(source, source.resolve("app:1"), ref)  # anonymous: no push access
        _write_auth(auth_file, address, "alice", "s3cret")
        with RegistryClient(auth_file=auth_file) as client:
            client.push(source, source.resolve("app:1"), ref)
        with RegistryClient(auth_file=auth_file) as client:
            pulled = client.pull(ref, ImageStore(tmp_path / "t"))
    assert pulled.digest == source.resolve("app:1").digest
    asked = [(r["scope"], r["user"], r["service"]) for r in tokens.requests]
    assert ("repository:team/app:pull,push", "alice", "kapal-test-registry") in asked
    assert ("repository:team/app:pull", "alice", "kapal-test-registry") in asked


def test_registry_with_broken_storage_answers_500(tmp_path: Path, source: ImageStore) -> None:
    with run_registry(tmp_path / "reg") as address:
        storage = tmp_path / "reg" / "data"
        if storage.exists():
            shutil.rmtree(storage)
        storage.write_text("a file where the registry wants its storage directory")
        store = ImageStore(tmp_path / "s")
        with RegistryClient() as client:
            with pytest.raises(RegistryError) as pulling:
                client.pull(Reference.parse(f"{address}/app/x:1"), store)
            with pytest.raises(RegistryError) as pushing:
                client.push(source, source.resolve("app:1"), Reference.parse(f"{address}/a/x:1"))
    for error in (pulling.value, pushing.value):
        assert "failed with 500" in str(error) and "try again later" in str(error)
    assert store.list_images() == []


def test_503_is_retried_then_reported(tmp_path: Path) -> None:
    # docker-registry does not answer 503 on demand: this one uses httpx's MockTransport.
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE", "message": "busy"}]})

    store = ImageStore(tmp_path / "s")
    transport = httpx.MockTransport(handler)
    with RegistryClient(transport=transport) as client, pytest.raises(RegistryError) as e:
        client.pull(Reference.parse("127.0.0.1:9/app:1"), store)
    assert "failed with 503" in str(e.value) and "UNAVAILABLE busy" in str(e.value)
    assert len(calls) == registry_module.RETRIES
    assert store.list_images() == []


def test_unreachable_registry(tmp_path: Path) -> None:
    with RegistryClient() as client, pytest.raises(RegistryError, match="cannot reach registry"):
        client.pull(Reference.parse("127.0.0.1:1/app:1"), ImageStore(tmp_path / "s"))


def test_plain_http_only_for_local_or_insecure_registries() -> None:
    with RegistryClient(insecure=["build.example.test:5000"]) as client:
        assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000/v2/"
        assert client.base_url("127.9.9.9") == "http://127.9.9.9/v2/"
        assert client.base_url("localhost:5000") == "http://localhost:5000/v2/"
        assert client.base_url("[::1]:5000") == "http://[::1]:5000/v2/"
        assert client.base_url("build.example.test:5000") == "http://build.example.test:5000/v2/"
        assert client.base_url("other.example.test") == "https://other.example.test/v2/"
        assert client.base_url("docker.io") == "https://registry-1.docker.io/v2/"
    assert not is_local_host("128.0.0.1:5000")


def test_challenge_and_credentials_parsing(tmp_path: Path) -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.test/token",service="reg",scope="repository:a:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example.test/token",
        "service": "reg",
        "scope": "repository:a:pull",
    }
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"u:p:x").decode()},
                    "r.example.test": {"username": "me", "password": "pw"},
                }
            }
        )
    )
    assert load_credentials(path, "docker.io") == registry_module.Credentials("u", "p:x")
    assert load_credentials(path, "r.example.test") == registry_module.Credentials("me", "pw")
    assert load_credentials(path, "none.example.test") is None
    path.write_text("{not json")
    with pytest.raises(RegistryAuthError, match="cannot read registry credentials"):
        load_credentials(path, "x")


def test_pull_docker_v2_schema2_manifest_written_by_skopeo(
    registry: str, source: ImageStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    layout = tmp_path / "layout"
    export_images(source, ["app:1"], layout, "oci", as_directory=True)
    target = f"{_repo(registry, request)}:v2s2"
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            f"oci:{layout}:1",
            f"docker://{target}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    store = ImageStore(tmp_path / "t")
    with RegistryClient() as client:
        image = client.pull(Reference.parse(target), store)
        assert image.media_type == mt.DOCKER_MANIFEST
        assert {x.media_type for x in image.layers} == {mt.DOCKER_LAYER_GZIP}
        assert image.config["config"]["Cmd"] == ["/bin/sh"]
        lowers = store.unpacked_layers(image)
        assert (lowers[0] / "a.bin").stat().st_size == 300_000
        # and back: a Docker v2 image pushes with its own media types, same digest
        again = Reference.parse(f"{_repo(registry, request)}-back:1")
        assert client.push(store, image, again) == image.digest


def test_corrupt_manifest_from_registry_is_refused(tmp_path: Path, source: ImageStore) -> None:
    # docker-registry checks its stored manifests itself (it answers 500 for a tampered one), so
    # the client's own check against Docker-Content-Digest is driven by a MockTransport.
    image = source.resolve("app:1")
    original = source.blobs.path(image.digest).read_bytes()
    tampered = original.replace(b'"schemaVersion":2', b'"schemaVersion":3')
    assert tampered != original

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": image.digest}
        return httpx.Response(200, content=tampered, headers=headers)

    target = ImageStore(tmp_path / "t")
    with (
        RegistryClient(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(CorruptBlobError, match=image.digest),
    ):
        client.pull(Reference.parse("127.0.0.1:9/c/app:1"), target)
    assert target.list_images() == [] and list(target.blobs.digests()) == []
