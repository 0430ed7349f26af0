"""The stored format `iv:authTag:ciphertext` — the only module that knows it.

The app's `src/lib/crypto.ts` writes `${iv.hex}:${tag.hex}:${ciphertext.hex}` (AES-256-GCM,
no AAD). This module parses that strictly, and builds it.

Strict parsing (why: Node's `Buffer.from(s, "hex")` silently stops at the first bad
character and Node 20 accepts truncated tags; Python's `bytes.fromhex` skips whitespace —
so neither decoder may be trusted to reject a damaged value):

- exactly three `:`-separated parts, nothing around them (no whitespace, no newline);
- each part is hex of even length, matched by our own pattern before any decoding;
- IV 12 or 16 bytes, tag exactly 16 bytes, ciphertext any length (`""` encrypts to `iv:tag:`).

Upper-case hex is ACCEPTED: Node decodes it, so the app reads such a value fine and the
toolkit must agree with the app. The toolkit itself always writes lower case.

"Shape" (`looks_encrypted`) separates a value that was meant to be a ciphertext from one
that never was — the audit's `secret.malformed` versus `secret.plaintext`:

    a value has the shape when, ignoring surrounding whitespace, it is three or more
    `:`-separated parts made only of ASCII letters and digits, the first two non-empty.

So `3f…:9a…:` and `zz12:abcd:ef` (bad hex) and `ab:cd:ef:01` (four parts) have the shape,
as do values with a stray newline; `sk_live_51H…`, `hunter2`, `https://a:b@c`, `a b:c:d`
and `::` do not. A plaintext password that happens to be `word:word:word` is reported as
malformed — either way it is an error on a password field.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import MalformedCiphertext

TAG_LENGTH = 16
IV_LENGTHS = (12, 16)

# One pattern for the well-formed value, used on the hot path (keyring.inspect) as
# `fullmatch` — `$` would let a trailing newline through.
STRICT = re.compile(
    r"([0-9a-fA-F]{24}|[0-9a-fA-F]{32}):([0-9a-fA-F]{32}):((?:[0-9a-fA-F]{2})*)"
)
_SHAPE = re.compile(r"\s*[0-9A-Za-z]+:[0-9A-Za-z]+(?::[0-9A-Za-z]*)+\s*")
_HEX = re.compile(r"[0-9a-fA-F]*")


class Ciphertext(NamedTuple):
    iv: bytes
    tag: bytes
    body: bytes  # the ciphertext proper, without the tag

    def sealed(self) -> bytes:
        """`ciphertext ‖ tag`, the form `cryptography`'s AESGCM decrypts."""
        return self.body + self.tag


def looks_encrypted(value: str) -> bool:
    """Has the `iv:tag:ciphertext` shape (see the module docstring), valid or not."""
    return isinstance(value, str) and _SHAPE.fullmatch(value) is not None


def parse_ciphertext(value: str) -> Ciphertext:
    """Parse a stored value strictly; `MalformedCiphertext.reason` says what is wrong."""
    if not isinstance(value, str):
        raise _malformed(f"not a string but {type(value).__name__}")
    match = STRICT.fullmatch(value)
    if match is not None:
        iv, tag, body = match.groups()
        return Ciphertext(bytes.fromhex(iv), bytes.fromhex(tag), bytes.fromhex(body))
    raise _malformed(malformed_reason(value))


def malformed_reason(value: str) -> str:
    """Why `value` is not a well-formed ciphertext (only called once it is known not to be)."""
    if not looks_encrypted(value):
        return "not in the iv:authTag:ciphertext format"
    if value != value.strip():
        return "surrounding whitespace"
    parts = value.split(":")
    if len(parts) != 3:
        return f"{len(parts)} ':'-separated parts, expected 3"
    for name, part in zip(("IV", "auth tag", "ciphertext"), parts):
        if not _HEX.fullmatch(part):
            return f"{name} is not hexadecimal"
        if len(part) % 2:
            return f"{name} has an odd number of hex digits ({len(part)})"
    iv_bytes, tag_bytes = len(parts[0]) // 2, len(parts[1]) // 2
    if iv_bytes not in IV_LENGTHS:
        return f"IV is {iv_bytes} bytes, expected 12 or 16"
    if tag_bytes != TAG_LENGTH:
        return f"auth tag is {tag_bytes} bytes, expected 16"
    return "not a valid ciphertext"  # unreachable while STRICT and the checks above agree


def format_ciphertext(iv: bytes, tag: bytes, body: bytes) -> str:
    """The stored form, lower-case hex, exactly as the app writes it."""
    return f"{iv.hex()}:{tag.hex()}:{body.hex()}"


def _malformed(reason: str) -> MalformedCiphertext:
    error = MalformedCiphertext(f"malformed ciphertext: {reason}")
    error.reason = reason
    return error
