"""Bad input at the command line: one line on stderr, exit 2 or 3, never a traceback.

Each case runs `python -m toolkit` in a subprocess, as an operator would.
"""

from __future__ import annotations

import pytest

PASSWORD = "s3cret-Pa55"


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---- configuration errors (exit 2) -----------------------------------------------------------

@pytest.mark.parametrize("url, says", [
    ("mysql://root@127.0.0.1/app", "DATABASE_URL must start with postgresql://"),
    ("postgresql://postgres@127.0.0.1:notaport/app", "DATABASE_URL is not a valid URL"),
    ("postgresql:///app", "DATABASE_URL needs a host and a database name"),
    ("127.0.0.1:5432/app", "DATABASE_URL must start with postgresql://"),
])
def test_malformed_database_url(run_cli, url, says):
    line = assert_one_line_error(run_cli("schema", "check", env={"DATABASE_URL": url}), 2, says)
    assert "expected postgresql://user:password@host:port/dbname" in line


def test_malformed_direct_url_names_direct_url(run_cli):
    result = run_cli("migrate", env={"DIRECT_URL": f"postgres://u:{PASSWORD}@host:99999/db"})
    line = assert_one_line_error(result, 2, "DIRECT_URL is not a valid URL")
    assert PASSWORD not in result.stderr + result.stdout


def test_pooler_url_given_to_migrate(run_cli):
    pooler = f"postgresql://postgres.abc:{PASSWORD}@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pgbouncer=true"
    result = run_cli("migrate", env={"DATABASE_URL": pooler})
    assert_one_line_error(result, 2, "refusing to migrate through the transaction pooler in DATABASE_URL", "DIRECT_URL")
    assert PASSWORD not in result.stderr

    result = run_cli("migrate", env={"DIRECT_URL": pooler.replace(":6543/", ":5432/")})
    assert_one_line_error(result, 2, "DIRECT_URL points at a transaction pooler (pgbouncer=true)")


def test_nothing_to_migrate(run_cli):
    assert_one_line_error(run_cli("migrate"), 2, "no database to migrate: set DIRECT_URL")


def test_missing_migrations_folder(run_cli, tmp_path):
    # Checked before any connection: the URL need not even answer.
    env = {"DIRECT_URL": "postgresql://postgres@127.0.0.1:1/none"}
    assert_one_line_error(run_cli("migrate", "--folder", tmp_path / "drizzle", env=env), 2, "migrations folder not found")
    (tmp_path / "drizzle").mkdir()
    assert_one_line_error(run_cli("migrate", "--status", "--folder", tmp_path / "drizzle", env=env), 2, "no meta/_journal.json in")


# ---- database errors (exit 3) ---------------------------------------------------------------

def test_unreachable_database(run_cli):
    # Port 1 on localhost: nothing listens, the connection is refused at once.
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/app"
    for args, env in ((("migrate",), {"DIRECT_URL": url}), (("schema", "check"), {"DATABASE_URL": url})):
        result = run_cli(*args, env=env)
        assert_one_line_error(result, 3, "Connection refused", "is the server running and reachable at postgresql://postgres@127.0.0.1:1/app?")
        assert PASSWORD not in result.stderr


@pytest.mark.postgres
def test_database_that_does_not_exist(run_cli, empty_pg_url):
    url = empty_pg_url.rsplit("/", 1)[0] + "/tk_no_such_database"
    assert_one_line_error(run_cli("migrate", "--status", env={"DIRECT_URL": url}), 3, 'database "tk_no_such_database" does not exist')


@pytest.mark.pgbouncer
def test_wrong_password(run_cli, pg_url, pgbouncer_url):
    url = pgbouncer_url(pg_url, password=PASSWORD)  # PgBouncer knows another one
    result = run_cli("schema", "check", env={"DATABASE_URL": url})
    assert_one_line_error(result, 3, "authentication failed")
    assert PASSWORD not in result.stderr + result.stdout
    # …and the right one works through the same pooler.
    ok = run_cli("schema", "check", env={"DATABASE_URL": pgbouncer_url(pg_url)})
    assert ok.returncode == 0, ok.stderr
