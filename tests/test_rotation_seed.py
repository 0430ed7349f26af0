"""Shared data for the rotation and repair tests: keys, a registry, rows sealed as the app seals them."""

from __future__ import annotations

import hashlib
import json
import os

import orjson
import psycopg2
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from toolkit.crypto import Keyring

OLD_KEY = hashlib.sha256(b"rotation test: the old key").hexdigest()
NEW_KEY = hashlib.sha256(b"rotation test: the new key").hexdigest()
OLDER_KEY = hashlib.sha256(b"rotation test: an older key").hexdigest()
LOST_KEY = hashlib.sha256(b"rotation test: a key nobody has").hexdigest()

REGISTRY = {
    "stripe": {"name": "Stripe", "category": "payments", "fields": [
        {"key": "apiKey", "label": "Secret key", "type": "password", "required": True},
        {"key": "webhookSecret", "label": "Webhook secret", "type": "password"},
        {"key": "region", "label": "Region", "type": "select", "required": True, "options": ["us", "eu"]},
        {"key": "webhookUrl", "label": "Webhook URL", "type": "url"},
    ]},
    "slack": {"name": "Slack", "category": "messaging", "fields": [
        {"key": "botToken", "label": "Bot token", "type": "password", "required": True},
        {"key": "channel", "label": "Channel", "type": "text", "required": True},
    ]},
}
SECRET_FIELDS = {"stripe": ("apiKey", "webhookSecret"), "slack": ("botToken",)}


def keyring(*hex_keys) -> Keyring:
    return Keyring.from_materials([bytes.fromhex(k) for k in hex_keys])


def seal(key_hex: str, plaintext, iv_length: int = 16) -> str:
    """Encrypt as the app's crypto.ts does (any bytes, either IV length)."""
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    iv = os.urandom(iv_length)
    sealed = AESGCM(bytes.fromhex(key_hex)).encrypt(iv, data, None)
    return f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"


def open_under(key_hex: str, value: str) -> bytes:
    """Decrypt under exactly one key (raises when it does not fit)."""
    iv, tag, body = (bytes.fromhex(part) for part in value.split(":"))
    return AESGCM(bytes.fromhex(key_hex)).decrypt(iv, body + tag, None)


def write_registry(directory) -> str:
    path = directory / "registry.json"
    path.write_text(json.dumps(REGISTRY))
    return str(path)


def cli_env(url: str, registry_path: str, *, current: str | None = NEW_KEY, previous: str | None = OLD_KEY) -> dict:
    env = {"DATABASE_URL": url, "TOOLKIT_REGISTRY": registry_path}
    if current is not None:
        env["ENCRYPTION_KEY"] = current
    if previous is not None:
        env["ENCRYPTION_KEY_PREVIOUS"] = previous
    return env


def connect(url: str):
    return psycopg2.connect(url)


def insert_rows(url: str, rows) -> list[int]:
    """rows: dicts with app_id, config (any JSON, or None), optional status/updated_at. One user each."""
    ids = []
    connection = connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM users")
        base = cursor.fetchone()[0]
        for n, row in enumerate(rows, start=base + 1):
            cursor.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (n, f"user{n}@example.com"))
            config = row.get("config", {})
            cursor.execute(
                "INSERT INTO app_installations (user_id, app_id, status, config, installed_at, updated_at)"
                " VALUES (%s, %s, %s, %s::jsonb, '2026-01-01 10:00', %s) RETURNING id",
                (n, row["app_id"], row.get("status", "configured"),
                 None if config is None else orjson.dumps(config).decode(),
                 row.get("updated_at", "2026-01-02 10:00")),
            )
            ids.append(cursor.fetchone()[0])
    connection.close()
    return ids


def seed_stripe(url: str, count: int, key: str = OLD_KEY) -> dict[int, dict]:
    """`count` stripe installations, both secrets under `key`; returns id -> plaintexts and region."""
    rows, expected = [], []
    for i in range(count):
        plain = {"apiKey": f"sk_live_{i:08d}", "webhookSecret": f"whsec_{i:08d}", "region": "eu" if i % 2 else "us"}
        config = {"apiKey": seal(key, plain["apiKey"]), "webhookSecret": seal(key, plain["webhookSecret"], 12),
                  "region": plain["region"]}
        rows.append({"app_id": "stripe", "config": config})
        expected.append(plain)
    ids = insert_rows(url, rows)
    return dict(zip(ids, expected))


def configs(url: str) -> dict[int, dict]:
    connection = connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, config FROM app_installations ORDER BY id")
        found = dict(cursor.fetchall())
    connection.close()
    return found


def rows(url: str) -> dict[int, tuple]:
    """id -> (status, config, updated_at)."""
    connection = connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, status::text, config, updated_at FROM app_installations ORDER BY id")
        found = {r[0]: r[1:] for r in cursor.fetchall()}
    connection.close()
    return found


def checksum(url: str) -> str:
    """md5 of the whole table, every column (a dry run must leave it identical)."""
    connection = connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY id), '')) FROM app_installations t")
        digest = cursor.fetchone()[0]
    connection.close()
    return digest
