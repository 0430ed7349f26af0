"""One installation: its user, app, status, timestamps, findings, and its config — secrets masked.

What is shown is `toolkit.inspection`'s view (the one `toolkit show` and the notebooks use),
rendered by config_view. Revealing a secret is deliberate: `v` on a masked field asks
"Reveal <field> of installation N? This is logged.", then `inspection.reveal` writes the
access log line (before anything is shown), and the value replaces its mask in its row
(held by `RevealedValues`, the one holder of plaintexts). Leaving the screen (escape,
switching screens, another screen on top) forgets every revealed value; dialogs and the
command palette over it do not (the rows behind a dialog show their masks meanwhile). `j` shows the config as JSON, every secret masked.

With `--write`: change the status, edit a non-secret field, set a secret (masked input,
encrypted with the current key by the config service), uninstall — each after a confirmation;
an edit the config service would refuse is shown with its problems and cannot be confirmed.
Each write is a compare-and-swap against the row this screen loaded (a change made meanwhile by
someone else is refused with a message, never overwritten).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ... import inspection
from ...db import APP_STATUSES
from ...errors import ToolkitError
from ...safe_text import escape_text, is_safe
from .. import cells
from ..config_view import raw_config, row_cells, state_words, value_cell
from ..messages import Written
from ..revealed import RevealedValues
from ..widgets import DatabaseBanner, StableFooter, TopBar
from ..workers import DataScreen
from .modals import ChoiceScreen, ConfirmScreen, InputScreen, TextScreen

WRITE_ACTIONS = ("change_status", "edit_field", "set_secret", "uninstall")


class InstallationScreen(DataScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("v", "reveal", "Reveal/hide secret"),
        Binding("j", "raw", "Raw JSON"),
        Binding("c", "copy", "Copy revealed"),
        Binding("t", "change_status", "Status"),
        Binding("e", "edit_field", "Edit field"),
        Binding("k", "set_secret", "Set secret"),
        Binding("x", "uninstall", "Uninstall"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, installation_id: int):
        super().__init__()
        self.installation_id = installation_id
        self.detail: inspection.InstallationView | None = None
        self.rows: dict[str, inspection.FieldView] = {}
        self.revealed = RevealedValues()
        self._masked_for: set[str] = set()  # why revealed cells show their masks now: "dialog", "capture"

    def compose(self) -> ComposeResult:
        yield TopBar(f"Installation {self.installation_id}")
        yield DatabaseBanner(id="db-banner")
        yield Static(Text("loading…", style="dim"), id="details")
        table = DataTable(cursor_type="row", zebra_stripes=True, id="config")
        self._value_column = table.add_columns("Field", "Key", "Type", "Value")[-1]
        yield table
        yield StableFooter()

    def on_mount(self) -> None:
        self.query_one("#config", DataTable).focus()
        self.reload()

    def check_action(self, action: str, parameters) -> bool | None:
        if action in WRITE_ACTIONS and not self.app.write_enabled:
            return False  # hidden from the footer and the palette in read-only mode
        return True

    # --- loading ----------------------------------------------------------------------
    def reload(self) -> None:
        installation_id = self.installation_id
        source = self.app.source
        self.fetch("detail", lambda database: source.load_installation(database, installation_id))

    def action_reload(self) -> None:
        self.reload()

    def show_detail(self, detail: inspection.InstallationView) -> None:
        self.detail = detail
        self.query_one("#details", Static).update(self._details_text(detail))
        table = self.query_one("#config", DataTable)
        cursor = table.cursor_row
        table.clear()
        self.rows = {}
        for field in detail.fields:
            self.rows[field.key] = field
            table.add_row(*row_cells(field, self._shown_secret(field.key)), key=field.key)
        if table.row_count:
            table.move_cursor(row=min(max(cursor, 0), table.row_count - 1))

    def failed_detail(self, message: str) -> None:
        self.query_one("#details", Static).update(Text(message, style="red"))

    def _details_text(self, detail: inspection.InstallationView) -> Text:
        out = Text()
        out.append(f"Installation {detail.id}", style="bold")
        out.append("  ·  ")
        if detail.app_known:
            out.append(escape_text(detail.app_name), style="bold")
            out.append(f" ({escape_text(detail.app_id)})", style="dim")
        else:
            out.append(f"{escape_text(detail.app_id)} — not in the registry", style="bold red")
        out.append("  ·  ")
        out.append_text(cells.status(detail.status))
        out.append("\nUser ")
        out.append(escape_text(detail.user_email), style="bold")
        out.append(escape_text(f"  ({detail.user_name or 'no name'}, {detail.user_role}, user #{detail.user_id})"))
        out.append("\nInstalled ")
        out.append_text(cells.timestamp(detail.installed_at))
        out.append("   updated ")
        out.append_text(cells.timestamp(detail.updated_at))
        if detail.config_problem:
            out.append("\n")
            out.append(escape_text(f"{detail.config_problem}: the app cannot read it (audit code config.not-object)"),
                       style="bold red")
        for finding in self.app.findings_for(detail.id):
            out.append("\n")
            out.append(f"{cells.SEVERITY_MARKS.get(finding.severity, '')} {finding.code}",
                       style=cells.SEVERITY_STYLES.get(finding.severity, ""))
            if finding.field:
                out.append(f" [{escape_text(finding.field)}]")
            out.append(f" {escape_text(finding.message)}")
        return out

    # --- leaving forgets revealed values ----------------------------------------------
    def on_screen_suspend(self) -> None:
        if not isinstance(self.app.screen, ModalScreen):
            self.forget_revealed()
        else:  # a dialog on top: the rows behind it show their masks (what a screenshot then takes, too)
            self.mask_revealed(True, reason="dialog")

    def on_screen_resume(self) -> None:
        self.mask_revealed(False, reason="dialog")

    def on_unmount(self) -> None:
        self.forget_revealed()

    def forget_revealed(self) -> None:
        keys = self.revealed.keys
        self.revealed.clear()
        for key in keys:
            self.show_value(key)

    def show_value(self, key: str) -> None:
        """Redraw a field's value cell: the plaintext while revealed and nothing masks it."""
        field = self.rows.get(key)
        tables = self.query("#config")
        if field is None or not tables:
            return
        table = tables.first(DataTable)
        try:
            table.update_cell(key, self._value_column, value_cell(field, self._shown_secret(key)))
        except Exception:  # the row went with a reload: nothing to redraw
            pass

    def _shown_secret(self, key: str):
        return None if self._masked_for else self.revealed.secret(key)

    def mask_revealed(self, masked: bool, *, reason: str = "capture") -> None:
        """Revealed cells show their mask while any reason holds: a dialog on top, or a
        screenshot being taken (app._redacted). Each reason is lifted on its own."""
        (self._masked_for.add if masked else self._masked_for.discard)(reason)
        for key in self.revealed.keys:
            self.show_value(key)

    def action_back(self) -> None:
        self.forget_revealed()
        self.app.pop_screen()

    # --- reveal and copy --------------------------------------------------------------
    def current_row(self):
        table = self.query_one("#config", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.rows.get(key)

    def action_reveal(self) -> None:
        row = self.current_row()
        if row is None or self.detail is None:
            return
        if not row.masked:
            self.notify(escape_text(f"{row.label} is not a secret: its value is shown as stored."), markup=False)
            return
        if self.revealed.secret(row.key) is not None:
            self.revealed.forget(row.key)
            self.show_value(row.key)
            return
        if not row.revealable:
            self._explain_not_revealable(row)
            return
        prompt = Text(escape_text(f"Reveal {row.label} ({row.key}) of installation {self.detail.id}? This is logged."))
        self.app.push_screen(ConfirmScreen(prompt, "Reveal"), lambda yes: yes and self._reveal(row))

    def _explain_not_revealable(self, row) -> None:
        # inspection.reveal owns the reasons (no key configured, malformed, …); it logs nothing here.
        try:
            inspection.reveal(self.detail, row.key, self.app.source.settings, via="dashboard")
        except ToolkitError as exc:
            self.notify(exc.one_line(), title="Not revealed", severity="error", markup=False)
            return
        self.notify(escape_text(f"{row.label} has nothing to reveal ({state_words(row)})."), markup=False)

    def _reveal(self, row) -> None:
        try:
            # The access log is written first: if it cannot be, nothing is shown.
            inspection.reveal(self.detail, row.key, self.app.source.settings, via="dashboard")
        except ToolkitError as exc:
            self.notify(exc.one_line(), title="Not revealed", severity="error", markup=False)
            return
        # The Secret is kept (masked in any repr), not a bare str.
        self.revealed.reveal(row.key, row.value)
        self.show_value(row.key)
        self.notify(escape_text(f"{row.label} revealed (logged). It is hidden again when you leave this screen."), markup=False)

    def action_copy(self) -> None:
        row = self.current_row()
        revealed = self.revealed
        key = row.key if row is not None and revealed.secret(row.key) is not None else None
        if key is None and len(revealed.keys) == 1:
            key = revealed.keys[0]
        if key is None:
            self.notify("Reveal the field first (v), then copy it.", markup=False)
            return
        self.app.copy_to_clipboard(revealed.secret(key).reveal())
        self.notify(escape_text(f"Copied {key} to the clipboard (OSC 52; the terminal must allow it)."), markup=False)

    def action_raw(self) -> None:
        """The config as JSON, from the view (never the raw row): every secret masked."""
        if self.detail is None:
            return
        self.app.push_screen(TextScreen(Text(f"Config of installation {self.detail.id} (JSON, secrets masked)"),
                                        Text(raw_config(self.detail))))

    # --- writes (--write) ---------------------------------------------------------------
    def action_change_status(self) -> None:
        if self.detail is None:
            return
        detail = self.detail

        def chosen(status):
            if status and status != detail.status:
                prompt = Text(f"Set the status of installation {detail.id} to {status}?")
                self.app.push_screen(ConfirmScreen(prompt, "Change status"),
                                     lambda yes: yes and self._write(
                                         lambda service: service.set_status(detail.id, status,
                                                                            expected=detail.as_read),
                                         f"Installation {detail.id} is now {status}."))

        self.app.push_screen(ChoiceScreen(Text(f"Status of installation {detail.id}"), list(APP_STATUSES),
                                          detail.status), chosen)

    def action_edit_field(self) -> None:
        row = self.current_row()
        if row is None or self.detail is None:
            return
        if row.masked:
            self.notify("A secret field: use k to set it (typed masked, encrypted).", markup=False)
            return
        detail = self.detail
        # The input shows its value raw: one holding escapes starts empty (the table shows it escaped).
        current = row.value if isinstance(row.value, str) and is_safe(row.value) else ""

        def typed(value):
            if value is None or value == current:
                return
            prompt = Text(escape_text(f"Set {row.label} ({row.key}) of installation {detail.id} to "))
            prompt.append(escape_text(repr(value)), style="bold")
            prompt.append("?")
            self._confirm_change(detail, {row.key: value}, prompt, "Save", f"{row.label} saved.")

        self.app.push_screen(InputScreen(Text(escape_text(f"{row.label} ({row.key}, {row.type})")), current), typed)

    def _confirm_change(self, detail, changes: dict, prompt: Text, confirm: str, done: str) -> None:
        """Validate `changes` with the config service first; the confirmation then shows its
        problems and cannot be confirmed, or asks to save what would be accepted."""
        # Validation reads no database: done here, at once, so the typed value never travels
        # through a worker or its messages, and a silent server cannot hold the dialog back.
        problems = self.app.source.change_problems(detail.app_id, changes, status=detail.status)
        if problems:
            self.app.push_screen(ConfirmScreen(prompt, confirm, problems=[escape_text(str(p)) for p in problems]))
            return
        self.app.push_screen(ConfirmScreen(prompt, confirm),
                             lambda yes: yes and self._write(
                                 lambda service: service.update_config(detail.id, changes, expected=detail.as_read),
                                 done))

    def action_set_secret(self) -> None:
        row = self.current_row()
        if row is None or self.detail is None:
            return
        if not row.is_secret:  # the registry's password fields only
            self.notify("Not a password field of this app: use e to edit it.", markup=False)
            return
        detail = self.detail

        def typed(value):
            if not value:
                return
            try:
                fingerprint = self.app.source.keyring.current.fingerprint
            except ToolkitError as exc:
                self.notify(exc.one_line(), severity="error", markup=False)
                return
            prompt = Text(escape_text(f"Set {row.label} ({row.key}) of installation {detail.id}? "
                          f"It is encrypted with the current key ({fingerprint})."))
            self._confirm_change(detail, {row.key: value}, prompt, "Set secret", f"{row.label} set (encrypted).")

        self.app.push_screen(InputScreen(Text(escape_text(f"New value for {row.label} ({row.key}) — input is masked")),
                                         password=True), typed)

    def action_uninstall(self) -> None:
        if self.detail is None:
            return
        detail = self.detail
        prompt = Text(escape_text(f"Uninstall {detail.app_name} for {detail.user_email}? "
                      f"This deletes installation {detail.id} and its config."))
        self.app.push_screen(ConfirmScreen(prompt, "Uninstall", danger=True),
                             lambda yes: yes and self._write(
                                 lambda service: service.uninstall(detail.id, expected=detail.as_read),
                                 f"Installation {detail.id} uninstalled.", removed=True))

    def _write(self, call, done: str, *, removed: bool = False) -> None:
        source = self.app.source

        def job(database):
            call(source.config_service())
            return Written(done, removed=removed)

        self.fetch("write", job)

    def show_write(self, written: Written) -> None:
        self.notify(escape_text(written.message), markup=False)
        self.app.data_changed()
        if written.removed:
            self.app.pop_screen()
        else:
            self.reload()

    def failed_write(self, message: str) -> None:
        self.notify(message, title="Not saved", severity="error", markup=False)
