"""The embedded demo database: a seeded SQLite file that shows every kind of finding.

Used whenever `DATABASE_URL` is unset, so every command and notebook works on a fresh
machine. The data is deterministic (one seed, fixed dates, IVs drawn from the seeded
generator) so notebook outputs and snapshots are stable. Its keys are public and marked as
demo keys: `refuse_demo_key` stops them from being used against any other database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .codes import (
    APP_UNKNOWN, CONFIG_NON_STRING, CONFIG_NOT_OBJECT, FIELD_INVALID, FIELD_MISSING,
    FIELD_UNEXPECTED_CIPHERTEXT, FIELD_UNKNOWN, INSTALLATION_TIMESTAMPS, SECRET_MALFORMED,
    SECRET_NONCE_REUSE, SECRET_PLAINTEXT, SECRET_STALE_KEY, SECRET_UNDECRYPTABLE,
    STATUS_NOT_CONFIGURED, USER_EMAIL_CASE_DUPLICATE,
)
from .errors import ConfigError
from .settings import APP_NAME

DEMO_REGISTRY_PATH = Path(__file__).with_name("demo_registry.json")
DEMO_FILENAME = "demo.sqlite3"
SEED = 20261125
USER_COUNT = 1500

# Public on purpose: these keys protect nothing. Derived from labels so nobody mistakes them
# for real keys, and so `refuse_demo_key` can recognise them.
DEMO_KEY = hashlib.sha256(b"installation-toolkit DEMO key - not a secret").hexdigest()
DEMO_PREVIOUS_KEY = hashlib.sha256(b"installation-toolkit DEMO previous key - not a secret").hexdigest()
# A key no keyring has: values sealed with it are `secret.undecryptable`.
_LOST_KEY = hashlib.sha256(b"installation-toolkit DEMO lost key").hexdigest()
DEMO_KEYS = (DEMO_KEY, DEMO_PREVIOUS_KEY)

_EPOCH = dt.datetime(2026, 1, 5, 9, 0, 0)


def demo_path(settings) -> Path:
    base = settings.data_dir or Path(platformdirs.user_data_dir(APP_NAME))
    return base / DEMO_FILENAME


def demo_keyring(settings=None):
    from .crypto import Keyring

    visible = settings.mask_visible if settings is not None else 4
    return Keyring.from_materials([bytes.fromhex(k) for k in DEMO_KEYS], is_demo=True, mask_visible=visible)


def refuse_demo_key(keyring) -> None:
    """The demo keys are public: refuse them against any database but the demo one."""
    demo_materials = {bytes.fromhex(k) for k in DEMO_KEYS}
    for key in keyring.keys:
        if key.material in demo_materials:
            variable = "ENCRYPTION_KEY" if key.is_current else f"ENCRYPTION_KEY_PREVIOUS #{key.index}"
            raise ConfigError(
                f"{variable} is the toolkit's public demo key, refused against a real database",
                hint="set the app's own ENCRYPTION_KEY",
            )


def ensure_demo_database(settings, *, reset: bool = False) -> Path:
    """Create and seed the demo database on first use (or when `reset`); return its path."""
    path = demo_path(settings)
    if path.exists() and not reset:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a concurrent first use never sees a half-seeded file.
    fd, tmp_name = tempfile.mkstemp(prefix=".demo-", suffix=".sqlite3", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build_demo_database(tmp)
        os.replace(tmp, path)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def build_demo_database(path: Path) -> None:
    from . import db
    from .registry import load_registry

    database = db.open_sqlite(path)
    with database.bind_ctx(db.MODELS):
        db.create_tables(database)
        users, installations = DemoData(load_registry(DEMO_REGISTRY_PATH)).generate()
        with database.atomic():
            for batch in _chunks(users, 500):
                db.User.insert_many(batch).execute()
            for batch in _chunks(installations, 500):
                db.AppInstallation.insert_many(batch).execute()
    database.execute_sql("PRAGMA journal_mode=DELETE")
    database.close()


def _chunks(rows, size):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@dataclass
class Planted:
    """Where the demo placed one example of a finding (for docs and tests)."""

    code: str
    installation_id: int | None
    user_id: int | None
    field: str | None


class DemoData:
    """Deterministic users and installations, with one or more example of every finding."""

    FIRST = ("ana", "ben", "chloe", "dmitri", "eva", "farid", "grace", "hugo", "ines", "jon",
             "kira", "liam", "mei", "nora", "omar", "priya", "quinn", "rosa", "sven", "tara")
    LAST = ("silva", "novak", "okafor", "larsen", "tanaka", "moreau", "kowalski", "haddad",
            "fischer", "reyes", "brennan", "ivanova", "mensah", "park", "rossi", "weber")
    DOMAINS = ("example.com", "example.org", "acme.test", "globex.test", "initech.test")

    def __init__(self, registry):
        self.registry = registry
        self.rng = random.Random(SEED)
        from .crypto import Keyring

        # One single-key keyring per role, to seal a value under exactly that key.
        self.sealers = {name: Keyring.from_materials([bytes.fromhex(k)]) for name, k in
                        (("current", DEMO_KEY), ("previous", DEMO_PREVIOUS_KEY), ("lost", _LOST_KEY))}
        self.planted: list[Planted] = []

    # -- values ---------------------------------------------------------------------------
    def seal(self, plaintext: str, key: str = "current", iv: bytes | None = None) -> str:
        # IVs come from the seeded generator so the demo is the same on every machine;
        # both lengths the app may use appear.
        iv = iv if iv is not None else self.rng.randbytes(16 if self.rng.random() < 0.8 else 12)
        return self.sealers[key].encrypt(plaintext, iv=iv)

    def hex(self, n: int) -> str:
        return self.rng.randbytes(n).hex()

    def plain_value(self, app_id: str, field) -> str:
        rng = self.rng
        special = {
            ("slack", "channel"): lambda: rng.choice(("#alerts", "#ops", "#billing", "#growth")),
            ("twilio", "accountSid"): lambda: "AC" + self.hex(16),
            ("twilio", "fromNumber"): lambda: f"+1415555{rng.randint(1000, 9999)}",
            ("google-analytics", "measurementId"): lambda: "G-" + "".join(
                rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(10)),
            ("github", "organization"): lambda: f"{rng.choice(self.LAST)}-labs",
            ("github", "repository"): lambda: rng.choice(("web", "api", "infra", "mobile")),
            ("mailchimp", "listId"): lambda: self.hex(5),
            ("hubspot", "notes"): lambda: "Synced nightly; owner: " + rng.choice(self.FIRST),
        }
        if (app_id, field.key) in special:
            return special[(app_id, field.key)]()
        if field.type == "select":
            return rng.choice(field.options).value
        if field.type == "url":
            return f"https://hooks.{rng.choice(self.DOMAINS)}/{app_id}/{self.hex(4)}"
        if field.type == "email":
            return f"{rng.choice(self.FIRST)}.ops@{rng.choice(self.DOMAINS)}"
        if field.type == "number":
            return str(rng.randint(100, 99999))
        return f"{app_id}-{self.hex(3)}"

    def secret_value(self, app_id: str, field) -> str:
        prefixes = {"stripe": "sk_live_", "slack": "xoxb-", "github": "ghp_", "sendgrid": "SG.",
                    "hubspot": "pat-na1-", "mailchimp": "", "twilio": "", "google-analytics": ""}
        return prefixes.get(app_id, "") + self.hex(12)

    def complete_config(self, app) -> dict:
        config = {}
        for field in app.fields:
            if not field.required and self.rng.random() < 0.4:
                continue  # optional fields are often absent
            if field.is_secret:
                config[field.key] = self.seal(self.secret_value(app.id, field))
            else:
                config[field.key] = self.plain_value(app.id, field)
        return config

    # -- rows -----------------------------------------------------------------------------
    def generate(self):
        rng = self.rng
        users = []
        emails = set()
        for user_id in range(1, USER_COUNT + 1):
            first, last = rng.choice(self.FIRST), rng.choice(self.LAST)
            email = f"{first}.{last}{user_id}@{rng.choice(self.DOMAINS)}"
            emails.add(email)
            users.append({
                "id": user_id, "name": f"{first.title()} {last.title()}", "email": email,
                # A bcrypt-shaped placeholder: the column exists, the toolkit never shows it.
                "password": "$2b$10$" + self.hex(26)[:53],
                "role": "admin" if user_id <= 5 else "customer",
                "created_at": _EPOCH + dt.timedelta(minutes=7 * user_id),
            })
        installations = []
        app_ids = sorted(self.registry.apps)
        for user in users:
            for app_id in rng.sample(app_ids, rng.choice((1, 2, 2, 3, 3, 4))):
                installations.append(self._installation(len(installations) + 1, user, app_id))
        self._plant(users, installations)
        return users, installations

    def _installation(self, row_id, user, app_id):
        app = self.registry.apps[app_id]
        installed_at = user["created_at"] + dt.timedelta(hours=self.rng.randint(1, 2000))
        config = self.complete_config(app)
        status = "configured"
        if self.rng.random() < 0.2:
            status = "installed"
            # Incomplete on purpose: an installed app whose setup is not finished.
            config.pop(self.rng.choice(sorted(app.required_keys)), None)
        return {
            "id": row_id, "user": user["id"], "app_id": app_id, "status": status,
            "config": config, "installed_at": installed_at,
            "updated_at": installed_at + dt.timedelta(minutes=self.rng.randint(0, 90000)),
        }

    def _plant(self, users, rows):
        """Turn chosen rows into one example of each finding (spread out, every ~40th row)."""
        by_app = {}
        for row in rows:
            if row["status"] == "configured":
                by_app.setdefault(row["app_id"], []).append(row)
        # Every 15th configured row of an app, so planted rows are spread through the table.
        picks = {app_id: iter(app_rows[3::15]) for app_id, app_rows in by_app.items()}

        def plant(app_id, code, field=None, mutate=None):
            row = next(picks[app_id])
            if mutate:
                mutate(row)
            self.planted.append(Planted(code, row["id"], row["user"], field))
            return row

        def set_field(key, value):
            return lambda row: row["config"].__setitem__(key, value)

        def secret():
            return "sk_live_" + self.hex(12)

        plant("stripe", SECRET_PLAINTEXT, "apiKey", set_field("apiKey", secret()))
        plant("stripe", SECRET_MALFORMED, "apiKey",
              set_field("apiKey", self.hex(10) + ":" + self.hex(16) + ":" + self.hex(8)))  # 10-byte IV
        plant("stripe", SECRET_MALFORMED, "apiKey",
              set_field("apiKey", "zz" + self.hex(15) + ":" + self.hex(16) + ":" + self.hex(8)))  # bad hex
        plant("stripe", SECRET_UNDECRYPTABLE, "apiKey", set_field("apiKey", self.seal(secret(), "lost")))
        for _ in range(3):
            plant("stripe", SECRET_STALE_KEY, "apiKey", set_field("apiKey", self.seal(secret(), "previous")))
        shared_iv = self.rng.randbytes(16)
        for _ in range(2):
            plant("stripe", SECRET_NONCE_REUSE, "apiKey", set_field("apiKey", self.seal(secret(), iv=shared_iv)))
        plant("stripe", FIELD_UNEXPECTED_CIPHERTEXT, "webhookUrl",
              set_field("webhookUrl", self.seal("https://hooks.example.com/stripe")))
        plant("stripe", FIELD_INVALID, "webhookUrl", set_field("webhookUrl", "http://hooks.example.com/insecure"))
        plant("stripe", FIELD_INVALID, "region", set_field("region", "apac"))
        plant("stripe", FIELD_UNKNOWN, "debug", set_field("debug", "true"))
        plant("stripe", FIELD_MISSING, "region", lambda row: row["config"].pop("region"))
        plant("stripe", CONFIG_NON_STRING, "webhookUrl", set_field("webhookUrl", 443))
        plant("stripe", CONFIG_NOT_OBJECT, None, lambda row: row.__setitem__("config", ["apiKey", "region"]))
        plant("stripe", INSTALLATION_TIMESTAMPS, None,
              lambda row: row.__setitem__("updated_at", row["installed_at"] - dt.timedelta(days=2)))
        plant("slack", APP_UNKNOWN, None,
              lambda row: row.update(app_id="legacy-crm", config={"token": "t-" + self.hex(6)}))
        plant("sendgrid", FIELD_INVALID, "fromEmail", set_field("fromEmail", "billing at example.com"))
        plant("sendgrid", FIELD_INVALID, "dailyLimit", set_field("dailyLimit", "lots"))
        plant("slack", FIELD_INVALID, "channel", set_field("channel", "[bold red]alerts[/]"))  # markup in data
        plant("hubspot", STATUS_NOT_CONFIGURED, None, lambda row: row.__setitem__("status", "installed"))
        # Two users whose emails differ only by case.
        users[41]["email"] = "Morgan.Lee@Example.com"
        users[42]["email"] = "morgan.lee@example.com"
        for user in users[41:43]:
            self.planted.append(Planted(USER_EMAIL_CASE_DUPLICATE, None, user["id"], None))
