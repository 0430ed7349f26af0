"""The audit finds exactly the planted findings — and nothing on the clean trap rows — on
PostgreSQL (one process and worker processes), through PgBouncer, and on SQLite."""

from __future__ import annotations

import pytest

from audit_planted import REGISTRY_PATH, keyring, plant
from toolkit import db
from toolkit.audit import ALL_CODES, Filters, run_audit
from toolkit.registry import load_registry


def found(report) -> set:
    return {(f.code, f.installation_id, f.user_id, f.field) for f in report.findings}


@pytest.fixture(scope="module")
def registry():
    return load_registry(REGISTRY_PATH)


@pytest.fixture
def sqlite_db(tmp_path):
    database = db.open_sqlite(tmp_path / "audit.sqlite")
    db.create_tables(database)
    yield database
    database.close()


@pytest.fixture
def planted_pg(pg_url):
    database = db.open_postgres(pg_url)
    planted = plant(database)
    database.close()
    return pg_url, planted


def assert_exact(report, planted):
    got = found(report)
    missing = planted.expected - got
    extra = got - planted.expected
    assert not missing and not extra, f"missing: {sorted(missing, key=str)}\nextra: {sorted(extra, key=str)}"
    assert not {f.installation_id for f in report.findings} & planted.clean_ids
    # every code of the table is planted at least once
    assert {code for code, *_ in planted.expected} == set(ALL_CODES)


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgres_finds_exactly_the_planted(planted_pg, registry, jobs, monkeypatch):
    from toolkit.audit import engine

    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)  # fork workers even for a small table
    url, planted = planted_pg
    database = db.open_postgres(url)
    calls = []
    try:
        report = run_audit(database, registry, keyring(), jobs=jobs, progress=lambda *a: calls.append(a))
    finally:
        database.close()
    assert_exact(report, planted)
    assert report.summary["jobs"] == jobs
    assert calls[0][0] == 0 and calls[-1] == (len(planted.ids), len(planted.ids))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert report.summary["installations"] == len(planted.ids)


def test_through_pgbouncer_with_workers(planted_pg, pgbouncer_url, registry, monkeypatch):
    from toolkit.audit import engine

    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)
    url, planted = planted_pg
    database = db.open_postgres(pgbouncer_url(url))
    assert database.url.is_pooler
    try:
        report = run_audit(database, registry, keyring(), jobs=2)
    finally:
        database.close()
    assert_exact(report, planted)


def test_planted_through_pgbouncer_and_audited_in_one_process(pg_url, pgbouncer_url, registry):
    database = db.open_postgres(pgbouncer_url(pg_url))
    try:
        planted = plant(database)
        report = run_audit(database, registry, keyring(), jobs=1)
    finally:
        database.close()
    assert_exact(report, planted)


def test_sqlite_finds_exactly_the_planted(sqlite_db, registry):
    planted = plant(sqlite_db)
    report = run_audit(sqlite_db, registry, keyring())
    assert_exact(report, planted)
    assert report.summary["jobs"] == 1


def test_code_filter_gives_the_same_subset(sqlite_db, registry):
    planted = plant(sqlite_db)
    full = found(run_audit(sqlite_db, registry, keyring()))
    for code in ALL_CODES:
        narrowed = found(run_audit(sqlite_db, registry, keyring(), Filters(codes=frozenset({code}))))
        assert narrowed == {f for f in full if f[0] == code}, code
    assert full == planted.expected


def test_workers_from_a_threaded_program(planted_pg, registry, monkeypatch):
    """The dashboard runs the audit beside other threads: workers then start by forkserver
    (the auditor is pickled, not inherited) and find the same."""
    import threading

    from toolkit.audit import engine

    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert engine._start_method() == "forkserver"
        url, planted = planted_pg
        database = db.open_postgres(url)
        try:
            report = run_audit(database, registry, keyring(), jobs=2)
        finally:
            database.close()
    finally:
        stop.set()
        other.join()
    assert_exact(report, planted)
    assert engine._start_method() == "fork"


def test_sqlite_text_that_is_not_utf8(sqlite_db, registry):
    """SQLite stores any bytes as TEXT; fetched as str they would make sqlite3 raise."""
    user_id = sqlite_db.execute_sql("INSERT INTO users (email) VALUES ('x@example.com') RETURNING id").fetchone()[0]
    sqlite_db.execute_sql(
        "INSERT INTO app_installations (user_id, app_id, status, config) VALUES "
        "(?, CAST(X'73747269706500ff' AS TEXT), 'installed', CAST(X'7b22726567696f6e223a2275ff73227d' AS TEXT))",
        (user_id,))
    sqlite_db.execute_sql(
        "INSERT INTO app_installations (user_id, app_id, status, config) VALUES "
        "(?, 'stripe', 'configured', CAST(X'7b22726567696f6e223a2275ff73227d' AS TEXT))", (user_id + 0,))
    report = run_audit(sqlite_db, registry, keyring())
    # Text that is not UTF-8 is not JSON: the one config decoder says so to every reader (the
    # audit, show and the writers, which must never write a "repaired" copy back).
    assert sorted(f.code for f in report.findings) == ["app.unknown", "config.not-object"]
    unknown = next(f for f in report.findings if f.code == "app.unknown")
    assert unknown.app_id == "stripe\x00\ufffd"
