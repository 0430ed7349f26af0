"""Encryption keys: how the app turns its setting into 32 bytes, and how we name a key.

Derivations (`TOOLKIT_KEY_DERIVATION`, never guessed — a wrong guess would make every value
"undecryptable" or, worse, let a write path encrypt under a key the app cannot read):

    hex     (default) ENCRYPTION_KEY is exactly 64 hex characters   Buffer.from(k, "hex")
    raw     a string whose UTF-8 encoding is exactly 32 bytes        Buffer.from(k)
    sha256  sha256 of the passphrase (UTF-8)                         createHash("sha256").update(k).digest()
    scrypt  scrypt(passphrase, TOOLKIT_KEY_SALT), N=16384 r=8 p=1,    scryptSync(k, salt, 32)
            32 bytes — Node's scryptSync defaults

Every key of the keyring (current and previous) uses the same derivation.
Errors name the variable (`ENCRYPTION_KEY`, `ENCRYPTION_KEY_PREVIOUS #2`) and never echo the key.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import ConfigError

KEY_LENGTH = 32
SCRYPT_PARAMS = {"n": 16384, "r": 8, "p": 1, "dklen": KEY_LENGTH}
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_FINGERPRINT_DOMAIN = b"toolkit-key-fingerprint\0"


def derive_key(text: str, derivation: str = "hex", *, salt: str | None = None,
               variable: str = "ENCRYPTION_KEY") -> bytes:
    """32 key bytes from the setting's text; ConfigError names `variable` on failure."""
    if not text:
        raise ConfigError(f"{variable} is empty")
    if derivation == "hex":
        if not _HEX_KEY.fullmatch(text):
            raise ConfigError(
                f"{variable} must be 64 hex characters (32 bytes), got {len(text)} characters"
                + ("" if len(text) != 64 else " that are not all hex"),
                hint="generate one with `toolkit keys generate`, or set TOOLKIT_KEY_DERIVATION if the app derives its key",
            )
        return bytes.fromhex(text)
    if derivation == "raw":
        material = text.encode("utf-8")
        if len(material) != KEY_LENGTH:
            raise ConfigError(
                f"{variable} must be 32 bytes as UTF-8 for TOOLKIT_KEY_DERIVATION=raw, got {len(material)}"
            )
        return material
    if derivation == "sha256":
        return hashlib.sha256(text.encode("utf-8")).digest()
    if derivation == "scrypt":
        if not salt:
            raise ConfigError("TOOLKIT_KEY_SALT must be set for TOOLKIT_KEY_DERIVATION=scrypt")
        return hashlib.scrypt(text.encode("utf-8"), salt=salt.encode("utf-8"), **SCRYPT_PARAMS)
    raise ConfigError(f"TOOLKIT_KEY_DERIVATION must be one of hex, raw, sha256, scrypt, got {derivation!r}")


def fingerprint(material: bytes) -> str:
    """A short, stable, non-reversible name for a key (8 hex digits)."""
    return hashlib.sha256(_FINGERPRINT_DOMAIN + material).hexdigest()[:8]


def key_variable(index: int) -> str:
    """The setting a key of the keyring comes from, as messages name it."""
    return "ENCRYPTION_KEY" if index == 0 else f"ENCRYPTION_KEY_PREVIOUS #{index}"


class Key:
    """One 32-byte key. Its repr and str show the label and fingerprint, never the bytes."""

    __slots__ = ("material", "index", "fingerprint")

    def __init__(self, material: bytes, index: int = 0):
        if not isinstance(material, bytes) or len(material) != KEY_LENGTH:
            raise ValueError("a key is exactly 32 bytes")
        self.material = material
        self.index = index  # 0 = current, n = previous #n
        self.fingerprint = fingerprint(material)

    @property
    def label(self) -> str:
        return "current" if self.index == 0 else f"previous #{self.index}"

    @property
    def is_current(self) -> bool:
        return self.index == 0

    def __repr__(self) -> str:
        return f"Key({self.label}, fingerprint={self.fingerprint})"

    def __str__(self) -> str:
        return f"{self.label} ({self.fingerprint})"

    def __eq__(self, other):
        if not isinstance(other, Key):
            return NotImplemented
        return self.material == other.material and self.index == other.index

    def __hash__(self):
        return hash((self.fingerprint, self.index))
