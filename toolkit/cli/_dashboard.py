import click

from ._context import get_context


@click.command()
@click.option("--write", allow_from_autoenv=False, is_flag=True,
              help="Enable write actions (change status, edit a field, set a secret, uninstall), each confirmed.")
def dashboard(write):
    """Browse users, installations and audit findings in the terminal.

    Read-only unless --write. Secrets stay masked until you reveal one on purpose (v on a
    password field, then confirm); every reveal is written to the access log. Keys: q quits,
    / filters, enter opens, escape goes back, ? lists every key; ctrl+p opens the command palette.

    \b
    Examples:
      toolkit dashboard
      DATABASE_URL=postgresql://… toolkit dashboard --write
    """
    from ..db import check_connection
    from ..tui import DashboardApp, DataSource

    context = get_context()
    # Fail before the screen opens when the database is unreachable from the start:
    # a one-line error beats an empty dashboard. Later outages show a banner and recover.
    check_connection(context.database)
    context.database.close()
    source = DataSource.from_context(context)
    DashboardApp(source, write=write).run()
