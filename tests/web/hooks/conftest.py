"""Webhook deliveries as git hosts send them: fixture payloads, signed with a known secret."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "s3cret-webhook-key"

Deliver = Callable[..., tuple[dict[str, str], bytes]]


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of the fixture payload `name` (without .json)."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def sign(body: bytes, secret: str = SECRET) -> str:
    """The hex HMAC-SHA256 GitHub and Gitea send."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(
    provider: str,
    data: dict[str, Any] | bytes,
    event: str,
    *,
    secret: str = SECRET,
    delivery_id: str | None = None,
    content_type: str = "application/json",
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one delivery, signed the way `provider` signs."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    ident = delivery_id or str(uuid.uuid4())
    headers = {"Content-Type": content_type, "User-Agent": f"{provider}-test"}
    if provider == "github":
        headers |= {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": ident,
            "X-Hub-Signature-256": "sha256=" + sign(body, secret),
        }
    elif provider == "gitea":
        headers |= {
            "X-Gitea-Event": event,
            "X-Gitea-Delivery": ident,
            "X-Gitea-Signature": sign(body, secret),
            "X-GitHub-Event": event,
        }
    else:
        headers |= {
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": secret,
            "X-Gitlab-Event-UUID": ident,
        }
    return headers, body


@pytest.fixture
def deliver() -> Deliver:
    """`delivery(provider, data, event, ...)` as a fixture."""
    return delivery
