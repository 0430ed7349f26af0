"""The list table: one keyset page (about 100 rows), drawn line by line.

Textual's DataTable renders every cell through Rich (padding, wrapping, justification) and
re-renders every visible cell whenever the page, the cursor or the focus changes: on a new
page that was most of the time between the key press and the rows on screen. This table
keeps the cells as `Text` (never markup), fits each to its column with plain string work,
and builds one `Strip` per visible line (Textual's line API), cached until the page, the
cursor or the focus changes. Same look as DataTable: header, zebra stripes, row cursor.

Narrow terminals: the columns marked `optional` are dropped (rightmost first) and the
`shrink` ones cropped with "…" until the essential ones fit the width (80 columns: id, user,
app, status, findings). Moving past the last row (or before the first) posts `EdgeReached`,
and the screen loads the next (previous) page: paging feels like one long list.

Keys: up/down, page up/down, home/end, enter selects. Mouse: a click on a header asks to
sort by it, a click on a row moves the cursor there, a click on the cursor's row selects it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

PADDING = 1  # cells of space each side of a value, as DataTable


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    label: str
    render: Callable[[Any], Text]
    sort: str | None = None  # the browse sort name, when this column can be sorted
    optional: bool = False  # dropped when the terminal is too narrow for every column
    shrink: int | None = None  # may be cropped down to this many cells (with "…") when narrow


class PageTable(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "cursor_home", "First row", show=False),
        Binding("end", "cursor_end", "Last row", show=False),
    ]
    COMPONENT_CLASSES = {"page-table--header", "page-table--cursor", "page-table--even-row"}
    # DataTable's look (same theme variables), for the parts this table has.
    DEFAULT_CSS = """
    PageTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .page-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .page-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .page-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .page-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .page-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .page-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .page-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    class HeaderSelected(Message):
        """A header was clicked: `column_key` is the Column's key."""

        def __init__(self, table: "PageTable", column_key: str):
            super().__init__()
            self.table = table
            self.column_key = column_key

        @property
        def control(self) -> "PageTable":
            return self.table

    class EdgeReached(Message):
        """The cursor tried to move past the page: `forward` is True past the last row."""

        def __init__(self, table: "PageTable", forward: bool):
            super().__init__()
            self.table = table
            self.forward = forward

        @property
        def control(self) -> "PageTable":
            return self.table

    class RowSelected(Message):
        """Enter, or a click on the cursor's row: `row` is the page's row object."""

        def __init__(self, table: "PageTable", row: Any):
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> "PageTable":
            return self.table

    def __init__(self, columns: list[Column], **kwargs):
        super().__init__(**kwargs)
        self.specs = columns
        self.page = None
        self.rows_by_key: dict[str, Any] = {}
        self._rows: list[Any] = []
        self._cells: list[list[Text]] = []
        self._sort = None
        self._labels = [self._label(column, None) for column in columns]
        # Widths only grow (as DataTable's): columns do not jump back and forth between pages.
        self._widths = [label.cell_len + 2 * PADDING for label in self._labels]
        self._strips: dict[tuple, Strip] = {}
        self._layout: list[tuple[int, int]] = []  # (column index, width) of the columns drawn

    # --- content ----------------------------------------------------------------------
    @staticmethod
    def _label(column, sort) -> Text:
        label = Text(column.label)
        if sort is not None and column.sort == sort.column:
            label.append(" ▼" if sort.descending else " ▲", style="bold")
        elif column.sort is not None:
            label.stylize("underline")  # clickable
            label.append("  ")  # room for the arrow: the column keeps its width when sorted
        return label

    def show(self, page, *, cursor_at_end: bool = False) -> None:
        self.page = page
        if page.sort != self._sort:
            self._sort = page.sort
            self._labels = [self._label(column, page.sort) for column in self.specs]
        self._rows = list(page.rows)
        self._cells = [[column.render(row) for column in self.specs] for row in self._rows]
        self.rows_by_key = {str(row.id): row for row in self._rows}
        widths = self._widths
        for index, label in enumerate(self._labels):
            widest = max((cells[index].cell_len for cells in self._cells), default=0)
            widths[index] = max(widths[index], label.cell_len + 2 * PADDING, widest + 2 * PADDING)
        self._strips.clear()
        self._fit_columns()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.cursor_row = max(0, len(self._rows) - 1) if cursor_at_end else 0
        self.refresh()

    def refresh_cells(self) -> None:
        """Re-render the rows in place (e.g. the findings column after an audit)."""
        if self.page is not None:
            row = self.cursor_row
            self.show(self.page)
            self.cursor_row = min(row, max(0, self.row_count - 1))

    def _fit_columns(self) -> None:
        """Which columns are drawn, how wide, for the widget's width (see the module docstring)."""
        # The vertical scrollbar's room is kept even before the rows need it: a page longer than
        # the screen shows it, and the columns must not then overflow into a horizontal scroll.
        room = self.size.width - self.styles.scrollbar_size_vertical
        layout = list(enumerate(self._widths))
        total = sum(width for _, width in layout)
        if room > 0:
            for index in reversed(range(len(self.specs))):
                if total <= room:
                    break
                if self.specs[index].optional:
                    total -= self._widths[index]
                    layout = [(i, w) for i, w in layout if i != index]
            for position, (index, width) in enumerate(layout):
                floor = self.specs[index].shrink
                if total > room and floor is not None:
                    narrower = max(floor + 2 * PADDING, width - (total - room))
                    total -= width - narrower
                    layout[position] = (index, narrower)
        self._layout = layout
        self.virtual_size = Size(total, len(self._rows) + 1)

    @property
    def visible_columns(self) -> list[str]:
        """The keys of the columns drawn at this width."""
        return [self.specs[index].key for index, _ in self._layout]

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def get_row_at(self, index: int) -> list[Text]:
        """The cells of row `index` on this page (as DataTable.get_row_at)."""
        return list(self._cells[index])

    @property
    def current(self):
        """The row object under the cursor, or None."""
        if 0 <= self.cursor_row < len(self._rows):
            return self._rows[self.cursor_row]
        return None

    def move_cursor(self, *, row: int) -> None:
        self.cursor_row = row

    def sort_for(self, column_key: str) -> str | None:
        for column in self.specs:
            if column.key == column_key:
                return column.sort
        return None

    @property
    def sortable(self) -> list[str]:
        return [c.sort for c in self.specs if c.sort is not None]

    # --- cursor -----------------------------------------------------------------------
    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._rows) - 1)) if self._rows else 0

    def watch_cursor_row(self, old: int, new: int) -> None:
        for row in (old, new):  # only these two lines change look
            self._strips.pop((row, True), None)
            self._strips.pop((row, False), None)
        body = self._body_height
        if new < self.scroll_y:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= self.scroll_y + body:
            self.scroll_to(y=new - body + 1, animate=False, immediate=True)
        self.refresh()

    @property
    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _move(self, rows: int) -> None:
        """Move the cursor; already on the page's edge and pushing past it: ask for the next page."""
        last = len(self._rows) - 1
        if self._rows and ((rows > 0 and self.cursor_row == last) or (rows < 0 and self.cursor_row == 0)):
            self.post_message(self.EdgeReached(self, rows > 0))
            return
        self.cursor_row += rows

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-self._body_height)

    def action_page_down(self) -> None:
        self._move(self._body_height)

    def action_cursor_home(self) -> None:
        self.cursor_row = 0

    def action_cursor_end(self) -> None:
        self.cursor_row = len(self._rows) - 1

    def action_select_cursor(self) -> None:
        row = self.current
        if row is not None:
            self.post_message(self.RowSelected(self, row))

    # --- mouse ------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        event.stop()
        x, y = offset.x + int(self.scroll_x), offset.y
        if y == 0:
            left = 0
            for index, width in self._layout:
                if left <= x < left + width:
                    self.post_message(self.HeaderSelected(self, self.specs[index].key))
                    return
                left += width
            return
        index = int(self.scroll_y) + y - 1
        if not 0 <= index < len(self._rows):
            return
        if index == self.cursor_row:
            self.post_message(self.RowSelected(self, self._rows[index]))
        else:
            self.cursor_row = index

    # --- drawing ----------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def on_focus(self, event: events.Focus) -> None:
        self._strips.clear()
        self.refresh()

    def on_blur(self, event: events.Blur) -> None:
        self._strips.clear()
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._strips.clear()
        self._fit_columns()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x = int(self.scroll_x)
        if y == 0:
            strip = self._line(-1)
        else:
            index = int(self.scroll_y) + y - 1
            if index >= len(self._rows):
                return Strip.blank(width, self.rich_style)
            strip = self._line(index)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _line(self, index: int) -> Strip:
        """The whole row `index` (-1: the header) as one strip, at least as wide as the widget."""
        key = (index, index == self.cursor_row)
        strip = self._strips.get(key)
        if strip is not None:
            return strip
        base = self.rich_style
        post = None
        if index < 0:
            style = base + self.get_component_rich_style("page-table--header")
            cells = self._labels
        else:
            style = base
            if index % 2 == 0:  # DataTable's zebra: the first row is an "even" one
                style += self.get_component_rich_style("page-table--even-row")
            if index == self.cursor_row:
                cursor = self.get_component_rich_style("page-table--cursor")
                style += cursor
                if cursor.color is not None:
                    post = Style.from_color(cursor.color)  # the cursor's text colour wins
            cells = self._cells[index]
        console = self.app.console
        pad = " " * PADDING
        line: list[Segment] = []
        for column, width in self._layout:
            text = cells[column]
            # The meta (as DataTable's) keeps each cell its own run of segments: SVG
            # viewers then place every cell at its column.
            cell_style = style + Style.from_meta({"row": index, "column": column})
            plain_style = cell_style + post if post else cell_style
            line.append(Segment(pad, plain_style))
            for text_part, text_style, _ in _fit(text, width - 2 * PADDING, console):
                if text_style is None:
                    line.append(Segment(text_part, plain_style))
                else:
                    combined = cell_style + text_style
                    line.append(Segment(text_part, combined + post if post else combined))
            line.append(Segment(pad, plain_style))
        total = sum(width for _, width in self._layout)
        room = max(total, self.scrollable_content_region.width)
        if room > total:
            line.append(Segment(" " * (room - total), style))
        strip = Strip(line, room)
        self._strips[key] = strip
        return strip


def _fit(text: Text, width: int, console) -> list[Segment]:
    """`text` on one line of exactly `width` cells: cropped, or padded as it is justified."""
    plain = text.plain
    if "\n" in plain or "\r" in plain or "\t" in plain:  # cells.text() already prevents these
        text = text.copy()
        text.plain = plain.replace("\r", "").replace("\n", "⏎").replace("\t", " ")
    if text.cell_len > width:
        text = text.copy()
        text.truncate(width, overflow="ellipsis")
    gap = width - text.cell_len
    if text.spans:  # Text.render applies the base style itself when there are spans
        segments = list(text.render(console))
    elif text.plain:
        segments = [Segment(text.plain, console.get_style(text.style) if text.style else None)]
    else:
        segments = []
    if gap > 0:
        if text.justify == "right":
            segments.insert(0, Segment(" " * gap))
        else:
            segments.append(Segment(" " * gap))
    return segments
