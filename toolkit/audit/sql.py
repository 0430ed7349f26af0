"""The audit's SQL: filters become WHERE clauses, so a narrowed audit reads less.

Every query here is a plain SELECT run inside a read-only transaction — no session state, so
all of it is safe through the transaction pooler. PostgreSQL streams the installations with
`COPY (SELECT …) TO STDOUT`; SQLite runs the same SELECT. Parameters are bound by the driver
(`%s` for psycopg2, `?` for sqlite3); COPY takes no bind parameters, so the engine has
psycopg2 interpolate them (`cursor.mogrify`), which quotes them safely.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from ..codes import (
    ALL_CODES, BOTH_STATUSES, CODES, CONFIG, INSTALLATION_CODES, TIMESTAMP_ROWS, TIMESTAMPS,
    UNKNOWN_APP_ROWS,
)
from ..ids import is_id



@dataclasses.dataclass(frozen=True)
class Filters:
    """What to audit. Empty means everything. `users` holds ids (int) and emails (str)."""

    apps: tuple[str, ...] = ()
    users: tuple = ()
    statuses: tuple[str, ...] = ()
    codes: frozenset = frozenset(ALL_CODES)
    since: dt.datetime | dt.date | None = None
    # The incremental audit's conditions (PostgreSQL only; see store.py). Neither narrows the
    # users' check nor shows in `describe()`: the report is the full audit's.
    changed_since: int | None = None  # rows whose xmin is at or after this 64-bit xid
    ids: tuple[int, ...] | None = None  # only these installation ids

    @property
    def narrows_installations(self) -> bool:
        return bool(self.apps or self.statuses or self.since is not None)

    def describe(self) -> dict:
        """For the report's summary: what was asked (JSON-able)."""
        shown = {}
        if self.apps:
            shown["apps"] = list(self.apps)
        if self.users:
            shown["users"] = [str(u) for u in self.users]
        if self.statuses:
            shown["statuses"] = list(self.statuses)
        if self.since is not None:
            shown["since"] = self.since.isoformat()
        if set(self.codes) != set(ALL_CODES):
            shown["codes"] = sorted(self.codes)
        return shown


@dataclasses.dataclass(frozen=True)
class Query:
    sql: str
    params: tuple

    def with_id_range(self, low: int, high: int, mark: str = "%s") -> "Query":
        """The same rows with `low <= id < high` (a worker's share)."""
        glue = " AND " if " WHERE " in self.sql else " WHERE "
        return Query(f"{self.sql}{glue}id >= {mark} AND id < {mark}", self.params + (low, high))


def split_users(users) -> tuple[list[int], list[str]]:
    ids = [int(u) for u in users if isinstance(u, int) or (isinstance(u, str) and is_id(u))]
    emails = [u for u in users if isinstance(u, str) and not is_id(u)]
    return ids, emails


def _in(column: str, values, mark: str) -> tuple[str, list]:
    return f"{column} IN ({', '.join([mark] * len(values))})", list(values)


def _code_condition(codes, known_apps, mark: str) -> tuple[str | None, list]:
    """Rows that can hold one of `codes` at all — only when every code narrows, as the codes
    table says: `rows` (only unknown app ids, only updated_at < installed_at) or `statuses`
    (field.missing: configured rows only). Any other code needs every row."""
    parts, params = [], []
    for code in codes:
        entry = CODES[code]
        if entry.rows == UNKNOWN_APP_ROWS:
            if not known_apps:
                return None, []
            clause, values = _in("app_id", sorted(known_apps), mark)
            parts.append(f"app_id NOT {clause[len('app_id '):]}")
            params += values
        elif entry.rows == TIMESTAMP_ROWS:
            parts.append("updated_at < installed_at")
        elif entry.statuses != BOTH_STATUSES:
            # The table's own enum labels, never input: written into the SQL as literals.
            parts += [f"status = '{status}'" for status in sorted(entry.statuses)]
        else:
            return None, []
    if not parts:
        return None, []
    return "(" + " OR ".join(parts) + ")", params


# A row's xmin is a 32-bit xid; its 64-bit xid is the largest number not above the statement's
# next xid with those low 32 bits (rows older than 2^32 transactions are frozen: counted as
# changed at worst, re-read, harmless). The next xid comes from the statement's own snapshot
# (an InitPlan, evaluated once). Xids 0-2 are bootstrap/frozen: never changed.
_NEXT_XID = "(SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint)"
XMIN64 = f"({_NEXT_XID} - (({_NEXT_XID} - xmin::text::bigint) & 4294967295))"


def changed_since_condition(mark: str = "%s") -> str:
    """Rows written by a transaction that may not have committed before the saved snapshot:
    its xid at or after the snapshot's xmin. Not pg_visible_in_snapshot(): that misjudges
    subtransaction ids (savepoints: PostgreSQL's docs say so), and re-reading a row that was
    already seen is harmless where missing one is not. One parameter: the saved xmin."""
    return f"(xmin::text::bigint > 2 AND {XMIN64} >= {mark})"


def installation_query(filters: Filters, known_apps=(), *, mark: str = "%s") -> Query:
    """SELECT id, user_id, app_id, status, timestamps, config — only what the codes read.

    `timestamps` is '' unless updated_at < installed_at (then both times, for the message);
    computing it in SQL avoids parsing two timestamps per row in Python. `config` is the
    jsonb as text, or '{}' when no selected code reads it."""
    codes = [c for c in INSTALLATION_CODES if c in filters.codes]  # table order: stable SQL
    reads = set().union(*(CODES[c].reads for c in codes)) if codes else set()
    if TIMESTAMPS in reads:
        timestamps = ("CASE WHEN updated_at < installed_at THEN 'installed_at ' || installed_at"
                      " || ', updated_at ' || updated_at ELSE '' END")
    else:
        timestamps = "''"
    config = "config" if CONFIG in reads else "'{}'"
    conditions, params = [], []
    if filters.apps:
        clause, values = _in("app_id", filters.apps, mark)
        conditions.append(clause)
        params += values
    if filters.users:
        clause, values = _user_match(filters.users, mark, installations=True)
        conditions.append(f"({clause})")
        params += values
    if filters.statuses:
        clause, values = _in("status", filters.statuses, mark)
        conditions.append(clause)
        params += values
    if filters.since is not None:
        conditions.append(f"updated_at >= {mark}")
        params.append(filters.since)
    clause, values = _code_condition(codes, known_apps, mark)
    if clause:
        conditions.append(clause)
        params += values
    conditions, params = _incremental_conditions(filters, conditions, params, mark)
    columns = ["id", "user_id", "app_id", "status", timestamps, config]
    if mark == "?":
        # SQLite: text as bytes, like COPY. A TEXT value that is not UTF-8 would make sqlite3
        # raise while fetching; as bytes it reaches the checks, which never crash on it.
        columns[2:] = [f"CAST({c} AS BLOB)" for c in columns[2:]]
    sql = f"SELECT {', '.join(columns)} FROM app_installations"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return Query(sql, tuple(params))


def _incremental_conditions(filters: Filters, conditions, params, mark):
    if filters.changed_since is None and filters.ids is None:
        return conditions, params
    if mark != "%s":
        raise ValueError("changed_since and ids are PostgreSQL-only conditions")
    if filters.changed_since is not None:
        conditions = [*conditions, changed_since_condition(mark)]
        params = [*params, int(filters.changed_since)]
    if filters.ids is not None:
        conditions = [*conditions, f"id = ANY({mark}::integer[])"]
        params = [*params, [int(i) for i in filters.ids]]
    return conditions, params


def id_query(filters: Filters, known_apps=()) -> Query:
    """PostgreSQL: `id, xmin` of every row the audit with `filters` reads: the id set tells
    deleted rows, xmin (compared in numpy, store.py) the rows to read again. One scan, no
    per-row casts in the server, nothing but two numbers a row sent."""
    base = installation_query(dataclasses.replace(filters, changed_since=None, ids=None), known_apps)
    start = base.sql.index(" FROM app_installations")
    return Query("SELECT id, xmin" + base.sql[start:], base.params)


def range_query(query: Query) -> Query:
    """min(id), max(id) of the rows `query` selects: the primary key answers it at once (a
    count(*) would scan the table), and the workers' id ranges need no more."""
    start = query.sql.index(" FROM app_installations")
    return Query("SELECT min(id), max(id)" + query.sql[start:], query.params)


def count_query(query: Query) -> Query:
    """count(*) of the rows `query` selects (SQLite: small, exact progress totals)."""
    start = query.sql.index(" FROM app_installations")
    return Query("SELECT count(*)" + query.sql[start:], query.params)


def _user_match(users, mark: str, *, installations: bool = False) -> tuple[str, list]:
    """The given users (ids, or emails ignoring case) as an OR-condition on `users`, or with
    `installations=True` on app_installations.user_id."""
    ids, emails = split_users(users)
    parts, params = [], []
    if ids:
        clause, values = _in("user_id" if installations else "id", ids, mark)
        parts.append(clause)
        params += values
    if emails:
        by_email = f"lower(email) IN ({', '.join([f'lower({mark})'] * len(emails))})"
        parts.append(f"user_id IN (SELECT id FROM users WHERE {by_email})" if installations else by_email)
        params += emails
    return " OR ".join(parts), params


def email_duplicates_query(filters: Filters, *, mark: str = "%s", postgres: bool = True) -> Query:
    """One row per lower-cased email that two or more users share: (their ids, the ids the
    --user filter asked for). Grouped in SQL, one pass (GROUP BY lower(email)); ids come as
    an array (PostgreSQL) or a comma-separated list (SQLite's group_concat)."""
    aggregate = "array_agg({})" if postgres else "group_concat({})"
    ids = aggregate.format("id")
    if not filters.users:
        return Query(f"SELECT {ids}, NULL FROM users GROUP BY lower(email) HAVING count(*) > 1", ())
    condition, params = _user_match(filters.users, mark)
    wanted = f"{ids} FILTER (WHERE {condition})"
    sql = (f"SELECT {ids}, {wanted} FROM users GROUP BY lower(email) "
           f"HAVING count(*) > 1 AND count(*) FILTER (WHERE {condition}) > 0")
    return Query(sql, tuple(params) * 2)
