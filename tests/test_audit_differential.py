"""The audit's fast path (`row_auditor.Auditor`, and the engine around it on PostgreSQL and SQLite)
reports exactly the findings of the plain rules (`checks.installation_problems`), on random
registries and configs: values under the current key, a previous key and an unknown key
(12- and 16-byte IVs), damaged ciphertexts, plaintext with colons, odd JSON (DESIGN §8)."""

from __future__ import annotations

import collections
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings, strategies as st

from toolkit import db
from toolkit.audit import checks
from toolkit.audit.engine import run_audit
from toolkit.audit.row_auditor import Auditor
from toolkit.crypto import Keyring
from toolkit.registry import check_value, parse_registry

CURRENT, PREVIOUS, UNKNOWN = (bytes([n]) * 32 for n in (1, 2, 3))
KEYRING = Keyring.from_materials([CURRENT, PREVIOUS])
ACROSS_ROWS = {"secret.nonce-reuse", "user.email-case-duplicate"}  # not per-row rules
FIELD_KEYS = ("apiKey", "token", "region", "hook", "email", "port", "note", "pin")
PATTERNS = (None, None, "^[a-z]+$", "[0-9]{3}", "^https://")


def seal(key: bytes, plaintext: bytes, iv_length: int) -> str:
    iv = os.urandom(iv_length)
    sealed = AESGCM(key).encrypt(iv, plaintext, None)
    return f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"


def damage(value: str, how: int) -> str:
    iv, tag, body = value.split(":")
    return [f"{iv}:{tag[:-1]}g:{body}", f":{tag}:{body}", f"{value}:00", f"{iv[:20]}:{tag}:{body}",
            f"{iv}:{tag[:30]}:{body}", f" {value}\n", value.upper()][how]


PLAINTEXTS = st.sampled_from([b"sk_live_1", b"", "clé 🔑".encode(), b"\xff\xfe", b"abc", b"123", b"https://x.io"])
SEALED = st.builds(seal, st.sampled_from([CURRENT, PREVIOUS, UNKNOWN]), PLAINTEXTS, st.sampled_from([12, 16]))
STRINGS = st.one_of(
    st.sampled_from(["", "us", "eu", "https://hooks.example.com/x", "http://", "not a url", "a@b.co", "bad@",
                     "42", "4x", "1e999", "abc", "123", "hunter2", "a:b:c with colons", "Summer:2024:Pass!", "  "]),
    # jsonb refuses NUL and lone surrogates; the SQLite/text-level cases live in test_audit_planted.
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6),
    SEALED,
    st.builds(damage, SEALED, st.integers(0, 6)),
)
VALUES = st.one_of(STRINGS, STRINGS, st.integers(), st.none(), st.booleans(), st.just([1]), st.just({"a": {}}))


@st.composite
def registries(draw):
    apps = {}
    for app_id in draw(st.lists(st.sampled_from(["stripe", "slack", "crm"]), min_size=1, max_size=3, unique=True)):
        fields = []
        for key in draw(st.lists(st.sampled_from(FIELD_KEYS), min_size=1, max_size=5, unique=True)):
            kind = draw(st.sampled_from(["text", "textarea", "password", "password", "url", "email", "number", "select"]))
            field = {"key": key, "label": key, "type": kind, "required": draw(st.booleans())}
            pattern = draw(st.sampled_from(PATTERNS))
            if pattern:
                field["pattern"] = pattern
            if kind == "select":
                field["options"] = ["us", "eu"]
            fields.append(field)
        apps[app_id] = {"name": app_id.title(), "fields": fields}
    return parse_registry(apps)


CONFIGS = st.one_of(
    st.dictionaries(st.sampled_from(FIELD_KEYS + ("extra", "legacyToken")), VALUES, max_size=6),
    st.dictionaries(st.sampled_from(FIELD_KEYS + ("extra", "legacyToken")), VALUES, max_size=6),
    st.sampled_from([None, [], "text", 7, [{"apiKey": "x"}]]),
)
ROWS = st.lists(st.tuples(st.sampled_from(["stripe", "slack", "crm", "gone-app"]), st.sampled_from(["installed", "configured"]), CONFIGS),
                min_size=1, max_size=10)


def expected(registry, rows) -> collections.Counter:
    """The plain rules, per row: Counter of (installation_id, code, field, message)."""
    found = collections.Counter()
    for installation_id, (app_id, status, config) in rows:
        config = checks.load_config(None if config is None else json.dumps(config))
        for code, field, message in checks.installation_problems(
                registry.get(app_id), app_id, status, config, KEYRING, check_value):
            found[(installation_id, code, field, message)] += 1
    return found


def observed(findings) -> collections.Counter:
    return collections.Counter((f.installation_id, f.code, f.field, f.message)
                               for f in findings if f.code not in ACROSS_ROWS)


@settings(max_examples=600, deadline=None)
@given(registries(), ROWS)
def test_auditor_equals_the_plain_rules(registry, rows):
    auditor = Auditor(registry, KEYRING)
    numbered = list(enumerate(rows, start=1))
    for installation_id, (app_id, status, config) in numbered:
        auditor.audit(installation_id, installation_id, app_id, status, None,
                      None if config is None else json.dumps(config))
    got = collections.Counter((i, code, field, message) for code, i, _, _, field, message in auditor.findings
                              if code not in ACROSS_ROWS)
    assert got == expected(registry, numbered)


def _insert(database, rows) -> list[tuple[int, tuple]]:
    numbered = []
    for n, (app_id, status, config) in enumerate(rows):
        user = database.execute_sql("INSERT INTO users (email) VALUES (%s) RETURNING id".replace("%s", _mark(database)),
                                    (f"u{n}@example.com",)).fetchone()[0]
        text = None if config is None else json.dumps(config)
        installation = database.execute_sql(
            "INSERT INTO app_installations (user_id, app_id, status, config) VALUES ({0}, {0}, {0}, {0}) RETURNING id"
            .format(_mark(database)), (user, app_id, status, text)).fetchone()[0]
        numbered.append((installation, (app_id, status, config)))
    return numbered


def _mark(database) -> str:
    return "%s" if db.is_postgres(database) else "?"


@pytest.mark.postgres
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(registry=registries(), rows=ROWS)
def test_engine_on_postgres_equals_the_plain_rules(pg_url, registry, rows):
    database = db.open_postgres(pg_url)
    try:
        with database.atomic():
            database.execute_sql("TRUNCATE users, app_installations RESTART IDENTITY CASCADE")
            numbered = _insert(database, rows)
        for jobs in (1, 2):  # the in-process COPY sink, and forked workers over id ranges
            report = run_audit(database, registry, KEYRING, jobs=jobs)
            assert observed(report.findings) == expected(registry, numbered)
    finally:
        database.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(registry=registries(), rows=ROWS)
def test_engine_on_sqlite_equals_the_plain_rules(tmp_path_factory, registry, rows):
    database = db.open_sqlite(tmp_path_factory.mktemp("diff") / "audit.sqlite")
    try:
        db.create_tables(database)
        with database.atomic():
            numbered = _insert(database, rows)
        report = run_audit(database, registry, KEYRING)
        assert observed(report.findings) == expected(registry, numbered)
    finally:
        database.close()


def test_the_inputs_reach_every_code():
    """The strategies are worth something only if the rules fire on them (a sanity check of
    the generator, not of the audit)."""
    registry = parse_registry({"stripe": {"name": "S", "fields": [
        {"key": "apiKey", "label": "k", "type": "password", "required": True},
        {"key": "region", "label": "r", "type": "select", "options": ["us"], "required": True}]}})
    config = {"apiKey": seal(PREVIOUS, b"x", 12), "region": seal(CURRENT, b"us", 16), "legacyToken": seal(PREVIOUS, b"t", 16)}
    codes = {code for _, code, _, _ in expected(registry, [(1, ("stripe", "configured", config))])}
    assert codes == {"secret.stale-key", "field.unexpected-ciphertext", "field.unknown"}
