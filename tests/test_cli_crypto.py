"""`toolkit decrypt|encrypt|keys` as an operator runs them: real processes, exit codes,
nothing on stdout when it fails, an access-log line per decrypt, bytes through pipes unchanged."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from toolkit.crypto import Keyring
from toolkit.settings import Settings

KEY, OLD, LOST = (secrets.token_hex(32) for _ in range(3))


@pytest.fixture
def run(tmp_path):
    """Run `python -m toolkit ARGS` in an empty directory with only the given settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLKIT_", "ENCRYPTION_", "DATABASE_", "DIRECT_"))}
    base.update(ENCRYPTION_KEY=KEY, ENCRYPTION_KEY_PREVIOUS=OLD, TOOLKIT_ACCESS_LOG=str(tmp_path / "access.log"),
                TOOLKIT_DATA_DIR=str(tmp_path / "data"))

    def run(*args, stdin="", **env):
        """stdin as str: text in and out; as bytes: bytes in and out (no newline translation)."""
        environment = {**base, **env}
        for name, value in env.items():
            if value is None:
                environment.pop(name)
        return subprocess.run([sys.executable, "-m", "toolkit", *args], input=stdin, capture_output=True,
                              text=isinstance(stdin, str), cwd=tmp_path, env=environment, timeout=60)

    run.log = tmp_path / "access.log"
    run.env = base
    run.cwd = tmp_path
    return run


def keyring(*keys):
    return Keyring.from_settings(Settings(encryption_key=keys[0], encryption_key_previous=keys[1:]))


def test_decrypt_argument_and_stdin(run):
    value = keyring(KEY).encrypt("sk_live_plain ✓")
    by_argument = run("decrypt", value)
    assert (by_argument.returncode, by_argument.stdout) == (0, "sk_live_plain ✓")  # a pipe: nothing added
    by_stdin = run("decrypt", stdin=value + "\n")
    assert (by_stdin.returncode, by_stdin.stdout) == (0, "sk_live_plain ✓")
    assert "sk_live_plain" not in by_stdin.stderr


def test_decrypt_says_when_a_previous_key_fitted(run):
    result = run("decrypt", stdin=keyring(OLD).encrypt("old"))
    assert result.returncode == 0 and result.stdout == "old"
    assert "previous #1" in result.stderr and OLD not in result.stderr


def test_each_decrypt_is_logged_without_the_value(run):
    for plain in ("first-secret-value", "second-secret-value"):
        assert run("decrypt", stdin=keyring(KEY).encrypt(plain)).returncode == 0
    lines = [json.loads(line) for line in run.log.read_text().splitlines()]
    assert len(lines) == 2
    assert all(e["via"] == "cli" and e["installation_id"] is None for e in lines)
    assert lines[0]["key_fingerprint"] == keyring(KEY).current.fingerprint
    assert "secret-value" not in run.log.read_text()


@pytest.mark.parametrize(
    "value, words",
    [
        (keyring(LOST).encrypt("x"), "wrong key or tampered"),
        ("ab" * 10 + ":" + "cd" * 16 + ":00", "malformed ciphertext: IV is 10 bytes"),
        ("ab" * 16 + ":" + "cd" * 12 + ":00", "malformed ciphertext: auth tag is 12 bytes"),
        ("just a plaintext password", "not a ciphertext: the value is not in the iv:authTag:ciphertext format"),
    ],
)
def test_decrypt_failures_one_line_exit_2_empty_stdout(run, value, words):
    result = run("decrypt", stdin=value)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not run.log.exists()  # nothing revealed, nothing logged


def test_decrypt_tampered_value(run):
    iv, tag, body = keyring(KEY).encrypt("payload").split(":")
    tampered = f"{iv}:{tag}:{body[:-2]}{int(body[-2:], 16) ^ 1:02x}"
    result = run("decrypt", tampered)
    assert (result.returncode, result.stdout) == (2, "")
    assert "wrong key or tampered" in result.stderr


def test_bad_key_is_a_config_error_naming_the_variable(run):
    result = run("decrypt", "x", ENCRYPTION_KEY_PREVIOUS="not-a-key-" + "z" * 20)
    assert (result.returncode, result.stdout) == (2, "")
    assert "ENCRYPTION_KEY_PREVIOUS #1" in result.stderr and "z" * 20 not in result.stderr


def test_encrypt_round_trip_and_refusal(run):
    result = run("encrypt", stdin="new secret ✓\n")
    assert result.returncode == 0
    value = result.stdout.strip()
    assert result.stdout == value + "\n"
    assert keyring(KEY).decrypt(value).secret.reveal() == "new secret ✓"  # one newline dropped
    assert len(value.split(":")[0]) == 32
    again = run("encrypt", value)
    assert (again.returncode, again.stdout) == (2, "")
    assert "already a ciphertext" in again.stderr
    short_iv = run("encrypt", "v", TOOLKIT_IV_LENGTH="12")
    assert len(short_iv.stdout.split(":")[0]) == 24


def test_encrypt_without_a_key(run):
    result = run("encrypt", "v", ENCRYPTION_KEY=None, ENCRYPTION_KEY_PREVIOUS=None, DATABASE_URL="postgresql://nowhere/x")
    assert (result.returncode, result.stdout) == (2, "")
    assert "ENCRYPTION_KEY is not set" in result.stderr


HOSTILE = b"pa\x1b[31mss\tw\x01rd"


def test_a_secret_with_escapes_survives_a_real_shell_pipe(run):
    """The README's promise, as an operator types it: printf | encrypt | decrypt."""
    toolkit = f"{sys.executable} -m toolkit"
    pipeline = f"printf 'pa\\033[31mss\\tw\\001rd' | {toolkit} encrypt | {toolkit} decrypt"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, env=run.env,
                            cwd=run.cwd, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == HOSTILE


def test_decrypt_and_encrypt_keep_every_byte_but_one_final_newline(run):
    for plaintext in ("a\r\nb\r", "two newlines\n\n", " spaced \t", "\x1b]52;c;ZWNobyBQV05FRAo=\x07"):
        value = run("encrypt", stdin=plaintext.encode() + b"\n").stdout  # one newline dropped
        assert keyring(KEY).decrypt(value.decode().rstrip("\n")).secret.reveal() == plaintext
        assert run("decrypt", stdin=value).stdout == plaintext.encode()  # its "\n" dropped, nothing else
    value = keyring(KEY).encrypt("x")
    for padded in (value + " ", value + "\n\n", " " + value, value + "\r\n"):
        result = run("decrypt", stdin=padded.encode())
        assert (result.returncode, result.stdout) == (2, b""), padded  # only ONE "\n" is forgiven
        assert b"malformed ciphertext" in result.stderr


@pytest.mark.parametrize("command", ["decrypt", "encrypt"])
@pytest.mark.parametrize("stdin", [b"", b"\n"])
def test_empty_input_is_an_error_not_an_empty_value(run, command, stdin):
    result = run(command, stdin=stdin)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode().startswith("error: the input was empty")
    assert len(result.stderr.splitlines()) == 1


def test_encrypt_warns_that_an_argument_is_visible_to_others(run):
    by_argument = run("encrypt", "s3cret-value")
    assert by_argument.returncode == 0
    assert keyring(KEY).decrypt(by_argument.stdout.strip()).secret.reveal() == "s3cret-value"
    warning = by_argument.stderr
    assert "process list" in warning and "shell history" in warning and "stdin" in warning
    assert "s3cret-value" not in warning
    assert run("encrypt", stdin="s3cret-value").stderr == ""  # stdin: nothing to warn about


def test_stdin_that_is_not_text_or_never_ends_is_refused_in_one_line(run, tmp_path):
    not_utf8 = run("encrypt", stdin=b"\xff\xfe")
    assert (not_utf8.returncode, not_utf8.stdout) == (2, b"") and b"not UTF-8" in not_utf8.stderr
    with open("/dev/zero", "rb") as zeros:
        endless = subprocess.run([sys.executable, "-m", "toolkit", "encrypt"], stdin=zeros, capture_output=True,
                                 env=run.env, cwd=tmp_path, timeout=60)
    assert (endless.returncode, endless.stdout) == (2, b"")
    assert b"longer than" in endless.stderr and len(endless.stderr.splitlines()) == 1


def test_keys_generate(run):
    first, second = run("keys", "generate"), run("keys", "generate")
    assert first.returncode == 0
    key = first.stdout.strip()
    assert len(key) == 64 and bytes.fromhex(key) and key != second.stdout.strip()
    assert keyring(key).current  # usable as ENCRYPTION_KEY


def test_keys_help_lists_rotate_only_when_present(run):
    result = run("keys", "--help")
    assert result.returncode == 0 and "generate" in result.stdout and "status" in result.stdout
    rotate_module = Path(__file__).resolve().parent.parent / "toolkit" / "cli" / "_rotate.py"
    assert ("rotate" in result.stdout.split("Commands:")[1]) == rotate_module.exists()


# ---- keys status over PostgreSQL --------------------------------------------------------------

REGISTRY = {
    "stripe": {"name": "Stripe", "category": "payments", "fields": [
        {"key": "apiKey", "label": "Secret key", "type": "password", "required": True},
        {"key": "webhookSecret", "label": "Webhook secret", "type": "password"},
        {"key": "region", "label": "Region", "type": "select", "options": ["us", "eu"]}]},
    "slack": {"name": "Slack", "category": "chat", "fields": [
        {"key": "token", "label": "Bot token", "type": "password", "required": True}]},
}


def seed(url, configs):
    """One user per installation (the app allows one installation per user and app)."""
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        for n, (app_id, config) in enumerate(configs):
            cursor.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (f"u{n}@example.com",))
            cursor.execute("INSERT INTO app_installations (user_id, app_id, config) VALUES (%s, %s, %s)",
                           (cursor.fetchone()[0], app_id, json.dumps(config)))
    connection.close()


@pytest.mark.postgres
def test_keys_status_counts_per_key(run, pg_url, tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY))
    current, old, lost = keyring(KEY), keyring(OLD), keyring(LOST)
    configs = [("stripe", {"apiKey": current.encrypt(f"k{n}"), "region": "us"}) for n in range(7)]
    configs += [("stripe", {"apiKey": old.encrypt("o"), "webhookSecret": current.encrypt("w")})]
    configs += [("slack", {"token": old.encrypt("t")}), ("slack", {"token": lost.encrypt("t")})]
    configs += [("slack", {"token": "xoxb-plaintext"}), ("slack", {"token": "ab:cd:ef"}), ("slack", {"token": ""})]
    configs += [("unknown-app", {"token": current.encrypt("t")}), ("stripe", {"region": current.encrypt("not secret")})]
    seed(pg_url, configs)
    env = dict(DATABASE_URL=pg_url, TOOLKIT_REGISTRY=str(registry))

    result = run("keys", "status", "--json", **env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(k["label"], k["values"], k["retirable"]) for k in data["keys"]] == [
        ("current", 10, False), ("previous #1", 2, False)]
    # A ciphertext counts wherever it sits: an unknown app's token, a select field's value.
    assert data["keys"][0]["outside_password_fields"] == 2
    assert data["keys"][0]["fingerprint"] == current.current.fingerprint
    assert (data["undecryptable"], data["plaintext"], data["malformed"], data["empty"]) == (1, 2, 0, 1)
    assert (data["installations"], data["unknown_app"], data["values"]) == (len(configs), 1, 15)

    table = run("keys", "status", **env)
    assert table.returncode == 0
    assert "previous #1" in table.stdout and "still authenticates 2 values" in table.stdout
    assert KEY not in table.stdout and OLD not in table.stdout

    # With an extra previous key that nothing uses: it is reported as retirable.
    spare = secrets.token_hex(32)
    retire = run("keys", "status", ENCRYPTION_KEY_PREVIOUS=f"{OLD},{spare}", **env)
    assert "previous #2" in retire.stdout and "authenticates no value: it can be removed" in retire.stdout


@pytest.mark.postgres
def test_keys_status_pages_through_many_rows(pg_url, tmp_path):
    """Small pages, so the keyset walk crosses many page boundaries without losing a row."""
    from toolkit import db
    from toolkit.keys.usage import key_usage
    from toolkit.registry import load_registry

    registry_path = tmp_path / "registry.json"
    registry_path.write_text(json.dumps(REGISTRY))
    current = keyring(KEY)
    seed(pg_url, [("slack", {"token": current.encrypt(str(n))}) for n in range(53)])
    database = db.open_postgres(pg_url)
    try:
        usage = key_usage(database, load_registry(registry_path), keyring(KEY, OLD), page_size=10)
    finally:
        database.close()
    assert usage.per_key == [53, 0] and usage.installations == 53
    assert [k.label for k in usage.retirable()] == ["previous #1"]


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_keys_status_through_the_transaction_pooler(run, pg_url, pgbouncer_url, tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY))
    seed(pg_url, [("slack", {"token": keyring(OLD).encrypt(str(n))}) for n in range(5)])
    result = run("keys", "status", "--json", DATABASE_URL=pgbouncer_url(pg_url), TOOLKIT_REGISTRY=str(registry))
    assert result.returncode == 0, result.stderr
    assert [k["values"] for k in json.loads(result.stdout)["keys"]] == [0, 5]
