"""The installations list: the screen `toolkit dashboard` opens on.

One keyset page at a time (n / p, g / G for first / last), filter with `/`, sort by clicking
a header or with s / S, enter opens one installation. The overview strip counts by status
and app (its own worker: on a million rows the page comes first, the counts a moment later).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from ... import browse
from ...errors import UsageError
from ...safe_text import escape_text
from .. import cells
from ..filters import ANY_FINDING, FilterQuery, parse_filter, resolve_app
from ..widgets import Column, DatabaseBanner, OverviewStrip, PageTable, StableFooter, TopBar
from ..workers import DataScreen

PAGE_SIZE = browse.DEFAULT_PAGE_SIZE


class ListScreen(DataScreen):
    """What the installations and users lists share: paging, sorting, the filter line."""

    TITLE = ""
    FILTER_KEYS: tuple[str, ...] = ()
    FILTER_HINT = ""
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("n", "next_page", "Next page"),
        Binding("p", "prev_page", "Prev page"),
        Binding("g", "first_page", "First page", show=False),
        Binding("G", "last_page", "Last page", show=False),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.query_filter = FilterQuery()
        self.sort = browse.Sort("id")
        self.page = None
        self._request = {}  # the last page request, repeated by reload
        self._close_filter_with_page = False  # the submitted filter line closes when its rows arrive
        self._fetching_page = False

    def compose_list(self) -> ComposeResult:
        yield TopBar(self.TITLE)
        yield DatabaseBanner(id="db-banner")

    def compose_table(self) -> ComposeResult:
        field = Input(placeholder=self.FILTER_HINT, id="filter")
        field.cursor_blink = False
        yield field
        yield Static(id="summary")
        yield PageTable(self.columns(), id="table")
        yield StableFooter()

    @property
    def table(self) -> PageTable:
        return self.query_one(PageTable)

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.table.focus()
        self.load()

    # --- paging -----------------------------------------------------------------------
    def load(self, **request) -> None:
        self._request = request
        filters = self.browse_filter()
        if filters is None:
            return
        sort = self.sort
        lister = self.lister()
        self.set_loading_summary()
        self._fetching_page = True
        self.fetch("page", lambda database: lister(database, filters, sort, limit=PAGE_SIZE, **request))

    def show_page(self, page) -> None:
        self.close_submitted_filter()
        if not page.rows and self._request.get("after") is not None:
            self.notify("That was the last page.", markup=False)
            self.update_summary()
            return
        self.page = page
        self.table.show(page, cursor_at_end=self._request.get("before") is not None)
        self.update_summary()

    def failed_page(self, message: str) -> None:
        self.close_submitted_filter()
        self.update_summary(error="page not loaded (ctrl+r retries)")

    def action_next_page(self) -> None:
        if self.page is None:
            self.load()  # nothing shown yet (e.g. the database was away): try again
        elif not self.page.has_next:
            self.notify("No next page.", markup=False)
        else:
            self.load(after=self.page.last)

    def action_prev_page(self) -> None:
        if self.page is None:
            self.load()
        elif not self.page.has_prev:
            self.notify("Already on the first page.", markup=False)
        else:
            self.load(before=self.page.first)

    def action_first_page(self) -> None:
        self.load()

    def action_last_page(self) -> None:
        self.load(last=True)

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.load(**self._request)

    # --- sorting ----------------------------------------------------------------------
    def on_page_table_header_selected(self, event: PageTable.HeaderSelected) -> None:
        event.stop()
        column = self.table.sort_for(event.column_key)
        if column is None:
            self.notify("This column cannot be sorted.", markup=False)
            return
        self.sort = self.sort.toggled(column)
        self.load()

    def action_cycle_sort(self) -> None:
        columns = self.table.sortable
        index = columns.index(self.sort.column) if self.sort.column in columns else -1
        self.sort = browse.Sort(columns[(index + 1) % len(columns)], False)
        self.load()

    def action_reverse_sort(self) -> None:
        self.sort = browse.Sort(self.sort.column, not self.sort.descending)
        self.load()

    # --- filtering --------------------------------------------------------------------
    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        self._close_filter_with_page = False  # a page still on its way must not close this one
        field.value = self.query_filter.text()
        field.display = True
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        event.stop()
        try:
            query = parse_filter(event.value, allowed=self.FILTER_KEYS)
        except UsageError as exc:
            self.notify(exc.one_line(), title="Filter", severity="error", markup=False)
            return
        # The line stays open (its filter shown) until the rows arrive: closing it moves the
        # focus, which repaints every row of the table, so it is done in the same frame as
        # the new rows (one repaint instead of two, ~30 ms later: the query's time).
        self._close_filter_with_page = True
        self._fetching_page = False
        self.apply_filter(query)
        if not self._fetching_page:  # nothing to wait for (no query was started)
            self.close_submitted_filter()

    def close_submitted_filter(self) -> None:
        if self._close_filter_with_page:
            self._close_filter_with_page = False
            self.query_one("#filter", Input).display = False
            self.table.focus()

    def on_key(self, event) -> None:
        field = self.query_one("#filter", Input)
        if event.key == "escape" and field.has_focus:
            event.stop()
            self._close_filter_with_page = False
            field.display = False
            self.table.focus()

    def action_clear_filter(self) -> None:
        if not self.query_filter.is_empty:
            self.apply_filter(FilterQuery())

    def apply_filter(self, query: FilterQuery) -> None:
        self.query_filter = query
        self.load()

    # --- summary line -----------------------------------------------------------------
    def set_loading_summary(self) -> None:
        self.update_summary(loading=True)

    def update_summary(self, *, loading: bool = False, error: str | None = None) -> None:
        line = Text()
        line.append("Filter: ", style="bold")
        if self.query_filter.is_empty:
            line.append("none (press / to filter)", style="dim")
        else:
            line.append(escape_text(self.describe_filter()))  # quotes an email
        line.append("   ")
        page = self.page
        if page is not None and page.rows:
            line.append(f"{len(page.rows)} rows, ids {page.rows[0].id}…{page.rows[-1].id}")
            more = [label for flag, label in ((page.has_prev, "p: previous"), (page.has_next, "n: next")) if flag]
            if more:
                line.append(f" ({', '.join(more)})", style="dim")
        elif page is not None:
            line.append("no rows match", style="yellow")
        direction = "▼" if self.sort.descending else "▲"
        line.append(f"   sorted by {self.sort.column} {direction}", style="dim")
        if loading:
            line.append("   loading…", style="italic")
        if error:
            line.append(f"   {error}", style="red")
        # One line of fixed size: a repaint, not a layout of the whole screen.
        self.query_one("#summary", Static).update(line, layout=False)

    def describe_filter(self) -> str:
        return self.query_filter.text()

    # --- for subclasses ---------------------------------------------------------------
    def columns(self) -> list[Column]:
        raise NotImplementedError

    def lister(self):
        raise NotImplementedError

    def browse_filter(self):
        raise NotImplementedError


class InstallationsScreen(ListScreen):
    TITLE = "Installations"
    FILTER_KEYS = ("app", "status", "email", "code", "user")
    FILTER_HINT = "app:stripe status:configured code:secret.plaintext  (words match the email; enter applies)"
    BINDINGS = ListScreen.BINDINGS + [Binding("enter", "open", "Open", show=True)]

    def __init__(self):
        super().__init__()
        self.overview = None
        self.user_label: str | None = None  # the email, when filtered to one user from the users list

    def compose(self) -> ComposeResult:
        yield from self.compose_list()
        yield OverviewStrip(id="overview")
        yield from self.compose_table()

    def on_mount(self) -> None:
        self.take_pending_filter()
        super().on_mount()
        self.refresh_overview()  # "counting…" until the counts arrive
        # The counts start once the first page is on screen (show_page): on a big table they
        # cost a scan, and on two cores they would slow the page the operator waits for.

    def on_screen_resume(self) -> None:
        if self.take_pending_filter():
            self.load()

    def take_pending_filter(self) -> bool:
        pending = self.app.pending_installation_filter
        if pending is None:
            return False
        self.app.pending_installation_filter = None
        self.query_filter, self.user_label = pending
        return True

    def reload(self) -> None:
        super().reload()
        self.load_overview()

    def show_page(self, page) -> None:
        super().show_page(page)
        if self.overview is None and "overview" not in self._tokens:
            self.load_overview()

    def failed_page(self, message: str) -> None:
        super().failed_page(message)
        if self.overview is None and "overview" not in self._tokens:
            self.load_overview()

    def load_overview(self) -> None:
        self.fetch("overview", browse.overview)

    def show_overview(self, overview) -> None:
        self.overview = overview
        self.refresh_overview()

    def refresh_overview(self) -> None:
        self.query_one(OverviewStrip).show(self.overview, self.app.source.app_name, self.app.report)

    def on_report_changed(self, message) -> None:
        self.refresh_overview()
        self.table.refresh_cells()
        if self.query_filter.code:
            self.load()

    def columns(self) -> list[Column]:
        source = self.app.source
        findings = self.app.findings_for

        def app_cell(row):
            definition = source.app(row.app_id)
            if definition is None:
                return cells.text(f"{row.app_id} (unknown)", "red" if source.registry is not None else "")
            return cells.text(definition.name)

        def fields_cell(row):
            if row.fields_set is None:
                return Text("not an object", style="bold red")
            definition = source.app(row.app_id)
            total = f"/{len(definition.fields)}" if definition is not None else ""
            return Text(f"{row.fields_set}{total}")

        return [
            Column("id", "ID", lambda r: Text(str(r.id), justify="right"), "id"),
            Column("email", "User", lambda r: cells.text(r.email), "email"),
            Column("app", "App", app_cell, "app"),
            Column("status", "Status", lambda r: cells.status(r.status), "status"),
            Column("fields", "Fields", fields_cell),
            Column("updated", "Updated", lambda r: cells.timestamp(r.updated_at), "updated"),
            Column("findings", "Findings", lambda r: cells.findings_marker(findings(r.id))),
        ]

    def lister(self):
        return browse.list_installations

    def browse_filter(self):
        query = self.query_filter
        ids = None
        if query.code:
            report = self.app.report
            if report is None:
                self.notify("Run the audit first (a, then r) to filter by finding code.", title="Filter",
                            severity="warning", markup=False)
                self.query_filter = query = FilterQuery(**{**query.__dict__, "code": None})
            else:
                ids = self.app.installation_ids_with(None if query.code == ANY_FINDING else query.code)
        app_id = None
        if query.app:
            names = {app_id: self.app.source.app_name(app_id) for app_id in self.app.source.app_ids()}
            app_id = resolve_app(query.app, names)
        return browse.InstallationFilter(
            app_id=app_id, status=query.status, email=query.email, user_id=query.user_id,
            installation_ids=frozenset(ids) if ids is not None else None,
        )

    def describe_filter(self) -> str:
        text = self.query_filter.text()
        if self.user_label and self.query_filter.user_id is not None:
            text += f"  ({self.user_label})"
        return text

    def apply_filter(self, query: FilterQuery) -> None:
        if query.user_id != self.query_filter.user_id:
            self.user_label = None
        super().apply_filter(query)

    def action_open(self) -> None:
        row = self.table.current
        if row is not None:
            self.app.open_installation(row.id)

    def on_page_table_row_selected(self, event: PageTable.RowSelected) -> None:
        event.stop()
        self.app.open_installation(event.row.id)
