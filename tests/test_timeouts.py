"""Nothing hangs: a server that accepts connections and never answers, a paused PgBouncer,
Ctrl-C at any moment (DESIGN.md §4.6).

The silent server is real: a socket on 127.0.0.1 that accepts and never sends a byte (its
kernel acknowledges everything, so TCP keepalives alone would never notice). Every check runs
the real command in a subprocess; the subprocess timeout is only a guard, not an assertion.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg2
import pytest

from toolkit import db, demo
from toolkit.settings import ALL_VARIABLES, load_settings

from conftest import PGBOUNCER_PASSWORD, PGBOUNCER_USER, ROOT, unavailable

KEY = "ab" * 32


class SilentServer:
    """Accepts every connection, reads nothing, sends nothing."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.accepted = threading.Event()
        self._held = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self._held.append(connection)
            self.accepted.set()

    @property
    def url(self) -> str:
        return f"postgresql://app@127.0.0.1:{self.port}/app"

    def close(self):
        self.socket.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def toolkit_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ALL_VARIABLES}
    env.update(PYTHONPATH=str(ROOT), TOOLKIT_DATA_DIR=str(tmp_path / "data"), ENCRYPTION_KEY=KEY,
               TOOLKIT_REGISTRY=str(demo.DEMO_REGISTRY_PATH), TOOLKIT_ACCESS_LOG=str(tmp_path / "access.log"))
    env.update(extra)
    return env


def toolkit(*args) -> list[str]:
    return [sys.executable, "-m", "toolkit", *args]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# ---- settings ---------------------------------------------------------------------------

def test_timeouts_are_settings_with_env_twins(tmp_path):
    settings = load_settings(cwd=tmp_path, environ={})
    assert (settings.connect_timeout, settings.statement_timeout) == (10, 30)
    settings = load_settings(cwd=tmp_path, environ={"TOOLKIT_CONNECT_TIMEOUT": "3", "TOOLKIT_STATEMENT_TIMEOUT": "0"})
    assert (settings.connect_timeout, settings.statement_timeout) == (3, 0)


@pytest.mark.parametrize("variable, value", [("TOOLKIT_CONNECT_TIMEOUT", "0"), ("TOOLKIT_CONNECT_TIMEOUT", "ten"),
                                              ("TOOLKIT_STATEMENT_TIMEOUT", "-1")])
def test_bad_timeouts_name_the_variable(tmp_path, variable, value):
    from toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match=variable):
        load_settings(cwd=tmp_path, environ={variable: value})


def test_connections_carry_client_side_bounds_only():
    database = db.open_postgres("postgresql://u@127.0.0.1:6543/app", connect_timeout=7)
    params = psycopg2.extensions.parse_dsn(database.url.dsn())
    assert params["connect_timeout"] == "7" and params["tcp_user_timeout"] == "7000"
    assert params["keepalives"] == "1"
    assert "options" not in params  # a pooler may refuse startup options
    # A value written in the URL wins.
    database = db.open_postgres("postgresql://u@127.0.0.1:6543/app?connect_timeout=3")
    assert psycopg2.extensions.parse_dsn(database.url.dsn())["connect_timeout"] == "3"


@pytest.mark.postgres
def test_read_only_transactions_get_a_local_statement_timeout(pg_url):
    database = db.open_postgres(pg_url, statement_timeout=7)
    with db.read_only(database):
        assert database.execute_sql("SHOW statement_timeout").fetchone()[0] == "7s"
    # Transaction-scoped: the session (shared through a pooler) keeps its own setting.
    assert database.execute_sql("SHOW statement_timeout").fetchone()[0] == "0"
    database.close()


@pytest.mark.postgres
def test_a_read_that_runs_too_long_is_ended_by_the_server(pg_url):
    database = db.open_postgres(pg_url, statement_timeout=1)
    from toolkit.errors import DatabaseError

    with pytest.raises(DatabaseError, match="statement timeout"):
        with db.translate_errors(database), db.read_only(database):
            database.execute_sql("SELECT pg_sleep(5)")
    database.close()


@pytest.mark.postgres
def test_copy_is_exempt_from_the_statement_timeout(pg_url):
    """The audit's COPY streams a whole table for as long as that takes."""
    database = db.open_postgres(pg_url, statement_timeout=1)
    import io

    sink = io.BytesIO()
    previous = db.connection.install_interruptible_waits(statement_timeout=1, connect_timeout=2)
    try:
        with db.read_only(database):
            database.cursor().copy_expert("COPY (SELECT pg_sleep(1.5), 'done') TO STDOUT", sink)
            # Still under the wait callback, still bounded, after the COPY.
            assert psycopg2.extensions.get_wait_callback() is db.connection.wait_bounded
    finally:
        db.connection.restore_waits(previous)
        database.close()
    assert sink.getvalue().endswith(b"\tdone\n")


# ---- a server that accepts and never answers -------------------------------------------------

def test_show_against_a_silent_server_ends_with_one_line(silent_server, tmp_path):
    """The default connect timeout (10 s) ends it: no TOOLKIT_CONNECT_TIMEOUT in the env."""
    result = subprocess.run(toolkit("show", "1"), env=toolkit_env(tmp_path, DATABASE_URL=silent_server.url),
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert line.startswith("error: ") and "timeout" in line and f"127.0.0.1:{silent_server.port}" in line
    assert result.stdout == ""
    assert silent_server.accepted.is_set()


def test_the_dashboard_precheck_against_a_silent_server_ends(silent_server, tmp_path):
    result = subprocess.run(toolkit("dashboard"),
                            env=toolkit_env(tmp_path, DATABASE_URL=silent_server.url, TOOLKIT_CONNECT_TIMEOUT="2"),
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 3
    assert "timeout" in one_line(result.stderr)


@pytest.mark.parametrize("command", [("audit",), ("show", "1"), ("keys", "status"), ("keys", "rotate", "--yes")])
def test_ctrl_c_ends_a_command_waiting_on_a_silent_server(silent_server, tmp_path, command):
    # A connect timeout far beyond the guard: only Ctrl-C can end it in time.
    env = toolkit_env(tmp_path, DATABASE_URL=silent_server.url, TOOLKIT_CONNECT_TIMEOUT="600",
                      ENCRYPTION_KEY_PREVIOUS="cd" * 32)
    process = subprocess.Popen(toolkit(*command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert silent_server.accepted.wait(timeout=30), "the command never connected"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=3)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert one_line(err) == "interrupted"
    assert "Traceback" not in err and out == ""


# ---- a paused PgBouncer ---------------------------------------------------------------------

@pytest.fixture
def own_pgbouncer(pgbouncer_server):
    """A PgBouncer of our own on another port (pausing the shared one would stall other tests),
    started by the same script the suite uses."""
    if pgbouncer_server:
        unavailable(pgbouncer_server)
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = Path(tempfile.mkdtemp(prefix="toolkit-pgbouncer-paused-"))
    directory.chmod(0o755)  # it runs as postgres
    env = {**os.environ, "TOOLKIT_PGBOUNCER_PORT": str(port), "TOOLKIT_PGBOUNCER_DIR": str(directory),
           "TOOLKIT_PGBOUNCER_PASSWORD": PGBOUNCER_PASSWORD}
    started = subprocess.run([str(ROOT / "scripts" / "start-pgbouncer")], env=env, capture_output=True, text=True,
                             timeout=60)
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        unavailable(f"could not start a second PgBouncer: {started.stderr.strip()}")
    admin = psycopg2.connect(host="127.0.0.1", port=port, user=PGBOUNCER_USER, password=PGBOUNCER_PASSWORD,
                             dbname="pgbouncer", connect_timeout=5)
    admin.autocommit = True
    try:
        yield port, admin
    finally:
        pid = int((directory / "pgbouncer.pid").read_text())
        admin.close()
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.postgres
def test_a_paused_pooler_gives_a_clear_error_in_bounded_time(own_pgbouncer, pg_url, tmp_path):
    port, admin = own_pgbouncer
    dbname = pg_url.rsplit("/", 1)[1]
    url = f"postgresql://{PGBOUNCER_USER}:{PGBOUNCER_PASSWORD}@127.0.0.1:{port}/{dbname}"
    env = toolkit_env(tmp_path, DATABASE_URL=url, TOOLKIT_STATEMENT_TIMEOUT="2", TOOLKIT_CONNECT_TIMEOUT="2")
    # Through the running pooler: the installation does not exist, a normal answer.
    result = subprocess.run(toolkit("show", "1"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "does not exist" in result.stderr, result.stderr
    admin.cursor().execute("PAUSE")
    try:
        result = subprocess.run(toolkit("show", "1"), env=env, capture_output=True, text=True, timeout=60)
    finally:
        admin.cursor().execute("RESUME")
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert "did not answer within 4 s" in line and "paused pooler" in line, line


# ---- the dashboard --------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_the_dashboard_counts_the_wait_and_quits_on_q(silent_server, tmp_path):
    import asyncio

    from test_browse_seed import REGISTRY
    from test_tui import SIZE

    from toolkit.registry import parse_registry
    from toolkit.settings import Settings
    from toolkit.tui import DashboardApp, DataSource
    from toolkit.tui.widgets import DatabaseBanner

    # Far beyond the test's guard: the worker threads stay stuck in connect the whole time.
    database = db.open_postgres(silent_server.url, connect_timeout=600)
    source = DataSource(database=database, settings=Settings(access_log=tmp_path / "access.log"),
                        registry=parse_registry(REGISTRY), keyring=None, location="silent")
    app = DashboardApp(source, waiting_after_seconds=0.2)

    async def banner_says(pilot, text):
        banner = app.screen.query_one(DatabaseBanner)
        while not (banner.display and text in str(banner.render())):
            await pilot.pause(0.05)  # polls for the condition; pytest-timeout is the guard
        return str(banner.render())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            assert silent_server.accepted.wait(timeout=30)
            first = await banner_says(pilot, "Waiting for the database (")
            assert "q quits" in first and app.db_error is None
            await banner_says(pilot, "Waiting for the database (1 s)")
            await banner_says(pilot, "Waiting for the database (2 s)")  # it counts
            assert len(app.db_calls) >= 1  # still stuck
            await pilot.press("q")
        return app.return_code

    assert asyncio.run(scenario()) == 0
    assert not app.is_running


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [("show", "1"), ("audit",)])
def test_ctrl_c_ends_a_command_waiting_on_a_query(pg_url, tmp_path, command):
    """The server answers, but the query waits on a lock another session holds."""
    import time

    dbname = pg_url.rsplit("/", 1)[1]
    holder = psycopg2.connect(pg_url)
    holder.cursor().execute("LOCK TABLE app_installations IN ACCESS EXCLUSIVE MODE")
    watcher = psycopg2.connect(pg_url)
    watcher.autocommit = True
    process = subprocess.Popen(toolkit(*command), env=toolkit_env(tmp_path, DATABASE_URL=pg_url),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with watcher.cursor() as cursor:
            while True:  # until the command's backend waits on the lock (pytest-timeout guards)
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                               (dbname,))
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=3)
    finally:
        process.kill()
        process.wait()
        holder.close()
        watcher.close()
    assert process.returncode == 130, err
    assert one_line(err) == "interrupted" and out == ""
