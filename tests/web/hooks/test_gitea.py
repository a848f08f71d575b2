"""Gitea deliveries parse into the trigger a pipeline is planned for."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.web.hooks.conftest import SECRET, delivery, payload, sign
from web.errors import SignatureError
from web.hooks import Ignored, Trigger, identify_repository, parse_delivery
from web.hooks.trigger import ZERO_SHA


def parse(data: dict[str, Any] | bytes, event: str, **kwargs: str) -> Trigger | Ignored:
    headers, body = delivery("gitea", data, event, **kwargs)  # type: ignore[arg-type]
    return parse_delivery("gitea", headers, body, secret=SECRET)


def test_push() -> None:
    got = parse(payload("gitea_push"), "push", delivery_id="f6266f16-1bf3-46a5-9ea4-602e06ead473")
    assert got == Trigger(
        provider="gitea",
        delivery_id="f6266f16-1bf3-46a5-9ea4-602e06ead473",
        event="push",
        kind="push",
        ref="refs/heads/develop",
        branch="develop",
        tag=None,
        sha="bffeb74224043ba2feb48d137756c8a9331c449a",
        before_sha="28e1879d029cb852e4844d9c718537df08844e03",
        fetch_ref="refs/heads/develop",
        message="Add shipping rates\n",
        author="Margaret Hamilton <margaret@example.com>",
        timestamp="2026-12-02T10:15:00+01:00",
        repository="acme/shop",
        clone_url="https://gitea.example.com/acme/shop.git",
        default_branch="main",
        changed_files=("shop/shipping.py", ".kapal.yml"),
    )


def test_push_with_more_commits_than_listed_leaves_changed_files_to_git() -> None:
    got = parse(payload("gitea_push") | {"total_commits": 40}, "push")
    assert isinstance(got, Trigger) and got.changed_files is None


def test_tag_push() -> None:
    data = payload("gitea_push") | {"ref": "refs/tags/v0.3.0", "before": ZERO_SHA}
    got = parse(data, "push")
    assert isinstance(got, Trigger)
    assert (got.kind, got.tag, got.branch, got.changed_files) == (
        "tag_push",
        "v0.3.0",
        None,
        None,
    )


def test_branch_deletion_is_ignored() -> None:
    data = payload("gitea_push") | {"after": ZERO_SHA, "commits": [], "head_commit": None}
    got = parse(data, "push")
    assert isinstance(got, Ignored) and got.reason == "branch develop deleted"


def test_pull_request_opened() -> None:
    got = parse(payload("gitea_pull_request"), "pull_request")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert (got.kind, got.branch, got.sha, got.fetch_ref) == (
        "merge_request",
        "shipping",
        "bffeb74224043ba2feb48d137756c8a9331c449a",
        "refs/pull/7/head",
    )
    mr = got.merge_request
    assert (mr.iid, mr.action, mr.target_branch, mr.from_fork) == (7, "opened", "main", False)
    assert mr.target_sha == "28e1879d029cb852e4844d9c718537df08844e03"


def test_pull_request_sync_event_is_synchronized() -> None:
    data = payload("gitea_pull_request") | {"action": "synchronized"}
    headers, body = delivery("gitea", data, "pull_request")
    headers["X-Gitea-Event-Type"] = "pull_request_sync"
    got = parse_delivery("gitea", headers, body, secret=SECRET)
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.action == "synchronized"


def test_pull_request_review_event_type_is_ignored() -> None:
    headers, body = delivery("gitea", payload("gitea_pull_request"), "pull_request")
    headers["X-Gitea-Event-Type"] = "pull_request_review_approved"
    got = parse_delivery("gitea", headers, body, secret=SECRET)
    assert isinstance(got, Ignored) and "pull_request_review_approved" in got.reason


def test_pull_request_closed_is_ignored() -> None:
    got = parse(payload("gitea_pull_request") | {"action": "closed"}, "pull_request")
    assert isinstance(got, Ignored) and got.reason.startswith("pull request #7 closed")


def test_pull_request_from_a_fork() -> None:
    data = payload("gitea_pull_request")
    data["pull_request"]["head"]["repo"] |= {"full_name": "eve/shop", "id": 666}
    got = parse(data, "pull_request")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.from_fork is True


def test_form_encoded_delivery_is_accepted() -> None:
    form = urlencode({"payload": json.dumps(payload("gitea_push"))}).encode()
    got = parse(form, "push", content_type="application/x-www-form-urlencoded")
    assert isinstance(got, Trigger) and got.branch == "develop"


def test_forgejo_signature_header_is_accepted() -> None:
    headers, body = delivery("gitea", payload("gitea_push"), "push")
    headers["X-Forgejo-Signature"] = headers.pop("X-Gitea-Signature")
    assert isinstance(parse_delivery("gitea", headers, body, secret=SECRET), Trigger)


def test_github_style_prefix_is_not_a_gitea_signature() -> None:
    headers, body = delivery("gitea", payload("gitea_push"), "push")
    headers["X-Gitea-Signature"] = "sha256=" + sign(body)
    with pytest.raises(SignatureError) as caught:
        parse_delivery("gitea", headers, body, secret=SECRET)
    assert "X-Gitea-Signature does not match the body" in str(caught.value)


def test_missing_signature_is_401() -> None:
    headers, body = delivery("gitea", payload("gitea_push"), "push")
    del headers["X-Gitea-Signature"]
    with pytest.raises(SignatureError) as caught:
        parse_delivery("gitea", headers, body, secret=SECRET)
    assert caught.value.status == 401 and "missing header X-Gitea-Signature" in str(caught.value)


def test_identify() -> None:
    headers, body = delivery("gitea", payload("gitea_pull_request"), "pull_request")
    who = identify_repository("gitea", headers, body)
    assert (who.provider, who.full_name) == ("gitea", "acme/shop")
    assert who.clone_urls[0] == "https://gitea.example.com/acme/shop.git"
