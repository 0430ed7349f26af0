"""The streaming engine: rows flow from the database through the checks into a Report.

PostgreSQL: `COPY (SELECT …) TO STDOUT` in read-only transactions (`BEGIN READ ONLY` … `COMMIT`:
transaction-scoped, so safe through PgBouncer/Supavisor in transaction mode — no session SET,
no WITH HOLD cursor, no temp table). In one process psycopg2 hands each COPY row to the
auditor's `write()`, which audits it on the spot. With `jobs > 1` the id range is cut into
chunks of ~16k rows (at least a few per job) and forked worker processes each COPY their chunks
over their own connection into a list, then audit the chunk in one call: nothing holds the
table, memory stays flat (parsing and decrypting in Python is the bottleneck, so two cores
nearly halve the time; more chunks than jobs keep the workers evenly loaded). Each chunk is its own snapshot:
rows written during the audit may be seen before or after the write.

SQLite (the demo database): the same SELECT in one process through Peewee.

Findings travel from workers as packed, sorted segments (`_spill.pack`: a few blobs per
chunk, not an object per finding) and IV traces as bytes; the parent appends the segments to
a FindingStore on disk (one process: the auditor's findings are drained into it every few
thousand rows), finds nonce reuse across all values, and returns a `Report` whose findings
stay on disk when there are many (memory stays flat whatever their number).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import threading
import time

from ..codes import ALL_CODES, SECRET_NONCE_REUSE, USER_EMAIL_CASE_DUPLICATE
from ..db import describe, is_postgres, read_only, translate_errors
from ..errors import DatabaseError
from .checks import email_case_duplicates
from ._spill import FindingStore, pack, records
from .nonces import IVLog, nonce_reuse_findings
from .row_auditor import Auditor
from .report import Report, generated_at
from .sql import Filters, count_query, email_duplicates_query, installation_query, range_query

DEFAULT_JOBS = 2
CHUNKS_PER_JOB = 4
# A worker collects a chunk's COPY rows before auditing them in one call (see _worker_chunk):
# chunks of about this many rows (~5 MB of COPY text) keep that buffer small.
ROWS_PER_CHUNK = 16_384
# Below this many rows forking costs more than it saves.
PARALLEL_THRESHOLD = 20_000


def run_audit(database, registry, keyring, filters: Filters | None = None, *, jobs: int | None = None,
              progress=None, trace: dict | None = None) -> Report:
    """Audit the database. `progress(done, total)` is called now and then: on PostgreSQL
    `total` is the planner's estimate until the last call, where done == total (rows read).
    A `trace` dict receives the run's IV traces (`ivs`, an IVLog), `slots`, and with nonce
    reuse checked `reused`, its groups of trace positions (the saved audits keep them for the
    incremental nonce-reuse check, incremental.py).

    Raises ConfigError when a selected check needs ENCRYPTION_KEY and it is unset,
    DatabaseError when the database fails. Never raises for bad data: that is a finding.
    """
    filters = filters or Filters()
    started = time.perf_counter()
    auditor = Auditor(registry, keyring, filters.codes)
    if auditor.decrypts or auditor.scans_plain:
        keyring.current  # noqa: B018 — ConfigError naming ENCRYPTION_KEY, before any row is read
    database = getattr(database, "obj", database)  # a DatabaseProxy
    postgres = is_postgres(database)
    mark = "%s" if postgres else "?"

    def users_check():
        return _email_duplicates(database, filters, mark)

    query = installation_query(filters, tuple(registry.apps), mark=mark)
    wanted = filters.codes
    # Sorted as Finding.sort_key orders them, on disk (a report of a few findings becomes a list).
    store = FindingStore(ordered=True, codes=wanted)
    if postgres:
        # The users' check runs in this process while the workers stream installations.
        rows, ivs, used_jobs, users = _audit_postgres(database, auditor, query, jobs, progress, users_check, store,
                                                      filters.ids)
    else:
        users = users_check()
        _audit_sqlite(database, auditor, query, progress, store)
        rows, ivs, used_jobs = auditor.rows, auditor.ivs, 1

    store.add_raw((USER_EMAIL_CASE_DUPLICATE, None, user_id, None, None, message) for user_id, message in users)
    if trace is not None:
        trace.update(ivs=ivs, slots=auditor.slots)
    if SECRET_NONCE_REUSE in wanted:
        groups = ivs.reused()
        store.add_raw(nonce_reuse_findings(ivs, auditor.slots, groups))
        if trace is not None:
            trace["reused"] = groups
    return Report._sorted(store, {
        "database": describe(database),
        "installations": rows,
        "secrets_decrypted": len(ivs),
        **filters.summary(),
        "jobs": used_jobs,
        "duration_s": round(time.perf_counter() - started, 3),
        "generated_at": generated_at(),
    })


# ---- users ------------------------------------------------------------------------------

def _email_duplicates(database, filters: Filters, mark: str) -> list[tuple[int, str]]:
    """user.email-case-duplicate, grouped in SQL. Skipped when --app/--status/--since narrow the
    audit to some installations, unless the code was asked for explicitly. With --user, only
    the users asked for are reported (the message still names their doubles)."""
    if USER_EMAIL_CASE_DUPLICATE not in filters.codes:
        return []
    explicit = set(filters.codes) != set(ALL_CODES)
    if filters.narrows_installations and not explicit:
        return []
    query = email_duplicates_query(filters, mark=mark, postgres=mark == "%s")
    with translate_errors(database), read_only(database):
        rows = database.execute_sql(query.sql, query.params).fetchall()
    found, wanted = [], set()
    for ids, asked in rows:
        found += email_case_duplicates([_ids(ids)])
        wanted.update(_ids(asked))
    return [(u, m) for u, m in found if u in wanted] if filters.users else found


def _ids(value) -> list[int]:
    """array_agg gives a list; SQLite's group_concat a comma-separated string; NULL: none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [int(part) for part in value.split(",") if part]
    return [int(part) for part in value]


# ---- SQLite -----------------------------------------------------------------------------

def _drain(auditor: Auditor, store: FindingStore) -> None:
    """Move the auditor's findings so far into the store (the list is the one the auditor's
    loop appends to: emptied in place)."""
    if auditor.findings:
        store.add_raw(auditor.findings)
        del auditor.findings[:]


def _audit_sqlite(database, auditor: Auditor, query, progress, store) -> None:
    with translate_errors(database), read_only(database):
        total = database.execute_sql(count_query(query).sql, query.params).fetchone()[0]
        _report(progress, 0, total)
        cursor = database.execute_sql(query.sql, query.params)
        audit = auditor.audit
        while True:
            batch = cursor.fetchmany(1000)
            if not batch:
                break
            for row in batch:
                audit(*row)
            _drain(auditor, store)
            _report(progress, auditor.rows, total)


# ---- PostgreSQL -------------------------------------------------------------------------

def _audit_postgres(database, auditor: Auditor, query, jobs, progress, meanwhile, store, ids=None):
    if ids is not None:  # the incremental audit's changed rows: their ids bound them
        low, high, total = (min(ids), max(ids), len(ids)) if ids else (None, None, 0)
    else:
        with translate_errors(database), read_only(database):
            low, high = database.execute_sql(range_query(query).sql, query.params).fetchone()
            # The planner's estimate is total enough for a progress bar, and free.
            total = None if low is None else min(_estimate_rows(database, query), high - low + 1)
    _report(progress, 0, total)
    if low is None:
        return 0, IVLog(), 1, meanwhile()
    jobs = DEFAULT_JOBS if jobs is None else max(1, int(jobs))
    url = getattr(database, "url", None)
    if jobs == 1 or total < PARALLEL_THRESHOLD or url is None or _start_method() is None:
        side = meanwhile()
        _copy_with_peewee(database, auditor, query, progress, total, store)
        return auditor.rows, auditor.ivs, 1, side
    chunks = _id_ranges(low, high + 1, max(jobs * CHUNKS_PER_JOB, -(-total // ROWS_PER_CHUNK)))
    queries = [query.with_id_range(a, b) for a, b in chunks]
    rows, ivs, side = _run_workers(url.dsn(), auditor, queries, jobs, progress, total, meanwhile, store)
    return rows, ivs, jobs, side


def _estimate_rows(database, query) -> int:
    plan = database.execute_sql("EXPLAIN (FORMAT JSON) " + query.sql, query.params).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(1, int(plan[0]["Plan"]["Plan Rows"]))


def _id_ranges(low: int, end: int, parts: int) -> list[tuple[int, int]]:
    """Cut [low, end) into `parts` contiguous ranges of (nearly) equal width."""
    parts = max(1, min(parts, end - low))
    step, extra = divmod(end - low, parts)
    ranges, start = [], low
    for n in range(parts):
        stop = start + step + (1 if n < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def _start_method() -> str | None:
    """fork when this is the only thread (the CLI: workers inherit the compiled auditor for
    free); forkserver when other threads run (the dashboard: forking a threaded process can
    copy a lock held mid-operation); None where neither exists (run in one process)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    if "forkserver" in methods:
        return "forkserver"
    return None


def copy_sql(cursor, query) -> bytes:
    """The COPY statement for `query`, parameters quoted by psycopg2 (COPY takes no binds)."""
    return b"COPY (" + cursor.mogrify(query.sql, query.params) + b") TO STDOUT"


def _copy_with_peewee(database, auditor, query, progress, total, store) -> None:
    """One process, the caller's own connection (Peewee's, per thread)."""
    def tick(rows):
        _drain(auditor, store)
        _report(progress, rows, total)

    auditor.on_tick = tick
    with translate_errors(database), read_only(database):
        cursor = database.cursor()
        cursor.copy_expert(copy_sql(cursor, query), auditor)  # the auditor is the COPY sink
    _drain(auditor, store)
    _report(progress, auditor.rows, auditor.rows)


def _run_workers(dsn, auditor, queries, jobs, progress, total, meanwhile, store):
    """Stream `queries` through `jobs` worker processes; run `meanwhile()` here meanwhile."""
    context = multiprocessing.get_context(_start_method())
    counter = context.Value("q", 0)
    ivs, rows = IVLog(), 0
    # initargs: inherited as they are under fork, pickled once per worker otherwise.
    with context.Pool(jobs, initializer=_init_worker, initargs=(auditor, dsn, counter)) as pool:
        results = pool.imap_unordered(_worker_chunk, enumerate(queries))
        side = meanwhile()
        while True:
            try:
                result = results.next(timeout=0.2)
            except multiprocessing.TimeoutError:
                _report(progress, counter.value, total)
                continue
            except StopIteration:
                break
            if result[0] == "error":
                raise DatabaseError(result[1], hint="while streaming installations with COPY")
            _, chunk_segments, chunk_ivs, chunk_rows = result
            store.add_packed(chunk_segments)
            ivs.extend(chunk_ivs)
            rows += chunk_rows
            _report(progress, counter.value, total)
    _report(progress, rows, rows)
    return rows, ivs, side


# ---- inside a worker process ---------------------------------------------------------------

_WORKER: dict = {}  # the auditor, the DSN, the shared row counter and the worker's connection


def _init_worker(auditor, dsn, counter) -> None:
    # What the parent built is never garbage: keep the collector off it (no copy-on-write of
    # the inherited pages when a full collection walks them).
    gc.freeze()
    # Ctrl-C reaches the whole process group: the parent answers it and terminates the pool
    # (SIGTERM ends a worker even inside libpq), so workers ignore SIGINT — no traceback
    # from each. They run COPY, which psycopg2 refuses under a wait callback: blocking libpq.
    import signal

    import psycopg2.extensions

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    psycopg2.extensions.set_wait_callback(None)
    _WORKER.update(auditor=auditor, dsn=dsn, counter=counter, connection=None)


def _worker_chunk(item):
    """COPY one id range through this worker's auditor, over this worker's own connection."""
    number, query = item
    import psycopg2

    auditor, counter = _WORKER["auditor"], _WORKER["counter"]
    auditor.reset()
    # The COPY sink is a list's C-level append: no Python call per row. The rows are audited
    # afterwards in one write_many() call, its locals bound once.
    lines: list[bytes] = []
    sink = _Sink(lines.append)
    reported = [0]

    def tick(rows):
        with counter.get_lock():
            counter.value += rows - reported[0]
        reported[0] = rows

    auditor.on_tick = tick
    try:
        connection = _WORKER["connection"]
        if connection is None or connection.closed:
            connection = _WORKER["connection"] = psycopg2.connect(_WORKER["dsn"])
            connection.autocommit = True  # we send BEGIN READ ONLY / COMMIT ourselves
        with connection.cursor() as cursor:
            cursor.execute("BEGIN READ ONLY")
            # The rows' objects form no cycles: reference counting frees them; the cyclic
            # collector would only spend time (a few %) scanning them.
            gc.disable()
            try:
                cursor.copy_expert(copy_sql(cursor, query), sink)
            finally:
                cursor.execute("ROLLBACK" if connection.closed == 0 and _failed(connection) else "COMMIT")
            try:
                auditor.write_many(lines)
            finally:
                gc.enable()
    except psycopg2.Error as exc:
        return ("error", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
    tick(auditor.rows)
    # Sorted and packed here, in parallel: the parent only appends the blobs. Arrival numbers
    # keep a chunk's own order for equal sort keys (chunks cover disjoint ids: no others tie).
    base = (number + 1) << 32
    packed = pack(records(auditor.findings, base), True)
    del auditor.findings[:]
    return ("ok", packed, auditor.ivs.state(), auditor.rows)


class _Sink:
    """A file for copy_expert whose write() is a bound C method."""

    __slots__ = ("write",)

    def __init__(self, write):
        self.write = write


def _failed(connection) -> bool:
    import psycopg2.extensions as ext

    return connection.info.transaction_status == ext.TRANSACTION_STATUS_INERROR


def _report(progress, done, total) -> None:
    if progress is not None:
        progress(done, total if total is None else max(total, done))
