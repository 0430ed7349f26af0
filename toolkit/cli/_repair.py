"""`toolkit repair`: mechanical fixes of audit findings, each opt-in by code."""

from __future__ import annotations

import click

from ..writes.repair import FIXABLE, WHAT
from ..writes.rewrite import DEFAULT_LIST_LIMIT
from ._context import get_context
from ._terminal import no_pager_option
from ._writes import confirm_or_refuse, exit_with_report, progress_bar

_FIX_HELP = "; ".join(f"{code}: {what}" for code, what in WHAT.items())


@click.command()
@click.option("--fix", "fixes", multiple=True, metavar="CODE", type=click.Choice(FIXABLE),
              help=f"An audit code to fix (repeatable). {_FIX_HELP}.")
@click.option("--dry-run", is_flag=True, help="List what would be fixed (installation, app, field, action); write nothing.")
@click.option("--yes", "-y", allow_from_autoenv=False, is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=2000, show_default=True,
              help="Rows per page: one read and one UPDATE, each its own short transaction.")
@click.option("--max-retries", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Re-reads of a row the app changed meanwhile before it is left for the next run.")
@click.option("--limit", type=click.IntRange(0), default=DEFAULT_LIST_LIMIT, show_default=True,
              help="Rows a --dry-run lists in text (env TOOLKIT_REPAIR_LIMIT); --json lists them all.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (a dry run's: every row it would change).")
@no_pager_option
def repair(fixes, dry_run, yes, batch_size, max_retries, limit, as_json, no_pager):
    """Fix mechanical audit findings — only the codes named with --fix.

    What counts as a finding is decided by the audit itself. Each page of rows is written in
    one short transaction with compare-and-swap on what the audit judged, so the app may keep
    writing; safe through the transaction pooler and safe to interrupt. Repaired rows get
    updated_at = now(). Run with --dry-run first.

    \b
    Exit codes: 0 done, 1 rows left because the app kept changing them (run again),
    2 usage or configuration error, 3 database error (e.g. read-only) — nothing written then.

    \b
    Examples:
      toolkit repair --fix secret.plaintext --dry-run
      toolkit repair --fix field.unknown --fix status.not-configured --yes --json
    """
    from ..writes import repair as repairs
    from ..db import describe

    fixes = repairs.check_fixes(fixes)
    context = get_context()
    keyring = context.keyring
    registry = context.registry
    database = context.database
    if not dry_run:
        confirm_or_refuse(f"Apply {', '.join(fixes)} to {describe(database)}?", yes=yes, what="repair")
    from ..keys.rotation import count_rows

    with progress_bar(lambda: count_rows(database), "repairing" if not dry_run else "dry run") as advance:
        report = repairs.repair(database, registry, keyring, fixes, dry_run=dry_run, batch_size=batch_size,
                                max_retries=max_retries, progress=advance, list_limit=None if as_json else limit)
    exit_with_report(report, as_json, no_pager=no_pager)
