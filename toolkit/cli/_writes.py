"""What the commands that write (`keys rotate`, `repair`) share: confirmation, progress, summary."""

from __future__ import annotations

import contextlib
import sys

import click

from ..errors import ExitCode, UsageError
from ._output import write_stdout
from ._terminal import TextOutput, report_severity


def confirm_or_refuse(prompt: str, *, yes: bool, what: str) -> None:
    """Ask on the terminal unless `yes`; without a terminal, refuse (exit 2) rather than guess."""
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(f"refusing to {what} without confirmation: standard input is not a terminal",
                         hint="pass --yes (and run with --dry-run first)")
    click.confirm(prompt, abort=True, err=True)


@contextlib.contextmanager
def progress_bar(count_rows, label: str):
    """A progress bar on stderr when it is a terminal; yields `advance(n)` (None otherwise)."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=count_rows(), label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def exit_with_report(report, as_json: bool, *, no_pager: bool = False) -> None:
    """Print the summary (text or JSON) to stdout; exit 1 when rows were left for the next run."""
    if as_json:  # in pieces: a dry run's rows can be millions
        for chunk in report.json_chunks():
            write_stdout(chunk)
        write_stdout(b"", newline=True)
    else:
        with TextOutput(no_pager=no_pager, classify=report_severity) as out:
            out.write(report.render() + "\n")
    if not report.complete:
        click.get_current_context().exit(int(ExitCode.FINDINGS))
