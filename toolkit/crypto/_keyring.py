"""The keyring: the current key and the previous ones, and what each stored value is.

Stored values carry no key id, so the keyring tries its keys in order — current first,
then `ENCRYPTION_KEY_PREVIOUS` left to right — and the GCM tag says which one fits.
A failed decrypt is never taken for "probably plaintext" (DESIGN.md §2).

`inspect` is the hot path of the audit, rotation and `keys status` (millions of values): the
format's `split_strict` (one `bytes.fromhex`), one cached AESGCM object per key. It returns the
plaintext as bytes; the caller decides about UTF-8.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import AlreadyEncrypted, ConfigError, UndecryptableError, UsageError
from ._format import IV_LENGTHS, format_ciphertext, looks_damaged, malformed_reason, parse_ciphertext, split_strict
from ._keys import Key, derive_key, key_variable
from ._secret import Secret

PLAINTEXT = "plaintext"
MALFORMED = "malformed"
UNDECRYPTABLE = "undecryptable"
CURRENT = "current"
PREVIOUS = "previous"
KINDS = (CURRENT, PREVIOUS, UNDECRYPTABLE, PLAINTEXT, MALFORMED)


class ValueStatus(NamedTuple):
    kind: str  # one of KINDS
    key_index: int | None = None  # 0 = current, n = previous #n, when it decrypts
    plaintext: bytes | None = None
    iv: bytes | None = None  # for nonce-reuse checks, when well-formed
    reason: str | None = None  # why it is malformed

    @property
    def decrypts(self) -> bool:
        return self.key_index is not None

    def __repr__(self) -> str:
        # The plaintext never reaches a repr (logs, tracebacks, notebooks).
        shown = "None" if self.plaintext is None else f"<{len(self.plaintext)} bytes hidden>"
        iv = "None" if self.iv is None else self.iv.hex()
        return (f"ValueStatus(kind={self.kind!r}, key_index={self.key_index!r}, plaintext={shown}, "
                f"iv={iv}, reason={self.reason!r})")


class Decrypted(NamedTuple):
    secret: Secret
    key: Key
    key_index: int


_PLAINTEXT_STATUS = ValueStatus(PLAINTEXT)
_new_status = tuple.__new__


class Keyring:
    def __init__(self, keys=(), *, iv_length: int = 16, mask_visible: int = 4, is_demo: bool = False):
        keys = tuple(keys)
        seen = {}
        for index, key in enumerate(keys):
            if key.index != index:
                raise ValueError("keys must be given current first, indexed 0, 1, 2…")
            if key.material in seen:  # however the keyring is built
                raise ConfigError(f"{key_variable(index)} is the same key as {key_variable(seen[key.material])}",
                                  hint="remove it from ENCRYPTION_KEY_PREVIOUS")
            seen[key.material] = index
        if iv_length not in IV_LENGTHS:
            raise ConfigError(f"TOOLKIT_IV_LENGTH must be 12 or 16, got {iv_length}")
        self.keys = keys
        self.iv_length = iv_length
        self.mask_visible = mask_visible
        self.is_demo = is_demo  # the demo key is refused against a real database
        self._ciphers = tuple(AESGCM(key.material) for key in keys)

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "Keyring":
        """Build from ENCRYPTION_KEY and ENCRYPTION_KEY_PREVIOUS with the configured derivation."""
        texts = []
        if settings.encryption_key:
            texts.append((settings.encryption_key, "ENCRYPTION_KEY"))
        elif settings.encryption_key_previous:
            raise ConfigError("ENCRYPTION_KEY_PREVIOUS is set but ENCRYPTION_KEY is not")
        texts += [
            (text, f"ENCRYPTION_KEY_PREVIOUS #{n}")
            for n, text in enumerate(settings.encryption_key_previous, start=1)
        ]
        materials = [
            derive_key(text, settings.key_derivation, salt=settings.key_salt, variable=variable)
            for text, variable in texts
        ]
        return cls.from_materials(
            materials, iv_length=settings.iv_length, mask_visible=settings.mask_visible, **kwargs
        )

    @classmethod
    def from_materials(cls, materials, **kwargs) -> "Keyring":
        """From raw 32-byte keys, current first. Refuses a key listed twice."""
        return cls([Key(m, i) for i, m in enumerate(materials)], **kwargs)

    # --- keys -------------------------------------------------------------------------
    @property
    def current(self) -> Key:
        if not self.keys:
            raise ConfigError(
                "ENCRYPTION_KEY is not set", hint="set it to the app's key (64 hex characters)"
            )
        return self.keys[0]

    @property
    def previous(self) -> tuple[Key, ...]:
        return self.keys[1:]

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        keys = ", ".join(f"{k.label}={k.fingerprint}" for k in self.keys)
        return f"Keyring({keys or 'no keys'}{', demo' if self.is_demo else ''})"

    def __reduce__(self):
        # AESGCM objects do not pickle; rebuild them (multiprocessing with spawn).
        return (_rebuild, ([k.material for k in self.keys], self.iv_length, self.mask_visible, self.is_demo))

    # --- the hot path -----------------------------------------------------------------
    @property
    def current_decrypt(self):
        """The current key's bare `decrypt(iv, ciphertext ‖ tag, None)` (raises InvalidTag on
        a wrong key), or None without keys — for the audit's row loop, which inlines the
        common case of `inspect` below (a call per value costs ~5% of the audit)."""
        return self._ciphers[0].decrypt if self._ciphers else None

    def inspect(self, value) -> ValueStatus:
        """Classify one stored value and decrypt it if a key fits. Never raises for data.

        The one classifier of a stored value (DESIGN.md §4.4): strict and authenticated by a
        key (current / previous, wherever it sits), strict but no key fits (undecryptable),
        damaged (malformed, with the reason), or no ciphertext at all (plaintext). What that
        means in a given field is the caller's: only a password field holds plaintext secrets.
        """
        if value.__class__ is not str:
            return ValueStatus(MALFORMED, reason=f"not a string but {type(value).__name__}")
        parts = split_strict(value)
        if parts is None:
            if looks_damaged(value):
                return ValueStatus(MALFORMED, reason=malformed_reason(value))
            return _PLAINTEXT_STATUS
        return self.open(*parts)

    def inspect_in_field(self, value, *, password_field: bool) -> ValueStatus | None:
        """A stored value as a secret of its field, or None: a password field's value is always
        judged (plaintext, malformed…); elsewhere only a strict ciphertext is a secret — plain
        text where plain text belongs is None. (The audit's row loop inlines this.)"""
        if password_field:
            return self.inspect(value)
        parts = split_strict(value) if value.__class__ is str else None
        return None if parts is None else self.open(*parts)

    def open(self, iv: bytes, sealed: bytes) -> ValueStatus:
        """The status of a strict value already split (`split_strict`): which key opens it."""
        if self._ciphers:
            try:
                plaintext = self._ciphers[0].decrypt(iv, sealed, None)
            except InvalidTag:
                return self.open_previous(iv, sealed)
            return _new_status(ValueStatus, (CURRENT, 0, plaintext, iv, None))
        return ValueStatus(UNDECRYPTABLE, None, None, iv)

    def open_previous(self, iv: bytes, sealed: bytes) -> ValueStatus:
        """The status of a strict value the current key did not open: a previous key's, or undecryptable."""
        for index in range(1, len(self._ciphers)):
            try:
                plaintext = self._ciphers[index].decrypt(iv, sealed, None)
            except InvalidTag:
                # The only way `cryptography` reports a wrong key.
                continue
            return _new_status(ValueStatus, (PREVIOUS, index, plaintext, iv, None))
        return ValueStatus(UNDECRYPTABLE, None, None, iv)

    # --- one value, with errors --------------------------------------------------------
    def decrypt(self, value: str) -> Decrypted:
        """Decrypt one value; MalformedCiphertext or UndecryptableError say why not."""
        parsed = parse_ciphertext(value)  # raises MalformedCiphertext with a reason
        self.current  # noqa: B018 — an empty keyring is a configuration error, not bad data
        sealed = parsed.sealed()
        for cipher, key in zip(self._ciphers, self.keys):
            try:
                plaintext = cipher.decrypt(parsed.iv, sealed, None)
            except InvalidTag:
                continue
            return Decrypted(Secret.from_bytes(plaintext, self.mask_visible), key, key.index)
        tried = ", ".join(str(k) for k in self.keys)
        if self.is_demo:  # ENCRYPTION_KEY unset on the demo database: the real key is what is missing
            raise UndecryptableError(
                f"the toolkit's demo keys do not authenticate this value (tried {tried})",
                hint="ENCRYPTION_KEY is not set, so the demo keys were used: set ENCRYPTION_KEY to the app's key",
            )
        raise UndecryptableError(
            f"no key in the keyring authenticates this value (wrong key or tampered value; tried {tried})",
            hint="set ENCRYPTION_KEY_PREVIOUS if it was written under an older key",
        )

    def encrypt(self, plaintext: str, *, iv: bytes | None = None) -> str:
        """Encrypt as the app does, under the current key with a fresh random IV.

        Refuses (AlreadyEncrypted) a value that is already a well-formed ciphertext —
        whether it verifies under this keyring (double encryption) or not (most likely a
        value from another key; encrypting it would bury it for good). `iv` is for tests
        that need a fixed nonce; never pass it in real use.
        """
        if not isinstance(plaintext, str):
            raise TypeError("encrypt() takes the plaintext as str")
        self.current  # noqa: B018 — raises ConfigError when ENCRYPTION_KEY is unset
        status = self.inspect(plaintext)
        if status.decrypts:
            raise AlreadyEncrypted(
                f"refusing to encrypt: the value is already a ciphertext that decrypts under the {self.keys[status.key_index].label} key"
            )
        if status.kind == UNDECRYPTABLE:
            raise AlreadyEncrypted(
                "refusing to encrypt: the value is already in the iv:authTag:ciphertext format (under a key not in this keyring)"
            )
        if iv is None:
            iv = os.urandom(self.iv_length)
        elif len(iv) not in IV_LENGTHS:
            raise ValueError("IV must be 12 or 16 bytes")
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates: Node would silently store U+FFFD instead; refuse rather than alter.
            raise UsageError("refusing to encrypt: the value is not valid Unicode text (lone surrogate)") from None
        sealed = self._ciphers[0].encrypt(iv, data, None)
        return format_ciphertext(iv, sealed[-16:], sealed[:-16])

    def key_for(self, index: int) -> Key:
        return self.keys[index]


def _rebuild(materials, iv_length, mask_visible, is_demo):
    return Keyring.from_materials(materials, iv_length=iv_length, mask_visible=mask_visible, is_demo=is_demo)

