"""toolkit.migrate: drizzle's journal rules, on files and on a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import psycopg2
import pytest

from toolkit import db, migrate
from toolkit.errors import ConfigError, UsageError
from toolkit.settings import Settings

from _paths import REFERENCE_APP

REFERENCE = REFERENCE_APP / "drizzle"
ROOT = Path(__file__).resolve().parent.parent


def rows(url):
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT id, hash, created_at FROM drizzle."__drizzle_migrations" ORDER BY id')
            return cursor.fetchall()
    finally:
        connection.close()


def tables(url):
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            return [r[0] for r in cursor.fetchall()]
    finally:
        connection.close()


def apply_folder(url, folder):
    database = db.open_postgres(url)
    try:
        return migrate.apply(database, migrate.read_folder(folder))
    finally:
        database.close()


def app_folder(tmp_path, extra=()):
    """A copy of the toolkit's migrations with more entries: [(tag, when, sql)]."""
    folder = tmp_path / "drizzle"
    shutil.copytree(migrate.BUNDLED_FOLDER, folder)
    journal = json.loads((folder / "meta" / "_journal.json").read_text())
    for tag, when, sql in extra:
        (folder / f"{tag}.sql").write_text(sql)
        journal["entries"].append({"idx": len(journal["entries"]), "version": "7", "when": when, "tag": tag, "breakpoints": True})
    (folder / "meta" / "_journal.json").write_text(json.dumps(journal, indent=2))
    return folder


# ---- the folder itself ---------------------------------------------------------------------

def test_migrations_folder_is_drizzle_kit_output_byte_for_byte():
    for relative in ("0000_init.sql", "meta/_journal.json", "meta/0000_snapshot.json"):
        assert (ROOT / "migrations" / relative).read_bytes() == (REFERENCE / relative).read_bytes(), relative


def test_package_finds_its_migrations():
    # toolkit/migrations is a symlink in the repository and real files in an installed wheel.
    (init,) = migrate.read_folder(migrate.BUNDLED_FOLDER)
    assert init.tag == "0000_init"
    assert init.when == 1795635558146
    assert init.hash == hashlib.sha256((REFERENCE / "0000_init.sql").read_bytes()).hexdigest()
    assert len(init.statements) == 6
    assert init.statements[0].startswith('CREATE TYPE "public"."app_status"')


def test_split_drops_only_empty_chunks():
    text = "CREATE TABLE a();--> statement-breakpoint\nCREATE TABLE b();\n--> statement-breakpoint\n"
    assert migrate.split_statements(text) == ("CREATE TABLE a();", "\nCREATE TABLE b();\n")


def test_hash_is_of_the_utf8_text_as_node_reads_it():
    assert migrate.drizzle_hash("é".encode()) == hashlib.sha256("é".encode()).hexdigest()
    # Node's toString() turns an invalid byte into U+FFFD before hashing.
    assert migrate.drizzle_hash(b"a\xffb") == hashlib.sha256("a\ufffdb".encode()).hexdigest()


def test_missing_folder_and_journal_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="migrations folder not found"):
        migrate.read_folder(tmp_path / "nope")
    with pytest.raises(UsageError, match="no meta/_journal.json"):
        migrate.read_folder(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "_journal.json").write_text('{"entries": [{"tag": "0000_x", "when": 1}]}')
    with pytest.raises(UsageError, match="0000_x.sql does not exist"):
        migrate.read_folder(tmp_path)
    (tmp_path / "meta" / "_journal.json").write_text("{not json")
    with pytest.raises(UsageError, match="is not a drizzle journal"):
        migrate.read_folder(tmp_path)


# ---- drizzle's rule (pure) -----------------------------------------------------------------

def _m(tag, when):
    return migrate.Migration(tag, when, f"hash-{tag}", ("SELECT 1",), Path(f"{tag}.sql"))


def test_pending_is_every_entry_newer_than_the_newest_row():
    a, b, c = _m("a", 10), _m("b", 20), _m("c", 30)
    assert migrate.pending_after([a, b, c], None) == [a, b, c]
    assert migrate.pending_after([a, b, c], 20) == [c]
    assert migrate.pending_after([a, b, c], 30) == []


def test_compare_reports_skipped_changed_and_foreign_rows():
    a, b, c = _m("a", 10), _m("b", 20), _m("c", 30)
    rows_ = [
        migrate.AppliedRow(1, "hash-a", 10),
        migrate.AppliedRow(2, "edited", 30),  # c was applied, then its file changed
        migrate.AppliedRow(3, "other-folder", 25),
    ]
    state = migrate.compare([a, b, c], rows_)
    assert [m.tag if m else None for m, _ in state.applied] == ["a", None, "c"]
    assert state.pending == ()
    assert [m.tag for m in state.skipped] == ["b"]  # older than the newest row: drizzle never applies it
    assert [m.tag for m in state.changed] == ["c"]
    assert state.latest.created_at == 30


def test_a_null_created_at_makes_everything_pending_like_drizzle():
    # drizzle: ORDER BY created_at DESC puts NULL first, and Number(null) is 0.
    a = _m("a", 10)
    state = migrate.compare([a], [migrate.AppliedRow(1, "hash-a", 10), migrate.AppliedRow(2, "x", None)])
    assert state.pending == (a,)


# ---- which URL -----------------------------------------------------------------------------

DIRECT = "postgresql://postgres:pw@db.example.supabase.co:5432/postgres"
POOLER = "postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pgbouncer=true"


def test_direct_url_wins_and_a_pooler_database_url_is_refused():
    assert migrate.resolve_direct_url(Settings(database_url=POOLER, direct_url=DIRECT)) == (DIRECT, "DIRECT_URL")
    assert migrate.resolve_direct_url(Settings(database_url=DIRECT)) == (DIRECT, "DATABASE_URL")
    with pytest.raises(ConfigError, match="refusing to migrate through the transaction pooler in DATABASE_URL") as info:
        migrate.resolve_direct_url(Settings(database_url=POOLER))
    assert "DIRECT_URL" in info.value.one_line()
    assert "pw" not in info.value.one_line()


def test_a_pooler_direct_url_is_refused_by_port_or_flag():
    with pytest.raises(ConfigError, match=r"DIRECT_URL points at a transaction pooler \(port 6543\)"):
        migrate.resolve_direct_url(Settings(direct_url="postgresql://u@h:6543/db"))
    with pytest.raises(ConfigError, match=r"pgbouncer=true"):
        migrate.resolve_direct_url(Settings(direct_url="postgresql://u@h:5432/db?pgbouncer=true"))
    with pytest.raises(ConfigError, match="set DIRECT_URL"):
        migrate.resolve_direct_url(Settings())


# ---- on a real database --------------------------------------------------------------------

@pytest.mark.postgres
def test_migrate_creates_the_schema_and_records_drizzles_row(empty_pg_url):
    applied = apply_folder(empty_pg_url, migrate.BUNDLED_FOLDER)
    assert [m.tag for m in applied] == ["0000_init"]
    assert tables(empty_pg_url) == ["app_installations", "users"]
    expected_hash = hashlib.sha256((REFERENCE / "0000_init.sql").read_bytes()).hexdigest()
    assert rows(empty_pg_url) == [(1, expected_hash, 1795635558146)]
    # Again: nothing to do, nothing recorded twice.
    assert apply_folder(empty_pg_url, migrate.BUNDLED_FOLDER) == []
    assert len(rows(empty_pg_url)) == 1


@pytest.mark.postgres
def test_migrations_table_ddl_is_drizzles(empty_pg_url):
    apply_folder(empty_pg_url, migrate.BUNDLED_FOLDER)
    connection = psycopg2.connect(empty_pg_url)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'drizzle' AND table_name = '__drizzle_migrations' ORDER BY ordinal_position"
        )
        columns = cursor.fetchall()
    connection.close()
    assert columns == [
        ("id", "integer", "NO", "nextval('drizzle.__drizzle_migrations_id_seq'::regclass)"),
        ("hash", "text", "NO", None),
        ("created_at", "bigint", "YES", None),
    ]


@pytest.mark.postgres
def test_folder_applies_only_newer_entries_in_one_transaction(empty_pg_url, tmp_path):
    apply_folder(empty_pg_url, migrate.BUNDLED_FOLDER)
    folder = app_folder(tmp_path, [
        ("0001_nickname", 1795635558200, 'ALTER TABLE "users" ADD COLUMN "nickname" text;'),
        ("0002_broken", 1795635558300, 'ALTER TABLE "users" ADD COLUMN "x" int;--> statement-breakpoint\nSELECT * FROM no_such_table;'),
    ])
    from toolkit.errors import DatabaseError

    with pytest.raises(DatabaseError, match="no_such_table"):
        apply_folder(empty_pg_url, folder)
    # All pending entries share one transaction (as drizzle's): 0001 rolled back with 0002.
    assert len(rows(empty_pg_url)) == 1
    connection = psycopg2.connect(empty_pg_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name IN ('nickname', 'x')")
        assert cursor.fetchone() == (0,)
    connection.close()

    # Percent signs are SQL, not placeholders (drizzle runs statements verbatim).
    (folder / "0002_broken.sql").write_text(
        'ALTER TABLE "users" ADD COLUMN "x" int;--> statement-breakpoint\n'
        "ALTER TABLE \"users\" ADD CONSTRAINT \"users_email_like\" CHECK (email NOT LIKE '%%s%');"
        "--> statement-breakpoint\nCOMMENT ON TABLE \"users\" IS '100% of users, %s %(name)s';"
    )
    applied = apply_folder(empty_pg_url, folder)
    assert [m.tag for m in applied] == ["0001_nickname", "0002_broken"]
    assert [r[2] for r in rows(empty_pg_url)] == [1795635558146, 1795635558200, 1795635558300]
    connection = psycopg2.connect(empty_pg_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description('users'::regclass, 'pg_class'), pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'users_email_like'")
        assert cursor.fetchone() == ("100% of users, %s %(name)s", "CHECK (((email)::text !~~ '%%s%'::text))")
    connection.close()


@pytest.mark.postgres
def test_concurrent_runs_apply_each_migration_once(empty_pg_url):
    migrations = migrate.read_folder(migrate.BUNDLED_FOLDER)
    # Create drizzle's table first so both runs meet at the lock, not at CREATE SCHEMA.
    database = db.open_postgres(empty_pg_url)
    migrate.apply(database, [])
    database.close()
    results, errors = [], []

    def run():
        database = db.open_postgres(empty_pg_url)
        try:
            results.append(migrate.apply(database, migrations))
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 1]
    assert len(rows(empty_pg_url)) == 1


@pytest.mark.postgres
def test_status_reads_without_writing(empty_pg_url):
    database = db.open_postgres(empty_pg_url)
    migrations = migrate.read_folder(migrate.BUNDLED_FOLDER)
    state = migrate.status(database, migrations)
    assert not state.table_exists and [m.tag for m in state.pending] == ["0000_init"]
    database.close()
    connection = psycopg2.connect(empty_pg_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'drizzle'")
        assert cursor.fetchone() == (0,)  # status created nothing
    connection.close()


# ---- the command line ----------------------------------------------------------------------

@pytest.mark.postgres
def test_cli_migrate_and_status(empty_pg_url, run_cli, tmp_path):
    env = {"DIRECT_URL": empty_pg_url}
    before = run_cli("migrate", "--status", env=env)
    assert before.returncode == 0, before.stderr
    assert "pending   0000_init" in before.stdout and "0 applied, 1 pending" in before.stdout

    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert "applied 0000_init (6 statements)" in result.stdout

    again = run_cli("migrate", env=env)
    assert again.returncode == 0 and "up to date, nothing to apply" in again.stdout
    assert json.loads(run_cli("migrate", "--json", env=env).stdout)["applied"] == []

    status = run_cli("migrate", "--status", "--json", env=env)
    data = json.loads(status.stdout)
    assert [a["tag"] for a in data["applied"]] == ["0000_init"] and data["pending"] == []

    folder = app_folder(tmp_path, [("0001_nickname", 1795635558200, 'ALTER TABLE "users" ADD COLUMN "nickname" text;')])
    custom = run_cli("migrate", "--folder", folder, env=env)
    assert custom.returncode == 0, custom.stderr
    assert "applied 0001_nickname" in custom.stdout and "0000_init" not in custom.stdout


@pytest.mark.postgres
def test_cli_direct_url_flag_wins_over_a_pooler_database_url(empty_pg_url, run_cli):
    pooler = empty_pg_url.replace(":5432/", ":6543/")
    result = run_cli("migrate", "--direct-url", empty_pg_url, env={"DATABASE_URL": pooler})
    assert result.returncode == 0, result.stderr
    assert tables(empty_pg_url) == ["app_installations", "users"]


@pytest.mark.slow
def test_a_built_wheel_carries_the_migration_files(tmp_path):
    # In the repository toolkit/migrations is a symlink; the wheel must hold the real files.
    import subprocess
    import sys
    import zipfile

    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "*.egg-info", "__pycache__", ".ci"))
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = out.glob("installation_toolkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.read(name) for name in archive.namelist() if name.startswith("toolkit/migrations/")}
    assert shipped == {
        f"toolkit/migrations/{relative}": (REFERENCE / relative).read_bytes()
        for relative in ("0000_init.sql", "meta/_journal.json", "meta/0000_snapshot.json")
    }
