"""The HTML Jupyter shows for every result: escaped cells, inline styles, nothing random.

Everything that comes from the database goes through `cell()` (html.escape with quotes), so a
customer's `<script>` or `[bold]` markup is shown as text. Styles are inline so the output looks
the same in JupyterLab, classic Notebook, VS Code and a rendered .ipynb on a code host, and
the markup is deterministic so nbval can compare it.
"""

from __future__ import annotations

import html

SEVERITY_COLORS = {"error": "#b3261e", "warning": "#8a5a00", "info": "#1f5fa8"}
_TABLE = 'style="border-collapse:collapse;margin:0.3em 0"'
_TH = 'style="text-align:left;padding:2px 8px;border-bottom:1px solid #999"'
_TD = 'style="text-align:left;padding:2px 8px;vertical-align:top"'
_TD_NUMBER = 'style="text-align:right;padding:2px 8px;vertical-align:top"'


def escape(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class Markup(str):
    """HTML we built ourselves: `cell()` leaves it alone; everything else is escaped."""


def severity_badge(severity: str) -> Markup:
    color = SEVERITY_COLORS.get(severity, "#444")
    return Markup(f'<span style="color:{color};font-weight:600">{escape(severity)}</span>')


def cell(value) -> str:
    if isinstance(value, Markup):
        return str(value)
    return escape(value)


def table(columns, rows, *, numeric=()) -> str:
    """An HTML table; `numeric` names the right-aligned columns. Severity is coloured the
    same in every table: a `severity` column's values, and the header and non-zero counts of
    a column named after a severity (error, warning, info)."""
    head = "".join(f"<th {_TH}>{_severity_header(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f"<td {_TD_NUMBER if column in numeric else _TD}>{_severity_cell(column, value)}</td>"
            for column, value in zip(columns, row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _severity_header(column) -> str:
    color = SEVERITY_COLORS.get(column)
    return f'<span style="color:{color}">{escape(column)}</span>' if color else escape(column)


def _severity_cell(column, value) -> str:
    if column == "severity" and value in SEVERITY_COLORS and not isinstance(value, Markup):
        return severity_badge(value)
    if column in SEVERITY_COLORS and isinstance(value, int) and value:
        return f'<span style="color:{SEVERITY_COLORS[column]};font-weight:600">{escape(value)}</span>'
    return cell(value)


def heading(text: str) -> str:
    return f'<div style="font-weight:600;margin-top:0.4em">{escape(text)}</div>'


def note(text: str) -> str:
    return f'<div style="color:#555">{escape(text)}</div>'


def block(*parts: str) -> str:
    return '<div class="toolkit-nb">' + "".join(parts) + "</div>"
