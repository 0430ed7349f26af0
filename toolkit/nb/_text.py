"""Plain-text tables for `repr()` (terminals, logs, nbval's text/plain): aligned, no colours.

A repr lands in a terminal (IPython, a log tail) as readily as in a notebook: every cell is
escaped with `safe_text.escape_text`, so customer text shows its escapes instead of obeying
them, and a newline in data cannot break the table's shape.
"""

from __future__ import annotations

from ..safe_text import escape_text


def text_table(columns, rows, *, numeric=()) -> str:
    cells = [[_text(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]

    def line(values):
        parts = [
            v.rjust(w) if column in numeric else v.ljust(w)
            for column, v, w in zip(columns, values, widths)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(list(columns)), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in cells]
    return "\n".join(lines)


def _text(value) -> str:
    if value is None:
        return ""
    return escape_text(value)


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"
