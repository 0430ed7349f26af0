"""Shared fixtures: real PostgreSQL, PgBouncer and Node, never mocks (DESIGN.md §5).

    empty_pg_url     a fresh, empty PostgreSQL database per test (dropped afterwards)
    pg_url           the same with the app's schema applied from migrations/ (drizzle SQL)
    new_pg_database  factory for more fresh databases in one test: new_pg_database(app_schema=False)
    pgbouncer_url    factory: pgbouncer_url(url) -> that database through PgBouncer in
                     transaction mode on 127.0.0.1:6543 (pool of 2 per database)
    node_bin         path of `node`
    drizzle_kit      path of tests/node/node_modules/.bin/drizzle-kit (runs `npm ci` if missing)

A missing service is started when it can be (PostgreSQL with pg_ctlcluster, PgBouncer with
scripts/start-pgbouncer, drizzle-kit with npm ci); otherwise the test is skipped with one line
saying why — except under CI=true, where it fails: CI must never pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
NODE_DIR = Path(__file__).resolve().parent / "node"

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
PGBOUNCER_PORT = int(os.environ.get("TOOLKIT_PGBOUNCER_PORT", "6543"))
# The user/password PgBouncer's auth file holds (scripts/start-pgbouncer writes it).
PGBOUNCER_USER = "postgres"
PGBOUNCER_PASSWORD = os.environ.get("TOOLKIT_PGBOUNCER_PASSWORD", "toolkit-test-password")
BREAKPOINT = "--> statement-breakpoint"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Skip with one line — or fail under CI=true, where every service must be there."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def pg_dsn(dbname: str = "postgres") -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname} connect_timeout=5"


def pg_url_for(dbname: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def _admin_connection():
    connection = psycopg2.connect(pg_dsn())
    connection.autocommit = True
    return connection


def _postgres_is_up() -> bool:
    try:
        _admin_connection().close()
        return True
    except psycopg2.OperationalError:
        return False


# ---- services, checked once per session (per xdist worker) ------------------------------

@pytest.fixture(scope="session")
def postgres_server() -> str | None:
    """None when PostgreSQL answers on :5432 (started if needed), else why it does not."""
    if _postgres_is_up():
        return None
    if shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "start"],
            capture_output=True, text=True, check=False,
        )
        for _ in range(50):
            if _postgres_is_up():
                return None
            time.sleep(0.1)
    return f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (and pg_ctlcluster could not start it)"


@pytest.fixture(scope="session")
def pgbouncer_server(postgres_server) -> str | None:
    """None when our PgBouncer answers on :6543 (started if needed), else why it does not."""
    if postgres_server:
        return postgres_server
    if _pgbouncer_answers():
        return None
    result = subprocess.run(
        [str(ROOT / "scripts" / "start-pgbouncer")], capture_output=True, text=True, check=False,
        env={**os.environ, "TOOLKIT_PGBOUNCER_PASSWORD": PGBOUNCER_PASSWORD},
    )
    if result.returncode == 0 and _pgbouncer_answers():
        return None
    detail = (result.stderr.strip().splitlines() or ["it did not answer"])[-1]
    return f"PgBouncer is not available on 127.0.0.1:{PGBOUNCER_PORT}: {detail}"


def _pgbouncer_answers() -> bool:
    try:
        connection = psycopg2.connect(
            host=PG_HOST, port=PGBOUNCER_PORT, user=PGBOUNCER_USER, password=PGBOUNCER_PASSWORD,
            dbname="pgbouncer", connect_timeout=3,
        )
    except psycopg2.OperationalError:
        return False
    connection.close()
    return True


# ---- databases --------------------------------------------------------------------------

def create_database() -> str:
    name = f"tk_{secrets.token_hex(6)}"
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return name


def drop_database(name: str) -> None:
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            # FORCE: PgBouncer (or a leaked test connection) may still hold a server connection.
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def migration_statements(folder: Path = MIGRATIONS) -> list[str]:
    """Every statement of every .sql file of a drizzle folder, in file-name order."""
    statements = []
    for path in sorted(folder.glob("*.sql")):
        for chunk in path.read_text().split(BREAKPOINT):
            if chunk.strip():
                statements.append(chunk)
    return statements


def apply_app_schema(dbname: str) -> None:
    """The app's schema, straight from the SQL (independent of toolkit.migrate on purpose)."""
    connection = psycopg2.connect(pg_dsn(dbname))
    try:
        with connection, connection.cursor() as cursor:
            for statement in migration_statements():
                cursor.execute(statement)
    finally:
        connection.close()


@pytest.fixture
def new_pg_database(postgres_server):
    """Factory: new_pg_database(app_schema=False) -> URL of another fresh database.

    For tests that need several databases (e.g. one per tool, to compare them); each is
    dropped when the test ends.
    """
    if postgres_server:
        unavailable(postgres_server)
    created = []

    def make(app_schema: bool = False) -> str:
        name = create_database()
        created.append(name)
        if app_schema:
            apply_app_schema(name)
        return pg_url_for(name)

    yield make
    for name in created:
        drop_database(name)


@pytest.fixture
def empty_pg_url(new_pg_database):
    return new_pg_database()


@pytest.fixture
def pg_url(new_pg_database):
    return new_pg_database(app_schema=True)


@pytest.fixture
def pgbouncer_url(pgbouncer_server):
    """Factory: the same database through PgBouncer (transaction mode, with a password).

    `pgbouncer_url(url, password=...)` gives a URL with another password (wrong-password tests).
    """
    if pgbouncer_server:
        unavailable(pgbouncer_server)

    def make(url: str, *, password: str = PGBOUNCER_PASSWORD, query: str = "") -> str:
        dbname = url.rsplit("/", 1)[1].split("?", 1)[0]
        suffix = f"?{query}" if query else ""
        return (
            f"postgresql://{PGBOUNCER_USER}:{quote(password, safe='')}@{PG_HOST}:{PGBOUNCER_PORT}"
            f"/{dbname}{suffix}"
        )

    return make


# ---- node and drizzle-kit ---------------------------------------------------------------

@pytest.fixture(scope="session")
def node_bin() -> str:
    path = shutil.which("node")
    if path is None:
        unavailable("node is not on PATH (install Node 20)")
    return path


@pytest.fixture(scope="session")
def drizzle_kit(node_bin) -> Path:
    """drizzle-kit from tests/node (package-lock.json pins it); `npm ci` when not installed."""
    binary = NODE_DIR / "node_modules" / ".bin" / "drizzle-kit"
    if not binary.exists():
        with _file_lock(Path("/tmp") / "toolkit-npm-ci.lock"):  # parallel workers: one npm ci
            if not binary.exists():
                _npm_ci(binary)
    return binary


def _npm_ci(binary: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not on PATH, so drizzle-kit cannot be installed")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True,
        check=False,
    )
    if result.returncode != 0 or not binary.exists():
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        unavailable(f"`npm ci` in tests/node failed, so drizzle-kit is missing: {detail}")


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- the command line, as a user runs it ------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory):
    """Saved audits of the tests never land in the user's state directory (subprocesses that
    inherit the environment included)."""
    os.environ.setdefault("TOOLKIT_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def run_cli(tmp_path):
    """run_cli(*args, env={...}, input=None) -> CompletedProcess of `python -m toolkit ARGS`.

    Runs in a subprocess from an empty working directory (no stray .env files), with none of
    the toolkit's variables inherited from the caller's environment and a private data dir.
    """
    import sys

    from toolkit.settings import ALL_VARIABLES

    def run(*args, env=None, input=None, cwd=None):
        base = {k: v for k, v in os.environ.items() if k not in ALL_VARIABLES}
        base.setdefault("TOOLKIT_DATA_DIR", str(tmp_path / "data"))
        base.setdefault("TOOLKIT_STATE_DIR", str(tmp_path / "state"))  # saved audits
        base.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
            env=base, input=input, cwd=cwd or tmp_path, timeout=120,
        )

    return run


# ---- the embedded demo database ------------------------------------------------------------

@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """The demo database built once per session; tests get their own copy."""
    from toolkit import demo
    from toolkit.settings import Settings

    directory = tmp_path_factory.mktemp("demo-template")
    return demo.ensure_demo_database(Settings(data_dir=directory))


@pytest.fixture
def demo_settings(demo_template, tmp_path):
    """Settings for a private copy of the demo database (writes stay in this test)."""
    from toolkit.settings import Settings

    shutil.copyfile(demo_template, tmp_path / demo_template.name)
    return Settings(data_dir=tmp_path, access_log=tmp_path / "access.log", state_dir=tmp_path / "state")


# ---- which services ran: marks from fixtures, and a line in the summary -----------------

_SERVICE_FIXTURES = {
    "postgres": ("empty_pg_url", "pg_url", "new_pg_database", "postgres_server"),
    "pgbouncer": ("pgbouncer_url", "pgbouncer_server"),
    "node": ("node_bin", "drizzle_kit"),
}


def pytest_collection_modifyitems(config, items):
    """Mark every test by the services its fixtures use (`-m postgres`, `-m "not node"`)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _SERVICE_FIXTURES.items():
            if names.intersection(fixtures) and not item.get_closest_marker(marker):
                item.add_marker(marker)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per real service: how many of its tests passed, failed or were skipped.

    CI's log then shows at a glance that the PostgreSQL, PgBouncer and drizzle tests ran.
    """
    counts = {marker: {} for marker in _SERVICE_FIXTURES}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            keywords = getattr(report, "keywords", {})
            if report.when != "call" and outcome == "passed":
                continue
            for marker in counts:
                if marker in keywords:
                    counts[marker][outcome] = counts[marker].get(outcome, 0) + 1
    if not any(counts.values()):
        return
    terminalreporter.section("real services")
    for marker, tally in counts.items():
        text = ", ".join(f"{n} {outcome}" for outcome, n in tally.items()) or "no tests selected"
        terminalreporter.write_line(f"{marker:<10} {text}")
