"""Opening the database: PostgreSQL (directly or through the transaction pooler) or SQLite.

Pooler rules (DESIGN.md §2): nothing here issues a session `SET`, a `WITH HOLD` cursor, a
`PREPARE` or a temp table. psycopg2 sends plain (unprepared) statements, so the default
Peewee connection is pooler-safe as long as callers keep to `read_only()` and `atomic()`.
Peewee keeps one connection per thread: each thread opens and closes its own.

Bounded waits (DESIGN.md §4.6):
- every connection gets libpq's `connect_timeout` (TOOLKIT_CONNECT_TIMEOUT) plus TCP
  keepalives and `tcp_user_timeout`, so a vanished peer is noticed; all client-side
  parameters, nothing the pooler sees (startup `options=-c` might be refused);
- `read_only()` transactions run `SET LOCAL statement_timeout` (TOOLKIT_STATEMENT_TIMEOUT;
  transaction-scoped, pooler-safe). The audit's COPY is exempt: it streams the whole table for
  as long as that takes (`SET LOCAL statement_timeout = 0` just before it);
- a server that accepts the connection and then never answers is invisible to keepalives
  (its kernel acknowledges everything): `interruptible_waits()` installs a psycopg2 wait
  callback that waits in `select()` — Ctrl-C ends it at once — and gives up when no answer
  comes within connect_timeout (connecting) or statement_timeout + connect_timeout (any
  statement; also what ends a paused PgBouncer before its 120 s query_wait_timeout).
  psycopg2 refuses COPY while a wait callback is set, so our cursors lift it for the COPY
  (blocking libpq then; rows arriving still let Ctrl-C in between them). The callback is
  process-wide: only a process with one thread doing database work may install it (the CLI
  does; the dashboard's worker threads and notebooks run blocking, bounded by the timeouts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import select
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import psycopg2.extensions
import psycopg2.extras

from ..errors import ConfigError, DatabaseError
from ..settings import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
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


def bounded_params(connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> dict:
    """libpq parameters that bound waiting on the network (client-side: the pooler never
    sees them). A value written in the URL wins."""
    return {
        "connect_timeout": str(connect_timeout),
        # A peer that vanished (cable, NAT, failover) is dropped after ~idle + interval*count.
        "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3",
        # ...and data we sent that stays unacknowledged this long ends the connection.
        "tcp_user_timeout": str(connect_timeout * 1000),
    }


class _Cursor(psycopg2.extensions.cursor):
    """COPY with the wait callback lifted (psycopg2 refuses COPY while one is set), and free
    of the read transaction's statement_timeout: the audit streams a whole table."""

    def copy_expert(self, sql, file, size=8192):
        if self.connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
            super().execute("SET LOCAL statement_timeout = 0")
        with _blocking_waits():
            return super().copy_expert(sql, file, size)


class ToolkitPostgres(peewee.PostgresqlDatabase):
    """PostgreSQL with the URL it came from, so workers can open their own connections."""

    def __init__(self, url: DatabaseURL, *, statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT, **kwargs):
        self.url = url
        self.statement_timeout = statement_timeout
        super().__init__(url.dbname, **url.connect_kwargs(), cursor_factory=_Cursor, **kwargs)


def open_postgres(url: str, variable: str = "DATABASE_URL", *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
                  statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT) -> ToolkitPostgres:
    # psycopg2 parses jsonb itself: make a config nested deeper than Python's recursion
    # limit (valid jsonb) read as Unreadable instead of raising mid-page.
    psycopg2.extras.register_default_jsonb(globally=True, loads=decode_config)
    parsed = parse_database_url(url, variable)
    parsed = dataclasses.replace(parsed, params={**bounded_params(connect_timeout), **parsed.params})
    return ToolkitPostgres(parsed, statement_timeout=statement_timeout)


# ---- waits that Ctrl-C and a deadline can end ---------------------------------------------

class NoAnswer(psycopg2.OperationalError):
    """The server did not answer in time (psycopg2's class, so Peewee and translate_errors
    treat it as any other OperationalError)."""


_waits = {"answer_timeout": None}  # seconds a statement may wait for an answer; None = no bound


def _connecting(conn) -> bool:
    return conn.status not in (psycopg2.extensions.STATUS_READY, psycopg2.extensions.STATUS_BEGIN,
                               psycopg2.extensions.STATUS_PREPARED)


@functools.lru_cache(maxsize=64)
def _connect_timeout_of(dsn: str) -> float:
    value = psycopg2.extensions.parse_dsn(dsn).get("connect_timeout")
    try:
        return max(2.0, float(value))  # libpq's own floor is 2 s
    except (TypeError, ValueError):
        return float(DEFAULT_CONNECT_TIMEOUT)


def wait_bounded(conn) -> None:
    """psycopg2's wait callback: poll, then select() with a deadline. A KeyboardInterrupt
    from select() propagates; psycopg2 then closes the connection, so the server rolls
    back whatever transaction was open — nothing half-written."""
    connecting = _connecting(conn)
    limit = _connect_timeout_of(conn.dsn) if connecting else _waits["answer_timeout"]
    poll = conn.poll
    while True:
        state = poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        fd = conn.fileno()
        if state == psycopg2.extensions.POLL_READ:
            ready = select.select([fd], [], [], limit)
        elif state == psycopg2.extensions.POLL_WRITE:
            ready = select.select([], [fd], [], limit)
        else:  # pragma: no cover — psycopg2 never returns another state
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        if not any(ready):
            if connecting:
                raise NoAnswer(f"timeout expired: no answer to the connection within {limit:g} s")
            raise NoAnswer(f"timeout expired: the server did not answer within {limit:g} s")


def install_interruptible_waits(*, statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT,
                                connect_timeout: int = DEFAULT_CONNECT_TIMEOUT):
    """Make every psycopg2 wait in this process interruptible and bounded (see module doc).
    Returns the previous callback, for `restore_waits`."""
    _waits["answer_timeout"] = float(statement_timeout + connect_timeout) if statement_timeout else None
    previous = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(wait_bounded)
    return previous


def restore_waits(previous=None) -> None:
    psycopg2.extensions.set_wait_callback(previous)


@contextlib.contextmanager
def _blocking_waits():
    """Lift our wait callback for one COPY (only ever installed where one thread talks to
    the database, so no other thread can be mid-wait)."""
    callback = psycopg2.extensions.get_wait_callback()
    if callback is not wait_bounded:
        yield
        return
    psycopg2.extensions.set_wait_callback(None)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)


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
    """A read-only transaction: pooler-safe (`SET TRANSACTION` and `SET LOCAL` are
    transaction-scoped), with the database's statement timeout."""
    with database.atomic():
        if is_postgres(database):
            timeout = getattr(getattr(database, "obj", database), "statement_timeout", 0)
            # One round trip for both.
            limit = f"; SET LOCAL statement_timeout = '{int(timeout)}s'" if timeout else ""
            database.execute_sql("SET TRANSACTION READ ONLY" + limit)
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
    """Turn driver exceptions into a DatabaseError with one line that says what to do: Peewee's,
    and psycopg2's own where a cursor is used directly (COPY, the audit's id pass)."""
    try:
        yield
    except (peewee.OperationalError, psycopg2.OperationalError) as exc:
        raise DatabaseError(_first_line(exc), hint=_hint_for(exc, database)) from None
    except (peewee.InterfaceError, psycopg2.InterfaceError) as exc:
        raise DatabaseError(f"database connection lost: {_first_line(exc)}", hint="check the database and run the command again") from None
    except (peewee.ProgrammingError, psycopg2.ProgrammingError) as exc:
        raise DatabaseError(_first_line(exc), hint="run `toolkit schema check` to compare the schema with what the toolkit expects") from None
    except (peewee.InternalError, psycopg2.InternalError) as exc:
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
    if "did not answer within" in message:
        return (f"{where} accepted the connection but did not answer (a paused pooler or an overloaded "
                "server?); TOOLKIT_STATEMENT_TIMEOUT and TOOLKIT_CONNECT_TIMEOUT set how long to wait")
    if "Connection refused" in message or "could not connect" in message or "timeout" in message:
        return f"is the server running and reachable at {where}?"
    return f"while talking to {where}"
