"""The data-access seam for `app_installations` rows that are read to be rewritten or counted:
keyset pages by id, rows decoded by the one config decoder, and compare-and-swap writes.

Rotation, repairs, the config service's writes and `keys status` all read and write through
a store, so a row is read, decoded and written back the same way everywhere:

- `PostgresStore`: one psycopg2 connection of its own; every read and write is one short
  transaction (pooler-safe: `SET LOCAL` only, nothing held across transactions). A page's
  changes travel as one JSON document unpacked by `jsonb_to_recordset`, much cheaper to
  build and parse than a VALUES list of a few thousand rows.
- `SqliteStore` (the demo database): SQLite has a single writer, so `BEGIN IMMEDIATE` +
  re-check in Python + UPDATE is the compare-and-swap.

The dialect is the store's business: callers ask `store_factory(database)` for the right one.

The config service writes one row at a time, inside a transaction of its own on its Peewee
database (it reads the row, validates, then writes; on SQLite under BEGIN IMMEDIATE from the
read on). `apply_in(database, changes)` runs the same compare-and-swap statements in that
transaction, on that connection: no second connection (which would wait for the service's own
SQLite write lock, and cost a connect per write), no session state, no commit of its own —
so it is pooler-safe the way the service's transaction is. It leaves out what only a batch
needs (lock_timeout with split retries, asynchronous commit): an operator's save waits for a
locked row like any app write, and is durable once it returns. `delete_in` is the same
condition for the service's uninstall.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from collections.abc import Mapping
from typing import Callable, NamedTuple

import orjson

from ..errors import DatabaseError
from .connection import is_postgres
from .json_values import decode_config

BEFORE_ALL = -(2**62)  # below any id (serial ids start at 1, but a hand-inserted row may not)
LOCK_TIMEOUT = "1s"  # an app transaction holding a row longer than this: that row waits for a retry
SPLIT = 16  # a page that times out on a lock is retried in this many parts, down to the one row


class Row(NamedTuple):
    id: int
    app_id: str
    status: str
    config: object  # decode_config's result: a dict for a sane row ({} for NULL), else what it is
    config_text: str | None  # exactly as read, for whole-row compare-and-swap
    version: str | None = None  # PostgreSQL: the row version read (xmin), for the fast path

    def __repr__(self) -> str:  # never the config: it holds secrets
        return f"Row(id={self.id}, app_id={self.app_id!r}, status={self.status!r})"


_NOTHING = types.MappingProxyType({})


class Change(NamedTuple):
    """What to write to one row, and the condition under which it may be written.

    `expect` holds the value read for every key the change depends on (strings only);
    the row is written only if each still holds exactly that value. With `whole` set the
    condition is instead that the whole config is still `whole_config` (its text as read,
    None for SQL NULL) — and the status still `status[0]` when the status changes.
    (A NamedTuple: millions are built during a rotation, and tuples are cheap to build.)
    """

    id: int
    expect: Mapping = _NOTHING  # key -> value read
    patch: Mapping = _NOTHING  # key -> new string value
    drop: tuple = ()  # keys to remove
    status: tuple | None = None  # (old, new)
    whole: bool = False
    whole_config: str | None = None
    # updated_at: False keeps it; True sets it to now, in naive UTC like the app's Date; a
    # naive-UTC datetime sets it to that (the config service's clock decides its timestamps).
    touch: bool | dt.datetime = False

    def __repr__(self) -> str:  # keys only: `expect` and `patch` hold secrets, old and new
        return (f"Change(id={self.id}, expect={sorted(self.expect)}, patch={sorted(self.patch)}, "
                f"drop={list(self.drop)}, status={self.status})")


def store_factory(database, *, read_only: bool = False) -> Callable[[], object]:
    """A picklable callable opening a new store on a Peewee database (PostgreSQL or the SQLite demo)."""
    import functools


    database = getattr(database, "obj", database)  # a DatabaseProxy
    if is_postgres(database):
        return functools.partial(PostgresStore, database.url.dsn(), read_only=read_only)
    return functools.partial(SqliteStore, database.database, read_only=read_only)


def open_store(database, *, read_only: bool = False):
    return store_factory(database, read_only=read_only)()


_COLUMNS = "id, app_id, status::text, config::text, xmin::text"

# A page's changes travel as ONE JSON document (much cheaper to build and to parse than a
# VALUES list of thousands of rows), in up to two statements:
#
#   fast   for the changes that only set keys (rotation, encrypting a plaintext secret): the
#          row version is still the one read (`xmin`), i.e. nothing at all changed since the
#          read, so the exact condition below holds too. The document is an object keyed by
#          id, looked up from a range scan of the page's ids — no join, no old values sent;
#   exact  for everything else, and for the rows the app wrote meanwhile: the keys the change
#          depends on still hold exactly the values read (`@>` on a flat object of strings
#          is equality of each listed key), or, for whole-row changes, the config and the
#          status are still as read.
#
# A row is written iff the exact condition holds; the fast path only spares sending and
# comparing the old values in the common case.
_PG_FAST = """
UPDATE app_installations AS t
   SET config = t.config || (v.doc -> t.id::text -> 'p'){touch}
  FROM (SELECT %s::jsonb AS doc) AS v
 WHERE t.id >= %s AND t.id <= %s
   AND v.doc ? t.id::text
   AND t.xmin = (v.doc -> t.id::text ->> 'x')::xid
RETURNING t.id
"""
_PG_FAST_TOUCH = ", updated_at = CASE WHEN v.doc -> t.id::text ? 'u' THEN (now() AT TIME ZONE 'UTC') ELSE t.updated_at END"

_PG_EXACT = """
UPDATE app_installations AS t
   SET config = {config}{status}{touch}
  FROM jsonb_to_recordset(%s::jsonb)
       AS v(i int, e jsonb, p jsonb, d text[], w bool, c jsonb, s0 text, s1 text, u bool, ts timestamp)
 WHERE t.id = v.i
   AND CASE WHEN v.w THEN t.config IS NOT DISTINCT FROM v.c ELSE t.config @> v.e END{status_check}
RETURNING t.id
"""


def _fast_path(change: Change) -> bool:
    return not change.drop and change.status is None and change.touch.__class__ is bool


def _pg_exact_sql(changes) -> str:
    """The exact UPDATE, with only the clauses its changes need."""
    drops = any(c.drop for c in changes)
    statuses = any(c.status for c in changes)
    # A NULL config patched is an object (as on SQLite, and as the app reads it: `null ?? {}`).
    base = "coalesce(t.config, '{}')"
    config = f"({base} - coalesce(v.d, '{{}}')) || v.p" if drops else f"{base} || v.p"
    if statuses:
        # A status-only change leaves the config as it is (even a NULL one).
        config = f"CASE WHEN v.p = '{{}}' AND v.d IS NULL THEN t.config ELSE {config} END"
    return _PG_EXACT.format(
        config=config,
        status=", status = coalesce(v.s1, t.status::text)::app_status" if statuses else "",
        touch=", updated_at = CASE WHEN v.u THEN coalesce(v.ts, now() AT TIME ZONE 'UTC') ELSE t.updated_at END"
        if any(c.touch for c in changes) else "",
        status_check="\n   AND (v.s0 IS NULL OR t.status::text = v.s0)" if statuses else "",
    )


def _pg_fast_document(changes, versions) -> bytes:
    """{"<id>": {"x": version, "p": {key: new value}, "u": true when it touches updated_at}}."""
    if not any(c.touch for c in changes):  # rotation: one comprehension
        return orjson.dumps({str(c.id): {"x": versions[c.id], "p": c.patch} for c in changes}, default=dict)
    document = {}
    for change in changes:
        entry = {"x": versions[change.id], "p": change.patch}
        if change.touch:
            entry["u"] = True
        document[str(change.id)] = entry
    return orjson.dumps(document, default=dict)  # default: a read-only mapping becomes an object


def _pg_record(change: Change) -> dict:
    patch = change.patch
    record = {"i": change.id, "p": patch if patch.__class__ is dict else dict(patch)}
    if change.whole:
        record["w"] = True
        record["c"] = orjson.Fragment(change.whole_config) if change.whole_config is not None else None
    else:
        expect = change.expect
        record["e"] = expect if expect.__class__ is dict else dict(expect)
    if change.drop:
        record["d"] = list(change.drop)
    if change.status:
        record["s0"], record["s1"] = change.status
    if change.touch:
        record["u"] = True
        if change.touch is not True:
            record["ts"] = change.touch.isoformat()
    return record


def _retryable():
    from psycopg2 import errors

    # Another transaction held the rows (lock_timeout) or PostgreSQL chose us as the victim.
    return (errors.LockNotAvailable, errors.TransactionRollback)


class _Store:
    """A store holds one connection of its own; `with store:` closes it."""

    connection = None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PostgresStore(_Store):
    """Pages and compare-and-swap writes on its own psycopg2 connection (pooler-safe)."""

    def __init__(self, dsn: str, *, read_only: bool = False, lock_timeout: str = LOCK_TIMEOUT):
        import psycopg2

        self._psycopg2 = psycopg2
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        try:
            self.connection = psycopg2.connect(dsn)
        except psycopg2.Error as exc:
            raise _database_error(exc) from None

    # -- reads ------------------------------------------------------------------------
    def read_page(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        bound = " AND id <= %s" if upto is not None else ""
        params = (after, upto, limit) if upto is not None else (after, limit)
        return self._read(
            f"SELECT {_COLUMNS} FROM app_installations WHERE id > %s{bound} ORDER BY id LIMIT %s", params
        )

    def read_ids(self, ids) -> list[Row]:
        return self._read(f"SELECT {_COLUMNS} FROM app_installations WHERE id = ANY(%s) ORDER BY id", (list(ids),))

    def _read(self, sql, params) -> list[Row]:
        with self._transaction() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        return [Row(i, a, s, decode_config(c), c, x) for i, a, s, c, x in fetched]

    def count(self) -> int:
        with self._transaction() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute("SELECT count(*) FROM app_installations")
            return cursor.fetchone()[0]

    def id_bounds(self) -> tuple[int, int]:
        with self._transaction() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM app_installations")
            return cursor.fetchone()

    # -- writes -----------------------------------------------------------------------
    def check_writable(self) -> None:
        """Refuse up front when writes would be refused (read-only database, role or replica)."""
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT current_setting('transaction_read_only'), pg_is_in_recovery(),"
                " has_table_privilege('app_installations', 'UPDATE')"
            )
            read_only, recovery, may_update = cursor.fetchone()
        if read_only == "on" or recovery:
            raise DatabaseError(
                "the database refuses writes (read-only transaction or standby); nothing was changed",
                hint="point DATABASE_URL at the primary with a role that may write",
            )
        if not may_update:
            raise DatabaseError(
                "this role may not UPDATE app_installations; nothing was changed",
                hint="use a role that may write, e.g. the app's own",
            )

    def apply(self, changes, versions=None) -> set[int]:
        """Write `changes` in one transaction; the ids whose compare-and-swap held.

        `versions` (id -> the row version read) enables the fast path: one statement for the
        rows nobody touched since the read, a second only for those the app wrote meanwhile.
        A row the app keeps locked longer than `lock_timeout` must not hold back the whole
        page: the page is retried in parts, down to that one row, which is then reported as
        missed (re-read and retried by the caller, or left for the next run).
        """
        if self.read_only:
            raise RuntimeError("read-only store")
        try:
            return self._apply_once(changes, versions)
        except _RETRYABLE:
            if len(changes) == 1:
                return set()
            size = -(-len(changes) // SPLIT)
            applied = set()
            for start in range(0, len(changes), size):
                applied |= self.apply(changes[start:start + size], versions)
            return applied

    def _apply_once(self, changes, versions) -> set[int]:
        with self._transaction() as cursor:
            # Both transaction-scoped (pooler-safe). Asynchronous commit: a crash may forget
            # the last pages written — they are still under the old values, readable, and
            # the next run redoes them — in exchange for not waiting on a WAL flush per page.
            cursor.execute(f"SET LOCAL lock_timeout = '{self.lock_timeout}'; SET LOCAL synchronous_commit = off")
            applied = set()
            rest = changes
            if versions:
                fast = [c for c in changes if _fast_path(c) and versions.get(c.id) is not None]
                applied = self._update_fast(cursor, fast, versions)
                rest = [c for c in changes if c.id not in applied]
            if rest:
                applied |= self._update_exact(cursor, rest)
            return applied

    @staticmethod
    def _update_fast(cursor, changes, versions) -> set[int]:
        if not changes:
            return set()
        ids = [c.id for c in changes]
        sql = _PG_FAST.format(touch=_PG_FAST_TOUCH if any(c.touch for c in changes) else "")
        cursor.execute(sql, (_pg_fast_document(changes, versions).decode(), min(ids), max(ids)))
        return {row[0] for row in cursor.fetchall()}

    @staticmethod
    def _update_exact(cursor, changes) -> set[int]:
        if not changes:
            return set()
        cursor.execute(_pg_exact_sql(changes), (orjson.dumps([_pg_record(c) for c in changes]).decode(),))
        return {row[0] for row in cursor.fetchall()}

    # -- plumbing ---------------------------------------------------------------------
    def _transaction(self):
        return _PgTransaction(self)


_RETRYABLE = _retryable()


class _PgTransaction:
    """One short transaction; driver errors become a one-line DatabaseError."""

    def __init__(self, store):
        self.store = store

    def __enter__(self):
        self.cursor = self.store.connection.cursor()
        return self.cursor

    def __exit__(self, exc_type, exc, tb):
        psycopg2 = self.store._psycopg2
        connection = self.store.connection
        try:
            if exc_type is None:
                connection.commit()
            elif not connection.closed:
                connection.rollback()
        except psycopg2.Error as error:
            raise _database_error(error) from None
        finally:
            self.cursor.close()
        if exc_type is not None and issubclass(exc_type, psycopg2.Error) and not issubclass(exc_type, _RETRYABLE):
            raise _database_error(exc) from None
        return False


def _database_error(exc) -> DatabaseError:
    message = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    code = getattr(exc, "pgcode", None)
    if code == "25006" or "read-only" in message:  # read_only_sql_transaction
        return DatabaseError(f"{message}; nothing more was changed", hint="use a database and role that may write")
    if code == "42501":  # insufficient_privilege
        return DatabaseError(f"{message}; nothing more was changed", hint="use a role that may UPDATE app_installations")
    return DatabaseError(message, hint="every committed batch is final: run the command again to finish")


class SqliteStore(_Store):
    """The demo database. One writer at a time: BEGIN IMMEDIATE, re-check, write."""

    def __init__(self, path, *, read_only: bool = False):
        import sqlite3

        self._sqlite3 = sqlite3
        self.read_only = read_only
        self.connection = sqlite3.connect(str(path), isolation_level=None, timeout=30)

    def read_page(self, after, limit, upto=None) -> list[Row]:
        bound = " AND id <= ?" if upto is not None else ""
        params = (after, upto, limit) if upto is not None else (after, limit)
        return self._rows(self.connection.execute(
            f"SELECT id, app_id, status, config FROM app_installations WHERE id > ?{bound} ORDER BY id LIMIT ?", params
        ))

    def read_ids(self, ids) -> list[Row]:
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        return self._rows(self.connection.execute(
            f"SELECT id, app_id, status, config FROM app_installations WHERE id IN ({marks}) ORDER BY id", ids
        ))

    @staticmethod
    def _rows(cursor) -> list[Row]:
        return [Row(i, a, s, decode_config(c), c) for i, a, s, c in cursor.fetchall()]

    def count(self) -> int:
        return self.connection.execute("SELECT count(*) FROM app_installations").fetchone()[0]

    def id_bounds(self):
        return self.connection.execute("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM app_installations").fetchone()

    def check_writable(self) -> None:
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute("ROLLBACK")
        except self._sqlite3.Error as exc:
            raise DatabaseError(f"the demo database refuses writes ({exc}); nothing was changed") from None

    def apply(self, changes, versions=None) -> set[int]:
        """Re-check each change against the row inside one write transaction (exact; no versions)."""
        if self.read_only:
            raise RuntimeError("read-only store")
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            applied = _sqlite_write(connection.execute, changes)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return applied



def _sqlite_write(execute, changes) -> set[int]:
    """The compare-and-swap of each change, in the caller's write transaction."""
    applied = set()
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    for change in changes:
        found = execute("SELECT status, config FROM app_installations WHERE id = ?", (change.id,)).fetchone()
        if found is None:
            continue
        status, text = found
        config = decode_config(text)
        if change.whole:
            if text != change.whole_config:
                continue
        elif not isinstance(config, dict) or any(config.get(k) != v for k, v in change.expect.items()):
            continue
        if change.status and status != change.status[0]:
            continue
        if isinstance(config, dict) and (change.patch or change.drop):  # a status change keeps the text
            for key in change.drop:
                config.pop(key, None)
            config.update(change.patch)
            text = json.dumps(config)
        touch = change.touch
        stamp = now if touch is True else touch.isoformat(sep=" ") if touch else None
        execute(
            "UPDATE app_installations SET config = ?, status = ?"
            + (", updated_at = ?" if touch else "") + " WHERE id = ?",
            (text, change.status[1] if change.status else status, *((stamp,) if touch else ()), change.id),
        )
        applied.add(change.id)
    return applied


# --- inside the caller's transaction (the config service) --------------------------------

def apply_in(database, changes) -> set[int]:
    """`changes`' compare-and-swap in the transaction the caller holds open on the Peewee
    `database` (see the module docstring); the ids whose condition held. Nothing is
    committed here: the caller's transaction decides, and a refusal leaves it to roll back."""
    database = getattr(database, "obj", database)
    if is_postgres(database):
        return PostgresStore._update_exact(_PeeweeCursor(database), changes)
    return _sqlite_write(database.execute_sql, changes)


class _PeeweeCursor:
    """The two cursor methods the statements use, through Peewee's `execute_sql`: its error
    translation (so the service's `translate_errors` applies) and its statement log."""

    def __init__(self, database):
        self.database = database

    def execute(self, sql, params) -> None:
        self._cursor = self.database.execute_sql(sql, params)

    def fetchall(self):
        return self._cursor.fetchall()


def delete_in(database, installation_id: int, config_text: str | None, status: str) -> bool:
    """Delete the row if it still holds the config (its text as read; None for SQL NULL) and
    status as read — the whole-row condition of a `Change` — in the caller's transaction."""
    database = getattr(database, "obj", database)
    if is_postgres(database):  # jsonb equality, as for an UPDATE
        sql = ("DELETE FROM app_installations WHERE id = %s"
               " AND config IS NOT DISTINCT FROM %s::jsonb AND status::text = %s")
    else:  # the exact text, as SqliteStore compares it
        sql = "DELETE FROM app_installations WHERE id = ? AND config IS ? AND status = ?"
    return database.execute_sql(sql, (installation_id, config_text, status)).rowcount == 1
