"""The `ObjectStore` contract, played against both stores: a directory and a real S3 server.

The S3 store talks to moto's S3 server on 127.0.0.1 (tests/support/s3.py), which checks every
request's signature, so the error tests see what a real server answers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.errors import ObjectKeyError, ObjectStoreError
from runner.objects import DirectoryObjectStore, ObjectStore, open_object_store
from runner.objects.directory import write_atomically
from tests.support.registry import free_port
from tests.support.s3 import S3Server, make_bucket

BUCKET = "kapal-contract"
BAD_KEYS = ["", "/etc/passwd", "../up", "a/../../b", "a//b", "a/./b", ".", "..", "a\0b", "a\\b"]


@pytest.fixture(scope="module")
def contract_bucket(s3_server: S3Server) -> str:
    """A bucket on the test server shared by this module's tests (each has its own prefix)."""
    make_bucket(s3_server, BUCKET)
    return BUCKET


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each kind."""
    if request.param == "directory":
        return open_object_store(str(tmp_path / "store"))
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("contract_bucket")
    return server.store(f"s3://{bucket}/t-{secrets.token_hex(6)}")


def write(path: Path, data: bytes) -> Path:
    """Write `data` to `path` and return it."""
    path.write_bytes(data)
    return path


def test_a_blob_goes_in_comes_back_and_goes_away(store: ObjectStore, tmp_path: Path) -> None:
    store.check()
    data = os.urandom(300_000)
    assert store.put_file("artifacts/7/build.tar.gz", write(tmp_path / "in", data)) == len(data)
    assert store.exists("artifacts/7/build.tar.gz")
    assert store.get_file("artifacts/7/build.tar.gz", tmp_path / "out" / "blob")
    assert (tmp_path / "out" / "blob").read_bytes() == data
    store.delete("artifacts/7/build.tar.gz")
    assert not store.exists("artifacts/7/build.tar.gz")
    assert not store.get_file("artifacts/7/build.tar.gz", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    store.delete("artifacts/7/build.tar.gz")  # deleting what is gone is no error


def test_a_put_replaces_the_blob_whole(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file("k", write(tmp_path / "a", b"first version, longer"))
    store.put_file("k", write(tmp_path / "b", b"second"))
    assert store.get_file("k", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"second"
    assert list(store.keys()) == ["k"]  # no partial file shows as a key


def test_keys_list_by_prefix(store: ObjectStore, tmp_path: Path) -> None:
    source = write(tmp_path / "x", b"x")
    for key in ("a/1", "a/2/deep", "ab/3", "b/4"):
        store.put_file(key, source)
    assert list(store.keys("a/")) == ["a/1", "a/2/deep"]
    assert list(store.keys("a")) == ["a/1", "a/2/deep", "ab/3"]
    assert list(store.keys()) == ["a/1", "a/2/deep", "ab/3", "b/4"]
    assert list(store.keys("c/")) == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_are_not_plain_relative_paths_are_refused(
    store: ObjectStore, tmp_path: Path, key: str
) -> None:
    source = write(tmp_path / "x", b"x")
    for call in (
        lambda: store.put_file(key, source),
        lambda: store.get_file(key, tmp_path / "out"),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(ObjectKeyError):
            call()
    assert not (tmp_path / "out").exists()
    assert list(store.keys()) == []


def test_a_listing_prefix_may_not_be_absolute_or_climb(store: ObjectStore) -> None:
    for prefix in ("/", "/etc", "../", "a/../"):
        with pytest.raises(ObjectKeyError):
            list(store.keys(prefix))


# -- a large blob streams --------------------------------------------------------------------

ROUND_TRIP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from runner.objects import open_object_store

    def peak():  # this process's own high-water mark (ru_maxrss would carry the parent's)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    url, endpoint, key, secret, source, target = sys.argv[1:]
    store = open_object_store(url, endpoint=endpoint, access_key=key, secret_key=secret,
                              region="us-east-1")
    store.check()
    store.exists("warm-up")  # the client and its imports are made before the baseline
    before = peak()
    store.put_file("big/blob", Path(source))
    store.get_file("big/blob", Path(target))
    after = peak()
    whole = Path(source).read_bytes()  # the control: what holding the blob whole would cost
    print(after - before, peak() - before, len(whole))
    """
)


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_a_50_mb_blob_streams_through_without_being_held_in_memory(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    size = 50 << 20
    source = tmp_path / "big"
    with source.open("wb") as handle:
        for _ in range(size >> 20):
            handle.write(os.urandom(1 << 20))
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("contract_bucket")
        url = f"s3://{bucket}/big-{secrets.token_hex(6)}"
        args = [url, server.endpoint, server.access_key, server.secret_key]
    else:
        args = [str(tmp_path / "store"), "", "", ""]
    target = tmp_path / "back"
    done = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, *args, str(source), str(target)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    growth, control, _ = (int(n) for n in done.stdout.split())
    assert control > 40 << 20, "the measure does not see a blob held whole"
    assert target.stat().st_size == size
    with source.open("rb") as a, target.open("rb") as b:
        while chunk := a.read(1 << 20):
            assert chunk == b.read(1 << 20)
    # a part (8 MiB) and the client's buffers, never the blob's 50 MiB
    assert growth < 25 << 20, f"peak memory grew by {growth >> 20} MiB for a 50 MiB blob"


# -- the directory store's own guarantees ------------------------------------------------------


def test_a_symlink_in_the_store_never_leads_out_of_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    root = tmp_path / "store"
    store = DirectoryObjectStore(root)
    store.check()
    (root / "escape").symlink_to(outside)
    (root / "blob").symlink_to(outside / "secret")
    source = write(tmp_path / "x", b"job data")

    store.put_file("escape/planted", source)  # resolved inside the root
    assert not (outside / "planted").exists()
    assert (root / str(outside).lstrip("/") / "planted").read_bytes() == b"job data"
    assert not store.get_file("escape/secret", tmp_path / "read")  # no host file read
    assert not store.exists("blob")  # the link resolves inside the root: nothing there

    store.put_file("blob", source)  # the link itself is replaced, never written through
    assert (outside / "secret").read_bytes() == b"host secret"
    assert not (root / "blob").is_symlink()
    store.delete("escape")  # a link is deleted itself, its target left alone
    assert (outside / "secret").exists()


def test_a_failed_write_leaves_the_old_blob_and_no_partial_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = DirectoryObjectStore(root)
    store.put_file("k", write(tmp_path / "a", b"old"))

    class Broken:
        """A source that fails half-way."""

        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1, /) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk went away")
            return b"new data, half"

    parent = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="disk went away"):
            write_atomically(parent, "k", Broken())
    finally:
        os.close(parent)
    assert (root / "k").read_bytes() == b"old"
    assert sorted(p.name for p in root.iterdir()) == ["k"]


def test_a_directory_is_no_blob(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path / "store")
    store.put_file("a/b", write(tmp_path / "x", b"x"))
    assert not store.exists("a")
    store.delete("a")  # not a blob: nothing removed
    assert store.exists("a/b")


def test_an_unwritable_directory_is_named_with_its_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ObjectStoreError, match="KAPAL_OBJECT_STORE"):
        DirectoryObjectStore(tmp_path / "file" / "store").check()


# -- settings and the S3 server's refusals -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "changes", "named"),
    [
        ("ftp://host/x", {}, "KAPAL_OBJECT_STORE"),
        ("relative/dir", {}, "KAPAL_OBJECT_STORE"),
        ("s3://", {}, "KAPAL_OBJECT_STORE"),
        ("s3://bucket/../up", {}, "object key"),
        ("s3://bucket", {"endpoint": "ftp://host"}, "KAPAL_S3_ENDPOINT"),
        ("s3://bucket", {"endpoint": "http://host:9000/path"}, "KAPAL_S3_ENDPOINT"),
        ("s3://bucket", {"access_key": ""}, "KAPAL_S3_ACCESS_KEY"),
        ("s3://bucket", {"secret_key": ""}, "KAPAL_S3_SECRET_KEY"),
    ],
)
def test_malformed_settings_are_named(url: str, changes: dict[str, str], named: str) -> None:
    values = {"endpoint": "http://127.0.0.1:9000", "access_key": "k", "secret_key": "s"}
    with pytest.raises(ObjectStoreError, match=named):
        open_object_store(url, **{**values, **changes})


def test_wrong_credentials_name_the_credential_settings(
    s3_server: S3Server, contract_bucket: str, tmp_path: Path
) -> None:
    source = write(tmp_path / "x", b"x")
    for changes in ({"secret_key": "wrong-secret"}, {"access_key": "AKIAWRONGWRONGWRONG0"}):
        store = s3_server.store(f"s3://{contract_bucket}/creds", **changes)
        with pytest.raises(ObjectStoreError) as checked:
            store.check()
        with pytest.raises(ObjectStoreError) as stored:
            store.put_file("k", source)
        for message in (str(checked.value), str(stored.value)):
            assert "refused kapal's credentials" in message
            assert "KAPAL_S3_ACCESS_KEY and KAPAL_S3_SECRET_KEY" in message
            assert "wrong-secret" not in message


def test_a_missing_bucket_is_named(s3_server: S3Server, tmp_path: Path) -> None:
    store = s3_server.store("s3://kapal-no-such-bucket/x")
    with pytest.raises(ObjectStoreError) as checked:
        store.check()
    with pytest.raises(ObjectStoreError) as stored:
        store.put_file("k", write(tmp_path / "x", b"x"))
    for message in (str(checked.value), str(stored.value)):
        assert "bucket 'kapal-no-such-bucket' does not exist" in message
        assert "KAPAL_OBJECT_STORE" in message


def test_an_unreachable_endpoint_is_named(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = open_object_store(
        "s3://bucket/x", endpoint=endpoint, access_key="k", secret_key="s", region="us-east-1"
    )
    with pytest.raises(ObjectStoreError, match="KAPAL_S3_ENDPOINT") as checked:
        store.check()
    assert endpoint in str(checked.value)
    with pytest.raises(ObjectStoreError, match="cannot reach"):
        store.get_file("k", tmp_path / "out")


def test_the_s3_client_is_imported_only_for_an_s3_store() -> None:
    code = (
        "import sys\n"
        "from runner.objects import open_object_store\n"
        "import runner.artifacts, runner.cache\n"
        "open_object_store('/tmp/kapal-unused-store')\n"
        "assert 'minio' not in sys.modules, 'minio imported'\n"
        "open_object_store('s3://b', endpoint='http://127.0.0.1:1', access_key='k',"
        " secret_key='s').exists\n"
        "assert 'minio' not in sys.modules, 'minio imported before the first request'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr


def test_an_endpoint_that_is_no_s3_server_is_named(registry: str) -> None:
    store = open_object_store(
        "s3://bucket/x",
        endpoint=f"http://{registry}",  # a container registry: HTTP, but not S3
        access_key="k",
        secret_key="s",
        region="us-east-1",
    )
    with pytest.raises(ObjectStoreError, match="KAPAL_S3_ENDPOINT") as checked:
        store.check()  # what a worker does when it starts
    assert "did not answer as an S3 server" in str(checked.value)
