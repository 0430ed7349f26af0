"""Interop with the real drizzle-kit (tests/node): same schema, same journal, either order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psycopg2
import pytest

from toolkit import db, schema_check

from _paths import REFERENCE_APP

NEXT_WHEN = 1795635558146 + 60_000
NEXT_SQL = 'ALTER TABLE "app_installations" ADD COLUMN "notes" text;--> statement-breakpoint\nCREATE INDEX "app_installations_app_idx" ON "app_installations" USING btree ("app_id");'

pytestmark = [pytest.mark.postgres, pytest.mark.node]


@pytest.fixture
def drizzle_app(tmp_path, drizzle_kit):
    """A copy of the app's drizzle project that `drizzle-kit migrate` can run in."""
    app = tmp_path / "app"
    shutil.copytree(REFERENCE_APP, app)
    for path in [app, *app.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the reference is read-only
    # drizzle.config.ts imports "drizzle-kit": resolve it from tests/node.
    (app / "node_modules").symlink_to(drizzle_kit.parent.parent)
    return app


def drizzle_migrate(app: Path, url: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(app / "node_modules" / ".bin" / "drizzle-kit"), "migrate"], cwd=app,
        env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def add_migration(app: Path, tag="0001_notes", when=NEXT_WHEN, sql=NEXT_SQL):
    folder = app / "drizzle"
    (folder / f"{tag}.sql").write_text(sql)
    journal_path = folder / "meta" / "_journal.json"
    journal = json.loads(journal_path.read_text())
    journal["entries"].append({"idx": len(journal["entries"]), "version": "7", "when": when, "tag": tag, "breakpoints": True})
    journal_path.write_text(json.dumps(journal, indent=2))


def schema_dump(url: str) -> str:
    dbname = url.rsplit("/", 1)[1]
    result = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "-h", "127.0.0.1", "-U", "postgres", dbname],
        capture_output=True, text=True, check=True,
    )
    # pg_dump 15.14+ brackets its output with \restrict/\unrestrict and a random key per run.
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def journal_rows(url: str):
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT hash, created_at FROM drizzle."__drizzle_migrations" ORDER BY id')
            return cursor.fetchall()
    finally:
        connection.close()


def toolkit_migrate(run_cli, url, *args):
    result = run_cli("migrate", *args, env={"DIRECT_URL": url})
    assert result.returncode == 0, result.stderr
    return result


def test_toolkit_and_drizzle_kit_build_identical_schemas(new_pg_database, drizzle_app, run_cli):
    ours, theirs = new_pg_database(), new_pg_database()
    toolkit_migrate(run_cli, ours)
    drizzle_migrate(drizzle_app, theirs)

    dump = schema_dump(ours)
    assert dump == schema_dump(theirs)
    for made in ("CREATE TABLE public.users", "CREATE TABLE public.app_installations",
                 "CREATE TABLE drizzle.__drizzle_migrations", "app_installations_user_id_users_id_fk",
                 "CREATE UNIQUE INDEX app_installations_user_app_idx", "CREATE TYPE public.role"):
        assert made in dump  # whole dumps compared, the journal table included
    assert journal_rows(ours) == journal_rows(theirs)


def test_drizzle_kit_after_toolkit_applies_nothing(empty_pg_url, drizzle_app, run_cli):
    toolkit_migrate(run_cli, empty_pg_url)
    before = schema_dump(empty_pg_url), journal_rows(empty_pg_url)
    drizzle_migrate(drizzle_app, empty_pg_url)
    assert (schema_dump(empty_pg_url), journal_rows(empty_pg_url)) == before
    assert len(before[1]) == 1


def test_toolkit_after_drizzle_kit_applies_nothing(empty_pg_url, drizzle_app, run_cli):
    drizzle_migrate(drizzle_app, empty_pg_url)
    before = schema_dump(empty_pg_url), journal_rows(empty_pg_url)
    result = toolkit_migrate(run_cli, empty_pg_url)
    assert "up to date, nothing to apply" in result.stdout
    assert (schema_dump(empty_pg_url), journal_rows(empty_pg_url)) == before
    status = run_cli("migrate", "--status", env={"DIRECT_URL": empty_pg_url})
    assert "applied   0000_init" in status.stdout and "0 pending" in status.stdout


def test_a_later_app_migration_is_applied_by_whichever_tool_runs_next(new_pg_database, drizzle_app, run_cli):
    first, second = new_pg_database(), new_pg_database()
    # first: toolkit applies 0000, the app adds 0001, drizzle-kit applies only 0001.
    toolkit_migrate(run_cli, first)
    # second: drizzle-kit applies 0000, toolkit (--folder) applies only 0001.
    drizzle_migrate(drizzle_app, second)
    add_migration(drizzle_app)
    drizzle_migrate(drizzle_app, first)
    result = toolkit_migrate(run_cli, second, "--folder", drizzle_app / "drizzle")
    assert "applied 0001_notes" in result.stdout and "0000_init" not in result.stdout

    assert schema_dump(first) == schema_dump(second)
    assert journal_rows(first) == journal_rows(second)
    assert [created for _, created in journal_rows(first)] == [1795635558146, NEXT_WHEN]


def test_schema_check_is_clean_on_a_drizzle_migrated_database(empty_pg_url, drizzle_app, run_cli):
    drizzle_migrate(drizzle_app, empty_pg_url)
    database = db.open_postgres(empty_pg_url)
    try:
        assert schema_check.check(database).differences == ()
    finally:
        database.close()
    result = run_cli("schema", "check", env={"DATABASE_URL": empty_pg_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches the app's schema" in result.stdout
