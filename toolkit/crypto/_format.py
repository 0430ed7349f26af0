"""The stored format `iv:authTag:ciphertext` — the only module that knows it.

The app's `src/lib/crypto.ts` writes `${iv.hex}:${tag.hex}:${ciphertext.hex}` (AES-256-GCM,
no AAD). This module owns the two rules every command applies to a stored value:

**Strict** (`split_strict`, `parse_ciphertext`): a well-formed ciphertext.
- exactly three `:`-separated parts, nothing around them (no whitespace, no newline);
- each part hex of even length; IV 12 or 16 bytes, tag exactly 16 bytes, ciphertext any
  length (`""` encrypts to `iv:tag:`).
Why our own rule: Node's `Buffer.from(s, "hex")` silently stops at the first bad character
and Node 20 accepts truncated tags; Python's `bytes.fromhex` skips whitespace — neither
decoder may be trusted to reject a damaged value. Upper-case hex is accepted: Node decodes
it, so the app reads such a value and the toolkit must agree. The toolkit writes lower case.

**Damaged** (`looks_damaged`): not strict, but its colon-separated parts look like a
ciphertext that was damaged — `secret.malformed` in a password field rather than
`secret.plaintext`. After stripping surrounding whitespace (itself a damage) the value has
two or more `:`-separated parts, at most one character in eight of them is not a hex digit
(overwritten characters), and one part of at least 16 characters (an IV's or a tag's worth)
is itself hex but for one character in eight. So a lost IV (`:tag:ct`, `tag:ct`), a fourth
part, wrong lengths and a stray `g` or space in the tag are damaged; `hunter2`,
`a:b:c with colons`, `Summer:2024:Pass!`, `https://a:b@c` and `::` are not: plaintext.

A value is a ciphertext (a secret, wherever it sits) only when it is strict and a key of the
keyring authenticates it (`Keyring.inspect`).
"""

from __future__ import annotations

import re
import string
from typing import NamedTuple

from ..errors import MalformedCiphertext

TAG_LENGTH = 16
IV_LENGTHS = (12, 16)

# The well-formed value as one pattern: the reference the fast `split_strict` is held equal to
# (a property test), and what documentation points at. `fullmatch`: `$` would pass a newline.
STRICT = re.compile(
    r"([0-9a-fA-F]{24}|[0-9a-fA-F]{32}):([0-9a-fA-F]{32}):((?:[0-9a-fA-F]{2})*)"
)
_HEX = re.compile(r"[0-9a-fA-F]*")
_NOT_HEX = re.compile(r"[^0-9a-fA-F]")
_HEX_DIGITS = frozenset(string.hexdigits)
_DAMAGE_PER_CHAR = 8  # one overwritten character tolerated per this many in a part
_LONG_PART = 16  # a damaged ciphertext keeps at least one part this long
_fromhex = bytes.fromhex


class Ciphertext(NamedTuple):
    iv: bytes
    tag: bytes
    body: bytes  # the ciphertext proper, without the tag

    def sealed(self) -> bytes:
        """`ciphertext ‖ tag`, the form `cryptography`'s AESGCM decrypts."""
        return self.body + self.tag


def split_strict(value: str):
    """`(iv, ciphertext ‖ tag)` of a strict value, else None. The hot path of every scan.

    Faster than STRICT (it runs millions of times) and exactly as strict: the colons must sit
    where a 12- or a 16-byte IV puts them (24/57 or 32/65); then one `bytes.fromhex` of the
    colon-free value rejects non-hex characters and odd digit counts. Its one leniency,
    skipping ASCII whitespace, and any further `:` (a fourth part) both show up as fewer bytes
    than (len - 2) / 2. The two layouts exclude each other: position 24 of a 16-byte-IV value
    and position 32 of a 12-byte-IV value are hex digits.
    """
    # One branch per layout, its offsets written out: this runs millions of times.
    size = len(value)
    if size >= 66 and value[32] == ":" and value[65] == ":":
        try:
            raw = _fromhex(value.replace(":", ""))
        except ValueError:
            return None
        if len(raw) * 2 + 2 == size:
            return raw[:16], raw[32:] + raw[16:32]
        return None
    if size >= 58 and value[24] == ":" and value[57] == ":":
        try:
            raw = _fromhex(value.replace(":", ""))
        except ValueError:
            return None
        if len(raw) * 2 + 2 == size:
            return raw[:12], raw[28:] + raw[12:28]
    return None


def parse_ciphertext(value: str) -> Ciphertext:
    """Parse a stored value strictly; `MalformedCiphertext.reason` says what is wrong."""
    if not isinstance(value, str):
        raise _malformed(f"not a string but {type(value).__name__}")
    parts = split_strict(value)
    if parts is not None:
        iv, sealed = parts
        return Ciphertext(iv, sealed[-TAG_LENGTH:], sealed[:-TAG_LENGTH])
    if not looks_damaged(value):
        error = MalformedCiphertext("not a ciphertext: the value is not in the iv:authTag:ciphertext format "
                                    "(a plaintext, if it came from a password field)")
        error.reason = malformed_reason(value)
        raise error
    raise _malformed(malformed_reason(value))


def looks_damaged(value) -> bool:
    """Not strict, but shaped like a damaged ciphertext (module docstring): malformed, not plaintext."""
    if value.__class__ is not str or ":" not in value:
        return False
    parts = value.strip().split(":")
    total = damage = 0
    long_hex_part = False
    for part in parts:
        bad = 0 if _HEX_DIGITS.issuperset(part) else len(_NOT_HEX.findall(part))
        total += len(part)
        damage += bad
        long_hex_part = long_hex_part or (len(part) >= _LONG_PART and bad * _DAMAGE_PER_CHAR <= len(part))
    return long_hex_part and damage * _DAMAGE_PER_CHAR <= total


def malformed_reason(value: str) -> str:
    """Why `value` is not a well-formed ciphertext (called once it is known not to be)."""
    if not isinstance(value, str):
        return f"not a string but {type(value).__name__}"
    if split_strict(value.strip()) is not None:
        return "surrounding whitespace"
    if not looks_damaged(value):
        return "not in the iv:authTag:ciphertext format"
    if value != value.strip():
        return "surrounding whitespace"
    parts = value.split(":")
    if len(parts) != 3:
        return f"{len(parts)} ':'-separated parts, expected 3"
    if not parts[0]:
        return "the IV is missing"
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
    return "not a valid ciphertext"  # unreachable while split_strict and the checks above agree


def format_ciphertext(iv: bytes, tag: bytes, body: bytes) -> str:
    """The stored form, lower-case hex, exactly as the app writes it."""
    return f"{iv.hex()}:{tag.hex()}:{body.hex()}"


def _malformed(reason: str) -> MalformedCiphertext:
    error = MalformedCiphertext(f"malformed ciphertext: {reason}")
    error.reason = reason
    return error
