"""GitHub deliveries parse into the trigger a pipeline is planned for."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.web.hooks.conftest import SECRET, delivery, payload
from web.errors import HeaderError, PayloadError, SignatureError, UnsupportedMediaTypeError
from web.hooks import Ignored, Trigger, identify_repository, parse_delivery
from web.hooks.trigger import ZERO_SHA


def parse(data: object, event: str, **kwargs: str) -> Trigger | Ignored:
    headers, body = delivery("github", data, event, **kwargs)  # type: ignore[arg-type]
    return parse_delivery("github", headers, body, secret=SECRET)


def test_push_to_a_branch() -> None:
    got = parse(payload("github_push"), "push", delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert got == Trigger(
        provider="github",
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        event="push",
        kind="push",
        ref="refs/heads/main",
        branch="main",
        tag=None,
        sha="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        before_sha="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        fetch_ref="refs/heads/main",
        message="Test the checkout page\n\nCovers the empty cart too.",
        author="Ada Lovelace <ada@example.com>",
        timestamp="2026-11-30T09:20:03+01:00",
        repository="acme/shop",
        clone_url="https://github.com/acme/shop.git",
        default_branch="main",
        changed_files=(
            "shop/checkout.py",
            "templates/checkout.html",
            "shop/urls.py",
            "tests/test_checkout.py",
            "tests/test_old.py",
        ),
    )


def test_push_of_a_new_branch_leaves_changed_files_to_git() -> None:
    data = payload("github_push")
    data |= {"ref": "refs/heads/feature/x", "before": ZERO_SHA, "created": True}
    got = parse(data, "push")
    assert isinstance(got, Trigger)
    assert (got.branch, got.is_new_ref, got.changed_files) == ("feature/x", True, None)


def test_force_push_leaves_changed_files_to_git() -> None:
    data = payload("github_push") | {"forced": True}
    got = parse(data, "push")
    assert isinstance(got, Trigger) and got.changed_files is None


def test_push_of_2048_commits_is_taken_as_truncated() -> None:
    data = payload("github_push")
    data["commits"] = [data["commits"][0]] * 2048
    got = parse(data, "push")
    assert isinstance(got, Trigger) and got.changed_files is None


def test_tag_push_runs_the_tagged_commit() -> None:
    got = parse(payload("github_tag_push"), "push")
    assert isinstance(got, Trigger)
    assert (got.kind, got.tag, got.branch, got.ref) == (
        "tag_push",
        "v1.4.0",
        None,
        "refs/tags/v1.4.0",
    )
    # `after` is the annotated tag object; head_commit is what runs
    assert got.sha == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    assert got.changed_files is None
    assert got.author == "Ada Lovelace <ada@example.com>"


def test_branch_deletion_is_ignored() -> None:
    data = payload("github_push")
    data |= {"after": ZERO_SHA, "deleted": True, "head_commit": None, "commits": []}
    got = parse(data, "push")
    assert isinstance(got, Ignored)
    assert got.body() == {"ignored": "branch main deleted"}


def test_tag_deletion_is_ignored() -> None:
    data = payload("github_tag_push") | {"after": ZERO_SHA, "deleted": True, "head_commit": None}
    got = parse(data, "push")
    assert isinstance(got, Ignored) and got.reason == "tag v1.4.0 deleted"


def test_push_to_another_kind_of_ref_is_ignored() -> None:
    data = payload("github_push") | {"ref": "refs/notes/commits"}
    got = parse(data, "push")
    assert isinstance(got, Ignored) and "refs/notes/commits" in got.reason


def test_ping_is_ignored_with_the_hook_id() -> None:
    got = parse(payload("github_ping"), "ping", delivery_id="p-1")
    assert got == Ignored("github", "p-1", "ping", "ping: webhook 481516 reached kapal")


def test_unsupported_event_is_ignored_with_what_kapal_acts_on() -> None:
    got = parse({"action": "created"}, "issue_comment")
    assert isinstance(got, Ignored)
    assert got.body() == {
        "ignored": "event 'issue_comment' starts no pipeline; kapal acts on push and pull_request"
    }


@pytest.mark.parametrize(("action", "expected"), [("opened", "opened"), ("reopened", "reopened")])
def test_pull_request_from_a_fork(action: str, expected: str) -> None:
    data = payload("github_pull_request") | {"action": action}
    got = parse(data, "pull_request")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert (got.kind, got.branch, got.ref, got.fetch_ref) == (
        "merge_request",
        "fast-checkout",
        "refs/heads/fast-checkout",
        "refs/pull/42/head",
    )
    assert got.sha == "5b3c1d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c"
    assert got.clone_url == "https://github.com/acme/shop.git"  # fetched from the base repo
    mr = got.merge_request
    assert (mr.iid, mr.action, mr.title) == (42, expected, "Faster checkout")
    assert (mr.source_branch, mr.target_branch) == ("fast-checkout", "main")
    assert mr.target_sha == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    assert (mr.source_repository, mr.target_repository, mr.from_fork) == (
        "linus/shop",
        "acme/shop",
        True,
    )
    assert mr.source_clone_url == "https://github.com/linus/shop.git"
    assert (got.message, got.author, got.changed_files) == ("", "", None)


def test_pull_request_synchronize_carries_the_previous_head() -> None:
    data = payload("github_pull_request")
    data |= {
        "action": "synchronize",
        "before": "1111111111111111111111111111111111111111",
        "after": data["pull_request"]["head"]["sha"],
    }
    data["pull_request"]["head"]["repo"] = data["pull_request"]["base"]["repo"]
    got = parse(data, "pull_request")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.action == "synchronized"
    assert got.before_sha == "1" * 40
    assert got.merge_request.from_fork is False


def test_pull_request_from_a_deleted_fork_counts_as_a_fork() -> None:
    data = payload("github_pull_request")
    data["pull_request"]["head"]["repo"] = None
    got = parse(data, "pull_request")
    assert isinstance(got, Trigger) and got.merge_request is not None
    assert got.merge_request.from_fork is True
    assert got.merge_request.source_repository is None


@pytest.mark.parametrize("action", ["closed", "edited", "labeled", "assigned"])
def test_other_pull_request_actions_are_ignored(action: str) -> None:
    got = parse(payload("github_pull_request") | {"action": action}, "pull_request")
    assert isinstance(got, Ignored) and got.reason.startswith(f"pull request #42 {action}")


def test_form_encoded_delivery_is_accepted_and_signed_over_the_form_body() -> None:
    import json

    form = urlencode({"payload": json.dumps(payload("github_push"))}).encode()
    got = parse(form, "push", content_type="application/x-www-form-urlencoded")
    assert isinstance(got, Trigger) and got.sha == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"


def test_form_without_payload_field_says_what_to_set() -> None:
    form = urlencode({"data": "{}"}).encode()
    with pytest.raises(PayloadError) as caught:
        parse(form, "push", content_type="application/x-www-form-urlencoded")
    assert caught.value.status == 400 and "no `payload` field" in str(caught.value)


def test_other_content_type_is_415_with_a_hint() -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse(b"<xml/>", "push", content_type="text/xml")
    assert caught.value.status == 415
    assert "set the GitHub webhook's content type to application/json" in str(caught.value)


def test_wrong_secret_is_401() -> None:
    with pytest.raises(SignatureError) as caught:
        parse(payload("github_push"), "push", secret="another secret")
    assert caught.value.status == 401
    assert "X-Hub-Signature-256 does not match the body" in str(caught.value)


def test_body_changed_after_signing_is_401() -> None:
    headers, body = delivery("github", payload("github_push"), "push")
    with pytest.raises(SignatureError):
        parse_delivery("github", headers, body.replace(b"main", b"mein"), secret=SECRET)


def test_missing_signature_is_401_even_for_a_ping() -> None:
    headers, body = delivery("github", payload("github_ping"), "ping")
    del headers["X-Hub-Signature-256"]
    with pytest.raises(SignatureError) as caught:
        parse_delivery("github", headers, body, secret=SECRET)
    assert caught.value.status == 401 and "missing header X-Hub-Signature-256" in str(caught.value)


def test_signature_without_the_sha256_prefix_is_401() -> None:
    headers, body = delivery("github", payload("github_push"), "push")
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    with pytest.raises(SignatureError):
        parse_delivery("github", headers, body, secret=SECRET)


def test_repository_without_a_secret_refuses_every_delivery() -> None:
    headers, body = delivery("github", payload("github_push"), "push", secret="")
    with pytest.raises(SignatureError) as caught:
        parse_delivery("github", headers, body, secret="")
    assert "has no webhook secret" in str(caught.value)


def test_headers_are_looked_up_without_regard_to_case() -> None:
    headers, body = delivery("github", payload("github_push"), "push")
    lowered = {name.lower(): value for name, value in headers.items()}
    assert isinstance(parse_delivery("github", lowered, body, secret=SECRET), Trigger)


def test_missing_event_header_is_400() -> None:
    headers, body = delivery("github", payload("github_push"), "push")
    del headers["X-GitHub-Event"]
    with pytest.raises(HeaderError) as caught:
        parse_delivery("github", headers, body, secret=SECRET)
    assert caught.value.status == 400
    assert str(caught.value) == (
        "missing header X-GitHub-Event: is this a GitHub webhook? (its URL is /hooks/github)"
    )


def test_missing_delivery_id_falls_back_to_a_hash_of_the_body() -> None:
    headers, body = delivery("github", payload("github_push"), "push")
    del headers["X-GitHub-Delivery"]
    first = parse_delivery("github", headers, body, secret=SECRET)
    again = parse_delivery("github", headers, body, secret=SECRET)
    assert first.delivery_id == again.delivery_id
    assert first.delivery_id.startswith("sha256:") and len(first.delivery_id) == 7 + 64


def test_malformed_json_is_400_with_the_position() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(b'{"ref": "refs/heads/main",', "push")
    assert caught.value.status == 400
    assert "the body is not valid JSON: Expecting property name" in str(caught.value)
    assert "line 1 column 27" in str(caught.value)


def test_json_that_is_not_an_object_is_400() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(b"[1, 2]", "push")
    assert str(caught.value) == "the body must be a JSON object, found a list"


def test_deeply_nested_json_is_400_not_a_crash() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(b"[" * 100_000 + b"]" * 100_000, "push")
    assert "nests JSON too deeply" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("after",), "GitHub push payload: field `after` is missing; it should hold a commit id"),
        (("repository", "clone_url"), "field `repository.clone_url` is missing"),
        (("head_commit", "id"), "field `head_commit.id` is missing"),
    ],
)
def test_missing_field_names_it(path: tuple[str, ...], message: str) -> None:
    data = payload("github_push")
    holder = data
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    with pytest.raises(PayloadError) as caught:
        parse(data, "push")
    assert caught.value.status == 400
    assert message in str(caught.value)
    assert caught.value.field == ".".join(path)


def test_field_of_the_wrong_type_says_what_was_found() -> None:
    data = payload("github_pull_request")
    data["pull_request"]["head"]["sha"] = 12
    with pytest.raises(PayloadError) as caught:
        parse(data, "pull_request")
    assert str(caught.value) == (
        "GitHub pull_request payload: field `pull_request.head.sha` should hold a commit id, "
        "found a number"
    )


@pytest.mark.parametrize("sha", ["--upload-pack=touch /tmp/x", "abc", "g" * 40])
def test_commit_id_that_is_not_hex_is_400(sha: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(payload("github_push") | {"after": sha}, "push")
    assert "should be a commit id of 40 hexadecimal digits" in str(caught.value)


@pytest.mark.parametrize("ref", ["refs/heads/a..b", "refs/heads/-x", "refs/heads/x y", "--force"])
def test_ref_git_would_refuse_is_400(ref: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(payload("github_push") | {"ref": ref}, "push")
    assert "is not a valid git ref name" in str(caught.value)


def test_identify_names_the_repository_before_verification() -> None:
    headers, body = delivery("github", payload("github_push"), "push", secret="unknown yet")
    who = identify_repository("github", headers, body)
    assert who.full_name == "acme/shop"
    assert who.clone_urls == (
        "https://github.com/acme/shop.git",
        "git@github.com:acme/shop.git",
        "https://github.com/acme/shop",
        "git://github.com/acme/shop.git",
    )
