"""`toolkit migrate` and `toolkit schema check`."""

import click

from ._context import exit_with, get_context
from ._output import write_stdout


@click.command()
@click.option("--status", "show_status", is_flag=True, help="List applied and pending migrations; change nothing.")
@click.option("--folder", type=click.Path(file_okay=False, path_type=str), metavar="PATH",
              help="Apply this drizzle folder (the app's `drizzle/`) instead of the toolkit's own migrations.")
@click.option("--direct-url", allow_from_autoenv=False, metavar="URL", help="Direct PostgreSQL URL, port 5432 (env DIRECT_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (what was applied, or with --status the whole journal).")
def migrate(show_status, folder, direct_url, as_json):
    """Apply pending drizzle migrations over the direct connection, as `drizzle-kit migrate` does.

    Applied migrations are recorded in drizzle.__drizzle_migrations with drizzle's hash and
    created_at, so `drizzle-kit migrate` and `toolkit migrate` can each run after the other.
    Uses DIRECT_URL, or DATABASE_URL when that is not a pooler URL; a transaction pooler
    (port 6543 or pgbouncer=true) is refused.

    \b
    Examples:
      toolkit migrate --status
      toolkit migrate
      toolkit migrate --folder ../app/drizzle
    """
    from pathlib import Path

    from .. import db, migrate as migrations

    # Files first: a wrong --folder is reported without touching any database.
    source = Path(folder) if folder else migrations.BUNDLED_FOLDER
    todo = migrations.read_folder(source)
    settings = get_context().settings.with_overrides(direct_url=direct_url)
    url, variable = migrations.resolve_direct_url(settings)
    database = db.open_postgres(url, variable)
    try:
        db.check_connection(database)
        where = db.describe(database)
        if show_status:
            state = migrations.status(database, todo)
            if as_json:
                import orjson

                write_stdout(orjson.dumps(_status_dict(state, source, where), option=orjson.OPT_INDENT_2), newline=True)
            else:
                click.echo(_status_text(state, source, where))
            return
        applied = migrations.apply(database, todo)
    finally:
        database.close()
    if as_json:
        import orjson

        data = {"database": where, "folder": str(source), "applied": [{"tag": m.tag, "when": m.when, "hash": m.hash} for m in applied]}
        write_stdout(orjson.dumps(data, option=orjson.OPT_INDENT_2), newline=True)
        return
    if not applied:
        click.echo(f"{where}: up to date, nothing to apply ({len(todo)} migration(s) in {source})")
        return
    for migration in applied:
        click.echo(f"applied {migration.tag} ({len(migration.statements)} statements)")
    click.echo(f"{where}: {len(applied)} migration(s) applied")


def _status_text(state, source, where) -> str:
    lines = [f"database    {where}", f"migrations  {source}"]
    if not state.table_exists:
        lines.append("no drizzle.__drizzle_migrations table: nothing recorded yet")
    for migration, row in state.applied:
        name = migration.tag if migration else f"(not in this folder, hash {row.hash[:12]}…)"
        lines.append(f"  applied   {name}  created_at={row.created_at}")
    for migration in state.pending:
        lines.append(f"  pending   {migration.tag}  when={migration.when}")
    for migration in state.skipped:
        lines.append(f"  skipped   {migration.tag}  (older than the newest applied migration: drizzle never applies it)")
    for migration in state.changed:
        lines.append(f"  warning   {migration.tag} changed since it was applied (hash differs)")
    lines.append(f"{len(state.applied)} applied, {len(state.pending)} pending")
    return "\n".join(lines)


def _status_dict(state, source, where) -> dict:
    return {
        "database": where,
        "folder": str(source),
        "table_exists": state.table_exists,
        "applied": [
            {"tag": m.tag if m else None, "hash": row.hash, "created_at": row.created_at}
            for m, row in state.applied
        ],
        "pending": [{"tag": m.tag, "when": m.when, "hash": m.hash} for m in state.pending],
        "skipped": [m.tag for m in state.skipped],
        "changed": [m.tag for m in state.changed],
    }


@click.group()
def schema():
    """Compare the live database's schema with the app's."""


@schema.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {ok, drift, notes, differences}.")
def check(as_json):
    """Compare the live schema (DATABASE_URL) with the one the toolkit expects.

    Checks tables, columns and their types, nullability, defaults, enum labels, unique
    constraints, indexes and foreign keys; prints each difference in plain words. Drift
    (anything that can make the toolkit read or write wrongly) exits 1; notes (an extra
    table, column or index) are printed but harmless. Runs in a read-only transaction.

    \b
    Exit codes: 0 no drift, 1 drift, 2 configuration error, 3 database error.

    \b
    Examples:
      toolkit schema check
      DATABASE_URL=postgresql://…:6543/postgres?pgbouncer=true toolkit schema check --json
    """
    from .. import db, schema_check
    from ..errors import ConfigError, ExitCode
    from ..settings import DATABASE_URL

    context = get_context()
    if context.is_demo:
        raise ConfigError(
            f"schema check needs a PostgreSQL database: set {DATABASE_URL} (or --database-url)",
            hint="the embedded demo database is built by the toolkit itself",
        )
    database = context.database
    db.check_connection(database)
    result = schema_check.check(database)
    if as_json:
        import orjson

        data = {"database": db.describe(database), **result.as_dict()}
        write_stdout(orjson.dumps(data, option=orjson.OPT_INDENT_2), newline=True)
    else:
        for difference in result.differences:
            click.echo(f"{difference.severity:<5}  {difference.message}")
        summary = "matches the app's schema" if result.ok else f"{len(result.drift)} difference(s) from the app's schema"
        notes = f" ({len(result.notes)} note(s))" if result.notes else ""
        click.echo(f"{db.describe(database)}: {summary}{notes}")
    if not result.ok:
        exit_with(ExitCode.FINDINGS)
