"""A tiny registry token service for tests: RS256 JWTs signed with openssl, on 127.0.0.1.

It implements the "Docker registry v2 bearer token" flow that CNCF distribution's `token` auth
expects: GET /token?service=…&scope=repository:NAME:ACTIONS with basic auth → {"token": JWT}.
The JWT header carries the signing certificate (x5c), which the registry trusts through its
`rootcertbundle`.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ISSUER = "kapal-test-issuer"
SERVICE = "kapal-test-registry"


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate and key for signing tokens: (cert.pem, key.pem)."""
    cert, key = workdir / "token-cert.pem", workdir / "token-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=kapal-test-token",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class TokenServer:
    """Issues tokens to `username`/`password`; records what it was asked (for assertions)."""

    cert: Path
    key: Path
    username: str
    password: str
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)

    def _cert_der_b64(self) -> str:
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        return base64.b64encode(der).decode()

    def sign(self, subject: str, access: list[dict[str, object]]) -> str:
        """A JWT granting `access` to `subject`."""
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._cert_der_b64()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"


@contextmanager
def run_token_server(workdir: Path, username: str, password: str) -> Iterator[TokenServer]:
    """Serve tokens on 127.0.0.1 until the block ends."""
    cert, key = make_certificate(workdir)
    server_state = TokenServer(cert, key, username, password)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            auth = self.headers.get("Authorization", "")
            user = ""
            if auth.startswith("Basic "):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                if (user, password) != (server_state.username, server_state.password):
                    self.send_response(401)
                    self.end_headers()
                    return
            server_state.requests.append({**query, "user": user})
            access = []
            scope = query.get("scope", "")
            if scope.startswith("repository:") and user:
                _, name, actions = scope.split(":", 2)
                access.append({"type": "repository", "name": name, "actions": actions.split(",")})
            body = json.dumps({"token": server_state.sign(user, access)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def token_auth_config(server: TokenServer) -> dict[str, object]:
    """The registry `auth:` section that trusts `server`."""
    return {
        "token": {
            "realm": server.url,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(server.cert),
        }
    }
