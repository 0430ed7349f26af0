"""The embedded demo database: deterministic, seeded with every finding, keys refused elsewhere."""

import hashlib
import sqlite3
import subprocess
import sys

import pytest

from toolkit import demo
from toolkit.context import Context
from toolkit.crypto import Keyring
from toolkit.errors import ConfigError
from toolkit.settings import Settings

AUDIT_CODES = {
    "app.unknown", "config.not-object", "config.non-string", "field.unknown", "field.missing",
    "field.invalid", "field.unexpected-ciphertext", "secret.plaintext", "secret.malformed",
    "secret.undecryptable", "secret.stale-key", "secret.nonce-reuse", "status.not-configured",
    "installation.timestamps", "user.email-case-duplicate",
}


def table_digest(path):
    connection = sqlite3.connect(path)
    rows = connection.execute(
        "SELECT id, user_id, app_id, status, config, installed_at, updated_at FROM app_installations ORDER BY id"
    ).fetchall()
    users = connection.execute("SELECT id, email FROM users ORDER BY id").fetchall()
    connection.close()
    return hashlib.sha256(repr((rows, users)).encode()).hexdigest(), len(rows), len(users)


def test_demo_is_deterministic(tmp_path):
    first = demo.ensure_demo_database(Settings(data_dir=tmp_path / "a"))
    second = demo.ensure_demo_database(Settings(data_dir=tmp_path / "b"))
    assert table_digest(first) == table_digest(second)
    digest, installations, users = table_digest(first)
    assert users == demo.USER_COUNT
    assert 3000 <= installations <= 5000


def test_demo_plants_every_audit_code():
    from toolkit.registry import load_registry

    data = demo.DemoData(load_registry(demo.DEMO_REGISTRY_PATH))
    data.generate()
    assert {p.code for p in data.planted} == AUDIT_CODES


def test_reset_rebuilds_a_changed_database(demo_settings):
    path = demo.demo_path(demo_settings)
    before = table_digest(path)
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM app_installations WHERE id < 100")
    connection.commit()
    connection.close()
    assert table_digest(path) != before
    demo.ensure_demo_database(demo_settings, reset=True)
    assert table_digest(path) == before


def test_context_uses_the_demo_and_says_so_once(tmp_path):
    lines = []
    context = Context(Settings(data_dir=tmp_path), announce=lines.append)
    context.database
    context.database
    assert len(lines) == 1 and "demo database" in lines[0] and "DATABASE_URL" in lines[0]
    assert context.keyring.is_demo


def test_demo_keys_are_refused_against_a_real_database():
    settings = Settings(database_url="postgresql://u@127.0.0.1:5432/app", encryption_key=demo.DEMO_KEY)
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY is the toolkit's public demo key"):
        Context(settings).keyring
    settings = Settings(database_url="postgresql://u@127.0.0.1:5432/app", encryption_key="ab" * 32,
                        encryption_key_previous=(demo.DEMO_PREVIOUS_KEY,))
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY_PREVIOUS #1 is the toolkit's public demo key"):
        Context(settings).keyring


def test_a_real_key_is_accepted_against_a_real_database():
    settings = Settings(database_url="postgresql://u@127.0.0.1:5432/app", encryption_key="ab" * 32)
    assert isinstance(Context(settings).keyring, Keyring)


def run_toolkit(args, settings, **kwargs):
    env = {"PATH": "/usr/bin:/bin", "TOOLKIT_DATA_DIR": str(settings.data_dir),
           "TOOLKIT_ACCESS_LOG": str(settings.access_log), "HOME": str(settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, text=True,
                          env=env, cwd=settings.data_dir, timeout=60, **kwargs)


def demo_plaintext(settings, installation_id, field):
    context = Context(settings, announce=lambda line: None)
    from toolkit.inspection import load_installation

    view = load_installation(context.database, context.registry, context.keyring, installation_id)
    return view.field(field).value.reveal()


def test_show_masks_secrets_and_reveal_logs_each_field(demo_settings):
    plaintext = demo_plaintext(demo_settings, 4, "apiKey")
    masked = run_toolkit(["show", "4"], demo_settings)
    assert masked.returncode == 0, masked.stderr
    assert "Secret key" in masked.stdout and "••••••" in masked.stdout
    assert plaintext not in masked.stdout + masked.stderr
    assert "demo database" in masked.stderr
    assert not demo_settings.access_log.exists()

    revealed = run_toolkit(["show", "4", "--reveal", "--field", "apiKey"], demo_settings)
    assert revealed.returncode == 0, revealed.stderr
    assert plaintext in revealed.stdout
    log = demo_settings.access_log.read_text()
    assert log.count("\n") == 1 and '"field": "apiKey"' in log and '"installation_id": 4' in log
    assert plaintext not in log


def test_show_json_is_masked(demo_settings):
    import json

    result = run_toolkit(["show", "4", "--json"], demo_settings)
    data = json.loads(result.stdout)
    assert data["config"]["apiKey"]["state"] == "encrypted"
    assert data["config"]["apiKey"]["value"].startswith("••••••")
    assert demo_plaintext(demo_settings, 4, "apiKey") not in result.stdout


def test_show_of_a_missing_installation_is_one_line(demo_settings):
    result = run_toolkit(["show", "999999"], demo_settings)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: installation 999999 does not exist"
    assert "Traceback" not in result.stderr


def test_demo_command_refuses_a_real_database(demo_settings):
    result = run_toolkit(["--database-url", "postgresql://u@127.0.0.1:5432/x", "demo"], demo_settings)
    assert result.returncode == 2 and "unset DATABASE_URL" in result.stderr
