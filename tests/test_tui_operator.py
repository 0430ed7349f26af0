"""The dashboard as an on-call operator uses it (Pilot, seeded SQLite): 80×24 and 120×40,
`id:N`, completion, the live filter, continuous paging, export, copy, screenshots, the theme."""

from __future__ import annotations

import csv
import json

import pytest
from test_browse_seed import GENERATED, seed, sqlite_database
from test_tui import make_app, open_details, run_async, screen_text, settle

from toolkit.settings import Settings
from toolkit.tui import preferences
from toolkit.tui.screens.installation import InstallationScreen
from toolkit.tui.screens.installations import LIVE_FILTER_SECONDS, InstallationsScreen
from toolkit.tui.widgets import PageTable

TOTAL = 4 + GENERATED
SMALL, LARGE = (80, 24), (120, 40)


@pytest.fixture
def seeded(tmp_path):
    database = sqlite_database(tmp_path / "tui.sqlite3")
    seed(database)
    database.close()
    return database


@pytest.fixture
def settings(tmp_path):
    return Settings(access_log=tmp_path / "access.log", export_dir=tmp_path / "exports",
                    config_dir=tmp_path / "config")


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


async def type_filter(pilot, text):
    await pilot.press("slash")
    await pilot.press(*text)


@pytest.mark.parametrize("size", [SMALL, LARGE])
@run_async
async def test_the_navigation_hints_and_the_essential_columns_fit(seeded, settings, size):
    app = make_app(seeded, settings)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        for hint in ("i Installations", "u Users", "a Audit", "/ Filter", "q Quit", "? Keys"):
            assert hint in shown, hint
        columns = app.screen.query_one(PageTable).visible_columns
        assert columns[:5] == ["id", "email", "app", "status", "findings"]
        assert ("updated" in columns) == (size == LARGE)  # only the optional columns go
        assert "findings: no audit yet" in shown  # the overview wraps; its findings line stays
        assert f"1–100 of {TOTAL} installations match" in shown


@run_async
async def test_the_footer_keeps_the_hints_on_every_screen_at_80_columns(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        for key in ("u", "a"):
            await pilot.press(key)
            await settle(pilot)
            shown = screen_text(app)
            assert all(hint in shown for hint in ("u Users", "a Audit", "q Quit")), key


@run_async
async def test_id_in_the_filter_opens_that_installation(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await type_filter(pilot, "id:137")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen) and app.screen.installation_id == 137
        assert "Installation 137" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert [row.id for row in table.page.rows] == [137]  # the list shows it too
        await pilot.press("slash")
        app.screen.query_one("#filter").value = ""
        await pilot.press(*"id:99999")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationsScreen)
        assert any("No installation 99999" in m for m in messages(app))


@run_async
async def test_the_filter_completes_keys_and_values(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "sta")
        await pilot.pause()
        field = app.screen.query_one("#filter")
        assert field._suggestion == "status:"
        await pilot.press("right")  # accepts the suggestion
        await pilot.press(*"conf")
        await pilot.pause()
        assert field._suggestion == "status:configured"
        await pilot.press("right", "space", *"app:stripe,Gi")
        await pilot.pause()
        assert field._suggestion == "status:configured app:stripe,Github"  # what was typed stays as typed
        await pilot.press("right", "enter")
        await settle(pilot)
        rows = app.screen.query_one(PageTable).page.rows
        assert rows and {(r.app_id, r.status) for r in rows} == {("stripe", "configured"), ("github", "configured")}


@run_async
async def test_the_list_follows_the_filter_as_it_is_typed(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "app:slack")
        await pilot.pause(LIVE_FILTER_SECONDS * 2)  # the debounce: one query after typing stops
        await settle(pilot)
        field = app.screen.query_one("#filter")
        assert field.display and field.has_focus  # still typing: the line stays open
        rows = app.screen.query_one(PageTable).page.rows
        assert rows and {r.app_id for r in rows} == {"slack"}
        assert "84 installations match" in screen_text(app)


@run_async
async def test_moving_past_the_page_edge_loads_the_next_and_previous_page(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        await pilot.press("end", "down")
        await settle(pilot)
        assert table.page.rows[0].id == 101 and table.cursor_row == 0
        assert f"101–200 of {TOTAL} installations match" in screen_text(app)
        await pilot.press("up")
        await settle(pilot)
        assert table.page.rows[0].id == 1 and table.current.id == 100
        await pilot.press("G")
        await settle(pilot)
        assert f"{TOTAL - len(table.page.rows) + 1}–{TOTAL} of {TOTAL}" in screen_text(app)


@run_async
async def test_the_header_counts_under_a_sort_never_lists_ids(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("S")  # id descending
        await settle(pilot)
        shown = screen_text(app)
        assert f"1–100 of {TOTAL} installations match" in shown and "ids " not in shown


@run_async
async def test_export_writes_the_filtered_list_and_names_the_file(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "app:Stripe,slack")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("E")
        await settle(pilot)
        await pilot.press("enter")  # csv, the first choice
        await settle(pilot)
        exported = list(settings.export_dir.glob("installations-*.csv"))
        assert len(exported) == 1
        with open(exported[0], newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 85 + 84 and {r["app_id"] for r in rows} == {"stripe", "slack"}
        assert any(str(exported[0]) in m for m in messages(app))


@run_async
async def test_copy_row_goes_to_the_clipboard_and_a_file(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("down", "y")
        await settle(pilot)
        copied = json.loads((settings.export_dir / "clipboard.txt").read_text(encoding="utf-8"))
        assert copied["id"] == 2 and app.clipboard == json.dumps(copied, ensure_ascii=False)
        assert any("clipboard.txt" in m for m in messages(app))


@run_async
async def test_a_screenshot_goes_to_the_export_folder_and_says_where(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        path = app.deliver_screenshot()
        await pilot.pause()
        assert path is not None and path.startswith(str(settings.export_dir))
        assert "<svg" in open(path, encoding="utf-8").read()
        assert any(path in m for m in messages(app)), messages(app)


@run_async
async def test_the_theme_persists_across_restarts(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert app.theme != "gruvbox"
        app.theme = "gruvbox"
        await pilot.pause()
    assert preferences.load(settings) == {"theme": "gruvbox"}
    assert json.loads((settings.config_dir / "dashboard.json").read_text()) == {"theme": "gruvbox"}
    again = make_app(seeded, settings)
    async with again.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert again.theme == "gruvbox"


def test_a_broken_preferences_file_means_the_defaults(settings):
    settings.config_dir.mkdir(parents=True)
    (settings.config_dir / "dashboard.json").write_text("{not json", encoding="utf-8")
    assert preferences.load(settings) == {}
    preferences.save(settings, {"theme": "nord", "other": "x"})
    assert preferences.load(settings) == {"theme": "nord"}


@run_async
async def test_a_revealed_value_replaces_its_mask_in_its_row_until_hidden(seeded, settings):
    from test_browse_seed import SECRET_STRIPE

    from toolkit.crypto import mask

    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await open_details(app, pilot, 1)
        table = app.screen.query_one("#config")
        value = lambda: str(table.get_row("apiKey")[3])  # noqa: E731
        assert value().startswith(mask(SECRET_STRIPE, 4)) and SECRET_STRIPE not in value()  # the CLI's mask
        await pilot.press("v", "y")  # reveal, confirm
        await settle(pilot)
        assert value().startswith(SECRET_STRIPE)
        assert SECRET_STRIPE not in app.export_screenshot()  # the capture shows the mask
        assert value().startswith(SECRET_STRIPE)  # and the row shows the value again afterwards
        await pilot.press("v")  # hides it
        await settle(pilot)
        assert value().startswith(mask(SECRET_STRIPE, 4)) and SECRET_STRIPE not in screen_text(app)


@run_async
async def test_the_raw_view_shows_the_config_as_json_with_every_secret_masked(seeded, settings):
    from test_browse_seed import MARKUP_VALUE, SECRET_SLACK

    from toolkit.crypto import mask
    from toolkit.safe_text import UNSAFE_RANGES
    from toolkit.tui.screens.modals import TextScreen

    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await open_details(app, pilot, 2)
        assert "j Raw JSON" in screen_text(app)  # the binding is in the footer
        await pilot.press("j")
        await settle(pilot)
        assert isinstance(app.screen, TextScreen)
        body = str(app.screen.body)
        assert json.loads(body) == {"botToken": mask(SECRET_SLACK, 4), "channel": MARKUP_VALUE}
        assert not any(low <= ord(c) <= high for c in body.replace("\n", "") for low, high in UNSAFE_RANGES)
        svg = app.export_screenshot()
        assert SECRET_SLACK not in svg and SECRET_SLACK not in body
        assert "[bold]x[/]" in screen_text(app)  # markup stays literal
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen)


@run_async
async def test_the_raw_view_masks_a_revealed_secret_too(seeded, settings):
    from test_browse_seed import SECRET_STRIPE

    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await open_details(app, pilot, 1)
        await pilot.press("v", "y")  # revealed in its row
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)
        assert SECRET_STRIPE not in str(app.screen.body) and SECRET_STRIPE not in screen_text(app)


@run_async
async def test_copy_one_cell_of_the_list(seeded, settings):
    from toolkit.tui.screens.modals import ChoiceScreen

    app = make_app(seeded, settings)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("down", "c")  # row 2, then which cell
        await settle(pilot)
        assert isinstance(app.screen, ChoiceScreen)
        assert app.screen.choices[:5] == ["ID", "User", "App", "Status", "Findings"]
        await pilot.press("down", "enter")  # User
        await settle(pilot)
        assert app.clipboard == "alice@example.com"
        assert (settings.export_dir / "clipboard.txt").read_text(encoding="utf-8") == "alice@example.com\n"
        assert any("user of row 2" in m and "clipboard.txt" in m for m in messages(app))


@run_async
async def test_the_users_list_says_how_many_match(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        users = 3 + GENERATED
        assert f"1–100 of {users} users match" in screen_text(app)
        await type_filter(pilot, "role:admin")
        await pilot.press("enter")
        await settle(pilot)
        assert "1–1 of 1 user match" in screen_text(app)
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        await type_filter(pilot, "nobody-like-this")
        await pilot.press("enter")
        await settle(pilot)
        assert "no users match" in screen_text(app)


@pytest.mark.parametrize("typed", ["id:137", "id:137 app:stripe"])
@run_async
async def test_escape_from_an_installation_opened_by_id_keeps_the_filter(seeded, settings, typed):
    app = make_app(seeded, settings)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await type_filter(pilot, typed)
        await pilot.pause(LIVE_FILTER_SECONDS * 2)  # the live filter has applied it already
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen) and app.screen.installation_id == 137
        await pilot.press("escape")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, InstallationsScreen)
        assert screen.query_filter.text() == typed
        assert f"filter: {typed}" in screen_text(app) and "1–1 of 1 installation match" in screen_text(app)
        assert [row.id for row in screen.query_one(PageTable).page.rows] == [137]
        await pilot.press("slash")  # the filter line reopens with it, to refine
        assert screen.query_one("#filter").value == typed
