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

import dataclasses
import datetime as dt
import json
from typing import Any, Callable

from peewee import JOIN, SQL, NodeList, Tuple, Value, fn

from .db import APP_STATUSES, ROLES, USER_DISPLAY_FIELDS, AppInstallation, User, is_postgres, read_only, translate_errors
from .db.json_values import decode_config
from .errors import NotFound, UsageError

__all__ = [
    "DEFAULT_PAGE_SIZE", "INSTALLATION_SORTS", "USER_SORTS", "Cursor",
    "InstallationFilter", "InstallationRow", "Overview", "Page", "Sort", "UserFilter", "UserRow",
    "count_fields_set", "list_installations", "list_users", "overview",
]

DEFAULT_PAGE_SIZE = 100


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
    app_id: str | None = None
    status: str | None = None
    email: str | None = None  # substring, case-insensitive
    user_id: int | None = None
    # From an audit report (finding code -> installation ids); None means "no such filter".
    installation_ids: frozenset[int] | None = None

    def __post_init__(self):
        if self.status is not None and self.status not in APP_STATUSES:
            raise UsageError(f"status must be one of {', '.join(APP_STATUSES)}, got {self.status!r}")

    @property
    def is_empty(self) -> bool:
        return self == InstallationFilter()


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
    key: Callable[[Any], Cursor] = dataclasses.field(repr=False, compare=False, default=None)

    @property
    def first(self) -> Cursor | None:
        return self.key(self.rows[0]) if self.rows else None

    @property
    def last(self) -> Cursor | None:
        return self.key(self.rows[-1]) if self.rows else None


@dataclasses.dataclass(frozen=True)
class Overview:
    total: int
    by_status: dict[str, int]
    by_app: dict[str, int]
    users: int


# --- sort columns ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SortColumn:
    expression: Any
    nullable: bool
    attribute: str  # the row attribute that holds the sort value


INSTALLATION_SORTS = {
    "id": _SortColumn(AppInstallation.id, False, "id"),
    "email": _SortColumn(User.email, False, "email"),
    "app": _SortColumn(AppInstallation.app_id, False, "app_id"),
    "status": _SortColumn(AppInstallation.status, False, "status"),
    "installed": _SortColumn(AppInstallation.installed_at, True, "installed_at"),
    "updated": _SortColumn(AppInstallation.updated_at, True, "updated_at"),
}

USER_SORTS = {
    "id": _SortColumn(User.id, False, "id"),
    "email": _SortColumn(User.email, False, "email"),
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
        return Page((), False, False, sort, _cursor_of(column))
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
    if filters.email:
        query = query.where(User.email.contains(filters.email))
    if filters.role:
        query = query.where(User.role == filters.role)
    if filters.user_id is not None:
        query = query.where(User.id == filters.user_id)

    def make_row(record):
        id_, name, email, role, created_at, count = record
        return UserRow(id_, name, email, role, _as_datetime(created_at), count)

    return _keyset_page(
        database, query, column, User.id, sort, make_row,
        after=after, before=before, last=last, limit=limit,
    )


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
    with translate_errors(database), read_only(database):
        for segment in _segments(column, pk, cursor, backwards, walk_descending):
            if len(records) >= need:
                break
            segment_query = query.where(*segment.conditions) if segment.conditions else query
            segment_query = segment_query.order_by(*segment.order).limit(need - len(records))
            records.extend(segment_query.bind(database).tuples())
    more = len(records) > limit
    rows = [make_row(record) for record in records[:limit]]
    if backwards:
        rows.reverse()
        has_next, has_prev = before is not None, more
    else:
        has_next, has_prev = more, after is not None
    return Page(tuple(rows), has_next, has_prev, sort, _cursor_of(column))


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
    return getattr(expression, "db_value", None)


def _cursor_of(column) -> Callable[[Any], Cursor]:
    return lambda row: Cursor(getattr(row, column.attribute), row.id)


# --- filters and values ---------------------------------------------------------------------


def _installation_conditions(filters: InstallationFilter, database) -> list:
    conditions = []
    if filters.app_id:
        conditions.append(AppInstallation.app_id == filters.app_id)
    if filters.status:
        conditions.append(AppInstallation.status == filters.status)
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
