"""One webhook delivery as received: headers, raw body, and what every host parser shares.

The order of checks is the same for every host: the caller refuses an oversized body first
(`check_body_size`, 413), the parser verifies the signature over the raw bytes (401) before
anything is decoded, then decodes the body (`decode_body`: JSON, or GitHub/Gitea form data with
`payload=`; 415 for anything else) and reads the fields it needs through `Fields`, whose errors
name the field and the payload (400).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from web.errors import (
    HeaderError,
    PayloadError,
    PayloadTooLargeError,
    SignatureError,
    UnsupportedMediaTypeError,
)
from web.hooks.trigger import COMMIT_ID

DEFAULT_BODY_LIMIT = 4 * 1024 * 1024  # bytes; GitHub caps payloads at 25 MB, pushes are far less
MAX_HEADER_LENGTH = 1024  # a delivery id or event name longer than this is not a real one
MAX_LISTED_FILES = 10_000  # changed files kept from a payload; more means "compute from git"

_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|/-|\.lock(/|$)|^[./-]|[/.]$")


class Headers:
    """Request headers looked up without regard to case (a plain dict, Starlette's, ...)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._values = {str(name).lower(): str(value) for name, value in headers.items()}

    def get(self, name: str) -> str | None:
        """The header's value stripped of surrounding blanks, or None when absent or empty."""
        value = self._values.get(name.lower())
        if value is None or not value.strip():
            return None
        return value.strip()

    def required(self, name: str, hint: str) -> str:
        """The header's value; `HeaderError` naming it and `hint` when it is missing."""
        value = self.get(name)
        if value is None:
            raise HeaderError(f"missing header {name}: {hint}")
        if len(value) > MAX_HEADER_LENGTH:
            raise HeaderError(f"header {name} is {len(value)} characters long; not a real one")
        return value


def check_body_size(size: int | None, limit: int = DEFAULT_BODY_LIMIT) -> None:
    """Refuse a body of `size` bytes (a Content-Length, or the bytes read so far) over `limit`.

    Call it with the Content-Length header before reading, and again while reading a body sent
    without one, so an oversized delivery is refused before it is held in memory.
    """
    if size is not None and size > limit:
        raise PayloadTooLargeError(
            f"the webhook body is {size} bytes, over the limit of {limit} bytes; "
            "deliver fewer commits per push or raise the server's webhook body limit"
        )


async def read_limited(chunks: AsyncIterable[bytes], limit: int = DEFAULT_BODY_LIMIT) -> bytes:
    """The whole body of a request streamed as `chunks` (Starlette's `request.stream()`),
    refused with `PayloadTooLargeError` as soon as it passes `limit` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        check_body_size(len(body), limit)
    return bytes(body)


def delivery_id(headers: Headers, names: tuple[str, ...], body: bytes) -> str:
    """The host's delivery id from the first of `names` present, else a hash of the body.

    The hash keeps a redelivery of the same bytes idempotent even when the host sends no id.
    """
    for name in names:
        value = headers.get(name)
        if value is not None:
            if len(value) > MAX_HEADER_LENGTH:
                raise HeaderError(f"header {name} is {len(value)} characters long; not a real id")
            return value
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two strings of any characters."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _require_secret(secret: str, host: str) -> None:
    if not secret:
        raise SignatureError(
            f"this repository has no webhook secret, so no {host} delivery can be verified; "
            "set a secret on the repository in kapal and the same one in the host's webhook"
        )


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` under `secret`, as GitHub and Gitea send it."""
    return hmac.new(secret.encode("utf-8", "surrogatepass"), body, hashlib.sha256).hexdigest()


def verify_hmac_sha256(
    headers: Headers, body: bytes, secret: str, *, header: str, prefix: str, host: str
) -> None:
    """Check `header` holds `prefix` + the hex HMAC-SHA256 of the raw body; `SignatureError`."""
    _require_secret(secret, host)
    given = headers.get(header)
    if given is None:
        raise SignatureError(
            f"missing header {header}: set the same secret in the {host} webhook's settings "
            "as in kapal, so that the host signs its deliveries"
        )
    if not _same(given, prefix + hmac_sha256_hex(secret, body)):
        raise SignatureError(
            f"{header} does not match the body: the webhook secret in {host} differs from "
            "the repository's secret in kapal (or the body was changed on the way)"
        )


def verify_token(headers: Headers, secret: str, *, header: str, host: str) -> None:
    """Check `header` holds the secret itself (GitLab's token), in constant time."""
    _require_secret(secret, host)
    given = headers.get(header)
    if given is None:
        raise SignatureError(
            f"missing header {header}: set the webhook's secret token in {host} to the "
            "repository's secret in kapal"
        )
    if not _same(given, secret):
        raise SignatureError(
            f"{header} does not match: the webhook's secret token in {host} differs from "
            "the repository's secret in kapal"
        )


def decode_body(headers: Headers, body: bytes, *, host: str, form: bool) -> dict[str, Any]:
    """The body as a JSON object; form data's `payload` field when `form` (GitHub, Gitea)."""
    content_type = (headers.get("content-type") or "application/json").split(";")[0].strip()
    content_type = content_type.lower()
    if content_type == "application/x-www-form-urlencoded" and form:
        text = _form_payload(body)
    elif content_type == "application/json" or content_type.endswith("+json"):
        text = _text(body)
    else:
        accepted = (
            "application/json or application/x-www-form-urlencoded"
            if form
            else ("application/json")
        )
        raise UnsupportedMediaTypeError(
            f"content type {content_type!r} is not accepted: kapal reads {accepted} "
            f"deliveries; set the {host} webhook's content type to application/json"
        )
    try:
        data = json.loads(text)
    except RecursionError:
        raise PayloadError("the body nests JSON too deeply to be a webhook payload") from None
    except ValueError as exc:  # JSONDecodeError, and numbers too long to convert
        raise PayloadError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"the body must be a JSON object, found {_describe(data)}")
    return data


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"the body is not UTF-8 text (byte {exc.start} is invalid)") from None


def _form_payload(body: bytes) -> str:
    try:
        fields = parse_qs(_text(body), keep_blank_values=True, max_num_fields=100)
    except ValueError as exc:
        raise PayloadError(f"the form-encoded body does not decode: {exc}") from None
    values = fields.get("payload")
    if not values:
        raise PayloadError(
            "the form-encoded body has no `payload` field; set the webhook's content type to "
            "application/json (or application/x-www-form-urlencoded with payload=JSON)",
            field="payload",
        )
    if len(values) > 1:
        raise PayloadError("the form-encoded body has more than one `payload` field")
    return values[0]


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class Fields:
    """Typed access to a JSON object's fields; errors name the dotted path and the payload.

    `where` names the payload in messages ("GitHub push payload"); `path` is this object's own
    dotted path within it ("" for the top level).
    """

    def __init__(self, data: Mapping[str, Any], where: str, path: str = "") -> None:
        self.data = data
        self.where = where
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _missing(self, key: str, wanted: str) -> PayloadError:
        name = self._name(key)
        return PayloadError(
            f"{self.where}: field `{name}` is missing; it should hold {wanted} "
            "(is this delivery from the host its URL names?)",
            field=name,
        )

    def _wrong(self, key: str, wanted: str, value: object) -> PayloadError:
        name = self._name(key)
        return PayloadError(
            f"{self.where}: field `{name}` should hold {wanted}, found {_describe(value)}",
            field=name,
        )

    def has(self, key: str) -> bool:
        """True when the field is present and not null."""
        return self.data.get(key) is not None

    def text(self, key: str, wanted: str = "a string") -> str:
        """A required string field."""
        value = self.data.get(key)
        if value is None:
            raise self._missing(key, wanted)
        if not isinstance(value, str):
            raise self._wrong(key, wanted, value)
        return value

    def optional_text(self, key: str) -> str | None:
        """A string field that may be absent or null."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def integer(self, key: str) -> int:
        """A required integer field (not a boolean)."""
        value = self.data.get(key)
        if value is None:
            raise self._missing(key, "a number")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "a whole number", value)
        return value

    def positive_integer(self, key: str) -> int:
        """A required integer field of at least 1 (a pull request's number, say)."""
        value = self.integer(key)
        if value < 1:
            name = self._name(key)
            raise PayloadError(
                f"{self.where}: field `{name}` should be a number of at least 1, found {value}",
                field=name,
            )
        return value

    def optional_integer(self, key: str) -> int | None:
        """An integer field that may be absent or null."""
        return self.integer(key) if self.has(key) else None

    def boolean(self, key: str, default: bool = False) -> bool:
        """A boolean field; `default` when absent or null."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def object(self, key: str) -> Fields:
        """A required object field."""
        value = self.data.get(key)
        if value is None:
            raise self._missing(key, "an object")
        if not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return Fields(value, self.where, self._name(key))

    def optional_object(self, key: str) -> Fields | None:
        """An object field that may be absent or null."""
        return self.object(key) if self.has(key) else None

    def objects(self, key: str) -> list[Fields]:
        """A list of objects; an absent or null field is an empty list."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        out = []
        for index, item in enumerate(value):
            name = f"{self._name(key)}[{index}]"
            if not isinstance(item, dict):
                raise PayloadError(
                    f"{self.where}: `{name}` should be an object, found {_describe(item)}",
                    field=name,
                )
            out.append(Fields(item, self.where, name))
        return out

    def strings(self, key: str) -> list[str] | None:
        """A list of strings; None when the field is absent or null."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a list of strings", value)
        return value

    def sha(self, key: str) -> str:
        """A commit id: 40 (or 64, SHA-256 repositories) hexadecimal digits, lowercased."""
        value = self.text(key, "a commit id").lower()
        if not COMMIT_ID.fullmatch(value):
            name = self._name(key)
            raise PayloadError(
                f"{self.where}: field `{name}` should be a commit id of 40 hexadecimal "
                f"digits, found {value[:80]!r}",
                field=name,
            )
        return value

    def optional_sha(self, key: str) -> str | None:
        """A commit id that may be absent or null."""
        return self.sha(key) if self.has(key) else None

    def ref_name(self, key: str) -> str:
        """A git ref or branch name that git itself would accept (`git check-ref-format`)."""
        value = self.text(key, "a git ref")
        if not value or _REF_FORBIDDEN.search(value) or len(value) > MAX_HEADER_LENGTH:
            name = self._name(key)
            raise PayloadError(
                f"{self.where}: field `{name}` is not a valid git ref name: {value[:80]!r}",
                field=name,
            )
        return value


def person(name: str | None, email: str | None) -> str:
    """An author as git prints `%an <%ae>`, from whichever parts are known."""
    name = (name or "").strip()
    email = (email or "").strip()
    if name and email:
        return f"{name} <{email}>"
    return name or (f"<{email}>" if email else "")


def changed_files(
    commits: list[Fields], *, total: int | None, cap: int | None
) -> tuple[str, ...] | None:
    """Paths the commits added, modified or removed, in first-seen order.

    None when the list cannot be complete: fewer commits than `total` (GitLab sends 20 of
    them), `cap` commits or more (GitHub's 2048), a commit without file lists, or too many paths.
    """
    if not commits or (total is not None and total > len(commits)):
        return None
    if cap is not None and len(commits) >= cap:
        return None
    seen: dict[str, None] = {}
    for commit in commits:
        lists = [commit.strings(key) for key in ("added", "modified", "removed")]
        if any(paths is None for paths in lists):
            return None
        for paths in lists:
            for path in paths or ():
                seen[path] = None
        if len(seen) > MAX_LISTED_FILES:
            return None
    return tuple(seen)
