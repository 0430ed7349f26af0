"""AES-256-GCM exactly as the app's `src/lib/crypto.ts` does it, a keyring, masked secrets.

    _format.py     the stored `iv:authTag:ciphertext` format (the only module that knows it)
    _keys.py       key derivations (hex, raw, sha256, scrypt), Key, fingerprints
    _keyring.py    Keyring: decrypt / encrypt / inspect with the current and previous keys
    _secret.py     Secret: a decrypted value masked in every rendering
    access_log.py  one JSON line per reveal (who, when, which field, which key) — never the value
"""

from ..errors import AlreadyEncrypted, CryptoError, MalformedCiphertext, UndecryptableError
from ._format import Ciphertext, format_ciphertext, looks_damaged, parse_ciphertext, split_strict
from ._keyring import KINDS, Decrypted, Keyring, ValueStatus
from ._keys import Key, derive_key, fingerprint
from ._secret import Secret, json_default, mask

__all__ = [
    "KINDS",
    "AlreadyEncrypted",
    "Ciphertext",
    "CryptoError",
    "Decrypted",
    "Key",
    "Keyring",
    "MalformedCiphertext",
    "Secret",
    "UndecryptableError",
    "ValueStatus",
    "derive_key",
    "fingerprint",
    "format_ciphertext",
    "json_default",
    "looks_damaged",
    "mask",
    "parse_ciphertext",
    "split_strict",
]
