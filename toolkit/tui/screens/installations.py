"""The installations list: the screen `toolkit dashboard` opens on.

One keyset page at a time (n / p, g / G for first / last; moving past the last row loads the
next page, past the first the previous one), filter with `/` (completes keys and values with
→, filters as you type), sort by clicking a header or with s / S, enter opens one
installation, `id:N` jumps to it. The summary line says which rows are shown and how many
match (a capped count, `browse.count_installations`). The overview strip counts by status
and app (its own worker: on a million rows the page comes first, the counts a moment later).
`E` exports the whole filtered list (CSV or JSON), `y` copies the row under the cursor, `c`
one of its cells (as shown: escaped).
"""

from __future__ import annotations

import datetime as dt
import json

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import Input, Static

from ... import browse
from ...codes import ALL_CODES, select_codes
from ...db import APP_STATUSES, ROLES
from ...errors import UsageError
from ...safe_text import escape_text
from .. import cells
from ..clipboard import copy_text
from ..filters import ANY_FINDING, FilterQuery, complete, parse_filter, resolve_apps, split_list
from ..widgets import Column, DatabaseBanner, OverviewStrip, PageTable, StableFooter, TopBar
from ..workers import DataScreen
from .modals import ChoiceScreen

PAGE_SIZE = browse.DEFAULT_PAGE_SIZE
LIVE_FILTER_SECONDS = 0.3  # typing pauses this long before the list follows the filter line


class FilterSuggester(Suggester):
    """Inline completion of the filter line (→ accepts): keys, app ids and names, codes, statuses."""

    def __init__(self, screen: "ListScreen"):
        super().__init__(use_cache=False, case_sensitive=True)
        self.screen = screen

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value, self.screen.completion_values(), allowed=self.screen.FILTER_KEYS)


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
        Binding("y", "copy_row", "Copy row", show=False),
        Binding("c", "copy_cell", "Copy cell", show=False),
        Binding("E", "export", "Export list", show=False),
    ]
    NOUN = "rows"

    def __init__(self):
        super().__init__()
        self.query_filter = FilterQuery()
        self.sort = browse.Sort("id")
        self.page = None
        self._request = {}  # the last page request, repeated by reload
        self._close_filter_with_page = False  # the submitted filter line closes when its rows arrive
        self._fetching_page = False
        self.start: int | None = 0  # the position of the page's first row among the matches
        self._request_start: object = 0  # what start becomes when the requested page arrives
        self.matches: browse.MatchCount | None = None
        self._live_timer = None
        self._submitted = False  # enter (not typing) applied the filter: `id:N` then opens N

    def compose_list(self) -> ComposeResult:
        yield TopBar(self.TITLE)
        yield DatabaseBanner(id="db-banner")

    def compose_table(self) -> ComposeResult:
        field = Input(placeholder=self.FILTER_HINT, id="filter", suggester=FilterSuggester(self))
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
        """Fetch a page: the first (no arguments), `after=`/`before=` a cursor, or `last=True`."""
        self._request_start = self._start_for(request)
        self._load(request)

    def _start_for(self, request):
        """Where the requested page will start among the matches (None: unknown, e.g. the last page of a capped count)."""
        if not request:
            return 0
        if self.start is None or self.page is None:
            return None
        if request.get("after") is not None:
            return self.start + len(self.page.rows)
        if request.get("before") is not None:
            return ("before", self.start)
        return "last"

    def _load(self, request) -> None:
        self._request = request
        filters = self.browse_filter()
        if filters is None:
            return
        sort = self.sort
        lister = self.lister()
        self.set_loading_summary()
        self._fetching_page = True
        self.fetch("page", lambda database: lister(database, filters, sort, limit=PAGE_SIZE, **request))
        if not request:  # a new filter or sort: count again (the count ignores the sort, but is cheap)
            self.load_count(filters)

    def load_count(self, filters) -> None:
        counter = self.counter()
        if counter is not None:
            self.matches = None
            self.fetch("count", lambda database: counter(database, filters))

    def show_count(self, matches) -> None:
        self.matches = matches
        if self.start is None and self.page is not None and matches.exact and not self.page.has_next:
            self.start = max(0, matches.count - len(self.page.rows))  # the last page, now placed
        self.update_summary()

    def failed_count(self, message: str) -> None:
        self.update_summary()

    def show_page(self, page) -> None:
        self.close_submitted_filter()
        if not page.rows and self._request.get("after") is not None:
            self.notify("That was the last page.", markup=False)
            self.update_summary()
            return
        self.page = page
        self.start = self._place(page, self._request_start)
        self.table.show(page, cursor_at_end=self._request.get("before") is not None)
        self.update_summary()
        if self._submitted:
            self._submitted = False
            self.filter_applied()

    def _place(self, page, start):
        if isinstance(start, tuple):  # before: this page ends where the previous one started
            return 0 if not page.has_prev else max(0, start[1] - len(page.rows))
        if start == "last":
            if self.matches is not None and self.matches.exact:
                return max(0, self.matches.count - len(page.rows))
            return None
        return start

    def on_page_table_edge_reached(self, event: PageTable.EdgeReached) -> None:
        event.stop()
        if self.page is None or "page" in self._pending_groups():
            return
        if event.forward and self.page.has_next:
            self.load(after=self.page.last)
        elif not event.forward and self.page.has_prev:
            self.load(before=self.page.first)

    def _pending_groups(self) -> set[str]:
        return {worker.group for worker in self.workers if worker.is_running}

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
        self._load(self._request)  # the same page at the same place

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

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter" or not event.input.display:
            return
        event.stop()
        if self._live_timer is not None:
            self._live_timer.stop()
        value = event.value
        self._live_timer = self.set_timer(LIVE_FILTER_SECONDS, lambda: self.live_filter(value))

    def live_filter(self, value: str) -> None:
        """The list follows the filter line as it is typed (a half-typed line that does not
        parse yet waits for more; enter says why)."""
        self._live_timer = None
        field = self.query_one("#filter", Input)
        if not field.display or field.value != value:
            return
        try:
            query = parse_filter(value, allowed=self.FILTER_KEYS)
        except UsageError:
            return
        if query != self.query_filter:
            self._submitted = False
            self.apply_filter(query)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        event.stop()
        if self._live_timer is not None:
            self._live_timer.stop()
            self._live_timer = None
        self._submitted = True
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
        if query == self.query_filter and self.page is not None and "page" not in self._pending_groups():
            self._submitted = False  # already applied while typing: only close the line
            self.close_submitted_filter()
            self.filter_applied()
            return
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

    def filter_applied(self) -> None:
        """The submitted filter's rows are on screen (InstallationsScreen opens `id:N`)."""

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
        page = self.page
        if page is not None and page.rows:
            line.append(self.shown_text(page), style="bold")
            if self.matches is not None:
                line.append(f" of {self.matches.describe(self.NOUN)}")
            else:
                line.append(" shown")
        elif page is not None:
            line.append(f"no {self.NOUN} match", style="yellow")
        direction = "▼" if self.sort.descending else "▲"
        line.append(f" · sorted by {self.sort.column} {direction}", style="dim")
        line.append(" · filter: ", style="dim")
        if self.query_filter.is_empty:
            line.append("none (/)", style="dim")
        else:
            line.append(escape_text(self.describe_filter()))  # quotes an email
        if loading:
            line.append("   loading…", style="italic")
        if error:
            line.append(f"   {error}", style="red")
        # One line of fixed size: a repaint, not a layout of the whole screen.
        self.query_one("#summary", Static).update(line, layout=False)

    def shown_text(self, page) -> str:
        """Which rows are on screen: their positions among the matches when known."""
        if self.start is None:
            return f"last {len(page.rows)}"
        return f"{self.start + 1:,}–{self.start + len(page.rows):,}"

    def describe_filter(self) -> str:
        return self.query_filter.text()

    def completion_values(self) -> dict[str, list[str]]:
        return {"status": list(APP_STATUSES), "role": list(ROLES)}

    # --- getting rows out -------------------------------------------------------------
    def action_copy_row(self) -> None:
        row = self.table.current
        if row is None:
            return
        record = {name: (value.isoformat() if isinstance(value, dt.datetime) else value)
                  for name, value in vars(row).items()} if hasattr(row, "__dict__") else {}
        self.notify(copy_text(self.app, json.dumps(record, ensure_ascii=False), f"row {row.id}"), markup=False)

    def action_copy_cell(self) -> None:
        """Pick one of the row's shown columns; its cell goes out as the screen shows it."""
        row = self.table.current
        if row is None:
            return
        columns = [column for column in self.table.specs if column.key in self.table.visible_columns]
        labels = [column.label for column in columns]

        def chosen(label):
            if label is None:
                return
            column = columns[labels.index(label)]
            text = column.render(row).plain
            self.notify(copy_text(self.app, text, f"{column.label.lower()} of row {row.id}"), markup=False)

        self.app.push_screen(ChoiceScreen(Text(f"Copy which cell of row {row.id}?"), labels), chosen)

    def action_export(self) -> None:
        self.notify("This list has no export.", markup=False)

    # --- for subclasses ---------------------------------------------------------------
    def columns(self) -> list[Column]:
        raise NotImplementedError

    def lister(self):
        raise NotImplementedError

    def counter(self):
        """A function (database, filters) -> browse.MatchCount, or None when the list has no count."""
        return None

    def browse_filter(self):
        raise NotImplementedError


class InstallationsScreen(ListScreen):
    TITLE = "Installations"
    FILTER_KEYS = ("id", "app", "status", "email", "code", "user")
    FILTER_HINT = "id:42  app:stripe,slack status:configured code:secret  (→ completes; words match the email)"
    BINDINGS = ListScreen.BINDINGS + [Binding("enter", "open", "Open", show=True)]
    NOUN = "installations"

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

    def failed_page(self, message: str) -> None:
        super().failed_page(message)
        if self.overview is None and "overview" not in self._tokens:
            self.load_overview()

    def load_overview(self) -> None:
        self.fetch("overview", self.app.source.overview)

    def show_overview(self, overview) -> None:
        self.overview = overview
        self.refresh_overview()
        if self.query_filter.is_empty:
            self.show_count(browse.MatchCount(overview.total))  # exact, from the counts already made

    def counter(self):
        count_installations = self.app.source.count_installations

        def count(database, filters):
            if filters.is_empty:
                return None  # the overview's total answers it exactly (show_overview)
            return count_installations(database, filters)

        return count

    def show_count(self, matches) -> None:
        if matches is not None:
            super().show_count(matches)
        elif self.overview is not None:
            super().show_count(browse.MatchCount(self.overview.total))

    def show_page(self, page) -> None:
        super().show_page(page)
        if self.overview is None and "overview" not in self._tokens:
            self.load_overview()

    def filter_applied(self) -> None:
        """`id:N` submitted with enter: open N (typing `id:1` on the way to `id:12` does not)."""
        ids = self.query_filter.ids
        if len(ids) != 1 or self.page is None:
            return
        if any(row.id == ids[0] for row in self.page.rows):
            self.app.open_installation(ids[0])
        else:
            self.notify(f"No installation {ids[0]} (with this filter).", severity="warning", markup=False)

    def completion_values(self) -> dict[str, list[str]]:
        source = self.app.source
        apps = source.app_ids()
        return {
            **super().completion_values(),
            "app": apps + [source.app_name(app_id) for app_id in apps],
            "code": [ANY_FINDING, *sorted({code.split(".")[0] for code in ALL_CODES}), *ALL_CODES],
        }

    def action_export(self) -> None:
        filters = self.browse_filter()
        if filters is None:
            return
        sort = self.sort
        self.app.push_screen(ChoiceScreen(Text("Export every installation this filter matches as"),
                                          list(browse.EXPORT_FORMATS), "csv"),
                             lambda fmt: fmt and self._export(filters, sort, fmt))

    def _export(self, filters, sort, fmt: str) -> None:
        try:
            folder = self.app.export_folder()
        except OSError as exc:
            self.notify(f"Cannot create the export folder: {exc}", severity="error", markup=False)
            return
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"installations-{stamp}.{fmt}"
        export = self.app.source.export_installations
        self.fetch("export", lambda database: (path, export(database, path, fmt, filters, sort)))

    def show_export(self, result) -> None:
        path, count = result
        self.notify(f"Exported {count:,} installations to {path}", title="Export", markup=False)

    def failed_export(self, message: str) -> None:
        self.notify(message, title="Export failed", severity="error", markup=False)

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

        # The essential columns first (they fit 80 columns); the others go when it is narrow.
        return [
            Column("id", "ID", lambda r: Text(str(r.id), justify="right"), "id"),
            Column("email", "User", lambda r: cells.text(r.email), "email", shrink=16),
            Column("app", "App", app_cell, "app", shrink=10),
            Column("status", "Status", lambda r: cells.status(r.status), "status"),
            Column("findings", "Findings", lambda r: cells.findings_marker(findings(r.id))),
            Column("fields", "Fields", fields_cell, optional=True),
            Column("updated", "Updated", lambda r: cells.timestamp(r.updated_at), "updated", optional=True),
        ]

    def lister(self):
        return self.app.source.list_installations

    def browse_filter(self):
        query = self.query_filter
        ids = set(query.ids) if query.ids else None
        if query.code:
            report = self.app.report
            if report is None:
                self.notify("Run the audit first (a, then r) to filter by finding code.", title="Filter",
                            severity="warning", markup=False)
                self.query_filter = query = FilterQuery(**{**query.__dict__, "code": None})
            else:
                try:
                    with_code = self._ids_with_codes(query.code)
                except UsageError as exc:
                    self.notify(exc.one_line(), title="Filter", severity="error", markup=False)
                    return None
                ids = with_code if ids is None else ids & with_code
        app_ids = None
        if query.app:
            names = {app_id: self.app.source.app_name(app_id) for app_id in self.app.source.app_ids()}
            app_ids = resolve_apps(query.app, names)
        statuses = split_list(query.status) if query.status else None
        return browse.InstallationFilter(
            app_id=app_ids, status=statuses, email=query.email, user_id=query.user_id,
            installation_ids=frozenset(ids) if ids is not None else None,
        )

    def _ids_with_codes(self, text: str) -> set[int]:
        """Installations with a finding of any code the words name (ids, prefixes, globs: the CLI's --code)."""
        if text == ANY_FINDING:
            return self.app.installation_ids_with(None)
        ids: set[int] = set()
        for code in select_codes(split_list(text)):
            ids |= self.app.installation_ids_with(code)
        return ids

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
