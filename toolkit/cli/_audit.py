"""`toolkit audit`: every finding, as text, JSON, CSV or HTML, with exit codes for CI."""

from __future__ import annotations

import json
import sys
import time

import click

from ..errors import UsageError
from ..ids import parse_user
from ._context import exit_with, get_context
from ._output import write_stdout
from ._terminal import TextOutput, audit_severity, no_pager_option

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]


def _split(values) -> tuple[str, ...]:
    """--app a --app b and --app a,b both mean (a, b)."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@click.group(invoke_without_command=True, help="""Find every broken installation and badly stored secret.

Reads app_installations (and users) in read-only transactions, streams them through every
check of the audit codes table and prints a report. Filters narrow what is read, in SQL.

\b
Exit codes: 0 nothing at or above --fail-on; 1 findings at or above it (with --baseline:
new ones only); 2 usage or configuration error; 3 database error.

\b
Examples:
  toolkit audit                                   # text summary and findings
  toolkit audit --format html -o audit.html       # one page to send to a colleague
  toolkit audit --app stripe --code secret --fail-on warning
  toolkit audit --format json -o base.json --fail-on never   # then, in CI:
  toolkit audit --baseline base.json              # fails only on new findings
  toolkit audit --incremental --baseline last     # cron/CI: read what changed, fail on new
  toolkit audit history                           # the saved runs

Every completed audit is saved (unless --no-save) in the audit store: TOOLKIT_STATE_DIR,
else the user state directory (see README, "Saved audits").

Every flag also reads TOOLKIT_AUDIT_<FLAG> (e.g. TOOLKIT_AUDIT_FAIL_ON=warning).""")
@click.option("--format", "fmt", envvar="TOOLKIT_AUDIT_FORMAT", type=click.Choice(["text", "json", "csv", "html"]), default="text",
              show_default=True, help="Report format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to FILE instead of stdout.")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info", "never"]), default="error",
              show_default=True, help="Exit 1 when a finding reaches this severity.")
@click.option("--baseline", type=click.Path(dir_okay=False),
              help="An earlier JSON report, or `last` (the previous saved run): show what is new "
                   "and fixed; only new findings fail.")
@click.option("--incremental", is_flag=True,
              help="Read only the rows changed since the saved audit (PostgreSQL); same findings as a full audit.")
@click.option("--save/--no-save", default=True, show_default=True, help="Save this run in the audit store.")
@click.option("--app", "apps", multiple=True, metavar="APP", help="Only these apps (repeat or comma-separate).")
@click.option("--user", "users", multiple=True, metavar="ID|EMAIL",
              help="Only these users, by id or email (email ignores case).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["installed", "configured"]),
              help="Only installations with this status.")
@click.option("--code", "codes", multiple=True, metavar="CODE",
              help="Only these checks: a code, a prefix (secret) or a glob (field.*).")
@click.option("--since", type=click.DateTime(_DATE_FORMATS), metavar="DATE",
              help="Only installations updated at or after DATE (YYYY-MM-DD[ HH:MM[:SS]]).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), metavar="N", help="Worker processes on PostgreSQL (default 2).")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
@no_pager_option
@click.pass_context
def audit(ctx, fmt, output, fail_on, baseline, incremental, save, apps, users, statuses, codes, since, jobs, progress,
          no_pager):
    if ctx.invoked_subcommand is not None:
        return
    from ..audit import Filters, Report, select_codes
    from ..audit.incremental import audit as audit_and_save
    from ..audit.store import identity, open_store

    filters = Filters(
        apps=_split(apps), users=_users(users), statuses=tuple(dict.fromkeys(statuses)),
        codes=select_codes(_split(codes)), since=since,
    )
    from_store = baseline == "last"
    earlier = Report.load(baseline) if baseline and not from_store else None  # a bad baseline fails before the audit
    context = get_context()
    database, registry, keyring = context.database, context.registry, context.keyring
    store = open_store(context.settings, warn=_warn) if save or incremental or from_store else None
    if from_store:
        earlier = store.latest(identity(database)) if store is not None else None
        if earlier is None:
            raise UsageError("--baseline last: no saved audit of this database yet",
                             hint="run `toolkit audit` once first (it saves the run)")
        baseline = "the previous saved run"
    show = sys.stderr.isatty() if progress is None else progress
    report = None
    try:
        with _progress_bar(show) as on_progress:
            # Saved while the report is written (the store's close waits for it).
            report = audit_and_save(database, registry, keyring, filters, store=store, incremental=incremental,
                                    save=save, save_soon=True, jobs=jobs, progress=on_progress, warn=_warn)
        if earlier is not None:
            report = report.compare(earlier, source=baseline)
        _write_report(report, fmt, output, no_pager)
        code = report.exit_code(fail_on)
    finally:
        if store is not None:
            store.close()
        if report is not None:
            report.close()
    exit_with(code)


def _write_report(report, fmt: str, output, no_pager: bool) -> None:
    # Streamed: a report of a million findings is never one string in memory.
    if output:
        try:
            report.write(fmt, output)
        except OSError as exc:
            raise UsageError(f"cannot write the report to {output}: {exc.strerror or exc}") from None
        click.echo(_one_line(report, output), err=True)
    elif fmt == "text":  # on a terminal: coloured, wrapped, paged; in a pipe: the bytes as rendered
        with TextOutput(no_pager=no_pager, classify=audit_severity) as out:
            report.stream(fmt, out.write)
    else:
        report.stream(fmt, write_stdout)  # bytes as rendered: never click.echo (it strips escapes)


def _users(values) -> tuple:
    try:
        return tuple(parse_user(value) for value in _split(values))
    except UsageError as exc:
        raise UsageError(f"--user: {exc.message}") from None


def _warn(line: str) -> None:
    click.echo(line, err=True)


@audit.command("history", help="""List the saved audit runs, newest first.

Time, mode (full or incremental), findings by severity, duration and rows read, of this
database (all databases with --all). Saved audits live in the audit store: TOOLKIT_STATE_DIR,
else the user state directory; delete that file to forget them.""")
@click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts: one object per run.")
@click.option("--all", "every_database", is_flag=True, help="Runs of every database, not only this one.")
@click.option("--limit", "-n", type=click.IntRange(1), default=20, show_default=True, help="At most this many runs.")
def history(as_json, every_database, limit):
    from ..audit.report import clean
    from ..audit.store import default_path, saved_runs

    context = get_context()
    path = default_path(context.settings)
    runs = saved_runs(context.settings, None if every_database else context.database, limit, warn=_warn)
    if as_json:
        write_stdout("".join(json.dumps(run, ensure_ascii=False) + "\n" for run in runs))
        return
    if not runs:
        click.echo(f"No saved audits{'' if every_database else ' of this database'} in {path}.", err=True)
        return
    lines = [f"{'id':>5}  {'time':<25}  {'mode':<11}  {'error':>7} {'warning':>7} {'info':>7}  {'duration':>9}  {'rows read':>10}"]
    for run in runs:
        counts = run["by_severity"]
        duration = "" if run["duration_s"] is None else f"{run['duration_s']:.2f} s"
        rows = "" if run["rows_read"] is None else str(run["rows_read"])
        line = (f"{run['id']:>5}  {run['generated_at']:<25}  {run['mode']:<11}  {counts.get('error', 0):>7}"
                f" {counts.get('warning', 0):>7} {counts.get('info', 0):>7}  {duration:>9}  {rows:>10}")
        if every_database:
            line += f"  {clean(run['database'])}"
        lines.append(line)
    write_stdout("\n".join(lines) + "\n")


def _one_line(report, output) -> str:
    counts = report.by_severity()
    shown = ", ".join(f"{n} {s}" for s, n in counts.items())
    new = f"; {len(report.baseline.new)} new, {len(report.baseline.fixed)} fixed" if report.baseline else ""
    return f"{len(report)} findings ({shown}{new}) written to {output}"


class _progress_bar:
    """rich's progress bar on stderr, refreshed from our callback (no refresh thread, so
    nothing is running when the engine forks its workers)."""

    def __init__(self, show: bool):
        self.show = show
        self.progress = None
        self.task = None
        self.last = 0.0

    def __enter__(self):
        if not self.show:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True, auto_refresh=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("audit", total=None)
        return self.update

    def update(self, done, total):
        now = time.monotonic()
        if now - self.last < 0.1 and done != total:
            return
        self.last = now
        self.progress.update(self.task, completed=done, total=total)
        self.progress.refresh()

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False
