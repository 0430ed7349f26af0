"""The line above every screen: DEMO marker, where the data comes from, read-only or write."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label


class TopBar(Horizontal):
    def __init__(self, title: str):
        super().__init__()
        self._title = title

    def compose(self) -> ComposeResult:
        source = self.app.source
        if source.is_demo:
            yield Label(Text(" DEMO "), id="demo-marker")
        yield Label(Text(self._title), id="screen-title")
        yield Label(Text(source.location), id="location")
        if self.app.write_enabled:
            yield Label(Text(" WRITE "), id="write-marker")
        else:
            yield Label(Text("read-only"), id="readonly-marker")
