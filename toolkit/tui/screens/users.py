"""The users list (never their password): enter lists that user's installations."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from ... import browse
from .. import cells
from ..filters import FilterQuery
from ..widgets import Column, PageTable
from .installations import ListScreen


class UsersScreen(ListScreen):
    TITLE = "Users"
    FILTER_KEYS = ("email", "role", "user")
    FILTER_HINT = "role:admin user:42  (words match the email; enter applies)"
    BINDINGS = ListScreen.BINDINGS + [Binding("enter", "open", "Installations", show=True)]
    NOUN = "users"

    def compose(self) -> ComposeResult:
        yield from self.compose_list()
        yield from self.compose_table()

    def columns(self) -> list[Column]:
        return [
            Column("id", "ID", lambda r: Text(str(r.id), justify="right"), "id"),
            Column("email", "Email", lambda r: cells.text(r.email), "email", shrink=16),
            Column("name", "Name", lambda r: cells.text(r.name), "name", shrink=8),
            Column("role", "Role", lambda r: cells.text(r.role, "bold" if r.role == "admin" else ""), "role"),
            Column("created", "Created", lambda r: cells.timestamp(r.created_at), "created", optional=True),
            Column("installations", "Installations", lambda r: Text(str(r.installations), justify="right")),
        ]

    def lister(self):
        return self.app.source.list_users

    def counter(self):
        return self.app.source.count_users

    def browse_filter(self):
        query = self.query_filter
        return browse.UserFilter(email=query.email, role=query.role, user_id=query.user_id)

    def action_open(self) -> None:
        row = self.table.current
        if row is not None:
            self.app.show_installations(FilterQuery(user_id=row.id), label=row.email)

    def on_page_table_row_selected(self, event: PageTable.RowSelected) -> None:
        event.stop()
        row = event.row
        self.app.show_installations(FilterQuery(user_id=row.id), label=row.email)
