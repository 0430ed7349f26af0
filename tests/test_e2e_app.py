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

    def __init__(self, node_bin, url, registry, key=K1, previous=(), iv_length=16, **extra):
        self.node_bin, self.url, self.registry = node_bin, url, registry
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS", "FIXED_IV")},
            "DATABASE_URL": url, "ENCRYPTION_KEY": key,
            "ENCRYPTION_KEY_PREVIOUS": ",".join(previous), "IV_LENGTH": str(iv_length), **extra,
        }

    def with_keys(self, key, previous=(), iv_length=16, **extra) -> "App":
        """Another deployment of the app: other keys, IV length, or FIXED_IV (a buggy one)."""
        return App(self.node_bin, self.url, self.registry, key, previous, iv_length, **extra)

    def on(self, registry) -> "App":
        """The same deployment with another registry (which fields it encrypts)."""
        clone = App(self.node_bin, self.url, registry)
        clone.env = dict(self.env)
        return clone

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


def seed(app, rows, existing=()) -> tuple[dict, dict]:
    """Users and installations written by the app in one run; -> ({email: user id}, {name: id})."""
    emails = [e for e in dict.fromkeys(user for user, *_ in rows.values()) if e not in existing]
    results = app.run(
        [{"op": "createUser", "email": e, "name": e.split("@")[0].title()} for e in emails]
        + [{"op": "install", "userEmail": user, "appId": app_id, "config": config, "status": status}
           for user, app_id, status, config in rows.values()]
    )
    users = dict(zip(emails, (r["id"] for r in results)))
    return users, dict(zip(rows, (r["id"] for r in results[len(emails):])))


@pytest.fixture
def clean(app):
    """The clean data set, written by the app (16-byte IVs) and by a 12-byte-IV deployment."""
    users, ids = seed(app, CLEAN)
    _, more = seed(app.with_keys(K1, iv_length=12), CLEAN_IV12, users)
    return users, {**ids, **more}


PLAINTEXTS = {name: config for name, (_, _, _, config) in {**CLEAN, **CLEAN_IV12}.items()}


# ---- 1. the app writes clean data ----------------------------------------------------------

def test_clean_app_data_has_no_findings_and_reads_back_exactly(app, clean, toolkit, databases, tmp_path):
    _, ids = clean
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
    for name, field in [("twilio", "authToken"), ("webhooks", "signingSecret"), ("vault-iv12", "backupKey")]:
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
        assert decrypted.stdout == PLAINTEXTS[name][field]  # into a pipe: the exact bytes, nothing added
    assert len(bytes.fromhex(stored(databases[0], ids["vault-iv12"])["primaryKey"].split(":")[0])) == 12


# ---- 2. a buggy app -------------------------------------------------------------------------

def test_rows_a_buggy_app_writes_are_exactly_the_findings(app, clean, toolkit):
    _, ids = clean
    dave, plain, _, unknown, missing = (r.get("id") for r in app.run([
        {"op": "createUser", "email": "dave@example.com"},
        {"op": "insertRaw", "userEmail": "Carol@Example.org", "appId": "twilio", "status": "configured",
         "config": {"accountSid": SID, "authToken": "tw-plain-token", "region": "us1"}},
        # The app's own update path, handed a number by a form that forgot to stringify it.
        {"op": "update", "id": ids["sendgrid"], "changes": {"dailyLimit": 500}},
        {"op": "install", "userEmail": "dave@example.com", "appId": "webhooks", "status": "configured",
         "config": {"endpoint": "https://example.com/in", "debug": "1"}},
        {"op": "install", "userEmail": "dave@example.com", "appId": "twilio", "status": "configured",
         "config": {"accountSid": SID, "authToken": "tw-auth-0002"}},
    ]))
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
    from toolkit import ConflictError, Context, Settings

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
                # An operator's edit of a row the app saved meanwhile is refused, not merged.
                seen = service.get(ids["widget"])
                app.one("update", id=ids["widget"], changes={"greeting": "saved by the customer"})
                with pytest.raises(ConflictError):
                    service.update_config(ids["widget"], {"greeting": "operator's edit"}, expected=seen)
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
    assert rows[ids["widget"]]["config"]["greeting"] == "saved by the customer"
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

    # The rotation's transaction-scoped settings (SET LOCAL) stayed in its transactions.
    for probe in app.run([{"op": "probe"}] * 3):
        assert probe["write"] == "UPDATE"
        assert (probe["settings"]["lock_timeout"], probe["settings"]["synchronous_commit"]) == ("0", "on")


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
    from toolkit.inspection import load_installation
    from toolkit.db import open_postgres

    _, ids = clean
    stop = tmp_path / "stop-app"
    loop_ids = [ids["sendgrid"], ids["sendgrid-incomplete"]]
    writer = app.start([{"op": "loop", "ids": loop_ids, "iterations": 2000, "field": "template",
                         "tag": "shared", "stopFile": str(stop)}])
    errors: list[BaseException] = []
    audits: list = []
    # The URL as Supabase/Prisma write it for the pooler: parameters libpq does not know.
    supabase_style = databases[1] + "?pgbouncer=true&connection_limit=1"
    database = open_postgres(supabase_style)

    def dashboard():
        try:
            for _ in range(15):
                page = browse.list_installations(database, limit=3)
                while page.has_next:
                    page = browse.list_installations(database, after=page.last, limit=3)
                browse.list_users(database, limit=2)
                browse.overview(database)
                assert load_installation(database, None, None, ids["twilio"]).app_id == "twilio"
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            database.close()  # this thread's connection (Peewee keeps one per thread)

    def audit():
        audits.append(toolkit("audit", "--format", "json", "--no-progress", DATABASE_URL=supabase_style))

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


# ---- 2b. every finding a buggy app can cause, each exactly once --------------------------------

K0 = "0a" * 32  # the app's key before K1 (still in ENCRYPTION_KEY_PREVIOUS)
K3 = "3c" * 32  # a key the operator does not have
FIXED_IV = "00112233445566778899aabbccddeeff"


def test_every_code_a_buggy_app_can_cause_is_reported_exactly(app, toolkit):
    names = ["unknown-app", "not-object", "non-string", "invalid-sendgrid", "invalid-twilio", "unexpected",
             "malformed", "undecryptable", "stale", "nonce-a", "nonce-b", "not-configured", "timestamps",
             "plaintext", "missing", "unknown-field", "clean"]
    # What other deployments of the app (and this one) encrypted: one run per key.
    good, tagged, hello = app.run([{"op": "encrypt", "value": v} for v in ("p-ok", "p-tag", "hello")])
    (under_k3,), (under_k0,) = app.with_keys(K3).run([{"op": "encrypt", "value": "p-k3"}]), \
        app.with_keys(K0).run([{"op": "encrypt", "value": "p-k0"}])
    cut_body = good[:-1]  # an odd number of hex digits: a value truncated in transit
    iv, tag, body = tagged.split(":")
    cut_tag = f"{iv}:{tag[:24]}:{body}"  # Node 20 would even accept this truncated tag
    twilio_ok = {"accountSid": SID, "authToken": "tw-ok", "region": "us1"}
    rows = [
        ("unknown-app", "install", {"appId": "zapier", "status": "configured", "config": {"token": "x"}}),
        # The classic: config: JSON.stringify(obj) into a jsonb column stores a JSON string.
        ("not-object", "insertRaw", {"appId": "webhooks", "config": json.dumps({"endpoint": "https://a.io"})}),
        ("non-string", "insertRaw", {"appId": "widget", "status": "configured",
                                     "config": {"color": "#fff", "enabled": True, "greeting": None}}),
        ("invalid-sendgrid", "install", {"appId": "sendgrid", "status": "configured",
                                         "config": {"apiKey": "SG.ok", "fromEmail": "ops@", "dailyLimit": "1,000"}}),
        ("invalid-twilio", "install", {"appId": "twilio", "status": "configured", "config": {
            **twilio_ok, "region": "Ireland", "statusCallback": "http://x.io/cb", "fromNumber": "+14155550100\n"}}),
        ("unexpected", "insertRaw", {"appId": "widget", "status": "configured",
                                     "config": {"color": "#fff", "greeting": hello}}),
        ("malformed", "insertRaw", {"appId": "vault", "status": "configured",
                                    "config": {"primaryKey": cut_body, "backupKey": cut_tag}}),
        ("undecryptable", "insertRaw", {"appId": "vault", "status": "configured", "config": {"primaryKey": under_k3}}),
        ("stale", "insertRaw", {"appId": "vault", "status": "configured", "config": {"primaryKey": under_k0}}),
        ("not-configured", "install", {"appId": "twilio", "status": "installed", "config": twilio_ok}),
        ("timestamps", "install", {"appId": "webhooks", "config": {}}),
        ("plaintext", "insertRaw", {"appId": "twilio", "status": "configured",
                                    "config": {**twilio_ok, "authToken": "tw-plain-token"}}),
        ("missing", "install", {"appId": "sendgrid", "status": "configured", "config": {"apiKey": "SG.x"}}),
        ("unknown-field", "install", {"appId": "vault", "status": "configured",
                                      "config": {"primaryKey": "p", "note": "x"}}),
        ("clean", "install", {"appId": "sendgrid", "status": "configured",
                              "config": {"apiKey": "SG.y", "fromEmail": "clean@example.com"}}),
    ]
    results = app.run(
        [{"op": "createUser", "email": f"{n}@example.com"} for n in names]
        # Two accounts the unique index lets through: it is case-sensitive.
        + [{"op": "createUser", "email": "Dup@Example.com"}, {"op": "createUser", "email": "dup@example.com"}]
        + [{"op": op, "userEmail": f"{n}@example.com", **args} for n, op, args in rows]
    )
    dups = [r["id"] for r in results[len(names):len(names) + 2]]
    ids = dict(zip([n for n, *_ in rows], (r["id"] for r in results[len(names) + 2:])))
    # A deployment that reuses its IV, and one that sets updatedAt before installedAt.
    reused = app.with_keys(K1, FIXED_IV=FIXED_IV).run(
        [{"op": "install", "userEmail": f"{n}@example.com", "appId": "webhooks", "status": "configured",
          "config": {"signingSecret": f"same-iv-{n}"}} for n in ("nonce-a", "nonce-b")]
        + [{"op": "writeRaw", "id": ids["timestamps"], "updatedAt": "2001-01-01T00:00:00Z"}])
    ids.update({"nonce-a": reused[0]["id"], "nonce-b": reused[1]["id"]})

    report, code = audit_json(toolkit, ENCRYPTION_KEY_PREVIOUS=K0)
    expected = {
        ("app.unknown", ids["unknown-app"], None),
        ("config.not-object", ids["not-object"], None),
        ("config.non-string", ids["non-string"], "enabled"),
        ("config.non-string", ids["non-string"], "greeting"),
        ("field.invalid", ids["invalid-sendgrid"], "fromEmail"),
        ("field.invalid", ids["invalid-sendgrid"], "dailyLimit"),
        ("field.invalid", ids["invalid-twilio"], "region"),
        ("field.invalid", ids["invalid-twilio"], "statusCallback"),
        ("field.invalid", ids["invalid-twilio"], "fromNumber"),
        ("field.unexpected-ciphertext", ids["unexpected"], "greeting"),
        ("secret.malformed", ids["malformed"], "primaryKey"),
        ("secret.malformed", ids["malformed"], "backupKey"),
        ("secret.undecryptable", ids["undecryptable"], "primaryKey"),
        ("secret.stale-key", ids["stale"], "primaryKey"),
        ("secret.nonce-reuse", ids["nonce-a"], "signingSecret"),
        ("secret.nonce-reuse", ids["nonce-b"], "signingSecret"),
        ("status.not-configured", ids["not-configured"], None),
        ("installation.timestamps", ids["timestamps"], None),
        ("secret.plaintext", ids["plaintext"], "authToken"),
        ("field.missing", ids["missing"], "fromEmail"),
        ("field.unknown", ids["unknown-field"], "note"),
        ("user.email-case-duplicate", None, None),
    }
    assert found(report) == expected
    assert len(report["findings"]) == len(expected) + 1  # one per user of the duplicate pair
    assert sorted(f["user_id"] for f in report["findings"] if f["code"] == "user.email-case-duplicate") == dups
    assert code == 1
    text = json.dumps(report)
    for secret in ("tw-plain-token", "p-k0", "p-k3", "same-iv-", "hello", K0, K1, K3):
        assert secret not in text


# ---- 6. other registries -------------------------------------------------------------------

@pytest.mark.parametrize("registry, apps, fields, secret, required, warnings", [
    (INTEGRATIONS, 5, 18, 5, 7, 2),  # unknown types "color" and "toggle"
    (MINIMAL, 3, 5, 1, 1, 0),
])
def test_registry_check_on_other_registries(toolkit, registry, apps, fields, secret, required, warnings):
    checked = toolkit("registry", "check", registry, "--json")
    assert checked.returncode == 0, checked.stderr
    summary = json.loads(checked.stdout)["summary"]
    assert (summary["apps"], summary["fields"], summary["secret_fields"], summary["required_fields"]) == \
        (apps, fields, secret, required)
    assert len(summary["warnings"]) == warnings
    strict = toolkit("registry", "check", "--strict", TOOLKIT_REGISTRY=str(registry))
    assert strict.returncode == (1 if warnings else 0), strict.stderr


def test_audit_with_other_registries(app, clean, toolkit, node_bin, databases):
    _, ids = clean
    # The integrations data, read with a registry that knows none of its apps.
    report, code = audit_json(toolkit, TOOLKIT_REGISTRY=str(MINIMAL))
    assert found(report) == {("app.unknown", i, None) for i in ids.values()} and code == 1

    # The app, deployed with the minimal registry: options as strings and {value, label}, an
    # app without fields, one with a single optional password, an unanchored alternation.
    minimal = app.on(MINIMAL)
    rows = [
        ("alice@example.com", "legacy-crm", "configured", {}),
        ("bob@example.com", "legacy-crm", "installed", {"anything": "x"}),
        ("alice@example.com", "pager", "installed", {"routingKey": "rk-1"}),
        ("bob@example.com", "pager", "configured", {"routingKey": ""}),
        ("alice@example.com", "mixed.options_v2", "configured",
         {"plan": "pro", "seats": "10", "contact": "a@b.io", "code": "ABC-123"}),
        ("bob@example.com", "mixed.options_v2", "configured", {"plan": "Professional"}),  # a label
        ("Carol@Example.org", "mixed.options_v2", "configured", {"plan": "ent", "code": "xABC-123"}),
    ]
    created = minimal.run([{"op": "install", "userEmail": u, "appId": a, "status": s, "config": c}
                           for u, a, s, c in rows])
    new = [r["id"] for r in created]
    report, _ = audit_json(toolkit, TOOLKIT_REGISTRY=str(MINIMAL))
    assert found(report) - {("app.unknown", i, None) for i in ids.values()} == {
        ("field.unknown", new[1], "anything"),
        # An app without required fields, installed with a setting stored: reported (info).
        ("status.not-configured", new[2], None),
        ("field.invalid", new[5], "plan"),
        ("field.invalid", new[6], "code"),
    }
    assert minimal.one("read", id=new[2])["config"] == {"routingKey": "rk-1"}

    # Unknown field types are validated as text: anything goes in the widget's "color".
    widget = app.run([{"op": "createUser", "email": "erin@example.com"},
                      {"op": "install", "userEmail": "erin@example.com", "appId": "widget", "status": "configured",
                       "config": {"color": "not a colour 🎨", "enabled": "maybe"}}])[1]["id"]
    report, _ = audit_json(toolkit)  # (the minimal registry's apps are unknown here)
    assert [f for f in report["findings"] if f["installation_id"] == widget] == []


# ---- bugs found here once (kept as regression tests) ---------------------------------------------

def test_required_secret_that_decrypts_to_empty_is_missing(app, toolkit):
    """A buggy app encrypts the empty string of an untouched password input: `iv:tag:`."""
    empty, also_empty = app.run([{"op": "encrypt", "value": ""}] * 2)
    assert empty.endswith(":") and also_empty.endswith(":")
    configured, _installed = (r.get("id") for r in app.run([
        {"op": "createUser", "email": "a@example.com"}, {"op": "createUser", "email": "b@example.com"},
        {"op": "insertRaw", "userEmail": "a@example.com", "appId": "vault", "status": "configured",
         "config": {"primaryKey": empty}},
        {"op": "insertRaw", "userEmail": "b@example.com", "appId": "vault", "status": "installed",
         "config": {"primaryKey": also_empty}},
    ])[2:])
    report, _ = audit_json(toolkit)
    repair = toolkit("repair", "--fix", "status.not-configured", "--dry-run", "--json")
    _assert_with_detail(
        found(report) == {("field.missing", configured, "primaryKey")}
        and json.loads(repair.stdout)["fixes"]["status.not-configured"]["fixed"] == 0,
        f"audit: {sorted(found(report), key=str)}; repair would configure "
        f"{json.loads(repair.stdout)['fixes']['status.not-configured']['fixed']} row(s)",
    )


def test_password_pattern_is_checked_on_the_decrypted_value(app, toolkit):
    """sendgrid's apiKey is a password field with a pattern (SG\\.…); the app saved another value."""
    configured, installed = (r.get("id") for r in app.run([
        {"op": "createUser", "email": "a@example.com"}, {"op": "createUser", "email": "b@example.com"},
        {"op": "install", "userEmail": "a@example.com", "appId": "sendgrid", "status": "configured",
         "config": {"apiKey": "not-a-sendgrid-key", "fromEmail": "a@example.com"}},
        {"op": "install", "userEmail": "b@example.com", "appId": "sendgrid", "status": "installed",
         "config": {"apiKey": "not-a-sendgrid-key", "fromEmail": "b@example.com"}},
    ])[2:])
    report, _ = audit_json(toolkit)
    repair = toolkit("repair", "--fix", "status.not-configured", "--dry-run", "--json")
    _assert_with_detail(
        found(report) == {("field.invalid", configured, "apiKey"), ("field.invalid", installed, "apiKey")}
        and json.loads(repair.stdout)["fixes"]["status.not-configured"]["fixed"] == 0,
        f"audit: {sorted(found(report), key=str)}",
    )
    assert "not-a-sendgrid-key" not in json.dumps(report)


def test_registry_with_javascript_named_groups_loads(app, toolkit):
    """`(?<area>…)` is how the app's `new RegExp(pattern)` names a group; Python spells it (?P<area>…)."""
    registry = REGISTRIES / "e2e_js_patterns.json"
    checked = toolkit("registry", "check", registry)
    if checked.returncode != 0:
        pytest.fail(f"registry check exit {checked.returncode}: {checked.stderr.strip()}")
    _good, bad = (r.get("id") for r in app.on(registry).run([
        {"op": "createUser", "email": "a@example.com"}, {"op": "createUser", "email": "b@example.com"},
        {"op": "install", "userEmail": "a@example.com", "appId": "phone", "status": "configured",
         "config": {"number": "415-5555", "pin": "1234"}},
        {"op": "install", "userEmail": "b@example.com", "appId": "phone", "status": "configured",
         "config": {"number": "4155555", "pin": "1234"}},
    ])[2:])
    report, _ = audit_json(toolkit, TOOLKIT_REGISTRY=str(registry))
    assert found(report) == {("field.invalid", bad, "number")}


def test_repair_stamps_updated_at_like_the_app_in_a_non_utc_database(app, toolkit, databases):
    """The app (JS Date -> toISOString) and ConfigService store naive UTC; a repair stores now()."""
    from toolkit import Context, Settings

    with direct(databases[0]) as connection:  # before anything connects through the pooler
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            cursor.execute(f'ALTER DATABASE "{cursor.fetchone()[0]}" SET timezone = \'Asia/Tokyo\'')
    by_app, by_service, by_repair = (r.get("id") for r in app.run([
        {"op": "createUser", "email": "a@example.com"},
        {"op": "install", "userEmail": "a@example.com", "appId": "webhooks", "status": "configured", "config": {}},
        {"op": "install", "userEmail": "a@example.com", "appId": "widget", "status": "configured",
         "config": {"color": "#fff"}},
        {"op": "install", "userEmail": "a@example.com", "appId": "vault", "status": "configured",
         "config": {"primaryKey": "p", "junk": "x"}},
    ])[1:])
    app.one("update", id=by_app, changes={"retries": "2"})
    context = Context(Settings(database_url=databases[1], encryption_key=K1, registry_path=INTEGRATIONS))
    try:
        context.configs.update_config(by_service, {"greeting": "hi"})
    finally:
        context.close()
    repaired = toolkit("repair", "--fix", "field.unknown", "--yes", "--json")
    assert repaired.returncode == 0, repaired.stderr
    with direct(databases[0]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, updated_at FROM app_installations")
        stamped = dict(cursor.fetchall())
    assert abs(stamped[by_service] - stamped[by_app]).total_seconds() < 3600  # both UTC
    spread = abs(stamped[by_repair] - stamped[by_app]).total_seconds()
    _assert_with_detail(spread < 3600, f"the repair's updated_at is {spread / 3600:.1f} h off the app's")


def _assert_with_detail(condition: bool, detail: str) -> None:
    """An assertion whose failure message says what was seen."""
    assert condition, detail
