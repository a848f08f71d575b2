"""A real S3-compatible server for tests: moto's S3 server in its own process on 127.0.0.1.

The server checks every request's signature: it starts with authentication on (after the
first three unsigned requests, which make an IAM user allowed `s3:*` and its access key), so a
wrong key or secret is refused as a real server refuses it. MinIO would do as well, but its
binary comes from a download this workplace does not reach; moto installs from PyPI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from runner.objects import ObjectStore, open_object_store
from tests.support.registry import free_port, stop_process

if TYPE_CHECKING:
    from minio import Minio

_BOOTSTRAP_REQUESTS = 3  # CreateUser, PutUserPolicy, CreateAccessKey: unsigned, then auth is on
_ALLOW_S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass(frozen=True)
class S3Server:
    """Where a test S3 server listens and the credentials it accepts."""

    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str

    def settings(self, url: str) -> dict[str, str]:
        """The KAPAL_* variables of an object store `url` (`s3://bucket/prefix`) on this server."""
        return {
            "KAPAL_OBJECT_STORE": url,
            "KAPAL_S3_ENDPOINT": self.endpoint,
            "KAPAL_S3_ACCESS_KEY": self.access_key,
            "KAPAL_S3_SECRET_KEY": self.secret_key,
            "KAPAL_S3_REGION": "us-east-1",
        }

    def store(self, url: str, **changes: str) -> ObjectStore:
        """kapal's object store at `url` on this server, `changes` made to its endpoint,
        access_key or secret_key (a wrong one, for the error tests)."""
        values = {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": "us-east-1",
            **changes,
        }
        return open_object_store(url, **values)

    def client(self) -> Minio:
        """A `minio` client of this server, to look at the buckets from outside kapal."""
        from minio import Minio

        return Minio(
            self.endpoint.removeprefix("http://"),
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region="us-east-1",
        )


def _iam(endpoint: str, **form: str) -> str:
    # moto routes a request by the service in its credential scope; unsigned, it is not checked
    scope = "Credential=bootstrap/20260101/us-east-1/iam/aws4_request"
    response = httpx.post(
        endpoint + "/",
        data={**form, "Version": "2010-05-08"},
        headers={"Authorization": f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0"},
        timeout=10.0,
    )
    response.raise_for_status()
    return response.text


@contextmanager
def run_s3_server(workdir: Path) -> Iterator[S3Server]:
    """Run moto's S3 server until the block ends; yield where it is and a valid key pair."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (workdir / "moto.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(_BOOTSTRAP_REQUESTS)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {(workdir / 'moto.log').read_text()}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"moto_server did not answer on {endpoint}")
        _iam(endpoint, Action="CreateUser", UserName="kapal")
        _iam(
            endpoint,
            Action="PutUserPolicy",
            UserName="kapal",
            PolicyName="s3",
            PolicyDocument=json.dumps(_ALLOW_S3),
        )
        created = _iam(endpoint, Action="CreateAccessKey", UserName="kapal")
        key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", created)
        secret = re.search(r"<SecretAccessKey>([^<]+)</SecretAccessKey>", created)
        assert key and secret, created
        yield S3Server(endpoint, key.group(1), secret.group(1))
    finally:
        stop_process(process)
        log.close()


def make_bucket(server: S3Server, bucket: str) -> None:
    """Create `bucket` on `server` unless it exists."""
    client = server.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
