"""The list table (a line-API widget, not DataTable): keys, cropping, literal values, header clicks."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from test_tui import SIZE, make_app, run_async, seeded, settings, settle  # noqa: F401 (fixtures)

from toolkit.tui.widgets import PageTable
from toolkit.tui.widgets.page_table import _fit


def test_fit_crops_pads_and_keeps_markup_literal():
    console = Console()
    assert "".join(s.text for s in _fit(Text("alice@example.com"), 5, console)) == "alic…"  # cropped with an ellipsis: the cell visibly goes on
    assert "".join(s.text for s in _fit(Text("7", justify="right"), 4, console)) == "   7"
    assert "".join(s.text for s in _fit(Text("ok"), 4, console)) == "ok  "
    assert "".join(s.text for s in _fit(Text("[red]x[/]"), 12, console)) == "[red]x[/]   "
    assert "".join(s.text for s in _fit(Text("a\nb"), 4, console)) == "a⏎b "  # one line per row
    styled = _fit(Text("installed", style="yellow"), 10, console)
    assert styled[0].style.color.name == "yellow" and styled[1].text == " "


@run_async
async def test_cursor_keys_move_within_the_page_and_scroll(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        assert table.has_focus and table.current.id == 1
        await pilot.press("down", "down")
        assert table.current.id == 3
        await pilot.press("end")
        assert table.current.id == 100 and table.scroll_y > 0  # the last row is in view
        assert "100" in table.render_line(table.scrollable_content_region.height - 1).text
        await pilot.press("home")
        assert table.current.id == 1 and table.scroll_y == 0
        await pilot.press("pagedown")
        assert table.current.id > 20
        await pilot.press("up")
        assert table.current.id > 19


@run_async
async def test_each_line_is_as_wide_as_the_table_and_the_header_stays(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PageTable)
        width = table.scrollable_content_region.width
        lines = [table.render_line(y) for y in range(table.scrollable_content_region.height)]
        assert all(line.cell_length == width for line in lines)
        assert lines[0].text.split()[:2] == ["ID", "▲"]
        await pilot.press("end")
        await pilot.pause()
        assert table.render_line(0).text.split()[:2] == ["ID", "▲"]  # the header does not scroll away
