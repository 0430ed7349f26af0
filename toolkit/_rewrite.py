"""The batched compare-and-swap rewrite loop that key rotation and repairs share.

A *planner* looks at one installation row and says what to change (a `Change`) and what it
saw (`tally` labels for the summary). This module does the rest, the same way for both:

- reads rows in keyset pages by id (`WHERE id > last ORDER BY id LIMIT n`), each page its
  own short read-only transaction;
- writes each page's changes in ONE statement, in its own short transaction, with a
  compare-and-swap condition per row: the keys the planner read must still hold exactly the
  values it read (`config @> expect`), or — for a change that depends on the whole row,
  like a status fix — the whole config and status must be unchanged. A row the app wrote
  in between simply does not match: nothing of the app's write is overwritten, and a write
  to another key of the same row never blocks the rewrite;
- re-reads the rows that did not match, plans them again and retries (bounded); rows still
  changing after that are left alone and reported, for the next run;
- never holds anything across transactions, so it is safe through a transaction pooler
  (no WITH HOLD cursor, no session SET or advisory lock: `SET LOCAL` only) and can be
  killed at any instant: every committed page is final, every value is at all times
  either the old one or the new one, and running again finishes the job.

Stores: `PostgresStore` (one psycopg2 connection of its own; the page's changes travel as one
JSON document unpacked by `jsonb_to_recordset`, which is much cheaper to build and parse than
a VALUES list of a few thousand rows) and `SqliteStore` (the demo database: SQLite has a
single writer, so `BEGIN IMMEDIATE` + re-check in Python + UPDATE is the compare-and-swap).

`updated_at`: a change says whether it `touches` it. Rotation does not (the app reads the
same values afterwards; bumping it on every row would erase when customers last edited
their settings); repairs that change what the app reads do.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import time
import types
from collections.abc import Mapping
from typing import Callable, NamedTuple, Protocol

import orjson

from .db.json_values import tolerant_loads

from .errors import DatabaseError

DEFAULT_BATCH_SIZE = 2000
DEFAULT_MAX_RETRIES = 3
BEFORE_ALL = -(2**62)  # below any id (serial ids start at 1, but a hand-inserted row may not)
LOCK_TIMEOUT = "1s"  # an app transaction holding a row longer than this: that row waits for a retry
SPLIT = 16  # a page that times out on a lock is retried in this many parts, down to the one row


class Row(NamedTuple):
    id: int
    app_id: str
    status: str
    config: object  # parsed JSON (dict for a sane row; None, list, … otherwise)
    config_text: str | None  # exactly as read, for whole-row compare-and-swap
    version: str | None = None  # PostgreSQL: the row version read (xmin), for the fast path


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
    touch: bool = False  # set updated_at to now, in naive UTC like the app's Date


class Plan(NamedTuple):
    change: Change | None
    tally: tuple = ()  # labels counted once the row's fate is known (e.g. "rotated", "plaintext")


class Planner(Protocol):
    def plan(self, row: Row) -> Plan: ...


@dataclasses.dataclass
class RewriteResult:
    dry_run: bool
    rows_scanned: int = 0
    rows_changed: int = 0  # written (or, in a dry run, that would be)
    tally: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    conflicts: int = 0  # compare-and-swap misses, each re-read and retried
    left: list = dataclasses.field(default_factory=list)  # ids still changing after the retries
    gone: int = 0  # rows deleted between the read and the write
    batches: int = 0
    elapsed: float = 0.0

    def merge(self, other: "RewriteResult") -> None:
        self.rows_scanned += other.rows_scanned
        self.rows_changed += other.rows_changed
        self.tally.update(other.tally)
        self.conflicts += other.conflicts
        self.left += other.left
        self.gone += other.gone
        self.batches += other.batches


# --- the loop ---------------------------------------------------------------------------

def run_rewrite(store, planner: Planner, *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
                max_retries: int = DEFAULT_MAX_RETRIES, id_range: tuple | None = None,
                progress: Callable[[int], None] | None = None,
                after_batch: Callable[[int], None] | None = None) -> RewriteResult:
    """Scan the table (or `id_range` = (after, upto]) in pages and apply the planner's changes.

    `progress(n)` is called with the number of rows read after each page; `after_batch(k)`
    after the k-th page is committed (tests use it to let the app write in between).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    result = RewriteResult(dry_run=dry_run)
    after, upto = id_range if id_range is not None else (BEFORE_ALL, None)
    while True:
        rows = store.read_page(after, batch_size, upto)
        if not rows:
            break
        after = rows[-1].id
        result.rows_scanned += len(rows)
        _settle(store, planner, rows, result, dry_run=dry_run, max_retries=max_retries)
        result.batches += 1
        if progress is not None:
            progress(len(rows))
        if after_batch is not None:
            after_batch(result.batches)
        if len(rows) < batch_size:
            break
    result.elapsed = time.perf_counter() - started
    return result


def _settle(store, planner, rows, result, *, dry_run, max_retries) -> None:
    """Plan `rows`, write the changes, and retry the rows the app changed meanwhile."""
    attempt = 0
    while rows:
        plans = [(row.id, planner.plan(row)) for row in rows]
        changes = [plan.change for _, plan in plans if plan.change is not None]
        if dry_run or not changes:
            applied = {change.id for change in changes}
        else:
            applied = store.apply(changes, {row.id: row.version for row in rows})
        missed = []
        settled = []  # the tallies of the rows settled now (counted once per page: cheaper)
        for row_id, plan in plans:
            if plan.change is None or row_id in applied:
                settled += plan.tally
            else:
                missed.append(row_id)
        result.tally.update(settled)
        result.rows_changed += len(changes) - len(missed)
        if not missed:
            return
        result.conflicts += len(missed)
        attempt += 1
        if attempt > max_retries:
            result.left += missed
            return
        rows = store.read_ids(missed)
        result.gone += len(missed) - len(rows)


# --- in parallel ------------------------------------------------------------------------

def run_parallel(store_factory: Callable[[], object], planner: Planner, *, workers: int,
                 id_bounds: tuple[int, int], progress: Callable[[int], None] | None = None,
                 **options) -> RewriteResult:
    """`run_rewrite` in `workers` processes over disjoint id ranges, each with its own store.

    Python's decrypt/encrypt is the bottleneck of a rotation, so two processes nearly halve
    it. The last range is open-ended: rows inserted meanwhile are still visited. A worker
    dies with its parent (Linux), so killing the command stops everything, as one process would.
    """
    import concurrent.futures
    import multiprocessing

    low, high = id_bounds
    ranges = id_ranges(low - 1, high, workers)
    ranges[-1] = (ranges[-1][0], None)
    context = multiprocessing.get_context(_start_method())
    queue = context.Queue()
    started = time.perf_counter()
    result = RewriteResult(dry_run=options.get("dry_run", False))
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=len(ranges), mp_context=context, initializer=_init_worker, initargs=(queue,)
    ) as pool:
        futures = [pool.submit(_worker, store_factory, planner, id_range, options) for id_range in ranges]
        pending = set(futures)
        delivered = 0
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.2)
            delivered += _drain(queue, progress)
        outcomes = [future.result() for future in futures]
        # A worker's last counts may still sit in its queue's feeder thread when its task
        # returns: wait (bounded) until every row it read has been reported.
        expected = sum(o.rows_scanned for o in outcomes if not isinstance(o, _WorkerError))
        delivered += _drain(queue, progress, until=expected - delivered)
    for outcome in outcomes:
        if isinstance(outcome, _WorkerError):
            raise outcome.rebuild()
        result.merge(outcome)
    result.elapsed = time.perf_counter() - started
    return result


def _start_method() -> str:
    """fork when this is the only thread (cheap); forkserver otherwise (a Jupyter kernel or the
    dashboard run threads, and forking a threaded process can deadlock the child)."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


_progress_queue = None


def _init_worker(queue) -> None:
    global _progress_queue
    _progress_queue = queue
    try:  # Linux: die with the parent (a killed command must not leave writers behind)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _WorkerError(NamedTuple):
    cls: type
    message: str
    hint: str | None

    def rebuild(self):
        return self.cls(self.message, hint=self.hint)


def _worker(store_factory, planner, id_range, options):
    from .errors import ToolkitError

    queue = _progress_queue
    try:
        with store_factory() as store:
            return run_rewrite(store, planner, id_range=id_range,
                               progress=(lambda n: queue.put(n)) if queue is not None else None, **options)
    except ToolkitError as exc:  # keep the hint across the process boundary
        return _WorkerError(type(exc), exc.message, exc.hint)


def _drain(queue, progress, *, until: int = 0) -> int:
    """Report what the workers have queued; with `until`, wait up to 5 s for that many rows."""
    import queue as queue_module

    total = 0
    while True:
        try:
            count = queue.get(timeout=5) if total < until else queue.get_nowait()
        except queue_module.Empty:
            return total
        total += count
        if progress is not None:
            progress(count)


# --- stores -----------------------------------------------------------------------------

def store_factory(database, *, read_only: bool = False) -> Callable[[], object]:
    """A picklable callable opening a new store on a Peewee database (PostgreSQL or the SQLite demo)."""
    import functools

    from .db import is_postgres

    database = getattr(database, "obj", database)  # a DatabaseProxy
    if is_postgres(database):
        return functools.partial(PostgresStore, database.url.dsn(), read_only=read_only)
    return functools.partial(SqliteStore, database.database, read_only=read_only)


def open_store(database, *, read_only: bool = False):
    return store_factory(database, read_only=read_only)()


def parse_config(text):
    """The config's JSON text; what cannot be parsed is Unreadable (a row never written)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # big integers or deep nesting: orjson refuses, json may not
        return tolerant_loads(text)


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
       AS v(i int, e jsonb, p jsonb, d text[], w bool, c jsonb, s0 text, s1 text, u bool)
 WHERE t.id = v.i
   AND CASE WHEN v.w THEN t.config IS NOT DISTINCT FROM v.c ELSE t.config @> v.e END{status_check}
RETURNING t.id
"""


def _fast_path(change: Change) -> bool:
    return not change.drop and change.status is None


def _pg_exact_sql(changes) -> str:
    """The exact UPDATE, with only the clauses its changes need."""
    drops = any(c.drop for c in changes)
    statuses = any(c.status for c in changes)
    config = "(t.config - coalesce(v.d, '{}')) || v.p" if drops else "t.config || v.p"
    if statuses:
        # A status-only change leaves the config as it is (even a NULL one).
        config = f"CASE WHEN v.p = '{{}}' AND v.d IS NULL THEN t.config ELSE {config} END"
    return _PG_EXACT.format(
        config=config,
        status=", status = coalesce(v.s1, t.status::text)::app_status" if statuses else "",
        touch=", updated_at = CASE WHEN v.u THEN (now() AT TIME ZONE 'UTC') ELSE t.updated_at END" if any(c.touch for c in changes) else "",
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
    return record


def _retryable():
    from psycopg2 import errors

    # Another transaction held the rows (lock_timeout) or PostgreSQL chose us as the victim.
    return (errors.LockNotAvailable, errors.TransactionRollback)


class PostgresStore:
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
        loads = orjson.loads
        try:  # the common case in one comprehension; the rare unparsable config row by row
            return [Row(i, a, s, None if c is None else loads(c), c, x) for i, a, s, c, x in fetched]
        except orjson.JSONDecodeError:
            return [Row(i, a, s, parse_config(c), c, x) for i, a, s, c, x in fetched]

    def count(self, id_range=None) -> int:
        after, upto = id_range if id_range is not None else (BEFORE_ALL, None)
        with self._transaction() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            if upto is None:
                cursor.execute("SELECT count(*) FROM app_installations WHERE id > %s", (after,))
            else:
                cursor.execute("SELECT count(*) FROM app_installations WHERE id > %s AND id <= %s", (after, upto))
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

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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


class SqliteStore:
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
        return [Row(i, a, s, parse_config(c), c) for i, a, s, c in cursor.fetchall()]

    def count(self, id_range=None) -> int:
        after, upto = id_range if id_range is not None else (BEFORE_ALL, None)
        if upto is None:
            return self.connection.execute("SELECT count(*) FROM app_installations WHERE id > ?", (after,)).fetchone()[0]
        return self.connection.execute(
            "SELECT count(*) FROM app_installations WHERE id > ? AND id <= ?", (after, upto)
        ).fetchone()[0]

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
        applied = set()
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                found = connection.execute(
                    "SELECT status, config FROM app_installations WHERE id = ?", (change.id,)
                ).fetchone()
                if found is None:
                    continue
                status, text = found
                config = parse_config(text)
                if change.whole:
                    if text != change.whole_config:
                        continue
                elif not isinstance(config, dict) or any(config.get(k) != v for k, v in change.expect.items()):
                    continue
                if change.status and status != change.status[0]:
                    continue
                if isinstance(config, dict):
                    for key in change.drop:
                        config.pop(key, None)
                    config.update(change.patch)
                    text = json.dumps(config)
                touch = change.touch
                connection.execute(
                    "UPDATE app_installations SET config = ?, status = ?"
                    + (", updated_at = ?" if touch else "") + " WHERE id = ?",
                    (text, change.status[1] if change.status else status, *((now,) if touch else ()), change.id),
                )
                applied.add(change.id)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return applied

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def id_ranges(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """Split ids (low..high] into `parts` disjoint (after, upto] ranges for parallel workers."""
    parts = max(1, parts)
    span = max(0, high - low)
    step = -(-span // parts) or 1
    ranges = []
    start = low
    while start < high:
        ranges.append((start, min(high, start + step)))
        start += step
    return ranges or [(low, high)]

