"""The audit view: run the audit in a worker with a progress bar, browse findings by code and app.

enter on a finding opens its installation; f on a code or app lists those installations in
the installations screen (filter `code:…`). The tree adds a finding's leaves only when its
app node is opened, and at most MAX_LEAVES of them: a million-row audit can find 100k things.
"""

from __future__ import annotations

from collections import defaultdict

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import ProgressBar, Static, Tree

from ...errors import ToolkitError
from ...safe_text import escape_text
from .. import cells
from ...audit.report import Report
from ..filters import FilterQuery
from ..messages import AuditFailed, AuditFinished, AuditProgress, DatabaseFailed
from ..widgets import DatabaseBanner, StableFooter, TopBar
from ..workers import DataScreen

MAX_LEAVES = 200
USERS_GROUP = "(users)"
SAVED = "saved_audit"  # meta flag: the report came from the audit store (its age is shown)


def saved_report(source):
    """The latest saved audit of this database, marked as saved (its age is shown), or None."""
    report = source.latest_saved_audit()
    return None if report is None else Report(report.findings, {**report.meta, SAVED: True})


def _age(generated_at: str) -> str:
    import datetime as dt

    try:
        then = dt.datetime.fromisoformat(generated_at)
    except (TypeError, ValueError):
        return "of unknown age"
    minutes = int((dt.datetime.now(dt.timezone.utc) - then).total_seconds() // 60)
    if minutes < 1:
        return "less than a minute old"
    if minutes < 120:
        return f"{minutes} min old"
    hours = minutes // 60
    return f"{hours} h old" if hours < 48 else f"{hours // 24} days old"


class AuditScreen(DataScreen):
    BINDINGS = [
        Binding("r", "run_audit", "Run audit"),
        Binding("f", "filter_installations", "List installations"),
        Binding("ctrl+r", "run_audit", "Run audit", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.running = False

    def compose(self) -> ComposeResult:
        yield TopBar("Audit")
        yield DatabaseBanner(id="db-banner")
        yield Static(id="audit-summary")
        yield ProgressBar(id="progress", show_eta=False)
        tree = Tree(Text("findings"), id="findings")
        tree.show_root = False
        yield tree
        yield StableFooter()

    def on_mount(self) -> None:
        self.query_one("#progress").display = False
        self.show_report()
        self.query_one(Tree).focus()

    # --- running ----------------------------------------------------------------------
    def action_run_audit(self) -> None:
        if self.running:
            self.notify("The audit is already running.", markup=False)
            return
        self.running = True
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self.query_one("#audit-summary", Static).update(Text("Auditing…", style="italic"))
        source = self.app.source
        app = self.app
        screen = self

        def progress(done, total):
            screen.post_message(AuditProgress(done, total))

        def run():
            try:
                report = source.run_audit(
                    progress, warn=lambda line: app.call_from_thread(app.notify, line, markup=False))
            except ToolkitError as exc:
                from ...errors import DatabaseError

                if isinstance(exc, DatabaseError):
                    app.post_message(DatabaseFailed(exc.one_line()))
                screen.post_message(AuditFailed(exc.one_line()))
                return
            screen.post_message(AuditFinished(report))

        self.run_worker(run, thread=True, group="audit", name="audit", exit_on_error=False)

    def on_audit_progress(self, message: AuditProgress) -> None:
        self.query_one("#progress", ProgressBar).update(total=message.total, progress=message.done)

    def on_audit_finished(self, message: AuditFinished) -> None:
        self.running = False
        self.query_one("#progress").display = False
        self.app.set_report(message.report)

    def on_audit_failed(self, message: AuditFailed) -> None:
        self.running = False
        self.query_one("#progress").display = False
        self.query_one("#audit-summary", Static).update(Text(f"The audit failed: {message.message}", style="red"))

    def on_report_changed(self, message) -> None:
        self.show_report()

    # --- showing ----------------------------------------------------------------------
    def show_report(self) -> None:
        report = self.app.report
        summary = self.query_one("#audit-summary", Static)
        tree = self.query_one(Tree)
        tree.clear()
        if report is None:
            summary.update(Text("No audit yet. Press r to run it over the whole database.", style="dim"))
            return
        counts = defaultdict(int)
        for finding in report.findings:
            counts[finding.severity] += 1
        line = Text(f"{cells.number(len(report.findings))} findings", style="bold")
        if report.meta.get(SAVED):
            line.append(f" (saved audit, {_age(report.meta.get('generated_at'))}: r runs it again)", style="italic")
        installations = report.summary.get("installations") if isinstance(report.summary, dict) else None
        if installations is not None:
            line.append(f" in {cells.number(installations)} installations")
        line.append(":  ")
        for severity in ("error", "warning", "info"):
            line.append(f"{cells.SEVERITY_MARKS[severity]} {counts[severity]} {severity}  ",
                        style=cells.SEVERITY_STYLES[severity])
        line.append("  enter opens · f lists them in Installations", style="dim")
        summary.update(line)
        source = self.app.source
        by_code = defaultdict(lambda: defaultdict(list))
        for finding in report.findings:
            by_code[finding.code][finding.app_id or USERS_GROUP].append(finding)
        for code, by_app in by_code.items():
            first = next(iter(by_app.values()))[0]
            total = sum(len(items) for items in by_app.values())
            label = Text(f"{cells.SEVERITY_MARKS.get(first.severity, '')} {code}",
                         style=cells.SEVERITY_STYLES.get(first.severity, ""))
            label.append(f"  {total} in {len(by_app)} app{'s' if len(by_app) != 1 else ''}", style="dim")
            code_node = tree.root.add(label, data=("code", code, None), expand=False)
            for app_id, items in sorted(by_app.items(), key=lambda item: -len(item[1])):
                name = source.app_name(app_id) if app_id != USERS_GROUP else app_id
                app_label = cells.text(name, "bold")
                app_label.append(f"  {len(items)}", style="dim")
                code_node.add(app_label, data=("app", code, app_id, items), allow_expand=True)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        node = event.node
        data = node.data
        if not data or data[0] != "app" or node.children:
            return
        items = data[3]
        for finding in items[:MAX_LEAVES]:
            node.add_leaf(self._leaf_label(finding), data=("finding", finding))
        if len(items) > MAX_LEAVES:
            node.add_leaf(Text(f"… {len(items) - MAX_LEAVES} more: press f to list them all", style="dim"),
                          data=("more", data[1], data[2]))

    def _leaf_label(self, finding) -> Text:
        label = Text()
        if finding.installation_id is not None:
            label.append(f"#{finding.installation_id} ", style="bold")
        elif finding.user_id is not None:
            label.append(f"user #{finding.user_id} ", style="bold")
        if finding.field:
            label.append(f"{escape_text(finding.field)}: ", style="cyan")
        label.append(escape_text(finding.message))
        return label

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        data = event.node.data
        if data and data[0] == "finding":
            finding = data[1]
            if finding.installation_id is not None:
                self.app.open_installation(finding.installation_id)
            else:
                self.app.show_users(finding.user_id)

    def action_filter_installations(self) -> None:
        node = self.query_one(Tree).cursor_node
        if node is None or not node.data:
            return
        kind, code = node.data[0], node.data[1]
        if kind == "finding":
            code = node.data[1].code
        app_id = node.data[2] if kind in ("app", "more") and node.data[2] != USERS_GROUP else None
        self.app.show_installations(FilterQuery(code=code, app=app_id))
