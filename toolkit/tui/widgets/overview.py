"""The strip over the installations list: counts by status and by app, findings by severity."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...safe_text import escape_text
from .. import cells

MAX_APPS = 8


class OverviewStrip(Static):
    def show(self, overview, app_name, report=None) -> None:
        line = Text()
        if overview is None:
            line.append("counting…", style="dim")
        else:
            line.append(f"{cells.number(overview.total)} installations", style="bold")
            line.append(f" · {cells.number(overview.users)} users   ")
            for status, count in overview.by_status.items():
                line.append(f"{escape_text(status)} ", style=cells.STATUS_STYLES.get(status, ""))
                line.append(f"{cells.number(count)}  ")
            line.append("│ ", style="dim")
            apps = list(overview.by_app.items())
            for app_id, count in apps[:MAX_APPS]:
                line.append(f"{escape_text(app_name(app_id))} ", style="bold")
                line.append(f"{cells.number(count)}  ")
            if len(apps) > MAX_APPS:
                line.append(f"+{len(apps) - MAX_APPS} more  ", style="dim")
        line.append("\n")
        if report is None:
            line.append("findings: no audit yet (press a, then r)", style="dim")
        else:
            counts = {"error": 0, "warning": 0, "info": 0}
            for finding in report.findings:
                counts[finding.severity] = counts.get(finding.severity, 0) + 1
            line.append("findings: ")
            for severity, count in counts.items():
                line.append(f"{cells.SEVERITY_MARKS.get(severity, '')} {cells.number(count)} {severity}  ",
                            style=cells.SEVERITY_STYLES.get(severity, ""))
        self.update(line)
