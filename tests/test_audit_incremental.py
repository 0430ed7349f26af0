"""`toolkit audit --incremental` equals a full audit, reading only what changed.

    1. the app (Node, through PgBouncer) mutates a saved database: fixes, deletes, breaks clean
       rows, repeats an untouched row's IV, adds a case-colliding email -> the incremental audit
       equals a full one, reads only the changed rows, says "mode": "incremental"; after a
       registry change it falls back (one line) and equals a full audit with the new registry
    2. a write in flight (inside a savepoint) when the saved snapshot was taken is read next time
    3. property: random inserts, updates, deletes, repeated IVs, colliding emails, emails
       changed and users deleted between incremental audits (psycopg2 as the app) -> always the
       full audit's findings; once with the saved base never compacted (every run adds to the
       overlay, the base stays the first run's), once compacted at every change
"""

from __future__ import annotations

import contextlib
import json

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_e2e_app import (  # noqa: F401 — fixtures used by name
    CLEAN,
    CLEAN_IV12,
    INTEGRATIONS,
    K1,
    K2,
    app,
    audit_json,
    databases,
    seed,
    stored,
    toolkit,
)
from toolkit.audit import run_audit
from toolkit.audit.incremental import audit as audit_and_save
from toolkit.audit.store import AuditStore
from toolkit.crypto import Keyring
from toolkit.db import open_postgres
from toolkit.registry import parse_registry

PREVIOUS = {"ENCRYPTION_KEY_PREVIOUS": K2}


def quiet_base(store_path) -> bool:
    """Was no write transaction open anywhere on the server when the newest saved snapshot was
    taken? Then exactly the changed rows are read again; else rows written since the oldest
    open one are too (conservative on purpose, see sql.changed_since_condition). The test
    server is shared, so the exact count is asserted only when the base was quiet."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(store_path)) as db:
        text = db.execute("SELECT snapshot FROM state ORDER BY run_id DESC LIMIT 1").fetchone()[0]
    return text.split(":")[2] == ""


def settle(store_path) -> None:
    """Make the saved snapshot's xmin its xmax: exact when no write to this (the test's own)
    database was in flight when it was taken — every write here committed before the audit.
    Other sessions' open transactions on the shared server (which hold the xmin back) then no
    longer make every row of the test look changed: the shortcuts are tested, not bypassed."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(store_path)) as db, db:
        db.execute("UPDATE state SET xmin = xmax")


def keyed(report) -> set[tuple]:
    return {(f["code"], f["installation_id"], f["field"]) for f in report["findings"]}


# ---- 1. the app mutates a saved database ---------------------------------------------------

def test_incremental_after_the_app_changed_the_database_equals_a_full_audit(app, toolkit, databases, tmp_path):
    users, ids = seed(app, CLEAN)
    _, more = seed(app.with_keys(K1, iv_length=12), CLEAN_IV12, users)
    ids.update(more)
    broken = app.run([
        {"op": "createUser", "email": "dave@example.com"},
        {"op": "insertRaw", "userEmail": "dave@example.com", "appId": "twilio", "status": "configured",
         "config": {"accountSid": "AC" + "0" * 32, "authToken": "hunter2", "region": "us1"}},
        {"op": "install", "userEmail": "dave@example.com", "appId": "sendgrid", "status": "configured",
         "config": {"apiKey": "SG.key", "fromEmail": "not-an-email"}},
        {"op": "install", "userEmail": "dave@example.com", "appId": "widget", "status": "configured",
         "config": {"enabled": "true"}},
    ])
    dave_twilio, dave_sendgrid, dave_widget = (r["id"] for r in broken[1:])
    before, _ = audit_json(toolkit, **PREVIOUS)
    assert {("secret.plaintext", dave_twilio, "authToken"), ("field.invalid", dave_sendgrid, "fromEmail"),
            ("field.missing", dave_widget, "color")} <= keyed(before)

    untouched_iv = stored(databases[0], ids["vault-iv12"])["primaryKey"].split(":")[0]
    app.run([
        # fixes
        {"op": "update", "id": dave_twilio, "changes": {"authToken": "tw-fixed"}},
        {"op": "update", "id": dave_sendgrid, "changes": {"fromEmail": "dave@example.com"}},
        # deletes: a row with a finding, a clean row
        {"op": "uninstall", "id": dave_widget},
        {"op": "uninstall", "id": ids["webhooks"]},
        # breaks clean rows: a plaintext secret, a missing required field
        {"op": "writeRaw", "id": ids["twilio"], "config": {**stored(databases[0], ids["twilio"]), "authToken": "oops"}},
        {"op": "update", "id": ids["sendgrid"], "changes": {"fromEmail": None}},
        # a user whose email collides, ignoring case
        {"op": "createUser", "email": "ALICE@example.com"},
    ])
    app.with_keys(K2).one("update", id=ids["vault"], changes={"primaryKey": "under-the-old-key"})  # an old-key secret
    repeat = app.with_keys(K1, iv_length=12, FIXED_IV=untouched_iv).run([
        {"op": "createUser", "email": "frank@example.com"},
        {"op": "install", "userEmail": "frank@example.com", "appId": "vault", "status": "configured",
         "config": {"primaryKey": "same-iv-as-carol"}},
    ])
    frank_vault = repeat[1]["id"]

    quiet = quiet_base(tmp_path / "state" / "audits.sqlite3")
    result = toolkit("audit", "--format", "json", "--no-progress", "--incremental", **PREVIOUS)
    assert result.returncode == 1, result.stderr
    incremental = json.loads(result.stdout)
    full, _ = audit_json(toolkit, "--no-save", **PREVIOUS)
    assert result.stderr == ""  # no fallback
    assert incremental["findings"] == full["findings"]
    assert incremental["summary"]["mode"] == "incremental" and full["summary"]["mode"] == "full"
    # Read again: the two fixed rows, the two broken ones, the old-key one and the new one.
    assert incremental["summary"]["rows_read"] == 6 if quiet else incremental["summary"]["rows_read"] >= 6
    assert incremental["summary"]["installations"] == full["summary"]["installations"]
    for same in ("codes", "filters", "by_code", "by_severity", "by_app"):  # the question asked, and the answer
        assert incremental["summary"][same] == full["summary"][same], same
    found = keyed(incremental)
    assert {("secret.plaintext", ids["twilio"], "authToken"), ("secret.stale-key", ids["vault"], "primaryKey"),
            ("field.missing", ids["sendgrid"], "fromEmail"), ("secret.nonce-reuse", frank_vault, "primaryKey"),
            ("secret.nonce-reuse", ids["vault-iv12"], "primaryKey")} <= found
    assert not {f for f in found if f[1] in (dave_twilio, dave_sendgrid, dave_widget, ids["webhooks"])}
    assert sum(f["code"] == "user.email-case-duplicate" for f in incremental["findings"]) == 2

    # Another registry: the saved state does not fit it -> a full audit, said in one line.
    registry = json.loads(INTEGRATIONS.read_text())
    registry["widget"]["fields"][2]["required"] = True  # greeting becomes required
    registry["sendgrid"]["fields"] = registry["sendgrid"]["fields"][:3]  # template becomes unknown
    changed = tmp_path / "registry.json"
    changed.write_text(json.dumps(registry))
    result = toolkit("audit", "--format", "json", "--no-progress", "--incremental",
                     TOOLKIT_REGISTRY=str(changed), **PREVIOUS)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "the registry changed" in result.stderr
    fallback = json.loads(result.stdout)
    full, _ = audit_json(toolkit, "--no-save", TOOLKIT_REGISTRY=str(changed), **PREVIOUS)
    assert fallback["summary"]["mode"] == "full" and fallback["findings"] == full["findings"]
    assert ("field.unknown", ids["sendgrid"], "template") in keyed(full)
    # ... and that full run is the next incremental one's base.
    again, _ = audit_json(toolkit, "--incremental", TOOLKIT_REGISTRY=str(changed), **PREVIOUS)
    assert again["summary"]["mode"] == "incremental"
    assert again["findings"] == full["findings"]


# ---- the Python API, psycopg2 as the app ---------------------------------------------------------

REGISTRY = parse_registry({
    "svc": {"name": "Service", "fields": [
        {"key": "token", "label": "Token", "type": "password", "required": True},
        {"key": "hook", "label": "Hook", "type": "url"},
        {"key": "mode", "label": "Mode", "type": "select", "options": ["a", "b"], "required": True},
    ]},
    "vault": {"name": "Vault", "fields": [{"key": "key", "label": "Key", "type": "password"}]},
})
CURRENT = Keyring.from_materials([bytes.fromhex(K1), bytes.fromhex(K2)])  # the toolkit's keyring
APP_KEYS = {"current": Keyring.from_materials([bytes.fromhex(K1)]), "old": Keyring.from_materials([bytes.fromhex(K2)])}


class Harness:
    """A database, a store, and the audits to compare."""

    def __init__(self, url, store_path):
        self.url = url
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True
        self.database = open_postgres(url)
        self.store_path = store_path
        self.users = 0
        self.lines: list[str] = []
        self.touched: set[int] = set()  # installations written since the last audit

    def sql(self, statement, params=()):
        with self.connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None

    def audit(self, incremental=True):
        with AuditStore(self.store_path) as store:
            return audit_and_save(self.database, REGISTRY, CURRENT, store=store, incremental=incremental,
                                  jobs=1, warn=self.lines.append)

    def full(self):
        return run_audit(self.database, REGISTRY, CURRENT, jobs=1)

    def close(self):
        self.database.close()
        self.connection.close()


def _config(kind: str, iv: bytes | None = None) -> dict:
    keyring = APP_KEYS["old" if kind == "old-key" else "current"]
    config = {"token": keyring.encrypt("s3cret", iv=iv), "mode": "a", "hook": "https://example.com/h"}
    if kind == "plaintext":
        config["token"] = "hunter2"
    elif kind == "missing":
        del config["mode"]
    elif kind == "invalid":
        config["hook"] = "not a url"
    return config


def _apply(h: Harness, op) -> None:
    kind, target, variant, savepoint = op
    ids = [row[0] for row in h.sql("SELECT id FROM app_installations ORDER BY id")]
    tokens = [row[0] for row in h.sql("SELECT config->>'token' FROM app_installations WHERE config->>'token' LIKE %s ORDER BY id",
                                         ("%:%:%",))]
    statements = []
    if kind == "insert" or not ids:
        h.users += 1
        iv = bytes.fromhex(tokens[target % len(tokens)].split(":")[0]) if variant == "repeat-iv" and tokens else None
        statements.append(("INSERT INTO users (email) VALUES (%s) RETURNING id", (f"user{h.users}@example.com",)))
        statements.append(("INSERT INTO app_installations (user_id, app_id, status, config) VALUES"
                           " ((SELECT max(id) FROM users), %s, 'configured', %s) RETURNING id",
                           ("svc", json.dumps(_config(variant, iv)))))
    elif kind == "update":
        iv = bytes.fromhex(tokens[target % len(tokens)].split(":")[0]) if variant == "repeat-iv" and tokens else None
        statements.append(("UPDATE app_installations SET config = %s, updated_at = now() WHERE id = %s RETURNING id",
                           (json.dumps(_config(variant, iv)), ids[target % len(ids)])))
    elif kind == "delete":
        statements.append(("DELETE FROM app_installations WHERE id = %s", (ids[target % len(ids)],)))
    elif kind == "collide":
        email = h.sql("SELECT email FROM users ORDER BY id LIMIT 1 OFFSET %s",
                      (target % max(1, h.users),))
        if email:
            h.users += 1
            statements.append(("INSERT INTO users (email) VALUES (%s)", (email[0][0].upper(),)))
    elif kind == "recase":  # a user takes another's email, upper-cased: leaves one group, joins another
        users = [row[0] for row in h.sql("SELECT id FROM users ORDER BY id")]
        if len(users) >= 2:
            mover, other = users[target % len(users)], users[(target + 1) % len(users)]
            statements.append(("UPDATE users SET email = upper((SELECT email FROM users WHERE id = %s))"
                               " WHERE id = %s", (other, mover)))
    elif kind == "drop-user":  # its installations go with it (ON DELETE CASCADE)
        users = [row[0] for row in h.sql("SELECT id FROM users ORDER BY id")]
        if users:
            statements.append(("DELETE FROM users WHERE id = %s", (users[target % len(users)],)))
    written = set()
    with h.connection.cursor() as cursor:
        cursor.execute("BEGIN")
        if savepoint:  # a subtransaction's xid on the row (what pg_visible_in_snapshot misjudges)
            cursor.execute("SAVEPOINT s")
        for statement, params in statements:
            try:
                cursor.execute(statement, params)
                if statement.startswith(("INSERT INTO app_installations", "UPDATE app_installations")):
                    written.update(row[0] for row in cursor.fetchall())
            except psycopg2.errors.UniqueViolation:  # an upper-cased email already there
                cursor.execute("ROLLBACK")
                return
        if savepoint:
            cursor.execute("RELEASE s")
        cursor.execute("COMMIT")
    h.touched |= written


OPS = st.tuples(
    st.sampled_from(["insert", "insert", "update", "update", "delete", "collide", "recase", "drop-user", "audit"]),
    st.integers(0, 50),
    st.sampled_from(["clean", "plaintext", "old-key", "missing", "invalid", "repeat-iv", "repeat-iv"]),
    st.booleans(),
)


def base_run(store_path) -> int:
    """The run that wrote the saved base (an incremental run below COMPACT_SHARE keeps it)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(store_path)) as db:
        return db.execute("SELECT run_id FROM state_base").fetchone()[0]


@pytest.mark.parametrize("compact_share", [float("inf"), 0.0], ids=["overlay", "compacted"])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(OPS, min_size=4, max_size=14))
def test_property_incremental_always_equals_full(pg_url, tmp_path_factory, monkeypatch, compact_share, ops):
    from toolkit.audit import incremental

    monkeypatch.setattr(incremental, "COMPACT_SHARE", compact_share)
    h = Harness(pg_url, tmp_path_factory.mktemp("store") / "audits.sqlite3")
    try:
        h.sql("TRUNCATE users, app_installations RESTART IDENTITY CASCADE")
        for n in range(4):
            _apply(h, ("insert", n, ["clean", "plaintext", "repeat-iv", "clean"][n], False))
        _apply(h, ("collide", 0, "clean", False))  # a duplicate group to start from
        assert h.audit(incremental=False).meta["mode"] == "full"
        settle(h.store_path)
        first = base_run(h.store_path)
        h.touched.clear()
        for op in ops + [("audit", 0, "clean", False)]:
            if op[0] != "audit":
                _apply(h, op)
                continue
            existing = {row[0] for row in h.sql("SELECT id FROM app_installations")}
            report = h.audit()
            settle(h.store_path)
            assert h.lines == [] and report.meta["mode"] == "incremental"
            assert report.meta["rows_read"] == len(h.touched & existing)
            h.touched.clear()
            assert [f.to_dict() for f in report.findings] == [f.to_dict() for f in h.full().findings]
            if compact_share == float("inf"):
                assert base_run(h.store_path) == first  # the overlay path, run after run
    finally:
        h.close()


# ---- 2. a write in flight when the snapshot was taken -------------------------------------------

def test_a_write_in_flight_during_the_saved_audit_is_read_next_time(pg_url, tmp_path):
    h = Harness(pg_url, tmp_path / "audits.sqlite3")
    other = psycopg2.connect(pg_url)
    try:
        _apply(h, ("insert", 0, "clean", False))
        with other.cursor() as cursor:  # begun before the saved audit, committed after it
            cursor.execute("SAVEPOINT s")
            cursor.execute("INSERT INTO users (email) VALUES ('late@example.com')")
            cursor.execute("INSERT INTO app_installations (user_id, app_id, status, config) VALUES"
                           " ((SELECT id FROM users WHERE email = 'late@example.com'), 'svc', 'configured',"
                           " '{\"token\": \"plain\", \"mode\": \"a\"}')")
            cursor.execute("RELEASE s")
        assert h.audit(incremental=False).findings == []
        other.commit()
        report = h.audit()
        assert report.meta["mode"] == "incremental" and report.meta["rows_read"] >= 1
        assert [f.code for f in report.findings] == ["secret.plaintext"]
        assert report.findings == h.full().findings
    finally:
        other.close()
        h.close()


def test_filters_keep_their_own_state_and_an_email_filter_falls_back(pg_url, tmp_path):
    from toolkit.audit import Filters

    h = Harness(pg_url, tmp_path / "audits.sqlite3")
    try:
        for n, variant in enumerate(["clean", "plaintext", "missing"]):
            _apply(h, ("insert", n, variant, False))
        with AuditStore(h.store_path) as store:
            narrowed = Filters(codes=frozenset({"secret.plaintext"}))
            audit_and_save(h.database, REGISTRY, CURRENT, narrowed, store=store, jobs=1, warn=h.lines.append)
            _apply(h, ("update", 0, "plaintext", False))
            report = audit_and_save(h.database, REGISTRY, CURRENT, narrowed, store=store, incremental=True,
                                    jobs=1, warn=h.lines.append)
            assert report.meta["mode"] == "incremental" and h.lines == []
            assert report.findings == run_audit(h.database, REGISTRY, CURRENT, narrowed, jobs=1).findings
            # The unfiltered audit has no saved state yet.
            audit_and_save(h.database, REGISTRY, CURRENT, store=store, incremental=True, jobs=1, warn=h.lines.append)
            assert h.lines[-1].startswith("incremental audit not possible (no saved audit of this database with these filters)")
            by_email = Filters(users=("user1@example.com",))
            audit_and_save(h.database, REGISTRY, CURRENT, by_email, store=store, incremental=True, jobs=1,
                           warn=h.lines.append)
            assert "--user by email" in h.lines[-1]
    finally:
        h.close()


@pytest.mark.parametrize("aside", [True, False], ids=["aside", "in-line"])
def test_the_users_check_is_redone_for_the_groups_that_can_differ(pg_url, tmp_path, monkeypatch, aside):
    """A duplicate group that loses a user, one whose messages change, one formed by an email
    changed to another's: the incremental users' check (the groups of changed and of saved
    users only) equals the full GROUP BY, unfiltered and with --user (which runs the latter).
    Its query runs on a connection of its own beside the id pass, or (no URL to open one
    with) in the id pass's transaction."""
    from toolkit.audit import Filters
    from toolkit.audit.incremental import _Aside

    if not aside:
        monkeypatch.setattr(_Aside, "start", classmethod(lambda cls, database, query: None))

    h = Harness(pg_url, tmp_path / "audits.sqlite3")
    try:
        for email in ("a@example.com", "b@example.com", "B@example.com", "c@example.com", "C@example.com",
                      "c@EXAMPLE.com", "d@example.com"):
            h.sql("INSERT INTO users (email) VALUES (%s)", (email,))
        with AuditStore(h.store_path) as store:
            by_id = Filters(users=(2, 4))
            for filters in (Filters(), by_id):
                audit_and_save(h.database, REGISTRY, CURRENT, filters, store=store, jobs=1)
        settle(h.store_path)
        h.sql("DELETE FROM users WHERE id IN (3, 6)")
        h.sql("UPDATE users SET email = 'A@EXAMPLE.COM' WHERE id = 7")
        with AuditStore(h.store_path) as store:
            for filters in (Filters(), by_id):
                report = audit_and_save(h.database, REGISTRY, CURRENT, filters, store=store, incremental=True,
                                        jobs=1, warn=h.lines.append)
                assert report.meta["mode"] == "incremental" and h.lines == []
                assert report.findings == run_audit(h.database, REGISTRY, CURRENT, filters, jobs=1).findings
                shown = {(f.user_id, f.message) for f in report.findings}
                expected = {(4, "email equals, ignoring case, that of user 5")}  # user 2's group is gone
                if filters == Filters():
                    expected |= {(5, "email equals, ignoring case, that of user 4"),
                                 (1, "email equals, ignoring case, that of user 7"),
                                 (7, "email equals, ignoring case, that of user 1")}
                assert shown == expected
    finally:
        h.close()
