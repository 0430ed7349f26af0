"""`Table`: the result type of every lookup — a title, columns, rows, and three renderings.

Rows are tuples of plain values (ints, strings, datetimes, masks): a Table never holds a
`Secret` or a raw config, so no rendering can leak one.
"""

from __future__ import annotations

from . import _html
from ._pandas import frame
from ..safe_text import escape_text
from ._text import plural, text_table

DISPLAY_ROWS = 25  # rows shown inline; the rest stay in the object (len, iteration, to_pandas)
LIMIT = 50  # the rows a lookup reads by default (`limit=` on every helper that lists rows)


class Table:
    def __init__(self, title: str, columns, rows, *, numeric=(), notes=(), display_rows: int = DISPLAY_ROWS):
        self.title = title
        self.columns = tuple(columns)
        self.rows = tuple(tuple(row) for row in rows)
        self.numeric = frozenset(numeric)
        self.notes = tuple(notes)
        self.display_rows = display_rows

    # --- a sequence of rows ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def select(self, *columns: str) -> "Table":
        """The same rows with only these columns (e.g. to leave times and user names out)."""
        index = [self.columns.index(c) for c in columns]
        return Table(self.title, columns, [tuple(row[i] for i in index) for row in self.rows],
                     numeric=self.numeric & set(columns), notes=self.notes, display_rows=self.display_rows)

    def records(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_pandas(self):
        return frame(self.columns, self.rows)

    # --- renderings --------------------------------------------------------------------
    def _shown(self):
        shown = self.rows[: self.display_rows]
        rest = len(self) - len(shown)  # len(): a preview knows how many rows it stands for
        more = f"… {rest} more rows (len(), iterate, or .to_pandas() for all)" if rest > 0 else None
        return shown, more

    def __repr__(self) -> str:
        shown, more = self._shown()
        parts = [f"{escape_text(self.title)} ({plural(len(self), 'row')})"]  # titles quote emails
        if self.rows:
            parts.append(text_table(self.columns, shown, numeric=self.numeric))
        parts += [more] if more else []
        parts += [escape_text(note) for note in self.notes]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        from . import _interactive

        shown, more = self._shown()
        parts = [_html.heading(f"{self.title} ({plural(len(self), 'row')})")]
        if self.rows and _interactive.enabled():  # opt-in: tk.interactive()
            return _html.block(*parts, _interactive.datatable(self.columns, self.rows, self.title),
                               *(_html.note(n) for n in self.notes))
        if self.rows:
            parts.append(_html.table(self.columns, shown, numeric=self.numeric))
        parts += [_html.note(more)] if more else []
        parts += [_html.note(n) for n in self.notes]
        return _html.block(*parts)
