import click

from ._context import get_context


@click.command()
@click.option("--reset", is_flag=True, help="Delete and rebuild the demo database from its seed.")
def demo(reset):
    """Create (or with --reset rebuild) the embedded demo database and print its path.

    The demo database is a SQLite file in your data directory, seeded deterministically
    with ~1,500 users, ~4,000 installations of 8 apps and at least one example of every
    audit finding. Every command uses it when DATABASE_URL is not set.
    """
    from .. import demo as demo_module
    from ..errors import UsageError

    context = get_context()
    if not context.is_demo:
        raise UsageError("`toolkit demo` only manages the embedded demo database; unset DATABASE_URL")
    path = demo_module.ensure_demo_database(context.settings, reset=reset)
    click.echo(str(path))
