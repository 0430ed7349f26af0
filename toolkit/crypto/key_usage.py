"""Which key authenticates how many stored secrets — what `toolkit keys status` reports.

An old key can leave `ENCRYPTION_KEY_PREVIOUS` once it authenticates no value. Counting is a
pure function over `(app_id, config)` pairs (`tally`); `key_usage` feeds it from the
database in keyset pages by id, each page its own read-only transaction, so it works through
a transaction pooler and never holds a server connection for the whole scan.

Only fields the registry declares as `password` are counted; empty values (an optional
secret left blank) are counted apart; a non-string value counts as malformed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterable

from ._keyring import Keyring
from ._keys import Key

PAGE_SIZE = 5000


@dataclasses.dataclass
class KeyUsage:
    keyring: Keyring
    per_key: list[int]  # values authenticated by keyring.keys[i]
    undecryptable: int = 0
    plaintext: int = 0
    malformed: int = 0
    empty: int = 0
    installations: int = 0  # rows scanned
    unknown_app: int = 0  # rows whose app is not in the registry (their fields are unknown)

    @property
    def values(self) -> int:
        return sum(self.per_key) + self.undecryptable + self.plaintext + self.malformed

    def retirable(self) -> list[Key]:
        """Previous keys that authenticate nothing: safe to drop from ENCRYPTION_KEY_PREVIOUS."""
        return [key for key, count in zip(self.keyring.keys, self.per_key) if key.index and not count]

    def as_dict(self) -> dict:
        return {
            "keys": [
                {"label": key.label, "fingerprint": key.fingerprint, "values": count,
                 "retirable": bool(key.index) and not count}
                for key, count in zip(self.keyring.keys, self.per_key)
            ],
            "undecryptable": self.undecryptable,
            "plaintext": self.plaintext,
            "malformed": self.malformed,
            "empty": self.empty,
            "values": self.values,
            "installations": self.installations,
            "unknown_app": self.unknown_app,
        }


def tally(keyring: Keyring, secret_keys: dict[str, tuple[str, ...]], rows: Iterable, usage: KeyUsage | None = None) -> KeyUsage:
    """Count `(app_id, config)` rows into `usage`; `secret_keys` maps app id -> password fields."""
    usage = usage or KeyUsage(keyring, [0] * len(keyring.keys))
    inspect, per_key = keyring.inspect, usage.per_key
    for app_id, config in rows:
        usage.installations += 1
        fields = secret_keys.get(app_id)
        if fields is None:
            usage.unknown_app += 1
            continue
        if not isinstance(config, dict):
            continue  # not an object: nothing is stored under its fields (the audit reports it)
        for field in fields:
            value = config.get(field)
            if value is None or value == "":
                usage.empty += value == ""
                continue
            status = inspect(value)
            if status.key_index is not None:
                per_key[status.key_index] += 1
            elif status.kind == "undecryptable":
                usage.undecryptable += 1
            elif status.kind == "plaintext":
                usage.plaintext += 1
            else:
                usage.malformed += 1
    return usage


def key_usage(database, registry, keyring: Keyring, *, page_size: int = PAGE_SIZE) -> KeyUsage:
    """Stream every installation's config from `database` and tally it."""
    from ..db import AppInstallation, is_postgres, read_only, translate_errors

    secret_keys = {app_id: app.secret_keys for app_id, app in registry.apps.items()}
    decode = (lambda value: value) if is_postgres(database) else _decode_text
    usage = KeyUsage(keyring, [0] * len(keyring.keys))
    last_id = 0
    columns = (AppInstallation.id, AppInstallation.app_id, AppInstallation.config)
    while True:
        query = (AppInstallation.select(*columns).where(AppInstallation.id > last_id)
                 .order_by(AppInstallation.id).limit(page_size).tuples().bind(database))
        with translate_errors(database), read_only(database):
            page = list(query)
        if not page:
            return usage
        last_id = page[-1][0]
        tally(keyring, secret_keys, ((app_id, decode(config)) for _, app_id, config in page), usage)
        if len(page) < page_size:
            return usage


def _decode_text(value):
    # SQLite stores the config as text; psycopg2 already decodes jsonb.
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
            return None
    return value
