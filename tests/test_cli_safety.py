"""Secrets and passwords stay out of output on odd input; dangerous flags have no env twin."""

import json
import sqlite3

import psycopg2
import pytest

from toolkit.settings import load_settings

from test_demo import demo_plaintext, run_toolkit


def test_settings_repr_hides_database_passwords(tmp_path):
    settings = load_settings(cwd=tmp_path, environ={
        "DATABASE_URL": "postgresql://app:hunter2SECRET@db.example.com:6543/postgres",
        "DIRECT_URL": "postgresql://app:hunter2SECRET@db.example.com:5432/postgres",
        "ENCRYPTION_KEY": "ab" * 32,
    })
    assert "hunter2SECRET" not in repr(settings) and "abab" not in repr(settings)


def test_a_bad_url_never_echoes_part_of_the_password(demo_settings):
    result = run_toolkit(["--database-url", "postgresql://postgres:Sup3rS/ecret@db.example.com:5432/postgres", "audit"],
                         demo_settings)
    assert result.returncode == 2
    assert "Sup3rS" not in result.stderr and "ecret" not in result.stderr
    assert result.stderr.startswith("error: DATABASE_URL is not a valid URL")


def test_reveal_yes_and_write_cannot_come_from_the_environment(demo_settings):
    import os
    import subprocess
    import sys

    plaintext = demo_plaintext(demo_settings, 4, "apiKey")
    env = {"PATH": os.environ["PATH"], "TOOLKIT_DATA_DIR": str(demo_settings.data_dir),
           "TOOLKIT_ACCESS_LOG": str(demo_settings.access_log), "TOOLKIT_SHOW_REVEAL": "1"}
    shown = subprocess.run([sys.executable, "-m", "toolkit", "show", "4"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and plaintext not in shown.stdout
    env.update(TOOLKIT_REPAIR_YES="1", TOOLKIT_REPAIR_FIX="field.unknown")
    repair = subprocess.run([sys.executable, "-m", "toolkit", "repair"], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    assert repair.returncode == 2  # no terminal and no typed --yes: refused, nothing written


def test_a_non_string_value_in_a_password_field_is_never_shown(demo_settings):
    path = demo_settings.data_dir / "demo.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("UPDATE app_installations SET config = ? WHERE id = 4",
                       (json.dumps({"apiKey": {"nested": "sk_live_SECRETNESTED"}, "region": "us"}),))
    connection.commit()
    connection.close()
    for args in (["show", "4"], ["show", "4", "--json"], ["show", "4", "--reveal"]):
        result = run_toolkit(args, demo_settings)
        assert result.returncode == 0, result.stderr
        assert "SECRETNESTED" not in result.stdout + result.stderr


def test_show_reveal_skips_secrets_that_cannot_be_decrypted(demo_settings):
    # Installation 4's webhook secret stays readable; its apiKey becomes malformed.
    readable = demo_plaintext(demo_settings, 4, "webhookSecret")
    connection = sqlite3.connect(demo_settings.data_dir / "demo.sqlite3")
    config = json.loads(connection.execute("SELECT config FROM app_installations WHERE id = 4").fetchone()[0])
    config["apiKey"] = "zz" + config["apiKey"][2:]
    connection.execute("UPDATE app_installations SET config = ? WHERE id = 4", (json.dumps(config),))
    connection.commit()
    connection.close()
    result = run_toolkit(["show", "4", "--reveal"], demo_settings)
    assert result.returncode == 0, result.stderr
    assert readable in result.stdout and "malformed" in result.stdout


@pytest.mark.postgres
def test_a_config_nested_deeper_than_python_can_parse_is_one_line(pg_url, run_cli):
    connection = psycopg2.connect(pg_url)
    with connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (email) VALUES ('deep@example.com') RETURNING id")
        (user_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO app_installations (user_id, app_id, config) "
                       "VALUES (%s, 'stripe', ('{\"apiKey\": ' || repeat('[', 5000) || repeat(']', 5000) || '}')::jsonb) "
                       "RETURNING id", (user_id,))
        (installation_id,) = cursor.fetchone()
    connection.close()
    from toolkit.demo import DEMO_REGISTRY_PATH

    env = {"DATABASE_URL": pg_url, "ENCRYPTION_KEY": "cd" * 32, "TOOLKIT_REGISTRY": str(DEMO_REGISTRY_PATH)}
    result = run_cli("show", str(installation_id), env=env)
    assert result.returncode == 0, result.stderr
    assert "not a JSON object but JSON nested too deeply" in result.stdout
    assert "Traceback" not in result.stderr


def test_rotation_and_repair_skip_a_config_that_is_not_json(demo_settings):
    connection = sqlite3.connect(demo_settings.data_dir / "demo.sqlite3")
    connection.execute("UPDATE app_installations SET config = 'not json {' WHERE id = 5")
    connection.commit()
    connection.close()
    for args in (["keys", "rotate", "--dry-run"], ["repair", "--fix", "field.unknown", "--dry-run"], ["keys", "status"]):
        result = run_toolkit(args, demo_settings)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
