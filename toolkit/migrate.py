"""Apply drizzle migrations exactly as `drizzle-kit migrate` does, so either tool can run after
the other (DESIGN.md §2).

What drizzle-orm's pg migrator does (drizzle-orm 0.45, `pg-core/dialect.js` + `migrator.js`),
and this module repeats:

- reads `meta/_journal.json`; for each entry, in journal order, the file `<tag>.sql`;
  `hash` = sha256 hex of the file's text, `folderMillis` = the entry's `when`;
- outside any transaction: `CREATE SCHEMA IF NOT EXISTS "drizzle"` and
  `CREATE TABLE IF NOT EXISTS "drizzle"."__drizzle_migrations" (id SERIAL PRIMARY KEY,
  hash text NOT NULL, created_at bigint)`;
- the newest row by `created_at`; every entry whose `when` is greater is applied — its
  statements (split on `--> statement-breakpoint`) then one row (hash, when) — all entries in
  ONE transaction.

One deliberate addition: inside the transaction we lock the journal table and read the newest
row again, so two `toolkit migrate` runs at once cannot both apply a migration. The rows and
the schema are the same as drizzle's.

Migrations run only over the direct connection: a transaction pooler (Supabase's port 6543)
is refused (`resolve_direct_url`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from .errors import ConfigError, UsageError
from .settings import DATABASE_URL, DIRECT_URL, Settings

BREAKPOINT = "--> statement-breakpoint"
MIGRATIONS_SCHEMA = "drizzle"
MIGRATIONS_TABLE = "__drizzle_migrations"
_QUALIFIED_TABLE = f'"{MIGRATIONS_SCHEMA}"."{MIGRATIONS_TABLE}"'

# The app's schema, in drizzle's own format (a copy of what drizzle-kit generated). In the
# repository `toolkit/migrations` is a symlink to the top-level `migrations/`; an installed
# package carries the files themselves (package data).
BUNDLED_FOLDER = Path(__file__).resolve().parent / "migrations"


@dataclasses.dataclass(frozen=True)
class Migration:
    """One journal entry and its SQL file."""

    tag: str
    when: int  # the journal's `when`: recorded as created_at
    hash: str  # sha256 hex of the .sql file, as drizzle computes it
    statements: tuple[str, ...]
    path: Path


@dataclasses.dataclass(frozen=True)
class AppliedRow:
    """A row of drizzle.__drizzle_migrations."""

    id: int
    hash: str
    created_at: int | None


@dataclasses.dataclass(frozen=True)
class Status:
    """Where a database stands against a migration folder."""

    applied: tuple[tuple[Migration | None, AppliedRow], ...]  # None: a row no file matches
    pending: tuple[Migration, ...]  # what `migrate` would apply, in order
    # Unrecorded entries drizzle will never apply because a newer one is already recorded
    # (a journal edited out of order). Reported, never applied.
    skipped: tuple[Migration, ...]
    changed: tuple[Migration, ...]  # recorded (same `when`) but the file's hash differs now
    table_exists: bool

    @property
    def latest(self) -> AppliedRow | None:
        return newest([row for _, row in self.applied])


# ---- reading a folder (pure file work) ----------------------------------------------------

def drizzle_hash(raw: bytes) -> str:
    """drizzle hashes `readFileSync(...).toString()`: the UTF-8 text, re-encoded."""
    return hashlib.sha256(raw.decode("utf-8", errors="replace").encode("utf-8")).hexdigest()


def split_statements(text: str) -> tuple[str, ...]:
    # drizzle executes every chunk; an all-whitespace chunk is a no-op there and an error in
    # psycopg2 ("can't execute an empty query"), so it is dropped.
    return tuple(chunk for chunk in text.split(BREAKPOINT) if chunk.strip())


def read_folder(folder: Path | str) -> list[Migration]:
    """Every journal entry of a drizzle folder, in journal order; errors name the path."""
    folder = Path(folder)
    journal_path = folder / "meta" / "_journal.json"
    if not folder.is_dir():
        raise UsageError(f"migrations folder not found: {folder}", hint="give a drizzle folder with --folder (it holds meta/_journal.json)")
    if not journal_path.is_file():
        raise UsageError(f"no meta/_journal.json in {folder}", hint="is this a drizzle migrations folder (drizzle-kit generate's `out`)?")
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
        entries = journal["entries"]
        if not isinstance(entries, list):
            raise TypeError("entries is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{journal_path} is not a drizzle journal ({exc})") from None
    migrations = []
    for position, entry in enumerate(entries):
        try:
            tag, when = str(entry["tag"]), int(entry["when"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{journal_path}: entry {position} needs a `tag` and a numeric `when`") from None
        path = folder / f"{tag}.sql"
        if not path.is_file():
            raise UsageError(f"{journal_path} lists {tag} but {path} does not exist")
        raw = path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        migrations.append(Migration(tag, when, drizzle_hash(raw), split_statements(text), path))
    return migrations


# ---- deciding (pure) -----------------------------------------------------------------------

def newest(rows: list[AppliedRow]) -> AppliedRow | None:
    """drizzle's `ORDER BY created_at DESC LIMIT 1`: PostgreSQL sorts NULL first there."""
    if not rows:
        return None
    return max(rows, key=lambda r: (r.created_at is None, r.created_at or 0))

def pending_after(migrations: list[Migration], latest_created_at: int | None) -> list[Migration]:
    """drizzle's rule: every entry whose `when` is newer than the newest recorded one."""
    if latest_created_at is None:  # nothing recorded (or a NULL, which drizzle reads as 0)
        return list(migrations)
    return [m for m in migrations if latest_created_at < m.when]


def compare(migrations: list[Migration], rows: list[AppliedRow], *, table_exists: bool = True) -> Status:
    """Match recorded rows with journal entries (by `when`, drizzle's key) and find the rest."""
    by_when = {m.when: m for m in migrations}
    applied = []
    recorded_whens = set()
    changed = []
    for row in sorted(rows, key=lambda r: (r.created_at is None, r.created_at or 0, r.id)):
        migration = by_when.get(row.created_at)
        if migration is None:
            # Maybe recorded under another `when`: match the file by its hash.
            migration = next((m for m in migrations if m.hash == row.hash), None)
        elif migration.hash != row.hash:
            changed.append(migration)
        if migration is not None:
            recorded_whens.add(migration.when)
        applied.append((migration, row))
    latest = newest(rows)
    pending = pending_after(migrations, latest.created_at if latest else None)
    skipped = [m for m in migrations if m.when not in recorded_whens and m not in pending]
    return Status(tuple(applied), tuple(pending), tuple(skipped), tuple(changed), table_exists)


# ---- which URL ---------------------------------------------------------------------------

def resolve_direct_url(settings: Settings) -> tuple[str, str]:
    """(url, variable name) for migrations: DIRECT_URL, else a non-pooler DATABASE_URL."""
    from .db import parse_database_url

    if settings.direct_url:
        parsed = parse_database_url(settings.direct_url, DIRECT_URL)
        if parsed.is_pooler:
            raise ConfigError(
                f"{DIRECT_URL} points at a transaction pooler ({_why_pooler(parsed)}); migrations need the direct connection",
                hint=f"set {DIRECT_URL} to the direct URL (Supabase: Settings → Database → Direct connection, port 5432)",
            )
        return settings.direct_url, DIRECT_URL
    if settings.database_url:
        parsed = parse_database_url(settings.database_url, DATABASE_URL)
        if parsed.is_pooler:
            raise ConfigError(
                f"refusing to migrate through the transaction pooler in {DATABASE_URL} ({_why_pooler(parsed)})",
                hint=f"set {DIRECT_URL} to the direct URL (port 5432) for migrations",
            )
        return settings.database_url, DATABASE_URL
    raise ConfigError(
        f"no database to migrate: set {DIRECT_URL} (or --direct-url) to the direct PostgreSQL URL",
        hint="the embedded demo database needs no migrations",
    )


def _why_pooler(parsed) -> str:
    from .db import POOLER_PORT

    return f"port {POOLER_PORT}" if parsed.port == POOLER_PORT else "pgbouncer=true"


# ---- talking to the database ---------------------------------------------------------------

def read_applied(database) -> tuple[bool, list[AppliedRow]]:
    """(table exists, its rows) — read-only, creates nothing."""
    from .db import read_only, translate_errors

    with translate_errors(database), read_only(database):
        exists = database.execute_sql("SELECT to_regclass(%s) IS NOT NULL", (_QUALIFIED_TABLE,)).fetchone()[0]
        if not exists:
            return False, []
        cursor = database.execute_sql(f"SELECT id, hash, created_at FROM {_QUALIFIED_TABLE} ORDER BY id")
        return True, [AppliedRow(int(i), h, None if c is None else int(c)) for i, h, c in cursor.fetchall()]


def status(database, migrations: list[Migration]) -> Status:
    exists, rows = read_applied(database)
    return compare(migrations, rows, table_exists=exists)


def apply(database, migrations: list[Migration]) -> list[Migration]:
    """Apply what is pending, as drizzle-kit migrate does; return what was applied."""
    from .db import translate_errors

    with translate_errors(database):
        # Outside the transaction, as drizzle does (autocommit statements).
        database.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{MIGRATIONS_SCHEMA}"')
        database.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {_QUALIFIED_TABLE} (\n"
            "\t\t\t\tid SERIAL PRIMARY KEY,\n"
            "\t\t\t\thash text NOT NULL,\n"
            "\t\t\t\tcreated_at bigint\n"
            "\t\t\t)"
        )
        with database.atomic():
            # Serialises concurrent toolkit runs; released at commit (pooler-safe anyway).
            database.execute_sql(f"LOCK TABLE {_QUALIFIED_TABLE} IN SHARE ROW EXCLUSIVE MODE")
            row = database.execute_sql(
                f"SELECT created_at FROM {_QUALIFIED_TABLE} ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
            latest = None if row is None or row[0] is None else int(row[0])
            todo = pending_after(migrations, latest)
            for migration in todo:
                for statement in migration.statements:
                    _execute_verbatim(database, statement)
                database.execute_sql(
                    f'INSERT INTO {_QUALIFIED_TABLE} ("hash", "created_at") VALUES (%s, %s)',
                    (migration.hash, migration.when),
                )
    return todo


def _execute_verbatim(database, statement: str) -> None:
    """Run migration SQL exactly as written, as drizzle's `sql.raw()` does.

    Not `execute_sql`: it passes `()` as parameters, so psycopg2 would read every `%` in
    the SQL (a LIKE pattern, a comment saying 100%) as a placeholder. Peewee's exception
    wrapper still applies, so `translate_errors` sees Peewee's exceptions.
    """
    import peewee

    with getattr(peewee, "__exception_wrapper__"):
        database.cursor().execute(statement)
