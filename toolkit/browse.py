"""The read queries behind the dashboard: pages of installations and users, counts, one row.

Every list is paged with a keyset on (sort column, id): the database walks an index from the
last row shown instead of counting an OFFSET, so page 10,000 costs what page 1 costs, and the
screen never holds more than one page. Nullable sort columns are walked in two segments (the
non-null values, then the NULLs by id) so each segment stays a plain row-value comparison that
PostgreSQL can answer from an index.

Everything runs inside `read_only()` and `translate_errors()`; nothing selects
`users.password` (only `USER_DISPLAY_FIELDS`); no config value leaves this module in a list
row (only how many fields are set). Works on PostgreSQL and SQLite. No Textual here.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any, Iterator

from peewee import SQL, Field, NodeList, Tuple, Value, fn

from .db import APP_STATUSES, ROLES, USER_DISPLAY_FIELDS, AppInstallation, User, is_postgres, read_only, translate_errors
from .db.json_values import decode_config
from .errors import UsageError
from .safe_text import csv_cell

__all__ = [
    "COUNT_CAP", "DEFAULT_PAGE_SIZE", "EXPORT_FORMATS", "INSTALLATION_SORTS", "USER_SORTS", "Cursor",
    "InstallationFilter", "InstallationRow", "MatchCount", "Overview", "Page", "Sort", "UserFilter", "UserRow",
    "count_fields_set", "count_installations", "count_users", "export_installations", "iter_installations",
    "list_installations", "list_users", "overview",
]

DEFAULT_PAGE_SIZE = 100
# Counting matches stops here: a count is a scan of every matching row, and "more than 10,000"
# is all an operator needs to know that the filter is too wide (the unfiltered total comes
# exact from the overview). A capped count reads at most COUNT_CAP + 1 rows whatever the table.
COUNT_CAP = 10_000
EXPORT_FORMATS = ("csv", "json")


# --- what the caller asks for ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sort:
    column: str = "id"
    descending: bool = False

    def toggled(self, column: str) -> "Sort":
        """Clicking the sorted column flips the direction; another column sorts ascending."""
        if column == self.column:
            return Sort(column, not self.descending)
        return Sort(column, False)


@dataclasses.dataclass(frozen=True)
class InstallationFilter:
    # One app id or status, or a tuple of them (the CLI's comma lists: any of them matches).
    app_id: str | tuple[str, ...] | None = None
    status: str | tuple[str, ...] | None = None
    email: str | None = None  # substring, case-insensitive
    user_id: int | None = None
    # From an audit report (finding code -> installation ids); None means "no such filter".
    installation_ids: frozenset[int] | None = None

    def __post_init__(self):
        for status in _many(self.status):
            if status not in APP_STATUSES:
                raise UsageError(f"status must be one of {', '.join(APP_STATUSES)}, got {status!r}")

    @property
    def is_empty(self) -> bool:
        return self == InstallationFilter()


def _many(value) -> tuple:
    """None, one value or a tuple of them, as a tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclasses.dataclass(frozen=True)
class UserFilter:
    email: str | None = None  # substring, case-insensitive
    role: str | None = None
    user_id: int | None = None

    def __post_init__(self):
        if self.role is not None and self.role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")


@dataclasses.dataclass(frozen=True)
class Cursor:
    """The sort key of one row: where the next or previous page starts."""

    value: Any
    id: int


# --- what comes back ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InstallationRow:
    id: int
    user_id: int
    email: str
    app_id: str
    status: str
    fields_set: int | None  # None: the config is not a JSON object
    installed_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class UserRow:
    id: int
    name: str | None
    email: str
    role: str
    created_at: dt.datetime | None
    installations: int | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    rows: tuple
    has_next: bool
    has_prev: bool
    sort: Sort
    # The sort key of each row as the database computed it (e.g. lower(email)): the cursor of
    # the next page must compare as the database orders, not as Python would lower-case.
    cursors: tuple = dataclasses.field(repr=False, compare=False, default=())

    @property
    def first(self) -> Cursor | None:
        return self.cursors[0] if self.cursors else None

    @property
    def last(self) -> Cursor | None:
        return self.cursors[-1] if self.cursors else None


@dataclasses.dataclass(frozen=True)
class MatchCount:
    """How many rows a filter matches: exact, or at least `count` when the counting stopped at the cap."""

    count: int
    exact: bool = True

    def describe(self, noun: str) -> str:
        if self.exact:
            return f"{self.count:,} {noun if self.count != 1 else noun.rstrip('s')} match"
        return f"more than {self.count:,} {noun} match"


@dataclasses.dataclass(frozen=True)
class Overview:
    total: int
    by_status: dict[str, int]
    by_app: dict[str, int]
    users: int


# --- sort columns ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SortColumn:
    expression: Any  # what ORDER BY sorts on; selected too, so the cursor holds the database's value
    nullable: bool
    attribute: str  # the row attribute the column shows


INSTALLATION_SORTS = {
    "id": _SortColumn(AppInstallation.id, False, "id"),
    # Case-insensitive, as operators read emails (Alice@… beside alice@…). On a big table this
    # wants an index on lower(email) (benchmarks/bench_dashboard.py lists it).
    "email": _SortColumn(fn.LOWER(User.email), False, "email"),
    "app": _SortColumn(AppInstallation.app_id, False, "app_id"),
    "status": _SortColumn(AppInstallation.status, False, "status"),
    "installed": _SortColumn(AppInstallation.installed_at, True, "installed_at"),
    "updated": _SortColumn(AppInstallation.updated_at, True, "updated_at"),
}

USER_SORTS = {
    "id": _SortColumn(User.id, False, "id"),
    "email": _SortColumn(fn.LOWER(User.email), False, "email"),
    "name": _SortColumn(User.name, True, "name"),
    "role": _SortColumn(User.role, False, "role"),
    "created": _SortColumn(User.created_at, True, "created_at"),
}


def _sort_column(columns: dict, sort: Sort) -> _SortColumn:
    try:
        return columns[sort.column]
    except KeyError:
        raise UsageError(f"cannot sort by {sort.column!r}; choose one of {', '.join(columns)}") from None


# --- public queries -------------------------------------------------------------------------


def list_installations(
    database,
    filters: InstallationFilter = InstallationFilter(),
    sort: Sort = Sort(),
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    last: bool = False,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Page:
    """One page of installations with their user's email.

    `after`: the page following that row; `before`: the page preceding it; `last`: the final
    page. With none of them, the first page.
    """
    column = _sort_column(INSTALLATION_SORTS, sort)
    if filters.installation_ids is not None and not filters.installation_ids:
        return Page((), False, False, sort)
    query = (
        AppInstallation.select(
            AppInstallation.id, AppInstallation.user_id, User.email, AppInstallation.app_id,
            AppInstallation.status,
            # Wrapped so Peewee hands back the raw value: we decode it ourselves, tolerantly.
            NodeList([AppInstallation.config]).alias("config"),
            AppInstallation.installed_at, AppInstallation.updated_at,
        )
        .join(User, on=(AppInstallation.user == User.id))
    )
    for condition in _installation_conditions(filters, database):
        query = query.where(condition)


    def make_row(record):
        id_, user_id, email, app_id, status, config, installed_at, updated_at = record
        return InstallationRow(
            id_, user_id, email, app_id, status, count_fields_set(decode_config(config)),
            _as_datetime(installed_at), _as_datetime(updated_at),
        )

    return _keyset_page(
        database, query, column, AppInstallation.id, sort, make_row,
        after=after, before=before, last=last, limit=limit,
    )


def list_users(
    database,
    filters: UserFilter = UserFilter(),
    sort: Sort = Sort(),
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    last: bool = False,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Page:
    """One page of users (never their password) with how many installations each has."""
    column = _sort_column(USER_SORTS, sort)
    installations = (
        AppInstallation.select(fn.COUNT(AppInstallation.id))
        .where(AppInstallation.user == User.id)
    )
    query = User.select(*USER_DISPLAY_FIELDS, installations.alias("installations"))
    for condition in _user_conditions(filters):
        query = query.where(condition)

    def make_row(record):
        id_, name, email, role, created_at, count = record
        return UserRow(id_, name, email, role, _as_datetime(created_at), count)

    return _keyset_page(
        database, query, column, User.id, sort, make_row,
        after=after, before=before, last=last, limit=limit,
    )


def count_installations(database, filters: InstallationFilter = InstallationFilter(), *,
                        cap: int | None = COUNT_CAP) -> MatchCount:
    """How many installations match `filters`: `count(*)` over the same WHERE as the list,
    stopped after `cap` rows (None: exact, whatever it costs)."""
    if filters.installation_ids is not None and not filters.installation_ids:
        return MatchCount(0)
    inner = AppInstallation.select(SQL("1"))
    if filters.email:  # every installation has its user (a foreign key): join only to filter by email
        inner = inner.join(User, on=(AppInstallation.user == User.id))
    return _capped_count(database, AppInstallation, inner, _installation_conditions(filters, database), cap)


def count_users(database, filters: UserFilter = UserFilter(), *, cap: int | None = COUNT_CAP) -> MatchCount:
    """How many users match `filters` (the users list's WHERE), stopped after `cap` rows."""
    return _capped_count(database, User, User.select(SQL("1")), _user_conditions(filters), cap)


def _capped_count(database, model, inner, conditions, cap: int | None) -> MatchCount:
    """`count(*)` of `inner` under `conditions`, reading at most `cap` + 1 rows."""
    for condition in conditions:
        inner = inner.where(condition)
    if cap is not None:
        inner = inner.limit(cap + 1)
    query = model.select(fn.COUNT(SQL("*"))).from_(inner.alias("matches"))
    with translate_errors(database), read_only(database):
        count = query.bind(database).scalar() or 0
    if cap is not None and count > cap:
        return MatchCount(cap, exact=False)
    return MatchCount(count)


def _user_conditions(filters: UserFilter) -> list:
    conditions = []
    if filters.email:
        conditions.append(User.email.contains(filters.email))
    if filters.role:
        conditions.append(User.role == filters.role)
    if filters.user_id is not None:
        conditions.append(User.id == filters.user_id)
    return conditions


def iter_installations(database, filters: InstallationFilter = InstallationFilter(), sort: Sort = Sort(),
                       *, page_size: int = 1000) -> Iterator[InstallationRow]:
    """Every matching row in display order, one keyset page (one short read) at a time."""
    page = list_installations(database, filters, sort, limit=page_size)
    while True:
        yield from page.rows
        if not page.has_next:
            return
        page = list_installations(database, filters, sort, after=page.last, limit=page_size)


EXPORT_COLUMNS = tuple(field.name for field in dataclasses.fields(InstallationRow))


def export_installations(database, path: Path, fmt: str, filters: InstallationFilter = InstallationFilter(),
                         sort: Sort = Sort()) -> int:
    """Write the list the dashboard shows (every page, not only the one on screen) to `path`
    as CSV or JSON; returns the number of rows. No config value is written (the list holds
    none: only how many fields are set)."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"cannot export as {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    rows = (_export_record(row) for row in iter_installations(database, filters, sort))
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        if fmt == "csv":
            writer = csv.DictWriter(out, EXPORT_COLUMNS)
            writer.writeheader()
            for record in rows:
                writer.writerow({name: csv_cell(value) for name, value in record.items()})  # emails are customer text
                count += 1
        else:
            out.write("[")
            for record in rows:
                out.write(("," if count else "") + "\n" + json.dumps(record, ensure_ascii=False))
                count += 1
            out.write("\n]\n")
    return count


def _export_record(row: InstallationRow) -> dict:
    record = dataclasses.asdict(row)
    for name in ("installed_at", "updated_at"):
        if record[name] is not None:
            record[name] = record[name].isoformat()
    return record


def overview(database, filters: InstallationFilter | None = None) -> Overview:
    """Counts by status and by app (one GROUP BY), and the number of users."""
    query = AppInstallation.select(AppInstallation.app_id, AppInstallation.status, fn.COUNT(SQL("*")))
    if filters is not None and not filters.is_empty:
        query = query.join(User, on=(AppInstallation.user == User.id))
        for condition in _installation_conditions(filters, database):
            query = query.where(condition)
    query = query.group_by(AppInstallation.app_id, AppInstallation.status)
    with translate_errors(database), read_only(database):
        groups = list(query.bind(database).tuples())
        users = User.select(fn.COUNT(SQL("*"))).bind(database).scalar()
    by_status = {status: 0 for status in APP_STATUSES}
    by_app: dict[str, int] = {}
    for app_id, status, count in groups:
        by_status[status] = by_status.get(status, 0) + count
        by_app[app_id] = by_app.get(app_id, 0) + count
    by_app = dict(sorted(by_app.items(), key=lambda item: (-item[1], item[0])))
    return Overview(sum(by_status.values()), by_status, by_app, users or 0)


def count_fields_set(config) -> int | None:
    """How many fields hold a non-empty value; None when the config is not an object."""
    if config is None:
        return 0  # NULL counts as {} (DESIGN §4.4)
    if not isinstance(config, dict):
        return None
    return sum(1 for value in config.values() if value not in (None, ""))


# --- keyset paging --------------------------------------------------------------------------


def _keyset_page(database, query, column, pk, sort, make_row, *, after, before, last, limit) -> Page:
    if limit < 1:
        raise UsageError("a page holds at least one row")
    if sum(x is not None and x is not False for x in (after, before, last or None)) > 1:
        raise UsageError("ask for one of after, before, last")
    backwards = before is not None or last
    cursor = before if backwards else after
    # The direction we walk the index in: the display order, or its reverse for a previous page.
    walk_descending = sort.descending != backwards
    need = limit + 1  # one extra row tells whether there is more beyond this page
    records = []
    query = query.select_extend(column.expression.alias("sort_key"), pk.alias("sort_id"))
    with translate_errors(database), read_only(database):
        for segment in _segments(column, pk, cursor, backwards, walk_descending):
            if len(records) >= need:
                break
            segment_query = query.where(*segment.conditions) if segment.conditions else query
            segment_query = segment_query.order_by(*segment.order).limit(need - len(records))
            records.extend(segment_query.bind(database).tuples())
    more = len(records) > limit
    records = records[:limit]
    if backwards:
        records.reverse()
        has_next, has_prev = before is not None, more
    else:
        has_next, has_prev = more, after is not None
    rows = tuple(make_row(record[:-2]) for record in records)
    cursors = tuple(Cursor(record[-2], record[-1]) for record in records)
    return Page(rows, has_next, has_prev, sort, cursors)


@dataclasses.dataclass
class _Segment:
    conditions: list
    order: list


def _segments(column, pk, cursor, backwards, descending):
    """The queries that walk the display order from `cursor`.

    The display order is the non-null sort values with their ids, then the NULL values by id.
    Walking backwards visits the NULL segment first.
    """
    key = column.expression

    def ordered(*nodes):
        return [node.desc() if descending else node.asc() for node in nodes]

    def after_key(value, id_):
        left = Tuple(key, pk)
        right = Tuple(Value(value, converter=_converter(key)), id_)
        return left < right if descending else left > right

    def after_id(id_):
        return pk < id_ if descending else pk > id_

    non_null_all = _Segment([key.is_null(False)] if column.nullable else [], ordered(key, pk))
    null_all = _Segment([key.is_null()], ordered(pk))
    if not column.nullable:
        if cursor is None:
            return [non_null_all]
        return [_Segment([after_key(cursor.value, cursor.id)], ordered(key, pk))]
    if cursor is None:
        return [null_all, non_null_all] if backwards else [non_null_all, null_all]
    if cursor.value is None:
        rest = _Segment([key.is_null(), after_id(cursor.id)], ordered(pk))
        return [rest, non_null_all] if backwards else [rest]
    rest = _Segment([after_key(cursor.value, cursor.id)], ordered(key, pk))
    return [rest] if backwards else [rest, null_all]


def _converter(expression):
    # Parameters compared with a column go through the column's own conversion
    # (datetimes become the text SQLite stores; enum labels are checked).
    return expression.db_value if isinstance(expression, Field) else None


# --- filters and values ---------------------------------------------------------------------


def _installation_conditions(filters: InstallationFilter, database) -> list:
    conditions = []
    apps, statuses = _many(filters.app_id), _many(filters.status)
    if apps:
        conditions.append(AppInstallation.app_id == apps[0] if len(apps) == 1 else AppInstallation.app_id.in_(apps))
    if statuses:
        conditions.append(AppInstallation.status == statuses[0] if len(statuses) == 1
                          else AppInstallation.status.in_(statuses))
    if filters.email:
        conditions.append(User.email.contains(filters.email))
    if filters.user_id is not None:
        conditions.append(AppInstallation.user == filters.user_id)
    if filters.installation_ids is not None:
        conditions.append(_id_in(AppInstallation.id, filters.installation_ids, database))
    return conditions


def _id_in(field, ids, database):
    """`field IN ids` as one parameter, however many ids (an audit can flag 100k rows)."""
    ids = sorted(int(i) for i in ids)
    if not ids:
        return SQL("1 = 0")
    if is_postgres(database):
        return NodeList((field, SQL("= ANY(%s)", [ids])))
    return NodeList((field, SQL("IN (SELECT value FROM json_each(?))", [json.dumps(ids)])))


def _as_datetime(value):
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):  # SQLite stores text
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return value
