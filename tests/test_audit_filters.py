"""Filters are compiled into SQL (the WHERE clause), so a narrowed audit reads fewer rows —
checked on the SQL text and on what a real PostgreSQL and SQLite return."""

from __future__ import annotations

import datetime as dt

import pytest

from audit_planted import REGISTRY_PATH, keyring, plant
from toolkit import db
from toolkit.audit import ALL_CODES, Filters, run_audit
from toolkit.audit.sql import count_query, email_duplicates_query, installation_query, range_query
from toolkit.registry import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry(REGISTRY_PATH)


# ---- the SQL text -------------------------------------------------------------------------

def test_no_filter_reads_everything():
    query = installation_query(Filters(), ("stripe",))
    assert query.sql == ("SELECT id, user_id, app_id, status, CASE WHEN updated_at < installed_at THEN "
                         "'installed_at ' || installed_at || ', updated_at ' || updated_at ELSE '' END, config "
                         "FROM app_installations")
    assert query.params == ()


def test_filters_become_the_where_clause():
    since = dt.date(2024, 4, 1)
    query = installation_query(Filters(apps=("stripe", "slack"), users=("42", "Alice@Example.com"),
                                       statuses=("installed",), since=since), ("stripe",))
    assert query.sql.endswith(
        " FROM app_installations WHERE app_id IN (%s, %s)"
        " AND (user_id IN (%s) OR user_id IN (SELECT id FROM users WHERE lower(email) IN (lower(%s))))"
        " AND status IN (%s) AND updated_at >= %s")
    assert query.params == ("stripe", "slack", 42, "Alice@Example.com", "installed", since)


def test_sqlite_placeholders():
    query = installation_query(Filters(apps=("a",)), (), mark="?")
    assert query.sql.endswith("WHERE app_id IN (?)")


@pytest.mark.parametrize("codes, where, reads_config", [
    ({"installation.timestamps"}, " WHERE (updated_at < installed_at)", False),
    ({"app.unknown"}, " WHERE (app_id NOT IN (%s, %s))", False),
    ({"app.unknown", "installation.timestamps"}, " WHERE (app_id NOT IN (%s, %s) OR updated_at < installed_at)", False),
    ({"field.missing"}, " WHERE (status = 'configured')", True),
    ({"status.not-configured"}, " WHERE (status = 'installed')", True),
    ({"secret.plaintext"}, None, True),
    ({"secret.plaintext", "installation.timestamps"}, None, True),
])
def test_codes_narrow_rows_and_columns(codes, where, reads_config):
    query = installation_query(Filters(codes=frozenset(codes)), ("slack", "stripe"))
    if where is None:
        assert " WHERE " not in query.sql
    else:
        assert query.sql.endswith(where)
    assert query.sql.split(" FROM ")[0].endswith(", config") is reads_config


def test_id_ranges_and_bounds():
    query = installation_query(Filters(apps=("a",)), ()).with_id_range(1, 50)
    assert query.sql.endswith("WHERE app_id IN (%s) AND id >= %s AND id < %s") and query.params == ("a", 1, 50)
    assert range_query(query).sql.startswith("SELECT min(id), max(id) FROM app_installations WHERE app_id IN")
    assert count_query(query).sql.startswith("SELECT count(*) FROM app_installations WHERE app_id IN")


def test_email_duplicates_is_grouped_in_sql():
    query = email_duplicates_query(Filters())
    assert query.sql == "SELECT array_agg(id), NULL FROM users GROUP BY lower(email) HAVING count(*) > 1"
    narrowed = email_duplicates_query(Filters(users=("7", "a@b.c")), mark="?", postgres=False)
    assert narrowed.sql == (
        "SELECT group_concat(id), group_concat(id) FILTER (WHERE id IN (?) OR lower(email) IN (lower(?))) "
        "FROM users GROUP BY lower(email) HAVING count(*) > 1 AND count(*) FILTER "
        "(WHERE id IN (?) OR lower(email) IN (lower(?))) > 0")
    assert narrowed.params == (7, "a@b.c", 7, "a@b.c")


# ---- what a real database returns -------------------------------------------------------------

@pytest.fixture(params=["postgres", "sqlite"])
def planted_db(request, tmp_path):
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        database = db.open_postgres(url)
    else:
        database = db.open_sqlite(tmp_path / "filters.sqlite")
        db.create_tables(database)
    planted = plant(database)
    yield database, planted
    database.close()


def rows_of(planted, labels_prefix):
    return {i for label, i in planted.ids.items() if label.startswith(labels_prefix)}


def audit(database, registry, **filters):
    return run_audit(database, registry, keyring(), Filters(**filters), jobs=1)


def test_app_filter_reads_only_that_app(planted_db, registry):
    database, planted = planted_db
    report = audit(database, registry, apps=("slack",))
    slack = database.execute_sql("SELECT count(*) FROM app_installations WHERE app_id = 'slack'").fetchone()[0]
    assert report.summary["installations"] == slack
    assert report.findings and {f.app_id for f in report.findings} == {"slack"}
    got = {(f.code, f.installation_id, f.user_id, f.field) for f in report.findings}
    expected = {e for e in planted.expected if e[1] is not None and _app_of(database, e[1]) == "slack"}
    # Nonce reuse is found among the rows read: nonce.2's partner is a stripe row (documented).
    reuse = {e for e in expected if e[0] == "secret.nonce-reuse"}
    assert [e[1] for e in reuse] == [planted.ids["nonce.2"]]
    assert got == expected - reuse


def _app_of(database, installation_id):
    return database.execute_sql(f"SELECT app_id FROM app_installations WHERE id = {int(installation_id)}").fetchone()[0]


def test_status_and_since_filters(planted_db, registry):
    database, planted = planted_db
    installed = audit(database, registry, statuses=("installed",))
    assert {f.code for f in installed.findings} >= {"status.not-configured"}
    assert "field.missing" not in {f.code for f in installed.findings}
    recent = audit(database, registry, since=dt.datetime(2024, 4, 1))
    assert recent.summary["installations"] == 1
    assert [(f.code, f.installation_id) for f in recent.findings] == [("installation.timestamps", planted.ids["timestamps"])]


def test_user_filter_by_id_and_by_email(planted_db, registry):
    database, planted = planted_db
    target = planted.ids["secret.plaintext"]
    user_id = database.execute_sql(f"SELECT user_id FROM app_installations WHERE id = {target}").fetchone()[0]
    by_id = audit(database, registry, users=(str(user_id),))
    assert by_id.summary["installations"] == 1
    assert {(f.code, f.installation_id) for f in by_id.findings} == {("secret.plaintext", target)}
    # email, ignoring case: both accounts whose address is alice@example.com
    by_email = audit(database, registry, users=("ALICE@example.com",))
    assert by_email.summary["installations"] == 0
    assert {(f.code, f.user_id) for f in by_email.findings} == {
        ("user.email-case-duplicate", planted.users["alice@example.com"]),
        ("user.email-case-duplicate", planted.users["Alice@Example.COM"])}


def test_user_check_is_skipped_when_installations_are_narrowed(planted_db, registry):
    database, _ = planted_db
    assert "user.email-case-duplicate" not in {f.code for f in audit(database, registry, apps=("stripe",)).findings}
    explicit = audit(database, registry, apps=("stripe",), codes=frozenset(ALL_CODES) - {"app.unknown"})
    assert "user.email-case-duplicate" in {f.code for f in explicit.findings}


def test_code_filter_reads_only_candidate_rows(planted_db, registry):
    database, planted = planted_db
    report = audit(database, registry, codes=frozenset({"installation.timestamps"}))
    assert report.summary["installations"] == 1
    unknown = audit(database, registry, codes=frozenset({"app.unknown"}))
    assert unknown.summary["installations"] == 1
    assert [(f.code, f.installation_id) for f in unknown.findings] == [("app.unknown", planted.ids["app.unknown"])]
