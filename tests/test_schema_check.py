"""toolkit schema check: clean on the app's schema, and each kind of drift named in plain words."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import psycopg2
import pytest

from toolkit import db, schema_check
from toolkit.db import models
from toolkit.schema_check import DRIFT, EXPECTED, NOTE

SNAPSHOT = Path(__file__).resolve().parent.parent / "migrations" / "meta" / "0000_snapshot.json"


def alter(url, *statements):
    connection = psycopg2.connect(url)
    connection.autocommit = True  # ALTER TYPE … ADD VALUE cannot run in a transaction block
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def check(url, journal=False):
    database = db.open_postgres(url)
    try:
        return schema_check.check(database, journal=journal)
    finally:
        database.close()


# ---- the expectation agrees with the app's other descriptions of itself ----------------------

def test_expected_schema_matches_drizzles_snapshot():
    snapshot = json.loads(SNAPSHOT.read_text())
    assert {e["name"]: tuple(e["values"]) for e in snapshot["enums"].values()} == EXPECTED.enums
    for entry in snapshot["tables"].values():
        table = EXPECTED.tables[entry["name"]]
        assert [c.name for c in table.columns] == list(entry["columns"])
        for column in entry["columns"].values():
            assert table.column(column["name"]).not_null == column["notNull"], column["name"]
            assert (table.column(column["name"]).default is not None) == ("default" in column or column["type"] == "serial")
        assert table.primary_key == tuple(c for c, v in entry["columns"].items() if v["primaryKey"])
        assert dict(table.uniques) == {u["name"]: tuple(u["columns"]) for u in entry["uniqueConstraints"].values()}
        assert {i.name: (i.columns, i.unique) for i in table.indexes} == {
            i["name"]: (tuple(c["expression"] for c in i["columns"]), i["isUnique"]) for i in entry["indexes"].values()
        }
        assert {f.name: (f.columns, f.ref_table, f.ref_columns, f.on_delete) for f in table.foreign_keys} == {
            f["name"]: (tuple(f["columnsFrom"]), f["tableTo"], tuple(f["columnsTo"]), f["onDelete"])
            for f in entry["foreignKeys"].values()
        }


def test_expected_schema_matches_the_peewee_models():
    for model in models.MODELS:
        table = EXPECTED.tables[model._meta.table_name]
        fields = model._meta.sorted_fields
        assert [f.column_name for f in fields] == [c.name for c in table.columns]
        for field in fields:
            # A primary key is NOT NULL whatever Peewee's `null` says.
            assert (not field.null or field.primary_key) == table.column(field.column_name).not_null, field.name


# ---- compare() alone ---------------------------------------------------------------------

def _replace_column(schema, table, column, **changes):
    tables = dict(schema.tables)
    t = tables[table]
    cols = tuple(dataclasses.replace(c, **changes) if c.name == column else c for c in t.columns)
    tables[table] = dataclasses.replace(t, columns=cols)
    return dataclasses.replace(schema, tables=tables)


def test_identical_schemas_have_no_differences():
    assert schema_check.compare(EXPECTED, EXPECTED) == []


def test_a_changed_default_and_nullability_are_drift():
    live = _replace_column(EXPECTED, "users", "role", default=None, not_null=False)
    messages = {(d.severity, d.message) for d in schema_check.compare(EXPECTED, live)}
    assert messages == {
        (DRIFT, "column users.role: is nullable, expected NOT NULL"),
        (DRIFT, "column users.role: default is none, expected 'customer'::role"),
    }


def test_reordered_enum_labels_are_drift():
    live = dataclasses.replace(EXPECTED, enums={**EXPECTED.enums, "role": ("customer", "admin")})
    (difference,) = schema_check.compare(EXPECTED, live)
    assert difference.kind == "enum.order"


# ---- on a real database ----------------------------------------------------------------------

@pytest.mark.postgres
def test_clean_on_the_apps_schema(pg_url):
    result = check(pg_url)
    assert result.ok and result.differences == ()


@pytest.mark.postgres
def test_notes_a_schema_that_drizzles_journal_does_not_record(pg_url):
    # pg_url's schema comes straight from the SQL, as `drizzle-kit push` would leave it.
    (note,) = check(pg_url, journal=True).differences
    assert (note.severity, note.kind) == (NOTE, "migrations.untracked")
    alter(pg_url, 'CREATE SCHEMA drizzle', 'CREATE TABLE drizzle."__drizzle_migrations" (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint)')
    (note,) = check(pg_url, journal=True).differences
    assert note.message == "drizzle.__drizzle_migrations does not record 0000_init: `toolkit migrate` would apply it"


@pytest.mark.postgres
def test_names_each_change(pg_url):
    alter(
        pg_url,
        'ALTER TABLE users DROP COLUMN "name"',
        "ALTER TABLE app_installations ALTER COLUMN config TYPE text",
        "ALTER TYPE app_status ADD VALUE 'disabled'",
        "DROP INDEX app_installations_user_app_idx",
    )
    result = check(pg_url)
    assert [(d.severity, d.message) for d in result.differences] == [
        (DRIFT, "enum app_status: has 'disabled' that the app's schema does not define (expected 'installed', 'configured')"),
        (DRIFT, "column users.name is missing"),
        (DRIFT, "column app_installations.config: type is text, expected jsonb"),
        (DRIFT, "unique index app_installations_user_app_idx on app_installations (user_id, app_id) is missing"),
    ]
    assert not result.ok


@pytest.mark.postgres
def test_constraint_and_foreign_key_changes(pg_url):
    alter(
        pg_url,
        "ALTER TABLE users DROP CONSTRAINT users_email_unique",
        "ALTER TABLE app_installations DROP CONSTRAINT app_installations_user_id_users_id_fk",
        "ALTER TABLE app_installations ADD CONSTRAINT app_installations_user_id_users_id_fk "
        "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE SET NULL",
        "DROP INDEX app_installations_user_app_idx",
        "CREATE UNIQUE INDEX app_installations_user_app_idx ON app_installations (app_id, user_id) WHERE status = 'configured'",
    )
    messages = [d.message for d in check(pg_url).drift]
    assert messages == [
        "unique constraint users_email_unique on users (email) is missing",
        "index app_installations_user_app_idx: on (app_id, user_id), expected (user_id, app_id)",
        "index app_installations_user_app_idx: is partial (WHERE status = 'configured'::app_status), expected a full index",
        "foreign key app_installations_user_id_users_id_fk: ON DELETE SET NULL, expected ON DELETE CASCADE",
    ]


@pytest.mark.postgres
def test_additions_are_notes_unless_they_break_inserts(pg_url):
    alter(
        pg_url,
        "ALTER TABLE users ADD COLUMN nickname text",
        "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free'",
        "CREATE INDEX users_created_idx ON users (created_at)",
        "CREATE TABLE audit_log (id serial PRIMARY KEY)",
    )
    result = check(pg_url)
    assert result.ok
    assert {d.kind for d in result.notes} == {"column.extra", "index.extra", "table.extra"}
    assert "column users.nickname (text) is not in the app's schema (harmless: the toolkit neither reads nor writes it)" in [d.message for d in result.notes]

    alter(pg_url, "ALTER TABLE app_installations ADD COLUMN tenant_id integer NOT NULL")
    (drift,) = check(pg_url).drift
    assert drift.message == (
        "column app_installations.tenant_id is not in the app's schema and is NOT NULL without a default: "
        "inserts that do not set it will fail"
    )


@pytest.mark.postgres
def test_missing_tables_and_enums(empty_pg_url):
    result = check(empty_pg_url)
    assert [d.message for d in result.drift] == [
        "enum role is missing", "enum app_status is missing",
        "table users is missing", "table app_installations is missing",
    ]


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_runs_read_only_through_the_pooler(pg_url, pgbouncer_url):
    # SET LOCAL and a read-only transaction: nothing leaks into the shared server connection.
    result = check(pgbouncer_url(pg_url))
    assert result.ok and result.differences == ()


# ---- the command line ----------------------------------------------------------------------

@pytest.mark.postgres
def test_cli_exit_codes_and_json(pg_url, run_cli):
    env = {"DATABASE_URL": pg_url}
    clean = run_cli("schema", "check", env=env)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip().endswith("matches the app's schema (1 note(s))")

    alter(pg_url, "ALTER TABLE app_installations ALTER COLUMN config TYPE text", "ALTER TABLE users ADD COLUMN nickname text")
    drifted = run_cli("schema", "check", env=env)
    assert drifted.returncode == 1, drifted.stderr
    assert "drift  column app_installations.config: type is text, expected jsonb" in drifted.stdout
    assert "note   column users.nickname (text) is not in the app's schema" in drifted.stdout
    assert "1 difference(s) from the app's schema (2 note(s))" in drifted.stdout

    as_json = run_cli("schema", "check", "--json", env=env)
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["drift"] == 1 and data["notes"] == 2
    assert {d["kind"] for d in data["differences"]} == {"column.type", "column.extra", "migrations.untracked"}


def test_cli_needs_a_real_database(run_cli):
    result = run_cli("schema", "check")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: schema check needs a PostgreSQL database: set DATABASE_URL")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
