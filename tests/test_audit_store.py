"""The audit store: where it lives, what it keeps (never a secret), history, --baseline last,
and the incremental audit's fallbacks (each one line on stderr, then a full audit).
"""

from __future__ import annotations

import json
import sqlite3
import stat

import psycopg2
import pytest

from toolkit.audit import Filters, run_audit
from toolkit.audit.incremental import audit
from toolkit.audit.sql import changed_since_condition, id_query, installation_query
from toolkit.audit.store import (
    SCHEMA_VERSION,
    AuditStore,
    default_path,
    digest_ivs,
    keyring_fingerprint,
    registry_fingerprint,
)
from toolkit.crypto import Keyring
from toolkit.db import open_postgres
from toolkit.registry import parse_registry
from toolkit.settings import load_settings

K1 = "11" * 32
K2 = "22" * 32
PLAINTEXT = "hunter2-plaintext-secret"
REGISTRY_DATA = {"svc": {"name": "Service", "fields": [
    {"key": "token", "label": "Token", "type": "password", "required": True},
    {"key": "mode", "label": "Mode", "type": "select", "options": ["a", "b"], "required": True},
]}}


def _keyring(*keys):
    return Keyring.from_materials([bytes.fromhex(k) for k in keys])


@pytest.fixture
def seeded(pg_url):
    """A database with a clean row, a plaintext secret and a secret whose value we know."""
    app = _keyring(K1)
    connection = psycopg2.connect(pg_url)
    with connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')")
        for user, config in ((1, {"token": app.encrypt("very-secret-value"), "mode": "a"}),
                             (2, {"token": PLAINTEXT, "mode": "a"})):
            cursor.execute("INSERT INTO app_installations (user_id, app_id, status, config) VALUES (%s, 'svc',"
                           " 'configured', %s)", (user, json.dumps(config)))
        cursor.execute("SELECT config->>'token' FROM app_installations WHERE id = 1")
        ciphertext = cursor.fetchone()[0]
    connection.close()
    return pg_url, ciphertext


def test_default_place_and_the_override():
    assert load_settings(environ={"TOOLKIT_STATE_DIR": "/tmp/x"}, cwd=None).state_dir.as_posix() == "/tmp/x"
    settings = load_settings(environ={})
    assert default_path(settings).name == "audits.sqlite3"
    assert "installation-toolkit" in str(default_path(settings))


def test_the_file_is_private_and_holds_no_secret(seeded, tmp_path):
    url, ciphertext = seeded
    database, registry, keyring = open_postgres(url), parse_registry(REGISTRY_DATA), _keyring(K1)
    path = tmp_path / "deep" / "state" / "audits.sqlite3"
    with AuditStore(path) as store:
        report = audit(database, registry, keyring, store=store)
    assert [f.code for f in report.findings] == ["secret.plaintext"]
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    iv, tag, sealed = ciphertext.split(":")
    for text in (PLAINTEXT, "very-secret-value"):
        assert text.encode() not in raw
    for hex_text in (K1, iv, tag, sealed):  # neither as text nor as bytes (an IV only as its digest)
        assert hex_text.encode() not in raw and bytes.fromhex(hex_text) not in raw
    assert b"127.0.0.1" in raw  # the database's identity is kept (host, port, name) …
    database.close()


def test_a_user_email_filter_is_saved_as_a_digest(seeded, tmp_path):
    """--user by email: the saved run (its filters, its report) names the user by a digest."""
    url, _ = seeded
    database, registry, keyring = open_postgres(url), parse_registry(REGISTRY_DATA), _keyring(K1)
    path = tmp_path / "audits.sqlite3"
    with AuditStore(path) as store:
        report = audit(database, registry, keyring, Filters(users=("B@Example.com", "1")), store=store)
        assert report.meta["filters"]["users"] == ["B@Example.com", "1"]  # the operator's own report says it
        assert [f.code for f in report.findings] == ["secret.plaintext"]
        (run,) = store.runs()
        saved = store.latest(run["database"])
    for filters in (run["filters"], saved.meta["filters"]):
        digest, user_id = filters["users"]
        assert digest.startswith("email-sha256:") and "example" not in digest.lower() and user_id == "1"
    assert b"example.com" not in path.read_bytes().lower()
    database.close()


def test_digests_are_one_way_but_equal_for_equal_ivs():
    a, b = bytes(range(16)), bytes(range(1, 17))
    digests = digest_ivs(a + b + a)
    assert len(digests) == 48 and digests[:16] == digests[32:] and digests[:16] != digests[16:32]
    assert a not in digests and b not in digests


def test_fingerprints_follow_what_the_checks_read():
    base = registry_fingerprint(parse_registry(REGISTRY_DATA))
    relabelled = json.loads(json.dumps(REGISTRY_DATA))
    relabelled["svc"]["icon"] = "ignored.svg"  # unknown properties are ignored by the toolkit
    assert registry_fingerprint(parse_registry(relabelled)) == base
    relabelled["svc"]["fields"][1]["options"] = ["a", "b", "c"]
    assert registry_fingerprint(parse_registry(relabelled)) != base
    assert keyring_fingerprint(_keyring(K1)) != keyring_fingerprint(_keyring(K1, K2))
    assert K1 not in keyring_fingerprint(_keyring(K1))


def test_the_changed_since_sql():
    query = installation_query(Filters(changed_since=42, apps=("svc",)))
    assert changed_since_condition() in query.sql and query.params == ("svc", 42)
    assert "age(xmin) <= (SELECT age(%s::text::xid))" in query.sql
    # A 64-bit xid becomes the 32-bit one age() takes; low bits 0-2 are never assigned.
    assert installation_query(Filters(changed_since=(7 << 32) + 42)).params == (42,)
    assert installation_query(Filters(changed_since=7 << 32)).params == (3,)
    ids = installation_query(Filters(ids=(3, 5)))
    assert ids.sql.endswith("WHERE id = ANY(%s::integer[])") and ids.params == ([3, 5],)
    assert Filters(ids=(1,), changed_since=1).describe() == {}  # the report is the full audit's
    pass_ = id_query(Filters(statuses=("configured",)), since=(1 << 32) + 9)
    assert pass_.sql.endswith(f" FILTER (WHERE {changed_since_condition()}), 0) FROM app_installations"
                              " WHERE status IN (%s) GROUP BY 1") and pass_.params == (9, "configured")
    with pytest.raises(ValueError):
        installation_query(Filters(ids=(1,)), mark="?")


def _cli_env(url, tmp_path, **extra):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY_DATA))
    return {"DATABASE_URL": url, "ENCRYPTION_KEY": K1, "TOOLKIT_REGISTRY": str(registry),
            "TOOLKIT_STATE_DIR": str(tmp_path / "state"), **extra}


def test_history_and_baseline_last(seeded, run_cli, tmp_path):
    url, _ = seeded
    env = _cli_env(url, tmp_path)
    missing = run_cli("audit", "--baseline", "last", env=env)
    assert missing.returncode == 2 and "no saved audit of this database yet" in missing.stderr
    assert run_cli("audit", "--no-save", env=env).returncode == 1
    assert run_cli("audit", "history", "--json", env=env).stdout == ""  # --no-save saved nothing
    assert run_cli("audit", env=env).returncode == 1
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:  # the app fixes the plaintext, breaks a select
        cursor.execute("UPDATE app_installations SET config = config || '{\"token\": \"\"}' WHERE id = 2")
        cursor.execute("UPDATE app_installations SET config = config || '{\"mode\": \"zz\"}' WHERE id = 1")
    connection.close()
    result = run_cli("audit", "--incremental", "--baseline", "last", "--format", "json", env=env)
    assert result.returncode == 1, result.stderr  # a new error
    baseline = json.loads(result.stdout)["summary"]["baseline"]
    assert (baseline["new"], baseline["fixed"]) == (2, 1)  # field.invalid and field.missing; the plaintext
    runs = [json.loads(line) for line in run_cli("audit", "history", "--json", env=env).stdout.splitlines()]
    assert [r["mode"] for r in runs] == ["incremental", "full"]
    assert runs[0]["by_severity"]["error"] == 2 and runs[1]["findings"] == 1
    assert runs[0]["rows_read"] >= 2 and runs[1]["rows_read"] == 2
    text = run_cli("audit", "history", env=env)
    assert text.returncode == 0 and "incremental" in text.stdout and "full" in text.stdout
    # Nothing new since the last run: --baseline last passes.
    again = run_cli("audit", "--incremental", "--baseline", "last", env=env)
    assert again.returncode == 0, again.stderr


def test_fallbacks_say_why_in_one_line(seeded, run_cli, tmp_path):
    url, _ = seeded
    env = _cli_env(url, tmp_path)

    def incremental(**extra):
        result = run_cli("audit", "--incremental", "--format", "json", env={**env, **extra})
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        return json.loads(result.stdout)["summary"]["mode"], result.stderr

    mode, line = incremental()
    assert mode == "full" and "no saved audit of this database" in line
    mode, line = incremental(ENCRYPTION_KEY_PREVIOUS=K2)
    assert mode == "full" and "the keyring changed" in line
    # A saved snapshot from 2^31 transactions ago (or more) cannot be compared.
    store = tmp_path / "state" / "audits.sqlite3"
    with sqlite3.connect(store) as db:
        db.execute("UPDATE state SET xmin = xmin - 2147483648")
    mode, line = incremental(ENCRYPTION_KEY_PREVIOUS=K2)
    assert mode == "full" and "2^31" in line
    # The counter went backwards: a restored or another database under the same name.
    with sqlite3.connect(store) as db:
        db.execute("UPDATE state SET xmax = xmax + 1000000")
    mode, line = incremental(ENCRYPTION_KEY_PREVIOUS=K2)
    assert mode == "full" and "backwards" in line
    # A damaged saved state: anything unexpected runs a full audit.
    with sqlite3.connect(store) as db:
        db.execute("UPDATE state_base SET meta = x'00'")
    mode, line = incremental(ENCRYPTION_KEY_PREVIOUS=K2)
    assert mode == "full" and line.startswith("incremental audit failed (")
    ok = run_cli("audit", "--incremental", "--format", "json", env={**env, "ENCRYPTION_KEY_PREVIOUS": K2})
    assert json.loads(ok.stdout)["summary"]["mode"] == "incremental" and ok.stderr == ""


def test_the_demo_database_saves_runs_and_falls_back(run_cli, tmp_path):
    env = {"TOOLKIT_STATE_DIR": str(tmp_path / "state")}
    first = run_cli("audit", "--format", "json", "--incremental", env=env)
    assert first.returncode == 1
    lines = first.stderr.splitlines()
    assert sum("has no snapshots" in line for line in lines) == 1
    assert json.loads(first.stdout)["summary"]["mode"] == "full"
    history = run_cli("audit", "history", "--json", env=env).stdout.splitlines()
    assert len(history) == 1 and json.loads(history[0])["database"].startswith("sqlite:")


def test_an_unwritable_store_warns_and_the_audit_still_reports(seeded, run_cli, tmp_path):
    url, _ = seeded
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    result = run_cli("audit", "--format", "json", env=_cli_env(url, tmp_path, TOOLKIT_STATE_DIR=str(blocked)))
    assert result.returncode == 1 and "saved audits unavailable" in result.stderr
    assert json.loads(result.stdout)["summary"]["findings"] == 1


def test_a_save_that_fails_while_the_report_is_written_warns_once_and_loses_no_output(seeded, run_cli, tmp_path):
    """The run is saved in the background while the report is written: a failing save (here
    SQLite refusing the insert) is one line on stderr, the report whole, the exit code the
    findings' own."""
    url, _ = seeded
    env = _cli_env(url, tmp_path)
    assert run_cli("audit", "--no-save", env=env).returncode == 1  # --no-save creates no store…
    store = default_path(load_settings(environ=env, cwd=None))
    with AuditStore(store):  # …this does, then SQLite itself refuses every new run
        pass
    with sqlite3.connect(store) as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
    output = tmp_path / "report.json"
    result = run_cli("audit", "--format", "json", "-o", str(output), env=env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1 findings") and "written to" in lines[0], result.stderr
    assert lines[1] == f"the audit was not saved ({store}: disk quota exceeded)"
    assert json.loads(output.read_text())["summary"]["findings"] == 1
    assert run_cli("audit", "history", "--json", env=env).stdout == ""


def test_the_full_audit_and_the_saved_run_agree(seeded, tmp_path):
    url, _ = seeded
    database, registry, keyring = open_postgres(url), parse_registry(REGISTRY_DATA), _keyring(K1)
    with AuditStore(tmp_path / "audits.sqlite3") as store:
        report = audit(database, registry, keyring, store=store)
        saved = store.latest(report.meta["database"])
        assert saved.findings == report.findings == run_audit(database, registry, keyring).findings
        assert store.forget() == 1 and store.latest(report.meta["database"]) is None
    database.close()


def test_notebook_history_and_its_trend_plot(seeded, run_cli, tmp_path):
    from toolkit.context import Context
    from toolkit.nb import Session
    from toolkit.settings import Settings

    url, _ = seeded
    env = _cli_env(url, tmp_path)
    for _ in range(2):
        assert run_cli("audit", env=env).returncode == 1
    settings = Settings(database_url=url, encryption_key=K1, registry_path=tmp_path / "registry.json",
                        state_dir=tmp_path / "state")
    session = Session(Context(settings))
    try:
        history = session.history()
        assert len(history) == 2 and "2 saved runs" in repr(history)
        assert "<table" in history._repr_html_()
        frame = history.to_pandas()
        assert list(frame["error"]) == [1, 1] and list(frame["secret.plaintext"]) == [1, 1]
        figure = history.plot()
        by_severity, by_code = figure.axes[:2]
        assert [line.get_label() for line in by_severity.get_lines()] == ["error", "warning", "info"]
        assert [list(line.get_ydata()) for line in by_code.get_lines()] == [[1, 1]]
    finally:
        session.close()


def test_the_dashboard_opens_on_the_saved_audit_and_r_runs_it_incrementally(seeded, run_cli, tmp_path):
    import asyncio

    from toolkit.context import Context
    from toolkit.settings import Settings
    from toolkit.tui import DashboardApp, DataSource

    url, _ = seeded
    assert run_cli("audit", env=_cli_env(url, tmp_path)).returncode == 1
    settings = Settings(database_url=url, encryption_key=K1, registry_path=tmp_path / "registry.json",
                        state_dir=tmp_path / "state", access_log=tmp_path / "access.log")
    context = Context(settings)

    async def drive():
        app = DashboardApp(DataSource.from_context(context), health_check_seconds=3600)
        async with app.run_test(size=(130, 40)) as pilot:
            assert app.installation_ids_with("secret.plaintext") == {2}  # before any audit ran here
            await pilot.press("a")
            await pilot.pause()
            summary = str(app.screen.query_one("#audit-summary").render())
            assert "1 findings" in summary and "saved audit, less than a minute old" in summary
            await pilot.press("r")
            for _ in range(50):
                await app.workers.wait_for_complete()
                await pilot.pause()
                if app.report.meta.get("mode"):
                    break
            assert app.report.meta["mode"] == "incremental"
            assert [f.code for f in app.report.findings] == ["secret.plaintext"]
            assert "saved audit" not in str(app.screen.query_one("#audit-summary").render())

    try:
        asyncio.run(drive())
    finally:
        context.close()
    runs = [json.loads(line) for line in run_cli("audit", "history", "--json", env=_cli_env(url, tmp_path)).stdout.splitlines()]
    assert [r["mode"] for r in runs] == ["incremental", "full"]


def test_the_id_pass_and_the_changed_since_filter_agree(seeded):
    """The id pass (a binary COPY of id and the changed flag) and Filters.changed_since (the
    rows the audit reads) select the same rows, at every xmin boundary of the table."""
    from toolkit.audit.incremental import _changes
    from toolkit.audit.store import Snapshot, State

    url, _ = seeded
    database, registry = open_postgres(url), parse_registry(REGISTRY_DATA)
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE app_installations SET updated_at = now() WHERE id = 2")
        cursor.execute("SELECT DISTINCT xmin::text::bigint FROM app_installations")
        xmins = sorted(row[0] for row in cursor.fetchall())
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        epoch = cursor.fetchone()[0] >> 32 << 32
    connection.close()
    for since in [epoch + x + d for x in xmins for d in (-1, 0, 1)]:
        query = installation_query(Filters(changed_since=since))
        with database.atomic():
            cursor = database.execute_sql(query.sql, query.params)
            by_sql = sorted(row[0] for row in cursor.fetchall())
        base = State("", "", "", Snapshot("", since, since, 0), [], None)
        ids, changed, groups = _changes(database, Filters(), registry, base, users_since=False)
        assert changed.tolist() == by_sql and ids.tolist() == [1, 2] and groups is None
    assert len(xmins) == 2
    database.close()


def test_the_id_pass_bitmaps_hold_every_id_at_every_bit(pg_url):
    """Ids at both ends of a 64-id word (bit 63 is the sign bit), the largest integer, words far
    apart, deleted ones: the bitmaps give the ids a plain SELECT gives."""
    from toolkit.audit.incremental import _changes
    from toolkit.audit.store import Snapshot, State

    connection = psycopg2.connect(pg_url)
    with connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (email) VALUES ('a@example.com') RETURNING id")
        user = cursor.fetchone()[0]
        ids = [1, 2, 62, 63, 64, 65, 127, 128, 4096, 2 ** 31 - 65, 2 ** 31 - 2, 2 ** 31 - 1]
        for n, id_ in enumerate(ids):
            cursor.execute("INSERT INTO app_installations (id, user_id, app_id, config) VALUES (%s, %s, %s, '{}')",
                           (id_, user, f"app{n}"))
        cursor.execute("DELETE FROM app_installations WHERE id IN (2, 64, 2147483646)")
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        now = cursor.fetchone()[0]
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE app_installations SET status = 'configured' WHERE id IN (63, 2147483647)")
    connection.close()
    database, registry = open_postgres(pg_url), parse_registry(REGISTRY_DATA)
    base = State("", "", "", Snapshot("", now + 1, now + 1, 0), [], None)
    present, changed, _ = _changes(database, Filters(), registry, base, users_since=False)
    assert present.tolist() == [i for i in ids if i not in (2, 64, 2 ** 31 - 2)]
    assert changed.tolist() == [63, 2 ** 31 - 1]
    database.close()


def test_membership_by_table_and_by_search_agree():
    import numpy as np

    from toolkit.audit.incremental import _member

    rng = np.random.default_rng(14)
    for universe in (50, 10 ** 9):  # a dense id range (the table) and a sparse one (binary search)
        wanted = np.unique(rng.integers(1, universe, 40))
        values = np.concatenate([rng.integers(-5, universe + 5, 500), wanted, [wanted[0] - 1, wanted[-1] + 1]])
        assert _member(values, wanted).tolist() == [v in set(wanted.tolist()) for v in values.tolist()]
    assert _member(np.zeros(0, np.int64), wanted).tolist() == []
    assert _member(values, np.zeros(0, np.int64)).tolist() == [False] * len(values)


def test_nonce_reuse_over_the_candidates_equals_it_over_every_value():
    """_reuse_candidates keeps every member of every reused group (and a few others): the
    findings over them are those over all values — equal IVs under another key or of another
    length included, and kept/dropped base values."""
    import os

    import numpy as np

    from toolkit.audit.nonces import IVLog, nonce_reuse_findings
    from toolkit.audit.incremental import _reuse_candidates, _reused_keys, _select

    slots = [("svc", "token"), ("svc", "hook")]
    rng = np.random.default_rng(3)

    def log_of(count, start, ivs):
        log = IVLog()
        for n in range(count):
            iv = ivs[rng.integers(len(ivs))] if rng.random() < 0.05 else os.urandom(16 if n % 3 else 12)
            log.add(iv, int(rng.integers(2)), n % 2, start + n, 7)
        return log

    shared = [os.urandom(16), os.urandom(12), os.urandom(16)]
    base, new = log_of(3000, 1, shared), log_of(300, 5000, shared)
    keep = rng.random(len(base)) < 0.9
    everything = _select(base, keep)
    everything.extend(new.state())
    expected = sorted(nonce_reuse_findings(everything, slots))
    assert len(expected) > 20
    # The base's reuse groups as its full audit found them (and saved their keys).
    candidates = _reuse_candidates(base, keep, new, _reused_keys(base, base.reused()))
    assert len(candidates) < len(new) + (len(everything) - len(new)) // 10  # every new one, a few old
    assert sorted(nonce_reuse_findings(candidates, slots)) == expected
    # A base value whose only partner was not kept is a candidate no longer reused.
    assert sorted(nonce_reuse_findings(_reuse_candidates(base, keep, IVLog(), _reused_keys(base, base.reused())),
                                       slots)) == sorted(nonce_reuse_findings(_select(base, keep), slots))


def test_a_version_1_store_keeps_its_runs_and_drops_its_state(seeded, tmp_path):
    url, _ = seeded
    path = tmp_path / "audits.sqlite3"
    with sqlite3.connect(path) as db:  # the first schema: runs, and a state of whole-table blobs
        db.executescript("CREATE TABLE runs (id INTEGER PRIMARY KEY, database TEXT NOT NULL, generated_at TEXT"
                         " NOT NULL, mode TEXT NOT NULL, duration_s REAL, rows_read INTEGER, installations INTEGER,"
                         " findings INTEGER NOT NULL, by_severity TEXT NOT NULL, by_code TEXT NOT NULL, filters TEXT"
                         " NOT NULL, report BLOB); CREATE TABLE state (database TEXT NOT NULL, scope TEXT NOT NULL,"
                         " digests BLOB, PRIMARY KEY (database, scope)); PRAGMA user_version = 1;")
        db.execute("INSERT INTO runs VALUES (1, 'db', 't', 'full', 1, 2, 2, 0, '{}', '{}', '{}', NULL)")
        db.execute("INSERT INTO state VALUES ('db', '{}', x'00')")
    database, registry, keyring = open_postgres(url), parse_registry(REGISTRY_DATA), _keyring(K1)
    lines = []
    with AuditStore(path) as store:
        assert [run["id"] for run in store.runs()] == [1]
        report = audit(database, registry, keyring, store=store, incremental=True, warn=lines.append)
        assert report.meta["mode"] == "full" and "no saved audit of this database" in lines[0]
        assert audit(database, registry, keyring, store=store, incremental=True).meta["mode"] == "incremental"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    database.close()


def test_a_state_saved_over_another_base_brings_its_own(seeded, tmp_path, monkeypatch):
    """An incremental state is saved as an overlay over the base it was derived from; if
    another run saved another base meanwhile, its own base is written with it."""
    from toolkit.audit import incremental as incremental_module
    from toolkit.audit.incremental import _incremental
    from toolkit.audit.store import checks_fingerprint, scope_of

    monkeypatch.setattr(incremental_module, "COMPACT_SHARE", float("inf"))  # two rows: never compact

    url, _ = seeded
    database, registry, keyring = open_postgres(url), parse_registry(REGISTRY_DATA), _keyring(K1)
    fingerprints = (registry_fingerprint(registry), keyring_fingerprint(keyring), checks_fingerprint())
    with AuditStore(tmp_path / "audits.sqlite3") as store:
        first = audit(database, registry, keyring, store=store)
        name, scope = first.meta["database"], scope_of(Filters())
        loaded = store.state(name, scope)
        connection = psycopg2.connect(url)
        with connection, connection.cursor() as cursor:
            cursor.execute("UPDATE app_installations SET config = config || '{\"mode\": \"zz\"}' WHERE id = 1")
        connection.close()
        report, derived = _incremental(database, registry, keyring, Filters(), loaded, fingerprints, 1, None)
        assert derived.base_run == loaded.base_run and len(derived.new_log) == 1  # an overlay
        audit(database, registry, keyring, store=store)  # another run: another base
        store.save(report, derived, scope)
        again = store.state(name, scope)
        assert again.base_run != loaded.base_run  # written anew, with the state's own base
        assert bytes(again.log.ivs) == bytes(loaded.log.ivs) and again.row_findings == loaded.row_findings
        assert again.new_findings == derived.new_findings and bytes(again.new_log.rows) == bytes(derived.new_log.rows)
        later = audit(database, registry, keyring, store=store, incremental=True)
        assert later.meta["mode"] == "incremental" and later.findings == run_audit(database, registry, keyring).findings
    database.close()


def test_a_saved_report_keeps_every_finding_and_the_state_only_the_per_row_ones(tmp_path):
    """Findings are encoded once (store.save): the run's report holds all of them, the state's
    base the same bytes, read back without the codes every run recomputes."""
    from toolkit.audit import Finding, Report
    from toolkit.audit.store import _packed, _unpacked

    findings = [Finding.of("secret.plaintext", 7, 3, "stripe", "apiKey", "stored in plaintext"),
                Finding.of("secret.nonce-reuse", 8, 3, "stripe", "apiKey", "its IV is used by 1 other"),
                Finding.of("user.email-case-duplicate", None, 3, None, None, "email equals user 4's")]
    report = Report(findings, {"database": "postgresql://h:1/d", "generated_at": "2026-12-01T00:00:00+00:00"})
    with AuditStore(tmp_path / "audits.sqlite3") as store:
        store.save(report)
        assert store.latest("postgresql://h:1/d").findings == findings
    tuples = [(f.code, f.installation_id, f.user_id, f.app_id, f.field, f.message) for f in findings]
    assert _unpacked(_packed(iter(tuples))) == tuples[:1]
