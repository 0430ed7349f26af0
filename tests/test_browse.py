"""toolkit.browse on SQLite and on a real PostgreSQL: keyset pages, filters, sorts, counts."""

from __future__ import annotations

import datetime as dt

import pytest
from test_browse_seed import EPOCH, GENERATED, MARKUP_VALUE, TOTAL, database, seed, sqlite_database  # noqa: F401 (database: a fixture)

from toolkit import browse, db
from toolkit.inspection import load_installation
from toolkit.browse import Cursor, InstallationFilter, Sort, UserFilter
from toolkit.errors import DatabaseError, NotFound, UsageError


def walk(database, filters=None, sort=Sort(), limit=40, lister=browse.list_installations):
    """Every row, page after page, following `after` cursors."""
    if filters is None:
        filters = UserFilter() if lister is browse.list_users else InstallationFilter()
    pages = [lister(database, filters, sort, limit=limit)]
    while pages[-1].has_next:
        pages.append(lister(database, filters, sort, after=pages[-1].last, limit=limit))
    return pages


def expected_order(rows, attribute, descending):
    """Display order: non-null values by (value, id), then NULLs by id; reversed as a whole per segment."""
    present = sorted((r for r in rows if getattr(r, attribute) is not None),
                     key=lambda r: (getattr(r, attribute), r.id), reverse=descending)
    missing = sorted((r for r in rows if getattr(r, attribute) is None), key=lambda r: r.id, reverse=descending)
    return [r.id for r in present + missing]


def test_first_page_holds_the_limit_and_knows_there_is_more(database):
    page = browse.list_installations(database, limit=100)
    assert [r.id for r in page.rows] == list(range(1, 101))
    assert page.has_next and not page.has_prev
    first = page.rows[0]
    assert (first.email, first.app_id, first.status, first.fields_set) == ("alice@example.com", "stripe", "configured", 3)
    assert first.updated_at == EPOCH + dt.timedelta(hours=2)


def test_paging_forward_visits_every_row_once(database):
    pages = walk(database, limit=40)
    ids = [r.id for p in pages for r in p.rows]
    assert ids == list(range(1, TOTAL + 1))
    assert not pages[-1].has_next and pages[-1].has_prev


def test_paging_backward_returns_the_previous_page(database):
    first = browse.list_installations(database, limit=30)
    second = browse.list_installations(database, after=first.last, limit=30)
    back = browse.list_installations(database, before=second.first, limit=30)
    assert back.rows == first.rows
    assert not back.has_prev and back.has_next


def test_last_page(database):
    last = browse.list_installations(database, last=True, limit=30)
    assert last.rows[-1].id == TOTAL and len(last.rows) == 30
    assert last.has_prev and not last.has_next


@pytest.mark.parametrize("column", ["id", "email", "app", "status", "installed", "updated"])
@pytest.mark.parametrize("descending", [False, True])
def test_every_sort_pages_in_a_consistent_order_forward_and_back(database, column, descending):
    sort = Sort(column, descending)
    pages = walk(database, sort=sort, limit=37)
    rows = [r for p in pages for r in p.rows]
    assert len(rows) == TOTAL and len({r.id for r in rows}) == TOTAL
    attribute = browse.INSTALLATION_SORTS[column].attribute
    if column in ("email", "app", "installed", "updated", "id"):
        # Text and timestamps order the same way on both databases (status is an enum on PostgreSQL).
        assert [r.id for r in rows] == expected_order(rows, attribute, descending)
    # Backwards from the end gives the same pages.
    back = [browse.list_installations(database, sort=sort, last=True, limit=37)]
    while back[-1].has_prev:
        back.append(browse.list_installations(database, sort=sort, before=back[-1].first, limit=37))
    assert [r.id for p in reversed(back) for r in p.rows] == [r.id for r in rows]


def test_nullable_sort_puts_nulls_last_and_crosses_the_boundary(database):
    rows = [r for p in walk(database, sort=Sort("updated"), limit=7) for r in p.rows]
    assert [r.id for r in rows[-2:]] == [4, 5]  # the two NULL updated_at, by id
    # A cursor in the NULL segment pages backwards into the non-null one.
    previous = browse.list_installations(database, sort=Sort("updated"), before=Cursor(None, 4), limit=3)
    assert [r.id for r in previous.rows] == [r.id for r in rows[-5:-2]]


def test_filters_combine(database):
    assert {r.app_id for p in walk(database, InstallationFilter(app_id="slack")) for r in p.rows} == {"slack"}
    page = browse.list_installations(database, InstallationFilter(app_id="stripe", status="configured", email="ALICE"))
    assert [r.id for r in page.rows] == [1]
    page = browse.list_installations(database, InstallationFilter(user_id=2))
    assert [r.id for r in page.rows] == [3, 4]


def test_email_filter_treats_wildcards_and_markup_literally(database):
    assert browse.list_installations(database, InstallationFilter(email="%")).rows == ()
    page = browse.list_installations(database, InstallationFilter(email="[red]"))
    assert [r.id for r in page.rows] == [5]


def test_finding_ids_filter_pages_through_a_large_set(database):
    ids = frozenset(range(2, TOTAL + 1, 2)) | frozenset(range(10_000, 60_000))  # most do not exist
    rows = [r.id for p in walk(database, InstallationFilter(installation_ids=ids), limit=50) for r in p.rows]
    assert rows == list(range(2, TOTAL + 1, 2))
    assert browse.list_installations(database, InstallationFilter(installation_ids=frozenset())).rows == ()


def test_fields_set_counts_non_empty_values_and_flags_non_objects(database):
    rows = {r.id: r for r in browse.list_installations(database, limit=10).rows}
    assert rows[3].fields_set is None  # a JSON array
    assert rows[5].fields_set == 0
    assert rows[4].fields_set == 2


def test_overview_counts_by_status_and_app(database):
    overview = browse.overview(database)
    assert overview.total == TOTAL
    assert sum(overview.by_status.values()) == TOTAL == sum(overview.by_app.values())
    assert overview.by_app["legacy-app"] == 1
    assert overview.users == 3 + GENERATED
    filtered = browse.overview(database, InstallationFilter(email="alice"))
    assert filtered.total == 2 and filtered.by_app == {"slack": 1, "stripe": 1}


def test_users_page_never_selects_the_password(database):
    queries = []
    original = database.execute_sql

    def spy(sql, params=None, *args, **kwargs):
        queries.append(sql)
        return original(sql, params, *args, **kwargs)

    database.execute_sql = spy
    try:
        page = browse.list_users(database, UserFilter(email="example"), Sort("email"), limit=10)
    finally:
        del database.execute_sql
    assert page.rows[0].email == "[red]mallory[/]@example.com"
    assert all('"password"' not in sql for sql in queries) and queries
    assert not hasattr(page.rows[0], "password")
    alice = browse.list_users(database, UserFilter(email="alice")).rows[0]
    assert (alice.role, alice.installations) == ("admin", 2)


@pytest.mark.parametrize("column", ["id", "email", "name", "role", "created"])
def test_users_sorts_page_every_user_once(database, column):
    rows = [r for p in walk(database, sort=Sort(column, True), limit=60, lister=browse.list_users) for r in p.rows]
    assert len({r.id for r in rows}) == len(rows) == 3 + GENERATED


def test_one_installation_with_its_user(database):
    detail = load_installation(database, None, None, 2)
    assert detail.user_email == "alice@example.com" and detail.user_role == "admin"
    assert detail.field("channel").value == MARKUP_VALUE
    assert "xoxb" not in repr(detail)
    assert "not a JSON object but an array" in load_installation(database, None, None, 3).config_problem
    with pytest.raises(NotFound):
        load_installation(database, None, None, 999_999)


def test_undecodable_config_text_is_kept_as_text(tmp_path):
    database = sqlite_database(tmp_path / "bad.sqlite3")
    seed(database, generated=1)
    database.execute_sql("UPDATE app_installations SET config = 'not json {' WHERE id = 1")
    assert "not valid JSON" in load_installation(database, None, None, 1).config_problem
    assert browse.list_installations(database).rows[0].fields_set is None


def test_a_config_nested_deeper_than_python_parses_does_not_break_the_page(tmp_path):
    database = sqlite_database(tmp_path / "deep.sqlite3")
    seed(database, generated=1)
    deep = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    database.execute_sql("UPDATE app_installations SET config = ? WHERE id = 1", (deep,))
    assert browse.list_installations(database).rows[0].fields_set is None


def test_bad_requests_are_usage_errors(database):
    with pytest.raises(UsageError):
        browse.list_installations(database, sort=Sort("password"))
    with pytest.raises(UsageError):
        InstallationFilter(status="broken")


def test_reads_are_read_only_on_postgres(pg_url):
    database = db.open_postgres(pg_url)
    seed(database, generated=1)
    with pytest.raises(DatabaseError, match="read-only"):
        with db.translate_errors(database), db.read_only(database):
            database.execute_sql("DELETE FROM app_installations")
    assert browse.overview(database).total == 5


def test_unreachable_database_is_a_database_error():
    database = db.open_postgres("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseError):
        browse.list_installations(database)


def test_the_installation_view_reads_what_sqlite_happily_stores(tmp_path):
    """inspection.load_installation (show, dashboard, notebooks): bytes that are not UTF-8,
    config text that is not JSON, a timestamp that does not parse — one readable view, no crash."""
    from test_browse_seed import REGISTRY, keyring

    from toolkit import inspection
    from toolkit.errors import ConfigError
    from toolkit.registry import parse_registry

    database = sqlite_database(tmp_path / "odd.sqlite3")
    seed(database, generated=1)
    registry = parse_registry(REGISTRY)
    database.execute_sql("UPDATE users SET email = CAST(X'61ff40782e6f7267' AS TEXT) WHERE id = 1")
    database.execute_sql("UPDATE app_installations SET installed_at = 'yesterday' WHERE id = 1")
    view = inspection.load_installation(database, registry, keyring(), 1)
    assert view.user_email == "a\ufffd@x.org" and view.installed_at is None and view.user_role == "admin"
    assert view.field("webhookUrl").state == inspection.PLAIN
    database.execute_sql("UPDATE app_installations SET config = CAST(X'7b22a0ff' AS TEXT) WHERE id = 1")
    broken = inspection.load_installation(database, registry, keyring(), 1)
    assert broken.fields == () and broken.config_problem == "config is not a JSON object but not valid JSON"
    # No keyring: the secret stays masked and reveal says why instead of failing the load.
    no_key = inspection.load_installation(database, registry, None, 2)
    assert no_key.field("botToken").state == inspection.NO_KEY
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        inspection.reveal(no_key, "botToken", None, via="test")
