"""DashboardApp: the modes (installations, users, audit), database health, the audit report,
and screenshots that keep revealed secrets out unless asked.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen

from .filters import FilterQuery
from .messages import DatabaseFailed, DatabaseOk, ReportChanged
from .screens.audit import AuditScreen, saved_report
from .screens.installation import InstallationScreen
from .screens.installations import InstallationsScreen
from .screens.users import UsersScreen
from .widgets import RevealedValues

HEALTH_CHECK_SECONDS = 3.0


class DashboardApp(App):
    CSS_PATH = "dashboard.tcss"
    TITLE = "toolkit dashboard"
    MODES = {"installations": InstallationsScreen, "users": UsersScreen, "audit": AuditScreen}
    DEFAULT_MODE = "installations"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "toggle_help", "Keys"),
        Binding("i", "switch_mode('installations')", "Installations"),
        Binding("u", "switch_mode('users')", "Users"),
        Binding("a", "switch_mode('audit')", "Audit"),
    ]

    db_error: var[str | None] = var(None)

    def __init__(self, source, *, write: bool = False, health_check_seconds: float = HEALTH_CHECK_SECONDS):
        super().__init__()
        self.source = source
        self.write_enabled = write
        self.report = None
        self._findings_by_installation: dict[int, list] = {}
        self._ids_by_code: dict[str, set[int]] = {}
        self.pending_installation_filter: tuple[FilterQuery, str | None] | None = None
        self.capturing_redacted = False  # RevealedValues render masked while True
        self.include_secrets_in_screenshot = False
        self._health_seconds = health_check_seconds
        self._health_timer = None
        self.sub_title = ("DEMO · " if source.is_demo else "") + ("write mode" if write else "read-only")
        saved = saved_report(source)  # the latest saved audit: `code:` filters work at once
        if saved is not None:
            self.set_report(saved)

    # --- navigation -------------------------------------------------------------------
    def open_installation(self, installation_id: int) -> None:
        self.push_screen(InstallationScreen(installation_id))

    def show_installations(self, query: FilterQuery, label: str | None = None) -> None:
        """Switch to the installations list with `query` applied."""
        self.pending_installation_filter = (query, label)
        if self.current_mode == "installations":
            while len(self.screen_stack) > 1:
                self.pop_screen()
            screen = self.screen
            if isinstance(screen, InstallationsScreen) and screen.take_pending_filter():
                screen.load()
        else:
            self.switch_mode("installations")

    def show_users(self, user_id: int | None = None) -> None:
        """Switch to the users list, filtered to one user when `user_id` is given."""
        self.switch_mode("users")
        if user_id is not None:
            self.call_after_refresh(self._filter_users, user_id)

    def _filter_users(self, user_id: int) -> None:
        screen = self.screen
        if isinstance(screen, UsersScreen):
            screen.apply_filter(FilterQuery(user_id=user_id))

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # --- the audit report -------------------------------------------------------------
    def set_report(self, report) -> None:
        self.report = report
        by_installation: dict[int, list] = defaultdict(list)
        by_code: dict[str, set[int]] = defaultdict(set)
        for finding in report.findings:
            if finding.installation_id is not None:
                by_installation[finding.installation_id].append(finding)
                by_code[finding.code].add(finding.installation_id)
        self._findings_by_installation = dict(by_installation)
        self._ids_by_code = dict(by_code)
        for screen in self._all_screens():
            screen.post_message(ReportChanged())

    def findings_for(self, installation_id: int) -> list:
        return self._findings_by_installation.get(installation_id, [])

    def installation_ids_with(self, code: str | None) -> set[int]:
        """Installations with a finding of `code` (any code when None)."""
        if code is None:
            return set(self._findings_by_installation)
        return self._ids_by_code.get(code, set())

    def data_changed(self) -> None:
        """A write went through: lists reload when shown again."""
        for screen in self._all_screens():
            if isinstance(screen, InstallationsScreen | UsersScreen):
                screen.reload()

    def _all_screens(self) -> Iterable[Screen]:
        seen = set()
        for stack in self._screen_stacks.values():
            for screen in stack:
                if id(screen) not in seen:
                    seen.add(id(screen))
                    yield screen

    # --- database health --------------------------------------------------------------
    def on_database_failed(self, message: DatabaseFailed) -> None:
        first = self.db_error is None
        self.db_error = message.message
        if first:
            self.notify(message.message, title="Database unavailable", severity="error", markup=False)
        if self._health_timer is None:
            self._health_timer = self.set_interval(self._health_seconds, self.check_database)

    def on_database_ok(self, message: DatabaseOk) -> None:
        if self.db_error is None:
            return
        self.db_error = None
        if self._health_timer is not None:
            self._health_timer.stop()
            self._health_timer = None
        self.notify("The database is back.", title="Database", markup=False)
        screen = self.screen
        if hasattr(screen, "reload"):
            screen.reload()

    def check_database(self) -> None:
        """The health check: one `SELECT 1` on its own connection, in a thread."""
        source = self.source
        app = self

        def ping():
            from ..errors import DatabaseError

            try:
                source.ping()
            except DatabaseError as exc:
                app.post_message(DatabaseFailed(exc.one_line()))
                return
            app.post_message(DatabaseOk())

        self.run_worker(ping, thread=True, group="health", name="health", exclusive=False, exit_on_error=False)

    # --- screenshots without secrets ------------------------------------------------------
    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        """Every SVG (command palette, save_screenshot, tests) goes through here: revealed
        values render masked unless the operator asked for them."""
        if self.include_secrets_in_screenshot:
            return super().export_screenshot(title=title, simplify=simplify)
        with self._redacted():
            return super().export_screenshot(title=title, simplify=simplify)

    @contextlib.contextmanager
    def _redacted(self):
        widgets = [w for screen in self._all_screens() for w in screen.query(RevealedValues)]
        self.capturing_redacted = True
        for widget in widgets:
            widget.refresh()  # marks it dirty now: the capture below re-renders it masked
        try:
            yield
        finally:
            self.capturing_redacted = False
            for widget in widgets:
                widget.refresh()

    def screenshot_with_secrets(self) -> None:
        self.include_secrets_in_screenshot = True
        try:
            self.deliver_screenshot()
        finally:
            self.include_secrets_in_screenshot = False

    # --- command palette --------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Installations", "List installations (i)", lambda: self.switch_mode("installations"))
        yield SystemCommand("Users", "List users (u)", lambda: self.switch_mode("users"))
        yield SystemCommand("Audit", "Audit findings (a)", lambda: self.switch_mode("audit"))
        yield SystemCommand("Retry database", "Check the database connection now",
                            self.check_database)
        # Every binding of the active screen, so each action is also in the palette.
        for key, binding in _screen_bindings(screen):
            if screen.check_action(binding.action, ()) is False:
                continue
            yield SystemCommand(binding.description or binding.action, f"{binding.description} ({key})",
                                _runner(screen, binding.action))
        if screen.query(RevealedValues) and any(w.keys for w in screen.query(RevealedValues)):
            yield SystemCommand("Screenshot with revealed values",
                                "Save an SVG that INCLUDES the revealed secrets",
                                lambda: self.set_timer(0.1, self.screenshot_with_secrets))


def _screen_bindings(screen):
    seen = set()
    for binding in getattr(screen, "BINDINGS", []):
        if isinstance(binding, Binding) and binding.action not in seen and binding.description:
            seen.add(binding.action)
            yield binding.key, binding


def _runner(screen, action: str):
    return lambda: screen.run_action(action)
