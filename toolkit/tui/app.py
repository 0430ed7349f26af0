"""DashboardApp: the modes (installations, users, audit), database health, the audit report,
and screenshots that keep revealed secrets out unless asked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen

from . import preferences
from .filters import FilterQuery
from .messages import DatabaseFailed, DatabaseOk, ReportChanged
from .screens.audit import AuditScreen, saved_report
from .screens.installation import InstallationScreen
from .screens.installations import InstallationsScreen
from .screens.users import UsersScreen
from .workers import DaemonThreads, InFlight

HEALTH_CHECK_SECONDS = 3.0
# A call unanswered this long shows "waiting for the database (N s)", counting every second.
WAITING_AFTER_SECONDS = 1.0


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
    db_waiting: var[int | None] = var(None)  # whole seconds the oldest database call has waited

    def __init__(self, source, *, write: bool = False, health_check_seconds: float = HEALTH_CHECK_SECONDS,
                 waiting_after_seconds: float = WAITING_AFTER_SECONDS):
        super().__init__()
        self.source = source
        self.write_enabled = write
        self.report = None
        self._findings_by_installation: dict[int, list] = {}
        self._ids_by_code: dict[str, set[int]] = {}
        self.pending_installation_filter: tuple[FilterQuery, str | None] | None = None
        self.include_secrets_in_screenshot = False
        self._health_seconds = health_check_seconds
        self._health_timer = None
        self.db_calls = InFlight()
        self._waiting_after = waiting_after_seconds
        self._ping = InFlight()  # at most one health check at a time
        self.sub_title = ("DEMO · " if source.is_demo else "") + ("write mode" if write else "read-only")
        self.preferences = preferences.load(source.settings)
        saved = saved_report(source)  # the latest saved audit: `code:` filters work at once
        if saved is not None:
            self.set_report(saved)

    def on_mount(self) -> None:
        theme = self.preferences.get("theme")
        if theme in self.available_themes:
            self.theme = theme
        self.theme_changed_signal.subscribe(self, self._save_theme)
        self.set_interval(min(1.0, self._waiting_after), self._count_waiting)

    def _save_theme(self, theme) -> None:
        if self.preferences.get("theme") == theme.name:
            return
        self.preferences["theme"] = theme.name
        try:
            preferences.save(self.source.settings, self.preferences)
        except OSError as exc:
            self.notify(f"The theme is not saved: {exc}", severity="warning", markup=False)

    # --- files: exports and screenshots ---------------------------------------------------
    def export_folder(self) -> Path:
        """TOOLKIT_EXPORT_DIR or the user data dir's `exports`, created if missing."""
        folder = self.source.settings.export_directory()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Save the SVG in the export folder (Textual's default, ~/Downloads, may not exist) and say where."""
        try:
            folder = Path(path) if path else self.export_folder()
            target = folder / (filename or f"dashboard-{dt.datetime.now():%Y%m%d-%H%M%S}.svg")
            target.write_text(self.export_screenshot(), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Screenshot not saved: {exc}", title="Screenshot", severity="error", markup=False)
            return None
        self.notify(f"Saved to {target}", title="Screenshot", markup=False)
        return str(target)

    def on_load(self) -> None:
        import asyncio

        # Thread workers on daemon threads that quitting never joins (see DaemonThreads), and
        # blocking waits in them (DataSource.prepare_threads): q never waits on the database.
        asyncio.get_running_loop().set_default_executor(DaemonThreads())
        self.source.prepare_threads()

    def _count_waiting(self) -> None:
        seconds = self.db_calls.oldest_seconds()
        self.db_waiting = int(seconds) if seconds is not None and seconds >= self._waiting_after else None

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
        if len(self._ping):
            return  # the last one is still waiting for an answer (the banner counts it)
        token = self._ping.begin()  # here, on the UI thread: two quick retries start one ping

        def ping():
            from ..errors import DatabaseError

            try:
                with app.db_calls.waiting():
                    source.ping()
            except DatabaseError as exc:
                app.post_message(DatabaseFailed(exc.one_line()))
                return
            finally:
                app._ping.end(token)
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
        tables = [screen for screen in self._all_screens() if hasattr(screen, "mask_revealed")]
        for screen in tables:
            screen.mask_revealed(True)  # a revealed value in its row shows its mask again
        try:
            yield
        finally:
            for screen in tables:
                screen.mask_revealed(False)

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
        if getattr(screen, "revealed", None) is not None and screen.revealed.keys:
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
