"""Whatever a client sends, a webhook parses, is ignored, or fails with a 4xx kapal error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.hooks.conftest import FIXTURES, SECRET, delivery, payload
from web.errors import WebhookError
from web.hooks import Ignored, Trigger, identify_repository, parse_delivery

EVENTS = {
    "github": ["push", "pull_request", "ping", "create"],
    "gitlab": ["Push Hook", "Tag Push Hook", "Merge Request Hook", "Note Hook"],
    "gitea": ["push", "pull_request", "pull_request_sync", "create"],
}
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.sampled_from(["0" * 40, "a" * 40, "refs/heads/main", "refs/tags/v1", "open", "update"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append((*prefix, index))
            out.extend(_paths(item, (*prefix, index)))
    return out


FIXTURE_EVENTS = {
    "github_push": "push",
    "github_tag_push": "push",
    "github_pull_request": "pull_request",
    "github_ping": "ping",
    "gitlab_push": "Push Hook",
    "gitlab_tag_push": "Tag Push Hook",
    "gitlab_merge_request": "Merge Request Hook",
    "gitea_push": "push",
    "gitea_pull_request": "pull_request",
}
mostly = st.sampled_from([True, True, True, False])


@st.composite
def fixture_deliveries(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(provider, event, body): a fixture payload with some fields replaced or removed."""
    name = draw(st.sampled_from(sorted(FIXTURE_EVENTS)))
    data = payload(name)
    paths = _paths(data)
    for path in draw(st.lists(st.sampled_from(paths), max_size=3)):
        holder: Any = data
        try:
            for step in path[:-1]:
                holder = holder[step]
            if draw(st.booleans()) and isinstance(holder, dict):
                holder.pop(path[-1], None)
            else:
                holder[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return name.split("_")[0], FIXTURE_EVENTS[name], json.dumps(data).encode()


@st.composite
def other_deliveries(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(provider, event, body) with a body that is anything but a host's payload."""
    provider = draw(st.sampled_from(sorted(EVENTS)))
    body = draw(
        st.binary(max_size=200)
        | json_values.map(lambda value: json.dumps(value).encode())
        | st.sampled_from([b"payload=%7B%7D", b"payload=%5B%5D&payload=1", b"payload=%ZZ", b"["])
    )
    return provider, draw(st.sampled_from(EVENTS[provider])), body


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    sent=fixture_deliveries() | other_deliveries(),
    other_event=st.none() | st.text(max_size=20),
    signed=mostly,
    content_type=st.sampled_from(CONTENT_TYPES[:1] * 6 + CONTENT_TYPES) | st.text(max_size=30),
    extra=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=3),
    drop=st.lists(st.integers(min_value=0, max_value=12), max_size=2),
)
def test_any_delivery_gives_a_trigger_an_ignored_answer_or_a_4xx(
    sent: tuple[str, str, bytes],
    other_event: str | None,
    signed: bool,
    content_type: str,
    extra: dict[str, str],
    drop: list[int],
) -> None:
    provider, event, body = sent
    event = event if other_event is None else other_event
    headers, body = delivery(
        provider, body, event, secret=SECRET if signed else "guess", content_type=content_type
    )
    names = list(headers)
    for index in drop:
        if index < len(names):
            headers.pop(names[index], None)
    headers = extra | headers
    for attempt in (
        lambda: parse_delivery(provider, headers, body, secret=SECRET),
        lambda: identify_repository(provider, headers, body),
    ):
        try:
            outcome = attempt()
        except WebhookError as exc:
            assert 400 <= exc.status < 500
            assert str(exc)
        else:
            assert isinstance(outcome, Trigger | Ignored) or outcome.full_name is not None
