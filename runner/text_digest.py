"""`small_sha256` and `text_sha256`: SHA-256 of a few kilobytes, without loading OpenSSL.

Names derived from a path or an owner (a run dir, an owner's slug) and the image manifests and
configs checked as they are read are SHA-256 digests of small inputs. hashlib loads OpenSSL to make
them, which costs every `kapal exec` 2.5 ms; CPython's own SHA-256 module (`_sha256`, `_sha2` from
3.12) gives the same digest and loads in 0.2 ms. Layers, where OpenSSL's speed pays, keep hashlib.
"""

from __future__ import annotations

try:
    from _sha256 import sha256
except ImportError:  # Python 3.12+
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # an interpreter built without them
        from hashlib import sha256  # type: ignore[assignment,unused-ignore]


def small_sha256(data: bytes) -> str:
    """The hex SHA-256 digest of `data` (meant for inputs of kilobytes, not layers)."""
    digest: str = sha256(data).hexdigest()
    return digest


def text_sha256(text: str) -> str:
    """The hex SHA-256 digest of `text` in UTF-8 (lone surrogates kept as they are)."""
    return small_sha256(text.encode("utf-8", "surrogatepass"))
