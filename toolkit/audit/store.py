"""Saved audits (DESIGN.md §4.5): every completed audit in a local SQLite file, and the
incremental audit that reads only what changed since the last one.

    default_path(settings)            TOOLKIT_STATE_DIR, else the user state directory
    AuditStore(path)                  the file: mode 0600 in a 0700 directory
    store.runs(database)              saved runs, newest first (`toolkit audit history`)
    store.latest(database)            the newest saved Report (`--baseline last`, the dashboard)
    audit(database, registry, keyring, filters, store=..., incremental=True) -> Report

What a run keeps: its findings and summary (every run), and, for the newest run per database
and filters, what the next incremental audit starts from — the per-row findings (every code
but nonce reuse and the users' check, which are recomputed), one 28-byte trace per decrypted
value (a one-way digest of its IV, the key's index, the field's slot, the installation and
user ids: never a ciphertext, never a key), the PostgreSQL snapshot taken before the reads
began, and fingerprints of the registry, the keyring (the keys' own fingerprints) and the
checks' code. Nothing else: no URL password, no config value.

Why it is exact. The snapshot is taken before any row is read, so every row committed before
it was read by that audit (or a newer version of it was). Next time a row is read again when
its 64-bit xmin is at or after the snapshot's xmin (sql.changed_since_condition says why xmin
and not pg_visible_in_snapshot): written later, or maybe in flight then. Rows that are gone
are found by comparing the id set now with the saved findings' and traces' ids. Row checks
depend only on their row; nonce reuse is recomputed over the saved digests plus the changed
rows' traces; the users' check is re-run (one GROUP BY). Anything that makes this unsure —
another registry, keyring or checks version, another database (its oid), a transaction
counter that went backwards (a restore) or moved 2^31 or more (wraparound) — runs a full
audit instead, saying why in one line.

SQLite (the demo database) has no snapshots: `--incremental` runs a full audit there (one
line); its runs are saved all the same, for history and the dashboard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import time
import zlib
from pathlib import Path

import numpy as np

from ..codes import SECRET_NONCE_REUSE, USER_EMAIL_CASE_DUPLICATE
from ..db import describe, is_postgres, read_only, translate_errors
from ..errors import ToolkitError
from .finding import Finding
from .nonces import IVLog, nonce_reuse_findings
from .report import Report, clean, generated_at
from .sql import Filters, id_query, split_users

FILE_NAME = "audits.sqlite3"
SCHEMA_VERSION = 1
WRAPAROUND = 2 ** 31
# Runs whose findings are kept (per database); older runs keep their counts only.
KEEP_FINDINGS = 50
# Past this share of changed rows a full audit costs less than reading them by id.
MAX_CHANGED_SHARE = 0.5
ROW_CODES_EXCLUDED = (SECRET_NONCE_REUSE, USER_EMAIL_CASE_DUPLICATE)  # recomputed every run
# The checks' source: a saved state is only reused by the code that made it.
# The modules whose code decides a row's findings: a saved state from other code is not reused.
_CHECK_MODULES = (
    "toolkit.codes", "toolkit.audit.checks", "toolkit.audit.row_auditor", "toolkit.audit.nonces",
    "toolkit.audit.finding", "toolkit.audit.sql", "toolkit.crypto._format", "toolkit.crypto._keyring",
    "toolkit.db.json_values", "toolkit.registry._field_types",
)
# The IV digest: AES-128 under a fixed public key, XORed with the block (Matyas-Meyer-Oseas):
# one-way and collision-resistant for 16-byte blocks, and ~30 ms for two million IVs in one
# call, where a hashlib call per value costs ~0.8 s.
_DIGEST_KEY = hashlib.sha256(b"toolkit-iv-digest-v1").digest()[:16]


class Fallback(Exception):
    """The incremental audit cannot be sure: why, in words for the one stderr line."""


def default_path(settings=None) -> Path:
    base = getattr(settings, "state_dir", None)
    if base is None:
        import platformdirs

        from ..crypto.access_log import APP_NAME

        base = platformdirs.user_state_dir(APP_NAME)
    return Path(base) / FILE_NAME


# ---- fingerprints ------------------------------------------------------------------------

def registry_fingerprint(registry) -> str:
    """sha256 of the registry as the checks see it (the parsed definitions, canonical JSON)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    apps = [[app_id, plain(app)] for app_id, app in registry.apps.items()]  # order numbers the slots
    return hashlib.sha256(json.dumps(apps, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def keyring_fingerprint(keyring) -> str:
    """The keys' own fingerprints, in order (the order is the key index findings name)."""
    return hashlib.sha256(",".join(key.fingerprint for key in keyring.keys).encode("ascii")).hexdigest()


def checks_fingerprint() -> str:
    import importlib

    digest = hashlib.sha256()
    for name in _CHECK_MODULES:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()


def digest_ivs(ivs: bytes) -> bytes:
    """A 16-byte one-way digest of each 16-byte IV block (IVLog pads 12-byte IVs, and flags
    them in its meta, so equal digests mean equal IVs of equal length)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if not ivs:
        return b""
    encryptor = Cipher(algorithms.AES(_DIGEST_KEY), modes.ECB()).encryptor()
    sealed = encryptor.update(bytes(ivs)) + encryptor.finalize()
    return (np.frombuffer(sealed, dtype=np.uint64) ^ np.frombuffer(bytes(ivs), dtype=np.uint64)).tobytes()


# ---- the store ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    database TEXT NOT NULL,
    generated_at TEXT NOT NULL,
    mode TEXT NOT NULL,
    duration_s REAL,
    rows_read INTEGER,
    installations INTEGER,
    findings INTEGER NOT NULL,
    by_severity TEXT NOT NULL,
    by_code TEXT NOT NULL,
    filters TEXT NOT NULL,
    report BLOB
);
CREATE INDEX IF NOT EXISTS runs_database ON runs (database, id);
CREATE TABLE IF NOT EXISTS state (
    database TEXT NOT NULL,
    scope TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    registry TEXT NOT NULL,
    keyring TEXT NOT NULL,
    checks TEXT NOT NULL,
    database_oid INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    xmin INTEGER NOT NULL,
    xmax INTEGER NOT NULL,
    row_findings BLOB NOT NULL,
    digests BLOB NOT NULL,  -- 16 bytes per value (IVLog.ivs, digested)
    meta BLOB NOT NULL,  -- IVLog.meta: key index, IV length flag, slot
    rows BLOB NOT NULL,  -- IVLog.rows (zlib): installation id << 32 | user id
    PRIMARY KEY (database, scope)
);
"""


@dataclasses.dataclass
class Snapshot:
    text: str  # pg_current_snapshot() as text: xmin:xmax:xip,…
    xmin: int
    xmax: int
    database_oid: int


@dataclasses.dataclass
class State:
    """What the next incremental audit starts from (one per database and filters)."""

    registry: str
    keyring: str
    checks: str
    snapshot: Snapshot
    row_findings: list  # (code, installation_id, user_id, app_id, field, message)
    log: IVLog  # digests in place of IVs


class AuditStore:
    def __init__(self, path):
        self.path = Path(path)
        _private_dir(self.path.parent)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's journals copy this mode
        elif self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # WAL: a new state is appended once (a rollback journal would also copy the old pages
        # it reuses); NORMAL: durable at checkpoints, which is enough for a cache of audits.
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"{self.path} was written by another toolkit version")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- runs ----------------------------------------------------------------------------
    def save(self, report: Report, state: State | None = None, scope: str | None = None) -> int:
        """Save a completed run (and, given, the state the next incremental run starts from)."""
        summary = report.summary
        database = summary.get("database", "")
        document = zlib.compress(report.to_json(indent=None).encode("utf-8"), 6)
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (database, generated_at, mode, duration_s, rows_read, installations,"
                " findings, by_severity, by_code, filters, report) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (database, summary.get("generated_at") or generated_at(), summary.get("mode", "full"),
                 summary.get("duration_s"), summary.get("rows_read"), summary.get("installations"),
                 len(report.findings), json.dumps(report.by_severity()), json.dumps(report.by_code()),
                 json.dumps(summary.get("filters") or {}, sort_keys=True), document))
            run_id = cursor.lastrowid
            self._prune(database)
            if state is not None and scope is not None:
                self._save_state(database, scope, run_id, state)
        return run_id

    def _prune(self, database: str) -> None:
        self._db.execute(
            "UPDATE runs SET report = NULL WHERE database = ? AND report IS NOT NULL AND id NOT IN"
            " (SELECT id FROM runs WHERE database = ? ORDER BY id DESC LIMIT ?)",
            (database, database, KEEP_FINDINGS))

    def runs(self, database: str | None = None, limit: int | None = None) -> list[dict]:
        """Saved runs, newest first: id, database, generated_at, mode, duration_s, rows_read,
        installations, findings, by_severity, by_code, filters."""
        sql = ("SELECT id, database, generated_at, mode, duration_s, rows_read, installations, findings,"
               " by_severity, by_code, filters FROM runs")
        params: tuple = ()
        if database is not None:
            sql += " WHERE database = ?"
            params = (database,)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        names = ("id", "database", "generated_at", "mode", "duration_s", "rows_read", "installations",
                 "findings", "by_severity", "by_code", "filters")
        runs = []
        for row in self._db.execute(sql, params):
            run = dict(zip(names, row))
            for name in ("by_severity", "by_code", "filters"):
                run[name] = json.loads(run[name])
            runs.append(run)
        return runs

    def latest(self, database: str) -> Report | None:
        """The newest saved run of `database` that still has its findings, as a Report."""
        row = self._db.execute(
            "SELECT report FROM runs WHERE database = ? AND report IS NOT NULL ORDER BY id DESC LIMIT 1",
            (database,)).fetchone()
        if row is None:
            return None
        return Report.from_json(zlib.decompress(row[0]).decode("utf-8"), source="the saved audit")

    def forget(self, database: str | None = None) -> int:
        """Delete the saved runs (of one database, or all); -> how many."""
        where, params = ("WHERE database = ?", (database,)) if database is not None else ("", ())
        with self._transaction():
            count = self._db.execute(f"DELETE FROM runs {where}", params).rowcount
            self._db.execute(f"DELETE FROM state {where}", params)
        return count

    # ---- incremental state ---------------------------------------------------------------
    def _save_state(self, database: str, scope: str, run_id: int, state: State) -> None:
        ivs, meta, rows = state.log.state()
        findings = zlib.compress(json.dumps(state.row_findings, ensure_ascii=False).encode("utf-8"), 1)
        snap = state.snapshot
        self._db.execute(
            "INSERT OR REPLACE INTO state VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (database, scope, run_id, state.registry, state.keyring, state.checks, snap.database_oid,
             snap.text, snap.xmin, snap.xmax, findings, ivs, meta, zlib.compress(rows, 1)))

    def state(self, database: str, scope: str) -> State | None:
        row = self._db.execute(
            "SELECT registry, keyring, checks, database_oid, snapshot, xmin, xmax, row_findings, digests,"
            " meta, rows FROM state WHERE database = ? AND scope = ?", (database, scope)).fetchone()
        if row is None:
            return None
        registry, keyring, checks, oid, text, xmin, xmax, findings, ivs, meta, rows = row
        return State(registry, keyring, checks, Snapshot(text, xmin, xmax, oid),
                     [tuple(f) for f in json.loads(zlib.decompress(findings))],
                     IVLog(ivs, meta, zlib.decompress(rows)))

    @contextlib.contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def open_store(settings=None, *, warn=None) -> AuditStore | None:
    """The store at its default place, or None (with one line through `warn`) if it cannot be opened."""
    path = default_path(settings)
    try:
        return AuditStore(path)
    except (OSError, sqlite3.Error) as exc:
        if warn is not None:
            warn(f"saved audits unavailable ({path}: {getattr(exc, 'strerror', None) or exc})")
        return None


# ---- auditing with the store -------------------------------------------------------------

def identity(database) -> str:
    """Which database a run read: host, port and name (and user), never the password."""
    return describe(database)


def scope_of(filters: Filters) -> str:
    return json.dumps(filters.describe(), sort_keys=True)


def audit(database, registry, keyring, filters: Filters | None = None, *, store: AuditStore | None = None,
          incremental: bool = False, save: bool = True, jobs=None, progress=None, warn=None) -> Report:
    """Audit, incrementally when asked and possible, and save the run (unless `save` is false
    or there is no store). `warn(line)` gets the one line that says why a full audit ran."""
    from .engine import run_audit

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
            warn(f"incremental audit failed ({clean(type(exc).__name__ + ': ' + str(exc), 160)}): running a full audit")
        else:
            return _finish(report, state, store, name, scope, save, started, warn)
    snapshot = _snapshot(database) if is_postgres(database) else None
    trace: dict = {}
    report = run_audit(database, registry, keyring, filters, jobs=jobs, progress=progress, trace=trace)
    state = None
    if snapshot is not None and _keeps_state(filters):
        state = State(*fingerprints, snapshot, _row_findings(report),
                      _digested(trace.get("ivs", IVLog())))
    report = Report(report.findings, {**report.meta, "mode": "full",
                                      "rows_read": report.meta.get("installations", 0)})
    return _finish(report, state, store, name, scope, save, started, warn)


def _finish(report, state, store, name, scope, save, started, warn) -> Report:
    report = Report(report.findings, {**report.meta, "duration_s": round(time.perf_counter() - started, 3)})
    if save and store is not None:
        try:
            store.save(report, state, scope)
        except sqlite3.Error as exc:
            warn(f"the audit was not saved ({store.path}: {exc})")
    return report


def _keeps_state(filters: Filters) -> bool:
    """A row's findings depend only on the row — unless --user names an email: the users
    table decides then which rows are read, and a changed email changes no installation."""
    return not split_users(filters.users)[1]


def _row_findings(report: Report) -> list[tuple]:
    return [(f.code, f.installation_id, f.user_id, f.app_id, f.field, f.message)
            for f in report.findings if f.code not in ROW_CODES_EXCLUDED]


def _digested(log: IVLog) -> IVLog:
    ivs, meta, rows = log.state()
    return IVLog(digest_ivs(ivs), meta, rows)


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
    base = store.state(name, scope)
    if base is None:
        raise Fallback("no saved audit of this database with these filters")
    for what, saved, now in zip(("registry", "keyring", "checks"), (base.registry, base.keyring, base.checks),
                                fingerprints):
        if saved != now:
            raise Fallback("the registry changed" if what == "registry" else
                           "the keyring changed" if what == "keyring" else "the toolkit's checks changed")
    return base


def _incremental(database, registry, keyring, filters, base: State, fingerprints, jobs, progress):
    from .engine import run_audit

    snapshot = _snapshot(database)
    if snapshot.database_oid != base.snapshot.database_oid:
        raise Fallback("the database was recreated since the saved audit")
    if snapshot.xmax < base.snapshot.xmax:
        raise Fallback("the transaction counter went backwards (a restore?)")
    if snapshot.xmax - base.snapshot.xmin >= WRAPAROUND:
        raise Fallback("the saved snapshot is 2^31 or more transactions old")
    users = _Users(database, filters)  # meanwhile, on its own connection (a GROUP BY in the server)
    ids_now, changed = _id_pass(database, filters, registry, base.snapshot.xmin)
    if len(changed) > MAX_CHANGED_SHARE * max(len(ids_now), 1) and len(changed) > 1000:
        raise Fallback(f"{len(changed)} of {len(ids_now)} rows changed")
    trace: dict = {}
    rows_only = frozenset(filters.codes) - {USER_EMAIL_CASE_DUPLICATE}
    part = run_audit(database, registry, keyring,
                     dataclasses.replace(filters, ids=tuple(changed.tolist()), codes=rows_only),
                     jobs=jobs, progress=progress, trace=trace)
    kept_ids = ids_now[~_members(ids_now, changed)]  # sorted: present and unchanged
    findings = [f for f, keep in zip(base.row_findings, _members([f[1] for f in base.row_findings], kept_ids))
                if keep]
    keep = _members(np.frombuffer(base.log.rows, dtype=np.int64) >> 32, kept_ids)
    log = _select(base.log, keep)
    log.extend(_digested(trace.get("ivs", IVLog())).state())
    new_rows = _row_findings(part)
    findings += new_rows
    result = [Finding.of(*f) for f in findings]
    result += users.findings()
    if SECRET_NONCE_REUSE in filters.codes:
        result += [Finding.of(*found) for found in nonce_reuse_findings(log, trace["slots"])]
    result = sorted((f for f in result if f.code in filters.codes), key=lambda f: (f.sort_key, f.message))
    meta = {**part.meta, "installations": int(len(ids_now)), "mode": "incremental",
            "rows_read": part.meta.get("installations", 0)}
    state = State(*fingerprints, snapshot, findings, log)
    return Report(result, meta), state


class _Users:
    """The users' check (engine._email_duplicates, the full audit's own), run at once in this
    thread. Not beside the COPYs in a thread of its own: the CLI's wait callback is process-wide
    and lifted for each COPY (db.connection._blocking_waits), and a query of another thread's
    connection in that moment fails with "wait callback not available"."""

    def __init__(self, database, filters):
        from .engine import _email_duplicates

        self._result = _email_duplicates(database, filters, "%s")

    def findings(self) -> list[Finding]:
        return [Finding.of(USER_EMAIL_CASE_DUPLICATE, None, user_id, None, None, message)
                for user_id, message in self._result]


def _id_pass(database, filters, registry, since_xmin):
    """(ids now, sorted; the changed ones among them, sorted): one COPY of `id, xmin`.

    A row's xmin is a 32-bit xid: its 64-bit xid is the largest number not above the next xid
    (taken after the COPY, so above every xmin it saw) with those low bits, the rule of
    sql.changed_since_condition, here in numpy (a cast per row in the server costs more)."""
    import io

    query = id_query(filters, tuple(registry.apps))
    buffer = io.BytesIO()
    with translate_errors(database), read_only(database):
        cursor = database.cursor()
        cursor.copy_expert(b"COPY (" + cursor.mogrify(query.sql, query.params) + b") TO STDOUT", buffer)
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        next_xid = int(cursor.fetchone()[0])
    text = buffer.getvalue().decode("ascii")
    if not text:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # numpy's C parser: ~70 ms for a million rows, where int() per line costs ~0.3 s.
    pairs = np.fromstring(text, dtype=np.int64, sep=" ").reshape(-1, 2)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    xmin32 = pairs[:, 1]
    xid64 = next_xid - ((next_xid - xmin32) & 0xFFFFFFFF)
    changed = (xmin32 > 2) & (xid64 >= since_xmin)  # 0-2: bootstrap and frozen xids
    return pairs[:, 0].copy(), pairs[changed, 0].copy()


def _members(values, sorted_set: np.ndarray) -> np.ndarray:
    """values[i] in sorted_set, as a bool array (binary search: no sort of `values`)."""
    values = np.asarray(values, dtype=np.int64)
    if not len(sorted_set) or not len(values):
        return np.zeros(len(values), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[positions] == values


def _select(log: IVLog, keep: np.ndarray) -> IVLog:
    ivs = np.frombuffer(log.ivs, dtype=np.uint8).reshape(-1, 16)[keep]  # views: no copy before the mask
    meta = np.frombuffer(log.meta, dtype=np.uint32)[keep]
    rows = np.frombuffer(log.rows, dtype=np.int64)[keep]
    return IVLog(ivs.tobytes(), meta.tobytes(), rows.tobytes())


__all__ = ["AuditStore", "Fallback", "audit", "default_path", "open_store"]
