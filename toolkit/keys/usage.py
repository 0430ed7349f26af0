"""Which key authenticates how many stored values — what `toolkit keys status` reports.

An old key can leave `ENCRYPTION_KEY_PREVIOUS` only once it authenticates no value anywhere.
A ciphertext is a secret wherever it sits (DESIGN.md §4.4): every strict `iv:tag:ct` value of
every field of every app, known to the registry or not, is counted under the key that opens
it (or as undecryptable); password fields also count their plaintext and malformed values.
Counting is a pure function over rows (`tally`); `key_usage` feeds it through the rewrite
stores' keyset pages (`toolkit.db.installations`), each page its own read-only transaction,
so it works through a transaction pooler and reads exactly the rows rotation visits.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from ..crypto import Key, Keyring
from ..crypto._keyring import MALFORMED, PLAINTEXT, UNDECRYPTABLE

PAGE_SIZE = 5000
LOCATIONS_KEPT = 20  # per key: where its values sit, for "keys status" to name


@dataclasses.dataclass(frozen=True)
class Location:
    installation_id: int
    app_id: str
    field: str
    password_field: bool  # False: an unknown field, an unknown app or a non-password field

    def __str__(self) -> str:
        where = "password field" if self.password_field else "not a password field"
        return f"installation {self.installation_id} ({self.app_id}) field {self.field} — {where}"


@dataclasses.dataclass
class KeyUsage:
    keyring: Keyring
    per_key: list[int]  # values authenticated by keyring.keys[i]
    undecryptable: int = 0
    plaintext: int = 0
    malformed: int = 0
    empty: int = 0
    installations: int = 0  # rows scanned
    unknown_app: int = 0  # rows whose app is not in the registry (their ciphertexts still count)
    outside_password_fields: list[int] = dataclasses.field(default_factory=list)  # per key
    locations: list[list[Location]] = dataclasses.field(default_factory=list)  # per key, the first few

    def __post_init__(self):
        keys = len(self.keyring.keys)
        self.outside_password_fields = self.outside_password_fields or [0] * keys
        self.locations = self.locations or [[] for _ in range(keys)]

    @property
    def values(self) -> int:
        return sum(self.per_key) + self.undecryptable + self.plaintext + self.malformed

    def retirable(self) -> list[Key]:
        """Previous keys that authenticate nothing anywhere: safe to drop from ENCRYPTION_KEY_PREVIOUS."""
        return [key for key, count in zip(self.keyring.keys, self.per_key) if key.index and not count]

    def as_dict(self) -> dict:
        return {
            "keys": [
                {"label": key.label, "fingerprint": key.fingerprint, "values": count,
                 "outside_password_fields": outside, "retirable": bool(key.index) and not count,
                 "locations": [dataclasses.asdict(where) for where in places]}
                for key, count, outside, places in zip(
                    self.keyring.keys, self.per_key, self.outside_password_fields, self.locations)
            ],
            "undecryptable": self.undecryptable,
            "plaintext": self.plaintext,
            "malformed": self.malformed,
            "empty": self.empty,
            "values": self.values,
            "installations": self.installations,
            "unknown_app": self.unknown_app,
        }

    def _found(self, key_index: int, row, key: str, password_field: bool) -> None:
        self.per_key[key_index] += 1
        if not password_field:
            self.outside_password_fields[key_index] += 1
        places = self.locations[key_index]
        if key_index and len(places) < LOCATIONS_KEPT:  # the current key's are where they belong
            places.append(Location(row.id, row.app_id, key, password_field))


def tally(keyring: Keyring, secret_keys: dict[str, tuple[str, ...]], rows: Iterable, usage: KeyUsage | None = None) -> KeyUsage:
    """Count rows (`.id`, `.app_id`, `.config` as decoded) into `usage`; `secret_keys` maps
    app id -> its password fields."""
    usage = usage or KeyUsage(keyring, [0] * len(keyring.keys))
    inspect = keyring.inspect_in_field
    for row in rows:
        usage.installations += 1
        passwords = secret_keys.get(row.app_id)
        if passwords is None:
            usage.unknown_app += 1
            passwords = ()
        config = row.config
        if config.__class__ is not dict:
            continue  # not an object: nothing is stored under keys (the audit reports it)
        for key, value in config.items():
            password_field = key in passwords
            if value.__class__ is not str or not value:
                if password_field:
                    usage.empty += value == ""
                    usage.malformed += value.__class__ is not str and value is not None
                continue
            status = inspect(value, password_field=password_field)
            if status is None:
                continue  # plain text where plain text belongs
            if status.key_index is not None:
                usage._found(status.key_index, row, key, password_field)
            elif status.kind == UNDECRYPTABLE:
                usage.undecryptable += 1
            elif status.kind == PLAINTEXT:
                usage.plaintext += 1
            elif status.kind == MALFORMED:
                usage.malformed += 1
    return usage


def key_usage(database, registry, keyring: Keyring, *, page_size: int = PAGE_SIZE) -> KeyUsage:
    """Stream every installation of `database` (the rows rotation visits) and tally it."""
    from ..db.installations import BEFORE_ALL, open_store

    secret_keys = {app_id: app.secret_keys for app_id, app in registry.apps.items()}
    usage = KeyUsage(keyring, [0] * len(keyring.keys))
    after = BEFORE_ALL
    with open_store(database, read_only=True) as store:
        while True:
            page = store.read_page(after, page_size)
            tally(keyring, secret_keys, page, usage)
            if len(page) < page_size:
                return usage
            after = page[-1].id
