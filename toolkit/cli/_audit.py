"""`toolkit audit`: every finding, as text, JSON, CSV or HTML, with exit codes for CI."""

from __future__ import annotations

import sys
import time

import click

from ..errors import UsageError
from ._context import exit_with, get_context

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]


def _split(values) -> tuple[str, ...]:
    """--app a --app b and --app a,b both mean (a, b)."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@click.command(help="""Find every broken installation and badly stored secret.

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

Every flag also reads TOOLKIT_AUDIT_<FLAG> (e.g. TOOLKIT_AUDIT_FAIL_ON=warning).""")
@click.option("--format", "fmt", envvar="TOOLKIT_AUDIT_FORMAT", type=click.Choice(["text", "json", "csv", "html"]), default="text",
              show_default=True, help="Report format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to FILE instead of stdout.")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info", "never"]), default="error",
              show_default=True, help="Exit 1 when a finding reaches this severity.")
@click.option("--baseline", type=click.Path(dir_okay=False),
              help="An earlier JSON report: show what is new and fixed; only new findings fail.")
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
def audit(fmt, output, fail_on, baseline, apps, users, statuses, codes, since, jobs, progress):
    from ..audit import Filters, Report, run_audit, select_codes

    filters = Filters(
        apps=_split(apps), users=_split(users), statuses=tuple(dict.fromkeys(statuses)),
        codes=select_codes(_split(codes)), since=since,
    )
    earlier = Report.load(baseline) if baseline else None  # a bad baseline fails before the audit
    context = get_context()
    database, registry, keyring = context.database, context.registry, context.keyring
    show = sys.stderr.isatty() if progress is None else progress
    with _progress_bar(show) as on_progress:
        report = run_audit(database, registry, keyring, filters, jobs=jobs, progress=on_progress)
    if earlier is not None:
        report = report.compare(earlier, source=baseline)
    # Streamed: a report of a million findings is never one string in memory.
    if output:
        try:
            report.write(fmt, output)
        except OSError as exc:
            raise UsageError(f"cannot write the report to {output}: {exc.strerror or exc}") from None
        click.echo(_one_line(report, output), err=True)
    else:
        report.stream(fmt, sys.stdout.write)
        sys.stdout.flush()
    code = report.exit_code(fail_on)
    report.close()
    exit_with(code)


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
