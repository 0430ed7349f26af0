"""Saved audits (DESIGN.md §4.5): every completed audit in a local SQLite file, and what
the incremental audit (incremental.py) starts from.

    default_path(settings)            TOOLKIT_STATE_DIR, else the user state directory
    AuditStore(path)                  the file: mode 0600 in a 0700 directory
    store.runs(database)              saved runs, newest first (`toolkit audit history`)
    store.latest(database)            the newest saved Report (`--baseline last`, the dashboard)

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
installations read since the base. When the overlay and the stale ids outgrow
incremental.COMPACT_SHARE of the base, the run saves the merged state as a new base.
(Chunking the base by id ranges does not pay: 1% of rows changed at random touch most
chunks, and loading 60,000 rows costs more than one 56 MB blob.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path

import orjson

from ..codes import CODES
from ..db import describe
from ..ids import is_id
from .finding import Finding
from .nonces import IVLog
from .report import Report, generated_at
from .sql import Filters

FILE_NAME = "audits.sqlite3"
SCHEMA_VERSION = 3  # older states are dropped on open (a cache); 1: whole-table blobs, 2: no reused keys
# Runs whose findings are kept (per database); older runs keep their counts only.
KEEP_FINDINGS = 50
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
    import numpy as np  # imported where traces are handled: `audit history` and saved reports need none

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
        import numpy as np

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
        import numpy as np

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


class _RowFindings:
    """A full audit's per-row findings as tuples, read from the report when iterated (a spilled
    report streams them from disk): what the state saves, without a copy in memory."""

    def __init__(self, report: Report):
        self._report = report

    def __iter__(self):
        for block in self._report.of_arguments():
            yield from (f for f in block if f[0] not in ROW_CODES_EXCLUDED)


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


__all__ = [
    "FILE_NAME",
    "KEEP_FINDINGS",
    "ROW_CODES_EXCLUDED",
    "SCHEMA_VERSION",
    "AuditStore",
    "Fallback",
    "Snapshot",
    "State",
    "checks_fingerprint",
    "default_path",
    "digest_in_place",
    "digest_ivs",
    "identity",
    "keyring_fingerprint",
    "latest_saved",
    "open_store",
    "registry_fingerprint",
    "saved_runs",
    "scope_of",
    "stored_filters",
]
