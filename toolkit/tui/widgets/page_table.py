"""A DataTable that shows one keyset page at a time, with sortable column headers.

It never holds more than a page (about 100 rows): DataTable slows down with many rows, and
the database pages faster than any widget can scroll.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    label: str
    render: Callable[[Any], Text]
    sort: str | None = None  # the browse sort name, when this column can be sorted


class PageTable(DataTable):
    def __init__(self, columns: list[Column], **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.specs = columns
        self.page = None
        self.rows_by_key: dict[str, Any] = {}

    def on_mount(self) -> None:
        for column in self.specs:
            self.add_column(self._label(column, None), key=column.key)
        self._sort = None

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
        self.clear()  # rows only: the columns stay, so widths are not measured from scratch
        if page.sort != self._sort:
            self._sort = page.sort
            for column in self.specs:
                self.columns[ColumnKey(column.key)].label = self._label(column, page.sort)
            self.refresh()
        self.rows_by_key = {}
        for row in page.rows:
            key = str(row.id)
            self.rows_by_key[key] = row
            self.add_row(*(column.render(row) for column in self.specs), key=key)
        if page.rows:
            self.move_cursor(row=len(page.rows) - 1 if cursor_at_end else 0)

    def refresh_cells(self) -> None:
        """Re-render the rows in place (e.g. the findings column after an audit)."""
        if self.page is not None:
            self.show(self.page)

    @property
    def current(self):
        """The row object under the cursor, or None."""
        if not self.rows_by_key or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        except Exception:  # an empty table
            return None
        return self.rows_by_key.get(key)

    def sort_for(self, column_key: str) -> str | None:
        for column in self.specs:
            if column.key == column_key:
                return column.sort
        return None

    @property
    def sortable(self) -> list[str]:
        return [c.sort for c in self.specs if c.sort is not None]
