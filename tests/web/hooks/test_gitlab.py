"""GitLab deliveries parse into the trigger a pipeline is planned for."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.hooks.conftest import SECRET, delivery, payload
from web.errors import HeaderError, PayloadError, SignatureError, UnsupportedMediaTypeError
from web.hooks import Ignored, Trigger, identify_repository, parse_delivery
from web.hooks.trigger import ZERO_SHA


def parse(data: dict[str, Any] | bytes, event: str, **kwargs: str) -> Trigger | Ignored:
    headers, body = delivery("gitlab", data, event, **kwargs)  # type: ignore[arg-type]
    return parse_delivery("gitlab", headers, body, secret=SECRET)


def test_push_hook() -> None:
    got = parse(payload("gitlab_push"), "Push Hook", delivery_id="e7a4c3f0-uuid")
    assert got == Trigger(
        provider="gitlab",
        delivery_id="e7a4c3f0-uuid",
        event="Push Hook",
        kind="push",
        ref="refs/heads/develop",
        branch="develop",
        tag=None,
        sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        before_sha="95790bf891e76fee5e1747ab589903a6a1f80f22",
        fetch_ref="refs/heads/develop",
        message="Fix the prices\n\nRounding was off by one cent.\n",
        author="Grace Hopper <grace@example.com>",
        timestamp="2026-11-29T18:31:40+01:00",
        repository="acme/shop",
        clone_url="https://gitlab.example.com/acme/shop.git",
        default_branch="main",
        changed_files=(
            "catalogue/items.csv",
            "README.md",
            "shop/prices.py",
            "shop/legacy_prices.py",
        ),
    )


def test_idempotency_key_wins_over_the_event_uuid() -> None:
    headers, body = delivery("gitlab", payload("gitlab_push"), "Push Hook", delivery_id="event")
    headers["Idempotency-Key"] = "908a6d9e-45fd-46c8-97e6-c4f350f219dd"
    got = parse_delivery("gitlab", headers, body, secret=SECRET)
    assert got.delivery_id == "908a6d9e-45fd-46c8-97e6-c4f350f219dd"


def test_push_with_more_commits_than_listed_leaves_changed_files_to_git() -> None:
    data = payload("gitlab_push") | {"total_commits_count": 31}
    got = parse(data, "Push Hook")
    assert isinstance(got, Trigger) and got.changed_files is None


def test_push_whose_head_commit_is_not_listed_leaves_its_facts_to_git() -> None:
    data = payload("gitlab_push")
    data["commits"] = data["commits"][:1]
    data["total_commits_count"] = 1
    got = parse(data, "Push Hook")
    assert isinstance(got, Trigger)
    assert (got.message, got.author, got.timestamp) == ("", "", "")


def test_new_branch_leaves_changed_files_to_git() -> None:
    got = parse(payload("gitlab_push") | {"before": ZERO_SHA}, "Push Hook")
    assert isinstance(got, Trigger) and got.is_new_ref and got.changed_files is None


def test_branch_deletion_is_ignored() -> None:
    data = payload("gitlab_push") | {"after": ZERO_SHA, "checkout_sha": None, "commits": []}
    got = parse(data, "Push Hook")
    assert isinstance(got, Ignored) and got.body() == {"ignored": "branch develop deleted"}


def test_tag_push_hook_runs_the_checkout_sha() -> None:
    got = parse(payload("gitlab_tag_push"), "Tag Push Hook")
    assert isinstance(got, Trigger)
    assert (got.kind, got.tag, got.branch) == ("tag_push", "v2.0.0", None)
    assert got.sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert (got.author, got.changed_files) == ("", None)  # no commit listed: git says


def test_tag_deletion_is_ignored() -> None:
    data = payload("gitlab_tag_push") | {"after": ZERO_SHA, "checkout_sha": None}
    got = parse(data, "Tag Push Hook")
    assert isinstance(got, Ignored) and got.reason == "tag v2.0.0 deleted"


def test_merge_request_opened() -> None:
    got = parse(payload("gitlab_merge_request"), "Merge Request Hook")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert (got.kind, got.branch, got.fetch_ref) == (
        "merge_request",
        "fast-checkout",
        "refs/merge-requests/12/head",
    )
    assert got.sha == "5b3c1d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c"
    assert got.message == "Cache the cart totals\n"
    assert got.author == "Linus Pauling <linus@example.com>"
    mr = got.merge_request
    assert (mr.iid, mr.action, mr.source_branch, mr.target_branch) == (
        12,
        "opened",
        "fast-checkout",
        "main",
    )
    assert (mr.from_fork, mr.target_sha, mr.source_repository) == (False, None, "acme/shop")
    assert mr.url == "https://gitlab.example.com/acme/shop/-/merge_requests/12"


def test_merge_request_update_with_new_commits_is_synchronized() -> None:
    data = payload("gitlab_merge_request")
    data["object_attributes"] |= {
        "action": "update",
        "oldrev": "1111111111111111111111111111111111111111",
    }
    got = parse(data, "Merge Request Hook")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.action == "synchronized" and got.before_sha == "1" * 40


def test_merge_request_update_without_new_commits_is_ignored() -> None:
    data = payload("gitlab_merge_request")
    data["object_attributes"]["action"] = "update"
    got = parse(data, "Merge Request Hook")
    assert isinstance(got, Ignored)
    assert got.reason == "merge request !12 updated without new commits"


def test_merge_request_reopened() -> None:
    data = payload("gitlab_merge_request")
    data["object_attributes"]["action"] = "reopen"
    got = parse(data, "Merge Request Hook")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.action == "reopened"


@pytest.mark.parametrize("action", ["close", "merge", "approved", "unapproved"])
def test_other_merge_request_actions_are_ignored(action: str) -> None:
    data = payload("gitlab_merge_request")
    data["object_attributes"]["action"] = action
    got = parse(data, "Merge Request Hook")
    assert isinstance(got, Ignored) and got.reason.startswith(f"merge request !12 {action}")


def test_merge_request_from_a_fork_project() -> None:
    data = payload("gitlab_merge_request")
    attrs = data["object_attributes"]
    attrs["source_project_id"] = 99
    attrs["source"] |= {
        "path_with_namespace": "linus/shop",
        "git_http_url": "https://gitlab.example.com/linus/shop.git",
    }
    got = parse(data, "Merge Request Hook")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.from_fork is True
    assert got.merge_request.source_repository == "linus/shop"
    assert got.clone_url == "https://gitlab.example.com/acme/shop.git"


@pytest.mark.parametrize("event", ["Note Hook", "Pipeline Hook", "System Hook"])
def test_other_events_are_ignored(event: str) -> None:
    got = parse({"object_kind": "note"}, event)
    assert isinstance(got, Ignored) and "starts no pipeline" in got.reason


def test_wrong_token_is_401() -> None:
    headers, body = delivery("gitlab", payload("gitlab_push"), "Push Hook", secret="nope")
    with pytest.raises(SignatureError) as caught:
        parse_delivery("gitlab", headers, body, secret=SECRET)
    assert caught.value.status == 401
    assert "X-Gitlab-Token does not match" in str(caught.value)


def test_missing_token_is_401() -> None:
    headers, body = delivery("gitlab", payload("gitlab_push"), "Push Hook")
    del headers["X-Gitlab-Token"]
    with pytest.raises(SignatureError) as caught:
        parse_delivery("gitlab", headers, body, secret=SECRET)
    assert "missing header X-Gitlab-Token" in str(caught.value)


def test_missing_event_header_is_400() -> None:
    headers, body = delivery("gitlab", payload("gitlab_push"), "Push Hook")
    del headers["X-Gitlab-Event"]
    with pytest.raises(HeaderError) as caught:
        parse_delivery("gitlab", headers, body, secret=SECRET)
    assert "missing header X-Gitlab-Event" in str(caught.value)


def test_form_encoded_body_is_415_for_gitlab() -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse(b"payload=%7B%7D", "Push Hook", content_type="application/x-www-form-urlencoded")
    assert "kapal reads application/json deliveries" in str(caught.value)


def test_missing_project_is_400_naming_it() -> None:
    data = payload("gitlab_push")
    del data["project"]
    with pytest.raises(PayloadError) as caught:
        parse(data, "Push Hook")
    assert caught.value.field == "project"
    assert "GitLab Push Hook payload: field `project` is missing" in str(caught.value)


def test_missing_merge_request_action_is_400() -> None:
    data = payload("gitlab_merge_request")
    del data["object_attributes"]["action"]
    with pytest.raises(PayloadError) as caught:
        parse(data, "Merge Request Hook")
    assert caught.value.field == "object_attributes.action"


def test_identify_names_the_project() -> None:
    headers, body = delivery("gitlab", payload("gitlab_merge_request"), "Merge Request Hook")
    who = identify_repository("gitlab", headers, body)
    assert who.full_name == "acme/shop"
    assert who.clone_urls[:2] == (
        "https://gitlab.example.com/acme/shop.git",
        "git@gitlab.example.com:acme/shop.git",
    )
