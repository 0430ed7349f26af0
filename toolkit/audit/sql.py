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
    # The incremental audit's conditions (PostgreSQL only; see incremental.py). Neither narrows the
    # users' check nor shows in `describe()`: the report is the full audit's.
    changed_since: int | None = None  # rows whose xmin is at or after this 64-bit xid
    ids: tuple[int, ...] | None = None  # only these installation ids

    @property
    def narrows_installations(self) -> bool:
        return bool(self.apps or self.statuses or self.since is not None)

    def summary(self) -> dict:
        """What a report's summary says was asked: the checked codes (the codes table's
        order) and the filters."""
        return {"codes": [c for c in ALL_CODES if c in self.codes], "filters": self.describe()}

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


def xid32(xid64: int) -> int:
    """The 32-bit xid (a row's xmin, age()'s argument) of a 64-bit one (pg_current_snapshot's).
    Low bits 0-2 are never assigned (bootstrap and frozen ids are skipped at each wrap): the
    first normal xid after them, 3, is the same threshold."""
    return max(int(xid64) & 0xFFFFFFFF, 3)


# age(xid) is (int32)(the transaction's stable next xid - xid): the same reference for every
# row and every statement of one transaction, and INT_MAX for bootstrap/frozen ids (0-2). So
# within a transaction, "xid at or after the saved xmin" is age(xmin) <= age(saved), exact
# while the saved xmin is under 2^31 transactions old — incremental.py checks age(saved) in that
# very transaction. One age() per row is a plain C call: ~10 ms per million rows, where the
# former xmin::text::bigint arithmetic cost a text round trip per row.
SAVED_AGE = "SELECT age(%s::text::xid)"


def changed_since_condition(mark: str = "%s") -> str:
    """Rows written by a transaction that may not have committed before the saved snapshot:
    its xid at or after the snapshot's xmin. Not pg_visible_in_snapshot(): that misjudges
    subtransaction ids (savepoints: PostgreSQL's docs say so), and re-reading a row that was
    already seen is harmless where missing one is not. One parameter: xid32(the saved xmin);
    the InitPlan evaluates its age once. A frozen row keeps its raw xmin (PostgreSQL >= 9.4):
    written before the saved snapshot it reads as old, written after it as new — both right."""
    return f"(age(xmin) <= ({SAVED_AGE.replace('%s', mark)}))"


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
        params = [*params, xid32(filters.changed_since)]
    if filters.ids is not None:
        conditions = [*conditions, f"id = ANY({mark}::integer[])"]
        params = [*params, [int(i) for i in filters.ids]]
    return conditions, params


def id_query(filters: Filters, known_apps=(), since: int = 0) -> Query:
    """PostgreSQL: which rows the audit with `filters` reads, and which of them changed since
    `since` (the saved 64-bit xmin, changed_since_condition) — as bitmaps of 64 ids: rows of
    `(word, present, changed)`, bit n of `present` standing for id word * 64 + n. One scan,
    the rule evaluated in the server, and (read with COPY … (FORMAT binary), incremental.py)
    a 64th of the rows, expanded by numpy: no Python call per row, 0.6 MB a million ids. Its
    hash aggregate holds int8 states, which PostgreSQL spills past work_mem as it does any."""
    base = installation_query(dataclasses.replace(filters, changed_since=None, ids=None), known_apps)
    start = base.sql.index(" FROM app_installations")
    bit = "(1::bigint << (id & 63)::integer)"
    return Query(f"SELECT (id >> 6)::bigint, bit_or({bit}), coalesce(bit_or({bit}) FILTER (WHERE"
                 f" {changed_since_condition()}), 0)" + base.sql[start:] + " GROUP BY 1",
                 (xid32(since), *base.params))


def duplicate_candidates_query(since: int, users) -> Query:
    """The users' check redone for what may have changed (no --user filter): (lower-cased
    email, id) of every user sharing a lower-cased email with a user written since `since`
    (the saved 64-bit xmin) or with one of `users` (those of the saved audit's duplicate
    groups). Exact (incremental.py says why); grouped in Python — a GROUP BY over the semi-join is
    misjudged by the planner, which spills it. One statement, so it can run beside the id pass."""
    sql = ("SELECT lower(email), id FROM users WHERE lower(email) IN (SELECT lower(email) FROM users WHERE "
           f"{changed_since_condition()} OR id = ANY(%s::integer[]))")
    return Query(sql, (xid32(since), [int(u) for u in users]))


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
