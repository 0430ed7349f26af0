"""A red line under the top bar while the database cannot be reached."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class DatabaseBanner(Static):
    def on_mount(self) -> None:
        self.watch(self.app, "db_error", self._show)

    def _show(self, error: str | None) -> None:
        self.display = error is not None
        if error is not None:
            message = Text("Database unavailable: ", style="bold")
            message.append(error)
            message.append("  — retrying every few seconds; ctrl+r retries now. Nothing shown below is fresh.")
            self.update(message)
