"""The config service's writes on real PostgreSQL and on SQLite (the demo database's engine):
validation before writing (and nothing written when refused), encryption of password
fields (decrypted by the app's own Node code), status rules, the unique index, and
compare-and-swap against a second real connection."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from toolkit.writes.configs import AlreadyInstalled, ConfigService, utc_now
from toolkit.crypto import Keyring
from toolkit.db import User, create_tables, open_postgres, open_sqlite
from toolkit.errors import ConfigValidationError, ConflictError, NotFound, UsageError
from toolkit.registry import load_registry

FIXTURES = Path(__file__).parent / "fixtures" / "registries"
NODE_CRYPTO = Path(__file__).with_name("node_crypto.js")
KEY_HEX = secrets.token_hex(32)
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123000)


class Clock:
    """Deterministic timestamps: T0, T0 + 1 s, … (and a hook to act between read and write)."""

    def __init__(self):
        self.ticks = 0
        self.on_tick = None

    def __call__(self):
        if self.on_tick is not None:
            hook, self.on_tick = self.on_tick, None
            hook()
        self.ticks += 1
        return T0 + dt.timedelta(seconds=self.ticks - 1)


@pytest.fixture(scope="module")
def registry():
    return load_registry(FIXTURES / "valid.json")


@pytest.fixture(scope="module")
def keyring():
    return Keyring.from_materials([bytes.fromhex(KEY_HEX)])


class Backend:
    """A database under test, plus a way to open a second, independent connection."""

    def __init__(self, kind, open_connection):
        self.kind = kind
        self._open = open_connection
        self.db = open_connection()
        self._others = []

    def other(self):
        database = self._open()
        self._others.append(database)
        return database

    def close(self):
        for database in [self.db, *self._others]:
            database.close()

    # Raw SQL through any connection: the tests look at the row, not at the service.
    def row(self, installation_id, database=None):
        database = database or self.other()
        config = "config::text" if self.kind == "postgres" else "config"
        sql = f"SELECT id, user_id, app_id, status, {config}, installed_at, updated_at FROM app_installations WHERE id = {database.param}"
        row = database.execute_sql(sql, (installation_id,)).fetchone()
        if row is None:
            return None
        row = list(row)
        row[4] = json.loads(row[4]) if row[4] is not None else None
        row[5], row[6] = (str(v)[:23] if v is not None else None for v in row[5:7])
        return tuple(row)

    def count(self):
        return self.other().execute_sql("SELECT count(*) FROM app_installations").fetchone()[0]

    def write_config(self, database, installation_id, config, status=None):
        """Another writer (autocommit) changes the row."""
        cast = "CAST({} AS jsonb)" if self.kind == "postgres" else "json({})"
        p = database.param
        sql = f"UPDATE app_installations SET config = {cast.format(p)}" + (f", status = {p}" if status else "") + f" WHERE id = {p}"
        params = (json.dumps(config),) + ((status,) if status else ()) + (installation_id,)
        database.execute_sql(sql, params)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "configs.db"
        backend = Backend("sqlite", lambda: open_sqlite(path))
        create_tables(backend.db)
    else:
        url = request.getfixturevalue("pg_url")
        backend = Backend("postgres", lambda: open_postgres(url))
    yield backend
    backend.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(backend, registry, keyring, clock):
    return ConfigService(backend.db, registry, keyring, clock=clock)


def add_user(backend, email="ops@example.com"):
    return User.insert(email=email, name="Ops", role="customer").execute(backend.db)


GOOD = {"apiKey": "sk_live_51HxYz", "region": "eu", "webhookUrl": "https://hooks.example.com/stripe"}


def node_decrypt(node_bin, values):
    result = subprocess.run(
        [node_bin, str(NODE_CRYPTO)],
        input=json.dumps([{"op": "decrypt", "value": v} for v in values]),
        capture_output=True, text=True, check=True, env={**os.environ, "ENCRYPTION_KEY": KEY_HEX},
    )
    return [r.get("ok", r.get("error")) for r in json.loads(result.stdout)]


# --- install ---

def test_install_encrypts_passwords_and_keeps_the_rest_plain(backend, service, keyring, node_bin):
    user_id = add_user(backend)
    installation = service.install(user_id, "stripe", GOOD)
    row = backend.row(installation.id)
    assert row[1:4] == (user_id, "stripe", "installed")
    stored = row[4]
    assert set(stored) == set(GOOD)
    assert stored["region"] == "eu" and stored["webhookUrl"] == GOOD["webhookUrl"]
    assert stored["apiKey"] != GOOD["apiKey"] and GOOD["apiKey"] not in json.dumps(stored)
    assert keyring.decrypt(stored["apiKey"]).secret.reveal() == GOOD["apiKey"]
    assert node_decrypt(node_bin, [stored["apiKey"]]) == [GOOD["apiKey"]]  # the app reads it
    assert row[5] == row[6] == "2024-05-01 12:00:00.123"
    assert installation.config == stored and installation.status == "installed"


def test_install_with_no_config(backend, service):
    installation = service.install(add_user(backend), "slack")
    assert backend.row(installation.id)[3:5] == ("installed", {})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"apiKey": "sk", "region": "mx"}, [("field.invalid", "region")]),
        ({"webhookUrl": "http://plain.example"}, [("field.invalid", "webhookUrl")]),
        ({"apiKey": 42}, [("config.non-string", "apiKey")]),
        ({"apiKey": "sk", "colour": "red"}, [("field.unknown", "colour")]),
    ],
)
def test_install_refuses_an_invalid_config_and_writes_nothing(backend, service, config, expected):
    user_id = add_user(backend)
    with pytest.raises(ConfigValidationError) as info:
        service.install(user_id, "stripe", config)
    assert [(p.code, p.field) for p in info.value.problems] == expected
    assert backend.count() == 0


def test_install_password_pattern_is_checked_on_the_plaintext(backend, service):
    with pytest.raises(ConfigValidationError) as info:
        service.install(add_user(backend), "slack", {"botToken": "not-a-slack-token"})
    assert [(p.code, p.field) for p in info.value.problems] == [("field.invalid", "botToken")]
    assert "not-a-slack-token" not in info.value.one_line()  # never the value
    assert backend.count() == 0


def test_install_unknown_app_and_unknown_user(backend, service):
    with pytest.raises(ConfigValidationError) as info:
        service.install(add_user(backend), "nope")
    assert info.value.message == "app 'nope' is not in the registry"
    assert info.value.problems[0].code == "app.unknown"
    with pytest.raises(NotFound, match="user 999 does not exist"):
        service.install(999, "stripe")
    assert backend.count() == 0


def test_install_twice_is_a_clear_error(backend, service):
    user_id = add_user(backend)
    first = service.install(user_id, "stripe", GOOD)
    before = backend.row(first.id)
    with pytest.raises(AlreadyInstalled) as info:
        service.install(user_id, "stripe", {"region": "us"})
    assert info.value.message == f"user {user_id} already has app 'stripe' installed (installation {first.id})"
    assert info.value.installation_id == first.id
    assert backend.row(first.id) == before and backend.count() == 1


def test_upsert_inserts_then_replaces_the_config(backend, service, keyring):
    user_id = add_user(backend)
    first = service.install(user_id, "stripe", {"region": "us", "webhookUrl": GOOD["webhookUrl"]}, upsert=True)
    second = service.install(user_id, "stripe", {"apiKey": "sk_new", "region": "eu"}, upsert=True)
    assert second.id == first.id and backend.count() == 1
    row = backend.row(first.id)
    assert set(row[4]) == {"apiKey", "region"} and row[4]["region"] == "eu"  # replaced, not merged
    assert keyring.decrypt(row[4]["apiKey"]).secret.reveal() == "sk_new"
    assert (row[5], row[6]) == ("2024-05-01 12:00:00.123", "2024-05-01 12:00:01.123")  # installed_at kept


def test_upsert_keeps_a_configured_installation_complete(backend, service):
    user_id = add_user(backend)
    installation = service.install(user_id, "stripe", GOOD)
    service.set_status(installation.id, "configured")
    before = backend.row(installation.id)
    with pytest.raises(ConfigValidationError) as info:
        service.install(user_id, "stripe", {"region": "us"}, upsert=True)
    assert [(p.code, p.field) for p in info.value.problems] == [("field.missing", "apiKey")]
    assert backend.row(installation.id) == before
    # A complete config replaces it and the status stays.
    service.install(user_id, "stripe", dict(GOOD, region="us"), upsert=True)
    assert backend.row(installation.id)[3] == "configured" and backend.row(installation.id)[4]["region"] == "us"


# --- update_config ---

def test_update_sets_encrypts_removes(backend, service, keyring, node_bin):
    installation = service.install(add_user(backend), "stripe", GOOD)
    updated = service.update_config(installation.id, {"apiKey": "sk_rotated_ü", "webhookUrl": None, "region": "us"})
    row = backend.row(installation.id)
    assert set(row[4]) == {"apiKey", "region"} and row[4]["region"] == "us"
    assert node_decrypt(node_bin, [row[4]["apiKey"]]) == ["sk_rotated_ü"]
    assert row[6] == "2024-05-01 12:00:01.123" and row[5] == "2024-05-01 12:00:00.123"
    assert updated.config == row[4]


def test_update_keeps_empty_values_plain_and_removing_a_missing_key_is_a_no_op(backend, service):
    installation = service.install(add_user(backend), "stripe", {"region": "us"})
    service.update_config(installation.id, {"apiKey": "", "webhookUrl": None})
    assert backend.row(installation.id)[4] == {"region": "us", "apiKey": ""}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"region": "mx"}, [("field.invalid", "region")]),
        ({"webhookUrl": "https://exa mple.com"}, [("field.invalid", "webhookUrl")]),
        ({"apiKey": ["x"]}, [("config.non-string", "apiKey")]),
        ({"colour": "red", "region": "us"}, [("field.unknown", "colour")]),
    ],
)
def test_update_refuses_invalid_changes_and_writes_nothing(backend, service, changes, expected):
    installation = service.install(add_user(backend), "stripe", GOOD)
    before = backend.row(installation.id)
    with pytest.raises(ConfigValidationError) as info:
        service.update_config(installation.id, changes)
    assert [(p.code, p.field) for p in info.value.problems] == expected
    assert backend.row(installation.id) == before


def test_update_refuses_a_ciphertext_as_a_password_value(backend, service, keyring):
    installation = service.install(add_user(backend), "stripe", GOOD)
    before = backend.row(installation.id)
    with pytest.raises(ConfigValidationError, match="already a ciphertext"):
        service.update_config(installation.id, {"apiKey": before[4]["apiKey"]})
    assert backend.row(installation.id) == before


def test_update_may_remove_keys_the_app_does_not_define(backend, service):
    installation = service.install(add_user(backend), "stripe", {"region": "us"})
    backend.write_config(backend.other(), installation.id, {"region": "us", "legacy": "x"})
    service.update_config(installation.id, {"legacy": None})
    assert backend.row(installation.id)[4] == {"region": "us"}


def test_update_cannot_clear_a_required_field_of_a_configured_installation(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    service.set_status(installation.id, "configured")
    before = backend.row(installation.id)
    for change in ({"apiKey": None}, {"region": ""}):
        with pytest.raises(ConfigValidationError) as info:
            service.update_config(installation.id, change)
        assert info.value.problems[0].code == "field.missing"
        assert "installed" in info.value.hint
    assert backend.row(installation.id) == before
    service.update_config(installation.id, {"webhookUrl": None})  # optional: fine


def test_update_of_a_missing_installation(service):
    with pytest.raises(NotFound, match="installation 4242 does not exist"):
        service.update_config(4242, {"region": "us"})


def test_update_refuses_a_stored_config_that_is_not_an_object(backend, service):
    installation = service.install(add_user(backend), "stripe")
    backend.write_config(backend.other(), installation.id, ["not", "an", "object"])
    with pytest.raises(ConfigValidationError, match="not a JSON object"):
        service.update_config(installation.id, {"region": "us"})


# --- set_status ---

def test_configured_needs_every_required_field(backend, service):
    installation = service.install(add_user(backend), "stripe", {"webhookUrl": GOOD["webhookUrl"]})
    before = backend.row(installation.id)
    with pytest.raises(ConfigValidationError) as info:
        service.set_status(installation.id, "configured")
    assert [(p.code, p.field) for p in info.value.problems] == [("field.missing", "apiKey"), ("field.missing", "region")]
    assert "apiKey" in info.value.message and "region" in info.value.message
    assert backend.row(installation.id) == before
    service.update_config(installation.id, {"apiKey": "sk_1", "region": "us"})
    done = service.set_status(installation.id, "configured")
    assert done.status == "configured" == backend.row(installation.id)[3]
    assert service.set_status(installation.id, "installed").status == "installed"


def test_configured_checks_stored_secrets_decrypt_and_are_valid(backend, service, keyring):
    """set_status("configured") refuses exactly what the audit would report as an error on
    the configured installation (the one per-installation rule), with the audit's codes."""
    installation = service.install(add_user(backend), "slack", {"channel": "#ops"})
    other = backend.other()
    cases = [
        ({"channel": "#ops", "botToken": "xoxb-plaintext"}, "secret.plaintext", "stored in plaintext"),
        ({"channel": "#ops", "botToken": "00" * 10 + ":" + "11" * 16 + ":22"}, "secret.malformed", "malformed ciphertext"),
        ({"channel": "#ops", "botToken": Keyring.from_materials([os.urandom(32)]).encrypt("xoxb-1")},
         "secret.undecryptable", "no key of the keyring"),
        ({"channel": "#ops", "botToken": keyring.encrypt("not-a-token")}, "field.invalid", "does not match the pattern"),
        ({"channel": "#ops", "botToken": keyring.encrypt("")}, "field.missing", "decrypts to an empty value"),
    ]
    for config, code, message in cases:
        backend.write_config(other, installation.id, config)
        with pytest.raises(ConfigValidationError) as info:
            service.set_status(installation.id, "configured")
        assert [(p.field, p.code) for p in info.value.problems] == [("botToken", code)]
        assert message in info.value.problems[0].message
        assert backend.row(installation.id)[3] == "installed"
    backend.write_config(other, installation.id, {"channel": "#ops", "botToken": keyring.encrypt("xoxb-1-abc"), "legacy": "x"})
    assert service.set_status(installation.id, "configured").status == "configured"  # unknown keys do not block


def test_set_status_refuses_unknown_statuses(backend, service):
    installation = service.install(add_user(backend), "stripe")
    with pytest.raises(UsageError, match="status must be one of installed, configured"):
        service.set_status(installation.id, "enabled")


# --- uninstall ---

def test_uninstall(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    service.uninstall(installation.id)
    assert backend.row(installation.id) is None
    with pytest.raises(NotFound):
        service.uninstall(installation.id)


# --- compare-and-swap: a change made between read and write is not lost ---

def test_update_with_a_stale_snapshot_is_refused_and_the_other_change_kept(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    snapshot = service.get(installation.id)  # what the operator's screen shows
    backend.write_config(backend.other(), installation.id, dict(snapshot.config, region="us"))  # someone else
    after_other = backend.row(installation.id)
    with pytest.raises(ConflictError) as info:
        service.update_config(installation.id, {"webhookUrl": None}, expected=snapshot)
    assert info.value.message == f"installation {installation.id} changed since it was read; re-read and try again"
    assert backend.row(installation.id) == after_other  # the other change is intact, nothing written
    # Re-read and try again: it goes through and keeps the other change.
    fresh = service.get(installation.id)
    service.update_config(installation.id, {"webhookUrl": None}, expected=fresh)
    assert backend.row(installation.id)[4]["region"] == "us" and "webhookUrl" not in backend.row(installation.id)[4]


def test_a_fresh_snapshot_is_accepted_and_the_result_is_the_next_snapshot(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    first = service.update_config(installation.id, {"region": "us"}, expected=installation)
    second = service.update_config(installation.id, {"region": "eu"}, expected=first)
    with pytest.raises(ConflictError):
        service.update_config(installation.id, {"region": "us"}, expected=first)
    assert backend.row(installation.id)[4]["region"] == "eu" == second.config["region"]


def test_status_change_by_someone_else_is_a_conflict(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    backend.write_config(backend.other(), installation.id, installation.config, status="configured")
    with pytest.raises(ConflictError):
        service.update_config(installation.id, {"apiKey": None}, expected=installation)
    with pytest.raises(ConflictError):
        service.set_status(installation.id, "installed", expected=installation)
    with pytest.raises(ConflictError):
        service.uninstall(installation.id, expected=installation)
    assert backend.row(installation.id)[3] == "configured" and "apiKey" in backend.row(installation.id)[4]


def test_any_object_with_id_config_status_is_a_snapshot(backend, service):
    """The dashboard passes InstallationView.as_read; only .id, .config, .status matter."""
    from types import SimpleNamespace

    installation = service.install(add_user(backend), "stripe", GOOD)
    seen = SimpleNamespace(id=installation.id, config=dict(installation.config), status="installed")
    service.update_config(installation.id, {"region": "us"}, expected=seen)
    with pytest.raises(ConflictError):
        service.update_config(installation.id, {"region": "eu"}, expected=seen)
    assert backend.row(installation.id)[4]["region"] == "us"


def test_an_empty_change_writes_nothing(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    before = backend.row(installation.id)
    assert service.update_config(installation.id, {}).config == installation.config
    assert backend.row(installation.id) == before


def test_snapshot_of_a_deleted_installation(backend, service):
    installation = service.install(add_user(backend), "stripe", GOOD)
    backend.other().execute_sql(f"DELETE FROM app_installations WHERE id = {installation.id}")
    with pytest.raises(NotFound, match="does not exist"):
        service.update_config(installation.id, {"region": "us"}, expected=installation)


def test_expected_must_be_the_same_installation(backend, service):
    user_id = add_user(backend)
    a = service.install(user_id, "stripe")
    b = service.install(user_id, "slack")
    with pytest.raises(UsageError, match=f"expected is installation {b.id}, not {a.id}"):
        service.update_config(a.id, {"region": "us"}, expected=b)


@pytest.mark.parametrize("with_snapshot", [False, True])
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_change_between_the_read_and_the_write_inside_one_call_is_not_lost(backend, service, clock, with_snapshot):
    """The service reads inside its transaction; a second connection commits a change right
    after that read (the clock hook runs between read and UPDATE). The CAS UPDATE (… WHERE
    config = <as read> AND status = <as read>) matches no row: ConflictError, and the other
    change stands."""
    installation = service.install(add_user(backend), "stripe", GOOD)
    other = backend.other()
    clock.on_tick = lambda: backend.write_config(other, installation.id, dict(installation.config, region="us"))
    with pytest.raises(ConflictError):
        service.update_config(installation.id, {"region": "eu", "webhookUrl": None},
                              expected=installation if with_snapshot else None)
    row = backend.row(installation.id)
    assert row[4]["region"] == "us" and row[4]["webhookUrl"] == GOOD["webhookUrl"]


def test_sqlite_write_holds_the_lock_from_read_to_write(tmp_path, registry, keyring):
    """On SQLite the same window is closed by BEGIN IMMEDIATE: a second writer waits for
    (or, with a short timeout, fails against) the service's transaction instead of slipping in."""
    import peewee

    path = tmp_path / "lock.db"
    db = open_sqlite(path)
    create_tables(db)
    user_id = User.insert(email="a@example.com").execute(db)
    clock = Clock()
    service = ConfigService(db, registry, keyring, clock=clock)
    installation = service.install(user_id, "stripe", GOOD)
    other = peewee.SqliteDatabase(str(path), timeout=0.2)
    failures = []

    def interfere():
        try:
            other.execute_sql("UPDATE app_installations SET status = 'configured' WHERE id = ?", (installation.id,))
        except peewee.OperationalError as exc:
            failures.append(str(exc))

    clock.on_tick = interfere
    service.update_config(installation.id, {"region": "us"})
    assert failures == ["database is locked"]
    assert service.get(installation.id).status == "installed"
    other.close()
    db.close()


# --- through the transaction pooler ---

def test_writes_through_pgbouncer(pg_url, pgbouncer_url, registry, keyring):
    db = open_postgres(pgbouncer_url(pg_url))
    try:
        user_id = User.insert(email="pool@example.com").execute(db)
        service = ConfigService(db, registry, keyring)
        installation = service.install(user_id, "stripe", GOOD)
        service.update_config(installation.id, {"region": "us"}, expected=installation)
        configured = service.set_status(installation.id, "configured")
        assert configured.status == "configured" and configured.config["region"] == "us"
    finally:
        db.close()


# --- timestamps ---

def test_default_clock_is_naive_utc_with_milliseconds():
    now = utc_now()
    assert now.tzinfo is None and now.microsecond % 1000 == 0
    assert abs(now - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)) < dt.timedelta(seconds=5)


# --- the SQL a write sends (peewee logs every statement at DEBUG) ---

def logged_statements(caplog, action):
    import logging

    with caplog.at_level(logging.DEBUG, logger="peewee"):
        action()
    return [record.msg for record in caplog.records if record.name == "peewee"]


def test_update_writes_through_the_store_compare_and_swap(backend, service, caplog):
    """The write is the store's statement (toolkit.db.installations, as rotation and repair
    write), conditioned on the whole row as read and stamped by the service's clock."""
    from toolkit.db import installations

    installation = service.install(add_user(backend), "stripe", GOOD)
    read = backend.row(installation.id)
    statements = logged_statements(caplog, lambda: service.update_config(installation.id, {"region": "us"}))
    verbs = [sql.split()[0] for sql, _ in statements]
    if backend.kind == "postgres":
        assert verbs == ["SELECT", "UPDATE", "SELECT"]  # read, CAS write, the returned row
        (update, (document,)) = statements[1]
        change = installations.Change(installation.id, patch={"region": "us"}, status=("installed", "installed"),
                                      whole=True, whole_config="{}", touch=T0)
        assert update == installations._pg_exact_sql([change])  # the store's statement
        (record,) = json.loads(document)
        assert record["w"] is True and record["c"] == read[4]  # the whole config as read …
        assert record["s0"] == "installed"  # … and the status as read
        assert record["p"] == {"region": "us"} and record["ts"] == "2024-05-01T12:00:01.123000"
    else:
        # read; the store's re-check and write (under the same BEGIN IMMEDIATE); the returned row
        assert verbs == ["SELECT", "SELECT", "UPDATE", "SELECT"]
        assert statements[1][0] == "SELECT status, config FROM app_installations WHERE id = ?"
        update, params = statements[2]
        assert update == "UPDATE app_installations SET config = ?, status = ?, updated_at = ? WHERE id = ?"
        assert params[1:] == ("installed", "2024-05-01 12:00:01.123000", installation.id)
    assert backend.row(installation.id)[6] == "2024-05-01 12:00:01.123"


def test_set_status_and_uninstall_write_through_the_store(backend, service, caplog):
    installation = service.install(add_user(backend), "stripe", GOOD)
    stored = backend.row(installation.id)[4]
    statements = logged_statements(caplog, lambda: service.set_status(installation.id, "configured"))
    (write,) = [sql for sql, _ in statements if not sql.startswith("SELECT")]
    if backend.kind == "postgres":
        assert "jsonb_to_recordset" in write and "t.status::text = v.s0" in write
    else:
        assert write.startswith("UPDATE app_installations SET config = ?, status = ?, updated_at = ?")
    assert backend.row(installation.id)[3:] == ("configured", stored, "2024-05-01 12:00:00.123", "2024-05-01 12:00:01.123")
    caplog.clear()
    statements = logged_statements(caplog, lambda: service.uninstall(installation.id))
    (delete,) = [sql for sql, _ in statements if not sql.startswith("SELECT")]
    assert delete.startswith("DELETE FROM app_installations WHERE id = ") and "status" in delete
    assert backend.row(installation.id) is None


@pytest.mark.parametrize("write", ["update_config", "set_status"])
def test_a_change_between_the_read_and_the_store_write_is_refused(backend, service, clock, write):
    """The service has read the row and validated; before the store's compare-and-swap runs
    (the clock hook: the timestamp is taken right before it), the row changes. PostgreSQL:
    another connection commits. SQLite: the service holds the only write lock from its read
    on, so no other connection can; the change is made on the service's own connection,
    inside its transaction, which the refusal then rolls back. Either way the store's
    condition (the whole row as read) does not hold: ConflictError, nothing of ours written."""
    installation = service.install(add_user(backend), "stripe", GOOD)
    before = backend.row(installation.id)
    writer = backend.other() if backend.kind == "postgres" else backend.db
    changed = dict(before[4], region="us")
    clock.on_tick = lambda: backend.write_config(writer, installation.id, changed)
    with pytest.raises(ConflictError) as info:
        if write == "update_config":
            service.update_config(installation.id, {"webhookUrl": None})
        else:
            service.set_status(installation.id, "configured")
    assert info.value.message == f"installation {installation.id} changed since it was read; re-read and try again"
    after = backend.row(installation.id)
    if backend.kind == "postgres":
        assert after == before[:4] + (changed,) + before[5:]  # theirs stands, ours is not there
    else:
        assert after == before


@pytest.mark.parametrize("write", ["update_config", "set_status"])
def test_a_row_deleted_between_the_read_and_the_store_write_is_not_found(backend, service, clock, write):
    installation = service.install(add_user(backend), "stripe", GOOD)
    writer = backend.other() if backend.kind == "postgres" else backend.db
    clock.on_tick = lambda: writer.execute_sql(f"DELETE FROM app_installations WHERE id = {installation.id}")
    with pytest.raises(NotFound, match=f"installation {installation.id} no longer exists"):
        if write == "update_config":
            service.update_config(installation.id, {"region": "us"})
        else:
            service.set_status(installation.id, "configured")


def test_delete_in_holds_only_for_the_row_as_read(backend, service):
    """uninstall's compare-and-swap, in a transaction the caller holds (as the service does)."""
    from toolkit.db import installations

    installation = service.install(add_user(backend), "stripe", GOOD)
    text = backend.db.execute_sql(
        "SELECT config::text FROM app_installations WHERE id = %s" if backend.kind == "postgres"
        else "SELECT config FROM app_installations WHERE id = ?", (installation.id,)).fetchone()[0]
    with backend.db.atomic():
        assert not installations.delete_in(backend.db, installation.id, text, "configured")  # status differs
        assert not installations.delete_in(backend.db, installation.id, text.replace('"eu"', '"us"'), "installed")
        assert not installations.delete_in(backend.db, installation.id, None, "installed")
    assert backend.row(installation.id) is not None
    with backend.db.atomic():
        assert installations.delete_in(backend.db, installation.id, text, "installed")
    assert backend.row(installation.id) is None


def test_update_of_a_null_config_writes_an_object(backend, service):
    """SQL NULL reads as no config; the store's patch makes it an object on both databases."""
    installation = service.install(add_user(backend), "stripe")
    backend.other().execute_sql(f"UPDATE app_installations SET config = NULL WHERE id = {installation.id}")
    service.set_status(installation.id, "installed")  # a status change keeps the config as it is
    assert backend.row(installation.id)[4] is None
    service.update_config(installation.id, {"region": "us"})
    assert backend.row(installation.id)[4] == {"region": "us"}


def test_writes_work_with_the_models_bound_globally(backend, service):
    """Every Context binds the models; JSONField's converter must not touch our SQL values."""
    from toolkit.db import bind, database_proxy

    previous = database_proxy.obj
    bind(backend.db)
    try:
        user_id = add_user(backend)
        installation = service.install(user_id, "stripe", GOOD)
        service.update_config(installation.id, {"region": "eu"})
        service.set_status(installation.id, "configured")
        assert backend.row(installation.id)[4]["region"] == "eu"
    finally:
        database_proxy.initialize(previous)
