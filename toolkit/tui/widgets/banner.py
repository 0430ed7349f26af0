"""A red line under the top bar while the database cannot be reached, or a yellow one while it
takes long to answer ("waiting for the database (N s)": a silent server, a paused pooler)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class DatabaseBanner(Static):
    def on_mount(self) -> None:
        self.watch(self.app, "db_error", self._show)
        self.watch(self.app, "db_waiting", self._show)

    def _show(self, _changed=None) -> None:
        error, waiting = self.app.db_error, self.app.db_waiting
        self.display = error is not None or waiting is not None
        self.set_class(error is None and waiting is not None, "-waiting")
        if error is not None:
            message = Text("Database unavailable: ", style="bold")
            message.append(error)
            message.append("  — retrying every few seconds; ctrl+r retries now. Nothing shown below is fresh.")
            if waiting is not None:
                message.append(f" Waiting for the database ({waiting} s).")
            self.update(message)
        elif waiting is not None:
            message = Text(f"Waiting for the database ({waiting} s)", style="bold")
            message.append(" — it accepted the connection but has not answered yet; q quits.")
            self.update(message)
