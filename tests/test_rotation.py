"""Key rotation through the Python API on real PostgreSQL (and the SQLite store): what is
re-encrypted, what is left alone, and compare-and-swap against writes made between a page's
read and its write."""

from __future__ import annotations

import sqlite3

import psycopg2
import pytest

from test_rotation_seed import (
    LOST_KEY,
    NEW_KEY,
    OLD_KEY,
    OLDER_KEY,
    REGISTRY,
    insert_rows,
    keyring,
    open_under,
    rows,
    seal,
    seed_stripe,
)
from toolkit.writes import rewrite
from toolkit.keys import rotation
from toolkit.db import installations, open_postgres
from toolkit.errors import ConfigError
from toolkit.registry import parse_registry

NOT_UTF8 = b"\xff\xfe\x00 not utf-8 \xc3"


@pytest.fixture
def registry():
    return parse_registry(REGISTRY)


def test_rotates_every_value_under_previous_keys_wherever_it_sits(pg_url, registry):
    webhook_url_ciphertext = seal(OLD_KEY, "https://hooks.example.com/x")
    current_secret = seal(NEW_KEY, "wh_current")
    ids = insert_rows(pg_url, [
        {"app_id": "stripe", "config": {"apiKey": seal(OLD_KEY, "sk_old"), "webhookSecret": current_secret,
                                        "region": "eu", "webhookUrl": webhook_url_ciphertext}},
        {"app_id": "stripe", "config": {"apiKey": seal(OLD_KEY, NOT_UTF8, 12), "region": "us"}},
        {"app_id": "slack", "config": {"botToken": seal(OLDER_KEY, "xoxb-older"), "channel": "#ops"}},
        {"app_id": "stripe", "config": {"apiKey": seal(LOST_KEY, "sk_lost"), "webhookSecret": "whsec_plain", "region": "us"}},
        {"app_id": "stripe", "config": {"apiKey": "zz" + "0" * 30 + ":" + "0" * 32 + ":00", "webhookSecret": "", "region": "us"}},
        {"app_id": "stripe", "config": {"apiKey": 42, "region": "us"}},
        {"app_id": "legacy-crm", "config": {"token": seal(OLD_KEY, "t")}},
        {"app_id": "stripe", "config": ["apiKey"]},
        {"app_id": "stripe", "config": None},
    ])
    before = rows(pg_url)

    report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY, OLDER_KEY), batch_size=4)

    data = report.as_dict()
    assert data["values"] == {
        "rotated": 5, "rotated_from": {"previous #1": 4, "previous #2": 1}, "already_current": 1,
        "skipped": {"undecryptable": 1, "malformed": 2, "plaintext": 1},
    }
    assert data["rows"]["scanned"] == 9 and data["rows"]["changed"] == 4
    assert data["rows"]["unknown_app"] == 1 and data["rows"]["config_not_object"] == 1
    assert report.complete and data["conflicts"]["retried"] == 0
    after = rows(pg_url)
    first = after[ids[0]][1]
    assert open_under(NEW_KEY, first["apiKey"]) == b"sk_old"
    assert first["webhookSecret"] == current_secret  # already current: not rewritten
    # A ciphertext outside the password fields is a secret all the same: rotated, or the old key
    # could never be retired (a url field here; an app the registry no longer knows below).
    assert open_under(NEW_KEY, first["webhookUrl"]) == b"https://hooks.example.com/x"
    assert open_under(NEW_KEY, after[ids[6]][1]["token"]) == b"t"
    assert first["region"] == "eu"
    # The exact bytes, even when they are not UTF-8 (and the app's 16-byte IV, whatever the old one was).
    assert open_under(NEW_KEY, after[ids[1]][1]["apiKey"]) == NOT_UTF8
    assert open_under(NEW_KEY, after[ids[2]][1]["botToken"]) == b"xoxb-older"
    assert len(after[ids[2]][1]["botToken"].split(":")[0]) == 32
    for row_id in ids[3:6] + ids[7:]:
        assert after[row_id] == before[row_id]
    # Rotation changes no value the app reads: updated_at is left alone.
    assert all(after[i][2] == before[i][2] for i in ids)

    again = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY, OLDER_KEY))
    assert again.rotated == 0 and again.result.rows_changed == 0 and again.already_current == 6
    assert rows(pg_url) == after


def test_dry_run_counts_and_writes_nothing(pg_url, registry):
    seed_stripe(pg_url, 30)
    before = rows(pg_url)
    report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY), dry_run=True, batch_size=7,
                             workers=1)
    assert report.result.dry_run and report.rotated == 60 and report.result.rows_changed == 30
    assert report.result.batches == 5
    assert rows(pg_url) == before
    assert report.render().startswith("Dry run: would re-encrypt 60 values")


def test_include_current_reencrypts_with_fresh_ivs(pg_url, registry):
    value = seal(NEW_KEY, "sk_current")
    (row_id,) = insert_rows(pg_url, [{"app_id": "stripe", "config": {"apiKey": value, "region": "us"}}])
    report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY), include_current=True)
    assert report.rotated == 1 and report.as_dict()["values"]["rotated_from"] == {"current": 1}
    new_value = rows(pg_url)[row_id][1]["apiKey"]
    assert new_value.split(":")[0] != value.split(":")[0]
    assert open_under(NEW_KEY, new_value) == b"sk_current"


@pytest.mark.parametrize("keys, message", [
    ((NEW_KEY,), "ENCRYPTION_KEY_PREVIOUS is not set"),
    ((), "ENCRYPTION_KEY is not set"),
])
def test_keyrings_rotation_refuses(keys, message):
    with pytest.raises(ConfigError, match=message):
        rotation.check_keyring(keyring(*keys))


def test_sealer_matches_the_apps_format():
    ring = keyring(NEW_KEY, OLD_KEY)
    value = rotation.Sealer(ring)(b"hello")
    assert ring.inspect(value).kind == "current" and ring.inspect(value).plaintext == b"hello"
    values = {rotation.Sealer(ring)(b"x").split(":")[0] for _ in range(50)}
    assert len(values) == 50  # a fresh IV every time


# ---- compare-and-swap: the app writes between a page's read and its write ---------------

class AppWritesWhilePlanning:
    """Wraps the planner: the first time it sees row `target`, the app writes to that row
    (committed, from another connection) — after the page was read, before it is written."""

    def __init__(self, planner, target, write, times=1):
        self.planner, self.target, self.write, self.times = planner, target, write, times
        self.seen = 0

    def plan(self, row):
        if row.id == self.target and self.seen < self.times:
            self.seen += 1
            self.write(row.id)
        return self.planner.plan(row)


def _pg_writer(url, sql, *params):
    def write(row_id):
        connection = psycopg2.connect(url)
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, (*params, row_id))
        connection.close()
    return write


def _run(store, planner, **options):
    return rewrite.run_rewrite(store, planner, batch_size=10, **options)


def test_write_to_another_field_neither_blocks_nor_is_lost(pg_url, registry):
    expected = seed_stripe(pg_url, 25)
    target = sorted(expected)[12]
    app = _pg_writer(pg_url, "UPDATE app_installations SET config = config || '{\"region\": \"eu-app\"}' WHERE id = %s")
    planner = AppWritesWhilePlanning(rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)), target, app)
    with installations.PostgresStore(open_postgres(pg_url).url.dsn()) as store:
        result = _run(store, planner)
    assert result.conflicts == 0 and result.tally["rotated"] == 50
    config = rows(pg_url)[target][1]
    assert config["region"] == "eu-app"
    assert open_under(NEW_KEY, config["apiKey"]).decode() == expected[target]["apiKey"]


def test_new_secret_written_meanwhile_wins_and_the_rest_is_retried(pg_url, registry):
    expected = seed_stripe(pg_url, 25)
    target = sorted(expected)[3]
    apps_value = seal(NEW_KEY, "sk_from_the_app")
    app = _pg_writer(pg_url, "UPDATE app_installations SET config = jsonb_set(config, '{apiKey}', to_jsonb(%s::text)) WHERE id = %s",
                     apps_value)
    planner = AppWritesWhilePlanning(rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)), target, app)
    with installations.PostgresStore(open_postgres(pg_url).url.dsn()) as store:
        result = _run(store, planner)
    assert result.conflicts == 1 and not result.left
    assert result.tally["rotated"] == 49 and result.tally["current"] == 1
    config = rows(pg_url)[target][1]
    assert config["apiKey"] == apps_value  # never overwritten
    assert open_under(NEW_KEY, config["webhookSecret"]).decode() == expected[target]["webhookSecret"]


def test_row_that_keeps_changing_is_left_for_the_next_run(pg_url, registry):
    expected = seed_stripe(pg_url, 12)
    target = sorted(expected)[5]

    def app(row_id):  # an app instance still on the old key, saving the form again and again
        _pg_writer(pg_url, "UPDATE app_installations SET config = jsonb_set(config, '{apiKey}', to_jsonb(%s::text)) WHERE id = %s",
                   seal(OLD_KEY, "sk_again"))(row_id)

    planner = AppWritesWhilePlanning(rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)),
                                     target, app, times=100)
    with installations.PostgresStore(open_postgres(pg_url).url.dsn()) as store:
        result = _run(store, planner, max_retries=2)
    assert result.left == [target] and result.conflicts == 3
    assert open_under(OLD_KEY, rows(pg_url)[target][1]["apiKey"]) == b"sk_again"  # readable, untouched
    report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY))
    assert report.complete and report.rotated == 2  # the next run finishes it
    assert open_under(NEW_KEY, rows(pg_url)[target][1]["apiKey"]) == b"sk_again"


def test_row_deleted_meanwhile_is_counted_not_an_error(pg_url, registry):
    expected = seed_stripe(pg_url, 8)
    target = sorted(expected)[2]
    app = _pg_writer(pg_url, "DELETE FROM app_installations WHERE id = %s")
    planner = AppWritesWhilePlanning(rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)), target, app)
    with installations.PostgresStore(open_postgres(pg_url).url.dsn()) as store:
        result = _run(store, planner)
    assert result.gone == 1 and not result.left and result.tally["rotated"] == 14


class CountingStore(installations.PostgresStore):
    """Records each UPDATE statement: (fast path?, rows in it)."""

    def __init__(self, url):
        super().__init__(open_postgres(url).url.dsn())
        self.statements = []

    def _update_fast(self, cursor, changes, versions):
        self.statements.append((True, len(changes)))
        return super()._update_fast(cursor, changes, versions)

    def _update_exact(self, cursor, changes):
        self.statements.append((False, len(changes)))
        return super()._update_exact(cursor, changes)


def test_one_update_statement_per_page_when_nobody_else_writes(pg_url, registry):
    seed_stripe(pg_url, 25)
    with CountingStore(pg_url) as store:
        _run(store, rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)))
    assert store.statements == [(True, 10), (True, 10), (True, 5)]


def test_rows_written_meanwhile_get_the_exact_condition(pg_url, registry):
    expected = seed_stripe(pg_url, 25)
    target = sorted(expected)[14]
    app = _pg_writer(pg_url, "UPDATE app_installations SET config = config || '{\"region\": \"eu\"}' WHERE id = %s")
    planner = AppWritesWhilePlanning(rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)), target, app)
    with CountingStore(pg_url) as store:
        result = _run(store, planner)
    # The row version changed, so the fast path skips the row; the old values still match.
    assert store.statements == [(True, 10), (True, 10), (False, 1), (True, 5)]
    assert result.conflicts == 0 and result.tally["rotated"] == 50


def test_parallel_workers_cover_every_row(pg_url, registry):
    expected = seed_stripe(pg_url, 120)
    ticks = []
    report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY), workers=3, batch_size=16,
                             progress=ticks.append)
    assert report.rotated == 240 and report.result.rows_scanned == 120 and sum(ticks) == 120
    for row_id, (_, config, _) in rows(pg_url).items():
        assert open_under(NEW_KEY, config["apiKey"]).decode() == expected[row_id]["apiKey"]


# ---- the same compare-and-swap on the SQLite store (the demo database) ------------------

@pytest.fixture
def sqlite_path(tmp_path):
    from toolkit import db

    path = tmp_path / "rotation.sqlite3"
    database = db.open_sqlite(path)
    db.create_tables(database)
    with database.bind_ctx(db.MODELS):
        db.User.insert_many([{"id": i, "email": f"u{i}@example.com"} for i in range(1, 13)]).execute()
        db.AppInstallation.insert_many([
            {"user": i, "app_id": "stripe", "config": {"apiKey": seal(OLD_KEY, f"sk_{i}"), "region": "us"}}
            for i in range(1, 13)
        ]).execute()
    database.close()
    return path


def _sqlite_writer(path, change):
    def write(row_id):
        connection = sqlite3.connect(path)
        import json

        config = json.loads(connection.execute("SELECT config FROM app_installations WHERE id = ?", (row_id,)).fetchone()[0])
        config.update(change)
        with connection:
            connection.execute("UPDATE app_installations SET config = ? WHERE id = ?", (json.dumps(config), row_id))
        connection.close()
    return write


def _sqlite_configs(path):
    import json

    connection = sqlite3.connect(path)
    found = {i: json.loads(c) for i, c in connection.execute("SELECT id, config FROM app_installations")}
    connection.close()
    return found


def test_sqlite_store_compare_and_swap(sqlite_path, registry):
    apps_value = seal(NEW_KEY, "sk_app")
    base = rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY))
    planner = AppWritesWhilePlanning(AppWritesWhilePlanning(base, 4, _sqlite_writer(sqlite_path, {"apiKey": apps_value})),
                                     7, _sqlite_writer(sqlite_path, {"region": "eu"}))
    with installations.SqliteStore(sqlite_path) as store:
        result = _run(store, planner)
    assert result.conflicts == 1 and result.tally["rotated"] == 11 and result.tally["current"] == 1
    configs = _sqlite_configs(sqlite_path)
    assert configs[4]["apiKey"] == apps_value
    assert configs[7]["region"] == "eu" and open_under(NEW_KEY, configs[7]["apiKey"]) == b"sk_7"
    assert all(open_under(NEW_KEY, c["apiKey"]) for c in configs.values())


def test_parallel_workers_from_a_threaded_process(pg_url, registry):
    """A notebook kernel runs threads: the workers then start from a fork server, not a fork."""
    import threading

    expected = seed_stripe(pg_url, 40)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        assert rewrite._start_method() != "fork"
        report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY), workers=2, batch_size=8)
    finally:
        stop.set()
        thread.join()
    assert report.rotated == 80 and report.result.batches > 2
    for row_id, (_, config, _) in rows(pg_url).items():
        assert open_under(NEW_KEY, config["apiKey"]).decode() == expected[row_id]["apiKey"]


def test_a_row_the_app_keeps_locked_does_not_hold_back_its_page(pg_url, registry):
    expected = seed_stripe(pg_url, 30)
    locked = sorted(expected)[17]
    app = psycopg2.connect(pg_url)  # an app transaction that holds one row and does not finish
    with app.cursor() as cursor:
        cursor.execute("SELECT 1 FROM app_installations WHERE id = %s FOR UPDATE", (locked,))
    try:
        with installations.PostgresStore(open_postgres(pg_url).url.dsn(), lock_timeout="50ms") as store:
            result = _run(store, rotation.RotationPlanner.from_registry(registry, keyring(NEW_KEY, OLD_KEY)),
                          max_retries=1)
    finally:
        app.rollback()
        app.close()
    assert result.left == [locked] and result.tally["rotated"] == 58
    after = rows(pg_url)
    assert open_under(OLD_KEY, after[locked][1]["apiKey"]) == expected[locked]["apiKey"].encode()
    assert all(open_under(NEW_KEY, config["apiKey"]) for i, (_, config, _) in after.items() if i != locked)
    report = rotation.rotate(open_postgres(pg_url), registry, keyring(NEW_KEY, OLD_KEY))
    assert report.complete and report.rotated == 2
