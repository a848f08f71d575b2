"""Each host refuses a bad delivery with the same statuses and a message that says what to do."""

from __future__ import annotations

import pytest

from tests.web.hooks.conftest import SECRET, delivery, payload
from web.errors import (
    HeaderError,
    PayloadError,
    SignatureError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from web.hooks import parse_delivery

HOSTS = [
    ("github", "github_push", "push", "X-Hub-Signature-256", "X-GitHub-Event"),
    ("gitlab", "gitlab_push", "Push Hook", "X-Gitlab-Token", "X-Gitlab-Event"),
    ("gitea", "gitea_push", "push", "X-Gitea-Signature", "X-Gitea-Event"),
]
ids = [host[0] for host in HOSTS]


def refused(provider: str, headers: dict[str, str], body: bytes) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        parse_delivery(provider, headers, body, secret=SECRET)
    return caught.value


@pytest.mark.parametrize(("provider", "fixture", "event", "signature", "_"), HOSTS, ids=ids)
def test_wrong_secret(provider: str, fixture: str, event: str, signature: str, _: str) -> None:
    headers, body = delivery(provider, payload(fixture), event, secret="not the secret")
    error = refused(provider, headers, body)
    assert isinstance(error, SignatureError) and error.status == 401
    assert f"{signature} does not match" in str(error)
    assert "differs from the repository's secret in kapal" in str(error)


@pytest.mark.parametrize(("provider", "fixture", "event", "signature", "_"), HOSTS, ids=ids)
def test_missing_signature(provider: str, fixture: str, event: str, signature: str, _: str) -> None:
    headers, body = delivery(provider, payload(fixture), event)
    del headers[signature]
    error = refused(provider, headers, body)
    assert isinstance(error, SignatureError) and error.status == 401
    assert str(error).startswith(f"missing header {signature}: set the ")


@pytest.mark.parametrize(("provider", "fixture", "event", "_", "header"), HOSTS, ids=ids)
def test_missing_event_header(provider: str, fixture: str, event: str, _: str, header: str) -> None:
    headers, body = delivery(provider, payload(fixture), event)
    for name in ("X-GitHub-Event", header):
        headers.pop(name, None)
    error = refused(provider, headers, body)
    assert isinstance(error, HeaderError) and error.status == 400
    assert f"(its URL is /hooks/{provider})" in str(error)


@pytest.mark.parametrize(("provider", "fixture", "event", "_", "__"), HOSTS, ids=ids)
def test_malformed_json(provider: str, fixture: str, event: str, _: str, __: str) -> None:
    headers, body = delivery(provider, b'{"ref": refs/heads/main}', event)
    error = refused(provider, headers, body)
    assert isinstance(error, PayloadError) and error.status == 400
    assert str(error) == "the body is not valid JSON: Expecting value: line 1 column 9 (char 8)"


@pytest.mark.parametrize(("provider", "fixture", "event", "_", "__"), HOSTS, ids=ids)
def test_not_utf8(provider: str, fixture: str, event: str, _: str, __: str) -> None:
    headers, body = delivery(provider, b'{"ref": "\xff"}', event)
    error = refused(provider, headers, body)
    assert str(error) == "the body is not UTF-8 text (byte 9 is invalid)"


@pytest.mark.parametrize(("provider", "fixture", "event", "_", "__"), HOSTS, ids=ids)
def test_missing_ref(provider: str, fixture: str, event: str, _: str, __: str) -> None:
    data = payload(fixture)
    del data["ref"]
    headers, body = delivery(provider, data, event)
    error = refused(provider, headers, body)
    assert isinstance(error, PayloadError) and error.field == "ref"
    host = {"github": "GitHub", "gitlab": "GitLab", "gitea": "Gitea"}[provider]
    assert str(error) == (
        f"{host} {event} payload: field `ref` is missing; it should hold a git ref "
        "(is this delivery from the host its URL names?)"
    )


@pytest.mark.parametrize(("provider", "fixture", "event", "_", "__"), HOSTS, ids=ids)
def test_wrong_content_type(provider: str, fixture: str, event: str, _: str, __: str) -> None:
    headers, body = delivery(provider, payload(fixture), event, content_type="multipart/form-data")
    error = refused(provider, headers, body)
    assert isinstance(error, UnsupportedMediaTypeError) and error.status == 415
    assert "content type 'multipart/form-data' is not accepted" in str(error)
    assert "content type to application/json" in str(error)


def test_unknown_host_is_refused() -> None:
    with pytest.raises(HeaderError) as caught:
        parse_delivery("bitbucket", {}, b"{}", secret=SECRET)
    assert str(caught.value) == (
        "unknown git host 'bitbucket': kapal takes webhooks from github, gitlab, gitea"
    )
