"""The database of a careless app (issue 11, DESIGN.md §4.4): a secret wherever it sits.

Over the years the app wrote ciphertexts where the registry no longer expects them: under the
old key in a field the registry does not define, in an app removed from the registry, in a
text field and in a password field; it damaged some ciphertexts and stored some passwords in
the clear, colons included. The database is seeded by the app's own Node crypto
(tests/node/careless_seed.mjs, both IV lengths) and then examined only through the real CLI,
as an operator following the README's rotation runbook would:

- before rotation, `keys status` counts the four old-key values and keeps the old key, naming
  where its values are; the audit calls each `secret.stale-key`; `show` masks each;
- damaged ciphertexts are `secret.malformed` (with the reason) and human passwords with colons
  `secret.plaintext`, and `toolkit decrypt` classifies each value the same way;
- after `keys rotate --yes` each old-key value decrypts in Node under the new key to its
  original plaintext, nothing else changed, and only then is the old key retirable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import psycopg2
import pytest

pytestmark = pytest.mark.node

HERE = Path(__file__).parent
SEEDER = HERE / "node" / "careless_seed.mjs"
NODE_CRYPTO = HERE / "node_crypto.js"
REGISTRY = HERE / "fixtures" / "registries" / "careless.json"
OLD_KEY, NEW_KEY = secrets.token_hex(32), secrets.token_hex(32)

# Ids far from any count the CLI prints, so finding one in its output means it names the row.
CAREFUL, CARELESS = 901, 902

# The four values under the old key: id -> (app, field, plaintext, IV length).
STALE = {
    7101: ("stripe", "legacyToken", "tok_unknown_field_7101", 12),  # a key the registry does not define
    7102: ("legacy-crm", "crmToken", "crm_removed_app_7102", 16),  # an app missing from the registry
    7103: ("stripe", "note", "once_a_secret_note_7103", 12),  # a text field
    7104: ("stripe", "apiKey", "sk_live_password_field_7104", 16),  # a password field
}
# Damaged ciphertexts in the password field: id -> (damage, IV length, what the reason names).
DAMAGED = {
    7105: ("tag-nonhex", 16, "hex"),
    7106: ("lost-iv", 12, "iv"),
    7107: ("fourth-part", 16, "part|segment|colon"),
    7108: (None, 10, "iv"),  # Node encrypts with any IV length; the app once had 10 bytes
    7109: ("tag-15", 12, "tag"),
}
# Human passwords stored in the clear: not ciphertext-shaped, colons or not.
PLAINTEXT = {7110: "a:b:c with colons", 7111: "Summer:2024:Pass!", 7112: "hunter2"}
CLEAN = (7113, 7114)  # under the new key, nothing wrong with them


def old(plaintext, iv):
    return {"encrypt": plaintext, "key": "old", "iv": iv}


def new(plaintext, iv, damage=None):
    return {"encrypt": plaintext, "key": "new", "iv": iv, **({"damage": damage} if damage else {})}


def plan() -> dict:
    """What the careless app wrote, as careless_seed.mjs takes it."""
    installations = [
        {"id": 7101, "userId": CARELESS, "appId": "stripe", "status": "configured",
         "config": {"apiKey": new("sk_live_current_7101", 16), "region": "us",
                    "legacyToken": old(*STALE[7101][2:])}},
        {"id": 7102, "userId": CARELESS, "appId": "legacy-crm", "status": "configured",
         "config": {"crmToken": old(*STALE[7102][2:]), "endpoint": "https://crm.example.com/hook"}},
        {"id": 7103, "userId": CAREFUL, "appId": "stripe", "status": "configured",
         "config": {"apiKey": new("sk_live_current_7103", 12), "region": "eu", "note": old(*STALE[7103][2:])}},
        {"id": 7104, "userId": 903, "appId": "stripe", "status": "configured",
         "config": {"apiKey": old(*STALE[7104][2:]), "region": "us"}},
    ]
    users = [CAREFUL, CARELESS, 903]
    for number, (row_id, (damage, iv, _)) in enumerate(DAMAGED.items()):
        users.append(910 + number)
        installations.append({"id": row_id, "userId": 910 + number, "appId": "stripe", "status": "configured",
                              "config": {"apiKey": new(f"sk_live_damaged_{row_id}", iv, damage), "region": "us"}})
    for number, (row_id, password) in enumerate(PLAINTEXT.items()):
        users.append(920 + number)
        installations.append({"id": row_id, "userId": 920 + number, "appId": "stripe", "status": "configured",
                              "config": {"apiKey": password, "region": "eu"}})
    installations += [
        {"id": 7113, "userId": 930, "appId": "stripe", "status": "configured",
         "config": {"apiKey": new("sk_live_clean_7113", 16), "region": "eu",
                    "webhookUrl": "https://hooks.example.com/7113", "note": "a plain note"}},
        {"id": 7114, "userId": 931, "appId": "stripe", "status": "configured",
         "config": {"apiKey": new("sk_live_clean_7114", 12), "region": "us"}},
    ]
    users += [930, 931]
    return {"users": [{"id": i, "email": f"user{i}@example.com"} for i in users], "installations": installations}


def seed(node_bin, url: str | None = None) -> dict[int, dict]:
    """Run the seeder (inserting into `url` when given); the configs as stored, by id."""
    env = {**os.environ, "KEY_OLD": OLD_KEY, "KEY_NEW": NEW_KEY}
    env.pop("DATABASE_URL", None)
    if url:
        env["DATABASE_URL"] = url
    result = subprocess.run([node_bin, str(SEEDER)], input=json.dumps(plan()), capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return {int(k): v for k, v in json.loads(result.stdout)["configs"].items()}


def node_decrypt(node_bin, key: str, values: list[str]) -> list[dict]:
    """The app's own decrypt (tests/node_crypto.js) under `key`: [{ok} | {error}] per value."""
    result = subprocess.run([node_bin, str(NODE_CRYPTO)], input=json.dumps([{"op": "decrypt", "value": v} for v in values]),
                            capture_output=True, text=True, env={**os.environ, "ENCRYPTION_KEY": key},
                            timeout=60, check=True)
    return json.loads(result.stdout)


def stale_value(stored, row_id) -> str:
    return stored[row_id][STALE[row_id][1]]


def cli_env(tmp_path, url: str | None) -> dict:
    env = {"ENCRYPTION_KEY": NEW_KEY, "ENCRYPTION_KEY_PREVIOUS": OLD_KEY, "TOOLKIT_REGISTRY": str(REGISTRY),
           "TOOLKIT_ACCESS_LOG": str(tmp_path / "access.log")}
    if url:
        env["DATABASE_URL"] = url
    return env


def pg_configs(url) -> dict[int, dict]:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT id, config FROM app_installations ORDER BY id")
            return dict(cursor.fetchall())
    finally:
        connection.close()


@pytest.fixture
def careless(pg_url, node_bin, tmp_path):
    """(env for the CLI, the configs as the app stored them) on a fresh PostgreSQL database."""
    stored = seed(node_bin, pg_url)
    assert pg_configs(pg_url) == stored  # the seeder wrote exactly what it reports
    return cli_env(tmp_path, pg_url), stored


# ---- reading the CLI's answers ----------------------------------------------------------

def key_status(run_cli, env) -> dict:
    result = run_cli("keys", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def key_entry(status: dict, label: str) -> dict:
    (entry,) = [k for k in status["keys"] if k["label"] == label]
    return entry


def audit(run_cli, env) -> list[dict]:
    result = run_cli("audit", "--format", "json", "--fail-on", "never", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["findings"]


def codes_by_row(findings) -> dict[tuple[int, str | None], set[str]]:
    out: dict = {}
    for f in findings:
        out.setdefault((f["installation_id"], f["field"]), set()).add(f["code"])
    return out


def names_row(text: str, row_id: int) -> bool:
    """A line names the row: its installation id, or its app and field together."""
    app, field = STALE[row_id][:2]
    return any(re.search(rf"\b{row_id}\b", line) or (app in line and field in line) for line in text.splitlines())


def leaks(text: str, stored: dict, row_ids) -> list[str]:
    """Which secrets (plaintexts, stored ciphertexts) of these rows appear in `text`."""
    secrets_of = {}
    for row_id in row_ids:
        if row_id in STALE:
            secrets_of[f"{row_id} plaintext"] = STALE[row_id][2]
            secrets_of[f"{row_id} ciphertext"] = stale_value(stored, row_id)
        if row_id in PLAINTEXT:
            secrets_of[f"{row_id} plaintext password"] = PLAINTEXT[row_id]
    return [name for name, secret in secrets_of.items() if secret in text]


ALL_SECRET_ROWS = (*STALE, *PLAINTEXT)


# ---- before rotation --------------------------------------------------------------------

def assert_status_keeps_the_old_key(run_cli, env):
    status = key_status(run_cli, env)
    previous = key_entry(status, "previous #1")
    assert previous["values"] == 4, status  # unknown field, missing app, text field, password field
    assert previous["retirable"] is False, status
    assert key_entry(status, "current")["values"] == 4, status  # 7101, 7103, 7113, 7114
    assert (status["malformed"], status["plaintext"], status["undecryptable"]) == (5, 3, 0), status

    text = run_cli("keys", "status", env=env)
    assert text.returncode == 0, text.stderr
    assert "can be removed" not in text.stdout and "authenticates no value" not in text.stdout, text.stdout
    unnamed = [row_id for row_id in STALE if not names_row(text.stdout, row_id)]
    assert unnamed == [], f"keys status does not say where these old-key values are: {unnamed}\n{text.stdout}"


def test_keys_status_counts_every_old_key_value_and_keeps_the_key(careless, run_cli):
    env, _ = careless
    assert_status_keeps_the_old_key(run_cli, env)


def test_audit_reports_each_old_key_value_as_stale(careless, run_cli):
    env, stored = careless
    findings = audit(run_cli, env)
    by_row = codes_by_row(findings)
    for row_id, (_, field, _, _) in STALE.items():
        assert "secret.stale-key" in by_row.get((row_id, field), set()), (row_id, field, by_row)
    assert "field.unknown" in by_row[(7101, "legacyToken")]
    assert "app.unknown" in by_row[(7102, None)]
    assert "field.unexpected-ciphertext" in by_row[(7103, "note")]
    stale = {(f["installation_id"], f["field"]) for f in findings if f["code"] == "secret.stale-key"}
    assert stale == {(row_id, field) for row_id, (_, field, _, _) in STALE.items()}
    assert not [f for f in findings if f["code"] in ("secret.undecryptable", "secret.nonce-reuse")]
    assert [f for f in findings if f["installation_id"] in CLEAN] == []
    assert leaks(json.dumps(findings), stored, ALL_SECRET_ROWS) == []


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_show_masks_every_old_key_value_and_plaintext_password(careless, run_cli, as_json):
    env, stored = careless
    leaked = []
    for row_id in ALL_SECRET_ROWS:
        result = run_cli("show", row_id, *(["--json"] if as_json else []), env=env)
        assert result.returncode == 0, result.stderr
        leaked += leaks(result.stdout + result.stderr, stored, [row_id])
    assert leaked == []


def test_damaged_ciphertexts_are_malformed_and_colon_passwords_plaintext(careless, run_cli):
    env, stored = careless
    findings = audit(run_cli, env)
    by_row = codes_by_row(findings)
    for row_id, (damage, iv, reason_word) in DAMAGED.items():
        codes = by_row.get((row_id, "apiKey"), set())
        assert "secret.malformed" in codes and "secret.plaintext" not in codes, (row_id, damage or f"iv-{iv}", codes)
        (finding,) = [f for f in findings if f["installation_id"] == row_id and f["code"] == "secret.malformed"]
        assert re.search(rf"\b({reason_word})", finding["message"].lower()), (damage, finding["message"])
        assert stored[row_id]["apiKey"] not in json.dumps(finding)
    for row_id in PLAINTEXT:
        codes = by_row.get((row_id, "apiKey"), set())
        assert "secret.plaintext" in codes and "secret.malformed" not in codes, (row_id, codes)


def test_decrypt_classifies_each_value_as_the_audit_does(careless, run_cli):
    env, stored = careless

    def decrypt(value):
        result = run_cli("decrypt", env=env, input=value + "\n")
        assert result.returncode == 2 and result.stdout == "", (value, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0].lower()

    for row_id, (damage, iv, _) in DAMAGED.items():
        assert "malformed" in decrypt(stored[row_id]["apiKey"]), (row_id, damage or f"iv-{iv}")
    for row_id, password in PLAINTEXT.items():
        line = decrypt(password)
        assert "malformed" not in line and re.search(r"\bnot (a|an|in the)\b.*ciphertext", line), (password, line)
        assert password.lower() not in line


# ---- the runbook: rotate, then retire ----------------------------------------------------

def assert_rotation_re_encrypts_every_old_key_value(run_cli, node_bin, env, url, stored):
    result = run_cli("keys", "rotate", "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert_rotated(run_cli, node_bin, env, url, stored)


def assert_rotated(run_cli, node_bin, env, url, stored):
    after = pg_configs(url)

    rotated = [after[row_id][STALE[row_id][1]] for row_id in STALE]
    opened = node_decrypt(node_bin, NEW_KEY, rotated)
    assert [r.get("ok") for r in opened] == [plaintext for _, _, plaintext, _ in STALE.values()], opened
    for row_id, value in zip(STALE, rotated):
        assert value.split(":")[0] != stale_value(stored, row_id).split(":")[0]  # a fresh IV
    # Nothing else was written: damaged, plaintext and current values byte for byte, other fields too.
    expected = {row_id: dict(config) for row_id, config in stored.items()}
    for row_id, value in zip(STALE, rotated):
        expected[row_id][STALE[row_id][1]] = value
    assert after == expected

    status = key_status(run_cli, env)
    previous = key_entry(status, "previous #1")
    assert previous["values"] == 0 and previous["retirable"] is True, status
    assert key_entry(status, "current")["values"] == 8, status
    text = run_cli("keys", "status", env=env).stdout
    assert "can be removed" in text, text


def test_rotation_re_encrypts_every_old_key_value_then_the_key_is_retirable(careless, run_cli, node_bin):
    env, stored = careless
    assert_rotation_re_encrypts_every_old_key_value(run_cli, node_bin, env, env["DATABASE_URL"], stored)
    findings = audit(run_cli, env)
    assert [f for f in findings if f["code"] == "secret.stale-key"] == []
    by_row = codes_by_row(findings)
    assert "field.unexpected-ciphertext" in by_row[(7103, "note")]  # still misplaced, now current


def pooled(env, pgbouncer_url) -> dict:
    return {**env, "DATABASE_URL": pgbouncer_url(env["DATABASE_URL"])}


def test_status_through_pgbouncer_keeps_the_old_key(careless, run_cli, pgbouncer_url):
    env, _ = careless
    assert_status_keeps_the_old_key(run_cli, pooled(env, pgbouncer_url))


def test_rotation_through_pgbouncer_re_encrypts_every_old_key_value(careless, run_cli, node_bin, pgbouncer_url):
    env, stored = careless
    assert_rotation_re_encrypts_every_old_key_value(run_cli, node_bin, pooled(env, pgbouncer_url),
                                                    env["DATABASE_URL"], stored)


# ---- the same careless data in SQLite -------------------------------------------------------
# The CLI runs SQLite only as the demo database, which never takes a real key (issue 12): the
# same rules are exercised through the Python API on a SQLite file with the app's schema.

@pytest.fixture
def careless_sqlite(node_bin, tmp_path):
    from toolkit import db

    stored = seed(node_bin)
    database = db.open_sqlite(tmp_path / "careless.sqlite3")
    db.create_tables(database)
    rows = plan()
    with database.atomic():
        for user in rows["users"]:
            database.execute_sql("INSERT INTO users (id, email, role) VALUES (?, ?, 'customer')", (user["id"], user["email"]))
        for r in rows["installations"]:
            database.execute_sql(
                "INSERT INTO app_installations (id, user_id, app_id, status, config) VALUES (?, ?, ?, ?, ?)",
                (r["id"], r["userId"], r["appId"], r["status"], json.dumps(stored[r["id"]])))
    yield database, stored
    database.close()


def _api_keyring():
    from toolkit.crypto import Keyring

    return Keyring.from_materials([bytes.fromhex(NEW_KEY), bytes.fromhex(OLD_KEY)])


def test_sqlite_keys_status_counts_every_old_key_value(careless_sqlite):
    from toolkit.cli._keys import render_status
    from toolkit.keys.usage import key_usage
    from toolkit.registry import load_registry

    database, _ = careless_sqlite
    usage = key_usage(database, load_registry(REGISTRY), _api_keyring())
    status = usage.as_dict()
    previous = key_entry(status, "previous #1")
    assert previous["values"] == 4 and previous["retirable"] is False, status
    assert key_entry(status, "current")["values"] == 4, status
    assert (status["malformed"], status["plaintext"], status["undecryptable"]) == (5, 3, 0), status
    text = render_status(usage)
    assert "can be removed" not in text and "authenticates no value" not in text, text
    assert [row_id for row_id in STALE if not names_row(text, row_id)] == [], text


def test_sqlite_audit_sees_every_old_key_value_and_damage(careless_sqlite):
    from toolkit.audit import run_audit
    from toolkit.registry import load_registry

    database, stored = careless_sqlite
    rendered = run_audit(database, load_registry(REGISTRY), _api_keyring()).render("json")
    findings = json.loads(rendered)["findings"]
    stale = {(f["installation_id"], f["field"]) for f in findings if f["code"] == "secret.stale-key"}
    assert stale == {(row_id, field) for row_id, (_, field, _, _) in STALE.items()}
    by_row = codes_by_row(findings)
    assert {row_id for row_id in DAMAGED if "secret.malformed" in by_row.get((row_id, "apiKey"), set())} == set(DAMAGED)
    assert {row_id for row_id in PLAINTEXT if "secret.plaintext" in by_row.get((row_id, "apiKey"), set())} == set(PLAINTEXT)
    assert leaks(rendered, stored, ALL_SECRET_ROWS) == []
