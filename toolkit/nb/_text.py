"""Plain-text tables for `repr()` (terminals, logs, nbval's text/plain): aligned, no colours."""

from __future__ import annotations


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
    # One line per row: a newline in data must not break the table's shape.
    return str(value).replace("\r", "\\r").replace("\n", "\\n")


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"
