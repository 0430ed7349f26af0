"""Deterministic data for the dashboard's tests (no tests here; imported by test_browse*/test_tui*).

Fixed timestamps and emails so SVG snapshots are stable. The first rows carry the awkward
cases the dashboard must render: a config that is not an object, a malformed ciphertext,
values full of markup, an app the registry does not know, NULL timestamps.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from toolkit import db
from toolkit.crypto import Keyring

KEY_HEX = "11" * 32
PREVIOUS_KEY_HEX = "22" * 32
SECRET_STRIPE = "sk_live_ALICE_SECRET_4242"
SECRET_SLACK = "xoxb-SLACK-SECRET-9876"
MARKUP_VALUE = "[bold]x[/] [link=https://evil.example]click[/link]"
EPOCH = dt.datetime(2025, 3, 1, 9, 0, 0)
# The ciphertext shape, but a 10-byte IV: malformed (secret.malformed).
MALFORMED = "ab" * 10 + ":" + "cd" * 16 + ":" + "ef" * 8

# Generated users/installations beyond the special rows: enough for three pages of 100.
GENERATED = 250
APPS = ("stripe", "slack", "github")

REGISTRY = {
    "stripe": {
        "name": "Stripe", "category": "payments",
        "fields": [
            {"key": "apiKey", "label": "Secret key", "type": "password", "required": True},
            {"key": "region", "label": "Region", "type": "select", "required": True, "options": ["us", "eu"]},
            {"key": "webhookUrl", "label": "Webhook URL", "type": "url"},
        ],
    },
    "slack": {
        "name": "Slack", "category": "messaging",
        "fields": [
            {"key": "botToken", "label": "Bot token", "type": "password", "required": True},
            {"key": "channel", "label": "Default channel", "type": "text", "required": True},
        ],
    },
    "github": {
        "name": "GitHub", "category": "developer",
        "fields": [
            {"key": "accessToken", "label": "Personal access token", "type": "password", "required": True},
            {"key": "organization", "label": "Organization", "type": "text", "required": True},
        ],
    },
}


def keyring() -> Keyring:
    return Keyring.from_materials([bytes.fromhex(KEY_HEX), bytes.fromhex(PREVIOUS_KEY_HEX)])


def write_registry(path) -> None:
    path.write_text(json.dumps(REGISTRY), encoding="utf-8")


def seed(database, ring: Keyring | None = None, generated: int = GENERATED) -> None:
    """Users 1-3 and installations 1-5 are special; then `generated` plain ones."""
    ring = ring or keyring()
    User, Installation = db.User, db.AppInstallation
    users = [
        dict(id=1, name="Alice", email="alice@example.com", role="admin", password="hash-ALICE-PW", created_at=EPOCH),
        dict(id=2, name="Bob", email="bob@example.com", role="customer", password="hash-BOB-PW", created_at=EPOCH),
        dict(id=3, name=MARKUP_VALUE, email="[red]mallory[/]@example.com", role="customer", password=None, created_at=None),
    ]
    users += [
        dict(id=n, name=f"User {n}", email=f"user{n:04d}@example.com", role="customer", password=f"hash-{n}",
             created_at=EPOCH + dt.timedelta(minutes=n))
        for n in range(4, 4 + generated)
    ]
    at = lambda hours: EPOCH + dt.timedelta(hours=hours)  # noqa: E731
    installations = [
        dict(id=1, user=1, app_id="stripe", status="configured", installed_at=at(1), updated_at=at(2),
             config={"apiKey": ring.encrypt(SECRET_STRIPE), "region": "eu", "webhookUrl": "https://a.example/hook"}),
        dict(id=2, user=1, app_id="slack", status="installed", installed_at=at(1), updated_at=at(3),
             config={"botToken": ring.encrypt(SECRET_SLACK), "channel": MARKUP_VALUE}),
        dict(id=3, user=2, app_id="stripe", status="configured", installed_at=at(2), updated_at=at(4),
             config=["not", "an", "object"]),
        dict(id=4, user=2, app_id="github", status="configured", installed_at=at(2), updated_at=None,
             config={"accessToken": MALFORMED, "organization": MARKUP_VALUE}),
        dict(id=5, user=3, app_id="legacy-app", status="installed", installed_at=None, updated_at=None, config={}),
    ]
    installations += [
        dict(id=5 + n, user=4 + n, app_id=APPS[n % 3], status=("installed", "configured")[n % 2],
             installed_at=at(10 + n), updated_at=at(10 + n + (n % 7)),
             config={"region": "us"} if n % 3 == 0 else {})
        for n in range(1, generated)
    ]
    with database.bind_ctx(db.MODELS):
        with database.atomic():
            User.insert_many(users).execute()
            Installation.insert_many(installations).execute()
        if db.is_postgres(database):
            # Explicit ids do not advance the serials: later inserts (the app, ConfigService) would collide.
            database.execute_sql("SELECT setval('users_id_seq', (SELECT max(id) FROM users))")
            database.execute_sql("SELECT setval('app_installations_id_seq', (SELECT max(id) FROM app_installations))")


def sqlite_database(path):
    database = db.open_sqlite(path)
    db.create_tables(database)
    return database


TOTAL = 4 + GENERATED  # installations seed() writes: 5 special ones + GENERATED - 1 generated


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A seeded database, on SQLite and on PostgreSQL (import it into a test module to use it)."""
    if request.param == "sqlite":
        database = sqlite_database(tmp_path / "browse.sqlite3")
    else:
        database = db.open_postgres(request.getfixturevalue("pg_url"))
    seed(database)
    yield database
    database.close()
