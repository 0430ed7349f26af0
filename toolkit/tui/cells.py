"""Turning values into what a cell shows: always `rich.text.Text`, never markup.

DataTable (and Static, and notify) parse strings as Textual markup: an email like
`[red]x[/]@example.com` or a config value `[link=…]` would be styled or break the widget.
Every data value passes through `text()` here, which also escapes what a terminal would obey
(`safe_text.escape_text`: ESC, C1, bidi overrides, newlines) — customer text never drives
the operator's terminal, and a newline shows as `\\n` instead of breaking the row.
"""

from __future__ import annotations

import datetime as dt
import json

from rich.text import Text

from ..safe_text import escape_text

MISSING = "—"
STATUS_STYLES = {"configured": "green", "installed": "yellow"}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SEVERITY_MARKS = {"error": "●", "warning": "▲", "info": "ℹ"}


def text(value, style: str = "") -> Text:
    """Any value as literal text (markup characters stay characters)."""
    if value is None:
        return Text(MISSING, style="dim")
    if isinstance(value, Text):
        return value
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list, bool)) else str(value)
    return Text(escape_text(value), style=style)


def timestamp(value: dt.datetime | None) -> Text:
    if value is None:
        return Text(MISSING, style="dim")
    return Text(value.strftime("%Y-%m-%d %H:%M"))


def status(value: str) -> Text:
    return text(value, STATUS_STYLES.get(value, ""))


def number(value: int) -> str:
    return f"{value:,}"


def findings_marker(findings) -> Text:
    """The worst severity's mark and the count, or nothing."""
    if not findings:
        return Text("")
    worst = _worst(findings)
    return Text(f"{SEVERITY_MARKS[worst]} {len(findings)}", style=SEVERITY_STYLES[worst])


def _worst(findings) -> str:
    severities = {f.severity for f in findings}
    for severity in ("error", "warning", "info"):
        if severity in severities:
            return severity
    return "info"
