"""`toolkit keys rotate` as an operator runs it: dry run, confirmation, bad input (each one
line, nothing changed), a database that refuses writes, PgBouncer, the demo database."""

from __future__ import annotations

import json
import secrets

import psycopg2
import pytest

from test_rotation_seed import NEW_KEY, OLD_KEY, checksum, cli_env, open_under, rows, seed_stripe, write_registry


@pytest.fixture
def seeded(pg_url, tmp_path):
    expected = seed_stripe(pg_url, 40)
    return pg_url, write_registry(tmp_path), expected


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_dry_run_changes_nothing(seeded, run_cli):
    url, registry, _ = seeded
    before = checksum(url)
    result = run_cli("keys", "rotate", "--dry-run", "--json", "--batch-size", "7", env=cli_env(url, registry))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] and report["values"]["rotated"] == 80 and report["rows"]["changed"] == 40
    assert checksum(url) == before

    text = run_cli("keys", "rotate", "--dry-run", env=cli_env(url, registry))
    assert text.returncode == 0 and text.stdout.startswith("Dry run: would re-encrypt 80 values")
    assert checksum(url) == before


def test_rotate_then_status_shows_the_old_key_retirable(seeded, run_cli):
    url, registry, expected = seeded
    result = run_cli("keys", "rotate", "--yes", "--batch-size", "15", "--workers", "1", env=cli_env(url, registry))
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 80 values" in result.stdout and "40 scanned, 40 changed (3 batches" in result.stdout
    for row_id, (_, config, _) in rows(url).items():
        assert open_under(NEW_KEY, config["apiKey"]).decode() == expected[row_id]["apiKey"]
    status = run_cli("keys", "status", "--json", env=cli_env(url, registry))
    assert status.returncode == 0, status.stderr
    assert "previous #1" in status.stdout
    assert "authenticates no value" in run_cli("keys", "status", env=cli_env(url, registry)).stdout


def test_no_terminal_and_no_yes_is_refused(seeded, run_cli):
    url, registry, _ = seeded
    before = checksum(url)
    result = run_cli("keys", "rotate", env=cli_env(url, registry), input="y\n")
    assert result.returncode == 2
    assert "--yes" in one_line_error(result)
    assert checksum(url) == before


@pytest.mark.parametrize("current, previous, says", [
    (NEW_KEY, NEW_KEY, "ENCRYPTION_KEY_PREVIOUS #1 is the same key as ENCRYPTION_KEY"),
    (NEW_KEY, f"{OLD_KEY},{OLD_KEY.upper()}", "ENCRYPTION_KEY_PREVIOUS #2 is the same key as ENCRYPTION_KEY_PREVIOUS #1"),
    ("abc123", OLD_KEY, "ENCRYPTION_KEY must be 64 hex characters"),
    (NEW_KEY, OLD_KEY[:-1] + "z", "ENCRYPTION_KEY_PREVIOUS #1 must be 64 hex characters"),
    (NEW_KEY, None, "ENCRYPTION_KEY_PREVIOUS is not set"),
    (None, None, "ENCRYPTION_KEY is not set"),
])
def test_bad_keys_are_one_line_and_change_nothing(seeded, run_cli, current, previous, says):
    url, registry, _ = seeded
    before = checksum(url)
    result = run_cli("keys", "rotate", "--yes", env=cli_env(url, registry, current=current, previous=previous))
    assert result.returncode == 2
    line = one_line_error(result)
    assert says in line
    for key in (current, previous):
        assert not key or key not in line  # a key is never echoed
    assert checksum(url) == before


@pytest.fixture
def read_only_role(seeded):
    """A login role that may read app_installations but not write it."""
    url, _, _ = seeded
    role = f"ro_{secrets.token_hex(4)}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN")
        cursor.execute(f"GRANT SELECT ON app_installations, users TO {role}")
    yield url.replace("postgres@", f"{role}@")
    with admin.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE {role}")
    admin.close()


def test_read_only_role_is_refused_before_any_write(seeded, read_only_role, run_cli):
    url, registry, _ = seeded
    before = checksum(url)
    result = run_cli("keys", "rotate", "--yes", env=cli_env(read_only_role, registry))
    assert result.returncode == 3
    assert "may not UPDATE app_installations; nothing was changed" in one_line_error(result)
    assert checksum(url) == before
    # The dry run only reads, so it works for that role.
    assert run_cli("keys", "rotate", "--dry-run", env=cli_env(read_only_role, registry)).returncode == 0


def test_read_only_database_is_refused(seeded, run_cli):
    url, registry, _ = seeded
    before = checksum(url)
    dbname = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    admin.close()
    result = run_cli("keys", "rotate", "--yes", env=cli_env(url, registry))
    assert result.returncode == 3
    assert "refuses writes" in one_line_error(result)
    assert checksum(url) == before


def test_through_pgbouncer_with_workers(seeded, pgbouncer_url, run_cli):
    url, registry, expected = seeded
    pooled = pgbouncer_url(url)
    before = checksum(url)
    dry = run_cli("keys", "rotate", "--dry-run", "--json", env=cli_env(pooled, registry))
    assert dry.returncode == 0, dry.stderr
    assert checksum(url) == before
    result = run_cli("keys", "rotate", "--yes", "--json", "--workers", "2", "--batch-size", "9",
                     env=cli_env(pooled, registry))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["values"]["rotated"] == 80 and report["complete"]
    for row_id, (_, config, _) in rows(url).items():
        assert open_under(NEW_KEY, config["webhookSecret"]).decode() == expected[row_id]["webhookSecret"]


def test_demo_database(demo_settings, run_cli):
    env = {"TOOLKIT_DATA_DIR": str(demo_settings.data_dir)}
    dry = json.loads(run_cli("keys", "rotate", "--dry-run", "--json", env=env).stdout)
    assert dry["values"]["rotated"] > 0
    result = run_cli("keys", "rotate", "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["values"]["rotated"] == dry["values"]["rotated"]
    assert "Using the embedded demo database" in result.stderr
    again = json.loads(run_cli("keys", "rotate", "--yes", "--json", env=env).stdout)
    assert again["values"]["rotated"] == 0 and again["values"]["skipped"] == dry["values"]["skipped"]
