"""Messages that carry results from thread workers back to the UI thread.

Workers never touch widgets: they post one of these and the screen (or the app) updates
itself when the message arrives on its own thread.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class Fetched(Message):
    """A read finished. `token` lets the screen drop answers to requests it has since replaced."""

    def __init__(self, group: str, token: int, result: Any):
        super().__init__()
        self.group = group
        self.token = token
        self.result = result


class FetchFailed(Message):
    def __init__(self, group: str, token: int, message: str, *, database: bool):
        super().__init__()
        self.group = group
        self.token = token
        self.message = message
        self.database = database  # the database is unreachable (the app shows its banner)


class DatabaseFailed(Message):
    """Posted to the app: a call could not reach the database."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message


class DatabaseOk(Message):
    """Posted to the app: a call reached the database (it may have just come back)."""


class AuditProgress(Message):
    def __init__(self, done: int, total: int | None):
        super().__init__()
        self.done = done
        self.total = total


class AuditFinished(Message):
    def __init__(self, report):
        super().__init__()
        self.report = report


class AuditFailed(Message):
    def __init__(self, message: str):
        super().__init__()
        self.message = message


class ReportChanged(Message):
    """Sent to every screen when a new audit report is available."""


class Written(Message):
    """A write went through the config service."""

    def __init__(self, message: str, *, removed: bool = False):
        super().__init__()
        self.message = message
        self.removed = removed
