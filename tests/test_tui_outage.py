"""The database goes away while the dashboard is open (real PostgreSQL), then comes back.

"Goes away": the database stops accepting connections (ALLOW_CONNECTIONS false) and every
backend on it is terminated from another connection — what a failover or a restart looks
like to a client. Every dashboard call opens its own connection, so the next call fails.
"""

from __future__ import annotations

import contextlib

import psycopg2
import pytest
from test_browse_seed import REGISTRY, keyring, seed
from test_tui import SIZE, run_async, screen_text, settle

from toolkit import db
from toolkit.registry import parse_registry
from toolkit.settings import Settings
from toolkit.tui import DashboardApp, DataSource
from toolkit.tui.screens.installation import InstallationScreen
from toolkit.tui.widgets import DatabaseBanner, PageTable

pytestmark = pytest.mark.postgres


@contextlib.contextmanager
def admin():
    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    connection.autocommit = True
    try:
        yield connection.cursor()
    finally:
        connection.close()


def take_down(dbname: str) -> None:
    with admin() as cursor:
        cursor.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))


def bring_back(dbname: str) -> None:
    with admin() as cursor:
        cursor.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')


@pytest.fixture
def outage(pg_url):
    database = db.open_postgres(pg_url)
    seed(database)
    database.close()
    dbname = pg_url.rsplit("/", 1)[1]
    yield database, dbname
    bring_back(dbname)


def make_app(database, tmp_path):
    source = DataSource(database=database, settings=Settings(access_log=tmp_path / "access.log"),
                        registry=parse_registry(REGISTRY), keyring=keyring(), location="postgres:test")
    return DashboardApp(source)


@run_async
async def test_list_shows_the_outage_and_recovers_on_the_next_action(outage, tmp_path):
    database, dbname = outage
    app = make_app(database, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert table.row_count == 100
        take_down(dbname)
        await pilot.press("n")
        await settle(pilot)
        banner = app.screen.query_one(DatabaseBanner)
        assert app.db_error and banner.display
        assert "Database unavailable" in screen_text(app) and "not currently accepting connections" in app.db_error
        assert app._health_timer is not None  # the periodic health check is armed
        assert str(table.get_row_at(0)[0]) == "1"  # the last good page stays on screen
        await pilot.press("n")  # still down: still a clear message, no crash
        await settle(pilot)
        assert app.db_error
        bring_back(dbname)
        await pilot.press("n")
        await settle(pilot)
        assert app.db_error is None and not banner.display
        assert app._health_timer is None
        assert str(table.get_row_at(0)[0]) == "101"


@run_async
async def test_health_check_brings_the_screen_back_by_itself(outage, tmp_path):
    database, dbname = outage
    app = make_app(database, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_installation(1)
        await settle(pilot)
        take_down(dbname)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert app.db_error and app.screen.query_one(DatabaseBanner).display
        app.check_database()  # what the timer runs every few seconds
        await settle(pilot)
        assert app.db_error  # still down
        bring_back(dbname)
        app.check_database()
        await settle(pilot)
        assert app.db_error is None
        assert isinstance(app.screen, InstallationScreen)
        assert "alice@example.com" in screen_text(app)  # the screen reloaded
        assert any(n.message == "The database is back." for n in app._notifications)
