"""End to end, against the app's own code: what the toolkit promises an operator of the real app.

The app is simulated by tests/node/app_sim.mjs — Drizzle ORM + node-postgres with the app's
schema, through PgBouncer in transaction mode (pool of 2), encrypting password fields with the
app's crypto.ts (16-byte IVs, 12 as an option). The toolkit runs as an operator runs it: the
`toolkit` command in a subprocess with DATABASE_URL pointing at the same pooler, or the Python
API. Registries are not the demo one (tests/fixtures/registries/e2e_*.json): select options as
{value, label}, anchored and unanchored patterns, unknown field types, an app without required
fields, apps with only password fields, an app without fields.

    1. the app writes clean data                -> audit: zero findings; show masks; reveal/decrypt give
                                                   exactly what Node wrote
    2. the app writes the rows a buggy app would -> audit: exactly those (code, installation, field)
    3. the toolkit writes                       -> the app reads every value back
    4. key rotation while the app keeps writing  -> nothing lost, everything under the new key
    5. audit + dashboard queries + the app share one pooler -> no errors, no session state leaks
    6. other registries: registry check, audit with each
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_SIM = ROOT / "tests" / "node" / "app_sim.mjs"
REGISTRIES = ROOT / "tests" / "fixtures" / "registries"
INTEGRATIONS = REGISTRIES / "e2e_integrations.json"
MINIMAL = REGISTRIES / "e2e_minimal.json"

# Two app keys (64 hex characters each, as the app's ENCRYPTION_KEY).
K1 = "5a1c0f3e9b7d2a4c6e8f0a1b3c5d7e9f11223344556677889900aabbccddeeff"
K2 = "c0ffee00deadbeef0123456789abcdeffedcba98765432100f1e2d3c4b5a6978"

SID = "AC" + "0123456789abcdef" * 2  # a valid Twilio account SID (pattern AC[0-9a-f]{32})
GREETING = 'Hi\t"there" \\ back\\nslash\nünïcödé 🎉 {"x": 1}'  # JSON and COPY escapes, non-ASCII


# ---- the app ---------------------------------------------------------------------------------

class App:
    """One deployment of the simulated app: a database URL, a registry, keys, an IV length."""

    def __init__(self, node_bin, url, registry, key=K1, previous=(), iv_length=16):
        self.node_bin, self.url, self.registry = node_bin, url, registry
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS")},
            "DATABASE_URL": url, "ENCRYPTION_KEY": key,
            "ENCRYPTION_KEY_PREVIOUS": ",".join(previous), "IV_LENGTH": str(iv_length),
        }

    def with_keys(self, key, previous=(), iv_length=16) -> "App":
        return App(self.node_bin, self.url, self.registry, key, previous, iv_length)

    def start(self, ops) -> subprocess.Popen:
        process = subprocess.Popen(
            [self.node_bin, str(APP_SIM), "--registry", str(self.registry)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        process.stdin.write(json.dumps(ops))
        process.stdin.close()
        return process

    @staticmethod
    def results(process, timeout=60) -> list:
        stdout = process.stdout.read()
        process.wait(timeout=timeout)
        stderr = process.stderr.read()
        assert process.returncode == 0, f"app_sim failed: {stderr}"
        results = json.loads(stdout)
        errors = [r["error"] for r in results if "error" in r]
        assert not errors, f"the app failed: {errors}"
        return [r["ok"] for r in results]

    def run(self, ops) -> list:
        return self.results(self.start(ops))

    def one(self, op, **args):
        return self.run([{"op": op, **args}])[0]


@pytest.fixture
def databases(pg_url, pgbouncer_url):
    """(direct URL, pooler URL) of one fresh database with the app's schema."""
    return pg_url, pgbouncer_url(pg_url)


@pytest.fixture
def app(node_bin, drizzle_kit, databases):
    """The app, deployed with K1 and the integrations registry, writing through the pooler.
    (`drizzle_kit` makes sure tests/node/node_modules is installed.)"""
    return App(node_bin, databases[1], INTEGRATIONS)


@pytest.fixture
def toolkit(run_cli, databases, tmp_path):
    """toolkit(*args, **env) -> CompletedProcess: `python -m toolkit` as an operator runs it."""

    def run(*args, input=None, **env):
        base = {
            "DATABASE_URL": databases[1], "ENCRYPTION_KEY": K1, "TOOLKIT_REGISTRY": str(INTEGRATIONS),
            "TOOLKIT_ACCESS_LOG": str(tmp_path / "access.log"),
        }
        base.update({k: v for k, v in env.items() if v is not None})
        for name in [k for k, v in env.items() if v is None]:
            base.pop(name, None)
        return run_cli(*args, env=base, input=input)

    return run


def audit_json(toolkit, *args, **env) -> tuple[dict, int]:
    result = toolkit("audit", "--format", "json", "--no-progress", *args, **env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout), result.returncode


def found(report) -> set[tuple]:
    return {(f["code"], f["installation_id"], f["field"]) for f in report["findings"]}


def direct(url):
    return contextlib.closing(psycopg2.connect(url))


def stored(url, installation_id) -> dict:
    with direct(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT config FROM app_installations WHERE id = %s", (installation_id,))
        return cursor.fetchone()[0]


# ---- the clean data the app writes ------------------------------------------------------------

CLEAN = {
    # name: (user, app, status, plaintext config)
    "twilio": ("alice@example.com", "twilio", "configured", {
        "accountSid": SID, "authToken": "tw-auth-0001", "region": "ie1",
        "statusCallback": "https://hooks.example.com/twilio?x=1&y=%20", "fromNumber": "+14155550100"}),
    "sendgrid-incomplete": ("alice@example.com", "sendgrid", "installed", {"fromEmail": "ops@example.com"}),
    "webhooks": ("alice@example.com", "webhooks", "configured", {
        "endpoint": "https://example.com/hook", "signingSecret": "whsec_ü🔑 \"q\" \\", "retries": "3",
        "format": "json"}),
    "vault": ("bob@example.com", "vault", "configured", {"primaryKey": "vault-primary-ключ", "backupKey": ""}),
    "widget": ("bob@example.com", "widget", "configured", {"color": "#ff8800", "enabled": "true", "greeting": GREETING}),
    "twilio-empty": ("bob@example.com", "twilio", "installed", {}),
    "sendgrid": ("Carol@Example.org", "sendgrid", "configured", {
        "apiKey": "SG.abc_DEF-123.xyz", "fromEmail": "carol@example.co.uk", "dailyLimit": "1e3",
        "template": "Hello {{name}},\n\n— The team"}),
    "webhooks-empty": ("Carol@Example.org", "webhooks", "installed", {}),
}
# Written by another deployment of the app that uses 12-byte IVs.
CLEAN_IV12 = {"vault-iv12": ("Carol@Example.org", "vault", "configured", {"primaryKey": "iv12-primary", "backupKey": "iv12-backup"})}


def seed(app, rows, users=None) -> tuple[dict, dict]:
    """Users and installations written by the app; -> ({email: user id}, {name: installation id})."""
    users = dict(users or {})
    emails = [u for u, *_ in rows.values() if u not in users]
    created = app.run([{"op": "createUser", "email": e, "name": e.split("@")[0].title()} for e in dict.fromkeys(emails)])
    users.update(zip(dict.fromkeys(emails), (r["id"] for r in created)))
    installed = app.run([
        {"op": "install", "userId": users[user], "appId": app_id, "config": config, "status": status}
        for user, app_id, status, config in rows.values()
    ])
    return users, dict(zip(rows, (r["id"] for r in installed)))


@pytest.fixture
def clean(app):
    """The clean data set, written by the app (16-byte IVs) and by a 12-byte-IV deployment."""
    users, ids = seed(app, CLEAN)
    _, more = seed(app.with_keys(K1, iv_length=12), CLEAN_IV12, users)
    return users, {**ids, **more}


PLAINTEXTS = {name: config for name, (_, _, _, config) in {**CLEAN, **CLEAN_IV12}.items()}


# ---- 1. the app writes clean data ----------------------------------------------------------

def test_clean_app_data_has_no_findings_and_reads_back_exactly(app, clean, toolkit, databases, tmp_path):
    users, ids = clean
    report, code = audit_json(toolkit)
    assert report["findings"] == [] and code == 0
    assert report["summary"]["findings"] == 0
    assert report["summary"]["installations"] == len(ids)
    assert set(report) == {"summary", "findings"}

    # show: masked, and not one secret anywhere in the output.
    shown = toolkit("show", ids["twilio"], "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    token = view["config"]["authToken"]
    assert token["state"] == "encrypted" and token["value"] != "tw-auth-0001"
    assert "tw-auth-0001" not in shown.stdout
    assert view["config"]["accountSid"]["value"] == SID
    widget = json.loads(toolkit("show", ids["widget"], "--json").stdout)
    assert widget["config"]["greeting"]["value"] == GREETING  # tabs, quotes, backslashes, emoji

    # reveal: exactly the plaintext Node encrypted (16- and 12-byte IVs, non-ASCII), and logged.
    for name, field in [("twilio", "authToken"), ("webhooks", "signingSecret"), ("vault", "primaryKey"),
                        ("vault-iv12", "backupKey"), ("sendgrid", "apiKey")]:
        revealed = toolkit("show", ids[name], "--reveal", "--field", field, "--json")
        assert revealed.returncode == 0, revealed.stderr
        assert json.loads(revealed.stdout)["config"][field]["value"] == PLAINTEXTS[name][field]
    log = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert [(e["installation_id"], e["field"]) for e in log][:1] == [(ids["twilio"], "authToken")]
    assert "tw-auth-0001" not in (tmp_path / "access.log").read_text()

    # decrypt: a value as stored (read straight from the database), 16- and 12-byte IVs.
    for name, field in [("twilio", "authToken"), ("vault-iv12", "primaryKey")]:
        value = stored(databases[0], ids[name])[field]
        decrypted = toolkit("decrypt", input=value + "\n")
        assert decrypted.returncode == 0, decrypted.stderr
        assert decrypted.stdout == PLAINTEXTS[name][field] + "\n"
    assert len(bytes.fromhex(stored(databases[0], ids["vault-iv12"])["primaryKey"].split(":")[0])) == 12


# ---- 2. a buggy app -------------------------------------------------------------------------

def test_rows_a_buggy_app_writes_are_exactly_the_findings(app, clean, toolkit):
    users, ids = clean
    dave = app.one("createUser", email="dave@example.com")["id"]
    plain = app.one("insertRaw", userId=users["Carol@Example.org"], appId="twilio", status="configured",
                    config={"accountSid": SID, "authToken": "tw-plain-token", "region": "us1"})["id"]
    # The app's own update path, handed a number by a form that forgot to stringify it.
    app.one("update", id=ids["sendgrid"], changes={"dailyLimit": 500})
    unknown = app.one("install", userId=dave, appId="webhooks", status="configured",
                      config={"endpoint": "https://example.com/in", "debug": "1"})["id"]
    missing = app.one("install", userId=dave, appId="twilio", status="configured",
                      config={"accountSid": SID, "authToken": "tw-auth-0002"})["id"]

    report, code = audit_json(toolkit)
    assert found(report) == {
        ("secret.plaintext", plain, "authToken"),
        ("config.non-string", ids["sendgrid"], "dailyLimit"),
        ("field.unknown", unknown, "debug"),
        ("field.missing", missing, "region"),
    }
    assert code == 1  # errors at the default --fail-on error
    severities = {f["code"]: f["severity"] for f in report["findings"]}
    assert severities == {"secret.plaintext": "error", "config.non-string": "error",
                          "field.unknown": "warning", "field.missing": "error"}
    for finding in report["findings"]:
        assert set(finding) == {"code", "severity", "installation_id", "user_id", "app_id", "field", "message", "hint"}
        assert finding["message"] and finding["hint"]
    by_code = {f["code"]: f for f in report["findings"]}
    assert (by_code["field.unknown"]["user_id"], by_code["field.unknown"]["app_id"]) == (dave, "webhooks")
    assert "tw-plain-token" not in json.dumps(report)
    assert report["summary"]["by_severity"] == {"error": 3, "warning": 1, "info": 0}


# ---- 3. the toolkit writes, the app reads ------------------------------------------------------

def test_values_the_toolkit_writes_are_read_by_the_app(app, clean, toolkit, databases):
    from toolkit import Context, Settings

    users, ids = clean
    secret = 'py-ключ 🔐 "q" \\ a:b:c'
    for iv_length in (16, 12):
        context = Context(Settings(database_url=databases[1], encryption_key=K1, registry_path=INTEGRATIONS,
                                   iv_length=iv_length))
        try:
            service = context.configs
            if iv_length == 16:
                created = service.install(users["bob@example.com"], "sendgrid",
                                          {"apiKey": "SG.toolkit-16", "fromEmail": "bob@example.com"})
                service.set_status(created.id, "configured")
                service.update_config(ids["twilio"], {"authToken": secret, "fromNumber": "+3225550100"})
            else:
                service.update_config(ids["vault"], {"backupKey": "toolkit-iv12 ✓"})
        finally:
            context.close()
    iv = stored(databases[0], ids["vault"])["backupKey"].split(":")[0]
    assert len(iv) == 24  # the 12-byte IV the second keyring was told to use

    # `toolkit encrypt`, pasted into the database by an operator (the app writes it as given).
    encrypted = toolkit("encrypt", input="whsec_from_cli\n")
    assert encrypted.returncode == 0, encrypted.stderr
    config = dict(stored(databases[0], ids["webhooks"]), signingSecret=encrypted.stdout.strip())
    app.one("writeRaw", id=ids["webhooks"], config=config)

    rows = {row["id"]: row for row in app.one("readAll")}
    assert all(not row["errors"] for row in rows.values())
    assert rows[created.id]["config"] == {"apiKey": "SG.toolkit-16", "fromEmail": "bob@example.com"}
    assert rows[created.id]["status"] == "configured"
    assert rows[ids["twilio"]]["config"] == {**PLAINTEXTS["twilio"], "authToken": secret, "fromNumber": "+3225550100"}
    assert rows[ids["vault"]]["config"] == {"primaryKey": "vault-primary-ключ", "backupKey": "toolkit-iv12 ✓"}
    assert rows[ids["webhooks"]]["config"]["signingSecret"] == "whsec_from_cli"
    assert app.one("decrypt", value=encrypted.stdout.strip()) == "whsec_from_cli"

    report, _ = audit_json(toolkit)
    assert report["findings"] == []


# ---- 4. key rotation while the app writes -------------------------------------------------------

def test_rotation_while_the_app_keeps_writing_loses_nothing(app, toolkit, databases, tmp_path):
    rows = {}
    for n in range(10):
        user = f"user{n}@example.com"
        rows[f"sendgrid{n}"] = (user, "sendgrid", "configured", {
            "apiKey": f"SG.key-{n}", "fromEmail": user, "template": f"t{n}"})
        rows[f"twilio{n}"] = (user, "twilio", "configured", {**CLEAN["twilio"][3], "authToken": f"tw-{n}"})
        rows[f"vault{n}"] = (user, "vault", "configured", {"primaryKey": f"p-{n}", "backupKey": f"b-{n}"})
        rows[f"webhooks{n}"] = (user, "webhooks", "installed", {})
    _, ids = seed(app, rows)
    expected = {ids[name]: dict(config) for name, (_, _, _, config) in rows.items()}
    with direct(databases[0]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, updated_at FROM app_installations")
        updated_before = dict(cursor.fetchall())

    # The app is redeployed with K2 (K1 still decrypts) and keeps saving settings meanwhile.
    # It writes every secret of the rows it touches (sendgrid has one), so a value it read
    # under K1 is never written back by it (see the report on read-merge-write apps).
    loop_ids = [ids[f"sendgrid{n}"] for n in range(10)]
    stop = tmp_path / "stop-app"
    writer = app.with_keys(K2, [K1]).start([{
        "op": "loop", "ids": loop_ids, "iterations": 3000, "field": "template", "secretField": "apiKey",
        "secretPrefix": "SG.", "tag": "loop", "stopFile": str(stop)}])
    try:
        _wait_for(lambda: _count(databases[0], "config->>'template' LIKE 'loop-%%'") > 0, writer)
        rotated = toolkit("keys", "rotate", "--yes", "--json", "--batch-size", "4",
                          ENCRYPTION_KEY=K2, ENCRYPTION_KEY_PREVIOUS=K1)
    finally:
        stop.touch()
    loop = App.results(writer)[0]
    assert rotated.returncode in (0, 1), rotated.stderr  # 1: rows the app kept changing were left
    summary = json.loads(rotated.stdout)
    print(f"\napp writes during the rotation: {loop['writes']}; rotation: {summary['values']}, "
          f"conflicts {summary['conflicts']}")
    assert loop["writes"] > 0
    assert summary["values"]["skipped"] == {"undecryptable": 0, "malformed": 0, "plaintext": 0}
    assert set(summary["conflicts"]["left_ids"]) <= set(loop_ids)

    # The app's last writes win; everything else is what the app first wrote.
    for installation_id, changes in loop["last"].items():
        expected[int(installation_id)].update(changes)
    readback = {row["id"]: row for row in app.with_keys(K2).one("readAll")}  # K2 alone
    assert {i: r["errors"] for i, r in readback.items() if r["errors"]} == {}
    assert {i: r["config"] for i, r in readback.items()} == expected

    status = toolkit("keys", "status", "--json", ENCRYPTION_KEY=K2, ENCRYPTION_KEY_PREVIOUS=K1)
    assert status.returncode == 0, status.stderr
    counts = {k["label"]: k["values"] for k in json.loads(status.stdout)["keys"]}
    assert counts["previous #1"] == 0 and counts["current"] == 10 + 10 + 20
    report, code = audit_json(toolkit, ENCRYPTION_KEY=K2, ENCRYPTION_KEY_PREVIOUS=K1)
    assert "secret.stale-key" not in {f["code"] for f in report["findings"]}
    assert report["findings"] == [] and code == 0

    # Rotation leaves updated_at alone (only the app's own writes moved it).
    with direct(databases[0]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, updated_at FROM app_installations")
        updated_after = dict(cursor.fetchall())
    untouched = set(updated_before) - {int(i) for i in loop["last"]}
    assert {i: updated_after[i] for i in untouched} == {i: updated_before[i] for i in untouched}


def _count(url, where) -> int:
    with direct(url) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM app_installations WHERE {where}")
        return cursor.fetchone()[0]


def _wait_for(condition, process, timeout=30.0):
    """Until `condition()` holds (polling the database), failing if `process` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the app ended before the condition held: {process.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the app to write")
        time.sleep(0.01)


# ---- 5. one pooler, several clients --------------------------------------------------------------

def test_audit_dashboard_queries_and_app_share_one_pooler(app, clean, toolkit, databases, tmp_path):
    from toolkit import browse
    from toolkit.db import open_postgres

    users, ids = clean
    stop = tmp_path / "stop-app"
    loop_ids = [ids["sendgrid"], ids["sendgrid-incomplete"]]
    writer = app.start([{"op": "loop", "ids": loop_ids, "iterations": 2000, "field": "template",
                         "tag": "shared", "stopFile": str(stop)}])
    errors: list[BaseException] = []
    audits: list = []
    database = open_postgres(databases[1])

    def dashboard():
        try:
            for _ in range(15):
                page = browse.list_installations(database, limit=3)
                while page.has_next:
                    page = browse.list_installations(database, after=page.last, limit=3)
                browse.list_users(database, limit=2)
                browse.overview(database)
                assert browse.get_installation(database, ids["twilio"]).app_id == "twilio"
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            database.close()  # this thread's connection (Peewee keeps one per thread)

    def audit():
        audits.append(toolkit("audit", "--format", "json", "--no-progress"))

    try:
        _wait_for(lambda: _count(databases[0], "config->>'template' LIKE 'shared-%%'") > 0, writer)
        threads = [threading.Thread(target=dashboard) for _ in range(3)]
        threads += [threading.Thread(target=audit) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        stop.touch()
    loop = App.results(writer)[0]
    assert not errors, errors
    assert loop["writes"] > 0
    for result in audits:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["findings"] == []

    # Nothing the toolkit did in its transactions stays on the server connections the app gets.
    probes = app.run([{"op": "probe"}] * 4)
    for probe in probes:
        assert probe["write"] == "UPDATE"
        assert probe["settings"]["default_transaction_read_only"] == "off"
        assert probe["settings"]["transaction_read_only"] == "off"
        assert probe["settings"]["lock_timeout"] == "0"
        assert probe["settings"]["synchronous_commit"] == "on"
    with direct(databases[0]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()")
        assert cursor.fetchone()[0] == 0
