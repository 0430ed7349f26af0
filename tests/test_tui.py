"""The dashboard driven by Textual's Pilot on a seeded SQLite database: every screen and action.

Tests wait on workers (`app.workers.wait_for_complete()` + `pilot.pause()`), never on time.
"""

from __future__ import annotations

import asyncio
import functools

import pytest
from rich.text import Text
from test_browse_seed import GENERATED, MARKUP_VALUE, SECRET_SLACK, SECRET_STRIPE, keyring, seed, sqlite_database

from toolkit.crypto import mask
from toolkit.crypto.access_log import read_entries
from toolkit.registry import parse_registry
from toolkit.settings import Settings
from toolkit.tui import DashboardApp, DataSource
from toolkit.tui.screens.installation import InstallationScreen
from toolkit.tui.screens.installations import InstallationsScreen
from toolkit.tui.screens.modals import ConfirmScreen
from toolkit.tui.widgets import PageTable

from test_browse_seed import REGISTRY

SIZE = (130, 40)


def run_async(test):
    """Run an async test on a fresh event loop (no pytest-asyncio in the project)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


@pytest.fixture
def seeded(tmp_path):
    database = sqlite_database(tmp_path / "tui.sqlite3")
    seed(database)
    database.close()
    return database


@pytest.fixture
def settings(tmp_path):
    return Settings(access_log=tmp_path / "access.log", state_dir=tmp_path / "state")


def make_app(database, settings, *, write=False, is_demo=False, ring="default", **options):
    source = DataSource(
        database=database, settings=settings, registry=parse_registry(REGISTRY),
        keyring=keyring() if ring == "default" else ring, is_demo=is_demo, location="sqlite:test",
    )
    return DashboardApp(source, write=write, **options)


async def settle(pilot):
    """Let every worker finish and every message it posted be handled."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def config_value(app, key: str) -> str:
    """The Value cell of `key` in the installation screen's config table, as text."""
    return str(app.screen.query_one("#config").get_row(key)[3])


def table_text(table) -> str:
    return "\n".join(" | ".join(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count))


def screen_text(app) -> str:
    """What the terminal shows, as plain text (the SVG minus its markup)."""
    return _svg_text(app.export_screenshot())


def _svg_text(svg: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


@run_async
async def test_opens_on_the_installations_list_with_counts(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, InstallationsScreen)
        table = app.screen.query_one(PageTable)
        assert table.row_count == 100
        first = table.get_row_at(0)
        assert [str(c) for c in first[:4]] == ["1", "alice@example.com", "Stripe", "configured"]
        assert str(first[5]) == "3/3"  # fields set (after the findings column)
        shown = screen_text(app)
        assert f"{4 + GENERATED} installations" in shown
        assert "read-only" in shown and "DEMO" not in shown


@run_async
async def test_demo_marker(seeded, settings):
    app = make_app(seeded, settings, is_demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#demo-marker").display
        assert "DEMO" in screen_text(app)


@run_async
async def test_paging_next_previous_last(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        await pilot.press("n")
        await settle(pilot)
        assert str(table.get_row_at(0)[0]) == "101"
        await pilot.press("p")
        await settle(pilot)
        assert str(table.get_row_at(0)[0]) == "1"
        await pilot.press("G")
        await settle(pilot)
        assert str(table.get_row_at(table.row_count - 1)[0]) == str(4 + GENERATED)
        await pilot.press("g")
        await settle(pilot)
        assert str(table.get_row_at(0)[0]) == "1"


@run_async
async def test_filter_line_filters_by_app_status_and_email(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await pilot.press(*"app:Stripe status:configured alice")
        await pilot.press("enter")
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "1"
        assert table.has_focus
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        assert table.row_count == 100


@run_async
async def test_bad_filter_is_a_message_not_a_crash(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"status:broken", "enter")
        await settle(pilot)
        assert any("status must be one of" in n.message for n in app._notifications)
        assert app.screen.query_one(PageTable).row_count == 100


@run_async
async def test_sort_by_clicking_a_header_and_by_key(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(PageTable)
        await pilot.click(PageTable, offset=(14, 0))  # the "User" header
        await settle(pilot)
        assert screen.sort.column == "email" and not screen.sort.descending
        emails = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert emails == sorted(emails)
        await pilot.press("S")
        await settle(pilot)
        assert screen.sort.descending
        await pilot.press("s")
        await settle(pilot)
        assert screen.sort.column == "app"


@run_async
async def test_markup_in_data_renders_literally(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        cell = table.get_row_at(4)[1]
        assert isinstance(cell, Text) and cell.plain == "[red]mallory[/]@example.com"
        assert "[red]mallory[/]@example.com" in screen_text(app)
        app.open_installation(2)
        await settle(pilot)
        assert MARKUP_VALUE in screen_text(app)


@run_async
async def test_enter_opens_an_installation_and_escape_goes_back(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen) and app.screen.installation_id == 2
        shown = screen_text(app)
        assert "alice@example.com" in shown and "Slack" in shown and "Bot token" in shown
        assert "encrypted · current key" in shown
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InstallationsScreen)


@run_async
async def test_no_plaintext_secret_anywhere_before_a_reveal(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for installation_id in (1, 2):
            app.open_installation(installation_id)
            await settle(pilot)
            svg = app.export_screenshot()
            assert SECRET_STRIPE not in svg and SECRET_SLACK not in svg
            assert "ALICE_SECRET" not in screen_text(app)
            await pilot.press("escape")
            await settle(pilot)


async def open_details(app, pilot, installation_id):
    """The dashboard settled, then installation `installation_id` open on its details screen."""
    await settle(pilot)
    app.open_installation(installation_id)
    await settle(pilot)


async def reveal_first_secret(app, pilot):
    app.open_installation(1)
    await settle(pilot)
    await pilot.press("v")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmScreen)
    assert "Reveal Secret key (apiKey) of installation 1? This is logged." in screen_text(app)
    await pilot.press("y")
    await settle(pilot)


@run_async
async def test_reveal_asks_logs_shows_and_forgets_on_leaving(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await reveal_first_secret(app, pilot)
        revealed = app.screen.revealed
        assert revealed.secret("apiKey").reveal() == SECRET_STRIPE
        assert SECRET_STRIPE in config_value(app, "apiKey")  # in its row, instead of the mask
        [entry] = read_entries(settings)
        assert entry["installation_id"] == 1 and entry["field"] == "apiKey" and entry["via"] == "dashboard"
        assert entry["key_fingerprint"] == keyring().current.fingerprint
        assert SECRET_STRIPE not in (settings.access_log.read_text())
        await pilot.press("escape")
        await settle(pilot)
        assert revealed.keys == []
        app.open_installation(1)
        await settle(pilot)
        assert app.screen.revealed.keys == [] and SECRET_STRIPE not in config_value(app, "apiKey")


@run_async
async def test_declining_the_reveal_shows_and_logs_nothing(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await open_details(app, pilot, 1)
        await pilot.press("v", "n")
        await settle(pilot)
        assert app.screen.revealed.keys == []
        assert read_entries(settings) == []


@run_async
async def test_switching_screens_forgets_revealed_values(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await reveal_first_secret(app, pilot)
        screen = app.screen
        await pilot.press("u")
        await settle(pilot)
        assert screen.revealed.keys == []


@run_async
async def test_screenshots_mask_revealed_values_unless_asked(seeded, settings, tmp_path):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await reveal_first_secret(app, pilot)
        svg = app.export_screenshot()
        assert SECRET_STRIPE not in svg and mask(SECRET_STRIPE, 4) in _svg_text(svg)
        path = app.save_screenshot("shot.svg", str(tmp_path))  # what the palette's Screenshot saves
        assert SECRET_STRIPE not in open(path).read()
        # Still revealed on the terminal itself, and included when explicitly asked.
        assert SECRET_STRIPE in config_value(app, "apiKey")
        app.include_secrets_in_screenshot = True
        assert SECRET_STRIPE in _svg_text(app.export_screenshot())


@run_async
async def test_a_screenshot_over_a_dialog_leaves_the_revealed_value_masked_behind_it(seeded, settings):
    """Two reasons mask a revealed cell (a dialog on top, a screenshot being taken); the end of
    the screenshot lifts only its own: the row behind the dialog keeps its mask."""
    from toolkit.tui.screens.modals import TextScreen

    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await reveal_first_secret(app, pilot)
        details = app.screen
        await pilot.press("j")  # the raw JSON view: a dialog over the installation
        await settle(pilot)
        assert isinstance(app.screen, TextScreen)
        svg = app.export_screenshot()
        assert SECRET_STRIPE not in svg
        behind = str(details.query_one("#config").get_row("apiKey")[3])
        assert SECRET_STRIPE not in behind and mask(SECRET_STRIPE, 4) in behind
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is details and SECRET_STRIPE in config_value(app, "apiKey")  # shown again


@run_async
async def test_copy_a_revealed_value(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await open_details(app, pilot, 1)
        await pilot.press("c")
        assert app.clipboard == ""
        await pilot.press("v", "y")
        await settle(pilot)
        await pilot.press("c")
        assert app.clipboard == SECRET_STRIPE


@run_async
async def test_revealed_values_are_not_selectable(seeded, settings):
    from textual.widgets import DataTable

    # They show only in the config table (a DataTable), which offers no text selection.
    assert DataTable.ALLOW_SELECT is False
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await reveal_first_secret(app, pilot)
        assert type(app.screen.query_one("#config")).ALLOW_SELECT is False


@run_async
async def test_awkward_configs_render(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_installation(3)  # a JSON array
        await settle(pilot)
        assert "config is not a JSON object but an array of 3 items" in screen_text(app)
        await pilot.press("escape")
        app.open_installation(4)  # malformed ciphertext + markup
        await settle(pilot)
        shown = screen_text(app)
        assert "malformed ciphertext" in shown and MARKUP_VALUE in shown
        await pilot.press("v", "y")  # the access token is masked, shaped like a ciphertext
        await settle(pilot)
        assert app.screen.revealed.keys == []
        assert any("Not revealed" == n.title for n in app._notifications)
        await pilot.press("escape")
        app.open_installation(5)  # an app the registry does not know
        await settle(pilot)
        assert "legacy-app — not in the registry" in screen_text(app)


@run_async
async def test_no_key_configured_still_browses(seeded, settings):
    app = make_app(seeded, settings, ring=None)
    async with app.run_test(size=SIZE) as pilot:
        await open_details(app, pilot, 1)
        assert "encrypted (no key configured)" in screen_text(app)
        await pilot.press("v", "y")
        await settle(pilot)
        assert app.screen.revealed.keys == []
        assert read_entries(settings) == []


@run_async
async def test_users_list_and_enter_lists_their_installations(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert [str(c) for c in table.get_row_at(0)[:4]] == ["1", "alice@example.com", "Alice", "admin"]
        assert "hash-ALICE-PW" not in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationsScreen)
        table = app.screen.query_one(PageTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["1", "2"]
        assert "alice@example.com" in str(app.screen.query_one("#summary").render())


@run_async
async def test_write_actions_are_hidden_when_read_only(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await open_details(app, pilot, 1)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, InstallationScreen)  # no confirmation appeared
        assert "Uninstall" not in screen_text(app)


@run_async
async def test_help_panel_toggles(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        await pilot.press("question_mark")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")


@run_async
async def test_q_quits(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


@run_async
async def test_every_action_is_in_the_command_palette(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Filter", "Next page", "Prev page", "Sort", "Users", "Audit", "Quit", "Keys"} <= titles
        app.open_installation(1)
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Reveal/hide secret", "Copy revealed", "Back"} <= titles
        assert "Uninstall" not in titles and "Screenshot with revealed values" not in titles
        await pilot.press("v", "y")
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Screenshot with revealed values" in titles


@run_async
async def test_the_demo_database_through_the_context(demo_settings):
    from toolkit.context import Context

    context = Context(demo_settings, announce=lambda line: None)
    app = DashboardApp(DataSource.from_context(context))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert table.row_count == 100
        assert app.screen.query_one("#demo-marker").display and "DEMO" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen) and app.screen.detail is not None
    context.close()


def test_dashboard_command_help_and_unreachable_database(run_cli):
    result = run_cli("dashboard", "--help")
    assert result.returncode == 0 and "--write" in result.stdout
    result = run_cli("dashboard", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"})
    assert result.returncode == 3 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@run_async
async def test_mouse_click_highlights_and_a_second_click_opens(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.click(PageTable, offset=(10, 3))  # header is line 0: the third row
        await pilot.pause()
        assert isinstance(app.screen, InstallationsScreen)
        await pilot.click(PageTable, offset=(10, 3))
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen) and app.screen.installation_id == 3


@run_async
async def test_users_filter_by_id_and_role(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.show_users(2)
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["bob@example.com"]
        await pilot.press("slash", "ctrl+u", *"role:admin", "enter")
        await settle(pilot)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["alice@example.com"]
