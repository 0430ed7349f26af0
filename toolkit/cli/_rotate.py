"""`toolkit keys rotate` (plugged into the `keys` group by `_keys.SUBCOMMANDS`)."""

from __future__ import annotations

import click

from ..keys.rotation import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from ..writes.rewrite import DEFAULT_LIST_LIMIT
from ._context import get_context
from ._terminal import no_pager_option
from ._writes import confirm_or_refuse, exit_with_report, progress_bar


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be re-encrypted (installation, app, field, action); write nothing.")
@click.option("--yes", "-y", allow_from_autoenv=False, is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Rows per page: one read and one UPDATE, each its own short transaction.")
@click.option("--workers", type=click.IntRange(1, 16), default=DEFAULT_WORKERS, show_default=True,
              help="Processes over disjoint id ranges (PostgreSQL). Each waits on the database about half "
                   "the time, so more than the cores pays.")
@click.option("--include-current", is_flag=True,
              help="Also re-encrypt values already under the current key, with fresh IVs (fixes secret.nonce-reuse).")
@click.option("--max-retries", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Re-reads of a row the app changed meanwhile before it is left for the next run.")
@click.option("--limit", type=click.IntRange(0), default=DEFAULT_LIST_LIMIT, show_default=True,
              help="Rows a --dry-run lists in text (env TOOLKIT_KEYS_ROTATE_LIMIT); --json lists them all.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (a dry run's: every row it would change).")
@no_pager_option
def rotate(dry_run, yes, batch_size, workers, include_current, max_retries, limit, as_json, no_pager):
    """Re-encrypt every secret stored under a previous key with the current key.

    ENCRYPTION_KEY is the new key; ENCRYPTION_KEY_PREVIOUS lists the old one(s). Only the
    registry's password fields are touched. Each page of rows is written in one short
    transaction with compare-and-swap on the old ciphertexts, so the app may keep writing:
    a row it changed meanwhile is re-read and retried, never overwritten. Safe through the
    transaction pooler; safe to interrupt — run it again and it finishes. Values that no key
    decrypts, malformed or plaintext ones are never written, only counted.

    \b
    Exit codes: 0 done, 1 rows left because the app kept changing them (run again),
    2 usage or key error, 3 database error (e.g. read-only) — nothing written then.

    \b
    Examples:
      toolkit keys rotate --dry-run --limit 50
      toolkit keys rotate --yes --json
    """
    from ..keys import rotation
    from ..db import describe

    context = get_context()
    keyring = context.keyring  # ConfigError for a malformed key or a key listed twice
    rotation.check_keyring(keyring, include_current=include_current)
    registry = context.registry
    database = context.database
    if not dry_run:
        sources = ", ".join(str(key) for key in keyring.previous) or "the current key"
        confirm_or_refuse(
            f"Re-encrypt every secret under {sources} with the current key ({keyring.current.fingerprint}) "
            f"in {describe(database)}?",
            yes=yes, what="rotate",
        )
    with progress_bar(lambda: rotation.count_rows(database), "rotating" if not dry_run else "dry run") as advance:
        report = rotation.rotate(
            database, registry, keyring, dry_run=dry_run, include_current=include_current,
            batch_size=batch_size, max_retries=max_retries, workers=workers, progress=advance,
            list_limit=None if as_json else limit,
        )
    exit_with_report(report, as_json, no_pager=no_pager)
