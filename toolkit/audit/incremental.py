"""Auditing with the store (DESIGN.md §4.5): the incremental audit that reads only what
changed since the last one, or a full audit, and either run saved (store.py).

    audit(database, registry, keyring, filters, store=..., incremental=True) -> Report

Why it is exact. The snapshot is taken before any row is read, so every row committed before
it was read by that audit (or a newer version of it was). Next time a row is read again when
its xmin is at or after the snapshot's xmin (sql.changed_since_condition says why xmin and
not pg_visible_in_snapshot, and how age() compares them): written later, or maybe in flight
then. Rows that are gone are found by comparing the id set now (one binary COPY of bitmaps
of the ids and of that flag, sql.id_query) with the saved findings' and traces' ids. Row
checks depend only on their row; nonce reuse is recomputed over the saved digests plus the
changed rows' traces. The users' check (no --user filter) is redone for the groups that can
differ: those holding a user written since the snapshot or a user of a saved duplicate
group. A group now whose users are all older than the snapshot existed as it is when the
saved audit read the users (after the snapshot), so its users are saved ones; any other
group holds a changed user. With --user the users' check runs as in a full audit (one GROUP
BY). Anything that makes this unsure — another registry, keyring or checks version, another
database (its oid), a transaction counter that went backwards (a restore) or moved 2^31 or
more (wraparound) — runs a full audit instead, saying why in one line.

SQLite (the demo database) has no snapshots: `--incremental` runs a full audit there (one
line); its runs are saved all the same, for history and the dashboard.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from ..codes import SECRET_NONCE_REUSE, USER_EMAIL_CASE_DUPLICATE
from ..db import is_postgres, read_only, translate_errors
from ..errors import ToolkitError
from ._spill import FindingStore
from .checks import email_case_duplicates
from .engine import _email_duplicates, copy_sql, run_audit
from .nonces import IVLog, nonce_reuse_findings, sorted_unique
from .report import Report
from .sql import (
    SAVED_AGE,
    Filters,
    duplicate_candidates_query,
    id_query,
    split_users,
    xid32,
)
from .store import (
    AuditStore,
    Fallback,
    Snapshot,
    State,
    _RowFindings,
    checks_fingerprint,
    digest_in_place,
    identity,
    keyring_fingerprint,
    registry_fingerprint,
    scope_of,
)

WRAPAROUND = 2 ** 31
# Past this share of the base's traces (overlay traces plus stale ids), a run saves a new base.
COMPACT_SHARE = 0.25
# Past this share of changed rows a full audit costs less than reading them by id.
MAX_CHANGED_SHARE = 0.5


def audit(database, registry, keyring, filters: Filters | None = None, *, store: AuditStore | None = None,
          incremental: bool = False, save: bool = True, save_soon: bool = False, jobs=None, progress=None,
          warn=None) -> Report:
    """Audit, incrementally when asked and possible, and save the run (unless `save` is false
    or there is no store). `warn(line)` gets the one line that says why a full audit ran, or
    that the run was not saved. `save_soon`: return while the run is saved in the background
    (AuditStore.save_soon: the store's next use waits; keep the report open till then)."""
    filters = filters or Filters()
    database = getattr(database, "obj", database)
    warn = warn or (lambda line: None)
    started = time.perf_counter()
    fingerprints = (registry_fingerprint(registry), keyring_fingerprint(keyring), checks_fingerprint())
    name, scope = identity(database), scope_of(filters)
    if incremental:
        try:
            base = _usable_base(database, store, name, scope, filters, fingerprints)
            report, state = _incremental(database, registry, keyring, filters, base, fingerprints, jobs, progress)
        except Fallback as why:
            warn(f"incremental audit not possible ({why}): running a full audit")
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 — anything unexpected: a full audit is always right
            # Only the type, as the CLI's last resort says: an arbitrary message may quote data.
            warn(f"incremental audit failed ({type(exc).__name__}): running a full audit")
        else:
            return _finish(report, state, store, name, scope, save, started, warn, save_soon)
    snapshot = _snapshot(database) if is_postgres(database) else None
    trace: dict = {}
    report = run_audit(database, registry, keyring, filters, jobs=jobs, progress=progress, trace=trace)
    state = None
    if snapshot is not None and _keeps_state(filters):
        users = None
        if _users_since_possible(filters):
            users = np.array(sorted({f.user_id for f in report.findings_of(USER_EMAIL_CASE_DUPLICATE)}), dtype=np.int64)
        log = _digested(trace.get("ivs", IVLog()))
        state = State(*fingerprints, snapshot, _RowFindings(report), log, users,
                      reused=_reused_keys(log, trace.get("reused")))
    report = Report(report.findings, {**report.meta, "mode": "full",
                                      "rows_read": report.meta.get("installations", 0)})
    return _finish(report, state, store, name, scope, save, started, warn, save_soon)


def _finish(report, state, store, name, scope, save, started, warn, save_soon) -> Report:
    report = Report(report.findings, {**report.meta, "duration_s": round(time.perf_counter() - started, 3)})
    if save and store is not None:
        store.save_soon(report, state, scope, warn=warn)
        if not save_soon:
            store.wait()
    return report


def _keeps_state(filters: Filters) -> bool:
    """A row's findings depend only on the row — unless --user names an email: the users
    table decides then which rows are read, and a changed email changes no installation."""
    return not split_users(filters.users)[1]




def _users_since_possible(filters: Filters) -> bool:
    """The users' check can be redone for what changed (sql.duplicate_candidates_query) exactly when
    the full audit runs it unfiltered: asked for, no --user, no installation filter (then
    engine._email_duplicates runs the plain GROUP BY, explicit code or not). Otherwise it
    runs as the full audit's own."""
    return USER_EMAIL_CASE_DUPLICATE in filters.codes and not filters.users and not filters.narrows_installations


def _row_findings(report: Report) -> list[tuple]:
    return list(_RowFindings(report))


def _digested(log: IVLog) -> IVLog:
    """The run's own trace log with each IV replaced by its digest, in place (the raw IVs
    are not needed once the run's nonce reuse is found, and are never saved)."""
    digest_in_place(log.ivs)
    return log


def _snapshot(database) -> Snapshot:
    with translate_errors(database), read_only(database):
        text, oid = database.execute_sql(
            "SELECT pg_current_snapshot()::text,"
            " (SELECT oid FROM pg_database WHERE datname = current_database())::bigint").fetchone()
    xmin, xmax = (int(part) for part in text.split(":")[:2])
    return Snapshot(text, xmin, xmax, int(oid))


def _usable_base(database, store, name, scope, filters, fingerprints) -> State:
    if not is_postgres(database):
        raise Fallback("the demo database (SQLite) has no snapshots")
    if store is None:
        raise Fallback("no audit store")
    if not _keeps_state(filters):
        raise Fallback("--user by email reads rows by the users table")
    base = store.state(name, scope, in_background=True)
    if base is None:
        raise Fallback("no saved audit of this database with these filters")
    for what, saved, now in zip(("registry", "keyring", "checks"), (base.registry, base.keyring, base.checks),
                                fingerprints):
        if saved != now:
            base.joined()  # not left running
            raise Fallback("the registry changed" if what == "registry" else
                           "the keyring changed" if what == "keyring" else "the toolkit's checks changed")
    return base


def _incremental(database, registry, keyring, filters, base: State, fingerprints, jobs, progress):
    try:
        snapshot = _snapshot(database)
        if snapshot.database_oid != base.snapshot.database_oid:
            raise Fallback("the database was recreated since the saved audit")
        if snapshot.xmax < base.snapshot.xmax:
            raise Fallback("the transaction counter went backwards (a restore?)")
        if snapshot.xmax - base.snapshot.xmin >= WRAPAROUND:
            raise Fallback("the saved snapshot is 2^31 or more transactions old")
        users_since = _users_since_possible(filters) and base.users is not None
        ids_now, changed, groups = _changes(database, filters, registry, base, users_since)
    finally:
        # The base loaded meanwhile. Never left running: run_audit (below, or the fallback's)
        # forks its workers only from a single-threaded process.
        base.joined()
    base.loaded()
    if len(changed) > MAX_CHANGED_SHARE * max(len(ids_now), 1) and len(changed) > 1000:
        raise Fallback(f"{len(changed)} of {len(ids_now)} rows changed")
    trace: dict = {}
    rows_only = frozenset(filters.codes) - {USER_EMAIL_CASE_DUPLICATE}
    part = run_audit(database, registry, keyring,
                     dataclasses.replace(filters, ids=tuple(changed.tolist()), codes=rows_only),
                     jobs=jobs, progress=progress, trace=trace)
    unchanged = np.setdiff1d(ids_now, changed, assume_unique=True)  # sorted: present and not read again
    stale = np.zeros(0, np.int64) if base.stale is None else base.stale
    # An entry holds while its installation is present and unchanged since it was read: base
    # entries since the base (not stale), overlay entries since the last run.
    base_ids, base_finding_ids = _log_ids(base.log), _finding_ids(base.row_findings)
    keep_base = _member(base_ids, unchanged) & ~_member(base_ids, stale)
    keep_base_findings = _member(base_finding_ids, unchanged) & ~_member(base_finding_ids, stale)
    stale = sorted_unique(np.concatenate([stale, base_ids[~keep_base], base_finding_ids[~keep_base_findings]]))
    new_log = _select(base.new_log, _member(_log_ids(base.new_log), unchanged))
    new_log.extend(_digested(trace.get("ivs", IVLog())).state())
    new_findings = [f for f, keep in zip(base.new_findings, _member(_finding_ids(base.new_findings), unchanged))
                    if keep] + _row_findings(part)
    findings = [f for f, keep in zip(base.row_findings, keep_base_findings.tolist()) if keep] + new_findings
    # The report as the engine builds one: in report order on disk past a few thousand findings,
    # not a list of a million Finding objects beside the state.
    ordered = FindingStore(ordered=True, codes=filters.codes)
    ordered.add_raw(findings)
    if groups is None:
        users = _email_duplicates(database, filters, "%s")  # the full audit's own (with --user, say)
    else:
        users = email_case_duplicates(groups)
    ordered.add_raw((USER_EMAIL_CASE_DUPLICATE, None, user_id, None, None, message) for user_id, message in users)
    reused = None
    if SECRET_NONCE_REUSE in filters.codes:
        if base.reused is None:
            raise Fallback("the saved audit did not check nonce reuse")
        candidates = _reuse_candidates(base.log, keep_base, new_log, base.reused)
        groups = candidates.reused()
        ordered.add_raw(nonce_reuse_findings(candidates, trace["slots"], groups))
        reused = _reused_keys(candidates, groups)
    # What was asked is the caller's question, not the partial run's (its codes lack the users').
    meta = {**part.meta, **filters.summary(), "installations": int(len(ids_now)), "mode": "incremental",
            "rows_read": part.meta.get("installations", 0)}
    saved_users = np.array(sorted({u for u, _ in users}), dtype=np.int64) if _users_since_possible(filters) else None
    if len(new_log) + len(stale) > COMPACT_SHARE * len(base.log):
        log = _select(base.log, keep_base)
        log.extend(new_log.state())
        # A new base. The candidates held every member of every reuse group of its traces.
        state = State(*fingerprints, snapshot, findings, log, saved_users, reused=reused)
    else:
        state = State(*fingerprints, snapshot, base.row_findings, base.log, saved_users, stale, new_findings,
                      new_log, base.base_run, base.reused)
    return Report._sorted(ordered, meta), state


def _log_ids(log: IVLog) -> np.ndarray:
    return np.frombuffer(log.rows, dtype=np.int64) >> 32


def _finding_ids(findings: list) -> np.ndarray:
    return np.fromiter((f[1] for f in findings), dtype=np.int64, count=len(findings))


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values[i] in sorted_set (int64 ids), as a bool array. A lookup table over the set's
    range when it is dense (ids are: ~10 ms for two million values), else a binary search
    (np.isin's own choice sorts both: ~70 ms)."""
    if not len(sorted_set) or not len(values):
        return np.zeros(len(values), dtype=bool)
    low, high = int(sorted_set[0]), int(sorted_set[-1])
    if high - low <= 8 * (len(values) + len(sorted_set)):
        table = np.zeros(high - low + 2, dtype=bool)  # the last slot: every value out of range
        table[sorted_set - low] = True
        return table[np.clip(values - low, -1, high - low + 1)]  # -1 is that last slot too
    positions = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[positions] == values


def _trace_keys(log: IVLog) -> np.ndarray:
    """64 bits per trace, equal for values of equal IV, IV length and key (what nonce reuse
    compares): half the digest, the meta's key and length bits mixed in."""
    digests = np.frombuffer(log.ivs, dtype="<u8").reshape(-1, 2)[:, 0]
    return digests ^ ((np.frombuffer(log.meta, dtype=np.uint32) >> 23).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _reused_keys(log: IVLog, groups) -> np.ndarray | None:
    """The sorted trace keys of the values in nonce-reuse `groups` (positions in `log`, as
    IVLog.reused gives them); None when nonce reuse was not checked."""
    if groups is None:
        return None
    positions = np.fromiter(itertools.chain.from_iterable(groups), dtype=np.int64)
    return sorted_unique(_trace_keys(log)[positions]) if len(positions) else np.zeros(0, np.uint64)


_TABLE_BITS = 20


def _reuse_candidates(base: IVLog, keep: np.ndarray, new: IVLog, base_reused: np.ndarray) -> IVLog:
    """Every trace that may share its IV with another, of the base's kept ones and the new
    ones: every new trace, and the kept base traces whose key is a new trace's or one of the
    base's reused keys (`base_reused`, saved with the base: two base values that share an IV
    were in one of its reuse groups). nonce_reuse_findings groups them exactly, so its
    findings over them are its findings over all the values — with no sort of two million
    keys: a 2^20-slot table of the wanted keys' low bits picks the base's few candidates."""
    wanted = sorted_unique(np.concatenate([base_reused, _trace_keys(new)]))
    candidates = IVLog()
    if len(wanted) and len(base):
        base_keys = _trace_keys(base)
        low = (1 << _TABLE_BITS) - 1
        table = np.zeros(1 << _TABLE_BITS, dtype=bool)
        # The low bits as int64 (a view, no copy) index directly; uint64 would be cast (~40 ms).
        table[wanted.view(np.int64) & low] = True
        rough = np.flatnonzero(table[base_keys.view(np.int64) & low] & keep)
        chosen = np.zeros(len(base), dtype=bool)
        picked = base_keys[rough]
        at = np.minimum(np.searchsorted(wanted, picked), len(wanted) - 1)  # exactly: a binary search
        chosen[rough[wanted[at] == picked]] = True
        candidates.extend(_select(base, chosen).state())
    candidates.extend(new.state())
    return candidates


# COPY … (FORMAT binary) of id_query's (word, present, changed) bigints: 38 bytes a row after
# the 19-byte header.
_ID_ROW = np.dtype([("fields", ">i2"), ("word_size", ">i4"), ("word", ">i8"), ("present_size", ">i4"),
                    ("present", ">u8"), ("changed_size", ">i4"), ("changed", ">u8")])
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\0" + bytes(8)  # signature, flags 0, no header extension


# The users' query aside runs in a transaction of its own, a moment after the one that checked
# the saved xmin's age: that check leaves this many transactions to spare.
_XID_MARGIN = 2 ** 24


def _changes(database, filters, registry, base: State, users_since: bool):
    """(ids now, sorted; the changed ones among them, sorted; the users' duplicate groups, or
    None when they are to be checked as a full audit does) — one read-only transaction, so
    every age() in it has one reference (sql.changed_since_condition), checked first. The
    users' query runs meanwhile on a connection of its own (_Aside) where it can."""
    import io

    since = base.snapshot.xmin
    query = id_query(filters, tuple(registry.apps), since)
    buffer = io.BytesIO()
    users = duplicate_candidates_query(since, base.users.tolist()) if users_since else None
    aside = None
    try:
        with translate_errors(database), read_only(database):
            cursor = database.cursor()
            cursor.execute(SAVED_AGE, (xid32(since),))
            if not 0 <= cursor.fetchone()[0] < WRAPAROUND - _XID_MARGIN:
                raise Fallback("the saved snapshot is (nearly) 2^31 or more transactions old")
            if users is not None:
                aside = _Aside.start(database, users)
                if aside is None:  # no URL to connect with: here, before the COPY
                    cursor.execute(users.sql, users.params)
                    candidates = cursor.fetchall()
            # A new backend would JIT-compile the aggregate's expressions first (~70 ms at 1M
            # rows, more than they save on one scan); transaction-scoped, so pooler-safe.
            cursor.execute("SET LOCAL jit = off")
            # Binary: no text to parse, 64 ids a row (a row per id cost ~0.15 s of Python calls).
            cursor.copy_expert(copy_sql(cursor, query) + b" (FORMAT binary)", buffer)
        if aside is not None:
            with translate_errors(database):
                candidates = aside.rows()
    finally:
        if aside is not None:
            aside.close()
    data = buffer.getbuffer()
    if bytes(data[:19]) != _BINARY_HEADER or bytes(data[-2:]) != b"\xff\xff" or (len(data) - 21) % _ID_ROW.itemsize:
        raise ValueError("unexpected COPY output")
    rows = np.frombuffer(data[19:len(data) - 2], dtype=_ID_ROW)
    if not all((rows[name] == size).all() for name, size in
               (("fields", 3), ("word_size", 8), ("present_size", 8), ("changed_size", 8))):
        raise ValueError("unexpected COPY row")
    rows = rows[np.argsort(rows["word"])]
    words = rows["word"].astype(np.int64)
    return _bitmap_ids(words, rows["present"]), _bitmap_ids(words, rows["changed"]), \
        None if users is None else _groups(candidates)


def _bitmap_ids(words: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The ids a sorted run of bitmap words holds (bit n of word w: id w * 64 + n), sorted."""
    flags = np.unpackbits(bits.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    row, bit = np.nonzero(flags)  # row-major: by word, then by bit
    return words[row] * 64 + bit


def _groups(candidates) -> list[list[int]]:
    """The ids of each lower-cased email held by two or more users."""
    by_email: dict = {}
    for email, user_id in candidates:
        by_email.setdefault(email, []).append(user_id)
    return [ids for ids in by_email.values() if len(ids) > 1]


class _Aside:
    """One query on a connection of its own in psycopg2's asynchronous mode: sent before the id
    pass's COPY and read after it, so the server runs both at once (~0.09 s of the users' check
    hidden at 1M rows). Not a thread: the COPY lifts the process-wide wait callback, and another
    thread's query fails then; an asynchronous connection never uses it. Waits are bounded as
    every other (db.connection.wait_bounded); a read-only transaction with the database's
    statement timeout, one message (pooler-safe), closed with the connection."""

    def __init__(self, connection, cursor):
        self.connection, self.cursor = connection, cursor

    @classmethod
    def start(cls, database, query) -> "_Aside | None":
        import psycopg2

        from ..db.connection import wait_bounded

        url = getattr(database, "url", None)
        if url is None:
            return None
        connection = psycopg2.connect(url.dsn(), async_=True)
        try:
            wait_bounded(connection)
            cursor = connection.cursor()
            timeout = int(getattr(database, "statement_timeout", 0) or 0)
            limit = f"SET LOCAL statement_timeout = '{timeout}s'; " if timeout else ""
            cursor.execute(f"BEGIN READ ONLY; {limit}" + cursor.mogrify(query.sql, query.params).decode("utf-8"))
        except BaseException:
            connection.close()
            raise
        return cls(connection, cursor)

    def rows(self) -> list:
        from ..db.connection import wait_bounded

        wait_bounded(self.connection)
        return self.cursor.fetchall()

    def close(self) -> None:
        self.connection.close()  # the server rolls the read-only transaction back


def _select(log: IVLog, keep: np.ndarray) -> IVLog:
    ivs = np.frombuffer(log.ivs, dtype=np.uint8).reshape(-1, 16)[keep]  # views: no copy before the mask
    meta = np.frombuffer(log.meta, dtype=np.uint32)[keep]
    rows = np.frombuffer(log.rows, dtype=np.int64)[keep]
    return IVLog(ivs.tobytes(), meta.tobytes(), rows.tobytes())


__all__ = ["COMPACT_SHARE", "MAX_CHANGED_SHARE", "WRAPAROUND", "audit"]
