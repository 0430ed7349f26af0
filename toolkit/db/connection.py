"""Opening the database: PostgreSQL (directly or through the transaction pooler) or SQLite.

Pooler rules (DESIGN.md §2): nothing here issues a session `SET`, a `WITH HOLD` cursor, a
`PREPARE` or a temp table. psycopg2 sends plain (unprepared) statements, so the default
Peewee connection is pooler-safe as long as callers keep to `read_only()` and `atomic()`.
Peewee keeps one connection per thread: each thread opens and closes its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import psycopg2.extras

from ..errors import ConfigError, DatabaseError
from .json_values import decode_config
from .models import MODELS, database_proxy

POOLER_PORT = 6543
_POSTGRES_SCHEMES = ("postgres", "postgresql")
# Query parameters some tools put in a Supabase URL that libpq would refuse.
_NON_LIBPQ_PARAMS = ("pgbouncer", "connection_limit", "pool_timeout", "schema")


@dataclasses.dataclass(frozen=True)
class DatabaseURL:
    """A parsed PostgreSQL URL; `repr` never shows the password."""

    host: str
    port: int
    dbname: str
    user: str | None
    password: str | None = dataclasses.field(repr=False)
    params: dict = dataclasses.field(default_factory=dict)
    is_pooler: bool = False

    def connect_kwargs(self) -> dict:
        kwargs = {"host": self.host, "port": self.port, "user": self.user, "password": self.password}
        kwargs.update(self.params)
        return {k: v for k, v in kwargs.items() if v is not None}

    def dsn(self) -> str:
        """A libpq keyword string (for psycopg2 direct use, e.g. COPY in worker processes)."""
        from psycopg2.extensions import make_dsn

        return make_dsn(dbname=self.dbname, **self.connect_kwargs())

    def redacted(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.host}:{self.port}/{self.dbname}"


def parse_database_url(url: str, variable: str = "DATABASE_URL") -> DatabaseURL:
    """Parse and check a PostgreSQL URL; errors name `variable` and never echo the password."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        # urllib's message can quote part of the password ("could not cast 'Sup3rS'"): never echo it.
        raise ConfigError(
            f"{variable} is not a valid URL (bad host or port)",
            hint="percent-encode / ? # @ : in the password; expected postgresql://user:password@host:port/dbname",
        ) from None
    if parts.scheme not in _POSTGRES_SCHEMES:
        raise ConfigError(
            f"{variable} must start with postgresql:// (got {parts.scheme or 'no scheme'}://)",
            hint="expected postgresql://user:password@host:port/dbname",
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname:
        raise ConfigError(f"{variable} needs a host and a database name", hint="expected postgresql://user:password@host:port/dbname")
    query = dict(parse_qsl(parts.query))
    pooler_flag = query.get("pgbouncer", "").lower() == "true"
    params = {k: v for k, v in query.items() if k not in _NON_LIBPQ_PARAMS}
    is_pooler = pooler_flag or port == POOLER_PORT
    if is_pooler and "options" in params:
        raise ConfigError(
            f"{variable}: the transaction pooler refuses startup options",
            hint="remove options= from the URL (the toolkit needs no session settings)",
        )
    return DatabaseURL(
        host=parts.hostname,
        port=port,
        dbname=dbname,
        user=unquote(parts.username) if parts.username else None,
        # Peewee's db_url does not URL-decode passwords (DESIGN.md §6); we do.
        password=unquote(parts.password) if parts.password is not None else None,
        params=params,
        is_pooler=is_pooler,
    )


class ToolkitPostgres(peewee.PostgresqlDatabase):
    """PostgreSQL with the URL it came from, so workers can open their own connections."""

    def __init__(self, url: DatabaseURL, **kwargs):
        self.url = url
        super().__init__(url.dbname, **url.connect_kwargs(), **kwargs)


def open_postgres(url: str, variable: str = "DATABASE_URL") -> ToolkitPostgres:
    # psycopg2 parses jsonb itself: make a config nested deeper than Python's recursion
    # limit (valid jsonb) read as Unreadable instead of raising mid-page.
    psycopg2.extras.register_default_jsonb(globally=True, loads=decode_config)
    return ToolkitPostgres(parse_database_url(url, variable))


def open_sqlite(path) -> peewee.SqliteDatabase:
    # WAL lets the dashboard's worker threads read while another writes.
    return peewee.SqliteDatabase(str(path), pragmas={"foreign_keys": 1, "journal_mode": "wal"})


def bind(database) -> None:
    """Make the models use `database` (the process-wide default)."""
    database_proxy.initialize(database)


def is_postgres(database) -> bool:
    database = getattr(database, "obj", database)
    return isinstance(database, peewee.PostgresqlDatabase)


@contextlib.contextmanager
def read_only(database):
    """A read-only transaction: pooler-safe (`SET TRANSACTION` is transaction-scoped)."""
    with database.atomic():
        if is_postgres(database):
            database.execute_sql("SET TRANSACTION READ ONLY")
        yield database


def check_connection(database) -> None:
    """Connect once, turning driver errors into one-line DatabaseErrors."""
    with translate_errors(database):
        database.connect(reuse_if_open=True)
        database.execute_sql("SELECT 1")


def describe(database) -> str:
    database = getattr(database, "obj", database)
    if isinstance(database, ToolkitPostgres):
        return database.url.redacted()
    return f"sqlite:{database.database}"


@contextlib.contextmanager
def translate_errors(database=None):
    """Turn driver exceptions into a DatabaseError with one line that says what to do."""
    try:
        yield
    except peewee.OperationalError as exc:
        raise DatabaseError(_first_line(exc), hint=_hint_for(exc, database)) from None
    except peewee.InterfaceError as exc:
        raise DatabaseError(f"database connection lost: {_first_line(exc)}", hint="check the database and run the command again") from None
    except peewee.ProgrammingError as exc:
        raise DatabaseError(_first_line(exc), hint="run `toolkit schema check` to compare the schema with what the toolkit expects") from None
    except peewee.InternalError as exc:
        message = _first_line(exc)
        if "read-only" in message:
            raise DatabaseError(message, hint="this role or database refuses writes; use a role that may write") from None
        raise DatabaseError(message) from None


def _first_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _hint_for(exc, database) -> str:
    message = str(exc)
    where = describe(database) if database is not None else "the database"
    if "password authentication failed" in message or "SASL authentication failed" in message:
        return "check the user and password in DATABASE_URL"
    if "does not exist" in message:
        return f"check the database name in the URL ({where})"
    if "Connection refused" in message or "could not connect" in message or "timeout" in message:
        return f"is the server running and reachable at {where}?"
    return f"while talking to {where}"
