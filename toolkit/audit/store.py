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
user ids: never a ciphertext, never a key), the ids of the users in email-duplicate groups,
the PostgreSQL snapshot taken before the reads began, and fingerprints of the registry, the
keyring (the keys' own fingerprints) and the checks' code. Nothing else: no URL password, no
config value, no email.

Saved as a base and an overlay, so an incremental run writes what changed and not the 56 MB
of a million rows' traces: the base (the findings and traces of the last full save, in its
own row, never rewritten by an incremental run), the installations whose base entries no
longer hold (changed or gone since), and the overlay: the findings and traces of the
installations read since the base. When the overlay and the stale ids outgrow COMPACT_SHARE
of the base, the run saves the merged state as a new base. (Chunking the base by id ranges
does not pay: 1% of rows changed at random touch most chunks, and loading 60,000 rows costs
more than one 56 MB blob.)

Why it is exact. The snapshot is taken before any row is read, so every row committed before
it was read by that audit (or a newer version of it was). Next time a row is read again when
its xmin is at or after the snapshot's xmin (sql.changed_since_condition says why xmin and
not pg_visible_in_snapshot, and how age() compares them): written later, or maybe in flight
then. Rows that are gone are found by comparing the id set now (one binary COPY of bitmaps
of the ids and of that flag, sql.id_query) with the saved findings' and traces' ids. Row checks depend only on their row;
nonce reuse is recomputed over the saved digests plus the changed rows' traces. The users'
check (no --user filter) is redone for the groups that can differ: those holding a user
written since the snapshot or a user of a saved duplicate group. A group now whose users
are all older than the snapshot existed as it is when the saved audit read the users (after
the snapshot), so its users are saved ones; any other group holds a changed user. With
--user the users' check runs as in a full audit (one GROUP BY). Anything that makes this unsure —
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
import itertools
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import orjson

from ..codes import CODES, SECRET_NONCE_REUSE, USER_EMAIL_CASE_DUPLICATE
from ..db import describe, is_postgres, read_only, translate_errors
from ..errors import ToolkitError
from ..ids import is_id
from ._spill import FindingStore
from .finding import Finding
from .checks import email_case_duplicates
from .nonces import IVLog, nonce_reuse_findings, sorted_unique
from .report import Report, clean, generated_at
from .sql import (
    SAVED_AGE,
    Filters,
    duplicate_candidates_query,
    id_query,
    split_users,
    xid32,
)

FILE_NAME = "audits.sqlite3"
SCHEMA_VERSION = 3  # older states are dropped on open (a cache); 1: whole-table blobs, 2: no reused keys
WRAPAROUND = 2 ** 31
# Past this share of the base's traces (overlay traces plus stale ids), a run saves a new base.
COMPACT_SHARE = 0.25
# Runs whose findings are kept (per database); older runs keep their counts only.
KEEP_FINDINGS = 50
# Past this share of changed rows a full audit costs less than reading them by id.
MAX_CHANGED_SHARE = 0.5
# Recomputed every run, as the codes table says (their checks compare rows with each other).
ROW_CODES_EXCLUDED = tuple(code for code, entry in CODES.items() if entry.across_rows)
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

        from ..settings import APP_NAME

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
    blocks = bytearray(ivs)
    digest_in_place(blocks)
    return bytes(blocks)


def digest_in_place(ivs: bytearray) -> None:
    """digest_ivs over a bytearray, overwritten: an audit's millions of IVs are not copied
    more than the one AES output needs."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if not ivs:
        return
    encryptor = Cipher(algorithms.AES(_DIGEST_KEY), modes.ECB()).encryptor()
    sealed = encryptor.update(ivs) + encryptor.finalize()
    view = np.frombuffer(ivs, dtype=np.uint64)
    view ^= np.frombuffer(sealed, dtype=np.uint64)


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
    id INTEGER PRIMARY KEY,
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
    users BLOB,  -- int64: the users of the email-duplicate groups (NULL: not checked unfiltered)
    stale BLOB NOT NULL,  -- int64, sorted: installations whose base findings and traces no longer hold
    findings BLOB NOT NULL,  -- the overlay (zlib JSON): row findings of installations read since the base
    digests BLOB NOT NULL,  -- the overlay's traces: 16 bytes per value (IVLog.ivs, digested)
    meta BLOB NOT NULL,  -- IVLog.meta: key index, IV length flag, slot
    rows BLOB NOT NULL,  -- IVLog.rows: installation id << 32 | user id
    UNIQUE (database, scope)
);
CREATE TABLE IF NOT EXISTS state_base (
    state INTEGER PRIMARY KEY,  -- state.id
    run_id INTEGER NOT NULL,  -- the run that wrote it
    findings BLOB NOT NULL,
    digests BLOB NOT NULL,
    meta BLOB NOT NULL,
    rows BLOB NOT NULL,
    reused BLOB  -- uint64, sorted: the trace keys of the base's nonce-reuse groups (NULL: not checked)
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
    """What the next incremental audit starts from (one per database and filters): the base,
    minus the `stale` installations' entries, plus the overlay (`new_findings`, `new_log`)."""

    registry: str
    keyring: str
    checks: str
    snapshot: Snapshot
    row_findings: Iterable  # the base's: (code, installation_id, user_id, app_id, field, message) tuples
    log: IVLog  # the base's traces, digests in place of IVs
    users: object = None  # int64 array: the users of the email-duplicate groups (None: unknown)
    stale: object = None  # sorted int64 array (None: none)
    new_findings: list = dataclasses.field(default_factory=list)
    new_log: IVLog = dataclasses.field(default_factory=IVLog)
    base_run: int | None = None  # the run that saved this base (None: a new base, to be written)
    reused: object = None  # the base's: sorted uint64 trace keys of its nonce-reuse groups (None: not checked)
    _loading: object = dataclasses.field(default=None, repr=False, compare=False)

    def loaded(self) -> "State":
        """This state with its base (AuditStore.state(in_background=True) loads it meanwhile)."""
        if self._loading is not None:
            loading, self._loading = self._loading, None
            loading.result()
        return self

    def joined(self) -> None:
        """The loading thread is done (its error, if any, is for loaded())."""
        if self._loading is not None:
            self._loading.join()


class _Background:
    """A function run in a thread (sqlite3 and numpy release the GIL, as psycopg2 does while
    it waits for the server); `result()` joins it and raises what it raised."""

    def __init__(self, function):
        import threading

        self._error = None
        self._thread = threading.Thread(target=self._run, args=(function,), name="audit-state", daemon=True)
        self._thread.start()

    def _run(self, function):
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 — handed to result()
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class AuditStore:
    def __init__(self, path):
        self.path = Path(path)
        _private_dir(self.path.parent)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's journals copy this mode
        elif self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)
        # Used from one thread at a time: a save in the background (save_soon) is waited for
        # before anything else touches the connection.
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._saving = None
        # WAL: a new state is appended once (a rollback journal would also copy the old pages
        # it reuses); NORMAL: durable at checkpoints, which is enough for a cache of audits.
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, 2, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"{self.path} was written by another toolkit version")
        if version in (1, 2):  # the runs stay; the old state is a cache the next full audit rebuilds
            self._db.execute("DROP TABLE IF EXISTS state")
            self._db.execute("DROP TABLE IF EXISTS state_base")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Wait for a save under way (save_soon), then close."""
        try:
            self.wait()
        finally:
            self._db.close()

    def wait(self) -> None:
        """Wait for a save under way (save_soon)."""
        if self._saving is not None:
            (saving, warn), self._saving = self._saving, None
            try:
                saving.result()
            except sqlite3.Error as exc:
                if warn is None:
                    raise
                warn(f"the audit was not saved ({self.path}: {exc})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- runs ----------------------------------------------------------------------------
    def save_soon(self, report: Report, state: State | None = None, scope: str | None = None, *, warn=None) -> None:
        """`save` in a thread, while the caller renders the report: most of saving is zlib and
        SQLite, which release the GIL. The store's next use (close() included) waits for it
        and hands a failed save's one line to `warn` (raises it without one). The report must
        stay open till then."""
        self.wait()
        self._saving = (_Background(lambda: self._save(report, state, scope)), warn)

    def save(self, report: Report, state: State | None = None, scope: str | None = None) -> int:
        """Save a completed run (and, given, the state the next incremental run starts from)."""
        self.wait()
        return self._save(report, state, scope)

    def _save(self, report: Report, state: State | None, scope: str | None) -> int:
        summary = report.summary
        if summary.get("filters"):
            summary["filters"] = stored_filters(summary["filters"])
        database = summary.get("database", "")
        # The findings are encoded once: the run's saved report, and — for a full audit, whose
        # state's per-row findings are the same findings (less two codes, dropped on loading)
        # — the state's base as well.
        packed = _packed_blocks(report.of_arguments())
        document = _saved_report(summary, packed)
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
                if isinstance(state.row_findings, _RowFindings):
                    state = dataclasses.replace(state, row_findings=_Packed(packed))
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
        self.wait()
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
        self.wait()
        row = self._db.execute(
            "SELECT report FROM runs WHERE database = ? AND report IS NOT NULL ORDER BY id DESC LIMIT 1",
            (database,)).fetchone()
        if row is None:
            return None
        blob = row[0]
        if not blob.startswith(_SAVED_REPORT):  # saved by an earlier version: the JSON report
            return Report.from_json(zlib.decompress(blob).decode("utf-8"), source="the saved audit")
        size = int.from_bytes(blob[len(_SAVED_REPORT):len(_SAVED_REPORT) + 4], "big")
        start = len(_SAVED_REPORT) + 4
        summary = json.loads(zlib.decompress(blob[start:start + size]))
        meta = {k: v for k, v in summary.items() if k in ("database", "codes", "filters", "generated_at")}
        findings = _loads(zlib.decompress(blob[start + size:]))
        return Report((Finding.of(*f) for f in findings), meta)

    def forget(self, database: str | None = None) -> int:
        """Delete the saved runs (of one database, or all); -> how many."""
        self.wait()
        where, params = ("WHERE database = ?", (database,)) if database is not None else ("", ())
        with self._transaction():
            count = self._db.execute(f"DELETE FROM runs {where}", params).rowcount
            self._db.execute(f"DELETE FROM state_base WHERE state IN (SELECT id FROM state {where})", params)
            self._db.execute(f"DELETE FROM state {where}", params)
        return count

    # ---- incremental state ---------------------------------------------------------------
    def _save_state(self, database: str, scope: str, run_id: int, state: State) -> None:
        snap = state.snapshot
        users = None if state.users is None else np.asarray(state.users, dtype=np.int64).tobytes()
        stale = np.zeros(0, np.int64) if state.stale is None else np.asarray(state.stale, dtype=np.int64)
        values = (run_id, state.registry, state.keyring, state.checks, snap.database_oid, snap.text, snap.xmin,
                  snap.xmax, users, stale.tobytes(), _packed(state.new_findings), *state.new_log.state())
        row = self._db.execute("SELECT id FROM state WHERE database = ? AND scope = ?", (database, scope)).fetchone()
        if row is None:
            state_id = self._db.execute(
                "INSERT INTO state (run_id, registry, keyring, checks, database_oid, snapshot, xmin, xmax, users,"
                " stale, findings, digests, meta, rows, database, scope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, database, scope)).lastrowid
        else:
            state_id = row[0]
            self._db.execute(
                "UPDATE state SET run_id = ?, registry = ?, keyring = ?, checks = ?, database_oid = ?, snapshot = ?,"
                " xmin = ?, xmax = ?, users = ?, stale = ?, findings = ?, digests = ?, meta = ?, rows = ?"
                " WHERE id = ?", (*values, state_id))
        saved = self._db.execute("SELECT run_id FROM state_base WHERE state = ?", (state_id,)).fetchone()
        # The base is written once per full audit or compaction — or when another run saved
        # another base since this state's was loaded (the overlay is relative to this one).
        if state.base_run is None or saved is None or saved[0] != state.base_run:
            reused = None if state.reused is None else np.asarray(state.reused, dtype=np.uint64).tobytes()
            self._db.execute("INSERT OR REPLACE INTO state_base VALUES (?,?,?,?,?,?,?)",
                             (state_id, run_id, _packed(state.row_findings), *state.log.buffers(), reused))

    def state(self, database: str, scope: str, *, in_background: bool = False) -> State | None:
        """The saved state of `database` with `scope`. `in_background`: the base (a blob of
        ~56 MB per million rows) loads in a thread while the caller reads the database —
        `State.loaded()` waits for it."""
        self.wait()
        row = self._db.execute(
            "SELECT id, run_id, registry, keyring, checks, database_oid, snapshot, xmin, xmax, users, stale,"
            " findings, digests, meta, rows FROM state WHERE database = ? AND scope = ?", (database, scope)).fetchone()
        if row is None:
            return None
        state_id, run_id, registry, keyring, checks, oid, text, xmin, xmax, users, stale, new_findings, *new_log = row
        state = State(registry, keyring, checks, Snapshot(text, xmin, xmax, oid), None, None,
                      None if users is None else np.frombuffer(users, dtype=np.int64),
                      np.frombuffer(stale, dtype=np.int64), _unpacked(new_findings), IVLog(*new_log))

        def load():
            # Its own connection (sqlite3's are per thread), so its own read: the base must
            # still be the one of the state row read above.
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
                found = db.execute("SELECT b.run_id, b.findings, b.digests, b.meta, b.rows, b.reused FROM state_base b"
                                   " JOIN state s ON s.id = b.state WHERE s.id = ? AND s.run_id = ?",
                                   (state_id, run_id)).fetchone()
            if found is None:
                raise Fallback("the saved audit changed while it was read")
            state.base_run, state.row_findings = found[0], _unpacked(found[1])
            state.log = IVLog(*found[2:5])
            state.reused = None if found[5] is None else np.frombuffer(found[5], dtype=np.uint64)

        state._loading = _Background(load) if in_background else None
        if not in_background:
            load()
        return state

    @contextlib.contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


class _Packed:
    """Findings already packed (`_packed`'s bytes): saved as they are."""

    def __init__(self, blob: bytes):
        self.blob = blob


def _packed(findings) -> bytes:
    """The findings (an iterable of tuples) as one JSON array, compressed as it is written:
    a million findings never stand in memory as one string."""
    if isinstance(findings, _Packed):
        return findings.blob
    findings = iter(findings)
    return _packed_blocks(iter(lambda: list(itertools.islice(findings, _PACK_CHUNK)), []))


def _packed_blocks(blocks) -> bytes:
    """`_packed` of findings given in lists."""
    compressor = zlib.compressobj(1)
    parts, first = [compressor.compress(b"[")], True
    for block in blocks:
        if block:
            parts.append(compressor.compress(_json_items(block, first)))
            first = False
    parts.append(compressor.compress(b"]"))
    parts.append(compressor.flush())
    return b"".join(parts)


_PACK_CHUNK = 10_000


def _json_items(chunk, first: bool) -> bytes:
    try:
        body = orjson.dumps(chunk)[1:-1]  # the items, without [ ]; ~10x json's speed
    except TypeError:  # a lone surrogate in a key (SQLite text): json escapes it
        body = json.dumps(chunk, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")
    return body if first else b"," + body


def _unpacked(blob: bytes) -> list[tuple]:
    """Per-row findings back; the across-rows codes a full audit's packed findings also hold
    are dropped (they are recomputed every run)."""
    return [tuple(f) for f in _loads(zlib.decompress(blob)) if f[0] not in ROW_CODES_EXCLUDED]


def _loads(data: bytes):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # escaped lone surrogates: orjson refuses them, json reads them
        return json.loads(data.decode("utf-8", "surrogatepass"))


_SAVED_REPORT = b"TKR2"  # a saved report: marker, 4-byte length, zlib(summary JSON), packed findings


def _saved_report(summary: dict, packed: bytes) -> bytes:
    summary = zlib.compress(json.dumps(summary, ensure_ascii=False, default=str).encode("utf-8"), 6)
    return _SAVED_REPORT + len(summary).to_bytes(4, "big") + summary + packed


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


def saved_runs(settings, database, limit: int | None = None, *, warn=None) -> list[dict]:
    """The saved runs of `database` (None: of every database), newest first; none when no
    store exists yet (reading never creates one)."""
    store = open_store(settings, warn=warn) if default_path(settings).exists() else None
    if store is None:
        return []
    with store:
        return store.runs(None if database is None else identity(database), limit)


def latest_saved(settings, database, *, warn=None) -> Report | None:
    """The newest saved audit of `database`, or None (no store, or no run of it yet)."""
    store = open_store(settings, warn=warn) if default_path(settings).exists() else None
    if store is None:
        return None
    with store:
        return store.latest(identity(database))


# ---- auditing with the store -------------------------------------------------------------

def identity(database) -> str:
    """Which database a run read: host, port and name (and user), never the password."""
    return describe(database)


def scope_of(filters: Filters) -> str:
    return json.dumps(stored_filters(filters.describe()), sort_keys=True)


def stored_filters(described: dict) -> dict:
    """Filters.describe() as the store keeps it: a --user email as a digest (the store holds
    no email), ids as they are."""
    users = described.get("users")
    if not users:
        return described
    return {**described, "users": [u if is_id(u) else "email-sha256:" + hashlib.sha256(u.lower().encode()).hexdigest()[:16]
                                   for u in users]}


def audit(database, registry, keyring, filters: Filters | None = None, *, store: AuditStore | None = None,
          incremental: bool = False, save: bool = True, save_soon: bool = False, jobs=None, progress=None,
          warn=None) -> Report:
    """Audit, incrementally when asked and possible, and save the run (unless `save` is false
    or there is no store). `warn(line)` gets the one line that says why a full audit ran, or
    that the run was not saved. `save_soon`: return while the run is saved in the background
    (AuditStore.save_soon: the store's next use waits; keep the report open till then)."""
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


class _RowFindings:
    """A full audit's per-row findings as tuples, read from the report when iterated (a spilled
    report streams them from disk): what the state saves, without a copy in memory."""

    def __init__(self, report: Report):
        self._report = report

    def __iter__(self):
        for block in self._report.of_arguments():
            yield from (f for f in block if f[0] not in ROW_CODES_EXCLUDED)


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
    from .engine import _email_duplicates, run_audit

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
    meta = {**part.meta, "installations": int(len(ids_now)), "mode": "incremental",
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
            cursor.copy_expert(b"COPY (" + cursor.mogrify(query.sql, query.params) + b") TO STDOUT (FORMAT binary)",
                               buffer)
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


__all__ = ["AuditStore", "Fallback", "audit", "default_path", "open_store"]
