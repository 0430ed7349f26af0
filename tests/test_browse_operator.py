"""What an on-call operator needs from the lists: the CLI's comma lists, a cheap match count,
a case-insensitive email sort, an export of the whole filtered list — SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json

import pytest
from test_browse_seed import TOTAL, database  # noqa: F401 (database: a fixture)

from toolkit import browse
from toolkit.browse import InstallationFilter, Sort, UserFilter
from toolkit.errors import UsageError


def all_rows(database, filters, sort=Sort()):
    return list(browse.iter_installations(database, filters, sort, page_size=33))


def test_comma_lists_match_any_of_their_values(database):
    both = all_rows(database, InstallationFilter(app_id=("stripe", "slack")))
    assert {r.app_id for r in both} == {"stripe", "slack"}
    assert len(both) == len(all_rows(database, InstallationFilter(app_id="stripe"))) + len(
        all_rows(database, InstallationFilter(app_id="slack")))
    statuses = all_rows(database, InstallationFilter(status=("installed", "configured")))
    assert len(statuses) == TOTAL
    with pytest.raises(UsageError):
        InstallationFilter(status=("installed", "broken"))


def test_the_match_count_is_the_rows_the_list_walks(database):
    for filters in (InstallationFilter(), InstallationFilter(app_id=("stripe", "github")),
                    InstallationFilter(email="alice"), InstallationFilter(installation_ids=frozenset({1, 4, 999})),
                    InstallationFilter(status="installed", email="user01")):
        assert browse.count_installations(database, filters) == browse.MatchCount(len(all_rows(database, filters)))
    assert browse.count_installations(database, InstallationFilter(installation_ids=frozenset())).count == 0


def test_the_count_stops_at_the_cap(database):
    capped = browse.count_installations(database, cap=100)
    assert capped == browse.MatchCount(100, exact=False)
    assert capped.describe("installations") == "more than 100 installations match"
    assert browse.count_installations(database, cap=None).describe("installations") == f"{TOTAL:,} installations match"
    assert browse.MatchCount(1).describe("installations") == "1 installation match"


def test_email_sort_ignores_case(database):
    database.execute_sql("UPDATE users SET email = 'Zed@example.com' WHERE id = 2")  # bob -> Zed
    database.execute_sql("UPDATE users SET email = 'AAA@example.com' WHERE id = 3")
    rows = all_rows(database, InstallationFilter(), Sort("email"))
    emails = [r.email for r in rows]
    assert emails == sorted(emails, key=str.lower)
    assert emails[0] == "AAA@example.com" and emails[-1] == "Zed@example.com"
    users = browse.list_users(database, UserFilter(), Sort("email", descending=True), limit=5).rows
    assert users[0].email == "Zed@example.com"
    # Backwards from the end the pages are the same (the cursor is the database's lower()).
    back = [browse.list_installations(database, sort=Sort("email"), last=True, limit=40)]
    while back[-1].has_prev:
        back.append(browse.list_installations(database, sort=Sort("email"), before=back[-1].first, limit=40))
    assert [r.id for p in reversed(back) for r in p.rows] == [r.id for r in rows]


@pytest.mark.parametrize("fmt", browse.EXPORT_FORMATS)
def test_export_writes_every_matching_row_not_only_one_page(database, tmp_path, fmt):
    filters = InstallationFilter(app_id=("stripe", "slack"))
    path = tmp_path / f"list.{fmt}"
    count = browse.export_installations(database, path, fmt, filters, Sort("updated", True))
    expected = all_rows(database, filters, Sort("updated", True))
    assert count == len(expected) > browse.DEFAULT_PAGE_SIZE
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
        assert [int(r["id"]) for r in records] == [r.id for r in expected]
    else:
        records = json.loads(path.read_text(encoding="utf-8"))
        assert [r["id"] for r in records] == [r.id for r in expected]
        assert set(records[0]) == set(browse.EXPORT_COLUMNS) and "config" not in records[0]


def test_export_refuses_an_unknown_format(database, tmp_path):
    with pytest.raises(UsageError):
        browse.export_installations(database, tmp_path / "x", "xlsx")
    assert not (tmp_path / "x").exists()


def test_csv_export_keeps_formula_looking_customer_text_inert(database, tmp_path):
    """An email like `=HYPERLINK(…)` must not run when the export is opened in a spreadsheet
    (the audit's CSV rule, safe_text.csv_cell)."""
    user = database.execute_sql("INSERT INTO users (email) VALUES ('=HYPERLINK(\"x\")@evil.io') RETURNING id").fetchone()[0]
    database.execute_sql("INSERT INTO app_installations (user_id, app_id, status, config) VALUES "
                         f"({database.param}, 'stripe', 'installed', '{{}}')", (user,))
    path = tmp_path / "list.csv"
    browse.export_installations(database, path, "csv", InstallationFilter(email="HYPERLINK"))
    with open(path, newline="", encoding="utf-8") as handle:
        (record,) = list(csv.DictReader(handle))
    assert record["email"] == "'=HYPERLINK(\"x\")@evil.io"
