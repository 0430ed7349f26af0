"""A database with every audit finding planted, and clean trap rows beside them.

    planted = plant(database)       # a Peewee database (PostgreSQL, through PgBouncer, or SQLite)
    planted.expected                # {(code, installation_id, user_id, field)} the audit must find
    planted.clean_ids               # installations that must have no finding at all
    planted.secrets                 # every plaintext and ciphertext planted: never in any output
    keyring(), REGISTRY_PATH        # the explicit test keys and the test registry

Rows are inserted with plain SQL (RETURNING id), configs as JSON text, so what is stored is
exactly what is written here — including configs no JSON library would produce (deeper than
any parser's limit). Usable by the audit tests and, later, by the rotation helper.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from toolkit.crypto import Keyring

REGISTRY_PATH = Path(__file__).parent / "fixtures" / "audit_registry.json"
CURRENT_KEY = bytes.fromhex("a1" * 32)
PREVIOUS_KEY = bytes.fromhex("b2" * 32)
OTHER_KEY = bytes.fromhex("c3" * 32)  # in no keyring: values under it are undecryptable
DEPTH = 3000  # deeper than orjson's (1024) and Python's default recursion limits
T0 = "2024-03-01 10:00:00"
T1 = "2024-03-02 11:30:00"


def keyring() -> Keyring:
    return Keyring.from_materials([CURRENT_KEY, PREVIOUS_KEY])


def seal(plaintext, key: bytes = CURRENT_KEY, iv: bytes | None = None, *, upper: bool = False) -> str:
    """A stored value as the app writes it (`iv:tag:ct`), under any key, with any IV."""
    iv = os.urandom(16) if iv is None else iv
    data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
    sealed = AESGCM(key).encrypt(iv, data, None)
    value = f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"
    return value.upper() if upper else value


@dataclasses.dataclass
class Planted:
    expected: set = dataclasses.field(default_factory=set)
    clean_ids: set = dataclasses.field(default_factory=set)
    secrets: set = dataclasses.field(default_factory=set)
    ids: dict = dataclasses.field(default_factory=dict)  # label -> installation id
    users: dict = dataclasses.field(default_factory=dict)  # email -> user id


class _Writer:
    def __init__(self, database):
        from toolkit.db import is_postgres

        self.database = database
        self.postgres = is_postgres(database)
        self.mark = "%s" if self.postgres else "?"
        self.planted = Planted()
        self._users = 0

    def user(self, email: str | None = None) -> int:
        self._users += 1
        email = email or f"user{self._users}@example.com"
        m = self.mark
        user_id = self.database.execute_sql(
            f"INSERT INTO users (name, email, role) VALUES ({m}, {m}, 'customer') RETURNING id",
            (f"User {self._users}", email),
        ).fetchone()[0]
        self.planted.users[email] = user_id
        return user_id

    def install(self, label, app_id, status, config, expect=(), *, user_id=None, raw=False,
                installed_at=T0, updated_at=T1, secrets=()) -> int:
        """`config`: a dict (dumped as JSON), JSON text when `raw`, or None for SQL NULL.
        `expect`: (code, field) pairs; none means this is a clean trap row."""
        user_id = user_id or self.user()
        text = config if raw or config is None else json.dumps(config, ensure_ascii=False)
        m = self.mark
        cast = "::jsonb" if self.postgres else ""
        installation_id = self.database.execute_sql(
            "INSERT INTO app_installations (user_id, app_id, status, config, installed_at, updated_at) "
            f"VALUES ({m}, {m}, {m}, {m}{cast}, {m}, {m}) RETURNING id",
            (user_id, app_id, status, text, installed_at, updated_at),
        ).fetchone()[0]
        self.planted.ids[label] = installation_id
        for code, field in expect:
            self.planted.expected.add((code, installation_id, user_id, field))
        if not expect:
            self.planted.clean_ids.add(installation_id)
        self.planted.secrets.update(s for s in secrets if s)
        return installation_id


def plant(database) -> Planted:
    """Insert the planted rows into an empty app schema; returns what the audit must find."""
    with database.atomic():
        return _plant(_Writer(database))


def _plant(w: _Writer) -> Planted:
    s = w.planted.secrets
    # Plaintexts of every encrypted value: none may ever appear in a report.
    live, hook, unicode_secret, slack_token = ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "whsec_JqU2b6bWmTzX",
                                                "clé-🔑-秘密-пароль", "xoxb-1234-5678-abcdefgh")
    s.update({live, hook, unicode_secret, slack_token})

    # ---- clean traps ----------------------------------------------------------------
    api16, hook12 = seal(live), seal(hook, iv=os.urandom(12))
    w.install("clean.full", "stripe", "configured", {
        "apiKey": api16, "region": "us", "webhookSecret": hook12,
        "webhookUrl": "https://hooks.example.com/stripe", "accountEmail": "billing@example.com",
        "description": "Zahlungen für Ünïcödé GmbH ✓"}, secrets=(api16, hook12))
    api_unicode, empty_secret = seal(unicode_secret), seal("")
    w.install("clean.unicode-and-encrypted-empty", "stripe", "configured", {
        "apiKey": api_unicode, "region": "eu", "webhookSecret": empty_secret},
        secrets=(api_unicode, empty_secret))
    w.install("clean.optional-absent", "stripe", "configured", {"apiKey": seal(live), "region": "eu"})
    w.install("clean.optional-empty", "stripe", "configured", {
        "apiKey": seal(live), "region": "us", "webhookUrl": "", "webhookSecret": "", "accountEmail": ""})
    upper = seal(live, upper=True)  # Node decodes upper-case hex: the app reads it fine
    w.install("clean.upper-hex", "stripe", "configured", {"apiKey": upper, "region": "us"}, secrets=(upper,))
    w.install("clean.installed-partial", "stripe", "installed", {"region": "us"})
    w.install("clean.installed-partial-secret", "slack", "installed", {"botToken": seal(slack_token)})
    w.install("clean.installed-empty", "slack", "installed", {})
    w.install("clean.installed-null", "stripe", "installed", None)
    w.install("clean.json-null", "hooks", "installed", "null", raw=True)  # the app reads it as null ?? {}
    w.install("clean.no-required-nothing-set", "mailer", "installed", {})
    w.install("clean.no-required-configured", "mailer", "configured", {
        "host": "smtp.example.com", "port": "587", "smtpPassword": ""})
    w.install("clean.hooks", "hooks", "configured", {"endpoint": "https://h.example.com/in"})
    signing = seal("whsec_abc123XYZ")
    w.install("clean.password-pattern", "hooks", "configured", {"endpoint": "https://h.example.com/in",
                                                                 "signingSecret": signing}, secrets=(signing,))
    s.add("whsec_abc123XYZ")
    w.install("clean.installed-required-secret-encrypted-empty", "stripe", "installed",
              {"apiKey": seal(""), "region": "us"})  # set but empty: not "every required field set"
    # COPY escapes backslashes, tabs and newlines: the engine must undo exactly that.
    w.install("clean.escapes", "stripe", "configured", {
        "apiKey": seal(live), "region": "us",
        "description": "line 1\nline 2\ttab \\ backslash \"quoted\" \\N not null"})
    w.install("clean.colons-not-ciphertext", "stripe", "configured", {
        "apiKey": seal(live), "region": "us", "description": "ab:cd:ef"})
    # 12-byte IV X and 16-byte IV X‖0000 are different nonces: no reuse.
    x = bytes(range(1, 13))
    short, padded = seal("first", iv=x), seal("second", iv=x + b"\0\0\0\0")
    w.install("clean.iv12", "stripe", "configured", {"apiKey": short, "region": "us"}, secrets=(short,))
    w.install("clean.iv16-padded", "stripe", "configured", {"apiKey": padded, "region": "eu"}, secrets=(padded,))
    # The same IV under two different keys is no reuse either (but the previous key is stale).
    same = bytes(range(40, 56))
    shared_current, shared_previous = seal("k1", iv=same), seal("k2", PREVIOUS_KEY, iv=same)
    w.install("clean.iv-shared-across-keys", "stripe", "configured", {"apiKey": shared_current, "region": "us"})
    stale_same_iv = w.install("stale.iv-shared-across-keys", "stripe", "configured",
                              {"apiKey": shared_previous, "region": "us"},
                              expect=[("secret.stale-key", "apiKey")])

    # ---- planted findings -----------------------------------------------------------
    s.add("sk_plain_ghost")
    w.install("app.unknown", "ghost-app", "configured", {"x": "y", "apiKey": "sk_plain_ghost"},
              expect=[("app.unknown", None)])
    w.install("not-object.string", "stripe", "configured", '"just a string"', raw=True,
              expect=[("config.not-object", None)])
    w.install("not-object.array", "stripe", "installed", '[1, 2, "three"]', raw=True,
              expect=[("config.not-object", None)])
    w.install("not-object.number", "slack", "configured", "42", raw=True,
              expect=[("config.not-object", None)])
    w.install("not-object.huge-string", "stripe", "configured", json.dumps("x" * 2_000_000), raw=True,
              expect=[("config.not-object", None)])
    w.install("not-object.deep-array", "stripe", "configured", "[" * DEPTH + "]" * DEPTH, raw=True,
              expect=[("config.not-object", None)])
    deep_ok = seal(live)
    w.install("non-string.deep-value", "stripe", "configured",
              '{"apiKey": "%s", "region": "us", "description": %s}' % (deep_ok, "[" * DEPTH + "]" * DEPTH),
              raw=True, expect=[("config.non-string", "description")])
    w.install("non-string.number", "stripe", "configured", {"apiKey": seal(live), "region": "us", "description": 5},
              expect=[("config.non-string", "description")])
    w.install("non-string.secret", "stripe", "configured", {"apiKey": 12345, "region": "eu"},
              expect=[("config.non-string", "apiKey")])
    w.install("non-string.null", "stripe", "configured", {"apiKey": seal(live), "region": "us", "description": None},
              expect=[("config.non-string", "description")])
    w.install("non-string.null-required", "hooks", "configured", {"endpoint": None},
              expect=[("config.non-string", "endpoint"), ("field.missing", "endpoint")])
    w.install("unknown.field", "stripe", "configured", {"apiKey": seal(live), "region": "us", "legacyToken": "abc"},
              expect=[("field.unknown", "legacyToken")])
    w.install("unknown.non-string", "hooks", "configured", {"endpoint": "https://e.example.com", "extra": {"a": 1}},
              expect=[("field.unknown", "extra"), ("config.non-string", "extra")])
    w.install("missing.absent", "stripe", "configured", {"region": "us"}, expect=[("field.missing", "apiKey")])
    w.install("missing.empty", "stripe", "configured", {"apiKey": "", "region": "eu"},
              expect=[("field.missing", "apiKey")])
    w.install("missing.select", "stripe", "configured", {"apiKey": seal(live)},
              expect=[("field.missing", "region")])
    w.install("missing.encrypted-empty", "stripe", "configured", {"apiKey": seal(""), "region": "us"},
              expect=[("field.missing", "apiKey")])
    wrong = seal("not-a-signing-secret")
    s.add("not-a-signing-secret")
    w.install("invalid.password-pattern", "hooks", "installed", {"signingSecret": wrong},
              expect=[("field.invalid", "signingSecret")], secrets=(wrong,))
    w.install("invalid.select", "stripe", "configured", {"apiKey": seal(live), "region": "mars"},
              expect=[("field.invalid", "region")])
    w.install("invalid.url-pattern", "stripe", "configured", {
        "apiKey": seal(live), "region": "us", "webhookUrl": "http://insecure.example.com/hook",
        "accountEmail": "not-an-email"},
        expect=[("field.invalid", "webhookUrl"), ("field.invalid", "accountEmail")])
    w.install("invalid.number", "mailer", "configured", {"host": "smtp.example.com", "port": "five-eight-seven"},
              expect=[("field.invalid", "port")])
    w.install("invalid.pattern-on-installed", "slack", "installed", {"channel": "general"},
              expect=[("field.invalid", "channel")])
    hidden = seal("plain description that was encrypted")
    s.add("plain description that was encrypted")
    w.install("unexpected-ciphertext", "stripe", "configured", {"apiKey": seal(live), "region": "us", "description": hidden},
              expect=[("field.unexpected-ciphertext", "description")], secrets=(hidden,))
    plain_secret = "sk_live_PLAINTEXTabcdef123456"
    s.add(plain_secret)
    w.install("secret.plaintext", "stripe", "configured", {"apiKey": plain_secret, "region": "us"},
              expect=[("secret.plaintext", "apiKey")])
    spaces = "   "
    w.install("secret.plaintext-blank", "mailer", "configured", {"smtpPassword": spaces},
              expect=[("secret.plaintext", "smtpPassword")])
    good = seal(live)
    s.add(good)
    iv, tag, body = good.split(":")
    short_iv, short_tag, bad_hex = f"{iv[:20]}:{tag}:{body}", f"{iv}:{tag[:24]}:{body}", f"{iv}:{tag}:{body[:-2]}zz"
    s.update({short_iv, short_tag, bad_hex})
    w.install("malformed.iv", "stripe", "configured", {"apiKey": short_iv, "region": "us"},
              expect=[("secret.malformed", "apiKey")])
    w.install("malformed.tag", "slack", "configured", {"botToken": short_tag, "channel": "#ops"},
              expect=[("secret.malformed", "botToken")])
    w.install("malformed.hex", "stripe", "installed", {"webhookSecret": bad_hex},
              expect=[("secret.malformed", "webhookSecret")])
    foreign = seal(live, OTHER_KEY)
    w.install("undecryptable.other-key", "stripe", "configured", {"apiKey": foreign, "region": "eu"},
              expect=[("secret.undecryptable", "apiKey")], secrets=(foreign,))
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    w.install("undecryptable.tampered", "slack", "configured", {"botToken": tampered, "channel": "#ops"},
              expect=[("secret.undecryptable", "botToken")], secrets=(tampered,))
    garbage = seal(b"\xff\xfe\xfa not utf-8")
    w.install("undecryptable.not-utf8", "mailer", "configured", {"smtpPassword": garbage},
              expect=[("secret.undecryptable", "smtpPassword")], secrets=(garbage,))
    stale = seal(slack_token, PREVIOUS_KEY)
    w.install("stale-key", "slack", "configured", {"botToken": stale, "channel": ""},
              expect=[("secret.stale-key", "botToken"), ("field.missing", "channel")], secrets=(stale,))
    reused_iv = bytes(range(100, 116))
    s.update({reused_iv.hex(), reused_iv[:12].hex()})  # no IV in a message either
    first, second = seal("reuse one", iv=reused_iv), seal("reuse two", iv=reused_iv)
    s.update({"reuse one", "reuse two"})
    w.install("nonce.1", "stripe", "configured", {"apiKey": first, "region": "us"},
              expect=[("secret.nonce-reuse", "apiKey")], secrets=(first,))
    w.install("nonce.2", "slack", "configured", {"botToken": second, "channel": "#alerts"},
              expect=[("secret.nonce-reuse", "botToken")], secrets=(second,))
    third = seal("reuse three", iv=reused_iv[:12])  # 12-byte IV reused twice in one installation
    fourth = seal("reuse four", iv=reused_iv[:12])
    s.update({"reuse three", "reuse four"})
    w.install("nonce.same-row", "stripe", "configured", {"apiKey": third, "webhookSecret": fourth, "region": "eu"},
              expect=[("secret.nonce-reuse", "apiKey"), ("secret.nonce-reuse", "webhookSecret")],
              secrets=(third, fourth))
    w.install("not-configured", "stripe", "installed", {"apiKey": seal(live), "region": "us"},
              expect=[("status.not-configured", None)])
    w.install("not-configured.no-required", "mailer", "installed", {"host": "smtp.example.com"},
              expect=[("status.not-configured", None)])
    w.install("timestamps", "hooks", "configured", {"endpoint": "https://t.example.com"},
              installed_at="2024-05-01 12:00:00", updated_at="2024-04-30 08:00:00",
              expect=[("installation.timestamps", None)])
    w.install("timestamps.null", "hooks", "configured", {"endpoint": "https://t.example.com"},
              installed_at=None, updated_at=T1)  # unknown order: no finding

    # ---- users ------------------------------------------------------------------------
    alice, alice_upper = w.user("alice@example.com"), w.user("Alice@Example.COM")
    w.user("bob@example.com")
    for user_id in (alice, alice_upper):
        w.planted.expected.add(("user.email-case-duplicate", None, user_id, None))
    del stale_same_iv
    return w.planted
